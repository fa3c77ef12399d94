//! Producing to-space pages: [`Compactor::compact_page`] builds one page's
//! final bytes from the from-space, and [`Compactor::update_dense_page`]
//! fixes the references of a page of the dense prefix in place (and
//! covers its dead gaps with filler objects).
//!
//! `compact_page` is what every strategy uses (stop-the-world now, the
//! concurrent MOVE and COPY installers later), so it is written for speed:
//!
//! 1. **Copy.** Starting at the page's first live word (from the page-start
//!    table), copy contiguous runs of live words, one `memcpy` per run,
//!    until the page is full or live data ends; zero what is left.
//! 2. **Fix references.** Objects are packed in to-space, so walk them by
//!    size from the page's first object, whose header is read from the
//!    from-space when it starts on an earlier page; rewrite each reference
//!    slot that lies inside this page through the forwarding function.
//!
//! A page never reads or writes any other to-space page, so pages can be
//! compacted in any order and in parallel, which the concurrent collector
//! relies on.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::concurrent::fatal::fatal;
use crate::forwarding::{
    is_live, next_live, object_start, run_length, Forwarding, PageStart, PAGE_WORDS,
};
use crate::mapping::PAGE_SIZE;
use crate::object::{Header, Layout, WORD};

/// Tag of the filler objects written over dead gaps in the dense prefix
/// (byte arrays: the heap stays walkable object by object).
pub const FILLER_TAG: u16 = u16::MAX;

/// The raw header of a filler covering `words` (>= 1) words.
#[inline]
fn filler_header(words: usize) -> u64 {
    match Layout::byte_array(FILLER_TAG, (words - 1) * WORD) {
        Ok(l) if l.size() == words * WORD => l.header().raw(),
        _ => fatal("compact: a dead gap of the dense prefix has no filler layout"),
    }
}

/// Everything needed to compact any page of one collection.
///
/// Its methods read the old words at raw addresses (`from_start`, and the
/// dense prefix at `space_start`), so making one is `unsafe`
/// ([`Compactor::new`]); within the crate the collector builds it from the
/// cycle's own mappings.
#[derive(Clone, Copy, Debug)]
pub struct Compactor<'a> {
    /// The forwarding function.
    pub(crate) fwd: Forwarding<'a>,
    /// Page starts for to-space pages from the dense prefix on.
    pub(crate) pages: &'a [PageStart],
    /// Address of the moving space (to-space).
    pub(crate) space_start: usize,
    /// Address of the from-space alias: word `w` of the old space is at
    /// `from_start + w * 8` (for `w >= dense_words`).
    pub(crate) from_start: usize,
    /// Where the dense prefix's words are read and fixed in place:
    /// `space_start` when the world is stopped, `from_start` in a
    /// concurrent cycle (the prefix pages are fixed in the from-space and
    /// moved back).
    pub(crate) prefix_start: usize,
    /// The raw header of the object that crosses the end of the dense
    /// prefix (0 if none): read before the prefix is touched, because the
    /// compaction of the pages after the prefix needs it when the prefix
    /// page holding it may already be gone from the from-space.
    pub(crate) boundary_header: u64,
    /// The black block of a concurrent cycle (see [`Black`]).
    pub(crate) black: Black,
    /// In a young cycle, the old region (the whole dense prefix): which of
    /// its pages to fix and where their walks begin (`generation`).
    pub(crate) old: Option<OldPages<'a>>,
    /// With young collections and a black block, which stays young after
    /// the cycle: the card table and the block's to-space range
    /// `[lo, hi)`. A slot rewritten to point into it, on a page that will
    /// be old, gets its card marked (the next young cycle's remembered set
    /// must find it; the mutator's card mark was at the old address).
    pub(crate) young_cards: Option<(&'a crate::generation::CardTable, usize, usize)>,
    /// A full cycle's clean dense-prefix pages (`crate::clean`; empty
    /// otherwise): no reference on them moves and no gap changed, so their
    /// fix is a no-op ([`update_dense_page`](Self::update_dense_page)).
    pub(crate) clean: &'a [bool],
    /// Bytes from `space_start` to where the compacted objects begin: 0,
    /// except in the stale-reference stress mode, whose stop-the-world
    /// cycles compact to just above the old top every other cycle so that
    /// every object moves (`poison`).
    pub(crate) dest_shift: usize,
}

/// The old region of a young cycle, as its compactors see it: every page
/// below `fwd.dense_words` is old; only those with a dirty card can hold a
/// reference that moves (to a young object), and they are walked from the
/// object-start table rather than by mark bits (old objects are not
/// marked).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OldPages<'a> {
    /// Per old page: nonzero if its card was dirty at the final pause.
    pub dirty: &'a [u8],
    /// Per old page: where its walk begins (`generation::ObjectStarts`).
    pub starts: &'a [u64],
}

/// The black block of a concurrent cycle: the objects allocated while it
/// marked, old-space words `[fwd.end_words, end_words)` (the old region's
/// end is page-aligned). They are live by position and stay where they
/// are, so a reference into it does not change; each of its pages has its
/// dirty slots fixed in place and goes back, not compacted. `end_words ==
/// 0`: no black block.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Black {
    /// One past the block's last word (the top at the final pause).
    pub end_words: usize,
}

impl<'a> Compactor<'a> {
    /// A compactor over `fwd` and `pages` (as `cycle` computes them) for a space at `space_start` whose old words are readable at
    /// `from_start`.
    ///
    /// # Safety
    /// For as long as the compactor is used: the `fwd.end_words` words at
    /// `from_start` are readable, and the dense prefix's
    /// `fwd.dense_words` words at `space_start` readable and writable
    /// (`update_dense_page` rewrites them); no one else writes either
    /// range; and the tables describe that memory (every live word is part
    /// of an object whose header starts a live run).
    pub unsafe fn new(
        fwd: Forwarding<'a>,
        pages: &'a [PageStart],
        space_start: usize,
        from_start: usize,
    ) -> Compactor<'a> {
        Compactor {
            fwd,
            pages,
            space_start,
            from_start,
            prefix_start: space_start,
            boundary_header: 0,
            black: Black::default(),
            old: None,
            young_cards: None,
            clean: &[],
            dest_shift: 0,
        }
    }
}

/// The raw header of the object crossing the end of a dense prefix of
/// `dense` words (the first word after it is live but starts no object),
/// or 0 if none, read from the prefix at `prefix_start`. The concurrent
/// flip saves it before the prefix pages leave: the compaction of the
/// pages after the prefix needs it.
///
/// # Safety
/// `prefix_start` must hold the prefix's words, readable, and the
/// bitmaps must describe them.
pub(crate) unsafe fn boundary_header(
    live: &[u64],
    marks: &[u64],
    dense: usize,
    end_words: usize,
    prefix_start: usize,
) -> u64 {
    if dense == 0 || dense >= end_words || !is_live(live, dense) || is_live(marks, dense) {
        return 0;
    }
    read(prefix_start + object_start(marks, dense) * WORD)
}

/// Prefetches the cache lines of `[addr, addr + len)`. A dense-prefix
/// fixer reads its page from the first word to the last, one header per
/// small object, but the hardware prefetcher stops at every 4 KiB boundary
/// and starts over after a few misses; a hint for the whole next page
/// while this one is fixed hides that (`compact-prefix` at 75 %: the fix
/// about a third faster under every strategy, docs/benchmarks.md §3b).
/// The same hint for the sources of the next to-space page did not help
/// compaction (its `memmove`s stream whole live runs). A hint never
/// faults, so a page that is not mapped costs nothing but the hint.
#[inline(always)]
fn prefetch_lines(addr: usize, len: usize) {
    for line in (addr..addr + len).step_by(64) {
        crate::forwarding::prefetch_read(line as *const u8);
    }
}

/// Word `i` of a page buffer.
#[inline(always)]
fn word_at(page: &[u8], i: usize) -> u64 {
    match page[i * WORD..(i + 1) * WORD].try_into() {
        Ok(b) => u64::from_ne_bytes(b),
        Err(_) => fatal("compact: a word slice is not 8 bytes"),
    }
}

/// Read-only access to old object words during compaction. `Compactor`
/// reads the from-space only through this, which keeps the raw reads in one
/// place (they are plain loads of memory the collector owns).
#[inline(always)]
fn read(addr: usize) -> u64 {
    crate::object::load_word(addr)
}

impl Compactor<'_> {
    /// Number of to-space pages, dense prefix included.
    pub fn page_count(&self) -> usize {
        self.fwd.total_words().div_ceil(PAGE_WORDS)
    }

    /// Pages of the dense prefix (updated in place, not compacted).
    pub fn dense_pages(&self) -> usize {
        self.fwd.dense_words / PAGE_WORDS
    }

    /// New value of a reference slot holding `v`.
    #[inline(always)]
    pub fn forward_ref(&self, v: u64) -> u64 {
        let off = (v as usize).wrapping_sub(self.space_start);
        if off < self.fwd.end_words * WORD {
            (self.space_start + self.dest_shift + self.fwd.forward(off / WORD) * WORD) as u64
        } else {
            v // null, the black block or a large object: never moves
        }
    }

    /// Rewrites, in place, the reference slots at `[lo, hi)` (addresses of
    /// words the caller owns) through the forwarding function, in two
    /// passes: start loading every slot's forwarding entries, then rewrite
    /// (the lookups miss the cache; issued together the misses overlap).
    /// Null and unchanged slots are not written: a page none of whose
    /// references move keeps its bytes untouched (shared with a zygote
    /// after fork, for one). No allocation, no lock: fault path.
    /// Slots read at `prefix_start` live at the same offset from
    /// `space_start` once installed; one that now points into the young
    /// black block gets its card marked there (see `young_cards`).
    #[inline]
    pub(crate) fn rewrite_slots(&self, lo: usize, hi: usize) {
        self.rewrite(lo, hi, self.young_cards);
    }

    /// [`rewrite_slots`](Self::rewrite_slots) marking no card: for the
    /// black block's own pages, which stay young.
    #[inline]
    fn rewrite_slots_uncarded(&self, lo: usize, hi: usize) {
        self.rewrite(lo, hi, None);
    }

    #[inline(always)]
    fn rewrite(
        &self,
        lo: usize,
        hi: usize,
        cards: Option<(&crate::generation::CardTable, usize, usize)>,
    ) {
        for a in (lo..hi).step_by(WORD) {
            self.prefetch_ref(read(a));
        }
        for a in (lo..hi).step_by(WORD) {
            self.rewrite_one(a, cards);
        }
    }

    /// Rewrites the slot at `a` (see [`rewrite_slots`](Self::rewrite_slots)),
    /// marking its card in `cards` if it now points into the young block.
    #[inline(always)]
    fn rewrite_one(&self, a: usize, cards: Option<(&crate::generation::CardTable, usize, usize)>) {
        let v = read(a);
        if v != 0 {
            let nv = self.forward_ref(v);
            if nv != v {
                crate::object::store_word(a, nv);
            }
            if let Some((c, ylo, yhi)) = cards {
                if (ylo..yhi).contains(&(nv as usize)) {
                    c.set(a - self.prefix_start + self.space_start);
                }
            }
        }
    }

    /// Starts loading the forwarding entries of a reference holding `v`.
    #[inline(always)]
    pub(crate) fn prefetch_ref(&self, v: u64) {
        let off = (v as usize).wrapping_sub(self.space_start);
        if off < self.fwd.end_words * WORD {
            self.fwd.prefetch(off / WORD);
        }
    }

    /// Where the old word `w` can be read now.
    #[inline(always)]
    fn old_word_addr(&self, w: usize) -> usize {
        if w < self.fwd.dense_words {
            self.prefix_start + w * WORD
        } else {
            self.from_start + w * WORD
        }
    }

    /// Produces the final contents of to-space page `page` (index from the
    /// start of the space; must be at or above the dense prefix) in `dst`.
    /// Returns the number of live bytes copied.
    ///
    /// Runs on the fault path (in a SIGBUS handler), so it and everything
    /// it calls (the forwarding lookups, `run_length`, `next_live`) must
    /// not allocate, lock, format or unwind: an impossible state (a corrupt
    /// heap) ends in `fatal` instead of a panic. The slice indexing that
    /// remains (bitmaps, offsets, page starts, the page buffer, `slots`) is
    /// in range by construction: every index is derived from a live word
    /// or a to-space page of this collection, whose tables cover them.
    pub fn compact_page(&self, page: usize, dst: &mut [u8]) -> usize {
        self.compact_page_with(page, dst, None)
    }

    /// The raw header of the object that starts page `page` (read before an
    /// in-place compaction may overwrite it).
    pub fn first_header(&self, page: usize) -> u64 {
        read(self.old_word_addr(self.pages[page - self.dense_pages()].first_object))
    }

    /// [`compact_page`](Self::compact_page), with the first object's header
    /// supplied by the caller (in-place compaction overwrites old headers
    /// of objects that begin on earlier pages).
    pub fn compact_page_with(
        &self,
        page: usize,
        dst: &mut [u8],
        first_header: Option<u64>,
    ) -> usize {
        if dst.len() != PAGE_SIZE {
            fatal("compact_page: destination is not one page");
        }
        let ps = self.pages[page - self.dense_pages()];
        let total = self.fwd.total_words();
        let page_word = page * PAGE_WORDS;
        let want = (total - page_word).min(PAGE_WORDS);

        // 1. Copy live runs.
        let mut filled = 0;
        let mut w = ps.first_word;
        while filled < want {
            let n = run_length(self.fwd.live, w, want - filled);
            // SAFETY: [w, w+n) are live words of the old space, readable at
            // from_start + w*8 (the from-space holds the old pages for the
            // whole compaction); dst has room for n more words.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (self.from_start + w * WORD) as *const u8,
                    dst.as_mut_ptr().add(filled * WORD),
                    n * WORD,
                );
            }
            filled += n;
            if filled < want {
                w = next_live(self.fwd.live, w + n, self.fwd.end_words)
                    .unwrap_or_else(|| fatal("compact_page: live words end early"));
            }
        }
        dst[filled * WORD..].fill(0);

        // 2. Fix references, walking objects in to-space order, in two
        //    passes: find every non-null reference slot of the page and
        //    prefetch its forwarding entries, then rewrite the slots. The
        //    lookups of random references miss the cache; issued together
        //    the misses overlap instead of each waiting for the last.
        let page_end = page_word + filled;
        let mut slots = [0u16; PAGE_WORDS];
        let mut nslots = 0;
        let mut obj_to = self.fwd.forward(ps.first_object);
        let raw_first = match first_header {
            Some(h) => h,
            None if ps.first_object < self.fwd.dense_words && self.boundary_header != 0 => {
                self.boundary_header
            }
            None => read(self.old_word_addr(ps.first_object)),
        };
        let mut header = Header::from_raw(raw_first)
            .unwrap_or_else(|| fatal("compact_page: bad first object header"));
        loop {
            let refs = header.ref_count();
            if refs > 0 {
                let lo = (obj_to + 1).max(page_word);
                let hi = (obj_to + 1 + refs).min(page_end);
                for s in lo..hi {
                    let i = s - page_word;
                    let v = word_at(dst, i);
                    if v != 0 {
                        self.prefetch_ref(v);
                        slots[nslots] = i as u16;
                        nslots += 1;
                    }
                }
            }
            obj_to += header.size_words();
            if obj_to >= page_end {
                break;
            }
            let raw = word_at(dst, obj_to - page_word);
            header = Header::from_raw(raw)
                .unwrap_or_else(|| fatal("compact_page: bad object header in a to-space page"));
        }
        let mut young = false;
        for &i in &slots[..nslots] {
            let i = usize::from(i);
            let v = self.forward_ref(word_at(dst, i));
            dst[i * WORD..(i + 1) * WORD].copy_from_slice(&v.to_ne_bytes());
            if let Some((_, ylo, yhi)) = self.young_cards {
                young |= (ylo..yhi).contains(&(v as usize));
            }
        }
        if young {
            if let Some((c, _, _)) = self.young_cards {
                c.set(self.space_start + page * PAGE_SIZE);
            }
        }
        filled * WORD
    }

    /// Fixes, in place, the reference slots that lie in dense-prefix page
    /// `page` (its old bytes at `prefix_start`), and writes a filler
    /// object over every dead gap that starts in the page, so that the
    /// prefix stays walkable object by object. Objects are found from the
    /// bitmaps (`marks` holds the object starts), never through fillers, so
    /// pages can be fixed in any order and in parallel: a page writes only
    /// its own words and reads, besides them, only the header of the object
    /// that crosses into it (a live word no other page writes).
    ///
    /// Runs on the fault path (concurrent cycles): no allocation, no lock,
    /// no unwinding; a corrupt heap ends in `fatal`.
    ///
    /// Returns `false` for a clean page ([`clean`](Self::clean)), left as
    /// it was.
    pub fn update_dense_page(&self, page: usize, marks: &[u64]) -> bool {
        if crate::clean::is_clean(self.clean, page) {
            return false;
        }
        if let Some(old) = self.old {
            // A young cycle's old page: fixed only if written since the
            // last cycle (a clean one refers to old objects only).
            if old.dirty.get(page).is_some_and(|&d| d != 0) {
                crate::generation::old_page_slots(
                    read,
                    self.prefix_start,
                    old.starts,
                    page,
                    self.fwd.dense_words,
                    |lo, hi| self.rewrite_slots(lo, hi),
                );
            }
            return true;
        }
        let live = self.fwd.live;
        let dense = self.fwd.dense_words;
        let page_word = page * PAGE_WORDS;
        let page_end = (page_word + PAGE_WORDS).min(dense);
        let at = |w: usize| self.prefix_start + w * WORD;
        // Two passes, as in `compact_page_with`: walk the page's objects
        // (writing fillers) and list its non-null slots, prefetching their
        // forwarding entries; then rewrite them.
        let mut slots = [0u16; PAGE_WORDS];
        let mut nslots = 0;
        if page_word + PAGE_WORDS < dense {
            prefetch_lines(at(page_word + PAGE_WORDS), PAGE_SIZE);
        }
        let mut w = if is_live(live, page_word) {
            object_start(marks, page_word)
        } else {
            page_word
        };
        while w < page_end {
            if !is_live(live, w) {
                // A dead gap: it starts here unless it began on an earlier
                // page (whose fixer covers it).
                let next = next_live(live, w, dense).unwrap_or(dense);
                if w > page_word || w == 0 || is_live(live, w - 1) {
                    crate::object::store_word(at(w), filler_header(next - w));
                }
                w = next;
                continue;
            }
            let raw = read(at(w));
            let h = Header::from_raw(raw).unwrap_or_else(|| {
                fatal("update_dense_page: bad object header in the dense prefix")
            });
            let lo = (w + 1).max(page_word);
            let hi = (w + 1 + h.ref_count()).min(page_word + PAGE_WORDS);
            for s in lo..hi {
                let v = read(at(s));
                if v != 0 {
                    self.prefetch_ref(v);
                    slots[nslots] = (s - page_word) as u16;
                    nslots += 1;
                }
            }
            w += h.size_words();
        }
        // Second pass: the forwarding entries of the whole page's slots
        // were requested above, so their misses overlapped.
        let page_addr = at(page_word);
        for &i in &slots[..nslots] {
            self.rewrite_one(page_addr + usize::from(i) * WORD, self.young_cards);
        }
        true
    }
}

impl Compactor<'_> {
    /// Fixes, in place (at `prefix_start`), the dirty slots of page `page`
    /// of the black block: `bits` are the page's dirty-slot bits
    /// (`satb::SatbLog::page_bits`), cleared here. Only those slots can hold
    /// a reference that moves (a black object's slots start zero and change
    /// only through the barrier, which sets the bit for a reference below
    /// the block); the rest of the page is not read. Zeroes the words past
    /// the block's end on its last page (they may hold stale bytes, and
    /// allocation continues right after the block). Any order, in parallel,
    /// fault path (no allocation, no lock). Returns the slots rewritten.
    pub(crate) fn update_black_page(&self, page: usize, bits: &[AtomicU64]) -> usize {
        let page_word = page * PAGE_WORDS;
        let page_end = page_word + PAGE_WORDS;
        let at = |w: usize| self.prefix_start + w * WORD;
        for w in self.black.end_words.max(page_word)..page_end {
            crate::object::store_word(at(w), 0);
        }
        let mut n = 0;
        for (j, b) in bits.iter().enumerate() {
            let mut m = b.load(Ordering::Relaxed);
            if m == 0 {
                continue;
            }
            b.store(0, Ordering::Relaxed);
            while m != 0 {
                let w = page_word + j * 64 + m.trailing_zeros() as usize;
                m &= m - 1;
                self.rewrite_slots_uncarded(at(w), at(w + 1));
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{Mapping, Prot};

    const CHILD_ENV: &str = "MOVEGC_COMPACT_CHILD";

    /// Child: compacts a page whose first object has a corrupt header.
    #[test]
    fn child_corrupt_header() {
        if std::env::var(CHILD_ENV).is_err() {
            return;
        }
        let from = Mapping::new(PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite).unwrap();
        // Word 0 is live and 0: not a valid header.
        let live = [1u64];
        let offsets = [0u32, 1];
        let pages = [PageStart {
            first_word: 0,
            first_object: 0,
        }];
        let c = Compactor {
            fwd: Forwarding {
                live: &live,
                offsets: &offsets,
                dense_words: 0,
                end_words: 1,
            },
            pages: &pages,
            space_start: from.start(),
            from_start: from.start(),
            prefix_start: from.start(),
            boundary_header: 0,
            black: Black::default(),
            old: None,
            young_cards: None,
            clean: &[],
            dest_shift: 0,
        };
        let mut buf = vec![0u8; PAGE_SIZE];
        c.compact_page(0, &mut buf);
        std::process::exit(0);
    }

    /// `compact_page` runs in a SIGBUS handler: on a corrupt heap it must
    /// abort with a fixed message, never panic (unwinding out of a signal
    /// handler, formatting and allocating on the way).
    #[test]
    fn corrupt_heap_aborts_without_panicking() {
        let err = crate::concurrent::fatal::child_aborts(
            "compact::tests::child_corrupt_header",
            CHILD_ENV,
        );
        assert!(
            err.contains("movegc: fatal: compact_page: bad first object header"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
