#!/usr/bin/env bash
# The durable-ingest figures of BENCHMARKS.md in one go: builds the release binaries, then runs
# each scenario 3 times on a fresh server (fsync on, default config) and prints medians.
# Takes about 8 minutes. Results (text, and JSON lines for scripts) go to OUT_DIR.
#
# usage: bench/ingest-matrix.sh [OUT_DIR]   (default: target/bench-ingest)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/bench-ingest}
repeat=${REPEAT:-3}
mkdir -p "$out"
cd "$root"
cargo build --release -p shoal -p shoal-bench
# Copies, so builds by others in the same checkout cannot swap binaries mid-run.
mkdir -p "$out/bin"
cp target/release/shoal target/release/shoal-bench "$out/bin/"
bench="$out/bin/shoal-bench ingest --spawn $out/bin/shoal --repeat $repeat --json"

run() {
    local name=$1
    shift
    echo "== $name: $*" | tee "$out/$name.txt"
    $bench "$@" | tee -a "$out/$name.txt"
}

# (a) 1000-event batches over a few connections.
for connections in 2 4 8; do
    run "batch-c$connections" --connections "$connections" --batch 1000 --duration 10 --warmup 2
done
# (b) single-event requests over 64 connections.
run single-c64 --connections 64 --batch 1 --duration 10 --warmup 2
# The same two with a client id on every event (as Segment SDKs send): the dedup window works.
run batch-c4-ids --connections 4 --batch 1000 --duration 10 --warmup 2 --client-ids
run single-c64-ids --connections 64 --batch 1 --duration 10 --warmup 2 --client-ids
# (c, d) a long batched run: bytes per event and peak RSS once the dedup window is full.
run long-c8 --connections 8 --batch 1000 --duration 40 --warmup 2 --client-ids

echo
echo "medians (events/s, p99 ms, log bytes/event, peak RSS MB):"
for file in "$out"/*.txt; do
    name=$(basename "$file" .txt)
    line=$(grep '^{"runs"' "$file" | tail -n1 || true)
    [ -z "$line" ] && continue
    python3 - "$name" "$line" <<'EOF'
import json, sys
name, m = sys.argv[1], json.loads(sys.argv[2])
print(f"  {name:16s} {m['events_per_second']:>10.0f}  p99 {m['latency_ms']['p99']:6.2f}"
      f"  {m['log_bytes_per_event'] or 0:6.1f} B/event  {m['server_peak_rss_mb'] or 0:5.0f} MB"
      f"  server {m['server_cores'] or 0:.2f} cores, others {m['other_cores'] or 0:.2f}")
EOF
done
