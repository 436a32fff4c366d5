//! The read side over HTTP against the real binary: ingest known events and points, then query
//! series, entities, raw events and projection status, asserting exact values; bad queries get a
//! 4xx naming the parameter.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{Credentials, Shoal, client, get_json, wait_caught_up};
use std::time::Duration;

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;

async fn post(shoal: &Shoal, path: &str, key: &str, body: Value) {
    let response = client()
        .post(shoal.url(path))
        .bearer_auth(key)
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["rejected"], 0, "{answer}");
}

/// One projection's entry of `GET /v1/projections`.
async fn projection_status(shoal: &Shoal, read: &str, name: &str) -> Value {
    let (status, mut body) = get_json(shoal, "/v1/projections", read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let projections = body["projections"].as_array_mut().expect("projections");
    let index = projections
        .iter()
        .position(|projection| projection["name"] == name)
        .unwrap_or_else(|| panic!("no projection {name}"));
    projections.swap_remove(index)
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or("<none>"),
        body["error"]["field"].as_str().unwrap_or("<none>"),
    )
}

#[tokio::test]
async fn read_models_answer_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    // No canary: its events would count in the exact totals of `/v1/projections` below.
    let shoal = Shoal::start(dir.path(), Some(shoal_tests::NO_CANARY));
    let credentials = shoal.credentials();
    let (write, read) = (credentials.write_key.clone(), credentials.read_key.clone());

    // Yesterday at 00:00 UTC, so the series day is a whole, past day.
    let now = shoal_schemas::time::now_millis();
    let day = now.div_euclid(DAY) * DAY - DAY;
    let mut points = Vec::new();
    for minute in 0..120 {
        // Two points in each minute for host a: value = minute and minute + 0.5.
        let at = day + minute * MINUTE;
        points.push(json!({"name": "cpu", "host": "a", "timestamp": at, "value": minute as f64}));
        points.push(json!({"name": "cpu", "host": "a", "timestamp": at + 30_000, "value": minute as f64 + 0.5}));
        points.push(json!({"name": "cpu", "host": "b", "timestamp": at, "value": 100.0}));
    }
    post(&shoal, "/v1/metrics", &write, Value::from(points)).await;
    // A point re-sent for the same timestamp replaces, never adds (last write wins).
    post(
        &shoal,
        "/v1/metrics",
        &write,
        json!([{"name": "cpu", "host": "b", "timestamp": day, "value": 40.0}]),
    )
    .await;

    let t = |offset: i64| now - offset;
    post(
        &shoal,
        "/v1/events",
        &write,
        json!([
            {"name": "login", "entity": "acme", "timestamp": t(3 * DAY), "properties": {"seats": 3}},
            {"name": "login", "entity": "acme", "timestamp": t(DAY)},
            {"name": "login", "entity": "acme", "timestamp": t(1000), "properties": {"seats": 4}},
            {"name": "export", "entity": "acme", "timestamp": t(2000)},
            {"kind": "identify", "entity": "acme", "timestamp": t(5000), "traits": {"plan": "trial"}},
            {"name": "login", "entity": "globex", "timestamp": t(40 * DAY)},
            {"kind": "identify", "entity": "globex", "timestamp": t(40 * DAY), "traits": {"plan": "pro"}},
        ]),
    )
    .await;
    wait_caught_up(&shoal, &read, Duration::from_secs(20)).await;

    // Series: a day at 1-minute steps, read from the minute rollup.
    let key = "cpu%7Bhost%3Da%7D";
    let (status, body) = get_json(
        &shoal,
        &format!(
            "/v1/series?series={key}&from={day}&to={}&step=1m&agg=avg",
            day + DAY - 1
        ),
        &read,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resolution"], "minute");
    let points = body["series"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 120);
    assert_eq!(points[0], json!([day, 0.25]));
    assert_eq!(points[119], json!([day + 119 * MINUTE, 119.25]));
    // The same range bucketed by the hour, each aggregation.
    for (agg, first_hour) in [
        ("sum", (0..60).map(|m| 2.0 * m as f64 + 0.5).sum::<f64>()),
        ("count", 120.0),
        ("min", 0.0),
        ("max", 59.5),
        ("last", 59.5),
    ] {
        let (status, body) = get_json(
            &shoal,
            &format!(
                "/v1/series?series={key}&from={day}&to={}&step=1h&agg={agg}",
                day + DAY - 1
            ),
            &read,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["resolution"], "hour", "{agg}");
        assert_eq!(
            body["series"][0]["points"][0],
            json!([day, first_hour]),
            "{agg}"
        );
    }
    // Every series of the metric, combined: b's first point was replaced by 40.
    let (status, body) = get_json(
        &shoal,
        &format!(
            "/v1/series?metric=cpu&from={day}&to={}&step=1m&agg=max&combine=sum",
            day + MINUTE - 1
        ),
        &read,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["series"][0]["points"], json!([[day, 0.5 + 40.0]]));
    assert!(body["freshness"]["shards"].as_array().is_some());

    // One entity.
    let (status, body) = get_json(&shoal, "/v1/entities/acme?window_days=2", &read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"], 5);
    assert_eq!(body["traits"], json!({"plan": "trial"}));
    assert_eq!(body["first_seen"], t(3 * DAY));
    assert_eq!(body["last_seen"], t(1000));
    assert_eq!(body["event_counts"]["login"], 2, "{body}");
    assert_eq!(body["event_counts"]["export"], 1);
    assert_eq!(body["totals"]["login.seats"], 7.0);

    // Lists: by event count in a window, by trait, by last seen.
    let (_, body) = get_json(
        &shoal,
        "/v1/entities?event=login&min=2&window_days=7",
        &read,
    )
    .await;
    let ids: Vec<&str> = body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme"], "{body}");
    assert_eq!(body["entities"][0]["event_count"], 3);
    let (_, body) = get_json(&shoal, "/v1/entities?trait.plan=pro", &read).await;
    assert_eq!(body["entities"][0]["entity"], "globex", "{body}");
    assert_eq!(body["entities"].as_array().unwrap().len(), 1);
    let (_, body) = get_json(&shoal, "/v1/entities?order=last_seen_asc&limit=1", &read).await;
    assert_eq!(body["entities"][0]["entity"], "globex", "{body}");
    let cursor = body["next"].as_str().expect("a second page").to_owned();
    let (_, body) = get_json(
        &shoal,
        &format!("/v1/entities?order=last_seen_asc&limit=1&cursor={cursor}"),
        &read,
    )
    .await;
    assert_eq!(body["entities"][0]["entity"], "acme", "{body}");

    // Raw events, newest first, paged.
    let (_, body) = get_json(&shoal, "/v1/entities/acme/events?limit=2", &read).await;
    let names: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["login", "export"], "{body}");
    let cursor = body["next"].as_str().unwrap().to_owned();
    let (_, body) = get_json(
        &shoal,
        &format!("/v1/entities/acme/events?limit=10&cursor={cursor}"),
        &read,
    )
    .await;
    assert_eq!(body["events"].as_array().unwrap().len(), 3, "{body}");

    // Status.
    let (_, body) = get_json(&shoal, "/v1/projections", &read).await;
    let names: Vec<&str> = body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["archive", "series", "entities"]);
    let applied: u64 = body["projections"][0]["events_applied"].as_u64().unwrap();
    assert_eq!(
        applied,
        360 + 1 + 7,
        "archive applied every stored event once"
    );

    // The freshness an answer carries moves with the projector, and what it says is applied
    // is in the answer's data (it is read before the data, and kept only while no write lands).
    let applied_of = |body: &Value| -> u64 {
        body["freshness"]["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .map(|shard| shard["events_applied"].as_u64().unwrap_or(0))
            .sum()
    };
    let (_, before) = get_json(&shoal, "/v1/entities/acme?window_days=2", &read).await;
    let (_, again) = get_json(&shoal, "/v1/entities/acme?window_days=2", &read).await;
    assert_eq!(
        before["freshness"], again["freshness"],
        "nothing was written"
    );
    post(
        &shoal,
        "/v1/events",
        &write,
        json!([{"name": "export", "entity": "acme", "timestamp": t(500)}]),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = get_json(&shoal, "/v1/entities/acme?window_days=2", &read).await;
        if applied_of(&body) > applied_of(&before) {
            assert_eq!(applied_of(&body), applied_of(&before) + 1, "{body}");
            assert_eq!(body["events"], 6, "applied, so in the data: {body}");
            assert_eq!(body["event_counts"]["export"], 2, "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the freshness did not move after an event: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_queries_name_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let credentials = shoal.credentials();
    let read = credentials.read_key.clone();
    post(
        &shoal,
        "/v1/metrics",
        &credentials.write_key,
        json!([{"name": "m", "value": 1}]),
    )
    .await;
    wait_caught_up(&shoal, &read, Duration::from_secs(20)).await;

    let cases = [
        (
            "/v1/series?series=nope",
            StatusCode::NOT_FOUND,
            "not_found",
            "series",
        ),
        (
            "/v1/series?metric=nope",
            StatusCode::NOT_FOUND,
            "not_found",
            "metric",
        ),
        ("/v1/series", StatusCode::BAD_REQUEST, "missing", "series"),
        (
            "/v1/series?series=m%7B%7D&from=10&to=5",
            StatusCode::BAD_REQUEST,
            "inverted_range",
            "from",
        ),
        (
            "/v1/series?series=m%7B%7D&from=0&to=86400000&step=1s",
            StatusCode::BAD_REQUEST,
            "step_too_small",
            "step",
        ),
        (
            "/v1/series?series=m%7B%7D&step=fast",
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "step",
        ),
        (
            "/v1/series?series=m%7B%7D&agg=median",
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "agg",
        ),
        (
            "/v1/series?series=m%7B%7D&colour=red",
            StatusCode::BAD_REQUEST,
            "unknown_parameter",
            "colour",
        ),
        (
            "/v1/entities/nobody",
            StatusCode::NOT_FOUND,
            "not_found",
            "id",
        ),
        (
            "/v1/entities?cursor=garbage",
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "cursor",
        ),
        (
            "/v1/entities?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "limit",
        ),
        (
            "/v1/entities?min=3",
            StatusCode::BAD_REQUEST,
            "missing",
            "event",
        ),
        (
            "/v1/entities?order=sideways",
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "order",
        ),
        (
            "/v1/entities?last_seen_after=tomorrow",
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "last_seen_after",
        ),
        (
            "/v1/entities/x/events?cursor=garbage",
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "cursor",
        ),
        (
            "/v1/entities/x/events?from=9&to=1",
            StatusCode::BAD_REQUEST,
            "inverted_range",
            "from",
        ),
    ];
    for (path, status, code, field) in cases {
        let (got, body) = get_json(&shoal, path, &read).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(error_of(&body), (code, field), "{path}: {body}");
    }
    let (got, body) = get_json(&shoal, "/v1/entities", &credentials.write_key).await;
    assert_eq!(
        (got, error_of(&body)),
        (StatusCode::FORBIDDEN, ("forbidden", "authorization"))
    );
    let (got, _) = get_json(&shoal, "/v1/entities", "shr_unknown").await;
    assert_eq!(got, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_the_shard_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let Credentials {
        write_key: write,
        read_key: read,
        admin_token: admin,
    } = shoal.credentials();
    // Valid at ingest, but the second makes the entity's `amount` total overflow to infinity,
    // which the entities projection refuses: a poison event for that projection only.
    post(
        &shoal,
        "/v1/events",
        &write,
        json!([
            {"name": "purchase", "entity": "whale", "properties": {"amount": 1e308}},
            {"name": "purchase", "entity": "whale", "properties": {"amount": 1e308}},
        ]),
    )
    .await;
    post(
        &shoal,
        "/v1/events",
        &write,
        json!([{"name": "login", "entity": "whale"}]),
    )
    .await;
    wait_caught_up(&shoal, &read, Duration::from_secs(20)).await;

    let (status, body) = get_json(&shoal, "/v1/entities/whale", &read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["events"], 2,
        "the poison event is skipped, the later login applied: {body}"
    );
    assert_eq!(body["counts"]["login"], 1);
    // The archive has no reason to refuse it: all three are there.
    let (_, body) = get_json(&shoal, "/v1/entities/whale/events", &read).await;
    assert_eq!(body["events"].as_array().unwrap().len(), 3);

    let (status, body) =
        get_json(&shoal, "/v1/admin/deadletters?projection=entities", &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let letters = body["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{body}");
    assert_eq!(letters[0]["tenant"], "default");
    let (shard, position) = (
        letters[0]["shard"].as_str().unwrap().to_owned(),
        letters[0]["position"].as_str().unwrap().to_owned(),
    );
    let entities = projection_status(&shoal, &read, "entities").await;
    assert_eq!(entities["dead_letters"], 1);

    // Re-driving an event that still fails keeps the letter and counts the attempt.
    let response = client()
        .post(shoal.url(&format!(
            "/v1/admin/deadletters/redrive?projection=entities&shard={shard}&position={position}"
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, body) = get_json(&shoal, "/v1/admin/deadletters?projection=entities", &admin).await;
    let attempts = body["dead_letters"][0]["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "{body}");
    // Only the admin token may see dead letters.
    let (status, _) = get_json(&shoal, "/v1/admin/deadletters?projection=entities", &read).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A customer whose SDK sends ever new event names would grow its profile past what a stored
/// item may hold (400 KB), and every flush of its shard would then fail: that shard's read
/// models would stop for every customer on it. The events that do not fit are dead letters
/// instead, and the shard goes on.
#[tokio::test]
async fn an_entity_with_endless_event_names_does_not_stop_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let Credentials {
        write_key: write,
        read_key: read,
        admin_token: admin,
    } = shoal.credentials();
    const NAMES: usize = 1700;
    let name = |i: usize| format!("viewed_product_{i:05}_{}", "x".repeat(230));
    for batch in 0..NAMES / 500 + 1 {
        let events: Vec<Value> = (batch * 500..((batch + 1) * 500).min(NAMES))
            .map(|i| json!({"name": name(i), "entity": "sprawl"}))
            .collect();
        post(&shoal, "/v1/events", &write, Value::Array(events)).await;
    }
    // Enough other customers that some share sprawl's shard, sent after it.
    let others: Vec<Value> = (0..40)
        .map(|i| json!({"name": "login", "entity": format!("c{i}")}))
        .collect();
    post(&shoal, "/v1/events", &write, Value::Array(others)).await;
    wait_caught_up(&shoal, &read, Duration::from_secs(60)).await;

    for i in 0..40 {
        let (status, body) = get_json(&shoal, &format!("/v1/entities/c{i}"), &read).await;
        assert_eq!(status, StatusCode::OK, "c{i}: {body}");
        assert_eq!(body["events"], 1, "c{i}: {body}");
    }
    let (status, body) = get_json(&shoal, "/v1/entities/sprawl", &read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let applied = body["events"].as_u64().unwrap();
    assert!(
        applied > 1000 && applied < NAMES as u64,
        "{applied} applied"
    );
    let entities = projection_status(&shoal, &read, "entities").await;
    assert_eq!(
        entities["dead_letters"].as_u64(),
        Some(NAMES as u64 - applied),
        "every event of sprawl's applied or dead-lettered: {entities}"
    );
    for shard in entities["shards"].as_array().unwrap() {
        assert_eq!(shard["last_error"], Value::Null, "{shard}");
    }
    let (status, body) = get_json(
        &shoal,
        "/v1/admin/deadletters?projection=entities&limit=1",
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let error = body["dead_letters"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("too many distinct event names"), "{body}");
}
