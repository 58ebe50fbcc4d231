//! A replica's disk: synod-wal's real write-ahead log over its fault-injecting in-memory file system.
//!
//! A `Persist` is written at once, as one batch with one write call
//! ([`Wal::append`], as the log thread's `write_batch`), and completes after
//! a simulated delay with a sync (one fdatasync, [`Wal::sync`]); writes
//! complete in order. A crash is [`FaultyFs::crash`] with a mode drawn from
//! the seed (unsynced writes lost, kept, the last one torn, or sectors lost
//! at random); a restart is [`Wal::open`] over the files that survived. A
//! sync may be made to fail (drawn from the seed): the runtime stops a node
//! whose fsync failed, never going on after a lost write, so the world
//! crashes the replica and it restarts from what its disk holds.
//!
//! Nothing here reads a clock or starts a thread: synod-wal over `FaultyFs`
//! is deterministic, and every choice comes from the world's seeded `Rng`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use synod_paxos::rng::Rng;
use synod_paxos::PersistToken;
use synod_wal::{
    newest_snapshot_with, remove_partial_snapshots, snapshot_file_name, Crash, FaultyFs, OpenError, Options,
    Prepared, SnapshotError, SnapshotFile, SnapshotReader, SnapshotStore, SnapshotWriter, TornTail, Wal,
    WriteError,
};
use synod_wire::{LogRecord, Slot};

/// The log's directory on the simulated file system.
const DIR: &str = "/wal";

/// Small segments, so that runs rotate and recover across several of them.
const SEGMENT_SIZE: u64 = 8 << 10;

#[derive(Debug, Default)]
pub(crate) struct Disk {
    fs: FaultyFs,
    /// The open log; `None` while the replica is down.
    wal: Option<Wal>,
    /// Writes not yet reported durable: (token, records, frame bytes, tick they complete).
    pending: VecDeque<(PersistToken, usize, u64, u64)>,
    /// Every record of this incarnation's log in order: the recovered ones, then each write.
    written: Vec<LogRecord>,
    /// How many of `written` the replica was told are durable (the recovered ones count).
    reported: usize,
    /// Syncs that failed (injected).
    sync_failures: u64,
    /// Whether this incarnation truncated its log: the records recovered
    /// are then no longer a prefix of those written.
    truncated: bool,
    /// The newest complete snapshot and the one being received, as the
    /// runtime's snapshot thread keeps them; `None` while the replica is down.
    snapshots: Option<SnapshotStore>,
    /// A snapshot being written: its body is in a temporary file, and it
    /// is finished (synced, renamed) at the tick given.
    writing: Option<(SnapshotWriter, u64)>,
}

/// What a restart found on the disk.
#[derive(Debug)]
pub(crate) struct Reopened {
    /// The records recovery gave back, in order.
    pub(crate) records: Vec<LogRecord>,
    /// The torn tail recovery cut off, if any.
    pub(crate) torn: Option<TornTail>,
    /// Every record the previous incarnation wrote, in order.
    pub(crate) written: Vec<LogRecord>,
    /// How many of `written` it was told were durable.
    pub(crate) reported: usize,
    /// Whether the previous incarnation truncated its log.
    pub(crate) truncated: bool,
    /// The newest snapshot file that checks out, if any.
    pub(crate) snapshot: Option<SnapshotFile>,
}

/// What a due write's sync came to.
#[derive(Debug)]
pub(crate) enum Completion {
    /// Nothing was due.
    Nothing,
    /// Every write up to and including this token is durable.
    Durable(PersistToken),
    /// The fsync failed (injected); the node must stop.
    SyncFailed(WriteError),
}

impl Disk {
    /// Opens the log over whatever survived, as a replica's start does.
    ///
    /// An error means recovery refused the log (or could not read it): a real
    /// finding, since the simulated disk only ever crashes, tears and loses
    /// unsynced writes, which recovery must tell from corruption.
    pub(crate) fn open(&mut self) -> Result<Reopened, String> {
        self.wal = None;
        self.pending.clear();
        let options = Options::new().fs(self.fs.clone()).segment_size(SEGMENT_SIZE);
        let (wal, recovery) = Wal::open(DIR, options).map_err(|e: OpenError| e.to_string())?;
        self.wal = Some(wal);
        let dir = Path::new(DIR);
        remove_partial_snapshots(&self.fs, dir).map_err(|e| e.to_string())?;
        let snapshot = newest_snapshot_with(&self.fs, dir).map_err(|e| e.to_string())?;
        if let Some(damaged) = snapshot.as_ref().and_then(|s| s.skipped.first()) {
            return Err(damaged.to_string());
        }
        let newest = snapshot.as_ref().map(|s| (s.upto, s.path.clone()));
        self.snapshots = Some(SnapshotStore::new(Arc::new(self.fs.clone()), DIR, newest));
        let written = std::mem::replace(&mut self.written, recovery.records.clone());
        let reported = std::mem::replace(&mut self.reported, recovery.records.len());
        let truncated = std::mem::replace(&mut self.truncated, false);
        Ok(Reopened {
            records: recovery.records,
            torn: recovery.torn,
            written,
            reported,
            truncated,
            snapshot,
        })
    }

    /// A reader of the snapshot file `upto` (complete and checked).
    pub(crate) fn snapshot_reader(&self, upto: Slot) -> Result<SnapshotReader, SnapshotError> {
        SnapshotReader::open_with(&self.fs, &Path::new(DIR).join(snapshot_file_name(upto.0)))
    }

    /// Starts writing a snapshot at `upto` (its body goes to a temporary
    /// file now, unsynced); [`Disk::finish_snapshot`] completes it at `done_at`.
    pub(crate) fn start_snapshot(
        &mut self,
        upto: Slot,
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
        done_at: u64,
    ) -> Result<(), SnapshotError> {
        self.writing = None;
        let mut writer = SnapshotWriter::create_with(Arc::new(self.fs.clone()), DIR, upto.0)?;
        write(&mut writer).map_err(|e| SnapshotError::from_io(e, Path::new(DIR)))?;
        self.writing = Some((writer, done_at));
        Ok(())
    }

    /// Finishes the snapshot being written if it is due: `Some((slot, result))`.
    pub(crate) fn finish_snapshot(&mut self, now: u64) -> Option<(Slot, Result<(), SnapshotError>)> {
        if self.writing.as_ref().is_none_or(|(_, at)| *at > now) {
            return None;
        }
        let (writer, _) = self.writing.take().expect("checked above");
        let upto = Slot(writer.upto());
        let done = writer.finish().map(|file| {
            if let Some(store) = &mut self.snapshots {
                store.completed(upto.0, file.path);
            }
        });
        Some((upto, done))
    }

    /// Drops the log's whole segments below `below`.
    pub(crate) fn truncate(&mut self, below: Slot) -> Result<(), WriteError> {
        let wal = self.wal.as_mut().expect("only a running replica truncates");
        self.truncated = true;
        wal.truncate_prefix(below).map(drop)
    }

    /// A chunk of the newest snapshot for a peer: (slot, total, offset, bytes), as `Effect::SendSnapshot` asks.
    pub(crate) fn snapshot_chunk(
        &self,
        upto: Option<Slot>,
        offset: u64,
        max: usize,
    ) -> Option<(Slot, u64, u64, Vec<u8>)> {
        let chunk = self.snapshots.as_ref()?.chunk(upto.map(|u| u.0), offset, max).ok()??;
        Some((Slot(chunk.upto), chunk.total, chunk.offset, chunk.bytes))
    }

    /// Stores a received chunk in order; with the last one, checks the file
    /// and puts it in place: `Some(ok)` once the transfer ended.
    pub(crate) fn store_chunk(&mut self, upto: Slot, offset: u64, bytes: &[u8], last: bool) -> Option<bool> {
        match self.snapshots.as_mut()?.store(upto.0, offset, bytes, last) {
            Ok(None) => None,
            Ok(Some(_)) => Some(true),
            Err(_) => Some(false),
        }
    }

    /// The disk is replaced by an empty one (a lost disk, for an old identity).
    pub(crate) fn wipe(&mut self) {
        *self = Disk { sync_failures: self.sync_failures, ..Disk::default() };
    }

    /// Writes `records` as one batch now; they complete (are synced and
    /// reported) at `done_at`, and never before an earlier write.
    pub(crate) fn write(&mut self, token: PersistToken, records: Vec<LogRecord>, done_at: u64) {
        let wal = self.wal.as_mut().expect("only a running replica persists");
        // Writes are never failed here and a failed sync crashes the replica
        // at once, so a write can fail only through a bug; never go on after one.
        wal.append(&records).expect("a simulated log write fails only after a failed sync");
        let bytes = records.iter().map(|r| Prepared::new(r).map_or(0, |p| p.frame_len() as u64)).sum();
        let done_at = self.pending.back().map_or(done_at, |p| p.3.max(done_at));
        self.pending.push_back((token, records.len(), bytes, done_at));
        self.written.extend(records);
    }

    /// Completes the writes due by `now` with one sync, which fails with
    /// chance `fail_per_10k` in ten thousand (drawn from `rng` only when a sync is due).
    pub(crate) fn complete(&mut self, now: u64, fail_per_10k: u64, rng: &mut Rng) -> Completion {
        let Some(wal) = self.wal.as_mut() else { return Completion::Nothing };
        if self.pending.front().is_none_or(|p| p.3 > now) {
            return Completion::Nothing;
        }
        let fail = fail_per_10k > 0 && rng.range(0, 10_000) < fail_per_10k;
        self.fs.fail_syncs(fail);
        let synced = wal.sync();
        self.fs.fail_syncs(false);
        if let Err(e) = synced {
            self.sync_failures += 1;
            return Completion::SyncFailed(e);
        }
        let mut last = None;
        while self.pending.front().is_some_and(|p| p.3 <= now) {
            let (token, records, _, _) = self.pending.pop_front().expect("front exists");
            self.reported += records;
            last = Some(token);
        }
        last.map_or(Completion::Nothing, Completion::Durable)
    }

    /// How many syncs failed.
    pub(crate) fn sync_failures(&self) -> u64 {
        self.sync_failures
    }

    /// A crash (or a node stopping after a failed fsync): the log is dropped
    /// and the file system loses what a crash in the drawn mode loses.
    pub(crate) fn crash(&mut self, rng: &mut Rng) -> Crash {
        self.wal = None;
        // A snapshot write or transfer in progress is cut short: its temporary
        // file stays as the crash leaves it, for the restart to clear.
        if let Some((writer, _)) = self.writing.take() {
            writer.abandon();
        }
        if let Some(store) = self.snapshots.take() {
            store.abandon();
        }
        let last_write = self.pending.back().map_or(0, |p| p.2);
        self.pending.clear();
        let mode = match rng.range(0, 4) {
            0 => Crash::LoseUnsynced,
            1 => Crash::KeepUnsynced,
            2 => Crash::TearLastWrite { keep: rng.index(last_write as usize + 1) },
            _ => Crash::Sectors { seed: rng.next_u64() },
        };
        self.fs.crash(mode);
        mode
    }
}
