//! The stored form of a [`Profile`]: the profile item's `state` attribute.
//!
//! Written as bytes (`B`): a format byte, then postcard of the fields in [`Profile`]'s order,
//! the traits as their JSON text (empty when there are none). Postcard is not self-describing,
//! so it cannot carry the traits' arbitrary JSON values itself; their text can, and the index
//! entry needs that text anyway. Timestamps and counts become varints and the map keys lose
//! their quotes and field names: a typical profile takes a quarter to a half of its JSON, which
//! is bytes the tables' single commit thread no longer copies, and the projector no longer
//! formats and parses floats and integers as decimal text.
//!
//! Items written before this form hold `state` as JSON text (`S`). [`decode`] reads both, and
//! the next flush that touches such an item rewrites it as bytes, so no re-projection is needed.

use super::Profile;
use crate::Error;
use serde::{Deserialize, Serialize};
use shoal_storage::{Key, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

const FORMAT_V1: u8 = 1;

/// The stored fields: borrowed from the profile when encoding, the maps owned when decoding
/// (the traits' text stays borrowed from the bytes until it is parsed).
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    first_seen: Option<i64>,
    last_seen: Option<i64>,
    traits: &'a str,
    totals: Cow<'a, BTreeMap<String, f64>>,
    counts: Cow<'a, BTreeMap<String, u64>>,
    events: u64,
}

/// The JSON text of a profile's traits, as stored (empty for no traits).
pub(crate) fn traits_text(key: &Key, profile: &Profile) -> Result<String, Error> {
    if profile.traits.is_empty() {
        return Ok(String::new());
    }
    serde_json::to_string(&profile.traits).map_err(|error| Error::corrupt(key, error.to_string()))
}

/// The `state` bytes of a profile whose traits' text is `traits` (from [`traits_text`]).
pub(crate) fn encode(key: &Key, profile: &Profile, traits: &str) -> Result<Vec<u8>, Error> {
    let encoded = Stored {
        first_seen: profile.first_seen,
        last_seen: profile.last_seen,
        traits,
        totals: Cow::Borrowed(&profile.totals),
        counts: Cow::Borrowed(&profile.counts),
        events: profile.events,
    };
    let mut bytes = vec![FORMAT_V1];
    postcard::to_io(&encoded, &mut bytes)
        .map_err(|error| Error::corrupt(key, error.to_string()))?;
    Ok(bytes)
}

/// The profile a `state` attribute holds, in either stored form.
pub(crate) fn decode(key: &Key, state: &Value) -> Result<Profile, Error> {
    decode_sized(key, state).map(|(profile, _)| profile)
}

/// The bytes a profile takes in its stored form, and its traits' text within them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sizes {
    pub state: usize,
    pub traits: usize,
}

/// [`decode`], with the sizes of the stored form (computed for JSON text from before it).
pub(crate) fn decode_sized(key: &Key, state: &Value) -> Result<(Profile, Sizes), Error> {
    let bytes = match state {
        Value::B(bytes) => bytes,
        Value::S(text) => {
            let profile: Profile = serde_json::from_str(text)
                .map_err(|error| Error::corrupt(key, format!("state: {error}")))?;
            let sizes = sizes(key, &profile)?;
            return Ok((profile, sizes));
        }
        _ => return Err(Error::corrupt(key, "state is neither bytes nor text")),
    };
    let body = format_v1_body(key, bytes, "state")?;
    let decoded: Stored = postcard::from_bytes(body)
        .map_err(|error| Error::corrupt(key, format!("state: {error}")))?;
    let traits = if decoded.traits.is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_str(decoded.traits)
            .map_err(|error| Error::corrupt(key, format!("state traits: {error}")))?
    };
    let sizes = Sizes {
        state: bytes.len(),
        traits: decoded.traits.len(),
    };
    let profile = Profile {
        first_seen: decoded.first_seen,
        last_seen: decoded.last_seen,
        traits,
        totals: decoded.totals.into_owned(),
        counts: decoded.counts.into_owned(),
        events: decoded.events,
    };
    Ok((profile, sizes))
}

/// The sizes of `profile` in its stored form, by encoding it.
pub(crate) fn sizes(key: &Key, profile: &Profile) -> Result<Sizes, Error> {
    let traits = traits_text(key, profile)?;
    Ok(Sizes {
        state: encode(key, profile, &traits)?.len(),
        traits: traits.len(),
    })
}

/// What follows the format byte of an attribute's bytes (`what` names it in errors).
fn format_v1_body<'a>(key: &Key, bytes: &'a [u8], what: &str) -> Result<&'a [u8], Error> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => Ok(body),
        Some((format, _)) => Err(Error::corrupt(
            key,
            format!("{what} has unknown format {format}"),
        )),
        None => Err(Error::corrupt(key, format!("{what} is empty"))),
    }
}

/// The `counts` bytes of a day item: a format byte, then postcard of the name → count map.
/// Items written before hold `counts` as a map of numbers (`M`), which means an attribute
/// name, a string and a float per event name, allocated on every flush and every read.
pub(crate) fn encode_counts(key: &Key, counts: &BTreeMap<String, u64>) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![FORMAT_V1];
    postcard::to_io(counts, &mut bytes).map_err(|error| Error::corrupt(key, error.to_string()))?;
    Ok(bytes)
}

/// Calls `add` with each name and count of a day item's `counts`, in either stored form. The
/// names are borrowed: postcard writes a map as its length and then its pairs, which is also
/// how it writes a sequence of pairs, so they decode without a map or a string allocated.
pub(crate) fn for_each_count(
    key: &Key,
    counts: &Value,
    mut add: impl FnMut(&str, u64),
) -> Result<(), Error> {
    match counts {
        Value::M(map) => {
            for (name, count) in map {
                add(name, count.as_f64().unwrap_or(0.0) as u64);
            }
            Ok(())
        }
        Value::B(bytes) => {
            let body = format_v1_body(key, bytes, "counts")?;
            let pairs: Vec<(&str, u64)> = postcard::from_bytes(body)
                .map_err(|error| Error::corrupt(key, format!("counts: {error}")))?;
            for (name, count) in pairs {
                add(name, count);
            }
            Ok(())
        }
        _ => Err(Error::corrupt(key, "counts are neither a map nor bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> Key {
        Key::new("v1#acme#entity#u1", "profile")
    }

    fn profile() -> Profile {
        let mut profile = Profile {
            first_seen: Some(1_732_435_200_000),
            last_seen: Some(1_732_521_600_123),
            events: 42,
            ..Profile::default()
        };
        let traits = json!({"plan": "pro", "seats": 12, "tags": ["a", "b"], "nested": {"x": null, "y": 1.5}});
        profile.traits = traits.as_object().cloned().unwrap_or_default();
        profile.totals.insert("purchase.amount".into(), 1234.5678);
        profile.totals.insert("purchase.items".into(), -3.0);
        profile.counts.insert("purchase".into(), 41);
        profile.counts.insert("$identify".into(), 1);
        profile
    }

    fn stored(profile: &Profile) -> Value {
        let traits = traits_text(&key(), profile).unwrap();
        Value::B(encode(&key(), profile, &traits).unwrap())
    }

    #[test]
    fn day_counts_read_back_from_bytes_and_from_the_older_map() {
        let key = Key::new("v1#acme#entity#u1", "day#2024-11-24");
        let mut counts = BTreeMap::new();
        counts.insert("login".to_owned(), 3u64);
        counts.insert("$identify".to_owned(), 1);
        counts.insert("ünïcode name".to_owned(), u64::from(u32::MAX) + 7);
        let read = |value: &Value| {
            let mut got = BTreeMap::new();
            for_each_count(&key, value, |name, count| {
                got.insert(name.to_owned(), count);
            })
            .unwrap();
            got
        };
        let bytes = Value::B(encode_counts(&key, &counts).unwrap());
        assert_eq!(read(&bytes), counts);
        let map = Value::M(
            counts
                .iter()
                .map(|(name, count)| (name.clone(), Value::N(*count as f64)))
                .collect(),
        );
        assert_eq!(read(&map), counts);
        assert_eq!(
            read(&Value::B(encode_counts(&key, &BTreeMap::new()).unwrap())),
            BTreeMap::new()
        );
        assert!(for_each_count(&key, &Value::B(vec![9, 0]), |_, _| {}).is_err());
        assert!(for_each_count(&key, &Value::B(vec![FORMAT_V1, 1, 5]), |_, _| {}).is_err());
        assert!(for_each_count(&key, &Value::S("x".into()), |_, _| {}).is_err());
    }

    #[test]
    fn bytes_round_trip() {
        for profile in [profile(), Profile::default()] {
            assert_eq!(decode(&key(), &stored(&profile)).unwrap(), profile);
        }
    }

    #[test]
    fn bytes_are_smaller_than_the_json_they_replace() {
        let profile = profile();
        let Value::B(bytes) = stored(&profile) else {
            panic!("not bytes")
        };
        let json = serde_json::to_string(&profile).unwrap();
        assert!(
            bytes.len() * 4 < json.len() * 3,
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        let mut plain = Profile {
            first_seen: Some(1_732_435_200_000),
            last_seen: Some(1_732_435_200_000),
            events: 300,
            ..Profile::default()
        };
        plain.counts.insert("load".into(), 300);
        let Value::B(bytes) = stored(&plain) else {
            panic!("not bytes")
        };
        let json = serde_json::to_string(&plain).unwrap();
        assert!(
            bytes.len() * 3 < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn json_text_from_before_the_binary_form_still_reads() {
        let profile = profile();
        let legacy = Value::S(serde_json::to_string(&profile).unwrap());
        assert_eq!(decode(&key(), &legacy).unwrap(), profile);
    }

    #[test]
    fn damaged_state_is_an_error_naming_the_item() {
        let Value::B(good) = stored(&profile()) else {
            panic!("not bytes")
        };
        let mut unknown = good.clone();
        unknown[0] = 9;
        let cases = [
            Value::B(Vec::new()),
            Value::B(unknown),
            Value::B(good[..good.len() / 2].to_vec()),
            Value::S("{not json".into()),
            Value::N(1.0),
        ];
        for state in cases {
            let error = decode(&key(), &state).expect_err("damaged state decoded");
            assert!(error.to_string().contains("v1#acme#entity#u1"), "{error}");
        }
    }
}
