//! An Android-style runtime prototype on a movegc heap: a *zygote* process
//! preloads a heap (class-like tables, interned strings, a large object
//! graph, a large "resources" blob), compacts it, and `fork()`s several
//! *app* processes. Each app keeps the zygote's heap, runs a UI thread that
//! must produce a frame every 16.67 ms (rebuilding part of a view tree of a
//! few hundred nodes, laying it out, checksumming it and reading preloaded
//! data) while background worker threads allocate heavily, so collections
//! run while frames are drawn. Apps report frame times, jank, collector
//! statistics and memory (RSS/PSS) back to the zygote through a pipe, one
//! JSON line each; [`RunReport::table`] prints them.
//!
//! Both embedding APIs are used, as a real runtime would: the boot image
//! (classes, methods, interned strings, the module graph) is untyped
//! (layouts and field indexes, like data loaded from a file), while the
//! app's own Rust-shaped objects are derived types (`#[derive(Object)]`):
//! the UI tree's `View`, which points at its preloaded class through a
//! `Gc<Untyped>` field, and the workers' `WorkNode`s, which the workers
//! check in no-safepoint views.
//!
//! # Process structure
//!
//! ```text
//! launcher (the caller of `run`; never builds a heap)
//!  └─ zygote, one fresh process per strategy (heap built with that strategy)
//!      ├─ app 0   (UI thread = the forked zygote thread, + worker threads)
//!      ├─ app 1
//!      └─ ...
//! ```
//!
//! Each strategy gets its own zygote because the strategy is fixed when the
//! heap is built (userfaultfd is only opened for the concurrent ones), and a
//! fresh zygote keeps the runs independent. The launcher forks the zygote
//! rather than being it, so that:
//!
//! * the process that forks the apps is single-threaded apart from the
//!   collector's idle workers (`Mutator::wait_idle` is called before forking),
//!   even when the launcher is a multi-threaded test harness: a forked
//!   child has only the forking thread, and the zygote then creates its
//!   heap (and its worker threads) itself;
//! * a hung or crashed zygote or app can never hang the caller: every wait
//!   has a deadline, stragglers are killed with `SIGKILL`, and apps ask the
//!   kernel to kill them if their zygote dies (`PR_SET_PDEATHSIG`).
//!
//! Children never return into the caller: they leave with `_exit` right
//! after writing their report.
//!
//! # Integrity checks
//!
//! The zygote checksums the whole preload (after its pre-fork collection)
//! and every module of the object graph. Each app re-checks one module per
//! frame, looks up interned strings by content every frame, compares each
//! frame's layout checksum with a plain-Rust shadow of the view tree, has its
//! workers verify every batch they drop, and at the end collects once more
//! and re-checks the tree and the whole preload. Finally the launcher checks
//! that every app produced the same sequence of frame checksums under every
//! strategy (the frames are deterministic per app index).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use movegc::FaultMode;
use movegc::{DataArray, Gc, Heap, Layout, Local, Mutator, Object, Persistent, Strategy, Untyped};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getppid, pipe, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use clap::builder::RangedU64ValueParser;
use clap::{Parser, ValueEnum};

use crate::cli::StrategyArg;

/// The frame budget: one frame per 60 Hz vsync.
pub const FRAME_PERIOD: Duration = Duration::from_nanos(PERIOD_NS);
const PERIOD_NS: u64 = 16_666_667;

// ---------------------------------------------------------------------------
// Configuration and command line
// ---------------------------------------------------------------------------

/// What a run does. [`Config::default`] is the full run of the example.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// App processes forked per zygote.
    pub apps: usize,
    /// Frames each app's UI thread draws.
    pub frames: u64,
    /// Background allocating threads per app.
    pub workers: usize,
    /// Strategies to run, one fresh zygote each, in this order.
    pub strategies: Vec<Strategy>,
    /// Heap capacity in MiB.
    pub heap_mib: usize,
    /// Minimum allocation between automatic collections, in MiB.
    pub min_free_mib: usize,
    /// Keep the allocation between automatic collections at `min_free_mib`
    /// (`HeapBuilder::gc_cpu_target(None)`) instead of letting the heap's
    /// pacing grow it while the collector costs much CPU (a test's way to
    /// get collections during a few frames of an unoptimised build).
    pub fixed_budget: bool,
    /// Collector worker threads per process.
    pub gc_threads: usize,
    /// How concurrent cycles serve a mutator's fault on a page not yet
    /// compacted.
    pub fault_mode: FaultMode,
    /// The stale-reference mode (`HeapBuilder::poison_freed`): memory each
    /// collection frees is poisoned, so a read of it would stop the app
    /// with a report instead of passing unnoticed.
    pub poison: bool,
    /// How long a worker sleeps between two allocation batches.
    pub worker_sleep: Duration,
    /// Overrides [`Config::app_budget`].
    pub app_timeout: Option<Duration>,
    /// Testing aid: this app hangs instead of reporting, to exercise the
    /// deadlines. `None` in real runs.
    pub hang_app: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            apps: 3,
            frames: 600,
            workers: 2,
            strategies: vec![
                Strategy::ConcurrentMove,
                Strategy::ConcurrentCopy,
                Strategy::StopTheWorld,
            ],
            heap_mib: 256,
            min_free_mib: 8,
            fixed_budget: false,
            poison: false,
            gc_threads: 2,
            fault_mode: FaultMode::Sigbus,
            worker_sleep: Duration::from_millis(2),
            app_timeout: None,
            hang_app: None,
        }
    }
}

impl Config {
    /// Frames drawn with `--quick`.
    pub const QUICK_FRAMES: u64 = 90;

    /// How long the apps of one zygote may take, from the fork to their
    /// report, before they are killed.
    pub fn app_budget(&self) -> Duration {
        if let Some(t) = self.app_timeout {
            return t;
        }
        FRAME_PERIOD * (self.frames.min(u32::MAX as u64) as u32) * 4 + Duration::from_secs(40)
    }

    /// How long one zygote (preload, apps, reports) may take before the
    /// launcher kills it.
    pub fn zygote_budget(&self) -> Duration {
        self.app_budget() + Duration::from_secs(40)
    }
}

/// `--fault-mode`: how concurrent cycles serve a mutator's fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum FaultModeArg {
    /// The faulting thread compacts the page itself, in its SIGBUS handler
    #[default]
    Sigbus,
    /// A handler thread reading the userfaultfd serves the fault
    #[value(alias = "handler-thread")]
    Handler,
}

impl From<FaultModeArg> for FaultMode {
    fn from(m: FaultModeArg) -> FaultMode {
        match m {
            FaultModeArg::Sigbus => FaultMode::Sigbus,
            FaultModeArg::Handler => FaultMode::HandlerThread,
        }
    }
}

/// The zygote example's command line (its `--help` describes each option).
#[derive(Parser, Clone, Debug, PartialEq, Eq)]
#[command(
    name = "zygote",
    about = "An Android-style process model on a movegc heap: per collection strategy, a \
             fresh zygote preloads a heap and forks app processes that draw 60 Hz frames \
             while background threads allocate; prints frames missed, frame times, \
             collections, fault stalls and memory per app.",
    long_about = None,
    after_help = "Exit status: 0 when every app reported with its data intact, 1 otherwise, \
                  2 for a bad command line."
)]
pub struct Cli {
    /// Frames per app, 1..=100000 [default: 600, about 10 s per strategy;
    /// 90 with --quick]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub frames: Option<u64>,
    /// App processes forked per zygote, 1..=16
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=16))]
    pub apps: usize,
    /// Allocating background threads per app, 0..=8
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = RangedU64ValueParser::<usize>::new().range(0..=8))]
    pub workers: usize,
    /// Strategies to run, comma-separated, in this order (one fresh zygote
    /// each)
    #[arg(
        long,
        value_name = "LIST",
        value_enum,
        value_delimiter = ',',
        default_value = "move,copy,stw"
    )]
    pub strategies: Vec<StrategyArg>,
    /// 90 frames per app (a few seconds in all) unless --frames is given
    #[arg(long)]
    pub quick: bool,
    /// Heap capacity in MiB, 64..=65536
    #[arg(long, value_name = "MIB", default_value_t = 256,
          value_parser = RangedU64ValueParser::<usize>::new().range(64..=65_536))]
    pub heap_mib: usize,
    /// How concurrent strategies serve a fault on a page not yet compacted
    #[arg(long, value_name = "M", value_enum, default_value_t = FaultModeArg::Sigbus)]
    pub fault_mode: FaultModeArg,
    /// Run in the stale-reference mode (HeapBuilder::poison_freed): freed
    /// memory is poisoned after every collection and a read of it stops
    /// the app with a report; the apps must finish clean
    #[arg(long)]
    pub poison: bool,
    /// Print the full report as JSON instead of the table
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// The run the command line asks for: [`Config::default`] with the
    /// options applied (strategies in order, each once).
    pub fn config(&self) -> Config {
        let mut strategies: Vec<Strategy> = Vec::new();
        for &s in &self.strategies {
            let s = Strategy::from(s);
            if !strategies.contains(&s) {
                strategies.push(s);
            }
        }
        Config {
            apps: self.apps,
            frames: self.frames.unwrap_or(if self.quick {
                Config::QUICK_FRAMES
            } else {
                Config::default().frames
            }),
            workers: self.workers,
            strategies,
            heap_mib: self.heap_mib,
            fault_mode: self.fault_mode.into(),
            poison: self.poison,
            ..Config::default()
        }
    }
}

// ---------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------

/// What one app measured and checked (sent to the zygote as one JSON line).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppReport {
    /// App index, 0-based.
    pub app: usize,
    /// Process id.
    pub pid: i32,
    /// Strategies of the collections the app ran (names, `+`-joined).
    pub strategy: String,
    /// Frames drawn.
    pub frames: u64,
    /// Frames whose wait for the UI thread plus work exceeded 16.67 ms.
    pub frames_missed: u64,
    /// Median frame time (vsync to end of work), microseconds.
    pub frame_p50_us: u64,
    /// 99th percentile frame time, microseconds.
    pub frame_p99_us: u64,
    /// Longest frame, microseconds.
    pub frame_max_us: u64,
    /// Collections in the app while frames were drawn.
    pub collections: u64,
    /// 99th percentile collection pause, microseconds.
    pub pause_p99_us: u64,
    /// Longest collection pause, microseconds.
    pub pause_max_us: u64,
    /// Mutator faults on not-yet-compacted pages (all of the app's threads).
    pub faults: u64,
    /// 99th percentile fault stall, microseconds.
    pub fault_stall_p99_us: u64,
    /// Longest fault stall, microseconds.
    pub fault_stall_max_us: u64,
    /// Sum of fault stalls, microseconds.
    pub fault_stall_total_us: u64,
    /// The UI thread's share of the faults (attributed per thread,
    /// `ThreadStats::faults`): count, longest and summed stall (µs).
    #[serde(default)]
    pub ui_faults: ThreadFaultsReport,
    /// The worker threads' share, summed.
    #[serde(default)]
    pub worker_faults: ThreadFaultsReport,
    /// Pages poisoned after the app's collections (the stale-reference
    /// mode; 0 when it is off).
    #[serde(default)]
    pub poisoned_pages: u64,
    /// Pages installed with `UFFDIO_MOVE`.
    pub pages_moved: u64,
    /// Pages installed with `UFFDIO_COPY`.
    pub pages_copied: u64,
    /// Pages copied because MOVE said `EBUSY` (shared with the zygote or a
    /// sibling).
    pub ebusy_fallbacks: u64,
    /// Batches the workers allocated.
    pub worker_batches: u64,
    /// MiB the workers allocated.
    pub worker_alloc_mib: f64,
    /// Resident set at the end, KiB.
    pub rss_kib: u64,
    /// Proportional set size at the end, KiB (shared pages divided).
    pub pss_kib: u64,
    /// Memory shared with the zygote (and siblings) just after the fork
    /// and after the app's first collection (an explicit one, before the
    /// frames): how much of the preload's sharing a cycle keeps.
    pub first_cycle: FirstCycle,
    /// Fold of every frame's layout checksum (same for an app index under
    /// every strategy).
    pub frame_digest: u64,
    /// Integrity problems found (empty: everything intact).
    pub errors: Vec<String>,
}

/// An app's memory around its first collection (`smaps_rollup`, KiB), and
/// what that collection did with the pages it found shared.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FirstCycle {
    /// `Shared_Clean + Shared_Dirty` just after the fork.
    pub shared_before_kib: u64,
    /// The same after the first collection.
    pub shared_after_kib: u64,
    /// PSS just after the fork.
    pub pss_before_kib: u64,
    /// PSS after the first collection.
    pub pss_after_kib: u64,
    /// Pages of the dense prefix (not compacted, fixed in place).
    pub dense_pages: u64,
    /// Pages that MOVE refused (`EBUSY`: shared) and that were copied.
    pub ebusy_fallbacks: u64,
    /// Prefix pages a concurrent cycle left in place (never flipped: still
    /// shared unless written): a young cycle's old region, or the clean
    /// pages at the bottom of a full cycle's prefix
    /// (`HeapConfig::keep_clean_prefix`). 0 for a stop-the-world cycle.
    #[serde(default)]
    pub kept_pages: u64,
    /// The cycle was young (young collections on).
    #[serde(default)]
    pub young: bool,
}

/// One zygote's run: its preload and its apps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StrategyReport {
    /// The strategy asked for.
    pub requested: String,
    /// What the heap uses after fallbacks (no userfaultfd: stop-the-world).
    pub effective: String,
    /// The zygote's process id.
    pub zygote_pid: i32,
    /// Building the preload, milliseconds.
    pub preload_ms: f64,
    /// Live heap after the zygote's pre-fork collection, MiB.
    pub preload_live_mib: f64,
    /// The zygote's RSS just before forking, KiB.
    pub zygote_rss_kib: u64,
    /// Reports of the apps that reported, by app index.
    pub apps: Vec<AppReport>,
    /// Zygote-level problems: apps that did not report, exit statuses,
    /// timeouts.
    pub errors: Vec<String>,
}

/// The whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Apps per zygote.
    pub apps: usize,
    /// Frames per app.
    pub frames: u64,
    /// Workers per app.
    pub workers: usize,
    /// Fault mode of the concurrent strategies.
    pub fault_mode: String,
    /// One entry per strategy, in run order.
    pub strategies: Vec<StrategyReport>,
    /// Problems found across strategies (frame digests that differ).
    pub errors: Vec<String>,
}

impl RunReport {
    /// Every problem found anywhere, each prefixed with where; empty when
    /// every app reported and all data was intact.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.errors.clone();
        for s in &self.strategies {
            for e in &s.errors {
                out.push(format!("{}: {e}", s.requested));
            }
            for a in &s.apps {
                for e in &a.errors {
                    out.push(format!("{} app {}: {e}", s.requested, a.app));
                }
            }
        }
        out
    }

    /// The human-readable table: one row per app and a summary per
    /// strategy, then the integrity verdict.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let ms = |us: u64| format!("{:.2}", us as f64 / 1e3);
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "zygote: {} apps x {} frames (16.67 ms budget), {} workers/app, \
             {} faults, one fresh zygote per strategy",
            self.apps, self.frames, self.workers, self.fault_mode
        );
        t.push_str(&table_row(COLUMNS.map(|c| c.0.to_string())));
        t.push_str(&table_row(COLUMNS.map(|c| c.1.to_string())));
        for s in &self.strategies {
            let name = if s.effective == s.requested {
                s.effective.clone()
            } else {
                format!("{}->{}", short(&s.requested), short(&s.effective))
            };
            for a in &s.apps {
                t.push_str(&table_row([
                    name.clone(),
                    a.app.to_string(),
                    a.frames.to_string(),
                    a.frames_missed.to_string(),
                    ms(a.frame_p50_us),
                    ms(a.frame_p99_us),
                    ms(a.frame_max_us),
                    a.collections.to_string(),
                    ms(a.pause_p99_us),
                    ms(a.pause_max_us),
                    a.faults.to_string(),
                    a.fault_stall_p99_us.to_string(),
                    a.fault_stall_max_us.to_string(),
                    a.pages_moved.to_string(),
                    a.pages_copied.to_string(),
                    a.ebusy_fallbacks.to_string(),
                    format!("{:.1}", mib(a.rss_kib)),
                    format!("{:.1}", mib(a.pss_kib)),
                    if a.errors.is_empty() { "yes" } else { "NO" }.to_string(),
                ]));
            }
            let sum = |f: fn(&AppReport) -> u64| s.apps.iter().map(f).sum::<u64>();
            let max = |f: fn(&AppReport) -> u64| s.apps.iter().map(f).max().unwrap_or(0);
            let (frames, missed) = (sum(|a| a.frames), sum(|a| a.frames_missed));
            let _ = writeln!(
                t,
                "{:>18} {missed}/{frames} frames missed ({:.1}%), worst p99 {} ms, \
                 worst frame {} ms, {} GCs, fault stalls {} ms in all, {} EBUSY fallbacks, \
                 RSS {:.1} MiB / PSS {:.1} MiB",
                "all apps:",
                100.0 * missed as f64 / frames.max(1) as f64,
                ms(max(|a| a.frame_p99_us)),
                ms(max(|a| a.frame_max_us)),
                sum(|a| a.collections),
                ms(sum(|a| a.fault_stall_total_us)),
                sum(|a| a.ebusy_fallbacks),
                mib(sum(|a| a.rss_kib)),
                mib(sum(|a| a.pss_kib)),
            );
            // Who waited: the UI thread (a missed frame's cause) apart
            // from the workers.
            let _ = writeln!(
                t,
                "{:>18} UI threads {} faults (longest {} us, {} ms in all), workers {} faults \
                 (longest {} us, {} ms in all)",
                "faults by thread:",
                sum(|a| a.ui_faults.faults),
                max(|a| a.ui_faults.stall_max_us),
                ms(sum(|a| a.ui_faults.stall_total_us)),
                sum(|a| a.worker_faults.faults),
                max(|a| a.worker_faults.stall_max_us),
                ms(sum(|a| a.worker_faults.stall_total_us)),
            );
            let poisoned = sum(|a| a.poisoned_pages);
            if poisoned > 0 {
                let _ = writeln!(
                    t,
                    "{:>18} {:.1} MiB of freed memory poisoned after the apps' collections; \
                     no stale access (one would have stopped its app with a report)",
                    "stale-reference:",
                    poisoned as f64 * 4096.0 / (1 << 20) as f64
                );
            }
            let first =
                |f: fn(&FirstCycle) -> u64| mib(s.apps.iter().map(|a| f(&a.first_cycle)).sum());
            let _ = writeln!(
                t,
                "{:>18} shared with the zygote {:.1} -> {:.1} MiB, PSS {:.1} -> {:.1} MiB \
                 ({} dense-prefix pages, {} kept in place, {} EBUSY fallbacks)",
                "first GC, all apps:",
                first(|f| f.shared_before_kib),
                first(|f| f.shared_after_kib),
                first(|f| f.pss_before_kib),
                first(|f| f.pss_after_kib),
                s.apps
                    .iter()
                    .map(|a| a.first_cycle.dense_pages)
                    .sum::<u64>(),
                s.apps.iter().map(|a| a.first_cycle.kept_pages).sum::<u64>(),
                s.apps
                    .iter()
                    .map(|a| a.first_cycle.ebusy_fallbacks)
                    .sum::<u64>(),
            );
            let _ = writeln!(
                t,
                "{:>18} preload {:.1} MiB live, built in {:.0} ms, zygote RSS {:.1} MiB at fork{}",
                "zygote:",
                s.preload_live_mib,
                s.preload_ms,
                mib(s.zygote_rss_kib),
                match s.errors.len() {
                    0 => String::new(),
                    n => format!("; {n} PROBLEMS"),
                }
            );
        }
        let failures = self.failures();
        if failures.is_empty() {
            t.push_str(
                "data: intact in every app (preload checksums, layout vs shadow every frame, \
                 worker batches, same frame checksums under every strategy)\n",
            );
        } else {
            let _ = writeln!(t, "FAILURES ({}):", failures.len());
            for f in failures.iter().take(40) {
                let _ = writeln!(t, "  {f}");
            }
        }
        t
    }
}

/// The table's columns: header, unit line, width.
const COLUMNS: [(&str, &str, usize); 19] = [
    ("strategy", "", 16),
    ("app", "", 3),
    ("frames", "", 6),
    ("missed", "", 6),
    ("p50", "ms", 6),
    ("p99", "ms", 6),
    ("max", "ms", 6),
    ("GCs", "", 4),
    ("pause99", "ms", 7),
    ("pausemx", "ms", 7),
    ("faults", "", 6),
    ("stall99", "us", 7),
    ("stallmx", "us", 7),
    ("moved", "pages", 6),
    ("copied", "pages", 6),
    ("ebusy", "pages", 5),
    ("RSS", "MiB", 6),
    ("PSS", "MiB", 6),
    ("intact", "", 6),
];

/// One line of the table: the first column left-aligned, the rest right.
fn table_row(cells: [String; 19]) -> String {
    let mut line = String::new();
    for (i, (cell, (_, _, width))) in cells.iter().zip(COLUMNS).enumerate() {
        if i == 0 {
            line.push_str(&format!("{cell:<width$}"));
        } else {
            line.push_str(&format!(" {cell:>width$}"));
        }
    }
    line.truncate(line.trim_end().len());
    line.push('\n');
    line
}

fn short(name: &str) -> &str {
    match Strategy::parse(name) {
        Some(Strategy::ConcurrentMove) => "move",
        Some(Strategy::ConcurrentCopy) => "copy",
        Some(Strategy::StopTheWorld) => "stw",
        _ => name,
    }
}

// ---------------------------------------------------------------------------
// Errors, hashing
// ---------------------------------------------------------------------------

/// Something went wrong in a zygote or app: a heap error or corrupt data.
#[derive(Debug)]
struct Failure(String);

// `Failure` is not itself an `Error`, so this does not overlap `From<T> for T`.
impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

type Res<T> = Result<T, Failure>;

fn corrupt(msg: impl Into<String>) -> Failure {
    Failure(msg.into())
}

fn need(h: Option<Local>, what: &str) -> Res<Local> {
    h.ok_or_else(|| corrupt(format!("{what} is null")))
}

/// A strong 64-bit mix (splitmix64 finaliser) of an accumulator and a value.
fn mix(h: u64, v: u64) -> u64 {
    let mut z = h.rotate_left(23) ^ v.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a byte string.
fn hash_bytes(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ c as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------
// The preload ("boot image")
// ---------------------------------------------------------------------------

const N_STRINGS: usize = 16_384;
const TABLE_SLOTS: usize = 2 * N_STRINGS;
const N_CLASSES: usize = 2048;
const MODULES: usize = 256;
const MODULE_NODES: usize = 512;
const RESOURCE_BYTES: usize = 2 << 20;
const ALPHA: &str = "abcdefghijklmnopqrstuvwxyz0123456789_$.-";

// Boot-root slots.
const BOOT_STRINGS: usize = 0;
const BOOT_TABLE: usize = 1;
const BOOT_CLASSES: usize = 2;
const BOOT_MODULES: usize = 3;
const BOOT_RESOURCES: usize = 4;

// Tags (for heap dumps; nothing depends on them).
const TAG_BOOT: u16 = 1;
const TAG_STRING: u16 = 2;
const TAG_TABLE: u16 = 3;
const TAG_CLASS: u16 = 4;
const TAG_METHODS: u16 = 5;
const TAG_METHOD: u16 = 6;
const TAG_MODNODE: u16 = 7;
const TAG_RESOURCE: u16 = 8;
const TAG_TEMP: u16 = 30;

/// The layouts used more than once.
struct Layouts {
    class: Layout,
    method: Layout,
    modnode: Layout,
}

impl Layouts {
    fn new() -> Res<Layouts> {
        Ok(Layouts {
            // refs: name, methods, superclass; data: index, padding, methods
            class: Layout::record(TAG_CLASS, 3, 24)?,
            // refs: name; data: id, code hash
            method: Layout::record(TAG_METHOD, 1, 16)?,
            // refs: three children, a cross link; data: id, payload
            modnode: Layout::record(TAG_MODNODE, 4, 16)?,
        })
    }
}

fn string_text(i: usize) -> String {
    format!("s{i:05}.{}", &ALPHA[..(i * 7) % (ALPHA.len() + 1)])
}

fn padding(class: usize) -> u64 {
    1 + mix(class as u64, 77) % 6
}

fn class_name(c: usize) -> usize {
    (c * 5) % N_STRINGS
}

fn method_count(c: usize) -> usize {
    4 + c % 9
}

fn method_name(c: usize, j: usize) -> usize {
    (c * 31 + j * 17 + 3) % N_STRINGS
}

fn module_node_id(k: usize, i: usize) -> u64 {
    ((k as u64) << 32) | i as u64
}

fn resource_byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 9)) as u8
}

/// The preloaded heap as seen by the zygote and (after fork) by every app.
struct Preload {
    boot: Persistent,
    sum: u64,
    module_sums: Vec<u64>,
    build_ms: f64,
    live_mib: f64,
}

/// Builds the boot image, with garbage in between (class-loading scratch),
/// collects it (Android's zygote compacts before it forks) and checksums it
/// before and after that collection.
fn preload(m: &mut Mutator, lay: &Layouts) -> Res<Preload> {
    let t = Instant::now();
    let boot = m.scope(|m| -> Res<Persistent> {
        let boot = m.alloc(&Layout::ref_array(TAG_BOOT, 5)?)?;
        let strings = m.alloc(&Layout::ref_array(TAG_TABLE, N_STRINGS)?)?;
        m.set_ref(boot, BOOT_STRINGS, Some(strings))?;
        let table = m.alloc(&Layout::ref_array(TAG_TABLE, TABLE_SLOTS)?)?;
        m.set_ref(boot, BOOT_TABLE, Some(table))?;
        for i in 0..N_STRINGS {
            m.scope(|m| -> Res<()> {
                let text = string_text(i);
                let s = m.alloc(&Layout::byte_array(TAG_STRING, text.len())?)?;
                m.write_bytes(s, 0, text.as_bytes())?;
                m.set_ref(strings, i, Some(s))?;
                let mut slot = hash_bytes(text.as_bytes()) as usize & (TABLE_SLOTS - 1);
                while !m.is_null(table, slot)? {
                    slot = (slot + 1) & (TABLE_SLOTS - 1);
                }
                m.set_ref(table, slot, Some(s))?;
                m.alloc(&Layout::byte_array(TAG_TEMP, 24 + i % 40)?)?; // garbage
                Ok(())
            })?;
        }

        let classes = m.alloc(&Layout::ref_array(TAG_TABLE, N_CLASSES)?)?;
        m.set_ref(boot, BOOT_CLASSES, Some(classes))?;
        for c in 0..N_CLASSES {
            m.scope(|m| -> Res<()> {
                let k = m.alloc(&lay.class)?;
                let nm = method_count(c);
                m.write_u64(k, 0, c as u64)?;
                m.write_u64(k, 8, padding(c))?;
                m.write_u64(k, 16, nm as u64)?;
                let name = need(m.get_ref(strings, class_name(c))?, "class name")?;
                m.set_ref(k, 0, Some(name))?;
                let methods = m.alloc(&Layout::ref_array(TAG_METHODS, nm)?)?;
                m.set_ref(k, 1, Some(methods))?;
                for j in 0..nm {
                    let me = m.alloc(&lay.method)?;
                    m.write_u64(me, 0, ((c as u64) << 8) | j as u64)?;
                    m.write_u64(me, 8, mix(c as u64, j as u64))?;
                    let name = need(m.get_ref(strings, method_name(c, j))?, "method name")?;
                    m.set_ref(me, 0, Some(name))?;
                    m.set_ref(methods, j, Some(me))?;
                    // Verifier scratch: garbage.
                    m.alloc(&Layout::byte_array(TAG_TEMP, 64 + (c + j) % 128)?)?;
                }
                if c > 0 {
                    let sup = need(m.get_ref(classes, c / 2)?, "superclass")?;
                    m.set_ref(k, 2, Some(sup))?;
                }
                m.set_ref(classes, c, Some(k))?;
                Ok(())
            })?;
        }

        let modules = m.alloc(&Layout::ref_array(TAG_TABLE, MODULES)?)?;
        m.set_ref(boot, BOOT_MODULES, Some(modules))?;
        for k in 0..MODULES {
            m.scope(|m| -> Res<()> {
                // The temporary index array is garbage afterwards.
                let tmp = m.alloc(&Layout::ref_array(TAG_TEMP, MODULE_NODES)?)?;
                for i in 0..MODULE_NODES {
                    let n = m.alloc(&lay.modnode)?;
                    let id = module_node_id(k, i);
                    m.write_u64(n, 0, id)?;
                    m.write_u64(n, 8, mix(id, 0xC0FFEE))?;
                    m.set_ref(tmp, i, Some(n))?;
                }
                for i in 0..MODULE_NODES {
                    let n = need(m.get_ref(tmp, i)?, "module node")?;
                    for c in 0..3 {
                        let ci = 3 * i + 1 + c;
                        if ci < MODULE_NODES {
                            let ch = m.get_ref(tmp, ci)?;
                            m.set_ref(n, c, ch)?;
                        }
                    }
                    let link = m.get_ref(tmp, (i * 7 + 3) % MODULE_NODES)?;
                    m.set_ref(n, 3, link)?;
                }
                let root = m.get_ref(tmp, 0)?;
                m.set_ref(modules, k, root)?;
                Ok(())
            })?;
        }

        let res = m.alloc(&Layout::byte_array(TAG_RESOURCE, RESOURCE_BYTES)?)?;
        m.with_bytes_mut(res, |b| {
            for (i, x) in b.iter_mut().enumerate() {
                *x = resource_byte(i);
            }
        })?;
        m.set_ref(boot, BOOT_RESOURCES, Some(res))?;
        Ok(m.persist(boot)?)
    })?;
    let build_ms = t.elapsed().as_secs_f64() * 1e3;

    let (before, _) = preload_sum(m, &boot)?;
    m.collect();
    m.wait_idle();
    let (sum, module_sums) = preload_sum(m, &boot)?;
    if sum != before {
        return Err(corrupt(format!(
            "zygote: preload checksum changed by its pre-fork collection ({before:#x} -> {sum:#x})"
        )));
    }
    let live_mib = m.heap().stats().live_bytes as f64 / (1 << 20) as f64;
    Ok(Preload {
        boot,
        sum,
        module_sums,
        build_ms,
        live_mib,
    })
}

/// Checksum of module `k` of the object graph (every node, its payload and
/// the id of its cross link), walking the tree edges.
fn module_sum(m: &mut Mutator, boot: &Persistent, k: usize) -> Res<u64> {
    m.scope(|m| {
        let b = m.local(boot)?;
        let modules = need(m.get_ref(b, BOOT_MODULES)?, "module table")?;
        let root = need(m.get_ref(modules, k)?, "module root")?;
        let mut stack = vec![root];
        let (mut sum, mut count) = (k as u64, 0u64);
        while let Some(n) = stack.pop() {
            let id = m.read_u64(n, 0)?;
            let payload = m.read_u64(n, 8)?;
            let link = need(m.get_ref(n, 3)?, "module cross link")?;
            let link_id = m.read_u64(link, 0)?;
            sum = mix(mix(mix(sum, id), payload), link_id);
            count += 1;
            for c in (0..3).rev() {
                if let Some(ch) = m.get_ref(n, c)? {
                    stack.push(ch);
                }
            }
        }
        Ok(mix(sum, count))
    })
}

/// Checksum of the whole preload, and of each module.
fn preload_sum(m: &mut Mutator, boot: &Persistent) -> Res<(u64, Vec<u64>)> {
    let mut sum = 0u64;
    m.scope(|m| -> Res<()> {
        let b = m.local(boot)?;
        let strings = need(m.get_ref(b, BOOT_STRINGS)?, "string pool")?;
        for i in 0..N_STRINGS {
            sum = m.scope(|m| -> Res<u64> {
                let s = need(m.get_ref(strings, i)?, "string")?;
                Ok(mix(sum, m.with_bytes(s, hash_bytes)?))
            })?;
        }
        let table = need(m.get_ref(b, BOOT_TABLE)?, "intern table")?;
        for slot in 0..TABLE_SLOTS {
            sum = m.scope(|m| -> Res<u64> {
                Ok(match m.get_ref(table, slot)? {
                    Some(s) => mix(sum, slot as u64 ^ m.with_bytes(s, hash_bytes)?),
                    None => sum,
                })
            })?;
        }
        let classes = need(m.get_ref(b, BOOT_CLASSES)?, "class table")?;
        for c in 0..N_CLASSES {
            sum = m.scope(|m| -> Res<u64> {
                let k = need(m.get_ref(classes, c)?, "class")?;
                let mut h = sum;
                for off in [0, 8, 16] {
                    h = mix(h, m.read_u64(k, off)?);
                }
                let name = need(m.get_ref(k, 0)?, "class name")?;
                h = mix(h, m.with_bytes(name, hash_bytes)?);
                let methods = need(m.get_ref(k, 1)?, "method table")?;
                let nm = m.len(methods)?;
                h = mix(h, nm as u64);
                for j in 0..nm {
                    let me = need(m.get_ref(methods, j)?, "method")?;
                    h = mix(mix(h, m.read_u64(me, 0)?), m.read_u64(me, 8)?);
                    let name = need(m.get_ref(me, 0)?, "method name")?;
                    h = mix(h, m.with_bytes(name, hash_bytes)?);
                }
                if let Some(sup) = m.get_ref(k, 2)? {
                    h = mix(h, m.read_u64(sup, 0)?);
                }
                Ok(h)
            })?;
        }
        let res = need(m.get_ref(b, BOOT_RESOURCES)?, "resources")?;
        sum = mix(sum, m.with_bytes(res, hash_bytes)?);
        Ok(())
    })?;
    let mut module_sums = Vec::with_capacity(MODULES);
    for k in 0..MODULES {
        let s = module_sum(m, boot, k)?;
        sum = mix(sum, s);
        module_sums.push(s);
    }
    Ok((sum, module_sums))
}

/// Looks up an interned string by content, as the runtime would.
fn intern_lookup(m: &mut Mutator, table: Local, text: &[u8]) -> Res<bool> {
    let mut slot = hash_bytes(text) as usize & (TABLE_SLOTS - 1);
    for _ in 0..TABLE_SLOTS {
        match m.get_ref(table, slot)? {
            None => return Ok(false),
            Some(s) => {
                if m.with_bytes(s, |b| b == text)? {
                    return Ok(true);
                }
            }
        }
        slot = (slot + 1) & (TABLE_SLOTS - 1);
    }
    Ok(false)
}

// ---------------------------------------------------------------------------
// The view tree: a plain-Rust spec (also the shadow model) and its heap copy
// ---------------------------------------------------------------------------

const SECTIONS: usize = 12;
const GAP: u64 = 4;

/// A view as the "inflater" describes it; also the shadow the heap tree is
/// checked against. Containers with an even class stack their children
/// vertically, odd ones horizontally.
#[derive(Clone, Debug)]
struct Spec {
    id: u64,
    class: usize,
    label: Option<String>,
    children: Vec<Spec>,
}

/// Section `s` of app `app`'s screen, generation `generation`: 3–5 rows of
/// 3–8 labelled leaves each, drawn from a PRNG seeded by the three (the
/// same section every time, in every process).
fn section_spec(app: usize, s: usize, generation: u64) -> Spec {
    let mut rng = fastrand::Rng::with_seed(mix(mix(app as u64, s as u64), generation));
    let base = (generation << 24) | ((s as u64) << 16);
    let mut next = 0u64;
    let rows = rng.usize(3..=5);
    let mut children = Vec::with_capacity(rows);
    for row in 0..rows {
        let leaves = rng.usize(3..=8);
        let mut kids = Vec::with_capacity(leaves);
        for l in 0..leaves {
            next += 1;
            kids.push(Spec {
                id: base | next,
                class: rng.usize(..N_CLASSES),
                label: Some(format!(
                    "a{app}.s{s}.g{generation}.r{row}.l{l}{}",
                    &ALPHA[..rng.usize(..12)]
                )),
                children: Vec::new(),
            });
        }
        next += 1;
        children.push(Spec {
            id: base | next,
            class: 2 * rng.usize(..N_CLASSES / 2) + 1,
            label: None,
            children: kids,
        });
    }
    next += 1;
    Spec {
        id: base | next,
        class: 2 * rng.usize(..N_CLASSES / 2),
        label: None,
        children,
    }
}

fn leaf_size(len: usize, label_hash: u64, pad: u64) -> (u64, u64) {
    (7 * len as u64 + 2 * pad + label_hash % 5, 18 + 2 * pad)
}

fn container_size(vertical: bool, pad: u64, kids: &[(u64, u64)]) -> (u64, u64) {
    let gaps = GAP * (kids.len() as u64).saturating_sub(1);
    let max_w = kids.iter().map(|k| k.0).max().unwrap_or(0);
    let max_h = kids.iter().map(|k| k.1).max().unwrap_or(0);
    let sum_w: u64 = kids.iter().map(|k| k.0).sum();
    let sum_h: u64 = kids.iter().map(|k| k.1).sum();
    if vertical {
        (max_w + 2 * pad, sum_h + gaps + 2 * pad)
    } else {
        (sum_w + gaps + 2 * pad, max_h + 2 * pad)
    }
}

fn node_sum(acc: u64, id: u64, rect: [u64; 4], label_hash: u64) -> u64 {
    rect.iter()
        .fold(mix(acc, id), |h, &v| mix(h, v))
        .wrapping_add(label_hash)
}

/// The shadow's sizes, mirroring the spec tree.
struct Sizes {
    w: u64,
    h: u64,
    kids: Vec<Sizes>,
}

fn shadow_sizes(s: &Spec) -> Sizes {
    let pad = padding(s.class);
    if s.children.is_empty() {
        let label = s.label.as_deref().unwrap_or("");
        let (w, h) = leaf_size(label.len(), hash_bytes(label.as_bytes()), pad);
        return Sizes {
            w,
            h,
            kids: Vec::new(),
        };
    }
    let kids: Vec<Sizes> = s.children.iter().map(shadow_sizes).collect();
    let dims: Vec<(u64, u64)> = kids.iter().map(|k| (k.w, k.h)).collect();
    let (w, h) = container_size(s.class % 2 == 0, pad, &dims);
    Sizes { w, h, kids }
}

fn shadow_place_sum(s: &Spec, z: &Sizes, x: u64, y: u64, acc: u64) -> u64 {
    let label_hash = s.label.as_deref().map_or(0, |l| hash_bytes(l.as_bytes()));
    let mut acc = node_sum(acc, s.id, [x, y, z.w, z.h], label_hash);
    let pad = padding(s.class);
    let (mut cx, mut cy) = (x + pad, y + pad);
    for (c, cz) in s.children.iter().zip(&z.kids) {
        acc = shadow_place_sum(c, cz, cx, cy, acc);
        if s.class % 2 == 0 {
            cy += cz.h + GAP;
        } else {
            cx += cz.w + GAP;
        }
    }
    acc
}

/// The layout checksum the heap tree must produce.
fn shadow_sum(root: &Spec) -> u64 {
    shadow_place_sum(root, &shadow_sizes(root), 0, 0, 0)
}

/// A view of the app's UI tree, on the typed API: it points at its
/// preloaded class, an object of the untyped boot image (`Gc<Untyped>`),
/// and at its label, a byte array.
#[derive(Object)]
struct View {
    first: Option<Gc<View>>,
    next: Option<Gc<View>>,
    class: Option<Gc<Untyped>>,
    label: Option<Gc<DataArray<u8>>>,
    id: u64,
    w: u64,
    h: u64,
    x: u64,
    y: u64,
}

/// Allocates the heap copy of `spec` (class references point into the
/// preloaded class table).
fn materialize(m: &mut Mutator, spec: &Spec, classes: Local) -> Res<Gc<View>> {
    let class = need(m.get_ref(classes, spec.class)?, "class")?;
    let class = m.downcast::<Untyped>(class)?;
    let label = match &spec.label {
        Some(l) => {
            let t = m.alloc_data::<u8>(l.len())?;
            m.data_write(t, 0, l.as_bytes())?;
            Some(t)
        }
        None => None,
    };
    let mut first: Option<Gc<View>> = None;
    for c in spec.children.iter().rev() {
        let ch = materialize(m, c, classes)?;
        m.set(ch, View::NEXT, first)?;
        first = Some(ch);
    }
    Ok(m.alloc_init(View {
        first,
        next: None,
        class: Some(class),
        label,
        id: spec.id,
        w: 0,
        h: 0,
        x: 0,
        y: 0,
    })?)
}

/// Replaces the `s`-th child of `root` by a fresh copy of `spec`; the old
/// section becomes garbage.
fn replace_section(
    m: &mut Mutator,
    root: Gc<View>,
    s: usize,
    spec: &Spec,
    classes: Local,
) -> Res<()> {
    m.scope(|m| {
        let fresh = materialize(m, spec, classes)?;
        let mut prev: Option<Gc<View>> = None;
        let mut old = m
            .get(root, View::FIRST)?
            .ok_or_else(|| corrupt("first section is null"))?;
        for _ in 0..s {
            prev = Some(old);
            old = m
                .get(old, View::NEXT)?
                .ok_or_else(|| corrupt("section is null"))?;
        }
        let after = m.get(old, View::NEXT)?;
        m.set(fresh, View::NEXT, after)?;
        match prev {
            None => m.set(root, View::FIRST, Some(fresh))?,
            Some(p) => m.set(p, View::NEXT, Some(fresh))?,
        }
        Ok(())
    })
}

/// Class index and padding of a view, read from its preloaded class.
fn view_class(m: &mut Mutator, node: Gc<View>) -> Res<(u64, u64)> {
    let class = m
        .get(node, View::CLASS)?
        .ok_or_else(|| corrupt("view class is null"))?
        .untyped();
    Ok((m.read_u64(class, 0)?, m.read_u64(class, 8)?))
}

/// Length and hash of a label.
fn label_text(m: &mut Mutator, label: Gc<DataArray<u8>>) -> Res<(usize, u64)> {
    let mut b = vec![0u8; m.array_len(label)?];
    m.data_read(label, 0, &mut b)?;
    Ok((b.len(), hash_bytes(&b)))
}

/// The measure pass: computes and stores every view's width and height.
fn measure(m: &mut Mutator, node: Gc<View>) -> Res<(u64, u64)> {
    m.scope(|m| {
        let (class, pad) = view_class(m, node)?;
        let mut kids = Vec::new();
        let mut c = m.get(node, View::FIRST)?;
        while let Some(ch) = c {
            kids.push(measure(m, ch)?);
            c = m.get(ch, View::NEXT)?;
        }
        let (w, h) = if kids.is_empty() {
            let label = m
                .get(node, View::LABEL)?
                .ok_or_else(|| corrupt("leaf label is null"))?;
            let (len, hash) = label_text(m, label)?;
            leaf_size(len, hash, pad)
        } else {
            container_size(class % 2 == 0, pad, &kids)
        };
        m.write(node, View::W, w)?;
        m.write(node, View::H, h)?;
        Ok((w, h))
    })
}

/// The layout pass: stores every view's position.
fn place(m: &mut Mutator, node: Gc<View>, x: u64, y: u64) -> Res<()> {
    m.scope(|m| {
        m.write(node, View::X, x)?;
        m.write(node, View::Y, y)?;
        let (class, pad) = view_class(m, node)?;
        let (mut cx, mut cy) = (x + pad, y + pad);
        let mut c = m.get(node, View::FIRST)?;
        while let Some(ch) = c {
            place(m, ch, cx, cy)?;
            if class % 2 == 0 {
                cy += m.read(ch, View::H)? + GAP;
            } else {
                cx += m.read(ch, View::W)? + GAP;
            }
            c = m.get(ch, View::NEXT)?;
        }
        Ok(())
    })
}

/// The layout checksum of the heap tree, read back from the nodes.
fn tree_sum(m: &mut Mutator, node: Gc<View>, acc: u64) -> Res<u64> {
    m.scope(|m| {
        let id = m.read(node, View::ID)?;
        let rect = [
            m.read(node, View::X)?,
            m.read(node, View::Y)?,
            m.read(node, View::W)?,
            m.read(node, View::H)?,
        ];
        let label_hash = match m.get(node, View::LABEL)? {
            Some(l) => label_text(m, l)?.1,
            None => 0,
        };
        let mut acc = node_sum(acc, id, rect, label_hash);
        let mut c = m.get(node, View::FIRST)?;
        while let Some(ch) = c {
            acc = tree_sum(m, ch, acc)?;
            c = m.get(ch, View::NEXT)?;
        }
        Ok(acc)
    })
}

/// Measure, place, checksum.
fn layout(m: &mut Mutator, root: Gc<View>) -> Res<u64> {
    measure(m, root)?;
    place(m, root, 0, 0)?;
    tree_sum(m, root, 0)
}

// ---------------------------------------------------------------------------
// App threads
// ---------------------------------------------------------------------------

const MAX_ERRORS: usize = 20;

fn note(errors: &mut Vec<String>, msg: String) {
    if errors.len() < MAX_ERRORS {
        errors.push(msg);
    } else if errors.len() == MAX_ERRORS {
        errors.push("(further errors not listed)".into());
    }
}

/// What the UI thread measured.
struct Ui {
    frames: u64,
    missed: u64,
    hist: Histogram<u64>,
    digest: u64,
    errors: Vec<String>,
}

/// One frame's work: rebuild two sections, lay the tree out, checksum it,
/// and read preloaded data (one graph module, eight interned strings).
fn frame(
    m: &mut Mutator,
    pre: &Preload,
    app: usize,
    f: u64,
    root: Gc<View>,
    shadow: &mut Spec,
    errors: &mut Vec<String>,
) -> Res<u64> {
    m.scope(|m| {
        let b = m.local(&pre.boot)?;
        let classes = need(m.get_ref(b, BOOT_CLASSES)?, "class table")?;
        for s in [
            f as usize % SECTIONS,
            (f as usize + SECTIONS / 2) % SECTIONS,
        ] {
            let spec = section_spec(app, s, f + 1);
            replace_section(m, root, s, &spec, classes)?;
            shadow.children[s] = spec;
        }
        let sum = layout(m, root)?;

        let k = (f as usize * 37 + app) % MODULES;
        let got = module_sum(m, &pre.boot, k)?;
        if got != pre.module_sums[k] {
            note(
                errors,
                format!(
                    "frame {f}: preloaded module {k} checksum {got:#x}, zygote had {:#x}",
                    pre.module_sums[k]
                ),
            );
        }
        let table = need(m.get_ref(b, BOOT_TABLE)?, "intern table")?;
        let mut rng = fastrand::Rng::with_seed(mix(app as u64, f));
        for _ in 0..8 {
            let i = rng.usize(..N_STRINGS);
            let text = string_text(i);
            if !intern_lookup(m, table, text.as_bytes())? {
                note(
                    errors,
                    format!("frame {f}: interned string {text:?} not found"),
                );
            }
        }
        Ok(sum)
    })
}

/// The UI thread: `frames` frames, each started at a 60 Hz vsync tick. A
/// frame that ends after the next tick is missed; the next frame starts at
/// the first tick after the previous one ended (as a choreographer would).
fn ui_loop(
    m: &mut Mutator,
    pre: &Preload,
    cfg: &Config,
    app: usize,
    root: Gc<View>,
    shadow: &mut Spec,
) -> Res<Ui> {
    let mut ui = Ui {
        frames: 0,
        missed: 0,
        hist: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
        digest: 0,
        errors: Vec::new(),
    };
    let t0 = Instant::now() + FRAME_PERIOD;
    let mut tick = 0u64;
    for f in 0..cfg.frames {
        let start = t0 + Duration::from_nanos(PERIOD_NS * tick);
        let now = Instant::now();
        if start > now {
            m.blocking(|| std::thread::sleep(start - now));
        }
        let sum = frame(m, pre, app, f, root, shadow, &mut ui.errors)?;
        let end = Instant::now();
        let took = end.saturating_duration_since(start);
        ui.hist.saturating_record(took.as_micros().max(1) as u64);
        if took > FRAME_PERIOD {
            ui.missed += 1;
        }
        ui.frames += 1;
        // Outside the frame's time: compare with the shadow model.
        let want = shadow_sum(shadow);
        if sum != want {
            note(
                &mut ui.errors,
                format!("frame {f}: layout checksum {sum:#x}, shadow model says {want:#x}"),
            );
        }
        ui.digest = mix(ui.digest, sum);
        let elapsed = end.saturating_duration_since(t0).as_nanos() as u64;
        tick = (tick + 1).max(elapsed.div_ceil(PERIOD_NS));
    }
    Ok(ui)
}

const RING: usize = 32;
const BATCH_NODES: usize = 1024;

/// What a worker did.
#[derive(Default)]
struct Work {
    batches: u64,
    bytes: u64,
    errors: Vec<String>,
}

fn work_key(app: usize, wid: usize, seq: u64, i: usize) -> u64 {
    mix(mix(mix(app as u64, wid as u64), seq), i as u64)
}

fn payload_len(key: u64) -> usize {
    96 + (key % 96) as usize
}

/// A background worker's list node: the typed API (`#[derive(Object)]`),
/// where the boot image and the UI tree use the untyped one. 40 bytes with
/// its header.
#[derive(Object)]
struct WorkNode {
    next: Option<Gc<WorkNode>>,
    payload: Option<Gc<DataArray<u8>>>,
    key: u64,
    pos: u64,
}

/// Bytes of a `WorkNode` (header, two references, two words).
const WORK_NODE_BYTES: u64 = 40;

/// Allocates batch `seq`: a list of `BATCH_NODES` nodes, every eighth with
/// a byte-array payload; returns its head and its size in bytes.
fn build_batch(m: &mut Mutator, app: usize, wid: usize, seq: u64) -> Res<(Gc<WorkNode>, u64)> {
    let mut head: Option<Gc<WorkNode>> = None;
    let mut bytes = 0u64;
    for i in 0..BATCH_NODES {
        let key = work_key(app, wid, seq, i);
        let payload = if i % 8 == 0 {
            let len = payload_len(key);
            let pl = m.alloc_data::<u8>(len)?;
            bytes += 8 + len.next_multiple_of(8) as u64;
            let data: Vec<u8> = (0..len)
                .map(|j| (key as u8).wrapping_add(j as u8))
                .collect();
            m.data_write(pl, 0, &data)?;
            Some(pl)
        } else {
            None
        };
        let n = m.alloc_init(WorkNode {
            next: head,
            payload,
            key,
            pos: (seq << 20) | i as u64,
        })?;
        bytes += WORK_NODE_BYTES;
        head = Some(n);
    }
    Ok((head.ok_or_else(|| corrupt("empty batch"))?, bytes))
}

/// Walks batch `seq` (in a view: no handle per node) and reports the first
/// discrepancy.
fn check_batch(
    m: &mut Mutator,
    head: Gc<WorkNode>,
    app: usize,
    wid: usize,
    seq: u64,
) -> Res<Option<String>> {
    m.view(|v| {
        let mut cur = Some(v.get(head)?);
        let mut buf = Vec::new();
        for i in (0..BATCH_NODES).rev() {
            let Some(n) = cur else {
                return Ok(Some(format!(
                    "worker {wid}: batch {seq} ends early at node {i}"
                )));
            };
            let key = work_key(app, wid, seq, i);
            if n.read(WorkNode::KEY) != key || n.read(WorkNode::POS) != (seq << 20) | i as u64 {
                return Ok(Some(format!("worker {wid}: batch {seq} node {i} corrupt")));
            }
            if i % 8 == 0 {
                let p = n
                    .get(WorkNode::PAYLOAD)
                    .ok_or_else(|| corrupt("payload is null"))?;
                buf.resize(p.len(), 0);
                p.read_range(0, &mut buf)?;
                let ok = buf.len() == payload_len(key)
                    && buf
                        .iter()
                        .enumerate()
                        .all(|(j, &x)| x == (key as u8).wrapping_add(j as u8));
                if !ok {
                    return Ok(Some(format!(
                        "worker {wid}: batch {seq} payload {i} corrupt"
                    )));
                }
            }
            cur = n.get(WorkNode::NEXT);
        }
        Ok(cur.map(|_| format!("worker {wid}: batch {seq} too long")))
    })
}

/// A background worker: allocates batches into a ring of `RING` (so about
/// 2 MiB stay live per worker and the rest is garbage), checking each batch
/// it drops, until `stop`.
fn worker(heap: &Heap, stop: &AtomicBool, app: usize, wid: usize, sleep: Duration) -> Res<Work> {
    let mut m = heap.attach_named(&format!("worker-{wid}"))?;
    let mut w = Work::default();
    let ring = m.alloc_array::<WorkNode>(RING)?;
    let mut seq = 0u64;
    while !stop.load(Ordering::Acquire) {
        let slot = (seq % RING as u64) as usize;
        let bytes = m.scope(|m| -> Res<u64> {
            if let Some(old) = m.array_get(ring, slot)? {
                if let Some(e) = check_batch(m, old, app, wid, seq - RING as u64)? {
                    note(&mut w.errors, e);
                }
            }
            let (head, bytes) = build_batch(m, app, wid, seq)?;
            m.array_set(ring, slot, Some(head))?;
            Ok(bytes)
        })?;
        w.batches += 1;
        w.bytes += bytes;
        seq += 1;
        if !sleep.is_zero() {
            m.blocking(|| std::thread::sleep(sleep));
        }
    }
    for s in seq.saturating_sub(RING as u64)..seq {
        let e = m.scope(|m| -> Res<Option<String>> {
            let head = m
                .array_get(ring, (s % RING as u64) as usize)?
                .ok_or_else(|| corrupt("ring slot is null"))?;
            check_batch(m, head, app, wid, s)
        })?;
        if let Some(e) = e {
            note(&mut w.errors, e);
        }
    }
    Ok(w)
}

/// `(Rss, Pss, Shared_Clean + Shared_Dirty)` of this process in KiB, from
/// `/proc/self/smaps_rollup`.
fn memory_kib() -> (u64, u64, u64) {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        field("Rss:"),
        field("Pss:"),
        field("Shared_Clean:") + field("Shared_Dirty:"),
    )
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// An app's whole life after the fork, filling in `rep`.
fn app_body(
    m: &mut Mutator,
    pre: &Preload,
    cfg: &Config,
    app: usize,
    rep: &mut AppReport,
) -> Res<()> {
    let heap = m.heap().clone();
    let before = memory_kib();
    // The cycle the heap-size policy would run: with young collections
    // on, a young one, which leaves the preloaded (old) heap in place.
    if let Some(c) = m.collect_young() {
        m.wait_idle();
        let after = memory_kib();
        rep.first_cycle = FirstCycle {
            shared_before_kib: before.2,
            shared_after_kib: after.2,
            pss_before_kib: before.1,
            pss_after_kib: after.1,
            dense_pages: c.dense_pages as u64,
            ebusy_fallbacks: c.ebusy_fallbacks as u64,
            kept_pages: c.kept_pages as u64,
            young: c.young,
        };
    }
    let base = heap.stats();
    let base_cycles = base.cycles;
    // The faults of the frames phase, per thread: the UI thread ("ui",
    // named in the zygote) and the workers (detached when they end).
    let ui_of = |s: &movegc::HeapStats| {
        s.threads
            .iter()
            .find(|t| t.name == "ui")
            .map(|t| t.faults.clone())
            .unwrap_or_default()
    };
    let (base_ui, base_workers) = (ui_of(&base), base.detached_threads.faults.clone());
    let stop = AtomicBool::new(false);

    let mut shadow = Spec {
        id: 1,
        class: 0,
        label: None,
        children: (0..SECTIONS).map(|s| section_spec(app, s, 0)).collect(),
    };
    let b = m.local(&pre.boot)?;
    let classes = need(m.get_ref(b, BOOT_CLASSES)?, "class table")?;
    let root = materialize(m, &shadow, classes)?;

    let (ui, works) = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..cfg.workers)
            .map(|wid| {
                let (heap, stop) = (&heap, &stop);
                sc.spawn(move || worker(heap, stop, app, wid, cfg.worker_sleep))
            })
            .collect();
        let ui = ui_loop(m, pre, cfg, app, root, &mut shadow);
        stop.store(true, Ordering::Release);
        // Joining inside `blocking`: a worker may still need a collection.
        let works: Vec<_> = m.blocking(|| handles.into_iter().map(|h| h.join()).collect());
        (ui, works)
    });

    // The collector's numbers for the frames phase.
    let stats = heap.stats();
    let cycles: Vec<_> = stats
        .recent
        .iter()
        .filter(|c| c.cycle > base_cycles)
        .collect();
    rep.collections = stats.cycles - base_cycles;
    rep.ui_faults = ThreadFaultsReport::since(&ui_of(&stats), &base_ui);
    rep.worker_faults = ThreadFaultsReport::since(&stats.detached_threads.faults, &base_workers);
    let mut names: Vec<&str> = Vec::new();
    for c in &cycles {
        if let Some(s) = c.strategy {
            if !names.contains(&s.name()) {
                names.push(s.name());
            }
        }
    }
    rep.strategy = names.join("+");
    let mut pauses: Vec<Duration> = cycles.iter().map(|c| c.pause).collect();
    pauses.sort_unstable();
    if let Some(&max) = pauses.last() {
        let i = ((0.99 * pauses.len() as f64).ceil() as usize).clamp(1, pauses.len()) - 1;
        rep.pause_p99_us = micros(pauses[i]);
        rep.pause_max_us = micros(max);
    }
    let mut stalls = Histogram::<u64>::new(3)?;
    for c in &cycles {
        rep.faults += c.faults as u64;
        rep.poisoned_pages += c.poisoned_pages as u64;
        rep.pages_moved += c.pages_moved as u64;
        rep.pages_copied += c.pages_copied as u64;
        rep.ebusy_fallbacks += c.ebusy_fallbacks as u64;
        if let Some(s) = &c.fault_stall_us {
            stalls.add(&s.0)?;
        }
    }
    if !stalls.is_empty() {
        rep.fault_stall_p99_us = stalls.value_at_quantile(0.99);
        rep.fault_stall_max_us = stalls.max();
        rep.fault_stall_total_us = (stalls.mean() * stalls.len() as f64) as u64;
    }

    for (wid, w) in works.into_iter().enumerate() {
        match w {
            Ok(Ok(w)) => {
                rep.worker_batches += w.batches;
                rep.worker_alloc_mib += w.bytes as f64 / (1 << 20) as f64;
                for e in w.errors {
                    note(&mut rep.errors, e);
                }
            }
            Ok(Err(e)) => note(&mut rep.errors, format!("worker {wid}: {}", e.0)),
            Err(_) => note(&mut rep.errors, format!("worker {wid} panicked")),
        }
    }
    let ui = ui?;
    rep.frames = ui.frames;
    rep.frames_missed = ui.missed;
    rep.frame_p50_us = ui.hist.value_at_quantile(0.5);
    rep.frame_p99_us = ui.hist.value_at_quantile(0.99);
    rep.frame_max_us = ui.hist.max();
    rep.frame_digest = ui.digest;
    for e in ui.errors {
        note(&mut rep.errors, e);
    }

    // Final check after one more (explicit) collection: the view tree and
    // the whole preload.
    m.collect();
    m.wait_idle();
    let sum = layout(m, root)?;
    let want = shadow_sum(&shadow);
    if sum != want {
        note(
            &mut rep.errors,
            format!("final view tree checksum {sum:#x}, shadow model says {want:#x}"),
        );
    }
    let (total, _) = preload_sum(m, &pre.boot)?;
    if total != pre.sum {
        note(
            &mut rep.errors,
            format!(
                "preload checksum {total:#x} at the end, zygote had {:#x}",
                pre.sum
            ),
        );
    }
    (rep.rss_kib, rep.pss_kib, _) = memory_kib();
    Ok(())
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Writes `line` and a newline to `out` in one call, then leaves the
/// process without running anything of the parent's (test harness, atexit
/// handlers, destructors of inherited state).
fn report_and_exit(mut out: File, line: &str, ok: bool) -> ! {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _ = out.write_all(&buf);
    drop(out);
    // SAFETY: `_exit` ends this forked child at once; nothing after it runs
    // and no state shared with other processes is left half-written (the
    // report is a complete write on a pipe of our own).
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// Reads each pipe until it delivers a full line, reaches end of file, or
/// `deadline` passes; returns the first line of each, if any.
fn read_lines(pipes: &mut [File], deadline: Instant) -> Vec<Option<String>> {
    let n = pipes.len();
    let mut bufs = vec![Vec::new(); n];
    let mut done = vec![false; n];
    loop {
        let open: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
        let now = Instant::now();
        if open.is_empty() || now >= deadline {
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(250));
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd> = open
                .iter()
                .map(|&i| PollFd::new(pipes[i].as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(
                &mut fds,
                PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
            open.iter()
                .zip(&fds)
                .filter(|(_, f)| f.any().unwrap_or(false))
                .map(|(&i, _)| i)
                .collect()
        };
        for i in ready {
            let mut chunk = [0u8; 8192];
            match pipes[i].read(&mut chunk) {
                Ok(0) => done[i] = true,
                Ok(k) => {
                    bufs[i].extend_from_slice(&chunk[..k]);
                    done[i] = bufs[i].contains(&b'\n');
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => done[i] = true,
            }
        }
    }
    bufs.into_iter()
        .map(|b| {
            let line = b.split(|&c| c == b'\n').next().unwrap_or_default();
            let nl = b.contains(&b'\n');
            nl.then(|| String::from_utf8_lossy(line).into_owned())
        })
        .collect()
}

/// Waits for `pid` until `deadline`, then kills it; describes how it ended
/// (`None`: exit status 0).
fn reap(pid: Pid, deadline: Instant) -> Option<String> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() >= deadline {
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    return Some(format!("process {pid} did not finish in time: killed"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(WaitStatus::Exited(_, 0)) => return None,
            Ok(WaitStatus::Exited(_, code)) => {
                return Some(format!("process {pid} exited with status {code}"))
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Some(format!("process {pid} killed by {sig:?}"))
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Some(format!("waitpid({pid}): {e}")),
        }
    }
}

/// One thread's (or a group's) faults during the frames.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreadFaultsReport {
    /// Faults on pages not compacted yet.
    pub faults: u64,
    /// The longest stall, microseconds.
    pub stall_max_us: u64,
    /// The stalls summed, microseconds.
    pub stall_total_us: u64,
}

impl ThreadFaultsReport {
    /// `now` minus `base` (both cumulative over the heap's life).
    fn since(now: &movegc::ThreadFaults, base: &movegc::ThreadFaults) -> ThreadFaultsReport {
        ThreadFaultsReport {
            faults: now.count.saturating_sub(base.count),
            stall_max_us: micros(now.stall_max),
            stall_total_us: micros(now.stall_total.saturating_sub(base.stall_total)),
        }
    }
}

/// Asks the kernel to kill this process when the thread that forked it
/// dies, and leaves at once if that already happened.
fn die_with_parent(parent: Pid) {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if getppid() != parent {
        // SAFETY: ending a forked child whose parent is gone; nothing of
        // the parent's state is touched.
        unsafe { libc::_exit(3) }
    }
}

/// The zygote: builds the heap and preload, forks the apps, gathers their
/// reports. Runs in its own process (see the module docs).
fn zygote(cfg: &Config, strategy: Strategy) -> StrategyReport {
    let mut rep = StrategyReport {
        requested: strategy.name().into(),
        effective: strategy.name().into(),
        zygote_pid: std::process::id() as i32,
        ..Default::default()
    };
    let mut builder = Heap::builder()
        .strategy(strategy)
        .capacity(cfg.heap_mib << 20)
        .min_free(cfg.min_free_mib << 20)
        .growth_factor(1.25)
        .gc_threads(cfg.gc_threads)
        .fault_mode(cfg.fault_mode)
        .poison_freed(cfg.poison);
    if cfg.fixed_budget {
        builder = builder.gc_cpu_target(None);
    }
    let built = builder.build().map_err(Failure::from).and_then(|heap| {
        // This thread becomes every app's UI thread after the fork.
        let m = heap.attach_named("ui")?;
        Ok((heap, m))
    });
    let (heap, mut m) = match built {
        Ok(x) => x,
        Err(e) => {
            rep.errors.push(format!("cannot build the heap: {}", e.0));
            return rep;
        }
    };
    rep.effective = heap.strategy().name().into();
    let lay = match Layouts::new() {
        Ok(l) => l,
        Err(e) => {
            rep.errors.push(e.0);
            return rep;
        }
    };
    let pre = match preload(&mut m, &lay) {
        Ok(p) => p,
        Err(e) => {
            rep.errors.push(format!("preload: {}", e.0));
            return rep;
        }
    };
    rep.preload_ms = pre.build_ms;
    rep.preload_live_mib = pre.live_mib;
    rep.zygote_rss_kib = memory_kib().0;

    // Fork only with no collection in flight; the zygote's only mutator is
    // this thread, so the child's collector waits for nobody else.
    m.wait_idle();
    let me = nix::unistd::getpid();
    let mut pids = Vec::new();
    let mut pipes = Vec::new();
    for app in 0..cfg.apps {
        let (r, w) = match pipe() {
            Ok(p) => p,
            Err(e) => {
                rep.errors.push(format!("pipe: {e}"));
                break;
            }
        };
        // SAFETY: this process's only other threads are the collector's
        // idle workers (`wait_idle` above; they hold no lock the child
        // needs, and the child's collector recreates its workers and its
        // userfaultfd). The child runs ordinary Rust code (allocation,
        // threads: fine after fork with glibc) and leaves through `_exit`.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(r);
                die_with_parent(me);
                let mut a = AppReport {
                    app,
                    pid: std::process::id() as i32,
                    ..Default::default()
                };
                let r = catch_unwind(AssertUnwindSafe(|| {
                    app_body(&mut m, &pre, cfg, app, &mut a)
                }));
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => note(&mut a.errors, e.0),
                    Err(p) => note(&mut a.errors, format!("panic: {}", panic_message(&*p))),
                }
                if cfg.hang_app == Some(app) {
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                let line = serde_json::to_string(&a)
                    .unwrap_or_else(|e| format!("{{\"bad report\":\"{e}\"}}"));
                report_and_exit(File::from(w), &line, a.errors.is_empty());
            }
            Ok(ForkResult::Parent { child }) => {
                drop(w); // so a dead app shows as end of file
                pids.push((app, child));
                pipes.push(File::from(r));
            }
            Err(e) => {
                rep.errors.push(format!("fork of app {app}: {e}"));
                break;
            }
        }
    }

    let deadline = Instant::now() + cfg.app_budget();
    let lines = read_lines(&mut pipes, deadline);
    for ((app, pid), line) in pids.iter().zip(lines) {
        match line.map(|l| serde_json::from_str::<AppReport>(&l)) {
            Some(Ok(a)) => rep.apps.push(a),
            Some(Err(e)) => rep
                .errors
                .push(format!("app {app}: unreadable report: {e}")),
            None => rep
                .errors
                .push(format!("app {app} (pid {pid}) sent no report")),
        }
    }
    for (app, pid) in pids {
        if let Some(e) = reap(pid, deadline) {
            rep.errors.push(format!("app {app}: {e}"));
        }
    }
    rep
}

/// Runs one strategy in a fresh zygote process and returns its report.
fn run_strategy(cfg: &Config, strategy: Strategy) -> StrategyReport {
    let failed = |e: String| StrategyReport {
        requested: strategy.name().into(),
        effective: strategy.name().into(),
        errors: vec![e],
        ..Default::default()
    };
    let (r, w) = match pipe() {
        Ok(p) => p,
        Err(e) => return failed(format!("pipe: {e}")),
    };
    let me = nix::unistd::getpid();
    // SAFETY: the launcher holds no heap and no lock the child needs (with
    // a test harness as launcher, its other threads are blocked waiting on
    // this one); the child is the new zygote, which builds its heap itself
    // and leaves through `_exit`.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(r);
            die_with_parent(me);
            let rep = catch_unwind(AssertUnwindSafe(|| zygote(cfg, strategy)))
                .unwrap_or_else(|p| failed(format!("zygote panic: {}", panic_message(&*p))));
            let line = serde_json::to_string(&rep)
                .unwrap_or_else(|e| format!("{{\"bad report\":\"{e}\"}}"));
            report_and_exit(File::from(w), &line, rep.errors.is_empty());
        }
        Ok(ForkResult::Parent { child }) => {
            drop(w);
            let deadline = Instant::now() + cfg.zygote_budget();
            let mut pipes = [File::from(r)];
            let line = read_lines(&mut pipes, deadline).pop().flatten();
            let ended = reap(child, deadline);
            let mut rep = match line.map(|l| serde_json::from_str::<StrategyReport>(&l)) {
                Some(Ok(rep)) => rep,
                Some(Err(e)) => failed(format!("unreadable zygote report: {e}")),
                None => failed(format!("zygote (pid {child}) sent no report")),
            };
            if let Some(e) = ended {
                if rep.errors.is_empty() || !e.contains("status 1") {
                    rep.errors.push(format!("zygote: {e}"));
                }
            }
            rep
        }
        Err(e) => failed(format!("fork of the zygote: {e}")),
    }
}

/// Runs every strategy of `cfg`, one fresh zygote (and fresh apps) after
/// another, from the calling process, which never builds a heap itself.
/// Forks, so call it from a process with no heap activity on other threads
/// (a test's own thread is fine: see the module docs). Never hangs: every
/// child has a deadline and is killed after it.
pub fn run(cfg: &Config) -> RunReport {
    let mut rep = RunReport {
        apps: cfg.apps,
        frames: cfg.frames,
        workers: cfg.workers,
        fault_mode: cfg.fault_mode.name().into(),
        ..Default::default()
    };
    for &s in &cfg.strategies {
        rep.strategies.push(run_strategy(cfg, s));
    }
    // The frames are deterministic per app index: every strategy must have
    // produced the same layout checksums.
    for app in 0..cfg.apps {
        let digests: Vec<(&str, u64)> = rep
            .strategies
            .iter()
            .filter_map(|s| {
                s.apps
                    .iter()
                    .find(|a| a.app == app && a.frames == cfg.frames)
                    .map(|a| (s.requested.as_str(), a.frame_digest))
            })
            .collect();
        if digests.windows(2).any(|w| w[0].1 != w[1].1) {
            rep.errors.push(format!(
                "app {app}: frame checksums differ between strategies: {digests:x?}"
            ));
        }
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("zygote").chain(v.iter().copied()))
    }

    #[test]
    fn parses_the_command_line() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = parse(&[]).unwrap();
        assert_eq!(c.config(), Config::default());
        assert!(!c.json);
        let c = parse(&["--quick", "--apps", "2", "--strategies=stw,move,stw"]).unwrap();
        assert_eq!(c.config().frames, Config::QUICK_FRAMES);
        assert_eq!(c.config().apps, 2);
        assert_eq!(
            c.config().strategies,
            vec![Strategy::StopTheWorld, Strategy::ConcurrentMove]
        );
        let c = parse(&["--frames=7", "--quick", "--json", "--workers", "0"]).unwrap();
        assert_eq!(
            (c.config().frames, c.json, c.config().workers),
            (7, true, 0)
        );
        let c = parse(&[
            "--strategies",
            "copy",
            "--heap-mib",
            "64",
            "--fault-mode",
            "handler",
        ])
        .unwrap()
        .config();
        assert_eq!(
            (c.strategies, c.heap_mib, c.fault_mode),
            (vec![Strategy::ConcurrentCopy], 64, FaultMode::HandlerThread)
        );
        assert_eq!(
            parse(&["--fault-mode=handler-thread"])
                .unwrap()
                .config()
                .fault_mode,
            FaultMode::HandlerThread
        );
        assert_eq!(
            parse(&["-h"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
        for bad in [
            &["--frames"][..],
            &["--frames", "0"],
            &["--apps", "x"],
            &["--apps", "17"],
            &["--heap-mib", "32"],
            &["--strategies", "fast"],
            &["--quick=1"],
            &["--fault-mode", "poll"],
            &["--frob"],
            &["stray"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn help_names_every_option_and_its_default() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "--frames <N>",
            "600",
            "90 with --quick",
            "--apps <N>",
            "[default: 3]",
            "--workers <N>",
            "[default: 2]",
            "--strategies <LIST>",
            "[default: move,copy,stw]",
            "--quick",
            "--heap-mib <MIB>",
            "[default: 256]",
            "--fault-mode <M>",
            "[default: sigbus]",
            "--json",
        ] {
            assert!(help.contains(needle), "{needle:?} missing in:\n{help}");
        }
    }

    #[test]
    fn shadow_layout_is_deterministic_and_sensitive() {
        let tree = |g| Spec {
            id: 1,
            class: 0,
            label: None,
            children: (0..SECTIONS).map(|s| section_spec(0, s, g)).collect(),
        };
        assert_eq!(shadow_sum(&tree(0)), shadow_sum(&tree(0)));
        assert_ne!(shadow_sum(&tree(0)), shadow_sum(&tree(1)));
        let nodes = |s: &Spec| -> usize {
            fn count(s: &Spec) -> usize {
                1 + s.children.iter().map(count).sum::<usize>()
            }
            count(s)
        };
        let n = nodes(&tree(0));
        assert!((150..=600).contains(&n), "{n} views");
    }
}
