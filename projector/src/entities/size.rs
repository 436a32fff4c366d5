//! How many bytes an entity's stored items take, kept up to date event by event, so that an
//! event that would grow an item past what the tables store is refused before it is applied.
//!
//! Without this bound an entity sending ever new event names (`viewed_product_1234`, …),
//! numeric properties or trait keys grows its profile and day items without end. Once one is
//! over DynamoDB's 400 KB (which the embedded tables enforce too), every flush of its shard
//! fails with `TooLarge`, whatever the retries: the whole shard's read model stops. Refusing
//! the one event instead (a dead letter, as any event a projection cannot apply) keeps the
//! shard going and shows the problem in the dead-letter count.
//!
//! Only the profile is counted. A day item holds a subset of the profile's event names, each
//! with a count no larger than the profile's all-time one, and the profile holds more besides:
//! a day item is smaller than its profile, so bounding the profile bounds it too.
//!
//! The sizes follow the stored form exactly ([`super::codec`]: postcard, whose integers and
//! lengths are LEB128 varints, signed ones zigzagged; an `Option` is a tag byte; an `f64` is 8
//! bytes), so a debug build checks them against every encoded item.

use super::Profile;
use serde::Serialize;

/// The most bytes a profile's `state` may take. The index entry holds the traits' text, which
/// is part of the state, so it is bounded too.
pub(crate) use crate::projection::MAX_ITEM_BYTES;

/// An upper bound on what one event adds to a profile besides its traits and its new count
/// name (added apart): the name's length and count, the event count's and the times' varints
/// growing, the maps' lengths growing; the totals are added per key.
const EVENT_GROWTH_BOUND: usize = 64;

/// Bytes of `value` as a LEB128 varint.
pub(crate) fn varint(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes of an `Option<i64>` (zigzag varint after a tag byte).
fn optional_time(value: Option<i64>) -> usize {
    value.map_or(1, |time| 1 + varint(((time << 1) ^ (time >> 63)) as u64))
}

/// Bytes of a length-prefixed string.
fn string(len: usize) -> usize {
    varint(len as u64) + len
}

/// How much a map's length prefix grows when it gains `added` entries.
pub(crate) fn map_prefix(len: usize, added: usize) -> usize {
    varint((len + added) as u64) - varint(len as u64)
}

/// What counting one more `name` adds to a map of counts holding `len` names, of which
/// `name` had `before` (`None`: a new name).
pub(crate) fn count_growth(before: Option<u64>, name_len: usize, len: usize) -> usize {
    match before {
        Some(count) => varint(count + 1) - varint(count),
        None => string(name_len) + varint(1) + map_prefix(len, 1),
    }
}

/// Bytes of a JSON value or string as `serde_json` writes it compactly.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing JSON values and strings to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The length of a traits object's JSON text after `properties` are merged into `traits`
/// (later keys replacing earlier ones), from its length `text` now (0: no traits, stored as
/// an empty text rather than `{}`).
pub(crate) fn merged_traits(
    traits: &serde_json::Map<String, serde_json::Value>,
    text: usize,
    properties: &serde_json::Map<String, serde_json::Value>,
) -> usize {
    let mut text = text as isize;
    let mut entries = traits.len();
    for (key, value) in properties {
        match traits.get(key) {
            Some(old) => text += json(value) as isize - json(old) as isize,
            None => {
                // `{` and `}` around the first entry, a comma before any other.
                text += (json(key.as_str()) + 1 + json(value)) as isize
                    + if entries == 0 { 2 } else { 1 };
                entries += 1;
            }
        }
    }
    text.max(0) as usize
}

/// Bytes of the traits' text in the state, length prefix included.
pub(crate) fn traits(text: usize) -> usize {
    string(text)
}

/// What moving first and last seen to include `timestamp` adds to a profile (less than 0
/// when a time's varint shrinks).
pub(crate) fn seen_growth(profile: &Profile, timestamp: i64) -> isize {
    let first = profile.first_seen.map_or(timestamp, |t| t.min(timestamp));
    let last = profile.last_seen.map_or(timestamp, |t| t.max(timestamp));
    (optional_time(Some(first)) + optional_time(Some(last))) as isize
        - (optional_time(profile.first_seen) + optional_time(profile.last_seen)) as isize
}

/// What one more event adds to the event count.
pub(crate) fn events_growth(events: u64) -> usize {
    varint(events + 1) - varint(events)
}

/// What a new key of the totals adds to its entry count.
pub(crate) fn total_entry(key_len: usize) -> usize {
    string(key_len) + 8
}

/// What an event adds to a profile, exactly, looking each name up: `name` counted, `totals`
/// (keys of numeric properties) added to, first and last seen moved to `timestamp`; the
/// traits are apart ([`merged_traits`]).
pub(crate) fn profile_growth(
    profile: &Profile,
    name: &str,
    totals: &[(String, f64)],
    timestamp: i64,
) -> isize {
    let counted = count_growth(
        profile.counts.get(name).copied(),
        name.len(),
        profile.counts.len(),
    );
    let mut added = 0;
    let mut new_totals = 0;
    for (key, _) in totals {
        if !profile.totals.contains_key(key) {
            new_totals += total_entry(key.len());
            added += 1;
        }
    }
    (counted + events_growth(profile.events) + new_totals + map_prefix(profile.totals.len(), added))
        as isize
        + seen_growth(profile, timestamp)
}

/// An upper bound on [`profile_growth`] that looks nothing up: what lets an event far from
/// the limit (all of them, in a sane workload) skip the exact count.
pub(crate) fn profile_growth_bound(name: &str, totals: &[(String, f64)]) -> usize {
    name.len()
        + EVENT_GROWTH_BOUND
        + totals
            .iter()
            .map(|(key, _)| total_entry(key.len()) + 2)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_match_postcard() {
        for value in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(
                varint(value),
                postcard::to_stdvec(&value).unwrap().len(),
                "{value}"
            );
        }
        for time in [
            None,
            Some(0i64),
            Some(-1),
            Some(1_732_435_200_000),
            Some(i64::MIN),
        ] {
            assert_eq!(
                optional_time(time),
                postcard::to_stdvec(&time).unwrap().len()
            );
        }
    }

    #[test]
    fn merged_traits_match_the_text() {
        let mut traits = serde_json::Map::new();
        let mut text = 0;
        let merges = [
            json!({"plan": "pro", "seats": 12}),
            json!({"plan": "enterprise", "note": "a \"quoted\" ünïcode\nline"}),
            json!({"seats": 1.5e300, "nested": {"x": [1, null, true]}}),
            json!({}),
        ];
        for merge in merges {
            let properties = merge.as_object().unwrap();
            text = merged_traits(&traits, text, properties);
            traits.extend(properties.clone());
            assert_eq!(text, serde_json::to_string(&traits).unwrap().len());
        }
    }
}
