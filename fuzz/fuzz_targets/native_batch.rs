//! The native `/v1/events` and `/v1/metrics` parsers: split (JSON and NDJSON), then each item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_ingest::parse::{self, Context, Layout};

fuzz_target!(|data: &[u8]| {
    let context = Context {
        tenant: "fuzz",
        received_at: 1_767_225_600_000,
        max_event_bytes: 32 * 1024,
    };
    for layout in [Layout::Json, Layout::Ndjson] {
        if let Ok(items) = parse::split(data, layout, 10_000) {
            for item in items.into_iter().flatten() {
                let _ = parse::parse_event(item, &context);
                let _ = parse::parse_point(item, &context);
            }
        }
    }
});
