//! The InfluxDB line protocol parser, at every precision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_ingest::parse::Context;
use shoal_ingest::parse::line_protocol::{Precision, parse_body};

fuzz_target!(|data: &[u8]| {
    let context = Context {
        tenant: "fuzz",
        received_at: 1_767_225_600_000,
        max_event_bytes: 32 * 1024,
    };
    for precision in ["ns", "us", "ms", "s", "m", "h"] {
        if let Some(precision) = Precision::parse(precision) {
            let _ = parse_body(data, precision, &context, 10_000);
        }
    }
});
