//! The typed API: `#[derive(Object)]`, typed handles and field keys, typed
//! arrays, no-safepoint views, and the rules that keep typed objects typed
//! (the untyped API's refusals).

use movegc::{
    DataArray, Error, FieldError, Gc, Heap, Kind, Layout, Mutator, Object, RefArray, Strategy,
    Untyped,
};

#[derive(Object)]
struct Node {
    left: Option<Gc<Node>>,
    right: Option<Gc<Node>>,
    value: i64,
    weight: f64,
    small: u16,
    flag: bool,
}

/// A non-null reference, a fixed array of references, odd-sized data.
#[derive(Object)]
struct Pair {
    head: Gc<Node>,
    tail: Option<Gc<Pair>>,
    kids: [Option<Gc<Node>>; 3],
    bytes: [u8; 5],
    id: u32,
}

/// The same shape as `Node`'s references, another type.
#[derive(Object)]
struct Other {
    a: Option<Gc<Node>>,
    b: Option<Gc<Node>>,
    value: i64,
    weight: f64,
    small: u16,
    flag: bool,
}

fn heap(strategy: Strategy, young: bool) -> Heap {
    Heap::builder()
        .capacity(64 << 20)
        .min_free(1 << 20)
        .gc_cpu_target(None)
        .strategy(strategy)
        .generational(young)
        .verify(true)
        .build()
        .unwrap()
}

fn leaf(m: &mut Mutator, value: i64) -> Gc<Node> {
    m.alloc_init(Node {
        left: None,
        right: None,
        value,
        weight: value as f64 / 4.0,
        small: value as u16,
        flag: value % 2 == 1,
    })
    .unwrap()
}

#[test]
fn derived_layouts_follow_the_declared_fields() {
    assert_eq!(Node::REFS, 2);
    // i64, f64, u16, bool: 8 + 8 + 2 + 1.
    assert_eq!(Node::DATA, 19);
    assert_eq!(Node::VALUE.offset(), 0);
    assert_eq!(Node::WEIGHT.offset(), 8);
    assert_eq!(Node::SMALL.offset(), 16);
    assert_eq!(Node::FLAG.offset(), 18);
    assert_eq!((Node::LEFT.index(), Node::RIGHT.index()), (0, 1));
    // head, tail, kids[3]: 5 slots; [u8; 5] then a u32 at 8.
    assert_eq!(Pair::REFS, 5);
    assert_eq!(Pair::ID.offset(), 8);
    assert_eq!(Pair::DATA, 12);
    assert_eq!(Pair::KIDS.len(), 3);
    assert_eq!(Pair::KIDS.at(2).unwrap().index(), 4);
    assert!(matches!(
        Pair::KIDS.at(3),
        Err(Error::Field(FieldError::RefIndex { index: 3, len: 3 }))
    ));
    assert_eq!(Node::NAME, "Node");
}

#[test]
fn typed_fields_survive_collections_of_every_kind() {
    for (strategy, young) in [
        (Strategy::StopTheWorld, false),
        (Strategy::ConcurrentMove, false),
        (Strategy::ConcurrentMove, true),
    ] {
        let h = heap(strategy, young);
        let mut m = h.attach().unwrap();
        let root = leaf(&mut m, 1);
        let a = leaf(&mut m, 2);
        let pair = m
            .alloc_init(Pair {
                head: root,
                tail: None,
                kids: [Some(a), None, Some(root)],
                bytes: *b"hello",
                id: 0xdead_beef,
            })
            .unwrap();
        for round in 0..6i64 {
            // A chain of fresh nodes under `root`, the old ones garbage.
            m.scope(|m| {
                let mut cur = root;
                for i in 0..500 {
                    let n = leaf(m, round * 1000 + i);
                    m.set(cur, Node::LEFT, Some(n)).unwrap();
                    m.write(n, Node::WEIGHT, -(i as f64)).unwrap();
                    cur = n;
                }
                for _ in 0..20_000 {
                    leaf(m, 0);
                }
            });
            if young && round > 0 {
                m.collect_young().unwrap();
            } else {
                m.collect().unwrap();
            }
            // The handle API walk, one handle reused.
            m.scope(|m| {
                let cur = m.get(root, Node::LEFT).unwrap().unwrap();
                let mut i = 0;
                loop {
                    assert_eq!(m.read(cur, Node::VALUE).unwrap(), round * 1000 + i);
                    assert_eq!(m.read(cur, Node::WEIGHT).unwrap(), -(i as f64));
                    assert_eq!(m.read(cur, Node::SMALL).unwrap(), (round * 1000 + i) as u16);
                    assert_eq!(
                        m.read(cur, Node::FLAG).unwrap(),
                        (round * 1000 + i) % 2 == 1
                    );
                    i += 1;
                    if !m.get_into(cur, Node::LEFT, cur).unwrap() {
                        break;
                    }
                }
                assert_eq!(i, 500);
            });
            // The same walk in a view, no handle at all.
            let before = m.handle_count();
            let (n, sum) = m.view(|v| {
                let mut cur = v.get(root).unwrap().get(Node::LEFT);
                let (mut n, mut sum) = (0, 0);
                while let Some(r) = cur {
                    sum += r.read(Node::VALUE);
                    n += 1;
                    cur = r.get(Node::LEFT);
                }
                (n, sum)
            });
            assert_eq!(m.handle_count(), before);
            assert_eq!(n, 500);
            assert_eq!(sum, (0..500).map(|i| round * 1000 + i).sum::<i64>());
            // The pair: non-null field read without Option, array slots.
            let head = m.get(pair, Pair::HEAD).unwrap();
            assert!(m.same(head.untyped(), root.untyped()).unwrap());
            let k0 = m.get(pair, Pair::KIDS.at(0).unwrap()).unwrap().unwrap();
            assert_eq!(m.read(k0, Node::VALUE).unwrap(), 2);
            assert!(m.get(pair, Pair::KIDS.at(1).unwrap()).unwrap().is_none());
            assert_eq!(m.read(pair, Pair::BYTES).unwrap(), *b"hello");
            assert_eq!(m.read(pair, Pair::ID).unwrap(), 0xdead_beef);
        }
        let st = h.stats();
        assert!(st.cycles >= 6, "{} cycles", st.cycles);
        if young {
            assert!(st.young_cycles > 0, "no young cycle ran");
        }
    }
}

#[test]
fn stores_in_a_view_have_the_barriers() {
    // A view stores the only reference to a fresh node into an old one:
    // young cycles must find it (card), concurrent marking must not lose
    // what the store overwrote (SATB). The verifier runs after each cycle.
    for (strategy, young) in [
        (Strategy::ConcurrentMove, false),
        (Strategy::ConcurrentMove, true),
        (Strategy::StopTheWorld, true),
    ] {
        let h = heap(strategy, young);
        let mut m = h.attach().unwrap();
        let old = leaf(&mut m, 7);
        m.collect().unwrap();
        for round in 0..8i64 {
            m.scope(|m| {
                let fresh = leaf(m, 100 + round);
                m.view(|v| {
                    let o = v.get(old).unwrap();
                    let f = v.get(fresh).unwrap();
                    // Swap: the old node's right child moves to the fresh one.
                    let prev = o.get(Node::RIGHT);
                    v.set(f, Node::RIGHT, prev);
                    v.set(o, Node::RIGHT, Some(f));
                    f.write(Node::SMALL, 9);
                });
                for _ in 0..20_000 {
                    leaf(m, 0);
                }
            });
            if young {
                m.collect_young().unwrap();
            } else {
                m.collect().unwrap();
            }
        }
        // The chain: 107, 106, ..., 100.
        let vals = m.view(|v| {
            let mut out = vec![];
            let mut cur = v.get(old).unwrap().get(Node::RIGHT);
            while let Some(r) = cur {
                assert_eq!(r.read(Node::SMALL), 9);
                out.push(r.read(Node::VALUE));
                cur = r.get(Node::RIGHT);
            }
            out
        });
        assert_eq!(
            vals,
            (100..108).rev().collect::<Vec<_>>(),
            "{strategy:?} young={young}"
        );
    }
}

#[test]
fn views_root_refs_as_handles() {
    let h = heap(Strategy::StopTheWorld, false);
    let mut m = h.attach().unwrap();
    let a = leaf(&mut m, 1);
    let b = leaf(&mut m, 2);
    m.set(a, Node::LEFT, Some(b)).unwrap();
    let (kept, into) = (
        m.view(|v| {
            let l = v.get(a).unwrap().get(Node::LEFT).unwrap();
            v.root(l)
        }),
        a,
    );
    m.view(|v| {
        let l = v.get(a).unwrap().get(Node::LEFT).unwrap();
        v.root_into(l, into).unwrap();
    });
    m.collect().unwrap();
    assert_eq!(m.read(kept, Node::VALUE).unwrap(), 2);
    assert_eq!(m.read(into, Node::VALUE).unwrap(), 2);
}

#[test]
fn typed_arrays_fill_copy_and_read_in_bulk() {
    let h = heap(Strategy::ConcurrentMove, false);
    let mut m = h.attach().unwrap();
    let n = 1000;
    let arr = m.alloc_array::<Node>(n).unwrap();
    assert_eq!(m.array_len(arr).unwrap(), n);
    let nodes: Vec<_> = (0..n as i64).map(|i| leaf(&mut m, i)).collect();
    let stored = m
        .array_fill(arr, 0, nodes.iter().map(|&g| Some(g)))
        .unwrap();
    assert_eq!(stored, n);
    m.array_set(arr, 5, None).unwrap();
    m.collect().unwrap();
    // memmove semantics: shift the first 600 up by 300, overlapping.
    m.array_copy(arr, 300, arr, 0, 600).unwrap();
    let vals: Vec<Option<i64>> = m.view(|v| {
        v.get(arr)
            .unwrap()
            .iter()
            .map(|e| e.map(|r| r.read(Node::VALUE)))
            .collect()
    });
    for (i, x) in vals.iter().enumerate() {
        let from = if (300..900).contains(&i) { i - 300 } else { i };
        let want = (from != 5).then_some(from as i64);
        assert_eq!(*x, want, "element {i}");
    }
    assert!(m.array_copy(arr, 900, arr, 0, 101).is_err());
    assert!(m.array_get(arr, n).is_err());
    let e = m.array_get(arr, 7).unwrap().unwrap();
    assert_eq!(m.read(e, Node::VALUE).unwrap(), 7);
    // Fill past the end: the batch in range is stored, then the error.
    assert!(m.array_fill(arr, n - 1, [None, None]).is_err());

    // Data arrays.
    let d = m.alloc_data::<f64>(100).unwrap();
    let xs: Vec<f64> = (0..100).map(|i| i as f64 * 0.5).collect();
    m.data_write(d, 0, &xs).unwrap();
    m.collect().unwrap();
    let mut back = vec![0.0; 50];
    m.data_read(d, 50, &mut back).unwrap();
    assert_eq!(back, xs[50..]);
    assert!(m.data_read(d, 51, &mut back).is_err());
    let bytes = m.alloc_data::<u8>(13).unwrap();
    m.view(|v| {
        let r = v.get(bytes).unwrap();
        assert_eq!(r.len(), 13);
        r.write_range(3, b"abcdefghij").unwrap();
        assert_eq!(r.read_at(12).unwrap(), b'j');
        assert!(r.read_at(13).is_err());
        assert!(r.write_range(4, b"abcdefghij").is_err());
        let f = v.get(d).unwrap();
        assert_eq!(f.read_at(99).unwrap(), 49.5);
        f.write_at(0, 1.25).unwrap();
    });
    let mut one = [0.0];
    m.data_read(d, 0, &mut one).unwrap();
    assert_eq!(one, [1.25]);
    // Overflowing sizes are typed errors.
    assert!(m.alloc_data::<u64>(usize::MAX / 4).is_err());
}

#[test]
fn the_untyped_api_cannot_break_typed_objects() {
    let h = heap(Strategy::StopTheWorld, false);
    let mut m = h.attach().unwrap();
    let node = leaf(&mut m, 1);
    let bytes = m.alloc(&Layout::byte_array(1, 64).unwrap()).unwrap();
    // No untyped reference store into a typed object...
    assert!(matches!(
        m.set_ref(node.untyped(), 0, Some(bytes)),
        Err(Error::TypedObject)
    ));
    assert!(matches!(
        m.fill_refs(node.untyped(), 0, &[Some(bytes)]),
        Err(Error::TypedObject)
    ));
    // ... no typed layout through the untyped allocator...
    let typed = Layout::record(1, 2, 19).unwrap().typed();
    assert!(matches!(m.alloc(&typed), Err(Error::TypedLayout)));
    // ... and no rewriting a typed handle's slot.
    assert!(matches!(
        m.assign(node.untyped(), bytes),
        Err(Error::TypedHandle)
    ));
    let holder = m.alloc(&Layout::record(2, 1, 0).unwrap()).unwrap();
    m.set_ref(holder, 0, Some(bytes)).unwrap();
    assert!(matches!(
        m.get_ref_into(holder, 0, node.untyped()),
        Err(Error::TypedHandle)
    ));
    assert_eq!(m.read(node, Node::VALUE).unwrap(), 1);
    // Reads and storing a typed object into an untyped one are fine.
    assert_eq!(m.kind(node.untyped()).unwrap(), Kind::Record);
    m.set_ref(holder, 0, Some(node.untyped())).unwrap();
    let back = m.get_ref(holder, 0).unwrap().unwrap();
    // Downcast checks the header: the right type...
    let g = m.downcast::<Node>(back).unwrap();
    assert_eq!(m.read(g, Node::VALUE).unwrap(), 1);
    // ... not another type with the same shape, an untyped object, or an
    // array of the type.
    assert!(matches!(
        m.downcast::<Other>(back),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        m.downcast::<Node>(bytes),
        Err(Error::WrongType { .. })
    ));
    let arr = m.alloc_array::<Node>(3).unwrap();
    assert!(m.downcast::<Node>(arr.untyped()).is_err());
    assert!(m.downcast::<RefArray<Node>>(arr.untyped()).is_ok());
    assert!(m.downcast::<RefArray<Other>>(arr.untyped()).is_err());
    assert!(m.downcast::<DataArray<u8>>(arr.untyped()).is_err());
    // The untyped handle `back` can be reassigned; `g` is a new handle.
    m.assign(back, bytes).unwrap();
    assert_eq!(m.read(g, Node::VALUE).unwrap(), 1);
    // `dup` keeps the kind: a typed copy is as protected as the original,
    // an untyped copy of a typed handle is an ordinary `Local`.
    let d = m.dup(g).unwrap();
    assert_ne!(d, g, "a new slot");
    assert!(matches!(
        m.assign(d.untyped(), bytes),
        Err(Error::TypedHandle)
    ));
    assert!(m.get_into(node, Node::LEFT, d).is_ok());
    let u = m.dup(g.untyped()).unwrap();
    m.assign(u, bytes).unwrap();
    assert_eq!(m.read(d, Node::VALUE).unwrap(), 1);
}

#[test]
fn stale_handles_in_an_initialiser_allocate_nothing() {
    let h = heap(Strategy::StopTheWorld, false);
    let mut m = h.attach().unwrap();
    let stale = m.scope(|m| leaf(m, 1));
    let before = (m.handle_count(), h.used_bytes());
    let r = m.alloc_init(Pair {
        head: stale,
        tail: None,
        kids: [None; 3],
        bytes: [0; 5],
        id: 0,
    });
    assert!(matches!(r, Err(Error::StaleHandle)));
    assert_eq!((m.handle_count(), h.used_bytes()), before);
    // A stale handle in a view is an error too.
    assert!(m.view(|v| v.get(stale).is_err()));
    // And a handle from another mutator.
    let h2 = heap(Strategy::StopTheWorld, false);
    let mut m2 = h2.attach().unwrap();
    let other = leaf(&mut m2, 5);
    assert!(matches!(
        m.read(other, Node::VALUE),
        Err(Error::StaleHandle)
    ));
}

#[test]
fn alloc_into_reuses_a_handle() {
    let h = heap(Strategy::StopTheWorld, false);
    let mut m = h.attach().unwrap();
    let list = leaf(&mut m, 0);
    let cur = m.alloc_zeroed::<Node>().unwrap();
    let before = m.handle_count();
    for i in 1..=1000 {
        m.alloc_zeroed_into(cur).unwrap();
        m.write(cur, Node::VALUE, i).unwrap();
        m.scope(|m| {
            let old = m.get(list, Node::LEFT).unwrap();
            m.set(cur, Node::LEFT, old).unwrap();
            m.set(list, Node::LEFT, Some(cur)).unwrap();
            for _ in 0..50 {
                leaf(m, -1); // garbage
            }
        });
        if i % 250 == 0 {
            m.collect().unwrap();
        }
    }
    assert_eq!(m.handle_count(), before, "no handle per step");
    let sum = m.view(|v| {
        let mut cur = v.get(list).unwrap().get(Node::LEFT);
        let mut sum = 0;
        while let Some(r) = cur {
            sum += r.read(Node::VALUE);
            cur = r.get(Node::LEFT);
        }
        sum
    });
    assert_eq!(sum, 1000 * 1001 / 2);
    // A stale target is an error before anything is allocated.
    let stale = m.scope(|m| m.alloc_zeroed::<Node>().unwrap());
    let used = h.used_bytes();
    assert!(matches!(
        m.alloc_zeroed_into(stale),
        Err(Error::StaleHandle)
    ));
    assert_eq!(h.used_bytes(), used);
}

#[test]
fn zeroed_objects_read_as_null_and_zero() {
    let h = heap(Strategy::StopTheWorld, false);
    let mut m = h.attach().unwrap();
    let z = m.alloc_zeroed::<Node>().unwrap();
    assert!(m.get(z, Node::LEFT).unwrap().is_none());
    assert_eq!(m.read(z, Node::VALUE).unwrap(), 0);
    assert!(!m.read(z, Node::FLAG).unwrap());
    // Data writes keep their neighbours (sub-word fields share a word).
    m.write(z, Node::SMALL, 0xabcd).unwrap();
    m.write(z, Node::FLAG, true).unwrap();
    assert_eq!(m.read(z, Node::SMALL).unwrap(), 0xabcd);
    assert!(m.read(z, Node::FLAG).unwrap());
}

/// Several threads build typed lists, walk them in views and swap nodes
/// into a shared typed table (through a `Persistent`), while their
/// allocations start concurrent and young cycles; the verifier checks the
/// heap after every cycle. A view delays other threads' pauses but never
/// sees a stale object: every walk must find exactly what its thread
/// built.
#[test]
fn threads_with_views_through_concurrent_cycles() {
    const THREADS: usize = 3;
    const ROUNDS: i64 = 40;
    const LEN: i64 = 300;
    for young in [false, true] {
        let h = heap(Strategy::ConcurrentMove, young);
        let table = {
            let mut m = h.attach().unwrap();
            let t = m.alloc_array::<Node>(THREADS * 8).unwrap();
            m.persist(t.untyped()).unwrap()
        };
        let table = std::sync::Arc::new(table);
        let workers: Vec<_> = (0..THREADS)
            .map(|id| {
                let (h, table) = (h.clone(), table.clone());
                std::thread::spawn(move || {
                    let mut m = h.attach().unwrap();
                    let base = (id as i64) << 32;
                    for round in 0..ROUNDS {
                        m.scope(|m| {
                            let t = m.local(&table).unwrap();
                            let t = m.downcast::<RefArray<Node>>(t).unwrap();
                            // A list of LEN fresh nodes, with garbage between.
                            let head = leaf(m, base + round * LEN);
                            let cur = m.dup(head).unwrap();
                            for i in 1..LEN {
                                m.scope(|m| {
                                    let n = leaf(m, base + round * LEN + i);
                                    m.set(cur, Node::LEFT, Some(n)).unwrap();
                                    m.alloc_data::<u64>(64).unwrap();
                                });
                                m.get_into(cur, Node::LEFT, cur).unwrap();
                            }
                            // Walk it in a view; publish its head in the
                            // thread's table slots from inside the view.
                            let sum = m.view(|v| {
                                let (mut c, mut sum) = (Some(v.get(head).unwrap()), 0);
                                while let Some(r) = c {
                                    sum += r.read(Node::VALUE) - base - round * LEN;
                                    c = r.get(Node::LEFT);
                                }
                                let tr = v.get(t).unwrap();
                                let hr = v.get(head).unwrap();
                                v.set_at(tr, id * 8 + (round as usize % 8), Some(hr))
                                    .unwrap();
                                sum
                            });
                            assert_eq!(sum, LEN * (LEN - 1) / 2, "thread {id} round {round}");
                        });
                        if id == 0 && round % 10 == 9 {
                            // Besides the policy's cycles: ones that must wait
                            // for the other threads' views to end.
                            m.collect_young();
                        }
                        m.safepoint();
                    }
                    // Everything this thread published is still its own.
                    m.scope(|m| {
                        let t = m.local(&table).unwrap();
                        let t = m.downcast::<RefArray<Node>>(t).unwrap();
                        m.view(|v| {
                            let tr = v.get(t).unwrap();
                            for k in 0..8 {
                                let head = tr.at(id * 8 + k).unwrap().expect("published");
                                assert_eq!(head.read(Node::VALUE) >> 32, id as i64);
                            }
                        });
                    });
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a worker failed");
        }
        let st = h.stats();
        assert!(st.cycles >= 3, "{} cycles", st.cycles);
        if young {
            assert!(st.young_cycles > 0, "no young cycle");
        }
    }
}

/// A typed object pointing into untyped data (an interpreter's values, a
/// library's layouts): `Option<Gc<Untyped>>` fields.
#[derive(Object)]
struct Wrapper {
    inner: Option<Gc<Untyped>>,
    tag: u32,
}

#[test]
fn typed_objects_hold_untyped_ones() {
    let h = heap(Strategy::ConcurrentMove, false);
    let mut m = h.attach().unwrap();
    let rec = Layout::record(9, 1, 8).unwrap();
    let u = m.alloc(&rec).unwrap();
    m.write_u64(u, 0, 0xabc).unwrap();
    let gu = m.downcast::<Untyped>(u).unwrap();
    let w = m
        .alloc_init(Wrapper {
            inner: Some(gu),
            tag: 5,
        })
        .unwrap();
    m.collect().unwrap();
    let back = m.get(w, Wrapper::INNER).unwrap().expect("set");
    assert_eq!(m.read_u64(back.untyped(), 0).unwrap(), 0xabc);
    assert_eq!(m.tag(back.untyped()).unwrap(), 9);
    // The untyped object stays writable through the untyped API...
    let inner = m.dup(back.untyped()).unwrap();
    m.set_ref(inner, 0, Some(u)).unwrap();
    // ... and a typed object is not an `Untyped`.
    assert!(matches!(
        m.downcast::<Untyped>(w.untyped()),
        Err(Error::WrongType { .. })
    ));
    // In a view, the field is a `Ref` to root or compare.
    let same = m.view(|v| {
        let r = v.get(w).unwrap().get(Wrapper::INNER).unwrap();
        r == v.get(back).unwrap()
    });
    assert!(same);
}

/// Data fields wider than a word or straddling two (the engine's
/// word-by-word copy) survive initialisation, writes and collections.
#[derive(Object)]
struct Wide {
    a: u8,
    straddle: [u16; 7],
    w: [f64; 3],
}

#[test]
fn wide_and_straddling_data_fields_round_trip() {
    let h = heap(Strategy::ConcurrentMove, false);
    let mut m = h.attach().unwrap();
    let x = m
        .alloc_init(Wide {
            a: 7,
            straddle: [1, 2, 3, 4, 5, 6, 0xffff],
            w: [0.5, -1.25, 3e9],
        })
        .unwrap();
    m.collect().unwrap();
    assert_eq!(m.read(x, Wide::A).unwrap(), 7);
    assert_eq!(
        m.read(x, Wide::STRADDLE).unwrap(),
        [1, 2, 3, 4, 5, 6, 0xffff]
    );
    assert_eq!(m.read(x, Wide::W).unwrap(), [0.5, -1.25, 3e9]);
    m.write(x, Wide::STRADDLE, [9; 7]).unwrap();
    m.view(|v| {
        let r = v.get(x).unwrap();
        assert_eq!(r.read(Wide::STRADDLE), [9; 7]);
        r.write(Wide::W, [1.0, 2.0, 4.0]);
        assert_eq!(r.read(Wide::A), 7, "a neighbour byte is kept");
    });
    assert_eq!(m.read(x, Wide::W).unwrap(), [1.0, 2.0, 4.0]);
}
