#!/usr/bin/env bash
# Young collections on vs off, side by side: binary-trees and gcbench under
# concurrent MOVE and stop-the-world, REPEATS rounds, each round running
# both settings (order alternating) through `movegc bench` (which itself
# alternates the strategies, one child process per run). Prints a table of
# medians; writes every run to results.jsonl here.
# Usage: docs/bench/generational/run.sh [REPEATS]   (default 3, ~2 min)
set -euo pipefail
cd "$(dirname "$0")/../../.."
reps=${1:-3}
out=docs/bench/generational/results.jsonl
: > "$out"
cargo build --release -q --bin movegc
for r in $(seq 1 "$reps"); do
  order="0 1"; [ $((r % 2)) = 0 ] && order="1 0"
  for g in $order; do
    MOVEGC_GENERATIONAL=$g ./target/release/movegc bench --workloads binary-trees,gcbench \
      --strategies move,stw --repeat 1 --json --out "target/movegc-bench/gen-ab-$r-$g" \
      | python3 -c '
import json, sys
d = json.load(sys.stdin)
for x in d["results"]:
    pc = x["per_cycle"]
    print(json.dumps({"generational": int(sys.argv[1]), "workload": x["workload"],
        "strategy": x["strategy"], "wall_s": x["wall_s"], "cpu_s": x["cpu_s"],
        "cycles": x["cycles"], "compaction_ms": x["compaction_ms"],
        "mark_ms": sum(c["mark_ms"] for c in pc), "pause_max_ms": x["pause_ms"]["max"],
        "ttsp_max_ms": max(c["time_to_safepoint_ms"] for c in pc),
        "pages_moved": x["pages_moved"], "peak_rss_mib": x["peak_rss_bytes"] / 2**20}))' "$g" >> "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ["wall_s", "cpu_s", "cycles", "compaction_ms", "mark_ms", "pause_max_ms", "ttsp_max_ms", "peak_rss_mib"]
print("| workload | strategy | young | n | " + " | ".join(keys) + " |")
print("|---" * (4 + len(keys)) + "|")
for w in ["binary-trees", "gcbench"]:
    for s in ["concurrent-move", "stop-the-world"]:
        for g in [0, 1]:
            rs = [r for r in rows if r["workload"] == w and r["strategy"] == s and r["generational"] == g]
            if rs:
                med = [st.median(r[k] for r in rs) for k in keys]
                print(f"| {w} | {s} | {'on' if g else 'off'} | {len(rs)} | " + " | ".join(f"{v:.3g}" for v in med) + " |")
PY
