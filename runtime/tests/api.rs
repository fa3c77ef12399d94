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
    h.wait_idle();
    assert!(h.stats().cycles >= 4, "{:?}", h.stats().cycles);
    assert!(collections.load(Ordering::Relaxed) >= 1);
}

#[test]
fn min_free_follows_a_small_capacity_unless_set() {
    let h = Heap::builder().capacity(16 << 20).build().unwrap();
    assert_eq!(h.gc().config().min_free, 4 << 20, "a quarter of 16 MiB");
    let h = Heap::builder()
        .min_free(1 << 20)
        .capacity(16 << 20)
        .build()
        .unwrap();
    assert_eq!(h.gc().config().min_free, 1 << 20, "an explicit value stays");
    let h = Heap::builder().capacity(1 << 30).build().unwrap();
    assert_eq!(h.gc().config().min_free, 32 << 20);
}

/// `Heap::wait_idle` on a thread whose mutator is running, while another
/// thread's allocation keeps starting concurrent cycles: the cycles' final
/// pauses must not wait for the waiting thread (which would wait for them).
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
                h.wait_idle(); // attached and running: not inside blocking
                waits += 1;
                m.blocking(|| h.wait_idle()); // and from inside blocking
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
