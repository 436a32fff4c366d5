//! Compact encodings of a series bucket's raw points and of a rollup item's slots.
//!
//! Points (`BTreeMap<timestamp, value>`, timestamps ascending): a format byte, the point count
//! (varint), then per point the timestamp as a zigzag varint of its *delta of delta* (the first
//! relative to the bucket start, the second as a plain delta), then the value as the XOR of its
//! bits with the previous value's bits, bit-reversed and varint-coded. Regular intervals make
//! the timestamp one byte; slowly changing or integral values make the XOR's low mantissa bits
//! zero, which the reversal turns into leading zeros that the varint drops (Gorilla's idea,
//! byte-aligned for speed). Measured sizes are in `docs/read-models.md`.
//!
//! Rollup slots: a format byte, the slot count, then per slot its index delta (varint), `count`
//! (varint) and `sum`, `min`, `max`, `last` as 8 little-endian bytes each.
//!
//! Decoding never panics: malformed bytes are an error.

use super::Agg;
use std::collections::BTreeMap;

const POINTS_V1: u8 = 1;
const SLOTS_V1: u8 = 1;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A cursor over encoded bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or("truncated varint")?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn f64(&mut self) -> Result<f64, String> {
        if self.bytes.len() < 8 {
            return Err("truncated number".into());
        }
        let (head, rest) = self.bytes.split_at(8);
        self.bytes = rest;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(head);
        Ok(f64::from_le_bytes(raw))
    }

    fn byte(&mut self) -> Result<u8, String> {
        let (&byte, rest) = self.bytes.split_first().ok_or("empty")?;
        self.bytes = rest;
        Ok(byte)
    }
}

pub fn encode_points(start: i64, points: &BTreeMap<i64, f64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + points.len() * 4);
    out.push(POINTS_V1);
    put_varint(&mut out, points.len() as u64);
    let (mut previous, mut delta, mut bits) = (start, 0i64, 0u64);
    for (&timestamp, &value) in points {
        let next_delta = timestamp.wrapping_sub(previous);
        put_varint(&mut out, zigzag(next_delta.wrapping_sub(delta)));
        let value_bits = value.to_bits();
        put_varint(&mut out, (value_bits ^ bits).reverse_bits());
        (previous, delta, bits) = (timestamp, next_delta, value_bits);
    }
    out
}

pub fn decode_points(start: i64, bytes: &[u8]) -> Result<BTreeMap<i64, f64>, String> {
    let mut reader = Reader { bytes };
    if reader.byte()? != POINTS_V1 {
        return Err("unknown points format".into());
    }
    let count = reader.varint()?;
    let mut points = BTreeMap::new();
    let (mut previous, mut delta, mut bits) = (start, 0i64, 0u64);
    for _ in 0..count {
        delta = delta.wrapping_add(unzigzag(reader.varint()?));
        previous = previous.wrapping_add(delta);
        bits ^= reader.varint()?.reverse_bits();
        points.insert(previous, f64::from_bits(bits));
    }
    if !reader.bytes.is_empty() {
        return Err("trailing bytes after points".into());
    }
    Ok(points)
}

pub fn encode_slots(slots: &BTreeMap<u32, Agg>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + slots.len() * 36);
    out.push(SLOTS_V1);
    put_varint(&mut out, slots.len() as u64);
    let mut previous = 0u32;
    for (&slot, agg) in slots {
        put_varint(&mut out, u64::from(slot - previous));
        previous = slot;
        put_varint(&mut out, agg.count);
        for number in [agg.sum, agg.min, agg.max, agg.last] {
            out.extend_from_slice(&number.to_le_bytes());
        }
    }
    out
}

pub fn decode_slots(bytes: &[u8]) -> Result<BTreeMap<u32, Agg>, String> {
    let mut reader = Reader { bytes };
    if reader.byte()? != SLOTS_V1 {
        return Err("unknown slots format".into());
    }
    let count = reader.varint()?;
    let mut slots = BTreeMap::new();
    let mut slot = 0u32;
    for _ in 0..count {
        let step = u32::try_from(reader.varint()?).map_err(|_| "slot out of range")?;
        slot = slot.checked_add(step).ok_or("slot out of range")?;
        let count = reader.varint()?;
        let agg = Agg {
            count,
            sum: reader.f64()?,
            min: reader.f64()?,
            max: reader.f64()?,
            last: reader.f64()?,
        };
        slots.insert(slot, agg);
    }
    if !reader.bytes.is_empty() {
        return Err("trailing bytes after slots".into());
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn regular_integral_points_are_small() {
        let points: BTreeMap<i64, f64> = (0..3600).map(|s| (s * 1000, (s % 50) as f64)).collect();
        let bytes = encode_points(0, &points);
        assert!(bytes.len() < 3600 * 4, "{} bytes", bytes.len());
        assert_eq!(decode_points(0, &bytes).unwrap(), points);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_points(0, &[]).is_err());
        assert!(decode_points(0, &[1, 5, 0x80]).is_err());
        assert!(decode_slots(&[1, 1, 0, 1, 0]).is_err());
    }

    proptest! {
        #[test]
        fn points_round_trip(start in 0i64..1 << 40, raw in proptest::collection::btree_map(0i64..3_600_000, any::<f64>(), 0..200)) {
            let points: BTreeMap<i64, f64> = raw.into_iter().map(|(t, v)| (start + t, v)).collect();
            let decoded = decode_points(start, &encode_points(start, &points)).unwrap();
            prop_assert_eq!(decoded.len(), points.len());
            for ((t1, v1), (t2, v2)) in decoded.iter().zip(points.iter()) {
                prop_assert_eq!(t1, t2);
                prop_assert_eq!(v1.to_bits(), v2.to_bits());
            }
        }

        #[test]
        fn slots_round_trip(raw in proptest::collection::btree_map(0u32..1440, (1u64..1000, -1e9f64..1e9), 0..100)) {
            let slots: BTreeMap<u32, Agg> = raw.into_iter().map(|(slot, (count, v))| {
                (slot, Agg { count, sum: v * count as f64, min: v - 1.0, max: v + 1.0, last: v })
            }).collect();
            prop_assert_eq!(decode_slots(&encode_slots(&slots)).unwrap(), slots);
        }
    }
}
