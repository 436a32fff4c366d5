//! Peers started as child processes on 127.0.0.1, each with a temporary directory, stopped
//! (SIGTERM, then SIGKILL) when done or when dropped, so an error never leaves one running.

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Peer {
    pub name: &'static str,
    child: Child,
    /// Deleted when dropped.
    pub dir: tempfile::TempDir,
}

impl Peer {
    /// Starts `command` (its stdout and stderr go to `<dir>/output.log`).
    pub fn start(name: &'static str, mut command: Command, dir: tempfile::TempDir) -> Result<Peer> {
        let log = std::fs::File::create(dir.path().join("output.log"))?;
        // SAFETY: `prctl` is async-signal-safe, as `pre_exec` requires. It asks the kernel to
        // SIGTERM the peer when this thread dies, so a killed bench (Ctrl-C) leaves no peer
        // running; peers are started from the main thread, which lives as long as the run.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Peer { name, child, dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the peer's output, for an error message.
    pub fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("output.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Fails unless the process is still running.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.name, self.output_tail());
        }
        Ok(())
    }

    /// SIGTERM (graceful: VictoriaMetrics flushes its buffers), then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free loopback port (bound, read, released; a race with another process taking it in
/// between is possible but harmless here: the peer then fails to start and the run says so).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `ready` answers true, or fails after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut ready: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if ready().await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("{what}: not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A temporary directory for a peer's data under `parent`.
pub fn temp_dir(parent: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .with_context(|| format!("creating a directory under {}", parent.display()))
}
