//! The Graphite plaintext parser, over whole reads as the listener hands them to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_ingest::parse::Context;
use shoal_ingest::parse::graphite::parse_body;

fuzz_target!(|data: &[u8]| {
    let context = Context {
        tenant: "fuzz",
        received_at: 1_767_225_600_000,
        max_event_bytes: 1024,
    };
    let _ = parse_body(data, 1, &context);
});
