//! Hot paths of the embedded log: encoding events and compressing a block (what the writer
//! thread does per group commit), decoding a block (what every reader and projector does), and
//! a whole `append` of 1000 events through the shard writers, without fsync (the disk's fsync
//! latency is measured by `shoal-bench fsync`; here it would only add noise).
//! Run with `cargo bench -p shoal-storage --bench log`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shoal_schemas::{Event, EventKind};
use shoal_storage::EventLog;
use shoal_storage::embedded::log::codec::{BlockDecoder, BlockEncoder, encode_event};
use shoal_storage::embedded::{EmbeddedLog, LogConfig, SyncMode};
use std::hint::black_box;

const EVENTS: usize = 1000;

/// About 200 bytes of JSON each, as the ingest bench sends.
fn events() -> Vec<Event> {
    (0..EVENTS)
        .map(|n| Event {
            id: uuid::Uuid::from_u64_pair(7, n as u64),
            tenant: "default".into(),
            kind: EventKind::Track,
            name: ["page_viewed", "button_clicked", "api_called"][n % 3].into(),
            entity: format!("cust-{:06}", (n * 7919) % 100_000),
            timestamp: 1_767_225_600_000 + n as i64,
            received_at: 1_767_225_600_000 + n as i64,
            properties: format!(
                r#"{{"path":"/docs/{}","referrer":"google","duration_ms":{},"ua":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"}}"#,
                n % 12,
                n * 37 % 30_000
            ),
            value: None,
        })
        .collect()
}

fn raw(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        encode_event(event, &mut out).expect("encodes");
    }
    out
}

fn codec(c: &mut Criterion) {
    let events = events();
    let mut group = c.benchmark_group("log codec");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("encode 1000 events (postcard)", |b| {
        let mut out = Vec::with_capacity(256 * EVENTS);
        b.iter(|| {
            out.clear();
            for event in &events {
                encode_event(black_box(event), &mut out).expect("encodes");
            }
            black_box(out.len())
        })
    });
    let raw = raw(&events);
    let mut encoder = BlockEncoder::new(1).expect("zstd context");
    group.bench_function("compress a 1000-event block (zstd 1)", |b| {
        b.iter(|| {
            encoder
                .encode(EVENTS as u32, black_box(&raw))
                .expect("compresses")
        })
    });
    let payload = encoder.encode(EVENTS as u32, &raw).expect("compresses");
    let mut decoder = BlockDecoder::new().expect("zstd context");
    group.bench_function("decode a 1000-event block", |b| {
        b.iter(|| decoder.decode(black_box(&payload)).expect("decodes").len())
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = LogConfig::new(dir.path().join("log"));
    config.sync = SyncMode::Relaxed;
    // Fresh UUIDs per event would be needed to exercise dedup; the bench measures the write path.
    config.dedup_capacity = 0;
    let log = EmbeddedLog::open(config).expect("opens the log");
    let events = events();
    let mut group = c.benchmark_group("log append");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("append 1000 events, 4 shards, no fsync", |b| {
        b.iter_batched(
            || events.clone(),
            |batch| runtime.block_on(log.append(batch)).expect("appends"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    runtime.block_on(log.shutdown());
}

criterion_group!(benches, codec, append);
criterion_main!(benches);
