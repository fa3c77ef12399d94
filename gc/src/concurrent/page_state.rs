//! The page state machine of a concurrent compaction: one atomic byte per
//! to-space page, so that every page is compacted exactly once, by a GC
//! thread or by a faulting mutator, whichever claims it first.
//!
//! ```text
//!                 CAS (GC thread)             store          CAS (GC thread, or a    ioctl ok
//!  Unprocessed ─────────────────► GcClaimed ───────► Compacted ───────────────► Mapping ─────────► Mapped
//!                                                               faulting mutator)
//!       │                                                                   ▲
//!       │ CAS (faulting mutator / fault-handler thread)                     │ store
//!       └──────────────────────► MutatorClaimed ────────────────────────────┘
//! ```
//!
//! | state | meaning | who moves it on |
//! |---|---|---|
//! | `Unprocessed` (0) | to-space page missing, nobody working on it | whoever wins the CAS |
//! | `GcClaimed` | a GC thread is compacting it into a recycled from-space page or its buffer | that GC thread |
//! | `MutatorClaimed` | a fault resolver is compacting it into its stack buffer | that resolver |
//! | `Compacted` | bytes ready in a GC buffer, waiting for the batch's one ioctl | that GC thread, or a faulting mutator that installs it itself by COPY from the GC's buffer (the batch's MOVE then leaves it out) |
//! | `Mapping` | the ioctl that installs it is in flight | the installer |
//! | `Mapped` | installed; accesses no longer fault | terminal |
//!
//! Orderings: claims are `AcqRel` CAS (the winner must see the cycle's
//! metadata, published before the flip); `Mapped` is stored with `Release`
//! after the ioctl returns and read with `Acquire`, so a thread that sees
//! `Mapped` also sees the page. The kernel makes the install itself atomic:
//! a second installer of the same page gets `EEXIST`, which the installers
//! treat as success, so a lost race can never install twice. A resolver
//! that finds the page claimed by someone else waits with bounded back-off
//! (`wait_mapped`); in handler-thread mode it need not wait at all, because
//! the installing ioctl wakes every thread blocked on the page.

use super::sync::{self, AtomicU8, Ordering};
use std::time::Duration;

/// The state of one to-space page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageState {
    /// Missing, unclaimed. Must be 0 so a zeroed array is all-unprocessed.
    Unprocessed = 0,
    /// A GC thread is compacting it.
    GcClaimed = 1,
    /// A fault resolver is compacting it.
    MutatorClaimed = 2,
    /// Compacted into a GC buffer, not yet installed.
    Compacted = 3,
    /// Being installed.
    Mapping = 4,
    /// Installed.
    Mapped = 5,
}

impl PageState {
    fn from_u8(v: u8) -> PageState {
        match v {
            0 => PageState::Unprocessed,
            1 => PageState::GcClaimed,
            2 => PageState::MutatorClaimed,
            3 => PageState::Compacted,
            4 => PageState::Mapping,
            _ => PageState::Mapped,
        }
    }
}

/// Who claims a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimant {
    /// A GC compaction thread.
    Gc,
    /// A faulting mutator (SIGBUS mode) or the fault-handler thread.
    Mutator,
}

/// One state byte per to-space page.
#[derive(Debug)]
pub struct PageStates {
    states: Box<[AtomicU8]>,
}

impl PageStates {
    /// `n` pages, all `Unprocessed`.
    pub fn new(n: usize) -> PageStates {
        PageStates {
            states: (0..n).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// Number of pages.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether there are no pages.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Current state of page `p`.
    #[inline]
    pub fn get(&self, p: usize) -> PageState {
        PageState::from_u8(self.states[p].load(Ordering::Acquire))
    }

    /// `Unprocessed → GcClaimed | MutatorClaimed`. True if this caller won
    /// and must now compact and install the page.
    #[inline]
    pub fn claim(&self, p: usize, who: Claimant) -> bool {
        let to = match who {
            Claimant::Gc => PageState::GcClaimed,
            Claimant::Mutator => PageState::MutatorClaimed,
        };
        self.states[p]
            .compare_exchange(
                PageState::Unprocessed as u8,
                to as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// `GcClaimed → Compacted`: the bytes are in the GC's buffer.
    #[inline]
    pub fn compacted(&self, p: usize) {
        debug_assert_eq!(self.get(p), PageState::GcClaimed);
        self.states[p].store(PageState::Compacted as u8, Ordering::Release);
    }

    /// `Compacted → Mapping` by CAS: the caller (the GC thread that
    /// compacted it, or a faulting mutator taking over its installation)
    /// installs the page. False if someone else took it first.
    #[inline]
    pub fn take_compacted(&self, p: usize) -> bool {
        self.states[p]
            .compare_exchange(
                PageState::Compacted as u8,
                PageState::Mapping as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// `MutatorClaimed → Mapping`: the installing ioctl is next.
    #[inline]
    pub fn mapping(&self, p: usize) {
        // On the fault path: no panic, even in debug builds.
        if cfg!(debug_assertions)
            && !matches!(
                self.get(p),
                PageState::Compacted | PageState::MutatorClaimed
            )
        {
            super::fatal::fatal("page_state: mapping() of a page nobody claimed");
        }
        self.states[p].store(PageState::Mapping as u8, Ordering::Release);
    }

    /// `Mapping → Mapped`: installed (also after `EEXIST`).
    #[inline]
    pub fn mapped(&self, p: usize) {
        self.states[p].store(PageState::Mapped as u8, Ordering::Release);
    }

    /// Waits until page `p` is `Mapped`, with bounded back-off: a few spins,
    /// then `sched_yield`, then sleeps growing from 10 µs to 1 ms. Only
    /// async-signal-safe calls are used (it runs in the SIGBUS handler).
    pub fn wait_mapped(&self, p: usize) {
        let mut round = 0u32;
        while self.get(p) != PageState::Mapped {
            round += 1;
            if round < 32 {
                sync::spin_loop();
            } else if round < 40 {
                sync::yield_now();
            } else {
                let us = (10u64 << (round - 40).min(7)).min(1000);
                sync::sleep(Duration::from_micros(us));
            }
        }
    }

    /// Puts every page back to `Unprocessed`, for the next cycle (which
    /// reuses the table instead of allocating one in its pause).
    pub(crate) fn reset(&mut self) {
        for s in self.states.iter() {
            s.store(0, Ordering::Relaxed);
        }
    }

    /// Number of pages in state `s` (diagnostics and tests).
    pub fn count(&self, s: PageState) -> usize {
        (0..self.len()).filter(|&p| self.get(p) == s).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn exactly_one_claimant_wins() {
        let s = Arc::new(PageStates::new(10_000));
        let wins: Vec<usize> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let who = if t % 2 == 0 {
                        Claimant::Gc
                    } else {
                        Claimant::Mutator
                    };
                    (0..s.len()).filter(|&p| s.claim(p, who)).count()
                })
            })
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(wins.iter().sum::<usize>(), 10_000);
        assert_eq!(s.count(PageState::Unprocessed), 0);
    }

    #[test]
    fn transitions_and_waiting() {
        let s = Arc::new(PageStates::new(2));
        assert!(s.claim(0, Claimant::Gc));
        assert!(!s.claim(0, Claimant::Mutator));
        s.compacted(0);
        s.mapping(0);
        let s2 = s.clone();
        let waiter = std::thread::spawn(move || s2.wait_mapped(0));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished());
        s.mapped(0);
        waiter.join().unwrap();
        assert_eq!(s.get(0), PageState::Mapped);
        assert!(s.claim(1, Claimant::Mutator));
        s.mapping(1);
        s.mapped(1);
        assert_eq!(s.count(PageState::Mapped), 2);
    }
}
