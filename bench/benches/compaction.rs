//! Compaction: concurrent MOVE vs concurrent COPY vs stop-the-world on a
//! fragmented heap (`movegc_bench::compact`), side by side, each run in a
//! fresh child process so that RSS and minor faults are per run.
//!
//! ```text
//! cargo bench -p movegc-bench --bench compaction
//!   COMPACT_QUICK=1          256 MiB only, 1 repeat (unless set below)
//!   COMPACT_REPEAT=3         repeats (alternating strategies; order rotates)
//!   COMPACT_REPEAT_LARGE=n   repeats for heaps of 1 GiB and more (default:
//!                            COMPACT_REPEAT)
//!   COMPACT_HEAPS=256,1024   heap sizes, MiB
//!   COMPACT_LIVE=0.25,0.5    live fractions
//!   COMPACT_MUTATORS=0,2     mutator threads (0..=2)
//!   COMPACT_STRATEGIES=move,copy,stw
//!   COMPACT_HANDLER=all      heaps (MiB, comma-separated, or `all`/`none`)
//!                            that also run MOVE/COPY with mutators in
//!                            handler-thread fault mode
//!   COMPACT_THINK_US=20      mutator busy-wait between accesses
//!   COMPACT_WARM=1           touch + free the needed pages before each cycle
//!   COMPACT_GC_THREADS=n     collector threads (default: the library's)
//!   COMPACT_EDGE_SPAN=0      random references: 0 = to any live object,
//!                            n = to one at most n objects away (local)
//!   COMPACT_QUIET_WAIT_S=60  before each run, wait up to this long for
//!                            other processes to stop using the CPUs (0: do
//!                            not wait; after one timeout, 10 s at most)
//!   COMPACT_RETRY_NOISY=1    run a configuration again once if other
//!                            processes used >10 % CPU during its cycle
//!   COMPACT_JSON=path        also write every sample as a JSON line
//! ```
//!
//! A child is this executable re-run with `MOVEGC_COMPACT_CHILD=<spec>`
//! (see `CompactParams::to_spec`); it builds the heap, runs one verified
//! collection and prints one JSON line. The parent prints markdown tables.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use movegc_bench::compact::{CompactParams, CompactResult};
use movegc_bench::env_or;
use movegc_gc::concurrent::FaultMode;
use movegc_gc::uffd::{Features, OpenOptions, Uffd};
use movegc_gc::Strategy;

const CHILD_ENV: &str = "MOVEGC_COMPACT_CHILD";

fn env_list<T: std::str::FromStr + Clone>(key: &str, default: &[T]) -> Vec<T> {
    match std::env::var(key) {
        Ok(v) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("{key}: {s:?} is not valid"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

fn short(s: Strategy) -> &'static str {
    match s {
        Strategy::ConcurrentMove => "MOVE",
        Strategy::ConcurrentCopy => "COPY",
        _ => "STW",
    }
}

/// One row group of the table: everything but the strategy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Group {
    heap_mib: usize,
    /// Live fraction in per mille (for ordering).
    live_permille: u32,
    mutators: usize,
    /// 0 = SIGBUS, 1 = handler thread.
    fault: u8,
}

impl Group {
    fn fault_mode(&self) -> FaultMode {
        if self.fault == 0 {
            FaultMode::Sigbus
        } else {
            FaultMode::HandlerThread
        }
    }
}

struct Plan {
    group: Group,
    strategies: Vec<Strategy>,
}

fn child(spec: &str) {
    let p = CompactParams::parse_spec(spec).unwrap_or_else(|e| panic!("{e}"));
    let r = movegc_bench::compact::run(&p);
    println!(
        "{}",
        serde_json::to_string(&r).expect("serialising a result")
    );
}

fn run_child(p: &CompactParams) -> Result<CompactResult, String> {
    movegc_bench::child::run_json_child(&[(CHILD_ENV, p.to_spec())])
}

/// Whether other processes used a noticeable share of the CPUs during the
/// measured cycle (more than 10 % of its wall time, plus /proc/stat's 10 ms
/// resolution).
fn noisy(r: &CompactResult) -> bool {
    r.other_cpu_ms > 0.1 * r.collect_wall_ms + 10.0
}

/// CPUs kept busy by anything (this parent is idle meanwhile) over 300 ms.
fn busy_cpus() -> f64 {
    let (b0, _) = movegc_bench::compact::system_cpu();
    let t = Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (b1, _) = movegc_bench::compact::system_cpu();
    b1.saturating_sub(b0).as_secs_f64() / t.elapsed().as_secs_f64()
}

/// Waits (up to `max_wait_s`) until no other process keeps a CPU busy,
/// then runs the child: the VM has 2 vCPUs, so another process's build or
/// benchmark halves what the collector gets.
fn run_quiet(p: &CompactParams, max_wait_s: &mut u64) -> Result<CompactResult, String> {
    if *max_wait_s > 0 {
        let t = Instant::now();
        let mut said = false;
        loop {
            let busy = busy_cpus();
            if busy < 0.2 {
                break;
            }
            if t.elapsed().as_secs() >= *max_wait_s {
                eprintln!(
                    "  machine still busy ({busy:.2} CPUs) after {max_wait_s} s; running anyway (and waiting at most 10 s from now on)"
                );
                *max_wait_s = (*max_wait_s).min(10);
                break;
            }
            if !said {
                eprintln!("  waiting for the machine to be quiet ({busy:.2} CPUs busy) ...");
                said = true;
            }
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    }
    run_child(p)
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let started = Instant::now();
    let quick = env_or("COMPACT_QUICK", 0u8) != 0;
    let repeat: usize = env_or("COMPACT_REPEAT", if quick { 1 } else { 3 }).max(1);
    let repeat_large: usize = env_or("COMPACT_REPEAT_LARGE", repeat).max(1);
    let heaps: Vec<usize> = env_list("COMPACT_HEAPS", if quick { &[256] } else { &[256, 1024] });
    let lives: Vec<f64> = env_list("COMPACT_LIVE", &[0.25, 0.5]);
    let mutators: Vec<usize> = env_list("COMPACT_MUTATORS", &[0, 2]);
    let strategy_names: Vec<String> = env_list(
        "COMPACT_STRATEGIES",
        &["move".to_string(), "copy".to_string(), "stw".to_string()],
    );
    let handler = std::env::var("COMPACT_HANDLER").unwrap_or_else(|_| "all".into());
    let handler_heaps: Option<Vec<usize>> = match handler.as_str() {
        "all" => None,
        "none" => Some(Vec::new()),
        s => Some(
            s.split(',')
                .map(|h| h.trim().parse().expect("COMPACT_HANDLER: heap sizes"))
                .collect(),
        ),
    };
    let think_us: u64 = env_or("COMPACT_THINK_US", 20);
    let warm = env_or("COMPACT_WARM", 1u8) != 0;
    let edge_span: usize = env_or("COMPACT_EDGE_SPAN", 0);
    let mut quiet_wait: u64 = env_or("COMPACT_QUIET_WAIT_S", 60);
    let retry_noisy = env_or("COMPACT_RETRY_NOISY", 1u8) != 0;
    let gc_threads: Option<usize> = std::env::var("COMPACT_GC_THREADS")
        .ok()
        .map(|v| v.parse().expect("COMPACT_GC_THREADS"));
    let mut json = std::env::var("COMPACT_JSON")
        .ok()
        .map(|p| std::fs::File::create(&p).unwrap_or_else(|e| panic!("COMPACT_JSON={p}: {e}")));

    let mut strategies: Vec<Strategy> = strategy_names
        .iter()
        .map(|s| Strategy::parse(s).unwrap_or_else(|| panic!("unknown strategy {s:?}")))
        .collect();
    // userfaultfd: without it only stop-the-world can run.
    let uffd_note = match Uffd::open(&OpenOptions::new()) {
        Ok(u) => {
            let mut note = format!(
                "userfaultfd: opened via {:?}; features {:?}",
                u.open_path(),
                u.features()
            );
            if !u.features().contains(Features::MOVE) {
                note.push_str(" (no UFFDIO_MOVE: MOVE runs fall back to COPY)");
            }
            note
        }
        Err(e) => {
            eprintln!("userfaultfd is unavailable ({e}); running stop-the-world only");
            strategies.retain(|s| !s.is_concurrent());
            if strategies.is_empty() {
                strategies.push(Strategy::StopTheWorld);
            }
            format!("userfaultfd unavailable ({e}): stop-the-world only")
        }
    };
    eprintln!("{uffd_note}");

    let mut plans: Vec<Plan> = Vec::new();
    for &h in &heaps {
        for &l in &lives {
            for &m in &mutators {
                let group = |fault| Group {
                    heap_mib: h,
                    live_permille: (l * 1000.0).round() as u32,
                    mutators: m,
                    fault,
                };
                plans.push(Plan {
                    group: group(0),
                    strategies: strategies.clone(),
                });
                let with_handler = m > 0 && handler_heaps.as_ref().is_none_or(|hs| hs.contains(&h));
                let conc: Vec<Strategy> = strategies
                    .iter()
                    .copied()
                    .filter(|s| s.is_concurrent())
                    .collect();
                if with_handler && !conc.is_empty() {
                    plans.push(Plan {
                        group: group(1),
                        strategies: conc,
                    });
                }
            }
        }
    }
    let repeats_for = |g: &Group| {
        if g.heap_mib >= 1024 {
            repeat_large
        } else {
            repeat
        }
    };
    let total_runs: usize = plans
        .iter()
        .map(|p| p.strategies.len() * repeats_for(&p.group))
        .sum();
    eprintln!(
        "compaction: {} configurations, {total_runs} runs (repeat {repeat}, {repeat_large} for >= 1 GiB), think {think_us} us, warm {warm}",
        plans.len()
    );

    let mut samples: BTreeMap<(Group, &'static str), Vec<CompactResult>> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut done = 0;
    let max_repeat = repeat.max(repeat_large);
    for r in 0..max_repeat {
        for (gi, plan) in plans.iter().enumerate() {
            if r >= repeats_for(&plan.group) {
                continue;
            }
            let n = plan.strategies.len();
            for k in 0..n {
                // Alternate strategies, rotating which goes first.
                let s = plan.strategies[(k + r + gi) % n];
                let g = &plan.group;
                let p = CompactParams {
                    heap_mib: g.heap_mib,
                    live_fraction: g.live_permille as f64 / 1000.0,
                    mutator_threads: g.mutators,
                    strategy: s,
                    fault_mode: g.fault_mode(),
                    gc_threads,
                    think_us,
                    warm,
                    seed: 0x5eed + r as u64,
                    edge_span,
                    prefix: 0.0,
                };
                done += 1;
                let t = Instant::now();
                let mut result = run_quiet(&p, &mut quiet_wait);
                if let Ok(res) = &result {
                    if noisy(res) && retry_noisy {
                        eprintln!(
                            "[{done}/{total_runs}] other processes used {:.0} ms of CPU during the {:.0} ms cycle: running it again",
                            res.other_cpu_ms, res.collect_wall_ms
                        );
                        result = run_quiet(&p, &mut quiet_wait);
                    }
                }
                match result {
                    Ok(res) => {
                        eprintln!(
                            "[{done}/{total_runs} {:.0}s] {} -> {} compaction {:.1} ms (threads {:?}), pause {:.1} (mark {:.1}, flip {:.2}), moved {} copied {} shortfall {} faults {} stall p99 {} us, mutator p99 {:.1} us, rss {:.0} MiB, minflt {}, run {:.1}s",
                            started.elapsed().as_secs_f64(),
                            p.to_spec(),
                            res.strategy,
                            res.compaction_ms,
                            res.compaction_per_thread_ms.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>(),
                            res.pause_ms,
                            res.mark_ms,
                            res.flip_phase_ms,
                            res.pages_moved,
                            res.pages_copied,
                            res.recycle_shortfall,
                            res.faults,
                            res.stall_p99_us,
                            res.mutator_p99_us,
                            res.rss_after_mib,
                            res.minflt,
                            t.elapsed().as_secs_f64()
                        );
                        if let Some(f) = json.as_mut() {
                            let line = serde_json::to_string(&res).expect("json");
                            writeln!(f, "{line}").expect("writing COMPACT_JSON");
                        }
                        samples.entry((g.clone(), short(s))).or_default().push(res);
                    }
                    Err(e) => {
                        eprintln!("[{done}/{total_runs}] {}: FAILED: {e}", p.to_spec());
                        failures.push(format!("{}: {e}", p.to_spec()));
                    }
                }
            }
        }
    }
    let settings = format!(
        "mutators busy-wait {think_us} us between accesses; pages warmed before each cycle: {warm}; random references: {}; collector threads: {}",
        if edge_span == 0 {
            "to any live object".to_string()
        } else {
            format!("within {edge_span} objects")
        },
        gc_threads.map_or("library default".to_string(), |n| n.to_string())
    );
    print_tables(&plans, &samples, &settings, &uffd_note);
    println!();
    println!(
        "total time {:.0} s for {done} runs",
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        println!();
        println!("FAILED runs:");
        for f in &failures {
            println!("* {f}");
        }
        std::process::exit(1);
    }
}

fn print_tables(
    plans: &[Plan],
    samples: &BTreeMap<(Group, &'static str), Vec<CompactResult>>,
    settings: &str,
    uffd_note: &str,
) {
    let mut groups: Vec<&Plan> = plans.iter().collect();
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    let order = ["MOVE", "COPY", "STW"];
    let fault_name = |g: &Group, s: &str| {
        if s == "STW" || g.mutators == 0 && g.fault == 0 {
            "–".to_string()
        } else {
            g.fault_mode().name().to_string()
        }
    };
    let med = |v: &[CompactResult], f: &dyn Fn(&CompactResult) -> f64| -> f64 {
        movegc_bench::median(&v.iter().map(f).collect::<Vec<_>>())
    };
    println!();
    println!(
        "compaction benchmark: medians over repeats (compaction: median (min–max)); {settings}"
    );
    println!("{uffd_note}");
    println!();
    println!("| heap MiB | live | mutators | fault mode | strategy | compaction ms | MOVE/COPY | flip ms | pause ms | pages moved / copied | madvise | faults | stall p50 / p99 / max µs | mutator p99 / max µs | RSS after MiB | minflt | n (noisy) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for plan in &groups {
        let g = &plan.group;
        for s in order {
            let Some(v) = samples.get(&(g.clone(), s)) else {
                continue;
            };
            let comp: Vec<f64> = v.iter().map(|r| r.compaction_ms).collect();
            let (lo, hi) = min_max(&comp);
            let ratio = if s == "MOVE" {
                samples
                    .get(&(g.clone(), "COPY"))
                    .map_or("–".to_string(), |c| {
                        format!(
                            "**{:.2}**",
                            movegc_bench::median(&comp) / med(c, &|r| r.compaction_ms)
                        )
                    })
            } else {
                "–".to_string()
            };
            let fell_back: Vec<&str> = v
                .iter()
                .filter(|r| r.strategy != r.strategy_requested)
                .map(|r| r.strategy.as_str())
                .collect();
            let label = if fell_back.is_empty() {
                s.to_string()
            } else {
                format!("{s} (ran as {})", fell_back[0])
            };
            let conc = s != "STW";
            let stalls = if conc && g.mutators > 0 {
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    med(v, &|r| r.stall_p50_us as f64),
                    med(v, &|r| r.stall_p99_us as f64),
                    med(v, &|r| r.stall_max_us as f64)
                )
            } else {
                "–".to_string()
            };
            let mutator = if g.mutators > 0 {
                format!(
                    "{:.1} / {:.0}",
                    med(v, &|r| r.mutator_p99_us),
                    med(v, &|r| r.mutator_max_us)
                )
            } else {
                "–".to_string()
            };
            println!(
                "| {} | {:.2} | {} | {} | {label} | {:.1} ({lo:.1}–{hi:.1}) | {ratio} | {} | {:.1} | {:.0} / {:.0} | {:.0} | {} | {stalls} | {mutator} | {:.0} | {:.0} | {} |",
                g.heap_mib,
                g.live_permille as f64 / 1000.0,
                g.mutators,
                fault_name(g, s),
                movegc_bench::median(&comp),
                if conc {
                    format!("{:.2}", med(v, &|r| r.flip_phase_ms))
                } else {
                    format!("({:.2})", med(v, &|r| r.flip_phase_ms))
                },
                med(v, &|r| r.pause_ms),
                med(v, &|r| r.pages_moved as f64),
                med(v, &|r| r.pages_copied as f64),
                med(v, &|r| r.madvise_calls as f64),
                if conc {
                    format!("{:.0}", med(v, &|r| r.faults as f64))
                } else {
                    "–".to_string()
                },
                med(v, &|r| r.rss_after_mib),
                med(v, &|r| r.minflt as f64),
                {
                    let n = v.iter().filter(|r| noisy(r)).count();
                    if n > 0 {
                        format!("{} ({n})", v.len())
                    } else {
                        v.len().to_string()
                    }
                }
            );
        }
    }
    println!();
    println!("Details (medians):");
    println!();
    println!("| heap MiB | live | mutators | fault mode | strategy | mark ms | ttsp ms | prepare ms | tail ms | cycle ms | CPU ms | per-thread compaction ms | paired MOVE/COPY (min–max) | recycle shortfall | MOVE / COPY ioctls | zero-filled | released | EBUSY | fault waits | mutator accesses | mutator p50 / p99.9 µs | mutator max gap ms | RSS before MiB | live MiB | other procs CPU ms / steal ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for plan in &groups {
        let g = &plan.group;
        for s in order {
            let Some(v) = samples.get(&(g.clone(), s)) else {
                continue;
            };
            // MOVE/COPY of runs made in the same repeat (same seed).
            let paired = if s == "MOVE" {
                samples.get(&(g.clone(), "COPY")).map(|c| {
                    let ratios: Vec<f64> = v
                        .iter()
                        .filter_map(|m| {
                            let seed = m.spec.get("seed")?;
                            let copy = c.iter().find(|r| r.spec.get("seed") == Some(seed))?;
                            Some(m.compaction_ms / copy.compaction_ms)
                        })
                        .collect();
                    let (lo, hi) = min_max(&ratios);
                    format!("{:.2} ({lo:.2}–{hi:.2})", movegc_bench::median(&ratios))
                })
            } else {
                None
            };
            let threads: Vec<String> = (0..v[0].compaction_per_thread_ms.len())
                .map(|i| {
                    format!(
                        "{:.1}",
                        med(v, &|r| r
                            .compaction_per_thread_ms
                            .get(i)
                            .copied()
                            .unwrap_or(f64::NAN))
                    )
                })
                .collect();
            println!(
                "| {} | {:.2} | {} | {} | {s} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} | {:.0} | {:.0} / {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} / {:.0} | {:.2} | {:.0} | {:.0} | {:.0} / {:.0} |",
                g.heap_mib,
                g.live_permille as f64 / 1000.0,
                g.mutators,
                fault_name(g, s),
                med(v, &|r| r.mark_ms),
                med(v, &|r| r.ttsp_ms),
                med(v, &|r| r.prepare_ms),
                med(v, &|r| r.tail_ms),
                med(v, &|r| r.cycle_ms),
                med(v, &|r| r.collect_cpu_ms),
                if threads.is_empty() { "–".to_string() } else { threads.join(" / ") },
                paired.unwrap_or_else(|| "–".to_string()),
                med(v, &|r| r.recycle_shortfall as f64),
                med(v, &|r| r.move_ioctls as f64),
                med(v, &|r| r.copy_ioctls as f64),
                med(v, &|r| r.pages_zero_filled as f64),
                med(v, &|r| r.pages_released as f64),
                med(v, &|r| r.ebusy_fallbacks as f64),
                med(v, &|r| r.fault_waits as f64),
                med(v, &|r| r.mutator_accesses as f64),
                med(v, &|r| r.mutator_p50_us),
                med(v, &|r| r.mutator_p999_us),
                med(v, &|r| r.mutator_max_gap_ms),
                med(v, &|r| r.rss_before_mib),
                med(v, &|r| r.live_mib),
                med(v, &|r| r.other_cpu_ms),
                med(v, &|r| r.steal_ms),
            );
        }
    }
    println!();
    println!(
        "every run verified (chains, check words, random references, counter sums, heap verifier); \
         n (noisy): samples, and how many had other processes using >10 % CPU during the cycle"
    );
    let env: Vec<String> = [
        "COMPACT_QUICK",
        "COMPACT_REPEAT",
        "COMPACT_REPEAT_LARGE",
        "COMPACT_HEAPS",
        "COMPACT_LIVE",
        "COMPACT_MUTATORS",
        "COMPACT_STRATEGIES",
        "COMPACT_HANDLER",
        "COMPACT_THINK_US",
        "COMPACT_WARM",
        "COMPACT_GC_THREADS",
        "COMPACT_EDGE_SPAN",
        "COMPACT_QUIET_WAIT_S",
        "COMPACT_RETRY_NOISY",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
    .collect();
    println!(
        "command: {}{}cargo bench -p movegc-bench --bench compaction",
        env.join(" "),
        if env.is_empty() { "" } else { " " }
    );
}
