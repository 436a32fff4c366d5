//! Exact values of each projection through the running projector (failures: `failures.rs`),
//! the small-transaction (DynamoDB-shaped) flush path, and the pacing of flushes
//! (`flush_interval`). The entities' read functions: `entity_reads.rs`.

mod common;

use common::{TestTables, log_in, metric, track};
use shoal_projector::entities::{EventCountFilter, ListQuery};
use shoal_projector::series::Resolution;
use shoal_projector::{ProjectorConfig, archive, catch_up, entities, freshness, series};
use shoal_schemas::{Event, EventKind};
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Table};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const T: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn sample() -> Vec<Event> {
    let identify = |ts, props: &str| common::event(EventKind::Identify, "u1", "", ts, props, None);
    vec![
        track("u1", "login", T + 1000, r#"{"seconds":5}"#),
        track("u1", "login", T + DAY + 1000, r#"{"seconds":7,"ok":true}"#),
        identify(T + 2000, r#"{"plan":"trial","name":"A"}"#),
        identify(T + 3000, r#"{"plan":"pro"}"#),
        track("u2", "login", T + 500, "{}"),
        metric("cpu{host=a}", T, 1.0),
        metric("cpu{host=a}", T + 10_000, 3.0),
        metric("cpu{host=a}", T + 10_000, 2.0),
        metric("cpu{host=a}", T + 70_000, 5.0),
        metric("cpu{host=a}", T + HOUR, 10.0),
    ]
}

/// Waits until every projection's checkpoints account for `events` events.
async fn wait_applied(tables: &dyn Table, events: u64) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for name in [archive::NAME, series::NAME, entities::NAME] {
            let fresh = freshness(tables, name, 1).await.unwrap();
            let done: u64 = fresh
                .shards
                .iter()
                .map(|c| c.events_applied + c.dead_letters)
                .sum();
            all &= done >= events;
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "projection did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_hold_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    let tables: Arc<dyn Table> = Arc::new(MemoryTables::new());
    let projector = shoal_projector::Projector::new(
        log.clone(),
        tables.clone(),
        shoal_projector::default_projections(log.as_ref()),
        ProjectorConfig::default(),
    )
    .unwrap();
    let handle = projector.spawn().await.unwrap();
    log.append(sample()).await.unwrap();
    let latency = wait_applied(tables.as_ref(), 10).await;
    assert!(
        latency < Duration::from_secs(1),
        "queryable after {latency:?}"
    );

    let u1 = entities::get(tables.as_ref(), "acme", "u1")
        .await
        .unwrap()
        .unwrap()
        .profile;
    assert_eq!(u1.first_seen, Some(T + 1000));
    assert_eq!(u1.last_seen, Some(T + DAY + 1000));
    assert_eq!(u1.events, 4);
    assert_eq!(u1.traits["plan"], "pro");
    assert_eq!(u1.traits["name"], "A");
    assert_eq!(u1.counts["login"], 2);
    assert_eq!(u1.counts["$identify"], 2);
    assert_eq!(u1.totals["login.seconds"], 12.0);
    assert!(!u1.totals.contains_key("login.ok"));
    let day_one = entities::event_counts(tables.as_ref(), "acme", "u1", T, T)
        .await
        .unwrap();
    assert_eq!(day_one.get("login"), Some(&1));
    assert_eq!(day_one.get("$identify"), Some(&2));
    assert!(
        entities::get(tables.as_ref(), "acme", "nobody")
            .await
            .unwrap()
            .is_none()
    );

    let all = entities::list(tables.as_ref(), "acme", &ListQuery::default())
        .await
        .unwrap();
    let names: Vec<_> = all.entities.iter().map(|e| e.entity.as_str()).collect();
    assert_eq!(names, ["u1", "u2"]);
    let pro = ListQuery {
        traits: vec![("plan".into(), serde_json::json!("pro"))],
        ..ListQuery::default()
    };
    assert_eq!(
        entities::list(tables.as_ref(), "acme", &pro)
            .await
            .unwrap()
            .entities
            .len(),
        1
    );
    let busy = ListQuery {
        event_count: Some(EventCountFilter {
            name: "login".into(),
            from: T,
            to: T + DAY,
            min: 2,
            max: None,
        }),
        ..ListQuery::default()
    };
    let busy = entities::list(tables.as_ref(), "acme", &busy)
        .await
        .unwrap();
    assert_eq!(busy.entities.len(), 1);
    assert_eq!(busy.entities[0].event_count, Some(2));
    let paged = ListQuery {
        limit: 1,
        ..ListQuery::default()
    };
    let first = entities::list(tables.as_ref(), "acme", &paged)
        .await
        .unwrap();
    assert_eq!(first.entities[0].entity, "u1");
    let second = ListQuery {
        cursor: first.next,
        ..paged.clone()
    };
    let second = entities::list(tables.as_ref(), "acme", &second)
        .await
        .unwrap();
    assert_eq!(second.entities[0].entity, "u2");
    let bad = ListQuery {
        cursor: Some("nope".into()),
        ..paged
    };
    assert!(entities::list(tables.as_ref(), "acme", &bad).await.is_err());

    let cpu = "cpu{host=a}";
    let read =
        |resolution| series::read_range(tables.as_ref(), "acme", cpu, T, T + 2 * DAY, resolution);
    let raw = read(Resolution::Raw).await.unwrap();
    assert_eq!(
        raw.iter().map(|p| (p.t, p.last)).collect::<Vec<_>>(),
        [
            (T, 1.0),
            (T + 10_000, 2.0),
            (T + 70_000, 5.0),
            (T + HOUR, 10.0)
        ]
    );
    let minutes = read(Resolution::Minute).await.unwrap();
    let summary: Vec<_> = minutes
        .iter()
        .map(|p| (p.t, p.count, p.sum, p.min, p.max, p.last))
        .collect();
    assert_eq!(
        summary,
        [
            (T, 2, 3.0, 1.0, 2.0, 2.0),
            (T + MINUTE, 1, 5.0, 5.0, 5.0, 5.0),
            (T + HOUR, 1, 10.0, 10.0, 10.0, 10.0)
        ]
    );
    let hours = read(Resolution::Hour).await.unwrap();
    let summary: Vec<_> = hours
        .iter()
        .map(|p| (p.t, p.count, p.sum, p.min, p.max, p.last))
        .collect();
    assert_eq!(
        summary,
        [
            (T, 3, 8.0, 1.0, 5.0, 5.0),
            (T + HOUR, 1, 10.0, 10.0, 10.0, 10.0)
        ]
    );
    let days = read(Resolution::Day).await.unwrap();
    let summary: Vec<_> = days
        .iter()
        .map(|p| (p.t, p.count, p.sum, p.min, p.max, p.last))
        .collect();
    assert_eq!(summary, [(T, 4, 18.0, 1.0, 10.0, 10.0)]);
    let listed = series::list(tables.as_ref(), "acme", "", None, 100)
        .await
        .unwrap();
    assert_eq!(listed.series, [(cpu.to_owned(), "cpu".to_owned())]);
    assert_eq!(Resolution::coarsest_for(5 * MINUTE), Resolution::Minute);
    assert_eq!(Resolution::coarsest_for(DAY), Resolution::Day);

    let page = archive::events(
        tables.as_ref(),
        Some(log.as_ref()),
        "acme",
        "u1",
        T,
        T + DAY + 1000,
        None,
        3,
    )
    .await
    .unwrap();
    assert_eq!(page.events.len(), 3);
    assert_eq!(page.events[0]["timestamp"], "2024-01-02T00:00:01.000Z");
    let rest = archive::events(
        tables.as_ref(),
        Some(log.as_ref()),
        "acme",
        "u1",
        T,
        T + DAY + 1000,
        page.next,
        3,
    )
    .await
    .unwrap();
    assert_eq!(rest.events.len(), 1);
    assert_eq!(rest.events[0]["name"], "login");

    // A replay of the same log changes nothing.
    let status = handle.status_source().status().await.unwrap();
    assert_eq!(status.projections.len(), 3);
    assert!(status.projections.iter().all(|p| p.dead_letters == 0));
    handle.shutdown().await;
}

#[tokio::test]
async fn small_transactions_give_the_same_read_models() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    log.append(sample()).await.unwrap();
    let small = Arc::new(TestTables::new(4));
    let whole = same_read_models_as_unbounded(log, small.clone()).await;
    assert!(small.transacts.load(Ordering::SeqCst) > whole.transacts.load(Ordering::SeqCst));
}

/// Projects `log` into `bounded` and into tables with no transaction limits, and checks both
/// hold the same items; returns the unbounded tables.
async fn same_read_models_as_unbounded(
    log: Arc<dyn EventLog>,
    bounded: Arc<TestTables>,
) -> Arc<TestTables> {
    let projections = shoal_projector::default_projections(log.as_ref());
    let config = ProjectorConfig::default();
    let whole = Arc::new(TestTables::new(usize::MAX));
    catch_up(log.clone(), whole.clone(), &projections, &config)
        .await
        .unwrap();
    catch_up(log.clone(), bounded.clone(), &projections, &config)
        .await
        .expect("every transaction within the limits");
    let keys = whole.keys();
    assert_eq!(keys, bounded.keys());
    assert_eq!(
        common::dump(whole.as_ref(), &keys).await,
        common::dump(bounded.as_ref(), &keys).await
    );
    whole
}

/// A backend that bounds a transaction's bytes (DynamoDB: 4 MiB) gets flushes packed by bytes
/// too: forty profiles of ~1 KiB of traits overflow 8 KiB long before 100 ops, and a flush
/// packed by ops alone is refused on every retry.
#[tokio::test]
async fn transactions_are_packed_by_bytes_as_well_as_ops() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    let bio = "b".repeat(1000);
    let events: Vec<Event> = (0..40)
        .map(|n| {
            let traits = format!(r#"{{"plan":"pro","bio":"{bio}{n}"}}"#);
            common::event(
                EventKind::Identify,
                &format!("u{n}"),
                "",
                T + n,
                &traits,
                None,
            )
        })
        .collect();
    log.append(events).await.unwrap();
    let bounded = Arc::new(TestTables::new(100).with_max_bytes(8 * 1024));
    same_read_models_as_unbounded(log, bounded.clone()).await;
    // 40 KiB of profiles in transactions of at most 8 KiB.
    assert!(bounded.transacts.load(Ordering::SeqCst) >= 5);
}

/// Appends that arrive while a caught-up worker's `flush_interval` runs share one flush: ten
/// single-event appends 1 ms apart cost each worker two flushes (the first at once, the rest
/// together), where without the interval each append is one (30 here, measured).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_within_the_flush_interval_share_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 1));
    let counted = Arc::new(TestTables::new(usize::MAX));
    let tables: Arc<dyn Table> = counted.clone();
    let projections = shoal_projector::default_projections(log.as_ref());
    let workers = projections.len();
    let handle = shoal_projector::Projector::new(
        log.clone(),
        tables.clone(),
        projections,
        ProjectorConfig {
            flush_interval: Duration::from_millis(50),
            ..ProjectorConfig::default()
        },
    )
    .unwrap()
    .spawn()
    .await
    .unwrap();
    // Two events in the first read, as under a stream of appends: a wait that gathers only
    // the event that woke the worker would turn waiting off (the next test).
    log.append(vec![
        track("warm", "opened", T, "{}"),
        track("warm", "closed", T + 1, "{}"),
    ])
    .await
    .unwrap();
    wait_applied(tables.as_ref(), 2).await;
    // Past the interval: the next append is read at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = counted.transacts.load(Ordering::SeqCst);
    for i in 0..10 {
        log.append(vec![track(&format!("c{i}"), "opened", T + i, "{}")])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    wait_applied(tables.as_ref(), 12).await;
    let flushes = counted.transacts.load(Ordering::SeqCst) - before;
    assert!(
        flushes <= 3 * workers,
        "{flushes} flushes of {workers} workers for 10 appends within one interval"
    );
    handle.shutdown().await;
}

/// A writer that sends one event at a time and waits until it is readable has nothing to
/// share a flush with: once one wait gathered nothing more, its events are read at once, not
/// after `flush_interval`. The median wait is compared with the interval, which the rule
/// before slept through for every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_writer_is_not_held_for_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 1));
    let tables: Arc<dyn Table> = Arc::new(TestTables::new(usize::MAX));
    let interval = Duration::from_millis(50);
    let handle = shoal_projector::Projector::new(
        log.clone(),
        tables.clone(),
        shoal_projector::default_projections(log.as_ref()),
        ProjectorConfig {
            flush_interval: interval,
            ..ProjectorConfig::default()
        },
    )
    .unwrap()
    .spawn()
    .await
    .unwrap();
    let mut waits = Vec::new();
    for i in 0..9 {
        log.append(vec![track(&format!("c{i}"), "opened", T + i, "{}")])
            .await
            .unwrap();
        waits.push(wait_applied(tables.as_ref(), i as u64 + 1).await);
    }
    waits.sort();
    assert!(
        waits[4] < interval * 4 / 5,
        "median wait {:?} for a lone writer's event (interval {interval:?}): {waits:?}",
        waits[4]
    );
    handle.shutdown().await;
}
