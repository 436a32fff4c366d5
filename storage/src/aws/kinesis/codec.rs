//! The payload of one Kinesis record: many events of one shard, compressed together.
//!
//! It is byte for byte the embedded log's block payload, so this file only adapts
//! `embedded/log/codec.rs` (the format, its version byte and its checks live there) to the
//! Kinesis writer and reader: one log format, one decoder, whichever backend wrote it.

use crate::embedded::log::codec as block;
use shoal_schemas::Event;

pub(crate) use block::DecodeError;

/// The most event bytes (before compression) one record holds: the embedded block's cap, so
/// every payload one log writes the other could read.
pub(crate) const MAX_RAW_BYTES: usize = block::MAX_BLOCK_RAW_BYTES;
/// zstd level: level 1 already packs repetitive JSON properties well and stays fast.
const COMPRESSION_LEVEL: i32 = 1;

/// The postcard encoding of one event.
pub(crate) fn encode_event(event: &Event) -> Result<Vec<u8>, postcard::Error> {
    let mut out = Vec::new();
    block::encode_event(event, &mut out)?;
    Ok(out)
}

/// The payload of a record holding `count` events whose encodings, concatenated, are `raw`.
pub(crate) fn encode_payload(count: u32, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    block::BlockEncoder::with_kept(COMPRESSION_LEVEL, |encoder| encoder.encode(count, raw))
}

/// The events of a record's payload.
pub(crate) fn decode_payload(payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    block::BlockDecoder::with_kept(|decoder| decoder.decode(payload))
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
