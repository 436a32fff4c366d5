//! Dead letters, behind the admin token (they span tenants). A tenant's scores are the
//! projection `scores.<tenant>` with `version` = live (default), candidate or a rules version.
//! - `GET /v1/admin/deadletters?projection=<name>[&cursor&limit]` — the events a projection
//!   could not apply, with the error;
//! - `POST /v1/admin/deadletters/redrive?projection=<name>&shard=<id>&position=<seq:index>` —
//!   reads the event from the log again and applies it; the dead letter goes when it succeeds,
//!   and stays (its attempts counted) with a 422 when the event still fails.

use crate::params::{Params, bad_cursor, encode_cursor};
use crate::{Error, QueryState, Result};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use shoal_projector::scores::Scores;
use shoal_projector::scores::manager::Which;
use shoal_projector::{Projection, deadletter};
use shoal_schemas::Position;
use std::sync::Arc;

/// The projection named by `projection` (and, for a tenant's scores, `version`: the rules
/// version, live by default).
async fn projection(state: &QueryState, params: &Params) -> Result<Arc<dyn Projection>> {
    let name = params
        .get("projection")
        .ok_or_else(|| Error::bad("projection", "missing", "projection is required"))?;
    if let Some(tenant) = name.strip_prefix(shoal_projector::scores::NAME_PREFIX) {
        let which = Which::parse(params.get("version")).ok_or_else(|| {
            Error::bad(
                "version",
                "invalid_value",
                "version is live, candidate or a number",
            )
        })?;
        let (version, rules) = state.rules()?.resolve(tenant, which).await?;
        return Ok(Arc::new(Scores::new(tenant, version, rules)));
    }
    if params.get("version").is_some() {
        return Err(Error::bad(
            "version",
            "invalid_value",
            "version applies to scores.<tenant> projections only",
        ));
    }
    // Only the archive depends on the log (its layout), and the archive never dead-letters.
    let layout = state
        .log
        .as_deref()
        .map(shoal_projector::archive::Archive::for_log)
        .unwrap_or_default()
        .layout();
    shoal_projector::default_projections_with(layout)
        .into_iter()
        .find(|projection| projection.name() == name)
        .ok_or_else(|| Error::NotFound {
            param: "projection".into(),
            message: format!("no projection {name:?}"),
        })
}

pub async fn list(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    state.require_admin(&headers).await?;
    let params = Params::parse(raw.as_deref())?;
    params.only(&["projection", "version", "cursor", "limit"], &[])?;
    let projection = projection(&state, &params).await?;
    let page = match deadletter::list(
        state.tables.as_ref(),
        projection.name(),
        projection.version(),
        params.cursor()?,
        params.limit(100, 1000)?,
    )
    .await
    {
        Err(shoal_projector::Error::Storage(shoal_storage::Error::InvalidCursor)) => {
            return Err(bad_cursor());
        }
        other => other?,
    };
    Ok(axum::Json(serde_json::json!({
        "dead_letters": page.dead_letters,
        "next": encode_cursor(page.next),
    }))
    .into_response())
}

pub async fn redrive(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    state.require_admin(&headers).await?;
    let params = Params::parse(raw.as_deref())?;
    params.only(&["projection", "version", "shard", "position"], &[])?;
    let projection = projection(&state, &params).await?;
    let shard = params
        .get("shard")
        .ok_or_else(|| Error::bad("shard", "missing", "shard is required"))?
        .to_owned();
    let position = params
        .get("position")
        .ok_or_else(|| Error::bad("position", "missing", "position is required"))
        .and_then(|text| {
            Position::parse(text).map_err(|_| {
                Error::bad(
                    "position",
                    "invalid_value",
                    "position must be <sequence>:<index>",
                )
            })
        })?;
    let log = state.log.as_ref().ok_or(Error::NotFound {
        param: "projection".into(),
        message: "this process has no log to re-drive from".into(),
    })?;
    match shoal_projector::redrive(
        log.as_ref(),
        state.tables.as_ref(),
        projection.as_ref(),
        &shard,
        &position,
    )
    .await
    {
        Ok(letter) => Ok(axum::Json(serde_json::json!({ "redriven": letter })).into_response()),
        Err(shoal_projector::Error::NotFound(message)) => Err(Error::NotFound {
            param: "position".into(),
            message,
        }),
        Err(shoal_projector::Error::InvalidArgument(message)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(serde_json::json!({
                "error": {"code": "still_failing", "message": message, "field": "position"}
            })),
        )
            .into_response()),
        Err(other) => Err(other.into()),
    }
}
