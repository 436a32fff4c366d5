//! The command line. Parsing and range checks live here, so a bad argument is a clean clap
//! message before anything starts.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "shoal-bench", version, about = "Load generators for Shoal")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Durable ingest: POST batches of events over keep-alive connections for a bounded time.
    Ingest(IngestArgs),
    /// The disk's fdatasync latency, appending vs overwriting a pre-zeroed file.
    Fsync(FsyncArgs),
    /// Single-event durable appends straight into an embedded log in this process (no HTTP).
    LogAppend(LogAppendArgs),
    /// The search index in-process: indexing rate, query latency, new-event-searchable latency.
    Search(SearchArgs),
    /// The read side over HTTP: query latency per shape, and ingest→queryable under load.
    Query(QueryArgs),
    /// Shoal side by side with PostgreSQL, VictoriaMetrics, carbon and tantivy on one data set
    /// (run through `bench/compare.sh`, which installs and starts PostgreSQL).
    Compare(CompareArgs),
    /// Writes the comparison data set in every format (native JSON, Segment, line protocol,
    /// Prometheus text, Graphite plaintext, CSV).
    Dataset(DatasetArgs),
    /// The projector alone, in this process: the data set's log (made once, kept in `--dir`)
    /// replayed into fresh embedded tables, timed per round.
    Reproject(ReprojectArgs),
    /// The data set's metric points projected into a fresh table file: bytes per point per item
    /// kind, redb's pages, the file before and after compaction.
    SeriesBytes(crate::series_bytes::SeriesBytesArgs),
}

/// The comparison data set's size and seed.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Customers (accounts), each with traits and 1–20 users.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(10..=10_000_000))]
    pub customers: u32,
    /// Track events over the last 30 days (plus one identify per customer).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1_000..=100_000_000))]
    pub events: u64,
    /// Metric series (`cpu{host=hNNNN}`).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub series: u32,
    /// Points per series, one a minute (1440 = one day).
    #[arg(long, default_value_t = 1440, value_parser = clap::value_parser!(u32).range(2..=1440))]
    pub points: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args, Debug, Clone)]
pub struct ReprojectArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Work directory: the log is kept in `<dir>/log` for the next run; each round's tables go
    /// to a temporary directory beside it.
    #[arg(long)]
    pub dir: PathBuf,
    /// Replays, each into fresh tables; figures are medians over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Events a projector worker reads and folds into one flush.
    #[arg(long, default_value_t = shoal_projector::DEFAULT_BATCH_EVENTS, value_parser = clap::value_parser!(usize))]
    pub batch_events: usize,
    /// The projections replayed, comma-separated.
    #[arg(long, default_value = "archive,series,entities")]
    pub projections: String,
    /// Commit every projector flush durably (fsync), as before relaxed flushes: the A/B baseline.
    #[arg(long)]
    pub durable_flushes: bool,
    /// How far behind its head a worker must be to fold several reads into one flush. The
    /// bench's log is appended in seconds, so its events look recent: 0 replays it as the
    /// history of a real rebuild (days behind) is replayed.
    #[arg(long, default_value_t = shoal_projector::DEFAULT_FOLD_AHEAD_LAG.as_millis() as u64)]
    pub fold_ahead_lag_ms: u64,
    /// Items a folded-ahead batch may hold before it flushes (0: never fold ahead).
    #[arg(long, default_value_t = shoal_projector::DEFAULT_FOLD_AHEAD_ITEMS)]
    pub fold_ahead_items: usize,
    /// Longest a worker folds ahead before it flushes, in milliseconds.
    #[arg(long, default_value_t = shoal_projector::DEFAULT_FOLD_AHEAD_TIME.as_millis() as u64)]
    pub fold_ahead_time_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct DatasetArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Directory the files go to (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The `shoal` release binary, started on a fresh temporary data directory each round.
    #[arg(long, value_name = "PATH/TO/SHOAL")]
    pub spawn: PathBuf,
    /// A TOML config file passed to Shoal as `--config`.
    #[arg(long)]
    pub server_config: Option<PathBuf>,
    /// libpq-style connection string of a running PostgreSQL (its tables `events`,
    /// `customers`, `points` and the aggregates are dropped and made again each round).
    #[arg(long)]
    pub postgres: Option<String>,
    /// The postmaster's pid, to count PostgreSQL's CPU time.
    #[arg(long)]
    pub postgres_pid: Option<u32>,
    #[arg(long, default_value = "victoria-metrics")]
    pub victoria_metrics: PathBuf,
    #[arg(long, default_value = "carbon-cache")]
    pub carbon: PathBuf,
    /// Systems to run, comma-separated: shoal, postgres, victoria, carbon, tantivy.
    #[arg(long, default_value = "shoal,postgres,victoria,carbon,tantivy")]
    pub systems: String,
    /// Rounds; figures are medians over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
    /// Concurrent connections loading batches.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub connections: u32,
    /// Records per load request (or per COPY).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Timed requests per query shape (the two aggregates get a fifth of it, at least 20).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub queries: u32,
    /// Ingest→queryable probes per system.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub fresh_samples: u32,
    /// Measured seconds of single-event requests.
    #[arg(long, default_value = "5", value_parser = seconds)]
    pub single_duration: Duration,
    /// Where temporary directories go.
    #[arg(long, default_value = "/tmp")]
    pub dir: PathBuf,
    /// Also write the data set's files here.
    #[arg(long)]
    pub write_files: Option<PathBuf>,
    /// Write every figure of every round as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl CompareArgs {
    pub fn wants(&self, system: &str) -> bool {
        self.systems.split(',').any(|name| name.trim() == system)
    }

    /// Requests per aggregate shape: they scan much more, so fewer.
    pub fn aggregate_queries(&self) -> u32 {
        (self.queries / 5).max(20)
    }
}

#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The `shoal` binary to start on a fresh temporary data directory.
    #[arg(long, value_name = "PATH/TO/SHOAL")]
    pub spawn: PathBuf,
    /// A TOML config file passed to the server as `--config`.
    #[arg(long)]
    pub server_config: Option<PathBuf>,
    /// Customers loaded.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub entities: u32,
    /// Events per customer.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub events_per_entity: u32,
    /// Metric series loaded (one day at one point a minute each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub series: u32,
    /// Days of history before the measured day, at one point every 30 minutes per series (two
    /// per hourly slot): the rollup items a month-old series' queries read hold this much
    /// besides the day asked for.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=400))]
    pub history_days: u32,
    /// Requests timed per query shape.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub queries: u32,
    /// Write→readable probes.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub fresh_samples: u32,
    /// Connections sending batches during the probes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub load_connections: u32,
    /// Background events per second, over all load connections.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub load_rate: u32,
    /// Events per background batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub load_batch: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Profile the server during each query shape with `perf record` (cpu-clock, DWARF call
    /// graphs) into `<DIR>/<shape>.perf.data`.
    #[arg(long, value_name = "DIR")]
    pub profile_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct SearchArgs {
    /// Events to index (generated: 10 tenants, 1000 entities each, 4 words of text apiece).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1_000..=100_000_000))]
    pub events: u64,
    /// Where the index is built (a temporary directory under it, removed afterwards).
    #[arg(long, default_value = "/tmp")]
    pub dir: PathBuf,
    /// tantivy indexing threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub threads: u32,
    /// Queries timed per query shape.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub queries: u32,
    /// New events whose time to searchable is measured.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub fresh_samples: u32,
    /// Keep the index in this directory: built there when it holds none, otherwise reused
    /// as it is (no indexing figures), so that query changes can be timed on one big index.
    #[arg(long)]
    pub index: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct LogAppendArgs {
    /// Directory on the file system to test (a temporary log is made and removed there).
    #[arg(long, default_value = "/tmp")]
    pub dir: PathBuf,
    /// Concurrent appenders, each in a closed loop of one-event appends.
    #[arg(long, default_value_t = 64)]
    pub appenders: usize,
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// The log's `preallocate_bytes`, in KiB (0: grow the file with every commit).
    #[arg(long, default_value_t = 8192)]
    pub preallocate_kib: u64,
    /// The log's `group_commit_linger`, in µs (0: commit at once).
    #[arg(long, default_value_t = 150)]
    pub linger_micros: u64,
}

#[derive(Args, Debug, Clone)]
pub struct FsyncArgs {
    /// Directory on the file system to test (a temporary file is made and removed there).
    #[arg(long, default_value = "/tmp")]
    pub dir: PathBuf,
    /// Writes (each followed by fdatasync) per mode.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// Bytes per write.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    pub bytes: u32,
}

#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    /// Base URL of a running server, e.g. http://127.0.0.1:8750 (instead of --spawn).
    #[arg(long, required_unless_present = "spawn", conflicts_with = "spawn")]
    pub url: Option<String>,
    /// Write key of the running server (with --url; ignored with --spawn).
    #[arg(
        long,
        env = "SHOAL_WRITE_KEY",
        requires = "url",
        hide_env_values = true
    )]
    pub key: Option<String>,
    /// Start this `shoal` binary on a fresh temporary data directory and a free 127.0.0.1 port
    /// for every run, and measure its log bytes per event and peak RSS.
    #[arg(long, value_name = "PATH/TO/SHOAL")]
    pub spawn: Option<PathBuf>,
    /// A TOML config file passed to the spawned server as `--config`.
    #[arg(long, requires = "spawn")]
    pub server_config: Option<PathBuf>,
    /// With --url: the server's data directory, to report log bytes per event.
    #[arg(long, requires = "url")]
    pub data_dir: Option<PathBuf>,
    /// Keep the spawned server's data directory (its path is printed).
    #[arg(long, requires = "spawn")]
    pub keep_data: bool,

    /// Concurrent keep-alive HTTP/1.1 connections.
    #[arg(long, short = 'c', default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,
    /// Events per request.
    #[arg(long, short = 'b', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Measured seconds (after the warm-up).
    #[arg(long, short = 'd', default_value = "10", value_parser = seconds)]
    pub duration: Duration,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value = "2", value_parser = seconds)]
    pub warmup: Duration,
    /// Open loop: send this many events per second over all connections, each request on a
    /// fixed schedule whatever the answers, and time each from its scheduled start (so a
    /// stalled server shows as latency, not as fewer requests). 0 = closed loop, as fast as
    /// the answers come.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub rate: u32,
    /// Approximate size of one event's JSON text.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(120..=32_768))]
    pub event_bytes: u32,
    /// Distinct customers the events are spread over (skewed: a few are much busier).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub entities: u32,
    /// Give every event a fresh client id (as SDKs send `messageId`), so the server's dedup
    /// window does real work; without it the server assigns ids.
    #[arg(long)]
    pub client_ids: bool,
    /// With --url: the server's process id, to report its CPU time and peak RSS.
    #[arg(long, requires = "url")]
    pub server_pid: Option<u32>,
    /// Seed of the workload; the same seed gives the same request bodies.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Threads of the load generator's runtime (it shares the machine with the server).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Give up on a request after this many seconds.
    #[arg(long, default_value = "30", value_parser = seconds)]
    pub request_timeout: Duration,
    /// Runs to make; with --spawn each on a fresh server. Medians are reported when > 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Also print each run and the medians as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// A positive number of seconds, fractions allowed, at most a day.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(value.is_finite() && (0.0..=86_400.0).contains(&value)) {
        return Err(format!("`{text}` must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_fractions_and_refuse_nonsense() {
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        assert!(seconds("-1").is_err());
        assert!(seconds("ten").is_err());
        assert!(seconds("inf").is_err());
    }

    #[test]
    fn url_or_spawn_is_required() {
        assert!(Cli::try_parse_from(["shoal-bench", "ingest"]).is_err());
        assert!(
            Cli::try_parse_from(["shoal-bench", "ingest", "--spawn", "x", "--url", "http://a"])
                .is_err()
        );
        let parsed = Cli::try_parse_from(["shoal-bench", "ingest", "--spawn", "target/shoal"]);
        assert!(parsed.is_ok());
        assert!(
            Cli::try_parse_from([
                "shoal-bench",
                "ingest",
                "--spawn",
                "x",
                "--connections",
                "0"
            ])
            .is_err()
        );
    }
}
