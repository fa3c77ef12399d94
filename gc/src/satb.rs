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
//! The same slow path keeps the *black block's dirty slots*
//! ([`SatbLog::note_store`]): a bit per word of the moving space, set for
//! a slot at or above the mark-start top into which a mutator stored a
//! reference to an object below it (one that may move). The black block
//! stays where it is after the flip, so those slots are the only words of
//! it that the compaction must rewrite; a page of the block whose bits are
//! all clear goes back to the to-space without being read
//! (`concurrent::prefix`). A black object's slots start zero and change
//! only through this barrier while the heap marks, so a slot without a
//! bit holds null, a black object or a large object: none of them moves.
//! The same slow path lists the pages that got a first dirty slot and
//! counts the slots ([`SatbLog::dirty_black_pages`]): when they are few,
//! the final pause rewrites them in place and the block is not flipped at
//! all (`cycle.rs`).
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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_deque::{Injector, Steal};

use crate::mapping::{WordMap, PAGE_SIZE};
use crate::object::WORD;

/// Logged values a mutator buffers before handing them to the heap.
pub const BUFFER_LEN: usize = 256;

/// Black pages with dirty slots the log lists one by one (more: the
/// block's dirty slots are found page by page after the flip).
pub const DIRTY_PAGE_LIST: usize = 64;

/// One heap's SATB state: whether it marks, the queue of full buffers,
/// and the black block's dirty slots.
#[derive(Default)]
pub struct SatbLog {
    marking: AtomicBool,
    queue: Injector<Vec<usize>>,
    /// The moving space `[start, end)` whose slots `dirty` covers (empty:
    /// no bitmap, nothing recorded).
    space: (usize, usize),
    /// The mark-start top while the heap marks (the black block's start),
    /// `usize::MAX` otherwise.
    black_start: AtomicUsize,
    /// One bit per word of the moving space: a black slot given a
    /// reference below `black_start` while the heap marked. Cleared page
    /// by page by whoever fixes the page, or whole by the final pause when
    /// the cycle has no black block.
    dirty: Option<WordMap>,
    /// One bit per page of the moving space: the page has a dirty bit
    /// (set by the store that set its first one, which alone lists it).
    dirty_summary: Option<WordMap>,
    /// The first [`DIRTY_PAGE_LIST`] pages given a dirty slot this cycle.
    dirty_list: Box<[AtomicUsize]>,
    /// Pages given a dirty slot this cycle (listed or not).
    dirty_pages: AtomicUsize,
    /// Dirty slots set this cycle.
    dirty_slots: AtomicUsize,
    /// Pages `[0, n)` of the moving space whose references this cycle's
    /// marker and barrier watch (`clean`): the last full cycle's fixed
    /// dense prefix. 0: none.
    prefix_watch: AtomicUsize,
    /// Entries of the two tables below that may be non-zero (the largest
    /// watch since [`SatbLog::reset_prefix_tables`]).
    prefix_used: AtomicUsize,
    /// Per watched page: 1 + the highest word (from the space's start) of
    /// the mark-start old space that a slot on the page referred to when
    /// the marker scanned it; 0 for none.
    prefix_max: Option<WordMap>,
    /// One bit per watched page: the barrier stored a reference to an
    /// object of the moving space (the black block's too) into one of its
    /// slots while the heap marked.
    prefix_stored: Option<WordMap>,
}

/// The marker's view of the watched pages ([`SatbLog::prefix_watch`]):
/// slots below `end` report the highest old-space word they refer to.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrefixWatch<'a> {
    /// End (address) of the watched pages; 0 (the default): none.
    pub end: usize,
    /// Start of the moving space.
    pub start: usize,
    /// The per-page maxima (`SatbLog::prefix_max`).
    pub max: &'a [AtomicU64],
}

impl PrefixWatch<'_> {
    /// Records that the slots `[slots, slots + 8 n)` (below `end`) hold
    /// the values `vals`: each page's maximum grows to the highest
    /// mark-start old-space word (below `top`) one of its slots refers to.
    #[inline]
    pub(crate) fn note(&self, slots: usize, vals: impl Iterator<Item = usize>, top: usize) {
        let mut page = usize::MAX;
        let mut hi = 0u64;
        for (i, v) in vals.enumerate() {
            let p = (slots + i * WORD).wrapping_sub(self.start) / PAGE_SIZE;
            if p != page {
                self.raise(page, hi);
                (page, hi) = (p, 0);
            }
            if (self.start..top).contains(&v) {
                hi = hi.max(((v - self.start) / WORD + 1) as u64);
            }
        }
        self.raise(page, hi);
    }

    #[inline]
    fn raise(&self, page: usize, hi: u64) {
        if hi == 0 {
            return;
        }
        if let Some(m) = self.max.get(page) {
            if m.load(Ordering::Relaxed) < hi {
                m.fetch_max(hi, Ordering::Relaxed);
            }
        }
    }
}

impl std::fmt::Debug for SatbLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SatbLog")
            .field("marking", &self.is_marking())
            .finish()
    }
}

impl SatbLog {
    /// A log for the moving space `[start, start + capacity)`, with its
    /// dirty-slot bitmap (address space only until bits are set).
    pub(crate) fn for_space(start: usize, capacity: usize) -> std::io::Result<SatbLog> {
        Ok(SatbLog {
            space: (start, start + capacity),
            black_start: AtomicUsize::new(usize::MAX),
            dirty: Some(WordMap::new((capacity / WORD).div_ceil(64))?),
            dirty_summary: Some(WordMap::new((capacity / PAGE_SIZE).div_ceil(64))?),
            dirty_list: (0..DIRTY_PAGE_LIST).map(|_| AtomicUsize::new(0)).collect(),
            prefix_max: Some(WordMap::new(capacity / PAGE_SIZE)?),
            prefix_stored: Some(WordMap::new((capacity / PAGE_SIZE).div_ceil(64))?),
            ..SatbLog::default()
        })
    }

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

    /// Sets where the black block begins (the mark-start top), or
    /// `usize::MAX` when the heap stops marking. World stopped. Every
    /// dirty bit is clear by then (each cycle clears what it set).
    pub(crate) fn set_black_start(&self, at: usize) {
        self.black_start.store(at, Ordering::Relaxed);
    }

    /// Where the black block begins while the heap marks (`usize::MAX`:
    /// none is kept).
    pub(crate) fn black_start(&self) -> usize {
        self.black_start.load(Ordering::Relaxed)
    }

    /// The barrier's part for the black block (its slow path, while the
    /// heap marks): a store of `value` into `slot` at or above the black
    /// block's start, of a moving-space object below it, sets the slot's
    /// dirty bit.
    #[inline]
    pub(crate) fn note_store(&self, slot: usize, value: u64) {
        let (start, end) = self.space;
        let black = self.black_start.load(Ordering::Relaxed);
        // A watched page given any object of the moving space, the black
        // block's included: a black object does not move in a concurrent
        // cycle that keeps its block, but the page must still be fixed, to
        // mark its card for young collections (a fixer marks the card of a
        // slot into the block, which stays young) and because a cycle that
        // falls back to stop-the-world after a failed flip compacts the
        // block with the rest.
        let page = slot.wrapping_sub(start) / PAGE_SIZE;
        if page < self.prefix_watch.load(Ordering::Relaxed)
            && (value as usize).wrapping_sub(start) < end - start
        {
            if let Some(b) = &self.prefix_stored {
                let (word, bit) = (&b.atomics()[page / 64], 1u64 << (page % 64));
                if word.load(Ordering::Relaxed) & bit == 0 {
                    word.fetch_or(bit, Ordering::Relaxed);
                }
            }
        }
        if slot >= black && slot < end && (value as usize).wrapping_sub(start) < black - start {
            let w = (slot - start) / WORD;
            if let Some(d) = &self.dirty {
                let (word, bit) = (&d.atomics()[w / 64], 1u64 << (w % 64));
                if word.load(Ordering::Relaxed) & bit == 0
                    && word.fetch_or(bit, Ordering::Relaxed) & bit == 0
                {
                    self.note_dirty_slot((slot - start) / PAGE_SIZE);
                }
            }
        }
    }

    /// Counts a new dirty slot on page `page` and lists the page if the
    /// slot is its first (exactly one store sees the page's summary bit
    /// flip, so a page is listed once).
    #[cold]
    fn note_dirty_slot(&self, page: usize) {
        self.dirty_slots.fetch_add(1, Ordering::Relaxed);
        let Some(s) = &self.dirty_summary else {
            return;
        };
        let (word, bit) = (&s.atomics()[page / 64], 1u64 << (page % 64));
        if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            let i = self.dirty_pages.fetch_add(1, Ordering::Relaxed);
            if let Some(e) = self.dirty_list.get(i) {
                e.store(page, Ordering::Relaxed);
            }
        }
    }

    /// The pages (from the space's start) given dirty slots while the heap
    /// marked, if there are at most `max_slots` slots on at most
    /// [`DIRTY_PAGE_LIST`] pages (so few that the final pause may rewrite
    /// them); `None` otherwise. World stopped (every store is visible).
    pub(crate) fn dirty_black_pages(&self, max_slots: usize) -> Option<Vec<usize>> {
        let n = self.dirty_pages.load(Ordering::Relaxed);
        (self.dirty.is_some()
            && n <= DIRTY_PAGE_LIST
            && self.dirty_slots.load(Ordering::Relaxed) <= max_slots)
            .then(|| {
                self.dirty_list[..n]
                    .iter()
                    .map(|e| e.load(Ordering::Relaxed))
                    .collect()
            })
    }

    /// Forgets which pages have dirty slots (the slots' own bits are
    /// cleared by whoever rewrites them, or by [`SatbLog::clear_dirty`]):
    /// clears the page summary of the pages `[lo, hi)` (from the space's
    /// start) and the cycle's counts. World stopped, after marking.
    pub(crate) fn forget_dirty_pages(&self, lo: usize, hi: usize) {
        if let Some(s) = &self.dirty_summary {
            clear_bits(s.atomics(), lo, hi);
        }
        self.dirty_pages.store(0, Ordering::Relaxed);
        self.dirty_slots.store(0, Ordering::Relaxed);
    }

    /// The dirty-slot bits of moving-space page `page` (from the space's
    /// start): `PAGE_SIZE / WORD / 64` words, bit `i` of word `j` for the
    /// page's word `64 j + i`. Empty without a bitmap.
    pub(crate) fn page_bits(&self, page: usize) -> &[AtomicU64] {
        const N: usize = PAGE_SIZE / WORD / 64;
        match &self.dirty {
            Some(d) => d.atomics().get(page * N..(page + 1) * N).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Clears the dirty bits of the words `[lo, hi)` (addresses in the
    /// moving space, word-aligned): a cycle that kept no black block.
    /// World stopped.
    pub(crate) fn clear_dirty(&self, lo: usize, hi: usize) {
        let (Some(d), start) = (&self.dirty, self.space.0) else {
            return;
        };
        clear_bits(d.atomics(), (lo - start) / WORD, (hi - start) / WORD);
        self.forget_dirty_pages((lo - start) / PAGE_SIZE, (hi - start).div_ceil(PAGE_SIZE));
    }

    /// Starts watching the references of pages `[0, pages)` for this
    /// cycle (see `clean`); 0 stops watching. World stopped, before
    /// marking. Writes nothing but the length: the tables were zeroed by
    /// [`reset_prefix_tables`](Self::reset_prefix_tables) at the end of
    /// the last cycle, outside its pauses (their first touch faults in a
    /// huge page, milliseconds on a VM).
    pub(crate) fn watch_prefix(&self, pages: usize) {
        let pages = match &self.prefix_max {
            Some(m) => pages.min(m.atomics().len()),
            None => 0,
        };
        self.prefix_used.fetch_max(pages, Ordering::Relaxed);
        self.prefix_watch.store(pages, Ordering::Relaxed);
    }

    /// Zeroes what the watches since the last call wrote (the per-page
    /// maxima and barrier flags), for the next cycle's watch. At the end
    /// of a cycle, after its decision, with the watch off: the concurrent
    /// cycle's collector thread calls it outside the pauses.
    pub(crate) fn reset_prefix_tables(&self) {
        debug_assert_eq!(self.prefix_watch.load(Ordering::Relaxed), 0);
        let used = self.prefix_used.swap(0, Ordering::Relaxed);
        if let (Some(m), Some(b)) = (&self.prefix_max, &self.prefix_stored) {
            for a in &m.atomics()[..used] {
                // Loaded first: a page of the table never written stays
                // untouched (no fault).
                if a.load(Ordering::Relaxed) != 0 {
                    a.store(0, Ordering::Relaxed);
                }
            }
            clear_bits(b.atomics(), 0, used);
        }
    }

    /// The marker's view of the watched pages (none: `end` 0).
    pub(crate) fn prefix_watch(&self) -> PrefixWatch<'_> {
        let pages = self.prefix_watch.load(Ordering::Relaxed);
        match (&self.prefix_max, pages) {
            (Some(m), 1..) => PrefixWatch {
                end: self.space.0 + pages * PAGE_SIZE,
                start: self.space.0,
                max: &m.atomics()[..pages],
            },
            _ => PrefixWatch::default(),
        }
    }

    /// Whether every reference watched page `page` holds stays where it
    /// is when the words below `dense_words` do not move: none the marker
    /// saw points at or above them, and the barrier stored no reference
    /// into the moving space into the page. `false` for a page not watched. World
    /// stopped, after marking.
    pub(crate) fn prefix_refs_stay(&self, page: usize, dense_words: usize) -> bool {
        let watched = page < self.prefix_watch.load(Ordering::Relaxed);
        match (&self.prefix_max, &self.prefix_stored, watched) {
            (Some(m), Some(b), true) => {
                m.atomics()[page].load(Ordering::Relaxed) <= dense_words as u64
                    && b.atomics()[page / 64].load(Ordering::Relaxed) & (1 << (page % 64)) == 0
            }
            _ => false,
        }
    }

    /// The watched pages below `limit` the barrier flagged (given a
    /// reference into the mark-start old space while the heap marked), in
    /// order. World stopped.
    pub(crate) fn prefix_stored_pages(&self, limit: usize) -> Vec<usize> {
        let limit = limit.min(self.prefix_watch.load(Ordering::Relaxed));
        let Some(b) = &self.prefix_stored else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, w) in b.atomics()[..limit.div_ceil(64)].iter().enumerate() {
            let mut m = w.load(Ordering::Relaxed);
            while m != 0 {
                let p = i * 64 + m.trailing_zeros() as usize;
                m &= m - 1;
                if p < limit {
                    out.push(p);
                }
            }
        }
        out
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

/// Clears bits `[lo, hi)` of `bits`.
fn clear_bits(bits: &[AtomicU64], lo: usize, hi: usize) {
    let mut w = lo;
    while w < hi {
        let (bit, n) = (w % 64, (64 - w % 64).min(hi - w));
        let mask = match n {
            64 => !0,
            n => ((1u64 << n) - 1) << bit,
        };
        bits[w / 64].fetch_and(!mask, Ordering::Relaxed);
        w += n;
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

    /// The set bits of `page`'s dirty words, as word offsets in the page.
    fn bits_of(log: &SatbLog, page: usize) -> Vec<usize> {
        let mut v = Vec::new();
        for (j, b) in log.page_bits(page).iter().enumerate() {
            let m = b.load(Ordering::Relaxed);
            v.extend((0..64).filter(|i| m & (1 << i) != 0).map(|i| j * 64 + i));
        }
        v
    }

    #[test]
    fn dirty_bits_mark_black_slots_given_older_objects_only() {
        let (start, cap) = (1usize << 30, 64 * PAGE_SIZE);
        let log = SatbLog::for_space(start, cap).unwrap();
        let black = start + 8 * PAGE_SIZE;
        let old = start + 3 * PAGE_SIZE + 16;
        // Off: nothing recorded.
        log.note_store(black + 8, old as u64);
        assert!(bits_of(&log, 8).is_empty());
        log.set_black_start(black);
        log.note_store(black + 8, old as u64); // black slot, older object: dirty
        log.note_store(black + 24, start as u64); // the space's first word: dirty
        log.note_store(black + 40, (black + 64) as u64); // a black object: clean
        log.note_store(black + 48, 0); // null: clean
        log.note_store(black + 56, (start + cap + 8) as u64); // outside (a large object): clean
        log.note_store(black - 8, old as u64); // below the block: clean
        log.note_store(start + cap, old as u64); // past the space (the arena): clean
        log.note_store(black + PAGE_SIZE + 8 * 70, old as u64); // next page, word 70
        assert_eq!(bits_of(&log, 8), vec![1, 3]);
        assert_eq!(bits_of(&log, 9), vec![70]);
        assert!(bits_of(&log, 7).is_empty());
        log.set_black_start(usize::MAX);
        log.note_store(black + 16, old as u64); // off again
        assert_eq!(bits_of(&log, 8), vec![1, 3]);
        // Clearing a range clears exactly it, across word boundaries.
        log.clear_dirty(black + 16, black + PAGE_SIZE + 8 * 70);
        assert_eq!(bits_of(&log, 8), vec![1]);
        assert_eq!(bits_of(&log, 9), vec![70]);
        log.clear_dirty(black, black + 2 * PAGE_SIZE);
        assert!(bits_of(&log, 8).is_empty() && bits_of(&log, 9).is_empty());
        // Without a bitmap nothing is recorded and pages have no bits.
        let plain = SatbLog::default();
        plain.set_black_start(0);
        plain.note_store(black, old as u64);
        assert!(plain.page_bits(8).is_empty());
    }

    #[test]
    fn watched_prefix_pages_record_their_highest_old_reference() {
        let (start, cap) = (1usize << 30, 64 * PAGE_SIZE);
        let log = SatbLog::for_space(start, cap).unwrap();
        let w = |off: usize| start + off;
        // Not watching: no view, no flags.
        assert_eq!(log.prefix_watch().end, 0);
        assert!(!log.prefix_refs_stay(0, usize::MAX));
        log.watch_prefix(4);
        let watch = log.prefix_watch();
        assert_eq!((watch.start, watch.end), (start, w(4 * PAGE_SIZE)));
        let top = w(32 * PAGE_SIZE);
        // Page 1: slots referring to words 100 and 900; null; a black
        // object (at the top); a large object outside the space.
        let vals = [w(800), w(7200), 0, top + 8, start + cap + 64];
        watch.note(w(PAGE_SIZE), vals.into_iter(), top);
        // Slots crossing from page 2 into page 3: one each.
        let slots = w(3 * PAGE_SIZE - 8);
        watch.note(slots, [w(8 * 40), w(8 * 41)].into_iter(), top);
        // A lower value later does not lower the maximum.
        watch.note(w(PAGE_SIZE + 8), [w(8)].into_iter(), top);
        // Word 900 is the highest page 1 refers to: it stays only if words
        // below 901 do not move.
        assert!(log.prefix_refs_stay(1, 901) && !log.prefix_refs_stay(1, 900));
        assert!(log.prefix_refs_stay(2, 41) && !log.prefix_refs_stay(2, 40));
        assert!(log.prefix_refs_stay(3, 42) && !log.prefix_refs_stay(3, 41));
        assert!(log.prefix_refs_stay(0, 0), "nothing recorded on page 0");
        assert!(!log.prefix_refs_stay(4, usize::MAX), "not watched");
        // The barrier flags a watched page given a reference into the space
        // while marking; null, large objects and unwatched pages are not
        // flagged.
        log.set_black_start(top);
        log.note_store(w(8), w(16) as u64); // page 0, old object
        log.note_store(w(2 * PAGE_SIZE), 0); // null
        log.note_store(w(3 * PAGE_SIZE), (start + cap + 64) as u64); // a large object
        log.note_store(w(5 * PAGE_SIZE), w(16) as u64); // not watched
        assert!(
            !log.prefix_refs_stay(0, usize::MAX),
            "flagged by the barrier"
        );
        assert!(log.prefix_refs_stay(2, 41) && log.prefix_refs_stay(3, 42));
        assert_eq!(log.prefix_stored_pages(4), vec![0]);
        // A black object flags its page too (it must be fixed: its card, and
        // a fallback to stop-the-world compacts the block).
        log.note_store(w(2 * PAGE_SIZE + 8), (top + 64) as u64);
        assert!(!log.prefix_refs_stay(2, usize::MAX));
        assert_eq!(log.prefix_stored_pages(4), vec![0, 2]);
        assert_eq!(log.prefix_stored_pages(0), Vec::<usize>::new());
        // Stopping ends the watch; the reset at the end of the cycle clears
        // what it recorded, for the next watch.
        log.watch_prefix(0);
        assert_eq!(log.prefix_watch().end, 0);
        assert!(!log.prefix_refs_stay(0, usize::MAX));
        log.reset_prefix_tables();
        log.watch_prefix(4);
        assert!(log.prefix_refs_stay(0, 0) && log.prefix_refs_stay(1, 0));
        assert!(log.prefix_stored_pages(4).is_empty());
    }

    #[test]
    fn dirty_pages_are_listed_once_and_counted_until_forgotten() {
        let (start, cap) = (1usize << 30, 256 * PAGE_SIZE);
        let log = SatbLog::for_space(start, cap).unwrap();
        let black = start + 8 * PAGE_SIZE;
        let old = (start + 16) as u64;
        assert_eq!(log.dirty_black_pages(usize::MAX), Some(vec![]));
        log.set_black_start(black);
        // Three slots on page 8 (one stored twice), one on page 10.
        for off in [8, 16, 8, 4000] {
            log.note_store(black + off, old);
        }
        log.note_store(black + 2 * PAGE_SIZE, old);
        log.note_store(black + 2 * PAGE_SIZE + 8, (black + 64) as u64); // clean
        assert_eq!(log.dirty_black_pages(3), None, "4 slots");
        assert_eq!(log.dirty_black_pages(4), Some(vec![8, 10]));
        // Every store from several threads: each page is listed once.
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = &log;
                s.spawn(move || {
                    for p in 20..40 {
                        log.note_store(start + p * PAGE_SIZE + 8 * (t + 1), old);
                    }
                });
            }
        });
        let mut listed = log.dirty_black_pages(usize::MAX).unwrap();
        listed.sort_unstable();
        let want: Vec<usize> = [8, 10].into_iter().chain(20..40).collect();
        assert_eq!(listed, want);
        // Forgetting clears the summary (the same page is listed again) and
        // the counts; the slots' own bits stay for whoever rewrites them.
        log.forget_dirty_pages(0, cap / PAGE_SIZE);
        assert_eq!(log.dirty_black_pages(0), Some(vec![]));
        assert_eq!(bits_of(&log, 10), vec![0]);
        log.note_store(black + 2 * PAGE_SIZE + 16, old);
        assert_eq!(log.dirty_black_pages(1), Some(vec![10]));
        // More pages than the list holds: none listed, the block flips.
        log.clear_dirty(black, start + cap);
        assert_eq!(log.dirty_black_pages(0), Some(vec![]));
        for p in 0..=DIRTY_PAGE_LIST {
            log.note_store(black + p * PAGE_SIZE, old);
        }
        assert_eq!(log.dirty_black_pages(usize::MAX), None);
        log.clear_dirty(black, start + cap);
        assert!(bits_of(&log, 8).is_empty());
        // Without a bitmap there is nothing to rewrite in the pause.
        assert_eq!(SatbLog::default().dirty_black_pages(usize::MAX), None);
    }

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
