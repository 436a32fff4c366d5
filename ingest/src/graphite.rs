//! The Graphite plaintext listener (`[graphite]`, off by default): TCP, `path value timestamp`
//! lines as carbon takes them on port 2003 (the parser is `parse::graphite`).
//!
//! The protocol has no authentication and no answer, which sets the design:
//! - **One tenant.** Everything a connection sends goes to the configured tenant, so the port
//!   must be reachable only by trusted senders (bind it to loopback or firewall it).
//! - **Durable once appended.** Each read's complete lines are parsed and appended in one group
//!   append through the same path as HTTP ingest (`IngestState::store_admitted`); the next read
//!   waits for it. There is no acknowledgement to send: a line is durable once its append has
//!   returned. Lines read but not yet appended when a storage error occurs are lost (logged and
//!   counted), and the connection is closed so the sender notices and reconnects.
//! - **Bounded memory, backpressure instead of buffering.** A connection holds one read buffer
//!   and the events parsed from it; a line longer than `max_line_bytes` is skipped up to its
//!   newline without being kept. Past `max_connections` the listener stops accepting (new
//!   senders wait in the kernel's backlog); over the tenant's rate a connection stops reading
//!   until the rate admits its batch. Either way TCP flow control slows the sender down.
//! - **Rejects are logged and counted** (`shoal_ingest_graphite_lines_total{outcome}` and
//!   `shoal_ingest_rejects_total{reason}`), since no one is there to read an error.
//! - **Shutdown:** when the shutdown future resolves the listener stops accepting; each
//!   connection finishes the append it is in and closes; a partial line is dropped.

use crate::parse::graphite::parse_body;
use crate::parse::{Context, Rejection};
use crate::routes::{IngestState, Parsed};
use crate::{Error, Result, telemetry};
use serde::{Deserialize, Serialize};
use shoal_storage::NewEvent;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// What one connection reads at once: its memory, and the most text parsed on the async
/// runtime in one go (as much as the HTTP routes parse inline).
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Rejected lines logged per connection; later ones are only counted.
const LOGGED_REJECTS: usize = 10;
/// The most connections that may be configured (a semaphore's permits are counted in u32).
const MAX_CONNECTIONS_LIMIT: usize = 65_536;

/// `[graphite]` in the server's configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphiteConfig {
    pub enabled: bool,
    /// Carbon's plaintext port by convention; loopback unless the port is firewalled.
    pub listen: SocketAddr,
    /// Every point received goes to this tenant (the protocol carries no key).
    pub tenant: String,
    /// Connections served at once; past it the listener stops accepting.
    pub max_connections: usize,
    /// Longest line, newline excluded; longer ones are skipped and counted.
    pub max_line_bytes: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout_secs: u64,
}

impl Default for GraphiteConfig {
    fn default() -> Self {
        GraphiteConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 2003)),
            tenant: "default".to_owned(),
            max_connections: 256,
            max_line_bytes: 1024,
            idle_timeout_secs: 600,
        }
    }
}

impl GraphiteConfig {
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, message: String| Error::Invalid {
            code: "invalid_value",
            field: field.to_owned(),
            message,
        };
        if self.tenant.trim().is_empty() {
            return Err(invalid("tenant", "tenant must not be empty".to_owned()));
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            return Err(invalid(
                "max_connections",
                format!("max_connections must be 1 to {MAX_CONNECTIONS_LIMIT}"),
            ));
        }
        // Half the buffer at most, so a kept partial line always leaves room to read more.
        if !(16..=READ_BUFFER_BYTES / 2).contains(&self.max_line_bytes) {
            return Err(invalid(
                "max_line_bytes",
                format!("max_line_bytes must be 16 to {}", READ_BUFFER_BYTES / 2),
            ));
        }
        if self.idle_timeout_secs == 0 {
            return Err(invalid(
                "idle_timeout_secs",
                "idle_timeout_secs must be > 0".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A running listener.
pub struct GraphiteListener {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl GraphiteListener {
    /// Binds `config.listen` and serves until `shutdown` resolves.
    pub async fn spawn(
        config: GraphiteConfig,
        state: Arc<IngestState>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<GraphiteListener> {
        let listener = TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(accept(listener, Arc::new(config), state, shutdown));
        Ok(GraphiteListener { address, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Resolves once the shutdown future has resolved and every connection has closed.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "graphite listener task failed");
        }
    }
}

async fn accept(
    listener: TcpListener,
    config: Arc<GraphiteConfig>,
    state: Arc<IngestState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop, stopping) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    tokio::pin!(shutdown);
    loop {
        // A permit before accepting: at the limit, new senders wait in the backlog.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, typically: pause rather than spin.
                    tracing::warn!(%error, "graphite: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            state: state.clone(),
            config: config.clone(),
            peer,
            stopping: stopping.clone(),
            rejects_logged: 0,
        };
        tokio::spawn(async move {
            connection.serve(stream).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Each connection holds its permit until closed: all of them back means all closed.
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    tracing::info!("graphite listener stopped");
}

struct Connection {
    state: Arc<IngestState>,
    config: Arc<GraphiteConfig>,
    peer: SocketAddr,
    stopping: watch::Receiver<bool>,
    rejects_logged: usize,
}

/// The connection is to close: shutting down, or its lines could not be stored.
struct Closed;

impl Connection {
    async fn serve(mut self, mut stream: TcpStream) {
        tracing::debug!(peer = %self.peer, "graphite connection opened");
        telemetry::graphite_connections(1.0);
        let mut buffer = vec![0_u8; READ_BUFFER_BYTES];
        // Bytes of a partial line kept at the buffer's start.
        let mut kept = 0;
        // Inside a line too long to keep: drop bytes up to its newline.
        let mut skipping = false;
        let mut next_line = 1;
        let idle = Duration::from_secs(self.config.idle_timeout_secs);
        let mut stopping = self.stopping.clone();
        loop {
            let read = tokio::select! {
                biased;
                _ = stopping.wait_for(|stop| *stop) => break,
                read = tokio::time::timeout(idle, stream.read(&mut buffer[kept..])) => read,
            };
            let count = match read {
                Err(_) => {
                    tracing::debug!(peer = %self.peer, "graphite connection idle: closing");
                    break;
                }
                Ok(Err(error)) => {
                    tracing::debug!(peer = %self.peer, %error, "graphite connection failed");
                    break;
                }
                Ok(Ok(0)) => {
                    // A sender that stops mid-line may have cut a number short: not a point.
                    if kept > 0 && !skipping {
                        self.reject(
                            Rejection::new(
                                "unterminated",
                                "line",
                                "the connection closed before the line's newline",
                            )
                            .at(next_line, 1),
                        );
                    }
                    break;
                }
                Ok(Ok(count)) => count,
            };
            let end = kept + count;
            let mut start = 0;
            if skipping {
                let Some(newline) = buffer[..end].iter().position(|byte| *byte == b'\n') else {
                    kept = 0;
                    continue;
                };
                start = newline + 1;
                skipping = false;
                next_line += 1;
            }
            if let Some(last) = buffer[start..end].iter().rposition(|byte| *byte == b'\n') {
                let complete = start..start + last + 1;
                let lines = buffer[complete.clone()]
                    .iter()
                    .filter(|byte| **byte == b'\n')
                    .count();
                if self
                    .store(&buffer[complete.clone()], next_line)
                    .await
                    .is_err()
                {
                    break;
                }
                next_line += lines;
                start = complete.end;
            }
            if end - start > self.config.max_line_bytes {
                self.reject(
                    Rejection::new(
                        "event_too_large",
                        "line",
                        format!(
                            "line is longer than {} bytes: skipped up to its newline",
                            self.config.max_line_bytes
                        ),
                    )
                    .at(next_line, 1),
                );
                skipping = true;
                kept = 0;
            } else {
                buffer.copy_within(start..end, 0);
                kept = end - start;
            }
        }
        telemetry::graphite_connections(-1.0);
        tracing::debug!(peer = %self.peer, lines = next_line - 1, "graphite connection closed");
    }

    /// Parses complete lines and appends their points, returning once they are durable.
    async fn store(&mut self, text: &[u8], first_line: usize) -> std::result::Result<(), Closed> {
        let context = Context {
            tenant: &self.config.tenant,
            received_at: shoal_schemas::time::now_millis(),
            max_event_bytes: self.config.max_line_bytes,
        };
        let mut parsed: Vec<Parsed> = Vec::new();
        let mut skipped = 0;
        for (number, outcome) in parse_body(text, first_line, &context) {
            match outcome {
                Ok(Some(event)) => parsed.push((number, Ok(NewEvent::client(event)))),
                Ok(None) => skipped += 1,
                Err(rejection) => {
                    self.log_reject(&rejection);
                    parsed.push((number, Err(rejection)));
                }
            }
        }
        telemetry::graphite_lines("skipped_nan", skipped);
        let batch_limit = self.batch_limit();
        let mut body_bytes = text.len();
        while !parsed.is_empty() {
            let rest = parsed.split_off(parsed.len().min(batch_limit));
            self.append(body_bytes, parsed).await?;
            body_bytes = 0;
            parsed = rest;
        }
        Ok(())
    }

    /// Events per append: the ingest batch limit, and no more than the tenant's burst, which
    /// would never be admitted.
    fn batch_limit(&self) -> usize {
        let limits = &self.state.limits;
        let burst = limits
            .tenant_events_per_second
            .map(|rate| limits.tenant_burst_events.max(rate) as usize);
        burst
            .map_or(limits.max_batch_events, |burst| {
                burst.min(limits.max_batch_events)
            })
            .max(1)
    }

    async fn append(
        &mut self,
        body_bytes: usize,
        batch: Vec<Parsed>,
    ) -> std::result::Result<(), Closed> {
        let events = batch.iter().filter(|(_, item)| item.is_ok()).count();
        // Over the rate, stop reading until it admits the batch: backpressure, not a refusal.
        while let Err(error) = self.state.check_rate(&self.config.tenant, events) {
            let Error::RateLimited { retry_after } = error else {
                return Err(self.failed(&error, batch.len()));
            };
            tokio::select! {
                _ = self.stopping.wait_for(|stop| *stop) => {
                    tracing::warn!(peer = %self.peer, lines = batch.len(), "graphite: shutting down while over the tenant's rate: lines dropped");
                    telemetry::graphite_lines("rejected", batch.len());
                    return Err(Closed);
                }
                _ = tokio::time::sleep(retry_after) => {}
            }
        }
        match self.state.store_admitted(body_bytes, batch).await {
            Ok(report) => {
                telemetry::graphite_lines("stored", report.accepted);
                telemetry::graphite_lines("duplicate", report.duplicates.len());
                telemetry::graphite_lines("rejected", report.rejected);
                Ok(())
            }
            Err(error) => Err(self.failed(&error, events)),
        }
    }

    fn failed(&self, error: &Error, lines: usize) -> Closed {
        tracing::error!(peer = %self.peer, %error, lines, "graphite: append failed: lines dropped, closing the connection");
        telemetry::record_refused(error.code());
        telemetry::graphite_lines("rejected", lines);
        Closed
    }

    /// A line refused outside a batch (too long, cut off): logged and counted.
    fn reject(&mut self, rejection: Rejection) {
        self.log_reject(&rejection);
        telemetry::graphite_lines("rejected", 1);
        telemetry::record_reject(rejection.code);
    }

    fn log_reject(&mut self, rejection: &Rejection) {
        self.rejects_logged += 1;
        if self.rejects_logged <= LOGGED_REJECTS {
            tracing::warn!(
                peer = %self.peer,
                line = rejection.line,
                column = rejection.column,
                code = rejection.code,
                field = %rejection.field,
                message = %rejection.message,
                "graphite: line rejected"
            );
        }
        if self.rejects_logged == LOGGED_REJECTS {
            tracing::warn!(peer = %self.peer, "graphite: further rejected lines of this connection are counted, not logged");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_off_and_valid() {
        let config = GraphiteConfig::default();
        assert!(!config.enabled);
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.listen.port(), 2003);
        config.validate().unwrap();
    }

    #[test]
    fn validation_names_the_setting() {
        type Change = fn(&mut GraphiteConfig);
        let cases: [(Change, &str); 4] = [
            (|config| config.tenant = " ".into(), "tenant"),
            (|config| config.max_connections = 0, "max_connections"),
            (|config| config.max_line_bytes = 40_000, "max_line_bytes"),
            (|config| config.idle_timeout_secs = 0, "idle_timeout_secs"),
        ];
        for (change, field) in cases {
            let mut config = GraphiteConfig::default();
            change(&mut config);
            match config.validate() {
                Err(Error::Invalid { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
