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
    fn store(&mut self, table: TableName, key: &Key, item: &Item) -> Result<()>;
    fn erase(&mut self, table: TableName, key: &Key) -> Result<()>;
}

/// [`crate::Table::write`]: every op applied, in order (each key appears once).
pub(crate) fn write(store: &mut impl ItemStore, table: TableName, ops: &[WriteOp]) -> Result<()> {
    validate::write(ops)?;
    for op in ops {
        match op {
            WriteOp::Put { key, item } => store.store(table, key, item)?,
            WriteOp::Delete { key } => store.erase(table, key)?,
        }
    }
    Ok(())
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
    store.store(table, &update.key, &next)?;
    Ok(next)
}

/// [`crate::Table::transact`]: every condition checked and every new item computed first, then
/// all of them written.
pub(crate) fn transact(store: &mut impl ItemStore, ops: &[TransactOp]) -> Result<()> {
    validate::transaction(ops)?;
    let mut effects = Vec::with_capacity(ops.len());
    for op in ops {
        let (table, key) = validate::transact_target(op);
        let current = store.load(table, key)?;
        let effect = match op {
            TransactOp::Put {
                item, condition, ..
            } => {
                check(condition.as_ref(), current.as_ref())?;
                Effect::Store(item.clone())
            }
            TransactOp::Update { update, .. } => Effect::Store(updated(current, update)?),
            TransactOp::Delete { condition, .. } => {
                check(condition.as_ref(), current.as_ref())?;
                Effect::Erase
            }
            TransactOp::Check { condition, .. } => {
                check(Some(condition), current.as_ref())?;
                Effect::Nothing
            }
        };
        effects.push((table, key, effect));
    }
    for (table, key, effect) in effects {
        match effect {
            Effect::Store(item) => store.store(table, key, &item)?,
            Effect::Erase => store.erase(table, key)?,
            Effect::Nothing => {}
        }
    }
    Ok(())
}

/// What one op of a transaction does once every condition holds.
enum Effect {
    Store(Item),
    Erase,
    Nothing,
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
