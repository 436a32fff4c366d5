//! The `Projection` trait and the write-back [`Cache`] a batch is folded into.
//!
//! A projection turns events into read-model items. The engine drives it per batch:
//! 1. `keys` names the read-modify-write items each event touches; the engine loads them all at
//!    once (one `batch_get`) and `decode`s each into the projection's typed state;
//! 2. `fold` applies each event, in log order, to the states in the cache (or stages blind,
//!    idempotent puts, as the archive does);
//! 3. `finish` completes derived state (the series rollups) once the whole batch is folded;
//! 4. `encode` turns each changed state back into an item (plus derived writes that must commit
//!    with it), and the engine flushes them with the checkpoint.
//!
//! # Per-item last-applied position (the exactly-once guard)
//! Every read-modify-write item carries `pos`: the sortable position of the last event applied
//! to it. [`Cache::get_mut`] hands a state out only for an event *after* the item's stored `pos`
//! and returns `None` for one at or before it: that event's effect is already in the item. One
//! shard feeds each item, so positions compare. This makes a fold idempotent even when items
//! were flushed without their checkpoint (a DynamoDB flush split over several transactions that
//! crashed halfway): the re-read events are skipped by exactly the items that already hold them.
//!
//! Contract of `fold`: it validates the event before touching the cache, and returns
//! [`PoisonError`] only with the cache unchanged (a state it fetched but left alone is harmless:
//! only its `pos` advances, which records "this event was considered").

use crate::{PoisonError, Result};
use shoal_schemas::{Event, Position, ShardId};
use shoal_storage::{Item, Key, TableName, TransactOp};
use std::any::Any;
use std::sync::Arc;
// The cache is hashed once per event per item (and SipHash showed in profiles): foldhash is
// several times cheaper, and the keys come from our own log, not from an attacker choosing
// collisions.
use foldhash::HashMap;

/// The most bytes a projection puts in one attribute of an item: DynamoDB's item limit (400
/// KiB, which the embedded tables enforce too) less room for the keys and the item's other
/// attributes (`pos`, times, positions: well under 1 KiB). A write over the limit would fail
/// every flush of its shard, so what would exceed it is refused as poison when folded.
pub const MAX_ITEM_BYTES: usize = 392 * 1024;

/// The attribute holding an item's last applied position (sortable form).
pub const POS_ATTRIBUTE: &str = "pos";

/// A typed, in-memory state of one item.
pub type State = Box<dyn Any + Send>;

/// A write that must commit together with the item that derived it (an index entry). Derived
/// writes are idempotent (a put of the content the item implies, or a delete).
#[derive(Clone, Debug, PartialEq)]
pub enum Derived {
    Put {
        table: TableName,
        key: Key,
        item: Item,
    },
    Delete {
        table: TableName,
        key: Key,
    },
}

impl From<Derived> for TransactOp {
    /// Unconditional: a derived write is idempotent, and commits with the item's own
    /// conditional write.
    fn from(write: Derived) -> TransactOp {
        match write {
            Derived::Put { table, key, item } => TransactOp::Put {
                table,
                key,
                item,
                condition: None,
            },
            Derived::Delete { table, key } => TransactOp::Delete {
                table,
                key,
                condition: None,
            },
        }
    }
}

/// One projection. Object-safe; injected as `Arc<dyn Projection>`.
pub trait Projection: Send + Sync {
    /// Stable name: part of checkpoint and dead-letter keys.
    fn name(&self) -> &str;
    /// Bumped when the read model's meaning changes; prefixes its `views` keys.
    fn version(&self) -> u32;
    /// The table its read-modify-write items live in.
    fn table(&self) -> TableName;
    /// The read-modify-write items `event` touches, pushed to `keys` (duplicates are fine).
    fn keys(&self, event: &Event, keys: &mut Vec<Key>);
    /// The state of an item as stored (`None`: it does not exist yet).
    fn decode(&self, key: &Key, item: Option<&Item>) -> Result<State>;
    /// Applies one event. See the module docs for the contract.
    fn fold(
        &self,
        event: &Event,
        position: &Position,
        cache: &mut Cache,
    ) -> std::result::Result<(), PoisonError>;
    /// Completes derived state after the last fold of a batch.
    fn finish(&self, _cache: &mut Cache) -> Result<()> {
        Ok(())
    }
    /// The item to store for a changed state (without `pos`, which the engine adds), and its
    /// derived writes.
    fn encode(&self, key: &Key, state: &State, derived: &mut Vec<Derived>) -> Result<Item>;
}

/// One cached item.
pub(crate) struct Entry {
    pub state: State,
    /// `pos` as loaded; `None` when the item did not exist (or predates positions).
    pub stored_pos: Option<String>,
    /// `pos` of the last event applied in this batch; `Some` means the item must be written.
    /// Shared with the cache's current position: an event touching several items costs one
    /// allocation, not one per item.
    pub new_pos: Option<Arc<str>>,
}

/// The write-back cache of one batch: many events, one write per item.
pub struct Cache {
    entries: HashMap<Key, Entry>,
    /// Blind puts (content fully determined by the event, so rewriting is a no-op).
    puts: HashMap<(TableName, Key), Item>,
    /// The sortable position of the event being folded.
    current: Arc<str>,
    /// Re-drive of a dead letter: apply even where an item's `pos` is newer, and keep that `pos`.
    redrive: bool,
    /// The shard the events come from.
    shard: ShardId,
    /// Batch-local bookkeeping of a projection that builds its puts over many events (the
    /// archive's open posting lists), taken back in its `finish`.
    scratch: Option<Box<dyn Any + Send>>,
}

impl Cache {
    /// A cache sized for `items` read-modify-write items.
    pub(crate) fn with_capacity(shard: ShardId, redrive: bool, items: usize) -> Self {
        Cache {
            entries: HashMap::with_capacity_and_hasher(items, Default::default()),
            puts: HashMap::default(),
            current: Arc::from(""),
            redrive,
            shard,
            scratch: None,
        }
    }

    /// The shard the events being folded come from.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    pub(crate) fn insert(&mut self, key: Key, state: State, stored_pos: Option<String>) {
        self.entries.insert(
            key,
            Entry {
                state,
                stored_pos,
                new_pos: None,
            },
        );
    }

    pub(crate) fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    pub(crate) fn reserve(&mut self, items: usize) {
        self.entries.reserve(items);
    }

    /// Items held: read-modify-write states and staged puts.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() + self.puts.len()
    }

    pub(crate) fn begin_event(&mut self, position: &Position) {
        self.current = Arc::from(position.sortable());
    }

    /// The state of `key` to apply the current event to, or `None` when the item already holds
    /// this event (its stored `pos` is at or after it) or was not named by `keys`.
    pub fn get_mut<T: Any>(&mut self, key: &Key) -> Option<&mut T> {
        let entry = self.entries.get_mut(key)?;
        debug_assert!(entry.state.is::<T>(), "state type mismatch for {key:?}");
        if !self.redrive
            && let Some(stored) = &entry.stored_pos
            && stored.as_str() >= &*self.current
        {
            return None;
        }
        if !self.redrive {
            entry.new_pos = Some(Arc::clone(&self.current));
        } else {
            // Keep the item's position: a re-driven event is older than what the item holds.
            entry.new_pos = Some(match &entry.stored_pos {
                Some(stored) => Arc::from(stored.as_str()),
                None => Arc::clone(&self.current),
            });
        }
        entry.state.downcast_mut::<T>()
    }

    /// The state of `key` as it stands in the cache, without applying anything to it.
    pub fn peek<T: Any>(&self, key: &Key) -> Option<&T> {
        self.entries.get(key)?.state.downcast_ref::<T>()
    }

    /// Mutable access for `finish`: only to items already changed in this batch.
    pub fn changed_mut<T: Any>(&mut self, key: &Key) -> Option<&mut T> {
        let entry = self.entries.get_mut(key)?;
        entry.new_pos.as_ref()?;
        entry.state.downcast_mut::<T>()
    }

    /// Keys of the items changed in this batch.
    pub fn changed_keys(&self) -> Vec<Key> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.new_pos.is_some())
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Stages a blind put whose content is a pure function of the event (a replay writes the
    /// same bytes).
    pub fn put(&mut self, table: TableName, key: Key, item: Item) {
        self.puts.insert((table, key), item);
    }

    /// The batch's scratch state of type `T`, made on first use. One projection folds into a
    /// cache, so one type is in use; asking for another replaces it.
    pub fn scratch_mut<T: Any + Send + Default>(&mut self) -> &mut T {
        if !self
            .scratch
            .as_ref()
            .is_some_and(|scratch| scratch.is::<T>())
        {
            self.scratch = Some(Box::new(T::default()));
        }
        // Just made or checked to be a `T`.
        self.scratch
            .as_mut()
            .and_then(|scratch| scratch.downcast_mut::<T>())
            .expect("scratch of the type just checked")
    }

    /// Takes the scratch state back (for `finish`), if there is one of type `T`.
    pub fn take_scratch<T: Any + Send>(&mut self) -> Option<T> {
        match self.scratch.take()?.downcast::<T>() {
            Ok(scratch) => Some(*scratch),
            Err(other) => {
                self.scratch = Some(other);
                None
            }
        }
    }

    pub(crate) fn into_parts(self) -> (HashMap<Key, Entry>, HashMap<(TableName, Key), Item>) {
        (self.entries, self.puts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_schemas::Sequence;

    fn at(sequence: u64) -> Position {
        Position::new(Sequence::from_u64(sequence), 0)
    }

    #[test]
    fn skips_events_an_item_already_holds() {
        let key = Key::new("p", "s");
        let mut cache = Cache::with_capacity("shard-0".into(), false, 1);
        cache.insert(key.clone(), Box::new(0u32), Some(at(10).sortable()));
        cache.begin_event(&at(9));
        assert!(cache.get_mut::<u32>(&key).is_none());
        cache.begin_event(&at(10));
        assert!(cache.get_mut::<u32>(&key).is_none());
        assert!(cache.changed_keys().is_empty());
        cache.begin_event(&at(11));
        *cache.get_mut::<u32>(&key).unwrap() += 1;
        assert_eq!(cache.changed_keys(), vec![key.clone()]);
        assert_eq!(cache.peek::<u32>(&key), Some(&1));
    }

    #[test]
    fn redrive_applies_and_keeps_the_newer_position() {
        let key = Key::new("p", "s");
        let mut cache = Cache::with_capacity("shard-0".into(), true, 1);
        cache.insert(key.clone(), Box::new(0u32), Some(at(10).sortable()));
        cache.begin_event(&at(3));
        assert!(cache.get_mut::<u32>(&key).is_some());
        let (entries, _) = cache.into_parts();
        assert_eq!(
            entries[&key].new_pos.as_deref(),
            Some(at(10).sortable().as_str())
        );
    }
}
