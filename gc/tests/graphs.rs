//! Real heaps, real collections: big and deep structures, cycles, mixed and
//! large objects, several mutator threads, and bad input. Every heap runs
//! the verifier after each collection (`verify: true`), and every test
//! checks the data itself against a model built on the Rust side.
//!
//! Rule followed throughout: an `ObjRef` held in a local is only used until
//! the thread's next `alloc`/`collect`/`safepoint`/wait (objects move);
//! anything that must survive one lives in `m.roots()` (or a persistent
//! slot). Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract) and this rule is what every `unsafe` block below relies on;
//! helpers that take an `ObjRef` are `unsafe fn`s with that contract, and
//! helpers that take the mutator start from its root slots and reach no
//! safepoint unless they say so.

#![allow(clippy::needless_range_loop)] // models are indexed like the heap they mirror

use std::time::Instant;

use movegc_gc::{
    AllocError, ConfigError, CycleStats, FieldError, GcHeap, HeapConfig, HeapError, Kind, Layout,
    LayoutError, MutatorContext, ObjRef, Strategy, Trigger,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The configuration every test starts from: the stop-the-world collector
/// of `cycle.rs`, pinned explicitly because the default strategy may be a
/// concurrent one, and the verifier on.
fn config(capacity: usize) -> HeapConfig {
    HeapConfig {
        capacity,
        verify: true,
        strategy: Strategy::StopTheWorld,
        ..Default::default()
    }
}

fn heap(capacity: usize) -> GcHeap {
    GcHeap::new(config(capacity)).unwrap()
}

/// A heap that compacts everything every time (no dense prefix), so that
/// live objects really move.
fn heap_no_dense(capacity: usize) -> GcHeap {
    GcHeap::new(HeapConfig {
        dense_prefix_threshold: None,
        ..config(capacity)
    })
    .unwrap()
}

fn collect(m: &mut MutatorContext) -> CycleStats {
    m.collect()
        .expect("single mutator: its own collection runs")
}

/// splitmix64 finaliser.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Deterministic data from one seed (the `fastrand` generator).
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(mix(seed)))
    }
    fn next(&mut self) -> u64 {
        self.0.u64(..)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }
}

/// The id stored in the first data word of a node.
///
/// # Safety
/// `o` is current (the rule at the top) and the caller its running mutator.
unsafe fn id(o: ObjRef) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { o.read_u64(0).unwrap() }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (mix(seed ^ (i as u64 / 8)) >> (8 * (i % 8))) as u8)
        .collect()
}

/// A copy of the object's data bytes.
///
/// # Safety
/// As for [`id`].
unsafe fn bytes_of(o: ObjRef) -> Vec<u8> {
    // SAFETY: the caller's contract.
    unsafe {
        let mut v = vec![0; o.header().data_len()];
        o.read_data(0, &mut v).unwrap();
        v
    }
}

// ---------------------------------------------------------------------------
// 1. A 10-million-node list: marking and verification must not recurse.
// ---------------------------------------------------------------------------

#[test]
fn ten_million_node_list_survives_collections() {
    const N: u64 = 10_000_000;
    let t0 = Instant::now();
    let h = heap(1 << 30);
    let mut m = h.attach().unwrap();
    let node = Layout::record(1, 1, 8).unwrap();
    let junk = Layout::byte_array(2, 8).unwrap();
    assert_eq!(node.size(), 24);
    // SAFETY: a null slot.
    unsafe { m.roots().push(None) };
    for i in 0..N {
        let n = m.alloc(&node).unwrap();
        // SAFETY: `n` was just allocated, the head just read from its root
        // slot; `n` then lives in the root slot.
        unsafe {
            n.write_u64(0, i).unwrap();
            let head = m.roots()[0];
            m.store_ref(n, 0, head).unwrap();
            m.roots()[0] = Some(n);
        }
        if i % 2 == 0 {
            m.alloc(&junk).unwrap(); // garbage between live nodes
        }
    }
    let automatic = h.stats().cycles;
    assert!(
        automatic >= 3,
        "the size policy should have collected while building ({automatic})"
    );
    let t_build = t0.elapsed();

    let check = |m: &mut MutatorContext| {
        // SAFETY: the walk starts at the root slot and reaches no safepoint.
        unsafe {
            let mut cur = m.roots()[0];
            let mut expect = N;
            while let Some(n) = cur {
                expect -= 1;
                assert_eq!(id(n), expect);
                cur = n.load_ref(0).unwrap();
            }
            assert_eq!(expect, 0, "list too short");
        }
    };
    for round in 0..2 {
        let st = collect(&mut m);
        assert_eq!(st.live_objects, N as usize, "round {round}");
        assert_eq!(st.live_bytes, N as usize * 24, "round {round}");
        assert_eq!(st.large_objects_live, 0);
        assert_eq!(
            h.stats().used_bytes,
            N as usize * 24,
            "packed after the collection"
        );
        check(&mut m);
    }
    // Drop it: everything is garbage.
    // SAFETY: a null slot.
    unsafe { m.roots()[0] = None };
    let st = collect(&mut m);
    assert_eq!((st.live_objects, st.live_bytes), (0, 0));
    assert_eq!(h.used_bytes(), 0);
    eprintln!(
        "10M list: build {t_build:?}, total {:?}, {} cycles",
        t0.elapsed(),
        h.stats().cycles
    );
}

// ---------------------------------------------------------------------------
// 2. Deep trees.
// ---------------------------------------------------------------------------

const TREE_TAG: u16 = 3;

fn node_sum(id: u64, left: Option<u64>, right: Option<u64>) -> u64 {
    mix(id.wrapping_mul(3)
        ^ mix(left.map_or(u64::MAX, |l| l ^ 0x5555))
        ^ mix(right.map_or(u64::MAX - 1, |r| r.rotate_left(17))))
}

/// (nodes, depth, checksum) of the tree at `root`, iteratively.
///
/// # Safety
/// As for [`id`]; the walk reaches no safepoint.
unsafe fn tree_stats(root: ObjRef) -> (u64, u64, u64) {
    let mut stack = vec![(root, 1u64)];
    let (mut count, mut depth, mut sum) = (0u64, 0u64, 0u64);
    while let Some((n, d)) = stack.pop() {
        // SAFETY: the caller's contract: every node is loaded from `root`
        // during this walk.
        unsafe {
            assert_eq!(n.header().tag(), TREE_TAG);
            count += 1;
            depth = depth.max(d);
            let l = n.load_ref(0).unwrap();
            let r = n.load_ref(1).unwrap();
            sum = sum.wrapping_add(node_sum(id(n), l.map(|o| id(o)), r.map(|o| id(o))));
            stack.extend(l.map(|c| (c, d + 1)));
            stack.extend(r.map(|c| (c, d + 1)));
        }
    }
    (count, depth, sum)
}

#[test]
fn deep_degenerate_tree_and_complete_tree() {
    const DEPTH: u64 = 1_000_000;
    const LEVELS: u32 = 18;
    let h = heap_no_dense(512 << 20);
    let mut m = h.attach().unwrap();
    let tnode = Layout::record(TREE_TAG, 2, 8).unwrap();
    let junk = Layout::record(4, 1, 24).unwrap();
    // SAFETY: null slots.
    unsafe { m.roots().resize(4, None) };

    // Degenerate tree: node i has left = node i+1, right = null. Built from
    // the deepest node up, with garbage in between.
    for i in (0..DEPTH).rev() {
        let n = m.alloc(&tnode).unwrap();
        // SAFETY: `n` was just allocated, the head just read from its root
        // slot; `n` then lives in the root slot.
        unsafe {
            n.write_u64(0, i).unwrap();
            let head = m.roots()[0];
            m.store_ref(n, 0, head).unwrap();
            m.roots()[0] = Some(n);
        }
        if i % 3 == 0 {
            m.alloc(&junk).unwrap();
        }
    }
    let chain_expect = (0..DEPTH).fold(0u64, |s, i| {
        s.wrapping_add(node_sum(i, (i + 1 < DEPTH).then_some(i + 1), None))
    });

    // Complete binary tree with heap numbering (children of k: 2k, 2k+1),
    // built in post-order with the root slots as the stack of subtrees.
    let nodes = (1u64 << LEVELS) - 1;
    let first_leaf = 1u64 << (LEVELS - 1);
    // SAFETY: reads the length only.
    let base = unsafe { m.roots().len() };
    let mut todo = vec![(1u64, false)];
    while let Some((k, expanded)) = todo.pop() {
        if k < first_leaf && !expanded {
            todo.push((k, true));
            todo.push((2 * k + 1, false));
            todo.push((2 * k, false));
            continue;
        }
        let n = m.alloc(&tnode).unwrap();
        // SAFETY: `n` was just allocated and the subtrees are popped from
        // root slots; `n` then lives in a root slot.
        unsafe {
            n.write_u64(0, k).unwrap();
            if k < first_leaf {
                let right = m.roots().pop().unwrap();
                let left = m.roots().pop().unwrap();
                m.store_ref(n, 0, left).unwrap();
                m.store_ref(n, 1, right).unwrap();
            }
            m.roots().push(Some(n));
        }
        if k % 5 == 0 {
            m.alloc(&junk).unwrap();
        }
    }
    // SAFETY: moves a reference from one root slot to another.
    unsafe {
        assert_eq!(m.roots().len(), base + 1);
        let tree = m.roots().pop().unwrap();
        m.roots()[1] = tree;
    }
    let tree_expect = (1..=nodes).fold(0u64, |s, k| {
        let kids = k < first_leaf;
        s.wrapping_add(node_sum(
            k,
            kids.then_some(2 * k),
            kids.then_some(2 * k + 1),
        ))
    });

    let check = |m: &mut MutatorContext, when: &str| {
        // SAFETY (both walks): they start at root slots and reach no
        // safepoint.
        let chain = unsafe { tree_stats(m.roots()[0].unwrap()) };
        assert_eq!(
            chain,
            (DEPTH, DEPTH, chain_expect),
            "degenerate tree {when}"
        );
        // SAFETY: as above.
        let tree = unsafe { tree_stats(m.roots()[1].unwrap()) };
        assert_eq!(
            tree,
            (nodes, LEVELS as u64, tree_expect),
            "complete tree {when}"
        );
    };
    check(&mut m, "before collecting");
    let live = (DEPTH + nodes) as usize * tnode.size();
    let mut rng = Rng::new(7);
    for round in 0..3 {
        let st = collect(&mut m);
        assert_eq!(st.live_bytes, live, "round {round}");
        assert_eq!(st.live_objects, (DEPTH + nodes) as usize);
        check(&mut m, &format!("after collection {round}"));
        // Replace a random stretch of 1000 chain nodes by fresh copies: the
        // old ones become garbage in the middle of the heap, so the next
        // collection slides everything above them.
        let from = 1 + rng.below(DEPTH as usize - 2000) as u64;
        // SAFETY: the walk starts at a root slot and reaches no safepoint;
        // what must survive the allocations below goes to root slots.
        unsafe {
            let mut cur = m.roots()[0].unwrap();
            while id(cur) != from - 1 {
                cur = cur.load_ref(0).unwrap().unwrap();
            }
            m.roots()[2] = Some(cur); // node from-1
            let mut tail = cur;
            for _ in 0..1000 {
                tail = tail.load_ref(0).unwrap().unwrap();
            }
            m.roots()[3] = Some(tail); // node from+999, keeps its successors
        }
        for i in (from..from + 999).rev() {
            let n = m.alloc(&tnode).unwrap();
            // SAFETY: `n` was just allocated, the head just read from its
            // root slot; `n` then lives in the root slot.
            unsafe {
                n.write_u64(0, i).unwrap();
                let head = m.roots()[3];
                m.store_ref(n, 0, head).unwrap();
                m.roots()[3] = Some(n);
            }
            m.alloc(&junk).unwrap();
        }
        // SAFETY: both read from root slots, no allocation before the store.
        unsafe {
            let (a, b) = (m.roots()[2].unwrap(), m.roots()[3]);
            m.store_ref(a, 0, b).unwrap();
            m.roots()[2] = None;
            m.roots()[3] = None;
        }
        // Nodes from..from+999 (999 of them) are garbage now.
        check(&mut m, &format!("after splicing in round {round}"));
    }
    let st = collect(&mut m);
    assert_eq!(st.live_bytes, live);
    assert!(st.moved_bytes > 0);
    check(&mut m, "at the end");
}

// ---------------------------------------------------------------------------
// 3. Cyclic graphs.
// ---------------------------------------------------------------------------

const RING_TAG: u16 = 4;
const GRAPH_TAG: u16 = 5;
const LOOP_TAG: u16 = 6;

fn graph_sum(id: u64, nbrs: impl Iterator<Item = Option<u64>>) -> u64 {
    nbrs.enumerate().fold(mix(id), |s, (j, n)| {
        mix(s ^ (j as u64) << 56 ^ n.map_or(u64::MAX, mix))
    })
}

/// Builds a ring of `n` nodes with ids `base..base+n` (node i -> i+1 ->
/// ... -> base); returns it in root slot `slot`.
fn build_ring(m: &mut MutatorContext, slot: usize, base: u64, n: u64, junk_every: u64) {
    let node = Layout::record(RING_TAG, 1, 8).unwrap();
    let junk = Layout::byte_array(0, 24).unwrap();
    // Build the path base+n-1 <- ... <- base (prepending), keep the last
    // node (base+n-1) in a temporary root, then close the ring.
    // SAFETY: a null slot.
    let tmp = unsafe {
        let tmp = m.roots().len();
        m.roots().push(None);
        tmp
    };
    for i in (0..n).rev() {
        let o = m.alloc(&node).unwrap();
        // SAFETY: `o` was just allocated, the head just read from its root
        // slot; `o` then lives in root slots.
        unsafe {
            o.write_u64(0, base + i).unwrap();
            let head = m.roots()[slot];
            m.store_ref(o, 0, head).unwrap();
            m.roots()[slot] = Some(o);
            if i == n - 1 {
                m.roots()[tmp] = Some(o);
            }
        }
        if junk_every > 0 && i % junk_every == 0 {
            m.alloc(&junk).unwrap();
        }
    }
    // SAFETY: both read from root slots, no allocation before the store.
    unsafe {
        let last = m.roots()[tmp].unwrap();
        let first = m.roots()[slot];
        m.store_ref(last, 0, first).unwrap();
        m.roots().pop();
    }
}

/// # Safety
/// As for [`id`]; the walk reaches no safepoint.
unsafe fn check_ring(head: ObjRef, base: u64, n: u64) {
    let mut cur = head;
    for i in 0..n {
        // SAFETY: the caller's contract.
        unsafe {
            assert_eq!(cur.header().tag(), RING_TAG);
            assert_eq!(id(cur), base + i);
            cur = cur.load_ref(0).unwrap().expect("ring broken");
        }
    }
    assert_eq!(cur, head, "ring of {n} does not close");
}

#[test]
fn cyclic_graphs_survive_and_mutate() {
    const N: usize = 100_000;
    let h = heap_no_dense(512 << 20);
    let mut m = h.attach().unwrap();
    let mut rng = Rng::new(42);
    const INDEX: usize = 0;
    const GRAPH: usize = 1;
    const RING: usize = 2;
    const LOOPS: usize = 3;
    const PAIR: usize = 4;
    // SAFETY: null slots.
    unsafe { m.roots().resize(5, None) };

    // A ring and self-loops.
    build_ring(&mut m, RING, 1_000_000, 1000, 3);
    let looped = Layout::record(LOOP_TAG, 2, 8).unwrap();
    let loops = m.alloc(&Layout::ref_array(7, 100).unwrap()).unwrap();
    // SAFETY: `loops` was just allocated.
    unsafe { m.roots()[LOOPS] = Some(loops) };
    for i in 0..100 {
        let o = m.alloc(&looped).unwrap();
        // SAFETY: `o` was just allocated, `loops` read from its root slot;
        // no allocation before the stores.
        unsafe {
            o.write_u64(0, i).unwrap();
            m.store_ref(o, 0, Some(o)).unwrap();
            m.store_ref(o, 1, Some(o)).unwrap();
            let loops = m.roots()[LOOPS].unwrap();
            m.store_ref(loops, i as usize, Some(o)).unwrap();
        }
        m.alloc(&Layout::byte_array(0, rng.below(64)).unwrap())
            .unwrap();
    }
    // A two-cycle between a large object and a small one.
    let big = m.alloc(&Layout::ref_array(8, 5000).unwrap()).unwrap();
    // SAFETY: `big` was just allocated.
    unsafe {
        assert!(big.header().size() >= h.config().large_object_threshold);
        m.roots()[PAIR] = Some(big);
    }
    let small = m.alloc(&Layout::record(9, 1, 8).unwrap()).unwrap();
    // SAFETY: `small` was just allocated, `big` read from its root slot.
    let big = unsafe {
        small.write_u64(0, 77).unwrap();
        let big = m.roots()[PAIR].unwrap();
        m.store_ref(small, 0, Some(big)).unwrap();
        m.store_ref(big, 4999, Some(small)).unwrap();
        big
    };
    let big_addr = big.addr();

    // The random graph: node i has degree 1..=5; edge 0 is i -> i+1 (mod N)
    // so everything is reachable from node 0; other edges are random
    // targets, self-loops or null.
    let mut edges: Vec<Vec<Option<u32>>> = (0..N)
        .map(|i| {
            let deg = 1 + rng.below(5);
            (0..deg)
                .map(|j| match (j, rng.below(10)) {
                    (0, _) => Some(((i + 1) % N) as u32),
                    (_, 0) => None,
                    (_, 1) => Some(i as u32),
                    _ => Some(rng.below(N) as u32),
                })
                .collect()
        })
        .collect();
    let index = m.alloc(&Layout::ref_array(10, N).unwrap()).unwrap(); // a large object
                                                                      // SAFETY: `index` was just allocated.
    unsafe { m.roots()[INDEX] = Some(index) };
    for (i, e) in edges.iter().enumerate() {
        let o = m
            .alloc(&Layout::record(GRAPH_TAG, e.len(), 8).unwrap())
            .unwrap();
        // SAFETY: `o` was just allocated, the index read from its root slot.
        unsafe {
            o.write_u64(0, i as u64).unwrap();
            let index = m.roots()[INDEX].unwrap();
            m.store_ref(index, i, Some(o)).unwrap();
        }
        if i % 2 == 0 {
            m.alloc(&Layout::record(0, 1, rng.below(40)).unwrap())
                .unwrap();
        }
    }
    // Wire the edges (no allocation: nothing moves meanwhile).
    // SAFETY: everything is loaded from the index, read from its root slot;
    // no allocation or safepoint until the end of the block.
    unsafe {
        let index = m.roots()[INDEX].unwrap();
        for (i, e) in edges.iter().enumerate() {
            let o = index.load_ref(i).unwrap().unwrap();
            for (j, t) in e.iter().enumerate() {
                let v = t.map(|t| index.load_ref(t as usize).unwrap().unwrap());
                m.store_ref(o, j, v).unwrap();
            }
        }
        m.roots()[GRAPH] = index.load_ref(0).unwrap();
        // Drop the index: the graph is now reachable only through node 0.
        m.roots()[INDEX] = None;
    }

    let sums = |edges: &Vec<Vec<Option<u32>>>| -> Vec<u64> {
        edges
            .iter()
            .enumerate()
            .map(|(i, e)| graph_sum(i as u64, e.iter().map(|t| t.map(u64::from))))
            .collect()
    };
    // Walks the graph from node 0 and checks every node; returns the nodes
    // by id (valid until the next allocation).
    let walk =
        |m: &mut MutatorContext, edges: &Vec<Vec<Option<u32>>>, want: &[u64]| -> Vec<ObjRef> {
            // SAFETY: the walk starts at a root slot and reaches no
            // safepoint; the caller uses the result only until its next
            // allocation (the rule).
            let root = unsafe { m.roots()[GRAPH].unwrap() };
            let mut found: Vec<Option<ObjRef>> = vec![None; N];
            let mut stack = vec![root];
            found[0] = Some(root);
            let mut count = 0;
            while let Some(o) = stack.pop() {
                count += 1;
                // SAFETY: as above.
                let (i, h) = unsafe { (id(o) as usize, o.header()) };
                assert_eq!(
                    (h.kind(), h.tag(), h.ref_count()),
                    (Kind::Record, GRAPH_TAG, edges[i].len()),
                    "node {i}"
                );
                let mut nbrs = Vec::new();
                for j in 0..h.ref_count() {
                    // SAFETY: as above.
                    let (t, tid) = unsafe {
                        let t = o.load_ref(j).unwrap();
                        (t, t.map(|t| id(t)))
                    };
                    assert_eq!(tid, edges[i][j].map(u64::from), "edge {j} of node {i}");
                    if let Some(t) = t {
                        let ti = tid.unwrap() as usize;
                        match found[ti] {
                            Some(prev) => assert_eq!(prev, t, "two copies of node {ti}"),
                            None => {
                                found[ti] = Some(t);
                                stack.push(t);
                            }
                        }
                    }
                    nbrs.push(tid);
                }
                assert_eq!(
                    graph_sum(i as u64, nbrs.into_iter()),
                    want[i],
                    "checksum of node {i}"
                );
            }
            assert_eq!(count, N, "nodes reachable from node 0");
            found.into_iter().map(Option::unwrap).collect()
        };
    let check_small = |m: &mut MutatorContext| {
        // SAFETY: every walk starts at a root slot; no safepoint here.
        unsafe {
            check_ring(m.roots()[RING].unwrap(), 1_000_000, 1000);
            let loops = m.roots()[LOOPS].unwrap();
            for i in 0..100 {
                let o = loops.load_ref(i).unwrap().unwrap();
                assert_eq!((o.header().tag(), id(o)), (LOOP_TAG, i as u64));
                assert_eq!(o.load_ref(0).unwrap(), Some(o));
                assert_eq!(o.load_ref(1).unwrap(), Some(o));
            }
            let big = m.roots()[PAIR].unwrap();
            assert_eq!(big.addr(), big_addr, "large objects never move");
            let small = big.load_ref(4999).unwrap().unwrap();
            assert_eq!(id(small), 77);
            assert_eq!(small.load_ref(0).unwrap(), Some(big));
            for i in 0..4999 {
                assert_eq!(big.load_ref(i).unwrap(), None);
            }
        }
    };

    let mut want = sums(&edges);
    walk(&mut m, &edges, &want);
    check_small(&mut m);
    let first = collect(&mut m);
    assert_eq!(first.large_objects_freed, 1, "the dropped index array");
    assert_eq!(first.large_objects_live, 1, "the two-cycle's array");
    let graph_bytes: usize = edges
        .iter()
        .map(|e| Layout::record(GRAPH_TAG, e.len(), 8).unwrap().size())
        .sum();
    let other_bytes =
        1000 * 24 + Layout::ref_array(7, 100).unwrap().size() + 100 * looped.size() + 24;
    assert_eq!(first.live_bytes, graph_bytes + other_bytes);
    assert_eq!(first.live_objects, N + 1000 + 1 + 100 + 1);

    for round in 0..3 {
        let old_edges = edges.clone();
        let old_want = want.clone();
        // Rewire 2000 random non-backbone edges in the model.
        for _ in 0..2000 {
            let i = rng.below(N);
            if edges[i].len() < 2 {
                continue;
            }
            let j = 1 + rng.below(edges[i].len() - 1);
            edges[i][j] = if rng.below(8) == 0 {
                None
            } else {
                Some(rng.below(N) as u32)
            };
        }
        want = sums(&edges);
        // Fresh copies of 100 random nodes (node 0 included): the old ones
        // become garbage scattered through the heap.
        let mut victims: Vec<usize> = (0..100).map(|_| rng.below(N)).collect();
        victims.push(0);
        victims.sort_unstable();
        victims.dedup();
        // SAFETY: reads the length only.
        let base = unsafe { m.roots().len() };
        for &v in &victims {
            let o = m
                .alloc(&Layout::record(GRAPH_TAG, edges[v].len(), 8).unwrap())
                .unwrap();
            // SAFETY: `o` was just allocated; it then lives in a root slot.
            unsafe {
                o.write_u64(0, v as u64).unwrap();
                m.roots().push(Some(o));
            }
        }
        // No allocation from here to the end of the rewiring.
        let mut cur = walk(&mut m, &old_edges, &old_want);
        // SAFETY: `cur` comes from the walk and the root slots just now;
        // no allocation or safepoint until it is dropped.
        unsafe {
            for (k, &v) in victims.iter().enumerate() {
                cur[v] = m.roots()[base + k].unwrap();
            }
            for (i, e) in edges.iter().enumerate() {
                for (j, t) in e.iter().enumerate() {
                    m.store_ref(cur[i], j, t.map(|t| cur[t as usize])).unwrap();
                }
            }
            m.roots()[GRAPH] = Some(cur[0]);
            m.roots().truncate(base);
        }
        let last_addr = cur[N - 1].addr();
        drop(cur);
        walk(&mut m, &edges, &want);
        check_small(&mut m);
        // Garbage, some of it cyclic.
        for k in 0..2000u64 {
            let g = m.alloc(&Layout::record(0, 1, 16).unwrap()).unwrap();
            // SAFETY: `g` was just allocated.
            unsafe {
                m.store_ref(g, 0, Some(g)).unwrap();
                g.write_u64(8, k).unwrap();
            }
        }
        let st = collect(&mut m);
        assert_eq!(st.live_bytes, graph_bytes + other_bytes, "round {round}");
        assert_eq!(st.live_objects, first.live_objects, "round {round}");
        let nodes = walk(&mut m, &edges, &want);
        if !victims.contains(&(N - 1)) {
            assert!(
                nodes[N - 1].addr() < last_addr,
                "node {} should have slid down",
                N - 1
            );
        }
        drop(nodes);
        check_small(&mut m);
    }
}

// ---------------------------------------------------------------------------
// 4. Unreachable cycles are freed.
// ---------------------------------------------------------------------------

#[test]
fn unreachable_cycles_are_freed() {
    let h = heap(128 << 20);
    let mut m = h.attach().unwrap();
    let keep = m.alloc(&Layout::record(1, 0, 8).unwrap()).unwrap();
    // SAFETY: `keep` was just allocated.
    unsafe {
        keep.write_u64(0, 0xfeed).unwrap();
        m.roots().push(Some(keep));
    }
    let base = collect(&mut m);
    assert_eq!((base.live_objects, base.live_bytes), (1, 16));

    const RINGS: usize = 20;
    const LEN: u64 = 500;
    for r in 0..RINGS {
        // SAFETY: a null slot.
        unsafe { m.roots().push(None) };
        build_ring(&mut m, 1 + r, (r as u64) << 32, LEN, 2);
    }
    // A cycle through two large objects and a small one.
    // SAFETY: a null slot.
    let lslot = unsafe {
        m.roots().push(None);
        m.roots().len() - 1
    };
    let a = m.alloc(&Layout::ref_array(11, 5000).unwrap()).unwrap();
    // SAFETY: `a` was just allocated.
    unsafe { m.roots()[lslot] = Some(a) };
    let b = m.alloc(&Layout::byte_array(12, 50_000).unwrap()).unwrap();
    // SAFETY: `b` was just allocated, `a` read from its root slot.
    unsafe {
        let a = m.roots()[lslot].unwrap();
        m.store_ref(a, 0, Some(b)).unwrap();
    }
    let s = m.alloc(&Layout::record(13, 1, 0).unwrap()).unwrap();
    // SAFETY: `s` was just allocated, `a` read from its root slot.
    unsafe {
        let a = m.roots()[lslot].unwrap();
        m.store_ref(a, 1, Some(s)).unwrap();
        m.store_ref(s, 0, Some(a)).unwrap();
    }

    let ring_bytes = LEN as usize * 24;
    let st = collect(&mut m);
    assert_eq!(st.live_objects, 1 + RINGS * LEN as usize + 1);
    assert_eq!(st.live_bytes, 16 + RINGS * ring_bytes + 16);
    assert_eq!(st.large_objects_live, 2);
    for r in 0..RINGS {
        // SAFETY: the walk starts at a root slot; no safepoint in it.
        unsafe { check_ring(m.roots()[1 + r].unwrap(), (r as u64) << 32, LEN) };
    }

    // Drop every other ring.
    for r in (0..RINGS).step_by(2) {
        // SAFETY: a null slot.
        unsafe { m.roots()[1 + r] = None };
    }
    let used_before = h.used_bytes();
    let st = collect(&mut m);
    assert_eq!(st.live_bytes, 16 + RINGS / 2 * ring_bytes + 16);
    assert_eq!(st.live_objects, 1 + RINGS / 2 * LEN as usize + 1);
    assert!(h.used_bytes() < used_before);
    for r in (1..RINGS).step_by(2) {
        // SAFETY: the walk starts at a root slot; no safepoint in it.
        unsafe { check_ring(m.roots()[1 + r].unwrap(), (r as u64) << 32, LEN) };
    }
    // Drop the large-object cycle.
    let los_before = h.stats().large_object_bytes;
    assert!(los_before >= 5000 * 8 + 50_000);
    // SAFETY: a null slot.
    unsafe { m.roots()[lslot] = None };
    let st = collect(&mut m);
    assert_eq!((st.large_objects_freed, st.large_objects_live), (2, 0));
    assert_eq!(h.stats().large_object_bytes, 0);
    assert!(st.freed_bytes >= los_before);
    assert_eq!(st.live_bytes, 16 + RINGS / 2 * ring_bytes);
    // And everything else.
    for r in 0..RINGS {
        // SAFETY: a null slot.
        unsafe { m.roots()[1 + r] = None };
    }
    let st = collect(&mut m);
    assert_eq!((st.live_objects, st.live_bytes), (1, 16));
    assert_eq!(h.used_bytes(), 16);
    // SAFETY: read from the root slot just now.
    assert_eq!(unsafe { id(m.roots()[0].unwrap()) }, 0xfeed);
    assert_eq!(h.stats().live_bytes, 16);
}

// ---------------------------------------------------------------------------
// 5. Mixed objects, large objects in both directions.
// ---------------------------------------------------------------------------

#[test]
fn mixed_and_large_objects() {
    let h = heap_no_dense(256 << 20);
    let thr = h.config().large_object_threshold;
    assert_eq!(thr, 32 << 10);
    let mut m = h.attach().unwrap();
    let mut rng = Rng::new(5);
    // Byte-array lengths around word and threshold boundaries: the last two
    // are the largest moving-space array and the smallest large one.
    let lens: Vec<usize> = vec![
        0,
        1,
        7,
        8,
        9,
        13,
        100,
        1000,
        4095,
        4096,
        4097,
        thr - 16,
        thr - 8,
    ];
    assert!(Layout::byte_array(0, thr - 16).unwrap().size() < thr);
    assert_eq!(Layout::byte_array(0, thr - 8).unwrap().size(), thr);
    const HOLDER: usize = 0;
    const BIG_REFS: usize = 1;
    const BIG_REC: usize = 2;
    // SAFETY: null slots.
    unsafe { m.roots().resize(3, None) };
    let holder = m.alloc(&Layout::ref_array(1, 64).unwrap()).unwrap();
    // SAFETY: `holder` was just allocated.
    unsafe { m.roots()[HOLDER] = Some(holder) };

    // [0, lens.len()): byte arrays.
    for (k, &len) in lens.iter().enumerate() {
        m.alloc(&Layout::byte_array(0, rng.below(200)).unwrap())
            .unwrap(); // garbage first
        let b = m
            .alloc(&Layout::byte_array(20 + k as u16, len).unwrap())
            .unwrap();
        // SAFETY: `b` was just allocated, the holder read from its root slot.
        unsafe {
            b.write_data(0, &pattern(k as u64, len)).unwrap();
            let holder = m.roots()[HOLDER].unwrap();
            m.store_ref(holder, k, Some(b)).unwrap();
        }
    }
    // [20, 40): records with 3 refs (to byte arrays / each other) and 13
    // data bytes.
    for k in 20..40usize {
        m.alloc(&Layout::record(0, 0, rng.below(100)).unwrap())
            .unwrap();
        let r = m.alloc(&Layout::record(40, 3, 13).unwrap()).unwrap();
        // SAFETY: `r` was just allocated, the holder read from its root
        // slot; no allocation until the end of the block.
        unsafe {
            r.write_data(0, &pattern(1000 + k as u64, 13)).unwrap();
            let holder = m.roots()[HOLDER].unwrap();
            m.store_ref(r, 0, holder.load_ref(k % (lens.len() - 1)).unwrap())
                .unwrap();
            m.store_ref(r, 1, holder.load_ref(k - 1).unwrap()).unwrap(); // previous record (or null for k = 20)
            m.store_ref(r, 2, Some(holder)).unwrap();
            m.store_ref(holder, k, Some(r)).unwrap();
        }
    }
    // [40, 50): small ref arrays of various lengths holding records.
    for k in 40..50usize {
        let a = m.alloc(&Layout::ref_array(41, k - 40).unwrap()).unwrap();
        // SAFETY: `a` was just allocated, the holder read from its root
        // slot; no allocation until the end of the block.
        unsafe {
            let holder = m.roots()[HOLDER].unwrap();
            for i in 0..k - 40 {
                m.store_ref(a, i, holder.load_ref(20 + i).unwrap()).unwrap();
            }
            m.store_ref(holder, k, Some(a)).unwrap();
        }
    }
    // A large ref array pointing at 1000 small records that point back.
    let big = m.alloc(&Layout::ref_array(50, 5000).unwrap()).unwrap();
    // SAFETY: `big` was just allocated.
    unsafe {
        assert!(big.header().size() >= thr);
        m.roots()[BIG_REFS] = Some(big);
    }
    for i in 0..1000usize {
        let r = m.alloc(&Layout::record(51, 1, 8).unwrap()).unwrap();
        // SAFETY: `r` was just allocated, `big` read from its root slot.
        unsafe {
            r.write_u64(0, i as u64 * 7).unwrap();
            let big = m.roots()[BIG_REFS].unwrap();
            m.store_ref(r, 0, Some(big)).unwrap();
            m.store_ref(big, i, Some(r)).unwrap();
        }
        m.alloc(&Layout::byte_array(0, 40).unwrap()).unwrap();
    }
    // A large record: 5000 refs and 100 data bytes; refs to the holder and
    // to the large byte array.
    let brec = m.alloc(&Layout::record(52, 5000, 100).unwrap()).unwrap();
    // SAFETY: `brec` was just allocated, the holder read from its root
    // slot; no allocation until the end of the block.
    let (big_addr, brec_addr, lbytes_addr) = unsafe {
        assert!(brec.header().size() >= thr);
        brec.write_data(0, &pattern(99, 100)).unwrap();
        let holder = m.roots()[HOLDER].unwrap();
        m.store_ref(brec, 0, Some(holder)).unwrap();
        m.store_ref(brec, 4999, holder.load_ref(lens.len() - 1).unwrap())
            .unwrap();
        m.roots()[BIG_REC] = Some(brec);
        let big = m.roots()[BIG_REFS];
        m.store_ref(holder, 60, big).unwrap(); // moving -> large

        let big_addr = m.roots()[BIG_REFS].unwrap().addr();
        let brec_addr = brec.addr();
        let lbytes_addr = holder.load_ref(lens.len() - 1).unwrap().unwrap().addr();
        (big_addr, brec_addr, lbytes_addr)
    };

    let check = |m: &mut MutatorContext, h: &GcHeap| {
        // SAFETY (every block of this check): it starts at root slots and
        // reaches no safepoint.
        let holder = unsafe { m.roots()[HOLDER].unwrap() };
        unsafe {
            assert_eq!(holder.header().len(), 64);
            for (k, &len) in lens.iter().enumerate() {
                let b = holder.load_ref(k).unwrap().unwrap();
                let hd = b.header();
                assert_eq!(
                    (hd.kind(), hd.tag(), hd.len(), hd.data_len()),
                    (Kind::ByteArray, 20 + k as u16, len, len)
                );
                assert_eq!(
                    bytes_of(b),
                    pattern(k as u64, len),
                    "byte array {k} of {len}"
                );
                assert!(h.contains(b));
            }
            for k in 20..40usize {
                let r = holder.load_ref(k).unwrap().unwrap();
                assert_eq!((r.header().ref_count(), r.header().data_len()), (3, 13));
                assert_eq!(bytes_of(r), pattern(1000 + k as u64, 13));
                assert_eq!(
                    r.load_ref(0).unwrap(),
                    holder.load_ref(k % (lens.len() - 1)).unwrap()
                );
                assert_eq!(r.load_ref(1).unwrap(), holder.load_ref(k - 1).unwrap());
                assert_eq!(r.load_ref(2).unwrap(), Some(holder));
            }
            for k in 40..50usize {
                let a = holder.load_ref(k).unwrap().unwrap();
                assert_eq!(
                    (a.header().kind(), a.header().len()),
                    (Kind::RefArray, k - 40)
                );
                for i in 0..k - 40 {
                    assert_eq!(a.load_ref(i).unwrap(), holder.load_ref(20 + i).unwrap());
                }
            }
            let big = m.roots()[BIG_REFS].unwrap();
            assert_eq!(big.addr(), big_addr);
            assert_eq!(holder.load_ref(60).unwrap(), Some(big));
            for i in 0..1000usize {
                let r = big.load_ref(i).unwrap().unwrap();
                assert_eq!(r.read_u64(0).unwrap(), i as u64 * 7);
                assert_eq!(r.load_ref(0).unwrap(), Some(big));
            }
            for i in 1000..5000usize {
                assert_eq!(big.load_ref(i).unwrap(), None);
            }
            let brec = m.roots()[BIG_REC].unwrap();
            assert_eq!(brec.addr(), brec_addr);
            assert_eq!(bytes_of(brec), pattern(99, 100));
            assert_eq!(brec.load_ref(0).unwrap(), Some(holder));
            let lb = brec.load_ref(4999).unwrap().unwrap();
            assert_eq!(lb.addr(), lbytes_addr);
            assert_eq!(lb, holder.load_ref(lens.len() - 1).unwrap().unwrap());
            for i in 1..4999 {
                assert_eq!(brec.load_ref(i).unwrap(), None);
            }
        }
    };
    check(&mut m, &h);

    // Dead large objects in between.
    for i in 0..10usize {
        let d = m
            .alloc(&Layout::byte_array(0, 40_000 + i).unwrap())
            .unwrap();
        // SAFETY: `d` was just allocated.
        unsafe { d.write_data(0, &[1, 2, 3]).unwrap() };
    }
    // SAFETY: loaded from the root slot; only the address is kept.
    let moving_before = unsafe { m.roots()[HOLDER].unwrap().load_ref(0) }
        .unwrap()
        .unwrap()
        .addr();
    let st = collect(&mut m);
    assert_eq!(st.large_objects_freed, 10);
    assert_eq!(st.large_objects_live, 3); // big ref array, big record, largest byte array
    assert!(
        // SAFETY: loaded from the root slot; only the address is used.
        unsafe { m.roots()[HOLDER].unwrap().load_ref(0) }
            .unwrap()
            .unwrap()
            .addr()
            < moving_before,
        "moving objects slid down"
    );
    check(&mut m, &h);

    for round in 0..3 {
        for _ in 0..5000 {
            m.alloc(&Layout::record(0, 2, rng.below(64)).unwrap())
                .unwrap();
        }
        m.alloc(&Layout::ref_array(0, 10_000).unwrap()).unwrap(); // dead large
        let st = collect(&mut m);
        assert_eq!(
            (st.large_objects_freed, st.large_objects_live),
            (1, 3),
            "round {round}"
        );
        check(&mut m, &h);
    }
    // Drop the large byte array's last references: it is freed.
    // SAFETY: both read from root slots just now; null stores.
    unsafe {
        let holder = m.roots()[HOLDER].unwrap();
        m.store_ref(holder, lens.len() - 1, None).unwrap();
        let brec = m.roots()[BIG_REC].unwrap();
        m.store_ref(brec, 4999, None).unwrap();
    }
    let st = collect(&mut m);
    assert_eq!((st.large_objects_freed, st.large_objects_live), (1, 2));
    // Drop the large record and ref array: the 1000 records pointing back at
    // the array die with it.
    let live_with = st.live_bytes;
    // SAFETY: read from the root slot just now; null stores.
    unsafe {
        let holder = m.roots()[HOLDER].unwrap();
        m.store_ref(holder, 60, None).unwrap();
        m.roots()[BIG_REFS] = None;
        m.roots()[BIG_REC] = None;
    }
    let st = collect(&mut m);
    assert_eq!((st.large_objects_freed, st.large_objects_live), (2, 0));
    assert_eq!(st.live_bytes, live_with - 1000 * 24);
    assert_eq!(h.stats().large_object_bytes, 0);
}

// ---------------------------------------------------------------------------
// 6. Several mutator threads.
// ---------------------------------------------------------------------------

const SLOTS: usize = 24;
const TMP: usize = SLOTS;
const TMP_PAYLOAD: usize = SLOTS + 1;

fn key(t: u64, slot: usize, gen: u64, idx: u64) -> u64 {
    mix(t << 56 ^ (slot as u64) << 48 ^ gen << 20 ^ idx)
}

fn payload_len(k: u64) -> usize {
    (k % 61) as usize
}

/// List `slot` of thread `t`: nodes with indices `hi-1` (head) down to `lo`.
#[derive(Clone, Copy, Debug)]
struct ListModel {
    gen: u64,
    lo: u64,
    hi: u64,
}

fn check_list(m: &mut MutatorContext, t: u64, slot: usize, lm: Option<ListModel>) -> usize {
    // SAFETY: the walk starts at a root slot and reaches no safepoint.
    let mut cur = unsafe { m.roots()[slot] };
    let Some(lm) = lm else {
        assert!(cur.is_none());
        return 0;
    };
    let mut idx = lm.hi;
    while let Some(n) = cur {
        idx -= 1;
        // SAFETY: as above: no safepoint during the walk.
        unsafe {
            let hd = n.header();
            assert_eq!(
                (hd.tag(), hd.ref_count(), hd.data_len()),
                (100 + t as u16, 2, 16),
                "thread {t} slot {slot}"
            );
            let k = key(t, slot, lm.gen, idx);
            assert_eq!(
                n.read_u64(0).unwrap(),
                k,
                "thread {t} slot {slot} idx {idx}"
            );
            assert_eq!(
                n.read_u64(8).unwrap(),
                mix(k ^ 0xc0ffee),
                "checksum, thread {t} slot {slot} idx {idx}"
            );
            let p = n.load_ref(1).unwrap();
            if idx % 4 == 0 {
                let p = p.expect("payload");
                assert_eq!(bytes_of(p), pattern(k, payload_len(k)));
            } else {
                assert!(p.is_none());
            }
            cur = n.load_ref(0).unwrap();
        }
    }
    assert_eq!(idx, lm.lo, "thread {t} slot {slot}: list length");
    (lm.hi - lm.lo) as usize
}

fn mutator_thread(h: GcHeap, t: u64, iters: usize) -> (usize, usize) {
    let mut m = h.attach().unwrap();
    let mut rng = Rng::new(1000 + t);
    let node = Layout::record(100 + t as u16, 2, 16).unwrap();
    // SAFETY: null slots.
    unsafe { m.roots().resize(SLOTS + 2, None) };
    let mut model: Vec<Option<ListModel>> = vec![None; SLOTS];
    // One persistent root per thread too.
    let pobj = m.alloc(&Layout::byte_array(7, 77).unwrap()).unwrap();
    // SAFETY: `pobj` was just allocated.
    let pid = unsafe {
        pobj.write_data(0, &pattern(t, 77)).unwrap();
        h.persistent_new(Some(pobj))
    };
    let mut explicit = 0;
    let mut checked = 0;

    for it in 0..iters {
        let slot = rng.below(SLOTS);
        match rng.below(10) {
            0..=4 => {
                // Rebuild the list with a new generation.
                let gen = it as u64;
                let len = 1 + rng.below(120) as u64;
                // SAFETY: a null slot.
                unsafe { m.roots()[TMP] = None };
                for idx in 0..len {
                    let k = key(t, slot, gen, idx);
                    if idx % 4 == 0 {
                        let p = m
                            .alloc(&Layout::byte_array(8, payload_len(k)).unwrap())
                            .unwrap();
                        // SAFETY: `p` was just allocated; it then lives in
                        // a root slot.
                        unsafe {
                            p.write_data(0, &pattern(k, payload_len(k))).unwrap();
                            m.roots()[TMP_PAYLOAD] = Some(p);
                        }
                    }
                    let n = m.alloc(&node).unwrap();
                    // SAFETY: `n` was just allocated, the others read from
                    // root slots; `n` then lives in a root slot.
                    unsafe {
                        n.write_u64(0, k).unwrap();
                        n.write_u64(8, mix(k ^ 0xc0ffee)).unwrap();
                        let next = m.roots()[TMP];
                        m.store_ref(n, 0, next).unwrap();
                        let payload = m.roots()[TMP_PAYLOAD].take();
                        m.store_ref(n, 1, payload).unwrap();
                        m.roots()[TMP] = Some(n);
                    }
                }
                // SAFETY: moves a reference between root slots.
                unsafe {
                    let head = m.roots()[TMP].take();
                    m.roots()[slot] = head;
                }
                model[slot] = Some(ListModel {
                    gen,
                    lo: 0,
                    hi: len,
                });
            }
            5..=6 => checked += check_list(&mut m, t, slot, model[slot]),
            7 => {
                // Truncate: keep the first k nodes from the head.
                if let Some(lm) = model[slot] {
                    let n = lm.hi - lm.lo;
                    let keep = 1 + rng.below(n as usize) as u64;
                    // SAFETY: the walk starts at a root slot and reaches no
                    // safepoint.
                    unsafe {
                        let mut cur = m.roots()[slot].unwrap();
                        for _ in 1..keep {
                            cur = cur.load_ref(0).unwrap().unwrap();
                        }
                        m.store_ref(cur, 0, None).unwrap();
                    }
                    model[slot] = Some(ListModel {
                        lo: lm.hi - keep,
                        ..lm
                    });
                }
            }
            8 => {
                // SAFETY: a null slot.
                unsafe { m.roots()[slot] = None };
                model[slot] = None;
            }
            _ => {
                // Garbage, occasionally a large object.
                for _ in 0..rng.below(400) {
                    let l = match rng.below(100) {
                        0 => Layout::byte_array(0, 40_000).unwrap(),
                        1..=40 => Layout::record(0, rng.below(4), rng.below(64)).unwrap(),
                        41..=70 => Layout::ref_array(0, rng.below(16)).unwrap(),
                        _ => Layout::byte_array(0, rng.below(300)).unwrap(),
                    };
                    m.alloc(&l).unwrap();
                }
            }
        }
        if it % 1000 == 999 {
            m.collect();
            explicit += 1;
        }
        if it % 2000 == 1999 {
            // Collections go on while this thread is in foreign code.
            m.blocking(|| std::thread::sleep(std::time::Duration::from_millis(2)));
        }
        if it % 500 == 0 {
            let p = h.persistent_get(pid).unwrap();
            // SAFETY: `p` was just read from its persistent slot.
            assert_eq!(unsafe { bytes_of(p) }, pattern(t, 77));
        }
    }
    // Verify everything, stopping at safepoints between lists so the other
    // threads' collections are not held up.
    for slot in 0..SLOTS {
        m.safepoint();
        checked += check_list(&mut m, t, slot, model[slot]);
    }
    let p = h.persistent_get(pid).unwrap();
    // SAFETY: `p` was just read from its persistent slot.
    assert_eq!(unsafe { bytes_of(p) }, pattern(t, 77));
    h.persistent_free(pid);
    (explicit, checked)
}

/// Runs `threads` mutator threads of `iters` iterations on `h` and checks
/// the results; fails (instead of hanging) if they do not finish within
/// `deadline`.
fn run_mutators(h: &GcHeap, threads: u64, iters: usize, deadline: std::time::Duration) -> usize {
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..threads {
        let h = h.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                mutator_thread(h, t, iters)
            }));
            let _ = tx.send((t, r));
        });
    }
    let mut checked = 0;
    let t0 = Instant::now();
    for _ in 0..threads {
        let left = deadline.saturating_sub(t0.elapsed());
        let (t, r) = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "mutator threads still running after {deadline:?}: deadlock? ({} cycles so far)",
                h.stats().cycles
            )
        });
        match r {
            Ok((explicit, c)) => {
                assert_eq!(explicit, iters / 1000, "thread {t}");
                checked += c;
            }
            Err(p) => std::panic::resume_unwind(p),
        }
    }
    checked
}

#[test]
fn four_mutator_threads_with_many_collections() {
    const ITERS: usize = 40_000;
    let t0 = Instant::now();
    // A small heap and a small fixed `min_free` (no CPU target, which
    // would space cycles out), so the size policy collects often, on top
    // of the explicit collections.
    let h = GcHeap::new(HeapConfig {
        min_free: 4 << 20,
        gc_cpu_target: None,
        ..config(64 << 20)
    })
    .unwrap();
    let checked = run_mutators(&h, 4, ITERS, std::time::Duration::from_secs(120));
    let st = h.stats();
    assert!(st.cycles >= 50, "only {} collections", st.cycles);
    let policy = st
        .recent
        .iter()
        .filter(|c| c.trigger == Some(Trigger::Policy))
        .count();
    assert!(
        policy >= 10,
        "only {policy} collections triggered by the size policy"
    );
    assert!(st
        .recent
        .iter()
        .all(|c| c.strategy == Some(Strategy::StopTheWorld)));
    assert!(!h.is_poisoned());
    assert!(checked > 10_000, "too little verified ({checked} nodes)");
    eprintln!(
        "4 threads: {} cycles ({policy} by policy), {checked} nodes checked, {:?}",
        st.cycles,
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 7. Bad input.
// ---------------------------------------------------------------------------

#[test]
fn bad_layouts_are_rejected() {
    assert_eq!(
        Layout::record(0, 70_000, 0),
        Err(LayoutError::TooManyFields(70_000))
    );
    assert_eq!(
        Layout::record(0, 65_536, 0),
        Err(LayoutError::TooManyFields(65_536))
    );
    assert!(Layout::record(0, 65_535, 0).is_ok());
    assert_eq!(
        Layout::record(0, 0, 1 << 24),
        Err(LayoutError::DataTooLarge(1 << 24))
    );
    assert_eq!(
        Layout::record(0, 1, usize::MAX),
        Err(LayoutError::DataTooLarge(usize::MAX))
    );
    let max = Layout::record(0, 65_535, (1 << 24) - 1).unwrap();
    assert_eq!(
        (max.header().ref_count(), max.header().data_len()),
        (65_535, (1 << 24) - 1)
    );
    assert_eq!(
        Layout::ref_array(0, 1 << 40),
        Err(LayoutError::ArrayTooLong(1 << 40))
    );
    assert_eq!(
        Layout::ref_array(0, usize::MAX),
        Err(LayoutError::ArrayTooLong(usize::MAX))
    );
    assert_eq!(
        Layout::byte_array(0, 1 << 40),
        Err(LayoutError::ArrayTooLong(1 << 40))
    );
    assert_eq!(
        Layout::byte_array(0, usize::MAX),
        Err(LayoutError::ArrayTooLong(usize::MAX))
    );
    let l = Layout::ref_array(0, (1 << 40) - 1).unwrap();
    assert_eq!(l.header().len(), (1 << 40) - 1);
    assert_eq!(l.size(), 8 << 40);
}

#[test]
fn out_of_range_field_access_is_an_error() {
    let h = heap(16 << 20);
    let mut m = h.attach().unwrap();
    let r = m.alloc(&Layout::record(1, 2, 12).unwrap()).unwrap();
    // SAFETY: `r` was just allocated.
    unsafe { m.roots().push(Some(r)) };
    let other = m.alloc(&Layout::record(1, 0, 0).unwrap()).unwrap();
    let mut buf = [0u8; 1];
    // SAFETY: `other` was just allocated, `r` read from its root slot; no
    // allocation until the end of the block.
    unsafe {
        let r = m.roots()[0].unwrap();
        r.write_data(0, &pattern(1, 12)).unwrap();
        m.store_ref(r, 1, Some(other)).unwrap();
        assert_eq!(
            r.load_ref(2),
            Err(FieldError::RefIndex { index: 2, len: 2 })
        );
        assert_eq!(
            r.load_ref(usize::MAX),
            Err(FieldError::RefIndex {
                index: usize::MAX,
                len: 2
            })
        );
        assert_eq!(
            m.store_ref(r, 2, Some(r)),
            Err(FieldError::RefIndex { index: 2, len: 2 })
        );
        assert_eq!(
            r.read_u64(5),
            Err(FieldError::DataRange {
                offset: 5,
                end: 13,
                len: 12
            })
        );
        assert_eq!(
            r.write_u64(12, 1),
            Err(FieldError::DataRange {
                offset: 12,
                end: 20,
                len: 12
            })
        );
        assert_eq!(
            r.write_data(10, &[9; 3]),
            Err(FieldError::DataRange {
                offset: 10,
                end: 13,
                len: 12
            })
        );
        assert_eq!(
            r.read_data(usize::MAX, &mut buf),
            Err(FieldError::DataRange {
                offset: usize::MAX,
                end: usize::MAX,
                len: 12
            })
        );
        assert_eq!(r.read_data(12, &mut []), Ok(()));
        // Failed writes changed nothing.
        assert_eq!(bytes_of(r), pattern(1, 12));
        assert_eq!(r.load_ref(0), Ok(None));
        assert_eq!(r.load_ref(1), Ok(Some(other)));
    }

    let b = m.alloc(&Layout::byte_array(2, 5).unwrap()).unwrap();
    // SAFETY: `b` was just allocated.
    unsafe {
        assert_eq!(
            b.load_ref(0),
            Err(FieldError::RefIndex { index: 0, len: 0 })
        );
        assert_eq!(
            b.read_u64(0),
            Err(FieldError::DataRange {
                offset: 0,
                end: 8,
                len: 5
            })
        );
    }
    let a = m.alloc(&Layout::ref_array(3, 4).unwrap()).unwrap();
    // SAFETY: `a` was just allocated.
    unsafe {
        assert_eq!(
            m.store_ref(a, 4, None),
            Err(FieldError::RefIndex { index: 4, len: 4 })
        );
        assert_eq!(
            a.read_data(0, &mut buf),
            Err(FieldError::DataRange {
                offset: 0,
                end: 1,
                len: 0
            })
        );
    }
    // And all of it survives a collection unchanged.
    collect(&mut m);
    // SAFETY: read from the root slot after the collection.
    unsafe {
        let r = m.roots()[0].unwrap();
        assert_eq!(bytes_of(r), pattern(1, 12));
        assert_eq!(r.load_ref(1).unwrap().unwrap().header().ref_count(), 0);
    }
}

fn config_error(cfg: HeapConfig) -> ConfigError {
    match GcHeap::new(cfg) {
        Err(HeapError::Config(e)) => e,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn bad_configurations_are_rejected() {
    let base = config(16 << 20);
    assert_eq!(
        config_error(HeapConfig {
            capacity: 1 << 20,
            ..base.clone()
        }),
        ConfigError::CapacityTooSmall(1 << 20)
    );
    assert_eq!(
        config_error(HeapConfig {
            capacity: 0,
            ..base.clone()
        }),
        ConfigError::CapacityTooSmall(0)
    );
    assert!(GcHeap::new(HeapConfig {
        capacity: 2 << 20,
        ..base.clone()
    })
    .is_ok());
    for bad in [0, 100, 248, 1001, 32 << 20] {
        assert_eq!(
            config_error(HeapConfig {
                tlab_size: bad,
                ..base.clone()
            }),
            ConfigError::BadTlabSize(bad)
        );
    }
    assert!(GcHeap::new(HeapConfig {
        tlab_size: 256,
        ..base.clone()
    })
    .is_ok());
    assert_eq!(
        config_error(HeapConfig {
            growth_factor: 0.5,
            ..base.clone()
        }),
        ConfigError::BadGrowthFactor(0.5)
    );
    assert!(matches!(
        config_error(HeapConfig { growth_factor: f64::NAN, ..base.clone() }),
        ConfigError::BadGrowthFactor(g) if g.is_nan()
    ));
    assert_eq!(
        config_error(HeapConfig {
            large_object_threshold: 8,
            ..base.clone()
        }),
        ConfigError::BadLargeObjectThreshold(8)
    );
    assert_eq!(
        config_error(HeapConfig {
            dense_prefix_threshold: Some(1.5),
            ..base.clone()
        }),
        ConfigError::BadDensePrefix(1.5)
    );
    assert_eq!(
        config_error(HeapConfig {
            dense_prefix_threshold: Some(-0.1),
            ..base.clone()
        }),
        ConfigError::BadDensePrefix(-0.1)
    );
}

#[test]
fn heap_exhaustion_is_an_error_and_the_heap_recovers() {
    const CAP: usize = 4 << 20;
    let h = heap(CAP);
    let mut m = h.attach().unwrap();
    let node = Layout::record(1, 1, 1000).unwrap();
    assert_eq!(node.size(), 1016);
    // SAFETY: a null slot.
    unsafe { m.roots().push(None) };
    let fill = |m: &mut MutatorContext| -> (u64, AllocError) {
        let mut n = 0u64;
        loop {
            match m.alloc(&node) {
                // SAFETY: `o` was just allocated, the head read from its
                // root slot; `o` then lives in the root slot.
                Ok(o) => unsafe {
                    o.write_u64(0, n).unwrap();
                    o.write_u64(992, !n).unwrap();
                    let head = m.roots()[0];
                    m.store_ref(o, 0, head).unwrap();
                    m.roots()[0] = Some(o);
                    n += 1;
                },
                Err(e) => return (n, e),
            }
            assert!(n <= (CAP / 1016) as u64, "allocated more than fits");
        }
    };
    let check = |m: &mut MutatorContext, n: u64| {
        // SAFETY: the walk starts at the root slot and reaches no safepoint.
        unsafe {
            let mut cur = m.roots()[0];
            let mut i = n;
            while let Some(o) = cur {
                i -= 1;
                assert_eq!((o.read_u64(0).unwrap(), o.read_u64(992).unwrap()), (i, !i));
                cur = o.load_ref(0).unwrap();
            }
            assert_eq!(i, 0);
        }
    };

    let (n, err) = fill(&mut m);
    // Exhaustion only once the live data really fills the capacity.
    assert_eq!(n, (CAP / 1016) as u64);
    assert_eq!(
        err,
        AllocError::HeapExhausted {
            requested: 1016,
            capacity: CAP,
            live: n as usize * 1016
        }
    );
    assert!(!h.is_poisoned());
    check(&mut m, n);
    // A small object still fits in the remaining bytes; a huge large object
    // does not.
    let tiny = m.alloc(&Layout::record(0, 0, 8).unwrap()).unwrap();
    // SAFETY: `tiny` was just allocated.
    unsafe { tiny.write_u64(0, 5).unwrap() };
    match m.alloc(&Layout::byte_array(0, 8 << 20).unwrap()) {
        Err(AllocError::HeapExhausted {
            requested,
            capacity,
            ..
        }) => assert_eq!((requested, capacity), ((8 << 20) + 8, CAP)),
        other => panic!("expected exhaustion, got {other:?}"),
    }
    check(&mut m, n);

    // Drop the roots: everything can be allocated again.
    // SAFETY: a null slot.
    unsafe { m.roots()[0] = None };
    let st = collect(&mut m);
    assert_eq!((st.live_objects, st.live_bytes), (0, 0));
    assert_eq!(h.used_bytes(), 0);
    let (n2, err2) = fill(&mut m);
    assert_eq!(n2, n);
    assert!(matches!(err2, AllocError::HeapExhausted { .. }));
    check(&mut m, n2);
    // SAFETY: a null slot.
    unsafe { m.roots()[0] = None };
    collect(&mut m);
    // Large objects fit again too.
    let big = m.alloc(&Layout::byte_array(3, 1 << 20).unwrap()).unwrap();
    // SAFETY: `big` was just allocated.
    unsafe {
        big.write_data((1 << 20) - 3, &[1, 2, 3]).unwrap();
        assert_eq!(bytes_of(big)[(1 << 20) - 3..], [1, 2, 3]);
    }
    assert!(!h.is_poisoned());
}

/// Fills the moving space with rooted 1016-byte records (root slot 0) until
/// allocation fails; returns how many were allocated and the error.
fn fill_with_records(m: &mut MutatorContext) -> (u64, AllocError) {
    let node = Layout::record(1, 1, 1000).unwrap();
    let mut n = 0u64;
    loop {
        match m.alloc(&node) {
            // SAFETY: `o` was just allocated, the head read from its root
            // slot; `o` then lives in the root slot.
            Ok(o) => unsafe {
                o.write_u64(0, n).unwrap();
                let head = m.roots()[0];
                m.store_ref(o, 0, head).unwrap();
                m.roots()[0] = Some(o);
                n += 1;
            },
            Err(e) => return (n, e),
        }
        assert!(n < 1 << 20, "allocation never fails");
    }
}

/// `HeapConfig::capacity` is "maximum heap size in bytes: moving space plus
/// large objects". Live large objects must reduce what the moving space may
/// hold.
#[test]
fn capacity_bounds_moving_space_plus_large_objects() {
    const CAP: usize = 4 << 20;
    let h = heap(CAP);
    let mut m = h.attach().unwrap();
    // SAFETY: null slots.
    unsafe { m.roots().resize(4, None) };
    for i in 0..3 {
        let b = m.alloc(&Layout::byte_array(1, 1 << 20).unwrap()).unwrap();
        // SAFETY: `b` was just allocated; it then lives in a root slot.
        unsafe {
            b.write_data(0, &pattern(i as u64, 64)).unwrap();
            m.roots()[1 + i] = Some(b);
        }
    }
    let los = h.stats().large_object_bytes;
    assert!(los >= 3 << 20);
    let (n, err) = fill_with_records(&mut m);
    assert!(matches!(err, AllocError::HeapExhausted { .. }), "{err:?}");
    let moving = n as usize * 1016;
    assert!(
        moving + los <= CAP,
        "{n} live records ({moving} bytes) + {los} bytes of live large objects exceed the capacity of {CAP} \
         (used_bytes {})",
        h.used_bytes()
    );
    assert!(
        h.used_bytes() <= CAP,
        "used_bytes {} > capacity {CAP}",
        h.used_bytes()
    );
}

/// A capacity that is not a multiple of 2 MiB is still the limit (the
/// moving space's reservation is rounded up, its usable size must not be).
#[test]
fn unaligned_capacity_is_a_hard_limit() {
    const CAP: usize = 3 << 20;
    let h = heap(CAP);
    let mut m = h.attach().unwrap();
    // SAFETY: a null slot.
    unsafe { m.roots().push(None) };
    let (n, err) = fill_with_records(&mut m);
    let moving = n as usize * 1016;
    assert!(
        matches!(err, AllocError::HeapExhausted { capacity: CAP, .. }),
        "{err:?}"
    );
    assert!(
        moving <= CAP,
        "{n} live records = {moving} bytes in a heap of capacity {CAP}"
    );
    assert!(
        h.used_bytes() <= CAP,
        "used_bytes {} > capacity {CAP}",
        h.used_bytes()
    );
}

// ---------------------------------------------------------------------------
// Dense prefixes of every density, and the data accessors.
// ---------------------------------------------------------------------------

/// A random graph with objects of very different sizes (some spanning
/// several pages) under every dense-prefix threshold, including 0.0 (every
/// full page is dense: all dead gaps become fillers) and 1.0.
#[test]
fn dense_prefix_thresholds_preserve_data() {
    for (case, th) in [Some(0.0), Some(0.3), Some(0.8), Some(1.0), None]
        .into_iter()
        .enumerate()
    {
        let h = GcHeap::new(HeapConfig {
            dense_prefix_threshold: th,
            ..config(64 << 20)
        })
        .unwrap();
        let mut m = h.attach().unwrap();
        let mut rng = Rng::new(case as u64);
        const N: usize = 3000;
        // Node i: record with nrefs(i) refs and data(i) bytes (up to ~2000
        // words), data = pattern(i).
        let nrefs = |i: usize| [0, 1, 2, 5, 40, 300][i % 6];
        let data = |i: usize| [8, 13, 100, 1000, 8000, 15_000][(i / 6) % 6];
        let mut edges: Vec<Vec<Option<u32>>> = vec![Vec::new(); N];
        let mut alive = vec![true; N];
        // SAFETY: a null slot.
        unsafe { m.roots().resize(1, None) };
        let index = m.alloc(&Layout::ref_array(1, N).unwrap()).unwrap();
        // SAFETY: `index` was just allocated.
        unsafe { m.roots()[0] = Some(index) };
        for i in 0..N {
            let l = Layout::record(2, nrefs(i), data(i)).unwrap();
            assert!(l.size() < h.config().large_object_threshold);
            let o = m.alloc(&l).unwrap();
            // SAFETY: `o` was just allocated, the index read from its root
            // slot.
            unsafe {
                o.write_data(0, &pattern(i as u64, data(i))).unwrap();
                o.write_u64(0, i as u64).unwrap();
                let index = m.roots()[0].unwrap();
                m.store_ref(index, i, Some(o)).unwrap();
            }
            for _ in 0..rng.below(3) {
                m.alloc(&Layout::byte_array(0, rng.below(3000)).unwrap())
                    .unwrap();
            }
        }
        let wire = |m: &mut MutatorContext,
                    edges: &mut Vec<Vec<Option<u32>>>,
                    alive: &[bool],
                    rng: &mut Rng| {
            // SAFETY (all blocks): everything is loaded from the index, read
            // from its root slot; no allocation or safepoint here.
            let index = unsafe { m.roots()[0].unwrap() };
            for i in 0..N {
                if !alive[i] {
                    continue;
                }
                // SAFETY: as above.
                let o = unsafe { index.load_ref(i).unwrap().unwrap() };
                edges[i] = (0..nrefs(i))
                    .map(|_| {
                        let t = rng.below(N);
                        (alive[t] && rng.below(4) != 0).then_some(t as u32)
                    })
                    .collect();
                for (j, t) in edges[i].iter().enumerate() {
                    // SAFETY: as above.
                    unsafe {
                        let v = t.map(|t| index.load_ref(t as usize).unwrap().unwrap());
                        m.store_ref(o, j, v).unwrap();
                    }
                }
            }
        };
        let check = |m: &mut MutatorContext, edges: &Vec<Vec<Option<u32>>>, alive: &[bool]| {
            // SAFETY (both blocks): everything is loaded from the index,
            // read from its root slot; no safepoint here.
            let index = unsafe { m.roots()[0].unwrap() };
            for i in 0..N {
                unsafe {
                    let o = index.load_ref(i).unwrap();
                    assert_eq!(o.is_some(), alive[i]);
                    let Some(o) = o else { continue };
                    assert_eq!(
                        (o.header().ref_count(), o.header().data_len()),
                        (nrefs(i), data(i))
                    );
                    let mut want = pattern(i as u64, data(i));
                    want[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    assert_eq!(bytes_of(o), want, "data of node {i}, threshold {th:?}");
                    for (j, t) in edges[i].iter().enumerate() {
                        assert_eq!(
                            o.load_ref(j).unwrap().map(|o| id(o)),
                            t.map(u64::from),
                            "edge {j} of {i}, threshold {th:?}"
                        );
                    }
                }
            }
        };
        wire(&mut m, &mut edges, &alive, &mut rng);
        check(&mut m, &edges, &alive);
        for round in 0..4 {
            // Kill a random quarter of the live nodes (they stay reachable
            // only if an edge still points at them: rewire first).
            for a in alive.iter_mut() {
                if rng.below(4) == 0 {
                    *a = false;
                }
            }
            // SAFETY: the index is read from its root slot; null stores.
            unsafe {
                let index = m.roots()[0].unwrap();
                for (i, &a) in alive.iter().enumerate() {
                    if !a {
                        m.store_ref(index, i, None).unwrap();
                    }
                }
            }
            wire(&mut m, &mut edges, &alive, &mut rng);
            let st = collect(&mut m);
            let want_bytes: usize = (0..N)
                .filter(|&i| alive[i])
                .map(|i| Layout::record(2, nrefs(i), data(i)).unwrap().size())
                .sum();
            let index_bytes = Layout::ref_array(1, N).unwrap().size();
            assert_eq!(
                st.live_bytes,
                want_bytes + index_bytes,
                "round {round}, threshold {th:?}"
            );
            if th == Some(0.0) {
                assert!(
                    st.pages_compacted <= 1,
                    "threshold 0: only the partial last page moves ({st:?})"
                );
            }
            check(&mut m, &edges, &alive);
            // Some garbage and a second collection without changes.
            for _ in 0..500 {
                m.alloc(&Layout::byte_array(0, rng.below(5000)).unwrap())
                    .unwrap();
            }
            collect(&mut m);
            check(&mut m, &edges, &alive);
        }
    }
}

/// Unaligned reads and writes of record data and byte arrays against a byte
/// model; neighbouring objects are never touched.
#[test]
fn data_accessors_match_a_byte_model() {
    let h = heap(16 << 20);
    let mut m = h.attach().unwrap();
    let mut rng = Rng::new(99);
    let layouts = [
        Layout::byte_array(1, 0).unwrap(),
        Layout::byte_array(2, 37).unwrap(),
        Layout::record(3, 3, 29).unwrap(),
        Layout::byte_array(4, 1).unwrap(),
        Layout::record(5, 1, 64).unwrap(),
        Layout::byte_array(6, 9).unwrap(),
    ];
    let mut model: Vec<Vec<u8>> = Vec::new();
    for (k, l) in layouts.iter().enumerate() {
        let o = m.alloc(l).unwrap(); // consecutive in one TLAB
                                     // SAFETY: `o` was just allocated.
        unsafe { m.roots().push(Some(o)) };
        model.push(vec![0; l.header().data_len()]);
        let _ = k;
    }
    let refs_of = |m: &mut MutatorContext, k: usize| -> Vec<Option<u64>> {
        // SAFETY: loaded from a root slot; no safepoint here.
        unsafe {
            let o = m.roots()[k].unwrap();
            (0..o.header().ref_count())
                .map(|j| o.load_ref(j).unwrap().map(|r| r.header().tag() as u64))
                .collect()
        }
    };
    // Point record refs at neighbours.
    for k in [2usize, 4] {
        // SAFETY: all read from root slots; no allocation here.
        unsafe {
            let o = m.roots()[k].unwrap();
            for j in 0..o.header().ref_count() {
                let v = m.roots()[(k + j + 1) % layouts.len()];
                m.store_ref(o, j, v).unwrap();
            }
        }
    }
    let refs2 = refs_of(&mut m, 2);
    let refs4 = refs_of(&mut m, 4);
    for step in 0..4000 {
        let k = rng.below(layouts.len());
        // SAFETY: `o` is read from its root slot and used before the
        // collection below.
        unsafe {
            let o = m.roots()[k].unwrap();
            let len = model[k].len();
            let off = rng.below(len + 3);
            match rng.below(4) {
                0 => {
                    let n = rng.below(12);
                    let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    let r = o.write_data(off, &bytes);
                    if off + n <= len {
                        r.unwrap();
                        model[k][off..off + n].copy_from_slice(&bytes);
                    } else {
                        assert_eq!(
                            r,
                            Err(FieldError::DataRange {
                                offset: off,
                                end: off + n,
                                len
                            })
                        );
                    }
                }
                1 => {
                    let v = rng.next();
                    let r = o.write_u64(off, v);
                    if off + 8 <= len {
                        r.unwrap();
                        model[k][off..off + 8].copy_from_slice(&v.to_le_bytes());
                    } else {
                        assert!(r.is_err());
                    }
                }
                2 => {
                    let r = o.read_u64(off);
                    if off + 8 <= len {
                        assert_eq!(
                            r.unwrap(),
                            u64::from_le_bytes(model[k][off..off + 8].try_into().unwrap())
                        );
                    } else {
                        assert!(r.is_err());
                    }
                }
                _ => {
                    let n = rng.below(12);
                    let mut buf = vec![0u8; n];
                    let r = o.read_data(off, &mut buf);
                    if off + n <= len {
                        r.unwrap();
                        assert_eq!(buf, model[k][off..off + n]);
                    } else {
                        assert!(r.is_err());
                    }
                }
            }
        }
        if step % 1000 == 999 {
            // Garbage in between, then move everything.
            for _ in 0..100 {
                m.alloc(&Layout::byte_array(0, 100).unwrap()).unwrap();
            }
            collect(&mut m);
        }
        if step % 97 == 0 {
            for (k, want) in model.iter().enumerate() {
                // SAFETY: read from its root slot; no safepoint here.
                unsafe {
                    let o = m.roots()[k].unwrap();
                    assert_eq!(o.header().tag(), layouts[k].header().tag());
                    assert_eq!(&bytes_of(o), want, "object {k} at step {step}");
                }
            }
            assert_eq!(refs_of(&mut m, 2), refs2);
            assert_eq!(refs_of(&mut m, 4), refs4);
        }
    }
}

// ---------------------------------------------------------------------------
// Extreme configurations and mutator states.
// ---------------------------------------------------------------------------

/// Builds a list of `n` records (1 ref, 16 data bytes: i, mix(i)) in root
/// slot `slot`, with a garbage object after each node.
fn build_list(m: &mut MutatorContext, slot: usize, n: u64, tag: u16) {
    let node = Layout::record(tag, 1, 16).unwrap();
    for i in 0..n {
        let o = m.alloc(&node).unwrap();
        // SAFETY: `o` was just allocated, the head read from its root slot;
        // `o` then lives in the root slot.
        unsafe {
            o.write_u64(0, i).unwrap();
            o.write_u64(8, mix(i)).unwrap();
            let head = m.roots()[slot];
            m.store_ref(o, 0, head).unwrap();
            m.roots()[slot] = Some(o);
        }
        m.alloc(&Layout::byte_array(0, 8 + (i % 50) as usize).unwrap())
            .unwrap();
    }
}

fn check_list_in(m: &mut MutatorContext, slot: usize, n: u64, tag: u16) {
    // SAFETY: the walk starts at a root slot and reaches no safepoint.
    let mut cur = unsafe { m.roots()[slot] };
    let mut i = n;
    while let Some(o) = cur {
        i -= 1;
        // SAFETY: as above.
        unsafe {
            assert_eq!(o.header().tag(), tag);
            assert_eq!(
                (o.read_u64(0).unwrap(), o.read_u64(8).unwrap()),
                (i, mix(i))
            );
            cur = o.load_ref(0).unwrap();
        }
    }
    assert_eq!(i, 0, "list in slot {slot} too short");
}

/// Minimal TLABs, no minimum free space and growth factor 1: the policy
/// collects at almost every TLAB refill.
#[test]
fn collection_at_every_refill() {
    let h = GcHeap::new(HeapConfig {
        tlab_size: 256,
        min_free: 0,
        growth_factor: 1.0,
        ..config(16 << 20)
    })
    .unwrap();
    let mut m = h.attach().unwrap();
    // SAFETY: null slots.
    unsafe { m.roots().resize(2, None) };
    build_list(&mut m, 0, 3000, 1);
    // Objects bigger than a TLAB.
    for i in 0..50u64 {
        let b = m
            .alloc(&Layout::byte_array(2, 1000 + i as usize).unwrap())
            .unwrap();
        // SAFETY: `b` was just allocated.
        unsafe {
            b.write_data(0, &pattern(i, 1000 + i as usize)).unwrap();
            m.store_ref(b, 0, None).unwrap_err();
        }
        let keep = m.alloc(&Layout::record(3, 2, 8).unwrap()).unwrap();
        // SAFETY: `keep` was just allocated, the head read from its root
        // slot; `keep` then lives in the root slot.
        unsafe {
            keep.write_u64(0, i).unwrap();
            let head = m.roots()[1];
            m.store_ref(keep, 1, head).unwrap();
            m.roots()[1] = Some(keep);
        }
    }
    let cycles = h.stats().cycles;
    assert!(cycles >= 500, "only {cycles} collections");
    check_list_in(&mut m, 0, 3000, 1);
    // SAFETY: the walk starts at a root slot and reaches no safepoint.
    let mut cur = unsafe { m.roots()[1] };
    let mut i = 50;
    while let Some(o) = cur {
        i -= 1;
        // SAFETY: as above.
        unsafe {
            assert_eq!(o.read_u64(0).unwrap(), i);
            cur = o.load_ref(1).unwrap();
        }
    }
    assert_eq!(i, 0);
}

/// With the smallest large-object threshold every object is a large object:
/// the moving space stays empty and collections still work.
#[test]
fn everything_in_the_large_object_space() {
    let h = GcHeap::new(HeapConfig {
        large_object_threshold: 16,
        ..config(64 << 20)
    })
    .unwrap();
    let mut m = h.attach().unwrap();
    // SAFETY: a null slot.
    unsafe { m.roots().push(None) };
    build_list(&mut m, 0, 300, 4);
    assert_eq!(h.stats().used_bytes, 0);
    let st = collect(&mut m);
    assert_eq!((st.live_objects, st.live_bytes), (0, 0));
    assert_eq!(st.large_objects_live, 300);
    assert_eq!(st.large_objects_freed, 300, "the garbage byte arrays");
    check_list_in(&mut m, 0, 300, 4);
    // SAFETY: a null slot.
    unsafe { m.roots()[0] = None };
    let st = collect(&mut m);
    assert_eq!((st.large_objects_live, st.large_objects_freed), (0, 300));
    assert_eq!(h.used_bytes(), 0);
}

/// A thread blocked in foreign code keeps its roots: another thread's
/// collections move its objects and update its root slots.
#[test]
fn blocked_and_detached_mutators() {
    let h = heap_no_dense(64 << 20);
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<usize>();
    let h2 = h.clone();
    let blocked = std::thread::spawn(move || {
        let mut m = h2.attach().unwrap();
        // SAFETY: a null slot.
        unsafe { m.roots().push(None) };
        build_list(&mut m, 0, 20_000, 5);
        // SAFETY: only the root slot's address is read.
        let before = unsafe { m.roots()[0] }.unwrap().addr();
        ready_tx.send(before).unwrap();
        m.blocking(|| go_rx.recv().unwrap());
        // Moved (garbage was interleaved) and still intact.
        // SAFETY: only the root slot's address is read.
        assert_ne!(unsafe { m.roots()[0] }.unwrap().addr(), before);
        check_list_in(&mut m, 0, 20_000, 5);
    });
    // A thread that exits with rooted data: its roots go away with it.
    let h3 = h.clone();
    std::thread::spawn(move || {
        let mut m = h3.attach().unwrap();
        // SAFETY: a null slot.
        unsafe { m.roots().push(None) };
        build_list(&mut m, 0, 5000, 6);
    })
    .join()
    .unwrap();

    ready_rx.recv().unwrap();
    let mut m = h.attach().unwrap();
    for _ in 0..3 {
        let st = collect(&mut m);
        assert_eq!(
            st.live_objects, 20_000,
            "only the blocked thread's list is live"
        );
        assert_eq!(st.live_bytes, 20_000 * 32);
    }
    go_tx.send(()).unwrap();
    blocked.join().unwrap();
    let st = collect(&mut m);
    assert_eq!((st.live_objects, st.live_bytes), (0, 0));
}
