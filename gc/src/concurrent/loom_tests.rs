//! Loom models of the lock-free protocols of a concurrent cycle, run on
//! the production types (their atomics come from [`super::sync`], which is
//! loom's in this build): `cargo test -p movegc-gc --features loom --lib
//! loom`. Each model runs every interleaving (and every value a load may
//! read under the C++ memory model, as loom approximates it) of 2-3
//! threads; page contents and from-space pages are `loom::cell::UnsafeCell`s,
//! so a read or write not ordered after the write it depends on (a missing
//! Release/Acquire pair) fails the model as a causality violation.

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicUsize;
use loom::sync::Arc;
use loom::thread;

use super::fault::SlotUse;
use super::page_state::{Claimant, PageState, PageStates};
use super::sync::Ordering;
use super::FreeRange;

/// Runs `f` under loom with a preemption bound (loom's default for the
/// number of permutations otherwise; the `LOOM_*` variables still apply).
fn model<F: Fn() + Sync + Send + 'static>(preemptions: usize, f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(preemptions);
    }
    b.check(f);
}

// ---------------------------------------------------------------------------
// 1. The page state machine.

/// What the compaction of the page writes; every compaction of a page
/// produces the same bytes.
const CONTENTS: u32 = 0x5a5a;

/// One to-space page: its state, the GC's buffer (or recycled page) it may
/// be compacted into, the page as installed, and counters.
struct Page {
    states: PageStates,
    /// The GC's buffer for the page (written before `compacted`).
    gc_buf: UnsafeCell<u32>,
    /// The installed page (written by the one installer before `mapped`).
    page: UnsafeCell<u32>,
    /// Claims won.
    claims: AtomicUsize,
    /// Installs (ioctls that install the page).
    installs: AtomicUsize,
}

impl Page {
    fn new() -> Page {
        Page {
            states: PageStates::new(1),
            gc_buf: UnsafeCell::new(0),
            page: UnsafeCell::new(0),
            claims: AtomicUsize::new(0),
            installs: AtomicUsize::new(0),
        }
    }

    /// The ioctl installing the page with `bytes`, by its owner (the state
    /// is `Mapping`).
    fn install(&self, bytes: u32) {
        self.installs.fetch_add(1, Ordering::Relaxed);
        self.page.with_mut(|p| unsafe { *p = bytes });
    }

    /// A GC thread's share of `compact_block` + `install_runs` for the
    /// page: claim, compact into its buffer, mark `Compacted`; then the
    /// batch's install (skipping the page if a resolver took it over); then
    /// the block's `wait_mapped`.
    fn gc(&self) {
        let p = 0;
        let claimed = self.states.claim(p, Claimant::Gc);
        if claimed {
            self.claims.fetch_add(1, Ordering::Relaxed);
            self.gc_buf.with_mut(|b| unsafe { *b = CONTENTS });
            self.states.compacted(p);
            // install_runs: the batch's MOVE leaves out a page a faulting
            // mutator took over.
            if self.states.take_compacted(p) {
                let bytes = self.gc_buf.with(|b| unsafe { *b });
                self.install(bytes);
                self.states.mapped(p);
            }
        }
        self.states.wait_mapped(p);
        self.read_mapped();
    }

    /// `CycleShared::resolve_page`'s state logic (SIGBUS mode).
    fn resolve(&self) {
        let p = 0;
        loop {
            match self.states.get(p) {
                PageState::Mapped => break,
                PageState::Unprocessed => {
                    if self.states.claim(p, Claimant::Mutator) {
                        self.claims.fetch_add(1, Ordering::Relaxed);
                        // Compacted into a stack buffer.
                        let buf = CONTENTS;
                        self.states.mapping(p);
                        self.install(buf);
                        self.states.mapped(p);
                        break;
                    }
                }
                PageState::Compacted => {
                    if self.states.take_compacted(p) {
                        // COPY from the GC's buffer.
                        let bytes = self.gc_buf.with(|b| unsafe { *b });
                        self.install(bytes);
                        self.states.mapped(p);
                        break;
                    }
                }
                PageState::GcClaimed | PageState::MutatorClaimed | PageState::Mapping => {
                    super::sync::spin_loop();
                }
            }
        }
        // The access is retried: it reads the installed page.
        self.read_mapped();
    }

    /// A thread that saw `Mapped` reads the page: it must see the
    /// installer's bytes (loom fails the model if the read is not ordered
    /// after the installer's write).
    fn read_mapped(&self) {
        assert_eq!(self.states.get(0), PageState::Mapped);
        assert_eq!(self.page.with(|p| unsafe { *p }), CONTENTS);
    }

    /// After every thread is done: one claim won, one install.
    fn check_done(&self) {
        assert_eq!(self.states.get(0), PageState::Mapped);
        assert_eq!(self.claims.load(Ordering::Relaxed), 1, "claims won");
        assert_eq!(self.installs.load(Ordering::Relaxed), 1, "installs");
    }
}

/// A GC thread and a faulting mutator race for one page: exactly one
/// claims it, it is installed once (by the GC, by the resolver after
/// claiming it, or by the resolver taking over the GC's `Compacted` page),
/// both end up seeing `Mapped` and the installed bytes, and the GC's
/// `wait_mapped` returns.
#[test]
fn page_gc_and_resolver_race() {
    model(3, || {
        let page = Arc::new(Page::new());
        let r = page.clone();
        let resolver = thread::spawn(move || r.resolve());
        page.gc();
        resolver.join().unwrap();
        page.check_done();
    });
}

/// Two mutators fault on the same page (no GC thread: with a third thread
/// spinning too, loom's explorer can alternate the two spinners forever).
#[test]
fn page_two_resolvers_race() {
    model(3, || {
        let page = Arc::new(Page::new());
        let r = page.clone();
        let other = thread::spawn(move || r.resolve());
        page.resolve();
        other.join().unwrap();
        page.check_done();
    });
}

/// `wait_mapped` returns once another thread stores `Mapped`, and the
/// waiter then sees what the installer wrote before.
#[test]
fn page_wait_mapped_sees_the_install() {
    model(3, || {
        let page = Arc::new(Page::new());
        assert!(page.states.claim(0, Claimant::Mutator));
        let w = page.clone();
        let waiter = thread::spawn(move || {
            w.states.wait_mapped(0);
            w.read_mapped();
        });
        page.states.mapping(0);
        page.install(CONTENTS);
        page.states.mapped(0);
        waiter.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// 2. The recycler's free range.

/// From-space pages of the model.
const FROM_PAGES: usize = 4;

/// The from-space: page `i` is read by compaction (it is a source) while
/// it is below the watermark, and written by whoever takes it from the free
/// range (a destination or a zero-filled allocation page).
struct FromSpace {
    free: FreeRange,
    pages: Vec<UnsafeCell<u32>>,
    /// Who took each page (0 = nobody); set by swap, so a second taker of
    /// a page is seen whatever the memory orderings.
    owner: Vec<AtomicUsize>,
}

impl FromSpace {
    fn new(free_top: usize, watermark: usize) -> FromSpace {
        FromSpace {
            free: FreeRange::new(free_top, watermark),
            pages: (0..FROM_PAGES).map(|_| UnsafeCell::new(0)).collect(),
            owner: (0..FROM_PAGES).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Taker `id` takes up to `k` pages and writes them; returns them.
    fn take(&self, id: usize, k: usize) -> Vec<usize> {
        let (first, n) = self.free.take_up_to(k);
        assert!(n <= k);
        for p in first..first + n {
            assert!(p < FROM_PAGES);
            let prev = self.owner[p].swap(id, Ordering::Relaxed);
            assert_eq!(prev, 0, "page {p} handed to {prev} and {id}");
            // Races with compaction's read of the page unless the take is
            // ordered after the watermark was lowered below it.
            self.pages[p].with_mut(|v| unsafe { *v = id as u32 });
        }
        (first..first + n).collect()
    }

    /// The compaction of the blocks that read pages `[w, old watermark)`
    /// is done: read them one last time, then lower the watermark to `w`.
    fn compact_and_lower(&self, w: usize) {
        let (_, wm) = self.free.get();
        for p in w..wm {
            self.pages[p].with(|v| unsafe { assert_eq!(*v, 0, "page {p} taken while live") });
        }
        self.free.lower_watermark(w);
    }
}

/// Invariant of `FreeRange`, checked here: (a) no page is handed out
/// twice; (b) a page is handed out only when it is at or above the
/// watermark in force at that take (the take's successful CAS), which is
/// checked as "the taker's write of the page is ordered after compaction's
/// last read of it, which precedes the `lower_watermark` that freed it"
/// (so a take that is not ordered after that lowering, by its AcqRel CAS,
/// is caught as a data race); (c) at the end `watermark <= free_top`, the
/// watermark never went up, and the pages handed out are exactly
/// `[free_top, initial free_top)` (none lost, none outside), all at or
/// above the final watermark.
#[test]
fn free_range_takers_and_a_watermark_mover() {
    model(2, || {
        let fs = Arc::new(FromSpace::new(FROM_PAGES, 2));
        let takers: Vec<_> = [(1, [2, 1]), (2, [1, 2])]
            .into_iter()
            .map(|(id, ks)| {
                let fs = fs.clone();
                thread::spawn(move || {
                    let mut got = fs.take(id, ks[0]);
                    got.extend(fs.take(id, ks[1]));
                    got
                })
            })
            .collect();
        fs.compact_and_lower(3); // above: a no-op
        fs.compact_and_lower(1);
        fs.compact_and_lower(0);
        let mut all: Vec<usize> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let (top, wm) = fs.free.get();
        assert_eq!(wm, 0, "the watermark went up");
        assert!(wm <= top);
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "a page was handed out twice");
        assert_eq!(all, (top..FROM_PAGES).collect::<Vec<_>>());
    });
}

/// Three takers, one watermark step.
#[test]
fn free_range_three_takers() {
    model(2, || {
        let fs = Arc::new(FromSpace::new(FROM_PAGES, 3));
        let takers: Vec<_> = (1..=3)
            .map(|id| {
                let fs = fs.clone();
                thread::spawn(move || fs.take(id, 2))
            })
            .collect();
        fs.compact_and_lower(1);
        let mut all: Vec<usize> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let (top, wm) = fs.free.get();
        assert!(wm == 1 && wm <= top);
        all.sort_unstable();
        assert_eq!(all, (top..FROM_PAGES).collect::<Vec<_>>());
    });
}

// ---------------------------------------------------------------------------
// 3. The SIGBUS registry slot: publish / enter / leave / unpublish.

/// A stand-in for the cycle: its contents, "freed" once `unpublish` has
/// returned.
struct Cycle {
    data: UnsafeCell<u32>,
}

const LIVE: u32 = 1;
const FREED: u32 = 0xdead;

struct Registry {
    slot: SlotUse<Cycle>,
    cycle: Cycle,
}

/// Handlers race with `unpublish`: a handler that loaded the cycle uses it
/// (reads its contents) while holding its use; after `unpublish` returns
/// the cycle is freed (its contents overwritten). The model fails if a
/// handler's read is not ordered before the free (a data race) or sees
/// the freed contents. A handler may also find the slot empty.
#[test]
fn unpublish_waits_for_every_user() {
    model(3, || {
        let reg = Arc::new(Registry {
            slot: SlotUse::new(),
            cycle: Cycle {
                data: UnsafeCell::new(LIVE),
            },
        });
        // An earlier use of the slot (a slot serves many cycles). This also
        // works around loom's approximation of `SeqCst`: it lets a `SeqCst`
        // load read a value older than the newest `SeqCst` store when that
        // value is the atomic's initial one (which C++ forbids: the
        // initialisation happens before the newer store), so without a
        // `SeqCst` store in `users`' history unpublish's load could read
        // the initial 0 past a handler's increment: a false alarm.
        drop(reg.slot.enter());
        // SAFETY: `reg.cycle` lives as long as `reg`, past `unpublish`.
        unsafe { reg.slot.publish(&reg.cycle) };
        let handlers: Vec<_> = (0..2)
            .map(|_| {
                let reg = reg.clone();
                thread::spawn(move || {
                    let user = reg.slot.enter();
                    if let Some(c) = user.get() {
                        let v = c.data.with(|d| unsafe { *d });
                        assert_eq!(v, LIVE, "a handler used a freed cycle");
                    }
                    drop(user);
                })
            })
            .collect();
        reg.slot.unpublish();
        // "Free" the cycle.
        reg.cycle.data.with_mut(|d| unsafe { *d = FREED });
        for h in handlers {
            h.join().unwrap();
        }
    });
}
