//! The Kinesis [`EventLog`] backend against kinesis-mock and DynamoDB Local
//! (`scripts/emulators.sh start`): the shared conformance suite, and retries exercised by
//! client-side fault injection (the emulators never throttle nor fail single records).

mod aws_common;

use shoal_schemas::{Event, EventKind, Position, ShardId};
use shoal_storage::aws::{Fault, KinesisLog, Operation, RetryPolicy};
use shoal_storage::conformance::log::stored_positions;
use shoal_storage::{AppendOutcome, Error, EventLog};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

mod conformance {
    shoal_storage::event_log_conformance!(super::aws_common::log().await);
}

fn event(tenant: &str, entity: &str, n: u64, properties: String) -> Event {
    Event {
        id: Uuid::now_v7(),
        tenant: tenant.to_owned(),
        kind: EventKind::Track,
        name: "fault".to_owned(),
        entity: entity.to_owned(),
        timestamp: n as i64,
        received_at: 1_700_000_000_000,
        properties,
        value: None,
    }
}

fn small(tenant: &str, entity: &str, n: u64) -> Event {
    event(tenant, entity, n, format!(r#"{{"n":{n}}}"#))
}

/// Letters zstd cannot shrink much, so a few events fill more than one 1 MiB record.
fn noise(seed: u64, len: usize) -> String {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'a' + ((state >> 33) % 26) as u8)
        })
        .collect()
}

fn tenant() -> String {
    format!("fault-{}", Uuid::new_v4().simple())
}

/// Every event of `tenant` in the log, per shard in read order, waiting up to 30 s for at
/// least `expected`.
async fn read_tenant(
    log: &KinesisLog,
    tenant: &str,
    expected: usize,
) -> Vec<(ShardId, Position, Event)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after: HashMap<ShardId, Position> = HashMap::new();
    let mut found = Vec::new();
    loop {
        for shard in log.shards().await.expect("shards") {
            loop {
                let batch = log
                    .read(&shard.id, after.get(&shard.id), 500)
                    .await
                    .expect("read");
                let Some(last) = batch.last_position() else {
                    break;
                };
                for record in &batch.records {
                    for (position, event) in record.positioned() {
                        if event.tenant == tenant {
                            found.push((shard.id.clone(), position, event.clone()));
                        }
                    }
                }
                after.insert(shard.id.clone(), last);
            }
        }
        if found.len() >= expected {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} events readable",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each entity's events read back exactly once, in the order they were appended (`timestamp`
/// carries the append order).
fn assert_once_in_order(reads: &[(ShardId, Position, Event)], appended: &[Event]) {
    let mut per_entity: HashMap<&str, Vec<i64>> = HashMap::new();
    for (_, _, event) in reads {
        per_entity
            .entry(event.entity.as_str())
            .or_default()
            .push(event.timestamp);
    }
    let mut expected: HashMap<&str, Vec<i64>> = HashMap::new();
    for event in appended {
        expected
            .entry(event.entity.as_str())
            .or_default()
            .push(event.timestamp);
    }
    assert_eq!(
        per_entity, expected,
        "per entity: every event once, in append order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_put_records_calls_are_retried() {
    let (log, clients, _resources) = aws_common::log_with_clients(aws_common::config()).await;
    let tenant = tenant();
    let events: Vec<Event> = (0..60)
        .map(|n| small(&tenant, &format!("e-{}", n % 6), n))
        .collect();
    clients
        .faults()
        .inject(Operation::PutRecords, Fault::Throttle, 3);
    clients
        .faults()
        .inject(Operation::PutRecords, Fault::Unavailable, 1);
    let outcomes = log
        .append(events.clone())
        .await
        .expect("append after retries");
    assert_eq!(stored_positions(&outcomes).len(), 60);
    assert_eq!(
        clients.faults().calls(Operation::PutRecords),
        5,
        "4 faults, then one call"
    );
    let reads = read_tenant(&log, &tenant, 60).await;
    assert_once_in_order(&reads, &events);
}

/// Partial `PutRecords` failures, several records per entity: failed records are re-sent
/// alone, and no later record of an entity overtakes a failed earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_record_failures_are_retried_without_loss_or_reordering() {
    let (log, clients, _resources) = aws_common::log_with_clients(aws_common::config()).await;
    let tenant = tenant();
    let mut events = Vec::new();
    // "big": six ~450 KB events (about 1.6 MB compressed) — more than one record.
    for n in 0..6 {
        events.push(event(&tenant, "big", n, noise(n, 450_000)));
    }
    for n in 6..60 {
        events.push(small(&tenant, &format!("small-{}", n % 5), n));
    }
    // The first entries of the next four calls fail: the "big" entity's first record among them.
    for _ in 0..4 {
        clients
            .faults()
            .inject(Operation::PutRecords, Fault::WithholdEntries(vec![0, 2]), 1);
    }
    let outcomes = log
        .append(events.clone())
        .await
        .expect("append after partial failures");
    let appended_at = stored_positions(&outcomes);
    assert_eq!(clients.faults().pending(Operation::PutRecords), 0);
    assert!(clients.faults().calls(Operation::PutRecords) >= 5);
    let reads = read_tenant(&log, &tenant, events.len()).await;
    assert_once_in_order(&reads, &events);
    // Reads find every event where append said it put it.
    let read_at: HashMap<Uuid, &Position> = reads.iter().map(|(_, p, e)| (e.id, p)).collect();
    for (event, position) in events.iter().zip(&appended_at) {
        assert_eq!(read_at[&event.id], position);
    }
    // The big entity really spanned records.
    let big_records: std::collections::HashSet<&str> = reads
        .iter()
        .filter(|(_, _, e)| e.entity == "big")
        .map(|(_, p, _)| p.sequence.as_str())
        .collect();
    assert!(big_records.len() > 1, "the big entity fit in one record");
}

/// A record that keeps failing stops the append with `Throttled`; what was stored stays, its
/// dedup markers say so, and the client's retry stores exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_retried_by_the_client_stores_each_event_once() {
    let (log, clients, _resources) = aws_common::log_with_clients(aws_common::config()).await;
    // A fixed tenant (the stream is this test's own), so the entities' shards are fixed: the
    // twelve entities hash to both shards of the test stream.
    let tenant = "fixed".to_owned();
    let events: Vec<Event> = (0..36)
        .map(|n| small(&tenant, &format!("e-{}", n % 12), n))
        .collect();
    let attempts = RetryPolicy::fast().max_attempts as usize;
    // The first record of every call fails: one shard's record never gets through.
    clients.faults().inject(
        Operation::PutRecords,
        Fault::WithholdEntries(vec![0]),
        attempts,
    );
    let failed = log.append(events.clone()).await;
    assert!(matches!(failed, Err(Error::Throttled(_))), "{failed:?}");
    clients.faults().clear();
    let outcomes = log
        .append(events.clone())
        .await
        .expect("the client's retry");
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, AppendOutcome::Stored(_)))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|o| **o == AppendOutcome::Duplicate)
        .count();
    assert_eq!(stored + duplicates, 36);
    assert!(stored > 0, "the shard whose record failed is stored now");
    assert!(
        duplicates > 0,
        "the other shard was stored by the first attempt"
    );
    let reads = read_tenant(&log, &tenant, 36).await;
    assert_once_in_order(&reads, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_put_error_surfaces_at_once_and_releases_the_claims() {
    let (log, clients, _resources) = aws_common::log_with_clients(aws_common::config()).await;
    let tenant = tenant();
    let events: Vec<Event> = (0..5).map(|n| small(&tenant, "e", n)).collect();
    clients
        .faults()
        .inject(Operation::PutRecords, Fault::Reject, 1);
    let answer = log.append(events.clone()).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    assert_eq!(
        clients.faults().calls(Operation::PutRecords),
        1,
        "not retried"
    );
    // The claims were released: the same events go through at once, not as duplicates.
    let outcomes = log.append(events.clone()).await.expect("append");
    assert_eq!(stored_positions(&outcomes).len(), 5);
    assert_once_in_order(&read_tenant(&log, &tenant, 5).await, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_reads_are_retried() {
    let (log, clients, _resources) = aws_common::log_with_clients(aws_common::config()).await;
    let tenant = tenant();
    let events: Vec<Event> = (0..20)
        .map(|n| small(&tenant, &format!("e-{}", n % 4), n))
        .collect();
    log.append(events.clone()).await.expect("append");
    clients
        .faults()
        .inject(Operation::GetRecords, Fault::Throttle, 2);
    clients
        .faults()
        .inject(Operation::GetShardIterator, Fault::Throttle, 2);
    clients
        .faults()
        .inject(Operation::ListShards, Fault::Throttle, 1);
    let reads = read_tenant(&log, &tenant, 20).await;
    assert_once_in_order(&reads, &events);
    assert_eq!(clients.faults().pending(Operation::GetRecords), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_can_be_switched_off() {
    let mut config = aws_common::config();
    config.dedup_window = Duration::ZERO;
    let (log, clients, _resources) = aws_common::log_with_clients(config).await;
    let tenant = tenant();
    let event = small(&tenant, "e", 1);
    log.append(vec![event.clone()]).await.expect("append");
    let again = log.append(vec![event.clone()]).await.expect("append");
    assert!(
        matches!(again[..], [AppendOutcome::Stored(_)]),
        "no dedup: stored again"
    );
    assert_eq!(
        clients.faults().calls(Operation::UpdateItem),
        0,
        "no dedup claims"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_twice_and_shard_listing() {
    let (log, clients, resources) = aws_common::log_with_clients(aws_common::config()).await;
    shoal_storage::aws::init(&clients, resources.config())
        .await
        .expect("second init");
    let shards = log.shards().await.expect("shards");
    assert_eq!(shards.len(), aws_common::TEST_SHARDS as usize);
    assert!(
        shards
            .iter()
            .all(|shard| !shard.closed && shard.parents.is_empty())
    );
}

/// A reshard the log's cached shard map has not seen: records sent for a parent land in a
/// child, the events that belong to the other child are sent again, and readers drop the
/// copies that landed in the wrong child. Every event is read exactly once, in order per
/// entity, reading parents before children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_a_reshard_keep_every_event_once_and_in_order() {
    let (log, clients, resources) = aws_common::log_with_clients(aws_common::config()).await;
    let tenant = tenant();
    let batch = |from: u64| -> Vec<Event> {
        (from..from + 40)
            .map(|n| small(&tenant, &format!("e-{}", n % 16), n))
            .collect()
    };
    let mut appended = batch(0);
    log.append(appended.clone())
        .await
        .expect("append before the reshard");
    clients
        .kinesis()
        .update_shard_count()
        .stream_name(&resources.config().stream_name)
        .target_shard_count(4)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .expect("reshard");
    // The log still routes by the two shards it listed before.
    for round in 1..4 {
        let events = batch(round * 40);
        appended.extend(events.clone());
        log.append(events).await.expect("append after the reshard");
    }
    assert!(
        clients.faults().calls(Operation::PutRecords) > 4,
        "the stale map misrouted nothing, so nothing was sent again: the test proves nothing"
    );
    let shards = log.shards().await.expect("shards");
    assert!(
        shards.iter().filter(|shard| shard.closed).count() >= 2,
        "{shards:?}"
    );
    let reads = read_tenant(&log, &tenant, appended.len()).await;
    assert_once_in_order(&reads, &appended);
}
