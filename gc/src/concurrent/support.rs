//! What a heap needs from the kernel for concurrent compaction, opened once
//! per heap: its userfaultfd (reopened in a forked child), the fault mode
//! it got (SIGBUS, or a handler thread where SIGBUS is not granted) and
//! whether `UFFDIO_MOVE` is available; and the fallbacks a strategy goes
//! through (MOVE → COPY → stop-the-world), each said once per process on
//! stderr.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::concurrent::fault::{register_heap, HeapSlot};
use crate::concurrent::FaultMode;
use crate::fork::PerProcess;
use crate::stats::Strategy;
use crate::uffd::{Features, OpenOptions, OpenPath, Uffd, UffdError};

/// The one-line fallback warning for a userfaultfd that cannot be opened:
/// the reason once (not "unavailable (userfaultfd unavailable: ..)").
fn unavailable_message(e: &UffdError) -> String {
    let why = match e {
        UffdError::Unavailable { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    format!("userfaultfd is unavailable ({why}); collections will compact stop-the-world")
}

/// What a heap has for concurrent compaction.
pub(crate) struct ConcurrentSupport {
    /// The descriptor (reopened in a forked child: see `fork`).
    uffd: PerProcess<Uffd>,
    /// How faults are served.
    pub(crate) fault_mode: FaultMode,
    /// The heap's SIGBUS registry slot (SIGBUS mode only).
    pub(crate) slot: Option<HeapSlot>,
    /// `UFFDIO_MOVE` is available.
    pub(crate) can_move: bool,
    /// `WP_ASYNC` was granted.
    wp_async: bool,
}

impl ConcurrentSupport {
    /// Opens userfaultfd for the heap at `[start, end)`, or says once why
    /// it cannot (the heap then compacts stop-the-world). `strategy` is
    /// the one asked for (only used to say why MOVE falls back to COPY).
    pub(crate) fn open(
        strategy: Strategy,
        fault_mode: FaultMode,
        path: Option<OpenPath>,
        write_tracking: bool,
        start: usize,
        end: usize,
    ) -> Option<ConcurrentSupport> {
        let mut mode = fault_mode;
        let tracking = match write_tracking {
            true => Features::WP_ASYNC | Features::WP_UNPOPULATED,
            false => Features::empty(),
        };
        let want = |mode: FaultMode| {
            tracking
                | match mode {
                    FaultMode::Sigbus => Features::MOVE | Features::SIGBUS,
                    FaultMode::HandlerThread => Features::MOVE | Features::THREAD_ID,
                }
        };
        let open = |mode: FaultMode| {
            let mut opts = OpenOptions::new().features(want(mode));
            if let Some(p) = path {
                opts = opts.require_path(p);
            }
            Uffd::open(&opts)
                .map_err(|e| warn_once(&WARN_UNAVAILABLE, &unavailable_message(&e)))
                .ok()
        };
        let uffd = open(mode)?;
        if mode == FaultMode::Sigbus && !uffd.features().contains(Features::SIGBUS) {
            warn_once(
                &WARN_NO_SIGBUS,
                "UFFD_FEATURE_SIGBUS not granted; serving faults with a handler thread",
            );
            mode = FaultMode::HandlerThread;
        }
        let slot = match mode {
            FaultMode::Sigbus => match register_heap(start, end) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn_once(
                        &WARN_NO_SIGBUS,
                        &format!("{e}; serving faults with a handler thread"),
                    );
                    mode = FaultMode::HandlerThread;
                    None
                }
            },
            FaultMode::HandlerThread => None,
        };
        // A SIGBUS-mode descriptor never queues fault events: reopen for the
        // handler-thread fallback.
        let uffd = if mode == FaultMode::HandlerThread && uffd.features().contains(Features::SIGBUS)
        {
            open(mode)?
        } else {
            uffd
        };
        let can_move = uffd.features().contains(Features::MOVE);
        if !can_move && strategy == Strategy::ConcurrentMove {
            warn_once(
                &WARN_NO_MOVE,
                "UFFDIO_MOVE is unavailable (kernel older than 6.8?); installing pages with UFFDIO_COPY",
            );
        }
        let wp_async = uffd.features().contains(Features::WP_ASYNC);
        Some(ConcurrentSupport {
            wp_async,
            uffd: PerProcess::new(uffd),
            fault_mode: mode,
            slot,
            can_move,
        })
    }

    /// Whether the descriptor was granted `WP_ASYNC` (the kernel's dirty
    /// tracking, `dirty`).
    pub(crate) fn write_tracking(&self) -> bool {
        self.wp_async
    }

    /// This process's userfaultfd: the heap's, or in a forked child a new
    /// one with the same features and open path (the inherited descriptor
    /// would act on the parent's memory).
    pub(crate) fn uffd(&self) -> Result<Arc<Uffd>, UffdError> {
        self.uffd.get(|old| {
            Uffd::open(
                &OpenOptions::new()
                    .features(old.features())
                    .require_path(old.open_path()),
            )
        })
    }
}

/// What `strategy` becomes given a heap's userfaultfd support.
pub(crate) fn effective(strategy: Strategy, support: Option<&ConcurrentSupport>) -> Strategy {
    match (strategy, support) {
        (Strategy::StopTheWorld, _) | (_, None) => Strategy::StopTheWorld,
        (Strategy::ConcurrentMove, Some(s)) if !s.can_move => Strategy::ConcurrentCopy,
        (s, Some(_)) => s,
    }
}

static WARN_UNAVAILABLE: AtomicBool = AtomicBool::new(false);
static WARN_NO_MOVE: AtomicBool = AtomicBool::new(false);
static WARN_NO_SIGBUS: AtomicBool = AtomicBool::new(false);
/// A concurrent cycle fell back to stop-the-world at its flip.
pub(crate) static WARN_FLIP: AtomicBool = AtomicBool::new(false);

/// Prints `msg` to stderr (and as a tracing warning) the first time `flag`
/// is raised in this process.
pub(crate) fn warn_once(flag: &AtomicBool, msg: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        eprintln!("movegc: {msg}");
        tracing::warn!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_warning_states_the_reason_once() {
        let e = UffdError::Unavailable {
            reason: "/dev/userfaultfd: permission denied; syscall: EPERM".into(),
            attempts: Vec::new(),
        };
        assert_eq!(
            unavailable_message(&e),
            "userfaultfd is unavailable (/dev/userfaultfd: permission denied; syscall: EPERM); \
             collections will compact stop-the-world"
        );
        let m = unavailable_message(&UffdError::Os {
            op: "UFFDIO_API",
            errno: libc::EINVAL,
        });
        assert!(
            m.starts_with("userfaultfd is unavailable (") && !m.contains("unavailable: "),
            "{m}"
        );
    }
}
