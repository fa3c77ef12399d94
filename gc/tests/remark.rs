//! The remark pause (`PauseKind::Remark`): a concurrent cycle whose final
//! pause marks something new after the forwarding was prepared while
//! mutators ran ends that pause once marking is complete, prepares the
//! forwarding again while they run, and flips in a second, final pause.
//! Between the two, mutators run as while marking: what they allocate is
//! black (large objects born marked, small ones in the black block) and
//! the barrier still records their stores. `Injection::remark_pause` makes
//! every cycle take that path; a thread allocating large reference arrays
//! filled with small nodes, and checking each before it drops it, runs
//! throughout with the verifier on. A large object allocated between the
//! pauses and not born marked would be freed while referenced.
//!
//! A second test makes the remark really mark something, with no
//! injection on that path: a thread cuts a chain off its only holder while
//! the marker has traced nothing yet (`Injection::delay_marking`) and
//! keeps it in a root slot the final pause does not scan again; the cut
//! logged it in the thread's own SATB buffer, which only the pause
//! drains. The forwarding prepared while mutators ran lacks the chain,
//! so a final pause that used it would leave the chain's references
//! stale (the verifier and the chain's check would fail).
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract). Rule followed: an `ObjRef` held in a local is only used until
//! the thread's next `alloc`/`collect`/`safepoint`/wait; anything that must
//! survive one lives in a root slot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use movegc_gc::concurrent::{FaultMode, Injection};
use movegc_gc::{
    CycleStats, GcHeap, HeapConfig, Layout, MutatorContext, ObjRef, PauseKind, Phase, Strategy,
};

/// Slots of each reference array: 64 KiB, a large object.
const ARRAY: usize = 8192;
/// Nodes stored in each array (every `ARRAY / FILL`-th slot).
const FILL: usize = 64;
/// Arrays each thread keeps (root slots `0..RING`; slot `RING` is scratch).
const RING: usize = 4;

fn node() -> Layout {
    Layout::record(1, 0, 16).unwrap()
}

fn array() -> Layout {
    Layout::ref_array(2, ARRAY).unwrap()
}

fn check_word(v: u64) -> u64 {
    v.rotate_left(17) ^ 0x7e3a_c0de_5eed_f00d
}

/// A heap of `cfg` that collects only when asked (`min_free` is the
/// capacity), two collector threads, the verifier on; `None` (and a line
/// saying so) without userfaultfd.
fn heap(cfg: HeapConfig) -> Option<GcHeap> {
    let heap = GcHeap::new(HeapConfig {
        min_free: cfg.capacity,
        gc_threads: 2,
        verify: true,
        ..cfg
    })
    .unwrap();
    if heap.strategy() == Strategy::StopTheWorld {
        eprintln!("skipped: userfaultfd unavailable");
        return None;
    }
    Some(heap)
}

/// A concurrent cycle that had a remark pause: its pauses are the initial,
/// the remark and the final one, and the final pause used the forwarding
/// prepared after the remark pause instead of preparing its own.
fn assert_after_a_remark_pause(st: &CycleStats) {
    let kinds: Vec<PauseKind> = st.pauses.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [PauseKind::Initial, PauseKind::Remark, PauseKind::Final],
        "{st:?}"
    );
    assert_eq!(st.remark_pauses, 1, "{st:?}");
    assert!(st.prepare_reused, "the final pause prepared again: {st:?}");
}

/// Checks one array the writer built: `FILL` nodes of one array number,
/// in order, each with its check word.
///
/// # Safety
/// `a` must be valid until this returns (no safepoint meanwhile).
unsafe fn check_array(a: ObjRef) {
    let mut k = None;
    for i in 0..FILL {
        let nd = a
            .load_ref(i * (ARRAY / FILL))
            .unwrap()
            .unwrap_or_else(|| panic!("node {i} of an array is gone"));
        let v = nd.read_u64(0).unwrap();
        assert_eq!(nd.read_u64(8).unwrap(), check_word(v), "node {i}");
        assert_eq!(v & 0xffff, i as u64, "node {i} in its place");
        assert_eq!(*k.get_or_insert(v >> 16), v >> 16, "one array's nodes");
    }
}

/// Until `stop`: builds an array of nodes, stores it in the ring over the
/// oldest (checked first), counts it in `made`. Checks the whole ring at
/// the end.
fn writer(heap: GcHeap, stop: Arc<AtomicBool>, made: Arc<AtomicUsize>) {
    let mut m: MutatorContext = heap.attach().unwrap();
    let mut k = 0u64;
    // SAFETY: every `ObjRef` is used before this thread's next allocation
    // or safepoint, or read back from a root slot after it.
    unsafe {
        m.roots().resize(RING + 1, None);
        while !stop.load(Ordering::Relaxed) {
            let slot = (k % RING as u64) as usize;
            if let Some(a) = m.roots()[slot] {
                check_array(a);
            }
            let a = m.alloc(&array()).unwrap();
            m.roots()[RING] = Some(a);
            for i in 0..FILL {
                let nd = m.alloc(&node()).unwrap();
                let v = k << 16 | i as u64;
                nd.write_u64(0, v).unwrap();
                nd.write_u64(8, check_word(v)).unwrap();
                let a = m.roots()[RING].unwrap();
                m.store_ref(a, i * (ARRAY / FILL), Some(nd)).unwrap();
            }
            m.roots()[slot] = m.roots()[RING].take();
            k += 1;
            made.fetch_add(1, Ordering::Relaxed);
            m.safepoint();
        }
        for slot in 0..RING {
            if let Some(a) = m.roots()[slot] {
                check_array(a);
            }
        }
    }
}

/// Twelve concurrent cycles, each with a remark pause, while two writers
/// run; every cycle's pauses, its reuse of the forwarding prepared after
/// the remark pause, and the writers' checks.
fn cycles_after_a_remark_pause(strategy: Strategy, fault_mode: FaultMode) {
    let Some(heap) = heap(HeapConfig {
        capacity: 128 << 20,
        strategy,
        fault_mode,
        injection: Injection {
            remark_pause: true,
            ..Default::default()
        },
        ..HeapConfig::default()
    }) else {
        return;
    };
    let (stop, made) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (heap, stop, made) = (heap.clone(), stop.clone(), made.clone());
            std::thread::spawn(move || writer(heap, stop, made))
        })
        .collect();
    let mut m = heap.attach().unwrap();
    let mut large_live = 0;
    for _ in 0..12 {
        // Arrays built since the last cycle (waiting in `blocking` lets
        // the writers' safepoints through).
        let before = made.load(Ordering::Relaxed);
        m.blocking(|| {
            while made.load(Ordering::Relaxed) < before + 2
                && !writers.iter().any(|w| w.is_finished())
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let st = m.collect_with(strategy).expect("a collection ran");
        assert_eq!(st.strategy, Some(strategy), "{st:?}");
        assert_after_a_remark_pause(&st);
        large_live = large_live.max(st.large_objects_live);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        m.blocking(|| w.join().expect("a writer's check failed"));
    }
    assert!(large_live >= RING, "the arrays were live: {large_live}");
    eprintln!(
        "{strategy:?}/{fault_mode:?}: {} arrays",
        made.load(Ordering::Relaxed)
    );
}

/// Nodes of the chain the cutter hides from the marker.
const CHAIN: usize = 200;

/// The chain's check word for node `i` of cycle `k`.
fn chain_word(k: u64, i: usize) -> u64 {
    check_word(k << 20 | i as u64)
}

/// Builds a new chain of `CHAIN` nodes (garbage between them, so they
/// move) and hangs it under the holder in root slot 0 (link 0).
///
/// # Safety
/// The holder is read from root slot 0 after the allocations.
unsafe fn new_chain(m: &mut MutatorContext, k: u64) {
    m.roots()[2] = None;
    for i in (0..CHAIN).rev() {
        let _garbage = m.alloc(&node()).unwrap();
        let nd = m.alloc(&link()).unwrap();
        nd.write_u64(0, chain_word(k, i)).unwrap();
        let next = m.roots()[2];
        m.store_ref(nd, 0, next).unwrap();
        m.roots()[2] = Some(nd);
    }
    let holder = m.roots()[0].unwrap();
    let head = m.roots()[2].take();
    m.store_ref(holder, 0, head).unwrap();
}

/// Checks a chain built by [`new_chain`] for cycle `k`.
///
/// # Safety
/// No safepoint while it runs.
unsafe fn check_chain(head: Option<ObjRef>, k: u64) {
    let mut cur = head;
    for i in 0..CHAIN {
        let nd = cur.unwrap_or_else(|| panic!("chain {k} ends at {i}"));
        assert_eq!(
            nd.read_u64(0).unwrap(),
            chain_word(k, i),
            "chain {k} node {i}"
        );
        cur = nd.load_ref(0).unwrap();
    }
    assert!(cur.is_none(), "chain {k} is {CHAIN} long");
}

/// A node with one link and a word.
fn link() -> Layout {
    Layout::record(3, 1, 8).unwrap()
}

/// The remark of each cycle really marks something: a chain cut off its
/// holder before the marker traced anything, held only in a root slot
/// the final pause does not rescan and in the cutting thread's own SATB
/// buffer. Every cycle takes a remark pause and its final pause uses the
/// forwarding prepared again after it (without it, the chain's slots
/// would be rewritten by a forwarding that does not know its objects).
/// With `young`, young collections: every cycle but the first is young
/// (the holder is old then, the chains young).
fn a_remark_that_marks(strategy: Strategy, fault_mode: FaultMode, young: bool) {
    let Some(heap) = heap(HeapConfig {
        capacity: 64 << 20,
        strategy,
        fault_mode,
        generational: young,
        injection: Injection {
            delay_marking: true,
            ..Default::default()
        },
        ..HeapConfig::default()
    }) else {
        return;
    };
    const CYCLES: u64 = 8;
    // Cycles the cutter has cut in, and whether the chain is back under
    // its holder for the next one.
    let (cut, ready, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let cutter = {
        let (heap, cut, ready, stop) = (heap.clone(), cut.clone(), ready.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut w = heap.attach().unwrap();
            // SAFETY: `ObjRef`s are read from root slots and used before
            // this thread's next allocation or safepoint.
            unsafe {
                w.roots().resize(3, None);
                let holder = w.alloc(&link()).unwrap();
                w.roots()[0] = Some(holder);
                let mut k = 0;
                new_chain(&mut w, k);
                ready.store(true, Ordering::Release);
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    match heap.stats().in_progress {
                        Some(p) if p.phase == Phase::Marking && p.cycle != last => {
                            // Cut: the chain is reachable from the snapshot
                            // through the holder alone, now only from
                            // root slot 1 (not scanned again) and this
                            // thread's SATB buffer.
                            last = p.cycle;
                            let holder = w.roots()[0].unwrap();
                            w.roots()[1] = holder.load_ref(0).unwrap();
                            w.store_ref(holder, 0, None).unwrap();
                            cut.fetch_add(1, Ordering::Release);
                        }
                        None if w.roots()[1].is_some() => {
                            // The cycle is over: check the chain, hang a
                            // new one (the old one becomes garbage).
                            check_chain(w.roots()[1].take(), k);
                            k += 1;
                            new_chain(&mut w, k);
                            ready.store(true, Ordering::Release);
                        }
                        _ => {}
                    }
                    w.safepoint();
                    std::thread::yield_now();
                }
            }
        })
    };
    let mut m = heap.attach().unwrap();
    let mut young_cycles = 0;
    for i in 0..CYCLES {
        m.blocking(|| {
            while !ready.swap(false, Ordering::Acquire) {
                assert!(!cutter.is_finished(), "the cutter failed");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let st = match young && i > 0 {
            true => m.collect_young(),
            false => m.collect_with(strategy),
        }
        .expect("a collection ran");
        // A young collection may still run full (its old region mostly
        // dirty: the holder's page is most of it).
        young_cycles += usize::from(st.young);
        assert_eq!(cut.load(Ordering::Acquire) as u64, i + 1, "the cutter cut");
        assert_eq!(st.strategy, Some(strategy), "{st:?}");
        // The remark marked the chain.
        assert_after_a_remark_pause(&st);
    }
    m.blocking(|| {
        while !ready.load(Ordering::Acquire) && !cutter.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
    stop.store(true, Ordering::Relaxed);
    m.blocking(|| cutter.join().expect("a chain read back wrong"));
    assert_eq!(young_cycles > 0, young, "{young_cycles} young cycles");
}

#[test]
fn a_remark_that_marks_prepares_again_outside_the_pause_move_sigbus() {
    a_remark_that_marks(Strategy::ConcurrentMove, FaultMode::Sigbus, false);
}

#[test]
fn a_remark_that_marks_in_young_cycles() {
    a_remark_that_marks(Strategy::ConcurrentMove, FaultMode::Sigbus, true);
}

#[test]
fn a_remark_that_marks_prepares_again_outside_the_pause_copy_handler_thread() {
    a_remark_that_marks(Strategy::ConcurrentCopy, FaultMode::HandlerThread, false);
}

#[test]
fn objects_allocated_between_the_remark_and_final_pauses_stay_move_sigbus() {
    cycles_after_a_remark_pause(Strategy::ConcurrentMove, FaultMode::Sigbus);
}

#[test]
fn objects_allocated_between_the_remark_and_final_pauses_stay_copy_handler_thread() {
    cycles_after_a_remark_pause(Strategy::ConcurrentCopy, FaultMode::HandlerThread);
}
