//! `movegc probe --json` parses, has the stable keys, and agrees with the
//! library's own probe.

use std::process::Command;

use movegc_gc::probe;
use serde_json::Value;

fn run_json() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_movegc"))
        .args(["probe", "--json"])
        .output()
        .expect("run movegc");
    assert!(
        out.status.success(),
        "movegc probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("probe --json prints one JSON object")
}

#[test]
fn probe_json_has_the_stable_keys_and_agrees_with_the_library() {
    let j = run_json();
    let lib = probe::run();
    assert_eq!(j["kernel"].as_str(), Some(lib.kernel.as_str()));
    let strategy = j["strategy"].as_str().expect("strategy is a string");
    assert!(["concurrent-move", "concurrent-copy", "stop-the-world"].contains(&strategy));
    assert_eq!(strategy, lib.capability.name());
    assert_eq!(
        j["open_path"].as_str(),
        Some(lib.open_path.as_deref().unwrap_or("none"))
    );
    let features: Vec<&str> = j["features"]
        .as_array()
        .expect("features array")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(features, lib.granted.names());
    for (key, check) in [
        ("move", &lib.check_move),
        ("copy", &lib.check_copy),
        ("fault_roundtrip", &lib.check_fault_roundtrip),
        ("ebusy_after_fork", &lib.check_ebusy_after_fork),
        ("wp_async", &lib.check_wp_async),
        ("sigbus", &lib.check_sigbus),
        ("poison", &lib.check_poison),
    ] {
        assert_eq!(
            j["checks"][key].as_bool(),
            Some(check.ok),
            "check {key}: {}",
            check.detail
        );
    }
    // The conclusion follows from the checks.
    let (cap, _) = probe::decide(&lib);
    assert_eq!(cap, lib.capability);
    if lib.open_path.is_none() {
        eprintln!("note: userfaultfd unavailable here: {}", lib.reason);
        assert_eq!(strategy, "stop-the-world");
    } else if features.contains(&"MOVE") && lib.check_move.ok {
        assert_eq!(strategy, "concurrent-move");
    }
}

#[test]
fn probe_text_names_the_strategy() {
    let out = Command::new(env!("CARGO_BIN_EXE_movegc"))
        .arg("probe")
        .output()
        .expect("run movegc");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("strategy: "), "{text}");
    assert!(text.contains("live checks"));
    assert!(text.contains(probe::run().capability.name()));
}

#[test]
fn unknown_arguments_are_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_movegc"))
        .args(["probe", "--bogus"])
        .output()
        .expect("run movegc");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}
