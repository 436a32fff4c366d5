//! Finding the API key in a request. The common rules (`Bearer`, `Basic` with the key as user
//! name, `X-Api-Key`) live in `shoal_storage::tenants::presented_key`, shared with the query side;
//! the agent protocols add their own habits here:
//! - InfluxDB clients send `Authorization: Token <key>` (v2), or `u`/`p` query parameters or
//!   Basic auth with the key as *password* (v1, as InfluxDB 2's v1 compatibility API reads it);
//! - Segment's Python SDK sends no header at all, only `writeKey` in the JSON body (read by the
//!   Segment routes themselves).

use axum::http::{HeaderMap, header};
use base64::Engine;

/// The presented secret, if any header carries one.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(token) = text(header::AUTHORIZATION.as_str()).and_then(token_scheme) {
        return Some(token);
    }
    shoal_storage::tenants::presented_key(text(header::AUTHORIZATION.as_str()), text("x-api-key"))
}

/// `Token <key>`, InfluxDB 2's scheme.
fn token_scheme(authorization: &str) -> Option<String> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    let rest = rest.trim();
    (scheme.eq_ignore_ascii_case("token") && !rest.is_empty()).then(|| rest.to_owned())
}

/// The key as InfluxDB v1 clients present it: the `p` query parameter (else `u`), Basic auth's
/// password (else its user name), or any header [`presented_key`] understands.
pub fn influx_v1_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(query) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let param = |name: &str| {
            pairs
                .iter()
                .find(|(key, value)| key == name && !value.is_empty())
                .map(|(_, value)| value.clone())
        };
        if let Some(key) = param("p").or_else(|| param("u")) {
            return Some(key);
        }
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if let Some((user, password)) = authorization.and_then(basic_pair) {
        let chosen = if password.is_empty() { user } else { password };
        return (!chosen.is_empty()).then_some(chosen);
    }
    presented_key(headers)
}

fn basic_pair(authorization: &str) -> Option<(String, String)> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((text.as_str(), ""));
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    #[test]
    fn token_and_segment_basic() {
        assert_eq!(
            presented_key(&headers("Token wk_1")).as_deref(),
            Some("wk_1")
        );
        assert_eq!(
            presented_key(&headers("Bearer wk_2")).as_deref(),
            Some("wk_2")
        );
        // Segment: base64("wk_3:")
        let basic = base64::engine::general_purpose::STANDARD.encode("wk_3:");
        assert_eq!(
            presented_key(&headers(&format!("Basic {basic}"))).as_deref(),
            Some("wk_3")
        );
        assert_eq!(presented_key(&headers("Token ")), None);
    }

    #[test]
    fn influx_v1_forms() {
        let none = HeaderMap::new();
        assert_eq!(
            influx_v1_key(&none, Some("db=x&u=me&p=wk_1")).as_deref(),
            Some("wk_1")
        );
        assert_eq!(
            influx_v1_key(&none, Some("db=x&u=wk_2")).as_deref(),
            Some("wk_2")
        );
        assert_eq!(influx_v1_key(&none, Some("db=x")), None);
        let basic = base64::engine::general_purpose::STANDARD.encode("telegraf:wk_3");
        assert_eq!(
            influx_v1_key(&headers(&format!("Basic {basic}")), None).as_deref(),
            Some("wk_3")
        );
        assert_eq!(
            influx_v1_key(&headers("Token wk_4"), Some("db=x")).as_deref(),
            Some("wk_4")
        );
    }
}
