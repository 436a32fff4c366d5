//! How many DynamoDB item writes each projection makes per event, by batch size: the figure
//! behind the AWS cost note (docs/aws.md). Write-back batching folds many events of one item
//! into one write per batch, so writes per event fall as batches grow and as events
//! concentrate on few entities. A measurement, not a check: run with
//!
//!     cargo test --release -p shoal-projector --test write_amplification -- --ignored --nocapture
//!
//! Workload: 200,000 events, 5,000 customers (Zipf-like: customer k gets weight 1/k), 10 event
//! names, plus metric points of 200 series every 10 s, on 4 shards; the DynamoDB path
//! (transactions of at most 100 ops, the archive as copies, as on Kinesis). The batch sizes are
//! one flush per read; "rebuild" is the default configuration building from nothing, which
//! folds several reads into one flush (`fold_ahead_*`).

mod common;

use common::{TestTables, log_in, metric, track};
use rand::{Rng, SeedableRng};
use shoal_projector::archive::Layout;
use shoal_projector::{ProjectorConfig, catch_up, default_projections_with};
use shoal_schemas::Event;
use shoal_storage::{EventLog, Table};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const T: i64 = 1_704_067_200_000;
const EVENTS: usize = 200_000;

fn workload() -> Vec<Event> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let weights: Vec<f64> = (1..=5000).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut events = Vec::with_capacity(EVENTS);
    for n in 0..EVENTS {
        let at = T + n as i64 * 50;
        if n % 4 == 0 {
            events.push(metric(
                &format!("cpu{{host=h{}}}", n % 200),
                at,
                (n % 97) as f64,
            ));
            continue;
        }
        let mut pick = rng.random::<f64>() * total;
        let mut customer = 0;
        for (k, weight) in weights.iter().enumerate() {
            pick -= weight;
            if pick <= 0.0 {
                customer = k;
                break;
            }
        }
        let name = format!("event_{}", rng.random_range(0..10));
        events.push(track(
            &format!("customer-{customer}"),
            &name,
            at,
            r#"{"amount":3}"#,
        ));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand (see the module doc)"]
async fn writes_per_event_by_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 4));
    // Small appends, so records are small and the batch size, not the record size, decides.
    for chunk in workload().chunks(100) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    println!("| projection | batch events | item writes | writes per event |");
    println!("|---|---:|---:|---:|");
    for projection in default_projections_with(Layout::Copies) {
        for batch_events in [Some(100), Some(1_000), Some(20_000), None] {
            let tables = Arc::new(TestTables::new(100));
            let dynamic: Arc<dyn Table> = tables.clone();
            // One flush per read: the batch size is what is measured; or the defaults.
            let config = match batch_events {
                Some(batch_events) => ProjectorConfig {
                    batch_events,
                    fold_ahead_events: 0,
                    ..ProjectorConfig::default()
                },
                None => ProjectorConfig::default(),
            };
            let applied = catch_up(
                log.clone(),
                dynamic,
                std::slice::from_ref(&projection),
                &config,
            )
            .await
            .unwrap();
            assert_eq!(applied as usize, EVENTS);
            let ops = tables.ops.load(Ordering::SeqCst);
            let batch = batch_events.map_or("rebuild".to_owned(), |n| n.to_string());
            println!(
                "| {} | {batch} | {ops} | {:.3} |",
                projection.name(),
                ops as f64 / EVENTS as f64
            );
        }
    }
}
