//! The one error type of the contracts crate.

/// Errors raised while reading contract values from untrusted text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid sequence number {0:?}: expected decimal digits")]
    InvalidSequence(String),
    #[error("invalid position {0:?}: expected <sequence>:<index>")]
    InvalidPosition(String),
    #[error("unknown event kind {0:?}")]
    UnknownKind(String),
}

pub type Result<T> = std::result::Result<T, Error>;
