//! Stopping the world: which mutators are running, how a collection waits
//! for them, and how mutator-private state (TLAB, root stack) is handed to
//! the collector while its owner is stopped.
//!
//! Every attached mutator is in one of three states:
//!
//! ```text
//!            attach                       poll sees `requested`
//!   (none) ---------> Running  ---------------------------------> Parked
//!                     |    ^  <--------- collection finished ------'
//!      blocking(|| ..)|    | leaving the blocking region
//!                     v    |  (waits while a collection runs)
//!                     Blocked
//! ```
//!
//! The coordinator counts `running` mutators. A collection sets `active`
//! and `requested`, takes itself out of the running count and waits until
//! the count is zero: every other mutator is then parked at a safepoint,
//! blocked in foreign code, or detached. None of them can touch the heap or
//! its own [`MutatorState`] until `active` is cleared, so the collector may
//! read and rewrite all root stacks and reset all TLABs. Detaching (also
//! during a panic's unwinding) leaves the running count, so a dead thread
//! never holds up the collector.
//!
//! Cost on the mutator side: polling is one relaxed load of `requested`
//! (a plain `mov` on x86-64); everything else happens under the
//! coordinator's mutex only on state changes.

use std::cell::{RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::object::ObjRef;
use crate::satb::{SatbBuffer, SatbLog};
use crate::space::Tlab;

/// A mutator's private state, handed to the collector while it is stopped.
#[derive(Debug, Default)]
pub struct MutatorState {
    /// The thread's allocation buffer.
    pub tlab: Tlab,
    /// The thread's root slots (the embedding API's local handles).
    pub roots: Vec<Option<ObjRef>>,
    /// References this thread overwrote while its heap marks (`satb`).
    pub(crate) satb: SatbBuffer,
    /// An allocation this thread is waiting for a collection to make room
    /// for (see `heap.rs`, "No false out-of-memory").
    pub(crate) want: Option<Want>,
}

/// An allocation a mutator waits for, and the collector's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    /// Bytes wanted.
    pub size: usize,
    /// A large object (a reservation of capacity, not a TLAB).
    pub large: bool,
    /// Cycles started when the request was made: only a cycle numbered
    /// above this began after it.
    pub since: u64,
    /// `(cycle, granted)` once a cycle's grant stage has looked at it.
    pub answer: Option<(u64, bool)>,
}

/// Where a mutator is (for the diagnostics of a late safepoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Status {
    Running = 0,
    Parked = 1,
    Blocked = 2,
    Collecting = 3,
}

/// The part of a mutator the collector can reach.
#[derive(Debug)]
pub struct MutatorShared {
    state: UnsafeCell<MutatorState>,
    /// A `Status`; written under the coordinator's lock.
    status: AtomicU8,
    /// Set once the mutator has left the running set for good.
    detached: AtomicBool,
    /// The thread's name and id, for diagnostics.
    thread: String,
    /// The thread's name alone (`unnamed` if it has none).
    name: String,
    /// The thread's kernel id (in the process that attached it).
    tid: i32,
    /// The process that attached it.
    pid: u32,
    /// What this thread waited for, and made others wait for.
    pub(crate) counters: ThreadCounters,
}

/// Per-mutator counters: written by the owner thread (allocation stalls)
/// or under the coordinator's lock (safepoint delays), read by
/// `HeapStats` snapshots at any time.
#[derive(Debug, Default)]
pub(crate) struct ThreadCounters {
    /// Allocations that waited for a collection to make room.
    pub alloc_stalls: AtomicU64,
    /// Their total wait, nanoseconds.
    pub alloc_stall_ns: AtomicU64,
    /// The longest one, nanoseconds.
    pub alloc_stall_max_ns: AtomicU64,
    /// Stops of the world this thread was the last to reach.
    pub last_to_safepoint: AtomicU64,
    /// The time to safepoint of those stops, nanoseconds (the time the
    /// stopping thread, and every thread already stopped, waited).
    pub held_up_ns: AtomicU64,
    /// TLAB refills that allocation pacing delayed.
    pub pacing_delays: AtomicU64,
    /// Their summed delay, nanoseconds.
    pub pacing_delay_ns: AtomicU64,
    /// Faults this thread took on pages a concurrent cycle had not
    /// compacted yet, and their stalls.
    pub faults: FaultCounters,
}

/// Stall buckets of a thread's faults: bucket `b` counts stalls under
/// `2^(b+1)` µs (bucket 0: under 2 µs), the last one everything longer.
pub const FAULT_BUCKETS: usize = 24;

/// How many of a thread's longest faults are kept.
pub const WORST_FAULTS: usize = 4;

/// A thread's faults, written from the fault path: by the faulting thread
/// itself inside its SIGBUS handler, or by the fault-handler thread (one
/// writer per heap at a time either way). Atomics only: async-signal-safe,
/// no allocation.
#[derive(Debug, Default)]
pub(crate) struct FaultCounters {
    count: AtomicU64,
    stall_ns: AtomicU64,
    max_ns: AtomicU64,
    buckets: [AtomicU64; FAULT_BUCKETS],
    /// The longest faults: (page address, stall ns, cycle).
    worst: [(AtomicUsize, AtomicU64, AtomicU64); WORST_FAULTS],
}

impl FaultCounters {
    /// Records a fault on the page at `page` that stalled the thread for
    /// `d` during `cycle`. Async-signal-safe.
    #[inline]
    pub(crate) fn record(&self, page: usize, d: Duration, cycle: u64) {
        let ns = d.as_nanos() as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.stall_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
        let us = ns / 1000;
        let b = if us < 2 {
            0
        } else {
            (63 - us.leading_zeros()) as usize
        };
        self.buckets[b.min(FAULT_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        // Replace the shortest kept fault if this one is longer (one writer
        // at a time: no race between the load and the stores).
        let (i, shortest) = self
            .worst
            .iter()
            .enumerate()
            .map(|(i, w)| (i, w.1.load(Ordering::Relaxed)))
            .min_by_key(|&(_, ns)| ns)
            .unwrap_or((0, u64::MAX));
        if ns > shortest {
            let w = &self.worst[i];
            w.0.store(page, Ordering::Relaxed);
            w.1.store(ns, Ordering::Relaxed);
            w.2.store(cycle, Ordering::Relaxed);
        }
    }

    /// Faults so far and their summed stall, nanoseconds.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.count.load(Ordering::Relaxed),
            self.stall_ns.load(Ordering::Relaxed),
        )
    }

    /// A snapshot.
    fn snapshot(&self) -> ThreadFaults {
        let mut worst: Vec<SlowFault> = self
            .worst
            .iter()
            .filter_map(|w| {
                let ns = w.1.load(Ordering::Relaxed);
                (ns > 0).then(|| SlowFault {
                    page: w.0.load(Ordering::Relaxed),
                    stall: Duration::from_nanos(ns),
                    cycle: w.2.load(Ordering::Relaxed),
                })
            })
            .collect();
        worst.sort_by_key(|f| std::cmp::Reverse(f.stall));
        ThreadFaults {
            count: self.count.load(Ordering::Relaxed),
            stall_total: Duration::from_nanos(self.stall_ns.load(Ordering::Relaxed)),
            stall_max: Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)),
            buckets: std::array::from_fn(|b| self.buckets[b].load(Ordering::Relaxed)),
            slowest: worst,
        }
    }
}

/// One of a thread's slowest faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlowFault {
    /// The page's address (in the to-space of that cycle).
    pub page: usize,
    /// How long the thread waited.
    pub stall: Duration,
    /// The cycle it happened in.
    pub cycle: u64,
}

/// A thread's faults during concurrent cycles, in either fault mode: on
/// pages not compacted yet, and first touches of fresh allocation-region
/// pages (zero-filled; `CycleStats::faults` leaves those out, its stall
/// histogram has them): how many, how long it waited in all, the longest
/// wait, quantiles, and the slowest ones with their pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadFaults {
    /// Faults taken.
    pub count: u64,
    /// Their stalls summed.
    pub stall_total: Duration,
    /// The longest stall.
    pub stall_max: Duration,
    /// Stalls by power of two of microseconds (see
    /// [`stall_quantile`](Self::stall_quantile)).
    pub buckets: [u64; FAULT_BUCKETS],
    /// The slowest faults (at most [`WORST_FAULTS`]), longest first.
    pub slowest: Vec<SlowFault>,
}

impl ThreadFaults {
    /// An upper bound of the `q`-quantile (0..=1) of the stalls: the top of
    /// the power-of-two bucket it falls in (at most the longest stall);
    /// zero without faults.
    pub fn stall_quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let want = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                let top = Duration::from_micros(1 << (b + 1));
                return top.min(self.stall_max);
            }
        }
        self.stall_max
    }

    /// Adds `o`'s faults to these (totals over threads).
    pub fn add(&mut self, o: &ThreadFaults) {
        self.count += o.count;
        self.stall_total += o.stall_total;
        self.stall_max = self.stall_max.max(o.stall_max);
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.slowest.extend(o.slowest.iter().copied());
        self.slowest.sort_by_key(|f| std::cmp::Reverse(f.stall));
        self.slowest.truncate(WORST_FAULTS);
    }
}

impl ThreadCounters {
    /// Records one allocation stall.
    pub(crate) fn alloc_stall(&self, d: Duration) {
        let ns = d.as_nanos() as u64;
        self.alloc_stalls.fetch_add(1, Ordering::Relaxed);
        self.alloc_stall_ns.fetch_add(ns, Ordering::Relaxed);
        self.alloc_stall_max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Records one pacing delay.
    pub(crate) fn paced(&self, d: Duration) {
        self.pacing_delays.fetch_add(1, Ordering::Relaxed);
        self.pacing_delay_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// One mutator thread's view in `HeapStats`: what it waited for (the
/// collector making room: allocation stalls) and how often the world
/// waited for it (it was the last to reach a safepoint).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadStats {
    /// The thread's name (`unnamed` if it has none).
    pub name: String,
    /// The thread's kernel id.
    pub tid: i32,
    /// Allocations that waited for a collection to make room: the
    /// allocation stalls (ZGC's "Allocation Stall").
    pub alloc_stalls: u64,
    /// Their total wait.
    pub alloc_stall_total: Duration,
    /// The longest one.
    pub alloc_stall_max: Duration,
    /// Stops of the world this thread was the last to reach.
    pub last_to_safepoint: u64,
    /// The time to safepoint of those stops, summed: how long the world
    /// waited for this thread.
    pub held_up_world: Duration,
    /// TLAB refills allocation pacing delayed (see `HeapConfig::
    /// pacing_max_delay`).
    pub pacing_delays: u64,
    /// Their summed delay.
    pub pacing_delay_total: Duration,
    /// Its faults on pages a concurrent cycle had not compacted yet.
    pub faults: ThreadFaults,
}

impl ThreadStats {
    fn of(m: &MutatorShared) -> ThreadStats {
        let c = &m.counters;
        let d = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        ThreadStats {
            name: m.name.clone(),
            tid: m.tid,
            alloc_stalls: c.alloc_stalls.load(Ordering::Relaxed),
            alloc_stall_total: d(&c.alloc_stall_ns),
            alloc_stall_max: d(&c.alloc_stall_max_ns),
            last_to_safepoint: c.last_to_safepoint.load(Ordering::Relaxed),
            held_up_world: d(&c.held_up_ns),
            pacing_delays: c.pacing_delays.load(Ordering::Relaxed),
            pacing_delay_total: d(&c.pacing_delay_ns),
            faults: c.faults.snapshot(),
        }
    }

    /// Adds `o`'s counts to these (totals over threads).
    pub fn add(&mut self, o: &ThreadStats) {
        self.alloc_stalls += o.alloc_stalls;
        self.alloc_stall_total += o.alloc_stall_total;
        self.alloc_stall_max = self.alloc_stall_max.max(o.alloc_stall_max);
        self.last_to_safepoint += o.last_to_safepoint;
        self.held_up_world += o.held_up_world;
        self.pacing_delays += o.pacing_delays;
        self.pacing_delay_total += o.pacing_delay_total;
        self.faults.add(&o.faults);
    }
}

/// The id, in process `now`, of the thread that attached as `tid` in
/// process `pid`. After a `fork()` the child's only thread (the one that
/// forked) has a new id, the child's pid: so a mutator attached in another
/// process is taken to be that thread (the only one of the parent's that
/// can still run; see `fork` in docs/embedding.md).
fn current_tid(tid: i32, pid: u32, now: u32) -> i32 {
    if pid == now {
        tid
    } else {
        now as i32
    }
}

impl Default for MutatorShared {
    fn default() -> Self {
        MutatorShared::for_thread(None)
    }
}

impl MutatorShared {
    /// The thread, as diagnostics name it ("'name' (tid N)").
    pub(crate) fn label(&self) -> &str {
        &self.thread
    }

    /// The calling thread's, named `name` in statistics and diagnostics, or
    /// by the thread's own name (`unnamed` if it has none).
    fn for_thread(name: Option<String>) -> MutatorShared {
        let cur = std::thread::current();
        let tid = crate::cputime::gettid();
        let name = name.unwrap_or_else(|| cur.name().unwrap_or("unnamed").to_string());
        MutatorShared {
            state: UnsafeCell::default(),
            status: AtomicU8::new(Status::Running as u8),
            detached: AtomicBool::new(false),
            thread: format!("'{name}' (tid {tid})"),
            name,
            tid,
            pid: std::process::id(),
            counters: ThreadCounters::default(),
        }
    }
}

// SAFETY: `state` is accessed either by the owning thread while it is
// Running, or by the collecting thread while the owner is Parked, Blocked
// or detached (see the module docs). The coordinator's mutex hand-off
// orders the two; there is never concurrent access.
unsafe impl Sync for MutatorShared {}
// SAFETY: as above; MutatorState is itself Send.
unsafe impl Send for MutatorShared {}

impl MutatorShared {
    /// The mutator's state.
    ///
    /// # Safety
    /// The caller is the owning thread while Running, or the collector while
    /// the world is stopped; and no other reference from `state()` is alive.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn state(&self) -> &mut MutatorState {
        // SAFETY: exclusive access per the caller's contract.
        unsafe { &mut *self.state.get() }
    }
}

impl MutatorShared {
    fn set(&self, s: Status) {
        self.status.store(s as u8, Ordering::Relaxed);
    }

    fn is(&self, s: Status) -> bool {
        self.status.load(Ordering::Relaxed) == s as u8
    }
}

#[derive(Debug, Default)]
struct CoordState {
    running: usize,
    active: bool,
    mutators: Vec<Arc<MutatorShared>>,
    /// Threads that made a stop wait past `warn_after` (most recent last).
    late: Vec<String>,
    /// During a stop: the mutator whose stopping brought `running` to
    /// zero, the one the stop waited for last.
    last_stopped: Option<Arc<MutatorShared>>,
    /// Counters of detached mutators, summed (their threads are gone).
    departed: ThreadStats,
    /// The last [`RECENT_DETACHED`] detached mutators' own counters,
    /// oldest first (a benchmark's per-thread table after its workers
    /// have ended).
    recent_departed: std::collections::VecDeque<ThreadStats>,
}

/// How many detached mutators' counters are kept one by one
/// (`HeapStats::recent_detached`).
pub const RECENT_DETACHED: usize = 64;

impl CoordState {
    /// Takes a running mutator out of the running set (it parks, blocks,
    /// or detaches): if a stop waits for the set to empty and this was the
    /// last one, it is the thread the stop waited for.
    fn leave_running(&mut self, me: &Arc<MutatorShared>) {
        self.running -= 1;
        if self.active && self.running == 0 {
            self.last_stopped = Some(me.clone());
        }
    }
}

/// Most late threads remembered.
const LATE_KEPT: usize = 16;

/// The safepoint coordinator of one heap.
#[derive(Debug)]
pub struct Coordinator {
    state: Mutex<CoordState>,
    cv: Condvar,
    requested: AtomicBool,
    /// A stop that waits this long names the threads it waits for.
    warn_after: Duration,
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator::new(Duration::from_secs(5))
    }
}

/// Proof that the world is stopped: every attached mutator other than the
/// caller is parked, blocked or gone. Dropping it restarts the world.
pub struct StoppedWorld<'a> {
    coord: &'a Coordinator,
    mutators: Vec<Arc<MutatorShared>>,
    /// The mutator that stopped the world (`None`: a collector thread).
    me: Option<Arc<MutatorShared>>,
    /// From the stop's request to the last mutator leaving the running set.
    ttsp: Duration,
    /// The thread that was last to stop ("'name' (tid N)"), if the stop
    /// had to wait for one.
    last: Option<String>,
}

impl StoppedWorld<'_> {
    /// How long the stop waited for mutators to reach a safepoint (zero if
    /// none was running). The stopped threads waited this long on top of
    /// the pause itself.
    pub fn time_to_safepoint(&self) -> Duration {
        self.ttsp
    }

    /// The thread the stop waited for last ("'name' (tid N)"), if it
    /// waited for any.
    pub fn last_to_safepoint(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// Every attached mutator by thread id (sorted), for attributing the
    /// faults of the cycle this stop flips.
    pub(crate) fn threads_by_tid(&self) -> Vec<(i32, Arc<MutatorShared>)> {
        let now = std::process::id();
        let mut v: Vec<_> = self
            .mutators
            .iter()
            .map(|m| (current_tid(m.tid, m.pid, now), m.clone()))
            .collect();
        // One entry per id, this process's own mutator first.
        v.sort_by_key(|(tid, m)| (*tid, m.pid != now));
        v.dedup_by_key(|(tid, _)| *tid);
        v
    }

    /// The states of all attached mutators (the caller's included).
    pub(crate) fn for_each_mutator(&mut self, mut f: impl FnMut(&mut MutatorState)) {
        for m in &self.mutators {
            // SAFETY: the world is stopped (this value exists), so no owner
            // thread touches its state; the collector is the only accessor
            // and holds no other reference from `state()`.
            f(unsafe { m.state() })
        }
    }
}

impl Drop for StoppedWorld<'_> {
    fn drop(&mut self) {
        let mut s = self.coord.lock();
        s.active = false;
        self.coord.requested.store(false, Ordering::Release);
        if let Some(me) = &self.me {
            me.set(Status::Running);
            s.running += 1; // the collecting mutator resumes
        }
        self.coord.cv.notify_all();
    }
}

impl Coordinator {
    /// A coordinator whose stops name the threads they wait for after
    /// `warn_after`.
    pub fn new(warn_after: Duration) -> Coordinator {
        Coordinator {
            state: Mutex::default(),
            cv: Condvar::new(),
            requested: AtomicBool::new(false),
            warn_after,
        }
    }

    /// Waits until every mutator has left the running set. Past
    /// `warn_after`, says once on stderr which threads it is waiting for
    /// (and records them, see [`late_threads`](Self::late_threads)): a
    /// thread that runs long without allocating or polling, or a mutator
    /// leaked with `mem::forget` on a thread that lives on.
    fn wait_all_stopped<'a>(
        &self,
        s: MutexGuard<'a, CoordState>,
    ) -> (MutexGuard<'a, CoordState>, Duration, Option<String>) {
        let t0 = Instant::now();
        let waited = s.running > 0;
        let mut s = self.wait_running_zero(s, t0);
        let ttsp = t0.elapsed();
        let last = s.last_stopped.take().filter(|_| waited).map(|m| {
            m.counters.last_to_safepoint.fetch_add(1, Ordering::Relaxed);
            m.counters
                .held_up_ns
                .fetch_add(ttsp.as_nanos() as u64, Ordering::Relaxed);
            m.thread.clone()
        });
        (s, if waited { ttsp } else { Duration::ZERO }, last)
    }

    /// The waiting loop of `wait_all_stopped`, with its warning.
    fn wait_running_zero<'a>(
        &self,
        mut s: MutexGuard<'a, CoordState>,
        t0: Instant,
    ) -> MutexGuard<'a, CoordState> {
        let mut warned = false;
        while s.running > 0 {
            let left = self.warn_after.saturating_sub(t0.elapsed());
            if warned || left > Duration::ZERO {
                let wait = if warned {
                    Duration::from_secs(3600)
                } else {
                    left
                };
                s = self
                    .cv
                    .wait_timeout(s, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            warned = true;
            let late: Vec<String> = s
                .mutators
                .iter()
                .filter(|m| m.is(Status::Running))
                .map(|m| m.thread.clone())
                .collect();
            eprintln!(
                "movegc: a collection has waited {:.1} s for thread(s) {} to reach a safepoint; \
                 a thread that runs long without allocating must call Mutator::safepoint() now \
                 and then or run the loop in Mutator::blocking(), and a mutator leaked with \
                 mem::forget holds every collection up until its thread exits",
                t0.elapsed().as_secs_f64(),
                late.join(", ")
            );
            tracing::warn!(threads = %late.join(", "), "safepoint wait past the limit");
            s.late.extend(late);
            let excess = s.late.len().saturating_sub(LATE_KEPT);
            s.late.drain(..excess);
        }
        s
    }

    /// Threads that held up a stop past the warning limit (most recent
    /// last, at most 16).
    pub fn late_threads(&self) -> Vec<String> {
        self.lock().late.clone()
    }

    /// Each attached mutator's counters, the sum of those of detached
    /// ones (`name` "detached"), and the most recently detached ones'.
    pub fn thread_stats(&self) -> (Vec<ThreadStats>, ThreadStats, Vec<ThreadStats>) {
        let s = self.lock();
        let mut gone = s.departed.clone();
        gone.name = "detached".into();
        (
            s.mutators.iter().map(|m| ThreadStats::of(m)).collect(),
            gone,
            s.recent_departed.iter().cloned().collect(),
        )
    }

    fn lock(&self) -> MutexGuard<'_, CoordState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, CoordState>) -> MutexGuard<'a, CoordState> {
        self.cv.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a collection wants mutators to stop (relaxed poll).
    #[inline(always)]
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Registers a new running mutator (waits for a running collection).
    pub(crate) fn attach(&self, name: Option<String>) -> Arc<MutatorShared> {
        let shared = Arc::new(MutatorShared::for_thread(name));
        let mut s = self.lock();
        while s.active {
            s = self.wait(s);
        }
        s.running += 1;
        s.mutators.push(shared.clone());
        shared
    }

    /// Removes a running mutator (also on unwinding). Idempotent.
    pub fn detach(&self, shared: &Arc<MutatorShared>) {
        let mut s = self.lock();
        if shared.detached.swap(true, Ordering::Relaxed) {
            return;
        }
        s.leave_running(shared);
        s.mutators.retain(|m| !Arc::ptr_eq(m, shared));
        let gone = ThreadStats::of(shared);
        s.departed.add(&gone);
        if s.recent_departed.len() == RECENT_DETACHED {
            s.recent_departed.pop_front();
        }
        s.recent_departed.push_back(gone);
        self.cv.notify_all();
    }

    /// Number of attached mutators.
    pub(crate) fn attached(&self) -> usize {
        self.lock().mutators.len()
    }

    /// Parks the calling (running) mutator until no collection is active.
    fn park(&self, me: &Arc<MutatorShared>) {
        let mut s = self.lock();
        if !s.active {
            return;
        }
        s.leave_running(me);
        me.set(Status::Parked);
        self.cv.notify_all();
        while s.active {
            s = self.wait(s);
        }
        me.set(Status::Running);
        s.running += 1;
    }

    /// Leaves the running set for a blocking region.
    fn enter_blocking(&self, me: &Arc<MutatorShared>) {
        let mut s = self.lock();
        s.leave_running(me);
        me.set(Status::Blocked);
        self.cv.notify_all();
    }

    /// Rejoins the running set, waiting for an active collection to finish.
    fn leave_blocking(&self, me: &MutatorShared) {
        let mut s = self.lock();
        while s.active {
            s = self.wait(s);
        }
        me.set(Status::Running);
        s.running += 1;
    }

    /// Stops the world on behalf of the running mutator `me`. Returns
    /// `None` if another thread is already collecting: the caller has then
    /// been parked through that collection and should not start another.
    fn stop_the_world(&self, me: &Arc<MutatorShared>) -> Option<StoppedWorld<'_>> {
        let mut s = self.lock();
        if s.active {
            s.leave_running(me);
            me.set(Status::Parked);
            self.cv.notify_all();
            while s.active {
                s = self.wait(s);
            }
            me.set(Status::Running);
            s.running += 1;
            return None;
        }
        s.active = true;
        s.last_stopped = None;
        self.requested.store(true, Ordering::Release);
        s.running -= 1; // the collector itself is not waited for
        me.set(Status::Collecting);
        let (s, ttsp, last) = self.wait_all_stopped(s);
        let mutators = s.mutators.clone();
        Some(StoppedWorld {
            coord: self,
            mutators,
            me: Some(me.clone()),
            ttsp,
            last,
        })
    }

    /// Stops the world from a collector thread that is not a mutator (the
    /// final pause of concurrent marking), after any collection that is
    /// stopping or has stopped the world finishes.
    pub fn stop_the_world_external(&self) -> StoppedWorld<'_> {
        let mut s = self.lock();
        while s.active {
            s = self.wait(s);
        }
        s.active = true;
        s.last_stopped = None;
        self.requested.store(true, Ordering::Release);
        let (s, ttsp, last) = self.wait_all_stopped(s);
        let mutators = s.mutators.clone();
        StoppedWorld {
            coord: self,
            mutators,
            me: None,
            ttsp,
            last,
        }
    }
}

/// The mutators of the current thread, one per heap at most. Dropped when
/// the thread exits: a mutator still attached then (leaked with
/// `mem::forget`) is detached, so it cannot hold collections up forever.
struct ThreadMutators(RefCell<Vec<Membership>>);

/// One attached mutator, as the thread-local registry knows it.
struct Membership {
    coord: Arc<Coordinator>,
    satb: Arc<SatbLog>,
    shared: Arc<MutatorShared>,
}

impl Membership {
    /// Leaves the heap for good: hands over the SATB buffer (the marker
    /// must see what this thread logged), then leaves the running set.
    /// The owner thread calls this (from `Drop` or its thread-local
    /// destructor), so it may touch its state.
    fn leave(&self) {
        if self.shared.detached.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: called by the owner thread while Running (a mutator is
        // dropped, or its thread exits, outside any blocking region and
        // not parked), so it has exclusive access to its state.
        let st = unsafe { self.shared.state() };
        self.satb.publish(&mut st.satb);
        self.coord.detach(&self.shared);
    }
}

impl Drop for ThreadMutators {
    fn drop(&mut self) {
        for m in self.0.get_mut().drain(..) {
            m.leave();
        }
    }
}

thread_local! {
    static THREAD: ThreadMutators = const { ThreadMutators(RefCell::new(Vec::new())) };
}

/// See [`Attached::owned`].
#[cold]
#[inline(never)]
fn used_after_detach(thread: &str) -> ! {
    panic!(
        "the mutator of thread {thread} was used after the thread's mutator registry was \
         destroyed at thread exit (a mutator kept in a thread-local that outlives movegc's): \
         it was detached then and can no longer touch the heap"
    )
}

/// The calling thread already has a mutator of this heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this thread is already attached to this heap")]
pub struct AlreadyAttached;

/// Whether the calling thread has a mutator of the heap of `coord` that is
/// in the running set (not inside a blocking region).
pub(crate) fn running_here(coord: &Arc<Coordinator>) -> bool {
    THREAD
        .try_with(|t| {
            t.0.borrow()
                .iter()
                .any(|m| Arc::ptr_eq(&m.coord, coord) && !m.shared.is(Status::Blocked))
        })
        .unwrap_or(false)
}

/// A mutator's membership in the running set, owned by its thread.
///
/// Only this value gives the owner access to its [`MutatorState`], and every
/// operation that can stop the thread (`park`, `blocking`, collecting) takes
/// `&mut self`, so the borrow checker guarantees the owner holds no reference
/// into its state while the collector may be using it. `!Send`: it must stay
/// on the thread that attached.
pub struct Attached {
    coord: Arc<Coordinator>,
    satb: Arc<SatbLog>,
    shared: Arc<MutatorShared>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Attached {
    /// Attaches the calling thread (at most once per heap; the
    /// thread-local registry detaches it when the thread exits if it is
    /// never dropped).
    #[cfg(test)]
    pub fn new(coord: Arc<Coordinator>, satb: Arc<SatbLog>) -> Result<Attached, AlreadyAttached> {
        Attached::named(coord, satb, None)
    }

    /// Attaches the calling thread (at most once per heap; the
    /// thread-local registry detaches it when the thread exits if it is
    /// never dropped), naming the mutator `name` in statistics and
    /// diagnostics, or by its thread's name if `None`.
    pub fn named(
        coord: Arc<Coordinator>,
        satb: Arc<SatbLog>,
        name: Option<String>,
    ) -> Result<Attached, AlreadyAttached> {
        THREAD.with(|t| {
            let mut t = t.0.borrow_mut();
            if t.iter().any(|m| Arc::ptr_eq(&m.coord, &coord)) {
                return Err(AlreadyAttached);
            }
            let shared = coord.attach(name);
            t.push(Membership {
                coord: coord.clone(),
                satb: satb.clone(),
                shared: shared.clone(),
            });
            Ok(Attached {
                coord,
                satb,
                shared,
                _not_send: std::marker::PhantomData,
            })
        })
    }

    /// This mutator's counters.
    pub(crate) fn counters(&self) -> &ThreadCounters {
        &self.shared.counters
    }

    /// This mutator's thread, as diagnostics name it ("'name' (tid N)").
    pub(crate) fn thread_label(&self) -> &str {
        &self.shared.thread
    }

    /// The heap's SATB log.
    #[inline(always)]
    pub(crate) fn satb(&self) -> &SatbLog {
        &self.satb
    }

    /// Panics if this mutator was detached behind its owner's back: its
    /// thread's registry of mutators (a thread-local) was destroyed at
    /// thread exit while the mutator itself lives on in another
    /// thread-local whose destructor runs later. Collections no longer wait
    /// for it nor scan its roots, so it must not touch the heap.
    #[inline(always)]
    fn owned(&self) {
        if self.shared.detached.load(Ordering::Relaxed) {
            used_after_detach(&self.shared.thread);
        }
    }

    /// The owner's state.
    #[inline(always)]
    pub fn state(&mut self) -> &mut MutatorState {
        self.owned();
        // SAFETY: we are the owner (Attached is !Send) and Running: the
        // collector only touches our state while we are parked, blocked or
        // detached, and each of those needs `&mut self`, which the returned
        // borrow excludes.
        unsafe { self.shared.state() }
    }

    /// Root slot `i` of the owner (`None` if null or past the end).
    #[inline(always)]
    pub fn root(&self, i: usize) -> Option<ObjRef> {
        self.owned();
        // SAFETY: as in `state`; the shared borrow ends in this expression
        // and no `&mut` from `state` is live (it needs `&mut self`).
        unsafe { self.shared.state() }
            .roots
            .get(i)
            .copied()
            .flatten()
    }

    /// Stops at a safepoint if a collection is requested.
    #[inline(always)]
    pub fn poll(&mut self) {
        self.owned();
        if self.coord.requested() {
            self.coord.park(&self.shared);
        }
    }

    /// Runs `f` outside the running set: a collection may run meanwhile.
    pub fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        struct Rejoin<'a>(&'a Coordinator, &'a MutatorShared);
        impl Drop for Rejoin<'_> {
            fn drop(&mut self) {
                self.0.leave_blocking(self.1);
            }
        }
        self.owned();
        self.coord.enter_blocking(&self.shared);
        let _rejoin = Rejoin(&self.coord, &self.shared);
        f()
    }

    /// Stops the world with this mutator as the collector (see
    /// [`Coordinator::stop_the_world`]).
    pub fn stop_the_world(&mut self) -> Option<StoppedWorld<'_>> {
        self.owned();
        self.coord.stop_the_world(&self.shared)
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let m = Membership {
            coord: self.coord.clone(),
            satb: self.satb.clone(),
            shared: self.shared.clone(),
        };
        // `try_with`: during thread-local destruction the registry may be
        // gone (it has then detached this mutator already; `leave` is
        // idempotent).
        let _ = THREAD.try_with(|t| {
            if let Ok(mut t) = t.0.try_borrow_mut() {
                t.retain(|x| !Arc::ptr_eq(&x.shared, &self.shared));
            }
        });
        m.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn attach(c: &Arc<Coordinator>) -> Attached {
        Attached::new(c.clone(), Arc::default()).unwrap()
    }

    #[test]
    fn the_last_detached_threads_are_kept_one_by_one() {
        let c = Arc::new(Coordinator::new(Duration::from_secs(5)));
        for i in 0..RECENT_DETACHED + 6 {
            let m = c.attach(Some(format!("t{i}")));
            c.detach(&m);
        }
        let (attached, sum, recent) = c.thread_stats();
        assert!(attached.is_empty());
        assert_eq!(sum.name, "detached");
        assert_eq!(recent.len(), RECENT_DETACHED);
        assert_eq!(recent[0].name, "t6");
        assert_eq!(
            recent.last().unwrap().name,
            format!("t{}", RECENT_DETACHED + 5)
        );
    }

    #[test]
    fn a_mutator_of_the_parent_is_the_forked_thread_in_a_child() {
        assert_eq!(current_tid(1234, 1000, 1000), 1234, "same process");
        assert_eq!(current_tid(1234, 1000, 2000), 2000, "child: its pid");
    }

    #[test]
    fn fault_counters_keep_the_slowest_and_quantiles() {
        let c = FaultCounters::default();
        for (i, us) in [1u64, 3, 5, 700, 9, 40, 2].into_iter().enumerate() {
            c.record(4096 * (i + 1), Duration::from_micros(us), 7);
        }
        let f = c.snapshot();
        assert_eq!(f.count, 7);
        assert_eq!(f.stall_max, Duration::from_micros(700));
        assert_eq!(f.stall_total, Duration::from_micros(760));
        assert_eq!(f.buckets.iter().sum::<u64>(), 7);
        let slow: Vec<_> = f
            .slowest
            .iter()
            .map(|s| (s.page, s.stall.as_micros()))
            .collect();
        assert_eq!(
            slow,
            [
                (4096 * 4, 700),
                (4096 * 6, 40),
                (4096 * 5, 9),
                (4096 * 3, 5)
            ]
        );
        assert!(f.slowest.iter().all(|s| s.cycle == 7));
        // p50 is the 4th of 7 (5 us: bucket [4, 8) us); p99 is the longest.
        assert_eq!(f.stall_quantile(0.5), Duration::from_micros(8));
        assert_eq!(f.stall_quantile(0.99), Duration::from_micros(700));
        let mut sum = f.clone();
        sum.add(&f);
        assert_eq!((sum.count, sum.slowest.len()), (14, WORST_FAULTS));
        assert_eq!(sum.slowest[0].stall, Duration::from_micros(700));
    }

    #[test]
    fn collection_waits_for_running_mutators_and_skips_blocked_ones() {
        let c = Arc::new(Coordinator::default());
        let mut me = attach(&c);
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicUsize::new(0));
        let blocked_ready = Arc::new(AtomicBool::new(false));
        // One mutator that polls, one that sits in a blocking region.
        let (c1, s1, p1) = (c.clone(), stop.clone(), polls.clone());
        let t1 = std::thread::spawn(move || {
            let mut m = attach(&c1);
            while !s1.load(Ordering::Relaxed) {
                if c1.requested() {
                    m.poll();
                    p1.fetch_add(1, Ordering::Relaxed);
                }
                std::hint::spin_loop();
            }
        });
        let (c2, r2) = (c.clone(), blocked_ready.clone());
        let t2 = std::thread::spawn(move || {
            let mut m = attach(&c2);
            m.blocking(|| {
                r2.store(true, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            });
        });
        while c.attached() < 3 || !blocked_ready.load(Ordering::Relaxed) {
            std::thread::yield_now();
        }
        {
            let mut w = me.stop_the_world().expect("no concurrent collector");
            let mut n = 0;
            w.for_each_mutator(|_| n += 1);
            assert_eq!(n, 3);
        }
        stop.store(true, Ordering::Relaxed);
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        drop(me);
        assert_eq!(c.attached(), 0);
    }

    #[test]
    fn a_panicking_mutator_does_not_wedge_the_collector() {
        let c = Arc::new(Coordinator::default());
        let mut me = attach(&c);
        let c1 = c.clone();
        let r = std::thread::spawn(move || {
            let _m = attach(&c1);
            panic!("mutator bug");
        })
        .join();
        assert!(r.is_err());
        assert!(me.stop_the_world().is_some());
    }

    #[test]
    fn one_mutator_per_thread_and_heap() {
        let (a, b) = (
            Arc::new(Coordinator::default()),
            Arc::new(Coordinator::default()),
        );
        let m = attach(&a);
        assert!(matches!(
            Attached::new(a.clone(), Arc::default()),
            Err(AlreadyAttached)
        ));
        let _other_heap = attach(&b);
        drop(m);
        let _again = attach(&a);
        assert_eq!(a.attached(), 1);
    }

    #[test]
    fn a_forgotten_mutator_is_detached_when_its_thread_exits() {
        let c = Arc::new(Coordinator::default());
        let c1 = c.clone();
        std::thread::spawn(move || std::mem::forget(attach(&c1)))
            .join()
            .unwrap();
        assert_eq!(c.attached(), 0, "the thread-local registry detached it");
        let mut me = attach(&c);
        assert!(me.stop_the_world().is_some(), "nobody left to wait for");
    }

    #[test]
    fn a_mutator_outliving_its_threads_registry_refuses_to_run() {
        // A mutator kept in a thread-local whose destructor runs after the
        // registry's (registered first: destructors run in reverse order)
        // was detached by the registry; using it then must panic, not run
        // unseen by collections.
        use std::cell::RefCell;
        use std::sync::mpsc;
        struct Late(Option<Attached>, mpsc::Sender<(bool, bool)>);
        impl Drop for Late {
            fn drop(&mut self) {
                let mut m = self.0.take().expect("set");
                let detached = m.shared.detached.load(Ordering::Relaxed);
                let panicked =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.poll())).is_err();
                std::mem::forget(m); // dropping it again would be harmless; keep it simple
                let _ = self.1.send((detached, panicked));
            }
        }
        thread_local!(static LATE: RefCell<Option<Late>> = const { RefCell::new(None) });
        let c = Arc::new(Coordinator::default());
        let (tx, rx) = mpsc::channel();
        let c1 = c.clone();
        std::thread::spawn(move || {
            LATE.with(|_| {}); // its destructor is registered before the registry's
            let m = attach(&c1);
            LATE.with(|l| *l.borrow_mut() = Some(Late(Some(m), tx)));
        })
        .join()
        .unwrap();
        let (detached, panicked) = rx.recv().expect("the late destructor ran");
        assert!(
            detached,
            "the registry, destroyed first, detached the mutator"
        );
        assert!(panicked, "a detached mutator must refuse to run");
        assert_eq!(c.attached(), 0);
    }

    #[test]
    fn a_late_thread_is_named() {
        let c = Arc::new(Coordinator::new(Duration::from_millis(50)));
        let mut me = attach(&c);
        let (c1, go) = (c.clone(), Arc::new(AtomicBool::new(false)));
        let go1 = go.clone();
        let t = std::thread::Builder::new()
            .name("busy-loop".into())
            .spawn(move || {
                let mut m = attach(&c1);
                while !go1.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                std::thread::sleep(Duration::from_millis(300)); // no poll
                m.poll();
            })
            .unwrap();
        while c.attached() < 2 {
            std::thread::yield_now();
        }
        go.store(true, Ordering::Relaxed);
        assert!(me.stop_the_world().is_some());
        t.join().unwrap();
        let late = c.late_threads();
        assert_eq!(late.len(), 1, "{late:?}");
        assert!(late[0].starts_with("'busy-loop' (tid "), "{late:?}");
    }
}
