//! The shared conformance suites: every backend of a trait runs the same checks.

mod by_position;
mod dedup;
pub mod log;
pub mod table;
