//! The [`EventLog`] conformance suite: what every backend (embedded segment files, Kinesis under
//! the emulator) must do alike.
//!
//! Each check is a public async function taking a fresh, empty `Arc<dyn EventLog>` and
//! panicking on a failure. [`event_log_conformance!`](crate::event_log_conformance) expands to
//! one `#[tokio::test]` per check, so every backend runs the same list:
//!
//! ```ignore
//! mod conformance {
//!     shoal_storage::event_log_conformance!(make_fixture().await);
//! }
//! ```
//!
//! The expression is evaluated inside each (async) test; it yields either an
//! `Arc<dyn EventLog>` or a pair `(Arc<dyn EventLog>, guard)` whose guard (a temporary
//! directory, an emulator stream) lives until the check ends — see [`LogFixture`].
//!
//! The checks are written for slow, eventually consistent backends too: volumes stay at a few
//! hundred events, every event carries a tenant unique to the check (reads filter on it), and
//! visibility is awaited by reading again until a deadline rather than assumed at once. Two
//! checks rely on the log being fresh: `wait_for` timing out when nothing comes, and every
//! shard of a fresh log reading empty.

use crate::{AppendOutcome, Error, EventLog, ReadBatch};
use shoal_schemas::{Event, EventKind, Position, ShardId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub use super::by_position::read_at_returns_the_events_at_those_positions;
pub use super::dedup::{
    duplicates_are_stored_once, server_ids_are_stored_beside_deduplicated_client_ids,
};

/// How long a check waits for appended events to become readable.
pub const VISIBILITY_DEADLINE: Duration = Duration::from_secs(30);
/// Events asked for per read while collecting everything.
const PAGE: usize = 100;

/// What the expression given to [`event_log_conformance!`](crate::event_log_conformance)
/// yields: the log under test, and whatever must stay alive while a check runs.
pub trait LogFixture {
    fn log(&self) -> Arc<dyn EventLog>;
}

impl LogFixture for Arc<dyn EventLog> {
    fn log(&self) -> Arc<dyn EventLog> {
        Arc::clone(self)
    }
}

impl<Guard> LogFixture for (Arc<dyn EventLog>, Guard) {
    fn log(&self) -> Arc<dyn EventLog> {
        Arc::clone(&self.0)
    }
}

/// One `#[tokio::test]` per check of [`crate::conformance::log`], each on a fresh log made by
/// the given expression (evaluated inside the async test, so it may `.await`).
#[macro_export]
macro_rules! event_log_conformance {
    ($make:expr) => {
        $crate::__event_log_conformance_tests! {
            $make;
            fresh_log_reads_empty,
            positions_grow_in_append_order,
            reads_return_every_event_once_in_order,
            paging_visits_every_event_once,
            read_after_a_position_resumes_right_after_it,
            entities_keep_their_shard_and_order_under_concurrent_appends,
            duplicates_are_stored_once,
            server_ids_are_stored_beside_deduplicated_client_ids,
            entities_spread_over_shards,
            wait_for_wakes_on_append_and_times_out,
            unknown_shards_are_errors,
            read_at_returns_the_events_at_those_positions,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __event_log_conformance_tests {
    ($make:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $make;
                let log = $crate::conformance::log::LogFixture::log(&fixture);
                $crate::conformance::log::$check(log).await;
            }
        )+
    };
}

/// A tenant unique to this run of a check.
pub fn run_tenant() -> String {
    format!("conf-{}", Uuid::new_v4().simple())
}

/// A `track` event of `tenant` and `entity`, with a fresh id and `{"n": n}` as properties.
pub fn event(tenant: &str, entity: &str, n: u64) -> Event {
    let now = shoal_schemas::time::now_millis();
    Event {
        id: Uuid::now_v7(),
        tenant: tenant.to_owned(),
        kind: EventKind::Track,
        name: "conformance".to_owned(),
        entity: entity.to_owned(),
        timestamp: now,
        received_at: now,
        properties: format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat((n % 40) as usize)),
        value: None,
    }
}

/// The `n` an [`event`] carries.
pub(crate) fn n_of(event: &Event) -> u64 {
    event.properties_map()["n"]
        .as_u64()
        .expect("conformance events carry n")
}

pub(crate) async fn append(log: &dyn EventLog, events: Vec<Event>) -> Vec<AppendOutcome> {
    let count = events.len();
    let outcomes = log.append(events).await.expect("append");
    assert_eq!(outcomes.len(), count, "one outcome per appended event");
    outcomes
}

/// The positions of an append every event of which must be stored.
pub(crate) async fn append_stored(log: &dyn EventLog, events: Vec<Event>) -> Vec<Position> {
    stored_positions(&append(log, events).await)
}

/// The positions of outcomes that must all be `Stored`; panics on a duplicate.
pub fn stored_positions(outcomes: &[AppendOutcome]) -> Vec<Position> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            AppendOutcome::Stored(position) => position.clone(),
            AppendOutcome::Duplicate => panic!("a fresh event was answered Duplicate"),
        })
        .collect()
}

/// One event as read back.
#[derive(Clone, Debug)]
pub(crate) struct Read {
    pub(crate) shard: ShardId,
    pub(crate) position: Position,
    pub(crate) event: Event,
}

async fn open_shards(log: &dyn EventLog) -> Vec<ShardId> {
    log.shards()
        .await
        .expect("shards")
        .into_iter()
        .map(|shard| shard.id)
        .collect()
}

/// Every event of `tenant`, per shard in read order, once at least `expected` are readable
/// (then also whatever else was there: extra copies show up as a count above `expected`).
pub(crate) async fn read_tenant(log: &dyn EventLog, tenant: &str, expected: usize) -> Vec<Read> {
    let deadline = Instant::now() + VISIBILITY_DEADLINE;
    let mut cursors: HashMap<ShardId, Position> = HashMap::new();
    let mut found = Vec::new();
    loop {
        for shard in open_shards(log).await {
            loop {
                let batch = log
                    .read(&shard, cursors.get(&shard), PAGE)
                    .await
                    .expect("read");
                let Some(last) = batch.last_position() else {
                    break;
                };
                for record in &batch.records {
                    for (position, event) in record.positioned() {
                        if event.tenant == tenant {
                            found.push(Read {
                                shard: shard.clone(),
                                position,
                                event: event.clone(),
                            });
                        }
                    }
                }
                cursors.insert(shard.clone(), last);
            }
        }
        if found.len() >= expected {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} appended events readable after {VISIBILITY_DEADLINE:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads of one shard, grouped.
pub(crate) fn by_shard(reads: &[Read]) -> BTreeMap<ShardId, Vec<Read>> {
    let mut shards: BTreeMap<ShardId, Vec<Read>> = BTreeMap::new();
    for read in reads {
        shards
            .entry(read.shard.clone())
            .or_default()
            .push(read.clone());
    }
    shards
}

/// Reads `shard` after `after` with pages of `max_events` until `want` events came back (or
/// the deadline passes); each page's events, flattened, with their positions.
async fn page_through(
    log: &dyn EventLog,
    shard: &ShardId,
    after: Option<&Position>,
    max_events: usize,
    want: usize,
) -> Vec<(Position, Event)> {
    let deadline = Instant::now() + VISIBILITY_DEADLINE;
    let mut cursor = after.cloned();
    let mut got = Vec::new();
    while got.len() < want {
        let batch: ReadBatch = log
            .read(shard, cursor.as_ref(), max_events)
            .await
            .expect("read");
        let Some(last) = batch.last_position() else {
            assert!(
                Instant::now() < deadline,
                "paging shard {shard} stalled at {} of {want} events",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for record in &batch.records {
            assert!(!record.events.is_empty(), "a read returned an empty record");
            got.extend(
                record
                    .positioned()
                    .map(|(position, event)| (position, event.clone())),
            );
        }
        cursor = Some(last);
    }
    got
}

/// Every shard of a fresh log reads empty, and an empty append stores nothing.
pub async fn fresh_log_reads_empty(log: Arc<dyn EventLog>) {
    let shards = log.shards().await.expect("shards");
    assert!(!shards.is_empty(), "a log has at least one shard");
    let ids: HashSet<&ShardId> = shards.iter().map(|shard| &shard.id).collect();
    assert_eq!(ids.len(), shards.len(), "shard ids are unique");
    for shard in &shards {
        for parent in &shard.parents {
            assert!(
                ids.contains(parent),
                "parent {parent} of {} is listed",
                shard.id
            );
        }
        let batch = log.read(&shard.id, None, 10).await.expect("read");
        assert_eq!(batch.event_count(), 0, "shard {} of a fresh log", shard.id);
        assert!(batch.last_position().is_none());
    }
    assert!(
        log.append(Vec::new())
            .await
            .expect("empty append")
            .is_empty()
    );
}

/// Positions returned by append are where the events are read back, and grow strictly within a
/// shard in append order (across calls, and within a call in input order).
pub async fn positions_grow_in_append_order(log: Arc<dyn EventLog>) {
    let tenant = run_tenant();
    let mut appended: Vec<(Uuid, Position)> = Vec::new();
    for batch in 0..5u64 {
        let events: Vec<Event> = (0..40)
            .map(|n| event(&tenant, &format!("entity-{}", n % 20), batch * 40 + n))
            .collect();
        let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
        let positions = append_stored(log.as_ref(), events).await;
        appended.extend(ids.into_iter().zip(positions));
    }
    let reads = read_tenant(log.as_ref(), &tenant, appended.len()).await;
    assert_eq!(reads.len(), appended.len());
    let read_at: HashMap<Uuid, &Read> = reads.iter().map(|read| (read.event.id, read)).collect();
    let mut last_per_shard: HashMap<&ShardId, &Position> = HashMap::new();
    for (id, position) in &appended {
        let read = read_at[id];
        assert_eq!(
            &read.position, position,
            "event {id} is read where append put it"
        );
        if let Some(previous) = last_per_shard.insert(&read.shard, position) {
            assert!(
                previous < position,
                "shard {}: {previous} then {position} in append order",
                read.shard
            );
        }
    }
}

/// Reading every shard from the start returns exactly the appended events: none lost, none
/// twice, each entity's events in one shard and in append order.
pub async fn reads_return_every_event_once_in_order(log: Arc<dyn EventLog>) {
    let tenant = run_tenant();
    let mut expected: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    let mut count = 0;
    for batch in 0..6u64 {
        let events: Vec<Event> = (0..50)
            .map(|n| event(&tenant, &format!("entity-{}", (n * 7 + batch) % 30), n))
            .collect();
        for event in &events {
            expected
                .entry(event.entity.clone())
                .or_default()
                .push(event.id);
        }
        count += events.len();
        append_stored(log.as_ref(), events).await;
    }
    let reads = read_tenant(log.as_ref(), &tenant, count).await;
    assert_eq!(reads.len(), count, "every event exactly once");
    for (shard, shard_reads) in by_shard(&reads) {
        for pair in shard_reads.windows(2) {
            assert!(
                pair[0].position < pair[1].position,
                "shard {shard} reads in position order"
            );
        }
    }
    let mut actual: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    let mut shard_of: HashMap<String, ShardId> = HashMap::new();
    for read in &reads {
        let shard = shard_of
            .entry(read.event.entity.clone())
            .or_insert_with(|| read.shard.clone());
        assert_eq!(
            shard, &read.shard,
            "entity {} in one shard",
            read.event.entity
        );
        actual
            .entry(read.event.entity.clone())
            .or_default()
            .push(read.event.id);
    }
    assert_eq!(actual, expected, "per entity, the append order");
}

/// Paging with small `max_events`, each read after the last position of the previous one,
/// visits every event exactly once, in order.
pub async fn paging_visits_every_event_once(log: Arc<dyn EventLog>) {
    let tenant = run_tenant();
    let mut count = 0;
    for (batch, size) in [1u64, 7, 20, 2, 15].into_iter().enumerate() {
        let events: Vec<Event> = (0..size)
            .map(|n| event(&tenant, &format!("entity-{}", (n + batch as u64) % 8), n))
            .collect();
        count += events.len();
        append_stored(log.as_ref(), events).await;
    }
    let reads = read_tenant(log.as_ref(), &tenant, count).await;
    for (shard, whole) in by_shard(&reads) {
        let expected: Vec<(Position, Uuid)> = whole
            .iter()
            .map(|read| (read.position.clone(), read.event.id))
            .collect();
        // Remote backends pay per read (Kinesis: 5 reads/s per shard), so few page sizes.
        for max_events in [1, 3, 17] {
            let paged: Vec<(Position, Uuid)> =
                page_through(log.as_ref(), &shard, None, max_events, expected.len())
                    .await
                    .into_iter()
                    .filter(|(_, event)| event.tenant == tenant)
                    .map(|(position, event)| (position, event.id))
                    .collect();
            assert_eq!(paged, expected, "shard {shard} paged by {max_events}");
        }
    }
}

/// A read after any position — at a record's end or in its middle — starts with the event
/// right after it; after the last one it returns nothing.
pub async fn read_after_a_position_resumes_right_after_it(log: Arc<dyn EventLog>) {
    let tenant = run_tenant();
    let mut count = 0;
    for size in [40u64, 1, 25] {
        // One entity, so everything is in one shard; a batch may well become one record.
        let events: Vec<Event> = (0..size).map(|n| event(&tenant, "only", n)).collect();
        count += events.len();
        append_stored(log.as_ref(), events).await;
    }
    let reads = read_tenant(log.as_ref(), &tenant, count).await;
    assert_eq!(reads.len(), count);
    let shard = reads[0].shard.clone();
    // Positions followed by one of the same record (mid-record positions), a few spread over
    // the shard (remote backends pay per read), and the ends.
    let mid_record: Vec<usize> = (0..count - 1)
        .filter(|&at| reads[at].position.sequence == reads[at + 1].position.sequence)
        .collect();
    let mut probes: Vec<usize> = mid_record
        .iter()
        .step_by((mid_record.len() / 6).max(1))
        .copied()
        .collect();
    probes.extend([0, 1, count / 2, count - 2, count - 1]);
    probes.sort_unstable();
    probes.dedup();
    for at in probes {
        let after = &reads[at].position;
        let rest = count - at - 1;
        if rest == 0 {
            let batch = log.read(&shard, Some(after), 10).await.expect("read");
            assert_eq!(batch.event_count(), 0, "nothing after the last event");
            continue;
        }
        let got = page_through(log.as_ref(), &shard, Some(after), rest, rest).await;
        let got_ids: Vec<Uuid> = got.iter().map(|(_, event)| event.id).collect();
        let want_ids: Vec<Uuid> = reads[at + 1..].iter().map(|read| read.event.id).collect();
        assert_eq!(got_ids, want_ids, "read after {after}");
        assert_eq!(got[0].0, reads[at + 1].position);
    }
}

/// Concurrent appenders: each `tenant + entity` stays in one shard, and each appender's events
/// of an entity are read back in the order it appended them, also for an entity they share.
pub async fn entities_keep_their_shard_and_order_under_concurrent_appends(log: Arc<dyn EventLog>) {
    const TASKS: u64 = 4;
    const BATCHES: u64 = 10;
    const PER_BATCH: u64 = 8;
    let tenant = run_tenant();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let log = Arc::clone(&log);
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            let mut owner = HashMap::new();
            for batch in 0..BATCHES {
                let events: Vec<Event> = (0..PER_BATCH)
                    .map(|k| {
                        let entity = if k % 2 == 0 {
                            "shared".to_owned()
                        } else {
                            format!("own-{task}-{}", k % 3)
                        };
                        event(&tenant, &entity, batch * PER_BATCH + k)
                    })
                    .collect();
                for event in &events {
                    owner.insert(event.id, task);
                }
                append_stored(log.as_ref(), events).await;
            }
            owner
        }));
    }
    let mut owner: HashMap<Uuid, u64> = HashMap::new();
    for task in tasks {
        owner.extend(task.await.expect("appender task"));
    }
    let total = (TASKS * BATCHES * PER_BATCH) as usize;
    let reads = read_tenant(log.as_ref(), &tenant, total).await;
    assert_eq!(reads.len(), total);
    let mut shard_of: HashMap<&str, &ShardId> = HashMap::new();
    let mut last_n: HashMap<(&str, u64), u64> = HashMap::new();
    for read in &reads {
        let entity = read.event.entity.as_str();
        let shard = *shard_of.entry(entity).or_insert(&read.shard);
        assert_eq!(shard, &read.shard, "entity {entity} in one shard");
        let appender = owner[&read.event.id];
        let n = n_of(&read.event);
        if let Some(previous) = last_n.insert((entity, appender), n) {
            assert!(
                previous < n,
                "entity {entity}, appender {appender}: {previous} read before {n}"
            );
        }
    }
}

/// With several shards, the events of many entities land in more than one of them.
pub async fn entities_spread_over_shards(log: Arc<dyn EventLog>) {
    let shards = open_shards(log.as_ref()).await;
    let tenant = run_tenant();
    let events: Vec<Event> = (0..100)
        .map(|n| event(&tenant, &format!("spread-{n}"), n))
        .collect();
    append_stored(log.as_ref(), events).await;
    let reads = read_tenant(log.as_ref(), &tenant, 100).await;
    assert_eq!(reads.len(), 100);
    let used: HashSet<&ShardId> = reads.iter().map(|read| &read.shard).collect();
    if shards.len() > 1 {
        assert!(
            used.len() > 1,
            "100 entities all landed in one of {} shards",
            shards.len()
        );
    }
}

/// `wait_for` wakes promptly when another task appends after the given position, answers at
/// once when newer events exist, and returns `false` after its timeout when nothing comes.
pub async fn wait_for_wakes_on_append_and_times_out(log: Arc<dyn EventLog>) {
    let tenant = run_tenant();
    let first = append_stored(log.as_ref(), vec![event(&tenant, "waiter", 1)]).await;
    let reads = read_tenant(log.as_ref(), &tenant, 1).await;
    let shard = reads[0].shard.clone();
    assert_eq!(reads[0].position, first[0]);

    let waiter = {
        let log = Arc::clone(&log);
        let shard = shard.clone();
        let after = first[0].clone();
        tokio::spawn(async move {
            let woken = log
                .wait_for(&shard, Some(&after), VISIBILITY_DEADLINE)
                .await
                .expect("wait_for");
            (woken, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let appended_at = Instant::now();
    let second = append_stored(log.as_ref(), vec![event(&tenant, "waiter", 2)]).await;
    let (woken, woken_at) = waiter.await.expect("waiter task");
    assert!(woken, "wait_for saw the append");
    let delay = woken_at.saturating_duration_since(appended_at);
    assert!(
        delay < Duration::from_secs(10),
        "woken {delay:?} after the append"
    );
    read_tenant(log.as_ref(), &tenant, 2).await;

    let started = Instant::now();
    assert!(
        log.wait_for(&shard, Some(&first[0]), Duration::from_secs(5))
            .await
            .expect("wait_for"),
        "events after the first exist"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered without waiting"
    );

    let timeout = Duration::from_millis(400);
    let started = Instant::now();
    let woken = log
        .wait_for(&shard, Some(&second[0]), timeout)
        .await
        .expect("wait_for");
    assert!(!woken, "nothing was appended after the last event");
    assert!(
        started.elapsed() >= timeout - Duration::from_millis(20),
        "returned after {:?}, before its timeout",
        started.elapsed()
    );

    if let Some(empty) = open_shards(log.as_ref())
        .await
        .into_iter()
        .find(|id| *id != shard)
    {
        let started = Instant::now();
        let woken = log
            .wait_for(&empty, None, Duration::from_millis(200))
            .await
            .expect("wait_for");
        assert!(!woken, "shard {empty} of a fresh log is empty");
        assert!(started.elapsed() >= Duration::from_millis(180));
    }
}

/// Reading or waiting on a shard the log does not have is [`Error::UnknownShard`].
pub async fn unknown_shards_are_errors(log: Arc<dyn EventLog>) {
    for id in ["no-such-shard", "shardId-999999999999"] {
        let shard: ShardId = id.to_owned();
        let read = log.read(&shard, None, 10).await;
        assert!(
            matches!(read, Err(Error::UnknownShard(_))),
            "read of {id}: {read:?}"
        );
        let wait = log.wait_for(&shard, None, Duration::from_millis(50)).await;
        assert!(
            matches!(wait, Err(Error::UnknownShard(_))),
            "wait_for on {id}: {wait:?}"
        );
    }
}
