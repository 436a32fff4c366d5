//! InfluxDB line protocol, as Telegraf and the influxdb clients send it:
//!
//! ```text
//! measurement[,tag=value…] field=value[,field=value…] [timestamp]
//! ```
//!
//! Hand-rolled (one pass over the bytes, borrowing unless a name has escapes) because the
//! errors must point at a line and column, which the crates we looked at do not report.
//!
//! Escapes: in measurements `\,` and `\ `; in tag keys, tag values and field keys `\,` `\=` `\ `;
//! in string field values `\"` and `\\`. A backslash before anything else is kept literally, as
//! InfluxDB does. Lines starting with `#` and blank lines are skipped; a trailing `\r` is dropped.
//!
//! Field values: floats (`1`, `-1.5e3`), integers (`1i`), unsigned integers (`1u`), booleans
//! (`t`, `true`, `True`, `TRUE`, `f`, …) and strings (`"…"`). Each line becomes one metric
//! event per numeric field (booleans count as 1 and 0); string fields are not metric values and
//! are skipped (see docs/ingest-protocols.md).

use super::metric::point_event;
use super::{Context, Rejection};
use shoal_schemas::Event;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Parses a whole body into metric events, each with the index of its line (line number − 1),
/// so one bad line is rejected alone. Returns `None` past `max_events`.
pub fn parse_body(
    body: &[u8],
    precision: Precision,
    context: &Context<'_>,
    max_events: usize,
) -> Option<Vec<(usize, Result<Event, Rejection>)>> {
    let mut parsed = Vec::new();
    for (number, text) in lines(body) {
        let index = number - 1;
        let line = text.and_then(|text| {
            if text.len() > context.max_event_bytes {
                return Err(Rejection::new(
                    "event_too_large",
                    "line",
                    format!(
                        "line is {} bytes, the limit is {}",
                        text.len(),
                        context.max_event_bytes
                    ),
                )
                .at(number, 1));
            }
            parse_line(text, number)
        });
        match line {
            Ok(line) => line_events(&line, number, precision, context, &mut |event| {
                parsed.push((index, event));
            }),
            Err(rejection) => parsed.push((index, Err(rejection))),
        }
        if parsed.len() > max_events {
            return None;
        }
    }
    Some(parsed)
}

/// One metric event per numeric field of a line, named `measurement.field`, with the line's
/// tags as the series tags.
fn line_events(
    line: &Line<'_>,
    number: usize,
    precision: Precision,
    context: &Context<'_>,
    emit: &mut dyn FnMut(Result<Event, Rejection>),
) {
    let mut tags = BTreeMap::new();
    for (key, value) in &line.tags {
        if tags.insert(key.to_string(), value.to_string()).is_some() {
            emit(Err(Rejection::new(
                "duplicate_field",
                format!("tags.{key}"),
                format!("tag {key} appears twice"),
            )
            .at(number, 1)));
            return;
        }
    }
    let timestamp = match line.timestamp {
        None => context.received_at,
        Some(raw) => match precision.to_millis(raw) {
            Some(millis) => millis,
            None => {
                emit(Err(Rejection::new(
                    "invalid_value",
                    "timestamp",
                    "timestamp is out of range for its precision",
                )
                .at(number, 1)));
                return;
            }
        },
    };
    for (field, value) in &line.fields {
        let Some(number_value) = value.as_metric() else {
            continue;
        };
        let name = format!("{}.{field}", line.measurement);
        emit(
            point_event(&name, tags.clone(), number_value, timestamp, None, context)
                .map_err(|rejection| rejection.at(number, 1)),
        );
    }
}

/// A field's value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(Cow<'a, str>),
}

impl FieldValue<'_> {
    /// The value as a metric number, when it has one.
    pub fn as_metric(&self) -> Option<f64> {
        match self {
            FieldValue::Float(value) => Some(*value),
            FieldValue::Integer(value) => Some(*value as f64),
            FieldValue::Unsigned(value) => Some(*value as f64),
            FieldValue::Boolean(value) => Some(if *value { 1.0 } else { 0.0 }),
            FieldValue::String(_) => None,
        }
    }
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line<'a> {
    pub measurement: Cow<'a, str>,
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    /// As written, in the request's precision.
    pub timestamp: Option<i64>,
}

/// The precision of timestamps, from the `precision` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Precision {
    /// Accepts both InfluxDB v1's spellings (`n`, `u`, `ms`, `s`, `m`, `h`) and v2's (`ns`,
    /// `us`, `ms`, `s`).
    pub fn parse(text: &str) -> Option<Precision> {
        Some(match text {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// A timestamp in this precision as epoch milliseconds (sub-millisecond parts floored).
    pub fn to_millis(self, value: i64) -> Option<i64> {
        match self {
            Precision::Nanoseconds => Some(value.div_euclid(1_000_000)),
            Precision::Microseconds => Some(value.div_euclid(1_000)),
            Precision::Milliseconds => Some(value),
            Precision::Seconds => value.checked_mul(1_000),
            Precision::Minutes => value.checked_mul(60_000),
            Precision::Hours => value.checked_mul(3_600_000),
        }
    }
}

/// Splits a body into its lines, skipping blank and comment lines, as
/// `(1-based line number, line text)`; a line that is not UTF-8 is an error at its line.
pub fn lines(body: &[u8]) -> impl Iterator<Item = (usize, Result<&str, Rejection>)> {
    body.split(|byte| *byte == b'\n')
        .enumerate()
        .filter_map(|(index, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let start = raw.iter().position(|byte| !byte.is_ascii_whitespace())?;
            if raw[start] == b'#' {
                return None;
            }
            let number = index + 1;
            Some((
                number,
                std::str::from_utf8(raw).map_err(|error| {
                    Rejection::new("invalid_value", "line", "line is not valid UTF-8")
                        .at(number, error.valid_up_to() + 1)
                }),
            ))
        })
}

/// Parses one line; errors carry the 1-based `line_number` and the column of the problem.
pub fn parse_line(text: &str, line_number: usize) -> Result<Line<'_>, Rejection> {
    Parser {
        text,
        bytes: text.as_bytes(),
        position: 0,
        line: line_number,
    }
    .line()
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
    line: usize,
}

/// What ends a token, by where it stands.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl<'a> Parser<'a> {
    fn fail(&self, column: usize, code: &'static str, field: &str, message: &str) -> Rejection {
        Rejection::new(code, field, message.to_owned()).at(self.line, column + 1)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn line(mut self) -> Result<Line<'a>, Rejection> {
        // Leading whitespace is tolerated, as InfluxDB does.
        while self
            .peek()
            .is_some_and(|byte| byte == b' ' || byte == b'\t')
        {
            self.position += 1;
        }
        let measurement = self.token(Part::Measurement, "measurement")?;
        let mut tags = Vec::new();
        while self.peek() == Some(b',') {
            self.position += 1;
            let key = self.token(Part::TagKey, "tag")?;
            self.expect(b'=', "tag", "expected = after the tag key")?;
            let value = self.token(Part::TagValue, "tag")?;
            tags.push((key, value));
        }
        if self.peek() != Some(b' ') {
            return Err(self.fail(
                self.position,
                "syntax",
                "fields",
                "expected a space and then the fields",
            ));
        }
        self.position += 1;
        let mut fields = Vec::new();
        loop {
            let key = self.token(Part::FieldKey, "field")?;
            self.expect(b'=', "field", "expected = after the field key")?;
            let value = self.field_value()?;
            fields.push((key, value));
            match self.peek() {
                Some(b',') => self.position += 1,
                _ => break,
            }
        }
        let timestamp = match self.peek() {
            None => None,
            Some(b' ') => {
                self.position += 1;
                if self.position == self.bytes.len() {
                    None
                } else {
                    Some(self.timestamp()?)
                }
            }
            Some(_) => {
                return Err(self.fail(
                    self.position,
                    "syntax",
                    "field",
                    "expected , or a space after the field value",
                ));
            }
        };
        Ok(Line {
            measurement,
            tags,
            fields,
            timestamp,
        })
    }

    fn expect(&mut self, byte: u8, field: &str, message: &str) -> Result<(), Rejection> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(self.fail(self.position, "syntax", field, message))
        }
    }

    /// A name up to its unescaped terminator, unescaped (borrowed when it had no escapes).
    fn token(&mut self, part: Part, field: &str) -> Result<Cow<'a, str>, Rejection> {
        let start = self.position;
        let mut escaped = false;
        while let Some(byte) = self.peek() {
            let ends = match part {
                Part::Measurement => byte == b',' || byte == b' ',
                Part::TagKey | Part::FieldKey => byte == b',' || byte == b' ' || byte == b'=',
                Part::TagValue => byte == b',' || byte == b' ',
            };
            if ends {
                break;
            }
            if byte == b'\\' && self.position + 1 < self.bytes.len() {
                escaped = true;
                self.position += 2;
                continue;
            }
            if byte == b'=' && part == Part::TagValue {
                return Err(self.fail(
                    self.position,
                    "syntax",
                    field,
                    "unescaped = in a tag value",
                ));
            }
            self.position += 1;
        }
        if self.position == start {
            let what = match part {
                Part::Measurement => "measurement must not be empty",
                Part::TagKey => "tag key must not be empty",
                Part::TagValue => "tag value must not be empty",
                Part::FieldKey => "field key must not be empty",
            };
            return Err(self.fail(start, "empty", field, what));
        }
        // A split at a multi-byte character is impossible: every terminator is ASCII.
        let raw = &self.text[start..self.position];
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        let escapable: &[char] = match part {
            Part::Measurement => &[',', ' '],
            _ => &[',', '=', ' '],
        };
        Ok(Cow::Owned(unescape(raw, escapable)))
    }

    fn field_value(&mut self) -> Result<FieldValue<'a>, Rejection> {
        let start = self.position;
        if self.peek() == Some(b'"') {
            return self.string_value();
        }
        while self.peek().is_some_and(|byte| byte != b',' && byte != b' ') {
            self.position += 1;
        }
        let text = &self.text[start..self.position];
        let bad = |message: &str| self.fail(start, "invalid_value", "field", message);
        if text.is_empty() {
            return Err(bad("field value must not be empty"));
        }
        match text {
            "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Boolean(true)),
            "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Boolean(false)),
            _ => {}
        }
        if let Some(digits) = text.strip_suffix('i') {
            return digits
                .parse::<i64>()
                .map(FieldValue::Integer)
                .map_err(|_| bad("not a valid integer (…i)"));
        }
        if let Some(digits) = text.strip_suffix('u') {
            return digits
                .parse::<u64>()
                .map(FieldValue::Unsigned)
                .map_err(|_| bad("not a valid unsigned integer (…u)"));
        }
        // Rust's float parser also takes `inf` and `NaN`; line protocol has no such values.
        if !text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'-' | b'+' | b'e' | b'E'))
        {
            return Err(bad(
                "not a number, boolean or quoted string (strings need double quotes)",
            ));
        }
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(FieldValue::Float(value)),
            Ok(_) => Err(bad("float is out of range")),
            Err(_) => Err(bad("not a valid float")),
        }
    }

    fn string_value(&mut self) -> Result<FieldValue<'a>, Rejection> {
        let open = self.position;
        self.position += 1;
        let start = self.position;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => {
                    return Err(self.fail(
                        open,
                        "syntax",
                        "field",
                        "string value has no closing quote",
                    ));
                }
                Some(b'\\') if self.position + 1 < self.bytes.len() => {
                    escaped = true;
                    self.position += 2;
                }
                Some(b'"') => break,
                Some(_) => self.position += 1,
            }
        }
        let raw = &self.text[start..self.position];
        self.position += 1;
        Ok(FieldValue::String(if escaped {
            Cow::Owned(unescape(raw, &['"', '\\']))
        } else {
            Cow::Borrowed(raw)
        }))
    }

    fn timestamp(&mut self) -> Result<i64, Rejection> {
        let start = self.position;
        while self.peek().is_some_and(|byte| byte != b' ') {
            self.position += 1;
        }
        let text = &self.text[start..self.position];
        let value = text.parse::<i64>().map_err(|_| {
            self.fail(
                start,
                "invalid_value",
                "timestamp",
                "timestamp must be an integer",
            )
        })?;
        if self.position != self.bytes.len() {
            return Err(self.fail(
                self.position,
                "syntax",
                "timestamp",
                "unexpected text after the timestamp",
            ));
        }
        Ok(value)
    }
}

/// Removes the backslash before each escapable character; other backslashes stay.
fn unescape(raw: &str, escapable: &[char]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(character) = chars.next() {
        if character == '\\'
            && let Some(next) = chars.peek().copied()
            && escapable.contains(&next)
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(character);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Line<'_>, Rejection> {
        parse_line(text, 7)
    }

    fn where_(text: &str) -> (&'static str, String, usize) {
        let rejection = parse(text).unwrap_err();
        assert_eq!(rejection.line, Some(7));
        (rejection.code, rejection.field, rejection.column.unwrap())
    }

    #[test]
    fn full_line() {
        let line = parse(r#"cpu,host=web1,region=eu usage=0.5,count=3i,big=18446744073709551615u,up=t,note="ok" 1767225600000000000"#).unwrap();
        assert_eq!(line.measurement, "cpu");
        assert_eq!(
            line.tags,
            vec![
                (Cow::Borrowed("host"), Cow::Borrowed("web1")),
                (Cow::Borrowed("region"), Cow::Borrowed("eu"))
            ]
        );
        assert_eq!(line.fields.len(), 5);
        assert_eq!(line.fields[0].1, FieldValue::Float(0.5));
        assert_eq!(line.fields[1].1, FieldValue::Integer(3));
        assert_eq!(line.fields[2].1, FieldValue::Unsigned(u64::MAX));
        assert_eq!(line.fields[3].1, FieldValue::Boolean(true));
        assert_eq!(line.fields[4].1, FieldValue::String(Cow::Borrowed("ok")));
        assert_eq!(line.timestamp, Some(1_767_225_600_000_000_000));
    }

    #[test]
    fn escapes_and_quotes() {
        let line =
            parse(r#"disk\ io\,x,path=/var\ lib,k\=ey=a\,b f\ 1=-1.5e3,s="say \"hi\" \\ \n""#)
                .unwrap();
        assert_eq!(line.measurement, "disk io,x");
        assert_eq!(line.tags[0].1, "/var lib");
        assert_eq!(
            line.tags[1],
            (Cow::Owned("k=ey".into()), Cow::Owned("a,b".into()))
        );
        assert_eq!(
            line.fields[0],
            (Cow::Owned("f 1".into()), FieldValue::Float(-1500.0))
        );
        // `\n` is not an escape in line protocol: the backslash stays.
        assert_eq!(
            line.fields[1].1,
            FieldValue::String(Cow::Owned(r#"say "hi" \ \n"#.into()))
        );
        assert_eq!(line.timestamp, None);
        // A string may hold the separators unescaped.
        let line = parse(r#"m s="a, b=c" 5"#).unwrap();
        assert_eq!(
            line.fields[0].1,
            FieldValue::String(Cow::Borrowed("a, b=c"))
        );
        assert_eq!(line.timestamp, Some(5));
    }

    #[test]
    fn booleans_and_numbers() {
        for (text, want) in [
            ("T", FieldValue::Boolean(true)),
            ("TRUE", FieldValue::Boolean(true)),
            ("False", FieldValue::Boolean(false)),
            ("f", FieldValue::Boolean(false)),
            ("-7i", FieldValue::Integer(-7)),
            ("1", FieldValue::Float(1.0)),
            ("1.", FieldValue::Float(1.0)),
            ("+2.5", FieldValue::Float(2.5)),
        ] {
            assert_eq!(
                parse(&format!("m v={text}")).unwrap().fields[0].1,
                want,
                "{text}"
            );
        }
        assert_eq!(FieldValue::Boolean(true).as_metric(), Some(1.0));
        assert_eq!(FieldValue::Unsigned(3).as_metric(), Some(3.0));
        assert_eq!(FieldValue::String("x".into()).as_metric(), None);
    }

    #[test]
    fn errors_point_at_line_and_column() {
        assert_eq!(where_("cpu"), ("syntax", "fields".into(), 4));
        assert_eq!(where_(",a=b v=1"), ("empty", "measurement".into(), 1));
        assert_eq!(where_("cpu,host v=1"), ("syntax", "tag".into(), 9));
        assert_eq!(where_("cpu,host= v=1"), ("empty", "tag".into(), 10));
        assert_eq!(where_("cpu,a=b=c v=1"), ("syntax", "tag".into(), 8));
        assert_eq!(where_("cpu v="), ("invalid_value", "field".into(), 7));
        assert_eq!(where_("cpu v=abc"), ("invalid_value", "field".into(), 7));
        assert_eq!(where_("cpu v=inf"), ("invalid_value", "field".into(), 7));
        assert_eq!(where_("cpu v=1.5i"), ("invalid_value", "field".into(), 7));
        assert_eq!(where_("cpu v=-1u"), ("invalid_value", "field".into(), 7));
        assert_eq!(where_("cpu v=1e999"), ("invalid_value", "field".into(), 7));
        assert_eq!(where_(r#"cpu v="open"#), ("syntax", "field".into(), 7));
        assert_eq!(
            where_("cpu v=1 12x"),
            ("invalid_value", "timestamp".into(), 9)
        );
        assert_eq!(where_("cpu v=1 12 13"), ("syntax", "timestamp".into(), 11));
        assert_eq!(where_("cpu v=1,"), ("empty", "field".into(), 9));
        assert_eq!(where_("cpu =1"), ("empty", "field".into(), 5));
        assert_eq!(where_("cpu v"), ("syntax", "field".into(), 6));
    }

    #[test]
    fn lines_skip_comments_blanks_and_cr() {
        let body = b"# header\n\ncpu v=1\r\n  \nmem v=2\n\xff v=1\n";
        let found: Vec<(usize, Result<&str, Rejection>)> = lines(body).collect();
        assert_eq!(found.len(), 3);
        assert_eq!(found[0], (3, Ok("cpu v=1")));
        assert_eq!(found[1], (5, Ok("mem v=2")));
        assert_eq!(found[2].0, 6);
        assert_eq!(found[2].1.as_ref().unwrap_err().column, Some(1));
    }

    #[test]
    fn precisions() {
        assert_eq!(Precision::parse("n"), Some(Precision::Nanoseconds));
        assert_eq!(Precision::parse("us"), Some(Precision::Microseconds));
        assert_eq!(Precision::parse("h"), Some(Precision::Hours));
        assert_eq!(Precision::parse("d"), None);
        assert_eq!(Precision::Nanoseconds.to_millis(1_500_999_999), Some(1_500));
        assert_eq!(Precision::Nanoseconds.to_millis(-1), Some(-1));
        assert_eq!(Precision::Microseconds.to_millis(2_000), Some(2));
        assert_eq!(Precision::Seconds.to_millis(2), Some(2_000));
        assert_eq!(Precision::Hours.to_millis(i64::MAX), None);
    }
}
