//! The ingest workload: realistic product events in Shoal's native JSON, from a fixed seed.
//!
//! - event names follow a skewed distribution (`page_viewed` is 40 %, `error_shown` 3 %);
//! - entities are customers `cust-NNNNNN` from a pool, skewed so a few are much busier
//!   (index = ⌊n·u²⌋ for uniform u);
//! - each event has 1–3 properties typical of its name plus a padding property (a user agent
//!   or a referrer URL) sized so the event's JSON is about `event_bytes` long;
//! - without `client_ids` events carry no id (the server assigns a UUIDv7); with it each event
//!   starts with an `"id"` whose 36 characters are a placeholder that `ids.rs` overwrites with a
//!   fresh UUID before every send, so replayed bodies are never duplicates either way.
//!
//! Bodies are built once, before the run, so the load generator spends its time sending.
//! Every string written here is plain ASCII without quotes or backslashes, so no escaping.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write;

/// Event names and their weights (percent).
const NAMES: [(&str, u32); 7] = [
    ("page_viewed", 40),
    ("button_clicked", 20),
    ("api_called", 15),
    ("signed_in", 10),
    ("feature_used", 8),
    ("invoice_paid", 4),
    ("error_shown", 3),
];

pub(crate) const PATHS: [&str; 12] = [
    "/",
    "/pricing",
    "/docs",
    "/docs/getting-started",
    "/docs/api/events",
    "/dashboard",
    "/dashboard/reports",
    "/settings/billing",
    "/settings/team",
    "/integrations/segment",
    "/blog/event-sourcing",
    "/changelog",
];
pub(crate) const REFERRERS: [&str; 6] = [
    "google",
    "direct",
    "newsletter",
    "twitter",
    "github",
    "partner",
];
pub(crate) const BUTTONS: [&str; 8] = [
    "upgrade",
    "invite_teammate",
    "export_csv",
    "create_report",
    "save",
    "share",
    "connect_source",
    "dismiss",
];
pub(crate) const ENDPOINTS: [&str; 6] = [
    "/v1/reports",
    "/v1/users",
    "/v1/events",
    "/v1/exports",
    "/v1/search",
    "/v1/billing",
];
pub(crate) const FEATURES: [&str; 8] = [
    "funnels",
    "cohorts",
    "alerts",
    "sql_editor",
    "dashboards",
    "retention",
    "segments",
    "api_keys",
];
pub(crate) const METHODS: [&str; 4] = ["password", "sso", "google", "magic_link"];
pub(crate) const PLANS: [&str; 4] = ["free", "starter", "pro", "enterprise"];
pub(crate) const ERRORS: [&str; 5] = [
    "quota_exceeded",
    "timeout",
    "invalid_query",
    "permission_denied",
    "not_found",
];
const PADDING: [&str; 5] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15 Mobile",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0 https://www.example.com/landing?utm=spring",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari/604.1",
    "okhttp/4.12.0 shoal-sdk-android/2.3.1 (Pixel 8; Android 14; build UQ1A.240205.004) https://app.example.com/deeplink/home",
];

/// What the events look like.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadSpec {
    pub seed: u64,
    pub event_bytes: usize,
    pub entities: u32,
    /// Event times are spread over the minute before this (epoch ms).
    pub now_millis: i64,
    /// Give every event an `"id"` placeholder (see `ids.rs`).
    pub client_ids: bool,
}

/// The length of a UUID's text, the size of an id placeholder.
pub const ID_TEXT_LEN: usize = 36;
const ID_PLACEHOLDER: &str = "00000000-0000-0000-0000-000000000000";

/// One pre-built request body.
pub struct Body {
    pub bytes: Bytes,
    /// Where each id placeholder starts (empty without client ids).
    pub id_offsets: Vec<u32>,
}

/// The request bodies of a run and what they hold.
pub struct Bodies {
    pub bodies: Vec<Body>,
    pub events_per_body: u32,
    pub total_bytes: usize,
}

impl Bodies {
    /// Mean JSON bytes per event (the array brackets and commas included).
    pub fn mean_event_bytes(&self) -> f64 {
        let events = self.bodies.len() as f64 * f64::from(self.events_per_body);
        self.total_bytes as f64 / events.max(1.0)
    }
}

/// Builds enough distinct bodies of `batch` events that connections rarely send the same one at
/// the same moment: about 100 k events in all, at least 16 bodies, at most 4096.
pub fn bodies(spec: &WorkloadSpec, batch: u32) -> Bodies {
    let count = (100_000 / batch as usize).clamp(16, 4096);
    let mut generator = EventGenerator::new(spec);
    let mut bodies = Vec::with_capacity(count);
    let mut total_bytes = 0;
    let mut text = String::new();
    for _ in 0..count {
        text.clear();
        text.push('[');
        let mut id_offsets = Vec::new();
        for index in 0..batch {
            if index > 0 {
                text.push(',');
            }
            if let Some(offset) = generator.write_event(&mut text) {
                id_offsets.push(offset as u32);
            }
        }
        text.push(']');
        total_bytes += text.len();
        bodies.push(Body {
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            id_offsets,
        });
    }
    Bodies {
        bodies,
        events_per_body: batch,
        total_bytes,
    }
}

/// Writes events one after another from a seeded generator.
pub struct EventGenerator {
    rng: StdRng,
    spec: WorkloadSpec,
    weight_total: u32,
}

impl EventGenerator {
    pub fn new(spec: &WorkloadSpec) -> Self {
        EventGenerator {
            rng: StdRng::seed_from_u64(spec.seed),
            spec: *spec,
            weight_total: NAMES.iter().map(|(_, weight)| weight).sum(),
        }
    }

    /// Appends one event's JSON object to `out`; returns where its id placeholder starts.
    pub fn write_event(&mut self, out: &mut String) -> Option<usize> {
        let start = out.len();
        out.push('{');
        let id_offset = self.spec.client_ids.then(|| {
            out.push_str(r#""id":""#);
            let offset = out.len();
            out.push_str(ID_PLACEHOLDER);
            out.push_str(r#"","#);
            offset
        });
        let name = self.pick_name();
        let unit: f64 = self.rng.random();
        let customer = (unit * unit * f64::from(self.spec.entities)) as u32;
        let customer = customer.min(self.spec.entities - 1);
        let millis = self.spec.now_millis - self.rng.random_range(0..60_000);
        let timestamp = chrono::DateTime::from_timestamp_millis(millis)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // `write!` into a String cannot fail.
        let _ = write!(
            out,
            r#""kind":"track","name":"{name}","entity":"cust-{customer:06}","timestamp":"{timestamp}","properties":{{"#
        );
        self.write_properties(name, out);
        // Pad to the target with one more property; 12 bytes of `,"ua":""}}` and a margin.
        let written = out.len() - start + 2;
        let room = self.spec.event_bytes.saturating_sub(written + 8);
        if room > 0 {
            let padding = PADDING[self.rng.random_range(0..PADDING.len())];
            let cut = room.min(padding.len());
            let _ = write!(out, r#","ua":"{}""#, &padding[..cut]);
        }
        out.push_str("}}");
        id_offset
    }

    fn pick_name(&mut self) -> &'static str {
        let mut ticket = self.rng.random_range(0..self.weight_total);
        for (name, weight) in NAMES {
            if ticket < weight {
                return name;
            }
            ticket -= weight;
        }
        NAMES[0].0
    }

    fn pick(&mut self, choices: &[&'static str]) -> &'static str {
        choices[self.rng.random_range(0..choices.len())]
    }

    fn write_properties(&mut self, name: &str, out: &mut String) {
        let _ = match name {
            "page_viewed" => {
                let (path, referrer) = (self.pick(&PATHS), self.pick(&REFERRERS));
                let duration = self.rng.random_range(50..30_000);
                write!(
                    out,
                    r#""path":"{path}","referrer":"{referrer}","duration_ms":{duration}"#
                )
            }
            "button_clicked" => {
                let (button, path) = (self.pick(&BUTTONS), self.pick(&PATHS));
                write!(out, r#""button":"{button}","path":"{path}""#)
            }
            "api_called" => {
                let endpoint = self.pick(&ENDPOINTS);
                let status = if self.rng.random_bool(0.95) { 200 } else { 429 };
                let latency = self.rng.random_range(1..900);
                write!(
                    out,
                    r#""endpoint":"{endpoint}","status":{status},"latency_ms":{latency}"#
                )
            }
            "signed_in" => {
                let method = self.pick(&METHODS);
                write!(out, r#""method":"{method}""#)
            }
            "feature_used" => {
                let feature = self.pick(&FEATURES);
                let count = self.rng.random_range(1..50);
                write!(out, r#""feature":"{feature}","count":{count}"#)
            }
            "invoice_paid" => {
                let plan = self.pick(&PLANS);
                let cents = self.rng.random_range(900..250_000);
                write!(
                    out,
                    r#""plan":"{plan}","amount":{}.{:02},"currency":"USD""#,
                    cents / 100,
                    cents % 100
                )
            }
            _ => {
                let (code, path) = (self.pick(&ERRORS), self.pick(&PATHS));
                write!(out, r#""code":"{code}","path":"{path}""#)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            seed: 7,
            event_bytes: 200,
            entities: 100_000,
            now_millis: 1_767_225_600_000,
            client_ids: false,
        }
    }

    #[test]
    fn events_are_valid_json_of_about_the_target_size() {
        let mut generator = EventGenerator::new(&spec());
        let mut sizes = Vec::new();
        for _ in 0..2_000 {
            let mut text = String::new();
            generator.write_event(&mut text);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["kind"], "track");
            assert!(value["entity"].as_str().unwrap().starts_with("cust-"));
            let properties = value["properties"].as_object().unwrap();
            assert!((2..=4).contains(&properties.len()), "{text}");
            sizes.push(text.len());
        }
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!((185.0..=205.0).contains(&mean), "mean size {mean}");
    }

    #[test]
    fn same_seed_same_bodies() {
        let first = bodies(&spec(), 10);
        let second = bodies(&spec(), 10);
        let texts = |built: &Bodies| -> Vec<Bytes> {
            built.bodies.iter().map(|body| body.bytes.clone()).collect()
        };
        assert_eq!(texts(&first), texts(&second));
        assert_eq!(first.bodies.len(), 4096);
        assert!(first.bodies[0].id_offsets.is_empty());
        let parsed: Vec<serde_json::Value> =
            serde_json::from_slice(&first.bodies[0].bytes).unwrap();
        assert_eq!(parsed.len(), 10);
    }

    #[test]
    fn id_placeholders_are_located() {
        let with_ids = WorkloadSpec {
            client_ids: true,
            ..spec()
        };
        let built = bodies(&with_ids, 3);
        let body = &built.bodies[0];
        assert_eq!(body.id_offsets.len(), 3);
        for offset in &body.id_offsets {
            let at = *offset as usize;
            assert_eq!(&body.bytes[at..at + ID_TEXT_LEN], ID_PLACEHOLDER.as_bytes());
        }
        let parsed: Vec<serde_json::Value> = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(parsed[0]["id"], ID_PLACEHOLDER);
        assert!(
            built.mean_event_bytes() < 215.0,
            "{}",
            built.mean_event_bytes()
        );
    }

    #[test]
    fn names_are_skewed() {
        let mut generator = EventGenerator::new(&spec());
        let views = (0..10_000)
            .filter(|_| generator.pick_name() == "page_viewed")
            .count();
        assert!((3_600..4_400).contains(&views), "{views}");
    }
}
