//! `shoal-bench series-bytes` (issues 3 and 9): where a metric point's bytes go in the embedded
//! tables.
//!
//! Loads the comparison data set's metric points (`cpu{host=hNNNN}`, one a minute per series,
//! `dataset.rs`) into a fresh embedded log, replays it through the real projector (the series
//! projection alone, `catch_up`) into a fresh redb file, and reports per point:
//! - per item kind (`raw`, `m1`, `h1`, `d1`, `fence`, the series list, the checkpoints): the
//!   `data` attribute, the whole stored item (as the embedded backend encodes it) and the key;
//! - redb's own view (`DatabaseStats`): bytes in leaf entries, branch metadata, fragmentation,
//!   allocated pages;
//! - the file's length and what it takes on disk (allocated blocks: redb grows its file by
//!   doubling with `set_len`, so its tail is a hole until written), then both again after
//!   `Database::compact()`.
//!
//! `--flush-every N` catches up after every N appended points instead of once at the end, as a
//! live server does (each flush rewrites the day's rollup items), to show what the rewrites
//! leave behind in the file. The log is written without fsync (`SyncMode::Relaxed`): only the
//! table file is measured.

use crate::dataset::{Dataset, DatasetSpec};
use crate::procfs::Sizes;
use anyhow::{Context, Result};
use clap::Args;
use shoal_schemas::{Event, EventKind};
use shoal_storage::embedded::{EmbeddedLog, EmbeddedTables, LogConfig, SyncMode};
use shoal_storage::{EventLog, Item, Scan, Table, TableName, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct SeriesBytesArgs {
    /// Metric series (`cpu{host=hNNNN}`).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub series: u32,
    /// Points per series, one a minute (1440 = one day; up to 30 days, to see what the file
    /// holds per point once more than the day being rewritten is stored).
    #[arg(long, default_value_t = 1440, value_parser = clap::value_parser!(u32).range(2..=43_200))]
    pub points: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Catch up after every N appended points (0: once, after the whole load).
    #[arg(long, default_value_t = 0)]
    pub flush_every: usize,
    /// The projector's batch size (events read per flush and shard).
    #[arg(long, default_value_t = shoal_projector::ProjectorConfig::default().batch_events)]
    pub batch_events: usize,
    /// Where the temporary directory goes.
    #[arg(long, default_value = "/tmp")]
    pub dir: PathBuf,
}

/// Sums of one item kind.
#[derive(Default)]
struct Kind {
    items: u64,
    data: u64,
    stored: u64,
    keys: u64,
}

fn kind_of(pk: &str, sk: &str) -> &'static str {
    if pk.ends_with("#serieslist") {
        return "list";
    }
    match sk.split_once('#').map(|(prefix, _)| prefix) {
        Some("raw") => "raw",
        Some("m1") => "m1",
        Some("h1") => "h1",
        Some("d1") => "d1",
        _ if sk == shoal_projector::series::FENCE_SK => "fence",
        _ => "other",
    }
}

/// The item's size as the embedded backend stores it: a version byte and the postcard map.
fn stored_len(item: &Item) -> Result<u64> {
    Ok(1 + postcard::to_allocvec(item)?.len() as u64)
}

async fn tally(
    tables: &dyn Table,
    table: TableName,
    kinds: &mut BTreeMap<String, Kind>,
) -> Result<()> {
    let mut cursor = None;
    loop {
        let page = tables
            .scan(table, &Scan::segment(0, 1).limit(1000).after(cursor))
            .await?;
        for (key, item) in &page.items {
            let name = match table {
                TableName::Views => kind_of(&key.pk, &key.sk),
                _ => "control",
            };
            let kind = kinds.entry(name.to_owned()).or_default();
            kind.items += 1;
            kind.data += item
                .get("data")
                .and_then(Value::as_bytes)
                .map_or(0, |data| data.len() as u64);
            kind.stored += stored_len(item)?;
            kind.keys += (key.pk.len() + key.sk.len()) as u64;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

fn redb_stats(path: &std::path::Path, points: f64) -> Result<()> {
    let db = redb::Database::open(path).context("opening the table file")?;
    let txn = db.begin_write()?;
    let stats = txn.stats()?;
    let page = stats.page_size() as f64;
    println!(
        "  redb: {} allocated pages of {} B ({:.2} B/point): {} leaf + {} branch pages; entries {:.2} B/point, branch metadata {:.2}, fragmentation {:.2}, tree height {}",
        stats.allocated_pages(),
        stats.page_size(),
        stats.allocated_pages() as f64 * page / points,
        stats.leaf_pages(),
        stats.branch_pages(),
        stats.stored_bytes() as f64 / points,
        stats.metadata_bytes() as f64 / points,
        stats.fragmented_bytes() as f64 / points,
        stats.tree_height()
    );
    txn.abort()?;
    Ok(())
}

pub fn run(args: &SeriesBytesArgs) -> Result<()> {
    let spec = DatasetSpec {
        seed: args.seed,
        customers: 0,
        events: 0,
        series: args.series,
        points: args.points,
        now_millis: chrono::Utc::now().timestamp_millis(),
        // Days back enough that the last point is before today.
        metrics_day: (chrono::Utc::now().timestamp_millis() / crate::dataset::DAY
            - 1
            - i64::from(args.points.div_ceil(1440)))
            * crate::dataset::DAY,
    };
    let points = crate::dataset::points_only(&spec);
    let dir = tempfile::Builder::new()
        .prefix("shoal-series-bytes-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a directory under {}", args.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let table_path = dir.path().join("series.redb");
    let started = std::time::Instant::now();
    let mut kinds = BTreeMap::new();
    runtime.block_on(async {
        let mut config = LogConfig::new(dir.path().join("log"));
        config.sync = SyncMode::Relaxed;
        let embedded = Arc::new(EmbeddedLog::open(config)?);
        let log: Arc<dyn EventLog> = embedded.clone();
        let tables: Arc<dyn Table> = Arc::new(EmbeddedTables::open(&table_path)?);
        let projections: Vec<Arc<dyn shoal_projector::Projection>> =
            vec![Arc::new(shoal_projector::series::Series)];
        let projector = shoal_projector::ProjectorConfig {
            batch_events: args.batch_events,
            ..Default::default()
        };
        let flush_every = if args.flush_every == 0 {
            usize::MAX
        } else {
            args.flush_every
        };
        let mut since_flush = 0;
        for (index, chunk) in points.chunks(1000).enumerate() {
            let events = chunk
                .iter()
                .enumerate()
                .map(|(offset, point)| {
                    let host = Dataset::series_name(point.series);
                    Event {
                        id: uuid::Uuid::from_u128((index * 1000 + offset) as u128 + 1),
                        tenant: "default".to_owned(),
                        kind: EventKind::Metric,
                        name: "cpu".to_owned(),
                        entity: format!("cpu{{host={host}}}"),
                        timestamp: point.timestamp,
                        received_at: point.timestamp,
                        properties: format!(r#"{{"host":"{host}"}}"#),
                        value: Some(point.value),
                    }
                })
                .collect();
            log.append(events).await?;
            since_flush += chunk.len();
            if since_flush >= flush_every {
                shoal_projector::catch_up(log.clone(), tables.clone(), &projections, &projector)
                    .await?;
                since_flush = 0;
            }
        }
        shoal_projector::catch_up(log.clone(), tables.clone(), &projections, &projector).await?;
        tally(tables.as_ref(), TableName::Views, &mut kinds).await?;
        tally(tables.as_ref(), TableName::Control, &mut kinds).await?;
        drop(tables);
        drop(log);
        embedded.shutdown().await;
        anyhow::Ok(())
    })?;
    let count = points.len() as f64;
    println!(
        "{} series × {} points = {} points (seed {}), loaded and projected in {:.1} s (flush every {}, batch {})",
        args.series,
        args.points,
        points.len(),
        args.seed,
        started.elapsed().as_secs_f64(),
        if args.flush_every == 0 {
            "once".to_owned()
        } else {
            args.flush_every.to_string()
        },
        args.batch_events
    );
    println!("  kind      items   data B/pt  item B/pt   key B/pt");
    let mut total = Kind::default();
    for (name, kind) in &kinds {
        println!(
            "  {name:<7} {:>7} {:>11.2} {:>10.2} {:>10.2}",
            kind.items,
            kind.data as f64 / count,
            kind.stored as f64 / count,
            kind.keys as f64 / count
        );
        total.items += kind.items;
        total.data += kind.data;
        total.stored += kind.stored;
        total.keys += kind.keys;
    }
    println!(
        "  total   {:>7} {:>11.2} {:>10.2} {:>10.2}   logical (item + key) {:.2} B/point",
        total.items,
        total.data as f64 / count,
        total.stored as f64 / count,
        total.keys as f64 / count,
        (total.stored + total.keys) as f64 / count
    );
    let before = Sizes::of(&std::fs::metadata(&table_path)?);
    println!(
        "  file {:.2} B/point ({} B); on disk {:.2} B/point ({} B)",
        before.length as f64 / count,
        before.length,
        before.disk as f64 / count,
        before.disk
    );
    redb_stats(&table_path, count)?;
    let mut db = redb::Database::open(&table_path)?;
    while db.compact().context("compacting")? {}
    drop(db);
    let after = Sizes::of(&std::fs::metadata(&table_path)?);
    println!(
        "  after compact(): file {:.2} B/point ({} B); on disk {:.2} B/point",
        after.length as f64 / count,
        after.length,
        after.disk as f64 / count
    );
    redb_stats(&table_path, count)?;
    Ok(())
}
