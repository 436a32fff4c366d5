//! The query routes and what every answer shares: the read-key check and freshness.

mod deadletters;
mod entities;
mod projections;
mod series;

use crate::{QueryState, Result};
use axum::Router;
use axum::routing::get;
use shoal_projector::{Freshness, Projection};
use std::sync::Arc;

pub fn router(state: Arc<QueryState>) -> Router {
    Router::new()
        .route("/v1/series", get(series::get_series))
        .route("/v1/entities", get(entities::list))
        .route("/v1/entities/{id}", get(entities::get_one))
        .route("/v1/entities/{id}/events", get(entities::events))
        .route("/v1/projections", get(projections::status))
        .route("/v1/admin/deadletters", get(deadletters::list))
        .route(
            "/v1/admin/deadletters/redrive",
            axum::routing::post(deadletters::redrive),
        )
        .with_state(state)
}

/// How far `projection` has applied the log.
async fn freshness_of(state: &QueryState, projection: &dyn Projection) -> Result<Freshness> {
    Ok(shoal_projector::freshness(
        state.tables.as_ref(),
        projection.name(),
        projection.version(),
    )
    .await?)
}
