//! The figures of a comparison: values per (figure, system, round), medians, ratios, and the
//! one table printed at the end.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    Shoal,
    Postgres,
    Victoria,
    Carbon,
    Tantivy,
    /// Figures of the machine, not of a system.
    Machine,
}

impl System {
    pub const PEERS: [System; 4] = [
        System::Postgres,
        System::Victoria,
        System::Carbon,
        System::Tantivy,
    ];

    fn label(self) -> &'static str {
        match self {
            System::Shoal => "Shoal",
            System::Postgres => "PostgreSQL",
            System::Victoria => "VictoriaMetrics",
            System::Carbon => "carbon",
            System::Tantivy => "tantivy",
            System::Machine => "machine",
        }
    }

    fn short(self) -> &'static str {
        match self {
            System::Shoal => "Shoal",
            System::Postgres => "PG",
            System::Victoria => "VM",
            System::Carbon => "carbon",
            System::Tantivy => "tantivy",
            System::Machine => "machine",
        }
    }
}

/// Every figure, in the table's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Figure {
    IngestEvents,
    IngestPoints,
    IngestSingle,
    IngestSingleP99,
    CaughtUp,
    Projection,
    ProjectionPerCpu,
    Reprojection,
    EntityP50,
    EntityP99,
    ListP50,
    ListP99,
    SeriesP50,
    SeriesP99,
    AggregateP50,
    AggregateP99,
    WindowP50,
    WindowP99,
    SearchP50,
    SearchP99,
    FreshP50,
    FreshP99,
    BytesPerEvent,
    LogBytesPerPoint,
    BytesPerPoint,
    SeriesLengthPerPoint,
    PeakRss,
    OtherCores,
}

impl Figure {
    const ALL: [Figure; 28] = [
        Figure::IngestEvents,
        Figure::IngestPoints,
        Figure::IngestSingle,
        Figure::IngestSingleP99,
        Figure::CaughtUp,
        Figure::Projection,
        Figure::ProjectionPerCpu,
        Figure::Reprojection,
        Figure::EntityP50,
        Figure::EntityP99,
        Figure::ListP50,
        Figure::ListP99,
        Figure::SeriesP50,
        Figure::SeriesP99,
        Figure::AggregateP50,
        Figure::AggregateP99,
        Figure::WindowP50,
        Figure::WindowP99,
        Figure::SearchP50,
        Figure::SearchP99,
        Figure::FreshP50,
        Figure::FreshP99,
        Figure::BytesPerEvent,
        Figure::LogBytesPerPoint,
        Figure::BytesPerPoint,
        Figure::SeriesLengthPerPoint,
        Figure::PeakRss,
        Figure::OtherCores,
    ];

    /// The row's label and unit.
    fn label(self) -> (&'static str, &'static str) {
        match self {
            Figure::IngestEvents => (
                "ingest in batches of 1000 (PG: COPY per batch; VM, carbon: points)",
                "records/s",
            ),
            Figure::IngestPoints => ("metric points ingest in batches", "points/s"),
            Figure::IngestSingle => ("single-event requests, 64 connections", "events/s"),
            Figure::IngestSingleP99 => ("single-event requests, p99", "ms"),
            Figure::CaughtUp => ("read models caught up after the load ended", "s"),
            Figure::Projection => (
                "projection (re-projection rate; PG: aggregate tables rebuilt)",
                "events/s",
            ),
            Figure::ProjectionPerCpu => ("projection per CPU-second (VM: import)", "records/CPU-s"),
            Figure::Reprojection => ("full re-projection (PG: COPY of the same rows)", "s"),
            Figure::EntityP50 => ("entity p50", "ms"),
            Figure::EntityP99 => ("entity p99", "ms"),
            Figure::ListP50 => ("entity list page p50", "ms"),
            Figure::ListP99 => ("entity list page p99", "ms"),
            Figure::SeriesP50 => ("1-day series at 1 min p50", "ms"),
            Figure::SeriesP99 => ("1-day series at 1 min p99", "ms"),
            Figure::AggregateP50 => ("1-day hourly aggregate over all series p50", "ms"),
            Figure::AggregateP99 => ("1-day hourly aggregate over all series p99", "ms"),
            Figure::WindowP50 => ("windowed count over all customers p50", "ms"),
            Figure::WindowP99 => ("windowed count over all customers p99", "ms"),
            Figure::SearchP50 => ("full-text top-10 p50", "ms"),
            Figure::SearchP99 => ("full-text top-10 p99", "ms"),
            Figure::FreshP50 => ("ingest→queryable p50 (series point)", "ms"),
            Figure::FreshP99 => ("ingest→queryable p99 (series point)", "ms"),
            Figure::BytesPerEvent => ("bytes on disk per event", "B"),
            Figure::LogBytesPerPoint => ("log bytes per point", "B"),
            Figure::BytesPerPoint => (
                "series bytes on disk per point (allocated blocks, as du counts them)",
                "B",
            ),
            Figure::SeriesLengthPerPoint => (
                "series files' length per point (a sparse file's holes included)",
                "B",
            ),
            Figure::PeakRss => ("peak RSS", "MB"),
            Figure::OtherCores => ("cores busy with other work (noise)", "cores"),
        }
    }
}

/// Microseconds in a histogram as milliseconds at a quantile.
pub fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

#[derive(Default)]
pub struct Figures {
    values: BTreeMap<(Figure, System), BTreeMap<u32, f64>>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

fn format(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 10_000.0 {
        // Thousands separators for rates.
        let text = format!("{:.0}", value);
        let mut out = String::new();
        for (index, digit) in text.chars().enumerate() {
            if index > 0 && (text.len() - index) % 3 == 0 && digit.is_ascii_digit() {
                out.push(',');
            }
            out.push(digit);
        }
        out
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

impl Figures {
    pub fn record(&mut self, figure: Figure, system: System, round: u32, value: f64) {
        if value.is_finite() {
            self.values
                .entry((figure, system))
                .or_default()
                .insert(round, value);
        }
    }

    /// The series files of `system`: what they take on disk and their length, per point.
    pub fn series_sizes(
        &mut self,
        system: System,
        round: u32,
        sizes: crate::procfs::Sizes,
        points: usize,
    ) {
        let points = points as f64;
        self.record(
            Figure::BytesPerPoint,
            system,
            round,
            sizes.disk as f64 / points,
        );
        self.record(
            Figure::SeriesLengthPerPoint,
            system,
            round,
            sizes.length as f64 / points,
        );
    }

    pub fn latency(
        &mut self,
        p50: Figure,
        p99: Figure,
        system: System,
        round: u32,
        h: &Histogram<u64>,
    ) {
        self.record(p50, system, round, ms(h, 0.5));
        self.record(p99, system, round, ms(h, 0.99));
    }

    fn median_of(&self, figure: Figure, system: System) -> Option<f64> {
        let rounds = self.values.get(&(figure, system))?;
        median(rounds.values().copied().collect())
    }

    /// The median over rounds of Shoal's value divided by the peer's, same round.
    fn ratio(&self, figure: Figure, peer: System) -> Option<f64> {
        let ours = self.values.get(&(figure, System::Shoal))?;
        let theirs = self.values.get(&(figure, peer))?;
        median(
            ours.iter()
                .filter_map(|(round, value)| Some(value / theirs.get(round)?))
                .filter(|ratio| ratio.is_finite())
                .collect(),
        )
    }

    pub fn print(&self, rounds: u32) {
        println!(
            "Medians of {rounds} round(s); ratios are Shoal / peer, the median of each round's own ratio.\n"
        );
        println!(
            "| figure | unit | Shoal | PostgreSQL | VictoriaMetrics | carbon | tantivy | Shoal / peer |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---|");
        for figure in Figure::ALL {
            let (label, unit) = figure.label();
            let cell = |system: System| {
                self.median_of(figure, system)
                    .map_or_else(|| "—".to_owned(), format)
            };
            let shoal = if figure == Figure::OtherCores {
                cell(System::Machine)
            } else {
                cell(System::Shoal)
            };
            let ratios: Vec<String> = System::PEERS
                .iter()
                .filter_map(|&peer| {
                    let ratio = self.ratio(figure, peer)?;
                    Some(format!("{} {}×", peer.short(), format(ratio)))
                })
                .collect();
            let peers: Vec<String> = System::PEERS.iter().map(|&peer| cell(peer)).collect();
            println!(
                "| {label} | {unit} | {shoal} | {} | {} |",
                peers.join(" | "),
                if ratios.is_empty() {
                    "—".to_owned()
                } else {
                    ratios.join("; ")
                }
            );
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for ((figure, system), rounds) in &self.values {
            let key = format!("{figure:?}/{}", system.label());
            out.insert(
                key,
                serde_json::json!({
                    "rounds": rounds,
                    "median": median(rounds.values().copied().collect()),
                    "unit": figure.label().1,
                }),
            );
        }
        serde_json::Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_same_round_ratios() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        let mut figures = Figures::default();
        for (round, ours, theirs) in [(1, 10.0, 5.0), (2, 30.0, 10.0), (3, 8.0, 8.0)] {
            figures.record(Figure::IngestEvents, System::Shoal, round, ours);
            figures.record(Figure::IngestEvents, System::Postgres, round, theirs);
        }
        assert_eq!(
            figures.ratio(Figure::IngestEvents, System::Postgres),
            Some(2.0)
        );
        assert_eq!(format(1234567.0), "1,234,567");
        assert_eq!(format(0.1234), "0.123");
    }
}
