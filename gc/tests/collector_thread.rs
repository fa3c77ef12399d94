//! A heap's collector thread (`movegc-collector`): one per heap, started
//! with the heap, running every concurrent cycle's marking and compaction,
//! and gone when the heap is dropped. Its own test binary (one test), so
//! that no other test's heaps add threads of that name to the count.
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract): every `ObjRef` here is used before the thread's next
//! allocation or lives in a root slot.

use std::time::{Duration, Instant};

use movegc_gc::{GcHeap, HeapConfig, Layout, Strategy};

/// Threads of this process whose name is `movegc-collector` (truncated to
/// 15 bytes by the kernel).
fn collector_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "movegc-collecto")
        .count()
}

#[test]
fn one_collector_thread_per_heap_for_its_whole_life() {
    assert_eq!(collector_threads(), 0, "no heap yet");
    let heap = GcHeap::new(HeapConfig {
        capacity: 64 << 20,
        min_free: 64 << 20,
        strategy: Strategy::ConcurrentMove,
        gc_threads: 2,
        verify: true,
        ..Default::default()
    })
    .unwrap();
    if heap.strategy() == Strategy::StopTheWorld {
        eprintln!("skipped: userfaultfd unavailable");
        return;
    }
    assert_eq!(collector_threads(), 1, "started with the heap");
    let mut m = heap.attach().unwrap();
    let node = Layout::record(1, 1, 8).unwrap();
    // SAFETY: a null slot.
    unsafe { m.roots().push(None) };
    let mut cycles = 0;
    for round in 0..20u64 {
        for i in 0..2_000u64 {
            let o = m.alloc(&node).unwrap();
            // SAFETY: `o` was just allocated and the head read from its
            // root slot; `o` then lives in the root slot.
            unsafe {
                o.write_u64(0, round << 32 | i).unwrap();
                let head = if i == 0 { None } else { m.roots()[0] };
                m.store_ref(o, 0, head).unwrap();
                m.roots()[0] = Some(o);
            }
        }
        let st = m.collect().expect("a collection ran");
        // (ConcurrentCopy where the kernel lacks UFFDIO_MOVE.)
        assert!(st.strategy.is_some_and(|s| s.is_concurrent()), "{st:?}");
        assert!(st.pauses.len() == 2, "marked concurrently: {:?}", st.pauses);
        cycles += 1;
        assert_eq!(collector_threads(), 1, "after cycle {cycles}");
    }
    // The last round's list survived every cycle intact.
    // SAFETY: the walk starts at the root slot and reaches no safepoint.
    let mut cur = unsafe { m.roots()[0] };
    for i in (0..2_000u64).rev() {
        let o = cur.expect("list node");
        // SAFETY: as above.
        unsafe {
            assert_eq!(o.read_u64(0).unwrap(), 19 << 32 | i);
            cur = o.load_ref(0).unwrap();
        }
    }
    assert!(cur.is_none());
    drop(m);
    drop(heap);
    let deadline = Instant::now() + Duration::from_secs(5);
    while collector_threads() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(collector_threads(), 0, "gone with the heap");
}
