//! The concurrent flip's point of no return (issue 11, defect 6): what a
//! cycle needs is acquired before the flip, so a failure there finishes the
//! cycle stop-the-world; after the flip a failure ends the process with a
//! message, never a hang (it used to: a failed `UFFDIO_UNREGISTER` was only
//! a warning, the range stayed registered and the next fault looped).
//!
//! Failures are injected (`Injection::prepare_fails`, `unregister_fails`).
//! The aborting case runs in a child process (this binary re-executed with
//! `MOVEGC_PONR_CHILD` set). Rule of the engine API used here: an `ObjRef`
//! in a local is used only until the next allocation or collection; the
//! list head lives in root slot 0.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use movegc_gc::concurrent::Injection;
use movegc_gc::uffd::{Features, OpenOptions, Uffd};
use movegc_gc::{GcHeap, HeapConfig, Layout, MutatorContext, Strategy};

const CHILD_ENV: &str = "MOVEGC_PONR_CHILD";

fn move_ok() -> bool {
    match Uffd::open(&OpenOptions::new().require_features(Features::MOVE)) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: userfaultfd with MOVE unavailable: {e}");
            false
        }
    }
}

fn heap(injection: Injection) -> GcHeap {
    GcHeap::new(HeapConfig {
        capacity: 64 << 20,
        strategy: Strategy::ConcurrentMove,
        verify: true,
        injection,
        ..Default::default()
    })
    .unwrap()
}

/// A list of `n` nodes (ids 0..n, head = n-1) in root 0, with garbage
/// between the nodes.
fn build(m: &mut MutatorContext, n: u64) {
    let node = Layout::record(1, 1, 8).unwrap();
    // SAFETY: root 0 starts empty.
    unsafe { m.roots() }.push(None);
    for i in 0..n {
        let o = m.alloc(&node).unwrap();
        // SAFETY: `o` was just allocated; the head is read from its root
        // slot after that allocation; no safepoint until the next alloc.
        unsafe {
            o.write_u64(0, i).unwrap();
            let head = m.roots()[0];
            m.store_ref(o, 0, head).unwrap();
            m.roots()[0] = Some(o);
        }
        m.alloc(&Layout::byte_array(0, 40).unwrap()).unwrap();
    }
}

fn check(m: &mut MutatorContext, n: u64) {
    // SAFETY: the head is read from its root slot; the walk reaches no
    // safepoint.
    unsafe {
        let mut cur = m.roots()[0];
        for i in (0..n).rev() {
            let o = cur.unwrap_or_else(|| panic!("list ends early at {i}"));
            assert_eq!(o.read_u64(0).unwrap(), i);
            cur = o.load_ref(0).unwrap();
        }
        assert!(cur.is_none());
    }
}

#[test]
fn a_failure_before_the_flip_finishes_the_cycle_stop_the_world() {
    if !move_ok() {
        return;
    }
    let heap = heap(Injection {
        prepare_fails: true,
        ..Default::default()
    });
    assert_eq!(heap.strategy(), Strategy::ConcurrentMove);
    let mut m = heap.attach().unwrap();
    build(&mut m, 20_000);
    for _ in 0..3 {
        let st = m.collect().expect("our collection ran");
        assert_eq!(st.strategy, Some(Strategy::StopTheWorld), "{st:?}");
        assert_eq!(st.live_objects, 20_000, "the list, nothing else: {st:?}");
        check(&mut m, 20_000);
    }
    assert!(!heap.is_poisoned());
    assert!(!heap.cycle_in_flight());
}

#[test]
fn a_failed_unregister_aborts_instead_of_hanging() {
    if std::env::var(CHILD_ENV).is_ok() {
        let heap = heap(Injection {
            unregister_fails: true,
            ..Default::default()
        });
        let mut m = heap.attach().unwrap();
        build(&mut m, 20_000);
        m.collect();
        eprintln!("child: the cycle returned");
        std::process::exit(0);
    }
    if !move_ok() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_failed_unregister_aborts_instead_of_hanging",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the child hung after a failed UFFDIO_UNREGISTER");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}\n{err}");
    assert!(
        err.contains("unregistering the heap from userfaultfd failed"),
        "{err}"
    );
    assert!(!err.contains("the cycle returned"), "{err}");
}
