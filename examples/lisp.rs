//! lisp: a Scheme interpreter whose every value lives on a movegc heap.
//!
//! ```text
//! cargo run --release --example lisp -- [FILE.scm] [--strategy move|copy|stw] [--heap-mib N]
//! ```
//!
//! With a file, runs it (its output on stdout); without one, reads
//! expressions from stdin and prints the value of each (a REPL). Afterwards
//! the collector's statistics go to stderr. An error in the program prints
//! on stderr and exits with status 1; a bad argument prints the usage on
//! stderr and exits with status 2. Programs to try are in
//! `examples/scheme/`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use movegc::{Heap, HeapStats, Strategy};
use movegc_examples::scheme::{on_big_stack, Interpreter, SchemeError, BIG_STACK_LIMIT};
use movegc_examples::{gc_summary, CommonArgs, UsageError};

fn usage() -> &'static str {
    "usage: lisp [FILE.scm] [--strategy move|copy|stw] [--heap-mib N]\n\
     \x20 FILE.scm     program to run (default: a REPL on stdin)\n\
     \x20 --strategy S how the collector compacts: move (concurrent, UFFDIO_MOVE, the\n\
     \x20              default), copy (concurrent, UFFDIO_COPY) or stw (stop-the-world)\n\
     \x20 --heap-mib N heap capacity in MiB (default: the heap builder's, a quarter of RAM)"
}

/// The parsed command line.
struct Args {
    file: Option<String>,
    strategy: Option<Strategy>,
    common: CommonArgs,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, UsageError> {
    let mut strategy = None;
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let value = if a == "--strategy" {
            Some(
                args.next()
                    .ok_or_else(|| UsageError("--strategy needs a value".into()))?,
            )
        } else {
            a.strip_prefix("--strategy=").map(str::to_owned)
        };
        match value {
            Some(v) => {
                strategy = Some(Strategy::parse(&v).ok_or_else(|| {
                    UsageError(format!("unknown strategy {v:?} (want move, copy or stw)"))
                })?)
            }
            None if a == "--" => {
                rest.push(a);
                rest.extend(args.by_ref());
            }
            None => rest.push(a),
        }
    }
    let common = CommonArgs::parse(rest)?;
    let file = match common.positional.as_slice() {
        [] => None,
        [f] => Some(f.clone()),
        more => {
            return Err(UsageError(format!(
                "expected at most one program file, got {}",
                more.len()
            )))
        }
    };
    Ok(Args {
        file,
        strategy,
        common,
    })
}

fn build_heap(args: &Args) -> movegc::Result<Heap> {
    let mut b = Heap::builder();
    if let Some(s) = args.strategy {
        b = b.strategy(s);
    }
    if let Some(mib) = args.common.heap_mib {
        b = b.capacity(mib << 20);
    }
    b.build()
}

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

/// Reads expressions from stdin and prints their values until end of
/// input; returns whether the last expression succeeded.
fn repl(heap: &Heap) -> bool {
    let mut it = match Interpreter::with_output(heap, Box::new(std::io::stdout())) {
        Ok(it) => it,
        Err(e) => {
            eprintln!("lisp: {e}");
            return false;
        }
    };
    it.set_stack_limit(BIG_STACK_LIMIT);
    let interactive = std::io::stdin().is_terminal();
    let prompt = |more: bool| {
        if interactive {
            print!("{}", if more { "... " } else { "> " });
            let _ = std::io::stdout().flush();
        }
    };
    let mut ok = true;
    let mut buffer = String::new();
    prompt(false);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        buffer.push_str(&line);
        buffer.push('\n');
        match it.check_source(&buffer) {
            Err(SchemeError::Incomplete) => {
                prompt(true);
                continue;
            }
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
            Ok(()) => ok = eval_all(&mut it, &buffer),
        }
        buffer.clear();
        prompt(false);
    }
    if !buffer.trim().is_empty() {
        eprintln!("error: {}", SchemeError::Incomplete);
        ok = false;
    }
    ok
}

/// Evaluates every form of `source`, printing each value.
fn eval_all(it: &mut Interpreter, source: &str) -> bool {
    let mut pos = 0;
    loop {
        match it.eval_next(source, &mut pos) {
            Ok(None) => return true,
            Ok(Some(v)) => {
                if !v.is_empty() {
                    println!("{v}");
                }
            }
            Err(e) => {
                let _ = std::io::stdout().flush();
                eprintln!("error: {e}");
                return false;
            }
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
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lisp: {e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    if args.common.help {
        println!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let source = match &args.file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("lisp: cannot read {f}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let heap = match build_heap(&args) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("lisp: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let ok = on_big_stack(|| match (&args.file, &source) {
        (Some(name), Some(src)) => run_file(&heap, name, src),
        _ => repl(&heap),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_arguments() {
        let a = parse(args(&["x.scm", "--strategy", "move", "--heap-mib", "64"])).unwrap();
        assert_eq!(a.file.as_deref(), Some("x.scm"));
        assert_eq!(a.strategy, Some(Strategy::ConcurrentMove));
        assert_eq!(a.common.heap_mib, Some(64));
        let a = parse(args(&["--strategy=stw"])).unwrap();
        assert_eq!((a.file, a.strategy), (None, Some(Strategy::StopTheWorld)));
        assert!(parse(args(&["--strategy"])).is_err());
        assert!(parse(args(&["--strategy", "fast"])).is_err());
        assert!(parse(args(&["a.scm", "b.scm"])).is_err());
        assert!(parse(args(&["--frob"])).is_err());
    }
}
