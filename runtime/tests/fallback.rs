//! Where userfaultfd is forbidden (here: by a seccomp filter, as container
//! runtimes do), the heap says so once and compacts stop-the-world; young
//! collections that asked for the kernel's dirty tracking say once that
//! they use the card barrier, and do.
//!
//! The test re-runs itself in a child process that installs the filter
//! (seccomp cannot be undone, so it must not touch the test harness).

use std::process::Command;

use movegc::{Heap, Layout, RememberedSet, Strategy};

const CHILD: &str = "MOVEGC_FALLBACK_CHILD";
const TEST: &str = "forbidden_userfaultfd_falls_back_to_stop_the_world_and_says_so_once";

/// EPERM for `userfaultfd(2)` and for `ioctl(_, USERFAULTFD_IOC_NEW)`.
fn forbid_userfaultfd() {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let prog = [
        f(LD_W_ABS, 0, 0, 0),                                         // A = syscall nr
        f(JEQ_K, 4, 0, libc::SYS_userfaultfd as u32),                 // -> deny
        f(JEQ_K, 0, 2, libc::SYS_ioctl as u32),                       // not ioctl -> allow
        f(LD_W_ABS, 0, 0, 24),                                        // A = low 32 bits of args[1]
        f(JEQ_K, 1, 0, 0xaa00),                                       // USERFAULTFD_IOC_NEW -> deny
        f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),                      // allow
        f(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32), // deny
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut _,
    };
    // SAFETY: prctl with valid arguments; `fprog` and `prog` outlive the call
    // (the kernel copies the program).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const _
            ),
            0
        );
    }
}

fn child() {
    forbid_userfaultfd();
    for _ in 0..2 {
        let heap = Heap::builder()
            .capacity(16 << 20)
            .strategy(Strategy::ConcurrentMove)
            .verify(true)
            .build()
            .expect("heap builds without userfaultfd");
        assert_eq!(heap.strategy(), Strategy::StopTheWorld);
        let mut m = heap.attach().unwrap();
        let keep = m.alloc(&Layout::record(0, 0, 8).unwrap()).unwrap();
        m.write_u64(keep, 0, 77).unwrap();
        m.scope(|m| {
            for _ in 0..10_000 {
                m.alloc(&Layout::byte_array(0, 64).unwrap()).unwrap();
            }
        });
        let st = m.collect().expect("collection runs");
        assert_eq!(st.strategy, Some(Strategy::StopTheWorld));
        assert_eq!(m.read_u64(keep, 0).unwrap(), 77);
    }
    for _ in 0..2 {
        let heap = Heap::builder()
            .capacity(16 << 20)
            .generational(true)
            .remembered_set(RememberedSet::WriteProtect)
            .verify(true)
            .build()
            .expect("heap builds without userfaultfd");
        let mut m = heap.attach().unwrap();
        let old = m.alloc(&Layout::record(0, 1, 0).unwrap()).unwrap();
        m.collect().expect("a full cycle: `old` is old");
        m.scope(|m| {
            // Reachable only from `old` once the scope ends.
            let young = m.alloc(&Layout::record(1, 0, 8).unwrap()).unwrap();
            m.write_u64(young, 0, 88).unwrap();
            m.set_ref(old, 0, Some(young)).unwrap();
        });
        m.scope(|m| {
            for _ in 0..10_000 {
                m.alloc(&Layout::byte_array(0, 64).unwrap()).unwrap();
            }
        });
        let st = m.collect_young().expect("collection runs");
        assert!(st.young);
        assert_eq!(st.remembered_set, Some(RememberedSet::Cards));
        let y = m
            .get_ref(old, 0)
            .unwrap()
            .expect("the young object survived");
        assert_eq!(m.read_u64(y, 0).unwrap(), 88);
    }
    println!("CHILD_OK");
}

#[test]
fn forbidden_userfaultfd_falls_back_to_stop_the_world_and_says_so_once() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD_OK"),
        "child failed:\n{stdout}\n{stderr}"
    );
    let says = stderr.matches("userfaultfd is unavailable").count();
    assert_eq!(
        says, 1,
        "expected the fallback message exactly once, stderr:\n{stderr}"
    );
    assert!(stderr.contains("stop-the-world"), "{stderr}");
    let cards = stderr
        .matches("young collections use the card barrier")
        .count();
    assert_eq!(cards, 1, "the card fallback said once, stderr:\n{stderr}");
}
