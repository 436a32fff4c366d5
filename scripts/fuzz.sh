#!/usr/bin/env bash
# Fuzzes each ingest parser for a bounded time with cargo-fuzz (libFuzzer): the native JSON
# batch, the Segment batch, InfluxDB line protocol, Mackerel and Graphite plaintext. A panic, an
# input that takes over 5 s (a hang) or a process over 2 GiB (unbounded allocation) fails the
# run, leaving the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600        # 10 min per target
#
# Needs the nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz if missing.
# Not part of scripts/test.sh: it builds the parsers again with sanitizers, which takes minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
for target in native_batch segment_batch line_protocol mackerel graphite; do
    printf '\n==> fuzzing %s for %ss\n' "$target" "$seconds" >&2
    mkdir -p "fuzz/corpus/$target"
    cargo +nightly fuzz run -O "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len=65536
done
