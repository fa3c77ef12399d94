//! What `HeapStats` reports beyond the cycles themselves: allocation stalls
//! counted per thread, pauses with their time to safepoint apart and the
//! late thread named, the cycle in progress, and the collector's CPU time.
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract): every `ObjRef` here is used before the thread's next
//! allocation or lives in a root slot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use movegc_gc::{AllocError, GcHeap, HeapConfig, Layout, PauseKind, Phase, Strategy};

fn heap(capacity: usize, strategy: Strategy) -> GcHeap {
    GcHeap::new(HeapConfig {
        capacity,
        strategy,
        gc_threads: 2,
        ..Default::default()
    })
    .expect("heap")
}

/// An allocation that finds the heap full waits for a collection: that
/// wait is an allocation stall of the allocating thread, counted even when
/// the answer is "no room".
#[test]
fn an_allocation_that_waits_for_room_is_a_stall_of_its_thread() {
    let heap = heap(4 << 20, Strategy::StopTheWorld);
    let h = heap.clone();
    let (stalls_seen, err) = std::thread::Builder::new()
        .name("filler".into())
        .spawn(move || {
            let mut m = h.attach().unwrap();
            let layout = Layout::record(1, 0, 4096).unwrap();
            // Keep every object: the heap fills with live data.
            let err = loop {
                match m.alloc(&layout) {
                    // SAFETY: rooted at once.
                    Ok(o) => unsafe { m.roots().push(Some(o)) },
                    Err(e) => break e,
                }
            };
            (h.stats().threads.clone(), err)
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(matches!(err, AllocError::HeapExhausted { .. }), "{err:?}");
    let me = stalls_seen
        .iter()
        .find(|t| t.name == "filler")
        .expect("the filler thread is listed while attached");
    assert!(me.alloc_stalls >= 1, "{me:?}");
    assert!(me.alloc_stall_total > Duration::ZERO, "{me:?}");
    assert!(me.alloc_stall_max <= me.alloc_stall_total, "{me:?}");
    // Once the thread has detached its stalls stay in the heap's totals.
    let s = heap.stats();
    assert!(s.threads.is_empty(), "{:?}", s.threads);
    assert_eq!(s.detached_threads.alloc_stalls, me.alloc_stalls);
    assert_eq!(s.alloc_stalls, me.alloc_stalls);
    assert_eq!(s.alloc_stall_histogram.len(), me.alloc_stalls);
    assert!(s.cycles_exhausted >= 1, "{s:?}");
}

/// A thread that runs without reaching a safepoint holds up a stop of the
/// world: the wait is reported as the pause's time to safepoint, not as
/// the pause, and the thread is named.
#[test]
fn time_to_safepoint_is_apart_from_the_pause_and_names_the_late_thread() {
    let heap = heap(16 << 20, Strategy::StopTheWorld);
    let (go, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let t = {
        let (h, go, done) = (heap.clone(), go.clone(), done.clone());
        std::thread::Builder::new()
            .name("no-poll".into())
            .spawn(move || {
                let mut m = h.attach().unwrap();
                go.store(true, Ordering::Release);
                // 150 ms without a safepoint poll.
                std::thread::sleep(Duration::from_millis(150));
                m.safepoint();
                while !done.load(Ordering::Acquire) {
                    m.safepoint();
                    std::thread::yield_now();
                }
            })
            .unwrap()
    };
    while !go.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let mut m = heap.attach().unwrap();
    let st = m.collect_with(Strategy::StopTheWorld).expect("a cycle");
    done.store(true, Ordering::Release);
    drop(m);
    t.join().unwrap();
    assert_eq!(st.pauses.len(), 1, "{st:?}");
    let p = &st.pauses[0];
    assert_eq!(p.kind, PauseKind::StopTheWorld);
    assert!(p.time_to_safepoint >= Duration::from_millis(100), "{p:?}");
    assert!(
        p.last_to_safepoint
            .as_deref()
            .is_some_and(|t| t.starts_with("'no-poll' (tid ")),
        "{p:?}"
    );
    assert_eq!(st.pause, p.duration);
    assert!(
        st.pause < p.time_to_safepoint,
        "the pause does not include the wait: {p:?}"
    );
    assert_eq!(st.time_to_safepoint, p.time_to_safepoint);
    let s = heap.stats();
    assert_eq!(s.max_time_to_safepoint, p.time_to_safepoint);
    assert_eq!(s.max_time_to_safepoint_thread, p.last_to_safepoint);
    assert_eq!(s.detached_threads.last_to_safepoint, 1, "{s:?}");
    assert!(s.detached_threads.held_up_world >= Duration::from_millis(100));
    // The GC log shows the wait apart and names the thread (it waited
    // over a millisecond).
    let l = st.log_line();
    assert!(l.contains("pauses stop-the-world "), "{l}");
    assert!(l.contains(", last 'no-poll' (tid "), "{l}");
}

/// While a concurrent cycle runs, `stats()` shows it (its number, strategy
/// and phase); once it has ended, nothing is in progress. The collector's
/// CPU time is measured and is a share of the process's.
#[test]
fn the_cycle_in_progress_and_the_collectors_cpu_share() {
    let heap = heap(256 << 20, Strategy::ConcurrentMove);
    if heap.strategy() == Strategy::StopTheWorld {
        eprintln!("skipped: userfaultfd unavailable");
        return;
    }
    let mut m = heap.attach().unwrap();
    // A live set big enough that marking and compaction take a while.
    let node = Layout::record(1, 1, 240).unwrap();
    // SAFETY: every object is stored in the list before the next alloc.
    unsafe {
        m.roots().push(None);
        for _ in 0..200_000 {
            let n = m.alloc(&node).unwrap();
            let head = m.roots()[0];
            m.store_ref(n, 0, head).unwrap();
            m.roots()[0] = Some(n);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (marking, compacting) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Not a mutator: it only reads the stats.
    let observer = {
        let (h, stop, marking, compacting) = (
            heap.clone(),
            stop.clone(),
            marking.clone(),
            compacting.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(p) = h.stats().in_progress {
                    assert_eq!(p.strategy, Strategy::ConcurrentMove);
                    assert!(p.cycle >= 1);
                    match p.phase {
                        Phase::Marking => marking.fetch_add(1, Ordering::Relaxed),
                        Phase::Compacting => compacting.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                }
            }
        })
    };
    // Until the observer has seen both phases (bounded).
    for _ in 0..200 {
        m.collect_with(Strategy::ConcurrentMove).expect("a cycle");
        if marking.load(Ordering::Relaxed) > 0 && compacting.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    observer.join().unwrap();
    assert!(marking.load(Ordering::Relaxed) > 0, "never saw marking");
    assert!(
        compacting.load(Ordering::Relaxed) > 0,
        "never saw compaction"
    );
    m.wait_idle();
    let s = heap.stats();
    assert!(s.in_progress.is_none(), "{:?}", s.in_progress);
    assert!(s.gc_cpu > Duration::ZERO, "{s:?}");
    assert!(
        s.process_cpu >= s.gc_cpu,
        "{:?} {:?}",
        s.process_cpu,
        s.gc_cpu
    );
    let share = s.gc_cpu_share();
    assert!(share > 0.0 && share <= 1.0, "{share}");
    // Marking 50 MB and compacting it each cycle costs CPU: at least the
    // marking the cycles report.
    assert!(
        s.gc_cpu >= s.total_mark / 2,
        "{:?} vs mark {:?}",
        s.gc_cpu,
        s.total_mark
    );
}
