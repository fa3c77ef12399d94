//! binary-trees (or GCBench): movegc against `Box` + jemalloc, each run in
//! its own child process so that peak RSS and CPU time are per
//! implementation.
//!
//! ```text
//! cargo bench -p movegc-bench --bench binary_trees --features jemalloc [-- DEPTH]
//!   BT_PROGRAM=gcbench the program: `binary-trees` (the default) or
//!                      `gcbench` (GCBench's classic constants, the suite's
//!                      `gcbench` workload; the depth is then ignored)
//!   BT_DEPTH=21        tree depth (or the first non-flag argument; default 21)
//!   BT_REPEAT=3        runs per implementation (alternating; default 3)
//!   BT_IMPLS="box;movegc;movegc-default"
//!                      implementations, `;`-separated: `box`, `movegc` (the
//!                      tuned configuration below), `movegc-default` (the
//!                      builder's defaults), or `movegc:key=value,...` for an
//!                      explicit configuration on top of the defaults, with
//!                      keys capacity_mib, min_free_mib, growth, tlab_kib,
//!                      huge (0/1), threads, dense (a fraction or `none`),
//!                      strategy (`stw`, `move`, `copy`), young (0/1:
//!                      young collections), remset (`cards`, `wp`: their
//!                      remembered-set builder), keep (0/1: young cycles
//!                      keep the old region in place), prefill (0/1:
//!                      concurrent MOVE prefills the allocation region),
//!                      cpu_target (the
//!                      GC CPU target: a share, or `off` for a fixed
//!                      `min_free` budget), scheme
//!                      (`per-node`, the scope batch `levels` 1.., `typed`:
//!                      the typed API with the check in a view, or
//!                      `engine`: the same algorithm on the collector
//!                      engine, no embedding API; GCBench too: typed or
//!                      engine, other schemes run its untyped version).
//! ```
//!
//! A child is this executable re-run with `MOVEGC_BT_CHILD=<impl>`; it runs
//! the workload once, verifies the output lines (panicking if they are
//! wrong), and prints one JSON line of measurements. The parent prints a
//! markdown table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use movegc::{Heap, Strategy};
use movegc_bench::binary_trees::{self, Scheme};
use movegc_bench::env_or;
use movegc_bench::gcbench;
use movegc_bench::spec::{flag, Spec};
use movegc_gc::{GcHeap, HeapConfig};
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CHILD_ENV: &str = "MOVEGC_BT_CHILD";
const PROGRAM_ENV: &str = "BT_PROGRAM";

/// The program the children run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Program {
    BinaryTrees,
    GcBench,
}

impl Program {
    fn from_env() -> Program {
        match std::env::var(PROGRAM_ENV).as_deref() {
            Err(_) | Ok("binary-trees") => Program::BinaryTrees,
            Ok("gcbench") => Program::GcBench,
            Ok(other) => panic!("{PROGRAM_ENV}={other:?}: expected 'binary-trees' or 'gcbench'"),
        }
    }
}
const DEFAULT_DEPTH: u32 = 21;
const DEFAULT_REPEAT: usize = 3;
const DEFAULT_IMPLS: &str = "box;movegc;movegc-default";

/// The configuration `movegc` stands for, chosen by measurement at depth 21
/// on a 2-core machine: collect when the heap reaches 8x the live size (at
/// least 256 MiB more: 21 cycles instead of 145, ~1 GiB peak RSS), huge
/// pages (50x fewer page faults), 256 KiB TLABs, and the stop-the-world
/// collector (when this was tuned the concurrent strategies aborted on this
/// kernel; re-measure them with `BT_IMPLS="movegc:...,strategy=move"`).
/// `growth=16` was ~10% faster again at 1.6 GiB peak RSS.
const TUNED: &str = "movegc:growth=8,min_free_mib=256,huge=1,tlab_kib=256,strategy=stw";

/// One child's measurements.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sample {
    implementation: String,
    config: String,
    depth: u32,
    wall_s: f64,
    user_s: f64,
    sys_s: f64,
    cpu_s: f64,
    maxrss_mib: f64,
    minor_faults: u64,
    gc_cycles: u64,
    pause_p50_ms: f64,
    pause_p99_ms: f64,
    pause_max_ms: f64,
    pause_total_ms: f64,
    /// The collector's CPU time (`HeapStats::gc_cpu`) and its share of
    /// the process's.
    gc_cpu_s: f64,
    gc_cpu_share: f64,
    /// Allocations that waited for a collection.
    alloc_stalls: u64,
    /// Summed phase times over all cycles, in ms.
    phases_ms: BTreeMap<String, f64>,
    live_mib_last: f64,
    /// Strategies the cycles actually used (a concurrent one may fall back).
    strategies: Vec<String>,
    lines_hash: String,
    verified: bool,
}

/// A movegc configuration parsed from an implementation spec.
#[derive(Clone, Debug, Default)]
struct MovegcConfig {
    capacity_mib: Option<usize>,
    min_free_mib: Option<usize>,
    growth: Option<f64>,
    tlab_kib: Option<usize>,
    huge: Option<bool>,
    threads: Option<usize>,
    dense: Option<Option<f64>>,
    strategy: Option<Strategy>,
    cpu_target: Option<Option<f64>>,
    young: Option<bool>,
    /// The remembered-set builder of young collections.
    remset: Option<movegc::RememberedSet>,
    /// Young cycles keep the old region in place.
    keep: Option<bool>,
    /// Concurrent MOVE prefills the allocation region.
    prefill: Option<bool>,
    scheme: Scheme,
    /// `scheme=engine`: run on the engine directly.
    engine: bool,
}

impl MovegcConfig {
    fn parse(spec: &str) -> Result<MovegcConfig, String> {
        let s: Spec = spec.parse()?;
        s.only(&[
            "capacity_mib",
            "min_free_mib",
            "growth",
            "tlab_kib",
            "huge",
            "threads",
            "dense",
            "strategy",
            "cpu_target",
            "young",
            "remset",
            "keep",
            "prefill",
            "scheme",
        ])?;
        let some = |v: &str| v.parse().ok().map(Some);
        Ok(MovegcConfig {
            capacity_mib: s.read_or("capacity_mib", None, some)?,
            min_free_mib: s.read_or("min_free_mib", None, some)?,
            growth: s.read_or("growth", None, |v| v.parse().ok().map(Some))?,
            tlab_kib: s.read_or("tlab_kib", None, some)?,
            huge: s.read_or("huge", None, |v| flag(v).map(Some))?,
            threads: s.read_or("threads", None, some)?,
            dense: s.read_or("dense", None, |v| match v {
                "none" => Some(Some(None)),
                _ => v.parse().ok().map(|f| Some(Some(f))),
            })?,
            strategy: s.read_or("strategy", None, |v| Strategy::parse(v).map(Some))?,
            cpu_target: s.read_or("cpu_target", None, |v| match v {
                "off" => Some(Some(None)),
                _ => v.parse().ok().map(|f| Some(Some(f))),
            })?,
            young: s.read_or("young", None, |v| flag(v).map(Some))?,
            remset: s.read_or("remset", None, |v| {
                movegc::RememberedSet::from_name(v).map(Some)
            })?,
            keep: s.read_or("keep", None, |v| flag(v).map(Some))?,
            prefill: s.read_or("prefill", None, |v| flag(v).map(Some))?,
            scheme: s.read_or("scheme", Scheme::default(), |v| match v {
                "per-node" => Some(Scheme::ScopePerNode),
                "typed" => Some(Scheme::Typed),
                "engine" => Some(Scheme::default()),
                _ => v.parse().ok().map(|levels| Scheme::Batched { levels }),
            })?,
            engine: s.read_or("scheme", false, |v| Some(v == "engine"))?,
        })
    }

    /// The engine's configuration for what [`build`](Self::build) makes:
    /// the same fields on the same defaults (the builder's `min_free` is
    /// a quarter of the capacity, at most 32 MiB, when not given).
    fn engine_config(&self) -> HeapConfig {
        let mut c = HeapConfig::default();
        if let Some(v) = self.capacity_mib {
            c.capacity = v << 20;
        }
        c.min_free = match self.min_free_mib {
            Some(v) => v << 20,
            None => (32 << 20).min(c.capacity / 4),
        };
        if let Some(v) = self.cpu_target {
            c.gc_cpu_target = v;
        }
        if let Some(v) = self.growth {
            c.growth_factor = v;
        }
        if let Some(v) = self.tlab_kib {
            c.tlab_size = v << 10;
        }
        if let Some(v) = self.huge {
            c.huge_pages = v;
        }
        if let Some(v) = self.threads {
            c.gc_threads = v;
        }
        if let Some(v) = self.dense {
            c.dense_prefix_threshold = v;
        }
        if let Some(v) = self.strategy {
            c.strategy = v;
        }
        if let Some(v) = self.young {
            c.generational = v;
        }
        if let Some(v) = self.remset {
            c.remembered_set = v;
        }
        if let Some(v) = self.keep {
            c.keep_old_region = v;
        }
        if let Some(v) = self.prefill {
            c.prefill_allocation = v;
        }
        c
    }

    fn build(&self) -> movegc::Result<Heap> {
        let mut b = Heap::builder();
        if let Some(v) = self.capacity_mib {
            b = b.capacity(v << 20);
        }
        if let Some(v) = self.min_free_mib {
            b = b.min_free(v << 20);
        }
        if let Some(v) = self.cpu_target {
            b = b.gc_cpu_target(v);
        }
        if let Some(v) = self.growth {
            b = b.growth_factor(v);
        }
        if let Some(v) = self.tlab_kib {
            b = b.tlab_size(v << 10);
        }
        if let Some(v) = self.huge {
            b = b.huge_pages(v);
        }
        if let Some(v) = self.threads {
            b = b.gc_threads(v);
        }
        if let Some(v) = self.dense {
            b = b.dense_prefix(v);
        }
        if let Some(v) = self.strategy {
            b = b.strategy(v);
        }
        if let Some(v) = self.young {
            b = b.generational(v);
        }
        if let Some(v) = self.remset {
            b = b.remembered_set(v);
        }
        if let Some(v) = self.keep {
            b = b.keep_old_region(v);
        }
        if let Some(v) = self.prefill {
            b = b.prefill_allocation(v);
        }
        b.build()
    }
}

/// The movegc configuration an implementation name stands for, or `None`
/// for `box`.
fn movegc_spec(name: &str) -> Result<Option<String>, String> {
    match name {
        "box" => Ok(None),
        "movegc" => Ok(Some(TUNED["movegc:".len()..].to_string())),
        "movegc-default" => Ok(Some(String::new())),
        _ => match name.strip_prefix("movegc:") {
            Some(spec) => Ok(Some(spec.to_string())),
            None => Err(format!(
                "unknown implementation {name:?} (box, movegc, movegc-default, movegc:k=v,..)"
            )),
        },
    }
}

struct Rusage {
    user: Duration,
    sys: Duration,
    maxrss_kib: u64,
    minflt: u64,
}

fn rusage() -> Rusage {
    // SAFETY: `getrusage` writes a `struct rusage` into the zeroed value we
    // pass; it has no other effect.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        let r = libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        assert_eq!(r, 0, "getrusage failed");
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Rusage {
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss as u64,
        minflt: ru.ru_minflt as u64,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs one implementation once, verifies it, prints the JSON sample.
fn child(name: &str, depth: u32, program: Program) {
    let spec = movegc_spec(name).unwrap_or_else(|e| panic!("{e}"));
    let gcbench = gcbench::Params::default();
    let t = Instant::now();
    let (lines, stats) = match (&spec, program) {
        (None, Program::BinaryTrees) => (binary_trees::run_boxed(depth).lines, None),
        (None, Program::GcBench) => {
            let (_, check) = gcbench::run_boxed(&gcbench).unwrap_or_else(|e| panic!("{e}"));
            (vec![check], None)
        }
        (Some(spec), _) if MovegcConfig::parse(spec).is_ok_and(|c| c.engine) => {
            let cfg = MovegcConfig::parse(spec).unwrap_or_else(|e| panic!("{e}"));
            let heap = GcHeap::new(cfg.engine_config()).expect("creating the heap");
            let lines = if program == Program::BinaryTrees {
                binary_trees::engine::run(&heap, depth)
                    .expect("binary-trees on the engine")
                    .lines
            } else {
                vec![
                    gcbench::run_on_engine(&gcbench, &heap)
                        .unwrap_or_else(|e| panic!("{e}"))
                        .check,
                ]
            };
            (lines, Some(heap.stats()))
        }
        (Some(spec), _) => {
            let cfg = MovegcConfig::parse(spec).unwrap_or_else(|e| panic!("{e}"));
            let heap = cfg.build().expect("creating the heap");
            let lines = if program == Program::BinaryTrees {
                let mut m = heap.attach().expect("attaching");
                binary_trees::run_movegc_with(&mut m, depth, cfg.scheme)
                    .expect("binary-trees on movegc")
                    .lines
            } else {
                // It waits for the last concurrent cycle (its `finish`).
                let api = match cfg.scheme {
                    Scheme::Typed => gcbench::Api::Typed,
                    _ => gcbench::Api::Untyped,
                };
                vec![
                    gcbench::run_on_with(&gcbench, &heap, api)
                        .unwrap_or_else(|e| panic!("{e}"))
                        .check,
                ]
            };
            (lines, Some(heap.stats()))
        }
    };
    let wall = t.elapsed();
    // GCBench verifies itself (every tree counted, the long-lived data
    // checked); both of its implementations print the same check line,
    // compared across runs by hash.
    if program == Program::BinaryTrees {
        let expected = binary_trees::expected_checks(depth);
        assert_eq!(
            lines, expected,
            "{name}: wrong binary-trees output at depth {depth}"
        );
    }
    let ru = rusage();
    let mut s = Sample {
        implementation: name.to_string(),
        config: spec.unwrap_or_default(),
        depth,
        wall_s: wall.as_secs_f64(),
        user_s: ru.user.as_secs_f64(),
        sys_s: ru.sys.as_secs_f64(),
        cpu_s: (ru.user + ru.sys).as_secs_f64(),
        maxrss_mib: ru.maxrss_kib as f64 / 1024.0,
        minor_faults: ru.minflt,
        gc_cycles: 0,
        pause_p50_ms: 0.0,
        pause_p99_ms: 0.0,
        pause_max_ms: 0.0,
        pause_total_ms: 0.0,
        gc_cpu_s: 0.0,
        gc_cpu_share: 0.0,
        alloc_stalls: 0,
        phases_ms: BTreeMap::new(),
        live_mib_last: 0.0,
        strategies: Vec::new(),
        lines_hash: format!("{:016x}", binary_trees::lines_hash(&lines)),
        verified: true,
    };
    if let Some(st) = stats {
        s.gc_cycles = st.cycles;
        s.pause_p50_ms = ms(st.pause_quantile(0.5));
        s.pause_p99_ms = ms(st.pause_quantile(0.99));
        s.pause_max_ms = ms(st.max_pause);
        s.pause_total_ms = ms(st.total_pause);
        s.gc_cpu_s = st.gc_cpu.as_secs_f64();
        s.gc_cpu_share = st.gc_cpu_share();
        s.alloc_stalls = st.alloc_stalls;
        s.live_mib_last = st.live_bytes as f64 / (1 << 20) as f64;
        let mut add =
            |k: &str, d: Duration| *s.phases_ms.entry(k.to_string()).or_default() += ms(d);
        // `recent` keeps the last 1024 cycles: all of them at these depths.
        for c in &st.recent {
            if let Some(name) = c.strategy.map(Strategy::name) {
                if !s.strategies.iter().any(|n| n == name) {
                    s.strategies.push(name.to_string());
                }
            }
            add("safepoint", c.time_to_safepoint);
            add("mark", c.mark);
            add("prepare", c.prepare);
            add("flip", c.flip);
            add("compact", c.compact);
            add("update_roots", c.update_roots);
            add("release", c.release);
            add("verify", c.verify);
        }
    }
    println!(
        "{}",
        serde_json::to_string(&s).expect("serialising a sample")
    );
}

/// Runs one child; `Err` describes a crash, a failed verification (the
/// child panics) or unreadable output.
fn run_child(name: &str, depth: u32, program: Program) -> Result<Sample, String> {
    let program = match program {
        Program::BinaryTrees => "binary-trees",
        Program::GcBench => "gcbench",
    };
    movegc_bench::child::run_json_child(&[
        (CHILD_ENV, name.to_string()),
        ("BT_DEPTH", depth.to_string()),
        (PROGRAM_ENV, program.to_string()),
    ])
}

fn main() {
    let depth_arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let depth: u32 = match depth_arg {
        Some(a) => a
            .parse()
            .unwrap_or_else(|_| panic!("depth argument {a:?} is not a number")),
        None => env_or("BT_DEPTH", DEFAULT_DEPTH),
    };
    assert!(
        depth <= binary_trees::MAX_N,
        "depth {depth} is above {}",
        binary_trees::MAX_N
    );
    let program = Program::from_env();
    if let Ok(name) = std::env::var(CHILD_ENV) {
        child(&name, depth, program);
        return;
    }
    let repeat: usize = env_or("BT_REPEAT", DEFAULT_REPEAT).max(1);
    let impls_env = std::env::var("BT_IMPLS").unwrap_or_else(|_| DEFAULT_IMPLS.to_string());
    let impls: Vec<String> = impls_env
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    // Bad names and settings fail here, not in each child.
    for i in &impls {
        if let Some(spec) = movegc_spec(i).unwrap_or_else(|e| panic!("{e}")) {
            MovegcConfig::parse(&spec).unwrap_or_else(|e| panic!("{i}: {e}"));
        }
    }
    let title = match program {
        Program::BinaryTrees => format!("binary-trees, depth {depth}"),
        Program::GcBench => "GCBench (classic constants)".to_string(),
    };
    let nodes = match program {
        Program::BinaryTrees => binary_trees::total_nodes(depth),
        Program::GcBench => gcbench::Params::default().total_nodes(),
    };
    eprintln!(
        "{title}: {nodes} nodes allocated per run; {repeat} runs of {}",
        impls.join(", ")
    );
    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let mut failures: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    // Progress: a line on stderr (unbuffered) as each child ends, with the
    // runs done so far and the time since the first started.
    let total = repeat * impls.len();
    let started = Instant::now();
    let mut done = 0;
    for r in 0..repeat {
        // Alternate, and rotate the order each round so no implementation
        // always runs first (or right after the same neighbour).
        let k = impls.len();
        for j in 0..k {
            let name = &impls[(j + r) % k];
            let result = run_child(name, depth, program);
            done += 1;
            let progress = format!("[{done}/{total}, {:.0} s]", started.elapsed().as_secs_f64());
            let s = match result {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("  {progress} run {}/{repeat} {name}: FAILED: {e}", r + 1);
                    failures.entry(name.as_str()).or_default().push(e);
                    continue;
                }
            };
            eprintln!(
                "  {progress} run {}/{repeat} {name}: {:.3} s wall, {:.3} s cpu, {:.0} MiB rss, {} gc cycles, {} faults, phases {:?}",
                r + 1,
                s.wall_s,
                s.cpu_s,
                s.maxrss_mib,
                s.gc_cycles,
                s.minor_faults,
                s.phases_ms.iter().map(|(k, v)| format!("{k} {v:.0}")).collect::<Vec<_>>()
            );
            samples.entry(name.as_str()).or_default().push(s);
        }
    }
    print_table(&title, repeat, &impls, &samples, &failures);
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

fn print_table(
    title: &str,
    repeat: usize,
    impls: &[String],
    samples: &BTreeMap<&str, Vec<Sample>>,
    failures: &BTreeMap<&str, Vec<String>>,
) {
    let med = |name: &str, f: &dyn Fn(&Sample) -> f64| -> f64 {
        let v: Vec<f64> = samples[name].iter().map(f).collect();
        movegc_bench::median(&v)
    };
    let box_wall = samples
        .contains_key("box")
        .then(|| med("box", &|s| s.wall_s));
    let hashes: Vec<&str> = samples
        .values()
        .flatten()
        .map(|s| s.lines_hash.as_str())
        .collect();
    let same = hashes.windows(2).all(|w| w[0] == w[1]);
    println!();
    println!("{title}, {repeat} runs each (medians; wall min–max)");
    println!();
    println!("| impl | config | strategy | wall s (min–max) | CPU s | GC CPU s (share) | peak RSS MiB | GC cycles | allocation stalls | pause p50 / p99 / max ms | total pause s | vs box |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for name in impls {
        let failed = failures.get(name.as_str()).map_or(0, Vec::len);
        let Some(v) = samples.get(name.as_str()) else {
            let why = failures
                .get(name.as_str())
                .and_then(|f| f.first())
                .map_or("", String::as_str);
            println!("| {name} | FAILED {failed}/{repeat} runs: {why} | | | | | | | | | | |");
            continue;
        };
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), s| {
            (lo.min(s.wall_s), hi.max(s.wall_s))
        });
        let wall = med(name, &|s| s.wall_s);
        let gc = movegc_spec(name).ok().flatten().is_some();
        let pauses = if gc {
            format!(
                "{:.1} / {:.1} / {:.1}",
                med(name, &|s| s.pause_p50_ms),
                med(name, &|s| s.pause_p99_ms),
                med(name, &|s| s.pause_max_ms)
            )
        } else {
            "–".to_string()
        };
        let mut config = movegc_spec(name)
            .ok()
            .flatten()
            .map_or("jemalloc".to_string(), |c| {
                if c.is_empty() {
                    "defaults".to_string()
                } else {
                    c
                }
            });
        if failed > 0 {
            config.push_str(&format!(" ({failed} of {repeat} runs FAILED)"));
        }
        let mut used: Vec<&str> = v
            .iter()
            .flat_map(|s| s.strategies.iter().map(String::as_str))
            .collect();
        used.sort_unstable();
        used.dedup();
        let strategy = if gc {
            used.join(", ")
        } else {
            "–".to_string()
        };
        let gc_cpu = if gc {
            format!(
                "{:.2} ({:.0} %)",
                med(name, &|s| s.gc_cpu_s),
                100.0 * med(name, &|s| s.gc_cpu_share)
            )
        } else {
            "–".into()
        };
        println!(
            "| {name} | {config} | {strategy} | {wall:.2} ({lo:.2}–{hi:.2}) | {:.2} | {gc_cpu} | {:.0} | {} | {} | {pauses} | {} | {} |",
            med(name, &|s| s.cpu_s),
            med(name, &|s| s.maxrss_mib),
            if gc { format!("{:.0}", med(name, &|s| s.gc_cycles as f64)) } else { "–".into() },
            if gc { format!("{:.0}", med(name, &|s| s.alloc_stalls as f64)) } else { "–".into() },
            if gc { format!("{:.2}", med(name, &|s| s.pause_total_ms) / 1e3) } else { "–".into() },
            box_wall.map_or("–".to_string(), |b| format!("{:.2}x", wall / b)),
        );
    }
    println!();
    println!("outputs verified in every child; identical line hashes across runs: {same}");
    let env: Vec<String> = ["BT_PROGRAM", "BT_DEPTH", "BT_REPEAT", "BT_IMPLS"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v:?}")))
        .collect();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    println!(
        "command: {}{}cargo bench -p movegc-bench --bench binary_trees{}",
        env.join(" "),
        if env.is_empty() { "" } else { " " },
        if args.is_empty() {
            String::new()
        } else {
            format!(" -- {}", args.join(" "))
        }
    );
}
