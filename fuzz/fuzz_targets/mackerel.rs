//! The Mackerel `/api/v0/tsdb` parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_ingest::parse::{self, Context, Layout};

fuzz_target!(|data: &[u8]| {
    let context = Context {
        tenant: "fuzz",
        received_at: 1_767_225_600_000,
        max_event_bytes: 32 * 1024,
    };
    if let Ok(items) = parse::split(data, Layout::Json, 10_000) {
        for item in items.into_iter().flatten() {
            let _ = parse::mackerel::parse_point(item, &context);
        }
    }
});
