//! The [`Table`] conformance suite: what every backend (in-memory double, embedded redb,
//! DynamoDB under the emulator) must do alike.
//!
//! Each check is a public async function taking a fresh `Arc<dyn Table>` and panicking on a
//! failure. [`table_conformance!`](crate::table_conformance) expands to one `#[tokio::test]` per
//! check, so every backend runs the same list:
//!
//! ```ignore
//! mod conformance {
//!     shoal_storage::table_conformance!(make_fixture().await);
//! }
//! ```
//!
//! The expression is evaluated inside each (async) test; it yields either an `Arc<dyn Table>` or
//! a pair `(Arc<dyn Table>, guard)` whose guard (a temporary directory, an emulator table) lives
//! until the check ends — see [`TableFixture`].
//!
//! Every check writes under partition keys of its own (a random run id in each), so checks may
//! share one database (the DynamoDB emulator) and run in parallel. Beyond DynamoDB's documented
//! behaviour, the suite pins down what the trait leaves open: `next` is `None` on the last page
//! even when that page is full; a batch write or a transaction naming one key twice, an empty
//! transaction, an update naming one attribute twice, an empty key part and a non-finite number
//! are all [`Error::InvalidArgument`].

use crate::{
    Condition, Error, Item, Key, Page, Query, SortRange, Table, TableName, TransactOp, Update,
    Value, WriteOp,
};
use shoal_schemas::{Position, Sequence};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the expression given to [`table_conformance!`](crate::table_conformance) yields: the
/// table under test, and whatever must stay alive while a check runs.
pub trait TableFixture {
    fn table(&self) -> Arc<dyn Table>;
}

impl TableFixture for Arc<dyn Table> {
    fn table(&self) -> Arc<dyn Table> {
        Arc::clone(self)
    }
}

impl<Guard> TableFixture for (Arc<dyn Table>, Guard) {
    fn table(&self) -> Arc<dyn Table> {
        Arc::clone(&self.0)
    }
}

/// One `#[tokio::test]` per check of [`crate::conformance::table`], each on a fresh table made
/// by the given expression (evaluated inside the async test, so it may `.await`).
#[macro_export]
macro_rules! table_conformance {
    ($make:expr) => {
        $crate::__table_conformance_tests! {
            $make;
            round_trips_every_value_type,
            keys_keep_unicode_and_separators,
            missing_items_are_none,
            put_replaces_the_whole_item,
            batch_get_answers_in_the_order_asked,
            write_applies_puts_and_deletes,
            query_orders_by_sort_key_bytes,
            query_ranges,
            query_reverse,
            query_pages_visit_every_item_once,
            query_keeps_to_its_partition,
            query_rejects_bad_cursors_and_ranges,
            update_creates_a_missing_item,
            update_sets_adds_and_removes,
            update_add_to_a_non_number_is_invalid,
            update_conditions,
            failed_condition_changes_nothing,
            last_applied_position,
            transact_is_all_or_nothing,
            transact_relaxed_is_all_or_nothing,
            transact_rejects_empty_and_duplicates,
            tables_are_independent,
            invalid_input_is_rejected,
            scan_segments_hold_whole_partitions_once,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __table_conformance_tests {
    ($make:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let fixture = $make;
                let table = $crate::conformance::table::TableFixture::table(&fixture);
                $crate::conformance::table::$check(table).await;
            }
        )+
    };
}

/// A partition key unique to this run of this check.
fn partition(name: &str) -> String {
    format!("conformance-{}#{name}", uuid::Uuid::new_v4().simple())
}

fn s(text: &str) -> Value {
    Value::S(text.to_owned())
}

fn n(number: f64) -> Value {
    Value::N(number)
}

fn item(attributes: &[(&str, Value)]) -> Item {
    attributes
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn put(key: &Key, attributes: Item) -> WriteOp {
    WriteOp::Put {
        key: key.clone(),
        item: attributes,
    }
}

async fn put_one(table: &dyn Table, name: TableName, key: &Key, attributes: Item) {
    table
        .write(name, vec![put(key, attributes)])
        .await
        .expect("put");
}

async fn get(table: &dyn Table, name: TableName, key: &Key) -> Option<Item> {
    table.get(name, key).await.expect("get")
}

/// Every page of `query`, following cursors to the end.
async fn all_pages(table: &dyn Table, name: TableName, query: Query) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut next = query;
    loop {
        let page = table.query(name, &next).await.expect("query");
        let cursor = page.next.clone();
        pages.push(page);
        match cursor {
            Some(cursor) => next = next.after(Some(cursor)),
            None => return pages,
        }
        assert!(pages.len() < 10_000, "paging does not end");
    }
}

fn sort_keys(page: &Page) -> Vec<String> {
    page.items.iter().map(|(key, _)| key.sk.clone()).collect()
}

async fn query_sort_keys(table: &dyn Table, name: TableName, query: Query) -> Vec<String> {
    let page = table.query(name, &query).await.expect("query");
    assert_eq!(page.next, None, "one page expected for {query:?}");
    sort_keys(&page)
}

fn every_value_type() -> Item {
    let nested = item(&[
        (
            "list",
            Value::L(vec![n(1.0), s("two"), Value::Null, Value::Bool(false)]),
        ),
        (
            "map",
            Value::M(item(&[("deep", Value::B(vec![0, 1, 254, 255]))])),
        ),
    ]);
    item(&[
        ("string", s("plain")),
        ("empty_string", s("")),
        ("unicode", s("ünïcödé 日本語 🐟")),
        ("integer", n(42.0)),
        ("negative", n(-7.25)),
        ("fraction", n(0.1)),
        ("zero", n(0.0)),
        ("max_exact", n(9_007_199_254_740_992.0)),
        ("min_exact", n(-9_007_199_254_740_992.0)),
        ("tiny", n(1.5e-100)),
        ("huge", n(1.25e120)),
        ("binary", Value::B((0..=255).collect())),
        ("empty_binary", Value::B(Vec::new())),
        ("yes", Value::Bool(true)),
        ("no", Value::Bool(false)),
        ("null", Value::Null),
        (
            "list",
            Value::L(vec![
                n(1.0),
                Value::L(vec![s("inner")]),
                Value::M(nested.clone()),
            ]),
        ),
        ("empty_list", Value::L(Vec::new())),
        ("map", Value::M(nested)),
        ("empty_map", Value::M(BTreeMap::new())),
    ])
}

/// Put, get, delete of an item holding every value type, nested lists and maps included.
pub async fn round_trips_every_value_type(table: Arc<dyn Table>) {
    let key = Key::new(partition("values"), "item");
    let stored = every_value_type();
    put_one(&*table, TableName::Views, &key, stored.clone()).await;
    assert_eq!(
        get(&*table, TableName::Views, &key).await,
        Some(stored.clone())
    );
    // The same values through an update's SET.
    let updated_key = Key::new(key.pk.clone(), "updated");
    let update = stored
        .iter()
        .fold(Update::new(updated_key.clone()), |update, (name, value)| {
            update.set(name.clone(), value.clone())
        });
    let returned = table
        .update(TableName::Views, update)
        .await
        .expect("update");
    assert_eq!(returned, stored);
    assert_eq!(
        get(&*table, TableName::Views, &updated_key).await,
        Some(stored)
    );
    let delete = vec![WriteOp::Delete { key: key.clone() }];
    table.write(TableName::Views, delete).await.expect("delete");
    assert_eq!(get(&*table, TableName::Views, &key).await, None);
}

/// Keys with `#`, unicode and other separators come back exactly, from get and query alike.
pub async fn keys_keep_unicode_and_separators(table: Arc<dyn Table>) {
    let pk = format!("{}#ünï#日本", partition("keys"));
    let sort_keys_in = [
        "2024-01-01T00:00:00Z#id",
        "a#b#c",
        "é",
        "🐟",
        "with space",
        "dot.ted",
    ];
    for (index, sk) in sort_keys_in.iter().enumerate() {
        let key = Key::new(pk.clone(), *sk);
        put_one(
            &*table,
            TableName::Events,
            &key,
            item(&[("i", n(index as f64))]),
        )
        .await;
        assert_eq!(
            get(&*table, TableName::Events, &key).await,
            Some(item(&[("i", n(index as f64))]))
        );
    }
    let page = table
        .query(TableName::Events, &Query::partition(pk.clone()))
        .await
        .expect("query");
    let mut expected: Vec<&str> = sort_keys_in.to_vec();
    expected.sort_unstable();
    assert_eq!(sort_keys(&page), expected);
    assert!(page.items.iter().all(|(key, _)| key.pk == pk));
}

/// A key never written reads as `None`, and deleting it is not an error.
pub async fn missing_items_are_none(table: Arc<dyn Table>) {
    let key = Key::new(partition("missing"), "nothing");
    for name in TableName::ALL {
        assert_eq!(get(&*table, name, &key).await, None);
    }
    let delete = vec![WriteOp::Delete { key: key.clone() }];
    table
        .write(TableName::Views, delete)
        .await
        .expect("delete of a missing item");
    let empty = table
        .query(TableName::Views, &Query::partition(key.pk.clone()))
        .await
        .expect("query");
    assert_eq!(empty, Page::default());
}

/// A put replaces the whole item; it does not merge attributes.
pub async fn put_replaces_the_whole_item(table: Arc<dyn Table>) {
    let key = Key::new(partition("replace"), "item");
    put_one(
        &*table,
        TableName::Views,
        &key,
        item(&[("a", n(1.0)), ("b", n(2.0))]),
    )
    .await;
    put_one(&*table, TableName::Views, &key, item(&[("c", n(3.0))])).await;
    assert_eq!(
        get(&*table, TableName::Views, &key).await,
        Some(item(&[("c", n(3.0))]))
    );
}

/// One answer per key, in the order asked, `None` for missing keys; more keys than one DynamoDB
/// `BatchGetItem` takes (100).
pub async fn batch_get_answers_in_the_order_asked(table: Arc<dyn Table>) {
    let pk = partition("batch");
    let ops = (0..120u8)
        .map(|index| {
            put(
                &Key::new(pk.clone(), format!("{index:03}")),
                item(&[("i", n(index.into()))]),
            )
        })
        .collect();
    table.write(TableName::Views, ops).await.expect("write");
    // Descending, with missing keys among them and one from another partition at the end.
    let mut keys: Vec<Key> = (0..120u8)
        .rev()
        .map(|index| Key::new(pk.clone(), format!("{index:03}")))
        .collect();
    keys.insert(3, Key::new(pk.clone(), "missing-1"));
    keys.insert(101, Key::new(pk.clone(), "missing-2"));
    keys.push(Key::new(partition("other"), "000"));
    let answers = table
        .batch_get(TableName::Views, &keys)
        .await
        .expect("batch get");
    assert_eq!(answers.len(), keys.len());
    for (key, answer) in keys.iter().zip(&answers) {
        let expected = key
            .sk
            .parse::<u8>()
            .ok()
            .filter(|_| key.pk == pk)
            .map(|index| item(&[("i", n(index.into()))]));
        assert_eq!(answer, &expected, "{key:?}");
    }
    let none = table
        .batch_get(TableName::Views, &[])
        .await
        .expect("empty batch get");
    assert!(none.is_empty());
}

/// A batch of puts and deletes, larger than DynamoDB's 25 per request, all applied.
pub async fn write_applies_puts_and_deletes(table: Arc<dyn Table>) {
    let pk = partition("write");
    let key = |index: usize| Key::new(pk.clone(), format!("{index:03}"));
    let ops = (0..60)
        .map(|index| put(&key(index), item(&[("i", n(index as f64))])))
        .collect();
    table.write(TableName::Views, ops).await.expect("write");
    // Delete the even ones, overwrite the odd ones below 20, in one batch.
    let ops = (0..60)
        .filter_map(|index| match index {
            _ if index % 2 == 0 => Some(WriteOp::Delete { key: key(index) }),
            _ if index < 20 => Some(put(&key(index), item(&[("odd", Value::Bool(true))]))),
            _ => None,
        })
        .collect();
    table.write(TableName::Views, ops).await.expect("write");
    let pages = all_pages(&*table, TableName::Views, Query::partition(pk.clone())).await;
    let found: Vec<(Key, Item)> = pages.into_iter().flat_map(|page| page.items).collect();
    let expected: Vec<(Key, Item)> = (1..60)
        .step_by(2)
        .map(|index| {
            let attributes = if index < 20 {
                item(&[("odd", Value::Bool(true))])
            } else {
                item(&[("i", n(index as f64))])
            };
            (key(index), attributes)
        })
        .collect();
    assert_eq!(found, expected);
    table
        .write(TableName::Views, Vec::new())
        .await
        .expect("an empty batch is a no-op");
}

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

/// An update of a missing item creates it and returns it.
pub async fn update_creates_a_missing_item(table: Arc<dyn Table>) {
    let key = Key::new(partition("create"), "item");
    let update = Update::new(key.clone())
        .set("name", s("first"))
        .add("count", 1.0);
    let returned = table
        .update(TableName::Views, update)
        .await
        .expect("update");
    let expected = item(&[("name", s("first")), ("count", n(1.0))]);
    assert_eq!(returned, expected);
    assert_eq!(get(&*table, TableName::Views, &key).await, Some(expected));
}

/// SET overwrites or adds, ADD adds (absent counts as 0), REMOVE drops; the item after the
/// update is returned and stored.
pub async fn update_sets_adds_and_removes(table: Arc<dyn Table>) {
    let key = Key::new(partition("set-add-remove"), "item");
    let start = item(&[
        ("keep", s("k")),
        ("replace", n(1.0)),
        ("count", n(10.0)),
        ("drop", Value::Bool(true)),
    ]);
    put_one(&*table, TableName::Views, &key, start).await;
    let update = Update::new(key.clone())
        .set("replace", s("now a string"))
        .set("new", Value::L(vec![n(1.0)]))
        .add("count", -2.5)
        .add("fresh", 4.0)
        .remove("drop")
        .remove("never-there");
    let returned = table
        .update(TableName::Views, update)
        .await
        .expect("update");
    let expected = item(&[
        ("keep", s("k")),
        ("replace", s("now a string")),
        ("new", Value::L(vec![n(1.0)])),
        ("count", n(7.5)),
        ("fresh", n(4.0)),
    ]);
    assert_eq!(returned, expected);
    assert_eq!(get(&*table, TableName::Views, &key).await, Some(expected));
    // Counters stay exact up to 2^53.
    let big = Update::new(key.clone()).add("big", 9_007_199_254_740_991.0);
    table.update(TableName::Views, big).await.expect("update");
    let returned = table
        .update(TableName::Views, Update::new(key).add("big", 1.0))
        .await
        .expect("update");
    assert_eq!(returned.get("big"), Some(&n(9_007_199_254_740_992.0)));
}

/// ADD to an attribute that is not a number is invalid and changes nothing.
pub async fn update_add_to_a_non_number_is_invalid(table: Arc<dyn Table>) {
    let key = Key::new(partition("add-non-number"), "item");
    let start = item(&[("text", s("x")), ("count", n(1.0))]);
    put_one(&*table, TableName::Views, &key, start.clone()).await;
    let update = Update::new(key.clone()).add("count", 1.0).add("text", 1.0);
    let answer = table.update(TableName::Views, update).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    assert_eq!(get(&*table, TableName::Views, &key).await, Some(start));
}

/// Every condition kind, true and false, against an existing and a missing item.
pub async fn update_conditions(table: Arc<dyn Table>) {
    let pk = partition("conditions");
    let stored = item(&[
        ("n", n(5.0)),
        ("s", s("m")),
        ("b", Value::B(vec![1, 2])),
        ("flag", Value::Bool(true)),
    ]);
    let absent = || Condition::Exists("absent".into());
    let cases: Vec<(Condition, bool)> = vec![
        (Condition::ItemExists, true),
        (Condition::ItemNotExists, false),
        (Condition::Exists("n".into()), true),
        (absent(), false),
        (Condition::NotExists("absent".into()), true),
        (Condition::NotExists("n".into()), false),
        (Condition::Eq("n".into(), n(5.0)), true),
        (Condition::Eq("n".into(), n(6.0)), false),
        (Condition::Eq("n".into(), s("5")), false),
        (Condition::Eq("flag".into(), Value::Bool(true)), true),
        (Condition::Eq("absent".into(), Value::Null), false),
        (Condition::Lt("n".into(), n(10.0)), true),
        (Condition::Lt("n".into(), n(5.0)), false),
        (Condition::Le("n".into(), n(5.0)), true),
        (Condition::Le("n".into(), n(4.0)), false),
        (Condition::Gt("n".into(), n(-1.0)), true),
        (Condition::Gt("n".into(), n(5.0)), false),
        (Condition::Ge("n".into(), n(5.0)), true),
        (Condition::Ge("n".into(), n(5.5)), false),
        // Numbers compare numerically, strings and binaries byte-wise.
        (Condition::Lt("n".into(), n(40.0)), true),
        (Condition::Gt("s".into(), s("B")), true),
        (Condition::Lt("s".into(), s("ma")), true),
        (Condition::Lt("s".into(), s("é")), true),
        (Condition::Gt("s".into(), s("m")), false),
        (Condition::Lt("b".into(), Value::B(vec![1, 3])), true),
        (Condition::Gt("b".into(), Value::B(vec![1, 2, 0])), false),
        // Different types and absent attributes never compare.
        (Condition::Lt("n".into(), s("9")), false),
        (Condition::Ge("s".into(), n(0.0)), false),
        (Condition::Lt("absent".into(), n(1.0)), false),
        (
            Condition::Not(Box::new(Condition::Lt("absent".into(), n(1.0)))),
            true,
        ),
        (Condition::Not(Box::new(Condition::ItemExists)), false),
        (
            Condition::And(vec![
                Condition::ItemExists,
                Condition::Eq("s".into(), s("m")),
            ]),
            true,
        ),
        (Condition::And(vec![Condition::ItemExists, absent()]), false),
        (
            Condition::Or(vec![absent(), Condition::Ge("n".into(), n(5.0))]),
            true,
        ),
        (
            Condition::Or(vec![absent(), Condition::Lt("n".into(), n(0.0))]),
            false,
        ),
    ];
    for (index, (condition, holds)) in cases.into_iter().enumerate() {
        let key = Key::new(pk.clone(), format!("case-{index:03}"));
        put_one(&*table, TableName::Views, &key, stored.clone()).await;
        let update = Update::new(key.clone())
            .set("touched", Value::Bool(true))
            .when(condition.clone());
        let answer = table.update(TableName::Views, update).await;
        let after = get(&*table, TableName::Views, &key).await;
        if holds {
            let mut expected = stored.clone();
            expected.insert("touched".into(), Value::Bool(true));
            assert_eq!(
                answer.ok().as_ref(),
                Some(&expected),
                "{condition:?} should hold"
            );
            assert_eq!(after, Some(expected));
        } else {
            assert!(
                matches!(answer, Err(Error::ConditionFailed)),
                "{condition:?}: {answer:?}"
            );
            assert_eq!(
                after,
                Some(stored.clone()),
                "{condition:?} changed the item"
            );
        }
    }
    // Against a missing item.
    let missing_cases = [
        (Condition::ItemNotExists, true),
        (Condition::NotExists("n".into()), true),
        (Condition::ItemExists, false),
        (Condition::Exists("n".into()), false),
        (Condition::Eq("n".into(), n(5.0)), false),
        (
            Condition::Not(Box::new(Condition::Eq("n".into(), n(5.0)))),
            true,
        ),
    ];
    for (index, (condition, holds)) in missing_cases.into_iter().enumerate() {
        let key = Key::new(pk.clone(), format!("missing-{index:03}"));
        let update = Update::new(key.clone())
            .add("count", 1.0)
            .when(condition.clone());
        let answer = table.update(TableName::Views, update).await;
        let after = get(&*table, TableName::Views, &key).await;
        if holds {
            assert!(answer.is_ok(), "{condition:?}: {answer:?}");
            assert_eq!(after, Some(item(&[("count", n(1.0))])));
        } else {
            assert!(
                matches!(answer, Err(Error::ConditionFailed)),
                "{condition:?}: {answer:?}"
            );
            assert_eq!(after, None, "{condition:?} created the item");
        }
    }
}

/// A failed condition leaves the item exactly as it was, SET, ADD and REMOVE alike.
pub async fn failed_condition_changes_nothing(table: Arc<dyn Table>) {
    let key = Key::new(partition("unchanged"), "item");
    let start = item(&[("version", n(3.0)), ("name", s("x")), ("count", n(1.0))]);
    put_one(&*table, TableName::Control, &key, start.clone()).await;
    let update = Update::new(key.clone())
        .set("name", s("y"))
        .add("count", 1.0)
        .remove("version")
        .when(Condition::Eq("version".into(), n(2.0)));
    let answer = table.update(TableName::Control, update).await;
    assert!(matches!(answer, Err(Error::ConditionFailed)), "{answer:?}");
    assert_eq!(get(&*table, TableName::Control, &key).await, Some(start));
}

/// The projector's idiom on DynamoDB: apply only when the item's last applied position is older,
/// comparing `Position::sortable()` strings (positions of different digit counts included).
pub async fn last_applied_position(table: Arc<dyn Table>) {
    let key = Key::new(partition("positions"), "aggregate");
    let position =
        |sequence: u64, index: u32| Position::new(Sequence::from_u64(sequence), index).sortable();
    let apply = |at: String| {
        Update::new(key.clone())
            .add("count", 1.0)
            .set("pos", Value::S(at.clone()))
            .when(Condition::Or(vec![
                Condition::NotExists("pos".into()),
                Condition::Lt("pos".into(), Value::S(at)),
            ]))
    };
    // 99:7 < 100:0 < 100:2 < 1000:0, although "99" > "100" as plain text.
    let steps = [
        (position(99, 7), true),
        (position(99, 7), false),
        (position(99, 6), false),
        (position(100, 0), true),
        (position(100, 2), true),
        (position(100, 1), false),
        (position(99, 9), false),
        (position(1000, 0), true),
        (position(100, 3), false),
    ];
    let mut applied = 0.0;
    for (at, newer) in steps {
        let answer = table.update(TableName::Views, apply(at.clone())).await;
        if newer {
            applied += 1.0;
            let returned = answer.expect("a newer position applies");
            assert_eq!(returned.get("pos"), Some(&Value::S(at)));
        } else {
            assert!(
                matches!(answer, Err(Error::ConditionFailed)),
                "{at}: {answer:?}"
            );
        }
        let current = get(&*table, TableName::Views, &key).await.expect("item");
        assert_eq!(current.get("count"), Some(&n(applied)));
    }
    let last = get(&*table, TableName::Views, &key).await.expect("item");
    assert_eq!(last.get("pos"), Some(&Value::S(position(1000, 0))));
}

/// A transaction across two tables applies nothing when one condition fails, everything when
/// all hold.
pub async fn transact_is_all_or_nothing(table: Arc<dyn Table>) {
    all_or_nothing(table, false).await;
}

/// `transact_relaxed` keeps every promise of `transact` a running process can see: all or
/// nothing, conditions checked, visible to the next read.
pub async fn transact_relaxed_is_all_or_nothing(table: Arc<dyn Table>) {
    all_or_nothing(table, true).await;
}

async fn all_or_nothing(table: Arc<dyn Table>, relaxed: bool) {
    let transact = |ops: Vec<TransactOp>| {
        let table = Arc::clone(&table);
        async move {
            if relaxed {
                table.transact_relaxed(ops).await
            } else {
                table.transact(ops).await
            }
        }
    };
    let pk = partition("transact");
    let view = Key::new(pk.clone(), "view");
    let checkpoint = Key::new(pk.clone(), "checkpoint");
    let doomed = Key::new(pk.clone(), "doomed");
    let guard = Key::new(pk.clone(), "guard");
    put_one(
        &*table,
        TableName::Views,
        &doomed,
        item(&[("alive", Value::Bool(true))]),
    )
    .await;
    put_one(
        &*table,
        TableName::Control,
        &guard,
        item(&[("epoch", n(1.0))]),
    )
    .await;
    put_one(
        &*table,
        TableName::Control,
        &checkpoint,
        item(&[("pos", s("001")), ("n", n(1.0))]),
    )
    .await;
    let ops = |epoch: f64| {
        vec![
            TransactOp::Put {
                table: TableName::Views,
                key: view.clone(),
                item: item(&[("total", n(10.0))]),
                condition: Some(Condition::ItemNotExists),
            },
            TransactOp::Update {
                table: TableName::Control,
                update: Update::new(checkpoint.clone())
                    .set("pos", s("002"))
                    .add("n", 1.0)
                    .when(Condition::Lt("pos".into(), s("002"))),
            },
            TransactOp::Delete {
                table: TableName::Views,
                key: doomed.clone(),
                condition: Some(Condition::Exists("alive".into())),
            },
            TransactOp::Check {
                table: TableName::Control,
                key: guard.clone(),
                condition: Condition::Eq("epoch".into(), n(epoch)),
            },
        ]
    };
    let failed = transact(ops(2.0)).await;
    assert!(matches!(failed, Err(Error::ConditionFailed)), "{failed:?}");
    assert_eq!(get(&*table, TableName::Views, &view).await, None);
    assert_eq!(
        get(&*table, TableName::Control, &checkpoint).await,
        Some(item(&[("pos", s("001")), ("n", n(1.0))]))
    );
    assert!(get(&*table, TableName::Views, &doomed).await.is_some());

    transact(ops(1.0)).await.expect("every condition holds");
    assert_eq!(
        get(&*table, TableName::Views, &view).await,
        Some(item(&[("total", n(10.0))]))
    );
    assert_eq!(
        get(&*table, TableName::Control, &checkpoint).await,
        Some(item(&[("pos", s("002")), ("n", n(2.0))]))
    );
    assert_eq!(get(&*table, TableName::Views, &doomed).await, None);
    assert_eq!(
        get(&*table, TableName::Control, &guard).await,
        Some(item(&[("epoch", n(1.0))]))
    );

    // Replaying the same transaction fails on its first condition and changes nothing.
    let replay = transact(ops(1.0)).await;
    assert!(matches!(replay, Err(Error::ConditionFailed)), "{replay:?}");
    assert_eq!(
        get(&*table, TableName::Control, &checkpoint).await,
        Some(item(&[("pos", s("002")), ("n", n(2.0))]))
    );
    assert!(table.max_transact_ops() >= 100);
}

/// An empty transaction, and one naming the same key of the same table twice, are invalid; the
/// same key in two tables is fine.
pub async fn transact_rejects_empty_and_duplicates(table: Arc<dyn Table>) {
    let key = Key::new(partition("transact-invalid"), "item");
    let answer = table.transact(Vec::new()).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    let write = |name| TransactOp::Put {
        table: name,
        key: key.clone(),
        item: item(&[("table", s(TableName::as_str(name)))]),
        condition: None,
    };
    let answer = table
        .transact(vec![write(TableName::Views), write(TableName::Views)])
        .await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    assert_eq!(get(&*table, TableName::Views, &key).await, None);
    table
        .transact(vec![write(TableName::Views), write(TableName::Control)])
        .await
        .expect("one key in two tables");
    assert_eq!(
        get(&*table, TableName::Views, &key).await,
        Some(item(&[("table", s("views"))]))
    );
    assert_eq!(
        get(&*table, TableName::Control, &key).await,
        Some(item(&[("table", s("control"))]))
    );
}

/// The same key in each table is a different item.
pub async fn tables_are_independent(table: Arc<dyn Table>) {
    let key = Key::new(partition("independent"), "item");
    for name in TableName::ALL {
        put_one(&*table, name, &key, item(&[("table", s(name.as_str()))])).await;
    }
    for name in TableName::ALL {
        assert_eq!(
            get(&*table, name, &key).await,
            Some(item(&[("table", s(name.as_str()))]))
        );
    }
    let update = Update::new(key.clone()).add("count", 1.0);
    table
        .update(TableName::Control, update)
        .await
        .expect("update");
    let delete = vec![WriteOp::Delete { key: key.clone() }];
    table.write(TableName::Views, delete).await.expect("delete");
    assert_eq!(get(&*table, TableName::Views, &key).await, None);
    assert_eq!(
        get(&*table, TableName::Control, &key).await,
        Some(item(&[("table", s("control")), ("count", n(1.0))]))
    );
    assert_eq!(
        get(&*table, TableName::Events, &key).await,
        Some(item(&[("table", s("events"))]))
    );
    let events = table
        .query(TableName::Events, &Query::partition(key.pk.clone()))
        .await
        .expect("query");
    assert_eq!(events.items.len(), 1);
}

/// What DynamoDB refuses is refused everywhere, as `InvalidArgument`: empty key parts, numbers
/// it cannot store, one attribute twice in an update, one key twice in a batch write.
pub async fn invalid_input_is_rejected(table: Arc<dyn Table>) {
    let pk = partition("invalid");
    let invalid = |answer: crate::Result<()>, what: &str| {
        assert!(
            matches!(answer, Err(Error::InvalidArgument(_))),
            "{what}: {answer:?}"
        );
    };
    let empty_sk = Key::new(pk.clone(), "");
    let empty_pk = Key::new("", "item");
    for key in [&empty_sk, &empty_pk] {
        invalid(
            table.get(TableName::Views, key).await.map(drop),
            "get of an empty key part",
        );
        let ops = vec![put(key, Item::new())];
        invalid(
            table.write(TableName::Views, ops).await,
            "put of an empty key part",
        );
        let update = Update::new(key.clone()).add("n", 1.0);
        invalid(
            table.update(TableName::Views, update).await.map(drop),
            "update of an empty key part",
        );
    }
    let key = Key::new(pk.clone(), "item");
    for number in [f64::NAN, f64::INFINITY] {
        let ops = vec![put(&key, item(&[("n", n(number))]))];
        invalid(
            table.write(TableName::Views, ops).await,
            "a non-finite number",
        );
        let update = Update::new(key.clone()).add("n", number);
        invalid(
            table.update(TableName::Views, update).await.map(drop),
            "adding a non-finite number",
        );
    }
    let twice = Update::new(key.clone()).set("a", n(1.0)).remove("a");
    invalid(
        table.update(TableName::Views, twice).await.map(drop),
        "one attribute twice",
    );
    let ops = vec![put(&key, Item::new()), WriteOp::Delete { key: key.clone() }];
    invalid(
        table.write(TableName::Views, ops).await,
        "one key twice in a batch",
    );
    assert_eq!(get(&*table, TableName::Views, &key).await, None);
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
