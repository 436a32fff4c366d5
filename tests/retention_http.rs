//! Series retention against the real binary: points days and years old are ingested, rules with
//! a short retention are applied, and the sweep (every second here, `[series]
//! retention_sweep_secs`) makes the series answers switch to the coarser rollups that still hold
//! the range, or say that nothing is kept. Retention is in whole days and points may be sent with
//! old timestamps, so the real clock does: nothing here moves time.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{Shoal, client, get_json, wait_caught_up};
use std::time::{Duration, Instant};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const KEY: &str = "cpu%7Bhost%3Da%7D";

const RULES: &str = r#"
conditions:
  logins: { event_count: { event: login, days: 14, at_least: 1 } }
scorecards:
  default:
    weights: { logins: 1 }
    bands: { good_from: 50, bad_below: 50 }
series: { retention_days: { raw: 1, minute: 2, hour: 60, day: 400 } }
"#;

async fn post_metrics(shoal: &Shoal, write: &str, points: Value) {
    let response = client()
        .post(shoal.url("/v1/metrics"))
        .bearer_auth(write)
        .body(points.to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::OK);
}

async fn series(shoal: &Shoal, read: &str, from: i64, to: i64, step: &str, agg: &str) -> Value {
    let path = format!("/v1/series?series={KEY}&from={from}&to={to}&step={step}&agg={agg}");
    let (status, body) = get_json(shoal, &path, read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Polls `check` on the series answer until it holds (bounded).
async fn wait_for(
    shoal: &Shoal,
    read: &str,
    query: (i64, i64, &str, &str),
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = series(shoal, read, query.0, query.1, query.2, query.3).await;
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "retention not applied: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn expired_resolutions_are_deleted_and_served_from_coarser_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[canary]\nenabled = false\n[series]\nretention_sweep_secs = 1\n";
    let shoal = Shoal::start(dir.path(), Some(config));
    let keys = shoal.credentials();
    let (write, read) = (keys.write_key.as_str(), keys.read_key.as_str());

    let now = shoal_schemas::time::now_millis();
    let old_hour = (now - 3 * DAY).div_euclid(HOUR) * HOUR;
    let ancient = (now - 1000 * DAY).div_euclid(DAY) * DAY;
    let recent = now - 10 * MINUTE;
    post_metrics(
        &shoal,
        write,
        json!([
            {"name": "cpu", "host": "a", "timestamp": old_hour + 10_000, "value": 1.0},
            {"name": "cpu", "host": "a", "timestamp": old_hour + 20_000, "value": 3.0},
            {"name": "cpu", "host": "a", "timestamp": old_hour + 70_000, "value": 5.0},
            {"name": "cpu", "host": "a", "timestamp": ancient + 1000, "value": 9.0},
            {"name": "cpu", "host": "a", "timestamp": recent, "value": 7.0},
        ]),
    )
    .await;
    wait_caught_up(&shoal, read, Duration::from_secs(60)).await;

    // The defaults keep raw points 30 days: the old hour is still there at 1 s steps.
    let hour = (old_hour, old_hour + HOUR - 1, "1s", "sum");
    let body = series(&shoal, read, hour.0, hour.1, hour.2, hour.3).await;
    assert_eq!(body["series"][0]["resolution"], "raw", "{body}");
    assert_eq!(
        body["series"][0]["points"].as_array().map(Vec::len),
        Some(3)
    );

    let response = client()
        .put(shoal.url("/v1/admin/tenants/default/rules?activate=when_ready"))
        .bearer_auth(&keys.admin_token)
        .header("content-type", "application/yaml")
        .body(RULES)
        .send()
        .await
        .expect("put rules");
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // Raw kept 1 day and minutes 2: the 3-day-old hour comes from the hour rollup, whole.
    let body = wait_for(&shoal, read, hour, |body| {
        body["series"][0]["resolution"] == "hour"
    })
    .await;
    assert_eq!(
        body["resolution"], "raw",
        "the step still asks for raw points"
    );
    assert_eq!(
        body["series"][0]["points"],
        json!([[old_hour, 9.0]]),
        "{body}"
    );
    assert!(body["series"][0].get("expired_before").is_none(), "{body}");
    let body = series(&shoal, read, old_hour, old_hour + HOUR - 1, "1m", "count").await;
    assert_eq!(body["resolution"], "minute");
    assert_eq!(body["series"][0]["resolution"], "hour", "{body}");
    assert_eq!(
        body["series"][0]["points"],
        json!([[old_hour, 3.0]]),
        "{body}"
    );

    // Recent points keep every resolution.
    let body = series(&shoal, read, now - HOUR, now, "1m", "max").await;
    assert_eq!(body["series"][0]["resolution"], "minute", "{body}");
    let minute = recent.div_euclid(MINUTE) * MINUTE;
    assert_eq!(
        body["series"][0]["points"],
        json!([[minute, 7.0]]),
        "{body}"
    );

    // Older than even the day rollups keep (400 days, whole 512-day blocks): gone, and the
    // answer says from when it holds data.
    let body = wait_for(
        &shoal,
        read,
        (ancient, ancient + DAY - 1, "1d", "sum"),
        |body| body["series"][0]["expired_before"].is_i64(),
    )
    .await;
    assert_eq!(body["series"][0]["resolution"], "day", "{body}");
    assert_eq!(body["series"][0]["points"], json!([]), "{body}");
    let expired_before = body["series"][0]["expired_before"].as_i64().unwrap_or(0);
    assert!(
        expired_before > ancient && expired_before <= now - 400 * DAY,
        "{body}"
    );

    // A late point into the expired old hour adds to the hour rollup without bringing back
    // the raw bucket.
    post_metrics(
        &shoal,
        write,
        json!([{"name": "cpu", "host": "a", "timestamp": old_hour + 30_000, "value": 11.0}]),
    )
    .await;
    wait_caught_up(&shoal, read, Duration::from_secs(60)).await;
    let body = series(&shoal, read, hour.0, hour.1, hour.2, hour.3).await;
    assert_eq!(body["series"][0]["resolution"], "hour", "{body}");
    assert_eq!(
        body["series"][0]["points"],
        json!([[old_hour, 20.0]]),
        "{body}"
    );
    assert!(shoal.terminate(), "graceful stop");
}
