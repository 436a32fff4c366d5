//! Helpers for the end-to-end tests: start the real `shoal` binary on 127.0.0.1 with a fresh
//! data directory, find its port and credentials, kill or stop it, and read its log back.
//!
//! The binary is `$SHOAL_BIN` when set, else `target/debug/shoal` of this workspace (the
//! README's test command builds it first). A missing binary fails the test loudly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use shoal_schemas::Event;
use shoal_storage::EventLog;
use shoal_storage::embedded::{EmbeddedLog, LogConfig};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub fn shoal_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOAL_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug/shoal");
    assert!(
        path.exists(),
        "the shoal binary is missing at {} — build it with `cargo build -p shoal` (scripts/test.sh does) or set SHOAL_BIN",
        path.display()
    );
    path
}

/// The first-start credentials the server wrote into its data directory.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub write_key: String,
    pub read_key: String,
    pub admin_token: String,
}

/// A running `shoal serve`.
pub struct Shoal {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    /// The Graphite listener's `host:port`, when the config enabled it.
    pub graphite: Option<String>,
}

impl Shoal {
    /// Starts the binary on a free loopback port with `data_dir`, and a config file with
    /// `config_toml` when given.
    pub fn start(data_dir: &Path, config_toml: Option<&str>) -> Shoal {
        Shoal::start_with_env(data_dir, config_toml, &[])
    }

    /// [`Shoal::start`] with extra environment variables (e.g. the test-only fault hook).
    pub fn start_with_env(
        data_dir: &Path,
        config_toml: Option<&str>,
        env: &[(&str, &str)],
    ) -> Shoal {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let mut command = Command::new(shoal_bin());
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("SHOAL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command.envs(env.iter().copied());
        if let Some(text) = config_toml {
            let path = data_dir.join("test-config.toml");
            std::fs::write(&path, text).expect("write config");
            command.arg("--config").arg(path);
        }
        let mut child = command.spawn().expect("spawn shoal");
        let stdout = child.stdout.take().expect("stdout");
        // (the HTTP address, the Graphite address printed before it if any)
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut graphite = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("shoal: graphite listening on ") {
                    graphite = Some(address.to_owned());
                } else if let Some(address) = line.strip_prefix("shoal: listening on ") {
                    let _ = sender.send((address.to_owned(), graphite.take()));
                }
            }
        });
        let (base, graphite) = match receiver.recv_timeout(START_TIMEOUT) {
            Ok(addresses) => addresses,
            Err(_) => {
                let _ = child.kill();
                panic!("shoal did not start listening within {START_TIMEOUT:?}");
            }
        };
        Shoal {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
            graphite,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn credentials(&self) -> Credentials {
        let text = std::fs::read_to_string(self.data_dir.join("credentials.json"))
            .expect("credentials.json");
        let json: serde_json::Value = serde_json::from_str(&text).expect("credentials json");
        let field = |name: &str| json[name].as_str().expect(name).to_owned();
        Credentials {
            write_key: field("write_key"),
            read_key: field("read_key"),
            admin_token: field("admin_token"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        // SAFETY: sending a signal to our own child process, whose pid is valid until waited.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Shoal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client with bounded timeouts, for loopback tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// A config that turns the end-to-end canary off, for tests that check exact totals over
/// every event the projections applied (the canary's events count there too).
pub const NO_CANARY: &str = "[canary]\nenabled = false\n";

/// Every client event in a stopped server's log, shard by shard, in log order: the canary's
/// synthetic events (tenant `_canary`) are left out.
pub async fn read_log(data_dir: &Path) -> Vec<Event> {
    let log = EmbeddedLog::open(LogConfig::new(data_dir.join("log"))).expect("open log");
    let mut events = Vec::new();
    for shard in log.shards().await.expect("shards") {
        let mut after = None;
        loop {
            let batch = log
                .read(&shard.id, after.as_ref(), 10_000)
                .await
                .expect("read log");
            if batch.records.is_empty() {
                break;
            }
            for record in &batch.records {
                events.extend(
                    record
                        .events
                        .iter()
                        .filter(|event| event.tenant != "_canary")
                        .cloned(),
                );
            }
            after = batch.last_position();
        }
    }
    log.shutdown().await;
    events
}

/// GETs `path` with `key` and returns the status and JSON body.
pub async fn get_json(
    shoal: &Shoal,
    path: &str,
    key: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = client()
        .get(shoal.url(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// The points of the one series `GET /v1/series?{query}` finds between `from` and `to` (epoch
/// ms), at a 1-minute step with the last value of each minute.
pub async fn series_points(
    shoal: &Shoal,
    read_key: &str,
    query: &str,
    from: i64,
    to: i64,
) -> serde_json::Value {
    let path = format!("/v1/series?{query}&from={from}&to={to}&step=1m&agg=last");
    let (status, body) = get_json(shoal, &path, read_key).await;
    assert!(status.is_success(), "{body}");
    assert_eq!(body["series"].as_array().map(Vec::len), Some(1), "{body}");
    body["series"][0]["points"].clone()
}

/// Waits (bounded) until every projection has applied everything in the log: each shard's
/// lag is zero records. Panics with the last status when it does not happen in time.
pub async fn wait_caught_up(shoal: &Shoal, read_key: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (status, body) = get_json(shoal, "/v1/projections", read_key).await;
        let caught_up = status.is_success()
            && body["projections"].as_array().is_some_and(|projections| {
                projections.iter().all(|projection| {
                    projection["shards"].as_array().is_some_and(|shards| {
                        shards
                            .iter()
                            .all(|shard| shard["lag_records"].as_u64() == Some(0))
                    })
                })
            });
        if caught_up {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projections did not catch up within {timeout:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The samples of one scrape of `/metrics`.
pub async fn scrape(shoal: &Shoal) -> prometheus_parse::Scrape {
    let response = client()
        .get(shoal.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let text = response.text().await.expect("metrics text");
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .expect("/metrics is valid Prometheus text")
}

/// The value of the sample `name` whose labels include `labels` (0 when absent).
pub fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, want)| sample.labels.get(key) == Some(*want))
        })
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map(|bucket| bucket.count).unwrap_or(0.0)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}
