//! How an [`Item`] is stored as a redb value.
//!
//! Layout: one version byte, then the item (a `BTreeMap<String, Value>`) in postcard, which is
//! compact (varint lengths, variant indices, numbers as 8 raw bytes) and needs no schema beside
//! `Value`'s serde derive. Invariants:
//! - the version byte comes first, so a later layout can be read beside this one;
//! - `decode(encode(item)) == item` for every item (numbers keep all 64 bits);
//! - decoding never panics: bytes that are not a valid item are [`Error::Corrupt`].
//!
//! Postcard encodes enum variants by their index, so the order of `Value`'s variants is part of
//! this format: reordering them needs a new version byte.

use crate::{Error, Item, Result};

/// The only layout so far: postcard of the item's map.
const VERSION_POSTCARD: u8 = 1;

/// The stored form of an item, written into `buffer` (cleared first) so that a caller storing
/// many items reuses one allocation.
pub(crate) fn encode_item(item: &Item, mut buffer: Vec<u8>) -> Result<Vec<u8>> {
    buffer.clear();
    buffer.push(VERSION_POSTCARD);
    // `to_extend` appends after the version byte, so there is no second buffer to copy.
    postcard::to_extend(item, buffer)
        .map_err(|error| Error::Backend(format!("cannot encode an item: {error}")))
}

/// The item stored as `bytes`; `location` names where they came from for the error message.
pub(crate) fn decode_item(bytes: &[u8], location: impl Fn() -> String) -> Result<Item> {
    let corrupt = |detail: String| Error::Corrupt {
        location: location(),
        detail,
    };
    match bytes.split_first() {
        Some((&VERSION_POSTCARD, body)) => {
            let (item, rest) = postcard::take_from_bytes::<Item>(body)
                .map_err(|error| corrupt(format!("undecodable item: {error}")))?;
            if !rest.is_empty() {
                return Err(corrupt(format!(
                    "{} trailing bytes after the item",
                    rest.len()
                )));
            }
            Ok(item)
        }
        Some((version, _)) => Err(corrupt(format!("unknown item version {version}"))),
        None => Err(corrupt("empty value".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;
    use std::collections::BTreeMap;

    fn sample() -> Item {
        let nested: BTreeMap<String, Value> = [
            (
                "inner".to_owned(),
                Value::L(vec![Value::Null, Value::Bool(false)]),
            ),
            ("bytes".to_owned(), Value::B(vec![0, 255, 7])),
        ]
        .into_iter()
        .collect();
        [
            ("s".to_owned(), Value::S("ünïcödé#1".to_owned())),
            ("n".to_owned(), Value::N(9_007_199_254_740_992.0)),
            ("fraction".to_owned(), Value::N(-0.1)),
            ("b".to_owned(), Value::B(Vec::new())),
            ("t".to_owned(), Value::Bool(true)),
            ("null".to_owned(), Value::Null),
            ("m".to_owned(), Value::M(nested)),
        ]
        .into_iter()
        .collect()
    }

    fn here() -> String {
        "test".to_owned()
    }

    #[test]
    fn round_trips_every_value_type() {
        let item = sample();
        let bytes = encode_item(&item, Vec::new()).expect("encodes");
        assert_eq!(bytes[0], VERSION_POSTCARD);
        assert_eq!(decode_item(&bytes, here).expect("decodes"), item);
    }

    /// Files written while `Value::B` was a plain `Vec<u8>` (a postcard sequence of `u8`) must
    /// still decode: the bytes are pinned here.
    #[test]
    fn bytes_values_keep_their_stored_form() {
        let item: Item = [("b".to_owned(), Value::B(vec![0, 255, 7]))]
            .into_iter()
            .collect();
        let stored = [VERSION_POSTCARD, 1, 1, b'b', 2, 3, 0, 255, 7];
        assert_eq!(encode_item(&item, Vec::new()).expect("encodes"), stored);
        assert_eq!(decode_item(&stored, here).expect("decodes"), item);
    }

    #[test]
    fn empty_item_is_one_version_byte_and_a_length() {
        let bytes = encode_item(&Item::new(), Vec::new()).expect("encodes");
        assert_eq!(bytes, vec![VERSION_POSTCARD, 0]);
        assert!(decode_item(&bytes, here).expect("decodes").is_empty());
    }

    #[test]
    fn rejects_empty_unknown_version_truncated_and_trailing_bytes() {
        let bytes = encode_item(&sample(), Vec::new()).expect("encodes");
        let corrupt = |bytes: &[u8]| matches!(decode_item(bytes, here), Err(Error::Corrupt { .. }));
        assert!(corrupt(&[]));
        assert!(corrupt(&[9, 0]));
        assert!(corrupt(&bytes[..bytes.len() - 1]));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(corrupt(&trailing));
    }
}
