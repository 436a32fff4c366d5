//! The embedded event log: the shared conformance suite (default settings, and one shard with
//! tiny segments), then what only a local log has: reopening, torn-tail recovery, segment
//! rolling, dedup across restarts, the fixed shard count, argument checks, and a property test
//! of append/read equivalence. A rough throughput measurement is `#[ignore]`d
//! (`cargo test --release -p shoal-storage --test embedded_log -- --ignored --nocapture`).
//! Torn-tail recovery is in `recovery.rs`, dedup across restarts in `dedup.rs`.

use proptest::prelude::*;
use shoal_schemas::{Event, Position, Sequence, ShardId};
use shoal_storage::conformance::log::{event, run_tenant, stored_positions as stored};
use shoal_storage::embedded::{EmbeddedLog, LogConfig, SyncMode};
use shoal_storage::{AppendOutcome, Error, EventLog, NewEvent};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

mod dedup;
mod recovery;

fn config_in(dir: &TempDir) -> LogConfig {
    LogConfig::new(dir.path().join("log"))
}

fn open(config: &LogConfig) -> EmbeddedLog {
    EmbeddedLog::open(config.clone()).expect("open the log")
}

/// A fresh log with the defaults, for the conformance suite.
fn embedded() -> (Arc<dyn EventLog>, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = open(&config_in(&dir));
    (Arc::new(log), dir)
}

/// One shard, segments of 2 KiB (so reads cross many segment files), no fsync.
fn embedded_small_segments() -> (Arc<dyn EventLog>, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = config_in(&dir);
    config.shard_count = 1;
    config.segment_bytes = 2048;
    config.sync = SyncMode::Relaxed;
    (Arc::new(open(&config)), dir)
}

mod conformance {
    use super::*;
    shoal_storage::event_log_conformance!(embedded());
}

mod conformance_small_segments {
    use super::*;
    shoal_storage::event_log_conformance!(embedded_small_segments());
}

/// Everything in `shard`, in order.
async fn read_shard(log: &dyn EventLog, shard: &ShardId) -> Vec<(Position, Event)> {
    let mut all = Vec::new();
    let mut after: Option<Position> = None;
    loop {
        let batch = log.read(shard, after.as_ref(), 1000).await.expect("read");
        let Some(last) = batch.last_position() else {
            return all;
        };
        for record in &batch.records {
            all.extend(
                record
                    .positioned()
                    .map(|(position, event)| (position, event.clone())),
            );
        }
        after = Some(last);
    }
}

/// Everything in the log: per shard (in shard order), in order.
async fn read_all(log: &dyn EventLog) -> Vec<(ShardId, Position, Event)> {
    let mut all = Vec::new();
    for shard in log.shards().await.expect("shards") {
        for (position, event) in read_shard(log, &shard.id).await {
            all.push((shard.id.clone(), position, event));
        }
    }
    all
}

fn events(tenant: &str, entities: u64, count: u64) -> Vec<Event> {
    (0..count)
        .map(|n| event(tenant, &format!("entity-{}", n % entities), n))
        .collect()
}

fn files_with(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.to_string_lossy().contains(needle))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn reopening_keeps_everything_and_positions_continue() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(&dir);
    let tenant = run_tenant();
    let log = open(&config);
    for _ in 0..3 {
        log.append(events(&tenant, 10, 40)).await.unwrap();
    }
    let before = read_all(&log).await;
    assert_eq!(before.len(), 120);
    let heads: Vec<_> = (0..4)
        .map(|shard| log.head(&shard.to_string()).unwrap())
        .collect();
    log.shutdown().await;
    assert!(matches!(
        log.append(events(&tenant, 1, 1)).await,
        Err(Error::Closed)
    ));
    assert_eq!(
        read_all(&log).await.len(),
        120,
        "reads go on after shutdown"
    );
    drop(log);

    let log = open(&config);
    assert_eq!(read_all(&log).await, before);
    for head in &heads {
        assert_eq!(
            &log.head(&head.shard).unwrap(),
            head,
            "head survives reopening"
        );
    }
    // One more event per shard: each starts exactly where the shard ended.
    let mut probes = Vec::new();
    for n in 0.. {
        let probe = event(&tenant, &format!("probe-{n}"), n);
        let shard = log.shard_of(&probe.tenant, &probe.entity);
        if !probes.iter().any(|(known, _)| *known == shard) {
            probes.push((shard, probe));
        }
        if probes.len() == 4 {
            break;
        }
    }
    for (shard, probe) in probes {
        let positions = stored(&log.append(vec![probe]).await.unwrap());
        let old_end = heads[shard.parse::<usize>().unwrap()].end_offset;
        assert_eq!(positions[0], Position::new(Sequence::from_u64(old_end), 0));
    }
    // Dropped without shutdown: the writers finish on their own and nothing is lost.
    drop(log);
    let log = open(&config);
    assert_eq!(read_all(&log).await.len(), 124);
}

#[tokio::test]
async fn segments_roll_and_are_read_across() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 2;
    config.segment_bytes = 1024;
    let log = open(&config);
    // A random tenant can hash all six entities to one shard (1 run in 32), which left the
    // other shard with a single segment; draw until each shard holds at least two of them.
    let tenant = loop {
        let tenant = run_tenant();
        let on_zero = (0..6)
            .filter(|n| log.shard_of(&tenant, &format!("entity-{n}")) == "0")
            .count();
        if (2..=4).contains(&on_zero) {
            break tenant;
        }
    };
    let mut appended = Vec::new();
    for _ in 0..30 {
        let batch = events(&tenant, 6, 10);
        appended.extend(batch.clone());
        log.append(batch).await.unwrap();
    }
    let all = read_all(&log).await;
    assert_eq!(all.len(), 300);
    for shard in 0..2u32 {
        let shard_dir = config.dir.join(format!("shard-{shard:03}"));
        let segments = files_with(&shard_dir, ".seg");
        assert!(segments.len() > 3, "shard {shard}: {segments:?}");
        // Closed segments are exactly as long as their frames; the active one may run on
        // into zeros written ahead.
        let mut expected_base = 0;
        let (active, closed) = segments.split_last().unwrap();
        for segment in closed {
            let name = segment.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(name, format!("{expected_base:020}.seg"));
            expected_base += std::fs::metadata(segment).unwrap().len();
        }
        let name = active.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, format!("{expected_base:020}.seg"));
        let end = log.head(&shard.to_string()).unwrap().end_offset;
        assert!(end > expected_base);
        assert!(std::fs::metadata(active).unwrap().len() >= end - expected_base);
        // Per shard, the appended order.
        let want: Vec<_> = appended
            .iter()
            .filter(|event| log.shard_of(&event.tenant, &event.entity) == shard.to_string())
            .map(|event| event.id)
            .collect();
        let got: Vec<_> = all
            .iter()
            .filter(|(id, _, _)| *id == shard.to_string())
            .map(|(_, _, event)| event.id)
            .collect();
        assert_eq!(got, want);
    }
    log.shutdown().await;
    drop(log);
    let log = open(&config);
    assert_eq!(read_all(&log).await, all);
    log.append(events(&tenant, 6, 10)).await.unwrap();
    assert_eq!(read_all(&log).await.len(), 310);
}

#[tokio::test]
async fn a_large_append_is_split_into_several_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    let log = open(&config);
    let tenant = run_tenant();
    // About 6 MiB of events: more than one block's 4 MiB.
    let mut batch = events(&tenant, 1, 600);
    for (n, event) in batch.iter_mut().enumerate() {
        event.properties = format!(r#"{{"blob":"{}"}}"#, format!("{n:08}").repeat(1250));
    }
    let positions = stored(&log.append(batch.clone()).await.unwrap());
    let sequences: std::collections::BTreeSet<_> = positions
        .iter()
        .map(|position| &position.sequence)
        .collect();
    assert!(sequences.len() >= 2, "{} records", sequences.len());
    let got: Vec<Event> = read_all(&log)
        .await
        .into_iter()
        .map(|(_, _, event)| event)
        .collect();
    assert_eq!(got, batch);
}

#[tokio::test]
async fn oversized_events_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&config_in(&dir));
    let tenant = run_tenant();
    let mut batch = events(&tenant, 2, 3);
    batch[1].properties = "x".repeat(5 * 1024 * 1024);
    let result = log.append(batch).await;
    assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
    assert!(
        read_all(&log).await.is_empty(),
        "nothing of the call was stored"
    );
}

#[tokio::test]
async fn shard_count_is_fixed_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(&dir);
    let log = open(&config);
    log.shutdown().await;
    drop(log);
    let mut other = config.clone();
    other.shard_count = 8;
    let error = EmbeddedLog::open(other).unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
    assert!(
        error.to_string().contains("created with 4 shards"),
        "{error}"
    );
    open(&config);
}

#[tokio::test]
async fn one_directory_is_opened_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(&dir);
    let log = open(&config);
    let error = EmbeddedLog::open(config.clone()).unwrap_err();
    assert!(error.to_string().contains("in use"), "{error}");
    log.shutdown().await;
    open(&config);
}

#[tokio::test]
async fn bad_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    let log = open(&config);
    let shard: ShardId = "0".to_owned();
    let positions = stored(&log.append(events(&run_tenant(), 1, 3)).await.unwrap());
    let end = log.head(&shard).unwrap().end_offset;

    let inside = Position::new(Sequence::from_u64(3), 0);
    let beyond = Position::new(Sequence::from_u64(end), 0);
    let huge = Position::new(Sequence::parse(&"9".repeat(30)).unwrap(), 0);
    for after in [&inside, &beyond, &huge] {
        let read = log.read(&shard, Some(after), 10).await;
        assert!(
            matches!(read, Err(Error::InvalidArgument(_))),
            "{after}: {read:?}"
        );
    }
    let wait = log.wait_for(&shard, Some(&beyond), Duration::ZERO).await;
    assert!(matches!(wait, Err(Error::InvalidArgument(_))), "{wait:?}");
    let zero = log.read(&shard, Some(&positions[0]), 0).await;
    assert!(matches!(zero, Err(Error::InvalidArgument(_))));
    for unknown in ["1", "01", "-0", ""] {
        let read = log.read(&unknown.to_owned(), None, 1).await;
        assert!(matches!(read, Err(Error::UnknownShard(_))), "{unknown:?}");
        assert!(log.head(&unknown.to_owned()).is_err());
    }
    let mut config = config_in(&dir);
    config.shard_count = 0;
    assert!(EmbeddedLog::open(config).is_err());
}

#[tokio::test]
async fn head_follows_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    let log = open(&config);
    let shard: ShardId = "0".to_owned();
    let empty = log.head(&shard).unwrap();
    assert_eq!((empty.end_offset, empty.last.clone()), (0, None));
    let batch = events(&run_tenant(), 1, 3);
    let newest = batch.iter().map(|event| event.received_at).max();
    let positions = stored(&log.append(batch).await.unwrap());
    let head = log.head(&shard).unwrap();
    assert_eq!(head.last.as_ref(), positions.last());
    assert_eq!(head.newest_received_at, newest);
    assert!(head.end_offset > 0);
    let batch = log.read(&shard, None, 10).await.unwrap();
    assert_eq!(batch.millis_behind, Some(0));
}

/// One appended event of the property test: which entity, and whether it re-sends an earlier
/// event (a duplicate).
#[derive(Clone, Debug)]
enum Planned {
    Fresh { entity: u8 },
    Again { earlier: usize },
}

fn planned() -> impl Strategy<Value = Planned> {
    prop_oneof![
        4 => (0u8..6).prop_map(|entity| Planned::Fresh { entity }),
        1 => any::<usize>().prop_map(|earlier| Planned::Again { earlier }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random append batches (with re-sent events), optionally a reopen, then reads with random
    /// page sizes reproduce, per shard, exactly the stored events in append order.
    #[test]
    fn reads_reproduce_appends(
        batches in prop::collection::vec(prop::collection::vec(planned(), 0..25), 1..8),
        pages in prop::collection::vec(1usize..20, 1..6),
        segment_bytes in 300u64..4096,
        reopen in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut config = config_in(&dir);
            config.shard_count = 2;
            config.segment_bytes = segment_bytes;
            config.sync = SyncMode::Relaxed;
            let tenant = run_tenant();
            let mut log = open(&config);
            let mut sent: Vec<Event> = Vec::new();
            let mut expected: Vec<Event> = Vec::new();
            let mut counter = 0;
            for plan in &batches {
                let mut batch = Vec::new();
                let mut duplicate = Vec::new();
                for step in plan {
                    let next = match step {
                        Planned::Again { earlier } if !sent.is_empty() || !batch.is_empty() => {
                            let pool: Vec<&Event> = sent.iter().chain(batch.iter()).collect();
                            pool[earlier % pool.len()].clone()
                        }
                        Planned::Fresh { entity } => {
                            counter += 1;
                            event(&tenant, &format!("e{entity}"), counter)
                        }
                        Planned::Again { .. } => {
                            counter += 1;
                            event(&tenant, "e0", counter)
                        }
                    };
                    let seen = sent.iter().chain(batch.iter()).any(|e: &Event| e.id == next.id);
                    duplicate.push(seen);
                    if !seen {
                        expected.push(next.clone());
                    }
                    batch.push(next);
                }
                let outcomes = log.append(batch.clone()).await.unwrap();
                let got: Vec<bool> = outcomes.iter().map(|o| *o == AppendOutcome::Duplicate).collect();
                assert_eq!(got, duplicate);
                sent.extend(batch);
            }
            if reopen {
                log.shutdown().await;
                drop(log);
                log = open(&config);
            }
            for shard in ["0", "1"] {
                let shard = shard.to_owned();
                let want: Vec<&Event> = expected
                    .iter()
                    .filter(|event| log.shard_of(&event.tenant, &event.entity) == shard)
                    .collect();
                let mut got: Vec<Event> = Vec::new();
                let mut after: Option<Position> = None;
                for page in pages.iter().cycle() {
                    let batch = log.read(&shard, after.as_ref(), *page).await.unwrap();
                    let Some(last) = batch.last_position() else { break };
                    assert!(batch.event_count() >= 1);
                    got.extend(batch.records.iter().flat_map(|r| r.events.iter().cloned()));
                    after = Some(last);
                }
                assert_eq!(got.iter().collect::<Vec<_>>(), want);
            }
            log.shutdown().await;
        });
    }
}

/// A batch of 1000 analytics-like events, ~170 bytes of JSON properties each. `noisy` puts a
/// random token and random numbers in every event (worst case for compression); otherwise the
/// values repeat the way page paths, plans and browsers do.
fn sample_batch(tenant: &str, seed: usize, noisy: bool) -> Vec<Event> {
    (0..1000)
        .map(|n| {
            let entity = format!("customer-{}", (seed * 7 + n) % 5000);
            let mut sample = event(tenant, &entity, n as u64);
            sample.name = ["page_view", "login", "purchase", "signup"][n % 4].to_owned();
            let (token, duration) = if noisy {
                let random = uuid::Uuid::new_v4().as_u128();
                (format!("{random:032x}"), (random >> 64) as u32 % 100_000)
            } else {
                let session = (seed * 1000 + n) as u64 * 0x9E37_79B9;
                (format!("{session:016x}"), ((n * 37) % 5000) as u32)
            };
            sample.properties = format!(
                r#"{{"path":"/app/projects/{}/settings","plan":"{}","browser":"Firefox 128.0","country":"DE","duration_ms":{duration},"session":"{token}","experiment":"checkout-v{}"}}"#,
                n % 300,
                ["free", "pro", "enterprise"][n % 3],
                n % 5
            );
            sample
        })
        .collect()
}

/// Appends `appenders × batches` sample batches concurrently and prints the rates.
async fn measure(appenders: usize, batches: usize, sync: SyncMode, noisy: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.sync = sync;
    let log = Arc::new(open(&config));
    let tenant = run_tenant();
    let work: Vec<Vec<Vec<Event>>> = (0..appenders)
        .map(|appender| {
            (0..batches)
                .map(|batch| sample_batch(&tenant, appender * batches + batch, noisy))
                .collect()
        })
        .collect();
    let json_bytes = work[0][0]
        .iter()
        .map(|sample| sample.properties.len())
        .sum::<usize>()
        / 1000;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mine in work {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for batch in mine {
                let at = Instant::now();
                log.append(batch).await.unwrap();
                latencies.push(at.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let total = appenders * batches * 1000;
    log.shutdown().await;
    let disk: u64 = (0..config.shard_count)
        .flat_map(|shard| files_with(&config.dir.join(format!("shard-{shard:03}")), ".seg"))
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    println!(
        "{sync:?}, {appenders} appenders, noisy={noisy}: {total} events in {elapsed:.2?} = \
         {:.0} events/s; append p50 {:.2?} p99 {:.2?}; {:.1} bytes/event on disk \
         (properties ~{json_bytes} bytes of JSON)",
        total as f64 / elapsed.as_secs_f64(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        disk as f64 / total as f64,
    );
    drop(log);
    let reopened = Instant::now();
    let log = open(&config);
    let reopen = reopened.elapsed();
    let read_started = Instant::now();
    let read = read_all(&log).await.len();
    println!(
        "  reopen (dedup rebuilt from {total} events) {reopen:.2?}; read back {read} events in \
         {:.2?}",
        read_started.elapsed()
    );
}

/// Rough throughput: 1000-event batches of ~200-byte events, fsync per group commit (and
/// without, for comparison); bytes on disk per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run with --release -- --ignored --nocapture"]
async fn measure_append_throughput() {
    measure(1, 100, SyncMode::Always, false).await;
    measure(4, 50, SyncMode::Always, false).await;
    measure(4, 50, SyncMode::Always, true).await;
    measure(4, 50, SyncMode::Relaxed, false).await;
}
