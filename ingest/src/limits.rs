//! Request limits: what one request, one event and one tenant may send, and how much the
//! ingest path may hold in memory at once.

use std::time::Duration;

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression (a guard against decompression bombs).
    pub max_decompressed_bytes: usize,
    /// Most events in one request.
    pub max_batch_events: usize,
    /// Largest single event, as its JSON text.
    pub max_event_bytes: usize,
    /// Request bodies held by the ingest path at once; past it requests get 503 + Retry-After
    /// instead of queueing in memory.
    pub max_inflight_bytes: usize,
    /// Sustained events per second per tenant; `None` for no limit.
    pub tenant_events_per_second: Option<u32>,
    /// Events a tenant may send in a burst above the sustained rate.
    pub tenant_burst_events: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 5 * 1024 * 1024,
            max_decompressed_bytes: 20 * 1024 * 1024,
            max_batch_events: 10_000,
            max_event_bytes: 32 * 1024,
            max_inflight_bytes: 64 * 1024 * 1024,
            tenant_events_per_second: Some(5_000_000),
            tenant_burst_events: 10_000_000,
        }
    }
}

impl Limits {
    /// How long an overloaded server asks clients to wait.
    pub const OVERLOAD_RETRY: Duration = Duration::from_secs(1);
}
