//! Loading pre-built bodies once each over N keep-alive connections, and timing queries one at
//! a time: the two measuring loops every HTTP system shares.

use anyhow::{Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Pre-built request bodies and how many records they hold.
pub struct Batches {
    pub bodies: Vec<Bytes>,
    pub records: u64,
}

impl Batches {
    /// Joins records `chunk` at a time; `open`/`close` wrap each body (`[`/`]` for JSON arrays,
    /// nothing for line formats), `separator` goes between records.
    pub fn build<T>(
        items: &[T],
        chunk: usize,
        (open, separator, close): (&str, &str, &str),
        mut write: impl FnMut(&T, &mut String),
    ) -> Batches {
        let mut bodies = Vec::with_capacity(items.len().div_ceil(chunk.max(1)));
        let mut text = String::new();
        for part in items.chunks(chunk.max(1)) {
            text.clear();
            text.push_str(open);
            for (index, item) in part.iter().enumerate() {
                if index > 0 {
                    text.push_str(separator);
                }
                write(item, &mut text);
            }
            text.push_str(close);
            bodies.push(Bytes::copy_from_slice(text.as_bytes()));
        }
        Batches {
            bodies,
            records: items.len() as u64,
        }
    }
}

pub struct Loaded {
    pub elapsed: Duration,
}

impl Loaded {
    pub fn rate(&self, records: u64) -> f64 {
        records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// POSTs every body once, `connections` at a time; fails on the first non-2xx answer or the
/// first answer that reports a rejected record.
pub async fn post_all(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
    batches: &Batches,
    connections: usize,
) -> Result<Loaded> {
    let next = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(batches.bodies.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (client, url, next, bodies) = (
            client.clone(),
            url.to_owned(),
            Arc::clone(&next),
            Arc::clone(&bodies),
        );
        let authorization = authorization.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else {
                    break;
                };
                let mut request = client.post(&url).body(body.clone());
                if let Some(value) = &authorization {
                    request = request.header(reqwest::header::AUTHORIZATION, value);
                }
                let response = request.send().await?;
                let status = response.status();
                let answer = response.bytes().await?;
                // Shoal answers 200 with per-event rejections: a rejected record would make
                // the rate count records that were not stored.
                if !status.is_success() || crate::stats::answer_counts(&answer).rejected > 0 {
                    bail!(
                        "{url}: {status}: {}",
                        String::from_utf8_lossy(&answer[..answer.len().min(300)])
                    );
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(Loaded {
        elapsed: started.elapsed(),
    })
}

/// Times `count` calls of `query` made one after another, after `count / 10` untimed ones;
/// microseconds.
pub async fn time_queries<F, Fut>(count: u32, mut query: F) -> Result<Histogram<u64>>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let warm_up = count / 10;
    for n in 0..count + warm_up {
        let started = Instant::now();
        query(n).await?;
        if n >= warm_up {
            histogram.saturating_record((started.elapsed().as_micros() as u64).max(1));
        }
    }
    Ok(histogram)
}

/// GETs `url` and fails unless it answers 2xx; the body.
pub async fn get_ok(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
) -> Result<Bytes> {
    let mut request = client.get(url);
    if let Some(value) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "{url}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(body)
}
