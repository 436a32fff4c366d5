//! `shoal-bench log-append`: single-event durable appends straight into an embedded log, in
//! this process, from N concurrent appenders in a closed loop (append one event, wait for it to
//! be durable, append the next). It measures the log's group commit alone, without HTTP: what
//! the writer's fsync and linger settings do to events/s, latency and CPU per event.

use crate::cli::LogAppendArgs;
use crate::procfs;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use shoal_schemas::{Event, EventKind};
use shoal_storage::embedded::{EmbeddedLog, LogConfig, SyncMode};
use shoal_storage::{EventLog, NewEvent};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(args: &LogAppendArgs) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("shoal-bench-log-append-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a directory in {}", args.dir.display()))?;
    let mut config = LogConfig::new(dir.path().join("log"));
    config.shard_count = args.shards;
    config.sync = SyncMode::Always;
    config.dedup_capacity = 0;
    config.preallocate_bytes = args.preallocate_kib * 1024;
    config.group_commit_linger = Duration::from_micros(args.linger_micros);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let log = Arc::new(EmbeddedLog::open(config).context("opening the log")?);
    let duration = Duration::from_secs_f64(args.seconds);
    let (latencies, events, elapsed, cpu) = runtime.block_on(async {
        let cpu_before = procfs::cpu_time(None);
        let started = Instant::now();
        let deadline = started + duration;
        let mut tasks = Vec::new();
        for appender in 0..args.appenders {
            let log = Arc::clone(&log);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let event = sample_event(appender, n);
                    let sent = Instant::now();
                    log.append_with_origin(vec![NewEvent::server(event)])
                        .await?;
                    latencies.saturating_record(sent.elapsed().as_micros() as u64);
                    n += 1;
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for task in tasks {
            all.add(task.await??)?;
        }
        let elapsed = started.elapsed();
        let cpu = procfs::cpu_time(None)
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before));
        let events = all.len();
        log.shutdown().await;
        anyhow::Ok((all, events, elapsed, cpu))
    })?;
    let ms = |quantile: f64| latencies.value_at_quantile(quantile) as f64 / 1000.0;
    let cpu_micros = cpu.map_or(f64::NAN, |cpu| cpu.as_secs_f64() * 1e6 / events as f64);
    println!(
        "appenders {} shards {} preallocate {} KiB linger {} µs: {:.0} events/s, latency ms \
         p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}, {:.1} µs CPU/event",
        args.appenders,
        args.shards,
        args.preallocate_kib,
        args.linger_micros,
        events as f64 / elapsed.as_secs_f64(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        latencies.max() as f64 / 1000.0,
        cpu_micros
    );
    Ok(())
}

fn sample_event(appender: usize, n: u64) -> Event {
    let now = shoal_schemas::time::now_millis();
    Event {
        id: uuid::Uuid::now_v7(),
        tenant: "bench".to_owned(),
        kind: EventKind::Track,
        name: "page_viewed".to_owned(),
        entity: format!("cust-{:06}", (appender as u64 * 7919 + n) % 100_000),
        timestamp: now,
        received_at: now,
        properties: format!(
            r#"{{"path":"/docs/{n}","referrer":"google","duration_ms":{},"ua":"Mozilla/5.0 (X11; Linux x86_64)"}}"#,
            n % 5000
        ),
        value: None,
    }
}
