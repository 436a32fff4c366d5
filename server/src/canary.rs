//! The end-to-end canary and readiness.
//!
//! On a timer the canary appends one synthetic event for the internal tenant `_canary` straight
//! to the log, then reads the `entities` read model until the event shows (its `last_seen`), and
//! records the time in between: the whole pipeline — log, projector, tables — as a user's write
//! experiences it. `_canary` cannot be a customer's tenant (tenant ids start with a letter or
//! digit), and nothing counts it for anyone.
//!
//! `GET /readyz` is ready when the last canary came back (and one has) and no default
//! projection lags more than `max_lag_secs`; `GET /healthz` only says the process answers.

use crate::config::{CanarySettings, ReadinessSettings};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shoal_projector::StatusSource;
use shoal_schemas::time::now_millis;
use shoal_schemas::{Event, EventKind};
use shoal_storage::{EventLog, Table};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const TENANT: &str = "_canary";
const ENTITY: &str = "probe";

/// What the canary has seen so far.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CanaryReport {
    pub probes: u64,
    pub successes: u64,
    pub consecutive_failures: u32,
    pub last_latency_ms: Option<f64>,
    pub last_error: Option<String>,
    #[serde(skip)]
    last_success: Option<Instant>,
}

pub struct Canary {
    report: Arc<Mutex<CanaryReport>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Canary {
    pub fn spawn(
        log: Arc<dyn EventLog>,
        tables: Arc<dyn Table>,
        settings: CanarySettings,
    ) -> Canary {
        let report = Arc::new(Mutex::new(CanaryReport::default()));
        let (stop, mut stopped) = watch::channel(false);
        let shared = report.clone();
        let task = tokio::spawn(async move {
            let interval = Duration::from_secs(settings.interval_secs);
            let timeout = Duration::from_secs(settings.timeout_secs);
            let mut last_sent = 0i64;
            while !*stopped.borrow() {
                // Strictly increasing event times, so `last_seen` tells this probe from the last.
                let sent = now_millis().max(last_sent + 1);
                last_sent = sent;
                let outcome = tokio::select! {
                    outcome = probe(log.as_ref(), tables.as_ref(), sent, timeout) => outcome,
                    _ = stopped.changed() => break,
                };
                record(&shared, outcome);
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        Canary { report, stop, task }
    }

    pub fn report(&self) -> CanaryReport {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Writes one canary and waits until the read model shows it; the latency.
async fn probe(
    log: &dyn EventLog,
    tables: &dyn Table,
    sent: i64,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let event = Event {
        id: uuid::Uuid::now_v7(),
        tenant: TENANT.into(),
        kind: EventKind::Track,
        name: "canary".into(),
        entity: ENTITY.into(),
        timestamp: sent,
        received_at: sent,
        properties: "{}".into(),
        value: None,
    };
    log.append(vec![event])
        .await
        .map_err(|error| format!("writing the canary: {error}"))?;
    loop {
        match shoal_projector::entities::get(tables, TENANT, ENTITY).await {
            Ok(Some(view)) if view.profile.last_seen.is_some_and(|seen| seen >= sent) => {
                return Ok(started.elapsed());
            }
            Ok(_) => {}
            Err(error) => return Err(format!("reading the canary back: {error}")),
        }
        if started.elapsed() >= timeout {
            return Err(format!("the canary was not readable within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(report: &Mutex<CanaryReport>, outcome: Result<Duration, String>) {
    let mut report = report.lock().unwrap_or_else(PoisonError::into_inner);
    report.probes += 1;
    match outcome {
        Ok(latency) => {
            metrics::histogram!("shoal_canary_latency_seconds").record(latency.as_secs_f64());
            metrics::gauge!("shoal_canary_last_success_timestamp_seconds")
                .set(now_millis() as f64 / 1000.0);
            report.successes += 1;
            report.consecutive_failures = 0;
            report.last_latency_ms = Some(latency.as_secs_f64() * 1000.0);
            report.last_error = None;
            report.last_success = Some(Instant::now());
        }
        Err(error) => {
            metrics::counter!("shoal_canary_failures_total").increment(1);
            tracing::warn!(%error, "canary failed");
            report.consecutive_failures += 1;
            report.last_error = Some(error);
        }
    }
}

/// What `/readyz` looks at.
pub struct Readiness {
    pub canary: Option<Canary>,
    pub status: Option<StatusSource>,
    pub settings: ReadinessSettings,
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<CanaryReport>,
}

/// `GET /readyz`: 200 when ready, 503 with the reasons otherwise.
pub async fn readyz(State(readiness): State<Arc<Readiness>>) -> Response {
    let mut reasons = Vec::new();
    let canary = readiness.canary.as_ref().map(Canary::report);
    if let Some(report) = &canary {
        if report.successes == 0 {
            reasons.push("no canary has been read back yet".to_owned());
        } else if report.consecutive_failures > 0 {
            reasons.push(format!(
                "the last {} canaries failed: {}",
                report.consecutive_failures,
                report.last_error.as_deref().unwrap_or("unknown")
            ));
        }
    }
    if let Some(status) = &readiness.status {
        let limit = readiness.settings.max_lag_secs * 1000;
        match status.status().await {
            Ok(status) => {
                for projection in &status.projections {
                    // Rebuilds of new rules versions catch up by design; the live read models
                    // are what readiness is about.
                    if matches!(
                        shoal_projector::telemetry::label(&projection.name),
                        "scores" | "other"
                    ) {
                        continue;
                    }
                    let worst = projection.shards.iter().filter_map(|s| s.lag_ms).max();
                    if let Some(lag) = worst.filter(|lag| *lag > limit) {
                        reasons.push(format!(
                            "projection {} lags {lag} ms (limit {limit} ms)",
                            projection.name
                        ));
                    }
                }
            }
            Err(error) => reasons.push(format!("projection status unavailable: {error}")),
        }
    }
    let ready = reasons.is_empty();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(ReadyBody {
            ready,
            reasons,
            canary,
        }),
    )
        .into_response()
}
