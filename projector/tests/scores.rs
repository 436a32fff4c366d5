//! The scores projection and its rules manager: time-driven re-evaluation with a controlled
//! clock, a rebuild interrupted by failures equal to an uninterrupted one, and the whole
//! propose → rebuild → compare → activate → purge cycle with a restart in the middle.

mod common;

use common::{Fault, TestTables, dump, event, log_in, track};
use shoal_projector::scores::manager::{Clock, RulesManager, ScoresConfig, Which};
use shoal_projector::scores::read::{self, ListScores};
use shoal_projector::scores::{Cause, Scores, projection_name, sweep::sweep};
use shoal_projector::{Error, Projection, Projector, ProjectorConfig, catch_up};
use shoal_rules::{Band, Format, Rules, parse};
use shoal_schemas::{Event, EventKind};
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Query, Table, TableName};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

const T: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400_000;

/// Good with ≥ 3 logins in 7 days; a trial plan puts the entity in the `trial` stage.
const V1: &str = r#"
conditions:
  logins: { event_count: { event: login, days: 7, at_least: 3 } }
  trial: { trait: { name: plan, equals: trial } }
stages:
  - { name: trial, all: [trial] }
  - { name: customer }
scorecards:
  default:
    weights: { logins: 1 }
    bands: { good_from: 50, bad_below: 50 }
"#;

/// Stricter: ≥ 5 logins in 7 days.
const V2: &str = r#"
conditions:
  logins: { event_count: { event: login, days: 7, at_least: 5 } }
  trial: { trait: { name: plan, equals: trial } }
stages:
  - { name: trial, all: [trial] }
  - { name: customer }
scorecards:
  default:
    weights: { logins: 1 }
    bands: { good_from: 50, bad_below: 50 }
"#;

fn rules(text: &str) -> Arc<Rules> {
    Arc::new(parse(text, Format::Yaml).expect("valid rules"))
}

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_turns_an_idle_customer_bad() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    let tables: Arc<dyn Table> = Arc::new(MemoryTables::new());
    log.append(vec![
        track("u1", "login", T, "{}"),
        track("u1", "login", T + 1000, "{}"),
        track("u1", "login", T + 2000, "{}"),
        track("u2", "login", T, "{}"),
    ])
    .await
    .unwrap();
    let scores = Arc::new(Scores::new("acme", 1, rules(V1)));
    let projections: Vec<Arc<dyn Projection>> = vec![scores.clone()];
    catch_up(
        log,
        tables.clone(),
        &projections,
        &ProjectorConfig::default(),
    )
    .await
    .unwrap();
    let u1 = read::get(tables.as_ref(), 1, "acme", "u1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u1.score, u1.band), (100, Some(Band::Good)));
    assert_eq!(u1.as_of, T + 2000, "evaluated as of its newest event");
    let u2 = read::get(tables.as_ref(), 1, "acme", "u2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u2.band, Some(Band::Bad));

    // Six days later the three logins are still in the window: nothing changes.
    let report = sweep(tables.as_ref(), &scores, T + 6 * DAY).await.unwrap();
    assert_eq!((report.entities, report.changed), (2, 0));
    // On the eighth day they have slid out: u1 turns Bad with no new event.
    let report = sweep(tables.as_ref(), &scores, T + 7 * DAY).await.unwrap();
    assert_eq!((report.entities, report.changed, report.skipped), (2, 1, 0));
    let u1 = read::get(tables.as_ref(), 1, "acme", "u1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u1.score, u1.band), (0, Some(Band::Bad)));
    let causes: Vec<(Band, Cause, i64)> =
        u1.history.iter().map(|c| (c.band, c.cause, c.at)).collect();
    assert_eq!(
        causes,
        vec![
            (Band::Bad, Cause::Event, T),
            (Band::Good, Cause::Event, T + 2000),
            (Band::Bad, Cause::Clock, T + 7 * DAY)
        ]
    );
    // The index moved with it.
    let bad = read::list(
        tables.as_ref(),
        1,
        "acme",
        &ListScores {
            band: Some(Band::Bad),
            ..ListScores::default()
        },
    )
    .await
    .unwrap();
    let names: Vec<&str> = bad.entities.iter().map(|r| r.entity.as_str()).collect();
    // Highest score first, then entity ids descending.
    assert_eq!(names, vec!["u2", "u1"]);
}

/// A deterministic history: `customers` customers over 40 days, some keep logging in, some stop,
/// some are on trial.
fn history(customers: usize) -> Vec<Event> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut events = Vec::new();
    for customer in 0..customers {
        let entity = format!("c{customer}");
        if customer % 4 == 0 {
            let plan = r#"{"plan":"trial"}"#;
            events.push(event(EventKind::Identify, &entity, "", T, plan, None));
        }
        let active_days = if customer % 3 == 0 { 10 } else { 40 };
        for day in 0..active_days {
            for _ in 0..(next() % 3) {
                let time = T + day * DAY + (next() % DAY as u64) as i64;
                events.push(track(&entity, "login", time, "{}"));
            }
        }
    }
    // Log order is not time order.
    let mut shuffled: Vec<(u64, Event)> = events.into_iter().map(|e| (next(), e)).collect();
    shuffled.sort_by_key(|(key, _)| *key);
    shuffled.into_iter().map(|(_, e)| e).collect()
}

async fn score_dump(
    tables: &TestTables,
) -> Vec<(TableName, shoal_storage::Key, Option<shoal_storage::Item>)> {
    let keys = tables
        .keys()
        .into_iter()
        .filter(|(table, key)| *table == TableName::Views || key.pk.contains("scores.acme"))
        .collect();
    dump(tables, &keys).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_interrupted_by_failures_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    for chunk in history(60).chunks(97) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    let projections: Vec<Arc<dyn Projection>> = vec![Arc::new(Scores::new("acme", 1, rules(V1)))];
    // Small flushes, so there are many to interrupt; each folds up to three reads ahead.
    let config = ProjectorConfig {
        batch_events: 50,
        fold_ahead_lag: std::time::Duration::ZERO,
        fold_ahead_events: 150,
        ..ProjectorConfig::default()
    };
    let clean = Arc::new(TestTables::new(usize::MAX));
    catch_up(log.clone(), clean.clone(), &projections, &config)
        .await
        .unwrap();

    let crashed = Arc::new(TestTables::new(usize::MAX));
    let mut failures = 0;
    for round in 0u64.. {
        crashed.arm(
            1 + round % 5,
            if round % 2 == 0 {
                Fault::After
            } else {
                Fault::Before
            },
        );
        match catch_up(log.clone(), crashed.clone(), &projections, &config).await {
            Ok(_)
                if crashed.calls.load(Ordering::SeqCst)
                    < crashed.fail_at.load(Ordering::SeqCst) =>
            {
                break;
            }
            Ok(_) => {}
            Err(error) => {
                assert!(error.is_transient(), "{error}");
                failures += 1;
            }
        }
        assert!(round < 1000, "the rebuild never finished");
    }
    assert!(failures >= 3, "the failures were injected ({failures})");
    let expected = score_dump(&clean).await;
    assert!(
        expected.len() > 60,
        "one state and one index entry per customer"
    );
    assert_eq!(score_dump(&crashed).await, expected);
}

async fn wait_caught_up(projector: &shoal_projector::ProjectorHandle, version: u32) {
    let started = Instant::now();
    while !projector
        .caught_up(&projection_name("acme"), version)
        .await
        .unwrap()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "v{version} did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn partition_len(tables: &dyn Table, table: TableName, pk: &str) -> usize {
    tables
        .query(table, &Query::partition(pk))
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_rebuild_compare_activate_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    let tables: Arc<dyn Table> = Arc::new(MemoryTables::new());
    // c0..c9 log in 4 times on the last day; c10..c19 6 times; all on 2026-01-10.
    let mut events = Vec::new();
    for customer in 0..20 {
        let times = if customer < 10 { 4 } else { 6 };
        for n in 0..times {
            events.push(track(
                &format!("c{customer}"),
                "login",
                T + 9 * DAY + n * 1000,
                "{}",
            ));
        }
    }
    log.append(events).await.unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(T + 9 * DAY + DAY / 2)));
    let start = |tables: Arc<dyn Table>| {
        let log = log.clone();
        let clock = clock.clone();
        async move {
            let projector =
                Projector::new(log, tables.clone(), Vec::new(), ProjectorConfig::default())
                    .unwrap()
                    .spawn()
                    .await
                    .unwrap();
            let manager =
                RulesManager::start(tables, projector.clone(), clock, ScoresConfig::default())
                    .await
                    .unwrap();
            (projector, manager)
        }
    };
    let (projector, manager) = start(tables.clone()).await;
    assert!(matches!(
        manager.resolve("acme", Which::Live).await,
        Err(Error::NotFound(_))
    ));

    let v1 = manager
        .propose("acme", (*rules(V1)).clone(), false)
        .await
        .unwrap();
    assert_eq!(v1, 1);
    wait_caught_up(&projector, 1).await;
    assert_eq!(manager.activate("acme", 1).await.unwrap(), None);
    let (live, _) = manager.resolve("acme", Which::Live).await.unwrap();
    assert_eq!(live, 1);
    let good = read::distribution(tables.as_ref(), 1, "acme")
        .await
        .unwrap();
    assert_eq!(good.bands.get(&Band::Good), Some(&20));

    let v2 = manager
        .propose("acme", (*rules(V2)).clone(), false)
        .await
        .unwrap();
    assert_eq!(v2, 2);
    // One rebuild per tenant at a time.
    let again = manager.propose("acme", (*rules(V2)).clone(), false).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    wait_caught_up(&projector, 2).await;
    // The live version still answers v1 while v2 is built.
    assert_eq!(manager.resolve("acme", Which::Live).await.unwrap().0, 1);
    let comparison = read::compare(tables.as_ref(), "acme", 1, 2).await.unwrap();
    assert_eq!(
        (
            comparison.entities,
            comparison.unchanged,
            comparison.worsened
        ),
        (20, 10, 10)
    );
    assert_eq!(comparison.transitions.len(), 1);
    let transition = &comparison.transitions[0];
    assert_eq!(
        (
            transition.stage.as_str(),
            transition.from,
            transition.to,
            transition.entities
        ),
        ("customer", Band::Good, Band::Bad, 10)
    );

    // A restart in the middle: the candidate resumes, the live version too.
    projector.shutdown().await;
    let (projector, manager) = start(tables.clone()).await;
    assert!(projector.is_running(&projection_name("acme"), 1));
    assert!(projector.is_running(&projection_name("acme"), 2));
    wait_caught_up(&projector, 2).await;

    assert_eq!(manager.activate("acme", 2).await.unwrap(), Some(1));
    assert_eq!(manager.resolve("acme", Which::Live).await.unwrap().0, 2);
    assert!(!projector.is_running(&projection_name("acme"), 1));
    // v1 is deleted in the background.
    let started = Instant::now();
    while partition_len(tables.as_ref(), TableName::Views, "v1#acme#scores").await > 0
        || partition_len(
            tables.as_ref(),
            TableName::Control,
            "_projector#checkpoint#scores.acme#v1",
        )
        .await
            > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "v1 was not purged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        read::get(tables.as_ref(), 1, "acme", "c0")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        read::distribution(tables.as_ref(), 2, "acme")
            .await
            .unwrap()
            .bands
            .get(&Band::Bad),
        Some(&10)
    );

    // Moving the clock a week turns everyone Bad on the next sweep.
    clock.0.fetch_add(7 * DAY, Ordering::SeqCst);
    let reports = manager.sweep_all().await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].2.changed, 10);
    assert_eq!(
        read::distribution(tables.as_ref(), 2, "acme")
            .await
            .unwrap()
            .bands
            .get(&Band::Bad),
        Some(&20)
    );

    // A candidate can be abandoned; what it built goes.
    assert_eq!(
        manager
            .propose("acme", (*rules(V1)).clone(), false)
            .await
            .unwrap(),
        3
    );
    wait_caught_up(&projector, 3).await;
    assert!(matches!(
        manager.activate("acme", 2).await,
        Err(Error::Conflict(_))
    ));
    manager.abandon("acme", 3).await.unwrap();
    assert!(matches!(
        manager.resolve("acme", Which::Candidate).await,
        Err(Error::NotFound(_))
    ));
    let started = Instant::now();
    while partition_len(tables.as_ref(), TableName::Views, "v3#acme#scores").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "v3 was not purged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let overview = manager.overview("acme").await.unwrap();
    let statuses: Vec<String> = overview
        .versions
        .iter()
        .map(|v| {
            serde_json::to_value(v.record.status)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(statuses, vec!["retired", "active", "abandoned"]);
    projector.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_visits_each_entity_once_even_when_scores_rise() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    // The embedded tables page as the server's do (a page holds at most `limit` items).
    let tables: Arc<dyn Table> = Arc::new(
        shoal_storage::embedded::EmbeddedTables::open(&dir.path().join("tables.redb")).unwrap(),
    );
    let events: Vec<Event> = (0..1500)
        .map(|n| track(&format!("u{n:04}"), "login", T, "{}"))
        .collect();
    log.append(events).await.unwrap();
    // Staleness is what scores here: every entity climbs from 0 to 100 when the clock moves,
    // to a later key of the index that a naive walk would meet again.
    let stale = r#"
conditions:
  stale: { recency: { event: login, more_than_days: 7 } }
scorecards:
  default: { weights: { stale: 1 }, bands: { good_from: 50, bad_below: 50 } }
"#;
    let scores = Arc::new(Scores::new("acme", 1, rules(stale)));
    let projections: Vec<Arc<dyn Projection>> = vec![scores.clone()];
    catch_up(
        log,
        tables.clone(),
        &projections,
        &ProjectorConfig::default(),
    )
    .await
    .unwrap();
    let report = sweep(tables.as_ref(), &scores, T + 8 * DAY).await.unwrap();
    assert_eq!((report.entities, report.changed), (1500, 1500));
    let distribution = read::distribution(tables.as_ref(), 1, "acme")
        .await
        .unwrap();
    assert_eq!(distribution.entities, 1500, "one index entry per entity");
    assert_eq!(distribution.bands.get(&Band::Good), Some(&1500));
}
