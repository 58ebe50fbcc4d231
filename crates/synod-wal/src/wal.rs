//! The write-ahead log itself: open with recovery, append, sync, prefix truncation and catch-up reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::{fmt, io};

use synod_wire::{LogRecord, Slot, Wire};

use crate::error::{FatalError, OpenError, ReadError, WriteError};
use crate::format::{self, Encoded, FRAME_HEADER_LEN, HEADER_LEN};
use crate::fs::{Fs, FsFile, RealFs};
use crate::recover::{self, Problem, TornTail};

/// The smallest segment size accepted; smaller requests are raised to it.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

/// How to open a [`Wal`]. `Options::default()` uses the real file system and
/// 64 MiB segments, and creates each segment when it is needed (no [`Preallocate`]).
#[derive(Debug, Clone)]
pub struct Options {
    fs: Arc<dyn Fs>,
    segment_size: u64,
    preallocate: Option<Arc<dyn Preallocate>>,
}

impl Default for Options {
    fn default() -> Self {
        Options { fs: Arc::new(RealFs), segment_size: 64 << 20, preallocate: None }
    }
}

impl Options {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `fs` for every file operation (e.g. a [`crate::FaultyFs`] in tests).
    pub fn fs(mut self, fs: impl Fs + 'static) -> Self {
        self.fs = Arc::new(fs);
        self
    }

    /// Preallocates segments of `bytes` (at least [`MIN_SEGMENT_SIZE`]). A
    /// write larger than a segment gets a segment of its own, grown to fit.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes.max(MIN_SEGMENT_SIZE);
        self
    }

    /// Has `preallocate` create the next segment (zero-filled and synced)
    /// while the current one fills, rather than when it is needed. synod-log's
    /// `ThreadPreallocate` does it on a helper thread; this crate starts none.
    pub fn preallocate(mut self, preallocate: impl Preallocate + 'static) -> Self {
        self.preallocate = Some(Arc::new(preallocate));
        self
    }

    /// Creates each segment when it is needed (the default).
    pub fn no_preallocation(mut self) -> Self {
        self.preallocate = None;
        self
    }
}

/// Creates the next segment somewhere else while the active one fills.
///
/// The log starts one [`SegmentJob`] once the active segment is half full
/// and waits for it ([`Spare::wait`]) when it rotates. This crate has no
/// implementation: it starts no threads, so a log driven over
/// [`crate::FaultyFs`] stays deterministic. synod-log runs the job on a thread.
pub trait Preallocate: Send + Sync + fmt::Debug {
    /// Starts `job`; `None` if it cannot, and the segment is then created when it is needed.
    fn start(&self, job: SegmentJob) -> Option<Box<dyn Spare>>;
}

/// A segment being created by a [`Preallocate`].
pub trait Spare: Send + fmt::Debug {
    /// Waits until the segment is created; its file, or why it could not be.
    fn wait(self: Box<Self>) -> Result<Box<dyn FsFile>, FatalError>;
}

/// The creation of one segment file: header, zeros up to the segment size, synced, its name synced.
#[derive(Debug)]
pub struct SegmentJob {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    index: u64,
    size: u64,
}

impl SegmentJob {
    /// Creates the segment.
    pub fn run(self) -> Result<Box<dyn FsFile>, FatalError> {
        create_segment(&*self.fs, &self.dir, self.index, self.size)
    }
}

/// What [`Wal::open`] recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Every surviving record, in append order.
    pub records: Vec<LogRecord>,
    /// The torn tail that was cut off, if the last write before a crash was incomplete.
    pub torn: Option<TornTail>,
}

/// Where an `Accept` or `Learn` record lives, for catch-up reads.
#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
    learned: bool,
}

/// The latest `Accept`/`Learn` of each slot, shared with [`Reader`]s; it only holds durable records.
#[derive(Debug, Default)]
struct SlotIndex {
    slots: BTreeMap<u64, Loc>,
}

impl SlotIndex {
    fn insert(&mut self, slot: u64, loc: Loc) {
        // A learned (chosen) value outranks any accepted one; among equals the latest wins.
        match self.slots.get(&slot) {
            Some(old) if old.learned && !loc.learned => {}
            _ => {
                self.slots.insert(slot, loc);
            }
        }
    }
}

/// What the log keeps about one segment.
#[derive(Debug)]
struct SegMeta {
    index: u64,
    path: PathBuf,
    /// The highest slot of its `Accept`/`Learn` records.
    max_slot: Option<u64>,
}

/// The kind of record a frame holds, as far as truncation and the index care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Promise,
    Slot { slot: u64, learned: bool },
    Commit,
    Snapshot,
    Rejoin,
}

impl Kind {
    fn of(record: &LogRecord) -> Kind {
        match record {
            LogRecord::Promise { .. } => Kind::Promise,
            LogRecord::Accept { slot, .. } => Kind::Slot { slot: slot.0, learned: false },
            LogRecord::Learn { slot, .. } => Kind::Slot { slot: slot.0, learned: true },
            LogRecord::Commit { .. } => Kind::Commit,
            LogRecord::Snapshot { .. } => Kind::Snapshot,
            LogRecord::Rejoin { .. } => Kind::Rejoin,
        }
    }
}

/// A record encoded and ready to frame, so that a caller can encode on its
/// own thread what another writes ([`Wal::write_batch`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    encoded: Encoded,
    kind: Kind,
}

impl Prepared {
    /// Encodes `record`; an error if it is too large.
    pub fn new(record: &LogRecord) -> Result<Self, synod_wire::EncodeError> {
        Ok(Prepared { encoded: Encoded::new(record.encode()?), kind: Kind::of(record) })
    }

    /// The frame's length on disk.
    pub fn frame_len(&self) -> usize {
        self.encoded.frame_len()
    }
}

/// The write-ahead log: a directory of preallocated segment files.
///
/// Writes are batches: [`Wal::append`] frames its records as one write of
/// one batch; [`Wal::sync`] makes every write so far durable with one
/// fdatasync. synod-log's `GroupCommit` drives a `Wal` from its own thread;
/// the simulator drives one over [`crate::FaultyFs`] from its single thread.
///
/// The first failed write or fsync poisons the log: that call and every later
/// one fail with [`WriteError::Failed`], because after a failed fsync nothing
/// written since the previous one can be trusted.
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    segment_size: u64,
    preallocate: Option<Arc<dyn Preallocate>>,
    /// Every segment, oldest first; the last is active.
    segments: Vec<SegMeta>,
    active: Box<dyn FsFile>,
    write_pos: u64,
    /// The batch number the next write gets.
    next_batch: u64,
    /// The last batch known durable.
    synced_batch: u64,
    /// Index entries waiting for the next sync before readers may see them.
    pending: Vec<(u64, Loc)>,
    index: Arc<RwLock<SlotIndex>>,
    /// The last Promise, Commit and Snapshot records and the segments holding them,
    /// carried forward when prefix truncation would drop them.
    latest: [Option<(u64, Prepared)>; 4],
    spare: Option<Box<dyn Spare>>,
    buf: Vec<u8>,
    failed: Option<Arc<FatalError>>,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, validating every segment and record.
    ///
    /// A torn tail is cut off (zeroed on disk, synced) and reported in
    /// [`Recovery::torn`]. Damage anywhere else is [`OpenError::Corrupt`],
    /// naming the file and byte offset, and the node must not start.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Wal, Recovery), OpenError> {
        let dir = dir.as_ref().to_path_buf();
        let fs = options.fs.clone();
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { op, path, source }
        };
        fs.create_dir_all(&dir).map_err(io("create", &dir))?;
        let analysis = recover::analyze(&*fs, &dir)?;
        let torn = match analysis.problem {
            Some(Problem::Corrupt { file, offset, reason }) => {
                return Err(OpenError::Corrupt { file, offset, reason })
            }
            Some(Problem::TornTail(torn)) => Some(torn),
            None => None,
        };
        for path in &analysis.discard {
            fs.remove(path).map_err(io("remove", path))?;
        }
        if let Some(t) = &torn {
            // Zero the torn bytes, so that nothing of the lost write can be
            // mistaken for data once new writes land around it.
            let mut file = fs.open(&t.file).map_err(io("open", &t.file))?;
            let zeros = vec![0u8; t.bytes_dropped as usize];
            file.write_all_at(&zeros, t.offset).map_err(io("write", &t.file))?;
            file.sync_data().map_err(io("fsync", &t.file))?;
        }
        if !analysis.discard.is_empty() {
            fs.sync_dir(&dir).map_err(io("sync", &dir))?;
        }

        let mut records = Vec::new();
        let mut segments = Vec::new();
        let mut index = SlotIndex::default();
        let mut latest: [Option<(u64, Prepared)>; 4] = Default::default();
        let mut last_batch = 0;
        for seg in &analysis.segments {
            let mut max_slot = None;
            for (frame, record) in &seg.records {
                last_batch = frame.batch;
                let kind = Kind::of(record);
                match kind {
                    Kind::Slot { slot, learned } => {
                        max_slot = max_slot.max(Some(slot));
                        let len = u32::try_from(frame.payload.len() + FRAME_HEADER_LEN)
                            .expect("frames are checked against MAX_FRAME_LEN");
                        index.insert(slot, Loc { segment: seg.index, offset: frame.offset, len, learned });
                    }
                    Kind::Promise | Kind::Commit | Kind::Snapshot | Kind::Rejoin => {
                        let prepared = Prepared::new(record).expect("a decoded record re-encodes");
                        latest[latest_slot(kind)] = Some((seg.index, prepared));
                    }
                }
                records.push(record.clone());
            }
            segments.push(SegMeta { index: seg.index, path: seg.path.clone(), max_slot });
        }

        let (active, write_pos) = match analysis.segments.last() {
            Some(last) => {
                let mut file = fs.open(&last.path).map_err(io("open", &last.path))?;
                if last.size < options.segment_size {
                    // A crash cut the preallocation short; finish it.
                    zero_fill(&mut *file, last.size, options.segment_size)
                        .map_err(io("write", &last.path))?;
                    file.sync_data().map_err(io("fsync", &last.path))?;
                }
                (file, last.used)
            }
            None => {
                let first = 0;
                let file = create_segment(&*fs, &dir, first, options.segment_size)
                    .map_err(|e| OpenError::Io { op: e.op, path: e.path, source: e.source })?;
                segments.push(SegMeta {
                    index: first,
                    path: dir.join(format::segment_name(first)),
                    max_slot: None,
                });
                (file, HEADER_LEN as u64)
            }
        };
        let wal = Wal {
            fs,
            dir,
            segment_size: options.segment_size,
            preallocate: options.preallocate,
            segments,
            active,
            write_pos,
            next_batch: last_batch + 1,
            synced_batch: last_batch,
            pending: Vec::new(),
            index: Arc::new(RwLock::new(index)),
            latest,
            spare: None,
            buf: Vec::new(),
            failed: None,
        };
        Ok((wal, Recovery { records, torn }))
    }

    /// Writes `records` as one batch. They are durable after the next [`Wal::sync`].
    ///
    /// An encoding failure writes nothing and leaves the log usable; an IO
    /// failure is fatal.
    pub fn append(&mut self, records: &[LogRecord]) -> Result<(), WriteError> {
        self.check()?;
        let prepared = records.iter().map(Prepared::new).collect::<Result<Vec<_>, _>>()?;
        self.write_batch(&prepared).map_err(WriteError::Failed)
    }

    /// Makes every write so far durable with one fdatasync.
    pub fn sync(&mut self) -> Result<(), WriteError> {
        self.check()?;
        self.sync_batches().map_err(WriteError::Failed)
    }

    /// Drops whole segments below a snapshot: the longest prefix of segments,
    /// short of the active one, whose `Accept`/`Learn` records all have slots
    /// below `upto`. Returns how many segments were removed.
    ///
    /// The latest `Promise`, `Commit`, `Snapshot` and `Rejoin` records are never lost:
    /// if one lives in a segment about to go, it is first appended again
    /// (and synced), so recovery still finds it.
    pub fn truncate_prefix(&mut self, upto: Slot) -> Result<usize, WriteError> {
        self.check()?;
        self.truncate_inner(upto).map_err(WriteError::Failed)
    }

    /// A handle for catch-up reads that stays valid while the log is written (from another thread too).
    pub fn reader(&self) -> Reader {
        Reader { fs: self.fs.clone(), dir: self.dir.clone(), index: self.index.clone() }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many segment files the log has.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The error that stopped the log, if one did.
    pub fn failure(&self) -> Option<&Arc<FatalError>> {
        self.failed.as_ref()
    }

    fn check(&self) -> Result<(), WriteError> {
        match &self.failed {
            Some(e) => Err(WriteError::Failed(e.clone())),
            None => Ok(()),
        }
    }

    /// Records a fatal error: from now on the log refuses everything.
    fn fail(&mut self, op: &'static str, path: PathBuf, source: io::Error) -> Arc<FatalError> {
        let e = Arc::new(FatalError { op, path, source });
        self.failed = Some(e.clone());
        e
    }

    fn poison(&mut self, e: FatalError) -> Arc<FatalError> {
        let e = Arc::new(e);
        self.failed = Some(e.clone());
        e
    }

    /// Frames and writes `items` as one batch with one write call; durable after the next sync.
    ///
    /// The error is the fatal one that stopped the log, now or earlier.
    pub fn write_batch(&mut self, items: &[Prepared]) -> Result<(), Arc<FatalError>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if items.is_empty() {
            return Ok(());
        }
        let total: u64 = items.iter().map(|p| p.encoded.frame_len() as u64).sum();
        if self.write_pos + total > self.segment_size && self.write_pos > HEADER_LEN as u64 {
            self.rotate()?;
        }
        let batch = self.next_batch;
        let segment = self.segments.last().expect("there is always an active segment").index;
        self.buf.clear();
        let mut max_slot = None;
        for p in items {
            let offset = self.write_pos + self.buf.len() as u64;
            format::put_frame(&mut self.buf, &p.encoded, batch, self.synced_batch);
            match p.kind {
                Kind::Slot { slot, learned } => {
                    max_slot = max_slot.max(Some(slot));
                    let len = p.encoded.frame_len() as u32;
                    self.pending.push((slot, Loc { segment, offset, len, learned }));
                }
                kind => self.latest[latest_slot(kind)] = Some((segment, p.clone())),
            }
        }
        if let Err(e) = self.active.write_all_at(&self.buf, self.write_pos) {
            let path = self.active_path();
            return Err(self.fail("write", path, e));
        }
        self.write_pos += total;
        self.next_batch += 1;
        let active = self.segments.last_mut().expect("there is always an active segment");
        active.max_slot = active.max_slot.max(max_slot);
        if self.preallocate.is_some() && self.spare.is_none() && self.write_pos > self.segment_size / 2 {
            self.start_spare();
        }
        Ok(())
    }

    /// Makes every write durable with one fdatasync, then lets readers see
    /// the new entries. [`Wal::sync`] with the fatal error itself.
    pub fn sync_batches(&mut self) -> Result<(), Arc<FatalError>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.synced_batch + 1 == self.next_batch {
            return Ok(());
        }
        if let Err(e) = self.active.sync_data() {
            let path = self.active_path();
            return Err(self.fail("fsync", path, e));
        }
        self.synced_batch = self.next_batch - 1;
        if !self.pending.is_empty() {
            let mut index = write(&self.index);
            for (slot, loc) in self.pending.drain(..) {
                index.insert(slot, loc);
            }
        }
        Ok(())
    }

    fn truncate_inner(&mut self, upto: Slot) -> Result<usize, Arc<FatalError>> {
        let droppable = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.max_slot.is_none_or(|m| m < upto.0))
            .count();
        if droppable == 0 {
            return Ok(0);
        }
        let last_dropped = self.segments[droppable - 1].index;
        let carry: Vec<Prepared> = self
            .latest
            .iter()
            .flatten()
            .filter(|(segment, _)| *segment <= last_dropped)
            .map(|(_, p)| p.clone())
            .collect();
        if !carry.is_empty() {
            self.write_batch(&carry)?;
        }
        // Whatever the dropped segments held must not be the only durable copy
        // of anything still pending in the active one.
        self.sync_batches()?;
        // Oldest first, so that a crash midway leaves a contiguous suffix.
        let dropped: Vec<SegMeta> = self.segments.drain(..droppable).collect();
        for seg in dropped {
            if let Err(e) = self.fs.remove(&seg.path) {
                return Err(self.fail("remove", seg.path, e));
            }
        }
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            let dir = self.dir.clone();
            return Err(self.fail("sync", dir, e));
        }
        write(&self.index).slots.retain(|_, loc| loc.segment > last_dropped);
        Ok(droppable)
    }

    /// Closes the active segment (synced) and continues in a fresh preallocated one.
    fn rotate(&mut self) -> Result<(), Arc<FatalError>> {
        // Everything in the old segment is durable before the new one gets
        // data, so damage in any segment but the tail is corruption.
        self.sync_batches()?;
        let next = self.segments.last().expect("there is always an active segment").index + 1;
        let file = match self.spare.take() {
            Some(spare) => spare.wait(),
            None => create_segment(&*self.fs, &self.dir, next, self.segment_size),
        };
        self.active = file.map_err(|e| self.poison(e))?;
        self.segments.push(SegMeta {
            index: next,
            path: self.dir.join(format::segment_name(next)),
            max_slot: None,
        });
        self.write_pos = HEADER_LEN as u64;
        Ok(())
    }

    fn start_spare(&mut self) {
        let Some(preallocate) = &self.preallocate else { return };
        let job = SegmentJob {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            index: self.segments.last().expect("there is always an active segment").index + 1,
            size: self.segment_size,
        };
        // If it cannot start, the segment is created when it is needed instead.
        self.spare = preallocate.start(job);
    }

    fn active_path(&self) -> PathBuf {
        self.segments.last().expect("there is always an active segment").path.clone()
    }
}

/// The slot index, for reading; a writer that panicked left it consistent
/// (each update is one insert or retain), so poisoning is ignored.
fn read(index: &RwLock<SlotIndex>) -> RwLockReadGuard<'_, SlotIndex> {
    index.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The slot index, for writing (see [`read`]).
fn write(index: &RwLock<SlotIndex>) -> RwLockWriteGuard<'_, SlotIndex> {
    index.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn latest_slot(kind: Kind) -> usize {
    match kind {
        Kind::Promise => 0,
        Kind::Commit => 1,
        Kind::Snapshot => 2,
        Kind::Rejoin => 3,
        Kind::Slot { .. } => unreachable!("slot records are indexed, not carried"),
    }
}

/// Creates segment `index`: header, zeros up to `size`, synced, its name synced.
fn create_segment(fs: &dyn Fs, dir: &Path, index: u64, size: u64) -> Result<Box<dyn FsFile>, FatalError> {
    let path = dir.join(format::segment_name(index));
    let fatal = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| FatalError { op, path, source }
    };
    let mut file = fs.create(&path).map_err(fatal("create", &path))?;
    file.write_all_at(&format::segment_header(index), 0).map_err(fatal("write", &path))?;
    // Writing real zeros (not set_len, which leaves holes) means later
    // fdatasyncs flush data only, not block allocation metadata.
    zero_fill(&mut *file, HEADER_LEN as u64, size).map_err(fatal("write", &path))?;
    file.sync_data().map_err(fatal("fsync", &path))?;
    fs.sync_dir(dir).map_err(fatal("sync", dir))?;
    Ok(file)
}

fn zero_fill(file: &mut dyn FsFile, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(to.saturating_sub(from)) as usize];
    let mut at = from;
    while at < to {
        let n = CHUNK.min(to - at);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// Reads durable `Accept`/`Learn` entries for catch-up. Cheap to clone; usable from any thread.
#[derive(Debug, Clone)]
pub struct Reader {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    index: Arc<RwLock<SlotIndex>>,
}

impl Reader {
    /// The durable entry of every slot in `from..to` that has one, in slot
    /// order: the `Learn` record if the slot was learned, otherwise its latest `Accept`.
    pub fn entries(&self, from: Slot, to: Slot) -> Result<Vec<LogRecord>, ReadError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let locs: Vec<(u64, Loc)> =
            read(&self.index).slots.range(from.0..to.0).map(|(s, l)| (*s, *l)).collect();
        let mut out = Vec::with_capacity(locs.len());
        let mut open: Option<(u64, PathBuf, Box<dyn FsFile>)> = None;
        let mut buf = Vec::new();
        for (slot, loc) in locs {
            if open.as_ref().is_none_or(|(seg, _, _)| *seg != loc.segment) {
                let path = self.dir.join(format::segment_name(loc.segment));
                let file = match self.fs.open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(ReadError::Truncated { slot })
                    }
                    Err(source) => return Err(ReadError::Io { path, source }),
                };
                open = Some((loc.segment, path, file));
            }
            let (_, path, file) = open.as_ref().expect("opened above");
            buf.resize(loc.len as usize, 0);
            file.read_exact_at(&mut buf, loc.offset)
                .map_err(|source| ReadError::Io { path: path.clone(), source })?;
            let corrupt =
                |reason: String| ReadError::Corrupt { file: path.clone(), offset: loc.offset, reason };
            let frame = format::frame_at(&buf, 0, 1..u64::MAX).map_err(|bad| corrupt(format!("{bad:?}")))?;
            let record = LogRecord::decode(&buf[frame.payload]).map_err(|e| corrupt(e.to_string()))?;
            out.push(record);
        }
        Ok(out)
    }

    /// The lowest and highest slot with a durable entry, if any.
    pub fn slot_range(&self) -> Option<(Slot, Slot)> {
        let index = read(&self.index);
        let first = index.slots.keys().next()?;
        let last = index.slots.keys().next_back()?;
        Some((Slot(*first), Slot(*last)))
    }
}
