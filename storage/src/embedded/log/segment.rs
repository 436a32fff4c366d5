//! Segment files and frames: how a shard's byte stream sits on disk, and how a torn tail is cut.
//!
//! A shard is one logical, append-only byte stream split into segment files named by the logical
//! offset of their first byte (`{:020}.seg`), so segment `b` holds stream bytes `b..b + len`
//! and the next segment starts at `b + len`. The stream is a sequence of frames:
//!
//! ```text
//! [u32 LE payload_len][u32 LE crc32c(payload)][payload]
//! ```
//!
//! A frame's logical offset is its record's `Sequence`, so a read seeks straight to it.
//!
//! Invariants:
//! - a frame never spans two segments; segments are contiguous and the first starts at 0;
//! - only the final segment of a shard can be torn (earlier ones were synced when rolled), so
//!   open validates only that one, frame by frame, and cuts it at the first bad frame after
//!   copying the cut bytes to a `.torn-<offset>` side file that is never read again;
//! - the final segment may be longer than its frames: the writer fills the file with zeros ahead
//!   of the frames (see [`write_zeros`]), because on ext4 an `fdatasync` that only overwrites
//!   allocated blocks does not have to write the inode, while one that grows the file does.
//!   Its logical end is therefore where the frames stop, and recovery tells a tail of nothing but
//!   zeros there (kept as is, no side file) from a torn frame (cut as above). A frame cannot
//!   start with zeros (see the next point), so the first zero header is the end;
//! - every segment but the final one is exactly as long as its frames: the writer cuts the zero
//!   tail off when it rolls, before the next segment exists, so a segment's file length is its
//!   logical length and the next segment's name follows from it, as with segments never padded;
//! - a payload is at least a block header long and at most [`MAX_PAYLOAD_LEN`], so a damaged
//!   length can neither pass as an empty frame (crc32c of nothing is 0, like zeroed disk) nor
//!   make a reader allocate gigabytes.

use super::codec;
use crate::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Length and CRC before each payload.
pub const FRAME_HEADER_LEN: usize = 8;
/// The smallest valid payload: a block header.
pub const MIN_PAYLOAD_LEN: usize = codec::HEADER_LEN;
/// The largest valid payload: a full block that zstd could not shrink, plus zstd's worst-case
/// expansion (under 1/128 of the input) and the header.
pub const MAX_PAYLOAD_LEN: usize =
    codec::MAX_BLOCK_RAW_BYTES + codec::MAX_BLOCK_RAW_BYTES / 128 + 1024;
/// How much a reader fetches at once, so small frames do not cost a system call each.
const READ_AHEAD: usize = 64 * 1024;

/// Bytes of zeros written (or scanned) per system call.
const ZERO_CHUNK: usize = 1024 * 1024;

const SEGMENT_SUFFIX: &str = ".seg";

/// The file name of the segment starting at logical offset `base`.
pub fn segment_file_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

/// The base offset of a segment file name, if it is one (exactly 20 digits and `.seg`).
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The directory name of shard `index`.
pub fn shard_dir_name(index: u32) -> String {
    format!("shard-{index:03}")
}

/// Appends one frame holding `payload` to `out`.
pub fn append_frame(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!((MIN_PAYLOAD_LEN..=MAX_PAYLOAD_LEN).contains(&payload.len()));
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What the bytes at a frame boundary hold.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameCheck<'a> {
    /// A whole frame whose CRC matches; `len` is the frame's total length.
    Complete { payload: &'a [u8], len: usize },
    /// The bytes end before the frame does (a torn write, or more to read).
    Incomplete,
    /// The header or CRC is wrong.
    Invalid(&'static str),
}

/// The payload length announced by a frame header, if plausible.
fn payload_len(header: [u8; FRAME_HEADER_LEN]) -> Option<usize> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    (MIN_PAYLOAD_LEN..=MAX_PAYLOAD_LEN)
        .contains(&len)
        .then_some(len)
}

/// Checks the frame at the start of `bytes`.
pub fn check_frame(bytes: &[u8]) -> FrameCheck<'_> {
    let Some(header) = bytes.first_chunk::<FRAME_HEADER_LEN>() else {
        return FrameCheck::Incomplete;
    };
    let Some(len) = payload_len(*header) else {
        return FrameCheck::Invalid("implausible payload length");
    };
    let Some(payload) = bytes.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return FrameCheck::Incomplete;
    };
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if crc32c::crc32c(payload) != crc {
        return FrameCheck::Invalid("crc32c mismatch");
    }
    FrameCheck::Complete {
        payload,
        len: FRAME_HEADER_LEN + len,
    }
}

/// One step of a [`FrameReader`].
#[derive(Debug)]
pub enum Step<'a> {
    /// A valid frame at in-file `offset`.
    Frame { offset: u64, payload: &'a [u8] },
    /// The range ended exactly at a frame boundary.
    End,
    /// The frame at in-file `offset` is incomplete or invalid.
    Bad { offset: u64, reason: &'static str },
}

/// Walks the frames of one segment file from a frame boundary up to an in-file `end`, reading
/// ahead in chunks with positional reads (no shared cursor, so readers and the writer can use
/// one file handle concurrently).
pub struct FrameReader<'f> {
    file: &'f File,
    next: u64,
    end: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
}

impl<'f> FrameReader<'f> {
    /// Reads frames of `file` from in-file offset `start` (a frame boundary) to `end`.
    pub fn new(file: &'f File, start: u64, end: u64) -> Self {
        FrameReader {
            file,
            next: start,
            end,
            buffer: Vec::new(),
            buffer_start: start,
        }
    }

    /// The in-file offset of the next frame.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next frame, or where and why the walk stops.
    pub fn step(&mut self) -> std::io::Result<Step<'_>> {
        let offset = self.next;
        let available = self.end.saturating_sub(offset);
        if available == 0 {
            return Ok(Step::End);
        }
        if available < FRAME_HEADER_LEN as u64 {
            return Ok(Step::Bad {
                offset,
                reason: "incomplete frame header",
            });
        }
        let header: [u8; FRAME_HEADER_LEN] = {
            let bytes = self.fill(offset, FRAME_HEADER_LEN)?;
            [
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
            ]
        };
        let Some(len) = payload_len(header) else {
            return Ok(Step::Bad {
                offset,
                reason: "implausible payload length",
            });
        };
        let frame_len = FRAME_HEADER_LEN + len;
        if available < frame_len as u64 {
            return Ok(Step::Bad {
                offset,
                reason: "incomplete frame",
            });
        }
        self.fill(offset, frame_len)?;
        let start = (offset - self.buffer_start) as usize;
        match check_frame(&self.buffer[start..start + frame_len]) {
            FrameCheck::Complete { payload, len } => {
                self.next = offset + len as u64;
                Ok(Step::Frame { offset, payload })
            }
            FrameCheck::Invalid(reason) => Ok(Step::Bad { offset, reason }),
            FrameCheck::Incomplete => Ok(Step::Bad {
                offset,
                reason: "incomplete frame",
            }),
        }
    }

    /// Makes `self.buffer` hold in-file bytes `offset..offset + len` (within `end`), reading
    /// ahead up to [`READ_AHEAD`] bytes; returns them.
    fn fill(&mut self, offset: u64, len: usize) -> std::io::Result<&[u8]> {
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if offset < self.buffer_start || offset + len as u64 > buffer_end {
            let wanted = len.max(READ_AHEAD) as u64;
            let size = wanted.min(self.end - offset) as usize;
            self.buffer.resize(size, 0);
            self.file.read_exact_at(&mut self.buffer, offset)?;
            self.buffer_start = offset;
        }
        let start = (offset - self.buffer_start) as usize;
        Ok(&self.buffer[start..start + len])
    }
}

/// A segment file found on disk.
#[derive(Debug)]
pub struct SegmentFile {
    pub base: u64,
    pub path: PathBuf,
    pub len: u64,
}

/// The segments of a shard directory, in order, checked to be contiguous from offset 0. Side
/// files (`.torn-…`) and anything else not named like a segment are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(base) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        segments.push(SegmentFile {
            base,
            path: entry.path(),
            len: entry.metadata()?.len(),
        });
    }
    segments.sort_by_key(|segment| segment.base);
    let mut expected = 0u64;
    for segment in &segments {
        if segment.base != expected {
            return Err(Error::Corrupt {
                location: segment.path.display().to_string(),
                detail: format!(
                    "segment starts at offset {} but the previous one ends at {expected}",
                    segment.base
                ),
            });
        }
        expected = segment.base + segment.len;
    }
    Ok(segments)
}

/// Where the final segment of a shard ends, as recovery found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// In-file end of the last good frame: the segment's logical length.
    pub logical_len: u64,
    /// Length of the file, at least `logical_len`: the bytes past `logical_len` are zeros, ready
    /// to be overwritten by the next frames.
    pub file_len: u64,
}

/// Validates the final segment of a shard frame by frame, up to the last good frame. When only
/// zeros follow it (space the writer zeroed ahead of its frames), that is a clean end and the
/// file is left alone. Anything else after it is a torn or damaged frame: the cut bytes (less
/// any zeros after the last non-zero byte) are first copied to
/// `<segment>.torn-<logical offset>` and synced, then the segment is truncated and synced, then
/// the directory is synced.
pub fn recover_final(shard: u32, segment: &SegmentFile) -> Result<Recovered> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment.path)?;
    let len = file.metadata()?.len();
    let mut reader = FrameReader::new(&file, 0, len);
    let (cut, reason) = loop {
        match reader.step()? {
            Step::Frame { offset, payload } => {
                // A frame that passes its CRC but is not a block this build reads was written
                // by something else (a newer build): refuse rather than cut it off.
                codec::read_header(payload).map_err(|error| Error::Corrupt {
                    location: format!("{} at offset {offset}", segment.path.display()),
                    detail: error.to_string(),
                })?;
            }
            Step::End => {
                return Ok(Recovered {
                    logical_len: len,
                    file_len: len,
                });
            }
            Step::Bad { offset, reason } => break (offset, reason),
        }
    };
    let Some(data_end) = end_of_non_zero(&file, cut, len)? else {
        return Ok(Recovered {
            logical_len: cut,
            file_len: len,
        });
    };
    let torn_bytes = data_end - cut;
    let logical = segment.base + cut;
    let side_path = torn_side_path(&segment.path, logical);
    copy_range(&file, cut, data_end, &side_path)?;
    file.set_len(cut)?;
    file.sync_all()?;
    if let Some(dir) = segment.path.parent() {
        super::meta::sync_dir(dir)?;
    }
    tracing::warn!(
        shard,
        offset = logical,
        bytes = torn_bytes,
        reason,
        side_file = %side_path.display(),
        "cut a torn tail off the event log"
    );
    Ok(Recovered {
        logical_len: cut,
        file_len: cut,
    })
}

/// The in-file end of the last non-zero byte in `start..end`, or `None` when every byte there
/// is zero.
fn end_of_non_zero(file: &File, start: u64, end: u64) -> std::io::Result<Option<u64>> {
    let mut buffer = vec![0u8; ZERO_CHUNK.min((end - start) as usize)];
    let mut last = None;
    let mut at = start;
    while at < end {
        let chunk = &mut buffer[..ZERO_CHUNK.min((end - at) as usize)];
        file.read_exact_at(chunk, at)?;
        if let Some(index) = chunk.iter().rposition(|&byte| byte != 0) {
            last = Some(at + index as u64 + 1);
        }
        at += chunk.len() as u64;
    }
    Ok(last)
}

/// Writes zeros over in-file bytes `from..to` of `file` (not synced: the next sync of the
/// file covers them, together with the frames written below them).
pub fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK.min(to.saturating_sub(from) as usize)];
    let mut at = from;
    while at < to {
        let now = ZERO_CHUNK.min((to - at) as usize);
        file.write_all_at(&zeros[..now], at)?;
        at += now as u64;
    }
    Ok(())
}

/// `<segment path>.torn-<logical offset, 20 digits>`.
pub fn torn_side_path(segment: &Path, logical_offset: u64) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(format!(".torn-{logical_offset:020}"));
    PathBuf::from(name)
}

fn copy_range(file: &File, from: u64, to: u64, side_path: &Path) -> std::io::Result<()> {
    let mut source = file.try_clone()?;
    source.seek(SeekFrom::Start(from))?;
    // Truncate rather than refuse an existing side file: it can only be the same bytes, left by
    // a recovery that crashed before it cut the segment.
    let mut side = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(side_path)?;
    std::io::copy(&mut source.take(to - from), &mut side)?;
    side.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(fill: u8, len: usize) -> Vec<u8> {
        vec![fill; len]
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(4096), "00000000000000004096.seg");
        assert_eq!(parse_segment_name("00000000000000004096.seg"), Some(4096));
        assert_eq!(
            parse_segment_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_name("4096.seg"), None);
        assert_eq!(parse_segment_name("00000000000000004096.seg.torn-5"), None);
        assert_eq!(parse_segment_name("0000000000000000409x.seg"), None);
        assert_eq!(shard_dir_name(7), "shard-007");
    }

    #[test]
    fn frames_parse_back_in_sequence() {
        let mut stream = Vec::new();
        append_frame(&mut stream, &payload(1, 20));
        append_frame(&mut stream, &payload(2, 30));
        let FrameCheck::Complete {
            payload: first,
            len,
        } = check_frame(&stream)
        else {
            panic!("first frame")
        };
        assert_eq!((first, len), (&[1u8; 20][..], 28));
        let FrameCheck::Complete {
            payload: second, ..
        } = check_frame(&stream[len..])
        else {
            panic!("second frame")
        };
        assert_eq!(second, &[2u8; 30][..]);
    }

    #[test]
    fn torn_and_damaged_frames_are_detected() {
        let mut stream = Vec::new();
        append_frame(&mut stream, &payload(1, 20));
        for cut in 0..stream.len() {
            assert_eq!(
                check_frame(&stream[..cut]),
                FrameCheck::Incomplete,
                "cut at {cut}"
            );
        }
        let mut flipped = stream.clone();
        flipped[12] ^= 0x40;
        assert_eq!(
            check_frame(&flipped),
            FrameCheck::Invalid("crc32c mismatch")
        );
        let zeroed = vec![0u8; 64];
        assert_eq!(
            check_frame(&zeroed),
            FrameCheck::Invalid("implausible payload length"),
            "zero-filled disk is not an empty frame"
        );
        let mut huge = stream;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            check_frame(&huge),
            FrameCheck::Invalid("implausible payload length")
        );
    }

    #[test]
    fn side_file_name_carries_the_logical_offset() {
        let path = torn_side_path(Path::new("/log/shard-000/00000000000000001000.seg"), 1234);
        assert_eq!(
            path,
            Path::new("/log/shard-000/00000000000000001000.seg.torn-00000000000000001234")
        );
    }
}
