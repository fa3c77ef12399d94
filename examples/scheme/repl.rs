//! The read-eval-print loop of the `lisp` example, on any input and output
//! (the example runs it on stdin, stdout and stderr; the tests on bytes).
//!
//! It reads a line at a time; once the lines read since the last
//! evaluation hold complete expressions it evaluates them in order,
//! printing each value (unless unspecified, as `define`'s is) on `out`
//! and each error on `err` as `error: ...`. An error does not end the
//! session: the next expression is evaluated, even one on the same line.
//! Only a read error (a stray `)`, a bad token) skips the rest of the lines
//! it was read with, since where the next expression starts is not known.
//!
//! ```
//! use movegc::Heap;
//! use movegc_examples::scheme::{repl::repl, Interpreter};
//! let heap = Heap::builder().capacity(16 << 20).build()?;
//! let mut it = Interpreter::new(&heap)?;
//! let (mut out, mut err) = (Vec::new(), Vec::new());
//! let input = "(define x 2)\n(car x) (* x 21)\n".as_bytes();
//! let summary = repl(&mut it, input, &mut out, &mut err, false)?;
//! assert_eq!(String::from_utf8(out)?, "42\n");
//! assert!(String::from_utf8(err)?.starts_with("error: car: wrong type argument"));
//! assert_eq!((summary.evaluated, summary.errors), (2, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, BufRead, Write};

use super::{Interpreter, SchemeError};

/// The prompt before a new expression.
pub const PROMPT: &str = "> ";

/// The prompt before each further line of an unfinished expression.
pub const CONTINUATION_PROMPT: &str = "... ";

/// What a REPL session did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplSummary {
    /// Expressions evaluated without error.
    pub evaluated: usize,
    /// Errors reported: expressions that failed, input that could not be
    /// read, an expression left unfinished at the end of the input.
    pub errors: usize,
}

impl ReplSummary {
    /// Whether the session counts as a success for the exit status: in an
    /// interactive session (stdin a terminal) errors were seen as they
    /// happened, so always; otherwise only if no error was reported.
    pub fn success(&self, interactive: bool) -> bool {
        interactive || self.errors == 0
    }
}

/// Reads expressions from `input` until its end, evaluates them in `it`
/// and prints their values on `out` and errors on `err` (see the module
/// documentation). With `prompt`, writes [`PROMPT`] (or
/// [`CONTINUATION_PROMPT`] inside an unfinished expression) on `out` before
/// reading each line, and a newline at the end of the input. The
/// interpreter's own output (`display`) goes to its sink; give it the same
/// stream as `out` to keep the two in order.
///
/// Returns what happened, or the first error reading `input` or writing
/// `out` or `err`.
pub fn repl(
    it: &mut Interpreter,
    mut input: impl BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
    prompt: bool,
) -> io::Result<ReplSummary> {
    let mut summary = ReplSummary::default();
    let mut buffer = String::new();
    let mut line = Vec::new();
    loop {
        if prompt {
            let p = if buffer.is_empty() {
                PROMPT
            } else {
                CONTINUATION_PROMPT
            };
            out.write_all(p.as_bytes())?;
            out.flush()?;
        }
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        match std::str::from_utf8(&line) {
            Ok(s) => buffer.push_str(s),
            Err(_) => {
                report(out, err, "input line is not UTF-8; skipped")?;
                summary.errors += 1;
                continue;
            }
        }
        if !buffer.ends_with('\n') {
            buffer.push('\n');
        }
        if matches!(it.check_source(&buffer), Err(SchemeError::Incomplete)) {
            continue;
        }
        eval_all(it, &buffer, out, err, &mut summary)?;
        buffer.clear();
    }
    if prompt {
        out.write_all(b"\n")?;
    }
    if !buffer.trim().is_empty() {
        report(out, err, SchemeError::Incomplete)?;
        summary.errors += 1;
    }
    out.flush()?;
    Ok(summary)
}

/// Evaluates the forms of `source` one by one, printing each value or
/// error; after a read error, skips the rest of `source`.
fn eval_all(
    it: &mut Interpreter,
    source: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
    summary: &mut ReplSummary,
) -> io::Result<()> {
    let mut pos = 0;
    loop {
        let start = pos;
        match it.eval_next(source, &mut pos) {
            Ok(None) => return Ok(()),
            Ok(Some(v)) => {
                summary.evaluated += 1;
                if !v.is_empty() {
                    writeln!(out, "{v}")?;
                }
            }
            Err(e) => {
                summary.errors += 1;
                report(out, err, e)?;
                // Go on after the form only if it was read whole (the error
                // came from evaluating it); after a read error the reader
                // stopped somewhere inside it.
                let read_whole = pos > start
                    && source
                        .get(start..pos)
                        .is_some_and(|form| it.check_source(form).is_ok());
                if !read_whole {
                    return Ok(());
                }
            }
        }
    }
}

/// Writes `error: {e}` on `err`, after what is pending on `out`.
fn report(out: &mut dyn Write, err: &mut dyn Write, e: impl std::fmt::Display) -> io::Result<()> {
    out.flush()?;
    writeln!(err, "error: {e}")?;
    err.flush()
}
