//! Time in Shoal: `i64` milliseconds since the Unix epoch, UTC, everywhere.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, in milliseconds since the epoch.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 with milliseconds and a `Z`, the form every API answer uses.
pub fn format_millis(millis: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(millis) {
        Some(time) => time.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => millis.to_string(),
    }
}

/// Parses an RFC 3339 / ISO 8601 timestamp with offset into epoch milliseconds.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(parse_rfc3339_millis("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_millis("yesterday"), None);
    }

    #[test]
    fn formats_with_millis() {
        assert_eq!(format_millis(1_500), "1970-01-01T00:00:01.500Z");
    }
}
