//! Reading a log directory back: validating every segment and record, and telling a torn tail from corruption.
//!
//! The rules, in order:
//! 1. Segment indices must be consecutive (a missing middle segment is corruption).
//! 2. A segment header must be valid; the one exception is a last segment
//!    whose body is all zeros, left by a crash while it was being created,
//!    which is discarded.
//! 3. Every frame is checked (length, CRC32C, batch numbers) and decoded.
//! 4. Where the valid frames of a segment stop, the rest of the segment must
//!    be zeros, unless this is the *tail*: no later segment holds data. In
//!    the tail, bytes after the stop are a torn tail (dropped and reported)
//!    unless a valid frame after the damage records that the damaged write
//!    had been synced, which makes it corruption.
//!
//! A single flipped byte in the very last synced write, with nothing after
//! it, looks exactly like a torn write and is treated as one.

use std::fmt;
use std::path::{Path, PathBuf};

use synod_wire::{LogRecord, Slot, Wire};

use crate::error::InspectError;
use crate::format::{self, Bad, Frame, HEADER_LEN};
use crate::fs::{Fs, RealFs};

/// A torn tail found and cut off at open: a write that never became durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Where the valid records end; everything from here was dropped.
    pub offset: u64,
    /// How many bytes (up to the last non-zero byte) were dropped.
    pub bytes_dropped: u64,
    /// How many intact records after the damage were dropped with it.
    pub records_dropped: usize,
}

/// What is wrong with a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The tail was torn by a crash; open cuts it off.
    TornTail(TornTail),
    /// The log is damaged; open refuses it.
    Corrupt {
        /// The damaged segment file.
        file: PathBuf,
        /// The byte offset of the damage.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TornTail(t) => write!(
                f,
                "torn tail in {} at byte {}: {} bytes, {} intact records after the damage",
                t.file.display(),
                t.offset,
                t.bytes_dropped,
                t.records_dropped
            ),
            Problem::Corrupt { file, offset, reason } => {
                write!(f, "corrupt: {} at byte {offset}: {reason}", file.display())
            }
        }
    }
}

/// One segment as recovery read it.
#[derive(Debug)]
pub(crate) struct Seg {
    pub(crate) index: u64,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// The decoded records with their frames, up to where the valid data stops.
    pub(crate) records: Vec<(Frame, LogRecord)>,
    /// Where the valid data stops (after a torn-tail cut, where writing resumes).
    pub(crate) used: u64,
}

/// A log directory as recovery read it.
#[derive(Debug)]
pub(crate) struct Analysis {
    pub(crate) segments: Vec<Seg>,
    /// Trailing segments whose creation a crash interrupted: no valid header, nothing but zeros.
    pub(crate) discard: Vec<PathBuf>,
    /// The first problem found.
    pub(crate) problem: Option<Problem>,
}

/// Reads and validates every segment in `dir`.
pub(crate) fn analyze(fs: &dyn Fs, dir: &Path) -> Result<Analysis, InspectError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| InspectError { op, path, source }
    };
    let mut names: Vec<(u64, String)> = fs
        .list(dir)
        .map_err(io("list", dir))?
        .into_iter()
        .filter_map(|n| format::parse_segment_name(&n).map(|i| (i, n)))
        .collect();
    names.sort();

    let mut out = Analysis { segments: Vec::new(), discard: Vec::new(), problem: None };
    let mut images = Vec::new();
    for (i, (index, name)) in names.iter().enumerate() {
        let path = dir.join(name);
        let file = fs.open(&path).map_err(io("open", &path))?;
        let size = file.size().map_err(io("size", &path))?;
        let len = usize::try_from(size).map_err(|_| InspectError {
            op: "read",
            path: path.clone(),
            source: std::io::Error::other("segment too large for memory"),
        })?;
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, 0).map_err(io("read", &path))?;
        let corrupt = |offset: u64, reason: String| Problem::Corrupt { file: path.clone(), offset, reason };
        if i > 0 && names[i - 1].0 + 1 != *index {
            out.problem.get_or_insert(corrupt(0, format!("segment {} is missing", names[i - 1].0 + 1)));
        }
        match format::parse_header(&bytes) {
            Ok(named) if named == *index => images.push((*index, path, bytes)),
            Ok(named) => {
                out.problem.get_or_insert(corrupt(16, format!("header names segment {named}")));
                images.push((*index, path, bytes));
            }
            Err(_) if i + 1 == names.len() && bytes.iter().skip(HEADER_LEN).all(|&b| b == 0) => {
                out.discard.push(path);
            }
            Err(reason) => {
                out.problem.get_or_insert(corrupt(0, reason.to_owned()));
                images.push((*index, path, bytes));
            }
        }
    }

    let mut last_batch = 0;
    let mut scans = Vec::new();
    for (_, _, bytes) in &images {
        let scan = format::scan(bytes, last_batch);
        if let Some(f) = scan.frames.last() {
            last_batch = f.batch;
        }
        scans.push(scan);
    }
    // The tail: the last segment with anything in it after its header.
    let tail = scans.iter().rposition(|s| s.nonzero_end > HEADER_LEN).unwrap_or(0);

    let mut last_batch = 0;
    for (i, ((index, path, bytes), scan)) in images.into_iter().zip(scans).enumerate() {
        let corrupt = |offset: usize, reason: String| Problem::Corrupt {
            file: path.clone(),
            offset: offset as u64,
            reason,
        };
        let before = last_batch;
        if let Some(f) = scan.frames.last() {
            last_batch = f.batch;
        }
        let clean = scan.why == Bad::End && scan.nonzero_end <= scan.stop;
        let mut used = scan.stop;
        if !clean {
            let reason = match scan.why {
                Bad::End => "data after the end of the log".to_owned(),
                Bad::Damaged(why) => why.to_owned(),
            };
            let damage_at = match scan.why {
                Bad::End => scan.stop + bytes[scan.stop..].iter().position(|&b| b != 0).unwrap_or(0),
                Bad::Damaged(_) => scan.stop,
            };
            if i != tail {
                out.problem.get_or_insert(corrupt(damage_at, format!("{reason}, with more log after it")));
            } else {
                let b_last = scan.frames.last().map_or(before, |f| f.batch);
                let later = format::frames_after(&bytes, scan.stop + 1, b_last);
                let damaged_batch = if later.iter().any(|f| f.batch == b_last) { b_last } else { b_last + 1 };
                if let Some(proof) = later.iter().find(|f| f.synced >= damaged_batch) {
                    out.problem.get_or_insert(corrupt(
                        damage_at,
                        format!(
                            "{reason}, in a write that the record at byte {} (batch {}) says was synced",
                            proof.offset, proof.batch
                        ),
                    ));
                } else {
                    out.problem.get_or_insert(Problem::TornTail(TornTail {
                        file: path.clone(),
                        offset: scan.stop as u64,
                        bytes_dropped: (scan.nonzero_end - scan.stop) as u64,
                        records_dropped: later.len(),
                    }));
                }
            }
        }
        let mut records = Vec::with_capacity(scan.frames.len());
        for frame in scan.frames {
            match LogRecord::decode(&bytes[frame.payload.clone()]) {
                Ok(record) => records.push((frame, record)),
                Err(e) => {
                    // A record whose checksum holds but that does not decode is corruption, not a
                    // torn write: it comes before any torn tail this segment has, so it is the
                    // problem (found by the `wal` fuzz target: the first open cut the tail and
                    // went on over the record, the next one refused it).
                    let undecodable = corrupt(frame.offset as usize, format!("undecodable record: {e}"));
                    match out.problem {
                        None | Some(Problem::TornTail(_)) => out.problem = Some(undecodable),
                        Some(Problem::Corrupt { .. }) => {}
                    }
                    used = frame.offset as usize;
                    break;
                }
            }
        }
        out.segments.push(Seg { index, path, size: bytes.len() as u64, records, used: used as u64 });
    }
    Ok(out)
}

/// What [`inspect`] found in a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Every segment, oldest first.
    pub segments: Vec<SegmentReport>,
    /// Trailing segment files left incomplete by a crash during creation (open removes them).
    pub incomplete: Vec<PathBuf>,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
}

/// One segment in an [`Inspection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The segment file.
    pub file: PathBuf,
    /// Its index.
    pub index: u64,
    /// The file's size in bytes (segments are preallocated).
    pub size: u64,
    /// The bytes holding valid records, header included.
    pub used: u64,
    /// Valid records, by kind.
    pub counts: RecordCounts,
    /// The lowest and highest slot of its `Accept` and `Learn` records.
    pub slots: Option<(Slot, Slot)>,
    /// The highest `upto` of its `Snapshot` records: every slot below it is in a snapshot file.
    pub snapshot_upto: Option<Slot>,
}

/// Record counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// `Promise` records.
    pub promise: usize,
    /// `Accept` records.
    pub accept: usize,
    /// `Learn` records.
    pub learn: usize,
    /// `Commit` records.
    pub commit: usize,
    /// `Snapshot` records.
    pub snapshot: usize,
    /// `Rejoin` records.
    pub rejoin: usize,
}

impl RecordCounts {
    /// All records.
    pub fn total(&self) -> usize {
        self.promise + self.accept + self.learn + self.commit + self.snapshot + self.rejoin
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<34} {:>10} {:>10} {:>8} {:>21} {:>10}",
            "segment", "size", "used", "records", "slots", "snapshot"
        )?;
        for s in &self.segments {
            let name = s.file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
            let slots = s.slots.map(|(a, b)| format!("{}..={}", a.0, b.0)).unwrap_or_else(|| "-".into());
            let snapshot = s.snapshot_upto.map_or_else(|| "-".into(), |u| format!("<{}", u.0));
            writeln!(
                f,
                "{name:<34} {:>10} {:>10} {:>8} {slots:>21} {snapshot:>10}",
                s.size,
                s.used,
                s.counts.total()
            )?;
        }
        if let Some(upto) = self.segments.iter().filter_map(|s| s.snapshot_upto).max() {
            writeln!(
                f,
                "the log's newest snapshot record: every slot below {} is in snapshot-{:020}.snap",
                upto.0, upto.0
            )?;
        }
        for p in &self.incomplete {
            writeln!(f, "incomplete segment (crash during creation): {}", p.display())?;
        }
        match &self.problem {
            Some(p) => writeln!(f, "{p}"),
            None => writeln!(f, "clean"),
        }
    }
}

/// Reads every segment of the log in `dir` without changing anything, and reports what it found.
///
/// This is what `synod log inspect DIR` prints (through [`Inspection`]'s `Display`).
pub fn inspect(dir: impl AsRef<Path>) -> Result<Inspection, InspectError> {
    inspect_with(&RealFs, dir.as_ref())
}

/// [`inspect`] through any [`Fs`].
pub fn inspect_with(fs: &dyn Fs, dir: &Path) -> Result<Inspection, InspectError> {
    let analysis = analyze(fs, dir)?;
    let segments = analysis
        .segments
        .iter()
        .map(|s| {
            let mut counts = RecordCounts::default();
            let mut slots: Option<(Slot, Slot)> = None;
            let mut snapshot_upto: Option<Slot> = None;
            for (_, record) in &s.records {
                match record {
                    LogRecord::Promise { .. } => counts.promise += 1,
                    LogRecord::Accept { slot, .. } | LogRecord::Learn { slot, .. } => {
                        if matches!(record, LogRecord::Accept { .. }) {
                            counts.accept += 1;
                        } else {
                            counts.learn += 1;
                        }
                        slots = Some(slots.map_or((*slot, *slot), |(a, b)| (a.min(*slot), b.max(*slot))));
                    }
                    LogRecord::Commit { .. } => counts.commit += 1,
                    LogRecord::Snapshot { upto } => {
                        counts.snapshot += 1;
                        snapshot_upto = snapshot_upto.max(Some(*upto));
                    }
                    LogRecord::Rejoin { .. } => counts.rejoin += 1,
                }
            }
            SegmentReport {
                file: s.path.clone(),
                index: s.index,
                size: s.size,
                used: s.used,
                counts,
                slots,
                snapshot_upto,
            }
        })
        .collect();
    Ok(Inspection { segments, incomplete: analysis.discard, problem: analysis.problem })
}
