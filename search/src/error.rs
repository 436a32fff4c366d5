//! The search crate's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query string cannot be parsed; `position` is a character offset into it.
    #[error("query syntax at character {position}: {message}")]
    Syntax { position: usize, message: String },
    /// A request parameter other than the query string is out of range or malformed.
    #[error("{param}: {message}")]
    InvalidArgument {
        param: &'static str,
        message: String,
    },
    #[error("index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("log: {0}")]
    Log(#[from] shoal_storage::Error),
    /// Reading the archived history to seed a new index failed.
    #[error("archive: {0}")]
    History(String),
    /// The commit payload or a stored entity cannot be read back: the index was not written by
    /// this version of Shoal, or it is damaged.
    #[error("corrupt index data: {0}")]
    Corrupt(String),
    #[error("search worker task failed: {0}")]
    Task(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            param,
            message: message.into(),
        }
    }

    /// Errors of the request rather than of the index: they belong in a 400, not a 500.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Error::Syntax { .. } | Error::InvalidArgument { .. })
    }
}
