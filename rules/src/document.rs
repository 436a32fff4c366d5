//! The rules document as users write it (JSON or YAML; the same shape either way).
//!
//! ```yaml
//! conditions:
//!   frequent_logins: { event_count: { event: login, days: 14, at_least: 5 } }
//!   active:          { active_days: { days: 28, at_least: 10 } }
//!   export_stale:    { recency: { event: export, more_than_days: 30 } }
//!   on_trial:        { trait: { name: plan, equals: trial } }
//!   seats_full:      { ratio: { numerator: seats_used, denominator: seats, at_least: 0.8 } }
//!   reports_down:    { trend: { event: report_viewed, days: 28, change_percent_at_most: -50 } }
//!   renewal_soon:    { date: { name: renewal_date, within_next_days: 60 } }
//! stages:            # ordered: the first stage whose conditions hold is the entity's stage
//!   - { name: trial, all: [on_trial] }
//!   - { name: renewal, all: [renewal_soon] }
//!   - { name: adopted, all: [active] }
//!   - { name: onboarding }            # no conditions: matches every entity
//! scorecards:        # per stage name, or `default`
//!   default:
//!     weights: { frequent_logins: 40, active: 40, seats_full: 20, export_stale: -30 }
//!     bands: { good_from: 70, bad_below: 40 }
//! search: { properties: all, traits: [plan, company] }
//! series: { retention_days: { raw: 7, minute: 90, hour: 730 } }
//! ```
//!
//! Every struct denies unknown fields: a misspelt key is an error naming it, not a rule that
//! silently never holds.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole rules document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub conditions: BTreeMap<String, Condition>,
    #[serde(default)]
    pub stages: Vec<Stage>,
    pub scorecards: BTreeMap<String, Scorecard>,
    #[serde(default)]
    pub search: SearchFields,
    #[serde(default)]
    pub series: SeriesRules,
}

/// One named condition. Windows are whole UTC days: "the last `days` days" are the day that
/// contains the evaluation time and the `days - 1` days before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// `event` happened at least / at most this many times in the window.
    EventCount {
        event: String,
        days: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_least: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_most: Option<u64>,
    },
    /// Days in the window with at least one event of any name.
    ActiveDays {
        days: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_least: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_most: Option<u32>,
    },
    /// The last `event`: within the last `within_days` days, or more than `more_than_days`
    /// days ago (an event that never happened is "more than any number of days ago").
    Recency {
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within_days: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        more_than_days: Option<u32>,
    },
    /// A trait compared with a value, a list, numeric bounds, or only required to exist.
    Trait {
        name: String,
        #[serde(
            default,
            deserialize_with = "present",
            skip_serializing_if = "Option::is_none"
        )]
        equals: Option<serde_json::Value>,
        #[serde(
            default,
            deserialize_with = "present",
            skip_serializing_if = "Option::is_none"
        )]
        not_equals: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        one_of: Option<Vec<serde_json::Value>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_least: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_most: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exists: Option<bool>,
    },
    /// One numeric trait divided by another.
    Ratio {
        numerator: String,
        denominator: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_least: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_most: Option<f64>,
    },
    /// The count of `event` in the last `days` days against the `days` before them, as a
    /// percentage change (-50 = halved). With no events in the previous window the change is
    /// undefined and the condition does not hold.
    Trend {
        event: String,
        days: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change_percent_at_most: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change_percent_at_least: Option<f64>,
    },
    /// A date trait (RFC 3339, `YYYY-MM-DD` as UTC midnight, or epoch milliseconds) against the
    /// evaluation time.
    Date {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within_next_days: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within_last_days: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        more_than_days_ago: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        more_than_days_ahead: Option<u32>,
    },
}

/// A lifecycle stage: it holds when every `all` condition, at least one `any` condition (if
/// any are listed) and no `none` condition holds. A stage with no conditions always holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub none: Vec<String>,
}

/// Weighted conditions and the bands of the 0–100 score they make.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scorecard {
    pub weights: BTreeMap<String, f64>,
    pub bands: Bands,
}

/// `score >= good_from` is Good, `score < bad_below` is Bad, anything between is Normal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bands {
    pub good_from: f64,
    pub bad_below: f64,
}

/// Which event properties and traits the search projection indexes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchFields {
    #[serde(default)]
    pub properties: FieldSelection,
    #[serde(default)]
    pub traits: FieldSelection,
}

/// `all` (the default) or a list of names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldSelection {
    #[default]
    #[serde(with = "all_keyword")]
    All,
    Only(Vec<String>),
}

/// The keyword `all`, and nothing else, as a unit variant.
mod all_keyword {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("all")
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
        let word = String::deserialize(deserializer)?;
        if word == "all" {
            Ok(())
        } else {
            Err(serde::de::Error::custom(
                "expected `all` or a list of names",
            ))
        }
    }
}

/// Retention of the metric series resolutions, in days (`None`: the default of that resolution;
/// see `shoal_projector::series::Retention`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesRules {
    #[serde(default)]
    pub retention_days: Retention,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<u32>,
}

/// `Some` for any value that is there, null included (`equals: null` means "absent"); a
/// missing field is `None` through `default`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}
