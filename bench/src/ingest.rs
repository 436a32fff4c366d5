//! `shoal-bench ingest`: build the bodies once, then for each run start the server (with
//! `--spawn`), load it from N connections for warm-up + duration, measure it from outside, stop
//! it, and print the figures; medians at the end when repeating.

use crate::cli::IngestArgs;
use crate::client::{self, Plan, Target};
use crate::ids::IdStamper;
use crate::procfs;
use crate::report::{Medians, Outside, RunReport};
use crate::server::SpawnedServer;
use crate::stats::Stats;
use crate::workload::{self, Bodies, WorkloadSpec};
use anyhow::{Context, Result, bail};
use hyper::header::HeaderValue;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const EVENTS_PATH: &str = "/v1/events";
/// Slack on top of the run's own bounds before the whole run is abandoned.
const JOIN_SLACK: Duration = Duration::from_secs(10);

pub fn run(args: &IngestArgs) -> Result<()> {
    if args.spawn.is_none() && args.key.is_none() {
        bail!("--url needs --key (or SHOAL_WRITE_KEY)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    let spec = WorkloadSpec {
        seed: args.seed,
        event_bytes: args.event_bytes as usize,
        entities: args.entities,
        now_millis: chrono::Utc::now().timestamp_millis(),
        client_ids: args.client_ids,
    };
    let built = workload::bodies(&spec, args.batch);
    let mean_event_bytes = built.mean_event_bytes();
    println!(
        "workload: {} distinct bodies of {} events (seed {}), {:.0} bytes of JSON per event, {} customers, {}",
        built.bodies.len(),
        built.events_per_body,
        args.seed,
        mean_event_bytes,
        args.entities,
        if args.client_ids {
            "a fresh client id per event"
        } else {
            "no client ids"
        }
    );
    if let Some(period) = pace(args) {
        println!(
            "open loop: {} events/s, one request every {:.1} ms on each of {} connections",
            args.rate,
            period.as_secs_f64() * 1e3,
            args.connections
        );
    }
    let bodies = Arc::new(built);

    let mut reports = Vec::new();
    for run in 1..=args.repeat {
        let report = match &args.spawn {
            Some(binary) => spawned_run(&runtime, args, binary, &bodies, run, mean_event_bytes)?,
            None => attached_run(&runtime, args, &bodies, run, mean_event_bytes)?,
        };
        report.print(&format!("run {run}/{}", args.repeat));
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        reports.push(report);
    }
    if let Some(failed) = reports.iter().find(|report| report.events_accepted == 0) {
        bail!(
            "run {} stored no events ({})",
            failed.run,
            failed.first_problem.as_deref().unwrap_or("no answer")
        );
    }
    if reports.len() > 1 {
        let medians = Medians::of(&reports);
        medians.print();
        if args.json {
            println!("{}", serde_json::to_string(&medians)?);
        }
    }
    Ok(())
}

/// One run on a fresh spawned server, its report not printed: for `compare`.
pub fn single_round(runtime: &tokio::runtime::Runtime, args: &IngestArgs) -> Result<RunReport> {
    let Some(binary) = &args.spawn else {
        bail!("single_round needs a server binary to spawn");
    };
    let spec = WorkloadSpec {
        seed: args.seed,
        event_bytes: args.event_bytes as usize,
        entities: args.entities,
        now_millis: chrono::Utc::now().timestamp_millis(),
        client_ids: args.client_ids,
    };
    let built = workload::bodies(&spec, args.batch);
    let mean_event_bytes = built.mean_event_bytes();
    spawned_run(runtime, args, binary, &Arc::new(built), 1, mean_event_bytes)
}

fn spawned_run(
    runtime: &tokio::runtime::Runtime,
    args: &IngestArgs,
    binary: &std::path::Path,
    bodies: &Arc<Bodies>,
    run: u32,
    mean_event_bytes: f64,
) -> Result<RunReport> {
    let mut server = SpawnedServer::start(binary, args.server_config.as_deref())?;
    let target = Arc::new(target(&server.url, &server.write_key)?);
    let pid = server.pid();
    let (stats, mut outside, window) =
        runtime.block_on(load(target, Arc::clone(bodies), args, Some(pid)))?;
    outside.peak_rss_bytes = procfs::proc_status_bytes(pid, "VmHWM");
    server.stop()?;
    // Measured after the stop: a running log keeps zeros written ahead of its frames in each
    // shard's active segment, which a graceful stop cuts off; the frames are the log's size.
    outside.log_bytes = procfs::dir_bytes(&server.data_path().join("log")).ok();
    if args.keep_data {
        println!(
            "kept the server's directory: {}",
            server.keep_data().display()
        );
    }
    Ok(RunReport::new(
        run,
        args.connections,
        args.batch,
        mean_event_bytes,
        window,
        &stats,
        outside,
    ))
}

fn attached_run(
    runtime: &tokio::runtime::Runtime,
    args: &IngestArgs,
    bodies: &Arc<Bodies>,
    run: u32,
    mean_event_bytes: f64,
) -> Result<RunReport> {
    let (Some(url), Some(key)) = (&args.url, &args.key) else {
        bail!("--url needs --key (or SHOAL_WRITE_KEY)");
    };
    let target = Arc::new(target(url, key)?);
    let pid = args.server_pid;
    let (stats, mut outside, window) =
        runtime.block_on(load(target, Arc::clone(bodies), args, pid))?;
    if let Some(dir) = &args.data_dir {
        let log = dir.join("log");
        outside.log_bytes =
            Some(procfs::dir_bytes(&log).with_context(|| format!("measuring {}", log.display()))?);
    }
    outside.peak_rss_bytes = pid.and_then(|pid| procfs::proc_status_bytes(pid, "VmHWM"));
    Ok(RunReport::new(
        run,
        args.connections,
        args.batch,
        mean_event_bytes,
        window,
        &stats,
        outside,
    ))
}

/// Resolves `http://host:port` once, so connecting costs no lookups.
fn target(url: &str, key: &str) -> Result<Target> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("`{url}`: only http:// URLs are supported");
    }
    if !matches!(uri.path(), "" | "/") {
        bail!("`{url}`: give the server's base URL, without a path");
    }
    let Some(host) = uri.host() else {
        bail!("`{url}` has no host");
    };
    let port = uri.port_u16().unwrap_or(80);
    let address = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))?;
    Ok(Target {
        address,
        host: HeaderValue::from_str(&format!("{host}:{port}"))
            .with_context(|| format!("`{host}` is not a valid Host header"))?,
        authorization: HeaderValue::from_str(&format!("Bearer {key}"))
            .context("the key is not a valid header value")?,
        path: EVENTS_PATH,
    })
}

/// Runs every connection for warm-up + duration; samples CPU times at the window's edges.
async fn load(
    target: Arc<Target>,
    bodies: Arc<Bodies>,
    args: &IngestArgs,
    server_pid: Option<u32>,
) -> Result<(Stats, Outside, Duration)> {
    let start = Instant::now();
    let plan = Plan {
        measure_from: start + args.warmup,
        deadline: start + args.warmup + args.duration,
        request_timeout: args.request_timeout,
        pace: pace(args),
    };
    let connections = args.connections as usize;
    // Distinct per run, so ids never repeat against a long-running server either.
    let nonce = (chrono::Utc::now().timestamp_micros() as u64 ^ args.seed) as u32;
    let mut tasks = Vec::with_capacity(connections);
    for index in 0..connections {
        let first = index * bodies.bodies.len() / connections;
        tasks.push(tokio::spawn(client::run_connection(
            Arc::clone(&target),
            Arc::clone(&bodies),
            first,
            IdStamper::new(nonce, index as u16),
            plan,
        )));
    }

    tokio::time::sleep_until(plan.measure_from).await;
    let server_before = server_pid.and_then(|pid| procfs::cpu_time(Some(pid)));
    let generator_before = procfs::cpu_time(None);
    let machine_before = procfs::machine_ticks();
    tokio::time::sleep_until(plan.deadline).await;
    let server_after = server_pid.and_then(|pid| procfs::cpu_time(Some(pid)));
    let generator_after = procfs::cpu_time(None);
    let machine_after = procfs::machine_ticks();

    let mut total = Stats::new();
    let join_by = plan.deadline + plan.request_timeout + JOIN_SLACK;
    for task in tasks {
        match tokio::time::timeout_at(join_by, task).await {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(error)) => bail!("a connection task failed: {error}"),
            Err(_) => bail!("connections still busy {JOIN_SLACK:?} after their own time limit"),
        }
    }
    let outside = Outside {
        server_cpu: difference(server_before, server_after),
        generator_cpu: difference(generator_before, generator_after),
        machine_busy: procfs::machine_busy(machine_before, machine_after),
        log_bytes: None,
        peak_rss_bytes: None,
    };
    Ok((total, outside, args.duration))
}

fn difference(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}

/// The open loop's period per connection (`None`: closed loop): `rate` events/s over all
/// connections, `batch` events per request.
fn pace(args: &IngestArgs) -> Option<Duration> {
    period(args.rate, args.batch, args.connections)
}

fn period(rate: u32, batch: u32, connections: u32) -> Option<Duration> {
    (rate > 0).then(|| {
        Duration::from_secs_f64(f64::from(batch) * f64::from(connections) / f64::from(rate))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked() {
        let ok = target("http://127.0.0.1:8750", "k").unwrap();
        assert_eq!(ok.address.port(), 8750);
        assert_eq!(ok.host, "127.0.0.1:8750");
        assert_eq!(ok.authorization, "Bearer k");
        assert!(target("https://127.0.0.1:1", "k").is_err());
        assert!(target("http://127.0.0.1:1/v1", "k").is_err());
        assert!(target("not a url", "k").is_err());
        assert!(target("http://127.0.0.1:1", "bad\nkey").is_err());
    }

    #[test]
    fn the_open_loop_spreads_the_rate_over_connections() {
        assert_eq!(period(0, 1000, 4), None);
        assert_eq!(period(100_000, 1000, 4), Some(Duration::from_millis(40)));
        assert_eq!(period(25_000, 1000, 4), Some(Duration::from_millis(160)));
        assert_eq!(period(40_000, 1, 64), Some(Duration::from_micros(1600)));
    }
}
