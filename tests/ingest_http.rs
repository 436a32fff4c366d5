//! The write side over HTTP against the real binary: what is accepted, what is refused and how,
//! and that refusing never disturbs what was already stored.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{NO_CANARY, Shoal, client, read_log, series_points, wait_caught_up};
use std::io::Write;
use std::time::Duration;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn post(
    shoal: &Shoal,
    path: &str,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let response = client()
        .post(shoal.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or("<none>"),
        body["error"]["field"].as_str().unwrap_or("<none>"),
    )
}

#[tokio::test]
async fn batch_reports_every_event_and_stores_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let key = shoal.credentials().write_key;
    let batch = json!([
        {"id": "m-1", "name": "login", "entity": "acme", "timestamp": "2026-01-01T10:00:00Z", "properties": {"plan": "pro"}},
        {"name": 42, "entity": "acme"},
        {"kind": "identify", "entity": "acme", "traits": {"seats": 10}},
        {"name": "cpu", "entity": "web1", "kind": "metric", "value": 0.25},
        {"name": "x", "entity": "acme", "colour": "red"},
    ]);
    let (status, body, _) = post(&shoal, "/v1/events", &key, batch.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["rejected"], 2);
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["code"], "invalid_type");
    assert_eq!(body["errors"][0]["field"], "name");
    assert_eq!(body["errors"][1]["index"], 4);
    assert_eq!(body["errors"][1]["code"], "unknown_field");
    assert_eq!(body["errors"][1]["field"], "colour");

    // The same client id again: acknowledged as a duplicate, not stored twice.
    let again = json!([{"id": "m-1", "name": "login", "entity": "acme"}]);
    let (status, body, _) = post(&shoal, "/v1/events", &key, again.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["duplicates"][0]["index"], 0);

    assert!(shoal.terminate(), "clean exit on SIGTERM");
    let events = read_log(dir.path()).await;
    assert_eq!(events.len(), 3);
    let login = events.iter().find(|event| event.name == "login").unwrap();
    assert_eq!(login.entity, "acme");
    assert_eq!(login.tenant, "default");
    assert_eq!(login.timestamp, 1_767_261_600_000);
    assert_eq!(login.properties, r#"{"plan":"pro"}"#);
    let metric = events.iter().find(|event| event.name == "cpu").unwrap();
    assert_eq!(metric.value, Some(0.25));
    let identify = events
        .iter()
        .find(|event| event.name == "identify")
        .unwrap();
    assert_eq!(identify.properties, r#"{"seats":10}"#);
}

#[tokio::test]
async fn ndjson_gzip_basic_auth_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let key = shoal.credentials().write_key;
    let lines = "{\"name\":\"a\",\"entity\":\"e1\"}\n{broken\n{\"name\":\"b\",\"entity\":\"e2\"}\n";
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{key}:"),
    );
    let response = client()
        .post(shoal.url("/v1/events"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gzip(lines.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["code"], "malformed_json");

    let points = json!([
        {"name": "cpu.user", "host": "web1", "tags": {"dc": "eu"}, "timestamp": 1_767_225_600_000_i64, "value": 12.5},
        {"name": "cpu.user", "value": "high"},
    ]);
    let (status, body, _) = post(&shoal, "/v1/metrics", &key, points.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["errors"][0]["field"], "value");

    assert!(shoal.terminate());
    let events = read_log(dir.path()).await;
    let point = events
        .iter()
        .find(|event| event.name == "cpu.user")
        .unwrap();
    assert_eq!(point.entity, "cpu.user{dc=eu,host=web1}");
    assert_eq!(point.value, Some(12.5));
    assert_eq!(point.timestamp, 1_767_225_600_000);
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn a_resent_metric_point_is_stored_once_and_a_new_value_wins() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), Some(NO_CANARY));
    let keys = shoal.credentials();
    let at = shoal_schemas::time::now_millis() / 60_000 * 60_000 - 300_000;
    let point = |value: f64| {
        json!([{"name": "queue.depth", "host": "q1", "timestamp": at, "value": value}]).to_string()
    };
    let (status, body, _) = post(&shoal, "/v1/metrics", &keys.write_key, point(3.0)).await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(1)),
        "{body}"
    );
    // An SDK's retry after a lost answer: acknowledged, not stored again.
    let (status, body, _) = post(&shoal, "/v1/metrics", &keys.write_key, point(3.0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["duplicates"][0]["index"], 0);
    // A new value at the same time is a new event, and the later write wins in the series.
    let (status, body, _) = post(&shoal, "/v1/metrics", &keys.write_key, point(4.0)).await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(1)),
        "{body}"
    );

    wait_caught_up(&shoal, &keys.read_key, Duration::from_secs(20)).await;
    let series = "series=queue.depth%7Bhost%3Dq1%7D";
    assert_eq!(
        series_points(&shoal, &keys.read_key, series, at, at + 59_999).await,
        json!([[at, 4.0]])
    );

    assert!(shoal.terminate());
    let values: Vec<Option<f64>> = read_log(dir.path())
        .await
        .iter()
        .filter(|event| event.name == "queue.depth")
        .map(|event| event.value)
        .collect();
    assert_eq!(values, vec![Some(3.0), Some(4.0)]);
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[limits]
max_body_bytes = 4096
max_decompressed_bytes = 8192
max_batch_events = 5
max_event_bytes = 512
"#;
    let shoal = Shoal::start(dir.path(), Some(config));
    let credentials = shoal.credentials();
    let key = credentials.write_key.clone();

    // Something is stored first; every refusal below must leave it intact.
    let (status, body, _) = post(
        &shoal,
        "/v1/events",
        &key,
        json!([{"id": "keep-1", "name": "kept", "entity": "c1"}]).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let cases: Vec<(&str, String, StatusCode, &str, &str)> = vec![
        (
            "malformed",
            "[{\"name\": ".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "body",
        ),
        (
            "not a batch",
            "\"hello\"".into(),
            StatusCode::BAD_REQUEST,
            "invalid_type",
            "body",
        ),
        (
            "empty",
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "empty_batch",
            "body",
        ),
        (
            "too many events",
            json!([{"name":"a","entity":"b"},{"name":"a","entity":"b"},{"name":"a","entity":"b"},
                   {"name":"a","entity":"b"},{"name":"a","entity":"b"},{"name":"a","entity":"b"}])
            .to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            "body",
        ),
        (
            "body too large",
            json!([{"name":"a","entity":"b","properties":{"x":"y".repeat(5000)}}]).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "body",
        ),
    ];
    for (what, body, status, code, field) in cases {
        let (got, answer, _) = post(&shoal, "/v1/events", &key, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(error_of(&answer), (code, field), "{what}: {answer}");
    }

    // Every event of the batch is bad: 400, each named.
    let all_bad = json!([
        {"entity": "c"},
        {"name": "a"},
        {"name": "a", "entity": "c", "timestamp": "not a time"},
        {"name": "a", "entity": "c", "properties": {"x": "y".repeat(600)}},
    ]);
    let (status, body, _) = post(&shoal, "/v1/events", &key, all_bad.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let fields: Vec<(&str, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| {
            (
                error["code"].as_str().unwrap(),
                error["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("missing", "name"),
            ("missing", "entity"),
            ("invalid_value", "timestamp"),
            ("event_too_large", "event")
        ]
    );

    // Keys: none, unknown, and the wrong kind.
    let response = client()
        .post(shoal.url("/v1/events"))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, body, _) = post(&shoal, "/v1/events", "shw_nope", "[]").await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::UNAUTHORIZED, ("unauthorized", "authorization"))
    );
    let (status, body, _) = post(&shoal, "/v1/events", &credentials.read_key, "[]").await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::FORBIDDEN, ("forbidden", "authorization"))
    );

    // Encodings: unknown, broken gzip, and a gzip bomb past the decompressed cap.
    let response = client()
        .post(shoal.url("/v1/events"))
        .bearer_auth(&key)
        .header("content-encoding", "br")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        error_of(&body),
        ("unsupported_encoding", "content-encoding")
    );
    let response = client()
        .post(shoal.url("/v1/events"))
        .bearer_auth(&key)
        .header("content-encoding", "gzip")
        .body("definitely not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bomb = gzip(&vec![b' '; 100_000]);
    assert!(bomb.len() < 4096);
    let response = client()
        .post(shoal.url("/v1/events"))
        .bearer_auth(&key)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    assert!(shoal.terminate());
    let events = read_log(dir.path()).await;
    assert_eq!(events.len(), 1, "only the first event was ever stored");
    assert_eq!(events[0].name, "kept");
}

#[tokio::test]
async fn overload_and_rate_limits_answer_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[limits]
max_inflight_bytes = 1000
tenant_events_per_second = 5
tenant_burst_events = 5
"#;
    let shoal = Shoal::start(dir.path(), Some(config));
    let key = shoal.credentials().write_key;

    // A body bigger than the whole in-flight budget can never be taken in: 503, come back later.
    let big = json!([{"name": "a", "entity": "b", "properties": {"x": "y".repeat(2000)}}]);
    let (status, body, headers) = post(&shoal, "/v1/events", &key, big.to_string()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_of(&body).0, "overloaded");
    assert!(headers.contains_key("retry-after"));

    let five: Vec<Value> = (0..5)
        .map(|n| json!({"name": "a", "entity": format!("e{n}")}))
        .collect();
    let (status, body, _) = post(&shoal, "/v1/events", &key, Value::from(five).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, headers) = post(
        &shoal,
        "/v1/events",
        &key,
        json!([{"name": "a", "entity": "late"}]).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_of(&body).0, "rate_limited");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "retry-after {wait}");

    assert!(shoal.terminate());
    assert_eq!(read_log(dir.path()).await.len(), 5);
}

#[tokio::test]
async fn admin_manages_tenants_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let admin = shoal.credentials().admin_token;
    let http = client();

    let response = http
        .post(shoal.url("/v1/admin/tenants"))
        .bearer_auth(&admin)
        .body(json!({"id": "acme"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let acme_key = created["write_key"]["secret"].as_str().unwrap().to_owned();
    let acme_key_id = created["write_key"]["id"].as_str().unwrap().to_owned();

    let response = http
        .post(shoal.url("/v1/admin/tenants"))
        .bearer_auth(&admin)
        .body(json!({"id": "acme"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let response = http
        .post(shoal.url("/v1/admin/tenants"))
        .bearer_auth(&admin)
        .body(json!({"id": "bad#id"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_of(&body), ("invalid_value", "id"));
    // A write key is not an admin token.
    let response = http
        .get(shoal.url("/v1/admin/tenants"))
        .bearer_auth(&acme_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let listed: Value = http
        .get(shoal.url("/v1/admin/tenants"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tenant| tenant["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "default"]);

    // The new tenant's events carry its id, whatever the body says.
    let (status, body, _) = post(
        &shoal,
        "/v1/events",
        &acme_key,
        json!([{"name": "signup", "entity": "u1"}]).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let response = http
        .delete(shoal.url(&format!("/v1/admin/keys/{acme_key_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _, _) = post(
        &shoal,
        "/v1/events",
        &acme_key,
        json!([{"name": "signup", "entity": "u2"}]).to_string(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked key stops working"
    );

    assert!(shoal.terminate());
    let events = read_log(dir.path()).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].tenant, "acme");
}

#[tokio::test]
async fn credentials_are_made_once_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let first = shoal.credentials();
    assert!(shoal.terminate());
    let shoal = Shoal::start(dir.path(), None);
    let second = shoal.credentials();
    assert_eq!(first.write_key, second.write_key);
    let (status, body, _) = post(
        &shoal,
        "/v1/events",
        &second.write_key,
        json!([{"name": "a", "entity": "b"}]).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "credentials readable by others: {mode:o}");
    }
}
