//! PostgreSQL's side: the common "event store in Postgres + aggregate tables" design.
//!
//! Tables: `customers` (primary key id), `events` (primary key the event id, an index on
//! customer and time), `points` (primary key series and time). Ingest: `COPY … FROM STDIN
//! (FORMAT csv)` of one batch per transaction from N connections, so each acknowledgement is a
//! durable commit (`fsync = on`, `synchronous_commit = on`, as the server runs them). The
//! "projection" is rebuilding the aggregate tables (`customer_daily`, `customer_totals`,
//! `points_hourly`) with `INSERT … SELECT … GROUP BY`. Queries are prepared statements over one
//! connection, one at a time, as the HTTP systems are asked.

use super::figures::{Figure, Figures, System};
use super::load::time_queries;
use crate::cli::CompareArgs;
use crate::dataset::{DAY, Dataset, NAMES, formats};
use crate::procfs;
use anyhow::{Context, Result, bail};
use futures::SinkExt;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

/// A statement parameter, so arrays of mixed types coerce.
type Param = dyn ToSql + Sync;

const SCHEMA: &str = "
DROP TABLE IF EXISTS events, customers, points, customer_daily, customer_totals, points_hourly;
CREATE TABLE customers (id text PRIMARY KEY, plan text NOT NULL, seats int NOT NULL,
    region text NOT NULL, users int NOT NULL, signed_up bigint NOT NULL);
CREATE TABLE events (id uuid PRIMARY KEY, ts bigint NOT NULL, customer text NOT NULL,
    user_id text NOT NULL, name text NOT NULL, properties jsonb NOT NULL);
CREATE INDEX events_customer_ts ON events (customer, ts);
CREATE TABLE points (series text NOT NULL, ts bigint NOT NULL, value double precision NOT NULL,
    PRIMARY KEY (series, ts));
";

const AGGREGATES: &str = "
CREATE TABLE customer_daily (customer text, name text, day bigint, n bigint NOT NULL,
    PRIMARY KEY (customer, name, day));
INSERT INTO customer_daily SELECT customer, name, ts / 86400000, count(*) FROM events GROUP BY 1, 2, 3;
CREATE INDEX customer_daily_name_day ON customer_daily (name, day);
CREATE TABLE customer_totals (customer text PRIMARY KEY, first_seen bigint NOT NULL,
    last_seen bigint NOT NULL, events bigint NOT NULL);
INSERT INTO customer_totals SELECT customer, min(ts), max(ts), count(*) FROM events GROUP BY 1;
CREATE INDEX customer_totals_last_seen ON customer_totals (last_seen);
CREATE TABLE points_hourly (series text, hour bigint, n bigint NOT NULL,
    sum double precision NOT NULL, min double precision NOT NULL, max double precision NOT NULL,
    PRIMARY KEY (series, hour));
INSERT INTO points_hourly SELECT series, ts / 3600000 * 3600000, count(*), sum(value), min(value), max(value)
    FROM points GROUP BY 1, 2;
CREATE INDEX points_hourly_hour ON points_hourly (hour);
ANALYZE;
";

async fn connect(connect: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(connect, NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL ({connect})"))?;
    tokio::spawn(async move {
        // Ends when the client is dropped; errors surface on the client's next call.
        let _ = connection.await;
    });
    Ok(client)
}

/// CPU time of the server's processes (`--postgres-pid`, the postmaster), if given.
fn server_cpu(args: &CompareArgs) -> Duration {
    args.postgres_pid
        .and_then(procfs::tree_cpu_time)
        .unwrap_or_default()
}

pub async fn round(
    args: &CompareArgs,
    connect_to: &str,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
) -> Result<Duration> {
    let cpu_before = server_cpu(args);
    let client = connect(connect_to).await?;
    let settings = client
        .query_one(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit'), version()",
            &[],
        )
        .await?;
    let (fsync, synchronous): (String, String) = (settings.get(0), settings.get(1));
    if fsync != "on" || synchronous != "on" {
        bail!(
            "PostgreSQL must run with fsync and synchronous_commit on (has {fsync}, {synchronous})"
        );
    }
    client.batch_execute(SCHEMA).await?;

    let batch = args.batch as usize;
    let connections = args.connections as usize;
    let customers = chunks(&data.customers, batch, formats::csv_customer);
    let events = chunks(&data.events, batch, |event, out| {
        formats::csv_event(data, event, out)
    });
    let points = chunks(&data.points, batch, formats::csv_point);
    let events_started = Instant::now();
    copy_all(connect_to, "customers", customers, connections).await?;
    copy_all(connect_to, "events", events, connections).await?;
    let events_elapsed = events_started.elapsed().as_secs_f64();
    let event_count = data.event_count() as f64;
    figures.record(
        Figure::IngestEvents,
        System::Postgres,
        round,
        event_count / events_elapsed,
    );
    let points_started = Instant::now();
    copy_all(connect_to, "points", points, connections).await?;
    let points_elapsed = points_started.elapsed().as_secs_f64();
    figures.record(
        Figure::IngestPoints,
        System::Postgres,
        round,
        data.points.len() as f64 / points_elapsed,
    );
    figures.record(
        Figure::Reprojection,
        System::Postgres,
        round,
        events_elapsed + points_elapsed,
    );
    println!(
        "postgres: {event_count} events by COPY at {:.0}/s, {} points at {:.0}/s",
        event_count / events_elapsed,
        data.points.len(),
        data.points.len() as f64 / points_elapsed
    );

    let cpu_aggregates = server_cpu(args);
    let started = Instant::now();
    client.batch_execute(AGGREGATES).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let records = event_count + data.points.len() as f64;
    figures.record(
        Figure::Projection,
        System::Postgres,
        round,
        records / elapsed,
    );
    let cpu = server_cpu(args)
        .saturating_sub(cpu_aggregates)
        .as_secs_f64();
    if cpu > 0.0 {
        figures.record(
            Figure::ProjectionPerCpu,
            System::Postgres,
            round,
            records / cpu,
        );
    }
    println!("postgres: aggregate tables rebuilt in {elapsed:.1} s");

    let sizes = client
        .query_one(
            "SELECT pg_total_relation_size('events') + pg_total_relation_size('customers'),
                    pg_total_relation_size('points') + pg_total_relation_size('points_hourly')",
            &[],
        )
        .await?;
    let (event_bytes, point_bytes): (i64, i64) = (sizes.get(0), sizes.get(1));
    figures.record(
        Figure::BytesPerEvent,
        System::Postgres,
        round,
        event_bytes as f64 / event_count,
    );
    // Relation files are written, not sparse: their size is both what the disk holds and the
    // files' length.
    let point_bytes = point_bytes as u64;
    figures.series_sizes(
        System::Postgres,
        round,
        crate::procfs::Sizes {
            length: point_bytes,
            disk: point_bytes,
        },
        data.points.len(),
    );

    queries(args, &client, data, round, figures).await?;
    Ok(server_cpu(args).saturating_sub(cpu_before))
}

async fn queries(
    args: &CompareArgs,
    client: &Client,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
) -> Result<()> {
    let entity = client
        .prepare(
            "SELECT c.id, c.plan, c.seats, c.region, t.first_seen, t.last_seen, t.events
             FROM customers c LEFT JOIN customer_totals t ON t.customer = c.id WHERE c.id = $1",
        )
        .await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.data.seed);
    let customers = data.customers.len();
    let histogram = time_queries(args.queries, |_| {
        let id = data.customers[rng.random_range(0..customers)].id.clone();
        let statement = &entity;
        async move { expect_rows(client.query(statement, &[&id]).await?, 1) }
    })
    .await?;
    figures.latency(
        Figure::EntityP50,
        Figure::EntityP99,
        System::Postgres,
        round,
        &histogram,
    );

    let list = client
        .prepare(
            "SELECT c.id, c.plan, t.last_seen, t.events FROM customers c
             JOIN customer_totals t ON t.customer = c.id WHERE c.plan = $1
             ORDER BY t.last_seen DESC LIMIT 50",
        )
        .await?;
    let histogram = time_queries(args.queries, |n| {
        let plan = crate::workload::PLANS[n as usize % crate::workload::PLANS.len()];
        let statement = &list;
        async move { expect_rows(client.query(statement, &[&plan]).await?, 1) }
    })
    .await?;
    figures.latency(
        Figure::ListP50,
        Figure::ListP99,
        System::Postgres,
        round,
        &histogram,
    );

    let day = data.spec.metrics_day;
    let to = day + DAY - 1;
    let series = client
        .prepare(
            "SELECT ts, value FROM points WHERE series = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts",
        )
        .await?;
    let histogram = time_queries(args.queries, |_| {
        let host = Dataset::series_name(rng.random_range(0..data.spec.series));
        let statement = &series;
        async move {
            expect_rows(
                client
                    .query(statement, &[&host as &Param, &day, &to])
                    .await?,
                1,
            )
        }
    })
    .await?;
    figures.latency(
        Figure::SeriesP50,
        Figure::SeriesP99,
        System::Postgres,
        round,
        &histogram,
    );

    let aggregate = client
        .prepare(
            "SELECT hour, sum(sum / n) FROM points_hourly WHERE hour >= $1 AND hour <= $2
             GROUP BY hour ORDER BY hour",
        )
        .await?;
    let histogram = time_queries(args.aggregate_queries(), |_| {
        let statement = &aggregate;
        async move { expect_rows(client.query(statement, &[&day, &to]).await?, 1) }
    })
    .await?;
    figures.latency(
        Figure::AggregateP50,
        Figure::AggregateP99,
        System::Postgres,
        round,
        &histogram,
    );

    let window = client
        .prepare(
            "SELECT d.customer, sum(d.n) AS n, max(t.last_seen) AS last_seen
             FROM customer_daily d JOIN customer_totals t ON t.customer = d.customer
             WHERE d.name = $1 AND d.day >= $2 GROUP BY d.customer HAVING sum(d.n) >= 1
             ORDER BY last_seen DESC LIMIT 50",
        )
        .await?;
    // The last 7 UTC days, today included, as Shoal's `window_days=7`.
    let first_day = data.spec.now_millis / DAY - 6;
    let histogram = time_queries(args.aggregate_queries(), |n| {
        let name = NAMES[n as usize % 10];
        let statement = &window;
        async move {
            expect_rows(
                client
                    .query(statement, &[&name as &Param, &first_day])
                    .await?,
                1,
            )
        }
    })
    .await?;
    figures.latency(
        Figure::WindowP50,
        Figure::WindowP99,
        System::Postgres,
        round,
        &histogram,
    );
    Ok(())
}

fn expect_rows(rows: Vec<tokio_postgres::Row>, at_least: usize) -> Result<()> {
    if rows.len() < at_least {
        bail!(
            "a timed query found {} rows, expected at least {at_least}",
            rows.len()
        );
    }
    Ok(())
}

fn chunks<T>(
    items: &[T],
    size: usize,
    mut write: impl FnMut(&T, &mut String),
) -> Vec<bytes::Bytes> {
    items
        .chunks(size.max(1))
        .map(|part| {
            let mut text = String::new();
            for item in part {
                write(item, &mut text);
            }
            bytes::Bytes::from(text)
        })
        .collect()
}

/// COPYs every chunk once, `connections` at a time, each chunk its own transaction.
async fn copy_all(
    connect_to: &str,
    table: &str,
    chunks: Vec<bytes::Bytes>,
    connections: usize,
) -> Result<()> {
    let chunks = Arc::new(chunks);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let client = connect(connect_to).await?;
        let (chunks, next) = (Arc::clone(&chunks), Arc::clone(&next));
        let statement = format!("COPY {table} FROM STDIN (FORMAT csv)");
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(index) else {
                    break;
                };
                let sink = client
                    .copy_in::<str, bytes::Bytes>(statement.as_str())
                    .await?;
                futures::pin_mut!(sink);
                sink.send(chunk.clone()).await?;
                sink.finish().await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
