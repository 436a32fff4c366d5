//! Figures read from `/proc` and the file system: a process's peak RSS and CPU time, the whole
//! machine's busy time (to tell how much CPU other processes took during a run), and the size
//! of a directory tree.

use std::path::Path;
use std::time::Duration;

/// A `VmHWM`/`VmRSS`-style line of `/proc/PID/status`, in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| {
        line.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User + system CPU time of a process so far (`/proc/PID/stat`, or `self`).
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis are fixed.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    ticks_to_duration(user + system)
}

/// CPU time of a process tree so far: the process, its reaped children (`cutime`, `cstime`),
/// and its live children (PostgreSQL's backends are children of the postmaster).
pub fn tree_cpu_time(pid: u32) -> Option<Duration> {
    let stat_fields = |path: &Path| -> Option<Vec<u64>> {
        let stat = std::fs::read_to_string(path).ok()?;
        let after_name = &stat[stat.rfind(')')? + 1..];
        // Fields after the name: state, ppid, …; utime is the 12th, cstime the 15th.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let number = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok());
        Some(vec![
            number(1)?,
            number(11)?,
            number(12)?,
            number(13)?,
            number(14)?,
        ])
    };
    let own = stat_fields(Path::new(&format!("/proc/{pid}/stat")))?;
    let mut ticks = own[1] + own[2] + own[3] + own[4];
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(child) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(fields) = stat_fields(&entry.path().join("stat"))
            && fields[0] == u64::from(pid)
            && child != pid
        {
            ticks += fields[1] + fields[2];
        }
    }
    ticks_to_duration(ticks)
}

/// Apparent size (sum of file lengths) of everything under `dir`.
pub fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    Ok(dir_sizes(dir)?.length)
}

/// What files hold: their length, and what they take on disk as `du` counts it (allocated
/// blocks). The two differ for sparse files (a redb file grows by `set_len`, doubling, ahead
/// of the pages it writes) and for files shorter than a block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    pub length: u64,
    pub disk: u64,
}

impl Sizes {
    pub fn of(metadata: &std::fs::Metadata) -> Sizes {
        use std::os::unix::fs::MetadataExt;
        Sizes {
            length: metadata.len(),
            // `st_blocks` counts 512-byte units whatever the file system's block size.
            disk: metadata.blocks() * 512,
        }
    }
}

/// [`Sizes`] summed over everything under `dir`, in one walk.
pub fn dir_sizes(dir: &Path) -> std::io::Result<Sizes> {
    let mut total = Sizes::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let sizes = if kind.is_dir() {
            dir_sizes(&entry.path())?
        } else if kind.is_file() {
            Sizes::of(&entry.metadata()?)
        } else {
            continue;
        };
        total.length += sizes.length;
        total.disk += sizes.disk;
    }
    Ok(total)
}

/// Busy and total time of all CPUs so far (`/proc/stat`, first line), in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineTicks {
    pub busy: u64,
    pub total: u64,
}

pub fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some(MachineTicks {
        busy: total - idle,
        total,
    })
}

/// Busy CPU time of the whole machine between two samples.
pub fn machine_busy(before: Option<MachineTicks>, after: Option<MachineTicks>) -> Option<Duration> {
    let (before, after) = (before?, after?);
    ticks_to_duration(after.busy.checked_sub(before.busy)?)
}

fn ticks_to_duration(ticks: u64) -> Option<Duration> {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|value| *value > 0)?;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_machine_ticks() {
        let before = machine_ticks().unwrap();
        assert!(before.total >= before.busy);
        let after = machine_ticks().unwrap();
        assert!(machine_busy(Some(before), Some(after)).is_some());
    }

    #[test]
    fn reads_own_process_figures() {
        let pid = std::process::id();
        assert!(proc_status_bytes(pid, "VmHWM").is_some_and(|bytes| bytes > 0));
        assert!(proc_status_bytes(pid, "NoSuchField").is_none());
        assert!(cpu_time(None).is_some());
        assert!(cpu_time(Some(pid)).is_some());
    }

    #[test]
    fn sums_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(dir.path()).unwrap(), 15);
        // Two files with data take at least a block each; a sparse one only what was written.
        assert!(dir_sizes(dir.path()).unwrap().disk >= 1024);
        let sparse = std::fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        assert_eq!(dir_bytes(dir.path()).unwrap(), 15 + (64 << 20));
        assert!(dir_sizes(dir.path()).unwrap().disk < 1 << 20);
    }
}
