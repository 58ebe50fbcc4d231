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

use synod_paxos::rng::Rng;
use synod_paxos::PersistToken;
use synod_wal::{Crash, FaultyFs, OpenError, Options, Prepared, TornTail, Wal, WriteError};
use synod_wire::LogRecord;

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
    pub(crate) fn open(&mut self) -> Result<Reopened, OpenError> {
        self.wal = None;
        self.pending.clear();
        let options = Options::new().fs(self.fs.clone()).segment_size(SEGMENT_SIZE);
        let (wal, recovery) = Wal::open(DIR, options)?;
        self.wal = Some(wal);
        let written = std::mem::replace(&mut self.written, recovery.records.clone());
        let reported = std::mem::replace(&mut self.reported, recovery.records.len());
        Ok(Reopened { records: recovery.records, torn: recovery.torn, written, reported })
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
