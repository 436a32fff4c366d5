//! `shoal-bench search`: the search index in-process, without HTTP.
//!
//! 1. Indexing: generated events (10 tenants × 1000 entities, a name of 20, a plan, and four
//!    words drawn log-uniformly from a 5000-word vocabulary) go through the real [`Indexer`]
//!    in records of 1000, with a commit every 100 000 events as the worker does; reported as
//!    events/s of wall time and per CPU-second of this process.
//! 2. Queries: `SearchIndex::search` as `GET /v1/search` calls it by default (tenant filter,
//!    every match counted, top 20 by relevance, snippets; segments searched on one thread per
//!    core) for two-term queries and for two-word phrases taken from generated text, then the
//!    same two-term queries with every facet (`facets=name,stage,band`: facet counts over every
//!    match); p50/p99 over `--queries` each after a warm-up. `--index` keeps the index for the
//!    next run, which then times the queries alone.
//! 3. Freshness: the real worker on an embedded log beside the big index; one event appended
//!    every 100 ms, timed from the durable append to the first search that finds it.

use crate::cli::SearchArgs;
use crate::procfs;
use anyhow::Context;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use shoal_schemas::{Event, EventKind, Sequence};
use shoal_search::{FacetField, Indexer, SearchConfig, SearchIndex, SearchRequest, SearchWorker};
use shoal_storage::embedded::{EmbeddedLog, LogConfig, SyncMode};
use shoal_storage::{EventLog, LogRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TENANTS: u64 = 10;
const ENTITIES: u64 = 1_000;
const VOCABULARY: f64 = 5_000.0;
const RECORD_EVENTS: u64 = 1_000;
const COMMIT_EVENTS: u64 = 100_000;
const NAMES: [&str; 20] = [
    "signup",
    "login",
    "logout",
    "export_csv",
    "report_viewed",
    "invite_sent",
    "page_view",
    "search",
    "upgrade",
    "downgrade",
    "error_shown",
    "file_uploaded",
    "comment_added",
    "task_done",
    "project_created",
    "api_call",
    "billing_viewed",
    "setting_changed",
    "help_opened",
    "feedback_sent",
];
const PLANS: [&str; 4] = ["trial", "starter", "growth", "enterprise"];

/// A word of the vocabulary; low ranks are much more frequent (log-uniform ranks).
fn word(rng: &mut impl Rng) -> String {
    let rank = VOCABULARY.powf(rng.random::<f64>()) as u64;
    format!("w{rank}")
}

fn event(rng: &mut impl Rng, n: u64) -> Event {
    let words: Vec<String> = (0..4).map(|_| word(rng)).collect();
    let properties = serde_json::json!({
        "text": words.join(" "),
        "plan": PLANS[rng.random_range(0..PLANS.len())],
        "rows": rng.random_range(0..1000),
    });
    Event {
        id: uuid::Uuid::from_u64_pair(0x5ea4c4, n),
        tenant: format!("t{}", rng.random_range(0..TENANTS)),
        kind: EventKind::Track,
        name: NAMES[rng.random_range(0..NAMES.len())].to_owned(),
        entity: format!("c{}", rng.random_range(0..ENTITIES)),
        timestamp: 1_767_225_600_000 + n as i64,
        received_at: 1_767_225_600_000 + n as i64,
        properties: properties.to_string(),
        value: None,
    }
}

pub fn run(args: &SearchArgs) -> anyhow::Result<()> {
    // A temporary directory unless `--index` keeps the index (and the freshness log) in one.
    let (root, _temporary) = match &args.index {
        Some(kept) => (kept.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("shoal-bench-search-")
                .tempdir_in(&args.dir)
                .context("making the index directory")?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let index = Arc::new(SearchIndex::open(&root.join("search"))?);
    println!(
        "search bench: {} events, {} indexing thread(s), index in {}",
        args.events,
        args.threads,
        root.display()
    );

    if index.status().docs == 0 {
        let (rate, cpu_rate) = index_events(&index, args)?;
        println!("indexing: {rate:.0} events/s wall, {cpu_rate:.0} events per CPU-second");
    } else {
        println!("reusing the index there: not indexing");
    }
    let bytes = procfs::dir_bytes(&root.join("search")).unwrap_or(0);
    let docs = index.status().docs;
    println!(
        "index: {docs} docs, {:.1} MiB ({:.0} bytes/doc)",
        bytes as f64 / 1048576.0,
        bytes as f64 / docs.max(1) as f64
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let two_terms = time_queries(
        &index,
        args.queries,
        |rng| format!("{} {}", word(rng), word(rng)),
        &mut rng,
    )?;
    report("two terms + tenant", &two_terms);
    let phrase = time_queries(
        &index,
        args.queries,
        |rng| {
            // Adjacent words of a generated text: a phrase that occurs.
            let text = serde_json::from_str::<serde_json::Value>(&event(rng, 0).properties)
                .ok()
                .and_then(|p| p["text"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let words: Vec<&str> = text.split(' ').collect();
            format!("\"{} {}\"", words[0], words[1])
        },
        &mut rng,
    )?;
    report("phrase + tenant", &phrase);
    let mut faceted_rng = rand::rngs::StdRng::seed_from_u64(7);
    let faceted = time_queries_with(
        &index,
        args.queries,
        |rng| format!("{} {}", word(rng), word(rng)),
        &mut faceted_rng,
        FacetField::ALL.to_vec(),
    )?;
    report("two terms + tenant + facets", &faceted);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let fresh = runtime.block_on(freshness(Arc::clone(&index), &root, args.fresh_samples))?;
    report("new event searchable", &fresh);
    Ok(())
}

fn index_events(index: &Arc<SearchIndex>, args: &SearchArgs) -> anyhow::Result<(f64, f64)> {
    let memory = 64 * 1024 * 1024 * args.threads as usize;
    let mut indexer = Indexer::new(Arc::clone(index), args.threads as usize, memory)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    // Generated ahead of the clock, in slices, so generation is not counted as indexing.
    let shard = "bench".to_owned();
    let mut generated = 0u64;
    let mut elapsed = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    while generated < args.events {
        let slice = (args.events - generated).min(COMMIT_EVENTS);
        let records: Vec<LogRecord> = (0..slice.div_ceil(RECORD_EVENTS))
            .map(|r| {
                let start = generated + r * RECORD_EVENTS;
                let end = (start + RECORD_EVENTS).min(generated + slice);
                LogRecord {
                    sequence: Sequence::from_u64(start),
                    first_index: 0,
                    events: (start..end).map(|n| event(&mut rng, n)).collect(),
                }
            })
            .collect();
        let started = Instant::now();
        let cpu_before = procfs::cpu_time(None).unwrap_or_default();
        indexer.apply(&shard, &records)?;
        indexer.commit()?;
        elapsed += started.elapsed();
        cpu += procfs::cpu_time(None)
            .unwrap_or_default()
            .saturating_sub(cpu_before);
        generated += slice;
        if generated.is_multiple_of(1_000_000) {
            eprintln!(
                "  {generated} events indexed, {:.0} events/s so far",
                generated as f64 / elapsed.as_secs_f64()
            );
        }
    }
    // Merges still running are part of the indexing cost.
    let started = Instant::now();
    let cpu_before = procfs::cpu_time(None).unwrap_or_default();
    indexer.finish()?;
    elapsed += started.elapsed();
    cpu += procfs::cpu_time(None)
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let events = args.events as f64;
    Ok((
        events / elapsed.as_secs_f64(),
        events / cpu.as_secs_f64().max(1e-9),
    ))
}

fn time_queries(
    index: &SearchIndex,
    count: u32,
    make: impl FnMut(&mut rand::rngs::StdRng) -> String,
    rng: &mut rand::rngs::StdRng,
) -> anyhow::Result<Histogram<u64>> {
    time_queries_with(index, count, make, rng, Vec::new())
}

fn time_queries_with(
    index: &SearchIndex,
    count: u32,
    mut make: impl FnMut(&mut rand::rngs::StdRng) -> String,
    rng: &mut rand::rngs::StdRng,
    facets: Vec<FacetField>,
) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let warm_up = count / 10;
    for n in 0..count + warm_up {
        let tenant = format!("t{}", rng.random_range(0..TENANTS));
        let request = SearchRequest {
            query: make(rng),
            facets: facets.clone(),
            ..SearchRequest::default()
        };
        let started = Instant::now();
        let response = index.search(&tenant, &request)?;
        let micros = started.elapsed().as_micros() as u64;
        std::hint::black_box(response);
        if n >= warm_up {
            histogram.record(micros.max(1))?;
        }
    }
    Ok(histogram)
}

async fn freshness(
    index: Arc<SearchIndex>,
    dir: &std::path::Path,
    samples: u32,
) -> anyhow::Result<Histogram<u64>> {
    let mut config = LogConfig::new(dir.join("log"));
    config.sync = SyncMode::Always;
    let log = Arc::new(EmbeddedLog::open(config)?);
    let worker = SearchWorker::spawn(Arc::clone(&index), log.clone(), SearchConfig::default())?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    // Unique to this run: a reused index holds the probes of earlier runs.
    let run = shoal_schemas::time::now_millis();
    for n in 0..samples {
        let token = format!("fresh{run}x{n}");
        let mut probe = event(
            &mut rand::rngs::StdRng::seed_from_u64(n as u64),
            u64::MAX - n as u64,
        );
        probe.tenant = "t0".into();
        // A new id: the log acknowledges an id it already holds without storing it again.
        probe.id = uuid::Uuid::now_v7();
        probe.properties = serde_json::json!({ "text": token }).to_string();
        log.append(vec![probe]).await?;
        let appended = Instant::now();
        let request = SearchRequest {
            query: token,
            limit: 1,
            ..SearchRequest::default()
        };
        loop {
            let index = Arc::clone(&index);
            let request = request.clone();
            let found = tokio::task::spawn_blocking(move || index.search("t0", &request)).await??;
            if found.total > 0 {
                break;
            }
            anyhow::ensure!(
                appended.elapsed() < Duration::from_secs(30),
                "event {n} never became searchable"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        histogram.record((appended.elapsed().as_micros() as u64).max(1))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.shutdown().await?;
    log.shutdown().await;
    Ok(histogram)
}

fn report(label: &str, histogram: &Histogram<u64>) {
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "{label}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        histogram.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
}
