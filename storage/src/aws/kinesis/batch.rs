//! From appended events to Kinesis records, and from records to `PutRecords` calls, keeping
//! every entity's order through partial failures.
//!
//! Packing: the events bound for one shard (routing.rs) are packed, in input order, into as few
//! records as fit: up to 4 MiB of encoded events per record (the codec's cap), compressed, and
//! split in halves until a record's data plus its partition key is at most 1 MiB (Kinesis'
//! record limit). Each record carries its shard's explicit hash key. A shard takes 1,000
//! records/s, so packing is what lets a shard carry more than 1,000 events/s; packing per shard
//! rather than per entity also keeps a call's events in input order within each shard.
//!
//! Ordering (the design note of this file). `PutRecords` gives no order guarantee between the
//! records of one call: a record can fail (throttled) while a later one of the same call
//! succeeds, and the API reference says ordering across the call is not guaranteed at all. So:
//! - each call carries **at most one record per shard**; the records of one shard go out in
//!   *waves*, wave n+1 holding the shard's next record only after wave n stored the previous;
//! - a failed record stays at the head of its shard's queue and is re-sent in the next wave,
//!   after a backoff; nothing behind it moves until it is stored, so a later record can never
//!   overtake a failed earlier one;
//! - records of different shards are independent and go out together (up to 500 records and
//!   5 MiB per call, several calls of a wave in flight at once).
//!
//! Only a shard receiving more than one record's worth (over ~1 MiB compressed in one append)
//! pays for extra round trips; the common append is one wave.
//!
//! A record that keeps failing (the policy's attempts) or fails for a non-retryable reason stops
//! the whole append: what was stored is reported with its positions, what was not is reported
//! as not stored, and no later record of a stopped shard is ever sent. A record that landed in
//! another shard than predicted (a stale shard map) also stops the waves after the current one:
//! the caller sorts its events out with a fresh map (routing.rs) and sends the rest again.

use crate::aws::kinesis::api::{PutEntry, PutResult};
use crate::aws::kinesis::codec;
use crate::aws::retry::{CallError, RetryPolicy, classify};
use crate::{Error, Result};
use shoal_schemas::{Event, Position, Sequence, ShardId};
use std::collections::VecDeque;
use std::future::Future;

/// Kinesis' limit of one record: data plus partition key.
pub(crate) const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis' limit of records in one `PutRecords`.
pub(crate) const MAX_CALL_RECORDS: usize = 500;
/// Kinesis' limit of one `PutRecords`: data plus partition keys of all its records.
pub(crate) const MAX_CALL_BYTES: usize = 5 * 1024 * 1024;
/// `PutRecords` calls of one wave in flight at once.
const CALL_CONCURRENCY: usize = 4;

/// One Kinesis record to put: the encoded events bound for one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PackedRecord {
    /// The shard the record is meant for.
    pub shard: ShardId,
    /// Decimal; routes the record to `shard` (the partition key is then only metadata).
    pub explicit_hash_key: String,
    /// The partition key of the record's first event (PutRecords requires one).
    pub partition_key: String,
    pub data: Vec<u8>,
    /// The indices (into the appended events) of the record's events, in record order: the
    /// event at `members[i]` gets index `i` in the record.
    pub members: Vec<usize>,
    /// Attempts that failed so far.
    pub failures: u32,
}

impl PackedRecord {
    /// What the record counts against the record and call limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Packs the events at `selected` (indices into `events`, in input order) into one queue of
/// records per shard, shards in order of first appearance, records in event order. `route`
/// maps an event to its shard and that shard's explicit hash key. CPU-bound (encoding, zstd):
/// run it off the async workers.
pub(crate) fn pack(
    events: &[Event],
    selected: &[usize],
    route: impl Fn(&Event) -> Result<(ShardId, u128)>,
) -> Result<Vec<VecDeque<PackedRecord>>> {
    let mut groups: Vec<(ShardId, u128, Vec<usize>)> = Vec::new();
    let mut group_of: std::collections::HashMap<ShardId, usize> = std::collections::HashMap::new();
    for &index in selected {
        let (shard, hash_key) = route(&events[index])?;
        let group = *group_of.entry(shard.clone()).or_insert_with(|| {
            groups.push((shard, hash_key, Vec::new()));
            groups.len() - 1
        });
        groups[group].2.push(index);
    }
    groups
        .into_iter()
        .map(|(shard, hash_key, members)| {
            let target = Target {
                shard,
                explicit_hash_key: hash_key.to_string(),
            };
            pack_group(events, &target, &members).map(VecDeque::from)
        })
        .collect()
}

/// Where the records of a group go.
struct Target {
    shard: ShardId,
    explicit_hash_key: String,
}

/// The records of one shard.
fn pack_group(events: &[Event], target: &Target, members: &[usize]) -> Result<Vec<PackedRecord>> {
    let mut encoded: Vec<(usize, Vec<u8>)> = Vec::with_capacity(members.len());
    for &index in members {
        let bytes = codec::encode_event(&events[index])
            .map_err(|error| Error::InvalidArgument(format!("event cannot be encoded: {error}")))?;
        if bytes.len() > codec::MAX_RAW_BYTES {
            return Err(Error::TooLarge {
                what: "event",
                size: bytes.len(),
                limit: codec::MAX_RAW_BYTES,
            });
        }
        encoded.push((index, bytes));
    }
    let mut records = Vec::new();
    let mut chunk: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut chunk_bytes = 0;
    for (index, bytes) in encoded {
        if !chunk.is_empty() && chunk_bytes + bytes.len() > codec::MAX_RAW_BYTES {
            fit(events, target, std::mem::take(&mut chunk), &mut records)?;
            chunk_bytes = 0;
        }
        chunk_bytes += bytes.len();
        chunk.push((index, bytes));
    }
    if !chunk.is_empty() {
        fit(events, target, chunk, &mut records)?;
    }
    Ok(records)
}

/// Compresses `chunk` into one record, or splits it in halves until each fits in a record.
fn fit(
    events: &[Event],
    target: &Target,
    chunk: Vec<(usize, Vec<u8>)>,
    records: &mut Vec<PackedRecord>,
) -> Result<()> {
    let Some(&(first, _)) = chunk.first() else {
        return Ok(());
    };
    let partition_key = super::partition_key(&events[first]);
    let raw: Vec<u8> = chunk
        .iter()
        .flat_map(|(_, bytes)| bytes.iter().copied())
        .collect();
    let count = u32::try_from(chunk.len())
        .map_err(|_| Error::InvalidArgument("too many events in one record".to_owned()))?;
    let data = codec::encode_payload(count, &raw)?;
    if data.len() + partition_key.len() <= MAX_RECORD_BYTES {
        records.push(PackedRecord {
            shard: target.shard.clone(),
            explicit_hash_key: target.explicit_hash_key.clone(),
            partition_key,
            data,
            members: chunk.into_iter().map(|(index, _)| index).collect(),
            failures: 0,
        });
        return Ok(());
    }
    if chunk.len() == 1 {
        return Err(Error::TooLarge {
            what: "event (compressed, in a kinesis record)",
            size: data.len() + partition_key.len(),
            limit: MAX_RECORD_BYTES,
        });
    }
    let mut first_half = chunk;
    let second_half = first_half.split_off(first_half.len() / 2);
    fit(events, target, first_half, records)?;
    fit(events, target, second_half, records)
}

/// Splits the queues whose heads go out in this wave into calls of at most 500 records and
/// 5 MiB; returns queue indices per call.
fn plan_calls(queues: &[VecDeque<PackedRecord>]) -> Vec<Vec<usize>> {
    let mut calls: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_bytes = 0;
    for (queue, records) in queues.iter().enumerate() {
        let Some(head) = records.front() else {
            continue;
        };
        if current.len() == MAX_CALL_RECORDS || current_bytes + head.size() > MAX_CALL_BYTES {
            calls.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += head.size();
        current.push(queue);
    }
    if !current.is_empty() {
        calls.push(current);
    }
    calls
}

/// A record that landed in another shard than it was packed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Misrouted {
    /// The shard it is in.
    pub shard: ShardId,
    pub sequence: Sequence,
    /// Its events (indices into the appended events), in record order.
    pub members: Vec<usize>,
}

/// What the waves achieved.
#[derive(Debug, Default)]
pub(crate) struct WaveOutcome {
    /// Every stored event (index into the appended events) with its position.
    pub stored: Vec<(usize, Position)>,
    /// Records that landed in an unexpected shard; which of their events count as stored is
    /// for the caller to decide with a fresh shard map.
    pub misrouted: Vec<Misrouted>,
    /// Why the waves stopped early; the events not in `stored` were not written.
    pub error: Option<Error>,
}

/// Sends the queues' records in waves (see the module note) through `send`, which makes one
/// `PutRecords` call — retried by the caller's retry helper for call-level failures — and
/// returns one result per entry.
pub(crate) async fn send_in_waves<F, Fut>(
    mut queues: Vec<VecDeque<PackedRecord>>,
    policy: &RetryPolicy,
    send: F,
) -> WaveOutcome
where
    F: Fn(Vec<PutEntry>) -> Fut,
    Fut: Future<Output = std::result::Result<Vec<PutResult>, CallError>>,
{
    use futures::StreamExt;

    let mut outcome = WaveOutcome::default();
    loop {
        let calls = plan_calls(&queues);
        if calls.is_empty() {
            return outcome;
        }
        let requests: Vec<Vec<PutEntry>> = calls
            .iter()
            .map(|call| {
                call.iter()
                    .filter_map(|&queue| queues[queue].front())
                    .map(|record| PutEntry {
                        partition_key: record.partition_key.clone(),
                        explicit_hash_key: Some(record.explicit_hash_key.clone()),
                        data: record.data.clone(),
                    })
                    .collect()
            })
            .collect();
        let answers: Vec<_> = futures::stream::iter(requests.into_iter().map(&send))
            .buffered(CALL_CONCURRENCY)
            .collect()
            .await;
        let mut most_failures = 0;
        for (call, answer) in calls.iter().zip(answers) {
            let results = match answer {
                Ok(results) => results,
                Err(error) => {
                    // Keep going through the other calls of this wave: they may have stored
                    // records whose positions must be reported.
                    outcome.error.get_or_insert(error.into_storage());
                    continue;
                }
            };
            for (&queue, result) in call.iter().zip(results) {
                match result {
                    PutResult::Stored { sequence, shard } => {
                        let Some(record) = queues[queue].pop_front() else {
                            continue;
                        };
                        match Sequence::parse(&sequence) {
                            Ok(sequence) if shard != record.shard => {
                                // Nothing more of this shard's queue may go out before these
                                // events are sorted out: the waves stop after this one.
                                queues[queue].clear();
                                outcome.misrouted.push(Misrouted {
                                    shard,
                                    sequence,
                                    members: record.members,
                                });
                            }
                            Ok(sequence) => {
                                outcome.stored.extend(record.members.iter().enumerate().map(
                                    |(offset, &member)| {
                                        let index = u32::try_from(offset).unwrap_or(u32::MAX);
                                        (member, Position::new(sequence.clone(), index))
                                    },
                                ));
                            }
                            Err(error) => {
                                outcome.error.get_or_insert(Error::Corrupt {
                                    location: "PutRecords answer".to_owned(),
                                    detail: error.to_string(),
                                });
                            }
                        }
                    }
                    PutResult::Failed { code, message } => {
                        let Some(record) = queues[queue].front_mut() else {
                            continue;
                        };
                        record.failures += 1;
                        most_failures = most_failures.max(record.failures);
                        let class = classify(&code, 0);
                        if !class.is_retryable() || record.failures >= policy.max_attempts {
                            let error = CallError::new(
                                crate::aws::Operation::PutRecords,
                                class,
                                code,
                                format!(
                                    "record of {} events failed {} times: {message}",
                                    record.members.len(),
                                    record.failures
                                ),
                            );
                            outcome.error.get_or_insert(error.into_storage());
                        }
                    }
                }
            }
        }
        if outcome.error.is_some() || !outcome.misrouted.is_empty() {
            return outcome;
        }
        if most_failures > 0 {
            tracing::debug!(most_failures, "re-sending failed kinesis records");
            tokio::time::sleep(policy.delay(most_failures)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::kinesis::codec::tests::event;
    use std::sync::Mutex;

    /// Fake routing: `customer-2` and `entity-1` to shard "s1", everything else to "s0"; the
    /// explicit hash key is the shard's number.
    fn route(event: &Event) -> Result<(ShardId, u128)> {
        Ok(
            if event.entity == "customer-2" || event.entity == "entity-1" {
                ("s1".to_owned(), 1)
            } else {
                ("s0".to_owned(), 0)
            },
        )
    }

    /// `len` letters that zstd cannot compress much (a linear congruential sequence).
    fn noise(seed: u64, len: usize) -> String {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                char::from(b'a' + ((state >> 33) % 26) as u8)
            })
            .collect()
    }

    #[test]
    fn packs_one_queue_per_shard_in_input_order() {
        let events: Vec<Event> = (0..9).map(event).collect();
        let selected: Vec<usize> = (0..9).filter(|index| *index != 4).collect();
        let queues = pack(&events, &selected, route).unwrap();
        assert_eq!(queues.len(), 2);
        let members: Vec<Vec<usize>> = queues
            .iter()
            .map(|queue| queue[0].members.clone())
            .collect();
        assert_eq!(members, vec![vec![0, 1, 3, 6, 7], vec![2, 5, 8]]);
        assert_eq!(queues[1][0].explicit_hash_key, "1");
        assert_eq!(queues[1][0].partition_key, "acme#customer-2");
        for queue in &queues {
            assert_eq!(queue.len(), 1);
            let decoded = codec::decode_payload(&queue[0].data).unwrap();
            let expected: Vec<Event> = queue[0]
                .members
                .iter()
                .map(|&m| events[m].clone())
                .collect();
            assert_eq!(decoded, expected);
        }
    }

    #[test]
    fn splits_records_that_do_not_fit() {
        // Nearly incompressible properties of 300 KB: a 1 MiB record holds about five.
        let events: Vec<Event> = (0..10)
            .map(|n| {
                let mut e = event(n * 3);
                e.properties = noise(u64::from(n), 300_000);
                e
            })
            .collect();
        let selected: Vec<usize> = (0..10).collect();
        let queues = pack(&events, &selected, route).unwrap();
        assert_eq!(queues.len(), 1);
        let records = &queues[0];
        assert!(records.len() >= 2, "{} records", records.len());
        let order: Vec<usize> = records.iter().flat_map(|r| r.members.clone()).collect();
        assert_eq!(order, selected, "records keep event order");
        assert!(records.iter().all(|r| r.size() <= MAX_RECORD_BYTES));
    }

    #[test]
    fn calls_respect_count_and_byte_limits() {
        let record = |size: usize| PackedRecord {
            shard: "s".into(),
            explicit_hash_key: "0".into(),
            partition_key: "k".into(),
            data: vec![0; size - 1],
            members: vec![0],
            failures: 0,
        };
        let queues: Vec<VecDeque<PackedRecord>> =
            (0..1200).map(|_| VecDeque::from([record(10)])).collect();
        let calls = plan_calls(&queues);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 500, 200]
        );
        let big: Vec<VecDeque<PackedRecord>> = (0..12)
            .map(|_| VecDeque::from([record(1_000_000)]))
            .collect();
        let calls = plan_calls(&big);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![5, 5, 2]
        );
    }

    /// A fake stream: stores records per shard in arrival order, failing the entries a script
    /// says, and checks no call holds two records of one shard.
    struct FakeStream {
        log: Mutex<Vec<(String, Vec<usize>)>>,
        calls: Mutex<u32>,
        fail: fn(call: u32, entry: usize) -> Option<&'static str>,
        /// Where a record really lands, from the call number and its explicit hash key.
        lands: fn(call: u32, explicit_hash_key: &str) -> String,
    }

    impl FakeStream {
        fn new(fail: fn(u32, usize) -> Option<&'static str>) -> Self {
            FakeStream {
                log: Mutex::new(Vec::new()),
                calls: Mutex::new(0),
                fail,
                lands: |_, key| format!("s{key}"),
            }
        }

        async fn put(
            &self,
            entries: Vec<PutEntry>,
        ) -> std::result::Result<Vec<PutResult>, CallError> {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            let mut shards: Vec<String> = entries
                .iter()
                .map(|e| e.explicit_hash_key.clone().unwrap())
                .collect();
            shards.sort_unstable();
            let before = shards.len();
            shards.dedup();
            assert_eq!(shards.len(), before, "two records of one shard in one call");
            let mut log = self.log.lock().unwrap();
            Ok(entries
                .into_iter()
                .enumerate()
                .map(|(entry, put)| match (self.fail)(call, entry) {
                    Some(code) => PutResult::Failed {
                        code: code.into(),
                        message: String::new(),
                    },
                    None => {
                        let members = codec::decode_payload(&put.data)
                            .unwrap()
                            .iter()
                            .map(|e| e.timestamp as usize)
                            .collect();
                        let shard = (self.lands)(call, put.explicit_hash_key.as_deref().unwrap());
                        log.push((shard.clone(), members));
                        PutResult::Stored {
                            sequence: (1000 + log.len()).to_string(),
                            shard,
                        }
                    }
                })
                .collect())
        }
    }

    fn big_events(count: u32) -> Vec<Event> {
        (0..count)
            .map(|n| {
                let mut e = event(n);
                e.entity = format!("entity-{}", n % 2);
                e.timestamp = i64::from(n);
                e.properties = noise(u64::from(n), 450_000);
                e
            })
            .collect()
    }

    /// Two shards with several records each (big, nearly incompressible events), some entries
    /// of the first calls throttled: every event stored once, each shard's events in order.
    #[tokio::test]
    async fn partial_failures_never_reorder_a_shard() {
        let events = big_events(12);
        let selected: Vec<usize> = (0..12).collect();
        let queues = pack(&events, &selected, route).unwrap();
        assert!(
            queues.iter().all(|q| q.len() > 1),
            "several records per shard"
        );
        let stream = FakeStream::new(|call, entry| {
            (call <= 4 && (call + entry as u32).is_multiple_of(2))
                .then_some("ProvisionedThroughputExceededException")
        });
        let outcome =
            send_in_waves(queues, &RetryPolicy::fast(), |entries| stream.put(entries)).await;
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.stored.len(), 12);
        let log = stream.log.lock().unwrap();
        for shard in ["s0", "s1"] {
            let order: Vec<usize> = log
                .iter()
                .filter(|(s, _)| s == shard)
                .flat_map(|(_, m)| m.clone())
                .collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(order, sorted, "{shard} reordered");
            assert_eq!(order.len(), 6);
        }
        for parity in 0..2 {
            let mut positions: Vec<(usize, Position)> = outcome
                .stored
                .iter()
                .filter(|(member, _)| member % 2 == parity)
                .cloned()
                .collect();
            positions.sort_by_key(|(member, _)| *member);
            assert!(positions.windows(2).all(|pair| pair[0].1 < pair[1].1));
        }
    }

    #[tokio::test]
    async fn a_non_retryable_failure_stops_the_shard_and_reports_what_was_stored() {
        let events: Vec<Event> = (0..6).map(event).collect();
        let selected: Vec<usize> = (0..6).collect();
        let queues = pack(&events, &selected, route).unwrap();
        let stream = FakeStream::new(|_, entry| (entry == 1).then_some("KMSAccessDeniedException"));
        let outcome =
            send_in_waves(queues, &RetryPolicy::fast(), |entries| stream.put(entries)).await;
        assert!(
            matches!(outcome.error, Some(Error::Backend(_))),
            "{:?}",
            outcome.error
        );
        // Shard s0 stored (customers 0 and 1), s1 (customer 2) not.
        let mut stored: Vec<usize> = outcome.stored.iter().map(|(m, _)| *m).collect();
        stored.sort_unstable();
        assert_eq!(stored, vec![0, 1, 3, 4]);
    }

    #[tokio::test]
    async fn endless_throttling_gives_up_after_the_policy() {
        let events: Vec<Event> = (0..2).map(event).collect();
        let queues = pack(&events, &[0, 1], route).unwrap();
        let stream = FakeStream::new(|_, _| Some("ProvisionedThroughputExceededException"));
        let policy = RetryPolicy::fast();
        let outcome = send_in_waves(queues, &policy, |entries| stream.put(entries)).await;
        assert!(
            matches!(outcome.error, Some(Error::Throttled(_))),
            "{:?}",
            outcome.error
        );
        assert!(outcome.stored.is_empty());
        assert_eq!(*stream.calls.lock().unwrap(), policy.max_attempts);
    }

    #[tokio::test]
    async fn a_record_landing_elsewhere_stops_its_shard() {
        let events = big_events(8);
        let selected: Vec<usize> = (0..8).collect();
        let queues = pack(&events, &selected, route).unwrap();
        let mut stream = FakeStream::new(|_, _| None);
        // Shard s1's records land in "s9" (a reshard the map has not seen).
        stream.lands = |_, key| {
            if key == "1" {
                "s9".to_owned()
            } else {
                format!("s{key}")
            }
        };
        let outcome =
            send_in_waves(queues, &RetryPolicy::fast(), |entries| stream.put(entries)).await;
        assert!(outcome.error.is_none());
        assert_eq!(outcome.misrouted.len(), 1);
        assert_eq!(outcome.misrouted[0].shard, "s9");
        assert!(outcome.stored.iter().all(|(member, _)| member % 2 == 0));
        let s9_records = stream
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == "s9")
            .count();
        assert_eq!(
            s9_records, 1,
            "nothing more of the shard went out after the misroute"
        );
    }
}
