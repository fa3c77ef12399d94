//! Serving mutator faults during a concurrent cycle, in one of two modes.
//!
//! **SIGBUS mode** (`UFFD_FEATURE_SIGBUS`, ART's choice): a mutator that
//! touches a registered missing page gets `SIGBUS` at that address, and our
//! handler resolves the page right there: it claims it (or waits for whoever
//! did), compacts it into a stack buffer and installs it with `UFFDIO_COPY`,
//! then returns so the access is retried. No thread hand-off. The handler
//! is process-wide and shared by all heaps: each heap using SIGBUS mode owns
//! a slot of a fixed registry holding its address range and, during a
//! cycle, a pointer to the cycle's [`CycleShared`].
//!
//! **What is ours.** Only a kernel-generated fault (`si_code ==
//! BUS_ADRERR`) whose `si_addr` lies in a registered heap range. Every
//! other SIGBUS (sent with `kill`, `raise`, `sigqueue`: `si_code <= 0`,
//! whose `si_addr` field is no address; poisoned memory, `BUS_MCEERR_*`; a
//! fault outside every heap) goes to the disposition that was in place
//! before ours, exactly as if movegc were not there (see `pass_on`):
//! `SIG_DFL` kills the process by SIGBUS right away; `SIG_IGN` ignores a
//! user-sent signal and kills on a kernel fault (the kernel forces those);
//! a handler (Rust's stack-overflow handler, usually) is called with its
//! mask, flags and `SA_RESETHAND` honoured. Our handler stays installed in
//! every case the process survives.
//!
//! The handler runs in arbitrary interrupted code's signal context, so it
//! only does async-signal-safe things: atomics, `memcpy`, ioctls,
//! `nanosleep`, `sigaction`, `pthread_sigmask`; no allocation, no lock, no
//! formatting, no unwinding (an impossible state ends in `fatal`: a
//! fixed message by `write(2)`, then
//! `abort`). It saves and restores `errno`.
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

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use super::fatal::abort_on_panic;
use super::sync;
use super::CycleShared;
use crate::poison::Poisoner;
use crate::uffd::Event;

const SLOTS: usize = 64;

struct Slot {
    taken: AtomicBool,
    start: AtomicUsize,
    end: AtomicUsize,
    cycle: SlotUse<CycleShared>,
    /// The heap's stale-reference mode, if on (see `poison`).
    poison: SlotUse<Poisoner>,
}

#[cfg(not(all(test, feature = "loom")))]
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    taken: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    cycle: SlotUse::new(),
    poison: SlotUse::new(),
};

#[cfg(not(all(test, feature = "loom")))]
static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];

/// Under loom a `SlotUse` cannot be built in a constant; the registry is
/// never used by the loom models (they build their own `SlotUse`), this
/// only keeps the crate compiling.
#[cfg(all(test, feature = "loom"))]
static REGISTRY: std::sync::LazyLock<[Slot; SLOTS]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|_| Slot {
        taken: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        cycle: SlotUse::new(),
        poison: SlotUse::new(),
    })
});

/// The teardown protocol of a registry slot (see the module docs): a
/// published pointer and a count of the handlers using it. A handler
/// [`enter`](Self::enter)s (bumps `users`, then loads the pointer) and
/// leaves when its [`SlotUser`] drops; [`unpublish`](Self::unpublish)
/// clears the pointer, then waits for `users == 0`. All `SeqCst`: the
/// handler's "bump, then load" and unpublish's "clear, then load the count"
/// are a store-buffering (Dekker) pair, so either the handler sees the
/// pointer cleared or unpublish sees its use. Hence whatever the handler
/// loaded is not freed before it leaves. Model-checked by
/// `loom_tests::unpublish_waits_for_every_user`.
pub(crate) struct SlotUse<T> {
    cycle: sync::AtomicPtr<T>,
    users: sync::AtomicUsize,
}

impl<T> SlotUse<T> {
    /// Nothing published, no user.
    #[cfg(not(all(test, feature = "loom")))]
    pub(crate) const fn new() -> SlotUse<T> {
        SlotUse {
            cycle: sync::AtomicPtr::new(std::ptr::null_mut()),
            users: sync::AtomicUsize::new(0),
        }
    }

    /// Nothing published, no user.
    #[cfg(all(test, feature = "loom"))]
    pub(crate) fn new() -> SlotUse<T> {
        SlotUse {
            cycle: sync::AtomicPtr::new(std::ptr::null_mut()),
            users: sync::AtomicUsize::new(0),
        }
    }

    /// Makes `p` visible to the handlers that enter from now on.
    ///
    /// # Safety
    ///
    /// `*p` must stay valid until [`unpublish`](Self::unpublish) (or the
    /// next `publish`'s `unpublish`) has returned.
    pub(crate) unsafe fn publish(&self, p: *const T) {
        self.cycle.store(p as *mut T, Ordering::SeqCst);
    }

    /// Hides the pointer and waits until no handler uses it: when this
    /// returns, the pointee may be freed. Not async-signal-safe with
    /// respect to a handler of the same slot on this thread (it would wait
    /// for itself).
    pub(crate) fn unpublish(&self) {
        self.cycle.store(std::ptr::null_mut(), Ordering::SeqCst);
        while self.users.load(Ordering::SeqCst) != 0 {
            sync::yield_now();
        }
    }

    /// Takes a use of the slot and loads the pointer. Async-signal-safe.
    #[inline]
    pub(crate) fn enter(&self) -> SlotUser<'_, T> {
        self.users.fetch_add(1, Ordering::SeqCst);
        let cycle = self.cycle.load(Ordering::SeqCst);
        SlotUser { slot: self, cycle }
    }
}

/// A handler's use of a [`SlotUse`]; dropping it leaves (drops `users`).
pub(crate) struct SlotUser<'a, T> {
    slot: &'a SlotUse<T>,
    cycle: *const T,
}

impl<T> SlotUser<'_, T> {
    /// The pointer published when the use was taken, if any: valid while
    /// this use is held.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        // SAFETY: `publish`'s contract keeps the pointee alive until
        // `unpublish` returns, and `unpublish` does not return while this
        // use is counted (see `SlotUse`).
        unsafe { self.cycle.as_ref() }
    }
}

impl<T> Drop for SlotUser<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.slot.users.fetch_sub(1, Ordering::SeqCst);
    }
}
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Storage for "the SIGBUS disposition that would be in effect without
/// movegc": slot 0 is written by [`install_handler`]; later slots are
/// written by the handler itself (no allocation there) when a previous
/// handler changes the disposition while we call it, or has
/// `SA_RESETHAND`. A slot is written once, by the thread that took it from
/// `PREV_NEXT`, before `PREV_CUR` publishes it (release/acquire), and never
/// written again.
const PREV_SLOTS: usize = 16;

struct PrevActions([UnsafeCell<MaybeUninit<libc::sigaction>>; PREV_SLOTS]);

// SAFETY: each slot is written by one thread before it is published through
// `PREV_CUR` (Release) and only read after that (Acquire); see above.
unsafe impl Sync for PrevActions {}

#[allow(clippy::declare_interior_mutable_const)]
const PREV_EMPTY: UnsafeCell<MaybeUninit<libc::sigaction>> = UnsafeCell::new(MaybeUninit::uninit());
static PREV: PrevActions = PrevActions([PREV_EMPTY; PREV_SLOTS]);
/// Index of the current previous action in `PREV`; `usize::MAX` = none.
static PREV_CUR: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Next free slot of `PREV`.
static PREV_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Records `act` as the disposition that applies without movegc. Async-
/// signal-safe. False if every slot is used (the old one then stays).
fn set_previous(act: &libc::sigaction) -> bool {
    let i = PREV_NEXT.fetch_add(1, Ordering::Relaxed);
    if i >= PREV_SLOTS {
        return false;
    }
    // SAFETY: slot `i` was handed to this thread alone by `PREV_NEXT` and
    // nobody reads it before the Release store below publishes it.
    unsafe { (*PREV.0[i].get()).write(*act) };
    PREV_CUR.store(i, Ordering::Release);
    true
}

/// The disposition that applies without movegc (a copy), `None` before
/// the handler is installed.
fn previous() -> Option<libc::sigaction> {
    let i = PREV_CUR.load(Ordering::Acquire);
    if i >= PREV_SLOTS {
        return None;
    }
    // SAFETY: slot `i` was fully written before `PREV_CUR` published it
    // (Acquire above pairs with the Release in `set_previous`) and is never
    // written again.
    Some(unsafe { (*PREV.0[i].get()).assume_init() })
}

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

/// A heap's slot in the SIGBUS registry (and whether a poisoner was
/// published in it); freed on drop.
#[derive(Debug)]
pub struct HeapSlot(usize, bool);

/// Slots with a published poisoner (see `poison`): while there are none,
/// the handler does not look for them.
static POISONERS: AtomicUsize = AtomicUsize::new(0);

/// Registers the address range `[start, end)` of a heap for SIGBUS
/// handling, installing the process-wide handler on first use.
pub fn register_heap(start: usize, end: usize) -> Result<HeapSlot, SigbusError> {
    take_slot(start, end, false)
}

/// Gives a heap's stale-reference mode a slot of its own, with no address
/// range: the handler asks every poisoner whatever the address (a freed
/// large object with its own mapping lies outside the heap), and a SIGBUS
/// that no poisoner and no cycle claims goes on to the previous
/// disposition instead of being retried forever. Installs the handler on
/// first use.
pub(crate) fn register_poisoner(p: &Arc<Poisoner>) -> Result<HeapSlot, SigbusError> {
    let slot = take_slot(0, 0, true)?;
    // SAFETY: `HeapPoison` holds this slot and an `Arc` of the poisoner,
    // and drops the slot (which unpublishes) first.
    unsafe { REGISTRY[slot.0].poison.publish(Arc::as_ptr(p)) };
    POISONERS.fetch_add(1, Ordering::AcqRel);
    Ok(slot)
}

/// Takes a free registry slot for `[start, end)` (empty for a poisoner's).
fn take_slot(start: usize, end: usize, poisoner: bool) -> Result<HeapSlot, SigbusError> {
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
            return Ok(HeapSlot(i, poisoner));
        }
    }
    Err(SigbusError::NoSlot)
}

impl HeapSlot {
    /// Makes `cycle` visible to the handler. Call before registering.
    pub(crate) fn publish(&self, cycle: &Arc<CycleShared>) {
        // SAFETY: the collector holds its `Arc` of the cycle until after it
        // has called `unpublish` (at the end of the cycle, or when starting
        // it fails), and `Drop` unpublishes too.
        unsafe { REGISTRY[self.0].cycle.publish(Arc::as_ptr(cycle)) };
    }

    /// Hides the cycle and waits until no handler uses it. Call after
    /// unregistering.
    pub(crate) fn unpublish(&self) {
        REGISTRY[self.0].cycle.unpublish();
    }
}

impl Drop for HeapSlot {
    fn drop(&mut self) {
        let s = &REGISTRY[self.0];
        self.unpublish();
        s.poison.unpublish();
        if self.1 {
            POISONERS.fetch_sub(1, Ordering::AcqRel);
        }
        s.start.store(0, Ordering::Release);
        s.end.store(0, Ordering::Release);
        s.taken.store(false, Ordering::Release);
    }
}

fn install_handler() {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
    // we fill in the handler and install it with sigaction(2), keeping the
    // previous action for passing on. The handler only does
    // async-signal-safe work (see the module docs).
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = on_sigbus as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old = std::mem::zeroed::<libc::sigaction>();
        if libc::sigaction(libc::SIGBUS, &new, &mut old) == 0 {
            set_previous(&old);
            INSTALLED.store(true, Ordering::Release);
        }
    }
}

/// Finds the heap containing `addr`; reports a stale access if the
/// address is memory its stale-reference mode poisoned (and aborts), else
/// resolves the fault if a cycle is active there. True if the address
/// belongs to a heap (the access may be retried), false if the signal is
/// not ours.
fn handle(addr: usize) -> bool {
    let in_slot = |s: &Slot| {
        let start = s.start.load(Ordering::Acquire);
        start != 0 && addr >= start && addr < s.end.load(Ordering::Acquire)
    };
    // Poison first: a poisoned page raises the same BUS_ADRERR as a
    // userfaultfd fault, and is told apart by address only. Every
    // poisoner is asked whatever the address (see `register_poisoner`);
    // one load when no heap has one: the default fault path pays no more.
    if POISONERS.load(Ordering::Acquire) > 0 {
        for s in REGISTRY.iter().filter(|s| s.taken.load(Ordering::Acquire)) {
            let user = s.poison.enter();
            if let Some(p) = user.get() {
                p.check(addr, crate::cputime::gettid());
            }
        }
    }
    let mut ours = false;
    for s in REGISTRY.iter().filter(|s| in_slot(s)) {
        ours = true;
        let user = s.cycle.enter();
        if let Some(c) = user.get() {
            if c.contains(addr) {
                // The faulting thread is this one (gettid is a plain
                // syscall: async-signal-safe).
                c.resolve_fault(addr, Some(crate::cputime::gettid()));
                return true;
            }
        }
    }
    ours
}

/// Whether a SIGBUS with this `si_code` was raised by the kernel for a
/// faulting access that userfaultfd's SIGBUS mode may have caused
/// (`BUS_ADRERR`). User-sent signals (`kill`, `raise`, `sigqueue`) have
/// `si_code <= 0`, and their `si_addr` field is not an address at all;
/// other kernel codes (`BUS_MCEERR_*` for poisoned memory, `BUS_ADRALN`,
/// `BUS_OBJERR`) are never ours either.
fn is_uffd_fault(si_code: libc::c_int) -> bool {
    si_code == libc::BUS_ADRERR
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; reading and restoring it keeps the
    // interrupted code's errno intact across our ioctls.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let code = unsafe { (*info).si_code };
    let ours = is_uffd_fault(code) && {
        // SAFETY: as above; for a kernel-generated SIGBUS (`si_code > 0`)
        // the union member is `si_addr`, the faulting address.
        let addr = unsafe { (*info).si_addr() } as usize;
        handle(addr)
    };
    if !ours {
        pass_on(sig, info, uctx);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Delivers a SIGBUS that is not ours to the disposition that would be in
/// effect without movegc, as the kernel would have; our handler stays
/// installed unless the process is about to die.
///
/// * `SIG_DFL`, or `SIG_IGN` for a kernel-generated fault (the kernel
///   forces those: an ignored synchronous SIGBUS kills): the process dies
///   now, by SIGBUS ([`die_by_sigbus`]).
/// * `SIG_IGN` for a user-sent signal: nothing happens.
/// * A handler: it is called (with three arguments if it has
///   `SA_SIGINFO`) with its `sa_mask` (plus SIGBUS unless `SA_NODEFER`)
///   blocked, as the kernel would; with `SA_RESETHAND` the previous
///   disposition becomes `SIG_DFL` first. If the handler changes the SIGBUS
///   disposition itself (Rust's stack-overflow handler resets it to
///   `SIG_DFL` for a fault that is not a stack overflow, then returns so the
///   access faults again), the new disposition is taken as the previous one
///   and our handler is put back, so later heap faults are still served and
///   later foreign signals meet what the previous handler asked for.
fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let code = unsafe { (*info).si_code };
    let Some(prev) = previous() else {
        die_by_sigbus(info);
    };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL {
        die_by_sigbus(info);
    }
    if h == libc::SIG_IGN {
        if code > 0 {
            die_by_sigbus(info);
        }
        return;
    }
    // SAFETY: plain libc calls on valid, stack-owned signal sets and
    // actions; `h` is the previous handler's address as it was installed,
    // called with the signature its flags say it has, and with the signal
    // mask the kernel would have given it. sigaction(2) and
    // pthread_sigmask(3) are async-signal-safe.
    unsafe {
        if prev.sa_flags & libc::SA_RESETHAND != 0 {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut dfl.sa_mask);
            set_previous(&dfl);
        }
        let mut mask = prev.sa_mask;
        if prev.sa_flags & libc::SA_NODEFER == 0 {
            libc::sigaddset(&mut mask, libc::SIGBUS);
        }
        let mut saved: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &mask, &mut saved);
        if prev.sa_flags & libc::SA_NODEFER != 0 {
            let mut bus: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut bus);
            libc::sigaddset(&mut bus, libc::SIGBUS);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &bus, std::ptr::null_mut());
        }
        if prev.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(h);
            f(sig, info, uctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
            f(sig);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
        // Did the previous handler change the disposition?
        let mut now: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut now) == 0
            && now.sa_sigaction != on_sigbus as *const () as usize
        {
            set_previous(&now);
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = on_sigbus as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut ours.sa_mask);
            libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut());
        }
    }
}

/// Terminates the process by SIGBUS, as the default action would: restores
/// `SIG_DFL`, queues the same signal (same `si_code` and `si_addr`) to this
/// thread and unblocks it. Never returns.
fn die_by_sigbus(info: *mut libc::siginfo_t) -> ! {
    // SAFETY: async-signal-safe libc calls on stack-owned values; `info`
    // is the valid siginfo the kernel passed us (rt_tgsigqueueinfo to our
    // own thread group may carry any si_code).
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut dfl.sa_mask);
        libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
        let pid = libc::getpid();
        let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
        let mut si = *info;
        if libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, libc::SIGBUS, &mut si) != 0 {
            libc::raise(libc::SIGBUS);
        }
        let mut bus: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut bus);
        libc::sigaddset(&mut bus, libc::SIGBUS);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &bus, std::ptr::null_mut());
        // Delivered on return from pthread_sigmask; not reached.
        libc::kill(pid, libc::SIGBUS);
    }
    super::fatal::fatal("SIGBUS with the default action did not terminate the process")
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
                    // A panic here may leave a page `MutatorClaimed` for
                    // good: its readers (and the GC's `wait_mapped`) would
                    // wait forever, so the process aborts instead.
                    abort_on_panic("fault handling", || serve(&cycle, &s));
                    let cpu = crate::cputime::thread_now().as_nanos() as u64;
                    cycle.counters.handler_cpu_ns.store(cpu, Ordering::Relaxed);
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

/// The second field of a `/proc/.../schedstat` text: the time the
/// thread has spent runnable but waiting for a CPU, ns.
fn parse_run_delay(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// This thread's run delay so far, from its open `schedstat` file (no
/// allocation: a stack buffer and `pread`). `None` where the kernel does
/// not keep it.
fn run_delay(f: &std::fs::File) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 96];
    let n = f.read_at(&mut buf, 0).ok()?;
    parse_run_delay(&buf[..n])
}

/// Resolves `cycle`'s fault events until `stop` is raised.
///
/// A faulting thread sleeps from its fault until the installing ioctl
/// wakes it. Of that wait this thread times its own work on the event
/// and, read from its `schedstat` around each wait for an event, how long
/// it sat runnable without a CPU after the fault woke it (on a loaded
/// machine most of the wait); both count as the fault's stall. What is
/// left out: the kernel's hand-off (microseconds) and the faulting
/// thread's own wait for a CPU once woken, which no one can time per
/// fault.
fn serve(cycle: &CycleShared, stop: &AtomicBool) {
    let schedstat = std::fs::File::open("/proc/thread-self/schedstat").ok();
    while !stop.load(Ordering::Acquire) {
        #[cfg(test)]
        if tests::PANIC_IN_SERVE.load(Ordering::Relaxed) {
            panic!("injected panic in the fault-handler thread");
        }
        let before = schedstat.as_ref().and_then(run_delay);
        match cycle.uffd().wait_event(Some(Duration::from_millis(2))) {
            Ok(Some(Event::PageFault {
                address, thread_id, ..
            })) if cycle.contains(address) => {
                let after = schedstat.as_ref().and_then(run_delay);
                let queued = match (before, after) {
                    (Some(b), Some(a)) => Duration::from_nanos(a.saturating_sub(b)),
                    _ => Duration::ZERO,
                };
                cycle.resolve_fault_after(address, thread_id.map(|t| t as i32), queued)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{Mapping, Prot, PAGE_SIZE};
    use crate::uffd::{OpenOptions, RegisterMode, Uffd};

    /// Makes `serve` panic (test only).
    pub(super) static PANIC_IN_SERVE: AtomicBool = AtomicBool::new(false);

    #[test]
    fn the_run_delay_is_the_second_schedstat_field() {
        assert_eq!(parse_run_delay(b"61219594 105581 19\n"), Some(105_581));
        assert_eq!(parse_run_delay(b"0 0 1"), Some(0));
        assert_eq!(parse_run_delay(b"garbage"), None);
        // This thread's own, where the kernel keeps it: it never goes back.
        if let Ok(f) = std::fs::File::open("/proc/thread-self/schedstat") {
            let a = run_delay(&f).expect("a schedstat file parses");
            std::thread::yield_now();
            assert!(run_delay(&f).unwrap() >= a);
        }
    }

    const CHILD_ENV: &str = "MOVEGC_FAULT_THREAD_CHILD";

    /// Child: the fault-handler thread of a cycle panics.
    #[test]
    fn child_fault_thread_panics() {
        if std::env::var(CHILD_ENV).is_err() {
            return;
        }
        let uffd = Arc::new(Uffd::open(&OpenOptions::new()).unwrap());
        let pages = 8;
        let space = Mapping::new(pages * PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite).unwrap();
        let from = Mapping::new(pages * PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite).unwrap();
        uffd.register(space.start(), space.len(), RegisterMode::MISSING)
            .unwrap();
        let cycle = Arc::new(super::super::test_cycle(uffd, &space, &from, pages));
        PANIC_IN_SERVE.store(true, Ordering::Relaxed);
        let h = PendingHandler::spawn().unwrap().start(cycle);
        std::thread::sleep(Duration::from_secs(2));
        h.stop();
        println!("survived a panic in the fault-handler thread");
        std::process::exit(0);
    }

    /// A panic in the fault-handler thread may leave a page claimed for
    /// good (its readers would wait forever): the process must abort with
    /// a message instead of going on.
    #[test]
    fn fault_thread_panic_aborts_the_process() {
        if let Err(e) = Uffd::open(&OpenOptions::new()) {
            eprintln!("skipped: userfaultfd unavailable: {e}");
            return;
        }
        let err = crate::concurrent::fatal::child_aborts(
            "concurrent::fault::tests::child_fault_thread_panics",
            CHILD_ENV,
        );
        assert!(
            err.contains("movegc: concurrent fault handling failed part-way"),
            "{err}"
        );
    }
}
