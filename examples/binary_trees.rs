//! binary-trees (the Computer Language Benchmarks Game) on a movegc heap.
//!
//! ```text
//! cargo run --release --example binary_trees -- [N] [--heap-mib M]
//! ```
//!
//! Prints exactly the benchmark's output lines on stdout (N defaults to 10)
//! and the collector's statistics on stderr. A bad argument prints the
//! usage on stderr and exits with status 2.

use std::io::Write;
use std::process::ExitCode;

use movegc_bench::binary_trees::{self, MAX_N};
use movegc_examples::{gc_summary, CommonArgs, UsageError};

const DEFAULT_N: u32 = 10;

fn usage() -> String {
    format!(
        "usage: binary_trees [N] [--heap-mib M]\n\
         \x20 N            tree depth, 0..={MAX_N} (default {DEFAULT_N}; the benchmark uses 21)\n\
         \x20 --heap-mib M heap capacity in MiB (default: the heap builder's, a quarter of RAM)"
    )
}

fn parse() -> Result<(CommonArgs, u32), UsageError> {
    let args = CommonArgs::parse(std::env::args().skip(1))?;
    let n = match args.positional.as_slice() {
        [] => DEFAULT_N,
        [n] => match n.parse::<u32>() {
            Ok(n) if n <= MAX_N => n,
            _ => {
                return Err(UsageError(format!(
                    "N must be a whole number in 0..={MAX_N}, got {n:?}"
                )))
            }
        },
        more => {
            return Err(UsageError(format!(
                "expected at most one argument N, got {}",
                more.len()
            )))
        }
    };
    Ok((args, n))
}

fn main() -> ExitCode {
    let (args, n) = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("binary_trees: {e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let heap = match args.build_heap() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("binary_trees: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = match binary_trees::run_movegc(&heap, n) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("binary_trees: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    for line in &out.lines {
        if writeln!(stdout, "{line}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    if stdout.flush().is_err() {
        return ExitCode::FAILURE;
    }
    eprintln!(
        "time: {:.3} s (depth {n}, heap capacity {} MiB)",
        out.elapsed.as_secs_f64(),
        heap.capacity() >> 20
    );
    eprintln!("{}", gc_summary(&heap.stats()));
    ExitCode::SUCCESS
}
