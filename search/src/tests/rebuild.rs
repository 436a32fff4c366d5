//! A change of a tenant's searchable fields: the rebuild beside the live documents, the flip,
//! the deletion of the old generation, and a crash half-way.

use super::{event, found, ids, open, query, record};
use crate::index::Annotation;
use crate::{DocType, SearchFields, TenantFields};
use shoal_schemas::{Event, EventKind};
use shoal_storage::LogRecord;

fn only(names: &[&str]) -> SearchFields {
    SearchFields::Only(names.iter().map(|name| (*name).to_owned()).collect())
}

/// Only `plan` searchable, in properties and in traits.
fn plan_only() -> TenantFields {
    TenantFields {
        properties: only(&["plan"]),
        traits: only(&["plan"]),
    }
}

fn history() -> (Vec<Event>, Vec<LogRecord>) {
    let events = vec![
        event(
            "t1",
            EventKind::Track,
            "export",
            "acme",
            10,
            r#"{"plan":"trial","note":"hush"}"#,
        ),
        event(
            "t1",
            EventKind::Identify,
            "identify",
            "acme",
            20,
            r#"{"plan":"trial","ssn":"secret"}"#,
        ),
        event(
            "t2",
            EventKind::Track,
            "export",
            "initech",
            30,
            r#"{"plan":"paid","note":"hush"}"#,
        ),
        event(
            "t1",
            EventKind::Track,
            "login",
            "globex",
            40,
            r#"{"plan":"paid","note":"quiet"}"#,
        ),
    ];
    let records = vec![
        record(0, events[..2].to_vec()),
        record(100, events[2..].to_vec()),
    ];
    (events, records)
}

fn entity_query(text: &str) -> crate::SearchRequest {
    let mut request = query(text);
    request.doc_type = Some(DocType::Entity);
    request
}

#[test]
fn new_fields_answer_only_once_the_rebuild_has_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut indexer) = open(dir.path());
    let shard = "0".to_owned();
    let (events, records) = history();
    indexer.apply(&shard, &records).unwrap();
    indexer
        .annotate(vec![Annotation {
            tenant: "t1".into(),
            entity: "acme".into(),
            stage: Some("trial".into()),
            band: Some("good".into()),
        }])
        .unwrap();
    indexer.commit().unwrap();
    assert_eq!(found(&index, "t1", &query("hush")), ids([&events[0]]));
    // 4 events and 3 entities.
    assert_eq!(index.status().docs, 7);

    index.set_search_fields("t1", plan_only());
    indexer.reconcile(&index.wanted_fields());
    indexer.commit().unwrap();
    let status = index.partition_status("t1");
    assert_eq!(status.generation, 0);
    assert_eq!(status.rebuilding.as_ref().unwrap().generation, 1);
    // Searches keep answering from the live documents while the rebuild has not caught up.
    assert_eq!(found(&index, "t1", &query("hush")), ids([&events[0]]));
    assert!(!indexer.flip_if_caught_up(std::slice::from_ref(&shard)));

    // A live event arrives; then the rebuild reads the log from its start.
    let late = event(
        "t1",
        EventKind::Track,
        "export",
        "acme",
        50,
        r#"{"plan":"trial","note":"hush"}"#,
    );
    let late_record = record(200, vec![late.clone()]);
    indexer
        .apply(&shard, std::slice::from_ref(&late_record))
        .unwrap();
    assert_eq!(indexer.rebuild_behind(&shard), Some(None));
    let mut log = records.clone();
    log.push(late_record);
    indexer.apply_rebuild(&shard, &log).unwrap();
    assert_eq!(indexer.rebuild_behind(&shard), None);
    assert!(indexer.flip_if_caught_up(std::slice::from_ref(&shard)));
    indexer.commit().unwrap();

    let status = index.partition_status("t1");
    assert_eq!((status.generation, status.fields), (1, plan_only()));
    assert!(status.rebuilding.is_none());
    assert!(found(&index, "t1", &query("hush")).is_empty());
    let mut trial = ids([&events[0], &events[1], &late]);
    trial.insert("entity:acme".to_owned());
    assert_eq!(found(&index, "t1", &query("plan:trial")), trial);
    assert!(found(&index, "t1", &entity_query("secret")).is_empty());
    // The entity kept its stage and band, which are not in the log.
    let acme = index.search("t1", &entity_query("acme")).unwrap();
    assert_eq!(acme.total, 1);
    assert_eq!(
        (acme.hits[0].stage.as_deref(), acme.hits[0].band.as_deref()),
        (Some("trial"), Some("good"))
    );
    // Another tenant is untouched.
    assert_eq!(found(&index, "t2", &query("hush")), ids([&events[2]]));

    // The commit after the flip deletes the old generation: 5 events and 3 entities remain.
    assert!(indexer.pending() > 0, "the deletion is owed a commit");
    indexer.commit().unwrap();
    assert_eq!(index.status().docs, 8);

    // Later events are indexed with the new fields only.
    let newest = event(
        "t1",
        EventKind::Track,
        "export",
        "acme",
        60,
        r#"{"plan":"trial","note":"hush"}"#,
    );
    indexer
        .apply(&shard, &[record(300, vec![newest.clone()])])
        .unwrap();
    indexer.commit().unwrap();
    assert!(found(&index, "t1", &query("hush")).is_empty());
    assert_eq!(index.status().docs, 9);
}

#[test]
fn a_rebuild_that_has_caught_up_moves_with_live_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut indexer) = open(dir.path());
    let shard = "0".to_owned();
    // Nothing read yet: the rebuild starts caught up, and live reads feed both generations.
    index.set_search_fields("t1", plan_only());
    indexer.reconcile(&index.wanted_fields());
    let (_, records) = history();
    indexer.apply(&shard, &records).unwrap();
    assert_eq!(indexer.rebuild_behind(&shard), None);
    assert!(indexer.flip_if_caught_up(std::slice::from_ref(&shard)));
    indexer.commit().unwrap();
    indexer.commit().unwrap();
    assert_eq!(index.partition_status("t1").generation, 1);
    assert!(found(&index, "t1", &query("hush")).is_empty());
    assert_eq!(found(&index, "t1", &query("plan:paid")).len(), 1);
    // t1: 3 events, 2 entities; t2: 1 event, 1 entity.
    assert_eq!(index.status().docs, 7);
}

#[test]
fn a_crash_mid_rebuild_resumes_it_and_changing_the_fields_again_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let shard = "0".to_owned();
    let (events, records) = history();
    {
        let (index, mut indexer) = open(dir.path());
        indexer.apply(&shard, &records).unwrap();
        indexer.commit().unwrap();
        index.set_search_fields("t1", plan_only());
        indexer.reconcile(&index.wanted_fields());
        indexer.apply_rebuild(&shard, &records[..1]).unwrap();
        indexer.commit().unwrap();
        // Read and indexed but not committed: lost, as in a crash.
        indexer.apply_rebuild(&shard, &records[1..]).unwrap();
    }
    let (index, mut indexer) = open(dir.path());
    let rebuilding = index.partition_status("t1").rebuilding.unwrap();
    assert_eq!(rebuilding.events_indexed, 2);
    assert_eq!(
        indexer.rebuild_behind(&shard),
        Some(records[0].last_position())
    );
    indexer.apply_rebuild(&shard, &records[1..]).unwrap();
    assert!(indexer.flip_if_caught_up(std::slice::from_ref(&shard)));
    indexer.commit().unwrap();
    indexer.commit().unwrap();
    // Exactly one copy of each t1 document in the new generation, none in the old one: two
    // events and the entity have plan=trial.
    assert_eq!(found(&index, "t1", &query("plan:trial")).len(), 3);
    assert!(found(&index, "t1", &query("hush")).is_empty());
    assert_eq!(index.status().docs, 7);

    // Everything searchable again: a rebuild into generation 2, abandoned half-way for a
    // third choice, which builds generation 3.
    index.set_search_fields("t1", TenantFields::default());
    indexer.reconcile(&index.wanted_fields());
    indexer.apply_rebuild(&shard, &records[..1]).unwrap();
    indexer.commit().unwrap();
    assert_eq!(
        index.partition_status("t1").rebuilding.unwrap().generation,
        2
    );
    let notes = TenantFields {
        properties: only(&["note"]),
        traits: SearchFields::All,
    };
    index.set_search_fields("t1", notes.clone());
    indexer.reconcile(&index.wanted_fields());
    indexer.commit().unwrap();
    assert_eq!(
        index.partition_status("t1").rebuilding.unwrap().generation,
        3
    );
    indexer.apply_rebuild(&shard, &records).unwrap();
    assert!(indexer.flip_if_caught_up(std::slice::from_ref(&shard)));
    indexer.commit().unwrap();
    indexer.commit().unwrap();
    let status = index.partition_status("t1");
    assert_eq!((status.generation, status.fields), (3, notes));
    assert_eq!(found(&index, "t1", &query("hush")), ids([&events[0]]));
    // `plan` is now searchable in traits only.
    assert_eq!(
        found(&index, "t1", &query("plan:trial")),
        ["entity:acme".to_owned()].into()
    );
    assert_eq!(found(&index, "t1", &entity_query("secret")).len(), 1);
    // Generations 1 and 2 are gone.
    assert_eq!(index.status().docs, 7);
}
