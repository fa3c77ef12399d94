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
//! The barrier belongs to the mutator: it lives in
//! [`MutatorContext::store_ref`](crate::MutatorContext::store_ref), the only
//! way to write a reference into an object. Its fast path is one relaxed
//! load of the heap's own [`SatbLog::marking`] flag; other heaps marking
//! cost it nothing. Logged values go to a buffer in the mutator's own state
//! ([`SatbBuffer`], no synchronisation); a full buffer is handed to the
//! heap's shared queue, which the marker drains while mutators run. The
//! final pause takes what is left in every mutator's buffer (the world is
//! stopped, so the collector may read them), and a mutator that detaches
//! hands its buffer over first.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_deque::{Injector, Steal};

/// Logged values a mutator buffers before handing them to the heap.
pub const BUFFER_LEN: usize = 256;

/// One heap's SATB state: whether it marks, the queue of full buffers,
/// and where the blocks (TLABs) handed out while it marks begin.
#[derive(Default)]
pub struct SatbLog {
    marking: AtomicBool,
    queue: Injector<Vec<usize>>,
    /// Start addresses of the moving-space blocks handed out while the
    /// heap marks: they cut the black block into runs of objects back to
    /// back, each run ending at its first zero word (an unused TLAB tail),
    /// so the black block can be walked from any block without the final
    /// pause walking it (see `concurrent::prefix`).
    blocks: Injector<usize>,
}

impl std::fmt::Debug for SatbLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SatbLog")
            .field("marking", &self.is_marking())
            .finish()
    }
}

impl SatbLog {
    /// Whether the barrier is on (one relaxed load: its fast path). The
    /// flag changes only with the world stopped, so a running mutator sees
    /// the value of the last pause (the coordinator's lock orders them).
    #[inline(always)]
    pub fn is_marking(&self) -> bool {
        self.marking.load(Ordering::Relaxed)
    }

    /// Turns the barrier on or off. World stopped.
    pub(crate) fn set_marking(&self, on: bool) {
        self.marking.store(on, Ordering::Relaxed);
    }

    /// Hands a mutator's buffer over to the marker.
    pub(crate) fn publish(&self, buf: &mut SatbBuffer) {
        if !buf.0.is_empty() {
            self.queue.push(std::mem::replace(
                &mut buf.0,
                Vec::with_capacity(BUFFER_LEN),
            ));
        }
    }

    /// Records the start of a moving-space block handed out while the heap
    /// marks (no-op otherwise).
    pub(crate) fn record_block(&self, start: usize) {
        if self.is_marking() {
            self.blocks.push(start);
        }
    }

    /// Takes the block starts recorded so far, in ascending order.
    pub(crate) fn take_blocks(&self) -> Vec<usize> {
        let mut v = Vec::new();
        loop {
            match self.blocks.steal() {
                Steal::Success(b) => v.push(b),
                Steal::Empty => break,
                Steal::Retry => continue,
            }
        }
        v.sort_unstable();
        v
    }

    /// Takes every value handed over so far.
    pub(crate) fn take_all(&self) -> Vec<usize> {
        let mut v = Vec::new();
        loop {
            match self.queue.steal() {
                Steal::Success(b) => v.extend(b),
                Steal::Empty => return v,
                Steal::Retry => continue,
            }
        }
    }
}

/// A mutator's private log of overwritten references.
#[derive(Debug, Default)]
pub struct SatbBuffer(Vec<usize>);

impl SatbBuffer {
    /// Logs `old`; hands the buffer to `log` when it is full.
    #[inline]
    pub(crate) fn push(&mut self, old: usize, log: &SatbLog) {
        self.0.push(old);
        if self.0.len() >= BUFFER_LEN {
            log.publish(self);
        }
    }

    /// Takes the buffered values (world stopped, or the owner).
    pub(crate) fn take(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_buffers_reach_the_queue_and_the_rest_stays_private() {
        let log = SatbLog::default();
        assert!(!log.is_marking());
        log.set_marking(true);
        assert!(log.is_marking());
        let mut b = SatbBuffer::default();
        for v in 1..=(BUFFER_LEN + 3) {
            b.push(v, &log);
        }
        let queued = log.take_all();
        assert_eq!(queued, (1..=BUFFER_LEN).collect::<Vec<_>>());
        assert_eq!(
            b.take(),
            vec![BUFFER_LEN + 1, BUFFER_LEN + 2, BUFFER_LEN + 3]
        );
        log.publish(&mut b); // empty: nothing queued
        assert!(log.take_all().is_empty());
    }
}
