//! movegc-bench: workloads shared by the `movegc bench` command and the
//! criterion benches.
#![warn(missing_docs)]

pub mod binary_trees;
pub mod child;
pub mod compact;
pub mod fragmenter;
pub mod gcbench;
pub mod lrefs;
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
