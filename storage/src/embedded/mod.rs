//! The embedded backends: the default, on one machine with no setup.
//!
//! - `log`: the segment-file event log with group commit.
//! - `table`: the redb-backed tables.

pub mod log;
pub mod table;

pub use log::{EmbeddedLog, LogConfig, ShardHead, SyncMode};
pub use table::EmbeddedTables;
