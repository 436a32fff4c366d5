//! The read side over HTTP against a release server it starts itself: query latency of the
//! shapes dashboards use, and the time from an acknowledged write to a readable read model
//! while ingest runs.
//!
//! Data: `--entities` customers with `--events-per-entity` events each (5 event names, a plan
//! trait), and `--series` metric series of one UTC day at one point a minute, after
//! `--history-days` days at one point every 30 minutes. Then, one request
//! at a time over one keep-alive connection (the latency of a request, not of a queue):
//! - one entity (`GET /v1/entities/{id}`, a random customer);
//! - an entity list page (`GET /v1/entities?limit=50`, with a random `trait.plan` filter);
//! - a page of one entity's raw events (`GET /v1/entities/{id}/events?limit=50`, newest first);
//! - one series over the day at 1-minute steps (`GET /v1/series?series=…&step=1m`);
//! - the day aggregated over every series (`GET /v1/series?metric=…&step=1h&combine=sum`).
//!
//! Then ingest→queryable: while `--load-connections` send batches at `--load-rate` events/s
//! (each connection's events for its own 1,000 customers, stamped with the time they are sent),
//! a probe writes one event for a fresh customer and polls `GET /v1/entities/{id}` every
//! millisecond until it answers 200.
//! Latencies are measured by this client over loopback (HTTP included). Beside them, the
//! server's CPU time per request of each shape (user + system, from `/proc`; it also holds the
//! projector's and canary's background work, which is small once caught up), a steadier figure
//! than latency on a shared machine. With `--profile-dir`, each shape is also sampled by
//! `perf record` (cpu-clock, DWARF call graphs) into `<dir>/<shape>.perf.data`.

use crate::cli::QueryArgs;
use crate::server::SpawnedServer;
use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000;
const MINUTE: i64 = 60_000;

pub fn run(args: &QueryArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    let mut server = SpawnedServer::start(&args.spawn, args.server_config.as_deref())?;
    let read_key = read_key(&server)?;
    let outcome = runtime.block_on(measure(args, &server, &read_key));
    server.stop()?;
    outcome
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

struct Client {
    http: reqwest::Client,
    base: String,
    write: String,
    read: String,
}

impl Client {
    async fn post(&self, path: &str, body: &Value) -> Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.write)
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() || answer["rejected"] != 0 {
            bail!("{path}: {status} {answer}");
        }
        Ok(())
    }

    /// GETs `path`; the status.
    async fn get(&self, path: &str) -> Result<reqwest::StatusCode> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.read)
            .send()
            .await?;
        let status = response.status();
        // Read the whole body: the latency of an answer, not of its headers.
        response.bytes().await?;
        Ok(status)
    }

    /// Whether every projection has applied at least `events` events and reached the log's
    /// head. A backend that cannot count the records behind (Kinesis: `lag_records` is null)
    /// is judged by `reached_head` and the count alone.
    async fn caught_up(&self, events: u64) -> Result<bool> {
        let response = self
            .http
            .get(format!("{}/v1/projections", self.base))
            .bearer_auth(&self.read)
            .send()
            .await?;
        let body: Value = response.json().await?;
        let count = |shard: &Value, field: &str| shard[field].as_u64().unwrap_or(0);
        Ok(body["projections"].as_array().is_some_and(|projections| {
            projections.iter().all(|projection| {
                projection["shards"].as_array().is_some_and(|shards| {
                    let applied: u64 = shards
                        .iter()
                        .map(|shard| count(shard, "events_applied") + count(shard, "dead_letters"))
                        .sum();
                    applied >= events
                        && shards.iter().all(|shard| match &shard["lag_records"] {
                            Value::Null => shard["reached_head"] == true,
                            lag => *lag == 0,
                        })
                })
            })
        }))
    }
}

async fn measure(args: &QueryArgs, server: &SpawnedServer, read_key: &str) -> Result<()> {
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: server.url.clone(),
        write: server.write_key.clone(),
        read: read_key.to_owned(),
    };
    let now = shoal_schemas::time::now_millis();
    let day = (now / DAY - 2) * DAY;
    let loading = Instant::now();
    load_entities(&client, args, now).await?;
    load_series(&client, args, day).await?;
    let loaded = loading.elapsed();
    let points = u64::from(args.series) * (1440 + u64::from(args.history_days) * 48);
    // Each customer's identify event, then its track events.
    let events = u64::from(args.entities) * (u64::from(args.events_per_entity) + 1);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !client.caught_up(events + points).await? {
        if Instant::now() > deadline {
            bail!("the projections did not catch up within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "loaded {} events and {} points in {:.1} s; projections caught up after {:.1} s",
        args.entities * args.events_per_entity,
        points,
        loaded.as_secs_f64(),
        loading.elapsed().as_secs_f64()
    );

    let shapes = Shapes {
        server_pid: server.pid(),
        profile_dir: args.profile_dir.clone(),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut rows = Vec::new();
    let entity = shapes
        .time("entity", args.queries, || {
            let id = rng.random_range(0..args.entities);
            let path = format!("/v1/entities/customer-{id}");
            let client = &client;
            async move { client.get(&path).await }
        })
        .await?;
    rows.push(("one entity", entity));
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed + 1);
    let list = shapes
        .time("list", args.queries, || {
            let plan = ["free", "pro", "enterprise"][rng.random_range(0..3)];
            let path = format!("/v1/entities?limit=50&trait.plan={plan}");
            let client = &client;
            async move { client.get(&path).await }
        })
        .await?;
    rows.push(("entity list page (50, trait filter)", list));
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed + 3);
    let raw = shapes
        .time("events", args.queries, || {
            let id = rng.random_range(0..args.entities);
            let path = format!("/v1/entities/customer-{id}/events?limit=50");
            let client = &client;
            async move { client.get(&path).await }
        })
        .await?;
    rows.push(("one entity's raw events, a page of 50", raw));
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed + 2);
    let to = day + DAY - 1;
    let series = shapes
        .time("series", args.queries, || {
            let host = rng.random_range(0..args.series);
            let path = format!(
                "/v1/series?series=cpu%7Bhost%3Dh{host}%7D&from={day}&to={to}&step=1m&agg=avg"
            );
            let client = &client;
            async move { client.get(&path).await }
        })
        .await?;
    rows.push(("one series, one day at 1 min", series));
    let aggregate = shapes
        .time("aggregate", args.queries.min(200), || {
            let path =
                format!("/v1/series?metric=cpu&from={day}&to={to}&step=1h&agg=avg&combine=sum");
            let client = &client;
            async move { client.get(&path).await }
        })
        .await?;
    rows.push(("one day, hourly, summed over every series", aggregate));
    print_rows(&rows);
    let fresh = ingest_to_queryable(&client, args, now).await?;
    print_rows(&[("ingest → queryable, under load", (fresh, None))]);
    Ok(())
}

/// A shape's latencies (µs) and the server's CPU time per request (µs), when known.
type Timed = (Histogram<u64>, Option<f64>);

fn print_rows(rows: &[(&str, Timed)]) {
    println!("\n| query | requests | p50 ms | p99 ms | max ms | server CPU µs/request |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, (histogram, cpu)) in rows {
        let cpu = cpu.map_or_else(|| "—".to_owned(), |micros| format!("{micros:.0}"));
        println!(
            "| {name} | {} | {:.3} | {:.3} | {:.3} | {cpu} |",
            histogram.len(),
            histogram.value_at_quantile(0.5) as f64 / 1000.0,
            histogram.value_at_quantile(0.99) as f64 / 1000.0,
            histogram.max() as f64 / 1000.0
        );
    }
}

/// How each shape is timed: the server's CPU time around it, and optionally a profile.
struct Shapes {
    server_pid: u32,
    profile_dir: Option<std::path::PathBuf>,
}

impl Shapes {
    async fn time<F, Fut>(&self, shape: &str, count: u32, make: F) -> Result<Timed>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::StatusCode>>,
    {
        let profiler = match &self.profile_dir {
            Some(dir) => Some(Profiler::start(dir, shape, self.server_pid).await?),
            None => None,
        };
        let cpu_before = crate::procfs::cpu_time(Some(self.server_pid));
        let histogram = time(count, make).await;
        let cpu_after = crate::procfs::cpu_time(Some(self.server_pid));
        if let Some(profiler) = profiler {
            profiler.stop()?;
        }
        let cpu = match (cpu_before, cpu_after) {
            (Some(before), Some(after)) => {
                Some(after.saturating_sub(before).as_secs_f64() * 1e6 / f64::from(count))
            }
            _ => None,
        };
        Ok((histogram?, cpu))
    }
}

/// `perf record` attached to the server for one shape.
struct Profiler {
    child: std::process::Child,
}

impl Profiler {
    async fn start(dir: &std::path::Path, shape: &str, pid: u32) -> Result<Profiler> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let output = dir.join(format!("{shape}.perf.data"));
        let child = std::process::Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "999",
                "--call-graph",
                "dwarf",
                "-p",
            ])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&output)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting perf (apt-get install linux-perf)")?;
        // perf needs a moment to attach to every thread.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Profiler { child })
    }

    /// SIGINT, as Ctrl-C would: perf then writes its file out and exits.
    fn stop(mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        self.child.wait().context("waiting for perf")?;
        Ok(())
    }
}

/// Times `count` requests made one after another; microseconds.
async fn time<F, Fut>(count: u32, mut make: F) -> Result<Histogram<u64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<reqwest::StatusCode>>,
{
    let mut histogram = Histogram::<u64>::new(3)?;
    for _ in 0..count {
        let started = Instant::now();
        let status = make().await?;
        if !status.is_success() {
            bail!("a timed query answered {status}");
        }
        histogram.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(histogram)
}

async fn load_entities(client: &Client, args: &QueryArgs, now: i64) -> Result<()> {
    let names = [
        "login",
        "report_viewed",
        "export",
        "invite",
        "billing_viewed",
    ];
    let mut batch = Vec::with_capacity(5000);
    for e in 0..args.entities {
        let plan = ["free", "pro", "enterprise"][(e % 3) as usize];
        batch.push(json!({"kind": "identify", "entity": format!("customer-{e}"), "timestamp": now - 40 * DAY, "traits": {"plan": plan}}));
        for n in 0..args.events_per_entity {
            let at = now - i64::from(n % 30) * DAY - i64::from(e % 1000) * 1000;
            batch.push(json!({"name": names[(n % 5) as usize], "entity": format!("customer-{e}"), "timestamp": at, "properties": {"seats": n % 7}}));
        }
        if batch.len() >= 5000 {
            client
                .post("/v1/events", &Value::from(std::mem::take(&mut batch)))
                .await?;
        }
    }
    if !batch.is_empty() {
        client.post("/v1/events", &Value::from(batch)).await?;
    }
    Ok(())
}

async fn load_series(client: &Client, args: &QueryArgs, day: i64) -> Result<()> {
    // Each point is the host's level plus where the point falls in its day: values that vary.
    let history = (0..i64::from(args.history_days) * 48)
        .rev()
        .map(|half_hour| {
            (
                day - (half_hour + 1) * 30 * MINUTE,
                (half_hour % 48) as f64 / 48.0,
            )
        });
    let today = (0..1440i64).map(|minute| (day + minute * MINUTE, minute as f64 / 1440.0));
    let mut batch = Vec::with_capacity(10_000);
    for (at, shape) in history.chain(today) {
        for host in 0..args.series {
            batch.push(json!({"name": "cpu", "host": format!("h{host}"), "timestamp": at, "value": f64::from(host % 100) + shape}));
            if batch.len() >= 10_000 {
                client
                    .post("/v1/metrics", &Value::from(std::mem::take(&mut batch)))
                    .await?;
            }
        }
    }
    if !batch.is_empty() {
        client.post("/v1/metrics", &Value::from(batch)).await?;
    }
    Ok(())
}

/// The write-to-readable latency of single events while other connections keep ingesting.
async fn ingest_to_queryable(
    client: &Client,
    args: &QueryArgs,
    now: i64,
) -> Result<Histogram<u64>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for connection in 0..args.load_connections {
        let (http, base, write) = (
            client.http.clone(),
            client.base.clone(),
            client.write.clone(),
        );
        let stop = stop.clone();
        let batch_size = args.load_batch;
        // Paced: a load above what the projector applies would make every probe wait behind
        // an ever-growing backlog, measuring the backlog rather than the pipeline.
        let per_connection = f64::from(args.load_rate) / f64::from(args.load_connections);
        let every = Duration::from_secs_f64(f64::from(batch_size) / per_connection.max(1.0));
        load.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(every);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                // The time of sending, as live traffic carries: each event moves its customer's
                // last-seen, and so its entry in the entity list's index (a delete and a put).
                let at = shoal_schemas::time::now_millis();
                let events: Vec<Value> = (0..batch_size)
                    .map(|i| json!({"name": "load", "entity": format!("load-{connection}-{}", i % 1000), "timestamp": at}))
                    .collect();
                let answer = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&write)
                    .body(Value::from(events).to_string())
                    .send()
                    .await;
                if answer.is_err() {
                    break;
                }
                sent += u64::from(batch_size);
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut histogram = Histogram::<u64>::new(3)?;
    let started_load = Instant::now();
    for probe in 0..args.fresh_samples {
        let entity = format!("fresh-{probe}");
        let started = Instant::now();
        client
            .post(
                "/v1/events",
                &json!([{"name": "probe", "entity": entity, "timestamp": now}]),
            )
            .await?;
        loop {
            if client
                .get(&format!("/v1/entities/{entity}"))
                .await?
                .is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("probe {probe} not readable within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        histogram.record(started.elapsed().as_micros() as u64)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for task in load {
        sent += task.await.unwrap_or(0);
    }
    println!(
        "background load during the probes: {:.0} events/s",
        sent as f64 / started_load.elapsed().as_secs_f64()
    );
    Ok(histogram)
}
