//! The costs of the two remembered-set builders of young collections
//! (`HeapConfig::remembered_set`), side by side:
//!
//! ```text
//! cargo bench -p movegc-bench --bench remset [-- FILTER]
//! ```
//!
//! Groups (throughput in stores or pages: "time / elements" is the unit
//! cost):
//! * `remset_store/{off,cards,wp}`: 4096 reference stores (`store_ref`)
//!   into old arrays (a full cycle made them old) between cycles. `off`:
//!   young collections off (the barrier tests its flag, which is off);
//!   `cards`: the card barrier (the flag is on: one byte store per store);
//!   `wp`: the kernel's tracking between cycles (the flag is off; the
//!   arrays' pages were written by the first pass, so later passes take no
//!   fault: the first-write fault is the next group).
//! * `remset_first_write/{protected,written}`: one 8-byte store per page
//!   over 4096 resident pages registered `WP` on a userfaultfd with
//!   `WP_ASYNC`. `protected`: after `UFFDIO_WRITEPROTECT` of the region
//!   (untimed), so every store takes the minor fault the kernel resolves
//!   itself (what a mutator pays once per old page per cycle); `written`:
//!   the same stores again (no fault).
//! * `remset_scan/{1,10,50}`: `PAGEMAP_SCAN` (report only, as a young cycle
//!   runs it) over 64 MiB of resident, protected pages of which 1, 10 or
//!   50 % were written since they were protected.
//! * `remset_protect`: `UFFDIO_WRITEPROTECT` of 64 MiB of resident pages,
//!   which every cycle pays at its end (with mutators running in a
//!   concurrent cycle).
//!
//! If no userfaultfd with `WP_ASYNC` can be opened, the kernel groups are
//! skipped with the reason printed, and `remset_store/wp` measures the
//! card barrier it falls back to (also printed).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use movegc_gc::mapping::{Mapping, Prot, PAGE_SIZE};
use movegc_gc::uffd::pagemap::Pagemap;
use movegc_gc::uffd::{Features, OpenOptions, RegisterMode, Uffd};
use movegc_gc::{GcHeap, HeapConfig, Layout, RememberedSet, Strategy};

/// Reference stores per pass: 8 arrays of 512 slots (one 4 KiB page
/// each, in the moving space).
const ARRAYS: usize = 8;
const SLOTS: usize = 512;
/// Pages of the first-write group.
const WRITE_PAGES: usize = 4096;
/// Bytes of the scan and protect groups.
const SCAN_BYTES: usize = 64 << 20;

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    stores(&mut c);
    match open_wp() {
        Ok(uffd) => {
            first_write(&mut c, &uffd);
            scan_and_protect(&mut c, &uffd);
        }
        Err(why) => println!("remset: kernel groups skipped: {why}"),
    }
    c.final_summary();
}

/// A userfaultfd with `WP_ASYNC`, or why not.
fn open_wp() -> Result<Uffd, String> {
    let want = Features::WP_ASYNC | Features::WP_UNPOPULATED;
    let u = Uffd::open(&OpenOptions::new().features(want)).map_err(|e| e.to_string())?;
    if !u.features().contains(want) {
        return Err(format!("WP_ASYNC not granted ({:?})", u.features().names()));
    }
    Ok(u)
}

fn stores(c: &mut Criterion) {
    let mut g = c.benchmark_group("remset_store");
    g.throughput(Throughput::Elements((ARRAYS * SLOTS) as u64));
    for (name, generational, remset) in [
        ("off", false, RememberedSet::Cards),
        ("cards", true, RememberedSet::Cards),
        ("wp", true, RememberedSet::WriteProtect),
    ] {
        let heap = GcHeap::new(HeapConfig {
            capacity: 64 << 20,
            min_free: 32 << 20,
            strategy: Strategy::ConcurrentMove,
            generational,
            remembered_set: remset,
            verify: false,
            ..Default::default()
        })
        .expect("heap");
        let mut m = heap.attach().expect("attach");
        let layout = Layout::ref_array(1, SLOTS).expect("layout");
        for _ in 0..ARRAYS {
            let a = m.alloc(&layout).expect("alloc");
            // SAFETY: `a` was just allocated.
            unsafe { m.roots().push(Some(a)) };
        }
        let target = m
            .alloc(&Layout::record(2, 0, 8).expect("layout"))
            .expect("alloc");
        // SAFETY: `target` was just allocated.
        unsafe { m.roots().push(Some(target)) };
        let st = m.collect().expect("a full cycle: the arrays are old");
        if generational {
            let st = m.collect_young().expect("a young cycle");
            let used = st.remembered_set;
            if used != Some(remset) {
                println!("remset_store/{name}: young cycles use {used:?} here");
            }
        }
        assert!(!st.young);
        m.wait_idle();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                // SAFETY: the roots are current (no allocation, no
                // safepoint in the loop) and every index is in range.
                unsafe {
                    let roots = m.roots().clone();
                    let target = roots[ARRAYS];
                    for a in roots[..ARRAYS].iter().flatten() {
                        for i in 0..SLOTS {
                            m.store_slot(*a, i, black_box(target));
                        }
                    }
                }
            })
        });
    }
    g.finish();
}

/// `pages` resident pages registered `WP` on `uffd`.
fn wp_region(uffd: &Uffd, pages: usize) -> Mapping {
    let m = Mapping::new(pages * PAGE_SIZE, PAGE_SIZE, Prot::ReadWrite).expect("map");
    for p in 0..pages {
        // SAFETY: inside our own read-write mapping.
        unsafe { std::ptr::write_volatile((m.start() + p * PAGE_SIZE) as *mut u64, p as u64) };
    }
    uffd.register(m.start(), m.len(), RegisterMode::WP)
        .expect("register WP");
    m
}

fn write_pages(m: &Mapping, pages: impl Iterator<Item = usize>, v: u64) {
    for p in pages {
        // SAFETY: inside our own read-write mapping; a protected page's
        // write fault is resolved by the kernel (WP_ASYNC).
        unsafe { std::ptr::write_volatile((m.start() + p * PAGE_SIZE) as *mut u64, v) };
    }
}

fn first_write(c: &mut Criterion, uffd: &Uffd) {
    let m = wp_region(uffd, WRITE_PAGES);
    let mut g = c.benchmark_group("remset_first_write");
    g.throughput(Throughput::Elements(WRITE_PAGES as u64));
    for protected in [true, false] {
        let name = if protected { "protected" } else { "written" };
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    if protected {
                        uffd.writeprotect(m.start(), m.len(), true, false)
                            .expect("protect");
                    }
                    let t = Instant::now();
                    write_pages(&m, 0..WRITE_PAGES, i);
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
    // The last protected pass was fully recorded.
    uffd.writeprotect(m.start(), m.len(), true, false)
        .expect("protect");
    write_pages(&m, (0..WRITE_PAGES).step_by(3), 1);
    let pm = Pagemap::open().expect("pagemap");
    let mut out = Vec::new();
    pm.written(m.start(), m.start() + m.len(), &mut out)
        .expect("scan");
    let n: usize = out.iter().map(|(s, e)| (e - s) / PAGE_SIZE).sum();
    assert_eq!(n, WRITE_PAGES.div_ceil(3), "every written page reported");
}

fn scan_and_protect(c: &mut Criterion, uffd: &Uffd) {
    let pages = SCAN_BYTES / PAGE_SIZE;
    let m = wp_region(uffd, pages);
    let pm = Pagemap::open().expect("pagemap");
    let mut g = c.benchmark_group("remset_scan");
    g.throughput(Throughput::Elements(pages as u64));
    for pct in [1usize, 10, 50] {
        uffd.writeprotect(m.start(), m.len(), true, false)
            .expect("protect");
        // Spread the written pages evenly.
        let every = 100 / pct;
        write_pages(&m, (0..pages).step_by(every), 7);
        let expect = pages.div_ceil(every);
        g.bench_function(BenchmarkId::from_parameter(pct), |b| {
            let mut out = Vec::with_capacity(expect);
            b.iter(|| {
                out.clear();
                pm.written(m.start(), m.start() + m.len(), &mut out)
                    .expect("scan");
                let n: usize = out.iter().map(|(s, e)| (e - s) / PAGE_SIZE).sum();
                assert_eq!(n, expect);
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("remset_protect");
    g.throughput(Throughput::Elements(pages as u64));
    g.bench_function(BenchmarkId::from_parameter("64MiB"), |b| {
        b.iter(|| {
            uffd.writeprotect(m.start(), m.len(), true, false)
                .expect("protect")
        })
    });
    g.finish();
}
