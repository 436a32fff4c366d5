//! One keep-alive HTTP/1.1 connection posting pre-built bodies in a closed loop.
//!
//! Each connection is a bare hyper 1 `client::conn::http1` handshake over its own TCP stream
//! (no pool, no per-request allocation beyond the request head): it sends a request, reads the
//! whole answer, records it, and sends the next, until the deadline. After a transport error it
//! reconnects; after a 429/503 it pauses briefly so an overloaded server is not spun against.
//!
//! With `Plan::pace` the loop is open instead: requests start on a fixed schedule, and each
//! is timed from its scheduled start, so a server that stalls shows as latency (no
//! coordinated omission) and a connection that falls behind catches up at once.
//!
//! Invariant: nothing outlives `plan.deadline` by more than `plan.request_timeout`.

use crate::ids::IdStamper;
use crate::stats::{Stats, answer_counts};
use crate::workload::Bodies;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Where and how to send.
pub struct Target {
    pub address: SocketAddr,
    pub host: HeaderValue,
    pub authorization: HeaderValue,
    pub path: &'static str,
}

/// When to send.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Requests that start at or after this are measured.
    pub measure_from: Instant,
    /// No request starts after this; requests that end after it are not measured.
    pub deadline: Instant,
    pub request_timeout: Duration,
    /// Open loop: time between the scheduled starts of this connection's requests.
    pub pace: Option<Duration>,
}

/// Pause after an overload answer (429/503) or a failed connection attempt.
const BACKOFF: Duration = Duration::from_millis(20);

/// Runs one connection until the deadline; `first` picks this connection's starting body so
/// connections do not send the same bodies in lockstep.
pub async fn run_connection(
    target: Arc<Target>,
    bodies: Arc<Bodies>,
    first: usize,
    mut ids: IdStamper,
    plan: Plan,
) -> Stats {
    let mut stats = Stats::new();
    let mut next = first;
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    // The open loop's next scheduled start and period. Connections start spread over one
    // period so their requests do not arrive together.
    let mut schedule = plan.pace.map(|pace| {
        let offset = pace.mul_f64((first % 97) as f64 / 97.0);
        (Instant::now() + offset, pace)
    });
    while Instant::now() < plan.deadline {
        if let Some((due, pace)) = schedule.as_mut() {
            if *due >= plan.deadline {
                break;
            }
            tokio::time::sleep_until(*due).await;
            *due += *pace;
        }
        let ready = match sender.as_mut() {
            Some(open) => open.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            match connect(&target, plan).await {
                Ok(open) => sender = Some(open),
                Err(error) => {
                    stats.transport_errors += 1;
                    stats.note_problem(|| format!("connect to {}: {error}", target.address));
                    sender = None;
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(open) = sender.as_mut() else {
            continue;
        };
        let body = ids.stamp(&bodies.bodies[next % bodies.bodies.len()]);
        next = next.wrapping_add(1);
        let body_len = body.len() as u64;
        let request = build_request(&target, body);
        let started = match schedule {
            // The start this request was scheduled for (the schedule has moved past it).
            Some((next, pace)) => next - pace,
            None => Instant::now(),
        };
        let answer = timeout(plan.request_timeout, exchange(open, request)).await;
        let finished = Instant::now();
        let (status, answer_body) = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                stats.transport_errors += 1;
                stats.note_problem(|| format!("request: {error}"));
                sender = None;
                continue;
            }
            Err(_) => {
                stats.transport_errors += 1;
                stats
                    .note_problem(|| format!("request timed out after {:?}", plan.request_timeout));
                sender = None;
                continue;
            }
        };
        let counts = answer_counts(&answer_body);
        stats.all_accepted += counts.accepted;
        if started >= plan.measure_from && finished <= plan.deadline {
            let micros = u64::try_from((finished - started).as_micros()).unwrap_or(u64::MAX);
            stats.latency_micros.saturating_record(micros.max(1));
            stats.requests += 1;
            stats.accepted += counts.accepted;
            stats.rejected += counts.rejected;
            stats.duplicates += counts.duplicates;
            stats.body_bytes += body_len;
            *stats.statuses.entry(status.as_u16()).or_default() += 1;
        }
        if status != StatusCode::OK {
            stats.note_problem(|| {
                format!(
                    "answer {status}: {}",
                    String::from_utf8_lossy(&answer_body[..answer_body.len().min(300)])
                )
            });
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
    stats
}

fn build_request(target: &Target, body: Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = hyper::Uri::from_static(target.path);
    let headers = request.headers_mut();
    headers.insert(HOST, target.host.clone());
    headers.insert(AUTHORIZATION, target.authorization.clone());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    request
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> hyper::Result<(StatusCode, Bytes)> {
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn connect(target: &Target, plan: Plan) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let connecting = async {
        let stream = TcpStream::connect(target.address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; errors surface on the
            // sender's next request.
            let _ = connection.await;
        });
        anyhow::Ok(sender)
    };
    timeout(plan.request_timeout, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("connect timed out"))?
}
