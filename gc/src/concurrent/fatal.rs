//! The ways a concurrent cycle gives up: [`fatal`] for code that must not
//! unwind (the fault path, which runs in a SIGBUS handler),
//! [`abort_on_panic`] for the collector's own threads (marker, compaction
//! driver, fault-handler thread), and [`abort_with`] for a failure past the
//! flip's point of no return seen in ordinary code.
//!
//! Both abort rather than unwind or return: once a range is registered and
//! its pages moved away, a page that is never installed blocks every reader
//! forever, so a cycle that cannot be completed must take the process down
//! with a message instead of hanging it.

/// Writes `movegc: fatal: <msg>` to stderr with `write(2)` and aborts.
///
/// Async-signal-safe: no allocation, no lock, no formatting, no unwinding
/// (the message is a fixed string). This is the only way the fault path
/// (which may run in a SIGBUS handler) reports an impossible state.
#[cold]
#[inline(never)]
pub(crate) fn fatal(msg: &'static str) -> ! {
    // In the loom models (threads of a test, no signal handler) an
    // impossible state fails the model, which then reports its schedule.
    if cfg!(all(test, feature = "loom")) {
        panic!("movegc: fatal: {msg}");
    }
    write_stderr(b"movegc: fatal: ");
    write_stderr(msg.as_bytes());
    write_stderr(b"\n");
    // SAFETY: abort(3) is async-signal-safe and never returns.
    unsafe { libc::abort() }
}

/// `write(2)` all of `bytes` to fd 2, giving up on any error.
fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of `bytes.len()` bytes;
        // write(2) is async-signal-safe.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            // SAFETY: errno is thread-local.
            if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Runs `f`, the body of one of a concurrent cycle's threads (marker,
/// compaction driver, fault-handler thread). If it panics the cycle cannot
/// be completed (mutators wait for it, pages may be missing and claimed by
/// the dead thread), so the process aborts with a message rather than hang.
pub(crate) fn abort_on_panic(phase: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        eprintln!(
            "movegc: concurrent {phase} failed part-way; aborting (the heap cannot be completed)"
        );
        std::process::abort();
    }
}

/// Ends the process after a failure that leaves the heap unrecoverable
/// (past a concurrent cycle's point of no return), with a message. Not for
/// the fault path (it formats): use [`fatal`] there.
pub(crate) fn abort_with(msg: &str) -> ! {
    eprintln!("movegc: {msg}; aborting (the heap cannot be completed)");
    std::process::abort()
}

/// Runs the unit test `test` of this binary in a child process with `env`
/// set (the test's child half), expects it to die by `SIGABRT`, and returns
/// its stderr.
#[cfg(test)]
pub(crate) fn child_aborts(test: &str, env: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env(env, "1")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
