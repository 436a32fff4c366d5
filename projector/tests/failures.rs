//! Failures a shard must survive: a poison event is dead-lettered and re-driven, an event
//! that would outgrow an entity's item is refused alone, and a flush that fails the same way
//! every time is retried with a growing pause instead of stopping or spinning.

mod common;

use common::{TestTables, log_in, metric, track};
use shoal_projector::series::Resolution;
use shoal_projector::{
    Cache, Derived, PoisonError, Projection, ProjectorConfig, State, catch_up, deadletter,
    entities, series,
};
use shoal_schemas::{Event, EventKind, Position};
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Item, Key, Table, TableName, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const T: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

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
