#!/usr/bin/env bash
# Interleaved A/B of two server binaries on one ingest scenario: PAIRS pairs of runs, each on a
# fresh server, base and change back to back with the order alternating per pair, then the
# medians of events/s, p99, server CPU per event and log bytes per event, and their ratios.
# Alternating is what makes a comparison hold on a noisy machine: drift hits both sides alike.
#
# usage: bench/ab.sh PAIRS BASE_SHOAL CHANGE_SHOAL SHOAL_BENCH -- INGEST_ARGS...
#   e.g. bench/ab.sh 3 /tmp/shoal-base target/release/shoal target/release/shoal-bench \
#          -- --connections 64 --batch 1 --duration 10 --warmup 2
# Copy the binaries first (cp target/release/shoal /tmp/shoal-base) so a build cannot swap
# them mid-run. JSON lines of every run go to $AB_OUT (default: a new temporary directory).
set -euo pipefail

if [ $# -lt 5 ] || [ "$5" != "--" ]; then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
pairs=$1 base=$2 change=$3 bench=$4
shift 5
out=${AB_OUT:-$(mktemp -d /tmp/shoal-ab.XXXXXX)}
mkdir -p "$out"

run() {
    local label=$1 binary=$2
    shift 2
    "$bench" ingest --spawn "$binary" --json "$@" | grep '^{' | tail -n1 >>"$out/$label.jsonl"
}

for pair in $(seq 1 "$pairs"); do
    if [ $((pair % 2)) -eq 1 ]; then
        run base "$base" "$@"
        run change "$change" "$@"
    else
        run change "$change" "$@"
        run base "$base" "$@"
    fi
    echo "pair $pair/$pairs done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

python3 - "$out" <<'EOF'
import json, statistics, sys
out = sys.argv[1]
def load(label):
    return [json.loads(line) for line in open(f"{out}/{label}.jsonl")]
base, change = load("base"), load("change")
fields = [
    ("events/s", lambda r: r["events_per_second"]),
    ("p50 ms", lambda r: r["latency_ms"]["p50"]),
    ("p99 ms", lambda r: r["latency_ms"]["p99"]),
    ("server µs CPU/event", lambda r: r.get("server_cpu_micros_per_event")),
    ("log B/event", lambda r: r.get("log_bytes_per_event")),
    ("peak RSS MB", lambda r: r.get("server_peak_rss_mb")),
]
print(f"{'figure':22s} {'base (runs)':>40s} {'change (runs)':>40s} {'ratio':>7s}")
for name, get in fields:
    b = [get(r) for r in base if get(r) is not None]
    c = [get(r) for r in change if get(r) is not None]
    if not b or not c:
        continue
    mb, mc = statistics.median(b), statistics.median(c)
    runs = lambda xs: "/".join(f"{x:.3g}" for x in xs)
    ratio = mc / mb if mb else float("nan")
    print(f"{name:22s} {mb:>10.4g} ({runs(b):>27s}) {mc:>10.4g} ({runs(c):>27s}) {ratio:>7.3f}")
print(f"runs: {out}")
EOF
