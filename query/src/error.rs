//! The query crate's one error type, mapped to HTTP in exactly one place. The body has the same
//! shape as the write side's: `{"error": {"code", "message", "field"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("this key may not read: use a read key")]
    Forbidden,
    #[error("{message}")]
    BadParam {
        param: String,
        code: &'static str,
        message: String,
    },
    #[error("{message}")]
    NotFound { param: String, message: String },
    #[error("storage: {0}")]
    Storage(#[from] shoal_storage::Error),
    #[error("read model: {0}")]
    Projector(#[from] shoal_projector::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn bad(param: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Error::BadParam {
            param: param.into(),
            code,
            message: message.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<&str>) {
        match self {
            Error::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                Some("authorization"),
            ),
            Error::Forbidden => (StatusCode::FORBIDDEN, "forbidden", Some("authorization")),
            Error::BadParam { param, code, .. } => (StatusCode::BAD_REQUEST, code, Some(param)),
            Error::NotFound { param, .. } => (StatusCode::NOT_FOUND, "not_found", Some(param)),
            Error::Storage(error) if error.is_transient() => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None)
            }
            Error::Projector(error) if error.is_transient() => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None)
            }
            Error::Storage(shoal_storage::Error::InvalidCursor) => {
                (StatusCode::BAD_REQUEST, "invalid_value", Some("cursor"))
            }
            Error::Storage(_) | Error::Projector(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "query failed");
            // Internals (keys, paths, backend messages) stay in the log.
            "internal error; retry later".to_owned()
        } else if matches!(self, Error::Storage(shoal_storage::Error::InvalidCursor)) {
            "cursor is not one this API returned".to_owned()
        } else {
            self.to_string()
        };
        let mut error = serde_json::json!({ "code": code, "message": message });
        if let Some(field) = field {
            error["field"] = serde_json::Value::String(field.to_owned());
        }
        (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
    }
}
