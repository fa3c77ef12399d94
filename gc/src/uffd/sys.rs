//! Raw userfaultfd uAPI definitions that `libc` does not carry.
//!
//! Everything here mirrors `include/uapi/linux/userfaultfd.h` (Linux 6.8+, the
//! first release with `UFFDIO_MOVE`) for x86_64, and is defined exactly once
//! in the project: the `#[repr(C)]` argument structs of every ioctl, the
//! `uffd_msg` read from the descriptor, the ioctl request numbers (computed
//! with the same `_IOC` encoding as `<asm-generic/ioctl.h>`), mode bits,
//! feature bits, event codes and page-fault flags. The layouts are pinned by
//! compile-time assertions at the bottom of the file; the request numbers are
//! pinned against the values measured with a C compiler on the target machine
//! (see `docs/uffd.md`). The only thing `libc` provides is `SYS_userfaultfd`.
//!
//! Names keep the kernel's spelling (`uffdio_move`, `UFFDIO_MOVE_MODE_DONTWAKE`)
//! so that they can be grepped against the header; the safe layer in
//! [`super`] is the only user.
#![allow(non_camel_case_types)]

use core::mem::{offset_of, size_of};

/// The base page size this crate is built for (x86_64: 4 KiB).
///
/// `Uffd::open` refuses to run (with `UffdError::Unavailable`) if
/// `sysconf(_SC_PAGESIZE)` disagrees, so every alignment check in the safe
/// layer can use this constant instead of a runtime value.
pub const PAGE_SIZE: usize = 4096;

/// Size of a PMD-mapped transparent huge page on x86_64 (2 MiB).
pub const HPAGE_PMD_SIZE: usize = 2 << 20;

// ---------------------------------------------------------------------------
// ioctl encoding (<asm-generic/ioctl.h>, which x86_64 uses unchanged)
// ---------------------------------------------------------------------------

/// Bits of the ioctl number field.
pub const IOC_NRBITS: u32 = 8;
/// Bits of the ioctl type ("magic") field.
pub const IOC_TYPEBITS: u32 = 8;
/// Bits of the ioctl argument-size field.
pub const IOC_SIZEBITS: u32 = 14;
/// Shift of the number field.
pub const IOC_NRSHIFT: u32 = 0;
/// Shift of the type field.
pub const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
/// Shift of the size field.
pub const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
/// Shift of the direction field.
pub const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// Direction: no data transfer (`_IO`).
pub const IOC_NONE: u32 = 0;
/// Direction: user space writes, kernel reads (`_IOW`).
pub const IOC_WRITE: u32 = 1;
/// Direction: kernel writes, user space reads (`_IOR`).
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`: encode an ioctl request number.
///
/// Panics at compile time (all uses are in `const` items) if `size` does not
/// fit the 14-bit size field.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> libc::Ioctl {
    assert!(size < (1 << IOC_SIZEBITS), "ioctl argument too large");
    assert!(ty < (1 << IOC_TYPEBITS) && nr < (1 << IOC_NRBITS));
    ((dir << IOC_DIRSHIFT)
        | (ty << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)) as libc::Ioctl
}

/// `_IO(type, nr)`: a request without an argument struct.
pub const fn io(ty: u32, nr: u32) -> libc::Ioctl {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOR(type, nr, T)`: the kernel writes a `T` (by the uAPI's own
/// admission, UNREGISTER and WAKE use `_IOR` although the kernel only reads).
pub const fn ior<T>(ty: u32, nr: u32) -> libc::Ioctl {
    ioc(IOC_READ, ty, nr, size_of::<T>())
}

/// `_IOWR(type, nr, T)`: the kernel reads and writes a `T`.
pub const fn iowr<T>(ty: u32, nr: u32) -> libc::Ioctl {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size_of::<T>())
}

// ---------------------------------------------------------------------------
// Creation: userfaultfd(2) flags and /dev/userfaultfd
// ---------------------------------------------------------------------------

/// `UFFD_USER_MODE_ONLY`: the descriptor only handles faults raised by user
/// mode accesses; kernel-mode accesses (copy_to/from_user) get `EFAULT`.
/// Creating such a descriptor needs no privilege at all (Linux 5.11+).
pub const UFFD_USER_MODE_ONLY: libc::c_int = 1;

/// Path of the misc device added in Linux 6.1.
pub const DEV_USERFAULTFD: &str = "/dev/userfaultfd";

/// [`DEV_USERFAULTFD`] NUL-terminated, for `open(2)` without allocating.
pub const DEV_USERFAULTFD_C: &std::ffi::CStr = c"/dev/userfaultfd";

/// `USERFAULTFD_IOC`: ioctl type of `/dev/userfaultfd`.
pub const USERFAULTFD_IOC: u32 = 0xAA;

/// `USERFAULTFD_IOC_NEW = _IO(USERFAULTFD_IOC, 0x00)`: issued on an open
/// `/dev/userfaultfd`, returns a new userfaultfd; the ioctl argument is the
/// flags word (`O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY`).
pub const USERFAULTFD_IOC_NEW: libc::Ioctl = io(USERFAULTFD_IOC, 0x00);

// ---------------------------------------------------------------------------
// ioctl numbers on a userfaultfd
// ---------------------------------------------------------------------------

/// `UFFD_API`: the only API version; goes into `uffdio_api.api`.
pub const UFFD_API: u64 = 0xAA;

/// `UFFDIO`: ioctl type of a userfaultfd.
pub const UFFDIO: u32 = 0xAA;

/// `_UFFDIO_REGISTER`: number (and bit in the `ioctls` masks) of REGISTER.
pub const _UFFDIO_REGISTER: u32 = 0x00;
/// `_UFFDIO_UNREGISTER`.
pub const _UFFDIO_UNREGISTER: u32 = 0x01;
/// `_UFFDIO_WAKE`.
pub const _UFFDIO_WAKE: u32 = 0x02;
/// `_UFFDIO_COPY`.
pub const _UFFDIO_COPY: u32 = 0x03;
/// `_UFFDIO_ZEROPAGE`.
pub const _UFFDIO_ZEROPAGE: u32 = 0x04;
/// `_UFFDIO_MOVE` (Linux 6.8).
pub const _UFFDIO_MOVE: u32 = 0x05;
/// `_UFFDIO_WRITEPROTECT` (Linux 5.7).
pub const _UFFDIO_WRITEPROTECT: u32 = 0x06;
/// `_UFFDIO_CONTINUE` (Linux 5.13).
pub const _UFFDIO_CONTINUE: u32 = 0x07;
/// `_UFFDIO_POISON` (Linux 6.6).
pub const _UFFDIO_POISON: u32 = 0x08;
/// `_UFFDIO_API`.
pub const _UFFDIO_API: u32 = 0x3F;

/// `UFFDIO_API = _IOWR(UFFDIO, _UFFDIO_API, struct uffdio_api)`.
pub const UFFDIO_API: libc::Ioctl = iowr::<uffdio_api>(UFFDIO, _UFFDIO_API);
/// `UFFDIO_REGISTER = _IOWR(UFFDIO, _UFFDIO_REGISTER, struct uffdio_register)`.
pub const UFFDIO_REGISTER: libc::Ioctl = iowr::<uffdio_register>(UFFDIO, _UFFDIO_REGISTER);
/// `UFFDIO_UNREGISTER = _IOR(UFFDIO, _UFFDIO_UNREGISTER, struct uffdio_range)`.
pub const UFFDIO_UNREGISTER: libc::Ioctl = ior::<uffdio_range>(UFFDIO, _UFFDIO_UNREGISTER);
/// `UFFDIO_WAKE = _IOR(UFFDIO, _UFFDIO_WAKE, struct uffdio_range)`.
pub const UFFDIO_WAKE: libc::Ioctl = ior::<uffdio_range>(UFFDIO, _UFFDIO_WAKE);
/// `UFFDIO_COPY = _IOWR(UFFDIO, _UFFDIO_COPY, struct uffdio_copy)`.
pub const UFFDIO_COPY: libc::Ioctl = iowr::<uffdio_copy>(UFFDIO, _UFFDIO_COPY);
/// `UFFDIO_ZEROPAGE = _IOWR(UFFDIO, _UFFDIO_ZEROPAGE, struct uffdio_zeropage)`.
pub const UFFDIO_ZEROPAGE: libc::Ioctl = iowr::<uffdio_zeropage>(UFFDIO, _UFFDIO_ZEROPAGE);
/// `UFFDIO_MOVE = _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)`.
pub const UFFDIO_MOVE: libc::Ioctl = iowr::<uffdio_move>(UFFDIO, _UFFDIO_MOVE);
/// `UFFDIO_WRITEPROTECT = _IOWR(UFFDIO, _UFFDIO_WRITEPROTECT, struct uffdio_writeprotect)`.
pub const UFFDIO_WRITEPROTECT: libc::Ioctl =
    iowr::<uffdio_writeprotect>(UFFDIO, _UFFDIO_WRITEPROTECT);
/// `UFFDIO_CONTINUE = _IOWR(UFFDIO, _UFFDIO_CONTINUE, struct uffdio_continue)`.
pub const UFFDIO_CONTINUE: libc::Ioctl = iowr::<uffdio_continue>(UFFDIO, _UFFDIO_CONTINUE);
/// `UFFDIO_POISON = _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)`.
pub const UFFDIO_POISON: libc::Ioctl = iowr::<uffdio_poison>(UFFDIO, _UFFDIO_POISON);

// ---------------------------------------------------------------------------
// read() messages
// ---------------------------------------------------------------------------

/// `UFFD_EVENT_PAGEFAULT`: a registered range faulted.
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
/// `UFFD_EVENT_FORK`: the process forked; `arg.fork.ufd` is the child's uffd.
pub const UFFD_EVENT_FORK: u8 = 0x13;
/// `UFFD_EVENT_REMAP`: `mremap()` moved a registered range.
pub const UFFD_EVENT_REMAP: u8 = 0x14;
/// `UFFD_EVENT_REMOVE`: `MADV_REMOVE`/`MADV_DONTNEED` zapped a range.
pub const UFFD_EVENT_REMOVE: u8 = 0x15;
/// `UFFD_EVENT_UNMAP`: `munmap()` of a registered range.
pub const UFFD_EVENT_UNMAP: u8 = 0x16;

/// `UFFD_PAGEFAULT_FLAG_WRITE`: the fault was a write.
pub const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;
/// `UFFD_PAGEFAULT_FLAG_WP`: the fault hit a write-protected page (WP mode).
pub const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;
/// `UFFD_PAGEFAULT_FLAG_MINOR`: a minor fault (MINOR mode, page cache present).
pub const UFFD_PAGEFAULT_FLAG_MINOR: u64 = 1 << 2;

// ---------------------------------------------------------------------------
// Feature bits (uffdio_api.features), all of them through Linux 6.8
// ---------------------------------------------------------------------------

/// `UFFD_FEATURE_PAGEFAULT_FLAG_WP`.
pub const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
/// `UFFD_FEATURE_EVENT_FORK` (enabling it needs `CAP_SYS_PTRACE`).
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
/// `UFFD_FEATURE_EVENT_REMAP`.
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
/// `UFFD_FEATURE_EVENT_REMOVE`.
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
/// `UFFD_FEATURE_MISSING_HUGETLBFS`.
pub const UFFD_FEATURE_MISSING_HUGETLBFS: u64 = 1 << 4;
/// `UFFD_FEATURE_MISSING_SHMEM`.
pub const UFFD_FEATURE_MISSING_SHMEM: u64 = 1 << 5;
/// `UFFD_FEATURE_EVENT_UNMAP`.
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;
/// `UFFD_FEATURE_SIGBUS`: deliver SIGBUS instead of queueing a fault event.
pub const UFFD_FEATURE_SIGBUS: u64 = 1 << 7;
/// `UFFD_FEATURE_THREAD_ID`: fill `pagefault.feat.ptid`.
pub const UFFD_FEATURE_THREAD_ID: u64 = 1 << 8;
/// `UFFD_FEATURE_MINOR_HUGETLBFS`.
pub const UFFD_FEATURE_MINOR_HUGETLBFS: u64 = 1 << 9;
/// `UFFD_FEATURE_MINOR_SHMEM`.
pub const UFFD_FEATURE_MINOR_SHMEM: u64 = 1 << 10;
/// `UFFD_FEATURE_EXACT_ADDRESS`: do not page-align `pagefault.address`.
pub const UFFD_FEATURE_EXACT_ADDRESS: u64 = 1 << 11;
/// `UFFD_FEATURE_WP_HUGETLBFS_SHMEM`.
pub const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
/// `UFFD_FEATURE_WP_UNPOPULATED`.
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// `UFFD_FEATURE_POISON` (the `UFFDIO_POISON` ioctl).
pub const UFFD_FEATURE_POISON: u64 = 1 << 14;
/// `UFFD_FEATURE_WP_ASYNC` (implies `WP_UNPOPULATED`).
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// `UFFD_FEATURE_MOVE` (the `UFFDIO_MOVE` ioctl, Linux 6.8).
pub const UFFD_FEATURE_MOVE: u64 = 1 << 16;

// ---------------------------------------------------------------------------
// Mode bits
// ---------------------------------------------------------------------------

/// `UFFDIO_REGISTER_MODE_MISSING`: report faults on missing pages.
pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
/// `UFFDIO_REGISTER_MODE_WP`: report writes to write-protected pages.
pub const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
/// `UFFDIO_REGISTER_MODE_MINOR`: report minor faults (shmem/hugetlbfs).
pub const UFFDIO_REGISTER_MODE_MINOR: u64 = 1 << 2;

/// `UFFDIO_COPY_MODE_DONTWAKE`.
pub const UFFDIO_COPY_MODE_DONTWAKE: u64 = 1 << 0;
/// `UFFDIO_COPY_MODE_WP`: install the copied page write-protected.
pub const UFFDIO_COPY_MODE_WP: u64 = 1 << 1;

/// `UFFDIO_ZEROPAGE_MODE_DONTWAKE`.
pub const UFFDIO_ZEROPAGE_MODE_DONTWAKE: u64 = 1 << 0;

/// `UFFDIO_MOVE_MODE_DONTWAKE`.
pub const UFFDIO_MOVE_MODE_DONTWAKE: u64 = 1 << 0;
/// `UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES`: holes in src count as moved.
pub const UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES: u64 = 1 << 1;

/// `UFFDIO_WRITEPROTECT_MODE_WP`: set (1) or clear (0) write protection.
pub const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
/// `UFFDIO_WRITEPROTECT_MODE_DONTWAKE` (only valid when clearing).
pub const UFFDIO_WRITEPROTECT_MODE_DONTWAKE: u64 = 1 << 1;

/// `UFFDIO_CONTINUE_MODE_DONTWAKE`.
pub const UFFDIO_CONTINUE_MODE_DONTWAKE: u64 = 1 << 0;
/// `UFFDIO_CONTINUE_MODE_WP`.
pub const UFFDIO_CONTINUE_MODE_WP: u64 = 1 << 1;

/// `UFFDIO_POISON_MODE_DONTWAKE`.
pub const UFFDIO_POISON_MODE_DONTWAKE: u64 = 1 << 0;

// ---------------------------------------------------------------------------
// Structs
// ---------------------------------------------------------------------------

/// `struct uffdio_api`: argument of the one-per-descriptor handshake.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct uffdio_api {
    /// In: must be [`UFFD_API`].
    pub api: u64,
    /// In: requested features. Out: every feature the kernel supports.
    pub features: u64,
    /// Out: ioctls valid on the descriptor (bit = `1 << _UFFDIO_nr`).
    pub ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct uffdio_range {
    /// Page-aligned start address.
    pub start: u64,
    /// Length in bytes, a non-zero multiple of the page size.
    pub len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct uffdio_register {
    /// Range to register.
    pub range: uffdio_range,
    /// `UFFDIO_REGISTER_MODE_*`.
    pub mode: u64,
    /// Out: ioctls valid on the range.
    pub ioctls: u64,
}

/// `struct uffdio_copy`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct uffdio_copy {
    /// Destination (registered, page-aligned).
    pub dst: u64,
    /// Source (any readable user memory).
    pub src: u64,
    /// Bytes to copy.
    pub len: u64,
    /// `UFFDIO_COPY_MODE_*`.
    pub mode: u64,
    /// Out: bytes copied, or a negated errno.
    pub copy: i64,
}

/// `struct uffdio_zeropage`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct uffdio_zeropage {
    /// Range to map the zero page into.
    pub range: uffdio_range,
    /// `UFFDIO_ZEROPAGE_MODE_*`.
    pub mode: u64,
    /// Out: bytes mapped, or a negated errno.
    pub zeropage: i64,
}

/// `struct uffdio_move` (Linux 6.8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct uffdio_move {
    /// Destination of move.
    pub dst: u64,
    /// Source of move.
    pub src: u64,
    /// Number of bytes to move.
    pub len: u64,
    /// `UFFDIO_MOVE_MODE_*`.
    pub mode: u64,
    /// Out: number of bytes moved, or negated error (`move` in C).
    pub move_: i64,
}

/// `struct uffdio_writeprotect`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct uffdio_writeprotect {
    /// Range to (un)protect.
    pub range: uffdio_range,
    /// `UFFDIO_WRITEPROTECT_MODE_*`.
    pub mode: u64,
}

/// `struct uffdio_continue`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct uffdio_continue {
    /// Range to map from the page cache.
    pub range: uffdio_range,
    /// `UFFDIO_CONTINUE_MODE_*`.
    pub mode: u64,
    /// Out: bytes mapped, or a negated errno.
    pub mapped: i64,
}

/// `struct uffdio_poison` (Linux 6.6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct uffdio_poison {
    /// Range to mark poisoned.
    pub range: uffdio_range,
    /// `UFFDIO_POISON_MODE_*`.
    pub mode: u64,
    /// Out: bytes poisoned, or a negated errno.
    pub updated: i64,
}

/// `uffd_msg.arg.pagefault.feat`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union uffd_pagefault_feat {
    /// Faulting thread id (with `UFFD_FEATURE_THREAD_ID`).
    pub ptid: u32,
}

/// `uffd_msg.arg.pagefault`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct uffd_msg_pagefault {
    /// `UFFD_PAGEFAULT_FLAG_*`.
    pub flags: u64,
    /// Faulting address (page-aligned unless `EXACT_ADDRESS`).
    pub address: u64,
    /// Feature-dependent extra data.
    pub feat: uffd_pagefault_feat,
}

/// `uffd_msg.arg.fork`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct uffd_msg_fork {
    /// A new userfaultfd (installed in our fd table) for the child.
    pub ufd: u32,
}

/// `uffd_msg.arg.remap`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct uffd_msg_remap {
    /// Old start.
    pub from: u64,
    /// New start.
    pub to: u64,
    /// Length.
    pub len: u64,
}

/// `uffd_msg.arg.remove` (also used by `UNMAP`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct uffd_msg_remove {
    /// Start of the removed range.
    pub start: u64,
    /// End (exclusive).
    pub end: u64,
}

/// `uffd_msg.arg.reserved`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct uffd_msg_reserved {
    /// Reserved.
    pub reserved1: u64,
    /// Reserved.
    pub reserved2: u64,
    /// Reserved.
    pub reserved3: u64,
}

/// `uffd_msg.arg`: the per-event payload.
#[repr(C)]
#[derive(Clone, Copy)]
pub union uffd_msg_arg {
    /// `UFFD_EVENT_PAGEFAULT`.
    pub pagefault: uffd_msg_pagefault,
    /// `UFFD_EVENT_FORK`.
    pub fork: uffd_msg_fork,
    /// `UFFD_EVENT_REMAP`.
    pub remap: uffd_msg_remap,
    /// `UFFD_EVENT_REMOVE` and `UFFD_EVENT_UNMAP`.
    pub remove: uffd_msg_remove,
    /// Padding view.
    pub reserved: uffd_msg_reserved,
}

/// `struct uffd_msg`: one 32-byte record returned by `read()`.
///
/// The C struct is `__packed`, but every member already sits at its natural
/// alignment (the union starts at offset 8), so `repr(C)` yields the same
/// layout; the assertions below check it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct uffd_msg {
    /// `UFFD_EVENT_*`.
    pub event: u8,
    /// Reserved.
    pub reserved1: u8,
    /// Reserved.
    pub reserved2: u16,
    /// Reserved.
    pub reserved3: u32,
    /// Event payload.
    pub arg: uffd_msg_arg,
}

impl uffd_msg {
    /// An all-zero message, used as a `read()` buffer.
    pub const fn zeroed() -> Self {
        uffd_msg {
            event: 0,
            reserved1: 0,
            reserved2: 0,
            reserved3: 0,
            arg: uffd_msg_arg {
                reserved: uffd_msg_reserved {
                    reserved1: 0,
                    reserved2: 0,
                    reserved3: 0,
                },
            },
        }
    }
}

// ---------------------------------------------------------------------------
// PAGEMAP_SCAN (linux/fs.h, Linux 6.7): the written-page report of ranges
// write-protected with UFFD_FEATURE_WP_ASYNC. Absent from this machine's
// headers; values from the 6.18 uAPI text (`man 2const PAGEMAP_SCAN`).
// ---------------------------------------------------------------------------

/// `PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg)`, on `/proc/<pid>/pagemap`.
pub const PAGEMAP_SCAN: libc::Ioctl = iowr::<pm_scan_arg>(b'f' as u32, 16);
/// `PM_SCAN_WP_MATCHING`: write-protect the pages reported.
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// `PM_SCAN_CHECK_WPASYNC`: fail if a page of the range is not
/// async-write-protect enabled.
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
/// `PAGE_IS_WPALLOWED`.
pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
/// `PAGE_IS_WRITTEN`: written since last write-protected.
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct pm_scan_arg {
    /// `sizeof(struct pm_scan_arg)`.
    pub size: u64,
    /// `PM_SCAN_*`.
    pub flags: u64,
    /// First address of the range.
    pub start: u64,
    /// One past its last address.
    pub end: u64,
    /// Out: where the walk stopped.
    pub walk_end: u64,
    /// Address of a `struct page_region` array.
    pub vec: u64,
    /// Its length.
    pub vec_len: u64,
    /// Stop after this many pages (0: no limit).
    pub max_pages: u64,
    /// Categories to invert before matching.
    pub category_inverted: u64,
    /// Categories that must all be set.
    pub category_mask: u64,
    /// Categories of which one must be set.
    pub category_anyof_mask: u64,
    /// Categories reported per region.
    pub return_mask: u64,
}

/// `struct page_region`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct page_region {
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// Its categories (`& return_mask`).
    pub categories: u64,
}

// ---------------------------------------------------------------------------
// Compile-time layout and request-number checks
// ---------------------------------------------------------------------------

const _: () = {
    assert!(size_of::<uffdio_api>() == 24);
    assert!(size_of::<uffdio_range>() == 16);
    assert!(size_of::<uffdio_register>() == 32);
    assert!(size_of::<uffdio_copy>() == 40);
    assert!(size_of::<uffdio_zeropage>() == 32);
    assert!(size_of::<uffdio_move>() == 40);
    assert!(size_of::<uffdio_writeprotect>() == 24);
    assert!(size_of::<uffdio_continue>() == 32);
    assert!(size_of::<uffdio_poison>() == 32);
    assert!(size_of::<uffd_msg>() == 32);
    assert!(offset_of!(uffd_msg, arg) == 8);
    assert!(offset_of!(uffd_msg_pagefault, feat) == 16);
    assert!(offset_of!(uffdio_move, move_) == 32);
    assert!(offset_of!(uffdio_copy, copy) == 32);
    assert!(offset_of!(uffdio_register, ioctls) == 24);

    // Values measured with a C compiler against the 6.18 headers
    // (shared/reference/uffd-api.md §1.3) and the uAPI header text.
    assert!(UFFDIO_API == 0xc018_aa3f);
    assert!(UFFDIO_REGISTER == 0xc020_aa00);
    assert!(UFFDIO_UNREGISTER == 0x8010_aa01);
    assert!(UFFDIO_WAKE == 0x8010_aa02);
    assert!(UFFDIO_COPY == 0xc028_aa03);
    assert!(UFFDIO_ZEROPAGE == 0xc020_aa04);
    assert!(UFFDIO_MOVE == 0xc028_aa05);
    assert!(UFFDIO_WRITEPROTECT == 0xc018_aa06);
    assert!(UFFDIO_CONTINUE == 0xc020_aa07);
    assert!(UFFDIO_POISON == 0xc020_aa08);
    assert!(USERFAULTFD_IOC_NEW == 0xaa00);
    assert!(size_of::<pm_scan_arg>() == 96);
    assert!(size_of::<page_region>() == 24);
    assert!(PAGEMAP_SCAN == 0xc060_6610);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_encoding_matches_kernel_macros() {
        // _IOWR(0xAA, nr, size) = 3<<30 | size<<16 | 0xAA<<8 | nr
        assert_eq!(
            UFFDIO_MOVE,
            (3u32 << 30 | 40 << 16 | 0xAA << 8 | 5) as libc::Ioctl
        );
        assert_eq!(
            UFFDIO_WAKE,
            (2u32 << 30 | 16 << 16 | 0xAA << 8 | 2) as libc::Ioctl
        );
    }

    #[test]
    fn the_device_path_constants_agree() {
        assert_eq!(DEV_USERFAULTFD_C.to_str(), Ok(DEV_USERFAULTFD));
    }

    #[test]
    fn zeroed_msg_is_zero() {
        let m = uffd_msg::zeroed();
        // SAFETY: `uffd_msg` is plain old data of exactly 32 bytes (asserted
        // above); viewing it as bytes reads only initialised memory because
        // `zeroed()` initialises the largest union member, which covers the
        // whole union.
        let bytes: [u8; 32] = unsafe { core::mem::transmute(m) };
        assert_eq!(bytes, [0u8; 32]);
    }
}
