//! What the `scores` projection keeps per entity: enough to evaluate every condition of one
//! rules version at any time at or after the newest event, and nothing more.
//!
//! - day counts (UTC day number → count) of the event names the rules name, and of all events
//!   when a rule counts active days; days older than the widest window (counted back from the
//!   newest event's day) are dropped, so the facts stay small however long an entity lives;
//! - the time of the last occurrence of each named event (for recency);
//! - the traits the rules read.
//!
//! Dropping by the newest *event* day (never by the clock) keeps a replay deterministic: the same
//! events in the same log order give the same facts, whenever the replay runs.

use crate::{DAY_MS, Rules};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A trait's value, as far as rules care.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TraitValue {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl TraitValue {
    /// `None` for JSON null (a trait set to null is removed). Arrays and objects are kept as
    /// their JSON text: no rule compares them, but `exists` sees them.
    pub fn from_json(value: &serde_json::Value) -> Option<TraitValue> {
        match value {
            serde_json::Value::Null => None,
            serde_json::Value::Bool(flag) => Some(TraitValue::Bool(*flag)),
            serde_json::Value::Number(number) => number.as_f64().map(TraitValue::Number),
            serde_json::Value::String(text) => Some(TraitValue::Text(text.clone())),
            other => Some(TraitValue::Text(other.to_string())),
        }
    }

    /// The number this value stands for: a number, or text that parses as one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            TraitValue::Number(number) => Some(*number),
            TraitValue::Text(text) => text.trim().parse().ok().filter(|n: &f64| n.is_finite()),
            TraitValue::Bool(_) => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            TraitValue::Text(text) => serde_json::Value::String(text.clone()),
            TraitValue::Number(number) => serde_json::Number::from_f64(*number)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            TraitValue::Bool(flag) => serde_json::Value::Bool(*flag),
        }
    }
}

/// The facts of one entity under one rules version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub traits: BTreeMap<String, TraitValue>,
    /// Per named event: UTC day number → count.
    pub counts: BTreeMap<String, BTreeMap<i32, u32>>,
    /// Events of any name per UTC day (kept only when a rule counts active days).
    pub active: BTreeMap<i32, u32>,
    /// Per named event: the newest occurrence's time (ms).
    pub last: BTreeMap<String, i64>,
    /// The newest event day seen; days at or before `newest_day - horizon` are dropped.
    pub newest_day: Option<i32>,
}

/// The UTC day number of a time in milliseconds (day 0 is 1970-01-01).
pub fn day_of(millis: i64) -> i32 {
    // Days fit i32 for any time chrono can represent (±262,000 years).
    millis
        .div_euclid(DAY_MS)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

impl Facts {
    /// Records one event named `name` (the counted name: `login`, `$identify`, …) at `timestamp`.
    pub fn observe(&mut self, rules: &Rules, name: &str, timestamp: i64) {
        let day = day_of(timestamp);
        let newest = self.newest_day.map_or(day, |newest| newest.max(day));
        self.newest_day = Some(newest);
        let horizon = i32::try_from(rules.horizon_days()).unwrap_or(i32::MAX);
        // Days at or before `cutoff` are outside every window from now on.
        let cutoff = newest.saturating_sub(horizon);
        let counted = rules.counts_event(name);
        // Look-ups before inserts: a replay calls this once per event, and the names are
        // nearly always known already (an `entry` would copy the name every time).
        if counted {
            match self.last.get_mut(name) {
                Some(last) => *last = (*last).max(timestamp),
                None => {
                    self.last.insert(name.to_owned(), timestamp);
                }
            }
        }
        if day > cutoff {
            if counted {
                let per_day = match self.counts.get_mut(name) {
                    Some(per_day) => per_day,
                    None => self.counts.entry(name.to_owned()).or_default(),
                };
                *per_day.entry(day).or_insert(0) += 1;
            }
            if rules.activity {
                *self.active.entry(day).or_insert(0) += 1;
            }
        }
        self.prune(cutoff);
    }

    fn prune(&mut self, cutoff: i32) {
        let keep = |days: &mut BTreeMap<i32, u32>| {
            if days
                .first_key_value()
                .is_some_and(|(day, _)| *day <= cutoff)
            {
                *days = days.split_off(&(cutoff.saturating_add(1)));
            }
        };
        for days in self.counts.values_mut() {
            keep(days);
        }
        keep(&mut self.active);
    }

    /// Merges traits (an `identify` or `group` event's properties): later values overwrite,
    /// null removes; only the traits the rules read are kept.
    pub fn merge_traits(
        &mut self,
        rules: &Rules,
        traits: &serde_json::Map<String, serde_json::Value>,
    ) {
        for (name, value) in traits {
            if !rules.reads_trait(name) {
                continue;
            }
            match TraitValue::from_json(value) {
                Some(value) => {
                    self.traits.insert(name.clone(), value);
                }
                None => {
                    self.traits.remove(name);
                }
            }
        }
    }

    /// Events named `name` on the days `(end_day - days, end_day]`.
    pub fn count_in(&self, name: &str, end_day: i32, days: u32) -> u64 {
        self.counts
            .get(name)
            .map_or(0, |per_day| sum_window(per_day, end_day, days))
    }

    /// Days in `(end_day - days, end_day]` with at least one event.
    pub fn active_days_in(&self, end_day: i32, days: u32) -> u32 {
        let start = end_day.saturating_sub(i32::try_from(days).unwrap_or(i32::MAX));
        self.active
            .range(start.saturating_add(1)..=end_day)
            .filter(|(_, count)| **count > 0)
            .count() as u32
    }
}

fn sum_window(per_day: &BTreeMap<i32, u32>, end_day: i32, days: u32) -> u64 {
    let start = end_day.saturating_sub(i32::try_from(days).unwrap_or(i32::MAX));
    per_day
        .range(start.saturating_add(1)..=end_day)
        .map(|(_, count)| u64::from(*count))
        .sum()
}
