//! An in-memory [`Table`]: a `BTreeMap` per logical table behind one mutex, for tests of the
//! crates above storage (projector, query) that want tables without a file or an emulator.
//!
//! It shares every rule with the embedded backend — conditions, updates, DynamoDB's input limits,
//! query bounds, paging and cursors (`embedded::table::{condition, validate, range, cursor,
//! ops}`) — and passes the same conformance suite, so it differs only in keeping nothing across
//! restarts. Each call holds the lock for its whole duration (never across an `.await`), which
//! makes every call atomic and isolated, like one redb transaction.

use crate::embedded::table::{cursor, ops, range, validate};
use crate::{Item, Key, Page, Query, Result, Scan, Table, TableName, TransactOp, Update, WriteOp};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

/// One logical table: `(pk, sk)` → item, in (pk, sk) byte order.
type Rows = BTreeMap<(String, String), Item>;

/// In-memory tables. Empty when made; dropped with the value.
#[derive(Debug, Default)]
pub struct MemoryTables {
    tables: Mutex<BTreeMap<TableName, Rows>>,
}

impl MemoryTables {
    pub fn new() -> Self {
        MemoryTables::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<TableName, Rows>> {
        // A panic while holding the lock cannot leave a half-applied operation: every operation
        // computes all of its effects before its first write. So the data stays usable.
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The [`ops::ItemStore`] of the in-memory tables, under the lock.
struct Store<'a>(&'a mut BTreeMap<TableName, Rows>);

fn row_key(key: &Key) -> (String, String) {
    (key.pk.clone(), key.sk.clone())
}

impl ops::ItemStore for Store<'_> {
    fn load(&mut self, table: TableName, key: &Key) -> Result<Option<Item>> {
        Ok(self
            .0
            .get(&table)
            .and_then(|rows| rows.get(&row_key(key)))
            .cloned())
    }

    fn store(&mut self, table: TableName, key: &Key, item: Item) -> Result<()> {
        self.0.entry(table).or_default().insert(row_key(key), item);
        Ok(())
    }

    fn store_encoded(&mut self, table: TableName, key: &Key, bytes: Vec<u8>) -> Result<()> {
        // The double keeps items, and nothing here encodes puts ahead; decoding keeps the
        // method honest should that change.
        let item = crate::embedded::table::codec::decode_item(&bytes, || format!("{key:?}"))?;
        self.store(table, key, item)
    }

    fn erase(&mut self, table: TableName, key: &Key) -> Result<()> {
        if let Some(rows) = self.0.get_mut(&table) {
            rows.remove(&row_key(key));
        }
        Ok(())
    }
}

#[async_trait]
impl Table for MemoryTables {
    async fn get(&self, table: TableName, key: &Key) -> Result<Option<Item>> {
        validate::key(key)?;
        ops::ItemStore::load(&mut Store(&mut self.lock()), table, key)
    }

    async fn batch_get(&self, table: TableName, keys: &[Key]) -> Result<Vec<Option<Item>>> {
        keys.iter().try_for_each(validate::key)?;
        let mut tables = self.lock();
        let mut store = Store(&mut tables);
        keys.iter()
            .map(|key| ops::ItemStore::load(&mut store, table, key))
            .collect()
    }

    async fn query(&self, table: TableName, query: &Query) -> Result<Page> {
        validate::partition_key(&query.pk)?;
        let Some(bounds) = range::page_bounds(query)? else {
            return Ok(Page::default());
        };
        let pk = &query.pk;
        let lower = bounds.lower.map(|sk| (pk.clone(), sk));
        let upper = match bounds.upper {
            Bound::Unbounded => Bound::Excluded((range::partition_end(pk), String::new())),
            bounded => bounded.map(|sk| (pk.clone(), sk)),
        };
        let tables = self.lock();
        let Some(rows) = tables.get(&table) else {
            return Ok(Page::default());
        };
        // `page_bounds` never returns an empty or inverted interval, so `range` cannot panic.
        let scan = rows.range((lower, upper));
        let entry = |((_, sk), item): (&(String, String), &Item)| Ok((sk.clone(), item.clone()));
        if query.reverse {
            range::paginate(pk, query.limit, scan.rev().map(entry))
        } else {
            range::paginate(pk, query.limit, scan.map(entry))
        }
    }

    async fn scan(&self, table: TableName, scan: &Scan) -> Result<Page> {
        scan.validate()?;
        let lower = match &scan.cursor {
            Some(text) => Bound::Excluded(cursor::decode_key(text)?),
            None => Bound::Unbounded,
        };
        let tables = self.lock();
        let Some(rows) = tables.get(&table) else {
            return Ok(Page::default());
        };
        let mut items = Vec::new();
        let mut next = None;
        for ((pk, sk), item) in rows.range((lower, Bound::Unbounded)) {
            if !scan.holds(pk) {
                continue;
            }
            if items.len() == scan.limit {
                next = items
                    .last()
                    .map(|(key, _): &(Key, Item)| cursor::encode(&key.pk, &key.sk));
                break;
            }
            items.push((Key::new(pk.clone(), sk.clone()), item.clone()));
        }
        Ok(Page { items, next })
    }

    async fn write(&self, table: TableName, ops: Vec<WriteOp>) -> Result<()> {
        ops::write(&mut Store(&mut self.lock()), table, ops)
    }

    async fn update(&self, table: TableName, update: Update) -> Result<Item> {
        ops::update(&mut Store(&mut self.lock()), table, &update)
    }

    async fn transact(&self, transaction: Vec<TransactOp>) -> Result<()> {
        ops::transact(&mut Store(&mut self.lock()), transaction)
    }

    /// Unlimited, like the embedded backend.
    fn max_transact_ops(&self) -> usize {
        usize::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    /// A put encoded ahead lands as the same item as a plain one (the double never gets one
    /// from its own `transact`; the trait method must still be right).
    #[tokio::test]
    async fn an_encoded_put_is_the_item_it_encodes() {
        let tables = MemoryTables::new();
        let item: Item = [("count".to_owned(), Value::N(3.0))].into();
        let put = TransactOp::Put {
            table: TableName::Views,
            key: Key::new("p", "s"),
            item: item.clone(),
            condition: None,
        };
        let prepared = ops::Prepared::new(vec![put])
            .and_then(|prepared| {
                prepared.encode_puts(|item| {
                    crate::embedded::table::codec::encode_item(item, Vec::new())
                })
            })
            .expect("prepared");
        ops::transact_prepared(&mut Store(&mut tables.lock()), prepared).expect("transact");
        let stored = tables
            .get(TableName::Views, &Key::new("p", "s"))
            .await
            .expect("get");
        assert_eq!(stored, Some(item));
    }
}
