//! Kernel-tracked dirty pages: the write-protect remembered-set builder
//! ([`RememberedSet::WriteProtect`](crate::generation::RememberedSet)).
//! Between cycles the old region is write-protected through the heap's
//! userfaultfd, opened with `UFFD_FEATURE_WP_ASYNC`: the first write to an
//! old page costs one minor fault that the kernel resolves itself (no
//! message, no handler), marking the page written. A cycle reads the
//! written pages with `PAGEMAP_SCAN` (`uffd::pagemap`) and ORs them into
//! the card table, which the rest of the collector reads as before. The
//! reference-store barrier marks cards only while a cycle runs.
//!
//! ```text
//!             cycle n ends                 cycle n+1             cycle n+1 ends
//!  barrier:   on ──┐ off ....................┌ on ─────────────────────┐ off
//!  old pages:      └ protect [old]           │                         └ protect [old']
//!  mutator writes:   first write per page:   │  cards (the flip moves
//!                    a minor fault, the      │  pages out and MOVE/COPY
//!                    kernel marks it written │  installs them writable)
//!  collector:                     initial pause ─ scan (PAGEMAP_SCAN): written
//!                                 pages → cards; final pause: cards → fix list
//! ```
//!
//! Why the barrier still runs during a cycle: the flip moves every page of
//! the space out and `UFFDIO_MOVE`/`UFFDIO_COPY` install them back writable
//! (a moved page has no write-protect bit), so from the flip until the old
//! region is protected again the kernel cannot tell written pages from
//! installed ones. Writes in that window go to cards, which survive the
//! protection. The order at the end matters: protect, then turn the
//! barrier off (`CardTable::set_active`); a mutator that sees it off
//! stores into a protected page. At the start, the barrier goes on in the
//! initial pause and the scan runs after it: every write is either before
//! the pause (the scan sees it) or after (a card).
//!
//! Registration: the whole reservation is registered `WP` between cycles
//! and `MISSING | WP` from the flip to the end of the compaction (one
//! userfaultfd context per VMA). Registering `WP` over `MISSING | WP` is a
//! no-op in the kernel (the range already has both flags), so the end of a
//! cycle unregisters and registers `WP` again (`gc/tests/wp_async.rs`
//! checks these kernel behaviours live). Once a concurrent cycle has its
//! scan (barrier on), the range is unregistered while mutators run, so the
//! flip's `mremap` is not slowed down by the registration
//! ([`WriteTracker::unregister`]).
//!
//! Fork: a child inherits no registration (its VMAs lose the parent's
//! userfaultfd and their write-protect bits), and `PAGEMAP_SCAN` with
//! `PM_SCAN_CHECK_WPASYNC` refuses an unregistered range. Until a cycle
//! of the child's own protects the old region, the tracker is not *armed*
//! in that process and a young cycle treats every old page as written.
//!
//! Any failure (an ioctl refused) falls back to cards for good, said once:
//! the barrier stays on, and what the failed step would have reported is
//! marked conservatively (every old page dirty).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::concurrent::support::warn_once;
use crate::generation::CardTable;
use crate::uffd::pagemap::Pagemap;
use crate::uffd::{RegisterMode, Uffd, UffdError};

/// The write-protect builder's state for one heap.
#[derive(Debug)]
pub(crate) struct WriteTracker {
    /// The reservation (moving space and arena): the registered range.
    start: usize,
    len: usize,
    /// Still in use (false after a failure: cards from then on).
    on: AtomicBool,
    /// The process whose cycle last protected the old region (0: none).
    armed: AtomicU32,
    /// The process that registered the reservation `WP` and has not
    /// unregistered it yet (0: none).
    registered: AtomicU32,
}

/// What [`WriteTracker::begin`] found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Scan {
    /// Pages reported written (or assumed written: not armed).
    pub(crate) pages: usize,
    /// The `PAGEMAP_SCAN` walk.
    pub(crate) time: Duration,
    /// Every page was taken as written without a scan (not armed in this
    /// process, or the scan failed).
    pub(crate) assumed: bool,
}

static WARN_WP_FAILED: AtomicBool = AtomicBool::new(false);

impl WriteTracker {
    /// A tracker for the reservation `[start, start + len)`, not armed.
    pub(crate) fn new(start: usize, len: usize) -> WriteTracker {
        WriteTracker {
            start,
            len,
            on: AtomicBool::new(true),
            armed: AtomicU32::new(0),
            registered: AtomicU32::new(0),
        }
    }

    /// Whether the kernel tracks writes (no failure so far).
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Whether this process's old region is protected by this process's
    /// userfaultfd (see the module doc on fork).
    fn armed_here(&self) -> bool {
        self.armed.load(Ordering::Acquire) == std::process::id()
    }

    /// The start of a young cycle, after the pause that turned the card
    /// barrier on: marks in `cards` every page of `ranges` (page-aligned)
    /// written since the old region was last protected, or every page if
    /// the tracker is not armed in this process or the scan fails.
    pub(crate) fn begin(&self, cards: &CardTable, ranges: &[(usize, usize)]) -> Scan {
        let t = Instant::now();
        let mut pages = 0;
        let all = |pages: &mut usize| {
            for &(lo, hi) in ranges {
                cards.set_range(lo, hi);
                *pages += (hi - lo) / crate::mapping::PAGE_SIZE;
            }
        };
        if !self.is_on() || !self.armed_here() {
            all(&mut pages);
            return Scan {
                pages,
                time: t.elapsed(),
                assumed: true,
            };
        }
        let mut out = Vec::new();
        let scanned = Pagemap::open().and_then(|pm| {
            ranges
                .iter()
                .filter(|(lo, hi)| hi > lo)
                .try_for_each(|&(lo, hi)| pm.written(lo, hi, &mut out))
        });
        let mut assumed = false;
        match scanned {
            Ok(()) => {
                for (lo, hi) in out {
                    cards.set_range(lo, hi);
                    pages += (hi - lo) / crate::mapping::PAGE_SIZE;
                }
            }
            Err(e) => {
                self.fail(cards, &e);
                pages = 0;
                all(&mut pages);
                assumed = true;
            }
        }
        Scan {
            pages,
            time: t.elapsed(),
            assumed,
        }
    }

    /// The end of a cycle (every page of the space mapped, the range not
    /// registered `MISSING` any more; mutators may run): registers the
    /// reservation `WP` with this process's `uffd`, protects `ranges` (the
    /// old region and the arena's used part), arms the tracker and turns
    /// the card barrier off. On failure the barrier stays on for good.
    /// Returns the time taken.
    pub(crate) fn end(
        &self,
        uffd: &Uffd,
        cards: &CardTable,
        ranges: &[(usize, usize)],
    ) -> Duration {
        let t = Instant::now();
        if !self.is_on() {
            return t.elapsed();
        }
        let done = (|| {
            uffd.register(self.start, self.len, RegisterMode::WP)?;
            // Registered from here on, even if protecting fails: the next
            // flip must unregister it (see `unregister`).
            self.registered.store(std::process::id(), Ordering::Release);
            for &(lo, hi) in ranges.iter().filter(|(lo, hi)| hi > lo) {
                uffd.writeprotect(lo, hi - lo, true, false)?;
            }
            Ok::<(), UffdError>(())
        })();
        match done {
            Ok(()) => {
                self.registered.store(std::process::id(), Ordering::Release);
                self.armed.store(std::process::id(), Ordering::Release);
                // After the protection: see the module doc.
                cards.set_active(false);
            }
            Err(e) => self.fail(cards, &e),
        }
        t.elapsed()
    }

    /// Unregisters the reservation once this cycle no longer needs the
    /// kernel's tracking (its scan is done and the card barrier is on), so
    /// that the flip's `mremap` moves page-table pages whole: since Linux
    /// 6.13 it moves a range registered with userfaultfd (without
    /// `EVENT_REMAP`) one PTE at a time, ~40 ns per resident page inside the
    /// pause. Unregistering clears the write-protect bits (a walk of the
    /// resident pages, here while mutators run). Returns the time taken.
    pub(crate) fn unregister(&self, uffd: &Uffd, cards: &CardTable) -> Duration {
        let t = Instant::now();
        let me = std::process::id();
        if self.registered.load(Ordering::Acquire) == me {
            match uffd.unregister(self.start, self.len) {
                Ok(()) => self.registered.store(0, Ordering::Release),
                Err(e) => self.fail(cards, &e),
            }
        }
        t.elapsed()
    }

    /// Falls back to cards for good (also when this process's descriptor
    /// cannot be opened): the barrier stays on.
    pub(crate) fn fail(&self, cards: &CardTable, e: &UffdError) {
        cards.set_active(true);
        self.on.store(false, Ordering::Release);
        warn_once(
            &WARN_WP_FAILED,
            &format!(
                "kernel dirty tracking failed ({e}); young collections use the card barrier from now on"
            ),
        );
    }
}
