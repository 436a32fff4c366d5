//! Running the server on the embedded default: open the data directory (taking its lock so a
//! second process cannot write the same log), make the first tenant if needed, serve HTTP, and
//! on SIGTERM/SIGINT stop accepting, let in-flight appends finish, and close the log.

use crate::annotate::Annotator;
use crate::config::{Config, SyncSetting};
use anyhow::Context;
use axum::Router;
use axum::routing::get;
use shoal_ingest::IngestState;
use shoal_projector::Projector;
use shoal_projector::scores::manager::{RulesManager, ScoresConfig, SystemClock};
use shoal_query::QueryState;
use shoal_search::{SearchFields, SearchIndex, SearchWorker};
use shoal_storage::embedded::log::{EmbeddedLog, LogConfig, SyncMode};
use shoal_storage::embedded::table::EmbeddedTables;
use shoal_storage::tenants::TenantStore;
use shoal_storage::{EventLog, Table};
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

/// The opened data directory; holds its lock for as long as it lives.
pub struct DataDir {
    pub log: Arc<EmbeddedLog>,
    pub tables: Arc<EmbeddedTables>,
    _lock: File,
}

impl DataDir {
    pub fn open(config: &Config) -> anyhow::Result<DataDir> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let lock_path = config.data_dir.join("LOCK");
        let lock = File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "data directory {} is in use by another shoal process",
                config.data_dir.display()
            )
        })?;
        let mut log_config = LogConfig::new(config.log_dir());
        log_config.shard_count = config.log.shards;
        log_config.segment_bytes = config.log.segment_mib * 1024 * 1024;
        log_config.sync = match config.log.sync {
            SyncSetting::Always => SyncMode::Always,
            SyncSetting::Relaxed => SyncMode::Relaxed,
        };
        log_config.dedup_window = Duration::from_secs(config.log.dedup_window_hours * 3600);
        log_config.dedup_capacity = config.log.dedup_capacity_per_shard;
        let log = EmbeddedLog::open(log_config).context("opening the event log")?;
        let tables = EmbeddedTables::open(&config.tables_path()).context("opening the tables")?;
        Ok(DataDir {
            log: Arc::new(log),
            tables: Arc::new(tables),
            _lock: lock,
        })
    }
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let data = DataDir::open(&config)?;
    let table: Arc<dyn Table> = data.tables.clone();
    let tenants = Arc::new(TenantStore::new(table.clone()));
    crate::bootstrap::ensure(table.as_ref(), &tenants, &config.data_dir).await?;

    let log: Arc<dyn EventLog> = data.log.clone();
    let projector = Projector::new(
        log.clone(),
        table.clone(),
        shoal_projector::default_projections(),
        config.projector.clone(),
    )?
    .with_embedded_heads(data.log.clone())
    .spawn()
    .await?;
    let search = if config.search.enabled {
        let index = Arc::new(
            SearchIndex::open(&config.search_dir(), SearchFields::All)
                .context("opening the search index")?,
        );
        let worker = SearchWorker::spawn(index.clone(), log.clone(), config.search.clone())
            .context("starting the search worker")?;
        Some((index, worker))
    } else {
        None
    };
    let rules = RulesManager::start(
        table.clone(),
        projector.clone(),
        Arc::new(SystemClock),
        ScoresConfig {
            sweep_interval: Duration::from_secs(config.scores.sweep_interval_secs),
            batch_events: config.scores.batch_events,
        },
    )
    .await
    .context("starting the scores of every tenant with rules")?;
    let sweeper = rules.spawn_sweeper();
    let annotator = search
        .as_ref()
        .map(|(index, _)| Annotator::spawn(table.clone(), rules.clone(), index.clone()));
    let mut query_state =
        QueryState::new(table.clone(), tenants.clone(), projector.status_source())
            .with_log(log.clone())
            .with_rules(rules);
    if let Some((index, _)) = &search {
        query_state = query_state.with_search(index.clone());
    }
    let query = Arc::new(query_state);
    let ingest = Arc::new(IngestState::new(log, tenants, config.limits.clone()));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .merge(shoal_ingest::router(ingest))
        .merge(shoal_query::router(query))
        .layer(tower_http::trace::TraceLayer::new_for_http());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, data_dir = %config.data_dir.display(), "serving");
    // A plain line on stdout that scripts and tests wait for.
    println!("shoal: listening on http://{address}");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal(signals))
        .await
        .context("serving HTTP")?;
    tracing::info!("no longer accepting; flushing projections and closing the log");
    if let Some(annotator) = annotator {
        annotator.shutdown().await;
    }
    sweeper.shutdown().await;
    projector.shutdown().await;
    if let Some((_, worker)) = search
        && let Err(error) = worker.shutdown().await
    {
        // The index resumes from its last commit on the next start; nothing is lost.
        tracing::error!(%error, "search worker stopped with an error");
    }
    data.log.shutdown().await;
    tracing::info!("stopped");
    Ok(())
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

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal(mut signals: Signals) {
    signals.next().await;
    tracing::info!("shutting down (a second signal exits at once)");
    tokio::spawn(async move {
        signals.next().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}
