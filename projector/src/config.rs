//! The projector's settings, with named defaults.
//!
//! Invariant: a [`ProjectorConfig`] is checked once by [`ProjectorConfig::validate`] when the
//! projector is made, so the workers never meet a zero batch size or an inverted backoff.

use crate::{Error, Result};
use serde::Deserialize;
use std::time::Duration;

/// Events read (and folded into one flush) per batch. Large batches amortise the flush's fsync
/// and let many events of one item collapse into one write.
pub const DEFAULT_BATCH_EVENTS: usize = 20_000;
/// How long a caught-up worker waits for an append before it looks again. The embedded log
/// wakes it at once on append, so this only bounds how long a shutdown-less wait can last.
pub const DEFAULT_IDLE_WAIT: Duration = Duration::from_secs(1);
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(50);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A worker at least this far behind its shard's head folds more reads into one flush.
pub const DEFAULT_FOLD_AHEAD_LAG: Duration = Duration::from_secs(5);
/// Bounds of one folded-ahead flush. The items bound is what holds memory down: a staged
/// archive item is an event's JSON (about 1 KB), so 100,000 items is about 100 MB per worker.
pub const DEFAULT_FOLD_AHEAD_EVENTS: usize = 1_000_000;
pub const DEFAULT_FOLD_AHEAD_ITEMS: usize = 100_000;
/// Live projections below ingest (nice 0) and above rebuilds (the idle policy): see
/// `live_nice`. Measured in BENCHMARKS.md ("Session 16", and "Session 24" for 19 over 10).
pub const DEFAULT_LIVE_NICE: i32 = 19;
pub const DEFAULT_FOLD_AHEAD_TIME: Duration = Duration::from_secs(10);
/// See `flush_interval`. Measured in BENCHMARKS.md ("Session 17"): single-event requests at
/// 6,000 events/s took 11 % less server CPU per event; ingest→queryable under load did not
/// move beyond the noise.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// Past this, `flush_interval` would cost more freshness than issue 3 allows (100 ms p99).
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Settings shared by every worker of a projector.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    pub batch_events: usize,
    #[serde(with = "duration_millis")]
    pub idle_wait: Duration,
    #[serde(with = "duration_millis")]
    pub backoff_initial: Duration,
    #[serde(with = "duration_millis")]
    pub backoff_max: Duration,
    /// How many times a fold is tried on one event before it is dead-lettered. A fold is pure,
    /// so one try decides; more only guard against a projection that is not.
    pub poison_attempts: u32,
    /// A projection starting from nothing first replays the archive (the `events` table) up to
    /// the archive's checkpoint, then follows the log from there (`seed.rs`). For logs that
    /// forget (Kinesis keeps 24 h by default); the embedded log keeps everything.
    pub seed_from_archive: bool,
    /// Segments of the archive scan when seeding; a segment of one shard is held in memory at
    /// a time, so more segments mean less memory.
    pub seed_segments: u32,
    /// A worker at least this far behind the head of its shard (the backend's `millis_behind`)
    /// keeps reading into the batch it is folding, within the three bounds below, before it
    /// flushes: see `Worker::fold_ahead`.
    #[serde(with = "duration_millis")]
    pub fold_ahead_lag: Duration,
    /// At most this many events in one folded-ahead flush (0: never fold ahead).
    pub fold_ahead_events: usize,
    /// No further read once the batch holds this many items.
    pub fold_ahead_items: usize,
    /// No further read after this long.
    #[serde(with = "duration_millis")]
    pub fold_ahead_time: Duration,
    /// The CPU priority (nice value, 0–19) of the live projections' threads, their table
    /// commits and the search index's writer (`background.rs`). Above 0 they run below ingest
    /// and queries: under overload a write is acknowledged first and the read models catch up
    /// in the cores it leaves (their lag is in `GET /v1/projections` and `/metrics`). 0 runs
    /// them at ingest's priority: fresher read models under overload, slower ingest.
    pub live_nice: i32,
    /// A caught-up worker woken by an append reads at most once per this interval from the
    /// start of its previous read: the appends that arrive in between share one flush. A flush
    /// has a fixed cost (item loads, encoding, a commit, the checkpoint) that single-event
    /// requests would otherwise pay per event. Zero reads at once; at most
    /// [`MAX_FLUSH_INTERVAL`]. Adds up to this much to the read models' freshness while appends
    /// keep coming. Nothing after a quiet spell, nor (once one wait gathered no other event)
    /// for a writer that sends one event at a time and waits to read it back (`pacing.rs`;
    /// BENCHMARKS.md, "Session 20").
    #[serde(with = "duration_millis")]
    pub flush_interval: Duration,
    /// Run the workers at the lowest CPU priority, on threads of their own (`background.rs`):
    /// for a rebuild beside the live version, which must not slow live work. Set by the
    /// rules manager, not by configuration.
    #[serde(skip)]
    pub background: bool,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            batch_events: DEFAULT_BATCH_EVENTS,
            idle_wait: DEFAULT_IDLE_WAIT,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            poison_attempts: 2,
            seed_from_archive: false,
            seed_segments: 16,
            fold_ahead_lag: DEFAULT_FOLD_AHEAD_LAG,
            fold_ahead_events: DEFAULT_FOLD_AHEAD_EVENTS,
            fold_ahead_items: DEFAULT_FOLD_AHEAD_ITEMS,
            fold_ahead_time: DEFAULT_FOLD_AHEAD_TIME,
            live_nice: DEFAULT_LIVE_NICE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            background: false,
        }
    }
}

impl ProjectorConfig {
    pub fn validate(&self) -> Result<()> {
        if self.batch_events == 0 {
            return Err(Error::InvalidArgument(
                "batch_events must be positive".into(),
            ));
        }
        if self.backoff_initial.is_zero() || self.backoff_initial > self.backoff_max {
            return Err(Error::InvalidArgument(
                "backoff_initial must be positive and at most backoff_max".into(),
            ));
        }
        if self.poison_attempts == 0 {
            return Err(Error::InvalidArgument(
                "poison_attempts must be at least 1".into(),
            ));
        }
        if !(0..=shoal_storage::priority::LOWEST).contains(&self.live_nice) {
            return Err(Error::InvalidArgument(format!(
                "live_nice must be 0 to {}",
                shoal_storage::priority::LOWEST
            )));
        }
        if self.flush_interval > MAX_FLUSH_INTERVAL {
            return Err(Error::InvalidArgument(format!(
                "flush_interval must be at most {} ms",
                MAX_FLUSH_INTERVAL.as_millis()
            )));
        }
        if self.seed_segments == 0 || self.seed_segments > shoal_storage::MAX_SCAN_SEGMENTS {
            return Err(Error::InvalidArgument(format!(
                "seed_segments must be 1 to {}",
                shoal_storage::MAX_SCAN_SEGMENTS
            )));
        }
        Ok(())
    }

    /// The pause before retry number `attempt` (0-based): doubling from the initial pause,
    /// capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// Durations as integer milliseconds in config files.
mod duration_millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_backoff_doubles_to_a_cap() {
        let config = ProjectorConfig::default();
        config.validate().unwrap();
        assert_eq!(config.backoff(0), Duration::from_millis(50));
        assert_eq!(config.backoff(1), Duration::from_millis(100));
        assert_eq!(config.backoff(40), DEFAULT_BACKOFF_MAX);
    }

    #[test]
    fn live_nice_is_a_nice_value_a_process_may_take() {
        for (nice, valid) in [(0, true), (10, true), (19, true), (-1, false), (20, false)] {
            let config = ProjectorConfig {
                live_nice: nice,
                ..ProjectorConfig::default()
            };
            assert_eq!(config.validate().is_ok(), valid, "live_nice {nice}");
        }
    }

    #[test]
    fn flush_interval_is_bounded_by_freshness() {
        for (millis, valid) in [(0, true), (10, true), (50, true), (51, false)] {
            let config = ProjectorConfig {
                flush_interval: Duration::from_millis(millis),
                ..ProjectorConfig::default()
            };
            assert_eq!(config.validate().is_ok(), valid, "{millis} ms");
        }
    }

    #[test]
    fn rejects_zero_batches() {
        let config = ProjectorConfig {
            batch_events: 0,
            ..ProjectorConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
