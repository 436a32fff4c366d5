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
            query_many_answers_each_as_query_does,
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

mod items;
mod query;
mod transact;
mod update;

// The checks are named by `table_conformance!` as `conformance::table::<check>`.
pub use items::*;
pub use query::*;
pub use transact::*;
pub use update::*;
