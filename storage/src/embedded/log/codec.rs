//! The block codec: the payload of one frame, holding the events of one group commit.
//!
//! Payload layout (format version 1, all integers little-endian):
//!
//! ```text
//! [u8 version = 1][u8 codec][u32 event_count][u32 raw_len][body]
//! ```
//!
//! `body` is the concatenation of `event_count` postcard-encoded [`Event`]s, `raw_len` bytes in
//! all, compressed as `codec` says (1 = zstd, 0 = stored as is). Compressing the block as a whole
//! rather than event by event is what makes repetitive JSON properties cheap on disk.
//!
//! Invariants:
//! - `raw_len <= MAX_BLOCK_RAW_BYTES`, so a block never needs more memory than that to decode,
//!   and the decoder refuses to allocate beyond it whatever a damaged header says;
//! - the count and raw length sit before the compressed body, so the event count of a block can
//!   be read without decompressing it;
//! - postcard is not self-describing: the body depends on the field order of [`Event`] and the
//!   variant order of `EventKind`. Changing either needs a new format version here, and the
//!   decoder must keep reading version 1.

use shoal_schemas::{Event, EventKind};

/// An encoded [`Event`] read in place, to pass over it: the same fields in the same order (postcard
/// encodes a struct as the tuple of its fields), with every string borrowed as bytes, so nothing
/// is allocated or checked for UTF-8. `skipping_reads_what_decoding_reads` keeps it in step
/// with `Event`.
type SkippedEvent<'a> = (
    uuid::Uuid,
    &'a [u8],
    EventKind,
    &'a [u8],
    &'a [u8],
    i64,
    i64,
    &'a [u8],
    Option<f64>,
);

/// The block format this build writes.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the body: version, codec, event count, raw length.
pub const HEADER_LEN: usize = 10;
/// The most event bytes (postcard-encoded, before compression) one block holds. A drain with
/// more is split into several blocks; a single event larger than this is refused at append.
pub const MAX_BLOCK_RAW_BYTES: usize = 4 * 1024 * 1024;

/// Blocks of at least this many raw bytes (about 200 events of 150 bytes) count as large for
/// [`BlockEncoder::for_log`].
pub const LARGE_BLOCK_RAW_BYTES: usize = 32 * 1024;
/// The zstd level [`BlockEncoder::for_log`] uses for large blocks at the default level.
pub const LARGE_BLOCK_LEVEL: i32 = -3;

const CODEC_STORED: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// Why a payload could not be decoded. Callers turn it into [`crate::Error::Corrupt`] with the
/// location, which only they know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DecodeError(pub(crate) String);

impl From<std::io::Error> for DecodeError {
    /// A decoder that could not be made (its zstd context).
    fn from(error: std::io::Error) -> Self {
        DecodeError(format!("zstd context: {error}"))
    }
}

/// An upper bound of an event's encoded size, computed without encoding it: postcard spends at
/// most 5 bytes on a string length, 10 on an `i64`, 17 on a UUID and 9 on an `Option<f64>`.
pub fn encoded_len_bound(event: &Event) -> usize {
    const FIXED: usize = 17 + 4 * 5 + 1 + 2 * 10 + 9;
    FIXED + event.tenant.len() + event.name.len() + event.entity.len() + event.properties.len()
}

/// Appends the postcard encoding of `event` to `out`.
pub fn encode_event(event: &Event, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    postcard::serialize_with_flavor(event, AppendToVec(out))
}

/// A postcard output that appends to a borrowed `Vec`. Unlike `postcard::to_extend`, which
/// pushes a string's bytes one at a time, it copies each string in one `extend_from_slice`.
struct AppendToVec<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendToVec<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Builds block payloads. Owns a zstd context so one writer thread reuses it for every block.
pub struct BlockEncoder {
    compressor: zstd::bulk::Compressor<'static>,
    /// The level for blocks under [`LARGE_BLOCK_RAW_BYTES`], and the one for larger blocks.
    level: i32,
    large_level: i32,
    /// The level the context is set to now.
    current: i32,
}

impl BlockEncoder {
    /// Compresses every block at `level`.
    pub fn new(level: i32) -> std::io::Result<Self> {
        Ok(BlockEncoder {
            compressor: zstd::bulk::Compressor::new(level)?,
            level,
            large_level: level,
            current: level,
        })
    }

    /// Runs `work` with this thread's encoder at `level`, kept for the next call: for callers
    /// that encode a block now and then from whatever thread they are on (the Kinesis writer),
    /// where a context per block (larger still than a decompression one) cost more than the
    /// compression. The embedded log's writer threads own theirs ([`BlockEncoder::for_log`]).
    pub fn with_kept<T>(
        level: i32,
        work: impl FnOnce(&mut BlockEncoder) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        with_kept_in(
            &KEPT_ENCODER,
            |kept: &BlockEncoder| (kept.level, kept.large_level) == (level, level),
            || BlockEncoder::new(level),
            work,
        )
    }

    /// For the embedded log's writer: at the default level (1) or below, large blocks use
    /// [`LARGE_BLOCK_LEVEL`], a faster level. Compression is most of the writer thread's work,
    /// and that thread is the shard's serial stage; a large block holds enough repetition that
    /// even the fast level keeps the log far under its 100 bytes per event (measured on the
    /// ingest bench's events: 30 → 36 B per event, for about a quarter less compression work).
    /// Small blocks (single-event requests) keep `level`: they are where the bytes per event
    /// are close to the budget. A level above the default is an operator's choice of size over
    /// speed, and applies to every block.
    pub fn for_log(level: i32) -> std::io::Result<Self> {
        let mut encoder = BlockEncoder::new(level)?;
        if level <= 1 {
            encoder.large_level = level.min(LARGE_BLOCK_LEVEL);
        }
        Ok(encoder)
    }

    /// The payload of a block of `count` events whose encodings, concatenated, are `raw`.
    pub fn encode(&mut self, count: u32, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        debug_assert!(count > 0 && raw.len() <= MAX_BLOCK_RAW_BYTES);
        let raw_len = u32::try_from(raw.len())
            .map_err(|_| std::io::Error::other("block larger than 4 GiB"))?;
        let level = if raw.len() >= LARGE_BLOCK_RAW_BYTES {
            self.large_level
        } else {
            self.level
        };
        if level != self.current {
            self.compressor.set_compression_level(level)?;
            self.current = level;
        }
        let mut payload =
            Vec::with_capacity(HEADER_LEN + zstd::zstd_safe::compress_bound(raw.len()));
        payload.push(FORMAT_VERSION);
        payload.push(CODEC_ZSTD);
        payload.extend_from_slice(&count.to_le_bytes());
        payload.extend_from_slice(&raw_len.to_le_bytes());
        // Compressed straight after the header, into room reserved for the worst case, so the
        // body is neither copied nor allocated twice.
        let mut body = std::io::Cursor::new(payload);
        body.set_position(HEADER_LEN as u64);
        self.compressor.compress_to_buffer(raw, &mut body)?;
        Ok(body.into_inner())
    }
}

/// The header fields of a payload, checked for plausibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub count: u32,
    codec: u8,
    raw_len: usize,
}

/// Reads and checks a payload's header; needs only its first [`HEADER_LEN`] bytes.
pub fn read_header(payload: &[u8]) -> Result<BlockHeader, DecodeError> {
    let Some(header) = payload.get(..HEADER_LEN) else {
        return Err(DecodeError(format!(
            "block payload of {} bytes is shorter than its header",
            payload.len()
        )));
    };
    if header[0] != FORMAT_VERSION {
        return Err(DecodeError(format!(
            "block format version {} is not supported (this build reads {FORMAT_VERSION})",
            header[0]
        )));
    }
    let codec = header[1];
    if codec != CODEC_STORED && codec != CODEC_ZSTD {
        return Err(DecodeError(format!("unknown block codec {codec}")));
    }
    let count = u32::from_le_bytes([header[2], header[3], header[4], header[5]]);
    let raw_len = u32::from_le_bytes([header[6], header[7], header[8], header[9]]) as usize;
    // Every encoded event takes at least one byte, so a count above the length is damage.
    if count == 0 || raw_len > MAX_BLOCK_RAW_BYTES || count as usize > raw_len {
        return Err(DecodeError(format!(
            "implausible block header: {count} events in {raw_len} bytes"
        )));
    }
    Ok(BlockHeader {
        count,
        codec,
        raw_len,
    })
}

/// Decodes block payloads, reusing one zstd context and one buffer for the decompressed
/// bodies (a fresh multi-megabyte buffer per block made the allocator fault in and zero new
/// pages for every block read).
pub struct BlockDecoder {
    decompressor: zstd::bulk::Decompressor<'static>,
    buffer: Vec<u8>,
}

type Kept<C> = std::cell::RefCell<Option<C>>;

thread_local! {
    /// This thread's decoder, kept between reads ([`BlockDecoder::with_kept`]).
    static KEPT_DECODER: Kept<BlockDecoder> = const { std::cell::RefCell::new(None) };
    /// This thread's encoder, kept between blocks ([`BlockEncoder::with_kept`]).
    static KEPT_ENCODER: Kept<BlockEncoder> = const { std::cell::RefCell::new(None) };
}

/// Runs `work` with the codec this thread keeps in `slot`, made with `make` when there is none
/// or the kept one does not `fit`. A `work` that calls back in gets a fresh codec, not a panic.
fn with_kept_in<C: 'static, T, E: From<std::io::Error>>(
    slot: &'static std::thread::LocalKey<Kept<C>>,
    fits: impl Fn(&C) -> bool,
    make: impl Fn() -> std::io::Result<C>,
    work: impl FnOnce(&mut C) -> Result<T, E>,
) -> Result<T, E> {
    slot.with(|cell| {
        let Ok(mut kept) = cell.try_borrow_mut() else {
            return work(&mut make()?);
        };
        let codec = match kept.take() {
            Some(codec) if fits(&codec) => kept.insert(codec),
            _ => kept.insert(make()?),
        };
        work(codec)
    })
}

/// The most of its decompression buffer a kept decoder holds on to between reads; a larger
/// one (a block of a big batch) is let go. Each thread that reads keeps its context (about
/// 100 KiB) and at most this much until it ends: tokio's blocking threads end after 10 s idle.
const KEPT_BUFFER_BYTES: usize = 256 * 1024;

impl BlockDecoder {
    pub fn new() -> std::io::Result<Self> {
        Ok(BlockDecoder {
            decompressor: zstd::bulk::Decompressor::new()?,
            buffer: Vec::new(),
        })
    }

    /// Runs `work` with this thread's decoder, made on the thread's first read and kept for
    /// the next. Why: making a zstd decompression context allocates and initialises about
    /// 100 KiB, and every log read made one; a live worker reading a few events per wake-up
    /// spent 8 % of its CPU there (BENCHMARKS.md, session 17), a Kinesis reader one per
    /// record. A `work` that reads again from inside gets a decoder of its own.
    pub fn with_kept<T, E>(work: impl FnOnce(&mut BlockDecoder) -> Result<T, E>) -> Result<T, E>
    where
        E: From<std::io::Error>,
    {
        with_kept_in(
            &KEPT_DECODER,
            |_| true,
            BlockDecoder::new,
            |decoder| {
                let outcome = work(decoder);
                if decoder.buffer.capacity() > KEPT_BUFFER_BYTES {
                    decoder.buffer = Vec::new();
                }
                outcome
            },
        )
    }

    /// A payload's header and its body's raw (decompressed) bytes.
    fn raw<'p>(&'p mut self, payload: &'p [u8]) -> Result<(BlockHeader, &'p [u8]), DecodeError> {
        let header = read_header(payload)?;
        let body = &payload[HEADER_LEN..];
        let raw: &[u8] = if header.codec == CODEC_ZSTD {
            self.buffer.clear();
            // The capacity bounds what zstd writes, whatever the compressed frame claims.
            self.buffer.reserve(header.raw_len);
            self.decompressor
                .decompress_to_buffer(body, &mut self.buffer)
                .map_err(|error| DecodeError(format!("zstd: {error}")))?;
            &self.buffer
        } else {
            body
        };
        if raw.len() != header.raw_len {
            return Err(DecodeError(format!(
                "block body is {} bytes, its header says {}",
                raw.len(),
                header.raw_len
            )));
        }
        Ok((header, raw))
    }

    /// The events at `indices` of a payload (ascending; a repeat gives the event again), the
    /// others passed over without being built: a lookup by position wants one event of a block
    /// of hundreds, and building every event was 30 % of such a read. An index past the block's
    /// events is an error naming the count.
    pub fn decode_at(
        &mut self,
        payload: &[u8],
        indices: &[u32],
    ) -> Result<Vec<Event>, DecodeError> {
        let (header, raw) = self.raw(payload)?;
        let mut found = Vec::with_capacity(indices.len());
        let mut rest = raw;
        // The index of the event `rest` starts with. Every event before it was passed over or
        // built, and the one just before it was built: it is `found`'s last.
        let mut next = 0u32;
        for &index in indices {
            if index >= header.count {
                return Err(DecodeError(format!(
                    "no event {index} in a block of {}",
                    header.count
                )));
            }
            if index.checked_add(1) == Some(next)
                && let Some(again) = found.last().cloned()
            {
                found.push(again);
                continue;
            }
            if index < next {
                return Err(DecodeError("indices asked out of order".to_owned()));
            }
            while next < index {
                let (_, tail) = postcard::take_from_bytes::<SkippedEvent<'_>>(rest)
                    .map_err(|error| DecodeError(format!("event {next} of the block: {error}")))?;
                rest = tail;
                next += 1;
            }
            let (event, tail) = postcard::take_from_bytes::<Event>(rest)
                .map_err(|error| DecodeError(format!("event {index} of the block: {error}")))?;
            rest = tail;
            next += 1;
            found.push(event);
        }
        Ok(found)
    }

    /// The events of a payload, or why it is not a valid block.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let (header, raw) = self.raw(payload)?;
        let mut events = Vec::with_capacity(header.count as usize);
        let mut rest = raw;
        for _ in 0..header.count {
            let (event, tail) = postcard::take_from_bytes::<Event>(rest).map_err(|error| {
                DecodeError(format!("event {} of the block: {error}", events.len()))
            })?;
            events.push(event);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(DecodeError(format!(
                "{} stray bytes after the block's events",
                rest.len()
            )));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_schemas::EventKind;

    fn event(n: u32) -> Event {
        Event {
            id: uuid::Uuid::from_u128(u128::from(n) << 64 | 0xabc),
            tenant: "acme".into(),
            kind: EventKind::ALL[n as usize % EventKind::ALL.len()],
            name: format!("event-{n}"),
            entity: format!("customer-{}", n % 3),
            timestamp: 1_700_000_000_000 + i64::from(n),
            received_at: 1_700_000_000_500 + i64::from(n),
            properties: format!(r#"{{"plan":"pro","n":{n}}}"#),
            value: (n % 3 == 1).then_some(f64::from(n) * 0.5),
        }
    }

    fn encode(events: &[Event]) -> Vec<u8> {
        let mut raw = Vec::new();
        for event in events {
            encode_event(event, &mut raw).unwrap();
        }
        let count = u32::try_from(events.len()).unwrap();
        BlockEncoder::new(1).unwrap().encode(count, &raw).unwrap()
    }

    #[test]
    fn skipping_reads_what_decoding_reads() {
        let events: Vec<Event> = (0..60).map(event).collect();
        let mut raw = Vec::new();
        for event in &events {
            encode_event(event, &mut raw).unwrap();
        }
        // Passing over one event leaves exactly the bytes decoding it leaves.
        let mut skipping: &[u8] = &raw;
        let mut decoding: &[u8] = &raw;
        for _ in &events {
            skipping = postcard::take_from_bytes::<SkippedEvent<'_>>(skipping)
                .unwrap()
                .1;
            decoding = postcard::take_from_bytes::<Event>(decoding).unwrap().1;
            assert_eq!(skipping.len(), decoding.len());
        }
        assert!(skipping.is_empty());
        let payload = encode(&events);
        let mut decoder = BlockDecoder::new().unwrap();
        let asked = [0, 7, 7, 8, 31, 59];
        let found = decoder.decode_at(&payload, &asked).unwrap();
        let expected: Vec<Event> = asked
            .iter()
            .map(|&at| events[at as usize].clone())
            .collect();
        assert_eq!(found, expected);
        let error = decoder.decode_at(&payload, &[3, 60]).unwrap_err();
        assert!(error.0.contains("no event 60 in a block of 60"), "{error}");
        assert!(decoder.decode_at(&payload, &[9, 2]).is_err());
    }

    #[test]
    fn a_kept_decoder_serves_reads_in_turn_and_within_each_other() {
        let events: Vec<Event> = (0..50).map(event).collect();
        let payload = encode(&events);
        let mut damaged = payload.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        let outer = BlockDecoder::with_kept(|decoder| {
            let first = decoder.decode(&payload)?;
            // A read inside a read gets a decoder of its own, not a panic.
            let inner = BlockDecoder::with_kept(|inner| inner.decode(&payload))?;
            assert_eq!(first, inner);
            Ok::<_, DecodeError>(first)
        })
        .unwrap();
        assert_eq!(outer, events);
        // A failed decode leaves the kept decoder fit for the next one.
        assert!(BlockDecoder::with_kept(|decoder| decoder.decode(&damaged)).is_err());
        let again = BlockDecoder::with_kept(|decoder| decoder.decode(&payload)).unwrap();
        assert_eq!(again, events);
    }

    #[test]
    fn round_trips_events() {
        let events: Vec<Event> = (0..50).map(event).collect();
        let payload = encode(&events);
        assert_eq!(payload[0], FORMAT_VERSION);
        assert_eq!(read_header(&payload).unwrap().count, 50);
        let decoded = BlockDecoder::new().unwrap().decode(&payload).unwrap();
        assert_eq!(decoded, events);
    }

    #[test]
    fn log_encoder_round_trips_small_and_large_blocks() {
        let mut encoder = BlockEncoder::for_log(1).unwrap();
        let mut decoder = BlockDecoder::new().unwrap();
        // Large, small, large again: the context switches level both ways.
        for count in [600u32, 3, 600] {
            let events: Vec<Event> = (0..count).map(event).collect();
            let mut raw = Vec::new();
            for event in &events {
                encode_event(event, &mut raw).unwrap();
            }
            assert_eq!(raw.len() >= LARGE_BLOCK_RAW_BYTES, count == 600);
            let payload = encoder.encode(count, &raw).unwrap();
            assert_eq!(decoder.decode(&payload).unwrap(), events);
            // Same format whatever the level: what the old encoder wrote still reads.
            let old = BlockEncoder::new(1).unwrap().encode(count, &raw).unwrap();
            assert_eq!(old[..HEADER_LEN], payload[..HEADER_LEN]);
            assert_eq!(decoder.decode(&old).unwrap(), events);
        }
    }

    #[test]
    fn log_encoder_keeps_a_level_above_the_default() {
        let encoder = BlockEncoder::for_log(9).unwrap();
        assert_eq!(encoder.large_level, 9);
        let encoder = BlockEncoder::for_log(1).unwrap();
        assert_eq!(encoder.large_level, LARGE_BLOCK_LEVEL);
        assert_eq!(encoder.level, 1);
    }

    #[test]
    fn bound_covers_the_encoding() {
        let mut long = event(7);
        long.properties = "x".repeat(100_000);
        long.timestamp = i64::MIN;
        long.received_at = i64::MAX;
        for sample in [event(1), event(2), long] {
            let mut out = Vec::new();
            encode_event(&sample, &mut out).unwrap();
            assert!(out.len() <= encoded_len_bound(&sample));
        }
    }

    #[test]
    fn stored_codec_is_readable() {
        let events = vec![event(1), event(2)];
        let mut raw = Vec::new();
        for event in &events {
            encode_event(event, &mut raw).unwrap();
        }
        let mut payload = vec![FORMAT_VERSION, CODEC_STORED];
        payload.extend_from_slice(&2u32.to_le_bytes());
        payload.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        payload.extend_from_slice(&raw);
        assert_eq!(
            BlockDecoder::new().unwrap().decode(&payload).unwrap(),
            events
        );
    }

    #[test]
    fn rejects_unknown_version_and_codec() {
        let mut payload = encode(&[event(1)]);
        payload[0] = 9;
        let error = BlockDecoder::new().unwrap().decode(&payload).unwrap_err();
        assert!(error.0.contains("version 9"), "{error}");
        let mut payload = encode(&[event(1)]);
        payload[1] = 7;
        assert!(BlockDecoder::new().unwrap().decode(&payload).is_err());
    }

    #[test]
    fn rejects_damaged_headers_and_bodies() {
        let payload = encode(&[event(1), event(2)]);
        let mut decoder = BlockDecoder::new().unwrap();
        assert!(decoder.decode(&payload[..5]).is_err(), "short header");
        assert!(
            decoder.decode(&payload[..payload.len() - 3]).is_err(),
            "cut body"
        );

        let mut wrong_count = payload.clone();
        wrong_count[2] = 3;
        assert!(decoder.decode(&wrong_count).is_err(), "count too high");
        let mut fewer = payload.clone();
        fewer[2] = 1;
        assert!(decoder.decode(&fewer).is_err(), "stray bytes");

        let mut huge = payload.clone();
        huge[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decoder.decode(&huge).is_err(), "raw length beyond the cap");

        let mut zero = payload;
        zero[2..6].copy_from_slice(&0u32.to_le_bytes());
        assert!(decoder.decode(&zero).is_err(), "empty block");
    }
}
