//! The one result format every workload of the suite produces: a
//! [`RunRecord`] per (workload, strategy, repeat), serialised as one JSON
//! object (the `results` entries of `movegc bench`'s `results.json`).
//!
//! A workload returns a [`WorkloadOutput`] (its wall time, the
//! [`CycleStats`] of every collection it ran, an optional per-operation
//! latency histogram and its own verification string);
//! [`RunRecord::from_output`] turns that plus the process's resource usage
//! into the aggregate numbers the tables and plots use. Field names are a
//! stable interface: add fields, do not rename them.

use std::time::Duration;

use hdrhistogram::Histogram;
use movegc_gc::{CycleStats, HeapStats, Strategy, ThreadStats};
use serde::{Deserialize, Serialize};

/// What a workload hands back after a verified run.
#[derive(Clone, Debug)]
pub struct WorkloadOutput {
    /// Wall time of the measured part (setup excluded where the workload
    /// says so).
    pub wall: Duration,
    /// Every collection of the run, in order.
    pub cycles: Vec<CycleStats>,
    /// Per-operation latency in microseconds (workloads that time their
    /// operations), e.g. the fragmenter's rounds or the UI frames.
    pub op_latency_us: Option<Histogram<u64>>,
    /// What the workload verified, e.g. an output hash or a checksum
    /// (workloads panic or return `Err` on a mismatch, so this is
    /// informational).
    pub check: String,
    /// The heap's statistics at the end (allocation stalls, times to
    /// safepoint, the collector's CPU); `None` for workloads that measure
    /// one cycle of their own.
    pub heap: Option<HeapStats>,
}

/// p50 / p99 / max of a distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Quantiles {
    /// Quantiles of `xs` by nearest rank (all zero for an empty slice).
    pub fn of(xs: &[f64]) -> Quantiles {
        if xs.is_empty() {
            return Quantiles::default();
        }
        let mut v = xs.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Quantiles {
            p50: at(0.5),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }

    /// Quantiles of a histogram (all zero if it is empty).
    pub fn of_histogram(h: &Histogram<u64>) -> Quantiles {
        if h.is_empty() {
            return Quantiles::default();
        }
        Quantiles {
            p50: h.value_at_quantile(0.5) as f64,
            p99: h.value_at_quantile(0.99) as f64,
            max: h.max() as f64,
        }
    }

    /// Every figure times `k` (e.g. microseconds to milliseconds).
    pub fn scaled(self, k: f64) -> Quantiles {
        Quantiles {
            p50: self.p50 * k,
            p99: self.p99 * k,
            max: self.max * k,
        }
    }
}

/// One collection, as recorded per cycle in a [`RunRecord`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// Strategy the cycle used (after any fallback).
    pub strategy: String,
    /// Mutators stopped, ms (with concurrent marking: the final pause).
    pub pause_ms: f64,
    /// With concurrent marking, the initial (root snapshot) pause, ms.
    pub initial_pause_ms: f64,
    /// With concurrent marking, marking work left for the final pause, ms.
    pub remark_ms: f64,
    /// Marking, ms (inside the pause, or concurrent with mutators).
    pub mark_ms: f64,
    /// The flip itself (mremap + register), ms; 0 for stop-the-world.
    pub flip_ms: f64,
    /// Compaction completion time, ms: flip end to last page mapped for
    /// concurrent cycles, the compact phase for stop-the-world ones.
    pub compaction_ms: f64,
    /// CPU time of the compaction, ms, whichever threads did it
    /// (`CycleStats::compaction_cpu`).
    #[serde(default)]
    pub compaction_cpu_ms: f64,
    /// Pause start to cycle end, ms.
    pub cycle_ms: f64,
    /// Live bytes after marking.
    pub live_bytes: usize,
    /// To-space pages produced by `compact_page`.
    pub pages_compacted: usize,
    /// Pages installed with `UFFDIO_MOVE`.
    pub pages_moved: usize,
    /// Pages installed with `UFFDIO_COPY`.
    pub pages_copied: usize,
    /// Mutator faults.
    pub faults: usize,
    /// Fault stall p99, microseconds.
    pub fault_stall_p99_us: f64,
    /// Updating the roots and the live large objects' references (and
    /// sweeping the large objects), ms: inside the pause (the final one of
    /// a concurrent cycle).
    #[serde(default)]
    pub update_roots_ms: f64,
    /// Chunk offsets, dense prefix, page-start table and fillers, ms:
    /// inside the pause (the final one of a concurrent cycle), growing
    /// with the heap.
    #[serde(default)]
    pub prepare_ms: f64,
    /// The speculative prepare done while mutators ran, ms (not in a pause).
    #[serde(default)]
    pub prepare_outside_ms: f64,
    /// Waiting for every mutator to reach a safepoint, summed over the
    /// cycle's pauses, ms (not included in them).
    #[serde(default)]
    pub time_to_safepoint_ms: f64,
    /// Pages of the dense prefix updated in place instead of compacted.
    #[serde(default)]
    pub dense_pages: usize,
    /// Pages of the black block (allocated while a concurrent cycle marked)
    /// slid down whole, fixed in place instead of compacted.
    #[serde(default)]
    pub black_pages: usize,
    /// Live large objects.
    #[serde(default)]
    pub large_objects_live: usize,
    /// A young cycle (young collections on).
    #[serde(default)]
    pub young: bool,
    /// Why a full cycle was full (`FullReason` as Debug), empty for a young
    /// one.
    #[serde(default)]
    pub full_reason: String,
    /// Old pages a young cycle scanned as its remembered set.
    #[serde(default)]
    pub remembered_pages: usize,
    /// Scanning them, µs.
    #[serde(default)]
    pub remembered_scan_us: f64,
    /// The builder of a young cycle's remembered set after fallbacks
    /// (`RememberedSet::name`: `cards` or `wp`); absent for a full cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remembered_set: Option<String>,
    /// With the `wp` builder: old pages `PAGEMAP_SCAN` reported written.
    #[serde(default)]
    pub written_pages: usize,
    /// That scan, µs.
    #[serde(default)]
    pub written_scan_us: f64,
    /// Write-protecting the old region again at the end of the cycle, µs.
    #[serde(default)]
    pub write_protect_us: f64,
}

impl CycleRecord {
    /// The record of one cycle.
    pub fn of(c: &CycleStats) -> CycleRecord {
        CycleRecord {
            strategy: c.strategy.map_or("-", Strategy::name).to_string(),
            pause_ms: ms(c.pause),
            initial_pause_ms: ms(c.initial_pause),
            remark_ms: ms(c.remark),
            mark_ms: ms(c.mark),
            flip_ms: ms(c.flip),
            compaction_ms: ms(c.compaction),
            compaction_cpu_ms: ms(c.compaction_cpu),
            cycle_ms: ms(c.cycle_time),
            live_bytes: c.live_bytes,
            pages_compacted: c.pages_compacted,
            pages_moved: c.pages_moved,
            pages_copied: c.pages_copied,
            faults: c.faults,
            fault_stall_p99_us: c.fault_stall_quantile_us(0.99) as f64,
            update_roots_ms: ms(c.update_roots),
            prepare_ms: ms(c.prepare),
            prepare_outside_ms: ms(c.prepare_outside),
            time_to_safepoint_ms: ms(c.time_to_safepoint),
            dense_pages: c.dense_pages,
            black_pages: c.black_pages,
            large_objects_live: c.large_objects_live,
            young: c.young,
            full_reason: c.full_reason.map(|r| format!("{r:?}")).unwrap_or_default(),
            remembered_pages: c.remembered_pages,
            remembered_scan_us: us(c.remembered_scan),
            remembered_set: c.remembered_set.map(|r| r.name().to_string()),
            written_pages: c.written_pages,
            written_scan_us: us(c.written_scan),
            write_protect_us: us(c.write_protect),
        }
    }
}

/// Process resource usage of a run, measured by the process that ran it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
    /// Minor page faults.
    pub minflt: u64,
    /// Peak resident set size, bytes (`ru_maxrss`).
    pub peak_rss_bytes: u64,
}

impl ProcessUsage {
    /// `getrusage(RUSAGE_SELF)` now.
    pub fn now() -> ProcessUsage {
        let u = crate::compact::usage();
        ProcessUsage {
            cpu_s: u.cpu.as_secs_f64(),
            minflt: u.minflt,
            peak_rss_bytes: u.max_rss_bytes,
        }
    }

    /// Usage between `before` and `self` (the peak RSS is `self`'s: the
    /// process's high-water mark).
    pub fn since(&self, before: &ProcessUsage) -> ProcessUsage {
        ProcessUsage {
            cpu_s: self.cpu_s - before.cpu_s,
            minflt: self.minflt.saturating_sub(before.minflt),
            peak_rss_bytes: self.peak_rss_bytes,
        }
    }
}

/// Everything one (workload, strategy, repeat) run reports. See the module
/// docs; `docs/benchmarks.md` documents each field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Workload name (`compact`, `compact-mutators`, `fragmenter`,
    /// `binary-trees`, `gcbench`, `threads`, `large-refs`, `old-writes`).
    pub workload: String,
    /// Strategy asked for (`concurrent-move`, `concurrent-copy`,
    /// `stop-the-world`).
    pub strategy: String,
    /// Strategy the cycles really used (the most frequent one; differs from
    /// `strategy` only after a fallback).
    pub strategy_used: String,
    /// Fault mode (`sigbus`, `handler-thread`, or `-` for stop-the-world).
    pub fault_mode: String,
    /// The workload's parameters, `key=value,..`.
    pub params: String,
    /// Repeat index (0-based).
    pub repeat: usize,
    /// Wall time of the measured part, seconds.
    pub wall_s: f64,
    /// CPU time of the process over the measured part, seconds.
    pub cpu_s: f64,
    /// Collections.
    pub cycles: usize,
    /// Sum over cycles of the compaction completion time, ms.
    pub compaction_ms: f64,
    /// Sum over cycles of the compaction's CPU time, ms.
    #[serde(default)]
    pub compaction_cpu_ms: f64,
    /// Sum over cycles of marking, ms.
    pub mark_ms: f64,
    /// Flip (mremap + register) p50 / p99 / max over cycles, ms.
    pub flip_ms: Quantiles,
    /// Pause p50 / p99 / max over all pauses (a cycle with concurrent
    /// marking has two), ms.
    pub pause_ms: Quantiles,
    /// p50 / p99 / max over cycles of the pause that holds the flip and
    /// `update_roots` (the final pause of a concurrent cycle, the only one
    /// of a stop-the-world cycle), ms.
    #[serde(default)]
    pub final_pause_ms: Quantiles,
    /// `update_roots` p50 / p99 / max over cycles, ms (see
    /// [`CycleRecord::update_roots_ms`]).
    #[serde(default)]
    pub update_roots_ms: Quantiles,
    /// To-space pages compacted (sum).
    pub pages_compacted: usize,
    /// Pages installed with `UFFDIO_MOVE` (sum).
    pub pages_moved: usize,
    /// Pages installed with `UFFDIO_COPY` (sum).
    pub pages_copied: usize,
    /// Allocation-region pages zero-filled (sum).
    pub pages_zero_filled: usize,
    /// Of the zero-filled pages, recycled from-space pages moved in (sum).
    pub pages_zero_recycled: usize,
    /// From-space pages released at cycle ends (sum).
    pub pages_released: usize,
    /// MOVE ioctls (sum).
    pub move_ioctls: usize,
    /// Pages copied because MOVE said `EBUSY` (sum).
    pub ebusy_fallbacks: usize,
    /// MOVE mode: pages copied because their run was shorter than
    /// `HeapConfig::min_move_run` (sum).
    #[serde(default)]
    pub short_run_copies: usize,
    /// `madvise` calls made by collections (sum).
    pub madvise_calls: usize,
    /// Mutator faults (sum).
    pub faults: usize,
    /// Fault stalls over all cycles, microseconds.
    pub fault_stall_us: Quantiles,
    /// The fault-stall distribution as `[stall_us, cumulative fraction]`
    /// points (empty without faults), for CDF plots.
    pub fault_stall_cdf: Vec<[f64; 2]>,
    /// Per-operation latency (workloads that time operations), microseconds.
    pub op_latency_us: Option<Quantiles>,
    /// Peak RSS of the process, bytes.
    pub peak_rss_bytes: u64,
    /// Minor page faults over the measured part.
    pub minflt: u64,
    /// What the workload verified.
    pub check: String,
    /// Allocations that waited for a collection to make room (every
    /// thread's).
    #[serde(default)]
    pub alloc_stalls: u64,
    /// Their waits p50 / p99 / max, ms.
    #[serde(default)]
    pub alloc_stall_ms: Quantiles,
    /// Their waits summed, ms.
    #[serde(default)]
    pub alloc_stall_total_ms: f64,
    /// TLAB refills delayed by allocation pacing (every thread's).
    #[serde(default)]
    pub pacing_delays: u64,
    /// Their delays summed, ms.
    #[serde(default)]
    pub pacing_delay_total_ms: f64,
    /// Time to safepoint p50 / p99 / max over all pauses, ms (not part of
    /// `pause_ms`).
    #[serde(default)]
    pub time_to_safepoint_ms: Quantiles,
    /// The thread the longest time to safepoint waited for.
    #[serde(default)]
    pub slowest_to_safepoint: String,
    /// The collector's CPU time over the heap's life, seconds (its
    /// threads, its pauses, faults resolved by mutators).
    #[serde(default)]
    pub gc_cpu_s: f64,
    /// That as a share of the process's CPU time over the heap's life.
    #[serde(default)]
    pub gc_cpu_share: f64,
    /// Every mutator thread of the heap (attached at the end, or among the
    /// last 64 detached), in the heap's order.
    #[serde(default)]
    pub threads: Vec<ThreadRecord>,
    /// Every cycle.
    pub per_cycle: Vec<CycleRecord>,
}

/// One mutator thread's share of a run (`HeapStats::threads` and
/// `recent_detached`): who waited on the collector, and for how long.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreadRecord {
    /// The mutator's name.
    pub name: String,
    /// Its kernel thread id.
    pub tid: i32,
    /// Faults on pages a concurrent cycle had not compacted yet.
    pub faults: u64,
    /// Their stalls summed, ms.
    pub fault_stall_total_ms: f64,
    /// 99th percentile fault stall (the bucket's upper bound), µs.
    pub fault_stall_p99_us: f64,
    /// Longest fault stall, µs.
    pub fault_stall_max_us: f64,
    /// Allocations that waited for a collection.
    pub alloc_stalls: u64,
    /// Their waits summed, ms.
    pub alloc_stall_total_ms: f64,
    /// TLAB refills delayed by allocation pacing.
    pub pacing_delays: u64,
    /// Stops of the world this thread was the last to reach.
    pub last_to_safepoint: u64,
    /// How long those stops waited for it, ms.
    pub held_up_world_ms: f64,
}

impl ThreadRecord {
    /// The record of one thread's counters.
    pub fn of(t: &ThreadStats) -> ThreadRecord {
        ThreadRecord {
            name: t.name.clone(),
            tid: t.tid,
            faults: t.faults.count,
            fault_stall_total_ms: ms(t.faults.stall_total),
            fault_stall_p99_us: t.faults.stall_quantile(0.99).as_secs_f64() * 1e6,
            fault_stall_max_us: t.faults.stall_max.as_secs_f64() * 1e6,
            alloc_stalls: t.alloc_stalls,
            alloc_stall_total_ms: ms(t.alloc_stall_total),
            pacing_delays: t.pacing_delays,
            last_to_safepoint: t.last_to_safepoint,
            held_up_world_ms: ms(t.held_up_world),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The quantiles at which [`RunRecord::fault_stall_cdf`] is sampled.
const CDF_POINTS: [f64; 14] = [
    0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

impl RunRecord {
    /// Aggregates a workload's output. `usage` is the process usage over
    /// the measured part; `fault_mode` the heap's (`-` if none).
    pub fn from_output(
        workload: &str,
        strategy: Strategy,
        fault_mode: &str,
        params: &str,
        repeat: usize,
        out: &WorkloadOutput,
        usage: ProcessUsage,
    ) -> RunRecord {
        let cycles = &out.cycles;
        let sum = |f: fn(&CycleStats) -> usize| cycles.iter().map(f).sum::<usize>();
        let mut stalls: Option<Histogram<u64>> = None;
        for h in cycles.iter().filter_map(|c| c.fault_stall_us.as_ref()) {
            match &mut stalls {
                Some(s) => s.add(&h.0).expect("histograms with the same bounds"),
                None => stalls = Some(h.0.clone()),
            }
        }
        let (fault_stall_us, fault_stall_cdf) = match stalls.filter(|h| !h.is_empty()) {
            Some(h) => (
                Quantiles::of_histogram(&h),
                CDF_POINTS
                    .iter()
                    .map(|&q| [h.value_at_quantile(q) as f64, q])
                    .collect(),
            ),
            None => (Quantiles::default(), Vec::new()),
        };
        let pauses: Vec<f64> = cycles
            .iter()
            .flat_map(|c| c.pauses.iter().map(|p| ms(p.duration)))
            .collect();
        let ttsp: Vec<f64> = cycles
            .iter()
            .flat_map(|c| c.pauses.iter().map(|p| ms(p.time_to_safepoint)))
            .collect();
        let slowest = cycles
            .iter()
            .flat_map(|c| &c.pauses)
            .max_by_key(|p| p.time_to_safepoint)
            .and_then(|p| p.last_to_safepoint.clone())
            .unwrap_or_default();
        let heap = out.heap.as_ref();
        let alloc_stall_ms = heap
            .filter(|h| !h.alloc_stall_histogram.is_empty())
            .map_or_else(Quantiles::default, |h| {
                Quantiles::of_histogram(&h.alloc_stall_histogram.0).scaled(1e-3)
            });
        let flips: Vec<f64> = cycles
            .iter()
            .filter(|c| c.strategy.is_some_and(Strategy::is_concurrent))
            .map(|c| ms(c.flip))
            .collect();
        RunRecord {
            workload: workload.to_string(),
            strategy: strategy.name().to_string(),
            strategy_used: most_used(cycles).unwrap_or(strategy).name().to_string(),
            fault_mode: fault_mode.to_string(),
            params: params.to_string(),
            repeat,
            wall_s: out.wall.as_secs_f64(),
            cpu_s: usage.cpu_s,
            cycles: cycles.len(),
            compaction_ms: cycles.iter().map(|c| ms(c.compaction)).sum(),
            compaction_cpu_ms: cycles.iter().map(|c| ms(c.compaction_cpu)).sum(),
            mark_ms: cycles.iter().map(|c| ms(c.mark)).sum(),
            flip_ms: Quantiles::of(&flips),
            pause_ms: Quantiles::of(&pauses),
            final_pause_ms: Quantiles::of(&cycles.iter().map(|c| ms(c.pause)).collect::<Vec<_>>()),
            update_roots_ms: Quantiles::of(
                &cycles
                    .iter()
                    .map(|c| ms(c.update_roots))
                    .collect::<Vec<_>>(),
            ),
            pages_compacted: sum(|c| c.pages_compacted),
            pages_moved: sum(|c| c.pages_moved),
            pages_copied: sum(|c| c.pages_copied),
            pages_zero_filled: sum(|c| c.pages_zero_filled),
            pages_zero_recycled: sum(|c| c.pages_zero_recycled),
            pages_released: sum(|c| c.pages_released),
            move_ioctls: sum(|c| c.move_ioctls),
            ebusy_fallbacks: sum(|c| c.ebusy_fallbacks),
            short_run_copies: sum(|c| c.short_run_copies),
            madvise_calls: sum(|c| c.madvise_calls),
            faults: sum(|c| c.faults),
            fault_stall_us,
            fault_stall_cdf,
            op_latency_us: out.op_latency_us.as_ref().map(Quantiles::of_histogram),
            peak_rss_bytes: usage.peak_rss_bytes,
            minflt: usage.minflt,
            check: out.check.clone(),
            alloc_stalls: heap.map_or(0, |h| h.alloc_stalls),
            alloc_stall_ms,
            alloc_stall_total_ms: heap.map_or(0.0, |h| ms(h.alloc_stall_total)),
            pacing_delays: heap.map_or(0, |h| h.pacing_delays),
            pacing_delay_total_ms: heap.map_or(0.0, |h| ms(h.pacing_delay_total)),
            time_to_safepoint_ms: Quantiles::of(&ttsp),
            slowest_to_safepoint: slowest,
            gc_cpu_s: heap.map_or(0.0, |h| h.gc_cpu.as_secs_f64()),
            gc_cpu_share: heap.map_or(0.0, |h| h.gc_cpu_share()),
            threads: heap.map_or_else(Vec::new, |h| {
                h.threads
                    .iter()
                    .chain(&h.recent_detached)
                    .map(ThreadRecord::of)
                    .collect()
            }),
            per_cycle: cycles.iter().map(CycleRecord::of).collect(),
        }
    }
}

/// The strategy most cycles used.
fn most_used(cycles: &[CycleStats]) -> Option<Strategy> {
    let all = [
        Strategy::ConcurrentMove,
        Strategy::ConcurrentCopy,
        Strategy::StopTheWorld,
    ];
    all.into_iter()
        .map(|s| (cycles.iter().filter(|c| c.strategy == Some(s)).count(), s))
        .filter(|&(n, _)| n > 0)
        .max_by_key(|&(n, _)| n)
        .map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(strategy: Strategy, pause_ms: u64, moved: usize, stalls: &[u64]) -> CycleStats {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for &s in stalls {
            h.record(s).unwrap();
        }
        CycleStats {
            strategy: Some(strategy),
            pause: Duration::from_millis(pause_ms),
            pauses: vec![movegc_gc::Pause {
                kind: movegc_gc::PauseKind::Final,
                duration: Duration::from_millis(pause_ms),
                // The wait for safepoints is apart from the pause.
                time_to_safepoint: Duration::from_millis(pause_ms * 10),
                last_to_safepoint: Some(format!("'t{pause_ms}' (tid {pause_ms})")),
            }],
            compaction: Duration::from_millis(10),
            flip: Duration::from_micros(300),
            update_roots: Duration::from_millis(pause_ms / 2),
            pages_moved: moved,
            faults: stalls.len(),
            fault_stall_us: Some(movegc_gc::LatencyHistogram(h)),
            ..Default::default()
        }
    }

    #[test]
    fn young_cycles_record_their_remembered_set() {
        let c = CycleStats {
            young: true,
            remembered_set: Some(movegc_gc::RememberedSet::WriteProtect),
            remembered_pages: 40,
            remembered_scan: Duration::from_micros(250),
            written_pages: 41,
            written_scan: Duration::from_micros(30),
            write_protect: Duration::from_micros(900),
            ..Default::default()
        };
        let r = CycleRecord::of(&c);
        assert_eq!(r.remembered_set.as_deref(), Some("wp"));
        assert_eq!((r.remembered_pages, r.written_pages), (40, 41));
        assert_eq!(
            (r.remembered_scan_us, r.written_scan_us, r.write_protect_us),
            (250.0, 30.0, 900.0)
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["remembered_set"], "wp");
        // A full cycle has none: the key is absent.
        let full = serde_json::to_value(CycleRecord::of(&CycleStats::default())).unwrap();
        assert!(full.get("remembered_set").is_none(), "{full}");
        assert_eq!(full["written_pages"], 0);
        // A record written before the fields existed still reads.
        let mut old = full.as_object().unwrap().clone();
        for k in [
            "remembered_scan_us",
            "written_pages",
            "written_scan_us",
            "write_protect_us",
        ] {
            old.remove(k).unwrap();
        }
        let back: CycleRecord = serde_json::from_value(old.into()).unwrap();
        assert_eq!(back, CycleRecord::of(&CycleStats::default()));
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let q = Quantiles::of(&xs);
        assert_eq!((q.p50, q.p99, q.max), (50.0, 99.0, 100.0));
        assert_eq!(Quantiles::of(&[]), Quantiles::default());
        assert_eq!(Quantiles::of(&[7.0]).p50, 7.0);
    }

    #[test]
    fn aggregates_cycles_and_merges_stalls() {
        let out = WorkloadOutput {
            wall: Duration::from_millis(1500),
            cycles: vec![
                cycle(Strategy::ConcurrentMove, 2, 100, &[10, 20]),
                cycle(Strategy::ConcurrentMove, 4, 50, &[30, 1000]),
                cycle(Strategy::ConcurrentCopy, 3, 0, &[]),
            ],
            op_latency_us: None,
            check: "ok".into(),
            heap: Some({
                let mut h = HeapStats {
                    alloc_stalls: 2,
                    alloc_stall_total: Duration::from_millis(7),
                    pacing_delays: 3,
                    pacing_delay_total: Duration::from_millis(12),
                    gc_cpu: Duration::from_millis(500),
                    process_cpu: Duration::from_secs(2),
                    ..Default::default()
                };
                h.alloc_stall_histogram.record(Duration::from_millis(2));
                h.alloc_stall_histogram.record(Duration::from_millis(5));
                h
            }),
        };
        let usage = ProcessUsage {
            cpu_s: 2.0,
            minflt: 7,
            peak_rss_bytes: 1 << 20,
        };
        let r = RunRecord::from_output(
            "fragmenter",
            Strategy::ConcurrentMove,
            "sigbus",
            "k=v",
            1,
            &out,
            usage,
        );
        assert_eq!(r.cycles, 3);
        assert_eq!(r.strategy_used, "concurrent-move");
        assert_eq!(r.pages_moved, 150);
        assert_eq!(r.faults, 4);
        assert_eq!(r.compaction_ms, 30.0);
        assert_eq!(r.pause_ms.max, 4.0);
        assert_eq!(r.pause_ms.p50, 3.0);
        assert_eq!(r.time_to_safepoint_ms.max, 40.0);
        assert_eq!(r.slowest_to_safepoint, "'t4' (tid 4)");
        assert_eq!(r.alloc_stalls, 2);
        assert_eq!(r.alloc_stall_total_ms, 7.0);
        assert_eq!((r.pacing_delays, r.pacing_delay_total_ms), (3, 12.0));
        assert!(
            (r.alloc_stall_ms.max - 5.0).abs() < 0.01,
            "{:?}",
            r.alloc_stall_ms
        );
        assert_eq!((r.gc_cpu_s, r.gc_cpu_share), (0.5, 0.25));
        assert_eq!(r.final_pause_ms.max, 4.0);
        assert_eq!(r.update_roots_ms.p50, 1.0);
        assert_eq!(r.per_cycle[1].update_roots_ms, 2.0);
        assert_eq!(r.fault_stall_us.max, 1000.0);
        assert!(r.fault_stall_us.p50 >= 19.0 && r.fault_stall_us.p50 <= 20.0);
        let last = r.fault_stall_cdf.last().unwrap();
        assert_eq!(last[1], 1.0);
        assert!(r
            .fault_stall_cdf
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
        assert_eq!(r.per_cycle.len(), 3);
        assert_eq!(r.wall_s, 1.5);
        assert_eq!(r.peak_rss_bytes, 1 << 20);
        let json = serde_json::to_string(&r).unwrap();
        let back: RunRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
