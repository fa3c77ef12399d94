//! The kernel behaviour the write-protect remembered set (`generation`,
//! `HeapConfig::remembered_set`) relies on, checked live: a userfaultfd
//! with `WP_ASYNC` registering the heap `MISSING | WP` during a concurrent
//! cycle and `WP` alone between cycles, pages installed by `UFFDIO_MOVE`
//! and `UFFDIO_COPY` into that range, the flip's `mremap(MREMAP_DONTUNMAP)`
//! out of a protected range, and `PAGEMAP_SCAN` reading which pages were
//! written. If no userfaultfd with `WP_ASYNC` can be opened (older kernel,
//! no permission) each test prints `skipped: <reason>` and returns.

use std::ptr;

use movegc_gc::uffd::pagemap::Pagemap;
use movegc_gc::uffd::{CopyMode, Features, MoveMode, OpenOptions, RegisterMode, Uffd, PAGE_SIZE};

const PAGE: usize = PAGE_SIZE;

/// An anonymous read-write mapping of `pages` pages, unmapped on drop.
struct Map {
    base: usize,
    len: usize,
}

impl Map {
    fn new(pages: usize) -> Map {
        let len = pages * PAGE;
        // SAFETY: a fresh private anonymous mapping; nothing else is affected.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        Map {
            base: p as usize,
            len,
        }
    }

    fn page(&self, i: usize) -> usize {
        assert!(i * PAGE < self.len);
        self.base + i * PAGE
    }

    fn write(&self, i: usize, v: u64) {
        // SAFETY: inside our own read-write mapping (a missing registered
        // page is never written by these tests: every write is to a
        // present page or an unregistered range).
        unsafe { ptr::write_volatile(self.page(i) as *mut u64, v) }
    }

    fn read(&self, i: usize) -> u64 {
        // SAFETY: as for `write`; the page is present.
        unsafe { ptr::read_volatile(self.page(i) as *const u64) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used.
        unsafe { libc::munmap(self.base as *mut _, self.len) };
    }
}

/// A userfaultfd with `WP_ASYNC` and `MOVE`, and the pagemap; `None` after
/// printing why the test is skipped.
fn open_or_skip(test: &str) -> Option<(Uffd, Pagemap)> {
    let want = Features::WP_ASYNC | Features::WP_UNPOPULATED | Features::MOVE;
    let uffd = match Uffd::open(&OpenOptions::new().features(want)) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("skipped: {test}: {e}");
            return None;
        }
    };
    if !uffd.features().contains(want) {
        eprintln!(
            "skipped: {test}: WP_ASYNC, WP_UNPOPULATED or MOVE not granted ({:?})",
            uffd.features().names()
        );
        return None;
    }
    match Pagemap::open() {
        Ok(p) => Some((uffd, p)),
        Err(e) => {
            eprintln!("skipped: {test}: {e}");
            None
        }
    }
}

/// The written pages of `m` (page indexes), without re-protecting them.
fn written(pm: &Pagemap, m: &Map) -> Vec<usize> {
    let mut r = Vec::new();
    pm.written(m.base, m.base + m.len, &mut r)
        .expect("PAGEMAP_SCAN");
    r.into_iter()
        .flat_map(|(s, e)| (s - m.base) / PAGE..(e - m.base) / PAGE)
        .collect()
}

/// Pages installed by MOVE and by plain COPY into a `MISSING | WP` range
/// arrive writable and count as written; COPY with `MODE_WP` arrives
/// protected. Re-registering `WP` alone (the end of a cycle: no more
/// missing faults) keeps the registration, and protecting the range makes
/// every page clean until it is written again.
#[test]
fn pages_installed_into_a_wp_range_count_as_written_until_protected() {
    let Some((uffd, pm)) = open_or_skip("installed pages") else {
        return;
    };
    let heap = Map::new(4);
    let src = Map::new(4);
    for i in 0..4 {
        src.write(i, 0x100 + i as u64);
    }
    // The flip's state: every heap page missing, registered for both.
    // SAFETY: advice on our own mapping.
    assert_eq!(
        unsafe { libc::madvise(heap.base as *mut _, heap.len, libc::MADV_DONTNEED) },
        0
    );
    uffd.register(
        heap.base,
        heap.len,
        RegisterMode::MISSING | RegisterMode::WP,
    )
    .expect("register MISSING | WP");
    // SAFETY: the destinations are missing pages of a range registered on
    // this descriptor; the source pages are ours and unused afterwards.
    unsafe {
        uffd.move_pages(heap.page(0), src.page(0), PAGE, MoveMode::empty())
            .expect("MOVE into a MISSING | WP range");
        uffd.copy(heap.page(1), src.page(1), PAGE, CopyMode::empty())
            .expect("COPY");
        uffd.copy(heap.page(2), src.page(2), PAGE, CopyMode::WP)
            .expect("COPY with MODE_WP");
    }
    assert_eq!(
        written(&pm, &heap)[..],
        [0, 1, 3],
        "MOVE and COPY install writable pages; COPY_MODE_WP a protected one; \
         a missing page counts as written"
    );
    assert_eq!(
        (heap.read(0), heap.read(1), heap.read(2)),
        (0x100, 0x101, 0x102)
    );
    // The end of a cycle: missing faults off, write tracking on. Only
    // unregistering drops MISSING: registering WP over MISSING | WP is a
    // no-op (the range already has every flag asked for).
    uffd.unregister(heap.base, heap.len).expect("unregister");
    uffd.register(heap.base, heap.len, RegisterMode::WP)
        .expect("register WP alone");
    heap.write(3, 7); // a plain anonymous fault now: no missing handling
    uffd.writeprotect(heap.base, heap.len, true, false)
        .expect("protect");
    assert_eq!(written(&pm, &heap), Vec::<usize>::new());
    heap.write(1, 0x201);
    heap.write(1, 0x202); // the second write is free and changes nothing
    assert_eq!(
        written(&pm, &heap),
        vec![1],
        "one page written after protecting"
    );
    assert_eq!(heap.read(1), 0x202, "the kernel resolved the fault itself");
    // Reading does not count.
    assert_eq!(heap.read(2), 0x102);
    assert_eq!(written(&pm, &heap), vec![1]);
}

/// The flip of a cycle on a protected heap: `mremap(DONTUNMAP)` moves the
/// (protected) pages out, the heap range is registered `MISSING | WP` and
/// a page moved back arrives written; the pages left in the from-space are
/// the heap's bytes.
#[test]
fn the_flip_moves_protected_pages_out_and_back() {
    let Some((uffd, pm)) = open_or_skip("flip") else {
        return;
    };
    let heap = Map::new(4);
    let from = Map::new(4);
    for i in 0..4 {
        heap.write(i, 0x300 + i as u64);
    }
    uffd.register(heap.base, heap.len, RegisterMode::WP)
        .expect("register WP");
    uffd.writeprotect(heap.base, heap.len, true, false)
        .expect("protect");
    heap.write(2, 0x402);
    assert_eq!(written(&pm, &heap), vec![2]);
    // SAFETY: both ranges are ours and the same size; DONTUNMAP leaves the
    // heap range mapped and empty.
    let to = unsafe {
        libc::mremap(
            heap.base as *mut _,
            heap.len,
            heap.len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP,
            from.base as *mut libc::c_void,
        )
    };
    assert_eq!(
        to as usize,
        from.base,
        "mremap: {}",
        std::io::Error::last_os_error()
    );
    assert_eq!((from.read(0), from.read(2)), (0x300, 0x402));
    uffd.register(
        heap.base,
        heap.len,
        RegisterMode::MISSING | RegisterMode::WP,
    )
    .expect("register MISSING | WP after the flip");
    // SAFETY: a missing page of the registered range; the from-space page
    // is ours.
    unsafe { uffd.move_pages(heap.page(2), from.page(2), PAGE, MoveMode::empty()) }
        .expect("MOVE back (no EEXIST: the flip left no marker behind)");
    assert_eq!(heap.read(2), 0x402);
    let w = written(&pm, &heap);
    assert!(w.contains(&2), "a moved-back page is written: {w:?}");
    uffd.unregister(heap.base, heap.len).expect("unregister");
    uffd.register(heap.base, heap.len, RegisterMode::WP)
        .expect("register WP alone");
    // Fill the rest as a cycle would, then protect: all clean.
    for i in [0, 1, 3] {
        // SAFETY: as above.
        unsafe { uffd.move_pages(heap.page(i), from.page(i), PAGE, MoveMode::empty()) }
            .unwrap_or_else(|e| panic!("MOVE page {i}: {e}"));
    }
    uffd.writeprotect(heap.base, heap.len, true, false)
        .expect("protect");
    assert_eq!(written(&pm, &heap), Vec::<usize>::new());
    heap.write(0, 1);
    assert_eq!(written(&pm, &heap), vec![0]);
}

/// `PAGEMAP_SCAN` with `PM_SCAN_CHECK_WPASYNC` refuses a range that is not
/// registered for async write-protection (the state a forked child's heap
/// starts in: the child inherits no registration): the collector must
/// treat the whole old region as written there.
#[test]
fn an_unregistered_range_is_refused_not_reported_clean() {
    let Some((_uffd, pm)) = open_or_skip("unregistered") else {
        return;
    };
    let heap = Map::new(2);
    heap.write(0, 1);
    let mut r = Vec::new();
    let e = pm
        .written(heap.base, heap.base + heap.len, &mut r)
        .expect_err("an unregistered range");
    assert!(
        e.to_string().contains("EPERM") || e.to_string().contains("Operation not permitted"),
        "{e}"
    );
}
