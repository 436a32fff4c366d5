//! `shoal-bench fsync`: how long `fdatasync` takes on the disk under a directory, the floor under
//! every durable acknowledgement. Two ways of writing are compared:
//! - `append`: each write extends the file (as the log's segments do today), so every sync must
//!   also write the inode's new size;
//! - `overwrite`: the file was filled with zeros and synced first, so a sync writes data only
//!   (what a pre-allocated, pre-zeroed segment would cost).

use crate::cli::FsyncArgs;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn run(args: &FsyncArgs) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("shoal-bench-fsync-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a directory in {}", args.dir.display()))?;
    let size = args.bytes as usize;
    let writes = args.count as usize;
    println!(
        "fdatasync after each {size}-byte write, {writes} writes, in {}",
        args.dir.display()
    );
    let append = measure(&dir.path().join("append"), size, writes, false)?;
    print_line("append", &append);
    let overwrite = measure(&dir.path().join("overwrite"), size, writes, true)?;
    print_line("overwrite", &overwrite);
    Ok(())
}

fn measure(path: &Path, size: usize, writes: usize, prefill: bool) -> Result<Histogram<u64>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    if prefill {
        zero_fill(&mut file, size * writes)?;
    }
    let block = vec![0xa5u8; size];
    // Bounded explicitly: `new` starts at a range that `saturating_record` clamps to ~2 ms.
    let mut latencies =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("creating a histogram")?;
    for index in 0..writes {
        file.write_all_at(&block, (index * size) as u64)?;
        let started = Instant::now();
        file.sync_data()?;
        latencies.saturating_record(micros(started.elapsed()));
    }
    Ok(latencies)
}

fn zero_fill(file: &mut File, len: usize) -> Result<()> {
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let now = left.min(chunk.len());
        file.write_all(&chunk[..now])?;
        left -= now;
    }
    file.sync_all()?;
    Ok(())
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn print_line(label: &str, latencies: &Histogram<u64>) {
    let ms = |quantile: f64| latencies.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "  {label:<10} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        latencies.max() as f64 / 1000.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let append = measure(&dir.path().join("a"), 512, 3, false).unwrap();
        let overwrite = measure(&dir.path().join("o"), 512, 3, true).unwrap();
        assert_eq!(append.len(), 3);
        assert_eq!(overwrite.len(), 3);
        assert_eq!(std::fs::metadata(dir.path().join("o")).unwrap().len(), 1536);
    }
}
