//! Heap spaces: the moving space (one contiguous, 2 MiB-aligned reservation
//! bump-allocated through TLABs, plus its from-space alias) and the
//! large-object space (one mapping per object, never moved).
//!
//! ```text
//!  moving space  [start ............ top ......................... end)
//!                 packed live objects | TLABs handed out | untouched (no pages)
//!  from-space    [same size, PROT_NONE except during a collection, when the
//!                 moving space's pages are mremap'ed here and read from here]
//!  large objects  one mmap per object, in a BTreeMap by address
//! ```

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::mapping::{round_up, Mapping, Prot, SyscallCounters, HUGE_PAGE_SIZE, PAGE_SIZE};
use crate::object::{init_object, Layout, ObjRef};

/// A heap's spaces, the policies a cycle works on (each says how its
/// objects are allocated, found, moved or freed), and the count of the
/// kernel calls made on their mappings.
#[derive(Debug)]
pub(crate) struct Spaces {
    /// The moving space (compacted).
    pub(crate) moving: MovingSpace,
    /// The large-object space (never moved; dead objects unmapped).
    pub(crate) large: LargeObjectSpace,
    /// `madvise`, `mremap` and `mmap` calls on these mappings.
    pub(crate) counters: SyscallCounters,
}

/// A thread-local allocation buffer: a private `[cursor, limit)` range of the
/// moving space.
///
/// Invariants: `cursor <= limit`; the range is zeroed, unused memory of the
/// moving space owned by one mutator; both are 0 when the mutator has none.
/// The fast path is a bump and a bounds check, no atomics and no locks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tlab {
    cursor: usize,
    limit: usize,
}

impl Tlab {
    /// Bump-allocates `size` bytes (a multiple of 8).
    #[inline(always)]
    pub fn bump(&mut self, size: usize) -> Option<usize> {
        let new = self.cursor.wrapping_add(size);
        if new <= self.limit && new > self.cursor {
            let addr = self.cursor;
            self.cursor = new;
            Some(addr)
        } else {
            None
        }
    }

    /// Allocates and initialises an object of `layout`.
    #[inline(always)]
    pub fn alloc(&mut self, layout: &Layout) -> Option<ObjRef> {
        self.bump(layout.size())
            .map(|a| init_object(a, layout.header()))
    }

    /// Drops the buffer (after a collection, or when retiring it).
    pub fn reset(&mut self) {
        *self = Tlab::default();
    }

    pub(crate) fn set(&mut self, start: usize, end: usize) {
        self.cursor = start;
        self.limit = end;
    }
}

/// The moving space and its from-space alias.
#[derive(Debug)]
pub struct MovingSpace {
    pub(crate) heap: Mapping,
    pub(crate) from: Mapping,
    top: AtomicUsize,
    /// Memory below this address (and above the top) may hold old bytes:
    /// blocks handed out there are zeroed first. Above it pages are fresh.
    dirty_limit: AtomicUsize,
}

impl MovingSpace {
    /// Reserves `capacity` bytes (rounded up to 2 MiB) for the space and as
    /// much again for the from-space. Nothing is committed yet.
    pub fn new(capacity: usize, huge_pages: bool) -> io::Result<MovingSpace> {
        let capacity = round_up(capacity.max(HUGE_PAGE_SIZE), HUGE_PAGE_SIZE);
        let heap = Mapping::new(capacity, HUGE_PAGE_SIZE, Prot::ReadWrite)?;
        let from = Mapping::new(capacity, HUGE_PAGE_SIZE, Prot::None)?;
        let advice = if huge_pages {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // Best effort: kernels without THP reject the advice.
        let _ = heap.madvise(0, capacity, advice);
        let top = AtomicUsize::new(heap.start());
        let dirty_limit = AtomicUsize::new(heap.start());
        Ok(MovingSpace {
            heap,
            from,
            top,
            dirty_limit,
        })
    }

    /// First address.
    pub fn start(&self) -> usize {
        self.heap.start()
    }

    /// One past the last address.
    pub fn end(&self) -> usize {
        self.heap.end()
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.heap.len()
    }

    /// Current allocation top.
    pub fn top(&self) -> usize {
        self.top.load(Ordering::Acquire)
    }

    /// Bytes between the start and the top (live data plus TLABs).
    pub fn used(&self) -> usize {
        self.top() - self.start()
    }

    /// Whether `addr` is inside the space.
    #[inline(always)]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.heap.start()) < self.heap.len()
    }

    /// Claims a block of at least `min` and at most `pref` bytes from the
    /// shared cursor, keeping the space's used bytes within `limit`. `None`
    /// when not even `min` bytes are left.
    pub fn alloc_block(&self, min: usize, pref: usize, limit: usize) -> Option<(usize, usize)> {
        let end = self.end().min(self.start().saturating_add(limit));
        let mut cur = self.top.load(Ordering::Relaxed);
        loop {
            let left = end.saturating_sub(cur);
            if left < min {
                return None;
            }
            let take = pref.max(min).min(left);
            match self.top.compare_exchange_weak(
                cur,
                cur + take,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((cur, cur + take)),
                Err(now) => cur = now,
            }
        }
    }

    /// Sets the top after a collection. Only the collector calls this, with
    /// the world stopped.
    pub(crate) fn set_top(&self, top: usize) {
        self.top.store(top, Ordering::Release);
    }

    /// Declares `[.., limit)` possibly dirty (world stopped).
    pub(crate) fn set_dirty_limit(&self, limit: usize) {
        self.dirty_limit.store(limit, Ordering::Release);
    }

    /// The dirty limit (see the field docs).
    pub fn dirty_limit(&self) -> usize {
        self.dirty_limit.load(Ordering::Acquire)
    }

    /// Zeroes the dirty part of a block just returned by `alloc_block`, so
    /// allocation can rely on zeroed memory. Pages the kernel supplies
    /// fresh are not touched.
    pub(crate) fn clean_block(&self, start: usize, end: usize) {
        let dirty_end = end.min(self.dirty_limit());
        if start < dirty_end {
            // SAFETY: `[start, end)` was just handed to the calling mutator
            // alone by `alloc_block` (a CAS on the shared cursor), lies in the
            // moving space, and nothing else references it yet.
            let b = unsafe { self.heap.bytes_mut(start - self.start(), dirty_end - start) };
            b.fill(0);
        }
    }
}

/// One large object: its own mapping and its mark.
#[derive(Debug)]
pub struct LargeObject {
    map: Mapping,
    pub(crate) marked: AtomicBool,
}

impl LargeObject {
    /// The object.
    pub fn obj(&self) -> ObjRef {
        ObjRef::from_addr(self.map.start())
    }

    /// Bytes of memory it occupies (rounded to pages).
    pub fn footprint(&self) -> usize {
        self.map.len()
    }
}

/// The large-object space: objects above the size threshold, each in its own
/// mapping, never moved, unmapped when found dead.
#[derive(Debug, Default)]
pub struct LargeObjectSpace {
    pub(crate) objects: Mutex<BTreeMap<usize, LargeObject>>,
    bytes: AtomicUsize,
    /// Set while the heap marks concurrently: new objects are born marked
    /// (live by construction, like moving-space objects above the
    /// mark-start top).
    allocate_black: AtomicBool,
}

impl LargeObjectSpace {
    /// Allocates a zeroed large object.
    pub fn alloc(&self, layout: &Layout) -> io::Result<ObjRef> {
        let map = Mapping::new(layout.size(), PAGE_SIZE, Prot::ReadWrite)?;
        let obj = init_object(map.start(), layout.header());
        self.bytes.fetch_add(map.len(), Ordering::Relaxed);
        let mut objs = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let marked = AtomicBool::new(self.allocate_black.load(Ordering::Relaxed));
        objs.insert(map.start(), LargeObject { map, marked });
        Ok(obj)
    }

    /// Turns allocation-black on or off (under the table's lock, so no
    /// allocation straddles the change).
    pub(crate) fn set_allocate_black(&self, on: bool) {
        let _objs = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        self.allocate_black.store(on, Ordering::Relaxed);
    }

    /// [`MarkContext::los`](crate::mark::MarkContext::los) for concurrent
    /// marking: locks the table for each lookup (mutators may be
    /// allocating large objects meanwhile).
    pub(crate) fn mark_locked(&self, addr: usize) -> Option<bool> {
        let objs = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let marked = crate::mark::los_marker(&objs)(addr);
        marked
    }

    /// Bytes occupied by large objects.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Frees unmarked objects and clears the marks of the rest. Returns
    /// (objects freed, bytes freed). World stopped.
    pub(crate) fn sweep(
        objs: &mut BTreeMap<usize, LargeObject>,
        bytes: &AtomicUsize,
    ) -> (usize, usize) {
        let mut freed = (0, 0);
        objs.retain(|_, o| {
            let live = o.marked.swap(false, Ordering::Relaxed);
            if !live {
                freed.0 += 1;
                freed.1 += o.footprint();
            }
            live
        });
        bytes.fetch_sub(freed.1, Ordering::Relaxed);
        freed
    }

    pub(crate) fn bytes_counter(&self) -> &AtomicUsize {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlab_bumps_and_refuses_overflow() {
        let mut t = Tlab::default();
        assert_eq!(t.bump(8), None);
        t.set(4096, 4096 + 32);
        assert_eq!(t.bump(16), Some(4096));
        assert_eq!(t.bump(16), Some(4112));
        assert_eq!(t.bump(8), None);
        t.set(usize::MAX - 15, usize::MAX);
        assert_eq!(t.bump(64), None);
    }

    #[test]
    fn blocks_come_from_the_shared_cursor() {
        let s = MovingSpace::new(4 << 20, false).unwrap();
        assert_eq!(s.start() % HUGE_PAGE_SIZE, 0);
        let cap = s.capacity();
        let (a, b) = s.alloc_block(16, 1 << 20, cap).unwrap();
        assert_eq!((a, b - a), (s.start(), 1 << 20));
        assert!(
            s.alloc_block(16, 8 << 20, 1 << 20).is_none(),
            "limit respected"
        );
        let (c, _) = s.alloc_block(16, 8 << 20, cap).unwrap();
        assert_eq!(c, b);
        assert_eq!(s.top(), s.end());
        assert!(s.alloc_block(8, 8, cap).is_none());
    }

    #[test]
    fn large_objects_are_swept_when_unmarked() {
        let los = LargeObjectSpace::default();
        let a = los.alloc(&Layout::byte_array(0, 100_000).unwrap()).unwrap();
        let _b = los.alloc(&Layout::byte_array(0, 100_000).unwrap()).unwrap();
        let mut objs = los.objects.lock().unwrap();
        objs[&a.addr()].marked.store(true, Ordering::Relaxed);
        let (n, bytes) = LargeObjectSpace::sweep(&mut objs, &los.bytes);
        assert_eq!(n, 1);
        assert!(bytes >= 100_000);
        assert_eq!(objs.len(), 1);
        assert!(!objs[&a.addr()].marked.load(Ordering::Relaxed));
    }
}
