#!/usr/bin/env bash
# Profile the server under an ingest load: starts `shoal` under `perf record` (software
# cpu-clock sampling with DWARF call graphs; this VM has no hardware counters), loads it with
# `shoal-bench ingest`, stops it, and writes perf.data plus flat and caller reports to OUT_DIR.
#
# usage: bench/profile-ingest.sh OUT_DIR [shoal-bench ingest options, e.g. -c 4 -b 1000 -d 10]
# needs: perf (Debian: apt-get install linux-perf), release builds of shoal and shoal-bench.
set -euo pipefail

out=${1:?usage: bench/profile-ingest.sh OUT_DIR [ingest options]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
shoal=${SHOAL_BIN:-$root/target/release/shoal}
bench=${SHOAL_BENCH_BIN:-$root/target/release/shoal-bench}
frequency=${PERF_FREQUENCY:-499}
mkdir -p "$out"
data=$(mktemp -d /tmp/shoal-profile-XXXXXX)
trap 'rm -rf "$data"' EXIT

SHOAL_LOG=warn perf record -e cpu-clock -F "$frequency" --call-graph dwarf,16384 \
    -o "$out/perf.data" -- "$shoal" --data-dir "$data/data" --listen 127.0.0.1:0 \
    >"$data/stdout" 2>"$out/server.log" &
perf_pid=$!

url=""
for _ in $(seq 1 300); do
    url=$(sed -n 's/^shoal: listening on //p' "$data/stdout" 2>/dev/null | head -n1)
    [ -n "$url" ] && [ -s "$data/data/credentials.json" ] && break
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "the server did not start; see $out/server.log" >&2
    kill "$perf_pid" 2>/dev/null || true
    exit 1
fi
key=$(sed -n 's/.*"write_key" *: *"\([^"]*\)".*/\1/p' "$data/data/credentials.json")
shoal_pid=$(pgrep -P "$perf_pid" -x shoal | head -n1)

"$bench" ingest --url "$url" --key "$key" --data-dir "$data/data" --server-pid "$shoal_pid" "$@" \
    | tee "$out/bench.txt"

kill -TERM "$shoal_pid"
wait "$perf_pid" || true

perf report -i "$out/perf.data" --no-children --sort dso,symbol --stdio \
    >"$out/flat.txt" 2>/dev/null || true
perf report -i "$out/perf.data" --children --sort symbol --stdio -g none --percent-limit 1 \
    >"$out/inclusive.txt" 2>/dev/null || true
perf report -i "$out/perf.data" --no-children --sort comm --stdio -g none \
    >"$out/threads.txt" 2>/dev/null || true
echo "profile written to $out (flat.txt, inclusive.txt, threads.txt, perf.data)"
