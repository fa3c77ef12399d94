//! The embedding API: handles, scopes, persistent roots, safepoints,
//! blocking regions, errors.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use movegc::{Error, FieldError, Heap, Kind, Layout, LayoutError};

fn heap(mib: usize) -> Heap {
    Heap::builder()
        .capacity(mib << 20)
        .verify(true)
        .build()
        .unwrap()
}

#[test]
fn handles_follow_moved_objects() {
    let h = heap(32);
    let mut m = h.attach().unwrap();
    let rec = Layout::record(5, 1, 16).unwrap();
    let keep = m.alloc(&rec).unwrap();
    m.write_u64(keep, 8, 0xfeed).unwrap();
    // Garbage first so `keep` is not at the start... and then more objects.
    m.scope(|m| {
        for _ in 0..1000 {
            m.alloc(&rec).unwrap();
        }
    });
    let child = m.alloc(&rec).unwrap();
    m.set_ref(keep, 0, Some(child)).unwrap();
    m.write_bytes(child, 0, b"child!").unwrap();
    let st = m.collect().unwrap();
    assert_eq!(st.live_objects, 2);
    assert_eq!(m.read_u64(keep, 8).unwrap(), 0xfeed);
    assert_eq!(m.tag(keep).unwrap(), 5);
    let c = m.get_ref(keep, 0).unwrap().unwrap();
    assert!(m.same(c, child).unwrap());
    let mut b = [0u8; 6];
    m.read_bytes(c, 0, &mut b).unwrap();
    assert_eq!(&b, b"child!");
}

#[test]
fn scopes_release_handles_and_stale_ones_are_errors() {
    let h = heap(16);
    let mut m = h.attach().unwrap();
    let rec = Layout::record(0, 0, 8).unwrap();
    let outer = m.alloc(&rec).unwrap();
    let mut leaked = None;
    let escaped = m
        .scope_escape(|m| {
            let a = m.alloc(&rec)?;
            m.write_u64(a, 0, 7)?;
            leaked = Some(m.alloc(&rec)?);
            Ok(a)
        })
        .unwrap();
    assert_eq!(m.handle_count(), 2);
    assert_eq!(m.read_u64(escaped, 0).unwrap(), 7);
    assert!(matches!(
        m.read_u64(leaked.unwrap(), 0),
        Err(Error::StaleHandle)
    ));
    // A new handle in the freed slot does not revive the stale one.
    let _fresh = m.alloc(&rec).unwrap();
    assert!(matches!(
        m.read_u64(leaked.unwrap(), 0),
        Err(Error::StaleHandle)
    ));
    assert!(m.read_u64(outer, 0).is_ok());
    // A loop that reuses one handle does not grow the root stack.
    let cur = m.dup(outer).unwrap();
    let before = m.handle_count();
    for _ in 0..100 {
        m.scope(|m| {
            let n = m.alloc(&rec).unwrap();
            m.assign(cur, n).unwrap();
        });
    }
    assert_eq!(m.handle_count(), before);
}

#[test]
fn handles_of_another_mutator_or_heap_are_rejected() {
    let h1 = heap(8);
    let h2 = heap(8);
    let mut m1 = h1.attach().unwrap();
    let mut m2 = h2.attach().unwrap();
    assert!(matches!(h1.attach(), Err(Error::AlreadyAttached)));
    let rec = Layout::record(0, 1, 0).unwrap();
    let a = m1.alloc(&rec).unwrap();
    let b = m2.alloc(&rec).unwrap();
    assert!(matches!(m2.set_ref(b, 0, Some(a)), Err(Error::StaleHandle)));
    let p = m1.persist(a).unwrap();
    assert!(matches!(m2.local(&p), Err(Error::WrongHeap)));
    drop(m1);
    // After detaching, the thread may attach again.
    let mut m1 = h1.attach().unwrap();
    let a2 = m1.local(&p).unwrap();
    assert_eq!(m1.kind(a2).unwrap(), Kind::Record);
}

#[test]
fn bad_input_is_a_typed_error() {
    let h = heap(8);
    let mut m = h.attach().unwrap();
    assert!(matches!(
        Layout::record(0, 1 << 16, 0),
        Err(LayoutError::TooManyFields(_))
    ));
    assert!(matches!(
        Heap::builder().capacity(1 << 20).build(),
        Err(Error::Create(_))
    ));
    let rec = Layout::record(0, 2, 4).unwrap();
    let o = m.alloc(&rec).unwrap();
    assert!(matches!(
        m.get_ref(o, 2),
        Err(Error::Field(FieldError::RefIndex { index: 2, len: 2 }))
    ));
    assert!(matches!(
        m.write_u64(o, 0, 1),
        Err(Error::Field(FieldError::DataRange { .. }))
    ));
    assert!(matches!(
        m.expect_kind(o, Kind::ByteArray),
        Err(Error::WrongKind { .. })
    ));
    // Exhaustion is an error and the heap stays usable.
    let chunk = Layout::ref_array(0, 1000).unwrap();
    let list = m.alloc(&Layout::ref_array(0, 100_000).unwrap()).unwrap();
    let mut i = 0;
    let err = loop {
        match m.scope(|m| -> movegc::Result<()> {
            let c = m.alloc(&chunk)?;
            m.set_ref(list, i, Some(c))
        }) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::HeapExhausted { .. }), "{err}");
    for j in 0..i {
        m.set_ref(list, j, None).unwrap();
    }
    let c = m.alloc(&chunk).unwrap();
    assert_eq!(m.len(c).unwrap(), 1000);
}

#[test]
fn byte_arrays_and_raw_bytes() {
    let h = heap(8);
    let mut m = h.attach().unwrap();
    let s = m.alloc(&Layout::byte_array(1, 11).unwrap()).unwrap();
    m.with_bytes_mut(s, |b| b.copy_from_slice(b"hello world"))
        .unwrap();
    m.collect();
    assert_eq!(m.with_bytes(s, |b| b.to_vec()).unwrap(), b"hello world");
    assert_eq!(m.data_len(s).unwrap(), 11);
    assert_eq!(m.size_of(s).unwrap(), 24);
}

#[test]
fn persistent_handles_cross_threads() {
    let h = heap(32);
    let p = {
        let mut m = h.attach().unwrap();
        let o = m.alloc(&Layout::record(0, 0, 8).unwrap()).unwrap();
        m.write_u64(o, 0, 99).unwrap();
        m.persist(o).unwrap()
    };
    let h2 = h.clone();
    std::thread::spawn(move || {
        let mut m = h2.attach().unwrap();
        m.scope(|m| {
            for _ in 0..10_000 {
                m.alloc(&Layout::record(0, 0, 64).unwrap()).unwrap();
            }
        });
        m.collect().unwrap();
        let o = m.local(&p).unwrap();
        assert_eq!(m.read_u64(o, 0).unwrap(), 99);
    })
    .join()
    .unwrap();
}

#[test]
fn blocked_and_panicking_threads_do_not_hold_up_collections() {
    let h = heap(32);
    let start = Arc::new(Barrier::new(3));
    let release = Arc::new(AtomicBool::new(false));
    // A thread parked in a blocking region for a long time.
    let (h1, s1, r1) = (h.clone(), start.clone(), release.clone());
    let blocked = std::thread::spawn(move || {
        let mut m = h1.attach().unwrap();
        let o = m.alloc(&Layout::record(0, 0, 8).unwrap()).unwrap();
        m.write_u64(o, 0, 1234).unwrap();
        m.blocking(|| {
            s1.wait();
            while !r1.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // The collection ran while we were blocked; our handle was updated.
        m.read_u64(o, 0).unwrap()
    });
    // A thread that panics while attached.
    let (h2, s2) = (h.clone(), start.clone());
    let panicked = std::thread::spawn(move || {
        let mut m = h2.attach().unwrap();
        m.alloc(&Layout::record(0, 0, 8).unwrap()).unwrap();
        s2.wait();
        panic!("mutator bug");
    });
    start.wait();
    assert!(panicked.join().is_err());
    let mut m = h.attach().unwrap();
    for _ in 0..3 {
        assert!(m.collect().is_some());
    }
    release.store(true, Ordering::Relaxed);
    assert_eq!(blocked.join().unwrap(), 1234);
}

#[test]
fn threads_stop_at_safepoints_for_each_others_collections() {
    let h = heap(64);
    let threads = 4;
    let collections = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let h = h.clone();
            let collections = collections.clone();
            std::thread::spawn(move || {
                let mut m = h.attach().unwrap();
                let node = Layout::record(0, 1, 8).unwrap();
                let head = m.alloc(&node).unwrap();
                m.write_u64(head, 0, 0).unwrap();
                for i in 1..=20_000u64 {
                    m.scope(|m| {
                        let n = m.alloc(&node).unwrap();
                        m.write_u64(n, 0, i * 31 + t).unwrap();
                        let old = m.get_ref(head, 0).unwrap();
                        m.set_ref(n, 0, old).unwrap();
                        m.set_ref(head, 0, Some(n)).unwrap();
                        m.alloc(&Layout::byte_array(0, 100).unwrap()).unwrap();
                    });
                    if i % 5000 == 0 && m.collect().is_some() {
                        collections.fetch_add(1, Ordering::Relaxed);
                    }
                    if i % 64 == 0 {
                        m.safepoint();
                    }
                }
                // Check the whole list.
                let cur = m.dup(head).unwrap();
                let mut expect = 20_000u64;
                while !m.is_null(cur, 0).unwrap() {
                    m.scope(|m| {
                        let n = m.get_ref(cur, 0).unwrap().unwrap();
                        assert_eq!(m.read_u64(n, 0).unwrap(), expect * 31 + t);
                        m.assign(cur, n).unwrap();
                    });
                    expect -= 1;
                }
                assert_eq!(expect, 0);
            })
        })
        .collect();
    for t in handles {
        t.join().unwrap();
    }
    h.wait_idle().unwrap();
    assert!(h.stats().cycles >= 4, "{:?}", h.stats().cycles);
    assert!(collections.load(Ordering::Relaxed) >= 1);
}

#[test]
fn min_free_follows_a_small_capacity_unless_set() {
    let h = Heap::builder().capacity(16 << 20).build().unwrap();
    assert_eq!(h.min_free(), 4 << 20, "a quarter of 16 MiB");
    let h = Heap::builder()
        .min_free(1 << 20)
        .capacity(16 << 20)
        .build()
        .unwrap();
    assert_eq!(h.min_free(), 1 << 20, "an explicit value stays");
    let h = Heap::builder().capacity(1 << 30).build().unwrap();
    assert_eq!(h.min_free(), 32 << 20);
}

/// The size policy's free budget follows the collector's CPU share: with
/// a target the collector exceeds, it grows past `min_free` (cycles become
/// rarer); without a target it stays at `min_free`. A target outside
/// (0, 1) is refused.
#[test]
fn the_free_budget_grows_while_the_collector_costs_more_than_its_target() {
    let run = |target: Option<f64>| {
        let h = Heap::builder()
            .capacity(256 << 20)
            .min_free(2 << 20)
            .gc_cpu_target(target)
            .strategy(movegc::Strategy::StopTheWorld)
            .build()
            .unwrap();
        let mut m = h.attach().unwrap();
        let garbage = Layout::byte_array(0, 4000).unwrap();
        while h.stats().cycles < 12 {
            m.scope(|m| {
                m.alloc(&garbage).unwrap();
            });
        }
        let s = h.stats();
        let gaps: Vec<usize> = s.recent.iter().map(|c| c.next_collection_at).collect();
        (s.free_budget, s.gc_cpu_share(), gaps)
    };
    // A ten-thousandth of the process's CPU: a heap doing nothing but
    // allocate and collect spends more than that in its collector, even
    // with other tests of this binary running beside it.
    let (budget, share, gaps) = run(Some(0.0001));
    assert!(share > 0.0001, "{share}");
    assert!(
        budget >= 8 << 20,
        "{budget} after 12 cycles at share {share}"
    );
    assert!(gaps.last() > gaps.first(), "{gaps:?}");
    let (budget, _, gaps) = run(None);
    assert_eq!(budget, 2 << 20);
    assert!(gaps.iter().all(|&g| g == gaps[0]), "{gaps:?}");
    let bad = Heap::builder().gc_cpu_target(Some(1.0)).build();
    let Err(e) = bad else {
        panic!("a target of 1.0 is refused");
    };
    let msg = e.to_string();
    assert!(msg.contains("GC CPU target 1"), "{msg}");
}

/// Waiting for the collector on a thread whose mutator is running, while
/// another thread's allocation keeps starting concurrent cycles: through the
/// mutator (or from inside `blocking`) it works and never deadlocks; through
/// the heap it is refused (it would step out of the running set behind the
/// mutator's back).
#[test]
fn wait_idle_from_an_attached_thread_does_not_deadlock() {
    let h = Heap::builder()
        .capacity(64 << 20)
        .min_free(4 << 20)
        .gc_threads(1)
        .verify(false)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let allocator = {
        let (h, stop) = (h.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut m = h.attach().unwrap();
            let node = Layout::record(1, 1, 8).unwrap();
            let head = m.alloc(&node).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                m.scope(|m| {
                    let o = m.alloc(&node).unwrap();
                    if n % 4 == 0 {
                        let old = m.get_ref(head, 0).unwrap();
                        m.set_ref(o, 0, old).unwrap();
                        m.set_ref(head, 0, Some(o)).unwrap();
                    }
                });
                n += 1;
                if n % 400_000 == 0 {
                    m.set_ref(head, 0, None).unwrap();
                }
            }
        })
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let h = h.clone();
        std::thread::spawn(move || {
            let mut m = h.attach().unwrap();
            let t = std::time::Instant::now();
            let mut waits = 0;
            while t.elapsed() < Duration::from_secs(3) {
                assert!(matches!(h.wait_idle(), Err(Error::RunningMutator)));
                m.wait_idle();
                waits += 1;
                m.blocking(|| h.wait_idle()).unwrap(); // from inside blocking
                m.safepoint();
            }
            let _ = tx.send(waits);
        })
    };
    let r = rx.recv_timeout(Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    let waits = r.expect("deadlock: a waiting mutator held up a concurrent cycle");
    assert!(waits > 0);
    waiter.join().unwrap();
    allocator.join().unwrap();
    assert!(h.stats().cycles > 0, "cycles ran meanwhile");
}

/// Issue 11, defect 1: a slice lent by `with_bytes_mut` outlived a move when
/// the closure let the thread out of the running set (`Heap::wait_idle`)
/// while another thread collected: the closure then wrote freed memory.
/// Now the heap refuses that wait, the closure works on a copy, and every
/// object keeps its bytes whatever the other thread's cycles do.
#[test]
fn a_closure_cannot_let_an_object_move_under_its_bytes() {
    for strategy in [
        movegc::Strategy::ConcurrentMove,
        movegc::Strategy::StopTheWorld,
    ] {
        let h = Heap::builder()
            .capacity(32 << 20)
            .strategy(strategy)
            .verify(true)
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (h, stop) = (h.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut m = h.attach().unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    m.collect_with(strategy);
                    n += 1;
                }
                n
            })
        };
        let mut m = h.attach().unwrap();
        let bytes = Layout::byte_array(0, 64).unwrap();
        let victims: Vec<_> = (0..64)
            .map(|i| {
                m.scope(|m| {
                    m.alloc(&bytes).unwrap(); // garbage below: victims move
                });
                let v = m.alloc(&bytes).unwrap();
                m.write_bytes(v, 0, &[i as u8; 64]).unwrap();
                v
            })
            .collect();
        for round in 0..200u32 {
            let v = victims[round as usize % victims.len()];
            let before = m
                .with_bytes_mut(v, |b| {
                    let x = b[0];
                    assert!(matches!(h.wait_idle(), Err(Error::RunningMutator)));
                    b.fill(0xEE);
                    x
                })
                .unwrap();
            assert!(before == 0xEE || usize::from(before) < victims.len());
            // Allocations must come back zeroed (nobody wrote freed memory).
            m.scope(|m| {
                let fresh = m.alloc(&bytes).unwrap();
                assert_eq!(m.with_bytes(fresh, |b| b.to_vec()).unwrap(), [0; 64]);
            });
            m.safepoint();
        }
        stop.store(true, Ordering::Relaxed);
        m.blocking(|| collector.join().unwrap());
        for (i, &v) in victims.iter().enumerate() {
            // 200 rounds over 64 victims: every one was filled.
            let b = m.with_bytes(v, |b| b.to_vec()).unwrap();
            assert_eq!(b, vec![0xEE; 64], "victim {i} under {strategy:?}");
        }
        m.collect();
    }
}

/// The data model: threads sharing an object through a `Persistent` write
/// different bytes of the same word at the same time, and neither loses the
/// other's writes (`with_bytes_mut` writes back only what it changed, and a
/// partial word is merged, not overwritten).
#[test]
fn concurrent_writers_of_one_word_keep_each_others_bytes() {
    let h = heap(16);
    let mut m = h.attach().unwrap();
    let o = m.alloc(&Layout::byte_array(0, 8).unwrap()).unwrap();
    let shared = Arc::new(m.persist(o).unwrap());
    const ROUNDS: usize = 20_000;
    let writers: Vec<_> = (0..2)
        .map(|k| {
            let (h, p) = (h.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut m = h.attach().unwrap();
                let o = m.local(&p).unwrap();
                for _ in 0..ROUNDS {
                    if k == 0 {
                        m.with_bytes_mut(o, |b| b[k] = b[k].wrapping_add(1))
                            .unwrap();
                    } else {
                        let mut b = [0u8; 1];
                        m.read_bytes(o, k, &mut b).unwrap();
                        m.write_bytes(o, k, &[b[0].wrapping_add(1)]).unwrap();
                    }
                }
            })
        })
        .collect();
    m.blocking(|| writers.into_iter().for_each(|t| t.join().unwrap()));
    let b = m.with_bytes(o, |b| b.to_vec()).unwrap();
    assert_eq!(b[..2], [(ROUNDS % 256) as u8; 2], "{b:?}");
    assert_eq!(b[2..], [0; 6]);
}

/// Issue 11, defect 3: with several threads, a concurrent heap reported
/// `HeapExhausted` with almost nothing live (the slow path retried once
/// after a cycle and other threads took the space first). Now a thread that
/// waits for a cycle gets the room it freed.
#[test]
fn many_threads_never_see_a_false_out_of_memory() {
    let h = Heap::builder()
        .capacity(16 << 20)
        .verify(false)
        .build()
        .unwrap();
    let t0 = std::time::Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut m = h.attach().unwrap();
                let bytes = Layout::byte_array(0, 100).unwrap();
                let mut allocs = 0u64;
                while t0.elapsed() < Duration::from_secs(3) {
                    m.scope(|m| {
                        for _ in 0..100 {
                            m.alloc(&bytes).unwrap_or_else(|e| {
                                panic!("false out-of-memory after {allocs} allocations: {e}")
                            });
                            allocs += 1;
                        }
                    });
                }
                allocs
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() > 0);
    }
    assert!(h.stats().cycles >= 4, "the heap filled up many times over");
}

/// A real exhaustion is still reported, promptly, and the heap stays
/// usable once the embedder lets go of something.
#[test]
fn a_real_exhaustion_is_an_error_and_the_heap_recovers() {
    let h = heap(8);
    let mut m = h.attach().unwrap();
    let chunk = Layout::byte_array(0, 16 << 10).unwrap();
    let big = Layout::byte_array(0, 1 << 20).unwrap(); // a large object
    let keep = m.alloc(&Layout::ref_array(0, 1024).unwrap()).unwrap();
    let mut n = 0;
    let err = loop {
        match m.scope(|m| -> Result<(), Error> {
            let c = m.alloc(&chunk)?;
            m.set_ref(keep, n, Some(c))
        }) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::HeapExhausted { .. }), "{err}");
    assert!(matches!(m.alloc(&big), Err(Error::HeapExhausted { .. })));
    for i in 0..n {
        m.set_ref(keep, i, None).unwrap();
    }
    m.alloc(&big).unwrap();
    m.alloc(&chunk).unwrap();
}

/// Issue 11, defect 8: a mutator leaked with `mem::forget` on a thread that
/// then exits used to hold every later collection up forever.
#[test]
fn a_leaked_mutator_does_not_wedge_collections() {
    let h = heap(16);
    let h2 = h.clone();
    std::thread::spawn(move || std::mem::forget(h2.attach().unwrap()))
        .join()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let h3 = h.clone();
    std::thread::spawn(move || {
        let mut m = h3.attach().unwrap();
        let _ = tx.send(m.collect().is_some());
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(true));
}

/// A thread that runs without polling is named when a collection has to
/// wait for it too long.
#[test]
fn a_thread_late_for_a_safepoint_is_named() {
    let h = Heap::builder()
        .capacity(16 << 20)
        .safepoint_warn_after(Duration::from_millis(50))
        .build()
        .unwrap();
    let started = Arc::new(Barrier::new(2));
    let t = {
        let (h, started) = (h.clone(), started.clone());
        std::thread::Builder::new()
            .name("no-poll".into())
            .spawn(move || {
                let mut m = h.attach().unwrap();
                started.wait();
                std::thread::sleep(Duration::from_millis(400)); // never polls
                m.safepoint();
            })
            .unwrap()
    };
    let mut m = h.attach().unwrap();
    m.blocking(|| started.wait());
    m.collect_with(movegc::Strategy::StopTheWorld);
    m.blocking(|| t.join().unwrap());
    let late = h.stats().late_threads;
    assert!(late.iter().any(|t| t.starts_with("'no-poll'")), "{late:?}");
}

/// Issue 11, defect 7: a capacity that overflows the address arithmetic is
/// a typed error (it used to panic in debug builds and give a 4 KiB heap in
/// release builds).
#[test]
fn an_absurd_capacity_is_a_typed_error() {
    for cap in [usize::MAX, usize::MAX / 2, movegc::MAX_CAPACITY + 1] {
        let e = Heap::builder().capacity(cap).build().unwrap_err();
        assert!(
            matches!(&e, Error::Create(c) if c.to_string().contains("above the maximum")),
            "{cap}: {e}"
        );
    }
}

#[test]
fn young_collections_keep_old_objects_and_free_young_garbage() {
    let h = Heap::builder()
        .capacity(32 << 20)
        .generational(true)
        .verify(true)
        .build()
        .unwrap();
    let mut m = h.attach().unwrap();
    let rec = Layout::record(1, 1, 8).unwrap();
    let old = m.alloc(&rec).unwrap();
    m.write_u64(old, 0, 11).unwrap();
    let st = m.collect().unwrap();
    assert_eq!(st.full_reason, Some(movegc::FullReason::NoOldGeneration));
    let st = m.collect().unwrap();
    assert_eq!(st.full_reason, Some(movegc::FullReason::Explicit));
    // Garbage, and a young object whose only reference is in the old one
    // (its handle is released with the scope).
    m.scope(|m| {
        for _ in 0..10_000 {
            m.alloc(&rec).unwrap();
        }
        let young = m.alloc(&rec).unwrap();
        m.write_u64(young, 0, 22).unwrap();
        m.set_ref(old, 0, Some(young)).unwrap();
    });
    let st = m.collect_young().unwrap();
    assert!(st.young, "{:?}", st.full_reason);
    assert_eq!(st.full_reason, None);
    assert!(st.remembered_pages >= 1);
    assert_eq!(st.live_objects, 1, "only the young object was marked");
    assert!(st.freed_bytes >= 10_000 * rec.size());
    let y = m.get_ref(old, 0).unwrap().expect("young object kept");
    assert_eq!(m.read_u64(y, 0).unwrap(), 22);
    assert_eq!(m.read_u64(old, 0).unwrap(), 11);
}

/// Bulk stores and loads into an existing handle: the same heap contents
/// as one `set_ref` per element, through concurrent collections (whose
/// marking barrier the bulk path must honour), with one handle per walk.
#[test]
fn fill_refs_and_get_ref_into_match_the_element_wise_api() {
    // Also with young collections: the bulk store's card marks must let
    // a young cycle find the old array's references to young nodes.
    for young in [false, true] {
        fill_and_walk(young);
    }
}

fn fill_and_walk(young: bool) {
    let h = Heap::builder()
        .capacity(64 << 20)
        .min_free(1 << 20)
        .gc_cpu_target(None)
        .generational(young)
        .verify(true)
        .build()
        .unwrap();
    let mut m = h.attach().unwrap();
    let node = Layout::record(3, 1, 8).unwrap();
    let n = 3_000;
    let arr = m.alloc(&Layout::ref_array(1, n).unwrap()).unwrap();
    let cur = m.dup(arr).unwrap();
    for round in 0..12u64 {
        m.scope(|m| {
            // Fresh nodes (collections run meanwhile), every third slot null.
            let mut vals = Vec::with_capacity(n);
            for i in 0..n as u64 {
                if i % 3 == 0 {
                    vals.push(None);
                    continue;
                }
                let x = m.alloc(&node).unwrap();
                m.write_u64(x, 0, round << 32 | i).unwrap();
                vals.push(Some(x));
            }
            m.fill_refs(arr, 0, &vals).unwrap();
        });
        // Garbage (policy cycles, which may mark while the next round
        // fills), then a collection: the nodes move, the array follows.
        m.scope(|m| {
            for _ in 0..100_000 {
                m.alloc(&node).unwrap();
            }
        });
        if young && round > 0 {
            // The array is old since round 0; this round's nodes are
            // reachable only through the stores `fill_refs` just made.
            // (A young cycle that freed little makes the next one full.)
            let st = m.collect_young().unwrap();
            if st.young {
                assert!(st.remembered_pages > 0, "the array's pages are dirty");
            }
        } else {
            m.collect().unwrap();
        }
        // Walk with one handle.
        for i in 0..n {
            m.assign(cur, arr).unwrap();
            let some = m.get_ref_into(cur, i, cur).unwrap();
            assert_eq!(some, i % 3 != 0, "slot {i}");
            if some {
                assert_eq!(m.read_u64(cur, 0).unwrap(), round << 32 | i as u64);
            }
        }
        assert_eq!(m.handle_count(), 2, "no handle per step");
    }
    assert!(h.stats().cycles >= 12, "{} cycles", h.stats().cycles);
    if young {
        assert!(h.stats().young_cycles > 0, "no young cycle ran");
    }
    // A run past the end is a typed error and stores nothing.
    let x = m.alloc(&node).unwrap();
    let before = m.get_ref(arr, n - 1).unwrap();
    let e = m.fill_refs(arr, n - 1, &[Some(x), Some(x)]).unwrap_err();
    assert!(
        matches!(e, Error::Field(FieldError::RefIndex { index, len }) if index == n && len == n),
        "{e:?}"
    );
    let after = m.get_ref(arr, n - 1).unwrap();
    assert_eq!(before.is_some(), after.is_some());
    assert!(m.fill_refs(arr, n + 1, &[]).is_err());
    m.fill_refs(arr, n, &[]).unwrap();
    // Null fields leave the handle alone; a bad index is an error.
    let empty = m.alloc(&node).unwrap();
    assert!(!m.get_ref_into(empty, 0, x).unwrap());
    m.write_u64(x, 0, 77).unwrap();
    assert_eq!(m.read_u64(x, 0).unwrap(), 77);
    assert!(m.get_ref_into(empty, 1, x).is_err());
}
