//! Helpers shared by the projector's integration tests: events, a log in a tempdir, and a
//! fault-injecting, key-tracking `Table` wrapper over the in-memory double.

#![allow(dead_code)]

use async_trait::async_trait;
use shoal_schemas::{Event, EventKind};
use shoal_storage::embedded::{EmbeddedLog, LogConfig, SyncMode};
use shoal_storage::memory::MemoryTables;
use shoal_storage::{Item, Key, Page, Query, Table, TableName, TransactOp, Update, WriteOp};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use uuid::Uuid;

pub fn log_in(dir: &std::path::Path, shards: u32) -> EmbeddedLog {
    let mut config = LogConfig::new(dir);
    config.shard_count = shards;
    config.sync = SyncMode::Relaxed;
    config.dedup_capacity = 0;
    EmbeddedLog::open(config).expect("open log")
}

pub fn event(
    kind: EventKind,
    entity: &str,
    name: &str,
    timestamp: i64,
    properties: &str,
    value: Option<f64>,
) -> Event {
    Event {
        id: Uuid::now_v7(),
        tenant: "acme".into(),
        kind,
        name: name.into(),
        entity: entity.into(),
        timestamp,
        received_at: timestamp + 5,
        properties: properties.into(),
        value,
    }
}

pub fn track(entity: &str, name: &str, timestamp: i64, properties: &str) -> Event {
    event(EventKind::Track, entity, name, timestamp, properties, None)
}

pub fn metric(series: &str, timestamp: i64, value: f64) -> Event {
    let name = series.split('{').next().unwrap_or(series);
    event(
        EventKind::Metric,
        series,
        name,
        timestamp,
        "{}",
        Some(value),
    )
}

/// What a fault does to a `transact` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fail before applying anything (a timeout before the write).
    Before,
    /// Apply, then report a failure (the answer was lost).
    After,
}

/// The in-memory tables, with injectable `transact` faults, a forced transaction size limit,
/// and a record of every key ever written so the whole content can be dumped.
pub struct TestTables {
    pub inner: MemoryTables,
    pub max_ops: usize,
    /// Transactions over this many bytes ([`TransactOp::size`]) fail as DynamoDB fails them.
    pub max_bytes: usize,
    /// Fail the transact call whose 1-based number this is (0: none).
    pub fail_at: AtomicU64,
    pub fault: Mutex<Fault>,
    pub calls: AtomicU64,
    pub written: Mutex<BTreeSet<(TableName, Key)>>,
    pub transacts: AtomicUsize,
    /// Item writes (ops) of every transact call, failed or not.
    pub ops: AtomicUsize,
    /// At most this many items in a query's page, to exercise the readers' paging.
    pub page_cap: AtomicUsize,
}

impl TestTables {
    pub fn new(max_ops: usize) -> Self {
        TestTables {
            inner: MemoryTables::new(),
            max_ops,
            max_bytes: usize::MAX,
            fail_at: AtomicU64::new(0),
            fault: Mutex::new(Fault::Before),
            calls: AtomicU64::new(0),
            written: Mutex::new(BTreeSet::new()),
            transacts: AtomicUsize::new(0),
            ops: AtomicUsize::new(0),
            page_cap: AtomicUsize::new(usize::MAX),
        }
    }

    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn arm(&self, after_calls: u64, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
        self.fail_at.store(
            self.calls.load(Ordering::SeqCst) + after_calls,
            Ordering::SeqCst,
        );
    }

    pub fn keys(&self) -> BTreeSet<(TableName, Key)> {
        self.written.lock().unwrap().clone()
    }

    fn track(&self, table: TableName, key: &Key) {
        self.written.lock().unwrap().insert((table, key.clone()));
    }
}

/// Every item of `keys` in `tables`, without the attributes that record wall-clock time.
pub async fn dump(
    tables: &dyn Table,
    keys: &BTreeSet<(TableName, Key)>,
) -> Vec<(TableName, Key, Option<Item>)> {
    let mut out = Vec::new();
    for (table, key) in keys {
        let mut item = tables.get(*table, key).await.unwrap();
        if let Some(item) = &mut item {
            item.remove("updated_at");
            item.remove("time");
        }
        out.push((*table, key.clone(), item));
    }
    out
}

/// What the read models answer, for comparing two builds of them: every item of `keys`
/// outside the archive (as [`dump`]), and each archived entity's raw events, newest first. The
/// archive's posting lists depend on how a replay was cut into flushes
/// (`projector/src/archive/postings.rs`); the events it answers must not.
pub async fn read_models(
    tables: &dyn Table,
    log: &dyn shoal_storage::EventLog,
    keys: &BTreeSet<(TableName, Key)>,
) -> (
    Vec<(TableName, Key, Option<Item>)>,
    Vec<(String, Vec<serde_json::Value>)>,
) {
    let items: BTreeSet<_> = keys
        .iter()
        .filter(|(table, _)| *table != TableName::Events)
        .cloned()
        .collect();
    let entities: BTreeSet<&str> = keys
        .iter()
        .filter(|(table, _)| *table == TableName::Events)
        .map(|(_, key)| key.pk.as_str())
        .collect();
    let mut archived = Vec::new();
    for pk in entities {
        let (tenant, entity) = pk.split_once('#').expect("an archive key names its entity");
        let mut events = Vec::new();
        let mut cursor = None;
        loop {
            let page = shoal_projector::archive::events(
                tables,
                Some(log),
                tenant,
                entity,
                0,
                i64::MAX / 2,
                cursor,
                7,
            )
            .await
            .expect("archive page");
            events.extend(page.events);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        archived.push((pk.to_owned(), events));
    }
    (dump(tables, &items).await, archived)
}

#[async_trait]
impl Table for TestTables {
    async fn get(&self, table: TableName, key: &Key) -> shoal_storage::Result<Option<Item>> {
        self.inner.get(table, key).await
    }
    async fn batch_get(
        &self,
        table: TableName,
        keys: &[Key],
    ) -> shoal_storage::Result<Vec<Option<Item>>> {
        self.inner.batch_get(table, keys).await
    }
    async fn query(&self, table: TableName, query: &Query) -> shoal_storage::Result<Page> {
        let cap = self.page_cap.load(Ordering::SeqCst);
        let capped = query.clone().limit(query.limit.min(cap));
        self.inner.query(table, &capped).await
    }
    async fn query_many(
        &self,
        table: TableName,
        queries: &[Query],
    ) -> shoal_storage::Result<Vec<Page>> {
        let cap = self.page_cap.load(Ordering::SeqCst);
        let capped: Vec<Query> = queries
            .iter()
            .map(|query| query.clone().limit(query.limit.min(cap)))
            .collect();
        self.inner.query_many(table, &capped).await
    }
    async fn write(&self, table: TableName, ops: Vec<WriteOp>) -> shoal_storage::Result<()> {
        for op in &ops {
            match op {
                WriteOp::Put { key, .. } | WriteOp::Delete { key } => self.track(table, key),
            }
        }
        self.inner.write(table, ops).await
    }
    async fn update(&self, table: TableName, update: Update) -> shoal_storage::Result<Item> {
        self.track(table, &update.key);
        self.inner.update(table, update).await
    }
    async fn scan(
        &self,
        table: TableName,
        scan: &shoal_storage::Scan,
    ) -> shoal_storage::Result<Page> {
        self.inner.scan(table, scan).await
    }
    async fn transact(&self, ops: Vec<TransactOp>) -> shoal_storage::Result<()> {
        assert!(ops.len() <= self.max_ops, "transaction over the limit");
        let size: usize = ops.iter().map(TransactOp::size).sum();
        if size > self.max_bytes {
            return Err(shoal_storage::Error::TooLarge {
                what: "transaction",
                size,
                limit: self.max_bytes,
            });
        }
        self.transacts.fetch_add(1, Ordering::SeqCst);
        self.ops.fetch_add(ops.len(), Ordering::SeqCst);
        for op in &ops {
            let (table, key) = match op {
                TransactOp::Put { table, key, .. }
                | TransactOp::Delete { table, key, .. }
                | TransactOp::Check { table, key, .. } => (*table, key),
                TransactOp::Update { table, update } => (*table, &update.key),
            };
            self.track(table, key);
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call == self.fail_at.load(Ordering::SeqCst) {
            let fault = *self.fault.lock().unwrap();
            if fault == Fault::After {
                self.inner.transact(ops).await?;
            }
            return Err(shoal_storage::Error::Unavailable("injected".into()));
        }
        self.inner.transact(ops).await
    }
    fn max_transact_ops(&self) -> usize {
        self.max_ops
    }
    fn max_transact_bytes(&self) -> usize {
        self.max_bytes
    }
}
