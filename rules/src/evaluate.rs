//! Evaluating one entity's facts at one time: every condition (held or not, with the number
//! measured), the stage, the scorecard, the 0–100 score and its band.
//!
//! The score: with `P` the sum of the positive weights and `N` the sum of the negative ones'
//! magnitudes, `score = 100 × (Σ weights of held conditions + N) / (P + N)`, rounded. All
//! positive conditions held and no negative one gives 100; the reverse gives 0.

use crate::document::{Bands, Condition, Document};
use crate::facts::{Facts, TraitValue, day_of};
use crate::{DAY_MS, Rules};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Good,
    Normal,
    Bad,
}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Good => "good",
            Band::Normal => "normal",
            Band::Bad => "bad",
        }
    }

    pub fn parse(text: &str) -> Option<Band> {
        match text.to_ascii_lowercase().as_str() {
            "good" => Some(Band::Good),
            "normal" => Some(Band::Normal),
            "bad" => Some(Band::Bad),
            _ => None,
        }
    }

    fn of(score: u8, bands: Bands) -> Band {
        let score = f64::from(score);
        if score >= bands.good_from {
            Band::Good
        } else if score < bands.bad_below {
            Band::Bad
        } else {
            Band::Normal
        }
    }
}

/// One condition at the evaluation time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionOutcome {
    pub name: String,
    pub held: bool,
    /// What was measured: a count, days, a ratio, a percentage change; `None` when there was
    /// nothing to measure (a missing trait, an event that never happened).
    pub value: Option<f64>,
    /// The measurement and the rule in words.
    pub detail: String,
    /// The weight this condition has in the entity's scorecard (absent: not scored there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// The result for one entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The time the windows and dates were measured from (ms).
    pub as_of: i64,
    pub score: u8,
    pub band: Band,
    pub stage: Option<String>,
    /// `default` or the stage's name.
    pub scorecard: String,
    /// Every condition, in name order (empty unless asked for with `explain`).
    pub conditions: Vec<ConditionOutcome>,
}

/// The stage and score of one entity at one time, without the explanation: what the
/// projector needs for every event it folds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement<'r> {
    pub score: u8,
    pub band: Band,
    pub stage: Option<&'r str>,
    /// `default` or the stage's name.
    pub scorecard: &'r str,
}

/// The document's stages and scorecards with their conditions by index, made once per rules
/// version. A replay evaluates once per event folded; by name, that was a string comparison
/// per condition looked up, and two strings copied per evaluation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    stages: Vec<StagePlan>,
    cards: Vec<CardPlan>,
    default_card: Option<usize>,
}

/// A condition by its index in the document's (name-ordered) conditions; `None` for a name
/// the document does not define, which never holds.
type Slot = Option<usize>;

#[derive(Clone, Debug, PartialEq)]
struct StagePlan {
    name: String,
    all: Vec<Slot>,
    any: Vec<Slot>,
    none: Vec<Slot>,
    /// The scorecard named like the stage, if any.
    card: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
struct CardPlan {
    name: String,
    /// In the scorecard's (name) order: sums add in the same order as over the document.
    weights: Vec<(Slot, f64)>,
    positive: f64,
    negative: f64,
    bands: Bands,
}

impl Plan {
    pub(crate) fn of(document: &Document) -> Plan {
        let slot = |name: &String| document.conditions.keys().position(|known| known == name);
        let slots = |names: &[String]| names.iter().map(slot).collect();
        let card = |name: &str| document.scorecards.keys().position(|known| known == name);
        Plan {
            stages: document
                .stages
                .iter()
                .map(|stage| StagePlan {
                    name: stage.name.clone(),
                    all: slots(&stage.all),
                    any: slots(&stage.any),
                    none: slots(&stage.none),
                    card: card(&stage.name),
                })
                .collect(),
            cards: document
                .scorecards
                .iter()
                .map(|(name, card)| CardPlan {
                    name: name.clone(),
                    weights: card
                        .weights
                        .iter()
                        .map(|(condition, weight)| (slot(condition), *weight))
                        .collect(),
                    positive: card.weights.values().filter(|w| **w > 0.0).sum(),
                    negative: card
                        .weights
                        .values()
                        .filter(|w| **w < 0.0)
                        .map(|w| -w)
                        .sum(),
                    bands: card.bands,
                })
                .collect(),
            default_card: card("default"),
        }
    }
}

impl Rules {
    /// The stage, score and band of `facts` as of `as_of`: [`Self::evaluate`] without the
    /// explanation, and without copying a name.
    pub fn judge(&self, facts: &Facts, as_of: i64) -> Judgement<'_> {
        let held: Vec<bool> = self
            .document()
            .conditions
            .values()
            .map(|condition| measure(condition, facts, as_of).0)
            .collect();
        self.judge_held(&held)
    }

    /// The judgement given which conditions hold (`held[i]`: the document's i-th condition).
    fn judge_held(&self, held: &[bool]) -> Judgement<'_> {
        let plan = &self.plan;
        let holds = |slot: &Slot| slot.is_some_and(|index| held[index]);
        let stage = plan.stages.iter().find(|stage| {
            stage.all.iter().all(holds)
                && (stage.any.is_empty() || stage.any.iter().any(holds))
                && !stage.none.iter().any(holds)
        });
        let card = stage
            .and_then(|stage| stage.card)
            .or(plan.default_card)
            .and_then(|index| plan.cards.get(index))
            .expect("validation guarantees a scorecard for every stage or a default");
        let raw: f64 = card
            .weights
            .iter()
            .filter(|(slot, _)| holds(slot))
            .map(|(_, weight)| weight)
            .sum();
        let score = (100.0 * (raw + card.negative) / (card.positive + card.negative))
            .round()
            .clamp(0.0, 100.0) as u8;
        Judgement {
            score,
            band: Band::of(score, card.bands),
            stage: stage.map(|stage| stage.name.as_str()),
            scorecard: &card.name,
        }
    }

    /// Evaluates `facts` as of `as_of`. `explain` adds every condition's outcome in words (the
    /// projector folds without it; the query side asks for it).
    pub fn evaluate(&self, facts: &Facts, as_of: i64, explain: bool) -> Evaluation {
        let document = self.document();
        let measured: Vec<(bool, Option<f64>)> = document
            .conditions
            .values()
            .map(|condition| measure(condition, facts, as_of))
            .collect();
        let held: Vec<bool> = measured.iter().map(|(held, _)| *held).collect();
        let judged = self.judge_held(&held);
        let conditions = if explain {
            let weights = document
                .scorecards
                .get(judged.scorecard)
                .map(|card| &card.weights);
            document
                .conditions
                .iter()
                .zip(&measured)
                .map(|((name, condition), (held, value))| ConditionOutcome {
                    name: name.clone(),
                    held: *held,
                    value: *value,
                    detail: describe(condition, *value),
                    weight: weights.and_then(|weights| weights.get(name).copied()),
                })
                .collect()
        } else {
            Vec::new()
        };
        Evaluation {
            as_of,
            score: judged.score,
            band: judged.band,
            stage: judged.stage.map(str::to_owned),
            scorecard: judged.scorecard.to_owned(),
            conditions,
        }
    }
}

fn within(value: f64, at_least: Option<f64>, at_most: Option<f64>) -> bool {
    at_least.is_none_or(|low| value >= low) && at_most.is_none_or(|high| value <= high)
}

/// Whether `condition` holds for `facts` at `as_of`, and the number measured.
fn measure(condition: &Condition, facts: &Facts, as_of: i64) -> (bool, Option<f64>) {
    let today = day_of(as_of);
    match condition {
        Condition::EventCount {
            event,
            days,
            at_least,
            at_most,
        } => {
            let count = facts.count_in(event, today, *days) as f64;
            let held = within(count, at_least.map(|v| v as f64), at_most.map(|v| v as f64));
            (held, Some(count))
        }
        Condition::ActiveDays {
            days,
            at_least,
            at_most,
        } => {
            let active = f64::from(facts.active_days_in(today, *days));
            let held = within(active, at_least.map(f64::from), at_most.map(f64::from));
            (held, Some(active))
        }
        Condition::Recency {
            event,
            within_days,
            more_than_days,
        } => {
            let since = facts.last.get(event).map(|last| as_of - last);
            let days = since.map(|ms| ms as f64 / DAY_MS as f64);
            let held = match (within_days, more_than_days, since) {
                (Some(limit), _, Some(ms)) => ms <= i64::from(*limit) * DAY_MS,
                (Some(_), _, None) => false,
                (None, Some(limit), Some(ms)) => ms > i64::from(*limit) * DAY_MS,
                (None, _, None) => true,
                (None, None, Some(_)) => false,
            };
            (held, days)
        }
        Condition::Trait {
            name,
            equals,
            not_equals,
            one_of,
            at_least,
            at_most,
            exists,
        } => {
            let value = facts.traits.get(name);
            let number = value.and_then(TraitValue::as_number);
            let held = if let Some(expected) = equals {
                matches_json(value, expected)
            } else if let Some(unexpected) = not_equals {
                !matches_json(value, unexpected)
            } else if let Some(list) = one_of {
                list.iter().any(|expected| matches_json(value, expected))
            } else if let Some(flag) = exists {
                value.is_some() == *flag
            } else {
                number.is_some_and(|n| within(n, *at_least, *at_most))
            };
            (held, number)
        }
        Condition::Ratio {
            numerator,
            denominator,
            at_least,
            at_most,
        } => {
            let number = |name: &String| facts.traits.get(name).and_then(TraitValue::as_number);
            let ratio = match (number(numerator), number(denominator)) {
                (Some(top), Some(bottom)) if bottom != 0.0 => Some(top / bottom),
                _ => None,
            };
            (ratio.is_some_and(|r| within(r, *at_least, *at_most)), ratio)
        }
        Condition::Trend {
            event,
            days,
            change_percent_at_most,
            change_percent_at_least,
        } => {
            let current = facts.count_in(event, today, *days) as f64;
            let previous_end = today.saturating_sub(i32::try_from(*days).unwrap_or(i32::MAX));
            let previous = facts.count_in(event, previous_end, *days) as f64;
            let change = (previous > 0.0).then(|| (current - previous) / previous * 100.0);
            let held = change
                .is_some_and(|c| within(c, *change_percent_at_least, *change_percent_at_most));
            (held, change)
        }
        Condition::Date {
            name,
            within_next_days,
            within_last_days,
            more_than_days_ago,
            more_than_days_ahead,
        } => {
            let Some(date) = facts.traits.get(name).and_then(date_millis) else {
                return (false, None);
            };
            // Positive: in the future; negative: in the past.
            let ahead = (date - as_of) as f64 / DAY_MS as f64;
            let held = if let Some(limit) = within_next_days {
                (0.0..=f64::from(*limit)).contains(&ahead)
            } else if let Some(limit) = within_last_days {
                (-f64::from(*limit)..=0.0).contains(&ahead)
            } else if let Some(limit) = more_than_days_ago {
                ahead < -f64::from(*limit)
            } else if let Some(limit) = more_than_days_ahead {
                ahead > f64::from(*limit)
            } else {
                false
            };
            (held, Some(ahead))
        }
    }
}

/// A trait against a rule's JSON value: null matches an absent trait; numbers compare as
/// numbers (also against numeric text); text and booleans compare exactly.
fn matches_json(value: Option<&TraitValue>, expected: &serde_json::Value) -> bool {
    match (value, expected) {
        (None, serde_json::Value::Null) => true,
        (None, _) | (Some(_), serde_json::Value::Null) => false,
        (Some(actual), serde_json::Value::Number(number)) => {
            actual.as_number().is_some() && actual.as_number() == number.as_f64()
        }
        (Some(TraitValue::Text(actual)), serde_json::Value::String(text)) => actual == text,
        (Some(TraitValue::Bool(actual)), serde_json::Value::Bool(flag)) => actual == flag,
        _ => false,
    }
}

/// A date trait in milliseconds: RFC 3339, `YYYY-MM-DD` (UTC midnight), or a number (epoch
/// milliseconds; below 10^11, epoch seconds, as SDKs send both).
fn date_millis(value: &TraitValue) -> Option<i64> {
    let from_number = |number: f64| {
        let millis = if number.abs() < 1e11 {
            number * 1000.0
        } else {
            number
        };
        Some(millis as i64)
    };
    match value {
        TraitValue::Number(number) => from_number(*number),
        TraitValue::Bool(_) => None,
        TraitValue::Text(text) => {
            let text = text.trim();
            if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
                return Some(time.timestamp_millis());
            }
            if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                return day
                    .and_hms_opt(0, 0, 0)
                    .map(|midnight| midnight.and_utc().timestamp_millis());
            }
            text.parse::<f64>().ok().and_then(from_number)
        }
    }
}

fn bound_words(at_least: Option<String>, at_most: Option<String>) -> String {
    match (at_least, at_most) {
        (Some(low), Some(high)) => format!("between {low} and {high}"),
        (Some(low), None) => format!("at least {low}"),
        (None, Some(high)) => format!("at most {high}"),
        (None, None) => String::new(),
    }
}

fn number_words(value: Option<f64>) -> String {
    match value {
        None => "none".to_owned(),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The condition and its measurement in words.
fn describe(condition: &Condition, value: Option<f64>) -> String {
    let measured = number_words(value);
    let text = |v: &Option<f64>| v.map(|v| number_words(Some(v)));
    match condition {
        Condition::EventCount {
            event,
            days,
            at_least,
            at_most,
        } => format!(
            "`{event}` {measured} times in the last {days} days (rule: {})",
            bound_words(
                at_least.map(|v| v.to_string()),
                at_most.map(|v| v.to_string())
            )
        ),
        Condition::ActiveDays {
            days,
            at_least,
            at_most,
        } => format!(
            "active on {measured} of the last {days} days (rule: {})",
            bound_words(
                at_least.map(|v| v.to_string()),
                at_most.map(|v| v.to_string())
            )
        ),
        Condition::Recency {
            event,
            within_days,
            more_than_days,
        } => {
            let last = match value {
                None => format!("`{event}` never happened"),
                Some(_) => format!("last `{event}` {measured} days ago"),
            };
            match (within_days, more_than_days) {
                (Some(days), _) => format!("{last} (rule: within the last {days} days)"),
                (_, Some(days)) => format!("{last} (rule: more than {days} days ago)"),
                _ => last,
            }
        }
        Condition::Trait {
            name,
            equals,
            not_equals,
            one_of,
            at_least,
            at_most,
            exists,
        } => {
            let rule = if let Some(expected) = equals {
                format!("equals {expected}")
            } else if let Some(unexpected) = not_equals {
                format!("not equal to {unexpected}")
            } else if let Some(list) = one_of {
                format!("one of {}", serde_json::Value::Array(list.clone()))
            } else if let Some(flag) = exists {
                if *flag { "exists" } else { "is absent" }.to_owned()
            } else {
                bound_words(text(at_least), text(at_most))
            };
            format!("trait `{name}` (rule: {rule})")
        }
        Condition::Ratio {
            numerator,
            denominator,
            at_least,
            at_most,
        } => format!(
            "`{numerator}` / `{denominator}` = {measured} (rule: {})",
            bound_words(text(at_least), text(at_most))
        ),
        Condition::Trend {
            event,
            days,
            change_percent_at_most,
            change_percent_at_least,
        } => {
            let change = match value {
                None => format!("no `{event}` in the previous window, so no change to measure"),
                Some(_) => format!(
                    "`{event}` changed {measured}% over the last {days} days against the {days} before"
                ),
            };
            format!(
                "{change} (rule: change {}%)",
                bound_words(text(change_percent_at_least), text(change_percent_at_most))
            )
        }
        Condition::Date {
            name,
            within_next_days,
            within_last_days,
            more_than_days_ago,
            more_than_days_ahead,
        } => {
            let when = match value {
                None => format!("trait `{name}` is not a date"),
                Some(days) if days >= 0.0 => format!("`{name}` is {measured} days ahead"),
                Some(days) => format!("`{name}` was {} days ago", number_words(Some(-days))),
            };
            let rule = if let Some(days) = within_next_days {
                format!("within the next {days} days")
            } else if let Some(days) = within_last_days {
                format!("within the last {days} days")
            } else if let Some(days) = more_than_days_ago {
                format!("more than {days} days ago")
            } else if let Some(days) = more_than_days_ahead {
                format!("more than {days} days ahead")
            } else {
                String::new()
            };
            format!("{when} (rule: {rule})")
        }
    }
}
