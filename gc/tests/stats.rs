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

use movegc_gc::concurrent::FaultMode;
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
    // ... and its own counters are kept by name among the recent ones.
    let kept = s
        .recent_detached
        .iter()
        .find(|t| t.name == "filler")
        .expect("the detached filler is listed");
    assert_eq!(kept.alloc_stalls, me.alloc_stalls);
    assert_eq!(kept.tid, me.tid);
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

/// `concurrent_gc_threads` bounds the threads that compact while mutators
/// run (one here, of two), and the cycles stay correct (verified).
#[test]
fn concurrent_cycles_use_the_concurrent_share_of_the_threads() {
    for concurrent in [1, 2] {
        let heap = GcHeap::new(HeapConfig {
            capacity: 64 << 20,
            strategy: Strategy::ConcurrentMove,
            gc_threads: 2,
            concurrent_gc_threads: Some(concurrent),
            verify: true,
            ..Default::default()
        })
        .expect("heap");
        if heap.strategy() == Strategy::StopTheWorld {
            eprintln!("skipped: userfaultfd unavailable");
            return;
        }
        let mut m = heap.attach().unwrap();
        let node = Layout::record(1, 1, 48).unwrap();
        // SAFETY: every object is stored in the list (a root) before the
        // next allocation; every other one is dropped from it (garbage).
        unsafe {
            m.roots().push(None);
            for i in 0..100_000 {
                let n = m.alloc(&node).unwrap();
                let head = m.roots()[0];
                m.store_ref(n, 0, head).unwrap();
                if i % 2 == 0 {
                    m.roots()[0] = Some(n);
                }
            }
        }
        let st = m.collect_with(Strategy::ConcurrentMove).expect("a cycle");
        m.wait_idle();
        assert_eq!(st.strategy, Some(Strategy::ConcurrentMove));
        let last = heap.stats().recent.last().cloned().expect("a cycle");
        assert_eq!(
            last.compaction_per_thread.len(),
            concurrent,
            "compaction threads with concurrent_gc_threads = {concurrent}"
        );
        assert_eq!(last.live_objects, 50_000, "{last:?}");
    }
}

/// Allocation pacing: a thread that allocates fast while a concurrent
/// cycle marks is delayed a little per TLAB (counted per thread, per cycle
/// and in the GC log line) instead of filling the heap; with pacing off it
/// never is.
#[test]
fn fast_allocation_during_marking_is_paced() {
    for pacing in [Some(Duration::from_millis(10)), None] {
        let heap = GcHeap::new(HeapConfig {
            capacity: 64 << 20,
            strategy: Strategy::ConcurrentMove,
            gc_threads: 2,
            pacing_max_delay: pacing,
            gc_cpu_target: None,
            min_free: 64 << 20,
            ..Default::default()
        })
        .expect("heap");
        if heap.strategy() == Strategy::StopTheWorld {
            eprintln!("skipped: userfaultfd unavailable");
            return;
        }
        let done = Arc::new(AtomicBool::new(false));
        // A live list of about 24 MiB: marking it takes a while.
        let collector = {
            let (h, done) = (heap.clone(), done.clone());
            std::thread::Builder::new()
                .name("collector".into())
                .spawn(move || {
                    let mut m = h.attach().unwrap();
                    let node = Layout::record(1, 1, 224).unwrap();
                    // SAFETY: each node is stored in the list (a root)
                    // before the next allocation.
                    unsafe {
                        m.roots().push(None);
                        for _ in 0..100_000 {
                            let n = m.alloc(&node).unwrap();
                            let head = m.roots()[0];
                            m.store_ref(n, 0, head).unwrap();
                            m.roots()[0] = Some(n);
                        }
                    }
                    // The first cycle measures how long marking takes;
                    // the next ones are paced by it.
                    for _ in 0..30 {
                        // `None`: a cycle the allocator's allocation
                        // started ran instead, as good a cycle here.
                        let _ = m.collect_with(Strategy::ConcurrentMove);
                        if h.stats().pacing_delays > 0 {
                            break;
                        }
                    }
                    done.store(true, Ordering::Relaxed);
                })
                .unwrap()
        };
        let allocator = {
            let (h, done) = (heap.clone(), done.clone());
            std::thread::Builder::new()
                .name("allocator".into())
                .spawn(move || {
                    let mut m = h.attach().unwrap();
                    let garbage = Layout::record(2, 0, 1016).unwrap();
                    let mut allocated = 0usize;
                    // Garbage as fast as possible while the collector runs
                    // (bounded: 4 GiB).
                    while allocated < 4 << 30 && !done.load(Ordering::Relaxed) {
                        m.alloc(&garbage).unwrap();
                        allocated += garbage.size();
                    }
                })
                .unwrap()
        };
        collector.join().unwrap();
        allocator.join().unwrap();
        let s = heap.stats();
        let paced_cycles: Vec<_> = s.recent.iter().filter(|c| c.pacing_delays > 0).collect();
        match pacing {
            Some(max) => {
                assert!(s.pacing_delays > 0, "never paced: {:?}", s.recent);
                let me = &s.detached_threads;
                assert_eq!(
                    me.pacing_delays, s.pacing_delays,
                    "the allocator's, counted"
                );
                assert!(me.pacing_delay_total > Duration::ZERO);
                assert!(!paced_cycles.is_empty());
                let c = paced_cycles[0];
                // Each delay is at most `max` (plus a sleep's overshoot).
                assert!(
                    c.pacing_delay <= (max + Duration::from_millis(5)) * c.pacing_delays as u32,
                    "{c:?}"
                );
                assert!(
                    c.log_line()
                        .contains(&format!(" paced {} (", c.pacing_delays)),
                    "{}",
                    c.log_line()
                );
            }
            None => {
                assert_eq!(s.pacing_delays, 0);
                assert!(paced_cycles.is_empty());
            }
        }
    }
}

/// Per-thread fault attribution, in both fault modes: the named thread
/// that reads the heap while a cycle compacts is charged with its faults
/// (count, stalls, slowest pages with their cycle); the thread that only
/// collects is charged with none; and every fault the cycles counted is
/// some thread's.
#[test]
fn faults_are_attributed_to_the_thread_that_took_them() {
    for fault_mode in [FaultMode::Sigbus, FaultMode::HandlerThread] {
        let heap = GcHeap::new(HeapConfig {
            capacity: 64 << 20,
            strategy: Strategy::ConcurrentMove,
            fault_mode,
            gc_threads: 1,
            verify: false,
            ..Default::default()
        })
        .expect("heap");
        if heap.strategy() == Strategy::StopTheWorld {
            eprintln!("skipped: userfaultfd unavailable");
            return;
        }
        let (built, done) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let reader = {
            let (h, built, done) = (heap.clone(), built.clone(), done.clone());
            std::thread::spawn(move || {
                let mut m = h.attach_named("reader").unwrap();
                let node = Layout::record(1, 1, 240).unwrap();
                // SAFETY: each node is stored in the list (a root) before
                // the next allocation; the walks below hold raw references
                // only between safepoints (no allocation inside).
                unsafe {
                    m.roots().push(None);
                    for i in 0..50_000u64 {
                        let n = m.alloc(&node).unwrap();
                        n.write_u64(0, i).unwrap();
                        let head = m.roots()[0];
                        m.store_ref(n, 0, head).unwrap();
                        m.roots()[0] = Some(n);
                    }
                    built.store(true, Ordering::Release);
                    while !done.load(Ordering::Acquire) {
                        let (mut cur, mut n) = (m.roots()[0], 0u64);
                        while let Some(o) = cur {
                            assert_eq!(o.read_u64(0).unwrap(), 49_999 - n);
                            cur = o.load_ref(0).unwrap();
                            n += 1;
                        }
                        assert_eq!(n, 50_000);
                        m.safepoint();
                    }
                }
            })
        };
        let mut c = heap.attach_named("collector").unwrap();
        while !built.load(Ordering::Acquire) {
            c.blocking(|| std::thread::sleep(Duration::from_millis(1)));
        }
        for _ in 0..100 {
            c.collect_with(Strategy::ConcurrentMove).expect("a cycle");
            let s = heap.stats();
            if s.threads
                .iter()
                .any(|t| t.name == "reader" && t.faults.count > 0)
            {
                break;
            }
        }
        let s = heap.stats();
        done.store(true, Ordering::Release);
        reader.join().unwrap();
        let by_name = |n: &str| s.threads.iter().find(|t| t.name == n).unwrap().clone();
        let (r, col) = (by_name("reader"), by_name("collector"));
        assert!(
            r.faults.count > 0,
            "{fault_mode:?}: the reader never faulted: {r:?}"
        );
        assert_eq!(col.faults.count, 0, "{fault_mode:?}: {col:?}");
        assert_eq!(r.faults.buckets.iter().sum::<u64>(), r.faults.count);
        assert!(r.faults.stall_total >= r.faults.stall_max);
        assert!(r.faults.stall_quantile(0.5) <= r.faults.stall_quantile(0.99));
        assert!(r.faults.stall_quantile(0.99) <= r.faults.stall_max);
        assert!(!r.faults.slowest.is_empty());
        assert!(r.faults.slowest.len() <= movegc_gc::WORST_FAULTS);
        assert_eq!(r.faults.slowest[0].stall, r.faults.stall_max);
        assert!(r
            .faults
            .slowest
            .windows(2)
            .all(|w| w[0].stall >= w[1].stall));
        for f in &r.faults.slowest {
            assert!(f.cycle >= 1 && f.cycle <= s.cycles, "{f:?}");
            assert_eq!(f.page % 4096, 0, "{f:?}");
        }
        // Every fault a cycle counted was attributed to one of the two.
        let counted: u64 = s
            .recent
            .iter()
            .filter_map(|c| c.fault_stall_us.as_ref())
            .map(|h| h.len())
            .sum();
        assert_eq!(counted, r.faults.count, "{fault_mode:?}");
        assert_eq!(s.faults_unattributed, 0, "{fault_mode:?}");
        // Per cycle too, and named in the GC log line.
        let mut per_cycle = 0;
        for t in s.recent.iter().flat_map(|c| &c.fault_threads) {
            assert!(t.thread.starts_with("'reader' (tid "), "{t:?}");
            assert!(t.faults > 0 && t.stall > Duration::ZERO, "{t:?}");
            per_cycle += t.faults;
        }
        assert_eq!(per_cycle, r.faults.count, "{fault_mode:?}");
        let c = s
            .recent
            .iter()
            .find(|c| !c.fault_threads.is_empty())
            .unwrap();
        let line = c.log_line();
        assert!(
            line.contains("; 'reader' (tid ")
                && line.contains(&format!(" {} ", c.fault_threads[0].faults)),
            "{line}"
        );
    }
}

/// Each cycle measures what its compaction cost in CPU time, whichever
/// threads did it (`CycleStats::compaction_cpu`): for a stop-the-world
/// cycle and a concurrent one that moved the same data, some CPU time, and
/// no more than the collector's threads could have spent over the
/// compaction's span (no mutator touches the heap meanwhile, so no fault
/// adds to it).
#[test]
fn compaction_cpu_is_measured_for_every_strategy() {
    for strategy in [
        Strategy::StopTheWorld,
        Strategy::ConcurrentMove,
        Strategy::ConcurrentCopy,
    ] {
        let heap = heap(256 << 20, strategy);
        if heap.strategy() != strategy {
            eprintln!("skipped {strategy:?}: userfaultfd unavailable");
            continue;
        }
        let mut m = heap.attach().unwrap();
        let node = Layout::record(0, 1, 48).unwrap();
        // SAFETY: every `ObjRef` is used before this thread's next
        // allocation, or read back from the root slot after it.
        unsafe {
            m.roots().resize(1, None);
            // Every other node survives: 8 MiB to compact, half of it garbage.
            for i in 0..130_000 {
                let o = m.alloc(&node).unwrap();
                if i % 2 == 0 {
                    let head = m.roots()[0];
                    m.store_ref(o, 0, head).unwrap();
                    m.roots()[0] = Some(o);
                }
            }
        }
        let st = m.collect().unwrap();
        m.wait_idle();
        let st = heap
            .stats()
            .recent
            .into_iter()
            .find(|c| c.cycle == st.cycle)
            .expect("the cycle's final stats");
        assert!(st.pages_compacted > 100, "{st:?}");
        assert!(st.compaction_cpu > Duration::ZERO, "{strategy:?}: {st:?}");
        // The two GC threads of `heap` and the driver.
        let threads = 3;
        assert!(
            st.compaction_cpu <= st.compaction * threads + Duration::from_millis(2),
            "{strategy:?}: {:?} CPU in {:?}",
            st.compaction_cpu,
            st.compaction
        );
    }
}
