//! The write side's metrics (names `shoal_ingest_*`; served by the binary's `/metrics`).
//! Labels are low-cardinality only: outcomes and reason codes, never tenants or fields.

use std::time::Duration;

/// One batch's fate, recorded once per request that reached the log.
pub(crate) fn record_batch(
    bytes: usize,
    accepted: usize,
    duplicates: usize,
    rejected: &[&'static str],
) {
    metrics::counter!("shoal_ingest_requests_total", "outcome" => "ok").increment(1);
    metrics::counter!("shoal_ingest_received_bytes_total").increment(bytes as u64);
    metrics::counter!("shoal_ingest_events_total", "outcome" => "accepted")
        .increment(accepted as u64);
    metrics::counter!("shoal_ingest_events_total", "outcome" => "duplicate")
        .increment(duplicates as u64);
    metrics::counter!("shoal_ingest_events_total", "outcome" => "rejected")
        .increment(rejected.len() as u64);
    for reason in rejected {
        metrics::counter!("shoal_ingest_rejects_total", "reason" => *reason).increment(1);
    }
}

/// A request refused as a whole (auth, limits, malformed body, overload).
pub(crate) fn record_refused(reason: &'static str) {
    metrics::counter!("shoal_ingest_requests_total", "outcome" => "refused").increment(1);
    metrics::counter!("shoal_ingest_rejects_total", "reason" => reason).increment(1);
}

/// How long the log took to make a batch durable.
pub(crate) fn record_append(elapsed: Duration, events: usize) {
    metrics::histogram!("shoal_ingest_append_seconds").record(elapsed.as_secs_f64());
    metrics::histogram!("shoal_ingest_append_batch_events").record(events as f64);
}

/// One rejected event or line that never reached a batch (a Graphite line too long to keep).
pub(crate) fn record_reject(reason: &'static str) {
    metrics::counter!("shoal_ingest_rejects_total", "reason" => reason).increment(1);
}

/// Graphite lines by outcome: stored, duplicate, rejected, skipped_nan.
pub(crate) fn graphite_lines(outcome: &'static str, lines: usize) {
    if lines > 0 {
        metrics::counter!("shoal_ingest_graphite_lines_total", "outcome" => outcome)
            .increment(lines as u64);
    }
}

/// Open Graphite connections, moved by `delta` (+1 opened, −1 closed).
pub(crate) fn graphite_connections(delta: f64) {
    metrics::gauge!("shoal_ingest_graphite_connections").increment(delta);
}
