//! Unit tests of the crate against real indexes in temporary directories.

use crate::{DocType, Error, FacetField, Indexer, MAX_WINDOW, SearchIndex, SearchRequest, SortBy};
use shoal_schemas::{Event, EventKind, Sequence};
use shoal_storage::LogRecord;
use std::collections::BTreeSet;
use std::sync::Arc;

mod filters;
mod history;
mod rebuild;

fn event(tenant: &str, kind: EventKind, name: &str, entity: &str, ts: i64, props: &str) -> Event {
    Event {
        id: uuid::Uuid::new_v4(),
        tenant: tenant.into(),
        kind,
        name: name.into(),
        entity: entity.into(),
        timestamp: ts,
        received_at: ts + 1,
        properties: props.into(),
        value: None,
    }
}

fn record(sequence: u64, events: Vec<Event>) -> LogRecord {
    LogRecord {
        sequence: Sequence::from_u64(sequence),
        first_index: 0,
        events,
    }
}

fn open(dir: &std::path::Path) -> (Arc<SearchIndex>, Indexer) {
    let index = Arc::new(SearchIndex::open(dir).unwrap());
    let indexer = Indexer::new(Arc::clone(&index), 1, 20_000_000).unwrap();
    (index, indexer)
}

fn query(text: &str) -> SearchRequest {
    SearchRequest {
        query: text.into(),
        limit: 100,
        ..SearchRequest::default()
    }
}

/// The ids of the event hits and the entities of the entity hits.
fn found(index: &SearchIndex, tenant: &str, request: &SearchRequest) -> BTreeSet<String> {
    let response = index.search(tenant, request).unwrap();
    assert_eq!(
        response.total as usize,
        response.hits.len(),
        "one page expected"
    );
    response
        .hits
        .into_iter()
        .map(|hit| hit.id.unwrap_or_else(|| format!("entity:{}", hit.entity)))
        .collect()
}

fn ids<const N: usize>(events: [&Event; N]) -> BTreeSet<String> {
    events.iter().map(|event| event.id.to_string()).collect()
}

fn position_error(index: &SearchIndex, text: &str) -> usize {
    match index.search("t1", &query(text)) {
        Err(Error::Syntax { position, .. }) => position,
        other => panic!("{text:?}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn every_syntax_finds_exact_hits() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut indexer) = open(dir.path());
    let export = event(
        "t1",
        EventKind::Track,
        "export_csv",
        "acme",
        1_000,
        r#"{"plan":"trial","note":"error while exporting"}"#,
    );
    let report = event(
        "t1",
        EventKind::Track,
        "report_viewed",
        "acme",
        2_000,
        r#"{"report":"churn export","rows":12}"#,
    );
    let pricing = event(
        "t1",
        EventKind::Page,
        "pricing",
        "globex",
        3_000,
        r#"{"plan":"enterprise","path":"/pricing"}"#,
    );
    let identify = event(
        "t1",
        EventKind::Identify,
        "identify",
        "globex",
        4_000,
        r#"{"plan":"enterprise","address":{"city":"Paris"}}"#,
    );
    let all = vec![
        export.clone(),
        report.clone(),
        pricing.clone(),
        identify.clone(),
    ];
    indexer.apply(&"0".to_owned(), &[record(0, all)]).unwrap();
    indexer.commit().unwrap();

    assert_eq!(
        found(&index, "t1", &query("export")),
        ids([&export, &report])
    );
    assert_eq!(
        found(&index, "t1", &query("EXPORT acme")),
        ids([&export, &report])
    );
    assert_eq!(
        found(&index, "t1", &query("\"churn export\"")),
        ids([&report])
    );
    assert!(found(&index, "t1", &query("\"export churn\"")).is_empty());
    assert_eq!(
        found(&index, "t1", &query("export AND NOT churn")),
        ids([&export])
    );
    assert_eq!(found(&index, "t1", &query("export -churn")), ids([&export]));
    assert_eq!(
        found(&index, "t1", &query("churn OR pricing")),
        ids([&report, &pricing])
    );
    assert_eq!(
        found(&index, "t1", &query("(churn OR pricing) AND NOT globex")),
        ids([&report])
    );
    let mut not_acme = query("-acme");
    not_acme.doc_type = Some(DocType::Event);
    assert_eq!(found(&index, "t1", &not_acme), ids([&pricing, &identify]));
    assert_eq!(found(&index, "t1", &query("name:export")), ids([&export]));
    assert_eq!(
        found(&index, "t1", &query("name:export plan:trial")),
        ids([&export])
    );
    assert!(found(&index, "t1", &query("name:export plan:enterprise")).is_empty());
    assert_eq!(found(&index, "t1", &query("kind:page")), ids([&pricing]));
    assert_eq!(
        found(&index, "t1", &query("address.city:paris")).len(),
        2,
        "the identify event and the entity"
    );
    let mut entity_paris = query("address.city:paris");
    entity_paris.doc_type = Some(DocType::Entity);
    assert_eq!(
        found(&index, "t1", &entity_paris),
        BTreeSet::from(["entity:globex".to_owned()])
    );
    let mut events_only = query("plan:enterprise");
    events_only.doc_type = Some(DocType::Event);
    assert_eq!(
        found(&index, "t1", &events_only),
        ids([&pricing, &identify])
    );
    let mut tracks = query("");
    tracks.kinds = vec![EventKind::Track];
    assert_eq!(found(&index, "t1", &tracks), ids([&export, &report]));
    let mut window = query("");
    window.doc_type = Some(DocType::Event);
    window.from = Some(2_000);
    window.to = Some(3_000);
    assert_eq!(found(&index, "t1", &window), ids([&report, &pricing]));

    let response = index.search("t1", &query("churn")).unwrap();
    assert_eq!(
        response.hits[0].snippet.matches("<b>churn</b>").count(),
        1,
        "{}",
        response.hits[0].snippet
    );
    let response = index.search("t1", &query("plan:trial")).unwrap();
    assert!(
        response.hits[0].snippet.contains("<b>trial</b>"),
        "{}",
        response.hits[0].snippet
    );
}

#[test]
fn bad_syntax_names_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _indexer) = open(dir.path());
    // Where tantivy's grammar stops: the end, for an unclosed phrase or parenthesis.
    assert_eq!(position_error(&index, "export \"churn"), 13);
    assert_eq!(position_error(&index, "(export AND churn"), 17);
    assert_eq!(position_error(&index, "export ) x"), 7);
    assert_eq!(position_error(&index, "name:"), 5);
    // In characters, not bytes.
    assert_eq!(position_error(&index, "café ) x"), 5);
    // Found after parsing: the field whose value does not fit.
    assert_eq!(position_error(&index, "export timestamp:abc"), 7);
    // Refused by the strict grammar only: the dangling operator.
    assert_eq!(position_error(&index, "export AND"), 7);
    assert!(matches!(
        index.search(
            "t1",
            &SearchRequest {
                cursor: Some("x".into()),
                ..query("a")
            }
        ),
        Err(Error::InvalidArgument {
            param: "cursor",
            ..
        })
    ));
}

#[test]
fn tenants_never_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut indexer) = open(dir.path());
    let mine = event(
        "t1",
        EventKind::Track,
        "login",
        "acme",
        1,
        r#"{"secret":"alpha"}"#,
    );
    let theirs = event(
        "t2",
        EventKind::Track,
        "login",
        "acme",
        2,
        r#"{"secret":"omega"}"#,
    );
    indexer
        .apply(
            &"0".to_owned(),
            &[record(0, vec![mine.clone(), theirs.clone()])],
        )
        .unwrap();
    indexer.commit().unwrap();

    assert!(found(&index, "t1", &query("omega")).is_empty());
    assert!(found(&index, "t1", &query("tenant:t2")).is_empty());
    assert!(
        found(&index, "t1", &query("omega OR tenant:t2 OR *"))
            .iter()
            .all(|key| *key != theirs.id.to_string())
    );
    assert_eq!(
        found(&index, "t1", &query("login")),
        BTreeSet::from([mine.id.to_string()])
    );
    assert_eq!(
        found(&index, "t2", &query("login")),
        BTreeSet::from([theirs.id.to_string()])
    );
    // One event and one entity each.
    assert_eq!(index.search("t1", &query("")).unwrap().total, 2);
    assert_eq!(index.search("t2", &query("")).unwrap().total, 2);
    assert_eq!(index.status().docs, 4);
}

#[test]
fn entities_are_updated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut indexer) = open(dir.path());
    let shard = "0".to_owned();
    let first = event(
        "t1",
        EventKind::Identify,
        "identify",
        "acme",
        10,
        r#"{"plan":"trial","city":"Oslo"}"#,
    );
    indexer.apply(&shard, &[record(0, vec![first])]).unwrap();
    indexer.commit().unwrap();
    let second = event(
        "t1",
        EventKind::Identify,
        "identify",
        "acme",
        20,
        r#"{"plan":"paid","seats":3}"#,
    );
    let later = event("t1", EventKind::Track, "login", "acme", 30, "{}");
    indexer
        .apply(&shard, &[record(1, vec![second, later])])
        .unwrap();
    indexer
        .annotate(vec![crate::index::Annotation {
            tenant: "t1".into(),
            entity: "acme".into(),
            stage: Some("active".into()),
            band: Some("good".into()),
        }])
        .unwrap();
    indexer.commit().unwrap();

    let mut entities = query("acme");
    entities.doc_type = Some(DocType::Entity);
    let response = index.search("t1", &entities).unwrap();
    assert_eq!(response.total, 1);
    let hit = &response.hits[0];
    assert_eq!(hit.timestamp, Some(30));
    assert_eq!(
        (hit.stage.as_deref(), hit.band.as_deref()),
        (Some("active"), Some("good"))
    );
    assert_eq!(
        serde_json::Value::Object(hit.traits.clone().unwrap()),
        serde_json::json!({"plan":"paid","city":"Oslo","seats":3})
    );
    entities.query = "plan:trial".into();
    assert_eq!(index.search("t1", &entities).unwrap().total, 0);
    entities.query = "plan:paid city:oslo".into();
    assert_eq!(index.search("t1", &entities).unwrap().total, 1);
    entities.query = String::new();
    entities.stages = vec!["active".into()];
    assert_eq!(index.search("t1", &entities).unwrap().total, 1);
    entities.bands = vec!["bad".into()];
    assert_eq!(index.search("t1", &entities).unwrap().total, 0);
    let mut faceted = query("");
    faceted.facets = FacetField::ALL.to_vec();
    let facets = index.search("t1", &faceted).unwrap().facets.unwrap();
    let stages = facets.stage.unwrap();
    assert_eq!(stages.len(), 1);
    assert_eq!((stages[0].value.as_str(), stages[0].count), ("active", 1));
    // 3 events + 1 entity.
    assert_eq!(index.status().docs, 4);
}

#[test]
fn resumes_from_the_commit_payload_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let shard = "0".to_owned();
    let records: Vec<LogRecord> = (0..6)
        .map(|sequence| {
            let events = (0..5)
                .map(|n| {
                    event(
                        "t1",
                        EventKind::Identify,
                        "seen",
                        &format!("c{n}"),
                        sequence as i64 * 10 + n,
                        &format!(r#"{{"step":"s{sequence}"}}"#),
                    )
                })
                .collect();
            record(sequence * 100, events)
        })
        .collect();
    {
        let (_index, mut indexer) = open(dir.path());
        indexer.apply(&shard, &records[..3]).unwrap();
        indexer.commit().unwrap();
        // Applied but never committed: lost with the process, as in a crash.
        indexer.apply(&shard, &records[3..5]).unwrap();
    }
    let (index, mut indexer) = open(dir.path());
    let committed = indexer.position(&shard).cloned().unwrap();
    assert_eq!(committed, records[2].last_position().unwrap());
    assert_eq!(index.status().shards[0].position, committed.to_string());
    assert_eq!(index.status().docs, 15 + 5);
    // A replay from further back than the payload (a backend re-sending) changes nothing twice.
    indexer.apply(&shard, &records).unwrap();
    indexer.commit().unwrap();
    assert_eq!(index.status().docs, 30 + 5);
    let mut events = query("");
    events.doc_type = Some(DocType::Event);
    let listed: Vec<String> = index
        .search("t1", &events)
        .unwrap()
        .hits
        .into_iter()
        .filter_map(|hit| hit.id)
        .collect();
    let expected: BTreeSet<String> = records
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.id.to_string()))
        .collect();
    assert_eq!(listed.len(), 30);
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), expected);
    let mut per_step = query("");
    per_step.doc_type = Some(DocType::Event);
    for sequence in 0..6 {
        per_step.query = format!("step:s{sequence}");
        assert_eq!(
            index.search("t1", &per_step).unwrap().total,
            5,
            "step s{sequence}"
        );
    }
    let mut entities = query("step:s5");
    entities.doc_type = Some(DocType::Entity);
    assert_eq!(index.search("t1", &entities).unwrap().total, 5);
}

#[test]
fn pages_by_time_and_counts_facets() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut indexer) = open(dir.path());
    let events: Vec<Event> = (0..25)
        .map(|n| {
            event(
                "t1",
                EventKind::Track,
                if n % 5 == 0 { "signup" } else { "click" },
                "acme",
                1_000 + n,
                r#"{"page":"home"}"#,
            )
        })
        .collect();
    indexer
        .apply(&"0".to_owned(), &[record(0, events.clone())])
        .unwrap();
    indexer.commit().unwrap();
    let mut request = query("home");
    request.sort = SortBy::TimeDesc;
    request.limit = 10;
    request.facets = vec![FacetField::Name];
    let mut seen = Vec::new();
    loop {
        let page = index.search("t1", &request).unwrap();
        assert_eq!(page.total, 25);
        assert!(page.total_exact);
        let facets = page.facets.expect("facets asked for");
        assert_eq!(
            facets
                .name
                .expect("the name facet asked for")
                .iter()
                .map(|f| (f.value.as_str(), f.count))
                .collect::<Vec<_>>(),
            [("click", 20), ("signup", 5)]
        );
        assert_eq!((facets.stage, facets.band), (None, None), "not asked for");
        seen.extend(page.hits.into_iter().map(|hit| hit.timestamp.unwrap()));
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<i64> = (0..25).rev().map(|n| 1_000 + n).collect();
    assert_eq!(seen, expected);
}

#[test]
fn totals_count_every_match_past_the_deepest_page() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut indexer) = open(dir.path());
    let matching = MAX_WINDOW as i64 + 5;
    let events: Vec<Event> = (0..matching)
        .map(|n| {
            let name = if n % 2 == 0 { "even" } else { "odd" };
            event(
                "t1",
                EventKind::Track,
                name,
                "acme",
                n,
                r#"{"note":"common"}"#,
            )
        })
        .collect();
    let other = event(
        "t2",
        EventKind::Track,
        "even",
        "acme",
        0,
        r#"{"note":"common"}"#,
    );
    indexer
        .apply(
            &"0".to_owned(),
            &[record(0, events), record(1, vec![other])],
        )
        .unwrap();
    indexer.commit().unwrap();

    let mut request = query("common");
    request.doc_type = Some(DocType::Event);
    request.limit = 10;
    for sort in [SortBy::Relevance, SortBy::TimeDesc] {
        request.sort = sort;
        let page = index.search("t1", &request).unwrap();
        assert_eq!(
            (page.total, page.total_exact),
            (matching as u64, true),
            "{sort:?}"
        );
        assert_eq!(page.hits.len(), 10);
        assert_eq!(page.next.as_deref(), Some("10"));
        assert_eq!(page.facets, None, "facets are only counted when asked for");
    }

    request.facets = vec![FacetField::Name, FacetField::Band];
    let faceted = index.search("t1", &request).unwrap();
    assert_eq!(
        (faceted.total, faceted.total_exact),
        (matching as u64, true)
    );
    let facets = faceted.facets.unwrap();
    let names: Vec<(String, u64)> = facets
        .name
        .unwrap()
        .into_iter()
        .map(|facet| (facet.value, facet.count))
        .collect();
    assert_eq!(names, [("even".to_owned(), 5003), ("odd".to_owned(), 5002)]);
    assert_eq!(
        facets.band,
        Some(Vec::new()),
        "asked for, no event has a band"
    );
    assert_eq!(facets.stage, None);

    let other_tenant = index.search("t2", &query("common")).unwrap();
    assert_eq!((other_tenant.total, other_tenant.total_exact), (1, true));
}

#[test]
fn an_index_of_another_schema_is_replaced_by_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What an older version might have left: another schema, a document, a payload.
        let mut builder = tantivy::schema::Schema::builder();
        let text = builder.add_text_field("text", tantivy::schema::TEXT);
        let old = tantivy::Index::create_in_dir(dir.path(), builder.build()).unwrap();
        let mut writer: tantivy::IndexWriter = old.writer_with_num_threads(1, 15_000_000).unwrap();
        writer
            .add_document(tantivy::doc!(text => "left over"))
            .unwrap();
        let mut prepared = writer.prepare_commit().unwrap();
        prepared.set_payload(r#"{"shards":{"0":{"position":"9:0","last_received_at":1}}}"#);
        prepared.commit().unwrap();
    }
    let (index, mut indexer) = open(dir.path());
    assert_eq!(index.status().docs, 0);
    assert_eq!(
        indexer.position(&"0".to_owned()),
        None,
        "indexing starts from the log's start"
    );
    let event = event(
        "t1",
        EventKind::Track,
        "signup",
        "acme",
        1,
        r#"{"plan":"trial"}"#,
    );
    indexer
        .apply(&"0".to_owned(), &[record(0, vec![event.clone()])])
        .unwrap();
    indexer.commit().unwrap();
    drop(indexer);
    assert_eq!(found(&index, "t1", &query("trial")), ids([&event]));
    drop(index);
    // Opened again with the same schema, it is kept.
    let (index, indexer) = open(dir.path());
    assert_eq!(index.status().docs, 2, "the event and its entity");
    assert!(indexer.position(&"0".to_owned()).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_follows_the_log_and_commits_on_shutdown() {
    use shoal_storage::EventLog;
    use shoal_storage::embedded::{EmbeddedLog, LogConfig};
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(LogConfig::new(dir.path().join("log"))).unwrap());
    let first: Vec<Event> = (0..20)
        .map(|n| {
            event(
                "t1",
                EventKind::Track,
                "opened",
                &format!("c{n}"),
                n,
                r#"{"screen":"inbox"}"#,
            )
        })
        .collect();
    log.append(first).await.unwrap();
    let index = Arc::new(SearchIndex::open(&dir.path().join("search")).unwrap());
    let config = crate::SearchConfig {
        writer_memory_mib: 20,
        ..crate::SearchConfig::default()
    };
    let worker =
        crate::SearchWorker::spawn(Arc::clone(&index), log.clone(), config.clone()).unwrap();
    let mut events = query("inbox");
    events.doc_type = Some(DocType::Event);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while index.search("t1", &events).unwrap().total < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "not indexed: {:?}",
            index.status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Appended while the worker runs: searchable without any restart.
    log.append(vec![event(
        "t1",
        EventKind::Track,
        "opened",
        "late",
        99,
        r#"{"screen":"outbox"}"#,
    )])
    .await
    .unwrap();
    while index.search("t1", &query("outbox")).unwrap().total < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "late event not indexed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    worker.shutdown().await.unwrap();
    drop(index);
    let reopened = Arc::new(SearchIndex::open(&dir.path().join("search")).unwrap());
    assert_eq!(reopened.status().docs, 21 + 21);
    let again = crate::SearchWorker::spawn(Arc::clone(&reopened), log.clone(), config).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    again.shutdown().await.unwrap();
    assert_eq!(reopened.status().docs, 21 + 21);
    log.shutdown().await;
}
