//! Concurrent compaction under load: several mutators mutate a shared
//! linked graph with per-node checksums while collections flip, fault and
//! compact concurrently, for each install mode and fault mode; then the same
//! with injected EBUSY/EAGAIN/EEXIST and with a forked child alive. The
//! verifier runs after every cycle (`collect()` waits for the cycle and
//! verifies). Tests skip, saying why, where userfaultfd is unavailable.
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract). Rule followed throughout: an `ObjRef` held in a local is only
//! used until the thread's next `alloc`/`collect`/`safepoint`/wait (objects
//! may move then); anything that must survive one lives in a root slot or a
//! persistent slot. Every reference store goes through the mutator
//! (`MutatorContext::store_ref`), so the SATB barrier under test runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use movegc_gc::concurrent::{FaultMode, Injection};
use movegc_gc::{CycleStats, GcHeap, HeapConfig, Layout, ObjRef, PauseKind, Strategy};

mod common;
use common::{checksum, node_layout, SwapArrays, Swapper, NODE};

const SLOTS_PER_THREAD: usize = 32;

fn uffd_ok() -> bool {
    match movegc_gc::uffd::Uffd::open(&movegc_gc::uffd::OpenOptions::new()) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: userfaultfd unavailable: {e}");
            false
        }
    }
}

fn make_list(m: &mut movegc_gc::MutatorContext, slot: usize, len: usize, base: u64) {
    // Build back to front; the list head lives in a root slot while building.
    // SAFETY: a null slot.
    let r = unsafe {
        let r = m.roots().len();
        m.roots().push(None);
        r
    };
    for i in (0..len as u64).rev() {
        let n = m.alloc(&node_layout()).unwrap();
        let id = base + i;
        // SAFETY: `n` was just allocated and the head read from its root
        // slot; `n` then lives in the root slot.
        unsafe {
            n.write_u64(0, id).unwrap();
            n.write_u64(8, i * 3).unwrap();
            n.write_u64(16, checksum(id, i * 3)).unwrap();
            let head = m.roots()[r];
            m.store_ref(n, 0, head).unwrap();
            m.roots()[r] = Some(n);
        }
    }
    // The table may have moved during allocation: load it from its root.
    // SAFETY: both read from root slots just now, no allocation since.
    unsafe {
        let head = m.roots()[r];
        let table = m.roots()[0].unwrap();
        m.store_ref(table, slot, head).unwrap();
        m.roots().truncate(r);
    }
}

/// # Safety
/// `head` is current and the caller a running mutator of its heap; the
/// check reaches no safepoint, so every node it loads is current too.
unsafe fn check_list(head: Option<ObjRef>, len: usize, base: u64) {
    let mut cur = head;
    for i in 0..len as u64 {
        let n = cur.unwrap_or_else(|| panic!("list {base} ends at {i} of {len}"));
        // SAFETY: the caller's contract.
        unsafe {
            assert_eq!(n.header().tag(), NODE);
            let (id, v, c) = (
                n.read_u64(0).unwrap(),
                n.read_u64(8).unwrap(),
                n.read_u64(16).unwrap(),
            );
            assert_eq!(id, base + i, "node id");
            assert_eq!(c, checksum(id, v), "checksum of node {id}");
            cur = n.load_ref(0).unwrap();
        }
    }
    assert!(cur.is_none(), "list {base} longer than {len}");
}

struct Run {
    cycles: Vec<CycleStats>,
}

fn stress(strategy: Strategy, fault_mode: FaultMode, injection: Injection, cycles: usize) -> Run {
    let threads = 4;
    let heap = GcHeap::new(HeapConfig {
        capacity: 48 << 20,
        strategy,
        fault_mode,
        injection,
        verify: true,
        gc_threads: 2,
        min_free: 8 << 20,
        // Every run by MOVE in MOVE mode, the allocation region's fault
        // fills included: the stress exercises the MOVE paths and their
        // injected errors wherever they can occur.
        min_move_run: 1,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(heap.strategy(), strategy, "no fallback expected here");
    // The shared table: one slot per (thread, list).
    let table_id = {
        let mut m = heap.attach().unwrap();
        let t = m
            .alloc(&Layout::ref_array(1, threads * SLOTS_PER_THREAD).unwrap())
            .unwrap();
        // SAFETY: `t` was just allocated.
        unsafe { heap.persistent_new(Some(t)) }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads));
    let done_cycles = Arc::new(AtomicUsize::new(0));
    let stats = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (heap, stop, start, done_cycles, stats) = (
                heap.clone(),
                stop.clone(),
                start.clone(),
                done_cycles.clone(),
                stats.clone(),
            );
            std::thread::spawn(move || {
                let mut m = heap.attach().unwrap();
                // SAFETY: just read from the persistent slot.
                unsafe { m.roots().push(heap.persistent_get(table_id)) };
                let mut lens = [0usize; SLOTS_PER_THREAD];
                let mut bases = [0u64; SLOTS_PER_THREAD];
                let mut rng = 0x1234_5678_9abc_def0u64 ^ (t as u64 + 1);
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                start.wait();
                let mut iter = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    iter += 1;
                    let s = (next() as usize) % SLOTS_PER_THREAD;
                    let slot = t * SLOTS_PER_THREAD + s;
                    let len = 1 + (next() as usize) % 400;
                    let base = (t as u64) << 48 | iter << 8;
                    make_list(&mut m, slot, len, base);
                    lens[s] = len;
                    bases[s] = base;
                    // Garbage, so pages fragment.
                    for _ in 0..(next() % 16) {
                        m.alloc(&Layout::byte_array(0, 40 + (next() % 80) as usize).unwrap())
                            .unwrap();
                    }
                    // Read a random other list (touches pages: faults during cycles).
                    let other = (next() as usize) % (threads * SLOTS_PER_THREAD);
                    let s2 = (next() as usize) % SLOTS_PER_THREAD;
                    // SAFETY: `table` is read from its root slot and both
                    // walks end before the next collection or safepoint.
                    unsafe {
                        let table = m.roots()[0].unwrap();
                        let mut cur = table.load_ref(other).unwrap();
                        while let Some(n) = cur {
                            assert_eq!(n.header().tag(), NODE);
                            cur = n.load_ref(0).unwrap();
                        }
                        // Check one of our own lists completely.
                        if lens[s2] > 0 {
                            check_list(
                                table.load_ref(t * SLOTS_PER_THREAD + s2).unwrap(),
                                lens[s2],
                                bases[s2],
                            );
                        }
                    }
                    if t == 0 && iter % 8 == 0 {
                        if let Some(st) = m.collect() {
                            stats.lock().unwrap().push(st);
                            if done_cycles.fetch_add(1, Ordering::Relaxed) + 1 >= cycles {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    m.safepoint();
                }
                // Final check of everything this thread owns.
                // SAFETY: `table` is read from its root slot; the checks
                // reach no safepoint.
                unsafe {
                    let table = m.roots()[0].unwrap();
                    for s in 0..SLOTS_PER_THREAD {
                        if lens[s] > 0 {
                            check_list(
                                table.load_ref(t * SLOTS_PER_THREAD + s).unwrap(),
                                lens[s],
                                bases[s],
                            );
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    heap.wait_idle()
        .expect("this thread's mutator is gone (dropped after the table)");
    heap.persistent_free(table_id);
    let cycles = std::mem::take(&mut *stats.lock().unwrap());
    Run { cycles }
}

fn sum(run: &Run, f: impl Fn(&CycleStats) -> usize) -> usize {
    run.cycles.iter().map(f).sum()
}

fn check_run(run: &Run, strategy: Strategy, cycles: usize) {
    assert!(run.cycles.len() >= cycles, "{} cycles", run.cycles.len());
    for c in &run.cycles {
        assert_eq!(c.strategy, Some(strategy));
        if strategy.is_concurrent() {
            assert!(
                c.initial_pause > std::time::Duration::ZERO,
                "concurrent marking (the default) ran: {c:?}"
            );
        }
        // Every compacted page was moved, copied, or found installed (EEXIST).
        assert!(
            c.pages_moved + c.pages_copied + c.eexist >= c.pages_compacted,
            "{c:?}"
        );
    }
    let moved = sum(run, |c| c.pages_moved);
    let copied = sum(run, |c| c.pages_copied);
    eprintln!(
        "{}: {} cycles, moved {moved}, copied {copied}, faults {}, zero-filled {} ({} recycled), ebusy {}, eagain {}, eexist {}, madvise {}",
        strategy.name(),
        run.cycles.len(),
        sum(run, |c| c.faults),
        sum(run, |c| c.pages_zero_filled),
        sum(run, |c| c.pages_zero_recycled),
        sum(run, |c| c.ebusy_fallbacks),
        sum(run, |c| c.eagain_retries),
        sum(run, |c| c.eexist),
        sum(run, |c| c.madvise_calls),
    );
    match strategy {
        Strategy::ConcurrentMove => {
            assert!(moved > 0, "MOVE mode moved no page");
            assert!(
                sum(run, |c| c.pages_zero_recycled) > 0,
                "MOVE mode fills the allocation region from recycled pages"
            );
            assert_eq!(
                sum(run, |c| c.madvise_calls),
                0,
                "MOVE mode must not madvise"
            );
        }
        Strategy::ConcurrentCopy => {
            assert_eq!(moved, 0);
            assert!(copied > 0);
            assert_eq!(
                sum(run, |c| c.pages_zero_recycled),
                0,
                "COPY mode zero-fills by COPY, the pre-MOVE way"
            );
        }
        _ => {}
    }
}

#[test]
fn move_sigbus_stress() {
    if !uffd_ok() {
        return;
    }
    let run = stress(
        Strategy::ConcurrentMove,
        FaultMode::Sigbus,
        Injection::default(),
        50,
    );
    check_run(&run, Strategy::ConcurrentMove, 50);
}

#[test]
fn move_handler_thread_stress() {
    if !uffd_ok() {
        return;
    }
    let run = stress(
        Strategy::ConcurrentMove,
        FaultMode::HandlerThread,
        Injection::default(),
        50,
    );
    check_run(&run, Strategy::ConcurrentMove, 50);
}

#[test]
fn copy_sigbus_stress() {
    if !uffd_ok() {
        return;
    }
    let run = stress(
        Strategy::ConcurrentCopy,
        FaultMode::Sigbus,
        Injection::default(),
        50,
    );
    check_run(&run, Strategy::ConcurrentCopy, 50);
}

#[test]
fn copy_handler_thread_stress() {
    if !uffd_ok() {
        return;
    }
    let run = stress(
        Strategy::ConcurrentCopy,
        FaultMode::HandlerThread,
        Injection::default(),
        50,
    );
    check_run(&run, Strategy::ConcurrentCopy, 50);
}

#[test]
fn injected_errors_are_survived() {
    if !uffd_ok() {
        return;
    }
    let inj = Injection {
        busy_every: 3,
        again_every: 5,
        exists_every: 7,
        ..Default::default()
    };
    for mode in [FaultMode::Sigbus, FaultMode::HandlerThread] {
        let run = stress(Strategy::ConcurrentMove, mode, inj, 50);
        check_run(&run, Strategy::ConcurrentMove, 50);
        assert!(sum(&run, |c| c.ebusy_fallbacks) > 0, "no EBUSY injected");
        assert!(sum(&run, |c| c.eagain_retries) > 0, "no EAGAIN injected");
        assert!(sum(&run, |c| c.eexist) > 0, "no EEXIST injected");
    }
}

#[test]
fn works_with_a_forked_child_alive() {
    if !uffd_ok() {
        return;
    }
    // Build some heap first so there are pages to share with the child.
    let child = fork_sleeper();
    let run = stress(
        Strategy::ConcurrentMove,
        FaultMode::Sigbus,
        Injection::default(),
        50,
    );
    release(child);
    check_run(&run, Strategy::ConcurrentMove, 50);
}

#[test]
#[ignore = "soak: thousands of cycles; run with --ignored"]
fn soak() {
    if !uffd_ok() {
        return;
    }
    let n: usize = std::env::var("MOVEGC_SOAK_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    for (s, f) in [
        (Strategy::ConcurrentMove, FaultMode::Sigbus),
        (Strategy::ConcurrentMove, FaultMode::HandlerThread),
        (Strategy::ConcurrentCopy, FaultMode::Sigbus),
    ] {
        let run = stress(s, f, Injection::default(), n);
        check_run(&run, s, n);
    }
}

/// A child that sleeps until `release`; while it lives, every private page
/// of ours that existed at fork time is shared with it.
fn fork_sleeper() -> (libc::pid_t, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: plain pipe/fork; the child only calls close, read and _exit
    // (async-signal-safe) before exiting.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            // Close our copy of the write end: if the test dies before
            // `release`, its end closes with it, the read sees EOF and the
            // child exits instead of outliving the test (and holding its
            // output pipe open).
            libc::close(fds[1]);
            let mut b = 0u8;
            libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
        libc::close(fds[0]);
        (pid, fds[1])
    }
}

fn release((pid, fd): (libc::pid_t, libc::c_int)) {
    // SAFETY: our own pipe fd and child pid.
    unsafe {
        libc::write(fd, [1u8].as_ptr().cast(), 1);
        libc::close(fd);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status));
    }
}

/// A fragmented heap of many 2 MiB blocks compacted by two GC threads:
/// blocks finish out of order, the recycler's watermark must follow, and
/// most pages must be installed by MOVE from recycled from-space pages.
/// One concurrent MOVE cycle over a 600,000-node list with 40 % garbage
/// between its nodes (many GC blocks, no mutator faulting), with
/// `min_move_run`; checks every node afterwards. `None` without
/// userfaultfd.
fn recycle_cycle(min_move_run: usize) -> Option<CycleStats> {
    if !uffd_ok() {
        return None;
    }
    let heap = GcHeap::new(HeapConfig {
        capacity: 256 << 20,
        strategy: Strategy::ConcurrentMove,
        gc_threads: 2,
        verify: true,
        min_free: 200 << 20,
        min_move_run,
        ..Default::default()
    })
    .unwrap();
    let mut m = heap.attach().unwrap();
    let node = node_layout();
    let junk = Layout::byte_array(0, 24).unwrap();
    // SAFETY: a null slot.
    unsafe { m.roots().push(None) };
    let n = 600_000u64;
    for i in 0..n {
        let o = m.alloc(&node).unwrap();
        // SAFETY: `o` was just allocated and the head read from its root
        // slot; `o` then lives in the root slot.
        unsafe {
            o.write_u64(0, i).unwrap();
            o.write_u64(8, i * 7).unwrap();
            o.write_u64(16, checksum(i, i * 7)).unwrap();
            let head = m.roots()[0];
            m.store_ref(o, 0, head).unwrap();
            m.roots()[0] = Some(o);
        }
        m.alloc(&junk).unwrap(); // 40% of the bytes die
    }
    let st = m.collect_with(Strategy::ConcurrentMove).unwrap();
    eprintln!("{st:?}");
    assert!(st.pages_compacted > 5 * 512, "{} pages", st.pages_compacted);
    assert_eq!(st.madvise_calls, 0);
    // SAFETY: the walk starts at the root slot and reaches no safepoint.
    let mut cur = unsafe { m.roots()[0] };
    for i in (0..n).rev() {
        let o = cur.unwrap();
        // SAFETY: as above.
        unsafe {
            assert_eq!(o.read_u64(0).unwrap(), i);
            assert_eq!(o.read_u64(16).unwrap(), checksum(i, i * 7));
            cur = o.load_ref(0).unwrap();
        }
    }
    Some(st)
}

#[test]
fn move_recycles_across_many_blocks() {
    let Some(st) = recycle_cycle(movegc_gc::concurrent::DEFAULT_MIN_MOVE_RUN) else {
        return;
    };
    assert!(
        st.pages_moved > st.pages_copied,
        "moved {} copied {}",
        st.pages_moved,
        st.pages_copied
    );
    // Without faulting mutators the runs are whole blocks, except where the
    // recycler had fewer free pages than a block needed (its head).
    assert!(
        st.short_run_copies < 64,
        "{} pages copied as short runs",
        st.short_run_copies
    );
}

/// `min_move_run`: runs shorter than it are copied, not moved (at the
/// largest setting every GC-installed page), and the data is the same
/// either way; at 1 every run is moved.
#[test]
fn runs_shorter_than_min_move_run_are_copied() {
    let Some(all) = recycle_cycle(1) else {
        return;
    };
    assert_eq!(all.short_run_copies, 0);
    assert!(all.pages_moved > all.pages_compacted / 2, "{all:?}");
    let none = recycle_cycle(usize::MAX).expect("userfaultfd was available");
    // No dense prefix, black block or arena here (whose pages are fixed in
    // place and would count as short runs too), no faults.
    assert_eq!((none.dense_pages, none.black_pages, none.faults), (0, 0, 0));
    assert_eq!(none.pages_moved, 0, "nothing moved: {none:?}");
    assert_eq!(none.move_ioctls, 0);
    // Every compacted page copied: from its recycled page, or from a GC
    // buffer where no recycled page was free.
    assert_eq!(
        none.short_run_copies + none.recycle_shortfall,
        none.pages_compacted,
        "{none:?}"
    );
    assert_eq!(none.pages_copied, none.pages_compacted);
    assert_eq!(none.live_bytes, all.live_bytes);
}

/// A heap created stop-the-world still runs a concurrent collection when
/// asked for one: userfaultfd is opened on first use.
#[test]
fn concurrent_collection_on_a_stop_the_world_heap() {
    if !uffd_ok() {
        return;
    }
    let heap = GcHeap::new(HeapConfig {
        capacity: 16 << 20,
        strategy: Strategy::StopTheWorld,
        // (Kernel dirty tracking would open userfaultfd at creation.)
        generational: false,
        verify: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(heap.fault_mode(), None, "nothing opened yet");
    let mut m = heap.attach().unwrap();
    // SAFETY: a null slot, then `table` just allocated.
    unsafe { m.roots().push(None) };
    let table = m.alloc(&Layout::ref_array(1, 1).unwrap()).unwrap();
    // SAFETY: `table` was just allocated.
    unsafe { m.roots()[0] = Some(table) };
    make_list(&mut m, 0, 5000, 1 << 40);
    for s in [
        Strategy::ConcurrentMove,
        Strategy::StopTheWorld,
        Strategy::ConcurrentCopy,
    ] {
        let st = m.collect_with(s).expect("a collection ran");
        assert_eq!(st.strategy, Some(s));
        // SAFETY: `table` is read from its root slot; the check reaches no
        // safepoint.
        unsafe {
            let table = m.roots()[0].unwrap();
            check_list(table.load_ref(0).unwrap(), 5000, 1 << 40);
        }
    }
    assert!(heap.fault_mode().is_some());
    assert_eq!(heap.strategy(), Strategy::StopTheWorld, "the default stays");
    let hs = heap.stats();
    let per_cycle: u64 = hs.recent.iter().map(|c| c.pages_moved as u64).sum();
    assert_eq!(hs.pages_moved, per_cycle, "running total = sum over cycles");
    assert!(hs.pages_moved > 0 && hs.pages_copied > 0);
    assert_eq!(hs.cycles, 3);
    assert_eq!(
        hs.pause_histogram.len(),
        5,
        "two pauses per concurrent cycle, one for STW"
    );
    // Each pause is labelled: initial + final for a concurrent cycle, one
    // stop-the-world pause otherwise; the totals add them up.
    let mut total = std::time::Duration::ZERO;
    for c in &hs.recent {
        let kinds: Vec<_> = c.pauses.iter().map(|p| p.kind).collect();
        match c.strategy.unwrap().is_concurrent() {
            true => assert_eq!(kinds, [PauseKind::Initial, PauseKind::Final], "{c:?}"),
            false => assert_eq!(kinds, [PauseKind::StopTheWorld], "{c:?}"),
        }
        assert_eq!(c.pauses.last().unwrap().duration, c.pause);
        total += c
            .pauses
            .iter()
            .map(|p| p.duration)
            .sum::<std::time::Duration>();
    }
    assert_eq!(hs.total_pause, total);
}

/// The snapshot-at-the-beginning barrier at work: one thread keeps
/// swapping nodes between two arrays (load both, store crossed: the classic
/// way a concurrent marker loses an object, when a node moves from a slot
/// not yet scanned to one already scanned) while another runs concurrent
/// collections back to back. Every node must survive every cycle exactly
/// once, with its contents.
#[test]
fn nodes_moved_during_concurrent_marking_survive() {
    if !uffd_ok() {
        return;
    }
    const N: usize = 2048;
    const TAIL: usize = 64; // each node carries a chain, so marking takes a while
    let heap = GcHeap::new(HeapConfig {
        capacity: 64 << 20,
        min_free: 64 << 20,
        strategy: Strategy::ConcurrentMove,
        gc_threads: 1,
        verify: true,
        ..Default::default()
    })
    .unwrap();
    let arrays = SwapArrays::build(&heap, [N, N], TAIL);
    let swapper = Swapper::spawn(&arrays);
    let mut m = heap.attach().unwrap();
    let concurrent_marks = arrays.collect_and_check(&mut m, &swapper, 20);
    let swaps = swapper.stop();
    assert_eq!(concurrent_marks, 20, "every cycle marked concurrently");
    assert!(swaps > 0);
    eprintln!("{swaps} swaps during 20 cycles");
}

/// Minor page faults the calling thread has taken so far.
fn thread_minor_faults() -> i64 {
    // SAFETY: `getrusage` writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD is the calling thread.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    u.ru_minflt
}

/// A concurrent MOVE cycle started by the heap-size policy hands the
/// from-space pages it did not need, zeroed, to the allocation region
/// (`HeapConfig::prefill_allocation`): allocating afterwards takes almost
/// no page fault and reads zeros (the allocator relies on zeroed memory
/// there; the garbage these pages held was all ones). Off, the same
/// allocation faults its pages in. `collect()` does not prefill.
#[test]
fn move_prefills_the_allocation_region_with_zeroed_pages() {
    if !uffd_ok() {
        return;
    }
    const ARRAY: usize = 2000;
    let words = ARRAY / 8;
    for prefill in [true, false] {
        let heap = GcHeap::new(HeapConfig {
            capacity: 256 << 20,
            strategy: Strategy::ConcurrentMove,
            gc_threads: 2,
            verify: true,
            min_free: 64 << 20,
            gc_cpu_target: None,
            prefill_allocation: prefill,
            ..Default::default()
        })
        .unwrap();
        let mut m = heap.attach().unwrap();
        let junk = Layout::byte_array(0, ARRAY).unwrap();
        let fill_garbage = |m: &mut movegc_gc::MutatorContext, until: &dyn Fn() -> bool| {
            while !until() {
                let o = m.alloc(&junk).unwrap();
                for k in 0..words {
                    // SAFETY: `o` was just allocated; no safepoint in between.
                    unsafe { o.write_u64(k * 8, u64::MAX).unwrap() };
                }
            }
        };
        // Garbage, every word all ones, until the policy starts a cycle
        // (no more allocation meanwhile: what the mutator allocates while
        // the cycle runs would use up prefilled pages).
        fill_garbage(&mut m, &|| {
            let s = heap.stats();
            s.in_progress.is_some() || s.cycles >= 1
        });
        m.wait_idle();
        let st = heap.stats().recent.last().cloned().unwrap();
        assert_eq!(st.trigger, Some(movegc_gc::Trigger::Policy));
        let pages = 32 << 20 >> 12;
        if prefill {
            assert!(st.pages_prefilled >= pages, "{st:?}");
            assert!(st.pages_prefilled <= st.used_before / 4096, "{st:?}");
        } else {
            assert_eq!(st.pages_prefilled, 0, "{st:?}");
        }
        // 32 MiB of new arrays: zero, and (prefilled) no page faults.
        let before = thread_minor_faults();
        for _ in 0..(32 << 20) / (ARRAY + 16) {
            let o = m.alloc(&junk).unwrap();
            for k in 0..words {
                // SAFETY: as above.
                assert_eq!(unsafe { o.read_u64(k * 8).unwrap() }, 0, "word {k}");
            }
        }
        let faults = thread_minor_faults() - before;
        eprintln!(
            "prefill {prefill}: {} pages prefilled, {faults} faults allocating {pages} pages",
            st.pages_prefilled
        );
        if prefill {
            assert!(faults < pages as i64 / 8, "{faults} faults");
        } else {
            assert!(faults > pages as i64 / 2, "{faults} faults");
        }
        // An explicit collection leaves nothing resident.
        let st = m.collect_with(Strategy::ConcurrentMove).unwrap();
        assert_eq!(st.pages_prefilled, 0, "collect() prefilled");
    }
}

/// Mutators allocate (and check that every new array reads zero) while
/// policy-started MOVE cycles prefill the allocation region under them:
/// the prefill races with the mutators' allocation-region faults (EEXIST
/// both ways), in both fault modes, full and young cycles.
#[test]
fn allocation_racing_the_prefill_reads_zeros() {
    if !uffd_ok() {
        return;
    }
    for (fault_mode, generational) in [
        (FaultMode::Sigbus, false),
        (FaultMode::HandlerThread, false),
        (FaultMode::Sigbus, true),
        (FaultMode::HandlerThread, true),
    ] {
        let heap = GcHeap::new(HeapConfig {
            capacity: 96 << 20,
            strategy: Strategy::ConcurrentMove,
            fault_mode,
            generational,
            gc_threads: 2,
            min_free: 6 << 20,
            gc_cpu_target: None,
            ..Default::default()
        })
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2usize)
            .map(|t| {
                let (heap, stop) = (heap.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut m = heap.attach().unwrap();
                    // SAFETY: null slots.
                    unsafe { m.roots().resize(16, None) };
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let n = 16 + (i * 7919 + t * 13) % 3000;
                        let o = m.alloc(&Layout::byte_array(0, n).unwrap()).unwrap();
                        for k in 0..n / 8 {
                            // SAFETY: just allocated; no safepoint until the
                            // root store below.
                            let v = unsafe { o.read_u64(k * 8).unwrap() };
                            assert_eq!(v, 0, "word {k} of a new {n}-byte array");
                            // SAFETY: as above.
                            unsafe { o.write_u64(k * 8, !(k as u64)).unwrap() };
                        }
                        if i % 97 == 0 {
                            // SAFETY: as above.
                            unsafe { m.roots()[i % 16] = Some(o) };
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("a mutator read a non-zero word");
        }
        heap.wait_idle().unwrap();
        let s = heap.stats();
        let prefilled: usize = s.recent.iter().map(|c| c.pages_prefilled).sum();
        eprintln!(
            "{fault_mode:?} young={generational}: {} cycles, {prefilled} pages prefilled in the last {}",
            s.cycles,
            s.recent.len()
        );
        assert!(s.cycles >= 5, "{} cycles", s.cycles);
        assert!(prefilled > 0, "no cycle prefilled");
    }
}
