//! Real, unmodified client libraries against the real binary: segment-analytics-python,
//! rudder-sdk-python, @segment/analytics-node and influxdb-client (Python), installed by
//! `scripts/sdks.sh` (which `scripts/test.sh` runs) into `.sdk/`. Each test sends known calls
//! through the client, then reads them back through the query API with exact values, and checks
//! gzip, batching and that a retried request (the server answers 503 once, after storing) does
//! not store anything twice.
//!
//! A missing SDK fails the test with a message naming the install command; nothing is skipped.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{Shoal, get_json, read_log, wait_caught_up};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const FAIL_ONCE: &[(&str, &str)] = &[("SHOAL_TEST_FAIL_AFTER_APPEND", "1")];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sdk_path(relative: &str) -> PathBuf {
    let path = repo().join(".sdk").join(relative);
    assert!(
        path.exists(),
        "{} is missing: install the client SDKs with `scripts/sdks.sh` (scripts/test.sh runs it)",
        path.display()
    );
    path
}

/// Runs a client script and returns the JSON it printed; fails on a non-zero exit.
fn run(program: &Path, args: &[&str]) -> Value {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running {}: {error}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        program.display(),
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|_| panic!("no JSON from {args:?}\nstdout: {stdout}\nstderr: {stderr}"))
}

fn python(script: &str, args: &[&str]) -> Value {
    let interpreter = sdk_path("venv/bin/python");
    let script = repo().join("tests/sdk").join(script);
    let mut all = vec![script.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    run(&interpreter, &all)
}

fn node(script: &str, args: &[&str]) -> Value {
    let sdk_dir = sdk_path("node/node_modules/@segment/analytics-node")
        .join("../../..")
        .canonicalize()
        .expect("sdk dir");
    let script = repo().join("tests/sdk").join(script);
    let mut all = vec![
        script.to_str().expect("utf-8 path"),
        sdk_dir.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    run(Path::new("node"), &all)
}

fn statuses(report: &Value) -> Vec<u64> {
    report["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|request| request["status"].as_u64().expect("status"))
        .collect()
}

async fn entity(shoal: &Shoal, read: &str, id: &str) -> Value {
    let path = format!("/v1/entities/{}", id.replace(':', "%3A"));
    let (status, body) = get_json(shoal, &path, read).await;
    assert_eq!(status, StatusCode::OK, "{id}: {body}");
    body
}

fn close_to(stored_ms: i64, sent_ms: i64) -> bool {
    // Skew correction uses the server's receive time, so a few ms of transit show up.
    (stored_ms - sent_ms).abs() < 10_000
}

/// What every Segment SDK run must leave in the log: exactly `expected` events with distinct ids.
async fn assert_log_exact(dir: &Path, expected: usize) -> Vec<shoal_schemas::Event> {
    let events = read_log(dir).await;
    let ids: HashSet<_> = events.iter().map(|event| event.id).collect();
    assert_eq!(events.len(), expected, "{events:#?}");
    assert_eq!(ids.len(), expected, "duplicate ids in the log");
    events
}

#[tokio::test]
async fn segment_python_sdk_every_call_gzip_batched() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let keys = shoal.credentials();
    let at = shoal_schemas::time::now_millis() - 60_000;
    let report = python(
        "segment_python.py",
        &[&shoal.base, &keys.write_key, "py", &at.to_string()],
    );
    assert_eq!(report["errors"], json!([]), "{report}");
    let requests = report["requests"].as_array().unwrap();
    // Seven calls, fewer requests: the SDK batched them, gzip-compressed, with Basic auth.
    assert!(!requests.is_empty() && requests.len() < 7, "{report}");
    for request in requests {
        assert_eq!(request["path"], "/v1/batch");
        assert_eq!(request["encoding"], "gzip");
        assert_eq!(request["auth"], "Basic");
        assert_eq!(request["status"], 200);
    }

    wait_caught_up(&shoal, &keys.read_key, Duration::from_secs(20)).await;
    let user = entity(&shoal, &keys.read_key, "py-user").await;
    assert_eq!(
        user["traits"],
        json!({"email": "ada@example.com", "plan": "pro", "seats": 3, "groupId": "py-acct"})
    );
    assert_eq!(
        user["counts"],
        json!({"$alias": 1, "$group": 1, "$identify": 1, "$page": 1, "$screen": 1, "Signed Up": 1})
    );
    assert_eq!(user["events"], 6);
    assert_eq!(user["totals"], json!({"Signed Up.amount": 12.5}));
    assert!(close_to(user["first_seen"].as_i64().unwrap(), at), "{user}");
    let account = entity(&shoal, &keys.read_key, "group:py-acct").await;
    assert_eq!(account["traits"], json!({"name": "Acme", "employees": 40}));
    assert_eq!(account["counts"], json!({"$group": 1}));
    let anonymous = entity(&shoal, &keys.read_key, "py-anon").await;
    assert_eq!(anonymous["counts"], json!({"Viewed": 1}));

    assert!(shoal.terminate());
    let events = assert_log_exact(dir.path(), 8).await;
    let track = events
        .iter()
        .find(|event| event.name == "Signed Up")
        .unwrap();
    let properties = track.properties_map();
    assert_eq!(properties["source"], "ad");
    assert_eq!(properties["$context"]["ip"], "203.0.113.9");
    assert_eq!(
        properties["$context"]["library"]["name"],
        "analytics-python"
    );
    let page = events
        .iter()
        .find(|event| event.kind == shoal_schemas::EventKind::Page)
        .unwrap();
    assert_eq!(page.name, "Install");
    let alias = events
        .iter()
        .find(|event| event.kind == shoal_schemas::EventKind::Alias)
        .unwrap();
    assert_eq!(
        (
            alias.entity.as_str(),
            alias.properties_map()["previousId"].as_str()
        ),
        ("py-user", Some("py-anon"))
    );
    for event in &events {
        assert!(close_to(event.timestamp, at), "{event:?}");
    }
}

#[tokio::test]
async fn segment_python_sdk_retry_after_503_stores_once() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start_with_env(dir.path(), None, FAIL_ONCE);
    let keys = shoal.credentials();
    let at = shoal_schemas::time::now_millis() - 60_000;
    let report = python(
        "segment_python.py",
        &[&shoal.base, &keys.write_key, "py", &at.to_string()],
    );
    assert_eq!(report["errors"], json!([]), "{report}");
    let seen = statuses(&report);
    assert_eq!(seen.first(), Some(&503), "{report}");
    assert!(
        seen[1..].iter().all(|status| *status == 200) && seen.len() >= 2,
        "{report}"
    );
    wait_caught_up(&shoal, &keys.read_key, Duration::from_secs(20)).await;
    let user = entity(&shoal, &keys.read_key, "py-user").await;
    assert_eq!(user["events"], 6, "{user}");
    assert!(shoal.terminate());
    assert_log_exact(dir.path(), 8).await;
}

#[tokio::test]
async fn rudder_python_sdk_data_plane_url() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let keys = shoal.credentials();
    let at = shoal_schemas::time::now_millis() - 120_000;
    let report = python(
        "rudder_python.py",
        &[&shoal.base, &keys.write_key, "rs", &at.to_string()],
    );
    assert_eq!(report["errors"], json!([]), "{report}");
    let requests = report["requests"].as_array().unwrap();
    assert!(!requests.is_empty() && requests.len() < 7, "{report}");
    for request in requests {
        assert_eq!(request["path"], "/v1/batch");
        assert_eq!(request["encoding"], "gzip");
        assert_eq!(request["auth"], "Basic");
        assert_eq!(request["status"], 200);
    }
    wait_caught_up(&shoal, &keys.read_key, Duration::from_secs(20)).await;
    let user = entity(&shoal, &keys.read_key, "rs-user").await;
    assert_eq!(
        user["traits"],
        json!({"email": "grace@example.com", "plan": "team", "groupId": "rs-acct"})
    );
    assert_eq!(
        user["counts"],
        json!({"$group": 1, "$identify": 1, "Exported": 5})
    );
    assert_eq!(user["totals"], json!({"Exported.rows": 60.0}));
    let account = entity(&shoal, &keys.read_key, "group:rs-acct").await;
    assert_eq!(account["traits"], json!({"name": "Globex"}));
    assert!(shoal.terminate());
    assert_log_exact(dir.path(), 8).await;
}

async fn node_run(fail_once: bool) {
    let dir = tempfile::tempdir().unwrap();
    let shoal = if fail_once {
        Shoal::start_with_env(dir.path(), None, FAIL_ONCE)
    } else {
        Shoal::start(dir.path(), None)
    };
    let keys = shoal.credentials();
    let at = shoal_schemas::time::now_millis() - 30_000;
    let report = node(
        "segment_node.js",
        &[&shoal.base, &keys.write_key, "js", &at.to_string()],
    );
    assert_eq!(report["errors"], json!([]), "{report}");
    let seen = statuses(&report);
    if fail_once {
        assert_eq!(seen.first(), Some(&503), "{report}");
        assert!(
            seen.len() >= 2 && seen[1..].iter().all(|status| *status == 200),
            "{report}"
        );
    } else {
        // Six calls in one request (flushAt 20).
        assert_eq!(seen, vec![200], "{report}");
    }
    for request in report["requests"].as_array().unwrap() {
        assert_eq!(request["path"], "/v1/batch");
    }
    wait_caught_up(&shoal, &keys.read_key, Duration::from_secs(20)).await;
    let user = entity(&shoal, &keys.read_key, "js-user").await;
    assert_eq!(
        user["traits"],
        json!({"email": "linus@example.com", "plan": "enterprise", "groupId": "js-acct"})
    );
    assert_eq!(
        user["counts"],
        json!({"$alias": 1, "$group": 1, "$identify": 1, "$screen": 1, "Invited": 1})
    );
    assert_eq!(user["totals"], json!({"Invited.invites": 2.0}));
    assert!(close_to(user["last_seen"].as_i64().unwrap(), at), "{user}");
    let account = entity(&shoal, &keys.read_key, "group:js-acct").await;
    assert_eq!(account["traits"], json!({"name": "Initech"}));
    let anonymous = entity(&shoal, &keys.read_key, "js-anon").await;
    assert_eq!(anonymous["counts"], json!({"$page": 1}));
    assert!(shoal.terminate());
    let events = assert_log_exact(dir.path(), 7).await;
    let page = events
        .iter()
        .find(|event| event.entity == "js-anon")
        .unwrap();
    assert_eq!(page.name, "Pricing");
    assert_eq!(page.properties_map()["url"], "/pricing");
}

#[tokio::test]
async fn segment_node_sdk_every_call() {
    node_run(false).await;
}

#[tokio::test]
async fn segment_node_sdk_retry_after_503_stores_once() {
    node_run(true).await;
}

/// The series of one metric over `from..=to` at 1-minute steps, as `[[t, v], …]` per series key.
async fn series(shoal: &Shoal, read: &str, metric: &str, from: i64, to: i64) -> Value {
    let metric = metric.replace(' ', "%20");
    let (status, body) = get_json(
        shoal,
        &format!("/v1/series?metric={metric}&from={from}&to={to}&step=1m&agg=last"),
        read,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut by_key = serde_json::Map::new();
    for one in body["series"].as_array().expect("series") {
        by_key.insert(
            one["key"].as_str().expect("series key").to_owned(),
            one["points"].clone(),
        );
    }
    Value::Object(by_key)
}

async fn influx_run(fail_once: bool) {
    let dir = tempfile::tempdir().unwrap();
    let shoal = if fail_once {
        Shoal::start_with_env(dir.path(), None, FAIL_ONCE)
    } else {
        Shoal::start(dir.path(), None)
    };
    let keys = shoal.credentials();
    // Whole minutes, so each point is alone in its 1-minute bucket.
    let at = (shoal_schemas::time::now_millis() / 60_000 - 10) * 60;
    let mode = if fail_once { "batch" } else { "sync" };
    let report = python(
        "influx_python.py",
        &[&shoal.base, &keys.write_key, mode, &at.to_string()],
    );
    assert_eq!(report["errors"], json!([]), "{report}");
    let seen = statuses(&report);
    if fail_once {
        assert_eq!(seen.first(), Some(&503), "{report}");
        assert!(
            seen.len() >= 2 && seen[1..].iter().all(|status| *status == 204),
            "{report}"
        );
    } else {
        assert_eq!(seen, vec![204], "{report}");
    }
    for request in report["requests"].as_array().unwrap() {
        assert_eq!(request["path"], "/api/v2/write");
        assert_eq!(request["encoding"], "gzip");
    }
    wait_caught_up(&shoal, &keys.read_key, Duration::from_secs(20)).await;
    let (from, to) = (at * 1000, at * 1000 + 120_000);
    let (t0, t1) = (at * 1000, at * 1000 + 60_000);
    let key = "{host=web1,region=eu}";
    assert_eq!(
        series(&shoal, &keys.read_key, "cpu.usage", from, to).await,
        json!({ format!("cpu.usage{key}"): [[t0, 0.5], [t1, 0.75]] })
    );
    assert_eq!(
        series(&shoal, &keys.read_key, "cpu.count", from, to).await,
        json!({ format!("cpu.count{key}"): [[t0, 3.0], [t1, 4.0]] })
    );
    assert_eq!(
        series(&shoal, &keys.read_key, "cpu.up", from, to).await,
        json!({ format!("cpu.up{key}"): [[t0, 1.0], [t1, 0.0]] })
    );
    assert_eq!(
        series(&shoal, &keys.read_key, "disk io.used", from, to).await,
        json!({ "disk io.used{path=/var lib}": [[t0, 42.5]] })
    );
    // The string field is not a metric value: no such series.
    let (status, body) = get_json(
        &shoal,
        &format!("/v1/series?metric=cpu.note&from={from}&to={to}"),
        &keys.read_key,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(shoal.terminate());
    assert_log_exact(dir.path(), 7).await;
}

#[tokio::test]
async fn influx_client_sync_gzip_write() {
    influx_run(false).await;
}

#[tokio::test]
async fn influx_client_batch_retry_after_503_stores_once() {
    influx_run(true).await;
}
