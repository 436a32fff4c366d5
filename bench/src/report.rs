//! The figures of a run, how they are printed, and their medians over repeated runs.

use crate::stats::Stats;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything one run measured. `Option`s are figures only a spawned server (or a given data
/// directory) provides.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub run: u32,
    pub connections: u32,
    pub batch: u32,
    pub mean_event_json_bytes: f64,
    pub measured_seconds: f64,
    pub requests: u64,
    pub events_accepted: u64,
    pub events_per_second: f64,
    /// Request JSON (bodies as sent) per second, in MB (10^6 bytes).
    pub json_mb_per_second: f64,
    pub requests_per_second: f64,
    pub latency_ms: Latency,
    pub rejected: u64,
    pub duplicates: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    /// Requests not answered 200, transport errors included.
    pub failed_requests: u64,
    pub first_problem: Option<String>,
    /// CPU time used per wall second in the measured window (1.0 = one core busy).
    pub server_cores: Option<f64>,
    pub generator_cores: Option<f64>,
    /// Cores busy with anything else (other processes, the kernel's own threads): the machine's
    /// busy time minus the server's and the generator's. High values mean a noisy run.
    pub other_cores: Option<f64>,
    /// Server CPU time per accepted event, in microseconds.
    pub server_cpu_micros_per_event: Option<f64>,
    pub events_accepted_all: u64,
    pub log_bytes: Option<u64>,
    pub log_bytes_per_event: Option<f64>,
    pub server_peak_rss_mb: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Figures measured outside the load loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outside {
    pub server_cpu: Option<Duration>,
    pub generator_cpu: Option<Duration>,
    /// Busy CPU time of the whole machine in the window.
    pub machine_busy: Option<Duration>,
    pub log_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
}

impl RunReport {
    pub fn new(
        run: u32,
        connections: u32,
        batch: u32,
        mean_event_json_bytes: f64,
        window: Duration,
        stats: &Stats,
        outside: Outside,
    ) -> Self {
        let seconds = window.as_secs_f64().max(1e-9);
        let histogram = &stats.latency_micros;
        let at = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        let cores = |cpu: Option<Duration>| cpu.map(|cpu| cpu.as_secs_f64() / seconds);
        let events = stats.accepted;
        RunReport {
            run,
            connections,
            batch,
            mean_event_json_bytes,
            measured_seconds: seconds,
            requests: stats.requests,
            events_accepted: events,
            events_per_second: events as f64 / seconds,
            json_mb_per_second: stats.body_bytes as f64 / seconds / 1e6,
            requests_per_second: stats.requests as f64 / seconds,
            latency_ms: Latency {
                p50: at(0.50),
                p90: at(0.90),
                p99: at(0.99),
                p999: at(0.999),
                max: histogram.max() as f64 / 1000.0,
            },
            rejected: stats.rejected,
            duplicates: stats.duplicates,
            statuses: stats.statuses.clone(),
            transport_errors: stats.transport_errors,
            failed_requests: stats.failed_requests(),
            first_problem: stats.first_problem.clone(),
            server_cores: cores(outside.server_cpu),
            generator_cores: cores(outside.generator_cpu),
            other_cores: cores(outside.machine_busy).map(|busy| {
                let ours = cores(outside.server_cpu).unwrap_or(0.0)
                    + cores(outside.generator_cpu).unwrap_or(0.0);
                (busy - ours).max(0.0)
            }),
            server_cpu_micros_per_event: outside
                .server_cpu
                .filter(|_| events > 0)
                .map(|cpu| cpu.as_secs_f64() * 1e6 / events as f64),
            events_accepted_all: stats.all_accepted,
            log_bytes: outside.log_bytes,
            log_bytes_per_event: outside
                .log_bytes
                .filter(|_| stats.all_accepted > 0)
                .map(|bytes| bytes as f64 / stats.all_accepted as f64),
            server_peak_rss_mb: outside.peak_rss_bytes.map(|bytes| bytes as f64 / 1e6),
        }
    }

    /// A human-readable block.
    pub fn print(&self, label: &str) {
        println!(
            "{label}: {} connections × {} events/request, {:.1} s measured, events ≈ {:.0} B of JSON",
            self.connections, self.batch, self.measured_seconds, self.mean_event_json_bytes
        );
        println!(
            "  throughput  {:>12.0} events/s  {:>8.1} MB/s JSON  {:>9.0} requests/s",
            self.events_per_second, self.json_mb_per_second, self.requests_per_second
        );
        let latency = &self.latency_ms;
        println!(
            "  latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            latency.p50, latency.p90, latency.p99, latency.p999, latency.max
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, count)| format!("{status}×{count}"))
            .collect();
        println!(
            "  answers     {}  transport errors {}  rejected events {}  duplicates {}",
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(" ")
            },
            self.transport_errors,
            self.rejected,
            self.duplicates
        );
        let mut resources = Vec::new();
        if let Some(cores) = self.server_cores {
            resources.push(format!("server {cores:.2} cores"));
        }
        if let Some(micros) = self.server_cpu_micros_per_event {
            resources.push(format!("{micros:.2} µs server CPU/event"));
        }
        if let Some(cores) = self.generator_cores {
            resources.push(format!("generator {cores:.2} cores"));
        }
        if let Some(cores) = self.other_cores {
            resources.push(format!("others {cores:.2} cores"));
        }
        if let Some(rss) = self.server_peak_rss_mb {
            resources.push(format!("server peak RSS {rss:.0} MB"));
        }
        if !resources.is_empty() {
            println!("  resources   {}", resources.join("  "));
        }
        if let (Some(bytes), Some(per_event)) = (self.log_bytes, self.log_bytes_per_event) {
            println!(
                "  log         {bytes} bytes for {} events = {per_event:.1} bytes/event",
                self.events_accepted_all
            );
        }
        if let Some(problem) = &self.first_problem {
            println!("  first problem: {problem}");
        }
    }
}

/// The median of each figure over the runs (figures missing from some runs are skipped).
#[derive(Clone, Debug, Serialize)]
pub struct Medians {
    pub runs: usize,
    pub events_per_second: f64,
    pub json_mb_per_second: f64,
    pub requests_per_second: f64,
    pub latency_ms: Latency,
    pub server_cores: Option<f64>,
    pub generator_cores: Option<f64>,
    pub other_cores: Option<f64>,
    pub server_cpu_micros_per_event: Option<f64>,
    pub log_bytes_per_event: Option<f64>,
    pub server_peak_rss_mb: Option<f64>,
    pub failed_requests: u64,
}

impl Medians {
    pub fn of(runs: &[RunReport]) -> Medians {
        let all = |figure: fn(&RunReport) -> f64| median(runs.iter().map(figure).collect());
        let some = |figure: fn(&RunReport) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(figure).collect();
            (!values.is_empty()).then(|| median(values))
        };
        Medians {
            runs: runs.len(),
            events_per_second: all(|run| run.events_per_second),
            json_mb_per_second: all(|run| run.json_mb_per_second),
            requests_per_second: all(|run| run.requests_per_second),
            latency_ms: Latency {
                p50: all(|run| run.latency_ms.p50),
                p90: all(|run| run.latency_ms.p90),
                p99: all(|run| run.latency_ms.p99),
                p999: all(|run| run.latency_ms.p999),
                max: all(|run| run.latency_ms.max),
            },
            server_cores: some(|run| run.server_cores),
            generator_cores: some(|run| run.generator_cores),
            other_cores: some(|run| run.other_cores),
            server_cpu_micros_per_event: some(|run| run.server_cpu_micros_per_event),
            log_bytes_per_event: some(|run| run.log_bytes_per_event),
            server_peak_rss_mb: some(|run| run.server_peak_rss_mb),
            failed_requests: runs.iter().map(|run| run.failed_requests).sum(),
        }
    }

    pub fn print(&self) {
        println!("median of {} runs:", self.runs);
        println!(
            "  throughput  {:>12.0} events/s  {:>8.1} MB/s JSON  {:>9.0} requests/s",
            self.events_per_second, self.json_mb_per_second, self.requests_per_second
        );
        let latency = &self.latency_ms;
        println!(
            "  latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            latency.p50, latency.p90, latency.p99, latency.p999, latency.max
        );
        let mut rest = vec![format!(
            "failed requests (all runs) {}",
            self.failed_requests
        )];
        if let Some(cores) = self.server_cores {
            rest.push(format!("server {cores:.2} cores"));
        }
        if let Some(micros) = self.server_cpu_micros_per_event {
            rest.push(format!("{micros:.2} µs server CPU/event"));
        }
        if let Some(cores) = self.generator_cores {
            rest.push(format!("generator {cores:.2} cores"));
        }
        if let Some(cores) = self.other_cores {
            rest.push(format!("others {cores:.2} cores"));
        }
        if let Some(per_event) = self.log_bytes_per_event {
            rest.push(format!("log {per_event:.1} bytes/event"));
        }
        if let Some(rss) = self.server_peak_rss_mb {
            rest.push(format!("server peak RSS {rss:.0} MB"));
        }
        println!("  {}", rest.join("  "));
    }
}

/// The median (mean of the middle two for an even count); 0 for no values.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn report_rates_from_stats() {
        let mut stats = Stats::new();
        stats.requests = 10;
        stats.accepted = 10_000;
        stats.all_accepted = 12_000;
        stats.body_bytes = 2_000_000;
        stats.latency_micros.record(1_500).unwrap();
        stats.statuses.insert(200, 10);
        let outside = Outside {
            server_cpu: Some(Duration::from_millis(1500)),
            generator_cpu: None,
            machine_busy: Some(Duration::from_secs(2)),
            log_bytes: Some(600_000),
            peak_rss_bytes: Some(100_000_000),
        };
        let report = RunReport::new(1, 2, 1000, 200.0, Duration::from_secs(2), &stats, outside);
        assert_eq!(report.events_per_second, 5_000.0);
        assert_eq!(report.json_mb_per_second, 1.0);
        assert_eq!(report.log_bytes_per_event, Some(50.0));
        assert_eq!(report.server_cores, Some(0.75));
        assert_eq!(report.other_cores, Some(0.25));
        assert_eq!(report.server_cpu_micros_per_event, Some(150.0));
        assert!((report.latency_ms.p50 - 1.5).abs() < 0.01);
        let medians = Medians::of(&[report.clone(), report]);
        assert_eq!(medians.events_per_second, 5_000.0);
        assert_eq!(medians.failed_requests, 0);
    }
}
