//! Heap spaces: the moving space (one contiguous, GiB-aligned reservation
//! bump-allocated through TLABs, plus its from-space alias) and the
//! large-object space (never moved).
//!
//! ```text
//!  reservation   [start ......... top ............ end) gap [arena ................ arena + capacity) gap
//!                 packed objects | TLABs | untouched         large objects with references, page-aligned,
//!                                                            first fit; free pages hold no memory
//!                 ^ GiB-aligned                              ^ GiB-aligned                            ^ GiB-aligned
//!  from-space    [same size, PROT_NONE except during a collection, when the
//!                 reservation's pages are mremap'ed here and read from here]
//!  large objects  without references: one mmap per object; all of them in a
//!                 BTreeMap by address
//! ```
//!
//! The arena of large objects *with* references lies in the same mapping
//! (one VMA) as the moving space, so a concurrent flip moves it out and
//! registers it with the moving space: its pages come back one by one,
//! references rewritten in place, while mutators run (`concurrent`), and the
//! final pause never walks them. Byte arrays keep their own mappings: a
//! cycle never touches them. An object with references that does not fit
//! the arena gets its own mapping too, and its references are rewritten in
//! the pause, as before the arena existed.
//!
//! Both parts start and end on GiB boundaries (the gaps are address space
//! that is never touched): the flip's `mremap` then moves one page-table
//! page per GiB with one TLB flush, instead of one flush per populated
//! 2 MiB, each an interrupt to every other CPU the process last ran on
//! (see [`PUD_SIZE`]).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::mapping::{
    round_up, Mapping, Prot, SyscallCounters, HUGE_PAGE_SIZE, PAGE_SIZE, PUD_SIZE,
};
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

/// The moving space (with the large-object arena above it, in the same
/// mapping) and its from-space alias.
#[derive(Debug)]
pub struct MovingSpace {
    /// `[start, end)`: the moving space; `[start + arena_offset, ... +
    /// capacity)`: the arena.
    pub(crate) heap: Mapping,
    /// The from-space alias of `heap`, as large.
    pub(crate) from: Mapping,
    /// Bytes of the moving space (the arena is as large).
    capacity: usize,
    /// Where the arena starts, from `start`: the capacity rounded up to a
    /// GiB.
    arena_offset: usize,
    top: AtomicUsize,
    /// A hole below the top that blocks are handed out from first: `[hole,
    /// hole_end)`, the room a concurrent cycle left between its compacted
    /// data and the black block it kept in place (see `concurrent::prefix`).
    /// Set and closed only with the world stopped.
    hole: AtomicUsize,
    hole_end: AtomicUsize,
    /// Bytes of the last hole that were left when it was closed: dead
    /// below the top until the next cycle's compaction sets the top, and
    /// counted as free meanwhile (so used bytes do not jump when a cycle
    /// begins).
    closed: AtomicUsize,
    /// Memory below this address (and above the top) may hold old bytes:
    /// blocks handed out there are zeroed first. Above it pages are fresh.
    dirty_limit: AtomicUsize,
    /// The first address that may hold an object: the start, except in
    /// the stale-reference stress mode after a cycle that compacted above
    /// the old top (below it lies the poisoned old image).
    base: AtomicUsize,
    /// The stale-reference mode, if on: free pages above the top are
    /// poisoned, and blocks are unpoisoned as they are handed out.
    poison: std::sync::OnceLock<crate::poison::HeapPoison>,
}

/// Claims `[cur, cur + n)` from the bump cursor `cursor` below `end`, `n`
/// at least `min` and at most `pref` (or what is left). `None` when not
/// even `min` bytes are left.
fn bump(cursor: &AtomicUsize, end: usize, min: usize, pref: usize) -> Option<(usize, usize)> {
    let mut cur = cursor.load(Ordering::Relaxed);
    loop {
        let left = end.saturating_sub(cur);
        if left < min {
            return None;
        }
        let take = pref.max(min).min(left);
        match cursor.compare_exchange_weak(cur, cur + take, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return Some((cur, cur + take)),
            Err(now) => cur = now,
        }
    }
}

impl MovingSpace {
    /// Reserves `capacity` bytes (rounded up to 2 MiB, at a GiB-aligned
    /// address) for the space, as
    /// much for the large-object arena above it, and as much again for the
    /// from-space alias of both. Nothing is committed yet.
    pub fn new(capacity: usize, huge_pages: bool) -> io::Result<MovingSpace> {
        let capacity = round_up(capacity.max(HUGE_PAGE_SIZE), HUGE_PAGE_SIZE);
        // Aligned to a GiB (address space only: the padding is unmapped
        // again) so that the flip's mremap moves whole page-table pages.
        let arena_offset = round_up(capacity, PUD_SIZE);
        let reserved = 2 * arena_offset;
        let heap = Mapping::new(reserved, PUD_SIZE, Prot::ReadWrite)?;
        let from = Mapping::new(reserved, PUD_SIZE, Prot::None)?;
        let advice = if huge_pages {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // Best effort: kernels without THP reject the advice.
        let _ = heap.madvise(0, reserved, advice);
        let top = AtomicUsize::new(heap.start());
        let base = AtomicUsize::new(heap.start());
        let dirty_limit = AtomicUsize::new(heap.start());
        Ok(MovingSpace {
            heap,
            from,
            capacity,
            arena_offset,
            top,
            hole: AtomicUsize::new(0),
            hole_end: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            dirty_limit,
            base,
            poison: std::sync::OnceLock::new(),
        })
    }

    /// First address.
    pub fn start(&self) -> usize {
        self.heap.start()
    }

    /// One past the last address of the moving space.
    pub fn end(&self) -> usize {
        self.heap.start() + self.capacity
    }

    /// Capacity in bytes (of the moving space; the arena is as large).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The large-object arena: `(start, len)`.
    pub fn arena(&self) -> (usize, usize) {
        (self.heap.start() + self.arena_offset, self.capacity)
    }

    /// The arena's offset in the reservation (and in the from-space).
    pub fn arena_offset(&self) -> usize {
        self.arena_offset
    }

    /// Bytes of the whole reservation: the moving space and the arena (what
    /// a concurrent flip moves out and registers).
    pub fn reserved(&self) -> usize {
        self.heap.len()
    }

    /// Current allocation top.
    pub fn top(&self) -> usize {
        self.top.load(Ordering::Acquire)
    }

    /// Bytes between the base (the start, except in the stale-reference
    /// stress mode) and the top, less what is left of the hole: live data
    /// plus TLABs.
    pub fn used(&self) -> usize {
        self.top() - self.base() - self.free_below()
    }

    /// Free bytes below the top: what is left of the hole, and what was
    /// left of the last one when it was closed.
    fn free_below(&self) -> usize {
        self.hole_len() + self.closed.load(Ordering::Acquire)
    }

    /// Bytes left in the hole below the top (see the field).
    pub fn hole_len(&self) -> usize {
        self.hole_end
            .load(Ordering::Acquire)
            .saturating_sub(self.hole.load(Ordering::Acquire))
    }

    /// The hole's `(cursor, end)`: `[cursor, end)` is left of it.
    pub(crate) fn hole_range(&self) -> (usize, usize) {
        (
            self.hole.load(Ordering::Acquire),
            self.hole_end.load(Ordering::Acquire),
        )
    }

    /// Opens the hole `[lo, hi)` below the top: zeroed memory nobody owns,
    /// handed out before the top moves. World stopped.
    pub(crate) fn set_hole(&self, lo: usize, hi: usize) {
        debug_assert!(lo <= hi && hi <= self.top());
        self.hole_end.store(hi, Ordering::Release);
        self.hole.store(lo, Ordering::Release);
    }

    /// Closes the hole: what is left of it stays zero words (dead, and
    /// compacted away by the next cycle), still counted as free until the
    /// top is set. World stopped.
    pub(crate) fn close_hole(&self) {
        self.closed.fetch_add(self.hole_len(), Ordering::AcqRel);
        self.hole
            .store(self.hole_end.load(Ordering::Acquire), Ordering::Release);
    }

    /// Whether `addr` is inside the moving space.
    #[inline(always)]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.heap.start()) < self.capacity
    }

    /// Claims a block of at least `min` and at most `pref` bytes: from the
    /// hole if that much is left of it (its bytes are counted as used
    /// already), else from the shared cursor, keeping the space's used
    /// bytes within `limit`. `None` when not even `min` bytes are left.
    pub fn alloc_block(&self, min: usize, pref: usize, limit: usize) -> Option<(usize, usize)> {
        let hole = bump(&self.hole, self.hole_end.load(Ordering::Acquire), min, pref);
        if hole.is_some() {
            return hole;
        }
        let used_max = self
            .base()
            .saturating_add(limit)
            .saturating_add(self.free_below());
        bump(&self.top, self.end().min(used_max), min, pref)
    }

    /// Sets the top after a collection, closing any hole. Only the
    /// collector calls this, with the world stopped.
    pub(crate) fn set_top(&self, top: usize) {
        self.close_hole();
        self.closed.store(0, Ordering::Release);
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

    /// With the world stopped and no TLAB open (all retired), moves the
    /// top up to the next multiple of `align`; the words skipped are zeroed
    /// where they may be dirty, so they read as unused allocation space.
    /// Leaves the top alone if that would pass the end of the space.
    pub(crate) fn align_top(&self, align: usize) {
        let top = self.top();
        let aligned = round_up(top, align);
        if aligned > top && aligned <= self.end() {
            // Nobody owns [top, aligned): it is above the shared cursor and
            // the world is stopped, so zeroing it is as for a new block.
            self.clean_block(top, aligned);
            self.set_top(aligned);
        }
    }

    /// The first address that may hold an object (see the field).
    pub fn base(&self) -> usize {
        self.base.load(Ordering::Acquire)
    }

    /// Sets [`base`](Self::base) after a collection (world stopped).
    pub(crate) fn set_base(&self, base: usize) {
        self.base.store(base, Ordering::Release);
    }

    /// Turns the stale-reference mode on (at creation).
    pub(crate) fn set_poison(&self, p: crate::poison::HeapPoison) {
        let _ = self.poison.set(p);
    }

    /// The stale-reference mode's poisoner, if it is on.
    pub(crate) fn poisoner(&self) -> Option<&crate::poison::Poisoner> {
        self.poison.get().map(|p| &*p.poisoner)
    }

    /// Zeroes the dirty part of a block just returned by `alloc_block`, so
    /// allocation can rely on zeroed memory. Pages the kernel supplies
    /// fresh are not touched. In the stale-reference mode the poisoned
    /// pages of the block are dropped first (they read as zeros then).
    pub(crate) fn clean_block(&self, start: usize, end: usize) {
        if let Some(p) = self.poisoner() {
            p.unpoison(end);
        }
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

/// One large object: its memory and its mark.
#[derive(Debug)]
pub struct LargeObject {
    addr: usize,
    len: usize,
    /// Its own mapping; `None` for an object in the arena.
    own: Option<Mapping>,
    pub(crate) marked: AtomicBool,
    /// Survived a cycle: old, so a young cycle keeps it without marking.
    old: AtomicBool,
}

impl LargeObject {
    /// The object.
    pub fn obj(&self) -> ObjRef {
        ObjRef::from_addr(self.addr)
    }

    /// Bytes of memory it occupies (rounded to pages).
    pub fn footprint(&self) -> usize {
        self.len
    }

    /// Whether it lives in the arena (its references are rewritten after
    /// a concurrent flip, page by page, instead of in the pause).
    pub fn in_arena(&self) -> bool {
        self.own.is_none()
    }

    /// `(address, bytes, own mapping)`: what a freed object leaves.
    pub(crate) fn into_parts(self) -> (usize, usize, Option<Mapping>) {
        (self.addr, self.len, self.own)
    }

    /// Whether it survived a cycle (old: see `generation`).
    pub(crate) fn is_old(&self) -> bool {
        self.old.load(Ordering::Relaxed)
    }
}

/// The arena's free page ranges, by start address (first fit; freed ranges
/// merge with their neighbours).
#[derive(Debug, Default)]
struct ArenaFree {
    ranges: BTreeMap<usize, usize>,
}

impl ArenaFree {
    fn take(&mut self, len: usize) -> Option<usize> {
        let (&start, &have) = self.ranges.iter().find(|(_, &l)| l >= len)?;
        self.ranges.remove(&start);
        if have > len {
            self.ranges.insert(start + len, have - len);
        }
        Some(start)
    }

    fn give(&mut self, mut start: usize, mut len: usize) {
        if let Some((&s, &l)) = self.ranges.range(..start).next_back() {
            if s + l == start {
                self.ranges.remove(&s);
                start = s;
                len += l;
            }
        }
        if let Some(l) = self.ranges.remove(&(start + len)) {
            len += l;
        }
        self.ranges.insert(start, len);
    }
}

/// The large-object space: objects above the size threshold, never moved,
/// freed when found dead. Objects with references live in the arena (page
/// ranges of the moving space's reservation, see the module docs); byte
/// arrays, and objects with references the arena has no room for, get
/// their own mapping.
#[derive(Debug)]
pub struct LargeObjectSpace {
    pub(crate) objects: Mutex<BTreeMap<usize, LargeObject>>,
    bytes: AtomicUsize,
    /// Set while the heap marks concurrently: new objects are born marked
    /// (live by construction, like moving-space objects above the
    /// mark-start top).
    allocate_black: AtomicBool,
    /// `(start, len)` of the arena.
    arena: (usize, usize),
    /// Locked after `objects` when both are held.
    arena_free: Mutex<ArenaFree>,
}

impl LargeObjectSpace {
    /// A space whose objects with references go to the arena `(start, len)`
    /// (page-aligned; `len` may be 0: no arena).
    pub fn new(arena: (usize, usize)) -> LargeObjectSpace {
        let mut free = ArenaFree::default();
        if arena.1 > 0 {
            free.give(arena.0, arena.1);
        }
        LargeObjectSpace {
            objects: Mutex::default(),
            bytes: AtomicUsize::new(0),
            allocate_black: AtomicBool::new(false),
            arena,
            arena_free: Mutex::new(free),
        }
    }

    /// Allocates a zeroed large object.
    #[cfg(test)]
    pub fn alloc(&self, layout: &Layout) -> io::Result<ObjRef> {
        self.alloc_with(layout, None)
    }

    /// [`alloc`](Self::alloc), unpoisoning reused arena pages with
    /// `poisoner` (the stale-reference mode).
    pub(crate) fn alloc_with(
        &self,
        layout: &Layout,
        poisoner: Option<&crate::poison::Poisoner>,
    ) -> io::Result<ObjRef> {
        let len = round_up(layout.size(), PAGE_SIZE);
        let in_arena = if layout.header().ref_count() > 0 {
            self.arena_free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(len)
        } else {
            None
        };
        if let (Some(a), Some(p)) = (in_arena, poisoner) {
            p.reuse(a, len);
        }
        let (addr, own) = match in_arena {
            // Arena pages hold no memory while free (never touched, released
            // when their object died, or missing during a concurrent cycle):
            // they read as zeros.
            Some(a) => (a, None),
            None => {
                let map = Mapping::new(len, PAGE_SIZE, Prot::ReadWrite)?;
                (map.start(), Some(map))
            }
        };
        let obj = init_object(addr, layout.header());
        self.bytes.fetch_add(len, Ordering::Relaxed);
        let mut objs = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let marked = AtomicBool::new(self.allocate_black.load(Ordering::Relaxed));
        objs.insert(
            addr,
            LargeObject {
                addr,
                len,
                own,
                marked,
                old: AtomicBool::new(false),
            },
        );
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

    /// Marks every old object (world stopped, at the start of a young
    /// cycle: old objects are live without being traced).
    pub(crate) fn mark_old(&self, objs: &BTreeMap<usize, LargeObject>) {
        for o in objs.values().filter(|o| o.is_old()) {
            o.marked.store(true, Ordering::Relaxed);
        }
    }

    /// Frees unmarked objects, clears the marks of the rest and makes them
    /// old. Returns
    /// (objects freed, bytes freed). World stopped. The pages of a freed
    /// arena object are handed to `release` (offset from the arena start,
    /// length) before they can be allocated again: it must make them read
    /// as zeros (a concurrent cycle past its flip has nothing to do: they
    /// are missing).
    pub(crate) fn sweep(
        &self,
        objs: &mut BTreeMap<usize, LargeObject>,
        release: &mut dyn FnMut(usize, usize),
        bury: Option<&mut dyn FnMut(LargeObject)>,
    ) -> (usize, usize) {
        let mut freed = (0, 0);
        let mut dead = Vec::new();
        for (&a, o) in objs.iter() {
            let live = o.marked.swap(false, Ordering::Relaxed);
            o.old.store(live, Ordering::Relaxed);
            if !live {
                dead.push(a);
            }
        }
        let mut ranges = Vec::new();
        let mut gone = Vec::with_capacity(if bury.is_some() { dead.len() } else { 0 });
        for a in dead {
            let o = objs.remove(&a).expect("just seen");
            freed.0 += 1;
            freed.1 += o.footprint();
            if o.in_arena() {
                ranges.push((o.addr, o.len));
            }
            if bury.is_some() {
                gone.push(o);
            }
        }
        if !ranges.is_empty() {
            let mut free = self.arena_free.lock().unwrap_or_else(|e| e.into_inner());
            for (a, l) in ranges {
                if bury.is_none() {
                    release(a - self.arena.0, l);
                }
                free.give(a, l);
            }
        }
        if let Some(bury) = bury {
            gone.into_iter().for_each(bury);
        }
        self.bytes.fetch_sub(freed.1, Ordering::Relaxed);
        freed
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
    fn the_hole_is_handed_out_first_and_not_counted_as_used() {
        let s = MovingSpace::new(8 << 20, false).unwrap();
        let (cap, base) = (s.capacity(), s.start());
        let (a, _) = s.alloc_block(16, 1 << 20, cap).unwrap();
        assert_eq!(a, base);
        s.set_top(base + (4 << 20));
        // A hole of 64 KiB at 1 MiB: free, not used.
        s.set_hole(base + (1 << 20), base + (1 << 20) + 65536);
        assert_eq!(s.hole_len(), 65536);
        assert_eq!(s.used(), (4 << 20) - 65536);
        let (b, e) = s.alloc_block(16, 40000, cap).unwrap();
        assert_eq!((b, e), (base + (1 << 20), base + (1 << 20) + 40000));
        assert_eq!(s.used(), (4 << 20) - 65536 + 40000);
        // What is left of the hole is too small for this one: the top.
        let (c, _) = s.alloc_block(30000, 30000, cap).unwrap();
        assert_eq!(c, base + (4 << 20));
        // But not for a smaller one, which gets the rest of the hole.
        let (d, f) = s.alloc_block(16, 40000, cap).unwrap();
        assert_eq!((d, f), (e, base + (1 << 20) + 65536));
        assert_eq!(s.hole_len(), 0);
        // The limit counts what is left of the hole as free.
        s.set_top(base + (4 << 20));
        s.set_hole(base, base + (1 << 20));
        assert!(s.alloc_block(2 << 20, 2 << 20, 4 << 20).is_none());
        assert!(s.alloc_block(2 << 20, 2 << 20, 5 << 20).is_some());
        // Setting the top closes the hole.
        s.set_top(base + (1 << 20));
        assert_eq!(s.hole_len(), 0);
        let (g, _) = s.alloc_block(16, 16, cap).unwrap();
        assert_eq!(g, base + (1 << 20));
    }

    #[test]
    fn a_closed_hole_stays_free_until_the_top_is_set() {
        let s = MovingSpace::new(8 << 20, false).unwrap();
        let (cap, base) = (s.capacity(), s.start());
        s.set_top(base + (4 << 20));
        s.set_hole(base + (1 << 20), base + (2 << 20));
        let used = s.used();
        assert_eq!(used, 3 << 20);
        // A cycle begins: the hole closes, its rest dead but not used.
        s.close_hole();
        assert_eq!((s.hole_len(), s.used()), (0, used));
        let (a, _) = s.alloc_block(16, 4096, cap).unwrap();
        assert_eq!(a, base + (4 << 20), "no block from a closed hole");
        assert_eq!(s.used(), used + 4096);
        // Within a limit of `used + 4096` the top may not move further.
        assert!(s.alloc_block(16, 16, used + 4096).is_none());
        // The cycle's compaction sets the top: nothing dead below it.
        s.set_top(base + (2 << 20));
        assert_eq!(s.used(), 2 << 20);
    }

    #[test]
    fn blocks_come_from_the_shared_cursor() {
        let s = MovingSpace::new(4 << 20, false).unwrap();
        assert_eq!(s.start() % PUD_SIZE, 0);
        assert_eq!(s.from.start() % PUD_SIZE, 0);
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
        let los = LargeObjectSpace::new((0, 0));
        let a = los.alloc(&Layout::byte_array(0, 100_000).unwrap()).unwrap();
        let _b = los.alloc(&Layout::byte_array(0, 100_000).unwrap()).unwrap();
        let mut objs = los.objects.lock().unwrap();
        objs[&a.addr()].marked.store(true, Ordering::Relaxed);
        let (n, bytes) = los.sweep(&mut objs, &mut |_, _| unreachable!("no arena"), None);
        assert_eq!(n, 1);
        assert!(bytes >= 100_000);
        assert_eq!(objs.len(), 1);
        assert!(!objs[&a.addr()].marked.load(Ordering::Relaxed));
    }

    /// Objects with references go to the arena, first fit; a freed range is
    /// released before it is reused and merges with its free neighbours; an
    /// object the arena cannot hold gets its own mapping.
    #[test]
    fn objects_with_references_live_in_the_arena() {
        let s = MovingSpace::new(4 << 20, false).unwrap();
        let (astart, alen) = s.arena();
        assert_eq!((astart, alen), (s.start() + PUD_SIZE, s.capacity()));
        assert_eq!(astart % PUD_SIZE, 0);
        assert_eq!(s.reserved() % PUD_SIZE, 0);
        let los = LargeObjectSpace::new(s.arena());
        let refs = |n| Layout::ref_array(0, n).unwrap();
        let a = los.alloc(&refs(1000)).unwrap(); // 2 pages
        let b = los.alloc(&refs(1000)).unwrap();
        let bytes = los.alloc(&Layout::byte_array(0, 100_000).unwrap()).unwrap();
        assert_eq!(a.addr(), astart);
        assert_eq!(b.addr(), astart + 2 * PAGE_SIZE);
        let mut released = Vec::new();
        {
            let mut objs = los.objects.lock().unwrap();
            assert!(objs[&a.addr()].in_arena() && !objs[&bytes.addr()].in_arena());
            objs[&b.addr()].marked.store(true, Ordering::Relaxed);
            objs[&bytes.addr()].marked.store(true, Ordering::Relaxed);
            los.sweep(&mut objs, &mut |off, len| released.push((off, len)), None);
        }
        assert_eq!(released, [(0, 2 * PAGE_SIZE)]);
        // The freed range is reused first.
        assert_eq!(los.alloc(&refs(10)).unwrap().addr(), astart);
        // Too big for what is left of the arena: its own mapping.
        let huge = los.alloc(&refs(alen / 8)).unwrap();
        let mut objs = los.objects.lock().unwrap();
        assert!(!objs[&huge.addr()].in_arena());
        // Free everything: the arena is one range again.
        los.sweep(&mut objs, &mut |_, _| {}, None);
        drop(objs);
        let free = los.arena_free.lock().unwrap();
        assert_eq!(free.ranges.iter().collect::<Vec<_>>(), [(&astart, &alen)]);
    }
}
