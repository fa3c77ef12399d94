//! Clean dense-prefix pages (`HeapConfig::keep_clean_prefix`): a full
//! cycle leaves alone the prefix pages the last full cycle fixed when no
//! object on them died and none of their references moves; a concurrent
//! cycle keeps the run of them at the bottom out of the flip.
//!
//! The heap: a list of old nodes (next, young, peer; the id as data) that
//! becomes the dense prefix, each node's `peer` another old node (a
//! reference that stays inside the prefix). Between cycles the main thread
//! unlinks a few nodes (their pages change) and points a few nodes'
//! `young` at objects that move (their pages hold a moving reference); in
//! the racing variant a second thread keeps storing such objects into
//! random nodes while the cycles mark, so some of the stores land after
//! the marker scanned the node and only the barrier sees them. After every
//! cycle the verifier runs, and every node's young object and peer are
//! read back: a page wrongly left alone would keep a stale address.
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract). Rule followed: an `ObjRef` held in a local is only used until
//! the thread's next `alloc`/`collect`/`safepoint`/wait; anything that must
//! survive one lives in a root slot or a persistent slot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use movegc_gc::concurrent::{FaultMode, Injection};
use movegc_gc::{CycleStats, GcHeap, HeapConfig, Layout, MutatorContext, ObjRef, Phase, Strategy};

/// Old nodes: next, young, peer; then the id.
fn node() -> Layout {
    Layout::record(1, 3, 8).unwrap()
}

/// Objects that move: the id of the node that points at it, then padding.
fn mover() -> Layout {
    Layout::record(2, 0, 24).unwrap()
}

const N: usize = 40_000; // ~1.6 MB of nodes: ~390 prefix pages

/// Cycles measured after the two that set the prefix up.
const CYCLES: usize = 12;

/// The peer of node `id`: an older node, so the reference stays inside
/// the prefix.
fn peer_of(id: usize) -> usize {
    id / 2
}

fn heap(
    strategy: Strategy,
    fault_mode: FaultMode,
    keep: bool,
    injection: Injection,
) -> Option<GcHeap> {
    heap_with(HeapConfig {
        strategy,
        fault_mode,
        keep_clean_prefix: keep,
        injection,
        ..HeapConfig::default()
    })
}

/// A 64 MiB heap that never collects on its own, verifier on, `cfg`'s
/// strategy, fault mode, option, young collections and injections.
fn heap_with(cfg: HeapConfig) -> Option<GcHeap> {
    let strategy = cfg.strategy;
    let heap = GcHeap::new(HeapConfig {
        capacity: 64 << 20,
        min_free: 64 << 20,
        gc_threads: 2,
        verify: true,
        ..cfg
    })
    .unwrap();
    if strategy.is_concurrent() && heap.strategy() == Strategy::StopTheWorld {
        eprintln!("skipped: userfaultfd unavailable");
        return None;
    }
    Some(heap)
}

/// Builds the list (root slot 0: its head, id 0 first) with every node's
/// peer set. Node `id` is allocated `id`-th, so peers lie below their
/// nodes. Root slot 1 is scratch.
fn build(m: &mut MutatorContext) {
    // SAFETY: the nodes are held as `ObjRef`s across allocations because
    // no collection can run while the list is built: `min_free` is the
    // capacity (no cycle starts on its own), this is the only mutator and
    // it does not collect.
    unsafe {
        m.roots().resize(2, None);
        let mut nodes: Vec<ObjRef> = Vec::with_capacity(N);
        for id in 0..N {
            let nd = m.alloc(&node()).unwrap();
            nd.write_u64(0, id as u64).unwrap();
            let peer = if id == 0 { nd } else { nodes[peer_of(id)] };
            m.store_ref(nd, 2, Some(peer)).unwrap();
            nodes.push(nd);
        }
        for id in (0..N).rev() {
            let next = m.roots()[0];
            m.store_ref(nodes[id], 0, next).unwrap();
            m.roots()[0] = Some(nodes[id]);
        }
    }
}

/// Walks the list checking ids, peers and young objects; returns the
/// number of nodes and of young objects.
///
/// # Safety
/// No safepoint of the calling thread during the walk; `head` current.
unsafe fn check(head: Option<ObjRef>) -> (usize, usize) {
    let (mut nodes, mut young) = (0, 0);
    let mut cur = head;
    while let Some(nd) = cur {
        let id = nd.read_u64(0).unwrap() as usize;
        let peer = nd.load_ref(2).unwrap().expect("every node has a peer");
        assert_eq!(
            peer.read_u64(0).unwrap() as usize,
            peer_of(id),
            "peer of {id}"
        );
        if let Some(y) = nd.load_ref(1).unwrap() {
            let v = y.read_u64(0).unwrap();
            assert_eq!(
                y.read_u64(8).unwrap(),
                check_word(v),
                "young object of {id}"
            );
            young += 1;
        }
        nodes += 1;
        cur = nd.load_ref(0).unwrap();
    }
    (nodes, young)
}

/// Between cycles: unlinks the successor of every node whose id is
/// `cycle` modulo 997, if that successor's id is above `N / 2` (nobody's
/// peer); drops every node's young object and gives every node above
/// `N / 4` whose id is `cycle` modulo 1009 a new one that will move
/// (garbage allocated before it). Returns the nodes unlinked.
fn mutate(m: &mut MutatorContext, cycle: usize) -> usize {
    let mut unlinked = 0;
    // SAFETY: the walk pointer lives in root slot 1 across allocations.
    unsafe {
        m.roots()[1] = m.roots()[0];
        while let Some(nd) = m.roots()[1] {
            let id = nd.read_u64(0).unwrap() as usize;
            if let Some(nx) = nd.load_ref(0).unwrap() {
                let nx_id = nx.read_u64(0).unwrap() as usize;
                // A node nobody's peer (ids above N / 2) may die.
                if id % 997 == cycle && nx_id > N / 2 {
                    let after = nx.load_ref(0).unwrap();
                    m.store_ref(nd, 0, after).unwrap();
                    unlinked += 1;
                }
            }
            if id > N / 4 && id % 1009 == cycle {
                let _garbage = m.alloc(&mover()).unwrap();
                let y = m.alloc(&mover()).unwrap();
                y.write_u64(0, id as u64).unwrap();
                y.write_u64(8, check_word(id as u64)).unwrap();
                let nd = m.roots()[1].unwrap();
                m.store_ref(nd, 1, Some(y)).unwrap();
            } else if nd.load_ref(1).unwrap().is_some() {
                m.store_ref(nd, 1, None).unwrap();
            }
            let nd = m.roots()[1].unwrap();
            m.roots()[1] = nd.load_ref(0).unwrap();
        }
    }
    unlinked
}

/// Whether a cycle of `heap` is marking now.
fn marking(heap: &GcHeap) -> bool {
    in_phase(heap, Phase::Marking)
}

/// Whether a cycle of `heap` is in `phase`.
fn in_phase(heap: &GcHeap, phase: Phase) -> bool {
    heap.stats().in_progress.is_some_and(|p| p.phase == phase)
}

/// The node `steps` after the list head in persistent slot `head`.
///
/// # Safety
/// As for any `ObjRef`: the node is used before the caller's next
/// safepoint.
unsafe fn nth_node(heap: &GcHeap, head: usize, steps: usize) -> Option<ObjRef> {
    let mut cur = heap.persistent_get(head);
    for _ in 0..steps {
        cur = cur.and_then(|n| n.load_ref(0).unwrap());
    }
    cur
}

/// A mutator of `heap` with the list built and two full cycles run (the
/// first packs the nodes, the second remembers the prefix, so the next is
/// the first to find clean pages), and a persistent slot holding the
/// list's head.
fn prepared(heap: &GcHeap, strategy: Strategy) -> (MutatorContext, usize) {
    let mut m = heap.attach().unwrap();
    build(&mut m);
    m.collect_with(strategy).expect("a collection ran");
    m.collect_with(strategy).expect("a collection ran");
    // SAFETY: read from the root slot just now.
    let head = unsafe { heap.persistent_new(m.roots()[0]) };
    (m, head)
}

/// A check word for a mover holding `id`.
fn check_word(id: u64) -> u64 {
    id ^ 0x5eed_f00d_dead_beef
}

/// Movers in the racing writer's pool.
const POOL: usize = 32;

/// Stores, while `stop` is unset and only while a cycle marks, objects
/// of its pool into the young slot of nodes among the first 2,000. The
/// pool is refilled between cycles (after garbage, so its objects move),
/// and the main thread clears every young slot before each cycle: so the
/// marker finds no moving reference on those nodes' pages, and the stores
/// that land after it scanned a node are seen by the barrier alone.
/// Returns the stores made.
fn racing_writer(
    heap: GcHeap,
    head: usize,
    stop: Arc<AtomicBool>,
    concurrent: bool,
    phase: Phase,
) -> usize {
    let mut w = heap.attach().unwrap();
    let mut stores = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut fresh = false;
    // SAFETY: null slots.
    unsafe { w.roots().resize(POOL, None) };
    while !stop.load(Ordering::Relaxed) {
        // Stop-the-world cycles do not mark while it runs: it stores
        // between them (the marker sees those).
        let marking = !concurrent || in_phase(&heap, phase);
        if !marking || (!concurrent && stores % 64 == 0 && !fresh) {
            if !fresh {
                for j in 0..POOL {
                    let _garbage = w.alloc(&mover()).unwrap();
                    let y = w.alloc(&mover()).unwrap();
                    // SAFETY: `y` was just allocated; kept in a root slot.
                    unsafe {
                        y.write_u64(0, (stores + j) as u64).unwrap();
                        y.write_u64(8, check_word((stores + j) as u64)).unwrap();
                        w.roots()[j] = Some(y);
                    }
                }
                fresh = true;
            }
            w.safepoint();
            std::thread::yield_now();
            continue;
        }
        fresh = false;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let steps = (rng % 2000) as usize;
        // SAFETY: read from the persistent and root slots; no safepoint
        // until the one below.
        unsafe {
            if let Some(nd) = nth_node(&heap, head, steps) {
                let y = w.roots()[(rng >> 32) as usize % POOL];
                w.store_ref(nd, 1, y).unwrap();
                stores += 1;
            }
        }
        w.safepoint();
    }
    stores
}

/// [`CYCLES`] cycles over the list; returns every cycle's stats from the third
/// on (the first packs the nodes, the second is the first to remember the
/// prefix's counts, so the third is the first to find clean pages).
fn cycles(
    strategy: Strategy,
    fault_mode: FaultMode,
    keep: bool,
    race: bool,
) -> Option<Vec<CycleStats>> {
    cycles_with(strategy, fault_mode, keep, race, Injection::default())
}

/// [`cycles`] with `injection`.
fn cycles_with(
    strategy: Strategy,
    fault_mode: FaultMode,
    keep: bool,
    race: bool,
    injection: Injection,
) -> Option<Vec<CycleStats>> {
    let heap = heap(strategy, fault_mode, keep, injection)?;
    let (mut m, head) = prepared(&heap, strategy);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = race.then(|| {
        let (heap, stop) = (heap.clone(), stop.clone());
        // After a remark pause: only between it and the final pause, where
        // the barrier alone can flag the pages.
        let phase = match injection.remark_pause {
            true => Phase::Preparing,
            false => Phase::Marking,
        };
        std::thread::spawn(move || racing_writer(heap, head, stop, strategy.is_concurrent(), phase))
    });
    let mut alive = N;
    let mut out = Vec::new();
    let mut young_seen = 0;
    for cycle in 0..CYCLES {
        alive -= mutate(&mut m, cycle);
        // SAFETY: read from the root slot; used before the collection.
        let head_before = unsafe { m.roots()[0].unwrap().addr() };
        let st = m.collect_with(strategy).expect("a collection ran");
        assert_eq!(st.strategy, Some(strategy));
        // SAFETY: read from the root slot after the collection.
        unsafe {
            assert_eq!(
                m.roots()[0].unwrap().addr(),
                head_before,
                "the prefix stays"
            );
            let (nodes, young) = check(m.roots()[0]);
            assert_eq!(nodes, alive);
            young_seen = young_seen.max(young);
        }
        if strategy.is_concurrent() {
            assert_eq!(
                st.prefix_pages + st.prefix_unread + st.kept_pages,
                st.dense_pages,
                "every prefix page not kept was fixed or put back unread once: {st:?}"
            );
            assert!(
                st.kept_pages + st.prefix_unread <= st.prefix_clean,
                "only clean pages are left unread: {st:?}"
            );
        }
        out.push(st);
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = writer {
        let stores = m.blocking(|| w.join().unwrap());
        eprintln!("{strategy:?}: {stores} racing stores");
        assert!(stores > 0, "the writer ran");
    }
    assert!(young_seen > 0, "some nodes held a moving object");
    heap.persistent_free(head);
    eprintln!(
        "{strategy:?}/{fault_mode:?} keep={keep} race={race}: dense/clean/kept per cycle {:?}",
        out.iter()
            .map(|s| (s.dense_pages, s.prefix_clean, s.kept_pages))
            .collect::<Vec<_>>()
    );
    Some(out)
}

/// Without racing stores most prefix pages are clean: the few pages with
/// a death or a new moving reference are fixed, the rest left alone (and,
/// concurrently, kept out of the flip up to the first of them).
fn quiet(strategy: Strategy, fault_mode: FaultMode) {
    let Some(stats) = cycles(strategy, fault_mode, true, false) else {
        return;
    };
    for st in &stats {
        assert!(st.dense_pages >= 150, "a dense prefix: {st:?}");
        assert!(
            st.prefix_clean > 0 && st.prefix_clean < st.dense_pages,
            "clean pages, and the changed ones not: {st:?}"
        );
        match strategy.is_concurrent() {
            true => assert!(
                st.kept_pages > 0 && st.kept_pages <= st.prefix_clean,
                "{st:?}"
            ),
            false => assert_eq!(st.kept_pages, 0),
        }
    }
    // Deaths lower the prefix's end now and then (a page under the
    // threshold); over the run most prefix pages were clean.
    let (dense, clean) = stats.iter().fold((0, 0), |(d, c), st| {
        (d + st.dense_pages, c + st.prefix_clean)
    });
    assert!(
        clean * 3 >= dense * 2,
        "{clean} of {dense} prefix pages clean"
    );
}

#[test]
fn clean_pages_are_left_alone_stop_the_world() {
    quiet(Strategy::StopTheWorld, FaultMode::Sigbus);
}

#[test]
fn clean_pages_are_left_alone_move_sigbus() {
    quiet(Strategy::ConcurrentMove, FaultMode::Sigbus);
}

#[test]
fn clean_pages_are_left_alone_copy_handler_thread() {
    quiet(Strategy::ConcurrentCopy, FaultMode::HandlerThread);
}

/// A writer storing moving objects into prefix nodes while the cycles
/// mark: every store the marker missed is flagged by the barrier, so no
/// page holding one is left alone (the checks and the verifier would
/// find its stale reference).
#[test]
fn stores_while_marking_keep_their_pages_fixed_move() {
    cycles(Strategy::ConcurrentMove, FaultMode::Sigbus, true, true);
}

#[test]
fn stores_while_marking_keep_their_pages_fixed_copy_handler_thread() {
    cycles(
        Strategy::ConcurrentCopy,
        FaultMode::HandlerThread,
        true,
        true,
    );
}

/// The same with a remark pause in every cycle, the writer storing only
/// between it and the final pause (at least 2 ms, `remark_pause`), where
/// the barrier alone flags the pages (the marker is done; the clean pages
/// are found again after the remark pause).
#[test]
fn stores_while_marking_and_after_a_remark_pause_keep_their_pages_fixed() {
    let remark = Injection {
        remark_pause: true,
        ..Default::default()
    };
    let Some(stats) = cycles_with(
        Strategy::ConcurrentMove,
        FaultMode::Sigbus,
        true,
        true,
        remark,
    ) else {
        return;
    };
    for st in &stats {
        assert_eq!(st.remark_pauses, 1, "{st:?}");
        assert!(st.prepare_reused, "{st:?}");
    }
    assert!(
        stats.iter().any(|st| st.prefix_clean > 0),
        "clean pages after remark pauses too"
    );
}

#[test]
fn stores_between_stop_the_world_cycles_keep_their_pages_fixed() {
    cycles(Strategy::StopTheWorld, FaultMode::Sigbus, true, true);
}

/// The option off: every prefix page is fixed, none kept.
#[test]
fn without_the_option_every_prefix_page_is_fixed() {
    for strategy in [Strategy::StopTheWorld, Strategy::ConcurrentMove] {
        let Some(stats) = cycles(strategy, FaultMode::Sigbus, false, false) else {
            continue;
        };
        for st in &stats {
            assert_eq!((st.prefix_clean, st.kept_pages), (0, 0), "{st:?}");
        }
    }
}

/// Clears every node's young slot (between cycles).
fn clear_young(m: &mut MutatorContext) {
    // SAFETY: read from the root slot; `store_ref` reaches no safepoint.
    unsafe {
        let mut cur = m.roots()[0];
        while let Some(nd) = cur {
            if nd.load_ref(1).unwrap().is_some() {
                m.store_ref(nd, 1, None).unwrap();
            }
            cur = nd.load_ref(0).unwrap();
        }
    }
}

/// Stores, while `stop` is unset and only while a cycle marks, objects it
/// allocates right then (black: they do not move in a concurrent cycle
/// that keeps its block) into the young slot of nodes among the first
/// 2,000. Returns the stores made.
fn black_writer(heap: GcHeap, head: usize, stop: Arc<AtomicBool>) -> usize {
    let mut w = heap.attach().unwrap();
    let mut stores = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if marking(&heap) {
            let y = w.alloc(&mover()).unwrap();
            let steps = (stores.wrapping_mul(7919) % 2000) as usize;
            // SAFETY: `y` was just allocated; the nodes are read from the
            // persistent slot; no safepoint until the one below.
            unsafe {
                y.write_u64(0, stores).unwrap();
                y.write_u64(8, check_word(stores)).unwrap();
                if let Some(nd) = nth_node(&heap, head, steps) {
                    w.store_ref(nd, 1, Some(y)).unwrap();
                    stores += 1;
                }
            }
        } else {
            std::thread::yield_now();
        }
        w.safepoint();
    }
    stores as usize
}

/// Full cycles while a writer stores objects allocated during marking
/// into clean prefix nodes, then (`generational`) young cycles, checking
/// every node after each. Such a reference does not move in a concurrent
/// cycle that keeps its black block, but its page must be fixed all the
/// same: with young collections the fixer marks the card of a slot into
/// the young block (a young cycle finds the object only through it), and
/// a cycle whose flip fails (`register_fails_every`) compacts the block
/// stop-the-world.
fn black_stores(strategy: Strategy, generational: bool, register_fails_every: u64) {
    let Some(heap) = heap_with(HeapConfig {
        strategy,
        generational,
        injection: Injection {
            register_fails_every,
            ..Injection::default()
        },
        ..HeapConfig::default()
    }) else {
        return;
    };
    let (mut m, head) = prepared(&heap, strategy);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || black_writer(heap, head, stop))
    };
    let (mut young_seen, mut fell_back, mut young_cycles) = (0, 0, 0);
    for _ in 0..24 {
        // No node refers to an older mover when the cycle starts: the
        // only moving-space references its writer's nodes get are the
        // black objects stored while it marks (else the marker would find
        // the page holding an older one, and fix it anyway).
        clear_young(&mut m);
        let st = m.collect_with(strategy).expect("a collection ran");
        fell_back += usize::from(st.strategy == Some(Strategy::StopTheWorld));
        // SAFETY: read from the root slot after the collection.
        let (nodes, young) = unsafe { check(m.roots()[0]) };
        assert_eq!(nodes, N);
        young_seen = young_seen.max(young);
        if generational {
            // Live young objects above the block: a young cycle that lost
            // a black object would slide these over it.
            // SAFETY: the array is read back from its root slot after each
            // allocation.
            unsafe {
                let a = m.alloc(&Layout::ref_array(0, 512).unwrap()).unwrap();
                m.roots()[1] = Some(a);
                for i in 0..512 {
                    let y = m.alloc(&mover()).unwrap();
                    y.write_u64(0, i as u64).unwrap();
                    y.write_u64(8, check_word(i as u64)).unwrap();
                    let a = m.roots()[1].unwrap();
                    m.store_ref(a, i, Some(y)).unwrap();
                }
            }
            for _ in 0..2 {
                let st = m.collect_young().expect("a collection ran");
                young_cycles += usize::from(st.young);
                // SAFETY: as above.
                let (nodes, _) = unsafe { check(m.roots()[0]) };
                assert_eq!(nodes, N);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let stores = m.blocking(|| writer.join().unwrap());
    heap.persistent_free(head);
    eprintln!(
        "{strategy:?} generational={generational} register_fails_every={register_fails_every}: \
         {stores} stores while marking, {young_seen} nodes holding one, {fell_back} cycles \
         finished stop-the-world, {young_cycles} young cycles"
    );
    assert!(
        stores > 0 && young_seen > 0,
        "the writer stored while marking"
    );
    if register_fails_every > 0 {
        assert!(fell_back > 0, "some flips failed");
    }
    if generational {
        assert!(young_cycles > 0, "young cycles ran");
    }
}

#[test]
fn black_objects_stored_while_marking_keep_their_cards_for_young_cycles() {
    black_stores(Strategy::ConcurrentMove, true, 0);
}

#[test]
fn black_objects_stored_while_marking_survive_a_failed_flip() {
    black_stores(Strategy::ConcurrentMove, false, 2);
}

/// With huge pages the kept run is a whole number of them (512 pages):
/// the flip's `mremap` of the rest would otherwise split the huge page
/// the boundary falls in. A list of 160,000 nodes (~1,560 prefix pages,
/// all clean from the third cycle) and nothing else.
#[test]
fn with_huge_pages_the_kept_run_is_whole_huge_pages() {
    const NODES: u64 = 160_000;
    let Some(heap) = heap_with(HeapConfig {
        strategy: Strategy::ConcurrentMove,
        fault_mode: FaultMode::Sigbus,
        huge_pages: true,
        ..HeapConfig::default()
    }) else {
        return;
    };
    let mut m = heap.attach().unwrap();
    // SAFETY: each node is used right after its allocation, the list head
    // read from the root slot; no collection runs while it is built
    // (`min_free` is the capacity).
    unsafe {
        m.roots().resize(1, None);
        for id in 0..NODES {
            let nd = m.alloc(&node()).unwrap();
            nd.write_u64(0, id).unwrap();
            let next = m.roots()[0];
            m.store_ref(nd, 0, next).unwrap();
            m.roots()[0] = Some(nd);
        }
    }
    let mut kept = Vec::new();
    for cycle in 0..5 {
        let st = m
            .collect_with(Strategy::ConcurrentMove)
            .expect("a collection ran");
        // SAFETY: read from the root slot after the collection; no
        // safepoint during the walk.
        unsafe {
            let mut cur = m.roots()[0];
            let mut want = NODES;
            while let Some(nd) = cur {
                want -= 1;
                assert_eq!(nd.read_u64(0).unwrap(), want, "cycle {cycle}");
                cur = nd.load_ref(0).unwrap();
            }
            assert_eq!(want, 0, "the whole list");
        }
        assert_eq!(st.kept_pages % 512, 0, "{st:?}");
        assert!(st.kept_pages <= st.prefix_clean, "{st:?}");
        assert_eq!(
            st.prefix_pages + st.prefix_unread + st.kept_pages,
            st.dense_pages,
            "{st:?}"
        );
        kept.push((st.dense_pages, st.prefix_clean, st.kept_pages));
    }
    eprintln!("dense/clean/kept per cycle {kept:?}");
    assert!(
        kept.iter().any(|&(_, clean, k)| k >= 512 && clean > k),
        "a kept run rounded down to whole huge pages: {kept:?}"
    );
}
