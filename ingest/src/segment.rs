//! Segment-compatible tracking routes: `POST /v1/batch` and the single calls `/v1/track`,
//! `/v1/identify`, `/v1/group`, `/v1/page`, `/v1/screen`, `/v1/alias`.
//!
//! The flow is the native one with Segment's habits: the write key may come from Basic auth or
//! from `writeKey` in the body (so the body is read before authenticating when no header has a
//! key); bodies over 500 KB and requests where every message is bad get `400`, as Segment
//! answers; anything stored gets `200 {"success": true, …}` with the per-message report.

use crate::body;
use crate::parse::segment::{self, SegmentBatch};
use crate::parse::{Context, Rejection};
use crate::routes::{BatchReport, IngestState, Parsed, parse_maybe_blocking};
use crate::{Error, Result, auth};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use shoal_schemas::EventKind;
use shoal_storage::NewEvent;
use shoal_storage::tenants::KeyKind;
use std::sync::Arc;

pub fn routes() -> Router<Arc<IngestState>> {
    Router::new()
        .route("/v1/batch", post(batch))
        .route("/v1/track", post(track))
        .route("/v1/identify", post(identify))
        .route("/v1/group", post(group))
        .route("/v1/page", post(page))
        .route("/v1/screen", post(screen))
        .route("/v1/alias", post(alias))
}

async fn batch(state: State<Arc<IngestState>>, headers: HeaderMap, body: Body) -> Result<Response> {
    handle(&state, &headers, body, None).await
}

async fn track(state: State<Arc<IngestState>>, headers: HeaderMap, body: Body) -> Result<Response> {
    handle(&state, &headers, body, Some(EventKind::Track)).await
}

async fn identify(
    state: State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    handle(&state, &headers, body, Some(EventKind::Identify)).await
}

async fn group(state: State<Arc<IngestState>>, headers: HeaderMap, body: Body) -> Result<Response> {
    handle(&state, &headers, body, Some(EventKind::Group)).await
}

async fn page(state: State<Arc<IngestState>>, headers: HeaderMap, body: Body) -> Result<Response> {
    handle(&state, &headers, body, Some(EventKind::Page)).await
}

async fn screen(
    state: State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    handle(&state, &headers, body, Some(EventKind::Screen)).await
}

async fn alias(state: State<Arc<IngestState>>, headers: HeaderMap, body: Body) -> Result<Response> {
    handle(&state, &headers, body, Some(EventKind::Alias)).await
}

/// Segment's success shape plus Shoal's report of every message.
#[derive(Serialize)]
struct Answer {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Rejection>,
    #[serde(flatten)]
    report: BatchReport,
}

async fn handle(
    state: &IngestState,
    headers: &HeaderMap,
    body: Body,
    route_kind: Option<EventKind>,
) -> Result<Response> {
    // A key in the headers is checked before the body is read; one in the body only after.
    let header_key = match auth::presented_key(headers) {
        Some(secret) => Some(state.authorize_secret(&secret, KeyKind::Write).await?),
        None => None,
    };
    let body = body::read(headers, body, &state.limits, &state.budget).await?;
    let max_items = state.limits.max_batch_events;
    let key = match header_key {
        Some(key) => key,
        None => {
            let write_key = split(&body.bytes, route_kind, max_items)?
                .write_key
                .ok_or(Error::Unauthorized)?;
            state.authorize_secret(&write_key, KeyKind::Write).await?
        }
    };

    let received_at = shoal_schemas::time::now_millis();
    let bytes = body.bytes.clone();
    let tenant = key.tenant.clone();
    let max_event_bytes = state.limits.max_event_bytes;
    let parsed = parse_maybe_blocking(bytes.len(), move || -> Result<Vec<Parsed>> {
        let batch = split(&bytes, route_kind, max_items)?;
        let context = Context {
            tenant: &tenant,
            received_at,
            max_event_bytes,
        };
        let mut parsed = Vec::with_capacity(batch.messages.len());
        for (index, message) in batch.messages.iter().enumerate() {
            match segment::parse_message(message, route_kind, &batch.shared, &context) {
                Ok(events) => parsed.extend(
                    events
                        .into_iter()
                        .map(|event| (index, Ok(NewEvent::client(event)))),
                ),
                Err(rejection) => parsed.push((index, Err(rejection))),
            }
        }
        Ok(parsed)
    })
    .await??;

    let report = state.store(&key.tenant, body.bytes.len(), parsed).await?;
    if report.stored_anything() || report.errors.is_empty() {
        let answer = Answer {
            success: true,
            error: None,
            report,
        };
        return Ok((StatusCode::OK, axum::Json(answer)).into_response());
    }
    let error = report.errors.first().map(|item| item.rejection.clone());
    let answer = Answer {
        success: false,
        error,
        report,
    };
    Ok((StatusCode::BAD_REQUEST, axum::Json(answer)).into_response())
}

fn split(
    bytes: &[u8],
    route_kind: Option<EventKind>,
    max_items: usize,
) -> Result<SegmentBatch<'_>> {
    match route_kind {
        None => segment::split_batch(bytes, max_items),
        Some(_) => segment::split_single(bytes),
    }
}
