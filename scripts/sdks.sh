#!/usr/bin/env bash
# Installs the real, unmodified client libraries the end-to-end SDK tests drive, from the package
# registries, into project-local folders (ignored by git):
#   .sdk/venv  — segment-analytics-python, rudder-sdk-python, influxdb-client (pip)
#   .sdk/node  — @segment/analytics-node (npm)
# Idempotent: a folder whose stamp matches the pinned versions below is left alone, so a second
# run takes well under a second.
#
#   scripts/sdks.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY_PACKAGES=(
    "segment-analytics-python==2.4.0"
    "rudder-sdk-python==2.1.9"
    "influxdb-client==1.50.0"
)
NODE_PACKAGES=("@segment/analytics-node@3.1.0")

mkdir -p .sdk
py_stamp=".sdk/venv/.installed"
py_want="${PY_PACKAGES[*]}"
if [[ ! -f "$py_stamp" || "$(cat "$py_stamp")" != "$py_want" ]]; then
    echo "installing Python SDKs into .sdk/venv" >&2
    python3 -m venv .sdk/venv
    .sdk/venv/bin/pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
    printf '%s' "$py_want" >"$py_stamp"
fi

node_stamp=".sdk/node/.installed"
node_want="${NODE_PACKAGES[*]}"
if [[ ! -f "$node_stamp" || "$(cat "$node_stamp")" != "$node_want" ]]; then
    echo "installing Node SDKs into .sdk/node" >&2
    mkdir -p .sdk/node
    [[ -f .sdk/node/package.json ]] || printf '{"name":"shoal-sdk-tests","private":true}\n' >.sdk/node/package.json
    npm install --prefix .sdk/node --no-audit --no-fund --silent "${NODE_PACKAGES[@]}"
    printf '%s' "$node_want" >"$node_stamp"
fi
