//! Rules, health scores and re-projection against the real binary: a realistic multi-customer
//! history, rules v1 applied and activated, v2 rebuilt beside it while queries keep answering
//! v1, the back-test comparison, activation, v1 gone afterwards; bad documents get a 400 naming
//! the field and line; and a rebuild killed halfway gives the same scores as an uninterrupted
//! one.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{Shoal, client, get_json};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000;

/// `logins` Good for customers; trial accounts are scored on recent activity.
fn rules(min_logins: u32) -> String {
    format!(
        r#"
description: test rules
conditions:
  logins: {{ event_count: {{ event: login, days: 14, at_least: {min_logins} }} }}
  trial: {{ trait: {{ name: plan, equals: trial }} }}
  recent: {{ recency: {{ event: login, within_days: 7 }} }}
stages:
  - {{ name: trial, all: [trial] }}
  - {{ name: customer }}
scorecards:
  trial:
    weights: {{ recent: 1 }}
    bands: {{ good_from: 50, bad_below: 50 }}
  default:
    weights: {{ logins: 1 }}
    bands: {{ good_from: 50, bad_below: 50 }}
"#
    )
}

/// `engaged-N` log in once a day for the last 20 days; `fading-N` logged in 29 to 20 days ago
/// and not since; `trial-N` are on a trial plan and logged in in the last 3 days. Every event
/// is a minute after a UTC midnight, so each falls on the day meant whatever the time of day
/// the test runs (windows are whole UTC days).
fn history(per_group: usize, now: i64) -> Vec<Value> {
    let today = now.div_euclid(DAY) * DAY + 60_000;
    let mut events = Vec::new();
    let login = |entity: &str, at: i64| json!({"kind": "track", "name": "login", "entity": entity, "timestamp": at, "properties": {"ms": 5}});
    for n in 0..per_group {
        let engaged = format!("engaged-{n:03}");
        let fading = format!("fading-{n:03}");
        let trial = format!("trial-{n:03}");
        events.push(json!({"kind": "identify", "entity": engaged, "timestamp": today - 40 * DAY, "properties": {"plan": "paid"}}));
        events.push(json!({"kind": "identify", "entity": trial, "timestamp": today - 5 * DAY, "properties": {"plan": "trial"}}));
        for day in 0..20 {
            events.push(login(&engaged, today - day * DAY));
            events.push(login(&fading, today - (20 + day / 2) * DAY));
        }
        for day in 0..3 {
            events.push(login(&trial, today - day * DAY));
        }
    }
    events
}

async fn ingest(shoal: &Shoal, write_key: &str, events: &[Value]) {
    for chunk in events.chunks(5000) {
        let response = client()
            .post(shoal.url("/v1/events"))
            .bearer_auth(write_key)
            .json(&chunk)
            .send()
            .await
            .expect("post events");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rejected"], 0, "{body}");
    }
}

async fn send(
    shoal: &Shoal,
    method: reqwest::Method,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: Option<String>,
) -> (StatusCode, Value) {
    let mut request = client().request(method, shoal.url(path)).bearer_auth(token);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn put_rules(shoal: &Shoal, admin: &str, yaml: &str) -> (StatusCode, Value) {
    send(
        shoal,
        reqwest::Method::PUT,
        "/v1/admin/tenants/default/rules",
        admin,
        Some("application/yaml"),
        Some(yaml.to_owned()),
    )
    .await
}

/// Waits until the candidate `version` has caught up with the log and been evaluated as of now.
async fn wait_candidate(shoal: &Shoal, admin: &str, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = get_json(shoal, "/v1/admin/tenants/default/rules", admin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let caught_up = body["versions"]
            .as_array()
            .and_then(|versions| versions.iter().find(|v| v["version"] == version))
            .is_some_and(|v| v["caught_up"] == true && v["ready"] == true);
        if caught_up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "candidate {version} did not catch up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn activate(shoal: &Shoal, admin: &str, version: u64) -> Value {
    let path = format!("/v1/admin/tenants/default/rules/{version}/activate");
    let (status, body) = send(shoal, reqwest::Method::POST, &path, admin, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn count(distribution: &Value, stage: &str, band: &str) -> u64 {
    distribution["stages"][stage][band].as_u64().unwrap_or(0)
}

/// Every entity's (entity, score, band, stage) of a version, in score order, through paging.
async fn all_scores(shoal: &Shoal, read: &str, version: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/scores?version={version}&limit=7");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, body) = get_json(shoal, &path, read).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        rows.extend(
            body["entities"]
                .as_array()
                .expect("entities")
                .iter()
                .cloned(),
        );
        match body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return rows,
        }
    }
}

#[tokio::test]
async fn rules_change_is_rebuilt_previewed_and_activated() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), Some("[scores]\nsweep_interval_secs = 3600\n"));
    let credentials = shoal.credentials();
    let (write, read, admin) = (
        credentials.write_key.clone(),
        credentials.read_key.clone(),
        credentials.admin_token.clone(),
    );
    let now = shoal_schemas::time::now_millis();
    ingest(&shoal, &write, &history(10, now)).await;

    // No rules yet: the score routes say so.
    let (status, body) = get_json(&shoal, "/v1/scores", &read).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Bad documents: 400 naming the field and the line; nothing stored.
    let typo = rules(5).replace("at_least: 5", "at_leats: 5");
    let (status, body) = put_rules(&shoal, &admin, &typo).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_rules");
    assert_eq!(
        body["error"]["field"],
        "conditions.logins.event_count.at_leats"
    );
    assert_eq!(body["error"]["line"], 4, "{body}");
    let unknown = rules(5).replace("weights: { logins: 1 }", "weights: { login: 1 }");
    let (status, body) = put_rules(&shoal, &admin, &unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "scorecards.default.weights.login");
    assert_eq!(body["error"]["line"], 15, "{body}");
    let (status, body) = send(
        &shoal,
        reqwest::Method::PUT,
        "/v1/admin/tenants/default/rules",
        &admin,
        Some("text/csv"),
        Some("a,b".into()),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = send(
        &shoal,
        reqwest::Method::PUT,
        "/v1/admin/tenants/default/rules?activate=soon",
        &admin,
        Some("application/yaml"),
        Some(rules(5)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "activate", "{body}");
    let (status, _) = put_rules(&shoal, &read, &rules(5)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a read key cannot change rules"
    );

    // v1, asked to go live by itself once ready.
    let (status, body) = send(
        &shoal,
        reqwest::Method::PUT,
        "/v1/admin/tenants/default/rules?activate=when_ready",
        &admin,
        Some("application/yaml"),
        Some(rules(5)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (body["version"].clone(), body["activate"].clone()),
        (json!(1), json!("when_ready"))
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, overview) = get_json(&shoal, "/v1/rules", &read).await;
        if overview["active"] == 1 {
            assert_eq!(overview["candidate"], Value::Null, "{overview}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "v1 never went live by itself: {overview}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, v1) = get_json(&shoal, "/v1/scores/distribution", &read).await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["entities"], 30, "{v1}");
    assert_eq!(
        (
            count(&v1, "customer", "good"),
            count(&v1, "customer", "bad")
        ),
        (10, 10),
        "{v1}"
    );
    assert_eq!(count(&v1, "trial", "good"), 10, "{v1}");
    let v1_rows = all_scores(&shoal, &read, "live").await;
    assert_eq!(v1_rows.len(), 30);

    // v2 demands 15 logins in 14 days: the engaged customers (14) fall to Bad.
    let (status, body) = put_rules(&shoal, &admin, &rules(15)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["version"], 2);
    // While v2 is the candidate, queries answer v1.
    let (_, live) = get_json(&shoal, "/v1/scores/distribution", &read).await;
    assert_eq!(
        (live["version"].clone(), count(&live, "customer", "good")),
        (json!(1), 10)
    );
    // A second rebuild for the tenant is refused.
    let (status, body) = put_rules(&shoal, &admin, &rules(3)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    wait_candidate(&shoal, &admin, 2).await;
    let (status, comparison) = get_json(&shoal, "/v1/scores/compare", &read).await;
    assert_eq!(status, StatusCode::OK, "{comparison}");
    assert_eq!(
        (comparison["caught_up"].clone(), comparison["ready"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(
        (
            comparison["entities"].clone(),
            comparison["unchanged"].clone(),
            comparison["worsened"].clone(),
            comparison["improved"].clone()
        ),
        (json!(30), json!(20), json!(10), json!(0)),
        "{comparison}"
    );
    assert_eq!(
        comparison["transitions"],
        json!([{"stage": "customer", "from": "good", "to": "bad", "entities": 10}])
    );
    let (_, preview) = get_json(&shoal, "/v1/scores/distribution?version=candidate", &read).await;
    assert_eq!(
        (
            preview["version"].clone(),
            count(&preview, "customer", "bad")
        ),
        (json!(2), 20)
    );
    let (_, still) = get_json(&shoal, "/v1/scores?band=good&stage=customer", &read).await;
    assert_eq!(
        still["entities"].as_array().map(Vec::len),
        Some(10),
        "live still v1: {still}"
    );

    assert_eq!(activate(&shoal, &admin, 2).await["replaced"], 1);
    let (_, v2) = get_json(&shoal, "/v1/scores/distribution", &read).await;
    assert_eq!(
        (
            v2["version"].clone(),
            count(&v2, "customer", "bad"),
            count(&v2, "trial", "good")
        ),
        (json!(2), 20, 10),
        "{v2}"
    );
    // The explanation, with the numbers.
    let (status, entity) = get_json(&shoal, "/v1/entities/engaged-000/score", &read).await;
    assert_eq!(status, StatusCode::OK, "{entity}");
    assert_eq!(
        (
            entity["band"].clone(),
            entity["stage"].clone(),
            entity["score"].clone()
        ),
        (json!("bad"), json!("customer"), json!(0))
    );
    let logins = entity["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "logins")
        .unwrap()
        .clone();
    assert_eq!(
        (
            logins["held"].clone(),
            logins["value"].clone(),
            logins["weight"].clone()
        ),
        (json!(false), json!(14.0), json!(1.0)),
        "{entity}"
    );
    let history = entity["history"].as_array().unwrap();
    assert!(!history.is_empty(), "{entity}");
    assert_eq!(history.last().unwrap()["band"], "bad");
    // v1 is retired and its read models go.
    let (status, _) = get_json(&shoal, "/v1/scores?version=1", &read).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, overview) = get_json(&shoal, "/v1/rules", &read).await;
    assert_eq!(
        (overview["active"].clone(), overview["candidate"].clone()),
        (json!(2), Value::Null),
        "{overview}"
    );
    assert_eq!(overview["versions"][0]["status"], "retired");
    let (_, projections) = get_json(&shoal, "/v1/projections", &read).await;
    let scores: Vec<(String, u64)> = projections["projections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("scores.")))
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(scores, vec![("scores.default".to_owned(), 2)]);
    // Search sees the live stage and band on entity documents (annotated within seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, found) = get_json(
            &shoal,
            "/v1/search?type=entity&stage=customer&band=bad&limit=100",
            &read,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        if found["total"] == 20 {
            let mut entities: Vec<&str> = found["hits"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|h| h["entity"].as_str())
                .collect();
            entities.sort_unstable();
            assert_eq!(entities.len(), 20, "{found}");
            assert!(
                entities
                    .iter()
                    .all(|e| e.starts_with("engaged-") || e.starts_with("fading-")),
                "{found}"
            );
            break;
        }
        if Instant::now() >= deadline {
            let (_, any) = get_json(&shoal, "/v1/search?type=entity&limit=3", &read).await;
            panic!("search never showed the v2 bands: {found}; entities: {any}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(shoal.terminate(), "clean shutdown");
}

#[tokio::test]
async fn a_rebuild_killed_halfway_gives_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    // No canary: its events would count in the exact totals checked below.
    let config = "[scores]\nsweep_interval_secs = 3600\nbatch_events = 500\n[projector]\nbatch_events = 500\n[canary]\nenabled = false\n";
    let shoal = Shoal::start(dir.path(), Some(config));
    let credentials = shoal.credentials();
    let (write, read, admin) = (
        credentials.write_key.clone(),
        credentials.read_key.clone(),
        credentials.admin_token.clone(),
    );
    let now = shoal_schemas::time::now_millis();
    let events = history(300, now);
    ingest(&shoal, &write, &events).await;
    let (status, _) = put_rules(&shoal, &admin, &rules(5)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_candidate(&shoal, &admin, 1).await;
    activate(&shoal, &admin, 1).await;
    let uninterrupted = all_scores(&shoal, &read, "live").await;
    assert_eq!(uninterrupted.len(), 900);

    // The same rules as v2, killed while it rebuilds.
    let (status, _) = put_rules(&shoal, &admin, &rules(5)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(60);
    let replayed = loop {
        let (_, body) = get_json(&shoal, "/v1/projections", &read).await;
        let candidate = body["projections"].as_array().and_then(|p| {
            p.iter()
                .find(|p| p["name"] == "scores.default" && p["version"] == 2)
                .cloned()
        });
        let applied = candidate
            .as_ref()
            .and_then(|c| c["events_applied"].as_u64())
            .unwrap_or(0);
        if applied > 0 {
            break applied;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild did not start: {body}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    shoal.kill();
    assert!(
        (replayed as usize) < events.len(),
        "killed before the rebuild finished ({replayed} of {})",
        events.len()
    );

    let shoal = Shoal::start(dir.path(), Some(config));
    wait_candidate(&shoal, &admin, 2).await;
    activate(&shoal, &admin, 2).await;
    let rebuilt = all_scores(&shoal, &read, "live").await;
    assert_eq!(rebuilt, uninterrupted);
    let (_, body) = get_json(&shoal, "/v1/projections", &read).await;
    let applied: u64 = body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "scores.default")
        .map(|p| p["events_applied"].as_u64().unwrap())
        .sum();
    assert_eq!(
        applied as usize,
        events.len(),
        "every event applied exactly once: {body}"
    );
}

#[test]
fn the_cli_validates_a_rules_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("rules.yaml");
    std::fs::write(&good, rules(5)).unwrap();
    let output = std::process::Command::new(shoal_tests::shoal_bin())
        .args(["rules", "validate"])
        .arg(&good)
        .output()
        .expect("run shoal");
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("valid (3 conditions, 2 stages, 2 scorecards)")
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"conditions": {"a": {"recency": {"event": "x"}}}, "scorecards": {}}"#,
    )
    .unwrap();
    let output = std::process::Command::new(shoal_tests::shoal_bin())
        .args(["rules", "validate"])
        .arg(&bad)
        .output()
        .expect("run shoal");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("conditions.a.recency: exactly one of within_days, more_than_days is needed (found none) (line 1, column"), "{stderr}");
}
