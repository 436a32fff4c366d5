//! The projector's metrics (names `shoal_projector_*`; served by the binary's `/metrics`).
//! The `projection` label is the projection's kind, never a tenant: every `scores.<tenant>`
//! instance counts as `scores`.

use std::time::Duration;

/// The low-cardinality label of a projection name.
pub fn label(projection: &str) -> &'static str {
    match projection {
        crate::archive::NAME => "archive",
        crate::series::NAME => "series",
        crate::entities::NAME => "entities",
        name if name.starts_with("scores.") => "scores",
        _ => "other",
    }
}

/// One flushed batch.
pub(crate) fn record_batch(projection: &str, applied: u64, dead_letters: u64, flush: Duration) {
    let label = label(projection);
    metrics::counter!("shoal_projector_batches_total", "projection" => label).increment(1);
    metrics::counter!("shoal_projector_events_applied_total", "projection" => label)
        .increment(applied);
    metrics::counter!("shoal_projector_dead_letters_total", "projection" => label)
        .increment(dead_letters);
    metrics::histogram!("shoal_projector_flush_seconds", "projection" => label)
        .record(flush.as_secs_f64());
}

/// A step that failed and will be retried from the checkpoint.
pub(crate) fn record_retry(projection: &str) {
    metrics::counter!("shoal_projector_retries_total", "projection" => label(projection))
        .increment(1);
}

/// A metric point older than every resolution of its series keeps, so not written at all.
pub(crate) fn record_series_point_expired() {
    metrics::counter!("shoal_projector_series_points_expired_total").increment(1);
}

/// One round of the series retention sweep.
pub(crate) fn record_retention_round(deleted: u64) {
    metrics::counter!("shoal_projector_series_retention_rounds_total").increment(1);
    metrics::counter!("shoal_projector_series_items_expired_total").increment(deleted);
}
