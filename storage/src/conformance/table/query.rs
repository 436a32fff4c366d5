//! Queries of one partition (order, ranges, reverse, pages, cursors) and parallel scans.

use super::*;

/// The sort keys of the shared fixture, in byte order.
const ORDERED: [&str; 8] = ["B", "a", "a#1", "a#2", "b", "ba", "c", "é"];

/// Writes [`ORDERED`] (shuffled) into a fresh partition, plus neighbouring partitions whose
/// keys share its prefix, and returns the partition.
async fn ordered_fixture(table: &dyn Table, name: &str) -> String {
    let pk = partition(name);
    let shuffled = [5, 2, 7, 0, 4, 1, 6, 3];
    let ops = shuffled
        .iter()
        .map(|&index| {
            put(
                &Key::new(pk.clone(), ORDERED[index]),
                item(&[("sk", s(ORDERED[index]))]),
            )
        })
        .collect();
    table.write(TableName::Views, ops).await.expect("write");
    // Neighbours: partitions extending this one's key (`pk\0` is where the embedded scan of
    // `pk` stops), and one it extends.
    let neighbours = [
        format!("{pk}a"),
        format!("{pk}\0"),
        format!("{pk}\u{1}"),
        pk[..pk.len() - 1].to_owned(),
    ];
    for neighbour in neighbours {
        let ops = ["a", "b", "zz"]
            .iter()
            .map(|sk| {
                put(
                    &Key::new(neighbour.clone(), *sk),
                    item(&[("neighbour", Value::Bool(true))]),
                )
            })
            .collect();
        table.write(TableName::Views, ops).await.expect("write");
    }
    pk
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|text| (*text).to_owned()).collect()
}

/// A query returns sort keys in byte order ("B" < "a" < "a#1" < "b" < "ba" < "é").
pub async fn query_orders_by_sort_key_bytes(table: Arc<dyn Table>) {
    let pk = ordered_fixture(&*table, "order").await;
    let page = table
        .query(TableName::Views, &Query::partition(pk.clone()))
        .await
        .expect("query");
    assert_eq!(sort_keys(&page), strings(&ORDERED));
    for (key, attributes) in &page.items {
        assert_eq!(key.pk, pk);
        assert_eq!(attributes, &item(&[("sk", s(&key.sk))]));
    }
}

/// Every [`SortRange`], bounds inclusive, forward and reverse.
pub async fn query_ranges(table: Arc<dyn Table>) {
    let pk = ordered_fixture(&*table, "ranges").await;
    let cases: Vec<(SortRange, Vec<&str>)> = vec![
        (SortRange::All, ORDERED.to_vec()),
        (SortRange::Prefix("a".into()), vec!["a", "a#1", "a#2"]),
        (SortRange::Prefix("a#".into()), vec!["a#1", "a#2"]),
        (SortRange::Prefix("b".into()), vec!["b", "ba"]),
        (SortRange::Prefix("é".into()), vec!["é"]),
        (SortRange::Prefix("x".into()), vec![]),
        (
            SortRange::Between("a".into(), "b".into()),
            vec!["a", "a#1", "a#2", "b"],
        ),
        (SortRange::Between("a#1".into(), "a#1".into()), vec!["a#1"]),
        (SortRange::Between("a#3".into(), "az".into()), vec![]),
        (SortRange::From("b".into()), vec!["b", "ba", "c", "é"]),
        (SortRange::From("bb".into()), vec!["c", "é"]),
        (SortRange::To("b".into()), vec!["B", "a", "a#1", "a#2", "b"]),
        (SortRange::To("A".into()), vec![]),
    ];
    for (range, expected) in cases {
        let forward = Query::partition(pk.clone()).range(range.clone());
        let found = query_sort_keys(&*table, TableName::Views, forward).await;
        assert_eq!(found, strings(&expected), "{range:?}");
        let reverse = Query::partition(pk.clone()).range(range.clone()).reverse();
        let found = query_sort_keys(&*table, TableName::Views, reverse).await;
        let mut reversed = strings(&expected);
        reversed.reverse();
        assert_eq!(found, reversed, "reverse {range:?}");
    }
}

/// Reverse order, and a reverse query with a limit takes the largest sort keys.
pub async fn query_reverse(table: Arc<dyn Table>) {
    let pk = ordered_fixture(&*table, "reverse").await;
    let mut expected = strings(&ORDERED);
    expected.reverse();
    let all = Query::partition(pk.clone()).reverse();
    assert_eq!(
        query_sort_keys(&*table, TableName::Views, all).await,
        expected
    );
    let latest = table
        .query(TableName::Views, &Query::partition(pk).reverse().limit(2))
        .await
        .expect("query");
    assert_eq!(sort_keys(&latest), strings(&["é", "c"]));
    assert!(latest.next.is_some());
}

/// Paging with a limit and the cursor visits every item exactly once, in order, in both
/// directions and within a range; only the last page has no cursor, even when it is full.
pub async fn query_pages_visit_every_item_once(table: Arc<dyn Table>) {
    let pk = partition("paging");
    let all: Vec<String> = (0..23).map(|index| format!("item#{index:03}")).collect();
    let ops = all
        .iter()
        .map(|sk| put(&Key::new(pk.clone(), sk.clone()), Item::new()))
        .collect();
    table.write(TableName::Views, ops).await.expect("write");
    let in_range: Vec<String> = all[5..18].to_vec();
    let range = SortRange::Between(in_range[0].clone(), in_range[in_range.len() - 1].clone());
    let cases = [
        (SortRange::All, all.clone()),
        (SortRange::Prefix("item#".into()), all.clone()),
        (range, in_range),
    ];
    for (range, expected) in cases {
        for limit in [1, 4, 5, 13, 100] {
            for reverse in [false, true] {
                let mut query = Query::partition(pk.clone())
                    .range(range.clone())
                    .limit(limit);
                let mut wanted = expected.clone();
                if reverse {
                    query = query.reverse();
                    wanted.reverse();
                }
                let pages = all_pages(&*table, TableName::Views, query).await;
                let visited: Vec<String> = pages.iter().flat_map(sort_keys).collect();
                assert_eq!(visited, wanted, "{range:?} limit {limit} reverse {reverse}");
                assert_eq!(
                    pages.len(),
                    wanted.len().div_ceil(limit).max(1),
                    "{range:?} limit {limit}"
                );
                let (last, full) = pages.split_last().expect("at least one page");
                assert!(full.iter().all(|page| page.items.len() == limit));
                assert!(last.next.is_none() && !last.items.is_empty());
            }
        }
    }
}

/// `query_many` answers each query as `query` does, in the order asked: ranges, reverse,
/// limits, a cursor, partitions with nothing in them, one partition asked twice; a bad cursor
/// in any of them fails the call.
pub async fn query_many_answers_each_as_query_does(table: Arc<dyn Table>) {
    let pk = ordered_fixture(&*table, "many").await;
    let other = ordered_fixture(&*table, "many-other").await;
    let first = table
        .query(TableName::Views, &Query::partition(pk.clone()).limit(3))
        .await
        .expect("query");
    let cursor = first.next.clone().expect("a second page");
    let queries = [
        Query::partition(pk.clone()),
        Query::partition(other.clone()).range(SortRange::Between("a".into(), "b".into())),
        Query::partition(partition("many-empty")),
        Query::partition(pk.clone()).reverse().limit(2),
        Query::partition(pk.clone()).limit(3).after(Some(cursor)),
        Query::partition(other.clone()).range(SortRange::Prefix("a#".into())),
        Query::partition(pk.clone()).range(SortRange::Between("b".into(), "ba".into())),
        Query::partition(pk.clone()),
    ];
    for count in [0, 1, 2, queries.len()] {
        let asked = &queries[..count];
        let many = table
            .query_many(TableName::Views, asked)
            .await
            .expect("query_many");
        assert_eq!(many.len(), count);
        for (query, page) in asked.iter().zip(&many) {
            let one = table.query(TableName::Views, query).await.expect("query");
            assert_eq!(sort_keys(page), sort_keys(&one), "{query:?}");
            assert_eq!(page.items, one.items, "{query:?}");
            assert_eq!(page.next, one.next, "{query:?}");
        }
    }
    let bad_cursor = [
        Query::partition(pk.clone()),
        Query::partition(pk.clone()).after(Some("garbage".into())),
    ];
    let answer = table.query_many(TableName::Views, &bad_cursor).await;
    assert!(matches!(answer, Err(Error::InvalidCursor)), "{answer:?}");
    let inverted = [
        Query::partition(pk.clone()).range(SortRange::Between("b".into(), "a".into())),
        Query::partition(pk),
    ];
    let answer = table.query_many(TableName::Views, &inverted).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
}

/// A query never returns items of another partition, even one whose key extends its own, and
/// never items of another table.
pub async fn query_keeps_to_its_partition(table: Arc<dyn Table>) {
    let pk = ordered_fixture(&*table, "partition").await;
    let mut query = Query::partition(pk.clone()).limit(3);
    loop {
        let page = table.query(TableName::Views, &query).await.expect("query");
        assert!(page.items.iter().all(|(key, _)| key.pk == pk));
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => break,
        }
    }
    let prefix = Query::partition(pk.clone()).range(SortRange::Prefix("z".into()));
    assert!(
        query_sort_keys(&*table, TableName::Views, prefix)
            .await
            .is_empty()
    );
    let other_table = table
        .query(TableName::Control, &Query::partition(pk))
        .await
        .expect("query");
    assert_eq!(other_table, Page::default());
}

/// Malformed cursors and inverted ranges are refused.
pub async fn query_rejects_bad_cursors_and_ranges(table: Arc<dyn Table>) {
    let pk = ordered_fixture(&*table, "bad-cursor").await;
    for cursor in ["", "garbage", "c1.!!!.???", "{\"pk\":1}"] {
        let query = Query::partition(pk.clone()).after(Some(cursor.to_owned()));
        let answer = table.query(TableName::Views, &query).await;
        assert!(
            matches!(answer, Err(Error::InvalidCursor)),
            "{cursor:?}: {answer:?}"
        );
    }
    let inverted = Query::partition(pk).range(SortRange::Between("b".into(), "a".into()));
    let answer = table.query(TableName::Views, &inverted).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
}

/// A parallel scan: every item in exactly one segment, each partition whole in one segment,
/// pages continue by cursor; impossible segments and bad cursors are refused.
pub async fn scan_segments_hold_whole_partitions_once(table: Arc<dyn Table>) {
    let prefix = partition("scan");
    let mut written = std::collections::BTreeSet::new();
    for p in 0..12 {
        let pk = format!("{prefix}-{p}");
        let ops: Vec<WriteOp> = (0..5)
            .map(|i| {
                let key = Key::new(pk.clone(), format!("{i:02}"));
                written.insert((key.pk.clone(), key.sk.clone()));
                put(&key, item(&[("n", n(f64::from(i)))]))
            })
            .collect();
        table.write(TableName::Views, ops).await.expect("write");
    }
    for total in [1, 3] {
        let mut seen = std::collections::BTreeSet::new();
        let mut segment_of: std::collections::BTreeMap<String, u32> = Default::default();
        for segment in 0..total {
            let mut cursor = None;
            loop {
                let page = table
                    .scan(
                        TableName::Views,
                        &crate::Scan::segment(segment, total).limit(4).after(cursor),
                    )
                    .await
                    .expect("scan");
                assert!(page.items.len() <= 4, "a page holds at most the limit");
                for (key, attributes) in page.items {
                    if !key.pk.starts_with(&prefix) {
                        continue;
                    }
                    assert!(attributes.contains_key("n"));
                    assert_eq!(
                        *segment_of.entry(key.pk.clone()).or_insert(segment),
                        segment,
                        "partition {} split over segments",
                        key.pk
                    );
                    assert!(seen.insert((key.pk, key.sk)), "an item seen twice");
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        assert_eq!(seen, written, "{total} segments miss items");
    }
    for bad in [
        crate::Scan::segment(3, 3),
        crate::Scan::segment(0, 0),
        crate::Scan::segment(0, 1).limit(0),
    ] {
        assert!(
            matches!(
                table.scan(TableName::Views, &bad).await,
                Err(Error::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
    let garbage = crate::Scan::segment(0, 1).after(Some("garbage".into()));
    assert!(matches!(
        table.scan(TableName::Views, &garbage).await,
        Err(Error::InvalidCursor)
    ));
}
