//! Splitting Segment request bodies into messages: a `/v1/batch` envelope (`batch`, and the
//! `context`, `sentAt` and `writeKey` it shares with its messages) or one single-call message,
//! within Segment's size limit.

use super::context_map;
use crate::parse::fields::{string, time};
use crate::{Error, Result};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Segment refuses batches above 500 KB (400 Bad Request); so does Shoal on these routes.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// A request body split into its messages, with what the batch level shares with each.
#[derive(Debug)]
pub struct SegmentBatch<'a> {
    pub messages: Vec<&'a RawValue>,
    pub shared: Shared,
    /// `writeKey` from the body, for clients that send no `Authorization` header.
    pub write_key: Option<String>,
}

/// What a batch passes down to each of its messages.
#[derive(Debug, Default, Clone)]
pub struct Shared {
    pub context: Map<String, Value>,
    pub sent_at: Option<i64>,
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow, rename = "sentAt")]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow, rename = "writeKey")]
    write_key: Option<&'a RawValue>,
}

fn body_error(code: &'static str, field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        code,
        field: field.to_owned(),
        message: message.into(),
    }
}

fn check_batch_size(body: &[u8]) -> Result<()> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(body_error(
            "body_too_large",
            "body",
            format!(
                "body is {} bytes, Segment's limit (and Shoal's on this route) is {MAX_BATCH_BYTES}",
                body.len()
            ),
        ));
    }
    Ok(())
}

fn key_text(raw: Option<&RawValue>) -> Result<Option<String>> {
    raw.map(|value| {
        string(value, "writeKey")
            .map(|text| text.trim().to_owned())
            .map_err(|rejection| body_error(rejection.code, "writeKey", rejection.message))
    })
    .transpose()
    .map(|key| key.filter(|text| !text.is_empty()))
}

/// Splits a `/v1/batch` body: `{"batch": [...], "context"?, "sentAt"?, "writeKey"?}`.
pub fn split_batch(body: &[u8], max_items: usize) -> Result<SegmentBatch<'_>> {
    check_batch_size(body)?;
    let envelope: RawEnvelope<'_> = serde_json::from_slice(body).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            Error::malformed(&error)
        } else {
            body_error(
                "invalid_type",
                "body",
                "body must be a JSON object with a batch array",
            )
        }
    })?;
    let batch = envelope
        .batch
        .ok_or_else(|| body_error("missing", "batch", "batch is required"))?;
    let messages: Vec<&RawValue> = serde_json::from_str(batch.get()).map_err(|_| {
        body_error(
            "invalid_type",
            "batch",
            "batch must be an array of messages",
        )
    })?;
    if messages.is_empty() {
        return Err(Error::EmptyBatch);
    }
    if messages.len() > max_items {
        return Err(Error::TooManyEvents {
            count: messages.len(),
            limit: max_items,
        });
    }
    let context = match envelope.context {
        Some(raw) => context_map(raw)
            .map_err(|rejection| body_error(rejection.code, "context", rejection.message))?,
        None => Map::new(),
    };
    let sent_at = envelope
        .sent_at
        .map(|raw| time(raw, "sentAt"))
        .transpose()
        .map_err(|rejection| body_error(rejection.code, "sentAt", rejection.message))?;
    Ok(SegmentBatch {
        messages,
        shared: Shared { context, sent_at },
        write_key: key_text(envelope.write_key)?,
    })
}

/// Splits a single-call body (`/v1/track` and the others): one message object.
pub fn split_single(body: &[u8]) -> Result<SegmentBatch<'_>> {
    check_batch_size(body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::EmptyBatch);
    }
    let message: &RawValue =
        serde_json::from_slice(body).map_err(|error| Error::malformed(&error))?;
    if !message.get().starts_with('{') {
        return Err(body_error(
            "invalid_type",
            "body",
            "body must be a JSON object",
        ));
    }
    let envelope: RawEnvelope<'_> = serde_json::from_str(message.get())
        .map_err(|_| body_error("invalid_type", "body", "body must be a JSON object"))?;
    Ok(SegmentBatch {
        messages: vec![message],
        shared: Shared::default(),
        write_key: key_text(envelope.write_key)?,
    })
}
