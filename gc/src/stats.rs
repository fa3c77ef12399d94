//! Collection statistics: per-cycle phase times and volumes, and heap-wide
//! aggregates with pause percentiles.

use std::time::Duration;

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
    ///   pauses initial 0.090ms final 0.210ms (ttsp 0.011ms) mark 0.8ms compact 3.1ms \
    ///   pages 1540 in place 3 compacted 96 black moved 1639 copied 2 faults 4 (p99 31us) cycle 5.2ms
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
                " (old {}, {} dirty pages)",
                bytes(self.old_bytes),
                self.remembered_pages
            );
        }
        if self.initial_pause > Duration::ZERO {
            let _ = write!(
                l,
                " pauses initial {} final {}",
                ms(self.initial_pause),
                ms(self.pause)
            );
        } else {
            let _ = write!(l, " pause {}", ms(self.pause));
        }
        let _ = write!(
            l,
            " (ttsp {} included) mark {} compact {}",
            ms(self.time_to_safepoint),
            ms(self.mark),
            ms(self.compaction)
        );
        let _ = write!(
            l,
            " pages {} in place {} compacted {} black",
            self.dense_pages, self.pages_compacted, self.black_pages
        );
        if self.strategy.is_some_and(|s| s.is_concurrent()) {
            let _ = write!(
                l,
                " moved {} copied {} faults {}",
                self.pages_moved, self.pages_copied, self.faults
            );
            if let Some(st) = self.fault_stall_us.as_ref().filter(|s| !s.0.is_empty()) {
                let _ = write!(l, " (p99 {}us)", st.0.value_at_quantile(0.99));
            }
        }
        let _ = write!(l, " cycle {}", ms(self.cycle_time));
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
    /// (at least 1/16 of the capacity), or past 3/4 of the capacity.
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
    /// the final pause, see also `initial_pause`).
    pub pause: Duration,
    /// With concurrent marking, the first pause (root snapshot); zero
    /// otherwise.
    pub initial_pause: Duration,
    /// With concurrent marking, finishing marking inside the final pause
    /// (drain the barrier's log, walk what was allocated meanwhile).
    pub remark: Duration,
    /// Waiting for all mutators to reach a safepoint (summed over the
    /// cycle's pauses; included in them).
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
    /// Live objects in the moving space.
    pub live_objects: usize,
    /// Bytes reclaimed (moving space and large objects).
    pub freed_bytes: usize,
    /// Bytes that changed address.
    pub moved_bytes: usize,
    /// To-space pages produced by `compact_page`.
    pub pages_compacted: usize,
    /// Pages of the dense prefix updated in place (not compacted).
    pub dense_pages: usize,
    /// Pages of the black block (what was allocated while a concurrent
    /// cycle marked): slid down whole pages at a time, their references
    /// rewritten in place and the pages moved, not compacted.
    pub black_pages: usize,
    /// Of those, the pages fixed after the flip (by GC threads or fault
    /// resolvers); equals `black_pages` when every page was fixed once.
    pub black_fixed: usize,
    /// Of the dense pages, in a concurrent cycle, the pages whose references were
    /// rewritten after the flip (in their from-space page, then moved or
    /// copied back); equals `dense_pages` when every page was fixed once.
    pub prefix_pages: usize,
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
    /// Pages installed with `UFFDIO_MOVE`.
    pub pages_moved: usize,
    /// Pages installed with `UFFDIO_COPY`.
    pub pages_copied: usize,
    /// Allocation-region pages zero-filled on a fault.
    pub pages_zero_filled: usize,
    /// Of those, recycled from-space pages zeroed and moved in (MOVE mode:
    /// no page allocated).
    pub pages_zero_recycled: usize,
    /// From-space pages still resident at the end, released.
    pub pages_released: usize,
    /// MOVE ioctls issued.
    pub move_ioctls: usize,
    /// COPY ioctls issued.
    pub copy_ioctls: usize,
    /// Pages copied because MOVE said `EBUSY`.
    pub ebusy_fallbacks: usize,
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
    pub fault_stall_us: Option<Stalls>,
}

/// A histogram of fault stalls in microseconds.
#[derive(Clone)]
pub struct Stalls(pub hdrhistogram::Histogram<u64>);

impl std::fmt::Debug for Stalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.0;
        if h.is_empty() {
            return write!(f, "Stalls(none)");
        }
        write!(
            f,
            "Stalls(n={} p50={}us p99={}us max={}us)",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        )
    }
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
}

/// Heap-wide statistics.
#[derive(Clone, Debug, Default)]
pub struct HeapStats {
    /// Completed collections.
    pub cycles: u64,
    /// Sum of pauses.
    pub total_pause: Duration,
    /// Longest pause.
    pub max_pause: Duration,
    /// Every pause, in order (for percentiles); a cycle with concurrent
    /// marking has two.
    pub pauses: Vec<Duration>,
    /// Total bytes reclaimed.
    pub freed_bytes: u64,
    /// Total bytes moved.
    pub moved_bytes: u64,
    /// Total pages installed with `UFFDIO_MOVE` (concurrent cycles).
    pub pages_moved: u64,
    /// Total pages installed with `UFFDIO_COPY` (concurrent cycles).
    pub pages_copied: u64,
    /// Live bytes after the last collection (moving space + large objects).
    pub live_bytes: usize,
    /// Moving-space bytes in use now (live data plus handed-out TLABs).
    pub used_bytes: usize,
    /// Large-object bytes now.
    pub large_object_bytes: usize,
    /// Heap capacity.
    pub capacity: usize,
    /// The most recent cycles (up to 1024), oldest first.
    pub recent: Vec<CycleStats>,
    /// Threads that held a stop of the world up past
    /// `HeapConfig::safepoint_warn_after` ("'name' (tid N)", most recent
    /// last, at most 16).
    pub late_threads: Vec<String>,
}

impl HeapStats {
    /// The `q`-quantile (0..=1) of pause times, or zero without cycles.
    pub fn pause_quantile(&self, q: f64) -> Duration {
        quantile(&self.pauses, q)
    }

    pub(crate) fn record(&mut self, c: &CycleStats) {
        self.cycles += 1;
        let initial = (c.initial_pause > Duration::ZERO).then_some(c.initial_pause);
        for p in initial.into_iter().chain([c.pause]) {
            self.total_pause += p;
            self.max_pause = self.max_pause.max(p);
            self.pauses.push(p);
        }
        self.freed_bytes += c.freed_bytes as u64;
        self.moved_bytes += c.moved_bytes as u64;
        self.pages_moved += c.pages_moved as u64;
        self.pages_copied += c.pages_copied as u64;
        if self.recent.len() == 1024 {
            self.recent.remove(0);
        }
        self.recent.push(c.clone());
    }
}

/// The `q`-quantile of `xs` by nearest rank.
pub fn quantile(xs: &[Duration], q: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let mut v = xs.to_vec();
    v.sort_unstable();
    let i = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
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
            time_to_safepoint: Duration::from_micros(11),
            dense_pages: 1540,
            pages_moved: 1639,
            ..Default::default()
        };
        let l = young.log_line();
        for part in [
            "gc #12 young (policy) concurrent-move 40.0M->9.0M live 9.0M",
            "(old 6.0M, 14 dirty pages)",
            "pauses initial 0.090ms final 0.210ms (ttsp 0.011ms included)",
            "pages 1540 in place",
            "moved 1639",
        ] {
            assert!(l.contains(part), "{part:?} missing from {l:?}");
        }
        let full = CycleStats {
            strategy: Some(Strategy::StopTheWorld),
            trigger: Some(Trigger::Exhausted),
            full_reason: Some(FullReason::Exhausted),
            pause: Duration::from_millis(3),
            ..Default::default()
        };
        let l = full.log_line();
        assert!(
            l.contains("full[Exhausted] (exhausted) stop-the-world"),
            "{l}"
        );
        assert!(l.contains(" pause 3.000ms") && !l.contains("moved"), "{l}");
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let xs: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&xs, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&xs, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&xs, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
