//! DynamoDB's input limits, checked by the backends that do not hand their input to DynamoDB.
//!
//! The embedded store itself could take empty keys, NaN or a 10 MB item; DynamoDB cannot. Code
//! that works on one machine must work on AWS, so the embedded backend (and the in-memory double)
//! refuse the same input DynamoDB refuses, with the same error variant the AWS backend reports:
//! - keys: partition key 1..=2048 bytes, sort key 1..=1024 bytes;
//! - numbers: finite, magnitude 0 or within DynamoDB's range `[1e-130, 1e126)`;
//! - attribute names: not empty;
//! - items: at most 400 KB by DynamoDB's size rules (estimated; see [`item_size`]);
//! - an update names each attribute at most once across SET, ADD and REMOVE (DynamoDB rejects
//!   overlapping paths in one update expression);
//! - a transaction is not empty and touches each `(table, key)` once; a batch write touches each
//!   key once (DynamoDB rejects duplicates in one batch).

use crate::{Error, Item, Key, Result, TableName, TransactOp, Update, Value, WriteOp};
// foldhash, not SipHash: a flush's transaction checks tens of thousands of keys for repeats on
// the single commit thread (7 % of an archive replay with SipHash).
use foldhash::{HashSet, HashSetExt};

/// DynamoDB's largest partition key value, in bytes.
pub(crate) const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// DynamoDB's largest sort key value, in bytes.
pub(crate) const MAX_SORT_KEY_BYTES: usize = 1024;
/// DynamoDB's largest item (attribute names and values, key included).
pub(crate) const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB numbers: magnitudes from 1e-130 up to (not including) 1e126.
const MIN_NUMBER_MAGNITUDE: f64 = 1e-130;
const MAX_NUMBER_MAGNITUDE: f64 = 1e126;

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

pub(crate) fn partition_key(pk: &str) -> Result<()> {
    if pk.is_empty() {
        return Err(invalid("the partition key is empty".to_owned()));
    }
    if pk.len() > MAX_PARTITION_KEY_BYTES {
        return Err(Error::TooLarge {
            what: "partition key",
            size: pk.len(),
            limit: MAX_PARTITION_KEY_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn key(key: &Key) -> Result<()> {
    partition_key(&key.pk)?;
    if key.sk.is_empty() {
        return Err(invalid("the sort key is empty".to_owned()));
    }
    if key.sk.len() > MAX_SORT_KEY_BYTES {
        return Err(Error::TooLarge {
            what: "sort key",
            size: key.sk.len(),
            limit: MAX_SORT_KEY_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn number(number: f64) -> Result<()> {
    let magnitude = number.abs();
    let representable =
        magnitude == 0.0 || (MIN_NUMBER_MAGNITUDE..MAX_NUMBER_MAGNITUDE).contains(&magnitude);
    if representable {
        Ok(())
    } else {
        Err(invalid(format!("the number {number} cannot be stored")))
    }
}

fn attribute_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid("an attribute name is empty".to_owned()));
    }
    Ok(())
}

/// Every number inside `value`, however deeply nested, is storable.
pub(crate) fn value(value: &Value) -> Result<()> {
    match value {
        Value::N(number) => self::number(*number),
        Value::L(values) => values.iter().try_for_each(self::value),
        Value::M(map) => map.values().try_for_each(self::value),
        Value::S(_) | Value::B(_) | Value::Bool(_) | Value::Null => Ok(()),
    }
}

/// An item as it is about to be stored under `key`.
pub(crate) fn item(key: &Key, item: &Item) -> Result<()> {
    for (name, attribute) in item {
        attribute_name(name)?;
        value(attribute)?;
    }
    let size = item_size(key, item);
    if size > MAX_ITEM_BYTES {
        return Err(Error::TooLarge {
            what: "item",
            size,
            limit: MAX_ITEM_BYTES,
        });
    }
    Ok(())
}

/// An update before it is applied (the item after it is checked with [`item`]).
pub(crate) fn update(update: &Update) -> Result<()> {
    key(&update.key)?;
    let mut named = HashSet::new();
    let names = update
        .set
        .iter()
        .map(|(name, _)| name)
        .chain(update.add.iter().map(|(name, _)| name))
        .chain(&update.remove);
    for name in names {
        attribute_name(name)?;
        if !named.insert(name.as_str()) {
            return Err(invalid(format!(
                "the update names attribute {name:?} more than once"
            )));
        }
    }
    for (_, set) in &update.set {
        value(set)?;
    }
    for (_, delta) in &update.add {
        number(*delta)?;
    }
    Ok(())
}

/// A batch write: valid keys and items, each key once.
pub(crate) fn write(ops: &[WriteOp]) -> Result<()> {
    let mut seen = HashSet::with_capacity(ops.len());
    for op in ops {
        let op_key = match op {
            WriteOp::Put {
                key: put_key,
                item: put_item,
            } => {
                item(put_key, put_item)?;
                put_key
            }
            WriteOp::Delete { key: delete_key } => delete_key,
        };
        key(op_key)?;
        if !seen.insert(op_key) {
            return Err(invalid(format!(
                "the batch writes {op_key:?} more than once"
            )));
        }
    }
    Ok(())
}

/// The table and key an op of a transaction touches.
pub(crate) fn transact_target(op: &TransactOp) -> (TableName, &Key) {
    match op {
        TransactOp::Put { table, key, .. }
        | TransactOp::Delete { table, key, .. }
        | TransactOp::Check { table, key, .. } => (*table, key),
        TransactOp::Update { table, update } => (*table, &update.key),
    }
}

/// A transaction: not empty, valid ops, each `(table, key)` once.
pub(crate) fn transaction(ops: &[TransactOp]) -> Result<()> {
    if ops.is_empty() {
        return Err(invalid("the transaction is empty".to_owned()));
    }
    let mut seen = HashSet::with_capacity(ops.len());
    for op in ops {
        transact_op(op)?;
        let (table, op_key) = transact_target(op);
        if !seen.insert((table, op_key)) {
            return Err(repeated(table, op_key));
        }
    }
    Ok(())
}

/// [`transaction`] for ops in `(table, key)` order, where a repeat sits beside its twin: no set
/// to hash every key into.
pub(crate) fn sorted_transaction(ops: &[TransactOp]) -> Result<()> {
    if ops.is_empty() {
        return Err(invalid("the transaction is empty".to_owned()));
    }
    let mut previous = None;
    for op in ops {
        transact_op(op)?;
        let target = transact_target(op);
        match previous {
            Some(earlier) if earlier == target => return Err(repeated(target.0, target.1)),
            Some(earlier) if earlier > target => {
                return Err(Error::Backend(
                    "a prepared transaction is not in key order".to_owned(),
                ));
            }
            _ => previous = Some(target),
        }
    }
    Ok(())
}

/// One op of a transaction: its key, and its item or update.
fn transact_op(op: &TransactOp) -> Result<()> {
    match op {
        TransactOp::Put {
            key: put_key,
            item: put_item,
            ..
        } => item(put_key, put_item)?,
        TransactOp::Update {
            update: op_update, ..
        } => update(op_update)?,
        TransactOp::Delete { .. } | TransactOp::Check { .. } => {}
    }
    key(transact_target(op).1)
}

fn repeated(table: TableName, op_key: &Key) -> Error {
    invalid(format!(
        "the transaction touches {op_key:?} in {} more than once",
        table.as_str()
    ))
}

/// An item's size by DynamoDB's rules: names and values in bytes, numbers about one byte per two
/// significant digits plus one, null and bool one byte, lists and maps 3 bytes plus one per
/// element. The key attributes' names are not known here (the AWS backend picks them), so a
/// short name is assumed for each. An estimate, close enough to catch item designs (such as
/// points packed per bucket) that would not fit in DynamoDB.
pub(crate) fn item_size(key: &Key, item: &Item) -> usize {
    const KEY_NAME_BYTES: usize = 2;
    let key_size = 2 * KEY_NAME_BYTES + key.pk.len() + key.sk.len();
    key_size
        + item
            .iter()
            .map(|(name, attribute)| name.len() + value_size(attribute))
            .sum::<usize>()
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::S(text) => text.len(),
        Value::B(bytes) => bytes.len(),
        Value::N(number) => number_size(*number),
        Value::Bool(_) | Value::Null => 1,
        Value::L(values) => {
            3 + values
                .iter()
                .map(|inner| 1 + value_size(inner))
                .sum::<usize>()
        }
        Value::M(map) => {
            3 + map
                .iter()
                .map(|(name, inner)| 1 + name.len() + value_size(inner))
                .sum::<usize>()
        }
    }
}

fn number_size(number: f64) -> usize {
    significant_digits(number).div_ceil(2) + 1
}

/// The significant digits DynamoDB would store for `number`: those of the shortest decimal that
/// reads back to the same f64. Most stored numbers are counts, so integers are counted without
/// formatting; the rest are formatted by `ryu` into a buffer on the stack (this runs for every
/// number of every item a flush writes).
fn significant_digits(number: f64) -> usize {
    const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;
    if !number.is_finite() {
        // `inf` and `NaN` have no digits (and never get this far: `number` refuses them).
        return 0;
    }
    if number == 0.0 {
        return 1;
    }
    if number.fract() == 0.0 && number.abs() < EXACT_INTEGER {
        let mut integer = number.abs() as u64;
        while integer.is_multiple_of(10) {
            integer /= 10;
        }
        return integer.checked_ilog10().map_or(1, |log| log as usize + 1);
    }
    // `ryu` writes the shortest digits as `123.45`, `0.0012` or `1.5e-7`: the mantissa's digits
    // without the zeros that only place the point are the significant ones.
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(number);
    let mantissa = text.split('e').next().unwrap_or_default();
    mantissa
        .trim_start_matches(['-', '0', '.'])
        .trim_end_matches(['0', '.'])
        .bytes()
        .filter(u8::is_ascii_digit)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(pk: &str, sk: &str) -> Key {
        Key::new(pk, sk)
    }

    #[test]
    fn keys() {
        assert!(key(&key_of("p", "s")).is_ok());
        assert!(matches!(
            key(&key_of("", "s")),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            key(&key_of("p", "")),
            Err(Error::InvalidArgument(_))
        ));
        let long = "x".repeat(MAX_PARTITION_KEY_BYTES + 1);
        assert!(matches!(
            key(&key_of(&long, "s")),
            Err(Error::TooLarge { .. })
        ));
        assert!(key(&key_of(&long[1..], &long[..MAX_SORT_KEY_BYTES])).is_ok());
        assert!(matches!(
            key(&key_of("p", &long[..MAX_SORT_KEY_BYTES + 1])),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn numbers() {
        for good in [0.0, -0.0, 1.0, 9_007_199_254_740_992.0, -1e125, 1e-130, 0.1] {
            assert!(number(good).is_ok(), "{good}");
        }
        for bad in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e126,
            -1e200,
            1e-131,
            5e-324,
        ] {
            assert!(number(bad).is_err(), "{bad}");
        }
        let nested = Value::M([("x".to_owned(), Value::L(vec![Value::N(f64::NAN)]))].into());
        assert!(value(&nested).is_err());
    }

    #[test]
    fn updates_name_each_attribute_once() {
        let base = || Update::new(key_of("p", "s"));
        assert!(update(&base().set("a", Value::Null).add("b", 1.0).remove("c")).is_ok());
        assert!(update(&base().set("a", Value::Null).remove("a")).is_err());
        assert!(update(&base().add("a", 1.0).add("a", 1.0)).is_err());
        assert!(update(&base().set("", Value::Null)).is_err());
        assert!(update(&base().add("a", f64::NAN)).is_err());
    }

    #[test]
    fn transactions_are_non_empty_and_touch_each_key_once() {
        assert!(transaction(&[]).is_err());
        let check = |table| TransactOp::Check {
            table,
            key: key_of("p", "s"),
            condition: crate::Condition::ItemExists,
        };
        assert!(transaction(&[check(TableName::Views), check(TableName::Control)]).is_ok());
        assert!(transaction(&[check(TableName::Views), check(TableName::Views)]).is_err());
    }

    #[test]
    fn sorted_transactions_find_a_repeat_beside_its_twin() {
        assert!(sorted_transaction(&[]).is_err());
        let check = |table, sk: &str| TransactOp::Check {
            table,
            key: key_of("p", sk),
            condition: crate::Condition::ItemExists,
        };
        let ops = [
            check(TableName::Views, "a"),
            check(TableName::Views, "b"),
            check(TableName::Control, "a"),
        ];
        let mut sorted = ops.to_vec();
        sorted.sort_unstable_by(|left, right| transact_target(left).cmp(&transact_target(right)));
        assert!(sorted_transaction(&sorted).is_ok());
        let repeat = [check(TableName::Views, "a"), check(TableName::Views, "a")];
        let error = sorted_transaction(&repeat).unwrap_err().to_string();
        assert!(error.contains("more than once"), "{error}");
        // Out of order is a caller's bug, not something to let through.
        let mut reversed = sorted.clone();
        reversed.reverse();
        assert!(sorted_transaction(&reversed).is_err());
    }

    proptest::proptest! {
        /// The integer shortcut and the stack formatting count what formatting `{:e}` on the
        /// heap counted.
        #[test]
        fn significant_digits_match_the_shortest_decimal(
            bits in proptest::num::u64::ANY,
            integer in -10_000_000_000_i64..10_000_000_000,
            scale in 0_u32..6,
        ) {
            let by_text = |number: f64| {
                let text = format!("{number:e}");
                let mantissa = text.split('e').next().unwrap_or_default();
                mantissa.bytes().filter(u8::is_ascii_digit).count()
            };
            let any = f64::from_bits(bits);
            if any.is_finite() {
                proptest::prop_assert_eq!(significant_digits(any), by_text(any), "{}", any);
            }
            let round = integer as f64 * 10f64.powi(scale as i32);
            proptest::prop_assert_eq!(significant_digits(round), by_text(round), "{}", round);
            let decimal = integer as f64 / 10f64.powi(scale as i32);
            proptest::prop_assert_eq!(significant_digits(decimal), by_text(decimal), "{}", decimal);
        }
    }

    #[test]
    fn writes_touch_each_key_once() {
        let delete = |sk: &str| WriteOp::Delete {
            key: key_of("p", sk),
        };
        assert!(write(&[]).is_ok());
        assert!(write(&[delete("a"), delete("b")]).is_ok());
        assert!(write(&[delete("a"), delete("a")]).is_err());
    }

    #[test]
    fn item_size_follows_dynamodb_rules() {
        let item: Item = [
            ("s".to_owned(), Value::S("abc".to_owned())),
            ("n".to_owned(), Value::N(12345.0)),
            (
                "l".to_owned(),
                Value::L(vec![Value::Bool(true), Value::Null]),
            ),
        ]
        .into();
        // key 4 + 1 + 1; "s" 1 + 3; "n" 1 + (3 + 1); "l" 1 + 3 + 2 * (1 + 1)
        assert_eq!(item_size(&key_of("p", "s"), &item), 6 + 4 + 5 + 8);
        let big: Item = [("b".to_owned(), Value::B(vec![0; MAX_ITEM_BYTES]))].into();
        assert!(matches!(
            self::item(&key_of("p", "s"), &big),
            Err(Error::TooLarge { what: "item", .. })
        ));
    }
}
