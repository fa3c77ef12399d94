//! The `movegc bench` suite's workloads at their smoke sizes, under every
//! strategy: each run must verify its data, collect at least twice and
//! report sane measurements; the verifiers must catch a corrupted heap;
//! parameter specs must round-trip. The default sizes run in the ignored
//! `default_sizes` test (`cargo test --release -p movegc-bench --test
//! workloads -- --ignored --nocapture`), which prints timings; set
//! `WORKLOAD=fragmenter,threads,large-refs,..` to run only some workloads,
//! `WORKLOAD_BT_N` to change binary-trees' `n` and `WORKLOAD_CYCLES=1` to
//! print every cycle.

use std::time::Instant;

use movegc::FaultMode;
use movegc::Strategy;
use movegc_bench::record::{RunRecord, WorkloadOutput};
use movegc_bench::suite::{self, Job};
use movegc_bench::{binary_trees, fragmenter, gcbench, lrefs, threads};

const STRATEGIES: [Strategy; 3] = [
    Strategy::ConcurrentMove,
    Strategy::ConcurrentCopy,
    Strategy::StopTheWorld,
];

/// Checks every run must pass.
fn sane(name: &str, strategy: Strategy, out: &WorkloadOutput) {
    let n = out.cycles.len();
    assert!(n >= 2, "{name} {strategy:?}: only {n} collections");
    assert!(!out.wall.is_zero(), "{name} {strategy:?}: zero wall time");
    assert!(!out.check.is_empty());
    assert!(
        out.cycles.iter().any(|c| c.pages_compacted > 0),
        "{name} {strategy:?}: no cycle compacted a page: {:?}",
        out.cycles
    );
    assert!(
        out.cycles.iter().all(|c| c.strategy.is_some()),
        "{name} {strategy:?}: a cycle without a strategy"
    );
    let numbers: Vec<u64> = out.cycles.iter().map(|c| c.cycle).collect();
    let expected: Vec<u64> = (1..=n as u64).collect();
    assert_eq!(numbers, expected, "{name} {strategy:?}: cycles missing");
    if let Some(h) = &out.op_latency_us {
        assert!(!h.is_empty(), "{name} {strategy:?}: no operation timed");
    }
}

fn summary(name: &str, strategy: Strategy, out: &WorkloadOutput) -> String {
    let used = out.cycles.last().and_then(|c| c.strategy);
    let pause_max = out.cycles.iter().map(|c| c.pause).max().unwrap_or_default();
    let faults: usize = out.cycles.iter().map(|c| c.faults).sum();
    let op = out
        .op_latency_us
        .as_ref()
        .map(|h| {
            format!(
                " op p50/p99/max {}/{}/{} us",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.max()
            )
        })
        .unwrap_or_default();
    format!(
        "{name:<13} {:<16} used {:<16} wall {:>7.3} s, {:>3} cycles, pause max {:>7.2} ms, {faults} faults{op}; {}",
        strategy.name(),
        used.map_or("-", Strategy::name),
        out.wall.as_secs_f64(),
        out.cycles.len(),
        pause_max.as_secs_f64() * 1e3,
        out.check
    )
}

// ---------------------------------------------------------------------------
// fragmenter

#[test]
fn fragmenter_quick_under_every_strategy() {
    for s in STRATEGIES {
        let out = fragmenter::run(&fragmenter::Params::quick(), s, FaultMode::Sigbus)
            .unwrap_or_else(|e| panic!("fragmenter {s:?}: {e}"));
        sane("fragmenter", s, &out);
        eprintln!("{}", summary("fragmenter", s, &out));
    }
}

#[test]
fn fragmenter_detects_corruption() {
    let mut p = fragmenter::Params::quick();
    p.rounds = 4;
    let e = fragmenter::run_corrupted(&p, Strategy::StopTheWorld, FaultMode::Sigbus)
        .expect_err("a corrupted object must fail the verification");
    assert!(e.contains("verification failed"), "{e}");
}

#[test]
fn fragmenter_spec_round_trips() {
    for p in [
        fragmenter::Params::default(),
        fragmenter::Params::quick(),
        fragmenter::Params {
            objects: 1234,
            rounds: 7,
            replace: 0.125,
            batch: 3,
            min_free_mib: 5,
            seed: 99,
            capacity_mib: 96,
            gc_cpu_target_pct: 30,
            conc_threads: 1,
            pacing_ms: 0,
        },
    ] {
        assert_eq!(fragmenter::Params::parse_spec(&p.to_spec()), Ok(p));
    }
    assert_eq!(
        fragmenter::Params::parse_spec(""),
        Ok(fragmenter::Params::default())
    );
    assert!(fragmenter::Params::parse_spec("replace=0").is_err());
    assert!(fragmenter::Params::parse_spec("objects=x").is_err());
    assert!(fragmenter::Params::parse_spec("bogus=1").is_err());
    assert!(fragmenter::Params::parse_spec("rounds").is_err());
    assert!(fragmenter::Params::parse_spec("gc_cpu_target_pct=100").is_err());
    assert!(fragmenter::Params::parse_spec("capacity_mib=1").is_err());
    let tight = fragmenter::Params::parse_spec("capacity_mib=96").unwrap();
    assert_eq!(tight.capacity(), 96 << 20);
}

// ---------------------------------------------------------------------------
// gcbench

#[test]
fn gcbench_quick_under_every_strategy() {
    // 1 MiB between collections (quick uses 4): several cycles even when a
    // loaded machine makes each concurrent cycle span much of the run.
    let p = gcbench::Params {
        min_free_mib: 1,
        max_depth: 14,
        ..gcbench::Params::quick()
    };
    for s in STRATEGIES {
        let out =
            gcbench::run(&p, s, FaultMode::Sigbus).unwrap_or_else(|e| panic!("gcbench {s:?}: {e}"));
        sane("gcbench", s, &out);
        eprintln!("{}", summary("gcbench", s, &out));
    }
}

#[test]
fn gcbench_detects_corruption() {
    let p = gcbench::Params::tiny();
    gcbench::run(&p, Strategy::StopTheWorld, FaultMode::Sigbus).expect("an intact run");
    let e = gcbench::run_corrupted(&p, Strategy::StopTheWorld, FaultMode::Sigbus)
        .expect_err("a cut long-lived tree must fail the verification");
    assert!(e.contains("long-lived tree has"), "{e}");
}

#[test]
fn gcbench_spec_round_trips() {
    for p in [
        gcbench::Params::default(),
        gcbench::Params::quick(),
        gcbench::Params {
            stretch_depth: 9,
            long_lived_depth: 7,
            array_size: 2002,
            min_depth: 3,
            max_depth: 9,
            min_free_mib: 2,
            skew_kib: 512,
        },
    ] {
        assert_eq!(gcbench::Params::parse_spec(&p.to_spec()), Ok(p));
    }
    assert_eq!(
        gcbench::Params::parse_spec(""),
        Ok(gcbench::Params::default())
    );
    assert!(gcbench::Params::parse_spec("max_depth=20").is_err());
    assert!(gcbench::Params::parse_spec("array=2001").is_err());
    assert!(gcbench::Params::parse_spec("min_depth=17").is_err());
    assert!(gcbench::Params::parse_spec("depth=3").is_err());
}

// ---------------------------------------------------------------------------
// threads

#[test]
fn threads_quick_under_every_strategy() {
    for s in STRATEGIES {
        let out = threads::run(&threads::Params::quick(), s, FaultMode::Sigbus)
            .unwrap_or_else(|e| panic!("threads {s:?}: {e}"));
        sane("threads", s, &out);
        eprintln!("{}", summary("threads", s, &out));
    }
}

#[test]
fn threads_with_a_handler_thread_and_three_mutators() {
    let p = threads::Params {
        threads: 3,
        steps: 60_000,
        ..threads::Params::quick()
    };
    let out = threads::run(&p, Strategy::ConcurrentMove, FaultMode::HandlerThread)
        .unwrap_or_else(|e| panic!("threads, handler thread: {e}"));
    sane("threads", Strategy::ConcurrentMove, &out);
    eprintln!("{}", summary("threads/h", Strategy::ConcurrentMove, &out));
}

#[test]
fn threads_detects_corruption() {
    let p = threads::Params {
        steps: 5000,
        ..threads::Params::quick()
    };
    let e = threads::run_corrupted(&p, Strategy::StopTheWorld, FaultMode::Sigbus)
        .expect_err("a corrupted shared object must fail the verification");
    assert!(e.contains("is corrupt"), "{e}");
}

#[test]
fn threads_spec_round_trips() {
    for p in [
        threads::Params::default(),
        threads::Params::quick(),
        threads::Params {
            threads: 3,
            ring: 10,
            shared: 3,
            steps: 1,
            batch: 2,
            shared_every: 9,
            min_free_mib: 7,
            seed: 5,
        },
    ] {
        assert_eq!(threads::Params::parse_spec(&p.to_spec()), Ok(p));
    }
    assert_eq!(
        threads::Params::parse_spec(""),
        Ok(threads::Params::default())
    );
    assert!(threads::Params::parse_spec("threads=0").is_err());
    assert!(threads::Params::parse_spec("threads=4,shared=3").is_err());
    assert!(threads::Params::parse_spec("batch=0").is_err());
    assert!(threads::Params::parse_spec("color=red").is_err());
}

// ---------------------------------------------------------------------------
// binary-trees

#[test]
fn binary_trees_quick_under_every_strategy_and_api() {
    for s in STRATEGIES {
        for api in binary_trees::Api::ALL {
            let out = binary_trees::run_workload(
                binary_trees::WORKLOAD_QUICK_N,
                api,
                0,
                s,
                FaultMode::Sigbus,
            )
            .unwrap_or_else(|e| panic!("binary-trees {s:?} {api:?}: {e}"));
            sane("binary-trees", s, &out);
            assert!(out.op_latency_us.is_none());
            eprintln!("{} ({})", summary("binary-trees", s, &out), api.name());
        }
    }
}

#[test]
fn binary_trees_check_detects_a_wrong_line() {
    let n = 10;
    let mut lines = binary_trees::expected_checks(n);
    assert_eq!(binary_trees::check_lines(n, &lines), Ok(()));
    assert_eq!(lines[2], "256\t trees of depth 6\t check: 32512");
    lines[2] = lines[2].replace("32512", "32511");
    let e = binary_trees::check_lines(n, &lines).expect_err("a tampered check value");
    assert!(e.contains("line 2"), "{e}");
    let short = &binary_trees::expected_checks(n)[..3];
    assert!(binary_trees::check_lines(n, short).is_err());
    let too_deep = binary_trees::MAX_N + 1;
    assert!(binary_trees::run_workload(
        too_deep,
        binary_trees::Api::Typed,
        0,
        Strategy::StopTheWorld,
        FaultMode::Sigbus
    )
    .is_err());
}

// ---------------------------------------------------------------------------
// large-refs

/// A tiny large-refs run: a 20 000-slot array, 3 rounds.
fn large_refs_tiny() -> lrefs::Params {
    lrefs::Params {
        entries: 20_000,
        rounds: 3,
        ..lrefs::Params::quick()
    }
}

#[test]
fn large_refs_tiny_under_every_strategy() {
    let p = large_refs_tiny();
    let mut checks = Vec::new();
    for s in STRATEGIES {
        let out = lrefs::run(&p, s, FaultMode::Sigbus)
            .unwrap_or_else(|e| panic!("large-refs {s:?}: {e}"));
        sane("large-refs", s, &out);
        assert_eq!(out.cycles.len(), p.rounds, "one collection per round");
        for c in &out.cycles {
            assert_eq!(c.trigger, Some(movegc::Trigger::Explicit));
            assert!(
                c.large_objects_live >= 1,
                "the array is a live large object"
            );
            assert!(c.update_roots > std::time::Duration::ZERO);
            assert!(
                c.update_roots <= c.pause,
                "update_roots is inside the pause"
            );
        }
        eprintln!("{}", summary("large-refs", s, &out));
        checks.push(out.check);
    }
    // Same parameters, same data: every strategy finds the same digest.
    assert!(checks.windows(2).all(|w| w[0] == w[1]), "{checks:?}");
    assert!(checks[0].contains(&format!("{:016x}", lrefs::expected_digest(&p))));
}

#[test]
fn large_refs_detects_a_wrong_reference() {
    for s in [Strategy::ConcurrentMove, Strategy::StopTheWorld] {
        let e = lrefs::run_corrupted(&large_refs_tiny(), s, FaultMode::Sigbus)
            .expect_err("a slot pointing at its neighbour's node must fail the verification");
        assert!(e.contains("verification failed"), "{e}");
        assert!(e.contains("slot 9999 holds value"), "{e}");
    }
}

#[test]
fn large_refs_runs_as_a_suite_job() {
    // The path `movegc bench` takes in its child process: spec, run,
    // record (with the per-cycle update_roots and the final pause).
    let p = large_refs_tiny();
    for s in STRATEGIES {
        let job = Job {
            workload: suite::Workload::LargeRefs.name().into(),
            strategy: s.name().into(),
            fault_mode: "sigbus".into(),
            spec: p.to_spec(),
            repeat: 0,
            generational: false,
            remembered_set: "cards".into(),
            poison: false,
            poison_stress: false,
        };
        let r: RunRecord = suite::run_job(&job).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(r.workload, "large-refs");
        assert_eq!(r.cycles, p.rounds);
        assert_eq!(r.per_cycle.len(), p.rounds);
        assert!(r.per_cycle.iter().all(|c| c.update_roots_ms > 0.0
            && c.update_roots_ms + c.prepare_ms <= c.pause_ms
            && c.large_objects_live >= 1));
        assert!(r.final_pause_ms.p50 > 0.0 && r.final_pause_ms.p50 <= r.final_pause_ms.max);
        assert!(r.update_roots_ms.max <= r.final_pause_ms.max);
        assert!(r.check.contains("digest"), "{}", r.check);
    }
    let bad = Job {
        workload: "large-refs".into(),
        strategy: "stw".into(),
        fault_mode: "sigbus".into(),
        spec: "entries=1".into(),
        repeat: 0,
        generational: false,
        remembered_set: "cards".into(),
        poison: false,
        poison_stress: false,
    };
    assert!(suite::run_job(&bad).unwrap_err().contains("entries"));
}

#[test]
fn large_refs_spec_round_trips() {
    for p in [
        lrefs::Params::default(),
        lrefs::Params::quick(),
        lrefs::Params {
            entries: 777,
            rounds: 9,
            replace: 0.125,
            seed: 3,
        },
    ] {
        assert_eq!(lrefs::Params::parse_spec(&p.to_spec()), Ok(p));
    }
    assert_eq!(lrefs::Params::parse_spec(""), Ok(lrefs::Params::default()));
    assert_eq!(
        lrefs::Params::parse_spec("entries=4M").map(|p| p.entries),
        Ok(4_000_000)
    );
    assert!(lrefs::Params::parse_spec("replace=1").is_err());
    assert!(lrefs::Params::parse_spec("rounds=0").is_err());
    assert!(lrefs::Params::parse_spec("entries=x").is_err());
    assert!(lrefs::Params::parse_spec("nodes=3").is_err());
}

// ---------------------------------------------------------------------------
// default sizes, timed

/// Runs `f` for every strategy and prints the timing.
fn timed(name: &str, mut f: impl FnMut(Strategy) -> Result<WorkloadOutput, String>) {
    for s in STRATEGIES {
        let t = Instant::now();
        let out = f(s).unwrap_or_else(|e| panic!("{name} {s:?}: {e}"));
        sane(name, s, &out);
        println!(
            "{} (total {:.3} s)",
            summary(name, s, &out),
            t.elapsed().as_secs_f64()
        );
        if std::env::var_os("WORKLOAD_CYCLES").is_some() {
            for c in &out.cycles {
                println!(
                    "  #{:<3} {:?} pause {:.2} ms (ttsp {:.2} mark {:.2} prepare {:.2} flip {:.2} compact {:.2} roots {:.2} release {:.2}) compaction {:.2} ms live {} KiB used_before {} KiB pages {} faults {}",
                    c.cycle,
                    c.trigger,
                    c.pause.as_secs_f64() * 1e3,
                    c.time_to_safepoint.as_secs_f64() * 1e3,
                    c.mark.as_secs_f64() * 1e3,
                    c.prepare.as_secs_f64() * 1e3,
                    c.flip.as_secs_f64() * 1e3,
                    c.compact.as_secs_f64() * 1e3,
                    c.update_roots.as_secs_f64() * 1e3,
                    c.release.as_secs_f64() * 1e3,
                    c.compaction.as_secs_f64() * 1e3,
                    c.live_bytes >> 10,
                    c.used_before >> 10,
                    c.pages_compacted,
                    c.faults
                );
            }
        }
    }
}

#[test]
#[ignore = "default sizes: seconds per run in release; run with --release -- --ignored"]
fn default_sizes() {
    let only = std::env::var("WORKLOAD").unwrap_or_default();
    let want = |n: &str| only.is_empty() || only.split(',').any(|o| o == n);
    if want("fragmenter") {
        timed("fragmenter", |s| {
            fragmenter::run(&fragmenter::Params::default(), s, FaultMode::Sigbus)
        });
    }
    if want("binary-trees") {
        let n = std::env::var("WORKLOAD_BT_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(binary_trees::WORKLOAD_N);
        timed("binary-trees", |s| {
            binary_trees::run_workload(n, binary_trees::Api::Typed, 0, s, FaultMode::Sigbus)
        });
    }
    if want("threads") {
        timed("threads", |s| {
            threads::run(&threads::Params::default(), s, FaultMode::Sigbus)
        });
    }
    if want("gcbench") {
        timed("gcbench", |s| {
            gcbench::run(&gcbench::Params::default(), s, FaultMode::Sigbus)
        });
    }
    if want("large-refs") {
        timed("large-refs", |s| {
            lrefs::run(&lrefs::Params::default(), s, FaultMode::Sigbus)
        });
    }
}
