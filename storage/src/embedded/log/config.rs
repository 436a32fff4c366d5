//! The embedded log's configuration: where it lives and how it trades durability for speed.
//!
//! Invariant: a [`LogConfig`] is checked once by [`LogConfig::validate`] before anything touches
//! the disk; the shard count is additionally checked against the one persisted at creation
//! (see `meta.rs`), because it decides which shard holds an entity's history.

use crate::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Default number of shards: one writer thread and one fsync stream each.
pub const DEFAULT_SHARD_COUNT: u32 = 4;
/// Default segment size before rolling to a new file.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
/// Default length of zeros the writer keeps written ahead of its frames in the active segment.
/// Growing the file costs an inode write on the commit that does it, so this many bytes of log
/// pay one inode write instead of one per commit; 8 MiB takes about 2 ms to write and is a
/// bounded amount of disk per shard (a whole 128 MiB segment up front would cost 512 MiB of disk
/// and a second of writing when a 4-shard log is created).
pub const DEFAULT_PREALLOCATE_BYTES: u64 = 8 * 1024 * 1024;
/// Default longest wait of a writer for more requests after a small group commit: none. A
/// 150 µs linger measured no gain over HTTP on the shared 2-core machine (single events × 64)
/// and cost CPU per event in process (`shoal-bench log-append`).
pub const DEFAULT_GROUP_COMMIT_LINGER: Duration = Duration::ZERO;
/// Default dedup window, by `received_at`.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Default number of fingerprints remembered per shard (about 40 bytes each).
pub const DEFAULT_DEDUP_CAPACITY: usize = 1_000_000;
/// Default zstd level: level 1 already packs repetitive JSON properties well and stays fast.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;
/// A longer linger would be a latency floor, not a way to share a sync.
pub const MAX_GROUP_COMMIT_LINGER: Duration = Duration::from_millis(10);
/// More shards than this is a typo, not a deployment: each one is a thread and a directory.
pub const MAX_SHARD_COUNT: u32 = 1024;

/// When a group commit counts as durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// `fsync` (`sync_data`) once per group commit before answering: an acknowledged append
    /// survives a power loss. The default.
    #[default]
    Always,
    /// No `fsync` per commit: appends are acknowledged once in the OS page cache. A process crash
    /// loses nothing, but a power loss or kernel crash loses the last moments of appends (the
    /// torn tail is cut on the next open). For tests, benchmarks and disposable data.
    /// Segments are still synced when they are rolled, so only the active segment is at risk.
    Relaxed,
}

/// Settings of an [`super::EmbeddedLog`]. Build with [`LogConfig::new`] and adjust fields.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// The log's directory: a metadata file and one `shard-NNN` directory per shard.
    pub dir: PathBuf,
    /// Fixed when the log is created; opening an existing log with another count is refused.
    pub shard_count: u32,
    /// A segment file is rolled once the next block would take it past this size (a single
    /// block larger than this still gets a segment of its own).
    pub segment_bytes: u64,
    /// Zeros written ahead of the frames in the active segment (capped at `segment_bytes`), so
    /// a commit overwrites blocks that already exist rather than growing the file; `0` grows the
    /// file with every commit.
    pub preallocate_bytes: u64,
    /// After a group commit of few events, how long the writer waits for more requests before
    /// the next commit, so one sync covers more of them; a lone request waits at most this
    /// long. `Duration::ZERO` commits at once.
    pub group_commit_linger: Duration,
    pub sync: SyncMode,
    /// An event whose `tenant + entity + id` was stored this long before (by `received_at`) or
    /// less is a duplicate.
    pub dedup_window: Duration,
    /// Fingerprints remembered per shard, oldest evicted first; `0` disables dedup.
    pub dedup_capacity: usize,
    /// zstd level of the blocks.
    pub compression_level: i32,
}

impl LogConfig {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            shard_count: DEFAULT_SHARD_COUNT,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            preallocate_bytes: DEFAULT_PREALLOCATE_BYTES,
            group_commit_linger: DEFAULT_GROUP_COMMIT_LINGER,
            sync: SyncMode::Always,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            dedup_capacity: DEFAULT_DEDUP_CAPACITY,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
        }
    }

    /// Rejects settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.shard_count == 0 || self.shard_count > MAX_SHARD_COUNT {
            return Err(Error::InvalidArgument(format!(
                "shard_count must be between 1 and {MAX_SHARD_COUNT}, not {}",
                self.shard_count
            )));
        }
        if self.segment_bytes == 0 {
            return Err(Error::InvalidArgument(
                "segment_bytes must be positive".to_owned(),
            ));
        }
        if self.group_commit_linger > MAX_GROUP_COMMIT_LINGER {
            return Err(Error::InvalidArgument(format!(
                "group_commit_linger must be at most {MAX_GROUP_COMMIT_LINGER:?}, not {:?}",
                self.group_commit_linger
            )));
        }
        let levels = zstd::compression_level_range();
        if !levels.contains(&self.compression_level) {
            return Err(Error::InvalidArgument(format!(
                "compression_level must be within {}..={}, not {}",
                levels.start(),
                levels.end(),
                self.compression_level
            )));
        }
        Ok(())
    }

    /// The dedup window in milliseconds, the unit of `received_at`.
    pub(super) fn dedup_window_millis(&self) -> i64 {
        i64::try_from(self.dedup_window.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = LogConfig::new("/tmp/x");
        assert_eq!(config.shard_count, 4);
        assert_eq!(config.sync, SyncMode::Always);
        config.validate().unwrap();
    }

    #[test]
    fn rejects_impossible_settings() {
        let mut config = LogConfig::new("/tmp/x");
        config.shard_count = 0;
        assert!(config.validate().is_err());
        let mut config = LogConfig::new("/tmp/x");
        config.segment_bytes = 0;
        assert!(config.validate().is_err());
        let mut config = LogConfig::new("/tmp/x");
        config.compression_level = 1000;
        assert!(config.validate().is_err());
        let mut config = LogConfig::new("/tmp/x");
        config.group_commit_linger = Duration::from_secs(1);
        assert!(config.validate().is_err());
    }

    #[test]
    fn huge_window_saturates() {
        let mut config = LogConfig::new("/tmp/x");
        config.dedup_window = Duration::MAX;
        assert_eq!(config.dedup_window_millis(), i64::MAX);
    }
}
