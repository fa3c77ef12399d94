//! The SATB barrier and large objects: nodes are swapped between a
//! large-object reference array and a moving-space array while a heap with
//! 4 marking workers collects concurrently, and a second heap stores
//! heavily at the same time (the barrier's broadcast path). Every node must
//! survive every cycle. (Contributed by the concurrent-marking review.)
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract). Rule followed: an `ObjRef` held in a local is only used until
//! the thread's next `alloc`/`collect`/`safepoint`/wait (objects may move
//! then); anything that must survive one lives in a root slot or a
//! persistent slot. Every reference store goes through the mutator
//! (`MutatorContext::store_ref`), so the SATB barrier under test runs.
use movegc_gc::{GcHeap, HeapConfig, Layout, Strategy};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn checksum(id: u64, value: u64) -> u64 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ value).rotate_left(17)
}
fn node_layout() -> Layout {
    Layout::record(7, 1, 24).unwrap()
}

#[test]
fn los_array_swaps_survive_concurrent_marking() {
    const N: usize = 8192; // 64 KiB ref array: a large object
    const TAIL: usize = 16;
    let mk = || {
        GcHeap::new(HeapConfig {
            capacity: 128 << 20,
            min_free: 64 << 20,
            strategy: Strategy::ConcurrentMove,
            gc_threads: 4,
            verify: true,
            ..Default::default()
        })
        .unwrap()
    };
    let heap = mk();
    if heap.strategy() == Strategy::StopTheWorld {
        eprintln!("skipped");
        return;
    }
    let other = mk();
    let (a_id, b_id) = {
        let mut m = heap.attach().unwrap();
        let a = m.alloc(&Layout::ref_array(1, N).unwrap()).unwrap(); // LOS
                                                                     // SAFETY: `a` was just allocated.
        unsafe { m.roots().push(Some(a)) };
        let b = m.alloc(&Layout::ref_array(1, 1024).unwrap()).unwrap(); // moving
                                                                        // SAFETY: `b` was just allocated.
        unsafe { m.roots().push(Some(b)) };
        for (which, n) in [(0usize, N), (1, 1024)] {
            for i in 0..n {
                let id = (which as u64) << 32 | i as u64;
                // SAFETY: a null slot.
                unsafe { m.roots().push(None) };
                for t in 0..TAIL as u64 {
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
                // SAFETY: both references are read from root slots, with no
                // allocation or safepoint before the store.
                unsafe {
                    let nd = m.roots().pop().unwrap().unwrap();
                    let arr = m.roots()[which].unwrap();
                    m.store_ref(arr, i, Some(nd)).unwrap();
                }
            }
        }
        // SAFETY: read from the root slots just now.
        unsafe {
            (
                heap.persistent_new(m.roots()[0]),
                heap.persistent_new(m.roots()[1]),
            )
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let hold = Arc::new(AtomicBool::new(false));
    let held = Arc::new(AtomicBool::new(false));
    // other heap: many stores (their old values get broadcast to us).
    let oth = {
        let (o, s) = (other.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut m = o.attach().unwrap();
            let arr = m.alloc(&Layout::ref_array(1, 256).unwrap()).unwrap();
            // SAFETY: `arr` was just allocated.
            unsafe { m.roots().push(Some(arr)) };
            let mut k = 0usize;
            while !s.load(Ordering::Relaxed) {
                let n = m.alloc(&node_layout()).unwrap();
                // SAFETY: `n` was just allocated, `arr` read from its root
                // slot; no allocation before the store.
                unsafe {
                    let arr = m.roots()[0].unwrap();
                    m.store_ref(arr, k % 256, Some(n)).unwrap();
                }
                k += 1;
            }
        })
    };
    let swapper = {
        let (heap, stop, swaps, hold, held) = (
            heap.clone(),
            stop.clone(),
            swaps.clone(),
            hold.clone(),
            held.clone(),
        );
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
                    let (i, j) = ((x as usize) % N, ((x >> 32) as usize) % 1024);
                    // SAFETY: everything is read from the persistent slots
                    // in this iteration; the safepoint is after the loop.
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
    let mut m = heap.attach().unwrap();
    let mut cm = 0;
    for _ in 0..20 {
        let st = m.collect_with(Strategy::ConcurrentMove).unwrap();
        if st.initial_pause > std::time::Duration::ZERO {
            cm += 1;
        }
        hold.store(true, Ordering::Release);
        while !held.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let mut seen = vec![false; N + 1024];
        for (arr, n) in [
            (heap.persistent_get(a_id).unwrap(), N),
            (heap.persistent_get(b_id).unwrap(), 1024),
        ] {
            for i in 0..n {
                // SAFETY: `arr` was just read from a persistent slot and this
                // check neither allocates nor reaches a safepoint.
                let mut c = unsafe { arr.load_ref(i).unwrap() };
                // SAFETY: as above.
                let head = unsafe { c.expect("slot emptied").read_u64(0).unwrap() };
                let id = head ^ ((TAIL as u64 - 1) << 48);
                let idx = (id >> 32) as usize * N + (id & 0xffff_ffff) as usize;
                assert!(!seen[idx]);
                seen[idx] = true;
                for t in (0..TAIL as u64).rev() {
                    let nd = c.unwrap_or_else(|| panic!("chain cut"));
                    // SAFETY: as above: no safepoint during the check.
                    unsafe {
                        let v = nd.read_u64(0).unwrap();
                        assert_eq!(v, id ^ (t << 48));
                        assert_eq!(nd.read_u64(16).unwrap(), checksum(v, 0));
                        c = nd.load_ref(0).unwrap();
                    }
                }
            }
        }
        hold.store(false, Ordering::Release);
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    oth.join().unwrap();
    eprintln!(
        "{cm} concurrent marks, {} swaps",
        swaps.load(Ordering::Relaxed)
    );
    assert_eq!(cm, 20);
}
