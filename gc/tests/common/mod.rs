//! Shared by the integration tests of the SATB barrier under concurrent
//! marking (`concurrent.rs`, `satb_large_objects.rs`): two reference arrays
//! whose slots each hold a chain of checksummed nodes, a thread that keeps
//! swapping nodes between the arrays (load both, store crossed: the classic
//! way a concurrent marker loses an object, when a node moves from a slot
//! not yet scanned to one already scanned), and a loop of concurrent
//! collections that checks after each that every node survived exactly
//! once, with its contents.
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract). Rule followed: an `ObjRef` held in a local is only used until
//! the thread's next `alloc`/`collect`/`safepoint`/wait (objects may move
//! then); anything that must survive one lives in a root slot or a
//! persistent slot. Every reference store goes through the mutator
//! (`MutatorContext::store_ref`), so the SATB barrier under test runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use movegc_gc::{GcHeap, Layout, MutatorContext, Strategy};

/// The tag of test nodes.
pub const NODE: u16 = 7;

/// What a node stores as the checksum of its id and value.
pub fn checksum(id: u64, value: u64) -> u64 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ value).rotate_left(17)
}

/// A test node: one reference (next), then id, value and checksum.
pub fn node_layout() -> Layout {
    Layout::record(NODE, 1, 24).unwrap()
}

/// Two reference arrays held in persistent slots of a heap. Slot `i` of
/// array `which` holds a chain of `tail` nodes; node `t` of the chain (the
/// head is `t = tail - 1`, the last node has no next) has the id
/// `(which << 32 | i) ^ (t << 48)` and, as its checksum,
/// `checksum(id, 0)`.
pub struct SwapArrays {
    heap: GcHeap,
    ids: [usize; 2],
    lens: [usize; 2],
    tail: usize,
}

impl SwapArrays {
    /// Allocates the arrays, `lens[0]` and `lens[1]` slots (the heap puts
    /// each in the moving space or the large-object space by its size),
    /// and fills them, from a mutator attached for the purpose.
    pub fn build(heap: &GcHeap, lens: [usize; 2], tail: usize) -> SwapArrays {
        let mut m = heap.attach().unwrap();
        for n in lens {
            let a = m.alloc(&Layout::ref_array(1, n).unwrap()).unwrap();
            // SAFETY: `a` was just allocated.
            unsafe { m.roots().push(Some(a)) };
        }
        for (which, n) in lens.into_iter().enumerate() {
            for i in 0..n {
                let id = (which as u64) << 32 | i as u64;
                // SAFETY: a null slot.
                unsafe { m.roots().push(None) };
                // The node's chain, built back to front, then the node.
                for t in 0..tail as u64 {
                    let c = m.alloc(&node_layout()).unwrap();
                    // SAFETY: `c` was just allocated and `prev` read from a
                    // root slot; `c` then lives in the root slot.
                    unsafe {
                        c.write_u64(0, id ^ (t << 48)).unwrap();
                        c.write_u64(16, checksum(id ^ (t << 48), 0)).unwrap();
                        let prev = *m.roots().last().unwrap();
                        m.store_ref(c, 0, prev).unwrap();
                        *m.roots().last_mut().unwrap() = Some(c);
                    }
                }
                // SAFETY: both read from root slots, no allocation before
                // the store.
                unsafe {
                    let nd = m.roots().pop().unwrap().unwrap();
                    let arr = m.roots()[which].unwrap();
                    m.store_ref(arr, i, Some(nd)).unwrap();
                }
            }
        }
        // SAFETY: read from the root slots just now.
        let ids = unsafe {
            [
                heap.persistent_new(m.roots()[0]),
                heap.persistent_new(m.roots()[1]),
            ]
        };
        SwapArrays {
            heap: heap.clone(),
            ids,
            lens,
            tail,
        }
    }

    /// Checks that every slot of both arrays holds an intact chain (ids,
    /// checksums, null at its end) and that every chain is in exactly one
    /// slot. `m` is the calling thread's mutator of the arrays' heap; the
    /// check borrows it, so it reaches no safepoint and every reference it
    /// loads stays current.
    pub fn check(&self, m: &mut MutatorContext) {
        let heap = m.heap();
        assert_eq!(
            heap.space_start(),
            self.heap.space_start(),
            "the mutator must belong to the arrays' heap"
        );
        let tail = self.tail as u64;
        let mut seen = vec![false; self.lens[0] + self.lens[1]];
        for which in 0..2 {
            let arr = heap.persistent_get(self.ids[which]).unwrap();
            for i in 0..self.lens[which] {
                // SAFETY: `arr` was read from a persistent slot by this
                // running mutator (`m`, borrowed, reaches no safepoint).
                let mut c = unsafe { arr.load_ref(i).unwrap() };
                // SAFETY: as above.
                let head = unsafe { c.expect("slot emptied").read_u64(0).unwrap() };
                let id = head ^ ((tail - 1) << 48);
                let (w, k) = ((id >> 32) as usize, (id & 0xffff_ffff) as usize);
                assert!(w < 2 && k < self.lens[w], "bad node id {id:#x}");
                let idx = w * self.lens[0] + k;
                assert!(!seen[idx], "node {id:#x} twice");
                seen[idx] = true;
                for t in (0..tail).rev() {
                    let n = c.unwrap_or_else(|| panic!("chain of {id:#x} cut at {t}"));
                    // SAFETY: as above: no safepoint during the check.
                    unsafe {
                        let v = n.read_u64(0).unwrap();
                        assert_eq!(v, id ^ (t << 48));
                        assert_eq!(n.read_u64(16).unwrap(), checksum(v, 0));
                        c = n.load_ref(0).unwrap();
                    }
                }
                assert!(c.is_none(), "chain of {id:#x} longer than {tail}");
            }
        }
        assert!(seen.iter().all(|&s| s), "a node was lost");
    }

    /// Runs `cycles` concurrent-move collections from `m` (the calling
    /// thread's mutator of the arrays' heap) while `swapper` swaps, and
    /// checks the arrays after each with the swapper paused. Returns how
    /// many cycles marked concurrently (had an initial pause).
    pub fn collect_and_check(
        &self,
        m: &mut MutatorContext,
        swapper: &Swapper,
        cycles: usize,
    ) -> usize {
        let mut concurrent_marks = 0;
        for _ in 0..cycles {
            let st = m.collect_with(Strategy::ConcurrentMove).unwrap();
            if st.initial_pause > Duration::ZERO {
                concurrent_marks += 1;
            }
            swapper.paused(|| self.check(m));
        }
        concurrent_marks
    }
}

/// A thread attached to the arrays' heap that swaps random nodes between
/// the two arrays, 64 swaps between safepoints, until stopped.
pub struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicUsize>,
    /// Asks the swapper to wait between two swaps...
    hold: Arc<AtomicBool>,
    /// ...which it says it does (in a blocking region, so collections go
    /// on meanwhile).
    held: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Swapper {
    /// Starts swapping nodes of `arrays`.
    pub fn spawn(arrays: &SwapArrays) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicUsize::new(0));
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicBool::new(false));
        let thread = {
            let heap = arrays.heap.clone();
            let ([a_id, b_id], [na, nb]) = (arrays.ids, arrays.lens);
            let (stop, swaps) = (stop.clone(), swaps.clone());
            let (hold, held) = (hold.clone(), held.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach().unwrap();
                let mut x = 0x9E37_79B9_7F4A_7C15u64;
                while !stop.load(Ordering::Relaxed) {
                    if hold.load(Ordering::Acquire) {
                        m.blocking(|| {
                            held.store(true, Ordering::Release);
                            while hold.load(Ordering::Acquire) {
                                std::thread::yield_now();
                            }
                            held.store(false, Ordering::Release);
                        });
                    }
                    for _ in 0..64 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let (i, j) = ((x as usize) % na, ((x >> 32) as usize) % nb);
                        // SAFETY: everything is read from the persistent
                        // slots in this iteration; the safepoint is after
                        // the loop.
                        unsafe {
                            let a = heap.persistent_get(a_id).unwrap();
                            let b = heap.persistent_get(b_id).unwrap();
                            let na = a.load_ref(i).unwrap();
                            let nb = b.load_ref(j).unwrap();
                            m.store_ref(b, j, na).unwrap();
                            m.store_ref(a, i, nb).unwrap();
                        }
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                    m.safepoint();
                }
            })
        };
        Swapper {
            stop,
            swaps,
            hold,
            held,
            thread,
        }
    }

    /// Runs `f` while the swapper waits between two swaps; returns once it
    /// has resumed (so a later pause cannot mistake this one's `held` for
    /// its own). Panics if the swapper thread has died (it would never
    /// answer).
    pub fn paused<R>(&self, f: impl FnOnce() -> R) -> R {
        self.hold.store(true, Ordering::Release);
        self.wait_held(true);
        let r = f();
        self.hold.store(false, Ordering::Release);
        self.wait_held(false);
        r
    }

    fn wait_held(&self, v: bool) {
        while self.held.load(Ordering::Acquire) != v {
            assert!(!self.thread.is_finished(), "the swapper thread died");
            std::thread::yield_now();
        }
    }

    /// Stops the swapper and returns how many swaps it made.
    pub fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.swaps.load(Ordering::Relaxed)
    }
}
