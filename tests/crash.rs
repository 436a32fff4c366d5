//! Crash safety of durable ingest and of projection, end to end: the real binary under sustained concurrent
//! ingest is killed with SIGKILL at random moments and restarted; every event whose request was
//! answered 2xx must be in the log exactly once, nothing torn may be misread, and retrying the
//! unanswered requests after the restart must not create second copies; and once the projector
//! has caught up, the read models count every acknowledged event exactly once.

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shoal_tests::{Shoal, client, get_json, read_log, wait_caught_up};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRITERS: usize = 8;
const ROUNDS: usize = 3;

#[derive(Default)]
struct Ledger {
    /// Client ids whose request was answered 200, with their entity: they must be stored
    /// exactly once.
    acked: HashMap<String, String>,
    /// Batches that got no answer (the server died under them): stored or not, never twice.
    unanswered: Vec<Vec<Value>>,
}

fn batch(rng: &mut impl Rng) -> Vec<Value> {
    let size = rng.random_range(1..=50);
    (0..size)
        .map(|_| {
            json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "name": "page_view",
                "entity": format!("customer-{}", rng.random_range(0..40)),
                "properties": {"path": "/pricing", "ms": rng.random_range(1..5000)},
            })
        })
        .collect()
}

async fn send(base: &str, key: &str, events: &[Value]) -> Option<Value> {
    let response = client()
        .post(format!("{base}/v1/events"))
        .bearer_auth(key)
        .body(Value::from(events.to_vec()).to_string())
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<Value>().await.ok()
}

fn ids(events: &[Value]) -> impl Iterator<Item = (String, String)> + '_ {
    events.iter().map(|event| {
        (
            event["id"].as_str().unwrap().to_owned(),
            event["entity"].as_str().unwrap().to_owned(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut total_kills = 0;

    for round in 0..ROUNDS {
        let shoal = Shoal::start(dir.path(), None);
        let key = shoal.credentials().write_key;

        // Retry what the previous crash left unanswered, with the same ids: the dedup window,
        // rebuilt from the log on restart, must make these exactly-once.
        let pending = std::mem::take(&mut ledger.lock().unwrap().unanswered);
        for events in pending {
            let answer = send(&shoal.base, &key, &events)
                .await
                .expect("retry after restart must be answered");
            assert_eq!(answer["rejected"], 0, "{answer}");
            ledger.lock().unwrap().acked.extend(ids(&events));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for _ in 0..WRITERS {
            let (stop, ledger, base, key) = (
                stop.clone(),
                ledger.clone(),
                shoal.base.clone(),
                key.clone(),
            );
            writers.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::from_os_rng();
                while !stop.load(Ordering::Relaxed) {
                    let events = batch(&mut rng);
                    match send(&base, &key, &events).await {
                        Some(answer) => {
                            assert_eq!(answer["rejected"], 0, "{answer}");
                            ledger.lock().unwrap().acked.extend(ids(&events));
                        }
                        None => {
                            ledger.lock().unwrap().unanswered.push(events);
                            return;
                        }
                    }
                }
            }));
        }
        let delay = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let acked_before = ledger.lock().unwrap().acked.len();
        shoal.kill();
        total_kills += 1;
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            tokio::time::timeout(Duration::from_secs(60), writer)
                .await
                .expect("writer stops after the kill")
                .expect("writer did not panic");
        }
        assert!(
            acked_before > 0,
            "round {round}: the server took no load before the kill"
        );
    }

    // A last clean start: recovery must accept the unanswered retries too, then stop cleanly.
    let shoal = Shoal::start(dir.path(), None);
    let key = shoal.credentials().write_key;
    let pending = std::mem::take(&mut ledger.lock().unwrap().unanswered);
    for events in pending {
        let answer = send(&shoal.base, &key, &events)
            .await
            .expect("retry answered");
        assert_eq!(answer["rejected"], 0);
        ledger.lock().unwrap().acked.extend(ids(&events));
    }

    // The read models, caught up after the crashes, count exactly the acknowledged events: the
    // projector was killed mid-batch too, and replays from its checkpoints never double count.
    let read_key = shoal.credentials().read_key;
    wait_caught_up(&shoal, &read_key, Duration::from_secs(60)).await;
    let mut per_entity: HashMap<String, u64> = HashMap::new();
    for entity in ledger.lock().unwrap().acked.values() {
        *per_entity.entry(entity.clone()).or_default() += 1;
    }
    for (entity, expected) in &per_entity {
        let (status, body) = get_json(&shoal, &format!("/v1/entities/{entity}"), &read_key).await;
        assert!(status.is_success(), "{entity}: {body}");
        assert_eq!(body["events"].as_u64(), Some(*expected), "{entity}: {body}");
        assert_eq!(
            body["counts"]["page_view"].as_u64(),
            Some(*expected),
            "{entity}"
        );
    }

    assert!(shoal.terminate(), "clean exit on SIGTERM");

    let stored = read_log(dir.path()).await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for event in &stored {
        assert_eq!(event.name, "page_view", "no misread event");
        assert!(event.entity.starts_with("customer-"), "no misread event");
        *copies.entry(event.id.to_string()).or_default() += 1;
    }
    let ledger = ledger.lock().unwrap();
    let twice: Vec<_> = copies.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "events stored twice: {twice:?}");
    let missing: Vec<_> = ledger
        .acked
        .keys()
        .filter(|id| !copies.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost after {total_kills} kills, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    // Every stored event was sent by us, and after retrying everything, all were acknowledged.
    assert_eq!(copies.len(), ledger.acked.len());
    eprintln!(
        "{} events acknowledged and stored exactly once across {total_kills} SIGKILLs",
        ledger.acked.len()
    );
}
