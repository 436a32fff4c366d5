//! `shoal-bench`: load generators for Shoal, and the figures in BENCHMARKS.md.
//!
//! Subcommands:
//! - `ingest`: durable ingest over HTTP (`POST /v1/events`) from N keep-alive connections, either
//!   against a running server (`--url`, `--key`) or against a release server it starts itself on
//!   a temporary data directory (`--spawn path/to/shoal`), which also yields bytes on disk per
//!   event and the server's peak RSS;
//! - `fsync`: the disk's `fdatasync` latency, the floor under every durable acknowledgement;
//! - `log-append`: single-event durable appends into an embedded log in process (no HTTP), for
//!   the log writer's sync and linger settings;
//! - `search`: the search index in-process: indexing rate, query latency, and the time from a
//!   durable append to the event being searchable;
//! - `query`: the read side over HTTP against a server it starts and fills: latency per query
//!   shape, and ingest→queryable under load;
//! - `compare`: the same data set and queries against Shoal and its peers (PostgreSQL,
//!   VictoriaMetrics, carbon, in-process tantivy), one table of figures and ratios;
//! - `dataset`: that data set written in every format the systems take;
//! - `reproject`: the projector alone, in process: that data set's log replayed into fresh
//!   tables, timed per round;
//! - `series-bytes`: the data set's metric points projected into a fresh table file, and where
//!   their bytes go (per item kind, redb's pages, before and after compaction).
//!
//! Every run is bounded in time and stops by itself; a second Ctrl-C is never needed.

// The server's allocator, so that in-process figures (`reproject`, `search`) match the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod client;
mod compare;
mod dataset;
mod fsync;
mod ids;
mod ingest;
mod log_append;
mod procfs;
mod query;
mod report;
mod reproject;
mod search;
mod series_bytes;
mod server;
mod stats;
mod workload;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let outcome = match cli.command {
        cli::Command::Ingest(args) => ingest::run(&args),
        cli::Command::Fsync(args) => fsync::run(&args),
        cli::Command::LogAppend(args) => log_append::run(&args),
        cli::Command::Search(args) => search::run(&args),
        cli::Command::Query(args) => query::run(&args),
        cli::Command::Compare(args) => compare::run(&args),
        cli::Command::Dataset(args) => dataset::run(&args),
        cli::Command::Reproject(args) => reproject::run(&args),
        cli::Command::SeriesBytes(args) => series_bytes::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shoal-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
