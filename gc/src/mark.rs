//! Parallel marking into the mark bitmap (object starts) and the live-words
//! bitmap (every word of every live object), with work stealing and no
//! recursion on the object graph.
//!
//! Each worker owns a LIFO deque of work items; idle workers steal from
//! the shared injector (seeded with the roots) and from each other.
//! Termination: a worker that finds no work anywhere counts itself idle and
//! keeps looking; when all workers are idle at once no deque can hold work
//! (only a non-idle worker pushes), so marking is complete.
//!
//! A work item ([`Work`]) is either a grey object or a slice of one: an
//! object with more than [`SLICE_REFS`] reference slots (a big reference
//! array, typically a large object, or a record with many fields) is not
//! scanned whole by the worker that pops it. That worker pushes its slots
//! `SLICE_REFS..` as slices of at most `SLICE_REFS` slots on its own deque
//! (the last slice first, so it works through the object in address order
//! while thieves take slices from the far end) and scans the first slice
//! itself; idle workers steal the rest, so one huge array is traced by
//! every worker instead of one. An object is marked, and counted in
//! [`MarkResult`], once, when its mark bit (or LOS flag) is won; slices
//! only scan slots, and are counted in [`MarkResult::slices`].
//!
//! References found by scanning go through a small software prefetch FIFO
//! before they are marked (`PrefetchFifo`), so that the cache misses of
//! a large heap overlap.
//!
//! An object is marked by the thread that wins the `fetch_or` on its mark
//! bit; that thread sets its live words and scans it. Large objects are
//! marked with a flag in their LOS entry. Marking runs either with the
//! world stopped, or (concurrent strategies) while mutators run: then the
//! graph changes underneath it, and the SATB barrier (`satb`) logs every
//! reference a store overwrites so that nothing reachable at the snapshot
//! is missed; objects allocated meanwhile lie in `[space_top, black_end)`
//! and are never traced (black by position). Every word is read with a
//! relaxed atomic load, so racing mutator stores are not undefined
//! behaviour.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::forwarding::{prefetch_read, CHUNK_WORDS};
use crate::object::{load_word, Header, WORD};
use crate::satb::PrefixWatch;
use crate::space::LargeObject;

/// What marking needs to know about the heap.
pub struct MarkContext<'a> {
    /// Start of the moving space.
    pub space_start: usize,
    /// End of the old region in a young cycle (`space_start` in a full
    /// one): objects below it are live without being marked or traced.
    pub old_end: usize,
    /// Allocation top of the moving space when marking started: objects
    /// below it are traced.
    pub space_top: usize,
    /// `[space_top, black_end)` holds objects allocated while marking ran
    /// concurrently: live by position, never traced or marked here
    /// (`cycle.rs` marks them in the final pause). Equal to `space_top`
    /// when marking stops the world.
    pub black_end: usize,
    /// Object-start bits.
    pub marks: &'a [AtomicU64],
    /// Live-word bits.
    pub live: &'a [AtomicU64],
    /// Marks the large object at an address: `Some(true)` if this call
    /// marked it, `Some(false)` if it was marked already, `None` if no
    /// large object starts there.
    pub los: &'a (dyn Fn(usize) -> Option<bool> + Sync),
    /// The pages whose highest old-space reference this marking records
    /// (`clean`: a full cycle's dense-prefix pages that may need no fix);
    /// the default watches none.
    pub watch: PrefixWatch<'a>,
}

/// [`MarkContext::los`] over a large-object table the caller has locked.
pub fn los_marker(
    los: &BTreeMap<usize, LargeObject>,
) -> impl Fn(usize) -> Option<bool> + Sync + '_ {
    move |addr| {
        los.get(&addr)
            .map(|lo| !lo.marked.swap(true, Ordering::Relaxed))
    }
}

/// Marking results.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MarkResult {
    /// Live objects in the moving space.
    pub objects: usize,
    /// Live bytes in the moving space.
    pub bytes: usize,
    /// Live large objects.
    pub large_objects: usize,
    /// Slices scanned: an object with `n > SLICE_REFS` reference slots is
    /// scanned as `n.div_ceil(SLICE_REFS)` slices (each counted by the
    /// worker that scanned it), an object with at most `SLICE_REFS` as one
    /// whole item (not counted here).
    pub slices: usize,
}

impl std::ops::AddAssign for MarkResult {
    fn add_assign(&mut self, o: MarkResult) {
        self.objects += o.objects;
        self.bytes += o.bytes;
        self.large_objects += o.large_objects;
        self.slices += o.slices;
    }
}

/// Objects with more reference slots than this are scanned in slices of
/// at most this many slots (4 KiB of references), each a work item of its
/// own that any worker may steal.
const SLICE_REFS: usize = 512;

/// A work item in the marking deques.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    /// A marked object at this address, to scan: whole if it has at most
    /// [`SLICE_REFS`] reference slots, else split into [`Work::Slice`]s.
    Object(usize),
    /// `len` (`1..=SLICE_REFS`) consecutive reference slots of a marked
    /// object, the first at address `slots`.
    Slice {
        /// Address of the first slot.
        slots: usize,
        /// Number of slots.
        len: u32,
    },
}

// A work item stays two words: deques copy them by value.
const _: () = assert!(std::mem::size_of::<Work>() == 2 * WORD);

/// Sets bits `[from, from+len)` of `bits` atomically.
fn set_range(bits: &[AtomicU64], from: usize, len: usize) {
    let mut w = from;
    let end = from + len;
    while w < end {
        let c = w / CHUNK_WORDS;
        let lo = w % CHUNK_WORDS;
        let n = (CHUNK_WORDS - lo).min(end - w);
        let mask = if n == 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << lo
        };
        bits[c].fetch_or(mask, Ordering::Relaxed);
        w += n;
    }
}

impl MarkContext<'_> {
    /// Tries to mark the object at `addr`; true if this call marked it (the
    /// caller must scan it).
    #[inline]
    fn try_mark(&self, addr: usize, stats: &mut MarkResult) -> bool {
        if addr.wrapping_sub(self.space_start) < self.old_end - self.space_start {
            false // old: live, not traced
        } else if addr.wrapping_sub(self.space_start) < self.space_top - self.space_start {
            let w = (addr - self.space_start) / WORD;
            let bit = 1u64 << (w % CHUNK_WORDS);
            if self.marks[w / CHUNK_WORDS].load(Ordering::Relaxed) & bit != 0 {
                return false;
            }
            if self.marks[w / CHUNK_WORDS].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                return false;
            }
            let size = Header::from_raw(load_word(addr)).map_or_else(
                || {
                    panic!(
                        "marking found a bad header {:#x} at {addr:#x}",
                        load_word(addr)
                    )
                },
                |h| h.size_words(),
            );
            set_range(self.live, w, size);
            stats.objects += 1;
            stats.bytes += size * WORD;
            true
        } else if addr.wrapping_sub(self.space_top) < self.black_end - self.space_top {
            false // allocated during concurrent marking: black
        } else if let Some(newly) = (self.los)(addr) {
            if !newly {
                return false;
            }
            stats.large_objects += 1;
            true
        } else {
            panic!("marking found a reference {addr:#x} outside the heap");
        }
    }

    /// Scans one work item: queues the referents in its slots in `fifo`,
    /// which marks them a little later (see [`PrefetchFifo`]) and pushes
    /// those this worker marked on `local`. An object with more than
    /// [`SLICE_REFS`] slots is split: the slices after the first go on
    /// `local` (where idle workers can steal them), the first is scanned
    /// now.
    #[inline]
    fn scan(
        &self,
        work: Work,
        fifo: &mut PrefetchFifo,
        local: &Worker<Work>,
        stats: &mut MarkResult,
    ) {
        let (slots, len) = match work {
            Work::Object(addr) => {
                let h = Header::from_raw(load_word(addr)).expect("scanned object has a header");
                let n = h.ref_count();
                let slots = addr + WORD;
                if n > SLICE_REFS {
                    // Last slice first: this worker pops them in address
                    // order, thieves steal from the other end.
                    for k in (1..n.div_ceil(SLICE_REFS)).rev() {
                        let from = k * SLICE_REFS;
                        let len = (n - from).min(SLICE_REFS);
                        local.push(Work::Slice {
                            slots: slots + from * WORD,
                            len: len as u32,
                        });
                    }
                    stats.slices += 1;
                    (slots, SLICE_REFS)
                } else {
                    (slots, n)
                }
            }
            Work::Slice { slots, len } => {
                stats.slices += 1;
                (slots, len as usize)
            }
        };
        if (self.watch.start..self.watch.end).contains(&slots) {
            let vals = (0..len).map(|i| load_word(slots + i * WORD) as usize);
            self.watch.note(slots, vals, self.space_top);
        }
        for i in 0..len {
            let v = load_word(slots + i * WORD) as usize;
            if v != 0 {
                if let Some(old) = fifo.push(self, v) {
                    if self.try_mark(old, stats) {
                        local.push(Work::Object(old));
                    }
                }
            }
        }
    }

    /// Hints the CPU to load what [`try_mark`](Self::try_mark) will read
    /// for `addr`: the object's header and its mark-bitmap word.
    #[inline(always)]
    fn prefetch(&self, addr: usize) {
        let off = addr.wrapping_sub(self.space_start);
        if off < self.space_top - self.space_start {
            prefetch_read(addr as *const u8);
            prefetch_read(&self.marks[off / WORD / CHUNK_WORDS] as *const AtomicU64 as *const u8);
        }
    }
}

/// Depth of the prefetch FIFO: references wait this many pushes between
/// their prefetch and their marking.
const FIFO_DEPTH: usize = 16;

/// A software prefetch FIFO in front of marking (Cher, Hosking and
/// Vijaykumar, "Software prefetching for mark-sweep garbage collection",
/// ASPLOS 2004). Marking a reference reads the referent's header and its
/// mark word, both usually cache misses on a large heap; a reference found
/// by `scan` is prefetched and marked only `FIFO_DEPTH` references later,
/// so up to that many misses are in flight at once instead of one.
///
/// References in the FIFO are invisible to other workers, so a worker
/// flushes it before it goes idle (see `drain`).
struct PrefetchFifo {
    ring: [usize; FIFO_DEPTH],
    head: usize,
    len: usize,
}

impl PrefetchFifo {
    fn new() -> PrefetchFifo {
        PrefetchFifo {
            ring: [0; FIFO_DEPTH],
            head: 0,
            len: 0,
        }
    }

    /// Prefetches and enqueues `v`; returns the oldest reference when the
    /// FIFO was full (to be marked now).
    #[inline(always)]
    fn push(&mut self, ctx: &MarkContext<'_>, v: usize) -> Option<usize> {
        ctx.prefetch(v);
        let tail = (self.head + self.len) % FIFO_DEPTH;
        if self.len < FIFO_DEPTH {
            self.ring[tail] = v;
            self.len += 1;
            None
        } else {
            let old = self.ring[self.head];
            self.ring[self.head] = v;
            self.head = (self.head + 1) % FIFO_DEPTH;
            Some(old)
        }
    }

    /// Removes the oldest reference.
    fn pop(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let v = self.ring[self.head];
        self.head = (self.head + 1) % FIFO_DEPTH;
        self.len -= 1;
        Some(v)
    }
}

/// Marks every object in `[from, to)` of the moving space starting at
/// `space_start` (the objects allocated while marking ran concurrently:
/// live by position) by walking them; unused TLAB tails are zero words.
/// Runs with the world stopped. Returns (objects, bytes).
///
/// # Panics
/// On a word that is neither zero nor a valid header (a corrupt heap).
pub fn mark_allocated(
    marks: &[AtomicU64],
    live: &[AtomicU64],
    space_start: usize,
    from: usize,
    to: usize,
) -> (usize, usize) {
    let (mut objects, mut bytes) = (0, 0);
    let mut a = from;
    while a < to {
        let raw = load_word(a);
        if raw == 0 {
            a += WORD;
            continue;
        }
        let h = Header::from_raw(raw).unwrap_or_else(|| {
            panic!("bad header {raw:#x} at {a:#x} among objects allocated during marking")
        });
        let w = (a - space_start) / WORD;
        let size = h.size_words();
        marks[w / CHUNK_WORDS].fetch_or(1 << (w % CHUNK_WORDS), Ordering::Relaxed);
        set_range(live, w, size);
        objects += 1;
        bytes += size * WORD;
        a += size * WORD;
    }
    (objects, bytes)
}

/// Marks everything reachable from `roots` using `threads` workers of
/// `pool` (or the calling thread alone when `threads <= 1`).
pub fn mark(
    ctx: &MarkContext<'_>,
    roots: &[usize],
    pool: Option<&rayon::ThreadPool>,
    threads: usize,
) -> MarkResult {
    let (mut total, workers) = mark_by_worker(ctx, roots, pool, threads);
    for w in workers {
        total += w;
    }
    total
}

/// [`mark`], with the results kept apart: what marking the roots found,
/// then what each worker found (`threads.max(1)` entries).
fn mark_by_worker(
    ctx: &MarkContext<'_>,
    roots: &[usize],
    pool: Option<&rayon::ThreadPool>,
    threads: usize,
) -> (MarkResult, Vec<MarkResult>) {
    let mut from_roots = MarkResult::default();
    let injector = Injector::new();
    for &r in roots {
        if r != 0 && ctx.try_mark(r, &mut from_roots) {
            injector.push(Work::Object(r));
        }
    }
    let threads = threads.max(1);
    if injector.is_empty() {
        // Nothing new (the common final-pause remark): waking the pool
        // would cost a pause a thread wake-up, milliseconds when the host
        // has descheduled the other vCPU.
        return (from_roots, vec![MarkResult::default(); threads]);
    }
    let workers: Vec<Worker<Work>> = (0..threads).map(|_| Worker::new_lifo()).collect();
    let stealers: Vec<Stealer<Work>> = workers.iter().map(|w| w.stealer()).collect();
    let idle = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<MarkResult>> =
        (0..threads).map(|_| Default::default()).collect();

    // A worker that panics (a corrupt heap: a bad header, a reference
    // outside the heap) counts as idle for good, so the others cannot wait
    // for it forever; the panic is raised again once they have stopped.
    let panicked: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>> =
        std::sync::Mutex::new(None);
    let run = |i: usize, local: Worker<Work>| {
        let mut stats = MarkResult::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drain(
                ctx, i, &local, &injector, &stealers, &idle, threads, &mut stats,
            )
        }));
        if let Err(p) = r {
            idle.fetch_add(threads, Ordering::SeqCst);
            panicked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(p);
        }
        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = stats;
    };
    match pool {
        Some(pool) if threads > 1 => {
            let mut workers = workers.into_iter().enumerate().collect::<Vec<_>>();
            pool.scope(|s| {
                let first = workers.remove(0);
                for (i, w) in workers {
                    let run = &run;
                    s.spawn(move |_| run(i, w));
                }
                run(first.0, first.1);
            });
        }
        _ => {
            for (i, w) in workers.into_iter().enumerate() {
                run(i, w);
            }
        }
    }
    if let Some(p) = panicked.into_inner().unwrap_or_else(|e| e.into_inner()) {
        std::panic::resume_unwind(p);
    }
    let per_worker = results
        .into_iter()
        .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    (from_roots, per_worker)
}

#[allow(clippy::too_many_arguments)]
fn drain(
    ctx: &MarkContext<'_>,
    me: usize,
    local: &Worker<Work>,
    injector: &Injector<Work>,
    stealers: &[Stealer<Work>],
    idle: &AtomicUsize,
    threads: usize,
    stats: &mut MarkResult,
) {
    let find = |local: &Worker<Work>| -> Option<Work> {
        local.pop().or_else(|| loop {
            let s = injector.steal_batch_and_pop(local).or_else(|| {
                stealers
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != me)
                    .map(|(_, s)| s.steal())
                    .collect()
            });
            match s {
                Steal::Success(v) => break Some(v),
                Steal::Empty => break None,
                Steal::Retry => continue,
            }
        })
    };
    let mut fifo = PrefetchFifo::new();
    loop {
        while let Some(work) = find(local) {
            ctx.scan(work, &mut fifo, local, stats);
        }
        // Mark what waits in the FIFO before looking idle: no other worker
        // can see it.
        let mut found = false;
        while let Some(v) = fifo.pop() {
            if ctx.try_mark(v, stats) {
                local.push(Work::Object(v));
                found = true;
            }
        }
        if found {
            continue;
        }
        if threads == 1 {
            return;
        }
        // No work found: go idle until work shows up or everyone is idle.
        idle.fetch_add(1, Ordering::SeqCst);
        let mut spins = 0u32;
        loop {
            if idle.load(Ordering::SeqCst) >= threads {
                return;
            }
            if !injector.is_empty() || stealers.iter().any(|s| !s.is_empty()) {
                idle.fetch_sub(1, Ordering::SeqCst);
                break;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod panic_tests {
    use super::*;
    use crate::object::Layout;
    use std::time::Duration;

    /// A worker that hits a corrupt reference panics; the other workers
    /// stop and `mark` raises the panic instead of spinning forever.
    #[test]
    fn a_worker_panic_propagates_instead_of_hanging() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // A fake space: a reference array of 600 records, one of which
            // points outside the heap.
            let mut mem = vec![0u64; 4096];
            let base = mem.as_mut_ptr() as usize;
            let arr = Layout::ref_array(0, 600).unwrap();
            let rec = Layout::record(0, 1, 0).unwrap();
            mem[0] = arr.header().raw();
            for i in 0..600 {
                let w = 1000 + 2 * i;
                mem[w] = rec.header().raw();
                mem[1 + i] = (base + w * 8) as u64;
            }
            mem[1000 + 2 * 599 + 1] = 0xdead_0000;
            let marks: Vec<AtomicU64> = (0..64).map(|_| AtomicU64::new(0)).collect();
            let live: Vec<AtomicU64> = (0..64).map(|_| AtomicU64::new(0)).collect();
            let los = |_a: usize| None;
            let ctx = MarkContext {
                space_start: base,
                old_end: base,
                space_top: base + 4096 * 8,
                black_end: base + 4096 * 8,
                marks: &marks,
                live: &live,
                los: &los,
                watch: Default::default(),
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(4)
                .build()
                .unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                mark(&ctx, &[base], Some(&pool), 4)
            }));
            let _ = tx.send(r.is_err());
            drop(mem);
        });
        let panicked = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("mark() hung after a worker panicked");
        assert!(panicked, "the corrupt reference must be reported");
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;
    use crate::object::{store_word, Layout};
    use crate::space::{LargeObjectSpace, MovingSpace, Tlab};
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::sync::OnceLock;

    /// A heap to mark by hand: a moving space handed out as one block, a
    /// large-object space, and the two bitmaps.
    struct TestHeap {
        space: MovingSpace,
        tlab: Tlab,
        los: LargeObjectSpace,
        marks: Vec<AtomicU64>,
        live: Vec<AtomicU64>,
    }

    /// What a marking run left behind.
    #[derive(Debug, PartialEq, Eq)]
    struct Marked {
        /// The mark bitmap.
        marks: Vec<u64>,
        /// The live-words bitmap.
        live: Vec<u64>,
        /// Every large object's address and mark, by address.
        large: Vec<(usize, bool)>,
    }

    fn pool() -> &'static rayon::ThreadPool {
        static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
        POOL.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(4)
                .build()
                .unwrap()
        })
    }

    impl TestHeap {
        /// A heap with room for `bytes` of moving-space objects.
        fn new(bytes: usize) -> TestHeap {
            let space = MovingSpace::new(bytes + WORD, false).unwrap();
            let cap = space.capacity();
            let (a, b) = space.alloc_block(WORD, cap, cap).unwrap();
            let mut tlab = Tlab::default();
            tlab.set(a, b);
            let chunks = (cap / WORD).div_ceil(CHUNK_WORDS);
            TestHeap {
                space,
                tlab,
                los: LargeObjectSpace::new((0, 0)),
                marks: (0..chunks).map(|_| AtomicU64::new(0)).collect(),
                live: (0..chunks).map(|_| AtomicU64::new(0)).collect(),
            }
        }

        /// A moving-space object.
        fn alloc(&mut self, layout: &Layout) -> usize {
            self.tlab.alloc(layout).expect("test heap full").addr()
        }

        /// A large object.
        fn alloc_large(&self, layout: &Layout) -> usize {
            self.los.alloc(layout).unwrap().addr()
        }

        /// Stores `target` in reference slot `i` of `obj`.
        fn set_ref(&self, obj: usize, i: usize, target: usize) {
            store_word(obj + WORD * (1 + i), target as u64);
        }

        /// Clears every mark, then marks from `roots` with `threads`
        /// workers: (roots' result, each worker's result, the marks).
        fn mark(&self, roots: &[usize], threads: usize) -> (MarkResult, Vec<MarkResult>, Marked) {
            for b in self.marks.iter().chain(&self.live) {
                b.store(0, Ordering::Relaxed);
            }
            let objs = self.los.objects.lock().unwrap();
            for o in objs.values() {
                o.marked.store(false, Ordering::Relaxed);
            }
            let lm = los_marker(&objs);
            let ctx = MarkContext {
                space_start: self.space.start(),
                old_end: self.space.start(),
                space_top: self.space.top(),
                black_end: self.space.top(),
                marks: &self.marks,
                live: &self.live,
                los: &lm,
                watch: Default::default(),
            };
            let (r, w) = mark_by_worker(&ctx, roots, Some(pool()), threads);
            let bits = |v: &[AtomicU64]| v.iter().map(|b| b.load(Ordering::Relaxed)).collect();
            let marked = Marked {
                marks: bits(&self.marks),
                live: bits(&self.live),
                large: objs
                    .iter()
                    .map(|(a, o)| (*a, o.marked.load(Ordering::Relaxed)))
                    .collect(),
            };
            (r, w, marked)
        }

        /// Whether the moving-space object at `addr` is marked in `m`.
        fn is_marked(&self, m: &Marked, addr: usize) -> bool {
            let w = (addr - self.space.start()) / WORD;
            m.marks[w / CHUNK_WORDS] & (1 << (w % CHUNK_WORDS)) != 0
        }
    }

    fn sum(roots: MarkResult, workers: &[MarkResult]) -> MarkResult {
        let mut t = roots;
        for w in workers {
            t += *w;
        }
        t
    }

    /// A reference array of `n` slots (a large object if `large`) pointing
    /// at `n` distinct records; every third record points at a leaf of its
    /// own. Returns (array, records, leaves).
    fn fan_out(h: &mut TestHeap, n: usize, large: bool) -> (usize, Vec<usize>, Vec<usize>) {
        let arr_layout = Layout::ref_array(0, n).unwrap();
        let arr = if large {
            h.alloc_large(&arr_layout)
        } else {
            h.alloc(&arr_layout)
        };
        let rec = Layout::record(1, 1, 8).unwrap();
        let leaf = Layout::record(2, 0, 8).unwrap();
        let (mut recs, mut leaves) = (Vec::with_capacity(n), Vec::new());
        for i in 0..n {
            let r = h.alloc(&rec);
            h.set_ref(arr, i, r);
            if i % 3 == 0 {
                let l = h.alloc(&leaf);
                h.set_ref(r, 0, l);
                leaves.push(l);
            }
            recs.push(r);
        }
        (arr, recs, leaves)
    }

    /// A 100 000-slot array, in the large-object space and in the moving
    /// space: every target is marked, and 2 and 4 workers leave exactly
    /// the bits, flags and counts one worker leaves.
    #[test]
    fn a_big_array_marks_every_target_as_one_worker_does() {
        const N: usize = 100_000;
        for large in [true, false] {
            let mut h = TestHeap::new(N * 48 + (1 << 20));
            let (arr, recs, leaves) = fan_out(&mut h, N, large);
            let (r1, w1, m1) = h.mark(&[arr], 1);
            let one = sum(r1, &w1);
            for &a in recs.iter().chain(&leaves) {
                assert!(h.is_marked(&m1, a), "{a:#x} unmarked (large: {large})");
            }
            let moving = N + leaves.len() + usize::from(!large);
            let rec = Layout::record(1, 1, 8).unwrap().size();
            let leaf = Layout::record(2, 0, 8).unwrap().size();
            let arr_bytes = Layout::ref_array(0, N).unwrap().size();
            let bytes = N * rec + leaves.len() * leaf + if large { 0 } else { arr_bytes };
            assert_eq!(
                one,
                MarkResult {
                    objects: moving,
                    bytes,
                    large_objects: usize::from(large),
                    slices: N.div_ceil(SLICE_REFS),
                }
            );
            assert_eq!(m1.large, if large { vec![(arr, true)] } else { vec![] });
            for threads in [2, 4] {
                let (r, w, m) = h.mark(&[arr], threads);
                assert_eq!(w.len(), threads);
                assert_eq!(sum(r, &w), one, "{threads} workers (large: {large})");
                assert!(
                    m == m1,
                    "{threads} workers marked other bits (large: {large})"
                );
            }
        }
    }

    /// A record with more fields than a slice is split too, and its
    /// slices stop at its last field: the data words after them (junk
    /// that would panic as references) are never scanned.
    #[test]
    fn a_split_record_scans_its_fields_and_not_its_data() {
        let n = 2 * SLICE_REFS + 1;
        let mut h = TestHeap::new(1 << 20);
        let rec = h.alloc(&Layout::record(3, n, 64).unwrap());
        for d in 0..8 {
            store_word(rec + WORD * (1 + n + d), 0xdead_0000_0000 | d as u64);
        }
        let leaf = Layout::record(2, 0, 8).unwrap();
        let leaves: Vec<usize> = (0..n).map(|_| h.alloc(&leaf)).collect();
        for (i, &l) in leaves.iter().enumerate() {
            h.set_ref(rec, i, l);
        }
        for threads in [1, 2] {
            let (r, w, m) = h.mark(&[rec], threads);
            let t = sum(r, &w);
            assert_eq!(t.objects, n + 1);
            assert_eq!(t.slices, 3);
            assert!(leaves.iter().all(|&l| h.is_marked(&m, l)));
        }
    }

    /// With two workers, the slices of one big array are scanned by both,
    /// not by the worker that found it. Which worker steals what depends
    /// on scheduling (the machine may be busy), so a few runs are allowed;
    /// every run must count each slice exactly once.
    #[test]
    fn idle_workers_steal_slices_of_one_big_array() {
        const N: usize = 1 << 20;
        let mut h = TestHeap::new(N * 48 + (1 << 20));
        let (arr, _, _) = fan_out(&mut h, N, true);
        let mut per_worker = Vec::new();
        for _ in 0..10 {
            let (r, w, _) = h.mark(&[arr], 2);
            assert_eq!(r.slices, 0);
            assert_eq!(
                w.iter().map(|w| w.slices).sum::<usize>(),
                N.div_ceil(SLICE_REFS)
            );
            per_worker = w.iter().map(|w| w.slices).collect();
            if w.iter().all(|w| w.slices > 0) {
                return;
            }
        }
        panic!("one worker scanned every slice in 10 runs: {per_worker:?}");
    }

    /// A node of a random graph.
    #[derive(Clone, Debug)]
    struct Node {
        /// Reference slots.
        refs: usize,
        /// In the large-object space.
        large: bool,
        /// A record (with junk data after its fields) rather than an array.
        record: bool,
    }

    /// Slot counts around the slice size, and some anywhere below 3000.
    fn big_refs() -> impl Strategy<Value = usize> {
        prop_oneof![
            prop::sample::select(vec![0usize, 1, 511, 512, 513, 1023, 1024, 1025, 1536, 2049]),
            0usize..3000,
        ]
    }

    fn graph() -> impl Strategy<Value = Vec<Node>> {
        let small = (0usize..4, any::<bool>()).prop_map(|(refs, record)| Node {
            refs,
            large: false,
            record,
        });
        let big =
            (big_refs(), any::<bool>(), any::<bool>()).prop_map(|(refs, large, record)| Node {
                refs,
                large,
                record,
            });
        (
            prop::collection::vec(small, 1..200),
            prop::collection::vec(big, 1..6),
        )
            .prop_map(|(mut s, b)| {
                s.extend(b);
                s
            })
    }

    /// Builds `nodes` with random edges (each slot null with probability
    /// `null_pct`%) and random roots, marks with `threads` workers and
    /// compares everything with a sequential BFS over the model.
    fn check_against_bfs(
        nodes: &[Node],
        seed: u64,
        null_pct: u64,
        roots_n: usize,
        threads: usize,
    ) -> Result<(), TestCaseError> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let layout = |n: &Node| {
            if n.record {
                Layout::record(0, n.refs, 24).unwrap()
            } else {
                Layout::ref_array(0, n.refs).unwrap()
            }
        };
        let moving: usize = nodes
            .iter()
            .filter(|n| !n.large)
            .map(|n| layout(n).size())
            .sum();
        let mut h = TestHeap::new(moving);
        let addrs: Vec<usize> = nodes
            .iter()
            .map(|n| {
                let l = layout(n);
                let a = if n.large {
                    h.alloc_large(&l)
                } else {
                    h.alloc(&l)
                };
                if n.record {
                    for d in 0..3 {
                        store_word(a + WORD * (1 + n.refs + d), 0xbad0_0000_0000 | d as u64);
                    }
                }
                a
            })
            .collect();
        let mut edges: Vec<Vec<Option<usize>>> = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let e: Vec<Option<usize>> = (0..n.refs)
                .map(|_| {
                    let r = next();
                    (r % 100 >= null_pct).then(|| (r >> 8) as usize % nodes.len())
                })
                .collect();
            for (k, t) in e.iter().enumerate() {
                if let Some(t) = t {
                    h.set_ref(addrs[i], k, addrs[*t]);
                }
            }
            edges.push(e);
        }
        let roots: Vec<usize> = (0..roots_n)
            .map(|_| next() as usize % nodes.len())
            .collect();

        // The reference: a sequential BFS over the model.
        let mut reached = vec![false; nodes.len()];
        let mut queue: VecDeque<usize> = VecDeque::new();
        for &r in &roots {
            if !reached[r] {
                reached[r] = true;
                queue.push_back(r);
            }
        }
        while let Some(i) = queue.pop_front() {
            for &t in edges[i].iter().flatten() {
                if !reached[t] {
                    reached[t] = true;
                    queue.push_back(t);
                }
            }
        }
        let mut want = MarkResult::default();
        let (mut marks, mut live) = (vec![0u64; h.marks.len()], vec![0u64; h.live.len()]);
        let mut large = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if n.large {
                large.push((addrs[i], reached[i]));
            }
            if !reached[i] {
                continue;
            }
            if n.refs > SLICE_REFS {
                want.slices += n.refs.div_ceil(SLICE_REFS);
            }
            if n.large {
                want.large_objects += 1;
                continue;
            }
            let size = layout(n).size();
            want.objects += 1;
            want.bytes += size;
            let w = (addrs[i] - h.space.start()) / WORD;
            marks[w / CHUNK_WORDS] |= 1 << (w % CHUNK_WORDS);
            for w in w..w + size / WORD {
                live[w / CHUNK_WORDS] |= 1 << (w % CHUNK_WORDS);
            }
        }
        large.sort_unstable();

        let root_addrs: Vec<usize> = roots.iter().map(|&r| addrs[r]).collect();
        let (r, w, got) = h.mark(&root_addrs, threads);
        prop_assert_eq!(sum(r, &w), want);
        prop_assert!(got.marks == marks, "mark bits differ from the BFS");
        prop_assert!(got.live == live, "live-word bits differ from the BFS");
        prop_assert_eq!(got.large, large);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Marking random graphs with big objects of sizes around the
        /// slice size, with 1 to 4 workers, marks exactly what a
        /// sequential BFS reaches, and counts it the same.
        #[test]
        fn marks_match_a_sequential_bfs(
            nodes in graph(),
            seed in any::<u64>(),
            null_pct in 0u64..60,
            roots_n in 1usize..4,
            threads in 1usize..=4,
        ) {
            check_against_bfs(&nodes, seed, null_pct, roots_n, threads)?;
        }
    }
}
