//! A heap survives `fork()`: a zygote-style parent builds a heap, forks,
//! and both processes keep collecting it (each with its own collector
//! threads and its own userfaultfd), with every object checked after every
//! cycle. The child must not hang (the parent's worker threads do not exist
//! in it) and must not use the parent's userfaultfd (which acts on the
//! parent's memory). In its own test binary: a forked child of a process
//! with many test threads could inherit locks they hold.
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract). Rule followed: an `ObjRef` held in a local is only used until
//! the thread's next `alloc`/`collect`/`safepoint`/wait (objects may move
//! then); anything that must survive one lives in `m.roots()`.
//!
//! The second test checks the kernel's dirty tracking across `fork()`
//! (`HeapConfig::remembered_set`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use movegc_gc::concurrent::FaultMode;
use movegc_gc::{GcHeap, HeapConfig, Layout, MutatorContext, ObjRef, Strategy};

const LISTS: usize = 64;

/// The tests fork: one at a time, so no child inherits a lock another
/// test's thread holds.
static FORKING: Mutex<()> = Mutex::new(());
const LEN: u64 = 2000;

fn node() -> Layout {
    Layout::record(3, 1, 16).unwrap()
}

fn check(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// `LISTS` interleaved lists plus as much garbage, so collections move
/// objects. The table is root slot 0.
fn build(m: &mut MutatorContext) {
    let table = m.alloc(&Layout::ref_array(1, LISTS).unwrap()).unwrap();
    // SAFETY: `table` was just allocated.
    unsafe { m.roots().push(Some(table)) };
    for i in 0..LEN {
        for l in 0..LISTS {
            let id = (l as u64) << 32 | i;
            let n = m.alloc(&node()).unwrap();
            // SAFETY: `n` was just allocated and `table` is read from its
            // root slot; both are used before the next allocation.
            unsafe {
                n.write_u64(0, id).unwrap();
                n.write_u64(8, check(id)).unwrap();
                let table = m.roots()[0].unwrap();
                m.store_ref(n, 0, table.load_ref(l).unwrap()).unwrap();
                m.store_ref(table, l, Some(n)).unwrap();
            }
            m.alloc(&node()).unwrap(); // garbage
        }
    }
}

/// Walks every list; panics on any lost or corrupt node.
fn verify(m: &mut MutatorContext) {
    // SAFETY (both blocks): the walk starts at a root slot and neither
    // allocates nor reaches a safepoint.
    let table = unsafe { m.roots()[0].unwrap() };
    for l in 0..LISTS {
        let mut cur: Option<ObjRef> = unsafe { table.load_ref(l).unwrap() };
        for i in (0..LEN).rev() {
            let n = cur.unwrap_or_else(|| panic!("list {l} ends early at {i}"));
            let id = (l as u64) << 32 | i;
            // SAFETY: as above.
            unsafe {
                assert_eq!(n.read_u64(0).unwrap(), id);
                assert_eq!(n.read_u64(8).unwrap(), check(id));
                cur = n.load_ref(0).unwrap();
            }
        }
        assert!(cur.is_none());
    }
}

/// Collects with `strategy` three times, verifying after each, and returns
/// the strategies the cycles used and the pages they installed.
fn cycles(m: &mut MutatorContext, strategy: Strategy) -> (Vec<Strategy>, usize) {
    let mut used = Vec::new();
    let mut pages = 0;
    for _ in 0..3 {
        for _ in 0..20_000 {
            m.alloc(&node()).unwrap(); // fresh garbage between cycles
        }
        let st = m.collect_with(strategy).expect("a collection ran");
        used.push(st.strategy.unwrap());
        pages += st.pages_moved + st.pages_copied;
        verify(m);
    }
    (used, pages)
}

/// In a forked child: another thread collects while this one (the thread
/// that forked, whose id changed in the fork) reads the lists; its faults
/// must still be charged to its mutator. True without userfaultfd.
fn forked_reader_is_charged(heap: &GcHeap, m: &mut MutatorContext) -> bool {
    if !heap.strategy().is_concurrent() {
        return true;
    }
    let charged = |h: &GcHeap| {
        h.stats()
            .threads
            .iter()
            .any(|t| t.name != "child-collector" && t.faults.count > 0)
    };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (h, done) = (heap.clone(), done.clone());
        std::thread::spawn(move || {
            let mut c = h.attach_named("child-collector").unwrap();
            for _ in 0..100 {
                c.collect_with(Strategy::ConcurrentMove);
                if charged(&h) {
                    break;
                }
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        })
    };
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        verify(m);
        m.safepoint();
    }
    collector.join().unwrap();
    charged(heap)
}

#[test]
fn parent_and_child_both_collect_after_fork() {
    let _one = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let uffd = movegc_gc::uffd::Uffd::open(&movegc_gc::uffd::OpenOptions::new()).is_ok();
    let heap = GcHeap::new(HeapConfig {
        capacity: 64 << 20,
        min_free: 64 << 20,
        strategy: Strategy::ConcurrentMove,
        fault_mode: FaultMode::Sigbus,
        gc_threads: 2,
        verify: true,
        ..Default::default()
    })
    .unwrap();
    let mut m = heap.attach().unwrap();
    build(&mut m);
    // Use the worker pool (and the descriptor) before forking.
    m.collect().expect("a collection ran");
    verify(&mut m);
    m.wait_idle();
    let want = heap.strategy();
    if !uffd {
        eprintln!("userfaultfd unavailable: both processes compact stop-the-world");
    }

    // SAFETY: fork in a process whose other threads (the collector's
    // workers) are idle; the child runs Rust code (allocation, threads),
    // which is fine after fork with glibc's fork handlers for malloc, and
    // leaves with _exit so it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert!(
                forked_reader_is_charged(&heap, &mut m),
                "the forked thread's faults were not charged to its mutator"
            );
            let (used, pages) = cycles(&mut m, Strategy::ConcurrentMove);
            assert!(used.iter().all(|&s| s == want), "child used {used:?}");
            assert!(pages > 0 || !want.is_concurrent());
        }))
        .is_ok();
        // SAFETY: leaving the child without running the harness's code.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }

    // The parent collects while the child is alive (its pages are shared).
    let (used, pages) = cycles(&mut m, Strategy::ConcurrentMove);
    assert!(used.iter().all(|&s| s == want), "parent used {used:?}");
    assert!(pages > 0 || !want.is_concurrent());

    wait_for_child(pid, "the child's collections");
}

/// Stores a fresh node (id `id`) into slot 0 of the holder array (root
/// slot 1), with garbage around it, and returns the young cycle that
/// follows.
fn store_young_and_collect(m: &mut MutatorContext, id: u64) -> movegc_gc::CycleStats {
    for _ in 0..20_000 {
        m.alloc(&node()).unwrap();
    }
    let n = m.alloc(&node()).unwrap();
    // SAFETY: `n` was just allocated and the holder is read from its root
    // slot; both are used before the next allocation.
    unsafe {
        n.write_u64(0, id).unwrap();
        n.write_u64(8, check(id)).unwrap();
        let holder = m.roots()[1].unwrap();
        m.store_ref(holder, 0, Some(n)).unwrap();
    }
    for _ in 0..20_000 {
        m.alloc(&node()).unwrap();
    }
    let st = m.collect_young().expect("a collection ran");
    // SAFETY: read from the root slot, no safepoint in between.
    unsafe {
        let holder = m.roots()[1].unwrap();
        let n = holder
            .load_ref(0)
            .unwrap()
            .expect("the young node was lost");
        assert_eq!(n.read_u64(0).unwrap(), id);
        assert_eq!(n.read_u64(8).unwrap(), check(id));
    }
    verify(m);
    st
}

/// Kernel dirty tracking across `fork()`: the child inherits no
/// write-protection (its heap is not registered with any userfaultfd), so
/// its first young cycle must take every old page as written; once that
/// cycle has protected the old region with the child's own descriptor,
/// the next one reports only what was written. The parent's tracking is
/// unaffected.
#[test]
fn a_forked_child_takes_every_old_page_as_written_until_it_protects_its_own() {
    let _one = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let wp = movegc_gc::uffd::Uffd::open(
        &movegc_gc::uffd::OpenOptions::new().features(movegc_gc::uffd::Features::WP_ASYNC),
    )
    .is_ok_and(|u| u.features().contains(movegc_gc::uffd::Features::WP_ASYNC));
    if !wp {
        eprintln!("skipped: userfaultfd with WP_ASYNC unavailable");
        return;
    }
    let heap = GcHeap::new(HeapConfig {
        capacity: 64 << 20,
        min_free: 64 << 20,
        strategy: Strategy::ConcurrentMove,
        generational: true,
        remembered_set: movegc_gc::RememberedSet::WriteProtect,
        gc_threads: 2,
        verify: true,
        ..Default::default()
    })
    .unwrap();
    let mut m = heap.attach().unwrap();
    build(&mut m);
    let holder = m.alloc(&Layout::ref_array(1, 8).unwrap()).unwrap();
    // SAFETY: `holder` was just allocated.
    unsafe { m.roots().push(Some(holder)) };
    m.collect().expect("a full cycle: everything is old");
    let st = store_young_and_collect(&mut m, 1);
    assert_eq!(
        st.remembered_set,
        Some(movegc_gc::RememberedSet::WriteProtect)
    );
    assert!(
        st.written_pages >= 1 && st.written_pages < 8 && !st.written_assumed,
        "armed: {} pages written",
        st.written_pages
    );
    m.wait_idle();

    // SAFETY: as in `parent_and_child_both_collect_after_fork`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let first = store_young_and_collect(&mut m, 2);
            let old_pages = first.old_bytes.div_ceil(4096);
            assert!(
                first.written_assumed,
                "the child scanned a range it never protected"
            );
            assert!(
                first.written_pages >= old_pages,
                "child's first young cycle: {} of {old_pages} old pages taken as written",
                first.written_pages
            );
            m.wait_idle();
            let second = store_young_and_collect(&mut m, 3);
            assert_eq!(
                second.remembered_set,
                Some(movegc_gc::RememberedSet::WriteProtect),
                "the child's tracking fell back to cards"
            );
            assert!(
                second.written_pages < 8,
                "child armed: {} pages written",
                second.written_pages
            );
        }))
        .is_ok();
        // SAFETY: leaving the child without running the harness's code.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let st = store_young_and_collect(&mut m, 4);
    assert!(
        st.written_pages < 8,
        "parent after fork: {} pages written",
        st.written_pages
    );
    wait_for_child(pid, "the child's young cycles");
}

/// Waits (up to 2 minutes, then kills it) for forked child `pid` and
/// asserts that it exited with status 0; `what` names what it ran.
fn wait_for_child(pid: libc::pid_t, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the forked child did not finish its collections (hung)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{what} failed (status {status:#x})"
    );
}
