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
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract). Rule followed: an `ObjRef` held in a local is only used until
//! the thread's next `alloc`/`collect`/`safepoint`/wait; anything that must
//! survive one lives in a root slot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use movegc_gc::concurrent::{FaultMode, Injection};
use movegc_gc::{GcHeap, HeapConfig, Layout, MutatorContext, ObjRef, PauseKind, Strategy};

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
    let heap = GcHeap::new(HeapConfig {
        capacity: 128 << 20,
        min_free: 128 << 20,
        strategy,
        fault_mode,
        gc_threads: 2,
        verify: true,
        injection: Injection {
            remark_pause: true,
            ..Default::default()
        },
        ..HeapConfig::default()
    })
    .unwrap();
    if heap.strategy() == Strategy::StopTheWorld {
        eprintln!("skipped: userfaultfd unavailable");
        return;
    }
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
        let kinds: Vec<PauseKind> = st.pauses.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [PauseKind::Initial, PauseKind::Remark, PauseKind::Final],
            "{st:?}"
        );
        assert_eq!(st.remark_pauses, 1, "{st:?}");
        assert!(
            st.prepare_reused,
            "the final pause prepared nothing: {st:?}"
        );
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

#[test]
fn objects_allocated_between_the_remark_and_final_pauses_stay_move_sigbus() {
    cycles_after_a_remark_pause(Strategy::ConcurrentMove, FaultMode::Sigbus);
}

#[test]
fn objects_allocated_between_the_remark_and_final_pauses_stay_copy_handler_thread() {
    cycles_after_a_remark_pause(Strategy::ConcurrentCopy, FaultMode::HandlerThread);
}
