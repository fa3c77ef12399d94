//! An Android-style runtime prototype: a zygote process preloads a movegc
//! heap and forks app processes whose UI threads must draw a frame every
//! 16.67 ms while background threads allocate heavily; per collection
//! strategy it prints frames missed, frame-time percentiles, collections,
//! fault stalls, EBUSY fallbacks and each app's RSS/PSS, and checks that
//! every app's data stayed intact.
//!
//! ```text
//! cargo run --release --example zygote -- [--frames N] [--apps N] [--workers N]
//!     [--strategies move,copy,stw] [--quick] [--heap-mib N]
//!     [--fault-mode sigbus|handler] [--json]
//! ```
//!
//! (`--help` describes each option and its default.)
//!
//! The strategies run one after another, each with a fresh zygote and fresh
//! apps (the logic, and why, is in `movegc_examples::zygote_lib`). The
//! defaults (3 apps, 600 frames, 2 workers per app, all three strategies)
//! take about 35 s; `--quick` a few seconds. Exit status: 0 when every app
//! reported with its data intact, 1 otherwise, 2 for a bad command line.

use std::process::ExitCode;

use clap::Parser;
use movegc_examples::zygote_lib::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let report = run(&cli.config());
    if cli.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("zygote: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.table());
    }
    if report.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
