//! The write operations of [`crate::Table`] over any store that can load, store and erase one
//! item inside a transaction the caller owns: the embedded backend runs them inside a redb write
//! transaction, the in-memory double under its lock.
//!
//! Every operation validates its whole input, then reads and checks everything, and only then
//! writes. So when one returns an error it has written nothing, and a store whose writes cannot
//! fail (the in-memory double) needs no rollback; a store whose writes can fail (redb) is rolled
//! back by the caller dropping its transaction.

use super::{condition, validate};
use crate::{Error, Item, Key, Result, TableName, TransactOp, Update, WriteOp};

/// One item at a time, inside the caller's transaction.
pub(crate) trait ItemStore {
    fn load(&mut self, table: TableName, key: &Key) -> Result<Option<Item>>;
    /// Takes the item by value: the in-memory double keeps it, so it needs no copy.
    fn store(&mut self, table: TableName, key: &Key, item: Item) -> Result<()>;
    /// Stores an item in the store's own encoding ([`Prepared::encode_puts`] with the encoder
    /// the store's owner uses); a store that keeps items decodes it.
    fn store_encoded(&mut self, table: TableName, key: &Key, bytes: Vec<u8>) -> Result<()>;
    fn erase(&mut self, table: TableName, key: &Key) -> Result<()>;
}

/// [`crate::Table::write`]: every op applied (each key appears once, so the order the writes
/// are applied in does not change the outcome; see [`apply`]).
pub(crate) fn write(store: &mut impl ItemStore, table: TableName, ops: Vec<WriteOp>) -> Result<()> {
    validate::write(&ops)?;
    let effects = ops
        .into_iter()
        .map(|op| match op {
            WriteOp::Put { key, item } => (table, key, Effect::Store(item)),
            WriteOp::Delete { key } => (table, key, Effect::Erase),
        })
        .collect();
    apply(store, effects)
}

/// [`crate::Table::update`]: the item after the update.
pub(crate) fn update(
    store: &mut impl ItemStore,
    table: TableName,
    update: &Update,
) -> Result<Item> {
    validate::update(update)?;
    let current = store.load(table, &update.key)?;
    let next = updated(current, update)?;
    store.store(table, &update.key, next.clone())?;
    Ok(next)
}

/// [`crate::Table::transact`]: every condition checked and every new item computed first, then
/// all of them written.
///
/// Only an op whose outcome depends on the stored item (a condition, an update) loads it: an
/// unconditional put or delete is blind, so a flush of many such writes (the archive's one put
/// per event) costs no read per write.
pub(crate) fn transact(store: &mut impl ItemStore, ops: Vec<TransactOp>) -> Result<()> {
    transact_prepared(store, Prepared::new(ops)?)
}

/// A transaction's ops, validated and in `(table, key)` order: the part of [`transact`] that
/// needs no store. The embedded backend prepares a transaction on the caller's task, not on its
/// one commit thread, which every read model's flush waits for (validating a flush there took
/// ~9 % of that thread under a steady load; BENCHMARKS.md, "Session 18").
pub(crate) struct Prepared {
    ops: Vec<TransactOp>,
    /// Per op, a put's item already in the store's encoding ([`Prepared::encode_puts`]).
    encoded: Vec<Option<Vec<u8>>>,
}

impl Prepared {
    pub(crate) fn new(mut ops: Vec<TransactOp>) -> Result<Prepared> {
        // Each `(table, key)` appears once (checked next), so the order changes no outcome;
        // sorted, a repeat sits beside its twin and the writes need no sort of their own.
        ops.sort_unstable_by(|left, right| {
            validate::transact_target(left).cmp(&validate::transact_target(right))
        });
        validate::sorted_transaction(&ops)?;
        Ok(Prepared {
            ops,
            encoded: Vec::new(),
        })
    }

    /// Encodes every put's item with `encode` now, and lets go of the item: a put's bytes do
    /// not depend on what is stored, so a store with an encoding of its own (redb's bytes) need
    /// not encode, nor free, the items on its commit thread.
    pub(crate) fn encode_puts(
        mut self,
        encode: impl Fn(&crate::Item) -> Result<Vec<u8>>,
    ) -> Result<Prepared> {
        self.encoded = self
            .ops
            .iter_mut()
            .map(|op| match op {
                TransactOp::Put { item, .. } => {
                    let bytes = encode(item)?;
                    *item = crate::Item::new();
                    Ok(Some(bytes))
                }
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(self)
    }
}

/// [`transact`] of a prepared transaction.
pub(crate) fn transact_prepared(store: &mut impl ItemStore, prepared: Prepared) -> Result<()> {
    let Prepared { ops, encoded } = prepared;
    let mut encoded = encoded.into_iter();
    let mut effects = Vec::with_capacity(ops.len());
    for op in ops {
        let bytes = encoded.next().flatten();
        let effect = match op {
            TransactOp::Put {
                table,
                key,
                item,
                condition,
            } => {
                if let Some(condition) = &condition {
                    check(Some(condition), store.load(table, &key)?.as_ref())?;
                }
                let effect = match bytes {
                    Some(bytes) => Effect::StoreEncoded(bytes),
                    None => Effect::Store(item),
                };
                (table, key, effect)
            }
            TransactOp::Update { table, update } => {
                let next = updated(store.load(table, &update.key)?, &update)?;
                (table, update.key, Effect::Store(next))
            }
            TransactOp::Delete {
                table,
                key,
                condition,
            } => {
                if let Some(condition) = &condition {
                    check(Some(condition), store.load(table, &key)?.as_ref())?;
                }
                (table, key, Effect::Erase)
            }
            TransactOp::Check {
                table,
                key,
                condition,
            } => {
                check(Some(&condition), store.load(table, &key)?.as_ref())?;
                (table, key, Effect::Nothing)
            }
        };
        effects.push(effect);
    }
    apply_sorted(store, effects)
}

/// What one op of a transaction does once every condition holds.
enum Effect {
    Store(Item),
    /// An item encoded ahead ([`Prepared::encode_puts`]).
    StoreEncoded(Vec<u8>),
    Erase,
    Nothing,
}

/// Writes checked effects, in `(table, key)` order. Each key appears once (validated), so the
/// order does not change the outcome; sorted, consecutive writes land in neighbouring B-tree
/// pages, which a redb transaction of thousands of scattered keys (one flush) visits far less
/// often than in arrival order.
fn apply(store: &mut impl ItemStore, mut effects: Vec<(TableName, Key, Effect)>) -> Result<()> {
    effects.sort_unstable_by(|left, right| (left.0, &left.1).cmp(&(right.0, &right.1)));
    apply_sorted(store, effects)
}

/// [`apply`] of effects already in `(table, key)` order.
fn apply_sorted(store: &mut impl ItemStore, effects: Vec<(TableName, Key, Effect)>) -> Result<()> {
    for (table, key, effect) in effects {
        match effect {
            Effect::Store(item) => store.store(table, &key, item)?,
            Effect::StoreEncoded(bytes) => store.store_encoded(table, &key, bytes)?,
            Effect::Erase => store.erase(table, &key)?,
            Effect::Nothing => {}
        }
    }
    Ok(())
}

fn check(condition: Option<&crate::Condition>, current: Option<&Item>) -> Result<()> {
    match condition {
        Some(condition) if !condition::evaluate(condition, current) => Err(Error::ConditionFailed),
        _ => Ok(()),
    }
}

/// The item after `update` if its condition holds for `current`, validated for storing.
fn updated(current: Option<Item>, update: &Update) -> Result<Item> {
    check(update.condition.as_ref(), current.as_ref())?;
    let next = condition::apply_update(current, update)?;
    // ADD can push a number out of range and SET can grow the item past the limit.
    validate::item(&update.key, &next)?;
    Ok(next)
}
