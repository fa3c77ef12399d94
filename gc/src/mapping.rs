//! Owned anonymous memory mappings: the moving space, the from-space, the
//! large-object space and the collector's side metadata each live in one.
//!
//! This is one of the few modules with `unsafe`: it owns `mmap`, `munmap`,
//! `mremap` and `madvise`, and hands out typed views (`&[AtomicU64]`,
//! `&mut [u64]`, `&mut [u8]`) of memory it keeps mapped for its whole life.
//! Everything above it works with addresses and safe slices.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Size of a base page. movegc assumes 4 KiB pages (checked at heap creation).
pub const PAGE_SIZE: usize = 4096;
/// Size of a PMD-mapped huge page: the alignment that lets `mremap` and
/// `UFFDIO_MOVE` move whole page tables.
pub const HUGE_PAGE_SIZE: usize = 2 << 20;
/// Span of one page-middle directory (1 GiB): when both sides of an `mremap`
/// are aligned to it, the kernel moves each whole GiB by relinking one table
/// (one TLB flush) instead of 512 PMD entries with a flush each, which on a
/// two-CPU machine is an IPI each as soon as another thread of the process
/// ran on the other CPU (1.2-1.5 ms per GiB here, 0.03 ms aligned).
pub const PUD_SIZE: usize = 1 << 30;

/// Counters of the kernel calls made on mappings, so benchmarks can show that
/// a strategy made none (e.g. zero `madvise` calls in MOVE mode).
#[derive(Debug, Default)]
pub struct SyscallCounters {
    /// `madvise(MADV_DONTNEED)` calls.
    pub madvise: AtomicUsize,
    /// `mremap` calls.
    pub mremap: AtomicUsize,
    /// `mmap`/`munmap` calls after start-up (large objects, releases).
    pub mmap: AtomicUsize,
}

/// Access rights of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prot {
    /// No access: a reservation.
    None,
    /// Read and write.
    ReadWrite,
}

impl Prot {
    fn bits(self) -> libc::c_int {
        match self {
            Prot::None => libc::PROT_NONE,
            Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        }
    }
}

/// A private anonymous mapping owned by this value and unmapped on drop.
///
/// The mapping is created with `MAP_NORESERVE`: memory is committed only when
/// a page is first touched.
#[derive(Debug)]
pub struct Mapping {
    start: usize,
    len: usize,
}

// SAFETY: a Mapping is just an owned address range; the memory behind it is
// accessed through atomics or under the collector's stop-the-world protocol.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`; shared references only expose addresses and atomic views.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes (rounded up to a page) aligned to `align` (a power of
    /// two, at least a page) with the given protection.
    pub fn new(len: usize, align: usize, prot: Prot) -> io::Result<Mapping> {
        assert!(align.is_power_of_two() && align >= PAGE_SIZE);
        let len = round_up(len.max(PAGE_SIZE), PAGE_SIZE);
        let padded = len
            .checked_add(align - PAGE_SIZE)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: anonymous mapping at a kernel-chosen address; no existing
        // memory is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                padded,
                prot.bits(),
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let raw = raw as usize;
        let start = round_up(raw, align);
        let head = start - raw;
        let tail = padded - head - len;
        // SAFETY: the head and tail are parts of the mapping just created that
        // nothing refers to.
        unsafe {
            if head > 0 {
                libc::munmap(raw as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
        }
        Ok(Mapping { start, len })
    }

    /// First address of the mapping.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: mappings have at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// One past the last address.
    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// Whether `addr` lies inside the mapping.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.start && addr < self.end()
    }

    fn check(&self, off: usize, len: usize) {
        assert!(
            off % PAGE_SIZE == 0 && len % PAGE_SIZE == 0 && off + len <= self.len,
            "range {off:#x}+{len:#x} outside mapping of {:#x} bytes or misaligned",
            self.len
        );
    }

    /// `madvise(advice)` over `[start+off, start+off+len)`.
    pub fn madvise(&self, off: usize, len: usize, advice: libc::c_int) -> io::Result<()> {
        self.check(off, len);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside this mapping (checked); advice values
        // used by movegc (DONTNEED, HUGEPAGE, NOHUGEPAGE, DONTFORK) never make
        // the range invalid, DONTNEED only drops contents (reads give zeros).
        let r = unsafe { libc::madvise((self.start + off) as *mut libc::c_void, len, advice) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Drops the pages of `[off, off+len)` so they read as zero again and
    /// their memory returns to the system. Counts one `madvise` call.
    pub fn release(&self, off: usize, len: usize, counters: &SyscallCounters) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        counters.madvise.fetch_add(1, Ordering::Relaxed);
        self.madvise(off, len, libc::MADV_DONTNEED)
    }

    /// Replaces `[off, off+len)` with a fresh reservation of the given
    /// protection, dropping whatever was mapped there (pages and VMAs).
    pub fn remap_fresh(&self, off: usize, len: usize, prot: Prot) -> io::Result<()> {
        self.check(off, len);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: MAP_FIXED over a range that this Mapping owns (checked), so
        // no other Rust object's memory is replaced.
        let r = unsafe {
            libc::mmap(
                (self.start + off) as *mut libc::c_void,
                len,
                prot.bits(),
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Moves the pages of `self[off..off+len]` to `dst[off..off+len]` with
    /// `mremap(MREMAP_FIXED | MREMAP_DONTUNMAP)`: afterwards `dst` holds the
    /// pages (and the VMA flags of `self`), and `self`'s range is still mapped
    /// but empty, so the next access faults (zero-fill, or a userfault if the
    /// range is registered).
    pub fn move_pages_to(&self, dst: &Mapping, off: usize, len: usize) -> io::Result<()> {
        self.check(off, len);
        dst.check(off, len);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: both ranges are owned by Mapping values (checked); the
        // destination range is replaced, which is what dst's owner asked for.
        let r = unsafe {
            libc::mremap(
                (self.start + off) as *mut libc::c_void,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP,
                (dst.start + off) as *mut libc::c_void,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Moves this mapping's pages `[off, off + len)` back over
    /// `dst[off..off + len]` with a plain `mremap(MREMAP_FIXED)` (this range
    /// becomes unmapped; if `dst`'s range is its whole mapping, it stays one
    /// VMA, else the moved part is a VMA of its own). Undoes
    /// [`move_pages_to`](Self::move_pages_to) when a flip is abandoned.
    pub fn move_pages_back(&self, dst: &Mapping, off: usize, len: usize) -> io::Result<()> {
        self.check(off, len);
        dst.check(off, len);
        // SAFETY: both ranges are owned by Mapping values (checked); `dst`'s
        // range is replaced by this one's pages, which its owner asked for;
        // this range is remapped fresh right after so it stays owned.
        let r = unsafe {
            libc::mremap(
                (self.start + off) as *mut libc::c_void,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                (dst.start + off) as *mut libc::c_void,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.remap_fresh(off, len, Prot::None)
    }

    /// A byte slice over `[off, off+len)`.
    ///
    /// Takes `&mut self`-free access on purpose: callers (page compaction)
    /// write disjoint pages from several threads, each through its own slice.
    /// The caller must make sure no two live slices overlap and no other
    /// thread reads the range meanwhile; this is the collector's
    /// stop-the-world/page-ownership protocol, hence `unsafe`.
    ///
    /// # Safety
    /// No other reference to `[off, off+len)` may be alive while the returned
    /// slice is, and the range must lie inside the mapping.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes_mut(&self, off: usize, len: usize) -> &mut [u8] {
        debug_assert!(off + len <= self.len);
        // SAFETY: the range is inside the mapping (caller contract, debug
        // checked) and exclusively owned by the caller for the slice's life.
        unsafe { std::slice::from_raw_parts_mut((self.start + off) as *mut u8, len) }
    }

    /// A shared byte slice over `[off, off+len)`.
    ///
    /// # Safety
    /// Nobody may write the range while the slice is alive.
    pub unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        debug_assert!(off + len <= self.len);
        // SAFETY: inside the mapping; no concurrent writer (caller contract).
        unsafe { std::slice::from_raw_parts((self.start + off) as *const u8, len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own [start, start+len); nothing borrows it once the
        // owner is dropped (views borrow `self`).
        unsafe {
            libc::munmap(self.start as *mut libc::c_void, self.len);
        }
    }
}

/// A zero-initialised array of 64-bit words in its own mapping: the
/// collector's bitmaps and tables.
///
/// Shared access goes through atomics (marking threads set bits
/// concurrently); exclusive access (`&mut self`) gives plain slices for the
/// single-threaded or partitioned phases that follow.
#[derive(Debug)]
pub struct WordMap {
    map: Mapping,
    words: usize,
}

impl WordMap {
    /// A map of `words` zeroed words (see [`metadata_mapping`]).
    pub fn new(words: usize) -> io::Result<WordMap> {
        let map = metadata_mapping(words.max(1) * 8)?;
        Ok(WordMap { map, words })
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words
    }

    /// Whether the map has no words.
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// Atomic view for concurrent updates.
    pub fn atomics(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is zero-initialised, page aligned and
        // `words * 8` bytes long; AtomicU64 has the size and alignment of u64
        // and every bit pattern is valid.
        unsafe { std::slice::from_raw_parts(self.map.start() as *const AtomicU64, self.words) }
    }

    /// Plain view; `&self` guarantees no `&mut` view exists, and atomic
    /// writers are impossible while callers hold `&self` only if they do not
    /// also use `atomics()`: so this takes `&mut self`.
    pub fn words(&mut self) -> &[u64] {
        // SAFETY: as in `atomics`; `&mut self` excludes concurrent atomic writers.
        unsafe { std::slice::from_raw_parts(self.map.start() as *const u64, self.words) }
    }

    /// Mutable plain view.
    pub fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `atomics`; `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.map.start() as *mut u64, self.words) }
    }

    /// Zeroes the first `words` words by writing zeros. Not `madvise`:
    /// dropping the pages would make the next cycle's marking fault them
    /// back in one by one (a page allocation costs 2-9 µs on a VM, far
    /// more than zeroing it) and would split the huge pages.
    pub fn clear_prefix(&mut self, words: usize) {
        let words = words.min(self.words);
        self.words_mut()[..words].fill(0);
    }
}

/// The mapping behind a side table of `bytes` bytes: 2 MiB aligned and
/// advised `MADV_HUGEPAGE` when at least 2 MiB, so that the random lookups
/// of forwarding (one bitmap word and one offset per reference) miss the
/// TLB far less. Best effort: without THP the advice fails and 4 KiB pages
/// are used. Only reserved: pages are committed when first written.
pub fn metadata_mapping(bytes: usize) -> io::Result<Mapping> {
    if bytes < HUGE_PAGE_SIZE {
        return Mapping::new(bytes, PAGE_SIZE, Prot::ReadWrite);
    }
    let map = Mapping::new(
        round_up(bytes, HUGE_PAGE_SIZE),
        HUGE_PAGE_SIZE,
        Prot::ReadWrite,
    )?;
    let _ = map.madvise(0, map.len(), libc::MADV_HUGEPAGE);
    Ok(map)
}

/// A zero-initialised array of `u32` in its own [`metadata_mapping`]:
/// the chunk-offset table. Dereferences to a slice.
#[derive(Debug)]
pub struct U32Map {
    map: Mapping,
    len: usize,
}

impl U32Map {
    /// `len` zeroed entries.
    pub fn new(len: usize) -> io::Result<U32Map> {
        let map = metadata_mapping(len.max(1) * 4)?;
        Ok(U32Map { map, len })
    }
}

impl std::ops::Deref for U32Map {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        // SAFETY: the mapping is readable, zero-initialised, page aligned
        // and at least `len * 4` bytes long; `&self` excludes `&mut` views.
        unsafe { std::slice::from_raw_parts(self.map.start() as *const u32, self.len) }
    }
}

impl std::ops::DerefMut for U32Map {
    fn deref_mut(&mut self) -> &mut [u32] {
        // SAFETY: as in `deref`; `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.map.start() as *mut u32, self.len) }
    }
}

/// A zero-initialised array of bytes written concurrently (the card
/// table: mutators store to it, the collector reads and clears it), in
/// its own mapping: pages are committed only where bytes are written.
#[derive(Debug)]
pub struct ByteMap {
    map: Mapping,
    len: usize,
}

impl ByteMap {
    /// `len` zeroed bytes (4 KiB pages: the table is written sparsely).
    pub fn new(len: usize) -> io::Result<ByteMap> {
        let map = Mapping::new(len.max(1), PAGE_SIZE, Prot::ReadWrite)?;
        Ok(ByteMap { map, len })
    }

    /// The bytes, as atomics.
    pub fn atomics(&self) -> &[AtomicU8] {
        // SAFETY: the mapping is readable and writable, zero-initialised and
        // at least `len` bytes long for as long as `self` lives; AtomicU8
        // has the size and alignment of u8 and every bit pattern is valid.
        unsafe { std::slice::from_raw_parts(self.map.start() as *const AtomicU8, self.len) }
    }
}

/// A zero-initialised array of `u64` in its own [`metadata_mapping`]
/// (reserved, committed as written): the old region's object-start table.
/// Dereferences to a slice.
#[derive(Debug)]
pub struct U64Map {
    map: Mapping,
    len: usize,
}

impl U64Map {
    /// `len` zeroed entries.
    pub fn new(len: usize) -> io::Result<U64Map> {
        let map = metadata_mapping(len.max(1) * 8)?;
        Ok(U64Map { map, len })
    }
}

impl std::ops::Deref for U64Map {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        // SAFETY: the mapping is readable, zero-initialised, page aligned
        // and at least `len * 8` bytes long; `&self` excludes `&mut` views.
        unsafe { std::slice::from_raw_parts(self.map.start() as *const u64, self.len) }
    }
}

impl std::ops::DerefMut for U64Map {
    fn deref_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `deref`; `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.map.start() as *mut u64, self.len) }
    }
}

/// A [`WordMap`] that nobody writes any more: marking is over and the
/// collector reads the bitmaps from many threads (GC workers, fault
/// resolvers, signal handlers) as plain `&[u64]`.
#[derive(Debug)]
pub struct FrozenWordMap(WordMap);

impl FrozenWordMap {
    /// Freezes `m`; [`thaw`](Self::thaw) gives it back for the next cycle.
    pub fn freeze(m: WordMap) -> FrozenWordMap {
        FrozenWordMap(m)
    }

    /// The words.
    pub fn words(&self) -> &[u64] {
        // SAFETY: a FrozenWordMap never hands out `atomics()` or `&mut`
        // views, so no writer exists while this shared view is alive; the
        // layout argument is the one in `WordMap::atomics`.
        unsafe { std::slice::from_raw_parts(self.0.map.start() as *const u64, self.0.words) }
    }

    /// Unfreezes.
    pub fn thaw(self) -> WordMap {
        self.0
    }
}

/// A mutable view of one page of memory at `base + off` that the caller
/// owns exclusively (a recycled from-space page handed out by the
/// concurrent collector's recycler).
///
/// # Safety
/// `[base+off, base+off+PAGE_SIZE)` must be mapped, writable memory that no
/// other thread reads or writes while the slice lives.
#[allow(clippy::mut_from_ref)]
pub unsafe fn from_space_page<'a>(base: usize, off: usize) -> &'a mut [u8] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut((base + off) as *mut u8, PAGE_SIZE) }
}

/// Which of the `out.len()` pages from `addr` are resident (`mincore`):
/// bit 0 of each byte. An unmapped page is an error (`ENOMEM`).
pub fn residency(addr: usize, out: &mut [u8]) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    // SAFETY: mincore only writes `out`, one byte per page of the range
    // (`out.len()` pages); it reads no memory of the range.
    let r = unsafe {
        libc::mincore(
            addr as *mut libc::c_void,
            out.len() * PAGE_SIZE,
            out.as_mut_ptr(),
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

impl Mapping {
    /// Number of resident pages in `[off, off+len)` (`mincore`).
    pub fn resident_pages(&self, off: usize, len: usize) -> io::Result<usize> {
        self.check(off, len);
        if len == 0 {
            return Ok(0);
        }
        let mut v = vec![0u8; len / PAGE_SIZE];
        residency(self.start + off, &mut v)?;
        Ok(v.iter().filter(|&&b| b & 1 != 0).count())
    }
}

/// Rounds `x` up to a multiple of `to` (a power of two).
pub const fn round_up(x: usize, to: usize) -> usize {
    (x + to - 1) & !(to - 1)
}

/// The system page size as reported by `sysconf`.
pub fn system_page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v <= 0 {
        PAGE_SIZE
    } else {
        v as usize
    }
}

/// Total physical memory in bytes (for default heap sizing).
pub fn physical_memory() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || size <= 0 {
        1 << 30
    } else {
        pages as usize * size as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_mapping_and_move() {
        let a = Mapping::new(4 * HUGE_PAGE_SIZE, HUGE_PAGE_SIZE, Prot::ReadWrite).unwrap();
        let b = Mapping::new(4 * HUGE_PAGE_SIZE, HUGE_PAGE_SIZE, Prot::None).unwrap();
        assert_eq!(a.start() % HUGE_PAGE_SIZE, 0);
        // SAFETY: test owns both mappings, single thread.
        unsafe {
            a.bytes_mut(PAGE_SIZE, 8)
                .copy_from_slice(&42u64.to_le_bytes());
        }
        a.move_pages_to(&b, 0, HUGE_PAGE_SIZE).unwrap();
        // SAFETY: as above.
        unsafe {
            assert_eq!(b.bytes(PAGE_SIZE, 8), &42u64.to_le_bytes());
            // The source range is still mapped but empty: reads zero.
            assert_eq!(a.bytes(PAGE_SIZE, 8), &[0u8; 8]);
        }
    }

    #[test]
    fn wordmap_clear() {
        let mut m = WordMap::new(100_000).unwrap();
        m.atomics()[5].store(7, Ordering::Relaxed);
        m.atomics()[99_999].store(9, Ordering::Relaxed);
        assert_eq!(m.words()[5], 7);
        m.clear_prefix(100_000);
        assert!(m.words().iter().all(|&w| w == 0));
    }
}
