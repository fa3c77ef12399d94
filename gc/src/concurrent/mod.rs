//! Concurrent compaction with userfaultfd: the part of a cycle that runs
//! after the flip pause, while mutators run.
//!
//! At the flip (see `cycle.rs`) the moving space's used range is registered
//! with userfaultfd in MISSING mode, its pages are moved to the from-space
//! with `mremap(MREMAP_DONTUNMAP)`, and roots are updated to post-compaction
//! addresses. From then on every to-space page is produced exactly once by
//! [`Compactor::compact_page`] and installed:
//!
//! * by **GC threads** sweeping 2 MiB blocks of 512 pages from the top of
//!   the space down. In [`InstallMode::Move`] a block is compacted *into
//!   recycled from-space pages* (pages whose contents no longer matter,
//!   above the reclamation watermark) and installed with one `UFFDIO_MOVE`
//!   per run of consecutive pages: no page is allocated and no `madvise` is
//!   made. In [`InstallMode::Copy`] (the pre-MOVE baseline) a block is
//!   compacted into a per-thread 2 MiB buffer and installed with
//!   `UFFDIO_COPY`, and the from-space is freed with `madvise` at the end;
//! * by a **fault resolver** when a mutator touches a page first: the page
//!   is compacted into a 4 KiB stack buffer and installed with `UFFDIO_COPY`
//!   (on this VM a single-page MOVE costs a TLB-shootdown IPI of ~11 µs while
//!   another thread of the process runs, so COPY is faster on this path; see
//!   docs/benchmarks.md). The resolver is the faulting thread itself in its
//!   SIGBUS handler ([`FaultMode::Sigbus`]) or a GC thread reading fault
//!   events ([`FaultMode::HandlerThread`]); see [`fault`].
//!
//! **Recycling watermark.** Compaction slides objects down, so to-space page
//! `p` reads only from-space words at or above `first_word(p)`, and the
//! to-pages below `p` read nothing above `first_word(p)`'s page. Once every
//! to-page at or above `p` is mapped, every from-space page above
//! `first_word(p)`'s page is dead: GC threads take destination pages from
//! the top of that free range while the watermark moves down behind them.
//! If not enough recycled pages are free yet (a heap with no dead tail, or
//! a block whose sources are all live), the shortfall goes through the
//! buffer and COPY.
//!
//! **Errors.** `EBUSY` from MOVE (the source page is shared after `fork`,
//! pinned or merged) copies that page instead; `EAGAIN` retries the rest;
//! `EEXIST` means the page is already there (a racing resolver won) and is
//! success. Any other MOVE error falls back to COPY for the rest of the run.
//! A COPY that keeps failing is fatal for the heap: a registered page that
//! cannot be installed would block its readers forever, so the process
//! aborts with a fixed message (`fatal::fatal`; this may run in a SIGBUS
//! handler, which must not unwind) rather than hang or return a corrupt
//! heap.
//! Tests inject EBUSY/EAGAIN/EEXIST through [`Injection`].

pub(crate) mod arena;
pub(crate) mod fatal;
pub mod fault;
pub mod page_state;
pub(crate) mod prefix;
pub(crate) mod support;
mod sync;

#[cfg(all(test, feature = "loom"))]
mod loom_tests;

use std::sync::atomic::{AtomicIsize, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::compact::{Black, Compactor, OldPages};
use crate::forwarding::{Forwarding, PageStart, PAGE_WORDS};
use crate::generation::{CardTable, ObjectStarts};
use crate::mapping::{FrozenWordMap, Mapping, U32Map, PAGE_SIZE};
use crate::safepoint::MutatorShared;
use crate::satb::SatbLog;
use crate::uffd::{CopyMode, MoveMode, OpError, Uffd, UffdError};
use page_state::{Claimant, PageState, PageStates};

/// Pages the allocation-region prefill zeroes and moves at a time
/// (`CycleShared::prefill_allocation`), yielding the CPU between runs.
const PREFILL_RUN_PAGES: usize = 128;

/// Most pages per GC batch: one 2 MiB PMD, so a batch costs one MOVE
/// ioctl and one TLB flush.
pub const BLOCK_PAGES: usize = 512;

/// Fewest pages per GC batch.
pub const MIN_BLOCK_PAGES: usize = 32;

/// The default of `HeapConfig::min_move_run`: runs of fewer to-space pages
/// than this are installed by COPY in MOVE mode. A `UFFDIO_MOVE` flushes
/// the source range from the TLB of every CPU running a thread of the
/// process, one IPI per ioctl to a CPU where a mutator runs (10-15 µs on
/// these VMs, both sides), where a COPY of an empty destination flushes
/// nothing and costs ~1.5 µs a page more. Runs are short when mutators
/// fault ahead of the GC threads: at 1 (always MOVE), the fragmenter's
/// MOVE compaction took 2.3x COPY's; at 8, 1.15x (`docs/benchmarks.md`
/// §6e). Above 1 the fault path's allocation-region fills
/// ([`ZERO_FILL_PAGES`] pages) are copied too: their MOVE's IPI is the
/// faulting thread's own wait, and copying halved binary-trees'
/// fault-stall p99.
pub const DEFAULT_MIN_MOVE_RUN: usize = 8;

/// Pages per GC batch for a cycle of `npages` to-space pages: the largest
/// power of two up to [`BLOCK_PAGES`] that still gives at least 16 blocks
/// (and at least [`MIN_BLOCK_PAGES`]).
///
/// The block is also the recycling unit: only pages freed by *completed*
/// higher blocks (plus the dead tail) can be recycled, so a cycle that fits
/// in one 2 MiB block would have almost nothing to recycle and would copy
/// every page. Batches of 32-64 pages still amortise the ioctl: the
/// measured per-page MOVE cost is within 1 % of 512-page batches from 64
/// pages on (`docs/benchmarks.md` §1).
pub fn block_pages_for(npages: usize) -> usize {
    let mut b = BLOCK_PAGES;
    while b > MIN_BLOCK_PAGES && npages < 16 * b {
        b /= 2;
    }
    b
}

/// How GC threads install compacted pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstallMode {
    /// `UFFDIO_MOVE` of recycled from-space pages.
    Move,
    /// `UFFDIO_COPY` from a per-thread buffer.
    Copy,
}

/// How a mutator's fault on a not-yet-compacted page is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultMode {
    /// `UFFD_FEATURE_SIGBUS`: the faulting thread compacts the page itself
    /// in its SIGBUS handler. No hand-off; the default.
    Sigbus,
    /// A GC thread reads fault events from the userfaultfd and resolves
    /// them; the faulting thread sleeps in the kernel meanwhile.
    HandlerThread,
}

impl FaultMode {
    /// Stable name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultMode::Sigbus => "sigbus",
            FaultMode::HandlerThread => "handler-thread",
        }
    }
}

/// Error injection for tests: every n-th MOVE ioctl (0 = never) is made to
/// report the error. `busy` is reported without calling the kernel (the
/// page is then copied); `again` really moves the first half of the range
/// and reports partial progress; `exists` first installs the range's first
/// page by COPY (as a racing resolver would) so the real MOVE then fails
/// with `EEXIST`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injection {
    /// Every n-th MOVE reports `EBUSY`.
    pub busy_every: u32,
    /// Every n-th MOVE of more than one page stops halfway with `EAGAIN`.
    pub again_every: u32,
    /// Every n-th MOVE finds its first page already installed (`EEXIST`).
    pub exists_every: u32,
    /// Preparing the concurrent compaction (its buffers and the collector thread,
    /// acquired before the flip) fails: the cycle must finish
    /// stop-the-world.
    pub prepare_fails: bool,
    /// `UFFDIO_UNREGISTER` at the end of the cycle fails (`EINVAL`): the
    /// process must abort with a message, not hang.
    pub unregister_fails: bool,
    /// If not 0, registering the flipped heap fails (`EINVAL`) in every
    /// cycle whose number is a multiple of it: the pages go back and the
    /// cycle finishes stop-the-world, and the heap must stay one VMA (the
    /// next flip works).
    pub register_fails_every: u64,
    /// The final pause prepares again even when the prepare done while
    /// mutators ran is still exact (tests the path taken when its remark
    /// marks something new).
    pub discard_speculative_prepare: bool,
    /// The final pause's remark counts as having marked something new
    /// (tests the remark pause: the pause ends with marking complete, the
    /// forwarding is prepared again while mutators run, and a second,
    /// final pause flips), in every concurrent cycle that can take it;
    /// mutators then run for at least 2 ms between the two pauses.
    pub remark_pause: bool,
    /// Concurrent marking waits 20 ms before it reads anything (a young
    /// cycle's remembered set included; tests a mutator acting before the
    /// trace reaches what it touches).
    pub delay_marking: bool,
}

/// Counters of one concurrent cycle (updated from signal handlers too, so
/// plain atomics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Pages installed by `UFFDIO_MOVE`.
    pub pages_moved: AtomicUsize,
    /// Pages installed by `UFFDIO_COPY` (GC batches, fault path, fallbacks).
    pub pages_copied: AtomicUsize,
    /// Allocation-region pages zero-filled on a fault.
    pub pages_zero_filled: AtomicUsize,
    /// Stall of the faults that zero-filled pages (the allocation region,
    /// free arena pages), nanoseconds: allocation work, not compaction.
    pub zero_fill_stall_ns: AtomicU64,
    /// Of those, recycled from-space pages zeroed and moved in (MOVE mode).
    pub pages_zero_recycled: AtomicUsize,
    /// Recycled from-space pages zeroed and moved into the allocation
    /// region once compaction was done (`prefill_allocation`).
    pub pages_prefilled: AtomicUsize,
    /// MOVE ioctls issued.
    pub move_ioctls: AtomicUsize,
    /// COPY ioctls issued.
    pub copy_ioctls: AtomicUsize,
    /// Pages copied because MOVE returned `EBUSY`.
    pub ebusy_fallbacks: AtomicUsize,
    /// Pages copied in MOVE mode because their run was shorter than
    /// `min_move_run`.
    pub short_run_copies: AtomicUsize,
    /// Partial MOVE/COPY retried after `EAGAIN`.
    pub eagain_retries: AtomicUsize,
    /// Pages found already installed (`EEXIST`).
    pub eexist: AtomicUsize,
    /// Faults whose resolver compacted the page.
    pub faults_resolved: AtomicUsize,
    /// Faults on pages someone else was already producing.
    pub faults_waited: AtomicUsize,
    /// Faults of threads that were not attached at the flip (or, in
    /// handler-thread mode, events without a thread id): not attributed
    /// to any thread.
    pub faults_unattributed: AtomicUsize,
    /// GC pages that went through the buffer because no recycled page was free.
    pub recycle_shortfall: AtomicUsize,
    /// Pages of large objects with references (the arena) whose references
    /// were rewritten in place and which went back (by GC threads or fault
    /// resolvers).
    pub arena_pages: AtomicUsize,
    /// Pages of the dense prefix whose references were rewritten in place
    /// (by GC threads or fault resolvers) before they went back.
    pub prefix_pages: AtomicUsize,
    /// Flipped pages of the dense prefix that were clean: put back as they
    /// were, not read.
    pub prefix_unread: AtomicUsize,
    /// Pages of the black block that went back (by GC threads or fault
    /// resolvers).
    pub black_pages: AtomicUsize,
    /// Of those, pages with dirty slots, rewritten before they went back.
    pub black_dirty_pages: AtomicUsize,
    /// Dirty slots of the black block rewritten.
    pub black_slots: AtomicUsize,
    /// CPU time of the fault-handler thread (handler-thread mode),
    /// nanoseconds, stored when it ends.
    pub handler_cpu_ns: AtomicU64,
}

/// A fault-stall histogram that signal handlers can update: 1 µs buckets
/// up to 1 ms, then power-of-two buckets.
#[derive(Debug)]
pub struct StallHistogram {
    linear: Box<[AtomicU64]>,
    log: Box<[AtomicU64]>,
    /// Every stall summed, nanoseconds.
    total_ns: AtomicU64,
}

impl Default for StallHistogram {
    fn default() -> Self {
        StallHistogram {
            linear: (0..1000).map(|_| AtomicU64::new(0)).collect(),
            log: (0..40).map(|_| AtomicU64::new(0)).collect(),
            total_ns: AtomicU64::new(0),
        }
    }
}

impl StallHistogram {
    /// Records one stall.
    #[inline]
    pub fn record(&self, d: Duration) {
        self.total_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        let us = d.as_micros() as u64;
        if us < 1000 {
            self.linear[us as usize].fetch_add(1, Ordering::Relaxed);
        } else {
            let b = (63 - us.leading_zeros()) as usize;
            self.log[b.min(39)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every recorded stall summed.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_ns.load(Ordering::Relaxed))
    }

    /// The recorded stalls as an HDR histogram of microseconds.
    pub fn to_hdr(&self) -> hdrhistogram::Histogram<u64> {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        for (us, c) in self.linear.iter().enumerate() {
            let c = c.load(Ordering::Relaxed);
            if c > 0 {
                h.record_n(us as u64, c).expect("record");
            }
        }
        for (b, c) in self.log.iter().enumerate() {
            let c = c.load(Ordering::Relaxed);
            if c > 0 {
                h.record_n(1u64 << b, c).expect("record");
            }
        }
        h
    }
}

/// The free range of the from-space recycler of [`InstallMode::Move`]:
/// free pages are `[watermark, free_top)` (from-space page indexes). GC
/// threads and fault resolvers take runs from the top, completed blocks
/// lower the watermark. Both indexes live in one `AtomicU64` (`free_top`
/// in the high half, `watermark` in the low half) updated by CAS, so the
/// fault path (a SIGBUS handler) takes pages without a lock, and a take
/// and a watermark move can never interleave into a page handed out twice
/// or a page below the watermark.
///
/// Invariant: `watermark <= free_top`. Taking lowers `free_top` no further
/// than `watermark`; the watermark only moves down.
#[derive(Debug)]
pub(crate) struct FreeRange(sync::AtomicU64);

impl FreeRange {
    /// The range `[watermark, free_top)`. Both must fit in 32 bits (16 TiB
    /// of from-space) and `watermark <= free_top`.
    pub(crate) fn new(free_top: usize, watermark: usize) -> FreeRange {
        assert!(
            free_top <= u32::MAX as usize && watermark <= free_top,
            "from-space too large for the recycler"
        );
        FreeRange(sync::AtomicU64::new(Self::pack(free_top, watermark)))
    }

    #[inline]
    fn pack(free_top: usize, watermark: usize) -> u64 {
        (free_top as u64) << 32 | watermark as u64
    }

    #[inline]
    fn unpack(v: u64) -> (usize, usize) {
        ((v >> 32) as usize, (v & u64::from(u32::MAX)) as usize)
    }

    /// `(free_top, watermark)` now.
    pub(crate) fn get(&self) -> (usize, usize) {
        Self::unpack(self.0.load(Ordering::Acquire))
    }

    /// Number of free pages now.
    pub(crate) fn free(&self) -> usize {
        let (top, wm) = self.get();
        top - wm
    }

    /// Takes up to `k` pages from the top: `(first, n)`, the pages
    /// `[first, first + n)` now belong to the caller alone. Lock-free and
    /// async-signal-safe.
    #[inline]
    pub(crate) fn take_up_to(&self, k: usize) -> (usize, usize) {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let (top, wm) = Self::unpack(cur);
            let n = k.min(top - wm);
            if n == 0 {
                return (top, 0);
            }
            match self.0.compare_exchange_weak(
                cur,
                Self::pack(top - n, wm),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return (top - n, n),
                Err(now) => cur = now,
            }
        }
    }

    /// Lowers the watermark to `w` (no-op if it is already at or below).
    /// The pages `[w, old watermark)` become free.
    pub(crate) fn lower_watermark(&self, w: usize) {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let (top, wm) = Self::unpack(cur);
            if w >= wm {
                return;
            }
            match self.0.compare_exchange_weak(
                cur,
                Self::pack(top, w),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
}

/// The GC threads' block bookkeeping of the recycler (never touched on
/// the fault path): which blocks are being swept and which are done.
#[derive(Debug)]
struct Recycler {
    done: Vec<bool>,
    in_progress: Vec<bool>,
    lowest_done: usize,
}

/// Everything a concurrent cycle shares between the GC threads and the
/// fault resolvers. Immutable after the flip except for atomics.
pub struct CycleShared {
    pub(crate) live: FrozenWordMap,
    pub(crate) marks: FrozenWordMap,
    pub(crate) offsets: U32Map,
    pub(crate) pages: Vec<PageStart>,
    /// The object-start table of the old region (carried through the
    /// cycle; read by young cycles' fixers).
    starts: Option<ObjectStarts>,
    /// A young cycle's dirty old pages (see `compact::OldPages`).
    old_dirty: Option<Box<[u8]>>,
    /// With young collections: the card table (see
    /// `compact::Compactor::young_cards`).
    cards: Option<Arc<CardTable>>,
    end_words: usize,
    space_start: usize,
    from_start: usize,
    /// To-space pages up to the last one holding live objects: the dense
    /// prefix, the compacted old region, the hole, the black block.
    npages: usize,
    /// To-space pages of the dense prefix and the compacted old region
    /// (the hole follows, then the black block's pages).
    old_pages: usize,
    /// The black block's first page (`old_pages` without a block): pages
    /// `[old_pages, black_first)` are the hole, allocation region like
    /// the pages above `npages`.
    black_first: usize,
    /// One past the black block's last old-space word (0: no block).
    black_end_words: usize,
    /// The black block was not flipped: its pages stayed present in the
    /// to-space all along, their few dirty slots rewritten in the final
    /// pause (`CycleShared::fix_black_in_pause`).
    black_resident: bool,
    /// The barrier's record of the black block's dirty slots.
    dirty: Arc<SatbLog>,
    /// Pages of the dense prefix: fixed in place in the from-space and
    /// moved back (see `prefix`).
    dense_pages: usize,
    /// The first `kept_pages` of them were not flipped at all, present in
    /// the to-space all along: a young cycle's old region, its dirty pages
    /// fixed in the pause (see `prefix`), or the clean pages at the bottom
    /// of a full cycle's prefix, which need no fix (`crate::clean`).
    kept_pages: usize,
    /// The prefix's clean pages (see `CycleSetup::clean`).
    clean: Box<[bool]>,
    /// The raw header of the object crossing the end of the dense prefix
    /// (0 if none), saved in the pause.
    boundary_header: u64,
    /// Pages of the moving space (above `npages`: the allocation region).
    moving_pages: usize,
    /// Where the arena starts in the registered range, in bytes.
    arena_offset: usize,
    /// The live large objects with references, whose pages follow the
    /// compacted ones in `states` and `srcs` (see `arena`).
    arena: arena::ArenaPages,
    /// Bytes from the arena's start that may hold pages (in the from-space
    /// after the flip): up to the end of the highest object, live or dead.
    arena_used: usize,
    /// Pages per GC batch and recycling unit ([`block_pages_for`]).
    block_pages: usize,
    /// Registered pages from the start of the space (the whole reservation:
    /// moving space and arena).
    reg_pages: usize,
    /// Pages of the old used range (the from-space pages that hold data).
    used_pages: usize,
    states: PageStates,
    /// Where a `Compacted` page's bytes are (a recycled from-space page or a
    /// GC buffer page), so a faulting mutator can install it itself.
    srcs: Box<[AtomicUsize]>,
    uffd: Arc<Uffd>,
    install: InstallMode,
    /// Shortest run the GC threads install by MOVE (`DEFAULT_MIN_MOVE_RUN`).
    min_move_run: usize,
    fault_mode: FaultMode,
    injection: Injection,
    inject_n: AtomicU32,
    /// Counters.
    pub counters: Counters,
    /// Stalls of resolved and waited faults.
    pub stalls: StallHistogram,
    cycle: u64,
    /// See [`CycleSetup::threads`].
    threads: Vec<(i32, Arc<MutatorShared>)>,
    /// Each of `threads`' fault totals at the flip (count, stall ns).
    threads_before: Vec<(u64, u64)>,
    /// The recycler's free range (lock-free: the fault path takes from it).
    free: FreeRange,
    /// GC threads' block bookkeeping, and their wait for a higher block.
    recycler: Mutex<Recycler>,
    recycler_cv: Condvar,
}

/// A page-aligned 4 KiB buffer for the fault path (lives on the stack).
#[repr(C, align(4096))]
struct PageBuf([u8; PAGE_SIZE]);

/// Pages zero-filled together when a mutator first touches the allocation
/// region during a cycle: one fault (and one signal, in SIGBUS mode) then
/// serves the next TLAB too. Small, because the faulting thread waits for
/// the zeroing and the ioctl (see docs/design.md §8).
pub const ZERO_FILL_PAGES: usize = 8;

#[repr(C, align(4096))]
struct ZeroRun([u8; ZERO_FILL_PAGES * PAGE_SIZE]);

/// What a zero-fill copies from.
static ZEROS: ZeroRun = ZeroRun([0; ZERO_FILL_PAGES * PAGE_SIZE]);

/// The side metadata a cycle hands back when it ends: live and mark
/// bitmaps, chunk offsets, page starts and the old region's object starts.
pub(crate) type Meta = (
    FrozenWordMap,
    FrozenWordMap,
    U32Map,
    Vec<PageStart>,
    Option<ObjectStarts>,
);

/// A cycle's page states and sources, kept between cycles for reuse.
pub(crate) type PageTables = (PageStates, Box<[AtomicUsize]>);

/// Page tables for `n` pages, all `Unprocessed`. Writes every entry: the
/// marker calls it before the final pause so that the pause does not.
pub(crate) fn page_tables(n: usize) -> PageTables {
    (
        PageStates::new(n),
        (0..n).map(|_| AtomicUsize::new(0)).collect(),
    )
}

/// Parameters of a concurrent cycle, from the flip.
pub(crate) struct CycleSetup {
    pub live: FrozenWordMap,
    pub marks: FrozenWordMap,
    pub offsets: U32Map,
    pub pages: Vec<PageStart>,
    pub starts: Option<ObjectStarts>,
    pub old_dirty: Option<Box<[u8]>>,
    pub cards: Option<Arc<CardTable>>,
    pub end_words: usize,
    pub black_end_words: usize,
    /// The black block stays out of the flip (see `CycleShared`).
    pub black_resident: bool,
    /// The heap's SATB log, holding the black block's dirty slots.
    pub dirty: Arc<SatbLog>,
    /// Page tables (states, sources) left by an earlier cycle, to reuse.
    pub tables: Option<PageTables>,
    pub total_words: usize,
    pub dense_words: usize,
    /// Pages at the bottom of the dense prefix that the flip left in place
    /// (a young cycle's old region, its dirty pages fixed in the pause: see
    /// `prefix`; or a full cycle's clean pages, never fixed: `crate::clean`).
    pub kept_pages: usize,
    /// Per dense-prefix page, whether it is clean (`crate::clean`; empty
    /// for a young cycle): those above `kept_pages` are flipped and put
    /// back without being fixed.
    pub clean: Vec<bool>,
    pub boundary_header: u64,
    pub space_start: usize,
    pub from_start: usize,
    pub moving_pages: usize,
    pub arena_offset: usize,
    pub arena: arena::ArenaPages,
    pub arena_used: usize,
    pub reg_pages: usize,
    pub used_pages: usize,
    pub uffd: Arc<Uffd>,
    pub install: InstallMode,
    /// `HeapConfig::min_move_run`.
    pub min_move_run: usize,
    pub fault_mode: FaultMode,
    pub injection: Injection,
    /// The cycle's number.
    pub cycle: u64,
    /// The mutators attached at the flip, sorted by thread id: whose
    /// faults are attributed to them.
    pub threads: Vec<(i32, Arc<MutatorShared>)>,
}

impl CycleShared {
    pub(crate) fn new(s: CycleSetup) -> CycleShared {
        let old_pages = s.total_words.div_ceil(PAGE_WORDS);
        // The black block (if any) starts at the page-aligned end of the old
        // region and stays there.
        let (black_pages, black_first) = if s.black_end_words > s.end_words {
            debug_assert_eq!(s.end_words % PAGE_WORDS, 0);
            (
                (s.black_end_words - s.end_words).div_ceil(PAGE_WORDS),
                s.end_words / PAGE_WORDS,
            )
        } else {
            (0, old_pages)
        };
        let npages = black_first + black_pages;
        let dense_pages = s.dense_words / PAGE_WORDS;
        debug_assert!(s.kept_pages <= dense_pages);
        // The page tables of the last cycle or sized by the marker (all
        // pages `Unprocessed`); allocating them here would cost the pause
        // ~1 ms at 1 GiB. Extra entries are never used.
        let needed = npages + s.arena.pages();
        let (states, srcs) = match s.tables {
            Some(t) if t.0.len() >= needed => t,
            _ => page_tables(needed + needed / 4 + 1024),
        };
        let block_pages = block_pages_for(old_pages - dense_pages);
        let nblocks = (old_pages - dense_pages).div_ceil(block_pages);
        // Initially free: from-space pages above the old region's last live
        // word and below the black block (never the dense prefix's or the
        // black block's: they go back to the to-space).
        let free_top = if black_pages > 0 {
            s.end_words / PAGE_WORDS
        } else {
            s.used_pages
        };
        let last_live_page = last_live_word(s.live.words(), s.end_words)
            .map_or(0, |w| w / PAGE_WORDS + 1)
            .max(dense_pages);
        CycleShared {
            live: s.live,
            marks: s.marks,
            offsets: s.offsets,
            pages: s.pages,
            starts: s.starts,
            old_dirty: s.old_dirty,
            cards: s.cards,
            end_words: s.end_words,
            space_start: s.space_start,
            from_start: s.from_start,
            npages,
            old_pages,
            black_first,
            black_end_words: if black_pages > 0 {
                s.black_end_words
            } else {
                0
            },
            black_resident: s.black_resident && black_pages > 0,
            dirty: s.dirty,
            dense_pages,
            kept_pages: s.kept_pages,
            clean: s.clean.into_boxed_slice(),
            boundary_header: s.boundary_header,
            moving_pages: s.moving_pages,
            arena_offset: s.arena_offset,
            block_pages,
            reg_pages: s.reg_pages,
            used_pages: s.used_pages,
            states,
            srcs,
            arena: s.arena,
            arena_used: s.arena_used,
            uffd: s.uffd,
            install: s.install,
            min_move_run: s.min_move_run,
            fault_mode: s.fault_mode,
            injection: s.injection,
            cycle: s.cycle,
            threads_before: s
                .threads
                .iter()
                .map(|(_, m)| m.counters.faults.totals())
                .collect(),
            threads: s.threads,
            inject_n: AtomicU32::new(0),
            counters: Counters::default(),
            stalls: StallHistogram::default(),
            free: FreeRange::new(free_top, last_live_page.min(free_top)),
            recycler: Mutex::new(Recycler {
                done: vec![false; nblocks],
                in_progress: vec![false; nblocks],
                lowest_done: nblocks,
            }),
            recycler_cv: Condvar::new(),
        }
    }

    /// The compaction view of this cycle.
    pub fn compactor(&self) -> Compactor<'_> {
        Compactor {
            fwd: Forwarding {
                live: self.live.words(),
                offsets: &self.offsets,
                dense_words: self.dense_pages * PAGE_WORDS,
                end_words: self.end_words,
            },
            pages: &self.pages,
            space_start: self.space_start,
            from_start: self.from_start,
            prefix_start: self.from_start,
            boundary_header: self.boundary_header,
            black: Black {
                end_words: self.black_end_words,
            },
            old: self
                .old_dirty
                .as_deref()
                .zip(self.starts.as_ref())
                .map(|(dirty, starts)| OldPages {
                    dirty,
                    starts: starts.table(),
                }),
            young_cards: self
                .cards
                .as_deref()
                .filter(|_| self.npages > self.black_first)
                .map(|c| {
                    (
                        c,
                        self.space_start + self.black_first * PAGE_SIZE,
                        self.space_start + self.npages * PAGE_SIZE,
                    )
                }),
            clean: &self.clean,
            dest_shift: 0,
        }
    }

    /// To-space pages of the dense prefix and the compacted old region.
    pub fn old_pages(&self) -> usize {
        self.old_pages
    }

    /// Pages of the black block.
    pub fn black_pages(&self) -> usize {
        self.npages - self.black_first
    }

    /// Pages of the black block that the flip moved out (none if it kept
    /// the block resident).
    pub fn black_flipped_pages(&self) -> usize {
        match self.black_resident {
            true => 0,
            false => self.black_pages(),
        }
    }

    /// Whether the black block stayed out of the flip.
    pub fn black_resident(&self) -> bool {
        self.black_resident
    }

    /// The byte range `(offset, len)` of a black block the flip leaves in
    /// place, if it does.
    pub(crate) fn resident_block_bytes(&self) -> Option<(usize, usize)> {
        self.black_resident.then(|| {
            (
                self.black_first * PAGE_SIZE,
                (self.npages - self.black_first) * PAGE_SIZE,
            )
        })
    }

    /// Whether to-space page `p` belongs to the black block.
    #[inline]
    pub(super) fn in_black(&self, p: usize) -> bool {
        p >= self.black_first && p < self.npages
    }

    /// Whether to-space page `p` belongs to a black block the flip left
    /// in place (present unless it was missing already: see
    /// `resolve_fault_after`).
    #[inline]
    pub(super) fn is_resident_black(&self, p: usize) -> bool {
        self.black_resident && self.in_black(p)
    }

    /// The byte ranges `(offset, len)` of the registered range that the
    /// flip moves out, given its length `whole`: everything above the kept
    /// pages, except a resident black block. A range is always a part of
    /// the heap's one VMA (`MREMAP_DONTUNMAP` does not split its source).
    pub(crate) fn flip_ranges(&self, whole: usize) -> Vec<(usize, usize)> {
        let kept = self.kept_pages * PAGE_SIZE;
        let Some((lo, len)) = self.resident_block_bytes() else {
            return vec![(kept, whole - kept)];
        };
        let hi = lo + len;
        [(kept, lo - kept), (hi, whole - hi)]
            .into_iter()
            .filter(|&(_, len)| len > 0)
            .collect()
    }

    /// Whether to-space page `p` is allocation region: the hole between
    /// the compacted data and the black block, or above the block.
    #[inline]
    fn is_allocation_region(&self, p: usize) -> bool {
        p >= self.npages || (p >= self.old_pages && p < self.black_first)
    }

    /// Words from the start of the space to the top after the flip: the
    /// compacted data, or the end of the black block, which stays.
    pub(crate) fn new_top_words(&self) -> usize {
        if self.black_end_words > 0 {
            self.black_end_words
        } else {
            self.compactor().fwd.total_words()
        }
    }

    /// Pages of the dense prefix.
    pub fn dense_pages(&self) -> usize {
        self.dense_pages
    }

    /// Pages of the dense prefix the flip left in place.
    pub fn kept_pages(&self) -> usize {
        self.kept_pages
    }

    /// Number of to-space pages with live objects (the dense prefix
    /// included).
    pub fn npages(&self) -> usize {
        self.npages
    }

    /// The address of page `p` of the cycle: a compacted page of the
    /// moving space, or (from `npages` on) a live arena object's page.
    fn page_addr(&self, p: usize) -> usize {
        if p < self.npages {
            self.space_start + p * PAGE_SIZE
        } else {
            self.arena.page(p - self.npages).1
        }
    }

    /// `(offset, len)` in the from-space of the arena's part that may hold
    /// pages.
    pub(crate) fn arena_from_range(&self) -> (usize, usize) {
        (self.arena_offset, self.arena_used)
    }

    /// Whether `addr` lies in the registered range.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.space_start) < self.reg_pages * PAGE_SIZE
    }

    /// The page states.
    pub fn states(&self) -> &PageStates {
        &self.states
    }

    fn copy_mode(&self) -> CopyMode {
        CopyMode::empty()
    }

    fn move_mode(&self) -> MoveMode {
        // In SIGBUS mode nobody sleeps in the kernel on these pages, so the
        // wake-up walk can be skipped; in handler-thread mode the install
        // must wake the faulting threads.
        match self.fault_mode {
            FaultMode::Sigbus => MoveMode::DONTWAKE,
            FaultMode::HandlerThread => MoveMode::empty(),
        }
    }

    /// Serves a fault at `addr` (inside the registered range). Runs in a
    /// SIGBUS handler or on the fault-handler thread: no allocation, no
    /// locks, no formatting, no unwinding, in everything it reaches
    /// (`resolve_page`, [`Compactor::compact_page`] and its forwarding
    /// lookups, `copy_pages_until`, `zero_fill_recycled`, the page states,
    /// the recycler's `FreeRange`). An impossible state ends in
    /// `fatal::fatal` (a fixed message by `write(2)`, then `abort`). The
    /// implicit slice-index checks and debug-build overflow checks that
    /// remain on this path cannot fire: `p` is below `reg_pages` (the
    /// caller checked [`contains`](Self::contains)) and below `npages`
    /// where it indexes `states` and `srcs`; the histogram clamps its
    /// bucket. In SIGBUS mode it returns only once the page is mapped.
    ///
    /// `tid` is the faulting thread's kernel id (the caller in SIGBUS
    /// mode, the event's in handler-thread mode): its stall is recorded
    /// in that mutator's counters (`HeapStats::threads`).
    pub fn resolve_fault(&self, addr: usize, tid: Option<i32>) {
        self.resolve_fault_after(addr, tid, Duration::ZERO)
    }

    /// [`resolve_fault`](Self::resolve_fault) for a fault that had
    /// already waited `queued` before its resolver started on it (the
    /// handler thread's wait for a CPU: see `fault::serve`); the stall
    /// counted is that plus the resolution.
    pub(crate) fn resolve_fault_after(&self, addr: usize, tid: Option<i32>, queued: Duration) {
        let t0 = Instant::now();
        let p = (addr - self.space_start) / PAGE_SIZE;
        let page_addr = self.space_start + p * PAGE_SIZE;
        // A page with live data (compaction work), or a zero-fill.
        let mut compaction = false;
        if p >= self.moving_pages {
            // The arena: a live object's page comes back with its
            // references rewritten; any other page is zero-filled (a free
            // range, or an object allocated since the flip), one page only
            // so that no live object's page is filled by mistake.
            match self.arena.index_of(page_addr) {
                Some(i) => {
                    self.resolve_page(self.npages + i, page_addr);
                    compaction = true;
                }
                None => self.zero_fill_page(page_addr),
            }
        } else if self.is_resident_black(p) {
            // A page of a black block the flip left in place that was
            // missing then (an unused TLAB tail): it reads as zeros, as it
            // would have unregistered.
            self.zero_fill_page(page_addr);
        } else if self.is_allocation_region(p) {
            // Above the compacted data: the allocation region. Fill a run
            // of pages up to the next run boundary (pages already present
            // are skipped as EEXIST), since TLABs are handed out upwards;
            // in the hole, not into the black block above it.
            let limit = match p < self.black_first {
                true => self.black_first,
                false => self.moving_pages,
            };
            let end = ((p / ZERO_FILL_PAGES + 1) * ZERO_FILL_PAGES).min(limit);
            let n = end - p;
            // By COPY: a MOVE's TLB-flush IPI would be the faulting
            // thread's own wait, for at most ZERO_FILL_PAGES pages. By MOVE
            // from recycled pages only when every run is to be moved
            // (`min_move_run` 1; see `DEFAULT_MIN_MOVE_RUN`).
            let recycled = match self.install {
                InstallMode::Move if self.min_move_run <= 1 => {
                    self.zero_fill_recycled(page_addr, n)
                }
                _ => 0,
            };
            let done = if recycled > 0 {
                self.counters
                    .pages_zero_recycled
                    .fetch_add(recycled, Ordering::Relaxed);
                recycled
            } else {
                self.copy_pages_until(
                    page_addr,
                    ZEROS.0.as_ptr() as usize,
                    n * PAGE_SIZE,
                    false,
                    true,
                )
            };
            self.counters
                .pages_zero_filled
                .fetch_add(done, Ordering::Relaxed);
        } else {
            self.resolve_page(p, page_addr);
            compaction = true;
        }
        let stall = t0.elapsed() + queued;
        if !compaction {
            self.counters
                .zero_fill_stall_ns
                .fetch_add(stall.as_nanos() as u64, Ordering::Relaxed);
        }
        self.stalls.record(stall);
        self.attribute(tid, page_addr, stall);
    }

    /// Installs a zero page at `page_addr` (one page only: nothing around
    /// it is known to be free), unless one is there already. Fault path.
    fn zero_fill_page(&self, page_addr: usize) {
        let done =
            self.copy_pages_until(page_addr, ZEROS.0.as_ptr() as usize, PAGE_SIZE, false, true);
        self.counters
            .pages_zero_filled
            .fetch_add(done, Ordering::Relaxed);
    }

    /// The faults each thread took during this cycle, longest summed stall
    /// first (threads without faults left out).
    pub(crate) fn fault_threads(&self) -> Vec<crate::stats::CycleThreadFaults> {
        let mut v: Vec<_> = self
            .threads
            .iter()
            .zip(&self.threads_before)
            .filter_map(|((_, m), &(n0, ns0))| {
                let (n, ns) = m.counters.faults.totals();
                (n > n0).then(|| crate::stats::CycleThreadFaults {
                    thread: m.label().to_string(),
                    faults: n - n0,
                    stall: Duration::from_nanos(ns.saturating_sub(ns0)),
                })
            })
            .collect();
        v.sort_by_key(|t| std::cmp::Reverse(t.stall));
        v
    }

    /// Records a fault's stall in the faulting thread's counters.
    /// Async-signal-safe: a binary search of an immutable vector, atomics.
    fn attribute(&self, tid: Option<i32>, page: usize, stall: Duration) {
        let found = tid.and_then(|tid| self.threads.binary_search_by_key(&tid, |&(t, _)| t).ok());
        match found {
            Some(i) => self.threads[i]
                .1
                .counters
                .faults
                .record(page, stall, self.cycle),
            None => {
                self.counters
                    .faults_unattributed
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes up to `n` free from-space pages from the recycler and zeroes
    /// them: `(first, k)`, the pages `[first, first + k)`, now the caller's
    /// alone. Lock-free and async-signal-safe (the fault path uses it).
    fn take_zeroed(&self, n: usize) -> (usize, usize) {
        let (first, k) = self.free.take_up_to(n);
        for i in 0..k {
            // SAFETY: the recycler handed from-space pages [first, first+k)
            // to this thread alone: no compaction reads them any more and no
            // other thread writes them.
            unsafe { crate::mapping::from_space_page(self.from_start, (first + i) * PAGE_SIZE) }
                .fill(0);
        }
        (first, k)
    }

    /// An allocation-region fault in MOVE mode: takes up to `n` free
    /// from-space pages from the recycler, zeroes them and moves them to
    /// `dst` with one `UFFDIO_MOVE`, so the allocation region costs no page
    /// allocation either. Returns the pages installed; 0 if none were free
    /// and the caller zero-fills with COPY. Lock-free: the free range is
    /// one atomic word ([`FreeRange`]).
    ///
    /// Taking pages here can leave a GC block short of recycled pages (it
    /// then copies instead), but never costs more page allocations than
    /// zero-filling would: every page taken is one the allocation region
    /// does not allocate.
    fn zero_fill_recycled(&self, dst: usize, n: usize) -> usize {
        let (first, k) = self.take_zeroed(n);
        let (src, len) = (self.from_start + first * PAGE_SIZE, k * PAGE_SIZE);
        let mut off = 0;
        while off < len {
            self.counters.move_ioctls.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the destination is a run of registered allocation-region
            // pages; only a mutator's heap-word `&AtomicU64` blocked on the
            // fault can point into a missing one (allowed, see the uffd module
            // docs) and present ones fail with EEXIST. The source pages were
            // just handed to this thread alone by the recycler (see above).
            let r = unsafe {
                self.uffd
                    .move_pages(dst + off, src + off, len - off, self.move_mode())
            };
            match r {
                Ok(()) => off = len,
                Err(OpError { done, error }) => {
                    off += done;
                    if error == UffdError::Again {
                        self.counters.eagain_retries.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    // EEXIST: a neighbour filled the rest of the run. Anything
                    // else: the caller zero-fills by COPY. The pages not moved
                    // stay in the from-space and are released at the end.
                    break;
                }
            }
        }
        off / PAGE_SIZE
    }

    /// After every to-space page is mapped (MOVE mode): moves the
    /// recycler's remaining free pages, zeroed, into the allocation region's
    /// missing pages from `start` (the first page above the mutators'
    /// allocation top, or above their cursor in the hole: the pages below
    /// it were handed out and mostly touched already) up to page `end`
    /// (exclusive; at most the hole's end when `start` is in the hole). The mutators'
    /// allocations until the next cycle then take no page fault: the
    /// kernel's zero-fill fault (a page allocation, a memcg charge, an LRU
    /// insertion) was a quarter of binary-trees' time under concurrent
    /// MOVE, and those pages would otherwise be released here. Pages
    /// already present (a mutator faulted them in meanwhile) are skipped
    /// (`EEXIST`, counted in `eexist`); any other error (`EBUSY`) ends the
    /// prefill, the pages not moved being released with the rest of the
    /// from-space. Runs of [`PREFILL_RUN_PAGES`], yielding the CPU between
    /// them. Returns the pages moved in.
    pub(crate) fn prefill_allocation(&self, start: usize, end: usize) -> usize {
        if self.install != InstallMode::Move {
            return 0;
        }
        // The hole's pages (not past it, into the black block), or those
        // above the live pages.
        let (mut p, end) = match start >= self.old_pages && start < self.black_first {
            true => (start, end.min(self.black_first)),
            false => (start.max(self.npages), end.min(self.moving_pages)),
        };
        let mut moved = 0;
        let mut resident = Vec::with_capacity(PREFILL_RUN_PAGES);
        'runs: while p < end {
            // Give the CPU to a mutator that this thread displaced (the
            // scheduler may have woken it on a mutator's CPU; a mutator
            // preempted in the middle of a fault waited a whole time slice,
            // 2-4 ms): one run costs ~30 µs.
            std::thread::yield_now();
            let (first, k) = self.free.take_up_to((end - p).min(PREFILL_RUN_PAGES));
            if k == 0 {
                break;
            }
            // Only pages that hold memory: zeroing a missing from-space page
            // (the untouched rest of the last cycle's hole) would allocate
            // it; the missing ones are left out (released with the rest).
            resident.resize(k, 0);
            if crate::mapping::residency(self.from_start + first * PAGE_SIZE, &mut resident)
                .is_err()
            {
                break;
            }
            let mut i = 0;
            while i < k && p < end {
                if resident[i] & 1 == 0 {
                    i += 1;
                    continue;
                }
                let mut j = i + 1;
                while j < k && resident[j] & 1 != 0 {
                    j += 1;
                }
                for q in first + i..first + j {
                    // SAFETY: the recycler handed these from-space pages to
                    // this thread alone (see `take_zeroed`).
                    unsafe { crate::mapping::from_space_page(self.from_start, q * PAGE_SIZE) }
                        .fill(0);
                }
                if !self.prefill_run(&mut p, end, first + i, j - i, &mut moved) {
                    break 'runs;
                }
                i = j;
            }
        }
        self.counters
            .pages_prefilled
            .fetch_add(moved, Ordering::Relaxed);
        moved
    }

    /// Moves the `k` zeroed from-space pages from `src` into the allocation
    /// region from page `*p` (up to `end`), skipping present pages; adds
    /// the pages moved to `moved`. `false` if an error ends the prefill.
    fn prefill_run(
        &self,
        p: &mut usize,
        end: usize,
        src: usize,
        k: usize,
        moved: &mut usize,
    ) -> bool {
        let (mut src, mut left) = (src, k);
        while left > 0 && *p < end {
            let n = left.min(end - *p);
            let r = self.move_once(
                self.space_start + *p * PAGE_SIZE,
                self.from_start + src * PAGE_SIZE,
                n * PAGE_SIZE,
            );
            let (done, error) = match r {
                Ok(()) => (n, None),
                Err(OpError { done, error }) => (done / PAGE_SIZE, Some(error)),
            };
            (*moved, *p, src, left) = (*moved + done, *p + done, src + done, left - done);
            match error {
                None => {}
                Some(UffdError::Again) => {
                    self.counters.eagain_retries.fetch_add(1, Ordering::Relaxed);
                }
                // A present page: skip it; the source page is kept for
                // the next one.
                Some(UffdError::Exists) => {
                    self.counters.eexist.fetch_add(1, Ordering::Relaxed);
                    *p += 1;
                }
                Some(_) => return false,
            }
        }
        true
    }

    /// Makes to-space page `p` present: compacts it if nobody has, installs
    /// it if the GC compacted it but has not installed it yet, and otherwise
    /// waits (briefly: one page's compaction or one ioctl) for whoever owns
    /// it. Never waits for a whole GC batch.
    fn resolve_page(&self, p: usize, page_addr: usize) {
        if p < self.kept_pages || self.is_resident_black(p) {
            // Never moved out: present all along (a fault cannot name it;
            // nothing to do).
            return;
        }
        let mut round = 0u32;
        loop {
            match self.states.get(p) {
                PageState::Mapped => {
                    if self.fault_mode == FaultMode::HandlerThread {
                        let _ = self.uffd.wake(page_addr, PAGE_SIZE);
                    }
                    break;
                }
                PageState::Unprocessed => {
                    if self.states.claim(p, Claimant::Mutator) {
                        if self.in_place(p) {
                            // A dense-prefix or black-block page: fixed in
                            // its from-space page and copied from there (a
                            // MOVE would take that page away from the fixers
                            // of the pages after it, which read the header of
                            // an object that starts here; see `prefix`).
                            let src = self.fix_in_place(p);
                            self.states.mapping(p);
                            self.install_resolved(p, page_addr, src, true);
                            return;
                        }
                        if p >= self.npages {
                            // An arena page: fixed in its from-space page
                            // and copied from there.
                            let src = self.fix_arena_page(p - self.npages);
                            self.counters.arena_pages.fetch_add(1, Ordering::Relaxed);
                            self.states.mapping(p);
                            self.install_resolved(p, page_addr, src, true);
                            return;
                        }
                        let mut buf = PageBuf([0; PAGE_SIZE]);
                        self.compactor().compact_page(p, &mut buf.0);
                        self.states.mapping(p);
                        self.install_resolved(p, page_addr, buf.0.as_ptr() as usize, true);
                        return;
                    }
                }
                PageState::Compacted => {
                    // The GC compacted it into its buffer; install it from
                    // there now instead of waiting for the batch's ioctl.
                    if self.states.take_compacted(p) {
                        let src = self.srcs[p].load(Ordering::Acquire);
                        self.install_resolved(p, page_addr, src, false);
                        return;
                    }
                }
                PageState::GcClaimed | PageState::MutatorClaimed | PageState::Mapping => {
                    if self.fault_mode == FaultMode::HandlerThread
                        && self.states.get(p) == PageState::Mapping
                    {
                        // The installing ioctl wakes the faulting thread.
                        break;
                    }
                    round += 1;
                    if round < 64 {
                        std::hint::spin_loop();
                    } else if round < 72 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(5));
                    }
                }
            }
        }
        self.counters.faults_waited.fetch_add(1, Ordering::Relaxed);
    }

    /// The end of a resolved fault: page `p` (now `Mapping`, owned by the
    /// caller) is installed by COPY from `src` and marked `Mapped`.
    fn install_resolved(&self, p: usize, page_addr: usize, src: usize, inject: bool) {
        let n = self.copy_pages(page_addr, src, PAGE_SIZE, inject);
        self.counters.pages_copied.fetch_add(n, Ordering::Relaxed);
        self.states.mapped(p);
        self.counters
            .faults_resolved
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Installs `len` bytes at `dst` by COPY from `src`, finishing partial
    /// copies and treating already-present pages as done. `inject` allows
    /// the test-only EEXIST injection on this path. Returns the number of
    /// pages this call installed (the caller counts them).
    fn copy_pages(&self, dst: usize, src: usize, len: usize, inject: bool) -> usize {
        self.copy_pages_until(dst, src, len, inject, false)
    }

    /// [`copy_pages`](Self::copy_pages); with `stop_at_existing` it returns
    /// at the first page already present (zero-fill runs: the rest was most
    /// likely filled by the same neighbour).
    fn copy_pages_until(
        &self,
        dst: usize,
        src: usize,
        len: usize,
        inject: bool,
        stop_at_existing: bool,
    ) -> usize {
        if inject && self.should_inject(self.injection.exists_every) {
            // A racing resolver installed identical bytes first.
            // SAFETY: as for the COPY below.
            let _ = unsafe { self.uffd.copy(dst, src, PAGE_SIZE, self.copy_mode()) };
        }
        let mut off = 0;
        let mut installed = 0;
        let mut failures = 0;
        while off < len {
            self.counters.copy_ioctls.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the destination is registered to-space pages whose
            // installation the caller owns (state `Mapping`, or taken out of
            // `Compacted`) or an allocation-region zero-fill run. Only a
            // mutator's heap-word `&AtomicU64` blocked on the fault can
            // point into a missing page (allowed, see the uffd module docs);
            // present pages are left alone (EEXIST). The source is the static `ZEROS`, the
            // resolver's stack buffer, or the compaction buffer/recycled
            // from-space page the page was compacted into, which its GC
            // thread leaves untouched until the page is `Mapped`
            // (`wait_mapped`): readable and unwritten during the ioctl.
            let r = unsafe {
                self.uffd
                    .copy(dst + off, src + off, len - off, self.copy_mode())
            };
            match r {
                Ok(()) => return installed + (len - off) / PAGE_SIZE,
                Err(OpError { done, error }) => {
                    installed += done / PAGE_SIZE;
                    off += done;
                    match error {
                        UffdError::Again => {
                            self.counters.eagain_retries.fetch_add(1, Ordering::Relaxed);
                        }
                        UffdError::Exists => {
                            self.counters.eexist.fetch_add(1, Ordering::Relaxed);
                            // Make sure nobody stays asleep on it.
                            let _ = self.uffd.wake(dst + off, PAGE_SIZE);
                            if stop_at_existing {
                                return installed;
                            }
                            off += PAGE_SIZE;
                        }
                        UffdError::Os { errno, .. }
                            if errno == libc::ENOENT || errno == libc::EINVAL =>
                        {
                            // The range is not registered any more: the cycle
                            // ended (every compacted page was mapped before the
                            // unregister), so this was an allocation-region
                            // fault racing with the end; the retried access is
                            // served by the kernel.
                            return installed;
                        }
                        _ => {
                            failures += 1;
                            if failures > 100 {
                                // Runs on the fault path: no formatting.
                                fatal::fatal(
                                    "UFFDIO_COPY keeps failing: a registered page cannot be installed",
                                );
                            }
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                }
            }
        }
        installed
    }

    fn should_inject(&self, every: u32) -> bool {
        every != 0 && self.inject_n.fetch_add(1, Ordering::Relaxed) % every == every - 1
    }

    /// One MOVE ioctl, with test injection.
    fn move_once(&self, dst: usize, src: usize, len: usize) -> Result<(), OpError> {
        let inj = self.injection;
        if inj != Injection::default() {
            let n = self.inject_n.fetch_add(1, Ordering::Relaxed) + 1;
            let hit = |every: u32| every != 0 && n % every == 0;
            if hit(inj.busy_every) {
                return Err(OpError {
                    done: 0,
                    error: UffdError::Busy,
                });
            }
            if hit(inj.again_every) && len > PAGE_SIZE {
                let half = len / 2 / PAGE_SIZE * PAGE_SIZE;
                self.counters.move_ioctls.fetch_add(1, Ordering::Relaxed);
                // SAFETY: as for the MOVE below (a prefix of the same ranges).
                let r = unsafe { self.uffd.move_pages(dst, src, half, self.move_mode()) };
                return match r {
                    Ok(()) => Err(OpError {
                        done: half,
                        error: UffdError::Again,
                    }),
                    Err(e) => Err(e),
                };
            }
            if hit(inj.exists_every) {
                // SAFETY: as for the MOVE below; the source page is only read.
                let _ = unsafe { self.uffd.copy(dst, src, PAGE_SIZE, self.copy_mode()) };
            }
        }
        self.counters.move_ioctls.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the callers pass registered destination pages that are
        // missing or present (EEXIST, nothing replaced): `move_pages` from
        // `install_runs` to-space pages this thread took out of `Compacted`,
        // `prefill_allocation` allocation-region pages (at most a mutator's
        // heap-word `&AtomicU64` blocked on the fault points into a missing
        // one, which the uffd module docs allow); and recycled from-space
        // pages that the recycler handed to this thread alone and nobody
        // reads any more (compacted into, or zeroed).
        unsafe { self.uffd.move_pages(dst, src, len, self.move_mode()) }
    }

    /// Installs `len` bytes at `dst` by MOVE from the recycled pages at
    /// `src`, handling every error as described in the module docs.
    fn move_pages(&self, dst: usize, src: usize, len: usize) {
        let mut off = 0;
        while off < len {
            match self.move_once(dst + off, src + off, len - off) {
                Ok(()) => {
                    self.counters
                        .pages_moved
                        .fetch_add((len - off) / PAGE_SIZE, Ordering::Relaxed);
                    return;
                }
                Err(OpError { done, error }) => {
                    self.counters
                        .pages_moved
                        .fetch_add(done / PAGE_SIZE, Ordering::Relaxed);
                    off += done;
                    match error {
                        UffdError::Again => {
                            self.counters.eagain_retries.fetch_add(1, Ordering::Relaxed);
                        }
                        UffdError::Busy => {
                            self.counters
                                .ebusy_fallbacks
                                .fetch_add(1, Ordering::Relaxed);
                            let n = self.copy_pages(dst + off, src + off, PAGE_SIZE, false);
                            self.counters.pages_copied.fetch_add(n, Ordering::Relaxed);
                            off += PAGE_SIZE;
                        }
                        UffdError::Exists => {
                            self.counters.eexist.fetch_add(1, Ordering::Relaxed);
                            let _ = self.uffd.wake(dst + off, PAGE_SIZE);
                            off += PAGE_SIZE;
                        }
                        other => {
                            tracing::warn!(
                                "UFFDIO_MOVE failed ({other}); copying the rest of the run"
                            );
                            let n = self.copy_pages(dst + off, src + off, len - off, false);
                            self.counters.pages_copied.fetch_add(n, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Installs `pages` (ascending `(to-space page, source address)`
    /// pairs, all `Compacted` by this thread): each run of consecutive pages
    /// whose sources are consecutive too goes in one MOVE or COPY ioctl.
    /// Pages a faulting mutator took over meanwhile are left out.
    fn install_runs(&self, pages: &[(usize, usize)], by_move: bool) {
        let mut i = 0;
        while i < pages.len() {
            if !self.states.take_compacted(pages[i].0) {
                i += 1; // a mutator installs this one
                continue;
            }
            let dst = self.page_addr(pages[i].0);
            let mut j = i + 1;
            while j < pages.len()
                && pages[j].0 == pages[j - 1].0 + 1
                && self.page_addr(pages[j].0) == dst + (j - i) * PAGE_SIZE
                && pages[j].1 == pages[j - 1].1 + PAGE_SIZE
                && self.states.take_compacted(pages[j].0)
            {
                j += 1;
            }
            let len = (j - i) * PAGE_SIZE;
            if by_move && j - i >= self.min_move_run {
                self.move_pages(dst, pages[i].1, len);
            } else {
                // COPY mode, or a run too short to be worth a MOVE's TLB
                // flush (see `DEFAULT_MIN_MOVE_RUN`): the source page stays
                // in the from-space and is released with it.
                let n = self.copy_pages(dst, pages[i].1, len, false);
                self.counters.pages_copied.fetch_add(n, Ordering::Relaxed);
                if by_move {
                    self.counters
                        .short_run_copies
                        .fetch_add(n, Ordering::Relaxed);
                }
            }
            for &(p, _) in &pages[i..j] {
                self.states.mapped(p);
            }
            i = j;
        }
    }

    /// One GC compaction thread: claims blocks from the top down until none
    /// is left. `buf` is this thread's 2 MiB buffer. Returns when every page
    /// of every block it took is mapped.
    pub(crate) fn sweep(&self, next_block: &AtomicIsize, buf: &Mapping) {
        let comp = self.compactor();
        let mut recycled_runs = Vec::with_capacity(BLOCK_PAGES);
        let mut buffered_runs = Vec::with_capacity(BLOCK_PAGES);
        loop {
            let b = next_block.fetch_sub(1, Ordering::Relaxed);
            if b < 0 {
                return;
            }
            let b = b as usize;
            let lo = self.dense_pages + b * self.block_pages;
            let hi = (lo + self.block_pages).min(self.old_pages);
            // Recycled pages are reserved for the whole block up front;
            // pages are claimed one at a time as they are compacted, so a
            // mutator faulting ahead of the sweep compacts its page itself
            // instead of waiting for the block.
            let (first_recycled, n_recycled) = match self.install {
                InstallMode::Copy => (0, 0),
                InstallMode::Move => self.take_recycled(b, hi - lo),
            };
            recycled_runs.clear();
            buffered_runs.clear();
            let mut used = 0;
            for p in lo..hi {
                if !self.states.claim(p, Claimant::Gc) {
                    continue;
                }
                let src = if used < n_recycled {
                    let off = (first_recycled + used) * PAGE_SIZE;
                    used += 1;
                    // SAFETY: from-space page `first_recycled + used` was
                    // handed to this thread alone by the recycler: it is above
                    // the watermark, so no compaction reads it any more, and
                    // no other thread writes it.
                    let dst = unsafe { crate::mapping::from_space_page(self.from_start, off) };
                    comp.compact_page(p, dst);
                    recycled_runs.push((p, self.from_start + off));
                    self.from_start + off
                } else {
                    let off = (p - lo) * PAGE_SIZE;
                    // SAFETY: `buf` is this thread's private buffer.
                    let dst = unsafe { buf.bytes_mut(off, PAGE_SIZE) };
                    comp.compact_page(p, dst);
                    buffered_runs.push((p, buf.start() + off));
                    buf.start() + off
                };
                self.srcs[p].store(src, Ordering::Release);
                self.states.compacted(p);
            }
            if self.install == InstallMode::Move {
                self.counters
                    .recycle_shortfall
                    .fetch_add(buffered_runs.len(), Ordering::Relaxed);
            }
            self.install_runs(&recycled_runs, true);
            self.install_runs(&buffered_runs, false);
            // Pages claimed by fault resolvers must be mapped before the
            // block counts as done (the watermark depends on it).
            for p in lo..hi {
                self.states.wait_mapped(p);
            }
            if self.install == InstallMode::Move {
                self.block_done(b);
            }
        }
    }

    fn take_recycled(&self, b: usize, k: usize) -> (usize, usize) {
        let mut r = self.recycler.lock().unwrap_or_else(|e| e.into_inner());
        r.in_progress[b] = true;
        loop {
            // The watermark is lowered under this lock (`block_done`), so
            // the wait below cannot miss it; fault resolvers only take.
            let free = self.free.free();
            // Wait for a higher block in progress to free pages, if any.
            let higher_busy = r.in_progress[b + 1..]
                .iter()
                .zip(&r.done[b + 1..])
                .any(|(ip, d)| *ip && !*d);
            if free >= k || !higher_busy {
                drop(r);
                return self.free.take_up_to(k);
            }
            r = self.recycler_cv.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn block_done(&self, b: usize) {
        let mut r = self.recycler.lock().unwrap_or_else(|e| e.into_inner());
        r.done[b] = true;
        while r.lowest_done > 0 && r.done[r.lowest_done - 1] {
            r.lowest_done -= 1;
        }
        if r.lowest_done < r.done.len() {
            let w = if r.lowest_done == 0 {
                self.dense_pages
            } else {
                let first = self.pages[r.lowest_done * self.block_pages].first_word;
                first / PAGE_WORDS + 1
            };
            self.free.lower_watermark(w);
        }
        // (Otherwise the top block is not done yet: nothing new is free.)
        drop(r);
        self.recycler_cv.notify_all();
    }

    /// Number of blocks the GC threads sweep (above the dense prefix).
    pub(crate) fn nblocks(&self) -> usize {
        (self.old_pages - self.dense_pages).div_ceil(self.block_pages)
    }

    /// The registered range.
    pub(crate) fn registered(&self) -> (usize, usize) {
        (self.space_start, self.reg_pages * PAGE_SIZE)
    }

    /// Bytes of the from-space that held the old used range.
    pub(crate) fn used_len(&self) -> usize {
        self.used_pages * PAGE_SIZE
    }

    /// The userfaultfd.
    pub(crate) fn uffd(&self) -> &Uffd {
        &self.uffd
    }

    /// The fault mode.
    pub fn fault_mode(&self) -> FaultMode {
        self.fault_mode
    }

    /// Takes the metadata back at the end of the cycle.
    pub(crate) fn into_meta(self) -> Meta {
        (self.live, self.marks, self.offsets, self.pages, self.starts)
    }

    /// Takes the metadata and the page tables back at the end of the
    /// cycle; the states are reset for the next one.
    pub(crate) fn into_parts(self) -> (Meta, PageTables) {
        let mut states = self.states;
        states.reset();
        (
            (self.live, self.marks, self.offsets, self.pages, self.starts),
            (states, self.srcs),
        )
    }
}

/// Hands out runs of up to [`BLOCK_PAGES`] indexes below `n` from the
/// shared cursor `next` (every GC thread calls this with the same cursor)
/// to `f`, until none is left.
pub(crate) fn take_runs(next: &AtomicUsize, n: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
    loop {
        let lo = next.fetch_add(BLOCK_PAGES, Ordering::Relaxed);
        if lo >= n {
            return;
        }
        f(lo..(lo + BLOCK_PAGES).min(n));
    }
}

fn last_live_word(live: &[u64], end_words: usize) -> Option<usize> {
    let mut c = end_words.div_ceil(64);
    while c > 0 {
        c -= 1;
        if live[c] != 0 {
            return Some(c * 64 + 63 - live[c].leading_zeros() as usize);
        }
    }
    None
}

#[cfg(test)]
mod block_tests {
    use super::*;

    #[test]
    fn block_size_keeps_sixteen_blocks_between_the_bounds() {
        assert_eq!(block_pages_for(1), MIN_BLOCK_PAGES);
        assert_eq!(block_pages_for(400), MIN_BLOCK_PAGES);
        assert_eq!(block_pages_for(16 * 64), 64);
        assert_eq!(block_pages_for(16 * 64 + 1), 64);
        assert_eq!(block_pages_for(16 * 512), BLOCK_PAGES);
        assert_eq!(block_pages_for(1 << 30), BLOCK_PAGES);
        for n in [1, 100, 1000, 5000, 9000, 100_000] {
            let b = block_pages_for(n);
            assert!(b.is_power_of_two() && (MIN_BLOCK_PAGES..=BLOCK_PAGES).contains(&b));
            assert!(b == MIN_BLOCK_PAGES || n.div_ceil(b) >= 16);
        }
    }
}

/// A cycle over `pages` pages at `space` (registered by the caller) with
/// from-space `from`, no live data: every page is allocation region.
#[cfg(test)]
pub(crate) fn test_cycle(
    uffd: Arc<Uffd>,
    space: &Mapping,
    from: &Mapping,
    pages: usize,
) -> CycleShared {
    CycleShared::new(test_setup(uffd, space, from, pages))
}

/// The setup of [`test_cycle`], to adjust before building the cycle.
#[cfg(test)]
pub(crate) fn test_setup(
    uffd: Arc<Uffd>,
    space: &Mapping,
    from: &Mapping,
    pages: usize,
) -> CycleSetup {
    use crate::mapping::WordMap;
    CycleSetup {
        live: FrozenWordMap::freeze(WordMap::new(pages * PAGE_WORDS).unwrap()),
        marks: FrozenWordMap::freeze(WordMap::new(pages * PAGE_WORDS).unwrap()),
        offsets: U32Map::new(pages * PAGE_WORDS / 64 + 1).unwrap(),
        pages: Vec::new(),
        starts: None,
        old_dirty: None,
        cards: None,
        end_words: 0,
        black_end_words: 0,
        black_resident: false,
        dirty: Arc::default(),
        tables: None,
        total_words: 0,
        dense_words: 0,
        kept_pages: 0,
        clean: Vec::new(),
        boundary_header: 0,
        space_start: space.start(),
        from_start: from.start(),
        moving_pages: pages,
        arena_offset: pages * PAGE_SIZE,
        arena: arena::ArenaPages::default(),
        arena_used: 0,
        reg_pages: pages,
        used_pages: pages,
        uffd,
        install: InstallMode::Move,
        min_move_run: 1,
        fault_mode: FaultMode::HandlerThread,
        injection: Injection::default(),
        cycle: 0,
        threads: Vec::new(),
    }
}

#[cfg(test)]
mod recycler_tests {
    use super::*;
    use crate::mapping::Prot;
    use crate::uffd::{Features, OpenOptions, RegisterMode};

    #[test]
    fn free_range_takes_from_the_top_and_never_below_the_watermark() {
        let r = FreeRange::new(100, 90);
        assert_eq!(r.take_up_to(4), (96, 4));
        assert_eq!(r.take_up_to(10), (90, 6));
        assert_eq!(r.take_up_to(1), (90, 0));
        r.lower_watermark(95); // never moves up
        assert_eq!(r.get(), (90, 90));
        r.lower_watermark(80);
        assert_eq!(r.free(), 10);
        assert_eq!(r.take_up_to(3), (87, 3));
        // Concurrent takers and a watermark mover: every page handed out
        // once, none below the final watermark.
        let r = Arc::new(FreeRange::new(10_000, 5_000));
        let taken: Vec<Vec<usize>> = (0..4)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..4000 {
                        if t == 0 && i % 100 == 0 {
                            r.lower_watermark(5_000 - i);
                        }
                        let (first, n) = r.take_up_to(1 + i % 7);
                        mine.extend(first..first + n);
                    }
                    mine
                })
            })
            .map(|h| h.join().unwrap())
            .collect();
        let mut all: Vec<usize> = taken.into_iter().flatten().collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a page was handed out twice");
        let (top, wm) = r.get();
        assert!(all.iter().all(|&p| p >= wm && p < 10_000));
        assert_eq!(n + (top - wm), 10_000 - wm);
    }

    /// A userfaultfd with MOVE and a to-space and a from-space of `pages`
    /// pages; `None` (saying so) without userfaultfd.
    fn uffd_and_spaces(pages: usize) -> Option<(Arc<Uffd>, Mapping, Mapping)> {
        let uffd = match Uffd::open(&OpenOptions::new().require_features(Features::MOVE)) {
            Ok(u) => Arc::new(u),
            Err(e) => {
                eprintln!("skipped: userfaultfd with MOVE unavailable: {e}");
                return None;
            }
        };
        let map = || Mapping::new(pages * PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite).unwrap();
        Some((uffd, map(), map()))
    }

    /// The fault path's zero-fill takes recycled pages even while a GC
    /// thread holds the recycler's lock (it used to `try_lock` it from the
    /// signal handler and give up).
    #[test]
    fn zero_fill_takes_recycled_pages_while_the_gc_holds_its_lock() {
        let pages = 64;
        let Some((uffd, space, from)) = uffd_and_spaces(pages) else {
            return;
        };
        uffd.register(space.start(), space.len(), RegisterMode::MISSING)
            .unwrap();
        let shared = test_cycle(uffd.clone(), &space, &from, pages);
        // Dirty the from-space: the zero-fill must zero what it recycles.
        for p in 0..pages {
            // SAFETY: `from` is this test's own mapping.
            unsafe { crate::mapping::from_space_page(from.start(), p * PAGE_SIZE) }.fill(0xAB);
        }
        let gc_lock = shared.recycler.lock().unwrap();
        let got = shared.zero_fill_recycled(space.start(), 4);
        drop(gc_lock);
        assert_eq!(got, 4, "no recycled page taken while the GC held its lock");
        // SAFETY: the four pages were just installed; reading them.
        let bytes =
            unsafe { std::slice::from_raw_parts(space.start() as *const u8, 4 * PAGE_SIZE) };
        assert!(bytes.iter().all(|&b| b == 0));
        uffd.unregister(space.start(), space.len()).unwrap();
    }

    /// A fault on a page of a resident black block (one the flip left in
    /// place) that was missing at the flip, the unused rest of a TLAB, is
    /// zero-filled; before, the resolver returned at once as for a present
    /// page and the faulting thread waited forever.
    #[test]
    fn a_missing_page_of_a_resident_block_is_zero_filled() {
        let pages = 16;
        let Some((uffd, space, from)) = uffd_and_spaces(pages) else {
            return;
        };
        // A block over pages 4..8 (its top mid-page 7), resident.
        let mut setup = test_setup(uffd.clone(), &space, &from, pages);
        setup.end_words = 4 * PAGE_WORDS;
        setup.black_end_words = 7 * PAGE_WORDS + 100;
        setup.black_resident = true;
        let shared = CycleShared::new(setup);
        assert_eq!(
            shared.resident_block_bytes(),
            Some((4 * PAGE_SIZE, 4 * PAGE_SIZE))
        );
        assert_eq!(shared.black_flipped_pages(), 0);
        uffd.register(space.start(), space.len(), RegisterMode::MISSING)
            .unwrap();
        let page = |p: usize| space.start() + p * PAGE_SIZE;
        let resident = |p: usize| {
            let mut r = [0u8];
            crate::mapping::residency(page(p), &mut r).unwrap();
            r[0] & 1 != 0
        };
        assert!(!resident(6));
        shared.resolve_fault(page(6) + 24, None);
        assert!(resident(6), "the block's missing page was filled");
        assert!(!resident(5) && !resident(7), "one page only");
        // SAFETY: page 6 was just installed; reading it.
        let bytes = unsafe { std::slice::from_raw_parts(page(6) as *const u8, PAGE_SIZE) };
        assert!(bytes.iter().all(|&b| b == 0));
        uffd.unregister(space.start(), space.len()).unwrap();
    }
}
