//! binary-trees (the Computer Language Benchmarks Game) on a movegc heap.
//!
//! ```text
//! cargo run --release --example binary_trees -- [N] [--strategy move|copy|stw] [--heap-mib M]
//! ```
//!
//! Prints exactly the benchmark's output lines on stdout (N defaults to 10)
//! and, on stderr, the strategy the heap actually uses (concurrent MOVE by
//! default; stop-the-world where userfaultfd is unavailable), the time and
//! the collector's statistics. `--help` describes the options; a bad
//! argument prints the usage on stderr and exits with status 2.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use movegc::Strategy;
use movegc_bench::binary_trees;
use movegc_examples::cli::BinaryTreesCli;
use movegc_examples::gc_summary;

fn main() -> ExitCode {
    let args = BinaryTreesCli::parse();
    let n = args.depth;
    let heap = match args.heap.build_heap() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("binary_trees: {e}");
            return ExitCode::FAILURE;
        }
    };
    // What the heap does after its fallbacks, not what was asked for.
    let asked = Strategy::from(args.heap.strategy);
    let used = heap.strategy();
    if used == asked {
        eprintln!("strategy: {}", used.name());
    } else {
        eprintln!("strategy: {} (asked for {})", used.name(), asked.name());
    }
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
