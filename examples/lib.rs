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

/// A summary of the collector's work on two lines: cycles (young / full,
/// by cause), pause percentiles (p50/p99/max) and total, reclaimed and
/// moved bytes, live; then the waits users feel (time to safepoint apart
/// from pauses and the thread it waited for longest, allocation stalls)
/// and the collector's share of the CPU.
pub fn gc_summary(s: &HeapStats) -> String {
    let mib = |b: f64| b / f64::from(1 << 20);
    let slowest = s
        .max_time_to_safepoint_thread
        .as_deref()
        .map_or(String::new(), |t| format!(" (waiting for {t})"));
    format!(
        "gc: {} cycles ({} young, {} full; {} by policy, {} explicit, {} on exhaustion), pause p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, total {:.3} ms; freed {:.1} MiB, moved {:.1} MiB, live {:.1} MiB\n\
         gc: time to safepoint max {:.3} ms{slowest}, total {:.3} ms; {} allocation stalls, {:.3} ms in all; collector CPU {:.2} s = {:.1} % of the process's",
        s.cycles,
        s.young_cycles,
        s.full_cycles,
        s.cycles_policy,
        s.cycles_explicit,
        s.cycles_exhausted,
        ms(s.pause_quantile(0.5)),
        ms(s.pause_quantile(0.99)),
        ms(s.max_pause),
        ms(s.total_pause),
        mib(s.freed_bytes as f64),
        mib(s.moved_bytes as f64),
        mib(s.live_bytes as f64),
        ms(s.max_time_to_safepoint),
        ms(s.total_time_to_safepoint),
        s.alloc_stalls,
        ms(s.alloc_stall_total),
        s.gc_cpu.as_secs_f64(),
        s.gc_cpu_share() * 100.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_shows_waits_apart_and_the_cpu_share() {
        let s = HeapStats {
            cycles: 3,
            young_cycles: 1,
            full_cycles: 2,
            cycles_policy: 2,
            cycles_exhausted: 1,
            max_time_to_safepoint: Duration::from_millis(5),
            max_time_to_safepoint_thread: Some("'main' (tid 9)".into()),
            alloc_stalls: 2,
            alloc_stall_total: Duration::from_millis(12),
            gc_cpu: Duration::from_millis(250),
            process_cpu: Duration::from_secs(1),
            ..Default::default()
        };
        let out = gc_summary(&s);
        for part in [
            "gc: 3 cycles (1 young, 2 full; 2 by policy, 0 explicit, 1 on exhaustion)",
            "time to safepoint max 5.000 ms (waiting for 'main' (tid 9))",
            "2 allocation stalls, 12.000 ms in all",
            "collector CPU 0.25 s = 25.0 % of the process's",
        ] {
            assert!(out.contains(part), "{part:?} missing from {out:?}");
        }
    }
}
