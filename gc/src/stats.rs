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
    /// Everything inside one pause: mark, compute forwarding, compact all
    /// pages in parallel, update roots.
    StopTheWorld,
}

impl Strategy {
    /// Stable name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::StopTheWorld => "stop-the-world",
        }
    }
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
    /// Time mutators were stopped.
    pub pause: Duration,
    /// Waiting for all mutators to reach a safepoint.
    pub time_to_safepoint: Duration,
    /// Marking.
    pub mark: Duration,
    /// Chunk offsets, dense prefix, page-start table, fillers.
    pub prepare: Duration,
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
    /// Pages of the dense prefix updated in place.
    pub dense_pages: usize,
    /// Live large objects.
    pub large_objects_live: usize,
    /// Large objects freed.
    pub large_objects_freed: usize,
    /// `madvise` calls made during the cycle.
    pub madvise_calls: usize,
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
    /// Every pause, in order (for percentiles).
    pub pauses: Vec<Duration>,
    /// Total bytes reclaimed.
    pub freed_bytes: u64,
    /// Total bytes moved.
    pub moved_bytes: u64,
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
}

impl HeapStats {
    /// The `q`-quantile (0..=1) of pause times, or zero without cycles.
    pub fn pause_quantile(&self, q: f64) -> Duration {
        quantile(&self.pauses, q)
    }

    pub(crate) fn record(&mut self, c: &CycleStats) {
        self.cycles += 1;
        self.total_pause += c.pause;
        self.max_pause = self.max_pause.max(c.pause);
        self.pauses.push(c.pause);
        self.freed_bytes += c.freed_bytes as u64;
        self.moved_bytes += c.moved_bytes as u64;
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
    fn quantiles_by_nearest_rank() {
        let xs: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&xs, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&xs, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&xs, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
