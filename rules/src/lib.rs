//! Shoal's rules: the versioned document a tenant writes to turn product usage into health
//! scores (Good / Normal / Bad) and lifecycle stages (DESIGN.md, "Rules and re-projection").
//!
//! - [`document`]: the document's shape, as users write it in JSON or YAML;
//! - [`parse`]: reading and validating it, with errors naming the field, line and column;
//! - [`facts`]: what the `scores` projection keeps per entity so that any rule can be
//!   evaluated at any time (day counts of the events the rules name, traits, last times);
//! - [`evaluate`]: conditions, stage, score and band of one entity at one time, with the
//!   numbers behind each condition (the "why" a dashboard shows).
//!
//! No I/O: the projector stores facts, this crate only computes.

pub mod document;
mod error;
pub mod evaluate;
pub mod facts;
pub mod parse;

pub use document::Document;
pub use error::Error;
pub use evaluate::{Band, ConditionOutcome, Evaluation, Judgement};
pub use facts::{Facts, TraitValue};
pub use parse::{Format, parse};

use document::{Condition, FieldSelection};
use std::collections::BTreeSet;

/// Milliseconds in a day; windows are whole UTC days.
pub const DAY_MS: i64 = 86_400_000;

/// A validated document, with what the projector needs to know about it precomputed.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    document: Document,
    /// Event names some condition counts or dates.
    events: BTreeSet<String>,
    /// Traits some condition reads.
    traits: BTreeSet<String>,
    /// Some condition counts active days (events of any name).
    activity: bool,
    /// Days of history the widest window needs, counted back from the newest event's day.
    horizon_days: u32,
    /// Stages and scorecards by condition index, for evaluation.
    plan: evaluate::Plan,
}

impl Rules {
    fn compile(document: Document) -> Rules {
        let mut events = BTreeSet::new();
        let mut traits = BTreeSet::new();
        let mut activity = false;
        let mut horizon_days = 1;
        for condition in document.conditions.values() {
            match condition {
                Condition::EventCount { event, days, .. } => {
                    events.insert(event.clone());
                    horizon_days = horizon_days.max(*days);
                }
                Condition::ActiveDays { days, .. } => {
                    activity = true;
                    horizon_days = horizon_days.max(*days);
                }
                Condition::Recency { event, .. } => {
                    events.insert(event.clone());
                }
                Condition::Trend { event, days, .. } => {
                    events.insert(event.clone());
                    horizon_days = horizon_days.max(days * 2);
                }
                Condition::Trait { name, .. } | Condition::Date { name, .. } => {
                    traits.insert(name.clone());
                }
                Condition::Ratio {
                    numerator,
                    denominator,
                    ..
                } => {
                    traits.insert(numerator.clone());
                    traits.insert(denominator.clone());
                }
            }
        }
        Rules {
            plan: evaluate::Plan::of(&document),
            document,
            events,
            traits,
            activity,
            horizon_days,
        }
    }

    pub fn document(&self) -> &Document {
        &self.document
    }

    /// Whether facts are kept for this event name.
    pub fn counts_event(&self, name: &str) -> bool {
        self.events.contains(name)
    }

    /// Whether facts are kept for this trait.
    pub fn reads_trait(&self, name: &str) -> bool {
        self.traits.contains(name)
    }

    pub fn horizon_days(&self) -> u32 {
        self.horizon_days
    }

    /// Whether the search projection indexes this event property.
    pub fn searchable_property(&self, name: &str) -> bool {
        selected(&self.document.search.properties, name)
    }

    /// Whether the search projection indexes this trait.
    pub fn searchable_trait(&self, name: &str) -> bool {
        selected(&self.document.search.traits, name)
    }
}

fn selected(selection: &FieldSelection, name: &str) -> bool {
    match selection {
        FieldSelection::All => true,
        FieldSelection::Only(names) => names.iter().any(|n| n == name),
    }
}
