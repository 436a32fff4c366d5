//! Replay equivalence: read models built incrementally, batch by batch, through injected
//! failures (a transaction that fails before applying, or applies and then reports failure, and
//! on the small-transaction path a flush cut between its transactions) and restarts, equal the
//! read models of one clean replay of the whole log. Also: checkpoints never move backwards, and
//! with series retention swept between batches, every rollup a resolution still keeps equals
//! that of one clean replay swept afterwards.

mod common;

use common::{Fault, TestTables, log_in};
use proptest::prelude::*;
use shoal_projector::series::sweep::sweep_tenant;
use shoal_projector::series::{self, Resolution};
use shoal_projector::{ProjectorConfig, catch_up, checkpoint};
use shoal_schemas::{Event, EventKind, Position, Sequence};
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Table};
use std::sync::Arc;
use std::time::Duration;

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

/// Two rounds: the first fences, the second deletes below the fences.
async fn sweep_twice(tables: &dyn Table, retention: &series::Retention, now: i64) {
    for _ in 0..2 {
        let mut budget = 100_000;
        sweep_tenant(tables, "acme", retention, now, None, &mut budget)
            .await
            .unwrap();
    }
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
        fold_ahead in any::<bool>(),
    ) {
        run(async move {
            let dir = tempfile::tempdir().unwrap();
            let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
            let projections = shoal_projector::default_projections(log.as_ref());
            let max_ops = if small { 5 } else { usize::MAX };
            let incremental = Arc::new(TestTables::new(max_ops));
            // Folding ahead (several reads per flush) whenever behind at all, within bounds
            // small enough that a run flushes several folded-ahead batches.
            let config = if fold_ahead {
                ProjectorConfig {
                    batch_events: batch,
                    fold_ahead_lag: Duration::ZERO,
                    fold_ahead_events: batch * 3,
                    fold_ahead_items: 40,
                    ..ProjectorConfig::default()
                }
            } else {
                // A flush per read, also while building.
                ProjectorConfig { batch_events: batch, fold_ahead_events: 0, ..ProjectorConfig::default() }
            };
            let mut faults = faults.into_iter();
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(events.len())).collect();
            bounds.sort_unstable();
            bounds.push(events.len());
            let mut start = 0;
            for end in bounds {
                // One record per event when folding ahead, so that reads stop at the batch size
                // and there is something left to read ahead.
                let piece = if fold_ahead { 1 } else { usize::MAX };
                for events in events[start..end].chunks(piece) {
                    log.append(events.to_vec()).await.unwrap();
                }
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
            let (expected, expected_events) = common::read_models(clean.as_ref(), log.as_ref(), &keys).await;
            let (actual, actual_events) = common::read_models(incremental.as_ref(), log.as_ref(), &keys).await;
            for (want, got) in expected.iter().zip(&actual) {
                assert_eq!(want, got);
            }
            assert_eq!(expected_events, actual_events);
        });
    }

    #[test]
    fn retention_sweeps_between_batches_keep_the_rollups(
        // Distinct timestamps: inside an expired hour a repeated timestamp counts again (the
        // documented rule), which a clean replay, still holding the raw bucket, would not.
        offsets in proptest::collection::btree_set(0i64..(4 * 86_400_000i64), 1..50),
        values in proptest::collection::vec(-3i8..4, 50),
        order in proptest::collection::vec(any::<u16>(), 50),
        cuts in proptest::collection::vec(0usize..50, 3),
        sweeps in proptest::collection::vec(0i64..(5 * 86_400_000i64), 3),
        small in any::<bool>(),
    ) {
        run(async move {
            // Log order is not time order: late points land in hours already swept.
            let mut events: Vec<(u16, Event)> = offsets
                .iter()
                .zip(&values)
                .zip(&order)
                .map(|((offset, value), rank)| (*rank, common::metric("cpu{h=a}", T + offset, f64::from(*value))))
                .collect();
            events.sort_by_key(|(rank, _)| *rank);
            let events: Vec<Event> = events.into_iter().map(|(_, event)| event).collect();
            let retention = series::Retention {
                raw: Duration::from_secs(86_400),
                minute: Duration::from_secs(2 * 86_400),
                ..series::Retention::default()
            };
            let dir = tempfile::tempdir().unwrap();
            let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
            let projections: Vec<Arc<dyn shoal_projector::Projection>> = vec![Arc::new(series::Series)];
            let incremental = Arc::new(TestTables::new(if small { 5 } else { usize::MAX }));
            let config = ProjectorConfig { batch_events: 3, fold_ahead_events: 0, ..ProjectorConfig::default() };
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(events.len())).collect();
            bounds.sort_unstable();
            bounds.push(events.len());
            let mut sweep_times: Vec<i64> = sweeps.into_iter().map(|at| T + at).collect();
            sweep_times.sort_unstable();
            let mut start = 0;
            for (end, now) in bounds.into_iter().zip(sweep_times.iter().copied().chain(std::iter::repeat(T + 5 * 86_400_000))) {
                log.append(events[start..end].to_vec()).await.unwrap();
                start = end;
                catch_up(log.clone(), incremental.clone(), &projections, &config).await.unwrap();
                sweep_twice(incremental.as_ref(), &retention, now).await;
            }
            let clean = Arc::new(TestTables::new(usize::MAX));
            let whole = ProjectorConfig { batch_events: 100_000, ..ProjectorConfig::default() };
            catch_up(log.clone(), clean.clone(), &projections, &whole).await.unwrap();
            let last = *sweep_times.last().unwrap_or(&T);
            let end = T + 5 * 86_400_000;
            for tables in [incremental.as_ref(), clean.as_ref()] {
                sweep_twice(tables, &retention, last).await;
                sweep_twice(tables, &retention, end).await;
            }
            let fences = series::fences(clean.as_ref(), "acme", "cpu{h=a}").await.unwrap();
            assert_eq!(fences, series::fences(incremental.as_ref(), "acme", "cpu{h=a}").await.unwrap());
            for resolution in Resolution::ALL {
                let from = fences.get(resolution);
                let read = move |tables: Arc<TestTables>| async move {
                    series::read_range(tables.as_ref(), "acme", "cpu{h=a}", from, end, resolution)
                        .await
                        .unwrap()
                        .into_iter()
                        // `last` is the value merged last in log order once the raw bucket is
                        // gone; the other aggregates do not depend on order.
                        .map(|p| (p.t, p.count, p.sum, p.min, p.max))
                        .collect::<Vec<_>>()
                };
                assert_eq!(read(clean.clone()).await, read(incremental.clone()).await, "{resolution:?}");
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
