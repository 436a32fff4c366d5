//! Reading a request body within the limits: size as sent, gzip decompression with a cap, and a
//! share of the in-flight memory budget held until the request is answered.

use crate::{Error, Limits, Result};
use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use std::io::Read;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bodies larger than this are decompressed off the async runtime.
const INLINE_DECOMPRESS_BYTES: usize = 64 * 1024;

/// A body that fits the limits, with the memory budget it holds.
pub struct LimitedBody {
    pub bytes: Bytes,
    _permit: OwnedSemaphorePermit,
}

/// The in-flight memory budget, counted in bytes (one semaphore permit per byte).
#[derive(Clone)]
pub struct Budget {
    semaphore: Arc<Semaphore>,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Budget {
            semaphore: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    fn try_take(&self, bytes: usize) -> Result<OwnedSemaphorePermit> {
        let permits = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        self.semaphore
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| Error::Overloaded {
                retry_after: Limits::OVERLOAD_RETRY,
            })
    }
}

/// Reads, size-checks and decompresses a body. The memory budget is taken before reading,
/// sized by `Content-Length` when given (else the largest allowed body), so an overloaded server
/// refuses work before it buffers it.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
    budget: &Budget,
) -> Result<LimitedBody> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if let Some(length) = declared
        && length > limits.max_body_bytes
    {
        return Err(Error::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let gzip = match headers.get(header::CONTENT_ENCODING) {
        None => false,
        Some(value) => match value.to_str().map(str::trim) {
            Ok(encoding) if encoding.eq_ignore_ascii_case("gzip") => true,
            Ok(encoding) if encoding.eq_ignore_ascii_case("identity") || encoding.is_empty() => {
                false
            }
            Ok(encoding) => return Err(Error::UnsupportedEncoding(encoding.to_owned())),
            Err(_) => return Err(Error::UnsupportedEncoding("<not text>".to_owned())),
        },
    };
    let mut permit = budget.try_take(declared.unwrap_or(limits.max_body_bytes))?;
    let raw = axum::body::to_bytes(body, limits.max_body_bytes)
        .await
        .map_err(|_| Error::BodyTooLarge {
            limit: limits.max_body_bytes,
        })?;
    if !gzip {
        return Ok(LimitedBody {
            bytes: raw,
            _permit: permit,
        });
    }
    // The decompressed copy needs budget of its own; its size is unknown until done, so take
    // the cap's worth only for large inputs and settle for a ratio estimate on small ones.
    let estimate = (raw.len().saturating_mul(8)).min(limits.max_decompressed_bytes);
    permit.merge(budget.try_take(estimate)?);
    let cap = limits.max_decompressed_bytes;
    let bytes = if raw.len() <= INLINE_DECOMPRESS_BYTES / 8 {
        gunzip(&raw, cap)?
    } else {
        tokio::task::spawn_blocking(move || gunzip(&raw, cap))
            .await
            .map_err(|_| Error::Overloaded {
                retry_after: Limits::OVERLOAD_RETRY,
            })??
    };
    Ok(LimitedBody {
        bytes,
        _permit: permit,
    })
}

fn gunzip(compressed: &[u8], cap: usize) -> Result<Bytes> {
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(cap as u64 + 1);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(cap));
    decoder
        .read_to_end(&mut out)
        .map_err(|error| Error::Invalid {
            code: "malformed_gzip",
            field: "body".to_owned(),
            message: format!("body is not valid gzip: {error}"),
        })?;
    if out.len() > cap {
        return Err(Error::BodyTooLarge { limit: cap });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gunzip_round_trip_and_cap() {
        let data = vec![b'a'; 10_000];
        let packed = gzip(&data);
        assert_eq!(gunzip(&packed, 10_000).unwrap().len(), 10_000);
        assert!(matches!(
            gunzip(&packed, 9_999),
            Err(Error::BodyTooLarge { limit: 9_999 })
        ));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(Error::Invalid {
                code: "malformed_gzip",
                ..
            })
        ));
    }

    #[test]
    fn budget_refuses_past_its_size() {
        let budget = Budget::new(100);
        let held = budget.try_take(80).unwrap();
        assert!(matches!(budget.try_take(30), Err(Error::Overloaded { .. })));
        drop(held);
        assert!(budget.try_take(30).is_ok());
    }
}
