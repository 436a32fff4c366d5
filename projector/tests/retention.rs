//! Series retention through the running projector: the sweep deletes expired items, a late
//! point into an expired hour is merged into the rollups that still hold the hour (once, even
//! when its batch is re-delivered) without bringing the raw bucket back, and a range past a
//! resolution's retention is served from the next coarser one.

mod common;

use common::{Fault, TestTables, log_in, metric};
use shoal_projector::series::sweep::sweep_tenant;
use shoal_projector::series::{self, Resolution, Retention, SeriesPoint};
use shoal_projector::{ProjectorConfig, catch_up};
use shoal_storage::{EventLog, Table};
use std::sync::Arc;
use std::time::Duration;

const T: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const CPU: &str = "cpu{host=a}";

fn retention() -> Retention {
    Retention {
        raw: Duration::from_secs(86_400),
        ..Retention::default()
    }
}

async fn sweep(tables: &dyn Table, now: i64) {
    let mut budget = 100_000;
    let (_, stopped) = sweep_tenant(tables, "acme", &retention(), now, None, &mut budget)
        .await
        .unwrap();
    assert_eq!(stopped, None);
}

async fn read(tables: &dyn Table, from: i64, to: i64, resolution: Resolution) -> Vec<SeriesPoint> {
    series::read_range(tables, "acme", CPU, from, to, resolution)
        .await
        .unwrap()
}

async fn assert_nothing_kept(tables: &dyn Table, from: i64, to: i64) {
    for resolution in Resolution::ALL {
        let points = read(tables, from, to, resolution).await;
        assert!(points.is_empty(), "{resolution:?}: {points:?}");
    }
}

fn slot(points: &[SeriesPoint], t: i64) -> (u64, f64, f64, f64) {
    let point = points
        .iter()
        .find(|point| point.t == t)
        .unwrap_or_else(|| panic!("no slot at {t} in {points:?}"));
    (point.count, point.sum, point.min, point.max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_point_into_an_expired_hour_is_merged_into_the_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 2));
    // Small transactions: the DynamoDB-shaped flush, where a lost answer re-delivers a batch
    // whose items are already written.
    let tables = Arc::new(TestTables::new(5));
    let projections = vec![Arc::new(series::Series) as Arc<dyn shoal_projector::Projection>];
    let config = ProjectorConfig::default();
    log.append(vec![
        metric(CPU, T + 10_000, 1.0),
        metric(CPU, T + 20_000, 3.0),
        metric(CPU, T + 70_000, 5.0),
        metric(CPU, T + 3 * DAY, 7.0),
    ])
    .await
    .unwrap();
    catch_up(log.clone(), tables.clone(), &projections, &config)
        .await
        .unwrap();

    let now = T + 3 * DAY + HOUR;
    sweep(tables.as_ref(), now).await;
    sweep(tables.as_ref(), now).await;
    assert!(
        read(tables.as_ref(), T, T + HOUR, Resolution::Raw)
            .await
            .is_empty()
    );
    let fences = series::fences(tables.as_ref(), "acme", CPU).await.unwrap();
    assert_eq!(fences.raw, T + 2 * DAY + HOUR);
    let kept = read(tables.as_ref(), T + 3 * DAY, now, Resolution::Raw).await;
    assert_eq!(kept.len(), 1, "the recent hour's raw bucket stays");

    // One new timestamp and one that the deleted bucket already held; the answer of the first
    // transaction is lost, so the batch is folded again.
    log.append(vec![
        metric(CPU, T + 30_000, 10.0),
        metric(CPU, T + 10_000, 2.0),
    ])
    .await
    .unwrap();
    tables.arm(1, Fault::After);
    loop {
        match catch_up(log.clone(), tables.clone(), &projections, &config).await {
            Ok(_) => break,
            Err(error) => assert!(error.is_transient(), "{error}"),
        }
    }

    assert!(
        read(tables.as_ref(), T, T + HOUR, Resolution::Raw)
            .await
            .is_empty(),
        "an expired raw bucket is never written again"
    );
    // The minute slot had 1.0 and 3.0; it takes 10.0 and, its raw bucket being gone, the
    // re-sent timestamp as a new point.
    let minutes = read(tables.as_ref(), T, T + HOUR, Resolution::Minute).await;
    assert_eq!(slot(&minutes, T), (4, 16.0, 1.0, 10.0));
    assert_eq!(slot(&minutes, T + MINUTE), (1, 5.0, 5.0, 5.0));
    let hours = read(tables.as_ref(), T, T + HOUR, Resolution::Hour).await;
    assert_eq!(slot(&hours, T), (5, 21.0, 1.0, 10.0));
    let days = read(tables.as_ref(), T, T + 3 * DAY, Resolution::Day).await;
    assert_eq!(slot(&days, T), (5, 21.0, 1.0, 10.0));
    assert_eq!(slot(&days, T + 3 * DAY), (1, 7.0, 7.0, 7.0));

    // The query side: a raw read of the old hour is served from the minute rollups.
    let serving = series::serving(&fences, Resolution::Raw, T);
    assert_eq!(serving.resolution, Resolution::Minute);
    assert_eq!(serving.expired_before, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_older_than_every_resolution_are_dropped_and_ranges_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log_in(dir.path(), 1));
    let tables = Arc::new(TestTables::new(usize::MAX));
    let projections = vec![Arc::new(series::Series) as Arc<dyn shoal_projector::Projection>];
    let config = ProjectorConfig::default();
    let short = Retention {
        raw: Duration::from_secs(86_400),
        minute: Duration::from_secs(86_400),
        hour: Duration::from_secs(86_400),
        day: Some(Duration::from_secs(86_400)),
    };
    log.append(vec![metric(CPU, T, 1.0), metric(CPU, T + 1100 * DAY, 2.0)])
        .await
        .unwrap();
    catch_up(log.clone(), tables.clone(), &projections, &config)
        .await
        .unwrap();
    let now = T + 1100 * DAY + HOUR;
    for _ in 0..2 {
        let mut budget = 1000;
        sweep_tenant(tables.as_ref(), "acme", &short, now, None, &mut budget)
            .await
            .unwrap();
    }
    assert_nothing_kept(tables.as_ref(), T, T + DAY).await;
    let fences = series::fences(tables.as_ref(), "acme", CPU).await.unwrap();
    let serving = series::serving(&fences, Resolution::Minute, T);
    assert_eq!(serving.resolution, Resolution::Day);
    assert_eq!(serving.expired_before, Some(fences.day));
    assert!(fences.day > T);

    // A late point that old writes nothing at all.
    log.append(vec![metric(CPU, T + 5, 9.0)]).await.unwrap();
    catch_up(log.clone(), tables.clone(), &projections, &config)
        .await
        .unwrap();
    assert_nothing_kept(tables.as_ref(), T, T + DAY).await;
    let recent = read(tables.as_ref(), now - DAY, now, Resolution::Raw).await;
    assert_eq!(recent.len(), 1);
}
