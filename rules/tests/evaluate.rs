//! Every condition kind, at and around its window edges, in UTC.

use shoal_rules::{Band, DAY_MS, Evaluation, Facts, Format, Rules, parse};

/// 2026-03-10T12:00:00Z.
const NOW: i64 = 1_773_144_000_000;

fn at(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("test time")
        .timestamp_millis()
}

/// Rules with one condition `c` (weight 1) and bands good ≥ 50, bad < 50: the band says
/// whether `c` held.
fn single(condition: &str) -> Rules {
    let text = format!(
        "conditions:\n  c: {condition}\nscorecards:\n  default:\n    weights: {{c: 1}}\n    bands: {{good_from: 50, bad_below: 50}}\n"
    );
    parse(&text, Format::Yaml).expect("valid rules")
}

/// `Rules::evaluate`, checked against `Rules::judge` (the projector's path), which must agree
/// on everything but the explanation.
fn evaluate(rules: &Rules, facts: &Facts, as_of: i64, explain: bool) -> Evaluation {
    let evaluation = rules.evaluate(facts, as_of, explain);
    let judged = rules.judge(facts, as_of);
    assert_eq!(
        (judged.score, judged.band, judged.stage, judged.scorecard),
        (
            evaluation.score,
            evaluation.band,
            evaluation.stage.as_deref(),
            evaluation.scorecard.as_str()
        ),
        "judge and evaluate disagree"
    );
    evaluation
}

fn holds(rules: &Rules, facts: &Facts, as_of: i64) -> bool {
    let evaluation = evaluate(rules, facts, as_of, true);
    assert_eq!(evaluation.conditions.len(), 1);
    let held = evaluation.conditions[0].held;
    assert_eq!(
        evaluation.band == Band::Good,
        held,
        "band follows the one condition"
    );
    held
}

fn observe(rules: &Rules, facts: &mut Facts, name: &str, times: &[i64]) {
    for time in times {
        facts.observe(rules, name, *time);
    }
}

#[test]
fn event_count_window_is_whole_utc_days_ending_today() {
    let rules = single("{event_count: {event: login, days: 14, at_least: 2}}");
    let mut facts = Facts::default();
    // Day `today - 13` is the oldest day inside a 14-day window; `today - 14` is outside.
    let oldest_inside = at("2026-02-25T00:00:00Z");
    let newest_outside = at("2026-02-24T23:59:59.999Z");
    observe(
        &rules,
        &mut facts,
        "login",
        &[newest_outside, at("2026-03-10T23:00:00Z")],
    );
    assert!(!holds(&rules, &facts, NOW), "one login inside the window");
    observe(&rules, &mut facts, "login", &[oldest_inside]);
    assert!(holds(&rules, &facts, NOW));
    assert_eq!(
        evaluate(&rules, &facts, NOW, true).conditions[0].value,
        Some(2.0)
    );
    // A day later the oldest one slides out.
    assert!(!holds(&rules, &facts, NOW + DAY_MS));
    // Other event names do not count.
    observe(&rules, &mut facts, "logout", &[NOW, NOW, NOW]);
    assert!(!holds(&rules, &facts, NOW + DAY_MS));
}

#[test]
fn event_count_upper_bound() {
    let rules = single("{event_count: {event: error, days: 1, at_most: 1}}");
    let mut facts = Facts::default();
    assert!(holds(&rules, &facts, NOW), "zero errors is at most one");
    observe(&rules, &mut facts, "error", &[NOW, NOW - 1000]);
    assert!(!holds(&rules, &facts, NOW));
}

#[test]
fn active_days_counts_distinct_days_of_any_event() {
    let rules = single("{active_days: {days: 7, at_least: 3}}");
    let mut facts = Facts::default();
    observe(&rules, &mut facts, "a", &[NOW, NOW - 1000, NOW - DAY_MS]);
    assert!(!holds(&rules, &facts, NOW), "two distinct days");
    observe(&rules, &mut facts, "b", &[NOW - 6 * DAY_MS]);
    assert!(holds(&rules, &facts, NOW));
    assert!(
        !holds(&rules, &facts, NOW + DAY_MS),
        "day -6 left the window"
    );
}

#[test]
fn recency_more_than_and_within() {
    let stale = single("{recency: {event: export, more_than_days: 30}}");
    let recent = single("{recency: {event: export, within_days: 30}}");
    let mut facts = Facts::default();
    assert!(holds(&stale, &facts, NOW), "never exported is stale");
    assert!(!holds(&recent, &facts, NOW));
    observe(&stale, &mut facts, "export", &[NOW - 30 * DAY_MS]);
    assert!(
        !holds(&stale, &facts, NOW),
        "exactly 30 days is not more than 30"
    );
    assert!(holds(&stale, &facts, NOW + 1));
    assert!(holds(&recent, &facts, NOW));
    assert!(!holds(&recent, &facts, NOW + 1));
}

#[test]
fn trait_comparisons() {
    let mut facts = Facts::default();
    let equals = single("{trait: {name: plan, equals: trial}}");
    let traits = serde_json::json!({"plan": "trial", "seats": "12", "vip": true});
    facts.merge_traits(&equals, traits.as_object().expect("object"));
    assert!(holds(&equals, &facts, NOW));
    assert!(!holds(
        &single("{trait: {name: plan, not_equals: trial}}"),
        &facts,
        NOW
    ));
    assert!(holds(
        &single("{trait: {name: plan, one_of: [paid, trial]}}"),
        &facts,
        NOW
    ));
    assert!(!holds(
        &single("{trait: {name: plan, exists: false}}"),
        &facts,
        NOW
    ));
    let seats = single("{trait: {name: seats, at_least: 10, at_most: 12}}");
    let mut numeric = Facts::default();
    numeric.merge_traits(&seats, traits.as_object().expect("object"));
    assert!(
        holds(&seats, &numeric, NOW),
        "numeric text compares as a number"
    );
    let equals_number = single("{trait: {name: seats, equals: 12}}");
    numeric.merge_traits(&equals_number, traits.as_object().expect("object"));
    assert!(holds(&equals_number, &numeric, NOW));
    // Setting a trait to null removes it.
    let cleared = serde_json::json!({"plan": null});
    facts.merge_traits(&equals, cleared.as_object().expect("object"));
    assert!(!holds(&equals, &facts, NOW));
    assert!(holds(
        &single("{trait: {name: plan, equals: null}}"),
        &facts,
        NOW
    ));
}

#[test]
fn ratio_of_two_traits() {
    let rules = single("{ratio: {numerator: seats_used, denominator: seats, at_least: 0.8}}");
    let mut facts = Facts::default();
    let set = |facts: &mut Facts, value: serde_json::Value| {
        facts.merge_traits(&rules, value.as_object().expect("object"));
    };
    set(
        &mut facts,
        serde_json::json!({"seats_used": 7, "seats": 10}),
    );
    assert!(!holds(&rules, &facts, NOW));
    set(&mut facts, serde_json::json!({"seats_used": 8}));
    assert!(holds(&rules, &facts, NOW));
    set(&mut facts, serde_json::json!({"seats": 0}));
    assert!(
        !holds(&rules, &facts, NOW),
        "no ratio with a zero denominator"
    );
}

#[test]
fn trend_against_the_previous_window() {
    let rules = single("{trend: {event: report_viewed, days: 7, change_percent_at_most: -50}}");
    let mut facts = Facts::default();
    // Previous window: days -13..=-7; current: days -6..=0.
    let previous: Vec<i64> = (0..4).map(|i| NOW - 7 * DAY_MS - i * 1000).collect();
    observe(&rules, &mut facts, "report_viewed", &previous);
    observe(
        &rules,
        &mut facts,
        "report_viewed",
        &[NOW, NOW - 1000, NOW - 6 * DAY_MS],
    );
    let evaluation = evaluate(&rules, &facts, NOW, true);
    assert_eq!(evaluation.conditions[0].value, Some(-25.0));
    assert!(!evaluation.conditions[0].held, "down 25% is not down 50%");
    // A day later the day -6 view slides into the previous window: 2 against 5.
    let later = evaluate(&rules, &facts, NOW + DAY_MS, true);
    assert_eq!(later.conditions[0].value, Some(-60.0));
    assert!(later.conditions[0].held);
    // Nothing in the previous window: no change to measure.
    let empty = Facts::default();
    assert!(!holds(&rules, &empty, NOW));
}

#[test]
fn date_traits_in_each_form() {
    let soon = single("{date: {name: renewal_date, within_next_days: 60}}");
    let mut facts = Facts::default();
    for value in [
        serde_json::json!("2026-05-01"),
        serde_json::json!("2026-05-01T00:00:00+02:00"),
        serde_json::json!(at("2026-05-01T00:00:00Z")),
        serde_json::json!(at("2026-05-01T00:00:00Z") / 1000),
    ] {
        facts.merge_traits(
            &soon,
            serde_json::json!({"renewal_date": value})
                .as_object()
                .expect("object"),
        );
        assert!(holds(&soon, &facts, NOW), "{value} is 52 days ahead");
    }
    facts.merge_traits(
        &soon,
        serde_json::json!({"renewal_date": "2026-05-10"})
            .as_object()
            .expect("object"),
    );
    assert!(!holds(&soon, &facts, NOW), "61.5 days ahead");
    let past = single("{date: {name: renewal_date, more_than_days_ago: 30}}");
    let mut old = Facts::default();
    old.merge_traits(
        &past,
        serde_json::json!({"renewal_date": "2026-02-01"})
            .as_object()
            .expect("object"),
    );
    assert!(holds(&past, &old, NOW));
    old.merge_traits(
        &past,
        serde_json::json!({"renewal_date": "not a date"})
            .as_object()
            .expect("object"),
    );
    assert!(!holds(&past, &old, NOW));
}

#[test]
fn stages_pick_scorecards_and_weights_make_the_score() {
    let text = r#"
conditions:
  logins: { event_count: { event: login, days: 14, at_least: 5 } }
  exports: { event_count: { event: export, days: 30, at_least: 1 } }
  stale: { recency: { event: login, more_than_days: 7 } }
  trial: { trait: { name: plan, equals: trial } }
stages:
  - { name: trial, all: [trial] }
  - { name: customer }
scorecards:
  trial:
    weights: { logins: 1 }
    bands: { good_from: 100, bad_below: 1 }
  default:
    weights: { logins: 60, exports: 40, stale: -50 }
    bands: { good_from: 70, bad_below: 40 }
"#;
    let rules = parse(text, Format::Yaml).expect("valid");
    let mut facts = Facts::default();
    // Nothing held, `stale` held (never logged in): (0 - 50 + 50) / 150 = 0.
    let evaluation = evaluate(&rules, &facts, NOW, false);
    assert_eq!(evaluation.stage.as_deref(), Some("customer"));
    assert_eq!(evaluation.scorecard, "default");
    assert_eq!((evaluation.score, evaluation.band), (0, Band::Bad));
    observe(&rules, &mut facts, "login", &[NOW; 5]);
    // logins held, stale not: (60 + 50) / 150 = 73.3 → 73, Good.
    let evaluation = evaluate(&rules, &facts, NOW, false);
    assert_eq!((evaluation.score, evaluation.band), (73, Band::Good));
    // Nine days later: logins fell out of... no, 14-day window still holds; stale holds now.
    let evaluation = evaluate(&rules, &facts, NOW + 9 * DAY_MS, false);
    assert_eq!((evaluation.score, evaluation.band), (40, Band::Normal));
    facts.merge_traits(
        &rules,
        serde_json::json!({"plan": "trial"})
            .as_object()
            .expect("object"),
    );
    let evaluation = evaluate(&rules, &facts, NOW, true);
    assert_eq!(evaluation.stage.as_deref(), Some("trial"));
    assert_eq!((evaluation.score, evaluation.band), (100, Band::Good));
    let logins = evaluation
        .conditions
        .iter()
        .find(|c| c.name == "logins")
        .expect("logins");
    assert_eq!(logins.weight, Some(1.0));
    assert!(
        logins.detail.contains("5 times in the last 14 days"),
        "{}",
        logins.detail
    );
}

#[test]
fn facts_keep_only_the_widest_window() {
    let rules = single("{event_count: {event: login, days: 3, at_least: 1}}");
    let mut facts = Facts::default();
    for day in 0..100 {
        facts.observe(&rules, "login", NOW - (100 - day) * DAY_MS);
    }
    assert!(facts.counts["login"].len() <= 3, "{:?}", facts.counts);
    // An event older than the window, arriving late, is not counted but is not lost for
    // recency either: recency keeps the newest time only.
    facts.observe(&rules, "login", NOW - 500 * DAY_MS);
    assert!(facts.counts["login"].len() <= 3);
    // Facts round-trip through the projector's binary encoding.
    let bytes = postcard::to_allocvec(&facts).expect("encode");
    let back: Facts = postcard::from_bytes(&bytes).expect("decode");
    assert_eq!(back, facts);
}
