//! The comparison data set (issue 9): metric points and product events from fixed seeds, and
//! the same records written in every format the compared systems take.
//!
//! - Metric points: `series` series `cpu{host=hNNNN}`, one point a minute over one UTC day
//!   (time ordered: minute by minute, every series per minute). Values look like CPU use: a
//!   daily wave with a per-series base, amplitude and phase, noise, and rare spikes, rounded to
//!   0.1 as agents report them.
//! - Product events: `customers` accounts with traits (plan, seats, region; one `identify`
//!   each), 1–20 users per account, and `events` track events over the last 30 days, time
//!   ordered. Accounts are picked with a Zipf-like weight (rank k has weight 1/k^0.8), event
//!   names with a Zipf distribution (s = 1.1) over 20 names, and every fifth account churns: it
//!   sends nothing after a random moment of the window. Each event has 1–3 properties typical
//!   of its name and a `user_id`; searches and errors carry words of text for full-text search.
//!
//! The ingest bench's bodies come from `workload.rs`; the property vocabularies are shared.
//! Every string written here is plain ASCII without quotes or backslashes, so no escaping.

use crate::cli::{DataArgs, DatasetArgs};
use crate::workload::{BUTTONS, ENDPOINTS, ERRORS, FEATURES, METHODS, PATHS, PLANS, REFERRERS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write;

pub const DAY: i64 = 86_400_000;
pub const MINUTE: i64 = 60_000;
/// How far back the product events go.
pub const EVENT_DAYS: i64 = 30;

/// Event names, most frequent first; weights follow Zipf with s = 1.1.
pub const NAMES: [&str; 20] = [
    "page_viewed",
    "button_clicked",
    "api_called",
    "signed_in",
    "feature_used",
    "search_performed",
    "report_viewed",
    "export_created",
    "invite_sent",
    "error_shown",
    "dashboard_created",
    "alert_triggered",
    "comment_added",
    "file_uploaded",
    "integration_connected",
    "settings_changed",
    "invoice_paid",
    "plan_upgraded",
    "plan_downgraded",
    "account_deleted",
];
const REGIONS: [&str; 4] = ["eu", "us", "apac", "latam"];
/// Words for the text of searches and errors; low ranks are much more frequent.
const WORDS: [&str; 40] = [
    "report",
    "export",
    "billing",
    "invoice",
    "latency",
    "timeout",
    "dashboard",
    "revenue",
    "churn",
    "cohort",
    "funnel",
    "retention",
    "quota",
    "webhook",
    "segment",
    "pipeline",
    "warehouse",
    "schema",
    "alert",
    "anomaly",
    "forecast",
    "pricing",
    "onboarding",
    "invite",
    "permission",
    "token",
    "session",
    "mobile",
    "android",
    "safari",
    "firefox",
    "upload",
    "download",
    "filter",
    "metric",
    "trend",
    "weekly",
    "monthly",
    "quarterly",
    "migration",
];

#[derive(Clone, Copy, Debug)]
pub struct DatasetSpec {
    pub seed: u64,
    pub customers: u32,
    pub events: u64,
    pub series: u32,
    /// Points per series, one a minute from `metrics_day`.
    pub points: u32,
    /// Track events end here (epoch ms); they start `EVENT_DAYS` before.
    pub now_millis: i64,
    /// Start of the metrics' UTC day (epoch ms).
    pub metrics_day: i64,
}

impl DatasetSpec {
    pub fn from_args(args: &DataArgs, now_millis: i64) -> DatasetSpec {
        DatasetSpec {
            seed: args.seed,
            customers: args.customers,
            events: args.events,
            series: args.series,
            points: args.points,
            now_millis,
            // Two days back: a whole day, in every system's retention, clear of "now".
            metrics_day: (now_millis / DAY - 2) * DAY,
        }
    }
}

/// `shoal-bench dataset`: the data set's files.
pub fn run(args: &DatasetArgs) -> anyhow::Result<()> {
    let spec = DatasetSpec::from_args(&args.data, chrono::Utc::now().timestamp_millis());
    let data = Dataset::generate(&spec);
    for file in write_files(&data, &args.out)? {
        let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        println!("{} ({:.1} MB)", file.display(), bytes as f64 / 1e6);
    }
    Ok(())
}

pub struct Customer {
    pub id: String,
    pub plan: &'static str,
    pub seats: u32,
    pub region: &'static str,
    pub users: u32,
    pub signed_up: i64,
    /// No events after this.
    pub churned_at: Option<i64>,
}

pub struct ProductEvent {
    /// A UUID made from the seed and the event's index: the client message id every system
    /// stores (Shoal's dedup window and Postgres's primary key both see it).
    pub id: uuid::Uuid,
    pub timestamp: i64,
    pub customer: u32,
    pub user: u32,
    pub name: &'static str,
    /// The properties as a JSON object's text, `user_id` included.
    pub properties: String,
}

#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub series: u32,
    pub timestamp: i64,
    pub value: f64,
}

pub struct Dataset {
    pub spec: DatasetSpec,
    pub customers: Vec<Customer>,
    pub events: Vec<ProductEvent>,
    pub points: Vec<Point>,
}

impl Dataset {
    pub fn generate(spec: &DatasetSpec) -> Dataset {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let customers = customers(spec, &mut rng);
        let events = events(spec, &customers, &mut rng);
        let points = points(spec, &mut rng);
        Dataset {
            spec: *spec,
            customers,
            events,
            points,
        }
    }

    /// Identifies plus track events: what a product-event store holds.
    pub fn event_count(&self) -> u64 {
        (self.customers.len() + self.events.len()) as u64
    }

    pub fn series_name(series: u32) -> String {
        format!("h{series:04}")
    }
}

fn customers(spec: &DatasetSpec, rng: &mut StdRng) -> Vec<Customer> {
    let window_start = spec.now_millis - EVENT_DAYS * DAY;
    (0..spec.customers)
        .map(|index| {
            let plan = PLANS[rng.random_range(0..PLANS.len())];
            let users = 1 + (20.0 * rng.random::<f64>().powi(3)) as u32;
            let churned_at =
                (index % 5 == 4).then(|| window_start + rng.random_range(0..EVENT_DAYS * DAY));
            Customer {
                id: format!("acct-{index:06}"),
                plan,
                seats: users + rng.random_range(0..10),
                region: REGIONS[rng.random_range(0..REGIONS.len())],
                users,
                signed_up: window_start - rng.random_range(DAY..365 * DAY),
                churned_at,
            }
        })
        .collect()
}

/// Cumulative weights for picking index k with weight 1/(k+1)^s.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut total = 0.0;
    (0..n)
        .map(|k| {
            total += 1.0 / ((k + 1) as f64).powf(s);
            total
        })
        .collect()
}

fn pick(cdf: &[f64], rng: &mut StdRng) -> usize {
    let total = cdf.last().copied().unwrap_or(0.0);
    let ticket = rng.random::<f64>() * total;
    cdf.partition_point(|&edge| edge <= ticket)
        .min(cdf.len().saturating_sub(1))
}

fn events(spec: &DatasetSpec, customers: &[Customer], rng: &mut StdRng) -> Vec<ProductEvent> {
    let window_start = spec.now_millis - EVENT_DAYS * DAY;
    let customer_cdf = zipf_cdf(customers.len(), 0.8);
    let name_cdf = zipf_cdf(NAMES.len(), 1.1);
    let step = (EVENT_DAYS * DAY) as f64 / spec.events.max(1) as f64;
    let mut events = Vec::with_capacity(spec.events as usize);
    for index in 0..spec.events {
        let timestamp = window_start + (index as f64 * step) as i64;
        // A churned account sends nothing after its churn: draw again (a few tries keep the
        // busiest accounts from being skipped for long).
        let mut customer = pick(&customer_cdf, rng);
        for _ in 0..8 {
            if customers[customer]
                .churned_at
                .is_none_or(|churned| timestamp < churned)
            {
                break;
            }
            customer = pick(&customer_cdf, rng);
        }
        let name = NAMES[pick(&name_cdf, rng)];
        let user = rng.random_range(0..customers[customer].users);
        let properties = properties(name, customer as u32, user, rng);
        events.push(ProductEvent {
            id: uuid::Uuid::from_u64_pair(spec.seed ^ 0x15_5e_09, index),
            timestamp,
            customer: customer as u32,
            user,
            name,
            properties,
        });
    }
    events
}

fn word(rng: &mut StdRng) -> &'static str {
    // Log-uniform ranks: a few words are common, most are rare.
    let rank = (WORDS.len() as f64).powf(rng.random::<f64>()) as usize - 1;
    WORDS[rank.min(WORDS.len() - 1)]
}

/// Two words of the text vocabulary, drawn as the events' texts draw them: a full-text query.
pub fn search_terms(rng: &mut StdRng) -> (&'static str, &'static str) {
    (word(rng), word(rng))
}

fn properties(name: &str, customer: u32, user: u32, rng: &mut StdRng) -> String {
    let mut out = format!(r#"{{"user_id":"u-{customer}-{user}""#);
    let choose = |rng: &mut StdRng, choices: &[&'static str]| -> &'static str {
        choices[rng.random_range(0..choices.len())]
    };
    // `write!` into a String cannot fail.
    let _ = match name {
        "page_viewed" | "report_viewed" => {
            let (path, referrer) = (choose(rng, &PATHS), choose(rng, &REFERRERS));
            let duration = rng.random_range(50..30_000);
            write!(
                out,
                r#","path":"{path}","referrer":"{referrer}","duration_ms":{duration}"#
            )
        }
        "button_clicked" => {
            let button = choose(rng, &BUTTONS);
            write!(out, r#","button":"{button}""#)
        }
        "api_called" => {
            let endpoint = choose(rng, &ENDPOINTS);
            let latency = rng.random_range(1..900);
            write!(out, r#","endpoint":"{endpoint}","latency_ms":{latency}"#)
        }
        "signed_in" => write!(out, r#","method":"{}""#, choose(rng, &METHODS)),
        "feature_used" => write!(out, r#","feature":"{}""#, choose(rng, &FEATURES)),
        "search_performed" => {
            let (first, second, third) = (word(rng), word(rng), word(rng));
            write!(out, r#","query":"{first} {second} {third}""#)
        }
        "error_shown" => {
            let (code, path) = (choose(rng, &ERRORS), choose(rng, &PATHS));
            let (first, second) = (word(rng), word(rng));
            write!(
                out,
                r#","code":"{code}","message":"{first} {second} failed on {path}""#
            )
        }
        "invoice_paid" | "plan_upgraded" | "plan_downgraded" => {
            let cents = rng.random_range(900..250_000);
            write!(
                out,
                r#","plan":"{}","amount":{}.{:02}"#,
                choose(rng, &PLANS),
                cents / 100,
                cents % 100
            )
        }
        _ => write!(out, r#","count":{}"#, rng.random_range(1..50)),
    };
    out.push('}');
    out
}

/// The metric points alone, from their own generator seeded with `spec.seed`: the same shapes
/// as [`Dataset::generate`]'s points, not the same draws (those follow the events').
pub fn points_only(spec: &DatasetSpec) -> Vec<Point> {
    points(spec, &mut StdRng::seed_from_u64(spec.seed))
}

fn points(spec: &DatasetSpec, rng: &mut StdRng) -> Vec<Point> {
    struct Shape {
        base: f64,
        amplitude: f64,
        phase: f64,
        noise: f64,
    }
    let shapes: Vec<Shape> = (0..spec.series)
        .map(|_| Shape {
            base: rng.random_range(5.0..50.0),
            amplitude: rng.random_range(2.0..30.0),
            phase: rng.random_range(0.0..std::f64::consts::TAU),
            noise: rng.random_range(0.2..4.0),
        })
        .collect();
    let mut points = Vec::with_capacity(spec.series as usize * spec.points as usize);
    for minute in 0..i64::from(spec.points) {
        let timestamp = spec.metrics_day + minute * MINUTE;
        let angle = std::f64::consts::TAU * (minute as f64) / 1440.0;
        for (series, shape) in shapes.iter().enumerate() {
            let mut value = shape.base
                + shape.amplitude * (angle + shape.phase).sin()
                + shape.noise * (rng.random::<f64>() - 0.5) * 2.0;
            if rng.random_bool(0.002) {
                value += 40.0;
            }
            let value = (value.clamp(0.0, 100.0) * 10.0).round() / 10.0;
            points.push(Point {
                series: series as u32,
                timestamp,
                value,
            });
        }
    }
    points
}

/// The formats, each record written on its own (callers batch them).
pub mod formats {
    use super::{Customer, Dataset, Point, ProductEvent};
    use std::fmt::Write;

    /// Shoal's native JSON event (`POST /v1/events`).
    pub fn native_event(data: &Dataset, event: &ProductEvent, out: &mut String) {
        let customer = &data.customers[event.customer as usize].id;
        let _ = write!(
            out,
            r#"{{"id":"{}","kind":"track","name":"{}","entity":"{customer}","timestamp":{},"properties":{}}}"#,
            event.id, event.name, event.timestamp, event.properties
        );
    }

    /// Shoal's native JSON identify, the account's traits.
    pub fn native_identify(customer: &Customer, out: &mut String) {
        let _ = write!(
            out,
            r#"{{"id":"identify-{}","kind":"identify","entity":"{}","timestamp":{},"traits":{{"plan":"{}","seats":{},"region":"{}","users":{}}}}}"#,
            customer.id,
            customer.id,
            customer.signed_up,
            customer.plan,
            customer.seats,
            customer.region,
            customer.users
        );
    }

    /// Shoal's native JSON metric point (`POST /v1/metrics`).
    pub fn native_point(point: &Point, out: &mut String) {
        let _ = write!(
            out,
            r#"{{"name":"cpu","host":"{}","timestamp":{},"value":{}}}"#,
            Dataset::series_name(point.series),
            point.timestamp,
            point.value
        );
    }

    /// One message of a Segment `POST /v1/batch` body: the user is Segment's `userId`, the
    /// account its `context.groupId`.
    pub fn segment_track(data: &Dataset, event: &ProductEvent, out: &mut String) {
        let customer = &data.customers[event.customer as usize].id;
        let timestamp = chrono::DateTime::from_timestamp_millis(event.timestamp)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let _ = write!(
            out,
            r#"{{"type":"track","messageId":"{}","userId":"u-{}-{}","event":"{}","timestamp":"{timestamp}","properties":{},"context":{{"groupId":"{customer}"}}}}"#,
            event.id, event.customer, event.user, event.name, event.properties
        );
    }

    /// InfluxDB line protocol, nanosecond timestamps.
    pub fn line_protocol(point: &Point, out: &mut String) {
        let _ = writeln!(
            out,
            "cpu,host={} value={} {}",
            Dataset::series_name(point.series),
            point.value,
            point.timestamp * 1_000_000
        );
    }

    /// Prometheus text exposition with millisecond timestamps (what VictoriaMetrics imports).
    pub fn prometheus(point: &Point, out: &mut String) {
        let _ = writeln!(
            out,
            r#"cpu{{host="{}"}} {} {}"#,
            Dataset::series_name(point.series),
            point.value,
            point.timestamp
        );
    }

    /// Graphite's plaintext protocol, second timestamps.
    pub fn graphite(point: &Point, out: &mut String) {
        let _ = writeln!(
            out,
            "servers.{}.cpu {} {}",
            Dataset::series_name(point.series),
            point.value,
            point.timestamp / 1000
        );
    }

    /// CSV rows for PostgreSQL's `COPY … (FORMAT csv)`; JSON goes in a quoted field with its
    /// quotes doubled.
    pub fn csv_event(data: &Dataset, event: &ProductEvent, out: &mut String) {
        let customer = &data.customers[event.customer as usize].id;
        let _ = writeln!(
            out,
            r#"{},{},{customer},u-{}-{},{},"{}""#,
            event.id,
            event.timestamp,
            event.customer,
            event.user,
            event.name,
            event.properties.replace('"', "\"\"")
        );
    }

    pub fn csv_customer(customer: &Customer, out: &mut String) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            customer.id,
            customer.plan,
            customer.seats,
            customer.region,
            customer.users,
            customer.signed_up
        );
    }

    pub fn csv_point(point: &Point, out: &mut String) {
        let _ = writeln!(
            out,
            "{},{},{}",
            Dataset::series_name(point.series),
            point.timestamp,
            point.value
        );
    }
}

/// Writes one point in one format.
type PointWriter = fn(&Point, &mut String);

/// Writes the whole data set in every format under `dir` (for inspection and for other tools):
/// native JSON (NDJSON), Segment batches, line protocol, Prometheus text, Graphite plaintext and
/// CSV. Returns the files written.
pub fn write_files(
    data: &Dataset,
    dir: &std::path::Path,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut save = |name: &str, text: &str| -> std::io::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
        Ok(())
    };
    let mut text = String::new();
    for customer in &data.customers {
        formats::native_identify(customer, &mut text);
        text.push('\n');
    }
    for event in &data.events {
        formats::native_event(data, event, &mut text);
        text.push('\n');
    }
    save("events.ndjson", &text)?;
    text.clear();
    for point in &data.points {
        formats::native_point(point, &mut text);
        text.push('\n');
    }
    save("metrics.ndjson", &text)?;
    text.clear();
    for chunk in data.events.chunks(1000) {
        text.push_str(r#"{"batch":["#);
        for (index, event) in chunk.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            formats::segment_track(data, event, &mut text);
        }
        text.push_str("]}\n");
    }
    save("segment-batches.ndjson", &text)?;
    let writers: [(&str, PointWriter); 4] = [
        ("metrics.lp", formats::line_protocol),
        ("metrics.prom", formats::prometheus),
        ("metrics.graphite", formats::graphite),
        ("points.csv", formats::csv_point),
    ];
    for (name, write) in writers {
        text.clear();
        for point in &data.points {
            write(point, &mut text);
        }
        save(name, &text)?;
    }
    text.clear();
    for event in &data.events {
        formats::csv_event(data, event, &mut text);
    }
    save("events.csv", &text)?;
    text.clear();
    for customer in &data.customers {
        formats::csv_customer(customer, &mut text);
    }
    save("customers.csv", &text)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Dataset {
        Dataset::generate(&DatasetSpec {
            seed: 3,
            customers: 200,
            events: 5_000,
            series: 10,
            points: 60,
            now_millis: 1_767_225_600_000,
            metrics_day: 1_767_052_800_000,
        })
    }

    #[test]
    fn same_seed_same_data_and_valid_formats() {
        let (first, second) = (small(), small());
        assert_eq!(first.events.len(), 5_000);
        assert_eq!(first.points.len(), 600);
        for (a, b) in first.events.iter().zip(&second.events) {
            assert_eq!(
                (a.id, a.timestamp, &a.properties),
                (b.id, b.timestamp, &b.properties)
            );
        }
        assert!(
            first
                .events
                .windows(2)
                .all(|w| w[0].timestamp <= w[1].timestamp)
        );
        assert!(
            first
                .points
                .windows(2)
                .all(|w| w[0].timestamp <= w[1].timestamp)
        );
        for event in &first.events {
            let mut text = String::new();
            formats::native_event(&first, event, &mut text);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(value["properties"]["user_id"].is_string(), "{text}");
            text.clear();
            formats::segment_track(&first, event, &mut text);
            serde_json::from_str::<serde_json::Value>(&text).unwrap();
        }
        let mut text = String::new();
        formats::native_identify(&first.customers[0], &mut text);
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
        assert!(
            first
                .points
                .iter()
                .all(|p| (0.0..=100.0).contains(&p.value))
        );
    }

    #[test]
    fn names_are_zipf_and_churned_accounts_go_quiet() {
        let data = small();
        let count = |name: &str| data.events.iter().filter(|e| e.name == name).count();
        assert!(count(NAMES[0]) > 3 * count(NAMES[5]));
        let late = data
            .events
            .iter()
            .filter(|e| {
                data.customers[e.customer as usize]
                    .churned_at
                    .is_some_and(|churned| e.timestamp >= churned)
            })
            .count();
        assert!(late < data.events.len() / 100, "{late}");
    }
}
