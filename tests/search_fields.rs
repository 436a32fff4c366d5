//! The rules' `search:` section end to end: a tenant narrows its searchable fields, the index
//! rebuilds that tenant's documents beside the live ones and swaps them in, and searches then
//! answer with the new fields only.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shoal_tests::{Shoal, client, get_json, wait_caught_up};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const T0: i64 = 1_767_225_600_000;
const TIMEOUT: Duration = Duration::from_secs(120);

const RULES: &str = r#"
conditions:
  trial: { trait: { name: plan, equals: trial } }
scorecards:
  default:
    weights: { trial: 1 }
    bands: { good_from: 50, bad_below: 50 }
search: { properties: [plan], traits: [plan] }
"#;

/// What a search finds: event ids, and `entity:<id>` for entities; and the tenant's index
/// generation it was answered from.
async fn search(shoal: &Shoal, key: &str, q: &str) -> (BTreeSet<String>, u64) {
    let (status, body) = get_json(shoal, &format!("/v1/search?limit=100&q={q}"), key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hits = body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| match hit["id"].as_str() {
            Some(id) => id.to_owned(),
            None => format!("entity:{}", hit["entity"].as_str().unwrap_or_default()),
        })
        .collect();
    (
        hits,
        body["index"]["generation"].as_u64().expect("generation"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_searchable_fields_rebuilds_and_swaps_the_tenants_documents() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::start(dir.path(), None);
    let creds = shoal.credentials();
    let events = json!([
        {"id": "e1", "name": "export", "entity": "acme", "timestamp": T0,
         "properties": {"plan": "trial", "note": "hush"}},
        {"id": "e2", "kind": "identify", "entity": "acme", "timestamp": T0 + 1,
         "traits": {"plan": "trial", "ssn": "secret"}},
    ]);
    let response = client()
        .post(shoal.url("/v1/events"))
        .bearer_auth(&creds.write_key)
        .body(events.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    wait_caught_up(&shoal, &creds.read_key, TIMEOUT).await;
    let deadline = Instant::now() + TIMEOUT;
    while search(&shoal, &creds.read_key, "hush").await.0.len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the event never became searchable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (secret, generation) = search(&shoal, &creds.read_key, "secret").await;
    // The identify event and the entity.
    assert_eq!(
        (secret.len(), generation),
        (2, 0),
        "every trait is searchable by default"
    );

    let response = client()
        .put(shoal.url("/v1/admin/tenants/default/rules?activate=when_ready"))
        .bearer_auth(&creds.admin_token)
        .header("content-type", "application/yaml")
        .body(RULES)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");

    // The swap happens once the rules are live and the rebuild has caught up; until then the
    // old documents answer.
    loop {
        let (hush, generation) = search(&shoal, &creds.read_key, "hush").await;
        if generation == 1 {
            assert!(hush.is_empty(), "note is no longer searchable: {hush:?}");
            break;
        }
        assert_eq!(hush.len(), 1, "generation 0 keeps answering until the swap");
        assert!(
            Instant::now() < deadline,
            "the tenant's documents were never rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(search(&shoal, &creds.read_key, "secret").await.0.is_empty());
    // Both events (client ids become name-based UUIDs) and the entity have plan=trial.
    let (trial, _) = search(&shoal, &creds.read_key, "plan:trial").await;
    assert_eq!(trial.len(), 3, "{trial:?}");
    assert!(trial.contains("entity:acme"), "{trial:?}");
    let (_, body) = get_json(&shoal, "/v1/search?q=plan:trial", &creds.read_key).await;
    assert_eq!(
        body["index"]["fields"],
        json!({"properties": ["plan"], "traits": ["plan"]}),
        "{body}"
    );
    assert!(body["index"]["rebuilding"].is_null(), "{body}");
}
