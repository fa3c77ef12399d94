//! The large-object arena during a concurrent cycle: large objects with
//! references are not moved, but their references must be rewritten, and
//! that happens after the flip, page by page, instead of in the pause.
//!
//! The flip moves the arena out with the moving space (one mremap of the
//! whole reservation) and registers it. A live arena object's page then
//! comes back exactly like a compacted page, through the same page states
//! (`page_state`): whoever claims it (a GC thread sweeping the arena, or a
//! mutator's fault resolver) rewrites the reference slots that lie in the
//! page *in the from-space page itself* (no copy: the page keeps its
//! bytes), and the page is installed from there: by `UFFDIO_MOVE` (GC
//! threads, runs of consecutive pages; the same physical page goes back),
//! or by `UFFDIO_COPY` (fault resolvers, the COPY baseline, and `EBUSY`
//! after `fork`). Arena pages no live object covers (free ranges, objects
//! that died, objects allocated since the flip) are zero-filled on first
//! touch, one page at a time. So the pause costs O(arena objects), not
//! O(references), and one huge array is updated by every GC thread.
//!
//! ```text
//!  page index p:  [0, npages)              compacted moving-space pages
//!                 [npages, npages + pages) arena pages of live objects,
//!                                          in address order (ArenaPages)
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

use super::page_state::Claimant;
use super::{take_runs, CycleShared, InstallMode, BLOCK_PAGES};
use crate::mapping::PAGE_SIZE;
use crate::object::{load_word, WORD};

/// A live arena object of one cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArenaObj {
    /// Its address (page-aligned).
    pub addr: usize,
    /// Its pages.
    pub pages: usize,
    /// One past its last reference slot (`addr + 8 + 8 * refs`).
    pub slots_end: usize,
    /// Index of its first page among the cycle's arena pages.
    pub first: usize,
}

/// The live arena objects of a cycle, in address order, and the index of
/// their pages. Built in the flip pause from the large-object table
/// (before the arena is moved out: it reads each object's header).
#[derive(Debug, Default)]
pub(crate) struct ArenaPages {
    objs: Box<[ArenaObj]>,
    pages: usize,
}

impl ArenaPages {
    /// From `(address, bytes, reference count)` of each live arena object,
    /// in ascending address order.
    pub(crate) fn new(objs: impl IntoIterator<Item = (usize, usize, usize)>) -> ArenaPages {
        let mut pages = 0;
        let objs = objs
            .into_iter()
            .map(|(addr, len, refs)| {
                let o = ArenaObj {
                    addr,
                    pages: len.div_ceil(PAGE_SIZE),
                    slots_end: addr + WORD + refs * WORD,
                    first: pages,
                };
                pages += o.pages;
                o
            })
            .collect::<Box<[_]>>();
        debug_assert!(objs.windows(2).all(|w| w[0].addr < w[1].addr));
        ArenaPages { objs, pages }
    }

    /// Pages of live objects.
    pub(crate) fn pages(&self) -> usize {
        self.pages
    }

    /// The arena page index of `addr`, if a live object covers it.
    /// Lock-free and allocation-free (the fault path uses it).
    pub(crate) fn index_of(&self, addr: usize) -> Option<usize> {
        let k = self.objs.partition_point(|o| o.addr <= addr);
        let o = self.objs.get(k.checked_sub(1)?)?;
        let page = (addr - o.addr) / PAGE_SIZE;
        (page < o.pages).then_some(o.first + page)
    }

    /// The object covering arena page `i` (< [`pages`](Self::pages)) and the
    /// address of the page.
    pub(crate) fn page(&self, i: usize) -> (&ArenaObj, usize) {
        let k = self.objs.partition_point(|o| o.first <= i) - 1;
        let o = &self.objs[k];
        (o, o.addr + (i - o.first) * PAGE_SIZE)
    }
}

impl CycleShared {
    /// Rewrites the reference slots of arena page `i` (claimed by the
    /// caller) in its from-space page and returns that page's address, from
    /// where it is installed. No allocation, no lock: fault path.
    pub(super) fn fix_arena_page(&self, i: usize) -> usize {
        let (o, page) = self.arena.page(i);
        let from = self.from_start + (page - self.space_start);
        // Read a word first: a page the object never touched is missing in
        // the from-space too, and this maps the zero page there, so that
        // MOVE finds a page to move (COPY reads zeros either way).
        let _ = load_word(from);
        let lo = page.max(o.addr + WORD);
        let hi = (page + PAGE_SIZE).min(o.slots_end);
        self.compactor()
            .rewrite_slots(from + (lo - page), from + (hi.max(lo) - page));
        from
    }

    /// One GC thread's share of the arena: takes runs of up to
    /// [`BLOCK_PAGES`] arena pages from `next` until none is left, fixes
    /// each page it claims and installs the runs (MOVE in MOVE mode, else
    /// COPY). Returns when every page of every run it took is mapped.
    pub(crate) fn sweep_arena(&self, next: &AtomicUsize) {
        let mut runs = Vec::with_capacity(BLOCK_PAGES);
        take_runs(next, self.arena.pages(), |run| {
            runs.clear();
            for i in run.clone() {
                let p = self.npages + i;
                if !self.states.claim(p, Claimant::Gc) {
                    continue;
                }
                let src = self.fix_arena_page(i);
                self.srcs[p].store(src, Ordering::Release);
                self.states.compacted(p);
                runs.push((p, src));
            }
            self.counters
                .arena_pages
                .fetch_add(runs.len(), Ordering::Relaxed);
            self.install_runs(&runs, self.install == InstallMode::Move);
            for i in run {
                self.states.wait_mapped(self.npages + i);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_pages_index_live_objects_in_address_order() {
        let base = 1 << 30;
        let p = PAGE_SIZE;
        let a = ArenaPages::new([
            (base, 3 * p, 10),
            (base + 5 * p, p, 0),
            (base + 9 * p, 2 * p, 600),
        ]);
        assert_eq!(a.pages(), 6);
        assert_eq!(a.index_of(base - 1), None);
        assert_eq!(a.index_of(base), Some(0));
        assert_eq!(a.index_of(base + 2 * p + 100), Some(2));
        assert_eq!(a.index_of(base + 3 * p), None, "a free gap");
        assert_eq!(a.index_of(base + 5 * p + 8), Some(3));
        assert_eq!(a.index_of(base + 10 * p + 4095), Some(5));
        assert_eq!(a.index_of(base + 11 * p), None);
        let (o, page) = a.page(4);
        assert_eq!((o.addr, page), (base + 9 * p, base + 9 * p));
        assert_eq!(o.slots_end, base + 9 * p + 8 + 600 * 8);
        assert_eq!(a.page(5).1, base + 10 * p);
        assert_eq!(a.page(2).1, base + 2 * p);
        assert_eq!(ArenaPages::default().index_of(base), None);
    }
}
