//! The archive's two layouts: on a log that keeps everything (the embedded log) an archive
//! item is the event's key and log position only, and raw-event pages read the events from the
//! log; they must equal the pages of the copies layout, also for an archive holding both kinds.

mod common;

use common::{log_in, metric, track};
use shoal_projector::archive::{self, Archive, Layout};
use shoal_projector::{Projection, ProjectorConfig, catch_up};
use shoal_schemas::Event;
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Item, Key, Scan, Table, TableName, WriteOp};
use std::sync::Arc;

const T: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

fn workload() -> Vec<Event> {
    let mut events = Vec::new();
    for n in 0..300i64 {
        let entity = format!("u{}", n % 7);
        events.push(track(
            &entity,
            "login",
            T + n * 1000,
            &format!(r#"{{"n":{n}}}"#),
        ));
        if n % 3 == 0 {
            events.push(metric("cpu{host=a}", T + n * 1000, n as f64));
        }
    }
    events
}

async fn archived(log: &Arc<dyn EventLog>, layout: Layout) -> Arc<dyn Table> {
    let tables: Arc<dyn Table> = Arc::new(MemoryTables::new());
    let projections: [Arc<dyn Projection>; 1] = [Arc::new(Archive::new(layout))];
    catch_up(
        log.clone(),
        tables.clone(),
        &projections,
        &ProjectorConfig::default(),
    )
    .await
    .unwrap();
    tables
}

async fn items(tables: &dyn Table) -> Vec<(Key, Item)> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = tables
            .scan(
                TableName::Events,
                &Scan::segment(0, 1).limit(100).after(cursor),
            )
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
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = archive::events(tables, log, "acme", entity, T, T + 10_000_000, cursor, 4)
            .await
            .unwrap();
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
    assert_eq!(index.len(), 400, "one item per event");
    assert!(index.iter().all(|(_, item)| !item.contains_key("event")));
    let copied = items(copies.as_ref()).await;
    assert_eq!(copied.len(), 400);
    assert!(copied.iter().all(|(_, item)| item.contains_key("event")));

    for entity in ["u0", "u3", "u6", "cpu{host=a}"] {
        let expected = pages(copies.as_ref(), None, entity).await;
        assert!(expected.len() >= 42, "{entity}: {} events", expected.len());
        let found = pages(positions.as_ref(), Some(log.as_ref()), entity).await;
        assert_eq!(found, expected, "{entity}");
    }

    // Without the log, an index cannot be read: a clear error, not an empty page.
    let error = archive::events(
        positions.as_ref(),
        None,
        "acme",
        "u0",
        T,
        T + 10_000_000,
        None,
        4,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("log positions"), "{error}");

    // An archive written before the positions layout (copies) and continued after it.
    let mixed = archived(&log, Layout::Positions).await;
    let before = format!("{:020}", T + 150_000);
    let older: Vec<_> = copied
        .into_iter()
        .filter(|(key, _)| key.pk.ends_with("#u3") && key.sk < before)
        .map(|(key, item)| WriteOp::Put { key, item })
        .collect();
    assert!(older.len() > 5, "{} copies put back", older.len());
    mixed.write(TableName::Events, older).await.unwrap();
    assert_eq!(
        pages(mixed.as_ref(), Some(log.as_ref()), "u3").await,
        pages(copies.as_ref(), None, "u3").await
    );
}
