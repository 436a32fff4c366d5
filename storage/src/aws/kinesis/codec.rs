//! The payload of one Kinesis record: many events of one partition key, compressed together.
//!
//! Layout (format version 1, integers little-endian) — byte for byte the embedded log's block
//! payload (`embedded/log/codec.rs`), so one decoder could serve both logs:
//!
//! ```text
//! [u8 version = 1][u8 codec = 1 (zstd)][u32 event_count][u32 raw_len][zstd(body)]
//! ```
//!
//! `body` is the concatenation of `event_count` postcard-encoded [`Event`]s, `raw_len` bytes.
//! This is a separate small copy because the embedded codec module is private to the embedded
//! log; making it `pub(crate)` would let this file shrink to the record-size logic.
//!
//! Invariants:
//! - `raw_len <= MAX_RAW_BYTES`: the decoder never allocates more than that, whatever a damaged
//!   header claims;
//! - postcard is not self-describing: changing the field order of [`Event`] or the variant order
//!   of `EventKind` needs a new format version, and the decoder must keep reading version 1.

use shoal_schemas::Event;

const FORMAT_VERSION: u8 = 1;
const CODEC_STORED: u8 = 0;
const CODEC_ZSTD: u8 = 1;
/// Bytes before the body.
pub(crate) const HEADER_LEN: usize = 10;
/// The most event bytes (before compression) one record holds: the embedded block's cap, so
/// every payload one log writes the other could read.
pub(crate) const MAX_RAW_BYTES: usize = 4 * 1024 * 1024;
/// zstd level: level 1 already packs repetitive JSON properties well and stays fast.
const COMPRESSION_LEVEL: i32 = 1;

/// Why a payload is not a valid record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub(crate) struct DecodeError(String);

/// The postcard encoding of one event.
pub(crate) fn encode_event(event: &Event) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(event)
}

/// The payload of a record holding events whose encodings, concatenated, are `raw`.
pub(crate) fn encode_payload(count: u32, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    debug_assert!(count > 0 && raw.len() <= MAX_RAW_BYTES);
    let raw_len =
        u32::try_from(raw.len()).map_err(|_| std::io::Error::other("payload above 4 GiB"))?;
    let body = zstd::bulk::compress(raw, COMPRESSION_LEVEL)?;
    let mut payload = Vec::with_capacity(HEADER_LEN + body.len());
    payload.push(FORMAT_VERSION);
    payload.push(CODEC_ZSTD);
    payload.extend_from_slice(&count.to_le_bytes());
    payload.extend_from_slice(&raw_len.to_le_bytes());
    payload.extend_from_slice(&body);
    Ok(payload)
}

/// The events of a record's payload.
pub(crate) fn decode_payload(payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let Some(header) = payload.get(..HEADER_LEN) else {
        return Err(DecodeError(format!(
            "record of {} bytes is shorter than its header",
            payload.len()
        )));
    };
    if header[0] != FORMAT_VERSION {
        return Err(DecodeError(format!(
            "record format version {} is not supported (this build reads {FORMAT_VERSION})",
            header[0]
        )));
    }
    let codec = header[1];
    let count = u32::from_le_bytes([header[2], header[3], header[4], header[5]]);
    let raw_len = u32::from_le_bytes([header[6], header[7], header[8], header[9]]) as usize;
    if count == 0 || raw_len > MAX_RAW_BYTES || count as usize > raw_len {
        return Err(DecodeError(format!(
            "implausible record header: {count} events in {raw_len} bytes"
        )));
    }
    let body = &payload[HEADER_LEN..];
    let decompressed;
    let raw: &[u8] = match codec {
        CODEC_ZSTD => {
            decompressed = zstd::bulk::decompress(body, raw_len)
                .map_err(|error| DecodeError(format!("zstd: {error}")))?;
            &decompressed
        }
        CODEC_STORED => body,
        other => return Err(DecodeError(format!("unknown record codec {other}"))),
    };
    if raw.len() != raw_len {
        return Err(DecodeError(format!(
            "record body is {} bytes, its header says {raw_len}",
            raw.len()
        )));
    }
    let mut events = Vec::with_capacity(count as usize);
    let mut rest = raw;
    for _ in 0..count {
        let (event, tail) = postcard::take_from_bytes::<Event>(rest).map_err(|error| {
            DecodeError(format!("event {} of the record: {error}", events.len()))
        })?;
        events.push(event);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(DecodeError(format!(
            "{} stray bytes after the record's events",
            rest.len()
        )));
    }
    Ok(events)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use shoal_schemas::EventKind;

    pub(crate) fn event(n: u32) -> Event {
        Event {
            id: uuid::Uuid::from_u128(u128::from(n) << 64 | 0xabc),
            tenant: "acme".into(),
            kind: if n.is_multiple_of(2) {
                EventKind::Track
            } else {
                EventKind::Metric
            },
            name: format!("event-{n}"),
            entity: format!("customer-{}", n % 3),
            timestamp: 1_700_000_000_000 + i64::from(n),
            received_at: 1_700_000_000_500 + i64::from(n),
            properties: format!(r#"{{"plan":"pro","n":{n}}}"#),
            value: (n % 2 == 1).then_some(f64::from(n) * 0.5),
        }
    }

    fn payload(events: &[Event]) -> Vec<u8> {
        let raw: Vec<u8> = events
            .iter()
            .flat_map(|event| encode_event(event).unwrap())
            .collect();
        encode_payload(events.len() as u32, &raw).unwrap()
    }

    #[test]
    fn round_trips_and_compresses() {
        let events: Vec<Event> = (0..200).map(event).collect();
        let raw_len: usize = events.iter().map(|e| encode_event(e).unwrap().len()).sum();
        let encoded = payload(&events);
        assert!(
            encoded.len() * 3 < raw_len,
            "{} vs {raw_len}",
            encoded.len()
        );
        assert_eq!(decode_payload(&encoded).unwrap(), events);
    }

    #[test]
    fn rejects_damage() {
        let good = payload(&[event(1), event(2)]);
        assert!(decode_payload(&good[..4]).is_err());
        assert!(decode_payload(&good[..good.len() - 2]).is_err());
        let mut version = good.clone();
        version[0] = 7;
        assert!(decode_payload(&version).is_err());
        let mut count = good.clone();
        count[2] = 3;
        assert!(decode_payload(&count).is_err());
        let mut huge = good;
        huge[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_payload(&huge).is_err());
    }
}
