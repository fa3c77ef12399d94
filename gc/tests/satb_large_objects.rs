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
mod common;

use common::{node_layout, SwapArrays, Swapper};
use movegc_gc::{GcHeap, HeapConfig, Layout, Strategy};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    // The first array in the large-object space, the second (8 KiB) in
    // the moving space.
    let arrays = SwapArrays::build(&heap, [N, 1024], TAIL);
    assert!(
        heap.stats().large_object_bytes >= N * 8,
        "the {N}-slot array is a large object"
    );
    let stop = Arc::new(AtomicBool::new(false));
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
    let swapper = Swapper::spawn(&arrays);
    let mut m = heap.attach().unwrap();
    let cm = arrays.collect_and_check(&mut m, &swapper, 20);
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.stop();
    oth.join().unwrap();
    eprintln!("{cm} concurrent marks, {swaps} swaps");
    assert_eq!(cm, 20);
    assert!(swaps > 0);
}
