//! The AWS backends: the event log on Kinesis Data Streams ([`KinesisLog`]) and the tables on
//! DynamoDB ([`DynamoTables`]), for when one machine is not enough (DESIGN.md, "The log",
//! "Tables").
//!
//! - `config`: [`AwsConfig`] (region, endpoint overrides, stream, table prefix) and
//!   [`AwsClients`] (the SDK clients, with the SDK's own retries off);
//! - `retry`: the one retry helper, which tells throttling and transient errors from real
//!   failures, with exponential backoff and full jitter;
//! - `fault`: client-side fault injection, since the emulators never throttle;
//! - `kinesis`: the log — the events bound for one shard packed into few Kinesis records (sent
//!   with the shard's explicit hash key, as the Kinesis Producer Library does), per-record
//!   failure retry that never reorders a shard's events, reads within the per-shard limits,
//!   dedup through a conditional marker in the `control` table;
//! - `dynamodb`: the tables, a thin mapping of the [`crate::Table`] trait onto DynamoDB;
//! - `init`: creating (and, for tests, deleting) the stream and tables, safe to run twice.
//!
//! Every AWS operation is one small function (`kinesis/api.rs`, `dynamodb/api.rs`) with a link
//! to its API reference, making one attempt; retrying is always the caller's, through `retry`.

mod config;
mod dynamodb;
mod fault;
mod init;
mod kinesis;
mod retry;

pub use config::{AwsClients, AwsConfig, DEFAULT_DEDUP_WINDOW};
pub use dynamodb::{DynamoTables, MAX_TRANSACT_OPS};
pub use fault::{Fault, FaultPlan, Operation};
pub use init::{
    TTL_ATTRIBUTE, destroy, destroy_stream, destroy_tables, init, init_stream, init_tables,
};
pub use kinesis::KinesisLog;
pub use retry::{CallError, ErrorClass, RetryPolicy};
