//! Graphite carbon's side: `carbon-cache` with whisper files, the store the original design
//! replaced. Its defaults throttle writes to 500 updates/s and 50 file creations a minute;
//! here `MAX_UPDATES_PER_SECOND`, `MAX_CREATES_PER_MINUTE` and `MAX_CACHE_SIZE` are `inf`, so
//! the comparison is with carbon at full speed. Retention `60s:4d` (one archive: the day, two days back, fits); tags off
//! (`ENABLE_TAGS = False`: they would need graphite-web).
//!
//! Carbon acknowledges nothing: the plaintext protocol is lines over TCP. So ingest is timed
//! until the points are in the whisper files (the last point of every series readable on
//! disk), and ingest→queryable until a new point of an existing series is in its file. Whisper does not fsync
//! (`WHISPER_AUTOFLUSH = False`, the default). Queries would go through graphite-web, which is
//! not part of this comparison; carbon's figures are ingest, freshness and bytes.

use super::figures::{Figure, Figures, System};
use super::probe_name;
use super::process::{Peer, free_port, temp_dir, wait_until};
use crate::cli::CompareArgs;
use crate::dataset::{Dataset, MINUTE, formats};
use crate::procfs;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn config(dir: &Path, line_port: u16, pickle_port: u16, query_port: u16) -> String {
    let root = dir.display();
    format!(
        "[cache]
STORAGE_DIR = {root}/storage/
LOCAL_DATA_DIR = {root}/storage/whisper/
WHITELISTS_DIR = {root}/storage/lists/
CONF_DIR = {root}/conf/
LOG_DIR = {root}/log/
PID_DIR = {root}/run/
ENABLE_LOGROTATION = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line_port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle_port}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query_port}
LOG_LISTENER_CONNECTIONS = False
LOG_UPDATES = False
LOG_CREATES = False
WHISPER_AUTOFLUSH = False
WHISPER_FALLOCATE_CREATE = True
CARBON_METRIC_INTERVAL = 0
ENABLE_TAGS = False
"
    )
}

pub async fn round(
    args: &CompareArgs,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
) -> Result<Duration> {
    let dir = temp_dir(&args.dir, "carbon-")?;
    for sub in ["conf", "log", "run", "storage/whisper", "storage/lists"] {
        std::fs::create_dir_all(dir.path().join(sub))?;
    }
    let line_port = free_port()?;
    let conf = dir.path().join("conf");
    std::fs::write(
        conf.join("carbon.conf"),
        config(dir.path(), line_port, free_port()?, free_port()?),
    )?;
    std::fs::write(
        conf.join("storage-schemas.conf"),
        "[default]\npattern = .*\nretentions = 60s:4d\n",
    )?;
    let mut command = Command::new(&args.carbon);
    command
        .arg(format!("--config={}", conf.join("carbon.conf").display()))
        .arg(format!(
            "--pidfile={}",
            dir.path().join("run/carbon.pid").display()
        ))
        .arg("--nodaemon")
        .arg("start");
    let mut peer = Peer::start("carbon-cache", command, dir)?;
    let address = format!("127.0.0.1:{line_port}");
    let listening = wait_until("carbon-cache", Duration::from_secs(30), || {
        let address = &address;
        async move { TcpStream::connect(address).await.is_ok() }
    })
    .await;
    if listening.is_err() {
        peer.check_alive()?;
        bail!("carbon-cache is not listening:\n{}", peer.output_tail());
    }
    let pid = peer.pid();
    let whisper = peer.path().join("storage/whisper");
    let outcome = measure(args, data, round, figures, &address, &whisper).await;
    let cpu = procfs::cpu_time(Some(pid)).unwrap_or_default();
    if let Some(peak) = procfs::proc_status_bytes(pid, "VmHWM") {
        figures.record(Figure::PeakRss, System::Carbon, round, peak as f64 / 1e6);
    }
    if outcome.is_err() {
        eprintln!("carbon output:\n{}", peer.output_tail());
    }
    peer.stop(Duration::from_secs(10))?;
    outcome?;
    Ok(cpu)
}

async fn measure(
    args: &CompareArgs,
    data: &Dataset,
    round: u32,
    figures: &mut Figures,
    address: &str,
    whisper: &Path,
) -> Result<()> {
    let chunks: Vec<bytes::Bytes> = data
        .points
        .chunks(args.batch as usize)
        .map(|part| {
            let mut text = String::new();
            for point in part {
                formats::graphite(point, &mut text);
            }
            bytes::Bytes::from(text)
        })
        .collect();
    let chunks = Arc::new(chunks);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (chunks, next, address) = (Arc::clone(&chunks), Arc::clone(&next), address.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&address).await?;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(index) else {
                    break;
                };
                stream.write_all(chunk).await?;
            }
            stream.shutdown().await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let sent = started.elapsed().as_secs_f64();
    // On disk when the last point of every series is in its whisper file.
    let last = data.spec.metrics_day + i64::from(data.spec.points.saturating_sub(1)) * MINUTE;
    let files: Vec<PathBuf> = (0..data.spec.series)
        .map(|series| whisper_path(whisper, &["servers", &Dataset::series_name(series), "cpu"]))
        .collect();
    let mut pending: Vec<PathBuf> = files;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !pending.is_empty() {
        pending.retain(|file| !matches!(point_at(file, last / 1000), Ok(Some(_))));
        if Instant::now() > deadline {
            bail!(
                "{} series' last points were not in whisper within 30 minutes",
                pending.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on_disk = started.elapsed().as_secs_f64();
    let points = data.points.len() as f64;
    figures.record(
        Figure::IngestPoints,
        System::Carbon,
        round,
        points / on_disk,
    );
    figures.record(
        Figure::IngestEvents,
        System::Carbon,
        round,
        points / on_disk,
    );
    figures.series_sizes(
        System::Carbon,
        round,
        procfs::dir_sizes(whisper)?,
        data.points.len(),
    );
    println!(
        "carbon: {} points sent in {sent:.1} s ({:.0}/s, unacknowledged), in whisper after {on_disk:.1} s ({:.0}/s)",
        data.points.len(),
        points / sent,
        points / on_disk
    );

    // One connection kept open, as an agent keeps it; one series, created before the timed
    // probes (a new point of an existing series is the common case). Timed by hand because
    // each probe writes to the connection (the shared timing loop cannot lend it out).
    let mut stream = TcpStream::connect(address).await?;
    let name = format!("probe-{}", probe_name(round, 0));
    let file = whisper_path(whisper, &["servers", "fresh", &name]);
    let mut fresh = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for sample in 0..=args.fresh_samples {
        let now = chrono::Utc::now().timestamp();
        let value = f64::from(sample + 1);
        let started = Instant::now();
        stream
            .write_all(format!("servers.fresh.{name} {value} {now}\n").as_bytes())
            .await?;
        while !matches!(point_at(&file, now), Ok(Some(found)) if found == value) {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("probe {sample} not in whisper within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Sample 0 creates the series.
        if sample > 0 {
            fresh.saturating_record((started.elapsed().as_micros() as u64).max(1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    figures.latency(
        Figure::FreshP50,
        Figure::FreshP99,
        System::Carbon,
        round,
        &fresh,
    );
    println!(
        "carbon: fresh p50 {:.1} ms p99 {:.1} ms",
        super::figures::ms(&fresh, 0.5),
        super::figures::ms(&fresh, 0.99)
    );
    Ok(())
}

fn whisper_path(root: &Path, parts: &[&str]) -> PathBuf {
    let mut path = root.to_owned();
    for part in parts {
        path.push(part);
    }
    path.set_extension("wsp");
    path
}

/// The value the first archive of a whisper file holds for `second` (whisper stores the
/// interval's start), if any. The format: a 16-byte header (aggregation, max retention,
/// x-files factor, archive count), 12 bytes per archive (offset, seconds per point, points),
/// then each archive's points as (u32 timestamp, f64 value), big-endian.
fn point_at(file: &Path, second: i64) -> Result<Option<f64>> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", file.display())),
    };
    let word = |at: usize| -> Option<u32> {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let (Some(offset), Some(step), Some(count)) = (word(16), word(20), word(24)) else {
        return Ok(None);
    };
    let wanted = second - second.rem_euclid(i64::from(step.max(1)));
    let start = offset as usize;
    Ok((0..count as usize).find_map(|slot| {
        let at = start + slot * 12;
        if word(at).is_some_and(|timestamp| i64::from(timestamp) == wanted) {
            let raw: [u8; 8] = bytes.get(at + 4..at + 12)?.try_into().ok()?;
            Some(f64::from_be_bytes(raw))
        } else {
            None
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_whisper_archive() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.wsp");
        let mut bytes = Vec::new();
        for word in [1u32, 120, 0, 1, 28, 60, 2] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        for (timestamp, value) in [(600u32, 1.5f64), (660, 2.0)] {
            bytes.extend_from_slice(&timestamp.to_be_bytes());
            bytes.extend_from_slice(&value.to_be_bytes());
        }
        std::fs::write(&file, bytes).unwrap();
        assert_eq!(point_at(&file, 630).unwrap(), Some(1.5));
        assert_eq!(point_at(&file, 660).unwrap(), Some(2.0));
        assert_eq!(point_at(&file, 720).unwrap(), None);
        assert_eq!(point_at(&dir.path().join("none.wsp"), 600).unwrap(), None);
    }
}
