//! `shoal-bench compare` (issue 9): the same data loaded into Shoal and into the systems users
//! would pick instead, the same queries asked of each, one table of figures and ratios.
//!
//! Each round generates nothing new (the data set is made once, from the seed) and starts every
//! system afresh: Shoal (the release binary on a temporary data directory), VictoriaMetrics and
//! carbon (started here on free loopback ports, temporary directories), PostgreSQL (a running
//! server, given by `--postgres`; its tables are dropped and made again). Then per system:
//! load, wait until queryable, time the queries one at a time, probe ingest→queryable, measure
//! bytes on disk and peak RSS, stop. Every figure is the median over `--repeat` rounds, and every
//! ratio the median of the rounds' own ratios (Shoal and the peer measured in the same round).
//!
//! Durability as run: Shoal acknowledges after fdatasync (its default); PostgreSQL with
//! `fsync = on` and `synchronous_commit = on` (each COPY of a batch is its own transaction);
//! VictoriaMetrics acknowledges an import once it is in memory (it flushes to disk about every
//! second, without fsync per request); carbon acknowledges nothing (plain TCP lines) and writes
//! whisper files without fsync (`WHISPER_AUTOFLUSH = False`, its default), with
//! `MAX_UPDATES_PER_SECOND`, `MAX_CREATES_PER_MINUTE` and `MAX_CACHE_SIZE` set to `inf`.

mod carbon;
mod figures;
mod load;
mod postgres;
mod process;
mod shoal;
mod tantivy_baseline;
mod victoria;

use crate::cli::CompareArgs;
use crate::dataset::{Dataset, DatasetSpec};
use crate::procfs;
use anyhow::{Context, Result};
use figures::{Figure, Figures, System};
use std::time::{Duration, Instant};

pub fn run(args: &CompareArgs) -> Result<()> {
    let spec = DatasetSpec::from_args(&args.data, chrono::Utc::now().timestamp_millis());
    let started = Instant::now();
    let data = Dataset::generate(&spec);
    println!(
        "data set (seed {}): {} customers, {} product events ({} identify + {} track), {} series × {} points = {} points; generated in {:.1} s",
        spec.seed,
        data.customers.len(),
        data.event_count(),
        data.customers.len(),
        data.events.len(),
        spec.series,
        spec.points,
        data.points.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(dir) = &args.write_files {
        let files = crate::dataset::write_files(&data, dir)?;
        for file in files {
            let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            println!("  wrote {} ({:.1} MB)", file.display(), bytes as f64 / 1e6);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut figures = Figures::default();
    for round in 1..=args.repeat {
        println!("\n== round {round}/{} ==", args.repeat);
        let machine_before = procfs::machine_ticks();
        let round_started = Instant::now();
        let mut own = Duration::ZERO;
        let mut step = |name: &str, outcome: Result<Duration>| match outcome {
            Ok(cpu) => own += cpu,
            Err(error) => eprintln!("  {name} failed in round {round}: {error:#}"),
        };
        let ours_before = procfs::cpu_time(None).unwrap_or_default();
        if args.wants("shoal") {
            step(
                "shoal",
                shoal::round(&runtime, args, &data, round, &mut figures),
            );
        }
        if args.wants("postgres") {
            match &args.postgres {
                Some(connect) => step(
                    "postgres",
                    runtime.block_on(postgres::round(args, connect, &data, round, &mut figures)),
                ),
                None => println!("  postgres: skipped (no --postgres connection string)"),
            }
        }
        if args.wants("victoria") {
            step(
                "victoria-metrics",
                runtime.block_on(victoria::round(args, &data, round, &mut figures)),
            );
        }
        if args.wants("carbon") {
            step(
                "carbon",
                runtime.block_on(carbon::round(args, &data, round, &mut figures)),
            );
        }
        if args.wants("tantivy") {
            step(
                "tantivy",
                tantivy_baseline::round(args, &data, round, &mut figures),
            );
        }
        // The others: busy cores minus this process and the systems under test.
        let ours = procfs::cpu_time(None)
            .unwrap_or_default()
            .saturating_sub(ours_before);
        let machine_after = procfs::machine_ticks();
        if let Some(busy) = procfs::machine_busy(machine_before, machine_after) {
            let others = busy.saturating_sub(ours + own);
            let wall = round_started.elapsed().as_secs_f64();
            figures.record(
                Figure::OtherCores,
                System::Machine,
                round,
                others.as_secs_f64() / wall,
            );
        }
    }
    println!();
    figures.print(args.repeat);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures.to_json())?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nfigures as JSON: {}", path.display());
    }
    Ok(())
}

/// Fresh probe names: distinct per round and per sample, so no probe finds an earlier one.
pub fn probe_name(round: u32, sample: u32) -> String {
    format!("r{round}s{sample}")
}
