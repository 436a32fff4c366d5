//! Shoal's projector: replays the immutable log into read models, with exactly-once effects over
//! at-least-once delivery (DESIGN.md, "Projector" and "Projections").
//!
//! - [`Projector`] runs one worker per (projection, shard) (`engine.rs`, `worker.rs`); with
//!   several projector processes on one log, each works the shards whose [`lease`] it holds;
//! - [`Projection`] and its write-back [`Cache`] (`projection.rs`), flushed with the checkpoint
//!   (`flush.rs` holds the exactly-once design note);
//! - [`checkpoint`], [`deadletter`] and [`status`] live in the `control` table;
//! - [`periodic`]: the timer task behind the scores sweeper and the series retention sweeper;
//! - the projections: [`archive`], [`series`], [`entities`], each with the read functions the
//!   query side calls; and [`scores`], one instance per tenant with rules and rules version,
//!   run by its [`scores::manager::RulesManager`]. Key layouts: `docs/read-models.md`.

pub mod archive;
mod background;
pub mod checkpoint;
mod config;
pub mod deadletter;
mod engine;
pub mod entities;
mod error;
mod flush;
pub mod keys;
pub mod lease;
mod pacing;
pub mod periodic;
mod projection;
mod scan;
pub mod scores;
pub mod seed;
pub mod series;
pub mod status;
pub mod telemetry;
mod worker;

pub use checkpoint::Checkpoint;
pub use config::{
    DEFAULT_BATCH_EVENTS, DEFAULT_FOLD_AHEAD_EVENTS, DEFAULT_FOLD_AHEAD_ITEMS,
    DEFAULT_FOLD_AHEAD_LAG, DEFAULT_FOLD_AHEAD_TIME, ProjectorConfig,
};
pub use deadletter::DeadLetter;
pub use engine::{Ownership, Projector, ProjectorHandle, redrive};
pub use error::{Error, PoisonError, Result};
pub use lease::LeaseConfig;
pub use projection::{Cache, Derived, MAX_ITEM_BYTES, POS_ATTRIBUTE, Projection, State};
pub use status::{Freshness, Progress, ProjectionsStatus, StatusSource, freshness};
pub use worker::catch_up;

use std::sync::Arc;

/// The default projections, in the order the server wires them, for a projector reading
/// `log` (which decides the archive's layout: [`archive::Archive::for_log`]).
pub fn default_projections(log: &dyn shoal_storage::EventLog) -> Vec<Arc<dyn Projection>> {
    default_projections_with(archive::Archive::for_log(log).layout())
}

/// The default projections with the archive in `layout`.
pub fn default_projections_with(layout: archive::Layout) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(archive::Archive::new(layout)),
        Arc::new(series::Series),
        Arc::new(entities::Entities),
    ]
}
