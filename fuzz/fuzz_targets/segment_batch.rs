//! The Segment parsers: a `/v1/batch` body and a single call, each message under every kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_ingest::parse::Context;
use shoal_ingest::parse::segment;

fuzz_target!(|data: &[u8]| {
    let context = Context {
        tenant: "fuzz",
        received_at: 1_767_225_600_000,
        max_event_bytes: 32 * 1024,
    };
    if let Ok(batch) = segment::split_batch(data, 10_000) {
        for message in &batch.messages {
            let _ = segment::parse_message(message, None, &batch.shared, &context);
        }
    }
    if let Ok(single) = segment::split_single(data) {
        for kind in ["track", "identify", "group", "page", "screen", "alias"] {
            let kind = kind.parse().ok();
            let _ = segment::parse_message(single.messages[0], kind, &single.shared, &context);
        }
    }
});
