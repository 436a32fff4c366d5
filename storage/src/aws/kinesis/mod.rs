//! The [`EventLog`] on a Kinesis data stream.
//!
//! - append (this file): dedup claims (`dedup.rs`) → routing each event to its shard
//!   (`routing.rs`) → packing the events of a shard into few records and sending them in
//!   order-keeping waves (`batch.rs`) → committing or releasing the claims;
//! - read and `wait_for` (`reader.rs`): shard iterators kept per reader, paced `GetRecords`,
//!   events that do not belong to the shard (a record sent with a stale map) dropped;
//! - shards: `ListShards`, with parent / adjacent-parent lineage, closed = has an ending
//!   sequence number.
//!
//! Positions are the record's Kinesis sequence number ([`Sequence`], compared as a big
//! integer) and the event's index in the record. An event's partition key is
//! `keys::partition_key(tenant, entity)`, which decides its shard; Kinesis allows 256
//! characters, so a longer one (a 64-byte tenant and a 256-byte entity make up to 321) is
//! replaced by `tenant#` and the SHA-256 of the entity — still one key per entity, so still
//! one shard per entity.
//!
//! [`Sequence`]: shoal_schemas::Sequence

pub(crate) mod api;
mod batch;
mod codec;
mod dedup;
mod reader;
mod routing;

use crate::aws::config::{AwsClients, AwsConfig};
use crate::aws::dynamodb::DynamoTables;
use crate::aws::retry::retry;
use crate::{AppendOutcome, Error, EventLog, IdOrigin, NewEvent, ReadBatch, Result, ShardInfo};
use async_trait::async_trait;
use aws_sdk_kinesis::types::Shard;
use dedup::{Claim, Dedup};
use futures::StreamExt;
use reader::Reader;
use routing::ShardMap;
use sha2::{Digest, Sha256};
use shoal_schemas::{Event, Position, ShardId, keys};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kinesis' longest partition key, in Unicode characters.
const MAX_PARTITION_KEY_CHARS: usize = 256;
/// Dedup claims of one append in flight at once.
const CLAIM_CONCURRENCY: usize = 32;
/// Fresh shard maps one append may need before giving up (each follows a reshard).
const MAX_REROUTES: usize = 3;

/// The Kinesis partition key of an event (see the module header).
pub(crate) fn partition_key(event: &Event) -> String {
    let key = keys::partition_key(&event.tenant, &event.entity);
    if key.chars().count() <= MAX_PARTITION_KEY_CHARS {
        return key;
    }
    let digest = Sha256::digest(event.entity.as_bytes());
    keys::partition_key(&event.tenant, &hex::encode(digest))
}

/// Every shard of the stream, following `NextToken`.
pub(crate) async fn list_all_shards(clients: &AwsClients, stream: &str) -> Result<Vec<Shard>> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let (page, next) = retry(&clients.retry, || {
            api::list_shards(clients, stream, token.as_deref())
        })
        .await?;
        shards.extend(page);
        match next {
            Some(next) => token = Some(next),
            None => return Ok(shards),
        }
    }
}

/// Lineage from a listing: parents no longer listed (expired past retention) are dropped, as
/// the Kinesis Client Library treats them as finished; parents come before children.
fn lineage(shards: &[Shard]) -> Vec<ShardInfo> {
    let listed: HashSet<&str> = shards.iter().map(Shard::shard_id).collect();
    let mut infos: Vec<ShardInfo> = shards
        .iter()
        .map(|shard| ShardInfo {
            id: shard.shard_id().to_owned(),
            parents: [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .filter(|parent| listed.contains(parent))
                .map(str::to_owned)
                .collect(),
            closed: shard
                .sequence_number_range()
                .and_then(|range| range.ending_sequence_number())
                .is_some(),
        })
        .collect();
    // Kahn's algorithm, keeping the listing's order among shards that are ready.
    let mut ordered = Vec::with_capacity(infos.len());
    let mut placed: HashSet<String> = HashSet::new();
    while !infos.is_empty() {
        let before = infos.len();
        let mut waiting = Vec::new();
        for info in infos {
            if info.parents.iter().all(|parent| placed.contains(parent)) {
                placed.insert(info.id.clone());
                ordered.push(info);
            } else {
                waiting.push(info);
            }
        }
        if waiting.len() == before {
            // A cycle cannot happen in Kinesis; keep the rest in listing order rather than loop.
            ordered.extend(waiting);
            break;
        }
        infos = waiting;
    }
    ordered
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Holds an `Arc` swapped whole: a panic elsewhere cannot leave it half-written.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_seconds() -> f64 {
    (shoal_schemas::time::now_millis() as f64 / 1000.0).floor()
}

/// The event log on a Kinesis data stream. Cheap to share (`Arc<dyn EventLog>`).
#[derive(Debug)]
pub struct KinesisLog {
    clients: AwsClients,
    stream: String,
    dedup: Option<Dedup>,
    reader: Reader,
    poll_interval: Duration,
    /// The last listing's routing, replaced when a record lands elsewhere than predicted.
    shard_map: Mutex<Arc<ShardMap>>,
}

impl KinesisLog {
    /// The log on `config.stream_name`, deduplicating through `config`'s control table
    /// (no dedup when `config.dedup_window` is zero). `init` creates both.
    pub fn new(clients: AwsClients, config: &AwsConfig) -> Result<Self> {
        config.validate()?;
        if clients.retry.worst_case_backoff() * 2 >= dedup::CLAIM_LEASE {
            return Err(Error::InvalidArgument(format!(
                "the retry policy may back off for {:?}, too close to the dedup claim lease of {:?}",
                clients.retry.worst_case_backoff(),
                dedup::CLAIM_LEASE
            )));
        }
        let dedup = (!config.dedup_window.is_zero()).then(|| {
            Dedup::new(
                DynamoTables::new(clients.clone(), config),
                config.dedup_window,
            )
        });
        Ok(KinesisLog {
            reader: Reader::new(clients.clone(), config.stream_name.clone()),
            clients,
            stream: config.stream_name.clone(),
            dedup,
            poll_interval: config.read_poll_interval,
            shard_map: Mutex::new(Arc::new(ShardMap::default())),
        })
    }

    /// The shard map, listed anew when `refresh` or when there is none yet.
    async fn shard_map(&self, refresh: bool) -> Result<Arc<ShardMap>> {
        if !refresh {
            let current = Arc::clone(&lock(&self.shard_map));
            if !current.is_empty() {
                return Ok(current);
            }
        }
        let shards = list_all_shards(&self.clients, &self.stream).await?;
        Ok(self.learn(&shards))
    }

    /// Takes in a listing: the routing of appends and the hash ranges readers filter by.
    fn learn(&self, shards: &[Shard]) -> Arc<ShardMap> {
        let map = Arc::new(ShardMap::from_listing(shards));
        self.reader.learn_shards(shards);
        *lock(&self.shard_map) = Arc::clone(&map);
        map
    }

    /// Stores the events at `pending` (in input order): packs them by the current shard map,
    /// sends them in waves, and when records landed elsewhere than predicted (a reshard), counts
    /// their events that belong where they landed as stored and sends the others again with a
    /// fresh map. Returns the positions of what was stored and the error that stopped it, if any.
    async fn store(
        &self,
        events: &Arc<Vec<Event>>,
        mut pending: Vec<usize>,
    ) -> (Vec<(usize, Position)>, Option<Error>) {
        let mut stored: Vec<(usize, Position)> = Vec::with_capacity(pending.len());
        let mut refresh = false;
        for _ in 0..=MAX_REROUTES {
            let map = match self.shard_map(refresh).await {
                Ok(map) => map,
                Err(error) => return (stored, Some(error)),
            };
            let packing = Arc::clone(events);
            let selected = pending.clone();
            let routes = Arc::clone(&map);
            let packed = tokio::task::spawn_blocking(move || {
                batch::pack(&packing, &selected, |event| {
                    let hash = routing::hash_key(&partition_key(event));
                    routes
                        .route(hash)
                        .map(|(shard, start)| (shard.clone(), start))
                        .ok_or_else(|| {
                            Error::Unavailable(format!("no open shard owns hash key {hash}"))
                        })
                })
            })
            .await
            .map_err(|error| Error::Backend(format!("packing task failed: {error}")))
            .and_then(|packed| packed);
            let queues = match packed {
                Ok(queues) => queues,
                Err(error) => return (stored, Some(error)),
            };
            let outcome = batch::send_in_waves(queues, &self.clients.retry, |entries| {
                let clients = &self.clients;
                let stream = self.stream.as_str();
                async move {
                    retry(&clients.retry, || {
                        api::put_records(clients, stream, entries.clone())
                    })
                    .await
                }
            })
            .await;
            stored.extend(outcome.stored);
            if let Some(error) = outcome.error {
                return (stored, Some(error));
            }
            if outcome.misrouted.is_empty() {
                return (stored, None);
            }
            // A reshard the map had not seen: learn the shards as they are now, and keep the
            // events that belong to the shard their record landed in (readers keep exactly
            // those, routing.rs).
            let fresh = match self.shard_map(true).await {
                Ok(map) => map,
                Err(error) => return (stored, Some(error)),
            };
            for record in &outcome.misrouted {
                let range = fresh.range_of(&record.shard);
                tracing::info!(shard = %record.shard, events = record.members.len(), "record landed in an unexpected shard");
                for (offset, &member) in record.members.iter().enumerate() {
                    let hash = routing::hash_key(&partition_key(&events[member]));
                    if range.is_some_and(|range| range.contains(hash)) {
                        let index = u32::try_from(offset).unwrap_or(u32::MAX);
                        stored.push((member, Position::new(record.sequence.clone(), index)));
                    }
                }
            }
            let done: HashSet<usize> = stored.iter().map(|(member, _)| *member).collect();
            pending.retain(|member| !done.contains(member));
            refresh = false;
            if pending.is_empty() {
                return (stored, None);
            }
        }
        let error = Error::Unavailable(format!(
            "the stream's shards kept changing during the append ({} events not stored)",
            pending.len()
        ));
        (stored, Some(error))
    }

    /// Claims every first occurrence; returns the claimed indices, and fills `outcomes` for
    /// duplicates. Events claimed by another append in flight are in `in_flight`.
    async fn claim_all(
        &self,
        dedup: &Dedup,
        events: &[Event],
        firsts: &[usize],
        owner: &str,
        now: f64,
        outcomes: &mut [Option<AppendOutcome>],
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let answers: Vec<(usize, Result<Claim>)> = futures::stream::iter(firsts.iter().copied())
            .map(|index| async move { (index, dedup.claim(&events[index], owner, now).await) })
            .buffer_unordered(CLAIM_CONCURRENCY)
            .collect()
            .await;
        let mut claimed = Vec::new();
        let mut in_flight = Vec::new();
        let mut failure = None;
        for (index, answer) in answers {
            match answer {
                Ok(Claim::Claimed) => claimed.push(index),
                Ok(Claim::Duplicate) => outcomes[index] = Some(AppendOutcome::Duplicate),
                Ok(Claim::InFlight) => in_flight.push(index),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        claimed.sort_unstable();
        if let Some(error) = failure {
            let ours: Vec<&Event> = claimed.iter().map(|&index| &events[index]).collect();
            if let Err(release) = dedup.release(&ours, owner).await {
                tracing::warn!(error = %release, "could not release dedup claims; they expire with their lease");
            }
            return Err(error);
        }
        Ok((claimed, in_flight))
    }
}

#[async_trait]
impl EventLog for KinesisLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<AppendOutcome>> {
        self.append_with_origin(events.into_iter().map(NewEvent::client).collect())
            .await
    }

    #[tracing::instrument(skip_all, fields(stream = %self.stream, events = events.len()))]
    async fn append_with_origin(&self, events: Vec<NewEvent>) -> Result<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (events, origins): (Vec<Event>, Vec<IdOrigin>) = events
            .into_iter()
            .map(|NewEvent { event, id_origin }| (event, id_origin))
            .unzip();
        let is_client = |index: &usize| origins[*index] == IdOrigin::Client;
        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; events.len()];
        // Repeats within the call: only the first occurrence is appended, the rest are
        // duplicates of it.
        let mut seen: HashSet<(&str, &str, uuid::Uuid)> = HashSet::new();
        let mut firsts = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if seen.insert((event.tenant.as_str(), event.entity.as_str(), event.id)) {
                firsts.push(index);
            } else {
                outcomes[index] = Some(AppendOutcome::Duplicate);
            }
        }
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let now = now_seconds();
        // Server-minted ids cannot repeat: they skip the markers (a claim and a commit each).
        let (client_firsts, server_firsts): (Vec<usize>, Vec<usize>) =
            firsts.into_iter().partition(is_client);
        let (mut to_store, in_flight) = match &self.dedup {
            Some(dedup) => {
                self.claim_all(dedup, &events, &client_firsts, &owner, now, &mut outcomes)
                    .await?
            }
            None => (client_firsts, Vec::new()),
        };
        to_store.extend(server_firsts);
        to_store.sort_unstable();

        let events = Arc::new(events);
        let started = Instant::now();
        let (stored, failure) = self.store(&events, to_store.clone()).await;
        tracing::debug!(
            stored = stored.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "put records"
        );
        let position_of: HashMap<usize, Position> = stored.iter().cloned().collect();
        if let Some(dedup) = &self.dedup {
            let stored: Vec<(&Event, &Position)> = stored
                .iter()
                .filter(|(index, _)| is_client(index))
                .map(|(index, position)| (&events[*index], position))
                .collect();
            // The events are in the log whatever happens here: a failed commit leaves pending
            // markers that expire with their lease (dedup.rs, "failure windows"), so it is
            // logged, not returned — an error would make the client retry and store them twice.
            if let Err(error) = dedup.commit(&stored, now_seconds()).await {
                tracing::warn!(%error, "could not commit dedup markers of stored events");
            }
            let unstored: Vec<&Event> = to_store
                .iter()
                .filter(|index| is_client(index) && !position_of.contains_key(index))
                .map(|&index| &events[index])
                .collect();
            if !unstored.is_empty()
                && let Err(error) = dedup.release(&unstored, &owner).await
            {
                tracing::warn!(%error, "could not release dedup claims; they expire with their lease");
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        if !in_flight.is_empty() {
            return Err(Error::Unavailable(format!(
                "{} events are being appended by another request; retry later",
                in_flight.len()
            )));
        }
        for (index, position) in position_of {
            outcomes[index] = Some(AppendOutcome::Stored(position));
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| {
                outcome.ok_or_else(|| {
                    Error::Backend(format!("event {index} of the append has no outcome"))
                })
            })
            .collect()
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        let shards = list_all_shards(&self.clients, &self.stream).await?;
        self.learn(&shards);
        Ok(lineage(&shards))
    }

    async fn read(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        max_events: usize,
    ) -> Result<ReadBatch> {
        self.reader.read(shard, after, max_events).await
    }

    async fn wait_for(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.reader.peek(shard, after).await? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(self.poll_interval.min(deadline - now)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::SequenceNumberRange;

    fn shard(id: &str, parent: Option<&str>, adjacent: Option<&str>, closed: bool) -> Shard {
        let mut range = SequenceNumberRange::builder().starting_sequence_number("1");
        if closed {
            range = range.ending_sequence_number("9");
        }
        Shard::builder()
            .shard_id(id)
            .set_parent_shard_id(parent.map(str::to_owned))
            .set_adjacent_parent_shard_id(adjacent.map(str::to_owned))
            .sequence_number_range(range.build().unwrap())
            .hash_key_range(
                aws_sdk_kinesis::types::HashKeyRange::builder()
                    .starting_hash_key("0")
                    .ending_hash_key("1")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn lineage_orders_parents_first_and_drops_expired_parents() {
        let shards = vec![
            shard("merged", Some("a"), Some("b"), false),
            shard("a", Some("expired"), None, true),
            shard("b", None, None, true),
        ];
        let infos = lineage(&shards);
        let ids: Vec<&str> = infos.iter().map(|info| info.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "merged"]);
        assert_eq!(
            infos[0].parents,
            Vec::<String>::new(),
            "expired parent dropped"
        );
        assert_eq!(infos[2].parents, vec!["a".to_owned(), "b".to_owned()]);
        assert!(infos[0].closed && infos[1].closed && !infos[2].closed);
    }

    #[test]
    fn long_partition_keys_are_hashed_per_entity() {
        let mut event = codec::tests::event(1);
        event.tenant = "t".repeat(64);
        event.entity = "e".repeat(256);
        let key = partition_key(&event);
        assert!(key.chars().count() <= MAX_PARTITION_KEY_CHARS);
        assert!(key.starts_with(&event.tenant));
        let mut same_entity = codec::tests::event(2);
        same_entity.tenant = event.tenant.clone();
        same_entity.entity = event.entity.clone();
        assert_eq!(partition_key(&same_entity), key);
        let short = codec::tests::event(3);
        assert_eq!(partition_key(&short), "acme#customer-0");
    }
}
