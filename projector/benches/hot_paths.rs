//! Hot paths of the projector: folding a log into the default read models (archive, series,
//! entities: decode, fold, encode, flush with the checkpoint) and the series bucket codec
//! (a day of 1-minute points, a day of hourly rollup slots).
//! Run with `cargo bench -p shoal-projector --bench hot_paths`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shoal_projector::series::Agg;
use shoal_projector::series::codec::{
    decode_points, decode_slots, decode_slots_in, encode_points, encode_slots,
};
use shoal_projector::{ProjectorConfig, catch_up};
use shoal_schemas::{Event, EventKind};
use shoal_storage::embedded::{EmbeddedLog, LogConfig, SyncMode};
use shoal_storage::memory::MemoryTables;
use shoal_storage::{EventLog, Table};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

const T: i64 = 1_767_225_600_000;
const EVENTS: u64 = 20_000;

/// Three product events in five and two metric points, as `tests/throughput.rs` mixes them.
fn event(n: u64) -> Event {
    let (kind, entity, name, properties, value) = if n % 5 < 3 {
        (
            EventKind::Track,
            format!("user-{}", n % 2_000),
            if n.is_multiple_of(3) { "login" } else { "view" },
            r#"{"amount":3,"plan":"pro"}"#,
            None,
        )
    } else {
        (
            EventKind::Metric,
            format!("cpu{{host=h{}}}", n % 100),
            "cpu",
            "{}",
            Some((n % 100) as f64),
        )
    };
    Event {
        id: uuid::Uuid::from_u64_pair(11, n),
        tenant: "acme".into(),
        kind,
        name: name.into(),
        entity,
        timestamp: T + n as i64 * 50,
        received_at: T + n as i64 * 50,
        properties: properties.into(),
        value,
    }
}

fn fold(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = LogConfig::new(dir.path().join("log"));
    config.sync = SyncMode::Relaxed;
    config.dedup_capacity = 0;
    let log = Arc::new(EmbeddedLog::open(config).expect("opens the log"));
    runtime.block_on(async {
        for start in (0..EVENTS).step_by(1000) {
            let batch = (start..start + 1000).map(event).collect();
            log.append(batch).await.expect("appends");
        }
    });
    let log_dyn: Arc<dyn EventLog> = log.clone();
    let config = ProjectorConfig::default();
    let mut group = c.benchmark_group("projection");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    for projection in shoal_projector::default_projections(log_dyn.as_ref()) {
        let name = format!("catch up {EVENTS} events: {}", projection.name());
        let projections = [projection];
        group.bench_function(name, |b| {
            b.iter_batched(
                || -> Arc<dyn Table> { Arc::new(MemoryTables::new()) },
                |tables| {
                    runtime
                        .block_on(catch_up(log_dyn.clone(), tables, &projections, &config))
                        .expect("catches up")
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    runtime.block_on(log.shutdown());
}

fn series_codec(c: &mut Criterion) {
    let day = T - T % 86_400_000;
    let points: BTreeMap<i64, f64> = (0..1440)
        .map(|minute| {
            let wave = 30.0 + 20.0 * (minute as f64 / 229.0).sin();
            (day + minute * 60_000, (wave * 10.0).round() / 10.0)
        })
        .collect();
    let slots: BTreeMap<u32, Agg> = (0..24u32)
        .map(|hour| {
            let agg = Agg {
                count: 60,
                sum: 1800.0 + f64::from(hour),
                min: 10.0,
                max: 55.5,
                last: 31.2,
            };
            (hour, agg)
        })
        .collect();
    let mut group = c.benchmark_group("series bucket");
    group.throughput(Throughput::Elements(points.len() as u64));
    group.bench_function("encode a day of 1-minute points", |b| {
        b.iter(|| encode_points(day, black_box(&points)))
    });
    let encoded = encode_points(day, &points);
    group.bench_function("decode a day of 1-minute points", |b| {
        b.iter(|| decode_points(day, black_box(&encoded)).expect("decodes"))
    });
    group.throughput(Throughput::Elements(slots.len() as u64));
    group.bench_function("encode a day of hourly slots", |b| {
        b.iter(|| encode_slots(black_box(&slots), 24))
    });
    let encoded_slots = encode_slots(&slots, 24);
    group.bench_function("decode a day of hourly slots", |b| {
        b.iter(|| decode_slots(black_box(&encoded_slots)).expect("decodes"))
    });
    group.finish();
    slot_ranges(c);
}

/// Range reads of rollup items: slots v3 (blocks of an hour of minutes, a day of hours) against
/// the same slots in v2 (one block: `u32::MAX` slots), which decodes up to the range's end.
fn slot_ranges(c: &mut Criterion) {
    let slot = |i: u32| Agg {
        count: 60,
        sum: 1800.0 + f64::from(i % 50),
        min: 10.0,
        max: 55.5,
        last: f64::from(i % 97) * 0.5,
    };
    let minutes: BTreeMap<u32, Agg> = (0..1440u32)
        .map(|i| {
            let value = f64::from(i % 97) * 0.5;
            let agg = Agg {
                count: 1,
                sum: value,
                min: value,
                max: value,
                last: value,
            };
            (i, agg)
        })
        .collect();
    let hours: BTreeMap<u32, Agg> = (0..32 * 24u32).map(|i| (i, slot(i))).collect();
    let mut group = c.benchmark_group("rollup range reads");
    for (name, slots, block, range) in [
        ("a day of minute slots", &minutes, 60, 0..=1439),
        (
            "the 11th hour of a day of minute slots",
            &minutes,
            60,
            600..=659,
        ),
        (
            "the 21st day of 32 days of hourly slots",
            &hours,
            24,
            480..=503,
        ),
    ] {
        let span = u64::from(range.end() - range.start()) + 1;
        group.throughput(Throughput::Elements(span));
        for (format, bytes) in [
            ("v3", encode_slots(slots, block)),
            ("v2", encode_slots(slots, u32::MAX)),
        ] {
            group.bench_function(format!("{name}, {format}"), |b| {
                b.iter(|| decode_slots_in(black_box(&bytes), range.clone()).expect("decodes"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, fold, series_codec);
criterion_main!(benches);
