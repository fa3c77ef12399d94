//! Dense-prefix pages a full cycle leaves alone: which of them need no
//! fix, and how many at the bottom a concurrent cycle keeps out of the
//! flip.
//!
//! A full cycle's dense prefix does not move, but every one of its pages
//! used to be *fixed* each cycle (`Compactor::update_dense_page`: every
//! slot rewritten through the forwarding function, a filler written over
//! every dead gap), and in a concurrent cycle moved out at the flip and
//! back afterwards. On a heap whose long-lived data sits in the prefix
//! cycle after cycle (binary-trees' long-lived tree, a zygote's preloaded
//! classes) that was the cycle's largest piece of compaction work, redone
//! although nothing on those pages changed. A page needs no fix when
//!
//! 1. the last full cycle fixed it (so every dead gap on it is one
//!    filler) or filled it whole by compaction (no gap, every reference
//!    written), and no object on it or on the next page died since: its
//!    live-word count and the next page's are what they were then (objects
//!    in the prefix never move and nothing is allocated there, so equal
//!    counts mean the same objects), and the next page has a live word:
//!    then the last gap starting on `p` ends on `p + 1` at the latest, at
//!    a word that is still live, so the filler `p`'s fixer wrote still
//!    covers it exactly (with a low `dense_prefix_threshold` a prefix page
//!    may have no live word, and a gap crossing it may have grown at its
//!    far end, past a page whose count did not change); and
//! 2. none of its slots refers to an object that moves: the marker records,
//!    per page it scans, the highest word of the mark-start space any slot
//!    refers to (`satb::PrefixWatch`), and the barrier flags a page given a
//!    reference into the moving space while the heap marks
//!    (`SatbLog::note_store`; the black block's objects too: they stay put
//!    in a concurrent cycle, but a slot into the young block needs its card
//!    marked by a fixer, and a cycle that falls back to stop-the-world
//!    compacts the block); with the highest below the new prefix's end and
//!    no flag, every reference on the page forwards to itself.
//!
//! ```text
//!  last cycle:  [ fixed prefix: counts remembered                 ]
//!  this cycle:  [ clean clean clean | dirty clean | dirty | ...    | compacted ...
//!               [ kept: not flipped ] [ flipped, fixed, moved back ]
//!                 (concurrent)          (stop-the-world fixes only the dirty pages)
//! ```
//!
//! A concurrent cycle leaves the longest run of clean pages at the bottom
//! in place (the flip moves out only what lies above it, as for a young
//! cycle's old region), ended where no object crosses into the next page:
//! the fixer of the first flipped page reads the header of an object that
//! begins before it, in the from-space, where a kept page is not. The rest
//! of the prefix is flipped and fixed as before. A stop-the-world cycle
//! skips every clean page.

/// Live words of each page: `counts[p]` for pages `[0, pages)` of the
/// live-words bitmap (64 words per bitmap word, 512 per page).
pub(crate) fn live_counts(live: &[u64], pages: usize) -> Vec<u16> {
    (0..pages)
        .map(|p| crate::forwarding::page_live_words(live, p) as u16)
        .collect()
}

/// What the last full cycle left fixed: the live words of each page of
/// its dense prefix, then `packed` pages (from the space's start) in all,
/// those past the counts filled whole by its compaction (every word live).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PrefixMemory {
    counts: Vec<u16>,
    packed: usize,
}

impl PrefixMemory {
    /// `counts` per prefix page, and pages up to `packed` filled whole.
    pub(crate) fn new(counts: Vec<u16>, packed: usize) -> PrefixMemory {
        PrefixMemory { counts, packed }
    }

    /// Pages remembered (the ones to watch).
    pub(crate) fn len(&self) -> usize {
        self.counts.len().max(self.packed)
    }

    /// Page `p`'s remembered live words.
    fn get(&self, p: usize) -> Option<u16> {
        match self.counts.get(p) {
            Some(&c) => Some(c),
            None => (p < self.packed).then_some(crate::forwarding::PAGE_WORDS as u16),
        }
    }
}

/// The dense-prefix pages of one full cycle that need no fix, and the
/// live counts the next cycle compares against.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CleanPrefix {
    /// Per prefix page: no fix needed.
    pub clean: Vec<bool>,
    /// Per prefix page: its live words this cycle (remembered once the
    /// cycle has fixed the others).
    pub counts: Vec<u16>,
}

/// Whether prefix page `p` is clean in `clean` (a [`CleanPrefix::clean`];
/// pages past it are not).
pub(crate) fn is_clean(clean: &[bool], p: usize) -> bool {
    clean.get(p).copied().unwrap_or(false)
}

impl CleanPrefix {
    /// The clean pages of a prefix of `dense_pages` pages, given the live
    /// bitmap, what the last full cycle left fixed (`fixed`; empty: none) and whether each page's references all stay
    /// (`SatbLog::prefix_refs_stay`). A page is clean if it and the next
    /// page are both in this prefix and in the remembered one with
    /// unchanged counts, the next page has a live word, and its references
    /// stay.
    pub(crate) fn compute(
        live: &[u64],
        dense_pages: usize,
        fixed: &PrefixMemory,
        refs_stay: impl Fn(usize) -> bool,
    ) -> CleanPrefix {
        let counts = live_counts(live, dense_pages);
        let both = dense_pages.min(fixed.len());
        let clean = (0..dense_pages)
            .map(|p| {
                p + 1 < both
                    && Some(counts[p]) == fixed.get(p)
                    && Some(counts[p + 1]) == fixed.get(p + 1)
                    && counts[p + 1] > 0
                    && refs_stay(p)
            })
            .collect();
        CleanPrefix { clean, counts }
    }

    /// Unmarks `pages`: the barrier flagged them after
    /// [`compute`](Self::compute) ran (while mutators did). World stopped.
    pub(crate) fn unmark(&mut self, pages: impl IntoIterator<Item = usize>) {
        for p in pages {
            if let Some(c) = self.clean.get_mut(p) {
                *c = false;
            }
        }
    }

    /// Pages needing no fix.
    pub(crate) fn clean_pages(&self) -> usize {
        self.clean.iter().filter(|&&c| c).count()
    }

    /// How many pages at the bottom a concurrent cycle keeps out of the
    /// flip: the run of clean pages from page 0, shortened until no object
    /// crosses from it into the next page (`marks`: object starts, `live`:
    /// live words; a dead word there is a gap begun on a kept page, which
    /// no fixer of a flipped page reads), and to a multiple of `align`
    /// pages (512 with huge pages: the flip's `mremap` would split the huge
    /// page the boundary falls in).
    /// The page after the run is in the bitmaps: the prefix's last page is
    /// never clean.
    pub(crate) fn kept_run(&self, live: &[u64], marks: &[u64], align: usize) -> usize {
        use crate::forwarding::is_live as bit;
        let align = align.max(1);
        let run = self.clean.iter().take_while(|&&c| c).count();
        let mut k = run - run % align;
        while k > 0 {
            let w = k * crate::forwarding::PAGE_WORDS;
            if !bit(live, w) || bit(marks, w) {
                break;
            }
            k -= align;
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bitmap of `pages` pages, every word live.
    fn full(pages: usize) -> Vec<u64> {
        vec![!0; pages * 8]
    }

    #[test]
    fn counts_are_live_words_per_page() {
        let mut live = full(3);
        live[8] = 0b1011; // page 1: 3 + 7 * 64
        live[16..24].fill(0); // page 2: none
        assert_eq!(live_counts(&live, 3), [512, 451, 0]);
        assert_eq!(live_counts(&live, 4), [512, 451, 0, 0], "past the bitmap");
    }

    #[test]
    fn a_page_is_clean_only_if_it_and_the_next_are_unchanged_and_its_refs_stay() {
        let mut live = full(6);
        let fixed = PrefixMemory::new(live_counts(&live, 6), 0);
        live[3 * 8] &= !0xff; // page 3 lost an object
        let c = CleanPrefix::compute(&live, 6, &fixed, |p| p != 1);
        // 0: clean; 1: a reference moves; 2: the next page changed (a gap
        // starting on 2 may have grown into 3); 3: changed; 4: clean;
        // 5: the last prefix page (its gaps end at the prefix's end).
        assert_eq!(c.clean, [true, false, false, false, true, false]);
        assert_eq!(c.counts[3], 504);
        assert_eq!(c.clean_pages(), 2);
        // Nothing remembered, or a shorter prefix remembered.
        assert_eq!(
            CleanPrefix::compute(&live, 6, &PrefixMemory::default(), |_| true).clean_pages(),
            0
        );
        let short_memory = PrefixMemory::new(live_counts(&full(6), 3), 0);
        let short = CleanPrefix::compute(&full(6), 6, &short_memory, |_| true);
        assert_eq!(short.clean, [true, true, false, false, false, false]);
        // A gap crossing a page with no live word may have grown at its far
        // end: the page it starts on is not clean.
        let mut hollow = full(6);
        hollow[2 * 8..3 * 8].fill(0);
        let fixed_hollow = PrefixMemory::new(live_counts(&hollow, 6), 0);
        let h = CleanPrefix::compute(&hollow, 6, &fixed_hollow, |_| true);
        assert_eq!(h.clean, [true, false, true, true, true, false]);
        // A shorter prefix now: its last page is never clean.
        let shrunk = CleanPrefix::compute(&full(6), 3, &fixed, |_| true);
        assert_eq!(shrunk.clean, [true, true, false]);
    }

    #[test]
    fn pages_packed_whole_are_remembered_as_full() {
        // Two prefix pages counted, four more packed whole by compaction.
        let m = PrefixMemory::new(vec![500, 512], 6);
        assert_eq!(m.len(), 6);
        assert_eq!((m.get(1), m.get(5), m.get(6)), (Some(512), Some(512), None));
        let mut live = full(8);
        live[0] = !0xfff; // page 0: 500 live words
        live[4 * 8] &= !1; // page 4 lost a word since it was packed
        let c = CleanPrefix::compute(&live, 8, &m, |_| true);
        assert_eq!(
            c.clean,
            [true, true, true, false, false, false, false, false]
        );
    }

    #[test]
    fn unmarking_drops_pages_the_barrier_flagged() {
        let live = full(4);
        let fixed = PrefixMemory::new(live_counts(&live, 4), 0);
        let mut c = CleanPrefix::compute(&live, 4, &fixed, |_| true);
        assert_eq!(c.clean, [true, true, true, false]);
        c.unmark([1, 7]);
        assert_eq!(c.clean, [true, false, true, false]);
        assert!(is_clean(&c.clean, 2) && !is_clean(&c.clean, 1) && !is_clean(&c.clean, 9));
    }

    #[test]
    fn the_kept_run_ends_where_no_object_crosses() {
        let live = full(5);
        let mut marks = vec![0u64; 5 * 8];
        // Objects of 256 words from word 0: starts at 0, 256, 512, ...
        for w in (0..5 * 512).step_by(256) {
            marks[w / 64] |= 1 << (w % 64);
        }
        let c = CleanPrefix {
            clean: vec![true, true, true, false, false],
            counts: vec![512; 5],
        };
        assert_eq!(
            c.kept_run(&live, &marks, 1),
            3,
            "page 3 starts with an object"
        );
        // An object crossing from page 2 into page 3: keep two pages.
        marks[3 * 8] &= !1;
        assert_eq!(c.kept_run(&live, &marks, 1), 2);
        // ... unless the word there is dead (a gap begun on a kept page).
        let mut gap = live.clone();
        gap[3 * 8] &= !1;
        assert_eq!(c.kept_run(&gap, &marks, 1), 3);
        // Every page boundary crossed: nothing kept.
        let mut first_only = vec![0u64; 5 * 8];
        first_only[0] = 1;
        assert_eq!(c.kept_run(&live, &first_only, 1), 0);
    }

    #[test]
    fn the_kept_run_is_a_multiple_of_the_alignment() {
        let pages = 9;
        let live = full(pages);
        let mut marks = vec![0u64; pages * 8];
        for w in (0..pages * 512).step_by(512) {
            marks[w / 64] |= 1 << (w % 64);
        }
        let mut c = CleanPrefix {
            clean: vec![true; pages],
            counts: vec![512; pages],
        };
        c.clean[7] = false; // a run of 7
        assert_eq!(c.kept_run(&live, &marks, 1), 7);
        assert_eq!(c.kept_run(&live, &marks, 2), 6);
        assert_eq!(c.kept_run(&live, &marks, 4), 4);
        assert_eq!(c.kept_run(&live, &marks, 8), 0, "shorter than one unit");
        // An object crossing into page 4: the next multiple down.
        marks[4 * 8] &= !1;
        assert_eq!(c.kept_run(&live, &marks, 4), 0);
        assert_eq!(c.kept_run(&live, &marks, 2), 6);
        marks[6 * 8] &= !1;
        assert_eq!(c.kept_run(&live, &marks, 2), 2, "6 and 4 are crossed");
        assert_eq!(
            c.kept_run(&live, &marks, 1),
            7,
            "unaligned: page 7 starts an object"
        );
    }
}
