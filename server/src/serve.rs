//! Running the server: open the storage (the embedded default: the data directory, locked so a
//! second process cannot write the same log; or Kinesis + DynamoDB), make the first tenant if
//! needed, start this process's roles, serve HTTP (and Graphite, when enabled), and on
//! SIGTERM/SIGINT stop accepting, let in-flight appends finish, flush the projections
//! (releasing leases on AWS) and close the log.

use crate::annotate::Annotator;
use crate::canary::{Canary, Readiness};
use crate::config::{Backend, Config, Role, SyncSetting};
use crate::history::ArchiveHistory;
use crate::telemetry::Metrics;
use anyhow::Context;
use axum::Router;
use axum::routing::get;
use shoal_ingest::{GraphiteListener, IngestState};
use shoal_projector::scores::manager::{RulesManager, ScoresConfig, SystemClock};
use shoal_projector::series::sweep as series_retention;
use shoal_projector::{Ownership, Projector, ProjectorHandle, StatusSource};
use shoal_query::QueryState;
use shoal_search::{SearchIndex, SearchWorker};
use shoal_storage::aws::{AwsClients, DynamoTables, KinesisLog};
use shoal_storage::embedded::log::{EmbeddedLog, LogConfig, SyncMode};
use shoal_storage::embedded::table::EmbeddedTables;
use shoal_storage::tenants::TenantStore;
use shoal_storage::{EventLog, Table};
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// The opened data directory; holds its lock for as long as it lives.
pub struct DataDir {
    pub log: Arc<EmbeddedLog>,
    pub tables: Arc<EmbeddedTables>,
    _lock: File,
}

impl DataDir {
    pub fn open(config: &Config) -> anyhow::Result<DataDir> {
        let lock = lock_data_dir(config)?;
        let mut log_config = LogConfig::new(config.log_dir());
        log_config.shard_count = config.log.shards;
        log_config.segment_bytes = config.log.segment_mib * 1024 * 1024;
        log_config.preallocate_bytes = config.log.preallocate_mib * 1024 * 1024;
        log_config.group_commit_linger =
            Duration::from_micros(config.log.group_commit_linger_micros);
        log_config.sync = match config.log.sync {
            SyncSetting::Always => SyncMode::Always,
            SyncSetting::Relaxed => SyncMode::Relaxed,
        };
        log_config.dedup_window = Duration::from_secs(config.log.dedup_window_hours * 3600);
        log_config.dedup_capacity = config.log.dedup_capacity_per_shard;
        let log = EmbeddedLog::open(log_config).context("opening the event log")?;
        let tables = EmbeddedTables::open(&config.tables_path()).context("opening the tables")?;
        tables.set_sync_interval(config.storage.tables_sync_interval());
        Ok(DataDir {
            log: Arc::new(log),
            tables: Arc::new(tables),
            _lock: lock,
        })
    }
}

/// The log and tables this process uses, and what must live as long as they do.
struct Storage {
    log: Arc<dyn EventLog>,
    tables: Arc<dyn Table>,
    /// The embedded log itself (exact lag in the status; closed on shutdown).
    embedded: Option<Arc<EmbeddedLog>>,
    /// The embedded tables themselves (their committer's priority).
    embedded_tables: Option<Arc<EmbeddedTables>>,
    /// The data directory's lock (credentials, search index; the embedded log and tables).
    _lock: File,
}

impl Storage {
    async fn open(config: &Config) -> anyhow::Result<Storage> {
        match config.storage.backend {
            Backend::Embedded => {
                let data = DataDir::open(config)?;
                Ok(Storage {
                    log: data.log.clone(),
                    tables: data.tables.clone(),
                    embedded: Some(data.log),
                    embedded_tables: Some(data.tables),
                    _lock: data._lock,
                })
            }
            Backend::Aws => {
                let lock = lock_data_dir(config)?;
                let aws = config.aws.storage_config();
                let clients = AwsClients::connect(&aws)
                    .await
                    .context("connecting to AWS")?;
                let log = KinesisLog::new(clients.clone(), &aws).context("opening the stream")?;
                let tables = DynamoTables::new(clients, &aws);
                // Fail at start, not at the first request, when `shoal aws init` was not run.
                log.shards().await.with_context(|| {
                    format!(
                        "listing the shards of stream {:?} (run `shoal aws init` first?)",
                        aws.stream_name
                    )
                })?;
                Ok(Storage {
                    log: Arc::new(log),
                    tables: Arc::new(tables),
                    embedded: None,
                    embedded_tables: None,
                    _lock: lock,
                })
            }
        }
    }
}

/// Creates the data directory if needed and takes its lock, so a second process cannot use it.
fn lock_data_dir(config: &Config) -> anyhow::Result<File> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let lock_path = config.data_dir.join("LOCK");
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "data directory {} is in use by another shoal process",
            config.data_dir.display()
        )
    })?;
    Ok(lock)
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let storage = Storage::open(&config).await?;
    let table = storage.tables.clone();
    let log = storage.log.clone();
    let tenants = Arc::new(TenantStore::new(table.clone()));
    crate::bootstrap::ensure(table.as_ref(), &tenants, &config.data_dir).await?;

    let mut app = Router::new();
    // The first termination signal stops HTTP and the Graphite listener together.
    let (stopping, stopped) = tokio::sync::watch::channel(false);

    let mut projector = None;
    let mut rules = None;
    let mut sweeper = None;
    let mut retention = None;
    if config.has(Role::Projector) {
        let mut projector_config = config.projector.clone();
        if config.storage.backend == Backend::Aws {
            // Kinesis forgets after its retention period: new projections and rules versions
            // replay the archive first (projector/src/seed.rs).
            projector_config.seed_from_archive = true;
        }
        let mut builder = Projector::new(
            log.clone(),
            table.clone(),
            shoal_projector::default_projections(log.as_ref()),
            projector_config,
        )?;
        if let Some(embedded) = &storage.embedded {
            builder = builder.with_embedded_heads(embedded.clone());
        }
        if config.storage.backend == Backend::Aws {
            let owner = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
            builder = builder.with_ownership(Ownership::Leases(config.aws.lease_config(owner)))?;
        }
        let handle = builder.spawn().await?;
        if let Some(tables) = &storage.embedded_tables
            && handle.live_runtime().is_some()
        {
            // Nearly every table write is a live projection's flush: the committer runs at
            // their priority, or it would hold them at ingest's. Only once their runtime
            // exists: projections left at ingest's priority (it could not be made) must not
            // wait on a lowered committer.
            tables.set_commit_nice(config.projector.live_nice);
        }
        let manager = RulesManager::start(
            table.clone(),
            handle.clone(),
            Arc::new(SystemClock),
            ScoresConfig {
                sweep_interval: Duration::from_secs(config.scores.sweep_interval_secs),
                batch_events: config.scores.batch_events,
            },
        )
        .await
        .context("starting the scores of every tenant with rules")?;
        sweeper = Some(manager.spawn_sweeper());
        retention = Some(series_retention::spawn_sweeper(
            &handle.live_or_current(),
            table.clone(),
            Arc::new(SystemClock),
            config.series.retention_config(),
        ));
        rules = Some(manager);
        projector = Some(handle);
    }

    let mut search = None;
    let mut annotator = None;
    let mut status_source = projector.as_ref().map(ProjectorHandle::status_source);
    let mut canary = None;
    if config.has(Role::Query) {
        if status_source.is_none() {
            // The stored checkpoints of the projections other processes run.
            let shards = log.shards().await?.into_iter().map(|s| s.id).collect();
            status_source = Some(StatusSource::detached(
                table.clone(),
                shoal_projector::default_projections(log.as_ref()),
                shards,
            ));
        }
        if config.canary.enabled {
            canary = Some(Canary::spawn(
                log.clone(),
                table.clone(),
                config.canary.clone(),
            ));
        }
        if config.search.enabled {
            let index = Arc::new(
                SearchIndex::open_with(&config.search_dir(), config.search.query_threads)
                    .context("opening the search index")?,
            );
            // Kinesis forgets after its retention period: a new index, and a tenant's rebuild
            // of its documents, take the history from the archive first.
            let history: Option<Arc<dyn shoal_search::History>> = (config.storage.backend
                == Backend::Aws)
                .then(|| Arc::new(ArchiveHistory::new(table.clone())) as _);
            let start = {
                let (index, log, search) = (index.clone(), log.clone(), config.search.clone());
                move || SearchWorker::spawn_with_history(index, log, search, history)
            };
            // Indexing is live read-model work: on the live projections' runtime when there
            // is one, where the index writer's threads inherit their priority.
            let live = projector.as_ref().and_then(ProjectorHandle::live_runtime);
            let worker = match live {
                Some(live) => live
                    .spawn_blocking(start)
                    .await
                    .context("starting the search worker")?,
                None => start(),
            }
            .context("starting the search worker")?;
            let upkeep = projector.as_ref().map_or_else(
                tokio::runtime::Handle::current,
                ProjectorHandle::live_or_current,
            );
            annotator = Some(Annotator::spawn(&upkeep, table.clone(), index.clone()));
            search = Some((index, worker));
        }
        let status = status_source
            .clone()
            .context("a query process always has a projection status")?;
        let mut query_state =
            QueryState::new(table.clone(), tenants.clone(), status).with_log(log.clone());
        if let Some(rules) = &rules {
            query_state = query_state.with_rules(rules.clone());
        }
        if let Some((index, _)) = &search {
            query_state = query_state.with_search(index.clone());
        }
        app = app.merge(shoal_query::router(Arc::new(query_state)));
    }
    let mut graphite = None;
    if config.has(Role::Ingest) {
        let ingest = Arc::new(IngestState::new(
            log.clone(),
            tenants.clone(),
            config.limits.clone(),
        ));
        if config.graphite.enabled {
            graphite = Some(spawn_graphite(&config, &tenants, ingest.clone(), stopped).await?);
        }
        // Tenant and key administration comes with it.
        app = app.merge(shoal_ingest::router(ingest));
    }
    let metrics = Arc::new(Metrics::install(status_source.clone())?);
    let readiness = Arc::new(Readiness {
        canary,
        status: status_source,
        settings: config.readiness.clone(),
    });
    let app = app
        .merge(
            Router::new()
                .route("/metrics", get(crate::telemetry::serve_metrics))
                .with_state(metrics),
        )
        .merge(
            Router::new()
                .route("/readyz", get(crate::canary::readyz))
                .with_state(readiness.clone()),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(crate::telemetry::track_requests))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |request: &axum::http::Request<axum::body::Body>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        uri = %request.uri(),
                        request_id = %id
                    )
                },
            ),
        )
        // Outermost: every request has an id (the client's `x-request-id`, else a UUID) before
        // it is traced, and the response carries it back.
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    let roles: Vec<String> = config
        .roles
        .iter()
        .map(|role| format!("{role:?}").to_lowercase())
        .collect();
    tracing::info!(%address, data_dir = %config.data_dir.display(), backend = ?config.storage.backend, roles = %roles.join(","), "serving");
    // A plain line on stdout that scripts and tests wait for.
    println!("shoal: listening on http://{address}");

    let grace = Duration::from_secs(config.shutdown_grace_secs);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal(signals, grace).await;
            let _ = stopping.send(true);
        })
        .await
        .context("serving HTTP")?;
    if let Some(graphite) = graphite {
        // Its connections finish their appends before the log closes.
        graphite.stopped().await;
    }
    tracing::info!("no longer accepting; flushing projections and closing the log");
    if let Ok(readiness) = Arc::try_unwrap(readiness)
        && let Some(canary) = readiness.canary
    {
        canary.shutdown().await;
    }
    if let Some(annotator) = annotator {
        annotator.shutdown().await;
    }
    if let Some(sweeper) = sweeper {
        sweeper.shutdown().await;
    }
    if let Some(retention) = retention {
        retention.shutdown().await;
    }
    // The search worker may run on the projector's live runtime, which ends with the last
    // handle to the projector: this one keeps it until the worker has stopped.
    let live_runtime = projector.clone();
    if let Some(projector) = projector {
        // Flushes and checkpoints every worker, then (on AWS) releases the leases.
        projector.shutdown().await;
    }
    if let Some((_, worker)) = search
        && let Err(error) = worker.shutdown().await
    {
        // The index resumes from its last commit on the next start; nothing is lost.
        tracing::error!(%error, "search worker stopped with an error");
    }
    drop(live_runtime);
    if let Some(embedded) = storage.embedded {
        embedded.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the Graphite listener into its configured tenant, which must exist: the protocol
/// has no key to name one.
async fn spawn_graphite(
    config: &Config,
    tenants: &TenantStore,
    ingest: Arc<IngestState>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<GraphiteListener> {
    let settings = &config.graphite;
    anyhow::ensure!(
        tenants.tenant_exists(&settings.tenant).await?,
        "graphite.tenant {:?} does not exist; create it with the admin API first",
        settings.tenant
    );
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let listener = GraphiteListener::spawn(settings.clone(), ingest, shutdown)
        .await
        .with_context(|| format!("binding the graphite listener to {}", settings.listen))?;
    let address = listener.local_addr();
    tracing::info!(%address, tenant = %settings.tenant, "graphite plaintext listener (no auth: firewall it)");
    // Before the HTTP line, which scripts and tests wait for.
    println!("shoal: graphite listening on {address}");
    Ok(listener)
}

/// The termination signals, registered at once: a signal that arrives before the server is
/// polled must still mean "shut down gracefully", not the default "die".
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once, and so does a graceful
/// shutdown that has not finished within `grace` (a stuck request or flush must not keep the
/// process alive forever; what was checkpointed stands, the rest is re-applied on restart).
async fn shutdown_signal(mut signals: Signals, grace: Duration) {
    signals.next().await;
    tracing::info!(?grace, "shutting down (a second signal exits at once)");
    tokio::spawn(async move {
        tokio::select! {
            _ = signals.next() => {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
            _ = tokio::time::sleep(grace) => {
                tracing::error!(?grace, "graceful shutdown did not finish in time: exiting now");
                std::process::exit(124);
            }
        }
    });
}
