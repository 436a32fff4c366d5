//! Seeding from the archive on a log that forgets: a new index takes the archived history,
//! then follows the log from where the archive ends, without gaps or duplicates; so does a
//! tenant's rebuild.

use super::{event, query};
use crate::index::ShardProgress;
use crate::{
    DocType, History, Result, SearchConfig, SearchFields, SearchIndex, SearchWorker, TenantFields,
};
use shoal_schemas::{Event, EventKind, Position, ShardId};
use shoal_storage::embedded::{EmbeddedLog, LogConfig};
use shoal_storage::{AppendOutcome, EventLog, ReadBatch, ShardInfo};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A log whose history up to `trimmed` is gone, as Kinesis forgets records after its retention.
struct Trimmed {
    log: Arc<EmbeddedLog>,
    trimmed: BTreeMap<ShardId, Position>,
}

#[async_trait::async_trait]
impl EventLog for Trimmed {
    async fn append(&self, events: Vec<Event>) -> shoal_storage::Result<Vec<AppendOutcome>> {
        self.log.append(events).await
    }

    async fn shards(&self) -> shoal_storage::Result<Vec<ShardInfo>> {
        self.log.shards().await
    }

    async fn read(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        max_events: usize,
    ) -> shoal_storage::Result<ReadBatch> {
        let horizon = self.trimmed.get(shard);
        let after = if after < horizon { horizon } else { after };
        self.log.read(shard, after, max_events).await
    }

    async fn wait_for(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        timeout: Duration,
    ) -> shoal_storage::Result<bool> {
        self.log.wait_for(shard, after, timeout).await
    }
}

/// The archive: every event of the log up to `covered`, with shard and position.
struct Archive {
    events: Vec<(ShardId, Position, Event)>,
    covered: BTreeMap<ShardId, ShardProgress>,
}

#[async_trait::async_trait]
impl History for Archive {
    async fn covered(&self) -> Result<BTreeMap<ShardId, ShardProgress>> {
        Ok(self.covered.clone())
    }

    async fn segment(
        &self,
        segment: u32,
        total: u32,
        upto: &BTreeMap<ShardId, Position>,
    ) -> Result<Vec<(ShardId, Position, Event)>> {
        // Whole entities per segment, as the archive's scan gives them.
        Ok(self
            .events
            .iter()
            .filter(|(shard, position, event)| {
                let bucket = event.entity.bytes().map(u32::from).sum::<u32>() % total;
                bucket == segment && upto.get(shard).is_some_and(|upto| position <= upto)
            })
            .cloned()
            .collect())
    }
}

fn words(n: usize, word: &str) -> Vec<Event> {
    (0..n)
        .map(|i| {
            event(
                "t1",
                EventKind::Track,
                "opened",
                &format!("c{}", i % 7),
                i as i64,
                &format!(r#"{{"word":"{word}","secret":"hidden{i}"}}"#),
            )
        })
        .collect()
}

/// Every event in the log, with shard and position.
async fn everything(log: &EmbeddedLog) -> Vec<(ShardId, Position, Event)> {
    let mut found = Vec::new();
    for shard in log.shards().await.unwrap() {
        let batch = log.read(&shard.id, None, 100_000).await.unwrap();
        for record in &batch.records {
            for (position, event) in record.positioned() {
                found.push((shard.id.clone(), position, event.clone()));
            }
        }
    }
    found
}

async fn total(index: &SearchIndex, text: &str) -> u64 {
    let mut request = query(text);
    request.doc_type = Some(DocType::Event);
    index.search("t1", &request).unwrap().total
}

async fn wait(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_index_takes_the_archive_then_follows_the_log_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(LogConfig::new(dir.path().join("log"))).unwrap());
    log.append(words(60, "ancient")).await.unwrap();
    let archived = everything(&log).await;
    let covered: BTreeMap<ShardId, ShardProgress> = archived
        .iter()
        .map(|(shard, position, event)| {
            (
                shard.clone(),
                ShardProgress {
                    position: position.clone(),
                    last_received_at: event.received_at,
                },
            )
        })
        .collect();
    let trimmed: Arc<dyn EventLog> = Arc::new(Trimmed {
        log: Arc::clone(&log),
        trimmed: covered
            .iter()
            .map(|(shard, progress)| (shard.clone(), progress.position.clone()))
            .collect(),
    });
    log.append(words(10, "recent")).await.unwrap();
    let config = SearchConfig {
        writer_memory_mib: 20,
        ..SearchConfig::default()
    };

    // Without the archive, the history the log forgot is missing.
    let bare = Arc::new(SearchIndex::open(&dir.path().join("bare")).unwrap());
    let worker = SearchWorker::spawn(Arc::clone(&bare), trimmed.clone(), config.clone()).unwrap();
    wait("recent events indexed", async || {
        total(&bare, "recent").await == 10
    })
    .await;
    assert_eq!(total(&bare, "ancient").await, 0);
    worker.shutdown().await.unwrap();

    let archive = Arc::new(Archive {
        events: archived,
        covered,
    });
    let index = Arc::new(SearchIndex::open(&dir.path().join("seeded")).unwrap());
    let worker = SearchWorker::spawn_with_history(
        Arc::clone(&index),
        trimmed.clone(),
        config.clone(),
        Some(archive.clone()),
    )
    .unwrap();
    wait("archive and log indexed", async || {
        total(&index, "recent").await == 10 && total(&index, "ancient").await == 60
    })
    .await;
    assert!(index.status().seeding.is_none());
    // 70 events and 7 entities, each once.
    assert_eq!(index.status().docs, 77);
    let mut entity = query("c3");
    entity.doc_type = Some(DocType::Entity);
    assert_eq!(index.search("t1", &entity).unwrap().total, 1);

    // A tenant's rebuild takes the archive too, not only what the log still holds.
    index.set_search_fields(
        "t1",
        TenantFields {
            properties: SearchFields::Only(["word".to_owned()].into()),
            traits: SearchFields::All,
        },
    );
    wait("the rebuild swapped in", async || {
        index.partition_status("t1").generation == 1
    })
    .await;
    assert_eq!(total(&index, "ancient").await, 60);
    assert_eq!(total(&index, "recent").await, 10);
    assert_eq!(
        total(&index, "hidden3").await,
        0,
        "secret is no longer searchable"
    );
    worker.shutdown().await.unwrap();

    // A restart does not seed again.
    let worker =
        SearchWorker::spawn_with_history(Arc::clone(&index), trimmed, config, Some(archive))
            .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown().await.unwrap();
    assert_eq!(total(&index, "ancient").await, 60);
    log.shutdown().await;
}

#[test]
fn a_seed_cut_short_resumes_at_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let shard: ShardId = "0".to_owned();
    let events: Vec<(ShardId, Position, Event)> = words(4, "ancient")
        .into_iter()
        .enumerate()
        .map(|(n, event)| {
            let position = super::record(n as u64, vec![]).sequence;
            (shard.clone(), Position::new(position, 0), event)
        })
        .collect();
    let upto: BTreeMap<ShardId, ShardProgress> = [(
        shard.clone(),
        ShardProgress {
            position: events[3].1.clone(),
            last_received_at: 5,
        },
    )]
    .into();
    {
        let (_index, mut indexer) = super::open(dir.path());
        assert!(indexer.is_fresh());
        indexer.begin_seed(upto.clone(), 2);
        indexer.apply_seed_segment(&events[..2]).unwrap();
        indexer.commit().unwrap();
        // Indexed, never committed: lost as in a crash.
        indexer.apply_seed_segment(&events[2..]).unwrap();
    }
    let (index, mut indexer) = super::open(dir.path());
    assert!(!indexer.is_fresh());
    assert_eq!(indexer.seeding().map(|seed| seed.done), Some(1));
    assert_eq!(indexer.position(&shard), None, "the log waits for the seed");
    indexer.apply_seed_segment(&events[2..]).unwrap();
    indexer.commit().unwrap();
    assert!(indexer.seeding().is_none());
    assert_eq!(indexer.position(&shard), Some(&events[3].1));
    // 4 events and their 4 entities, once each.
    assert_eq!(index.status().docs, 8);
}
