//! The suite's workloads under criterion, at their smoke (`quick()`) sizes:
//! one group per workload, one benchmark per strategy, each iteration a
//! complete verified run on a fresh heap. This is the statistically careful
//! view of the same code `movegc bench` runs (which adds per-run process
//! isolation, RSS and per-cycle numbers).
//!
//! ```text
//! cargo bench -p movegc-bench --bench workloads [-- <filter>]
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use movegc_bench::{binary_trees, fragmenter, gcbench, lrefs, threads};
use movegc_gc::concurrent::FaultMode;
use movegc_gc::Strategy;

const STRATEGIES: [Strategy; 3] = [
    Strategy::ConcurrentMove,
    Strategy::ConcurrentCopy,
    Strategy::StopTheWorld,
];

fn bench(c: &mut Criterion) {
    type Run = Box<dyn Fn(Strategy) -> Result<movegc_bench::record::WorkloadOutput, String>>;
    let workloads: [(&str, Run); 5] = [
        (
            "fragmenter",
            Box::new(|s| fragmenter::run(&fragmenter::Params::quick(), s, FaultMode::Sigbus)),
        ),
        (
            "binary-trees",
            Box::new(|s| {
                binary_trees::run_workload(
                    binary_trees::WORKLOAD_QUICK_N,
                    binary_trees::Api::Typed,
                    0,
                    s,
                    FaultMode::Sigbus,
                )
            }),
        ),
        (
            "gcbench",
            Box::new(|s| gcbench::run(&gcbench::Params::quick(), s, FaultMode::Sigbus)),
        ),
        (
            "threads",
            Box::new(|s| threads::run(&threads::Params::quick(), s, FaultMode::Sigbus)),
        ),
        (
            "large-refs",
            Box::new(|s| lrefs::run(&lrefs::Params::quick(), s, FaultMode::Sigbus)),
        ),
    ];
    for (name, run) in &workloads {
        let mut g = c.benchmark_group(*name);
        g.sample_size(10);
        for s in STRATEGIES {
            g.bench_function(BenchmarkId::from_parameter(s.name()), |b| {
                b.iter(|| run(s).unwrap_or_else(|e| panic!("{name} under {}: {e}", s.name())))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
