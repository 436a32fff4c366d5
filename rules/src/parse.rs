//! Reading a document (JSON or YAML) and validating it, with errors that name the field (a
//! dotted path such as `conditions.logins.event_count.days`) and, where it can be found, the
//! line and column.

use crate::document::{Condition, Document, Retention};
use crate::{Error, Rules};
use std::collections::BTreeSet;

/// The syntax of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// From a media type (`application/json`, `application/yaml`, `text/yaml`, …); JSON when
    /// absent, since it is the API's default.
    pub fn from_content_type(content_type: Option<&str>) -> Option<Format> {
        let Some(media) = content_type else {
            return Some(Format::Json);
        };
        let essence = media
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" | "text/json" | "" => Some(Format::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
                Some(Format::Yaml)
            }
            _ => None,
        }
    }

    /// From a file name's extension (`.json`, `.yaml`, `.yml`); YAML otherwise, since YAML is
    /// a superset of JSON's syntax.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Longest window any condition may use: ten years.
const MAX_DAYS: u32 = 3650;

/// Parses and validates a document.
pub fn parse(text: &str, format: Format) -> Result<Rules, Error> {
    let document: Document = match format {
        Format::Json => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let path = error.path().to_string();
                let inner = error.into_inner();
                let (line, column) = (inner.line(), inner.column());
                Error::invalid(path_or_root(&path), inner.to_string())
                    .at((line > 0).then_some(line), (column > 0).then_some(column))
            })?
        }
        Format::Yaml => {
            // YAML's own form for an enum is a tag (`!event_count`); people write the same
            // one-key map as in JSON, which `singleton_map_recursive` reads.
            let mut track = serde_path_to_error::Track::new();
            let deserializer = serde_path_to_error::Deserializer::new(
                serde_yaml_ng::Deserializer::from_str(text),
                &mut track,
            );
            let parsed: Result<Document, serde_yaml_ng::Error> =
                serde_yaml_ng::with::singleton_map_recursive::deserialize(deserializer);
            parsed.map_err(|inner| {
                let path = track.path().to_string();
                let location = inner.location();
                Error::invalid(path_or_root(&path), inner.to_string()).at(
                    location.as_ref().map(|l| l.line()),
                    location.as_ref().map(|l| l.column()),
                )
            })?
        }
    };
    validate(document).map_err(|error| error.locate(text))
}

fn path_or_root(path: &str) -> &str {
    if path.is_empty() || path == "." {
        "document"
    } else {
        path
    }
}

/// Checks what the types cannot: references, bounds, exactly-one-of choices.
pub fn validate(document: Document) -> Result<Rules, Error> {
    if document.conditions.is_empty() {
        return Err(Error::invalid(
            "conditions",
            "at least one condition is needed",
        ));
    }
    for (name, condition) in &document.conditions {
        check_name(&format!("conditions.{name}"), name)?;
        check_condition(&format!("conditions.{name}"), condition)?;
    }
    let mut stage_names = BTreeSet::new();
    for (index, stage) in document.stages.iter().enumerate() {
        let path = format!("stages.{index}");
        check_name(&format!("{path}.name"), &stage.name)?;
        if stage.name == "default" {
            return Err(Error::invalid(
                format!("{path}.name"),
                "`default` is reserved for the fallback scorecard",
            ));
        }
        if !stage_names.insert(stage.name.as_str()) {
            return Err(Error::invalid(
                format!("{path}.name"),
                format!("stage `{}` is defined twice", stage.name),
            ));
        }
        for (list, names) in [
            ("all", &stage.all),
            ("any", &stage.any),
            ("none", &stage.none),
        ] {
            for (at, condition) in names.iter().enumerate() {
                if !document.conditions.contains_key(condition) {
                    return Err(unknown_condition(&format!("{path}.{list}.{at}"), condition));
                }
            }
        }
    }
    if document.scorecards.is_empty() {
        return Err(Error::invalid(
            "scorecards",
            "at least a `default` scorecard is needed",
        ));
    }
    for (name, card) in &document.scorecards {
        let path = format!("scorecards.{name}");
        if name != "default" && !stage_names.contains(name.as_str()) {
            return Err(Error::invalid(
                path,
                format!("`{name}` is neither `default` nor a stage name"),
            ));
        }
        if card.weights.is_empty() {
            return Err(Error::invalid(
                format!("{path}.weights"),
                "a scorecard needs at least one weighted condition",
            ));
        }
        for (condition, weight) in &card.weights {
            let at = format!("{path}.weights.{condition}");
            if !document.conditions.contains_key(condition) {
                return Err(unknown_condition(&at, condition));
            }
            if !weight.is_finite() || *weight == 0.0 {
                return Err(Error::invalid(
                    at,
                    "a weight is a finite number other than 0",
                ));
            }
        }
        let bands = card.bands;
        let in_range = |value: f64| (0.0..=100.0).contains(&value);
        if !in_range(bands.good_from) {
            return Err(Error::invalid(
                format!("{path}.bands.good_from"),
                "must be between 0 and 100",
            ));
        }
        if !in_range(bands.bad_below) || bands.bad_below > bands.good_from {
            return Err(Error::invalid(
                format!("{path}.bands.bad_below"),
                "must be between 0 and good_from",
            ));
        }
    }
    let stages_without_card = document
        .stages
        .iter()
        .any(|stage| !document.scorecards.contains_key(&stage.name));
    if (document.stages.is_empty() || stages_without_card)
        && !document.scorecards.contains_key("default")
    {
        return Err(Error::invalid(
            "scorecards.default",
            "a `default` scorecard is needed for entities whose stage has no scorecard of its own",
        ));
    }
    check_retention(&document.series.retention_days)?;
    Ok(Rules::compile(document))
}

fn unknown_condition(path: &str, name: &str) -> Error {
    Error::invalid(path, format!("no condition is named `{name}`"))
}

fn check_name(path: &str, name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            path,
            "names are 1 to 64 letters, digits, `_` or `-`",
        ))
    }
}

fn check_days(path: String, days: u32) -> Result<(), Error> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(Error::invalid(
            path,
            format!("must be between 1 and {MAX_DAYS}"),
        ))
    }
}

/// Exactly one of the named options is set.
fn exactly_one(path: &str, options: &[(&str, bool)]) -> Result<(), Error> {
    let set: Vec<&str> = options.iter().filter(|o| o.1).map(|o| o.0).collect();
    if set.len() == 1 {
        return Ok(());
    }
    let names: Vec<&str> = options.iter().map(|o| o.0).collect();
    Err(Error::invalid(
        path,
        format!(
            "exactly one of {} is needed (found {})",
            names.join(", "),
            if set.is_empty() {
                "none".to_owned()
            } else {
                set.join(", ")
            }
        ),
    ))
}

/// At least one bound, and `low <= high` when both are set.
fn bounds(
    path: &str,
    low: Option<f64>,
    high: Option<f64>,
    names: (&str, &str),
) -> Result<(), Error> {
    for (name, value) in [(names.0, low), (names.1, high)] {
        if value.is_some_and(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("{path}.{name}"),
                "must be a finite number",
            ));
        }
    }
    match (low, high) {
        (None, None) => Err(Error::invalid(
            path,
            format!("{} or {} is needed", names.0, names.1),
        )),
        (Some(low), Some(high)) if low > high => Err(Error::invalid(
            format!("{path}.{}", names.1),
            format!("must not be below {}", names.0),
        )),
        _ => Ok(()),
    }
}

fn check_event(path: String, event: &str) -> Result<(), Error> {
    if event.is_empty() {
        Err(Error::invalid(path, "an event name is needed"))
    } else {
        Ok(())
    }
}

fn check_condition(path: &str, condition: &Condition) -> Result<(), Error> {
    match condition {
        Condition::EventCount {
            event,
            days,
            at_least,
            at_most,
        } => {
            let path = format!("{path}.event_count");
            check_event(format!("{path}.event"), event)?;
            check_days(format!("{path}.days"), *days)?;
            bounds(
                &path,
                at_least.map(|v| v as f64),
                at_most.map(|v| v as f64),
                ("at_least", "at_most"),
            )
        }
        Condition::ActiveDays {
            days,
            at_least,
            at_most,
        } => {
            let path = format!("{path}.active_days");
            check_days(format!("{path}.days"), *days)?;
            bounds(
                &path,
                at_least.map(f64::from),
                at_most.map(f64::from),
                ("at_least", "at_most"),
            )?;
            for (name, value) in [("at_least", at_least), ("at_most", at_most)] {
                if value.is_some_and(|v| v > *days) {
                    return Err(Error::invalid(
                        format!("{path}.{name}"),
                        "cannot exceed the days of the window",
                    ));
                }
            }
            Ok(())
        }
        Condition::Recency {
            event,
            within_days,
            more_than_days,
        } => {
            let path = format!("{path}.recency");
            check_event(format!("{path}.event"), event)?;
            exactly_one(
                &path,
                &[
                    ("within_days", within_days.is_some()),
                    ("more_than_days", more_than_days.is_some()),
                ],
            )?;
            if let Some(days) = within_days.or(*more_than_days) {
                let field = if within_days.is_some() {
                    "within_days"
                } else {
                    "more_than_days"
                };
                check_days(format!("{path}.{field}"), days)?;
            }
            Ok(())
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
            let path = format!("{path}.trait");
            if name.is_empty() {
                return Err(Error::invalid(
                    format!("{path}.name"),
                    "a trait name is needed",
                ));
            }
            let numeric = at_least.is_some() || at_most.is_some();
            exactly_one(
                &path,
                &[
                    ("equals", equals.is_some()),
                    ("not_equals", not_equals.is_some()),
                    ("one_of", one_of.is_some()),
                    ("at_least/at_most", numeric),
                    ("exists", exists.is_some()),
                ],
            )?;
            if numeric {
                bounds(&path, *at_least, *at_most, ("at_least", "at_most"))?;
            }
            for (field, value) in [("equals", equals), ("not_equals", not_equals)] {
                if value
                    .as_ref()
                    .is_some_and(|v| v.is_array() || v.is_object())
                {
                    return Err(Error::invalid(
                        format!("{path}.{field}"),
                        "must be a string, number, boolean or null",
                    ));
                }
            }
            if let Some(list) = one_of {
                if list.is_empty() {
                    return Err(Error::invalid(
                        format!("{path}.one_of"),
                        "must not be empty",
                    ));
                }
                if let Some(at) = list.iter().position(|v| v.is_array() || v.is_object()) {
                    return Err(Error::invalid(
                        format!("{path}.one_of.{at}"),
                        "must be a string, number, boolean or null",
                    ));
                }
            }
            Ok(())
        }
        Condition::Ratio {
            numerator,
            denominator,
            at_least,
            at_most,
        } => {
            let path = format!("{path}.ratio");
            for (field, name) in [("numerator", numerator), ("denominator", denominator)] {
                if name.is_empty() {
                    return Err(Error::invalid(
                        format!("{path}.{field}"),
                        "a trait name is needed",
                    ));
                }
            }
            bounds(&path, *at_least, *at_most, ("at_least", "at_most"))
        }
        Condition::Trend {
            event,
            days,
            change_percent_at_most,
            change_percent_at_least,
        } => {
            let path = format!("{path}.trend");
            check_event(format!("{path}.event"), event)?;
            check_days(format!("{path}.days"), *days)?;
            if *days > MAX_DAYS / 2 {
                return Err(Error::invalid(
                    format!("{path}.days"),
                    format!(
                        "must be at most {} (two windows are compared)",
                        MAX_DAYS / 2
                    ),
                ));
            }
            bounds(
                &path,
                *change_percent_at_least,
                *change_percent_at_most,
                ("change_percent_at_least", "change_percent_at_most"),
            )
        }
        Condition::Date {
            name,
            within_next_days,
            within_last_days,
            more_than_days_ago,
            more_than_days_ahead,
        } => {
            let path = format!("{path}.date");
            if name.is_empty() {
                return Err(Error::invalid(
                    format!("{path}.name"),
                    "a trait name is needed",
                ));
            }
            let options = [
                ("within_next_days", *within_next_days),
                ("within_last_days", *within_last_days),
                ("more_than_days_ago", *more_than_days_ago),
                ("more_than_days_ahead", *more_than_days_ahead),
            ];
            exactly_one(
                &path,
                &options.map(|(field, value)| (field, value.is_some())),
            )?;
            for (field, value) in options {
                if let Some(days) = value {
                    check_days(format!("{path}.{field}"), days)?;
                }
            }
            Ok(())
        }
    }
}

fn check_retention(retention: &Retention) -> Result<(), Error> {
    let levels = [
        ("raw", retention.raw),
        ("minute", retention.minute),
        ("hour", retention.hour),
        ("day", retention.day),
    ];
    let mut finer: Option<(&str, u32)> = None;
    for (name, days) in levels {
        let Some(days) = days else { continue };
        let path = format!("series.retention_days.{name}");
        if days == 0 {
            return Err(Error::invalid(
                path,
                "must be at least 1 day (omit it for the default)",
            ));
        }
        if let Some((finer_name, finer_days)) = finer
            && days < finer_days
        {
            return Err(Error::invalid(
                path,
                format!("a coarser resolution cannot be kept shorter than `{finer_name}`"),
            ));
        }
        finer = Some((name, days));
    }
    Ok(())
}
