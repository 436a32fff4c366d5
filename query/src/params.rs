//! Query-string parameters: parsed once, each problem named by its parameter.

use crate::{Error, Result};
use std::collections::HashMap;

/// The parameters of one request; a parameter may repeat (`series=a&series=b`).
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(raw: Option<&str>) -> Result<Params> {
        let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or(""))
            .map_err(|error| Error::bad("query", "invalid_value", error.to_string()))?;
        Ok(Params { pairs })
    }

    /// Refuses parameters the route does not know, so a typo is an error, not a silent default.
    pub fn only(&self, known: &[&str], prefixes: &[&str]) -> Result<()> {
        for (name, _) in &self.pairs {
            let known_name = known.contains(&name.as_str())
                || prefixes.iter().any(|prefix| name.starts_with(prefix));
            if !known_name {
                return Err(Error::bad(
                    name.clone(),
                    "unknown_parameter",
                    format!("unknown parameter {name}; known: {}", known.join(", ")),
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Parameters `prefix<name>=value`, as `name → value`.
    pub fn with_prefix(&self, prefix: &str) -> HashMap<String, String> {
        self.pairs
            .iter()
            .filter_map(|(key, value)| {
                key.strip_prefix(prefix)
                    .map(|name| (name.to_owned(), value.clone()))
            })
            .collect()
    }

    /// A time: RFC 3339, or integer epoch milliseconds.
    pub fn time(&self, name: &str) -> Result<Option<i64>> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        if let Ok(millis) = text.parse::<i64>() {
            return Ok(Some(millis));
        }
        shoal_schemas::time::parse_rfc3339_millis(text)
            .map(Some)
            .ok_or_else(|| {
                Error::bad(
                    name,
                    "invalid_value",
                    format!("{name} must be an RFC 3339 time or epoch milliseconds"),
                )
            })
    }

    /// A duration: `90s`, `5m`, `1h`, `1d`, or integer milliseconds.
    pub fn duration_millis(&self, name: &str) -> Result<Option<i64>> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let millis = match text.parse::<i64>() {
            Ok(millis) => Some(millis),
            Err(_) => humantime::parse_duration(text)
                .ok()
                .and_then(|duration| i64::try_from(duration.as_millis()).ok()),
        };
        match millis {
            Some(millis) if millis > 0 => Ok(Some(millis)),
            _ => Err(Error::bad(
                name,
                "invalid_value",
                format!("{name} must be a positive duration such as 60s, 5m, 1h, 1d"),
            )),
        }
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.get(name)
            .map(|text| {
                text.parse::<T>().map_err(|_| {
                    Error::bad(name, "invalid_value", format!("{name} must be a number"))
                })
            })
            .transpose()
    }

    /// The cursor a previous page returned (see [`encode_cursor`]).
    pub fn cursor(&self) -> Result<Option<String>> {
        use base64::Engine;
        let Some(text) = self.get("cursor") else {
            return Ok(None);
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(Some)
            .ok_or_else(bad_cursor)
    }

    /// A page size within `1..=max`.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize> {
        match self.number::<usize>("limit")? {
            None => Ok(default),
            Some(limit) if (1..=max).contains(&limit) => Ok(limit),
            Some(_) => Err(Error::bad(
                "limit",
                "invalid_value",
                format!("limit must be between 1 and {max}"),
            )),
        }
    }
}

/// Cursors go out URL-safe, so a client can paste them into a query string as they are (the
/// read models' own cursors contain `#`, `+` and `/`).
pub fn encode_cursor(cursor: Option<String>) -> Option<String> {
    use base64::Engine;
    cursor.map(|text| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text))
}

pub fn bad_cursor() -> Error {
    Error::bad(
        "cursor",
        "invalid_value",
        "cursor is not one this API returned",
    )
}

/// `from <= to`, or an error naming `from`.
pub fn ordered(from: i64, to: i64) -> Result<()> {
    if from > to {
        return Err(Error::bad(
            "from",
            "inverted_range",
            "from must not be after to",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_and_param(error: Error) -> (&'static str, String) {
        match error {
            Error::BadParam { code, param, .. } => (code, param),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn times_durations_and_limits() {
        let params = Params::parse(Some(
            "from=2026-01-01T00:00:00Z&to=1767229200000&step=5m&limit=10&series=a&series=b",
        ))
        .unwrap();
        assert_eq!(params.time("from").unwrap(), Some(1_767_225_600_000));
        assert_eq!(params.time("to").unwrap(), Some(1_767_229_200_000));
        assert_eq!(params.duration_millis("step").unwrap(), Some(300_000));
        assert_eq!(params.limit(50, 100).unwrap(), 10);
        assert_eq!(params.all("series"), ["a", "b"]);
        assert_eq!(params.time("missing").unwrap(), None);
    }

    #[test]
    fn cursors_round_trip_url_safe() {
        let out = encode_cursor(Some("c1.a+b/c#d".into())).unwrap();
        assert!(
            out.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let params = Params::parse(Some(&format!("cursor={out}"))).unwrap();
        assert_eq!(params.cursor().unwrap().as_deref(), Some("c1.a+b/c#d"));
        let bad = Params::parse(Some("cursor=%%%")).unwrap_or_else(|_| Params {
            pairs: vec![("cursor".into(), "***".into())],
        });
        assert!(bad.cursor().is_err());
    }

    #[test]
    fn problems_name_the_parameter() {
        let params = Params::parse(Some("from=soon&step=0&limit=0&colour=red")).unwrap();
        assert_eq!(code_and_param(params.time("from").unwrap_err()).1, "from");
        assert_eq!(
            code_and_param(params.duration_millis("step").unwrap_err()).1,
            "step"
        );
        assert_eq!(code_and_param(params.limit(5, 10).unwrap_err()).1, "limit");
        assert_eq!(
            code_and_param(params.only(&["from", "step", "limit"], &[]).unwrap_err()),
            ("unknown_parameter", "colour".to_owned())
        );
        assert_eq!(
            code_and_param(ordered(2, 1).unwrap_err()),
            ("inverted_range", "from".to_owned())
        );
    }
}
