//! Collection statistics: per-cycle phase times and volumes, the pauses
//! as users read them (labelled, time to safepoint apart), and heap-wide
//! run totals with latency histograms.

use std::time::Duration;

use crate::safepoint::StoppedWorld;
pub use crate::safepoint::{SlowFault, ThreadFaults, ThreadStats, FAULT_BUCKETS, WORST_FAULTS};

/// Which stop of the world a pause was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PauseKind {
    /// The first pause of a cycle that marks concurrently: root snapshot,
    /// barrier on.
    Initial,
    /// The last pause of a concurrent cycle: finish marking, compute the
    /// forwarding, update roots, flip (compaction follows while mutators
    /// run).
    Final,
    /// A concurrent cycle's pause that only finished marking: its remark
    /// marked something new, so the forwarding prepared while mutators
    /// ran no longer held; it is prepared again while they run, before
    /// the final pause (at most one per cycle, and only then).
    Remark,
    /// A whole collection with the world stopped.
    StopTheWorld,
}

impl PauseKind {
    /// Stable name used in the GC log and reports.
    pub fn name(self) -> &'static str {
        match self {
            PauseKind::Initial => "initial",
            PauseKind::Final => "final",
            PauseKind::Remark => "remark",
            PauseKind::StopTheWorld => "stop-the-world",
        }
    }
}

/// One stop of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    /// Which one.
    pub kind: PauseKind,
    /// How long every mutator was stopped, from the moment the last one
    /// reached its safepoint to the restart. Not counting
    /// `time_to_safepoint`.
    pub duration: Duration,
    /// How long the stop waited for running mutators to reach a safepoint
    /// (threads that had stopped already waited this long too).
    pub time_to_safepoint: Duration,
    /// The thread the stop waited for last ("'name' (tid N)"), if it waited
    /// for any: the one to look at when `time_to_safepoint` is long.
    pub last_to_safepoint: Option<String>,
}

impl Pause {
    /// A pause starting now that has just stopped `world`.
    pub(crate) fn begin(kind: PauseKind, world: &StoppedWorld<'_>) -> Pause {
        Pause {
            kind,
            duration: Duration::ZERO,
            time_to_safepoint: world.time_to_safepoint(),
            last_to_safepoint: world.last_to_safepoint().map(str::to_string),
        }
    }
}

/// A histogram of latencies in microseconds (HDR, 3 significant digits):
/// pauses, times to safepoint, fault stalls, allocation stalls.
#[derive(Clone)]
pub struct LatencyHistogram(pub hdrhistogram::Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram(hdrhistogram::Histogram::new(3).expect("3 significant digits"))
    }
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        // Auto-resizing: only a value past the format's range saturates
        // (`saturating_record` alone never resizes).
        if self.0.record(us).is_err() {
            self.0.saturating_record(us);
        }
    }

    /// Adds every value of `other`.
    pub fn add(&mut self, other: &LatencyHistogram) {
        // Auto-resizing histograms with the same precision always merge.
        self.0
            .add(&other.0)
            .expect("histograms of the same precision");
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q`-quantile (0..=1); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        match self.is_empty() {
            true => Duration::ZERO,
            false => Duration::from_micros(self.0.value_at_quantile(q)),
        }
    }

    /// The largest value; zero when empty.
    pub fn max(&self) -> Duration {
        match self.is_empty() {
            true => Duration::ZERO,
            false => Duration::from_micros(self.0.max()),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.0;
        if h.is_empty() {
            return write!(f, "LatencyHistogram(none)");
        }
        write!(
            f,
            "LatencyHistogram(n={} p50={}us p99={}us max={}us)",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        )
    }
}

/// Why a collection ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The embedder asked (`collect()`).
    Explicit,
    /// The heap-size policy: enough was allocated since the last cycle.
    Policy,
    /// An allocation did not fit.
    Exhausted,
}

/// How the pages of a cycle were produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// Flip in a short pause, then compact while mutators run; pages are
    /// installed with `UFFDIO_MOVE` from recycled from-space pages.
    ConcurrentMove,
    /// Flip in a short pause, then compact while mutators run; pages are
    /// installed with `UFFDIO_COPY` from per-thread buffers and the
    /// from-space is freed with `madvise` (the pre-MOVE baseline).
    ConcurrentCopy,
    /// Everything inside one pause: mark, compute forwarding, compact all
    /// pages in parallel, update roots.
    StopTheWorld,
}

impl Strategy {
    /// Stable name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::ConcurrentMove => "concurrent-move",
            Strategy::ConcurrentCopy => "concurrent-copy",
            Strategy::StopTheWorld => "stop-the-world",
        }
    }

    /// Parses a [`name`](Self::name) (also accepts `move`, `copy`, `stw`).
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "concurrent-move" | "move" => Some(Strategy::ConcurrentMove),
            "concurrent-copy" | "copy" => Some(Strategy::ConcurrentCopy),
            "stop-the-world" | "stw" => Some(Strategy::StopTheWorld),
            _ => None,
        }
    }

    /// Whether the strategy compacts while mutators run.
    pub fn is_concurrent(self) -> bool {
        !matches!(self, Strategy::StopTheWorld)
    }
}

/// Bytes as a short human figure (`12.3M`, `640K`, `900B`).
fn bytes(b: usize) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2}G", b / (1u64 << 30) as f64)
    } else if b >= (1 << 20) as f64 {
        format!("{:.1}M", b / (1 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.0}K", b / 1024.0)
    } else {
        format!("{b:.0}B")
    }
}

/// A time to safepoint from which the GC log names the last thread.
const SLOW_SAFEPOINT: Duration = Duration::from_millis(1);

fn ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1e3)
}

impl CycleStats {
    /// The cycle as one line of the GC log (`MOVEGC_LOG=gc`; see
    /// `HeapConfig::gc_log`): number, kind and why, strategy, heap before
    /// and after, live, each pause with its time to safepoint apart,
    /// marking, compaction, pages and faults. For example:
    ///
    /// ```text
    /// gc #12 young (policy) concurrent-move 40.2M->9.1M live 8.9M (old 6.0M, 14 dirty pages) \
    ///   pauses initial 0.090ms final 0.210ms (ttsp 0.011ms) mark 0.8ms compact 3.1ms (cpu 2.6ms) \
    ///   pages 1540 in place (1530 clean, 1530 kept) 3 compacted 96 black moved 1639 copied 2 prefilled 9000 faults 4 (p99 31us) cycle 5.2ms
    /// ```
    pub fn log_line(&self) -> String {
        use std::fmt::Write;
        let kind = match (self.young, self.full_reason) {
            (true, _) => "young".to_string(),
            (false, Some(r)) => format!("full[{r:?}]"),
            (false, None) => "full".to_string(),
        };
        let trigger = match self.trigger {
            Some(Trigger::Explicit) => "explicit",
            Some(Trigger::Policy) => "policy",
            Some(Trigger::Exhausted) => "exhausted",
            None => "?",
        };
        let strategy = self.strategy.map_or("?", |s| s.name());
        let after = self.used_before.saturating_sub(self.freed_bytes);
        let mut l = format!(
            "gc #{} {kind} ({trigger}) {strategy} {}->{} live {}",
            self.cycle,
            bytes(self.used_before),
            bytes(after),
            bytes(self.live_bytes)
        );
        if self.young {
            let _ = write!(
                l,
                " (old {}, {} dirty pages",
                bytes(self.old_bytes),
                self.remembered_pages
            );
            if self.remembered_set == Some(crate::RememberedSet::WriteProtect) {
                let _ = write!(
                    l,
                    ", {} written by scan {}",
                    self.written_pages,
                    ms(self.written_scan)
                );
            }
            l.push(')');
        }
        l.push_str(" pauses");
        for p in &self.pauses {
            let _ = write!(
                l,
                " {} {} (ttsp {}",
                p.kind.name(),
                ms(p.duration),
                ms(p.time_to_safepoint)
            );
            match &p.last_to_safepoint {
                // Worth naming when the stop waited noticeably.
                Some(t) if p.time_to_safepoint >= SLOW_SAFEPOINT => {
                    let _ = write!(l, ", last {t})");
                }
                _ => l.push(')'),
            }
        }
        let _ = write!(
            l,
            " mark {} compact {} (cpu {})",
            ms(self.mark),
            ms(self.compaction),
            ms(self.compaction_cpu)
        );
        let _ = write!(l, " pages {} in place", self.dense_pages);
        if self.prefix_clean > 0 {
            let _ = write!(l, " ({} clean, {} kept", self.prefix_clean, self.kept_pages);
            if self.prefix_unread > 0 {
                let _ = write!(l, ", {} unread", self.prefix_unread);
            }
            l.push(')');
        }
        let _ = write!(
            l,
            " {} compacted {} black",
            self.pages_compacted, self.black_pages
        );
        match (self.black_resident, self.black_dirty_pages) {
            (true, d) => {
                let _ = write!(l, " (not flipped, {d} dirty)");
            }
            (false, 0) => {}
            (false, d) => {
                let _ = write!(l, " ({d} dirty)");
            }
        }
        if self.strategy.is_some_and(|s| s.is_concurrent()) {
            let _ = write!(
                l,
                " moved {} copied {} prefilled {} faults {}",
                self.pages_moved, self.pages_copied, self.pages_prefilled, self.faults
            );
            if let Some(st) = self.fault_stall_us.as_ref().filter(|s| !s.0.is_empty()) {
                let _ = write!(l, " (p99 {}us", st.0.value_at_quantile(0.99));
                // Who waited, the three that waited longest.
                for t in self.fault_threads.iter().take(3) {
                    let _ = write!(l, "; {} {} {}", t.thread, t.faults, ms(t.stall));
                }
                l.push(')');
            }
        }
        if self.pacing_delays > 0 {
            let _ = write!(
                l,
                " paced {} ({})",
                self.pacing_delays,
                ms(self.pacing_delay)
            );
        }
        if self.poisoned_pages > 0 {
            let _ = write!(l, " poisoned {}", bytes(self.poisoned_pages * 4096));
        }
        let _ = write!(l, " cycle {}", ms(self.cycle_time));
        if self.next_collection_at > 0 {
            let _ = write!(l, " next at {}", bytes(self.next_collection_at));
        }
        l
    }
}

/// Why a cycle collected the whole heap instead of only what was allocated
/// since the last one (see [`CycleStats::young`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FullReason {
    /// Young collections are off (`HeapConfig::generational`).
    NotGenerational,
    /// No cycle has made an old region yet, or the last one could not end
    /// it on a page boundary (the heap was nearly full).
    NoOldGeneration,
    /// The embedder asked for a collection (`collect()` is always full).
    Explicit,
    /// An allocation did not fit.
    Exhausted,
    /// The last young cycle freed less than a tenth of what it examined.
    PoorYoungYield,
    /// The last young cycle found more than a quarter of the old pages
    /// dirty (it scanned and fixed most of the old region anyway; a full
    /// cycle also frees the old garbage such a program makes).
    MostlyDirty,
    /// The old region grew past twice its size after the last full cycle
    /// (at least twice `min_free`), or past 3/4 of the capacity.
    OldGrew,
}

/// What one collection did and how long each phase took.
#[derive(Clone, Debug, Default)]
pub struct CycleStats {
    /// 1-based cycle number.
    pub cycle: u64,
    /// Strategy used (`None` only in `Default`).
    pub strategy: Option<Strategy>,
    /// Why it ran.
    pub trigger: Option<Trigger>,
    /// Time mutators were stopped: the whole pause of a stop-the-world
    /// cycle, the flip pause of a concurrent one (with concurrent marking:
    /// the final pause, see also `initial_pause`). From the last mutator
    /// reaching its safepoint to the restart: `time_to_safepoint` apart.
    pub pause: Duration,
    /// With concurrent marking, the first pause (root snapshot); zero
    /// otherwise.
    pub initial_pause: Duration,
    /// Every pause of the cycle, in order, labelled, each with its time to
    /// safepoint and the thread the stop waited for last.
    pub pauses: Vec<Pause>,
    /// With concurrent marking, finishing marking inside the final pause
    /// (drain the barrier's log, walk what was allocated meanwhile), and
    /// in the remark pause if there was one.
    pub remark: Duration,
    /// Remark pauses ([`PauseKind::Remark`]): 1 when the final pause's
    /// remark marked something new after the forwarding was prepared while
    /// mutators ran, and the cycle prepared it again outside the pause
    /// rather than inside.
    pub remark_pauses: usize,
    /// Waiting for all mutators to reach a safepoint, summed over the
    /// cycle's pauses (not included in `pause` and `initial_pause`; see
    /// `pauses` for each).
    pub time_to_safepoint: Duration,
    /// Marking (with concurrent marking: while mutators ran).
    pub mark: Duration,
    /// Chunk offsets, dense prefix, page-start table (in the pause).
    pub prepare: Duration,
    /// The same prepared speculatively while mutators ran, after
    /// concurrent marking; when the final pause marks nothing new in the
    /// old region it uses that and its own `prepare` is next to nothing.
    pub prepare_outside: Duration,
    /// Whether the final pause used that speculative prepare.
    pub prepare_reused: bool,
    /// A young cycle: only what was allocated since the last cycle was
    /// marked and compacted; the old region stayed in place.
    pub young: bool,
    /// Used bytes (moving space and large objects) at which the heap-size
    /// policy starts the next cycle, as decided when this one ended.
    pub next_collection_at: usize,
    /// TLAB refills that allocation pacing delayed during this cycle's
    /// marking (`HeapConfig::pacing_max_delay`), and their summed delay.
    pub pacing_delays: u64,
    /// Their summed delay.
    pub pacing_delay: Duration,
    /// Why a full cycle was full (`None` for a young one).
    pub full_reason: Option<FullReason>,
    /// Bytes of the old region a young cycle kept without marking them.
    pub old_bytes: usize,
    /// Old pages whose card was dirty (their references were scanned as
    /// roots and rewritten in place).
    pub remembered_pages: usize,
    /// Scanning them (inside the pause for stop-the-world, in the marker
    /// thread for concurrent marking).
    pub remembered_scan: Duration,
    /// The builder of a young cycle's remembered set
    /// (`HeapConfig::remembered_set` after fallbacks); `None` for a full
    /// cycle.
    pub remembered_set: Option<crate::RememberedSet>,
    /// With [`RememberedSet::WriteProtect`](crate::RememberedSet): the
    /// pages `PAGEMAP_SCAN` reported written since the old region was
    /// protected (all of it in a forked child's first cycle).
    pub written_pages: usize,
    /// That scan.
    pub written_scan: Duration,
    /// No scan: every old page was taken as written (a forked child's
    /// first cycle, whose heap inherits no write protection, or a failed
    /// scan). The young policy does not count these pages as dirty (a full
    /// cycle would unshare a zygote's pages for nothing).
    pub written_assumed: bool,
    /// Protecting the old region again at the end of the cycle
    /// (registration and `UFFDIO_WRITEPROTECT`; mutators running in a
    /// concurrent cycle).
    pub write_protect: Duration,
    /// Pages a concurrent cycle left in place at its flip, never moved
    /// out nor faulted on: a young cycle's whole old region (when few
    /// enough of them were dirty; the dirty ones fixed in the final
    /// pause), or the clean pages at the bottom of a full cycle's dense
    /// prefix (`prefix_clean`).
    pub kept_pages: usize,
    /// Dense-prefix pages of a full cycle that needed no fix: fixed by the
    /// last full cycle, no object on them died since and none of their
    /// references moves (`HeapConfig::keep_clean_prefix`). A stop-the-world
    /// cycle skips them; a concurrent one keeps those at the bottom out of
    /// the flip (`kept_pages`) and fixes the others with the rest.
    pub prefix_clean: usize,
    /// Fixing the dirty kept pages and a resident black block's dirty
    /// slots (inside the final pause).
    pub kept_fix: Duration,
    /// Unregistering the heap from write tracking before the flip (while
    /// mutators run, after concurrent marking's scan; see `dirty`).
    pub write_unregister: Duration,
    /// Moving the space's pages to the from-space.
    pub flip: Duration,
    /// Producing all to-space pages (and updating dense pages).
    pub compact: Duration,
    /// Updating roots and large objects' references, sweeping large objects.
    pub update_roots: Duration,
    /// Releasing the from-space and clearing metadata.
    pub release: Duration,
    /// Heap verification (debug and test builds).
    pub verify: Duration,
    /// Moving-space bytes in use before the cycle.
    pub used_before: usize,
    /// Live bytes in the moving space after marking.
    pub live_bytes: usize,
    /// Live objects in the moving space (without a concurrent cycle's
    /// black block, which is kept whole without being walked: its bytes
    /// are in `live_bytes`).
    pub live_objects: usize,
    /// Bytes reclaimed (moving space and large objects).
    pub freed_bytes: usize,
    /// Bytes that changed address.
    pub moved_bytes: usize,
    /// To-space pages produced by `compact_page`.
    pub pages_compacted: usize,
    /// CPU time the compaction cost, whichever threads did it: the
    /// collector's threads over the compaction (the span of `compaction`: the
    /// compact phase of a stop-the-world cycle, flip end to the last page
    /// mapped of a concurrent one) and, in a concurrent cycle, the faults
    /// on pages with data that mutators resolved (their stall: an upper
    /// bound) or the fault handler thread's CPU less its zero-fills. The
    /// work, where `compaction` is the time a concurrent cycle takes beside
    /// running mutators. Zero-filling the allocation region on a fault is
    /// not counted: it is allocation's page supply (a stop-the-world cycle
    /// leaves those pages resident, zeroed when TLABs are handed out).
    pub compaction_cpu: Duration,
    /// Pages of the dense prefix updated in place (not compacted).
    pub dense_pages: usize,
    /// Pages of the black block (what was allocated while a concurrent
    /// cycle marked): kept where they are, only their dirty slots (those
    /// given a reference to an older object while the cycle marked)
    /// rewritten, and the pages moved back, not compacted.
    pub black_pages: usize,
    /// Of those, the pages put back after the flip (by GC threads or fault
    /// resolvers); equals `black_pages` when every page went back once,
    /// 0 when the block was not flipped (`black_resident`).
    pub black_fixed: usize,
    /// The black block stayed out of the flip: its few dirty slots were
    /// rewritten in the final pause and its pages stayed present
    /// (`HeapConfig::pause_black_slots`).
    pub black_resident: bool,
    /// Of those, the pages that had dirty slots to rewrite (the others
    /// were not read).
    pub black_dirty_pages: usize,
    /// The dirty slots of the black block rewritten.
    pub black_slots: usize,
    /// Of the dense pages, in a concurrent cycle, the pages whose references were
    /// rewritten after the flip (in their from-space page, then moved or
    /// copied back); with `prefix_unread` and `kept_pages`, equals
    /// `dense_pages` when every page was fixed once.
    pub prefix_pages: usize,
    /// Of the dense pages, in a concurrent full cycle, the clean ones above
    /// the kept run (`prefix_clean`): flipped and put back as they were,
    /// not read.
    pub prefix_unread: usize,
    /// Live large objects.
    pub large_objects_live: usize,
    /// Large objects freed.
    pub large_objects_freed: usize,
    /// `madvise` calls made during the cycle.
    pub madvise_calls: usize,
    /// How faults were served (concurrent cycles).
    pub fault_mode: Option<crate::concurrent::FaultMode>,
    /// Compaction completion time: for concurrent cycles from the end of
    /// the flip pause to the last page mapped; for stop-the-world cycles the
    /// compact phase.
    pub compaction: Duration,
    /// Per GC compaction thread: flip end to the thread's last page.
    pub compaction_per_thread: Vec<Duration>,
    /// From the start of the pause to the end of the cycle.
    pub cycle_time: Duration,
    /// What follows the compaction: for a concurrent cycle, from its last
    /// page mapped to the cycle's end (unregister, drain the resolvers,
    /// release the from-space, hand the metadata back); for a
    /// stop-the-world one, its `release`.
    pub after_compaction: Duration,
    /// Pages installed with `UFFDIO_MOVE`.
    pub pages_moved: usize,
    /// Pages installed with `UFFDIO_COPY`.
    pub pages_copied: usize,
    /// Allocation-region pages zero-filled on a fault.
    pub pages_zero_filled: usize,
    /// Of those, recycled from-space pages zeroed and moved in (MOVE mode:
    /// no page allocated).
    pub pages_zero_recycled: usize,
    /// Recycled from-space pages zeroed and moved into the allocation
    /// region after compaction (MOVE mode), so that allocating until the
    /// next cycle takes no page fault.
    pub pages_prefilled: usize,
    /// CPU time of that prefill (zeroing and moving the pages), on the
    /// compaction driver. Allocation work (a page fault would have done
    /// it), so not counted in the collector's CPU time.
    pub prefill_cpu: Duration,
    /// From-space pages still resident at the end, released.
    pub pages_released: usize,
    /// Faults the cycle resolved for a thread that is no mutator of the
    /// heap (none is expected: a thread that touches the heap is attached).
    pub faults_unattributed: usize,
    /// Stale-reference mode: pages of free space poisoned after the cycle
    /// (its whole window, freed by this cycle or earlier ones).
    pub poisoned_pages: usize,
    /// MOVE ioctls issued.
    pub move_ioctls: usize,
    /// COPY ioctls issued.
    pub copy_ioctls: usize,
    /// Pages copied because MOVE said `EBUSY`.
    pub ebusy_fallbacks: usize,
    /// MOVE mode: pages the GC threads copied because their run was
    /// shorter than `HeapConfig::min_move_run`: mutators had installed the
    /// pages around them, or the recycler had fewer free pages than a
    /// block needed, or a dense-prefix or black-block run was cut short.
    /// Their source pages stay resident until the cycle ends.
    pub short_run_copies: usize,
    /// Partial MOVE/COPY retried after `EAGAIN`.
    pub eagain_retries: usize,
    /// Pages found already installed (`EEXIST`).
    pub eexist: usize,
    /// GC pages that went through a buffer because no recycled page was free.
    pub recycle_shortfall: usize,
    /// Pages of large objects with references whose references a
    /// concurrent cycle rewrote after its flip (in place, then moved or
    /// copied back) instead of in the pause.
    pub arena_pages: usize,
    /// Mutator faults on pages not yet compacted (resolved or waited).
    pub faults: usize,
    /// Faults whose page another thread was already producing.
    pub fault_waits: usize,
    /// Fault-resolution times, microseconds.
    pub fault_stall_us: Option<LatencyHistogram>,
    /// The threads that took faults during this cycle, longest summed
    /// stall first (see `ThreadFaults` for what counts).
    pub fault_threads: Vec<CycleThreadFaults>,
}

/// One thread's faults during one cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CycleThreadFaults {
    /// The thread ("'name' (tid N)").
    pub thread: String,
    /// Its faults.
    pub faults: u64,
    /// Their stalls summed.
    pub stall: Duration,
}

impl CycleStats {
    /// Fault stall at quantile `q` in microseconds (0 without faults).
    pub fn fault_stall_quantile_us(&self, q: f64) -> u64 {
        self.fault_stall_us
            .as_ref()
            .filter(|h| !h.0.is_empty())
            .map_or(0, |h| h.0.value_at_quantile(q))
    }

    /// Longest fault stall in microseconds.
    pub fn fault_stall_max_us(&self) -> u64 {
        self.fault_stall_us
            .as_ref()
            .filter(|h| !h.0.is_empty())
            .map_or(0, |h| h.0.max())
    }

    /// Ends the pause begun last (`pauses`' last entry, pushed when the
    /// world stopped) as a `kind` pause that began at `start`; returns its
    /// duration, which also becomes `pause` (the cycle's last pause).
    pub(crate) fn end_pause(&mut self, kind: PauseKind, start: std::time::Instant) -> Duration {
        let d = start.elapsed();
        let p = self.pauses.last_mut().expect("a pause was begun");
        p.kind = kind;
        p.duration = d;
        self.pause = d;
        d
    }
}

/// Heap-wide statistics: run totals since the heap was created, latency
/// histograms, each mutator thread's waits, the cycle in progress and the
/// most recent cycles.
#[derive(Clone, Debug, Default)]
pub struct HeapStats {
    /// Completed collections.
    pub cycles: u64,
    /// Of those, young ones (`CycleStats::young`).
    pub young_cycles: u64,
    /// Of those, full ones.
    pub full_cycles: u64,
    /// Completed collections by what started them.
    pub cycles_explicit: u64,
    /// ... by the heap-size policy.
    pub cycles_policy: u64,
    /// ... by an allocation that did not fit.
    pub cycles_exhausted: u64,
    /// Sum of pauses (time to safepoint apart).
    pub total_pause: Duration,
    /// Longest pause.
    pub max_pause: Duration,
    /// Every pause (a cycle with concurrent marking has two, three with a
    /// remark pause).
    pub pause_histogram: LatencyHistogram,
    /// Sum of the times to safepoint of every pause.
    pub total_time_to_safepoint: Duration,
    /// Longest time to safepoint.
    pub max_time_to_safepoint: Duration,
    /// Every pause's time to safepoint.
    pub time_to_safepoint_histogram: LatencyHistogram,
    /// The thread the longest time to safepoint waited for.
    pub max_time_to_safepoint_thread: Option<String>,
    /// Total marking time (concurrent or in pauses).
    pub total_mark: Duration,
    /// Total compaction time (see `CycleStats::compaction`).
    pub total_compaction: Duration,
    /// Mutator faults on pages not yet compacted (concurrent cycles).
    pub faults: u64,
    /// Their stalls, every cycle's merged.
    pub fault_stalls: LatencyHistogram,
    /// Allocations that waited for a collection to make room (every
    /// thread's, also of threads since detached).
    pub alloc_stalls: u64,
    /// Their total wait.
    pub alloc_stall_total: Duration,
    /// Their waits.
    pub alloc_stall_histogram: LatencyHistogram,
    /// TLAB refills that allocation pacing delayed (every thread's): the
    /// small waits that spread a would-be stall over many allocations.
    pub pacing_delays: u64,
    /// Their summed delay.
    pub pacing_delay_total: Duration,
    /// Each attached mutator thread: its allocation stalls and how often
    /// the world waited for it.
    pub threads: Vec<ThreadStats>,
    /// The same summed over mutators that have detached.
    pub detached_threads: ThreadStats,
    /// The last 64 detached mutators' own counters, oldest first (a
    /// program's per-thread figures after its threads have ended).
    pub recent_detached: Vec<ThreadStats>,
    /// Total bytes reclaimed.
    pub freed_bytes: u64,
    /// Total bytes moved.
    pub moved_bytes: u64,
    /// Total to-space pages compacted.
    pub pages_compacted: u64,
    /// Total pages installed with `UFFDIO_MOVE` (concurrent cycles).
    pub pages_moved: u64,
    /// Total pages installed with `UFFDIO_COPY` (concurrent cycles).
    pub pages_copied: u64,
    /// Total allocation-region pages zero-filled on a fault.
    pub pages_zero_filled: u64,
    /// Total from-space pages released at the end of a cycle.
    pub pages_released: u64,
    /// Faults resolved for threads that are no mutator of the heap.
    pub faults_unattributed: u64,
    /// Stale-reference mode: pages poisoned after cycles (a page free for
    /// several cycles counts once per cycle).
    pub poisoned_pages: u64,
    /// Stale-reference mode: poisoned pages dropped again as allocation
    /// handed them out.
    pub unpoisoned_pages: u64,
    /// CPU time of the collector since the heap was created: its threads
    /// (workers, marker, compaction driver, fault handler), its pauses,
    /// and the faults mutators resolved themselves; not the zeroing of the
    /// allocation region's prefill (`CycleStats::prefill_cpu`), which is
    /// allocation work.
    pub gc_cpu: Duration,
    /// CPU time of the whole process over the same span.
    pub process_cpu: Duration,
    /// Live bytes after the last collection (moving space + large objects).
    pub live_bytes: usize,
    /// Bytes in use (moving space and large objects) at which the
    /// heap-size policy starts the next collection.
    pub next_collection_at: usize,
    /// The size policy's free budget now: what it lets mutators allocate
    /// beyond the live data (before the growth-factor floor), adapted to
    /// the collector's CPU share (`HeapConfig::gc_cpu_target`).
    pub free_budget: usize,
    /// Moving-space bytes in use now (live data plus handed-out TLABs).
    pub used_bytes: usize,
    /// Large-object bytes now.
    pub large_object_bytes: usize,
    /// Heap capacity.
    pub capacity: usize,
    /// The cycle running now, if any.
    pub in_progress: Option<CycleProgress>,
    /// The most recent cycles (up to `RECENT_CYCLES`), oldest first.
    pub recent: Vec<CycleStats>,
    /// Threads that held a stop of the world up past
    /// `HeapConfig::safepoint_warn_after` ("'name' (tid N)", most recent
    /// last, at most 16).
    pub late_threads: Vec<String>,
}

/// Most recent cycles kept in `HeapStats::recent`.
pub const RECENT_CYCLES: usize = 1024;

/// A cycle that has started and not ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleProgress {
    /// Its number.
    pub cycle: u64,
    /// Its strategy.
    pub strategy: Strategy,
    /// Whether it is a young cycle.
    pub young: bool,
    /// What it is doing.
    pub phase: Phase,
    /// Since its first pause began.
    pub elapsed: Duration,
    /// Bytes in use when it started.
    pub used_before: usize,
}

/// What a running cycle is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Marking while mutators run (between the initial and final pause).
    Marking,
    /// Marking is complete (a remark pause ended it, [`PauseKind::Remark`])
    /// and the forwarding is prepared again while mutators run, before the
    /// final pause.
    Preparing,
    /// Compacting while mutators run (after the final pause).
    Compacting,
}

impl HeapStats {
    /// The `q`-quantile (0..=1) of pause times, or zero without cycles.
    pub fn pause_quantile(&self, q: f64) -> Duration {
        self.pause_histogram.quantile(q)
    }

    /// The collector's share of the process's CPU time since the heap was
    /// created (0..=1; 0 before any CPU time was measured).
    pub fn gc_cpu_share(&self) -> f64 {
        match self.process_cpu.is_zero() {
            true => 0.0,
            false => (self.gc_cpu.as_secs_f64() / self.process_cpu.as_secs_f64()).min(1.0),
        }
    }

    /// Adds a finished cycle to the totals (not to `recent`, which the
    /// heap keeps in a ring).
    pub(crate) fn record(&mut self, c: &CycleStats) {
        self.cycles += 1;
        match c.young {
            true => self.young_cycles += 1,
            false => self.full_cycles += 1,
        }
        match c.trigger {
            Some(Trigger::Explicit) => self.cycles_explicit += 1,
            Some(Trigger::Policy) => self.cycles_policy += 1,
            Some(Trigger::Exhausted) => self.cycles_exhausted += 1,
            None => {}
        }
        for p in &c.pauses {
            self.total_pause += p.duration;
            self.max_pause = self.max_pause.max(p.duration);
            self.pause_histogram.record(p.duration);
            self.total_time_to_safepoint += p.time_to_safepoint;
            self.time_to_safepoint_histogram.record(p.time_to_safepoint);
            if p.time_to_safepoint > self.max_time_to_safepoint {
                self.max_time_to_safepoint = p.time_to_safepoint;
                self.max_time_to_safepoint_thread = p.last_to_safepoint.clone();
            }
        }
        self.total_mark += c.mark;
        self.total_compaction += c.compaction;
        self.faults += c.faults as u64;
        if let Some(h) = &c.fault_stall_us {
            self.fault_stalls.add(h);
        }
        self.freed_bytes += c.freed_bytes as u64;
        self.moved_bytes += c.moved_bytes as u64;
        self.pages_compacted += c.pages_compacted as u64;
        self.pages_moved += c.pages_moved as u64;
        self.pages_copied += c.pages_copied as u64;
        self.pages_zero_filled += c.pages_zero_filled as u64;
        self.pages_released += c.pages_released as u64;
        self.poisoned_pages += c.poisoned_pages as u64;
        self.faults_unattributed += c.faults_unattributed as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_says_kind_cause_sizes_and_pauses() {
        let young = CycleStats {
            cycle: 12,
            strategy: Some(Strategy::ConcurrentMove),
            trigger: Some(Trigger::Policy),
            young: true,
            old_bytes: 6 << 20,
            remembered_pages: 14,
            used_before: 40 << 20,
            freed_bytes: 31 << 20,
            live_bytes: 9 << 20,
            initial_pause: Duration::from_micros(90),
            pause: Duration::from_micros(210),
            pauses: vec![
                Pause {
                    kind: PauseKind::Initial,
                    duration: Duration::from_micros(90),
                    time_to_safepoint: Duration::from_micros(11),
                    last_to_safepoint: Some("'worker' (tid 7)".into()),
                },
                Pause {
                    kind: PauseKind::Final,
                    duration: Duration::from_micros(210),
                    time_to_safepoint: Duration::from_millis(3),
                    last_to_safepoint: Some("'ui' (tid 8)".into()),
                },
            ],
            time_to_safepoint: Duration::from_micros(3011),
            dense_pages: 1540,
            pages_moved: 1639,
            compaction: Duration::from_micros(3100),
            compaction_cpu: Duration::from_micros(2600),
            ..Default::default()
        };
        let l = young.log_line();
        for part in [
            "gc #12 young (policy) concurrent-move 40.0M->9.0M live 9.0M",
            "(old 6.0M, 14 dirty pages)",
            // The last thread is named only when the stop waited long.
            "pauses initial 0.090ms (ttsp 0.011ms) final 0.210ms (ttsp 3.000ms, last 'ui' (tid 8))",
            "pages 1540 in place",
            "moved 1639",
            "compact 3.100ms (cpu 2.600ms)",
        ] {
            assert!(l.contains(part), "{part:?} missing from {l:?}");
        }
        let full = CycleStats {
            strategy: Some(Strategy::StopTheWorld),
            trigger: Some(Trigger::Exhausted),
            full_reason: Some(FullReason::Exhausted),
            pause: Duration::from_millis(3),
            pauses: vec![Pause {
                kind: PauseKind::StopTheWorld,
                duration: Duration::from_millis(3),
                time_to_safepoint: Duration::ZERO,
                last_to_safepoint: None,
            }],
            ..Default::default()
        };
        let l = full.log_line();
        assert!(
            l.contains("full[Exhausted] (exhausted) stop-the-world"),
            "{l}"
        );
        // The clean prefix, kept and unread pages (the latter only if any).
        let prefix = |unread| CycleStats {
            dense_pages: 300,
            prefix_clean: 250,
            kept_pages: 100,
            prefix_unread: unread,
            ..full.clone()
        };
        let l = prefix(140).log_line();
        assert!(
            l.contains("pages 300 in place (250 clean, 100 kept, 140 unread)"),
            "{l}"
        );
        let l = prefix(0).log_line();
        assert!(l.contains("in place (250 clean, 100 kept) "), "{l}");
        assert!(
            l.contains(" pauses stop-the-world 3.000ms (ttsp 0.000ms)") && !l.contains("moved"),
            "{l}"
        );
    }

    #[test]
    fn latency_histograms_give_quantiles_and_merge() {
        let mut a = LatencyHistogram::default();
        assert_eq!(a.quantile(0.5), Duration::ZERO, "empty");
        for ms in 1..=100 {
            a.record(Duration::from_millis(ms));
        }
        let near = |d: Duration, ms: u64| {
            d.abs_diff(Duration::from_millis(ms)) <= Duration::from_micros(ms * 2)
        };
        assert!(near(a.quantile(0.5), 50), "{:?}", a.quantile(0.5));
        assert!(near(a.quantile(0.99), 99), "{:?}", a.quantile(0.99));
        assert!(near(a.max(), 100));
        let mut b = LatencyHistogram::default();
        b.record(Duration::from_secs(2));
        a.add(&b);
        assert_eq!(a.len(), 101);
        assert!(near(a.max(), 2000));
    }

    #[test]
    fn heap_totals_count_pauses_by_kind_and_the_slowest_safepoint() {
        let pause = |kind, us, ttsp_us, last: Option<&str>| Pause {
            kind,
            duration: Duration::from_micros(us),
            time_to_safepoint: Duration::from_micros(ttsp_us),
            last_to_safepoint: last.map(str::to_string),
        };
        let mut h = HeapStats::default();
        h.record(&CycleStats {
            young: true,
            trigger: Some(Trigger::Policy),
            pauses: vec![
                pause(PauseKind::Initial, 100, 5, Some("a")),
                pause(PauseKind::Final, 300, 900, Some("b")),
            ],
            pages_moved: 7,
            faults: 3,
            ..Default::default()
        });
        h.record(&CycleStats {
            trigger: Some(Trigger::Exhausted),
            pauses: vec![pause(PauseKind::StopTheWorld, 2000, 10, None)],
            ..Default::default()
        });
        assert_eq!((h.cycles, h.young_cycles, h.full_cycles), (2, 1, 1));
        assert_eq!(
            (h.cycles_policy, h.cycles_exhausted, h.cycles_explicit),
            (1, 1, 0)
        );
        assert_eq!(h.pause_histogram.len(), 3);
        assert_eq!(h.total_pause, Duration::from_micros(2400));
        assert_eq!(h.max_pause, Duration::from_micros(2000));
        assert_eq!(h.total_time_to_safepoint, Duration::from_micros(915));
        assert_eq!(h.max_time_to_safepoint, Duration::from_micros(900));
        assert_eq!(h.max_time_to_safepoint_thread.as_deref(), Some("b"));
        assert_eq!((h.pages_moved, h.faults), (7, 3));
    }
}
