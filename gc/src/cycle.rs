//! One collection, phase by phase, top to bottom.
//!
//! ```text
//!  stop the world ─ retire TLABs, gather roots
//!    mark          parallel, into the mark and live-words bitmaps
//!    prepare       dense prefix, chunk offsets, fillers, page-start table
//!    flip          mremap(DONTUNMAP) the pages above the dense prefix to
//!                  the from-space: the heap range is now empty
//!    compact       every to-space page = compact_page(p), in parallel;
//!                  dense pages get their references fixed in place
//!    update roots  mutator roots, persistent roots, large objects; sweep LOS
//!    release       drop the from-space pages, clear the bitmaps
//!    verify        (debug/test builds) check every reference and header
//!  restart the world
//! ```

use std::sync::atomic::Ordering;
use std::time::Instant;

use rayon::prelude::*;

use crate::compact::Compactor;
use crate::forwarding::{self, chunks_for, Forwarding, PageStart, CHUNK_WORDS, PAGE_WORDS};
use crate::heap::{GcHeap, HeapError};
use crate::mapping::{round_up, Prot, WordMap, PAGE_SIZE};
use crate::mark::{mark, MarkContext};
use crate::object::{load_word, store_word, Header, Layout, ObjRef, WORD};
use crate::safepoint::StoppedWorld;
use crate::space::{LargeObjectSpace, MovingSpace};
use crate::stats::{CycleStats, Strategy, Trigger};
use crate::verify;

/// Tag of the filler objects written over dead gaps in the dense prefix.
pub const FILLER_TAG: u16 = u16::MAX;

/// The collector's side metadata and worker pool, reused across cycles.
pub(crate) struct Collector {
    marks: WordMap,
    live: WordMap,
    offsets: Vec<u32>,
    pages: Vec<PageStart>,
    pool: rayon::ThreadPool,
    threads: usize,
    cycles: u64,
}

impl Collector {
    pub(crate) fn new(space: &MovingSpace, threads: usize) -> Result<Collector, HeapError> {
        let words = space.capacity() / WORD;
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("movegc-worker-{i}"))
            .build()
            .map_err(|e| HeapError::Threads(e.to_string()))?;
        Ok(Collector {
            marks: WordMap::new(chunks_for(words))?,
            live: WordMap::new(chunks_for(words))?,
            offsets: vec![0; chunks_for(words) + 1],
            pages: Vec::new(),
            pool,
            threads,
            cycles: 0,
        })
    }

    /// Runs one stop-the-world collection. The world must be stopped (the
    /// `StoppedWorld` proves it) for the whole call.
    pub(crate) fn collect(&mut self, heap: &GcHeap, world: &mut StoppedWorld<'_>, trigger: Trigger) -> CycleStats {
        let t_start = Instant::now();
        let inner = &heap.inner;
        let space = &inner.space;
        let madvise_before = inner.counters.madvise.load(Ordering::Relaxed);
        self.cycles += 1;
        let mut st = CycleStats {
            cycle: self.cycles,
            strategy: Some(Strategy::StopTheWorld),
            trigger: Some(trigger),
            used_before: space.used(),
            ..Default::default()
        };

        // Retire TLABs and gather roots.
        let mut roots: Vec<usize> = Vec::new();
        world.for_each_mutator(|m| {
            m.tlab.reset();
            roots.extend(m.roots.iter().flatten().map(|r| r.addr()));
        });
        heap.with_persistent_roots(|p| roots.extend(p.iter().flatten().map(|r| r.addr())));
        let mut los = inner.los.objects.lock().unwrap_or_else(|e| e.into_inner());

        // Mark.
        let t = Instant::now();
        let start = space.start();
        let top = space.top();
        let end_words = (top - start) / WORD;
        let m = mark(
            &MarkContext { space_start: start, space_top: top, marks: self.marks.atomics(), live: self.live.atomics(), los: &los },
            &roots,
            Some(&self.pool),
            self.threads,
        );
        st.mark = t.elapsed();
        st.live_bytes = m.bytes;
        st.live_objects = m.objects;
        st.large_objects_live = m.large_objects;

        // Prepare: dense prefix, offsets, fillers, page starts.
        let t = Instant::now();
        let live = self.live.words();
        let dense = inner.config.dense_prefix_threshold.map_or(0, |th| forwarding::dense_prefix(live, end_words, th));
        let total = forwarding::compute_offsets(live, dense, end_words, &mut self.offsets);
        fill_dense_gaps(start, self.marks.words_mut(), dense);
        let marks = self.marks.words();
        // Re-borrow `live` after the marks were written (disjoint maps).
        let live = self.live.words();
        let fwd = Forwarding { live, offsets: &self.offsets, dense_words: dense, end_words };
        forwarding::page_starts(&fwd, marks, &mut self.pages);
        st.prepare = t.elapsed();

        // Flip: move the pages above the dense prefix to the from-space.
        let t = Instant::now();
        let dense_bytes = dense * WORD;
        let moved_len = round_up(top - start, PAGE_SIZE) - dense_bytes;
        inner.counters.mremap.fetch_add(1, Ordering::Relaxed);
        space
            .heap
            .move_pages_to(&space.from, dense_bytes, moved_len)
            .unwrap_or_else(|e| panic!("mremap of the moving space failed: {e}"));
        st.flip = t.elapsed();

        // Compact.
        let t = Instant::now();
        let comp = Compactor { fwd, marks, pages: &self.pages, space_start: start, from_start: space.from.start() };
        let npages = comp.page_count();
        let dense_pages = comp.dense_pages();
        let heap_map = &space.heap;
        self.pool.install(|| {
            (dense_pages..npages).into_par_iter().with_min_len(8).for_each(|p| {
                // SAFETY: the world is stopped and each to-space page index
                // is visited by exactly one iteration, so this is the only
                // reference to the page's bytes; the page lies inside the
                // moving space (npages * PAGE_SIZE <= used bytes).
                let dst = unsafe { heap_map.bytes_mut(p * PAGE_SIZE, PAGE_SIZE) };
                comp.compact_page(p, dst);
            });
            (0..dense_pages).into_par_iter().with_min_len(8).for_each(|p| {
                comp.update_dense_page(p, forwarding::object_start(marks, p * PAGE_WORDS));
            });
        });
        st.compact = t.elapsed();
        st.pages_compacted = npages - dense_pages;
        st.dense_pages = dense_pages;
        st.moved_bytes = (total - dense) * WORD;

        // Update roots and large objects; sweep large objects.
        let t = Instant::now();
        let fix = |r: &mut Option<crate::object::ObjRef>| {
            if let Some(o) = *r {
                *r = ObjRef::from_slot(comp.forward_ref(o.addr() as u64));
            }
        };
        world.for_each_mutator(|m| m.roots.iter_mut().for_each(fix));
        heap.with_persistent_roots(|p| p.iter_mut().for_each(fix));
        for lo in los.values().filter(|o| o.marked.load(Ordering::Relaxed)) {
            let a = lo.obj().addr();
            let n = lo.obj().header().ref_count();
            for i in 0..n {
                let slot = a + WORD + i * WORD;
                let v = load_word(slot);
                if v != 0 {
                    store_word(slot, comp.forward_ref(v));
                }
            }
        }
        let los_before = inner.los.bytes();
        let (freed_n, freed_b) = LargeObjectSpace::sweep(&mut los, inner.los.bytes_counter());
        st.large_objects_freed = freed_n;
        st.update_roots = t.elapsed();

        // Release the from-space and reset the allocator and metadata.
        let t = Instant::now();
        inner
            .space
            .from
            .remap_fresh(dense_bytes, moved_len, Prot::None)
            .unwrap_or_else(|e| panic!("releasing the from-space failed: {e}"));
        inner.counters.mmap.fetch_add(1, Ordering::Relaxed);
        let new_top = start + total * WORD;
        space.set_top(new_top);
        let used_chunks = chunks_for(end_words);
        self.marks.clear_prefix(used_chunks + 1);
        self.live.clear_prefix(used_chunks + 1);
        st.release = t.elapsed();
        st.freed_bytes = (top - new_top) + freed_b;
        debug_assert!(los_before >= freed_b);

        // Verify.
        if inner.config.verify {
            let t = Instant::now();
            let mut all_roots = Vec::new();
            world.for_each_mutator(|m| all_roots.extend(m.roots.iter().flatten().map(|r| r.addr())));
            heap.with_persistent_roots(|p| all_roots.extend(p.iter().flatten().map(|r| r.addr())));
            if let Err(e) = verify::verify_heap(start, new_top, &los, &all_roots) {
                panic!("heap verification failed after cycle {}: {e}", st.cycle);
            }
            st.verify = t.elapsed();
        }
        st.madvise_calls = inner.counters.madvise.load(Ordering::Relaxed) - madvise_before;
        st.pause = t_start.elapsed();
        st
    }
}

/// Writes a filler object over every dead gap of the dense prefix
/// `[0, dense)` (word indices) and sets its mark bit, so that the prefix
/// stays walkable object by object after dead objects' bytes are left
/// behind.
fn fill_dense_gaps(space_start: usize, marks: &mut [u64], dense: usize) {
    let mut w = 0;
    while w < dense {
        let next = forwarding::next_live(marks, w, dense);
        let gap_end = next.unwrap_or(dense);
        if gap_end > w {
            let words = gap_end - w;
            let filler = Layout::byte_array(FILLER_TAG, (words - 1) * WORD).expect("filler layout");
            debug_assert_eq!(filler.size(), words * WORD);
            store_word(space_start + w * WORD, filler.header().raw());
            marks[w / CHUNK_WORDS] |= 1 << (w % CHUNK_WORDS);
        }
        match next {
            Some(s) => {
                let h = Header::from_raw(load_word(space_start + s * WORD)).expect("live header");
                w = s + h.size_words();
            }
            None => break,
        }
    }
}
