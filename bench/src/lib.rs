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
    /// Bytes of garbage allocated on the new heap before the workload
    /// starts (see [`SKEW_CHUNK`]): every later collection then falls
    /// that much further into the workload's allocation, so that runs
    /// with different skews sample different phases of a deterministic
    /// workload against the collection schedule.
    pub(crate) skew: usize,
}

/// The skew's garbage is allocated as byte arrays of this size (small
/// objects, in the moving space like the workloads' own).
pub(crate) const SKEW_CHUNK: usize = 4096;

/// An arbitrary type tag for the skew's byte arrays.
const SKEW_TAG: u16 = 0x5e;

impl HeapSetup {
    /// Defaults but the strategy and fault mode.
    pub(crate) fn new(strategy: movegc::Strategy, fault_mode: movegc::FaultMode) -> HeapSetup {
        HeapSetup {
            capacity: None,
            min_free: None,
            growth_factor: None,
            strategy,
            fault_mode,
            skew: 0,
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
        let heap = b.build().map_err(|e| format!("creating the heap: {e}"))?;
        if self.skew > 0 {
            let skewing = |e: movegc::Error| format!("allocating the skew: {e}");
            let mut m = heap.attach().map_err(skewing)?;
            for _ in 0..self.skew.div_ceil(SKEW_CHUNK) {
                m.scope(|m| m.alloc_data::<u8>(SKEW_CHUNK).map(drop))
                    .map_err(skewing)?;
            }
        }
        Ok(heap)
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
        let heap = movegc_gc::GcHeap::new(c).map_err(|e| format!("creating the heap: {e}"))?;
        if self.skew > 0 {
            let mut ctx = heap
                .attach()
                .map_err(|_| "this thread already has a mutator".to_string())?;
            let layout = movegc_gc::Layout::byte_array(SKEW_TAG, SKEW_CHUNK)
                .map_err(|e| format!("the skew's layout: {e}"))?;
            for _ in 0..self.skew.div_ceil(SKEW_CHUNK) {
                ctx.alloc(&layout)
                    .map_err(|e| format!("allocating the skew: {e}"))?;
            }
        }
        Ok(heap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skew_is_allocated_on_both_heaps_before_the_workload() {
        let setup = |skew| HeapSetup {
            capacity: Some(64 << 20),
            min_free: Some(32 << 20),
            skew,
            ..HeapSetup::new(movegc::Strategy::StopTheWorld, movegc::FaultMode::Sigbus)
        };
        let skew = 1 << 20;
        let heap = setup(0).heap().unwrap();
        assert!(heap.used_bytes() < skew);
        let heap = setup(skew).heap().unwrap();
        assert!(heap.used_bytes() >= skew, "{}", heap.used_bytes());
        assert_eq!(heap.stats().cycles, 0, "below min_free: no collection");
        let engine = setup(skew).engine_heap().unwrap();
        assert!(engine.used_bytes() >= skew, "{}", engine.used_bytes());
        // The skew's mutators are gone: the workload attaches its own.
        drop(heap.attach().unwrap());
        drop(engine.attach().unwrap());
    }
}
