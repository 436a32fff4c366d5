//! The storage crate's one error type.

/// Everything a storage backend can report. Callers branch on the variant: `Throttled` and
/// `Unavailable` are transient and retried with backoff; `ConditionFailed` is an expected answer
/// of a conditional write; the rest are real failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("condition failed")]
    ConditionFailed,
    #[error("throttled by the backend: {0}")]
    Throttled(String),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("unknown shard {0}")]
    UnknownShard(String),
    #[error("{what} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("corrupt data in {location}: {detail}")]
    Corrupt { location: String, detail: String },
    #[error("the log is closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("backend error: {0}")]
    Backend(String),
}

impl Error {
    /// Worth retrying after a pause (throttling, timeouts, a backend briefly away).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Throttled(_) | Error::Unavailable(_))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
