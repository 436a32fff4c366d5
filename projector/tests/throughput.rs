//! Projection throughput on a pre-filled embedded log, and series bytes per point. Ignored by
//! default; run with
//! `SHOAL_BENCH_EVENTS=1000000 cargo test --release -p shoal-projector --test throughput -- --ignored --nocapture`;
//! `SHOAL_BENCH_PROJECTIONS=archive,entities` limits the one-by-one runs to those projections
//! (for profiling one of them).

mod common;

use shoal_projector::{ProjectorConfig, catch_up, series};
use shoal_storage::embedded::EmbeddedTables;
use shoal_storage::{EventLog, Query, Table, TableName, Value};
use std::sync::Arc;
use std::time::Instant;

const T: i64 = 1_704_067_200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn projection_throughput() {
    let total: usize = std::env::var("SHOAL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(common::log_in(&dir.path().join("log"), 4));
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for n in 0..total {
        let event = if n % 5 < 3 {
            common::track(
                &format!("user-{}", n % 20_000),
                if n % 3 == 0 { "login" } else { "view" },
                T + n as i64 * 50,
                r#"{"amount":3,"plan":"pro"}"#,
            )
        } else {
            // 1000 series, one point each every 10 s, slowly varying integral values.
            let series = n % 1000;
            common::metric(
                &format!("cpu{{host=h{series}}}"),
                T + (n / 1000) as i64 * 10_000,
                ((n / 1000) % 100) as f64,
            )
        };
        batch.push(event);
        if batch.len() == 10_000 {
            log.append(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    log.append(batch).await.unwrap();
    println!("filled {total} events in {:?}", started.elapsed());

    let config = ProjectorConfig {
        batch_events: 50_000,
        ..ProjectorConfig::default()
    };
    let only: Option<Vec<String>> = std::env::var("SHOAL_BENCH_PROJECTIONS")
        .ok()
        .map(|names| names.split(',').map(str::to_owned).collect());
    for projection in shoal_projector::default_projections(log.as_ref()) {
        if let Some(only) = &only
            && !only.iter().any(|name| name == projection.name())
        {
            continue;
        }
        let tables: Arc<dyn Table> = Arc::new(
            EmbeddedTables::open(&dir.path().join(format!("{}.redb", projection.name()))).unwrap(),
        );
        let started = Instant::now();
        let applied = catch_up(
            log.clone(),
            tables.clone(),
            std::slice::from_ref(&projection),
            &config,
        )
        .await
        .unwrap();
        let elapsed = started.elapsed();
        println!(
            "{:>9}: {applied} events in {elapsed:?} = {:.0} events/s",
            projection.name(),
            applied as f64 / elapsed.as_secs_f64()
        );
        if projection.name() == series::NAME {
            let (mut bytes, mut points) = (0usize, 0f64);
            for host in 0..1000 {
                let pk = format!("v1#acme#series#cpu{{host=h{host}}}");
                let page = tables
                    .query(
                        TableName::Views,
                        &Query::partition(pk)
                            .range(shoal_storage::SortRange::Prefix("raw#".into())),
                    )
                    .await
                    .unwrap();
                for (_, item) in page.items {
                    bytes += item
                        .get("data")
                        .and_then(Value::as_bytes)
                        .map_or(0, <[u8]>::len);
                    points += item.get("points").and_then(Value::as_f64).unwrap_or(0.0);
                }
            }
            println!(
                "   series: {points} points, {bytes} bytes of raw data = {:.2} bytes/point",
                bytes as f64 / points
            );
        }
    }
    if only.is_some() {
        return;
    }
    // All three at once, sharing the log reads' cores, one tables file.
    let tables: Arc<dyn Table> =
        Arc::new(EmbeddedTables::open(&dir.path().join("all.redb")).unwrap());
    let started = Instant::now();
    let projections = shoal_projector::default_projections(log.as_ref());
    let mut tasks = Vec::new();
    for projection in projections {
        let (log, tables, config) = (log.clone(), tables.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            catch_up(log, tables, &[projection], &config).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "all three concurrently: {total} events in {elapsed:?} = {:.0} events/s of log",
        total as f64 / elapsed.as_secs_f64()
    );
}
