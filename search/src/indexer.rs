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
//!
//! A tenant's documents are rebuilt beside the live ones when its searchable fields change:
//! the same exactly-once argument holds for the rebuild's own cursor, which is in the same
//! payload (see `partition.rs`).

use crate::batch::Batch;
use crate::document::{self, EntityState, SearchFields};
use crate::history::Seeding;
use crate::index::{Annotation, Payload, SearchIndex, ShardProgress};
use crate::partition::{Rebuild, TenantFields, TenantIndex, partition};
use crate::schema;
use crate::{Error, Result};
use shoal_schemas::{Event, Position, ShardId, time::now_millis};
use shoal_storage::LogRecord;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;
use tantivy::collector::TopDocs;
use tantivy::query::{EnableScoring, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{Executor, IndexWriter, TantivyDocument, Term};

/// What a tenant's documents are built with until its rules say otherwise.
static ALL_FIELDS: TenantFields = TenantFields {
    properties: SearchFields::All,
    traits: SearchFields::All,
};

/// Committed entity states kept in memory between commits, at most.
const ENTITY_CACHE: usize = 200_000;

/// Writes documents for log records, and commits them with the positions they cover.
pub struct Indexer {
    index: Arc<SearchIndex>,
    writer: IndexWriter,
    committed: Payload,
    /// Positions applied, committed or not.
    progress: BTreeMap<ShardId, ShardProgress>,
    /// Each tenant's live generation, committed or not (absent: generation 0, all fields).
    tenants: BTreeMap<String, TenantIndex>,
    rebuild: Option<Rebuild>,
    /// A seed of this new index from the archive, under way.
    seed: Option<Seeding>,
    /// Partitions given up since the last commit: the next payload lists them, and the commit
    /// after it deletes their documents.
    retiring: Vec<String>,
    /// Entities touched since the last commit, by document key.
    entities: HashMap<String, EntityState>,
    /// The committed state of entities written by recent commits, by document key.
    committed_entities: HashMap<String, EntityState>,
    /// Event documents since the last commit, by partition, in log order.
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
            tenants: committed.tenants.clone(),
            rebuild: committed.rebuild.clone(),
            seed: committed.seed.clone(),
            retiring: Vec::new(),
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

    /// Where the rebuild under way reads `shard` next, when it is behind the live cursor there.
    pub(crate) fn rebuild_behind(&self, shard: &ShardId) -> Option<Option<Position>> {
        let rebuild = self.rebuild.as_ref()?;
        if rebuild.seed.is_some() {
            // The archive first: the log after the positions the seed covers comes next.
            return None;
        }
        let at = rebuild.position(shard);
        (at < self.position(shard)).then(|| at.cloned())
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

    fn live(&self, tenant: &str) -> TenantIndex {
        self.tenants.get(tenant).cloned().unwrap_or_default()
    }

    /// [`Self::live`] without a copy, for the per-event path.
    fn live_fields(&self, tenant: &str) -> (u32, &TenantFields) {
        self.tenants
            .get(tenant)
            .map_or((0, &ALL_FIELDS), |live| (live.generation, &live.fields))
    }

    /// Indexes the events of `records`, read from `shard` after this indexer's position there.
    pub fn apply(&mut self, shard: &ShardId, records: &[LogRecord]) -> Result<()> {
        for record in records {
            for (position, event) in record.positioned() {
                // A read starts after our position, so this only guards against a backend
                // that returns a record's earlier events again.
                if self.position(shard).is_some_and(|done| &position <= done) {
                    continue;
                }
                // A rebuild that has reached the live cursor on this shard moves with it.
                let rebuild_follows = self
                    .rebuild
                    .as_ref()
                    .is_some_and(|rebuild| rebuild.position(shard) == self.position(shard));
                if document::is_indexed(event) {
                    let (generation, fields) = self.live_fields(&event.tenant);
                    let doc = self.event_doc(event, generation, fields);
                    self.add_event(event, generation, doc)?;
                    if let Some(rebuild) = self
                        .rebuild
                        .as_ref()
                        .filter(|rebuild| rebuild_follows && rebuild.tenant == event.tenant)
                    {
                        let generation = rebuild.generation;
                        let doc = self.event_doc(event, generation, &rebuild.fields);
                        self.add_event(event, generation, doc)?;
                        self.count_rebuilt();
                    }
                }
                if rebuild_follows && let Some(rebuild) = self.rebuild.as_mut() {
                    rebuild.shards.insert(shard.clone(), position.clone());
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

    /// Indexes, into the rebuild under way, the events of `records` read from `shard` after the
    /// rebuild's position there, up to the live cursor and no further.
    pub fn apply_rebuild(&mut self, shard: &ShardId, records: &[LogRecord]) -> Result<()> {
        let Some((tenant, generation, fields)) = self.rebuild_target() else {
            return Ok(());
        };
        let live = self.position(shard).cloned();
        let mut last = None;
        'records: for record in records {
            for (position, event) in record.positioned() {
                let done = self
                    .rebuild
                    .as_ref()
                    .and_then(|rebuild| rebuild.position(shard));
                if done.is_some_and(|done| &position <= done) {
                    continue;
                }
                if live.as_ref().is_none_or(|live| &position > live) {
                    break 'records;
                }
                if event.tenant == tenant && document::is_indexed(event) {
                    let doc = self.event_doc(event, generation, &fields);
                    self.add_event(event, generation, doc)?;
                    self.count_rebuilt();
                    self.touch();
                }
                last = Some(position);
            }
        }
        if let (Some(position), Some(rebuild)) = (last, self.rebuild.as_mut()) {
            rebuild.shards.insert(shard.clone(), position);
            self.touch();
        }
        Ok(())
    }

    /// The rebuild's tenant, generation and fields, copied once per read rather than per event
    /// (indexing borrows `self` mutably).
    fn rebuild_target(&self) -> Option<(String, u32, TenantFields)> {
        self.rebuild.as_ref().map(|rebuild| {
            (
                rebuild.tenant.clone(),
                rebuild.generation,
                rebuild.fields.clone(),
            )
        })
    }

    fn count_rebuilt(&mut self) {
        if let Some(rebuild) = self.rebuild.as_mut() {
            rebuild.indexed += 1;
        }
    }

    fn event_doc(&self, event: &Event, generation: u32, fields: &TenantFields) -> TantivyDocument {
        let part = partition(&event.tenant, generation);
        document::event_doc(&self.index.fields, fields, &part, event)
    }

    /// Holds `doc` for the next commit and folds `event` into its entity of `generation`.
    fn add_event(&mut self, event: &Event, generation: u32, doc: TantivyDocument) -> Result<()> {
        let part = partition(&event.tenant, generation);
        match self.events.get_mut(part.as_ref()) {
            Some(docs) => docs.push(doc),
            None => {
                self.events.insert(part.into_owned(), vec![doc]);
            }
        }
        self.entity(&event.tenant, generation, &event.entity)?
            .apply(event);
        Ok(())
    }

    /// Nothing was ever indexed or committed here: an index an archive can seed.
    pub(crate) fn is_fresh(&self) -> bool {
        self.progress.is_empty() && self.committed.shards.is_empty() && self.seed.is_none()
    }

    /// The seed of this index under way.
    pub(crate) fn seeding(&self) -> Option<&Seeding> {
        self.seed.as_ref()
    }

    pub(crate) fn begin_seed(&mut self, upto: BTreeMap<ShardId, ShardProgress>, segments: u32) {
        self.seed = Some(Seeding {
            upto,
            segments,
            done: 0,
        });
        self.touch();
    }

    /// Indexes one segment of archived events (sorted by shard and position) and counts it
    /// done; after the last one the log is read from the positions the seed covers.
    pub(crate) fn apply_seed_segment(
        &mut self,
        events: &[(ShardId, Position, Event)],
    ) -> Result<()> {
        for (_, _, event) in events {
            if document::is_indexed(event) {
                let (generation, fields) = self.live_fields(&event.tenant);
                let doc = self.event_doc(event, generation, fields);
                self.add_event(event, generation, doc)?;
            }
        }
        let Some(seed) = self.seed.as_mut() else {
            return Err(Error::Corrupt("a seed segment without a seed".into()));
        };
        seed.done += 1;
        if seed.done >= seed.segments
            && let Some(seed) = self.seed.take()
        {
            self.progress = seed.upto;
        }
        self.touch();
        Ok(())
    }

    /// The rebuild under way, when it waits for its seed from the archive to be planned.
    pub(crate) fn rebuild_needs_seed_plan(&self) -> bool {
        self.rebuild
            .as_ref()
            .is_some_and(|rebuild| !rebuild.seeded && rebuild.seed.is_none())
    }

    /// Plans the rebuild's seed: the archived events up to `covered`, but never past the live
    /// cursor (which the rebuild must not overtake).
    pub(crate) fn plan_rebuild_seed(
        &mut self,
        covered: BTreeMap<ShardId, ShardProgress>,
        segments: u32,
    ) {
        let upto: BTreeMap<ShardId, ShardProgress> = covered
            .into_iter()
            .filter_map(|(shard, archived)| {
                let live = self.progress.get(&shard)?;
                let clamped = if archived.position <= live.position {
                    archived
                } else {
                    live.clone()
                };
                Some((shard, clamped))
            })
            .collect();
        if let Some(rebuild) = self.rebuild.as_mut() {
            if upto.is_empty() {
                rebuild.seeded = true;
            } else {
                rebuild.seed = Some(Seeding {
                    upto,
                    segments,
                    done: 0,
                });
            }
            self.touch();
        }
    }

    /// The rebuild's next seed segment to read: (segment, total, positions).
    pub(crate) fn rebuild_seed_next(&self) -> Option<(u32, u32, BTreeMap<ShardId, Position>)> {
        let seed = self.rebuild.as_ref()?.seed.as_ref()?;
        Some((seed.done, seed.segments, seed.positions()))
    }

    /// Indexes one segment of archived events into the rebuild (its tenant's only); after the
    /// last one the rebuild reads the log after the positions its seed covers.
    pub(crate) fn apply_rebuild_seed_segment(
        &mut self,
        events: &[(ShardId, Position, Event)],
    ) -> Result<()> {
        let Some((tenant, generation, fields)) = self.rebuild_target() else {
            return Ok(());
        };
        for (_, _, event) in events {
            if event.tenant == tenant && document::is_indexed(event) {
                let doc = self.event_doc(event, generation, &fields);
                self.add_event(event, generation, doc)?;
                self.count_rebuilt();
            }
        }
        if let Some(rebuild) = self.rebuild.as_mut()
            && let Some(seed) = rebuild.seed.as_mut()
        {
            seed.done += 1;
            if seed.done >= seed.segments {
                rebuild.shards = seed.positions();
                rebuild.seed = None;
                rebuild.seeded = true;
            }
        }
        self.touch();
        Ok(())
    }

    pub(crate) fn annotate(&mut self, annotations: Vec<Annotation>) -> Result<()> {
        for annotation in annotations {
            let mut generations = vec![self.live(&annotation.tenant).generation];
            if let Some(rebuild) = self
                .rebuild
                .as_ref()
                .filter(|rebuild| rebuild.tenant == annotation.tenant)
            {
                generations.push(rebuild.generation);
            }
            for generation in generations {
                let state = self.entity(&annotation.tenant, generation, &annotation.entity)?;
                state.stage.clone_from(&annotation.stage);
                state.band.clone_from(&annotation.band);
            }
            self.touch();
        }
        Ok(())
    }

    /// Starts, restarts or gives up the rebuild of a tenant so that each tenant's documents
    /// end up built with the fields its rules ask for (`wanted`; tenants absent keep theirs).
    /// One rebuild at a time: others start when it is done.
    pub(crate) fn reconcile(&mut self, wanted: &BTreeMap<String, TenantFields>) {
        if let Some(rebuild) = &self.rebuild
            && wanted
                .get(&rebuild.tenant)
                .is_some_and(|fields| *fields != rebuild.fields)
        {
            let (tenant, generation) = (rebuild.tenant.clone(), rebuild.generation);
            tracing::info!(%tenant, generation, "search fields changed again; abandoning the rebuild");
            self.abandon(&tenant, generation);
        }
        if self.rebuild.is_some() {
            return;
        }
        let Some((tenant, fields)) = wanted
            .iter()
            .find(|(tenant, fields)| self.live(tenant).fields != **fields)
        else {
            return;
        };
        let live = self.tenants.entry(tenant.clone()).or_default();
        let generation = live.generation.max(live.last_generation) + 1;
        live.last_generation = generation;
        tracing::info!(%tenant, generation, "search fields changed; rebuilding the tenant's documents beside the live ones");
        self.rebuild = Some(Rebuild {
            tenant: tenant.clone(),
            generation,
            fields: fields.clone(),
            shards: BTreeMap::new(),
            indexed: 0,
            started_at: now_millis(),
            seed: None,
            seeded: false,
        });
        self.touch();
    }

    fn abandon(&mut self, tenant: &str, generation: u32) {
        let part = partition(tenant, generation).into_owned();
        self.events.remove(&part);
        let abandoned =
            |state: &EntityState| state.tenant == tenant && state.generation == generation;
        self.entities.retain(|_, state| !abandoned(state));
        self.committed_entities.retain(|_, state| !abandoned(state));
        self.retiring.push(part);
        self.rebuild = None;
        self.touch();
    }

    /// Makes the rebuild under way live if it has reached the live cursor on every shard in
    /// `shards` (and every shard the live cursor knows). Takes effect with the next commit.
    pub(crate) fn flip_if_caught_up(&mut self, shards: &[ShardId]) -> bool {
        let Some(rebuild) = self
            .rebuild
            .as_ref()
            .filter(|rebuild| rebuild.seed.is_none())
        else {
            return false;
        };
        let caught_up = shards
            .iter()
            .chain(self.progress.keys())
            .all(|shard| rebuild.position(shard) == self.position(shard));
        if !caught_up {
            return false;
        }
        let Some(rebuild) = self.rebuild.take() else {
            return false;
        };
        let old = self.live(&rebuild.tenant);
        tracing::info!(
            tenant = %rebuild.tenant,
            generation = rebuild.generation,
            events = rebuild.indexed,
            "search rebuild caught up; its documents answer searches from the next commit"
        );
        self.retiring
            .push(partition(&rebuild.tenant, old.generation).into_owned());
        self.tenants.insert(
            rebuild.tenant.clone(),
            TenantIndex {
                generation: rebuild.generation,
                fields: rebuild.fields,
                last_generation: old.last_generation.max(rebuild.generation),
            },
        );
        self.touch();
        true
    }

    /// The state of an entity of one of a tenant's generations as of everything applied,
    /// loaded from the index on first touch. A rebuild's new entity starts with the live
    /// entity's stage and band, which come from the scores projection and not from the log.
    fn entity(&mut self, tenant: &str, generation: u32, entity: &str) -> Result<&mut EntityState> {
        let key = schema::entity_key(&partition(tenant, generation), entity);
        if !self.entities.contains_key(&key) {
            let state = match self.committed_entities.remove(&key) {
                Some(state) => state,
                None => match self.load_entity(&key)? {
                    Some(state) => state,
                    None => self.new_entity(tenant, generation, entity)?,
                },
            };
            self.entities.insert(key.clone(), state);
        }
        self.entities
            .get_mut(&key)
            .ok_or_else(|| Error::Corrupt("entity vanished from the batch".into()))
    }

    fn new_entity(&self, tenant: &str, generation: u32, entity: &str) -> Result<EntityState> {
        let mut state = EntityState::new(tenant, generation, entity);
        let live = self.live(tenant).generation;
        if generation != live {
            let key = schema::entity_key(&partition(tenant, live), entity);
            let current = match self
                .entities
                .get(&key)
                .or(self.committed_entities.get(&key))
            {
                Some(current) => Some(current.clone()),
                None => self.load_entity(&key)?,
            };
            if let Some(current) = current {
                state.stage = current.stage;
                state.band = current.band;
            }
        }
        Ok(state)
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
        // On this thread, not the searcher pool's: a key lookup is a dictionary probe per
        // segment, too small to gain from a pool, and the pool serves queries at ingest's
        // priority while indexing runs below it (`[projector] live_nice`).
        let hits = searcher.search_with_executor(
            &query,
            &TopDocs::with_limit(1).order_by_score(),
            &Executor::single_thread(),
            EnableScoring::enabled_from_searcher(&searcher),
        )?;
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
        let fields = self.index.fields;
        // Retired by the previous commit: no search can still be using them.
        for part in &self.committed.retired {
            self.writer
                .delete_term(Term::from_field_text(fields.tenant, part));
        }
        self.write_grouped_by_partition()?;
        let payload = Payload {
            shards: self.progress.clone(),
            committed_at: Some(now_millis()),
            tenants: self.tenants.clone(),
            rebuild: self.rebuild.clone(),
            retired: self.retiring.clone(),
            seed: self.seed.clone(),
        };
        let text = serde_json::to_string(&payload)
            .map_err(|error| Error::Corrupt(format!("commit payload: {error}")))?;
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&text);
        prepared.commit()?;
        if self.committed_entities.len() > ENTITY_CACHE || !self.retiring.is_empty() {
            self.committed_entities.clear();
        }
        self.index.publish(&payload)?;
        tracing::debug!(changes = self.pending, "search index committed");
        self.committed = payload;
        self.retiring.clear();
        self.pending = 0;
        self.first_pending_at = None;
        self.last_commit_at = Instant::now();
        if !self.committed.retired.is_empty() {
            // Their deletion is owed to the next commit, which must come even if nothing else does.
            self.touch();
        }
        Ok(())
    }

    /// The fields a document of `tenant`'s `generation` is built with.
    fn fields_for(&self, tenant: &str, generation: u32) -> TenantFields {
        match &self.rebuild {
            Some(rebuild) if rebuild.tenant == tenant && rebuild.generation == generation => {
                rebuild.fields.clone()
            }
            _ => self.live(tenant).fields,
        }
    }

    /// Hands the held event documents and the touched entities to tantivy, one partition after
    /// the other (see the module's header).
    fn write_grouped_by_partition(&mut self) -> Result<()> {
        let fields = self.index.fields;
        let mut entities: BTreeMap<String, Vec<(String, EntityState)>> = BTreeMap::new();
        for (key, state) in self.entities.drain() {
            entities
                .entry(partition(&state.tenant, state.generation).into_owned())
                .or_default()
                .push((key, state));
        }
        let mut parts: Vec<String> = self.events.keys().cloned().collect();
        parts.extend(entities.keys().cloned());
        parts.sort_unstable();
        parts.dedup();
        let mut batch = Batch::default();
        for part in parts {
            for doc in self.events.remove(&part).unwrap_or_default() {
                batch.add(&self.writer, doc)?;
            }
            let states = entities.remove(&part).unwrap_or_default();
            let searchable = match states.first() {
                Some((_, state)) => self.fields_for(&state.tenant, state.generation),
                None => continue,
            };
            for (key, state) in states {
                let key_term = Term::from_field_text(fields.key, &key);
                batch.delete(&self.writer, key_term)?;
                let doc = state.to_doc(&fields, &searchable);
                batch.add(&self.writer, doc)?;
                self.committed_entities.insert(key, state);
            }
        }
        batch.flush(&self.writer)?;
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
        self.tenants = self.committed.tenants.clone();
        self.rebuild = self.committed.rebuild.clone();
        self.seed = self.committed.seed.clone();
        self.retiring.clear();
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
