//! Configuration: a serde struct with a default for everything, read from an optional TOML file,
//! unknown keys refused so a typo is an error rather than a silently ignored setting.

use anyhow::Context;
use serde::Deserialize;
use shoal_ingest::{GraphiteConfig, Limits};
use shoal_projector::ProjectorConfig;
use shoal_search::SearchConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8750";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log: LogSettings,
    pub limits: Limits,
    pub projector: ProjectorConfig,
    pub search: SearchConfig,
    pub scores: ScoresSettings,
    pub series: SeriesSettings,
    /// What this process does: `ingest`, `projector`, `query` (default: all three). Only the
    /// AWS backend splits them over processes; the embedded log belongs to one process.
    pub roles: Vec<Role>,
    pub storage: StorageSettings,
    pub aws: AwsSettings,
    pub canary: CanarySettings,
    pub readiness: ReadinessSettings,
    /// The Graphite plaintext TCP listener (off by default; no auth: one tenant, firewall it).
    pub graphite: GraphiteConfig,
    /// After SIGTERM/SIGINT, exit anyway if stopping gracefully takes longer than this.
    pub shutdown_grace_secs: u64,
}

/// The largest event the AWS backend takes: the archive stores a copy of each event in one
/// DynamoDB item, whose attribute the projector refuses over [`shoal_projector::MAX_ITEM_BYTES`]
/// (a dead letter), and the copy's JSON adds the server's fields (id, times) to what the
/// client sent.
const AWS_MAX_EVENT_BYTES: usize = shoal_projector::MAX_ITEM_BYTES - 8 * 1024;

/// The end-to-end canary (a process with the `query` role runs it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanarySettings {
    pub enabled: bool,
    pub interval_secs: u64,
    /// A canary not readable within this long counts as failed.
    pub timeout_secs: u64,
}

impl Default for CanarySettings {
    fn default() -> Self {
        CanarySettings {
            enabled: true,
            interval_secs: 10,
            timeout_secs: 10,
        }
    }
}

/// When `GET /readyz` says ready.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadinessSettings {
    /// Unready while a live projection is further behind the newest event than this.
    pub max_lag_secs: u64,
}

impl Default for ReadinessSettings {
    fn default() -> Self {
        ReadinessSettings { max_lag_secs: 60 }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The write API: append to the log.
    Ingest,
    /// Replay the log into the read models (with leases on AWS), rules and scores.
    Projector,
    /// The read API (and the search index, kept by this process).
    Query,
}

pub const ALL_ROLES: [Role; 3] = [Role::Ingest, Role::Projector, Role::Query];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    pub backend: Backend,
    /// Embedded tables: the longest the read models' relaxed flushes go without a durable
    /// commit (ms; 0: every flush). Each durable commit writes out what changed since the last
    /// one and holds up every flush while it does, so this bounds both that pause and the replay
    /// after a crash.
    pub tables_sync_interval_ms: u64,
}

/// Longer would let one durable commit hold the read models up for seconds (a crash replays
/// this much, too).
pub const MAX_TABLES_SYNC_INTERVAL_MS: u64 = 60_000;

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            backend: Backend::default(),
            tables_sync_interval_ms: shoal_storage::embedded::table::DEFAULT_SYNC_INTERVAL
                .as_millis() as u64,
        }
    }
}

impl StorageSettings {
    pub fn tables_sync_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.tables_sync_interval_ms)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The log and tables in the data directory (no setup).
    #[default]
    Embedded,
    /// Kinesis Data Streams and DynamoDB (`shoal aws init` creates them).
    Aws,
}

/// Where the AWS resources are (`[aws]`); credentials come from the SDK's usual chain
/// (environment, profile, instance role).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    pub region: String,
    /// An endpoint for both services (LocalStack); none for AWS itself.
    pub endpoint_url: Option<String>,
    pub kinesis_endpoint_url: Option<String>,
    pub dynamodb_endpoint_url: Option<String>,
    pub stream_name: String,
    /// Tables `<prefix>-events`, `-views`, `-control`.
    pub table_prefix: String,
    /// Shards of the stream `shoal aws init` creates.
    pub shard_count: u32,
    /// A projector process that has not renewed a shard's lease for this long loses it.
    pub lease_duration_ms: u64,
    pub lease_renew_ms: u64,
    /// How often projector processes list the stream's shards (a reshard adds some).
    pub shard_refresh_ms: u64,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: "us-east-1".into(),
            endpoint_url: None,
            kinesis_endpoint_url: None,
            dynamodb_endpoint_url: None,
            stream_name: "shoal".into(),
            table_prefix: "shoal".into(),
            shard_count: 4,
            lease_duration_ms: 10_000,
            lease_renew_ms: 2_000,
            shard_refresh_ms: 10_000,
        }
    }
}

impl AwsSettings {
    pub fn storage_config(&self) -> shoal_storage::aws::AwsConfig {
        let mut config = shoal_storage::aws::AwsConfig::new(
            self.region.clone(),
            self.stream_name.clone(),
            self.table_prefix.clone(),
        );
        config.endpoint_url = self.endpoint_url.clone();
        config.kinesis_endpoint_url = self.kinesis_endpoint_url.clone();
        config.dynamodb_endpoint_url = self.dynamodb_endpoint_url.clone();
        config.shard_count = self.shard_count;
        config
    }

    pub fn lease_config(&self, owner: String) -> shoal_projector::LeaseConfig {
        let mut config = shoal_projector::LeaseConfig::new(owner);
        config.lease_duration = std::time::Duration::from_millis(self.lease_duration_ms);
        config.renew_interval = std::time::Duration::from_millis(self.lease_renew_ms);
        config.shard_refresh = std::time::Duration::from_millis(self.shard_refresh_ms);
        config
    }
}

/// Health scores: how often every entity is re-evaluated as of the clock (windows slide with
/// no new events).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoresSettings {
    pub sweep_interval_secs: u64,
    /// Events folded per flush by a scores rebuild (memory grows with it: a few hundred bytes
    /// per event while a rebuild catches up).
    pub batch_events: usize,
}

impl Default for ScoresSettings {
    fn default() -> Self {
        ScoresSettings {
            sweep_interval_secs: 60,
            batch_events: shoal_projector::scores::manager::DEFAULT_BATCH_EVENTS,
        }
    }
}

/// Metric series: how often and how much the retention sweep works (what each resolution keeps
/// is per tenant, in the rules' `series.retention_days`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesSettings {
    /// Time between sweep rounds; an expired item is deleted one round after it is fenced off,
    /// so keep it well above the time one projector batch takes to load (minutes, not seconds,
    /// on DynamoDB).
    pub retention_sweep_secs: u64,
    /// Work per round: one unit per series visited and per item deleted.
    pub retention_budget: usize,
}

impl Default for SeriesSettings {
    fn default() -> Self {
        let defaults = shoal_projector::series::sweep::RetentionConfig::default();
        SeriesSettings {
            retention_sweep_secs: defaults.interval.as_secs(),
            retention_budget: defaults.budget,
        }
    }
}

impl SeriesSettings {
    pub fn retention_config(&self) -> shoal_projector::series::sweep::RetentionConfig {
        shoal_projector::series::sweep::RetentionConfig {
            interval: std::time::Duration::from_secs(self.retention_sweep_secs),
            budget: self.retention_budget,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Fixed when the data directory is created.
    pub shards: u32,
    pub segment_mib: u64,
    /// Zeros written ahead of the frames in the active segment, so that a commit's fsync need
    /// not write the file's new size; `0` grows the file with every commit.
    pub preallocate_mib: u64,
    /// After a small group commit, how long a shard's writer may wait for more requests so
    /// one fsync covers them (at most 10 000); `0` commits at once.
    pub group_commit_linger_micros: u64,
    /// `always` (fsync each group commit; acknowledged = durable) or `relaxed` (no fsync; a
    /// power loss can lose the last moments).
    pub sync: SyncSetting,
    pub dedup_window_hours: u64,
    pub dedup_capacity_per_shard: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    Always,
    Relaxed,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8750))),
            data_dir: PathBuf::from("./shoal-data"),
            log: LogSettings::default(),
            limits: Limits::default(),
            projector: ProjectorConfig::default(),
            search: SearchConfig::default(),
            scores: ScoresSettings::default(),
            series: SeriesSettings::default(),
            roles: ALL_ROLES.to_vec(),
            storage: StorageSettings::default(),
            aws: AwsSettings::default(),
            canary: CanarySettings::default(),
            readiness: ReadinessSettings::default(),
            graphite: GraphiteConfig::default(),
            shutdown_grace_secs: 30,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            shards: 4,
            segment_mib: 128,
            preallocate_mib: 8,
            group_commit_linger_micros: 0,
            sync: SyncSetting::Always,
            dedup_window_hours: 24,
            dedup_capacity_per_shard: 500_000,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in config file {}", path.display()))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        // Before anything uses it: the live runtime and the tables' committer take `live_nice`.
        self.projector
            .validate()
            .map_err(|error| anyhow::anyhow!("projector: {error}"))?;
        let limits = &self.limits;
        anyhow::ensure!(
            limits.max_body_bytes > 0,
            "limits.max_body_bytes must be > 0"
        );
        anyhow::ensure!(
            limits.max_decompressed_bytes >= limits.max_body_bytes,
            "limits.max_decompressed_bytes must be >= limits.max_body_bytes"
        );
        anyhow::ensure!(
            limits.max_batch_events > 0,
            "limits.max_batch_events must be > 0"
        );
        anyhow::ensure!(
            limits.max_event_bytes > 0,
            "limits.max_event_bytes must be > 0"
        );
        anyhow::ensure!(
            self.storage.tables_sync_interval_ms <= MAX_TABLES_SYNC_INTERVAL_MS,
            "storage.tables_sync_interval_ms must be at most {MAX_TABLES_SYNC_INTERVAL_MS}"
        );
        anyhow::ensure!(self.log.shards > 0, "log.shards must be > 0");
        anyhow::ensure!(self.log.segment_mib > 0, "log.segment_mib must be > 0");
        self.projector
            .validate()
            .map_err(|error| anyhow::anyhow!("projector: {error}"))?;
        anyhow::ensure!(
            self.scores.sweep_interval_secs > 0,
            "scores.sweep_interval_secs must be > 0"
        );
        anyhow::ensure!(
            self.scores.batch_events > 0,
            "scores.batch_events must be > 0"
        );
        anyhow::ensure!(
            self.series.retention_sweep_secs > 0,
            "series.retention_sweep_secs must be > 0"
        );
        anyhow::ensure!(
            self.series.retention_budget >= 100,
            "series.retention_budget must be at least 100"
        );
        self.search
            .validate()
            .map_err(|error| anyhow::anyhow!("search.{error}"))?;
        anyhow::ensure!(!self.roles.is_empty(), "roles must name at least one role");
        anyhow::ensure!(
            self.shutdown_grace_secs > 0,
            "shutdown_grace_secs must be > 0"
        );
        anyhow::ensure!(
            self.canary.interval_secs > 0 && self.canary.timeout_secs > 0,
            "canary.interval_secs and canary.timeout_secs must be > 0"
        );
        if self.graphite.enabled {
            self.graphite
                .validate()
                .map_err(|error| anyhow::anyhow!("graphite: {error}"))?;
            anyhow::ensure!(
                self.has(Role::Ingest),
                "graphite.enabled needs the ingest role in this process"
            );
        }
        if self.storage.backend == Backend::Embedded {
            anyhow::ensure!(
                ALL_ROLES.iter().all(|role| self.roles.contains(role)),
                "roles: the embedded backend runs every role in one process; split roles need storage.backend = \"aws\""
            );
        } else {
            anyhow::ensure!(
                self.limits.max_event_bytes <= AWS_MAX_EVENT_BYTES,
                "limits.max_event_bytes must be at most {AWS_MAX_EVENT_BYTES} with storage.backend = \"aws\": \
                 the archive keeps each event as one DynamoDB item (at most 400 KB)"
            );
            self.aws
                .storage_config()
                .validate()
                .map_err(|error| anyhow::anyhow!("aws: {error}"))?;
            self.aws
                .lease_config("check".into())
                .validate()
                .map_err(|error| anyhow::anyhow!("aws: {error}"))?;
        }
        Ok(())
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    pub fn tables_path(&self) -> PathBuf {
        self.data_dir.join("tables.redb")
    }

    /// The search index: a projection of the log, deleted and rebuilt freely.
    pub fn search_dir(&self) -> PathBuf {
        self.data_dir.join("search")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_local() {
        let config = Config::default();
        config.validate().unwrap();
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.listen.port(), 8750);
    }

    #[test]
    fn partial_file_keeps_defaults_and_refuses_typos() {
        let config: Config = toml::from_str("[limits]\nmax_batch_events = 5\n").unwrap();
        assert_eq!(config.limits.max_batch_events, 5);
        assert_eq!(config.log.shards, 4);
        let typo = toml::from_str::<Config>("[limits]\nmax_batch_event = 5\n");
        assert!(typo.unwrap_err().to_string().contains("max_batch_event"));
        let search: Config =
            toml::from_str("[search]\nenabled = false\ncommit_interval_ms = 250\n").unwrap();
        assert!(!search.search.enabled);
        assert_eq!(search.search.commit_interval_ms, 250);
        assert!(Config::default().search.enabled);
        let zero: Config = toml::from_str("[search]\ncommit_interval_ms = 0\n").unwrap();
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .contains("commit_interval_ms")
        );
    }

    #[test]
    fn graphite_is_off_by_default_and_checked_when_on() {
        assert!(!Config::default().graphite.enabled);
        let on: Config = toml::from_str(
            "[graphite]\nenabled = true\nlisten = \"127.0.0.1:2103\"\ntenant = \"acme\"\n",
        )
        .unwrap();
        on.validate().unwrap();
        assert_eq!(on.graphite.listen.port(), 2103);
        assert_eq!(on.graphite.tenant, "acme");
        let bad: Config =
            toml::from_str("[graphite]\nenabled = true\nmax_line_bytes = 0\n").unwrap();
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("max_line_bytes"), "{error}");
        let typo = toml::from_str::<Config>("[graphite]\nenable = true\n");
        assert!(typo.unwrap_err().to_string().contains("enable"));
    }

    #[test]
    fn tables_sync_interval_is_read_and_bounded() {
        assert_eq!(
            Config::default().storage.tables_sync_interval(),
            std::time::Duration::from_secs(1)
        );
        let every: Config = toml::from_str(
            "[storage]
tables_sync_interval_ms = 0
",
        )
        .unwrap();
        every.validate().unwrap();
        assert!(every.storage.tables_sync_interval().is_zero());
        let long: Config = toml::from_str(
            "[storage]
tables_sync_interval_ms = 60001
",
        )
        .unwrap();
        let error = long.validate().unwrap_err().to_string();
        assert!(error.contains("tables_sync_interval_ms"), "{error}");
    }

    #[test]
    fn split_roles_need_the_aws_backend() {
        let embedded: Config = toml::from_str("roles = [\"query\"]\n").unwrap();
        let error = embedded.validate().unwrap_err().to_string();
        assert!(error.contains("roles"), "{error}");
        let aws: Config = toml::from_str(
            "roles = [\"projector\"]\n[storage]\nbackend = \"aws\"\n[aws]\nstream_name = \"s\"\ntable_prefix = \"shoal-test\"\n",
        )
        .unwrap();
        aws.validate().unwrap();
        assert!(aws.has(Role::Projector) && !aws.has(Role::Ingest));
        let bad: Config = toml::from_str(
            "[storage]\nbackend = \"aws\"\n[aws]\nlease_duration_ms = 1000\nlease_renew_ms = 900\n",
        )
        .unwrap();
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("renew_interval"), "{error}");
    }

    #[test]
    fn the_aws_backend_refuses_events_larger_than_an_item() {
        let aws = |bytes: usize| {
            toml::from_str::<Config>(&format!(
                "[storage]\nbackend = \"aws\"\n[limits]\nmax_event_bytes = {bytes}\n"
            ))
            .unwrap()
        };
        aws(AWS_MAX_EVENT_BYTES).validate().unwrap();
        let error = aws(500_000).validate().unwrap_err().to_string();
        assert!(error.contains("limits.max_event_bytes"), "{error}");
        let embedded: Config = toml::from_str("[limits]\nmax_event_bytes = 500000\n").unwrap();
        embedded.validate().unwrap();
    }
}
