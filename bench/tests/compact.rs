//! Smoke tests of the compaction workload (`movegc_bench::compact::run`): a
//! small fragmented heap, one collection per strategy with a mutator running,
//! data verified (`run` panics otherwise), and the install counters say the
//! strategy did what it claims.

use movegc_bench::compact::{run, CompactParams, CompactResult};
use movegc_gc::concurrent::FaultMode;
use movegc_gc::uffd::{Features, OpenOptions, Uffd};
use movegc_gc::Strategy;

/// 32 MiB at 50 % live: 16 MiB of to-space, i.e. eight 2 MiB blocks, so
/// MOVE has recycled pages for every block but the top one.
fn params(strategy: Strategy, fault_mode: FaultMode) -> CompactParams {
    CompactParams {
        heap_mib: 32,
        live_fraction: 0.5,
        prefix: 0.0,
        mutator_threads: 1,
        strategy,
        fault_mode,
        gc_threads: Some(2),
        think_us: 5,
        warm: false,
        seed: 42,
        edge_span: 0,
    }
}

/// Why the concurrent strategies cannot run here, if they cannot.
fn uffd_unavailable(need_move: bool) -> Option<String> {
    match Uffd::open(&OpenOptions::default()) {
        Err(e) => Some(format!("userfaultfd is unavailable: {e}")),
        Ok(u) if need_move && !u.features().contains(Features::MOVE) => {
            Some("UFFDIO_MOVE is unavailable (kernel older than 6.8?)".into())
        }
        Ok(_) => None,
    }
}

fn common_checks(r: &CompactResult) {
    assert!(r.verified);
    assert!(r.objects_live > 0 && r.objects_live < r.objects_allocated);
    assert!(
        (r.live_mib - 16.0).abs() < 1.0,
        "about half of 32 MiB should be live: {r:?}"
    );
    assert!(r.pages_compacted > 0, "nothing compacted: {r:?}");
    assert!(r.moved_mib > 0.0, "nothing moved: {r:?}");
    assert!(r.compaction_ms > 0.0);
    // The tail is what follows the compaction, with no marking or pause
    // in it (stop-the-world: its release phase, inside its one pause).
    assert!(r.tail_ms > 0.0, "{r:?}");
    if r.strategy == "stop-the-world" {
        assert_eq!(r.tail_ms, r.release_ms, "{r:?}");
    } else {
        let before = r.pause_ms + r.initial_pause_ms + r.mark_ms;
        assert!(
            r.tail_ms + r.compaction_ms + before <= r.cycle_ms + 1e-6,
            "{r:?}"
        );
    }
    if r.initial_pause_ms > 0.0 {
        // Concurrent marking: marking ran between the two pauses; the
        // final pause holds only what was left of it.
        assert!(r.strategy != "stop-the-world");
        assert!(r.pause_ms >= r.remark_ms);
    } else {
        assert!(r.pause_ms >= r.mark_ms);
    }
    assert!(r.mutator_total_accesses > 0, "the mutator never ran: {r:?}");
}

/// Every compacted page was installed exactly once, by MOVE or COPY (a
/// page found installed already counts as `eexist`).
fn installs_add_up(r: &CompactResult) {
    let installed = r.pages_moved + r.pages_copied;
    assert!(
        installed <= r.pages_compacted && installed + r.eexist >= r.pages_compacted,
        "{} moved + {} copied (+{} EEXIST) for {} compacted pages",
        r.pages_moved,
        r.pages_copied,
        r.eexist,
        r.pages_compacted
    );
}

#[test]
fn stop_the_world_compacts_and_keeps_the_data() {
    let r = run(&params(Strategy::StopTheWorld, FaultMode::Sigbus));
    assert_eq!(r.strategy, "stop-the-world");
    common_checks(&r);
    assert_eq!(r.pages_moved + r.pages_copied, 0);
    assert_eq!(r.faults, 0);
}

fn concurrent_move(fault_mode: FaultMode) {
    if let Some(why) = uffd_unavailable(true) {
        eprintln!("skipping concurrent MOVE: {why}");
        return;
    }
    let r = run(&params(Strategy::ConcurrentMove, fault_mode));
    assert_eq!(r.strategy, "concurrent-move", "{r:?}");
    common_checks(&r);
    installs_add_up(&r);
    assert!(r.pages_moved > 0, "no page was moved: {r:?}");
    // Only the top block (no dead tail above it) and pages resolved by the
    // mutator's faults may go through COPY.
    assert!(
        r.pages_moved >= r.pages_compacted / 2,
        "most pages should be moved: {r:?}"
    );
    assert!(r.move_ioctls > 0);
    assert_eq!(r.madvise_calls, 0, "MOVE mode must not madvise: {r:?}");
}

#[test]
fn concurrent_move_moves_pages_without_madvise() {
    concurrent_move(FaultMode::Sigbus);
}

#[test]
fn concurrent_move_with_a_fault_handler_thread() {
    concurrent_move(FaultMode::HandlerThread);
}

#[test]
fn concurrent_copy_copies_every_page_and_frees_with_madvise() {
    if let Some(why) = uffd_unavailable(false) {
        eprintln!("skipping concurrent COPY: {why}");
        return;
    }
    let r = run(&params(Strategy::ConcurrentCopy, FaultMode::Sigbus));
    assert_eq!(r.strategy, "concurrent-copy", "{r:?}");
    common_checks(&r);
    installs_add_up(&r);
    assert_eq!(r.pages_moved, 0);
    assert_eq!(r.move_ioctls, 0);
    assert!(
        r.madvise_calls > 0,
        "COPY frees the from-space with madvise"
    );
}

/// With half the heap all live at its bottom, every strategy keeps that
/// half as a dense prefix (fixed in place, not compacted) while a mutator
/// walks and writes the whole graph, and the data survives; under MOVE the
/// prefix pages go back by `UFFDIO_MOVE`, under COPY by `UFFDIO_COPY`.
#[test]
fn a_dense_prefix_is_kept_in_place_under_every_strategy() {
    let prefix_pages = 16 * 256; // half of 32 MiB
    for strategy in [
        Strategy::StopTheWorld,
        Strategy::ConcurrentMove,
        Strategy::ConcurrentCopy,
    ] {
        if strategy.is_concurrent() {
            if let Some(why) = uffd_unavailable(strategy == Strategy::ConcurrentMove) {
                eprintln!("skipping {}: {why}", strategy.name());
                continue;
            }
        }
        let p = CompactParams {
            prefix: 0.5,
            ..params(strategy, FaultMode::Sigbus)
        };
        let r = run(&p);
        assert_eq!(r.strategy, strategy.name(), "{r:?}");
        assert!(r.verified);
        // 16 MiB all live + a quarter of the other 16 MiB... half of it.
        assert!((r.live_mib - 24.0).abs() < 1.0, "{r:?}");
        assert!(
            r.dense_pages >= prefix_pages - 2 && r.dense_pages <= prefix_pages + 64,
            "{} dense pages, about {prefix_pages} expected: {r:?}",
            r.dense_pages
        );
        assert!(r.pages_compacted > 0 && r.pages_compacted < prefix_pages);
        // A concurrent cycle installs every compacted page and puts every
        // prefix page back, once.
        let installed = r.pages_moved + r.pages_copied + r.eexist;
        match strategy {
            Strategy::ConcurrentMove => {
                assert_eq!(installed, r.pages_compacted + r.dense_pages, "{r:?}");
                assert!(r.pages_moved >= r.dense_pages / 2, "{r:?}");
                assert_eq!(r.madvise_calls, 0);
            }
            Strategy::ConcurrentCopy => {
                assert_eq!(installed, r.pages_compacted + r.dense_pages, "{r:?}");
                assert_eq!(r.pages_moved, 0);
            }
            _ => assert_eq!(installed, 0),
        }
    }
    let e = CompactParams::parse_spec("prefix=1").unwrap_err();
    assert!(e.contains("prefix 1 must be in [0, 1)"), "{e}");
}

#[test]
fn parameters_round_trip_and_reject_bad_values() {
    let p = params(Strategy::ConcurrentCopy, FaultMode::HandlerThread);
    assert_eq!(CompactParams::parse_spec(&p.to_spec()), Ok(p));
    assert!(CompactParams::parse_spec("mutators=9").is_err());
    assert!(CompactParams::parse_spec("live=1.5").is_err());
    assert!(CompactParams::parse_spec("strategy=fast").is_err());
}
