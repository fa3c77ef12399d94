//! The rendering side of `movegc bench`: the [`Report`] that becomes
//! `results.json` (top-level `meta`, `results` and `summary`), the terminal
//! table ([`text_table`]), `report.md` ([`markdown`]) and the SVG plots
//! ([`write_plots`]).
//!
//! The headline number is [`Summary::move_copy_compaction_ratio`]: the
//! `compact` workload's concurrent-MOVE compaction completion time over
//! concurrent COPY's, paired run by run (same parameters apart from the
//! strategy, same repeat), with its median and a 95 % percentile-bootstrap
//! confidence interval (fixed seed, so a report is reproducible from its
//! `results`). Everything here is a pure function of the [`RunRecord`]s
//! plus the [`Meta`] the caller collected; nothing runs a workload.
//!
//! `results.json` is a stable format: fields are added, never renamed.
//! A missing ratio (no MOVE/COPY pair) is `null`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::median;
use crate::record::{CycleRecord, RunRecord};
use crate::spec::Spec;

/// `RunRecord::strategy` of concurrent MOVE.
pub const MOVE: &str = "concurrent-move";
/// `RunRecord::strategy` of concurrent COPY.
pub const COPY: &str = "concurrent-copy";
/// `RunRecord::strategy` of stop-the-world.
pub const STW: &str = "stop-the-world";

/// Target: MOVE/COPY compaction-time ratio (median) at most this.
pub const TARGET_RATIO: f64 = 0.6;
/// Target: MOVE's worst fault-stall p99 below this many microseconds.
pub const TARGET_STALL_P99_US: f64 = 50.0;

/// Target: concurrent MOVE compaction within this factor of stop-the-world
/// compaction on the allocation-bound workloads ([`STW_TARGET_WORKLOADS`]).
pub const TARGET_MOVE_STW: f64 = 1.3;

/// The workloads the MOVE / stop-the-world compaction targets cover.
pub const STW_TARGET_WORKLOADS: [&str; 2] = ["binary-trees", "gcbench"];

/// The preparation [`Meta::collect`] records unless the caller says
/// otherwise.
pub const DEFAULT_PREPARATION: &str = "each run in a fresh child process; strategies alternate \
within a repeat; pages warmed before compaction";

/// Bootstrap resamples behind every confidence interval.
const BOOTSTRAP_RESAMPLES: usize = 10_000;
/// Seed of the bootstrap's RNG (fixed: the same results give the same CI).
const BOOTSTRAP_SEED: u64 = 0x6d6f_7665_6763_0001;

/// The machine a report was measured on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// CPU model (`model name` of `/proc/cpuinfo`), `unknown` if absent.
    pub cpu_model: String,
    /// Logical CPUs (`processor` entries of `/proc/cpuinfo`).
    pub cores: usize,
    /// Total memory, GiB (`MemTotal` of `/proc/meminfo`).
    pub memory_gib: f64,
}

/// How, where and when a report was produced: `results.json`'s `meta`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// CPU, cores and memory.
    pub machine: Machine,
    /// Kernel release (what `uname -r` prints).
    pub kernel: String,
    /// userfaultfd features the kernel offered (filled by the caller).
    pub uffd_features: Vec<String>,
    /// What the capability probe concluded, e.g. `concurrent-move
    /// (UFFDIO_MOVE available)` (filled by the caller).
    pub probe_strategy: String,
    /// The command line that produced the report.
    pub command_line: String,
    /// `git` revision of the code measured, if known (filled by the caller).
    pub git_revision: Option<String>,
    /// When the report was made, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub timestamp: String,
    /// How runs were prepared (process isolation, ordering, warm-up).
    pub preparation: String,
    /// Whether this was a `--quick` run (fewer repeats, smaller sizes).
    pub quick: bool,
}

impl Meta {
    /// The machine (from `/proc/cpuinfo` and `/proc/meminfo`), kernel
    /// release, timestamp (now) and `command_line`; `preparation` is
    /// [`DEFAULT_PREPARATION`]. The caller fills `uffd_features`,
    /// `probe_strategy`, `git_revision` and `quick`.
    pub fn collect(command_line: &str) -> Meta {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        Meta {
            machine: Machine {
                cpu_model: cpu_model(&cpuinfo),
                cores: cpu_count(&cpuinfo),
                memory_gib: memory_gib(&meminfo),
            },
            kernel,
            uffd_features: Vec::new(),
            probe_strategy: String::new(),
            command_line: command_line.to_string(),
            git_revision: None,
            timestamp: utc_timestamp(SystemTime::now()),
            preparation: DEFAULT_PREPARATION.to_string(),
            quick: false,
        }
    }
}

/// The first `model name` (x86) or `Hardware`/`cpu model` (other
/// architectures) value of a `/proc/cpuinfo` text.
fn cpu_model(cpuinfo: &str) -> String {
    ["model name", "Hardware", "cpu model", "uarch"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// `processor` entries of a `/proc/cpuinfo` text (the available
/// parallelism if there are none).
fn cpu_count(cpuinfo: &str) -> usize {
    let n = cpuinfo
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count();
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(0, usize::from)
    }
}

/// `MemTotal` of a `/proc/meminfo` text in GiB (0 if absent).
fn memory_gib(meminfo: &str) -> f64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0))
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds; times before the
/// epoch print as the epoch).
pub fn utc_timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A ratio over paired runs: its median, 95 % confidence interval and the
/// per-pair values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// Median of `per_repeat`.
    pub median: f64,
    /// Lower end of the 95 % percentile-bootstrap CI of the median.
    pub ci95_low: f64,
    /// Upper end of the 95 % percentile-bootstrap CI of the median.
    pub ci95_high: f64,
    /// Pairs (length of `per_repeat`).
    pub n: usize,
    /// One ratio per (parameters, repeat) pair, ordered by parameters then
    /// repeat.
    pub per_repeat: Vec<f64>,
}

impl Ratio {
    /// The median and CI of `values` (`None` if empty). With one value the
    /// CI is that value. The CI is the 2.5 / 97.5 percentiles of the
    /// medians of 10 000 resamples drawn with a fixed-seed RNG, widened if
    /// needed so that it contains the median.
    pub fn of(values: Vec<f64>) -> Option<Ratio> {
        if values.is_empty() {
            return None;
        }
        let m = median(&values);
        let (low, high) = if values.len() == 1 {
            (m, m)
        } else {
            let (l, h) = bootstrap_median_ci(&values);
            (l.min(m), h.max(m))
        };
        Some(Ratio {
            median: m,
            ci95_low: low,
            ci95_high: high,
            n: values.len(),
            per_repeat: values,
        })
    }
}

/// SplitMix64: small, fast and good enough to draw bootstrap indices.
///
/// Kept rather than a crate's generator: the intervals in the committed
/// `docs/bench/**/results.json` and `report.md` were drawn with this exact
/// sequence, and `movegc bench --render` reproduces them only with it
/// (with another generator, two of them move by up to 0.07).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough index in `0..n` (multiply-shift; the bias is
    /// negligible for the tiny `n` of a benchmark).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// 95 % percentile-bootstrap interval of the median of `xs` (non-empty).
fn bootstrap_median_ci(xs: &[f64]) -> (f64, f64) {
    let mut sample = vec![0.0; xs.len()];
    bootstrap_ci(xs.len(), |idx| {
        for (s, &i) in sample.iter_mut().zip(idx) {
            *s = xs[i];
        }
        median(&sample)
    })
}

/// The 2.5 / 97.5 percentiles of `stat` over 10 000 resamples of `n`
/// items (each a list of `n` indices drawn with replacement, with the
/// fixed-seed RNG).
fn bootstrap_ci(n: usize, mut stat: impl FnMut(&[usize]) -> f64) -> (f64, f64) {
    let mut rng = SplitMix64(BOOTSTRAP_SEED);
    let mut idx = vec![0; n];
    let mut stats: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            for i in idx.iter_mut() {
                *i = rng.below(n);
            }
            stat(&idx)
        })
        .collect();
    stats.sort_by(|a, b| a.total_cmp(b));
    let b = stats.len() as f64;
    let low = stats[(0.025 * b).floor() as usize];
    let high = stats[((0.975 * b).ceil() as usize).clamp(1, stats.len()) - 1];
    (low, high)
}

/// A ratio of totals over paired runs, `Σ a / Σ b`: for work summed over
/// runs that each sample one phase of a workload (`Options::phases`),
/// where one pair's ratio says little (its two runs fell at different
/// places) but the totals compare the same work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TotalRatio {
    /// `Σ a / Σ b`.
    pub ratio: f64,
    /// Lower end of its 95 % percentile-bootstrap CI (pairs resampled).
    pub ci95_low: f64,
    /// Upper end of that CI.
    pub ci95_high: f64,
    /// Pairs.
    pub n: usize,
}

impl TotalRatio {
    /// The ratio of `pairs`' totals and its CI (`None` without pairs or
    /// with a total `b` that is not positive). With one pair the CI is
    /// the ratio.
    pub fn of(pairs: &[(f64, f64)]) -> Option<TotalRatio> {
        let total = |idx: &mut dyn Iterator<Item = usize>| {
            let (a, b) = idx.fold((0.0, 0.0), |(a, b), i| (a + pairs[i].0, b + pairs[i].1));
            a / b
        };
        let ratio = total(&mut (0..pairs.len()));
        if pairs.is_empty() || !ratio.is_finite() {
            return None;
        }
        let (low, high) = match pairs.len() {
            1 => (ratio, ratio),
            n => bootstrap_ci(n, |idx| total(&mut idx.iter().copied())),
        };
        Some(TotalRatio {
            ratio,
            ci95_low: low.min(ratio),
            ci95_high: high.max(ratio),
            n: pairs.len(),
        })
    }
}

/// One target of the suite and whether this report meets it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// What is measured, e.g. `MOVE/COPY compaction ratio`.
    pub name: String,
    /// The goal, e.g. `≤ 0.6`.
    pub goal: String,
    /// The measured value, `None` without data.
    pub value: Option<f64>,
    /// Met (`Some(true)`), missed (`Some(false)`) or not measurable.
    pub met: Option<bool>,
}

impl Target {
    /// The target `name ≤ limit`, met if `value` (when measured) is.
    fn at_most(name: &str, limit: f64, value: Option<f64>) -> Target {
        Target {
            name: name.into(),
            goal: format!("≤ {limit}"),
            value,
            met: value.map(|v| v <= limit),
        }
    }

    /// `met`, `missed` or `n/a`.
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "n/a",
        }
    }
}

/// The numbers a report is judged by: `results.json`'s `summary`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// `compact` workload: MOVE compaction time / COPY compaction time,
    /// paired by parameters (minus the strategy) and repeat; `None` (JSON
    /// `null`) without a pair.
    pub move_copy_compaction_ratio: Option<Ratio>,
    /// The same ratio for every workload that has a MOVE/COPY pair.
    pub per_workload: BTreeMap<String, Ratio>,
    /// `compact-prefix`: the MOVE/COPY ratio at each dense-prefix share
    /// (the `prefix` parameter, as written): how MOVE's advantage changes
    /// as more of the live data is put back rather than compacted.
    pub move_copy_by_prefix: BTreeMap<String, Ratio>,
    /// Concurrent MOVE against stop-the-world compaction, per workload
    /// with such a pair: `(time, CPU)` ratios (`compaction_ms`,
    /// `compaction_cpu_ms`), paired as `per_workload`.
    pub move_stw: BTreeMap<String, (Ratio, Option<Ratio>)>,
    /// The same as ratios of totals over the pairs ([`TotalRatio`]): the
    /// compaction work of all a workload's MOVE runs against all its
    /// stop-the-world runs, the measure of the targets.
    pub move_stw_total: BTreeMap<String, (TotalRatio, Option<TotalRatio>)>,
    /// `madvise` calls summed over every MOVE record (the target is 0).
    pub madvise_calls_move: usize,
    /// Per strategy, the largest fault-stall p99 of any of its records, µs.
    pub fault_stall_p99_us_max: BTreeMap<String, f64>,
    /// The suite's targets, each met / missed / not measurable.
    pub targets: Vec<Target>,
}

/// A record's `params` as a [`Spec`]. A string that does not parse (no
/// record this code writes holds one) is kept whole, as the value of a
/// `params` key, so such records still group by their exact text.
fn spec_of(params: &str) -> Spec {
    params
        .parse()
        .unwrap_or_else(|_| Spec::new().with("params", params.replace([',', '='], ";").trim()))
}

/// `params` without its `strategy` entry: what a MOVE run and its COPY
/// twin have in common.
fn key_of(params: &str) -> Spec {
    spec_of(params).without("strategy")
}

/// `key_of` as text.
pub fn params_key(params: &str) -> String {
    key_of(params).to_string()
}

/// MOVE/COPY compaction-time ratios of `workload`, one per pair of records
/// with the same [`params_key`] and repeat (strategies as asked, i.e.
/// `RunRecord::strategy`), ordered by parameters then repeat. Pairs whose
/// COPY time is not positive are skipped (no ratio exists).
fn paired_ratios(results: &[RunRecord], workload: &str) -> Vec<f64> {
    paired(results, workload, (MOVE, COPY), |r| r.compaction_ms)
}

/// Ratios `value(a) / value(b)` of `workload`'s records of strategies
/// `(a, b)`, paired as in [`paired_ratios`].
fn paired(
    results: &[RunRecord],
    workload: &str,
    strategies: (&str, &str),
    value: fn(&RunRecord) -> f64,
) -> Vec<f64> {
    paired_values(results, workload, strategies, value)
        .into_iter()
        .filter(|&(_, cp)| cp > 0.0)
        .map(|(mv, cp)| mv / cp)
        .collect()
}

/// The `(value(a), value(b))` of each pair of [`paired`], both finite.
fn paired_values(
    results: &[RunRecord],
    workload: &str,
    (a, b): (&str, &str),
    value: fn(&RunRecord) -> f64,
) -> Vec<(f64, f64)> {
    let index = |strategy: &str| {
        let mut m: BTreeMap<(String, usize), f64> = BTreeMap::new();
        for r in results
            .iter()
            .filter(|r| r.workload == workload && r.strategy == strategy)
        {
            m.entry((params_key(&r.params), r.repeat))
                .or_insert(value(r));
        }
        m
    };
    let (moves, copies) = (index(a), index(b));
    moves
        .iter()
        .filter_map(|(key, &mv)| Some((mv, *copies.get(key)?)))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect()
}

/// The workload whose MOVE/COPY ratio is also reported per prefix share.
const COMPACT_PREFIX: &str = "compact-prefix";

/// `workload`'s records grouped by the value of parameter `key` (records
/// without it are left out).
fn by_param(results: &[RunRecord], workload: &str, key: &str) -> BTreeMap<String, Vec<RunRecord>> {
    let mut m: BTreeMap<String, Vec<RunRecord>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.workload == workload) {
        if let Some(v) = spec_of(&r.params).get(key) {
            m.entry(v.to_string()).or_default().push(r.clone());
        }
    }
    m
}

/// The [`Summary`] of a set of results (see its fields).
pub fn summarize(results: &[RunRecord]) -> Summary {
    let mut workloads: Vec<&str> = results.iter().map(|r| r.workload.as_str()).collect();
    workloads.sort_unstable();
    workloads.dedup();
    let per_workload: BTreeMap<String, Ratio> = workloads
        .iter()
        .filter_map(|w| Some((w.to_string(), Ratio::of(paired_ratios(results, w))?)))
        .collect();
    let move_stw: BTreeMap<String, (Ratio, Option<Ratio>)> = workloads
        .iter()
        .filter_map(|w| {
            let wall = Ratio::of(paired(results, w, (MOVE, STW), |r| r.compaction_ms))?;
            let cpu = Ratio::of(paired(results, w, (MOVE, STW), |r| r.compaction_cpu_ms));
            Some((w.to_string(), (wall, cpu)))
        })
        .collect();
    let move_stw_total: BTreeMap<String, (TotalRatio, Option<TotalRatio>)> = workloads
        .iter()
        .filter_map(|w| {
            let pairs = |f| paired_values(results, w, (MOVE, STW), f);
            let wall = TotalRatio::of(&pairs(|r| r.compaction_ms))?;
            let cpu = TotalRatio::of(&pairs(|r| r.compaction_cpu_ms));
            Some((w.to_string(), (wall, cpu)))
        })
        .collect();
    // The worst of the covered workloads' ratios (none without all).
    let worst = |f: fn(&(TotalRatio, Option<TotalRatio>)) -> Option<f64>| {
        STW_TARGET_WORKLOADS
            .iter()
            .map(|w| move_stw_total.get(*w).and_then(f))
            .collect::<Option<Vec<f64>>>()
            .map(|v| v.into_iter().fold(f64::NEG_INFINITY, f64::max))
    };
    let stw_cpu = worst(|(_, c)| c.as_ref().map(|c| c.ratio));
    let stw_wall = worst(|(w, _)| Some(w.ratio));
    let move_copy_compaction_ratio = per_workload.get("compact").cloned();
    let move_copy_by_prefix = by_param(results, COMPACT_PREFIX, "prefix")
        .into_iter()
        .filter_map(|(v, rs)| Some((v, Ratio::of(paired_ratios(&rs, COMPACT_PREFIX))?)))
        .collect();
    let moves: Vec<&RunRecord> = results.iter().filter(|r| r.strategy == MOVE).collect();
    let madvise_calls_move = moves.iter().map(|r| r.madvise_calls).sum();
    let mut fault_stall_p99_us_max: BTreeMap<String, f64> = BTreeMap::new();
    for r in results {
        let e = fault_stall_p99_us_max
            .entry(r.strategy.clone())
            .or_insert(f64::NEG_INFINITY);
        *e = e.max(r.fault_stall_us.p99);
    }
    let ratio_value = move_copy_compaction_ratio.as_ref().map(|r| r.median);
    let stall_value = fault_stall_p99_us_max.get(MOVE).copied();
    let madvise_value = (!moves.is_empty()).then_some(madvise_calls_move as f64);
    let targets = vec![
        Target::at_most(
            "MOVE/COPY compaction ratio (compact, median)",
            TARGET_RATIO,
            ratio_value,
        ),
        Target {
            name: "madvise calls under MOVE".into(),
            goal: "= 0".into(),
            value: madvise_value,
            met: madvise_value.map(|v| v == 0.0),
        },
        Target {
            name: "MOVE fault-stall p99 (worst run), µs".into(),
            goal: format!("< {TARGET_STALL_P99_US}"),
            value: stall_value,
            met: stall_value.map(|v| v < TARGET_STALL_P99_US),
        },
        Target::at_most(
            "MOVE/STW compaction CPU (binary-trees, gcbench, worst ratio of totals)",
            TARGET_MOVE_STW,
            stw_cpu,
        ),
        Target::at_most(
            "MOVE/STW compaction time (binary-trees, gcbench, worst ratio of totals)",
            TARGET_MOVE_STW,
            stw_wall,
        ),
    ];
    Summary {
        move_copy_compaction_ratio,
        per_workload,
        move_copy_by_prefix,
        move_stw,
        move_stw_total,
        madvise_calls_move,
        fault_stall_p99_us_max,
        targets,
    }
}

/// Everything `movegc bench` produced: `results.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Machine, kernel, command line, time, preparation.
    pub meta: Meta,
    /// One record per (workload, strategy, repeat), in run order.
    pub results: Vec<RunRecord>,
    /// Ratios and targets, computed from `results` by [`summarize`].
    pub summary: Summary,
}

impl Report {
    /// A report of `results`, with its summary computed.
    pub fn new(meta: Meta, results: Vec<RunRecord>) -> Report {
        let summary = summarize(&results);
        Report {
            meta,
            results,
            summary,
        }
    }
}

/// Position of a strategy in tables and legends: MOVE, COPY, STW, others.
fn strategy_rank(s: &str) -> usize {
    [MOVE, COPY, STW].iter().position(|&k| k == s).unwrap_or(3)
}

/// One table row: the records of a (workload, parameters, strategy).
struct Group<'a> {
    workload: &'a str,
    /// The parameters without the strategy ([`key_of`]).
    params: Spec,
    strategy: &'a str,
    records: Vec<&'a RunRecord>,
}

/// The records grouped by (workload, [`params_key`], strategy): workloads
/// and parameters in order of first appearance, strategies MOVE, COPY,
/// STW.
fn groups(results: &[RunRecord]) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    for r in results {
        let params = key_of(&r.params);
        match out
            .iter_mut()
            .find(|g| g.workload == r.workload && g.params == params && g.strategy == r.strategy)
        {
            Some(g) => g.records.push(r),
            None => out.push(Group {
                workload: &r.workload,
                params,
                strategy: &r.strategy,
                records: vec![r],
            }),
        }
    }
    let first = |f: &dyn Fn(&RunRecord) -> bool| results.iter().position(f).unwrap_or(0);
    let mut keyed: Vec<((usize, usize, usize, String), Group<'_>)> = out
        .into_iter()
        .map(|g| {
            let w = first(&|r| r.workload == g.workload);
            let p = first(&|r| r.workload == g.workload && key_of(&r.params) == g.params);
            ((w, p, strategy_rank(g.strategy), g.strategy.to_string()), g)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().map(|(_, g)| g).collect()
}

/// The pairs of `g`'s parameters that every row of its workload has
/// (`shared`) or that some row lacks (`!shared`).
fn shared_params(g: &Group<'_>, groups: &[Group<'_>], shared: bool) -> Spec {
    let rows: Vec<&Group<'_>> = groups.iter().filter(|h| h.workload == g.workload).collect();
    g.params
        .iter()
        .filter(|&(k, v)| rows.iter().all(|h| h.params.has(k, v)) == shared)
        .fold(Spec::new(), |s, (k, v)| s.with(k, v))
}

/// Per workload, the parameters all its rows share (`key=value,..`).
fn common_params(groups: &[Group<'_>]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for g in groups {
        if out.iter().any(|(w, _)| w == g.workload) {
            continue;
        }
        let common = shared_params(g, groups, true);
        out.push((g.workload.to_string(), common.to_string()));
    }
    out
}

/// The parameters of `g` that differ between its workload's rows (`-` if
/// none).
fn varying_params(g: &Group<'_>, groups: &[Group<'_>]) -> String {
    let varying = shared_params(g, groups, false);
    if varying.is_empty() {
        "-".to_string()
    } else {
        varying.to_string()
    }
}

/// Column headers of the results table.
const HEADERS: [&str; 18] = [
    "workload",
    "params",
    "strategy",
    "n",
    "wall s",
    "cycles",
    "compact ms",
    "pause ms p50/p99/max",
    "moved",
    "copied",
    "madvise",
    "faults",
    "stall µs p50/p99/max",
    "RSS MiB",
    "cpu s",
    "ttsp ms max",
    "alloc stalls n/max ms",
    "gc cpu %",
];

/// The cells of the results table: one row per group, medians over its
/// repeats. The second value says whether any run fell back to another
/// strategy.
fn table_rows(results: &[RunRecord]) -> (Vec<[String; 18]>, bool) {
    let groups = groups(results);
    let mut fell_back = false;
    let rows = groups
        .iter()
        .map(|g| {
            let med = |f: fn(&RunRecord) -> f64| {
                median(&g.records.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let fb = g.records.iter().any(|r| r.strategy_used != r.strategy);
            fell_back |= fb;
            [
                g.workload.to_string(),
                varying_params(g, &groups),
                format!("{}{}", g.strategy, if fb { "*" } else { "" }),
                g.records.len().to_string(),
                format!("{:.3}", med(|r| r.wall_s)),
                format!("{:.0}", med(|r| r.cycles as f64)),
                format!("{:.2}", med(|r| r.compaction_ms)),
                format!(
                    "{:.2}/{:.2}/{:.2}",
                    med(|r| r.pause_ms.p50),
                    med(|r| r.pause_ms.p99),
                    med(|r| r.pause_ms.max)
                ),
                format!("{:.0}", med(|r| r.pages_moved as f64)),
                format!("{:.0}", med(|r| r.pages_copied as f64)),
                format!("{:.0}", med(|r| r.madvise_calls as f64)),
                format!("{:.0}", med(|r| r.faults as f64)),
                format!(
                    "{:.0}/{:.0}/{:.0}",
                    med(|r| r.fault_stall_us.p50),
                    med(|r| r.fault_stall_us.p99),
                    med(|r| r.fault_stall_us.max)
                ),
                format!(
                    "{:.1}",
                    med(|r| r.peak_rss_bytes as f64 / f64::from(1 << 20))
                ),
                format!("{:.3}", med(|r| r.cpu_s)),
                format!("{:.2}", med(|r| r.time_to_safepoint_ms.max)),
                format!(
                    "{:.0}/{:.2}",
                    med(|r| r.alloc_stalls as f64),
                    med(|r| r.alloc_stall_ms.max)
                ),
                format!("{:.1}", med(|r| r.gc_cpu_share * 100.0)),
            ]
        })
        .collect();
    (rows, fell_back)
}

/// Footnote for strategies marked `*`.
const FALLBACK_NOTE: &str =
    "* some runs fell back to another strategy (see `strategy_used` in results.json)";

/// `r` as `median [low, high] n=N`.
fn ratio_text(r: &Ratio) -> String {
    format!(
        "{:.3} (95% CI {:.3}–{:.3}, n={})",
        r.median, r.ci95_low, r.ci95_high, r.n
    )
}

/// A [`TotalRatio`] for display.
fn total_text(r: &TotalRatio) -> String {
    format!(
        "{:.3} (95% CI {:.3}–{:.3}, n={})",
        r.ratio, r.ci95_low, r.ci95_high, r.n
    )
}

/// A target's measured value for display.
fn target_value(t: &Target) -> String {
    match t.value {
        None => "no data".to_string(),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The summary as lines (ratio, per-workload ratios, targets).
fn summary_lines(s: &Summary) -> Vec<String> {
    let mut lines = vec![match &s.move_copy_compaction_ratio {
        Some(r) => format!("MOVE/COPY compaction time (compact): {}", ratio_text(r)),
        None => "MOVE/COPY compaction time (compact): no MOVE/COPY pair".to_string(),
    }];
    let others: Vec<(&String, &Ratio)> = s
        .per_workload
        .iter()
        .filter(|(w, _)| *w != "compact")
        .collect();
    if !others.is_empty() {
        lines.push("MOVE/COPY compaction time, other workloads:".to_string());
    }
    for (w, r) in others {
        lines.push(format!("  {w}: {}", ratio_text(r)));
    }
    for (prefix, r) in &s.move_copy_by_prefix {
        lines.push(format!(
            "    {COMPACT_PREFIX} prefix={prefix}: {}",
            ratio_text(r)
        ));
    }
    if !s.move_stw.is_empty() {
        lines.push(
            "MOVE/STW compaction time (and CPU: the work, whichever threads did it):".to_string(),
        );
    }
    for (w, (wall, cpu)) in &s.move_stw {
        let cpu = cpu.as_ref().map_or("no CPU data".to_string(), ratio_text);
        lines.push(format!("  {w}: {} (CPU {cpu})", ratio_text(wall)));
    }
    if !s.move_stw_total.is_empty() {
        lines.push("MOVE/STW compaction totals over every pair (time; CPU):".to_string());
    }
    for (w, (wall, cpu)) in &s.move_stw_total {
        let cpu = cpu.as_ref().map_or("no CPU data".to_string(), total_text);
        lines.push(format!("  {w}: {}; {cpu}", total_text(wall)));
    }
    lines.push(format!(
        "madvise calls under MOVE: {}",
        s.madvise_calls_move
    ));
    if !s.fault_stall_p99_us_max.is_empty() {
        let mut v: Vec<(&String, &f64)> = s.fault_stall_p99_us_max.iter().collect();
        v.sort_by_key(|(k, _)| (strategy_rank(k), k.as_str()));
        let parts: Vec<String> = v.iter().map(|(k, p)| format!("{k} {p:.0}")).collect();
        lines.push(format!("worst fault-stall p99, µs: {}", parts.join(", ")));
    }
    lines.push("targets:".to_string());
    for t in &s.targets {
        lines.push(format!(
            "  {} {}: {} — {}",
            t.name,
            t.goal,
            target_value(t),
            t.verdict()
        ));
    }
    lines
}

/// Heading of the large-refs table.
const THREADS_TITLE: &str = "Who waited on the collector, per thread (multi-threaded runs)";
const THREADS_NOTE: &str = "Every mutator thread of the first repeat of each multi-threaded \
    configuration: its faults on pages not yet compacted (count, summed stall, p99 as the upper \
    bound of its power-of-two bucket, longest), its allocation stalls, its TLAB refills delayed by \
    pacing, and how long stops of the world waited for it as the last thread to arrive.";
const THREADS_HEADERS: [&str; 11] = [
    "workload",
    "strategy",
    "thread",
    "faults",
    "stall ms",
    "stall µs p99/max",
    "alloc stalls",
    "alloc wait ms",
    "paced",
    "last to safepoint",
    "held up ms",
];

/// The rows of the per-thread table: runs of repeat 0 with at least two
/// mutator threads.
fn thread_cells(results: &[RunRecord]) -> Vec<[String; 11]> {
    let mut rows = Vec::new();
    let gs = groups(results);
    for r in results
        .iter()
        .filter(|r| r.repeat == 0 && r.threads.len() >= 2)
    {
        // The params that differ between the rows of its workload (as in
        // the main table).
        let params = gs
            .iter()
            .find(|g| g.records.iter().any(|x| std::ptr::eq(*x, r)))
            .map(|g| varying_params(g, &gs))
            .filter(|p| p != "-")
            .unwrap_or_default();
        let workload = if params.is_empty() {
            r.workload.clone()
        } else {
            format!("{} {params}", r.workload)
        };
        for t in &r.threads {
            rows.push([
                workload.clone(),
                r.strategy.clone(),
                format!("{} ({})", t.name, t.tid),
                t.faults.to_string(),
                format!("{:.2}", t.fault_stall_total_ms),
                format!("{:.0}/{:.0}", t.fault_stall_p99_us, t.fault_stall_max_us),
                t.alloc_stalls.to_string(),
                format!("{:.2}", t.alloc_stall_total_ms),
                t.pacing_delays.to_string(),
                t.last_to_safepoint.to_string(),
                format!("{:.2}", t.held_up_world_ms),
            ]);
        }
    }
    rows
}

const LARGE_REFS_TITLE: &str = "Final pause vs large-object references (large-refs)";

/// What the large-refs table's columns are, under its markdown heading.
const LARGE_REFS_NOTE: &str = "Per (array size, strategy), medians over repeats of: the final \
pause (the one holding the flip and `update_roots`; a stop-the-world cycle's only pause) p50 and \
max over the run's cycles, `update_roots` (rewriting the roots and every live large object's \
references, inside that pause) p50 and max, the p50 of prepare (forwarding tables, in the \
same pause, growing with the heap) and of the remark, and per-cycle means of the compaction \
time, the pages compacted and the dense-prefix pages left in place.";

/// `rows` under `headers`, columns aligned (the first `left` columns to
/// the left, the others to the right), one line each.
fn aligned<const N: usize>(headers: &[&str; N], rows: &[[String; N]], left: usize) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = " ".repeat(widths[i] - c.chars().count());
                if i < left {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&headers.map(str::to_string));
    out += &line(&widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>());
    for row in rows {
        out += &line(row);
    }
    out
}

/// The terminal view of a report: an aligned table (one row per workload,
/// parameters and strategy; medians over repeats; `params` shows only the
/// parameters that differ within the workload, the others follow the
/// table), the large-refs table if there are `large-refs` records, the
/// old-writes table if there are `old-writes` records, then the summary
/// with each target marked met / missed.
pub fn text_table(r: &Report) -> String {
    let (rows, fell_back) = table_rows(&r.results);
    let width = |i: usize| {
        rows.iter()
            .map(|row| row[i].chars().count())
            .chain([HEADERS[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..HEADERS.len()).map(width).collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = " ".repeat(widths[i] - c.chars().count());
                if i < 3 {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = String::new();
    let header: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    let _ = writeln!(out, "{}", line(&header));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let _ = writeln!(out, "{}", line(&rule));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    if rows.is_empty() {
        let _ = writeln!(out, "(no results)");
    }
    if fell_back {
        let _ = writeln!(out, "{FALLBACK_NOTE}");
    }
    for (w, p) in common_params(&groups(&r.results)) {
        if !p.is_empty() {
            let _ = writeln!(out, "{w}: {p}");
        }
    }
    let cells = large_refs_cells(&large_refs_rows(&r.results));
    if !cells.is_empty() {
        let _ = writeln!(out, "\n{LARGE_REFS_TITLE}:");
        out.push_str(&aligned(&LARGE_REFS_HEADERS, &cells, 2));
    }
    let cells = old_writes_cells(&old_writes_rows(&r.results));
    if !cells.is_empty() {
        let _ = writeln!(out, "\n{OLD_WRITES_TITLE}:");
        out.push_str(&aligned(&OLD_WRITES_HEADERS, &cells, 3));
    }
    let cells = thread_cells(&r.results);
    if !cells.is_empty() {
        let _ = writeln!(out, "\n{THREADS_TITLE}:");
        out.push_str(&aligned(&THREADS_HEADERS, &cells, 3));
    }
    let _ = writeln!(out);
    for l in summary_lines(&r.summary) {
        let _ = writeln!(out, "{l}");
    }
    out
}

/// Appends a markdown table; columns for which `left` holds are
/// left-aligned, the others (numbers) right-aligned.
fn md_table<const N: usize>(
    out: &mut String,
    headers: &[&str; N],
    rows: &[[String; N]],
    left: impl Fn(usize) -> bool,
) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let aligns: Vec<&str> = (0..N)
        .map(|i| if left(i) { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |", aligns.join(" | "));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// Escapes a markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('*', "\\*")
}

/// `report.md`: the meta, the results table, the large-refs table (final
/// pause vs large-object references, if there are `large-refs` records),
/// the old-writes table (remembered-set cost by dirty rate, if there are
/// `old-writes` records), the summary and `plots` as image links. Links use each plot's file name, so `report.md` belongs in
/// the directory the plots were written to.
pub fn markdown(r: &Report, plots: &[PathBuf]) -> String {
    let m = &r.meta;
    let mut out = String::from("# movegc benchmark report\n\n## Run\n\n");
    let or_unknown = |s: &str| {
        if s.is_empty() {
            "unknown".to_string()
        } else {
            s.to_string()
        }
    };
    let features = if m.uffd_features.is_empty() {
        "none reported".to_string()
    } else {
        m.uffd_features.join(", ")
    };
    let meta_lines = [
        (
            "Machine",
            format!(
                "{}, {} cores, {:.1} GiB",
                or_unknown(&m.machine.cpu_model),
                m.machine.cores,
                m.machine.memory_gib
            ),
        ),
        ("Kernel", or_unknown(&m.kernel)),
        ("userfaultfd features", features),
        ("Probe", or_unknown(&m.probe_strategy)),
        ("Command", format!("`{}`", m.command_line)),
        (
            "Git revision",
            m.git_revision.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("Timestamp (UTC)", or_unknown(&m.timestamp)),
        ("Preparation", or_unknown(&m.preparation)),
        ("Quick mode", if m.quick { "yes" } else { "no" }.to_string()),
    ];
    for (k, v) in meta_lines {
        let _ = writeln!(out, "- **{k}:** {v}");
    }
    let _ = writeln!(out, "\n## Results (median over repeats)\n");
    let (rows, fell_back) = table_rows(&r.results);
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let aligns: Vec<&str> = (0..HEADERS.len())
        .map(|i| if i < 3 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |", aligns.join(" | "));
    for row in &rows {
        let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    if fell_back {
        let _ = writeln!(out, "\n{}", md_cell(FALLBACK_NOTE));
    }
    let common = common_params(&groups(&r.results));
    if !common.is_empty() {
        let _ = writeln!(out, "\nParameters shared by every row of a workload:\n");
        for (w, p) in common {
            let p = if p.is_empty() { "-".into() } else { p };
            let _ = writeln!(out, "- `{w}`: `{p}`");
        }
    }
    let cells = large_refs_cells(&large_refs_rows(&r.results));
    if !cells.is_empty() {
        let _ = writeln!(out, "\n## {LARGE_REFS_TITLE}\n");
        let _ = writeln!(out, "{LARGE_REFS_NOTE}\n");
        md_table(&mut out, &LARGE_REFS_HEADERS, &cells, |i| i == 1);
    }
    let cells = old_writes_cells(&old_writes_rows(&r.results));
    if !cells.is_empty() {
        let _ = writeln!(out, "\n## {OLD_WRITES_TITLE}\n");
        let _ = writeln!(out, "{OLD_WRITES_NOTE}\n");
        md_table(&mut out, &OLD_WRITES_HEADERS, &cells, |i| {
            (1..3).contains(&i)
        });
    }
    let cells = thread_cells(&r.results);
    if !cells.is_empty() {
        let _ = writeln!(out, "\n## {THREADS_TITLE}\n");
        let _ = writeln!(out, "{THREADS_NOTE}\n");
        md_table(&mut out, &THREADS_HEADERS, &cells, |i| i < 3);
    }
    let _ = writeln!(out, "\n## Summary\n");
    let s = &r.summary;
    match &s.move_copy_compaction_ratio {
        Some(ratio) => {
            let _ = writeln!(
                out,
                "- **MOVE/COPY compaction time (compact):** {}",
                ratio_text(ratio)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "- **MOVE/COPY compaction time (compact):** no MOVE/COPY pair"
            );
        }
    }
    let others: Vec<(&String, &Ratio)> = s
        .per_workload
        .iter()
        .filter(|(w, _)| *w != "compact")
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "- **MOVE/COPY compaction time, other workloads:**");
    }
    for (w, ratio) in others {
        let _ = writeln!(out, "  - `{w}`: {}", ratio_text(ratio));
    }
    for (prefix, ratio) in &s.move_copy_by_prefix {
        let _ = writeln!(
            out,
            "    - `{COMPACT_PREFIX}` at `prefix={prefix}`: {}",
            ratio_text(ratio)
        );
    }
    let _ = writeln!(
        out,
        "- **madvise calls under MOVE:** {}",
        s.madvise_calls_move
    );
    let mut stalls: Vec<(&String, &f64)> = s.fault_stall_p99_us_max.iter().collect();
    stalls.sort_by_key(|(k, _)| (strategy_rank(k), k.as_str()));
    for (k, p) in stalls {
        let _ = writeln!(out, "- **worst fault-stall p99, {k}:** {p:.0} µs");
    }
    let _ = writeln!(
        out,
        "\n| target | goal | value | verdict |\n| --- | --- | ---: | --- |"
    );
    for t in &s.targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | **{}** |",
            md_cell(&t.name),
            md_cell(&t.goal),
            target_value(t),
            t.verdict()
        );
    }
    if !plots.is_empty() {
        let _ = writeln!(out, "\n## Plots\n");
        for p in plots {
            let name = p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let alt = name.trim_end_matches(".svg").replace('_', " ");
            let _ = writeln!(out, "![{alt}]({name})\n");
        }
    }
    out
}

/// Series colour of a strategy.
fn strategy_color(s: &str) -> RGBColor {
    match s {
        MOVE => RGBColor(0x1f, 0x77, 0xb4),
        COPY => RGBColor(0xff, 0x7f, 0x0e),
        STW => RGBColor(0xd6, 0x27, 0x28),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// Plot size, pixels.
const PLOT_SIZE: (u32, u32) = (900, 560);

/// One plotted series: legend label, strategy (for the colour), points,
/// and whether it is drawn dashed (a secondary measure of the strategy).
struct Series {
    label: String,
    strategy: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

/// Texts of a plot.
struct Labels<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
    /// How many x-axis labels to aim for.
    x_ticks: usize,
    /// Where the legend goes.
    legend: SeriesLabelPosition,
}

/// An axis label: integers without decimals, others with at most three
/// significant decimals.
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `(lo, hi)` padded so the points are not on the frame (and a range
/// exists for a single value).
fn padded(lo: f64, hi: f64, from_zero: bool) -> (f64, f64) {
    let lo = if from_zero { lo.min(0.0) } else { lo };
    if hi > lo {
        let pad = (hi - lo) * 0.05;
        (if from_zero { lo } else { lo - pad }, hi + pad)
    } else if hi == 0.0 {
        (0.0, 1.0)
    } else {
        let pad = hi.abs() * 0.5;
        (if from_zero { lo.min(0.0) } else { lo - pad }, hi + pad)
    }
}

/// The axes of a plot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// Both linear.
    Linear,
    /// Logarithmic x (all x must be positive).
    LogX,
    /// Logarithmic y (values at or below zero are drawn at the bottom).
    LogY,
}

/// Draws line + point series on a chart with a legend, on the axes of
/// `scale`.
fn plot_lines(
    path: &Path,
    labels: &Labels<'_>,
    series: &[Series],
    scale: Scale,
    y_range: Option<(f64, f64)>,
) -> Result<(), String> {
    let log_y_range = || {
        let (lo, hi) = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|&y| y > 0.0)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
                (a.min(y), b.max(y))
            });
        if lo.is_finite() {
            (lo / 1.5, hi * 1.5)
        } else {
            (0.1, 1.0)
        }
    };
    let clamped: Vec<Series>;
    let series = if scale == Scale::LogY {
        let bottom = y_range.unwrap_or_else(log_y_range).0;
        clamped = series
            .iter()
            .map(|s| Series {
                label: s.label.clone(),
                strategy: s.strategy.clone(),
                points: s.points.iter().map(|&(x, y)| (x, y.max(bottom))).collect(),
                dashed: s.dashed,
            })
            .collect();
        &clamped[..]
    } else {
        series
    };
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (xmin, xmax) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let (ymin, ymax) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    let (y0, y1) = y_range.unwrap_or_else(|| padded(ymin, ymax, true));
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = SVGBackend::new(path, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(labels.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_labels(labels.x_ticks)
                .x_label_formatter(&|v| tick(v))
                .x_desc(labels.x)
                .y_desc(labels.y)
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(|e| err(&e))?;
            for s in series {
                let color = strategy_color(&s.strategy);
                if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(
                            s.points.iter().copied(),
                            8,
                            5,
                            color.stroke_width(2),
                        ))
                        .map_err(|e| err(&e))?
                        .label(s.label.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(2))
                        });
                    chart
                        .draw_series(
                            s.points
                                .iter()
                                .map(|&p| Cross::new(p, 4, color.stroke_width(2))),
                        )
                        .map_err(|e| err(&e))?;
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| err(&e))?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| err(&e))?;
            }
            chart
                .configure_series_labels()
                .position(labels.legend.clone())
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    match scale {
        Scale::LogX => {
            let (lo, hi) = if xmax > xmin {
                (xmin / 1.25, xmax * 1.25)
            } else {
                (xmin / 2.0, xmin * 2.0)
            };
            draw!(builder
                .build_cartesian_2d((lo..hi).log_scale(), y0..y1)
                .map_err(|e| err(&e))?);
        }
        Scale::LogY => {
            let (x0, x1) = padded(xmin, xmax, false);
            let (y0, y1) = y_range.unwrap_or_else(log_y_range);
            draw!(builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| err(&e))?);
        }
        Scale::Linear => {
            let (x0, x1) = padded(xmin, xmax, false);
            draw!(builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(&e))?);
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The `heap=<MiB>` value of a parameter string.
fn heap_mib(params: &str) -> Option<f64> {
    spec_of(params).get("heap")?.parse().ok()
}

/// Strategies present in `records`, MOVE, COPY, STW first.
fn strategies<'a>(records: impl Iterator<Item = &'a RunRecord>) -> Vec<&'a str> {
    let mut v: Vec<&str> = records.map(|r| r.strategy.as_str()).collect();
    v.sort_by_key(|s| (strategy_rank(s), *s));
    v.dedup();
    v
}

/// Series of `compaction_vs_heap.svg`: per strategy, the median compaction
/// time of the `compact` records of each heap size (all repeats and other
/// parameters of that size pooled).
fn compaction_series(results: &[RunRecord]) -> Vec<Series> {
    let compact: Vec<(&RunRecord, f64)> = results
        .iter()
        .filter(|r| r.workload == "compact")
        .filter_map(|r| Some((r, heap_mib(&r.params)?)))
        .collect();
    strategies(compact.iter().map(|(r, _)| *r))
        .into_iter()
        .map(|s| {
            let mut by_heap: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for (r, heap) in compact.iter().filter(|(r, _)| r.strategy == s) {
                by_heap
                    .entry(heap.to_bits())
                    .or_default()
                    .push(r.compaction_ms);
            }
            let mut points: Vec<(f64, f64)> = by_heap
                .into_iter()
                .map(|(h, v)| (f64::from_bits(h), median(&v)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: s.to_string(),
                strategy: s.to_string(),
                points,
                dashed: false,
            }
        })
        .collect()
}

/// Series of `fault_stall_cdf.svg`: per strategy, the CDF of one
/// representative run (see [`write_plots`]), x clamped to ≥ 1 µs for the
/// log axis.
fn stall_cdf_series(results: &[RunRecord]) -> Vec<Series> {
    let with_cdf: Vec<&RunRecord> = results
        .iter()
        .filter(|r| !r.fault_stall_cdf.is_empty())
        .collect();
    let strats = strategies(with_cdf.iter().copied());
    // One workload for every strategy, so the curves compare like with
    // like: the fault workload first, then any workload all strategies ran.
    let mut candidates = vec!["compact-mutators", "compact"];
    candidates.extend(with_cdf.iter().map(|r| r.workload.as_str()));
    let workload = candidates.into_iter().find(|w| {
        strats.iter().all(|s| {
            with_cdf
                .iter()
                .any(|r| r.workload == *w && r.strategy == *s)
        })
    });
    strats
        .into_iter()
        .filter_map(|s| {
            let all: Vec<&RunRecord> = with_cdf
                .iter()
                .copied()
                .filter(|r| r.strategy == s && workload.is_none_or(|w| r.workload == w))
                .collect();
            // The default fault mode when there is a choice.
            let sigbus: Vec<&RunRecord> = all
                .iter()
                .copied()
                .filter(|r| r.fault_mode == "sigbus")
                .collect();
            let mut pool = if sigbus.is_empty() { all } else { sigbus };
            pool.sort_by(|a, b| a.fault_stall_us.p99.total_cmp(&b.fault_stall_us.p99));
            let rep = *pool.get((pool.len().checked_sub(1)?) / 2)?;
            Some(Series {
                label: format!(
                    "{s} ({}, {}, repeat {})",
                    rep.workload, rep.fault_mode, rep.repeat
                ),
                strategy: s.to_string(),
                points: rep
                    .fault_stall_cdf
                    .iter()
                    .map(|&[us, q]| (us.max(1.0), q))
                    .collect(),
                dashed: false,
            })
        })
        .collect()
}

/// Series of `fragmenter_pauses.svg`: per strategy, the pause of each
/// cycle of its first `fragmenter` record of the lowest repeat index; also
/// the lowest repeat of all (a strategy without a record of it says its
/// repeat in its label).
fn fragmenter_series(results: &[RunRecord]) -> (Vec<Series>, usize) {
    let frag: Vec<&RunRecord> = results
        .iter()
        .filter(|r| r.workload == "fragmenter" && !r.per_cycle.is_empty())
        .collect();
    let first_repeat = frag.iter().map(|r| r.repeat).min().unwrap_or(0);
    let series = strategies(frag.iter().copied())
        .into_iter()
        .filter_map(|s| {
            let rec = frag
                .iter()
                .filter(|r| r.strategy == s)
                .min_by_key(|r| r.repeat)?;
            Some(Series {
                label: if rec.repeat == first_repeat {
                    s.to_string()
                } else {
                    format!("{s} (repeat {})", rec.repeat)
                },
                strategy: s.to_string(),
                points: rec
                    .per_cycle
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (i as f64, c.pause_ms))
                    .collect(),
                dashed: false,
            })
        })
        .collect();
    (series, first_repeat)
}

/// Name of the large-refs workload (`RunRecord::workload`).
pub const LARGE_REFS: &str = "large-refs";

/// The `entries=` value of a parameter string.
fn entries(params: &str) -> Option<usize> {
    spec_of(params).get("entries")?.parse().ok()
}

/// One row of the large-refs table: the records of one (array size,
/// strategy), each value the median over repeats of a per-run value.
#[derive(Clone, Debug, PartialEq)]
struct LargeRefsRow {
    entries: usize,
    strategy: String,
    runs: usize,
    final_p50: f64,
    final_max: f64,
    update_roots_p50: f64,
    update_roots_max: f64,
    prepare_p50: f64,
    remark_p50: f64,
    compaction_per_cycle: f64,
    pages_compacted_per_cycle: f64,
    dense_pages_per_cycle: f64,
}

/// The large-refs rows of `results`, by array size, then MOVE, COPY, STW.
fn large_refs_rows(results: &[RunRecord]) -> Vec<LargeRefsRow> {
    let mut by: BTreeMap<(usize, usize, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.workload == LARGE_REFS) {
        if let Some(n) = entries(&r.params) {
            // Runs against another API than the untyped one are rows of
            // their own (`movegc bench --api`), named after it.
            let strategy = match spec_of(&r.params).get("api") {
                Some(api) if api != "untyped" => format!("{} ({api})", r.strategy),
                _ => r.strategy.clone(),
            };
            by.entry((n, strategy_rank(&r.strategy), strategy))
                .or_default()
                .push(r);
        }
    }
    by.into_iter()
        .map(|((entries, _, strategy), recs)| {
            let med = |f: &dyn Fn(&RunRecord) -> f64| {
                median(&recs.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let per_cycle = |r: &RunRecord, f: fn(&CycleRecord) -> f64| {
                r.per_cycle.iter().map(f).sum::<f64>() / r.per_cycle.len().max(1) as f64
            };
            LargeRefsRow {
                entries,
                strategy,
                runs: recs.len(),
                final_p50: med(&|r| r.final_pause_ms.p50),
                final_max: med(&|r| r.final_pause_ms.max),
                update_roots_p50: med(&|r| r.update_roots_ms.p50),
                update_roots_max: med(&|r| r.update_roots_ms.max),
                prepare_p50: med(&|r| {
                    median(&r.per_cycle.iter().map(|c| c.prepare_ms).collect::<Vec<_>>())
                }),
                remark_p50: med(&|r| {
                    median(&r.per_cycle.iter().map(|c| c.remark_ms).collect::<Vec<_>>())
                }),
                compaction_per_cycle: med(&|r| per_cycle(r, |c| c.compaction_ms)),
                pages_compacted_per_cycle: med(&|r| per_cycle(r, |c| c.pages_compacted as f64)),
                dense_pages_per_cycle: med(&|r| per_cycle(r, |c| c.dense_pages as f64)),
            }
        })
        .collect()
}

/// `n` as `12M`, `250k` or digits (whichever is exact).
fn count_text(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// Column headers of the large-refs table.
const LARGE_REFS_HEADERS: [&str; 10] = [
    "entries",
    "strategy",
    "n",
    "final pause ms p50/max",
    "update_roots ms p50/max",
    "prepare ms p50",
    "remark ms p50",
    "compaction ms/cycle",
    "pages compacted/cycle",
    "dense pages/cycle",
];

/// The cells of the large-refs table.
fn large_refs_cells(rows: &[LargeRefsRow]) -> Vec<[String; 10]> {
    rows.iter()
        .map(|r| {
            [
                count_text(r.entries),
                r.strategy.clone(),
                r.runs.to_string(),
                format!("{:.2}/{:.2}", r.final_p50, r.final_max),
                format!("{:.2}/{:.2}", r.update_roots_p50, r.update_roots_max),
                format!("{:.2}", r.prepare_p50),
                format!("{:.2}", r.remark_p50),
                format!("{:.1}", r.compaction_per_cycle),
                format!("{:.0}", r.pages_compacted_per_cycle),
                format!("{:.0}", r.dense_pages_per_cycle),
            ]
        })
        .collect()
}

/// Name of the old-writes workload (`RunRecord::workload`).
pub const OLD_WRITES: &str = "old-writes";

const OLD_WRITES_TITLE: &str = "Remembered-set cost by dirty rate (old-writes)";

/// What the old-writes table's columns are, under its markdown heading.
const OLD_WRITES_NOTE: &str = "Per (dirty rate, remembered-set builder, strategy), medians over \
repeats of: the rounds' wall time, the young cycles, the p50 over rounds of the time the round's \
reference stores into old nodes took (the mutator's side: card marks, or write faults on \
protected pages), the p50 of the young cycles' pauses, and per-young-cycle means of the dirty \
old pages scanned as the remembered set and that scan, of the pages `PAGEMAP_SCAN` reported \
written and that scan, and of re-protecting the old region (the last three only with `wp`), \
with the run's minor page faults (setup included). The builder is the one asked for; \
`wp→cards` means the cycles fell back to cards.";

/// One row of the old-writes table: the records of one (rate, builder,
/// strategy), each value the median over repeats of a per-run value.
#[derive(Clone, Debug, PartialEq)]
struct OldWritesRow {
    rate: f64,
    builder: String,
    strategy: String,
    runs: usize,
    wall_s: f64,
    young_cycles: f64,
    store_us_p50: f64,
    young_pause_ms_p50: f64,
    dirty_pages: f64,
    scan_us: f64,
    written_pages: f64,
    written_scan_us: f64,
    protect_us: f64,
    minflt: f64,
}

/// The builder a record asked for (`young=on`: cards, `young=wp`), with
/// `→cards` when its young cycles used another one.
fn builder_of(r: &RunRecord) -> String {
    let asked = match spec_of(&r.params).get("young") {
        Some("wp") => "wp",
        Some(_) => "cards",
        None => "-",
    };
    let mut used: Vec<&str> = r
        .per_cycle
        .iter()
        .filter_map(|c| c.remembered_set.as_deref())
        .filter(|&u| u != asked)
        .collect();
    used.sort_unstable();
    used.dedup();
    if used.is_empty() {
        asked.to_string()
    } else {
        format!("{asked}→{}", used.join("+"))
    }
}

/// The old-writes rows of `results`, by rate, builder, then MOVE, COPY,
/// STW.
fn old_writes_rows(results: &[RunRecord]) -> Vec<OldWritesRow> {
    let mut by: BTreeMap<(u64, String, usize, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.workload == OLD_WRITES) {
        let Some(rate) = spec_of(&r.params)
            .get("rate")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| *v >= 0.0)
        else {
            continue;
        };
        // A non-negative float's bits order as the float.
        by.entry((
            rate.to_bits(),
            builder_of(r),
            strategy_rank(&r.strategy),
            r.strategy.clone(),
        ))
        .or_default()
        .push(r);
    }
    by.into_iter()
        .map(|((rate, builder, _, strategy), recs)| {
            let med = |f: &dyn Fn(&RunRecord) -> f64| {
                median(&recs.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let per_young = |r: &RunRecord, f: fn(&CycleRecord) -> f64| {
                let young: Vec<f64> = r.per_cycle.iter().filter(|c| c.young).map(f).collect();
                young.iter().sum::<f64>() / young.len().max(1) as f64
            };
            OldWritesRow {
                rate: f64::from_bits(rate),
                builder,
                strategy,
                runs: recs.len(),
                wall_s: med(&|r| r.wall_s),
                young_cycles: med(&|r| r.per_cycle.iter().filter(|c| c.young).count() as f64),
                store_us_p50: med(&|r| r.op_latency_us.map_or(0.0, |q| q.p50)),
                young_pause_ms_p50: med(&|r| {
                    let p: Vec<f64> = r
                        .per_cycle
                        .iter()
                        .filter(|c| c.young)
                        .map(|c| c.pause_ms)
                        .collect();
                    if p.is_empty() {
                        0.0
                    } else {
                        median(&p)
                    }
                }),
                dirty_pages: med(&|r| per_young(r, |c| c.remembered_pages as f64)),
                scan_us: med(&|r| per_young(r, |c| c.remembered_scan_us)),
                written_pages: med(&|r| per_young(r, |c| c.written_pages as f64)),
                written_scan_us: med(&|r| per_young(r, |c| c.written_scan_us)),
                protect_us: med(&|r| per_young(r, |c| c.write_protect_us)),
                minflt: med(&|r| r.minflt as f64),
            }
        })
        .collect()
}

/// Column headers of the old-writes table.
const OLD_WRITES_HEADERS: [&str; 14] = [
    "rate %",
    "builder",
    "strategy",
    "n",
    "wall s",
    "young cycles",
    "stores µs/round p50",
    "young pause ms p50",
    "dirty pages/cycle",
    "scan µs/cycle",
    "written pages/cycle",
    "written scan µs/cycle",
    "protect µs/cycle",
    "minflt",
];

/// The cells of the old-writes table.
fn old_writes_cells(rows: &[OldWritesRow]) -> Vec<[String; 14]> {
    rows.iter()
        .map(|r| {
            [
                format!("{}", r.rate),
                r.builder.clone(),
                r.strategy.clone(),
                r.runs.to_string(),
                format!("{:.3}", r.wall_s),
                format!("{:.0}", r.young_cycles),
                format!("{:.0}", r.store_us_p50),
                format!("{:.2}", r.young_pause_ms_p50),
                format!("{:.0}", r.dirty_pages),
                format!("{:.0}", r.scan_us),
                format!("{:.0}", r.written_pages),
                format!("{:.0}", r.written_scan_us),
                format!("{:.0}", r.protect_us),
                format!("{:.0}", r.minflt),
            ]
        })
        .collect()
}

/// Series of `final_pause_vs_large_refs.svg`: per strategy, the final
/// pause (p50 over a run's cycles, median over repeats) against the
/// array's entries in millions, and `update_roots` the same way (dashed).
fn large_refs_series(results: &[RunRecord]) -> Vec<Series> {
    let rows = large_refs_rows(results);
    let mut strats: Vec<&str> = rows.iter().map(|r| r.strategy.as_str()).collect();
    strats.sort_by_key(|s| (strategy_rank(s), *s));
    strats.dedup();
    let mut out = Vec::new();
    for s in strats {
        let mine: Vec<&LargeRefsRow> = rows.iter().filter(|r| r.strategy == s).collect();
        let points = |f: fn(&LargeRefsRow) -> f64| {
            mine.iter()
                .map(|r| (r.entries as f64 / 1e6, f(r)))
                .collect::<Vec<_>>()
        };
        out.push(Series {
            label: format!("{s}: final pause"),
            strategy: s.to_string(),
            points: points(|r| r.final_p50),
            dashed: false,
        });
        out.push(Series {
            label: format!("{s}: update_roots"),
            strategy: s.to_string(),
            points: points(|r| r.update_roots_p50),
            dashed: true,
        });
    }
    out
}

/// Writes the plots of `r` into `dir` (created if missing) and returns the
/// files written; a plot whose data is absent is skipped, not an error.
///
/// - `compaction_vs_heap.svg`: compaction completion time (ms, median over
///   repeats) against heap size (MiB, the `heap=` parameter) of the
///   `compact` workload, one line per strategy.
/// - `fault_stall_cdf.svg`: fault-stall CDF per strategy, x logarithmic in
///   µs. Records are not merged: each strategy shows its representative
///   run, the record whose stall p99 is the median (lower median) among
///   that strategy's records with stall data, all strategies from the same
///   workload (`compact-mutators` if every strategy ran it, else `compact`,
///   else the first one they all ran) and from `sigbus` records when there
///   are any. A run's CDF is a
///   real distribution; concatenating sampled CDF points of several runs
///   would not be one.
/// - `fragmenter_pauses.svg`: pause (ms) per cycle index of the
///   `fragmenter` workload, one line per strategy (its lowest repeat).
/// - `final_pause_vs_large_refs.svg`: the `large-refs` workload's final
///   pause (ms; p50 over a run's cycles, median over repeats) against the
///   references in its large array (millions), one solid line per
///   strategy, with that strategy's `update_roots` time dashed; y
///   logarithmic (stop-the-world's pause, which holds marking and
///   compaction, is ~15× the concurrent ones').
pub fn write_plots(r: &Report, dir: &Path) -> Result<Vec<PathBuf>, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let nonempty = |v: &[Series]| v.iter().any(|s| !s.points.is_empty());

    let series = compaction_series(&r.results);
    if nonempty(&series) {
        let path = dir.join("compaction_vs_heap.svg");
        let labels = Labels {
            title: "Compaction completion time vs heap size (compact, median over repeats)",
            x: "heap size (MiB)",
            y: "compaction completion time (ms)",
            x_ticks: 10,
            legend: SeriesLabelPosition::UpperLeft,
        };
        plot_lines(&path, &labels, &series, Scale::Linear, None)?;
        written.push(path);
    }

    let series = stall_cdf_series(&r.results);
    if nonempty(&series) {
        let path = dir.join("fault_stall_cdf.svg");
        let labels = Labels {
            title: "Fault-stall CDF per strategy (representative run: median p99)",
            x: "fault stall (µs, log scale)",
            y: "fraction of faults stalled ≤ x",
            x_ticks: 20,
            // A CDF rises to the upper left and its tail runs along the
            // top: the lower right is the empty corner.
            legend: SeriesLabelPosition::LowerRight,
        };
        plot_lines(&path, &labels, &series, Scale::LogX, Some((0.0, 1.02)))?;
        written.push(path);
    }

    let (series, repeat) = fragmenter_series(&r.results);
    if nonempty(&series) {
        let cycles = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
        let path = dir.join("fragmenter_pauses.svg");
        let title = format!("Fragmenter: pause per collection cycle (repeat {repeat})");
        let labels = Labels {
            title: &title,
            x: "cycle index",
            y: "pause (ms)",
            x_ticks: cycles.clamp(2, 12),
            legend: SeriesLabelPosition::UpperLeft,
        };
        plot_lines(&path, &labels, &series, Scale::Linear, None)?;
        written.push(path);
    }

    let series = large_refs_series(&r.results);
    if nonempty(&series) {
        let path = dir.join("final_pause_vs_large_refs.svg");
        let labels = Labels {
            title: "Final pause vs large-object references (large-refs, median over repeats)",
            x: "references in the large array (millions)",
            y: "final pause, update_roots dashed (ms, p50 over cycles, log scale)",
            x_ticks: 12,
            legend: SeriesLabelPosition::LowerRight,
        };
        plot_lines(&path, &labels, &series, Scale::LogY, None)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let at = |s: u64| utc_timestamp(UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn proc_parsing() {
        let cpu = "processor\t: 0\nmodel name\t: Test CPU @ 3GHz\n\nprocessor\t: 1\nmodel name\t: Test CPU @ 3GHz\n";
        assert_eq!(cpu_model(cpu), "Test CPU @ 3GHz");
        assert_eq!(cpu_count(cpu), 2);
        assert_eq!(
            memory_gib("MemTotal:       25165824 kB\nMemFree: 1 kB\n"),
            24.0
        );
        assert_eq!(cpu_model(""), "unknown");
    }

    #[test]
    fn strategy_names_match_the_gc() {
        use movegc_gc::Strategy;
        assert_eq!(Strategy::ConcurrentMove.name(), MOVE);
        assert_eq!(Strategy::ConcurrentCopy.name(), COPY);
        assert_eq!(Strategy::StopTheWorld.name(), STW);
    }

    #[test]
    fn params_key_drops_only_the_strategy() {
        assert_eq!(
            params_key("heap=64,live=0.5,strategy=concurrent-move,fault=sigbus"),
            "heap=64,live=0.5,fault=sigbus"
        );
        assert_eq!(params_key(""), "");
        assert_eq!(params_key("n=17,young=on"), "n=17,young=on");
    }

    #[test]
    fn committed_ratios_are_reproduced_from_their_results() {
        // `--render` recomputes the summary: the committed intervals must
        // come out the same (see `SplitMix64`).
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bench");
        for dir in ["", "generational", "large-refs", "large-refs-arena"] {
            let path = docs.join(dir).join("results.json");
            let text = fs::read_to_string(&path).unwrap();
            let r: Report = serde_json::from_str(&text).unwrap();
            assert!(!r.summary.per_workload.is_empty(), "{}", path.display());
            let again = summarize(&r.results).per_workload;
            assert_eq!(again.len(), r.summary.per_workload.len());
            // serde_json reads some floats one ulp off.
            let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
            for (w, was) in &r.summary.per_workload {
                let now = &again[w];
                assert!(
                    now.n == was.n
                        && close(now.median, was.median)
                        && close(now.ci95_low, was.ci95_low)
                        && close(now.ci95_high, was.ci95_high),
                    "{} {w}: {now:?} vs {was:?}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn the_per_thread_table_lists_every_thread_of_multi_threaded_runs() {
        let t = |name: &str, faults: u64| crate::record::ThreadRecord {
            name: name.into(),
            tid: 7,
            faults,
            fault_stall_total_ms: 1.5,
            fault_stall_p99_us: 64.0,
            fault_stall_max_us: 90.0,
            alloc_stalls: 2,
            ..Default::default()
        };
        let multi = RunRecord {
            workload: "threads".into(),
            strategy: MOVE.into(),
            threads: vec![t("worker-0", 120), t("worker-1", 80)],
            ..Default::default()
        };
        let single = RunRecord {
            workload: "fragmenter".into(),
            strategy: MOVE.into(),
            threads: vec![t("main", 5)],
            ..Default::default()
        };
        let later = RunRecord {
            repeat: 1,
            ..multi.clone()
        };
        let cells = thread_cells(&[multi, single, later]);
        assert_eq!(cells.len(), 2, "repeat 0 of multi-threaded runs only");
        assert_eq!(cells[0][2], "worker-0 (7)");
        assert_eq!(cells[0][3], "120");
        assert_eq!(cells[1][5], "64/90");
        let mut md = String::new();
        md_table(&mut md, &THREADS_HEADERS, &cells, |i| i < 3);
        assert!(
            md.contains("| threads | concurrent-move | worker-1 (7) | 80 | 1.50 | 64/90 | 2 |"),
            "{md}"
        );
    }

    #[test]
    fn the_old_writes_table_has_a_row_per_rate_builder_and_strategy() {
        let young = |set: &str, pages: usize, protect: f64| CycleRecord {
            young: true,
            remembered_set: Some(set.into()),
            remembered_pages: pages,
            remembered_scan_us: 10.0,
            written_pages: if set == "wp" { pages } else { 0 },
            write_protect_us: protect,
            pause_ms: 0.5,
            ..Default::default()
        };
        let rec = |params: &str, set: &str, repeat: usize, wall_s: f64| RunRecord {
            workload: OLD_WRITES.into(),
            strategy: STW.into(),
            params: params.into(),
            repeat,
            wall_s,
            per_cycle: vec![
                CycleRecord::default(),
                young(set, 100, 30.0),
                young(set, 300, 50.0),
            ],
            op_latency_us: Some(crate::record::Quantiles {
                p50: 7.0,
                p99: 9.0,
                max: 9.0,
            }),
            ..Default::default()
        };
        let results = [
            rec("rate=10,old=64,young=wp", "wp", 0, 1.0),
            rec("rate=10,old=64,young=wp", "wp", 1, 3.0),
            rec("rate=1,old=64,young=on", "cards", 0, 2.0),
            rec("rate=10,old=64,young=on", "cards", 0, 2.0),
            // Asked for wp, ran with cards.
            rec("rate=50,old=64,young=wp", "cards", 0, 2.0),
            RunRecord {
                workload: "gcbench".into(),
                ..Default::default()
            },
        ];
        let rows = old_writes_rows(&results);
        let keys: Vec<(f64, &str)> = rows.iter().map(|r| (r.rate, r.builder.as_str())).collect();
        assert_eq!(
            keys,
            [
                (1.0, "cards"),
                (10.0, "cards"),
                (10.0, "wp"),
                (50.0, "wp→cards")
            ]
        );
        let wp = &rows[2];
        assert_eq!((wp.runs, wp.wall_s, wp.young_cycles), (2, 2.0, 2.0));
        assert_eq!(
            (wp.dirty_pages, wp.written_pages, wp.protect_us),
            (200.0, 200.0, 40.0)
        );
        assert_eq!((wp.store_us_p50, wp.young_pause_ms_p50), (7.0, 0.5));
        assert_eq!(rows[1].written_pages, 0.0);
        let cells = old_writes_cells(&rows);
        assert_eq!(cells[2][..4], ["10", "wp", STW, "2"]);
        let report = Report::new(Meta::default(), results.to_vec());
        assert!(text_table(&report).contains(OLD_WRITES_TITLE));
        let md = markdown(&report, &[]);
        assert!(md.contains(&format!("## {OLD_WRITES_TITLE}")), "{md}");
        assert!(
            md.contains("| 50 | wp→cards | stop-the-world | 1 |"),
            "{md}"
        );
    }

    #[test]
    fn malformed_params_group_by_their_text() {
        assert_eq!(params_key("heap=64,rounds"), "params=heap;64;rounds");
        assert_eq!(heap_mib("heap=64,rounds"), None);
        assert_eq!(heap_mib("live=0.5,heap=64"), Some(64.0));
        assert_eq!(entries("entries=12000000,seed=1"), Some(12_000_000));
        assert_eq!(entries("heap=64"), None);
    }
}
