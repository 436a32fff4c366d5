//! The one retry helper of the AWS backends, and the classification of AWS errors behind it.
//!
//! Every per-operation function (kinesis/api.rs, dynamodb/api.rs) turns the SDK's error into a
//! [`CallError`] whose [`ErrorClass`] says what it means for us; [`retry`] re-runs a call while
//! the class is transient (throttling, 5xx, timeouts, dispatch failures), with exponential backoff
//! and full jitter (sleep a random time in `[0, min(cap, base·2^attempt)]`, which spreads
//! competing clients best: AWS Architecture Blog, "Exponential Backoff And Jitter"), for at most
//! [`RetryPolicy::max_attempts`] attempts; everything else is returned at once.
//!
//! The SDK's own retry layer is switched off (see `config.rs`), so this is the only place that
//! retries, attempts do not multiply, and injected faults go through exactly the same path as
//! real ones. Partial failures inside a successful batch call (`PutRecords` failed records,
//! `UnprocessedItems`) are not errors of the call; their callers retry them with the same
//! [`RetryPolicy::delay`].

use crate::Error;
use crate::aws::fault::{Fault, Operation};
// Both service crates re-export the same smithy runtime types; the Kinesis paths serve both.
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// How often and how patiently a call is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; doubled per attempt.
    pub base_delay: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, 50 ms doubling up to 5 s: about 10 s of backoff at most in the worst draw,
    /// well inside the dedup claim lease (kinesis/dedup.rs) and a client's patience.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy for tests: the same number of attempts, millisecond pauses.
    pub fn fast() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        }
    }

    /// The pause before retry number `retry` (1 for the first retry): full jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_delay);
        let ceiling_micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::rng().random_range(0..=ceiling_micros))
    }

    /// The longest total backoff the policy can sleep through, for budgeting leases.
    pub fn worst_case_backoff(&self) -> Duration {
        (1..self.max_attempts.max(1))
            .map(|retry| {
                self.base_delay
                    .saturating_mul(1u32.checked_shl(retry - 1).unwrap_or(u32::MAX))
                    .min(self.max_delay)
            })
            .sum()
    }
}

/// What an AWS error means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Over a rate or capacity limit: retry after a pause.
    Throttled,
    /// 5xx, timeout, connection failure, truncated response: retry after a pause.
    Transient,
    /// A condition of a conditional write did not hold: an answer, not a failure.
    ConditionFailed,
    /// The stream, shard or table does not exist.
    NotFound,
    /// The stream or table already exists (or is being changed).
    InUse,
    /// A shard iterator older than 5 minutes: get a new one.
    ExpiredIterator,
    /// The request was invalid (our bug or an invalid value): never retried.
    Invalid,
    /// Anything else: never retried.
    Fatal,
}

impl ErrorClass {
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Throttled | ErrorClass::Transient)
    }
}

/// A failed AWS call, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub operation: Operation,
    pub class: ErrorClass,
    /// The service's error code (`ProvisionedThroughputExceededException`), or what failed
    /// (`timeout`, `dispatch`) when no response arrived.
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed: {}: {}",
            self.operation, self.code, self.message
        )
    }
}

impl CallError {
    pub fn new(
        operation: Operation,
        class: ErrorClass,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CallError {
            operation,
            class,
            code: code.into(),
            message: message.into(),
        }
    }

    /// The error a call-level injected fault stands for.
    pub(crate) fn injected(operation: Operation, fault: &Fault) -> Self {
        let (class, code) = match fault {
            Fault::Throttle => (ErrorClass::Throttled, throttle_code(operation)),
            Fault::Unavailable => (ErrorClass::Transient, "ServiceUnavailable"),
            Fault::Reject | Fault::WithholdEntries(_) => {
                (ErrorClass::Invalid, "ValidationException")
            }
        };
        CallError::new(operation, class, code, "injected fault")
    }

    /// Classifies an SDK error of `operation`.
    pub fn from_sdk<E>(operation: Operation, error: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match error {
            SdkError::ConstructionFailure(_) => CallError::new(
                operation,
                ErrorClass::Invalid,
                "construction",
                error_chain(error),
            ),
            SdkError::TimeoutError(_) => CallError::new(
                operation,
                ErrorClass::Transient,
                "timeout",
                error_chain(error),
            ),
            SdkError::DispatchFailure(failure) => {
                // A user error in dispatch (e.g. a malformed endpoint) will not heal by retrying.
                let class = if failure.is_user() {
                    ErrorClass::Fatal
                } else {
                    ErrorClass::Transient
                };
                CallError::new(operation, class, "dispatch", error_chain(error))
            }
            SdkError::ResponseError(_) => CallError::new(
                operation,
                ErrorClass::Transient,
                "response",
                error_chain(error),
            ),
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = error.code().unwrap_or("Unknown");
                let message = error.message().unwrap_or_default();
                CallError::new(operation, classify(code, status), code, message)
            }
            // `SdkError` is non-exhaustive: an unknown kind is not known to heal.
            _ => CallError::new(operation, ErrorClass::Fatal, "unknown", error_chain(error)),
        }
    }

    /// The storage error this stands for, once retrying is over.
    pub fn into_storage(self) -> Error {
        let text = self.to_string();
        match self.class {
            ErrorClass::Throttled => Error::Throttled(text),
            ErrorClass::Transient => Error::Unavailable(text),
            ErrorClass::ConditionFailed => Error::ConditionFailed,
            ErrorClass::Invalid => Error::InvalidArgument(text),
            ErrorClass::NotFound
            | ErrorClass::InUse
            | ErrorClass::ExpiredIterator
            | ErrorClass::Fatal => Error::Backend(text),
        }
    }
}

impl From<CallError> for Error {
    fn from(error: CallError) -> Self {
        error.into_storage()
    }
}

/// The throttling code the service uses for `operation`.
fn throttle_code(operation: Operation) -> &'static str {
    match operation {
        Operation::PutRecords | Operation::GetRecords | Operation::GetShardIterator => {
            "ProvisionedThroughputExceededException"
        }
        Operation::ListShards
        | Operation::DescribeStreamSummary
        | Operation::CreateStream
        | Operation::DeleteStream => "LimitExceededException",
        _ => "ThrottlingException",
    }
}

/// The class of a service error from its code and HTTP status. Codes come from the Kinesis and
/// DynamoDB API references ("Errors" and "Common Errors" sections).
pub fn classify(code: &str, status: u16) -> ErrorClass {
    match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "LimitExceededException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "KMSThrottlingException" => ErrorClass::Throttled,
        "InternalFailure"
        | "InternalFailureException"
        | "InternalServerError"
        | "InternalServerErrorException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "KMSInternalException"
        // DynamoDB: another transaction holds the item, or our own idempotent retry is still
        // running; both clear up by themselves.
        | "TransactionConflictException"
        | "TransactionInProgressException" => ErrorClass::Transient,
        "ConditionalCheckFailedException" => ErrorClass::ConditionFailed,
        "ResourceNotFoundException" => ErrorClass::NotFound,
        "ResourceInUseException" => ErrorClass::InUse,
        "ExpiredIteratorException" => ErrorClass::ExpiredIterator,
        "ValidationException" | "InvalidArgumentException" | "SerializationException" => {
            ErrorClass::Invalid
        }
        _ if status == 429 => ErrorClass::Throttled,
        _ if status >= 500 => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// The error and its sources on one line: the SDK's top-level message alone ("dispatch
/// failure") hides the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `call` until it succeeds, fails with a non-retryable error, or used up the policy's
/// attempts; sleeps [`RetryPolicy::delay`] between attempts. Returns the last error.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if error.class.is_retryable() && attempt < policy.max_attempts.max(1) => {
                let pause = policy.delay(attempt);
                tracing::debug!(
                    operation = error.operation.as_str(),
                    code = %error.code,
                    attempt,
                    pause_ms = pause.as_millis() as u64,
                    "retrying aws call"
                );
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            Err(error) => {
                if error.class.is_retryable() {
                    tracing::warn!(
                        operation = error.operation.as_str(),
                        code = %error.code,
                        attempts = attempt,
                        "aws call still failing after all retries"
                    );
                }
                return Err(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn classifies_throttling_transient_and_real_failures() {
        for code in [
            "ProvisionedThroughputExceededException",
            "LimitExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            assert_eq!(classify(code, 400), ErrorClass::Throttled, "{code}");
        }
        assert_eq!(classify("InternalFailure", 500), ErrorClass::Transient);
        assert_eq!(classify("Whatever", 503), ErrorClass::Transient);
        assert_eq!(classify("Whatever", 429), ErrorClass::Throttled);
        assert_eq!(
            classify("ConditionalCheckFailedException", 400),
            ErrorClass::ConditionFailed
        );
        assert_eq!(classify("ValidationException", 400), ErrorClass::Invalid);
        assert_eq!(
            classify("AccessDeniedException", 400),
            ErrorClass::Fatal,
            "a permission problem never heals by retrying"
        );
        assert_eq!(
            classify("ResourceNotFoundException", 400),
            ErrorClass::NotFound
        );
    }

    #[test]
    fn maps_to_storage_errors() {
        let throttled = CallError::new(
            Operation::PutRecords,
            ErrorClass::Throttled,
            "ProvisionedThroughputExceededException",
            "slow down",
        );
        assert!(matches!(throttled.into_storage(), Error::Throttled(_)));
        let transient = CallError::new(Operation::Query, ErrorClass::Transient, "timeout", "");
        assert!(matches!(transient.into_storage(), Error::Unavailable(_)));
        let condition = CallError::new(
            Operation::UpdateItem,
            ErrorClass::ConditionFailed,
            "ConditionalCheckFailedException",
            "",
        );
        assert!(matches!(condition.into_storage(), Error::ConditionFailed));
        let fatal = CallError::new(Operation::Query, ErrorClass::Fatal, "AccessDenied", "");
        assert!(matches!(fatal.into_storage(), Error::Backend(_)));
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        };
        for retry in 1..40 {
            let ceiling =
                Duration::from_millis(10 * (1u64 << (retry - 1).min(20))).min(policy.max_delay);
            assert!(policy.delay(retry) <= ceiling);
        }
        assert_eq!(
            policy.worst_case_backoff(),
            Duration::from_millis(10 + 20 + 40 + 80 + 100 * 5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_then_gives_up() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let result: Result<(), CallError> = retry(&policy, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CallError::new(
                Operation::GetRecords,
                ErrorClass::Throttled,
                "ProvisionedThroughputExceededException",
                "",
            ))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), policy.max_attempts);
        assert_eq!(result.unwrap_err().class, ErrorClass::Throttled);
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_transient_errors_and_never_retries_real_failures() {
        let calls = AtomicU32::new(0);
        let value = retry(&RetryPolicy::default(), || async {
            let attempt = calls.fetch_add(1, Ordering::SeqCst);
            if attempt < 2 {
                Err(CallError::new(
                    Operation::Query,
                    ErrorClass::Transient,
                    "timeout",
                    "",
                ))
            } else {
                Ok(attempt)
            }
        })
        .await;
        assert_eq!(value, Ok(2));

        let calls = AtomicU32::new(0);
        let result: Result<(), CallError> = retry(&RetryPolicy::default(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CallError::new(
                Operation::Query,
                ErrorClass::Invalid,
                "ValidationException",
                "",
            ))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(result.unwrap_err().class, ErrorClass::Invalid);
    }
}
