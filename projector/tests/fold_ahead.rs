//! When a worker folds several reads into one flush (`Worker::fold_ahead`): while it builds
//! its read model for the first time and its reads come back full, and otherwise only when it
//! is far behind its head in the time its events were received.

mod common;

use async_trait::async_trait;
use common::{TestTables, log_in, metric};
use shoal_projector::{ProjectorConfig, catch_up, series};
use shoal_schemas::{Event, Position, ShardId};
use shoal_storage::{AppendOutcome, EventLog, ReadBatch, ShardInfo};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

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
    // 20 reads of one record each share one flush, whose checkpoint also records that the
    // head was found (the empty read that ended the folding), so no separate mark follows.
    let building = tables.transacts.load(Ordering::SeqCst);
    assert_eq!(building, 1, "one folded flush");

    // Past the head once, a worker near it flushes what each read brought.
    append_points(&log, T + 200, 10).await;
    let applied = catch_up(log.clone(), tables.clone(), &projections, &config)
        .await
        .unwrap();
    assert_eq!(applied, 100);
    let live = tables.transacts.load(Ordering::SeqCst) - building;
    assert_eq!(live, 10, "one flush per read");
}

/// A log whose writer never pauses: each of its first reads is preceded by one more appended
/// point, so a reader finds it empty only once those reads are spent.
struct Trickle {
    inner: Arc<dyn EventLog>,
    reads_left: AtomicI64,
    next_at: AtomicI64,
}

#[async_trait]
impl EventLog for Trickle {
    async fn append(&self, events: Vec<Event>) -> shoal_storage::Result<Vec<AppendOutcome>> {
        self.inner.append(events).await
    }

    async fn shards(&self) -> shoal_storage::Result<Vec<ShardInfo>> {
        self.inner.shards().await
    }

    async fn read(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        max_events: usize,
    ) -> shoal_storage::Result<ReadBatch> {
        if self.reads_left.fetch_sub(1, Ordering::SeqCst) > 0 {
            let at = self.next_at.fetch_add(1, Ordering::SeqCst);
            self.inner
                .append(vec![metric("cpu{host=a}", at, 1.0)])
                .await?;
        }
        self.inner.read(shard, after, max_events).await
    }

    async fn wait_for(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        timeout: Duration,
    ) -> shoal_storage::Result<bool> {
        self.inner.wait_for(shard, after, timeout).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_building_worker_near_its_head_flushes_what_each_read_brought() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(Trickle {
        inner: Arc::new(log_in(dir.path(), 1)),
        reads_left: AtomicI64::new(30),
        next_at: AtomicI64::new(T),
    });
    let projections: Vec<Arc<dyn shoal_projector::Projection>> = vec![Arc::new(series::Series)];
    let config = ProjectorConfig {
        batch_events: 10,
        ..ProjectorConfig::default()
    };
    let tables = Arc::new(TestTables::new(usize::MAX));
    let applied = catch_up(log.clone(), tables.clone(), &projections, &config)
        .await
        .unwrap();
    assert_eq!(applied, 30);
    // Every read found one new point and no read came back empty until the writer stopped:
    // folding ahead while "building" would have held all 30 in one flush. The first short read
    // was at the head, and its flush's checkpoint says so: no separate mark at the end.
    assert_eq!(
        tables.transacts.load(Ordering::SeqCst),
        30,
        "a flush per read"
    );
    let shard = log.shards().await.unwrap().remove(0).id;
    let stored = shoal_projector::checkpoint::load(
        tables.as_ref(),
        series::NAME,
        projections[0].version(),
        &shard,
    )
    .await
    .unwrap();
    assert!(stored.reached_head);
    assert_eq!(stored.events_applied, 30);
}
