//! The rules manager: runs each tenant's scores instances (the active version and, during a
//! rebuild, the candidate beside it), sweeps them on a timer, and drives a rules change
//! through propose → rebuild → preview → activate (or abandon) → purge of the old version.
//!
//! Everything it decides is stored in `control` first ([`versions`]) and only then acted on,
//! so a restart resumes from the stored state: [`RulesManager::start`] restarts the active and
//! candidate instances of every tenant (a rebuild continues from its checkpoints) and purges
//! what a crash left behind.

use super::sweep::{SweepReport, sweep};
use super::versions::{self, Pointer, Status, VersionRecord};
use super::{Scores, index_pk, projection_name, state_key};
use crate::keys::{checkpoint_pk, dead_letter_pk};
use crate::periodic::Periodic;
use crate::{Error, Projection, ProjectorConfig, ProjectorHandle, Result};
use serde::Serialize;
use shoal_rules::Rules;
use shoal_storage::{Key, Query, Table, TableName, Update, Value, WriteOp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The time rules are evaluated at. A trait so tests can move time.
pub trait Clock: Send + Sync {
    fn now_millis(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        shoal_schemas::time::now_millis()
    }
}

/// Which version of a tenant's scores a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Live,
    Candidate,
    Exact(u32),
}

impl Which {
    /// `live` (or absent), `candidate`, or a version number.
    pub fn parse(text: Option<&str>) -> Option<Which> {
        match text {
            None | Some("live") | Some("active") => Some(Which::Live),
            Some("candidate") => Some(Which::Candidate),
            Some(number) => number.parse().ok().map(Which::Exact),
        }
    }
}

/// How often and how the manager works.
#[derive(Clone, Debug)]
pub struct ScoresConfig {
    /// How often every entity is re-evaluated as of the clock.
    pub sweep_interval: Duration,
    /// Events read per batch by a scores instance (at least the projector's own setting).
    /// A rebuild replays the whole log and an entity's events are spread over all of it, so
    /// every flush rewrites most entities: larger batches divide that work, and a rebuild far
    /// behind the head folds several reads into one flush (`ProjectorConfig::fold_ahead_*`;
    /// BENCHMARKS.md, "Rules and scores"). Only a catching-up instance fills them; a live one
    /// folds what arrived.
    pub batch_events: usize,
}

impl Default for ScoresConfig {
    fn default() -> Self {
        ScoresConfig {
            sweep_interval: Duration::from_secs(60),
            batch_events: DEFAULT_BATCH_EVENTS,
        }
    }
}

/// See [`ScoresConfig::batch_events`].
pub const DEFAULT_BATCH_EVENTS: usize = 200_000;

/// One tenant's rules as `GET /v1/rules` shows them.
#[derive(Clone, Debug, Serialize)]
pub struct RulesOverview {
    pub tenant: String,
    pub active: Option<u32>,
    pub candidate: Option<u32>,
    pub versions: Vec<VersionView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VersionView {
    #[serde(flatten)]
    pub record: VersionRecord,
    /// The candidate has reached the head of the log (it can be activated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caught_up: Option<bool>,
    /// The candidate has caught up and every entity has since been re-evaluated as of the
    /// clock: its answers (and the comparison with the live version) are as of now, not as of
    /// each entity's last event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// When every entity was last re-evaluated as of the clock (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swept_at: Option<i64>,
}

struct Inner {
    tables: Arc<dyn Table>,
    projector: ProjectorHandle,
    clock: Arc<dyn Clock>,
    config: ScoresConfig,
    /// The instances running in this process.
    running: Mutex<HashMap<(String, u32), Arc<Scores>>>,
    /// When each running instance was last swept.
    swept: Mutex<HashMap<(String, u32), Instant>>,
    /// Serialises the changes of this process (propose, activate, abandon, sweep).
    changes: tokio::sync::Mutex<()>,
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct RulesManager {
    inner: Arc<Inner>,
}

/// The running sweeper; stop it before the projector.
pub type Sweeper = Periodic;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn swept_sk(version: u32) -> String {
    format!("swept#v{version:010}")
}

impl RulesManager {
    /// Restarts the stored instances of every tenant and purges leftovers of retired or
    /// abandoned versions. Call [`RulesManager::spawn_sweeper`] to sweep on a timer.
    pub async fn start(
        tables: Arc<dyn Table>,
        projector: ProjectorHandle,
        clock: Arc<dyn Clock>,
        config: ScoresConfig,
    ) -> Result<RulesManager> {
        let manager = RulesManager {
            inner: Arc::new(Inner {
                tables,
                projector,
                clock,
                config,
                running: Mutex::default(),
                swept: Mutex::default(),
                changes: tokio::sync::Mutex::new(()),
            }),
        };
        let tables = manager.tables();
        for tenant in versions::tenants(tables).await? {
            for record in versions::list(tables, &tenant).await? {
                match record.status {
                    Status::Active | Status::Candidate => {
                        let rules = versions::compile(&record)?;
                        let rebuild = matches!(record.status, Status::Candidate);
                        manager.run_instance(&tenant, record.version, Arc::new(rules), rebuild)?;
                    }
                    Status::Retired | Status::Abandoned => {
                        manager.purge(&tenant, record.version).await?;
                    }
                }
            }
        }
        Ok(manager)
    }

    fn tables(&self) -> &dyn Table {
        self.inner.tables.as_ref()
    }

    /// Starts the workers of one version. A `rebuild` (a candidate beside the live version)
    /// runs at the lowest CPU priority, so that it takes only what live work leaves idle.
    fn run_instance(
        &self,
        tenant: &str,
        version: u32,
        rules: Arc<Rules>,
        rebuild: bool,
    ) -> Result<()> {
        let scores = Arc::new(Scores::new(tenant, version, rules));
        self.inner
            .projector
            .add_with(scores.clone(), self.instance_config(rebuild))?;
        lock(&self.inner.running).insert((tenant.to_owned(), version), scores);
        Ok(())
    }

    fn instance_config(&self, rebuild: bool) -> ProjectorConfig {
        let mut config = self.inner.projector.config().clone();
        config.batch_events = config.batch_events.max(self.inner.config.batch_events);
        config.background = rebuild;
        config
    }

    async fn stop_instance(&self, tenant: &str, version: u32) {
        lock(&self.inner.running).remove(&(tenant.to_owned(), version));
        lock(&self.inner.swept).remove(&(tenant.to_owned(), version));
        self.inner
            .projector
            .remove(&projection_name(tenant), version)
            .await;
    }

    /// Stores `rules` as the tenant's candidate and starts rebuilding it from the start of the
    /// log, beside the live version. Fails with a conflict while another rebuild is on.
    /// With `auto_activate` the version is activated as soon as it is ready (caught up and
    /// swept), by the sweeper's timer.
    pub async fn propose(&self, tenant: &str, rules: Rules, auto_activate: bool) -> Result<u32> {
        let _change = self.inner.changes.lock().await;
        let version = versions::propose(self.tables(), tenant, &rules, auto_activate).await?;
        self.run_instance(tenant, version, Arc::new(rules), true)?;
        tracing::info!(tenant, version, "rules proposed; rebuilding scores");
        Ok(version)
    }

    /// Makes the candidate `version` live, once it has caught up with the log: its entities are
    /// first re-evaluated as of now, then the pointer flips (queries switch at that instant),
    /// then the old version stops and its read models are deleted in the background.
    pub async fn activate(&self, tenant: &str, version: u32) -> Result<Option<u32>> {
        let _change = self.inner.changes.lock().await;
        let name = projection_name(tenant);
        if !self.inner.projector.caught_up(&name, version).await? {
            let pointer = versions::pointer(self.tables(), tenant).await?;
            if pointer.candidate == Some(version) {
                return Err(Error::Conflict(format!(
                    "version {version} has not caught up with the log yet; see GET /v1/projections for its progress"
                )));
            }
        }
        let scores = self.instance(tenant, version);
        if let Some(scores) = &scores {
            self.sweep_one(scores).await?;
        }
        let replaced = versions::activate(self.tables(), tenant, version).await?;
        tracing::info!(tenant, version, ?replaced, "rules version activated");
        if let Some(scores) = &scores {
            // Live now: its workers leave the background priority (they stop after their
            // batch in hand and go on from their checkpoints).
            self.inner.projector.remove(&name, version).await;
            let projection: Arc<dyn Projection> = scores.clone();
            self.inner
                .projector
                .add_with(projection, self.instance_config(false))?;
        }
        if let Some(old) = replaced {
            self.stop_instance(tenant, old).await;
            self.purge_in_background(tenant, old);
        }
        Ok(replaced)
    }

    /// Gives up the candidate `version` and deletes what it built.
    pub async fn abandon(&self, tenant: &str, version: u32) -> Result<()> {
        let _change = self.inner.changes.lock().await;
        versions::abandon(self.tables(), tenant, version).await?;
        self.stop_instance(tenant, version).await;
        self.purge_in_background(tenant, version);
        tracing::info!(tenant, version, "candidate rules version abandoned");
        Ok(())
    }

    fn instance(&self, tenant: &str, version: u32) -> Option<Arc<Scores>> {
        lock(&self.inner.running)
            .get(&(tenant.to_owned(), version))
            .cloned()
    }

    /// The version a query reads and its rules.
    pub async fn resolve(&self, tenant: &str, which: Which) -> Result<(u32, Arc<Rules>)> {
        let pointer = versions::pointer(self.tables(), tenant).await?;
        let version = match which {
            Which::Live => pointer.active.ok_or_else(|| {
                Error::NotFound(format!("tenant {tenant} has no active rules version"))
            })?,
            Which::Candidate => pointer.candidate.ok_or_else(|| {
                Error::NotFound(format!("tenant {tenant} has no candidate rules version"))
            })?,
            Which::Exact(version) => {
                if pointer.active != Some(version) && pointer.candidate != Some(version) {
                    return Err(Error::NotFound(format!(
                        "rules version {version} of tenant {tenant} is neither active nor the candidate"
                    )));
                }
                version
            }
        };
        if let Some(scores) = self.instance(tenant, version) {
            return Ok((version, scores.rules().clone()));
        }
        // Another process runs it (or it is being set up): read the stored document.
        let record = versions::get(self.tables(), tenant, version)
            .await?
            .ok_or_else(|| Error::NotFound(format!("rules version {version} of {tenant}")))?;
        Ok((version, Arc::new(versions::compile(&record)?)))
    }

    /// When `version` was last swept (ms), from `control`.
    pub async fn swept_at(&self, tenant: &str, version: u32) -> Result<Option<i64>> {
        let key = Key::new(format!("_rules#{tenant}"), swept_sk(version));
        let item = self.tables().get(TableName::Control, &key).await?;
        Ok(item
            .and_then(|item| item.get("at").and_then(Value::as_f64))
            .map(|at| at as i64))
    }

    /// The tenant's versions with their state.
    pub async fn overview(&self, tenant: &str) -> Result<RulesOverview> {
        let Pointer {
            active, candidate, ..
        } = versions::pointer(self.tables(), tenant).await?;
        let mut views = Vec::new();
        for record in versions::list(self.tables(), tenant).await? {
            let version = record.version;
            let live = matches!(record.status, Status::Active | Status::Candidate);
            let caught_up = if record.status == Status::Candidate {
                Some(
                    self.inner
                        .projector
                        .caught_up(&projection_name(tenant), version)
                        .await?,
                )
            } else {
                None
            };
            let swept_at = if live {
                self.swept_at(tenant, version).await?
            } else {
                None
            };
            let swept_here = lock(&self.inner.swept).contains_key(&(tenant.to_owned(), version));
            views.push(VersionView {
                record,
                caught_up,
                ready: caught_up.map(|caught_up| caught_up && swept_here),
                swept_at,
            });
        }
        Ok(RulesOverview {
            tenant: tenant.to_owned(),
            active,
            candidate,
            versions: views,
        })
    }

    /// Re-evaluates every entity of `scores` as of the clock and records when.
    async fn sweep_one(&self, scores: &Scores) -> Result<SweepReport> {
        let now = self.inner.clock.now_millis();
        let started = Instant::now();
        let report = sweep(self.tables(), scores, now).await?;
        let mut update = Update::new(Key::new(
            format!("_rules#{}", scores.tenant()),
            swept_sk(scores.version()),
        ));
        update = update.set("at", Value::N(now as f64));
        self.tables().update(TableName::Control, update).await?;
        lock(&self.inner.swept).insert(
            (scores.tenant().to_owned(), scores.version()),
            Instant::now(),
        );
        tracing::debug!(
            tenant = scores.tenant(),
            version = scores.version(),
            entities = report.entities,
            changed = report.changed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "scores swept"
        );
        Ok(report)
    }

    /// Sweeps every caught-up instance of this process now, whatever the timer says (tests and
    /// `shoal` operators use it after moving the clock). Returns the reports by tenant and
    /// version.
    pub async fn sweep_all(&self) -> Result<Vec<(String, u32, SweepReport)>> {
        let _change = self.inner.changes.lock().await;
        let instances: Vec<Arc<Scores>> = lock(&self.inner.running).values().cloned().collect();
        let mut reports = Vec::new();
        for scores in instances {
            let report = self.sweep_one(&scores).await?;
            reports.push((scores.tenant().to_owned(), scores.version(), report));
        }
        Ok(reports)
    }

    /// One round of the timer: sweep the caught-up instances that are due.
    async fn tick(&self) -> Result<()> {
        let candidates: Vec<Arc<Scores>> = {
            let running = lock(&self.inner.running);
            let swept = lock(&self.inner.swept);
            running
                .iter()
                .filter(|(id, _)| {
                    swept
                        .get(*id)
                        .is_none_or(|at| at.elapsed() >= self.inner.config.sweep_interval)
                })
                .map(|(_, scores)| scores.clone())
                .collect()
        };
        let mut due = Vec::new();
        for scores in candidates {
            if self
                .inner
                .projector
                .caught_up(scores.name(), scores.version())
                .await?
            {
                due.push(scores);
            }
        }
        for scores in due {
            let _change = self.inner.changes.lock().await;
            // It may have been stopped while this round waited for the lock.
            if self.instance(scores.tenant(), scores.version()).is_none() {
                continue;
            }
            self.sweep_one(&scores).await?;
        }
        self.activate_ready().await
    }

    /// Activates the candidates proposed with `auto_activate` that are ready.
    async fn activate_ready(&self) -> Result<()> {
        let swept: Vec<((String, u32), Arc<Scores>)> = {
            let running = lock(&self.inner.running);
            let swept = lock(&self.inner.swept);
            running
                .iter()
                .filter(|(id, _)| swept.contains_key(*id))
                .map(|(id, scores)| (id.clone(), scores.clone()))
                .collect()
        };
        let mut candidates = Vec::new();
        for (id, scores) in swept {
            if self
                .inner
                .projector
                .caught_up(scores.name(), scores.version())
                .await?
            {
                candidates.push(id);
            }
        }
        for (tenant, version) in candidates {
            let pointer = versions::pointer(self.tables(), &tenant).await?;
            if pointer.candidate != Some(version) {
                continue;
            }
            let auto = versions::get(self.tables(), &tenant, version)
                .await?
                .is_some_and(|record| record.auto_activate);
            if auto {
                self.activate(&tenant, version).await?;
            }
        }
        Ok(())
    }

    /// Starts the timer that sweeps each instance every `sweep_interval` (and a candidate as
    /// soon as it has caught up).
    /// Runs on the caller's runtime, not below ingest with the other upkeep: a sweep holds the
    /// lock that `propose`, `activate` and `abandon` take, so at a lower priority an operator's
    /// call would wait behind a sweep starved by ingest.
    pub fn spawn_sweeper(&self) -> Sweeper {
        let manager = self.clone();
        let runtime = tokio::runtime::Handle::current();
        Periodic::spawn(
            &runtime,
            "scores sweeper",
            Duration::from_secs(1),
            (),
            move |()| {
                let manager = manager.clone();
                async move {
                    if let Err(error) = manager.tick().await {
                        tracing::warn!(%error, "sweeping scores failed; retrying on the next tick");
                    }
                }
            },
        )
    }

    fn purge_in_background(&self, tenant: &str, version: u32) {
        let manager = self.clone();
        let tenant = tenant.to_owned();
        // Deleting a retired version is upkeep too: below ingest, with the live projections.
        self.inner.projector.live_or_current().spawn(async move {
            if let Err(error) = manager.purge(&tenant, version).await {
                tracing::warn!(%tenant, version, %error, "purging an old rules version failed; it is retried at the next start");
            }
        });
    }

    /// Deletes everything `version` of `tenant`'s scores wrote: entity states, index entries,
    /// checkpoints, dead letters, the sweep time; then marks the version purged.
    async fn purge(&self, tenant: &str, version: u32) -> Result<()> {
        let tables = self.tables();
        let record_key = Key::new(format!("_rules#{tenant}"), format!("v{version:010}"));
        let purged = tables
            .get(TableName::Control, &record_key)
            .await?
            .is_some_and(|item| item.get("purged") == Some(&Value::Bool(true)));
        if purged {
            return Ok(());
        }
        let mut query = Query::partition(index_pk(version, tenant)).limit(1000);
        let mut deleted = 0u64;
        loop {
            // Always the first page: the previous one is gone.
            let page = tables.query(TableName::Views, &query).await?;
            if page.items.is_empty() {
                break;
            }
            let mut ops = Vec::with_capacity(page.items.len() * 2);
            for (key, item) in page.items {
                if let Some(entity) = item.get("entity").and_then(Value::as_str) {
                    ops.push(WriteOp::Delete {
                        key: state_key(version, tenant, entity),
                    });
                }
                ops.push(WriteOp::Delete { key });
                deleted += 1;
            }
            tables.write(TableName::Views, ops).await?;
            query = Query::partition(index_pk(version, tenant)).limit(1000);
        }
        let name = projection_name(tenant);
        for pk in [
            checkpoint_pk(&name, version),
            dead_letter_pk(&name, version),
        ] {
            loop {
                let page = tables
                    .query(TableName::Control, &Query::partition(pk.clone()))
                    .await?;
                if page.items.is_empty() {
                    break;
                }
                let ops = page
                    .items
                    .into_iter()
                    .map(|(key, _)| WriteOp::Delete { key })
                    .collect();
                tables.write(TableName::Control, ops).await?;
            }
        }
        tables
            .write(
                TableName::Control,
                vec![WriteOp::Delete {
                    key: Key::new(format!("_rules#{tenant}"), swept_sk(version)),
                }],
            )
            .await?;
        tables
            .update(
                TableName::Control,
                Update::new(record_key).set("purged", Value::Bool(true)),
            )
            .await?;
        tracing::info!(
            tenant,
            version,
            entities = deleted,
            "old rules version purged"
        );
        Ok(())
    }
}
