//! "Can movegc compact concurrently here, and if not, why?" — the checks
//! behind `movegc probe`, as a library so the command line and the runtime
//! reach the same conclusion.
//!
//! The probe reads the kernel facts that decide userfaultfd access (release,
//! `vm.unprivileged_userfaultfd`, `/dev/userfaultfd`, THP mode), opens a
//! userfaultfd the way the collector does (least privilege first), and runs
//! four live checks on scratch mappings: a real `UFFDIO_MOVE` of one page, a
//! real `UFFDIO_COPY`, a missing-page fault resolved by a handler thread,
//! and `EBUSY` from MOVE on a page shared with a forked child (the case the
//! collector must survive by falling back to COPY); and, in a forked child
//! that installs its own `SIGBUS` handler, the default fault path (a fault
//! in SIGBUS mode resolved by the faulting thread) and `UFFDIO_POISON` (what
//! the stale-reference mode needs). From those it derives the strategy the
//! runtime uses.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::mapping::{Mapping, Prot, PAGE_SIZE};
use crate::uffd::{
    CopyMode, Event, Features, Ioctls, MoveMode, OpenAttempt, OpenOptions, OpenPath, RegisterMode,
    Uffd, UffdError,
};

/// What the runtime will do on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Concurrent compaction installing pages with `UFFDIO_MOVE`.
    ConcurrentMove,
    /// Concurrent compaction installing pages with `UFFDIO_COPY`.
    ConcurrentCopy,
    /// No usable userfaultfd: stop-the-world compaction.
    StopTheWorld,
}

impl Capability {
    /// Stable name (JSON): `concurrent-move`, `concurrent-copy`, `stop-the-world`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::ConcurrentMove => "concurrent-move",
            Capability::ConcurrentCopy => "concurrent-copy",
            Capability::StopTheWorld => "stop-the-world",
        }
    }
}

/// Result of one live check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Whether the kernel behaved as the collector needs.
    pub ok: bool,
    /// What was seen (e.g. the error, or "moved 4096 bytes, data intact").
    pub detail: String,
}

impl Check {
    fn pass(detail: impl Into<String>) -> Check {
        Check {
            ok: true,
            detail: detail.into(),
        }
    }
    fn fail(detail: impl Into<String>) -> Check {
        Check {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// `/dev/userfaultfd` as seen by this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Whether the device node exists.
    pub present: bool,
    /// Mode like `crw-------` (empty if absent).
    pub mode: String,
    /// Owner uid and gid.
    pub owner: Option<(u32, u32)>,
}

/// Everything the probe found.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    /// `uname -r`.
    pub kernel: String,
    /// Effective uid of the probing process.
    pub euid: u32,
    /// `/proc/sys/vm/unprivileged_userfaultfd`, if readable.
    pub unprivileged_userfaultfd: Option<String>,
    /// The device node.
    pub device: DeviceInfo,
    /// THP mode from `/sys/kernel/mm/transparent_hugepage/enabled` (the
    /// bracketed choice), if readable.
    pub thp: Option<String>,
    /// The attempts made by the collector's own open (least privilege
    /// first, stopping at the first that works).
    pub attempts: Vec<OpenAttempt>,
    /// Every open path tried on its own, so the report says why each one
    /// works or not (e.g. EACCES on the device, EPERM from the sysctl).
    pub paths: Vec<OpenAttempt>,
    /// The path that worked.
    pub open_path: Option<String>,
    /// Why no path worked, if none did.
    pub open_error: Option<String>,
    /// Features the kernel supports.
    pub supported: Features,
    /// Features granted to the collector's descriptor.
    pub granted: Features,
    /// Ioctls that MISSING registration of anonymous memory reports.
    pub register_ioctls: Ioctls,
    /// A page moved with `UFFDIO_MOVE` arrives intact and leaves its source empty.
    pub check_move: Check,
    /// `UFFDIO_COPY` fills a missing page.
    pub check_copy: Check,
    /// A thread touching a missing page is resumed by a handler thread.
    pub check_fault_roundtrip: Check,
    /// MOVE of a page shared with a live forked child fails with `EBUSY`
    /// and COPY of the same page succeeds.
    pub check_ebusy_after_fork: Check,
    /// Kernel dirty-page tracking (`UFFD_FEATURE_WP_ASYNC` +
    /// `PAGEMAP_SCAN`, the remembered set young collections could use
    /// instead of a card barrier): exactly the pages written since they
    /// were protected are reported, one of them zapped and touched again,
    /// and they are protected again.
    pub check_wp_async: Check,
    /// Features granted to a descriptor opened as a heap in the default
    /// fault mode opens it (`MOVE | SIGBUS | POISON`): what `granted` (the
    /// handler-thread descriptor) does not show.
    pub granted_sigbus: Features,
    /// The default fault path, SIGBUS mode (run in a forked child, which
    /// installs its own handler): a read of a registered missing page
    /// raises `SIGBUS` with `BUS_ADRERR` at that page; the handler installs
    /// the page with `UFFDIO_COPY` and returns; the read is retried and
    /// sees the data.
    pub check_sigbus: Check,
    /// `UFFDIO_POISON`, as the stale-reference mode uses it (forked child):
    /// a poisoned page read raises `SIGBUS` (`BUS_ADRERR`, that page), and
    /// a poisoned page dropped with `MADV_DONTNEED` reads as zeros again.
    pub check_poison: Check,
    /// The conclusion.
    pub capability: Capability,
    /// Why.
    pub reason: String,
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn device_info() -> DeviceInfo {
    match std::fs::metadata("/dev/userfaultfd") {
        Ok(md) => {
            let m = md.permissions().mode();
            let mut s = String::from(if md.file_type().is_char_device_like() {
                "c"
            } else {
                "-"
            });
            for (i, ch) in ["r", "w", "x", "r", "w", "x", "r", "w", "x"]
                .iter()
                .enumerate()
            {
                s.push_str(if m & (0o400 >> i) != 0 { ch } else { "-" });
            }
            DeviceInfo {
                present: true,
                mode: s,
                owner: Some((md.uid(), md.gid())),
            }
        }
        Err(_) => DeviceInfo {
            present: false,
            mode: String::new(),
            owner: None,
        },
    }
}

trait CharDevice {
    fn is_char_device_like(&self) -> bool;
}

impl CharDevice for std::fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

fn thp_mode() -> Option<String> {
    let s = read_trim("/sys/kernel/mm/transparent_hugepage/enabled")?;
    let start = s.find('[')?;
    let end = s[start..].find(']')?;
    Some(s[start + 1..start + end].to_string())
}

/// A scratch page pattern: word i holds `seed ^ i`.
fn fill(map: &Mapping, off: usize, seed: u64) {
    // SAFETY: the probe owns `map`; no other reference to this page exists.
    let b = unsafe { map.bytes_mut(off, PAGE_SIZE) };
    for (i, w) in b.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(seed ^ i as u64).to_ne_bytes());
    }
}

fn matches(map: &Mapping, off: usize, seed: u64) -> bool {
    // SAFETY: the probe owns `map`; the page is only read here.
    let b = unsafe { map.bytes(off, PAGE_SIZE) };
    b.chunks_exact(8)
        .enumerate()
        .all(|(i, w)| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == seed ^ i as u64)
}

fn is_zero(map: &Mapping, off: usize) -> bool {
    // SAFETY: as in `matches`.
    unsafe { map.bytes(off, PAGE_SIZE) }.iter().all(|&b| b == 0)
}

/// Two scratch mappings, excluded from `fork()`: a fork elsewhere in the
/// process (another probe, the embedding program) would otherwise make
/// their pages non-exclusive and turn MOVE into EBUSY.
fn scratch() -> std::io::Result<(Mapping, Mapping)> {
    let src = Mapping::new(4 * PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite)?;
    let dst = Mapping::new(4 * PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite)?;
    src.madvise(0, src.len(), libc::MADV_DONTFORK)?;
    dst.madvise(0, dst.len(), libc::MADV_DONTFORK)?;
    Ok((src, dst))
}

fn check_move(uffd: &Uffd) -> Check {
    if !uffd.features().contains(Features::MOVE) {
        return Check::fail("UFFD_FEATURE_MOVE not granted (kernel older than 6.8?)");
    }
    let (src, dst) = match scratch() {
        Ok(m) => m,
        Err(e) => return Check::fail(format!("mmap: {e}")),
    };
    fill(&src, 0, 0x5eed);
    if let Err(e) = uffd.register(dst.start(), dst.len(), RegisterMode::MISSING) {
        return Check::fail(format!("register: {e}"));
    }
    // SAFETY: `src` and `dst` are this function's private scratch mappings;
    // no Rust reference points into them (`fill`/`matches` borrow them only
    // briefly) and `dst` is registered and still missing.
    let r = unsafe { uffd.move_pages(dst.start(), src.start(), PAGE_SIZE, MoveMode::empty()) };
    let _ = uffd.unregister(dst.start(), dst.len());
    match r {
        Ok(()) if matches(&dst, 0, 0x5eed) && is_zero(&src, 0) => {
            Check::pass("moved one page: data intact at dst, src empty")
        }
        Ok(()) => Check::fail("MOVE returned success but the data is wrong"),
        Err(e) => Check::fail(format!("MOVE failed: {e}")),
    }
}

fn check_copy(uffd: &Uffd) -> Check {
    let (src, dst) = match scratch() {
        Ok(m) => m,
        Err(e) => return Check::fail(format!("mmap: {e}")),
    };
    fill(&src, 0, 0xc0b1);
    if let Err(e) = uffd.register(dst.start(), dst.len(), RegisterMode::MISSING) {
        return Check::fail(format!("register: {e}"));
    }
    // SAFETY: `dst` is this function's private scratch mapping, registered
    // and missing, with no reference into it; `src` is readable and unshared.
    let r = unsafe { uffd.copy(dst.start(), src.start(), PAGE_SIZE, CopyMode::empty()) };
    let _ = uffd.unregister(dst.start(), dst.len());
    match r {
        Ok(()) if matches(&dst, 0, 0xc0b1) && matches(&src, 0, 0xc0b1) => {
            Check::pass("copied one page: data intact")
        }
        Ok(()) => Check::fail("COPY returned success but the data is wrong"),
        Err(e) => Check::fail(format!("COPY failed: {e}")),
    }
}

fn check_fault_roundtrip(uffd: &Uffd) -> Check {
    if uffd.features().contains(Features::SIGBUS) {
        return Check::fail("descriptor is in SIGBUS mode; no fault events");
    }
    let (src, dst) = match scratch() {
        Ok(m) => m,
        Err(e) => return Check::fail(format!("mmap: {e}")),
    };
    fill(&src, 0, 0xfa17);
    if let Err(e) = uffd.register(dst.start(), dst.len(), RegisterMode::MISSING) {
        return Check::fail(format!("register: {e}"));
    }
    let dst = Arc::new(dst);
    let seen = Arc::new(AtomicU64::new(0));
    let reader = {
        let (dst, seen) = (dst.clone(), seen.clone());
        std::thread::spawn(move || {
            // A user-mode read of the missing page: blocks until resolved.
            let v = crate::object::load_word(dst.start() + 8);
            seen.store(v, Ordering::SeqCst);
        })
    };
    let result = match uffd.wait_event(Some(Duration::from_secs(5))) {
        Ok(Some(Event::PageFault { address, .. })) if address & !(PAGE_SIZE - 1) == dst.start() => {
            // SAFETY: private scratch mappings: the reader only loads a word
            // by raw address (no Rust reference into `dst`), `dst` is
            // registered and missing, and nothing else touches `src`.
            let install = unsafe {
                if uffd.features().contains(Features::MOVE) {
                    uffd.move_pages(dst.start(), src.start(), PAGE_SIZE, MoveMode::empty())
                } else {
                    uffd.copy(dst.start(), src.start(), PAGE_SIZE, CopyMode::empty())
                }
            };
            match install {
                Ok(()) => None,
                Err(e) => Some(Check::fail(format!("resolving the fault failed: {e}"))),
            }
        }
        Ok(Some(ev)) => Some(Check::fail(format!("unexpected event {ev:?}"))),
        Ok(None) => Some(Check::fail("no fault event within 5 s")),
        Err(e) => Some(Check::fail(format!("reading events failed: {e}"))),
    };
    if let Some(fail) = result {
        // Unblock the reader before reporting.
        // SAFETY: `dst` is our scratch mapping, still missing; the reader
        // only loads a word from it by raw address.
        let _ = unsafe { uffd.zeropage(dst.start(), PAGE_SIZE, false) };
        let _ = reader.join();
        let _ = uffd.unregister(dst.start(), dst.len());
        return fail;
    }
    let joined = reader.join();
    let _ = uffd.unregister(dst.start(), dst.len());
    match joined {
        Ok(()) if seen.load(Ordering::SeqCst) == 0xfa17 ^ 1 => {
            Check::pass("reader blocked, handler thread resolved the fault, reader saw the data")
        }
        Ok(()) => Check::fail("reader resumed but saw wrong data"),
        Err(_) => Check::fail("reader thread panicked"),
    }
}

/// A forked child that sleeps until released; its existence keeps the
/// parent's private pages shared (not AnonExclusive).
struct Child {
    pid: libc::pid_t,
    release: libc::c_int,
}

impl Child {
    fn fork() -> std::io::Result<Child> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid 2-element array for pipe(2).
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the child only calls async-signal-safe functions (read,
        // _exit) before exiting, as required after fork in a threaded process.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            let mut b = 0u8;
            // SAFETY: async-signal-safe calls on a valid fd and buffer.
            unsafe {
                libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(fds[0]) };
        Ok(Child {
            pid,
            release: fds[1],
        })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: valid fd and pid we own; the write releases the child,
        // waitpid reaps it.
        unsafe {
            libc::write(self.release, [1u8].as_ptr().cast(), 1);
            libc::close(self.release);
            let mut status = 0;
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

fn check_ebusy_after_fork(uffd: &Uffd) -> Check {
    if !uffd.features().contains(Features::MOVE) {
        return Check::fail("UFFD_FEATURE_MOVE not granted");
    }
    let (src, dst) = match scratch() {
        Ok(m) => m,
        Err(e) => return Check::fail(format!("mmap: {e}")),
    };
    // This source must be inherited by the child.
    if let Err(e) = src.madvise(0, src.len(), libc::MADV_DOFORK) {
        return Check::fail(format!("madvise(DOFORK): {e}"));
    }
    fill(&src, 0, 0xf0f0);
    if let Err(e) = uffd.register(dst.start(), dst.len(), RegisterMode::MISSING) {
        return Check::fail(format!("register: {e}"));
    }
    let child = match Child::fork() {
        Ok(c) => c,
        Err(e) => return Check::fail(format!("fork: {e}")),
    };
    // SAFETY: private scratch mappings with no Rust reference into them
    // (the forked child has its own copy of `src`); `dst` is registered and
    // missing, and the MOVE is expected to fail with EBUSY before the COPY.
    let (moved, copied) = unsafe {
        (
            uffd.move_pages(dst.start(), src.start(), PAGE_SIZE, MoveMode::empty()),
            uffd.copy(dst.start(), src.start(), PAGE_SIZE, CopyMode::empty()),
        )
    };
    drop(child);
    let _ = uffd.unregister(dst.start(), dst.len());
    match (moved, copied) {
        (Err(e), Ok(())) if e.error == UffdError::Busy && matches(&dst, 0, 0xf0f0) => Check::pass(
            "MOVE of a page shared with a live child: EBUSY; COPY fallback: data intact",
        ),
        (Err(e), _) if e.error == UffdError::Busy => {
            Check::fail("EBUSY seen but the COPY fallback failed")
        }
        (Ok(()), _) => Check::fail("MOVE succeeded on a page shared after fork (expected EBUSY)"),
        (Err(e), _) => Check::fail(format!("MOVE failed with {e}, expected EBUSY")),
    }
}

/// See [`ProbeReport::check_wp_async`]. Opens its own userfaultfd (the
/// feature set differs from the collector's) through the path that worked.
fn check_wp_async(path: OpenPath, supported: Features) -> Check {
    let want = Features::WP_ASYNC | Features::WP_UNPOPULATED;
    if !supported.contains(want) {
        return unavailable("WP_ASYNC or WP_UNPOPULATED not supported by this kernel");
    }
    let uffd = match Uffd::open(&OpenOptions::new().require_features(want).require_path(path)) {
        Ok(u) => u,
        Err(e) => return Check::fail(format!("open with WP_ASYNC: {e}")),
    };
    let pagemap = match crate::uffd::pagemap::Pagemap::open() {
        Ok(p) => p,
        Err(e) => return Check::fail(e.to_string()),
    };
    const PAGES: usize = 8;
    let m = match Mapping::new(PAGES * PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite) {
        Ok(m) => m,
        Err(e) => return Check::fail(format!("mmap: {e}")),
    };
    let _ = m.madvise(0, m.len(), libc::MADV_NOHUGEPAGE);
    let (a, end) = (m.start(), m.end());
    let write = |p: usize| {
        // SAFETY: the probe owns `m`; no other reference to this page exists.
        let page = unsafe { m.bytes_mut(p * PAGE_SIZE, PAGE_SIZE) };
        page[8] = 1;
    };
    write(0);
    write(5);
    let scan = || -> Result<Vec<usize>, UffdError> {
        let mut out = Vec::new();
        pagemap.take_written(a, end, &mut out)?;
        Ok(out
            .iter()
            .flat_map(|&(s, e)| ((s - a) / PAGE_SIZE)..((e - a) / PAGE_SIZE))
            .collect())
    };
    let r = (|| -> Result<String, String> {
        uffd.register(a, m.len(), RegisterMode::WP)
            .map_err(|e| format!("register WP: {e}"))?;
        uffd.writeprotect(a, m.len(), true, false)
            .map_err(|e| format!("write-protect: {e}"))?;
        let clean = scan().map_err(|e| e.to_string())?;
        if !clean.is_empty() {
            return Err(format!(
                "pages {clean:?} reported written right after protecting"
            ));
        }
        // Page 5 released and touched again (the collector releases pages),
        // page 2 never populated before (WP_UNPOPULATED), page 0 populated.
        m.madvise(5 * PAGE_SIZE, PAGE_SIZE, libc::MADV_DONTNEED)
            .map_err(|e| format!("madvise: {e}"))?;
        for p in [0, 2, 5] {
            write(p);
        }
        let written = scan().map_err(|e| e.to_string())?;
        if written != [0, 2, 5] {
            return Err(format!(
                "pages 0, 2, 5 written, PAGEMAP_SCAN reported {written:?}"
            ));
        }
        let again = scan().map_err(|e| e.to_string())?;
        if !again.is_empty() {
            return Err(format!("not protected again: {again:?} reported twice"));
        }
        write(7);
        let last = scan().map_err(|e| e.to_string())?;
        if last != [7] {
            return Err(format!("page 7 written after a scan, reported {last:?}"));
        }
        Ok("pages 0, 2 (unpopulated) and 5 (zapped) written: reported, protected again; then page 7 alone".into())
    })();
    let _ = uffd.unregister(a, m.len());
    match r {
        Ok(d) => Check::pass(d),
        Err(d) => Check::fail(d),
    }
}

/// The two live checks that need a `SIGBUS` handler of their own, so they
/// run in a forked child (the process's handler, if a heap installed one,
/// is left alone).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ChildCheck {
    /// A missing-page fault in SIGBUS mode, resolved by the handler.
    Sigbus,
    /// A read of a poisoned page; a poisoned page zapped reads zeros.
    Poison,
}

/// The child's state, for its handler: the descriptor, the page the next
/// SIGBUS must name, the page to copy in (0: the signal is the expected
/// end, exit with [`child_exit::OK`]) and how many signals arrived.
static CHILD_UFFD: std::sync::atomic::AtomicPtr<Uffd> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
static CHILD_EXPECT: AtomicUsize = AtomicUsize::new(0);
static CHILD_SRC: AtomicUsize = AtomicUsize::new(0);
static CHILD_SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// The forked child's exit codes (anything else: killed by a signal).
mod child_exit {
    pub(super) const OK: i32 = 0;
    pub(super) const OPEN: i32 = 10;
    pub(super) const MMAP: i32 = 11;
    pub(super) const REGISTER: i32 = 12;
    pub(super) const SIGACTION: i32 = 13;
    pub(super) const WRONG_CODE: i32 = 20;
    pub(super) const WRONG_ADDR: i32 = 21;
    pub(super) const COPY: i32 = 22;
    pub(super) const WRONG_DATA: i32 = 23;
    pub(super) const NO_SIGNAL: i32 = 24;
    pub(super) const POISON: i32 = 30;
    pub(super) const ZAP: i32 = 31;
    pub(super) const POISON_READ: i32 = 32;

    /// What a code means.
    pub(super) fn describe(code: i32) -> &'static str {
        match code {
            OPEN => "the child could not open a userfaultfd with the features",
            MMAP => "mmap failed in the child",
            REGISTER => "UFFDIO_REGISTER failed in the child",
            SIGACTION => "sigaction failed in the child",
            WRONG_CODE => "SIGBUS arrived with a code other than BUS_ADRERR",
            WRONG_ADDR => "SIGBUS named another page than the one read",
            COPY => "UFFDIO_COPY in the SIGBUS handler failed",
            WRONG_DATA => "the retried read saw wrong data",
            NO_SIGNAL => "the read of a missing page raised no SIGBUS",
            POISON => "UFFDIO_POISON failed",
            ZAP => "a poisoned page dropped with MADV_DONTNEED did not read as zeros",
            POISON_READ => "a read of a poisoned page succeeded",
            _ => "unexpected exit code",
        }
    }
}

const CHILD_MAGIC: u64 = 0x5157_b005;

extern "C" fn child_on_sigbus(
    _sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _uctx: *mut libc::c_void,
) {
    CHILD_SIGNALS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // for a kernel-raised SIGBUS the union member is `si_addr`.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let exit = |c: i32| -> ! {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(c) }
    };
    if code != libc::BUS_ADRERR {
        exit(child_exit::WRONG_CODE);
    }
    if addr & !(PAGE_SIZE - 1) != CHILD_EXPECT.load(Ordering::SeqCst) {
        exit(child_exit::WRONG_ADDR);
    }
    let src = CHILD_SRC.load(Ordering::SeqCst);
    if src == 0 {
        exit(child_exit::OK);
    }
    // SAFETY: the child's main code set this pointer to its `Uffd`, which
    // lives until the child exits; the destination is the registered,
    // missing page just faulted on, the source a private page.
    let copied = unsafe {
        let uffd = &*CHILD_UFFD.load(Ordering::SeqCst);
        uffd.copy(addr & !(PAGE_SIZE - 1), src, PAGE_SIZE, CopyMode::empty())
    };
    if copied.is_err() {
        exit(child_exit::COPY);
    }
}

/// The body of a child check; returns the exit code. Only
/// async-signal-safe calls (raw syscalls, atomics): it runs right after
/// `fork` in a possibly threaded process.
fn child_body(check: ChildCheck) -> i32 {
    use child_exit::*;
    let features = match check {
        ChildCheck::Sigbus => Features::SIGBUS,
        ChildCheck::Poison => Features::POISON,
    };
    let Ok(uffd) = Uffd::open_after_fork(features) else {
        return OPEN;
    };
    let len = 4 * PAGE_SIZE;
    // SAFETY: plain anonymous mappings owned by this child alone.
    let (dst, src) = unsafe {
        let anon = |len| {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (anon(len), anon(PAGE_SIZE))
    };
    if dst == libc::MAP_FAILED || src == libc::MAP_FAILED {
        return MMAP;
    }
    let (dst, src) = (dst as usize, src as usize);
    crate::object::store_word(src + 8, CHILD_MAGIC);
    if uffd.register(dst, len, RegisterMode::MISSING).is_err() {
        return REGISTER;
    }
    CHILD_UFFD.store(&uffd as *const Uffd as *mut Uffd, Ordering::SeqCst);
    // SAFETY: installs this child's handler (async-signal-safe itself) with
    // a zeroed, then filled, sigaction.
    let installed = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = child_on_sigbus as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut()) == 0
    };
    if !installed {
        return SIGACTION;
    }
    match check {
        ChildCheck::Sigbus => {
            CHILD_SRC.store(src, Ordering::SeqCst);
            CHILD_EXPECT.store(dst, Ordering::SeqCst);
            if crate::object::load_word(dst + 8) != CHILD_MAGIC {
                return WRONG_DATA;
            }
            if CHILD_SIGNALS.load(Ordering::SeqCst) != 1 {
                return NO_SIGNAL;
            }
            OK
        }
        ChildCheck::Poison => {
            // SAFETY: pages 1 and 2 of this child's registered, missing
            // scratch range; nothing references them.
            if unsafe { uffd.poison(dst + PAGE_SIZE, 2 * PAGE_SIZE, false) }.is_err() {
                return POISON;
            }
            // SAFETY: madvise on this child's own mapping.
            unsafe {
                libc::madvise(
                    (dst + 2 * PAGE_SIZE) as *mut _,
                    PAGE_SIZE,
                    libc::MADV_DONTNEED,
                )
            };
            // A registered missing page would fault in MISSING mode; the
            // zapped page is missing again, so unregister first: what
            // remains poisoned must still raise SIGBUS unregistered.
            let _ = uffd.unregister(dst, len);
            if crate::object::load_word(dst + 2 * PAGE_SIZE) != 0
                || CHILD_SIGNALS.load(Ordering::SeqCst) != 0
            {
                return ZAP;
            }
            CHILD_EXPECT.store(dst + PAGE_SIZE, Ordering::SeqCst);
            crate::object::load_word(dst + PAGE_SIZE + 16);
            POISON_READ
        }
    }
}

/// Runs `check` in a forked child (killed after 5 s if it hangs) and turns
/// its exit into a [`Check`].
fn check_in_child(check: ChildCheck, granted: Features) -> Check {
    let need = match check {
        ChildCheck::Sigbus => Features::SIGBUS,
        ChildCheck::Poison => Features::POISON,
    };
    if !granted.contains(need) {
        return Check::fail(format!("{} not granted", need.names().join("")));
    }
    // SAFETY: the child runs only `child_body` (async-signal-safe: raw
    // syscalls, atomics, no allocation or lock) and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Check::fail(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only, then _exit.
        unsafe {
            libc::alarm(5);
            libc::_exit(child_body(check));
        }
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) {
        return Check::fail(format!(
            "the child was killed by signal {} (a SIGBUS that was not resolved, or a hang)",
            libc::WTERMSIG(status)
        ));
    }
    let code = libc::WEXITSTATUS(status);
    match (code, check) {
        (child_exit::OK, ChildCheck::Sigbus) => Check::pass(
            "missing page read: SIGBUS (BUS_ADRERR, that page); the handler's COPY resolved it and the read saw the data",
        ),
        (child_exit::OK, ChildCheck::Poison) => Check::pass(
            "poisoned page read: SIGBUS (BUS_ADRERR, that page), also unregistered; a poisoned page zapped reads zeros",
        ),
        (c, _) => Check::fail(format!("{} (exit {c})", child_exit::describe(c))),
    }
}

fn unavailable(why: &str) -> Check {
    Check::fail(format!("not run: {why}"))
}

fn try_path(p: OpenPath) -> OpenAttempt {
    match Uffd::open(
        &OpenOptions::new()
            .features(Features::empty())
            .require_path(p),
    ) {
        Ok(u) => u.attempts().last().cloned().unwrap_or(OpenAttempt {
            path: p,
            errno: None,
            reason: "opened".into(),
            ok: true,
        }),
        Err(UffdError::Unavailable { attempts, reason }) => {
            attempts.last().cloned().unwrap_or(OpenAttempt {
                path: p,
                errno: None,
                reason,
                ok: false,
            })
        }
        Err(e) => OpenAttempt {
            path: p,
            errno: e.errno(),
            reason: e.to_string(),
            ok: false,
        },
    }
}

/// Runs every probe. Takes well under a second.
pub fn run() -> ProbeReport {
    let supported = Uffd::supported_features().unwrap_or(Features::empty());
    let opts = OpenOptions::new().features(Features::MOVE | Features::THREAD_ID);
    let opened = Uffd::open(&opts);
    let mut report = ProbeReport {
        kernel: kernel_release(),
        euid: nix::unistd::geteuid().as_raw(),
        unprivileged_userfaultfd: read_trim("/proc/sys/vm/unprivileged_userfaultfd"),
        device: device_info(),
        thp: thp_mode(),
        attempts: Vec::new(),
        paths: OpenPath::ALL.iter().map(|&p| try_path(p)).collect(),
        open_path: None,
        open_error: None,
        supported,
        granted: Features::empty(),
        register_ioctls: Ioctls::empty(),
        check_move: unavailable("no userfaultfd"),
        check_copy: unavailable("no userfaultfd"),
        check_fault_roundtrip: unavailable("no userfaultfd"),
        check_ebusy_after_fork: unavailable("no userfaultfd"),
        check_wp_async: unavailable("no userfaultfd"),
        granted_sigbus: Features::empty(),
        check_sigbus: unavailable("no userfaultfd"),
        check_poison: unavailable("no userfaultfd"),
        capability: Capability::StopTheWorld,
        reason: String::new(),
    };
    let uffd = match opened {
        Ok(u) => u,
        Err(e) => {
            if let UffdError::Unavailable { attempts, .. } = &e {
                report.attempts = attempts.clone();
            }
            report.open_error = Some(e.to_string());
            report.reason =
                format!("userfaultfd cannot be opened ({e}); collections compact stop-the-world");
            return report;
        }
    };
    report.attempts = uffd.attempts().to_vec();
    report.open_path = Some(uffd.open_path().as_str().to_string());
    report.granted = uffd.features();
    if let Ok(m) = Mapping::new(PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite) {
        if let Ok(io) = uffd.register(m.start(), m.len(), RegisterMode::MISSING) {
            report.register_ioctls = io;
            let _ = uffd.unregister(m.start(), m.len());
        }
    }
    report.check_move = check_move(&uffd);
    report.check_copy = check_copy(&uffd);
    report.check_fault_roundtrip = check_fault_roundtrip(&uffd);
    report.check_ebusy_after_fork = check_ebusy_after_fork(&uffd);
    report.check_wp_async = check_wp_async(uffd.open_path(), supported);
    let sigbus_mode = Features::MOVE | Features::SIGBUS | Features::POISON;
    if let Ok(u) = Uffd::open(&OpenOptions::new().features(sigbus_mode)) {
        report.granted_sigbus = u.features();
    }
    report.check_sigbus = check_in_child(ChildCheck::Sigbus, report.granted_sigbus);
    report.check_poison = check_in_child(ChildCheck::Poison, report.granted_sigbus);
    let (cap, reason) = decide(&report);
    report.capability = cap;
    report.reason = reason;
    report
}

/// The runtime's decision from a report: MOVE needs the MOVE feature and
/// ioctl and working MOVE, COPY and fault checks; COPY needs COPY and fault
/// checks; otherwise stop-the-world. (EBUSY after fork is informational: the
/// collector falls back to COPY per page when it happens.)
pub fn decide(r: &ProbeReport) -> (Capability, String) {
    let path = r.open_path.as_deref().unwrap_or("none");
    if r.open_path.is_none() {
        return (
            Capability::StopTheWorld,
            "userfaultfd cannot be opened; compacting stop-the-world".into(),
        );
    }
    if !(r.check_copy.ok && r.check_fault_roundtrip.ok) {
        return (
            Capability::StopTheWorld,
            format!(
                "userfaultfd opened ({path}) but COPY or fault resolution failed: {} / {}",
                r.check_copy.detail, r.check_fault_roundtrip.detail
            ),
        );
    }
    let move_ready = r.granted.contains(Features::MOVE)
        && r.register_ioctls.contains(Ioctls::MOVE)
        && r.check_move.ok;
    if move_ready {
        (Capability::ConcurrentMove, format!("userfaultfd via {path} with UFFD_FEATURE_MOVE; MOVE, COPY and fault round trip work"))
    } else {
        (Capability::ConcurrentCopy, format!("userfaultfd via {path} works but MOVE is unavailable ({}); installing pages with COPY", r.check_move.detail))
    }
}
