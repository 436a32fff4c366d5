//! Exact values of each projection through the running projector, poison events and re-drive,
//! the small-transaction (DynamoDB-shaped) flush path, and the pacing of flushes
//! (`flush_interval`). The entities' read functions: `entity_reads.rs`.

mod common;

use common::{TestTables, log_in, metric, track};
use shoal_projector::entities::{EventCountFilter, ListQuery};
use shoal_projector::series::Resolution;
use shoal_projector::{
    Cache, Derived, PoisonError, Projection, ProjectorConfig, State, archive, catch_up, deadletter,
    entities, freshness, series,
};
use shoal_schemas::{Event, EventKind, Position};
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Item, Key, Table, TableName, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Counts events per entity; poisons events named "bad" while `broken`.
struct Flaky {
    broken: AtomicBool,
}

impl Projection for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn version(&self) -> u32 {
        1
    }
    fn table(&self) -> TableName {
        TableName::Views
    }
    fn keys(&self, event: &Event, keys: &mut Vec<Key>) {
        keys.push(Key::new(
            format!("v1#{}#flaky", event.tenant),
            event.entity.clone(),
        ));
    }
    fn decode(&self, _key: &Key, item: Option<&Item>) -> shoal_projector::Result<State> {
        let count = item
            .and_then(|i| i.get("n"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        Ok(Box::new(count))
    }
    fn fold(&self, event: &Event, _: &Position, cache: &mut Cache) -> Result<(), PoisonError> {
        if event.name == "bad" && self.broken.load(Ordering::SeqCst) {
            return Err(PoisonError::new("bad event"));
        }
        let key = Key::new(format!("v1#{}#flaky", event.tenant), event.entity.clone());
        if let Some(count) = cache.get_mut::<f64>(&key) {
            *count += 1.0;
        }
        Ok(())
    }
    fn encode(
        &self,
        _key: &Key,
        state: &State,
        _: &mut Vec<Derived>,
    ) -> shoal_projector::Result<Item> {
        let count = state.downcast_ref::<f64>().copied().unwrap_or(0.0);
        Ok([("n".to_owned(), Value::N(count))].into())
    }
}

#[tokio::test]
async fn poison_is_dead_lettered_and_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 1));
    let tables: Arc<dyn Table> = Arc::new(MemoryTables::new());
    let flaky = Arc::new(Flaky {
        broken: AtomicBool::new(true),
    });
    let projections: Vec<Arc<dyn Projection>> = vec![
        flaky.clone(),
        Arc::new(series::Series),
        Arc::new(entities::Entities),
    ];
    let mut nan = metric("cpu", T, 0.0);
    nan.value = None;
    let mut not_object = track("u1", "login", T, "[1]");
    not_object.properties = "[1]".into();
    log.append(vec![
        track("u1", "ok", T, "{}"),
        track("u1", "bad", T + 1, "{}"),
        nan,
        not_object,
        track("u1", "ok", T + 2, "{}"),
        metric("cpu", T + 5, 4.0),
    ])
    .await
    .unwrap();
    let config = ProjectorConfig {
        batch_events: 2,
        fold_ahead_events: 0,
        ..ProjectorConfig::default()
    };
    catch_up(log.clone(), tables.clone(), &projections, &config)
        .await
        .unwrap();

    let count = |tables: Arc<dyn Table>| async move {
        let item = tables
            .get(TableName::Views, &Key::new("v1#acme#flaky", "u1"))
            .await
            .unwrap()
            .unwrap();
        item["n"].as_f64().unwrap()
    };
    // u1's events other than the poison one reached `flaky`, the later ones of the shard too.
    assert_eq!(count(tables.clone()).await, 3.0);
    let letters = deadletter::list(tables.as_ref(), "flaky", 1, None, 10)
        .await
        .unwrap();
    assert_eq!(letters.dead_letters.len(), 1);
    let letter = letters.dead_letters[0].clone();
    assert_eq!(letter.error, "bad event");
    assert_eq!(letter.attempts, 2);
    let series_letters = deadletter::list(tables.as_ref(), "series", 1, None, 10)
        .await
        .unwrap();
    assert_eq!(series_letters.dead_letters.len(), 1);
    assert!(series_letters.dead_letters[0].error.contains("finite"));
    let entity_letters = deadletter::list(tables.as_ref(), "entities", 1, None, 10)
        .await
        .unwrap();
    assert_eq!(entity_letters.dead_letters.len(), 1);
    let points = series::read_range(tables.as_ref(), "acme", "cpu", T, T + 10, Resolution::Raw)
        .await
        .unwrap();
    assert_eq!(
        points.len(),
        1,
        "the point after the poison one is projected"
    );
    let u1 = entities::get(tables.as_ref(), "acme", "u1")
        .await
        .unwrap()
        .unwrap()
        .profile;
    assert_eq!(u1.events, 3);

    // Still broken: the letter stays, with one more attempt.
    let series_letter = &series_letters.dead_letters[0];
    let series_projection = series::Series;
    assert!(
        shoal_projector::redrive(
            log.as_ref(),
            tables.as_ref(),
            &series_projection,
            &series_letter.shard,
            &series_letter.position
        )
        .await
        .is_err()
    );
    let again = deadletter::get(
        tables.as_ref(),
        "series",
        1,
        &series_letter.shard,
        &series_letter.position,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(again.attempts, series_letter.attempts + 1);

    // Fixed: the re-drive applies it and removes the letter.
    flaky.broken.store(false, Ordering::SeqCst);
    shoal_projector::redrive(
        log.as_ref(),
        tables.as_ref(),
        flaky.as_ref(),
        &letter.shard,
        &letter.position,
    )
    .await
    .unwrap();
    assert_eq!(count(tables.clone()).await, 4.0);
    assert!(
        deadletter::list(tables.as_ref(), "flaky", 1, None, 10)
            .await
            .unwrap()
            .dead_letters
            .is_empty()
    );
    assert!(
        shoal_projector::redrive(
            log.as_ref(),
            tables.as_ref(),
            flaky.as_ref(),
            &letter.shard,
            &letter.position
        )
        .await
        .is_err()
    );
}

/// An entity sending ever new event names or trait keys would grow its items past what the
/// tables store (400 KB), and every flush of its shard would fail for ever. The events that
/// would are dead letters instead; the rest of the shard, that entity's other events included,
/// is projected.
#[tokio::test]
async fn an_entity_growing_past_an_item_is_refused_event_by_event() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 1));
    let tables: Arc<dyn Table> = Arc::new(MemoryTables::new());
    let long_name = |i: usize| format!("viewed_product_{i:05}_{}", "x".repeat(230));
    let mut events: Vec<Event> = (0..1700)
        .map(|i| track("u1", &long_name(i), T + i as i64, "{}"))
        .collect();
    // An existing name: it grows nothing but a count.
    events.push(track("u1", &long_name(0), T + 5000, "{}"));
    // Traits: a new 20 KB key each time, then one replaced by a short value.
    let identify =
        |ts, props: String| common::event(EventKind::Identify, "u3", "", ts, &props, None);
    for i in 0..25 {
        events.push(identify(
            T + i,
            format!(r#"{{"note_{i}":"{}"}}"#, "y".repeat(20_000)),
        ));
    }
    events.push(identify(T + 100, r#"{"note_0":"short"}"#.into()));
    events.push(track("u2", "login", T, "{}"));
    let total = events.len() as u64;
    log.append(events).await.unwrap();
    let projections: Vec<Arc<dyn Projection>> = vec![Arc::new(entities::Entities)];
    catch_up(
        log.clone(),
        tables.clone(),
        &projections,
        &ProjectorConfig::default(),
    )
    .await
    .expect("the shard is projected past the entity");

    let letters = deadletter::list(tables.as_ref(), "entities", 1, None, 1000)
        .await
        .unwrap()
        .dead_letters;
    assert!(!letters.is_empty(), "nothing refused");
    for letter in &letters {
        assert!(
            letter.error.contains("too many distinct"),
            "{}",
            letter.error
        );
    }
    let profile = |entity: &'static str| {
        let tables = tables.clone();
        async move {
            entities::get(tables.as_ref(), "acme", entity)
                .await
                .unwrap()
                .unwrap()
                .profile
        }
    };
    let u1 = profile("u1").await;
    let u3 = profile("u3").await;
    assert_eq!(
        profile("u2").await.events,
        1,
        "the later entity is projected"
    );
    assert_eq!(u1.counts[&long_name(0)], 2, "a known name is still counted");
    assert!(
        u1.counts.len() > 1000 && u1.counts.len() < 1700,
        "{}",
        u1.counts.len()
    );
    assert!(
        u3.traits.len() > 10 && u3.traits.len() < 25,
        "{}",
        u3.traits.len()
    );
    assert_eq!(
        u3.traits["note_0"], "short",
        "a smaller value still replaces"
    );
    assert_eq!(
        u1.events + u3.events + 1 + letters.len() as u64,
        total,
        "every event applied or dead-lettered"
    );
    assert_eq!(
        letters.len(),
        1700 - u1.counts.len() + 25 - u3.traits.len(),
        "exactly the events that did not fit"
    );
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

/// A flush that fails the same way every time (here a unit over the transaction's bytes) is
/// retried with a growing pause, and shown in the status. Loading the checkpoint between two
/// attempts used to reset the backoff, so such a shard retried every `backoff_initial`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_failing_the_same_flush_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 1));
    let tables: Arc<dyn Table> = Arc::new(TestTables::new(100).with_max_bytes(200));
    let traits = format!(r#"{{"bio":"{}"}}"#, "b".repeat(1000));
    log.append(vec![common::event(
        EventKind::Identify,
        "u1",
        "",
        T,
        &traits,
        None,
    )])
    .await
    .unwrap();
    let handle = shoal_projector::Projector::new(
        log.clone(),
        tables.clone(),
        vec![Arc::new(entities::Entities)],
        ProjectorConfig {
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(10),
            ..ProjectorConfig::default()
        },
    )
    .unwrap()
    .spawn()
    .await
    .unwrap();
    // Pauses of 10, 20, 40, … ms: 8 attempts in the first 1.5 s; ~150 at a fixed 10 ms.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = handle.status_source().status().await.unwrap();
    handle.shutdown().await;
    let shard = &status.projections[0].shards[0];
    assert!(
        (2..=12).contains(&shard.retries),
        "{} retries in 1.5 s",
        shard.retries
    );
    let error = shard.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("the backend takes 200"), "{error}");
    assert_eq!(shard.checkpoint.events_applied, 0);
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
