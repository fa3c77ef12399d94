//! Shared helpers for the example programs in this directory: their
//! command lines ([`cli`]), the Scheme interpreter ([`scheme`]), the zygote
//! prototype ([`zygote_lib`]) and a one-line summary of the collector's
//! statistics.
#![warn(missing_docs)]

use std::time::Duration;

use movegc::HeapStats;

pub mod cli;
pub mod scheme;
pub mod zygote_lib;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A one-line summary of the collector's work: cycles, pause percentiles
/// (p50/p99/max), total pause, reclaimed and moved bytes.
pub fn gc_summary(s: &HeapStats) -> String {
    format!(
        "gc: {} cycles, pause p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, total {:.3} ms; freed {:.1} MiB, moved {:.1} MiB, live {:.1} MiB",
        s.cycles,
        ms(s.pause_quantile(0.5)),
        ms(s.pause_quantile(0.99)),
        ms(s.max_pause),
        ms(s.total_pause),
        s.freed_bytes as f64 / (1 << 20) as f64,
        s.moved_bytes as f64 / (1 << 20) as f64,
        s.live_bytes as f64 / (1 << 20) as f64,
    )
}
