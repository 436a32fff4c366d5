//! The query routes and what every answer shares: the read-key check and freshness.

mod deadletters;
mod entities;
mod projections;
mod rules;
mod scores;
mod search;
mod series;

use crate::state::KeptFreshness;
use crate::{QueryState, Result};
use axum::Router;
use axum::routing::get;
use shoal_projector::{Freshness, Projection};
use std::sync::Arc;
use std::time::Instant;

pub fn router(state: Arc<QueryState>) -> Router {
    Router::new()
        .route("/v1/series", get(series::get_series))
        .route("/v1/entities", get(entities::list))
        .route("/v1/entities/{id}", get(entities::get_one))
        .route("/v1/entities/{id}/events", get(entities::events))
        .route("/v1/projections", get(projections::status))
        .route("/v1/rules", get(rules::own))
        .route("/v1/scores", get(scores::list))
        .route("/v1/scores/distribution", get(scores::distribution))
        .route("/v1/scores/compare", get(scores::compare))
        .route("/v1/entities/{id}/score", get(scores::entity))
        .route(
            "/v1/admin/tenants/{tenant}/rules",
            get(rules::overview).put(rules::put),
        )
        .route(
            "/v1/admin/tenants/{tenant}/rules/validate",
            axum::routing::post(rules::validate),
        )
        .route(
            "/v1/admin/tenants/{tenant}/rules/{version}/activate",
            axum::routing::post(rules::activate),
        )
        .route(
            "/v1/admin/tenants/{tenant}/rules/{version}",
            axum::routing::delete(rules::abandon),
        )
        .route("/v1/admin/scores/sweep", axum::routing::post(rules::sweep))
        .route("/v1/search", get(search::search))
        .route("/v1/admin/deadletters", get(deadletters::list))
        .route(
            "/v1/admin/deadletters/redrive",
            axum::routing::post(deadletters::redrive),
        )
        .with_state(state)
}

/// How far `projection` has applied the log. Routes read it before their data: a checkpoint
/// commits with the items it covers and only moves forward, so data read afterwards is at
/// least as fresh as the answer says (read after, a flush landing in between would make the
/// answer claim more than its data holds).
///
/// Kept while the tables' commit count stands still (`Table::commit_count`): reading and
/// decoding every shard's checkpoint was a tenth of an entity lookup's CPU, and at rest
/// nothing changes them. Tables that do not count commits (DynamoDB) keep a read for
/// [`UNCOUNTED_FRESHNESS_TTL`](crate::state::UNCOUNTED_FRESHNESS_TTL): there it was a round
/// trip per request, and a kept read understates freshness, never overstates it.
async fn freshness_of(state: &QueryState, projection: &dyn Projection) -> Result<Arc<Freshness>> {
    let (name, version) = (projection.name(), projection.version());
    let commits = state.tables.commit_count();
    if let Some(kept) = lock(&state.freshness)
        .get(name)
        .filter(|kept| kept.holds(version, commits, Instant::now()))
    {
        return Ok(Arc::clone(&kept.freshness));
    }
    let read_at = Instant::now();
    let read = Arc::new(shoal_projector::freshness(state.tables.as_ref(), name, version).await?);
    let kept = KeptFreshness {
        version,
        commits,
        read_at,
        freshness: Arc::clone(&read),
    };
    lock(&state.freshness).insert(name.to_owned(), kept);
    Ok(read)
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Holders only look up or replace an entry: a panic cannot leave it half-changed.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
