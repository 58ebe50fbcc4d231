//! The on-disk format: segment names and headers, record frames, and the scan that validates them.
//!
//! A segment file `segment-<index, 20 digits>.wal` is preallocated with zeros
//! and starts with a 32-byte header:
//!
//! ```text
//! magic "SYNODWAL" | version u32 | reserved u32 | index u64 | crc32c of the previous 24 bytes u32 | zero u32
//! ```
//!
//! Records follow back to back, each in a frame (integers little-endian):
//!
//! ```text
//! len u32 | crc u32 | batch u64 | synced u64 | payload (len bytes: an encoded synod_wire::LogRecord)
//! ```
//!
//! `crc` is CRC32C over the payload followed by the 20 bytes `len | batch | synced`.
//! `batch` numbers the write (one group commit) the frame belongs to, from 1;
//! `synced` is the last batch known durable when the frame was written. The
//! data ends at the first all-zero frame header. Recovery uses `batch` and
//! `synced` to tell a torn tail (damage in writes that were never synced)
//! from corruption (damage before a write that a later frame says was synced).

use std::ops::Range;

use synod_wire::MAX_FRAME_LEN;

/// The segment header's length in bytes.
pub(crate) const HEADER_LEN: usize = 32;
/// A frame header's length in bytes.
pub(crate) const FRAME_HEADER_LEN: usize = 24;
const MAGIC: &[u8; 8] = b"SYNODWAL";
/// Version 2: log records carry ballots with their configuration's epoch and
/// values that may be stop signs (membership changes); version 1 logs, from
/// before, are refused with "unsupported segment version".
const VERSION: u32 = 2;
/// A frame claiming a batch this far beyond the last good one is not believed.
const MAX_BATCH_JUMP: u64 = 1 << 32;

/// The file name of segment `index`.
pub(crate) fn segment_name(index: u64) -> String {
    format!("segment-{index:020}.wal")
}

/// The index of the segment named `name`, if it is a segment name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of segment `index`.
pub(crate) fn segment_header(index: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header, returning the segment index it names.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<u64, &'static str> {
    let h = bytes.get(..HEADER_LEN).ok_or("file shorter than a segment header")?;
    if &h[..8] != MAGIC {
        return Err("bad segment magic");
    }
    if crc32c::crc32c(&h[..24]) != u32_at(h, 24) {
        return Err("segment header checksum mismatch");
    }
    if u32_at(h, 8) != VERSION {
        return Err("unsupported segment version");
    }
    Ok(u64_at(h, 16))
}

/// A record payload encoded off the log thread, with the CRC of its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) crc: u32,
}

impl Encoded {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        let crc = crc32c::crc32c(&bytes);
        Encoded { bytes, crc }
    }

    /// The frame's length on disk.
    pub(crate) fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.bytes.len()
    }
}

/// Appends the frame of `record` in batch `batch` to `out`.
pub(crate) fn put_frame(out: &mut Vec<u8>, record: &Encoded, batch: u64, synced: u64) {
    let len = u32::try_from(record.bytes.len()).expect("payloads are at most MAX_FRAME_LEN");
    let mut tail = [0u8; 20];
    tail[..4].copy_from_slice(&len.to_le_bytes());
    tail[4..12].copy_from_slice(&batch.to_le_bytes());
    tail[12..20].copy_from_slice(&synced.to_le_bytes());
    let crc = crc32c::crc32c_append(record.crc, &tail);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&tail[4..]);
    out.extend_from_slice(&record.bytes);
}

/// A frame that passed its checks.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) offset: u64,
    pub(crate) batch: u64,
    pub(crate) synced: u64,
    pub(crate) payload: Range<usize>,
}

impl Frame {
    pub(crate) fn end(&self) -> usize {
        self.payload.end
    }
}

/// Why the frame at an offset is not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bad {
    /// The frame header is all zeros: the end of the data.
    End,
    /// Something else; the text says what.
    Damaged(&'static str),
}

/// Reads the frame at `pos` of a segment image, checking its length, CRC and batch numbers.
///
/// `batches` holds the batch numbers the frame may carry.
pub(crate) fn frame_at(buf: &[u8], pos: usize, batches: Range<u64>) -> Result<Frame, Bad> {
    let Some(h) = buf.get(pos..pos.saturating_add(FRAME_HEADER_LEN)) else {
        return if buf[pos.min(buf.len())..].iter().all(|&b| b == 0) {
            Err(Bad::End)
        } else {
            Err(Bad::Damaged("frame header cut short"))
        };
    };
    if h.iter().all(|&b| b == 0) {
        return Err(Bad::End);
    }
    let len = u32_at(h, 0) as usize;
    let crc = u32_at(h, 4);
    let batch = u64_at(h, 8);
    let synced = u64_at(h, 16);
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(Bad::Damaged("impossible record length"));
    }
    let start = pos + FRAME_HEADER_LEN;
    let Some(payload) = buf.get(start..start + len) else {
        return Err(Bad::Damaged("record runs past the end of the segment"));
    };
    if synced >= batch || !batches.contains(&batch) {
        return Err(Bad::Damaged("impossible batch number"));
    }
    let mut tail = [0u8; 20];
    tail[..4].copy_from_slice(&h[..4]);
    tail[4..].copy_from_slice(&h[8..]);
    if crc32c::crc32c_append(crc32c::crc32c(payload), &tail) != crc {
        return Err(Bad::Damaged("record checksum mismatch"));
    }
    Ok(Frame { offset: pos as u64, batch, synced, payload: start..start + len })
}

/// The result of reading one segment image from its header on.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The valid frames before `stop`, in order.
    pub(crate) frames: Vec<Frame>,
    /// Where the valid frames stop.
    pub(crate) stop: usize,
    /// Why they stop there (`Bad::End` for zeros).
    pub(crate) why: Bad,
    /// One past the last non-zero byte of the image.
    pub(crate) nonzero_end: usize,
}

/// Reads every frame of a segment image, stopping at zeros or the first bad frame.
///
/// `last_batch` is the batch of the last good frame of the previous segments.
pub(crate) fn scan(buf: &[u8], mut last_batch: u64) -> Scan {
    let mut frames = Vec::new();
    let mut pos = HEADER_LEN;
    let why = loop {
        match frame_at(buf, pos, plausible(last_batch)) {
            Ok(frame) => {
                last_batch = frame.batch;
                pos = frame.end();
                frames.push(frame);
            }
            Err(bad) => break bad,
        }
    };
    let nonzero_end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Scan { frames, stop: pos, why, nonzero_end }
}

/// Every valid frame at or after `from`, found by trying each offset that could start one.
///
/// Used only past damage, to learn whether anything after it was written (and synced) later.
pub(crate) fn frames_after(buf: &[u8], from: usize, last_batch: u64) -> Vec<Frame> {
    let mut found = Vec::new();
    let mut pos = from;
    while pos < buf.len() {
        // A frame's length is not zero, so one of its first four bytes is not:
        // skip runs of zeros quickly.
        let Some(next) = buf[pos..].iter().position(|&b| b != 0) else { break };
        pos = (pos + next).saturating_sub(3).max(pos);
        match frame_at(buf, pos, plausible(last_batch)) {
            Ok(frame) => {
                pos = frame.end();
                found.push(frame);
            }
            Err(_) => pos += 1,
        }
    }
    found
}

/// The batch numbers a frame after one of batch `last` may carry (batch 0 is never used).
fn plausible(last: u64) -> Range<u64> {
    last.max(1)..last.saturating_add(MAX_BATCH_JUMP)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(frames: &[(&[u8], u64, u64)]) -> Vec<u8> {
        let mut buf = segment_header(7).to_vec();
        for (payload, batch, synced) in frames {
            put_frame(&mut buf, &Encoded::new(payload.to_vec()), *batch, *synced);
        }
        buf.resize(buf.len() + 100, 0);
        buf
    }

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("segment-42.wal"), None);
        assert_eq!(parse_segment_name("notes.txt"), None);
    }

    #[test]
    fn header_round_trips_and_detects_damage() {
        let mut h = segment_header(9);
        assert_eq!(parse_header(&h), Ok(9));
        h[17] ^= 1;
        assert!(parse_header(&h).is_err());
        assert!(parse_header(&h[..10]).is_err());
    }

    #[test]
    fn scan_reads_frames_until_zeros() {
        let buf = image(&[(b"one", 1, 0), (b"two", 1, 0), (b"three", 2, 1)]);
        let s = scan(&buf, 0);
        assert_eq!(s.frames.len(), 3);
        assert_eq!(s.why, Bad::End);
        assert_eq!(&buf[s.frames[2].payload.clone()], b"three");
        assert_eq!(s.nonzero_end, s.stop);
    }

    #[test]
    fn a_flipped_byte_stops_the_scan_and_later_frames_are_found() {
        let mut buf = image(&[(b"one", 1, 0), (b"two", 2, 1), (b"three", 3, 2)]);
        let second = HEADER_LEN + FRAME_HEADER_LEN + 3;
        buf[second + FRAME_HEADER_LEN + 1] ^= 0x40;
        let s = scan(&buf, 0);
        assert_eq!(s.frames.len(), 1);
        assert_eq!(s.stop, second);
        assert!(matches!(s.why, Bad::Damaged(_)));
        let later = frames_after(&buf, s.stop + 1, 1);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].batch, 3);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 12345u64;
        for len in 0..400 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            let _ = parse_header(&buf);
            if buf.len() >= HEADER_LEN {
                let s = scan(&buf, 0);
                assert!(s.stop <= buf.len());
                let _ = frames_after(&buf, HEADER_LEN, 0);
            }
        }
    }
}
