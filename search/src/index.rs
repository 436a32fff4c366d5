//! The index on disk and what readers share: the schema, the reader, the committed progress.
//!
//! The committed progress (per shard, the position of the last event the index holds; each
//! tenant's live generation; a rebuild under way) lives in tantivy's commit payload, written by
//! the same commit as the documents it covers (see `indexer.rs`). Opening the index reads it
//! back, so the worker resumes exactly there.

use crate::history::Seeding;
use crate::partition::{
    PartitionStatus, Rebuild, RebuildStatus, TenantFields, TenantIndex, partition,
};
use crate::schema::{self, Fields};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use shoal_schemas::{Position, ShardId};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use tantivy::directory::MmapDirectory;
use tantivy::query::QueryParser;
use tantivy::schema::Schema;
use tantivy::{Index, IndexReader, ReloadPolicy};

/// How far the index has applied one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardProgress {
    pub position: Position,
    /// `received_at` of that event (ms).
    pub last_received_at: i64,
}

/// The commit payload: JSON, versioned by its shape (fields added later default to empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub shards: BTreeMap<ShardId, ShardProgress>,
    /// When the commit was made (ms).
    pub committed_at: Option<i64>,
    /// Tenants not at generation 0 with every field searchable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, TenantIndex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<Rebuild>,
    /// Partitions no longer searched, whose documents the next commit deletes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
    /// A seed from the archive under way (`history.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seeding>,
}

impl Payload {
    pub fn parse(text: Option<&str>) -> Result<Payload> {
        match text {
            None => Ok(Payload::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|error| Error::Corrupt(format!("commit payload: {error}"))),
        }
    }

    /// The live generation and fields of `tenant`.
    pub fn tenant(&self, tenant: &str) -> TenantIndex {
        self.tenants.get(tenant).cloned().unwrap_or_default()
    }
}

/// What a search answer reports about freshness: the committed, searchable state.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IndexStatus {
    pub shards: Vec<ShardStatus>,
    /// Documents searchable (events and entities, every tenant; deleted versions excluded).
    pub docs: u64,
    /// When the searchable commit was made (ms).
    pub last_commit: Option<i64>,
    /// The oldest `last_received_at` over the shards: everything received before it is
    /// searchable (for shards that have caught up).
    pub received_through: Option<i64>,
    /// While a new index is seeded from the archive: segments done of all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeding: Option<SeedStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeedStatus {
    pub segments: u32,
    pub done: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShardStatus {
    pub shard: ShardId,
    /// `<sequence>:<index>` of the last event searchable.
    pub position: String,
    pub last_received_at: i64,
}

impl IndexStatus {
    pub(crate) fn from_payload(payload: &Payload, docs: u64) -> IndexStatus {
        IndexStatus {
            shards: payload
                .shards
                .iter()
                .map(|(shard, progress)| ShardStatus {
                    shard: shard.clone(),
                    position: progress.position.to_string(),
                    last_received_at: progress.last_received_at,
                })
                .collect(),
            docs,
            last_commit: payload.committed_at,
            received_through: payload.shards.values().map(|p| p.last_received_at).min(),
            seeding: payload.seed.as_ref().map(|seed| SeedStatus {
                segments: seed.segments,
                done: seed.done,
            }),
        }
    }
}

/// Deletes the index in `dir` when it was made with another schema (an older Shoal): the
/// index is a projection of the log, so opening it then creates an empty one, which the worker
/// fills from the start of the log. Stages and bands (not in the log) come back as the scores
/// projection re-sends them.
fn discard_if_other_schema(dir: &Path, schema: &Schema) -> Result<()> {
    let directory = MmapDirectory::open(dir)?;
    if !Index::exists(&directory).map_err(|error| Error::Corrupt(error.to_string()))? {
        return Ok(());
    }
    let existing = Index::open(directory)?.schema();
    if &existing == schema {
        return Ok(());
    }
    tracing::warn!(
        dir = %dir.display(),
        "the search index was made with another schema; deleting it to rebuild it from the log"
    );
    let entries = std::fs::read_dir(dir).map_err(|error| io_error(dir, error))?;
    for entry in entries {
        let path = entry.map_err(|error| io_error(dir, error))?.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|error| io_error(&path, error))?;
    }
    Ok(())
}

fn io_error(path: &Path, error: std::io::Error) -> Error {
    Error::Index(tantivy::TantivyError::SystemError(format!(
        "{}: {error}",
        path.display()
    )))
}

/// A stage/band update for one entity, from the scores projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Annotation {
    pub tenant: String,
    pub entity: String,
    pub stage: Option<String>,
    pub band: Option<String>,
}

/// The committed state searches are answered from.
struct Published {
    status: IndexStatus,
    payload: Payload,
}

/// A tantivy index of events and entities of every tenant. Searches go through
/// [`SearchIndex::search`], which always restricts to one tenant; writes go through one
/// [`crate::Indexer`] (tantivy allows one writer per index).
pub struct SearchIndex {
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
    pub(crate) parser: QueryParser,
    /// What searches see: replaced whole, under this lock, together with the reader's reload.
    published: Mutex<Published>,
    /// The searchable fields each tenant's live rules ask for (tenants absent: no opinion yet).
    wanted: Mutex<BTreeMap<String, TenantFields>>,
    annotations: Mutex<Vec<Annotation>>,
    /// Wakes an idle worker when annotations arrive.
    pub(crate) wake: tokio::sync::Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder replaces the value whole, so a panic elsewhere cannot leave it half-written.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SearchIndex {
    /// [`Self::open_with`] searching with one thread per core.
    pub fn open(dir: &Path) -> Result<SearchIndex> {
        Self::open_with(dir, 0)
    }

    /// Opens the index in `dir`, creating it when empty, and deleting it first when it was made
    /// with another schema (it is then rebuilt from the log by the worker). A search runs over
    /// the index's segments on `query_threads` threads (0: one per core): a query that matches
    /// much of a big tenant is then answered in about its largest segment's time rather than
    /// the sum of all of them.
    pub fn open_with(dir: &Path, query_threads: usize) -> Result<SearchIndex> {
        std::fs::create_dir_all(dir).map_err(|error| io_error(dir, error))?;
        let (schema, fields) = schema::build();
        discard_if_other_schema(dir, &schema)?;
        let mut index = Index::open_or_create(MmapDirectory::open(dir)?, schema)?;
        match query_threads {
            0 => index.set_default_multithread_executor()?,
            1 => {}
            threads => index.set_multithread_executor(threads)?,
        }
        let reader = index
            .reader_builder()
            // The indexer reloads after each commit, so a search never sees a half-known state
            // and the status always describes what searches see.
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser = QueryParser::for_index(&index, vec![fields.text, fields.attrs]);
        // Dashboards type a few words and expect each to narrow the result.
        parser.set_conjunction_by_default();
        let payload = Payload::parse(index.load_metas()?.payload.as_deref())?;
        let docs = reader.searcher().num_docs();
        Ok(SearchIndex {
            published: Mutex::new(Published {
                status: IndexStatus::from_payload(&payload, docs),
                payload,
            }),
            wanted: Mutex::new(BTreeMap::new()),
            index,
            reader,
            fields,
            parser,
            annotations: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The committed, searchable state.
    pub fn status(&self) -> IndexStatus {
        lock(&self.published).status.clone()
    }

    /// Which generation answers `tenant`'s searches, and the rebuild of its next one if any.
    pub fn partition_status(&self, tenant: &str) -> PartitionStatus {
        let published = lock(&self.published);
        let live = published.payload.tenant(tenant);
        PartitionStatus {
            generation: live.generation,
            fields: live.fields,
            rebuilding: published
                .payload
                .rebuild
                .as_ref()
                .filter(|rebuild| rebuild.tenant == tenant)
                .map(RebuildStatus::of),
        }
    }

    /// Makes a commit searchable: reloads the reader and publishes what the commit holds, both
    /// under one lock, so that a search never pairs a partition with a reader that lacks it.
    pub(crate) fn publish(&self, payload: &Payload) -> Result<()> {
        let mut published = lock(&self.published);
        self.reader.reload()?;
        let docs = self.reader.searcher().num_docs();
        published.status = IndexStatus::from_payload(payload, docs);
        published.payload = payload.clone();
        Ok(())
    }

    /// The freshness, the partition and the searcher for one search of `tenant`.
    pub(crate) fn snapshot(&self, tenant: &str) -> (IndexStatus, String, tantivy::Searcher) {
        let published = lock(&self.published);
        let generation = published.payload.tenant(tenant).generation;
        (
            published.status.clone(),
            partition(tenant, generation).into_owned(),
            self.reader.searcher(),
        )
    }

    /// Sets the searchable fields `tenant`'s live rules ask for. When they differ from what its
    /// documents were built with, the worker rebuilds the tenant's documents beside the live
    /// ones and swaps them in when caught up (see `partition.rs`).
    pub fn set_search_fields(&self, tenant: &str, fields: TenantFields) {
        let changed = lock(&self.wanted).insert(tenant.to_owned(), fields.clone()) != Some(fields);
        if changed {
            self.wake.notify_one();
        }
    }

    pub(crate) fn wanted_fields(&self) -> BTreeMap<String, TenantFields> {
        lock(&self.wanted).clone()
    }

    /// The progress the last commit recorded: where indexing resumes.
    pub(crate) fn committed_payload(&self) -> Result<Payload> {
        Payload::parse(self.index.load_metas()?.payload.as_deref())
    }

    /// Sets an entity's lifecycle stage and score band (from the scores projection). Applied
    /// with the next commit of the worker; the entity document is created if the index does
    /// not know it yet. These updates are not positioned in the log, so one not yet committed
    /// when the process dies is lost: the scores projection re-sends on re-evaluation.
    pub fn set_annotations(
        &self,
        tenant: &str,
        entity: &str,
        stage: Option<&str>,
        band: Option<&str>,
    ) {
        lock(&self.annotations).push(Annotation {
            tenant: tenant.to_owned(),
            entity: entity.to_owned(),
            stage: stage.map(str::to_owned),
            band: band.map(str::to_owned),
        });
        self.wake.notify_one();
    }

    pub(crate) fn take_annotations(&self) -> Vec<Annotation> {
        std::mem::take(&mut *lock(&self.annotations))
    }
}
