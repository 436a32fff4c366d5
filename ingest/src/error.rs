//! The ingest crate's one error type, mapped to HTTP in exactly one place (`IntoResponse`).
//!
//! Every error body has the same shape, `{"error": {"code", "message", "field"?}}`, with a
//! stable machine-readable `code`; internal details (paths, backend messages) never reach it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("this key may not {0}")]
    Forbidden(&'static str),
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("batch has {count} events, the limit is {limit}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("batch is empty")]
    EmptyBatch,
    #[error("malformed JSON at line {line} column {column}: {detail}")]
    MalformedJson {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("{message}")]
    Invalid {
        code: &'static str,
        field: String,
        message: String,
    },
    #[error("unsupported content encoding {0:?}; send identity or gzip")]
    UnsupportedEncoding(String),
    #[error("tenant is over its rate limit")]
    RateLimited { retry_after: Duration },
    #[error("server is overloaded")]
    Overloaded { retry_after: Duration },
    #[error("injected test fault: the write was stored, retry it")]
    InjectedFault,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage: {0}")]
    Storage(#[from] shoal_storage::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The JSON error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::BodyTooLarge { .. } | Error::TooManyEvents { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Error::EmptyBatch | Error::MalformedJson { .. } | Error::Invalid { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Overloaded { .. } | Error::InjectedFault => StatusCode::SERVICE_UNAVAILABLE,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Storage(error) if error.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Error::Storage(shoal_storage::Error::InvalidArgument(_)) => StatusCode::BAD_REQUEST,
            Error::Storage(shoal_storage::Error::ConditionFailed) => StatusCode::CONFLICT,
            Error::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ErrorBody {
        let (code, field): (&'static str, Option<String>) = match self {
            Error::Unauthorized => ("unauthorized", Some("authorization".into())),
            Error::Forbidden(_) => ("forbidden", Some("authorization".into())),
            Error::BodyTooLarge { .. } => ("body_too_large", Some("body".into())),
            Error::TooManyEvents { .. } => ("too_many_events", Some("body".into())),
            Error::EmptyBatch => ("empty_batch", Some("body".into())),
            Error::MalformedJson { .. } => ("malformed_json", Some("body".into())),
            Error::Invalid { code, field, .. } => (code, Some(field.clone())),
            Error::UnsupportedEncoding(_) => {
                ("unsupported_encoding", Some("content-encoding".into()))
            }
            Error::RateLimited { .. } => ("rate_limited", None),
            Error::Overloaded { .. } => ("overloaded", None),
            Error::InjectedFault => ("injected_fault", None),
            Error::NotFound => ("not_found", None),
            Error::Conflict(_) => ("conflict", None),
            Error::Storage(error) if error.is_transient() => ("unavailable", None),
            Error::Storage(shoal_storage::Error::InvalidArgument(_)) => ("invalid", None),
            Error::Storage(shoal_storage::Error::ConditionFailed) => ("conflict", None),
            Error::Storage(_) => ("internal", None),
        };
        let message = match self {
            // Backend messages can carry paths and internals: log them, do not send them.
            Error::Storage(shoal_storage::Error::InvalidArgument(detail)) => detail.clone(),
            Error::Storage(error) if error.is_transient() => {
                "storage is briefly unavailable; retry".to_owned()
            }
            Error::Storage(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let (line, column) = match self {
            Error::MalformedJson { line, column, .. } => (Some(*line), Some(*column)),
            _ => (None, None),
        };
        ErrorBody {
            code,
            message,
            field,
            line,
            column,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } | Error::Overloaded { retry_after } => {
                Some(*retry_after)
            }
            Error::Storage(error) if error.is_transient() => Some(Duration::from_secs(1)),
            Error::InjectedFault => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The stable code of the error body, for logs and metrics where there is no response.
    pub(crate) fn code(&self) -> &'static str {
        self.body().code
    }

    /// Builds the error from a JSON parser's complaint about the body.
    pub fn malformed(error: &serde_json::Error) -> Error {
        Error::MalformedJson {
            line: error.line(),
            column: error.column(),
            detail: error.to_string(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = self.body();
        crate::telemetry::record_refused(body.code);
        let mut response =
            (status, axum::Json(serde_json::json!({ "error": body }))).into_response();
        if let Some(wait) = self.retry_after() {
            // Retry-After is whole seconds; round up so a client never retries too early.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
