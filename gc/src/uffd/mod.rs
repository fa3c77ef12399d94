//! The userfaultfd layer: the only code in movegc that issues userfaultfd
//! syscalls and ioctls.
//!
//! A thin, typed wrapper over `libc` (no `userfaultfd` crate: it has no
//! `UFFDIO_MOVE`, needs libclang, and gives up on unprivileged systems). Raw
//! uAPI definitions live in [`sys`]; this module adds validation, errno
//! mapping and documentation of the kernel's semantics. Full background,
//! measured numbers and a caller's guide are in `docs/uffd.md`.
//!
//! # Opening
//!
//! [`Uffd::open`] tries the creation paths in least-privilege order (see
//! [`OpenPath`]) and records every attempt, then performs the one and only
//! `UFFDIO_API` handshake the kernel allows per descriptor (a second
//! `UFFDIO_API` on the same fd fails with `EINVAL`). The requested
//! [`Features`] are first intersected with what the kernel supports, probed on
//! a throw-away descriptor ([`Uffd::supported_features`]), so an older kernel
//! yields fewer granted features instead of an error unless you
//! [`OpenOptions::require_features`]. `EVENT_FORK` additionally needs
//! `CAP_SYS_PTRACE` (the handshake fails with `EPERM` otherwise); it is
//! probed the same way and silently dropped when not required.
//!
//! # The cost of `USER_MODE_ONLY` (and of `SIGBUS` mode)
//!
//! The default path, [`OpenPath::UserModeOnly`], needs no privilege, but the
//! descriptor only handles faults raised by *user-mode* instructions. When
//! the *kernel* touches a missing page of a registered range on our behalf
//! (`copy_to_user`/`copy_from_user`: `write(fd, heap_ptr, n)`,
//! `read(fd, heap_ptr, n)` into the heap, `recvmsg`, `futex` on a heap word,
//! `process_vm_readv`, O_DIRECT, ...) the syscall fails with **`EFAULT`**
//! instead of blocking until the page is resolved, and no event is queued.
//! The same happens for every access, kernel or user, once
//! [`Features::SIGBUS`] is granted: user accesses raise `SIGBUS`
//! (`BUS_ADRERR`, `si_addr` = the faulting address), kernel accesses return
//! `EFAULT`. Consequence for the runtime: memory in a registered range that
//! is handed to a syscall must be resolved first, by touching it from user
//! space (a volatile read of each page runs the normal fault path), or the
//! caller must retry the syscall after resolving on `EFAULT`. Descriptors
//! opened via [`OpenPath::DevUserfaultfd`] or [`OpenPath::Syscall`] without
//! `SIGBUS` block kernel accesses like user ones and queue an event instead.
//!
//! # Errors and partial progress
//!
//! Every range is validated *before* any syscall: addresses and lengths must
//! be page aligned (the source of [`Uffd::copy`] excepted), the length
//! non-zero and the range must not wrap; violations give
//! [`UffdError::InvalidRange`]. The resolving ioctls (`MOVE`, `COPY`,
//! `ZEROPAGE`, `POISON`, `CONTINUE`) work page by page and report how far they
//! got: when the kernel stops after some pages it returns `EAGAIN` with the
//! byte count in the result field, surfaced as
//! `OpError { done, error: UffdError::Again }`; retry from `start + done` to
//! learn the real cause. A negative result field (e.g. `-EAGAIN` while a
//! non-cooperative event is unread) means `done == 0`. No waiter is woken
//! when an ioctl fails, so a resolver that loses a race (`Exists`) must call
//! [`Uffd::wake`] if the winner might have used `DONTWAKE`.
//!
//! # Which operations are `unsafe`
//!
//! The operations that change what memory at a raw address contains,
//! [`Uffd::move_pages`], [`Uffd::copy`], [`Uffd::zeropage`], [`Uffd::poison`]
//! and [`Uffd::continue_range`], are `unsafe fn`s: a Rust reference into
//! their destination (or, for MOVE, source) range would see its referent
//! change, vanish or raise `SIGBUS`, so the caller must own those ranges
//! and guarantee that no reference points into them (each method's
//! `# Safety` section). The one exception is a shared reference to an
//! atomic (or other `UnsafeCell`) type valid for any bytes, such as the
//! heap's transient `&AtomicU64` word accesses blocked on a missing page:
//! it sees the change as a concurrent store, which its type allows; only
//! [`Uffd::poison`] must exclude those too. A range rejected with
//! [`UffdError::InvalidRange`] (checked before any syscall) is never
//! touched, so the requirements concern only ranges that pass validation.
//!
//! Everything else is safe: opening and the handshake only create a
//! descriptor; [`Uffd::register`], [`Uffd::unregister`], [`Uffd::wake`] and
//! [`Uffd::writeprotect`] only change *when* an access to a page completes
//! (it may block, fault or be retried), never what a mapped page contains;
//! and reading events only fills a stack buffer.
//!
//! # Events
//!
//! [`Uffd::read_event`] never waits on the default `O_NONBLOCK` descriptor;
//! [`Uffd::wait_event`] polls first. `poll()` on a userfaultfd opened
//! *without* `O_NONBLOCK` always reports `EPOLLERR`, so such a descriptor can
//! only be read blockingly. While a non-cooperative event (`EVENT_FORK`,
//! `EVENT_REMAP`, `EVENT_REMOVE`, `EVENT_UNMAP`, only if enabled) is queued
//! and unread, every resolving ioctl fails with `EAGAIN` and the thread that
//! caused the event is blocked until it is read.
//!
//! # Async-signal safety
//!
//! [`Uffd::move_pages`], [`Uffd::copy`], [`Uffd::zeropage`] and
//! [`Uffd::wake`] (and [`Uffd::poison`], [`Uffd::continue_range`],
//! [`Uffd::writeprotect`]) may be called from a `SIGBUS` handler: on success
//! and on every error path they only build a struct on the stack, issue
//! `ioctl(2)` (retried on `EINTR`) and read `errno`. They do not allocate,
//! lock, log or format. They do overwrite `errno`; a signal handler should
//! save and restore it. [`Uffd::open`], [`Uffd::read_event`] and
//! [`Uffd::wait_event`] may allocate. In SIGBUS mode `si_addr` is the exact
//! faulting address. Beware a handler that treats `Exists` as "resolved by
//! someone else": on a page poisoned with [`Uffd::poison`] the access faults
//! again forever (on kernels without `CONFIG_MEMORY_FAILURE` the poison SIGBUS
//! even carries the same `BUS_ADRERR` code as a uffd one).

pub mod sys;

mod open;
pub mod pagemap;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

pub use sys::PAGE_SIZE;

bitflags::bitflags! {
    /// `UFFD_FEATURE_*` bits negotiated by the `UFFDIO_API` handshake.
    ///
    /// Bit values are the kernel's (`MOVE` = `1 << 16`). Unknown bits that a
    /// newer kernel reports are retained by [`Uffd::supported_features`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Features: u64 {
        /// `PAGEFAULT_FLAG_WP`: write-protect faults are reported.
        const PAGEFAULT_FLAG_WP = sys::UFFD_FEATURE_PAGEFAULT_FLAG_WP;
        /// `EVENT_FORK`: fork events carry a uffd for the child. Needs `CAP_SYS_PTRACE`.
        const EVENT_FORK = sys::UFFD_FEATURE_EVENT_FORK;
        /// `EVENT_REMAP`: `mremap()` of a registered range is reported.
        const EVENT_REMAP = sys::UFFD_FEATURE_EVENT_REMAP;
        /// `EVENT_REMOVE`: `MADV_DONTNEED`/`MADV_REMOVE` is reported.
        const EVENT_REMOVE = sys::UFFD_FEATURE_EVENT_REMOVE;
        /// `MISSING_HUGETLBFS`: MISSING mode on hugetlbfs.
        const MISSING_HUGETLBFS = sys::UFFD_FEATURE_MISSING_HUGETLBFS;
        /// `MISSING_SHMEM`: MISSING mode on shmem.
        const MISSING_SHMEM = sys::UFFD_FEATURE_MISSING_SHMEM;
        /// `EVENT_UNMAP`: `munmap()` of a registered range is reported.
        const EVENT_UNMAP = sys::UFFD_FEATURE_EVENT_UNMAP;
        /// `SIGBUS`: faults raise SIGBUS in the faulting thread instead of queueing an event.
        const SIGBUS = sys::UFFD_FEATURE_SIGBUS;
        /// `THREAD_ID`: page-fault events carry the faulting thread id.
        const THREAD_ID = sys::UFFD_FEATURE_THREAD_ID;
        /// `MINOR_HUGETLBFS`: MINOR mode on hugetlbfs.
        const MINOR_HUGETLBFS = sys::UFFD_FEATURE_MINOR_HUGETLBFS;
        /// `MINOR_SHMEM`: MINOR mode on shmem.
        const MINOR_SHMEM = sys::UFFD_FEATURE_MINOR_SHMEM;
        /// `EXACT_ADDRESS`: fault addresses are not rounded down to the page.
        const EXACT_ADDRESS = sys::UFFD_FEATURE_EXACT_ADDRESS;
        /// `WP_HUGETLBFS_SHMEM`: WP mode on hugetlbfs and shmem.
        const WP_HUGETLBFS_SHMEM = sys::UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
        /// `WP_UNPOPULATED`: WP also applies to unpopulated ptes.
        const WP_UNPOPULATED = sys::UFFD_FEATURE_WP_UNPOPULATED;
        /// `POISON`: the `UFFDIO_POISON` ioctl.
        const POISON = sys::UFFD_FEATURE_POISON;
        /// `WP_ASYNC`: the kernel resolves WP faults itself (implies `WP_UNPOPULATED`).
        const WP_ASYNC = sys::UFFD_FEATURE_WP_ASYNC;
        /// `MOVE`: the `UFFDIO_MOVE` ioctl (Linux 6.8).
        const MOVE = sys::UFFD_FEATURE_MOVE;
    }
}

bitflags::bitflags! {
    /// Ioctls valid on a descriptor or range: bit `1 << _UFFDIO_nr`, as
    /// reported in `uffdio_api.ioctls` and `uffdio_register.ioctls`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Ioctls: u64 {
        /// `UFFDIO_REGISTER`.
        const REGISTER = 1 << sys::_UFFDIO_REGISTER;
        /// `UFFDIO_UNREGISTER`.
        const UNREGISTER = 1 << sys::_UFFDIO_UNREGISTER;
        /// `UFFDIO_WAKE`.
        const WAKE = 1 << sys::_UFFDIO_WAKE;
        /// `UFFDIO_COPY`.
        const COPY = 1 << sys::_UFFDIO_COPY;
        /// `UFFDIO_ZEROPAGE`.
        const ZEROPAGE = 1 << sys::_UFFDIO_ZEROPAGE;
        /// `UFFDIO_MOVE`.
        const MOVE = 1 << sys::_UFFDIO_MOVE;
        /// `UFFDIO_WRITEPROTECT`.
        const WRITEPROTECT = 1 << sys::_UFFDIO_WRITEPROTECT;
        /// `UFFDIO_CONTINUE`.
        const CONTINUE = 1 << sys::_UFFDIO_CONTINUE;
        /// `UFFDIO_POISON`.
        const POISON = 1 << sys::_UFFDIO_POISON;
        /// `UFFDIO_API`.
        const API = 1 << sys::_UFFDIO_API;
    }
}

bitflags::bitflags! {
    /// `UFFDIO_REGISTER_MODE_*`: which faults a registered range reports.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct RegisterMode: u64 {
        /// Faults on missing (never populated or zapped) pages.
        const MISSING = sys::UFFDIO_REGISTER_MODE_MISSING;
        /// Writes to pages write-protected with [`Uffd::writeprotect`].
        const WP = sys::UFFDIO_REGISTER_MODE_WP;
        /// Minor faults (page in page cache, pte missing; shmem/hugetlbfs only).
        const MINOR = sys::UFFDIO_REGISTER_MODE_MINOR;
    }
}

bitflags::bitflags! {
    /// `UFFDIO_MOVE_MODE_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MoveMode: u64 {
        /// Do not wake threads waiting on the destination; call [`Uffd::wake`] later.
        const DONTWAKE = sys::UFFDIO_MOVE_MODE_DONTWAKE;
        /// Count holes in the source as moved (the destination page stays missing)
        /// instead of failing with [`UffdError::NoSource`].
        const ALLOW_SRC_HOLES = sys::UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES;
    }
}

bitflags::bitflags! {
    /// `UFFDIO_COPY_MODE_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct CopyMode: u64 {
        /// Do not wake threads waiting on the destination; call [`Uffd::wake`] later.
        const DONTWAKE = sys::UFFDIO_COPY_MODE_DONTWAKE;
        /// Install the copied pages write-protected (range registered with WP).
        const WP = sys::UFFDIO_COPY_MODE_WP;
    }
}

/// Names used by `names()` for bits a flag type does not know.
const UNKNOWN_BIT_NAMES: [&str; 64] = [
    "bit0", "bit1", "bit2", "bit3", "bit4", "bit5", "bit6", "bit7", "bit8", "bit9", "bit10",
    "bit11", "bit12", "bit13", "bit14", "bit15", "bit16", "bit17", "bit18", "bit19", "bit20",
    "bit21", "bit22", "bit23", "bit24", "bit25", "bit26", "bit27", "bit28", "bit29", "bit30",
    "bit31", "bit32", "bit33", "bit34", "bit35", "bit36", "bit37", "bit38", "bit39", "bit40",
    "bit41", "bit42", "bit43", "bit44", "bit45", "bit46", "bit47", "bit48", "bit49", "bit50",
    "bit51", "bit52", "bit53", "bit54", "bit55", "bit56", "bit57", "bit58", "bit59", "bit60",
    "bit61", "bit62", "bit63",
];

/// Known names in bit order, then `"bitN"` for each unknown bit.
fn flag_names<'a>(
    known: impl Iterator<Item = &'static str> + 'a,
    unknown: u64,
) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = known.collect();
    names.extend(
        (0..64)
            .filter(|bit| unknown & (1u64 << bit) != 0)
            .map(|bit| UNKNOWN_BIT_NAMES[bit]),
    );
    names
}

impl Features {
    /// Kernel-style names without the `UFFD_FEATURE_` prefix, in bit order,
    /// e.g. `["SIGBUS", "THREAD_ID", "MOVE"]`; unknown bits appear as `"bitN"`.
    pub fn names(self) -> Vec<&'static str> {
        flag_names(
            self.iter_names().map(|(name, _)| name),
            self.bits() & !Self::all().bits(),
        )
    }
}

impl Ioctls {
    /// Kernel-style names without the `UFFDIO_` prefix, in bit order, e.g.
    /// `["WAKE", "COPY", "ZEROPAGE", "MOVE", "POISON"]`; unknown bits appear as `"bitN"`.
    pub fn names(self) -> Vec<&'static str> {
        flag_names(
            self.iter_names().map(|(name, _)| name),
            self.bits() & !Self::all().bits(),
        )
    }
}

/// How a userfaultfd descriptor is created.
///
/// [`Uffd::open`] tries them in the order of [`OpenPath::ALL`], least
/// privilege first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenPath {
    /// `userfaultfd(O_CLOEXEC | UFFD_USER_MODE_ONLY)`: always allowed (Linux
    /// 5.11+) unless seccomp/LSM forbids the syscall. Kernel-mode accesses to
    /// missing pages fail with `EFAULT` (see the module docs).
    UserModeOnly,
    /// `open("/dev/userfaultfd")` + `USERFAULTFD_IOC_NEW` (Linux 6.1+):
    /// governed by the device node's file permissions (stock: `0600 root`).
    /// Handles kernel-mode faults too.
    DevUserfaultfd,
    /// `userfaultfd(O_CLOEXEC)`: needs `CAP_SYS_PTRACE` or
    /// `vm.unprivileged_userfaultfd=1`. Handles kernel-mode faults too.
    Syscall,
}

impl OpenPath {
    /// Every path, in the order [`Uffd::open`] tries them.
    pub const ALL: [OpenPath; 3] = [
        OpenPath::UserModeOnly,
        OpenPath::DevUserfaultfd,
        OpenPath::Syscall,
    ];

    /// Stable name: `"user-mode-only"`, `"dev-userfaultfd"` or `"syscall"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpenPath::UserModeOnly => "user-mode-only",
            OpenPath::DevUserfaultfd => "dev-userfaultfd",
            OpenPath::Syscall => "syscall",
        }
    }
}

impl std::fmt::Display for OpenPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of trying one [`OpenPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAttempt {
    /// The path tried.
    pub path: OpenPath,
    /// The errno it failed with, `None` on success.
    pub errno: Option<i32>,
    /// Human-readable explanation, e.g.
    /// `"EACCES: /dev/userfaultfd is crw------- root:root"` or
    /// `"EPERM: vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE"`.
    pub reason: String,
    /// Whether this path produced a descriptor.
    pub ok: bool,
}

/// Builder for [`Uffd::open`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    features: Features,
    required: Features,
    paths: Vec<OpenPath>,
    nonblocking: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            features: Features::MOVE,
            required: Features::empty(),
            paths: OpenPath::ALL.to_vec(),
            nonblocking: true,
        }
    }
}

impl OpenOptions {
    /// Defaults: request [`Features::MOVE`] (not required), try every path in
    /// [`OpenPath::ALL`] order, non-blocking descriptor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Features to request. The kernel may lack some: the granted set is
    /// `requested ∩ supported` (minus `EVENT_FORK` without `CAP_SYS_PTRACE`).
    pub fn features(mut self, f: Features) -> Self {
        self.features = f;
        self
    }

    /// Features that must be granted; [`Uffd::open`] fails with
    /// [`UffdError::Unavailable`] otherwise. Implies requesting them.
    pub fn require_features(mut self, f: Features) -> Self {
        self.required = f;
        self
    }

    /// Try only this path.
    pub fn require_path(mut self, p: OpenPath) -> Self {
        self.paths = vec![p];
        self
    }

    /// Try these paths in this order (an extension of
    /// [`OpenOptions::require_path`]; duplicates are tried once).
    pub fn paths(mut self, order: &[OpenPath]) -> Self {
        self.paths.clear();
        for &p in order {
            if !self.paths.contains(&p) {
                self.paths.push(p);
            }
        }
        self
    }

    /// Open the descriptor `O_NONBLOCK` (default `true`). With `false`,
    /// [`Uffd::read_event`] blocks and `poll()` reports `EPOLLERR`, so
    /// [`Uffd::wait_event`] only works without a timeout.
    pub fn nonblocking(mut self, b: bool) -> Self {
        self.nonblocking = b;
        self
    }
}

/// Errors of the userfaultfd layer.
///
/// The named variants carry the errnos a caller has to act on; see
/// `docs/uffd.md` for the per-ioctl table. Which ioctl maps which errno to a
/// named variant is documented on each method; anything else is
/// [`UffdError::Os`] with the raw errno.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UffdError {
    /// `EEXIST`: a destination page is already present (a concurrent
    /// resolver won). Treat as resolved; [`Uffd::wake`] the range in case the
    /// winner used DONTWAKE.
    #[error("destination page already populated (EEXIST)")]
    Exists,
    /// `EBUSY` from MOVE: a source page is not exclusive to this process
    /// (COW-shared after fork, pinned, KSM, non-exclusive swap entry). The
    /// source is intact: fall back to [`Uffd::copy`].
    #[error("source page is not exclusive to this process (EBUSY)")]
    Busy,
    /// `EAGAIN`: partial progress (see [`OpError::done`]) or an unread
    /// non-cooperative event (`mmap_changing`): retry the rest.
    #[error("operation incomplete, retry the remainder (EAGAIN)")]
    Again,
    /// `ENOENT` from MOVE: a hole in the source range (or no VMA at src/dst).
    #[error("hole in the source range (ENOENT)")]
    NoSource,
    /// The descriptor cannot be opened or lacks a required feature.
    #[error("userfaultfd unavailable: {reason}")]
    Unavailable {
        /// Why, in one line.
        reason: String,
        /// Every open path tried, in order.
        attempts: Vec<OpenAttempt>,
    },
    /// The range was rejected before any syscall.
    #[error("invalid range {addr:#x}+{len:#x}: {reason}")]
    InvalidRange {
        /// The offending start address.
        addr: usize,
        /// The length passed.
        len: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Any other failure, with the raw errno.
    #[error("{op} failed: {}", errno_name(*.errno))]
    Os {
        /// The syscall or ioctl, e.g. `"UFFDIO_MOVE"`.
        op: &'static str,
        /// Raw `errno`.
        errno: i32,
    },
}

impl UffdError {
    /// The errno this error stands for, if it stands for one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            UffdError::Exists => Some(libc::EEXIST),
            UffdError::Busy => Some(libc::EBUSY),
            UffdError::Again => Some(libc::EAGAIN),
            UffdError::NoSource => Some(libc::ENOENT),
            UffdError::Os { errno, .. } => Some(*errno),
            UffdError::Unavailable { .. } | UffdError::InvalidRange { .. } => None,
        }
    }
}

/// Failure of a resolving ioctl that works page by page.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{error} (after {done} bytes)")]
pub struct OpError {
    /// Bytes completed (moved, copied, mapped) before the error; the range
    /// `[start, start + done)` is resolved and its waiters were woken unless
    /// DONTWAKE was given.
    pub done: usize,
    /// Why the operation stopped.
    #[source]
    pub error: UffdError,
}

impl OpError {
    /// An error before any progress.
    const fn at_start(error: UffdError) -> Self {
        OpError { done: 0, error }
    }
}

/// A message read from the descriptor.
#[derive(Debug)]
pub enum Event {
    /// A thread faulted on a registered range and waits for resolution.
    PageFault {
        /// Faulting address, page-aligned unless [`Features::EXACT_ADDRESS`].
        address: usize,
        /// The access was a write.
        write: bool,
        /// A write-protect fault (WP mode).
        wp: bool,
        /// A minor fault (MINOR mode).
        minor: bool,
        /// The faulting thread's id; `Some` only when [`Features::THREAD_ID`] is granted.
        thread_id: Option<u32>,
    },
    /// The process forked (needs [`Features::EVENT_FORK`]); `uffd` manages the child.
    Fork {
        /// A userfaultfd for the child's copy of the registered ranges.
        uffd: OwnedFd,
    },
    /// `mremap()` moved a registered range.
    Remap {
        /// Old start.
        from: usize,
        /// New start.
        to: usize,
        /// Length.
        len: usize,
    },
    /// `MADV_DONTNEED`/`MADV_REMOVE` zapped `[start, end)`.
    Remove {
        /// Start.
        start: usize,
        /// End (exclusive).
        end: usize,
    },
    /// `munmap()` of `[start, end)`.
    Unmap {
        /// Start.
        start: usize,
        /// End (exclusive).
        end: usize,
    },
}

/// An open, initialised userfaultfd descriptor.
///
/// `Send + Sync`: every method takes `&self`; the kernel serialises the
/// ioctls. Dropping it closes the descriptor, which unregisters all its
/// ranges and wakes every waiter (they then fault normally).
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
    path: OpenPath,
    attempts: Vec<OpenAttempt>,
    features: Features,
    ioctls: Ioctls,
    nonblocking: bool,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Uffd>();
};

/// Current thread's `errno` (no allocation).
#[inline]
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The symbolic name of an errno, for `Display` only.
fn errno_name(errno: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(errno))
}

/// Validate a page-aligned range (no syscall, no allocation).
#[inline]
const fn check_range(addr: usize, len: usize) -> Result<(), UffdError> {
    let reason = if addr % PAGE_SIZE != 0 {
        "address is not page aligned"
    } else if len == 0 {
        "length is zero"
    } else if len % PAGE_SIZE != 0 {
        "length is not a multiple of the page size"
    } else if addr.checked_add(len).is_none() {
        "range wraps around the address space"
    } else {
        return Ok(());
    };
    Err(UffdError::InvalidRange { addr, len, reason })
}

/// Bytes done, from an ioctl's result field (negative = negated errno = 0).
#[inline]
const fn progress(field: i64, len: usize) -> usize {
    if field <= 0 {
        0
    } else if field as u64 >= len as u64 {
        len
    } else {
        field as usize
    }
}

/// Errno mapping of the resolving ioctls. `ENOENT` and `EBUSY` only get
/// named variants for MOVE, where they mean "src hole" and "src not
/// exclusive"; elsewhere they mean something else (`ENOENT` from COPY: dst
/// not in a registered VMA; `EBUSY` from REGISTER: owned by another uffd).
#[inline]
const fn map_errno(op: &'static str, errno: i32, is_move: bool) -> UffdError {
    match errno {
        libc::EEXIST => UffdError::Exists,
        libc::EAGAIN => UffdError::Again,
        libc::EBUSY if is_move => UffdError::Busy,
        libc::ENOENT if is_move => UffdError::NoSource,
        _ => UffdError::Os { op, errno },
    }
}

impl Uffd {
    /// Open a userfaultfd and perform the `UFFDIO_API` handshake.
    ///
    /// Tries the paths of `opts` in order (default [`OpenPath::ALL`]: user
    /// mode only, `/dev/userfaultfd`, plain syscall), stopping at the first
    /// that yields a descriptor and recording every attempt. Then requests
    /// `opts.features ∪ opts.require_features` intersected with the kernel's
    /// supported set in one `UFFDIO_API` call.
    ///
    /// # Errors
    /// [`UffdError::Unavailable`] if the page size is not [`PAGE_SIZE`],
    /// every path failed, the handshake failed, or a required feature is not
    /// granted; `attempts` lists what was tried.
    pub fn open(opts: &OpenOptions) -> Result<Uffd, UffdError> {
        open::open(opts)
    }

    /// Opens a user-mode-only descriptor with exactly `features` without
    /// allocating, for a child just forked from a threaded process (the
    /// probe's live checks of the SIGBUS and POISON paths run there, since
    /// they install their own SIGBUS handler). Blocking; no attempts are
    /// recorded.
    ///
    /// # Errors
    /// The errno of the last open path tried, or of `UFFDIO_API` (`EINVAL`
    /// when a feature is not supported).
    pub fn open_after_fork(features: Features) -> Result<Uffd, i32> {
        open::open_after_fork(features)
    }

    /// The kernel's full feature set, probed with `UFFDIO_API(features = 0)`
    /// on a throw-away `USER_MODE_ONLY` descriptor (falling back to
    /// `/dev/userfaultfd` with `UFFD_USER_MODE_ONLY` if the syscall is
    /// filtered). Includes `EVENT_FORK` even when the caller may not enable it.
    ///
    /// # Errors
    /// [`UffdError::Unavailable`] if no throw-away descriptor can be created
    /// or the probe fails.
    pub fn supported_features() -> Result<Features, UffdError> {
        open::probe_supported().map(|(features, _ioctls)| features)
    }

    /// The path that produced this descriptor.
    pub fn open_path(&self) -> OpenPath {
        self.path
    }

    /// Every open attempt, in order; the last one succeeded.
    pub fn attempts(&self) -> &[OpenAttempt] {
        &self.attempts
    }

    /// Features granted by the handshake (`WP_ASYNC` implies `WP_UNPOPULATED`).
    pub fn features(&self) -> Features {
        self.features
    }

    /// Ioctls valid on the descriptor itself (`API | REGISTER | UNREGISTER`),
    /// as reported by the handshake. Range ioctls come from [`Uffd::register`].
    pub fn api_ioctls(&self) -> Ioctls {
        self.ioctls
    }

    /// Whether kernel-mode accesses to missing pages fail with `EFAULT`
    /// instead of being reported (see the module docs).
    pub fn user_mode_only(&self) -> bool {
        self.path == OpenPath::UserModeOnly
    }

    /// Whether the descriptor is `O_NONBLOCK`.
    pub fn is_nonblocking(&self) -> bool {
        self.nonblocking
    }

    /// The raw descriptor (still owned by `self`).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `ioctl(fd, req, arg)`, retried on `EINTR`; `Err(errno)` on failure.
    /// Async-signal-safe: no allocation, no locks.
    #[inline]
    fn ioctl<T>(&self, req: libc::Ioctl, arg: &mut T) -> Result<(), i32> {
        loop {
            // SAFETY: `self.fd` is an open userfaultfd for the lifetime of
            // `&self`; `arg` is an exclusive reference to the `#[repr(C)]`
            // struct whose size is encoded in `req` (asserted in `sys`), so
            // the kernel reads and writes only memory we own.
            let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), req, arg as *mut T) };
            if rc >= 0 {
                return Ok(());
            }
            let e = errno();
            if e != libc::EINTR {
                return Err(e);
            }
        }
    }

    /// Register `[start, start + len)` (page-aligned, anonymous, shmem or
    /// hugetlbfs, `VM_MAYWRITE`) for the given fault kinds. Returns the
    /// ioctls valid on the range; on this machine MISSING on anonymous memory
    /// gives `WAKE | COPY | ZEROPAGE | MOVE | POISON`.
    ///
    /// # Errors
    /// `InvalidRange` before the syscall; `Os { errno: EINVAL }` for a range
    /// not fully covered by compatible VMAs or an unsupported mode;
    /// `Os { errno: EBUSY }` if a VMA is registered with another uffd;
    /// `Os { errno: EPERM }` for a read-only (not `VM_MAYWRITE`) mapping.
    ///
    /// Safe: registering changes only how accesses to missing or
    /// write-protected pages are reported (they block, raise `SIGBUS` or
    /// fail with `EFAULT`), never what a mapped page contains.
    pub fn register(
        &self,
        start: usize,
        len: usize,
        mode: RegisterMode,
    ) -> Result<Ioctls, UffdError> {
        check_range(start, len)?;
        let mut arg = sys::uffdio_register {
            range: sys::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode: mode.bits(),
            ioctls: 0,
        };
        self.ioctl(sys::UFFDIO_REGISTER, &mut arg)
            .map_err(|errno| UffdError::Os {
                op: "UFFDIO_REGISTER",
                errno,
            })?;
        Ok(Ioctls::from_bits_retain(arg.ioctls))
    }

    /// Unregister `[start, start + len)`; wakes threads blocked on it (they
    /// retry and fault normally).
    ///
    /// # Errors
    /// `InvalidRange` before the syscall; otherwise `Os` (e.g. `EINVAL`).
    ///
    /// Safe: it changes no page; missing pages then fault like in any
    /// unregistered mapping (zero-fill on anonymous memory).
    pub fn unregister(&self, start: usize, len: usize) -> Result<(), UffdError> {
        check_range(start, len)?;
        let mut arg = sys::uffdio_range {
            start: start as u64,
            len: len as u64,
        };
        self.ioctl(sys::UFFDIO_UNREGISTER, &mut arg)
            .map_err(|errno| UffdError::Os {
                op: "UFFDIO_UNREGISTER",
                errno,
            })
    }

    /// `UFFDIO_MOVE`: move the pages at `[src, src + len)` to the registered,
    /// missing range `[dst, dst + len)` without copying (Linux 6.8,
    /// [`Features::MOVE`]). The source becomes missing (an unregistered src
    /// then reads zero, a registered one faults). Whole 2 MiB THPs move as a
    /// PMD when both addresses are 2 MiB aligned and the dst PMD is empty.
    ///
    /// Async-signal-safe (no allocation, locks or logging on any path).
    ///
    /// # Errors
    /// * `Exists` (`EEXIST`): a dst page is present.
    /// * `Busy` (`EBUSY`): a src page is not exclusive (fork, pin, KSM): COPY instead.
    /// * `NoSource` (`ENOENT`): a src hole (without `ALLOW_SRC_HOLES`), or no VMA.
    /// * `Again` (`EAGAIN`): stopped after `done` bytes, or an unread
    ///   non-cooperative event (`done == 0`). Retry from `+done`.
    /// * `InvalidRange`: rejected before the syscall.
    /// * `Os { errno: EINVAL }`: dst not registered with this uffd, shared
    ///   or non-anonymous VMAs, mismatched protections/mlock, range crosses a VMA.
    ///
    /// # Safety
    /// The pages are taken away from `src` (which becomes missing) and
    /// appear at `dst`, so the caller must own both `[src, src + len)` and
    /// `[dst, dst + len)`: no Rust reference (shared or mutable) may point
    /// into either range, except shared references to atomics (see the
    /// [module docs](crate::uffd#which-operations-are-unsafe)). Present dst
    /// pages are left alone, failing with `Exists`.
    pub unsafe fn move_pages(
        &self,
        dst: usize,
        src: usize,
        len: usize,
        mode: MoveMode,
    ) -> Result<(), OpError> {
        check_range(dst, len).map_err(OpError::at_start)?;
        check_range(src, len).map_err(OpError::at_start)?;
        let mut arg = sys::uffdio_move {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode: mode.bits(),
            move_: 0,
        };
        match self.ioctl(sys::UFFDIO_MOVE, &mut arg) {
            Ok(()) => Ok(()),
            Err(errno) => Err(OpError {
                done: progress(arg.move_, len),
                error: map_errno("UFFDIO_MOVE", errno, true),
            }),
        }
    }

    /// `UFFDIO_COPY`: allocate pages at the registered, missing range
    /// `[dst, dst + len)` and fill them from `[src, src + len)`, which may be
    /// any readable memory and need not be page aligned.
    ///
    /// Async-signal-safe (no allocation, locks or logging on any path).
    ///
    /// # Errors
    /// * `Exists` (`EEXIST`): a dst page is present (with `done` > 0 when
    ///   earlier pages were copied: then `error` is `Again`).
    /// * `Again` (`EAGAIN`): stopped after `done` bytes; retry from `+done`.
    /// * `InvalidRange`: rejected before the syscall.
    /// * `Os`: `ENOENT` (dst not in a VMA registered with this uffd),
    ///   `EFAULT` (src unreadable), `EINVAL`, `ENOMEM`, ...
    ///
    /// # Safety
    /// The missing pages of the registered range `[dst, dst + len)` are
    /// filled from `src`, so the caller must own the destination range: no
    /// Rust reference may point into its missing pages, except shared
    /// references to atomics (see the
    /// [module docs](crate::uffd#which-operations-are-unsafe)); present
    /// pages are left alone, failing with `Exists`. `[src, src + len)` is
    /// read like a `&[u8]`: it should be readable (an unreadable source
    /// fails with `EFAULT`, which is not undefined behaviour) and nobody may
    /// write it while the ioctl runs.
    pub unsafe fn copy(
        &self,
        dst: usize,
        src: usize,
        len: usize,
        mode: CopyMode,
    ) -> Result<(), OpError> {
        check_range(dst, len).map_err(OpError::at_start)?;
        if src.checked_add(len).is_none() {
            return Err(OpError::at_start(UffdError::InvalidRange {
                addr: src,
                len,
                reason: "source range wraps around the address space",
            }));
        }
        let mut arg = sys::uffdio_copy {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode: mode.bits(),
            copy: 0,
        };
        match self.ioctl(sys::UFFDIO_COPY, &mut arg) {
            Ok(()) => Ok(()),
            Err(errno) => Err(OpError {
                done: progress(arg.copy, len),
                error: map_errno("UFFDIO_COPY", errno, false),
            }),
        }
    }

    /// `UFFDIO_ZEROPAGE`: map the shared zero page read-only at the
    /// registered, missing range (a later write CoWs without a uffd event).
    ///
    /// Async-signal-safe (no allocation, locks or logging on any path).
    ///
    /// # Errors
    /// As [`Uffd::copy`]: `Exists`, `Again` with `done`, `InvalidRange`, `Os`.
    ///
    /// # Safety
    /// The missing pages of `[dst, dst + len)` start reading as zero, so the
    /// caller must own the range: no Rust reference may point into its
    /// missing pages, except shared references to atomics (see the
    /// [module docs](crate::uffd#which-operations-are-unsafe)); present
    /// pages are left alone, failing with `Exists`.
    pub unsafe fn zeropage(&self, dst: usize, len: usize, dontwake: bool) -> Result<(), OpError> {
        check_range(dst, len).map_err(OpError::at_start)?;
        let mut arg = sys::uffdio_zeropage {
            range: sys::uffdio_range {
                start: dst as u64,
                len: len as u64,
            },
            mode: if dontwake {
                sys::UFFDIO_ZEROPAGE_MODE_DONTWAKE
            } else {
                0
            },
            zeropage: 0,
        };
        match self.ioctl(sys::UFFDIO_ZEROPAGE, &mut arg) {
            Ok(()) => Ok(()),
            Err(errno) => Err(OpError {
                done: progress(arg.zeropage, len),
                error: map_errno("UFFDIO_ZEROPAGE", errno, false),
            }),
        }
    }

    /// `UFFDIO_WAKE`: wake threads waiting on `[start, start + len)` (after a
    /// DONTWAKE resolution, or after losing a race with `Exists`).
    ///
    /// Async-signal-safe (no allocation, locks or logging on any path).
    ///
    /// # Errors
    /// `InvalidRange` before the syscall; otherwise `Os`.
    ///
    /// Safe: a woken thread just retries its access, which faults again if
    /// the page is still missing.
    pub fn wake(&self, start: usize, len: usize) -> Result<(), UffdError> {
        check_range(start, len)?;
        let mut arg = sys::uffdio_range {
            start: start as u64,
            len: len as u64,
        };
        self.ioctl(sys::UFFDIO_WAKE, &mut arg)
            .map_err(|errno| UffdError::Os {
                op: "UFFDIO_WAKE",
                errno,
            })
    }

    /// `UFFDIO_WRITEPROTECT`: set (`protect`) or clear write protection on a
    /// range registered with [`RegisterMode::WP`]. The kernel rejects
    /// `protect && dontwake` with `EINVAL`.
    ///
    /// Async-signal-safe (no allocation, locks or logging on any path).
    ///
    /// # Errors
    /// `InvalidRange` before the syscall; `Again` while a non-cooperative
    /// event is unread; otherwise `Os` (`EINVAL`, `ENOENT`, ...).
    ///
    /// Safe: it only decides whether writes trap; page contents and the
    /// VMA's own protection are unchanged (unprotecting never makes a
    /// read-only or CoW page writable).
    pub fn writeprotect(
        &self,
        start: usize,
        len: usize,
        protect: bool,
        dontwake: bool,
    ) -> Result<(), UffdError> {
        check_range(start, len)?;
        let mut mode = 0;
        if protect {
            mode |= sys::UFFDIO_WRITEPROTECT_MODE_WP;
        }
        if dontwake {
            mode |= sys::UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
        }
        let mut arg = sys::uffdio_writeprotect {
            range: sys::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode,
        };
        self.ioctl(sys::UFFDIO_WRITEPROTECT, &mut arg)
            .map_err(|errno| map_errno("UFFDIO_WRITEPROTECT", errno, false))
    }

    /// `UFFDIO_POISON` ([`Features::POISON`], Linux 6.6): install poison
    /// markers in the registered, missing range; a later access raises
    /// `SIGBUS` (`BUS_MCEERR_AR`) as if the memory had a hardware error.
    ///
    /// Async-signal-safe (no allocation, locks or logging on any path).
    ///
    /// # Errors
    /// As [`Uffd::copy`]: `Exists` (already populated or poisoned), `Again`
    /// with `done`, `InvalidRange`, `Os`.
    ///
    /// # Safety
    /// Every later read of the poisoned pages raises `SIGBUS` (until they
    /// are zapped or unmapped), so the caller must own `[start, start + len)`:
    /// no Rust reference of any type, atomics included, may point into its
    /// missing pages, since the compiler may read through a reference at
    /// any time. Present pages are left alone, failing with `Exists`.
    pub unsafe fn poison(&self, start: usize, len: usize, dontwake: bool) -> Result<(), OpError> {
        check_range(start, len).map_err(OpError::at_start)?;
        let mut arg = sys::uffdio_poison {
            range: sys::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode: if dontwake {
                sys::UFFDIO_POISON_MODE_DONTWAKE
            } else {
                0
            },
            updated: 0,
        };
        match self.ioctl(sys::UFFDIO_POISON, &mut arg) {
            Ok(()) => Ok(()),
            Err(errno) => Err(OpError {
                done: progress(arg.updated, len),
                error: map_errno("UFFDIO_POISON", errno, false),
            }),
        }
    }

    /// `UFFDIO_CONTINUE`: map the page-cache pages of a range registered with
    /// [`RegisterMode::MINOR`] (shmem/hugetlbfs only).
    ///
    /// Async-signal-safe (no allocation, locks or logging on any path).
    ///
    /// # Errors
    /// As [`Uffd::copy`]: `Exists`, `Again` with `done`, `InvalidRange`,
    /// `Os` (`EINVAL` on anonymous memory or without MINOR registration,
    /// `EFAULT` when the page cache has no page).
    ///
    /// # Safety
    /// The missing pages of `[start, start + len)` start showing whatever
    /// the page cache holds (typically written through another mapping of
    /// the same file), so the caller must own the range: no Rust reference
    /// may point into its missing pages, except shared references to
    /// atomics (see the [module docs](crate::uffd#which-operations-are-unsafe));
    /// present pages are left alone, failing with `Exists`.
    pub unsafe fn continue_range(
        &self,
        start: usize,
        len: usize,
        dontwake: bool,
    ) -> Result<(), OpError> {
        check_range(start, len).map_err(OpError::at_start)?;
        let mut arg = sys::uffdio_continue {
            range: sys::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode: if dontwake {
                sys::UFFDIO_CONTINUE_MODE_DONTWAKE
            } else {
                0
            },
            mapped: 0,
        };
        match self.ioctl(sys::UFFDIO_CONTINUE, &mut arg) {
            Ok(()) => Ok(()),
            Err(errno) => Err(OpError {
                done: progress(arg.mapped, len),
                error: map_errno("UFFDIO_CONTINUE", errno, false),
            }),
        }
    }

    /// Read one queued message without waiting: `Ok(None)` when nothing is
    /// queued. (If opened with `nonblocking(false)` this blocks until a
    /// message arrives.) `SIGBUS`-mode descriptors never queue page faults.
    ///
    /// # Errors
    /// `Os` for a failed `read()`, a short message (`EIO`) or an unknown
    /// event code (`EPROTO`).
    ///
    /// Safe: the kernel writes only the message buffer on our stack (and,
    /// for a fork event, a new descriptor this call takes ownership of).
    pub fn read_event(&self) -> Result<Option<Event>, UffdError> {
        let mut msg = sys::uffd_msg::zeroed();
        loop {
            // SAFETY: `msg` is a writable `uffd_msg` (32 bytes, plain old
            // data, any bit pattern valid) and we pass exactly its size; the
            // kernel writes at most that many bytes.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut msg as *mut sys::uffd_msg).cast(),
                    core::mem::size_of::<sys::uffd_msg>(),
                )
            };
            if n < 0 {
                match errno() {
                    libc::EINTR => continue,
                    libc::EAGAIN => return Ok(None),
                    errno => {
                        return Err(UffdError::Os {
                            op: "read(userfaultfd)",
                            errno,
                        })
                    }
                }
            }
            if n as usize != core::mem::size_of::<sys::uffd_msg>() {
                return Err(UffdError::Os {
                    op: "read(userfaultfd): short message",
                    errno: libc::EIO,
                });
            }
            return self.decode(&msg).map(Some);
        }
    }

    /// Turn a raw message into an [`Event`].
    fn decode(&self, msg: &sys::uffd_msg) -> Result<Event, UffdError> {
        // SAFETY (for every union read below): the kernel filled the whole
        // 32-byte message; `event` tells which union member it wrote, and all
        // members are plain integers, valid for any bit pattern.
        match msg.event {
            sys::UFFD_EVENT_PAGEFAULT => {
                // SAFETY: see above; PAGEFAULT messages carry `arg.pagefault`.
                let pf = unsafe { msg.arg.pagefault };
                let thread_id = if self.features.contains(Features::THREAD_ID) {
                    // SAFETY: with THREAD_ID granted the kernel fills `feat.ptid`.
                    Some(unsafe { pf.feat.ptid })
                } else {
                    None
                };
                Ok(Event::PageFault {
                    address: pf.address as usize,
                    write: pf.flags & sys::UFFD_PAGEFAULT_FLAG_WRITE != 0,
                    wp: pf.flags & sys::UFFD_PAGEFAULT_FLAG_WP != 0,
                    minor: pf.flags & sys::UFFD_PAGEFAULT_FLAG_MINOR != 0,
                    thread_id,
                })
            }
            sys::UFFD_EVENT_FORK => {
                // SAFETY: see above; FORK messages carry `arg.fork`.
                let ufd = unsafe { msg.arg.fork.ufd } as RawFd;
                // SAFETY: the kernel installed `ufd` in our descriptor table
                // while delivering this message; nobody else knows it, so we
                // take sole ownership.
                let uffd = unsafe { OwnedFd::from_raw_fd(ufd) };
                Ok(Event::Fork { uffd })
            }
            sys::UFFD_EVENT_REMAP => {
                // SAFETY: see above; REMAP messages carry `arg.remap`.
                let r = unsafe { msg.arg.remap };
                Ok(Event::Remap {
                    from: r.from as usize,
                    to: r.to as usize,
                    len: r.len as usize,
                })
            }
            sys::UFFD_EVENT_REMOVE | sys::UFFD_EVENT_UNMAP => {
                // SAFETY: see above; REMOVE and UNMAP carry `arg.remove`.
                let r = unsafe { msg.arg.remove };
                let (start, end) = (r.start as usize, r.end as usize);
                Ok(if msg.event == sys::UFFD_EVENT_REMOVE {
                    Event::Remove { start, end }
                } else {
                    Event::Unmap { start, end }
                })
            }
            _ => Err(UffdError::Os {
                op: "read(userfaultfd): unknown event code",
                errno: libc::EPROTO,
            }),
        }
    }

    /// Wait up to `timeout` (forever with `None`) for a message: `poll()`
    /// then [`Uffd::read_event`]. `Ok(None)` on timeout.
    ///
    /// Needs a non-blocking descriptor when a timeout is given: `poll()` on a
    /// blocking userfaultfd reports `EPOLLERR`. Without a timeout a blocking
    /// descriptor just blocks in `read()`.
    ///
    /// # Errors
    /// `Os` from `poll()`/`read()`; `Os { errno: EINVAL }` for a timeout on a
    /// blocking descriptor.
    pub fn wait_event(&self, timeout: Option<Duration>) -> Result<Option<Event>, UffdError> {
        if !self.nonblocking {
            return match timeout {
                None => self.read_event(),
                Some(_) => Err(UffdError::Os {
                    op: "wait_event: poll() needs a non-blocking userfaultfd",
                    errno: libc::EINVAL,
                }),
            };
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let Some(ev) = self.read_event()? {
                return Ok(Some(ev));
            }
            let ms: libc::c_int = match (timeout, deadline) {
                (None, _) => -1,
                (Some(_), None) => -1, // too far in the future to represent
                (Some(_), Some(d)) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    let ms = (d - now).as_nanos().div_ceil(1_000_000);
                    ms.min(libc::c_int::MAX as u128) as libc::c_int
                }
            };
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is a valid, writable pollfd array of length 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                match errno() {
                    libc::EINTR => continue,
                    errno => {
                        return Err(UffdError::Os {
                            op: "poll(userfaultfd)",
                            errno,
                        })
                    }
                }
            }
            if pfd.revents & libc::POLLERR != 0 {
                return Err(UffdError::Os {
                    op: "poll(userfaultfd) reported POLLERR",
                    errno: libc::EINVAL,
                });
            }
            // rc == 0 is a timeout: the next iteration returns Ok(None) once
            // the deadline has passed (poll may wake slightly early).
        }
    }
}

impl AsRawFd for Uffd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Uffd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_are_kernel_style() {
        let f = Features::SIGBUS | Features::THREAD_ID | Features::MOVE;
        assert_eq!(f.names(), vec!["SIGBUS", "THREAD_ID", "MOVE"]);
        assert_eq!(Features::all().bits(), 0x1ffff);
        let unknown = Features::from_bits_retain(Features::MOVE.bits() | 1 << 20);
        assert_eq!(unknown.names(), vec!["MOVE", "bit20"]);
    }

    #[test]
    fn ioctl_names_and_bits() {
        let reg = Ioctls::from_bits_retain(0x13c);
        assert_eq!(
            reg.names(),
            vec!["WAKE", "COPY", "ZEROPAGE", "MOVE", "POISON"]
        );
        assert_eq!(Ioctls::API.bits(), 1 << 63);
    }

    #[test]
    fn range_validation() {
        assert!(check_range(0x1000, 0x1000).is_ok());
        for (addr, len) in [
            (0x1001, 0x1000),
            (0x1000, 0),
            (0x1000, 0x800),
            (usize::MAX & !0xfff, 0x2000),
        ] {
            assert!(matches!(
                check_range(addr, len),
                Err(UffdError::InvalidRange { .. })
            ));
        }
    }

    #[test]
    fn progress_field() {
        assert_eq!(progress(-(libc::EAGAIN as i64), 8192), 0);
        assert_eq!(progress(4096, 8192), 4096);
        assert_eq!(progress(1 << 40, 8192), 8192);
    }

    #[test]
    fn error_display() {
        let e = UffdError::Os {
            op: "UFFDIO_MOVE",
            errno: libc::EINVAL,
        };
        assert_eq!(e.to_string(), "UFFDIO_MOVE failed: EINVAL");
        let op = OpError {
            done: 8192,
            error: UffdError::Again,
        };
        assert_eq!(
            op.to_string(),
            "operation incomplete, retry the remainder (EAGAIN) (after 8192 bytes)"
        );
        assert_eq!(UffdError::Busy.errno(), Some(libc::EBUSY));
    }

    #[test]
    fn open_path_names() {
        let names: Vec<_> = OpenPath::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["user-mode-only", "dev-userfaultfd", "syscall"]);
    }
}
