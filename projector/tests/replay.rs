//! Replay equivalence: read models built incrementally, batch by batch, through injected
//! failures (a transaction that fails before applying, or applies and then reports failure, and
//! on the small-transaction path a flush cut between its transactions) and restarts, equal the
//! read models of one clean replay of the whole log. Also: checkpoints never move backwards.

mod common;

use common::{Fault, TestTables, log_in};
use proptest::prelude::*;
use shoal_projector::{ProjectorConfig, catch_up, checkpoint};
use shoal_schemas::{Event, EventKind, Position, Sequence};
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Table};
use std::sync::Arc;

const T: i64 = 1_704_067_200_000;

fn arb_event() -> impl Strategy<Value = Event> {
    let entities = prop_oneof![Just("u1"), Just("u2"), Just("u3")];
    let series = prop_oneof![Just("cpu{h=a}"), Just("mem{h=b}")];
    let time = 0i64..(3 * 86_400_000i64);
    prop_oneof![
        (
            entities.clone(),
            prop_oneof![Just("login"), Just("buy")],
            time.clone(),
            0u8..4
        )
            .prop_map(|(e, n, t, v)| {
                common::track(e, n, T + t, &format!(r#"{{"amount":{v}}}"#))
            }),
        (
            entities.clone(),
            time.clone(),
            prop_oneof![Just("free"), Just("pro")]
        )
            .prop_map(|(e, t, p)| {
                common::event(
                    EventKind::Identify,
                    e,
                    "",
                    T + t,
                    &format!(r#"{{"plan":"{p}"}}"#),
                    None,
                )
            }),
        // Few distinct timestamps, so last-write-wins per timestamp is exercised.
        (series.clone(), 0i64..40, -3i8..4).prop_map(|(s, slot, v)| common::metric(
            s,
            T + slot * 45_000,
            f64::from(v)
        )),
        // Poison for series and for entities.
        series.prop_map(|s| {
            let mut e = common::metric(s, T, 0.0);
            e.value = None;
            e
        }),
        entities.prop_map(|e| common::track(e, "x", T, "\"text\"")),
    ]
}

fn run<F: std::future::Future<Output = ()>>(future: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_with_crashes_equals_clean_replay(
        events in proptest::collection::vec(arb_event(), 1..60),
        cuts in proptest::collection::vec(0usize..60, 2),
        batch in 1usize..12,
        small in any::<bool>(),
        faults in proptest::collection::vec((1u64..6, any::<bool>()), 0..6),
    ) {
        run(async move {
            let dir = tempfile::tempdir().unwrap();
            let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
            let projections = shoal_projector::default_projections();
            let max_ops = if small { 5 } else { usize::MAX };
            let incremental = Arc::new(TestTables::new(max_ops));
            let config = ProjectorConfig { batch_events: batch, ..ProjectorConfig::default() };
            let mut faults = faults.into_iter();
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(events.len())).collect();
            bounds.sort_unstable();
            bounds.push(events.len());
            let mut start = 0;
            for end in bounds {
                log.append(events[start..end].to_vec()).await.unwrap();
                start = end;
                // Restart (a fresh catch-up from the stored checkpoints) until one run succeeds.
                loop {
                    if let Some((after, lost_answer)) = faults.next() {
                        incremental.arm(after, if lost_answer { Fault::After } else { Fault::Before });
                    }
                    match catch_up(log.clone(), incremental.clone(), &projections, &config).await {
                        Ok(_) => break,
                        Err(error) => assert!(error.is_transient(), "{error}"),
                    }
                }
            }
            let clean = Arc::new(TestTables::new(usize::MAX));
            let whole = ProjectorConfig { batch_events: 100_000, ..ProjectorConfig::default() };
            catch_up(log.clone(), clean.clone(), &projections, &whole).await.unwrap();
            let mut keys = clean.keys();
            keys.extend(incremental.keys());
            let expected = common::dump(clean.as_ref(), &keys).await;
            let actual = common::dump(incremental.as_ref(), &keys).await;
            for (want, got) in expected.iter().zip(&actual) {
                assert_eq!(want, got);
            }
        });
    }

    #[test]
    fn checkpoints_never_move_backwards(offsets in proptest::collection::vec((0u64..50, 0u32..5), 1..30)) {
        run(async move {
            let tables = MemoryTables::new();
            let shard = "0".to_owned();
            let mut highest: Option<Position> = None;
            for (sequence, index) in offsets {
                let position = Position::new(Sequence::from_u64(sequence), index);
                let proposed = checkpoint::Checkpoint { shard: shard.clone(), position: Some(position.clone()), ..Default::default() };
                let op = checkpoint::commit_op("p", 1, &proposed).unwrap();
                let outcome = tables.transact(vec![op]).await;
                let advances = highest.as_ref().is_none_or(|h| position > *h);
                assert_eq!(outcome.is_ok(), advances);
                if advances {
                    highest = Some(position);
                }
                let stored = checkpoint::load(&tables, "p", 1, &shard).await.unwrap();
                assert_eq!(stored.position, highest);
            }
        });
    }
}
