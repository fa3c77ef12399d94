//! The compaction workload: a fragmented heap of small objects and **one**
//! measured full collection, optionally with mutator threads reading and
//! writing random live objects while it runs.
//!
//! **Heap.** [`run`] creates a heap (collector layer, [`GcHeap`]) with a
//! capacity of `2 × heap_mib + 64` MiB, `min_free` equal to the capacity (so
//! no automatic collection can start while it is filled; checked) and the
//! verifier off. It then allocates `heap_mib` MiB of 64-byte records
//! ([`object_layout`]: two references and 40 data bytes) one after the
//! other and keeps each with probability `live_fraction`, so the dead
//! objects are spread uniformly over the whole heap: every page is about
//! `live_fraction` live and there is no dead tail. The kept objects get
//! consecutive ids `0, 1, ..` and form [`CHAINS`] singly linked lists in
//! allocation order (object `id` is in chain `id % CHAINS`; the chain heads
//! are the setup thread's root slots), and each kept object also points to
//! one uniformly random kept object (a random graph). Data words: `id`,
//! `mix(id)`, the random target's id, and one write counter per mutator.
//!
//! **Mutators.** Each of the `mutator_threads` (at most [`MAX_MUTATORS`])
//! attaches its own [`MutatorContext`] and holds [`WALKERS`] root slots,
//! each starting at a random live object. It loops: safepoint poll; pick a
//! random slot; **access** = read the object's id and check word (checked
//! against the expected id), increment its own counter word, load the
//! random reference and move the slot there (a random walk over all live
//! objects, i.e. over uniformly random pages); then busy-wait `think_us`.
//! The access alone is timed into an HDR histogram, for accesses made while
//! the measured collection runs. On a concurrent cycle an access to a page
//! that is not compacted yet faults and is served by the collector (SIGBUS
//! or handler thread), so this is the mutator-side stall. The mutators
//! start before the collection and stop after it.
//!
//! **Measurement.** Just before the cycle, if `warm` is set, as many pages
//! as the live data needs (plus 8 MiB) are touched and unmapped, so that
//! the kernel's next page allocations are host-backed on this VM (the
//! `-warm` preparation of `compaction-limit.md`; all strategies get it).
//! Around the collection `getrusage` gives minor faults and CPU time;
//! `/proc/self/statm` gives RSS before and after. The collection is
//! `collect_with(strategy)`, which for concurrent strategies returns when
//! the cycle has ended, with its [`CycleStats`].
//!
//! **Verification.** After the cycle every chain is walked: ids must be
//! exactly `c, c + CHAINS, ..` (nothing lost, duplicated or reordered),
//! every check word must match, the random reference of every 4th object
//! must lead to the object whose id was recorded (sampled: each is a random
//! access), the number of objects must equal the kept
//! count and the cycle's `live_objects`, the checksum of (id, target id)
//! pairs must match the setup's, and each counter column must sum to the
//! number of increments its mutator made (no write lost across the
//! compaction). Then the collector's own heap verifier runs. Any mismatch
//! panics.
//!
//! **Engine access (`unsafe`).** This module drives the engine directly, so
//! every object access is `unsafe` (see `ObjRef`'s access contract). The
//! rule it follows: an `ObjRef` held in a local is only used until the
//! thread's next `alloc`/`collect`/`safepoint`/wait (objects may move
//! then); anything that must survive one lives in a root slot (the chain
//! heads, the walkers) or a persistent slot. The one exception is `build`:
//! it holds `ObjRef`s across allocations because no collection can run
//! while it fills the heap (`min_free` equals the capacity, it is the only
//! mutator, and [`run_detailed`] asserts afterwards that no cycle ran).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastrand::Rng;
use hdrhistogram::Histogram;
use movegc_gc::concurrent::FaultMode;
use movegc_gc::{CycleStats, GcHeap, HeapConfig, Layout, MutatorContext, ObjRef, Strategy};
use serde::{Deserialize, Serialize};

use crate::record::{ProcessUsage, RunRecord, ThreadRecord, WorkloadOutput};
use crate::spec::{flag, Spec};

/// Embedder tag of the workload's objects.
pub const OBJECT_TAG: u16 = 0xC0;
/// Size of every object in bytes (header, 2 references, 40 data bytes).
pub const OBJECT_BYTES: usize = 64;
/// Number of linked lists (and setup root slots) the live objects form.
pub const CHAINS: usize = 16;
/// Root slots (random walkers) per mutator thread.
pub const WALKERS: usize = 16;
/// Most mutator threads: each owns one counter word per object.
pub const MAX_MUTATORS: usize = 2;

/// Reference field: next object of the same chain.
const NEXT: usize = 0;
/// Reference field: a random live object.
const EDGE: usize = 1;
/// The verifier follows the random reference of every this-many-th object.
const EDGE_CHECK_EVERY: u64 = 4;
/// Data offsets.
const ID: usize = 0;
const CHECK: usize = 8;
const EDGE_ID: usize = 16;
const COUNTER: usize = 24;

/// The layout of every object: two references and 40 data bytes (64 bytes).
pub fn object_layout() -> Layout {
    let l = Layout::record(OBJECT_TAG, 2, 40).expect("a valid record layout");
    debug_assert_eq!(l.size(), OBJECT_BYTES);
    l
}

/// What to run. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactParams {
    /// MiB of objects allocated before the collection (the used heap).
    pub heap_mib: usize,
    /// Fraction of the allocated objects that stay live, in `(0, 1]`.
    pub live_fraction: f64,
    /// Share of the allocated objects, from the bottom of the heap, that
    /// all stay live, in `[0, 1)`: a dense prefix (what the data every
    /// earlier compaction packed looks like), whose pages the collector
    /// fixes in place and puts back instead of compacting them. The rest
    /// is `live_fraction` live. 0 (the default): no prefix.
    pub prefix: f64,
    /// Mutator threads running during the cycle (0..=[`MAX_MUTATORS`]).
    pub mutator_threads: usize,
    /// Strategy of the measured collection (and of the heap).
    pub strategy: Strategy,
    /// How faults are served in concurrent cycles.
    pub fault_mode: FaultMode,
    /// Collector threads; `None` for the library default.
    pub gc_threads: Option<usize>,
    /// Busy-wait between two mutator accesses, microseconds.
    pub think_us: u64,
    /// Touch and free the pages the cycle will need just before it.
    pub warm: bool,
    /// Seed of the heap shape and the mutators' walks.
    pub seed: u64,
    /// Where the random references point: 0 = any live object (uniform);
    /// `n` = a live object at most `n` ids away (local references, so
    /// forwarding them hits the cache and mutator walks stay local).
    pub edge_span: usize,
}

impl Default for CompactParams {
    fn default() -> Self {
        CompactParams {
            heap_mib: 256,
            live_fraction: 0.5,
            prefix: 0.0,
            mutator_threads: 0,
            strategy: Strategy::ConcurrentMove,
            fault_mode: FaultMode::Sigbus,
            gc_threads: None,
            think_us: 20,
            warm: true,
            seed: 0x5eed,
            edge_span: 0,
        }
    }
}

/// Parses a fault mode name (`sigbus`, `handler-thread` or `handler`).
pub fn parse_fault_mode(s: &str) -> Option<FaultMode> {
    match s {
        "sigbus" => Some(FaultMode::Sigbus),
        "handler-thread" | "handler" => Some(FaultMode::HandlerThread),
        _ => None,
    }
}

impl CompactParams {
    /// Heap capacity used: `2 × heap_mib + 64` MiB.
    pub fn capacity(&self) -> usize {
        (2 * self.heap_mib + 64) << 20
    }

    /// The parameters as a [`Spec`] (every key, in a fixed order).
    pub fn spec(&self) -> Spec {
        Spec::new()
            .with("heap", self.heap_mib)
            .with("live", self.live_fraction)
            .with("prefix", self.prefix)
            .with("mutators", self.mutator_threads)
            .with("strategy", self.strategy.name())
            .with("fault", self.fault_mode.name())
            .with(
                "gc_threads",
                self.gc_threads
                    .map_or("default".to_string(), |n| n.to_string()),
            )
            .with("think_us", self.think_us)
            .with("warm", u8::from(self.warm))
            .with("edge_span", self.edge_span)
            .with("seed", self.seed)
    }

    /// The keys of a [`Spec`] read over `d`'s values (`from_spec`, made
    /// by `spec_io!`, checks the key names and validates).
    fn read_spec(s: &Spec, d: &CompactParams) -> Result<CompactParams, String> {
        Ok(CompactParams {
            heap_mib: s.value_or("heap", d.heap_mib)?,
            live_fraction: s.value_or("live", d.live_fraction)?,
            prefix: s.value_or("prefix", d.prefix)?,
            mutator_threads: s.value_or("mutators", d.mutator_threads)?,
            strategy: s.read_or("strategy", d.strategy, Strategy::parse)?,
            fault_mode: s.read_or("fault", d.fault_mode, parse_fault_mode)?,
            gc_threads: s.read_or("gc_threads", d.gc_threads, |v| match v {
                "default" => Some(None),
                _ => v.parse().ok().map(Some),
            })?,
            think_us: s.value_or("think_us", d.think_us)?,
            warm: s.read_or("warm", d.warm, flag)?,
            edge_span: s.value_or("edge_span", d.edge_span)?,
            seed: s.value_or("seed", d.seed)?,
        })
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if self.heap_mib < 2 {
            return Err(format!("heap_mib {} is below 2", self.heap_mib));
        }
        if !(self.live_fraction > 0.0 && self.live_fraction <= 1.0) {
            return Err(format!(
                "live_fraction {} must be in (0, 1]",
                self.live_fraction
            ));
        }
        if !(0.0..1.0).contains(&self.prefix) {
            return Err(format!("prefix {} must be in [0, 1)", self.prefix));
        }
        if self.mutator_threads > MAX_MUTATORS {
            return Err(format!(
                "{} mutator threads (at most {MAX_MUTATORS})",
                self.mutator_threads
            ));
        }
        if self.gc_threads == Some(0) {
            return Err("gc_threads must be at least 1".into());
        }
        Ok(())
    }
}

/// What one run measured. Times in milliseconds unless the name says
/// otherwise; `None`-like zeros where a strategy has no such thing (no
/// faults in a stop-the-world cycle, ...).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CompactResult {
    /// The parameters, as [`CompactParams::spec`].
    pub spec: Spec,
    /// The strategy asked for.
    pub strategy_requested: String,
    /// The strategy the cycle really used (after fallbacks).
    pub strategy: String,
    /// The fault mode the heap used (`-` without userfaultfd).
    pub fault_mode: String,
    /// Collector threads.
    pub gc_threads: usize,
    /// Objects allocated / kept live.
    pub objects_allocated: u64,
    /// Live objects (kept at setup).
    pub objects_live: u64,
    /// Moving-space bytes used before the cycle.
    pub used_before_mib: f64,
    /// Live bytes found by marking.
    pub live_mib: f64,
    /// Time to build the heap.
    pub setup_ms: f64,
    /// Time to touch and free the warm-up pages (0 if not warmed).
    pub warm_ms: f64,
    /// Compaction: flip end to last page mapped (concurrent), or the
    /// compact phase (stop-the-world).
    pub compaction_ms: f64,
    /// Per GC thread: flip end to its last page (concurrent only).
    pub compaction_per_thread_ms: Vec<f64>,
    /// Whole pause (time to safepoint, mark, prepare, flip, update roots;
    /// for stop-the-world also compaction and release). With concurrent
    /// marking: the final pause (remark, prepare, flip, update roots).
    pub pause_ms: f64,
    /// With concurrent marking: the initial (root snapshot) pause; 0
    /// otherwise.
    pub initial_pause_ms: f64,
    /// With concurrent marking: marking left for the final pause.
    pub remark_ms: f64,
    /// Time to safepoint.
    pub ttsp_ms: f64,
    /// Marking (inside the pause, or concurrent).
    pub mark_ms: f64,
    /// Forwarding preparation (inside the pause).
    pub prepare_ms: f64,
    /// The flip itself (register + mremap for concurrent cycles).
    pub flip_ms: f64,
    /// Updating roots (inside the pause).
    pub update_roots_ms: f64,
    /// The flip phase: flip + update roots.
    pub flip_phase_ms: f64,
    /// Stop-the-world release phase (0 for concurrent cycles).
    pub release_ms: f64,
    /// Pause start to cycle end.
    pub cycle_ms: f64,
    /// After compaction: unregister, release the from-space, hand back the
    /// metadata (`CycleStats::after_compaction`: from the last page mapped
    /// to the cycle's end for concurrent cycles, the release phase for
    /// stop-the-world). It used to be `cycle - pause - compaction`, which
    /// also counted marking and the pauses before the final one.
    pub tail_ms: f64,
    /// Wall time of `collect_with`.
    pub collect_wall_ms: f64,
    /// Process CPU time (user + system) during `collect_with`.
    pub collect_cpu_ms: f64,
    /// To-space pages compacted.
    pub pages_compacted: usize,
    /// Pages of the dense prefix (fixed in place, not compacted).
    pub dense_pages: usize,
    /// Bytes that changed address, MiB.
    pub moved_mib: f64,
    /// Pages installed with UFFDIO_MOVE.
    pub pages_moved: usize,
    /// Pages installed with UFFDIO_COPY.
    pub pages_copied: usize,
    /// Allocation-region pages zero-filled.
    pub pages_zero_filled: usize,
    /// From-space pages still resident at the end and released.
    pub pages_released: usize,
    /// MOVE ioctls.
    pub move_ioctls: usize,
    /// COPY ioctls.
    pub copy_ioctls: usize,
    /// madvise calls during the cycle.
    pub madvise_calls: usize,
    /// Pages copied after MOVE said EBUSY.
    pub ebusy_fallbacks: usize,
    /// MOVE mode: pages copied because their run was shorter than `min_move_run`.
    #[serde(default)]
    pub short_run_copies: usize,
    /// EAGAIN retries.
    pub eagain_retries: usize,
    /// Pages found installed already.
    pub eexist: usize,
    /// GC pages that went through the buffer and COPY for lack of recycled pages.
    pub recycle_shortfall: usize,
    /// Mutator faults (resolved + waited).
    pub faults: usize,
    /// Faults that waited for another thread's page.
    pub fault_waits: usize,
    /// Collector-side fault stall quantiles, microseconds.
    pub stall_p50_us: u64,
    /// p99.
    pub stall_p99_us: u64,
    /// Max.
    pub stall_max_us: u64,
    /// Mutator accesses timed during the collection.
    pub mutator_accesses: u64,
    /// Mutator access latency during the collection, microseconds (p50).
    pub mutator_p50_us: f64,
    /// p99.
    pub mutator_p99_us: f64,
    /// p99.9.
    pub mutator_p999_us: f64,
    /// Max.
    pub mutator_max_us: f64,
    /// Longest gap between two consecutive accesses of a mutator over its
    /// whole run (from shortly before the cycle to its end): think time
    /// plus safepoint parking, i.e. the pause as a mutator sees it.
    pub mutator_max_gap_ms: f64,
    /// Accesses of all mutators over their whole run.
    pub mutator_total_accesses: u64,
    /// RSS after the heap was built (before the cycle), MiB.
    pub rss_before_mib: f64,
    /// RSS after the cycle, MiB.
    pub rss_after_mib: f64,
    /// CPU time of *other* processes during `collect_with` (system busy
    /// time minus ours; 10 ms resolution): a noise indicator.
    pub other_cpu_ms: f64,
    /// Steal time (the hypervisor ran something else) during `collect_with`.
    pub steal_ms: f64,
    /// Minor faults during `collect_with` (whole process).
    pub minflt: u64,
    /// Major faults during `collect_with`.
    pub majflt: u64,
    /// Time to verify the data (chain walk) after the cycle.
    pub verify_ms: f64,
    /// Time of the collector's heap verifier after the cycle.
    pub heap_verify_ms: f64,
    /// Always true in a returned result (verification failures panic).
    pub verified: bool,
}

/// The SplitMix64 finaliser: the check word of an object with id `x`.
#[inline]
pub fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn edge_hash(id: u64, target: u64) -> u64 {
    mix(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ target)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Process resource usage (whole process).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Minor faults.
    pub minflt: u64,
    /// Major faults.
    pub majflt: u64,
    /// User + system CPU time.
    pub cpu: Duration,
    /// Peak resident set size of the process so far, bytes.
    pub max_rss_bytes: u64,
}

/// `getrusage(RUSAGE_SELF)`.
pub fn usage() -> Usage {
    // SAFETY: getrusage writes a `struct rusage` into the zeroed value we
    // pass and has no other effect.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        let r = libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        assert_eq!(r, 0, "getrusage failed");
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        minflt: ru.ru_minflt as u64,
        majflt: ru.ru_majflt as u64,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_bytes: ru.ru_maxrss as u64 * 1024,
    }
}

/// System-wide CPU time from `/proc/stat` (all CPUs): (busy, steal), where
/// busy excludes idle, iowait and steal. Zero if unreadable.
pub fn system_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (Duration::ZERO, Duration::ZERO);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let tick = |t: u64| Duration::from_micros(t * 1_000_000 / hz);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    (tick(busy), tick(get(7)))
}

/// Resident set size of this process in bytes (`/proc/self/statm`), or 0
/// if it cannot be read.
pub fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Maps `bytes` of anonymous memory, writes every 4 KiB page, and unmaps
/// it: the next page allocations of the kernel reuse just-freed pages
/// instead of pages the VM reported free to the host. Returns the time it
/// took.
pub fn warm_pages(bytes: usize) -> Duration {
    let t = Instant::now();
    let len = bytes.div_ceil(4096).max(1) * 4096;
    // SAFETY: a fresh private anonymous mapping that nothing else refers
    // to; we write inside it and unmap it before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return t.elapsed();
        }
        // Small pages, as the heap's page allocations are.
        libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
        let base = p as *mut u8;
        let mut off = 0;
        while off < len {
            base.add(off).write_volatile(1);
            off += 4096;
        }
        libc::munmap(p, len);
    }
    t.elapsed()
}

/// The heap as built: counts and what the verifier checks against.
struct Built {
    allocated: u64,
    kept: u64,
    checksum: u64,
    /// Per mutator: (persistent slot, expected id) of its walkers.
    walkers: Vec<Vec<(usize, u64)>>,
}

/// Fills the heap (see the module docs). No collection may run meanwhile:
/// the `ObjRef`s held in `kept` are not roots.
fn build(ctx: &mut MutatorContext, p: &CompactParams, rng: &mut Rng) -> Built {
    let layout = object_layout();
    let n = (p.heap_mib << 20) / OBJECT_BYTES;
    let dense = (n as f64 * p.prefix) as u64;
    let share = p.prefix + (1.0 - p.prefix) * p.live_fraction;
    let mut kept: Vec<ObjRef> = Vec::with_capacity((n as f64 * share * 1.01) as usize + 4096);
    let mut tails: [Option<ObjRef>; CHAINS] = [None; CHAINS];
    {
        // SAFETY: only null slots are stored.
        let roots = unsafe { ctx.roots() };
        roots.clear();
        roots.resize(CHAINS, None);
    }
    for i in 0..n as u64 {
        let o = ctx.alloc(&layout).expect("setup allocation");
        // SAFETY: `o` was just allocated; the `tails` are current because
        // no collection runs during the build (module docs, "Engine access").
        unsafe {
            if i < dense || rng.f64() < p.live_fraction {
                let id = kept.len() as u64;
                o.write_u64(ID, id).expect("id");
                o.write_u64(CHECK, mix(id)).expect("check");
                let c = id as usize % CHAINS;
                match tails[c] {
                    Some(t) => ctx.store_ref(t, NEXT, Some(o)).expect("link"),
                    None => ctx.roots()[c] = Some(o),
                }
                tails[c] = Some(o);
                kept.push(o);
            } else {
                // Dead: same size, non-zero contents.
                o.write_u64(ID, u64::MAX - i).expect("id");
                o.write_u64(CHECK, i).expect("check");
            }
        }
    }
    assert!(!kept.is_empty(), "no object was kept; heap too small");
    // Random edges to any kept object (a second pass, so they point up as
    // well as down the heap and a walk stays uniform).
    let mut checksum = 0u64;
    for (j, o) in kept.iter().enumerate() {
        let t = if p.edge_span == 0 {
            rng.usize(..kept.len())
        } else {
            let lo = j.saturating_sub(p.edge_span);
            let hi = (j + p.edge_span + 1).min(kept.len());
            lo + rng.usize(..hi - lo)
        };
        // SAFETY: `kept` is current: no collection runs during the build
        // (module docs, "Engine access"), and nothing here allocates.
        unsafe {
            ctx.store_ref(*o, EDGE, Some(kept[t])).expect("edge");
            o.write_u64(EDGE_ID, t as u64).expect("edge id");
        }
        checksum = checksum.wrapping_add(edge_hash(j as u64, t as u64));
    }
    let heap = ctx.heap().clone();
    let walkers = (0..p.mutator_threads)
        .map(|_| {
            (0..WALKERS)
                .map(|_| {
                    let t = rng.usize(..kept.len());
                    // SAFETY: as above, `kept` is current during the build.
                    (unsafe { heap.persistent_new(Some(kept[t])) }, t as u64)
                })
                .collect()
        })
        .collect();
    Built {
        allocated: n as u64,
        kept: kept.len() as u64,
        checksum,
        walkers,
    }
}

/// Shared control of the mutator threads.
#[derive(Default)]
struct Control {
    ready: AtomicUsize,
    window: AtomicBool,
    stop: AtomicBool,
}

/// What a mutator thread reports.
struct MutatorReport {
    accesses: u64,
    window: Histogram<u64>,
    max_gap: Duration,
    errors: u64,
    first_error: Option<String>,
}

fn mutator_thread(
    heap: GcHeap,
    index: usize,
    walkers: Vec<(usize, u64)>,
    think: Duration,
    seed: u64,
    ctl: Arc<Control>,
) -> MutatorReport {
    let mut ctx = heap
        .attach_named(&format!("mutator-{index}"))
        .expect("a fresh thread");
    let mut expected = Vec::with_capacity(walkers.len());
    for &(slot, id) in &walkers {
        let o = heap.persistent_get(slot);
        heap.persistent_free(slot);
        // SAFETY: `o` was just read from a persistent slot, no safepoint
        // since.
        unsafe { ctx.roots().push(o) };
        expected.push(id);
    }
    let n = expected.len();
    let counter = COUNTER + 8 * index;
    let mut rng = Rng::with_seed(seed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram");
    let mut r = MutatorReport {
        accesses: 0,
        window: Histogram::new(3).expect("histogram"),
        max_gap: Duration::ZERO,
        errors: 0,
        first_error: None,
    };
    let mut last_end: Option<Instant> = None;
    ctl.ready.fetch_add(1, Ordering::Release);
    while !ctl.stop.load(Ordering::Relaxed) {
        ctx.safepoint();
        let i = rng.usize(..n);
        let in_window = ctl.window.load(Ordering::Relaxed);
        let t0 = Instant::now();
        // The access: the first load touches the object's page.
        // SAFETY: `o` was just read from a root slot and is used (with
        // `next`) only until the next iteration's safepoint.
        let (o, id, check, next_id, next) = unsafe {
            let o = ctx.roots()[i].expect("walker slot");
            let id = o.read_u64(ID).expect("id");
            let check = o.read_u64(CHECK).expect("check");
            let c = o.read_u64(counter).expect("counter");
            o.write_u64(counter, c + 1).expect("counter");
            let next_id = o.read_u64(EDGE_ID).expect("edge id");
            let next = o.load_ref(EDGE).expect("edge");
            (o, id, check, next_id, next)
        };
        let t1 = Instant::now();
        r.accesses += 1;
        if id != expected[i] || check != mix(id) || next.is_none() {
            r.errors += 1;
            if r.first_error.is_none() {
                r.first_error = Some(format!(
                    "mutator {index}: object at {:#x} has id {id} (expected {}), check {check:#x} (expected {:#x}), edge {:?}",
                    o.addr(),
                    expected[i],
                    mix(id),
                    next
                ));
            }
        }
        if let Some(next) = next {
            // SAFETY: `next` was loaded in this iteration, before any
            // safepoint.
            unsafe { ctx.roots()[i] = Some(next) };
            expected[i] = next_id;
        }
        if in_window {
            hist.saturating_record((t1 - t0).as_nanos() as u64);
        }
        if let Some(prev) = last_end {
            r.max_gap = r.max_gap.max(t0 - prev);
        }
        last_end = Some(t1);
        if !think.is_zero() {
            while t1.elapsed() < think {
                std::hint::spin_loop();
            }
        }
    }
    r.window = hist;
    r
}

/// Walks every chain and checks the heap's data (see the module docs).
/// Returns the number of objects seen.
fn verify_data(ctx: &mut MutatorContext, built: &Built, increments: &[u64]) -> Result<u64, String> {
    let mut seen = 0u64;
    let mut checksum = 0u64;
    let mut sums = [0u64; MAX_MUTATORS];
    // Walk the chains round-robin: ids come in increasing (address) order
    // and the chains' loads are independent, so they overlap.
    // SAFETY (all the blocks below): the walk starts from the root slots and
    // neither allocates nor reaches a safepoint, so every reference it
    // loads stays current until it returns.
    let mut cur: Vec<Option<ObjRef>> = unsafe { ctx.roots() }[..CHAINS].to_vec();
    let mut expected: Vec<u64> = (0..CHAINS as u64).collect();
    let err = |e: movegc_gc::FieldError| e.to_string();
    while cur.iter().any(Option::is_some) {
        for c in 0..CHAINS {
            let Some(o) = cur[c] else { continue };
            // SAFETY: see the top of the function: no safepoint in the walk.
            unsafe {
                let id = o.read_u64(ID).map_err(err)?;
                if id != expected[c] {
                    return Err(format!(
                        "chain {c}: object at {:#x} has id {id}, expected {}",
                        o.addr(),
                        expected[c]
                    ));
                }
                if o.read_u64(CHECK).map_err(err)? != mix(id) {
                    return Err(format!("object {id}: bad check word"));
                }
                let target_id = o.read_u64(EDGE_ID).map_err(err)?;
                let target = o
                    .load_ref(EDGE)
                    .map_err(err)?
                    .ok_or_else(|| format!("object {id}: null random reference"))?;
                if id % EDGE_CHECK_EVERY == 0 {
                    // A random access each: sampled (the heap verifier checks
                    // that every reference leads to an object).
                    let got = target.read_u64(ID).map_err(err)?;
                    if got != target_id {
                        return Err(format!(
                            "object {id}: random reference leads to id {got}, expected {target_id}"
                        ));
                    }
                }
                checksum = checksum.wrapping_add(edge_hash(id, target_id));
                for (m, s) in sums.iter_mut().enumerate() {
                    *s += o.read_u64(COUNTER + 8 * m).map_err(err)?;
                }
                seen += 1;
                expected[c] += CHAINS as u64;
                cur[c] = o.load_ref(NEXT).map_err(err)?;
                if cur[c].is_none() && expected[c] < built.kept {
                    return Err(format!(
                        "chain {c} ends before id {} ({} kept)",
                        expected[c], built.kept
                    ));
                }
            }
        }
    }
    if seen != built.kept {
        return Err(format!("{seen} objects reachable, {} kept", built.kept));
    }
    if checksum != built.checksum {
        return Err("checksum of (id, random target) pairs differs".into());
    }
    for (m, &inc) in increments.iter().enumerate() {
        if sums[m] != inc {
            return Err(format!(
                "mutator {m} made {inc} increments but its counters sum to {} (lost writes)",
                sums[m]
            ));
        }
    }
    Ok(seen)
}

/// The heap configuration [`run`] uses.
pub fn heap_config(p: &CompactParams) -> HeapConfig {
    let cap = p.capacity();
    let mut cfg = HeapConfig {
        capacity: cap,
        min_free: cap,
        verify: false,
        strategy: p.strategy,
        fault_mode: p.fault_mode,
        ..HeapConfig::default()
    };
    if let Some(n) = p.gc_threads {
        cfg.gc_threads = n;
    }
    cfg
}

/// Builds the heap, runs the one measured collection with the mutators
/// running, verifies the data and returns the measurements. See the module
/// docs.
///
/// # Panics
/// On invalid parameters, if the heap cannot be created or filled, if a
/// collection ran during setup, and on any verification failure.
pub fn run(p: &CompactParams) -> CompactResult {
    run_detailed(p).result
}

/// A run's [`CompactResult`] plus what the suite's [`RunRecord`] needs.
#[derive(Debug)]
pub struct Detailed {
    /// The numbers of the compaction benchmark.
    pub result: CompactResult,
    /// The measured cycle.
    pub cycle: CycleStats,
    /// Mutator access latency during the cycle, nanoseconds.
    pub accesses_ns: Histogram<u64>,
    /// Process usage over the measured collection (peak RSS: whole run).
    pub usage: ProcessUsage,
    /// Wall time of the measured collection.
    pub wall: Duration,
    /// Every mutator thread's counters at the end (faults, stalls).
    pub threads: Vec<movegc_gc::ThreadStats>,
}

/// [`run`] as a record of the `movegc bench` suite: the one measured cycle,
/// the mutators' access latency (µs) as the per-operation latency, and the
/// process usage over the collection.
pub fn run_record(p: &CompactParams, repeat: usize) -> RunRecord {
    let d = run_detailed(p);
    let mut ops = Histogram::<u64>::new(3).expect("histogram");
    for v in d.accesses_ns.iter_recorded() {
        ops.record_n((v.value_iterated_to() / 1000).max(1), v.count_at_value())
            .expect("record");
    }
    let out = WorkloadOutput {
        wall: d.wall,
        cycles: vec![d.cycle],
        op_latency_us: (p.mutator_threads > 0).then_some(ops),
        check: format!(
            "{} live objects in {CHAINS} chains, check words, edges and {} mutator writes verified",
            d.result.objects_live, d.result.mutator_total_accesses
        ),
        heap: None,
    };
    let mut rec = RunRecord::from_output(
        "compact",
        p.strategy,
        &d.result.fault_mode,
        &p.to_spec(),
        repeat,
        &out,
        d.usage,
    );
    // The mutator threads' own share (the setup thread too).
    rec.threads = d.threads.iter().map(ThreadRecord::of).collect();
    rec
}

/// [`run`], keeping the cycle's statistics and the raw histograms.
pub fn run_detailed(p: &CompactParams) -> Detailed {
    p.validate().unwrap_or_else(|e| panic!("{e}"));
    let heap = GcHeap::new(heap_config(p)).expect("creating the heap");
    let mut ctx = heap.attach().expect("the first mutator of a new heap");
    let mut rng = Rng::with_seed(p.seed);
    let t = Instant::now();
    let built = build(&mut ctx, p, &mut rng);
    let setup = t.elapsed();
    let before = heap.stats();
    assert_eq!(
        before.cycles, 0,
        "a collection ran while the heap was built (min_free too small?)"
    );
    let rss_before = rss_bytes();

    // Start the mutators; they need their roots before the cycle.
    let ctl = Arc::new(Control::default());
    let think = Duration::from_micros(p.think_us);
    let handles: Vec<_> = built
        .walkers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let (heap, w, ctl) = (heap.clone(), w.clone(), ctl.clone());
            let seed = mix(p.seed ^ ((i as u64 + 1) << 40));
            std::thread::Builder::new()
                .name(format!("compact-mutator-{i}"))
                .spawn(move || mutator_thread(heap, i, w, think, seed, ctl))
                .expect("spawn a mutator")
        })
        .collect();
    while ctl.ready.load(Ordering::Acquire) < handles.len() {
        std::thread::yield_now();
    }
    let warm = if p.warm {
        let live = built.kept as usize * OBJECT_BYTES;
        warm_pages(live + (8 << 20))
    } else {
        Duration::ZERO
    };
    if !handles.is_empty() {
        // Let the mutators reach a steady state.
        std::thread::sleep(Duration::from_millis(20));
    }

    // The measured collection.
    let (busy0, steal0) = system_cpu();
    let u0 = usage();
    ctl.window.store(true, Ordering::Relaxed);
    let t = Instant::now();
    let st: CycleStats = ctx
        .collect_with(p.strategy)
        .expect("the measured collection ran");
    let wall = t.elapsed();
    ctl.window.store(false, Ordering::Relaxed);
    let u1 = usage();
    let (busy1, steal1) = system_cpu();
    ctl.stop.store(true, Ordering::Relaxed);
    let reports: Vec<MutatorReport> = handles
        .into_iter()
        .map(|h| h.join().expect("mutator thread panicked"))
        .collect();
    let rss_after = rss_bytes();
    assert_eq!(heap.stats().cycles, 1, "more than one collection ran");

    // Verify.
    for r in &reports {
        if let Some(e) = &r.first_error {
            panic!("{} bad accesses; first: {e}", r.errors);
        }
    }
    let increments: Vec<u64> = reports.iter().map(|r| r.accesses).collect();
    let t = Instant::now();
    let seen = verify_data(&mut ctx, &built, &increments)
        .unwrap_or_else(|e| panic!("data verification failed after the cycle: {e}"));
    let verify = t.elapsed();
    assert_eq!(
        st.live_objects as u64, seen,
        "the cycle marked a different number of objects than are reachable"
    );
    let t = Instant::now();
    ctx.verify();
    let heap_verify = t.elapsed();

    let mut window = Histogram::<u64>::new(3).expect("histogram");
    let mut max_gap = Duration::ZERO;
    for r in &reports {
        window.add(&r.window).expect("merge histograms");
        max_gap = max_gap.max(r.max_gap);
    }
    let q = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1e3
        }
    };
    let strategy = st.strategy.unwrap_or(p.strategy);
    let tail = st.after_compaction;
    let result = CompactResult {
        spec: p.spec(),
        strategy_requested: p.strategy.name().to_string(),
        strategy: strategy.name().to_string(),
        fault_mode: st
            .fault_mode
            .or(heap.fault_mode())
            .map_or("-".to_string(), |m| m.name().to_string()),
        gc_threads: heap.config().gc_threads,
        objects_allocated: built.allocated,
        objects_live: built.kept,
        used_before_mib: st.used_before as f64 / (1 << 20) as f64,
        live_mib: st.live_bytes as f64 / (1 << 20) as f64,
        setup_ms: ms(setup),
        warm_ms: ms(warm),
        compaction_ms: ms(st.compaction),
        compaction_per_thread_ms: st.compaction_per_thread.iter().map(|d| ms(*d)).collect(),
        pause_ms: ms(st.pause),
        initial_pause_ms: ms(st.initial_pause),
        remark_ms: ms(st.remark),
        ttsp_ms: ms(st.time_to_safepoint),
        mark_ms: ms(st.mark),
        prepare_ms: ms(st.prepare),
        flip_ms: ms(st.flip),
        update_roots_ms: ms(st.update_roots),
        flip_phase_ms: ms(st.flip + st.update_roots),
        release_ms: ms(st.release),
        cycle_ms: ms(st.cycle_time),
        tail_ms: ms(tail),
        collect_wall_ms: ms(wall),
        collect_cpu_ms: ms(u1.cpu.saturating_sub(u0.cpu)),
        pages_compacted: st.pages_compacted,
        dense_pages: st.dense_pages,
        moved_mib: st.moved_bytes as f64 / (1 << 20) as f64,
        pages_moved: st.pages_moved,
        pages_copied: st.pages_copied,
        pages_zero_filled: st.pages_zero_filled,
        pages_released: st.pages_released,
        move_ioctls: st.move_ioctls,
        copy_ioctls: st.copy_ioctls,
        madvise_calls: st.madvise_calls,
        ebusy_fallbacks: st.ebusy_fallbacks,
        short_run_copies: st.short_run_copies,
        eagain_retries: st.eagain_retries,
        eexist: st.eexist,
        recycle_shortfall: st.recycle_shortfall,
        faults: st.faults,
        fault_waits: st.fault_waits,
        stall_p50_us: st.fault_stall_quantile_us(0.5),
        stall_p99_us: st.fault_stall_quantile_us(0.99),
        stall_max_us: st.fault_stall_max_us(),
        mutator_accesses: window.len(),
        mutator_p50_us: q(&window, 0.5),
        mutator_p99_us: q(&window, 0.99),
        mutator_p999_us: q(&window, 0.999),
        mutator_max_us: if window.is_empty() {
            0.0
        } else {
            window.max() as f64 / 1e3
        },
        mutator_max_gap_ms: ms(max_gap),
        mutator_total_accesses: increments.iter().sum(),
        rss_before_mib: rss_before as f64 / (1 << 20) as f64,
        rss_after_mib: rss_after as f64 / (1 << 20) as f64,
        other_cpu_ms: ms(busy1.saturating_sub(busy0)) - ms(u1.cpu.saturating_sub(u0.cpu)),
        steal_ms: ms(steal1.saturating_sub(steal0)),
        minflt: u1.minflt - u0.minflt,
        majflt: u1.majflt - u0.majflt,
        verify_ms: ms(verify),
        heap_verify_ms: ms(heap_verify),
        verified: true,
    };
    let usage = ProcessUsage {
        cpu_s: u1.cpu.saturating_sub(u0.cpu).as_secs_f64(),
        minflt: u1.minflt - u0.minflt,
        peak_rss_bytes: usage().max_rss_bytes,
    };
    let stats = heap.stats();
    Detailed {
        result,
        cycle: st,
        accesses_ns: window,
        usage,
        wall,
        threads: stats
            .threads
            .into_iter()
            .chain(stats.recent_detached)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips() {
        let p = CompactParams {
            heap_mib: 1024,
            live_fraction: 0.25,
            prefix: 0.5,
            mutator_threads: 2,
            strategy: Strategy::ConcurrentCopy,
            fault_mode: FaultMode::HandlerThread,
            gc_threads: Some(1),
            think_us: 5,
            warm: false,
            seed: 7,
            edge_span: 64,
        };
        assert_eq!(CompactParams::parse_spec(&p.to_spec()), Ok(p));
        assert_eq!(CompactParams::parse_spec(""), Ok(CompactParams::default()));
        assert!(CompactParams::parse_spec("mutators=3").is_err());
        assert!(CompactParams::parse_spec("live=0").is_err());
        assert!(CompactParams::parse_spec("prefix=-0.1").is_err());
        assert_eq!(
            CompactParams::parse_spec("prefix=0.25").map(|p| p.prefix),
            Ok(0.25)
        );
        assert!(CompactParams::parse_spec("bogus=1").is_err());
    }

    #[test]
    fn layout_is_64_bytes() {
        assert_eq!(object_layout().size(), OBJECT_BYTES);
    }

    #[test]
    fn spec_errors_name_the_key() {
        let e = CompactParams::parse_spec("heap=64,bogus=1").unwrap_err();
        assert!(
            e.starts_with(r#"unknown key "bogus" (valid: heap, live,"#),
            "{e}"
        );
        let e = CompactParams::parse_spec("warm=maybe").unwrap_err();
        assert_eq!(e, r#"bad value "maybe" for warm"#);
        let e = CompactParams::parse_spec("strategy=sideways").unwrap_err();
        assert_eq!(e, r#"bad value "sideways" for strategy"#);
        let e = CompactParams::parse_spec("heap=64,heap=128").unwrap_err();
        assert_eq!(e, r#"key "heap" given twice"#);
        let p = CompactParams::parse_spec("gc_threads=3,warm=0").unwrap();
        assert_eq!((p.gc_threads, p.warm), (Some(3), false));
        let p = CompactParams::parse_spec("gc_threads=default").unwrap();
        assert_eq!(p.gc_threads, None);
    }
}

crate::spec::spec_io!(CompactParams);
