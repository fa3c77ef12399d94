//! Property tests of the bitmap forwarding math (`forwarding`) and of page
//! compaction (`Compactor::compact_page` / `update_dense_page`) against naive
//! reference implementations.
//!
//! The model: a space of up to 64 pages of words holding objects laid out
//! back to back (mostly small, some of up to 2000 words so that they straddle
//! several pages), each live or dead. From it we build the `live` (every word
//! of every live object) and `marks` (first word of every live object)
//! bitmaps exactly as marking would, and check every function against a
//! straightforward loop over the object list.

#![allow(clippy::needless_range_loop)] // naive reference implementations index on purpose

use std::alloc::Layout as AllocLayout;

use movegc_gc::compact::Compactor;
use movegc_gc::forwarding::{
    chunks_for, compute_offsets, dense_prefix, extend_offsets, next_live, nth_set_bit,
    object_start, page_starts, page_starts_from, run_length, Forwarding, PageStart, CHUNK_WORDS,
    PAGE_WORDS,
};
use movegc_gc::{Header, Layout};
use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;

const PW: usize = PAGE_WORDS;
const MAX_WORDS: usize = 64 * PW;
const POISON: u64 = 0xa5a5_a5a5_a5a5_a5a5;
/// Tag of the dense-prefix fillers (mirrors `cycle::FILLER_TAG`).
const FILLER_TAG: u16 = u16::MAX;

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Deterministic data from one seed (the `fastrand` generator).
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.u64(..)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.0.u64(..100) < percent
    }
}

fn bit(bits: &[u64], w: usize) -> bool {
    bits[w / 64] >> (w % 64) & 1 != 0
}

fn set_bit(bits: &mut [u64], w: usize) {
    bits[w / 64] |= 1 << (w % 64);
}

fn cfg(cases: u32) -> PtConfig {
    PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The model space
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ObjSpec {
    size: usize,
    live_u: f64,
    kind: u8,
    aux: u32,
}

#[derive(Clone, Debug)]
struct Obj {
    start: usize,
    size: usize,
    live: bool,
    kind: u8,
    aux: u32,
}

impl Obj {
    fn end(&self) -> usize {
        self.start + self.size
    }
}

#[derive(Clone)]
struct Space {
    n: usize,
    objs: Vec<Obj>,
    live: Vec<u64>,
    marks: Vec<u64>,
    /// `live_prefix[w]` = live words below `w` (n + 1 entries).
    live_prefix: Vec<usize>,
    /// Index in `objs` of the object covering each word.
    owner: Vec<u32>,
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Compact rendering for shrunk counterexamples.
        write!(f, "Space {{ n: {}, objs: [", self.n)?;
        for o in &self.objs {
            write!(
                f,
                "{}{}@{} ",
                if o.live { "L" } else { "d" },
                o.size,
                o.start
            )?;
        }
        write!(f, "] }}")
    }
}

impl Space {
    fn build(frac: f64, limit: usize, specs: Vec<ObjSpec>) -> Space {
        let mut objs = Vec::new();
        let mut n = 0;
        for s in specs {
            if n + s.size > limit {
                break;
            }
            objs.push(Obj {
                start: n,
                size: s.size,
                live: s.live_u < frac,
                kind: s.kind,
                aux: s.aux,
            });
            n += s.size;
        }
        let chunks = chunks_for(n);
        let mut live = vec![0u64; chunks];
        let mut marks = vec![0u64; chunks];
        let mut owner = vec![0u32; n];
        for (i, o) in objs.iter().enumerate() {
            for w in o.start..o.end() {
                owner[w] = i as u32;
                if o.live {
                    set_bit(&mut live, w);
                }
            }
            if o.live {
                set_bit(&mut marks, o.start);
            }
        }
        let mut live_prefix = vec![0usize; n + 1];
        for w in 0..n {
            live_prefix[w + 1] = live_prefix[w] + bit(&live, w) as usize;
        }
        Space {
            n,
            objs,
            live,
            marks,
            live_prefix,
            owner,
        }
    }

    fn live_words(&self) -> usize {
        self.live_prefix[self.n]
    }

    /// The reference forwarding function: identity below the dense prefix,
    /// `dense + live words in [dense, w)` above it.
    fn naive_forward(&self, dense: usize, w: usize) -> usize {
        if w < dense {
            w
        } else {
            dense + self.live_prefix[w] - self.live_prefix[dense]
        }
    }

    fn naive_total(&self, dense: usize) -> usize {
        dense + self.live_prefix[self.n] - self.live_prefix[dense]
    }

    fn live_objs(&self) -> impl Iterator<Item = &Obj> {
        self.objs.iter().filter(|o| o.live)
    }

    /// The layout of object `o` (its size in words is `o.size`).
    fn layout(&self, o: &Obj) -> Layout {
        let s = o.size;
        let aux = o.aux as usize;
        let pad = (aux >> 20) % 8; // 0..7 unused bytes in the last data word
        let l = match o.kind % 4 {
            0 => {
                let nrefs = aux % s;
                let rem = s - 1 - nrefs;
                let data = if rem == 0 { 0 } else { rem * 8 - pad };
                Layout::record((aux >> 8) as u16, nrefs, data).unwrap()
            }
            1 => Layout::ref_array((aux >> 8) as u16, s - 1).unwrap(),
            2 => {
                let len = if s == 1 { 0 } else { (s - 1) * 8 - pad };
                Layout::byte_array((aux >> 8) as u16, len).unwrap()
            }
            _ => Layout::record((aux >> 8) as u16, s - 1, 0).unwrap(),
        };
        assert_eq!(l.size(), s * 8, "layout for {o:?}");
        l
    }
}

fn obj_spec() -> impl Strategy<Value = ObjSpec> {
    (
        prop_oneof![12 => 1usize..=40, 1 => 41usize..=2000],
        0.0f64..1.0,
        0u8..4,
        any::<u32>(),
    )
        .prop_map(|(size, live_u, kind, aux)| ObjSpec {
            size,
            live_u,
            kind,
            aux,
        })
}

fn space() -> impl Strategy<Value = Space> {
    (
        prop_oneof![1 => Just(0.0), 2 => Just(1.0), 2 => 0.9f64..=1.0, 6 => 0.0f64..=1.0],
        prop_oneof![1 => 1usize..=4 * PW, 3 => 1usize..=MAX_WORDS],
        prop::collection::vec(obj_spec(), 0..1500),
    )
        .prop_map(|(frac, limit, specs)| Space::build(frac, limit, specs))
}

/// The dense prefixes to try for a space: none, the one `dense_prefix`
/// picks for `threshold`, and an arbitrary whole number of pages.
fn dense_choices(sp: &Space, threshold: f64, pages_u: f64) -> Vec<usize> {
    let by_threshold = dense_prefix(&sp.live, sp.n, threshold);
    let arbitrary = ((sp.n / PW) as f64 * pages_u).round() as usize * PW;
    let mut v = vec![0, by_threshold, arbitrary];
    v.dedup();
    v
}

fn threshold() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0, 0.5f64..=1.0]
}

/// Runs `compute_offsets` and returns the offsets table and the total.
fn offsets_for(sp: &Space, dense: usize) -> (Vec<u32>, usize) {
    // Entries below the dense prefix are never written: poison them so a
    // read of one shows up.
    let mut offsets = vec![u32::MAX; chunks_for(sp.n) + 1];
    let total = compute_offsets(&sp.live, dense, sp.n, &mut offsets);
    (offsets, total)
}

// ---------------------------------------------------------------------------
// Forwarding against the naive reference
// ---------------------------------------------------------------------------

fn check_forwarding(sp: &Space, dense: usize) -> Result<(), TestCaseError> {
    let (offsets, total) = offsets_for(sp, dense);
    prop_assert_eq!(total, sp.naive_total(dense), "dense {}", dense);
    let last = chunks_for(sp.n);
    for c in dense / CHUNK_WORDS..=last {
        let w = (c * CHUNK_WORDS).min(sp.n);
        prop_assert_eq!(
            offsets[c] as usize,
            sp.naive_forward(dense, w.max(dense)),
            "offsets[{}], dense {}",
            c,
            dense
        );
    }
    let f = Forwarding {
        live: &sp.live,
        offsets: &offsets,
        dense_words: dense,
        end_words: sp.n,
    };
    prop_assert_eq!(f.total_words(), total);

    // Every live word, not just object starts.
    for w in 0..sp.n {
        if bit(&sp.live, w) {
            prop_assert_eq!(
                f.forward(w),
                sp.naive_forward(dense, w),
                "word {} dense {}",
                w,
                dense
            );
        }
    }

    // Running sum of live object sizes in address order: objects below the
    // dense prefix keep their address, an object straddling it too, and
    // everything above is packed from where the previous one ends.
    let mut acc = dense;
    let mut prev_end = 0usize;
    let mut live_sum = 0usize;
    for o in sp.live_objs() {
        let to = f.forward(o.start);
        if o.end() <= dense {
            prop_assert_eq!(to, o.start);
        } else if o.start < dense {
            prop_assert_eq!(to, o.start, "straddling object keeps its address");
            acc = o.end();
        } else {
            prop_assert_eq!(to, acc, "packed: object {:?}", o);
            acc += o.size;
        }
        // Ascending and non-overlapping.
        prop_assert!(
            to >= prev_end,
            "object {:?} forwarded to {} overlaps {}",
            o,
            to,
            prev_end
        );
        prev_end = to + o.size;
        live_sum += o.size;
        // Never forwarded upwards.
        prop_assert!(to <= o.start);
    }
    prop_assert_eq!(acc, total);
    prop_assert_eq!(live_sum, sp.live_words());
    if dense == 0 {
        prop_assert_eq!(total, live_sum);
    }
    Ok(())
}

/// Offsets and page starts computed up to a page boundary `split` (at or
/// above `dense`), then extended to the end (`extend_offsets`,
/// `page_starts_from`: the final pause over a black region it walked),
/// equal those computed over the whole range at once.
fn check_extension(sp: &Space, dense: usize, split_u: f64) -> Result<(), TestCaseError> {
    let pages = (sp.n / PW).saturating_sub(dense / PW);
    let split = dense + (pages as f64 * split_u).round() as usize * PW;
    let (want_off, want_total) = offsets_for(sp, dense);
    let f = Forwarding {
        live: &sp.live,
        offsets: &want_off,
        dense_words: dense,
        end_words: sp.n,
    };
    let mut want_pages = Vec::new();
    page_starts(&f, &sp.marks, &mut want_pages);

    let mut off = vec![u32::MAX; chunks_for(sp.n) + 1];
    compute_offsets(&sp.live, dense, split, &mut off);
    let mut got_pages = Vec::new();
    let f = Forwarding {
        live: &sp.live,
        offsets: &off,
        dense_words: dense,
        end_words: split,
    };
    page_starts(&f, &sp.marks, &mut got_pages);
    let total = extend_offsets(&sp.live, split, sp.n, &mut off);
    prop_assert_eq!(total, want_total, "dense {} split {}", dense, split);
    let (first, last) = (dense / CHUNK_WORDS, chunks_for(sp.n));
    prop_assert_eq!(
        &off[first..=last],
        &want_off[first..=last],
        "dense {} split {}",
        dense,
        split
    );
    let f = Forwarding {
        live: &sp.live,
        offsets: &off,
        dense_words: dense,
        end_words: sp.n,
    };
    page_starts_from(&f, &sp.marks, &mut got_pages, split);
    prop_assert_eq!(got_pages, want_pages, "dense {} split {}", dense, split);
    Ok(())
}

fn check_page_starts(sp: &Space, dense: usize) -> Result<(), TestCaseError> {
    let (offsets, total) = offsets_for(sp, dense);
    let f = Forwarding {
        live: &sp.live,
        offsets: &offsets,
        dense_words: dense,
        end_words: sp.n,
    };
    let mut out = vec![
        PageStart {
            first_word: 7,
            first_object: 7
        };
        3
    ]; // must be cleared
    page_starts(&f, &sp.marks, &mut out);

    // Naive: invert the forwarding of the live words at or above `dense`.
    let mut inv = vec![usize::MAX; total - dense];
    for w in dense..sp.n {
        if bit(&sp.live, w) {
            inv[sp.naive_forward(dense, w) - dense] = w;
        }
    }
    let mut expect = Vec::new();
    for p in dense / PW..total.div_ceil(PW) {
        let w = inv[p * PW - dense];
        prop_assert!(w != usize::MAX);
        expect.push(PageStart {
            first_word: w,
            first_object: sp.objs[sp.owner[w] as usize].start,
        });
    }
    prop_assert_eq!(out, expect, "dense {}", dense);
    Ok(())
}

// ---------------------------------------------------------------------------
// Byte-for-byte compaction
// ---------------------------------------------------------------------------

/// A zeroed, page-aligned buffer of whole pages.
struct PageBuf {
    ptr: *mut u8,
    layout: AllocLayout,
}

impl PageBuf {
    fn new(pages: usize) -> PageBuf {
        let layout = AllocLayout::from_size_align(pages.max(1) * 4096, 4096).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        PageBuf { ptr, layout }
    }
    fn addr(&self) -> usize {
        self.ptr as usize
    }
    fn words(&self) -> &[u64] {
        // SAFETY: allocated, zero-initialised, 4096-aligned, len/8 words.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u64, self.layout.size() / 8) }
    }
    fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `words`, exclusive through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u64, self.layout.size() / 8) }
    }
    /// Page `p` as a byte slice; the caller holds no other view of it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn page_mut(&self, p: usize) -> &mut [u8] {
        assert!((p + 1) * 4096 <= self.layout.size());
        // SAFETY: inside the allocation; exclusive per caller contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(p * 4096), 4096) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Fills `from` with the objects of `sp`: valid headers, reference slots
/// holding null, addresses of live objects (in the to-space address range
/// starting at `space_start`) or addresses outside the space (large
/// objects: must never change), and random data (some of it looking like
/// in-range addresses, which must not be rewritten).
fn fill_from_space(sp: &Space, from: &mut [u64], space_start: usize, rng: &mut Rng) -> Vec<Header> {
    let live_starts: Vec<usize> = sp.live_objs().map(|o| o.start).collect();
    let all_starts: Vec<usize> = sp.objs.iter().map(|o| o.start).collect();
    let space_end = space_start + sp.n * 8;
    let mut headers = Vec::with_capacity(sp.objs.len());
    for o in &sp.objs {
        let h = sp.layout(o).header();
        headers.push(h);
        from[o.start] = h.raw();
        let nrefs = h.ref_count();
        for i in 1..o.size {
            let v = if i <= nrefs {
                let r = rng.below(100);
                if r < 15 {
                    0
                } else if r < 22 {
                    // Outside the space: exactly at its end, above, below.
                    match rng.below(3) {
                        0 => space_end as u64,
                        1 => (space_end + 8 * rng.below(1 << 20)) as u64,
                        _ => space_start.wrapping_sub(8 * (1 + rng.below(1 << 20))) as u64,
                    }
                } else if o.live {
                    (space_start + live_starts[rng.below(live_starts.len())] * 8) as u64
                } else {
                    // Dead objects' slots are never looked at.
                    (space_start + all_starts[rng.below(all_starts.len())] * 8) as u64
                }
            } else if rng.chance(10) && !all_starts.is_empty() {
                (space_start + all_starts[rng.below(all_starts.len())] * 8) as u64
            } else {
                rng.next()
            };
            from[o.start + i] = v;
        }
    }
    headers
}

/// Rewrites a reference slot value the naive way.
fn naive_ref(sp: &Space, dense: usize, space_start: usize, v: u64) -> u64 {
    let v = v as usize;
    if v == 0 || v < space_start || v >= space_start + sp.n * 8 {
        return v as u64;
    }
    let w = (v - space_start) / 8;
    (space_start + sp.naive_forward(dense, w) * 8) as u64
}

/// Maximal dead gaps of `[0, dense)`: what `cycle` covers with fillers.
fn dense_gaps(sp: &Space, dense: usize) -> Vec<(usize, usize)> {
    let mut gaps = Vec::new();
    let mut w = 0;
    while w < dense {
        if bit(&sp.live, w) {
            let o = &sp.objs[sp.owner[w] as usize];
            w = o.end();
            continue;
        }
        let s = w;
        while w < dense && !bit(&sp.live, w) {
            w += 1;
        }
        gaps.push((s, w));
    }
    gaps
}

fn check_compaction(sp: &Space, dense: usize, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(seed);
    let pages = sp.n.div_ceil(PW);
    let mut from = PageBuf::new(pages);
    let mut to = PageBuf::new(pages);
    let space_start = to.addr();
    let headers = fill_from_space(sp, from.words_mut(), space_start, &mut rng);
    let from_copy: Vec<u64> = from.words().to_vec();

    // The dense prefix stays in place: the to-space holds the old bytes
    // there, and fixing its pages covers each dead gap with one filler.
    let filler_header = |words: usize| {
        Layout::byte_array(FILLER_TAG, (words - 1) * 8)
            .unwrap()
            .header()
    };
    let gaps = dense_gaps(sp, dense);
    {
        let tw = to.words_mut();
        tw[..dense].copy_from_slice(&from.words()[..dense]);
        tw[dense..].fill(POISON);
    }

    // Expected to-space image.
    let total = sp.naive_total(dense);
    let mut image = vec![0u64; total.div_ceil(PW) * PW];
    image[..dense].copy_from_slice(&to.words()[..dense]);
    for &(s, e) in &gaps {
        image[s] = filler_header(e - s).raw();
    }
    for (o, h) in sp.objs.iter().zip(&headers) {
        if !o.live {
            continue;
        }
        let ns = sp.naive_forward(dense, o.start);
        for i in 0..o.size {
            let mut v = from_copy[o.start + i];
            if i >= 1 && i <= h.ref_count() {
                v = naive_ref(sp, dense, space_start, v);
            }
            image[ns + i] = v;
        }
    }

    let (offsets, total2) = offsets_for(sp, dense);
    prop_assert_eq!(total2, total);
    let fwd = Forwarding {
        live: &sp.live,
        offsets: &offsets,
        dense_words: dense,
        end_words: sp.n,
    };
    let mut pstarts = Vec::new();
    page_starts(&fwd, &sp.marks, &mut pstarts);

    // SAFETY: `from` holds the old image (end_words words) and the dense
    // prefix lives in `to` at `space_start`; both outlive `comp`, and only
    // the compactor writes `to` meanwhile.
    let comp = unsafe { Compactor::new(fwd, &pstarts, space_start, from.addr()) };
    prop_assert_eq!(comp.page_count(), total.div_ceil(PW));
    prop_assert_eq!(comp.dense_pages(), dense / PW);

    // Fix and compact the pages in a random order: each page is
    // independent (a compacted page may read the header of the object
    // crossing the prefix's end, which fixing never changes).
    let mut order: Vec<usize> = (0..comp.page_count()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    for &p in &order {
        if p < comp.dense_pages() {
            comp.update_dense_page(p, &sp.marks);
            continue;
        }
        // SAFETY: page p of `to` is not otherwise borrowed meanwhile.
        let dst = unsafe { to.page_mut(p) };
        let n = comp.compact_page(p, dst);
        prop_assert_eq!(
            n,
            (total - p * PW).min(PW) * 8,
            "bytes copied for page {}",
            p
        );
    }
    let tw = to.words();
    for p in 0..comp.page_count() {
        for i in 0..PW {
            let w = p * PW + i;
            if tw[w] != image[w] {
                let what = match sp.owner.get(w) {
                    Some(&o) => format!("{:?}", sp.objs[o as usize]),
                    None => "-".into(),
                };
                return Err(TestCaseError::fail(format!(
                    "to-space word {w} (page {p}, dense {dense}, total {total}): got {:#x}, want {:#x}; old owner {what}",
                    tw[w], image[w]
                )));
            }
        }
    }
    // Nothing written past the last to-space page, nothing in the from-space.
    for (w, &v) in tw.iter().enumerate().skip(comp.page_count() * PW) {
        prop_assert_eq!(v, POISON, "word {} past the compacted pages was written", w);
    }
    prop_assert!(
        from.words() == &from_copy[..],
        "compaction wrote the from-space"
    );

    // The result parses object by object up to exactly `total`.
    let mut w = 0;
    let mut objects = 0;
    while w < total {
        let h = Header::from_raw(tw[w]);
        prop_assert!(
            h.is_some(),
            "bad header {:#x} at to-space word {}",
            tw[w],
            w
        );
        w += h.unwrap().size_words();
        objects += 1;
    }
    prop_assert_eq!(w, total);
    prop_assert_eq!(objects, sp.live_objs().count() + gaps.len());
    Ok(())
}

// ---------------------------------------------------------------------------
// Random bitmaps for the bit helpers
// ---------------------------------------------------------------------------

fn bitmap_word() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        2 => Just(u64::MAX),
        2 => any::<u64>(),
        2 => (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c)| a & b & c),
        2 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| a | b),
        3 => (0u32..64, 0u32..=64).prop_map(|(lo, len)| {
            let len = len.min(64 - lo);
            if len == 64 { u64::MAX } else { ((1u64 << len) - 1) << lo }
        }),
        1 => (0u32..64).prop_map(|b| 1u64 << b),
        1 => (0u32..64).prop_map(|b| !(1u64 << b)),
    ]
}

fn naive_next_live(bits: &[u64], w: usize, end: usize) -> Option<usize> {
    (w..end).find(|&i| bit(bits, i))
}

fn naive_run_length(bits: &[u64], w: usize, max: usize) -> usize {
    let mut n = 0;
    while n < max && w + n < bits.len() * 64 && bit(bits, w + n) {
        n += 1;
    }
    n
}

fn naive_object_start(bits: &[u64], w: usize) -> Option<usize> {
    (0..=w).rev().find(|&i| bit(bits, i))
}

fn naive_nth_set_bit(x: u64, n: u32) -> u32 {
    (0..64)
        .filter(|&b| x >> b & 1 != 0)
        .nth(n as usize)
        .unwrap()
}

fn naive_dense_prefix(live: &[u64], end: usize, threshold: f64) -> usize {
    let need = (threshold * PW as f64).ceil() as usize;
    let mut p = 0;
    while (p + 1) * PW <= end {
        let n = (p * PW..(p + 1) * PW).filter(|&w| bit(live, w)).count();
        if n < need {
            break;
        }
        p += 1;
    }
    p * PW
}

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn forward_matches_naive_running_sum(sp in space(), th in threshold(), pages_u in 0.0f64..=1.0) {
        for dense in dense_choices(&sp, th, pages_u) {
            check_forwarding(&sp, dense)?;
        }
    }

    #[test]
    fn page_starts_match_naive_walk(sp in space(), th in threshold(), pages_u in 0.0f64..=1.0) {
        for dense in dense_choices(&sp, th, pages_u) {
            check_page_starts(&sp, dense)?;
        }
    }

    #[test]
    fn an_extended_prepare_matches_one_over_the_whole_range(sp in space(), th in threshold(), pages_u in 0.0f64..=1.0, split_u in 0.0f64..=1.0) {
        for dense in dense_choices(&sp, th, pages_u) {
            check_extension(&sp, dense, split_u)?;
        }
    }

    #[test]
    fn compaction_is_byte_for_byte_sliding(sp in space(), th in threshold(), pages_u in 0.0f64..=1.0, seed in any::<u64>()) {
        for dense in dense_choices(&sp, th, pages_u) {
            check_compaction(&sp, dense, seed)?;
        }
    }

    #[test]
    fn dense_prefix_matches_naive(sp in space(), th in threshold()) {
        let d = dense_prefix(&sp.live, sp.n, th);
        prop_assert_eq!(d, naive_dense_prefix(&sp.live, sp.n, th));
        prop_assert_eq!(d % PW, 0);
        prop_assert!(d <= sp.n);
        prop_assert_eq!(dense_prefix(&sp.live, sp.n, 0.0), sp.n / PW * PW, "threshold 0: every full page");
    }
}

proptest! {
    #![proptest_config(cfg(1024))]

    #[test]
    fn bit_helpers_match_naive(
        bits in prop::collection::vec(bitmap_word(), 1..12),
        queries in prop::collection::vec((any::<u32>(), any::<u32>(), 0usize..800, 0u32..64), 1..40),
    ) {
        let nbits = bits.len() * 64;
        for (a, b, max, n) in queries {
            let w = a as usize % nbits;
            let end = b as usize % (nbits + 1);
            prop_assert_eq!(next_live(&bits, w, end), naive_next_live(&bits, w, end), "next_live({}, {})", w, end);
            prop_assert_eq!(next_live(&bits, w, nbits), naive_next_live(&bits, w, nbits), "next_live({}, all)", w);
            prop_assert_eq!(run_length(&bits, w, max), naive_run_length(&bits, w, max), "run_length({}, {})", w, max);
            prop_assert_eq!(run_length(&bits, w, usize::MAX), naive_run_length(&bits, w, usize::MAX), "run_length({}, inf)", w);
            if let Some(s) = naive_object_start(&bits, w) {
                prop_assert_eq!(object_start(&bits, w), s, "object_start({})", w);
            }
            let x = bits[w / 64];
            if x.count_ones() > n {
                prop_assert_eq!(nth_set_bit(x, n), naive_nth_set_bit(x, n));
            }
            for k in 0..x.count_ones() {
                prop_assert_eq!(nth_set_bit(x, k), naive_nth_set_bit(x, k));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Hand-picked edge cases (fast, deterministic)
// ---------------------------------------------------------------------------

fn space_of(objs: &[(usize, bool)]) -> Space {
    let specs = objs
        .iter()
        .enumerate()
        .map(|(i, &(size, live))| ObjSpec {
            size,
            live_u: if live { 0.0 } else { 1.0 },
            kind: (i % 4) as u8,
            aux: (i as u32).wrapping_mul(0x9e37_79b9),
        })
        .collect();
    Space::build(0.5, usize::MAX, specs)
}

fn check_all(sp: &Space, dense: usize) {
    let run =
        |r: Result<(), TestCaseError>| r.unwrap_or_else(|e| panic!("{e} for {sp:?} dense {dense}"));
    run(check_forwarding(sp, dense));
    run(check_page_starts(sp, dense));
    for seed in [1, 2, 3] {
        run(check_compaction(sp, dense, seed));
    }
}

#[test]
fn empty_and_all_dead_spaces() {
    check_all(&space_of(&[]), 0);
    let dead = space_of(&[(40, false), (2000, false), (1, false)]);
    check_all(&dead, 0);
    check_all(&dead, PW * 2); // dense prefix entirely of filler
}

#[test]
fn all_live_full_pages() {
    // Exactly 8 full pages, everything live: the whole space is the dense
    // prefix with threshold 1.0, total == dense and no page is compacted.
    let objs: Vec<(usize, bool)> = (0..8 * PW / 32).map(|_| (32, true)).collect();
    let sp = space_of(&objs);
    assert_eq!(sp.n, 8 * PW);
    assert_eq!(dense_prefix(&sp.live, sp.n, 1.0), 8 * PW);
    for d in [0, 3 * PW, 8 * PW] {
        check_all(&sp, d);
    }
}

#[test]
fn object_straddling_the_dense_boundary_and_many_pages() {
    // A 2000-word live object starting 10 words before the end of page 1
    // covers pages 1..=5; dense prefix of 2 pages cuts through it.
    let sp = space_of(&[
        (2 * PW - 10, true),
        (2000, true),
        (7, false),
        (5, true),
        (600, false),
        (3, true),
    ]);
    for d in [0, PW, 2 * PW, 3 * PW, 4 * PW] {
        check_all(&sp, d);
    }
}

#[test]
fn single_word_objects_alternating() {
    let objs: Vec<(usize, bool)> = (0..3 * PW + 17).map(|i| (1, i % 3 != 1)).collect();
    let sp = space_of(&objs);
    for d in [0, PW, 3 * PW] {
        check_all(&sp, d);
    }
}

#[test]
fn page_boundary_exactly_at_object_boundaries() {
    // Live objects whose forwarded addresses hit page starts exactly.
    let sp = space_of(&[
        (5, false),
        (PW, true),
        (3, false),
        (PW, true),
        (PW - 1, true),
        (1, true),
        (9, false),
    ]);
    for d in [0, PW] {
        check_all(&sp, d);
    }
}
