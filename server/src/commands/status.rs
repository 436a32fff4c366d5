//! `shoal status`: every projection's version, events applied, dead letters and lag, each
//! rebuild's rate, share done and time left, and the lag of every shard — from
//! `GET /v1/projections` with a read key.

use super::{cell, duration_text, print_json};
use crate::client::{Client, ClientArgs, Secret};
use serde_json::Value;

pub async fn run(args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(args, Secret::ReadKey)?;
    let status = client.get("/v1/projections").await?;
    if args.json {
        return print_json(&status);
    }
    print!("{}", render(client.base(), &status));
    Ok(())
}

fn render(base: &str, status: &Value) -> String {
    let projections = status["projections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut summary = Vec::new();
    let mut shards = Vec::new();
    let mut dead_letters = 0;
    for projection in &projections {
        let name = cell(&projection["name"]);
        let shard_list = projection["shards"].as_array().cloned().unwrap_or_default();
        dead_letters += projection["dead_letters"].as_u64().unwrap_or(0);
        summary.push(vec![
            name.clone(),
            cell(&projection["version"]),
            cell(&projection["events_applied"]),
            cell(&projection["dead_letters"]),
            lag_records(&shard_list),
            lag_ms(&shard_list),
            state(&projection["progress"], &shard_list),
        ]);
        for shard in &shard_list {
            shards.push(vec![
                name.clone(),
                cell(&shard["shard"]),
                cell(&shard["position"]),
                cell(&shard["lag_records"]),
                cell(&shard["lag_ms"]),
                cell(&shard["retries"]),
                shard["last_error"]
                    .as_str()
                    .map(one_line)
                    .unwrap_or_else(|| "-".to_owned()),
            ]);
        }
    }
    let mut out = format!(
        "shoal at {base}: {} projections, {dead_letters} dead letters\n\n",
        projections.len()
    );
    out.push_str(&super::table(
        &[
            "PROJECTION",
            "VERSION",
            "APPLIED",
            "DEAD LETTERS",
            "LAG (EVENTS)",
            "LAG (MS)",
            "STATE",
        ],
        &summary,
    ));
    out.push('\n');
    out.push_str(&super::table(
        &[
            "PROJECTION",
            "SHARD",
            "CHECKPOINT",
            "LAG (EVENTS)",
            "LAG (MS)",
            "RETRIES",
            "LAST ERROR",
        ],
        &shards,
    ));
    if dead_letters > 0 {
        out.push_str("\nsee them with `shoal dlq list`\n");
    }
    out
}

/// The sum over shards, or `?` when a shard's lag is not known exactly.
fn lag_records(shards: &[Value]) -> String {
    shards
        .iter()
        .map(|shard| shard["lag_records"].as_u64())
        .sum::<Option<u64>>()
        .map_or_else(|| "?".to_owned(), |sum| sum.to_string())
}

/// The largest over shards.
fn lag_ms(shards: &[Value]) -> String {
    shards
        .iter()
        .filter_map(|shard| shard["lag_ms"].as_u64())
        .max()
        .map_or_else(|| "-".to_owned(), |max| max.to_string())
}

/// Caught up, following the log's head, or replaying at what rate, how far and how long still.
fn state(progress: &Value, shards: &[Value]) -> String {
    if !progress.is_object() {
        return "not running here".to_owned();
    }
    if progress["caught_up"].as_bool() == Some(true) {
        let idle = shards
            .iter()
            .all(|shard| shard["lag_records"].as_u64() == Some(0));
        return if idle { "caught up" } else { "following" }.to_owned();
    }
    let mut text = format!(
        "catching up: {:.0} events/s",
        progress["events_per_second"].as_f64().unwrap_or(0.0)
    );
    if let Some(fraction) = progress["fraction_done"].as_f64() {
        text.push_str(&format!(", {:.1}% done", fraction * 100.0));
    }
    if let Some(eta) = progress["eta_seconds"].as_f64() {
        text.push_str(&format!(", {} left", duration_text(eta)));
    }
    text
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(80) {
        Some((index, _)) => format!("{}…", &line[..index]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rebuilds_show_rate_share_and_time_left() {
        let status = json!({"projections": [
            {"name": "entities", "version": 1, "events_applied": 10, "dead_letters": 0,
             "progress": {"caught_up": true, "events_replayed": 10, "events_per_second": 5.0},
             "shards": [{"shard": "0000", "position": "1:0", "lag_records": 0, "lag_ms": 0,
                         "retries": 0, "last_error": null}]},
            {"name": "scores.acme", "version": 2, "events_applied": 500, "dead_letters": 3,
             "progress": {"caught_up": false, "events_replayed": 500, "events_per_second": 1234.4,
                          "fraction_done": 0.25, "eta_seconds": 90.0},
             "shards": [{"shard": "0000", "position": null, "lag_records": 7, "lag_ms": 40,
                         "retries": 1, "last_error": "boom\nmore"},
                        {"shard": "0001", "position": null, "lag_records": null, "lag_ms": 900,
                         "retries": 0, "last_error": null}]}
        ]});
        let text = render("http://x", &status);
        assert!(
            text.starts_with("shoal at http://x: 2 projections, 3 dead letters"),
            "{text}"
        );
        assert!(text.contains("caught up"), "{text}");
        assert!(!text.contains("following"), "{text}");
        assert!(
            text.contains("catching up: 1234 events/s, 25.0% done, 1m30s left"),
            "{text}"
        );
        let scores = text
            .lines()
            .find(|line| line.starts_with("scores.acme  2"))
            .expect(&text);
        assert!(scores.contains(" ? "), "unknown lag shows as ?: {scores}");
        assert!(scores.contains(" 900 "), "largest lag in ms: {scores}");
        assert!(text.contains("boom") && !text.contains("more"), "{text}");
        assert!(text.contains("shoal dlq list"), "{text}");
    }
}
