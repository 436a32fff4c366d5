//! [`Value`] ↔ DynamoDB `AttributeValue`, and items ↔ attribute maps.
//!
//! Invariants:
//! - numbers are written as the shortest decimal text that reads back to the same `f64`, so
//!   integers stay integers (`3`, never `3.0`) and nothing is lost on the way back; DynamoDB
//!   keeps numbers as decimals, so what it stores is exactly the `f64`'s shortest decimal;
//! - the key lives in the attributes `pk` and `sk` (both `S`). An [`Item`] may use any
//!   attribute name, these two included (the trait keeps the key apart from the item), so item
//!   attributes are stored under an escaped name when they would collide: `pk`, `sk` and any
//!   name starting with `~` get one more `~` in front ([`stored_name`]), undone on reading
//!   ([`item_name`]). Conditions and updates name attributes through the same escaping;
//! - DynamoDB set types (`SS`, `NS`, `BS`) are never written by Shoal, so reading one is
//!   reported as corrupt data instead of being guessed into a list.

use crate::{Error, Item, Key, Result, Value};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, HashMap};

/// The partition key attribute of every table.
pub(crate) const PK: &str = "pk";
/// The sort key attribute of every table.
pub(crate) const SK: &str = "sk";

/// The escape of item attribute names that would collide with the key attributes.
const ESCAPE: char = '~';

/// The DynamoDB attribute name of an item attribute (see the module header).
pub(crate) fn stored_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name == PK || name == SK || name.starts_with(ESCAPE) {
        std::borrow::Cow::Owned(format!("{ESCAPE}{name}"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The item attribute name of a stored, non-key attribute name.
pub(crate) fn item_name(stored: String) -> String {
    match stored.strip_prefix(ESCAPE) {
        Some(name) => name.to_owned(),
        None => stored,
    }
}

/// An attribute map as the SDK takes it.
pub(crate) type Attributes = HashMap<String, AttributeValue>;

/// The text DynamoDB gets for a number. Callers have checked the number is storable
/// (finite, within DynamoDB's magnitude range).
pub(crate) fn format_number(number: f64) -> String {
    // -0 and 0 are the same number to DynamoDB; "-0" would be read back as -0.0 and compare
    // unequal to a freshly written 0 in our own tests.
    if number == 0.0 {
        return "0".to_owned();
    }
    let magnitude = number.abs();
    if (1e-7..1e21).contains(&magnitude) {
        // `Display` is the shortest round-trip form and never uses an exponent: "3", "0.1",
        // "123456789012345680000".
        number.to_string()
    } else {
        // Far from 1, plain digits would run to hundreds of characters; DynamoDB reads
        // exponent notation ("1.5e-130").
        format!("{number:e}")
    }
}

/// Parses a number DynamoDB returned.
pub(crate) fn parse_number(text: &str) -> Result<f64> {
    text.parse::<f64>().map_err(|_| Error::Corrupt {
        location: "dynamodb number".to_owned(),
        detail: format!("{text:?} is not a number"),
    })
}

pub(crate) fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::S(text) => AttributeValue::S(text.clone()),
        Value::N(number) => AttributeValue::N(format_number(*number)),
        Value::B(bytes) => AttributeValue::B(Blob::new(bytes.clone())),
        Value::Bool(flag) => AttributeValue::Bool(*flag),
        Value::Null => AttributeValue::Null(true),
        Value::L(values) => AttributeValue::L(values.iter().map(to_attribute).collect()),
        Value::M(map) => AttributeValue::M(
            map.iter()
                .map(|(name, inner)| (name.clone(), to_attribute(inner)))
                .collect(),
        ),
    }
}

pub(crate) fn from_attribute(attribute: AttributeValue) -> Result<Value> {
    Ok(match attribute {
        AttributeValue::S(text) => Value::S(text),
        AttributeValue::N(text) => Value::N(parse_number(&text)?),
        AttributeValue::B(blob) => Value::B(blob.into_inner()),
        AttributeValue::Bool(flag) => Value::Bool(flag),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(values) => Value::L(
            values
                .into_iter()
                .map(from_attribute)
                .collect::<Result<Vec<_>>>()?,
        ),
        AttributeValue::M(map) => Value::M(
            map.into_iter()
                .map(|(name, inner)| Ok((name, from_attribute(inner)?)))
                .collect::<Result<BTreeMap<_, _>>>()?,
        ),
        other => {
            return Err(Error::Corrupt {
                location: "dynamodb item".to_owned(),
                detail: format!("unsupported attribute type {other:?}"),
            });
        }
    })
}

/// The key attributes of `key`.
pub(crate) fn key_attributes(key: &Key) -> Attributes {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// The attributes of `item` stored under `key`.
pub(crate) fn item_attributes(key: &Key, item: &Item) -> Result<Attributes> {
    let mut attributes = key_attributes(key);
    attributes.reserve(item.len());
    for (name, value) in item {
        attributes.insert(stored_name(name).into_owned(), to_attribute(value));
    }
    Ok(attributes)
}

/// The key of a stored attribute map.
pub(crate) fn key_of(attributes: &Attributes) -> Result<Key> {
    let text = |name: &str| match attributes.get(name) {
        Some(AttributeValue::S(text)) => Ok(text.clone()),
        _ => Err(Error::Corrupt {
            location: "dynamodb item".to_owned(),
            detail: format!("key attribute {name:?} is missing or not a string"),
        }),
    };
    Ok(Key::new(text(PK)?, text(SK)?))
}

/// The item (without its key) of a stored attribute map.
pub(crate) fn item_of(attributes: Attributes) -> Result<Item> {
    attributes
        .into_iter()
        .filter(|(name, _)| name != PK && name != SK)
        .map(|(name, attribute)| Ok((item_name(name), from_attribute(attribute)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_integers_integral_and_round_trip() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(-42.0), "-42");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(0.1), "0.1");
        assert_eq!(format_number(9_007_199_254_740_992.0), "9007199254740992");
        assert_eq!(format_number(1.5e-130), "1.5e-130");
        for number in [
            0.1,
            1.0 / 3.0,
            1e20,
            1e21,
            1e-7,
            1e-8,
            123.456,
            -1e125,
            2.5e-100,
        ] {
            let text = format_number(number);
            assert_eq!(parse_number(&text).unwrap(), number, "{text}");
        }
    }

    #[test]
    fn values_round_trip() {
        let value = Value::M(BTreeMap::from([
            ("s".to_owned(), Value::S("x".to_owned())),
            ("n".to_owned(), Value::N(2.5)),
            ("b".to_owned(), Value::B(vec![0, 255])),
            ("t".to_owned(), Value::Bool(true)),
            ("z".to_owned(), Value::Null),
            (
                "l".to_owned(),
                Value::L(vec![Value::N(1.0), Value::S(String::new())]),
            ),
        ]));
        assert_eq!(from_attribute(to_attribute(&value)).unwrap(), value);
        assert!(from_attribute(AttributeValue::Ss(vec!["a".into()])).is_err());
    }

    #[test]
    fn items_keep_their_key_apart() {
        let key = Key::new("t#e", "1");
        let item = Item::from([("count".to_owned(), Value::N(1.0))]);
        let attributes = item_attributes(&key, &item).unwrap();
        assert_eq!(key_of(&attributes).unwrap(), key);
        assert_eq!(item_of(attributes).unwrap(), item);
        let clash = Item::from([
            ("pk".to_owned(), Value::S("other".to_owned())),
            ("sk".to_owned(), Value::N(1.0)),
            ("~x".to_owned(), Value::Bool(true)),
            ("plain".to_owned(), Value::Null),
        ]);
        let attributes = item_attributes(&key, &clash).unwrap();
        assert_eq!(attributes["pk"], AttributeValue::S("t#e".into()));
        assert_eq!(attributes["~pk"], AttributeValue::S("other".into()));
        assert!(attributes.contains_key("~~x") && attributes.contains_key("plain"));
        assert_eq!(key_of(&attributes).unwrap(), key);
        assert_eq!(item_of(attributes).unwrap(), clash);
    }
}
