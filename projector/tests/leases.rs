//! Shard leases between projector "processes" (each its own tokio runtime over shared tables and
//! one log): they split the shards, a killed one's shards are taken over after its leases
//! expire, a new one steals its share, a graceful stop hands its shards over at once, and the
//! read models afterwards equal one clean replay of the log. Each process tells from the stored
//! checkpoints when a projection has caught up on the shards the other works.

mod common;

use common::{TestTables, log_in, read_models, track};
use shoal_projector::{
    LeaseConfig, Ownership, Projector, ProjectorConfig, ProjectorHandle, catch_up,
    default_projections, lease,
};
use shoal_storage::{EventLog, Table};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const T: i64 = 1_704_067_200_000;
const LEASE: Duration = Duration::from_millis(800);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn leases(owner: &str) -> Ownership {
    let mut config = LeaseConfig::new(owner);
    config.lease_duration = LEASE;
    config.renew_interval = Duration::from_millis(100);
    config.shard_refresh = Duration::from_millis(200);
    Ownership::Leases(config)
}

fn start(
    rt: &Runtime,
    log: &Arc<dyn EventLog>,
    tables: &Arc<dyn Table>,
    owner: &str,
) -> ProjectorHandle {
    let config = ProjectorConfig {
        batch_events: 50,
        idle_wait: Duration::from_millis(50),
        ..ProjectorConfig::default()
    };
    rt.block_on(async {
        Projector::new(
            log.clone(),
            tables.clone(),
            default_projections(log.as_ref()),
            config,
        )
        .unwrap()
        .with_ownership(leases(owner))
        .unwrap()
        .spawn()
        .await
        .unwrap()
    })
}

/// Waits until `check` holds, failing the test with `what` after `limit`.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

async fn append(log: &Arc<dyn EventLog>, from: usize, to: usize) {
    let events = (from..to)
        .map(|n| {
            track(
                &format!("user-{}", n % 97),
                "login",
                T + n as i64 * 1000,
                "{}",
            )
        })
        .collect();
    log.append(events).await.unwrap();
}

#[test]
fn processes_share_shards_take_over_after_a_kill_and_hand_over_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let main = runtime();
    let log: Arc<dyn EventLog> = Arc::new(main.block_on(async { log_in(dir.path(), 4) }));
    let shared = Arc::new(TestTables::new(100));
    let tables: Arc<dyn Table> = shared.clone();
    main.block_on(append(&log, 0, 2000));

    let rt_a = runtime();
    let a = start(&rt_a, &log, &tables, "a");
    let b = start(&main, &log, &tables, "b");
    eventually(
        "a and b hold two shards each",
        Duration::from_secs(10),
        || a.owned_shards().len() == 2 && b.owned_shards().len() == 2,
    );
    let mut all: Vec<_> = a.owned_shards();
    all.extend(b.owned_shards());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4, "the two processes hold different shards");
    // Each works half the shards, yet each can tell the projection has caught up on all four
    // (from the stored checkpoints): what lets a rules version become ready with leases.
    let name = shoal_projector::entities::NAME;
    let version = shoal_projector::entities::VERSION;
    eventually(
        "both see the projection caught up on every shard",
        Duration::from_secs(20),
        || {
            [(&rt_a, &a), (&main, &b)].iter().all(|(rt, process)| {
                rt.block_on(process.caught_up(name, version))
                    .expect("checkpoints")
            })
        },
    );

    // Kill `a` without any goodbye: its tasks vanish, its leases stay owned until they expire.
    main.block_on(append(&log, 2000, 3000));
    rt_a.shutdown_background();
    let took = eventually(
        "b takes every shard after a's leases expire",
        Duration::from_secs(10),
        || b.owned_shards().len() == 4,
    );
    assert!(
        took >= LEASE / 2,
        "b took a's live leases too early ({took:?})"
    );
    main.block_on(append(&log, 3000, 4000));

    // A newcomer steals its share; stopping it gracefully hands the shards straight back.
    let c = start(&main, &log, &tables, "c");
    eventually(
        "c steals two shards from b",
        Duration::from_secs(10),
        || c.owned_shards().len() == 2 && b.owned_shards().len() == 2,
    );
    main.block_on(c.shutdown());
    let handed = eventually(
        "b takes c's released shards",
        Duration::from_secs(10),
        || b.owned_shards().len() == 4,
    );
    assert!(
        handed < LEASE,
        "released leases are taken at once, not after expiry ({handed:?})"
    );
    let stored = main
        .block_on(lease::list(tables.as_ref(), "projector"))
        .unwrap();
    assert_eq!(stored.len(), 4);
    assert!(stored.iter().all(|lease| lease.owner.starts_with('b')));

    // Read models equal one clean replay of the same log.
    let reference = Arc::new(TestTables::new(100));
    let clean: Arc<dyn Table> = reference.clone();
    main.block_on(async {
        catch_up(
            log.clone(),
            clean.clone(),
            &default_projections(log.as_ref()),
            &ProjectorConfig::default(),
        )
        .await
        .unwrap();
    });
    let keys = reference.keys();
    eventually("b catches up", Duration::from_secs(20), || {
        main.block_on(async {
            read_models(clean.as_ref(), log.as_ref(), &keys).await
                == read_models(tables.as_ref(), log.as_ref(), &keys).await
        })
    });
    main.block_on(b.shutdown());
    assert!(shared.keys().len() >= keys.len());
}
