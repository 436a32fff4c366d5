//! Flushing a folded batch: the items, the dead letters and the checkpoint.
//!
//! # Exactly-once effects over at-least-once delivery (design note)
//! A worker re-reads from its checkpoint after any failure, so every event after the checkpoint
//! may be folded again. Effects stay exactly-once because:
//! - **one transaction** (embedded, `max_transact_ops` unbounded): the changed items, the dead
//!   letters and the new checkpoint commit together. Either all of the batch's effects and the
//!   checkpoint that covers them exist, or none do; a re-fold starts from items that hold
//!   exactly the events up to the checkpoint.
//! - **several transactions** (DynamoDB, 100 ops each): items are grouped into *units* (an item
//!   plus the derived writes that must commit with it, such as its index entry); units are packed
//!   into transactions, and the checkpoint goes last. A crash between them leaves some items
//!   ahead of the checkpoint. Each item carries `pos` (the last event it holds), the re-fold
//!   skips, per item, the events it already holds (`Cache::get_mut`), and every item write is
//!   conditional on the stored `pos` being absent or older than the new one, so an item is never
//!   moved backwards or given an event twice. An item that existed when the batch loaded it must
//!   still exist (`pos` older, not absent): one deleted meanwhile (series retention) is not
//!   written back from a stale copy. Blind puts (the archive) are their own content,
//!   so rewriting one is a no-op.
//!
//! Flushes are committed with `transact_relaxed`: the embedded backend then skips the fsync and
//! leaves it to its next durable commit. A crash can undo only a suffix of what was committed (redb
//! rolls back whole transactions, newest first), so what survives is always a flush with the
//! checkpoint that covers it, and the worker replays the rest from the log, as after any crash.
//!
//! The same conditions are sent on the embedded path (they cost one comparison on an item the
//! transaction loads anyway) so a stale second worker fails there too. A failed condition means
//! someone else moved an item: the worker drops its cache and re-reads from the checkpoint.

use crate::projection::{Derived, POS_ATTRIBUTE, Projection};
use crate::{Cache, Error, Result, checkpoint};
use foldhash::HashSet;
use shoal_storage::{Condition, Key, Table, TableName, TransactOp, Value};

/// A batch's writes, grouped: each unit commits atomically; `tail` (checkpoint, dead letters)
/// commits after every unit.
#[derive(Debug, Default)]
pub(crate) struct Flush {
    pub units: Vec<Vec<TransactOp>>,
    pub tail: Vec<TransactOp>,
}

impl Flush {
    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.tail.is_empty()
    }
}

/// Turns a folded cache into units of writes.
pub(crate) fn build(projection: &dyn Projection, cache: Cache) -> Result<Flush> {
    let table = projection.table();
    let (entries, puts) = cache.into_parts();
    let mut flush = Flush::default();
    // A transaction (and a DynamoDB batch) may touch each key once; derived writes of
    // different items can coincide (the series list entry) and are idempotent, so keep one.
    let mut derived_seen: HashSet<(TableName, Key)> = HashSet::default();
    let mut derived = Vec::new();
    for (key, entry) in entries {
        let Some(new_pos) = entry.new_pos else {
            continue;
        };
        derived.clear();
        let mut item = projection.encode(&key, &entry.state, &mut derived)?;
        let new_pos = String::from(&*new_pos);
        item.insert(POS_ATTRIBUTE.into(), Value::S(new_pos.clone()));
        let condition = match &entry.stored_pos {
            // Re-drive keeps the stored `pos`: then the item must still be the one loaded.
            Some(stored) if *stored == new_pos => {
                Condition::Eq(POS_ATTRIBUTE.into(), Value::S(stored.clone()))
            }
            // It existed when loaded: if it is gone now (a retention sweep deleted it), the
            // condition fails rather than writing it back, and the re-read sees why.
            Some(_) => Condition::Lt(POS_ATTRIBUTE.into(), Value::S(new_pos.clone())),
            None => checkpoint::forward_only(new_pos),
        };
        let mut unit = vec![TransactOp::Put {
            table,
            key,
            item,
            condition: Some(condition),
        }];
        for write in derived.drain(..) {
            let (write_table, write_key) = match &write {
                Derived::Put { table, key, .. } | Derived::Delete { table, key } => (*table, key),
            };
            if !derived_seen.insert((write_table, write_key.clone())) {
                continue;
            }
            unit.push(write.into());
        }
        flush.units.push(unit);
    }
    for ((put_table, key), item) in puts {
        flush.units.push(vec![TransactOp::Put {
            table: put_table,
            key,
            item,
            condition: None,
        }]);
    }
    Ok(flush)
}

/// Commits `flush`: one transaction when the backend takes it, else units packed into
/// transactions within the backend's limits ([`pack`]), then the tail.
pub(crate) async fn commit(tables: &dyn Table, flush: Flush) -> Result<()> {
    if flush.is_empty() {
        return Ok(());
    }
    let limits = Limits::of(tables);
    if limits.fit(&flush) {
        let ops: Vec<TransactOp> = flush
            .units
            .into_iter()
            .flatten()
            .chain(flush.tail)
            .collect();
        tables.transact_relaxed(ops).await?;
        return Ok(());
    }
    for batch in pack(flush.units, limits)? {
        tables
            .transact_relaxed(batch.into_iter().flatten().collect())
            .await?;
    }
    if !flush.tail.is_empty() {
        limits.check(&flush.tail)?;
        tables.transact_relaxed(flush.tail).await?;
    }
    Ok(())
}

/// A backend's bounds on one transaction: ops, and bytes as [`TransactOp::size`] counts them.
/// DynamoDB refuses a transaction over either whatever the retries, so a flush packed by ops
/// alone could hold a shard on the same refused batch for ever.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    ops: usize,
    bytes: usize,
}

impl Limits {
    pub fn of(tables: &dyn Table) -> Limits {
        Limits {
            ops: tables.max_transact_ops().max(1),
            bytes: tables.max_transact_bytes(),
        }
    }

    /// Sizes are summed only for a backend that bounds them: the embedded one does not, and
    /// its flushes are the hot path.
    fn counts_bytes(&self) -> bool {
        self.bytes != usize::MAX
    }

    /// Whether the whole flush, units and tail, fits in one transaction.
    fn fit(&self, flush: &Flush) -> bool {
        let (mut ops, mut bytes) = (0usize, 0usize);
        for unit in flush.units.iter().chain([&flush.tail]) {
            ops += unit.len();
            bytes += self.bytes_of(unit);
        }
        ops <= self.ops && bytes <= self.bytes
    }

    /// Fails unless `unit` fits in one transaction by itself.
    fn check(&self, unit: &[TransactOp]) -> Result<()> {
        if unit.len() > self.ops {
            return Err(Error::UnitTooLarge {
                what: "ops",
                needs: unit.len(),
                limit: self.ops,
            });
        }
        let bytes = self.bytes_of(unit);
        if bytes > self.bytes {
            return Err(Error::UnitTooLarge {
                what: "bytes",
                needs: bytes,
                limit: self.bytes,
            });
        }
        Ok(())
    }

    fn bytes_of(&self, unit: &[TransactOp]) -> usize {
        if self.counts_bytes() {
            unit.iter().map(TransactOp::size).sum()
        } else {
            0
        }
    }
}

/// Groups `units`, in order and each whole, into as few transactions as `limits` allow
/// (greedily: a transaction is closed when the next unit would not fit). Fails if one unit
/// alone exceeds them.
pub(crate) fn pack(
    units: Vec<Vec<TransactOp>>,
    limits: Limits,
) -> Result<Vec<Vec<Vec<TransactOp>>>> {
    let mut batches = Vec::new();
    let mut batch: Vec<Vec<TransactOp>> = Vec::new();
    let (mut ops, mut bytes) = (0usize, 0usize);
    for unit in units {
        limits.check(&unit)?;
        let unit_bytes = limits.bytes_of(&unit);
        if !batch.is_empty() && (ops + unit.len() > limits.ops || bytes + unit_bytes > limits.bytes)
        {
            batches.push(std::mem::take(&mut batch));
            (ops, bytes) = (0, 0);
        }
        ops += unit.len();
        bytes += unit_bytes;
        batch.push(unit);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    Ok(batches)
}
