//! What an import has done so far, shared by the reader, the senders and the display: a bar on
//! stderr when it is a terminal, otherwise a plain line every few seconds (for logs).

use super::batch::LocalRejection;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a non-terminal stderr gets a progress line.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Counters of the import; `lines` = `accepted + rejected + duplicates + in flight`.
#[derive(Default)]
pub struct Tally {
    pub bytes_read: AtomicU64,
    pub lines: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub duplicates: AtomicU64,
    pub retries: AtomicU64,
    /// The first rejections by line number, at most `keep`.
    rejections: Mutex<BTreeMap<u64, LocalRejection>>,
    keep: usize,
}

impl Tally {
    pub fn new(keep: usize) -> Self {
        Tally {
            keep,
            ..Tally::default()
        }
    }

    pub fn reject(&self, rejection: LocalRejection) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let mut kept = self
            .rejections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.insert(rejection.line, rejection);
        while kept.len() > self.keep {
            kept.pop_last();
        }
    }

    pub fn rejections(&self) -> Vec<LocalRejection> {
        self.rejections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn line(&self, elapsed: Duration) -> String {
        let accepted = Tally::get(&self.accepted);
        format!(
            "{} lines read, {accepted} accepted, {} rejected, {} duplicates, {:.0} events/s",
            Tally::get(&self.lines),
            Tally::get(&self.rejected),
            Tally::get(&self.duplicates),
            accepted as f64 / elapsed.as_secs_f64().max(0.001),
        )
    }
}

/// The display, updated by [`Display::tick`] until [`Display::finish`].
pub enum Display {
    Bar(ProgressBar),
    Plain { last: Instant },
    Quiet,
}

impl Display {
    /// A bar over `total_bytes` of input (a spinner when unknown), or plain lines.
    pub fn new(total_bytes: Option<u64>, quiet: bool) -> Display {
        if quiet {
            return Display::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Display::Plain {
                last: Instant::now(),
            };
        }
        let bar = match total_bytes {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ({eta} left)\n{msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {bytes} read  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        Display::Bar(bar)
    }

    pub fn tick(&mut self, tally: &Tally, started: Instant) {
        match self {
            Display::Bar(bar) => {
                bar.set_position(Tally::get(&tally.bytes_read));
                bar.set_message(tally.line(started.elapsed()));
            }
            Display::Plain { last } if last.elapsed() >= PLAIN_EVERY => {
                *last = Instant::now();
                eprintln!("shoal import: {}", tally.line(started.elapsed()));
            }
            Display::Plain { .. } | Display::Quiet => {}
        }
    }

    pub fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
