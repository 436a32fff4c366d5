//! The `Table` trait: the subset of DynamoDB's item model Shoal needs.
//!
//! Three logical tables ([`TableName`]), each holding items addressed by a partition key and a
//! sort key, both strings. An item is a map of attribute names to [`Value`]s, not including the
//! key. Semantics follow DynamoDB so the AWS backend is a thin mapping:
//! - `query` returns one partition's items in sort-key byte order (or reverse), within an
//!   optional range, at most `limit` a page, with an opaque cursor for the next page;
//! - `update` creates the item when missing, applies SET / ADD / REMOVE, and fails with
//!   [`crate::Error::ConditionFailed`] when its condition does not hold (nothing changes then);
//! - `write` is a non-atomic batch of puts and deletes (each applied exactly once on success);
//! - `transact` applies every op or none, checking every condition first.
//!
//! Numbers are `f64` (exact integers up to 2^53, plenty for counters); anything that must sort
//! or compare exactly beyond that (log positions) is stored as sortable text.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The three logical tables of DESIGN.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TableName {
    /// The immutable archive: PK `tenant#entity`, SK `timestamp#id`.
    Events,
    /// Mutable read models, keys prefixed by projection version.
    Views,
    /// Checkpoints, leases, rules, tenants and keys, dead letters.
    Control,
}

impl TableName {
    pub const ALL: [TableName; 3] = [TableName::Events, TableName::Views, TableName::Control];

    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Events => "events",
            TableName::Views => "views",
            TableName::Control => "control",
        }
    }
}

/// An item's primary key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// An attribute value, mirroring DynamoDB's types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    S(String),
    N(f64),
    /// Serialized as bytes, not as a sequence of `u8`: postcard writes the same bytes either
    /// way (varint length, then the bytes), but decodes bytes with one copy instead of a push
    /// per byte.
    B(#[serde(with = "serde_bytes")] Vec<u8>),
    Bool(bool),
    Null,
    L(Vec<Value>),
    M(BTreeMap<String, Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::S(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::N(number) => Some(*number),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::B(bytes) => Some(bytes),
            _ => None,
        }
    }
}

/// An item's attributes, without its key.
pub type Item = BTreeMap<String, Value>;

/// A condition on the current item (absent attributes compare false, except in `NotExists`).
/// Comparisons follow DynamoDB: strings and binaries byte-wise, numbers numerically, and values
/// of different types never compare.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The item exists (has its key).
    ItemExists,
    /// The item does not exist.
    ItemNotExists,
    Exists(String),
    NotExists(String),
    Eq(String, Value),
    Lt(String, Value),
    Le(String, Value),
    Gt(String, Value),
    Ge(String, Value),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

/// Create-or-modify one item: `set` then `add` then `remove`, under an optional condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub key: Key,
    pub set: Vec<(String, Value)>,
    /// Adds to a number attribute (an absent attribute counts as 0).
    pub add: Vec<(String, f64)>,
    pub remove: Vec<String>,
    pub condition: Option<Condition>,
}

impl Update {
    pub fn new(key: Key) -> Self {
        Update {
            key,
            set: Vec::new(),
            add: Vec::new(),
            remove: Vec::new(),
            condition: None,
        }
    }

    pub fn set(mut self, name: impl Into<String>, value: Value) -> Self {
        self.set.push((name.into(), value));
        self
    }

    pub fn add(mut self, name: impl Into<String>, delta: f64) -> Self {
        self.add.push((name.into(), delta));
        self
    }

    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.remove.push(name.into());
        self
    }

    pub fn when(mut self, condition: Condition) -> Self {
        self.condition = Some(condition);
        self
    }
}

/// One op of a non-atomic batch write.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Put { key: Key, item: Item },
    Delete { key: Key },
}

/// One op of an atomic transaction; each names its table.
#[derive(Clone, Debug, PartialEq)]
pub enum TransactOp {
    Put {
        table: TableName,
        key: Key,
        item: Item,
        condition: Option<Condition>,
    },
    Update {
        table: TableName,
        update: Update,
    },
    Delete {
        table: TableName,
        key: Key,
        condition: Option<Condition>,
    },
    Check {
        table: TableName,
        key: Key,
        condition: Condition,
    },
}

impl TransactOp {
    /// The bytes this op counts toward a transaction's size limit
    /// ([`Table::max_transact_bytes`]), by DynamoDB's rules: a put's whole item, an update's key
    /// and the values it sets (what the item holds beside them is not known before sending), a
    /// delete's or check's key.
    pub fn size(&self) -> usize {
        use crate::embedded::table::validate::item_size;
        match self {
            TransactOp::Put { key, item, .. } => item_size(key, item),
            TransactOp::Update { update, .. } => {
                let set: Item = update.set.iter().cloned().collect();
                item_size(&update.key, &set)
            }
            TransactOp::Delete { key, .. } | TransactOp::Check { key, .. } => {
                key.pk.len() + key.sk.len()
            }
        }
    }
}

/// The sort-key part of a query.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum SortRange {
    #[default]
    All,
    /// Sort keys starting with this prefix.
    Prefix(String),
    /// `from <= sk <= to` (inclusive, as DynamoDB's BETWEEN).
    Between(String, String),
    /// `sk >= from`.
    From(String),
    /// `sk <= to`.
    To(String),
}

/// Items of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub pk: String,
    pub range: SortRange,
    /// Descending sort-key order.
    pub reverse: bool,
    /// At most this many items in the page (at least 1).
    pub limit: usize,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

impl Query {
    pub fn partition(pk: impl Into<String>) -> Self {
        Query {
            pk: pk.into(),
            range: SortRange::All,
            reverse: false,
            limit: 1000,
            cursor: None,
        }
    }

    pub fn range(mut self, range: SortRange) -> Self {
        self.range = range;
        self
    }

    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    pub fn after(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// A page of query results. `next` is `None` on the last page.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Page {
    pub items: Vec<(Key, Item)>,
    pub next: Option<String>,
}

/// One segment of a parallel scan of a whole table (DynamoDB's `Segment`/`TotalSegments`):
/// each partition (every item of one `pk`) lies in exactly one segment, so a reader of a
/// segment sees whole partitions, and the segments together hold every item once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub segment: u32,
    pub total_segments: u32,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// The most segments one scan may have (DynamoDB's limit).
pub const MAX_SCAN_SEGMENTS: u32 = 1_000_000;

impl Scan {
    pub fn segment(segment: u32, total_segments: u32) -> Self {
        Scan {
            segment,
            total_segments,
            limit: 1000,
            cursor: None,
        }
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn after(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    /// Refuses impossible segments and a zero limit.
    pub fn validate(&self) -> crate::Result<()> {
        if self.total_segments == 0
            || self.total_segments > MAX_SCAN_SEGMENTS
            || self.segment >= self.total_segments
        {
            return Err(crate::Error::InvalidArgument(format!(
                "scan segment {} of {} (segments are 0..total, total 1..={MAX_SCAN_SEGMENTS})",
                self.segment, self.total_segments
            )));
        }
        if self.limit == 0 {
            return Err(crate::Error::InvalidArgument(
                "scan limit must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Whether partition `pk` belongs to this segment on the local backends (DynamoDB assigns
    /// partitions to segments itself).
    pub(crate) fn holds(&self, pk: &str) -> bool {
        crc32c::crc32c(pk.as_bytes()) % self.total_segments == self.segment
    }
}

/// Queries the default [`Table::query_many`] has in flight at once.
pub const QUERY_MANY_IN_FLIGHT: usize = 16;

/// The tables. Object-safe; injected as `Arc<dyn Table>`.
#[async_trait]
pub trait Table: Send + Sync {
    async fn get(&self, table: TableName, key: &Key) -> crate::Result<Option<Item>>;

    /// One answer per key, in the order asked.
    async fn batch_get(&self, table: TableName, keys: &[Key]) -> crate::Result<Vec<Option<Item>>>;

    async fn query(&self, table: TableName, query: &Query) -> crate::Result<Page>;

    /// One page per query, in the order asked, each what [`Table::query`] answers for it: how
    /// a read of many partitions (a metric's series) asks at once. The default sends up to
    /// [`QUERY_MANY_IN_FLIGHT`] queries at a time (DynamoDB has no batch query); the embedded
    /// backend reads them all from one snapshot, without a transaction per query.
    async fn query_many(&self, table: TableName, queries: &[Query]) -> crate::Result<Vec<Page>> {
        use futures::StreamExt;
        // Made before streaming: a stream holding the mapping closure is not `Send` here
        // (the closure is not general over the query's lifetime).
        let reads: Vec<_> = queries
            .iter()
            .map(|query| self.query(table, query))
            .collect();
        futures::stream::iter(reads)
            .buffered(QUERY_MANY_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// Puts and deletes, not atomic as a whole; splits into backend-sized batches itself.
    async fn write(&self, table: TableName, ops: Vec<WriteOp>) -> crate::Result<()>;

    /// Conditional create-or-modify of one item; returns the item after the update.
    async fn update(&self, table: TableName, update: Update) -> crate::Result<Item>;

    /// All or nothing, across tables. At most [`Table::max_transact_ops`] ops.
    async fn transact(&self, ops: Vec<TransactOp>) -> crate::Result<()>;

    /// [`Table::transact`] for writes that can be made again from the log (a projector's flush
    /// and its checkpoint): all or nothing and visible to every read once it returns, but a
    /// crash may undo it until the backend next syncs. What a crash undoes is always a suffix:
    /// if a write is lost, every write the backend accepted after it is lost too, so a flush is
    /// never kept without the flushes before it, nor a checkpoint without its items.
    ///
    /// The default is `transact` itself (DynamoDB is durable when it answers); the embedded
    /// backend defers the fsync to a later commit (see its `commit` module).
    async fn transact_relaxed(&self, ops: Vec<TransactOp>) -> crate::Result<()> {
        self.transact(ops).await
    }

    /// A page of one segment of a scan of the whole table, in no promised order; `next` is
    /// `Some` while more may follow (a page may be short, even empty, before the end).
    async fn scan(&self, table: TableName, scan: &Scan) -> crate::Result<Page>;

    /// The largest transaction the backend takes (DynamoDB: 100).
    fn max_transact_ops(&self) -> usize;

    /// The most bytes one transaction may hold, summed over [`TransactOp::size`] (DynamoDB:
    /// 4 MiB); `usize::MAX`, the default, when only the op count is bounded. A transaction
    /// over it fails with [`crate::Error::TooLarge`] whatever the retries, so whoever splits
    /// writes into transactions must count bytes as well as ops.
    fn max_transact_bytes(&self) -> usize {
        usize::MAX
    }

    /// A count that moves whenever writes commit, when the backend can tell; `None` (the
    /// default, and DynamoDB's) when writes may come from elsewhere. A commit is counted once
    /// it is visible and before its writers are answered, so what was derived from reads made
    /// after seeing count `n` misses nothing counted by `n`; while the count still reads `n`,
    /// it lags at most the commits visible but not yet counted. A reader can keep such a
    /// derived value as a lower bound (a projection's checkpoints) until the count moves.
    fn commit_count(&self) -> Option<u64> {
        None
    }
}
