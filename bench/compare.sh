#!/usr/bin/env bash
# Shoal side by side with the systems users would pick instead (issue 9).
#
#   bench/compare.sh [OUT_DIR] [extra `shoal-bench compare` options]
#
# e.g. `bench/compare.sh /tmp/cmp --repeat 1 --events 200000` for a quick look. It
#  1. installs the peers from Debian's packages when missing (victoria-metrics, graphite-carbon,
#     postgresql-15);
#  2. builds the release `shoal` and `shoal-bench`;
#  3. starts a throwaway PostgreSQL 15 cluster on a free 127.0.0.1 port with fsync = on,
#     synchronous_commit = on, full_page_writes = on (shared_buffers = 1GB and
#     max_wal_size = 8GB, so checkpoints do not dominate a bulk load);
#  4. runs `shoal-bench compare`, which starts Shoal, VictoriaMetrics and carbon itself on free
#     loopback ports and temporary directories, loads the same data set into each, asks the
#     same queries, stops them, and prints one table of medians and Shoal/peer ratios;
#  5. stops PostgreSQL and removes its cluster, also on error or Ctrl-C.
# The output goes to OUT_DIR (default /tmp/shoal-compare): compare.txt and figures.json.
# Durability as run: see the header of bench/src/compare/mod.rs and BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir=${1:-/tmp/shoal-compare}
shift || true
mkdir -p "$out_dir"
target=${CARGO_TARGET_DIR:-target}
pg_bin=/usr/lib/postgresql/15/bin

missing=()
command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
command -v carbon-cache >/dev/null || missing+=(graphite-carbon)
[ -x "$pg_bin/postgres" ] || missing+=(postgresql-15)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "installing ${missing[*]} from Debian's packages"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
        { $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; }
fi

cargo build --release -p shoal -p shoal-bench

# PostgreSQL refuses to run as root: the cluster belongs to the `postgres` user then.
pg_root=$(mktemp -d /tmp/shoal-compare-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$pg_root"
    as_pg=(runuser -u postgres --)
fi
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop_postgres() {
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_root/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$pg_root"
}
trap stop_postgres EXIT INT TERM
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_root/data" -U postgres --auth=trust -E UTF8 >"$pg_root/initdb.log"
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_root/data" -l "$pg_root/server.log" -w start -o \
    "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$pg_root \
     -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
     -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min" >/dev/null
pg_pid=$(head -1 "$pg_root/data/postmaster.pid")

{
    echo "# bench/compare.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "peers: victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null); carbon $(dpkg-query -W -f='${Version}' graphite-carbon 2>/dev/null); $("$pg_bin/postgres" --version)"
    "$target/release/shoal-bench" compare --spawn "$target/release/shoal" \
        --postgres "host=127.0.0.1 port=$pg_port user=postgres dbname=postgres" \
        --postgres-pid "$pg_pid" --json "$out_dir/figures.json" "$@"
} 2>&1 | tee "$out_dir/compare.txt"
