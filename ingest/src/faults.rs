//! A test-only fault hook, off unless the environment turns it on, so the end-to-end tests can
//! check what real SDKs do when a write fails.
//!
//! `SHOAL_TEST_FAIL_AFTER_APPEND=<n>`: the first `n` write requests that store anything are
//! appended durably and then answered `503` (with `Retry-After`), as if the response had been
//! lost. A correct client retries with the same message ids, and the log's deduplication must
//! make the retry a no-op. Never set it in production: it makes clients resend data.

use std::sync::atomic::{AtomicU64, Ordering};

pub const FAIL_AFTER_APPEND_ENV: &str = "SHOAL_TEST_FAIL_AFTER_APPEND";

#[derive(Debug, Default)]
pub struct Faults {
    fail_after_append: AtomicU64,
}

impl Faults {
    pub fn from_env() -> Faults {
        let count = std::env::var(FAIL_AFTER_APPEND_ENV)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if count > 0 {
            tracing::warn!(
                count,
                "test fault hook on: stored writes will be answered 503"
            );
        }
        Faults {
            fail_after_append: AtomicU64::new(count),
        }
    }

    /// Whether this request should fail after its append (consumes one of the `n`).
    pub fn fail_after_append(&self) -> bool {
        self.fail_after_append
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_then_stays_off() {
        let faults = Faults {
            fail_after_append: AtomicU64::new(2),
        };
        assert!(faults.fail_after_append());
        assert!(faults.fail_after_append());
        assert!(!faults.fail_after_append());
        assert!(!Faults::default().fail_after_append());
    }
}
