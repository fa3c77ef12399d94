//! The zygote prototype, short: 2 apps x 60 frames under every strategy.
//! Every app must report, with its data intact and sane numbers.
//!
//! How forking from a test stays safe: the test thread calls
//! `zygote_lib::run`, which never builds a heap in this (multi-threaded,
//! harness-owned) process. It forks a zygote child per strategy; that
//! child has only the forking thread, builds its own heap and forks the
//! apps while its only other threads are the collector's idle workers.
//! Children leave through `_exit` and never return into the harness; every
//! wait has a deadline after which stragglers are killed, so a hung child
//! fails the test instead of hanging it (the second half checks exactly
//! that). This is the only test in this binary, so no other test thread
//! can hold a lock at the fork.

use std::time::{Duration, Instant};

use movegc::Strategy;
use movegc_examples::zygote_lib::{run, Config};
use movegc_gc::uffd::{Features, OpenOptions, Uffd};

#[test]
fn apps_forked_from_a_zygote_keep_their_data_under_every_strategy() {
    let cfg = Config {
        apps: 2,
        frames: 60,
        workers: 1,
        // Collect every 4 MiB (not more, however much CPU the collector
        // takes) so even an unoptimised build collects during one second
        // of frames.
        min_free_mib: 4,
        fixed_budget: true,
        ..Config::default()
    };
    let rep = run(&cfg);
    eprintln!("{}", rep.table());
    let failures = rep.failures();
    assert!(failures.is_empty(), "failures: {failures:#?}");

    assert_eq!(rep.strategies.len(), 3);
    let uffd_move = Uffd::open(&OpenOptions::new().require_features(Features::MOVE)).is_ok();
    let keeps = std::env::var("MOVEGC_KEEP_CLEAN_PREFIX").map_or(true, |v| v != "0");
    for s in &rep.strategies {
        let name = &s.requested;
        let apps: Vec<usize> = s.apps.iter().map(|a| a.app).collect();
        assert_eq!(apps, vec![0, 1], "{name}: every app reports once");
        assert!(s.preload_live_mib > 5.0, "{name}: preload {s:?}");
        if name == "concurrent-move" && uffd_move {
            assert_eq!(
                s.effective, "concurrent-move",
                "{name}: no fallback expected"
            );
        }
        for a in &s.apps {
            let who = format!("{name} app {}", a.app);
            assert!(a.errors.is_empty(), "{who}: {:?}", a.errors);
            assert_eq!(a.frames, cfg.frames, "{who}: frames");
            assert!(a.frames_missed <= a.frames, "{who}: missed");
            assert!(
                0 < a.frame_p50_us
                    && a.frame_p50_us <= a.frame_p99_us
                    && a.frame_p99_us <= a.frame_max_us,
                "{who}: frame times {} / {} / {} us",
                a.frame_p50_us,
                a.frame_p99_us,
                a.frame_max_us
            );
            assert!(a.collections > 0, "{who}: no collection during the frames");
            assert!(a.worker_batches > 0, "{who}: the worker did not allocate");
            assert!(a.rss_kib > 0 && a.pss_kib > 0, "{who}: memory {a:?}");
            assert!(a.pss_kib <= a.rss_kib, "{who}: PSS above RSS");
            assert!(a.pause_p99_us <= a.pause_max_us, "{who}: pauses");
            if s.effective == "concurrent-move" {
                assert!(
                    a.pages_moved + a.pages_copied > 0,
                    "{who}: a concurrent cycle installed no page"
                );
                assert!(
                    a.strategy.contains("concurrent-move"),
                    "{who}: {}",
                    a.strategy
                );
            }
            if s.effective == "stop-the-world" {
                assert_eq!(a.faults, 0, "{who}: faults without concurrent cycles");
            }
            // Every fault of the frames phase is the UI thread's or a
            // worker's (the UI thread attached in the zygote, its thread
            // id changed in the fork: still charged to it). The threads'
            // counts also hold their first touches of fresh allocation
            // pages, which the cycles' `faults` leave out.
            assert!(
                a.ui_faults.faults + a.worker_faults.faults >= a.faults,
                "{who}: faults by thread {:?} + {:?}",
                a.ui_faults,
                a.worker_faults
            );
            // The first collection after the fork: the compacted preload is
            // the dense prefix, shared with the zygote until then.
            let f = &a.first_cycle;
            assert!(f.dense_pages > 0, "{who}: no dense prefix: {f:?}");
            assert!(
                f.shared_before_kib > 0,
                "{who}: nothing shared after fork: {f:?}"
            );
            if s.effective.starts_with("concurrent") && keeps {
                // The clean run at the bottom of the preload (the app has
                // not written it) stays out of the flip and shared with
                // the zygote; a prefix page above it goes out and back,
                // and one still shared cannot be moved back (`EBUSY`) and
                // is copied (docs/design.md, the dense prefix). So the
                // sharing lost is at most the flipped prefix pages and
                // what the app wrote elsewhere (a quarter of the preload's
                // pages: generous).
                assert!(f.kept_pages <= f.dense_pages, "{who}: {f:?}");
                let flipped_kib = (f.dense_pages - f.kept_pages) * 4;
                assert!(
                    f.shared_after_kib + flipped_kib + f.dense_pages >= f.shared_before_kib,
                    "{who}: the kept pages stay shared: {f:?}"
                );
            }
        }
        if s.effective.starts_with("concurrent") && keeps {
            let kept: u64 = s.apps.iter().map(|a| a.first_cycle.kept_pages).sum();
            assert!(kept > 0, "{name}: no app kept its clean preload in place");
        }
    }

    // An app that hangs is killed at its deadline and reported as missing;
    // the other app's report still arrives and the run ends.
    let hang = Config {
        apps: 2,
        frames: 10,
        workers: 0,
        strategies: vec![Strategy::StopTheWorld],
        app_timeout: Some(Duration::from_secs(10)),
        hang_app: Some(1),
        ..Config::default()
    };
    let t = Instant::now();
    let rep = run(&hang);
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
    let s = &rep.strategies[0];
    let apps: Vec<usize> = s.apps.iter().map(|a| a.app).collect();
    assert_eq!(apps, vec![0], "{s:?}");
    assert!(s.apps[0].errors.is_empty(), "{:?}", s.apps[0].errors);
    let errors = s.errors.join("\n");
    assert!(
        errors.contains("app 1") && errors.contains("no report"),
        "{errors}"
    );
    assert!(errors.contains("killed"), "{errors}");

    // The stale-reference mode: the apps' freed memory is poisoned after
    // every collection, and a correct program (this one) never reads it:
    // every app reports, none was stopped by a stale-access report.
    let poison_ok = Uffd::open(&OpenOptions::new().require_features(Features::POISON)).is_ok();
    if !poison_ok {
        eprintln!("skipped: the zygote's poison run: UFFD_FEATURE_POISON not granted");
        return;
    }
    let poisoned = Config {
        apps: 2,
        frames: 30,
        workers: 1,
        min_free_mib: 4,
        fixed_budget: true,
        strategies: vec![Strategy::ConcurrentMove],
        poison: true,
        ..Config::default()
    };
    let rep = run(&poisoned);
    eprintln!("{}", rep.table());
    let failures = rep.failures();
    assert!(failures.is_empty(), "failures: {failures:#?}");
    for a in &rep.strategies[0].apps {
        assert!(a.collections > 0, "app {}: no collection", a.app);
        assert!(
            a.poisoned_pages > 0,
            "app {}: nothing poisoned: {a:?}",
            a.app
        );
    }
    assert!(rep.table().contains("stale-reference:"), "{}", rep.table());
}
