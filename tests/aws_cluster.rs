//! Shoal scaled out on the AWS backends (Kinesis + DynamoDB, here their local emulators): one
//! ingest+query process and two projector processes sharing the shards through leases. A known
//! workload is ingested; one projector is SIGKILLed midway; the other takes over its leases, and
//! afterwards the read models equal, entity by entity, those of the embedded backend fed the
//! same events.
//!
//! Needs the emulators of `scripts/emulators.sh` (scripts/test.sh starts them and exports
//! `SHOAL_TEST_KINESIS_ENDPOINT` and `SHOAL_TEST_DYNAMODB_ENDPOINT`); fails loudly without them.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{Shoal, client, get_json, shoal_bin};
use std::path::Path;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000;
const ENTITIES: usize = 24;
const BATCHES: usize = 12;
const PER_BATCH: usize = 60;

fn endpoint(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the emulators with scripts/emulators.sh start and source .emulators/env (scripts/test.sh does both)")
    })
}

fn aws_config(name: &str) -> String {
    format!(
        r#"
roles = ["projector"]

[storage]
backend = "aws"

[aws]
region = "us-east-1"
kinesis_endpoint_url = "{kinesis}"
dynamodb_endpoint_url = "{dynamodb}"
stream_name = "{name}"
table_prefix = "{name}"
shard_count = 4
lease_duration_ms = 3000
lease_renew_ms = 500
shard_refresh_ms = 1000

[search]
enabled = false

# Its events would count in the totals compared below; tests/operations.rs covers it.
[canary]
enabled = false

[projector]
idle_wait = 200
batch_events = 500
"#,
        kinesis = endpoint("SHOAL_TEST_KINESIS_ENDPOINT"),
        dynamodb = endpoint("SHOAL_TEST_DYNAMODB_ENDPOINT"),
    )
}

fn start_role(dir: &Path, config: &str, roles: &str) -> Shoal {
    let config = config.replace(r#"roles = ["projector"]"#, &format!("roles = [{roles}]"));
    Shoal::start(dir, Some(&config))
}

/// `shoal aws init`, twice (it must be safe to repeat), bounded in time.
fn aws_init(dir: &Path, config: &str) {
    let path = dir.join("init.toml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, config).unwrap();
    for _ in 0..2 {
        let mut child = std::process::Command::new(shoal_bin())
            .args(["aws", "init", "--config"])
            .arg(&path)
            .env("SHOAL_LOG", "warn")
            .spawn()
            .expect("spawn shoal aws init");
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("shoal aws init did not finish within 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "shoal aws init failed: {status}");
    }
}

/// The workload: batch `b` holds `PER_BATCH` events spread over the entities, with fixed ids,
/// names and times, so both backends get exactly the same events.
fn batch(b: usize, day: i64) -> Value {
    let events: Vec<Value> = (0..PER_BATCH)
        .map(|i| {
            let n = b * PER_BATCH + i;
            let name = ["login", "export", "report_viewed"][n % 3];
            json!({
                "id": uuid::Uuid::from_u128(0x5ea1_0000_0000_0000_0000_0000_0000_0000 + n as u128).to_string(),
                "name": name,
                "entity": format!("customer-{}", n % ENTITIES),
                "timestamp": day + (n as i64) * 60_000,
                "properties": {"amount": (n % 7) as f64},
            })
        })
        .collect();
    Value::from(events)
}

async fn clients(
    name: &str,
) -> (
    shoal_storage::aws::AwsClients,
    shoal_storage::aws::AwsConfig,
) {
    let mut config = shoal_storage::aws::AwsConfig::new("us-east-1", name, name);
    config.kinesis_endpoint_url = Some(endpoint("SHOAL_TEST_KINESIS_ENDPOINT"));
    config.dynamodb_endpoint_url = Some(endpoint("SHOAL_TEST_DYNAMODB_ENDPOINT"));
    let clients = shoal_storage::aws::AwsClients::connect(&config)
        .await
        .expect("aws clients");
    (clients, config)
}

/// The lease table: owner → shards held.
async fn lease_owners(name: &str) -> std::collections::BTreeMap<String, usize> {
    let (clients, config) = clients(name).await;
    let tables = shoal_storage::aws::DynamoTables::new(clients, &config);
    let mut owners = std::collections::BTreeMap::new();
    for lease in shoal_projector::lease::list(&tables, "projector")
        .await
        .expect("list leases")
    {
        *owners.entry(lease.owner).or_insert(0) += 1;
    }
    owners
}

/// Waits (bounded) until the leases are held as `want` says: (pid, shards held) pairs.
async fn wait_leases(name: &str, want: &[(u32, usize)], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let owners = lease_owners(name).await;
        let held = |pid: u32| {
            owners
                .iter()
                .filter(|(owner, _)| owner.starts_with(&format!("{pid}-")))
                .map(|(_, count)| *count)
                .sum::<usize>()
        };
        if want.iter().all(|(pid, count)| held(*pid) == *count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "leases not held as {want:?} within {limit:?}: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn send(shoal: &Shoal, key: &str, body: &Value) {
    // Retried on 5xx: a retry of the same ids must not double count (the log dedups).
    for attempt in 0..5 {
        let response = client()
            .post(shoal.url("/v1/events"))
            .bearer_auth(key)
            .body(body.to_string())
            .send()
            .await
            .expect("post events");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status == StatusCode::OK {
            assert_eq!(answer["rejected"], 0, "{answer}");
            return;
        }
        assert!(status.is_server_error(), "{status}: {answer}");
        tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
    }
    panic!("ingest kept failing");
}

/// The read-model facts of one entity that both backends must agree on.
async fn entity(shoal: &Shoal, key: &str, id: &str) -> Option<Value> {
    let (status, body) = get_json(shoal, &format!("/v1/entities/{id}?window_days=3650"), key).await;
    if status != StatusCode::OK {
        return None;
    }
    Some(json!({
        "events": body["events"],
        "first_seen": body["first_seen"],
        "last_seen": body["last_seen"],
        "event_counts": body["event_counts"],
        "totals": body["totals"],
    }))
}

/// The entity facts of the embedded backend fed `batches` batches.
async fn embedded_facts(dir: &Path, batches: usize, day: i64) -> Vec<(String, Value)> {
    let embedded = Shoal::start(dir, None);
    let local = embedded.credentials();
    for b in 0..batches {
        send(&embedded, &local.write_key, &batch(b, day)).await;
    }
    shoal_tests::wait_caught_up(&embedded, &local.read_key, Duration::from_secs(60)).await;
    let mut expected = Vec::new();
    for e in 0..ENTITIES {
        let id = format!("customer-{e}");
        let facts = entity(&embedded, &local.read_key, &id)
            .await
            .expect("embedded entity");
        assert_eq!(
            facts["events"],
            (batches * PER_BATCH / ENTITIES) as u64,
            "{facts}"
        );
        expected.push((id, facts));
    }
    expected
}

/// Waits (bounded) until every entity's facts on `front` equal `expected`, then checks once
/// more that they stay equal (nothing applied twice late).
async fn wait_equal(front: &Shoal, read: &str, expected: &[(String, Value)]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending = expected.to_vec();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (id, facts) in pending {
            if entity(front, read, &id).await.as_ref() != Some(&facts) {
                still.push((id, facts));
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let (id, facts) = &pending[0];
            let got = entity(front, read, id).await;
            panic!(
                "{} entities differ from the embedded backend after 120 s; {id}: expected {facts}, got {got:?}",
                pending.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (id, facts) in expected {
        assert_eq!(entity(front, read, id).await.as_ref(), Some(facts), "{id}");
    }
}

/// Every projection applied each of `events` exactly once (stored checkpoints, summed over
/// every shard the stream ever had).
async fn assert_applied_once(front: &Shoal, read: &str, events: usize) {
    let (status, body) = get_json(front, "/v1/projections", read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for projection in body["projections"].as_array().expect("projections") {
        assert_eq!(projection["events_applied"], events as u64, "{projection}");
    }
}

/// One ingest+query process and two projector processes on a fresh stream and tables.
struct Cluster {
    name: String,
    root: tempfile::TempDir,
    front: Shoal,
    first: Shoal,
    second: Shoal,
    write: String,
    read: String,
}

impl Cluster {
    fn start(shards: u32) -> Cluster {
        let name = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let config =
            aws_config(&name).replace("shard_count = 4", &format!("shard_count = {shards}"));
        let root = tempfile::tempdir().unwrap();
        aws_init(&root.path().join("init"), &config);
        let front = start_role(&root.path().join("front"), &config, r#""ingest", "query""#);
        let credentials = front.credentials();
        let first = start_role(&root.path().join("p1"), &config, r#""projector""#);
        let second = start_role(&root.path().join("p2"), &config, r#""projector""#);
        Cluster {
            name,
            root,
            front,
            first,
            second,
            write: credentials.write_key,
            read: credentials.read_key,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_while_ingesting_loses_and_doubles_nothing() {
    let Cluster {
        name,
        root,
        front,
        first,
        second,
        write,
        read,
    } = Cluster::start(2);
    let day = (shoal_schemas::time::now_millis() / DAY - 5) * DAY;

    for b in 0..BATCHES / 3 {
        send(&front, &write, &batch(b, day)).await;
    }
    // Split both shards while the rest is being ingested.
    let ingest = {
        let (front_url, write) = (front.base.clone(), write.clone());
        tokio::spawn(async move {
            for b in BATCHES / 3..BATCHES {
                let response = client()
                    .post(format!("{front_url}/v1/events"))
                    .bearer_auth(&write)
                    .body(batch(b, day).to_string())
                    .send()
                    .await
                    .expect("post events");
                assert_eq!(response.status(), StatusCode::OK);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (clients, aws) = clients(&name).await;
    clients
        .kinesis()
        .update_shard_count()
        .stream_name(&aws.stream_name)
        .target_shard_count(4)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .expect("reshard");
    ingest.await.expect("ingest task");

    let expected = embedded_facts(&root.path().join("embedded"), BATCHES, day).await;
    wait_equal(&front, &read, &expected).await;
    // The four children got leases and were worked by the two processes.
    let owners = lease_owners(&name).await;
    assert_eq!(owners.values().sum::<usize>(), 6, "{owners:?}");
    assert_applied_once(&front, &read, BATCHES * PER_BATCH).await;
    // Both parents were read to their end (children start only after that), and the children
    // took the events appended after the split.
    let (_, body) = get_json(&front, "/v1/projections", &read).await;
    for projection in body["projections"].as_array().expect("projections") {
        let shards = projection["shards"].as_array().expect("shards");
        let finished: Vec<&Value> = shards.iter().filter(|s| s["finished"] == true).collect();
        assert_eq!(finished.len(), 2, "{projection}");
        let in_parents: u64 = finished
            .iter()
            .map(|s| s["events_applied"].as_u64().unwrap_or(0))
            .sum();
        assert!(
            in_parents > 0 && in_parents < (BATCHES * PER_BATCH) as u64,
            "the split did not happen mid-ingest: {projection}"
        );
    }
    // A new query process builds its search index from the archive (DynamoDB), then follows
    // the stream after the archive's positions: every event indexed exactly once, across the
    // parents and children of the split.
    let search_config =
        aws_config(&name).replace("[search]\nenabled = false", "[search]\nenabled = true");
    let seeker = start_role(&root.path().join("seeker"), &search_config, r#""query""#);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Value::Null;
    loop {
        let (status, body) = get_json(
            &seeker,
            "/v1/search?type=event&exact_total=true&limit=1",
            &read,
        )
        .await;
        if status == StatusCode::OK
            && body["total"] == (BATCHES * PER_BATCH) as u64
            && body["freshness"]["seeding"].is_null()
        {
            break;
        }
        last = body;
        assert!(
            Instant::now() < deadline,
            "the new search index did not hold every event once within 120 s: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, body) = get_json(
        &seeker,
        "/v1/search?type=event&exact_total=true&limit=1",
        &read,
    )
    .await;
    assert_eq!(
        body["total"],
        (BATCHES * PER_BATCH) as u64,
        "{body} (before: {last})"
    );
    assert!(seeker.terminate());
    assert!(first.terminate() && second.terminate() && front.terminate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projectors_share_shards_and_survive_a_sigkill() {
    let Cluster {
        name,
        root,
        front,
        first,
        second,
        write,
        read,
    } = Cluster::start(4);
    let day = (shoal_schemas::time::now_millis() / DAY - 5) * DAY;
    for b in 0..BATCHES / 2 {
        send(&front, &write, &batch(b, day)).await;
    }
    // Both projectors take half of the four shards, then one is killed without warning.
    let (one, two) = (first.pid(), second.pid());
    wait_leases(&name, &[(one, 2), (two, 2)], Duration::from_secs(30)).await;
    first.kill();
    for b in BATCHES / 2..BATCHES {
        send(&front, &write, &batch(b, day)).await;
    }

    let expected = embedded_facts(&root.path().join("embedded"), BATCHES, day).await;
    // The surviving projector takes the killed one's leases and finishes every shard.
    wait_equal(&front, &read, &expected).await;
    wait_leases(&name, &[(one, 0), (two, 4)], Duration::from_secs(30)).await;

    // The projection status (served by the query process from stored checkpoints) shows every
    // event applied exactly once per projection.
    assert_applied_once(&front, &read, BATCHES * PER_BATCH).await;
    // A graceful stop hands the leases back (free, not left to expire).
    assert!(second.terminate(), "the surviving projector stops cleanly");
    assert_eq!(
        lease_owners(&name).await.get(""),
        Some(&4),
        "every lease released on SIGTERM"
    );
    assert!(front.terminate());
}

/// Events near a raised `max_event_bytes` make archive copies that overflow DynamoDB's 4 MiB per
/// transaction long before its 100 ops: 60 copies of ~90 KB in one flush are refused whatever
/// the retries unless the flush is packed by bytes too. Every event must reach the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_are_archived_within_the_transaction_bytes() {
    const EVENTS: usize = 60;
    let name = format!("big-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let config = aws_config(&name)
        .replace("shard_count = 4", "shard_count = 1")
        .replace(
            "[projector]\n",
            "[limits]\nmax_event_bytes = 100000\n\n[projector]\n",
        );
    let root = tempfile::tempdir().unwrap();
    aws_init(&root.path().join("init"), &config);
    let shoal = start_role(
        &root.path().join("all"),
        &config,
        r#""ingest", "query", "projector""#,
    );
    let credentials = shoal.credentials();
    let day = (shoal_schemas::time::now_millis() / DAY - 1) * DAY;
    let padding = "p".repeat(90_000);
    let events: Vec<Value> = (0..EVENTS)
        .map(|n| {
            json!({
                "id": uuid::Uuid::from_u128(0xb16_0000_0000_0000_0000_0000_0000_0000 + n as u128).to_string(),
                "name": "upload",
                "entity": "customer-big",
                "timestamp": day + n as i64 * 1000,
                "properties": {"n": n, "padding": padding},
            })
        })
        .collect();
    // Two requests (5 MB bodies), appended before the projector's first read of them ends.
    for half in events.chunks(EVENTS / 2) {
        send(&shoal, &credentials.write_key, &Value::from(half.to_vec())).await;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = get_json(
            &shoal,
            "/v1/entities/customer-big/events?limit=100",
            &credentials.read_key,
        )
        .await;
        let found = body["events"].as_array().map_or(0, Vec::len);
        if status == StatusCode::OK && found == EVENTS {
            let mut seen: Vec<u64> = body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|event| event["properties"]["n"].as_u64().expect("n"))
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..EVENTS as u64).collect::<Vec<_>>());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{found} of {EVENTS} large events archived after 90 s ({status})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
