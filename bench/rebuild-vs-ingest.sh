#!/usr/bin/env bash
# Issue 4's "a rules rebuild slows live ingest by no more than 20 %": durable ingest into a
# release server, measured before, during and after a scores rebuild of the log it has so far.
#
#   bench/rebuild-vs-ingest.sh [prefill seconds, default 15]
#   REBUILD=0 bench/rebuild-vs-ingest.sh   # the control: the same phases, no rules, no rebuild
#   RATE=100000 bench/rebuild-vs-ingest.sh # open loop at this many events/s (0: closed loop)
#
# Every phase starts with the live projections caught up: under a closed-loop flood they fall
# behind and later catch up in large batches, and a phase that overlaps that catch-up measures
# it rather than the rebuild. The open loop (the default) holds a steady load the live
# projections keep up with, as production does, and shows a rebuild's cost as latency and as
# the server's CPU per event; the closed loop shows it as capacity.
#
# Needs `cargo build --release -p shoal -p shoal-bench`. Search is off in the server so the
# figure isolates the rebuild (the live projections run throughout, as in production). Prints
# the three ingest runs and the rebuild's progress; everything stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PREFILL=${1:-15}
RATE=${RATE:-100000}
BIN=target/release
DIR=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"' EXIT
printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n[search]\nenabled = false\n' "$DIR" > "$DIR/shoal.toml"
"$BIN/shoal" serve --config "$DIR/shoal.toml" > "$DIR/stdout" 2> "$DIR/stderr" &
SERVER=$!
for _ in $(seq 1 100); do grep -q "listening on" "$DIR/stdout" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^shoal: listening on //p' "$DIR/stdout")
creds() { python3 -c "import json,sys;print(json.load(open('$DIR/data/credentials.json'))[sys.argv[1]])" "$1"; }
WRITE=$(creds write_key); READ=$(creds read_key); ADMIN=$(creds admin_token)
ingest() { "$BIN/shoal-bench" ingest --url "$URL" --key "$WRITE" --server-pid "$SERVER" -c 4 -d "$1" --warmup 1 --seed "$2" --rate "${3:-$RATE}" 2>&1 | grep -E "open loop|events/s|p99|CPU" | head -5; }
caught_up() {
  for _ in $(seq 1 600); do
    curl -s -H "Authorization: Bearer $READ" "$URL/v1/projections" | python3 -c 'import json,sys
ps=json.load(sys.stdin)["projections"]
sys.exit(0 if all(s["lag_records"]==0 for p in ps for s in p["shards"]) else 1)' && return 0
    sleep 1
  done
  echo "the live projections did not catch up in 600 s" >&2; return 1
}

echo "== prefill (${PREFILL} s, closed loop)"; ingest "$PREFILL" 1 0 >/dev/null
caught_up
echo "== baseline"; ingest 10 2
cat > "$DIR/rules.yaml" <<'RULES'
conditions:
  active: { event_count: { event: page_viewed, days: 14, at_least: 5 } }
  paying: { event_count: { event: invoice_paid, days: 30, at_least: 1 } }
  errors: { event_count: { event: error_shown, days: 7, at_least: 3 } }
  quiet:  { recency: { event: signed_in, more_than_days: 14 } }
stages:
  - { name: paying, all: [paying] }
  - { name: trial }
scorecards:
  default: { weights: { active: 50, paying: 30, errors: -20, quiet: -30 }, bands: { good_from: 70, bad_below: 40 } }
RULES
caught_up
if [ "${REBUILD:-1}" = 0 ]; then
  echo "(control: no rules, no rebuild)"
else
  curl -s -X PUT -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/yaml' \
    --data-binary @"$DIR/rules.yaml" "$URL/v1/admin/tenants/default/rules"; echo
fi
echo "== during the rebuild"; ingest 10 3
progress() { curl -s -H "Authorization: Bearer $ADMIN" "$URL/v1/admin/tenants/default/rules" | python3 -c 'import json,sys; v=(json.load(sys.stdin).get("versions") or [{}])[-1]; print("caught_up", v.get("caught_up"), "ready", v.get("ready"))'; }
progress
curl -s -H "Authorization: Bearer $READ" "$URL/v1/projections" | python3 -c 'import json,sys
for p in json.load(sys.stdin)["projections"]:
    g=p.get("progress") or {}
    print(p["name"], "v%d" % p["version"], "applied", p["events_applied"], "rate %.0f/s" % g.get("events_per_second",0), "done %.2f" % (g.get("fraction_done") or 0), "caught_up", g.get("caught_up"))'
if [ "${REBUILD:-1}" != 0 ]; then
  for _ in $(seq 1 600); do progress | grep -q "ready True" && break; sleep 1; done
fi
progress
caught_up
echo "== after the rebuild"; ingest 10 4
