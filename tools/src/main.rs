//! The `movegc` command line.
//!
//! * `movegc probe [--json]`: can this machine compact concurrently, and if
//!   not, why. The JSON form is a stable interface (see `probe_json`).
//! * `movegc bench [--quick] [--json] ..`: the MOVE-vs-COPY benchmark suite
//!   (see `bench`).

mod bench;

use clap::{Parser, Subcommand};
use movegc_gc::probe::{self, Check, ProbeReport};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "movegc",
    version,
    about = "movegc: a concurrently compacting GC built on userfaultfd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Report whether userfaultfd concurrent compaction works here, and why.
    Probe {
        /// Print a JSON object instead of the human-readable report.
        #[arg(long)]
        json: bool,
    },
    /// Run the MOVE-vs-COPY benchmark suite: table, results.json, report.md, plots.
    Bench(Box<bench::BenchArgs>),
}

fn main() {
    bench::child_main();
    let cli = Cli::parse();
    match cli.command {
        Command::Probe { json } => {
            let r = probe::run();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&probe_json(&r)).expect("JSON")
                );
            } else {
                print!("{}", probe_text(&r));
            }
        }
        Command::Bench(args) => std::process::exit(bench::run(&args)),
    }
}

fn check_json(c: &Check) -> Value {
    json!({ "ok": c.ok, "detail": c.detail })
}

/// The stable JSON form of a probe report. Keys guaranteed for scripts:
/// `kernel` (string), `open_path` (string, `"none"` if nothing opened),
/// `features` (granted feature names), `checks` (booleans `move`, `copy`,
/// `fault_roundtrip`, `ebusy_after_fork`), `strategy` (`"concurrent-move"`,
/// `"concurrent-copy"` or `"stop-the-world"`), `reason`. Extra keys give
/// details and may grow.
fn probe_json(r: &ProbeReport) -> Value {
    json!({
        "kernel": r.kernel,
        "euid": r.euid,
        "unprivileged_userfaultfd": r.unprivileged_userfaultfd,
        "dev_userfaultfd": {
            "present": r.device.present,
            "mode": r.device.mode,
            "uid": r.device.owner.map(|o| o.0),
            "gid": r.device.owner.map(|o| o.1),
        },
        "thp": r.thp,
        "open_path": r.open_path.clone().unwrap_or_else(|| "none".into()),
        "open_error": r.open_error,
        "open_attempts": r.attempts.iter().map(|a| json!({
            "path": a.path.as_str(), "ok": a.ok, "errno": a.errno, "reason": a.reason,
        })).collect::<Vec<_>>(),
        "paths": r.paths.iter().map(|a| json!({
            "path": a.path.as_str(), "ok": a.ok, "errno": a.errno, "reason": a.reason,
        })).collect::<Vec<_>>(),
        "features": r.granted.names(),
        "features_sigbus_mode": r.granted_sigbus.names(),
        "supported_features": r.supported.names(),
        "register_ioctls": r.register_ioctls.names(),
        "checks": {
            "move": r.check_move.ok,
            "copy": r.check_copy.ok,
            "fault_roundtrip": r.check_fault_roundtrip.ok,
            "ebusy_after_fork": r.check_ebusy_after_fork.ok,
            "wp_async": r.check_wp_async.ok,
            "sigbus": r.check_sigbus.ok,
            "poison": r.check_poison.ok,
        },
        "check_details": {
            "move": check_json(&r.check_move),
            "copy": check_json(&r.check_copy),
            "fault_roundtrip": check_json(&r.check_fault_roundtrip),
            "ebusy_after_fork": check_json(&r.check_ebusy_after_fork),
            "wp_async": check_json(&r.check_wp_async),
            "sigbus": check_json(&r.check_sigbus),
            "poison": check_json(&r.check_poison),
        },
        "strategy": r.capability.name(),
        "reason": r.reason,
    })
}

fn yes(b: bool) -> &'static str {
    if b {
        "ok  "
    } else {
        "FAIL"
    }
}

fn probe_text(r: &ProbeReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "movegc probe");
    let _ = writeln!(s, "  kernel                      {}", r.kernel);
    let _ = writeln!(s, "  running as uid              {}", r.euid);
    let _ = writeln!(
        s,
        "  vm.unprivileged_userfaultfd {}",
        r.unprivileged_userfaultfd
            .as_deref()
            .unwrap_or("(unreadable)")
    );
    let dev = if r.device.present {
        let (u, g) = r.device.owner.unwrap_or((0, 0));
        format!("{} uid={u} gid={g}", r.device.mode)
    } else {
        "absent".into()
    };
    let _ = writeln!(s, "  /dev/userfaultfd            {dev}");
    let _ = writeln!(
        s,
        "  transparent huge pages      {}",
        r.thp.as_deref().unwrap_or("(unknown)")
    );
    let _ = writeln!(s, "\nopening userfaultfd (least privilege first)");
    for a in &r.attempts {
        let _ = writeln!(
            s,
            "  {} {:<16} {}",
            if a.ok { "ok  " } else { "no  " },
            a.path.as_str(),
            a.reason
        );
    }
    let _ = writeln!(s, "each path on its own");
    for a in &r.paths {
        let _ = writeln!(
            s,
            "  {} {:<16} {}",
            if a.ok { "ok  " } else { "no  " },
            a.path.as_str(),
            a.reason
        );
    }
    if let Some(e) = &r.open_error {
        let _ = writeln!(s, "  => {e}");
    }
    let _ = writeln!(
        s,
        "\nfeatures granted    {} (handler-thread descriptor)",
        r.granted.names().join(" ")
    );
    let _ = writeln!(
        s,
        "                    {} (SIGBUS-mode descriptor, the default)",
        r.granted_sigbus.names().join(" ")
    );
    let _ = writeln!(s, "features supported  {}", r.supported.names().join(" "));
    let _ = writeln!(
        s,
        "register ioctls     {}",
        r.register_ioctls.names().join(" ")
    );
    let _ = writeln!(s, "\nlive checks");
    for (name, c) in [
        ("UFFDIO_MOVE one page", &r.check_move),
        ("UFFDIO_COPY one page", &r.check_copy),
        ("fault via SIGBUS (default)", &r.check_sigbus),
        ("fault via handler thread", &r.check_fault_roundtrip),
        ("EBUSY after fork", &r.check_ebusy_after_fork),
        ("WP_ASYNC + PAGEMAP_SCAN", &r.check_wp_async),
        ("UFFDIO_POISON", &r.check_poison),
    ] {
        let _ = writeln!(s, "  {} {:<26} {}", yes(c.ok), name, c.detail);
    }
    let _ = writeln!(s, "\nstrategy: {}\n  {}", r.capability.name(), r.reason);
    s
}
