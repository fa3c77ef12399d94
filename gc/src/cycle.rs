//! The plan: one collection, phase by phase, top to bottom, and the
//! collector's state between cycles ([`Gc`]). It works on the heap's
//! spaces (the policies: `space`) and calls the heap (`heap`) only
//! through [`Host`]: persistent roots, granting room to waiting mutators,
//! the size policy's resident budget, and the end of a cycle.
//!
//! ```text
//!  stop the world ─ (verify the previous concurrent cycle) retire TLABs, gather roots
//!    mark          parallel, into the mark and live-words bitmaps
//!    prepare       dense prefix, chunk offsets, page-start table
//!  stop-the-world strategy:
//!    compact       in place: dense-prefix pages get their references
//!                  fixed (and fillers over dead gaps); every other page
//!                  = compact_page(p) into a bounce buffer, in parallel,
//!                  copied back a chunk at a time
//!    update roots  mutator roots, persistent roots, large objects; sweep LOS
//!    release       drop the from-space pages, clear the bitmaps
//!    verify        (debug/test builds) check every reference and header
//!  restart the world
//!
//!  concurrent strategies:
//!    flip          publish the cycle to the fault resolvers, register the
//!                  used range MISSING, mremap(DONTUNMAP) its pages out
//!                  (not a black block with few dirty slots: they are
//!                  rewritten here, and its pages stay)
//!    update roots  as above; the top drops to the compacted size, or
//!                  stays above a black block with a hole below it
//!  restart the world ── mutators run; a touched page faults and is
//!                       compacted first (concurrent::fault)
//!    driver        GC threads put a flipped black block (what was allocated
//!                  while marking) back in place, only its dirty slots
//!                  rewritten, fix the dense prefix in the from-space and
//!                  move it back (concurrent::prefix), then compact +
//!                  install every other page (concurrent::sweep),
//!                  unregister, drain resolvers, recycle/release the
//!                  from-space, hand the metadata back; verified at the next
//!                  pause (or by `collect()`, which waits for the cycle)
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::clean::{CleanPrefix, PrefixMemory};
use crate::compact::{Compactor, OldPages};
use crate::concurrent::arena::ArenaPages;
use crate::concurrent::fatal::{abort_on_panic, abort_with};
use crate::concurrent::fault::{HandlerThread, PendingHandler};
use crate::concurrent::support::{effective, warn_once, ConcurrentSupport, WARN_FLIP};
use crate::concurrent::{CycleSetup, CycleShared, FaultMode, Injection, InstallMode, PageTables};
use crate::cputime::GcCpu;
use crate::dirty::WriteTracker;
use crate::fork::PerProcess;
use crate::forwarding::{self, chunks_for, Forwarding, PageStart, PAGE_WORDS};
use crate::generation::{remembered_set, CardTable, Generations, ObjectStarts, Plan};
use crate::mapping::{
    round_up, FrozenWordMap, Mapping, Prot, U32Map, WordMap, HUGE_PAGE_SIZE, PAGE_SIZE,
};
use crate::mark::{los_marker, mark, mark_allocated, MarkContext, MarkResult};
use crate::object::{load_word, store_word, ObjRef, WORD};
use crate::poison::{obituaries, Obituary, OldImage, Poisoner, DEAD_RECORDS};
use crate::safepoint::{Coordinator, StoppedWorld};
use crate::satb::SatbLog;
use crate::space::{LargeObject, MovingSpace, Spaces};
use crate::stats::{CycleProgress, CycleStats, Pause, PauseKind, Phase, Strategy, Trigger};
use crate::uffd::{OpenPath, RegisterMode};
use crate::verify;

/// The heap as a cycle sees it: the spaces it collects, the collector's
/// state, and the heap's policies at the points where a cycle calls them.
/// The heap (`heap.rs`) implements it; the plan never sees allocation,
/// sizing or the persistent-root table otherwise.
pub(crate) trait Host: Send + Sync + 'static {
    /// The spaces (moving, large objects) and their syscall counters.
    fn spaces(&self) -> &Spaces;
    /// The collector's state.
    fn gc(&self) -> &Gc;
    /// Lends the persistent roots (read at the snapshot, rewritten when
    /// objects move).
    fn persistent_roots(&self, f: &mut dyn FnMut(&mut [Option<ObjRef>]));
    /// The grant stage: answers the mutators waiting for room, world
    /// stopped, once cycle `cycle` has set the new top. A cycle that may
    /// have kept garbage (`may_keep_garbage`: a young cycle keeps old
    /// garbage, a concurrent one everything allocated while it marked)
    /// grants but never answers "no room": the waiting mutator then starts
    /// an exhaustion cycle, which is full and marks in its pause.
    fn grant_waiting(&self, world: &mut StoppedWorld<'_>, cycle: u64, may_keep_garbage: bool);
    /// Used bytes at which the size policy starts the next collection after
    /// a cycle leaves `live` bytes live (not capped by the capacity): the
    /// stop-the-world release keeps the pages up to there resident.
    fn collect_at(&self, live: usize) -> usize;
    /// A cycle has ended (its statistics are final).
    fn after_cycle(&self, st: &CycleStats);
}

/// What a cycle takes from the heap's configuration.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Worker threads in pauses (at least 1).
    pub(crate) gc_threads: usize,
    /// Worker threads while mutators run, `1..=gc_threads`.
    pub(crate) concurrent_threads: usize,
    pub(crate) verify: bool,
    pub(crate) concurrent_mark: bool,
    pub(crate) dense_prefix_threshold: Option<f64>,
    pub(crate) generational: bool,
    pub(crate) remembered_set: crate::RememberedSet,
    /// `HeapConfig::keep_old_region`.
    pub(crate) keep_old_region: bool,
    /// `HeapConfig::keep_clean_prefix`.
    pub(crate) keep_clean_prefix: bool,
    /// `HeapConfig::huge_pages`.
    pub(crate) huge_pages: bool,
    /// `HeapConfig::prefill_allocation`.
    pub(crate) prefill_allocation: bool,
    /// `HeapConfig::min_move_run` (at least 1).
    pub(crate) min_move_run: usize,
    /// `HeapConfig::pause_black_slots`.
    pub(crate) pause_black_slots: usize,
    /// The strategy the heap was configured with.
    pub(crate) strategy: Strategy,
    pub(crate) fault_mode: FaultMode,
    pub(crate) uffd_path: Option<OpenPath>,
    pub(crate) injection: Injection,
    /// The stale-reference stress mode (`HeapConfig::poison_stress`).
    pub(crate) stress: bool,
    /// `HeapConfig::min_free` in words: the young policy's floor for how
    /// much the old region may grow between full cycles.
    pub(crate) min_free_words: usize,
}

/// The collector's state, owned by the heap and driven through [`Host`]:
/// the side metadata and buffers ([`Collector`], behind the lock every
/// cycle holds), the concurrent cycle in flight, the worker pool, the
/// userfaultfd support, the safepoint coordinator and the SATB log.
pub(crate) struct Gc {
    pub(crate) settings: Settings,
    collector: Mutex<Collector>,
    /// Mirrors `Collector::in_flight` for lock-free checks.
    in_flight: AtomicBool,
    /// Signalled when a concurrent cycle ends.
    idle: Condvar,
    /// Cycles started so far (`Collector::cycles`, readable without its
    /// lock).
    cycles_started: AtomicU64,
    /// The collector's worker threads (recreated in a forked child).
    pool: PerProcess<rayon::ThreadPool>,
    /// userfaultfd support: opened at creation for a concurrent default
    /// strategy, else on the first concurrent collection asked for; `None`
    /// inside when it cannot be opened.
    concurrent: OnceLock<Option<ConcurrentSupport>>,
    /// The strategy collections use when not told otherwise (after
    /// fallbacks).
    default_strategy: Strategy,
    coord: Arc<Coordinator>,
    /// The SATB log of concurrent marking (see `satb`).
    satb: Arc<SatbLog>,
    /// The card table of young collections (see `generation`).
    cards: Arc<CardTable>,
    /// The kernel's dirty tracking, when it builds the remembered set
    /// (see `dirty`).
    tracker: Option<WriteTracker>,
    /// The collector's CPU time (see `cputime`).
    cpu: Arc<GcCpu>,
    /// The concurrent cycle in flight: what it is doing, since when.
    progress: Mutex<Option<(CycleProgress, Instant)>>,
    /// Flips of concurrent cycles so far: each answered the mutators
    /// waiting for room (changed under the collector lock, signalled on
    /// `idle`).
    grants: AtomicU64,
}

impl Gc {
    /// The collector of a heap with moving space `space`: side metadata
    /// sized for it, the worker `pool` ([`worker_pool`]), and userfaultfd
    /// opened now if the configured strategy is concurrent.
    pub(crate) fn new(
        settings: Settings,
        space: &MovingSpace,
        coord: Coordinator,
        pool: rayon::ThreadPool,
        cpu: Arc<GcCpu>,
    ) -> std::io::Result<Gc> {
        let pool = PerProcess::new(pool);
        let concurrent = OnceLock::new();
        let wants_wp = wants_write_tracking(&settings);
        if settings.strategy.is_concurrent() || wants_wp {
            let _ = concurrent.set(open_support(&settings, space));
        }
        let support = concurrent.get().and_then(|c: &Option<_>| c.as_ref());
        let default_strategy = effective(settings.strategy, support);
        let tracker = match support {
            Some(s) if wants_wp && s.write_tracking() => {
                Some(WriteTracker::new(space.start(), space.reserved()))
            }
            _ if wants_wp => {
                warn_once(
                    &WARN_NO_WP,
                    "kernel dirty tracking (UFFD_FEATURE_WP_ASYNC) is unavailable; \
                     young collections use the card barrier",
                );
                None
            }
            _ => None,
        };
        let cards = CardTable::new(space.start(), space.reserved())?;
        // The barrier marks cards always with the card builder; with the
        // kernel's tracking only during cycles (from the first one on).
        cards.set_active(settings.generational && tracker.is_none());
        let mut collector = Collector::new(space)?;
        if default_strategy.is_concurrent() {
            // Now rather than in the first cycle's initial pause (if this
            // fails, that pause tries again).
            let _ = collector.collector_thread();
        }
        Ok(Gc {
            tracker,
            collector: Mutex::new(collector),
            in_flight: AtomicBool::new(false),
            idle: Condvar::new(),
            cycles_started: AtomicU64::new(0),
            pool,
            concurrent,
            default_strategy,
            coord: Arc::new(coord),
            satb: Arc::new(SatbLog::for_space(space.start(), space.capacity())?),
            cards: Arc::new(cards),
            cpu,
            progress: Mutex::new(None),
            grants: AtomicU64::new(0),
            settings,
        })
    }

    /// The safepoint coordinator of the heap's mutators.
    pub(crate) fn coord(&self) -> &Arc<Coordinator> {
        &self.coord
    }

    /// The SATB log of concurrent marking.
    pub(crate) fn satb(&self) -> &Arc<SatbLog> {
        &self.satb
    }

    /// The collector's CPU time.
    pub(crate) fn cpu(&self) -> &Arc<GcCpu> {
        &self.cpu
    }

    /// The concurrent cycle in flight, if any.
    pub(crate) fn progress(&self) -> Option<CycleProgress> {
        lock(&self.progress)
            .as_ref()
            .map(|(p, since)| CycleProgress {
                elapsed: since.elapsed(),
                ..p.clone()
            })
    }

    /// Says what the cycle in flight (`st`'s, begun at `since`) does now;
    /// `None` when it has ended.
    fn set_progress(&self, now: Option<(&CycleStats, Phase, Instant)>) {
        *lock(&self.progress) = now.map(|(st, phase, since)| {
            let p = CycleProgress {
                cycle: st.cycle,
                strategy: st.strategy.unwrap_or(self.default_strategy),
                young: st.young,
                phase,
                elapsed: Duration::ZERO,
                used_before: st.used_before,
            };
            (p, since)
        });
    }

    /// The card table of young collections.
    #[inline(always)]
    pub(crate) fn cards(&self) -> &CardTable {
        &self.cards
    }

    /// The start of a cycle (world stopped): with the kernel's dirty
    /// tracking, the card barrier goes on until the cycle has protected
    /// the old region again (see `dirty`).
    fn begin_tracking(&self) {
        if self.tracker.as_ref().is_some_and(|t| t.is_on()) {
            self.cards.set_active(true);
        }
    }

    /// A young cycle's scan of the pages written while the old region was
    /// protected, into the card table (after the pause that turned the
    /// barrier on); the builder this cycle used.
    fn scan_written(
        &self,
        space: &MovingSpace,
        los: &BTreeMap<usize, LargeObject>,
        old_end: usize,
        st: &mut CycleStats,
    ) {
        st.remembered_set = Some(crate::RememberedSet::Cards);
        let Some(t) = self.tracker.as_ref().filter(|t| t.is_on()) else {
            return;
        };
        let scan = t.begin(&self.cards, &tracked_ranges(space, los, old_end));
        st.remembered_set = Some(crate::RememberedSet::WriteProtect);
        st.written_pages = scan.pages;
        st.written_scan = scan.time;
        st.written_assumed = scan.assumed;
    }

    /// Before a flip: the registration for write tracking goes (see
    /// `WriteTracker::unregister`); the time taken.
    fn unregister_tracking(&self) -> Duration {
        // Also after a failure turned the tracker off: a range left
        // registered would slow every later flip's mremap down.
        let Some(t) = self.tracker.as_ref() else {
            return Duration::ZERO;
        };
        match self.concurrent().map(|c| c.uffd()) {
            Some(Ok(u)) => t.unregister(&u, &self.cards),
            Some(Err(e)) => {
                t.fail(&self.cards, &e);
                Duration::ZERO
            }
            None => Duration::ZERO,
        }
    }

    /// The end of a cycle that leaves the old region `[start, old_end)`
    /// (every page mapped, not registered `MISSING`): protects it and the
    /// arena's used part, then turns the barrier off (see `dirty`).
    fn end_tracking(
        &self,
        space: &MovingSpace,
        los: &BTreeMap<usize, LargeObject>,
        old_end: usize,
        st: &mut CycleStats,
    ) {
        let Some(t) = self.tracker.as_ref().filter(|t| t.is_on()) else {
            return;
        };
        let uffd = self
            .concurrent()
            .expect("a write tracker has a userfaultfd")
            .uffd();
        st.write_protect = match uffd {
            Ok(u) => t.end(&u, &self.cards, &tracked_ranges(space, los, old_end)),
            Err(e) => {
                t.fail(&self.cards, &e);
                Duration::ZERO
            }
        };
    }

    /// The strategy collections use when not told otherwise.
    pub(crate) fn strategy(&self) -> Strategy {
        self.default_strategy
    }

    /// What `strategy` becomes on this heap after fallbacks; asking about a
    /// concurrent one opens userfaultfd now if that was not tried yet.
    pub(crate) fn effective_strategy(&self, strategy: Strategy, space: &MovingSpace) -> Strategy {
        if self.settings.stress {
            // The stress mode moves everything in stop-the-world cycles.
            return Strategy::StopTheWorld;
        }
        let support = if strategy.is_concurrent() {
            self.concurrent
                .get_or_init(|| open_support(&self.settings, space))
                .as_ref()
        } else {
            self.concurrent()
        };
        effective(strategy, support)
    }

    /// The userfaultfd support, if it has been opened successfully.
    pub(crate) fn concurrent(&self) -> Option<&ConcurrentSupport> {
        self.concurrent.get().and_then(|c| c.as_ref())
    }

    /// Whether a concurrent cycle is running now.
    pub(crate) fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Cycles started so far.
    pub(crate) fn cycles_started(&self) -> u64 {
        self.cycles_started.load(Ordering::Acquire)
    }

    /// Blocks until no concurrent cycle is running (the caller is not a
    /// running mutator of this heap: the cycle's final pause waits for
    /// those).
    pub(crate) fn wait_idle(&self) {
        let mut c = lock(&self.collector);
        while c.in_flight {
            c = self.idle.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The number of concurrent flips so far (see `wait_flip_or_idle`).
    pub(crate) fn flips(&self) -> u64 {
        self.grants.load(Ordering::Acquire)
    }

    /// Blocks until no concurrent cycle is running or one has flipped
    /// since `flips` was read: a mutator waiting for room has its answer
    /// at the flip, not only once the compaction ends.
    pub(crate) fn wait_flip_or_idle(&self, flips: u64) {
        let mut c = lock(&self.collector);
        while c.in_flight && self.grants.load(Ordering::Acquire) == flips {
            c = self.idle.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs one collection with the world stopped (see
    /// [`Collector::collect`]; the caller reports a finished one to
    /// [`Host::after_cycle`]); `None` if a concurrent cycle started
    /// between the caller's wait and its pause (wait and try again).
    pub(crate) fn collect(
        &self,
        host: &Arc<dyn Host>,
        world: &mut StoppedWorld<'_>,
        trigger: Trigger,
        strategy: Strategy,
    ) -> Option<(CycleStats, bool)> {
        let mut col = lock(&self.collector);
        if col.in_flight {
            return None;
        }
        Some(col.collect(host, world, trigger, strategy))
    }

    /// Verifies the heap now (world stopped) if the last concurrent cycle
    /// has not been verified yet; `false` if a cycle is in flight (wait and
    /// try again).
    pub(crate) fn verify_if_needed(&self, host: &dyn Host, world: &mut StoppedWorld<'_>) -> bool {
        let mut col = lock(&self.collector);
        if col.in_flight {
            return false;
        }
        if col.unverified {
            col.verify_stopped(host, world);
        }
        true
    }

    /// This process's worker pool (a forked child gets its own on first
    /// use: the parent's threads do not exist there).
    fn pool(&self) -> Arc<rayon::ThreadPool> {
        self.pool
            .get(|_| worker_pool(self.settings.gc_threads, self.cpu.clone()))
            .unwrap_or_else(|e| panic!("cannot start the collector's threads: {e}"))
    }
}

/// Opens userfaultfd for the heap's moving space (or says once why not).
fn open_support(settings: &Settings, space: &MovingSpace) -> Option<ConcurrentSupport> {
    ConcurrentSupport::open(
        settings.strategy,
        settings.fault_mode,
        settings.uffd_path,
        wants_write_tracking(settings),
        space.start(),
        space.start() + space.reserved(),
    )
}

/// Kept old pages are fixed in the final pause, one after another: a
/// young cycle with more dirty old pages than this flips its old region
/// with the rest (fixed and moved back by the GC threads after the pause).
pub(crate) const KEEP_MAX_DIRTY: usize = 256;

/// How many pages at the bottom of the space a concurrent cycle leaves in
/// place: a young cycle's whole old region (its dense prefix, page
/// aligned), if at most [`KEEP_MAX_DIRTY`] of its pages are dirty; else
/// none.
fn kept_pages(plan: Plan, dense_words: usize, old_dirty: Option<&[u8]>) -> usize {
    match (plan, old_dirty) {
        (Plan::Young(w), Some(dirty))
            if w == dense_words
                && w % PAGE_WORDS == 0
                && dirty.iter().filter(|&&d| d != 0).count() <= KEEP_MAX_DIRTY =>
        {
            w / PAGE_WORDS
        }
        _ => 0,
    }
}

/// The dirty old pages the young policy counts (`Generations::finished`):
/// none when they were all assumed written rather than found written.
fn policy_dirty(st: &CycleStats) -> usize {
    match st.written_assumed {
        true => 0,
        false => st.remembered_pages,
    }
}

/// What the kernel's dirty tracking watches: the old region `[start of
/// the space, old_end)` and the arena up to its last large object (page
/// aligned; young pages there are reported written, which is safe).
fn tracked_ranges(
    space: &MovingSpace,
    los: &BTreeMap<usize, LargeObject>,
    old_end: usize,
) -> [(usize, usize); 2] {
    [
        (space.start(), round_up(old_end, PAGE_SIZE)),
        (space.arena().0, round_up(arena_end(space, los), PAGE_SIZE)),
    ]
}

/// The end of the arena's used part: of its highest large object, live or
/// dead (the arena's start if it holds none).
fn arena_end(space: &MovingSpace, los: &BTreeMap<usize, LargeObject>) -> usize {
    los.values()
        .filter(|o| o.in_arena())
        .map(|o| o.obj().addr() + o.footprint())
        .max()
        .unwrap_or(space.arena().0)
}

/// Whether the settings ask for the kernel's dirty tracking.
fn wants_write_tracking(settings: &Settings) -> bool {
    settings.generational && settings.remembered_set == crate::RememberedSet::WriteProtect
}

static WARN_NO_WP: AtomicBool = AtomicBool::new(false);

/// The collector's worker pool.
pub(crate) fn worker_pool(threads: usize, cpu: Arc<GcCpu>) -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("movegc-worker-{i}"))
        .start_handler(move |_| cpu.register_worker())
        .build()
        .map_err(std::io::Error::other)
}

/// A prepare done while mutators ran (see `concurrent_mark`).
#[derive(Clone, Debug)]
struct Prepared {
    /// The old region it covers, `[0, old_end)` words.
    old_end: usize,
    /// Its dense prefix, in words.
    dense: usize,
    /// The compacted size, in words.
    total: usize,
    /// Its clean prefix pages (`clean`), before the final pause's
    /// barrier flags.
    clean: Option<CleanPrefix>,
}

/// Whether a cycle under `plan` leaves clean dense-prefix pages alone
/// (`HeapConfig::keep_clean_prefix`): full cycles only (a young cycle's
/// prefix is its old region, handled by `keep_old_region`), and not in
/// the stale-reference mode (which writes poison over freed gaps).
fn keeps_clean_prefix(gc: &Gc, space: &MovingSpace, plan: Plan) -> bool {
    matches!(plan, Plan::Full(_)) && gc.settings.keep_clean_prefix && space.poisoner().is_none()
}

/// The clean pages of a full cycle's dense prefix of `dense` words, given
/// the live bitmap and what the last full cycle fixed (`clean`); `None`
/// when the cycle does not keep them.
fn clean_prefix(
    gc: &Gc,
    space: &MovingSpace,
    plan: Plan,
    live: &[u64],
    dense: usize,
    fixed: &PrefixMemory,
) -> Option<CleanPrefix> {
    keeps_clean_prefix(gc, space, plan).then(|| {
        CleanPrefix::compute(live, dense / PAGE_WORDS, fixed, |p| {
            gc.satb.prefix_refs_stay(p, dense)
        })
    })
}

/// Where the top goes after a cycle that packed the space up to `packed`,
/// and whether that ends the old region on a page: with young collections
/// the next page boundary (the gap is zero), unless that leaves no room at
/// all (a full heap: then `packed`, and no old region).
fn top_after(gc: &Gc, space: &MovingSpace, packed: usize) -> (usize, bool) {
    let up = round_up(packed, PAGE_SIZE);
    if gc.settings.generational && up < space.end() {
        (up, true)
    } else {
        (packed, false)
    }
}

/// The old region's size in words under `plan` (0 for a full cycle).
fn old_words(plan: Plan) -> usize {
    match plan {
        Plan::Young(w) => w,
        Plan::Full(_) => 0,
    }
}

/// The dense prefix of a cycle, in words: a young cycle's is its old
/// region; a full cycle's the pages at least the configured share live.
fn dense_prefix(gc: &Gc, plan: Plan, live: &[u64], old_end: usize) -> usize {
    match (plan, gc.settings.dense_prefix_threshold) {
        (Plan::Young(w), _) => w,
        (Plan::Full(_), Some(th)) => forwarding::dense_prefix(live, old_end, th),
        (Plan::Full(_), None) => 0,
    }
}

/// Computes the chunk offsets and the page-start table of the words
/// `[dense, end_words)` (on the pool); returns the compacted size in words.
fn prepare(pool: &rayon::ThreadPool, meta: &mut Metadata, dense: usize, end_words: usize) -> usize {
    prepare_from(pool, meta, dense, dense, end_words)
}

/// [`prepare`] of `[from, end_words)` only, continuing one that stopped
/// at `from` (a multiple of the page size, at or above `dense`; `from ==
/// dense` is a whole prepare): the prepare done while mutators ran, below
/// a region the final pause walked into the bitmap (what a cycle that
/// kept no black block allocated while it marked). Costs that region, not
/// the heap below it. Returns the new total.
fn prepare_from(
    pool: &rayon::ThreadPool,
    meta: &mut Metadata,
    dense: usize,
    from: usize,
    end_words: usize,
) -> usize {
    let Metadata {
        marks,
        live,
        offsets,
        pages,
        ..
    } = meta;
    let total = match from == dense {
        true => {
            pool.install(|| forwarding::compute_offsets(live.words(), dense, end_words, offsets))
        }
        false => forwarding::extend_offsets(live.words(), from, end_words, offsets),
    };
    let fwd = Forwarding {
        live: live.words(),
        offsets,
        dense_words: dense,
        end_words,
    };
    pool.install(|| match from == dense {
        true => forwarding::page_starts(&fwd, marks.words(), pages),
        false => forwarding::page_starts_from(&fwd, marks.words(), pages, from),
    });
    total
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pages compacted per step of the in-place stop-the-world compaction.
const STW_CHUNK_PAGES: usize = 256;

/// Side metadata of the moving space, reused across cycles.
pub(crate) struct Metadata {
    marks: WordMap,
    live: WordMap,
    offsets: U32Map,
    pages: Vec<PageStart>,
    /// The old region's object starts (young collections).
    starts: ObjectStarts,
}

/// The collector: metadata, per-thread buffers and cycle bookkeeping.
struct Collector {
    /// `None` while a concurrent cycle owns the metadata.
    meta: Option<Metadata>,
    buffers: Vec<Mapping>,
    /// The page tables of the last concurrent cycle, reused by the next.
    tables: Option<PageTables>,
    /// The heap's collector thread (see [`spawn_collector_thread`]), with
    /// the pid of the process whose thread it is (a forked child has no
    /// such thread and starts its own).
    thread: Option<(u32, std::sync::mpsc::Sender<Job>)>,
    /// The old generation's bookkeeping (young collections).
    gen: Generations,
    /// Bounce buffer of the in-place stop-the-world compaction.
    bounce: Vec<u8>,
    cycles: u64,
    /// A concurrent cycle is running after its flip.
    in_flight: bool,
    /// The last concurrent cycle has not been verified yet.
    unverified: bool,
    /// End of the packed objects produced by the last cycle.
    packed_end: usize,
    /// Stale-reference mode: what the cycle in flight frees (recorded in
    /// its last pause, poisoned at its end).
    obituaries: Option<Vec<Obituary>>,
    /// Stress mode: the last cycle compacted above its old top (the next
    /// compacts back down to the start).
    stress_high: bool,
    /// What was left of the last cycle's hole when this cycle closed it:
    /// free then, so not in `used_before`, and not freed by this cycle.
    closed_hole: usize,
    /// What the last full cycle left fixed: its prefix pages' live words
    /// and the pages it packed whole (`clean`); empty after any other
    /// cycle.
    prefix_memory: Arc<PrefixMemory>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.leak_inherited_thread();
    }
}

impl Collector {
    fn new(space: &MovingSpace) -> std::io::Result<Collector> {
        let words = space.capacity() / WORD;
        Ok(Collector {
            meta: Some(Metadata {
                marks: WordMap::new(chunks_for(words))?,
                live: WordMap::new(chunks_for(words))?,
                offsets: U32Map::new(chunks_for(words) + 1)?,
                pages: Vec::new(),
                starts: ObjectStarts::new(space.capacity())?,
            }),
            gen: Generations::default(),
            buffers: Vec::new(),
            tables: None,
            thread: None,
            bounce: Vec::new(),
            cycles: 0,
            in_flight: false,
            unverified: false,
            packed_end: space.start(),
            obituaries: None,
            stress_high: false,
            closed_hole: 0,
            prefix_memory: Arc::default(),
        })
    }

    /// Ends a cycle under young collections: everything below `new_old`
    /// words is old; the object starts of what this cycle promoted (above
    /// the old region it began with, everything after a full cycle) are
    /// recorded from the space at `start`; `examined_end` is where the
    /// cycle's heap ended (what it freed is the difference). `None`: the
    /// old region could not end on a page (the heap is nearly full), so
    /// there is none and the next cycle is full.
    fn promote(
        &mut self,
        starts: &mut ObjectStarts,
        start: usize,
        plan: Plan,
        new_old: Option<usize>,
        examined_end: usize,
        dirty_pages: usize,
    ) {
        let Some(new_old) = new_old else {
            self.gen = Generations::default();
            return;
        };
        let from = old_words(plan);
        starts.extend(start, from, new_old);
        let young = examined_end.saturating_sub(from);
        let freed = examined_end.saturating_sub(new_old);
        self.gen.finished(plan, new_old, young, freed, dirty_pages);
    }

    /// Verifies the heap now (world stopped). Panics on corruption: the
    /// heap cannot be used safely any more.
    fn verify_stopped(&mut self, host: &dyn Host, world: &mut StoppedWorld<'_>) -> Duration {
        let t = Instant::now();
        let sp = host.spaces();
        let roots = gather_roots(host, world, false);
        let los = sp.large.objects.lock().unwrap_or_else(|e| e.into_inner());
        let base = sp.moving.base();
        let packed_end = self.packed_end.max(base);
        if let Err(e) = verify::verify_heap(base, packed_end, sp.moving.top(), &los, &roots) {
            panic!("heap verification failed after cycle {}: {e}", self.cycles);
        }
        self.unverified = false;
        t.elapsed()
    }

    /// Runs the pause of one collection. For the stop-the-world strategy the
    /// whole cycle runs here and the result is final (`true`); for the
    /// concurrent ones the pause ends after the flip, the collector thread
    /// finishes the cycle, and the returned stats cover the pause (`false`).
    fn collect(
        &mut self,
        host: &Arc<dyn Host>,
        world: &mut StoppedWorld<'_>,
        trigger: Trigger,
        strategy: Strategy,
    ) -> (CycleStats, bool) {
        // The pause begins now, with every mutator stopped; the cycle began
        // when the world started stopping.
        let t_start = Instant::now();
        let ttsp = world.time_to_safepoint();
        let (sp, gc) = (host.spaces(), host.gc());
        let space = &sp.moving;
        assert!(
            !self.in_flight,
            "a collection started while a concurrent cycle is in flight"
        );
        let mut st = CycleStats {
            time_to_safepoint: ttsp,
            pauses: vec![Pause::begin(PauseKind::StopTheWorld, world)],
            ..CycleStats::default()
        };
        if gc.settings.verify && self.unverified {
            st.verify = self.verify_stopped(&**host, world);
        }
        let madvise_before = sp.counters.madvise.load(Ordering::Relaxed);
        self.cycles += 1;
        gc.cycles_started.store(self.cycles, Ordering::Release);
        st.cycle = self.cycles;
        st.strategy = Some(strategy);
        st.trigger = Some(trigger);
        // Allocation continues above the top, not in a hole the last cycle
        // left: what is left of it is zero words, dead, compacted away. It
        // was free: not used before, nor freed by this cycle.
        self.closed_hole = space.hole_len();
        space.close_hole();
        st.used_before = space.used();
        let plan = self.gen.plan(
            gc.settings.generational,
            trigger,
            space.capacity() / WORD,
            gc.settings.min_free_words,
        );
        match plan {
            Plan::Full(r) => st.full_reason = Some(r),
            Plan::Young(w) => {
                st.young = true;
                st.old_bytes = w * WORD;
            }
        }
        gc.begin_tracking();
        // The pages the last full cycle fixed are watched while this one
        // marks, if it is a full one (`clean`).
        if !keeps_clean_prefix(gc, space, plan) {
            self.prefix_memory = Arc::default();
        }
        gc.satb.watch_prefix(self.prefix_memory.len());

        if strategy.is_concurrent()
            && gc.settings.concurrent_mark
            // An allocation that does not fit waits for this cycle: mark in
            // the pause, so that nothing allocated meanwhile is kept
            // unmarked and a "no room" answer is final.
            && trigger != Trigger::Exhausted
            && self.start_concurrent_mark(
                host,
                world,
                &mut st,
                strategy,
                t_start,
                madvise_before,
                plan,
            )
        {
            return (st, false);
        }

        let mut roots = gather_roots(&**host, world, true);
        let los = sp.large.objects.lock().unwrap_or_else(|e| e.into_inner());
        let meta = self.meta.take().expect("metadata present between cycles");
        if let Plan::Young(old_words) = plan {
            sp.large.mark_old(&los);
            gc.scan_written(space, &los, space.start() + old_words * WORD, &mut st);
            let t = Instant::now();
            let (rs, n) = remembered_set(&gc.cards, &meta.starts, space.start(), old_words, &los);
            roots.extend(rs);
            st.remembered_pages = n;
            st.remembered_scan = t.elapsed();
        }

        // Mark.
        let t = Instant::now();
        let top = space.top();
        let m = {
            let lm = los_marker(&los);
            mark(
                &MarkContext {
                    space_start: space.start(),
                    old_end: space.start() + old_words(plan) * WORD,
                    space_top: top,
                    black_end: top,
                    marks: meta.marks.atomics(),
                    live: meta.live.atomics(),
                    los: &lm,
                    watch: gc.satb.prefix_watch(),
                },
                &roots,
                Some(&gc.pool()),
                gc.settings.gc_threads.max(1),
            )
        };
        st.mark = t.elapsed();
        st.live_bytes = m.bytes + st.old_bytes;
        st.live_objects = m.objects;
        st.large_objects_live = m.large_objects;
        let times = CycleTimes {
            pause_start: t_start,
            cycle_start: t_start.checked_sub(ttsp).unwrap_or(t_start),
            madvise_before,
        };
        self.finish(
            host, world, los, meta, st, strategy, top, None, None, times, None, plan,
        )
    }

    /// Starts a concurrent cycle with concurrent marking: in this (short)
    /// pause, retires TLABs, snapshots the roots, turns the SATB barrier on
    /// and makes everything allocated from now on live by position; then
    /// the heap's collector thread marks while mutators run and stops the
    /// world again for the final pause ([`concurrent_mark`]). `false` if
    /// that thread cannot be started (the caller then marks in this pause).
    #[allow(clippy::too_many_arguments)]
    fn start_concurrent_mark(
        &mut self,
        host: &Arc<dyn Host>,
        world: &mut StoppedWorld<'_>,
        st: &mut CycleStats,
        strategy: Strategy,
        t_start: Instant,
        madvise_before: usize,
        plan: Plan,
    ) -> bool {
        let (sp, gc) = (host.spaces(), host.gc());
        // The collector thread first, before any state changes: if it
        // cannot be started, this cycle simply marks in the pause.
        let Ok(thread) = self.collector_thread() else {
            return false;
        };
        let host2 = host.clone();
        // The cycle began when the world started stopping.
        let cycle_start = t_start.checked_sub(st.time_to_safepoint).unwrap_or(t_start);
        // Anything left from an earlier cycle is stale (objects moved).
        drop(gc.satb.take_all());
        gc.satb.set_marking(true);
        let roots = gather_roots(&**host, world, true);
        let meta = self.meta.take().expect("metadata present between cycles");
        if matches!(plan, Plan::Young(_)) {
            sp.large
                .mark_old(&sp.large.objects.lock().unwrap_or_else(|e| e.into_inner()));
        }
        // Objects allocated from now on form the black block, which the
        // flip leaves where it is, its pages going back whole (see
        // `concurrent::prefix`): it must start on a page boundary. The words
        // skipped lie in the old region, dead (zero, no object), and are
        // compacted away. The barrier records its slots given references
        // below it (`SatbLog::note_store`).
        sp.moving.align_top(PAGE_SIZE);
        let mark_top = sp.moving.top();
        // A block kept in place leaves the top where it was, and the next
        // cycle's block lands above it: the heap's extent grows by a block
        // a cycle while the hole below takes the allocation. Past half the
        // space this cycle keeps none (its final pause walks what was
        // allocated, and the compaction packs it with the rest).
        let keep_black = mark_top - sp.moving.base() <= sp.moving.capacity() / 2;
        gc.satb
            .set_black_start(if keep_black { mark_top } else { usize::MAX });
        sp.large.set_allocate_black(true);
        self.in_flight = true;
        gc.in_flight.store(true, Ordering::Release);
        st.initial_pause = st.end_pause(PauseKind::Initial, t_start);
        gc.set_progress(Some((st, Phase::Marking, cycle_start)));
        let (tables, st) = (self.tables.take(), st.clone());
        let prefix_memory = self.prefix_memory.clone();
        // Mutators may be waiting for this cycle and the barrier is on: a
        // failure cannot be recovered from.
        run_on(&thread, "marking", move |cpu_before| {
            concurrent_mark(
                host2,
                meta,
                tables,
                roots,
                mark_top,
                st,
                strategy,
                cycle_start,
                madvise_before,
                plan,
                cpu_before,
                prefix_memory,
            )
        });
        true
    }

    /// Everything after marking, with the world stopped: prepare the
    /// forwarding, then flip (concurrent strategies: returns `false`, a
    /// the collector thread finishes) or compact in place (returns `true`).
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        host: &Arc<dyn Host>,
        world: &mut StoppedWorld<'_>,
        mut los: MutexGuard<'_, BTreeMap<usize, LargeObject>>,
        mut meta: Metadata,
        mut st: CycleStats,
        strategy: Strategy,
        top: usize,
        black: Option<usize>,
        prepared: Option<Prepared>,
        times: CycleTimes,
        pending: Option<PendingHandler>,
        plan: Plan,
    ) -> (CycleStats, bool) {
        let (sp, gc) = (host.spaces(), host.gc());
        let space = &sp.moving;
        let start = space.start();
        let end_words = (top - start) / WORD;
        let CycleTimes {
            pause_start: t_start,
            cycle_start,
            madvise_before,
        } = times;

        // Prepare: dense prefix, offsets, page starts. (The prefix's dead
        // gaps get fillers when its pages are fixed, not here.) A concurrent
        // cycle whose marking left a black block (everything allocated while
        // it marked, from a page boundary) leaves that block where it is:
        // the offsets cover only the old region below it.
        let t = Instant::now();
        let old_end = black.map_or(end_words, |s| (s - start) / WORD);
        let pool = gc.pool();
        let (dense, mut total, clean) = match prepared.filter(|p| p.old_end <= old_end) {
            Some(p) if p.old_end == old_end => {
                st.prepare_reused = true;
                (p.dense, p.total, p.clean)
            }
            // No black block was kept: the pause walked what was allocated
            // while marking into the bitmap, above the region prepared
            // while mutators ran; that prepare extends over it.
            Some(p) => {
                st.prepare_reused = true;
                let total = prepare_from(&pool, &mut meta, p.dense, p.old_end, old_end);
                (p.dense, total, p.clean)
            }
            None => {
                let dense = dense_prefix(gc, plan, meta.live.words(), old_end);
                let total = prepare(&pool, &mut meta, dense, old_end);
                let memory = &self.prefix_memory;
                let clean = clean_prefix(gc, space, plan, meta.live.words(), dense, memory);
                (dense, total, clean)
            }
        };
        // A page given a moving reference by the barrier since the clean
        // pages were found (while mutators ran) is not clean after all.
        let mut clean = clean.map(|mut c| {
            c.unmark(gc.satb.prefix_stored_pages(c.clean.len()));
            c
        });
        gc.satb.watch_prefix(0);
        st.prefix_clean = clean.as_ref().map_or(0, CleanPrefix::clean_pages);
        // Everything this cycle keeps is old once it ends: the old pages
        // written since the last cycle are what a young cycle must fix
        // (their references to young objects move), and the card table
        // starts afresh for the next one.
        let old_dirty = match plan {
            Plan::Young(w) => Some(gc.cards.snapshot(w / PAGE_WORDS)),
            Plan::Full(_) => None,
        };
        if gc.settings.generational {
            gc.cards.clear(0, (top - start).div_ceil(PAGE_SIZE));
            let (arena, end) = (space.arena().0, arena_end(space, &los));
            gc.cards
                .clear((arena - start) / PAGE_SIZE, (end - start) / PAGE_SIZE);
        }
        st.prepare = t.elapsed();
        st.moved_bytes = (total - dense) * WORD;
        // Stale-reference stress mode (stop-the-world cycles): every other
        // cycle compacts to just above the old top, so that every object
        // moves and the whole old image is freed (and poisoned); the next
        // compacts back down to the start. Without room above, as usual.
        let base = space.base();
        let stress = gc.settings.stress && !strategy.is_concurrent() && space.poisoner().is_some();
        // Not for an allocation that did not fit: it gets all the room.
        let exhausted = st.trigger == Some(Trigger::Exhausted);
        let shift = match stress && !self.stress_high && !exhausted {
            true => {
                let d = round_up(top, PAGE_SIZE);
                if d + total * WORD + PAGE_SIZE <= space.end() {
                    d - start
                } else {
                    0
                }
            }
            false => 0,
        };
        // What the next full cycle compares its prefix against: this one's
        // counts, once it has fixed every page that was not clean (both
        // ways of finishing it below do), and every page the compaction
        // fills whole (no gap, every reference written): those are the
        // next prefix if nothing on them dies, clean from its first
        // cycle. Not after a shifted cycle (its prefix moved).
        self.prefix_memory = match (clean.as_mut(), shift) {
            (Some(c), 0) => Arc::new(PrefixMemory::new(
                std::mem::take(&mut c.counts),
                total / PAGE_WORDS,
            )),
            _ => Arc::default(),
        };
        // Stale-reference mode: what lies above the lowest possible new
        // top (all of the old image if it all moves), read while it is
        // whole.
        self.obituaries = space.poisoner().map(|_| {
            let img = OldImage {
                start,
                base: (base - start) / WORD,
                marks: meta.marks.words(),
                black_start: old_end,
            };
            let lo = if shift > 0 {
                start
            } else {
                start + total * WORD
            };
            obituaries(&img, lo, top, st.cycle, DEAD_RECORDS)
        });
        let reg_len = round_up(top - start, PAGE_SIZE);

        if strategy.is_concurrent() {
            match self.flip_concurrent(
                host,
                world,
                &mut los,
                meta,
                &mut st,
                strategy,
                end_words,
                old_end,
                total,
                dense,
                reg_len,
                t_start,
                cycle_start,
                pending,
                plan,
                old_dirty.clone(),
                clean.take(),
            ) {
                Ok(()) => {
                    st.madvise_calls = sp.counters.madvise.load(Ordering::Relaxed) - madvise_before;
                    return (st, false);
                }
                Err(m) => {
                    // Registration or the flip failed: finish this cycle
                    // stop-the-world (the same dense prefix; the offsets
                    // again if they stopped at a black block).
                    // The clean pages went to the flip (`clean` is None
                    // now): this rare cycle fixes every prefix page, which
                    // costs it little and assumes nothing (with a black
                    // block, compacted with the rest below, a page the
                    // barrier flagged for a reference into it would not be
                    // clean anyway).
                    meta = m;
                    if old_end != end_words {
                        // The black block is compacted like the rest: walk
                        // it. Its dirty bits are not needed.
                        gc.satb.clear_dirty(start + old_end * WORD, top);
                        let (n, b) = mark_allocated(
                            meta.marks.atomics(),
                            meta.live.atomics(),
                            start,
                            start + old_end * WORD,
                            top,
                        );
                        st.live_objects += n;
                        st.live_bytes = st.live_bytes - (end_words - old_end) * WORD + b;
                        total = prepare(&pool, &mut meta, dense, end_words);
                    }
                    st.strategy = Some(Strategy::StopTheWorld);
                }
            }
        }

        // Compact in place. Sliding only moves data down, so to-space page p
        // reads old words at or above page p only, plus its first object's
        // header, which is saved beforehand. Pages are produced a chunk at a
        // time: every page of the chunk is compacted into a bounce buffer in
        // parallel, then the chunk is copied into place; later chunks read
        // only above it. The heap keeps its pages (no mremap, no page
        // faults); the freed tail is zeroed lazily, when TLABs are handed out.
        let t = Instant::now();
        let cpu0 = gc.cpu.workers_and_caller_now();
        let Metadata {
            marks,
            live,
            offsets,
            pages,
            starts,
        } = &mut meta;
        let marks = marks.words();
        let comp = Compactor {
            fwd: Forwarding {
                live: live.words(),
                offsets,
                dense_words: dense,
                end_words,
            },
            pages,
            space_start: start,
            from_start: start,
            prefix_start: start,
            boundary_header: 0,
            black: Default::default(),
            old: old_dirty.as_deref().map(|dirty| OldPages {
                dirty,
                starts: starts.table(),
            }),
            young_cards: None, // no black block: nothing stays young
            clean: clean.as_ref().map_or(&[], |c| &c.clean),
            dest_shift: shift,
        };
        if let Some(p) = space.poisoner() {
            if shift > 0 {
                // The destination lies above the old top: drop its poison.
                p.unpoison(start + shift + total * WORD);
            } else if base > start {
                // Back down into the old image the last cycle left.
                p.drop_low();
            }
        }
        if let Some(o) = self.obituaries.as_mut() {
            Poisoner::forward(o, |a| comp.forward_ref(a as u64) as usize);
        }
        let npages = comp.page_count();
        let dense_pages = comp.dense_pages();
        let heap_map = &space.heap;
        let bounce = &mut self.bounce;
        bounce.resize(STW_CHUNK_PAGES * PAGE_SIZE, 0);
        gc.pool().install(|| {
            let headers: Vec<u64> = (dense_pages..npages)
                .into_par_iter()
                .map(|p| comp.first_header(p))
                .collect();
            (0..dense_pages)
                .into_par_iter()
                .with_min_len(8)
                .for_each(|p| {
                    comp.update_dense_page(p, marks);
                });
            let mut lo = dense_pages;
            while lo < npages {
                let hi = (lo + STW_CHUNK_PAGES).min(npages);
                let buf = &mut bounce[..(hi - lo) * PAGE_SIZE];
                buf.par_chunks_mut(PAGE_SIZE)
                    .with_min_len(4)
                    .enumerate()
                    .for_each(|(i, dst)| {
                        comp.compact_page_with(lo + i, dst, Some(headers[lo + i - dense_pages]));
                    });
                // SAFETY: the world is stopped and no compaction is running
                // (the parallel loop above has finished), so nothing else
                // references these heap pages; they lie below the old top.
                // (Stress mode: above the old top, `shift` bytes up.)
                let dst =
                    unsafe { heap_map.bytes_mut(shift + lo * PAGE_SIZE, (hi - lo) * PAGE_SIZE) };
                dst.copy_from_slice(buf);
                lo = hi;
            }
        });
        st.compact = t.elapsed();
        st.compaction = st.compact;
        st.compaction_cpu = gc.cpu.workers_and_caller_now().saturating_sub(cpu0);
        st.pages_compacted = npages - dense_pages;
        st.dense_pages = dense_pages;

        // Update roots and large objects; sweep large objects.
        let t = Instant::now();
        let (freed_n, freed_b) = update_roots(
            &**host,
            world,
            &mut los,
            |v| comp.forward_ref(v),
            false,
            st.cycle,
        );
        st.large_objects_freed = freed_n;
        st.update_roots = t.elapsed();

        // Reset the allocator and metadata. Pages up to where the next
        // collection is expected stay resident (dirty: zeroed when handed
        // out); beyond that the freed tail is returned to the system.
        let t = Instant::now();
        let packed = start + shift + total * WORD;
        // With young collections the old region ends on a page (the gap is
        // zero: compaction zeroes the rest of its last page).
        let (new_top, aligned) = top_after(gc, space, packed);
        space.set_top(new_top);
        space.set_base(start + shift);
        self.stress_high = shift > 0;
        let live = st.live_bytes + sp.large.bytes();
        let budget = host.collect_at(live);
        let keep_end = round_up(new_top + budget, HUGE_PAGE_SIZE).min(space.end());
        let old_end = round_up(top, PAGE_SIZE);
        let dirty = space.dirty_limit().max(old_end);
        if space.poisoner().is_some() {
            // Everything above the new top is poisoned (or fresh).
            let obits = self.obituaries.take().unwrap_or_default();
            let low = (shift > 0).then_some(start + shift);
            st.poisoned_pages = poison_freed(space, dirty, low, st.cycle, obits);
            space.set_dirty_limit(round_up(new_top, PAGE_SIZE).min(dirty));
        } else {
            if dirty > keep_end {
                let _ = space
                    .heap
                    .release(keep_end - start, dirty - keep_end, &sp.counters);
            }
            space.set_dirty_limit(dirty.min(keep_end));
        }
        meta.marks.clear_prefix(chunks_for(end_words) + 1);
        meta.live.clear_prefix(chunks_for(end_words) + 1);
        gc.satb.reset_prefix_tables();
        if gc.settings.generational {
            let new_old = aligned.then_some((new_top - start) / WORD);
            let dirty = policy_dirty(&st);
            self.promote(&mut meta.starts, start, plan, new_old, end_words, dirty);
            let old_end = start + new_old.unwrap_or(0) * WORD;
            gc.end_tracking(space, &los, old_end, &mut st);
        }
        self.meta = Some(meta);
        if !st.young {
            // A young cycle leaves the old region as it was (its earlier
            // black blocks hold zero words) and packs only above it.
            self.packed_end = packed;
        }
        st.release = t.elapsed();
        st.after_compaction = st.release;
        st.freed_bytes = (top - base)
            .saturating_sub(new_top - (start + shift))
            .saturating_sub(self.closed_hole)
            + freed_b;
        host.grant_waiting(world, self.cycles, st.young);

        // Verify.
        if gc.settings.verify {
            drop(los);
            st.verify += self.verify_stopped(&**host, world);
        }
        st.madvise_calls = sp.counters.madvise.load(Ordering::Relaxed) - madvise_before;
        // The last pause of a cycle that marked concurrently, or the only
        // one of a cycle that did everything in it.
        let kind = match st.initial_pause > Duration::ZERO {
            true => PauseKind::Final,
            false => PauseKind::StopTheWorld,
        };
        st.end_pause(kind, t_start);
        st.cycle_time = cycle_start.elapsed();
        (st, true)
    }

    /// The concurrent flip. On failure gives the metadata back so the cycle
    /// can finish stop-the-world.
    #[allow(clippy::too_many_arguments)]
    fn flip_concurrent(
        &mut self,
        host: &Arc<dyn Host>,
        world: &mut StoppedWorld<'_>,
        los: &mut BTreeMap<usize, LargeObject>,
        meta: Metadata,
        st: &mut CycleStats,
        strategy: Strategy,
        end_words: usize,
        old_end: usize,
        total: usize,
        dense: usize,
        reg_len: usize,
        t_start: Instant,
        cycle_start: Instant,
        pending: Option<PendingHandler>,
        plan: Plan,
        old_dirty: Option<Box<[u8]>>,
        clean: Option<CleanPrefix>,
    ) -> Result<(), Metadata> {
        let (sp, gc) = (host.spaces(), host.gc());
        let space = &sp.moving;
        let start = space.start();
        let support = gc
            .concurrent()
            .expect("concurrent strategy without userfaultfd support");
        let uffd = match support.uffd() {
            Ok(u) => u,
            Err(e) => {
                warn_once(
                    &WARN_FLIP,
                    &format!("reopening userfaultfd after fork() failed ({e}); compacting stop-the-world"),
                );
                return Err(meta);
            }
        };
        // Acquire everything the rest of the cycle needs now, before the
        // point of no return: a failure here finishes this cycle
        // stop-the-world (saying so once); after the flip the only failure
        // exit is a message and an abort, never a hang.
        let threads = gc.settings.concurrent_threads;
        let prepared = if gc.settings.injection.prepare_fails {
            Err(std::io::Error::other("injected failure"))
        } else {
            self.acquire_buffers(threads)
                .and_then(|()| self.collector_thread())
        };
        let thread = match prepared {
            Ok(d) => d,
            Err(e) => {
                warn_once(
                    &WARN_FLIP,
                    &format!(
                        "cannot prepare concurrent compaction ({e}); compacting stop-the-world"
                    ),
                );
                return Err(meta);
            }
        };
        let t = Instant::now();
        let install = if strategy == Strategy::ConcurrentMove {
            InstallMode::Move
        } else {
            InstallMode::Copy
        };
        // The live arena objects, read now: once the reservation is moved
        // out, their headers are not mapped until their pages come back.
        // The arena's extent (dead objects too) bounds what the from-space
        // holds there.
        let arena = ArenaPages::new(
            los.values()
                .filter(|o| o.in_arena() && o.marked.load(Ordering::Relaxed))
                .map(|o| {
                    // SAFETY: a live large object of this heap, world
                    // stopped, its pages mapped (before the flip).
                    let refs = unsafe { o.obj().header() }.ref_count();
                    (o.obj().addr(), o.footprint(), refs)
                }),
        );
        let arena_used = arena_end(space, los) - space.arena().0;
        let Metadata {
            marks,
            live,
            offsets,
            pages,
            starts,
        } = meta;
        let (live, marks) = (FrozenWordMap::freeze(live), FrozenWordMap::freeze(marks));
        let dense_words = dense;
        // A young cycle keeps its old region, a full one the clean pages at
        // the bottom of its prefix (`clean`).
        // (Only a full cycle has clean pages: `keeps_clean_prefix`.)
        let kept_pages = match &clean {
            Some(c) => {
                let align = match gc.settings.huge_pages {
                    true => crate::mapping::HUGE_PAGE_SIZE / PAGE_SIZE,
                    false => 1,
                };
                c.kept_run(live.words(), marks.words(), align)
            }
            _ if gc.settings.keep_old_region => kept_pages(plan, dense, old_dirty.as_deref()),
            _ => 0,
        };
        // SAFETY: the world is stopped and the space not flipped yet: the
        // prefix's words are mapped at `start`, described by the bitmaps.
        let boundary_header = unsafe {
            crate::compact::boundary_header(
                live.words(),
                marks.words(),
                dense_words,
                old_end,
                start,
            )
        };
        // A black block whose dirty slots are few stays out of the flip:
        // they are rewritten in this pause, and its pages are neither
        // moved out nor back (the barrier listed them).
        let black_fix = (old_end < end_words && gc.settings.pause_black_slots > 0)
            .then(|| gc.satb.dirty_black_pages(gc.settings.pause_black_slots))
            .flatten();
        let shared = Arc::new(CycleShared::new(CycleSetup {
            live,
            marks,
            offsets,
            pages,
            starts: Some(starts),
            old_dirty,
            cards: gc.settings.generational.then(|| gc.cards.clone()),
            end_words: old_end,
            black_end_words: if old_end < end_words { end_words } else { 0 },
            black_resident: black_fix.is_some(),
            dirty: gc.satb.clone(),
            tables: self.tables.take(),
            total_words: total,
            dense_words,
            kept_pages,
            clean: clean.map(|c| c.clean).unwrap_or_default(),
            boundary_header,
            space_start: start,
            from_start: space.from.start(),
            moving_pages: space.capacity() / PAGE_SIZE,
            arena_offset: space.arena_offset(),
            arena,
            arena_used,
            reg_pages: space.reserved() / PAGE_SIZE,
            used_pages: reg_len / PAGE_SIZE,
            uffd: uffd.clone(),
            install,
            min_move_run: gc.settings.min_move_run,
            fault_mode: support.fault_mode,
            injection: gc.settings.injection,
            cycle: st.cycle,
            threads: world.threads_by_tid(),
        }));
        if let Some(o) = self.obituaries.as_mut() {
            let comp = shared.compactor();
            Poisoner::forward(o, |a| comp.forward_ref(a as u64) as usize);
        }
        // Fault service first, so nothing can fault unserved.
        let handler = match (support.fault_mode, &support.slot) {
            (FaultMode::Sigbus, Some(slot)) => {
                slot.publish(&shared);
                None
            }
            // A thread started before the pause if there is one.
            _ => Some(match pending {
                Some(p) => p.start(shared.clone()),
                None => HandlerThread::spawn(shared.clone()),
            }),
        };
        let undo = |shared: Arc<CycleShared>, handler: Option<HandlerThread>| -> Metadata {
            match handler {
                Some(h) => h.stop(),
                None => support.slot.as_ref().expect("sigbus slot").unpublish(),
            }
            let (live, marks, offsets, pages, starts) = Arc::try_unwrap(shared)
                .ok()
                .expect("cycle not shared yet")
                .into_meta();
            Metadata {
                marks: marks.thaw(),
                live: live.thaw(),
                offsets,
                pages,
                starts: starts.expect("the cycle carries the object starts"),
            }
        };
        // Move the pages of the *whole* space out, then register the (now
        // empty) space. Whole: a sub-range would split the heap VMA, the
        // halves would not merge back after unregistering (different
        // anon_vmas) and a later mremap cannot span two VMAs (EFAULT).
        // Order: since Linux 6.13 mremap refuses PMD-level page-table moves
        // for VMAs registered with userfaultfd without EVENT_REMAP, so
        // registering first makes the flip move every PTE one by one (0.9 ms
        // at 256 MiB, ~3 ms at 1 GiB, growing with the heap); moving first
        // keeps it ~0.1 ms. The world is stopped, so nothing can touch the
        // range between the two calls.
        // Two things stay where they are (`CycleShared::flip_ranges`): a
        // young cycle with few dirty old pages leaves the old region
        // (`kept`), and a black block with few dirty slots stays too: only
        // the rest of the reservation moves out. The heap stays one VMA
        // (mremap with DONTUNMAP does not split its source); those pages
        // never fault, and their dirty slots are fixed in place below,
        // before the mutators resume.
        let whole = space.reserved();
        let kept = shared.kept_pages() * PAGE_SIZE;
        let ranges = shared.flip_ranges(whole);
        // Marking in the pause: the registration for write tracking is
        // still there (see `WriteTracker::unregister`).
        st.write_unregister += gc.unregister_tracking();
        // A resident block ends mid-page at the top, where allocation goes
        // on: what follows it on that page may hold bytes of an earlier
        // cycle (below the dirty limit). Zeroed now, before the heap is
        // registered (a missing page is simply faulted in; one that is
        // known clean is not touched).
        if shared.black_resident() {
            let top = space.top();
            space.clean_block(top, round_up(top, PAGE_SIZE));
        }
        // Puts the ranges moved out back (the heap range stays one VMA only
        // if it goes back whole; a split heap makes later flips fail and
        // compact stop-the-world).
        let move_back = |ranges: &[(usize, usize)]| {
            for &(off, len) in ranges {
                sp.counters.mremap.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = space.from.move_pages_back(&space.heap, off, len) {
                    // The live data is in the from-space and the heap range
                    // is empty and unregistered: resuming would read zeros.
                    abort_with(&format!("mremap back into the heap failed: {e}"));
                }
            }
        };
        for (i, &(off, len)) in ranges.iter().enumerate() {
            sp.counters.mremap.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = space.heap.move_pages_to(&space.from, off, len) {
                move_back(&ranges[..i]);
                warn_once(
                    &WARN_FLIP,
                    &format!("mremap of the heap failed ({e}); compacting stop-the-world"),
                );
                return Err(undo(shared, handler));
            }
        }
        // With the kernel's dirty tracking the range stays registered for
        // write protection too (one context per VMA; see `dirty`).
        let mode = match gc.tracker.as_ref().is_some_and(|t| t.is_on()) {
            true => RegisterMode::MISSING | RegisterMode::WP,
            false => RegisterMode::MISSING,
        };
        let every = gc.settings.injection.register_fails_every;
        let registered = match every > 0 && st.cycle % every == 0 {
            true => Err(crate::uffd::UffdError::Os {
                op: "UFFDIO_REGISTER",
                errno: libc::EINVAL,
            }),
            false => uffd.register(start, whole, mode),
        };
        if let Err(e) = registered {
            // Put the pages back and finish this cycle stop-the-world: in
            // one piece if a resident block can be moved out too (the
            // heap stays one VMA), unless the from-space does not hold
            // them as one VMA: then range by range.
            let block_out = shared.resident_block_bytes().filter(|&(off, len)| {
                sp.counters.mremap.fetch_add(1, Ordering::Relaxed);
                space.heap.move_pages_to(&space.from, off, len).is_ok()
            });
            match block_out {
                Some((off, len)) => {
                    sp.counters.mremap.fetch_add(1, Ordering::Relaxed);
                    if space
                        .from
                        .move_pages_back(&space.heap, kept, whole - kept)
                        .is_err()
                    {
                        let mut all = ranges.clone();
                        all.push((off, len));
                        move_back(&all);
                    }
                }
                _ => move_back(&ranges),
            }
            warn_once(
                &WARN_FLIP,
                &format!(
                    "registering the heap with userfaultfd failed ({e}); compacting stop-the-world"
                ),
            );
            return Err(undo(shared, handler));
        }
        // The kept old pages written since the last cycle get their
        // references to moving objects rewritten now (past the last exit
        // that would compact this cycle stop-the-world, which would fix
        // them again).
        let t_kept = Instant::now();
        shared.fix_kept();
        st.kept_pages = shared.kept_pages();
        if let Some(pages) = &black_fix {
            shared.fix_black_in_pause(pages);
        }
        if shared.black_pages() > 0 {
            // Flipped, its pages' fixers clear their slots' bits.
            gc.satb
                .forget_dirty_pages(old_end / PAGE_WORDS, end_words.div_ceil(PAGE_WORDS));
        }
        st.black_resident = shared.black_resident();
        st.kept_fix = t_kept.elapsed();
        // Nothing stale remains in the heap range above the kept pages: the
        // allocation region is zero-filled as it is touched.
        space.set_dirty_limit(start + kept);
        st.flip = t.elapsed();
        let t = Instant::now();
        let comp = shared.compactor();
        let (freed_n, freed_b) =
            update_roots(&**host, world, los, |v| comp.forward_ref(v), true, st.cycle);
        st.large_objects_freed = freed_n;
        st.update_roots = t.elapsed();
        // With young collections the old region ends on a page (the gap is
        // zero: the last page's compactor zeroes it, or the black block's
        // last fixer what follows the block).
        let (packed, aligned) = top_after(gc, space, start + total * WORD);
        if shared.black_pages() > 0 {
            // The black block stays where it is, and so does the top; the
            // room between the compacted data and the block is a hole that
            // allocation fills first (its pages are missing in the
            // to-space, zero-filled as they are touched).
            space.set_top(start + shared.new_top_words() * WORD);
            space.set_hole(packed, start + old_end * WORD);
        } else {
            space.set_top(packed);
        }
        let new_top = space.top();
        host.grant_waiting(world, self.cycles, st.young || shared.black_pages() > 0);
        // Under the collector lock: waiters in `wait_flip_or_idle` see it
        // once the pause ends and they get the lock.
        gc.grants.fetch_add(1, Ordering::AcqRel);
        gc.idle.notify_all();
        st.freed_bytes = ((start + reg_len).saturating_sub(new_top) + space.hole_len())
            .saturating_sub(self.closed_hole)
            + freed_b;
        st.pages_compacted = shared.old_pages() - shared.dense_pages();
        st.dense_pages = shared.dense_pages();
        st.black_pages = shared.black_pages();
        st.fault_mode = Some(support.fault_mode);
        st.end_pause(PauseKind::Final, t_start);
        self.in_flight = true;
        gc.in_flight.store(true, Ordering::Release);
        gc.set_progress(Some((st, Phase::Compacting, cycle_start)));
        // The black block and what follows are not packed (unused TLAB
        // tails are zero words between objects), as in the allocation region.
        if !st.young {
            self.packed_end = start + total * WORD;
        }
        // What becomes old: everything below the new top, except a black
        // block, which stays young (its objects were kept without being
        // marked; the next young cycle marks them). The compactors mark
        // the cards of old pages that point into it (`young_cards`).
        let promote = gc.settings.generational.then(|| {
            if shared.black_pages() > 0 {
                (plan, Some(shared.old_pages() * PAGE_WORDS), old_end)
            } else {
                (plan, aligned.then_some((new_top - start) / WORD), end_words)
            }
        });
        let buffers = std::mem::take(&mut self.buffers);
        let (host2, st2) = (host.clone(), st.clone());
        let flip_end = Instant::now();
        // Pages of the heap may still be missing and registered: mutators
        // touching them would wait forever. The collector thread runs this
        // next: at once, or, when this is the final pause of its own
        // concurrent marking, as soon as that returns.
        run_on(&thread, "compaction", move |cpu_before| {
            drive(
                host2,
                shared,
                st2,
                handler,
                buffers,
                flip_end,
                cycle_start,
                end_words,
                promote,
                cpu_before,
            )
        });
        Ok(())
    }

    /// The heap's collector thread, started on first use (and again in a
    /// forked child, where the parent's does not exist: its sender is
    /// leaked there, not dropped, as the channel's state is the parent's).
    fn collector_thread(&mut self) -> std::io::Result<std::sync::mpsc::Sender<Job>> {
        self.leak_inherited_thread();
        if let Some((_, tx)) = &self.thread {
            return Ok(tx.clone());
        }
        let tx = spawn_collector_thread()?;
        self.thread = Some((std::process::id(), tx.clone()));
        Ok(tx)
    }

    /// In a forked child the collector thread's sender is the parent's:
    /// leaked, not dropped (dropping it would touch the channel's state as
    /// the parent's thread left it at the fork, possibly locked).
    fn leak_inherited_thread(&mut self) {
        if self
            .thread
            .as_ref()
            .is_some_and(|(pid, _)| *pid != std::process::id())
        {
            std::mem::forget(self.thread.take());
        }
    }

    /// Maps the per-thread 2 MiB compaction buffers (kept across cycles).
    fn acquire_buffers(&mut self, threads: usize) -> std::io::Result<()> {
        while self.buffers.len() < threads {
            let m = Mapping::new(
                crate::concurrent::BLOCK_PAGES * PAGE_SIZE,
                HUGE_PAGE_SIZE,
                Prot::ReadWrite,
            )?;
            let _ = m.madvise(0, m.len(), libc::MADV_NOHUGEPAGE);
            self.buffers.push(m);
        }
        Ok(())
    }
}

/// Work for the collector thread: a cycle's concurrent marking, or the
/// rest of a concurrent cycle after its flip (compaction and the end).
type Job = Box<dyn FnOnce() + Send>;

/// Starts a heap's collector thread: it runs the jobs it is sent in order
/// (a cycle's concurrent marking, then the same cycle's compaction, which
/// the marking's final pause sends) and exits when the heap drops the
/// sender. Kept for the heap's life: starting a thread inside the initial
/// pause was 54-83 µs of its 58-90, and one started while a flip's
/// `mremap` runs takes an IPI for each of its TLB flushes (a partial flip
/// took 0.35-0.65 ms instead of 0.1). So this returns once the thread is
/// running; after that it sleeps in `recv` between jobs.
fn spawn_collector_thread() -> std::io::Result<std::sync::mpsc::Sender<Job>> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let (ready_tx, ready) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("movegc-collector".into())
        .spawn(move || {
            let _ = ready_tx.send(());
            while let Ok(job) = rx.recv() {
                job()
            }
        })?;
    // Returns once the thread has started (its start-up maps memory, which
    // would also wait for a flip's `mremap`).
    let _ = ready.recv();
    Ok(tx)
}

/// Sends `f` to the collector thread as a job: it is given the thread's
/// CPU time at its start (to add its own share, `GcCpu::add`), and a panic
/// in it aborts with a message naming `what` (`abort_on_panic`).
fn run_on(
    thread: &std::sync::mpsc::Sender<Job>,
    what: &'static str,
    f: impl FnOnce(Duration) + Send + 'static,
) {
    let job: Job = Box::new(move || {
        let cpu_before = crate::cputime::thread_now();
        abort_on_panic(what, || f(cpu_before));
    });
    if thread.send(job).is_err() {
        abort_with("the collector thread is gone");
    }
}

/// Pause start, cycle start and the `madvise` count at the cycle start.
#[derive(Clone, Copy)]
struct CycleTimes {
    pause_start: Instant,
    cycle_start: Instant,
    madvise_before: usize,
}

/// Concurrent marking, on the collector thread: trace from the root snapshot
/// while mutators run (draining what the SATB barrier logs), then stop the
/// world for the final pause: barrier off, drain the log, mark everything
/// allocated since the snapshot
/// by walking it, and go on exactly as a stop-the-world-marked cycle does
/// (prepare, flip; the same thread then runs the compaction, [`drive`]).
#[allow(clippy::too_many_arguments)]
fn concurrent_mark(
    host: Arc<dyn Host>,
    meta: Metadata,
    tables: Option<PageTables>,
    roots: Vec<usize>,
    mark_top: usize,
    mut st: CycleStats,
    strategy: Strategy,
    cycle_start: Instant,
    madvise_before: usize,
    plan: Plan,
    cpu_before: Duration,
    prefix_memory: Arc<PrefixMemory>,
) {
    let (sp, gc) = (host.spaces(), host.gc());
    let space = &sp.moving;
    let start = space.start();
    // Concurrent marking uses the concurrent share of the workers (one
    // thread marks on the collector thread itself); the final pause uses them all.
    let (threads, pause_threads) = (gc.settings.concurrent_threads, gc.settings.gc_threads);
    let pool = gc.pool();
    let old_end = start + old_words(plan) * WORD;
    if gc.settings.injection.delay_marking {
        std::thread::sleep(Duration::from_millis(20));
    }
    // A young cycle's remembered set, read while mutators run: the old
    // pages written since the last cycle (any value read is fine: one
    // written after the snapshot is either reachable from it, hence
    // logged by the barrier if cut, or allocated since, hence black).
    let mut roots = roots;
    if let Plan::Young(w) = plan {
        let los = sp.large.objects.lock().unwrap_or_else(|e| e.into_inner());
        gc.scan_written(space, &los, old_end, &mut st);
        let t = Instant::now();
        let (rs, n) = remembered_set(&gc.cards, &meta.starts, start, w, &los);
        drop(los);
        roots.extend(rs);
        st.remembered_pages = n;
        st.remembered_scan = t.elapsed();
    }
    // The scan is done and the barrier on: the flip will not need the
    // registration, which would slow its mremap down.
    st.write_unregister = gc.unregister_tracking();
    // Values that are this heap's objects below the snapshot top, or its
    // large objects (the barrier broadcasts stores into large objects).
    let own = |v: &usize, los: &dyn Fn(usize) -> bool| {
        (start..mark_top).contains(v) || (!(start..space.end()).contains(v) && los(*v))
    };
    let los_concurrent = |a: usize| sp.large.mark_locked(a);
    let los_has = |a: usize| {
        sp.large
            .objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&a)
    };
    let t = Instant::now();
    let mut total = MarkResult::default();
    {
        let ctx = MarkContext {
            space_start: start,
            old_end,
            space_top: mark_top,
            black_end: space.end(),
            marks: meta.marks.atomics(),
            live: meta.live.atomics(),
            los: &los_concurrent,
            watch: gc.satb.prefix_watch(),
        };
        total += mark(&ctx, &roots, Some(&pool), threads);
        // Catch up with the barrier a few times while mutators run, so the
        // final pause has little left.
        for _ in 0..8 {
            let mut logged = gc.satb.take_all();
            logged.retain(|v| own(v, &los_has));
            if logged.is_empty() {
                break;
            }
            total += mark(&ctx, &logged, Some(&pool), threads);
        }
    }
    st.mark = t.elapsed();

    // Fault in the side tables the final pause writes (the first cycle, or
    // a heap that grew since the last one): a page fault costs 2-9 µs on a
    // VM and a huge page far more, and they belong outside the pause.
    let mut meta = meta;
    {
        let words = (space.top() - start) / WORD;
        let chunks = (chunks_for(words) + 1).min(meta.offsets.len());
        meta.offsets[..chunks].fill(0);
        let pages = words.div_ceil(PAGE_WORDS);
        meta.pages.resize(pages, PageStart::default());
        meta.pages.clear();
    }

    // Prepare speculatively, while mutators run: the dense prefix, offsets
    // and page starts of the old region below the (page-aligned) snapshot
    // top. If the final pause marks nothing more there, they are exact and
    // the pause skips its prepare; otherwise it computes them again.
    let prepare_outside = |meta: &mut Metadata, st: &mut CycleStats| {
        let t = Instant::now();
        let old_end = (mark_top - start) / WORD;
        let dense = dense_prefix(gc, plan, meta.live.words(), old_end);
        let total = prepare(&pool, meta, dense, old_end);
        let clean = clean_prefix(gc, space, plan, meta.live.words(), dense, &prefix_memory);
        st.prepare_outside += t.elapsed();
        Prepared {
            old_end,
            dense,
            total,
            clean,
        }
    };
    let mut speculative = (strategy.is_concurrent() && mark_top % PAGE_SIZE == 0)
        .then(|| prepare_outside(&mut meta, &mut st));

    // The flip's page tables, sized for the heap as it is now (the used
    // space and every large object's pages, with room to grow by a
    // quarter before the pause): allocating them in the final pause costs
    // it ~1 ms per GiB (the pause still does if the heap outgrew them).
    // Stop-the-world cycles need none.
    let need = (space.top() - start + sp.large.bytes()) / PAGE_SIZE;
    let tables = match tables {
        Some(t) if t.0.len() >= need + need / 8 => Some(t),
        _ if strategy.is_concurrent() => {
            Some(crate::concurrent::page_tables(need + need / 4 + 1024))
        }
        t => t,
    };

    // In handler-thread mode, the fault thread starts now, not in the pause.
    let pending = match gc.concurrent() {
        Some(c) if c.fault_mode == FaultMode::HandlerThread => PendingHandler::spawn(),
        _ => None,
    };

    // The final pause. If its remark marks something new (the barrier's
    // log still held an unmarked object), the forwarding prepared while
    // mutators ran no longer holds, and preparing it again here would
    // cost the pause milliseconds per GiB. Instead that pause ends once
    // marking is complete (a remark pause), with the barrier, black
    // allocation and the black block as they were; the forwarding is
    // prepared again while mutators run, and the final pause follows.
    // Marking is complete then: every object a mutator can reach was
    // reachable at the snapshot (marked now) or allocated since (black),
    // so that pause marks nothing new (should it, it prepares in the
    // pause as before). ART's collector, too, prepares its compaction
    // between the pause that finishes marking and the one that flips.
    let mut tables = Some(tables);
    let (mut world, mut col, los, top, keep_black, remarked, t, t_pause) = loop {
        let mut world = gc.coord.stop_the_world_external();
        let t_pause = Instant::now();
        st.time_to_safepoint += world.time_to_safepoint();
        st.pauses.push(Pause::begin(PauseKind::Final, &world));
        let mut col = gc.collector.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tables) = tables.take() {
            col.tables = tables;
        }
        let t = Instant::now();
        gc.satb.set_marking(false);
        let black_start = gc.satb.black_start();
        let keep_black = black_start == mark_top;
        gc.satb.set_black_start(usize::MAX);
        sp.large.set_allocate_black(false);
        let mut rest = drain_satb(&*host, &mut world);
        // Retire TLABs so the walk below sees every object allocated since the
        // snapshot. The roots themselves need no second look: everything they
        // can reach now was reachable at the snapshot (traced, or logged when a
        // store cut its path) or allocated since (black by position). Marking
        // them again would also hide a barrier hole from the tests.
        drop(gather_roots(&*host, &mut world, true));
        let los = sp.large.objects.lock().unwrap_or_else(|e| e.into_inner());
        let top = space.top();
        let remarked;
        {
            rest.retain(|v| own(v, &|a| los.contains_key(&a)) || (mark_top..top).contains(v));
            let lm = los_marker(&los);
            let ctx = MarkContext {
                space_start: start,
                old_end,
                space_top: mark_top,
                black_end: space.end(),
                marks: meta.marks.atomics(),
                live: meta.live.atomics(),
                los: &lm,
                watch: gc.satb.prefix_watch(),
            };
            let r = mark(&ctx, &rest, Some(&pool), pause_threads);
            remarked = r.objects;
            total += r;
        }
        let again = (remarked > 0 || gc.settings.injection.remark_pause)
            && st.remark_pauses == 0
            && speculative.is_some()
            && space.poisoner().is_none()
            && !gc.settings.injection.discard_speculative_prepare;
        if !again {
            break (world, col, los, top, keep_black, remarked, t, t_pause);
        }
        drop(los); // set_allocate_black takes its lock
        gc.satb.set_black_start(black_start);
        sp.large.set_allocate_black(true);
        gc.satb.set_marking(true);
        st.remark += t.elapsed();
        st.end_pause(PauseKind::Remark, t_pause);
        st.remark_pauses += 1;
        gc.set_progress(Some((&st, Phase::Preparing, cycle_start)));
        drop((col, world));
        if gc.settings.injection.remark_pause {
            // Widen the window for the tests' mutators.
            std::thread::sleep(Duration::from_millis(2));
        }
        speculative = Some(prepare_outside(&mut meta, &mut st));
    };
    // What was allocated while marking, [mark_top, top), is live by
    // position. If it starts on a page boundary it is the black block,
    // which stays where it is: after the flip only its dirty slots are
    // rewritten (`concurrent::prefix`), nothing is walked here, and its
    // bytes count whole. Otherwise it is walked now and compacted like the
    // rest, and its dirty bits are not needed. So too when the initial
    // pause found the heap's extent past half the space (`keep_black`),
    // and in the stale-reference mode, which poisons the memory a cycle freed right
    // after it: a hole below the block would be allocated into instead.
    let black = (strategy.is_concurrent()
        && keep_black
        && mark_top % PAGE_SIZE == 0
        && mark_top < top
        && space.poisoner().is_none())
    .then_some(mark_top);
    if black.is_some() {
        total.bytes += top - mark_top;
    } else {
        gc.satb.clear_dirty(mark_top, top);
        let (n, b) = mark_allocated(
            meta.marks.atomics(),
            meta.live.atomics(),
            start,
            mark_top,
            top,
        );
        total.objects += n;
        total.bytes += b;
    }
    st.remark += t.elapsed();
    st.live_bytes = total.bytes + st.old_bytes;
    st.live_objects = total.objects;
    // Traced ones and those born marked during marking.
    st.large_objects_live = los
        .values()
        .filter(|o| o.marked.load(Ordering::Relaxed))
        .count();
    let times = CycleTimes {
        pause_start: t_pause,
        cycle_start,
        madvise_before,
    };
    let (st, finished) = col.finish(
        &host,
        &mut world,
        los,
        meta,
        st,
        strategy,
        top,
        black,
        speculative.filter(|_| remarked == 0 && !gc.settings.injection.discard_speculative_prepare),
        times,
        pending,
        plan,
    );
    // This job's CPU time, added before the cycle can be seen over (a
    // thread that sees it over may fork at once: the child would inherit
    // the CPU account's lock held).
    gc.cpu
        .add(crate::cputime::thread_now().saturating_sub(cpu_before));
    if finished {
        // The flip failed and the cycle compacted stop-the-world. Restart
        // the world before saying the cycle is over: a thread that sees it
        // over may fork at once, and must not fork a stopped world.
        drop(world);
        col.in_flight = false;
        gc.in_flight.store(false, Ordering::Release);
        gc.set_progress(None);
        host.after_cycle(&st);
        drop(col);
        gc.idle.notify_all();
    }
}

/// The rest of a concurrent cycle, on the collector thread: sweep, unregister,
/// drain, release, hand the metadata back.
#[allow(clippy::too_many_arguments)]
fn drive(
    host: Arc<dyn Host>,
    shared: Arc<CycleShared>,
    mut st: CycleStats,
    handler: Option<HandlerThread>,
    buffers: Vec<Mapping>,
    flip_end: Instant,
    t_start: Instant,
    end_words: usize,
    promote: Option<(Plan, Option<usize>, usize)>,
    cpu_before: Duration,
) {
    let (sp, gc) = (host.spaces(), host.gc());
    let madvise_before = sp.counters.madvise.load(Ordering::Relaxed);
    let cpu0 = gc.cpu.workers_and_caller_now();
    let next = AtomicIsize::new(shared.nblocks() as isize - 1);
    let next_arena = AtomicUsize::new(0);
    let (fix_prefix, install_prefix) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let times: Vec<Mutex<Duration>> = buffers.iter().map(|_| Mutex::new(Duration::ZERO)).collect();
    // The dense prefix first (the long-lived data mutators read most), in
    // two phases (see concurrent/prefix.rs): fix every page in the
    // from-space, then move them back.
    // The black block before it: the pages mutators wrote last, most of
    // them put back untouched in long MOVEs (see concurrent/prefix.rs).
    let black = AtomicUsize::new(0);
    if shared.in_place_pages() + shared.black_flipped_pages() > 0 {
        gc.pool().scope(|s| {
            for _ in &buffers {
                let (shared, fix_prefix, black) = (&shared, &fix_prefix, &black);
                s.spawn(move |_| {
                    shared.install_black(black);
                    shared.fix_prefix(fix_prefix);
                });
            }
        });
        shared.prefix_quiesce();
    }
    gc.pool().scope(|s| {
        for (i, buf) in buffers.iter().enumerate() {
            let (shared, next, next_arena, times) = (&shared, &next, &next_arena, &times);
            let install_prefix = &install_prefix;
            s.spawn(move |_| {
                shared.install_prefix(install_prefix);
                // The arena next: its pages are few but each is a fault
                // for any mutator that reads a large array.
                shared.sweep_arena(next_arena);
                shared.sweep(next, buf);
                *times[i].lock().unwrap_or_else(|e| e.into_inner()) = flip_end.elapsed();
            });
        }
    });
    // Every to-space page is mapped now.
    st.compaction = flip_end.elapsed();
    let compaction_cpu = gc.cpu.workers_and_caller_now().saturating_sub(cpu0);
    // What the recycler has left goes to the allocation region: the room
    // the mutators allocate into until the next cycle is due (by the
    // pacer's goal for this live size), at most up to the old top.
    // Not after `collect()` (an idle program, or a zygote about to fork,
    // keeps no zeroed pages resident), nor in the stale-reference mode
    // (which poisons the free space right after).
    let t = crate::cputime::thread_now();
    if gc.settings.prefill_allocation
        && st.trigger != Some(Trigger::Explicit)
        && sp.moving.poisoner().is_none()
    {
        let large = sp.large.bytes();
        let goal = host.collect_at(st.live_bytes + large).saturating_sub(large);
        // What mutators allocate before the next cycle is due: the hole
        // first (not all of it, if it is larger: the untouched rest costs
        // no memory), then above the top.
        let mut left = goal.saturating_sub(sp.moving.used());
        let base = sp.moving.start();
        let (hole, hole_end) = sp.moving.hole_range();
        if hole < hole_end {
            let take = (hole_end - hole).min(left);
            left -= take;
            let (lo, hi) = (
                (hole - base).div_ceil(PAGE_SIZE),
                (hole + take - base) / PAGE_SIZE,
            );
            shared.prefill_allocation(lo, hi);
        }
        let top = sp.moving.top() - base;
        let end = (shared.used_len() / PAGE_SIZE).min((top + left).div_ceil(PAGE_SIZE));
        shared.prefill_allocation(top.div_ceil(PAGE_SIZE), end);
    }
    st.prefill_cpu = crate::cputime::thread_now().saturating_sub(t);
    st.compaction_per_thread = times
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    let (rs, rl) = shared.registered();
    if rl > 0 {
        let unregistered = if gc.settings.injection.unregister_fails {
            Err(crate::uffd::UffdError::Os {
                op: "UFFDIO_UNREGISTER",
                errno: libc::EINVAL,
            })
        } else {
            shared.uffd().unregister(rs, rl)
        };
        if let Err(e) = unregistered {
            // The range would stay registered: its next fault would find no
            // cycle to serve it and retry forever.
            abort_with(&format!(
                "unregistering the heap from userfaultfd failed: {e}"
            ));
        }
        // Unregistering wakes threads sleeping on the range, but only those
        // whose wait the kernel finds at that instant; an explicit wake of
        // the whole range (valid after unregistering: it acts on the
        // descriptor's wait queues) guarantees nobody is left asleep.
        let _ = shared.uffd().wake(rs, rl);
    }
    if let Some((_, new_old, _)) = promote {
        let los = sp.large.objects.lock().unwrap_or_else(|e| e.into_inner());
        let old_end = sp.moving.start() + new_old.unwrap_or(0) * WORD;
        gc.end_tracking(&sp.moving, &los, old_end, &mut st);
    }
    // The collector's CPU spent outside its own threads' accounting: the
    // handler thread's, or in SIGBUS mode the faults mutators resolved
    // (their wall time: an upper bound, it includes waits on pages
    // another thread was producing).
    let fault_cpu = match handler {
        Some(h) => {
            h.stop();
            Duration::from_nanos(shared.counters.handler_cpu_ns.load(Ordering::Relaxed))
        }
        None => {
            gc.concurrent()
                .and_then(|c| c.slot.as_ref())
                .expect("sigbus slot")
                .unpublish();
            shared.stalls.total()
        }
    };
    gc.cpu.add(fault_cpu);
    // Zero-fills are the allocation's page supply (a stop-the-world cycle
    // leaves its pages resident and zeroes them when TLABs are handed
    // out), not compaction.
    let zero_fills =
        Duration::from_nanos(shared.counters.zero_fill_stall_ns.load(Ordering::Relaxed));
    st.compaction_cpu = compaction_cpu + fault_cpu.saturating_sub(zero_fills);
    // Release what is left of the from-space (only the old used range and
    // the arena's used part ever held pages).
    let used = shared.used_len();
    let (arena_off, arena_used) = shared.arena_from_range();
    let from = &sp.moving.from;
    let install = if st.strategy == Some(Strategy::ConcurrentMove) {
        InstallMode::Move
    } else {
        InstallMode::Copy
    };
    match install {
        InstallMode::Move => {
            st.pages_released = from.resident_pages(0, used).unwrap_or(0)
                + from.resident_pages(arena_off, arena_used).unwrap_or(0);
            from.remap_fresh(0, rl, Prot::None)
                .unwrap_or_else(|e| panic!("releasing the from-space failed: {e}"));
            sp.counters.mmap.fetch_add(1, Ordering::Relaxed);
        }
        InstallMode::Copy => {
            // The pre-MOVE baseline frees the from-space with madvise in
            // 8 MiB chunks, as ART does.
            let chunk = 8 << 20;
            for (start, end) in [(0, used), (arena_off, arena_off + arena_used)] {
                let mut off = start;
                while off < end {
                    let len = chunk.min(end - off);
                    let _ = from.release(off, len, &sp.counters);
                    off += len;
                }
            }
        }
    }
    let c = &shared.counters;
    st.pages_moved = c.pages_moved.load(Ordering::Relaxed);
    st.pages_copied = c.pages_copied.load(Ordering::Relaxed);
    st.pages_zero_filled = c.pages_zero_filled.load(Ordering::Relaxed);
    st.pages_zero_recycled = c.pages_zero_recycled.load(Ordering::Relaxed);
    st.pages_prefilled = c.pages_prefilled.load(Ordering::Relaxed);
    st.move_ioctls = c.move_ioctls.load(Ordering::Relaxed);
    st.copy_ioctls = c.copy_ioctls.load(Ordering::Relaxed);
    st.ebusy_fallbacks = c.ebusy_fallbacks.load(Ordering::Relaxed);
    st.short_run_copies = c.short_run_copies.load(Ordering::Relaxed);
    st.eagain_retries = c.eagain_retries.load(Ordering::Relaxed);
    st.eexist = c.eexist.load(Ordering::Relaxed);
    st.recycle_shortfall = c.recycle_shortfall.load(Ordering::Relaxed);
    st.arena_pages = c.arena_pages.load(Ordering::Relaxed);
    st.prefix_pages = c.prefix_pages.load(Ordering::Relaxed);
    st.prefix_unread = c.prefix_unread.load(Ordering::Relaxed);
    st.black_fixed = c.black_pages.load(Ordering::Relaxed);
    st.black_dirty_pages = c.black_dirty_pages.load(Ordering::Relaxed);
    st.black_slots = c.black_slots.load(Ordering::Relaxed);
    st.fault_waits = c.faults_waited.load(Ordering::Relaxed);
    st.faults = c.faults_resolved.load(Ordering::Relaxed) + st.fault_waits;
    st.fault_stall_us = Some(crate::stats::LatencyHistogram(shared.stalls.to_hdr()));
    st.fault_threads = shared.fault_threads();
    st.faults_unattributed = c.faults_unattributed.load(Ordering::Relaxed);
    st.madvise_calls += sp.counters.madvise.load(Ordering::Relaxed) - madvise_before;
    // Hand the metadata back for the next cycle.
    let mut shared = shared;
    let shared = loop {
        match Arc::try_unwrap(shared) {
            Ok(s) => break s,
            Err(s) => {
                shared = s;
                std::thread::yield_now();
            }
        }
    };
    let old_top = sp.moving.start() + shared.used_len();
    let ((live, marks, offsets, pages, starts), tables) = shared.into_parts();
    let mut meta = Metadata {
        marks: marks.thaw(),
        live: live.thaw(),
        offsets,
        pages,
        starts: starts.expect("the cycle carries the object starts"),
    };
    meta.marks.clear_prefix(chunks_for(end_words) + 1);
    meta.live.clear_prefix(chunks_for(end_words) + 1);
    gc.satb.reset_prefix_tables();
    st.cycle_time = t_start.elapsed();
    st.after_compaction = flip_end.elapsed().saturating_sub(st.compaction);
    // This job's CPU time, before the cycle is over (a thread that sees it
    // over may fork at once, and `after_cycle` samples the totals). The
    // prefill's zeroing is allocation work (a fault would have done it).
    gc.cpu.add(
        crate::cputime::thread_now()
            .saturating_sub(cpu_before)
            .saturating_sub(st.prefill_cpu),
    );
    {
        let mut col = gc.collector.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(obits) = col.obituaries.take() {
            st.poisoned_pages = poison_freed(&sp.moving, old_top, None, st.cycle, obits);
        }
        if let Some((plan, new_old, examined)) = promote {
            // Every page is mapped: record where the promoted objects'
            // pages begin, reading the to-space (headers only: mutators
            // never write them).
            let start = sp.moving.start();
            col.promote(
                &mut meta.starts,
                start,
                plan,
                new_old,
                examined,
                policy_dirty(&st),
            );
        }
        col.meta = Some(meta);
        col.buffers = buffers;
        col.tables = Some(tables);
        col.in_flight = false;
        col.unverified = true;
        gc.in_flight.store(false, Ordering::Release);
        gc.set_progress(None);
        host.after_cycle(&st);
    }
    gc.idle.notify_all();
}

/// Stale-reference mode, after a cycle: poisons the free space above the
/// top up to `old_top` and beyond (see `poison`); the pages poisoned, or 0
/// after saying once why it failed (the heap then runs on, unpoisoned).
fn poison_freed(
    space: &MovingSpace,
    old_top: usize,
    low: Option<usize>,
    cycle: u64,
    obits: Vec<Obituary>,
) -> usize {
    static WARN_POISON_FAILED: AtomicBool = AtomicBool::new(false);
    let Some(p) = space.poisoner() else {
        return 0;
    };
    match p.after_cycle(|| space.top(), old_top, low, cycle, obits) {
        Ok(n) => n,
        Err(e) => {
            warn_once(
                &WARN_POISON_FAILED,
                &format!(
                    "poisoning freed memory failed ({e}); this cycle's free space is not poisoned"
                ),
            );
            0
        }
    }
}

/// Everything the SATB barrier logged: the mutators' buffers and the
/// heap's queue (world stopped, barrier off).
fn drain_satb(host: &dyn Host, world: &mut StoppedWorld<'_>) -> Vec<usize> {
    let mut v = host.gc().satb.take_all();
    world.for_each_mutator(|m| v.extend(m.satb.take()));
    v
}

/// Root values of all mutators and the persistent table; retires TLABs if
/// asked (at the start of a cycle, and before the walk of the final pause).
/// Retiring a TLAB also revokes a TLAB granted to a waiting mutator that
/// has not used it yet: this cycle grants again (`Host::grant_waiting`).
fn gather_roots(host: &dyn Host, world: &mut StoppedWorld<'_>, retire_tlabs: bool) -> Vec<usize> {
    let mut roots: Vec<usize> = Vec::new();
    world.for_each_mutator(|m| {
        if retire_tlabs {
            m.tlab.reset();
            if let Some(w) = m.want.as_mut().filter(|w| !w.large) {
                w.answer = None;
            }
        }
        roots.extend(m.roots.iter().flatten().map(|r| r.addr()));
    });
    host.persistent_roots(&mut |p| roots.extend(p.iter().flatten().map(|r| r.addr())));
    roots
}

/// Rewrites every root and the references of live large objects through
/// `fwd`, and frees dead large objects. With `arena_after_flip` the arena's
/// objects are left alone (a concurrent cycle rewrites them page by page
/// after the flip: `concurrent::arena`; their pages are not even mapped
/// now) and freed arena pages need no release (they are missing);
/// otherwise every large object is rewritten here, big arrays in slices on
/// the pool, and freed arena pages are released (in the stale-reference
/// mode freed objects are buried instead: `Poisoner::bury`, for `cycle`).
/// Returns (objects, bytes) freed.
fn update_roots(
    host: &dyn Host,
    world: &mut StoppedWorld<'_>,
    los: &mut BTreeMap<usize, LargeObject>,
    fwd: impl Fn(u64) -> u64 + Sync,
    arena_after_flip: bool,
    cycle: u64,
) -> (usize, usize) {
    let fix = |r: &mut Option<ObjRef>| {
        if let Some(o) = *r {
            *r = ObjRef::from_slot(fwd(o.addr() as u64));
        }
    };
    world.for_each_mutator(|m| m.roots.iter_mut().for_each(fix));
    host.persistent_roots(&mut |p| p.iter_mut().for_each(fix));
    // Work items: (first slot, slots) of at most SLICE_SLOTS references.
    const SLICE_SLOTS: usize = 4096;
    let mut items = Vec::new();
    for lo in los.values() {
        if !lo.marked.load(Ordering::Relaxed) || (arena_after_flip && lo.in_arena()) {
            continue;
        }
        // SAFETY: a live large object of this heap, world stopped, and (not
        // in the arena after a flip) its pages are mapped.
        let refs = unsafe { lo.obj().header() }.ref_count();
        let first = lo.obj().addr() + WORD;
        items.extend(
            (0..refs)
                .step_by(SLICE_SLOTS)
                .map(|i| (first + i * WORD, SLICE_SLOTS.min(refs - i))),
        );
    }
    let fix_slice = |&(first, n): &(usize, usize)| {
        for slot in (first..first + n * WORD).step_by(WORD) {
            let v = load_word(slot);
            if v != 0 {
                store_word(slot, fwd(v));
            }
        }
    };
    if items.len() > 1 {
        host.gc()
            .pool()
            .install(|| items.par_iter().for_each(fix_slice));
    } else {
        items.iter().for_each(fix_slice);
    }
    let sp = host.spaces();
    let arena_off = sp.moving.arena_offset();
    // Stale-reference mode: freed large objects stay poisoned. A header
    // is read where it is mapped (not an arena object after a flip).
    let mut bury = sp.moving.poisoner().map(|p| {
        move |o: LargeObject| {
            let readable = !(arena_after_flip && o.in_arena());
            let header = readable.then(|| load_word(o.obj().addr()));
            let (addr, len, own) = o.into_parts();
            p.bury(addr, len, header, cycle, own);
        }
    });
    sp.large.sweep(
        los,
        &mut |off, len| {
            if !arena_after_flip {
                let _ = sp.moving.heap.release(arena_off + off, len, &sp.counters);
            }
        },
        bury.as_mut().map(|b| b as &mut dyn FnMut(LargeObject)),
    )
}
