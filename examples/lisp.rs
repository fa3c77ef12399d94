//! lisp: a Scheme interpreter whose every value lives on a movegc heap.
//!
//! ```text
//! cargo run --release --example lisp -- [FILE.scm] [--strategy move|copy|stw] [--heap-mib N]
//!     [--no-prompt]
//! ```
//!
//! With a file, runs it (its output on stdout; it stops at its first
//! error). Without one, a REPL on stdin: prints a prompt (`> `, unless
//! `--no-prompt`; on a pipe too), the value of each expression on stdout
//! and each error on stderr, and goes on with the next expression after an
//! error (`movegc_examples::scheme::repl`). Afterwards the collector's
//! statistics go to stderr. Exit status: 1 if the file failed, or if any
//! expression failed while stdin is not a terminal (an interactive session
//! ends with 0); 2 for a bad command line; else 0. Programs to try are in
//! `examples/scheme/`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use movegc::{Heap, HeapStats};
use movegc_examples::cli::LispCli;
use movegc_examples::gc_summary;
use movegc_examples::scheme::{on_big_stack, repl, Interpreter, BIG_STACK_LIMIT};

/// Runs the program file; returns whether it succeeded.
fn run_file(heap: &Heap, name: &str, source: &str) -> bool {
    let mut it = match Interpreter::with_output(heap, Box::new(std::io::stdout())) {
        Ok(it) => it,
        Err(e) => {
            eprintln!("lisp: {e}");
            return false;
        }
    };
    it.set_stack_limit(BIG_STACK_LIMIT);
    let r = it.run(source);
    let flushed = it.flush();
    match r.and(flushed) {
        Ok(()) => true,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("lisp: {name}: {e}");
            false
        }
    }
}

/// The REPL on stdin (see `movegc_examples::scheme::repl`); returns
/// whether the session succeeded (`ReplSummary::success`).
fn run_repl(heap: &Heap, prompt: bool) -> bool {
    let mut it = match Interpreter::with_output(heap, Box::new(std::io::stdout())) {
        Ok(it) => it,
        Err(e) => {
            eprintln!("lisp: {e}");
            return false;
        }
    };
    it.set_stack_limit(BIG_STACK_LIMIT);
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    match repl::repl(
        &mut it,
        stdin.lock(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
        prompt,
    ) {
        Ok(summary) => summary.success(interactive),
        Err(e) => {
            eprintln!("lisp: {e}");
            false
        }
    }
}

/// Pages installed by concurrent cycles, summed over the recent cycles the
/// statistics keep.
fn pages_line(heap: &Heap, s: &HeapStats) -> String {
    let moved: usize = s.recent.iter().map(|c| c.pages_moved).sum();
    let copied: usize = s.recent.iter().map(|c| c.pages_copied).sum();
    let compacted: usize = s.recent.iter().map(|c| c.pages_compacted).sum();
    let partial = if (s.recent.len() as u64) < s.cycles {
        format!(" (last {} cycles)", s.recent.len())
    } else {
        String::new()
    };
    format!(
        "strategy {}: pages compacted {compacted}, installed by MOVE {moved}, by COPY {copied}{partial}",
        heap.strategy().name()
    )
}

fn main() -> ExitCode {
    let args = LispCli::parse();
    let source = match &args.file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(s) => Some((f.display().to_string(), s)),
            Err(e) => {
                eprintln!("lisp: cannot read {}: {e}", f.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let heap = match args.heap.build_heap() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("lisp: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let ok = on_big_stack(|| match &source {
        Some((name, src)) => run_file(&heap, name, src),
        None => run_repl(&heap, !args.no_prompt),
    })
    .unwrap_or_else(|e| {
        eprintln!("lisp: cannot create the interpreter thread: {e}");
        false
    });
    let elapsed = start.elapsed();
    // The interpreter's mutator lived on its own thread.
    heap.wait_idle().expect("no mutator on this thread");
    let stats = heap.stats();
    eprintln!(
        "time: {:.3} s (heap capacity {} MiB)",
        elapsed.as_secs_f64(),
        heap.capacity() >> 20
    );
    eprintln!("{}", gc_summary(&stats));
    eprintln!("{}", pages_line(&heap, &stats));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
