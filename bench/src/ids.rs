//! Fresh client ids for replayed bodies: with `--client-ids` every event of a body holds a
//! 36-character placeholder, and each send copies the body and writes a new UUID over each
//! placeholder, so the server's dedup window sees only new ids (as with real SDK traffic,
//! where every message has its own `messageId`).
//!
//! An id is `NNNNNNNN-CCCC-8HHH-8HHH-LLLLLLLLLLLL`: a per-run nonce, the connection, and a
//! per-connection counter, with version 8 ("custom") and the RFC 4122 variant, so ids never
//! repeat within a run or between connections.

use crate::workload::{Body, ID_TEXT_LEN};
use bytes::{Bytes, BytesMut};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes ids for one connection.
pub struct IdStamper {
    nonce: u32,
    connection: u16,
    counter: u64,
}

impl IdStamper {
    pub fn new(nonce: u32, connection: u16) -> Self {
        IdStamper {
            nonce,
            connection,
            counter: 0,
        }
    }

    /// The body to send: shared as is when it has no placeholders, else a copy with new ids.
    pub fn stamp(&mut self, body: &Body) -> Bytes {
        if body.id_offsets.is_empty() {
            return body.bytes.clone();
        }
        let mut copy = BytesMut::from(&body.bytes[..]);
        for offset in &body.id_offsets {
            let start = *offset as usize;
            let id = self.next_id();
            copy[start..start + ID_TEXT_LEN].copy_from_slice(&id);
        }
        copy.freeze()
    }

    fn next_id(&mut self) -> [u8; ID_TEXT_LEN] {
        let counter = self.counter;
        self.counter = self.counter.wrapping_add(1);
        let mut text = [b'-'; ID_TEXT_LEN];
        write_hex(&mut text[0..8], u64::from(self.nonce));
        write_hex(&mut text[9..13], u64::from(self.connection));
        text[14] = b'8';
        write_hex(&mut text[15..18], counter >> 60);
        text[19] = b'8';
        write_hex(&mut text[20..23], (counter >> 48) & 0xfff);
        write_hex(&mut text[24..36], counter & 0xffff_ffff_ffff);
        text
    }
}

/// Writes the low `4 * out.len()` bits of `value` as lowercase hex, most significant first.
fn write_hex(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_uuids_and_unique() {
        let mut stamper = IdStamper::new(0xdead_beef, 3);
        let mut seen = HashSet::new();
        for _ in 0..1_000 {
            let id = stamper.next_id();
            let text = std::str::from_utf8(&id).unwrap().to_owned();
            assert_eq!(text.len(), 36);
            assert!(text.starts_with("deadbeef-0003-8"), "{text}");
            assert!(seen.insert(text));
        }
        assert!(seen.contains("deadbeef-0003-8000-8000-0000000003e7"));
    }

    #[test]
    fn stamps_every_placeholder() {
        let text = r#"[{"id":"000000000000000000000000000000000000"},{"id":"000000000000000000000000000000000000"}]"#;
        let body = Body {
            bytes: Bytes::from_static(text.as_bytes()),
            id_offsets: vec![8, 54],
        };
        let mut stamper = IdStamper::new(1, 2);
        let first = stamper.stamp(&body);
        let second = stamper.stamp(&body);
        assert_ne!(first, second);
        let parsed: Vec<serde_json::Value> = serde_json::from_slice(&first).unwrap();
        assert_eq!(parsed[0]["id"], "00000001-0002-8000-8000-000000000000");
        assert_eq!(parsed[1]["id"], "00000001-0002-8000-8000-000000000001");
    }
}
