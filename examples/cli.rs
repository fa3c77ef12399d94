//! The examples' command lines, with clap: the options shared by all of them
//! ([`StrategyArg`], [`HeapArgs`]) and the parsers of `binary_trees` and
//! `lisp` (`zygote`'s is [`crate::zygote_lib::Cli`]). They live in the
//! library so that the tests can check every documented invocation.

use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, ValueEnum};
use movegc::{Heap, Strategy};
use movegc_bench::binary_trees::MAX_N;

/// `--strategy`: how the collector compacts the heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// Concurrent, pages installed with UFFDIO_MOVE (falls back to COPY or
    /// stop-the-world, saying so on stderr, where userfaultfd cannot do it)
    #[default]
    #[value(name = "move", alias = "concurrent-move")]
    Move,
    /// Concurrent, pages installed with UFFDIO_COPY
    #[value(name = "copy", alias = "concurrent-copy")]
    Copy,
    /// Stop-the-world: everything in one pause
    #[value(name = "stw", alias = "stop-the-world")]
    Stw,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::Move => Strategy::ConcurrentMove,
            StrategyArg::Copy => Strategy::ConcurrentCopy,
            StrategyArg::Stw => Strategy::StopTheWorld,
        }
    }
}

/// The heap options of `binary_trees` and `lisp`.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct HeapArgs {
    /// How the collector compacts
    #[arg(long, value_name = "S", value_enum, default_value_t = StrategyArg::Move)]
    pub strategy: StrategyArg,
    /// Heap capacity in MiB, 2..=16777216 [default: the heap builder's, a
    /// quarter of RAM]
    #[arg(long, value_name = "MIB",
          value_parser = RangedU64ValueParser::<usize>::new().range(2..=1 << 24))]
    pub heap_mib: Option<usize>,
}

impl HeapArgs {
    /// A heap with the builder's defaults, `--strategy` and, if given,
    /// `--heap-mib`.
    pub fn build_heap(&self) -> movegc::Result<Heap> {
        let mut b = Heap::builder().strategy(self.strategy.into());
        if let Some(mib) = self.heap_mib {
            b = b.capacity(mib << 20);
        }
        b.build()
    }
}

/// binary-trees (the Computer Language Benchmarks Game) on a movegc heap:
/// prints the benchmark's lines on stdout, the strategy used, the time and
/// the collector's statistics on stderr.
#[derive(Parser, Clone, Debug, PartialEq, Eq)]
#[command(
    name = "binary_trees",
    after_help = "Exit status: 0 on success, 1 if the heap cannot be created or runs out, \
                  2 for a bad command line."
)]
pub struct BinaryTreesCli {
    /// Tree depth, 0..=40 (the benchmark uses 21)
    #[arg(value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=MAX_N as i64))]
    pub depth: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub heap: HeapArgs,
}

/// A Scheme interpreter whose every value lives on a movegc heap. With a
/// file, runs it; without one, a REPL on stdin: prints the value of each
/// expression, reports an error and goes on with the next one.
#[derive(Parser, Clone, Debug, PartialEq, Eq)]
#[command(
    name = "lisp",
    after_help = "The REPL prints a prompt (\"> \", \"... \" inside an unfinished expression) \
                  on stdout before each read, whether stdin is a terminal or a pipe, unless \
                  --no-prompt is given; values go to stdout, errors to stderr. The collector's \
                  statistics go to stderr at the end.\n\n\
                  Exit status: 0 on success; 1 if the program file failed (it stops at its \
                  first error), or if any expression failed in a REPL whose stdin is not a \
                  terminal (in an interactive session errors are only reported, and the exit \
                  status is 0); 2 for a bad command line.\n\n\
                  Programs to try: examples/scheme/*.scm."
)]
pub struct LispCli {
    /// Program to run [default: a REPL on stdin]
    #[arg(value_name = "FILE.scm")]
    pub file: Option<PathBuf>,
    /// REPL: print no prompt (values and errors only, e.g. for scripts)
    #[arg(long)]
    pub no_prompt: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub heap: HeapArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_parsers_are_well_formed() {
        BinaryTreesCli::command().debug_assert();
        LispCli::command().debug_assert();
    }

    #[test]
    fn binary_trees_options_and_defaults() {
        let p = |args: &[&str]| {
            BinaryTreesCli::try_parse_from(
                std::iter::once("binary_trees").chain(args.iter().copied()),
            )
        };
        assert_eq!(
            p(&[]).unwrap(),
            BinaryTreesCli {
                depth: 10,
                heap: HeapArgs {
                    strategy: StrategyArg::Move,
                    heap_mib: None
                }
            }
        );
        // README.md: `cargo run --release --example binary_trees -- 21`.
        assert_eq!(p(&["21"]).unwrap().depth, 21);
        let a = p(&["16", "--heap-mib", "512", "--strategy", "stw"]).unwrap();
        assert_eq!((a.depth, a.heap.heap_mib), (16, Some(512)));
        assert_eq!(Strategy::from(a.heap.strategy), Strategy::StopTheWorld);
        let a = p(&["--heap-mib=64", "--strategy=copy", "--", "3"]).unwrap();
        assert_eq!(
            (a.depth, a.heap.heap_mib, a.heap.strategy),
            (3, Some(64), StrategyArg::Copy)
        );
        assert_eq!(
            p(&["--strategy", "concurrent-move"]).unwrap().heap.strategy,
            StrategyArg::Move
        );
        assert_eq!(p(&[&MAX_N.to_string()]).unwrap().depth, MAX_N);
        for bad in [
            &["41"][..],
            &["--", "-3"],
            &["x"],
            &["1", "2"],
            &["--heap-mib"],
            &["--heap-mib", "x"],
            &["--heap-mib", "1"],
            &["--strategy", "fast"],
            &["--frob"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        let e = p(&["-h"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn lisp_options_and_defaults() {
        let p = |args: &[&str]| {
            LispCli::try_parse_from(std::iter::once("lisp").chain(args.iter().copied()))
        };
        let a = p(&[]).unwrap();
        assert_eq!(
            (a.file, a.no_prompt, a.heap),
            (None, false, HeapArgs::default())
        );
        // README.md: `... --example lisp -- examples/scheme/nqueens.scm --strategy move`.
        let a = p(&["examples/scheme/nqueens.scm", "--strategy", "move"]).unwrap();
        assert_eq!(
            a.file.as_deref(),
            Some(std::path::Path::new("examples/scheme/nqueens.scm"))
        );
        assert_eq!(a.heap.strategy, StrategyArg::Move);
        let a = p(&["x.scm", "--strategy", "copy", "--heap-mib", "64"]).unwrap();
        assert_eq!(
            (a.heap.strategy, a.heap.heap_mib),
            (StrategyArg::Copy, Some(64))
        );
        let a = p(&["--strategy=stw", "--no-prompt"]).unwrap();
        assert_eq!(
            (a.file, a.heap.strategy, a.no_prompt),
            (None, StrategyArg::Stw, true)
        );
        for bad in [
            &["--strategy"][..],
            &["--strategy", "fast"],
            &["a.scm", "b.scm"],
            &["--frob"],
            &["--heap-mib", "0"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    /// `--help` names every option and the right defaults.
    #[test]
    fn help_describes_the_options_and_defaults() {
        let help = BinaryTreesCli::command().render_long_help().to_string();
        for needle in [
            "[N]",
            "Tree depth",
            "[default: 10]",
            "--strategy <S>",
            "[default: move]",
            "UFFDIO_MOVE",
            "stop-the-world",
            "--heap-mib <MIB>",
            "a quarter of RAM",
        ] {
            assert!(help.contains(needle), "{needle:?} missing in:\n{help}");
        }
        let help = LispCli::command().render_long_help().to_string();
        for needle in [
            "[FILE.scm]",
            "a REPL on stdin",
            "--no-prompt",
            "--strategy <S>",
            "[default: move]",
            "--heap-mib <MIB>",
            "whether stdin is a terminal or a pipe",
            "Exit status",
        ] {
            assert!(help.contains(needle), "{needle:?} missing in:\n{help}");
        }
    }

    #[test]
    fn strategy_names_map_to_the_heap_strategies() {
        for (arg, s) in [
            (StrategyArg::Move, Strategy::ConcurrentMove),
            (StrategyArg::Copy, Strategy::ConcurrentCopy),
            (StrategyArg::Stw, Strategy::StopTheWorld),
        ] {
            assert_eq!(Strategy::from(arg), s);
            // The names clap accepts are the ones `Strategy::parse` does.
            let name = arg.to_possible_value().unwrap();
            assert_eq!(Strategy::parse(name.get_name()), Some(s));
            assert_eq!(StrategyArg::from_str(s.name(), false), Ok(arg));
        }
    }
}
