//! Finding the API key in a request's headers (the rules live in
//! `shoal_storage::tenants::presented_key`, shared with the query side).

use axum::http::{HeaderMap, header};

/// The presented secret, if any header carries one.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    shoal_storage::tenants::presented_key(text(header::AUTHORIZATION.as_str()), text("x-api-key"))
}
