//! The process-wide SIGBUS handler of SIGBUS mode handles only what is its
//! own (a kernel `BUS_ADRERR` fault inside a heap) and hands every other
//! SIGBUS to the disposition that was there before, exactly as if movegc
//! were not installed, staying installed itself.
//!
//! Each case runs in a child process (this test binary re-executed with
//! `MOVEGC_SIGBUS_CHILD` naming the case), so the handler is installed
//! fresh after the case has set up the previous disposition, and a death
//! by SIGBUS can be observed. In their own test binary: the handler is
//! process-wide. Cases skip, saying why, where userfaultfd or its SIGBUS
//! feature is unavailable.
//!
//! The workload drives the engine's `unsafe` object access directly. Rule:
//! an `ObjRef` in a local is used only until the thread's next allocation
//! or safepoint; what must survive one lives in a root slot (the table is
//! root 0, then a persistent root).

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;

use movegc_gc::concurrent::FaultMode;
use movegc_gc::uffd::{Features, OpenOptions, Uffd};
use movegc_gc::{GcHeap, HeapConfig, Layout, MutatorContext, ObjRef, Strategy};

const CHILD_ENV: &str = "MOVEGC_SIGBUS_CHILD";
const LISTS: usize = 32;
const LEN: u64 = 3000;

fn sigbus_mode_ok() -> bool {
    match Uffd::open(&OpenOptions::new().require_features(Features::SIGBUS)) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: userfaultfd with SIGBUS unavailable: {e}");
            false
        }
    }
}

/// Whether this process is the child running case `name`.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

/// Runs case `name` in a child process and returns how it ended.
fn run_child(name: &str) -> std::process::ExitStatus {
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .output()
        .expect("run the child");
    eprintln!(
        "child {name}: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status
}

/// Sets the SIGBUS disposition to `handler` (`SIG_DFL`, `SIG_IGN` or a
/// three-argument handler).
fn set_sigbus(handler: usize) {
    // SAFETY: installing a plain disposition or a handler that only touches
    // atomics.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        act.sa_flags = if handler > libc::SIG_IGN {
            libc::SA_SIGINFO
        } else {
            0
        };
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut()), 0);
    }
}

/// The current SIGBUS handler address.
fn current_sigbus() -> usize {
    // SAFETY: querying the disposition into a stack value.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

fn sigbus_heap() -> GcHeap {
    let heap = GcHeap::new(HeapConfig {
        capacity: 64 << 20,
        min_free: 64 << 20,
        strategy: Strategy::ConcurrentMove,
        fault_mode: FaultMode::Sigbus,
        gc_threads: 1,
        verify: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(heap.fault_mode(), Some(FaultMode::Sigbus));
    heap
}

fn node() -> Layout {
    Layout::record(3, 1, 16).unwrap()
}

fn check(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// `LISTS` interleaved lists plus as much garbage; the table is root 0.
fn build(m: &mut MutatorContext) {
    let table = m.alloc(&Layout::ref_array(1, LISTS).unwrap()).unwrap();
    // SAFETY: `table` was just allocated.
    unsafe { m.roots() }.push(Some(table));
    for i in 0..LEN {
        for l in 0..LISTS {
            let id = (l as u64) << 32 | i;
            let n = m.alloc(&node()).unwrap();
            // SAFETY: `n` was just allocated and `table` is read from its
            // root slot after that allocation; no safepoint until the end.
            unsafe {
                n.write_u64(0, id).unwrap();
                n.write_u64(8, check(id)).unwrap();
                let table = m.roots()[0].unwrap();
                let head = table.load_ref(l).unwrap();
                m.store_ref(n, 0, head).unwrap();
                m.store_ref(table, l, Some(n)).unwrap();
            }
            m.alloc(&node()).unwrap(); // garbage
        }
    }
}

/// Walks every list from `table`; panics on any lost or corrupt node.
///
/// # Safety
/// `table` is current and the caller a running mutator that reaches no
/// safepoint during the walk.
unsafe fn verify(table: ObjRef) {
    // SAFETY: the caller's contract; every reference loaded is current too.
    unsafe {
        for l in 0..LISTS {
            let mut cur: Option<ObjRef> = table.load_ref(l).unwrap();
            for i in (0..LEN).rev() {
                let n = cur.unwrap_or_else(|| panic!("list {l} ends early at {i}"));
                let id = (l as u64) << 32 | i;
                assert_eq!(n.read_u64(0).unwrap(), id);
                assert_eq!(n.read_u64(8).unwrap(), check(id));
                cur = n.load_ref(0).unwrap();
            }
            assert!(cur.is_none());
        }
    }
}

/// Concurrent cycles while a second mutator walks the lists, until the
/// mutator has faulted on pages (served by our handler) in some cycle.
fn cycles_with_mutator_faults(heap: &GcHeap) {
    let mut m = heap.attach().unwrap();
    build(&mut m);
    // SAFETY: read from a root slot just now.
    let table_id = unsafe { heap.persistent_new(m.roots()[0]) };
    let stop = Arc::new(AtomicBool::new(false));
    let walks = Arc::new(AtomicUsize::new(0));
    let walker = {
        let (heap, stop, walks) = (heap.clone(), stop.clone(), walks.clone());
        std::thread::spawn(move || {
            let mut w = heap.attach().unwrap();
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: read from a persistent root by this running
                // mutator, which polls only after the walk.
                unsafe { verify(heap.persistent_get(table_id).unwrap()) };
                walks.fetch_add(1, Ordering::Relaxed);
                w.safepoint();
            }
        })
    };
    let mut faults = 0;
    for cycle in 0..40 {
        for _ in 0..20_000 {
            m.alloc(&node()).unwrap(); // fresh garbage between cycles
        }
        let st = m.collect().expect("a collection ran");
        assert_eq!(st.fault_mode, Some(FaultMode::Sigbus), "{st:?}");
        faults += st.faults;
        if faults > 0 && cycle >= 2 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    m.blocking(|| walker.join()).unwrap();
    // SAFETY: as in the walker; this thread's mutator is running.
    unsafe { verify(heap.persistent_get(table_id).unwrap()) };
    eprintln!(
        "mutator faults served: {faults}, walks: {}",
        walks.load(Ordering::Relaxed)
    );
    assert!(faults > 0, "no mutator fault in SIGBUS mode");
    heap.persistent_free(table_id);
}

static USER_CALLS: AtomicUsize = AtomicUsize::new(0);
static USER_CODE: AtomicI32 = AtomicI32::new(i32::MIN);

extern "C" fn user_handler(_sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel (or our caller, passing it on) gives a valid siginfo.
    USER_CODE.store(unsafe { (*info).si_code }, Ordering::SeqCst);
    USER_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// Queues SIGBUS to this thread as `sigqueue` would (`SI_QUEUE`), with the
/// `si_addr` field (which user-sent signals do not define) set to `addr`.
fn queue_sigbus_with_addr(addr: usize) {
    // SAFETY: a zeroed siginfo is valid; the fields written are the ones
    // rt_tgsigqueueinfo(2) reads; the target is this thread.
    unsafe {
        let mut si: libc::siginfo_t = std::mem::zeroed();
        si.si_signo = libc::SIGBUS;
        si.si_code = libc::SI_QUEUE;
        // si_addr is the first union member, right after the three ints
        // (and padding) of the header.
        let p = (&mut si as *mut libc::siginfo_t as *mut u8).add(16) as *mut usize;
        *p = addr;
        assert_eq!((*(&si as *const libc::siginfo_t)).si_addr() as usize, addr);
        let rc = libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            libc::getpid(),
            libc::syscall(libc::SYS_gettid) as libc::pid_t,
            libc::SIGBUS,
            &mut si,
        );
        assert_eq!(rc, 0, "rt_tgsigqueueinfo");
    }
}

/// Child: SIG_DFL before the heap; `raise(SIGBUS)` must kill at once.
#[test]
fn child_default_raise() {
    if !is_child("child_default_raise") {
        return;
    }
    set_sigbus(libc::SIG_DFL);
    let heap = sigbus_heap();
    assert_ne!(current_sigbus(), libc::SIG_DFL, "our handler is installed");
    // SAFETY: raising a signal in this (child) process.
    unsafe { libc::raise(libc::SIGBUS) };
    println!("survived raise(SIGBUS) with SIG_DFL before the heap");
    drop(heap);
    std::process::exit(0);
}

#[test]
fn user_sigbus_with_default_action_kills_the_process() {
    if !sigbus_mode_ok() {
        return;
    }
    let st = run_child("child_default_raise");
    assert_eq!(
        st.signal(),
        Some(libc::SIGBUS),
        "raise(SIGBUS) must kill by SIGBUS when SIG_DFL was in place: {st:?}"
    );
}

/// Child: a user SA_SIGINFO handler before the heap gets every foreign
/// SIGBUS; the heap's handler stays installed and serves faults.
#[test]
fn child_user_handler() {
    if !is_child("child_user_handler") {
        return;
    }
    set_sigbus(user_handler as *const () as usize);
    let heap = sigbus_heap();
    let ours = current_sigbus();
    assert_ne!(ours, user_handler as *const () as usize);

    // SAFETY: raising a signal in this (child) process.
    unsafe { libc::raise(libc::SIGBUS) };
    assert_eq!(
        USER_CALLS.load(Ordering::SeqCst),
        1,
        "raise reached the user handler"
    );
    assert_eq!(USER_CODE.load(Ordering::SeqCst), libc::SI_TKILL);

    // A user-sent signal whose si_addr field lies inside the heap is not
    // ours either.
    let mut m = heap.attach().unwrap();
    let obj = m.alloc(&node()).unwrap();
    queue_sigbus_with_addr(obj.addr());
    assert_eq!(
        USER_CALLS.load(Ordering::SeqCst),
        2,
        "a queued SIGBUS with a heap address reached the user handler"
    );
    assert_eq!(USER_CODE.load(Ordering::SeqCst), libc::SI_QUEUE);
    drop(m);

    assert_eq!(current_sigbus(), ours, "our handler is still installed");
    cycles_with_mutator_faults(&heap);
    assert_eq!(current_sigbus(), ours, "our handler is still installed");
    assert_eq!(
        USER_CALLS.load(Ordering::SeqCst),
        2,
        "heap faults are not passed on"
    );
    println!("child ok");
}

#[test]
fn user_sigbus_reaches_the_previous_handler_and_ours_stays() {
    if !sigbus_mode_ok() {
        return;
    }
    let st = run_child("child_user_handler");
    assert!(st.success(), "child failed: {st:?}");
}

/// Child: SIG_IGN before the heap; a user-sent SIGBUS is ignored and the
/// heap's handler stays installed.
#[test]
fn child_ignored_raise() {
    if !is_child("child_ignored_raise") {
        return;
    }
    set_sigbus(libc::SIG_IGN);
    let heap = sigbus_heap();
    let ours = current_sigbus();
    // SAFETY: raising a signal in this (child) process.
    unsafe { libc::raise(libc::SIGBUS) };
    assert_eq!(current_sigbus(), ours, "our handler is still installed");
    cycles_with_mutator_faults(&heap);
    println!("child ok");
}

#[test]
fn ignored_user_sigbus_is_ignored_and_ours_stays() {
    if !sigbus_mode_ok() {
        return;
    }
    let st = run_child("child_ignored_raise");
    assert!(st.success(), "child failed: {st:?}");
}
