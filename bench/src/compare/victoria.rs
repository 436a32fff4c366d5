//! VictoriaMetrics' side: the single-node binary on a free loopback port with a temporary
//! `-storageDataPath`, loaded with the same points as Prometheus text over
//! `/api/v1/import/prometheus` (acknowledged once in memory, before any fsync), asked the same
//! series queries over `/api/v1/query_range`; ingest→queryable polls `/api/v1/export` for a
//! new point of an existing series. Started with `-search.disableCache` (the
//! aggregate asks the same range each time; a cache hit would time the cache, not the store)
//! and `-search.latencyOffset=0s` (by default the last 30 s are hidden from queries, which would
//! make ingest→queryable 30 s by construction). Bytes on disk are read after a graceful stop,
//! which flushes every buffer.

use super::figures::{Figure, Figures, System};
use super::load::{Batches, get_ok, post_all, time_queries};
use super::probe_name;
use super::process::{Peer, free_port, temp_dir, wait_until};
use crate::cli::CompareArgs;
use crate::dataset::{DAY, Dataset, formats};
use crate::procfs;
use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use std::process::Command;
use std::time::{Duration, Instant};

pub async fn round(
    args: &CompareArgs,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
) -> Result<Duration> {
    let port = free_port()?;
    let dir = temp_dir(&args.dir, "victoria-metrics-")?;
    let mut command = Command::new(&args.victoria_metrics);
    command
        .arg(format!(
            "-storageDataPath={}",
            dir.path().join("data").display()
        ))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=1y")
        .arg("-search.disableCache")
        .arg("-search.latencyOffset=0s");
    let mut peer = Peer::start("victoria-metrics", command, dir)?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let health = format!("{base}/health");
    let started = wait_until("victoria-metrics", Duration::from_secs(30), || {
        let (client, health) = (&client, &health);
        async move { get_ok(client, health, None).await.is_ok() }
    })
    .await;
    if started.is_err() {
        peer.check_alive()?;
        bail!(
            "victoria-metrics did not answer /health:\n{}",
            peer.output_tail()
        );
    }
    let pid = peer.pid();
    let outcome = measure(args, data, round, figures, &client, &base, pid).await;
    let cpu = procfs::cpu_time(Some(pid)).unwrap_or_default();
    if let Some(peak) = procfs::proc_status_bytes(pid, "VmHWM") {
        figures.record(Figure::PeakRss, System::Victoria, round, peak as f64 / 1e6);
    }
    peer.stop(Duration::from_secs(30))?;
    outcome?;
    figures.series_sizes(
        System::Victoria,
        round,
        procfs::dir_sizes(&peer.path().join("data"))?,
        data.points.len(),
    );
    Ok(cpu)
}

async fn measure(
    args: &CompareArgs,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
    client: &reqwest::Client,
    base: &str,
    pid: u32,
) -> Result<()> {
    let points = Batches::build(
        &data.points,
        args.batch as usize,
        ("", "", ""),
        formats::prometheus,
    );
    let cpu_before = procfs::cpu_time(Some(pid)).unwrap_or_default();
    let loaded = post_all(
        client,
        &format!("{base}/api/v1/import/prometheus"),
        None,
        &points,
        args.connections as usize,
    )
    .await?;
    let cpu = procfs::cpu_time(Some(pid))
        .unwrap_or_default()
        .saturating_sub(cpu_before)
        .as_secs_f64();
    let rate = loaded.rate(points.records);
    figures.record(Figure::IngestPoints, System::Victoria, round, rate);
    figures.record(Figure::IngestEvents, System::Victoria, round, rate);
    if cpu > 0.0 {
        figures.record(
            Figure::ProjectionPerCpu,
            System::Victoria,
            round,
            points.records as f64 / cpu,
        );
    }
    println!(
        "victoria-metrics: {} points at {rate:.0}/s ({cpu:.1} CPU-s)",
        points.records
    );

    // Imported points become searchable after an in-memory flush (about a second): wait until
    // the last minute of every series answers.
    let day = data.spec.metrics_day;
    let to = day + DAY - 1;
    let last = day + i64::from(data.spec.points.saturating_sub(1)) * crate::dataset::MINUTE;
    let count_url = format!(
        "{base}/api/v1/query?query=count(cpu)&time={}",
        last as f64 / 1000.0
    );
    let expected = f64::from(data.spec.series);
    wait_until("victoria-metrics search", Duration::from_secs(120), || {
        let (client, url) = (client, &count_url);
        async move {
            let Ok(body) = get_ok(client, url, None).await else {
                return false;
            };
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            value["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|text| text.parse::<f64>().ok())
                .is_some_and(|count| count >= expected)
        }
    })
    .await?;

    let (start, end) = (day as f64 / 1000.0, to as f64 / 1000.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.data.seed + 2);
    let series = time_queries(args.queries, |_| {
        let host = Dataset::series_name(rng.random_range(0..data.spec.series));
        let url = format!(
            "{base}/api/v1/query_range?query=cpu%7Bhost%3D%22{host}%22%7D&start={start}&end={end}&step=60"
        );
        async move { get_ok(client, &url, None).await.map(drop) }
    })
    .await?;
    figures.latency(
        Figure::SeriesP50,
        Figure::SeriesP99,
        System::Victoria,
        round,
        &series,
    );
    let aggregate_url = format!(
        "{base}/api/v1/query_range?query=sum(avg_over_time(cpu%5B1h%5D))&start={}&end={end}&step=3600",
        start + 3600.0
    );
    let aggregate = time_queries(args.aggregate_queries(), |_| {
        let url = &aggregate_url;
        async move { get_ok(client, url, None).await.map(drop) }
    })
    .await?;
    figures.latency(
        Figure::AggregateP50,
        Figure::AggregateP99,
        System::Victoria,
        round,
        &aggregate,
    );

    // One series, created (and waited for) before the timed probes: a new point of an
    // existing series is the common case, and a new series takes VictoriaMetrics up to ~10 s
    // to index (seen in a trial run).
    let name = format!("probe-{}", probe_name(round, 0));
    fresh_point(client, base, &name).await?;
    let fresh = time_queries(args.fresh_samples, |_| {
        let name = &name;
        async move { fresh_point(client, base, name).await }
    })
    .await?;
    figures.latency(
        Figure::FreshP50,
        Figure::FreshP99,
        System::Victoria,
        round,
        &fresh,
    );
    println!(
        "victoria-metrics: series p99 {:.2} ms, aggregate p99 {:.2} ms, fresh p50 {:.1} ms p99 {:.1} ms",
        super::figures::ms(&series, 0.99),
        super::figures::ms(&aggregate, 0.99),
        super::figures::ms(&fresh, 0.5),
        super::figures::ms(&fresh, 0.99)
    );
    Ok(())
}

/// Imports one point of the probe series now and polls `/api/v1/export` until that point is
/// there.
async fn fresh_point(client: &reqwest::Client, base: &str, name: &str) -> Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let response = client
        .post(format!("{base}/api/v1/import/prometheus"))
        .body(format!("fresh{{host=\"{name}\"}} 1 {now}\n"))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("probe import answered {}", response.status());
    }
    let url = format!(
        "{base}/api/v1/export?match%5B%5D=fresh%7Bhost%3D%22{name}%22%7D&start={}",
        (now - 60_000) as f64 / 1000.0
    );
    let stamp = now.to_string();
    let started = Instant::now();
    loop {
        let body = get_ok(client, &url, None).await?;
        if String::from_utf8_lossy(&body).contains(&stamp) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("probe {name} not readable within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
