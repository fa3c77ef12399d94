//! Stop-the-world collections through the gc-level API: data survives,
//! garbage is reclaimed, references are rewritten.
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract). Rule followed throughout: an `ObjRef` held in a local is only
//! used until the thread's next `alloc`/`collect`/`safepoint`/wait (objects
//! may move then); anything that must survive one lives in `m.roots()`.
//! Every `unsafe` block below relies on that rule.

use movegc_gc::{GcHeap, HeapConfig, Layout, ObjRef};

fn heap(cap: usize) -> GcHeap {
    GcHeap::new(HeapConfig {
        capacity: cap,
        verify: true,
        strategy: movegc_gc::Strategy::StopTheWorld,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn linked_list_survives_and_garbage_is_freed() {
    let h = heap(64 << 20);
    let mut m = h.attach().unwrap();
    let node = Layout::record(1, 1, 8).unwrap();
    let junk = Layout::byte_array(2, 40).unwrap();
    // SAFETY: a null slot.
    unsafe { m.roots().push(None) };
    for i in 0..10_000u64 {
        let n = m.alloc(&node).unwrap();
        // SAFETY: `n` and the head (read from its root slot) are used
        // before the next allocation; `n` then lives in the root slot.
        unsafe {
            n.write_u64(0, i).unwrap();
            let head = m.roots()[0];
            m.store_ref(n, 0, head).unwrap();
            m.roots()[0] = Some(n);
        }
        m.alloc(&junk).unwrap(); // garbage between live nodes
    }
    let before = h.used_bytes();
    let st = m.collect().unwrap();
    assert_eq!(st.live_objects, 10_000);
    assert_eq!(st.live_bytes, 10_000 * node.size());
    assert!(
        h.used_bytes() < before / 2,
        "{} vs {before}",
        h.used_bytes()
    );
    // Walk and check every value, newest first.
    // SAFETY: the walk starts at a root slot and neither allocates nor
    // reaches a safepoint.
    let mut cur = unsafe { m.roots()[0] };
    let mut expect = 10_000u64;
    while let Some(n) = cur {
        expect -= 1;
        // SAFETY: as above.
        unsafe {
            assert_eq!(n.read_u64(0).unwrap(), expect);
            cur = n.load_ref(0).unwrap();
        }
    }
    assert_eq!(expect, 0);
    // A second cycle: the full pages are a dense prefix now; only the
    // trailing partial page is compacted again.
    let st2 = m.collect().unwrap();
    assert_eq!(st2.live_bytes, st.live_bytes);
    assert_eq!(st2.dense_pages, st.live_bytes / 4096, "{st2:?}");
    assert!(
        st2.pages_compacted <= 1 && st2.moved_bytes < 4096,
        "{st2:?}"
    );
}

#[test]
fn cycles_and_large_objects() {
    let h = heap(64 << 20);
    let mut m = h.attach().unwrap();
    let pair = Layout::record(0, 2, 0).unwrap();
    let big = Layout::ref_array(3, 10_000).unwrap();
    let a = m.alloc(&pair).unwrap();
    // SAFETY: `a` was just allocated.
    unsafe { m.roots().push(Some(a)) };
    let arr = m.alloc(&big).unwrap();
    // SAFETY: `arr` was just allocated; `a` is read again from its root
    // slot (the allocation may have moved it).
    unsafe {
        let a = m.roots()[0].unwrap();
        m.store_ref(a, 0, Some(arr)).unwrap();
        m.store_ref(a, 1, Some(a)).unwrap(); // cycle
    }
    for i in 0..100 {
        let x = m.alloc(&pair).unwrap();
        // SAFETY: `x` was just allocated, `arr` is loaded from a root;
        // both are used before the next allocation.
        unsafe {
            let arr = m.roots()[0].unwrap().load_ref(0).unwrap().unwrap();
            m.store_ref(arr, i, Some(x)).unwrap();
            m.store_ref(x, 0, Some(arr)).unwrap();
        }
        m.alloc(&big).unwrap(); // dead large object
    }
    let st = m.collect().unwrap();
    assert_eq!(st.large_objects_live, 1);
    assert_eq!(st.large_objects_freed, 100);
    // SAFETY: everything is loaded from the root slot, with no allocation
    // or safepoint until the end of the test.
    unsafe {
        let a: ObjRef = m.roots()[0].unwrap();
        assert_eq!(a.load_ref(1).unwrap(), Some(a));
        let arr = a.load_ref(0).unwrap().unwrap();
        for i in 0..100 {
            let x = arr.load_ref(i).unwrap().unwrap();
            assert!(h.contains(x));
            assert_eq!(x.load_ref(0).unwrap(), Some(arr));
        }
        assert_eq!(arr.load_ref(100).unwrap(), None);
    }
}
