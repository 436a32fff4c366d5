//! Shoal's read side: dashboards query the read models over HTTP with a read key.
//!
//! - `routes/series.rs`: `GET /v1/series` — ranges with step and aggregation;
//! - `routes/entities.rs`: `GET /v1/entities`, `GET /v1/entities/{id}`,
//!   `GET /v1/entities/{id}/events`;
//! - `routes/projections.rs`: `GET /v1/projections` — versions, lag, dead letters;
//! - `params.rs`: query-string parsing that names the parameter of every problem;
//! - `error.rs`: the one error enum and its one mapping to HTTP.
//!
//! Every answer carries `freshness`: how far its projection has applied the log.

mod error;
mod params;
mod routes;
mod state;

pub use error::{Error, Result};
pub use routes::router;
pub use state::QueryState;
