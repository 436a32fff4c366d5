//! When a worker folds several reads into one flush (`Worker::fold_ahead`): always while it
//! builds its read model for the first time, and afterwards only when it is far behind its head
//! in event time.

mod common;

use common::{TestTables, log_in, metric};
use shoal_projector::{ProjectorConfig, catch_up, series};
use shoal_schemas::Event;
use shoal_storage::EventLog;
use std::sync::Arc;
use std::sync::atomic::Ordering;

const T: i64 = 1_704_067_200_000;

/// `records` log records of 10 points each of one series, a millisecond apart from `from`:
/// all well within `fold_ahead_lag` of each other.
async fn append_points(log: &Arc<dyn EventLog>, from: i64, records: i64) {
    for record in 0..records {
        let points: Vec<Event> = (0..10)
            .map(|n| {
                let at = from + record * 10 + n;
                metric("cpu{host=a}", at, (at - T) as f64)
            })
            .collect();
        log.append(points).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_build_folds_ahead_however_recent_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 1));
    let projections: Vec<Arc<dyn shoal_projector::Projection>> = vec![Arc::new(series::Series)];
    let config = ProjectorConfig {
        batch_events: 10,
        ..ProjectorConfig::default()
    };
    assert!(
        config.fold_ahead_lag.as_millis() > 1_000,
        "the events are recent"
    );
    let tables = Arc::new(TestTables::new(usize::MAX));

    append_points(&log, T, 20).await;
    let applied = catch_up(log.clone(), tables.clone(), &projections, &config)
        .await
        .unwrap();
    assert_eq!(applied, 200);
    // 20 reads of one record each; built, they share one flush, and the empty read that finds
    // the head marks the checkpoint.
    let building = tables.transacts.load(Ordering::SeqCst);
    assert_eq!(building, 2, "one folded flush and the head's mark");

    // Past the head once, a worker near it flushes what each read brought.
    append_points(&log, T + 200, 10).await;
    let applied = catch_up(log.clone(), tables.clone(), &projections, &config)
        .await
        .unwrap();
    assert_eq!(applied, 100);
    let live = tables.transacts.load(Ordering::SeqCst) - building;
    assert_eq!(live, 10, "one flush per read");
}
