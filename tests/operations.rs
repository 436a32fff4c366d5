//! Operating Shoal, against the real binary: `/metrics` parses as Prometheus text and its
//! counters move as events flow; the end-to-end canary's latency shows and `/readyz` turns
//! unready when no projector runs, ready again when one does; SIGTERM under load keeps every
//! acknowledged event and flushes the checkpoints, so a restart replays nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{NO_CANARY, Shoal, client, get_json, read_log, scrape, value, wait_caught_up};
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn post_events(shoal: &Shoal, key: &str, body: &Value) -> (StatusCode, Value) {
    let response = client()
        .post(shoal.url("/v1/events"))
        .bearer_auth(key)
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_ready(shoal: &Shoal, ready: bool, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let response = client()
            .get(shoal.url("/readyz"))
            .send()
            .await
            .expect("GET /readyz");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if (status == StatusCode::OK) == ready {
            assert_eq!(body["ready"], ready, "{body}");
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not become {} within {limit:?}: {status} {body}",
            if ready { "ready" } else { "unready" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_flows_and_the_canary_reports() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(
        dir.path(),
        Some("[canary]\ninterval_secs = 1\ntimeout_secs = 5\n"),
    );
    let credentials = shoal.credentials();
    wait_ready(&shoal, true, Duration::from_secs(20)).await;

    let before = scrape(&shoal).await;
    let (status, _) = post_events(
        &shoal,
        &credentials.write_key,
        &json!([
            {"name": "login", "entity": "acme"},
            {"name": "login", "entity": "acme"},
            {"name": "export", "entity": "globex"},
            {"name": "", "entity": "globex"},
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        post_events(&shoal, "not-a-key", &json!([{"name": "x", "entity": "y"}])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    wait_caught_up(&shoal, &credentials.read_key, Duration::from_secs(30)).await;
    let (status, _) = get_json(&shoal, "/v1/entities/acme", &credentials.read_key).await;
    assert_eq!(status, StatusCode::OK);
    let after = scrape(&shoal).await;

    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        moved("shoal_ingest_events_total", &[("outcome", "accepted")]),
        3.0
    );
    assert_eq!(
        moved("shoal_ingest_events_total", &[("outcome", "rejected")]),
        1.0
    );
    assert_eq!(
        moved("shoal_ingest_rejects_total", &[("reason", "unauthorized")]),
        1.0
    );
    assert!(moved("shoal_ingest_received_bytes_total", &[]) > 0.0);
    // The client's 3 events and the canaries of the meantime, applied by each projection.
    assert!(
        moved(
            "shoal_projector_events_applied_total",
            &[("projection", "entities")]
        ) >= 3.0
    );
    assert!(moved("shoal_ingest_append_seconds_count", &[]) >= 1.0);
    let http: Vec<String> = after
        .samples
        .iter()
        .filter(|sample| sample.metric.starts_with("shoal_http"))
        .map(|sample| format!("{} {:?} {:?}", sample.metric, sample.labels, sample.value))
        .collect();
    assert!(
        value(
            &after,
            "shoal_http_request_seconds_count",
            &[("route", "/v1/entities/:id"), ("status", "2xx")]
        ) >= 1.0,
        "{http:#?}"
    );
    // Ready means a canary was read back; its latency is in the next scrapes. Looked for
    // again for a while, so a miss shows what the scrape held instead of a bare assert.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = scrape(&shoal).await;
        if value(&scraped, "shoal_canary_latency_seconds_count", &[]) >= 1.0 {
            break;
        }
        let canary: Vec<String> = scraped
            .samples
            .iter()
            .filter(|sample| sample.metric.starts_with("shoal_canary"))
            .map(|sample| format!("{} {:?} {:?}", sample.metric, sample.labels, sample.value))
            .collect();
        assert!(
            Instant::now() < deadline,
            "no canary latency in /metrics after readiness: {canary:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(value(&after, "shoal_process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(
        value(
            &after,
            "shoal_projector_lag_records",
            &[("projection", "entities")]
        ),
        0.0
    );
    // Every name follows shoal_<subsystem>_<name>_<unit>.
    for sample in &after.samples {
        assert!(sample.metric.starts_with("shoal_"), "{}", sample.metric);
    }
    let body = wait_ready(&shoal, true, Duration::from_secs(5)).await;
    assert!(
        body["canary"]["last_latency_ms"].as_f64().is_some(),
        "{body}"
    );
    assert!(shoal.terminate());
}

fn aws_config(name: &str) -> String {
    let endpoint = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: run the emulators (scripts/test.sh starts them)")
        })
    };
    format!(
        r#"
[storage]
backend = "aws"

[aws]
kinesis_endpoint_url = "{}"
dynamodb_endpoint_url = "{}"
stream_name = "{name}"
table_prefix = "{name}"
shard_count = 2
lease_duration_ms = 2000
lease_renew_ms = 400
shard_refresh_ms = 1000

[search]
enabled = false

[canary]
interval_secs = 1
timeout_secs = 3

[projector]
idle_wait = 200
"#,
        endpoint("SHOAL_TEST_KINESIS_ENDPOINT"),
        endpoint("SHOAL_TEST_DYNAMODB_ENDPOINT"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_projector() {
    let name = format!("ops-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let config = aws_config(&name);
    let root = tempfile::tempdir().unwrap();
    let init_dir = root.path().join("init");
    std::fs::create_dir_all(&init_dir).unwrap();
    let init_config = init_dir.join("init.toml");
    std::fs::write(&init_config, &config).unwrap();
    let status = std::process::Command::new(shoal_tests::shoal_bin())
        .args(["aws", "init", "--config"])
        .arg(&init_config)
        .env("SHOAL_LOG", "warn")
        .status()
        .expect("shoal aws init");
    assert!(status.success());

    let front_config = format!("roles = [\"ingest\", \"query\"]\n{config}");
    let projector_config = format!("roles = [\"projector\"]\n{config}");
    let front = Shoal::start(&root.path().join("front"), Some(&front_config));
    // No projector yet: the canary cannot be read back.
    let body = wait_ready(&front, false, Duration::from_secs(20)).await;
    assert!(body["reasons"][0].as_str().is_some(), "{body}");

    let first = Shoal::start(&root.path().join("p1"), Some(&projector_config));
    wait_ready(&front, true, Duration::from_secs(30)).await;
    first.kill();
    let body = wait_ready(&front, false, Duration::from_secs(30)).await;
    assert!(
        body["reasons"][0]
            .as_str()
            .is_some_and(|reason| reason.contains("canar")),
        "{body}"
    );
    let second = Shoal::start(&root.path().join("p2"), Some(&projector_config));
    wait_ready(&front, true, Duration::from_secs(30)).await;
    let metrics = scrape(&front).await;
    assert!(value(&metrics, "shoal_canary_failures_total", &[]) >= 1.0);
    assert!(value(&metrics, "shoal_canary_latency_seconds_count", &[]) >= 2.0);
    assert!(second.terminate() && front.terminate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_every_acknowledged_event_and_replays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), Some(NO_CANARY));
    let credentials = shoal.credentials();
    let base = shoal.base.clone();

    // Writers keep sending until the server goes away.
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (base, key) = (base.clone(), credentials.write_key.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for batch in 0.. {
                let events: Vec<Value> = (0..200)
                    .map(|i| {
                        let id = uuid::Uuid::new_v4().to_string();
                        json!({"id": id, "name": "tick", "entity": format!("w{writer}-{}", i % 17)})
                    })
                    .collect();
                let ids: Vec<String> = events
                    .iter()
                    .map(|event| event["id"].as_str().unwrap_or_default().to_owned())
                    .collect();
                let sent = client()
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&key)
                    .body(Value::from(events).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == StatusCode::OK => {
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        if body["accepted"] == 200 {
                            acknowledged.extend(ids);
                        }
                    }
                    // Refused while shutting down, or the connection is gone: not acknowledged.
                    _ => break,
                }
                if batch > 10_000 {
                    break;
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let data_dir = shoal.data_dir.clone();
    let stopped = tokio::task::spawn_blocking(move || shoal.terminate())
        .await
        .expect("terminate");
    assert!(stopped, "a clean exit on SIGTERM, within the bound");
    let mut acknowledged = HashSet::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    assert!(acknowledged.len() >= 200, "the load ran before the signal");

    let stored: HashSet<String> = read_log(&data_dir)
        .await
        .into_iter()
        .map(|event| event.id.to_string())
        .collect();
    let missing = acknowledged.difference(&stored).count();
    assert_eq!(missing, 0, "acknowledged events missing from the log");

    // What each projection had checkpointed when the server stopped.
    let checkpointed: Vec<(String, u64)> = {
        let tables = shoal_storage::embedded::EmbeddedTables::open(&data_dir.join("tables.redb"))
            .expect("open the stopped server's tables");
        let mut found = Vec::new();
        for name in ["archive", "series", "entities"] {
            let applied = shoal_projector::checkpoint::list(&tables, name, 1)
                .await
                .expect("checkpoints")
                .iter()
                .map(|checkpoint| checkpoint.events_applied)
                .sum();
            found.push((name.to_owned(), applied));
        }
        found
    };

    // Restart: only what was not checkpointed is applied; nothing checkpointed is replayed.
    let again = Shoal::start(&data_dir, Some(NO_CANARY));
    wait_caught_up(&again, &credentials.read_key, Duration::from_secs(60)).await;
    let (status, body) = get_json(&again, "/v1/projections", &credentials.read_key).await;
    assert_eq!(status, StatusCode::OK);
    for projection in body["projections"].as_array().expect("projections") {
        let before = checkpointed
            .iter()
            .find(|(name, _)| projection["name"] == name.as_str())
            .map(|(_, applied)| *applied)
            .expect("a default projection");
        assert_eq!(
            projection["progress"]["events_replayed"].as_u64(),
            Some(stored.len() as u64 - before),
            "{projection}"
        );
        assert_eq!(
            projection["events_applied"].as_u64(),
            Some(stored.len() as u64),
            "{projection}"
        );
    }
    assert!(again.terminate());
}

/// Every thread of a process: (name, nice), read from `/proc/<pid>/task`.
#[cfg(target_os = "linux")]
fn thread_priorities(pid: u32) -> Vec<(String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/<pid>/task") {
        let path = task.expect("a task entry").path();
        // A thread that ended between the listing and the read is simply gone.
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        // The name in `stat` is parenthesised and may hold spaces: fields count from the last
        // ')'. nice is field 19, the 17th after it.
        let after = &stat[stat.rfind(')').expect("stat has the name") + 1..];
        let nice = after
            .split_whitespace()
            .nth(16)
            .and_then(|field| field.parse().ok())
            .expect("nice in stat");
        threads.push((name.trim().to_owned(), nice));
    }
    threads
}

/// The default puts the live read-model work (projection workers and their log reads, the
/// tables' committer, tantivy's indexing and merge threads) at nice 19 and leaves ingest (the
/// log's writers, the HTTP runtime) at the process's priority; `live_nice = 0` leaves all of
/// it there. Checked on the real binary after it has ingested, projected and indexed.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_read_models_run_below_ingest() {
    for (config, live) in [(None, 19), (Some("[projector]\nlive_nice = 0\n"), 0)] {
        let dir = tempfile::tempdir().unwrap();
        let shoal = Shoal::start(dir.path(), config);
        let credentials = shoal.credentials();
        let events: Vec<Value> = (0..50)
            .map(|i| json!({"kind": "track", "name": "opened", "entity": format!("c{i}")}))
            .collect();
        let (status, body) = post_events(&shoal, &credentials.write_key, &json!(events)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_caught_up(&shoal, &credentials.read_key, Duration::from_secs(30)).await;
        let threads = thread_priorities(shoal.pid());
        let nice_of = |prefix: &str| -> Vec<i64> {
            threads
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(_, nice)| *nice)
                .collect()
        };
        let base = nice_of("shoal-log-");
        assert!(!base.is_empty(), "no log writer threads in {threads:?}");
        let base = base[0];
        assert!(
            base < 19,
            "the test runs at nice {base}: it cannot tell lowered threads apart"
        );
        let expected_live = if live == 0 { base } else { live };
        for (prefix, expected) in [
            ("shoal-log-", base),
            ("tokio-rt-worker", base),
            ("shoal-tables-co", expected_live),
            ("merge_thread_", expected_live),
            ("segment_updater", expected_live),
        ] {
            let seen = nice_of(prefix);
            assert!(
                !seen.is_empty() && seen.iter().all(|nice| *nice == expected),
                "{prefix}* should be at nice {expected} (live_nice {live}): {threads:?}"
            );
        }
        let workers = nice_of("shoal-live");
        if live == 0 {
            assert!(
                workers.is_empty(),
                "a live runtime with live_nice 0: {threads:?}"
            );
        } else {
            assert!(
                !workers.is_empty() && workers.iter().all(|nice| *nice == live),
                "the live runtime's threads should be at nice {live}: {threads:?}"
            );
        }
        assert!(shoal.terminate());
    }
}
