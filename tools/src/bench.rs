//! `movegc bench`: the MOVE-vs-COPY suite, side by side in one run.
//!
//! The parent process probes the machine, plans the jobs
//! (`movegc_bench::suite::plan`), runs each in a fresh child process (this
//! binary re-run with `MOVEGC_BENCH_JOB` set, see [`child_main`]) behind a
//! progress bar, then prints the table (or the JSON document with
//! `--json`) and writes `results.json`, `report.md` and the SVG plots to
//! the output directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use movegc_bench::child::run_json_child;
use movegc_bench::record::RunRecord;
use movegc_bench::report::{self, Meta, Report};
use movegc_bench::suite::{self, Job, Options, Workload, JOB_ENV};
use movegc_gc::concurrent::FaultMode;
use movegc_gc::probe::{self, Capability};
use movegc_gc::Strategy;

/// Options of `movegc bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Smoke sizes and one repeat: the whole suite in well under 30 s.
    #[arg(long)]
    quick: bool,
    /// Print the JSON document (results.json) on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Workloads to run, comma-separated (compact, compact-mutators,
    /// compact-prefix, fragmenter, binary-trees, gcbench, threads, large-refs,
    /// old-writes). Default: all.
    #[arg(long, value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Strategies to compare, comma-separated (move, copy, stw).
    /// Default: all three.
    #[arg(long, value_delimiter = ',')]
    strategies: Option<Vec<String>>,
    /// Heap sizes of the compact workload in MiB, comma-separated
    /// (default 64,128,256; quick 32,64). The largest is also the
    /// compact-mutators heap.
    #[arg(long, value_delimiter = ',')]
    heap: Option<Vec<usize>>,
    /// Mutator threads of the compact-mutators (at most 2) and threads
    /// workloads.
    #[arg(long)]
    threads: Option<usize>,
    /// Repeats (default 2; quick 1). Strategies alternate within a repeat.
    #[arg(long)]
    repeat: Option<usize>,
    /// Phases of binary-trees and gcbench (default 4; quick 1): phase k
    /// allocates k MiB of garbage first, so that collections fall at
    /// other places in the workloads' trees (both are deterministic; one
    /// phase measures one place).
    #[arg(long)]
    phases: Option<usize>,
    /// Fault modes for compact-mutators, comma-separated (sigbus,
    /// handler-thread). Default: both.
    #[arg(long, value_delimiter = ',')]
    fault_modes: Option<Vec<String>>,
    /// Dense-prefix shares of the compact-prefix workload (the share of
    /// the heap, from its bottom, that is all live), comma-separated, each
    /// in [0, 1). Default: 0.25,0.5,0.75.
    #[arg(long, value_delimiter = ',')]
    compact_prefix: Option<Vec<String>>,
    /// Reference-array sizes of the large-refs workload, comma-separated,
    /// with an optional k or M suffix (default 12M; quick 1M). Several
    /// sizes make a sweep: the final_pause_vs_large_refs plot.
    #[arg(long, value_delimiter = ',', conflicts_with = "large_refs_sweep")]
    large_refs_entries: Option<Vec<String>>,
    /// Run large-refs at 1M, 2M, 4M, 8M and 12M entries (quick: 250k,
    /// 500k, 1M) instead of one size: how the final pause grows with the
    /// references held in a large object. About 75 s per repeat on two
    /// cores (the default's one size: about 35 s).
    #[arg(long)]
    large_refs_sweep: bool,
    /// Young collections (HeapConfig::generational): off, on, or both
    /// (every configuration twice, side by side; the report's params say
    /// young=on). Default: off.
    #[arg(long, value_parser = ["off", "on", "both"])]
    generational: Option<String>,
    /// The remembered-set builder of young collections
    /// (HeapConfig::remembered_set): cards (a card-marking barrier), wp
    /// (the kernel's dirty-page tracking, userfaultfd WP_ASYNC +
    /// PAGEMAP_SCAN; falls back to cards where unavailable), or both
    /// (every generational configuration twice, side by side; the
    /// report's params say young=on for cards, young=wp). Runs without
    /// young collections run once. The old-writes workload always runs
    /// with young collections. Default: cards.
    #[arg(long, value_parser = ["cards", "wp", "both"])]
    remembered_set: Option<String>,
    /// The stale-reference mode (HeapConfig::poison_freed): off, on, or
    /// both (every configuration twice, side by side: the mode's
    /// overhead; the report's params say poison=on); stress-both: off and
    /// with its stress option (every cycle moves every object,
    /// stop-the-world; params poison=stress). Default: off.
    #[arg(long, value_parser = ["off", "on", "both", "stress-both"])]
    poison: Option<String>,
    /// The APIs binary-trees, gcbench and large-refs are written against, comma-separated, side by
    /// side: typed (#[derive(Object)], views), untyped (handles and
    /// layouts), engine (the collector directly: the yardstick of both
    /// APIs' overhead), or all. Default: typed.
    #[arg(long, value_delimiter = ',')]
    api: Option<Vec<String>>,
    /// Output directory (default: target/movegc-bench/TIMESTAMP, the time of the run).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run nothing: re-render the table, report.md and plots of an existing
    /// results.json (into --out, default: the file's directory).
    #[arg(long, value_name = "RESULTS_JSON")]
    render: Option<PathBuf>,
}

/// `--render`: the outputs of an earlier run, made again from its JSON.
fn render(a: &BenchArgs, path: &Path) -> i32 {
    let report: Report = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<Report>(&s).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("movegc bench: reading {}: {e}", path.display());
            return 1;
        }
    };
    // The summary is recomputed: older files may predate a field.
    let report = Report::new(report.meta, report.results);
    let dir = a.out.clone().unwrap_or_else(|| {
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    match write_outputs(&report, &dir) {
        Ok(files) => files
            .iter()
            .for_each(|f| eprintln!("wrote {}", f.display())),
        Err(e) => {
            eprintln!("movegc bench: {e}");
            return 1;
        }
    }
    print!("{}", report::text_table(&report));
    0
}

/// Runs the job named by `MOVEGC_BENCH_JOB` if it is set (this process is
/// a child of `movegc bench`) and exits; returns otherwise.
pub fn child_main() {
    let Ok(job) = std::env::var(JOB_ENV) else {
        return;
    };
    let code = match serde_json::from_str::<Job>(&job)
        .map_err(|e| format!("bad {JOB_ENV}: {e}"))
        .and_then(|j| suite::run_job(&j))
    {
        Ok(rec) => {
            println!("{}", serde_json::to_string(&rec).expect("JSON"));
            0
        }
        Err(e) => {
            eprintln!("movegc bench: job failed: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// Turns the arguments into suite options; `Err` is a usage message.
fn options(a: &BenchArgs) -> Result<Options, String> {
    let mut o = Options::new(a.quick);
    if let Some(w) = &a.workloads {
        o.workloads = w
            .iter()
            .map(|s| {
                Workload::parse(s).ok_or_else(|| {
                    let names: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                    format!("unknown workload {s:?} (valid: {})", names.join(", "))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(s) = &a.strategies {
        o.strategies = s
            .iter()
            .map(|s| {
                Strategy::parse(s).ok_or_else(|| {
                    format!("unknown strategy {s:?} (valid: move, copy, stw or their full names)")
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(m) = &a.fault_modes {
        o.fault_modes = m
            .iter()
            .map(|s| {
                movegc_bench::compact::parse_fault_mode(s)
                    .ok_or_else(|| format!("unknown fault mode {s:?}"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(h) = &a.heap {
        o.heaps_mib = h.clone();
    }
    if let Some(p) = &a.compact_prefix {
        o.compact_prefixes = p
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("--compact-prefix: {s:?} is not a number"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(t) = a.threads {
        o.threads = t;
    }
    if let Some(r) = a.repeat {
        o.repeat = r;
    }
    if let Some(p) = a.phases {
        o.phases = p;
    }
    if a.large_refs_sweep {
        o.large_refs_sweep();
    }
    for (arg, set) in [
        (&a.generational, &mut o.generational),
        (&a.poison, &mut o.poison),
    ] {
        match arg.as_deref() {
            Some("on") => *set = vec![true],
            Some("both") => *set = vec![false, true],
            _ => {}
        }
    }
    if let Some(r) = &a.remembered_set {
        use movegc_gc::RememberedSet;
        o.remembered_sets = match r.as_str() {
            "both" => vec![RememberedSet::Cards, RememberedSet::WriteProtect],
            name => vec![RememberedSet::from_name(name)
                .ok_or_else(|| format!("unknown remembered set {name:?}"))?],
        };
    }
    if a.poison.as_deref() == Some("stress-both") {
        o.poison = vec![false, true];
        o.poison_stress = true;
    }
    if let Some(apis) = &a.api {
        use movegc_bench::binary_trees::Api;
        o.apis = if apis.iter().any(|s| s == "all") {
            Api::ALL.to_vec()
        } else {
            apis.iter()
                .map(|s| Api::parse(s).ok_or_else(|| format!("unknown API {s:?}")))
                .collect::<Result<_, _>>()?
        };
    }
    if let Some(e) = &a.large_refs_entries {
        o.large_refs_entries = e
            .iter()
            .map(|s| movegc_bench::lrefs::parse_count(s))
            .collect::<Result<_, _>>()?;
    }
    o.validate()?;
    Ok(o)
}

/// Drops what this machine cannot run, saying why on stderr.
fn restrict_to_machine(o: &mut Options, cap: Capability, reason: &str) {
    let drop = |o: &mut Options, s: Strategy| {
        if o.strategies.contains(&s) {
            eprintln!("skipping {}: {reason}", s.name());
            o.strategies.retain(|&x| x != s);
        }
    };
    match cap {
        Capability::ConcurrentMove => {}
        Capability::ConcurrentCopy => drop(o, Strategy::ConcurrentMove),
        Capability::StopTheWorld => {
            drop(o, Strategy::ConcurrentMove);
            drop(o, Strategy::ConcurrentCopy);
        }
    }
    let concurrent = cap != Capability::StopTheWorld;
    if concurrent && o.fault_modes.contains(&FaultMode::Sigbus) && !probe_sigbus_ok() {
        eprintln!("skipping the sigbus fault mode: UFFD_FEATURE_SIGBUS not granted");
        o.fault_modes.retain(|&m| m != FaultMode::Sigbus);
    }
}

fn probe_sigbus_ok() -> bool {
    use movegc_gc::uffd::{Features, OpenOptions, Uffd};
    Uffd::open(&OpenOptions::new().features(Features::SIGBUS))
        .map(|u| u.features().contains(Features::SIGBUS))
        .unwrap_or(false)
}

/// `git rev-parse --short HEAD` of the current directory, if any.
fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if !out.status.success() || rev.is_empty() {
        return None;
    }
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}

/// The default output directory: `$CARGO_TARGET_DIR` or `./target`, then
/// `movegc-bench/<timestamp>`.
fn default_out(timestamp: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target
        .join("movegc-bench")
        .join(timestamp.replace(':', "-"))
}

/// Writes results.json, the plots and report.md into `dir`.
fn write_outputs(r: &Report, dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(r).expect("JSON");
    let results = dir.join("results.json");
    std::fs::write(&results, json + "\n")
        .map_err(|e| format!("writing {}: {e}", results.display()))?;
    let plots = report::write_plots(r, dir)?;
    let md = dir.join("report.md");
    std::fs::write(&md, report::markdown(r, &plots))
        .map_err(|e| format!("writing {}: {e}", md.display()))?;
    let mut files = vec![results, md];
    files.extend(plots);
    Ok(files)
}

/// `movegc bench`. Returns the process exit code.
pub fn run(a: &BenchArgs) -> i32 {
    if let Some(path) = &a.render {
        return render(a, path);
    }
    let mut o = match options(a) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("movegc bench: {e}");
            return 2;
        }
    };
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let p = probe::run();
    eprintln!(
        "probe: {} ({}); kernel {}, userfaultfd via {}",
        p.capability.name(),
        p.reason,
        p.kernel,
        p.open_path.as_deref().unwrap_or("none")
    );
    restrict_to_machine(&mut o, p.capability, &p.reason);
    if o.strategies.is_empty() {
        eprintln!("movegc bench: no strategy left to run on this machine");
        return 1;
    }
    let mut meta = Meta::collect(&command_line);
    meta.uffd_features = p.granted.names().iter().map(|s| s.to_string()).collect();
    meta.probe_strategy = format!("{} ({})", p.capability.name(), p.reason);
    meta.git_revision = git_revision();
    meta.quick = o.quick;

    let jobs = suite::plan(&o);
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("progress template"),
    );
    let t = Instant::now();
    let mut results: Vec<RunRecord> = Vec::new();
    let mut failed = Vec::new();
    for job in &jobs {
        bar.set_message(job.label());
        match run_json_child::<RunRecord>(&job.child_env()) {
            // The child's record already says `young=on` (`young=wp`)
            // for a generational job (`suite::run_job`).
            Ok(r) => results.push(r),
            Err(e) => {
                bar.println(format!("FAILED {}: {e}", job.label()));
                failed.push(job.label());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "{} runs in {:.1} s{}",
        jobs.len(),
        t.elapsed().as_secs_f64(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(", {} FAILED", failed.len())
        }
    );

    let out_dir = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&meta.timestamp));
    let report = Report::new(meta, results);
    match write_outputs(&report, &out_dir) {
        Ok(files) => {
            for f in files {
                eprintln!("wrote {}", f.display());
            }
        }
        Err(e) => {
            eprintln!("movegc bench: {e}");
            return 1;
        }
    }
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    if a.json {
        let _ = writeln!(
            w,
            "{}",
            serde_json::to_string_pretty(&report).expect("JSON")
        );
    } else {
        let _ = write!(w, "{}", report::text_table(&report));
    }
    if failed.is_empty() {
        0
    } else {
        eprintln!("failed runs: {}", failed.join(", "));
        1
    }
}
