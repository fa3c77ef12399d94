//! Repeated flips with varying dense-prefix boundaries must not fragment
//! the moving space into VMAs that a later `mremap` cannot span.
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract). Rule followed: an `ObjRef` held in a local is only used until
//! the thread's next `alloc`/`collect`/`safepoint`/wait; anything that must
//! survive one lives in `m.roots()`.

use movegc_gc::{GcHeap, HeapConfig, Layout};

fn vmas_in(start: usize, end: usize) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|l| {
            let r = l.split_whitespace().next().unwrap();
            let (a, b) = r.split_once('-').unwrap();
            let (a, b) = (
                usize::from_str_radix(a, 16).unwrap(),
                usize::from_str_radix(b, 16).unwrap(),
            );
            a < end && b > start
        })
        .count()
}

#[test]
fn many_cycles_with_moving_boundaries() {
    let h = GcHeap::new(HeapConfig {
        capacity: 64 << 20,
        verify: true,
        ..Default::default()
    })
    .unwrap();
    let mut m = h.attach().unwrap();
    let rec = Layout::record(0, 1, 24).unwrap();
    let mut max_vmas = 0;
    for round in 0..40usize {
        // Keep a varying number of objects so dense/moved boundaries shift.
        // SAFETY: a null slot.
        unsafe {
            m.roots().clear();
            m.roots().push(None);
        }
        for i in 0..(2000 + round * 997 % 5000) {
            let o = m.alloc(&rec).unwrap();
            if i % (1 + round % 3) == 0 {
                // SAFETY: `o` was just allocated and the head just read
                // from its root slot; `o` then lives in the root slot.
                unsafe {
                    let head = m.roots()[0];
                    m.store_ref(o, 0, head).unwrap();
                    m.roots()[0] = Some(o);
                }
            }
        }
        m.collect().unwrap();
        let n = vmas_in(h.space_start(), h.space_start() + h.config().capacity);
        eprintln!("round {round}: {n} VMAs");
        max_vmas = max_vmas.max(n);
    }
    assert!(max_vmas <= 3, "moving space split into {max_vmas} VMAs");
}

/// Young concurrent cycles flip only the reservation above the old region,
/// whose end moves every cycle: the heap must stay one VMA (mremap with
/// `MREMAP_DONTUNMAP` leaves its source whole) and every flip must work
/// (a split heap would make a later flip's mremap fail: `flips` counts the
/// cycles that flipped).
#[test]
fn young_cycles_keeping_the_old_region_do_not_split_the_heap() {
    let h = GcHeap::new(HeapConfig {
        capacity: 64 << 20,
        min_free: 64 << 20,
        generational: true,
        keep_old_region: true,
        verify: true,
        ..Default::default()
    })
    .unwrap();
    if h.strategy() == movegc_gc::Strategy::StopTheWorld {
        eprintln!("skipped: userfaultfd unavailable (no flips)");
        return;
    }
    let mut m = h.attach().unwrap();
    let rec = Layout::record(0, 1, 24).unwrap();
    // SAFETY: a null slot.
    unsafe { m.roots().push(None) };
    let (start, end) = (h.space_start(), h.space_start() + h.config().capacity);
    let mut kept = 0;
    for round in 0..30usize {
        // A growing list (old after each cycle) plus garbage.
        for i in 0..(3000 + round * 131) {
            let o = m.alloc(&rec).unwrap();
            if i % 3 == 0 {
                // SAFETY: `o` was just allocated and the head just read
                // from its root slot; `o` then lives in the root slot.
                unsafe {
                    let head = m.roots()[0];
                    m.store_ref(o, 0, head).unwrap();
                    m.roots()[0] = Some(o);
                }
            }
        }
        let st = if round % 10 == 0 {
            m.collect().unwrap()
        } else {
            m.collect_young().unwrap()
        };
        assert!(
            st.strategy.unwrap().is_concurrent(),
            "round {round} fell back"
        );
        kept += st.kept_pages;
        let n = vmas_in(start, end);
        assert!(n <= 1, "round {round}: the heap is {n} VMAs");
    }
    assert!(kept > 0, "no young cycle kept its old region");
}
