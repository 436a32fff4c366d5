//! Hot paths of rule evaluation: recording an event into an entity's facts (what the scores
//! projection does per event) and evaluating every condition, stage and scorecard of one
//! entity (what a sweep does per entity), with the rules of `projector/tests/scores_throughput.rs`.
//! Run with `cargo bench -p shoal-rules --bench evaluate`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shoal_rules::{DAY_MS, Facts, Format, Rules, parse};
use std::hint::black_box;

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

/// 2026-03-10T00:00:00Z.
const NOW: i64 = 1_773_100_800_000;

/// An entity with 90 days of logins, views and exports, and its traits.
fn facts(rules: &Rules) -> Facts {
    let mut facts = Facts::default();
    for n in 0..900i64 {
        let name = ["login", "view", "view", "export"][(n % 4) as usize];
        facts.observe(rules, name, NOW - 90 * DAY_MS + n * DAY_MS / 10);
    }
    let traits = serde_json::json!({"plan": "pro", "seats": 10, "seats_used": 9});
    if let serde_json::Value::Object(map) = traits {
        facts.merge_traits(rules, &map);
    }
    facts
}

fn evaluate(c: &mut Criterion) {
    let rules = parse(RULES, Format::Yaml).expect("valid rules");
    let facts = facts(&rules);
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(1));
    group.bench_function(
        "evaluate one entity (6 conditions, 3 stages, 2 scorecards)",
        |b| b.iter(|| rules.evaluate(black_box(&facts), NOW, false)),
    );
    group.bench_function("evaluate one entity, with the why", |b| {
        b.iter(|| rules.evaluate(black_box(&facts), NOW, true))
    });
    group.bench_function("observe one event", |b| {
        let mut facts = facts.clone();
        let mut n = 0i64;
        b.iter(|| {
            n += 1;
            facts.observe(&rules, black_box("login"), NOW + n % DAY_MS);
        })
    });
    group.finish();
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
