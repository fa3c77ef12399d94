//! userfaultfd micro-benchmarks: the per-page cost of installing pages with
//! `UFFDIO_MOVE` versus `UFFDIO_COPY`, as the compactor uses them.
//!
//! ```text
//! cargo bench -p movegc-bench --bench uffd_ops [-- FILTER]
//! ```
//!
//! Every region is 2 MiB aligned and `MADV_NOHUGEPAGE`, so every page is a
//! 4 KiB PTE (no THP, no PMD moves). One criterion iteration is one *pass*:
//! one ioctl per `batch` pages over a whole [`REGION`] (32 MiB = 8192
//! pages), or [`FAULTS`] faults in `uffd_fault`. Throughput is set in pages,
//! so "time / elements" is the per-page cost. Timing uses `iter_custom` and
//! covers exactly the ioctl loop (plus what a variant says it includes);
//! resets happen outside the timed section.
//!
//! Groups:
//! * `uffd_ioctl/{move,copy,copy+dontneed}/{1,16,512}`: MOVE ping-pongs
//!   recycled pages between two registered areas (A→B, then B→A: nothing is
//!   ever allocated or freed). COPY copies from a resident buffer of `batch`
//!   pages into a MISSING-registered destination, which is emptied with
//!   `MADV_DONTNEED` after each pass: untimed and in half-PMD pieces that
//!   keep the PTE tables in `copy`; timed and in one call over the whole
//!   destination in `copy+dontneed` (the GC pays it to free from-space; on
//!   this kernel that call also frees the PTE tables, see
//!   [`dontneed_keep_tables`], so the next pass re-allocates them).
//! * `uffd_dst_tables/{move,copy}/{present,fresh}`, batch 512: the
//!   destination's PTE tables exist (ping-pong, or the table-keeping
//!   DONTNEED) versus a fresh VMA before every pass (`mmap(MAP_FIXED)` over
//!   the emptied destination, untimed, which frees its page tables).
//! * `uffd_fault/{move,copy}/{unpinned,same-cpu,cross-cpu}`: a mutator (the
//!   bench thread) reads a missing page; a handler thread (`wait_event` =
//!   poll + read) resolves it with a one-page MOVE from a pool, or a
//!   one-page COPY from a buffer. Timed: the load instruction only, as seen
//!   by the mutator. The two threads are left to the scheduler, pinned to
//!   one CPU, or pinned to two CPUs.
//! * `uffd_ioctl_sibling/{move,copy}/{1,16,512}`: as `uffd_ioctl`, with
//!   the bench thread pinned to one CPU and a sibling thread of this process
//!   spinning on another, so every TLB flush of the mm needs an IPI.
//!
//! Checks: every ioctl result is checked inside the loop (an error panics,
//! so a failing ioctl is never timed); the first pass of every workload
//! verifies every destination page's pattern; every fault checks the loaded
//! value. If userfaultfd or `UFFDIO_MOVE` is unavailable the bench prints
//! why and exits 0.
//!
//! After each benchmark a `note:` line reports ioctls issued,
//! TLB-shootdown IPIs per ioctl (from `/proc/interrupts`, counted over timed
//! sections only), the mean page-table (`VmPTE`) growth per pass, and for
//! faults the median/p99 of per-fault latency. The notes are repeated as a
//! table at the end.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use movegc_gc::mapping::{Mapping, Prot, HUGE_PAGE_SIZE, PAGE_SIZE};
use movegc_gc::uffd::{
    CopyMode, Event, Features, MoveMode, OpenOptions, RegisterMode, Uffd, UffdError,
};

/// Bytes moved or copied per pass.
const REGION: usize = 32 << 20;
/// Pages per pass.
const REGION_PAGES: usize = REGION / PAGE_SIZE;
/// Pages per ioctl.
const BATCHES: [usize; 3] = [1, 16, 512];
/// Faults per criterion iteration in `uffd_fault`.
const FAULTS: usize = 256;
/// Page `i` of a pattern holds `MAGIC ^ i` in its first word.
const MAGIC: u64 = 0x5546_4644_4d4f_0000;
/// How long the fault handler waits before re-checking its stop flag.
const HANDLER_POLL: Duration = Duration::from_millis(20);

fn main() {
    match open_uffd() {
        Ok(uffd) => println!(
            "uffd_ops: userfaultfd via {}, features {:?}; region {} MiB, pages of {} KiB",
            uffd.open_path(),
            uffd.features().names(),
            REGION >> 20,
            PAGE_SIZE >> 10,
        ),
        Err(e) => {
            println!("uffd_ops: skipped, no userfaultfd with UFFDIO_MOVE: {e}");
            if let UffdError::Unavailable { attempts, .. } = &e {
                for a in attempts {
                    println!("  {}: {}", a.path, a.reason);
                }
            }
            return;
        }
    }
    let mut c = Criterion::default().configure_from_args();
    let mut notes = Vec::new();
    ioctl_cost(&mut c, &mut notes);
    dst_tables(&mut c, &mut notes);
    fault_round_trip(&mut c, &mut notes);
    sibling(&mut c, &mut notes);
    c.final_summary();
    if !notes.is_empty() {
        println!("\nuffd_ops notes (TLB IPIs counted over timed sections only):");
        for n in &notes {
            println!("  {n}");
        }
    }
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

/// Common group settings: passes take 0.3–100 ms, so flat sampling.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, samples: usize, pages: usize) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(pages as u64));
}

/// (1) MOVE vs COPY (with and without the DONTNEED) at each batch size.
fn ioctl_cost(c: &mut Criterion, notes: &mut Vec<String>) {
    let uffd = open_uffd().expect("userfaultfd opened once already");
    let mut group = c.benchmark_group("uffd_ioctl");
    configure(&mut group, 20, REGION_PAGES);
    for batch in BATCHES {
        let mut w = MovePingPong::new(&uffd, batch, false);
        run(&mut group, "uffd_ioctl", "move", batch, &mut w, notes);
        let mut w = CopyFill::new(&uffd, batch, Reset::Untimed);
        run(&mut group, "uffd_ioctl", "copy", batch, &mut w, notes);
        let mut w = CopyFill::new(&uffd, batch, Reset::Timed);
        run(
            &mut group,
            "uffd_ioctl",
            "copy+dontneed",
            batch,
            &mut w,
            notes,
        );
    }
    group.finish();
}

/// (2) Destination page tables present vs freshly mapped, batch 512.
fn dst_tables(c: &mut Criterion, notes: &mut Vec<String>) {
    let uffd = open_uffd().expect("userfaultfd opened once already");
    let mut group = c.benchmark_group("uffd_dst_tables");
    configure(&mut group, 20, REGION_PAGES);
    let batch = 512;
    for (param, fresh) in [("present", false), ("fresh", true)] {
        let mut w = MovePingPong::new(&uffd, batch, fresh);
        run(&mut group, "uffd_dst_tables", "move", param, &mut w, notes);
        let reset = if fresh {
            Reset::FreshVma
        } else {
            Reset::Untimed
        };
        let mut w = CopyFill::new(&uffd, batch, reset);
        run(&mut group, "uffd_dst_tables", "copy", param, &mut w, notes);
    }
    group.finish();
}

/// (3) Fault round trip seen by the mutator, resolved by a handler thread,
/// with both threads unpinned, pinned to one CPU, or pinned to two CPUs.
fn fault_round_trip(c: &mut Criterion, notes: &mut Vec<String>) {
    let original = affinity();
    let cpus = original.as_ref().map(cpus_in).unwrap_or_default();
    let mut group = c.benchmark_group("uffd_fault");
    configure(&mut group, 20, FAULTS);
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for resolve in [Resolve::Move, Resolve::Copy] {
        for placement in Placement::ALL {
            // (mutator CPU, handler CPU); `None` = not pinned.
            let (mutator_cpu, handler_cpu) = match placement {
                Placement::Unpinned => (None, None),
                Placement::SameCpu if !cpus.is_empty() => (Some(cpus[0]), Some(cpus[0])),
                Placement::CrossCpu if cpus.len() >= 2 => (Some(cpus[0]), Some(cpus[1])),
                _ => {
                    println!(
                        "uffd_ops: uffd_fault/*/{} skipped: CPUs {cpus:?}",
                        placement.name()
                    );
                    continue;
                }
            };
            // A descriptor per run: its event queue serves this run only.
            let uffd = open_uffd().expect("userfaultfd opened once already");
            let target = FaultTarget::new(&uffd);
            let failure = Mutex::new(None);
            let stop = AtomicBool::new(false);
            if let Some(cpu) = mutator_cpu {
                pin_to(cpu);
            }
            std::thread::scope(|s| {
                let _stop = StopOnDrop(&stop);
                let handler = Handler {
                    uffd: &uffd,
                    resolve,
                    target: &target,
                    stop: &stop,
                    failure: &failure,
                };
                s.spawn(move || {
                    if let Some(cpu) = handler_cpu {
                        pin_to(cpu);
                    }
                    handler.run();
                });
                let mut w = FaultBench {
                    uffd: &uffd,
                    resolve,
                    target: &target,
                    failure: &failure,
                    dst_populated: false,
                    latencies: Vec::new(),
                    stats: Stats::default(),
                };
                let (name, param) = (resolve.name(), placement.name());
                group.bench_function(BenchmarkId::new(name, param), |b| {
                    b.iter_custom(|iters| (0..iters).map(|_| w.batch()).sum())
                });
                if let Some(n) = w.note(&format!("uffd_fault/{name}/{param}")) {
                    println!("note: {n}");
                    notes.push(n);
                }
            });
            if let Some(set) = &original {
                set_affinity(set);
            }
        }
    }
    group.finish();
}

/// (4) As (1) with a sibling thread spinning on another CPU.
fn sibling(c: &mut Criterion, notes: &mut Vec<String>) {
    let Some(original) = affinity() else {
        println!("uffd_ops: uffd_ioctl_sibling skipped: sched_getaffinity failed");
        return;
    };
    let cpus = cpus_in(&original);
    if cpus.len() < 2 {
        println!("uffd_ops: uffd_ioctl_sibling skipped: only {cpus:?} allowed");
        return;
    }
    let (here, there) = (cpus[0], cpus[1]);
    let uffd = open_uffd().expect("userfaultfd opened once already");
    pin_to(here);
    let stop = AtomicBool::new(false);
    let spinning = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let (stop, spinning) = (&stop, &spinning);
        s.spawn(move || {
            pin_to(there);
            spinning.store(true, Ordering::Release);
            while !stop.load(Ordering::Relaxed) {
                spin_loop();
            }
        });
        // Measure only once the sibling really runs on the other CPU.
        while !spinning.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let mut group = c.benchmark_group("uffd_ioctl_sibling");
        configure(&mut group, 10, REGION_PAGES);
        for batch in BATCHES {
            let mut w = MovePingPong::new(&uffd, batch, false);
            run(
                &mut group,
                "uffd_ioctl_sibling",
                "move",
                batch,
                &mut w,
                notes,
            );
            let mut w = CopyFill::new(&uffd, batch, Reset::Untimed);
            run(
                &mut group,
                "uffd_ioctl_sibling",
                "copy",
                batch,
                &mut w,
                notes,
            );
        }
        group.finish();
    });
    set_affinity(&original);
}

/// A workload whose unit of work is one timed pass.
trait Workload {
    /// Runs one pass; returns the timed part only.
    fn pass(&mut self) -> Duration;
    /// Counters accumulated over all passes.
    fn stats(&self) -> &Stats;
}

/// Benchmarks `w` as `function/param` and records its note.
fn run<W: Workload, P: std::fmt::Display>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    function: &str,
    param: P,
    w: &mut W,
    notes: &mut Vec<String>,
) {
    let label = format!("{group_name}/{function}/{param}");
    group.bench_function(BenchmarkId::new(function, param), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| w.pass()).sum())
    });
    if let Some(n) = w.stats().note(&label) {
        println!("note: {n}");
        notes.push(n);
    }
}

// ---------------------------------------------------------------------------
// MOVE: recycled pages ping-ponging between two registered areas
// ---------------------------------------------------------------------------

/// Two registered areas; all pages live in `areas[full]`, and each pass
/// moves them to the other area at the same offsets.
struct MovePingPong<'u> {
    uffd: &'u Uffd,
    areas: [Mapping; 2],
    full: usize,
    batch: usize,
    /// Replace the (empty) destination by a fresh VMA before each pass.
    fresh_dst: bool,
    checked: bool,
    stats: Stats,
}

impl<'u> MovePingPong<'u> {
    fn new(uffd: &'u Uffd, batch: usize, fresh_dst: bool) -> Self {
        let areas = [region(REGION), region(REGION)];
        // Populate before registering: a missing page of a registered range
        // would block this thread (there is no handler here).
        for p in 0..REGION_PAGES {
            stamp(&areas[0], p, MAGIC ^ p as u64);
        }
        for a in &areas {
            register(uffd, a);
        }
        MovePingPong {
            uffd,
            areas,
            full: 0,
            batch,
            fresh_dst,
            checked: false,
            stats: Stats::default(),
        }
    }
}

impl Workload for MovePingPong<'_> {
    fn pass(&mut self) -> Duration {
        let src = &self.areas[self.full];
        let dst = &self.areas[self.full ^ 1];
        if self.fresh_dst {
            fresh_vma(self.uffd, dst);
        }
        let len = self.batch * PAGE_SIZE;
        let probe = Probe::start();
        let t0 = Instant::now();
        for off in (0..REGION).step_by(len) {
            // SAFETY: both areas are this workload's own mappings; no Rust
            // reference points into them (`stamp`/`check_pattern` borrow
            // them only briefly).
            let r = unsafe {
                self.uffd
                    .move_pages(dst.start() + off, src.start() + off, len, MoveMode::empty())
            };
            if let Err(e) = r {
                panic!(
                    "UFFDIO_MOVE {:#x} <- {:#x} len {len:#x}: {e}",
                    dst.start() + off,
                    src.start() + off
                );
            }
        }
        let dt = t0.elapsed();
        probe.finish(&mut self.stats, REGION / len);
        if !self.checked {
            check_pattern(dst, "MOVE destination", |p| MAGIC ^ p as u64);
            self.checked = true;
        }
        self.full ^= 1;
        dt
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }
}

// ---------------------------------------------------------------------------
// COPY: from a resident buffer into a destination that is emptied per pass
// ---------------------------------------------------------------------------

/// How the COPY destination is emptied between passes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reset {
    /// `MADV_DONTNEED` after the pass, not timed, in half-PMD pieces so
    /// that the PTE tables survive (see [`dontneed_keep_tables`]).
    Untimed,
    /// `MADV_DONTNEED` of the whole destination after the pass, timed with
    /// it, as the GC frees from-space. On a `CONFIG_PT_RECLAIM` kernel this
    /// also frees the PTE tables, so each pass re-allocates them.
    Timed,
    /// A fresh VMA (`mmap(MAP_FIXED)` + register) before the pass, not timed:
    /// frees the pages and the PTE tables.
    FreshVma,
}

struct CopyFill<'u> {
    uffd: &'u Uffd,
    dst: Mapping,
    /// `batch` resident pages; page `k` holds `MAGIC ^ k`.
    buf: Mapping,
    batch: usize,
    reset: Reset,
    checked: bool,
    stats: Stats,
}

impl<'u> CopyFill<'u> {
    fn new(uffd: &'u Uffd, batch: usize, reset: Reset) -> Self {
        let dst = region(REGION);
        register(uffd, &dst);
        let buf = region(batch * PAGE_SIZE);
        for k in 0..batch {
            stamp(&buf, k, MAGIC ^ k as u64);
        }
        CopyFill {
            uffd,
            dst,
            buf,
            batch,
            reset,
            checked: false,
            stats: Stats::default(),
        }
    }
}

impl Workload for CopyFill<'_> {
    fn pass(&mut self) -> Duration {
        if self.reset == Reset::FreshVma {
            fresh_vma(self.uffd, &self.dst);
        }
        let len = self.batch * PAGE_SIZE;
        let (dst, src) = (self.dst.start(), self.buf.start());
        let probe = Probe::start();
        let t0 = Instant::now();
        for off in (0..REGION).step_by(len) {
            // SAFETY: `dst` and `buf` are this workload's own mappings; no
            // Rust reference points into `dst`, and `buf` is only read.
            if let Err(e) = unsafe { self.uffd.copy(dst + off, src, len, CopyMode::empty()) } {
                panic!("UFFDIO_COPY {:#x} <- {src:#x} len {len:#x}: {e}", dst + off);
            }
        }
        let mut dt = t0.elapsed();
        if !self.checked {
            // Before any DONTNEED: reading a missing page would block.
            let batch = self.batch;
            check_pattern(&self.dst, "COPY destination", |p| {
                MAGIC ^ (p % batch) as u64
            });
            self.checked = true;
        }
        if self.reset == Reset::Timed {
            let t1 = Instant::now();
            dontneed(&self.dst);
            dt += t1.elapsed();
        }
        probe.finish(&mut self.stats, REGION / len);
        if self.reset == Reset::Untimed {
            dontneed_keep_tables(&self.dst);
        }
        dt
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }
}

// ---------------------------------------------------------------------------
// Fault round trip
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Resolve {
    /// One-page MOVE from a pre-populated pool (recycled pages).
    Move,
    /// One-page COPY from a resident buffer.
    Copy,
}

impl Resolve {
    fn name(self) -> &'static str {
        match self {
            Resolve::Move => "move",
            Resolve::Copy => "copy",
        }
    }
}

/// Where the mutator and the handler thread run in `uffd_fault`.
#[derive(Clone, Copy, Debug)]
enum Placement {
    /// Left to the scheduler (usually woken onto the waker's CPU).
    Unpinned,
    /// Both pinned to the same CPU: a wake is a local context switch.
    SameCpu,
    /// Pinned to two CPUs: every wake crosses CPUs (an idle vCPU must be
    /// woken), and the handler's MOVE flushes the mutator CPU's TLB.
    CrossCpu,
}

impl Placement {
    const ALL: [Placement; 3] = [Placement::Unpinned, Placement::SameCpu, Placement::CrossCpu];

    fn name(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::SameCpu => "same-cpu",
            Placement::CrossCpu => "cross-cpu",
        }
    }
}

/// `dst` is where the mutator faults; `pool` holds the pages MOVE installs
/// (page `i` holds `MAGIC ^ i` and goes to `dst` page `i`); `buf` is COPY's
/// one-page source, written by the handler only.
struct FaultTarget {
    dst: Mapping,
    pool: Mapping,
    buf: Mapping,
}

impl FaultTarget {
    fn new(uffd: &Uffd) -> Self {
        let dst = region(FAULTS * PAGE_SIZE);
        let pool = region(FAULTS * PAGE_SIZE);
        let buf = region(PAGE_SIZE);
        for p in 0..FAULTS {
            stamp(&pool, p, MAGIC ^ p as u64);
        }
        stamp(&buf, 0, 0);
        // The pool is registered too so that pages can be moved back into it.
        register(uffd, &dst);
        register(uffd, &pool);
        FaultTarget { dst, pool, buf }
    }
}

/// The resolver thread: `wait_event`, then one MOVE or COPY per fault.
struct Handler<'a> {
    uffd: &'a Uffd,
    resolve: Resolve,
    target: &'a FaultTarget,
    stop: &'a AtomicBool,
    failure: &'a Mutex<Option<String>>,
}

impl Handler<'_> {
    fn run(self) {
        while !self.stop.load(Ordering::Acquire) {
            let outcome = match self.uffd.wait_event(Some(HANDLER_POLL)) {
                Ok(None) => continue,
                Ok(Some(Event::PageFault { address, .. })) => self.resolve_fault(address),
                Ok(Some(other)) => Err(format!("unexpected event {other:?}")),
                Err(e) => Err(format!("wait_event: {e}")),
            };
            if let Err(msg) = outcome {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
                // Wake the mutator: its access then completes normally (reads
                // zero), fails its check and panics with `msg`.
                let _ = self
                    .uffd
                    .unregister(self.target.dst.start(), self.target.dst.len());
                return;
            }
        }
    }

    fn resolve_fault(&self, address: usize) -> Result<(), String> {
        let t = self.target;
        let page = address & !(PAGE_SIZE - 1);
        if !t.dst.contains(page) {
            return Err(format!("fault at {address:#x} outside the target"));
        }
        let off = page - t.dst.start();
        // SAFETY: `dst`, `pool` and `buf` belong to the benchmark's
        // `FaultTarget`; the mutator loads `dst` by raw pointer only, so no
        // Rust reference points into them, and `buf` is written only by this
        // thread, before the COPY reads it.
        match self.resolve {
            Resolve::Move => unsafe {
                self.uffd
                    .move_pages(page, t.pool.start() + off, PAGE_SIZE, MoveMode::empty())
            }
            .map_err(|e| format!("UFFDIO_MOVE of faulting page {page:#x}: {e}")),
            Resolve::Copy => {
                // The GC compacts into its buffer and then copies it out.
                stamp(&t.buf, 0, MAGIC ^ (off / PAGE_SIZE) as u64);
                unsafe {
                    self.uffd
                        .copy(page, t.buf.start(), PAGE_SIZE, CopyMode::empty())
                }
                .map_err(|e| format!("UFFDIO_COPY of faulting page {page:#x}: {e}"))
            }
        }
    }
}

/// The mutator side: [`FAULTS`] sequential loads of missing pages.
struct FaultBench<'a> {
    uffd: &'a Uffd,
    resolve: Resolve,
    target: &'a FaultTarget,
    failure: &'a Mutex<Option<String>>,
    dst_populated: bool,
    /// Per-fault latency in ns, warm-up included.
    latencies: Vec<u32>,
    stats: Stats,
}

impl FaultBench<'_> {
    /// Empties `dst` (untimed), then times each of [`FAULTS`] loads.
    fn batch(&mut self) -> Duration {
        let t = self.target;
        if self.dst_populated {
            match self.resolve {
                // Recycle: all pages back into the pool in one ioctl.
                Resolve::Move => {
                    // SAFETY: `pool` and `dst` are the benchmark's own
                    // mappings and no Rust reference points into them; the
                    // handler thread is idle (no fault is pending).
                    let r = unsafe {
                        self.uffd.move_pages(
                            t.pool.start(),
                            t.dst.start(),
                            t.dst.len(),
                            MoveMode::empty(),
                        )
                    };
                    if let Err(e) = r {
                        panic!("UFFDIO_MOVE dst -> pool: {e}");
                    }
                }
                Resolve::Copy => dontneed(&t.dst),
            }
        }
        let probe = Probe::start();
        let mut total = Duration::ZERO;
        for i in 0..FAULTS {
            let word = (t.dst.start() + i * PAGE_SIZE) as *const u64;
            let t0 = Instant::now();
            // SAFETY: `word` is an aligned word inside `t.dst`, which stays
            // mapped for the whole benchmark. The page is missing and
            // registered: the handler thread installs it (or unregisters the
            // range on error, after which the load reads zero); nobody writes
            // it concurrently.
            let v = unsafe { std::ptr::read_volatile(word) };
            let dt = t0.elapsed();
            if v != MAGIC ^ i as u64 {
                let why = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                panic!(
                    "fault {i}: loaded {v:#x}, expected {:#x}; handler: {}",
                    MAGIC ^ i as u64,
                    why.as_deref().unwrap_or("no error reported")
                );
            }
            total += dt;
            self.latencies
                .push(dt.as_nanos().min(u128::from(u32::MAX)) as u32);
        }
        self.dst_populated = true;
        probe.finish(&mut self.stats, FAULTS);
        total
    }

    fn note(&mut self, label: &str) -> Option<String> {
        let base = self.stats.note(label)?;
        let l = &mut self.latencies;
        l.sort_unstable();
        let q = |f: f64| l[((l.len() - 1) as f64 * f).round() as usize] as f64 / 1000.0;
        Some(format!(
            "{base}; per-fault latency over {} faults (warm-up included): \
             p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, max {:.1} us",
            l.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        ))
    }
}

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

/// Accumulated over every pass (warm-up included).
#[derive(Default)]
struct Stats {
    passes: u64,
    /// ioctls (or faults) in timed sections.
    ops: u64,
    /// TLB-shootdown IPIs received by all CPUs during timed sections.
    tlb_ipis: u64,
    /// `/proc/interrupts` had no readable TLB row at some point.
    tlb_unknown: bool,
    /// Sum of `VmPTE` growth (kB) across timed sections.
    pte_growth_kib: i64,
}

impl Stats {
    fn note(&self, label: &str) -> Option<String> {
        if self.passes == 0 {
            return None;
        }
        let ipis = if self.tlb_unknown {
            "n/a".to_string()
        } else {
            format!("{:.3}", self.tlb_ipis as f64 / self.ops as f64)
        };
        Some(format!(
            "{label}: {} passes, {} ops, TLB IPIs/op {ipis}, VmPTE growth/pass {:.1} kB",
            self.passes,
            self.ops,
            self.pte_growth_kib as f64 / self.passes as f64
        ))
    }
}

/// Counter readings taken just outside a timed section.
struct Probe {
    tlb: Option<u64>,
    pte: Option<i64>,
}

impl Probe {
    fn start() -> Self {
        Probe {
            pte: vm_pte_kib(),
            tlb: tlb_shootdowns(),
        }
    }

    fn finish(self, stats: &mut Stats, ops: usize) {
        let tlb = tlb_shootdowns();
        stats.passes += 1;
        stats.ops += ops as u64;
        match (self.tlb, tlb) {
            (Some(a), Some(b)) => stats.tlb_ipis += b.saturating_sub(a),
            _ => stats.tlb_unknown = true,
        }
        if let (Some(a), Some(b)) = (self.pte, vm_pte_kib()) {
            stats.pte_growth_kib += b - a;
        }
    }
}

/// Sum over CPUs of the `TLB:` row of `/proc/interrupts` (x86).
fn tlb_shootdowns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/interrupts").ok()?;
    let row = text.lines().find(|l| l.trim_start().starts_with("TLB:"))?;
    Some(
        row.split_whitespace()
            .skip(1)
            .map_while(|w| w.parse::<u64>().ok())
            .sum(),
    )
}

/// `VmPTE` of this process in kB.
fn vm_pte_kib() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmPTE:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Memory helpers
// ---------------------------------------------------------------------------

/// Opens a descriptor that must have `UFFDIO_MOVE`.
fn open_uffd() -> Result<Uffd, UffdError> {
    Uffd::open(
        &OpenOptions::new()
            .features(Features::MOVE)
            .require_features(Features::MOVE),
    )
}

/// A read-write anonymous mapping, 2 MiB aligned, `MADV_NOHUGEPAGE`.
fn region(len: usize) -> Mapping {
    let m = Mapping::new(len, HUGE_PAGE_SIZE, Prot::ReadWrite)
        .unwrap_or_else(|e| panic!("mmap of {len:#x} bytes: {e}"));
    nohugepage(&m);
    m
}

fn nohugepage(m: &Mapping) {
    m.madvise(0, m.len(), libc::MADV_NOHUGEPAGE)
        .unwrap_or_else(|e| panic!("madvise(MADV_NOHUGEPAGE) at {:#x}: {e}", m.start()));
}

fn register(uffd: &Uffd, m: &Mapping) {
    if let Err(e) = uffd.register(m.start(), m.len(), RegisterMode::MISSING) {
        panic!("UFFDIO_REGISTER {:#x}+{:#x}: {e}", m.start(), m.len());
    }
}

fn dontneed(m: &Mapping) {
    m.madvise(0, m.len(), libc::MADV_DONTNEED)
        .unwrap_or_else(|e| panic!("madvise(MADV_DONTNEED) at {:#x}: {e}", m.start()));
}

/// `MADV_DONTNEED` of `m` in 1 MiB pieces. Since Linux 6.14
/// (`CONFIG_PT_RECLAIM`, enabled on x86-64 by default) a DONTNEED that covers
/// a whole 2 MiB PMD range also frees the emptied PTE table; pieces smaller
/// than a PMD keep every table, as older kernels did.
fn dontneed_keep_tables(m: &Mapping) {
    let piece = HUGE_PAGE_SIZE / 2;
    for off in (0..m.len()).step_by(piece) {
        let len = piece.min(m.len() - off);
        m.madvise(off, len, libc::MADV_DONTNEED)
            .unwrap_or_else(|e| panic!("madvise(MADV_DONTNEED) at {:#x}: {e}", m.start() + off));
    }
}

/// Replaces `m`'s whole range by a fresh, registered, `MADV_NOHUGEPAGE` VMA.
/// Frees its pages and, the range being 2 MiB aligned, its PTE tables.
fn fresh_vma(uffd: &Uffd, m: &Mapping) {
    m.remap_fresh(0, m.len(), Prot::ReadWrite)
        .unwrap_or_else(|e| panic!("mmap(MAP_FIXED) at {:#x}: {e}", m.start()));
    nohugepage(m);
    register(uffd, m);
}

/// Writes `value` into the first word of page `page` of `m`. The page must
/// be present or `m` unregistered: a missing page of a registered range
/// would block the caller until someone resolves it.
fn stamp(m: &Mapping, page: usize, value: u64) {
    assert!(
        (page + 1) * PAGE_SIZE <= m.len(),
        "page {page} outside mapping"
    );
    // SAFETY: the word lies inside `m` (asserted). Only the thread that owns
    // this mapping's role (setup code, or the fault handler for its buffer)
    // writes it, and the slice dies at the end of the statement, so no other
    // reference to these bytes is alive.
    unsafe { m.bytes_mut(page * PAGE_SIZE, 8) }.copy_from_slice(&value.to_ne_bytes());
}

/// Panics unless page `p` of `m` starts with `expected(p)` for every page.
/// Every page must be present (see [`stamp`]).
fn check_pattern(m: &Mapping, what: &str, expected: impl Fn(usize) -> u64) {
    for p in 0..m.len() / PAGE_SIZE {
        // SAFETY: the word is inside `m`; every page was just installed by a
        // successful ioctl, so the read does not fault into userfaultfd, and
        // no thread writes `m` while the bench thread checks it.
        let bytes = unsafe { m.bytes(p * PAGE_SIZE, 8) };
        let got = u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
        assert_eq!(
            got,
            expected(p),
            "{what}: page {p} at {:#x} has the wrong contents",
            m.start() + p * PAGE_SIZE
        );
    }
}

/// Sets the stop flag when dropped, so helper threads end even if the
/// benchmark panics (the scope would otherwise wait for them forever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------
// CPU affinity
// ---------------------------------------------------------------------------

/// The calling thread's allowed CPUs.
fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is a valid value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed; pid 0 is
    // the calling thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (rc == 0).then_some(set)
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

fn cpus_in(set: &libc::cpu_set_t) -> Vec<usize> {
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET only reads bit `cpu` of `set`, and `cpu` is
        // below CPU_SETSIZE, the number of bits in a cpu_set_t.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is a valid value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET only writes bit `cpu` of `set`; `cpu` came from
    // `cpus_in`, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set_affinity(&set);
}
