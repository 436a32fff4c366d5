//! The log's metadata file, `dir/log-meta.json`: what is fixed when a log is created.
//!
//! The shard count decides which shard holds each entity's history (`keys::shard_of`), so a log
//! opened with another count would scatter new events of an entity away from its old ones.
//! Invariants: the file is written once, atomically (temporary file, fsync, rename, fsync of the
//! directory), before any shard directory exists; a log directory holding shards but no
//! metadata is refused rather than guessed at.
//!
//! Also here: the directory lock (`dir/log.lock`, an advisory `flock`), held from open until
//! the last writer thread has ended, so two processes (or two opens in one process) never
//! append to the same shard files.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// File name of the lock inside the log directory.
pub const LOCK_FILE: &str = "log.lock";
/// How long open waits for the lock: a log dropped just before may still be finishing its
/// queued appends.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// File name of the metadata inside the log directory.
pub const META_FILE: &str = "log-meta.json";
/// The on-disk layout this build writes and reads (segment naming, frame and block format 1).
pub const LAYOUT_VERSION: u32 = 1;

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LogMeta {
    layout: u32,
    shard_count: u32,
}

/// Checks the persisted shard count against `shard_count`, or records it for a new log.
pub fn load_or_create(dir: &Path, shard_count: u32) -> Result<()> {
    let path = dir.join(META_FILE);
    match fs::read(&path) {
        Ok(bytes) => check(&path, &bytes, shard_count),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            refuse_orphan_shards(dir)?;
            create(dir, shard_count)
        }
        Err(error) => Err(error.into()),
    }
}

fn check(path: &Path, bytes: &[u8], shard_count: u32) -> Result<()> {
    let meta: LogMeta = serde_json::from_slice(bytes).map_err(|error| Error::Corrupt {
        location: path.display().to_string(),
        detail: error.to_string(),
    })?;
    if meta.layout != LAYOUT_VERSION {
        return Err(Error::Corrupt {
            location: path.display().to_string(),
            detail: format!(
                "log layout {} is not supported by this build (it reads {LAYOUT_VERSION})",
                meta.layout
            ),
        });
    }
    if meta.shard_count != shard_count {
        return Err(Error::InvalidArgument(format!(
            "the log in {} was created with {} shards and cannot be opened with {shard_count}: \
             the shard count decides where each entity's history lives",
            path.parent().unwrap_or(path).display(),
            meta.shard_count
        )));
    }
    Ok(())
}

fn refuse_orphan_shards(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if name.to_string_lossy().starts_with("shard-") {
            return Err(Error::Corrupt {
                location: dir.display().to_string(),
                detail: format!("shard directories exist but {META_FILE} is missing"),
            });
        }
    }
    Ok(())
}

fn create(dir: &Path, shard_count: u32) -> Result<()> {
    let meta = LogMeta {
        layout: LAYOUT_VERSION,
        shard_count,
    };
    let text = serde_json::to_vec_pretty(&meta)
        .map_err(|error| Error::Backend(format!("cannot encode log metadata: {error}")))?;
    let temporary = dir.join(format!("{META_FILE}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    file.write_all(&text)?;
    file.sync_all()?;
    fs::rename(&temporary, dir.join(META_FILE))?;
    sync_dir(dir)?;
    Ok(())
}

/// Takes the exclusive lock of the log directory; it is released when the returned file (and
/// every clone of the `Arc`) is dropped.
pub fn lock(dir: &Path) -> Result<Arc<File>> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Arc::new(file)),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Backend(format!(
                    "the log in {} is in use (by another process, or another open log in this \
                     one): {} is locked",
                    dir.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error.into()),
        }
    }
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_is_refused_with_both_counts() {
        let bytes = br#"{"layout":1,"shard_count":4}"#;
        let path = Path::new("/log/log-meta.json");
        check(path, bytes, 4).unwrap();
        let message = check(path, bytes, 8).unwrap_err().to_string();
        assert!(
            message.contains("4 shards") && message.contains("with 8"),
            "{message}"
        );
    }

    #[test]
    fn unknown_layout_is_refused() {
        let bytes = br#"{"layout":2,"shard_count":4}"#;
        let error = check(Path::new("m"), bytes, 4).unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }));
    }
}
