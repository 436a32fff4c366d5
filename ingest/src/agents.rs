//! Metric agent routes: InfluxDB line protocol (`POST /write` for v1 clients, `POST
//! /api/v2/write` for v2 clients and Telegraf's `influxdb_v2` output, `GET|HEAD /ping`) and
//! Mackerel's `POST /api/v0/tsdb`.
//!
//! Answers follow each protocol: InfluxDB answers `204` when every line was stored and `400`
//! for a partial write (the good lines are kept, as InfluxDB keeps them), with Influx's
//! `code`/`message` plus Shoal's per-line report (`errors[]` with line, column and field);
//! Mackerel answers `200 {"success": true}`.

use crate::body;
use crate::parse::line_protocol::{self, Precision};
use crate::parse::{self, Context, Layout};
use crate::routes::{BatchReport, IngestState, Parsed, parse_maybe_blocking};
use crate::{Error, Result, auth};
use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use shoal_storage::NewEvent;
use shoal_storage::tenants::KeyKind;
use std::sync::Arc;

pub fn routes() -> Router<Arc<IngestState>> {
    Router::new()
        .route("/write", post(influx_v1))
        .route("/api/v2/write", post(influx_v2))
        .route("/ping", get(ping).head(ping))
        .route("/api/v0/tsdb", post(mackerel))
}

/// InfluxDB clients and Telegraf probe this before writing.
async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

fn precision(query: Option<&str>) -> Result<Precision> {
    match query_param(query, "precision") {
        None => Ok(Precision::Nanoseconds),
        Some(text) if text.is_empty() => Ok(Precision::Nanoseconds),
        Some(text) => Precision::parse(&text).ok_or_else(|| Error::Invalid {
            code: "invalid_value",
            field: "precision".to_owned(),
            message: "precision must be one of ns, us, ms, s (v1 also n, u, m, h)".to_owned(),
        }),
    }
}

async fn influx_v1(
    State(state): State<Arc<IngestState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let secret = auth::influx_v1_key(&headers, query.as_deref()).ok_or(Error::Unauthorized)?;
    line_protocol_write(&state, &secret, query.as_deref(), &headers, body).await
}

async fn influx_v2(
    State(state): State<Arc<IngestState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let secret = auth::presented_key(&headers).ok_or(Error::Unauthorized)?;
    line_protocol_write(&state, &secret, query.as_deref(), &headers, body).await
}

/// A partial write, in InfluxDB's error shape plus the per-line report.
#[derive(Serialize)]
struct PartialWrite {
    code: &'static str,
    message: String,
    #[serde(flatten)]
    report: BatchReport,
}

async fn line_protocol_write(
    state: &IngestState,
    secret: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let key = state.authorize_secret(secret, KeyKind::Write).await?;
    let precision = precision(query)?;
    let body = body::read(headers, body, &state.limits, &state.budget).await?;
    let received_at = shoal_schemas::time::now_millis();
    let bytes = body.bytes.clone();
    let tenant = key.tenant.clone();
    let max_event_bytes = state.limits.max_event_bytes;
    let max_events = state.limits.max_batch_events;
    let parsed = parse_maybe_blocking(bytes.len(), move || {
        let context = Context {
            tenant: &tenant,
            received_at,
            max_event_bytes,
        };
        line_protocol::parse_body(&bytes, precision, &context, max_events)
    })
    .await?
    .ok_or(Error::TooManyEvents {
        count: max_events + 1,
        limit: max_events,
    })?;
    // A point's id derives from its data, so a resent point is deduplicated: the client's.
    let parsed: Vec<Parsed> = parsed
        .into_iter()
        .map(|(index, item)| (index, item.map(NewEvent::client)))
        .collect();
    let report = state.store(&key.tenant, body.bytes.len(), parsed).await?;
    let Some(first) = report.errors.first() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let rejection = &first.rejection;
    let message = format!(
        "partial write: {} line(s) rejected; first at line {} column {}: {}",
        report.rejected,
        rejection.line.unwrap_or(first.index + 1),
        rejection.column.unwrap_or(1),
        rejection.message
    );
    let answer = PartialWrite {
        code: "invalid",
        message,
        report,
    };
    Ok((StatusCode::BAD_REQUEST, axum::Json(answer)).into_response())
}

#[derive(Serialize)]
struct MackerelAnswer {
    success: bool,
    #[serde(flatten)]
    report: BatchReport,
}

async fn mackerel(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let key = state.authorize(&headers, KeyKind::Write).await?;
    let body = body::read(&headers, body, &state.limits, &state.budget).await?;
    let received_at = shoal_schemas::time::now_millis();
    let bytes = body.bytes.clone();
    let tenant = key.tenant.clone();
    let limits = state.limits.clone();
    let parsed = parse_maybe_blocking(bytes.len(), move || -> Result<Vec<Parsed>> {
        let context = Context {
            tenant: &tenant,
            received_at,
            max_event_bytes: limits.max_event_bytes,
        };
        let items = parse::split(&bytes, Layout::Json, limits.max_batch_events)?;
        Ok(items
            .into_iter()
            .map(|item| {
                item.and_then(|raw| parse::mackerel::parse_point(raw, &context))
                    .map(NewEvent::client)
            })
            .enumerate()
            .collect())
    })
    .await??;
    let report = state.store(&key.tenant, body.bytes.len(), parsed).await?;
    let status = if report.stored_anything() || report.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let answer = MackerelAnswer {
        success: status == StatusCode::OK,
        report,
    };
    Ok((status, axum::Json(answer)).into_response())
}
