//! Shoal's side of a round: the release server on a fresh data directory (default config:
//! fsync per group commit, 4 shards, search on), loaded over HTTP with the data set; the read
//! models' catch-up; the timed queries; ingest→queryable for a new point of a series; log bytes; peak
//! RSS. Then, with the server stopped, a full re-projection of its log in-process (archive,
//! series and entities at once, as the server runs them, into fresh tables; no search), and the
//! series projection alone to size its table per point. Last, single-event requests from 64
//! connections against another fresh server (the ingest bench's own workload and client).

use super::figures::{Figure, Figures, System};
use super::load::{Batches, get_ok, post_all, time_queries};
use super::probe_name;
use crate::cli::{CompareArgs, IngestArgs};
use crate::dataset::{DAY, Dataset, MINUTE, NAMES, formats};
use crate::procfs;
use crate::server::SpawnedServer;
use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use shoal_storage::embedded::{EmbeddedLog, EmbeddedTables, LogConfig};
use shoal_storage::{EventLog, Table};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn round(
    runtime: &tokio::runtime::Runtime,
    args: &CompareArgs,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
) -> Result<Duration> {
    println!("shoal: starting {}", args.spawn.display());
    let mut server = SpawnedServer::start(&args.spawn, args.server_config.as_deref())?;
    let pid = server.pid();
    let outcome = runtime.block_on(measure(args, data, round, figures, &server));
    let mut cpu = procfs::cpu_time(Some(pid)).unwrap_or_default();
    if let Some(peak) = procfs::proc_status_bytes(pid, "VmHWM") {
        figures.record(Figure::PeakRss, System::Shoal, round, peak as f64 / 1e6);
    }
    server.stop()?;
    outcome?;
    let log_dir = server.data_path().join("log");
    runtime.block_on(reproject(args, data, round, figures, &log_dir))?;
    drop(server);
    cpu += single_events(runtime, args, round, figures)?;
    Ok(cpu)
}

struct Http {
    client: reqwest::Client,
    base: String,
    write: String,
    read: String,
}

impl Http {
    async fn get(&self, path: &str) -> Result<bytes::Bytes> {
        get_ok(
            &self.client,
            &format!("{}{path}", self.base),
            Some(&self.read),
        )
        .await
    }

    async fn get_json(&self, path: &str) -> Result<Value> {
        Ok(serde_json::from_slice(&self.get(path).await?)?)
    }

    async fn caught_up(&self) -> Result<bool> {
        let body = self.get_json("/v1/projections").await?;
        Ok(body["projections"].as_array().is_some_and(|projections| {
            projections.iter().all(|projection| {
                projection["shards"]
                    .as_array()
                    .is_some_and(|shards| shards.iter().all(|shard| shard["lag_records"] == 0))
            })
        }))
    }
}

fn read_key(server: &SpawnedServer) -> Result<String> {
    let path = server.data_path().join("credentials.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)?;
    value["read_key"]
        .as_str()
        .map(str::to_owned)
        .context("credentials.json has no read_key")
}

async fn measure(
    args: &CompareArgs,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
    server: &SpawnedServer,
) -> Result<()> {
    let http = Http {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
        base: server.url.clone(),
        write: format!("Bearer {}", server.write_key),
        read: format!("Bearer {}", read_key(server)?),
    };
    let batch = args.batch as usize;
    let mut events = Batches::build(&data.customers, batch, ("[", ",", "]"), |customer, out| {
        formats::native_identify(customer, out)
    });
    let tracks = Batches::build(&data.events, batch, ("[", ",", "]"), |event, out| {
        formats::native_event(data, event, out)
    });
    events.bodies.extend(tracks.bodies);
    events.records += tracks.records;
    let points = Batches::build(&data.points, batch, ("[", ",", "]"), formats::native_point);
    let connections = args.connections as usize;

    let load_started = Instant::now();
    let loaded = post_all(
        &http.client,
        &format!("{}/v1/events", http.base),
        Some(&http.write),
        &events,
        connections,
    )
    .await?;
    let rate = loaded.rate(events.records);
    figures.record(Figure::IngestEvents, System::Shoal, round, rate);
    // Every acknowledged event is durable, so the log holds them all now.
    let log_dir = server.data_path().join("log");
    let event_bytes = procfs::dir_bytes(&log_dir)?;
    figures.record(
        Figure::BytesPerEvent,
        System::Shoal,
        round,
        event_bytes as f64 / events.records as f64,
    );
    let loaded_points = post_all(
        &http.client,
        &format!("{}/v1/metrics", http.base),
        Some(&http.write),
        &points,
        connections,
    )
    .await?;
    let point_rate = loaded_points.rate(points.records);
    figures.record(Figure::IngestPoints, System::Shoal, round, point_rate);
    let point_bytes = procfs::dir_bytes(&log_dir)?.saturating_sub(event_bytes);
    figures.record(
        Figure::LogBytesPerPoint,
        System::Shoal,
        round,
        point_bytes as f64 / points.records as f64,
    );
    let load_ended = Instant::now();
    while !http.caught_up().await? {
        if load_started.elapsed() > Duration::from_secs(1800) {
            bail!("the projections did not catch up within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught_up = load_ended.elapsed().as_secs_f64();
    figures.record(Figure::CaughtUp, System::Shoal, round, caught_up);
    println!(
        "shoal: {} events at {rate:.0}/s, {} points at {point_rate:.0}/s; read models caught up {caught_up:.1} s after",
        events.records, points.records
    );
    wait_for_search(&http, data).await?;
    // The search index merges its segments for seconds after it has caught up (a merge
    // thread at ~0.9 core: entity p99 2.2–3.7 ms instead of ~0.5 ms, BENCHMARKS.md Session 11).
    // Queries are timed at rest, as PostgreSQL's are after its COPY.
    let settled = settle(server.pid()).await?;
    println!("shoal: background work settled {settled:.1} s after the search caught up");

    let mut rng = rand::rngs::StdRng::seed_from_u64(args.data.seed);
    let customers = data.customers.len();
    let entity = time_queries(args.queries, |_| {
        let path = format!(
            "/v1/entities/{}",
            data.customers[rng.random_range(0..customers)].id
        );
        let http = &http;
        async move { http.get(&path).await.map(drop) }
    })
    .await?;
    figures.latency(
        Figure::EntityP50,
        Figure::EntityP99,
        System::Shoal,
        round,
        &entity,
    );
    let list = time_queries(args.queries, |n| {
        let plan = crate::workload::PLANS[n as usize % crate::workload::PLANS.len()];
        let path = format!("/v1/entities?limit=50&trait.plan={plan}");
        let http = &http;
        async move { http.get(&path).await.map(drop) }
    })
    .await?;
    figures.latency(
        Figure::ListP50,
        Figure::ListP99,
        System::Shoal,
        round,
        &list,
    );
    let day = data.spec.metrics_day;
    let to = day + DAY - 1;
    let series = time_queries(args.queries, |_| {
        let host = Dataset::series_name(rng.random_range(0..data.spec.series));
        let path =
            format!("/v1/series?series=cpu%7Bhost%3D{host}%7D&from={day}&to={to}&step=1m&agg=avg");
        let http = &http;
        async move { http.get(&path).await.map(drop) }
    })
    .await?;
    figures.latency(
        Figure::SeriesP50,
        Figure::SeriesP99,
        System::Shoal,
        round,
        &series,
    );
    let aggregate = time_queries(args.aggregate_queries(), |_| {
        let path = format!("/v1/series?metric=cpu&from={day}&to={to}&step=1h&agg=avg&combine=sum");
        let http = &http;
        async move { http.get(&path).await.map(drop) }
    })
    .await?;
    figures.latency(
        Figure::AggregateP50,
        Figure::AggregateP99,
        System::Shoal,
        round,
        &aggregate,
    );
    let window = time_queries(args.aggregate_queries(), |n| {
        let name = NAMES[n as usize % 10];
        let path = format!("/v1/entities?event={name}&min=1&window_days=7&limit=50");
        let http = &http;
        async move { http.get(&path).await.map(drop) }
    })
    .await?;
    figures.latency(
        Figure::WindowP50,
        Figure::WindowP99,
        System::Shoal,
        round,
        &window,
    );
    let mut words = rand::rngs::StdRng::seed_from_u64(args.data.seed + 9);
    let search = time_queries(args.queries, |_| {
        let (first, second) = crate::dataset::search_terms(&mut words);
        let path = format!("/v1/search?q={first}%20{second}&type=event&limit=10");
        let http = &http;
        async move { http.get(&path).await.map(drop) }
    })
    .await?;
    figures.latency(
        Figure::SearchP50,
        Figure::SearchP99,
        System::Shoal,
        round,
        &search,
    );

    // One series, created before the timed probes: a new point of an existing series, as for
    // the peers.
    let name = format!("probe-{}", probe_name(round, 0));
    fresh_point(&http, &name, 0.0).await?;
    let fresh = time_queries(args.fresh_samples, |sample| {
        let (http, name) = (&http, &name);
        async move { fresh_point(http, name, f64::from(sample + 1)).await }
    })
    .await?;
    figures.latency(
        Figure::FreshP50,
        Figure::FreshP99,
        System::Shoal,
        round,
        &fresh,
    );
    println!(
        "shoal: entity p99 {:.2} ms, series p99 {:.2} ms, aggregate p99 {:.2} ms, search p99 {:.2} ms, fresh p99 {:.1} ms",
        super::figures::ms(&entity, 0.99),
        super::figures::ms(&series, 0.99),
        super::figures::ms(&aggregate, 0.99),
        super::figures::ms(&search, 0.99),
        super::figures::ms(&fresh, 0.99)
    );
    Ok(())
}

/// Waits until the search index holds every `page_viewed` event (the commonest name, so its
/// last occurrences are near the end of every shard).
/// Waits until the server uses under a tenth of a core over one second; the seconds waited.
async fn settle(pid: u32) -> Result<f64> {
    let started = Instant::now();
    loop {
        let before = procfs::cpu_time(Some(pid));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = procfs::cpu_time(Some(pid));
        if let (Some(before), Some(after)) = (before, after)
            && after.saturating_sub(before) < Duration::from_millis(100)
        {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the server was still busy 5 minutes after the search caught up");
        }
    }
}

async fn wait_for_search(http: &Http, data: &Dataset) -> Result<()> {
    let expected = data.events.iter().filter(|e| e.name == NAMES[0]).count() as u64;
    let started = Instant::now();
    loop {
        let body = http
            .get_json(&format!(
                "/v1/search?q=name:{}&type=event&exact_total=true&limit=1",
                NAMES[0]
            ))
            .await?;
        if body["total"].as_u64() >= Some(expected) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the search index did not catch up within 30 minutes ({body})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts one point valued `value` now and polls the series (`agg=last` of 1-minute buckets)
/// until a bucket holds it.
async fn fresh_point(http: &Http, name: &str, value: f64) -> Result<()> {
    let now = shoal_schemas::time::now_millis();
    let body = format!(r#"[{{"name":"fresh","host":"{name}","timestamp":{now},"value":{value}}}]"#);
    let response = http
        .client
        .post(format!("{}/v1/metrics", http.base))
        .header(reqwest::header::AUTHORIZATION, &http.write)
        .body(body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("probe write answered {}", response.status());
    }
    let path = format!(
        "/v1/series?series=fresh%7Bhost%3D{name}%7D&from={}&to={}&step=1m&agg=last",
        now - MINUTE,
        now + MINUTE
    );
    let started = Instant::now();
    loop {
        let answer = http
            .client
            .get(format!("{}{path}", http.base))
            .header(reqwest::header::AUTHORIZATION, &http.read)
            .send()
            .await?;
        if answer.status().is_success() {
            let body: Value = answer.json().await?;
            let found = body["series"][0]["points"]
                .as_array()
                .is_some_and(|points| points.iter().any(|point| point[1].as_f64() == Some(value)));
            if found {
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("probe {name} = {value} not readable within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Replays the stopped server's log into fresh tables, in this process.
async fn reproject(
    args: &CompareArgs,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
    log_dir: &std::path::Path,
) -> Result<()> {
    let dir = super::process::temp_dir(&args.dir, "shoal-reproject-")?;
    let log_path = log_dir.to_owned();
    let embedded = Arc::new(
        tokio::task::spawn_blocking(move || EmbeddedLog::open(LogConfig::new(log_path))).await??,
    );
    let log: Arc<dyn EventLog> = embedded.clone();
    let config = shoal_projector::ProjectorConfig::default();
    let tables: Arc<dyn Table> = Arc::new(EmbeddedTables::open(&dir.path().join("all.redb"))?);
    let crate::reproject::Replayed {
        applied,
        elapsed,
        cpu,
    } = crate::reproject::replay(
        &log,
        &tables,
        shoal_projector::default_projections(log.as_ref()),
        &config,
    )
    .await?;
    figures.record(Figure::Reprojection, System::Shoal, round, elapsed);
    figures.record(
        Figure::Projection,
        System::Shoal,
        round,
        applied as f64 / elapsed,
    );
    figures.record(
        Figure::ProjectionPerCpu,
        System::Shoal,
        round,
        applied as f64 / cpu.max(1e-9),
    );
    println!(
        "shoal: re-projection of {applied} log records (archive, series, entities; no search) in {elapsed:.1} s, {cpu:.1} CPU-s"
    );
    drop(tables);
    // The series projection alone, to size its table per point.
    let series_path = dir.path().join("series.redb");
    let series_tables: Arc<dyn Table> = Arc::new(EmbeddedTables::open(&series_path)?);
    let series: Vec<Arc<dyn shoal_projector::Projection>> =
        vec![Arc::new(shoal_projector::series::Series)];
    shoal_projector::catch_up(log.clone(), series_tables.clone(), &series, &config).await?;
    drop(series_tables);
    // redb grows its file by doubling (below its 4 GiB region) with `set_len`, so the length
    // counts holes never written; the allocated blocks are what the disk holds.
    figures.series_sizes(
        System::Shoal,
        round,
        procfs::Sizes::of(&std::fs::metadata(&series_path)?),
        data.points.len(),
    );
    drop(log);
    embedded.shutdown().await;
    Ok(())
}

/// The ingest bench's single-event scenario: 64 connections, one event a request.
fn single_events(
    runtime: &tokio::runtime::Runtime,
    args: &CompareArgs,
    round: u32,
    figures: &mut Figures,
) -> Result<Duration> {
    let ingest = IngestArgs {
        url: None,
        key: None,
        spawn: Some(args.spawn.clone()),
        server_config: args.server_config.clone(),
        data_dir: None,
        keep_data: false,
        connections: 64,
        batch: 1,
        duration: args.single_duration,
        warmup: Duration::from_secs(1),
        rate: 0,
        event_bytes: 200,
        entities: 100_000,
        client_ids: true,
        server_pid: None,
        seed: args.data.seed,
        threads: 1,
        request_timeout: Duration::from_secs(30),
        repeat: 1,
        json: false,
    };
    let report = crate::ingest::single_round(runtime, &ingest)?;
    figures.record(
        Figure::IngestSingle,
        System::Shoal,
        round,
        report.events_per_second,
    );
    figures.record(
        Figure::IngestSingleP99,
        System::Shoal,
        round,
        report.latency_ms.p99,
    );
    println!(
        "shoal: single events, 64 connections: {:.0} events/s, p99 {:.2} ms",
        report.events_per_second, report.latency_ms.p99
    );
    Ok(Duration::from_secs_f64(
        report.server_cores.unwrap_or(0.0) * report.measured_seconds,
    ))
}
