//! Parallel marking into the mark bitmap (object starts) and the live-words
//! bitmap (every word of every live object), with work stealing and no
//! recursion on the object graph.
//!
//! Each worker owns a LIFO deque of grey objects; idle workers steal from
//! the shared injector (seeded with the roots) and from each other.
//! Termination: a worker that finds no work anywhere counts itself idle and
//! keeps looking; when all workers are idle at once no deque can hold work
//! (only a non-idle worker pushes), so marking is complete.
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
use crate::space::LargeObject;

/// What marking needs to know about the heap.
pub struct MarkContext<'a> {
    /// Start of the moving space.
    pub space_start: usize,
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
#[derive(Debug, Default, Clone, Copy)]
pub struct MarkResult {
    /// Live objects in the moving space.
    pub objects: usize,
    /// Live bytes in the moving space.
    pub bytes: usize,
    /// Live large objects.
    pub large_objects: usize,
}

impl std::ops::AddAssign for MarkResult {
    fn add_assign(&mut self, o: MarkResult) {
        self.objects += o.objects;
        self.bytes += o.bytes;
        self.large_objects += o.large_objects;
    }
}

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
        if addr.wrapping_sub(self.space_start) < self.space_top - self.space_start {
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

    /// Queues the referents of the (marked) object at `addr` in `fifo`,
    /// which marks them a little later (see [`PrefetchFifo`]).
    #[inline]
    fn scan(
        &self,
        addr: usize,
        fifo: &mut PrefetchFifo,
        local: &Worker<usize>,
        stats: &mut MarkResult,
    ) {
        let h = Header::from_raw(load_word(addr)).expect("scanned object has a header");
        let n = h.ref_count();
        for i in 0..n {
            let v = load_word(addr + WORD + i * WORD) as usize;
            if v != 0 {
                if let Some(old) = fifo.push(self, v) {
                    if self.try_mark(old, stats) {
                        local.push(old);
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
    let mut total = MarkResult::default();
    let injector = Injector::new();
    for &r in roots {
        if r != 0 && ctx.try_mark(r, &mut total) {
            injector.push(r);
        }
    }
    let threads = threads.max(1);
    let workers: Vec<Worker<usize>> = (0..threads).map(|_| Worker::new_lifo()).collect();
    let stealers: Vec<Stealer<usize>> = workers.iter().map(|w| w.stealer()).collect();
    let idle = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<MarkResult>> =
        (0..threads).map(|_| Default::default()).collect();

    // A worker that panics (a corrupt heap: a bad header, a reference
    // outside the heap) counts as idle for good, so the others cannot wait
    // for it forever; the panic is raised again once they have stopped.
    let panicked: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>> =
        std::sync::Mutex::new(None);
    let run = |i: usize, local: Worker<usize>| {
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
    for r in results {
        let r = r.into_inner().unwrap_or_else(|e| e.into_inner());
        total.objects += r.objects;
        total.bytes += r.bytes;
        total.large_objects += r.large_objects;
    }
    total
}

#[allow(clippy::too_many_arguments)]
fn drain(
    ctx: &MarkContext<'_>,
    me: usize,
    local: &Worker<usize>,
    injector: &Injector<usize>,
    stealers: &[Stealer<usize>],
    idle: &AtomicUsize,
    threads: usize,
    stats: &mut MarkResult,
) {
    let find = |local: &Worker<usize>| -> Option<usize> {
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
        while let Some(obj) = find(local) {
            ctx.scan(obj, &mut fifo, local, stats);
        }
        // Mark what waits in the FIFO before looking idle: no other worker
        // can see it.
        let mut found = false;
        while let Some(v) = fifo.pop() {
            if ctx.try_mark(v, stats) {
                local.push(v);
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
                space_top: base + 4096 * 8,
                black_end: base + 4096 * 8,
                marks: &marks,
                live: &live,
                los: &los,
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
