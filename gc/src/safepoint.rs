//! Stopping the world: which mutators are running, how a collection waits
//! for them, and how mutator-private state (TLAB, root stack) is handed to
//! the collector while its owner is stopped.
//!
//! Every attached mutator is in one of three states:
//!
//! ```text
//!            attach                       poll sees `requested`
//!   (none) ---------> Running  ---------------------------------> Parked
//!                     |    ^  <--------- collection finished ------'
//!      blocking(|| ..)|    | leaving the blocking region
//!                     v    |  (waits while a collection runs)
//!                     Blocked
//! ```
//!
//! The coordinator counts `running` mutators. A collection sets `active`
//! and `requested`, takes itself out of the running count and waits until
//! the count is zero: every other mutator is then parked at a safepoint,
//! blocked in foreign code, or detached. None of them can touch the heap or
//! its own [`MutatorState`] until `active` is cleared, so the collector may
//! read and rewrite all root stacks and reset all TLABs. Detaching (also
//! during a panic's unwinding) leaves the running count, so a dead thread
//! never holds up the collector.
//!
//! Cost on the mutator side: polling is one relaxed load of `requested`
//! (a plain `mov` on x86-64); everything else happens under the
//! coordinator's mutex only on state changes.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::object::ObjRef;
use crate::space::Tlab;

/// A mutator's private state, handed to the collector while it is stopped.
#[derive(Debug, Default)]
pub struct MutatorState {
    /// The thread's allocation buffer.
    pub tlab: Tlab,
    /// The thread's root slots (the embedding API's local handles).
    pub roots: Vec<Option<ObjRef>>,
}

/// The part of a mutator the collector can reach.
#[derive(Debug, Default)]
pub struct MutatorShared {
    state: UnsafeCell<MutatorState>,
}

// SAFETY: `state` is accessed either by the owning thread while it is
// Running, or by the collecting thread while the owner is Parked, Blocked
// or detached (see the module docs). The coordinator's mutex hand-off
// orders the two; there is never concurrent access.
unsafe impl Sync for MutatorShared {}
// SAFETY: as above; MutatorState is itself Send.
unsafe impl Send for MutatorShared {}

impl MutatorShared {
    /// The mutator's state.
    ///
    /// # Safety
    /// The caller is the owning thread while Running, or the collector while
    /// the world is stopped; and no other reference from `state()` is alive.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn state(&self) -> &mut MutatorState {
        // SAFETY: exclusive access per the caller's contract.
        unsafe { &mut *self.state.get() }
    }
}

#[derive(Debug, Default)]
struct CoordState {
    running: usize,
    active: bool,
    mutators: Vec<Arc<MutatorShared>>,
}

/// The safepoint coordinator of one heap.
#[derive(Debug, Default)]
pub struct Coordinator {
    state: Mutex<CoordState>,
    cv: Condvar,
    requested: AtomicBool,
}

/// Proof that the world is stopped: every attached mutator other than the
/// caller is parked, blocked or gone. Dropping it restarts the world.
pub struct StoppedWorld<'a> {
    coord: &'a Coordinator,
    mutators: Vec<Arc<MutatorShared>>,
    /// Stopped by a collector thread that is not a mutator.
    external: bool,
}

impl StoppedWorld<'_> {
    /// The states of all attached mutators (the caller's included).
    pub(crate) fn for_each_mutator(&mut self, mut f: impl FnMut(&mut MutatorState)) {
        for m in &self.mutators {
            // SAFETY: the world is stopped (this value exists), so no owner
            // thread touches its state; the collector is the only accessor
            // and holds no other reference from `state()`.
            f(unsafe { m.state() })
        }
    }
}

impl Drop for StoppedWorld<'_> {
    fn drop(&mut self) {
        let mut s = self.coord.lock();
        s.active = false;
        self.coord.requested.store(false, Ordering::Release);
        if !self.external {
            s.running += 1; // the collecting mutator resumes
        }
        self.coord.cv.notify_all();
    }
}

impl Coordinator {
    fn lock(&self) -> MutexGuard<'_, CoordState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, CoordState>) -> MutexGuard<'a, CoordState> {
        self.cv.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a collection wants mutators to stop (relaxed poll).
    #[inline(always)]
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Registers a new running mutator (waits for a running collection).
    pub fn attach(&self) -> Arc<MutatorShared> {
        let shared = Arc::new(MutatorShared::default());
        let mut s = self.lock();
        while s.active {
            s = self.wait(s);
        }
        s.running += 1;
        s.mutators.push(shared.clone());
        shared
    }

    /// Removes a running mutator (also on unwinding).
    pub fn detach(&self, shared: &Arc<MutatorShared>) {
        let mut s = self.lock();
        s.running -= 1;
        s.mutators.retain(|m| !Arc::ptr_eq(m, shared));
        self.cv.notify_all();
    }

    /// Number of attached mutators.
    pub fn attached(&self) -> usize {
        self.lock().mutators.len()
    }

    /// Parks the calling (running) mutator until no collection is active.
    pub fn park(&self) {
        let mut s = self.lock();
        if !s.active {
            return;
        }
        s.running -= 1;
        self.cv.notify_all();
        while s.active {
            s = self.wait(s);
        }
        s.running += 1;
    }

    /// Leaves the running set for a blocking region.
    pub fn enter_blocking(&self) {
        let mut s = self.lock();
        s.running -= 1;
        self.cv.notify_all();
    }

    /// Rejoins the running set, waiting for an active collection to finish.
    pub fn leave_blocking(&self) {
        let mut s = self.lock();
        while s.active {
            s = self.wait(s);
        }
        s.running += 1;
    }

    /// Stops the world on behalf of the calling running mutator. Returns
    /// `None` if another thread is already collecting: the caller has then
    /// been parked through that collection and should not start another.
    pub fn stop_the_world(&self) -> Option<StoppedWorld<'_>> {
        let mut s = self.lock();
        if s.active {
            s.running -= 1;
            self.cv.notify_all();
            while s.active {
                s = self.wait(s);
            }
            s.running += 1;
            return None;
        }
        s.active = true;
        self.requested.store(true, Ordering::Release);
        s.running -= 1;
        while s.running > 0 {
            s = self.wait(s);
        }
        let mutators = s.mutators.clone();
        Some(StoppedWorld {
            coord: self,
            mutators,
            external: false,
        })
    }

    /// Stops the world from a collector thread that is not a mutator (the
    /// final pause of concurrent marking), after any collection that is
    /// stopping or has stopped the world finishes.
    pub fn stop_the_world_external(&self) -> StoppedWorld<'_> {
        let mut s = self.lock();
        while s.active {
            s = self.wait(s);
        }
        s.active = true;
        self.requested.store(true, Ordering::Release);
        while s.running > 0 {
            s = self.wait(s);
        }
        let mutators = s.mutators.clone();
        StoppedWorld {
            coord: self,
            mutators,
            external: true,
        }
    }
}

/// A mutator's membership in the running set, owned by its thread.
///
/// Only this value gives the owner access to its [`MutatorState`], and every
/// operation that can stop the thread (`park`, `blocking`, collecting) takes
/// `&mut self`, so the borrow checker guarantees the owner holds no reference
/// into its state while the collector may be using it. `!Send`: it must stay
/// on the thread that attached.
pub struct Attached {
    coord: Arc<Coordinator>,
    shared: Arc<MutatorShared>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Attached {
    /// Attaches the calling thread.
    pub fn new(coord: Arc<Coordinator>) -> Attached {
        let shared = coord.attach();
        Attached {
            coord,
            shared,
            _not_send: std::marker::PhantomData,
        }
    }

    /// The owner's state.
    #[inline(always)]
    pub fn state(&mut self) -> &mut MutatorState {
        // SAFETY: we are the owner (Attached is !Send) and Running: the
        // collector only touches our state while we are parked, blocked or
        // detached, and each of those needs `&mut self`, which the returned
        // borrow excludes.
        unsafe { self.shared.state() }
    }

    /// Stops at a safepoint if a collection is requested.
    #[inline(always)]
    pub fn poll(&mut self) {
        if self.coord.requested() {
            self.coord.park();
        }
    }

    /// Runs `f` outside the running set: a collection may run meanwhile.
    pub fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        struct Rejoin<'a>(&'a Coordinator);
        impl Drop for Rejoin<'_> {
            fn drop(&mut self) {
                self.0.leave_blocking();
            }
        }
        self.coord.enter_blocking();
        let _rejoin = Rejoin(&self.coord);
        f()
    }

    /// Stops the world with this mutator as the collector (see
    /// [`Coordinator::stop_the_world`]).
    pub fn stop_the_world(&mut self) -> Option<StoppedWorld<'_>> {
        self.coord.stop_the_world()
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.coord.detach(&self.shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn collection_waits_for_running_mutators_and_skips_blocked_ones() {
        let c = Arc::new(Coordinator::default());
        let me = c.attach();
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicUsize::new(0));
        let blocked_ready = Arc::new(AtomicBool::new(false));
        // One mutator that polls, one that sits in a blocking region.
        let (c1, s1, p1) = (c.clone(), stop.clone(), polls.clone());
        let t1 = std::thread::spawn(move || {
            let m = c1.attach();
            while !s1.load(Ordering::Relaxed) {
                if c1.requested() {
                    c1.park();
                    p1.fetch_add(1, Ordering::Relaxed);
                }
                std::hint::spin_loop();
            }
            c1.detach(&m);
        });
        let (c2, r2) = (c.clone(), blocked_ready.clone());
        let t2 = std::thread::spawn(move || {
            let m = c2.attach();
            c2.enter_blocking();
            r2.store(true, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));
            c2.leave_blocking();
            c2.detach(&m);
        });
        while c.attached() < 3 || !blocked_ready.load(Ordering::Relaxed) {
            std::thread::yield_now();
        }
        {
            let mut w = c.stop_the_world().expect("no concurrent collector");
            let mut n = 0;
            w.for_each_mutator(|_| n += 1);
            assert_eq!(n, 3);
        }
        stop.store(true, Ordering::Relaxed);
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        c.detach(&me);
        assert_eq!(c.attached(), 0);
    }

    #[test]
    fn a_panicking_mutator_does_not_wedge_the_collector() {
        let c = Arc::new(Coordinator::default());
        let me = c.attach();
        let c1 = c.clone();
        let r = std::thread::spawn(move || {
            struct Detach(Arc<Coordinator>, Arc<MutatorShared>);
            impl Drop for Detach {
                fn drop(&mut self) {
                    self.0.detach(&self.1);
                }
            }
            let _g = Detach(c1.clone(), c1.attach());
            panic!("mutator bug");
        })
        .join();
        assert!(r.is_err());
        assert!(c.stop_the_world().is_some());
        c.detach(&me);
    }
}
