//! Shared helpers for the example programs in this directory: command-line
//! parsing for the common options and a one-line summary of the collector's
//! statistics.
#![warn(missing_docs)]

use std::time::Duration;

use movegc::{Heap, HeapStats};

pub mod scheme;
pub mod zygote_lib;

/// A command-line problem: the message to print before the usage text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Options every example accepts, plus its positional arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommonArgs {
    /// `--heap-mib N`: heap capacity in MiB (`None`: the builder's default).
    pub heap_mib: Option<usize>,
    /// `-h` / `--help` was given.
    pub help: bool,
    /// The remaining (positional) arguments, in order.
    pub positional: Vec<String>,
}

impl CommonArgs {
    /// Parses `args` (without the program name). Accepts `--heap-mib N`,
    /// `--heap-mib=N`, `-h`, `--help` and `--` (everything after it is
    /// positional); any other argument starting with `-` is an error.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<CommonArgs, UsageError> {
        let mut out = CommonArgs::default();
        let mut args = args.into_iter();
        let mut only_positional = false;
        while let Some(a) = args.next() {
            if only_positional {
                out.positional.push(a);
                continue;
            }
            match a.as_str() {
                "--" => only_positional = true,
                "-h" | "--help" => out.help = true,
                "--heap-mib" => {
                    let v = args
                        .next()
                        .ok_or_else(|| UsageError("--heap-mib needs a value".into()))?;
                    out.heap_mib = Some(parse_mib(&v)?);
                }
                _ if a.starts_with("--heap-mib=") => {
                    out.heap_mib = Some(parse_mib(&a["--heap-mib=".len()..])?)
                }
                _ if a.starts_with('-') && a.len() > 1 => {
                    return Err(UsageError(format!("unknown option {a:?}")))
                }
                _ => out.positional.push(a),
            }
        }
        Ok(out)
    }

    /// A heap with the builder's defaults, or with `--heap-mib` capacity.
    pub fn build_heap(&self) -> movegc::Result<Heap> {
        let b = Heap::builder();
        match self.heap_mib {
            Some(mib) => b.capacity(mib << 20).build(),
            None => b.build(),
        }
    }
}

fn parse_mib(v: &str) -> Result<usize, UsageError> {
    match v.parse::<usize>() {
        Ok(mib) if (2..=(1 << 24)).contains(&mib) => Ok(mib),
        _ => Err(UsageError(format!(
            "--heap-mib wants a whole number of MiB between 2 and {}, got {v:?}",
            1 << 24
        ))),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_common_options() {
        let a = CommonArgs::parse(args(&["21", "--heap-mib", "512"])).unwrap();
        assert_eq!(
            a,
            CommonArgs {
                heap_mib: Some(512),
                help: false,
                positional: args(&["21"])
            }
        );
        let a = CommonArgs::parse(args(&["--heap-mib=64", "--", "-3"])).unwrap();
        assert_eq!((a.heap_mib, a.positional), (Some(64), args(&["-3"])));
        assert!(CommonArgs::parse(args(&["--heap-mib"])).is_err());
        assert!(CommonArgs::parse(args(&["--heap-mib", "x"])).is_err());
        assert!(CommonArgs::parse(args(&["--heap-mib", "1"])).is_err());
        assert!(CommonArgs::parse(args(&["--frob"])).is_err());
        assert!(CommonArgs::parse(args(&["-h"])).unwrap().help);
    }
}
