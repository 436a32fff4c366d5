//! The index on disk and what readers share: the schema, the reader, the committed progress.
//!
//! The committed progress (per shard, the position of the last event the index holds) lives in
//! tantivy's commit payload, written by the same commit as the documents it covers (see
//! `indexer.rs`). Opening the index reads it back, so the worker resumes exactly there.

use crate::document::SearchFields;
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

/// The commit payload: JSON, versioned by its shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub shards: BTreeMap<ShardId, ShardProgress>,
    /// When the commit was made (ms).
    pub committed_at: Option<i64>,
}

impl Payload {
    pub fn parse(text: Option<&str>) -> Result<Payload> {
        match text {
            None => Ok(Payload::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|error| Error::Corrupt(format!("commit payload: {error}"))),
        }
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

/// A tantivy index of events and entities of every tenant. Searches go through
/// [`SearchIndex::search`], which always restricts to one tenant; writes go through one
/// [`crate::Indexer`] (tantivy allows one writer per index).
pub struct SearchIndex {
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
    pub(crate) searchable: SearchFields,
    pub(crate) parser: QueryParser,
    status: Mutex<IndexStatus>,
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
    /// Opens the index in `dir`, creating it when empty, and deleting it first when it was made
    /// with another schema (it is then rebuilt from the log by the worker).
    pub fn open(dir: &Path, searchable: SearchFields) -> Result<SearchIndex> {
        std::fs::create_dir_all(dir).map_err(|error| io_error(dir, error))?;
        let (schema, fields) = schema::build();
        discard_if_other_schema(dir, &schema)?;
        let index = Index::open_or_create(MmapDirectory::open(dir)?, schema)?;
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
            status: Mutex::new(IndexStatus::from_payload(&payload, docs)),
            index,
            reader,
            fields,
            searchable,
            parser,
            annotations: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The committed, searchable state.
    pub fn status(&self) -> IndexStatus {
        lock(&self.status).clone()
    }

    pub(crate) fn set_status(&self, status: IndexStatus) {
        *lock(&self.status) = status;
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
