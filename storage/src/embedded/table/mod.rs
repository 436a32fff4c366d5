//! The embedded [`Table`] backend: one redb database file holding the three logical tables.
//!
//! Layout: one redb table per [`TableName`] (named by [`TableName::as_str`]), keyed by the tuple
//! `(pk, sk)`; redb orders tuples element by element and `&str` by its bytes, so a partition is
//! one contiguous run in sort-key byte order and a query is one range scan. The value is the item
//! in the compact form of `codec`.
//!
//! Invariants and why:
//! - every write operation is one redb write transaction (possibly shared, below), and
//!   "returned Err" means "nothing happened": the projector makes its effects exactly-once by
//!   committing a flush and its checkpoint in one `transact`;
//! - every write is on disk ([`Durability::Immediate`], fsync) before the call returns, except
//!   `transact_relaxed`: a projector flush, which the log can always make again, is committed
//!   without an fsync and made durable by the next durable commit: any write that asks for it,
//!   the first group once the sync interval (1 s unless [`EmbeddedTables::set_sync_interval`]
//!   says otherwise) has passed, or the close. A crash before that
//!   undoes it; redb undoes only whole transactions, newest first, so a crash loses a suffix of
//!   flushes and never keeps a checkpoint without its items;
//! - `write` is atomic here too (one transaction), which is stronger than the trait promises;
//! - redb is blocking. Writes run on a committer thread of the tables' own and are
//!   group-committed (`commit`): the calls that arrive during a commit share the next
//!   transaction and its one fsync. Reads start on the calling task: a point read, a small
//!   `batch_get`, the first [`INLINE_ROWS`] rows (or [`INLINE_BYTES`]) of a query and the first
//!   [`INLINE_MANY_ROWS`] rows of a `query_many` (over all its queries, yielding after each
//!   query's worth) take a few microseconds from redb's page cache, less than a hop to the
//!   blocking pool and back (two thread wake-ups, which on a busy machine are what a
//!   dashboard's tail latency is made of); a read that goes on past that budget moves, with its
//!   snapshot, to the blocking pool, so a long scan never stalls the async workers;
//! - input is held to DynamoDB's limits (`validate`) so code that works here works on AWS;
//! - redb's page cache is left at its default (at most 1 GiB, grown on demand);
//! - [`Table::max_transact_ops`] is `usize::MAX`: a redb transaction has no op limit (DynamoDB's
//!   is 100), which is what lets one transaction carry a whole projector flush.
//!
//! The pure parts — conditions and updates (`condition`), input limits (`validate`), query
//! bounds and paging (`range`, `cursor`) and the write operations over any item store
//! (`ops`) — are shared with the in-memory double, [`crate::memory::MemoryTables`].

pub(crate) mod codec;
mod commit;
pub use commit::DEFAULT_SYNC_INTERVAL;
pub(crate) mod condition;
pub(crate) mod cursor;
pub(crate) mod ops;
pub(crate) mod range;
pub(crate) mod validate;

use crate::{
    Error, Item, Key, Page, Query, Result, Scan, Table, TableName, TransactOp, Update, WriteOp,
};
use async_trait::async_trait;
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A redb table's definition: `(pk, sk)` → encoded item.
type Definition = TableDefinition<'static, (&'static str, &'static str), &'static [u8]>;

/// A redb table open in a write transaction.
type OpenTable<'txn> = redb::Table<'txn, (&'static str, &'static str), &'static [u8]>;

/// A range scan of a read transaction; it holds its snapshot, so it can move between threads.
type ReadRange = redb::Range<'static, (&'static str, &'static str), &'static [u8]>;

/// Rows a query scans on the calling task before the rest of it moves to the blocking pool.
const INLINE_ROWS: usize = 64;
/// Stored bytes a query reads on the calling task before the rest moves to the blocking pool
/// (decoding copies them: about 10 µs per 100 KiB).
const INLINE_BYTES: usize = 128 * 1024;
/// Rows and stored bytes a `query_many` reads on the calling task, over all its queries,
/// yielding after each [`INLINE_ROWS`] / [`INLINE_BYTES`].
const INLINE_MANY_ROWS: usize = 4096;
const INLINE_MANY_BYTES: usize = 1024 * 1024;
/// Keys a `batch_get` reads on the calling task; a larger batch runs on the blocking pool.
const INLINE_KEYS: usize = 16;

fn definition(table: TableName) -> Definition {
    TableDefinition::new(table.as_str())
}

/// The tables in one redb file. Cheap to clone; clones share the open database.
#[derive(Clone)]
pub struct EmbeddedTables {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// For error messages.
    path: PathBuf,
    /// Writes waiting for the next group commit (shared with the leader, which holds the
    /// database itself only while it commits).
    queue: Arc<std::sync::Mutex<commit::Queue>>,
    /// Wakes the committer thread to lead (`commit`).
    committer: std::sync::mpsc::Sender<()>,
    /// Groups committed (or tried) so far: [`Table::commit_count`].
    commits: std::sync::atomic::AtomicU64,
    /// The committer's nice value, taken by it before its next group (`commit::NICE_UNSET`:
    /// the opener's).
    commit_nice: Arc<std::sync::atomic::AtomicI32>,
}

impl std::fmt::Debug for EmbeddedTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTables")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedTables {
    /// Opens the database file at `path` (e.g. `<data>/tables.redb`), creating it and its parent
    /// directories when missing. Blocking (redb may repair the file after a crash): call it at
    /// startup or inside `spawn_blocking`. A file already open in this process is refused.
    pub fn open(path: &Path) -> Result<EmbeddedTables> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
        let db = Database::create(path).map_err(redb_error)?;
        // Create the three tables up front so that a read never meets a missing one.
        let txn = db.begin_write().map_err(redb_error)?;
        for table in TableName::ALL {
            txn.open_table(definition(table)).map_err(redb_error)?;
        }
        txn.commit().map_err(redb_error)?;
        let (committer, wakes) = std::sync::mpsc::channel();
        let inner = Arc::new(Inner {
            db,
            path: path.to_owned(),
            queue: Default::default(),
            committer,
            commits: Default::default(),
            commit_nice: Arc::new(commit::NICE_UNSET.into()),
        });
        commit::start_committer(
            Arc::downgrade(&inner),
            Arc::clone(&inner.queue),
            Arc::clone(&inner.commit_nice),
            wakes,
        )?;
        Ok(EmbeddedTables { inner })
    }

    /// Runs the group commits at CPU priority `nice` from the next group on. Every table write
    /// goes through that one thread, so its priority is the live projections' (they are most
    /// of its work): the server lowers it with them to leave ingest the cores under overload
    /// (`shoal_projector::ProjectorConfig::live_nice`). Rebuilds write through it too, at a
    /// lower priority of their own, and gain the committer's. Lowering only: a committer
    /// already below `nice` keeps its own ([`crate::priority::lower_current_thread_to`]).
    pub fn set_commit_nice(&self, nice: i32) {
        self.inner
            .commit_nice
            .store(nice, std::sync::atomic::Ordering::Relaxed);
    }

    /// Commits a group of relaxed writes durably once the last durable commit is `interval`
    /// old (from the next group on; zero: every group). A shorter interval makes each durable
    /// commit smaller, and every read model waits for it; a crash replays at most this much.
    pub fn set_sync_interval(&self, interval: std::time::Duration) {
        commit::lock(&self.inner.queue).sync_interval = interval;
    }

    /// Runs blocking redb work on tokio's blocking pool.
    async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|error| Error::Backend(format!("a table task failed: {error}")))?
    }
}

impl Inner {
    fn location(&self, table: TableName, key: &Key) -> String {
        location(&self.path, table, key)
    }
}

fn location(path: &Path, table: TableName, key: &Key) -> String {
    format!(
        "{} table {} key {:?}/{:?}",
        path.display(),
        table.as_str(),
        key.pk,
        key.sk
    )
}

/// An [`ops::ItemStore`] over a redb write transaction, opening each table once.
struct RedbStore<'txn> {
    txn: &'txn redb::WriteTransaction,
    open: [Option<OpenTable<'txn>>; 3],
    path: &'txn Path,
    /// Reused to encode each stored item.
    buffer: Vec<u8>,
}

impl<'txn> RedbStore<'txn> {
    fn new(txn: &'txn redb::WriteTransaction, path: &'txn Path) -> Self {
        RedbStore {
            txn,
            open: Default::default(),
            path,
            buffer: Vec::new(),
        }
    }

    fn table(&mut self, table: TableName) -> Result<&mut OpenTable<'txn>> {
        let slot = &mut self.open[table_index(table)];
        if slot.is_none() {
            *slot = Some(self.txn.open_table(definition(table)).map_err(redb_error)?);
        }
        slot.as_mut()
            .ok_or_else(|| Error::Backend("a table failed to open".to_owned()))
    }

    /// Writes an item's stored bytes under `key`.
    fn insert(&mut self, table: TableName, key: &Key, bytes: &[u8]) -> Result<()> {
        self.table(table)?
            .insert((key.pk.as_str(), key.sk.as_str()), bytes)
            .map_err(redb_error)?;
        Ok(())
    }
}

fn table_index(table: TableName) -> usize {
    match table {
        TableName::Events => 0,
        TableName::Views => 1,
        TableName::Control => 2,
    }
}

impl ops::ItemStore for RedbStore<'_> {
    fn load(&mut self, table: TableName, key: &Key) -> Result<Option<Item>> {
        let path = self.path;
        let found = self
            .table(table)?
            .get((key.pk.as_str(), key.sk.as_str()))
            .map_err(redb_error)?;
        found
            .map(|guard| codec::decode_item(guard.value(), || location(path, table, key)))
            .transpose()
    }

    fn store_encoded(&mut self, table: TableName, key: &Key, bytes: Vec<u8>) -> Result<()> {
        self.insert(table, key, &bytes)
    }

    fn store(&mut self, table: TableName, key: &Key, item: Item) -> Result<()> {
        // One encoding buffer for the whole transaction, not one allocation per item.
        let buffer = codec::encode_item(&item, std::mem::take(&mut self.buffer))?;
        // Free the item before the insert, while its memory is still hot in the cache.
        drop(item);
        let inserted = self.insert(table, key, &buffer);
        self.buffer = buffer;
        inserted
    }

    fn erase(&mut self, table: TableName, key: &Key) -> Result<()> {
        self.table(table)?
            .remove((key.pk.as_str(), key.sk.as_str()))
            .map_err(redb_error)?;
        Ok(())
    }
}

/// A put's item as redb stores it, encoded on the writer's task (`ops::Prepared`).
fn encode_put(item: &Item) -> Result<Vec<u8>> {
    codec::encode_item(item, Vec::new())
}

/// One row of a redb range scan.
type StoredEntry<'a> = redb::Result<(
    redb::AccessGuard<'a, (&'static str, &'static str)>,
    redb::AccessGuard<'a, &'static [u8]>,
)>;

/// A scanned row of partition `pk` as its sort key and item.
fn decode_entry(
    inner: &Inner,
    table: TableName,
    pk: &str,
    entry: StoredEntry<'_>,
) -> Result<(String, Item)> {
    let (stored_key, stored_value) = entry.map_err(redb_error)?;
    let (stored_pk, sk) = stored_key.value();
    debug_assert_eq!(stored_pk, pk, "a range scan left its partition");
    let item = codec::decode_item(stored_value.value(), || {
        inner.location(table, &Key::new(stored_pk, sk))
    })?;
    Ok((sk.to_owned(), item))
}

/// A query's page being read: the scan (with its snapshot) and the items so far.
struct PageScan {
    table: TableName,
    rows: ReadRange,
    reverse: bool,
    pager: range::Pager,
}

impl PageScan {
    /// The scan of `query`'s page in `redb_table`; `None` when its range holds nothing.
    fn open(
        redb_table: &ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
        table: TableName,
        query: &Query,
    ) -> Result<Option<PageScan>> {
        let Some(bounds) = range::page_bounds(query)? else {
            return Ok(None);
        };
        let pk = query.pk.as_str();
        let end = range::partition_end(pk);
        let lower = bounds.lower.as_ref().map(|sk| (pk, sk.as_str()));
        let upper = match &bounds.upper {
            Bound::Unbounded => Bound::Excluded((end.as_str(), "")),
            bounded => bounded.as_ref().map(|sk| (pk, sk.as_str())),
        };
        let rows = redb_table
            .range::<(&str, &str)>((lower, upper))
            .map_err(redb_error)?;
        Ok(Some(PageScan {
            table,
            rows,
            reverse: query.reverse,
            pager: range::Pager::new(pk, query.limit),
        }))
    }

    /// Reads rows until the page is done (`Some`), or, with a `budget` of (rows, bytes), until
    /// it is spent (`None`: call again to go on); what it read is taken off the budget.
    fn run(
        &mut self,
        inner: &Inner,
        pk: &str,
        budget: Option<&mut (usize, usize)>,
    ) -> Result<Option<Page>> {
        let mut unbounded = (usize::MAX, usize::MAX);
        let (rows_left, bytes_left) = budget.unwrap_or(&mut unbounded);
        loop {
            // A full page only peeks at the next row, so it finishes here whatever the budget.
            if !self.pager.is_full() && (*rows_left == 0 || *bytes_left == 0) {
                return Ok(None);
            }
            let entry = if self.reverse {
                self.rows.next_back()
            } else {
                self.rows.next()
            };
            let Some(entry) = entry else {
                return Ok(Some(self.take().finish()));
            };
            if self.pager.is_full() {
                return Ok(Some(self.take().finish_before_more()));
            }
            let stored = entry
                .as_ref()
                .map(|(_, value)| value.value().len())
                .unwrap_or(0);
            let (sk, item) = decode_entry(inner, self.table, pk, entry)?;
            self.pager.push(sk, item);
            *rows_left -= 1;
            *bytes_left = bytes_left.saturating_sub(stored);
        }
    }

    /// The rest of the page, with no budget.
    fn finish(&mut self, inner: &Inner, pk: &str) -> Result<Page> {
        self.run(inner, pk, None)?
            .ok_or_else(|| Error::Backend("an unbounded scan stopped early".to_owned()))
    }

    fn take(&mut self) -> range::Pager {
        std::mem::replace(&mut self.pager, range::Pager::new("", 1))
    }
}

/// `key`'s item in `table`, from a fresh snapshot.
fn read_one(inner: &Inner, table: TableName, key: &Key) -> Result<Option<Item>> {
    Ok(read_many(inner, table, std::slice::from_ref(key))?
        .pop()
        .flatten())
}

/// `keys`' items in `table`, from one snapshot.
fn read_many(inner: &Inner, table: TableName, keys: &[Key]) -> Result<Vec<Option<Item>>> {
    let txn = inner.db.begin_read().map_err(redb_error)?;
    let redb_table = txn.open_table(definition(table)).map_err(redb_error)?;
    keys.iter()
        .map(|key| {
            let found = redb_table
                .get((key.pk.as_str(), key.sk.as_str()))
                .map_err(redb_error)?;
            found
                .map(|guard| codec::decode_item(guard.value(), || inner.location(table, key)))
                .transpose()
        })
        .collect()
}

/// redb's errors in the storage crate's terms.
fn redb_error(error: impl Into<redb::Error>) -> Error {
    match error.into() {
        redb::Error::Io(error) => Error::Io(error),
        redb::Error::Corrupted(detail) => Error::Corrupt {
            location: "tables database".to_owned(),
            detail,
        },
        redb::Error::DatabaseAlreadyOpen => {
            Error::Backend("the tables database is already open".to_owned())
        }
        other => Error::Backend(other.to_string()),
    }
}

#[async_trait]
impl Table for EmbeddedTables {
    async fn get(&self, table: TableName, key: &Key) -> Result<Option<Item>> {
        validate::key(key)?;
        read_one(&self.inner, table, key)
    }

    async fn batch_get(&self, table: TableName, keys: &[Key]) -> Result<Vec<Option<Item>>> {
        keys.iter().try_for_each(validate::key)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.len() <= INLINE_KEYS {
            return read_many(&self.inner, table, keys);
        }
        let keys = keys.to_vec();
        self.blocking(move |inner| read_many(inner, table, &keys))
            .await
    }

    async fn query(&self, table: TableName, query: &Query) -> Result<Page> {
        validate::partition_key(&query.pk)?;
        let inner = &self.inner;
        let txn = inner.db.begin_read().map_err(redb_error)?;
        let redb_table = txn.open_table(definition(table)).map_err(redb_error)?;
        let Some(mut scan) = PageScan::open(&redb_table, table, query)? else {
            return Ok(Page::default());
        };
        let pk = query.pk.as_str();
        if let Some(page) = scan.run(inner, pk, Some(&mut (INLINE_ROWS, INLINE_BYTES)))? {
            return Ok(page);
        }
        let pk = query.pk.clone();
        self.blocking(move |inner| scan.finish(inner, &pk)).await
    }

    async fn query_many(&self, table: TableName, queries: &[Query]) -> Result<Vec<Page>> {
        queries
            .iter()
            .try_for_each(|query| validate::partition_key(&query.pk))?;
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let txn = inner.db.begin_read().map_err(redb_error)?;
        let redb_table = txn.open_table(definition(table)).map_err(redb_error)?;
        drop(txn);
        // Many small queries (an entity list's count reads, a metric's series) read here, in
        // slices of a lone query's budget with a yield between them, so no slice holds the
        // worker longer than one query would; past the total, the call moves with its
        // snapshot to the blocking pool.
        let mut total = (INLINE_MANY_ROWS, INLINE_MANY_BYTES);
        let mut slice = (INLINE_ROWS, INLINE_BYTES);
        let mut pages = Vec::with_capacity(queries.len());
        for (done, query) in queries.iter().enumerate() {
            let Some(mut scan) = PageScan::open(&redb_table, table, query)? else {
                pages.push(Page::default());
                continue;
            };
            let page = loop {
                let before = slice;
                let page = scan.run(inner, &query.pk, Some(&mut slice))?;
                total.0 = total.0.saturating_sub(before.0 - slice.0);
                total.1 = total.1.saturating_sub(before.1 - slice.1);
                if page.is_some() || total.0 == 0 || total.1 == 0 {
                    break page;
                }
                tokio::task::yield_now().await;
                slice = (INLINE_ROWS.min(total.0), INLINE_BYTES.min(total.1));
            };
            if let Some(page) = page {
                pages.push(page);
                continue;
            }
            let rest = queries[done + 1..].to_vec();
            let pk = query.pk.clone();
            return self
                .blocking(move |inner| {
                    pages.push(scan.finish(inner, &pk)?);
                    for query in &rest {
                        pages.push(match PageScan::open(&redb_table, table, query)? {
                            Some(mut scan) => scan.finish(inner, &query.pk)?,
                            None => Page::default(),
                        });
                    }
                    Ok(pages)
                })
                .await;
        }
        Ok(pages)
    }

    async fn scan(&self, table: TableName, scan: &Scan) -> Result<Page> {
        scan.validate()?;
        let after = match &scan.cursor {
            Some(text) => Some(cursor::decode_key(text)?),
            None => None,
        };
        let scan = scan.clone();
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(redb_error)?;
            let redb_table = txn.open_table(definition(table)).map_err(redb_error)?;
            let lower = after
                .as_ref()
                .map(|(pk, sk)| Bound::Excluded((pk.as_str(), sk.as_str())))
                .unwrap_or(Bound::Unbounded);
            let rows = redb_table
                .range::<(&str, &str)>((lower, Bound::Unbounded))
                .map_err(redb_error)?;
            let mut items: Vec<(Key, Item)> = Vec::new();
            for entry in rows {
                let (stored_key, stored_value) = entry.map_err(redb_error)?;
                let (pk, sk) = stored_key.value();
                if !scan.holds(pk) {
                    continue;
                }
                if items.len() == scan.limit {
                    let next = items
                        .last()
                        .map(|(key, _)| cursor::encode(&key.pk, &key.sk));
                    return Ok(Page { items, next });
                }
                let key = Key::new(pk, sk);
                let item =
                    codec::decode_item(stored_value.value(), || inner.location(table, &key))?;
                items.push((key, item));
            }
            Ok(Page { items, next: None })
        })
        .await
    }

    async fn write(&self, table: TableName, ops: Vec<WriteOp>) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        commit::submit(&self.inner, commit::Request::Write(table, ops))
            .await
            .map(|_| ())
    }

    async fn update(&self, table: TableName, update: Update) -> Result<Item> {
        commit::submit(&self.inner, commit::Request::Update(table, update))
            .await?
            .ok_or_else(|| Error::Backend("an update answered without its item".to_owned()))
    }

    async fn transact(&self, transaction: Vec<TransactOp>) -> Result<()> {
        let prepared = ops::Prepared::new(transaction)?.encode_puts(encode_put)?;
        commit::submit(&self.inner, commit::Request::Transact(prepared))
            .await
            .map(|_| ())
    }

    async fn transact_relaxed(&self, transaction: Vec<TransactOp>) -> Result<()> {
        let prepared = ops::Prepared::new(transaction)?.encode_puts(encode_put)?;
        commit::submit(&self.inner, commit::Request::TransactRelaxed(prepared))
            .await
            .map(|_| ())
    }

    fn commit_count(&self) -> Option<u64> {
        Some(
            self.inner
                .commits
                .load(std::sync::atomic::Ordering::Acquire),
        )
    }

    /// Unlimited: one redb transaction takes any number of ops (DynamoDB: 100).
    fn max_transact_ops(&self) -> usize {
        usize::MAX
    }
}
