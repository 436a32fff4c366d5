#!/usr/bin/env bash
# Every test of the project, from a fresh machine: formatting, lints, the unit and conformance
# suites, the AWS backends against local emulators (installed and started here, stopped on exit),
# and the end-to-end tests against the real binary.
#
#   scripts/test.sh            # everything
#
# Needs: the Rust toolchain, Java 17+ and node/npm (for the emulators), python3 with venv (for
# the client SDKs). Nothing is skipped: a suite that cannot run fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building the shoal binary the end-to-end tests start"
cargo build --locked -p shoal

step "installing the client SDKs the end-to-end tests drive"
scripts/sdks.sh

step "starting the AWS emulators"
scripts/emulators.sh start
trap 'scripts/emulators.sh stop || true' EXIT
# shellcheck disable=SC1091
source .emulators/env

step "tests"
cargo test --workspace --locked --no-fail-fast
