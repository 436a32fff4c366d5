//! Starting a release `shoal` for a run, and measuring it from outside: peak RSS, CPU time, and
//! the size of its log directory.
//!
//! The server gets a fresh temporary data directory and `--listen 127.0.0.1:0`; its address is
//! read from the `shoal: listening on http://ADDR` line it prints, and its write key from
//! `<data-dir>/credentials.json`, so there is no port race and no manual setup. Dropping a
//! [`SpawnedServer`] kills the process (SIGKILL) if [`SpawnedServer::stop`] was not called, so
//! an error anywhere never leaves a server running.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop (SIGTERM) may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct SpawnedServer {
    child: Child,
    /// The temporary directory holding the data directory and `server.log`.
    root: PathBuf,
    /// Deletes `root` when dropped; `None` once kept.
    cleanup: Option<tempfile::TempDir>,
    pub url: String,
    pub write_key: String,
}

impl SpawnedServer {
    /// Starts `binary` on a fresh data directory (server logs go to `server.log` beside it).
    pub fn start(binary: &Path, config: Option<&Path>) -> Result<SpawnedServer> {
        let data_dir = tempfile::Builder::new()
            .prefix("shoal-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        let log_path = data_dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("SHOAL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        // SAFETY: `prctl` is async-signal-safe, as `pre_exec` requires. The kernel SIGTERMs the
        // server when the thread that started it dies, so a bench killed by Ctrl-C leaves no
        // server running (servers are started from the main thread).
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let Some(stdout) = child.stdout.take() else {
            bail!("the server's stdout was not captured");
        };
        let mut server = SpawnedServer {
            child,
            root: data_dir.path().to_owned(),
            cleanup: Some(data_dir),
            url: String::new(),
            write_key: String::new(),
        };
        server.url = wait_for_address(stdout, &mut server.child, &log_path)?;
        server.write_key = read_write_key(&server.data_path().join("credentials.json"))?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's `--data-dir`.
    pub fn data_path(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period) and reaps it.
    pub fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our own unreaped child,
        // so it cannot have been recycled for another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("shoal-bench: the server ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Keeps the temporary directory (data and `server.log`) after this value is dropped;
    /// returns its path.
    pub fn keep_data(&mut self) -> PathBuf {
        if let Some(dir) = self.cleanup.take() {
            let _kept = dir.keep();
        }
        self.root.clone()
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads stdout lines until the address line, on a helper thread so a silent server times out.
fn wait_for_address(
    stdout: std::process::ChildStdout,
    child: &mut Child,
    log: &Path,
) -> Result<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("shoal: listening on ") {
                let _ = sender.send(url.trim().to_owned());
            }
            // Keep draining so the server never blocks on a full pipe.
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(url) => return Ok(url),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!(
                    "the server closed stdout without printing its address; its log:\n{}",
                    log_head(log)
                )
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the server exited ({status}) before listening; its log:\n{}",
                log_head(log)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the server printed no address within {START_TIMEOUT:?}; its log:\n{}",
                log_head(log)
            );
        }
    }
}

/// The first lines of the server's log (where a startup error is), for an error message: the
/// file goes with the temporary directory.
fn log_head(log: &Path) -> String {
    const LINES: usize = 12;
    match std::fs::read_to_string(log) {
        Ok(text) => text.lines().take(LINES).collect::<Vec<_>>().join("\n"),
        Err(error) => format!("(cannot read {}: {error})", log.display()),
    }
}

fn read_write_key(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    value
        .get("write_key")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{} has no write_key", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_write_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        std::fs::write(&path, r#"{"write_key":"w1","read_key":"r1"}"#).unwrap();
        assert_eq!(read_write_key(&path).unwrap(), "w1");
        std::fs::write(&path, "{}").unwrap();
        assert!(read_write_key(&path).is_err());
    }
}
