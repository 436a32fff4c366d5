//! Posting lists: the archive's index into a log that keeps everything.
//!
//! One item holds the events of one entity in one hour of event time that one flush wrote, as
//! packed entries (time, id, log position), up to [`MAX_BYTES`]. An item per event made the
//! archive half of a replay's CPU (BENCHMARKS.md, Session 11): a B-tree insert, two keys and an
//! item map per event, where a flush of many events of one entity now writes one item.
//!
//! Key: SK `p#<hour start:20>#<sortable position of the list's first event>`, beside the
//! per-event items of older layouts (their SKs start with a digit, so the two never share a
//! range). The position makes each flush's list a new item, so nothing is read back to append
//! to it. A replay with other batch bounds (a split flush retried on a non-transactional
//! backend, a reset checkpoint) may write an event into a second list: readers drop repeats
//! (an event is its time and id, as in the per-event layout).
//!
//! Entry: time (i64, big-endian), id (16 bytes), index in the log record (u32, big-endian),
//! then the record's sequence as a u16 length and its digits, or a length of 0 for "the same
//! sequence as the entry before" (a flush's events come a log block at a time).

use super::{Error, Result, SHARD_ATTRIBUTE};
use crate::keys::{padded_millis, push_padded_millis};
use foldhash::HashMap;
use shoal_schemas::{Event, Position, Sequence, ShardId};
use shoal_storage::{Item, Key, SortRange, Value};

pub(crate) const PREFIX: &str = "p#";
pub(crate) const POSTINGS_ATTRIBUTE: &str = "postings";
/// An hour of event time per list: a page of an entity's newest events reads the lists of the
/// hours it covers whole (entries within a list are in log order, not time order).
pub(crate) const BUCKET_MILLIS: i64 = 3_600_000;
/// A list is closed and a new one begun past this size: well under the 400 KB item limit, and
/// a bound on what a page reads beyond the entries it returns.
pub(crate) const MAX_BYTES: usize = 128 * 1024;

/// The start of the hour holding `timestamp` (times before the epoch clamp to 0, as in every key).
pub(crate) fn bucket_of(timestamp: i64) -> i64 {
    let clamped = timestamp.max(0);
    clamped - clamped % BUCKET_MILLIS
}

fn sort_key(bucket: i64, first: &Position) -> String {
    let first = first.sortable();
    let mut sk = String::with_capacity(PREFIX.len() + 20 + 1 + first.len());
    sk.push_str(PREFIX);
    push_padded_millis(&mut sk, bucket);
    sk.push('#');
    sk.push_str(&first);
    sk
}

/// The sort keys of the lists of hours `from_bucket..=to_bucket`.
pub(crate) fn range(from_bucket: i64, to_bucket: i64) -> SortRange {
    SortRange::Between(
        format!("{PREFIX}{}", padded_millis(from_bucket)),
        // `$` sorts after `#`: every list of the last hour.
        format!("{PREFIX}{}$", padded_millis(to_bucket)),
    )
}

/// The hour of a list's key.
pub(crate) fn bucket_of_key(key: &Key) -> Result<i64> {
    key.sk
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.get(..20))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| Error::corrupt(key, "not a posting list's key"))
}

/// One event of a list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    /// Event time as keys see it (clamped at 0).
    pub timestamp: i64,
    pub id: uuid::Uuid,
    pub position: Position,
}

struct List {
    pk: String,
    /// Empty until the list's first event (a list closed when full leaves an empty one behind).
    sk: String,
    bytes: Vec<u8>,
    last_sequence: Option<Sequence>,
}

impl List {
    fn new(pk: String) -> Self {
        List {
            pk,
            sk: String::new(),
            bytes: Vec::new(),
            last_sequence: None,
        }
    }
}

/// The lists a flush is building, by entity (partition key) and hour.
#[derive(Default)]
pub(crate) struct Open {
    lists: HashMap<(String, i64), List>,
    full: Vec<List>,
}

impl Open {
    pub(crate) fn add(&mut self, pk: String, event: &Event, position: &Position) {
        let timestamp = event.timestamp.max(0);
        let bucket = bucket_of(timestamp);
        let list = self
            .lists
            .entry((pk, bucket))
            .or_insert_with_key(|(pk, _)| List::new(pk.clone()));
        if list.sk.is_empty() {
            list.sk = sort_key(bucket, position);
            list.bytes.reserve(64);
        }
        list.bytes.extend_from_slice(&timestamp.to_be_bytes());
        list.bytes.extend_from_slice(event.id.as_bytes());
        list.bytes.extend_from_slice(&position.index.to_be_bytes());
        if list.last_sequence.as_ref() == Some(&position.sequence) {
            list.bytes.extend_from_slice(&0u16.to_be_bytes());
        } else {
            let digits = position.sequence.as_str().as_bytes();
            // Sequences are decimal numbers: the embedded log's are u64s (≤ 20 digits),
            // Kinesis's at most 128 digits.
            let length = u16::try_from(digits.len()).unwrap_or(u16::MAX);
            list.bytes.extend_from_slice(&length.to_be_bytes());
            list.bytes.extend_from_slice(&digits[..usize::from(length)]);
            list.last_sequence = Some(position.sequence.clone());
        }
        if list.bytes.len() >= MAX_BYTES {
            let empty = List::new(list.pk.clone());
            self.full.push(std::mem::replace(list, empty));
        }
    }

    /// The items to put, each with the shard its positions are in.
    pub(crate) fn into_items(self, shard: &ShardId) -> impl Iterator<Item = (Key, Item)> + '_ {
        let open = self.lists.into_values();
        self.full
            .into_iter()
            .chain(open)
            .filter(|list| !list.bytes.is_empty())
            .map(move |list| {
                let mut item = Item::new();
                item.insert(SHARD_ATTRIBUTE.into(), Value::S(shard.clone()));
                item.insert(POSTINGS_ATTRIBUTE.into(), Value::B(list.bytes));
                (Key::new(list.pk, list.sk), item)
            })
    }
}

/// The entries of a list's bytes.
pub(crate) fn decode(key: &Key, bytes: &[u8]) -> Result<Vec<Entry>> {
    let corrupt = || Error::corrupt(key, "a posting list ends inside an entry");
    let mut entries = Vec::new();
    let mut rest = bytes;
    let mut sequence: Option<Sequence> = None;
    while !rest.is_empty() {
        let (fixed, tail) = rest.split_at_checked(8 + 16 + 4 + 2).ok_or_else(corrupt)?;
        let (timestamp, fixed) = fixed.split_at(8);
        let (id, fixed) = fixed.split_at(16);
        let (index, length) = fixed.split_at(4);
        // The splits above are of exactly these lengths.
        let timestamp = i64::from_be_bytes(timestamp.try_into().map_err(|_| corrupt())?);
        let id = uuid::Uuid::from_slice(id).map_err(|_| corrupt())?;
        let index = u32::from_be_bytes(index.try_into().map_err(|_| corrupt())?);
        let length = usize::from(u16::from_be_bytes(
            length.try_into().map_err(|_| corrupt())?,
        ));
        rest = tail;
        if length > 0 {
            let (digits, tail) = rest.split_at_checked(length).ok_or_else(corrupt)?;
            let digits = std::str::from_utf8(digits).map_err(|_| corrupt())?;
            sequence = Some(
                Sequence::parse(digits).map_err(|error| Error::corrupt(key, error.to_string()))?,
            );
            rest = tail;
        }
        let sequence = sequence
            .clone()
            .ok_or_else(|| Error::corrupt(key, "a posting list's first entry has no sequence"))?;
        entries.push(Entry {
            timestamp,
            id,
            position: Position::new(sequence, index),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(entity: &str, timestamp: i64, n: u128) -> Event {
        Event {
            id: uuid::Uuid::from_u128(n),
            tenant: "acme".into(),
            kind: shoal_schemas::EventKind::Track,
            name: "login".into(),
            entity: entity.into(),
            timestamp,
            received_at: timestamp,
            properties: "{}".into(),
            value: None,
        }
    }

    fn at(sequence: u64, index: u32) -> Position {
        Position::new(Sequence::from_u64(sequence), index)
    }

    fn all(open: Open) -> Vec<(Key, Vec<Entry>)> {
        let mut items: Vec<_> = open
            .into_items(&"0".to_owned())
            .map(|(key, item)| {
                let Some(Value::B(bytes)) = item.get(POSTINGS_ATTRIBUTE) else {
                    panic!("no postings in {item:?}");
                };
                let entries = decode(&key, bytes).expect("decodes");
                (key, entries)
            })
            .collect();
        items.sort_by(|a, b| a.0.sk.cmp(&b.0.sk).then(a.0.pk.cmp(&b.0.pk)));
        items
    }

    #[test]
    fn lists_per_entity_and_hour_round_trip() {
        let mut open = Open::default();
        let hour = 1_704_067_200_000;
        let events = [
            (event("u1", hour + 5, 1), at(100, 0)),
            (event("u2", hour + 6, 2), at(100, 1)),
            (event("u1", hour + 7, 3), at(100, 2)),
            (event("u1", hour + BUCKET_MILLIS, 4), at(200, 0)),
            (event("u1", hour + 1, 5), at(12_345_678_901, 0)),
            (event("u1", -5, 6), at(12_345_678_901, 1)),
        ];
        for (event, position) in &events {
            open.add(format!("acme#{}", event.entity), event, position);
        }
        let items = all(open);
        let keys: Vec<_> = items
            .iter()
            .map(|(key, _)| format!("{} {}", key.pk, key.sk))
            .collect();
        assert_eq!(
            keys,
            [
                format!(
                    "acme#u1 p#{}#{}",
                    padded_millis(0),
                    at(12_345_678_901, 1).sortable()
                ),
                format!(
                    "acme#u1 p#{}#{}",
                    padded_millis(hour),
                    at(100, 0).sortable()
                ),
                format!(
                    "acme#u2 p#{}#{}",
                    padded_millis(hour),
                    at(100, 1).sortable()
                ),
                format!(
                    "acme#u1 p#{}#{}",
                    padded_millis(hour + BUCKET_MILLIS),
                    at(200, 0).sortable()
                ),
            ]
        );
        let u1: Vec<_> = items[1]
            .1
            .iter()
            .map(|e| (e.timestamp, e.position.clone()))
            .collect();
        assert_eq!(
            u1,
            [
                (hour + 5, at(100, 0)),
                (hour + 7, at(100, 2)),
                (hour + 1, at(12_345_678_901, 0))
            ]
        );
        assert_eq!(items[1].1[1].id, uuid::Uuid::from_u128(3));
        // Times before the epoch are kept as keys see them.
        assert_eq!(items[0].1[0].timestamp, 0);
        assert_eq!(bucket_of_key(&items[3].0).unwrap(), hour + BUCKET_MILLIS);
    }

    #[test]
    fn a_full_list_is_closed_and_the_next_event_begins_another() {
        let mut open = Open::default();
        let hour = 1_704_067_200_000;
        let count = MAX_BYTES / 30 + 10;
        for n in 0..count {
            let position = at(1_000 + n as u64 / 100, (n % 100) as u32);
            open.add(
                "acme#u1".into(),
                &event("u1", hour + n as i64, n as u128),
                &position,
            );
        }
        let items = all(open);
        assert_eq!(items.len(), 2, "one full list and one begun after it");
        assert_eq!(items.iter().map(|(_, e)| e.len()).sum::<usize>(), count);
        let first_of_second = &items[1].1[0];
        assert_eq!(
            items[1].0.sk,
            sort_key(hour, &first_of_second.position),
            "the new list is keyed by its own first event"
        );
        for (key, _) in &items {
            assert!(key.sk.len() < 100);
        }
    }

    #[test]
    fn a_list_cut_inside_an_entry_is_an_error() {
        let mut open = Open::default();
        open.add("acme#u1".into(), &event("u1", 5, 1), &at(7, 0));
        let (key, item) = open.into_items(&"0".to_owned()).next().expect("one list");
        let Some(Value::B(bytes)) = item.get(POSTINGS_ATTRIBUTE) else {
            panic!("no postings");
        };
        assert_eq!(decode(&key, bytes).unwrap().len(), 1);
        for cut in 1..bytes.len() {
            assert!(decode(&key, &bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
