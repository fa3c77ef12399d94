//! The dense prefix during a concurrent cycle: the pages at the bottom of
//! the moving space whose objects do not move keep their bytes and their
//! physical pages. The flip moves them out with the rest of the space (one
//! mremap of the whole reservation, which keeps the heap one VMA); after it
//! each prefix page has its reference slots rewritten *in its from-space
//! page* ([`Compactor::update_dense_page`](crate::compact::Compactor), which
//! also covers dead gaps with fillers) and comes back through the same page
//! states as a compacted page:
//!
//! ```text
//!  phase 1 (GC threads, runs of 512 pages)     phase 2 (after a barrier)
//!  claim ─► fix in the from-space ─► Compacted ─► UFFDIO_MOVE the run back ─► Mapped
//!                                        │         (EBUSY: COPY that page)
//!  fault resolver:                       └──────► take it: UFFDIO_COPY ──────► Mapped
//!  claim ─► fix in the from-space ─► Mapping ─► UFFDIO_COPY ───────────────► Mapped
//! ```
//!
//! Why two phases: fixing page `p` reads the header of the object that
//! crosses into `p`, which may start on an earlier page `q`. A MOVE takes
//! `q`'s physical page out of the from-space (reading there afterwards
//! yields zeros), so no prefix page may be moved before every prefix page
//! has been fixed. Phase 1 claims and fixes every page nobody has claimed
//! yet; then [`CycleShared::prefix_quiesce`] waits until no fault resolver
//! is still fixing one (resolvers install by COPY, which leaves the
//! from-space page in place); only then does phase 2 move runs of pages
//! back. From phase 2 on no prefix page is unclaimed, so nobody reads a
//! prefix header any more. The compaction of the pages after the prefix
//! reads one prefix header, that of the object crossing the prefix's end;
//! it is saved in the pause (`CycleShared::boundary_header`).
//!
//! A page whose references all stay the same is not written at all, so
//! after `fork` it is still shared with the parent when its MOVE is tried:
//! the kernel refuses to move a shared page (`EBUSY`) and it is copied.
//!
//! **The black block** stays too. Everything allocated while the cycle
//! marked is live by position and lies at the top of the old space from a
//! page boundary (the initial pause aligns the top). It keeps its
//! addresses, so a reference into it does not change; the only slots of
//! it that do are those a mutator gave a reference to an older object
//! while the heap marked, and the barrier set a bit for each of them
//! (`satb::SatbLog::note_store`). A black page is fixed in its from-space
//! page by rewriting those slots ([`Compactor::update_black_page`]; most
//! pages have none and are not read at all) and goes back to the same
//! address. Its fixer reads nothing but the page and its bits, so black
//! pages need no second phase: GC threads put them back first, a run of
//! 512 by one MOVE as soon as it is fixed ([`CycleShared::install_black`]).
//! When the block has few dirty slots (`HeapConfig::pause_black_slots`,
//! listed by the barrier) it is not flipped at all: the flip moves out the
//! ranges below and above it, the final pause rewrites those slots in
//! place ([`CycleShared::fix_black_in_pause`]) and its pages stay present,
//! never claimed (a page missing at the flip, an unused TLAB tail, is
//! zero-filled if touched).
//! Between the compacted data and the block lies a hole, allocation
//! region like the pages above the block, which mutators allocate into
//! first (`space::MovingSpace::set_hole`).
//!
//! ```text
//!  old space:  [ prefix | old region (compacted)        | black block   ]
//!  to-space:   [ prefix | compacted | hole (allocation) | black block   | allocation ...
//!                                   ^ old_pages          ^ black_first: the same pages
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

use super::page_state::{Claimant, PageState};
use super::{take_runs, CycleShared, InstallMode, BLOCK_PAGES};
#[allow(unused_imports)] // named in the module docs
use crate::compact::Compactor;
use crate::mapping::PAGE_SIZE;

impl CycleShared {
    /// Dense-prefix pages fixed in place after the flip: those that were
    /// flipped (above the kept ones).
    pub(crate) fn in_place_pages(&self) -> usize {
        self.dense_pages - self.kept_pages
    }

    /// The to-space page of the `i`-th prefix page fixed in place.
    fn in_place_page(&self, i: usize) -> usize {
        self.kept_pages + i
    }

    /// Whether to-space page `p` is fixed in place after the flip (a
    /// flipped prefix page or a black-block page).
    #[inline]
    pub(super) fn in_place(&self, p: usize) -> bool {
        (p >= self.kept_pages && p < self.dense_pages) || (!self.black_resident && self.in_black(p))
    }

    /// Fixes the kept old pages a young cycle's mutators wrote since the
    /// last cycle, in place in the to-space (world stopped, before the
    /// mutators resume: they read those pages directly). The others refer
    /// to old objects only. A full cycle keeps only pages that need no fix
    /// (`crate::clean`).
    pub(crate) fn fix_kept(&self) {
        if self.old_dirty.is_none() {
            return;
        }
        let mut comp = self.compactor();
        comp.prefix_start = self.space_start;
        for p in 0..self.kept_pages {
            comp.update_dense_page(p, self.marks.words());
        }
    }

    /// Rewrites the dirty slots of a resident black block (one the flip
    /// left in place) in the to-space: those of `pages` (the barrier's
    /// list, `satb::SatbLog::dirty_black_pages`; what follows the block
    /// on its last page was zeroed before the flip). World stopped, before
    /// the mutators resume (they read those pages directly).
    pub(crate) fn fix_black_in_pause(&self, pages: &[usize]) {
        debug_assert!(self.black_resident);
        let mut comp = self.compactor();
        comp.prefix_start = self.space_start;
        let (mut dirty, mut slots) = (0, 0);
        for &p in pages {
            debug_assert!(self.in_black(p), "{p}");
            if self.in_black(p) {
                let n = comp.update_black_page(p, self.dirty.page_bits(p));
                (dirty, slots) = (dirty + (n > 0) as usize, slots + n);
            }
        }
        self.count_black(0, dirty, slots);
    }

    /// The from-space address of in-place to-space page `p` (the same
    /// page: neither the prefix nor the black block moves).
    fn in_place_src(&self, p: usize) -> usize {
        self.from_start + p * PAGE_SIZE
    }

    /// Fixes in-place page `p` (claimed by the caller) in its from-space
    /// page and returns that page's address, from where it is installed.
    /// No allocation, no lock: fault path.
    pub(super) fn fix_in_place(&self, p: usize) -> usize {
        if p < self.dense_pages {
            // A clean page is left as it was (`Compactor::clean`).
            let counter = match self.compactor().update_dense_page(p, self.marks.words()) {
                true => &self.counters.prefix_pages,
                false => &self.counters.prefix_unread,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            let n = self
                .compactor()
                .update_black_page(p, self.dirty.page_bits(p));
            self.count_black(1, (n > 0) as usize, n);
        }
        self.in_place_src(p)
    }

    /// Adds black pages put back, those of them that were dirty and the
    /// slots rewritten to the counters.
    fn count_black(&self, pages: usize, dirty: usize, slots: usize) {
        if pages > 0 {
            self.counters
                .black_pages
                .fetch_add(pages, Ordering::Relaxed);
        }
        if dirty > 0 {
            self.counters
                .black_dirty_pages
                .fetch_add(dirty, Ordering::Relaxed);
            self.counters
                .black_slots
                .fetch_add(slots, Ordering::Relaxed);
        }
    }

    /// The black block, one GC thread's share: takes runs of
    /// [`BLOCK_PAGES`] of its pages from `next`, fixes every page of a run
    /// it can claim (only its dirty slots: most pages are not read at all)
    /// and puts them back at once, by MOVE in MOVE mode, else by COPY.
    /// Unlike the prefix's, a black page's fixer reads nothing but the
    /// page itself and the barrier's bits, so nothing waits for a second
    /// phase. Returns when every page of every run it took is mapped.
    pub(crate) fn install_black(&self, next: &AtomicUsize) {
        let mut runs = Vec::with_capacity(BLOCK_PAGES);
        let comp = self.compactor();
        take_runs(next, self.black_flipped_pages(), |run| {
            runs.clear();
            let (mut dirty, mut slots) = (0, 0);
            for i in run.clone() {
                let p = self.black_first + i;
                if self.states.claim(p, Claimant::Gc) {
                    let n = comp.update_black_page(p, self.dirty.page_bits(p));
                    (dirty, slots) = (dirty + (n > 0) as usize, slots + n);
                    let src = self.in_place_src(p);
                    self.srcs[p].store(src, Ordering::Release);
                    self.states.compacted(p);
                    runs.push((p, src));
                }
            }
            self.count_black(runs.len(), dirty, slots);
            self.install_runs(&runs, self.install == InstallMode::Move);
            for i in run {
                self.states.wait_mapped(self.black_first + i);
            }
        });
    }

    /// Phase 1, one GC thread's share: takes runs of [`BLOCK_PAGES`]
    /// in-place pages from `next` and fixes every page of them it can
    /// claim, leaving it `Compacted` (installable by a faulting mutator from
    /// then on).
    pub(crate) fn fix_prefix(&self, next: &AtomicUsize) {
        take_runs(next, self.in_place_pages(), |run| {
            for i in run {
                let p = self.in_place_page(i);
                if self.states.claim(p, Claimant::Gc) {
                    let src = self.fix_in_place(p);
                    self.srcs[p].store(src, Ordering::Release);
                    self.states.compacted(p);
                }
            }
        });
    }

    /// Between the phases (after every GC thread finished phase 1): waits
    /// until no in-place page is being fixed by a fault resolver, so that
    /// moving pages out of the from-space cannot pull a header from under
    /// a fixer. Resolvers finish a page in microseconds.
    pub(crate) fn prefix_quiesce(&self) {
        for i in 0..self.in_place_pages() {
            let p = self.in_place_page(i);
            let mut round = 0u32;
            loop {
                match self.states.get(p) {
                    PageState::MutatorClaimed => {}
                    PageState::Unprocessed | PageState::GcClaimed => {
                        // Phase 1 claimed every page nobody else had.
                        crate::concurrent::fatal::fatal(
                            "prefix_quiesce: an in-place page was left unclaimed",
                        )
                    }
                    _ => break,
                }
                round += 1;
                if round < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Phase 2, one GC thread's share: takes runs of [`BLOCK_PAGES`]
    /// in-place pages from `next` and installs those still `Compacted` from
    /// their from-space pages, by MOVE in MOVE mode (the same physical pages
    /// go back; a 2 MiB-aligned run of a huge page moves as one PMD), else
    /// by COPY. Returns when every page of every run it took is mapped.
    pub(crate) fn install_prefix(&self, next: &AtomicUsize) {
        let mut runs = Vec::with_capacity(BLOCK_PAGES);
        take_runs(next, self.in_place_pages(), |run| {
            runs.clear();
            runs.extend(run.map(|i| {
                let p = self.in_place_page(i);
                (p, self.in_place_src(p))
            }));
            self.install_runs(&runs, self.install == InstallMode::Move);
            for &(p, _) in &runs {
                self.states.wait_mapped(p);
            }
        });
    }
}
