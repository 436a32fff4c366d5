//! A fixed amount of append work for instruction counting under callgrind, which is steady on
//! a noisy machine where wall-clock benches are not:
//!
//! ```sh
//! cargo build --release -p shoal-storage --example append_profile
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/append_profile append server 100
//! callgrind_annotate /tmp/cg.out | head -40
//! ```
//!
//! Arguments: `build` (only build and drop the events, the cost to subtract) or `append`;
//! `server` (ids minted by the server, dedup skipped) or `client` (fresh client ids, dedup
//! window on); the number of 1000-event batches. Each batch is built on the appending thread,
//! as ingest does, and appended with `append_with_origin` to a 4-shard log without fsync (the
//! kernel's fsync is not user-space instructions anyway). Prints the log's bytes per event.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_schemas::{Event, EventKind};
use shoal_storage::embedded::{EmbeddedLog, LogConfig, SyncMode};
use shoal_storage::{AppendOutcome, EventLog, IdOrigin, NewEvent};

const BATCH: usize = 1000;
const NAMES: [&str; 7] = [
    "page_viewed",
    "page_viewed",
    "button_clicked",
    "api_called",
    "signed_in",
    "feature_used",
    "error_shown",
];
const PATHS: [&str; 6] = [
    "/",
    "/pricing",
    "/docs/getting-started",
    "/dashboard/reports",
    "/settings/billing",
    "/blog/event-sourcing",
];
const PADDING: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.5",
    "okhttp/4.12.0 shoal-sdk-android/2.3.1 (Pixel 8; Android 14; build UQ1A.240205.004)",
];

fn batch(rng: &mut StdRng, origin: IdOrigin, now: i64) -> Vec<NewEvent> {
    (0..BATCH)
        .map(|_| {
            let skew: f64 = rng.random::<f64>();
            let event = Event {
                id: uuid::Uuid::from_u128(rng.random()),
                tenant: "default".to_owned(),
                kind: EventKind::Track,
                name: NAMES[rng.random_range(0..NAMES.len())].to_owned(),
                entity: format!("cust-{:06}", (100_000.0 * skew * skew) as u32),
                timestamp: now - rng.random_range(0..60_000),
                received_at: now,
                properties: format!(
                    r#"{{"path":"{}","duration_ms":{},"ua":"{}"}}"#,
                    PATHS[rng.random_range(0..PATHS.len())],
                    rng.random_range(0..30_000),
                    PADDING[rng.random_range(0..PADDING.len())],
                ),
                value: None,
            };
            NewEvent {
                event,
                id_origin: origin,
            }
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: append_profile build|append server|client BATCHES";
    let [_, mode, origin, batches] = args.as_slice() else {
        return Err(usage.into());
    };
    let append = match mode.as_str() {
        "build" => false,
        "append" => true,
        _ => return Err(usage.into()),
    };
    let origin = match origin.as_str() {
        "server" => IdOrigin::Server,
        "client" => IdOrigin::Client,
        _ => return Err(usage.into()),
    };
    let batches: usize = batches.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let mut config = LogConfig::new(dir.path().join("log"));
    config.sync = SyncMode::Relaxed;
    let log = EmbeddedLog::open(config)?;
    let mut rng = StdRng::seed_from_u64(7);
    let now = 1_767_225_600_000;
    let mut stored = 0usize;
    for round in 0..batches {
        let events = batch(&mut rng, origin, now + round as i64);
        if !append {
            drop(events);
            continue;
        }
        let outcomes = runtime.block_on(log.append_with_origin(events))?;
        stored += outcomes
            .iter()
            .filter(|outcome| matches!(outcome, AppendOutcome::Stored(_)))
            .count();
    }
    runtime.block_on(log.shutdown());
    let mut log_bytes = 0u64;
    for shard in std::fs::read_dir(dir.path().join("log"))? {
        let shard = shard?;
        if shard.file_type()?.is_dir() {
            for segment in std::fs::read_dir(shard.path())? {
                log_bytes += segment?.metadata()?.len();
            }
        }
    }
    println!(
        "{stored} events stored, {:.1} log bytes/event",
        log_bytes as f64 / stored.max(1) as f64
    );
    Ok(())
}
