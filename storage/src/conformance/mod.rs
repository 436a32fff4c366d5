//! The shared conformance suites: every backend of a trait runs the same checks.

pub mod log;
pub mod table;
