//! Typed readers for one field of an item, each failing with a rejection that names the field.

use super::Rejection;
use serde_json::value::RawValue;
use shoal_schemas::time::parse_rfc3339_millis;
use std::borrow::Cow;

/// Integer timestamps below this are rejected: as milliseconds they would fall in early 1973,
/// and a value this small is almost always seconds sent by mistake.
const MIN_MILLIS: i64 = 100_000_000_000;

pub fn string<'a>(raw: &'a RawValue, field: &str) -> Result<Cow<'a, str>, Rejection> {
    if let Ok(text) = serde_json::from_str::<&'a str>(raw.get()) {
        return Ok(Cow::Borrowed(text));
    }
    // Strings with escapes cannot be borrowed from the body.
    serde_json::from_str::<String>(raw.get())
        .map(Cow::Owned)
        .map_err(|_| Rejection::new("invalid_type", field, format!("{field} must be a string")))
}

/// A non-empty string of at most `max` bytes without control characters.
pub fn name<'a>(raw: &'a RawValue, field: &str, max: usize) -> Result<Cow<'a, str>, Rejection> {
    let text = string(raw, field)?;
    if text.trim().is_empty() {
        return Err(Rejection::new(
            "empty",
            field,
            format!("{field} must not be empty"),
        ));
    }
    if text.len() > max {
        return Err(Rejection::new(
            "too_long",
            field,
            format!("{field} is {} bytes, the limit is {max}", text.len()),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(Rejection::new(
            "invalid_value",
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(text)
}

pub fn finite_number(raw: &RawValue, field: &str) -> Result<f64, Rejection> {
    match serde_json::from_str::<f64>(raw.get()) {
        Ok(number) if number.is_finite() => Ok(number),
        Ok(_) => Err(Rejection::new(
            "invalid_value",
            field,
            format!("{field} must be a finite number"),
        )),
        // serde_json refuses numbers beyond f64's range rather than making them infinite.
        Err(_)
            if raw
                .get()
                .starts_with(|first: char| first == '-' || first.is_ascii_digit()) =>
        {
            Err(Rejection::new(
                "invalid_value",
                field,
                format!("{field} must be a finite number"),
            ))
        }
        Err(_) => Err(Rejection::new(
            "invalid_type",
            field,
            format!("{field} must be a number"),
        )),
    }
}

/// A time: an RFC 3339 string, or an integer of epoch milliseconds.
pub fn time(raw: &RawValue, field: &str) -> Result<i64, Rejection> {
    let text = raw.get();
    if text.starts_with('"') {
        let value = string(raw, field)?;
        return parse_rfc3339_millis(&value).ok_or_else(|| {
            Rejection::new(
                "invalid_value",
                field,
                format!("{field} must be an RFC 3339 time such as 2026-01-31T12:00:00Z"),
            )
        });
    }
    match serde_json::from_str::<i64>(text) {
        Ok(millis) if millis >= MIN_MILLIS => Ok(millis),
        Ok(_) => Err(Rejection::new(
            "invalid_value",
            field,
            format!(
                "{field} must be epoch milliseconds (this value is too small: seconds were probably sent)"
            ),
        )),
        Err(_) => Err(Rejection::new(
            "invalid_type",
            field,
            format!("{field} must be an RFC 3339 string or integer epoch milliseconds"),
        )),
    }
}

/// A JSON object, returned as its text.
pub fn object<'a>(raw: &'a RawValue, field: &str) -> Result<&'a str, Rejection> {
    let text = raw.get();
    if text.starts_with('{') {
        Ok(text)
    } else {
        Err(Rejection::new(
            "invalid_type",
            field,
            format!("{field} must be a JSON object"),
        ))
    }
}

/// Turns serde's complaint about an item's shape into a rejection naming the field.
pub fn shape_error(error: &serde_json::Error) -> Rejection {
    let message = error.to_string();
    let quoted = message
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_default();
    if message.starts_with("unknown field") {
        Rejection::new(
            "unknown_field",
            quoted.clone(),
            format!("unknown field {quoted}"),
        )
    } else if message.starts_with("duplicate field") {
        Rejection::new(
            "duplicate_field",
            quoted.clone(),
            format!("field {quoted} appears twice"),
        )
    } else {
        Rejection::new("invalid_type", "event", "each event must be a JSON object")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        assert!(matches!(
            string(&raw(r#""plain""#), "f"),
            Ok(Cow::Borrowed("plain"))
        ));
        assert_eq!(string(&raw(r#""a\"b""#), "f").unwrap(), "a\"b");
        assert_eq!(string(&raw("5"), "name").unwrap_err().field, "name");
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(
            name(&raw(r#""  ""#), "entity", 10).unwrap_err().code,
            "empty"
        );
        assert_eq!(
            name(&raw(r#""abcdefghijk""#), "entity", 10)
                .unwrap_err()
                .code,
            "too_long"
        );
        assert_eq!(
            name(&raw(r#""a\u0000b""#), "entity", 10).unwrap_err().code,
            "invalid_value"
        );
    }

    #[test]
    fn times_in_both_forms() {
        assert_eq!(
            time(&raw(r#""2026-01-01T00:00:00Z""#), "t").unwrap(),
            1_767_225_600_000
        );
        assert_eq!(time(&raw("1767225600000"), "t").unwrap(), 1_767_225_600_000);
        assert_eq!(
            time(&raw("1767225600"), "t").unwrap_err().code,
            "invalid_value"
        );
        assert_eq!(
            time(&raw(r#""yesterday""#), "t").unwrap_err().code,
            "invalid_value"
        );
        assert_eq!(time(&raw("true"), "t").unwrap_err().code, "invalid_type");
    }

    #[test]
    fn numbers_must_be_finite() {
        assert_eq!(finite_number(&raw("1.5"), "value").unwrap(), 1.5);
        assert_eq!(
            finite_number(&raw(r#""1""#), "value").unwrap_err().code,
            "invalid_type"
        );
        assert_eq!(
            finite_number(&raw("1e400"), "value").unwrap_err().code,
            "invalid_value"
        );
    }
}
