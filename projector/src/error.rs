//! The projector crate's one error type, and the separate [`PoisonError`] a projection's fold
//! returns for an event it can never apply.
//!
//! The split matters: an [`Error`] is about the machinery (storage, corrupt items) and makes the
//! worker retry the batch from its checkpoint; a [`PoisonError`] is about one event and is final
//! (the same bytes fold the same way every time), so the event goes to dead letters.

/// Why an operation of the projector failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage: {0}")]
    Storage(#[from] shoal_storage::Error),
    #[error("corrupt read-model item {key}: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The request contradicts the current state (a second rebuild for one tenant, activating
    /// a version that is not the candidate or has not caught up).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The runtime that runs rebuilds beside live work could not start.
    #[error("starting the background runtime: {0}")]
    Runtime(std::io::Error),
    #[error(
        "a projection's write unit needs {needs} {what}, the backend takes {limit} per transaction"
    )]
    UnitTooLarge {
        what: &'static str,
        needs: usize,
        limit: usize,
    },
}

impl Error {
    /// Worth retrying after a pause: throttling or a briefly absent backend, and a failed
    /// condition on a flush (another writer moved an item; re-reading from the checkpoint
    /// re-folds against the newer state).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Storage(error) => {
                error.is_transient() || matches!(error, shoal_storage::Error::ConditionFailed)
            }
            _ => false,
        }
    }

    pub(crate) fn corrupt(key: &shoal_storage::Key, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            key: format!("{}/{}", key.pk, key.sk),
            detail: detail.into(),
        }
    }
}

/// An event a projection can never apply: a metric point without a finite value, properties
/// that are not a JSON object, a number where the projection needs one that is not. Returned by
/// `Projection::fold` before it has changed anything, so skipping the event leaves no trace.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PoisonError(pub String);

impl PoisonError {
    pub fn new(reason: impl Into<String>) -> Self {
        PoisonError(reason.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
