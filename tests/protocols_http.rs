//! The Segment-compatible, InfluxDB and Mackerel routes over plain HTTP against the real binary:
//! the edges the SDK tests do not reach (keys in the body, limits, bad items and lines, the
//! answers' shapes).

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{Shoal, client, get_json, read_log, wait_caught_up};
use std::io::Write;
use std::time::Duration;

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

#[tokio::test]
async fn segment_routes_keys_limits_and_bad_messages() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let keys = shoal.credentials();
    let http = client();

    // The key only in the body, as some SDKs send it.
    let body = json!({"writeKey": keys.write_key, "batch": [
        {"type": "track", "userId": "u1", "event": "Login", "messageId": "b-1"},
        {"type": "track", "userId": "u1"},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "b-2"},
    ], "context": {"library": {"name": "curl"}}});
    let (status, answer) = send(http.post(shoal.url("/v1/batch")).json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["success"], true);
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"], 1);
    assert_eq!(answer["errors"][0]["index"], 1);
    assert_eq!(answer["errors"][0]["field"], "event");

    // The same messages again, gzip-compressed, key in Basic auth: acknowledged, not stored.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body.to_string().as_bytes()).unwrap();
    let (status, answer) = send(
        http.post(shoal.url("/v1/batch"))
            .header("authorization", basic(&keys.write_key))
            .header("content-encoding", "gzip")
            .body(encoder.finish().unwrap()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["duplicates"].as_array().unwrap().len(), 2);

    // No key anywhere; a read key; a key only in the body of a single call.
    let (status, _) = send(
        http.post(shoal.url("/v1/track"))
            .json(&json!({"userId": "u", "event": "e"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(
        http.post(shoal.url("/v1/track"))
            .header("authorization", basic(&keys.read_key))
            .json(&json!({"userId": "u", "event": "e"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = send(
        http.post(shoal.url("/v1/alias"))
            .json(&json!({"writeKey": keys.write_key, "userId": "u1", "previousId": "anon-1"})),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (StatusCode::OK, json!(1)),
        "{answer}"
    );

    // Every message bad: 400, naming the field.
    let (status, answer) = send(
        http.post(shoal.url("/v1/group"))
            .header("authorization", basic(&keys.write_key))
            .json(&json!({"userId": "u1"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["success"], false);
    assert_eq!(answer["error"]["code"], "missing");
    assert_eq!(answer["error"]["field"], "groupId");

    // Segment's limits: 32 KB a message, 500 KB a batch, both 400.
    let big = "x".repeat(33 * 1024);
    let (status, answer) = send(
        http.post(shoal.url("/v1/track"))
            .header("authorization", basic(&keys.write_key))
            .json(&json!({"userId": "u1", "event": "e", "properties": {"blob": big}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "event_too_large");
    let messages: Vec<Value> = (0..20)
        .map(|n| json!({"type": "track", "userId": "u1", "event": "e", "properties": {"blob": "y".repeat(30 * 1024), "n": n}}))
        .collect();
    let (status, answer) = send(
        http.post(shoal.url("/v1/batch"))
            .header("authorization", basic(&keys.write_key))
            .json(&json!({"batch": messages})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "body_too_large");

    // Broken JSON: the line and column.
    let (status, answer) = send(
        http.post(shoal.url("/v1/batch"))
            .header("authorization", basic(&keys.write_key))
            .body("{\"batch\": [\n{\"type\": }]}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "malformed_json");
    assert_eq!(answer["error"]["line"], 2);

    assert!(shoal.terminate());
    let events = read_log(dir.path()).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    let login = events.iter().find(|event| event.name == "Login").unwrap();
    assert_eq!(
        login.properties_map()["$context"]["library"]["name"],
        "curl"
    );
}

#[tokio::test]
async fn influx_v1_write_auth_precision_and_partial_writes() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let keys = shoal.credentials();
    let http = client();
    let minute = shoal_schemas::time::now_millis() / 60_000 * 60_000 - 300_000;
    let body = format!(
        "# written by a test\nload,host=a v=1 {minute}\nload,host=a v=oops {}\nload,host=a v=2 {}\n",
        minute + 30_000,
        minute + 60_000
    );
    let url = |query: &str| shoal.url(&format!("/write?db=telegraf{query}"));
    let (status, answer) = send(
        http.post(url(&format!(
            "&u=telegraf&p={}&precision=ms",
            keys.write_key
        )))
        .body(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "invalid");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["errors"][0]["line"], 3);
    assert_eq!(answer["errors"][0]["column"], 15);
    assert_eq!(answer["errors"][0]["field"], "field");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("line 3 column 15"),
        "{answer}"
    );

    // All good: 204 and no body; Basic auth with the key as password, seconds precision.
    let telegraf = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("telegraf:{}", keys.write_key))
    );
    let response = http
        .post(url("&precision=s"))
        .header("authorization", telegraf)
        .body(format!("load,host=b v=7 {}", minute / 1000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let (status, _) = send(http.post(url("")).body("load v=1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = send(
        http.post(shoal.url("/api/v2/write?org=o&bucket=b&precision=d"))
            .header("authorization", format!("Token {}", keys.write_key))
            .body("load v=1"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["field"], "precision");
    let ping = http.get(shoal.url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::NO_CONTENT);

    wait_caught_up(&shoal, &keys.read_key, Duration::from_secs(20)).await;
    let (status, body) = get_json(
        &shoal,
        &format!(
            "/v1/series?metric=load.v&from={minute}&to={}&step=1m&agg=last",
            minute + 119_999
        ),
        &keys.read_key,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut found: Vec<(String, Value)> = body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|one| {
            (
                one["key"].as_str().unwrap().to_owned(),
                one["points"].clone(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        vec![
            (
                "load.v{host=a}".to_owned(),
                json!([[minute, 1.0], [minute + 60_000, 2.0]])
            ),
            ("load.v{host=b}".to_owned(), json!([[minute, 7.0]])),
        ]
    );
}

#[tokio::test]
async fn mackerel_tsdb_points_are_host_series() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let keys = shoal.credentials();
    let http = client();
    let minute = shoal_schemas::time::now_millis() / 60_000 * 60 - 600;
    let (status, answer) = send(
        http.post(shoal.url("/api/v0/tsdb"))
            .header("x-api-key", &keys.write_key)
            .json(&json!([
                {"hostId": "2eQGDXqtoXs", "name": "custom.queue.depth", "time": minute, "value": 12},
                {"hostId": "2eQGDXqtoXs", "name": "custom.queue.depth", "time": minute + 60, "value": 15.5},
                {"hostId": "2eQGDXqtoXs", "name": "custom.queue.depth", "value": 1},
            ])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["success"], true);
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["errors"][0]["field"], "time");
    let (status, answer) = send(http.post(shoal.url("/api/v0/tsdb")).json(&json!([]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");

    wait_caught_up(&shoal, &keys.read_key, Duration::from_secs(20)).await;
    let from = minute * 1000;
    let (status, body) = get_json(
        &shoal,
        &format!(
            "/v1/series?series=custom.queue.depth%7Bhost%3D2eQGDXqtoXs%7D&from={from}&to={}&step=1m&agg=last",
            from + 119_999
        ),
        &keys.read_key,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["series"][0]["points"],
        json!([[from, 12.0], [from + 60_000, 15.5]])
    );
}

#[tokio::test]
async fn over_the_tenant_rate_is_429_with_retry_after_on_every_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[limits]\ntenant_events_per_second = 3\ntenant_burst_events = 3\n";
    let shoal = Shoal::start(dir.path(), Some(config));
    let keys = shoal.credentials();
    let http = client();
    let batch = |prefix: &str| {
        let messages: Vec<Value> = (0..3)
            .map(|n| json!({"type": "track", "userId": "u", "event": "e", "messageId": format!("{prefix}-{n}")}))
            .collect();
        json!({"batch": messages})
    };
    let (status, answer) = send(
        http.post(shoal.url("/v1/batch"))
            .header("authorization", basic(&keys.write_key))
            .json(&batch("a")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    for request in [
        http.post(shoal.url("/v1/batch"))
            .header("authorization", basic(&keys.write_key))
            .json(&batch("b")),
        http.post(shoal.url("/api/v2/write"))
            .header("authorization", format!("Token {}", keys.write_key))
            .body("m v=1\nm v=2\nm v=3"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().contains_key("retry-after"));
    }
    assert!(shoal.terminate());
    assert_eq!(read_log(dir.path()).await.len(), 3);
}
