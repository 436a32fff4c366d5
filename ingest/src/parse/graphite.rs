//! Graphite's plaintext protocol, as carbon reads it on port 2003:
//!
//! ```text
//! path value timestamp\n
//! servers.web1.cpu.user 0.5 1767225600
//! cpu.user;host=web1;dc=eu 0.5 1767225600
//! ```
//!
//! - A dotted path is the series name as is (`servers.web1.cpu.user{}`); a tagged path
//!   (`name;tag=value;…`, Graphite 1.1) is the name with its tags (`cpu.user{dc=eu,host=web1}`).
//! - The value is a decimal float (`1`, `-2.5`, `1e3`); `nan` in any case is skipped as carbon
//!   skips it (not an error); `inf` is refused, since a series holds finite numbers.
//! - The timestamp is epoch seconds, with an optional fraction kept to the millisecond; `-1`
//!   (carbon) and `N` (as collectd and Logstash send) mean "when it was received".
//! - Fields are separated by runs of spaces or tabs; leading and trailing blanks and a trailing
//!   `\r` are ignored, as carbon's `line.strip().split()` does; blank lines are skipped.
//!
//! Stricter than carbon, which accepts anything Python's `float()` does and anything as a path:
//! every refusal names the line and the byte column of the problem. Hand-rolled like the line
//! protocol parser, for the same reason: the columns.

use super::metric::point_event;
use super::{Context, Rejection};
use shoal_schemas::Event;
use std::collections::BTreeMap;

/// One line's fate: a point, or nothing when the value is NaN.
pub type LineOutcome = Result<Option<Event>, Rejection>;

/// Parses every complete line of `body` (a final line without `\n` counts as complete), as
/// `(line number, outcome)` with numbers from `first_line`; blank lines are skipped. A line
/// longer than `context.max_event_bytes` is refused without being read.
pub fn parse_body(
    body: &[u8],
    first_line: usize,
    context: &Context<'_>,
) -> Vec<(usize, LineOutcome)> {
    let mut parsed = Vec::new();
    for (offset, raw) in body.split(|byte| *byte == b'\n').enumerate() {
        let number = first_line + offset;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        parsed.push((number, parse_line(raw, number, context)));
    }
    parsed
}

/// Parses one line (without its `\n`); errors carry `number` and the 1-based byte column.
pub fn parse_line(raw: &[u8], number: usize, context: &Context<'_>) -> LineOutcome {
    if raw.len() > context.max_event_bytes {
        return Err(Rejection::new(
            "event_too_large",
            "line",
            format!(
                "line is {} bytes, the limit is {}",
                raw.len(),
                context.max_event_bytes
            ),
        )
        .at(number, 1));
    }
    let text = std::str::from_utf8(raw).map_err(|error| {
        Rejection::new("invalid_value", "line", "line is not valid UTF-8")
            .at(number, error.valid_up_to() + 1)
    })?;
    let fail = |column: usize, code: &'static str, field: &str, message: &str| {
        Rejection::new(code, field, message.to_owned()).at(number, column + 1)
    };
    let mut fields = Fields::new(text);
    let Some((path_at, path)) = fields.next() else {
        return Err(fail(0, "empty", "line", "line is blank"));
    };
    let Some((value_at, value_text)) = fields.next() else {
        return Err(fail(
            text.len(),
            "syntax",
            "value",
            "expected a space and then the value",
        ));
    };
    let Some((time_at, time_text)) = fields.next() else {
        return Err(fail(
            text.len(),
            "syntax",
            "timestamp",
            "expected a space and then the timestamp (epoch seconds, or -1 or N for now)",
        ));
    };
    if let Some((extra_at, _)) = fields.next() {
        return Err(fail(
            extra_at,
            "syntax",
            "line",
            "unexpected text after the timestamp",
        ));
    }
    let value = parse_value(value_text)
        .map_err(|message| fail(value_at, "invalid_value", "value", message))?;
    let timestamp = match time_text {
        "-1" | "N" => context.received_at,
        seconds => parse_seconds(seconds).ok_or_else(|| {
            fail(
                time_at,
                "invalid_value",
                "timestamp",
                "timestamp must be epoch seconds (digits, an optional .fraction), or -1 or N",
            )
        })?,
    };
    let (metric, tags) = parse_path(path, path_at, number)?;
    // Checked after the rest of the line, so a malformed line is refused even with a NaN.
    let Some(value) = value else {
        return Ok(None);
    };
    point_event(metric, tags, value, timestamp, None, context)
        .map(Some)
        .map_err(|rejection| rejection.at(number, path_at + 1))
}

/// The fields of a line: runs of anything but blanks, with their byte offsets.
struct Fields<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Fields<'a> {
    fn new(text: &'a str) -> Self {
        Fields {
            text: text.strip_suffix('\r').unwrap_or(text),
            position: 0,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let bytes = self.text.as_bytes();
        let blank = |byte: u8| byte == b' ' || byte == b'\t';
        while self.position < bytes.len() && blank(bytes[self.position]) {
            self.position += 1;
        }
        if self.position == bytes.len() {
            return None;
        }
        let start = self.position;
        while self.position < bytes.len() && !blank(bytes[self.position]) {
            self.position += 1;
        }
        // Blanks are ASCII, so both ends are character boundaries.
        Some((start, &self.text[start..self.position]))
    }
}

/// A decimal float; `Ok(None)` for NaN, which carbon drops silently.
fn parse_value(text: &str) -> Result<Option<f64>, &'static str> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if unsigned.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    // Rust's float parser also takes `inf` and `infinity`, which are no values for a series.
    if unsigned.is_empty()
        || !unsigned
            .bytes()
            .all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return Err("value must be a decimal number (or nan, which is skipped)");
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Some(value)),
        Ok(_) => Err("value is out of range"),
        Err(_) => Err("value must be a decimal number (or nan, which is skipped)"),
    }
}

/// Epoch seconds, `digits[.digits]`, as epoch milliseconds (the fraction past the millisecond
/// is dropped).
fn parse_seconds(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let seconds = whole.parse::<i64>().ok()?;
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0_i64, |sum, digit| sum * 10 + i64::from(digit - b'0'));
    seconds.checked_mul(1000)?.checked_add(millis)
}

/// A path, plain or tagged, as the series name and its tags. Tag rules are Graphite's (names
/// without `; ! ^ =`, values non-empty, not starting with `~`); the characters a series key
/// cannot hold are [`point_event`]'s to refuse.
fn parse_path(
    path: &str,
    path_at: usize,
    number: usize,
) -> Result<(&str, BTreeMap<String, String>), Rejection> {
    let mut segments = path.split(';');
    let metric = segments.next().unwrap_or_default();
    let mut tags = BTreeMap::new();
    let mut offset = path_at + metric.len() + 1;
    for segment in segments {
        let fail = |column: usize, code: &'static str, message: String| {
            Rejection::new(code, "path", message).at(number, column + 1)
        };
        let Some((tag, value)) = segment.split_once('=') else {
            return Err(fail(
                offset,
                "syntax",
                format!("tag {segment:?} must be name=value"),
            ));
        };
        if tag.is_empty() || tag.contains(['!', '^']) {
            return Err(fail(
                offset,
                "invalid_value",
                format!("tag name {tag:?} must be non-empty and must not contain ! ^"),
            ));
        }
        if value.is_empty() || value.starts_with('~') {
            return Err(fail(
                offset + tag.len() + 1,
                "invalid_value",
                format!("the value of tag {tag} must be non-empty and must not start with ~"),
            ));
        }
        if tag == "name" {
            return Err(fail(
                offset,
                "invalid_value",
                "tag name \"name\" is reserved for the series name".to_owned(),
            ));
        }
        if tags.insert(tag.to_owned(), value.to_owned()).is_some() {
            return Err(fail(
                offset,
                "duplicate_field",
                format!("tag {tag} appears twice"),
            ));
        }
        offset += segment.len() + 1;
    }
    Ok((metric, tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn context() -> Context<'static> {
        Context {
            tenant: "acme",
            received_at: NOW,
            max_event_bytes: 200,
        }
    }

    fn point(text: &str) -> Event {
        parse_line(text.as_bytes(), 3, &context())
            .unwrap()
            .expect("a point")
    }

    fn where_(text: &str) -> (&'static str, String, usize) {
        let rejection = parse_line(text.as_bytes(), 3, &context()).unwrap_err();
        assert_eq!(rejection.line, Some(3), "{text}");
        (rejection.code, rejection.field, rejection.column.unwrap())
    }

    #[test]
    fn dotted_and_tagged_paths() {
        let plain = point("servers.web1.cpu.user 0.5 1767225590");
        assert_eq!(plain.entity, "servers.web1.cpu.user{}");
        assert_eq!(plain.name, "servers.web1.cpu.user");
        assert_eq!(plain.value, Some(0.5));
        assert_eq!(plain.timestamp, NOW - 10_000);
        assert_eq!(plain.tenant, "acme");
        let tagged = point("cpu.user;host=web1;dc=eu -2e1 1767225590.25\r");
        assert_eq!(tagged.entity, "cpu.user{dc=eu,host=web1}");
        assert_eq!(tagged.properties, r#"{"dc":"eu","host":"web1"}"#);
        assert_eq!(tagged.value, Some(-20.0));
        assert_eq!(tagged.timestamp, NOW - 9_750);
        let same = point("  cpu.user;dc=eu;host=web1 \t -20 1767225590.2509  ");
        assert_eq!(tagged.entity, same.entity);
        assert_eq!(
            tagged.id, same.id,
            "same series, time and value: same event"
        );
    }

    #[test]
    fn now_nan_and_fractions() {
        assert_eq!(point("m 1 -1").timestamp, NOW);
        assert_eq!(point("m 1 N").timestamp, NOW);
        assert_eq!(point("m 1 1767225590.5").timestamp, NOW - 9_500);
        assert_eq!(point("m 1 1767225590.").timestamp, NOW - 10_000);
        for nan in ["nan", "NaN", "-nan", "NAN"] {
            let outcome = parse_line(format!("m {nan} 1767225590").as_bytes(), 1, &context());
            assert_eq!(outcome, Ok(None), "{nan}");
        }
        assert_eq!(where_("m nan x"), ("invalid_value", "timestamp".into(), 7));
        assert_eq!(point("m +.5 N").value, Some(0.5));
        assert_eq!(point("m 3. N").value, Some(3.0));
    }

    #[test]
    fn errors_point_at_line_and_column() {
        assert_eq!(where_("m"), ("syntax", "value".into(), 2));
        assert_eq!(where_("m 1"), ("syntax", "timestamp".into(), 4));
        assert_eq!(where_("m 1 2 3"), ("syntax", "line".into(), 7));
        assert_eq!(where_("m x 2"), ("invalid_value", "value".into(), 3));
        assert_eq!(where_("m inf 2"), ("invalid_value", "value".into(), 3));
        assert_eq!(where_("m 1e999 2"), ("invalid_value", "value".into(), 3));
        assert_eq!(where_("m 1 -2"), ("invalid_value", "timestamp".into(), 5));
        assert_eq!(where_("m 1 1e9"), ("invalid_value", "timestamp".into(), 5));
        assert_eq!(where_("m 1  x"), ("invalid_value", "timestamp".into(), 6));
        assert_eq!(
            where_("m 1 99999999999999999999"),
            ("invalid_value", "timestamp".into(), 5)
        );
        assert_eq!(where_("a;b 1 N"), ("syntax", "path".into(), 3));
        assert_eq!(where_("a;x=1;=2 1 N"), ("invalid_value", "path".into(), 7));
        assert_eq!(where_("a;x= 1 N"), ("invalid_value", "path".into(), 5));
        assert_eq!(where_("a;x=~y 1 N"), ("invalid_value", "path".into(), 5));
        assert_eq!(
            where_("a;x=1;x=2 1 N"),
            ("duplicate_field", "path".into(), 7)
        );
        assert_eq!(where_("a;name=b 1 N"), ("invalid_value", "path".into(), 3));
        // What a series key cannot hold, refused by the shared point validation.
        assert_eq!(where_("  a{b} 1 N"), ("invalid_value", "name".into(), 3));
        assert_eq!(where_("a;x=1,2 1 N"), ("invalid_value", "tags.x".into(), 1));
        assert_eq!(where_(";x=1 1 N"), ("empty", "name".into(), 1));
        // Beyond a day ahead of the receive time.
        assert_eq!(
            where_("m 1 1767400000"),
            ("invalid_value", "timestamp".into(), 1)
        );
        let long = format!("{} 1 N", "m".repeat(300));
        assert_eq!(where_(&long), ("event_too_large", "line".into(), 1));
        let rejection = parse_line(b"m\xff 1 N", 3, &context()).unwrap_err();
        assert_eq!(rejection.column, Some(2));
    }

    #[test]
    fn bodies_number_their_lines_and_skip_blanks() {
        let body = b"a 1 N\n\n  \nbad\nb nan N\nc 2 N";
        let parsed = parse_body(body, 10, &context());
        let numbers: Vec<usize> = parsed.iter().map(|(number, _)| *number).collect();
        assert_eq!(numbers, vec![10, 13, 14, 15]);
        assert!(matches!(parsed[0].1, Ok(Some(_))));
        assert_eq!(parsed[1].1.as_ref().unwrap_err().line, Some(13));
        assert_eq!(parsed[2].1, Ok(None));
        assert!(matches!(parsed[3].1, Ok(Some(_))));
    }
}
