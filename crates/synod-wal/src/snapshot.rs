//! Snapshot files: a state machine's image up to a slot, written atomically and CRC-checked.
//!
//! The replica does not write or read snapshots yet (decision 0005); this is
//! the file it will use.
//!
//! # Format (version 1, little-endian)
//!
//! | offset | size | field                                              |
//! |-------:|-----:|----------------------------------------------------|
//! | 0      | 8    | magic, `SYNODSNP`                                  |
//! | 8      | 4    | format version, u32 (1)                            |
//! | 12     | 8    | `upto`, u64: every slot below it is in the image   |
//! | 20     | 8    | body length `n`, u64                               |
//! | 28     | n    | body (the state machine's bytes, opaque here)      |
//! | 28 + n | 4    | CRC32C of bytes `0 .. 28 + n` (header and body)    |
//!
//! A file is named `snapshot-<upto, 20 digits>.snap`; the slot in its name
//! must equal the one in its header.
//!
//! # Writing
//!
//! [`SnapshotWriter`] streams the body into `snapshot-<upto>.tmp` through
//! [`std::io::Write`]; [`SnapshotWriter::finish`] writes the header and
//! trailer, fsyncs the file, renames it to its final name, fsyncs the
//! directory and only then removes every older snapshot: the directory keeps
//! the newest snapshot only (an older one is of no use once the log has been
//! truncated to the newer one). A crash at any point leaves the old snapshot
//! or the new one, complete. Dropping an unfinished writer removes its
//! temporary file; a temporary file left by a crash is ignored by readers and
//! replaced by the next writer for the same slot.
//!
//! # Reading
//!
//! [`newest_snapshot`] returns the newest snapshot whose every byte checks,
//! skipping (and reporting) damaged newer ones; [`SnapshotReader`] streams a
//! body through [`std::io::Read`] and fails, with a [`SnapshotError`] naming
//! the file, on a short file, bad magic, unknown version, wrong length or a
//! checksum mismatch once the body has been read to its end. [`inspect_snapshot`]
//! reports a file's header and whether its checksum holds.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{Fs, FsFile, RealFs};

/// The first eight bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SYNODSNP";
/// The format version this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Bytes before the body: magic, version, `upto`, body length.
pub const SNAPSHOT_HEADER_LEN: u64 = 28;
/// Bytes after the body: the CRC32C.
pub const SNAPSHOT_TRAILER_LEN: u64 = 4;

/// A snapshot being written is synced every this many body bytes, so that
/// its dirty pages never pile up in front of the log's fsyncs.
const SYNC_EVERY: u64 = 1 << 20;

/// The body is written and read in pieces of at most this size.
const CHUNK: usize = 64 << 10;

/// The final file name of the snapshot covering every slot below `upto`.
pub fn snapshot_file_name(upto: u64) -> String {
    format!("snapshot-{upto:020}.snap")
}

fn temp_file_name(upto: u64) -> String {
    format!("snapshot-{upto}.tmp")
}

/// The slot in a final snapshot file name, if `name` is one.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What is wrong with a damaged snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotDamage {
    /// The file ends before its header, body and trailer do.
    #[error("the file is {len} bytes, too short for {needed}")]
    Short {
        /// The file's length.
        len: u64,
        /// The length its header calls for (or the header's own length).
        needed: u64,
    },
    /// The file goes on after its trailer.
    #[error("the file is {len} bytes, {extra} more than its header calls for")]
    Long {
        /// The file's length.
        len: u64,
        /// Bytes past the trailer.
        extra: u64,
    },
    /// The first eight bytes are not `SYNODSNP`.
    #[error("bad magic bytes {found:02x?}, not a synod snapshot")]
    BadMagic {
        /// What was there.
        found: [u8; 8],
    },
    /// A format version this build does not read.
    #[error("unknown format version {version} (this build reads version {SNAPSHOT_VERSION})")]
    UnknownVersion {
        /// The version in the header.
        version: u32,
    },
    /// The CRC32C over header and body does not match the trailer.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        /// The trailer's value.
        stored: u32,
        /// What the bytes hash to.
        computed: u32,
    },
    /// The slot in the file name differs from the slot in the header.
    #[error("named for slot {named} but its header says slot {header}")]
    WrongSlot {
        /// The slot in the file name.
        named: u64,
        /// The slot in the header.
        header: u64,
    },
}

/// Why a snapshot could not be written, found or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file is damaged; it must not be used.
    #[error("snapshot {} is damaged: {damage}", path.display())]
    Damaged {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        damage: SnapshotDamage,
    },
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done: "write", "fsync", "rename", ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io { op, path: path.to_path_buf(), source }
}

fn damaged(path: &Path, damage: SnapshotDamage) -> SnapshotError {
    SnapshotError::Damaged { path: path.to_path_buf(), damage }
}

fn encode_header(upto: u64, body_len: u64) -> [u8; SNAPSHOT_HEADER_LEN as usize] {
    let mut h = [0; SNAPSHOT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&upto.to_le_bytes());
    h[20..28].copy_from_slice(&body_len.to_le_bytes());
    h
}

/// Writes one snapshot: a streamed body, then [`SnapshotWriter::finish`].
///
/// Bytes written through [`Write`] are buffered (64 KiB) and written to the
/// temporary file in pieces, so the body never has to be in memory at once;
/// a write of 32 KiB or more goes to the file as it is, so a writer with a
/// buffer of its own needs no other in between. A failed write makes
/// [`SnapshotWriter::finish`] fail.
pub struct SnapshotWriter {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    upto: u64,
    tmp: PathBuf,
    file: Option<Box<dyn FsFile>>,
    buf: Vec<u8>,
    /// Body bytes already written to the file.
    flushed: u64,
    /// Body bytes written since the file was last synced.
    unsynced: u64,
    /// CRC32C of the flushed body bytes.
    crc: u32,
    failed: Option<io::ErrorKind>,
    finished: bool,
}

impl fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("tmp", &self.tmp)
            .field("upto", &self.upto)
            .finish_non_exhaustive()
    }
}

impl SnapshotWriter {
    /// Starts the snapshot of every slot below `upto` in `dir` (created if missing), on the real file system.
    pub fn create(dir: impl AsRef<Path>, upto: u64) -> Result<Self, SnapshotError> {
        Self::create_with(Arc::new(RealFs), dir, upto)
    }

    /// As [`SnapshotWriter::create`], through `fs`.
    pub fn create_with(fs: Arc<dyn Fs>, dir: impl AsRef<Path>, upto: u64) -> Result<Self, SnapshotError> {
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let tmp = dir.join(temp_file_name(upto));
        // A temporary file of an earlier, unfinished attempt is replaced.
        let names = fs.list(&dir).map_err(io_err("list", &dir))?;
        if names.iter().any(|n| *n == temp_file_name(upto)) {
            fs.remove(&tmp).map_err(io_err("remove", &tmp))?;
        }
        let mut file = fs.create(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all_at(&[0; SNAPSHOT_HEADER_LEN as usize], 0).map_err(io_err("write", &tmp))?;
        Ok(SnapshotWriter {
            fs,
            dir,
            upto,
            tmp,
            file: Some(file),
            buf: Vec::with_capacity(CHUNK),
            flushed: 0,
            unsynced: 0,
            crc: 0,
            failed: None,
            finished: false,
        })
    }

    /// Drops the writer as a crash would: its temporary file stays, for
    /// [`remove_partial_snapshots`] (or the next writer for the slot) to clear.
    pub fn abandon(mut self) {
        self.finished = true;
    }

    /// The slot this snapshot covers up to (exclusive).
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// Body bytes written so far.
    pub fn body_len(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "an earlier write of this snapshot failed"));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let written = self.write_body(&buf);
        self.buf = buf;
        self.buf.clear();
        written
    }

    /// Appends `bytes` to the body in the file, past what the buffer held
    /// (which must be empty or just taken from it).
    fn write_body(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().expect("present until finish");
        if let Err(e) = file.write_all_at(bytes, SNAPSHOT_HEADER_LEN + self.flushed) {
            self.failed = Some(e.kind());
            return Err(e);
        }
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.flushed += bytes.len() as u64;
        self.unsynced += bytes.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            // Hundreds of megabytes of dirty pages flushed at once by the final
            // fsync would queue the write-ahead log's own fsyncs behind them on
            // the same disk: flush as we go, a megabyte at a time.
            self.unsynced = 0;
            if let Err(e) = self.file.as_mut().expect("present until finish").sync_data() {
                self.failed = Some(e.kind());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes the header and trailer, fsyncs, renames the file into place,
    /// fsyncs the directory and removes older snapshots (best effort).
    ///
    /// On success the snapshot is durable and is the one [`newest_snapshot`]
    /// returns. On failure the old snapshot, if any, is untouched, and the
    /// new one must not be assumed to exist.
    pub fn finish(mut self) -> Result<SnapshotFile, SnapshotError> {
        self.write_trailer()?;
        self.sync_file()?;
        let path = self.rename()?;
        self.sync_dir()?;
        self.remove_older();
        Ok(SnapshotFile { path, upto: self.upto, body_len: self.flushed, skipped: Vec::new() })
    }

    /// Step 1 of [`SnapshotWriter::finish`]: the rest of the body, the header and the trailer.
    fn write_trailer(&mut self) -> Result<(), SnapshotError> {
        self.flush_buf().map_err(io_err("write", &self.tmp))?;
        let header = encode_header(self.upto, self.flushed);
        let crc = crc32c::crc32c_combine(crc32c::crc32c(&header), self.crc, self.flushed as usize);
        let file = self.file.as_mut().expect("present until finish");
        let write = |file: &mut Box<dyn FsFile>| {
            file.write_all_at(&header, 0)?;
            file.write_all_at(&crc.to_le_bytes(), SNAPSHOT_HEADER_LEN + self.flushed)
        };
        write(file).map_err(io_err("write", &self.tmp))
    }

    /// Step 2: the file's contents are durable.
    fn sync_file(&mut self) -> Result<(), SnapshotError> {
        let mut file = self.file.take().expect("present until finish");
        file.sync_data().map_err(io_err("fsync", &self.tmp))
    }

    /// Step 3: the file takes its final name (not yet durably).
    fn rename(&mut self) -> Result<PathBuf, SnapshotError> {
        let path = self.dir.join(snapshot_file_name(self.upto));
        self.fs.rename(&self.tmp, &path).map_err(io_err("rename", &self.tmp))?;
        self.finished = true;
        Ok(path)
    }

    /// Step 4: the new name is durable.
    fn sync_dir(&mut self) -> Result<(), SnapshotError> {
        self.fs.sync_dir(&self.dir).map_err(io_err("fsync", &self.dir))
    }

    /// Step 5: older snapshots go; a failure leaves them for the next snapshot to remove.
    fn remove_older(&mut self) {
        let Ok(names) = self.fs.list(&self.dir) else { return };
        let mut removed = false;
        for name in names {
            if parse_name(&name).is_some_and(|upto| upto < self.upto) {
                removed |= self.fs.remove(&self.dir.join(name)).is_ok();
            }
        }
        if removed {
            let _ = self.fs.sync_dir(&self.dir);
        }
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "an earlier write of this snapshot failed"));
        }
        if bytes.len() >= CHUNK / 2 {
            // From a writer with a buffer of its own (the key-value store's):
            // the piece goes to the file as it is, not copied again.
            self.flush_buf()?;
            self.write_body(bytes)?;
            return Ok(bytes.len());
        }
        let room = CHUNK - self.buf.len();
        let n = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == CHUNK {
            self.flush_buf()?;
        }
        Ok(n)
    }

    /// Writes the buffered bytes to the file (not durably; [`SnapshotWriter::finish`] syncs).
    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.file = None;
            let _ = self.fs.remove(&self.tmp);
        }
    }
}

/// A snapshot file found by [`newest_snapshot`] or written by [`SnapshotWriter::finish`].
#[derive(Debug)]
pub struct SnapshotFile {
    /// The file.
    pub path: PathBuf,
    /// Every slot below this one is in the image.
    pub upto: u64,
    /// The body's length in bytes.
    pub body_len: u64,
    /// Newer snapshot files that were damaged and passed over, newest first.
    pub skipped: Vec<SnapshotError>,
}

/// The newest snapshot in `dir` whose every byte checks, on the real file system; `None` if there is none.
pub fn newest_snapshot(dir: impl AsRef<Path>) -> Result<Option<SnapshotFile>, SnapshotError> {
    newest_snapshot_with(&RealFs, dir.as_ref())
}

/// As [`newest_snapshot`], through `fs`.
///
/// Every candidate is read to its end to check its CRC (in pieces, never
/// whole in memory); a damaged one is recorded in [`SnapshotFile::skipped`]
/// and the next older one tried. If every snapshot file is damaged, the
/// newest one's damage is the error: never "no snapshot". A missing
/// directory holds no snapshot.
/// Temporary files are ignored.
pub fn newest_snapshot_with(fs: &dyn Fs, dir: &Path) -> Result<Option<SnapshotFile>, SnapshotError> {
    let names = match fs.list(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut found: Vec<(u64, String)> =
        names.into_iter().filter_map(|n| Some((parse_name(&n)?, n))).collect();
    found.sort_unstable_by_key(|&(upto, _)| std::cmp::Reverse(upto));
    let mut skipped = Vec::new();
    for (named, name) in found {
        let path = dir.join(name);
        match check(fs, &path, Some(named)) {
            Ok(reader) => {
                return Ok(Some(SnapshotFile { path, upto: reader.upto, body_len: reader.body_len, skipped }))
            }
            Err(e @ SnapshotError::Damaged { .. }) => skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    // Every snapshot there is damaged: that is an answer, not "no snapshot".
    match skipped.into_iter().next() {
        Some(damaged) => Err(damaged),
        None => Ok(None),
    }
}

/// Opens `path` and reads it to the end, checking the name's slot (if given) and the CRC.
fn check(fs: &dyn Fs, path: &Path, named: Option<u64>) -> Result<SnapshotReader, SnapshotError> {
    let mut reader = SnapshotReader::open_with(fs, path)?;
    if let Some(named) = named.filter(|&n| n != reader.upto) {
        return Err(damaged(path, SnapshotDamage::WrongSlot { named, header: reader.upto }));
    }
    reader.verify()?;
    Ok(reader)
}

/// Streams a snapshot's body through [`Read`], checking the CRC when the body ends.
///
/// [`SnapshotReader::open`] checks the header and the file's length; the
/// read that reaches the body's end fails instead if the checksum does not
/// match. A [`Read`] error carrying a [`SnapshotError`] (see
/// [`SnapshotError::from_io`]) names the file and the damage.
pub struct SnapshotReader {
    path: PathBuf,
    file: Box<dyn FsFile>,
    upto: u64,
    body_len: u64,
    /// Body bytes read so far.
    pos: u64,
    /// CRC32C of the header and the body bytes read so far.
    crc: u32,
    stored: u32,
    verified: bool,
}

impl fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("path", &self.path)
            .field("upto", &self.upto)
            .field("body_len", &self.body_len)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl SnapshotReader {
    /// Opens the snapshot at `path` on the real file system.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SnapshotError> {
        Self::open_with(&RealFs, path.as_ref())
    }

    /// As [`SnapshotReader::open`], through `fs`.
    pub fn open_with(fs: &dyn Fs, path: &Path) -> Result<Self, SnapshotError> {
        let file = fs.open(path).map_err(io_err("open", path))?;
        let len = file.size().map_err(io_err("stat", path))?;
        if len < SNAPSHOT_HEADER_LEN {
            return Err(damaged(
                path,
                SnapshotDamage::Short { len, needed: SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN },
            ));
        }
        let mut header = [0; SNAPSHOT_HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).map_err(io_err("read", path))?;
        let found: [u8; 8] = header[0..8].try_into().expect("eight bytes");
        if found != SNAPSHOT_MAGIC {
            return Err(damaged(path, SnapshotDamage::BadMagic { found }));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().expect("four bytes"));
        if version != SNAPSHOT_VERSION {
            return Err(damaged(path, SnapshotDamage::UnknownVersion { version }));
        }
        let upto = u64::from_le_bytes(header[12..20].try_into().expect("eight bytes"));
        let body_len = u64::from_le_bytes(header[20..28].try_into().expect("eight bytes"));
        let needed = body_len.saturating_add(SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN);
        if len < needed {
            return Err(damaged(path, SnapshotDamage::Short { len, needed }));
        }
        if len > needed {
            return Err(damaged(path, SnapshotDamage::Long { len, extra: len - needed }));
        }
        let mut trailer = [0; SNAPSHOT_TRAILER_LEN as usize];
        file.read_exact_at(&mut trailer, SNAPSHOT_HEADER_LEN + body_len).map_err(io_err("read", path))?;
        Ok(SnapshotReader {
            path: path.to_path_buf(),
            file,
            upto,
            body_len,
            pos: 0,
            crc: crc32c::crc32c(&header),
            stored: u32::from_le_bytes(trailer),
            verified: false,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every slot below this one is in the image.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// The body's length in bytes.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Reads the rest of the body, discarding it, and checks the CRC.
    pub fn verify(&mut self) -> Result<(), SnapshotError> {
        let mut buf = vec![0; CHUNK];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(SnapshotError::from_io(e, &self.path)),
            }
        }
    }

    fn check_crc(&mut self) -> Result<(), SnapshotError> {
        if self.crc != self.stored {
            return Err(damaged(
                &self.path,
                SnapshotDamage::ChecksumMismatch { stored: self.stored, computed: self.crc },
            ));
        }
        self.verified = true;
        Ok(())
    }
}

impl SnapshotError {
    /// The [`SnapshotError`] inside an error from [`SnapshotReader`]'s [`Read`], or an `Io`
    /// error about `path` if it holds none.
    pub fn from_io(e: io::Error, path: &Path) -> SnapshotError {
        if e.get_ref().is_some_and(|inner| inner.is::<SnapshotError>()) {
            let inner = e.into_inner().expect("checked above");
            return *inner.downcast::<SnapshotError>().expect("checked above");
        }
        io_err("read", path)(e)
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.body_len - self.pos;
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n > 0 {
            self.file.read_exact_at(&mut buf[..n], SNAPSHOT_HEADER_LEN + self.pos).map_err(|e| {
                let err = if e.kind() == io::ErrorKind::UnexpectedEof {
                    let len = self.file.size().unwrap_or(0);
                    let needed = self.body_len + SNAPSHOT_HEADER_LEN + SNAPSHOT_TRAILER_LEN;
                    damaged(&self.path, SnapshotDamage::Short { len, needed })
                } else {
                    io_err("read", &self.path)(e)
                };
                io::Error::new(io::ErrorKind::InvalidData, err)
            })?;
            self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
            self.pos += n as u64;
        }
        if self.pos == self.body_len && !self.verified {
            self.check_crc().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(n)
    }
}

/// What [`inspect_snapshot`] found in one snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The file.
    pub path: PathBuf,
    /// The format version.
    pub version: u32,
    /// Every slot below this one is in the image.
    pub upto: u64,
    /// The body's length in bytes.
    pub body_len: u64,
    /// The CRC32C in the trailer.
    pub stored_crc: u32,
    /// The CRC32C of the header and body as read.
    pub computed_crc: u32,
    /// The slot in the file name, if it is named like a snapshot.
    pub named_upto: Option<u64>,
}

impl SnapshotInfo {
    /// Whether the checksum matches.
    pub fn checksum_ok(&self) -> bool {
        self.stored_crc == self.computed_crc
    }

    /// What is wrong with the file, if anything: a checksum mismatch or a name that disagrees with the header.
    pub fn damage(&self) -> Option<SnapshotError> {
        let damage = if !self.checksum_ok() {
            SnapshotDamage::ChecksumMismatch { stored: self.stored_crc, computed: self.computed_crc }
        } else {
            let named = self.named_upto.filter(|&n| n != self.upto)?;
            SnapshotDamage::WrongSlot { named, header: self.upto }
        };
        Some(damaged(&self.path, damage))
    }
}

impl fmt::Display for SnapshotInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "snapshot {}", self.path.display())?;
        writeln!(f, "  format version {}", self.version)?;
        writeln!(f, "  covers slots below {}", self.upto)?;
        writeln!(f, "  body {} bytes", self.body_len)?;
        let verdict = if self.checksum_ok() { "ok" } else { "MISMATCH" };
        write!(
            f,
            "  checksum {verdict} (stored {:#010x}, computed {:#010x})",
            self.stored_crc, self.computed_crc
        )?;
        if let Some(named) = self.named_upto.filter(|&n| n != self.upto) {
            write!(f, "\n  file name says slot {named}: MISMATCH")?;
        }
        Ok(())
    }
}

/// Reads the snapshot at `path` (on the real file system) and reports its header and checksum, changing nothing.
///
/// A file whose header cannot be trusted (short, bad magic, unknown version,
/// wrong length) is an error; a checksum mismatch is reported in the
/// [`SnapshotInfo`] (see [`SnapshotInfo::damage`]).
pub fn inspect_snapshot(path: impl AsRef<Path>) -> Result<SnapshotInfo, SnapshotError> {
    inspect_snapshot_with(&RealFs, path.as_ref())
}

/// As [`inspect_snapshot`], through `fs`.
pub fn inspect_snapshot_with(fs: &dyn Fs, path: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let mut reader = SnapshotReader::open_with(fs, path)?;
    let computed_crc = match reader.verify() {
        Ok(()) => reader.crc,
        Err(SnapshotError::Damaged { damage: SnapshotDamage::ChecksumMismatch { computed, .. }, .. }) => {
            computed
        }
        Err(e) => return Err(e),
    };
    let named_upto = path.file_name().and_then(|n| n.to_str()).and_then(parse_name);
    Ok(SnapshotInfo {
        path: path.to_path_buf(),
        version: SNAPSHOT_VERSION,
        upto: reader.upto,
        body_len: reader.body_len,
        stored_crc: reader.stored,
        computed_crc,
        named_upto,
    })
}

/// The temporary name of a snapshot file being received from a peer.
fn received_file_name(upto: u64) -> String {
    format!("snapshot-{upto}.recv")
}

/// Receives a snapshot file from a peer, byte for byte, in order; then
/// [`SnapshotReceiver::finish`] checks it and puts it in place.
///
/// The bytes go to `snapshot-<upto>.recv`, which readers ignore. Finishing
/// syncs it, checks it whole (header, the slot `upto`, length, CRC32C: a
/// truncated or corrupted transfer is refused here), renames it to its final
/// name, syncs the directory and removes older snapshots, exactly as
/// [`SnapshotWriter::finish`] does. Dropping an unfinished receiver removes
/// its file.
pub struct SnapshotReceiver {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    upto: u64,
    tmp: PathBuf,
    file: Option<Box<dyn FsFile>>,
    len: u64,
    /// Bytes appended since the file was last synced.
    unsynced: u64,
    finished: bool,
}

impl fmt::Debug for SnapshotReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotReceiver")
            .field("tmp", &self.tmp)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl SnapshotReceiver {
    /// Starts receiving snapshot `upto` into `dir` (created if missing), replacing any earlier partial file.
    pub fn create_with(fs: Arc<dyn Fs>, dir: impl AsRef<Path>, upto: u64) -> Result<Self, SnapshotError> {
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let tmp = dir.join(received_file_name(upto));
        let names = fs.list(&dir).map_err(io_err("list", &dir))?;
        if names.iter().any(|n| *n == received_file_name(upto)) {
            fs.remove(&tmp).map_err(io_err("remove", &tmp))?;
        }
        let file = fs.create(&tmp).map_err(io_err("create", &tmp))?;
        Ok(SnapshotReceiver { fs, dir, upto, tmp, file: Some(file), len: 0, unsynced: 0, finished: false })
    }

    /// The snapshot's slot.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// Drops the receiver as a crash would: its temporary file stays, for
    /// [`remove_partial_snapshots`] (or the next receiver for the slot) to clear.
    pub fn abandon(mut self) {
        self.finished = true;
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the next bytes of the file.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let file = self.file.as_mut().expect("present until finish");
        file.write_all_at(bytes, self.len).map_err(io_err("write", &self.tmp))?;
        self.len += bytes.len() as u64;
        self.unsynced += bytes.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            // As a writer does: never a pile of dirty pages in front of the log's fsyncs.
            self.unsynced = 0;
            file.sync_data().map_err(io_err("fsync", &self.tmp))?;
        }
        Ok(())
    }

    /// Syncs the file, checks it whole, and makes it the newest snapshot.
    /// A file that does not check out is a [`SnapshotError::Damaged`] and is removed.
    pub fn finish(mut self) -> Result<SnapshotFile, SnapshotError> {
        let mut file = self.file.take().expect("present until finish");
        file.sync_data().map_err(io_err("fsync", &self.tmp))?;
        drop(file);
        let reader = check(&*self.fs, &self.tmp, Some(self.upto))?;
        let body_len = reader.body_len;
        drop(reader);
        let path = self.dir.join(snapshot_file_name(self.upto));
        self.fs.rename(&self.tmp, &path).map_err(io_err("rename", &self.tmp))?;
        self.finished = true;
        self.fs.sync_dir(&self.dir).map_err(io_err("fsync", &self.dir))?;
        let names = self.fs.list(&self.dir).unwrap_or_default();
        for name in names {
            if parse_name(&name).is_some_and(|upto| upto < self.upto) {
                let _ = self.fs.remove(&self.dir.join(name));
            }
        }
        Ok(SnapshotFile { path, upto: self.upto, body_len, skipped: Vec::new() })
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        if !self.finished {
            self.file = None;
            let _ = self.fs.remove(&self.tmp);
        }
    }
}

/// Reads up to `max` bytes of the snapshot file at `path` from `offset`,
/// with the file's length: a piece to send to a peer. Past the end it reads nothing.
pub fn read_snapshot_chunk(
    fs: &dyn Fs,
    path: &Path,
    offset: u64,
    max: usize,
) -> Result<(u64, Vec<u8>), SnapshotError> {
    let file = fs.open(path).map_err(io_err("open", path))?;
    let total = file.size().map_err(io_err("stat", path))?;
    let n = usize::try_from(total.saturating_sub(offset)).unwrap_or(usize::MAX).min(max);
    let mut buf = vec![0; n];
    if n > 0 {
        file.read_exact_at(&mut buf, offset).map_err(io_err("read", path))?;
    }
    Ok((total, buf))
}

/// A piece of a snapshot file to send to a peer ([`SnapshotStore::chunk`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot's slot.
    pub upto: u64,
    /// The file's whole length.
    pub total: u64,
    /// Where `bytes` start in the file.
    pub offset: u64,
    /// The file's bytes from `offset` on.
    pub bytes: Vec<u8>,
}

/// A replica's snapshots as it serves and receives them: the newest
/// complete snapshot file, read in chunks for peers, and the one being
/// received from a peer, stored chunk by chunk. The runtime's snapshot
/// thread and the simulator both keep one, over their file systems.
///
/// The newest file is tracked here, not looked up per chunk (a lookup
/// checks a file's every byte). A received snapshot does not remove older
/// ones (an install of an older one may still be queued); a written one
/// does ([`SnapshotWriter::finish`]).
pub struct SnapshotStore {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    /// The newest complete snapshot: (slot, path).
    newest: Option<(u64, PathBuf)>,
    receiving: Option<SnapshotReceiver>,
}

impl fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("dir", &self.dir)
            .field("newest", &self.newest)
            .field("receiving", &self.receiving)
            .finish_non_exhaustive()
    }
}

impl SnapshotStore {
    /// The snapshots of `dir`, whose newest complete one (found at start, by [`newest_snapshot`]) is `newest`.
    pub fn new(fs: Arc<dyn Fs>, dir: impl AsRef<Path>, newest: Option<(u64, PathBuf)>) -> SnapshotStore {
        SnapshotStore { fs, dir: dir.as_ref().to_path_buf(), newest, receiving: None }
    }

    /// The newest complete snapshot's slot.
    pub fn newest(&self) -> Option<u64> {
        self.newest.as_ref().map(|(upto, _)| *upto)
    }

    /// A snapshot at `upto` is complete at `path`: it is the newest unless a newer one is.
    pub fn completed(&mut self, upto: u64, path: PathBuf) {
        if self.newest.as_ref().is_none_or(|(s, _)| *s <= upto) {
            self.newest = Some((upto, path));
        }
    }

    /// Up to `max` bytes of the newest snapshot for a peer: from `offset` if
    /// the newest is the snapshot `upto` it asked for, else (another one, or
    /// none named) from its first byte. `Ok(None)` when there is no snapshot
    /// or nothing is left to send from that offset.
    pub fn chunk(
        &self,
        upto: Option<u64>,
        offset: u64,
        max: usize,
    ) -> Result<Option<SnapshotChunk>, SnapshotError> {
        let Some((newest, path)) = &self.newest else { return Ok(None) };
        let offset = if upto == Some(*newest) { offset } else { 0 };
        let (total, bytes) = read_snapshot_chunk(&*self.fs, path, offset, max)?;
        Ok((!bytes.is_empty()).then_some(SnapshotChunk { upto: *newest, total, offset, bytes }))
    }

    /// Stores the next piece of snapshot `upto` received from a peer: offset
    /// 0 starts a new file (dropping any partial one), any other must follow
    /// what is stored. With `last`, the file is checked whole and put in
    /// place ([`SnapshotReceiver::finish`]) and becomes the newest.
    ///
    /// `Ok(None)`: stored, more to come. `Ok(Some(file))`: complete and
    /// checked. An error (out of step, a failed write, a file that does not
    /// check out) drops the partial file: the transfer must start again.
    pub fn store(
        &mut self,
        upto: u64,
        offset: u64,
        bytes: &[u8],
        last: bool,
    ) -> Result<Option<SnapshotFile>, SnapshotError> {
        if offset == 0 {
            self.receiving = None;
            self.receiving = Some(SnapshotReceiver::create_with(self.fs.clone(), &self.dir, upto)?);
        }
        let Some(receiver) = self.receiving.as_mut().filter(|r| r.upto() == upto && r.len() == offset) else {
            let expected = self.receiving.take().map(|r| (r.upto(), r.len()));
            return Err(SnapshotError::Io {
                op: "store",
                path: self.dir.join(received_file_name(upto)),
                source: io::Error::other(format!(
                    "a chunk of snapshot {upto} at offset {offset} is out of step with what is stored ({expected:?})"
                )),
            });
        };
        if let Err(e) = receiver.append(bytes) {
            self.receiving = None;
            return Err(e);
        }
        if !last {
            return Ok(None);
        }
        let file = self.receiving.take().expect("checked above").finish()?;
        self.completed(upto, file.path.clone());
        Ok(Some(file))
    }

    /// Drops the snapshot being received as a crash would: its file stays, for
    /// [`remove_partial_snapshots`] to clear.
    pub fn abandon(mut self) {
        if let Some(receiver) = self.receiving.take() {
            receiver.abandon();
        }
    }
}

/// Removes the temporary files an interrupted snapshot write or transfer left in `dir`.
pub fn remove_partial_snapshots(fs: &dyn Fs, dir: &Path) -> Result<usize, SnapshotError> {
    let names = match fs.list(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut removed = 0;
    for name in names {
        let partial = name.starts_with("snapshot-") && (name.ends_with(".tmp") || name.ends_with(".recv"));
        if partial {
            let path = dir.join(&name);
            fs.remove(&path).map_err(io_err("remove", &path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Crash, FaultyFs};

    fn body(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn write(fs: &FaultyFs, upto: u64, bytes: &[u8]) -> SnapshotWriter {
        let mut w = SnapshotWriter::create_with(Arc::new(fs.clone()), "/d", upto).unwrap();
        for piece in bytes.chunks(1000) {
            w.write_all(piece).unwrap();
        }
        w
    }

    fn read_newest(fs: &FaultyFs) -> Option<(u64, Vec<u8>)> {
        let file = newest_snapshot_with(fs, Path::new("/d")).unwrap()?;
        let mut out = Vec::new();
        SnapshotReader::open_with(fs, &file.path).unwrap().read_to_end(&mut out).unwrap();
        Some((file.upto, out))
    }

    #[test]
    fn names_parse_back_and_nothing_else_does() {
        assert_eq!(snapshot_file_name(1000), "snapshot-00000000000000001000.snap");
        assert_eq!(parse_name(&snapshot_file_name(u64::MAX)), Some(u64::MAX));
        for bad in ["snapshot-1000.snap", "snapshot-1000.tmp", "snapshot-0000000000000000100x.snap", "other"]
        {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_crc_covers_header_and_body_in_file_order() {
        let fs = FaultyFs::new();
        let data = body(200_000, 7);
        write(&fs, 5, &data).finish().unwrap();
        let bytes = fs.contents(Path::new("/d/snapshot-00000000000000000005.snap")).unwrap();
        let (covered, trailer) = bytes.split_at(bytes.len() - 4);
        assert_eq!(crc32c::crc32c(covered), u32::from_le_bytes(trailer.try_into().unwrap()));
        assert_eq!(&covered[28..], &data[..]);
        assert_eq!(&covered[..8], b"SYNODSNP");
    }

    #[test]
    fn an_empty_body_round_trips() {
        let fs = FaultyFs::new();
        write(&fs, 0, &[]).finish().unwrap();
        assert_eq!(read_newest(&fs), Some((0, Vec::new())));
    }

    /// Crashes after each step of `finish`, in every crash mode: the newest valid snapshot is the old or the new one.
    #[test]
    fn a_crash_at_any_step_of_finish_leaves_the_old_or_the_new_snapshot() {
        let old = body(300_000, 1);
        let new = body(400_000, 2);
        let modes = [
            Crash::LoseUnsynced,
            Crash::KeepUnsynced,
            Crash::TearLastWrite { keep: 3 },
            Crash::Sectors { seed: 1 },
            Crash::Sectors { seed: 2 },
        ];
        for mode in modes {
            for steps in 0..=5 {
                let fs = FaultyFs::new();
                write(&fs, 100, &old).finish().unwrap();
                let mut w = write(&fs, 200, &new);
                let results = [
                    steps < 1 || w.write_trailer().is_ok(),
                    steps < 2 || w.sync_file().is_ok(),
                    steps < 3 || w.rename().is_ok(),
                    steps < 4 || w.sync_dir().is_ok(),
                    steps < 5 || {
                        w.remove_older();
                        true
                    },
                ];
                assert!(results.iter().all(|&ok| ok));
                // The process dies: the writer's Drop never runs.
                std::mem::forget(w);
                fs.crash(mode);
                let found = newest_snapshot_with(&fs, Path::new("/d")).unwrap();
                let found = found.unwrap_or_else(|| panic!("{mode:?} after {steps} steps: no snapshot"));
                assert!(found.skipped.is_empty(), "{mode:?} after {steps} steps: {:?}", found.skipped);
                let (upto, bytes) = read_newest(&fs).unwrap();
                if steps >= 4 {
                    assert_eq!((upto, bytes.len()), (200, new.len()), "{mode:?} after {steps} steps");
                }
                assert!(
                    (upto == 100 && bytes == old) || (upto == 200 && bytes == new),
                    "{mode:?} after {steps} steps: slot {upto}"
                );
            }
        }
    }

    #[test]
    fn an_unfinished_writer_leaves_nothing_and_the_next_one_replaces_a_leftover() {
        let fs = FaultyFs::new();
        drop(write(&fs, 9, &body(100_000, 3)));
        assert!(fs.paths().is_empty(), "{:?}", fs.paths());
        // A crash leaves the temporary file; it is ignored, then replaced.
        let w = write(&fs, 9, &body(100_000, 3));
        std::mem::forget(w);
        assert_eq!(fs.paths(), vec![PathBuf::from("/d/snapshot-9.tmp")]);
        assert!(newest_snapshot_with(&fs, Path::new("/d")).unwrap().is_none());
        write(&fs, 9, &body(10, 4)).finish().unwrap();
        assert_eq!(read_newest(&fs), Some((9, body(10, 4))));
        assert_eq!(fs.paths(), vec![PathBuf::from("/d/snapshot-00000000000000000009.snap")]);
    }

    #[test]
    fn a_failed_write_or_sync_fails_finish_and_keeps_the_old_snapshot() {
        let fs = FaultyFs::new();
        write(&fs, 1, b"old").finish().unwrap();
        let mut w = write(&fs, 2, &body(1000, 0));
        fs.fail_writes(true);
        assert!(w.write_all(&body(CHUNK, 0)).is_err());
        fs.fail_writes(false);
        assert!(w.write_all(b"more").is_err(), "a failed writer stays failed");
        assert!(matches!(w.finish(), Err(SnapshotError::Io { op: "write", .. })));
        let w = write(&fs, 3, b"new");
        fs.fail_syncs(true);
        let err = w.finish().unwrap_err();
        assert!(err.to_string().starts_with("fsync /d/snapshot-3.tmp"), "{err}");
        fs.fail_syncs(false);
        assert_eq!(read_newest(&fs), Some((1, b"old".to_vec())));
        assert_eq!(fs.paths(), vec![PathBuf::from("/d/snapshot-00000000000000000001.snap")]);
    }
}
