//! Real-kernel conformance tests for `movegc_gc::uffd`.
//!
//! No mocks: every test maps its own memory, opens its own [`Uffd`] and
//! asserts the bytes it sees afterwards. If no userfaultfd can be opened the
//! uffd tests print `skipped: <reason>` to stderr and return (set
//! `MOVEGC_REQUIRE_UFFD=1` to turn that into a failure). The uAPI constants
//! are checked against our own table (never skips), the installed
//! `<linux/userfaultfd.h>` (if any) and the texts in `../shared` (only if
//! that directory is present; `MOVEGC_SHARED_DIR` overrides its location). Tests run as parallel threads of one process, so:
//!
//! * every region is mapped with `MADV_DONTFORK` except the fork test's own
//!   source: a `fork()` makes every forkable private page non-exclusive and
//!   would turn other tests' MOVEs into `EBUSY`;
//! * the forked child only calls `read(2)` and `_exit(2)`;
//! * only the SIGBUS test installs a SIGBUS handler (process-wide), and
//!   restores the previous one afterwards;
//! * capability/fsuid changes are made in a dedicated thread (Linux
//!   credentials are per thread) that exits afterwards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use movegc_gc::uffd::{
    sys, CopyMode, Event, Features, Ioctls, MoveMode, OpError, OpenOptions, OpenPath, RegisterMode,
    Uffd, UffdError, PAGE_SIZE,
};

const PAGE: usize = PAGE_SIZE;
const HUGE: usize = sys::HPAGE_PMD_SIZE;

// ===========================================================================
// Helpers
// ===========================================================================

/// Open a uffd or print `skipped: <reason>` and return `None`.
fn open_or_skip(test: &str, opts: &OpenOptions) -> Option<Uffd> {
    match Uffd::open(opts) {
        Ok(u) => Some(u),
        Err(e) => {
            if std::env::var_os("MOVEGC_REQUIRE_UFFD").is_some_and(|v| v != "0") {
                panic!("{test}: MOVEGC_REQUIRE_UFFD is set but Uffd::open failed: {e}");
            }
            eprintln!("skipped: {test}: {e}");
            None
        }
    }
}

/// A 2 MiB-aligned read-write anonymous private mapping that is its own VMA
/// (PROT_NONE guards of at least 2 MiB on both sides), so `/proc/self/smaps`
/// has an entry starting exactly at `base`.
struct Region {
    arena: usize,
    arena_len: usize,
    base: usize,
    len: usize,
}

impl Region {
    /// `len` bytes (rounded up to a page), `MADV_DONTFORK`.
    fn new(len: usize) -> Region {
        Region::with(len, true)
    }

    fn with(len: usize, dontfork: bool) -> Region {
        let len = len.div_ceil(PAGE) * PAGE;
        let arena_len = len.div_ceil(HUGE) * HUGE + 4 * HUGE;
        // SAFETY: a fresh anonymous PROT_NONE reservation; no existing memory
        // is affected.
        let arena = unsafe {
            libc::mmap(
                ptr::null_mut(),
                arena_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(arena, libc::MAP_FAILED, "mmap arena");
        let arena = arena as usize;
        let base = (arena + HUGE).div_ceil(HUGE) * HUGE;
        // SAFETY: [base, base+len) lies inside the reservation we own.
        let rc = unsafe { libc::mprotect(base as *mut _, len, libc::PROT_READ | libc::PROT_WRITE) };
        assert_eq!(rc, 0, "mprotect region");
        if dontfork {
            // SAFETY: advice on our own mapping.
            let rc = unsafe { libc::madvise(base as *mut _, len, libc::MADV_DONTFORK) };
            assert_eq!(rc, 0, "MADV_DONTFORK");
        }
        Region {
            arena,
            arena_len,
            base,
            len,
        }
    }

    fn at(&self, off: usize) -> usize {
        assert!(off <= self.len);
        self.base + off
    }

    fn advise(&self, advice: libc::c_int) {
        // SAFETY: advice on our own mapping.
        let rc = unsafe { libc::madvise(self.base as *mut _, self.len, advice) };
        assert_eq!(rc, 0, "madvise({advice})");
    }

    /// `AnonHugePages` of this region's smaps entry, in kB.
    fn anon_huge_kb(&self) -> u64 {
        smaps_field(self.base, "AnonHugePages:").expect("smaps entry for region")
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping the reservation we created; nothing else refers
        // to it once the test is done with the region.
        unsafe { libc::munmap(self.arena as *mut _, self.arena_len) };
    }
}

/// A value in kB from the smaps entry whose VMA starts at `start`.
fn smaps_field(start: usize, field: &str) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let header = format!("{start:x}-");
    let mut in_entry = false;
    for line in smaps.lines() {
        if line.starts_with(&header) {
            in_entry = true;
        } else if in_entry {
            if let Some(rest) = line.strip_prefix(field) {
                return rest.trim().trim_end_matches("kB").trim().parse().ok();
            }
            // The next VMA header ("addr-addr perms ...") ends our entry.
            if line
                .split_whitespace()
                .next()
                .is_some_and(|w| w.contains('-') && !w.ends_with(':'))
            {
                return None;
            }
        }
    }
    None
}

/// Whether the page at `addr` is present (`/proc/self/pagemap` bit 63),
/// without touching it.
fn page_present(addr: usize) -> bool {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open("/proc/self/pagemap").expect("open pagemap");
    let mut buf = [0u8; 8];
    f.read_exact_at(&mut buf, (addr / PAGE * 8) as u64)
        .expect("read pagemap");
    u64::from_le_bytes(buf) & (1 << 63) != 0
}

fn pattern(off: usize, seed: u8) -> u8 {
    (off as u8).wrapping_mul(31) ^ seed ^ ((off >> 12) as u8).wrapping_mul(7)
}

/// Write the test pattern over `[addr, addr+len)` (must be resolvable).
fn fill(addr: usize, len: usize, seed: u8) {
    // SAFETY: callers pass ranges inside a live RW mapping they own.
    let s = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = pattern(i, seed);
    }
}

/// Index of the first byte that differs from the pattern.
fn first_mismatch(addr: usize, len: usize, seed: u8) -> Option<usize> {
    // SAFETY: callers pass ranges inside a live mapping whose pages are
    // present or resolvable without a uffd (never a missing registered page).
    let s = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
    s.iter()
        .enumerate()
        .position(|(i, &b)| b != pattern(i, seed))
}

fn assert_pattern(addr: usize, len: usize, seed: u8, what: &str) {
    if let Some(i) = first_mismatch(addr, len, seed) {
        // SAFETY: as in `first_mismatch`.
        let got = unsafe { *((addr + i) as *const u8) };
        panic!(
            "{what}: byte {i} is {got:#x}, expected {:#x}",
            pattern(i, seed)
        );
    }
}

/// Like [`assert_pattern`] for a sub-range that starts `base_off` bytes into
/// a range filled with `fill(.., seed)`.
fn assert_pattern_from(addr: usize, len: usize, seed: u8, base_off: usize, what: &str) {
    // SAFETY: as in `first_mismatch`.
    let s = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
    if let Some(i) = s
        .iter()
        .enumerate()
        .position(|(i, &b)| b != pattern(base_off + i, seed))
    {
        panic!(
            "{what}: byte {i} is {:#x}, expected {:#x}",
            s[i],
            pattern(base_off + i, seed)
        );
    }
}

fn assert_zero(addr: usize, len: usize, what: &str) {
    // SAFETY: as in `first_mismatch`.
    let s = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
    if let Some(i) = s.iter().position(|&b| b != 0) {
        panic!("{what}: byte {i} is {:#x}, expected 0", s[i]);
    }
}

fn read_byte(addr: usize) -> u8 {
    // SAFETY: callers pass an address in a live mapping; a missing
    // registered page blocks (or raises SIGBUS) until resolved, which is
    // the point of the tests that call this.
    unsafe { ptr::read_volatile(addr as *const u8) }
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Wait (up to 2 s) until thread `tid` of this process is in interruptible
/// sleep (state `S` in `/proc/self/task/<tid>/stat`), e.g. blocked in
/// `handle_userfault`.
fn wait_until_sleeping(tid: u32) {
    let path = format!("/proc/self/task/{tid}/stat");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(&path).unwrap_or_default();
        // "tid (comm) S ...": the state follows the last ')'.
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("thread {tid} did not block");
}

fn expect_op_err(r: Result<(), OpError>, done: usize, error: UffdError, what: &str) {
    match r {
        Err(e) if e.done == done && e.error == error => {}
        other => panic!(
            "{what}: expected Err(OpError {{ done: {done}, error: {error:?} }}), got {other:?}"
        ),
    }
}

// --- per-thread credential changes (Linux credentials are per thread) ------

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_SYS_PTRACE: u32 = 19;

/// Drop `CAP_SYS_PTRACE` and switch the fsuid to 65534 (which drops the
/// filesystem capabilities) in the *calling thread only*.
fn become_unprivileged_in_this_thread() {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two `CapData` records for version 3 headers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "capget");
    data[0].effective &= !(1 << CAP_SYS_PTRACE);
    data[0].permitted &= !(1 << CAP_SYS_PTRACE);
    // SAFETY: capset reads the header and two `CapData` records; the raw
    // syscall only affects the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    assert_eq!(rc, 0, "capset");
    // SAFETY: raw setfsuid affects only the calling thread's credentials.
    unsafe { libc::syscall(libc::SYS_setfsuid, 65534) };
}

// ===========================================================================
// 1. uAPI constants: own table, the system header, the texts in ../shared
// ===========================================================================

/// Default location of the shared reference material: `../shared` beside
/// the repository. Optional: a fresh clone has no such directory.
const DEFAULT_SHARED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared");
/// Environment variable overriding [`DEFAULT_SHARED_DIR`] (point it at a
/// nonexistent path to check the tests' behaviour without `../shared`).
const SHARED_DIR_ENV: &str = "MOVEGC_SHARED_DIR";
const SYSTEM_HEADER: &str = "/usr/include/linux/userfaultfd.h";

/// The shared directory, if it exists and can be read; otherwise print
/// `skipped: ../shared not present (...)` for `test` and return `None`.
fn shared_dir_or_skip(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(SHARED_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SHARED_DIR));
    match std::fs::read_dir(&dir) {
        Ok(_) => Some(dir),
        Err(e) => {
            eprintln!(
                "skipped: ../shared not present ({}: {e}); {test} not checked against it",
                dir.display()
            );
            None
        }
    }
}

/// Our own transcription of the definitions in the upstream
/// `include/uapi/linux/userfaultfd.h` (Linux 6.8+, with `UFFDIO_MOVE`), as C
/// text: the request numbers are recomputed from it with the `_IOC` macro
/// math of [`eval_c`] (`_IOWR(0xAA, nr, sizeof(struct))`) and the struct
/// layouts with C rules, independently of `sys.rs`.
const OWN_UAPI_TABLE: &str = r#"
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#define UFFD_USER_MODE_ONLY 1
#define UFFD_API ((__u64)0xAA)
#define _UFFDIO_REGISTER		(0x00)
#define _UFFDIO_UNREGISTER		(0x01)
#define _UFFDIO_WAKE			(0x02)
#define _UFFDIO_COPY			(0x03)
#define _UFFDIO_ZEROPAGE		(0x04)
#define _UFFDIO_MOVE			(0x05)
#define _UFFDIO_WRITEPROTECT		(0x06)
#define _UFFDIO_CONTINUE		(0x07)
#define _UFFDIO_POISON			(0x08)
#define _UFFDIO_API			(0x3F)
struct uffdio_api {
	__u64 api;
	__u64 features;
	__u64 ioctls;
};
struct uffdio_range {
	__u64 start;
	__u64 len;
};
struct uffdio_register {
	struct uffdio_range range;
	__u64 mode;
	__u64 ioctls;
};
struct uffdio_copy {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 copy;
};
struct uffdio_zeropage {
	struct uffdio_range range;
	__u64 mode;
	__s64 zeropage;
};
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;
};
struct uffdio_writeprotect {
	struct uffdio_range range;
	__u64 mode;
};
struct uffdio_continue {
	struct uffdio_range range;
	__u64 mode;
	__s64 mapped;
};
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO 0xAA
#define UFFDIO_API		_IOWR(UFFDIO, _UFFDIO_API, struct uffdio_api)
#define UFFDIO_REGISTER		_IOWR(UFFDIO, _UFFDIO_REGISTER, struct uffdio_register)
#define UFFDIO_UNREGISTER	_IOR(UFFDIO, _UFFDIO_UNREGISTER, struct uffdio_range)
#define UFFDIO_WAKE		_IOR(UFFDIO, _UFFDIO_WAKE, struct uffdio_range)
#define UFFDIO_COPY		_IOWR(UFFDIO, _UFFDIO_COPY, struct uffdio_copy)
#define UFFDIO_ZEROPAGE		_IOWR(UFFDIO, _UFFDIO_ZEROPAGE, struct uffdio_zeropage)
#define UFFDIO_MOVE		_IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#define UFFDIO_WRITEPROTECT	_IOWR(UFFDIO, _UFFDIO_WRITEPROTECT, struct uffdio_writeprotect)
#define UFFDIO_CONTINUE		_IOWR(UFFDIO, _UFFDIO_CONTINUE, struct uffdio_continue)
#define UFFDIO_POISON		_IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#define UFFD_EVENT_PAGEFAULT	0x12
#define UFFD_EVENT_FORK		0x13
#define UFFD_EVENT_REMAP	0x14
#define UFFD_EVENT_REMOVE	0x15
#define UFFD_EVENT_UNMAP	0x16
#define UFFD_PAGEFAULT_FLAG_WRITE	(1<<0)
#define UFFD_PAGEFAULT_FLAG_WP		(1<<1)
#define UFFD_PAGEFAULT_FLAG_MINOR	(1<<2)
#define UFFD_FEATURE_PAGEFAULT_FLAG_WP		(1<<0)
#define UFFD_FEATURE_EVENT_FORK			(1<<1)
#define UFFD_FEATURE_EVENT_REMAP		(1<<2)
#define UFFD_FEATURE_EVENT_REMOVE		(1<<3)
#define UFFD_FEATURE_MISSING_HUGETLBFS		(1<<4)
#define UFFD_FEATURE_MISSING_SHMEM		(1<<5)
#define UFFD_FEATURE_EVENT_UNMAP		(1<<6)
#define UFFD_FEATURE_SIGBUS			(1<<7)
#define UFFD_FEATURE_THREAD_ID			(1<<8)
#define UFFD_FEATURE_MINOR_HUGETLBFS		(1<<9)
#define UFFD_FEATURE_MINOR_SHMEM		(1<<10)
#define UFFD_FEATURE_EXACT_ADDRESS		(1<<11)
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM		(1<<12)
#define UFFD_FEATURE_WP_UNPOPULATED		(1<<13)
#define UFFD_FEATURE_POISON			(1<<14)
#define UFFD_FEATURE_WP_ASYNC			(1<<15)
#define UFFD_FEATURE_MOVE			(1<<16)
#define UFFDIO_REGISTER_MODE_MISSING	((__u64)1<<0)
#define UFFDIO_REGISTER_MODE_WP		((__u64)1<<1)
#define UFFDIO_REGISTER_MODE_MINOR	((__u64)1<<2)
#define UFFDIO_COPY_MODE_DONTWAKE		((__u64)1<<0)
#define UFFDIO_COPY_MODE_WP			((__u64)1<<1)
#define UFFDIO_ZEROPAGE_MODE_DONTWAKE		((__u64)1<<0)
#define UFFDIO_MOVE_MODE_DONTWAKE		((__u64)1<<0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES	((__u64)1<<1)
#define UFFDIO_WRITEPROTECT_MODE_WP		((__u64)1<<0)
#define UFFDIO_WRITEPROTECT_MODE_DONTWAKE	((__u64)1<<1)
#define UFFDIO_CONTINUE_MODE_DONTWAKE		((__u64)1<<0)
#define UFFDIO_CONTINUE_MODE_WP			((__u64)1<<1)
#define UFFDIO_POISON_MODE_DONTWAKE		((__u64)1<<0)
"#;

/// An ioctl request number as `u64` (`libc::Ioctl` is `c_ulong` on glibc,
/// `c_int` on musl).
#[allow(clippy::unnecessary_cast)]
fn req(r: libc::Ioctl) -> u64 {
    r as u64
}

/// Every constant in `sys`, by its uAPI name.
fn sys_constants() -> HashMap<&'static str, u64> {
    let c: &[(&str, u64)] = &[
        ("UFFD_API", sys::UFFD_API),
        ("UFFDIO", sys::UFFDIO as u64),
        ("USERFAULTFD_IOC", sys::USERFAULTFD_IOC as u64),
        ("USERFAULTFD_IOC_NEW", req(sys::USERFAULTFD_IOC_NEW)),
        ("UFFD_USER_MODE_ONLY", sys::UFFD_USER_MODE_ONLY as u64),
        ("_UFFDIO_REGISTER", sys::_UFFDIO_REGISTER as u64),
        ("_UFFDIO_UNREGISTER", sys::_UFFDIO_UNREGISTER as u64),
        ("_UFFDIO_WAKE", sys::_UFFDIO_WAKE as u64),
        ("_UFFDIO_COPY", sys::_UFFDIO_COPY as u64),
        ("_UFFDIO_ZEROPAGE", sys::_UFFDIO_ZEROPAGE as u64),
        ("_UFFDIO_MOVE", sys::_UFFDIO_MOVE as u64),
        ("_UFFDIO_WRITEPROTECT", sys::_UFFDIO_WRITEPROTECT as u64),
        ("_UFFDIO_CONTINUE", sys::_UFFDIO_CONTINUE as u64),
        ("_UFFDIO_POISON", sys::_UFFDIO_POISON as u64),
        ("_UFFDIO_API", sys::_UFFDIO_API as u64),
        ("UFFDIO_API", req(sys::UFFDIO_API)),
        ("UFFDIO_REGISTER", req(sys::UFFDIO_REGISTER)),
        ("UFFDIO_UNREGISTER", req(sys::UFFDIO_UNREGISTER)),
        ("UFFDIO_WAKE", req(sys::UFFDIO_WAKE)),
        ("UFFDIO_COPY", req(sys::UFFDIO_COPY)),
        ("UFFDIO_ZEROPAGE", req(sys::UFFDIO_ZEROPAGE)),
        ("UFFDIO_MOVE", req(sys::UFFDIO_MOVE)),
        ("UFFDIO_WRITEPROTECT", req(sys::UFFDIO_WRITEPROTECT)),
        ("UFFDIO_CONTINUE", req(sys::UFFDIO_CONTINUE)),
        ("UFFDIO_POISON", req(sys::UFFDIO_POISON)),
        ("UFFD_EVENT_PAGEFAULT", sys::UFFD_EVENT_PAGEFAULT as u64),
        ("UFFD_EVENT_FORK", sys::UFFD_EVENT_FORK as u64),
        ("UFFD_EVENT_REMAP", sys::UFFD_EVENT_REMAP as u64),
        ("UFFD_EVENT_REMOVE", sys::UFFD_EVENT_REMOVE as u64),
        ("UFFD_EVENT_UNMAP", sys::UFFD_EVENT_UNMAP as u64),
        ("UFFD_PAGEFAULT_FLAG_WRITE", sys::UFFD_PAGEFAULT_FLAG_WRITE),
        ("UFFD_PAGEFAULT_FLAG_WP", sys::UFFD_PAGEFAULT_FLAG_WP),
        ("UFFD_PAGEFAULT_FLAG_MINOR", sys::UFFD_PAGEFAULT_FLAG_MINOR),
        (
            "UFFD_FEATURE_PAGEFAULT_FLAG_WP",
            sys::UFFD_FEATURE_PAGEFAULT_FLAG_WP,
        ),
        ("UFFD_FEATURE_EVENT_FORK", sys::UFFD_FEATURE_EVENT_FORK),
        ("UFFD_FEATURE_EVENT_REMAP", sys::UFFD_FEATURE_EVENT_REMAP),
        ("UFFD_FEATURE_EVENT_REMOVE", sys::UFFD_FEATURE_EVENT_REMOVE),
        (
            "UFFD_FEATURE_MISSING_HUGETLBFS",
            sys::UFFD_FEATURE_MISSING_HUGETLBFS,
        ),
        (
            "UFFD_FEATURE_MISSING_SHMEM",
            sys::UFFD_FEATURE_MISSING_SHMEM,
        ),
        ("UFFD_FEATURE_EVENT_UNMAP", sys::UFFD_FEATURE_EVENT_UNMAP),
        ("UFFD_FEATURE_SIGBUS", sys::UFFD_FEATURE_SIGBUS),
        ("UFFD_FEATURE_THREAD_ID", sys::UFFD_FEATURE_THREAD_ID),
        (
            "UFFD_FEATURE_MINOR_HUGETLBFS",
            sys::UFFD_FEATURE_MINOR_HUGETLBFS,
        ),
        ("UFFD_FEATURE_MINOR_SHMEM", sys::UFFD_FEATURE_MINOR_SHMEM),
        (
            "UFFD_FEATURE_EXACT_ADDRESS",
            sys::UFFD_FEATURE_EXACT_ADDRESS,
        ),
        (
            "UFFD_FEATURE_WP_HUGETLBFS_SHMEM",
            sys::UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
        ),
        (
            "UFFD_FEATURE_WP_UNPOPULATED",
            sys::UFFD_FEATURE_WP_UNPOPULATED,
        ),
        ("UFFD_FEATURE_POISON", sys::UFFD_FEATURE_POISON),
        ("UFFD_FEATURE_WP_ASYNC", sys::UFFD_FEATURE_WP_ASYNC),
        ("UFFD_FEATURE_MOVE", sys::UFFD_FEATURE_MOVE),
        (
            "UFFDIO_REGISTER_MODE_MISSING",
            sys::UFFDIO_REGISTER_MODE_MISSING,
        ),
        ("UFFDIO_REGISTER_MODE_WP", sys::UFFDIO_REGISTER_MODE_WP),
        (
            "UFFDIO_REGISTER_MODE_MINOR",
            sys::UFFDIO_REGISTER_MODE_MINOR,
        ),
        ("UFFDIO_COPY_MODE_DONTWAKE", sys::UFFDIO_COPY_MODE_DONTWAKE),
        ("UFFDIO_COPY_MODE_WP", sys::UFFDIO_COPY_MODE_WP),
        (
            "UFFDIO_ZEROPAGE_MODE_DONTWAKE",
            sys::UFFDIO_ZEROPAGE_MODE_DONTWAKE,
        ),
        ("UFFDIO_MOVE_MODE_DONTWAKE", sys::UFFDIO_MOVE_MODE_DONTWAKE),
        (
            "UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES",
            sys::UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
        ),
        (
            "UFFDIO_WRITEPROTECT_MODE_WP",
            sys::UFFDIO_WRITEPROTECT_MODE_WP,
        ),
        (
            "UFFDIO_WRITEPROTECT_MODE_DONTWAKE",
            sys::UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
        ),
        (
            "UFFDIO_CONTINUE_MODE_DONTWAKE",
            sys::UFFDIO_CONTINUE_MODE_DONTWAKE,
        ),
        ("UFFDIO_CONTINUE_MODE_WP", sys::UFFDIO_CONTINUE_MODE_WP),
        (
            "UFFDIO_POISON_MODE_DONTWAKE",
            sys::UFFDIO_POISON_MODE_DONTWAKE,
        ),
    ];
    c.iter().copied().collect()
}

/// A struct layout: (size, [(field, offset)]).
type StructLayout = (usize, Vec<(&'static str, usize)>);

/// Layout of every struct in `sys`.
fn sys_structs() -> HashMap<&'static str, StructLayout> {
    use std::mem::{offset_of, size_of};
    let mut m = HashMap::new();
    m.insert(
        "uffdio_api",
        (
            size_of::<sys::uffdio_api>(),
            vec![
                ("api", offset_of!(sys::uffdio_api, api)),
                ("features", offset_of!(sys::uffdio_api, features)),
                ("ioctls", offset_of!(sys::uffdio_api, ioctls)),
            ],
        ),
    );
    m.insert(
        "uffdio_range",
        (
            size_of::<sys::uffdio_range>(),
            vec![
                ("start", offset_of!(sys::uffdio_range, start)),
                ("len", offset_of!(sys::uffdio_range, len)),
            ],
        ),
    );
    m.insert(
        "uffdio_register",
        (
            size_of::<sys::uffdio_register>(),
            vec![
                ("range", offset_of!(sys::uffdio_register, range)),
                ("mode", offset_of!(sys::uffdio_register, mode)),
                ("ioctls", offset_of!(sys::uffdio_register, ioctls)),
            ],
        ),
    );
    m.insert(
        "uffdio_copy",
        (
            size_of::<sys::uffdio_copy>(),
            vec![
                ("dst", offset_of!(sys::uffdio_copy, dst)),
                ("src", offset_of!(sys::uffdio_copy, src)),
                ("len", offset_of!(sys::uffdio_copy, len)),
                ("mode", offset_of!(sys::uffdio_copy, mode)),
                ("copy", offset_of!(sys::uffdio_copy, copy)),
            ],
        ),
    );
    m.insert(
        "uffdio_zeropage",
        (
            size_of::<sys::uffdio_zeropage>(),
            vec![
                ("range", offset_of!(sys::uffdio_zeropage, range)),
                ("mode", offset_of!(sys::uffdio_zeropage, mode)),
                ("zeropage", offset_of!(sys::uffdio_zeropage, zeropage)),
            ],
        ),
    );
    m.insert(
        "uffdio_move",
        (
            size_of::<sys::uffdio_move>(),
            vec![
                ("dst", offset_of!(sys::uffdio_move, dst)),
                ("src", offset_of!(sys::uffdio_move, src)),
                ("len", offset_of!(sys::uffdio_move, len)),
                ("mode", offset_of!(sys::uffdio_move, mode)),
                ("move", offset_of!(sys::uffdio_move, move_)),
            ],
        ),
    );
    m.insert(
        "uffdio_writeprotect",
        (
            size_of::<sys::uffdio_writeprotect>(),
            vec![
                ("range", offset_of!(sys::uffdio_writeprotect, range)),
                ("mode", offset_of!(sys::uffdio_writeprotect, mode)),
            ],
        ),
    );
    m.insert(
        "uffdio_continue",
        (
            size_of::<sys::uffdio_continue>(),
            vec![
                ("range", offset_of!(sys::uffdio_continue, range)),
                ("mode", offset_of!(sys::uffdio_continue, mode)),
                ("mapped", offset_of!(sys::uffdio_continue, mapped)),
            ],
        ),
    );
    m.insert(
        "uffdio_poison",
        (
            size_of::<sys::uffdio_poison>(),
            vec![
                ("range", offset_of!(sys::uffdio_poison, range)),
                ("mode", offset_of!(sys::uffdio_poison, mode)),
                ("updated", offset_of!(sys::uffdio_poison, updated)),
            ],
        ),
    );
    m.insert("uffd_msg", (size_of::<sys::uffd_msg>(), vec![]));
    m
}

/// A C struct parsed from header text: size and (field, offset) list.
#[derive(Debug, Clone)]
struct CStruct {
    size: usize,
    align: usize,
    fields: Vec<(String, usize)>,
}

/// Remove `/* ... */` comments (within one struct body or define).
fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find("*/") {
            Some(j) => rest = &rest[i + 2 + j + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Parse every simple `struct NAME { scalar/struct fields };` in `text`.
/// Bodies with unions or nested definitions are skipped.
fn parse_structs(text: &str) -> HashMap<String, CStruct> {
    let mut out: HashMap<String, CStruct> = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        let name = t
            .strip_prefix("struct ")
            .and_then(|r| r.strip_suffix('{'))
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let Some(name) = name else {
            i += 1;
            continue;
        };
        let mut body = String::new();
        let mut j = i + 1;
        while j < lines.len() && !lines[j].trim_start().starts_with('}') {
            // Drop preprocessor lines (the header defines mode bits inside bodies).
            if !lines[j].trim_start().starts_with('#') {
                body.push_str(lines[j]);
                body.push('\n');
            }
            j += 1;
        }
        i = j + 1;
        let body = strip_comments(&body);
        if body.contains('{') || body.contains("union") {
            continue;
        }
        let (mut off, mut align) = (0usize, 1usize);
        let mut fields = Vec::new();
        let mut ok = true;
        for decl in body.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let toks: Vec<&str> = decl.split_whitespace().collect();
            let (size, fname) = match toks.as_slice() {
                [ty, f] => match *ty {
                    "__u64" | "__s64" => (8, *f),
                    "__u32" | "__s32" => (4, *f),
                    "__u16" | "__s16" => (2, *f),
                    "__u8" | "__s8" => (1, *f),
                    _ => {
                        ok = false;
                        break;
                    }
                },
                ["struct", sname, f] => match out.get(*sname) {
                    Some(s) => {
                        let (sz, al) = (s.size, s.align);
                        off = off.div_ceil(al) * al;
                        fields.push((f.to_string(), off));
                        off += sz;
                        align = align.max(al);
                        continue;
                    }
                    None => {
                        ok = false;
                        break;
                    }
                },
                _ => {
                    ok = false;
                    break;
                }
            };
            off = off.div_ceil(size) * size;
            fields.push((fname.to_string(), off));
            off += size;
            align = align.max(size);
        }
        if ok && !fields.is_empty() {
            let size = off.div_ceil(align) * align;
            out.insert(
                name,
                CStruct {
                    size,
                    align,
                    fields,
                },
            );
        }
    }
    out
}

/// `#define NAME VALUE` lines (continuations joined, comments removed).
fn parse_defines(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("#define")?;
            let rest = strip_comments(rest);
            let mut parts = rest.trim().splitn(2, char::is_whitespace);
            let name = parts.next()?.to_string();
            let value = parts.next()?.trim().to_string();
            (!value.is_empty() && !name.contains('(')).then_some((name, value))
        })
        .collect()
}

/// Evaluate the subset of C constant expressions the uAPI header uses.
fn eval_c(
    expr: &str,
    defs: &HashMap<String, u64>,
    structs: &HashMap<String, CStruct>,
) -> Option<u64> {
    let mut e = expr.trim().replace("(__u64)", "");
    loop {
        let t = e.trim();
        if t.starts_with('(') && t.ends_with(')') && balanced(&t[1..t.len() - 1]) {
            e = t[1..t.len() - 1].to_string();
        } else {
            break;
        }
    }
    let e = e.trim();
    for (mac, dir) in [("_IOWR(", 3u64), ("_IOR(", 2), ("_IOW(", 1), ("_IO(", 0)] {
        if let Some(args) = e.strip_prefix(mac).and_then(|r| r.strip_suffix(')')) {
            let args: Vec<&str> = args.split(',').map(str::trim).collect();
            let ty = eval_c(args.first()?, defs, structs)?;
            let nr = eval_c(args.get(1)?, defs, structs)?;
            let size = match args.get(2) {
                Some(s) => structs.get(s.strip_prefix("struct")?.trim())?.size as u64,
                None => 0,
            };
            return Some(dir << 30 | size << 16 | ty << 8 | nr);
        }
    }
    if let Some((a, b)) = e.split_once("<<") {
        let shift = u32::try_from(eval_c(b, defs, structs)?).ok()?;
        return eval_c(a, defs, structs)?.checked_shl(shift);
    }
    if let Some(h) = e.strip_prefix("0x").or_else(|| e.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Ok(v) = e.parse::<u64>() {
        return Some(v);
    }
    defs.get(e).copied()
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// What [`check_c_text`] found in a C text.
struct TextChecks {
    /// Number of checks made (defines and structs).
    checks: usize,
    /// Names of the `sys` constants and structs the text defined (and that matched).
    names: std::collections::HashSet<String>,
    /// Every struct the text defines.
    structs: HashMap<String, CStruct>,
    /// Every define the text defines (evaluated).
    defs: HashMap<String, u64>,
}

/// Compare every define and struct in a C header text with `sys`.
fn check_c_text(source: &str, text: &str) -> TextChecks {
    check_c_text_over(source, text, HashMap::new(), HashMap::new())
}

/// [`check_c_text`] with `defs` and `structs` already known (e.g. those of
/// another header); the text's own definitions do not replace them.
fn check_c_text_over(
    source: &str,
    text: &str,
    mut defs: HashMap<String, u64>,
    mut structs: HashMap<String, CStruct>,
) -> TextChecks {
    let ours = sys_constants();
    let our_structs = sys_structs();
    for (name, s) in parse_structs(text) {
        structs.entry(name).or_insert(s);
    }
    let mut names = std::collections::HashSet::new();
    let mut checks = 0;
    for (name, (size, fields)) in &our_structs {
        if let Some(s) = structs.get(*name) {
            assert_eq!(s.size, *size, "{source}: sizeof(struct {name})");
            let theirs: Vec<(&str, usize)> =
                s.fields.iter().map(|(f, o)| (f.as_str(), *o)).collect();
            assert_eq!(&theirs, fields, "{source}: fields of struct {name}");
            names.insert(format!("struct {name}"));
            checks += 1;
        }
    }
    for (name, value) in parse_defines(text) {
        if defs.contains_key(&name) {
            continue;
        }
        let Some(v) = eval_c(&value, &defs, &structs) else {
            continue;
        };
        defs.insert(name.clone(), v);
        if let Some(&mine) = ours.get(name.as_str()) {
            assert_eq!(
                mine, v,
                "{source}: #define {name} {value} = {v:#x}, sys has {mine:#x}"
            );
            names.insert(name);
            checks += 1;
        }
    }
    TextChecks {
        checks,
        names,
        structs,
        defs,
    }
}

/// The reference doc writes measured values in backticks: `NAME=VALUE`,
/// `NAME 0xHEX`, `size_of::<T>()==N`, lists sharing a prefix
/// (`UFFDIO_MOVE_MODE_DONTWAKE=1, _ALLOW_SRC_HOLES=2`) and short names after
/// the word "features". Returns the number of checks made.
fn check_reference_doc(text: &str) -> usize {
    let ours = sys_constants();
    let our_structs = sys_structs();
    let mut checks = 0;
    let mut rest = text;
    let mut before = String::new();
    while let Some(i) = rest.find('`') {
        before.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('`') else { break };
        let span = &after[..j];
        rest = &after[j + 1..];
        let features_ctx = before.trim_end().ends_with("features");
        let mut prev: Option<String> = None;
        for entry in span.split(", ") {
            let (lhs, rhs, is_size) = if let Some((l, r)) = entry.split_once("==") {
                (l.trim(), r.trim(), true)
            } else if let Some((l, r)) = entry.split_once('=') {
                (l.trim(), r.trim(), false)
            } else if let Some((l, r)) = entry.split_once(' ') {
                (l.trim(), r.trim(), false)
            } else {
                continue;
            };
            if is_size {
                let name = lhs
                    .strip_prefix("size_of::<")
                    .and_then(|r| r.strip_suffix(">()"))
                    .unwrap_or(lhs);
                if let (Some((size, _)), Ok(n)) = (our_structs.get(name), rhs.parse::<usize>()) {
                    assert_eq!(*size, n, "reference: sizeof {name}");
                    checks += 1;
                }
                continue;
            }
            let Some(value) = eval_c(rhs, &HashMap::new(), &HashMap::new()) else {
                continue;
            };
            let full = if lhs.starts_with('_') && !lhs.starts_with("_UFFDIO") {
                // Continuation of the previous entry's prefix.
                match &prev {
                    Some(p) => format!("{}{lhs}", &p[..p.rfind('_').unwrap_or(p.len())]),
                    None => continue,
                }
            } else if features_ctx && !lhs.starts_with("UFFD") {
                format!("UFFD_FEATURE_{lhs}")
            } else if !ours.contains_key(lhs) && value > 0xffff {
                format!("UFFDIO_{lhs}")
            } else {
                lhs.to_string()
            };
            if let Some(&mine) = ours.get(full.as_str()) {
                assert_eq!(
                    mine, value,
                    "reference: `{entry}` (as {full}) vs sys {mine:#x}"
                );
                checks += 1;
            }
            prev = Some(full);
        }
        before = String::from(span);
    }
    // "UFFDIO_API returned features `0x1ffff`": every bit through MOVE.
    assert!(text.contains("returned features `0x1ffff`"));
    assert_eq!(
        Features::all().bits(),
        0x1ffff,
        "Features covers every bit through MOVE"
    );
    checks
}

/// (b) Every constant and struct in `sys` against our own transcription of
/// the uAPI header ([`OWN_UAPI_TABLE`]), with the ioctl numbers recomputed
/// by the `_IOC` macro math. Needs no file: never skips.
#[test]
fn sys_constants_match_own_table() {
    let own = check_c_text("own uAPI table", OWN_UAPI_TABLE);
    let mut missing: Vec<&str> = sys_constants()
        .into_keys()
        .filter(|n| !own.names.contains(*n))
        .collect();
    missing.extend(
        sys_structs()
            .into_keys()
            .filter(|n| *n != "uffd_msg" && !own.names.contains(&format!("struct {n}"))),
    );
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "sys constants/structs not in the own uAPI table: {missing:?}"
    );
    // The request numbers once more, spelled out: _IOWR = 3, _IOR = 2,
    // _IO = 0 in the two direction bits; size in bits 16..30; type 0xAA.
    let ioc = |dir: u64, nr: u64, size: usize| dir << 30 | (size as u64) << 16 | 0xAA << 8 | nr;
    use std::mem::size_of;
    for (name, mine, theirs) in [
        (
            "UFFDIO_API",
            sys::UFFDIO_API,
            ioc(3, 0x3F, size_of::<sys::uffdio_api>()),
        ),
        (
            "UFFDIO_REGISTER",
            sys::UFFDIO_REGISTER,
            ioc(3, 0x00, size_of::<sys::uffdio_register>()),
        ),
        (
            "UFFDIO_UNREGISTER",
            sys::UFFDIO_UNREGISTER,
            ioc(2, 0x01, size_of::<sys::uffdio_range>()),
        ),
        (
            "UFFDIO_WAKE",
            sys::UFFDIO_WAKE,
            ioc(2, 0x02, size_of::<sys::uffdio_range>()),
        ),
        (
            "UFFDIO_COPY",
            sys::UFFDIO_COPY,
            ioc(3, 0x03, size_of::<sys::uffdio_copy>()),
        ),
        (
            "UFFDIO_ZEROPAGE",
            sys::UFFDIO_ZEROPAGE,
            ioc(3, 0x04, size_of::<sys::uffdio_zeropage>()),
        ),
        (
            "UFFDIO_MOVE",
            sys::UFFDIO_MOVE,
            ioc(3, 0x05, size_of::<sys::uffdio_move>()),
        ),
        (
            "UFFDIO_WRITEPROTECT",
            sys::UFFDIO_WRITEPROTECT,
            ioc(3, 0x06, size_of::<sys::uffdio_writeprotect>()),
        ),
        (
            "UFFDIO_CONTINUE",
            sys::UFFDIO_CONTINUE,
            ioc(3, 0x07, size_of::<sys::uffdio_continue>()),
        ),
        (
            "UFFDIO_POISON",
            sys::UFFDIO_POISON,
            ioc(3, 0x08, size_of::<sys::uffdio_poison>()),
        ),
        (
            "USERFAULTFD_IOC_NEW",
            sys::USERFAULTFD_IOC_NEW,
            ioc(0, 0x00, 0),
        ),
    ] {
        assert_eq!(
            req(mine),
            theirs,
            "{name}: sys {:#x} vs _IOC math {theirs:#x}",
            req(mine)
        );
    }
    assert_eq!(req(sys::UFFDIO_MOVE), 0xc028_aa05, "UFFDIO_MOVE");
    assert_eq!(
        std::mem::size_of::<sys::uffd_msg>(),
        32,
        "sizeof(struct uffd_msg)"
    );
    assert_eq!(
        Features::all().bits(),
        0x1ffff,
        "Features covers every bit through MOVE"
    );
    eprintln!("uAPI checks: own table {}", own.checks);
}

/// (a) `sys` against the installed kernel uAPI header, if any. Constants the
/// header predates (e.g. `UFFDIO_MOVE` in headers older than 6.8) are
/// evaluated from the own table layered over the header's definitions, so
/// their request numbers use the header's `UFFDIO` and the `_IOC` math.
#[test]
fn sys_constants_match_system_header() {
    let h = match std::fs::read_to_string(SYSTEM_HEADER) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("skipped: {SYSTEM_HEADER} not installed ({e}); sys checked against the own table only");
            return;
        }
    };
    let hdr = check_c_text(SYSTEM_HEADER, &h);
    assert!(
        hdr.structs.contains_key("uffdio_api"),
        "parsed {SYSTEM_HEADER}"
    );
    assert!(
        hdr.checks >= 40,
        "only {} checks against {SYSTEM_HEADER}",
        hdr.checks
    );
    let mut not_in_header: Vec<&str> = sys_constants()
        .into_keys()
        .filter(|n| !hdr.names.contains(*n))
        .collect();
    not_in_header.sort_unstable();
    // Everything the header lacks, from the own table over the header.
    let layered = check_c_text_over(
        "own uAPI table over the system header",
        OWN_UAPI_TABLE,
        hdr.defs.clone(),
        hdr.structs.clone(),
    );
    for n in &not_in_header {
        assert!(
            layered.names.contains(*n),
            "{n}: neither in {SYSTEM_HEADER} nor computable from the own table over it"
        );
    }
    eprintln!(
        "uAPI checks: {SYSTEM_HEADER} {} ({} names); not defined there, checked against the own table: {}",
        hdr.checks,
        hdr.names.len(),
        if not_in_header.is_empty() { "none".to_string() } else { not_in_header.join(" ") }
    );
}

/// (c) `sys` against the texts in `../shared` (`$MOVEGC_SHARED_DIR`): the
/// seeds (man-page and commit texts) and the reference doc's values measured
/// with C. Skips, saying so, when that directory is not present.
#[test]
fn sys_constants_match_shared_texts() {
    let Some(shared) = shared_dir_or_skip("sys_constants_match_shared_texts") else {
        return;
    };
    // --- ../shared/seeds (mandatory when ../shared is present) ---
    let dir = shared.join("seeds");
    let mut seeds = String::new();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seeds missing at {}: {e}", dir.display()));
    let mut n_files = 0;
    for entry in entries {
        let path = entry.expect("read_dir entry").path();
        if path.extension().is_some_and(|x| x == "txt") {
            seeds.push_str(&std::fs::read_to_string(&path).expect("read seed"));
            seeds.push('\n');
            n_files += 1;
        }
    }
    assert!(n_files > 0, "no *.txt seeds in {}", dir.display());

    let TextChecks {
        checks: seed_checks,
        structs: seed_structs,
        ..
    } = check_c_text("seeds", &seeds);
    // The seed carries the UFFDIO_MOVE man-page text with the struct.
    let mv = seed_structs
        .get("uffdio_move")
        .expect("seeds must contain the `struct uffdio_move {` definition");
    assert_eq!(mv.size, 40);
    let names: Vec<&str> = mv.fields.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["dst", "src", "len", "mode", "move"]);
    assert!(seed_checks >= 1);
    // Mode names of UFFDIO_MOVE in the text are exactly those in sys/MoveMode.
    let mut mode_names: Vec<&str> = seeds
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("UFFDIO_MOVE_MODE_"))
        .collect();
    mode_names.sort_unstable();
    mode_names.dedup();
    assert_eq!(
        mode_names,
        [
            "UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES",
            "UFFDIO_MOVE_MODE_DONTWAKE"
        ]
    );
    let mut ours: Vec<String> = MoveMode::all()
        .iter_names()
        .map(|(n, _)| format!("UFFDIO_MOVE_MODE_{n}"))
        .collect();
    ours.sort_unstable();
    assert_eq!(mode_names, ours);
    // Every UFFD_FEATURE_* the history mentions is a Features flag ("FORK"
    // is a 2015 commit message's placeholder for what became EVENT_FORK).
    let known: Vec<&str> = Features::all().names();
    for word in seeds.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(f) = word.strip_prefix("UFFD_FEATURE_") {
            assert!(
                known.contains(&f) || f == "FORK",
                "seeds mention UFFD_FEATURE_{f}, unknown to Features"
            );
        }
    }
    for f in [
        "SIGBUS",
        "THREAD_ID",
        "EXACT_ADDRESS",
        "WP_ASYNC",
        "WP_UNPOPULATED",
        "MINOR_HUGETLBFS",
    ] {
        assert!(
            seeds.contains(&format!("UFFD_FEATURE_{f}")),
            "seeds mention UFFD_FEATURE_{f}"
        );
    }

    // --- ../shared/reference/uffd-api.md (mandatory when ../shared is
    // present): values measured with C ---
    let doc = shared.join("reference/uffd-api.md");
    let reference = std::fs::read_to_string(&doc)
        .unwrap_or_else(|e| panic!("reference doc missing at {}: {e}", doc.display()));
    let ref_checks = check_reference_doc(&reference);
    assert!(
        ref_checks >= 20,
        "only {ref_checks} values recognised in the reference doc"
    );

    eprintln!("uAPI checks: seeds {seed_checks}, reference {ref_checks}");
}

// ===========================================================================
// 2-4. MOVE / COPY basics, errors and partial progress
// ===========================================================================

#[test]
fn move_page_appears_at_dst_and_src_reads_zero() {
    let Some(uffd) = open_or_skip(
        "move_page",
        &OpenOptions::new().require_features(Features::MOVE),
    ) else {
        return;
    };
    let src = Region::new(PAGE);
    let dst = Region::new(PAGE);
    fill(src.base, PAGE, 0x11);
    let ioctls = uffd
        .register(dst.base, PAGE, RegisterMode::MISSING)
        .unwrap();
    assert!(
        ioctls.contains(Ioctls::WAKE | Ioctls::COPY | Ioctls::ZEROPAGE | Ioctls::MOVE),
        "range ioctls {:?}",
        ioctls.names()
    );
    assert!(!page_present(dst.base));
    // SAFETY: `src` and `dst` are this test's own mappings; no Rust
    // reference points into them.
    unsafe { uffd.move_pages(dst.base, src.base, PAGE, MoveMode::empty()) }.unwrap();
    assert!(page_present(dst.base));
    assert!(!page_present(src.base), "src pte cleared by MOVE");
    assert_pattern(dst.base, PAGE, 0x11, "moved page at dst");
    // src is unregistered: the next access zero-fills.
    assert_zero(src.base, PAGE, "src after move");
}

#[test]
fn move_onto_populated_is_exists_and_hole_is_nosource() {
    let Some(uffd) = open_or_skip(
        "move_errors",
        &OpenOptions::new().require_features(Features::MOVE),
    ) else {
        return;
    };
    let src = Region::new(2 * PAGE);
    let dst = Region::new(2 * PAGE);
    fill(src.base, PAGE, 0x22);
    uffd.register(dst.base, 2 * PAGE, RegisterMode::MISSING)
        .unwrap();

    // Populate dst page 0 with COPY (data from a heap buffer), then MOVE onto it.
    let buf: Vec<u8> = (0..PAGE).map(|i| pattern(i, 0x33)).collect();
    // SAFETY: `src` and `dst` are this test's own mappings; no Rust
    // reference points into them (the helpers borrow them only briefly).
    // `buf` is only read.
    unsafe {
        uffd.copy(dst.base, buf.as_ptr() as usize, PAGE, CopyMode::empty())
            .unwrap();
        expect_op_err(
            uffd.move_pages(dst.base, src.base, PAGE, MoveMode::empty()),
            0,
            UffdError::Exists,
            "MOVE onto populated page",
        );
        assert_pattern(dst.base, PAGE, 0x33, "dst keeps the COPY");
        assert_pattern(src.base, PAGE, 0x22, "failed MOVE leaves src intact");

        // src page 1 was never touched: a hole.
        expect_op_err(
            uffd.move_pages(dst.at(PAGE), src.at(PAGE), PAGE, MoveMode::empty()),
            0,
            UffdError::NoSource,
            "MOVE from a hole",
        );
        uffd.move_pages(dst.at(PAGE), src.at(PAGE), PAGE, MoveMode::ALLOW_SRC_HOLES)
            .expect("ALLOW_SRC_HOLES skips the hole");
        assert!(
            !page_present(dst.at(PAGE)),
            "dst of a skipped hole stays missing"
        );
        // Still missing, hence still resolvable.
        uffd.zeropage(dst.at(PAGE), PAGE, false).unwrap();
    }
    assert_zero(dst.at(PAGE), PAGE, "zeropage after hole");
}

#[test]
fn partial_move_and_copy_report_progress() {
    let Some(uffd) = open_or_skip(
        "partial",
        &OpenOptions::new().require_features(Features::MOVE),
    ) else {
        return;
    };
    // MOVE: 4 pages, the 3rd src page is a hole.
    let src = Region::new(4 * PAGE);
    let dst = Region::new(4 * PAGE);
    for p in [0, 1, 3] {
        fill(src.at(p * PAGE), PAGE, 0x40 + p as u8);
    }
    uffd.register(dst.base, 4 * PAGE, RegisterMode::MISSING)
        .unwrap();
    // SAFETY (this and the COPY and ZEROPAGE blocks below): `src`, `dst`,
    // `cdst` and `zdst` are this test's own mappings; no Rust reference
    // points into them (the helpers borrow them only briefly). `buf` is only
    // read.
    unsafe {
        expect_op_err(
            uffd.move_pages(dst.base, src.base, 4 * PAGE, MoveMode::empty()),
            2 * PAGE,
            UffdError::Again,
            "4-page MOVE with a hole at page 3",
        );
        for p in [0, 1] {
            assert_pattern(
                dst.at(p * PAGE),
                PAGE,
                0x40 + p as u8,
                "moved before the hole",
            );
        }
        expect_op_err(
            uffd.move_pages(
                dst.at(2 * PAGE),
                src.at(2 * PAGE),
                2 * PAGE,
                MoveMode::empty(),
            ),
            0,
            UffdError::NoSource,
            "retry from src+done",
        );
    }
    assert!(
        !page_present(dst.at(3 * PAGE)),
        "nothing moved past the hole"
    );
    assert_pattern(src.at(3 * PAGE), PAGE, 0x43, "src page 4 untouched");

    // COPY: 4 pages onto a dst whose 3rd page is already populated.
    let cdst = Region::new(4 * PAGE);
    uffd.register(cdst.base, 4 * PAGE, RegisterMode::MISSING)
        .unwrap();
    // SAFETY: see the MOVE block above.
    unsafe { uffd.zeropage(cdst.at(2 * PAGE), PAGE, false) }.unwrap();
    let buf: Vec<u8> = (0..4 * PAGE).map(|i| pattern(i, 0x50)).collect();
    let b = buf.as_ptr() as usize;
    // SAFETY: see the MOVE block above.
    unsafe {
        expect_op_err(
            uffd.copy(cdst.base, b, 4 * PAGE, CopyMode::empty()),
            2 * PAGE,
            UffdError::Again,
            "4-page COPY onto a populated 3rd page",
        );
        assert_pattern(
            cdst.base,
            2 * PAGE,
            0x50,
            "copied before the populated page",
        );
        expect_op_err(
            uffd.copy(cdst.at(2 * PAGE), b + 2 * PAGE, 2 * PAGE, CopyMode::empty()),
            0,
            UffdError::Exists,
            "retry from dst+done",
        );
    }
    assert!(!page_present(cdst.at(3 * PAGE)));

    // ZEROPAGE has the same shape.
    let zdst = Region::new(3 * PAGE);
    uffd.register(zdst.base, 3 * PAGE, RegisterMode::MISSING)
        .unwrap();
    // SAFETY: see the MOVE block above.
    unsafe {
        uffd.copy(zdst.at(PAGE), b, PAGE, CopyMode::empty())
            .unwrap();
        expect_op_err(
            uffd.zeropage(zdst.base, 3 * PAGE, false),
            PAGE,
            UffdError::Again,
            "ZEROPAGE onto a populated 2nd page",
        );
    }
}

#[test]
fn unread_remove_event_makes_move_again_with_done_zero() {
    let opts = OpenOptions::new()
        .features(Features::MOVE | Features::EVENT_REMOVE)
        .require_features(Features::MOVE | Features::EVENT_REMOVE);
    let Some(uffd) = open_or_skip("mmap_changing", &opts) else {
        return;
    };
    let src = Region::new(PAGE);
    let dst = Region::new(2 * PAGE);
    fill(src.base, PAGE, 0x61);
    uffd.register(dst.base, 2 * PAGE, RegisterMode::MISSING)
        .unwrap();
    // SAFETY (for every resolving call of this test): `src` and `dst` are
    // this test's own mappings and no Rust reference points into them (the
    // zapper thread passes `dst` to madvise by raw address).
    unsafe { uffd.zeropage(dst.at(PAGE), PAGE, false) }.unwrap();
    let released = AtomicBool::new(false);
    std::thread::scope(|s| {
        let zapper = s.spawn(|| {
            // Blocks until the REMOVE event is read.
            // SAFETY: advice on our own mapping.
            let rc = unsafe { libc::madvise(dst.at(PAGE) as *mut _, PAGE, libc::MADV_DONTNEED) };
            released.store(true, Ordering::SeqCst);
            rc
        });
        // Wait until the event is queued (mmap_changing is raised before
        // queueing) without reading it.
        let mut pfd = libc::pollfd {
            fd: uffd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 2000) };
        assert_eq!(ready, 1, "REMOVE event queued");
        // SAFETY: see above.
        let r = unsafe { uffd.move_pages(dst.base, src.base, PAGE, MoveMode::empty()) };
        expect_op_err(
            r,
            0,
            UffdError::Again,
            "MOVE while a REMOVE event is unread",
        );
        assert!(
            !released.load(Ordering::SeqCst),
            "madvise waits for the event to be read"
        );
        match uffd.wait_event(Some(Duration::from_secs(2))).unwrap() {
            Some(Event::Remove { start, end }) => {
                assert_eq!((start, end), (dst.at(PAGE), dst.at(2 * PAGE)))
            }
            other => panic!("expected Remove event, got {other:?}"),
        }
        assert_eq!(zapper.join().unwrap(), 0);
    });
    // SAFETY: see above.
    unsafe { uffd.move_pages(dst.base, src.base, PAGE, MoveMode::empty()) }.unwrap();
    assert_pattern(dst.base, PAGE, 0x61, "MOVE after the event was read");
}

// ===========================================================================
// 5. fork(): MOVE of a shared page is EBUSY, COPY works
// ===========================================================================

/// A forked child that blocks in `read(2)` on a pipe until released.
struct BlockedChild {
    pid: libc::pid_t,
    release_fd: libc::c_int,
}

impl BlockedChild {
    fn fork() -> BlockedChild {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only calls async-signal-safe functions (read,
        // _exit) on memory prepared before the fork, as required after
        // fork() in a multithreaded process.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut b = 0u8;
            // SAFETY: async-signal-safe calls only; `b` is a live stack byte.
            unsafe {
                libc::read(fds[0], &mut b as *mut u8 as *mut _, 1);
                libc::_exit(0);
            }
        }
        assert!(pid > 0, "fork failed");
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(fds[0]) };
        BlockedChild {
            pid,
            release_fd: fds[1],
        }
    }

    fn is_alive(&self) -> bool {
        let mut status = 0;
        // SAFETY: non-blocking wait on our own child.
        unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) == 0 }
    }

    fn release(&mut self) {
        if self.release_fd >= 0 {
            let b = 1u8;
            let mut status = 0;
            // SAFETY: writing one byte from a live stack variable, closing our
            // own descriptor and reaping our own child.
            unsafe {
                libc::write(self.release_fd, &b as *const u8 as *const _, 1);
                libc::close(self.release_fd);
                libc::waitpid(self.pid, &mut status, 0);
            }
            self.release_fd = -1;
        }
    }
}

impl Drop for BlockedChild {
    fn drop(&mut self) {
        self.release();
    }
}

#[test]
fn move_after_fork_is_busy_and_copy_works() {
    let Some(uffd) = open_or_skip(
        "fork_ebusy",
        &OpenOptions::new().require_features(Features::MOVE),
    ) else {
        return;
    };
    // The only forkable test mapping.
    let src = Region::with(2 * PAGE, false);
    let dst = Region::new(2 * PAGE);
    fill(src.base, 2 * PAGE, 0x71);
    uffd.register(dst.base, 2 * PAGE, RegisterMode::MISSING)
        .unwrap();

    let mut child = BlockedChild::fork();
    assert!(child.is_alive());
    // SAFETY (this block and the MOVE below): `src` and `dst` are this
    // test's own mappings and no Rust reference points into them (the
    // helpers borrow them only briefly; the child has its own copy of `src`).
    unsafe {
        expect_op_err(
            uffd.move_pages(dst.base, src.base, PAGE, MoveMode::empty()),
            0,
            UffdError::Busy,
            "MOVE of a page COW-shared with a live child",
        );
        assert_pattern(src.base, PAGE, 0x71, "src intact after EBUSY");
        uffd.copy(dst.base, src.base, PAGE, CopyMode::empty())
            .expect("COPY fallback after EBUSY");
        assert_pattern(dst.base, PAGE, 0x71, "COPY fallback data");
        assert!(child.is_alive());
        child.release();

        // Measured: exclusivity is not restored by the child's exit ...
        expect_op_err(
            uffd.move_pages(dst.at(PAGE), src.at(PAGE), PAGE, MoveMode::empty()),
            0,
            UffdError::Busy,
            "MOVE after the child exited, page not rewritten",
        );
    }
    // ... but by a write fault (the page is then reused exclusively).
    // SAFETY: writing one byte of our own mapped page.
    unsafe { ptr::write_volatile(src.at(PAGE) as *mut u8, pattern(PAGE, 0x71)) };
    // SAFETY: see above.
    unsafe { uffd.move_pages(dst.at(PAGE), src.at(PAGE), PAGE, MoveMode::empty()) }
        .expect("MOVE after the page was written again");
    assert_pattern_from(dst.at(PAGE), PAGE, 0x71, PAGE, "moved after rewrite");
}

// ===========================================================================
// 6-7. Blocking faults: DONTWAKE + WAKE, handler-thread round trip
// ===========================================================================

#[test]
fn dontwake_keeps_waiter_blocked_until_wake() {
    let Some(uffd) = open_or_skip(
        "dontwake",
        &OpenOptions::new().require_features(Features::MOVE),
    ) else {
        return;
    };
    let src = Region::new(PAGE);
    let dst = Region::new(PAGE);
    fill(src.base, PAGE, 0x81);
    uffd.register(dst.base, PAGE, RegisterMode::MISSING)
        .unwrap();
    let done = AtomicBool::new(false);
    let reader_tid = AtomicU32::new(0);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            reader_tid.store(gettid(), Ordering::SeqCst);
            let v = read_byte(dst.at(100));
            done.store(true, Ordering::SeqCst);
            v
        });
        match uffd.wait_event(Some(Duration::from_secs(2))).unwrap() {
            Some(Event::PageFault { address, write, .. }) => {
                assert_eq!(address, dst.base);
                assert!(!write);
            }
            other => panic!("expected PageFault, got {other:?}"),
        }
        // Let the reader reach schedule(): the kernel re-checks the pte
        // between queueing the event and sleeping, so a MOVE landing in that
        // window would let it continue without a wake.
        wait_until_sleeping(reader_tid.load(Ordering::SeqCst));
        // SAFETY: `src` and `dst` are this test's own mappings; the reader
        // thread reads `dst` by raw address only, so no Rust reference
        // points into either.
        unsafe {
            uffd.move_pages(dst.base, src.base, PAGE, MoveMode::DONTWAKE)
                .unwrap();
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                !done.load(Ordering::SeqCst),
                "DONTWAKE: reader still blocked"
            );
            // A losing resolver gets EEXIST, which wakes nobody either.
            expect_op_err(
                uffd.move_pages(dst.base, src.base, PAGE, MoveMode::empty()),
                0,
                UffdError::Exists,
                "racing MOVE",
            );
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(!done.load(Ordering::SeqCst), "EEXIST does not wake");
        uffd.wake(dst.base, PAGE).unwrap();
        assert_eq!(reader.join().unwrap(), pattern(100, 0x81));
    });
    assert!(done.load(Ordering::SeqCst));
    assert_pattern(dst.base, PAGE, 0x81, "dst after wake");
}

#[test]
fn fault_round_trip_with_handler_thread() {
    let opts = OpenOptions::new().features(Features::MOVE | Features::THREAD_ID);
    let Some(uffd) = open_or_skip("round_trip", &opts.require_features(Features::MOVE)) else {
        return;
    };
    let src = Region::new(4 * PAGE);
    let dst = Region::new(4 * PAGE);
    fill(src.base, 4 * PAGE, 0x91);
    uffd.register(dst.base, 4 * PAGE, RegisterMode::MISSING)
        .unwrap();
    let reader_tid = AtomicU32::new(0);
    let seen = std::thread::scope(|s| {
        let handler = s.spawn(|| {
            let mut seen = Vec::new();
            for _ in 0..2 {
                match uffd.wait_event(Some(Duration::from_secs(2))).unwrap() {
                    Some(Event::PageFault {
                        address,
                        write,
                        wp,
                        minor,
                        thread_id,
                    }) => {
                        assert!(!wp && !minor);
                        let off = address - dst.base;
                        // SAFETY: `src` and `dst` are this test's own mappings;
                        // the reader accesses `dst` by raw address only.
                        unsafe { uffd.move_pages(address, src.at(off), PAGE, MoveMode::empty()) }
                            .unwrap();
                        seen.push((address, write, thread_id));
                    }
                    other => panic!("expected PageFault, got {other:?}"),
                }
            }
            seen
        });
        let reader = s.spawn(|| {
            reader_tid.store(gettid(), Ordering::SeqCst);
            let a = read_byte(dst.at(PAGE + 100));
            // A write fault on another page.
            // SAFETY: a write into our own registered page, resolved by the handler.
            unsafe { ptr::write_volatile(dst.at(3 * PAGE + 5) as *mut u8, 0xEE) };
            a
        });
        assert_eq!(reader.join().unwrap(), pattern(PAGE + 100, 0x91));
        handler.join().unwrap()
    });
    let tid = reader_tid.load(Ordering::SeqCst);
    let want_tid = uffd.features().contains(Features::THREAD_ID).then_some(tid);
    assert_eq!(
        seen,
        vec![
            (dst.at(PAGE), false, want_tid),
            (dst.at(3 * PAGE), true, want_tid)
        ],
        "fault addresses are page aligned; thread ids match the reader"
    );
    assert_pattern_from(dst.at(PAGE), PAGE, 0x91, PAGE, "page 1");
    // SAFETY: page 3 is present now.
    assert_eq!(unsafe { *(dst.at(3 * PAGE + 5) as *const u8) }, 0xEE);
    assert!(!page_present(dst.base) && !page_present(dst.at(2 * PAGE)));
    assert!(uffd.read_event().unwrap().is_none());
}

// ===========================================================================
// 8. SIGBUS mode (and a poisoned page) resolved from a signal handler
// ===========================================================================

static SIGBUS_UFFD: AtomicPtr<Uffd> = AtomicPtr::new(ptr::null_mut());
static SIGBUS_DST: AtomicUsize = AtomicUsize::new(0);
static SIGBUS_LEN: AtomicUsize = AtomicUsize::new(0);
static SIGBUS_SRC: AtomicUsize = AtomicUsize::new(0);
static SIGBUS_COUNT: AtomicUsize = AtomicUsize::new(0);
static SIGBUS_LAST_ADDR: AtomicUsize = AtomicUsize::new(0);
static SIGBUS_LAST_CODE: AtomicI32 = AtomicI32::new(0);
static SIGBUS_MOVE_ERRNO: AtomicI32 = AtomicI32::new(-1);
static SIGBUS_POISON_HITS: AtomicUsize = AtomicUsize::new(0);
static POISON_FIRST_CODE: AtomicI32 = AtomicI32::new(0);

/// Async-signal-safe: atomics, `madvise`/`mmap` syscalls and
/// `Uffd::move_pages` (no allocation, no locks).
extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers;
    // errno is thread-local and restored before returning.
    let (addr, code, saved_errno) = unsafe {
        (
            (*info).si_addr() as usize,
            (*info).si_code,
            *libc::__errno_location(),
        )
    };
    SIGBUS_COUNT.fetch_add(1, Ordering::SeqCst);
    SIGBUS_LAST_ADDR.store(addr, Ordering::SeqCst);
    SIGBUS_LAST_CODE.store(code, Ordering::SeqCst);
    let _ = POISON_FIRST_CODE.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    let (dst, len) = (
        SIGBUS_DST.load(Ordering::SeqCst),
        SIGBUS_LEN.load(Ordering::SeqCst),
    );
    let uffd = SIGBUS_UFFD.load(Ordering::SeqCst);
    if uffd.is_null() || addr < dst || addr >= dst + len {
        // Not ours: fall back to the default action (the retry kills us).
        // SAFETY: signal() is async-signal-safe.
        unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
        return;
    }
    let page = addr & !(PAGE - 1);
    let src = SIGBUS_SRC.load(Ordering::SeqCst) + (page - dst);
    // SAFETY: the test keeps the Uffd alive while the handler is installed
    // and the pointer non-null.
    let uffd = unsafe { &*uffd };
    let errno = if code == libc::BUS_MCEERR_AR {
        libc::EEXIST // a poisoned pte (kernels with CONFIG_MEMORY_FAILURE)
    } else {
        // SAFETY: `page` is in the test's registered `dst` region and `src`
        // in its `src` region (checked above); the test only accesses them
        // by raw address, so no Rust reference points into either.
        match unsafe { uffd.move_pages(page, src, PAGE, MoveMode::DONTWAKE) } {
            Ok(()) => 0,
            Err(e) => e.error.errno().unwrap_or(-2),
        }
    };
    SIGBUS_MOVE_ERRNO.store(errno, Ordering::SeqCst);
    if errno == libc::EEXIST {
        // The pte is occupied yet the access faults: a poison marker (no
        // other thread resolves pages in this test). Zap it so the retry
        // takes the uffd SIGBUS path again.
        let hits = SIGBUS_POISON_HITS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: advice/remap on a page of the test's own mapping.
        unsafe {
            if hits < 3 {
                libc::madvise(page as *mut _, PAGE, libc::MADV_DONTNEED);
            } else {
                // Escape hatch so a kernel that does not zap markers cannot
                // loop forever: replace the page (the test then fails).
                libc::mmap(
                    page as *mut _,
                    PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                );
            }
        }
    } else if errno != 0 {
        // Could not resolve: avoid an endless fault loop.
        // SAFETY: signal() is async-signal-safe.
        unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
    }
    // SAFETY: restoring this thread's errno.
    unsafe { *libc::__errno_location() = saved_errno };
}

#[test]
fn sigbus_mode_resolves_in_handler() {
    let opts = OpenOptions::new()
        .features(Features::MOVE | Features::SIGBUS | Features::POISON)
        .require_features(Features::MOVE | Features::SIGBUS);
    let Some(uffd) = open_or_skip("sigbus", &opts) else {
        return;
    };
    let src = Region::new(4 * PAGE);
    let dst = Region::new(4 * PAGE);
    fill(src.base, 4 * PAGE, 0xA1);
    uffd.register(dst.base, 4 * PAGE, RegisterMode::MISSING)
        .unwrap();
    SIGBUS_DST.store(dst.base, Ordering::SeqCst);
    SIGBUS_LEN.store(dst.len, Ordering::SeqCst);
    SIGBUS_SRC.store(src.base, Ordering::SeqCst);
    SIGBUS_UFFD.store(&uffd as *const Uffd as *mut Uffd, Ordering::SeqCst);

    // SAFETY: zeroed sigaction structs are valid; we install a handler that
    // is async-signal-safe and restore the previous one below.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigbus as *const () as usize;
    sa.sa_flags = libc::SA_SIGINFO;
    // SAFETY: valid pointers to sigaction structs.
    assert_eq!(unsafe { libc::sigaction(libc::SIGBUS, &sa, &mut old) }, 0);

    // (a) A read of a missing page raises SIGBUS; the handler MOVEs it in.
    let v = read_byte(dst.at(PAGE + 123));
    let count_a = SIGBUS_COUNT.load(Ordering::SeqCst);
    let addr_a = SIGBUS_LAST_ADDR.load(Ordering::SeqCst);
    let code_a = SIGBUS_LAST_CODE.load(Ordering::SeqCst);
    let errno_a = SIGBUS_MOVE_ERRNO.load(Ordering::SeqCst);
    // No event is queued in SIGBUS mode.
    let queued = uffd.read_event().unwrap();

    // (b) A poisoned page: a SIGBUS whose MOVE fails with EEXIST (the marker
    // occupies the pte), then, after the handler zapped the marker, the uffd
    // SIGBUS again, resolved by MOVE. Without CONFIG_MEMORY_FAILURE (this
    // machine) the poison SIGBUS is BUS_ADRERR, like a uffd one; with it,
    // BUS_MCEERR_AR.
    let poison = if uffd.features().contains(Features::POISON) {
        // SAFETY: page 2 of the test's own `dst` mapping, never touched and
        // not referenced; the read below goes by raw address to exercise
        // the poison SIGBUS.
        unsafe { uffd.poison(dst.at(2 * PAGE), PAGE, false) }.unwrap();
        let before = SIGBUS_COUNT.load(Ordering::SeqCst);
        POISON_FIRST_CODE.store(0, Ordering::SeqCst);
        let v = read_byte(dst.at(2 * PAGE + 7));
        Some((
            v,
            SIGBUS_COUNT.load(Ordering::SeqCst) - before,
            SIGBUS_POISON_HITS.load(Ordering::SeqCst),
            POISON_FIRST_CODE.load(Ordering::SeqCst),
            SIGBUS_LAST_ADDR.load(Ordering::SeqCst),
        ))
    } else {
        eprintln!("skipped: sigbus/poison part: POISON not granted");
        None
    };

    // SAFETY: restoring the previous disposition.
    let restored = unsafe { libc::sigaction(libc::SIGBUS, &old, ptr::null_mut()) };
    assert_eq!(restored, 0);
    SIGBUS_UFFD.store(ptr::null_mut(), Ordering::SeqCst);

    assert_eq!(count_a, 1, "exactly one SIGBUS for the first access");
    assert_eq!(
        addr_a,
        dst.at(PAGE + 123),
        "si_addr is the exact faulting address"
    );
    assert_eq!(code_a, libc::BUS_ADRERR, "si_code");
    assert_eq!(errno_a, 0, "MOVE from the handler succeeded");
    assert_eq!(
        v,
        pattern(PAGE + 123, 0xA1),
        "the retried access sees the moved data"
    );
    assert!(queued.is_none(), "SIGBUS mode queues no events");
    assert_pattern_from(
        dst.at(PAGE),
        PAGE,
        0xA1,
        PAGE,
        "page resolved in the handler",
    );
    if let Some((v, signals, poison_hits, poison_code, last_addr)) = poison {
        assert_eq!(poison_hits, 1, "one SIGBUS hit the poison marker");
        assert!(
            [libc::BUS_ADRERR, libc::BUS_MCEERR_AR].contains(&poison_code),
            "poison si_code {poison_code}"
        );
        eprintln!(
            "sigbus: poisoned page raised si_code {poison_code} (BUS_ADRERR=2, BUS_MCEERR_AR=4)"
        );
        assert_eq!(signals, 2, "poison SIGBUS, then the uffd SIGBUS");
        assert_eq!(last_addr, dst.at(2 * PAGE + 7));
        assert_eq!(v, pattern(2 * PAGE + 7, 0xA1));
    }
}

// ===========================================================================
// 9. THP: whole-PMD move, and a misaligned move that splits
// ===========================================================================

#[test]
fn thp_pmd_move_and_misaligned_move() {
    let Some(uffd) = open_or_skip("thp", &OpenOptions::new().require_features(Features::MOVE))
    else {
        return;
    };
    let src = Region::new(HUGE);
    src.advise(libc::MADV_HUGEPAGE);
    fill(src.base, HUGE, 0xB1);
    let src_huge = src.anon_huge_kb();
    let dst = Region::new(HUGE);
    dst.advise(libc::MADV_HUGEPAGE);
    uffd.register(dst.base, HUGE, RegisterMode::MISSING)
        .unwrap();
    if src_huge != 2048 {
        eprintln!(
            "skipped: thp PMD part: src did not get a THP (AnonHugePages {src_huge} kB; \
             /sys/kernel/mm/transparent_hugepage/enabled must allow madvise)"
        );
    } else {
        let t = Instant::now();
        // SAFETY: `src` and `dst` are this test's own mappings; no Rust
        // reference points into them.
        unsafe { uffd.move_pages(dst.base, src.base, HUGE, MoveMode::empty()) }.unwrap();
        let took = t.elapsed();
        assert_eq!(dst.anon_huge_kb(), 2048, "dst holds the THP as a PMD");
        assert_eq!(src.anon_huge_kb(), 0, "src lost it");
        assert_pattern(dst.base, HUGE, 0xB1, "PMD-moved data");
        eprintln!("thp: 2 MiB PMD move took {took:?}");
    }

    // Misaligned: 512 pages of a THP to dst + 4 KiB (the kernel splits).
    let src2 = Region::new(HUGE);
    src2.advise(libc::MADV_HUGEPAGE);
    fill(src2.base, HUGE, 0xB2);
    let dst2 = Region::new(2 * HUGE);
    uffd.register(dst2.base, 2 * HUGE, RegisterMode::MISSING)
        .unwrap();
    // SAFETY: `src2` and `dst2` are this test's own mappings; no Rust
    // reference points into them.
    unsafe { uffd.move_pages(dst2.at(PAGE), src2.base, HUGE, MoveMode::empty()) }.unwrap();
    assert_pattern(dst2.at(PAGE), HUGE, 0xB2, "misaligned move, page by page");
    assert_eq!(dst2.anon_huge_kb(), 0, "no PMD at a misaligned dst");
    assert!(!page_present(dst2.base) && !page_present(dst2.at(HUGE + PAGE)));
    assert_zero(src2.base, PAGE, "src2 after move");
}

// ===========================================================================
// 10. Validation before any syscall
// ===========================================================================

#[test]
fn invalid_ranges_rejected_before_syscall() {
    let Some(uffd) = open_or_skip("invalid_ranges", &OpenOptions::new()) else {
        return;
    };
    let r = Region::new(4 * PAGE);
    uffd.register(r.base, 2 * PAGE, RegisterMode::MISSING)
        .unwrap();
    let src = r.at(2 * PAGE);
    fill(src, 2 * PAGE, 0xC1);
    let bad = |res: Result<(), UffdError>, addr: usize, len: usize, what: &str| match res {
        Err(UffdError::InvalidRange {
            addr: a, len: l, ..
        }) if a == addr && l == len => {}
        other => panic!("{what}: expected InvalidRange({addr:#x}, {len:#x}), got {other:?}"),
    };
    let bad_op = |res: Result<(), OpError>, addr: usize, len: usize, what: &str| match res {
        Err(OpError { done: 0, error }) => bad(Err(error), addr, len, what),
        other => panic!("{what}: expected InvalidRange, got {other:?}"),
    };
    let m = MoveMode::empty();
    // SAFETY: every call below is rejected with `InvalidRange` before any
    // syscall (which is what the test checks), so no memory is touched; the
    // in-range addresses are this test's own mapping `r` anyway.
    unsafe {
        bad_op(
            uffd.move_pages(r.base + 1, src, PAGE, m),
            r.base + 1,
            PAGE,
            "misaligned dst",
        );
        bad_op(
            uffd.move_pages(r.base, src + 8, PAGE, m),
            src + 8,
            PAGE,
            "misaligned src",
        );
        bad_op(
            uffd.move_pages(r.base, src, PAGE + 1, m),
            r.base,
            PAGE + 1,
            "len not page multiple",
        );
        bad_op(uffd.move_pages(r.base, src, 0, m), r.base, 0, "len 0");
        let top = usize::MAX & !(PAGE - 1);
        bad_op(
            uffd.move_pages(top, src, 2 * PAGE, m),
            top,
            2 * PAGE,
            "dst overflow",
        );
        bad_op(
            uffd.move_pages(r.base, top, 2 * PAGE, m),
            top,
            2 * PAGE,
            "src overflow",
        );
        bad_op(
            uffd.copy(r.base + 8, src, PAGE, CopyMode::empty()),
            r.base + 8,
            PAGE,
            "copy dst",
        );
        bad_op(
            uffd.copy(r.base, src, 100, CopyMode::empty()),
            r.base,
            100,
            "copy len",
        );
        bad_op(
            uffd.copy(r.base, usize::MAX - 10, PAGE, CopyMode::empty()),
            usize::MAX - 10,
            PAGE,
            "copy src overflow",
        );
        bad_op(uffd.zeropage(r.base, 0, false), r.base, 0, "zeropage len 0");
        bad_op(
            uffd.poison(r.base + 2, PAGE, false),
            r.base + 2,
            PAGE,
            "poison",
        );
        bad_op(uffd.continue_range(r.base, 3, false), r.base, 3, "continue");
    }
    bad(uffd.wake(r.base + 16, PAGE), r.base + 16, PAGE, "wake");
    bad(
        uffd.writeprotect(r.base, PAGE - 1, true, false),
        r.base,
        PAGE - 1,
        "writeprotect",
    );
    bad(uffd.unregister(r.base, 0), r.base, 0, "unregister");
    bad(
        uffd.register(r.base + 1, PAGE, RegisterMode::MISSING)
            .map(|_| ()),
        r.base + 1,
        PAGE,
        "register",
    );
    // Nothing reached the kernel: the range is still missing and resolvable,
    // and COPY from an unaligned src is fine.
    assert!(!page_present(r.base));
    // SAFETY: `r` is this test's own mapping and no Rust reference points
    // into it; the source (its page 2) is only read.
    unsafe { uffd.copy(r.base, src + 8, PAGE, CopyMode::empty()) }.unwrap();
    // SAFETY: page 0 is present now; byte 0 was copied from src + 8.
    assert_eq!(unsafe { *(r.base as *const u8) }, pattern(8, 0xC1));
}

// ===========================================================================
// 11. ZEROPAGE, WRITEPROTECT, POISON, CONTINUE
// ===========================================================================

#[test]
fn zeropage_reads_zero_and_blocks_move() {
    let Some(uffd) = open_or_skip("zeropage", &OpenOptions::new()) else {
        return;
    };
    let dst = Region::new(2 * PAGE);
    let src = Region::new(PAGE);
    fill(src.base, PAGE, 0xD1);
    uffd.register(dst.base, 2 * PAGE, RegisterMode::MISSING)
        .unwrap();
    // SAFETY: `src` and `dst` are this test's own mappings; no Rust
    // reference points into them (the helpers borrow them only briefly).
    unsafe {
        uffd.zeropage(dst.base, 2 * PAGE, false).unwrap();
        assert_zero(dst.base, 2 * PAGE, "zeropage");
        expect_op_err(
            uffd.zeropage(dst.base, PAGE, false),
            0,
            UffdError::Exists,
            "zeropage twice",
        );
        if uffd.features().contains(Features::MOVE) {
            expect_op_err(
                uffd.move_pages(dst.base, src.base, PAGE, MoveMode::empty()),
                0,
                UffdError::Exists,
                "MOVE onto the zero page",
            );
        }
    }
    // A write CoWs the zero page without any uffd event.
    // SAFETY: writing into a present (zero-page) page of our mapping.
    unsafe { ptr::write_volatile(dst.at(PAGE + 1) as *mut u8, 9) };
    assert_eq!(read_byte(dst.at(PAGE + 1)), 9);
    assert!(uffd.read_event().unwrap().is_none());
}

#[test]
fn writeprotect_fault_and_unprotect() {
    let Some(uffd) = open_or_skip("writeprotect", &OpenOptions::new()) else {
        return;
    };
    let r = Region::new(PAGE);
    let ioctls = match uffd.register(r.base, PAGE, RegisterMode::MISSING | RegisterMode::WP) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("skipped: writeprotect: WP registration on anonymous memory failed: {e}");
            return;
        }
    };
    assert!(
        ioctls.contains(Ioctls::WRITEPROTECT),
        "{:?}",
        ioctls.names()
    );
    let buf: Vec<u8> = (0..PAGE).map(|i| pattern(i, 0xE1)).collect();
    // SAFETY: `r` is this test's own mapping and no Rust reference points
    // into it; `buf` is only read.
    unsafe { uffd.copy(r.base, buf.as_ptr() as usize, PAGE, CopyMode::WP) }.unwrap();
    assert_pattern(r.base, PAGE, 0xE1, "reads of a WP page do not fault");
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            // SAFETY: writing into our own present page; blocks until unprotected.
            unsafe { ptr::write_volatile(r.at(10) as *mut u8, 0x5A) };
        });
        match uffd.wait_event(Some(Duration::from_secs(2))).unwrap() {
            Some(Event::PageFault {
                address, write, wp, ..
            }) => {
                assert_eq!(address, r.base);
                assert!(write && wp, "write-protect fault flags");
            }
            other => panic!("expected WP PageFault, got {other:?}"),
        }
        uffd.writeprotect(r.base, PAGE, false, false).unwrap();
        writer.join().unwrap();
    });
    assert_eq!(read_byte(r.at(10)), 0x5A);
    assert_eq!(read_byte(r.at(11)), pattern(11, 0xE1));
    // Re-protecting with DONTWAKE is rejected by the kernel.
    assert_eq!(
        uffd.writeprotect(r.base, PAGE, true, true),
        Err(UffdError::Os {
            op: "UFFDIO_WRITEPROTECT",
            errno: libc::EINVAL
        })
    );
}

#[test]
fn poison_twice_is_exists() {
    let opts = OpenOptions::new().features(Features::MOVE | Features::POISON);
    let Some(uffd) = open_or_skip("poison", &opts.require_features(Features::POISON)) else {
        return;
    };
    let r = Region::new(2 * PAGE);
    let src = Region::new(PAGE);
    fill(src.base, PAGE, 0xF1);
    let ioctls = uffd
        .register(r.base, 2 * PAGE, RegisterMode::MISSING)
        .unwrap();
    assert!(ioctls.contains(Ioctls::POISON));
    // SAFETY: `r` and `src` are this test's own mappings; no Rust reference
    // points into them and the poisoned page is never read.
    unsafe {
        uffd.poison(r.base, PAGE, false).unwrap();
        expect_op_err(
            uffd.poison(r.base, PAGE, false),
            0,
            UffdError::Exists,
            "second poison",
        );
        expect_op_err(
            uffd.poison(r.base, 2 * PAGE, false),
            0,
            UffdError::Exists,
            "poison over a poisoned first page",
        );
        if uffd.features().contains(Features::MOVE) {
            expect_op_err(
                uffd.move_pages(r.base, src.base, PAGE, MoveMode::empty()),
                0,
                UffdError::Exists,
                "MOVE onto a poisoned page",
            );
        }
    }
    // The poisoned pte is not "present".
    assert!(!page_present(r.base));
}

#[test]
fn continue_resolves_minor_fault_on_shmem() {
    let opts = OpenOptions::new().features(Features::MINOR_SHMEM);
    let Some(uffd) = open_or_skip("continue", &opts.require_features(Features::MINOR_SHMEM)) else {
        return;
    };
    let name = c"movegc-uffd-continue";
    // SAFETY: a valid C string; memfd_create returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: sizing and mapping our own memfd twice (shared); the mappings
    // are unmapped and the fd closed at the end of the test.
    let (a, b) = unsafe {
        assert_eq!(libc::ftruncate(fd, 2 * PAGE as libc::off_t), 0);
        let map = || {
            let p = libc::mmap(
                ptr::null_mut(),
                2 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            libc::madvise(p, 2 * PAGE, libc::MADV_DONTFORK);
            p as usize
        };
        (map(), map())
    };
    fill(a, PAGE, 0x0F); // page cache populated through mapping A only
    let ioctls = uffd.register(b, 2 * PAGE, RegisterMode::MINOR).unwrap();
    assert!(ioctls.contains(Ioctls::CONTINUE), "{:?}", ioctls.names());
    let v = std::thread::scope(|s| {
        let reader = s.spawn(|| read_byte(b + 77));
        match uffd.wait_event(Some(Duration::from_secs(2))).unwrap() {
            Some(Event::PageFault {
                address,
                minor,
                write,
                ..
            }) => {
                assert_eq!(address, b);
                assert!(minor && !write, "minor read fault");
            }
            other => panic!("expected minor PageFault, got {other:?}"),
        }
        // SAFETY: mapping B is this test's own; the reader reads it by raw
        // address only, so no Rust reference points into it.
        unsafe { uffd.continue_range(b, PAGE, false) }.unwrap();
        reader.join().unwrap()
    });
    assert_eq!(v, pattern(77, 0x0F));
    assert_pattern(b, PAGE, 0x0F, "mapping B after CONTINUE");
    expect_op_err(
        // SAFETY: as above; the page is present, so nothing changes.
        unsafe { uffd.continue_range(b, PAGE, false) },
        0,
        UffdError::Exists,
        "CONTINUE twice",
    );
    // SAFETY: unmapping our own mappings and closing our own memfd.
    unsafe {
        libc::munmap(a as *mut _, 2 * PAGE);
        libc::munmap(b as *mut _, 2 * PAGE);
        libc::close(fd);
    }
}

// ===========================================================================
// Events API, handshake facts, EFAULT caveat
// ===========================================================================

#[test]
fn read_and_wait_event_on_empty_queue() {
    let Some(uffd) = open_or_skip("events_empty", &OpenOptions::new()) else {
        return;
    };
    assert!(uffd.is_nonblocking());
    assert!(uffd.read_event().unwrap().is_none());
    let t = Instant::now();
    assert!(uffd
        .wait_event(Some(Duration::from_millis(50)))
        .unwrap()
        .is_none());
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(uffd.wait_event(Some(Duration::ZERO)).unwrap().is_none());

    // A blocking descriptor: poll() reports POLLERR, so timeouts are refused.
    let Some(blocking) = open_or_skip("events_blocking", &OpenOptions::new().nonblocking(false))
    else {
        return;
    };
    let mut pfd = libc::pollfd {
        fd: blocking.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    assert_eq!(rc, 1);
    assert!(
        pfd.revents & libc::POLLERR != 0,
        "poll on a blocking uffd: EPOLLERR"
    );
    assert!(matches!(
        blocking.wait_event(Some(Duration::from_millis(1))),
        Err(UffdError::Os {
            errno: libc::EINVAL,
            ..
        })
    ));
}

#[test]
fn api_handshake_only_once_per_fd() {
    let Some(uffd) = open_or_skip("api_once", &OpenOptions::new()) else {
        return;
    };
    assert!(uffd
        .api_ioctls()
        .contains(Ioctls::API | Ioctls::REGISTER | Ioctls::UNREGISTER));
    let mut api = sys::uffdio_api {
        api: sys::UFFD_API,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: a second UFFDIO_API on our own initialised descriptor with a
    // valid, writable argument struct.
    let rc = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            sys::UFFDIO_API,
            &mut api as *mut sys::uffdio_api,
        )
    };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((rc, errno), (-1, Some(libc::EINVAL)), "second UFFDIO_API");
}

#[test]
fn kernel_access_to_missing_page_is_efault_in_user_mode_only() {
    let opts = OpenOptions::new()
        .require_path(OpenPath::UserModeOnly)
        .require_features(Features::MOVE);
    let Some(uffd) = open_or_skip("efault", &opts) else {
        return;
    };
    assert!(uffd.user_mode_only());
    let dst = Region::new(PAGE);
    let src = Region::new(PAGE);
    fill(src.base, PAGE, 0x3C);
    uffd.register(dst.base, PAGE, RegisterMode::MISSING)
        .unwrap();
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: room for two fds.
    let piped = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(piped, 0);
    // The kernel reads the missing page (copy_from_user): EFAULT, no event.
    // SAFETY: write(2) only reads from the buffer; the failure is the point.
    let rc = unsafe { libc::write(fds[1], dst.base as *const _, 16) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!(
        (rc, errno),
        (-1, Some(libc::EFAULT)),
        "write() from a missing registered page"
    );
    assert!(
        uffd.read_event().unwrap().is_none(),
        "no event for kernel accesses"
    );
    // Resolved first (here by MOVE; a user-space touch works too), it succeeds.
    // SAFETY: `src` and `dst` are this test's own mappings; only write(2)
    // reads `dst`, by raw address.
    unsafe { uffd.move_pages(dst.base, src.base, PAGE, MoveMode::empty()) }.unwrap();
    // SAFETY: as above; the page is present now.
    let rc = unsafe { libc::write(fds[1], dst.base as *const _, 16) };
    assert_eq!(rc, 16);
    // SAFETY: closing our own pipe.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }

    // Contrast: a descriptor that also handles kernel faults (needs
    // privilege) blocks the syscall and queues an event instead.
    let full = OpenOptions::new()
        .paths(&[OpenPath::DevUserfaultfd, OpenPath::Syscall])
        .require_features(Features::MOVE);
    let Ok(kuffd) = Uffd::open(&full) else {
        eprintln!("skipped: efault/kernel-fault part: no privileged open path");
        return;
    };
    assert!(!kuffd.user_mode_only());
    let kdst = Region::new(PAGE);
    let ksrc = Region::new(PAGE);
    fill(ksrc.base, PAGE, 0x3C);
    kuffd
        .register(kdst.base, PAGE, RegisterMode::MISSING)
        .unwrap();
    // SAFETY: room for two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let n = std::thread::scope(|s| {
        // SAFETY: write(2) reads from our registered page; it blocks until resolved.
        let w = s.spawn(|| unsafe { libc::write(fds[1], kdst.base as *const _, 16) });
        match kuffd.wait_event(Some(Duration::from_secs(2))).unwrap() {
            Some(Event::PageFault { address, .. }) => assert_eq!(address, kdst.base),
            other => panic!("expected a PageFault from a kernel access, got {other:?}"),
        }
        // SAFETY: `ksrc` and `kdst` are this test's own mappings; the writer
        // thread's write(2) reads `kdst` by raw address only.
        unsafe { kuffd.move_pages(kdst.base, ksrc.base, PAGE, MoveMode::empty()) }.unwrap();
        w.join().unwrap()
    });
    assert_eq!(n, 16);
    let mut got = [0u8; 16];
    // SAFETY: reading 16 bytes into a stack buffer from our pipe.
    let got_n = unsafe { libc::read(fds[0], got.as_mut_ptr() as *mut _, 16) };
    assert_eq!(got_n, 16);
    let want: Vec<u8> = (0..16).map(|i| pattern(i, 0x3C)).collect();
    assert_eq!(&got[..], &want[..]);
    // SAFETY: closing our own pipe.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

// ===========================================================================
// 12. Open paths and attempt reporting
// ===========================================================================

#[test]
fn open_paths_and_attempts() {
    let Some(umo) = open_or_skip(
        "open_paths",
        &OpenOptions::new().require_path(OpenPath::UserModeOnly),
    ) else {
        return;
    };
    assert_eq!(umo.open_path(), OpenPath::UserModeOnly);
    assert!(umo.user_mode_only());
    assert_eq!(umo.attempts().len(), 1);
    assert!(umo.attempts()[0].ok && umo.attempts()[0].errno.is_none());
    let supported = Uffd::supported_features().unwrap();
    assert!(supported.contains(umo.features()), "granted ⊆ supported");
    eprintln!(
        "supported features: {:?}; granted by default: {:?}",
        supported.names(),
        umo.features().names()
    );
    // Default order: user-mode-only first, so one attempt.
    let def = Uffd::open(&OpenOptions::new()).unwrap();
    assert_eq!(def.open_path(), OpenPath::UserModeOnly);
    assert_eq!(def.attempts().len(), 1);

    // Unprivileged view, built in a thread whose credentials we drop.
    std::thread::spawn(|| {
        become_unprivileged_in_this_thread();
        let sysctl = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();

        let dev = Uffd::open(&OpenOptions::new().require_path(OpenPath::DevUserfaultfd));
        match dev {
            Err(UffdError::Unavailable { attempts, reason }) => {
                assert_eq!(attempts.len(), 1);
                let a = &attempts[0];
                assert_eq!(a.path, OpenPath::DevUserfaultfd);
                assert!(!a.ok);
                let errno = a.errno.expect("errno recorded");
                assert!([libc::EACCES, libc::ENOENT, libc::EPERM].contains(&errno), "{a:?}");
                if errno == libc::EACCES {
                    assert!(a.reason.starts_with("EACCES: /dev/userfaultfd is c"), "{}", a.reason);
                }
                assert!(reason.contains(&a.reason), "{reason}");
                eprintln!("dev-userfaultfd as fsuid 65534: {}", a.reason);
            }
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(u) => eprintln!("note: /dev/userfaultfd is usable by fsuid 65534 ({:?})", u.attempts()),
        }

        let sys_only = Uffd::open(&OpenOptions::new().require_path(OpenPath::Syscall));
        match (sysctl.as_str(), sys_only) {
            ("0", Err(UffdError::Unavailable { attempts, .. })) => {
                assert_eq!(attempts[0].errno, Some(libc::EPERM));
                assert_eq!(
                    attempts[0].reason,
                    "EPERM: vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE"
                );
            }
            ("0", Ok(_)) => panic!("syscall path opened without CAP_SYS_PTRACE and sysctl 0"),
            (_, r) => eprintln!("note: sysctl={sysctl}, syscall path: {:?}", r.map(|u| u.open_path())),
        }

        // Privileged paths first: every failure is recorded, then the
        // user-mode-only path succeeds.
        let u = Uffd::open(&OpenOptions::new().paths(&[
            OpenPath::DevUserfaultfd,
            OpenPath::Syscall,
            OpenPath::UserModeOnly,
        ]))
        .expect("user-mode-only always works");
        let paths: Vec<(OpenPath, bool)> = u.attempts().iter().map(|a| (a.path, a.ok)).collect();
        assert_eq!(paths.last(), Some(&(OpenPath::UserModeOnly, true)));
        assert_eq!(u.open_path(), OpenPath::UserModeOnly);
        if sysctl == "0" {
            assert!(paths.contains(&(OpenPath::Syscall, false)));
        }

        // EVENT_FORK needs CAP_SYS_PTRACE: dropped when merely requested,
        // Unavailable when required.
        let u = Uffd::open(&OpenOptions::new().features(Features::MOVE | Features::EVENT_FORK)).unwrap();
        assert!(!u.features().contains(Features::EVENT_FORK));
        let e = Uffd::open(&OpenOptions::new().require_features(Features::EVENT_FORK)).unwrap_err();
        assert!(matches!(&e, UffdError::Unavailable { reason, .. } if reason.contains("CAP_SYS_PTRACE")), "{e}");
    })
    .join()
    .unwrap();
}

/// Kernel dirty-page tracking for a remembered set (issue 13): the probe's
/// live check of `UFFD_FEATURE_WP_ASYNC` + `PAGEMAP_SCAN` passes wherever
/// the kernel offers both features (it writes populated, unpopulated and
/// zapped pages and expects exactly those reported, then re-protected).
#[test]
fn wp_async_pagemap_scan_reports_exactly_the_written_pages() {
    let r = movegc_gc::probe::run();
    if r.open_path.is_none() {
        eprintln!("skipped: wp_async: userfaultfd unavailable: {}", r.reason);
        return;
    }
    let want = Features::WP_ASYNC | Features::WP_UNPOPULATED;
    if !r.supported.contains(want) {
        eprintln!("skipped: wp_async: the kernel does not offer WP_ASYNC + WP_UNPOPULATED");
        return;
    }
    assert!(r.check_wp_async.ok, "{}", r.check_wp_async.detail);
}

/// The probe's live checks of the default fault path (SIGBUS mode, resolved
/// by the faulting thread) and of `UFFDIO_POISON` pass wherever the
/// features are granted, and "features granted" names SIGBUS for the
/// SIGBUS-mode descriptor.
#[test]
fn probe_checks_the_sigbus_path_and_poison_live() {
    let r = movegc_gc::probe::run();
    if r.open_path.is_none() {
        eprintln!(
            "skipped: sigbus/poison checks: userfaultfd unavailable: {}",
            r.reason
        );
        return;
    }
    if !r.granted_sigbus.contains(Features::SIGBUS) {
        eprintln!("skipped: UFFD_FEATURE_SIGBUS not granted here");
        assert!(!r.check_sigbus.ok);
        return;
    }
    assert!(r.granted_sigbus.names().contains(&"SIGBUS"));
    assert!(r.check_sigbus.ok, "{}", r.check_sigbus.detail);
    if r.granted_sigbus.contains(Features::POISON) {
        assert!(r.check_poison.ok, "{}", r.check_poison.detail);
    } else {
        eprintln!("skipped: poison check: UFFD_FEATURE_POISON not granted (Linux < 6.6)");
        assert!(!r.check_poison.ok);
    }
}
