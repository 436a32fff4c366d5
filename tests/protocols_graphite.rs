//! The Graphite plaintext listener against the real binary: lines sent over TCP on 127.0.0.1
//! (good ones, a bad one, one too long, a NaN, one split across two writes) are stored with
//! their exact values, the rejects are counted in `/metrics`, a resent line is stored once, and
//! SIGTERM with a connection still open exits cleanly.

use serde_json::json;
use shoal_tests::{NO_CANARY, Shoal, read_log, scrape, series_points, value, wait_caught_up};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Waits (bounded) until the Graphite line counter for `outcome` reaches `want`: the protocol
/// has no answer, so the counter is how a sender's lines are known to be appended.
async fn wait_lines(shoal: &Shoal, outcome: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = scrape(shoal).await;
        let seen = value(
            &metrics,
            "shoal_ingest_graphite_lines_total",
            &[("outcome", outcome)],
        );
        if seen >= want {
            assert_eq!(seen, want, "more {outcome} lines than sent");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{outcome} lines: {seen}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn graphite_lines_become_series_with_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{NO_CANARY}[graphite]\nenabled = true\nlisten = \"127.0.0.1:0\"\nmax_line_bytes = 256\n"
    );
    let shoal = Shoal::start(dir.path(), Some(&config));
    let keys = shoal.credentials();
    let address = shoal
        .graphite
        .clone()
        .expect("the graphite listener's address");
    let minute = shoal_schemas::time::now_millis() / 60_000 * 60 - 600;
    let next = (minute + 60).to_string();
    let (next_head, next_tail) = next.split_at(5);

    let mut sender = TcpStream::connect(&address).await.unwrap();
    let first = format!(
        "servers.web1.load 1.5 {minute}\n\
         servers.web1.load oops {minute}\n\
         cpu.user;host=web1;dc=eu 0.25 {minute}\n\
         {} 1 {minute}\n\
         servers.web1.load 2.5 {next}\r\n\
         cpu.user;dc=eu;host=web1 0.75 {next_head}",
        "x".repeat(300)
    );
    sender.write_all(first.as_bytes()).await.unwrap();
    sender.flush().await.unwrap();
    // The split line's first half must not be read as a whole line with a short timestamp.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = format!("{next_tail}\nservers.web1.load nan {minute}\n");
    sender.write_all(second.as_bytes()).await.unwrap();
    sender.shutdown().await.unwrap();
    drop(sender);

    wait_lines(&shoal, "stored", 4.0).await;
    wait_lines(&shoal, "rejected", 2.0).await;
    wait_lines(&shoal, "skipped_nan", 1.0).await;
    let metrics = scrape(&shoal).await;
    let rejects = |reason: &str| {
        value(
            &metrics,
            "shoal_ingest_rejects_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejects("invalid_value"), 1.0);
    assert_eq!(rejects("event_too_large"), 1.0);

    wait_caught_up(&shoal, &keys.read_key, Duration::from_secs(20)).await;
    let from = minute * 1000;
    let to = from + 119_999;
    assert_eq!(
        series_points(&shoal, &keys.read_key, "metric=servers.web1.load", from, to).await,
        json!([[from, 1.5], [from + 60_000, 2.5]])
    );
    let tagged = "series=cpu.user%7Bdc%3Deu%2Chost%3Dweb1%7D";
    assert_eq!(
        series_points(&shoal, &keys.read_key, tagged, from, to).await,
        json!([[from, 0.25], [from + 60_000, 0.75]])
    );

    // A sender that resends after reconnecting: the same point is not stored twice.
    let mut again = TcpStream::connect(&address).await.unwrap();
    again
        .write_all(format!("servers.web1.load 1.5 {minute}\n").as_bytes())
        .await
        .unwrap();
    again.shutdown().await.unwrap();
    wait_lines(&shoal, "duplicate", 1.0).await;

    // An idle connection must not hold up the shutdown.
    let _idle = TcpStream::connect(&address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        shoal.terminate(),
        "clean exit with a graphite connection open"
    );
    let events = read_log(dir.path()).await;
    let mut stored: Vec<(String, i64, f64)> = events
        .iter()
        .map(|event| {
            assert_eq!(event.tenant, "default");
            (
                event.entity.clone(),
                event.timestamp,
                event.value.unwrap_or(f64::NAN),
            )
        })
        .collect();
    stored.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        stored,
        vec![
            ("cpu.user{dc=eu,host=web1}".to_owned(), from, 0.25),
            ("cpu.user{dc=eu,host=web1}".to_owned(), from + 60_000, 0.75),
            ("servers.web1.load{}".to_owned(), from, 1.5),
            ("servers.web1.load{}".to_owned(), from + 60_000, 2.5),
        ]
    );
}

#[tokio::test]
async fn graphite_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), Some(NO_CANARY));
    assert_eq!(shoal.graphite, None);
    assert!(shoal.terminate());
}
