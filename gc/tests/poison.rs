//! The stale-reference mode (`HeapConfig::poison_freed`): an object's
//! address kept across a collection outside a root (a raw `ObjRef`, the
//! bug the engine's unsafe API allows) stops the process with a report
//! naming the address, the collection that freed the memory and the
//! object that was there; and a heap in this mode that keeps its roots
//! right runs many cycles, on several threads, without a report.
//!
//! A stale access aborts the process, so each such case runs this test
//! binary again as a child (`MOVEGC_POISON_CHILD` names the case) and
//! checks its exit signal and stderr. Needs `UFFD_FEATURE_POISON`: cases
//! skip with a printed reason where the heap says the mode is off.
//!
//! Object access through the engine is `unsafe` (`ObjRef`'s access
//! contract); the children break that contract on purpose, once, at the
//! read that must be reported.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use movegc_gc::concurrent::FaultMode;
use movegc_gc::{GcHeap, HeapConfig, Layout, MutatorContext, StaleAccess, Strategy};

const CHILD: &str = "MOVEGC_POISON_CHILD";

/// A 64 MiB heap in the mode that collects only when asked.
fn config(strategy: Strategy, fault_mode: FaultMode) -> HeapConfig {
    HeapConfig {
        capacity: 64 << 20,
        min_free: 64 << 20,
        strategy,
        fault_mode,
        gc_threads: 2,
        verify: true,
        poison_freed: true,
        ..Default::default()
    }
}

fn garbage(m: &mut MutatorContext, n: usize) {
    let l = Layout::record(1, 1, 40).unwrap();
    for _ in 0..n {
        m.alloc(&l).unwrap();
    }
}

/// The child's side: builds the case, prints `STALE <addr> MOVED_TO
/// <addr>` on stdout, then reads through the stale address (which must
/// abort the process).
fn child(case: &str) {
    if case.starts_with("stress") {
        stress_child(case);
    }
    let (strategy, mode) = match case {
        "live-concurrent" | "dead-concurrent" | "hook" | "large-refs-concurrent" => {
            (Strategy::ConcurrentMove, FaultMode::Sigbus)
        }
        "live-handler-thread" => (Strategy::ConcurrentMove, FaultMode::HandlerThread),
        _ => (Strategy::StopTheWorld, FaultMode::Sigbus),
    };
    let mut cfg = config(strategy, mode);
    if case == "hook" {
        cfg.on_stale_access = Some(hook);
    }
    let heap = GcHeap::new(cfg).unwrap();
    let mut m = heap.attach().unwrap();
    if case.starts_with("large") {
        let layout = match case {
            "large-bytes-stw" => Layout::byte_array(5, 100_000).unwrap(),
            _ => Layout::ref_array(6, 10_000).unwrap(),
        };
        let keep = m.alloc(&Layout::record(2, 0, 8).unwrap()).unwrap();
        // SAFETY: just allocated; the root slot keeps it from now on.
        unsafe { m.roots().push(Some(keep)) };
        garbage(&mut m, 20_000); // something to compact
        let big = m.alloc(&layout).unwrap();
        let st = m.collect().expect("a collection ran");
        println!(
            "STALE {:#x} MOVED_TO 0x0 CYCLE {} STRATEGY {:?}",
            big.addr(),
            st.cycle,
            st.strategy
        );
        std::io::stdout().flush().unwrap();
        // SAFETY: none: this read (of the header first) breaks the access
        // contract on purpose.
        let v = unsafe { big.header() };
        println!("NOT DETECTED: read {v:?}");
        std::process::exit(3);
    }
    let keep = m.alloc(&Layout::record(2, 0, 8).unwrap()).unwrap();
    // SAFETY: just allocated; the root slot keeps it from now on.
    unsafe { m.roots().push(Some(keep)) };
    garbage(&mut m, 20_000);
    let target = m.alloc(&Layout::record(7, 2, 16).unwrap()).unwrap();
    // SAFETY: just allocated, used before the next allocation.
    unsafe { target.write_u64(0, 0xfeed).unwrap() };
    let live = case.starts_with("live") || case == "hook";
    if live {
        // SAFETY: as above; the root keeps it alive and current.
        unsafe { m.roots().push(Some(target)) };
    }
    garbage(&mut m, 100);
    let stale = target; // the bug: a copy kept outside the roots
    let st = m.collect().expect("a collection ran");
    let moved_to = if live {
        // SAFETY: read from a root slot right after the collection.
        unsafe { m.roots()[1].unwrap().addr() }
    } else {
        0
    };
    println!(
        "STALE {:#x} MOVED_TO {:#x} CYCLE {} STRATEGY {:?}",
        stale.addr(),
        moved_to,
        st.cycle,
        st.strategy
    );
    std::io::stdout().flush().unwrap();
    // SAFETY: none: this read breaks the access contract on purpose.
    let v = unsafe { stale.read_u64(0) };
    println!("NOT DETECTED: read {v:?}");
    std::process::exit(3);
}

/// The stress mode's child: the first object of the heap, live, is what a
/// plain compaction never moves (nothing dead below it); with the stress
/// option it moves up in cycle 1 and back down in cycle 2, and its old
/// address is poisoned each time.
fn stress_child(case: &str) -> ! {
    let heap = GcHeap::new(HeapConfig {
        poison_stress: true,
        ..config(Strategy::StopTheWorld, FaultMode::Sigbus)
    })
    .unwrap();
    let mut m = heap.attach().unwrap();
    let first = m.alloc(&Layout::record(7, 2, 16).unwrap()).unwrap();
    // SAFETY: just allocated; the root keeps it alive and current.
    unsafe { m.roots().push(Some(first)) };
    garbage(&mut m, 20_000);
    let mut stale = first;
    let mut st = m.collect().expect("a collection ran");
    if case == "stress-down" {
        // SAFETY: read from the root right after the collection.
        stale = unsafe { m.roots()[0].unwrap() };
        garbage(&mut m, 1_000);
        st = m.collect().expect("a second collection ran");
    }
    // SAFETY: read from the root right after the collection.
    let moved_to = unsafe { m.roots()[0].unwrap().addr() };
    println!(
        "STALE {:#x} MOVED_TO {:#x} CYCLE {} STRATEGY {:?}",
        stale.addr(),
        moved_to,
        st.cycle,
        st.strategy
    );
    std::io::stdout().flush().unwrap();
    // SAFETY: none: this read breaks the access contract on purpose.
    let v = unsafe { stale.read_u64(0) };
    println!("NOT DETECTED: read {v:?}");
    std::process::exit(3);
}

fn hook(a: &StaleAccess) {
    // Async-signal-safe: a fixed message by write(2).
    let msg: &[u8] = if a.object.is_some_and(|o| o.moved_to.is_some()) {
        b"HOOK: a live object moved\n"
    } else {
        b"HOOK: something else\n"
    };
    // SAFETY: write(2) of a static buffer.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

struct Outcome {
    signal: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `case` in a child process; `None` (after saying why) if the mode
/// is unavailable here.
fn run_child(test: &str, case: &str) -> Option<Outcome> {
    let probe = GcHeap::new(config(Strategy::StopTheWorld, FaultMode::Sigbus)).unwrap();
    if !probe.poisons_freed() {
        eprintln!("skipped: {case}: the stale-reference mode is off here (no UFFDIO_POISON)");
        return None;
    }
    drop(probe);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, case)
        .output()
        .unwrap();
    Some(Outcome {
        signal: out.status.signal(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `(stale, moved_to, cycle)` from the child's line.
fn parse(o: &Outcome) -> (usize, usize, u64) {
    let line = o
        .stdout
        .lines()
        .find_map(|l| l.find("STALE ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no STALE line: {}\n{}", o.stdout, o.stderr));
    let f: Vec<&str> = line.split_whitespace().collect();
    let hex = |s: &str| usize::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    (hex(f[1]), hex(f[3]), f[5].parse().unwrap())
}

/// In the child: runs `case` if it is this test's. In the parent: runs it
/// in a child and checks what every report must say (the child aborted,
/// naming the stale address and the collection); `None` if the mode is
/// unavailable here or this is the child.
fn reported(test: &str, case: &str) -> Option<Reported> {
    if let Ok(c) = std::env::var(CHILD) {
        if c == case {
            child(&c);
        }
        return None;
    }
    let o = run_child(test, case)?;
    assert!(
        !o.stdout.contains("NOT DETECTED"),
        "{}\n{}",
        o.stdout,
        o.stderr
    );
    assert_eq!(o.signal, Some(libc::SIGABRT), "{}\n{}", o.stdout, o.stderr);
    let (stale, moved_to, cycle) = parse(&o);
    let e = &o.stderr;
    assert!(
        e.contains(&format!("stale access at {stale:#x} (thread ")),
        "{e}"
    );
    assert!(
        e.contains(&format!("freed by collection {cycle} and poisoned")),
        "{e}"
    );
    Some(Reported { o, stale, moved_to })
}

/// A child's report, checked by [`reported`].
struct Reported {
    o: Outcome,
    stale: usize,
    moved_to: usize,
}

/// The report names the record the stale address pointed at, live (and
/// where it moved) or garbage.
fn expect_report(test: &str, case: &str, live: bool) {
    let Some(Reported { o, stale, moved_to }) = reported(test, case) else {
        return;
    };
    let e = &o.stderr;
    assert!(
        e.contains(&format!(
            "record (tag 7, 2 refs, 16 data bytes) at {stale:#x}, 0 bytes in"
        )),
        "{e}"
    );
    if live {
        assert!(
            e.contains(&format!("live and moved to {moved_to:#x}")),
            "{e}"
        );
    } else {
        assert!(e.contains("that object was garbage"), "{e}");
    }
}

#[test]
fn a_stale_address_of_a_moved_object_is_reported_stop_the_world() {
    expect_report(
        "a_stale_address_of_a_moved_object_is_reported_stop_the_world",
        "live-stw",
        true,
    );
}

#[test]
fn a_stale_address_of_a_dead_object_is_reported_stop_the_world() {
    expect_report(
        "a_stale_address_of_a_dead_object_is_reported_stop_the_world",
        "dead-stw",
        false,
    );
}

#[test]
fn a_stale_address_of_a_moved_object_is_reported_concurrent() {
    expect_report(
        "a_stale_address_of_a_moved_object_is_reported_concurrent",
        "live-concurrent",
        true,
    );
}

#[test]
fn a_stale_address_of_a_dead_object_is_reported_concurrent() {
    expect_report(
        "a_stale_address_of_a_dead_object_is_reported_concurrent",
        "dead-concurrent",
        false,
    );
}

#[test]
fn a_stale_address_is_reported_in_handler_thread_mode() {
    expect_report(
        "a_stale_address_is_reported_in_handler_thread_mode",
        "live-handler-thread",
        true,
    );
}

/// The report names the freed large object as `what`; the child's
/// stdout, for more checks.
fn expect_large_report(test: &str, case: &str, what: &str) -> Option<String> {
    let Reported { o, stale, .. } = reported(test, case)?;
    let e = &o.stderr;
    assert!(
        e.contains(&format!(
            "{what} at {stale:#x}, 0 bytes in; that object was garbage"
        )),
        "{e}"
    );
    Some(o.stdout)
}

/// A byte array has its own mapping: kept, poisoned, after it dies.
#[test]
fn a_stale_address_of_a_freed_large_byte_array_is_reported() {
    expect_large_report(
        "a_stale_address_of_a_freed_large_byte_array_is_reported",
        "large-bytes-stw",
        "byte array (tag 5, 100000 bytes); a large object,",
    );
}

/// A reference array lives in the arena, which a concurrent flip moves
/// out: its header is not readable when it is freed.
#[test]
fn a_stale_address_of_a_freed_arena_object_is_reported() {
    let out = expect_large_report(
        "a_stale_address_of_a_freed_arena_object_is_reported",
        "large-refs-concurrent",
        "large object of 81920 bytes",
    );
    if let Some(o) = out {
        assert!(o.contains("STRATEGY Some(ConcurrentMove)"), "{o}");
    }
}

#[test]
fn the_embedders_hook_runs_before_the_abort() {
    let test = "the_embedders_hook_runs_before_the_abort";
    if std::env::var(CHILD).is_ok() {
        expect_report(test, "hook", true);
        return;
    }
    let Some(o) = run_child(test, "hook") else {
        return;
    };
    assert_eq!(o.signal, Some(libc::SIGABRT), "{}", o.stderr);
    let report = o.stderr.find("stale access at").expect("the report");
    let hooked = o
        .stderr
        .find("HOOK: a live object moved")
        .expect("the hook ran");
    assert!(report < hooked, "{}", o.stderr);
    assert!(
        o.stderr.contains("aborting after the stale-access hook"),
        "{}",
        o.stderr
    );
}

/// The stress option moves even the bottom object: up above the old top
/// in the first cycle...
#[test]
fn the_stress_option_moves_the_bottom_object_up() {
    expect_report(
        "the_stress_option_moves_the_bottom_object_up",
        "stress-up",
        true,
    );
}

/// ... and back down in the next, the old image poisoned each time.
#[test]
fn the_stress_option_moves_it_back_down() {
    expect_report("the_stress_option_moves_it_back_down", "stress-down", true);
}

/// Correct use raises no report: four threads allocate and keep lists
/// through their roots across many cycles of each strategy, the verifier
/// checks the heap after every cycle, and allocation reaches into the
/// poisoned window again and again (unpoisoning it).
#[test]
fn correct_programs_run_clean_in_the_mode() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    for (strategy, stress) in [
        (Strategy::ConcurrentMove, false),
        (Strategy::StopTheWorld, false),
        (Strategy::StopTheWorld, true),
    ] {
        let heap = GcHeap::new(HeapConfig {
            capacity: 32 << 20,
            min_free: 2 << 20,
            gc_cpu_target: None,
            strategy,
            gc_threads: 2,
            verify: true,
            poison_freed: true,
            poison_stress: stress,
            ..Default::default()
        })
        .unwrap();
        if !heap.poisons_freed() {
            eprintln!("skipped: the stale-reference mode is off here (no UFFDIO_POISON)");
            return;
        }
        let node = Layout::record(3, 1, 16).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let heap = heap.clone();
                s.spawn(move || {
                    let mut m = heap.attach().unwrap();
                    // SAFETY: every ObjRef below is used before the next
                    // allocation; lists survive in root slot 0.
                    unsafe { m.roots().push(None) };
                    for i in 0..200_000u64 {
                        let n = m.alloc(&node).unwrap();
                        unsafe {
                            n.write_u64(0, t << 32 | i).unwrap();
                            let head = m.roots()[0];
                            // Keep lists short: every 500th node starts over.
                            let next = if i % 500 == 0 { None } else { head };
                            m.store_ref(n, 0, next).unwrap();
                            m.roots()[0] = Some(n);
                        }
                        if t == 0 && i % 40_000 == 39_999 {
                            m.collect();
                        }
                        if i % 2_000 == 0 {
                            // Large garbage: arena ranges and own mappings
                            // are freed, buried and reused.
                            // Sizes vary, so freed arena ranges are reused in part.
                            let n = if i % 4_000 == 0 { 6_000 } else { 2_000 };
                            m.alloc(&Layout::ref_array(6, n).unwrap()).unwrap();
                            let b = m.alloc(&Layout::byte_array(5, 50_000).unwrap()).unwrap();
                            unsafe { b.write_u64(8, i).unwrap() };
                        }
                    }
                    // Walk the last list: ids descend without a gap.
                    let mut cur = unsafe { m.roots()[0] };
                    let mut want = 199_999u64;
                    while let Some(n) = cur {
                        unsafe {
                            assert_eq!(n.read_u64(0).unwrap(), t << 32 | want);
                            cur = n.load_ref(0).unwrap();
                        }
                        want = want.wrapping_sub(1);
                    }
                    assert_eq!(want, 199_499);
                });
            }
        });
        let s = heap.stats();
        assert!(s.cycles >= 5, "{strategy:?}: {} cycles", s.cycles);
        assert!(s.poisoned_pages > 0, "{strategy:?}: nothing poisoned");
        assert!(
            s.unpoisoned_pages > 0,
            "{strategy:?}: allocation never reached the window"
        );
        eprintln!(
            "{strategy:?}: {} cycles, poisoned {} pages, unpoisoned {}",
            s.cycles, s.poisoned_pages, s.unpoisoned_pages
        );
        let (lo, hi) = heap.poisoned_window().unwrap();
        assert!(lo <= hi && lo >= heap.space_start());
    }
}
