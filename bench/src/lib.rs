//! movegc-bench: workloads shared by the `movegc bench` command and the
//! criterion benches.
#![warn(missing_docs)]

pub mod binary_trees;
pub mod child;
pub mod compact;
pub mod fragmenter;
pub mod gcbench;
pub mod lrefs;
pub mod old_writes;
pub mod record;
pub mod report;
pub mod spec;
pub mod suite;
pub mod threads;

/// The value of environment variable `key` parsed as `T`, or `default` if
/// it is unset (the benches' configuration knobs).
///
/// # Panics
/// If it is set but does not parse: a mistyped knob must not be ignored.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v:?} is not valid")),
        Err(_) => default,
    }
}

/// Median of `v` (mean of the two middle values for an even count; NaN
/// for an empty slice).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A workload's heap settings, built either as the embedding API's heap or
/// as the collector engine's (the workloads written three ways, `--api`):
/// one description, so both heaps have the same configuration. Unset
/// fields keep the builder's defaults; the verifier is off.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeapSetup {
    pub(crate) capacity: Option<usize>,
    pub(crate) min_free: Option<usize>,
    pub(crate) growth_factor: Option<f64>,
    pub(crate) strategy: movegc::Strategy,
    pub(crate) fault_mode: movegc::FaultMode,
}

impl HeapSetup {
    /// Defaults but the strategy and fault mode.
    pub(crate) fn new(strategy: movegc::Strategy, fault_mode: movegc::FaultMode) -> HeapSetup {
        HeapSetup {
            capacity: None,
            min_free: None,
            growth_factor: None,
            strategy,
            fault_mode,
        }
    }

    /// The embedding API's heap.
    pub(crate) fn heap(&self) -> Result<movegc::Heap, String> {
        let mut b = movegc::Heap::builder()
            .strategy(self.strategy)
            .fault_mode(self.fault_mode)
            .verify(false);
        if let Some(c) = self.capacity {
            b = b.capacity(c);
        }
        if let Some(f) = self.min_free {
            b = b.min_free(f);
        }
        if let Some(g) = self.growth_factor {
            b = b.growth_factor(g);
        }
        b.build().map_err(|e| format!("creating the heap: {e}"))
    }

    /// The engine's heap with the same configuration (`HeapBuilder::build`'s
    /// default `min_free` included: a quarter of the capacity, at most 32
    /// MiB).
    pub(crate) fn engine_heap(&self) -> Result<movegc_gc::GcHeap, String> {
        let mut c = movegc_gc::HeapConfig {
            strategy: self.strategy,
            fault_mode: self.fault_mode,
            verify: false,
            ..movegc_gc::HeapConfig::default()
        };
        if let Some(cap) = self.capacity {
            c.capacity = cap;
        }
        c.min_free = self.min_free.unwrap_or((32 << 20).min(c.capacity / 4));
        if let Some(g) = self.growth_factor {
            c.growth_factor = g;
        }
        movegc_gc::GcHeap::new(c).map_err(|e| format!("creating the heap: {e}"))
    }
}
