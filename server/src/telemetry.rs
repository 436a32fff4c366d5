//! Metrics: the Prometheus recorder every crate's `metrics::*!` calls feed, `GET /metrics`, the
//! HTTP latency layer, and the gauges read at scrape time (projection lag, process memory).
//!
//! Names follow `shoal_<subsystem>_<name>_<unit>`; labels are low-cardinality (route patterns,
//! outcome and reason codes, projection kinds, shard ids), never tenants, entities or keys.

use anyhow::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use shoal_projector::StatusSource;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latency buckets (seconds): from a cached read to a slow fsync under load.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Batch-size buckets (events).
const EVENTS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0,
];

/// What `/metrics` renders from.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    status: Option<StatusSource>,
}

impl Metrics {
    /// Installs the process-wide recorder (once per process) and starts its upkeep.
    pub fn install(status: Option<StatusSource>) -> anyhow::Result<Metrics> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .context("histogram buckets")?
            .set_buckets_for_metric(Matcher::Suffix("_events".into()), EVENTS)
            .context("histogram buckets")?
            .set_buckets_for_metric(Matcher::Suffix("_requests".into()), EVENTS)
            .context("histogram buckets")?
            .install_recorder()
            .context("installing the metrics recorder")?;
        describe();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            // Histograms drain their buffers here; without it they grow between scrapes.
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        Ok(Metrics { handle, status })
    }

    async fn render(&self) -> String {
        if let Some(status) = &self.status {
            refresh_projection_gauges(status).await;
        }
        if let Some(bytes) = resident_bytes() {
            metrics::gauge!("shoal_process_resident_memory_bytes").set(bytes as f64);
        }
        self.handle.render()
    }
}

/// `GET /metrics`, in the Prometheus text format.
pub async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render().await,
    )
        .into_response()
}

/// Times every request by its route pattern (`/v1/entities/:id`, not the id).
pub async fn track_requests(request: Request, next: Next) -> Response {
    // `/v1/entities/{id}` is labelled `/v1/entities/:id`: braces are valid inside a label
    // value, but some text-format parsers (prometheus-parse among them) drop such lines.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().replace('{', ":").replace('}', ""))
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::histogram!(
        "shoal_http_request_seconds",
        "route" => route,
        "method" => method,
        "status" => class
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// Lag per projection kind and shard (the worst instance of a kind), and rebuild progress.
async fn refresh_projection_gauges(status: &StatusSource) {
    let Ok(status) = status.status().await else {
        return;
    };
    let mut records: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
    let mut millis: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
    for projection in &status.projections {
        let label = shoal_projector::telemetry::label(&projection.name);
        for shard in &projection.shards {
            let key = (label, shard.checkpoint.shard.clone());
            if let Some(lag) = shard.lag_records {
                let worst = records.entry(key.clone()).or_default();
                *worst = (*worst).max(lag);
            }
            if let Some(lag) = shard.lag_ms {
                let worst = millis.entry(key).or_default();
                *worst = (*worst).max(lag);
            }
        }
        if let Some(progress) = &projection.progress
            && let Some(fraction) = progress.fraction_done
        {
            metrics::gauge!("shoal_projector_rebuild_fraction_done", "projection" => label)
                .set(fraction);
        }
    }
    for ((label, shard), lag) in records {
        metrics::gauge!("shoal_projector_lag_records", "projection" => label, "shard" => shard)
            .set(lag as f64);
    }
    for ((label, shard), lag) in millis {
        metrics::gauge!("shoal_projector_lag_seconds", "projection" => label, "shard" => shard)
            .set(lag as f64 / 1000.0);
    }
}

/// Resident memory from `/proc/self/statm` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|page| pages * page)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "shoal_ingest_requests_total",
        "Write requests by outcome (ok: reached the log; refused: rejected whole)"
    );
    describe_counter!(
        "shoal_ingest_events_total",
        Unit::Count,
        "Events of write requests by outcome"
    );
    describe_counter!(
        "shoal_ingest_received_bytes_total",
        Unit::Bytes,
        "Request body bytes that reached parsing"
    );
    describe_counter!(
        "shoal_ingest_rejects_total",
        "Rejected events and requests by reason code"
    );
    describe_counter!(
        "shoal_ingest_graphite_lines_total",
        Unit::Count,
        "Graphite plaintext lines by outcome (stored, duplicate, rejected, skipped_nan)"
    );
    describe_gauge!(
        "shoal_ingest_graphite_connections",
        Unit::Count,
        "Open Graphite plaintext connections"
    );
    describe_histogram!(
        "shoal_ingest_append_seconds",
        Unit::Seconds,
        "Time until a batch is durable in the log"
    );
    describe_histogram!(
        "shoal_ingest_append_batch_events",
        Unit::Count,
        "Events per append call"
    );
    describe_histogram!(
        "shoal_log_group_commit_events",
        Unit::Count,
        "Events covered by one group commit (one fsync)"
    );
    describe_histogram!(
        "shoal_log_group_commit_requests",
        Unit::Count,
        "Appends covered by one group commit"
    );
    describe_counter!(
        "shoal_projector_events_applied_total",
        Unit::Count,
        "Events applied to read models"
    );
    describe_counter!(
        "shoal_projector_batches_total",
        Unit::Count,
        "Batches flushed"
    );
    describe_counter!(
        "shoal_projector_dead_letters_total",
        Unit::Count,
        "Events dead-lettered"
    );
    describe_counter!(
        "shoal_projector_retries_total",
        Unit::Count,
        "Steps retried from the checkpoint"
    );
    describe_histogram!(
        "shoal_projector_flush_seconds",
        Unit::Seconds,
        "Time to commit one batch's writes and checkpoint"
    );
    describe_gauge!(
        "shoal_projector_lag_records",
        Unit::Count,
        "Events after the checkpoint (embedded log)"
    );
    describe_gauge!(
        "shoal_projector_lag_seconds",
        Unit::Seconds,
        "How far the checkpoint is behind the newest event, by receive time"
    );
    describe_gauge!(
        "shoal_projector_rebuild_fraction_done",
        "Share of the log a projection has replayed (embedded log)"
    );
    describe_histogram!(
        "shoal_http_request_seconds",
        Unit::Seconds,
        "HTTP request latency by route pattern"
    );
    describe_histogram!(
        "shoal_canary_latency_seconds",
        Unit::Seconds,
        "End to end: canary write until readable in the read models"
    );
    describe_counter!(
        "shoal_canary_failures_total",
        Unit::Count,
        "Canaries not readable within the timeout, or not written"
    );
    describe_gauge!(
        "shoal_canary_last_success_timestamp_seconds",
        Unit::Seconds,
        "When the last canary was read back"
    );
    describe_gauge!(
        "shoal_process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of the process"
    );
}
