//! The stale-reference mode ([`HeapConfig::poison_freed`](crate::HeapConfig::poison_freed),
//! or `MOVEGC_POISON=1`): memory a collection frees is poisoned with
//! `UFFDIO_POISON`, so a thread that reads it through an address kept
//! across a cycle (a raw `ObjRef` not held in a root) gets a report instead
//! of garbage or zeros.
//!
//! ```text
//!  moving space  [start ........ top | partial page | window [lo ............ hi) | fresh ...)
//!                 live objects, TLABs                 poisoned: every page freed by a cycle and
//!                                                     not handed out since; segments say which
//!                                                     cycle freed each part
//! ```
//!
//! **After each cycle** (world stopped for stop-the-world cycles; after the
//! concurrent cycle's own registration is gone for concurrent ones) the
//! pages from the new top (rounded up) to the highest address any cycle
//! freed are dropped with `MADV_DONTNEED` and poisoned: this module's own
//! userfaultfd registers the whole reservation in MISSING mode (a sub-range
//! would split the heap's VMA), poisons, and unregisters; poison markers
//! stay in the page tables after unregistering. A concurrent flip moves the
//! old markers out with the pages, so the whole window is poisoned again.
//!
//! **Allocation unpoisons** (`Poisoner::unpoison`): a block handed out
//! by the moving space's shared cursor drops the window pages it covers
//! with `MADV_DONTNEED` (a poisoned page dropped reads as zeros again) and
//! raises `lo` past them, under the window's lock, before its owner touches
//! it; the poisoner reads the top under the same lock, so a block is either
//! above the window it computes or unpoisoned after it.
//!
//! **The report.** A poisoned page raises `SIGBUS` with the same
//! `BUS_ADRERR` code as a userfaultfd fault in SIGBUS mode; the process's
//! SIGBUS handler (`concurrent::fault`) asks `Poisoner::check` first: an
//! address in the window is a stale access. What was there comes from the
//! obituaries recorded in the pause (every object of the old heap image
//! that reached into the freed range: its header, whether it was live and
//! where it moved). The report is written with `write(2)` from a stack
//! buffer (async-signal-safe), then the embedder's hook runs if there is
//! one, then the process aborts.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::concurrent::fault::SlotUse;
use crate::fork::PerProcess;
use crate::mapping::{round_up, PAGE_SIZE};
use crate::object::{load_word, Header, Kind, WORD};
use crate::uffd::{Features, OpenOptions, RegisterMode, Uffd, UffdError};

/// What a stale access found: handed to the embedder's hook
/// ([`HeapConfig::on_stale_access`](crate::HeapConfig::on_stale_access)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleAccess {
    /// The address read or written.
    pub addr: usize,
    /// The collection (its `CycleStats::cycle`) that freed the memory.
    pub freed_by: u64,
    /// The object that was there before that collection, if one was (and,
    /// for a large object freed by a concurrent cycle, if its header was
    /// readable then).
    pub object: Option<StaleObject>,
    /// `(address, bytes)` of the freed large object the address lies in,
    /// if it lies in one (its memory is kept mapped and poisoned).
    pub large: Option<(usize, usize)>,
    /// The faulting thread's kernel id.
    pub tid: i32,
}

/// An object of the heap as it was before the collection that freed its
/// memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleObject {
    /// Its address then (the stale address points into it).
    pub addr: usize,
    /// Its header (kind, tag, size).
    pub header: Header,
    /// Where it moved, if it was live (the address the access should have
    /// used); `None` if it was garbage.
    pub moved_to: Option<usize>,
}

/// The embedder's stale-access hook: called in the `SIGBUS` handler of the
/// faulting thread, after the report is printed and before the process
/// aborts. It must only do async-signal-safe things (no allocation, no
/// lock, no panic): write to a descriptor, flush a crash log, `_exit`.
pub type StaleHook = fn(&StaleAccess);

/// One object of an old heap image whose memory a cycle freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Obituary {
    /// Its address before the cycle.
    pub(crate) addr: usize,
    /// Its header word.
    pub(crate) header: u64,
    /// Where it moved (0: it was garbage).
    pub(crate) moved_to: usize,
    /// The cycle that freed its memory.
    pub(crate) cycle: u64,
}

impl Obituary {
    fn end(&self) -> usize {
        self.addr + Header::from_raw(self.header).map_or(WORD, |h| h.size())
    }
}

/// Most records of garbage objects one cycle keeps (8 MiB of records):
/// recording every freed object would cost as much memory as the objects
/// did, and a pause walk as long as the freed range. Live objects above
/// the new top are always recorded.
pub const DEAD_RECORDS: usize = 1 << 18;

/// The heap as it was before a cycle moved anything: where it starts,
/// its mark bitmap (a bit per marked object start, words from `start`)
/// and where the black block begins (words; everything from there on is
/// live: allocated during marking).
pub(crate) struct OldImage<'a> {
    pub(crate) start: usize,
    /// The first word that may hold an object (stress mode: below it lies
    /// a poisoned old image).
    pub(crate) base: usize,
    pub(crate) marks: &'a [u64],
    pub(crate) black_start: usize,
}

impl OldImage<'_> {
    fn word(&self, addr: usize) -> usize {
        (addr - self.start) / WORD
    }

    fn is_live(&self, addr: usize) -> bool {
        let w = self.word(addr);
        w >= self.black_start || crate::forwarding::is_live(self.marks, w)
    }

    /// The first object boundary at or below word `lo`: the last marked
    /// object start there, the black block's start if `lo` is in it, or 0.
    fn boundary_below(&self, lo: usize) -> usize {
        if lo >= self.black_start {
            return self.black_start;
        }
        let (mut c, bit) = (lo / 64, lo % 64);
        let mut m = self.marks[c] & (u64::MAX >> (63 - bit));
        loop {
            if m != 0 {
                return c * 64 + 63 - m.leading_zeros() as usize;
            }
            if c == 0 {
                return 0;
            }
            c -= 1;
            m = self.marks[c];
        }
    }

    /// The next marked object start at or after word `w`, below `end`.
    fn next_mark(&self, w: usize, end: usize) -> Option<usize> {
        crate::forwarding::next_live(self.marks, w, end)
    }
}

/// Records the objects of the old heap image that reach into `[lo, hi)`
/// (addresses): every live one, and garbage ones from `lo` up until
/// `dead_cap` ([`DEAD_RECORDS`] in a cycle) are kept. A word that is no
/// header ends a walk. `moved_to` is 1 for a live object here and filled
/// in by [`Poisoner::forward`].
///
/// The image must be readable and unchanging for the duration (world
/// stopped, before compaction).
pub(crate) fn obituaries(
    img: &OldImage<'_>,
    lo: usize,
    hi: usize,
    cycle: u64,
    dead_cap: usize,
) -> Vec<Obituary> {
    let mut out = Vec::new();
    let mut dead = 0;
    let record = |out: &mut Vec<Obituary>, a: usize, raw: u64, live: bool| {
        out.push(Obituary {
            addr: a,
            header: raw,
            moved_to: live as usize,
            cycle,
        })
    };
    // Walk everything while garbage is still recorded.
    let mut a = img.start + img.boundary_below(img.word(lo)).max(img.base) * WORD;
    while let Some((at, raw, h)) = object_from(a, hi) {
        let end = at + h.size();
        if end > lo {
            let live = img.is_live(at);
            if !live && dead == dead_cap {
                a = at;
                break;
            }
            dead += !live as usize;
            record(&mut out, at, raw, live);
        }
        a = end;
    }
    // Then the live objects only: by the mark bitmap below the black
    // block, by a walk in it (all live).
    let black = img.start + img.black_start * WORD;
    let mut w = img.word(a.min(black));
    while let Some(s) = img.next_mark(w, img.word(hi.min(black))) {
        let at = img.start + s * WORD;
        let raw = load_word(at);
        if Header::from_raw(raw).is_some() {
            record(&mut out, at, raw, true);
        }
        w = s + 1;
    }
    let mut a = a.max(black);
    while let Some((at, raw, h)) = object_from(a, hi) {
        record(&mut out, at, raw, true);
        a = at + h.size();
    }
    out
}

/// The first object at or after `a` and below `hi` of an old heap image
/// (zero words are unused TLAB space): its address, raw header and
/// header; `None` at `hi` or at a word that is no header.
fn object_from(mut a: usize, hi: usize) -> Option<(usize, u64, Header)> {
    while a < hi {
        let raw = load_word(a);
        if raw != 0 {
            return Header::from_raw(raw).map(|h| (a, raw, h));
        }
        a += WORD;
    }
    None
}

/// Most freed large objects remembered at once (the oldest is forgotten,
/// and its own mapping unmapped, when a new one needs the slot).
const GRAVES: usize = 1024;

/// Most bytes of address space kept by freed large objects that had their
/// own mapping (the oldest are unmapped beyond it): 1 GiB.
const TOMB_BYTES: usize = 1 << 30;

/// A freed large object, as the handler reads it: set up while `state`
/// is 0, then published by storing 1 (`Release`); forgotten by storing 0.
#[derive(Debug, Default)]
struct Grave {
    state: AtomicUsize,
    addr: AtomicUsize,
    len: AtomicUsize,
    /// Its header word, 0 if it was not readable when it was freed.
    header: AtomicU64,
    cycle: AtomicU64,
}

/// A freed large object with its own mapping, kept (poisoned) so that a
/// stale read faults instead of hitting whatever the address space holds
/// next.
struct Tomb {
    grave: usize,
    map: crate::mapping::Mapping,
}

/// The handler's view: immutable, replaced whole after each cycle.
#[derive(Debug, Default)]
struct Record {
    /// `(first address, cycle)` of each part of the window, ascending: an
    /// address belongs to the last part starting at or below it.
    segments: Vec<(usize, u64)>,
    /// What was in the window, ascending by address.
    obits: Vec<Obituary>,
}

impl Record {
    fn freed_by(&self, addr: usize) -> u64 {
        let i = self.segments.partition_point(|s| s.0 <= addr);
        if i == 0 {
            0
        } else {
            self.segments[i - 1].1
        }
    }

    fn object(&self, addr: usize) -> Option<&Obituary> {
        let i = self.obits.partition_point(|o| o.addr <= addr);
        let o = self.obits.get(i.checked_sub(1)?)?;
        (addr < o.end()).then_some(o)
    }
}

/// The window and what the handler reads, changed under `state`'s lock.
#[derive(Default)]
struct State {
    /// The published record (owned here; the handler borrows it through
    /// `record`).
    record: Option<Box<Record>>,
    /// Next grave slot to use (round robin).
    next_grave: usize,
    /// Own mappings of freed large objects, oldest first, and their bytes.
    tombs: std::collections::VecDeque<Tomb>,
    tomb_bytes: usize,
}

/// Counts of the mode's work, for the heap's stats.
#[derive(Debug, Default)]
pub(crate) struct PoisonCounters {
    /// Pages poisoned (each cycle poisons its whole window again).
    pub(crate) poisoned: AtomicU64,
    /// Window pages dropped again as allocation reached them.
    pub(crate) unpoisoned: AtomicU64,
}

/// A heap's stale-reference mode: its own userfaultfd, the poisoned
/// window of the moving space and the record the SIGBUS handler reports
/// from.
pub(crate) struct Poisoner {
    uffd: PerProcess<Uffd>,
    /// The reservation, registered around each poisoning.
    reservation: (usize, usize),
    state: Mutex<State>,
    /// `[lo, hi)`: the poisoned window (`lo == hi`: none). Written under
    /// `state`'s lock, read by the handler.
    lo: AtomicUsize,
    hi: AtomicUsize,
    /// Stress mode: `[reservation start, low_hi)` is the old image a cycle
    /// compacted away from (0: none), poisoned until the next cycle
    /// compacts back down into it.
    low_hi: AtomicUsize,
    record: SlotUse<Record>,
    /// Freed large objects (fixed: the handler scans it without a lock);
    /// slots `[0, graves_used)` have been used.
    graves: Box<[Grave]>,
    graves_used: AtomicUsize,
    hook: Option<StaleHook>,
    pub(crate) counters: PoisonCounters,
}

impl std::fmt::Debug for Poisoner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poisoner")
            .field("lo", &self.lo)
            .field("hi", &self.hi)
            .finish_non_exhaustive()
    }
}

/// Why the stale-reference mode cannot run.
#[derive(Debug, thiserror::Error)]
pub enum PoisonError {
    /// No userfaultfd with `UFFD_FEATURE_POISON` (Linux 6.6+).
    #[error("UFFDIO_POISON is unavailable: {0}")]
    Unavailable(#[from] UffdError),
}

impl Poisoner {
    /// Opens the mode's userfaultfd for the reservation `[start, start +
    /// len)`.
    pub(crate) fn open(
        start: usize,
        len: usize,
        hook: Option<StaleHook>,
    ) -> Result<Poisoner, PoisonError> {
        let uffd = Uffd::open(&OpenOptions::new().require_features(Features::POISON))?;
        Ok(Poisoner {
            uffd: PerProcess::new(uffd),
            reservation: (start, len),
            state: Mutex::default(),
            lo: AtomicUsize::new(start),
            hi: AtomicUsize::new(start),
            low_hi: AtomicUsize::new(0),
            record: SlotUse::new(),
            graves: (0..GRAVES).map(|_| Grave::default()).collect(),
            graves_used: AtomicUsize::new(0),
            hook,
            counters: PoisonCounters::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the block ending at `end`, just claimed from the shared
    /// cursor and not touched yet, safe to use: the window pages up to its
    /// end are dropped (they read as zeros again) and the window starts
    /// above it.
    pub(crate) fn unpoison(&self, end: usize) {
        let _g = self.lock();
        let (lo, hi) = (
            self.lo.load(Ordering::Relaxed),
            self.hi.load(Ordering::Relaxed),
        );
        let end = round_up(end, PAGE_SIZE).min(hi);
        if end <= lo {
            return;
        }
        // From `lo`, not from the block's start: blocks are claimed from
        // the cursor in order but may reach here out of order, and the
        // pages of a block claimed below this one and not unpoisoned yet
        // must not stay behind the window (nobody touches a block before
        // its own call returns, so dropping them here loses nothing).
        let from = lo;
        drop_pages(from, end - from);
        self.counters
            .unpoisoned
            .fetch_add(((end - from) / PAGE_SIZE) as u64, Ordering::Relaxed);
        self.lo.store(end, Ordering::Release);
    }

    /// After cycle `cycle`: poisons from the top (read now, under the
    /// lock) to the highest address freed so far; `old_top` is where the
    /// used range ended before the cycle; `fresh` what it freed there. The
    /// heap's own registration must be gone. Returns the pages poisoned.
    pub(crate) fn after_cycle(
        &self,
        top: impl FnOnce() -> usize,
        old_top: usize,
        low: Option<usize>,
        cycle: u64,
        fresh: Vec<Obituary>,
    ) -> Result<usize, UffdError> {
        let mut st = self.lock();
        let lo = round_up(top(), PAGE_SIZE);
        let freed_end = round_up(old_top, PAGE_SIZE);
        let hi = self.hi.load(Ordering::Relaxed).max(freed_end).max(lo);
        // The parts of the old window still above the new top keep the
        // cycle that freed them; what this cycle freed comes first.
        let mut rec = Record::default();
        if freed_end > lo {
            rec.segments.push((lo, cycle));
        }
        rec.obits = fresh;
        if let Some(old) = &st.record {
            let from = freed_end.max(lo);
            for &(s, c) in &old.segments {
                rec.segments.push((s.max(from), c));
            }
            rec.segments.dedup_by(|b, a| {
                // Of entries with the same start the later one covers it.
                if a.0 == b.0 {
                    a.1 = b.1;
                    true
                } else {
                    false
                }
            });
            rec.obits
                .extend(old.obits.iter().filter(|o| o.end() > from).copied());
            rec.obits.sort_by_key(|o| o.addr);
        }
        // The window, and the freed large objects of the arena (a flip
        // moved their old markers out with their pages).
        let (rs, rl) = self.reservation;
        let mut ranges: Vec<(usize, usize)> = self
            .live_graves()
            .filter(|&(a, _)| a >= rs && a < rs + rl)
            .collect();
        if hi > lo {
            ranges.push((lo, hi - lo));
        }
        // Stress mode: the old image below the objects, all of it freed.
        if let Some(d) = low.filter(|&d| d > rs) {
            ranges.push((rs, d - rs));
            rec.segments.insert(0, (rs, cycle));
        }
        for &(a, l) in &ranges {
            drop_pages(a, l);
        }
        let done = match self.poison(&ranges) {
            Ok(n) => n,
            Err(e) => {
                // Nothing stays poisoned that the window does not cover:
                // the old window is a superset of what is dropped here,
                // and allocation drops it again.
                for &(a, l) in &ranges {
                    drop_pages(a, l);
                }
                return Err(e);
            }
        };
        // Publish: the record first, then the window it describes. The
        // old record is freed only after no handler uses it.
        self.record.unpublish();
        let rec = st.record.insert(Box::new(rec));
        // SAFETY: the record is owned by `state` and replaced only here,
        // after `unpublish` has waited for every handler using the old one.
        unsafe { self.record.publish(&**rec) };
        self.lo.store(lo, Ordering::Release);
        self.hi.store(hi, Ordering::Release);
        if let Some(d) = low {
            self.low_hi.store(d, Ordering::Release);
        }
        self.counters
            .poisoned
            .fetch_add(done as u64, Ordering::Relaxed);
        Ok(done)
    }

    /// Stress mode, before a cycle compacts back down into the old image
    /// below the objects: drops its poison (it reads as zeros).
    pub(crate) fn drop_low(&self) {
        let _st = self.lock();
        let rs = self.reservation.0;
        let hi = self.low_hi.swap(0, Ordering::AcqRel);
        if hi > rs {
            drop_pages(rs, hi - rs);
        }
    }

    /// This process's descriptor (reopened in a forked child).
    fn uffd(&self) -> Result<Arc<Uffd>, UffdError> {
        self.uffd.get(|old| {
            Uffd::open(
                &OpenOptions::new()
                    .require_features(Features::POISON)
                    .require_path(old.open_path()),
            )
        })
    }

    /// `(addr, len)` of the large objects remembered now.
    fn live_graves(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let used = self.graves_used.load(Ordering::Acquire).min(GRAVES);
        self.graves[..used]
            .iter()
            .filter(|g| g.state.load(Ordering::Acquire) == 1)
            .map(|g| {
                (
                    g.addr.load(Ordering::Relaxed),
                    g.len.load(Ordering::Relaxed),
                )
            })
    }

    /// Registers the reservation, poisons the dropped `ranges` in it,
    /// unregisters; the pages poisoned.
    fn poison(&self, ranges: &[(usize, usize)]) -> Result<usize, UffdError> {
        if ranges.is_empty() {
            return Ok(0);
        }
        let uffd = self.uffd()?;
        let (rs, rl) = self.reservation;
        uffd.register(rs, rl, RegisterMode::MISSING)?;
        let result = ranges
            .iter()
            .try_for_each(|&(a, l)| poison_range(&uffd, a, a + l));
        unregister_or_abort(&uffd, rs, rl);
        // Threads that touched a missing page of the heap while it was
        // registered here (no one serves these faults) sleep until woken.
        let _ = uffd.wake(rs, rl);
        result.map(|()| ranges.iter().map(|r| r.1 / PAGE_SIZE).sum())
    }

    /// Frees large object `obj` (`len` bytes at `addr`) in cycle `cycle`:
    /// remembers it for the report and keeps its memory poisoned. `header`
    /// is its header word if readable now. An object with its own mapping
    /// (`own`) is poisoned now and its mapping kept; an arena object is
    /// poisoned with the window after the cycle.
    pub(crate) fn bury(
        &self,
        addr: usize,
        len: usize,
        header: Option<u64>,
        cycle: u64,
        own: Option<crate::mapping::Mapping>,
    ) {
        let mut st = self.lock();
        let i = st.next_grave;
        st.next_grave = (i + 1) % GRAVES;
        let g = &self.graves[i];
        if g.state.swap(0, Ordering::AcqRel) == 1 {
            // The slot's old occupant is forgotten: its tomb is unmapped,
            // or, in the arena, its poison dropped (untracked poison would
            // fault forever with nothing to report).
            match st.tombs.iter().position(|t| t.grave == i) {
                Some(k) => {
                    let t = st.tombs.remove(k).expect("found");
                    st.tomb_bytes -= t.map.len();
                }
                None => drop_pages(
                    g.addr.load(Ordering::Relaxed),
                    g.len.load(Ordering::Relaxed),
                ),
            }
        }
        g.addr.store(addr, Ordering::Relaxed);
        g.len.store(len, Ordering::Relaxed);
        g.header.store(header.unwrap_or(0), Ordering::Relaxed);
        g.cycle.store(cycle, Ordering::Relaxed);
        if let Some(map) = own {
            if map.len() > TOMB_BYTES {
                // Too large to keep: unmapped, as without the mode.
                return;
            }
            drop_pages(map.start(), map.len());
            let poisoned = self.uffd().and_then(|u| {
                u.register(map.start(), map.len(), RegisterMode::MISSING)?;
                let r = poison_range(&u, map.start(), map.end());
                unregister_or_abort(&u, map.start(), map.len());
                r
            });
            if poisoned.is_err() {
                // Not poisoned: unmapped as without the mode.
                return;
            }
            st.tomb_bytes += map.len();
            st.tombs.push_back(Tomb { grave: i, map });
            while st.tomb_bytes > TOMB_BYTES {
                let t = st.tombs.pop_front().expect("bytes are counted");
                self.graves[t.grave].state.store(0, Ordering::Release);
                st.tomb_bytes -= t.map.len();
            }
        }
        g.state.store(1, Ordering::Release);
        self.graves_used.fetch_max(i + 1, Ordering::AcqRel);
    }

    /// Before arena pages `[addr, addr + len)` hold a new large object:
    /// forgets the freed objects there and drops their poison.
    pub(crate) fn reuse(&self, addr: usize, len: usize) {
        let _st = self.lock();
        let used = self.graves_used.load(Ordering::Acquire).min(GRAVES);
        for g in &self.graves[..used] {
            let (a, l) = (
                g.addr.load(Ordering::Relaxed),
                g.len.load(Ordering::Relaxed),
            );
            if g.state.load(Ordering::Acquire) == 1 && a < addr + len && addr < a + l {
                g.state.store(0, Ordering::Release);
                // All of it: the part the new object does not cover would
                // stay poisoned with no grave to report it.
                drop_pages(a, l);
            }
        }
        drop_pages(addr, len);
    }

    /// If `addr` is poisoned freed memory: reports the stale access, calls
    /// the hook and aborts. Otherwise returns (the fault is not a stale
    /// access). Async-signal-safe: atomics, reads of the published record,
    /// `write(2)`, `abort`.
    pub(crate) fn check(&self, addr: usize, tid: i32) {
        let (lo, hi) = (
            self.lo.load(Ordering::Acquire),
            self.hi.load(Ordering::Acquire),
        );
        let low = addr >= self.reservation.0 && addr < self.low_hi.load(Ordering::Acquire);
        if !low && (addr < lo || addr >= hi) {
            self.check_graves(addr, tid);
            return;
        }
        let user = self.record.enter();
        let rec = user.get();
        let freed_by = rec.map_or(0, |r| r.freed_by(addr));
        let object = rec.and_then(|r| r.object(addr)).and_then(|o| {
            Header::from_raw(o.header).map(|header| StaleObject {
                addr: o.addr,
                header,
                moved_to: (o.moved_to != 0).then_some(o.moved_to),
            })
        });
        self.die(StaleAccess {
            addr,
            freed_by,
            object,
            large: None,
            tid,
        })
    }

    /// As [`check`](Self::check) for the freed large objects.
    fn check_graves(&self, addr: usize, tid: i32) {
        let used = self.graves_used.load(Ordering::Acquire).min(GRAVES);
        for g in &self.graves[..used] {
            if g.state.load(Ordering::Acquire) != 1 {
                continue;
            }
            let (a, l) = (
                g.addr.load(Ordering::Relaxed),
                g.len.load(Ordering::Relaxed),
            );
            if addr < a || addr >= a + l {
                continue;
            }
            let object =
                Header::from_raw(g.header.load(Ordering::Relaxed)).map(|header| StaleObject {
                    addr: a,
                    header,
                    moved_to: None,
                });
            self.die(StaleAccess {
                addr,
                freed_by: g.cycle.load(Ordering::Relaxed),
                object,
                large: Some((a, l)),
                tid,
            });
        }
    }

    /// Reports `access`, runs the hook, aborts.
    fn die(&self, access: StaleAccess) -> ! {
        report(&access, self.hook.is_some());
        if let Some(h) = self.hook {
            h(&access);
        }
        // SAFETY: abort is async-signal-safe and never returns.
        unsafe { libc::abort() }
    }

    /// Fills in where the recorded live objects moved.
    pub(crate) fn forward(obits: &mut [Obituary], fwd: impl Fn(usize) -> usize) {
        for o in obits.iter_mut().filter(|o| o.moved_to != 0) {
            o.moved_to = fwd(o.addr);
        }
    }

    /// The window now: `(lo, hi)`.
    pub(crate) fn window(&self) -> (usize, usize) {
        let _g = self.lock();
        (
            self.lo.load(Ordering::Relaxed),
            self.hi.load(Ordering::Relaxed),
        )
    }
}

/// Unregisters `[start, start + len)` from `uffd`, or aborts: a range left
/// registered on this descriptor, which nobody reads, would block every
/// later first touch of its missing pages forever.
fn unregister_or_abort(uffd: &Uffd, start: usize, len: usize) {
    if let Err(e) = uffd.unregister(start, len) {
        crate::concurrent::fatal::abort_with(&format!(
            "unregistering the heap from the stale-reference mode's userfaultfd failed: {e}"
        ));
    }
}

/// Poisons the dropped pages `[lo, hi)`, registered with `uffd`, dropping
/// again any page a stale read populated between the drop and the poison.
fn poison_range(uffd: &Uffd, lo: usize, hi: usize) -> Result<(), UffdError> {
    let mut at = lo;
    let mut retries = 0;
    while at < hi {
        // SAFETY: `[at, hi)` is registered with `uffd` by the caller; it is
        // free memory nobody may use (above the top under the window lock,
        // or a freed large object), just dropped: poisoning loses nothing.
        match unsafe { uffd.poison(at, hi - at, false) } {
            Ok(()) => return Ok(()),
            Err(e) if e.error == UffdError::Exists && retries < 16 => {
                at += e.done;
                drop_pages(at, PAGE_SIZE);
                retries += 1;
            }
            Err(e) if e.error == UffdError::Again => at += e.done,
            Err(e) => return Err(e.error),
        }
    }
    Ok(())
}

/// `MADV_DONTNEED` on heap pages: they read as zeros again (a poison
/// marker is dropped too).
fn drop_pages(start: usize, len: usize) {
    // SAFETY: `[start, start + len)` is free memory of the heap's own
    // reservation (above the top, under the window lock): no Rust
    // reference points into it and nobody may use its contents.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
}

/// A fixed buffer for formatting in a signal handler (no allocation).
struct SigBuf {
    buf: [u8; 1024],
    len: usize,
}

impl std::fmt::Write for SigBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The report's text (also what the tests read).
pub(crate) fn describe(a: &StaleAccess, hooked: bool, out: &mut impl std::fmt::Write) {
    let _ = writeln!(
        out,
        "movegc: stale access at {:#x} (thread {}): this memory was freed by collection {} and poisoned (stale-reference mode)",
        a.addr, a.tid, a.freed_by
    );
    match a.object {
        Some(o) => {
            let h = o.header;
            let _ = match h.kind() {
                Kind::Record => write!(
                    out,
                    "movegc:   it held a record (tag {}, {} refs, {} data bytes)",
                    h.tag(),
                    h.ref_count(),
                    h.data_len()
                ),
                Kind::RefArray => write!(
                    out,
                    "movegc:   it held a reference array (tag {}, {} elements)",
                    h.tag(),
                    h.len()
                ),
                Kind::ByteArray => write!(
                    out,
                    "movegc:   it held a byte array (tag {}, {} bytes)",
                    h.tag(),
                    h.len()
                ),
            };
            let what = if a.large.is_some() {
                "; a large object,"
            } else {
                ""
            };
            let _ = write!(
                out,
                "{what} at {:#x}, {} bytes in; ",
                o.addr,
                a.addr - o.addr
            );
            let _ = match o.moved_to {
                Some(to) => writeln!(
                    out,
                    "that object was live and moved to {to:#x}: the address was kept across the collection outside a root"
                ),
                None => writeln!(
                    out,
                    "that object was garbage: unreachable from every root at that collection"
                ),
            };
        }
        None => match a.large {
            Some((at, len)) => {
                let _ = writeln!(
                    out,
                    "movegc:   it held a large object of {len} bytes at {at:#x}, {} bytes in; that object was garbage",
                    a.addr - at
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "movegc:   no recorded object there: unused allocation space, or garbage past the {DEAD_RECORDS} garbage objects a cycle records"
                );
            }
        },
    }
    let _ = writeln!(
        out,
        "movegc: aborting{}",
        if hooked {
            " after the stale-access hook"
        } else {
            ""
        }
    );
}

/// Writes the report to stderr with `write(2)`.
fn report(a: &StaleAccess, hooked: bool) {
    let mut b = SigBuf {
        buf: [0; 1024],
        len: 0,
    };
    describe(a, hooked, &mut b);
    // SAFETY: write(2) of our stack buffer to stderr; async-signal-safe.
    unsafe { libc::write(2, b.buf.as_ptr().cast(), b.len) };
}

/// Whether `MOVEGC_POISON`'s value turns the mode on (`1`, `true`, `on`,
/// or `stress`).
pub(crate) fn enabled_by_env(v: Option<&str>) -> bool {
    matches!(v.map(str::trim), Some("1" | "true" | "on" | "stress"))
}

/// Whether `MOVEGC_POISON`'s value asks for the stress mode (`stress`).
pub(crate) fn stress_by_env(v: Option<&str>) -> bool {
    v.map(str::trim) == Some("stress")
}

/// The poisoner of a heap with its registry slot (the slot first: it
/// unpublishes before the poisoner is freed).
pub(crate) struct HeapPoison {
    /// Held for its `Drop`: unpublishes the poisoner from the handler.
    pub(crate) _slot: crate::concurrent::fault::HeapSlot,
    pub(crate) poisoner: Arc<Poisoner>,
}

impl std::fmt::Debug for HeapPoison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.poisoner.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obit(addr: usize, words: usize, cycle: u64) -> Obituary {
        let h = crate::object::Layout::record(1, 0, (words - 1) * WORD)
            .unwrap()
            .header();
        Obituary {
            addr,
            header: h.raw(),
            moved_to: 0,
            cycle,
        }
    }

    /// Ten 4-word records after a zero word; objects 2 and 7 are marked.
    fn image() -> (Vec<u64>, Vec<u64>) {
        let h = crate::object::Layout::record(3, 1, 16)
            .unwrap()
            .header()
            .raw();
        let mut words = vec![0u64];
        let mut marks = vec![0u64; 1];
        for i in 0..10 {
            if i == 2 || i == 7 {
                marks[0] |= 1 << words.len();
            }
            words.extend([h, 0, 0, 0]);
        }
        (words, marks)
    }

    #[test]
    fn obituaries_keep_every_live_object_and_garbage_up_to_the_cap() {
        let (words, marks) = image();
        let start = words.as_ptr() as usize;
        let img = OldImage {
            start,
            base: 0,
            marks: &marks,
            black_start: words.len(),
        };
        let at = |i: usize| start + (1 + 4 * i) * WORD;
        let end = start + words.len() * WORD;
        // From inside object 5: objects 5..=9, 7 live.
        let all = obituaries(&img, at(5) + 8, end, 4, usize::MAX);
        assert_eq!(
            all.iter().map(|o| o.addr).collect::<Vec<_>>(),
            (5..10).map(at).collect::<Vec<_>>()
        );
        assert_eq!(all.iter().filter(|o| o.moved_to == 1).count(), 1);
        assert!(all.iter().all(|o| o.cycle == 4));
        // One garbage record: object 5, then only the live ones (7).
        let capped = obituaries(&img, at(5), end, 4, 1);
        assert_eq!(
            capped.iter().map(|o| o.addr).collect::<Vec<_>>(),
            vec![at(5), at(7)]
        );
        // A black block from object 8 on: all live, walked.
        let img = OldImage {
            black_start: 1 + 4 * 8,
            ..img
        };
        let black = obituaries(&img, at(5), end, 4, 0);
        assert_eq!(
            black.iter().map(|o| o.addr).collect::<Vec<_>>(),
            vec![at(7), at(8), at(9)]
        );
    }

    #[test]
    fn the_record_finds_the_segment_and_the_object() {
        let rec = Record {
            segments: vec![(0x1000, 3), (0x3000, 2)],
            obits: vec![obit(0x1000, 4, 3), obit(0x1040, 2, 3), obit(0x3000, 8, 2)],
        };
        assert_eq!(rec.freed_by(0x1000), 3);
        assert_eq!(rec.freed_by(0x2fff), 3);
        assert_eq!(rec.freed_by(0x3000), 2);
        assert_eq!(rec.freed_by(0xfff), 0);
        assert_eq!(rec.object(0x1018).unwrap().addr, 0x1000);
        assert!(rec.object(0x1020).is_none(), "a gap between objects");
        assert_eq!(rec.object(0x1048).unwrap().addr, 0x1040);
        assert_eq!(rec.object(0x3038).unwrap().cycle, 2);
        assert!(rec.object(0x3040).is_none());
    }

    #[test]
    fn the_report_names_the_object_and_where_it_went() {
        let h = crate::object::Layout::record(7, 2, 16).unwrap().header();
        let a = StaleAccess {
            addr: 0x7000_0010,
            freed_by: 4,
            object: Some(StaleObject {
                addr: 0x7000_0000,
                header: h,
                moved_to: Some(0x6000_0100),
            }),
            large: None,
            tid: 42,
        };
        let mut s = String::new();
        describe(&a, false, &mut s);
        assert!(s.contains("stale access at 0x70000010 (thread 42)"), "{s}");
        assert!(s.contains("freed by collection 4"), "{s}");
        assert!(
            s.contains("record (tag 7, 2 refs, 16 data bytes) at 0x70000000, 16 bytes in"),
            "{s}"
        );
        assert!(s.contains("live and moved to 0x60000100"), "{s}");
        let dead = StaleAccess { object: None, ..a };
        let mut s = String::new();
        describe(&dead, true, &mut s);
        assert!(s.contains("no recorded object there"), "{s}");
        assert!(s.ends_with("aborting after the stale-access hook\n"), "{s}");
    }

    #[test]
    fn a_large_object_without_its_header_is_named_by_its_range() {
        let a = StaleAccess {
            addr: 0x5000_0040,
            freed_by: 9,
            object: None,
            large: Some((0x5000_0000, 81920)),
            tid: 7,
        };
        let mut s = String::new();
        describe(&a, false, &mut s);
        assert!(
            s.contains(
                "large object of 81920 bytes at 0x50000000, 64 bytes in; that object was garbage"
            ),
            "{s}"
        );
    }

    #[test]
    fn the_environment_switch() {
        assert!(enabled_by_env(Some("1")));
        assert!(enabled_by_env(Some(" on ")));
        assert!(!enabled_by_env(Some("0")));
        assert!(!enabled_by_env(None));
        assert!(enabled_by_env(Some("stress")) && stress_by_env(Some("stress")));
        assert!(!stress_by_env(Some("1")));
    }
}
