//! The entities read model's reads over what the projector wrote: the list's event-count
//! filter, the one-read entity lookup, and profiles stored in an earlier form.

mod common;

use common::{TestTables, log_in, track};
use shoal_projector::entities::{EventCountFilter, ListQuery};
use shoal_projector::{ProjectorConfig, catch_up, entities};
use shoal_schemas::EventKind;
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Item, Key, Table, TableName, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const T: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const DAY: i64 = 86_400_000;

/// Replays the whole log into `tables` with the default projections and settings.
async fn catch_up_default(log: &Arc<dyn EventLog>, tables: Arc<dyn Table>) {
    catch_up(
        log.clone(),
        tables,
        &shoal_projector::default_projections(log.as_ref()),
        &ProjectorConfig::default(),
    )
    .await
    .unwrap();
}

/// The entity list's event-count filter reads its candidates' counts together: every page,
/// walked by cursor with small limits, scan bounds and 2-item storage pages (so a count read
/// spans pages), holds what one `event_counts` per entity in index order says it should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_count_filter_lists_what_counting_each_entity_gives() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    let mut events = Vec::new();
    for n in 0..40i64 {
        let entity = format!("c{n:02}");
        // 0..=4 logins spread over days 0..=6, a trait on every third.
        for k in 0..(n % 5) {
            events.push(track(&entity, "login", T + ((n + k) % 7) * DAY + n, "{}"));
        }
        events.push(track(&entity, "opened", T + 8 * DAY + n * 1000, "{}"));
        if n % 3 == 0 {
            events.push(common::event(
                EventKind::Identify,
                &entity,
                "",
                T + n,
                r#"{"plan":"pro"}"#,
                None,
            ));
        }
    }
    log.append(events).await.unwrap();
    let tables = Arc::new(TestTables::new(usize::MAX));
    catch_up_default(&log, tables.clone()).await;
    let order = entities::list(
        tables.as_ref(),
        "acme",
        &ListQuery {
            limit: 1000,
            ..ListQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(order.entities.len(), 40);
    tables.page_cap.store(2, Ordering::SeqCst);
    let (from, to) = (T + DAY, T + 4 * DAY);
    for (min, max, pro) in [
        (1, None, false),
        (2, Some(3), false),
        (0, Some(0), true),
        (3, None, true),
    ] {
        let mut expected = Vec::new();
        for summary in &order.entities {
            if pro && summary.traits.get("plan") != Some(&serde_json::json!("pro")) {
                continue;
            }
            let counts = entities::event_counts(tables.as_ref(), "acme", &summary.entity, from, to)
                .await
                .unwrap();
            let count = counts.get("login").copied().unwrap_or(0);
            if count >= min && max.is_none_or(|max| count <= max) {
                expected.push((summary.entity.clone(), count));
            }
        }
        assert!(
            !expected.is_empty(),
            "filter ({min}, {max:?}, {pro}) matches nobody"
        );
        for (limit, max_scan) in [(1, 10_000), (3, 10_000), (50, 10_000), (3, 7)] {
            let mut request = ListQuery {
                event_count: Some(EventCountFilter {
                    name: "login".into(),
                    from,
                    to,
                    min,
                    max,
                }),
                traits: if pro {
                    vec![("plan".into(), serde_json::json!("pro"))]
                } else {
                    Vec::new()
                },
                limit,
                max_scan,
                ..ListQuery::default()
            };
            let mut listed = Vec::new();
            for _ in 0..100 {
                let page = entities::list(tables.as_ref(), "acme", &request)
                    .await
                    .unwrap();
                assert!(page.entities.len() <= limit);
                listed.extend(
                    page.entities
                        .iter()
                        .map(|e| (e.entity.clone(), e.event_count.unwrap())),
                );
                match page.next {
                    Some(next) => request.cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(
                listed, expected,
                "filter ({min}, {max:?}, {pro}), limit {limit}, max_scan {max_scan}"
            );
        }
    }
}

/// The one-read lookup of an entity and its window's counts answers what the two reads it
/// replaces answer, whatever the window, with day items before, inside and after it.
#[tokio::test]
async fn one_read_of_an_entity_and_its_counts_matches_two() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    let mut events = Vec::new();
    for day in [0, 1, 1, 5, 40, 400] {
        events.push(track("u1", "login", T + day * DAY + 1000, "{}"));
    }
    events.push(track("u1", "buy", T + 5 * DAY, r#"{"amount":3}"#));
    events.push(common::event(
        EventKind::Identify,
        "u1",
        "",
        T + 2 * DAY,
        r#"{"plan":"pro"}"#,
        None,
    ));
    log.append(events).await.unwrap();
    let tables = Arc::new(TestTables::new(usize::MAX));
    catch_up_default(&log, tables.clone()).await;
    // Pages of two items: the window's days, the days after it and the profile span pages.
    tables.page_cap.store(2, Ordering::SeqCst);

    let windows = [
        (T, T),
        (T, T + DAY),
        (T + DAY, T + 5 * DAY),
        (T - 10 * DAY, T + 39 * DAY),
        (T + 6 * DAY, T + 39 * DAY),
        (T, T + 1000 * DAY),
        (T + 401 * DAY, T + 500 * DAY),
    ];
    let profile = entities::get(tables.as_ref(), "acme", "u1")
        .await
        .unwrap()
        .unwrap();
    for (from, to) in windows {
        let (view, counts) = entities::get_with_counts(tables.as_ref(), "acme", "u1", from, to)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view, profile);
        let expected = entities::event_counts(tables.as_ref(), "acme", "u1", from, to)
            .await
            .unwrap();
        assert_eq!(counts, expected, "window {from}..={to}");
    }
    let (_, window) = entities::get_with_counts(tables.as_ref(), "acme", "u1", T, T + 5 * DAY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(window.get("login"), Some(&4));
    assert_eq!(window.get("buy"), Some(&1));
    assert_eq!(window.get("$identify"), Some(&1));
    assert!(
        entities::get_with_counts(tables.as_ref(), "acme", "nobody", T, T + DAY)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        entities::get_with_counts(tables.as_ref(), "acme", "u1", T + DAY, T)
            .await
            .is_err()
    );
}

/// A profile stored as JSON text (before profiles were stored as bytes) is read, folded onto
/// and rewritten as bytes by the next event, with nothing lost.
#[tokio::test]
async fn a_profile_stored_as_json_text_is_carried_forward() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    let tables = Arc::new(MemoryTables::new());
    let key = Key::new("v1#acme#entity#u1", "profile");
    let legacy = r#"{"first_seen":1704060000000,"last_seen":1704060000000,"traits":{"plan":"trial"},
        "totals":{"login.seconds":2.5},"counts":{"login":5,"$identify":1},"events":6}"#;
    let mut item = Item::new();
    item.insert("state".into(), Value::S(legacy.into()));
    tables
        .write(
            TableName::Views,
            vec![shoal_storage::WriteOp::Put {
                key: key.clone(),
                item,
            }],
        )
        .await
        .unwrap();
    log.append(vec![track("u1", "login", T + 1000, r#"{"seconds":5}"#)])
        .await
        .unwrap();
    catch_up_default(&log, tables.clone()).await;

    let stored = tables.get(TableName::Views, &key).await.unwrap().unwrap();
    assert!(
        matches!(stored.get("state"), Some(Value::B(_))),
        "{stored:?}"
    );
    let u1 = entities::get(tables.as_ref(), "acme", "u1")
        .await
        .unwrap()
        .unwrap()
        .profile;
    assert_eq!(u1.first_seen, Some(1_704_060_000_000));
    assert_eq!(u1.last_seen, Some(T + 1000));
    assert_eq!(u1.events, 7);
    assert_eq!(u1.counts["login"], 6);
    assert_eq!(u1.counts["$identify"], 1);
    assert_eq!(u1.totals["login.seconds"], 7.5);
    assert_eq!(u1.traits["plan"], "trial");
}
