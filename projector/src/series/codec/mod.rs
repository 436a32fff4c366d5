//! Compact encodings of a series bucket's raw points and of a rollup item's slots.
//!
//! Every encoding starts with a format byte, so older formats stay readable beside newer ones:
//! the decoders read every format below, the encoders write the newest that fits the data, and an
//! item is rewritten in the newest format the next time a flush touches it (no re-projection).
//!
//! **Points v1** (`BTreeMap<timestamp, value>`, timestamps ascending): the point count (varint),
//! then per point the timestamp as a zigzag varint of its *delta of delta* (the first relative to
//! the bucket start, the second as a plain delta), then the value as the XOR of its bits with the
//! previous value's bits, bit-reversed and varint-coded. Regular intervals make the timestamp one
//! byte; slowly changing or integral values make the XOR's low mantissa bits zero, which the
//! reversal turns into leading zeros that the varint drops (Gorilla's idea, byte-aligned for
//! speed). Written when the values are not all short decimals.
//!
//! **Points v2**: as v1, but the values are *decimal*: one scale byte `k`, and each value `v`
//! stored as the zigzag varint of the change of the integer `m = v·10^k` from the previous
//! point's. Metric values are mostly short decimals (`23.4`, `0.75`), whose bits XOR into a full
//! mantissa (v1 then spends 7–9 bytes a value) while their decimal steps are small (1–2 bytes).
//! `k` is the smallest scale at which *every* value of the bucket comes back bit for bit as
//! `m / 10^k` (VictoriaMetrics' trick, exact here by construction: the encoder checks the round
//! trip, and v1 is written otherwise).
//!
//! **Slots v1**: the slot count, then per slot its index delta (varint), `count` (varint) and
//! `sum`, `min`, `max`, `last` as 8 little-endian bytes each (34 bytes a slot).
//!
//! **Slots v2**: the slot count; the slot indexes, either as index deltas or, when smaller, as a
//! bitmap (a dense day of minutes: 180 bytes for 1440 slots); a mode byte, either a decimal scale
//! `k` (as for points: every `last`, `min` and `max` exact at `k`) or raw; then per slot a header
//! varint `count << 1 | full` and the numbers. A slot of one point (or any slot whose `sum`,
//! `min` and `max` have the bits of its `last`: `full` is 0) stores `last` alone, which is most
//! minute slots. Decimal mode: `last` as the zigzag varint of the change of its `m` from the
//! previous slot's, `min` and `max` as their `m` minus `last`'s, and `sum` (rarely a short
//! decimal once rounding errors accumulate) as its nearest decimal at scale `k` minus
//! `count·m(last)`, then the distance in bits (units in the last place) from that decimal to the
//! exact sum: both small, and the round trip is exact for any finite sum. Raw mode: `last` XORed
//! with the previous slot's, `min`, `max` and `sum` XORed with `last`, bit-reversed varints.
//!
//! **Slots v3**: as v2 up to the mode byte; then the block length `n` (varint, at least 1), and
//! the slots' headers and numbers in blocks, block `b` holding the slots with indexes
//! `b·n ≤ i < (b+1)·n`: each non-empty block its byte length (varint), then its slots as v2
//! codes them, the `last` chain starting afresh. A range read skips the blocks before its range
//! by their lengths and stops after its range. The writer picks `n` per resolution (an hour of
//! minute slots, a day of hour slots), so a day read from a month's hourly item decodes one or
//! two blocks instead of every slot. Written when the slots span more than one block.
//!
//! Decoding never panics: malformed bytes are an error.

use super::Agg;
use std::collections::BTreeMap;

const POINTS_V1: u8 = 1;
const POINTS_V2: u8 = 2;
const SLOTS_V1: u8 = 1;
const SLOTS_V2: u8 = 2;
const SLOTS_V3: u8 = 3;

/// Scales tried for decimal values: up to 9 digits after the point.
const MAX_SCALE: u8 = 9;
/// The slots' mode byte for raw (not decimal) numbers.
const RAW_MODE: u8 = 0xff;
/// How slot indexes are stored.
const INDEX_DELTAS: u8 = 0;
const INDEX_BITMAP: u8 = 1;
/// Integers up to this magnitude convert to `f64` and back exactly.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).max(1).div_ceil(7)
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// `10^scale`, exact in an `f64` for every scale up to [`MAX_SCALE`].
fn power_of_ten(scale: u8) -> f64 {
    10f64.powi(i32::from(scale))
}

/// The integer `m` with `m / 10^scale` bit for bit `value`, if there is one in `f64`'s exact
/// integer range (never for `-0.0`, NaN or infinities).
fn decimal(value: f64, power: f64) -> Option<i64> {
    let scaled = (value * power).round();
    if scaled.abs() > EXACT_INTEGER || scaled.is_nan() {
        return None;
    }
    // Checked on the integer, as the decoder computes it: `-0.0` rounds to an integer zero,
    // which comes back as `+0.0`.
    let integer = scaled as i64;
    ((integer as f64 / power).to_bits() == value.to_bits()).then_some(integer)
}

/// The nearest integer to `value · 10^scale`, if finite and in the exact integer range.
fn nearest_decimal(value: f64, power: f64) -> Option<i64> {
    let scaled = (value * power).round();
    (scaled.abs() <= EXACT_INTEGER).then_some(scaled as i64)
}

/// The smallest scale at which every value is a decimal (`decimal` is `Some`).
fn common_scale(values: impl Iterator<Item = f64> + Clone) -> Option<u8> {
    (0..=MAX_SCALE).find(|&scale| {
        let power = power_of_ten(scale);
        values.clone().all(|value| decimal(value, power).is_some())
    })
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

    fn signed(&mut self) -> Result<i64, String> {
        Ok(unzigzag(self.varint()?))
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

    fn take(&mut self, len: usize) -> Result<&[u8], String> {
        if self.bytes.len() < len {
            return Err("truncated bitmap".into());
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn scale(&mut self) -> Result<u8, String> {
        let scale = self.byte()?;
        if scale > MAX_SCALE {
            return Err("unknown decimal scale".into());
        }
        Ok(scale)
    }

    /// A count of items that each take at least one byte: never more than the bytes left, so a
    /// corrupt count cannot make the decoder reserve or loop without bound.
    fn count(&mut self) -> Result<u64, String> {
        let count = self.varint()?;
        if count > self.bytes.len() as u64 {
            return Err("count larger than the bytes left".into());
        }
        Ok(count)
    }
}

pub fn encode_points(start: i64, points: &BTreeMap<i64, f64>) -> Vec<u8> {
    encode_points_at(start, points, common_scale(points.values().copied()))
}

/// v2 at `scale` (which must fit every value), or v1 without one.
fn encode_points_at(start: i64, points: &BTreeMap<i64, f64>, scale: Option<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + points.len() * 3);
    out.push(if scale.is_some() {
        POINTS_V2
    } else {
        POINTS_V1
    });
    put_varint(&mut out, points.len() as u64);
    if let Some(scale) = scale {
        out.push(scale);
    }
    let power = scale.map(power_of_ten);
    let (mut previous, mut delta, mut bits, mut mantissa) = (start, 0i64, 0u64, 0i64);
    for (&timestamp, &value) in points {
        let next_delta = timestamp.wrapping_sub(previous);
        put_varint(&mut out, zigzag(next_delta.wrapping_sub(delta)));
        (previous, delta) = (timestamp, next_delta);
        match power.and_then(|power| decimal(value, power)) {
            Some(next) => {
                put_varint(&mut out, zigzag(next.wrapping_sub(mantissa)));
                mantissa = next;
            }
            None => {
                debug_assert!(power.is_none(), "the scale fits every value");
                let value_bits = value.to_bits();
                put_varint(&mut out, (value_bits ^ bits).reverse_bits());
                bits = value_bits;
            }
        }
    }
    out
}

pub fn decode_points(start: i64, bytes: &[u8]) -> Result<BTreeMap<i64, f64>, String> {
    let mut reader = Reader { bytes };
    let format = reader.byte()?;
    if format != POINTS_V1 && format != POINTS_V2 {
        return Err("unknown points format".into());
    }
    let count = reader.count()?;
    let power = match format {
        POINTS_V2 => Some(power_of_ten(reader.scale()?)),
        _ => None,
    };
    let mut points = BTreeMap::new();
    let (mut previous, mut delta, mut bits, mut mantissa) = (start, 0i64, 0u64, 0i64);
    for _ in 0..count {
        delta = delta.wrapping_add(reader.signed()?);
        previous = previous.wrapping_add(delta);
        let value = match power {
            Some(power) => {
                mantissa = mantissa.wrapping_add(reader.signed()?);
                mantissa as f64 / power
            }
            None => {
                bits ^= reader.varint()?.reverse_bits();
                f64::from_bits(bits)
            }
        };
        points.insert(previous, value);
    }
    if !reader.bytes.is_empty() {
        return Err("trailing bytes after points".into());
    }
    Ok(points)
}

/// The slots in the newest format that fits them: v3 in blocks of `block` slots when they span
/// more than one block, v2 when they fit in one (block lengths would buy nothing), v1 for a
/// count too large for v2's header.
pub fn encode_slots(slots: &BTreeMap<u32, Agg>, block: u32) -> Vec<u8> {
    if slots.values().any(|agg| agg.count > u64::MAX >> 1) {
        return encode_slots_v1(slots);
    }
    let block = block.max(1);
    let blocks = match (slots.keys().next(), slots.keys().next_back()) {
        (Some(first), Some(last)) => last / block - first / block + 1,
        _ => 0,
    };
    encode_slots_v2_or_v3(slots, (blocks > 1).then_some(block))
}

/// v3 in blocks of `block` (at least 1) slots, or v2 without.
fn encode_slots_v2_or_v3(slots: &BTreeMap<u32, Agg>, block: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + slots.len() * 4);
    out.push(if block.is_some() { SLOTS_V3 } else { SLOTS_V2 });
    put_varint(&mut out, slots.len() as u64);
    if slots.is_empty() {
        return out;
    }
    encode_indexes(slots, &mut out);
    let power = encode_mode(slots, &mut out);
    let Some(block_len) = block else {
        let mut chain = Chain::default();
        for agg in slots.values() {
            encode_slot(agg, power, &mut chain, &mut out);
        }
        return out;
    };
    put_varint(&mut out, u64::from(block_len));
    let mut block = Vec::new();
    let mut slots = slots.iter().peekable();
    while let Some(&(&first, _)) = slots.peek() {
        let end = (u64::from(first / block_len) + 1) * u64::from(block_len);
        let mut chain = Chain::default();
        block.clear();
        while let Some((_, agg)) = slots.next_if(|&(&slot, _)| u64::from(slot) < end) {
            encode_slot(agg, power, &mut chain, &mut block);
        }
        put_varint(&mut out, block.len() as u64);
        out.extend_from_slice(&block);
    }
    out
}

/// What a slot's numbers are coded against: the previous slot's `last` of the same run (v2's
/// whole item, one block of v3), as a decimal mantissa or as bits.
#[derive(Default)]
struct Chain {
    mantissa: i64,
    bits: u64,
}

/// One slot's header and numbers (v2 and v3).
fn encode_slot(agg: &Agg, power: Option<f64>, chain: &mut Chain, out: &mut Vec<u8>) {
    let full = [agg.sum, agg.min, agg.max]
        .iter()
        .any(|number| number.to_bits() != agg.last.to_bits());
    put_varint(out, (agg.count << 1) | u64::from(full));
    let decimals = power.and_then(|power| {
        Some((
            power,
            decimal(agg.last, power)?,
            decimal(agg.min, power)?,
            decimal(agg.max, power)?,
            nearest_decimal(agg.sum, power)?,
        ))
    });
    match decimals {
        Some((power, last, min, max, sum)) => {
            put_varint(out, zigzag(last.wrapping_sub(chain.mantissa)));
            chain.mantissa = last;
            if full {
                put_varint(out, zigzag(min.wrapping_sub(last)));
                put_varint(out, zigzag(max.wrapping_sub(last)));
                let expected = last.wrapping_mul(agg.count as i64);
                put_varint(out, zigzag(sum.wrapping_sub(expected)));
                let ulps =
                    (agg.sum.to_bits() as i64).wrapping_sub((sum as f64 / power).to_bits() as i64);
                put_varint(out, zigzag(ulps));
            }
        }
        None => {
            debug_assert!(power.is_none(), "the scale fits every slot");
            let last = agg.last.to_bits();
            put_varint(out, (last ^ chain.bits).reverse_bits());
            chain.bits = last;
            if full {
                for number in [agg.min, agg.max, agg.sum] {
                    put_varint(out, (number.to_bits() ^ last).reverse_bits());
                }
            }
        }
    }
}

/// Slot indexes as deltas or as a bitmap, whichever is smaller.
fn encode_indexes(slots: &BTreeMap<u32, Agg>, out: &mut Vec<u8>) {
    let mut previous = 0u32;
    let deltas_len: usize = slots
        .keys()
        .map(|&slot| {
            let len = varint_len(u64::from(slot - previous));
            previous = slot;
            len
        })
        .sum();
    let bits = u64::from(previous) + 1;
    let bitmap_len = varint_len(bits) + bits.div_ceil(8) as usize;
    if bitmap_len < deltas_len {
        out.push(INDEX_BITMAP);
        put_varint(out, bits);
        let mut bitmap = vec![0u8; bits.div_ceil(8) as usize];
        for &slot in slots.keys() {
            bitmap[slot as usize / 8] |= 1 << (slot % 8);
        }
        out.extend_from_slice(&bitmap);
    } else {
        out.push(INDEX_DELTAS);
        let mut previous = 0u32;
        for &slot in slots.keys() {
            put_varint(out, u64::from(slot - previous));
            previous = slot;
        }
    }
}

/// The mode byte: the smallest decimal scale that fits every slot, or raw. Returns `10^scale`.
fn encode_mode(slots: &BTreeMap<u32, Agg>, out: &mut Vec<u8>) -> Option<f64> {
    let scale = common_scale(slots.values().flat_map(|agg| [agg.last, agg.min, agg.max])).filter(
        |&scale| {
            let power = power_of_ten(scale);
            slots
                .values()
                .all(|agg| nearest_decimal(agg.sum, power).is_some())
        },
    );
    out.push(scale.unwrap_or(RAW_MODE));
    scale.map(power_of_ten)
}

fn encode_slots_v1(slots: &BTreeMap<u32, Agg>) -> Vec<u8> {
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

/// The slots of `bytes`, in index order. A list, not a map: readers walk it once, and building a
/// map cost more than decoding (encoders write each index once, ascending; anything else is an
/// error).
pub fn decode_slots(bytes: &[u8]) -> Result<Vec<(u32, Agg)>, String> {
    let mut reader = Reader { bytes };
    let slots = decode_slots_from(&mut reader, 0..=u32::MAX)?;
    if !reader.bytes.is_empty() {
        return Err("trailing bytes after slots".into());
    }
    Ok(slots)
}

/// The slots of `bytes` whose index is in `wanted`, in index order: what a range query reads of
/// an item. A v3 item's blocks outside the range are skipped by their lengths and the decoding
/// stops after the range, so a day read from a month's hourly item decodes a day's blocks;
/// bytes it does not decode are not checked either (the projector's fold reads items whole,
/// with [`decode_slots`]).
pub fn decode_slots_in(
    bytes: &[u8],
    wanted: std::ops::RangeInclusive<u32>,
) -> Result<Vec<(u32, Agg)>, String> {
    decode_slots_from(&mut Reader { bytes }, wanted)
}

fn decode_slots_from(
    reader: &mut Reader<'_>,
    wanted: std::ops::RangeInclusive<u32>,
) -> Result<Vec<(u32, Agg)>, String> {
    let mut slots = match reader.byte()? {
        SLOTS_V1 => decode_slots_v1(reader)?,
        format @ (SLOTS_V2 | SLOTS_V3) => {
            return decode_slots_v2_or_v3(reader, format == SLOTS_V3, wanted);
        }
        _ => return Err("unknown slots format".into()),
    };
    slots.retain(|(slot, _)| wanted.contains(slot));
    Ok(slots)
}

fn decode_slots_v1(reader: &mut Reader<'_>) -> Result<Vec<(u32, Agg)>, String> {
    let count = reader.count()?;
    let mut slots = Vec::with_capacity(count as usize);
    let mut slot = 0u32;
    for index in 0..count {
        let step = u32::try_from(reader.varint()?).map_err(|_| "slot out of range")?;
        if step == 0 && index > 0 {
            return Err("slot indexes not ascending".into());
        }
        slot = slot.checked_add(step).ok_or("slot out of range")?;
        let count = reader.varint()?;
        let agg = Agg {
            count,
            sum: reader.f64()?,
            min: reader.f64()?,
            max: reader.f64()?,
            last: reader.f64()?,
        };
        slots.push((slot, agg));
    }
    Ok(slots)
}

fn decode_indexes(reader: &mut Reader<'_>, count: u64) -> Result<Vec<u32>, String> {
    let mut indexes = Vec::with_capacity(count as usize);
    match reader.byte()? {
        INDEX_DELTAS => {
            let mut slot = 0u32;
            for index in 0..count {
                let step = u32::try_from(reader.varint()?).map_err(|_| "slot out of range")?;
                if step == 0 && index > 0 {
                    return Err("slot indexes not ascending".into());
                }
                slot = slot.checked_add(step).ok_or("slot out of range")?;
                indexes.push(slot);
            }
        }
        INDEX_BITMAP => {
            let bits = reader.varint()?;
            let len = usize::try_from(bits.div_ceil(8)).map_err(|_| "bitmap too long")?;
            let bitmap = reader.take(len)?;
            for (byte_index, &byte) in bitmap.iter().enumerate() {
                let base = u32::try_from(byte_index * 8).map_err(|_| "slot out of range")?;
                let mut bits = byte;
                while bits != 0 {
                    indexes.push(base + bits.trailing_zeros());
                    bits &= bits - 1;
                }
            }
            if indexes.len() as u64 != count {
                return Err("bitmap does not match the slot count".into());
            }
        }
        _ => return Err("unknown slot index layout".into()),
    }
    Ok(indexes)
}

fn decode_slots_v2_or_v3(
    reader: &mut Reader<'_>,
    blocked: bool,
    wanted: std::ops::RangeInclusive<u32>,
) -> Result<Vec<(u32, Agg)>, String> {
    let count = reader.count()?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let indexes = decode_indexes(reader, count)?;
    let power = match reader.byte()? {
        RAW_MODE => None,
        scale if scale <= MAX_SCALE => Some(power_of_ten(scale)),
        _ => return Err("unknown slots mode".into()),
    };
    let (first, last) = (*wanted.start(), *wanted.end());
    let span = u64::from(last.saturating_sub(first)) + 1;
    let mut slots = Vec::with_capacity(count.min(span) as usize);
    if !blocked {
        decode_run(reader, power, &indexes, &wanted, &mut slots)?;
        return Ok(slots);
    }
    let block_len = match reader.varint()? {
        0 => return Err("slot block length 0".into()),
        len => u32::try_from(len).map_err(|_| "slot block too long")?,
    };
    let mut rest = indexes.as_slice();
    while let Some(&head) = rest.first() {
        // Compared with the block's end rather than divided: a division per slot cost more
        // than decoding the slots of an hour.
        let end = (u64::from(head / block_len) + 1) * u64::from(block_len);
        let in_block = rest
            .iter()
            .take_while(|&&slot| u64::from(slot) < end)
            .count();
        let (block_slots, after) = rest.split_at(in_block);
        rest = after;
        if head > last {
            break;
        }
        let len = usize::try_from(reader.varint()?).map_err(|_| "block too long")?;
        let mut block = Reader {
            bytes: reader.take(len)?,
        };
        if block_slots.last().is_some_and(|&slot| slot < first) {
            continue;
        }
        let whole = decode_run(&mut block, power, block_slots, &wanted, &mut slots)?;
        if whole && !block.bytes.is_empty() {
            return Err("trailing bytes in a slot block".into());
        }
    }
    Ok(slots)
}

/// Decodes one run of slots coded as one chain (a v2 item, or one v3 block) into `out`,
/// keeping those in `wanted`, and stops at the first slot past it. Returns whether it decoded
/// the whole run: only then can the caller tell trailing bytes from slots it did not read.
fn decode_run(
    reader: &mut Reader<'_>,
    power: Option<f64>,
    run: &[u32],
    wanted: &std::ops::RangeInclusive<u32>,
    out: &mut Vec<(u32, Agg)>,
) -> Result<bool, String> {
    let mut chain = Chain::default();
    for &slot in run {
        if slot > *wanted.end() {
            return Ok(false);
        }
        let agg = decode_slot(reader, power, &mut chain)?;
        if slot >= *wanted.start() {
            out.push((slot, agg));
        }
    }
    Ok(true)
}

/// One slot's header and numbers (v2 and v3). Inlined: as a call it returned each slot
/// through memory and kept the chain out of registers (about 2× a day's decoding in a server
/// profile).
#[inline(always)]
fn decode_slot(
    reader: &mut Reader<'_>,
    power: Option<f64>,
    chain: &mut Chain,
) -> Result<Agg, String> {
    let header = reader.varint()?;
    let (count, full) = (header >> 1, header & 1 == 1);
    Ok(match power {
        Some(power) => {
            let last = chain.mantissa.wrapping_add(reader.signed()?);
            chain.mantissa = last;
            let last_value = last as f64 / power;
            if full {
                let min = last.wrapping_add(reader.signed()?);
                let max = last.wrapping_add(reader.signed()?);
                let sum = last
                    .wrapping_mul(count as i64)
                    .wrapping_add(reader.signed()?);
                let ulps = reader.signed()?;
                let sum_bits = ((sum as f64 / power).to_bits() as i64).wrapping_add(ulps);
                Agg {
                    count,
                    sum: f64::from_bits(sum_bits as u64),
                    min: min as f64 / power,
                    max: max as f64 / power,
                    last: last_value,
                }
            } else {
                Agg {
                    count,
                    sum: last_value,
                    min: last_value,
                    max: last_value,
                    last: last_value,
                }
            }
        }
        None => {
            chain.bits ^= reader.varint()?.reverse_bits();
            let last = chain.bits;
            let mut numbers = [last; 3];
            if full {
                for number in &mut numbers {
                    *number = reader.varint()?.reverse_bits() ^ last;
                }
            }
            Agg {
                count,
                min: f64::from_bits(numbers[0]),
                max: f64::from_bits(numbers[1]),
                sum: f64::from_bits(numbers[2]),
                last: f64::from_bits(last),
            }
        }
    })
}

#[cfg(test)]
mod tests;
