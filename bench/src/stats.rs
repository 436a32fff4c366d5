//! What one connection counts while it runs, and how the counts of all connections merge.
//!
//! Two windows are kept apart: `measured` covers requests that started after the warm-up and
//! finished before the deadline (the basis of rates and latencies); `all_accepted` counts every
//! accepted event of the run, warm-up included (the basis of bytes on disk per event).

use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
const LATENCY_MAX_MICROS: u64 = 600_000_000;

/// Counts of one connection, or of several merged.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Latency of every measured request, whatever its status.
    pub latency_micros: Histogram<u64>,
    /// Requests in the measured window that got an answer.
    pub requests: u64,
    /// Events stored, as the answers said, in the measured window.
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// Request body bytes sent in the measured window (of answered requests).
    pub body_bytes: u64,
    /// Answers by HTTP status in the measured window.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection failures and timeouts, whenever they happened.
    pub transport_errors: u64,
    /// The first transport error or unexpected answer, for the report.
    pub first_problem: Option<String>,
    /// Events stored over the whole run, warm-up included.
    pub all_accepted: u64,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            latency_micros: new_histogram(),
            requests: 0,
            accepted: 0,
            rejected: 0,
            duplicates: 0,
            body_bytes: 0,
            statuses: BTreeMap::new(),
            transport_errors: 0,
            first_problem: None,
            all_accepted: 0,
        }
    }

    /// Records a problem, keeping only the first message.
    pub fn note_problem(&mut self, message: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(message());
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_micros.add(&other.latency_micros);
        self.requests += other.requests;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.body_bytes += other.body_bytes;
        for (status, count) in &other.statuses {
            *self.statuses.entry(*status).or_default() += count;
        }
        self.transport_errors += other.transport_errors;
        if self.first_problem.is_none() {
            self.first_problem.clone_from(&other.first_problem);
        }
        self.all_accepted += other.all_accepted;
    }

    /// Requests that were not answered 200.
    pub fn failed_requests(&self) -> u64 {
        let non_ok: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| **status != 200)
            .map(|(_, count)| count)
            .sum();
        non_ok + self.transport_errors
    }
}

fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; fall back to an auto-resizing one.
    Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
        .or_else(|_| Histogram::new(3))
        .unwrap_or_else(|_| unreachable!("3 significant figures is a valid precision"))
}

/// The counts of an ingest answer, found without a full JSON parse: `"accepted":N`,
/// `"rejected":N` and the length of `"duplicates":[...]` (as its number of `"index"` keys).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerCounts {
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
}

pub fn answer_counts(body: &[u8]) -> AnswerCounts {
    let duplicates = find(body, b"\"duplicates\":[")
        .map(|start| {
            let list = &body[start..];
            if list.first() == Some(&b']') {
                0
            } else {
                count(list, b"\"index\"")
            }
        })
        .unwrap_or(0);
    AnswerCounts {
        accepted: number_after(body, b"\"accepted\":").unwrap_or(0),
        rejected: number_after(body, b"\"rejected\":").unwrap_or(0),
        duplicates,
    }
}

/// Where the bytes after `needle` start.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + needle.len())
}

fn count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count() as u64
}

fn number_after(haystack: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(haystack, key)?;
    let digits = haystack[start..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    std::str::from_utf8(&haystack[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_answer_counts() {
        let body = br#"{"accepted":998,"rejected":1,"errors":[{"index":3,"code":"x"}],"duplicates":[{"index":4,"id":"a"}]}"#;
        assert_eq!(
            answer_counts(body),
            AnswerCounts {
                accepted: 998,
                rejected: 1,
                duplicates: 1
            }
        );
        let plain = br#"{"accepted":1,"rejected":0,"errors":[],"duplicates":[]}"#;
        assert_eq!(answer_counts(plain).accepted, 1);
        assert_eq!(answer_counts(plain).duplicates, 0);
        assert_eq!(answer_counts(b"not json"), AnswerCounts::default());
    }

    #[test]
    fn merges() {
        let mut total = Stats::new();
        let mut one = Stats::new();
        one.requests = 2;
        one.latency_micros.record(100).unwrap();
        one.statuses.insert(200, 2);
        one.statuses.insert(503, 1);
        one.note_problem(|| "first".to_owned());
        total.merge(&one);
        total.merge(&one);
        assert_eq!(total.requests, 4);
        assert_eq!(total.latency_micros.len(), 2);
        assert_eq!(total.statuses[&200], 4);
        assert_eq!(total.failed_requests(), 2);
        assert_eq!(total.first_problem.as_deref(), Some("first"));
    }
}
