//! Seeding from the archive: a projection that starts from nothing on a log that has forgotten
//! its beginning (Kinesis retention) replays the archive up to the archive's checkpoint, then
//! the log; its read models equal a clean replay of the whole log — also when the seed is cut
//! short by a failed write and started again.

mod common;

use async_trait::async_trait;
use common::{Fault, TestTables, dump, log_in, metric, track};
use shoal_projector::archive::Layout;
use shoal_projector::{ProjectorConfig, catch_up, checkpoint, default_projections_with};
use shoal_schemas::{Event, EventKind, Position, ShardId};
use shoal_storage::{AppendOutcome, EventLog, Key, ReadBatch, ShardInfo, Table, TableName};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

const T: i64 = 1_704_067_200_000;

/// A log that has forgotten everything up to `cutoff` on each shard: reads start after it.
struct Forgetful {
    inner: Arc<dyn EventLog>,
    cutoff: HashMap<ShardId, Position>,
}

impl Forgetful {
    fn clamp<'a>(&'a self, shard: &ShardId, after: Option<&'a Position>) -> Option<&'a Position> {
        match (self.cutoff.get(shard), after) {
            (Some(cutoff), Some(after)) if after < cutoff => Some(cutoff),
            (Some(cutoff), None) => Some(cutoff),
            (_, after) => after,
        }
    }
}

#[async_trait]
impl EventLog for Forgetful {
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
        self.inner
            .read(shard, self.clamp(shard, after), max_events)
            .await
    }
    async fn wait_for(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        timeout: Duration,
    ) -> shoal_storage::Result<bool> {
        self.inner
            .wait_for(shard, self.clamp(shard, after), timeout)
            .await
    }
}

fn workload(from: usize, to: usize) -> Vec<Event> {
    (from..to)
        .map(|n| {
            let entity = format!("user-{}", n % 53);
            match n % 5 {
                0 => common::event(
                    EventKind::Identify,
                    &entity,
                    "",
                    T + n as i64 * 1000,
                    &format!(r#"{{"plan":"p{}"}}"#, n % 3),
                    None,
                ),
                1 => metric(
                    &format!("cpu{{h={}}}", n % 7),
                    T + n as i64 * 1000,
                    n as f64,
                ),
                _ => track(&entity, "login", T + n as i64 * 1000, r#"{"seats":2}"#),
            }
        })
        .collect()
}

/// The read-side projections (everything but the archive).
fn readers() -> Vec<Arc<dyn shoal_projector::Projection>> {
    default_projections_with(Layout::Copies)
        .into_iter()
        .filter(|p| p.name() != "archive")
        .collect()
}

async fn setup(dir: &std::path::Path) -> (Arc<dyn EventLog>, Arc<Forgetful>, Arc<TestTables>) {
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir, 4));
    let tables = Arc::new(TestTables::new(100));
    log.append(workload(0, 3000)).await.unwrap();
    // The archive reads everything so far; then the log "forgets" exactly that.
    let archive: Vec<Arc<dyn shoal_projector::Projection>> =
        default_projections_with(Layout::Copies)
            .into_iter()
            .filter(|p| p.name() == "archive")
            .collect();
    let dynamic: Arc<dyn Table> = tables.clone();
    catch_up(log.clone(), dynamic, &archive, &ProjectorConfig::default())
        .await
        .unwrap();
    let mut cutoff = HashMap::new();
    for stored in checkpoint::list(tables.as_ref(), "archive", 1)
        .await
        .unwrap()
    {
        cutoff.insert(stored.shard.clone(), stored.position.clone().unwrap());
    }
    assert_eq!(cutoff.len(), 4);
    log.append(workload(3000, 4000)).await.unwrap();
    let forgetful = Arc::new(Forgetful {
        inner: log.clone(),
        cutoff,
    });
    (log, forgetful, tables)
}

/// A clean replay of the whole log, and the read-model keys it wrote (the archive's are left
/// out: it is an input here, not under test).
async fn reference(log: &Arc<dyn EventLog>) -> (Arc<TestTables>, BTreeSet<(TableName, Key)>) {
    let tables = Arc::new(TestTables::new(100));
    let dynamic: Arc<dyn Table> = tables.clone();
    catch_up(
        log.clone(),
        dynamic,
        &readers(),
        &ProjectorConfig::default(),
    )
    .await
    .unwrap();
    let keys = tables
        .keys()
        .into_iter()
        .filter(|(table, _)| *table != TableName::Events)
        .collect();
    (tables, keys)
}

fn seeding() -> ProjectorConfig {
    ProjectorConfig {
        seed_from_archive: true,
        seed_segments: 3,
        batch_events: 400,
        ..ProjectorConfig::default()
    }
}

#[tokio::test]
async fn a_new_projection_on_a_forgetful_log_seeds_from_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (log, forgetful, tables) = setup(dir.path()).await;
    let (expected, keys) = reference(&log).await;

    // Without seeding, the forgotten history is simply missing: the test can tell.
    let unseeded = Arc::new(TestTables::new(100));
    let dynamic: Arc<dyn Table> = unseeded.clone();
    let as_log: Arc<dyn EventLog> = forgetful.clone();
    catch_up(
        as_log.clone(),
        dynamic.clone(),
        &readers(),
        &ProjectorConfig::default(),
    )
    .await
    .unwrap();
    assert_ne!(
        dump(expected.as_ref(), &keys).await,
        dump(unseeded.as_ref(), &keys).await
    );

    let dynamic: Arc<dyn Table> = tables.clone();
    let applied = catch_up(as_log, dynamic, &readers(), &seeding())
        .await
        .unwrap();
    assert_eq!(applied, 2 * 4000, "every event once per projection");
    assert_eq!(
        dump(expected.as_ref(), &keys).await,
        dump(tables.as_ref(), &keys).await
    );
}

#[tokio::test]
async fn a_seed_cut_short_starts_over_without_double_counting() {
    let dir = tempfile::tempdir().unwrap();
    let (log, forgetful, tables) = setup(dir.path()).await;
    let (expected, keys) = reference(&log).await;
    let as_log: Arc<dyn EventLog> = forgetful.clone();
    let dynamic: Arc<dyn Table> = tables.clone();
    for (after, fault) in [(9, Fault::After), (4, Fault::Before), (1, Fault::After)] {
        tables.arm(after, fault);
        let outcome = catch_up(as_log.clone(), dynamic.clone(), &readers(), &seeding()).await;
        assert!(
            outcome.is_err(),
            "the armed fault ({after}, {fault:?}) fails the run; calls so far {}",
            tables.calls.load(std::sync::atomic::Ordering::SeqCst)
        );
        tables.arm(0, Fault::Before);
        tables.fail_at.store(0, std::sync::atomic::Ordering::SeqCst);
    }
    catch_up(as_log, dynamic, &readers(), &seeding())
        .await
        .unwrap();
    assert_eq!(
        dump(expected.as_ref(), &keys).await,
        dump(tables.as_ref(), &keys).await
    );
}
