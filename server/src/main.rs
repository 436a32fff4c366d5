//! `shoal`: the one binary. With no subcommand it serves on the embedded default; see
//! `shoal --help`.

mod annotate;
mod bootstrap;
mod canary;
mod cli;
mod client;
mod commands;
mod config;
mod dump;
mod history;
mod import;
mod serve;
mod telemetry;

// glibc's malloc spent a third of a re-projection's CPU in free-list upkeep (`unlink_chunk`,
// `malloc_consolidate`) across the worker threads; mimalloc took 22 % off that run
// (BENCHMARKS.md, "Session 6").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.log_format);
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(cli::run(cli)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain of causes, one line: an operator's message, not a backtrace.
            eprintln!("shoal: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Pretty => builder.init(),
    }
}
