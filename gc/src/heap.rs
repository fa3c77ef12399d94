//! The heap: configuration, the policies only the heap applies (the size
//! policy, allocation and its grants, persistent roots, statistics) and
//! [`MutatorContext`], a thread's allocation and safepoint interface.
//!
//! **Who owns what.** A heap ([`GcHeap`], shared) holds its spaces
//! (`space::Spaces`: the moving and large-object spaces, each the policy
//! for its objects), its collector (`cycle::Gc`: side metadata, the cycle
//! in flight, worker pool, userfaultfd, safepoints, the SATB log) and the
//! state above. Collections are run by the plan in `cycle`, which sees the
//! heap only through the `cycle::Host` trait: the spaces, the collector,
//! the persistent roots, and the three points where a cycle calls the
//! heap's policies (grant waiting mutators, how much to keep resident,
//! cycle ended). Nothing in `cycle` reaches into this module's fields;
//! this module calls `cycle` to collect, never the other way round.
//!
//! **Heap-size policy** (`pacing`). After each collection with `L` live
//! bytes (moving space plus large objects) the next automatic collection
//! starts when the heap's used bytes reach `max(L * growth_factor, L +
//! budget)`, where the free budget starts at `min_free` and follows the
//! collector's measured CPU share (`gc_cpu_target`); concurrent cycles
//! start earlier, by what mutators allocate during one cycle at the
//! recent rate, so they end before the heap is full. An allocation that
//! does not fit waits for a collection (an *allocation stall*, counted per
//! thread). If it still does not fit after that collection, it fails with
//! [`AllocError::HeapExhausted`] and the heap stays usable.
//!
//! **No false out-of-memory.** An allocation that does not fit records a
//! *want* in its mutator's state and waits for a collection. Every cycle,
//! in the pause where it has just made room (after compacting, or at the
//! concurrent flip), answers each waiting mutator with the world still
//! stopped: it carves the wanted block (a TLAB that fits the object) or
//! reserves the large object's bytes before anyone else can take them, or
//! records that it could not. A mutator fails with `HeapExhausted` only
//! when a cycle that *began after its request* could not make room;
//! a cycle that began earlier (it was already marking) answers "no" only
//! provisionally, and the mutator starts another. So a thread that waited
//! for a cycle gets the space that cycle freed for it, however many other
//! threads allocate meanwhile.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::concurrent::{FaultMode, Injection, DEFAULT_MIN_MOVE_RUN};
use crate::cputime::{self, GcCpu};
use crate::cycle::{worker_pool, Gc, Host, Settings};
use crate::mapping::{
    physical_memory, round_up, system_page_size, SyscallCounters, HUGE_PAGE_SIZE, PAGE_SIZE,
};
use crate::object::{store_word, swap_word, FieldError, Layout, ObjRef, WORD};
use crate::pacing::{CycleSample, Pacer, PacingConfig};
use crate::safepoint::{running_here, AlreadyAttached, StoppedWorld, Want};
use crate::safepoint::{Attached, Coordinator};
use crate::space::{LargeObjectSpace, MovingSpace, Spaces};
use crate::stats::{CycleStats, HeapStats, PauseKind, Phase, Strategy, Trigger, RECENT_CYCLES};
use crate::uffd::OpenPath;
use std::collections::VecDeque;

/// Heap configuration. Build one with [`HeapConfig::default`] and adjust
/// fields; [`GcHeap::new`] validates it.
#[derive(Clone, Debug)]
pub struct HeapConfig {
    /// Maximum heap size in bytes: moving space plus large objects. The
    /// moving space reserves this much address space (twice: plus the
    /// from-space) but commits memory only as it is used. Default: a quarter
    /// of physical memory.
    pub capacity: usize,
    /// Objects of this many bytes or more go to the large-object space.
    /// Default 32 KiB.
    pub large_object_threshold: usize,
    /// Bytes per TLAB refill. Default 32 KiB.
    pub tlab_size: usize,
    /// Collector worker threads (marking, compaction). Default: available
    /// parallelism, at most 4.
    pub gc_threads: usize,
    /// How many of them work while mutators run (concurrent marking and
    /// compaction); pauses use all `gc_threads`. `None` (the default): all
    /// of them. Fewer leave mutators more of the CPU during a cycle, at
    /// the price of a longer cycle: on the 96 MiB fragmenter at 90 %
    /// occupancy, one of two made the cycles long enough for allocations
    /// to stall (up to 0.6 s) without shortening the longest operation
    /// (`docs/benchmarks.md` §7), so the default keeps them all. Must be
    /// within `1..=gc_threads`.
    pub concurrent_gc_threads: Option<usize>,
    /// Allocation pacing: while a concurrent cycle marks, a thread taking
    /// a new TLAB faster than the room left allows waits up to this long
    /// (per TLAB) instead of filling the heap and stalling until the flip
    /// (see `pacing`; Shenandoah's `ShenandoahPacingMaxDelay`). `None`
    /// turns pacing off. Default 10 ms.
    pub pacing_max_delay: Option<std::time::Duration>,
    /// Heap growth factor of the size policy: after a cycle with `L` live
    /// bytes the heap may use at least `L * growth_factor` before the next
    /// (see `pacing`). Default 2.0.
    pub growth_factor: f64,
    /// The smallest allocation between automatic collections, and the
    /// free budget the size policy starts from. Default 32 MiB or a
    /// quarter of the capacity, whichever is smaller.
    pub min_free: usize,
    /// The collector's target share of the process's CPU time: while the
    /// measured share since the previous cycle is above it, the free
    /// budget grows (toward the capacity); well below it, it shrinks back
    /// toward `min_free` (see `pacing`). `None` keeps the budget at
    /// `min_free`. Default `Some(0.30)` (chosen by measurement:
    /// `docs/benchmarks.md` §7), or the environment variable
    /// `MOVEGC_GC_CPU_TARGET` (a share such as `0.05`, or `off`).
    pub gc_cpu_target: Option<f64>,
    /// Pages at the start of the space at least this live are left in
    /// place (the dense prefix); `None` compacts everything. Default 0.95.
    pub dense_prefix_threshold: Option<f64>,
    /// Young collections (`generation`): a cycle started by the heap-size
    /// policy marks and compacts only what was allocated since the last
    /// cycle, from the roots and the old pages written since then (a card
    /// table kept by the reference-store barrier); the old region stays
    /// where it is. Full cycles still run when the old region has doubled
    /// since the last full one, a young cycle freed little, an allocation
    /// failed or `collect()` is called. The old region ends on a page
    /// boundary: after each cycle the top skips to the next one (up to
    /// 4 KiB that count as used until a full cycle packs them). Default
    /// false, or the environment
    /// variable `MOVEGC_GENERATIONAL` (`1`/`0`), so a deployed program can
    /// switch it without a rebuild.
    pub generational: bool,
    /// How young collections learn which old pages were written since the
    /// last cycle ([`RememberedSet`](crate::RememberedSet)): a card-marking
    /// barrier, or the kernel's dirty tracking (userfaultfd `WP_ASYNC` +
    /// `PAGEMAP_SCAN`, which falls back to cards, said once, where it is not
    /// available). Only used with [`generational`](Self::generational).
    /// The stale-reference mode ([`poison_freed`](Self::poison_freed))
    /// uses cards. Default [`Cards`](crate::RememberedSet::Cards) (chosen
    /// by measurement: `docs/benchmarks.md` §6b), or the environment
    /// variable `MOVEGC_REMEMBERED_SET` (`cards` or `wp`).
    pub remembered_set: crate::RememberedSet,
    /// Young concurrent cycles leave the old region in place at the flip
    /// (only the reservation above it moves out) when at most 256 of its
    /// pages are dirty; those are fixed in the final pause. Young cycles
    /// then move a fifth of the pages and take half the compaction time
    /// (the old pages are neither moved out nor back), and it keeps a zygote's pages shared with a forked
    /// app (`docs/benchmarks.md` §6c). Its flip moves page tables one PMD
    /// at a time rather than one GiB, which is as fast only while no other
    /// thread of the process runs during the pause (each PMD's TLB flush
    /// would interrupt it; the collector's own threads are asleep by then).
    /// Only used with [`generational`](Self::generational). Default on;
    /// the environment variable `MOVEGC_KEEP_OLD=0` turns it off.
    pub keep_old_region: bool,
    /// Full cycles leave alone the dense-prefix pages that nothing changed
    /// since the last full cycle fixed them: no object on them died and
    /// none of their references points at an object that moves (the
    /// marker and the barrier record that per page; see the `clean`
    /// module). Stop-the-world cycles skip those pages; concurrent cycles
    /// also keep the run of them at the bottom of the space out of the
    /// flip (neither moved out nor back). Default on; the environment
    /// variable `MOVEGC_KEEP_CLEAN_PREFIX=0` turns it off.
    pub keep_clean_prefix: bool,
    /// Concurrent MOVE cycles that the size policy started end by moving
    /// the from-space pages they did not need, zeroed, into the allocation
    /// region (up to what the pacer lets the mutators allocate before the
    /// next cycle, at most the old top) instead of releasing them:
    /// allocating then takes no page fault. Not after `collect()` (an idle
    /// program or a zygote about to fork keeps nothing zeroed resident) and
    /// not in the stale-reference mode.
    /// The kernel's zero-fill faults were a quarter of binary-trees' time
    /// under concurrent MOVE (`docs/benchmarks.md` §6d). The zeroing is
    /// allocation work and is not counted as collector CPU time
    /// (`CycleStats::prefill_cpu`). Off, those pages are released and
    /// refaulted one by one. Default on, or the environment variable
    /// `MOVEGC_PREFILL=0` turns it off.
    pub prefill_allocation: bool,
    /// In MOVE mode, the GC threads' runs of fewer to-space pages than this
    /// are installed with `UFFDIO_COPY` instead of `UFFDIO_MOVE`, and
    /// unless it is 1 so are the allocation-region pages a fault fills
    /// ([`ZERO_FILL_PAGES`](crate::concurrent::ZERO_FILL_PAGES) at a time:
    /// that MOVE's IPI would be the faulting thread's wait). Each MOVE flushes its source
    /// range from the TLB of every CPU running a thread of this process (an
    /// inter-processor interrupt to each CPU where a mutator runs), which
    /// costs more than copying a few pages; the GC threads' runs get short
    /// when mutators fault on pages ahead of them. 1 moves every run. Default [`DEFAULT_MIN_MOVE_RUN`],
    /// or the environment variable `MOVEGC_MIN_MOVE_RUN` (a positive
    /// integer).
    pub min_move_run: usize,
    /// The most dirty slots a concurrent cycle's black block (what was
    /// allocated while it marked) may have for the final pause to rewrite
    /// them in place, on at most 64 pages: the flip then leaves the block where it is, present, and
    /// nothing after the pause touches it. More (or 0 here), the block is
    /// flipped with the rest and GC threads fix its pages and move them
    /// back (`docs/design.md` §8). A dirty slot is a black object's field
    /// given a reference to an older object while the heap marked; each
    /// costs the pause a forwarding lookup (tens of nanoseconds).
    /// Default [`DEFAULT_PAUSE_BLACK_SLOTS`], or the environment variable
    /// `MOVEGC_PAUSE_BLACK_SLOTS` (an integer).
    pub pause_black_slots: usize,
    /// Print one line per collection on stderr (`CycleStats::log_line`:
    /// kind and cause, heap before and after, live, pauses with time to
    /// safepoint, marking, compaction, pages, faults), as the JVM's
    /// `-Xlog:gc`. Every cycle is also a `tracing` event on the target
    /// `movegc::gc` whatever this says. Default: on if the environment
    /// variable `MOVEGC_LOG` lists `gc` (e.g. `MOVEGC_LOG=gc`).
    pub gc_log: bool,
    /// Ask for transparent huge pages on the moving space. Default false.
    pub huge_pages: bool,
    /// Concurrent strategies also mark concurrently (a snapshot-at-the-
    /// beginning barrier on reference stores; two short pauses instead of
    /// one that contains marking). Default true.
    pub concurrent_mark: bool,
    /// Run the heap verifier after every collection. Default: on in debug
    /// builds and with the `verify` feature.
    pub verify: bool,
    /// Collection strategy. Default: concurrent MOVE. With concurrent
    /// marking its pauses are two short ones (the final one holds the
    /// flip) instead of one that holds marking and compaction: 0.1 + 4 ms
    /// instead of 297 ms for a 256 MiB heap with 128 MiB live, 3 ms
    /// instead of 39 ms on the fragmenter; it costs 10-50 % of throughput
    /// on two cores, where the marker and compactors compete with the
    /// mutators (`docs/benchmarks.md`). Choose `StopTheWorld` for batch
    /// throughput. Concurrent strategies fall back (MOVE → COPY →
    /// stop-the-world) where the kernel cannot do them, saying so once.
    pub strategy: Strategy,
    /// How mutator faults are served during concurrent cycles.
    pub fault_mode: FaultMode,
    /// Open userfaultfd only through this path (default: least privilege
    /// first, see `docs/uffd.md`).
    pub uffd_path: Option<OpenPath>,
    /// A stop of the world that waits this long for a thread names it on
    /// stderr (see `HeapStats::late_threads`). Default 5 s.
    pub safepoint_warn_after: std::time::Duration,
    /// The stale-reference mode (see [`poison`](crate::poison)): after
    /// every collection the memory it freed is poisoned with
    /// `UFFDIO_POISON` until allocation hands it out again, so a read
    /// through an address kept across a cycle outside a root (a raw
    /// `ObjRef`) stops the process with a report (the address, the
    /// collection that freed it, the object that was there and where it
    /// moved) instead of reading garbage or zeros. A debugging mode: it
    /// costs page faults on every page allocation reaches after a cycle,
    /// a walk of the freed objects in each cycle's last pause, and
    /// `madvise` + poisoning of the free space after each cycle (measured
    /// in `docs/benchmarks.md`). Needs `UFFD_FEATURE_POISON` (Linux 6.6);
    /// without it the heap says so once and runs without. Default: off,
    /// or on if the environment variable `MOVEGC_POISON` is `1` (so a
    /// deployed program can switch it on without a rebuild).
    pub poison_freed: bool,
    /// Called by the stale-reference mode after its report, before the
    /// process aborts (see [`StaleHook`](crate::StaleHook): it runs in a
    /// signal handler). Default: none.
    pub on_stale_access: Option<crate::StaleHook>,
    /// The stale-reference mode's stress option: every collection moves
    /// every object (every other one compacts to just above the old top,
    /// the next back down to the start), so no stale address keeps
    /// pointing at live memory by luck: the whole old image is poisoned.
    /// Implies `poison_freed`; makes every collection stop-the-world, full
    /// (not young) and without a dense prefix; the heap needs room for its
    /// live data twice (a cycle without it compacts as usual). For test
    /// runs. Default: off, or on with `MOVEGC_POISON=stress`.
    pub poison_stress: bool,
    /// Test-only error injection into the concurrent installer.
    pub injection: Injection,
}

impl Default for HeapConfig {
    fn default() -> Self {
        let capacity = round_up((physical_memory() / 4).max(64 << 20), HUGE_PAGE_SIZE);
        HeapConfig {
            capacity,
            large_object_threshold: 32 << 10,
            tlab_size: 32 << 10,
            gc_threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
            concurrent_gc_threads: None,
            pacing_max_delay: Some(std::time::Duration::from_millis(10)),
            growth_factor: 2.0,
            min_free: (32 << 20).min(capacity / 4),
            gc_cpu_target: cpu_target_from_env(std::env::var("MOVEGC_GC_CPU_TARGET").ok()),
            dense_prefix_threshold: Some(0.95),
            generational: std::env::var("MOVEGC_GENERATIONAL").is_ok_and(|v| v == "1"),
            keep_old_region: flag_from_env(
                "MOVEGC_KEEP_OLD",
                std::env::var("MOVEGC_KEEP_OLD").ok(),
                true,
            ),
            keep_clean_prefix: flag_from_env(
                "MOVEGC_KEEP_CLEAN_PREFIX",
                std::env::var("MOVEGC_KEEP_CLEAN_PREFIX").ok(),
                true,
            ),
            prefill_allocation: flag_from_env(
                "MOVEGC_PREFILL",
                std::env::var("MOVEGC_PREFILL").ok(),
                true,
            ),
            min_move_run: min_move_run_from_env(std::env::var("MOVEGC_MIN_MOVE_RUN").ok()),
            pause_black_slots: pause_black_slots_from_env(
                std::env::var("MOVEGC_PAUSE_BLACK_SLOTS").ok(),
            ),
            remembered_set: remembered_set_from_env(std::env::var("MOVEGC_REMEMBERED_SET").ok()),
            huge_pages: false,
            gc_log: std::env::var("MOVEGC_LOG")
                .is_ok_and(|v| v.split(',').any(|t| t.trim() == "gc")),
            concurrent_mark: true,
            verify: cfg!(any(debug_assertions, feature = "verify")),
            strategy: Strategy::ConcurrentMove,
            fault_mode: FaultMode::Sigbus,
            uffd_path: None,
            safepoint_warn_after: std::time::Duration::from_secs(5),
            poison_freed: crate::poison::enabled_by_env(
                std::env::var("MOVEGC_POISON").ok().as_deref(),
            ),
            on_stale_access: None,
            poison_stress: crate::poison::stress_by_env(
                std::env::var("MOVEGC_POISON").ok().as_deref(),
            ),
            injection: Injection::default(),
        }
    }
}

/// The collector's default target share of CPU time: on binary-trees
/// depth 20 it cuts CPU time against a fixed 32 MiB budget about as much
/// as 0.05-0.20 under concurrent MOVE (-35 to -38 %; stop-the-world -52 %,
/// where 0.10 does -59 %) for 1.5-2x the peak RSS, where 0.10 took 3-5x
/// (`docs/benchmarks.md` §7).
pub const DEFAULT_GC_CPU_TARGET: f64 = 0.30;

/// The default CPU target given `MOVEGC_GC_CPU_TARGET`'s value: `off`
/// for none, a number for that share, [`DEFAULT_GC_CPU_TARGET`] otherwise (also when the
/// value does not parse: `GcHeap::new` would reject nothing useful).
/// `MOVEGC_REMEMBERED_SET`: `cards` or `wp`; anything else is said on
/// stderr and gives the default.
fn remembered_set_from_env(v: Option<String>) -> crate::RememberedSet {
    match v.as_deref().map(str::trim) {
        None => crate::RememberedSet::default(),
        Some(s) => crate::RememberedSet::from_name(s).unwrap_or_else(|| {
            eprintln!("movegc: MOVEGC_REMEMBERED_SET={s:?} is not 'cards' or 'wp'; using cards");
            crate::RememberedSet::default()
        }),
    }
}

/// A `0`/`1` setting from environment variable `name` (value `v`):
/// `default` when unset; an unknown value is said on stderr and gives
/// `default`.
fn flag_from_env(name: &str, v: Option<String>, default: bool) -> bool {
    match v.as_deref().map(str::trim) {
        None => default,
        Some("1") => true,
        Some("0") => false,
        Some(s) => {
            eprintln!(
                "movegc: {name}={s:?} is not '0' or '1'; using {}",
                default as u8
            );
            default
        }
    }
}

/// Default of [`HeapConfig::pause_black_slots`]: about 50 µs of pause at
/// worst.
pub const DEFAULT_PAUSE_BLACK_SLOTS: usize = 1024;

fn pause_black_slots_from_env(v: Option<String>) -> usize {
    usize_from_env("MOVEGC_PAUSE_BLACK_SLOTS", v, DEFAULT_PAUSE_BLACK_SLOTS, 0)
}

fn min_move_run_from_env(v: Option<String>) -> usize {
    usize_from_env("MOVEGC_MIN_MOVE_RUN", v, DEFAULT_MIN_MOVE_RUN, 1)
}

/// An integer setting of at least `min` from environment variable `name`
/// (value `v`): `default` when unset; anything else is said on stderr and
/// gives `default`.
fn usize_from_env(name: &str, v: Option<String>, default: usize, min: usize) -> usize {
    let s = match v.as_deref().map(str::trim) {
        None => return default,
        Some(s) => s,
    };
    match s.parse::<usize>() {
        Ok(n) if n >= min => n,
        _ => {
            eprintln!("movegc: {name}={s:?} is not an integer of at least {min}; using {default}");
            default
        }
    }
}

fn cpu_target_from_env(v: Option<String>) -> Option<f64> {
    match v.as_deref().map(str::trim) {
        Some("off") => None,
        Some(s) => match s.parse::<f64>() {
            Ok(t) if t > 0.0 && t < 1.0 => Some(t),
            _ => {
                eprintln!("movegc: MOVEGC_GC_CPU_TARGET={s:?} is not 'off' or a share in (0, 1); using {DEFAULT_GC_CPU_TARGET}");
                Some(DEFAULT_GC_CPU_TARGET)
            }
        },
        None => Some(DEFAULT_GC_CPU_TARGET),
    }
}

/// A configuration the heap cannot use.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigError {
    /// Capacity below the 2 MiB minimum.
    #[error("heap capacity {0} bytes is below the minimum of 2 MiB")]
    CapacityTooSmall(usize),
    /// Capacity above [`MAX_CAPACITY`] (a heap reserves four times its
    /// capacity of address space).
    #[error("heap capacity {0} bytes is above the maximum of {MAX_CAPACITY} bytes (8 TiB)")]
    CapacityTooLarge(usize),
    /// TLAB size not a multiple of 8 in 256 B ..= capacity.
    #[error("TLAB size {0} must be a multiple of 8 between 256 bytes and the capacity")]
    BadTlabSize(usize),
    /// Large-object threshold not in 16 B ..= capacity.
    #[error("large-object threshold {0} must be between 16 bytes and the capacity")]
    BadLargeObjectThreshold(usize),
    /// Growth factor below 1.
    #[error("growth factor {0} must be at least 1.0")]
    BadGrowthFactor(f64),
    /// CPU target outside `0 < t < 1`.
    #[error("GC CPU target {0} must be between 0.0 and 1.0 (exclusive)")]
    BadCpuTarget(f64),
    /// Concurrent collector threads outside `1..=gc_threads`.
    #[error("concurrent GC threads {concurrent} must be between 1 and gc_threads ({gc_threads})")]
    BadConcurrentThreads {
        /// The `concurrent_gc_threads` asked for.
        concurrent: usize,
        /// The configured `gc_threads`.
        gc_threads: usize,
    },
    /// Dense-prefix threshold outside 0..=1.
    #[error("dense-prefix threshold {0} must be within 0.0..=1.0")]
    BadDensePrefix(f64),
    /// Page size other than 4 KiB.
    #[error("system page size is {0}; movegc needs 4096")]
    PageSize(usize),
}

/// Largest heap capacity: 8 TiB. A heap reserves four times its capacity
/// of address space (the moving space, the large-object arena, and the
/// from-space alias of both) in a 128 TiB user address space, and page
/// indexes of a cycle fit in 32 bits.
pub const MAX_CAPACITY: usize = 1 << 43;

/// Why the heap could not be created.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reserving memory failed.
    #[error("reserving heap memory failed: {0}")]
    Map(#[from] io::Error),
    /// Creating the collector's thread pool failed.
    #[error("starting collector threads failed: {0}")]
    Threads(String),
}

/// An allocation failure.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// Not enough room even after a full collection.
    #[error(
        "heap exhausted: {requested} bytes requested, {live} bytes live of {capacity} capacity"
    )]
    HeapExhausted {
        /// Bytes requested.
        requested: usize,
        /// Heap capacity.
        capacity: usize,
        /// Live bytes after the last collection.
        live: usize,
    },
    /// The kernel refused memory for a large object.
    #[error("mapping a large object failed: errno {0}")]
    Os(i32),
    /// A collection failed part-way (a bug or a kernel failure); the heap
    /// can no longer be used.
    #[error("the heap is poisoned: a collection failed part-way")]
    Poisoned,
}

#[derive(Debug, Default)]
struct PersistentTable {
    slots: Vec<Option<ObjRef>>,
    free: Vec<usize>,
}

/// A heap: its configuration, its spaces, its collector and the policies
/// only the heap applies (sizing, allocation grants, persistent roots,
/// statistics). The collector reaches it through [`Host`].
struct HeapInner {
    config: HeapConfig,
    spaces: Spaces,
    gc: Gc,
    /// Bytes of capacity promised to mutators waiting for a large object.
    los_reserved: AtomicUsize,
    persistent: Mutex<PersistentTable>,
    /// Run totals (`recent` is kept apart, below).
    stats: Mutex<HeapStats>,
    /// The most recent cycles, oldest first.
    recent: Mutex<VecDeque<CycleStats>>,
    /// Used bytes at which the next automatic collection starts.
    next_gc: AtomicUsize,
    /// The size and pacing policy (`pacing`).
    pacer: Mutex<Pacer>,
    /// Pacing delays since the last cycle ended: count and nanoseconds.
    paced: (AtomicU64, AtomicU64),
    /// Set if a collection panicked: the heap may be inconsistent.
    poisoned: AtomicBool,
}

/// A managed heap. Cheap to clone (shared); several heaps can coexist in one
/// process.
#[derive(Clone)]
pub struct GcHeap {
    inner: Arc<HeapInner>,
}

impl std::fmt::Debug for GcHeap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcHeap")
            .field(
                "start",
                &format_args!("{:#x}", self.inner.spaces.moving.start()),
            )
            .field("capacity", &self.inner.config.capacity)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turns the stale-reference mode on for `moving`, or says once why it
/// cannot.
fn enable_poison(moving: &MovingSpace, hook: Option<crate::StaleHook>) {
    static WARN_POISON: AtomicBool = AtomicBool::new(false);
    let off = |e: &dyn std::fmt::Display| {
        crate::concurrent::support::warn_once(
            &WARN_POISON,
            &format!("the stale-reference mode (poison_freed) is off: {e}"),
        )
    };
    let poisoner = match crate::poison::Poisoner::open(moving.start(), moving.reserved(), hook) {
        Ok(p) => Arc::new(p),
        Err(e) => return off(&e),
    };
    match crate::concurrent::fault::register_poisoner(&poisoner) {
        Ok(slot) => moving.set_poison(crate::poison::HeapPoison {
            _slot: slot,
            poisoner,
        }),
        Err(e) => off(&e),
    }
}

/// The remembered-set builder a heap gets: the stale-reference mode
/// registers the heap with its own userfaultfd around each poisoning,
/// which the kernel's dirty tracking (registered with the heap's, for
/// good) would refuse (one userfaultfd per VMA): cards there, said once.
fn remembered_set(config: &HeapConfig) -> crate::RememberedSet {
    use crate::RememberedSet::{Cards, WriteProtect};
    static WARN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    match config.remembered_set {
        WriteProtect if config.poison_freed && config.generational => {
            crate::concurrent::support::warn_once(
                &WARN,
                "the stale-reference mode registers the heap with its own userfaultfd; \
                 young collections use the card barrier instead of kernel dirty tracking",
            );
            Cards
        }
        r => r,
    }
}

impl GcHeap {
    /// Creates a heap.
    pub fn new(mut config: HeapConfig) -> Result<GcHeap, HeapError> {
        if config.poison_stress {
            config.poison_freed = true;
            config.strategy = Strategy::StopTheWorld;
            config.generational = false;
            config.dense_prefix_threshold = None;
        }
        let page = system_page_size();
        if page != PAGE_SIZE {
            return Err(ConfigError::PageSize(page).into());
        }
        if config.capacity < HUGE_PAGE_SIZE {
            return Err(ConfigError::CapacityTooSmall(config.capacity).into());
        }
        if config.capacity > MAX_CAPACITY {
            return Err(ConfigError::CapacityTooLarge(config.capacity).into());
        }
        if config.tlab_size % WORD != 0
            || config.tlab_size < 256
            || config.tlab_size > config.capacity
        {
            return Err(ConfigError::BadTlabSize(config.tlab_size).into());
        }
        if config.large_object_threshold < 16 || config.large_object_threshold > config.capacity {
            return Err(ConfigError::BadLargeObjectThreshold(config.large_object_threshold).into());
        }
        if let Some(t) = config.gc_cpu_target {
            if !(t > 0.0 && t < 1.0) {
                return Err(ConfigError::BadCpuTarget(t).into());
            }
        }
        let gc_threads = config.gc_threads.max(1);
        let concurrent_threads = match config.concurrent_gc_threads {
            None => gc_threads,
            Some(n) if (1..=gc_threads).contains(&n) => n,
            Some(n) => {
                return Err(ConfigError::BadConcurrentThreads {
                    concurrent: n,
                    gc_threads,
                }
                .into())
            }
        };
        if config.growth_factor.is_nan() || config.growth_factor < 1.0 {
            return Err(ConfigError::BadGrowthFactor(config.growth_factor).into());
        }
        if let Some(t) = config.dense_prefix_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(ConfigError::BadDensePrefix(t).into());
            }
        }
        let moving = MovingSpace::new(config.capacity, config.huge_pages)?;
        if config.poison_freed {
            enable_poison(&moving, config.on_stale_access);
        }
        let settings = Settings {
            gc_threads,
            concurrent_threads,
            verify: config.verify,
            concurrent_mark: config.concurrent_mark,
            dense_prefix_threshold: config.dense_prefix_threshold,
            generational: config.generational,
            remembered_set: remembered_set(&config),
            keep_old_region: config.keep_old_region,
            keep_clean_prefix: config.keep_clean_prefix,
            huge_pages: config.huge_pages,
            prefill_allocation: config.prefill_allocation,
            min_move_run: config.min_move_run.max(1),
            pause_black_slots: config.pause_black_slots,
            strategy: config.strategy,
            fault_mode: config.fault_mode,
            uffd_path: config.uffd_path,
            injection: config.injection,
            stress: config.poison_stress,
            min_free_words: config.min_free.min(config.capacity) / WORD,
        };
        let cpu = Arc::new(GcCpu::default());
        let pool = worker_pool(config.gc_threads, cpu.clone())
            .map_err(|e| HeapError::Threads(e.to_string()))?;
        let gc = Gc::new(
            settings,
            &moving,
            Coordinator::new(config.safepoint_warn_after),
            pool,
            cpu,
        )?;
        Ok(GcHeap {
            inner: Arc::new(HeapInner {
                stats: Mutex::new(HeapStats {
                    capacity: config.capacity,
                    ..Default::default()
                }),
                recent: Mutex::new(VecDeque::new()),
                pacer: Mutex::new(Pacer::new(&pacing_config(&config, gc.strategy()))),
                paced: (AtomicU64::new(0), AtomicU64::new(0)),
                next_gc: AtomicUsize::new(config.min_free.min(config.capacity)),
                config,
                spaces: Spaces {
                    large: LargeObjectSpace::new(moving.arena()),
                    moving,
                    counters: SyscallCounters::default(),
                },
                gc,
                los_reserved: AtomicUsize::new(0),
                persistent: Mutex::new(PersistentTable::default()),
                poisoned: AtomicBool::new(false),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &HeapConfig {
        &self.inner.config
    }

    /// The strategy collections actually use (after fallbacks).
    pub fn strategy(&self) -> Strategy {
        self.inner.gc.strategy()
    }

    /// What `strategy` becomes on this heap after fallbacks.
    ///
    /// Asking about a concurrent strategy on a heap created stop-the-world
    /// opens userfaultfd now (saying once on stderr if it cannot), so that
    /// `collect_with(ConcurrentMove)` works on any heap.
    pub fn effective_strategy(&self, strategy: Strategy) -> Strategy {
        let inner = &self.inner;
        inner.gc.effective_strategy(strategy, &inner.spaces.moving)
    }

    /// The fault mode concurrent cycles use, if userfaultfd is open.
    pub fn fault_mode(&self) -> Option<FaultMode> {
        self.inner.gc.concurrent().map(|c| c.fault_mode)
    }

    /// Whether a concurrent cycle is running now.
    pub fn cycle_in_flight(&self) -> bool {
        self.inner.gc.in_flight()
    }

    /// Blocks until no concurrent cycle is running.
    ///
    /// Fails with [`WaitError::RunningMutator`] on a thread whose mutator
    /// of this heap is running (outside [`MutatorContext::blocking`]): the
    /// cycle's final pause waits for every running mutator, and stepping
    /// out of the running set here, behind the mutator's back, would let
    /// objects move under whatever the thread holds. Such a thread calls
    /// [`MutatorContext::wait_idle`], which needs the mutator itself.
    pub fn wait_idle(&self) -> Result<(), WaitError> {
        if running_here(self.inner.gc.coord()) {
            return Err(WaitError::RunningMutator);
        }
        self.wait_idle_unchecked();
        Ok(())
    }

    /// [`wait_idle`](Self::wait_idle) without the check: the caller is not
    /// a running mutator of this heap (it is inside a blocking region).
    fn wait_idle_unchecked(&self) {
        self.inner.gc.wait_idle();
    }

    /// Attaches the calling thread as a mutator: at most one per thread and
    /// heap. It detaches when dropped, or when its thread exits if it was
    /// leaked.
    pub fn attach(&self) -> Result<MutatorContext, AlreadyAttached> {
        self.attach_as(None)
    }

    /// [`attach`](Self::attach), naming the mutator `name` in statistics
    /// (`ThreadStats::name`), the GC log and diagnostics instead of by its
    /// thread's name: e.g. `"ui"` apart from `"worker"`.
    pub fn attach_named(&self, name: &str) -> Result<MutatorContext, AlreadyAttached> {
        self.attach_as(Some(name.to_string()))
    }

    fn attach_as(&self, name: Option<String>) -> Result<MutatorContext, AlreadyAttached> {
        Ok(MutatorContext {
            heap: self.clone(),
            attached: Attached::named(
                self.inner.gc.coord().clone(),
                self.inner.gc.satb().clone(),
                name,
            )?,
        })
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> HeapStats {
        let inner = &self.inner;
        let mut s = lock(&inner.stats).clone();
        s.recent = lock(&inner.recent).iter().cloned().collect();
        s.used_bytes = inner.spaces.moving.used();
        s.large_object_bytes = inner.spaces.large.bytes();
        s.next_collection_at = inner.next_gc.load(Ordering::Relaxed);
        s.free_budget = lock(&inner.pacer).budget();
        s.late_threads = inner.gc.coord().late_threads();
        let (threads, gone, recent) = inner.gc.coord().thread_stats();
        // Every thread's, attached or not (`ThreadStats::add` sums them).
        let mut all = gone.clone();
        threads.iter().for_each(|t| all.add(t));
        s.alloc_stalls = all.alloc_stalls;
        s.alloc_stall_total = all.alloc_stall_total;
        s.pacing_delays = all.pacing_delays;
        s.pacing_delay_total = all.pacing_delay_total;
        s.threads = threads;
        s.detached_threads = gone;
        s.recent_detached = recent;
        s.in_progress = inner.gc.progress();
        (s.gc_cpu, s.process_cpu) = inner.gc.cpu().totals();
        if let Some(p) = inner.spaces.moving.poisoner() {
            s.unpoisoned_pages = p.counters.unpoisoned.load(Ordering::Relaxed);
        }
        s
    }

    /// Whether the stale-reference mode is on (asked for with
    /// [`HeapConfig::poison_freed`] and available: `UFFDIO_POISON`).
    pub fn poisons_freed(&self) -> bool {
        self.inner.spaces.moving.poisoner().is_some()
    }

    /// The stale-reference mode's poisoned window `[lo, hi)` (diagnostics
    /// and tests); `None` when the mode is off.
    pub fn poisoned_window(&self) -> Option<(usize, usize)> {
        self.inner.spaces.moving.poisoner().map(|p| p.window())
    }

    /// Kernel calls made on the heap's mappings so far.
    pub fn syscall_counters(&self) -> &SyscallCounters {
        &self.inner.spaces.counters
    }

    /// First address of the moving space (diagnostics).
    pub fn space_start(&self) -> usize {
        self.inner.spaces.moving.start()
    }

    /// Bytes in use: moving space up to its top plus large objects.
    pub fn used_bytes(&self) -> usize {
        self.inner.used_bytes()
    }

    /// Whether `obj` lies in this heap (moving space or large objects).
    pub fn contains(&self, obj: ObjRef) -> bool {
        let sp = &self.inner.spaces;
        sp.moving.contains(obj.addr()) || lock(&sp.large.objects).contains_key(&obj.addr())
    }

    /// Whether a collection panicked, leaving the heap unusable.
    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned.load(Ordering::Relaxed)
    }

    /// Registers `obj` as a persistent root; returns its slot id.
    ///
    /// # Safety
    /// `obj`, if any, is a current reference of this heap (see
    /// [`ObjRef`]'s access contract): the collector will trace and rewrite
    /// it.
    pub unsafe fn persistent_new(&self, obj: Option<ObjRef>) -> usize {
        let mut t = lock(&self.inner.persistent);
        match t.free.pop() {
            Some(i) => {
                t.slots[i] = obj;
                i
            }
            None => {
                t.slots.push(obj);
                t.slots.len() - 1
            }
        }
    }

    /// Reads persistent root `id` (current while the caller, a running
    /// mutator, reaches no safepoint).
    pub fn persistent_get(&self, id: usize) -> Option<ObjRef> {
        lock(&self.inner.persistent).slots[id]
    }

    /// Overwrites persistent root `id`.
    ///
    /// # Safety
    /// As for [`persistent_new`](Self::persistent_new).
    pub unsafe fn persistent_set(&self, id: usize, obj: Option<ObjRef>) {
        lock(&self.inner.persistent).slots[id] = obj;
    }

    /// Frees persistent root `id`.
    pub fn persistent_free(&self, id: usize) {
        let mut t = lock(&self.inner.persistent);
        t.slots[id] = None;
        t.free.push(id);
    }

    fn should_collect(&self) -> bool {
        self.used_bytes() >= self.inner.next_gc.load(Ordering::Relaxed)
    }
}

/// The pacing settings of a heap configured by `config` whose cycles use
/// `strategy`.
fn pacing_config(config: &HeapConfig, strategy: Strategy) -> PacingConfig {
    PacingConfig {
        capacity: config.capacity,
        min_free: config.min_free.min(config.capacity),
        growth_factor: config.growth_factor,
        gc_cpu_target: config.gc_cpu_target,
        concurrent: strategy.is_concurrent(),
        tlab: config.tlab_size,
    }
}

impl HeapInner {
    /// The pacing settings.
    fn pacing(&self) -> PacingConfig {
        pacing_config(&self.config, self.gc.strategy())
    }

    /// Bytes in use: moving space up to its top plus large objects.
    fn used_bytes(&self) -> usize {
        self.spaces.moving.used() + self.spaces.large.bytes()
    }

    /// The capacity left to the moving space: what large objects, and the
    /// reservations of mutators waiting for one, do not use.
    fn moving_limit(&self) -> usize {
        self.config
            .capacity
            .saturating_sub(self.spaces.large.bytes() + self.los_reserved.load(Ordering::Relaxed))
    }

    /// Reserves `footprint` bytes of capacity for a large object if they
    /// fit (a CAS, so two threads cannot both take the last room); the
    /// caller releases the reservation once the object's bytes count in
    /// `los.bytes()`.
    fn try_reserve_large(&self, footprint: usize) -> bool {
        let r = &self.los_reserved;
        let mut cur = r.load(Ordering::Relaxed);
        loop {
            if self.used_bytes() + cur + footprint > self.config.capacity {
                return false;
            }
            match r.compare_exchange_weak(cur, cur + footprint, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Takes a block that fits `size` bytes (a TLAB of at least the
    /// configured size) from the moving space, zeroed.
    fn take_block(&self, size: usize) -> Option<(usize, usize)> {
        let moving = &self.spaces.moving;
        let tlab = self.config.tlab_size.max(size);
        let (start, end) = moving.alloc_block(size, tlab, self.moving_limit())?;
        moving.clean_block(start, end);
        Some((start, end))
    }
}

impl Host for HeapInner {
    fn spaces(&self) -> &Spaces {
        &self.spaces
    }

    fn gc(&self) -> &Gc {
        &self.gc
    }

    fn persistent_roots(&self, f: &mut dyn FnMut(&mut [Option<ObjRef>])) {
        f(&mut lock(&self.persistent).slots)
    }

    /// Answers every mutator waiting for room, in the order they are
    /// attached. A small object gets a fresh TLAB that fits it (zeroed
    /// where the space may be dirty), a large one a reservation of its
    /// footprint.
    fn grant_waiting(&self, world: &mut StoppedWorld<'_>, cycle: u64, may_keep_garbage: bool) {
        world.for_each_mutator(|m| {
            let Some(w) = m.want.as_mut() else { return };
            if matches!(w.answer, Some((_, true))) {
                return; // a reservation from an earlier cycle still holds
            }
            let granted = if w.large {
                self.try_reserve_large(round_up(w.size, PAGE_SIZE))
            } else {
                match self.take_block(w.size) {
                    Some((start, end)) => {
                        m.tlab.set(start, end);
                        true
                    }
                    None => false,
                }
            };
            if granted || !may_keep_garbage {
                w.answer = Some((cycle, granted));
            }
        });
    }

    fn collect_at(&self, live: usize) -> usize {
        lock(&self.pacer).goal(&self.pacing(), live)
    }

    fn after_cycle(&self, c: &CycleStats) {
        let live = c.live_bytes + self.spaces.large.bytes();
        let sample = CycleSample {
            live,
            used_before: c.used_before,
            used_after: self.used_bytes(),
            duration: c.cycle_time,
            to_flip: c.mark
                + c.prepare_outside
                + c.time_to_safepoint
                + c.pauses
                    .iter()
                    .filter(|p| matches!(p.kind, PauseKind::Initial | PauseKind::Remark))
                    .map(|p| p.duration)
                    .sum::<std::time::Duration>(),
            concurrent: c.strategy.is_some_and(|s| s.is_concurrent()),
            cpu: self.gc.cpu().totals(),
            threads: self.gc.coord().attached(),
        };
        let next =
            lock(&self.pacer).after_cycle(&self.pacing(), &sample, std::time::Instant::now());
        self.next_gc.store(next, Ordering::Relaxed);
        let mut c = c.clone();
        c.next_collection_at = next;
        c.pacing_delays = self.paced.0.swap(0, Ordering::Relaxed);
        c.pacing_delay = std::time::Duration::from_nanos(self.paced.1.swap(0, Ordering::Relaxed));
        let c = &c;
        for p in &c.pauses {
            tracing::info!(
                target: "movegc::gc::pause",
                cycle = c.cycle,
                kind = p.kind.name(),
                duration_us = p.duration.as_micros() as u64,
                time_to_safepoint_us = p.time_to_safepoint.as_micros() as u64,
                last_to_safepoint = p.last_to_safepoint.as_deref().unwrap_or("-"),
                "pause"
            );
        }
        tracing::info!(target: "movegc::gc", cycle = c.cycle, young = c.young, "{}", c.log_line());
        if self.config.gc_log {
            eprintln!("[movegc] {}", c.log_line());
        }
        let mut s = lock(&self.stats);
        s.record(c);
        s.live_bytes = live;
        drop(s);
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT_CYCLES {
            recent.pop_front();
        }
        recent.push_back(c.clone());
    }
}

/// Why [`GcHeap::wait_idle`] refused to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The calling thread has a running mutator of this heap: wait through
    /// it ([`MutatorContext::wait_idle`]).
    #[error(
        "this thread has a running mutator of this heap: wait through it (Mutator::wait_idle)"
    )]
    RunningMutator,
}

/// A thread's interface to the heap: allocation, its root slots, the write
/// barrier, safepoints and collections. `!Send`: it belongs to the thread
/// that attached. Dropping it detaches the thread (also during a panic).
///
/// Everything that takes or yields an [`ObjRef`] is `unsafe`, with the
/// contract of [`ObjRef`]; the `movegc` crate wraps it in a safe API.
pub struct MutatorContext {
    heap: GcHeap,
    attached: Attached,
}

impl MutatorContext {
    /// The heap this mutator belongs to.
    pub fn heap(&self) -> &GcHeap {
        &self.heap
    }

    /// Allocates a zeroed object. May stop at a safepoint and may collect;
    /// root slots are updated if objects move (references held elsewhere
    /// are stale afterwards).
    #[inline(always)]
    pub fn alloc(&mut self, layout: &Layout) -> Result<ObjRef, AllocError> {
        if layout.size() < self.heap.inner.config.large_object_threshold
            && !self.heap.inner.gc.coord().requested()
        {
            if let Some(obj) = self.attached.state().tlab.alloc(layout) {
                return Ok(obj);
            }
        }
        self.alloc_slow(layout)
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&mut self, layout: &Layout) -> Result<ObjRef, AllocError> {
        self.attached.poll();
        if self.heap.is_poisoned() {
            return Err(AllocError::Poisoned);
        }
        let size = layout.size();
        if size >= self.heap.inner.config.large_object_threshold {
            return self.alloc_large(layout);
        }
        if let Some(obj) = self.attached.state().tlab.alloc(layout) {
            return Ok(obj);
        }
        if self.heap.should_collect() && !self.heap.cycle_in_flight() {
            self.collect_for(Trigger::Policy, self.heap.strategy());
        }
        if self.heap.cycle_in_flight() {
            self.pace();
        }
        if let Some(obj) = self.alloc_from_new_tlab(layout) {
            return Ok(obj);
        }
        self.wait_for_room(size, false)?;
        // The grant (or the retry in `wait_for_room`) set a TLAB that fits.
        Ok(self
            .attached
            .state()
            .tlab
            .alloc(layout)
            .expect("a granted TLAB fits the object"))
    }

    /// Allocation pacing (see `pacing`): before taking a new TLAB during a
    /// concurrent cycle's marking, waits (outside the running set, so no
    /// stop of the world waits for it) as long as the pacer says, ending
    /// early at the flip, which grants the room the cycle frees.
    fn pace(&mut self) {
        let inner = &self.heap.inner;
        let Some(max) = inner.config.pacing_max_delay else {
            return;
        };
        let Some(p) = inner.gc.progress().filter(|p| p.phase == Phase::Marking) else {
            return;
        };
        let large = inner.spaces.large.bytes();
        let used = inner.spaces.moving.used() + large;
        let Some(d) =
            lock(&inner.pacer).delay(&inner.pacing(), p.used_before + large, used, p.elapsed, max)
        else {
            return;
        };
        let t0 = std::time::Instant::now();
        let heap = self.heap.clone();
        self.attached.blocking(|| {
            // `saturating_sub`: time passes between the check and the sleep.
            loop {
                let left = d.saturating_sub(t0.elapsed());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(std::time::Duration::from_millis(1)));
                let marking = heap.inner.gc.progress();
                if marking.is_none_or(|q| q.cycle != p.cycle || q.phase != Phase::Marking) {
                    break;
                }
            }
        });
        let waited = t0.elapsed();
        self.attached.counters().paced(waited);
        inner.paced.0.fetch_add(1, Ordering::Relaxed);
        inner
            .paced
            .1
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        tracing::debug!(target: "movegc::gc", cycle = p.cycle, thread = self.attached.thread_label(), delay_us = waited.as_micros() as u64, "allocation paced");
    }

    /// Takes a new TLAB that fits `size` bytes from the shared cursor.
    fn new_tlab(&mut self, size: usize) -> bool {
        let Some((start, end)) = self.heap.inner.take_block(size) else {
            return false;
        };
        self.attached.state().tlab.set(start, end);
        true
    }

    /// Takes a new TLAB and allocates from it.
    fn alloc_from_new_tlab(&mut self, layout: &Layout) -> Option<ObjRef> {
        if !self.new_tlab(layout.size()) {
            return None;
        }
        self.attached.state().tlab.alloc(layout)
    }

    fn alloc_large(&mut self, layout: &Layout) -> Result<ObjRef, AllocError> {
        // Every large allocation holds a reservation of its footprint until
        // its bytes count in `los.bytes()`.
        let footprint = round_up(layout.size(), PAGE_SIZE);
        if !self.heap.inner.try_reserve_large(footprint) {
            self.wait_for_room(layout.size(), true)?;
        }
        let spaces = &self.heap.inner.spaces;
        let r = spaces.large.alloc_with(layout, spaces.moving.poisoner());
        self.heap
            .inner
            .los_reserved
            .fetch_sub(footprint, Ordering::Relaxed);
        r.map_err(|e| AllocError::Os(e.raw_os_error().unwrap_or(0)))
    }

    /// Waits until a collection makes room for `size` bytes (see the module
    /// docs). On success a small object's TLAB fits it, or a large object's
    /// footprint is reserved.
    fn wait_for_room(&mut self, size: usize, large: bool) -> Result<(), AllocError> {
        let t0 = std::time::Instant::now();
        let r = self.wait_for_room_inner(size, large);
        self.count_alloc_stall(t0.elapsed(), size);
        r
    }

    /// Records an allocation stall: in this thread's counters, the heap's
    /// histogram, the `tracing` target `movegc::gc` and the GC log.
    fn count_alloc_stall(&self, d: std::time::Duration, size: usize) {
        let inner = &self.heap.inner;
        self.attached.counters().alloc_stall(d);
        lock(&inner.stats).alloc_stall_histogram.record(d);
        let cycle = inner.gc.cycles_started();
        let thread = self.attached.thread_label();
        tracing::info!(target: "movegc::gc", cycle, thread, size, stall_us = d.as_micros() as u64, "allocation stall");
        if inner.config.gc_log {
            eprintln!(
                "[movegc] allocation stall: {thread} waited {:.3}ms for {size} bytes (cycle #{cycle})",
                d.as_secs_f64() * 1e3
            );
        }
    }

    fn wait_for_room_inner(&mut self, size: usize, large: bool) -> Result<(), AllocError> {
        let since = self.heap.inner.gc.cycles_started();
        self.attached.state().want = Some(Want {
            size,
            large,
            since,
            answer: None,
        });
        let r = loop {
            match self.attached.state().want.and_then(|w| w.answer) {
                Some((_, true)) => break Ok(()),
                Some((cycle, false)) if cycle > since => break Err(self.exhausted(size)),
                _ => {}
            }
            if self.heap.is_poisoned() {
                break Err(AllocError::Poisoned);
            }
            // A cycle in flight may answer at its flip (its final pause):
            // wait for that, or for its end, not for the whole compaction.
            if self.heap.cycle_in_flight() {
                let (heap, flips) = (self.heap.clone(), self.heap.inner.gc.flips());
                self.attached
                    .blocking(|| heap.inner.gc.wait_flip_or_idle(flips));
                continue;
            }
            // No answer that counts: a cycle that had already flipped when
            // we asked may have left room, so try once more directly.
            let direct = if large {
                self.heap.inner.try_reserve_large(round_up(size, PAGE_SIZE))
            } else {
                self.new_tlab(size)
            };
            if direct {
                break Ok(());
            }
            // Start a cycle (or be parked through another thread's).
            self.collect_for(Trigger::Exhausted, self.heap.strategy());
        };
        self.attached.state().want = None;
        r
    }

    fn exhausted(&self, requested: usize) -> AllocError {
        AllocError::HeapExhausted {
            requested,
            capacity: self.heap.inner.config.capacity,
            live: lock(&self.heap.inner.stats).live_bytes,
        }
    }

    /// Root slot `i` of this thread (`None` if null or past the end).
    #[inline(always)]
    pub fn root(&self, i: usize) -> Option<ObjRef> {
        self.attached.root(i)
    }

    /// This thread's root slots. The collector reads them and rewrites them
    /// when objects move; `None` slots are ignored.
    ///
    /// # Safety
    /// Every `Some` the caller stores is a current reference of this heap
    /// (see [`ObjRef`]'s access contract).
    #[inline(always)]
    pub unsafe fn roots(&mut self) -> &mut Vec<Option<ObjRef>> {
        &mut self.attached.state().roots
    }

    /// Stores `value` (or null) into reference field / element `index` of
    /// `obj`: the only way to write a reference into an object, since it
    /// carries the write barriers: concurrent marking's (`satb`) and the
    /// card mark of young collections (`generation`).
    ///
    /// # Safety
    /// `obj` and `value` are current references of this heap (see
    /// [`ObjRef`]'s access contract).
    #[inline(always)]
    pub unsafe fn store_ref(
        &mut self,
        obj: ObjRef,
        index: usize,
        value: Option<ObjRef>,
    ) -> Result<(), FieldError> {
        // SAFETY: the caller's contract.
        let slot = unsafe { obj.ref_slot(index) }?;
        self.store_at(slot, value);
        Ok(())
    }

    /// [`store_ref`](Self::store_ref) without the bounds check, for callers
    /// that know the object's layout (the embedding API's typed fields).
    ///
    /// # Safety
    /// As for [`store_ref`](Self::store_ref), and `index` is below `obj`'s
    /// [`ref_count`](crate::Header::ref_count).
    #[inline(always)]
    pub unsafe fn store_slot(&mut self, obj: ObjRef, index: usize, value: Option<ObjRef>) {
        self.store_at(obj.addr() + WORD + index * WORD, value)
    }

    /// The write barriers and the store, at a checked slot address.
    #[inline(always)]
    fn store_at(&mut self, slot: usize, value: Option<ObjRef>) {
        let v = value.map_or(0, |r| r.addr() as u64);
        // The card barrier of young collections (`generation`): one byte
        // store, whatever is stored, while the barrier is active. Before
        // the store: with the kernel's dirty tracking the barrier turns off
        // once the old region is write-protected again, and a store made
        // after reading it off must land on a protected page (`dirty`).
        self.heap.inner.gc.cards().mark(slot);
        if self.attached.satb().is_marking() {
            self.log_store(slot, v);
        } else {
            store_word(slot, v);
        }
    }

    /// Stores `values` into reference fields / elements `start..start +
    /// values.len()` of `obj`: [`store_ref`](Self::store_ref) for a run,
    /// with one bounds check, one decision whether concurrent marking's
    /// barrier logs, and one card mark per page the run touches.
    ///
    /// # Safety
    /// As for [`store_ref`](Self::store_ref), for `obj` and every value.
    pub unsafe fn store_refs(
        &mut self,
        obj: ObjRef,
        start: usize,
        values: &[Option<ObjRef>],
    ) -> Result<(), FieldError> {
        let last = match start.checked_add(values.len()) {
            Some(0) => return Ok(()),
            Some(end) => end - 1,
            // SAFETY: the caller's contract; no object has `usize::MAX`
            // slots, so this is the typed out-of-range error.
            None => return unsafe { obj.ref_slot(usize::MAX) }.map(drop),
        };
        if values.is_empty() {
            // An empty run past the end is no store; still a bad index.
            // SAFETY: the caller's contract.
            let len = unsafe { obj.header() }.ref_count();
            if start > len {
                return Err(FieldError::RefIndex { index: start, len });
            }
            return Ok(());
        }
        // SAFETY: the caller's contract; `ref_slot` checks the last index
        // (so every index of the run) against the object's slots.
        let first = unsafe { obj.ref_slot(last) }? - (last - start) * WORD;
        // The card marks first, as in `store_at`.
        let cards = self.heap.inner.gc.cards();
        let end = first + values.len() * WORD;
        let mut page = first & !(crate::mapping::PAGE_SIZE - 1);
        while page < end {
            cards.mark(page.max(first));
            page += crate::mapping::PAGE_SIZE;
        }
        let marking = self.attached.satb().is_marking();
        for (i, v) in values.iter().enumerate() {
            let slot = first + i * WORD;
            let v = v.map_or(0, |r| r.addr() as u64);
            if marking {
                self.log_store(slot, v);
            } else {
                store_word(slot, v);
            }
        }
        Ok(())
    }

    /// The barrier's slow path: store, logging what the store overwrites.
    #[cold]
    #[inline(never)]
    fn log_store(&mut self, slot: usize, v: u64) {
        let log = self.attached.satb();
        // Before the store: the final pause that reads the bit cannot come
        // between (this thread is not at a safepoint here).
        log.note_store(slot, v);
        let old = swap_word(slot, v);
        if old != 0 {
            let log = self.heap.inner.gc.satb().clone();
            self.attached.state().satb.push(old as usize, &log);
        }
    }

    /// Stops here if a collection is waiting for this thread.
    #[inline(always)]
    pub fn safepoint(&mut self) {
        self.attached.poll();
    }

    /// Runs `f` (which cannot touch the heap) without holding up
    /// collections: use it around blocking calls and foreign code.
    pub fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.attached.blocking(f)
    }

    /// Waits until no concurrent cycle is running, outside the running set
    /// (so a cycle's final pause does not wait for this thread).
    pub fn wait_idle(&mut self) {
        let heap = self.heap.clone();
        self.attached.blocking(|| heap.wait_idle_unchecked());
    }

    /// Runs a full collection now with the heap's strategy and waits for
    /// it to finish (for concurrent strategies: until every page is
    /// compacted; other mutators run meanwhile). Returns the cycle's
    /// statistics, or `None` if another thread's collection ran instead.
    pub fn collect(&mut self) -> Option<CycleStats> {
        self.collect_with(self.heap.strategy())
    }

    /// Runs the collection the heap-size policy would start now and waits
    /// for it: with young collections on ([`HeapConfig::generational`]) a
    /// young cycle unless a full one is due ([`CycleStats::full_reason`]
    /// says why); otherwise the same as [`collect`](Self::collect).
    pub fn collect_young(&mut self) -> Option<CycleStats> {
        self.collect_traced(Trigger::Policy, self.heap.strategy())
    }

    /// Like [`collect`](Self::collect) with a given strategy (subject to the
    /// same fallbacks as the heap's).
    pub fn collect_with(&mut self, strategy: Strategy) -> Option<CycleStats> {
        self.collect_traced(Trigger::Explicit, strategy)
    }

    /// Runs a collection for `trigger` and waits for its end.
    fn collect_traced(&mut self, trigger: Trigger, strategy: Strategy) -> Option<CycleStats> {
        let strategy = self.heap.effective_strategy(strategy);
        let (st, finished) = self.collect_for(trigger, strategy)?;
        if finished {
            return Some(st);
        }
        self.wait_idle();
        let done = lock(&self.heap.inner.recent)
            .iter()
            .rev()
            .find(|c| c.cycle == st.cycle)
            .cloned();
        if self.heap.inner.config.verify {
            self.verify();
        }
        done
    }

    /// Stops the world and verifies the heap if the last concurrent cycle
    /// has not been verified yet (debug and test builds do this at the next
    /// pause anyway).
    pub fn verify(&mut self) {
        let heap = self.heap.clone();
        loop {
            self.wait_idle();
            let Some(mut world) = self.attached.stop_the_world() else {
                return;
            };
            if heap.inner.gc.verify_if_needed(&*heap.inner, &mut world) {
                return;
            }
        }
    }

    fn collect_for(&mut self, trigger: Trigger, strategy: Strategy) -> Option<(CycleStats, bool)> {
        let heap = self.heap.clone();
        let host: Arc<dyn Host> = heap.inner.clone();
        loop {
            self.wait_idle();
            let cpu_before = cputime::thread_now();
            let mut world = self.attached.stop_the_world()?;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                heap.inner.gc.collect(&host, &mut world, trigger, strategy)
            }));
            drop(world);
            // This thread ran the pause: its CPU time over it is the
            // collector's (the wait for the safepoint used none).
            heap.inner
                .gc
                .cpu()
                .add(cputime::thread_now().saturating_sub(cpu_before));
            return match result {
                // A cycle started between our wait and our pause.
                Ok(None) => continue,
                Ok(Some((st, finished))) => {
                    if finished {
                        heap.inner.after_cycle(&st);
                    }
                    Some((st, finished))
                }
                Err(panic) => {
                    heap.inner.poisoned.store(true, Ordering::Relaxed);
                    std::panic::resume_unwind(panic)
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_off_settings_come_from_the_environment_value() {
        let f = |v: Option<&str>, default| flag_from_env("X", v.map(String::from), default);
        assert!(f(None, true), "default on");
        assert!(!f(None, false), "default off");
        assert!(f(Some(" 1"), false));
        assert!(!f(Some("0"), true));
        assert!(f(Some("off"), true), "unknown: the default");
        assert!(!f(Some("yes"), false), "unknown: the default");
    }

    #[test]
    fn pause_black_slots_reads_an_integer_or_keeps_the_default() {
        let f = |v: &str| pause_black_slots_from_env(Some(v.into()));
        assert_eq!(pause_black_slots_from_env(None), DEFAULT_PAUSE_BLACK_SLOTS);
        assert_eq!(f("0"), 0);
        assert_eq!(f(" 4096 "), 4096);
        assert_eq!(f("-1"), DEFAULT_PAUSE_BLACK_SLOTS);
        assert_eq!(f("many"), DEFAULT_PAUSE_BLACK_SLOTS);
    }

    #[test]
    fn the_shortest_move_run_comes_from_the_environment_value() {
        let f = |v: &str| min_move_run_from_env(Some(v.into()));
        assert_eq!(min_move_run_from_env(None), DEFAULT_MIN_MOVE_RUN);
        assert_eq!(f(" 16"), 16);
        assert_eq!(f("1"), 1);
        assert_eq!(f("0"), DEFAULT_MIN_MOVE_RUN, "not positive: the default");
        assert_eq!(f("eight"), DEFAULT_MIN_MOVE_RUN);
    }

    #[test]
    fn the_remembered_set_comes_from_the_environment_value() {
        use crate::RememberedSet::{Cards, WriteProtect};
        assert_eq!(remembered_set_from_env(None), Cards);
        assert_eq!(remembered_set_from_env(Some(" wp ".into())), WriteProtect);
        assert_eq!(
            remembered_set_from_env(Some("write-protect".into())),
            WriteProtect
        );
        assert_eq!(remembered_set_from_env(Some("cards".into())), Cards);
        assert_eq!(
            remembered_set_from_env(Some("kernel".into())),
            Cards,
            "unknown"
        );
    }

    #[test]
    fn the_cpu_target_comes_from_the_environment_value() {
        assert_eq!(cpu_target_from_env(None), Some(DEFAULT_GC_CPU_TARGET));
        assert_eq!(cpu_target_from_env(Some("off".into())), None);
        assert_eq!(cpu_target_from_env(Some(" 0.05 ".into())), Some(0.05));
        assert_eq!(
            cpu_target_from_env(Some("2".into())),
            Some(DEFAULT_GC_CPU_TARGET),
            "out of range"
        );
        assert_eq!(
            cpu_target_from_env(Some("x".into())),
            Some(DEFAULT_GC_CPU_TARGET)
        );
        let bad = GcHeap::new(HeapConfig {
            capacity: 4 << 20,
            gc_cpu_target: Some(1.5),
            ..Default::default()
        });
        assert!(matches!(
            bad,
            Err(HeapError::Config(ConfigError::BadCpuTarget(t))) if t == 1.5
        ));
    }

    #[test]
    fn concurrent_threads_default_to_all_and_are_checked() {
        let heap = |gc_threads, concurrent_gc_threads| {
            GcHeap::new(HeapConfig {
                capacity: 4 << 20,
                gc_threads,
                concurrent_gc_threads,
                ..Default::default()
            })
        };
        let used = |h: GcHeap| h.inner.gc.settings.concurrent_threads;
        assert_eq!(used(heap(1, None).unwrap()), 1);
        assert_eq!(used(heap(3, None).unwrap()), 3);
        assert_eq!(used(heap(4, Some(1)).unwrap()), 1);
        assert_eq!(used(heap(4, Some(4)).unwrap()), 4);
        for bad in [0, 3] {
            assert!(matches!(
                heap(2, Some(bad)),
                Err(HeapError::Config(ConfigError::BadConcurrentThreads { concurrent, gc_threads: 2 }))
                    if concurrent == bad
            ));
        }
    }

    #[test]
    fn a_heap_frees_its_satb_log() {
        let heap = GcHeap::new(HeapConfig {
            capacity: 4 << 20,
            strategy: Strategy::StopTheWorld,
            ..Default::default()
        })
        .unwrap();
        let log = Arc::downgrade(heap.inner.gc.satb());
        let h2 = heap.clone();
        std::thread::spawn(move || {
            let mut m = h2.attach().unwrap();
            m.collect();
        })
        .join()
        .unwrap();
        drop(heap.attach().unwrap());
        assert!(log.upgrade().is_some());
        drop(heap);
        assert!(log.upgrade().is_none(), "the heap's SATB log outlived it");
    }
}
