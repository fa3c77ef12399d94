//! The snapshot-at-the-beginning (SATB) write barrier of concurrent
//! marking.
//!
//! While a heap marks concurrently, every reference store into one of its
//! objects first logs the value it overwrites. Everything reachable when
//! marking started is then either still reachable along the path marking
//! follows or was on a path some store broke, and that store logged it
//! (Yuasa; the invariant of G1 and ART's concurrent copying collector).
//! Objects allocated during marking are black by position: everything at
//! or above the mark-start top is treated as live (see `cycle.rs`), so
//! their fields need no scanning.
//!
//! The barrier lives in [`ObjRef::store_ref`](crate::ObjRef::store_ref),
//! which knows only the object's address, so queues are found through a
//! process-wide registry (as the SIGBUS registry finds heaps): [`active`] is
//! one relaxed load, non-zero only while some heap marks; then [`log`]
//! routes the old value to the queue of the marking heap whose moving space
//! holds the written object, or (a large object lives outside every moving
//! space) to every marking heap, each of which ignores values that are not
//! its own. Queues are leaked, never freed: a mutator of another heap may
//! still be inside [`log`] when a heap is dropped, and a few KiB per heap
//! ever created is the price of never dangling.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crossbeam_deque::{Injector, Steal};

/// Heaps that can mark concurrently at the same time.
const SLOTS: usize = 64;

/// Number of heaps marking now.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// The queues of the heaps marking now.
static QUEUES: [AtomicPtr<SatbQueue>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

/// One heap's log of overwritten references.
pub struct SatbQueue {
    start: usize,
    end: usize,
    values: Injector<usize>,
    slot: AtomicUsize,
}

impl std::fmt::Debug for SatbQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SatbQueue({:#x}..{:#x})", self.start, self.end)
    }
}

impl SatbQueue {
    /// The (leaked, see the module docs) queue of the heap whose moving
    /// space is `[start, end)`.
    pub fn new_static(start: usize, end: usize) -> &'static SatbQueue {
        Box::leak(Box::new(SatbQueue {
            start,
            end,
            values: Injector::new(),
            slot: AtomicUsize::new(usize::MAX),
        }))
    }

    /// Turns the barrier on for this heap. Called with the heap's world
    /// stopped, so its mutators see it when they resume. `false` if all
    /// registry slots are taken (the caller then marks in the pause).
    pub fn activate(&'static self) -> bool {
        let me = self as *const SatbQueue as *mut SatbQueue;
        for (i, s) in QUEUES.iter().enumerate() {
            if s.compare_exchange(
                std::ptr::null_mut(),
                me,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
            {
                self.slot.store(i, Ordering::Relaxed);
                ACTIVE.fetch_add(1, Ordering::AcqRel);
                return true;
            }
        }
        false
    }

    /// Turns the barrier off for this heap (world stopped).
    pub fn deactivate(&self) {
        let i = self.slot.swap(usize::MAX, Ordering::Relaxed);
        if i < SLOTS {
            QUEUES[i].store(std::ptr::null_mut(), Ordering::Release);
            ACTIVE.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Takes every value logged so far.
    pub fn take_all(&self) -> Vec<usize> {
        let mut v = Vec::new();
        loop {
            match self.values.steal() {
                Steal::Success(x) => v.push(x),
                Steal::Empty => return v,
                Steal::Retry => continue,
            }
        }
    }
}

/// Whether any heap is marking concurrently (one relaxed load: the
/// barrier's fast path).
#[inline(always)]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed) != 0
}

/// Logs `old`, a reference just overwritten in the object at `obj`, for
/// the marking heap(s) it may belong to.
#[cold]
#[inline(never)]
pub fn log(obj: usize, old: usize) {
    let queues = || {
        QUEUES.iter().filter_map(|s| {
            let p = s.load(Ordering::Acquire);
            // SAFETY: registered queues are leaked ('static): the pointer
            // stays valid forever, whether or not it is still registered.
            (!p.is_null()).then(|| unsafe { &*p })
        })
    };
    if let Some(q) = queues().find(|q| (q.start..q.end).contains(&obj)) {
        q.values.push(old);
        return;
    }
    for q in queues() {
        q.values.push(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_space_and_broadcasts_the_rest() {
        let a = SatbQueue::new_static(0x1000_0000, 0x2000_0000);
        let b = SatbQueue::new_static(0x3000_0000, 0x4000_0000);
        assert!(a.activate());
        assert!(active());
        log(0x1000_0040, 11); // an object of heap a
        assert!(b.activate());
        log(0x3000_0000, 22); // an object of heap b
        log(0x9000_0000, 33); // a large object: both get it
        assert_eq!(a.take_all(), vec![11, 33]);
        assert_eq!(b.take_all(), vec![22, 33]);
        a.deactivate();
        log(0x1000_0040, 44); // a no longer marks: only b (broadcast)
        assert_eq!(a.take_all(), Vec::<usize>::new());
        assert_eq!(b.take_all(), vec![44]);
        b.deactivate();
        b.deactivate(); // idempotent
    }
}
