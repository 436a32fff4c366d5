//! The partition and type filters, decided per segment (`filter.rs`).

use super::{event, found, open, query, record};
use crate::{DocType, SearchRequest};
use shoal_schemas::{Event, EventKind};
use std::collections::BTreeSet;

/// The partition and type filters are decided per segment (`filter.rs`): one segment that
/// holds a single tenant and mostly events (both filters left out or turned into an exclusion),
/// one that mixes tenants (both required). Every answer must still be exact.
#[test]
fn filters_are_exact_whatever_a_segment_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut indexer) = open(dir.path());
    let shard = "0".to_owned();
    let login = |tenant: &str, entity: &str, ts: i64| {
        event(tenant, EventKind::Track, "login", entity, ts, "{}")
    };
    let only_t1: Vec<Event> = (0..5).map(|n| login("t1", "acme", n)).collect();
    indexer
        .apply(&shard, &[record(0, only_t1.clone())])
        .unwrap();
    indexer.commit().unwrap();
    let mixed = vec![
        login("t1", "beta", 10),
        login("t2", "gamma", 11),
        login("t1", "beta", 12),
        login("t2", "gamma", 13),
        login("t2", "gamma", 14),
    ];
    indexer.apply(&shard, &[record(1, mixed.clone())]).unwrap();
    indexer.commit().unwrap();
    assert!(index.reader.searcher().segment_readers().len() >= 2);

    let typed = |text: &str, doc_type: Option<DocType>| SearchRequest {
        doc_type,
        ..query(text)
    };
    let total =
        |tenant: &str, request: &SearchRequest| index.search(tenant, request).unwrap().total;
    for text in ["", "login"] {
        assert_eq!(
            total("t1", &typed(text, Some(DocType::Event))),
            7,
            "{text:?}"
        );
        assert_eq!(
            total("t2", &typed(text, Some(DocType::Event))),
            3,
            "{text:?}"
        );
    }
    assert_eq!(total("t1", &typed("", Some(DocType::Entity))), 2);
    assert_eq!(total("t2", &typed("", Some(DocType::Entity))), 1);
    assert_eq!(total("t1", &typed("", None)), 9);
    assert_eq!(total("t2", &typed("", None)), 4);
    let t1_events: BTreeSet<String> = only_t1
        .iter()
        .chain(mixed.iter().filter(|event| &*event.tenant == "t1"))
        .map(|event| event.id.to_string())
        .collect();
    assert_eq!(
        found(&index, "t1", &typed("login", Some(DocType::Event))),
        t1_events
    );
    assert!(found(&index, "t2", &typed("acme OR beta", None)).is_empty());
}
