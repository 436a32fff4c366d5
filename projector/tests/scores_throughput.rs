//! Scores rebuild throughput and sweep time on the embedded backend. Ignored by default; run
//! with
//! `SHOAL_BENCH_EVENTS=1000000 SHOAL_BENCH_ENTITIES=100000 cargo test --release -p shoal-projector --test scores_throughput -- --ignored --nocapture`.
//!
//! The workload: `entities` customers over 90 days, a login/view/export mix, one identify each
//! (plan and seats); rules with every condition kind that reads events or traits.
//! `SHOAL_BENCH_BATCH` sets the events read per batch (default 50,000).
//! `SHOAL_BENCH_FOLD_AHEAD_ITEMS` bounds the items of a folded-ahead flush (0: each read is
//! flushed alone). The log here is appended in seconds, so its events look recent: the fold
//! ahead lag is 0, as for the history a real rebuild replays.

mod common;

// The server's allocator (`server/src/main.rs`): with glibc's, malloc and free were 30 % of
// this test's profile, a cost the server does not pay.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use shoal_projector::scores::Scores;
use shoal_projector::scores::sweep::sweep;
use shoal_projector::{Projection, ProjectorConfig, catch_up};
use shoal_rules::{Format, parse};
use shoal_schemas::EventKind;
use shoal_storage::embedded::EmbeddedTables;
use shoal_storage::{EventLog, Table};
use std::sync::Arc;
use std::time::Instant;

const T: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400_000;

const RULES: &str = r#"
conditions:
  logins: { event_count: { event: login, days: 14, at_least: 5 } }
  active: { active_days: { days: 28, at_least: 8 } }
  export_stale: { recency: { event: export, more_than_days: 30 } }
  trial: { trait: { name: plan, equals: trial } }
  seats_full: { ratio: { numerator: seats_used, denominator: seats, at_least: 0.8 } }
  views_down: { trend: { event: view, days: 28, change_percent_at_most: -50 } }
stages:
  - { name: trial, all: [trial] }
  - { name: adopted, all: [active] }
  - { name: onboarding }
scorecards:
  trial:
    weights: { logins: 60, active: 40 }
    bands: { good_from: 60, bad_below: 30 }
  default:
    weights: { logins: 40, active: 30, seats_full: 30, export_stale: -20, views_down: -30 }
    bands: { good_from: 70, bad_below: 40 }
"#;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scores_rebuild_and_sweep() {
    let total = env("SHOAL_BENCH_EVENTS", 200_000);
    let entities = env("SHOAL_BENCH_ENTITIES", 20_000).max(1);
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(common::log_in(&dir.path().join("log"), 4));
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    let span = 90 * DAY;
    for n in 0..total {
        let entity = format!("customer-{}", n % entities);
        let time = T + (n as i64 * 7919) % span;
        let event = if n < entities {
            let plan = if n % 5 == 0 { "trial" } else { "paid" };
            let props = format!(r#"{{"plan":"{plan}","seats":10,"seats_used":{}}}"#, n % 11);
            common::event(EventKind::Identify, &entity, "", T, &props, None)
        } else {
            let name = match n % 10 {
                0..=4 => "login",
                5..=8 => "view",
                _ => "export",
            };
            common::track(&entity, name, time, r#"{"ms":12}"#)
        };
        batch.push(event);
        if batch.len() == 10_000 {
            log.append(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    log.append(batch).await.unwrap();
    println!(
        "filled {total} events for {entities} entities in {:?}",
        started.elapsed()
    );

    let rules = Arc::new(parse(RULES, Format::Yaml).unwrap());
    let scores = Arc::new(Scores::new("acme", 1, rules));
    let tables: Arc<dyn Table> =
        Arc::new(EmbeddedTables::open(&dir.path().join("tables.redb")).unwrap());
    let config = ProjectorConfig {
        batch_events: env("SHOAL_BENCH_BATCH", 50_000),
        fold_ahead_lag: std::time::Duration::ZERO,
        fold_ahead_items: env(
            "SHOAL_BENCH_FOLD_AHEAD_ITEMS",
            shoal_projector::DEFAULT_FOLD_AHEAD_ITEMS,
        ),
        ..ProjectorConfig::default()
    };
    let projection: Arc<dyn Projection> = scores.clone();
    let started = Instant::now();
    let applied = catch_up(log.clone(), tables.clone(), &[projection], &config)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    println!(
        "rebuild: {applied} events in {elapsed:?} = {:.0} events/s",
        applied as f64 / elapsed.as_secs_f64()
    );
    // Days 1-3 after the last event: few scores move. Day 60: every 14- and 28-day window
    // has emptied, so nearly every score moves and is written.
    for (round, days) in [1, 2, 3, 60].into_iter().enumerate() {
        let now = T + span + days * DAY;
        let started = Instant::now();
        let report = sweep(tables.as_ref(), &scores, now).await.unwrap();
        println!(
            "sweep {round} ({days} days after the last event): {} entities ({} changed) in {:?}",
            report.entities,
            report.changed,
            started.elapsed()
        );
    }
}
