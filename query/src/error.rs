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
    #[error("{0}")]
    Search(#[from] shoal_search::Error),
    /// A rules document that does not validate.
    #[error("{0}")]
    Rules(#[from] shoal_rules::Error),
    #[error("{0}")]
    UnsupportedMediaType(String),
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
            Error::Search(shoal_search::Error::Syntax { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_query", Some("q"))
            }
            Error::Search(shoal_search::Error::InvalidArgument { param, .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_value", Some(param))
            }
            Error::Projector(shoal_projector::Error::Conflict(_)) => {
                (StatusCode::CONFLICT, "conflict", Some("version"))
            }
            Error::Projector(shoal_projector::Error::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found", Some("version"))
            }
            Error::Rules(error) => (StatusCode::BAD_REQUEST, "invalid_rules", Some(&error.field)),
            Error::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                Some("content-type"),
            ),
            Error::Storage(_) | Error::Projector(_) | Error::Search(_) => {
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
        if let Error::Search(shoal_search::Error::Syntax { position, .. }) = &self {
            error["position"] = (*position).into();
        }
        if let Error::Rules(rules) = &self {
            error["message"] = rules.message.clone().into();
            if let Some(line) = rules.line {
                error["line"] = line.into();
            }
            if let Some(column) = rules.column {
                error["column"] = column.into();
            }
        }
        (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
    }
}
