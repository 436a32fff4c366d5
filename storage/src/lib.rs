//! Shoal's storage: the two traits every other crate programs against, and their backends.
//!
//! - [`EventLog`]: the immutable log (DESIGN.md, "The log"). Embedded backend: segment files
//!   per shard with group commit. AWS backend: Kinesis Data Streams.
//! - [`Table`]: the subset of DynamoDB's item model Shoal needs (DESIGN.md, "Tables"). Embedded
//!   backend: redb. AWS backend: DynamoDB.
//!
//! Both traits are object-safe and injected as `Arc<dyn …>`. Every backend runs the shared
//! suites in [`conformance`] (feature `conformance`).

pub mod aws;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod embedded;
mod error;
mod log;
pub mod memory;
pub mod priority;
mod table;
pub mod tenants;

pub use error::{Error, Result};
pub use log::{AppendOutcome, EventLog, IdOrigin, LogRecord, NewEvent, ReadBatch, ShardInfo};
pub use table::{
    Condition, Item, Key, MAX_SCAN_SEGMENTS, Page, QUERY_MANY_IN_FLIGHT, Query, Scan, SortRange,
    Table, TableName, TransactOp, Update, Value, WriteOp,
};
