//! Finding the API key in a request: `Authorization: Bearer <key>`, `Authorization: Basic
//! base64(<key>:)` (what Segment's SDKs send), or `X-Api-Key: <key>` (Mackerel's agents).

use axum::http::{HeaderMap, header};
use base64::Engine;

/// The presented secret, if any header carries one.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?.trim();
        let (scheme, rest) = text.split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return non_empty(rest.to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            // Segment sends the write key as the user name with an empty password.
            let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
            return non_empty(user.to_owned());
        }
        return None;
    }
    headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
        .and_then(non_empty)
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn bearer_basic_and_api_key() {
        assert_eq!(
            presented_key(&headers("authorization", "Bearer abc")),
            Some("abc".into())
        );
        // base64("abc:") = "YWJjOg=="
        assert_eq!(
            presented_key(&headers("authorization", "Basic YWJjOg==")),
            Some("abc".into())
        );
        assert_eq!(
            presented_key(&headers("x-api-key", "abc")),
            Some("abc".into())
        );
        assert_eq!(presented_key(&headers("authorization", "Bearer ")), None);
        assert_eq!(presented_key(&headers("authorization", "Digest x")), None);
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }
}
