//! The one writer of the index, and the exactly-once argument.
//!
//! Events are added as documents as they are read; entity documents are folded in memory (the
//! map holds the entities touched since the last commit, each loaded from its stored `state`
//! the first time) and written at commit time as delete-by-key + add. After a commit the
//! states written stay in `committed_entities`, exactly what the index holds for them, so the
//! next batch touching them need not look them up in the index (a term look-up, a stored
//! document and a JSON parse each); the cache is dropped when it grows past
//! `ENTITY_CACHE` and on a rollback. The commit carries, in its
//! payload, each shard's position after the last event it covers. tantivy makes the documents,
//! the deletes and the payload visible together or not at all, so after a crash the index holds
//! exactly the events up to the payload positions, and the entities as of those positions;
//! indexing resumes from there. Re-applying the events after a payload position to an entity's
//! committed state gives the same state as applying them once (traits: later keys overwrite;
//! last seen: a maximum), so nothing is duplicated and nothing is missed.
//!
//! Documents are handed to tantivy at commit time, grouped by tenant (event documents are held
//! until then). tantivy numbers documents in the order they are added and merges keep that
//! order, so each tenant's documents of a commit are neighbours in the index: the tenant clause
//! of every search then lets the term clauses skip whole posting blocks of other tenants
//! instead of visiting every match of every tenant. The longer the commits, the longer these
//! runs; a trickle of events makes short ones (the index is then small in proportion).

use crate::document::{self, EntityState};
use crate::index::{Annotation, IndexStatus, Payload, SearchIndex, ShardProgress};
use crate::schema;
use crate::{Error, Result};
use shoal_schemas::{Position, ShardId, time::now_millis};
use shoal_storage::LogRecord;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;
use tantivy::collector::TopDocs;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{IndexWriter, TantivyDocument, Term};

/// Committed entity states kept in memory between commits, at most.
const ENTITY_CACHE: usize = 200_000;

/// Writes documents for log records, and commits them with the positions they cover.
pub struct Indexer {
    index: Arc<SearchIndex>,
    writer: IndexWriter,
    committed: Payload,
    /// Positions applied, committed or not.
    progress: BTreeMap<ShardId, ShardProgress>,
    /// Entities touched since the last commit, by document key.
    entities: HashMap<String, EntityState>,
    /// The committed state of entities written by recent commits, by document key.
    committed_entities: HashMap<String, EntityState>,
    /// Event documents since the last commit, by tenant, in log order.
    events: HashMap<String, Vec<TantivyDocument>>,
    pending: usize,
    first_pending_at: Option<Instant>,
    last_commit_at: Instant,
}

impl Indexer {
    /// Takes the index's writer (one per index: a second indexer fails, in this process or
    /// another) with `threads` indexing threads sharing `memory_bytes`.
    pub fn new(index: Arc<SearchIndex>, threads: usize, memory_bytes: usize) -> Result<Indexer> {
        let writer = index.index.writer_with_num_threads(threads, memory_bytes)?;
        let committed = index.committed_payload()?;
        Ok(Indexer {
            progress: committed.shards.clone(),
            committed,
            index,
            writer,
            entities: HashMap::new(),
            committed_entities: HashMap::new(),
            events: HashMap::new(),
            pending: 0,
            first_pending_at: None,
            last_commit_at: Instant::now(),
        })
    }

    /// The position after which `shard` is to be read next.
    pub fn position(&self, shard: &ShardId) -> Option<&Position> {
        self.progress.get(shard).map(|progress| &progress.position)
    }

    /// Events and annotations applied since the last commit.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// How long the oldest uncommitted change has waited.
    pub fn pending_age(&self) -> Option<std::time::Duration> {
        self.first_pending_at.map(|at| at.elapsed())
    }

    pub fn since_commit(&self) -> std::time::Duration {
        self.last_commit_at.elapsed()
    }

    fn touch(&mut self) {
        self.pending += 1;
        self.first_pending_at.get_or_insert_with(Instant::now);
    }

    /// Indexes the events of `records`, read from `shard` after this indexer's position there.
    pub fn apply(&mut self, shard: &ShardId, records: &[LogRecord]) -> Result<()> {
        let fields = self.index.fields;
        for record in records {
            for (position, event) in record.positioned() {
                // A read starts after our position, so this only guards against a backend
                // that returns a record's earlier events again.
                if self.position(shard).is_some_and(|done| &position <= done) {
                    continue;
                }
                if document::is_indexed(event) {
                    let doc = document::event_doc(&fields, &self.index.searchable, event);
                    match self.events.get_mut(&event.tenant) {
                        Some(docs) => docs.push(doc),
                        None => {
                            self.events.insert(event.tenant.clone(), vec![doc]);
                        }
                    }
                    self.entity(&event.tenant, &event.entity)?.apply(event);
                }
                self.progress.insert(
                    shard.clone(),
                    ShardProgress {
                        position,
                        last_received_at: event.received_at,
                    },
                );
                self.touch();
            }
        }
        Ok(())
    }

    pub(crate) fn annotate(&mut self, annotations: Vec<Annotation>) -> Result<()> {
        for annotation in annotations {
            let state = self.entity(&annotation.tenant, &annotation.entity)?;
            state.stage = annotation.stage;
            state.band = annotation.band;
            self.touch();
        }
        Ok(())
    }

    /// The entity's state as of everything applied, loaded from the index on first touch.
    fn entity(&mut self, tenant: &str, entity: &str) -> Result<&mut EntityState> {
        let key = schema::entity_key(tenant, entity);
        if !self.entities.contains_key(&key) {
            let state = match self.committed_entities.remove(&key) {
                Some(state) => state,
                None => self
                    .load_entity(&key)?
                    .unwrap_or_else(|| EntityState::new(tenant, entity)),
            };
            self.entities.insert(key.clone(), state);
        }
        self.entities
            .get_mut(&key)
            .ok_or_else(|| Error::Corrupt("entity vanished from the batch".into()))
    }

    /// The committed state of an entity. The reader is reloaded after every commit, so it sees
    /// exactly what the last commit holds.
    fn load_entity(&self, key: &str) -> Result<Option<EntityState>> {
        let fields = self.index.fields;
        let searcher = self.index.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(fields.key, key),
            IndexRecordOption::Basic,
        );
        let hits = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
        let Some((_, address)) = hits.first() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(*address)?;
        let text = doc
            .get_first(fields.state)
            .and_then(|value| value.as_str())
            .ok_or_else(|| Error::Corrupt(format!("entity {key} has no stored state")))?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|error| Error::Corrupt(format!("entity {key}: {error}")))
    }

    /// Writes the touched entities and commits everything with the positions it covers; then
    /// makes it searchable.
    pub fn commit(&mut self) -> Result<()> {
        self.write_grouped_by_tenant()?;
        let payload = Payload {
            shards: self.progress.clone(),
            committed_at: Some(now_millis()),
        };
        let text = serde_json::to_string(&payload)
            .map_err(|error| Error::Corrupt(format!("commit payload: {error}")))?;
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&text);
        prepared.commit()?;
        if self.committed_entities.len() > ENTITY_CACHE {
            self.committed_entities.clear();
        }
        self.index.reader.reload()?;
        let docs = self.index.reader.searcher().num_docs();
        self.index
            .set_status(IndexStatus::from_payload(&payload, docs));
        tracing::debug!(docs, changes = self.pending, "search index committed");
        self.committed = payload;
        self.pending = 0;
        self.first_pending_at = None;
        self.last_commit_at = Instant::now();
        Ok(())
    }

    /// Hands the held event documents and the touched entities to tantivy, one tenant after
    /// the other (see the module's header).
    fn write_grouped_by_tenant(&mut self) -> Result<()> {
        let fields = self.index.fields;
        let mut entities: BTreeMap<String, Vec<(String, EntityState)>> = BTreeMap::new();
        for (key, state) in self.entities.drain() {
            entities
                .entry(state.tenant.clone())
                .or_default()
                .push((key, state));
        }
        let mut tenants: Vec<String> = self.events.keys().cloned().collect();
        tenants.extend(entities.keys().cloned());
        tenants.sort_unstable();
        tenants.dedup();
        for tenant in tenants {
            for doc in self.events.remove(&tenant).unwrap_or_default() {
                self.writer.add_document(doc)?;
            }
            for (key, state) in entities.remove(&tenant).unwrap_or_default() {
                self.writer
                    .delete_term(Term::from_field_text(fields.key, &key));
                self.writer
                    .add_document(state.to_doc(&fields, &self.index.searchable))?;
                self.committed_entities.insert(key, state);
            }
        }
        debug_assert!(self.events.is_empty());
        Ok(())
    }

    /// Drops everything since the last commit; indexing resumes from the committed positions.
    pub fn rollback(&mut self) -> Result<()> {
        self.writer.rollback()?;
        self.entities.clear();
        // Written by the commit that failed, perhaps: no longer known to match the index.
        self.committed_entities.clear();
        self.events.clear();
        self.progress = self.committed.shards.clone();
        self.pending = 0;
        self.first_pending_at = None;
        Ok(())
    }

    /// Commits what is pending and waits for background merges, releasing the writer.
    pub fn finish(mut self) -> Result<()> {
        if self.pending > 0 {
            self.commit()?;
        }
        self.writer.wait_merging_threads()?;
        Ok(())
    }
}
