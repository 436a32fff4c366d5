//! `shoal-bench reproject`: the projector alone, in this process, without HTTP.
//!
//! Fills an embedded log once with the comparison data set (identifies, track events and metric
//! points, appended in batches of 1000 the way ingest would store them), keeps it in `--dir`
//! for the next run, then replays it into fresh embedded tables `--rounds` times with the default
//! projections running side by side, as the server runs them. Each round reports wall time,
//! the process's CPU time, records per second and per CPU-second, and the tables file's size;
//! the last line gives the medians. It is the quick loop for projector changes: the same
//! figures as `compare`'s re-projection, minutes sooner.

use crate::cli::ReprojectArgs;
use crate::dataset::{Dataset, DatasetSpec};
use crate::procfs;
use crate::report::median;
use anyhow::{Context, Result, bail};
use shoal_schemas::{Event, EventKind};
use shoal_storage::embedded::{EmbeddedLog, EmbeddedTables, LogConfig, SyncMode};
use shoal_storage::{
    EventLog, Item, Key, Page, Query, Scan, Table, TableName, TransactOp, Update, WriteOp,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const TENANT: &str = "bench";
const APPEND_BATCH: usize = 1000;

pub fn run(args: &ReprojectArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &ReprojectArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let log_dir = args.dir.join("log");
    let log = fill(args, &log_dir).await?;
    let records = log_records(&log).await?;
    println!(
        "reproject: log of {records} records in {}",
        log_dir.display()
    );
    let mut seconds = Vec::new();
    let mut per_cpu = Vec::new();
    for round in 1..=args.rounds {
        let dir = tempfile::Builder::new()
            .prefix("shoal-reproject-")
            .tempdir_in(&args.dir)
            .context("creating the tables' directory")?;
        let path = dir.path().join("tables.redb");
        let mut tables: Arc<dyn Table> = Arc::new(EmbeddedTables::open(&path)?);
        if args.durable_flushes {
            tables = Arc::new(Durable(tables));
        }
        let config = shoal_projector::ProjectorConfig {
            batch_events: args.batch_events,
            fold_ahead_lag: std::time::Duration::from_millis(args.fold_ahead_lag_ms),
            fold_ahead_items: args.fold_ahead_items,
            fold_ahead_time: std::time::Duration::from_millis(args.fold_ahead_time_ms),
            ..Default::default()
        };
        let projections: Vec<_> = shoal_projector::default_projections(log.as_ref())
            .into_iter()
            .filter(|projection| {
                args.projections
                    .split(',')
                    .any(|name| name.trim() == projection.name())
            })
            .collect();
        let Replayed {
            applied,
            elapsed,
            cpu,
        } = replay(&log, &tables, projections, &config).await?;
        drop(tables);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if applied != records {
            bail!("round {round} applied {applied} records, the log holds {records}");
        }
        println!(
            "round {round}: {applied} records in {elapsed:.2} s, {cpu:.2} CPU-s: {:.0} records/s, {:.0} records/CPU-s; tables {:.1} MB",
            applied as f64 / elapsed,
            applied as f64 / cpu.max(1e-9),
            bytes as f64 / 1e6
        );
        seconds.push(elapsed);
        per_cpu.push(applied as f64 / cpu.max(1e-9));
    }
    let median_seconds = median(seconds);
    println!(
        "median of {} rounds: {median_seconds:.2} s, {:.0} records/s, {:.0} records/CPU-s",
        args.rounds,
        records as f64 / median_seconds,
        median(per_cpu)
    );
    Ok(())
}

/// What one replay did: records applied (the most any projection applied: each sees every
/// record), wall seconds and the process's CPU seconds.
pub(crate) struct Replayed {
    pub applied: u64,
    pub elapsed: f64,
    pub cpu: f64,
}

/// Replays `log` into `tables` with `projections` side by side, each its own `catch_up`, as the
/// server runs them.
pub(crate) async fn replay(
    log: &Arc<dyn EventLog>,
    tables: &Arc<dyn Table>,
    projections: Vec<Arc<dyn shoal_projector::Projection>>,
    config: &shoal_projector::ProjectorConfig,
) -> Result<Replayed> {
    let cpu_before = procfs::cpu_time(None).unwrap_or_default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for projection in projections {
        let (log, tables, config) = (log.clone(), tables.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            shoal_projector::catch_up(log, tables, &[projection], &config).await
        }));
    }
    let mut applied = 0;
    for task in tasks {
        applied = applied.max(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = procfs::cpu_time(None)
        .unwrap_or_default()
        .saturating_sub(cpu_before)
        .as_secs_f64();
    Ok(Replayed {
        applied,
        elapsed,
        cpu,
    })
}

/// Opens the log in `dir`, filling it first when it is new. A log left by an earlier run is used
/// as it is if it was made from the same data set (a marker file names it), and refused if not.
async fn fill(args: &ReprojectArgs, dir: &Path) -> Result<Arc<dyn EventLog>> {
    let spec_marker = dir.join("bench-dataset");
    let wanted = format!("{:?}", args.data);
    let existed = dir.exists();
    if existed {
        let found = std::fs::read_to_string(&spec_marker).unwrap_or_default();
        if found != wanted {
            bail!(
                "{} holds another data set ({found:?}); remove it or pick another --dir",
                dir.display()
            );
        }
    }
    let mut config = LogConfig::new(dir);
    // Filling is setup, not the figure: the OS page cache is enough for it.
    config.sync = SyncMode::Relaxed;
    let opened = tokio::task::spawn_blocking(move || EmbeddedLog::open(config)).await??;
    let log: Arc<dyn EventLog> = Arc::new(opened);
    if existed {
        return Ok(log);
    }
    let now = shoal_schemas::time::now_millis();
    let data = Dataset::generate(&DatasetSpec::from_args(&args.data, now));
    let started = Instant::now();
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    for event in events(&data, now) {
        batch.push(event);
        if batch.len() == APPEND_BATCH {
            log.append(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        log.append(batch).await?;
    }
    std::fs::write(&spec_marker, wanted)?;
    println!(
        "reproject: filled {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(log)
}

/// The data set as stored events: the identifies, then track events and points interleaved in
/// time order, as they would arrive.
fn events(data: &Dataset, now: i64) -> impl Iterator<Item = Event> + '_ {
    let identifies = data.customers.iter().map(move |customer| Event {
        id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, customer.id.as_bytes()),
        tenant: TENANT.to_owned(),
        kind: EventKind::Identify,
        name: String::new(),
        entity: customer.id.clone(),
        timestamp: customer.signed_up,
        received_at: now,
        properties: serde_json::json!({
            "plan": customer.plan,
            "seats": customer.seats,
            "region": customer.region,
            "users": customer.users,
        })
        .to_string(),
        value: None,
    });
    let tracks = data.events.iter().map(move |event| Event {
        id: event.id,
        tenant: TENANT.to_owned(),
        kind: EventKind::Track,
        name: event.name.to_owned(),
        entity: data.customers[event.customer as usize].id.clone(),
        timestamp: event.timestamp,
        received_at: now,
        properties: event.properties.clone(),
        value: None,
    });
    let points = data.points.iter().map(move |point| {
        let host = Dataset::series_name(point.series);
        Event {
            id: uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("{host}/{}", point.timestamp).as_bytes(),
            ),
            tenant: TENANT.to_owned(),
            kind: EventKind::Metric,
            name: "cpu".to_owned(),
            entity: format!("cpu{{host={host}}}"),
            timestamp: point.timestamp,
            received_at: now,
            properties: serde_json::json!({ "host": host }).to_string(),
            value: Some(point.value),
        }
    });
    identifies.chain(tracks).chain(points)
}

/// Records in the log now: the sum over shards of the last sequence number read back.
async fn log_records(log: &Arc<dyn EventLog>) -> Result<u64> {
    let mut total = 0;
    for shard in log.shards().await? {
        let mut after = None;
        loop {
            let batch = log.read(&shard.id, after.as_ref(), 50_000).await?;
            if batch.event_count() == 0 {
                break;
            }
            total += batch.event_count() as u64;
            after = batch.records.last().and_then(|record| {
                record
                    .positioned()
                    .last()
                    .map(|(position, _)| position.clone())
            });
        }
    }
    Ok(total)
}

/// The tables with every flush durable: forwards each call but `transact_relaxed`, which the
/// trait's default turns into `transact`. The baseline for `--durable-flushes`.
struct Durable(Arc<dyn Table>);

#[async_trait::async_trait]
impl Table for Durable {
    async fn get(&self, table: TableName, key: &Key) -> shoal_storage::Result<Option<Item>> {
        self.0.get(table, key).await
    }

    async fn batch_get(
        &self,
        table: TableName,
        keys: &[Key],
    ) -> shoal_storage::Result<Vec<Option<Item>>> {
        self.0.batch_get(table, keys).await
    }

    async fn query(&self, table: TableName, query: &Query) -> shoal_storage::Result<Page> {
        self.0.query(table, query).await
    }

    async fn query_many(
        &self,
        table: TableName,
        queries: &[Query],
    ) -> shoal_storage::Result<Vec<Page>> {
        self.0.query_many(table, queries).await
    }

    async fn write(&self, table: TableName, ops: Vec<WriteOp>) -> shoal_storage::Result<()> {
        self.0.write(table, ops).await
    }

    async fn update(&self, table: TableName, update: Update) -> shoal_storage::Result<Item> {
        self.0.update(table, update).await
    }

    async fn transact(&self, ops: Vec<TransactOp>) -> shoal_storage::Result<()> {
        self.0.transact(ops).await
    }

    async fn scan(&self, table: TableName, scan: &Scan) -> shoal_storage::Result<Page> {
        self.0.scan(table, scan).await
    }

    fn max_transact_ops(&self) -> usize {
        self.0.max_transact_ops()
    }

    fn max_transact_bytes(&self) -> usize {
        self.0.max_transact_bytes()
    }
}
