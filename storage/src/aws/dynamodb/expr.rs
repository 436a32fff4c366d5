//! [`Condition`], [`Update`] and [`SortRange`] → DynamoDB expression strings.
//!
//! Invariant: no attribute name and no value is ever spliced into an expression. Every name
//! becomes a `#nN` placeholder in `ExpressionAttributeNames` (so reserved words such as `ttl`,
//! `count` or `name`, and names with dots or spaces, are taken literally as one top-level
//! attribute) and every value a `:vN` placeholder in `ExpressionAttributeValues`.
//!
//! Semantics match the trait (and the embedded backend's `condition.rs`): `ItemExists` is
//! `attribute_exists(pk)` (every stored item has its key), `And([])` is true and `Or([])` false,
//! spelled with a tautology / contradiction on the key because DynamoDB has no literal booleans.

use crate::aws::dynamodb::value::{Attributes, PK, SK, stored_name, to_attribute};
use crate::{Condition, SortRange, Update, Value};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// Placeholders collected while building the expressions of one request.
#[derive(Debug, Default)]
pub(crate) struct Expressions {
    /// `#nN` → attribute name.
    names: HashMap<String, String>,
    /// attribute name → `#nN`, so a name used twice gets one placeholder.
    placeholders: HashMap<String, String>,
    /// `:vN` → value.
    values: Attributes,
}

impl Expressions {
    /// The placeholder of an attribute name.
    pub(crate) fn name(&mut self, name: &str) -> String {
        if let Some(placeholder) = self.placeholders.get(name) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), name.to_owned());
        self.placeholders
            .insert(name.to_owned(), placeholder.clone());
        placeholder
    }

    /// The placeholder of an item attribute, escaped as it is stored (`value::stored_name`).
    pub(crate) fn attribute(&mut self, name: &str) -> String {
        self.name(&stored_name(name))
    }

    /// The placeholder of a value.
    pub(crate) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// A condition expression.
    pub(crate) fn condition(&mut self, condition: &Condition) -> String {
        let compare = |this: &mut Self, name: &str, operator: &str, operand: &Value| {
            let name = this.attribute(name);
            let operand = this.value(to_attribute(operand));
            format!("{name} {operator} {operand}")
        };
        match condition {
            Condition::ItemExists => format!("attribute_exists({})", self.name(PK)),
            Condition::ItemNotExists => format!("attribute_not_exists({})", self.name(PK)),
            Condition::Exists(name) => format!("attribute_exists({})", self.attribute(name)),
            Condition::NotExists(name) => {
                format!("attribute_not_exists({})", self.attribute(name))
            }
            Condition::Eq(name, operand) => compare(self, name, "=", operand),
            Condition::Lt(name, operand) => compare(self, name, "<", operand),
            Condition::Le(name, operand) => compare(self, name, "<=", operand),
            Condition::Gt(name, operand) => compare(self, name, ">", operand),
            Condition::Ge(name, operand) => compare(self, name, ">=", operand),
            Condition::And(all) if all.is_empty() => self.always(true),
            Condition::Or(any) if any.is_empty() => self.always(false),
            Condition::And(all) => self.join(all, " AND "),
            Condition::Or(any) => self.join(any, " OR "),
            Condition::Not(inner) => format!("(NOT {})", self.condition(inner)),
        }
    }

    fn join(&mut self, conditions: &[Condition], operator: &str) -> String {
        let parts: Vec<String> = conditions
            .iter()
            .map(|inner| self.condition(inner))
            .collect();
        format!("({})", parts.join(operator))
    }

    fn always(&mut self, truth: bool) -> String {
        let pk = self.name(PK);
        let operator = if truth { "OR" } else { "AND" };
        format!("(attribute_exists({pk}) {operator} attribute_not_exists({pk}))")
    }

    /// The update expression of `update`, or `None` when it changes no attribute (the item is
    /// then only created if missing, as DynamoDB's UpdateItem does without an expression).
    pub(crate) fn update(&mut self, update: &Update) -> Option<String> {
        let mut clauses = Vec::new();
        if !update.set.is_empty() {
            let assignments: Vec<String> = update
                .set
                .iter()
                .map(|(name, value)| {
                    let name = self.attribute(name);
                    let value = self.value(to_attribute(value));
                    format!("{name} = {value}")
                })
                .collect();
            clauses.push(format!("SET {}", assignments.join(", ")));
        }
        if !update.add.is_empty() {
            let additions: Vec<String> = update
                .add
                .iter()
                .map(|(name, delta)| {
                    let name = self.attribute(name);
                    let delta = self.value(to_attribute(&Value::N(*delta)));
                    format!("{name} {delta}")
                })
                .collect();
            clauses.push(format!("ADD {}", additions.join(", ")));
        }
        if !update.remove.is_empty() {
            let removals: Vec<String> = update
                .remove
                .iter()
                .map(|name| self.attribute(name))
                .collect();
            clauses.push(format!("REMOVE {}", removals.join(", ")));
        }
        (!clauses.is_empty()).then(|| clauses.join(" "))
    }

    /// The key condition of a query of partition `pk` within `range`.
    pub(crate) fn key_condition(&mut self, pk: &str, range: &SortRange) -> String {
        let pk_name = self.name(PK);
        let pk_value = self.value(AttributeValue::S(pk.to_owned()));
        let partition = format!("{pk_name} = {pk_value}");
        let text = |this: &mut Self, value: &str| this.value(AttributeValue::S(value.to_owned()));
        let sort = match range {
            SortRange::All => return partition,
            SortRange::Prefix(prefix) => {
                let sk = self.name(SK);
                let prefix = text(self, prefix);
                format!("begins_with({sk}, {prefix})")
            }
            SortRange::Between(from, to) => {
                let sk = self.name(SK);
                let from = text(self, from);
                let to = text(self, to);
                format!("{sk} BETWEEN {from} AND {to}")
            }
            SortRange::From(from) => {
                let sk = self.name(SK);
                let from = text(self, from);
                format!("{sk} >= {from}")
            }
            SortRange::To(to) => {
                let sk = self.name(SK);
                let to = text(self, to);
                format!("{sk} <= {to}")
            }
        };
        format!("{partition} AND {sort}")
    }

    /// The placeholder maps, each `None` when empty (DynamoDB rejects empty maps).
    pub(crate) fn into_maps(self) -> (Option<HashMap<String, String>>, Option<Attributes>) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (names, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    #[test]
    fn conditions_use_placeholders_only() {
        let mut expressions = Expressions::default();
        let condition = Condition::Or(vec![
            Condition::ItemNotExists,
            Condition::And(vec![
                Condition::Lt("ttl".into(), Value::N(5.0)),
                Condition::Not(Box::new(Condition::Eq(
                    "a.b c".into(),
                    Value::S("x".into()),
                ))),
                Condition::Exists("ttl".into()),
            ]),
        ]);
        let text = expressions.condition(&condition);
        assert_eq!(
            text,
            "(attribute_not_exists(#n0) OR (#n1 < :v0 AND (NOT #n2 = :v1) AND attribute_exists(#n1)))"
        );
        let (names, values) = expressions.into_maps();
        let names = names.unwrap();
        assert_eq!(names["#n0"], "pk");
        assert_eq!(names["#n1"], "ttl");
        assert_eq!(names["#n2"], "a.b c");
        assert_eq!(values.unwrap()[":v0"], AttributeValue::N("5".into()));
    }

    #[test]
    fn empty_and_or_are_true_and_false() {
        let mut expressions = Expressions::default();
        assert_eq!(
            expressions.condition(&Condition::And(vec![])),
            "(attribute_exists(#n0) OR attribute_not_exists(#n0))"
        );
        assert_eq!(
            expressions.condition(&Condition::Or(vec![])),
            "(attribute_exists(#n0) AND attribute_not_exists(#n0))"
        );
    }

    #[test]
    fn updates_have_set_add_remove_clauses() {
        let update = Update::new(Key::new("p", "s"))
            .set("name", Value::S("x".into()))
            .add("count", 2.0)
            .remove("old");
        let mut expressions = Expressions::default();
        assert_eq!(
            expressions.update(&update).unwrap(),
            "SET #n0 = :v0 ADD #n1 :v1 REMOVE #n2"
        );
        assert_eq!(
            Expressions::default().update(&Update::new(Key::new("p", "s"))),
            None
        );
    }

    #[test]
    fn key_conditions_cover_every_range() {
        let cases = [
            (SortRange::All, "#n0 = :v0"),
            (
                SortRange::Prefix("a".into()),
                "#n0 = :v0 AND begins_with(#n1, :v1)",
            ),
            (
                SortRange::Between("a".into(), "b".into()),
                "#n0 = :v0 AND #n1 BETWEEN :v1 AND :v2",
            ),
            (SortRange::From("a".into()), "#n0 = :v0 AND #n1 >= :v1"),
            (SortRange::To("b".into()), "#n0 = :v0 AND #n1 <= :v1"),
        ];
        for (range, expected) in cases {
            assert_eq!(Expressions::default().key_condition("p", &range), expected);
        }
    }
}
