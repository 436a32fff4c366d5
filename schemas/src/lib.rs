//! Shoal's contracts, shared by every other crate and free of I/O.
//!
//! - [`Event`]: the one envelope every write becomes (see DESIGN.md, "The event").
//! - [`Position`] and [`Sequence`]: where a record sits in a shard of the log; ordered, and
//!   compared as big integers so Kinesis sequence numbers and embedded byte offsets share one type.
//! - [`keys`]: the partition key and the shard a tenant + entity maps to.

mod error;
mod event;
pub mod keys;
mod position;
pub mod time;

pub use error::{Error, Result};
pub use event::{Event, EventKind, LIMIT_ENTITY_BYTES, LIMIT_NAME_BYTES};
pub use position::{Position, Sequence, ShardId};
