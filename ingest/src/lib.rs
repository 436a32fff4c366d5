//! Shoal's write side: every write arrives here over HTTP (or the Graphite TCP listener), is
//! authenticated, validated and limited, and is answered (or, for Graphite, read on from) only
//! once the log says it is durable.
//!
//! - `routes`: the native HTTP resources (`/v1/events`, `/v1/metrics`) and the flow every write
//!   takes (parse → rate-limit → durable append → report);
//! - `segment`: the Segment-compatible tracking routes (`/v1/batch`, `/v1/track`, …);
//! - `agents`: metric agent routes (InfluxDB line protocol `/write`, `/api/v2/write`; Mackerel
//!   `/api/v0/tsdb`);
//! - `graphite`: the optional Graphite plaintext TCP listener, into one configured tenant;
//! - `faults`: a test-only hook (off unless an env var sets it) that fails stored writes;
//! - `admin`: tenant and key management behind the admin token;
//! - `parse`: strict parsers from request bodies to [`shoal_schemas::Event`]s, naming the field
//!   of every problem;
//! - `body`, `auth`, `limits`: the request plumbing; `error`: the one error enum and its one
//!   mapping to HTTP.

mod admin;
mod agents;
mod auth;
mod body;
mod error;
mod faults;
mod graphite;
mod limits;
pub mod parse;
mod routes;
mod segment;
mod telemetry;

pub use error::{Error, ErrorBody, Result};
pub use graphite::{GraphiteConfig, GraphiteListener};
pub use limits::Limits;
pub use routes::{IngestState, router};
