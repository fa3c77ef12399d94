//! binary-trees on movegc and on `Box` produces the Benchmarks Game's output,
//! and on movegc it survives (many) collections that move the trees.

use movegc::Heap;
use movegc_bench::binary_trees::{
    self, expected_checks, run_boxed, run_movegc, run_movegc_with, Scheme,
};

/// The Benchmarks Game's output for n = 10, verbatim.
const EXPECTED_10: &str = "stretch tree of depth 11\t check: 4095
1024\t trees of depth 4\t check: 31744
256\t trees of depth 6\t check: 32512
64\t trees of depth 8\t check: 32704
16\t trees of depth 10\t check: 32752
long lived tree of depth 10\t check: 2047
";

/// ... and for n = 6 (also what any n below 6 prints).
const EXPECTED_6: &str = "stretch tree of depth 7\t check: 255
64\t trees of depth 4\t check: 1984
16\t trees of depth 6\t check: 2032
long lived tree of depth 6\t check: 127
";

fn lines(text: &str) -> Vec<String> {
    text.lines().map(String::from).collect()
}

/// A 32 MiB heap that collects after every MiB allocated, so every run
/// goes through many collections (the verifier checks the heap after each
/// one in debug builds).
fn small_heap() -> Heap {
    Heap::builder()
        .capacity(32 << 20)
        .min_free(1 << 20)
        .gc_cpu_target(None)
        .build()
        .expect("heap")
}

#[test]
fn expected_checks_match_the_reference_output() {
    assert_eq!(expected_checks(10), lines(EXPECTED_10));
    assert_eq!(expected_checks(6), lines(EXPECTED_6));
    for n in 0..6 {
        assert_eq!(expected_checks(n), lines(EXPECTED_6), "n = {n}");
    }
}

#[test]
fn boxed_prints_the_reference_output() {
    assert_eq!(run_boxed(10).lines, lines(EXPECTED_10));
    assert_eq!(run_boxed(6).lines, lines(EXPECTED_6));
    assert_eq!(run_boxed(12).lines, expected_checks(12));
}

#[test]
fn movegc_prints_the_reference_output_and_collects() {
    let heap = small_heap();
    let out = run_movegc(&heap, 10).expect("binary-trees on movegc");
    assert_eq!(out.lines, lines(EXPECTED_10));
    assert_eq!(out.lines, expected_checks(10));
    // A concurrent cycle may still be finishing (no mutator on this thread).
    heap.wait_idle().expect("no running mutator here");
    let st = heap.stats();
    assert!(st.cycles > 0, "no collection ran: {st:?}");
    // The mutator is gone: nothing but what the next cycle frees is left.
    let out = run_movegc(&heap, 6).expect("second run on the same heap");
    assert_eq!(out.lines, lines(EXPECTED_6));
}

#[test]
fn every_scheme_is_correct_under_frequent_collections() {
    // Collect every 16 KiB: objects move in the middle of building and of
    // checking trees, so a handle bug would show up as a wrong count, a
    // stale-handle error or a verifier failure.
    let heap = Heap::builder()
        .capacity(8 << 20)
        .min_free(16 << 10)
        // A fixed budget: the CPU target would space the cycles out.
        .gc_cpu_target(None)
        .strategy(movegc::Strategy::StopTheWorld)
        .build()
        .expect("heap");
    let mut m = heap.attach().expect("attach");
    for scheme in [
        Scheme::ScopePerNode,
        Scheme::Batched { levels: 1 },
        Scheme::Batched { levels: 3 },
        Scheme::default(),
        Scheme::Batched { levels: 64 },
        Scheme::Typed,
    ] {
        m.wait_idle();
        let before = heap.stats().cycles;
        let out = run_movegc_with(&mut m, 8, scheme).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
        assert_eq!(out.lines, expected_checks(8), "{scheme:?}");
        m.wait_idle();
        assert!(
            heap.stats().cycles > before + 10,
            "{scheme:?}: too few collections: {} -> {}",
            before,
            heap.stats().cycles
        );
        assert_eq!(m.handle_count(), 0, "{scheme:?} leaked handles");
    }
    let out = run_movegc_with(&mut m, 6, Scheme::default()).unwrap();
    assert_eq!(out.lines, lines(EXPECTED_6));
}

#[test]
fn the_engine_version_is_correct_under_frequent_collections() {
    use movegc_gc::{GcHeap, HeapConfig, Strategy};
    for strategy in [Strategy::StopTheWorld, Strategy::ConcurrentMove] {
        let heap = GcHeap::new(HeapConfig {
            capacity: 8 << 20,
            min_free: 16 << 10,
            gc_cpu_target: None,
            strategy,
            verify: true,
            ..HeapConfig::default()
        })
        .expect("heap");
        // Twice on the same heap: the second run starts from the first's
        // garbage.
        for _ in 0..2 {
            let before = heap.stats().cycles;
            let out = binary_trees::engine::run(&heap, 8).expect("engine binary-trees");
            assert_eq!(out.lines, expected_checks(8), "{strategy:?}");
            heap.wait_idle().expect("no mutator on this thread");
            // Concurrent cycles overlap the allocation that starts the
            // next, so there are fewer of them.
            let want = if strategy == Strategy::StopTheWorld {
                10
            } else {
                0
            };
            let ran = heap.stats().cycles - before;
            assert!(ran > want, "{strategy:?}: {ran} collections");
        }
    }
}

#[test]
fn movegc_reports_exhaustion_instead_of_failing_badly() {
    // Depth 16's long-lived tree alone is 3 MiB: it cannot fit 2 MiB.
    let heap = Heap::builder().capacity(2 << 20).build().expect("heap");
    let err = run_movegc(&heap, 16).expect_err("must not fit");
    assert!(matches!(err, movegc::Error::HeapExhausted { .. }), "{err}");
    // The heap is still usable afterwards.
    assert_eq!(
        run_movegc(&heap, 6).expect("small run").lines,
        lines(EXPECTED_6)
    );
}

#[test]
fn run_movegc_needs_a_free_thread() {
    let heap = small_heap();
    let _m = heap.attach().expect("attach");
    assert!(matches!(
        run_movegc(&heap, 6),
        Err(movegc::Error::AlreadyAttached)
    ));
}

#[test]
fn counts_and_hash_helpers() {
    assert_eq!(binary_trees::tree_nodes(0), 1);
    assert_eq!(binary_trees::tree_nodes(10), 2047);
    assert_eq!(binary_trees::max_depth(21), 21);
    assert_eq!(
        binary_trees::total_nodes(10),
        4095 + 2047 + 31744 + 32512 + 32704 + 32752
    );
    let a = binary_trees::lines_hash(&expected_checks(10));
    assert_eq!(a, binary_trees::lines_hash(&lines(EXPECTED_10)));
    assert_ne!(a, binary_trees::lines_hash(&expected_checks(12)));
}
