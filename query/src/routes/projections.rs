//! `GET /v1/projections`: per projection its version, per shard the checkpoint and the lag
//! (records, bytes, ms), dead letters, retries and the last error.

use crate::{QueryState, Result};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn status(State(state): State<Arc<QueryState>>, headers: HeaderMap) -> Result<Response> {
    state.tenant(&headers).await?;
    let status = state.status.status().await?;
    Ok(axum::Json(status).into_response())
}
