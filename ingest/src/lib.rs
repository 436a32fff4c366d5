//! Shoal's write side: every write arrives here over HTTP, is authenticated, validated and
//! limited, and is answered only once the log says it is durable.
//!
//! - `routes`: the HTTP resources (`/v1/events`, `/v1/metrics`) and their handler flow;
//! - `admin`: tenant and key management behind the admin token;
//! - `parse`: strict parsers from request bodies to [`shoal_schemas::Event`]s, naming the field
//!   of every problem;
//! - `body`, `auth`, `limits`: the request plumbing; `error`: the one error enum and its one
//!   mapping to HTTP.

mod admin;
mod auth;
mod body;
mod error;
mod limits;
pub mod parse;
mod routes;
mod telemetry;

pub use error::{Error, ErrorBody, Result};
pub use limits::Limits;
pub use routes::{IngestState, router};
