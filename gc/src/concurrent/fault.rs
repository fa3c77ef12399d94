//! Serving mutator faults during a concurrent cycle, in one of two modes.
//!
//! **SIGBUS mode** (`UFFD_FEATURE_SIGBUS`, ART's choice): a mutator that
//! touches a registered missing page gets `SIGBUS` at that address, and our
//! handler resolves the page right there: it claims it (or waits for whoever
//! did), compacts it into a stack buffer and installs it with `UFFDIO_COPY`,
//! then returns so the access is retried. No thread hand-off. The handler
//! is process-wide and shared by all heaps: each heap using SIGBUS mode owns
//! a slot of a fixed registry holding its address range and, during a
//! cycle, a pointer to the cycle's [`CycleShared`]. A signal for an address
//! outside every heap goes to the handler that was installed before ours
//! (Rust's stack-overflow handler, usually), or to the default action.
//!
//! The handler runs arbitrary interrupted code's signal context, so it only
//! does async-signal-safe things: atomics, `memcpy`, ioctls, `nanosleep`;
//! no allocation and no locks. It saves and restores `errno`.
//!
//! Teardown protocol: a cycle is published in its heap's slot *before* the
//! range is registered and unpublished only *after* it is unregistered;
//! a handler bumps the slot's `users` count before loading the pointer, and
//! unpublishing waits for `users` to drop to zero, so the cycle is never
//! freed under a running handler. A SIGBUS for a heap address that finds no
//! cycle (it raced with the end of the cycle) simply returns: the range is
//! no longer registered, so the retried access succeeds.
//!
//! **Handler-thread mode**: a dedicated thread of the collector polls the
//! userfaultfd and resolves each fault event; the faulting thread sleeps in
//! the kernel until the installing ioctl wakes it. With `THREAD_ID` the
//! event names the faulting thread.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use super::CycleShared;
use crate::uffd::Event;

const SLOTS: usize = 64;

struct Slot {
    taken: AtomicBool,
    start: AtomicUsize,
    end: AtomicUsize,
    cycle: AtomicPtr<CycleShared>,
    users: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    taken: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    cycle: AtomicPtr::new(std::ptr::null_mut()),
    users: AtomicUsize::new(0),
};

static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The SIGBUS action that was in place before ours (leaked box).
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

/// Why SIGBUS mode cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigbusError {
    /// Every registry slot is in use (more than 64 heaps in SIGBUS mode).
    #[error("too many heaps in SIGBUS mode (at most {SLOTS})")]
    NoSlot,
    /// `sigaction` failed.
    #[error("installing the SIGBUS handler failed: errno {0}")]
    Sigaction(i32),
}

/// A heap's slot in the SIGBUS registry; freed on drop.
#[derive(Debug)]
pub struct HeapSlot(usize);

/// Registers the address range `[start, end)` of a heap for SIGBUS
/// handling, installing the process-wide handler on first use.
pub fn register_heap(start: usize, end: usize) -> Result<HeapSlot, SigbusError> {
    INSTALL.call_once(install_handler);
    if !INSTALLED.load(Ordering::Acquire) {
        return Err(SigbusError::Sigaction(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    for (i, s) in REGISTRY.iter().enumerate() {
        if s.taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            s.end.store(end, Ordering::Release);
            s.start.store(start, Ordering::Release);
            return Ok(HeapSlot(i));
        }
    }
    Err(SigbusError::NoSlot)
}

impl HeapSlot {
    /// Makes `cycle` visible to the handler. Call before registering.
    pub(crate) fn publish(&self, cycle: &Arc<CycleShared>) {
        REGISTRY[self.0]
            .cycle
            .store(Arc::as_ptr(cycle) as *mut CycleShared, Ordering::SeqCst);
    }

    /// Hides the cycle and waits until no handler uses it. Call after
    /// unregistering.
    pub(crate) fn unpublish(&self) {
        let s = &REGISTRY[self.0];
        s.cycle.store(std::ptr::null_mut(), Ordering::SeqCst);
        while s.users.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}

impl Drop for HeapSlot {
    fn drop(&mut self) {
        let s = &REGISTRY[self.0];
        self.unpublish();
        s.start.store(0, Ordering::Release);
        s.end.store(0, Ordering::Release);
        s.taken.store(false, Ordering::Release);
    }
}

fn install_handler() {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
    // we fill in the handler and install it with sigaction(2), keeping the
    // previous action for chaining. The handler only does async-signal-safe
    // work (see the module docs).
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = on_sigbus as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        let old = Box::into_raw(Box::new(std::mem::zeroed::<libc::sigaction>()));
        if libc::sigaction(libc::SIGBUS, &new, old) == 0 {
            PREVIOUS.store(old, Ordering::Release);
            INSTALLED.store(true, Ordering::Release);
        } else {
            drop(Box::from_raw(old));
        }
    }
}

/// Finds the heap containing `addr`; resolves the fault if a cycle is
/// active there. True if the address belongs to a heap (the access may be
/// retried), false if the signal is not ours.
fn handle(addr: usize) -> bool {
    for s in REGISTRY.iter() {
        let start = s.start.load(Ordering::Acquire);
        if start == 0 || addr < start || addr >= s.end.load(Ordering::Acquire) {
            continue;
        }
        s.users.fetch_add(1, Ordering::SeqCst);
        let c = s.cycle.load(Ordering::SeqCst);
        if !c.is_null() {
            // SAFETY: a published cycle stays alive until `unpublish` has
            // seen `users == 0`, and we hold a use.
            let c = unsafe { &*c };
            if c.contains(addr) {
                c.resolve_fault(addr);
            }
        }
        s.users.fetch_sub(1, Ordering::SeqCst);
        return true;
    }
    false
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; reading and restoring it keeps the
    // interrupted code's errno intact across our ioctls.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let ours = handle(addr);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    if !ours {
        chain(sig, info, uctx);
    }
}

fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let prev = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: `prev` is the leaked, never-freed previous action (or null).
    // Calling it with our own arguments is what the kernel would have done
    // had it been installed; for SIG_DFL/SIG_IGN we restore the default
    // action so the retried faulting instruction terminates the process as
    // it would have without us.
    unsafe {
        if !prev.is_null() {
            let p = &*prev;
            let h = p.sa_sigaction;
            if h != libc::SIG_DFL && h != libc::SIG_IGN {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(h);
                    f(sig, info, uctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
                    f(sig);
                }
                return;
            }
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
    }
}

/// The fault-handler thread of one cycle (handler-thread mode).
pub(crate) struct HandlerThread {
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

/// A fault-handler thread started ahead of its cycle (before the pause
/// that flips, so the thread's creation is not part of the pause); it
/// waits for the cycle in [`start`](Self::start). Dropped unused, the
/// thread exits.
pub(crate) struct PendingHandler {
    tx: std::sync::mpsc::Sender<Arc<CycleShared>>,
    stop: Arc<AtomicBool>,
    join: JoinHandle<()>,
}

impl PendingHandler {
    /// Starts the thread; `None` if it cannot be started (the flip then
    /// starts one itself).
    pub(crate) fn spawn() -> Option<PendingHandler> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<CycleShared>>();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let join = std::thread::Builder::new()
            .name("movegc-faults".into())
            .spawn(move || {
                if let Ok(cycle) = rx.recv() {
                    serve(&cycle, &s);
                }
            })
            .ok()?;
        Some(PendingHandler { tx, stop, join })
    }

    /// Hands the thread its cycle.
    pub(crate) fn start(self, cycle: Arc<CycleShared>) -> HandlerThread {
        self.tx
            .send(cycle)
            .unwrap_or_else(|_| unreachable!("the handler thread waits for its cycle"));
        HandlerThread {
            stop: self.stop,
            join: Some(self.join),
        }
    }
}

/// Resolves `cycle`'s fault events until `stop` is raised.
fn serve(cycle: &CycleShared, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match cycle.uffd().wait_event(Some(Duration::from_millis(2))) {
            Ok(Some(Event::PageFault { address, .. })) if cycle.contains(address) => {
                cycle.resolve_fault(address)
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("reading userfaultfd events failed: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

impl HandlerThread {
    /// Starts a thread that resolves `cycle`'s fault events until stopped.
    pub(crate) fn spawn(cycle: Arc<CycleShared>) -> HandlerThread {
        PendingHandler::spawn()
            .expect("spawn the fault-handler thread")
            .start(cycle)
    }

    /// Stops the thread (after the range is unregistered) and joins it.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}
