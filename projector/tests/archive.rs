//! The archive's two layouts: on a log that keeps everything (the embedded log) the archive is
//! posting lists of log positions, and raw-event pages read the events from the log; they must
//! equal the pages of the copies layout, also for an archive holding items of earlier layouts,
//! lists written twice by replays with other batch bounds, and lists split when full.

mod common;

use common::{log_in, metric, track};
use shoal_projector::archive::{self, Archive, Layout};
use shoal_projector::{Projection, ProjectorConfig, catch_up};
use shoal_schemas::Event;
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Item, Key, Scan, Table, TableName, WriteOp};
use std::sync::Arc;

const T: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
/// Past the workload's last event.
const END: i64 = T + 40_000_000;

/// Track events over about eight hours, out of time order (so an hour's lists hold events
/// of several times, and late events land in hours already listed), and points in order.
fn workload() -> Vec<Event> {
    let mut events = Vec::new();
    for n in 0..300i64 {
        let entity = format!("u{}", n % 7);
        events.push(track(
            &entity,
            "login",
            T + (n * 7919 % 300) * 97_000,
            &format!(r#"{{"n":{n}}}"#),
        ));
        if n % 3 == 0 {
            events.push(metric("cpu{host=a}", T + n * 60_000, n as f64));
        }
    }
    events
}

async fn archived(log: &Arc<dyn EventLog>, layout: Layout) -> Arc<dyn Table> {
    let tables: Arc<dyn Table> = Arc::new(MemoryTables::new());
    archive_into(log, &tables, layout, ProjectorConfig::default()).await;
    tables
}

async fn archive_into(
    log: &Arc<dyn EventLog>,
    tables: &Arc<dyn Table>,
    layout: Layout,
    config: ProjectorConfig,
) {
    let projections: [Arc<dyn Projection>; 1] = [Arc::new(Archive::new(layout))];
    catch_up(log.clone(), tables.clone(), &projections, &config)
        .await
        .unwrap();
}

/// Forgets the archive's checkpoints, so the next catch-up replays the whole log into the
/// same tables.
async fn forget_checkpoints(tables: &dyn Table) {
    let deletes: Vec<_> = scan_all(tables, TableName::Control)
        .await
        .into_iter()
        .filter(|(key, _)| key.pk.contains("checkpoint"))
        .map(|(key, _)| WriteOp::Delete { key })
        .collect();
    assert!(!deletes.is_empty(), "no checkpoints to forget");
    tables.write(TableName::Control, deletes).await.unwrap();
}

async fn items(tables: &dyn Table) -> Vec<(Key, Item)> {
    scan_all(tables, TableName::Events).await
}

async fn scan_all(tables: &dyn Table, table: TableName) -> Vec<(Key, Item)> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = tables
            .scan(table, &Scan::segment(0, 1).limit(100).after(cursor))
            .await
            .unwrap();
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

/// Every event of `entity`, newest first, in pages of 4 (so pages cross records and cursors).
async fn pages(
    tables: &dyn Table,
    log: Option<&dyn EventLog>,
    entity: &str,
) -> Vec<serde_json::Value> {
    pages_of(tables, log, entity, T, END, 4).await
}

async fn pages_of(
    tables: &dyn Table,
    log: Option<&dyn EventLog>,
    entity: &str,
    from: i64,
    to: i64,
    limit: usize,
) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = archive::events(tables, log, "acme", entity, from, to, cursor, limit)
            .await
            .unwrap();
        assert!(page.events.len() <= limit);
        all.extend(page.events);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_read_through_the_log_equal_copies() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    // Small appends, so an entity's events lie in many log records.
    for chunk in workload().chunks(25) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    assert_eq!(Archive::for_log(log.as_ref()).layout(), Layout::Positions);
    let positions = archived(&log, Layout::Positions).await;
    let copies = archived(&log, Layout::Copies).await;

    let index = items(positions.as_ref()).await;
    assert!(
        index.len() < 100,
        "lists per entity and hour: {}",
        index.len()
    );
    assert!(
        index
            .iter()
            .all(|(key, item)| !item.contains_key("event") && key.sk.starts_with("p#"))
    );
    let copied = items(copies.as_ref()).await;
    assert_eq!(copied.len(), 400);
    assert!(copied.iter().all(|(_, item)| item.contains_key("event")));

    for entity in ["u0", "u3", "u6", "cpu{host=a}"] {
        let expected = pages(copies.as_ref(), None, entity).await;
        assert!(expected.len() >= 42, "{entity}: {} events", expected.len());
        let found = pages(positions.as_ref(), Some(log.as_ref()), entity).await;
        assert_eq!(found, expected, "{entity}");
        // Other page sizes and a range inside the history (bounds inclusive).
        for (from, to, limit) in [(T, END, 1), (T + 5_000_000, T + 15_000_000, 7)] {
            assert_eq!(
                pages_of(
                    positions.as_ref(),
                    Some(log.as_ref()),
                    entity,
                    from,
                    to,
                    limit
                )
                .await,
                pages_of(copies.as_ref(), None, entity, from, to, limit).await,
                "{entity} {from}..={to} by {limit}"
            );
        }
    }

    // A cursor this API did not make is refused, not read as a position.
    let error = archive::events(
        positions.as_ref(),
        Some(log.as_ref()),
        "acme",
        "u0",
        T,
        END,
        Some("c1.x.y".into()),
        4,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            shoal_projector::Error::Storage(shoal_storage::Error::InvalidCursor)
        ),
        "{error}"
    );

    // Without the log, an index cannot be read: a clear error, not an empty page.
    let error = archive::events(positions.as_ref(), None, "acme", "u0", T, END, None, 4)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("log positions"), "{error}");

    // An archive written with copies, then one index item per event (session 9's layout),
    // continued with posting lists, which hold some of the same events again.
    let mixed = archived(&log, Layout::Positions).await;
    let copies_until = format!("{:020}", T + 8_000_000);
    let items_until = format!("{:020}", T + 16_000_000);
    let older: Vec<_> = copied
        .into_iter()
        .filter(|(key, _)| key.pk.ends_with("#u3") && key.sk < items_until)
        .map(|(key, mut item)| {
            if key.sk >= copies_until {
                item.remove("event");
            }
            WriteOp::Put { key, item }
        })
        .collect();
    assert!(older.len() > 10, "{} earlier items put back", older.len());
    mixed.write(TableName::Events, older).await.unwrap();
    for limit in [1, 4, 9] {
        assert_eq!(
            pages_of(mixed.as_ref(), Some(log.as_ref()), "u3", T, END, limit).await,
            pages_of(copies.as_ref(), None, "u3", T, END, limit).await,
            "by {limit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_other_batches_does_not_repeat_events() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    for chunk in workload().chunks(25) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    let copies = archived(&log, Layout::Copies).await;
    let tables = archived(&log, Layout::Positions).await;
    let once = items(tables.as_ref()).await.len();
    // The same log again, a log record per flush: other lists, over the same events.
    forget_checkpoints(tables.as_ref()).await;
    let small = ProjectorConfig {
        batch_events: 7,
        fold_ahead_events: 7,
        ..ProjectorConfig::default()
    };
    archive_into(&log, &tables, Layout::Positions, small).await;
    assert!(
        items(tables.as_ref()).await.len() > once,
        "lists written twice"
    );
    for entity in ["u1", "u5", "cpu{host=a}"] {
        assert_eq!(
            pages(tables.as_ref(), Some(log.as_ref()), entity).await,
            pages(copies.as_ref(), None, entity).await,
            "{entity}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_busy_hour_spans_several_lists() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 1));
    // 12,000 events of one entity inside one hour (each list entry is ~30 bytes: over 128 KB),
    // in time order reversed within each append, plus a neighbour in the next hour.
    let busy: Vec<Event> = (0..12_000i64)
        .map(|n| {
            track(
                "busy",
                "click",
                T + 3_000_000 - (n % 1000) * 3 - n / 1000,
                "{}",
            )
        })
        .collect();
    for chunk in busy.chunks(1000) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    log.append(vec![track("busy", "click", T + 3_600_000, "{}")])
        .await
        .unwrap();
    let copies = archived(&log, Layout::Copies).await;
    let positions = archived(&log, Layout::Positions).await;
    let lists = items(positions.as_ref()).await;
    assert!(lists.len() >= 3, "{} lists", lists.len());
    // The busy hour's events are in T + 2,996,992 ..= T + 3,000,000.
    for (lo, hi, limit) in [
        (T, T + 10_000_000, 1000),
        (T + 2_997_000, T + 2_998_500, 50),
    ] {
        let found = pages_of(
            positions.as_ref(),
            Some(log.as_ref()),
            "busy",
            lo,
            hi,
            limit,
        )
        .await;
        let expected = pages_of(copies.as_ref(), None, "busy", lo, hi, limit).await;
        assert!(expected.len() > limit, "{} events", expected.len());
        assert_eq!(found, expected, "{lo}..={hi} by {limit}");
    }
}

/// With copies (the Kinesis log), an event too large for an item (`max_event_bytes` raised
/// near DynamoDB's 400 KB) is a dead letter, not a flush that fails for ever; the shard goes on.
#[tokio::test]
async fn an_event_too_large_to_copy_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 1));
    let huge = format!(r#"{{"blob":"{}"}}"#, "z".repeat(450 * 1024));
    log.append(vec![
        track("u1", "upload", T, &huge),
        track("u1", "login", T + 1, "{}"),
    ])
    .await
    .unwrap();
    let tables = archived(&log, Layout::Copies).await;
    let letters = shoal_projector::deadletter::list(tables.as_ref(), archive::NAME, 1, None, 10)
        .await
        .unwrap()
        .dead_letters;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].error.contains("archived copy"),
        "{}",
        letters[0].error
    );
    let page = pages_of(tables.as_ref(), None, "u1", T, END, 10).await;
    assert_eq!(page.len(), 1, "the later event is archived");
}
