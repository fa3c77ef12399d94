//! Young collections (sticky mark bits): the old generation, the card table
//! that remembers which of its pages mutators wrote, the object-start table
//! that lets the collector walk one old page without walking the pages
//! before it, the remembered-set scan, and the policy that chooses between
//! a young and a full cycle.
//!
//! Every cycle ends by making everything it kept old: the moving space's
//! top is rounded up to a page and `[start, old_end)` is the old region.
//! A young cycle treats the old region as marked: marking stops at old
//! objects, and starts from the roots plus every reference held on an old
//! page written since the last cycle (a *dirty card*). The old region is
//! then the dense prefix (it keeps its place and its physical pages); only
//! its dirty pages have references to rewrite, the others are not touched.
//! Only what was allocated since the last cycle is compacted.
//!
//! ```text
//!  after cycle n:   [ old (everything cycle n kept) |0| allocation ...
//!                                                    ^ old_end (page aligned)
//!  cycle n+1 young: [ old: not marked, dirty pages  | young: marked from roots
//!                     fixed in place               ]   + dirty old pages, compacted
//!  after n+1:       [ old                | promoted |0| allocation ...
//! ```
//!
//! The card table has one byte per 4 KiB page of the whole reservation
//! (moving space and arena). Every reference store marks the card of the
//! page that holds the slot while the barrier is active (one byte store,
//! no test of what was stored, as HotSpot's card barrier; always active
//! with the card builder, during cycles with the kernel's dirty tracking,
//! `dirty`), before the store itself. The final pause of a cycle
//! takes the old region's cards (the pages its compactors must fix) and
//! clears the table: every reference that existed then points at an old
//! object once the cycle ends, so the next remembered set is what mutators
//! write after it. Large objects with their own mapping (outside the
//! reservation) have no cards: a young cycle scans the old ones whole.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::mapping::{ByteMap, U64Map, PAGE_SIZE};
use crate::object::{load_word, Header, WORD};
use crate::space::LargeObject;

/// Words per page.
const PAGE_WORDS: usize = PAGE_SIZE / WORD;

/// How a young cycle learns which old pages mutators wrote since the last
/// cycle (its remembered set): `HeapConfig::remembered_set`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RememberedSet {
    /// A card-marking write barrier: every reference store also stores one
    /// byte into a card table (one card per 4 KiB page), as HotSpot's and
    /// ART's. Works everywhere.
    #[default]
    Cards,
    /// The kernel tracks writes (see `dirty`): between cycles the old
    /// region is write-protected through the heap's userfaultfd opened with
    /// `UFFD_FEATURE_WP_ASYNC`; the first write to each old page costs one
    /// minor fault that the kernel resolves itself, and a cycle reads the
    /// written pages with `PAGEMAP_SCAN`. The barrier marks cards only
    /// while a cycle runs. Falls back to [`Cards`](Self::Cards), said
    /// once, where `WP_ASYNC` is not granted (Linux before 6.7, no
    /// userfaultfd).
    WriteProtect,
}

impl RememberedSet {
    /// The name used in settings and reports: `cards` or `wp`.
    pub fn name(self) -> &'static str {
        match self {
            RememberedSet::Cards => "cards",
            RememberedSet::WriteProtect => "wp",
        }
    }

    /// Parses [`name`](Self::name) (also `write-protect`).
    pub fn from_name(s: &str) -> Option<RememberedSet> {
        match s {
            "cards" => Some(RememberedSet::Cards),
            "wp" | "write-protect" => Some(RememberedSet::WriteProtect),
            _ => None,
        }
    }
}

/// One byte per page of the reservation: 1 when a reference was stored on
/// that page since the last cycle's final pause (while the barrier is
/// active: always with [`RememberedSet::Cards`], during cycles with
/// [`RememberedSet::WriteProtect`]).
#[derive(Debug)]
pub(crate) struct CardTable {
    start: usize,
    cards: ByteMap,
    /// Whether the barrier marks cards.
    active: AtomicBool,
}

impl CardTable {
    /// Cards for the `len` bytes from `start`, the barrier inactive.
    pub(crate) fn new(start: usize, len: usize) -> io::Result<CardTable> {
        Ok(CardTable {
            start,
            cards: ByteMap::new(len.div_ceil(PAGE_SIZE))?,
            active: AtomicBool::new(false),
        })
    }

    /// Turns the barrier on or off. Off (write-protect builder, at the end
    /// of a cycle) only once the old region is protected: a mutator that
    /// reads `false` stores into a protected page, which the kernel
    /// records (the acquire below pairs with this release).
    pub(crate) fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Release);
    }

    /// Whether the barrier marks cards.
    #[cfg(test)]
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The write barrier: marks the card of the page holding `slot` (a
    /// slot outside the reservation, in a large object with its own
    /// mapping, has none) if the barrier is active. Called before the
    /// store it covers (see [`set_active`](Self::set_active)).
    #[inline(always)]
    pub(crate) fn mark(&self, slot: usize) {
        if self.active.load(Ordering::Acquire) {
            self.set(slot);
        }
    }

    /// Marks the card of the page holding `addr`, barrier on or off (the
    /// collector's own marks).
    #[inline(always)]
    pub(crate) fn set(&self, addr: usize) {
        let i = addr.wrapping_sub(self.start) / PAGE_SIZE;
        if let Some(c) = self.cards.atomics().get(i) {
            c.store(1, Ordering::Relaxed);
        }
    }

    /// Marks the cards of every page of `[lo, hi)`.
    pub(crate) fn set_range(&self, lo: usize, hi: usize) {
        let mut a = lo & !(PAGE_SIZE - 1);
        while a < hi {
            self.set(a);
            a += PAGE_SIZE;
        }
    }

    /// Whether page `p` (from the reservation's start) is dirty.
    #[inline]
    pub(crate) fn is_dirty(&self, p: usize) -> bool {
        self.cards
            .atomics()
            .get(p)
            .is_some_and(|c| c.load(Ordering::Relaxed) != 0)
    }

    /// The cards of pages `[0, pages)`, for the compactors (world stopped).
    pub(crate) fn snapshot(&self, pages: usize) -> Box<[u8]> {
        self.cards.atomics()[..pages.min(self.cards.atomics().len())]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Clears the cards of pages `[from, to)` (world stopped).
    pub(crate) fn clear(&self, from: usize, to: usize) {
        let cards = self.cards.atomics();
        for c in &cards[from.min(cards.len())..to.min(cards.len())] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// For each page of the old region, the word (from the space's start)
/// where a walk over that page begins: the start of the object holding
/// the page's first word, or that word itself if an object or a free zero
/// word begins there. Old objects never move while they are old, so an
/// entry stays valid until the next full cycle rebuilds the table.
#[derive(Debug)]
pub(crate) struct ObjectStarts {
    /// A word index per page (u64: heaps may exceed 2^32 words), in a
    /// reserved mapping committed as the old region grows over it.
    starts: U64Map,
}

impl ObjectStarts {
    /// A table for a space of `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> io::Result<ObjectStarts> {
        Ok(ObjectStarts {
            starts: U64Map::new(capacity.div_ceil(PAGE_SIZE))?,
        })
    }

    /// The entries.
    pub(crate) fn table(&self) -> &[u64] {
        &self.starts
    }

    /// Records the pages of words `[from, to)` of the space at `base`,
    /// walking its objects from `from` (a page boundary where an object or
    /// a zero word begins); a zero word is one free word (the unused end of
    /// a TLAB or the gap up to a page boundary). Reads only headers, which
    /// mutators never write, so it may run while they run.
    pub(crate) fn extend(&mut self, base: usize, from: usize, to: usize) {
        debug_assert_eq!(from % PAGE_WORDS, 0);
        let mut w = from;
        let mut p = from / PAGE_WORDS;
        while w < to {
            let raw = load_word(base + w * WORD);
            let size = if raw == 0 {
                1
            } else {
                Header::from_raw(raw)
                    .unwrap_or_else(|| panic!("bad header {raw:#x} in the old region at word {w}"))
                    .size_words()
            };
            while p * PAGE_WORDS < w + size && p * PAGE_WORDS < to {
                self.starts[p] = w as u64;
                p += 1;
            }
            w += size;
        }
    }
}

/// Calls `f(lo, hi)` for each run of reference slots of old page `page`
/// (addresses `[lo, hi)`, relative to `base`, where the old region's words
/// are read), walking from `starts[page]`; `old_end` bounds the region,
/// in words. `read` loads a word. No allocation: it runs on fault paths.
#[inline]
pub(crate) fn old_page_slots(
    read: impl Fn(usize) -> u64,
    base: usize,
    starts: &[u64],
    page: usize,
    old_end: usize,
    mut f: impl FnMut(usize, usize),
) {
    let page_word = page * PAGE_WORDS;
    let page_end = (page_word + PAGE_WORDS).min(old_end);
    let mut w = starts[page] as usize;
    while w < page_end {
        let raw = read(base + w * WORD);
        if raw == 0 {
            w += 1;
            continue;
        }
        let Some(h) = Header::from_raw(raw) else {
            crate::concurrent::fatal::fatal("old_page_slots: bad object header in the old region")
        };
        let lo = (w + 1).max(page_word);
        let hi = (w + 1 + h.ref_count()).min(page_word + PAGE_WORDS);
        if hi > lo {
            f(base + lo * WORD, base + hi * WORD);
        }
        w += h.size_words();
    }
}

/// The remembered set of a young cycle: every non-null reference held in
/// an old page with a dirty card (the moving space's old region, and old
/// large objects in the arena) or anywhere in an old large object with its
/// own mapping. May run while mutators run (it reads slots they may be
/// writing: either value is fine under the snapshot barrier).
pub(crate) fn remembered_set(
    cards: &CardTable,
    starts: &ObjectStarts,
    space_start: usize,
    old_end: usize,
    los: &BTreeMap<usize, LargeObject>,
) -> (Vec<usize>, usize) {
    let mut out = Vec::new();
    let mut dirty = 0;
    let push_range = |out: &mut Vec<usize>, lo: usize, hi: usize| {
        for a in (lo..hi).step_by(WORD) {
            let v = load_word(a) as usize;
            if v != 0 {
                out.push(v);
            }
        }
    };
    for p in 0..old_end.div_ceil(PAGE_WORDS) {
        if cards.is_dirty(p) {
            dirty += 1;
            old_page_slots(
                load_word,
                space_start,
                starts.table(),
                p,
                old_end,
                |lo, hi| push_range(&mut out, lo, hi),
            );
        }
    }
    for o in los.values().filter(|o| o.is_old()) {
        let a = o.obj().addr();
        // SAFETY: a large object of this heap that is still allocated (the
        // caller holds the map); its header is immutable.
        let n = unsafe { o.obj().header() }.ref_count();
        if n == 0 {
            continue;
        }
        let (lo, hi) = (a + WORD, a + WORD + n * WORD);
        if !o.in_arena() {
            push_range(&mut out, lo, hi);
            continue;
        }
        let mut page = (lo - space_start) / PAGE_SIZE;
        while space_start + page * PAGE_SIZE < hi {
            if cards.is_dirty(page) {
                dirty += 1;
                let p0 = space_start + page * PAGE_SIZE;
                push_range(&mut out, lo.max(p0), hi.min(p0 + PAGE_SIZE));
            }
            page += 1;
        }
    }
    (out, dirty)
}

/// What a cycle collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Everything.
    Full(crate::stats::FullReason),
    /// What was allocated since the last cycle, with the old region's
    /// size in words.
    Young(usize),
}

/// The generational state kept between cycles.
#[derive(Debug, Default)]
pub(crate) struct Generations {
    /// A cycle has made an old region (possibly empty).
    pub(crate) ready: bool,
    /// Words of the old region.
    pub(crate) old_words: usize,
    /// Its size after the last full cycle.
    pub(crate) after_full_words: usize,
    /// The last young cycle freed less than [`POOR_YIELD`] of what it
    /// examined.
    pub(crate) poor_yield: bool,
    /// The last young cycle found more than [`MOSTLY_DIRTY`] of the old
    /// pages dirty.
    pub(crate) mostly_dirty: bool,
}

/// A young cycle that finds more than this share of the old pages dirty
/// makes the next cycle full: it scanned and fixed most of the old region
/// anyway, and a full cycle would also have freed the old garbage that a
/// program writing its old objects that much is making.
pub(crate) const MOSTLY_DIRTY: f64 = 0.25;

/// A young cycle that frees less than this share of the young region
/// makes the next cycle full.
pub(crate) const POOR_YIELD: f64 = 0.10;

impl Generations {
    /// Chooses the next cycle's plan. Full when young collections are off,
    /// there is no old region yet, the embedder asked (`collect()`), an
    /// allocation failed, the last young cycle freed little, or the old
    /// region has grown past twice its size after the last full cycle (at
    /// least twice the heap's `min_free`, `min_free_words`) or past 3/4 of
    /// the capacity.
    ///
    /// The floor was 1/16 of the capacity: with the default capacity (a
    /// quarter of RAM) that let a young cycle promote 100 MB of data about
    /// to die (binary-trees' stretch tree) and keep it as old garbage for the
    /// rest of the run, every young cycle then having that much less room.
    pub(crate) fn plan(
        &self,
        enabled: bool,
        trigger: crate::stats::Trigger,
        capacity_words: usize,
        min_free_words: usize,
    ) -> Plan {
        use crate::stats::{FullReason, Trigger};
        let limit = (2 * self.after_full_words.max(min_free_words)).min(capacity_words / 4 * 3);
        Plan::Full(if !enabled {
            FullReason::NotGenerational
        } else if !self.ready {
            FullReason::NoOldGeneration
        } else if trigger == Trigger::Explicit {
            FullReason::Explicit
        } else if trigger == Trigger::Exhausted {
            FullReason::Exhausted
        } else if self.poor_yield {
            FullReason::PoorYoungYield
        } else if self.mostly_dirty {
            FullReason::MostlyDirty
        } else if self.old_words > limit {
            FullReason::OldGrew
        } else {
            return Plan::Young(self.old_words);
        })
    }

    /// Records the end of a cycle: the old region is now `old_words`.
    pub(crate) fn finished(
        &mut self,
        plan: Plan,
        old_words: usize,
        young_words: usize,
        freed_words: usize,
        dirty_pages: usize,
    ) {
        self.old_words = old_words;
        self.ready = true;
        match plan {
            Plan::Full(_) => {
                self.after_full_words = old_words;
                self.poor_yield = false;
                self.mostly_dirty = false;
            }
            Plan::Young(old) => {
                self.poor_yield = (freed_words as f64) < POOR_YIELD * young_words as f64;
                self.mostly_dirty =
                    dirty_pages as f64 > MOSTLY_DIRTY * old.div_ceil(PAGE_WORDS) as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{Mapping, Prot};
    use crate::object::store_word;
    use crate::object::Layout;
    use crate::stats::{FullReason, Trigger};

    #[test]
    fn cards_mark_pages_and_clear() {
        let c = CardTable::new(0x10000, 16 * PAGE_SIZE).unwrap();
        c.mark(0x10000 + 5 * PAGE_SIZE); // inactive: no card
        assert!(!c.is_dirty(5) && !c.is_active());
        c.set_active(true);
        assert!(c.is_active());
        c.mark(0x10000 + 3 * PAGE_SIZE + 8);
        c.mark(0x10000 + 100 * PAGE_SIZE); // outside: ignored
        c.mark(0x1000); // below: ignored
        assert!(c.is_dirty(3) && !c.is_dirty(2) && !c.is_dirty(4));
        assert_eq!(&*c.snapshot(5), &[0, 0, 0, 1, 0]);
        c.clear(0, 16);
        assert!(!c.is_dirty(3));
    }

    #[test]
    fn starts_and_page_slots_cross_pages() {
        // Objects of 3 refs + 500 data words (504 words) laid from word 0,
        // then a zero gap, then small objects: page 1 begins inside the
        // first object.
        let m = Mapping::new(4 * PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite).unwrap();
        let base = m.start();
        let big = Layout::record(1, 3, 500 * WORD).unwrap();
        let small = Layout::record(2, 1, 0).unwrap();
        store_word(base, big.header().raw());
        let mut w = big.header().size_words();
        w += 2; // two free words
        let mut small_at = vec![];
        while w + small.header().size_words() <= 2 * PAGE_WORDS {
            store_word(base + w * WORD, small.header().raw());
            small_at.push(w);
            w += small.header().size_words();
        }
        let mut s = ObjectStarts::new(4 * PAGE_SIZE).unwrap();
        s.extend(base, 0, 2 * PAGE_WORDS);
        assert_eq!(s.table()[0], 0);
        // Page 1 (word 512) is inside whichever small object covers it.
        let cover = *small_at.iter().rev().find(|&&a| a <= PAGE_WORDS).unwrap();
        let expect = if cover + small.header().size_words() > PAGE_WORDS {
            cover
        } else {
            PAGE_WORDS
        };
        assert_eq!(s.table()[1] as usize, expect);
        let mut ranges = vec![];
        old_page_slots(load_word, base, s.table(), 0, 2 * PAGE_WORDS, |lo, hi| {
            ranges.push(((lo - base) / WORD, (hi - base) / WORD))
        });
        assert_eq!(ranges[0], (1, 4), "the big object's three slots");
        assert!(ranges[1..].iter().all(|&(lo, hi)| hi == lo + 1));
        assert_eq!(
            ranges.len(),
            1 + small_at.iter().filter(|&&a| a < PAGE_WORDS).count()
        );
    }

    #[test]
    fn plan_is_full_until_there_is_an_old_region_and_when_it_grew() {
        const MIN_FREE: usize = 1 << 16;
        let mut g = Generations::default();
        let cap = 1 << 20;
        assert_eq!(
            g.plan(true, Trigger::Policy, cap, MIN_FREE),
            Plan::Full(FullReason::NoOldGeneration)
        );
        g.finished(Plan::Full(FullReason::NoOldGeneration), 100_000, 0, 0, 0);
        assert_eq!(
            g.plan(true, Trigger::Policy, cap, MIN_FREE),
            Plan::Young(100_000)
        );
        assert_eq!(
            g.plan(false, Trigger::Policy, cap, MIN_FREE),
            Plan::Full(FullReason::NotGenerational)
        );
        assert_eq!(
            g.plan(true, Trigger::Explicit, cap, MIN_FREE),
            Plan::Full(FullReason::Explicit)
        );
        g.finished(Plan::Young(100_000), 150_000, 100_000, 50_000, 10);
        assert_eq!(
            g.plan(true, Trigger::Policy, cap, MIN_FREE),
            Plan::Young(150_000)
        );
        g.finished(Plan::Young(150_000), 210_000, 100_000, 5_000, 10);
        assert_eq!(
            g.plan(true, Trigger::Policy, cap, MIN_FREE),
            Plan::Full(FullReason::PoorYoungYield)
        );
        // 150,000 old words are 293 pages: 80 dirty is over a quarter.
        g.finished(Plan::Young(150_000), 180_000, 100_000, 50_000, 80);
        assert_eq!(
            g.plan(true, Trigger::Policy, cap, MIN_FREE),
            Plan::Full(FullReason::MostlyDirty)
        );
        g.finished(Plan::Young(150_000), 210_000, 100_000, 50_000, 70);
        assert_eq!(
            g.plan(true, Trigger::Policy, cap, MIN_FREE),
            Plan::Full(FullReason::OldGrew)
        );
        // A small old region may grow to twice `min_free` before a full
        // cycle, whatever the capacity: binary-trees' case, where a young
        // cycle promoted a dying 100 MB tree on a 6 GiB heap.
        let mut g = Generations::default();
        let (big_cap, min_free) = (6usize << 30 >> 3, 32usize << 20 >> 3);
        g.finished(Plan::Full(FullReason::NoOldGeneration), 4 << 20, 0, 0, 0);
        g.finished(Plan::Young(4 << 20), 2 * min_free - 1, 1 << 20, 1 << 20, 0);
        assert_eq!(
            g.plan(true, Trigger::Policy, big_cap, min_free),
            Plan::Young(2 * min_free - 1)
        );
        g.finished(Plan::Young(2 * min_free - 1), 18 << 20, 1 << 20, 1 << 20, 0);
        assert_eq!(
            g.plan(true, Trigger::Policy, big_cap, min_free),
            Plan::Full(FullReason::OldGrew),
            "an old region 4.5x its size after the last full cycle"
        );
    }
}
