//! Full-text search end to end: the real binary, two tenants, every query syntax, filters,
//! facets and pages over HTTP; and SIGKILL during indexing, after which the index must equal
//! one built by a clean replay of the same log.

use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{Shoal, client, get_json, read_log, wait_caught_up};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const T0: i64 = 1_767_225_600_000;
const CATCH_UP: Duration = Duration::from_secs(180);

/// Makes tenant `id` and returns its (write key, read key).
async fn create_tenant(shoal: &Shoal, id: &str) -> (String, String) {
    let response = client()
        .post(shoal.url("/v1/admin/tenants"))
        .bearer_auth(shoal.credentials().admin_token)
        .body(json!({ "id": id }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let secret = |kind: &str| created[kind]["secret"].as_str().unwrap().to_owned();
    (secret("write_key"), secret("read_key"))
}

async fn send(shoal: &Shoal, key: &str, events: &[Value]) {
    let response = client()
        .post(shoal.url("/v1/events"))
        .bearer_auth(key)
        .body(Value::from(events.to_vec()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

fn track(id: &str, kind: &str, name: &str, entity: &str, offset: i64, properties: Value) -> Value {
    let field = if kind == "identify" {
        "traits"
    } else {
        "properties"
    };
    json!({"id": id, "kind": kind, "name": name, "entity": entity, "timestamp": T0 + offset, field: properties})
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The search's positions per shard once they equal the archive projection's checkpoints,
/// which are at the head of the log once `wait_caught_up` returns and ingest has stopped.
async fn wait_search_caught_up(shoal: &Shoal, read_key: &str) {
    wait_caught_up(shoal, read_key, CATCH_UP).await;
    let (_, status) = get_json(shoal, "/v1/projections", read_key).await;
    let archive = status["projections"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "archive"))
        .expect("archive projection");
    let head: BTreeMap<String, String> = archive["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|shard| {
            Some((
                shard["shard"].as_str()?.to_owned(),
                shard["position"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let deadline = std::time::Instant::now() + CATCH_UP;
    loop {
        let (code, body) = get_json(shoal, "/v1/search?limit=1", read_key).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let searchable: BTreeMap<String, String> = body["freshness"]["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|shard| {
                (
                    shard["shard"].as_str().unwrap().to_owned(),
                    shard["position"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if searchable == head {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "search did not catch up: {searchable:?} vs {head:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Every hit of a search, following `next`, as the raw hit objects.
async fn all_hits(shoal: &Shoal, key: &str, params: &str) -> (u64, Vec<Value>) {
    let mut hits = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/search?limit=100&{params}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (code, body) = get_json(shoal, &path, key).await;
        assert_eq!(code, StatusCode::OK, "{path}: {body}");
        hits.extend(body["hits"].as_array().unwrap().iter().cloned());
        match body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (body["total"].as_u64().unwrap(), hits),
        }
    }
}

/// The ids (events) and `entity:<id>` (entities) of every hit of `q` with `extra` parameters.
async fn found(shoal: &Shoal, key: &str, q: &str, extra: &str) -> BTreeSet<String> {
    let (total, hits) = all_hits(shoal, key, &format!("q={}&{extra}", encode(q))).await;
    let keys: BTreeSet<String> = hits
        .iter()
        .map(|hit| match hit["id"].as_str() {
            Some(id) => id.to_owned(),
            None => format!("entity:{}", hit["entity"].as_str().unwrap()),
        })
        .collect();
    assert_eq!(keys.len() as u64, total, "{q}: every hit once");
    keys
}

fn set<const N: usize>(ids: [&str; N]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_syntax_filters_facets_and_pages_stay_within_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let creds = shoal.credentials();
    let (beta_write, beta_read) = create_tenant(&shoal, "beta").await;
    let (a1, a2, a3, a4) = (id(), id(), id(), id());
    let mut mine = vec![
        track(
            &a1,
            "track",
            "export_csv",
            "acme",
            1_000,
            json!({"plan": "trial", "note": "error while exporting", "rows": 12}),
        ),
        track(
            &a2,
            "track",
            "report_viewed",
            "acme",
            2_000,
            json!({"report": "churn export"}),
        ),
        track(
            &a3,
            "page",
            "pricing",
            "globex",
            3_000,
            json!({"path": "/pricing", "plan": "enterprise"}),
        ),
        track(
            &a4,
            "identify",
            "identify",
            "globex",
            4_000,
            json!({"plan": "enterprise", "address": {"city": "Paris"}}),
        ),
    ];
    let clicks: Vec<String> = (0..12).map(|_| id()).collect();
    for (n, click) in clicks.iter().enumerate() {
        mine.push(track(
            click,
            "track",
            "button_clicked",
            "initech",
            10_000 + n as i64,
            json!({"button": "save"}),
        ));
    }
    send(&shoal, &creds.write_key, &mine).await;
    // The other tenant uses the same words, entities and names.
    let (b1, b2, b3) = (id(), id(), id());
    send(
        &shoal,
        &beta_write,
        &[
            track(
                &b1,
                "track",
                "export_csv",
                "acme",
                1_500,
                json!({"plan": "trial", "note": "error export"}),
            ),
            track(
                &b2,
                "identify",
                "identify",
                "acme",
                2_500,
                json!({"plan": "trial"}),
            ),
            track(
                &b3,
                "page",
                "pricing",
                "globex",
                3_500,
                json!({"path": "/pricing", "button": "save"}),
            ),
        ],
    )
    .await;
    wait_search_caught_up(&shoal, &creds.read_key).await;
    let theirs = set([&b1, &b2, &b3]);
    let read = &creds.read_key;

    let window = format!("type=event&from={}&to={}", T0 + 2_000, T0 + 3_000);
    let cases: Vec<(&str, &str, BTreeSet<String>)> = vec![
        ("export", "type=event", set([&a1, &a2])),
        ("\"churn export\"", "type=event", set([&a2])),
        ("\"export churn\"", "type=event", set([])),
        ("export AND NOT churn", "type=event", set([&a1])),
        ("churn OR pricing", "type=event", set([&a2, &a3])),
        ("name:export plan:trial", "", set([&a1])),
        ("plan:enterprise", "type=entity", set(["entity:globex"])),
        ("plan:enterprise", "", set([&a3, &a4, "entity:globex"])),
        ("address.city:paris", "type=event", set([&a4])),
        ("", "type=event&kind=page&kind=identify", set([&a3, &a4])),
        ("", &window, set([&a2, &a3])),
        ("acme", "type=entity", set(["entity:acme"])),
    ];
    for (q, extra, expected) in &cases {
        let hits = found(&shoal, read, q, extra).await;
        assert_eq!(&hits, expected, "q={q} {extra}");
        assert!(
            hits.is_disjoint(&theirs),
            "q={q}: another tenant's document"
        );
    }
    // The other tenant sees only its own, for the same queries.
    assert_eq!(
        found(&shoal, &beta_read, "export", "type=event").await,
        set([&b1])
    );
    assert_eq!(
        found(&shoal, &beta_read, "plan:trial", "").await,
        set([&b1, &b2, "entity:acme"])
    );
    assert_eq!(found(&shoal, &beta_read, "save", "").await, set([&b3]));
    let everything = found(&shoal, read, "", "").await;
    assert!(everything.is_disjoint(&theirs));
    // 16 events and 3 entities.
    assert_eq!(everything.len(), 19);

    // Pages by time, newest first, with the facets of every match on each page when asked.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (code, page) = get_json(
            &shoal,
            &format!("/v1/search?q=save&sort=time_desc&limit=5&facets=name{cursor}"),
            read,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 12);
        assert_eq!(page["total_exact"], true);
        assert_eq!(
            page["facets"],
            json!({"name": [{"value": "button_clicked", "count": 12}]})
        );
        for hit in page["hits"].as_array().unwrap() {
            assert!(
                hit["snippet"].as_str().unwrap().contains("<b>save</b>"),
                "{hit}"
            );
            seen.push(hit["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let newest_first: Vec<String> = clicks.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    let (_, plain) = get_json(&shoal, "/v1/search?type=event", read).await;
    assert!(
        plain.get("facets").is_none(),
        "facets only when asked: {plain}"
    );
    assert_eq!(
        (plain["total"].as_u64(), plain["total_exact"].as_bool()),
        (Some(16), Some(true))
    );
    let (_, facets) = get_json(&shoal, "/v1/search?type=event&facets=name,stage", read).await;
    assert_eq!(facets["facets"]["stage"], json!([]));
    assert_eq!(
        facets["facets"]["name"],
        json!([
            {"value": "button_clicked", "count": 12},
            {"value": "export_csv", "count": 1},
            {"value": "identify", "count": 1},
            {"value": "pricing", "count": 1},
            {"value": "report_viewed", "count": 1},
        ])
    );
    assert!(facets["freshness"]["last_commit"].is_i64());
    assert!(
        facets["freshness"].get("docs").is_none(),
        "the shared index's size is not a tenant's business"
    );
    assert!(facets["freshness"]["received_through"].is_i64());

    // Bad syntax names the parameter and the character where the parser stopped.
    let (code, body) = get_json(
        &shoal,
        &format!("/v1/search?q={}", encode("export \"churn")),
        read,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_query");
    assert_eq!(body["error"]["field"], "q");
    assert_eq!(body["error"]["position"], 13);
    let (code, body) = get_json(
        &shoal,
        &format!("/v1/search?q={}", encode("plan:trial AND")),
        read,
    )
    .await;
    assert_eq!(
        (code, body["error"]["position"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(11))
    );
    let (code, body) = get_json(&shoal, "/v1/search?sort=best", read).await;
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("sort"))
    );
    // Read keys only.
    let (code, _) = get_json(&shoal, "/v1/search?q=export", &creds.write_key).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = get_json(&shoal, "/v1/search?q=export", "nope").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

const WORDS: [&str; 8] = [
    "alpha", "beta", "gamma", "delta", "red", "green", "blue", "amber",
];
const EVENTS_PER_ROUND: usize = 4_000;

fn random_batch(rng: &mut impl Rng) -> Vec<Value> {
    (0..50)
        .map(|_| {
            let entity = format!("customer-{}", rng.random_range(0..30));
            let words = format!("{} {}", WORDS[rng.random_range(0..8)], WORDS[rng.random_range(0..8)]);
            if rng.random_range(0..10) == 0 {
                let traits = json!({"plan": WORDS[rng.random_range(0..4)], "color": WORDS[rng.random_range(4..8)]});
                json!({"id": id(), "kind": "identify", "entity": entity, "traits": traits})
            } else {
                let name = ["signup", "export_csv", "page_view"][rng.random_range(0..3)];
                json!({"id": id(), "name": name, "entity": entity, "properties": {"text": words, "color": WORDS[rng.random_range(4..8)]}})
            }
        })
        .collect()
}

/// Writers posting batches until `EVENTS_PER_ROUND` are acknowledged or the server dies.
async fn ingest(
    base: String,
    key: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < EVENTS_PER_ROUND {
        let batch = random_batch(&mut rng);
        let answer = client()
            .post(format!("{base}/v1/events"))
            .bearer_auth(&key)
            .body(Value::from(batch.clone()).to_string())
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => {
                sent.fetch_add(batch.len(), Ordering::Relaxed);
            }
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// What the index answers for a fixed set of queries, per tenant: totals, hit keys, and the
/// entity documents whole (traits, last seen), which must also match after upserts.
async fn snapshot(shoal: &Shoal, keys: &[(String, String)]) -> BTreeMap<String, Value> {
    let mut answers = BTreeMap::new();
    let queries = [
        "",
        "alpha",
        "alpha beta",
        "\"red green\"",
        "gamma OR delta",
        "color:blue",
        "name:signup -amber",
        "plan:alpha",
    ];
    for (tenant, key) in keys {
        for q in queries {
            for kind in ["event", "entity"] {
                let (total, hits) =
                    all_hits(shoal, key, &format!("q={}&type={kind}", encode(q))).await;
                let mut items: Vec<Value> = hits
                    .into_iter()
                    .map(|hit| json!([hit["id"], hit["entity"], hit["timestamp"], hit["traits"]]))
                    .collect();
                items.sort_by_key(|item| item.to_string());
                answers.insert(
                    format!("{tenant} {kind} q={q}"),
                    json!({"total": total, "hits": items}),
                );
            }
        }
    }
    answers
}

fn copy_dir(from: &Path, to: &Path, skip: &str) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == skip {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target, skip);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_after_sigkill_equals_a_clean_replay() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = dir.path().join("crashed");
    // Commits often, so that kills land between commits with work pending.
    let config = "[search]\ncommit_interval_ms = 200\ncommit_docs = 500\n";
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut keys = Vec::new();
    let mut last_commit: Option<i64> = None;
    for round in 0..3 {
        let shoal = Shoal::start(&crashed, Some(config));
        if round == 0 {
            let creds = shoal.credentials();
            keys.push(("default".to_owned(), creds.write_key, creds.read_key));
            let (write, read) = create_tenant(&shoal, "beta").await;
            keys.push(("beta".to_owned(), write, read));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(n, (_, write, _))| {
                tokio::spawn(ingest(
                    shoal.base.clone(),
                    write.clone(),
                    round * 10 + n as u64,
                    stop.clone(),
                    sent.clone(),
                ))
            })
            .collect();
        // Kill once indexing is under way: some commits made, more pending.
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_200..2_500))).await;
        let (_, before) = get_json(&shoal, "/v1/search?limit=1", &keys[0].2).await;
        let committed = before["freshness"]["last_commit"].as_i64();
        assert!(
            committed > last_commit,
            "no commit during this round before the kill: {before}"
        );
        last_commit = committed;
        shoal.kill();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.unwrap();
        }
    }
    let shoal = Shoal::start(&crashed, Some(config));
    let read_keys: Vec<(String, String)> = keys
        .iter()
        .map(|(tenant, _, read)| (tenant.clone(), read.clone()))
        .collect();
    wait_search_caught_up(&shoal, &read_keys[0].1).await;
    let after_crashes = snapshot(&shoal, &read_keys).await;
    assert!(shoal.terminate(), "clean stop");

    // Every event of the log is in the index once: the per-tenant event totals match the log.
    let log = read_log(&crashed).await;
    for (tenant, _) in &read_keys {
        let in_log = log.iter().filter(|event| &event.tenant == tenant).count() as u64;
        assert!(in_log > 0);
        assert_eq!(
            after_crashes[&format!("{tenant} event q=")]["total"],
            in_log,
            "{tenant}"
        );
        let entities: BTreeSet<&str> = log
            .iter()
            .filter(|e| &e.tenant == tenant)
            .map(|e| e.entity.as_str())
            .collect();
        assert_eq!(
            after_crashes[&format!("{tenant} entity q=")]["total"],
            entities.len() as u64,
            "{tenant}"
        );
    }

    // A clean replay: the same data directory without the index.
    let clean = dir.path().join("clean");
    copy_dir(&crashed, &clean, "search");
    assert!(!clean.join("search").exists());
    let replayed = Shoal::start(&clean, Some(config));
    wait_search_caught_up(&replayed, &read_keys[0].1).await;
    let from_scratch = snapshot(&replayed, &read_keys).await;
    for (query, answer) in &from_scratch {
        assert_eq!(answer, &after_crashes[query], "{query}");
    }
    assert_eq!(from_scratch.len(), after_crashes.len());
}
