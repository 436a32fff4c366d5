#!/usr/bin/env python3
"""Attribute every sample of a `perf record -g` profile of `shoal` to one stage of the ingest
path, so the shares add up to 100 %.

usage: bench/perf_breakdown.py PERF_DATA

Each sample's call chain (leaf first) is matched against the stage markers below in order;
the first stage with a marker anywhere in the chain takes the sample. Order matters: fsync is
checked before the writer's other work, UUID generation before parsing, and so on. Samples
that match nothing are counted as "other" per thread kind, and the most common leaf symbols of
"other" are listed so the table can be refined.
"""

import collections
import subprocess
import sys

# (stage, markers): a marker is a substring of a symbol name.
STAGES = [
    ("log: fsync (fdatasync)", ["fdatasync", "ext4_sync_file"]),
    ("log: write to segment (pwrite)", ["__x64_sys_pwrite64", "pwrite64", "write_all_at"]),
    ("log: zstd compression", ["ZSTD_", "HUF_", "FSE_", "HIST_", "zstd::"]),
    ("log: postcard encoding", ["encode_event", "postcard::"]),
    ("log: crc32c", ["crc32c"]),
    ("log: dedup window", ["dedup::", "dedup_fingerprint", "is_duplicate"]),
    ("log: dropping events (free)", ["drop_in_place<shoal_storage::embedded::log::writer::AppendRequest",
                                     "drop_in_place<alloc::vec::Vec<shoal_storage::embedded::log::writer::AppendRequest",
                                     "drop_in_place<shoal_schemas::event::Event"]),
    ("ingest: UUIDv7 ids (getrandom)", ["now_v7", "new_v7", "getrandom"]),
    ("ingest: JSON split into items", ["shoal_ingest::parse::split"]),
    ("ingest: per-event parse + Event build", ["shoal_ingest::parse::native::parse_event", "parse_event"]),
    ("ingest: response serialisation", ["serde_json::ser", "axum::json", "BatchReport", "into_response"]),
    ("ingest: append fan-out (shard_of, channels)", ["EventLog>::append", "keys::shard_of"]),
    ("ingest: read body", ["shoal_ingest::body::read", "to_bytes"]),
    ("ingest: auth", ["authenticate", "hash_secret", "sha2::"]),
    ("log: writer loop (other)", ["shoal_storage::embedded::log::writer::Writer::run"]),
    ("HTTP: hyper/axum + TCP", ["hyper::", "hyper_util::", "axum::", "tower_http::", "tcp_", "sock_",
                                "inet_", "ip_", "__netif", "net_rx_action", "epoll"]),
    ("runtime: scheduling, wakeups, futex", ["tokio::runtime", "futex", "schedule", "finish_task_switch",
                                             "try_to_wake_up"]),
]


def samples(path):
    """Yields (thread name, [symbols leaf first]) per sample."""
    output = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,tid,ip,sym", "--no-inline"],
        check=True, capture_output=True, text=True, errors="replace",
    ).stdout
    comm, chain = None, []
    for line in output.splitlines():
        if not line.strip():
            if comm is not None:
                yield comm, chain
            comm, chain = None, []
        elif not line.startswith(("\t", " " * 8)) and comm is None:
            comm = line.split()[0]
        else:
            parts = line.strip().split(None, 1)
            chain.append(parts[1] if len(parts) > 1 else "?")
    if comm is not None:
        yield comm, chain


def thread_kind(comm):
    if comm.startswith("shoal-log"):
        return "log writer threads"
    if comm.startswith("tokio-rt"):
        return "tokio threads"
    return "other threads"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    stages = collections.Counter()
    kinds = collections.Counter()
    other_leaves = collections.Counter()
    total = 0
    for comm, chain in samples(sys.argv[1]):
        total += 1
        kind = thread_kind(comm)
        kinds[kind] += 1
        for stage, markers in STAGES:
            if any(marker in symbol for symbol in chain for marker in markers):
                stages[stage] += 1
                break
        else:
            stages["other (" + kind + ")"] += 1
            other_leaves[chain[0] if chain else "?"] += 1
    if total == 0:
        sys.exit("no samples")
    print(f"{total} samples")
    print("\n| thread kind | share of server CPU |\n|---|---|")
    for kind, count in kinds.most_common():
        print(f"| {kind} | {100 * count / total:.1f} % |")
    print("\n| stage | share of server CPU |\n|---|---|")
    for stage, count in stages.most_common():
        print(f"| {stage} | {100 * count / total:.1f} % |")
    print("\nmost common leaves of 'other':")
    for leaf, count in other_leaves.most_common(12):
        print(f"  {100 * count / total:5.1f} %  {leaf[:110]}")


if __name__ == "__main__":
    main()
