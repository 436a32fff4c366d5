//! Crash safety of durable ingest, end to end: the real binary under sustained concurrent
//! ingest is killed with SIGKILL at random moments and restarted; every event whose request was
//! answered 2xx must be in the log exactly once, nothing torn may be misread, and retrying the
//! unanswered requests after the restart must not create second copies.

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shoal_tests::{Shoal, client, read_log};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRITERS: usize = 8;
const ROUNDS: usize = 3;

#[derive(Default)]
struct Ledger {
    /// Client ids whose request was answered 200: they must be stored exactly once.
    acked: HashSet<String>,
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

fn ids(events: &[Value]) -> impl Iterator<Item = String> + '_ {
    events
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
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
        .iter()
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
