//! Evaluating a [`Condition`] against an item and applying an [`Update`] to it: pure functions,
//! shared by every backend that does this work itself (embedded, the in-memory double).
//!
//! Semantics follow DynamoDB's condition expressions, so a backend that hands conditions to
//! DynamoDB behaves the same:
//! - an absent attribute makes every comparison false (`Eq`, `Lt`, …); only `NotExists` is true
//!   for it, and `Not` simply negates (so `Not(Lt(absent, x))` is true);
//! - `Lt`/`Le`/`Gt`/`Ge` compare strings and binaries byte-wise and numbers numerically; values
//!   of different types, and types without an order (bool, null, lists, maps), never compare;
//! - `Eq` is structural equality of values of the same type (numbers numerically);
//! - `And([])` is true and `Or([])` is false (the identities of all and any);
//! - `ItemExists`/`ItemNotExists` look at whether the item is stored, not at its attributes: an
//!   item whose attributes were all removed still exists.

use crate::{Condition, Error, Item, Result, Update, Value};
use std::cmp::Ordering;

/// Whether `condition` holds for the current item (`None`: the item does not exist).
pub(crate) fn evaluate(condition: &Condition, item: Option<&Item>) -> bool {
    let attribute = |name: &str| item.and_then(|attributes| attributes.get(name));
    let ordered = |name: &str, operand: &Value, accept: fn(Ordering) -> bool| {
        attribute(name)
            .and_then(|current| compare(current, operand))
            .is_some_and(accept)
    };
    match condition {
        Condition::ItemExists => item.is_some(),
        Condition::ItemNotExists => item.is_none(),
        Condition::Exists(name) => attribute(name).is_some(),
        Condition::NotExists(name) => attribute(name).is_none(),
        Condition::Eq(name, operand) => attribute(name).is_some_and(|current| current == operand),
        Condition::Lt(name, operand) => ordered(name, operand, Ordering::is_lt),
        Condition::Le(name, operand) => ordered(name, operand, Ordering::is_le),
        Condition::Gt(name, operand) => ordered(name, operand, Ordering::is_gt),
        Condition::Ge(name, operand) => ordered(name, operand, Ordering::is_ge),
        Condition::And(all) => all.iter().all(|inner| evaluate(inner, item)),
        Condition::Or(any) => any.iter().any(|inner| evaluate(inner, item)),
        Condition::Not(inner) => !evaluate(inner, item),
    }
}

/// The order of two values, when they have one: same type, and that type is ordered.
pub(crate) fn compare(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        // `str`'s order is its UTF-8 bytes' order, which is DynamoDB's order for S.
        (Value::S(left), Value::S(right)) => Some(left.as_bytes().cmp(right.as_bytes())),
        (Value::N(left), Value::N(right)) => left.partial_cmp(right),
        (Value::B(left), Value::B(right)) => Some(left.cmp(right)),
        _ => None,
    }
}

/// The item after `update`: SET, then ADD (an absent attribute counts as 0), then REMOVE,
/// starting from an empty item when `current` is `None`. The condition is not looked at here.
///
/// Fails with [`Error::InvalidArgument`] when ADD meets an attribute that is not a number, as
/// DynamoDB does; the caller then changes nothing.
pub(crate) fn apply_update(current: Option<Item>, update: &Update) -> Result<Item> {
    let mut item = current.unwrap_or_default();
    for (name, value) in &update.set {
        item.insert(name.clone(), value.clone());
    }
    for (name, delta) in &update.add {
        match item.get_mut(name) {
            None => {
                item.insert(name.clone(), Value::N(*delta));
            }
            Some(Value::N(number)) => *number += delta,
            Some(_) => {
                return Err(Error::InvalidArgument(format!(
                    "ADD to attribute {name:?}, which is not a number"
                )));
            }
        }
    }
    for name in &update.remove {
        item.remove(name);
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;
    use std::collections::BTreeMap;

    fn item() -> Item {
        [
            ("n".to_owned(), Value::N(5.0)),
            ("s".to_owned(), Value::S("m".to_owned())),
            ("b".to_owned(), Value::B(vec![1, 2])),
            ("flag".to_owned(), Value::Bool(true)),
            ("nothing".to_owned(), Value::Null),
            ("list".to_owned(), Value::L(vec![Value::N(1.0)])),
        ]
        .into_iter()
        .collect()
    }

    fn holds(condition: Condition) -> bool {
        evaluate(&condition, Some(&item()))
    }

    fn n(number: f64) -> Value {
        Value::N(number)
    }

    fn s(text: &str) -> Value {
        Value::S(text.to_owned())
    }

    #[test]
    fn item_existence() {
        assert!(evaluate(&Condition::ItemExists, Some(&Item::new())));
        assert!(!evaluate(&Condition::ItemExists, None));
        assert!(evaluate(&Condition::ItemNotExists, None));
        assert!(!evaluate(&Condition::ItemNotExists, Some(&Item::new())));
    }

    #[test]
    fn attribute_existence() {
        assert!(holds(Condition::Exists("n".into())));
        assert!(!holds(Condition::Exists("absent".into())));
        assert!(holds(Condition::NotExists("absent".into())));
        assert!(!holds(Condition::NotExists("n".into())));
        // A missing item has no attributes at all.
        assert!(evaluate(&Condition::NotExists("n".into()), None));
        assert!(!evaluate(&Condition::Exists("n".into()), None));
    }

    #[test]
    fn numbers_compare_numerically() {
        assert!(holds(Condition::Eq("n".into(), n(5.0))));
        assert!(holds(Condition::Lt("n".into(), n(10.0))));
        assert!(!holds(Condition::Lt("n".into(), n(5.0))));
        assert!(holds(Condition::Le("n".into(), n(5.0))));
        assert!(holds(Condition::Gt("n".into(), n(-1.0))));
        assert!(holds(Condition::Ge("n".into(), n(5.0))));
        assert!(!holds(Condition::Gt("n".into(), n(5.0))));
    }

    #[test]
    fn strings_and_binaries_compare_byte_wise() {
        // "B" (0x42) sorts before "a" (0x61); "é" (0xC3..) after "z".
        assert!(holds(Condition::Gt("s".into(), s("B"))));
        assert!(holds(Condition::Lt("s".into(), s("z"))));
        assert!(holds(Condition::Lt("s".into(), s("é"))));
        assert!(holds(Condition::Lt("s".into(), s("ma"))));
        assert!(holds(Condition::Le("s".into(), s("m"))));
        assert!(holds(Condition::Gt("b".into(), Value::B(vec![1]))));
        assert!(holds(Condition::Lt("b".into(), Value::B(vec![1, 3]))));
        assert!(holds(Condition::Eq("b".into(), Value::B(vec![1, 2]))));
    }

    #[test]
    fn different_types_never_compare() {
        assert!(!holds(Condition::Eq("n".into(), s("5"))));
        assert!(!holds(Condition::Lt("n".into(), s("9"))));
        assert!(!holds(Condition::Ge("s".into(), n(0.0))));
        assert!(!holds(Condition::Gt("b".into(), s(""))));
        // Unordered types: equality only.
        assert!(holds(Condition::Eq("flag".into(), Value::Bool(true))));
        assert!(!holds(Condition::Ge("flag".into(), Value::Bool(true))));
        assert!(holds(Condition::Eq("nothing".into(), Value::Null)));
        assert!(holds(Condition::Eq("list".into(), Value::L(vec![n(1.0)]))));
        assert!(!holds(Condition::Le("list".into(), Value::L(vec![n(1.0)]))));
    }

    #[test]
    fn absent_attributes_compare_false_and_not_negates() {
        for condition in [
            Condition::Eq("absent".into(), n(1.0)),
            Condition::Lt("absent".into(), n(1.0)),
            Condition::Le("absent".into(), n(1.0)),
            Condition::Gt("absent".into(), n(1.0)),
            Condition::Ge("absent".into(), n(1.0)),
        ] {
            assert!(!holds(condition.clone()), "{condition:?}");
            assert!(holds(Condition::Not(Box::new(condition))));
        }
    }

    #[test]
    fn combinators() {
        let yes = || Condition::Exists("n".into());
        let no = || Condition::Exists("absent".into());
        assert!(holds(Condition::And(vec![yes(), yes()])));
        assert!(!holds(Condition::And(vec![yes(), no()])));
        assert!(holds(Condition::Or(vec![no(), yes()])));
        assert!(!holds(Condition::Or(vec![no(), no()])));
        assert!(holds(Condition::And(Vec::new())));
        assert!(!holds(Condition::Or(Vec::new())));
        assert!(!holds(Condition::Not(Box::new(yes()))));
    }

    #[test]
    fn last_applied_position_idiom() {
        let newer_than = |stored: Option<&str>, incoming: &str| {
            let current: Option<Item> =
                stored.map(|text| BTreeMap::from([("pos".to_owned(), s(text))]));
            let condition = Condition::Or(vec![
                Condition::NotExists("pos".into()),
                Condition::Lt("pos".into(), s(incoming)),
            ]);
            evaluate(&condition, current.as_ref())
        };
        assert!(newer_than(None, "0012:0000000000"));
        assert!(newer_than(Some("0011:0000000009"), "0012:0000000000"));
        assert!(!newer_than(Some("0012:0000000000"), "0012:0000000000"));
        assert!(!newer_than(Some("0013:0000000000"), "0012:0000000000"));
    }

    #[test]
    fn update_sets_then_adds_then_removes() {
        let update = Update::new(Key::new("p", "s"))
            .set("s", s("new"))
            .set("fresh", n(1.0))
            .add("n", 2.5)
            .add("counter", -3.0)
            .remove("b");
        let after = apply_update(Some(item()), &update).expect("applies");
        assert_eq!(after.get("s"), Some(&s("new")));
        assert_eq!(after.get("fresh"), Some(&n(1.0)));
        assert_eq!(after.get("n"), Some(&n(7.5)));
        assert_eq!(after.get("counter"), Some(&n(-3.0)));
        assert_eq!(after.get("b"), None);
        assert_eq!(after.get("flag"), Some(&Value::Bool(true)));
    }

    #[test]
    fn update_of_a_missing_item_starts_empty() {
        let update = Update::new(Key::new("p", "s")).add("count", 1.0);
        let after = apply_update(None, &update).expect("applies");
        assert_eq!(after, BTreeMap::from([("count".to_owned(), n(1.0))]));
        let nothing = apply_update(None, &Update::new(Key::new("p", "s"))).expect("applies");
        assert!(nothing.is_empty());
    }

    #[test]
    fn add_to_a_non_number_is_invalid() {
        let update = Update::new(Key::new("p", "s")).add("s", 1.0);
        assert!(matches!(
            apply_update(Some(item()), &update),
            Err(Error::InvalidArgument(_))
        ));
    }
}
