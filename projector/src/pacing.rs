//! Whether a caught-up worker, woken by an append, waits out the rest of `flush_interval`
//! before it reads, so that the appends arriving meanwhile share one flush.
//!
//! The wait pays under a stream of appends. It only delays a writer that sends one event at a
//! time and waits until it can read it back: nothing else arrives during the wait, since that
//! writer is waiting too. So a wait that gathered no more than the event that woke the worker
//! turns waiting off, and it is tried again after `retry_after`, or at once when a read
//! without waiting finds more than one event (appends are coming faster than flushes).

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Pacing {
    retry_after: Duration,
    /// The last read followed a wait.
    waited: bool,
    /// When a wait last gathered nothing more; `None` while waits pay.
    fruitless_at: Option<Instant>,
}

impl Pacing {
    pub(crate) fn new(retry_after: Duration) -> Self {
        Pacing {
            retry_after,
            waited: false,
            fruitless_at: None,
        }
    }

    /// Whether to wait before the next read; the caller says [`Pacing::waiting`] if it does.
    pub(crate) fn should_wait(&self, now: Instant) -> bool {
        self.fruitless_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.retry_after)
    }

    pub(crate) fn waiting(&mut self) {
        self.waited = true;
    }

    /// After a read that applied `events`; reads that found nothing say nothing.
    pub(crate) fn read(&mut self, events: u64, now: Instant) {
        if events == 0 {
            return;
        }
        if std::mem::take(&mut self.waited) {
            self.fruitless_at = (events == 1).then_some(now);
        } else if events > 1 {
            self.fruitless_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Duration = Duration::from_secs(1);

    #[test]
    fn a_wait_that_gathers_one_event_stops_waiting_until_the_retry() {
        let start = Instant::now();
        let mut pacing = Pacing::new(RETRY);
        assert!(pacing.should_wait(start));
        pacing.waiting();
        pacing.read(1, start);
        assert!(!pacing.should_wait(start + Duration::from_millis(5)));
        // Lone events read at once leave it off...
        pacing.read(1, start + Duration::from_millis(6));
        assert!(!pacing.should_wait(start + RETRY / 2));
        // ...until the retry, counted from the fruitless wait.
        assert!(pacing.should_wait(start + RETRY));
    }

    #[test]
    fn a_wait_that_gathers_more_keeps_waiting() {
        let start = Instant::now();
        let mut pacing = Pacing::new(RETRY);
        pacing.waiting();
        pacing.read(7, start);
        assert!(pacing.should_wait(start));
        // A lone event read without waiting (after a quiet spell) says nothing about waits.
        pacing.read(1, start + Duration::from_millis(50));
        assert!(pacing.should_wait(start + Duration::from_millis(51)));
    }

    #[test]
    fn several_events_in_a_read_without_waiting_turn_waiting_back_on() {
        let start = Instant::now();
        let mut pacing = Pacing::new(RETRY);
        pacing.waiting();
        pacing.read(1, start);
        assert!(!pacing.should_wait(start));
        pacing.read(3, start + Duration::from_millis(2));
        assert!(pacing.should_wait(start + Duration::from_millis(3)));
    }

    #[test]
    fn reads_that_find_nothing_change_nothing() {
        let start = Instant::now();
        let mut pacing = Pacing::new(RETRY);
        pacing.waiting();
        pacing.read(0, start);
        pacing.read(1, start);
        assert!(!pacing.should_wait(start));
    }
}
