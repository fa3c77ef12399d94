//! Post-compaction addresses from the live-words bitmap: pure functions, no
//! I/O, no globals.
//!
//! Marking leaves two bitmaps over the moving space, one bit per 8-byte word:
//!
//! * `live`: **every** word of every live object is set;
//! * `marks`: only the first word (the header) of every live object is set.
//!
//! The space is cut into *chunks* of 64 words (512 bytes), one `live` bitmap
//! word each. An exclusive prefix sum of the chunks' popcounts gives, for
//! every chunk, the to-space word offset of its first live word. Sliding
//! compaction keeps live objects in address order and packs them, so:
//!
//! ```text
//! forward(w) = offsets[w / 64] + popcount(live[w / 64] & ((1 << (w % 64)) - 1))
//!
//!  live bits   chunk 0          chunk 1          chunk 2
//!             |1110011100000000|0000111111000000|1100000000000000|
//!  popcount          6                6                2
//!  offsets           0                6               12     (total 14)
//!  forward(word 21 = chunk 1, bit 5) = 6 + popcount(bits 0..5 of chunk 1) = 6 + 1 = 7
//! ```
//!
//! One array load and one popcount per reference: no forwarding pointers and
//! no second pass over the heap. A *dense prefix* of `dense_words` words
//! (whole pages that are nearly all live) is not moved at all: addresses
//! below it forward to themselves and the offsets above it start at
//! `dense_words`.
//!
//! For each to-space page, [`page_starts`] records the from-space word that
//! lands on the page's first word and the start of the object containing
//! it, so any single page can be compacted independently (the concurrent
//! collector compacts pages in any order).
//!
//! Word indices here are relative to the start of the moving space.
//! [`compute_offsets`] and [`page_starts`] split the space into segments
//! and run them in parallel on the caller's rayon pool (they run inside the
//! pause).

use rayon::prelude::*;

/// Words per chunk: one 64-bit bitmap word.
pub const CHUNK_WORDS: usize = 64;
/// Bytes per chunk.
pub const CHUNK_BYTES: usize = CHUNK_WORDS * crate::object::WORD;
/// Words per 4 KiB page.
pub const PAGE_WORDS: usize = crate::mapping::PAGE_SIZE / crate::object::WORD;

/// The forwarding function of one collection: bitmap, chunk offsets and the
/// dense prefix. Cheap to copy; shared by all compacting threads.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding<'a> {
    /// The live-words bitmap.
    pub live: &'a [u64],
    /// To-space word offset of each chunk's first live word (exclusive scan
    /// of the chunk popcounts, starting at `dense_words`); one entry per
    /// chunk of the compacted range plus one holding the total.
    pub offsets: &'a [u32],
    /// Words below this index do not move.
    pub dense_words: usize,
    /// One past the last from-space word that may hold a live object (the
    /// allocation top at marking time).
    pub end_words: usize,
}

impl Forwarding<'_> {
    /// New word index of the live word `w`.
    #[inline(always)]
    pub fn forward(&self, w: usize) -> usize {
        if w < self.dense_words {
            return w;
        }
        let c = w / CHUNK_WORDS;
        let below = self.live[c] & ((1u64 << (w % CHUNK_WORDS)) - 1);
        self.offsets[c] as usize + below.count_ones() as usize
    }

    /// Hints the CPU to load the entries [`forward`](Self::forward) will
    /// read for word `w` (no effect on correctness; out-of-range `w` is
    /// ignored).
    #[inline(always)]
    pub fn prefetch(&self, w: usize) {
        let c = w / CHUNK_WORDS;
        if let (Some(l), Some(o)) = (self.live.get(c), self.offsets.get(c)) {
            prefetch_read(l as *const u64 as *const u8);
            prefetch_read(o as *const u32 as *const u8);
        }
    }

    /// Total words after compaction (dense prefix included).
    pub fn total_words(&self) -> usize {
        self.offsets[chunks_for(self.end_words)] as usize
    }
}

/// Number of chunks covering `words` words.
pub const fn chunks_for(words: usize) -> usize {
    words.div_ceil(CHUNK_WORDS)
}

/// Fills `offsets[c]` for chunks `c` from `dense_words / 64` up to
/// `chunks_for(end_words)` (inclusive: the last entry is the total) with
/// the exclusive prefix sum of live words, starting at `dense_words`.
/// Returns the total number of words after compaction.
///
/// `dense_words` must be a multiple of [`CHUNK_WORDS`].
pub fn compute_offsets(
    live: &[u64],
    dense_words: usize,
    end_words: usize,
    offsets: &mut [u32],
) -> usize {
    debug_assert_eq!(dense_words % CHUNK_WORDS, 0);
    let first = dense_words / CHUNK_WORDS;
    let last = chunks_for(end_words);
    // Two passes over segments, in parallel on the current rayon pool:
    // each segment's popcount, a short sequential scan for the segments'
    // bases, then each segment's prefix sum from its base. This runs in the
    // pause, so it should use every collector thread.
    let live = &live[first..last];
    let sums: Vec<u64> = live
        .par_chunks(SEGMENT_CHUNKS)
        .map(|seg| seg.iter().map(|w| u64::from(w.count_ones())).sum())
        .collect();
    let mut bases = Vec::with_capacity(sums.len());
    let mut acc = dense_words as u64;
    for s in sums {
        bases.push(acc);
        acc += s;
    }
    assert!(
        acc <= u32::MAX as u64,
        "moving space above 32 GiB of live words"
    );
    offsets[first..last]
        .par_chunks_mut(SEGMENT_CHUNKS)
        .zip(live.par_chunks(SEGMENT_CHUNKS))
        .zip(bases.par_iter())
        .for_each(|((out, seg), &base)| {
            let mut a = base;
            for (o, w) in out.iter_mut().zip(seg) {
                *o = a as u32;
                a += u64::from(w.count_ones());
            }
        });
    offsets[last] = acc as u32;
    acc as usize
}

/// Extends offsets [`compute_offsets`] filled up to `from_words` (its
/// `end_words`, a multiple of [`CHUNK_WORDS`]; `offsets[from_words / 64]`
/// holds its total) over the chunks up to `end_words`, whose live words it
/// did not count (a region marked since: everything a concurrent cycle
/// allocated while it marked, walked in its final pause). Returns the new
/// total. Serial: the region is what mutators allocated in one marking.
pub fn extend_offsets(
    live: &[u64],
    from_words: usize,
    end_words: usize,
    offsets: &mut [u32],
) -> usize {
    assert_eq!(
        from_words % CHUNK_WORDS,
        0,
        "extending from a chunk boundary"
    );
    let (first, last) = (from_words / CHUNK_WORDS, chunks_for(end_words));
    let mut acc = u64::from(offsets[first]);
    for c in first..last {
        offsets[c] = acc as u32;
        acc += u64::from(live[c].count_ones());
    }
    assert!(
        acc <= u32::MAX as u64,
        "moving space above 32 GiB of live words"
    );
    offsets[last] = acc as u32;
    acc as usize
}

/// Chunks per parallel segment of [`compute_offsets`] and [`page_starts`]
/// (8 MiB of heap).
const SEGMENT_CHUNKS: usize = 1 << 14;

/// Position of the `n`-th (0-based) set bit of `w`. `w` must have more than
/// `n` bits set.
#[inline]
pub fn nth_set_bit(mut w: u64, n: u32) -> u32 {
    debug_assert!(w.count_ones() > n);
    for _ in 0..n {
        w &= w - 1;
    }
    w.trailing_zeros()
}

/// Whether bit `w` of a bitmap (`live` or `marks`) is set.
#[inline(always)]
pub fn is_live(bits: &[u64], w: usize) -> bool {
    (bits[w / CHUNK_WORDS] >> (w % CHUNK_WORDS)) & 1 != 0
}

/// Start of the object containing word `w`: the last `marks` bit at or
/// before `w`. `w` must lie inside a live object.
#[inline]
pub fn object_start(marks: &[u64], w: usize) -> usize {
    let mut c = w / CHUNK_WORDS;
    let bit = w % CHUNK_WORDS;
    let mut m = marks[c] & (u64::MAX >> (63 - bit));
    while m == 0 {
        c -= 1;
        m = marks[c];
    }
    c * CHUNK_WORDS + 63 - m.leading_zeros() as usize
}

/// First live word at or after `w` and before `end`.
#[inline]
pub fn next_live(live: &[u64], w: usize, end: usize) -> Option<usize> {
    if w >= end {
        return None;
    }
    let mut c = w / CHUNK_WORDS;
    let mut m = live[c] & (u64::MAX << (w % CHUNK_WORDS));
    let last = chunks_for(end);
    loop {
        if m != 0 {
            let found = c * CHUNK_WORDS + m.trailing_zeros() as usize;
            return (found < end).then_some(found);
        }
        c += 1;
        if c >= last {
            return None;
        }
        m = live[c];
    }
}

/// Length of the run of consecutive live words starting at the live word
/// `w`, capped at `max`.
#[inline]
pub fn run_length(live: &[u64], w: usize, max: usize) -> usize {
    let mut c = w / CHUNK_WORDS;
    let bit = w % CHUNK_WORDS;
    let mut n = (live[c] >> bit).trailing_ones() as usize;
    if n < CHUNK_WORDS - bit {
        return n.min(max);
    }
    while n < max {
        c += 1;
        if c >= live.len() {
            break;
        }
        let t = live[c].trailing_ones() as usize;
        n += t;
        if t < CHUNK_WORDS {
            break;
        }
    }
    n.min(max)
}

/// Where one to-space page's contents begin in the from-space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStart {
    /// The live from-space word that lands on the page's first word.
    pub first_word: usize,
    /// Start of the object containing `first_word` (it may begin on an
    /// earlier page).
    pub first_object: usize,
}

/// Computes a [`PageStart`] for every to-space page at or above the dense
/// prefix, i.e. pages `dense_words / PAGE_WORDS .. ceil(total / PAGE_WORDS)`.
/// `out[i]` describes page `dense_words / PAGE_WORDS + i`.
///
/// `dense_words` must be a multiple of [`PAGE_WORDS`].
pub fn page_starts(f: &Forwarding<'_>, marks: &[u64], out: &mut Vec<PageStart>) {
    debug_assert_eq!(f.dense_words % PAGE_WORDS, 0);
    out.clear();
    page_starts_from(f, marks, out, f.dense_words);
}

/// Appends to `out` the [`PageStart`]s of the to-space pages that begin
/// among the live words at or above `from_words` (a multiple of
/// [`CHUNK_WORDS`], at or above the dense prefix): after [`page_starts`]
/// up to `from_words` and [`extend_offsets`] from there, `out` is what
/// [`page_starts`] over the whole range would give.
pub fn page_starts_from(
    f: &Forwarding<'_>,
    marks: &[u64],
    out: &mut Vec<PageStart>,
    from_words: usize,
) {
    debug_assert_eq!(from_words % CHUNK_WORDS, 0);
    debug_assert!(from_words >= f.dense_words);
    let total = f.total_words();
    let first = from_words / CHUNK_WORDS;
    let last = chunks_for(f.end_words);
    // Segments of chunks in parallel (on the current rayon pool): the page
    // starts inside a segment are the multiples of PAGE_WORDS (from the
    // dense prefix's end) that fall among its live words in to-space
    // order, so each segment finds its own.
    let segments: Vec<usize> = (first..last).step_by(SEGMENT_CHUNKS).collect();
    let parts: Vec<Vec<PageStart>> = segments
        .par_iter()
        .map(|&a| {
            let b = (a + SEGMENT_CHUNKS).min(last);
            let lo = f.offsets[a] as usize;
            // The first page start at or after this segment's first word.
            let mut next = f.dense_words + (lo - f.dense_words).div_ceil(PAGE_WORDS) * PAGE_WORDS;
            let mut v = Vec::new();
            for c in a..b {
                if next >= total {
                    break;
                }
                let lw = f.live[c];
                let n = lw.count_ones() as usize;
                let off = f.offsets[c] as usize;
                // Every page start that falls inside this chunk's live words.
                while next < off + n {
                    let bit = nth_set_bit(lw, (next - off) as u32) as usize;
                    let w = c * CHUNK_WORDS + bit;
                    v.push(PageStart {
                        first_word: w,
                        first_object: object_start(marks, w),
                    });
                    next += PAGE_WORDS;
                }
            }
            v
        })
        .collect();
    out.reserve(parts.iter().map(Vec::len).sum());
    for p in parts {
        out.extend(p);
    }
}

/// Picks the dense prefix: the longest run of whole pages from the start of
/// the space in which every page is at least `threshold` (0..=1) live.
/// Returns its length in words (a multiple of [`PAGE_WORDS`]).
pub fn dense_prefix(live: &[u64], end_words: usize, threshold: f64) -> usize {
    let need = (threshold * PAGE_WORDS as f64).ceil() as u32;
    let full_pages = end_words / PAGE_WORDS;
    let mut p = 0;
    while p < full_pages && page_live_words(live, p) >= need {
        p += 1;
    }
    p * PAGE_WORDS
}

/// Live words of page `page` in the live-words bitmap (0 past its end).
pub fn page_live_words(live: &[u64], page: usize) -> u32 {
    const PER_PAGE: usize = PAGE_WORDS / CHUNK_WORDS;
    live.get(page * PER_PAGE..(page + 1) * PER_PAGE)
        .map_or(0, |w| w.iter().map(|x| x.count_ones()).sum())
}

/// A prefetch hint for the cache line holding `p`.
#[inline(always)]
pub(crate) fn prefetch_read(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults, whatever the address,
    // and has no architectural effect; SSE is part of the x86_64 baseline.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    /// The parallel offsets and page starts equal a plain sequential scan
    /// on a bitmap spanning many segments (random runs of live words, so
    /// page starts fall in every position, also on segment boundaries).
    #[test]
    fn segmented_scans_match_a_sequential_scan() {
        let chunks = 7 * super::SEGMENT_CHUNKS + 123;
        let end_words = chunks * CHUNK_WORDS - 5;
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut live = vec![0u64; chunks];
        let mut marks = vec![0u64; chunks];
        // Objects of 1-40 words, each live with probability 1/2.
        let mut w = 0;
        while w < end_words {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let size = (1 + x % 40) as usize;
            if x >> 63 == 1 {
                marks[w / 64] |= 1 << (w % 64);
                for v in w..(w + size).min(end_words) {
                    live[v / 64] |= 1 << (v % 64);
                }
            }
            w += size;
        }
        for dense in [0, 3 * PAGE_WORDS] {
            // Sequential reference.
            let mut want_off = vec![0u32; chunks + 1];
            let mut acc = dense as u64;
            for c in dense / CHUNK_WORDS..chunks {
                want_off[c] = acc as u32;
                acc += u64::from(live[c].count_ones());
            }
            want_off[chunks] = acc as u32;
            let mut off = vec![0u32; chunks + 1];
            let total = compute_offsets(&live, dense, end_words, &mut off);
            assert_eq!(total as u64, acc);
            assert_eq!(off, want_off);
            let fwd = Forwarding {
                live: &live,
                offsets: &off,
                dense_words: dense,
                end_words,
            };
            let mut starts = Vec::new();
            page_starts(&fwd, &marks, &mut starts);
            // Every page start: the live word whose forward() is the page's
            // first word.
            let pages = total.div_ceil(PAGE_WORDS) - dense / PAGE_WORDS;
            assert_eq!(starts.len(), pages);
            let mut k = 0;
            for v in dense..end_words {
                if live[v / 64] >> (v % 64) & 1 == 1 && fwd.forward(v) % PAGE_WORDS == 0 {
                    assert_eq!(starts[k].first_word, v, "page {k}");
                    assert_eq!(starts[k].first_object, object_start(&marks, v));
                    k += 1;
                }
            }
            assert_eq!(k, pages);
        }
    }

    use super::*;

    fn set(bits: &mut [u64], from: usize, len: usize) {
        for w in from..from + len {
            bits[w / 64] |= 1 << (w % 64);
        }
    }

    #[test]
    fn doc_example() {
        // chunk 0: bits 0-2, 5-7; chunk 1: 4-9; chunk 2: 0-1
        let mut live = vec![0u64; 3];
        set(&mut live, 0, 3);
        set(&mut live, 5, 3);
        set(&mut live, 64 + 4, 6);
        set(&mut live, 128, 2);
        let mut offsets = vec![0u32; 4];
        assert_eq!(compute_offsets(&live, 0, 192, &mut offsets), 14);
        assert_eq!(offsets, vec![0, 6, 12, 14]);
        let f = Forwarding {
            live: &live,
            offsets: &offsets,
            dense_words: 0,
            end_words: 192,
        };
        assert_eq!(f.forward(5), 3);
        assert_eq!(f.forward(64 + 5), 7);
        assert_eq!(f.forward(129), 13);
    }

    #[test]
    fn helpers() {
        assert_eq!(nth_set_bit(0b1011_0100, 0), 2);
        assert_eq!(nth_set_bit(0b1011_0100, 3), 7);
        let mut live = vec![0u64; 4];
        set(&mut live, 60, 80); // crosses two chunk boundaries
        assert_eq!(run_length(&live, 60, 1000), 80);
        assert_eq!(run_length(&live, 60, 10), 10);
        assert_eq!(run_length(&live, 100, 1000), 40);
        assert_eq!(next_live(&live, 0, 256), Some(60));
        assert_eq!(next_live(&live, 140, 256), None);
        let mut marks = vec![0u64; 4];
        set(&mut marks, 60, 1);
        set(&mut marks, 130, 1);
        assert_eq!(object_start(&marks, 129), 60);
        assert_eq!(object_start(&marks, 130), 130);
        assert_eq!(object_start(&marks, 200), 130);
    }

    #[test]
    fn dense_prefix_stops_at_first_sparse_page() {
        let mut live = vec![0u64; 3 * 8];
        set(&mut live, 0, 512); // page 0 full
        set(&mut live, 512, 500); // page 1 ~98%
        set(&mut live, 1024, 100); // page 2 sparse
        assert_eq!(dense_prefix(&live, 3 * 512, 0.95), 1024);
        assert_eq!(dense_prefix(&live, 3 * 512, 1.0), 512);
    }
}
