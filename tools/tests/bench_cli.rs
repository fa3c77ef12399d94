//! `movegc bench --quick --json` end to end: it runs every workload under
//! every strategy the machine supports, prints the documented JSON document
//! on stdout, writes the same document, a report and plots to `--out`, and
//! the numbers are consistent with what each strategy does.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn movegc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_movegc"))
        .args(args)
        .output()
        .expect("run movegc")
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

/// The young cycles of run record `r`.
fn young_cycles(r: &Value) -> Vec<&Value> {
    r["per_cycle"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["young"] == Value::Bool(true))
        .collect()
}

fn quantiles_ordered(v: &Value, key: &str) {
    let q = &v[key];
    let (p50, p99, max) = (f(q, "p50"), f(q, "p99"), f(q, "max"));
    assert!(
        0.0 <= p50 && p50 <= p99 && p99 <= max,
        "{key} not ordered: {q}"
    );
}

#[test]
fn quick_json_suite_is_complete_and_consistent() {
    let dir = std::env::temp_dir().join(format!("movegc-bench-test-{}", std::process::id()));
    let out = movegc(&["bench", "--quick", "--json", "--out", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "movegc bench failed:\n{stderr}");
    assert!(
        stderr.contains("probe: "),
        "the probe's conclusion is printed first"
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");

    // meta
    let meta = &doc["meta"];
    for key in [
        "kernel",
        "command_line",
        "timestamp",
        "preparation",
        "probe_strategy",
    ] {
        assert!(
            meta[key].as_str().is_some_and(|s| !s.is_empty()),
            "meta.{key}"
        );
    }
    assert_eq!(meta["quick"], Value::Bool(true));
    assert!(meta["machine"]["cores"].as_u64().unwrap() >= 1);
    let concurrent = meta["probe_strategy"]
        .as_str()
        .unwrap()
        .starts_with("concurrent-move");
    if !concurrent {
        eprintln!("userfaultfd MOVE unavailable here: MOVE-specific checks skipped");
    }

    // results
    let results = doc["results"].as_array().expect("results array");
    let workloads = [
        "compact",
        "compact-mutators",
        "fragmenter",
        "binary-trees",
        "gcbench",
        "threads",
        "large-refs",
        "old-writes",
    ];
    for w in workloads {
        assert!(
            results.iter().any(|r| r["workload"] == w),
            "no result for workload {w}"
        );
    }
    for r in results {
        for key in [
            "wall_s",
            "cpu_s",
            "compaction_ms",
            "mark_ms",
            "pages_moved",
            "pages_copied",
            "pages_zero_filled",
            "madvise_calls",
            "faults",
            "ebusy_fallbacks",
            "peak_rss_bytes",
            "minflt",
            "cycles",
        ] {
            assert!(f(r, key) >= 0.0, "{key}");
        }
        assert!(f(r, "wall_s") > 0.0);
        assert!(f(r, "peak_rss_bytes") > 0.0);
        assert!(f(r, "cycles") >= 1.0, "every run collects: {r}");
        quantiles_ordered(r, "pause_ms");
        quantiles_ordered(r, "final_pause_ms");
        quantiles_ordered(r, "update_roots_ms");
        assert!(
            f(&r["update_roots_ms"], "max") <= f(&r["final_pause_ms"], "max"),
            "update_roots is part of the final pause: {r}"
        );
        quantiles_ordered(r, "fault_stall_us");
        assert_eq!(
            r["per_cycle"].as_array().unwrap().len() as f64,
            f(r, "cycles")
        );
        let strategy = r["strategy"].as_str().unwrap();
        let used = r["strategy_used"].as_str().unwrap();
        match used {
            "stop-the-world" => {
                assert_eq!(f(r, "pages_moved"), 0.0, "STW installs nothing: {r}");
                assert_eq!(f(r, "pages_copied"), 0.0);
                assert_eq!(f(r, "faults"), 0.0, "STW cannot fault");
            }
            "concurrent-move" => {
                assert_eq!(f(r, "madvise_calls"), 0.0, "MOVE calls no madvise: {r}");
                assert!(
                    f(r, "pages_moved") + f(r, "pages_copied") >= f(r, "pages_compacted"),
                    "every compacted page is installed: {r}"
                );
            }
            "concurrent-copy" => {
                assert_eq!(f(r, "pages_moved"), 0.0, "COPY never moves: {r}");
                assert!(f(r, "madvise_calls") > 0.0, "COPY frees with madvise");
            }
            other => panic!("unknown strategy {other}"),
        }
        if concurrent {
            assert_eq!(used, strategy, "no fallback expected here");
        }
        if concurrent && strategy == "concurrent-move" && r["workload"] == "compact" {
            assert!(
                f(r, "pages_moved") > f(r, "pages_copied"),
                "a fragmented heap is mostly moved from recycled pages: {r}"
            );
        }
    }

    // old-writes always runs with young collections (cards by default):
    // its young cycles scan a remembered set.
    for r in results.iter().filter(|r| r["workload"] == "old-writes") {
        assert!(
            r["params"].as_str().unwrap().ends_with(",young=on"),
            "{}",
            r["params"]
        );
        let young = young_cycles(r);
        assert!(!young.is_empty(), "old-writes ran no young cycle: {r}");
        for c in young {
            assert_eq!(c["remembered_set"], "cards", "{c}");
            assert!(f(c, "remembered_pages") > 0.0, "{c}");
            assert_eq!(f(c, "written_pages"), 0.0, "{c}");
        }
    }

    // summary
    let summary = &doc["summary"];
    let ratio = &summary["move_copy_compaction_ratio"];
    if concurrent {
        let (m, lo, hi) = (
            f(ratio, "median"),
            f(ratio, "ci95_low"),
            f(ratio, "ci95_high"),
        );
        assert!(m > 0.0 && lo <= m && m <= hi, "ratio {ratio}");
        assert_eq!(summary["madvise_calls_move"].as_u64(), Some(0));
    }
    assert!(summary["targets"].as_array().is_some_and(|t| t.len() >= 3));

    // files: results.json is the same document.
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(written, doc);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("concurrent-move") || !concurrent);
    assert!(
        md.contains("## Final pause vs large-object references (large-refs)"),
        "{md}"
    );
    for svg in [
        "compaction_vs_heap.svg",
        "fault_stall_cdf.svg",
        "fragmenter_pauses.svg",
        "final_pause_vs_large_refs.svg",
    ] {
        let p: &Path = &dir.join(svg);
        if svg == "fault_stall_cdf.svg" && !concurrent {
            continue; // no faults without userfaultfd
        }
        let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{svg}: {e}"));
        assert!(s.contains("<svg"), "{svg} is an SVG");
    }

    // --render makes the same outputs again from results.json alone.
    let again = dir.join("again");
    let out = movegc(&[
        "bench",
        "--render",
        dir.join("results.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: Value =
        serde_json::from_str(&std::fs::read_to_string(again.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(rendered["results"], doc["results"]);
    assert_eq!(rendered["summary"], doc["summary"]);
    assert!(again.join("report.md").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["bench", "--workloads", "nope"][..],
        &["bench", "--strategies", "sideways"],
        &["bench", "--repeat", "0"],
        &["bench", "--heap", "1"],
        &["bench", "--large-refs-entries", "1"],
        &["bench", "--large-refs-entries", "lots"],
        &["bench", "--compact-prefix", "1"],
        &["bench", "--compact-prefix", "half"],
        &["bench", "--phases", "0"],
    ] {
        let out = movegc(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("movegc bench: "), "{args:?}: {err}");
    }
    // An unknown name lists the valid ones.
    let err =
        String::from_utf8_lossy(&movegc(&["bench", "--workloads", "nope"]).stderr).into_owned();
    assert!(
        err.contains("valid: compact, compact-mutators, compact-prefix, fragmenter"),
        "{err}"
    );
    let err = String::from_utf8_lossy(&movegc(&["bench", "--generational", "sometimes"]).stderr)
        .into_owned();
    assert!(err.contains("off") && err.contains("both"), "{err}");
    let err = String::from_utf8_lossy(&movegc(&["bench", "--remembered-set", "dirty"]).stderr)
        .into_owned();
    assert!(
        err.contains("cards") && err.contains("wp") && err.contains("both"),
        "{err}"
    );
}

/// Runs `movegc bench --quick --json` with `args` into a temporary
/// directory named after `tag`; the directory and the JSON document (the
/// run must succeed).
fn quick_json(tag: &str, args: &[&str]) -> (std::path::PathBuf, Value) {
    let dir = std::env::temp_dir().join(format!("movegc-bench-{tag}-{}", std::process::id()));
    let mut all = vec!["bench", "--quick", "--json"];
    all.extend_from_slice(args);
    all.extend(["--out", dir.to_str().unwrap()]);
    let out = movegc(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "movegc bench failed:\n{stderr}");
    let doc = serde_json::from_slice(&out.stdout).expect("one JSON document");
    (dir, doc)
}

#[test]
fn old_writes_compares_both_remembered_set_builders() {
    let (dir, doc) = quick_json(
        "ow",
        &[
            "--workloads",
            "old-writes",
            "--strategies",
            "stw",
            "--remembered-set",
            "both",
        ],
    );
    let results = doc["results"].as_array().unwrap();
    let params: Vec<&str> = results
        .iter()
        .map(|r| r["params"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        [
            "rate=10,old=16,rounds=10,garbage=2,young=on",
            "rate=10,old=16,rounds=10,garbage=2,young=wp"
        ]
    );
    for (r, asked) in results.iter().zip(["cards", "wp"]) {
        let young = young_cycles(r);
        assert!(!young.is_empty(), "{r}");
        for c in young {
            let used = c["remembered_set"].as_str().unwrap();
            // Write-protect falls back to cards where the kernel lacks it.
            assert!(used == asked || used == "cards", "{asked}: {c}");
            assert!(f(c, "remembered_pages") > 0.0, "{c}");
            if used == "wp" {
                assert!(f(c, "written_pages") > 0.0, "{c}");
            }
        }
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Remembered-set cost by dirty rate (old-writes)"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn phases_skew_binary_trees_and_gcbench_and_the_targets_use_totals() {
    let (dir, doc) = quick_json(
        "ph",
        &[
            "--workloads",
            "gcbench",
            "--strategies",
            "move,stw",
            "--phases",
            "2",
        ],
    );
    let results = doc["results"].as_array().unwrap();
    let skewed = |r: &&Value| r["params"].as_str().unwrap().contains("skew_kib=1024");
    assert_eq!(results.len(), 4, "2 phases x 2 strategies");
    assert_eq!(results.iter().filter(skewed).count(), 2);
    for r in results {
        assert!(f(r, "cycles") > 0.0, "{r}");
    }
    // Both phases pair up in the ratio of totals the targets read.
    let total = &doc["summary"]["move_stw_total"]["gcbench"];
    assert_eq!(total[0]["n"].as_u64(), Some(2), "{total}");
    assert!(f(&total[0], "ratio") > 0.0, "{total}");
    let target = doc["summary"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["name"]
                .as_str()
                .unwrap()
                .starts_with("MOVE/STW compaction time")
        })
        .unwrap();
    // binary-trees did not run: no verdict.
    assert!(target["value"].is_null(), "{target}");
    let _ = std::fs::remove_dir_all(&dir);
}
