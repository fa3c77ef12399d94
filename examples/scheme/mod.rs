//! An embedded Scheme interpreter whose every value lives in a movegc heap.
//!
//! The interpreter covers the everyday core of R7RS-small: `define`,
//! `lambda` (fixed, variadic and dotted parameter lists), `if`, `cond`,
//! `case`, `let`/`let*`/`letrec`/`letrec*` and named `let`, `do`, `begin`,
//! `set!`, `quote`/`quasiquote`, `and`/`or`/`when`/`unless`, fixnum
//! arithmetic, pairs and lists, vectors, strings, characters and symbols,
//! and `display`/`write`/`newline`. Procedure calls in tail position run in
//! constant Rust stack and constant handle space.
//!
//! Pairs, fixnums, symbols, strings, vectors, closures, primitives and
//! environment frames are all movegc objects; the interpreter refers to them
//! only through [`Local`](movegc::Local) handles, inside handle scopes, so a
//! collection (which moves every object, possibly concurrently with
//! userfaultfd) can happen at any allocation. Source code is read into heap
//! data, then compiled into a small Rust tree of [`compile`] nodes (lexical
//! addresses resolved once), which the evaluator walks.
//!
//! Every failure — a syntax error, an unbound variable, a type or arity
//! error, running out of heap — is a [`SchemeError`] value; the interpreter
//! never panics on bad programs and stays usable after an error.
//!
//! ```
//! use movegc::Heap;
//! use movegc_examples::scheme::Interpreter;
//! let heap = Heap::builder().capacity(16 << 20).build()?;
//! let mut scheme = Interpreter::new(&heap)?;
//! assert_eq!(scheme.eval_str("(map (lambda (x) (* x x)) '(1 2 3))")?, "(1 4 9)");
//! scheme.eval_str("(display \"hi\") (newline)")?;
//! assert_eq!(scheme.take_output(), "hi\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod builtins;
pub mod compile;
pub mod eval;
pub mod reader;
pub mod repl;
pub mod value;

use std::fmt;
use std::io::Write;

use movegc::{Heap, HeapStats, Mutator};

use eval::Machine;

/// Scheme programs shipped with the interpreter (`examples/scheme/*.scm`),
/// as `(file name, source)`.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("tak.scm", include_str!("tak.scm")),
    ("nqueens.scm", include_str!("nqueens.scm")),
    ("mergesort.scm", include_str!("mergesort.scm")),
    ("churn.scm", include_str!("churn.scm")),
];

/// Stack size of the thread [`run_program`] and [`on_big_stack`] run on:
/// deep non-tail recursion in Scheme is deep recursion in the evaluator.
pub const BIG_STACK: usize = 1 << 30;

/// Stack an evaluation may use on a [`BIG_STACK`] thread (see
/// [`Interpreter::set_stack_limit`]).
pub const BIG_STACK_LIMIT: usize = BIG_STACK - (64 << 20);

/// Stack an evaluation may use by default: safe on a 2 MiB thread stack
/// (Rust's default for spawned threads) and on the 8 MiB main thread.
pub const DEFAULT_STACK_LIMIT: usize = 1 << 20;

/// Everything that can go wrong while reading or evaluating a program.
#[derive(Debug)]
pub enum SchemeError {
    /// Malformed source text.
    Read {
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The source ended inside a datum (an open list or string): more
    /// input is needed.
    Incomplete,
    /// A special form used wrongly.
    Syntax {
        /// The offending form, printed (and shortened).
        form: String,
        /// What is wrong.
        message: String,
    },
    /// A variable that has no binding.
    Unbound(String),
    /// A `letrec` variable or internal definition used before its value
    /// was computed.
    Uninitialized(String),
    /// A procedure received an argument of the wrong type.
    WrongType {
        /// The procedure.
        procedure: String,
        /// What it wanted.
        expected: &'static str,
        /// The argument it got, printed.
        got: String,
    },
    /// A procedure was called with the wrong number of arguments.
    Arity {
        /// The procedure.
        procedure: String,
        /// How many it accepts (`2`, `at least 1`, `1 to 2`).
        expected: String,
        /// How many it got.
        got: usize,
    },
    /// Something that is not a procedure was called.
    NotProcedure(String),
    /// An index outside a vector, string or list.
    Range {
        /// The procedure.
        procedure: String,
        /// The index given.
        index: i64,
        /// The valid length.
        len: usize,
    },
    /// Division (or `quotient`, `remainder`, `modulo`) by zero.
    DivisionByZero(&'static str),
    /// A fixnum result outside the 64-bit range.
    Overflow(&'static str),
    /// `(error message irritant ...)` was called.
    User(String),
    /// Non-tail recursion deeper than the stack limit allows (the limit, in
    /// bytes).
    TooDeep(usize),
    /// The heap is full even after a collection.
    HeapExhausted(movegc::Error),
    /// Another heap error (the thread already has a mutator for the heap,
    /// or an interpreter bug).
    Heap(movegc::Error),
    /// Writing the program's output failed.
    Io(String),
}

impl fmt::Display for SchemeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemeError::Read { line, message } => {
                write!(f, "read error on line {line}: {message}")
            }
            SchemeError::Incomplete => f.write_str("unexpected end of input"),
            SchemeError::Syntax { form, message } => write!(f, "bad syntax: {message}: {form}"),
            SchemeError::Unbound(name) => write!(f, "unbound variable: {name}"),
            SchemeError::Uninitialized(name) => {
                write!(f, "variable used before its definition: {name}")
            }
            SchemeError::WrongType {
                procedure,
                expected,
                got,
            } => write!(
                f,
                "{procedure}: wrong type argument: expected {expected}, got {got}"
            ),
            SchemeError::Arity {
                procedure,
                expected,
                got,
            } => write!(
                f,
                "{procedure}: wrong number of arguments: expected {expected}, got {got}"
            ),
            SchemeError::NotProcedure(v) => write!(f, "not a procedure: {v}"),
            SchemeError::Range {
                procedure,
                index,
                len,
            } => write!(f, "{procedure}: index {index} out of range (length {len})"),
            SchemeError::DivisionByZero(p) => write!(f, "{p}: division by zero"),
            SchemeError::Overflow(p) => write!(f, "{p}: fixnum overflow"),
            SchemeError::User(msg) => write!(f, "error: {msg}"),
            SchemeError::TooDeep(n) => write!(
                f,
                "recursion too deep (it would use more than {} KiB of stack)",
                n >> 10
            ),
            SchemeError::HeapExhausted(e) => write!(f, "out of memory: {e}"),
            SchemeError::Heap(e) => write!(f, "heap error: {e}"),
            SchemeError::Io(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for SchemeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SchemeError::HeapExhausted(e) | SchemeError::Heap(e) => Some(e),
            _ => None,
        }
    }
}

impl From<movegc::Error> for SchemeError {
    fn from(e: movegc::Error) -> Self {
        match e {
            movegc::Error::HeapExhausted { .. } => SchemeError::HeapExhausted(e),
            e => SchemeError::Heap(e),
        }
    }
}

impl From<movegc::LayoutError> for SchemeError {
    fn from(e: movegc::LayoutError) -> Self {
        SchemeError::Heap(e.into())
    }
}

/// `Result` with [`SchemeError`].
pub type Result<T, E = SchemeError> = std::result::Result<T, E>;

/// A Scheme interpreter: a mutator on a heap plus the global environment.
/// Not `Send` (the mutator belongs to its thread).
pub struct Interpreter {
    m: Mutator,
    vm: Machine,
}

impl fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interpreter")
            .field("handles", &self.m.handle_count())
            .finish_non_exhaustive()
    }
}

impl Interpreter {
    /// Attaches the calling thread to `heap` and sets up the global
    /// environment (primitives and the Scheme-level prelude). Output is
    /// buffered until [`take_output`](Self::take_output).
    pub fn new(heap: &Heap) -> Result<Interpreter> {
        let mut m = heap.attach()?;
        let vm = Machine::new(&mut m)?;
        let mut it = Interpreter { m, vm };
        it.run(builtins::PRELUDE)?;
        Ok(it)
    }

    /// Like [`new`](Self::new), but output goes to `sink` (after every
    /// top-level form, and whenever a few KiB have accumulated).
    pub fn with_output(heap: &Heap, sink: Box<dyn Write>) -> Result<Interpreter> {
        let mut it = Interpreter::new(heap)?;
        it.vm.core.sink = Some(sink);
        Ok(it)
    }

    /// The heap the interpreter allocates in.
    pub fn heap(&self) -> &Heap {
        self.m.heap()
    }

    /// Collector statistics of the heap.
    pub fn stats(&mut self) -> HeapStats {
        // Completed cycles only: let a concurrent one finish first.
        self.m.wait_idle();
        self.m.heap().stats()
    }

    /// Number of live local handles: constant between top-level forms,
    /// whatever the forms did (handles are scoped).
    pub fn handle_count(&self) -> usize {
        self.m.handle_count()
    }

    /// Deepest nesting of non-tail evaluations since the last
    /// [`reset_deepest`](Self::reset_deepest): a loop in tail position
    /// keeps it small however many times it iterates.
    pub fn deepest(&self) -> usize {
        self.vm.deepest
    }

    /// Resets [`deepest`](Self::deepest).
    pub fn reset_deepest(&mut self) {
        self.vm.deepest = 0;
    }

    /// Sets how much Rust stack an evaluation may use before it fails with
    /// [`SchemeError::TooDeep`] (default [`DEFAULT_STACK_LIMIT`]); measured
    /// from where each top-level form starts. Only raise it on a thread
    /// with a stack bigger than the limit (see [`BIG_STACK_LIMIT`]).
    pub fn set_stack_limit(&mut self, bytes: usize) {
        self.vm.core.stack_limit = bytes;
    }

    /// Output written by the program since the last call (everything, if
    /// there is no sink).
    pub fn take_output(&mut self) -> String {
        std::mem::take(&mut self.vm.core.out)
    }

    /// Hands buffered output to the sink, if there is one.
    pub fn flush(&mut self) -> Result<()> {
        self.vm.core.flush()
    }

    /// Reads, compiles and evaluates the next form of `source` starting at
    /// byte offset `*pos`, and advances `*pos` past it. Returns `None` at
    /// the end of the source, else the value as `write` prints it (an empty
    /// string for an unspecified value, such as that of `define`).
    pub fn eval_next(&mut self, source: &str, pos: &mut usize) -> Result<Option<String>> {
        let Interpreter { m, vm } = self;
        let r = vm.eval_next(m, source, pos);
        self.flush()?;
        r
    }

    /// Evaluates every form of `source` in order; stops at the first error.
    pub fn run(&mut self, source: &str) -> Result<()> {
        let mut pos = 0;
        while self.eval_next(source, &mut pos)?.is_some() {}
        Ok(())
    }

    /// Evaluates every form of `source` and returns the last value as
    /// `write` prints it (empty for no forms or an unspecified value).
    pub fn eval_str(&mut self, source: &str) -> Result<String> {
        let mut pos = 0;
        let mut last = String::new();
        while let Some(v) = self.eval_next(source, &mut pos)? {
            last = v;
        }
        Ok(last)
    }

    /// Reads (without evaluating) every form of `source`: `Ok` if it is
    /// complete and well formed, [`SchemeError::Incomplete`] if a datum is
    /// still open (a REPL should read another line), or the read error.
    pub fn check_source(&mut self, source: &str) -> Result<()> {
        let Interpreter { m, vm } = self;
        vm.check_source(m, source)
    }
}

/// What [`run_program`] produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Everything the program wrote.
    pub output: String,
    /// How it ended.
    pub result: Result<()>,
    /// The heap's statistics after the run.
    pub stats: HeapStats,
    /// Deepest evaluation nesting reached.
    pub deepest: usize,
}

/// Runs a whole program on `heap` in a fresh thread with a [`BIG_STACK`]
/// stack (so deep non-tail recursion works, up to [`BIG_STACK_LIMIT`]),
/// collecting its output.
pub fn run_program(heap: &Heap, source: &str) -> RunOutput {
    let failed = |e| RunOutput {
        output: String::new(),
        result: Err(e),
        stats: heap.stats(),
        deepest: 0,
    };
    let run = on_big_stack(|| {
        let mut it = match Interpreter::new(heap) {
            Ok(it) => it,
            Err(e) => return failed(e),
        };
        it.set_stack_limit(BIG_STACK_LIMIT);
        let result = it.run(source);
        RunOutput {
            output: it.take_output(),
            result,
            stats: it.stats(),
            deepest: it.deepest(),
        }
    });
    run.unwrap_or_else(|e| {
        failed(SchemeError::Io(format!(
            "cannot create the interpreter thread: {e}"
        )))
    })
}

/// Runs `f` on a new thread with a [`BIG_STACK`] stack and returns its
/// result, or the error creating the thread. A panic in `f` is resumed on
/// the calling thread.
pub fn on_big_stack<R: Send>(f: impl FnOnce() -> R + Send) -> std::io::Result<R> {
    std::thread::scope(|s| {
        let t = std::thread::Builder::new()
            .name("scheme".into())
            .stack_size(BIG_STACK)
            .spawn_scoped(s, f)?;
        match t.join() {
            Ok(r) => Ok(r),
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}
