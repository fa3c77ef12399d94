//! [`Heap`] and its builder.

use std::sync::Arc;

use movegc_gc::concurrent::FaultMode;
use movegc_gc::uffd::OpenPath;
use movegc_gc::{GcHeap, HeapConfig, HeapStats, Strategy};

use crate::mutator::Mutator;
use crate::{Error, Result};

/// A managed heap. Cloning shares it. See the crate docs for an example.
#[derive(Clone, Debug)]
pub struct Heap {
    pub(crate) gc: GcHeap,
    id: Arc<()>,
}

impl Heap {
    /// A builder with the default configuration.
    pub fn builder() -> HeapBuilder {
        HeapBuilder {
            config: HeapConfig::default(),
            min_free_set: false,
        }
    }

    /// Attaches the calling thread and returns its mutator. A thread can
    /// hold one mutator per heap ([`Error::AlreadyAttached`] otherwise); the
    /// mutator detaches when dropped, or when its thread exits if it was
    /// leaked with `mem::forget`.
    pub fn attach(&self) -> Result<Mutator> {
        let ctx = self.gc.attach().map_err(|_| Error::AlreadyAttached)?;
        Ok(Mutator::new(self.clone(), ctx))
    }

    /// [`attach`](Self::attach), naming the mutator `name` in the
    /// statistics (`HeapStats::threads`: its allocation stalls, pacing
    /// delays, faults and safepoint delays), the GC log and diagnostics,
    /// instead of by its thread's name: e.g. `"ui"` apart from the workers.
    pub fn attach_named(&self, name: &str) -> Result<Mutator> {
        let ctx = self
            .gc
            .attach_named(name)
            .map_err(|_| Error::AlreadyAttached)?;
        Ok(Mutator::new(self.clone(), ctx))
    }

    /// A snapshot of the collector statistics.
    pub fn stats(&self) -> HeapStats {
        self.gc.stats()
    }

    /// Bytes in use (moving space up to its top, plus large objects).
    pub fn used_bytes(&self) -> usize {
        self.gc.used_bytes()
    }

    /// The strategy collections use on this heap, after fallbacks.
    pub fn strategy(&self) -> Strategy {
        self.gc.strategy()
    }

    /// What `strategy` becomes on this heap after the fallbacks (for
    /// [`Mutator::collect_with`]). Asking about a concurrent strategy on a
    /// heap built stop-the-world opens userfaultfd now (saying once on
    /// stderr if it cannot).
    pub fn effective_strategy(&self, strategy: Strategy) -> Strategy {
        self.gc.effective_strategy(strategy)
    }

    /// The fault mode concurrent cycles use, if userfaultfd is open.
    pub fn fault_mode(&self) -> Option<FaultMode> {
        self.gc.fault_mode()
    }

    /// Whether the stale-reference mode is on: asked for
    /// ([`HeapBuilder::poison_freed`] or `MOVEGC_POISON=1`) and available
    /// (`UFFDIO_POISON`, Linux 6.6).
    pub fn poisons_freed(&self) -> bool {
        self.gc.poisons_freed()
    }

    /// Waits until no concurrent collection (marking or compaction) is
    /// running, from a thread that has no running mutator of this heap
    /// (another thread, or inside [`Mutator::blocking`]).
    ///
    /// On a thread whose mutator of this heap is running it fails with
    /// [`Error::RunningMutator`]: waiting here would have to step out of
    /// the running set behind the mutator's back, and objects could move
    /// under whatever the thread is in the middle of. Use
    /// [`Mutator::wait_idle`] there.
    pub fn wait_idle(&self) -> Result<()> {
        self.gc.wait_idle().map_err(|_| Error::RunningMutator)
    }

    /// The heap's capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.gc.config().capacity
    }

    /// Minimum allocation between automatic collections, as configured
    /// (see [`HeapBuilder::min_free`]).
    pub fn min_free(&self) -> usize {
        self.gc.config().min_free
    }

    pub(crate) fn same(&self, other: &Heap) -> bool {
        Arc::ptr_eq(&self.id, &other.id)
    }
}
/// Configures and creates a [`Heap`]. Every setting has a sane default.
#[derive(Clone, Debug)]
pub struct HeapBuilder {
    config: HeapConfig,
    /// `min_free` was chosen by the caller (else it follows the capacity).
    min_free_set: bool,
}

impl HeapBuilder {
    /// Maximum heap size in bytes (moving space plus large objects).
    /// Memory is committed only as it is used. Default: a quarter of RAM
    /// (at least 64 MiB), rounded up to 2 MiB.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.config.capacity = bytes;
        self
    }

    /// Collector worker threads. Default: CPUs, at most 4.
    pub fn gc_threads(mut self, n: usize) -> Self {
        self.config.gc_threads = n;
        self
    }

    /// Collector threads that work while mutators run (concurrent marking
    /// and compaction), within `1..=gc_threads`; pauses use all of them.
    /// Default: all of them (fewer made cycles longer and allocations
    /// stall in a tight heap; see `HeapConfig::concurrent_gc_threads`).
    pub fn concurrent_gc_threads(mut self, n: usize) -> Self {
        self.config.concurrent_gc_threads = Some(n);
        self
    }

    /// Allocation pacing: the longest a thread taking a new TLAB waits
    /// while a concurrent cycle marks, so that mutators do not fill the
    /// heap before the cycle's flip and stall there (see
    /// `HeapConfig::pacing_max_delay`); `None` turns it off. Default 10 ms.
    pub fn pacing_max_delay(mut self, max: Option<std::time::Duration>) -> Self {
        self.config.pacing_max_delay = max;
        self
    }

    /// Bytes per thread-local allocation buffer. Default 32 KiB.
    pub fn tlab_size(mut self, bytes: usize) -> Self {
        self.config.tlab_size = bytes;
        self
    }

    /// Objects at least this large are never moved. Default 32 KiB.
    pub fn large_object_threshold(mut self, bytes: usize) -> Self {
        self.config.large_object_threshold = bytes;
        self
    }

    /// Collect when the heap reaches `factor` times the live size of the
    /// last collection (and at least `min_free` more). Default 2.0.
    pub fn growth_factor(mut self, factor: f64) -> Self {
        self.config.growth_factor = factor;
        self
    }

    /// The smallest allocation between automatic collections, and where
    /// the size policy's free budget starts (it grows while the collector
    /// costs more than [`gc_cpu_target`](Self::gc_cpu_target)). Default:
    /// 32 MiB, or a quarter of the capacity if that is less (also when the
    /// capacity is set after this default: it follows the capacity unless
    /// set here).
    pub fn min_free(mut self, bytes: usize) -> Self {
        self.config.min_free = bytes;
        self.min_free_set = true;
        self
    }

    /// The collector's target share of CPU time: while it costs more, the
    /// heap lets the program allocate more between cycles (up to the
    /// capacity); while it costs far less, it shrinks back toward
    /// [`min_free`](Self::min_free). `None` keeps the budget at
    /// `min_free`. Default `Some(0.30)` (see `docs/embedding.md` §4 for
    /// what other targets cost). Must be within `0 < t < 1`.
    pub fn gc_cpu_target(mut self, target: Option<f64>) -> Self {
        self.config.gc_cpu_target = target;
        self
    }

    /// Leave pages at least this live at the start of the heap in place
    /// (`None`: compact everything). Default `Some(0.95)`.
    pub fn dense_prefix(mut self, threshold: Option<f64>) -> Self {
        self.config.dense_prefix_threshold = threshold;
        self
    }

    /// The stale-reference mode: memory each collection frees is poisoned
    /// (`UFFDIO_POISON`) until it is allocated again, so a read through an
    /// address kept across a collection outside a handle stops the
    /// process with a report naming the address, the collection and the
    /// object that was there, instead of reading garbage (see
    /// `HeapConfig::poison_freed` and docs/embedding.md). Safe code holds
    /// only handles and cannot make such a read; the mode is for the
    /// engine's unsafe API, FFI and movegc itself. A debugging mode with a
    /// measured cost. Default off, or `MOVEGC_POISON=1`.
    pub fn poison_freed(mut self, on: bool) -> Self {
        self.config.poison_freed = on;
        self
    }

    /// The stale-reference mode's stress option: every collection moves
    /// every object (compacting above the old top, then back down), so no
    /// stale address keeps working by luck. Implies `poison_freed`; makes
    /// collections stop-the-world and full; needs room for the live data
    /// twice. For test runs. Default off, or `MOVEGC_POISON=stress`.
    pub fn poison_stress(mut self, on: bool) -> Self {
        self.config.poison_stress = on;
        self
    }

    /// Called by the stale-reference mode after its report and before the
    /// process aborts, in the faulting thread's signal handler: only
    /// async-signal-safe work (see [`StaleHook`](crate::StaleHook)).
    pub fn on_stale_access(mut self, hook: crate::StaleHook) -> Self {
        self.config.on_stale_access = Some(hook);
        self
    }

    /// Young collections: cycles started by the size policy mark and
    /// compact only what was allocated since the last cycle, finding the
    /// old objects' references to it through a card table kept by
    /// `set_ref`; full cycles still run when the old region has doubled,
    /// a young cycle freed little, an allocation failed, or on `collect()`.
    /// Default off.
    pub fn generational(mut self, on: bool) -> Self {
        self.config.generational = on;
        self
    }

    /// How young collections find the old objects written since the last
    /// cycle: [`RememberedSet::Cards`](crate::RememberedSet::Cards), a
    /// card-marking barrier in every reference store, or
    /// [`RememberedSet::WriteProtect`](crate::RememberedSet::WriteProtect),
    /// the kernel's dirty-page tracking (userfaultfd `WP_ASYNC` +
    /// `PAGEMAP_SCAN`: no barrier between cycles, one minor fault on the
    /// first write to each old page per cycle; falls back to cards, said
    /// once, where the kernel does not offer it). Default: cards, or the
    /// environment variable `MOVEGC_REMEMBERED_SET` (`cards` or `wp`).
    pub fn remembered_set(mut self, r: crate::RememberedSet) -> Self {
        self.config.remembered_set = r;
        self
    }

    /// With young collections: concurrent young cycles leave the old
    /// region in place instead of moving it out and back at the flip
    /// (a fifth of the pages moved, half the compaction time; a zygote's
    /// pages stay shared with its apps). Default on; the environment variable `MOVEGC_KEEP_OLD=0`
    /// turns it off (see `HeapConfig::keep_old_region`).
    pub fn keep_old_region(mut self, on: bool) -> Self {
        self.config.keep_old_region = on;
        self
    }

    /// Full cycles leave alone the dense-prefix pages nothing changed
    /// since the last full cycle fixed them (no object on them died, no
    /// reference on them points at a moving object): stop-the-world
    /// cycles skip them, concurrent ones keep the run of them at the
    /// bottom of the heap out of the flip. Default on; the environment
    /// variable `MOVEGC_KEEP_CLEAN_PREFIX=0` turns it off (see
    /// `HeapConfig::keep_clean_prefix`).
    pub fn keep_clean_prefix(mut self, on: bool) -> Self {
        self.config.keep_clean_prefix = on;
        self
    }

    /// Concurrent MOVE cycles that the size policy started hand the
    /// from-space pages they did not need, zeroed, to the allocation
    /// region, so that allocating until the next cycle takes no page fault
    /// (a quarter of binary-trees' time). Off (and always after
    /// `collect()`): those pages are released at the end of the cycle and
    /// faulted back in one at a time. Default on, or the environment variable
    /// `MOVEGC_PREFILL=0` turns it off (see `HeapConfig::prefill_allocation`).
    pub fn prefill_allocation(mut self, on: bool) -> Self {
        self.config.prefill_allocation = on;
        self
    }

    /// Under concurrent MOVE, the GC threads' runs of fewer to-space pages
    /// than `pages` are copied (`UFFDIO_COPY`) instead of moved, and unless
    /// `pages` is 1 so are the allocation-region pages a fault fills (8 at
    /// a time; the faulting thread would wait for that MOVE's IPI). Each
    /// `UFFDIO_MOVE` interrupts every CPU running a thread of the process
    /// to flush its TLB, which costs more than copying a few pages, and
    /// runs get short when mutators fault ahead of the GC threads. 1 moves
    /// every run; 0 counts as 1. Default 8, or the environment variable
    /// `MOVEGC_MIN_MOVE_RUN` (see `HeapConfig::min_move_run`).
    pub fn min_move_run(mut self, pages: usize) -> Self {
        self.config.min_move_run = pages;
        self
    }

    /// A concurrent cycle's black block (what was allocated while it
    /// marked) with at most `slots` fields given a reference to an older
    /// object meanwhile (on at most 64 pages) stays out of the flip: the
    /// final pause rewrites those fields and the block's pages are never
    /// moved out and back. 0 always flips the block. Default 1024, or the
    /// environment variable `MOVEGC_PAUSE_BLACK_SLOTS` (see
    /// `HeapConfig::pause_black_slots`).
    pub fn pause_black_slots(mut self, slots: usize) -> Self {
        self.config.pause_black_slots = slots;
        self
    }

    /// Print one line per collection on stderr (kind and cause, heap
    /// before and after, live, pauses with time to safepoint, marking,
    /// compaction, pages, faults), like the JVM's `-Xlog:gc`. Default: on
    /// if the environment variable `MOVEGC_LOG` lists `gc`. Every cycle is
    /// also a `tracing` event on the target `movegc::gc`.
    pub fn gc_log(mut self, on: bool) -> Self {
        self.config.gc_log = on;
        self
    }

    /// Ask for transparent huge pages on the moving space. Default off.
    pub fn huge_pages(mut self, on: bool) -> Self {
        self.config.huge_pages = on;
        self
    }

    /// Whether concurrent strategies also mark concurrently (a
    /// snapshot-at-the-beginning write barrier in `set_ref`; two short
    /// pauses instead of one that contains marking). Default on; off makes
    /// marking part of the flip pause.
    pub fn concurrent_marking(mut self, on: bool) -> Self {
        self.config.concurrent_mark = on;
        self
    }

    /// Verify the whole heap after every collection. Default: on in debug
    /// builds.
    pub fn verify(mut self, on: bool) -> Self {
        self.config.verify = on;
        self
    }

    /// How collections compact the heap. Default: concurrent MOVE (see
    /// [`HeapConfig::strategy`](movegc_gc::HeapConfig::strategy) for the
    /// trade-off).
    /// `ConcurrentMove` falls back to concurrent COPY or stop-the-world
    /// (saying so once on stderr) where the kernel cannot do it.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.config.strategy = strategy;
        self
    }

    /// How a mutator touching a page not yet compacted is served during a
    /// concurrent cycle. Default: [`FaultMode::Sigbus`] (the thread compacts
    /// the page itself in its SIGBUS handler).
    pub fn fault_mode(mut self, mode: FaultMode) -> Self {
        self.config.fault_mode = mode;
        self
    }

    /// Open userfaultfd only through `path` (default: least privilege
    /// first). Mostly for tests and diagnostics.
    pub fn userfaultfd_path(mut self, path: OpenPath) -> Self {
        self.config.uffd_path = Some(path);
        self
    }

    /// A stop of the world that waits this long for some thread names the
    /// thread on stderr and in [`HeapStats::late_threads`] (a loop that
    /// never allocates nor polls, or a mutator leaked with `mem::forget`).
    /// Default 5 s.
    pub fn safepoint_warn_after(mut self, after: std::time::Duration) -> Self {
        self.config.safepoint_warn_after = after;
        self
    }

    /// Creates the heap.
    pub fn build(mut self) -> Result<Heap> {
        if !self.min_free_set {
            self.config.min_free = (32 << 20).min(self.config.capacity / 4);
        }
        Ok(Heap {
            gc: GcHeap::new(self.config)?,
            id: Arc::new(()),
        })
    }
}
