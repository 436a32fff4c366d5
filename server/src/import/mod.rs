//! `shoal import [FILE|-]`: NDJSON events (the native format of `POST /v1/events`) from a file
//! or stdin into a running server, in gzipped batches with a few requests in flight.
//!
//! A batch is sent again, unchanged, after a 429 or 503 (honouring `Retry-After`) or a lost
//! answer; that is safe because every line carries an id (see `batch`) and the server stores
//! an `entity + id` once within its dedup window (24 h by default), so re-running a whole import
//! is safe too. A bad line is counted as rejected with its line number and never stops the
//! import; only a server that refuses the key or stays unreachable does.

mod batch;
mod progress;

use crate::client::{Client, ClientArgs, Secret, http_error};
use anyhow::{Context, anyhow};
use batch::{Batch, Batcher, LocalRejection, Prepared};
use futures::StreamExt;
use progress::{Display, Tally};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Tries of one batch while the server says 429 or 503.
const BUSY_ATTEMPTS: u32 = 60;
/// Tries of one batch while the server cannot be reached or does not answer.
const UNREACHABLE_ATTEMPTS: u32 = 5;
/// The longest wait between two tries, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The NDJSON file, one event a line; `-` (the default) reads stdin.
    #[arg(default_value = "-", value_name = "FILE|-")]
    input: String,
    /// Most events in one request.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_events: u64,
    /// Most bytes of NDJSON in one request, before gzip.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    batch_bytes: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    concurrency: u64,
    /// Rejected lines listed in the summary (the first ones, by line number).
    #[arg(long, default_value_t = 10)]
    show_rejections: usize,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client, Secret::WriteKey)?;
    let (input, total_bytes): (Box<dyn BufRead + Send>, Option<u64>) = if args.input == "-" {
        (Box::new(std::io::BufReader::new(std::io::stdin())), None)
    } else {
        let path = PathBuf::from(&args.input);
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata().ok().map(|metadata| metadata.len());
        (
            Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
            size,
        )
    };
    let limits = batch::Limits {
        events: args.batch_events as usize,
        bytes: args.batch_bytes as usize,
    };
    let tally = Arc::new(Tally::new(args.show_rejections));
    let started = Instant::now();

    // The reader hands over at most `concurrency` batches ahead of the senders.
    let concurrency = args.concurrency as usize;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Batch>(concurrency);
    let reader = {
        let tally = tally.clone();
        tokio::task::spawn_blocking(move || read(input, limits, &sender, &tally))
    };
    let batches = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    // Boxed, so that dropping it drops the receiver and stops a reader blocked on a full channel.
    let mut results = Box::pin(
        batches
            .map(|batch| send(&client, batch, &tally))
            .buffer_unordered(concurrency),
    );

    let mut display = Display::new(total_bytes, args.quiet || args.client.json);
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let mut failure: Option<anyhow::Error> = None;
    loop {
        tokio::select! {
            next = results.next() => match next {
                Some(Ok(())) => {}
                Some(Err(error)) => {
                    failure = Some(error);
                    break;
                }
                None => break,
            },
            _ = ticker.tick() => display.tick(&tally, started),
        }
    }
    drop(results);
    display.finish();
    let read_outcome = reader
        .await
        .map_err(|error| anyhow!("the reader stopped: {error}"))
        .and_then(|outcome| outcome);

    let elapsed = started.elapsed();
    let summary = Summary::of(&tally, elapsed);
    let failure = failure.or(read_outcome.err());
    if args.client.json && failure.is_none() {
        println!("{}", serde_json::to_string_pretty(&summary.json())?);
    } else if failure.is_none() {
        print!("{}", summary.text(&args.input));
    } else {
        // Partial counts to stderr: stdout stays for a complete answer.
        eprint!("{}", summary.text(&args.input));
    }
    std::io::stdout().flush()?;
    match failure {
        None => Ok(()),
        Some(error) => Err(error.context(
            "import stopped; running it again is safe: events already stored are acknowledged as duplicates",
        )),
    }
}

/// Reads lines into batches until the input ends or the senders are gone.
fn read(
    mut input: Box<dyn BufRead + Send>,
    limits: batch::Limits,
    sender: &tokio::sync::mpsc::Sender<Batch>,
    tally: &Tally,
) -> anyhow::Result<()> {
    let mut batcher = Batcher::new(limits);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .context("reading the input")?;
        if read == 0 {
            break;
        }
        number += 1;
        tally.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
        let full = match batch::prepare(number, &line, limits) {
            Prepared::Blank => continue,
            Prepared::Rejected(rejection) => {
                tally.lines.fetch_add(1, Ordering::Relaxed);
                tally.reject(rejection);
                continue;
            }
            Prepared::Event(event) => {
                tally.lines.fetch_add(1, Ordering::Relaxed);
                batcher.add(number, &event)
            }
        };
        if let Some(batch) = full
            && sender.blocking_send(batch).is_err()
        {
            return Ok(());
        }
    }
    if let Some(batch) = batcher.finish() {
        let _ = sender.blocking_send(batch);
    }
    Ok(())
}

/// Sends one batch until the server has answered for every line in it.
async fn send(client: &Client, first: Batch, tally: &Tally) -> anyhow::Result<()> {
    // A server with smaller limits than ours answers 413: send the halves.
    let mut pending = vec![first];
    while let Some(batch) = pending.pop() {
        let body = gzip(batch.body.clone()).await?;
        let (status, answer) = post(client, &body, tally).await?;
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            if batch.len() > 1 {
                let (left, right) = batch.split();
                pending.push(right);
                pending.push(left);
                continue;
            }
            let rejection =
                error_of(&answer).unwrap_or_else(|| "the server refused it as too large".into());
            tally.reject(LocalRejection {
                line: batch.lines[0],
                code: "event_too_large".to_owned(),
                message: rejection,
            });
            continue;
        }
        if answer.get("accepted").is_none() {
            // Not a batch report: the request itself was refused.
            let bytes = serde_json::to_vec(&answer).unwrap_or_default();
            return Err(http_error(status, &bytes).context(format!(
                "sending lines {}-{}",
                batch.lines.first().unwrap_or(&0),
                batch.lines.last().unwrap_or(&0)
            )));
        }
        record(&batch, &answer, tally);
    }
    Ok(())
}

/// Counts a batch report's outcomes, naming rejected items by their line.
fn record(batch: &Batch, answer: &Value, tally: &Tally) {
    let count = |name: &str| answer[name].as_u64().unwrap_or(0);
    tally
        .accepted
        .fetch_add(count("accepted"), Ordering::Relaxed);
    let duplicates = answer["duplicates"].as_array().map_or(0, Vec::len);
    tally
        .duplicates
        .fetch_add(duplicates as u64, Ordering::Relaxed);
    for error in answer["errors"].as_array().into_iter().flatten() {
        let line = error["index"]
            .as_u64()
            .and_then(|index| batch.lines.get(index as usize).copied())
            .unwrap_or(0);
        let message = error["message"].as_str().unwrap_or("");
        tally.reject(LocalRejection {
            line,
            code: error["code"].as_str().unwrap_or("rejected").to_owned(),
            message: match error["field"].as_str() {
                Some(field) if !field.is_empty() => format!("{field}: {message}"),
                _ => message.to_owned(),
            },
        });
    }
}

fn error_of(answer: &Value) -> Option<String> {
    answer["error"]["message"].as_str().map(str::to_owned)
}

async fn gzip(body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        encoder.write_all(&body)?;
        encoder.finish()
    })
    .await
    .map_err(|error| anyhow!("compressing a batch: {error}"))?
    .context("compressing a batch")
}

/// POSTs one gzipped body, again while the server is busy or unreachable; returns the status
/// and JSON answer of the first other outcome.
async fn post(client: &Client, body: &[u8], tally: &Tally) -> anyhow::Result<(StatusCode, Value)> {
    let (mut busy, mut unreachable) = (0u32, 0u32);
    loop {
        let request = client
            .request(reqwest::Method::POST, "/v1/events")
            .header(CONTENT_TYPE, "application/x-ndjson")
            .header(CONTENT_ENCODING, "gzip")
            .body(body.to_vec());
        let outcome = match client.send(request).await {
            Ok(response) => {
                let status = response.status();
                let wait = retry_after(response.headers());
                match response.bytes().await {
                    Ok(bytes) => Ok((status, wait, bytes)),
                    Err(error) => Err(anyhow!("reading the answer: {error}")),
                }
            }
            Err(error) => Err(error),
        };
        let (status, wait, bytes) = match outcome {
            Ok(answer) => answer,
            Err(error) => {
                // The batch may or may not have been stored: sending it again is safe.
                unreachable += 1;
                if unreachable >= UNREACHABLE_ATTEMPTS {
                    return Err(error);
                }
                tally.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1 << unreachable.min(4))).await;
                continue;
            }
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            busy += 1;
            if busy >= BUSY_ATTEMPTS {
                return Err(http_error(status, &bytes));
            }
            tally.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait.unwrap_or(Duration::from_secs(1)).min(MAX_WAIT)).await;
            continue;
        }
        let answer = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if answer.is_null() && !status.is_success() {
            return Err(http_error(status, &bytes));
        }
        return Ok((status, answer));
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The final counts.
struct Summary {
    lines: u64,
    accepted: u64,
    rejected: u64,
    duplicates: u64,
    retries: u64,
    elapsed: Duration,
    rejections: Vec<LocalRejection>,
}

impl Summary {
    fn of(tally: &Tally, elapsed: Duration) -> Summary {
        Summary {
            lines: Tally::get(&tally.lines),
            accepted: Tally::get(&tally.accepted),
            rejected: Tally::get(&tally.rejected),
            duplicates: Tally::get(&tally.duplicates),
            retries: Tally::get(&tally.retries),
            elapsed,
            rejections: tally.rejections(),
        }
    }

    fn events_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    fn text(&self, input: &str) -> String {
        let source = if input == "-" { "stdin" } else { input };
        let mut out = format!(
            "imported {source} in {:.1}s: {} lines read, {} accepted, {} rejected, {} duplicates ({:.0} events/s",
            self.elapsed.as_secs_f64(),
            self.lines,
            self.accepted,
            self.rejected,
            self.duplicates,
            self.events_per_second(),
        );
        if self.retries > 0 {
            out.push_str(&format!(", {} retries", self.retries));
        }
        out.push_str(")\n");
        if !self.rejections.is_empty() {
            out.push_str(if self.rejected as usize > self.rejections.len() {
                "first rejected lines:\n"
            } else {
                "rejected lines:\n"
            });
            for rejection in &self.rejections {
                out.push_str(&format!(
                    "  line {}: {}: {}\n",
                    rejection.line, rejection.code, rejection.message
                ));
            }
        }
        out
    }

    fn json(&self) -> Value {
        json!({
            "lines": self.lines,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "retries": self.retries,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "events_per_second": self.events_per_second(),
            "rejections": self.rejections.iter().map(|rejection| json!({
                "line": rejection.line,
                "code": rejection.code,
                "message": rejection.message,
            })).collect::<Vec<_>>(),
        })
    }
}
