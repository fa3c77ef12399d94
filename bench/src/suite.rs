//! The `movegc bench` suite: which runs make up a default or `--quick`
//! suite ([`plan`]), and how one run is executed ([`run_job`]) — in a
//! fresh child process, so that peak RSS, CPU time and page faults belong
//! to that run alone.
//!
//! A [`Job`] names a workload, a strategy, a fault mode, the workload's
//! parameters (its `key=value,..` spec) and a repeat index; it is passed to
//! the child as JSON in the [`JOB_ENV`] environment variable and the child
//! prints one [`RunRecord`] as a JSON line.
//!
//! Ordering: repeats are the outer loop; inside a repeat every
//! configuration runs each strategy back to back, and the order of the
//! strategies rotates from one repeat to the next. MOVE and COPY thus run
//! under the same conditions (this VM's page-allocation cost drifts with
//! what the host still backs), and neither always goes first.

use movegc_gc::concurrent::FaultMode;
use movegc_gc::{RememberedSet, Strategy};
use serde::{Deserialize, Serialize};

use crate::compact::{self, parse_fault_mode, CompactParams};
use crate::record::{ProcessUsage, RunRecord, WorkloadOutput};
use crate::spec::{Spec, SpecError};
use crate::{binary_trees, fragmenter, gcbench, lrefs, old_writes, threads};

/// Environment variable that makes the `movegc` binary run one job.
pub const JOB_ENV: &str = "MOVEGC_BENCH_JOB";

/// A workload of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// One measured collection of a fragmented heap, no mutators, at each
    /// heap size: the seed experiment, and the headline MOVE/COPY ratio.
    Compact,
    /// The same with mutator threads faulting during the cycle, in each
    /// fault mode.
    CompactMutators,
    /// `compact` at the largest heap size with a dense prefix (a share of
    /// the heap, from its bottom, all live; `Options::compact_prefixes`):
    /// prefix pages are fixed in place and put back, by MOVE or by COPY,
    /// not compacted.
    CompactPrefix,
    /// A long-lived random graph of mixed sizes, partly replaced each round.
    Fragmenter,
    /// The Benchmarks Game's binary-trees.
    BinaryTrees,
    /// Ellis, Kovac and Boehm's GCBench.
    GcBench,
    /// Several mutators allocating and mutating concurrently.
    Threads,
    /// One large reference array indexing small, mostly long-lived nodes:
    /// the final pause against the references held in a large object.
    LargeRefs,
    /// Writes references into a long-lived old set on a controlled share
    /// of its pages per young cycle: what each remembered-set builder
    /// costs (always run with young collections on).
    OldWrites,
}

impl Workload {
    /// Every workload, in suite order.
    pub const ALL: [Workload; 9] = [
        Workload::Compact,
        Workload::CompactMutators,
        Workload::CompactPrefix,
        Workload::Fragmenter,
        Workload::BinaryTrees,
        Workload::GcBench,
        Workload::Threads,
        Workload::LargeRefs,
        Workload::OldWrites,
    ];

    /// Stable name (the `workload` field of results).
    pub fn name(self) -> &'static str {
        match self {
            Workload::Compact => "compact",
            Workload::CompactMutators => "compact-mutators",
            Workload::CompactPrefix => "compact-prefix",
            Workload::Fragmenter => "fragmenter",
            Workload::BinaryTrees => "binary-trees",
            Workload::GcBench => "gcbench",
            Workload::Threads => "threads",
            Workload::LargeRefs => "large-refs",
            Workload::OldWrites => "old-writes",
        }
    }

    /// Parses a [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// One run: what the parent hands to a child process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// [`Workload::name`].
    pub workload: String,
    /// [`Strategy::name`].
    pub strategy: String,
    /// `sigbus` or `handler-thread`.
    pub fault_mode: String,
    /// The workload's parameters (its [`Spec`] as one line).
    pub spec: String,
    /// Repeat index.
    pub repeat: usize,
    /// Young collections on (`HeapConfig::generational`, passed to the
    /// child as `MOVEGC_GENERATIONAL`); [`run_job`] adds `young=on` to the
    /// record's params so the report keeps the two apart.
    #[serde(default)]
    pub generational: bool,
    /// With `generational`: the remembered-set builder
    /// ([`RememberedSet::name`], `cards` or `wp`; passed to the child as
    /// `MOVEGC_REMEMBERED_SET`). [`run_job`] marks a `wp` job `young=wp`
    /// instead of `young=on`. A job written before the field existed
    /// reads as `cards`.
    #[serde(default = "cards")]
    pub remembered_set: String,
    /// The stale-reference mode on (`HeapConfig::poison_freed`, passed to
    /// the child as `MOVEGC_POISON`); [`run_job`] adds `poison=on` to the
    /// record's params.
    #[serde(default)]
    pub poison: bool,
    /// With `poison`: its stress option too (`MOVEGC_POISON=stress`:
    /// every cycle moves every object; params say `poison=stress`).
    #[serde(default)]
    pub poison_stress: bool,
}

/// [`Job::remembered_set`]'s default.
fn cards() -> String {
    RememberedSet::Cards.name().to_string()
}

impl Job {
    /// The remembered-set builder of the job (`Err` for an unknown name).
    pub fn remembered_set(&self) -> Result<RememberedSet, String> {
        RememberedSet::from_name(&self.remembered_set)
            .ok_or_else(|| format!("unknown remembered set {:?}", self.remembered_set))
    }

    /// The environment of the child process that runs this job.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                JOB_ENV,
                serde_json::to_string(self).expect("a job serializes"),
            ),
            (
                "MOVEGC_GENERATIONAL",
                if self.generational { "1" } else { "0" }.to_string(),
            ),
            // Always set: the child must not inherit the parent's.
            ("MOVEGC_REMEMBERED_SET", self.remembered_set.clone()),
            (
                "MOVEGC_POISON",
                match (self.poison, self.poison_stress) {
                    (false, _) => "0",
                    (true, false) => "1",
                    (true, true) => "stress",
                }
                .to_string(),
            ),
        ]
    }

    /// A one-line description for progress output.
    pub fn label(&self) -> String {
        let mode = if self.strategy == Strategy::StopTheWorld.name()
            || self.workload != Workload::CompactMutators.name()
        {
            String::new()
        } else {
            format!(" ({})", self.fault_mode)
        };
        let young = match (self.generational, self.remembered_set()) {
            (false, _) => "",
            (true, Ok(RememberedSet::WriteProtect)) => " young wp",
            (true, _) => " young",
        };
        let poison = if self.poison { " poison" } else { "" };
        format!(
            "{} {}{mode}{young}{poison} #{}",
            self.workload, self.strategy, self.repeat
        )
    }
}

/// The default dense-prefix shares of `compact-prefix`: a quarter, half
/// and three quarters of the heap all live at its bottom.
pub const COMPACT_PREFIXES: [f64; 3] = [0.25, 0.5, 0.75];

/// The skew between [`Options::phases`]: 1 MiB, a quarter of the largest
/// tree binary-trees and GCBench build (4 MiB at depth 16).
pub const PHASE_STEP_KIB: usize = 1024;

/// The default [`Options::phases`].
pub const PHASES: usize = 4;

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Smoke sizes (the whole suite in well under 30 s).
    pub quick: bool,
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Strategies compared.
    pub strategies: Vec<Strategy>,
    /// Heap sizes of the `compact` workload, MiB (the largest is also the
    /// `compact-mutators` heap).
    pub heaps_mib: Vec<usize>,
    /// Mutator threads (`compact-mutators`: at most
    /// [`compact::MAX_MUTATORS`]; `threads`).
    pub threads: usize,
    /// Repeats.
    pub repeat: usize,
    /// Fault modes of `compact-mutators`.
    pub fault_modes: Vec<FaultMode>,
    /// Dense-prefix shares of `compact-prefix`, one configuration each
    /// (default [`COMPACT_PREFIXES`]; quick 0.5).
    pub compact_prefixes: Vec<f64>,
    /// Reference-array sizes of the `large-refs` workload (one
    /// configuration each: several make the sweep).
    pub large_refs_entries: Vec<usize>,
    /// Young collections off, on, or both (each configuration then runs
    /// twice, side by side). `old-writes` always runs with them on.
    pub generational: Vec<bool>,
    /// The remembered-set builders every generational configuration runs
    /// with, side by side (default cards only); a configuration without
    /// young collections runs once.
    pub remembered_sets: Vec<RememberedSet>,
    /// The dirty rates (percent of the old set's pages written per young
    /// cycle) of `old-writes`, one configuration each (default 1, 10 and
    /// 50; quick 10).
    pub old_writes_rates: Vec<f64>,
    /// The stale-reference mode off, on, or both (side by side: its
    /// overhead).
    pub poison: Vec<bool>,
    /// Runs with the mode on use its stress option.
    pub poison_stress: bool,
    /// The APIs binary-trees, GCBench and large-refs are run against, side
    /// by side (typed by default; all three measure what each API costs
    /// over the engine).
    pub apis: Vec<binary_trees::Api>,
    /// Phases of binary-trees and GCBench: configuration `k` (from 0)
    /// allocates `k` × [`PHASE_STEP_KIB`] of garbage first (its spec's
    /// `skew_kib`). Both are deterministic and build trees of up to 4 MiB,
    /// so what a collection finds live depends on where in a tree it
    /// falls, and a collector that collects every 32 MiB falls at the same
    /// place each time: one phase measures that place (a stop-the-world
    /// GCBench compacts 376 pages at `min_free_mib` 32 and 1,686 at 31).
    /// Several phases average over it (default [`PHASES`]; quick 1).
    pub phases: usize,
}

impl Options {
    /// The default suite (`quick = false`, about two and a half minutes on
    /// two cores, one of them `large-refs`, and some 15 s of `old-writes`)
    /// or the smoke suite.
    pub fn new(quick: bool) -> Options {
        Options {
            quick,
            workloads: Workload::ALL.to_vec(),
            strategies: vec![
                Strategy::ConcurrentMove,
                Strategy::ConcurrentCopy,
                Strategy::StopTheWorld,
            ],
            heaps_mib: if quick {
                vec![32, 64]
            } else {
                vec![64, 128, 256]
            },
            threads: 2,
            repeat: if quick { 1 } else { 2 },
            fault_modes: vec![FaultMode::Sigbus, FaultMode::HandlerThread],
            compact_prefixes: if quick {
                vec![0.5]
            } else {
                COMPACT_PREFIXES.to_vec()
            },
            large_refs_entries: vec![if quick {
                lrefs::Params::quick().entries
            } else {
                lrefs::Params::default().entries
            }],
            generational: vec![false],
            remembered_sets: vec![RememberedSet::Cards],
            old_writes_rates: if quick {
                old_writes::QUICK_RATES.to_vec()
            } else {
                old_writes::RATES.to_vec()
            },
            poison: vec![false],
            poison_stress: false,
            apis: vec![binary_trees::Api::Typed],
            phases: if quick { 1 } else { PHASES },
        }
    }

    /// Makes `large-refs` a sweep over [`lrefs::SWEEP_ENTRIES`] (with
    /// `quick`: [`lrefs::SWEEP_ENTRIES_QUICK`]).
    pub fn large_refs_sweep(&mut self) {
        self.large_refs_entries = if self.quick {
            lrefs::SWEEP_ENTRIES_QUICK.to_vec()
        } else {
            lrefs::SWEEP_ENTRIES.to_vec()
        };
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<(), String> {
        if self.workloads.is_empty() || self.strategies.is_empty() {
            return Err("nothing to run: no workloads or no strategies".into());
        }
        if self.repeat == 0 {
            return Err("--repeat must be at least 1".into());
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.phases == 0 {
            return Err("--phases must be at least 1".into());
        }
        if let Some(h) = self.heaps_mib.iter().find(|&&h| h < 8) {
            return Err(format!("heap size {h} MiB is below 8 MiB"));
        }
        if self.heaps_mib.is_empty() && self.workloads.contains(&Workload::Compact) {
            return Err("--heap needs at least one size".into());
        }
        if self.workloads.contains(&Workload::CompactPrefix) {
            if self.compact_prefixes.is_empty() {
                return Err("--compact-prefix needs at least one share".into());
            }
            for &prefix in &self.compact_prefixes {
                CompactParams {
                    prefix,
                    ..CompactParams::default()
                }
                .validate()
                .map_err(|e| format!("--compact-prefix: {e}"))?;
            }
        }
        let per_api = [
            Workload::BinaryTrees,
            Workload::GcBench,
            Workload::LargeRefs,
        ];
        if per_api.iter().any(|w| self.workloads.contains(w)) && self.apis.is_empty() {
            return Err("--api needs at least one API".into());
        }
        let generational =
            self.generational.contains(&true) || self.workloads.contains(&Workload::OldWrites);
        if generational && self.remembered_sets.is_empty() {
            return Err("--remembered-set needs at least one builder".into());
        }
        if self.workloads.contains(&Workload::OldWrites) {
            if self.old_writes_rates.is_empty() {
                return Err("old-writes needs at least one rate".into());
            }
            for &rate in &self.old_writes_rates {
                old_writes::Params {
                    rate,
                    ..old_writes::Params::default()
                }
                .validate()
                .map_err(|e| format!("old-writes: {e}"))?;
            }
        }
        if self.workloads.contains(&Workload::LargeRefs) {
            if self.large_refs_entries.is_empty() {
                return Err("--large-refs-entries needs at least one size".into());
            }
            for &entries in &self.large_refs_entries {
                lrefs::Params {
                    entries,
                    ..lrefs::Params::default()
                }
                .validate()
                .map_err(|e| format!("--large-refs-entries: {e}"))?;
            }
        }
        Ok(())
    }
}

/// The skews of [`Options::phases`], KiB.
fn phase_skews(o: &Options) -> impl Iterator<Item = usize> {
    (0..o.phases).map(|k| k * PHASE_STEP_KIB)
}

/// The configurations (workload, fault mode, spec) of one repeat.
fn configs(o: &Options) -> Vec<(Workload, FaultMode, String)> {
    let mut v = Vec::new();
    let sigbus = FaultMode::Sigbus;
    for &w in &o.workloads {
        match w {
            Workload::Compact => {
                for &h in &o.heaps_mib {
                    let p = CompactParams {
                        heap_mib: h,
                        mutator_threads: 0,
                        ..CompactParams::default()
                    };
                    v.push((w, sigbus, p.to_spec()));
                }
            }
            Workload::CompactPrefix => {
                let heap_mib = o.heaps_mib.iter().copied().max().unwrap_or(64);
                for &prefix in &o.compact_prefixes {
                    let p = CompactParams {
                        heap_mib,
                        prefix,
                        ..CompactParams::default()
                    };
                    v.push((w, sigbus, p.to_spec()));
                }
            }
            Workload::CompactMutators => {
                let heap_mib = o.heaps_mib.iter().copied().max().unwrap_or(64);
                for &mode in &o.fault_modes {
                    let p = CompactParams {
                        heap_mib,
                        mutator_threads: o.threads.min(compact::MAX_MUTATORS),
                        fault_mode: mode,
                        ..CompactParams::default()
                    };
                    v.push((w, mode, p.to_spec()));
                }
            }
            Workload::Fragmenter => {
                let p = if o.quick {
                    fragmenter::Params::quick()
                } else {
                    fragmenter::Params::default()
                };
                v.push((w, sigbus, p.to_spec()));
            }
            Workload::BinaryTrees => {
                let n = if o.quick {
                    binary_trees::WORKLOAD_QUICK_N
                } else {
                    binary_trees::WORKLOAD_N
                };
                for &api in &o.apis {
                    for skew_kib in phase_skews(o) {
                        let s = binary_trees_spec(n, api).with_nonzero("skew_kib", skew_kib);
                        v.push((w, sigbus, s.to_string()));
                    }
                }
            }
            Workload::GcBench => {
                let p = if o.quick {
                    gcbench::Params::quick()
                } else {
                    gcbench::Params::default()
                };
                for &api in &o.apis {
                    for skew_kib in phase_skews(o) {
                        let p = gcbench::Params {
                            skew_kib,
                            ..p.clone()
                        };
                        v.push((w, sigbus, with_api(&p.to_spec(), api)));
                    }
                }
            }
            Workload::Threads => {
                let base = if o.quick {
                    threads::Params::quick()
                } else {
                    threads::Params::default()
                };
                let p = threads::Params {
                    threads: o.threads,
                    ..base
                };
                v.push((w, sigbus, p.to_spec()));
            }
            Workload::LargeRefs => {
                let base = if o.quick {
                    lrefs::Params::quick()
                } else {
                    lrefs::Params::default()
                };
                for &entries in &o.large_refs_entries {
                    let p = lrefs::Params {
                        entries,
                        ..base.clone()
                    };
                    for &api in &o.apis {
                        v.push((w, sigbus, with_api(&p.to_spec(), api)));
                    }
                }
            }
            Workload::OldWrites => {
                let base = if o.quick {
                    old_writes::Params::quick()
                } else {
                    old_writes::Params::default()
                };
                for &rate in &o.old_writes_rates {
                    let p = old_writes::Params { rate, ..base };
                    v.push((w, sigbus, p.to_spec()));
                }
            }
        }
    }
    v
}

/// The (generational, remembered-set builder) settings `w` runs with:
/// [`Options::generational`] (`old-writes`: always on), each generational
/// one once per [`Options::remembered_sets`] entry; a non-generational one
/// once (with the default builder, which it does not use).
fn young_settings(o: &Options, w: Workload) -> Vec<(bool, RememberedSet)> {
    let generational = if w == Workload::OldWrites {
        &[true][..]
    } else {
        &o.generational[..]
    };
    let mut v = Vec::new();
    for &g in generational {
        if g {
            v.extend(o.remembered_sets.iter().map(|&r| (true, r)));
        } else {
            v.push((false, RememberedSet::Cards));
        }
    }
    v
}

/// Every job of the suite, in run order (see the module docs).
pub fn plan(o: &Options) -> Vec<Job> {
    let configs = configs(o);
    let mut jobs = Vec::new();
    for repeat in 0..o.repeat {
        for (((w, mode, spec), (generational, remembered_set)), &poison) in configs
            .iter()
            .flat_map(|c| young_settings(o, c.0).into_iter().map(move |g| (c, g)))
            .flat_map(|cg| o.poison.iter().map(move |p| (cg, p)))
        {
            let n = o.strategies.len();
            for i in 0..n {
                let s = o.strategies[(i + repeat) % n];
                // Fault modes only matter to concurrent cycles: run
                // stop-the-world once per spec, with the first mode.
                if !s.is_concurrent()
                    && *w == Workload::CompactMutators
                    && Some(mode) != o.fault_modes.first()
                {
                    continue;
                }
                let spec = if matches!(
                    w,
                    Workload::Compact | Workload::CompactMutators | Workload::CompactPrefix
                ) {
                    let mut p = CompactParams::parse_spec(spec).expect("own spec");
                    p.strategy = s;
                    p.to_spec()
                } else {
                    spec.clone()
                };
                jobs.push(Job {
                    workload: w.name().to_string(),
                    strategy: s.name().to_string(),
                    fault_mode: mode.name().to_string(),
                    spec,
                    repeat,
                    generational,
                    remembered_set: remembered_set.name().to_string(),
                    poison,
                    poison_stress: poison && o.poison_stress,
                });
            }
        }
    }
    jobs
}

/// The spec of the `binary-trees` workload: its one parameter, `n`.
fn binary_trees_spec(n: u32, api: binary_trees::Api) -> Spec {
    Spec::new().with("n", n).with("api", api.name())
}

/// Reads [`binary_trees_spec`]'s form (`n` is required; `api` defaults to
/// the untyped API, which runs before it existed used), and the optional
/// `skew_kib` a phase adds (0 without it).
fn parse_binary_trees_spec(spec: &str) -> Result<(u32, binary_trees::Api, usize), SpecError> {
    let s: Spec = spec.parse()?;
    s.only(&["n", "api", "skew_kib"])?;
    let api = s.read_or("api", binary_trees::Api::Untyped, binary_trees::Api::parse)?;
    Ok((s.require("n")?, api, s.value_or("skew_kib", 0)?))
}

/// `spec` with the `api` key of the workloads run against each API.
fn with_api(spec: &str, api: binary_trees::Api) -> String {
    let s: Spec = spec.parse().expect("a workload's own spec parses");
    s.with("api", api.name()).to_string()
}

/// The `api` key of `spec` (the untyped API if absent: runs before it
/// existed) and the rest of the spec.
fn split_api(spec: &str) -> Result<(Spec, binary_trees::Api), String> {
    let s: Spec = spec.parse()?;
    let api = s.read_or("api", binary_trees::Api::Untyped, binary_trees::Api::parse)?;
    Ok((s.without("api"), api))
}

/// Runs `job` in this process and returns its record. Workloads verify
/// their data; a failed verification is an `Err`. The record's `params`
/// are the job's spec, plus `young=on` for a generational job (`young=wp`
/// with the write-protect remembered set: `on` stays the card builder's,
/// so records made before the choice existed compare with its runs) and
/// `poison=on` for one in the stale-reference mode (all set through the
/// environment [`Job::child_env`] sets).
pub fn run_job(job: &Job) -> Result<RunRecord, String> {
    let young = match job.remembered_set()? {
        RememberedSet::Cards => "on",
        RememberedSet::WriteProtect => "wp",
    };
    let mut r = run_workload(job)?;
    let poison = if job.poison_stress { "stress" } else { "on" };
    for (on, key, value) in [
        (job.generational, "young", young),
        (job.poison, "poison", poison),
    ] {
        if on {
            let params: Spec = r.params.parse()?;
            r.params = params.with(key, value).to_string();
        }
    }
    Ok(r)
}

/// [`run_job`] without the generational mark.
fn run_workload(job: &Job) -> Result<RunRecord, String> {
    let workload = Workload::parse(&job.workload)
        .ok_or_else(|| format!("unknown workload {:?}", job.workload))?;
    let strategy = Strategy::parse(&job.strategy)
        .ok_or_else(|| format!("unknown strategy {:?}", job.strategy))?;
    let mode = parse_fault_mode(&job.fault_mode)
        .ok_or_else(|| format!("unknown fault mode {:?}", job.fault_mode))?;
    let run = |f: &dyn Fn() -> Result<WorkloadOutput, String>| {
        let before = ProcessUsage::now();
        let out = f()?;
        let usage = ProcessUsage::now().since(&before);
        let fault_mode = out
            .cycles
            .iter()
            .find_map(|c| c.fault_mode)
            .map_or("-", FaultMode::name);
        Ok(RunRecord::from_output(
            workload.name(),
            strategy,
            fault_mode,
            &job.spec,
            job.repeat,
            &out,
            usage,
        ))
    };
    match workload {
        Workload::Compact | Workload::CompactMutators | Workload::CompactPrefix => {
            let p = CompactParams::parse_spec(&job.spec)?;
            // `compact::run` panics on a failed check: report it as an error.
            let r = std::panic::catch_unwind(|| compact::run_record(&p, job.repeat))
                .map_err(|e| panic_message(&*e))?;
            Ok(RunRecord {
                workload: workload.name().to_string(),
                ..r
            })
        }
        Workload::Fragmenter => {
            let p = fragmenter::Params::parse_spec(&job.spec)?;
            run(&|| fragmenter::run(&p, strategy, mode))
        }
        Workload::BinaryTrees => {
            let (n, api, skew_kib) = parse_binary_trees_spec(&job.spec)
                .map_err(|e| format!("binary-trees spec {:?}: {e}", job.spec))?;
            run(&|| binary_trees::run_workload(n, api, skew_kib, strategy, mode))
        }
        Workload::GcBench => {
            let (spec, api) = split_api(&job.spec)?;
            let p = gcbench::Params::from_spec(&spec)?;
            run(&|| gcbench::run_api(&p, api, strategy, mode, false))
        }
        Workload::Threads => {
            let p = threads::Params::parse_spec(&job.spec)?;
            run(&|| threads::run(&p, strategy, mode))
        }
        Workload::LargeRefs => {
            let (spec, api) = split_api(&job.spec)?;
            let p = lrefs::Params::from_spec(&spec)?;
            run(&|| lrefs::run_api(&p, api, strategy, mode, false))
        }
        Workload::OldWrites => {
            let p = old_writes::Params::parse_spec(&job.spec)?;
            let builder = job.remembered_set()?;
            run(&|| old_writes::run(&p, strategy, mode, builder))
        }
    }
}

/// The text of a panic payload.
fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the workload panicked".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()), Some(w));
        }
        assert_eq!(Workload::parse("nope"), None);
    }

    #[test]
    fn plan_alternates_strategies_and_runs_stw_once_per_mutator_config() {
        let mut o = Options::new(true);
        o.repeat = 2;
        let jobs = plan(&o);
        let compact: Vec<&Job> = jobs
            .iter()
            .filter(|j| j.workload == "compact" && j.spec.contains("heap=32,"))
            .collect();
        assert_eq!(compact.len(), 6, "3 strategies x 2 repeats");
        assert_ne!(
            compact[0].strategy, compact[3].strategy,
            "the first strategy rotates between repeats"
        );
        assert!(compact.iter().all(|j| CompactParams::parse_spec(&j.spec)
            .unwrap()
            .strategy
            .name()
            == j.strategy));
        let stw_mut = jobs
            .iter()
            .filter(|j| j.workload == "compact-mutators" && j.strategy == "stop-the-world")
            .count();
        assert_eq!(stw_mut, 2, "once per repeat, not once per fault mode");
        let move_mut = jobs
            .iter()
            .filter(|j| j.workload == "compact-mutators" && j.strategy == "concurrent-move")
            .count();
        assert_eq!(move_mut, 4, "2 fault modes x 2 repeats");
        for w in Workload::ALL {
            assert!(jobs.iter().any(|j| j.workload == w.name()), "{w:?} missing");
        }
    }

    #[test]
    fn large_refs_sweep_is_one_config_per_size() {
        let mut o = Options::new(false);
        o.workloads = vec![Workload::LargeRefs];
        o.repeat = 1;
        assert_eq!(plan(&o).len(), 3, "one size, three strategies");
        o.large_refs_sweep();
        let jobs = plan(&o);
        assert_eq!(jobs.len(), 3 * lrefs::SWEEP_ENTRIES.len());
        let mut sizes: Vec<usize> = jobs
            .iter()
            .map(|j| {
                let (spec, api) = split_api(&j.spec).unwrap();
                assert_eq!(api, binary_trees::Api::Typed, "the default API");
                lrefs::Params::from_spec(&spec).unwrap().entries
            })
            .collect();
        sizes.dedup();
        assert_eq!(sizes, lrefs::SWEEP_ENTRIES);
        let mut q = Options::new(true);
        q.large_refs_sweep();
        assert_eq!(q.large_refs_entries, lrefs::SWEEP_ENTRIES_QUICK);
        o.large_refs_entries.clear();
        assert!(o.validate().is_err());
        o.large_refs_entries = vec![1];
        assert!(o.validate().is_err());
    }

    #[test]
    fn compact_prefix_is_one_config_per_share_at_the_largest_heap() {
        let mut o = Options::new(false);
        o.workloads = vec![Workload::CompactPrefix];
        o.repeat = 1;
        let jobs = plan(&o);
        assert_eq!(jobs.len(), 3 * COMPACT_PREFIXES.len());
        let mut shares = Vec::new();
        for j in &jobs {
            assert_eq!(j.workload, "compact-prefix");
            let p = CompactParams::parse_spec(&j.spec).unwrap();
            assert_eq!((p.heap_mib, p.mutator_threads), (256, 0));
            assert_eq!(p.strategy.name(), j.strategy, "the job's strategy");
            shares.push(p.prefix);
        }
        shares.dedup();
        assert_eq!(shares, COMPACT_PREFIXES);
        o.compact_prefixes.clear();
        assert!(o.validate().is_err());
        o.compact_prefixes = vec![1.0];
        assert!(o
            .validate()
            .unwrap_err()
            .contains("prefix 1 must be in [0, 1)"));
    }

    #[test]
    fn binary_trees_and_gcbench_run_each_phase_with_its_skew() {
        let mut o = Options::new(false);
        o.workloads = vec![Workload::BinaryTrees, Workload::GcBench];
        o.repeat = 1;
        assert_eq!(o.phases, PHASES);
        let jobs = plan(&o);
        assert_eq!(jobs.len(), 2 * 3 * PHASES, "2 workloads x 3 strategies");
        let want: Vec<usize> = (0..PHASES).map(|k| k * PHASE_STEP_KIB).collect();
        for w in ["binary-trees", "gcbench"] {
            let mut skews: Vec<usize> = jobs
                .iter()
                .filter(|j| j.workload == w && j.strategy == "stop-the-world")
                .map(|j| match w {
                    "gcbench" => {
                        let (spec, _) = split_api(&j.spec).unwrap();
                        gcbench::Params::from_spec(&spec).unwrap().skew_kib
                    }
                    _ => parse_binary_trees_spec(&j.spec).unwrap().2,
                })
                .collect();
            skews.sort_unstable();
            assert_eq!(skews, want, "{w}");
        }
        // Phase 0 keeps the spec runs had before phases existed.
        assert!(jobs.iter().any(|j| j.spec == "n=17,api=typed"));
        // Quick: one phase, no skew key.
        let mut q = Options::new(true);
        q.workloads = o.workloads.clone();
        assert_eq!(q.phases, 1);
        assert!(plan(&q).iter().all(|j| !j.spec.contains("skew_kib")));
        o.phases = 0;
        assert!(o.validate().unwrap_err().contains("--phases"));
    }

    #[test]
    fn options_are_validated() {
        let mut o = Options::new(false);
        assert!(o.validate().is_ok());
        o.repeat = 0;
        assert!(o.validate().is_err());
        let mut o = Options::new(false);
        o.heaps_mib = vec![4];
        assert!(o.validate().is_err());
        let mut o = Options::new(false);
        o.strategies.clear();
        assert!(o.validate().is_err());
    }

    #[test]
    fn both_generational_settings_run_side_by_side() {
        let mut o = Options::new(true);
        o.workloads = vec![Workload::GcBench];
        let off = plan(&o);
        o.generational = vec![false, true];
        let both = plan(&o);
        assert_eq!(both.len(), 2 * off.len());
        // Within a repeat: every strategy off, then every strategy on.
        let n = o.strategies.len();
        assert!(both[..n].iter().all(|j| !j.generational));
        assert!(both[n..2 * n].iter().all(|j| j.generational));
        let env = both[n].child_env();
        assert!(env.contains(&("MOVEGC_GENERATIONAL", "1".to_string())));
        assert!(both[n].label().contains("young"));
        // A job written before the field existed still reads.
        let old: Job = serde_json::from_str(
            r#"{"workload":"gcbench","strategy":"stw","fault_mode":"sigbus","spec":"","repeat":0}"#,
        )
        .unwrap();
        assert!(!old.generational);
    }

    #[test]
    fn generational_jobs_run_once_per_remembered_set() {
        let mut o = Options::new(true);
        o.workloads = vec![Workload::GcBench];
        o.generational = vec![false, true];
        o.remembered_sets = vec![RememberedSet::Cards, RememberedSet::WriteProtect];
        let jobs = plan(&o);
        let n = o.strategies.len();
        assert_eq!(jobs.len(), 3 * n, "off once, on once per builder");
        let settings: Vec<(bool, &str)> = jobs
            .iter()
            .step_by(n)
            .map(|j| (j.generational, j.remembered_set.as_str()))
            .collect();
        assert_eq!(settings, [(false, "cards"), (true, "cards"), (true, "wp")]);
        let env = |j: &Job, key: &str| {
            j.child_env()
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
        };
        let (off, cards, wp) = (&jobs[0], &jobs[n], &jobs[2 * n]);
        assert_eq!(env(wp, "MOVEGC_REMEMBERED_SET").as_deref(), Some("wp"));
        assert_eq!(env(wp, "MOVEGC_GENERATIONAL").as_deref(), Some("1"));
        assert_eq!(
            env(cards, "MOVEGC_REMEMBERED_SET").as_deref(),
            Some("cards")
        );
        // Set even where unused, so the parent's setting is not inherited.
        assert_eq!(env(off, "MOVEGC_REMEMBERED_SET").as_deref(), Some("cards"));
        assert!(!off.label().contains("young"), "{}", off.label());
        assert!(cards.label().contains(" young #"), "{}", cards.label());
        assert!(wp.label().contains(" young wp #"), "{}", wp.label());
        // Without generational runs the builders multiply nothing.
        o.generational = vec![false];
        assert_eq!(plan(&o).len(), n);
        o.generational = vec![true];
        o.remembered_sets.clear();
        assert!(o.validate().is_err());
    }

    #[test]
    fn records_say_young_on_for_cards_and_young_wp_for_write_protect() {
        let mut job = Job {
            workload: "binary-trees".into(),
            strategy: "stw".into(),
            fault_mode: "sigbus".into(),
            spec: binary_trees_spec(6, binary_trees::Api::Typed).to_string(),
            repeat: 0,
            generational: true,
            remembered_set: "cards".into(),
            poison: false,
            poison_stress: false,
        };
        assert_eq!(run_job(&job).unwrap().params, "n=6,api=typed,young=on");
        job.remembered_set = "wp".into();
        assert_eq!(run_job(&job).unwrap().params, "n=6,api=typed,young=wp");
        job.generational = false;
        assert_eq!(run_job(&job).unwrap().params, "n=6,api=typed");
        job.remembered_set = "sticky-notes".into();
        assert!(run_job(&job).unwrap_err().contains("remembered set"));
        // A job written before the field existed reads as cards.
        let old: Job = serde_json::from_str(
            r#"{"workload":"gcbench","strategy":"stw","fault_mode":"sigbus","spec":"","repeat":0,"generational":true}"#,
        )
        .unwrap();
        assert_eq!(old.remembered_set, "cards");
        assert_eq!(old.remembered_set(), Ok(RememberedSet::Cards));
        let back: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn old_writes_is_always_generational_once_per_rate_and_builder() {
        let mut o = Options::new(false);
        o.workloads = vec![Workload::OldWrites];
        o.strategies = vec![Strategy::StopTheWorld];
        o.repeat = 1;
        assert_eq!(o.generational, [false], "the default is off...");
        let jobs = plan(&o);
        assert_eq!(jobs.len(), old_writes::RATES.len());
        assert!(jobs
            .iter()
            .all(|j| j.generational && j.remembered_set == "cards"));
        let rates: Vec<f64> = jobs
            .iter()
            .map(|j| old_writes::Params::parse_spec(&j.spec).unwrap().rate)
            .collect();
        assert_eq!(rates, old_writes::RATES);
        o.generational = vec![false, true];
        o.remembered_sets = vec![RememberedSet::Cards, RememberedSet::WriteProtect];
        let jobs = plan(&o);
        assert_eq!(jobs.len(), 2 * old_writes::RATES.len(), "on only, twice");
        assert_eq!(jobs[0].spec, "rate=1,old=64,rounds=20,garbage=8");
        assert_eq!(
            (
                jobs[0].remembered_set.as_str(),
                jobs[1].remembered_set.as_str()
            ),
            ("cards", "wp"),
            "the builders side by side"
        );
        let q = Options::new(true);
        let quick: Vec<Job> = plan(&q)
            .into_iter()
            .filter(|j| j.workload == "old-writes")
            .collect();
        assert_eq!(quick.len(), q.strategies.len(), "quick: one rate");
        let mut bad = o.clone();
        bad.old_writes_rates = vec![150.0];
        assert!(bad.validate().is_err());
        bad.old_writes_rates.clear();
        assert!(bad.validate().is_err());
        // Run as a suite job (tiny), marked by its builder.
        let mut job = jobs[1].clone();
        job.spec = old_writes::Params::tiny().to_spec();
        let r = run_job(&job).unwrap();
        assert_eq!(r.params, "rate=10,old=2,rounds=4,garbage=1,young=wp");
        assert!(r.check.ends_with("young objects verified"), "{}", r.check);
        let young: Vec<&crate::record::CycleRecord> =
            r.per_cycle.iter().filter(|c| c.young).collect();
        assert!(!young.is_empty());
        assert!(young.iter().all(|c| c.remembered_pages > 0
            && matches!(c.remembered_set.as_deref(), Some("wp" | "cards"))));
        assert!(r.op_latency_us.is_some());
    }

    #[test]
    fn bad_jobs_are_errors_not_panics() {
        let job = Job {
            workload: "compact".into(),
            strategy: "sideways".into(),
            fault_mode: "sigbus".into(),
            spec: String::new(),
            repeat: 0,
            generational: false,
            remembered_set: cards(),
            poison: false,
            poison_stress: false,
        };
        assert!(run_job(&job).unwrap_err().contains("strategy"));
        let job = Job {
            workload: "fragmenter".into(),
            strategy: "stw".into(),
            fault_mode: "sigbus".into(),
            spec: "bogus=1".into(),
            repeat: 0,
            generational: false,
            remembered_set: cards(),
            poison: false,
            poison_stress: false,
        };
        assert!(run_job(&job).is_err());
    }

    #[test]
    fn binary_trees_spec_round_trips_and_needs_n() {
        use binary_trees::Api;
        let spec = binary_trees_spec(17, Api::Typed).to_string();
        assert_eq!(spec, "n=17,api=typed");
        assert_eq!(parse_binary_trees_spec(&spec), Ok((17, Api::Typed, 0)));
        assert_eq!(parse_binary_trees_spec("n=3"), Ok((3, Api::Untyped, 0)));
        assert_eq!(
            parse_binary_trees_spec("n=3,skew_kib=2048"),
            Ok((3, Api::Untyped, 2048))
        );
        assert_eq!(
            parse_binary_trees_spec("n=3,api=rust")
                .unwrap_err()
                .to_string(),
            r#"bad value "rust" for api"#
        );
        assert_eq!(
            parse_binary_trees_spec("").unwrap_err().to_string(),
            r#"missing key "n""#
        );
        assert_eq!(
            parse_binary_trees_spec("n=17,depth=3")
                .unwrap_err()
                .to_string(),
            r#"unknown key "depth" (valid: n, api, skew_kib)"#
        );
        let job = Job {
            workload: "binary-trees".into(),
            strategy: "stw".into(),
            fault_mode: "sigbus".into(),
            spec: "m=6".into(),
            repeat: 0,
            generational: false,
            remembered_set: cards(),
            poison: false,
            poison_stress: false,
        };
        assert_eq!(
            run_job(&job).unwrap_err(),
            r#"binary-trees spec "m=6": unknown key "m" (valid: n, api, skew_kib)"#
        );
    }

    #[test]
    fn a_generational_record_says_young_once() {
        let mut job = Job {
            workload: "binary-trees".into(),
            strategy: "stw".into(),
            fault_mode: "sigbus".into(),
            spec: binary_trees_spec(6, binary_trees::Api::Untyped).to_string(),
            repeat: 0,
            generational: false,
            remembered_set: cards(),
            poison: false,
            poison_stress: false,
        };
        assert_eq!(run_job(&job).unwrap().params, "n=6,api=untyped");
        job.generational = true;
        assert_eq!(run_job(&job).unwrap().params, "n=6,api=untyped,young=on");
    }

    #[test]
    fn poison_runs_are_marked_and_set_the_childs_environment() {
        let mut o = Options::new(true);
        o.workloads = vec![Workload::BinaryTrees];
        o.strategies = vec![Strategy::StopTheWorld];
        o.poison = vec![false, true];
        let jobs = plan(&o);
        assert_eq!(jobs.len(), 2, "each configuration off and on");
        let env = |j: &Job| {
            j.child_env()
                .into_iter()
                .find(|(k, _)| *k == "MOVEGC_POISON")
                .map(|(_, v)| v)
        };
        assert_eq!(env(&jobs[0]).as_deref(), Some("0"));
        assert_eq!(env(&jobs[1]).as_deref(), Some("1"));
        o.poison_stress = true;
        let stress = plan(&o);
        assert!(!stress[0].poison_stress, "stress only with the mode on");
        assert_eq!(env(&stress[1]).as_deref(), Some("stress"));
        let mut job = jobs[1].clone();
        job.spec = binary_trees_spec(6, binary_trees::Api::Typed).to_string();
        assert_eq!(run_job(&job).unwrap().params, "n=6,api=typed,poison=on");
        job.poison_stress = true;
        assert_eq!(run_job(&job).unwrap().params, "n=6,api=typed,poison=stress");
    }

    #[test]
    fn gcbench_runs_once_per_api_and_each_api_checks_the_same() {
        use binary_trees::Api;
        let mut o = Options::new(true);
        o.workloads = vec![Workload::GcBench];
        o.strategies = vec![Strategy::StopTheWorld];
        o.apis = Api::ALL.to_vec();
        let jobs = plan(&o);
        assert_eq!(jobs.len(), 3);
        let small = gcbench::Params::tiny();
        let mut checks = vec![];
        for (job, api) in jobs.iter().zip(Api::ALL) {
            assert!(
                job.spec.ends_with(&format!(",api={}", api.name())),
                "{}",
                job.spec
            );
            let mut job = job.clone();
            job.spec = with_api(&small.to_spec(), api);
            let r = run_job(&job).unwrap_or_else(|e| panic!("{api:?}: {e}"));
            checks.push(r.check);
        }
        assert!(checks.iter().all(|c| *c == checks[0]), "{checks:?}");
        assert!(checks[0].ends_with("array[1000] = 0.001"), "{}", checks[0]);
        // A spec without the key is the untyped API's.
        assert_eq!(split_api("a=1").unwrap().1, Api::Untyped);
        assert!(split_api("api=cobol").is_err());
    }

    #[test]
    fn binary_trees_runs_once_per_api_and_each_api_runs() {
        use binary_trees::Api;
        let mut o = Options::new(true);
        o.workloads = vec![Workload::BinaryTrees];
        o.strategies = vec![Strategy::StopTheWorld];
        assert_eq!(o.apis, [Api::Typed], "the typed API by default");
        o.apis = Api::ALL.to_vec();
        let jobs = plan(&o);
        let specs: Vec<_> = jobs.iter().map(|j| j.spec.as_str()).collect();
        assert_eq!(
            specs,
            ["n=15,api=untyped", "n=15,api=typed", "n=15,api=engine"]
        );
        for api in Api::ALL {
            let mut job = jobs[0].clone();
            job.spec = binary_trees_spec(8, api).to_string();
            let r = run_job(&job).unwrap_or_else(|e| panic!("{api:?}: {e}"));
            assert_eq!(r.params, format!("n=8,api={}", api.name()));
            assert!(r.check.starts_with("5 lines as expected"), "{}", r.check);
        }
    }
}
