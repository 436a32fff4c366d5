//! Deduplication of client ids across restarts: the window rebuilt on open, its bounds, and
//! server ids kept out of it.

use super::*;

#[tokio::test]
async fn dedup_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(&dir);
    let tenant = run_tenant();
    let log = open(&config);
    let batch = events(&tenant, 5, 50);
    log.append(batch.clone()).await.unwrap();
    log.shutdown().await;
    drop(log);

    let log = open(&config);
    let outcomes = log.append(batch).await.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|outcome| *outcome == AppendOutcome::Duplicate)
    );
    stored(&log.append(events(&tenant, 5, 5)).await.unwrap());
    assert_eq!(read_all(&log).await.len(), 55);
}

#[tokio::test]
async fn rebuilt_dedup_keeps_to_its_capacity_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    config.dedup_capacity = 5;
    config.dedup_window = Duration::from_secs(3600);
    let tenant = run_tenant();
    let log = open(&config);
    let batch = events(&tenant, 2, 10);
    for event in &batch {
        log.append(vec![event.clone()]).await.unwrap();
    }
    log.shutdown().await;
    drop(log);
    let log = open(&config);
    let outcomes = log.append(batch).await.unwrap();
    let duplicates = outcomes
        .iter()
        .map(|outcome| *outcome == AppendOutcome::Duplicate)
        .collect::<Vec<_>>();
    assert_eq!(
        duplicates,
        [[false; 5], [true; 5]].concat(),
        "only the newest five"
    );
    log.shutdown().await;
    drop(log);

    // An hour-long window: a copy stored two hours before the newest event is forgotten.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    config.dedup_window = Duration::from_secs(3600);
    let log = open(&config);
    let mut old = event(&tenant, "w", 1);
    old.received_at -= 2 * 3600 * 1000;
    let recent = event(&tenant, "w", 2);
    log.append(vec![old.clone(), recent.clone()]).await.unwrap();
    log.shutdown().await;
    drop(log);
    let log = open(&config);
    let mut retried_old = old;
    retried_old.received_at = recent.received_at;
    let outcomes = log.append(vec![retried_old, recent]).await.unwrap();
    assert!(matches!(outcomes[0], AppendOutcome::Stored(_)));
    assert_eq!(outcomes[1], AppendOutcome::Duplicate);
}

#[tokio::test]
async fn server_ids_neither_consult_nor_fill_the_dedup_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(&dir);
    config.shard_count = 1;
    config.dedup_capacity = 2;
    let tenant = run_tenant();
    let log = open(&config);
    let client = event(&tenant, "c", 0);
    stored(&log.append(vec![client.clone()]).await.unwrap());

    // Many more server-id events than the window holds: they must not push the client's id
    // out, since no retry can ever repeat them.
    let minted = events(&tenant, 3, 20);
    let outcomes = log
        .append_with_origin(minted.iter().cloned().map(NewEvent::server).collect())
        .await
        .unwrap();
    assert_eq!(stored(&outcomes).len(), 20);
    assert_eq!(
        log.append(vec![client.clone()]).await.unwrap(),
        vec![AppendOutcome::Duplicate],
        "the client id is still in the window"
    );

    // The window is not consulted for them either: the same event sent again as a server id
    // (which ingest never does) is stored again, while as a client id it is a duplicate.
    let again = log
        .append_with_origin(vec![
            NewEvent::server(client.clone()),
            NewEvent::client(client.clone()),
        ])
        .await
        .unwrap();
    assert!(matches!(again[0], AppendOutcome::Stored(_)), "{again:?}");
    assert_eq!(again[1], AppendOutcome::Duplicate);
    assert_eq!(read_all(&log).await.len(), 22);
}
