//! The ingest HTTP resources and the flow every write takes: authenticate → read the body
//! within limits → split and parse each item → rate-limit the tenant → append to the log and
//! wait until it is durable → answer with the fate of every item.

use crate::body::{self, Budget};
use crate::faults::Faults;
use crate::parse::{self, Context, Layout, Rejection};
use crate::{Error, Limits, Result, admin, auth, telemetry};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Serialize;
use shoal_storage::tenants::{KeyInfo, KeyKind, TenantStore};
use shoal_storage::{AppendOutcome, EventLog, NewEvent};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Bodies larger than this are parsed off the async runtime.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// What the ingest routes share.
pub struct IngestState {
    log: Arc<dyn EventLog>,
    pub(crate) tenants: Arc<TenantStore>,
    pub(crate) limits: Limits,
    pub(crate) budget: Budget,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    faults: Faults,
}

impl IngestState {
    pub fn new(log: Arc<dyn EventLog>, tenants: Arc<TenantStore>, limits: Limits) -> Self {
        let limiter = limits.tenant_events_per_second.and_then(|rate| {
            let rate = NonZeroU32::new(rate)?;
            let burst = NonZeroU32::new(limits.tenant_burst_events.max(rate.get()))?;
            Some(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        IngestState {
            log,
            tenants,
            budget: Budget::new(limits.max_inflight_bytes),
            limits,
            limiter,
            faults: Faults::from_env(),
        }
    }

    /// The key's tenant, if the request carries a key of the wanted kind.
    pub(crate) async fn authorize(&self, headers: &HeaderMap, kind: KeyKind) -> Result<KeyInfo> {
        let secret = auth::presented_key(headers).ok_or(Error::Unauthorized)?;
        self.authorize_secret(&secret, kind).await
    }

    /// The tenant of a secret found elsewhere than the usual headers (a body, a query string).
    pub(crate) async fn authorize_secret(&self, secret: &str, kind: KeyKind) -> Result<KeyInfo> {
        let info = self
            .tenants
            .authenticate(secret)
            .await?
            .ok_or(Error::Unauthorized)?;
        if info.kind != kind {
            return Err(Error::Forbidden(match kind {
                KeyKind::Write => "write: use a write key",
                KeyKind::Read => "read: use a read key",
            }));
        }
        Ok(info)
    }

    /// Takes `events` from the tenant's rate budget, or says how long to wait.
    pub(crate) fn check_rate(&self, tenant: &str, events: usize) -> Result<()> {
        let (Some(limiter), Some(count)) = (&self.limiter, NonZeroU32::new(events as u32)) else {
            return Ok(());
        };
        match limiter.check_key_n(&tenant.to_owned(), count) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Error::RateLimited {
                retry_after: not_until
                    .wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ))
                    .max(Duration::from_millis(1)),
            }),
            // The batch alone exceeds the burst: waiting will not help, so say how long the
            // sustained rate takes to admit it.
            Err(_) => Err(Error::RateLimited {
                retry_after: Duration::from_secs(1),
            }),
        }
    }
}

/// The ingest routes, including tenant administration.
pub fn router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/metrics", post(post_metrics))
        .merge(crate::segment::routes())
        .merge(crate::agents::routes())
        .merge(admin::routes())
        .with_state(state)
}

/// Parses a whole body into one result per item, in body order.
type BodyParser =
    fn(&[u8], Layout, usize, &Context<'_>) -> Result<Vec<std::result::Result<NewEvent, Rejection>>>;

async fn post_events(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    ingest(&state, &headers, body, parse::parse_events).await
}

async fn post_metrics(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    ingest(&state, &headers, body, parse_points).await
}

/// Split, then each point on its own. A point's id derives from its data, so a resent point
/// must be deduplicated: the id is the client's.
fn parse_points(
    bytes: &[u8],
    layout: Layout,
    max_items: usize,
    context: &Context<'_>,
) -> Result<Vec<std::result::Result<NewEvent, Rejection>>> {
    Ok(parse::split(bytes, layout, max_items)?
        .into_iter()
        .map(|item| item.and_then(|raw| parse::parse_point(raw, context).map(NewEvent::client)))
        .collect())
}

async fn ingest(
    state: &IngestState,
    headers: &HeaderMap,
    body: Body,
    parser: BodyParser,
) -> Result<Response> {
    let key = state.authorize(headers, KeyKind::Write).await?;
    let body = body::read(headers, body, &state.limits, &state.budget).await?;
    let layout = Layout::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
    );
    let received_at = shoal_schemas::time::now_millis();
    let bytes = body.bytes.clone();
    let tenant = key.tenant.clone();
    let limits = state.limits.clone();
    let items = parse_maybe_blocking(body.bytes.len(), move || {
        parse_items(&bytes, layout, &tenant, received_at, &limits, parser)
    })
    .await??;
    let parsed = items.into_iter().enumerate().collect();
    let report = state.store(&key.tenant, body.bytes.len(), parsed).await?;
    let status = if report.stored_anything() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, axum::Json(report)).into_response())
}

/// Runs a parse inline for small bodies and on the blocking pool for large ones, so a big body
/// never stalls the async runtime.
pub(crate) async fn parse_maybe_blocking<T, F>(body_bytes: usize, parse: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if body_bytes > INLINE_PARSE_BYTES {
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|_| Error::Overloaded {
                retry_after: Limits::OVERLOAD_RETRY,
            })
    } else {
        Ok(parse())
    }
}

/// One parsed item of a request: its index in the body, and the event it became (with its id's
/// origin) or why not. An item may become several events (a Segment `group` call) or several
/// items may come from one line (a line-protocol line with several fields): the index is what
/// the answer names.
pub(crate) type Parsed = (usize, std::result::Result<NewEvent, Rejection>);

impl IngestState {
    /// Rate-limits, appends the good events (returning once durable) and reports the fate of
    /// every item. `body_bytes` is the request's size, for the ingest metrics.
    pub(crate) async fn store(
        &self,
        tenant: &str,
        body_bytes: usize,
        parsed: Vec<Parsed>,
    ) -> Result<BatchReport> {
        let events = parsed.iter().filter(|(_, item)| item.is_ok()).count();
        self.check_rate(tenant, events)?;
        self.store_admitted(body_bytes, parsed).await
    }

    /// [`IngestState::store`] for events already admitted by [`IngestState::check_rate`]:
    /// protocols without an answer to carry a 429 wait for the rate instead.
    pub(crate) async fn store_admitted(
        &self,
        body_bytes: usize,
        parsed: Vec<Parsed>,
    ) -> Result<BatchReport> {
        let mut report = BatchReport::default();
        let mut events = Vec::with_capacity(parsed.len());
        let mut indexes = Vec::with_capacity(parsed.len());
        for (index, item) in parsed {
            match item {
                Ok(event) => {
                    indexes.push(index);
                    events.push(event);
                }
                Err(rejection) => report.errors.push(ItemError { index, rejection }),
            }
        }
        if !events.is_empty() {
            let ids: Vec<uuid::Uuid> = events.iter().map(|new| new.event.id).collect();
            let started = std::time::Instant::now();
            let count = events.len();
            let outcomes = self.log.append_with_origin(events).await?;
            telemetry::record_append(started.elapsed(), count);
            for ((index, id), outcome) in indexes.into_iter().zip(ids).zip(outcomes) {
                match outcome {
                    AppendOutcome::Stored(_) => report.accepted += 1,
                    AppendOutcome::Duplicate => report.duplicates.push(Duplicate { index, id }),
                }
            }
            // Test-only: the write is durable, but the client is told it failed, as when a
            // response is lost; its retry must then be recognised as a duplicate.
            if self.faults.fail_after_append() {
                return Err(Error::InjectedFault);
            }
        }
        report.rejected = report.errors.len();
        let reasons: Vec<&'static str> = report.errors.iter().map(|e| e.rejection.code).collect();
        telemetry::record_batch(
            body_bytes,
            report.accepted,
            report.duplicates.len(),
            &reasons,
        );
        Ok(report)
    }
}

fn parse_items(
    bytes: &[u8],
    layout: Layout,
    tenant: &str,
    received_at: i64,
    limits: &Limits,
    parser: BodyParser,
) -> Result<Vec<std::result::Result<NewEvent, Rejection>>> {
    let context = Context {
        tenant,
        received_at,
        max_event_bytes: limits.max_event_bytes,
    };
    parser(bytes, layout, limits.max_batch_events, &context)
}

/// The answer to a batch: every item not listed under `errors` or `duplicates` was stored.
/// `accepted` counts stored events (an item may become more than one).
#[derive(Debug, Default, Serialize)]
pub(crate) struct BatchReport {
    pub accepted: usize,
    pub rejected: usize,
    pub errors: Vec<ItemError>,
    pub duplicates: Vec<Duplicate>,
}

impl BatchReport {
    /// Whether any event is now stored because of (or was already stored before) this request.
    pub fn stored_anything(&self) -> bool {
        self.accepted > 0 || !self.duplicates.is_empty()
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ItemError {
    pub index: usize,
    #[serde(flatten)]
    pub rejection: Rejection,
}

/// An item whose id was already stored: acknowledged, not stored again.
#[derive(Debug, Serialize)]
pub(crate) struct Duplicate {
    pub index: usize,
    pub id: uuid::Uuid,
}
