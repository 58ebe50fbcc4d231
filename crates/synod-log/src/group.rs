//! Group commit: one thread owns the [`Wal`], and each fdatasync covers everything queued meanwhile.
//!
//! ```text
//!  Appender::append(records, token) --+            log thread
//!  Appender::append(records, token) --+--> channel --> drain all queued (up to a byte cap)
//!  Appender::append_wait(records) ----+               write them as one batch, one fdatasync
//!                                                     report the last token (it covers every earlier one)
//!                                                     (what arrived during the fsync waits for the next)
//! ```
//!
//! Callers encode their records on their own threads, so the log thread
//! does little besides framing, writing and syncing.
//!
//! When the log has been idle for a while, [`Appender::append_or_reserve`]
//! hands the append back as an [`InlineAppend`] for the caller to write and
//! sync on its own thread. At one request at a time that saves two thread
//! wake-ups per write, the hop to the log thread and the hop back, each a
//! cross-CPU interrupt on the VMs we measure on. The reservation holds the
//! log, so appends submitted meanwhile queue behind it, in order. A log that
//! wrote moments ago is busy enough for group commit to pay: writes then go
//! to the log thread, which gathers what arrives during each fsync.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::lock_api::ArcMutexGuard;
use parking_lot::{MappedMutexGuard, Mutex, MutexGuard, RawMutex};
use synod_wire::{LogRecord, Slot};

use crate::error::AppendError;
use crate::{FatalError, Prepared, Reader, Wal};

/// A write stops draining the queue once it holds this many bytes; the rest goes in the next one.
const MAX_WRITE_BYTES: usize = 8 << 20;

/// How long the log must have been idle for an append to be handed back
/// inline: about one fsync here. Appends closer together than that come
/// under load, where the log thread's grouping of them saves more than the
/// wake-ups an inline write would.
const IDLE_BEFORE_INLINE: Duration = Duration::from_micros(200);

/// What the log thread reports to its owner.
#[derive(Debug, Clone)]
pub enum LogEvent {
    /// The append submitted with this token is durable, and so is every one submitted before it.
    Durable(u64),
    /// A write or fsync failed. Reported once; the log accepts nothing more and the node must stop.
    Failed(Arc<FatalError>),
}

enum Msg {
    Append { records: Vec<Prepared>, done: Done },
    Truncate { upto: Slot },
    Shutdown,
}

enum Done {
    Token(u64),
    Wait(Sender<Result<(), Arc<FatalError>>>),
}

#[derive(Debug)]
struct Shared {
    failed: OnceLock<Arc<FatalError>>,
    /// Messages submitted to the log thread and not yet carried out (for an
    /// append: written and synced). Zero means everything submitted is durable.
    queued: AtomicUsize,
    /// When the last write finished, in nanoseconds since `epoch`; `u64::MAX` before the first.
    last_write: AtomicU64,
    epoch: Instant,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            failed: OnceLock::new(),
            queued: AtomicUsize::new(0),
            last_write: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        }
    }
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
    }

    /// Writes `items` as one batch and syncs them, for the log thread and
    /// inline appends alike, and notes when the write finished.
    fn write_synced(&self, wal: &mut Wal, items: &[Prepared]) -> Result<(), Arc<FatalError>> {
        let result = wal.write_batch(items).and_then(|()| wal.sync_batches());
        self.last_write.store(self.now(), Ordering::Release);
        result
    }

    /// Whether nothing is queued and no write finished within [`IDLE_BEFORE_INLINE`].
    fn idle(&self) -> bool {
        let last = self.last_write.load(Ordering::Acquire);
        self.queued.load(Ordering::Acquire) == 0
            && (last == u64::MAX || self.now().saturating_sub(last) >= IDLE_BEFORE_INLINE.as_nanos() as u64)
    }
}

/// The write-ahead log, shared by the log thread and inline appends; `None` once shut down.
type SharedWal = Arc<Mutex<Option<Wal>>>;

/// The group-commit thread. Dropping it (or [`GroupCommit::shutdown`]) flushes what is queued and stops the thread.
#[derive(Debug)]
pub struct GroupCommit {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    reader: Reader,
    wal: SharedWal,
    thread: Option<JoinHandle<()>>,
}

/// Submits records to the group-commit thread. Cheap to clone; never blocks on IO
/// (an [`InlineAppend`] it hands out does, in [`InlineAppend::finish`]).
#[derive(Debug, Clone)]
pub struct Appender {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    wal: SharedWal,
}

/// An append that found the log idle, reserved for its caller to write and
/// sync on its own thread with [`InlineAppend::finish`]. Until then it holds
/// the log: appends submitted meanwhile wait behind it. Finish it promptly,
/// after letting go of any lock the log's event handler takes. Dropped
/// unfinished, it is written and synced all the same, with nobody told.
/// Never stop or drop the [`GroupCommit`] on a thread that holds one: the log
/// thread would wait for the log it holds.
#[must_use = "an inline append holds the log until it is finished"]
pub struct InlineAppend {
    wal: ArcMutexGuard<RawMutex, Option<Wal>>,
    records: Vec<Prepared>,
    token: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for InlineAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineAppend")
            .field("records", &self.records.len())
            .field("token", &self.token)
            .finish()
    }
}

impl InlineAppend {
    /// Writes and syncs the records, releases the log, and returns what the
    /// log thread would have reported: [`LogEvent::Durable`] with the token
    /// (everything submitted before it is durable too), or the failure, which
    /// stops the log for good as a failure on the log thread does.
    pub fn finish(mut self) -> LogEvent {
        let event = self.write();
        self.records.clear();
        event
    }

    fn write(&mut self) -> LogEvent {
        let wal = self.wal.as_mut().expect("reserved only while the log is open");
        match self.shared.write_synced(wal, &self.records) {
            Ok(()) => LogEvent::Durable(self.token),
            Err(fatal) => {
                let _ = self.shared.failed.set(fatal.clone());
                LogEvent::Failed(fatal)
            }
        }
    }
}

impl Drop for InlineAppend {
    fn drop(&mut self) {
        if !self.records.is_empty() {
            drop(self.write());
        }
    }
}

impl GroupCommit {
    /// Starts the log thread for `wal`; it reports to `on_event` from that thread.
    ///
    /// `on_event` should be quick (e.g. send into the runtime's event
    /// channel): the next fsync waits for it.
    pub fn spawn(wal: Wal, on_event: impl FnMut(LogEvent) + Send + 'static) -> (GroupCommit, Appender) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::default());
        let reader = wal.reader();
        let wal: SharedWal = Arc::new(Mutex::new(Some(wal)));
        let (thread_shared, thread_wal) = (shared.clone(), wal.clone());
        let thread = std::thread::Builder::new()
            .name("synod-log".into())
            .spawn(move || run(&thread_wal, rx, &thread_shared, on_event))
            .expect("cannot start the log thread");
        let group = GroupCommit { tx, shared, reader, wal, thread: Some(thread) };
        let appender = group.appender();
        (group, appender)
    }

    /// Another handle to submit records.
    pub fn appender(&self) -> Appender {
        Appender { tx: self.tx.clone(), shared: self.shared.clone(), wal: self.wal.clone() }
    }

    /// A handle for catch-up reads.
    pub fn reader(&self) -> Reader {
        self.reader.clone()
    }

    /// The fatal error that stopped the log, if one did.
    pub fn failure(&self) -> Option<Arc<FatalError>> {
        self.shared.failed.get().cloned()
    }

    /// Writes and syncs everything submitted so far, stops the thread and hands the [`Wal`] back.
    pub fn shutdown(mut self) -> Wal {
        self.stop().expect("the log thread is joined only here or in drop")
    }

    fn stop(&mut self) -> Option<Wal> {
        let thread = self.thread.take()?;
        // If the thread already stopped after a failure, nobody listens: fine.
        let _ = self.tx.send(Msg::Shutdown);
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
        // Waits for an inline append in progress; later ones find the log closed.
        self.wal.lock().take()
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        }
    }
}

impl Appender {
    /// Queues `records` to be written as part of the next group commit; the
    /// log thread reports [`LogEvent::Durable`]`(token)` once they are durable.
    ///
    /// Encoding happens here, on the caller's thread. The log thread reports
    /// tokens in the order appends were submitted (through all clones of this
    /// appender). With [`Appender::append_or_reserve`] in use, a token the log
    /// thread writes after an inline append may be reported before the inline
    /// one reaches its caller's handler; every report still means that all
    /// earlier appends are durable.
    pub fn append(&self, records: Vec<LogRecord>, token: u64) -> Result<(), AppendError> {
        let prepared = self.prepare(&records)?;
        self.submit(Msg::Append { records: prepared, done: Done::Token(token) }, &records)
    }

    /// Appends `records` as [`Appender::append`] does, unless the log is idle
    /// (nothing submitted waits to be written or synced, and no write finished
    /// in the last 200 us): then the
    /// append comes back reserved, for the caller to write and sync on its own
    /// thread with [`InlineAppend::finish`], and the log thread reports nothing for it.
    pub fn append_or_reserve(
        &self,
        records: Vec<LogRecord>,
        token: u64,
    ) -> Result<Option<InlineAppend>, AppendError> {
        let prepared = self.prepare(&records)?;
        // Zero queued means every earlier submission is written and synced (the
        // log thread counts down only after its fsync), and holding the log
        // keeps the log thread from writing anything submitted after this.
        if self.shared.failed.get().is_none() && self.shared.idle() {
            if let Some(wal) = self.wal.try_lock_arc() {
                if wal.is_some() {
                    let shared = self.shared.clone();
                    return Ok(Some(InlineAppend { wal, records: prepared, token, shared }));
                }
            }
        }
        self.submit(Msg::Append { records: prepared, done: Done::Token(token) }, &records).map(|()| None)
    }

    /// Appends `records` and waits until they are durable (for benchmarks, tests and tools).
    pub fn append_wait(&self, records: &[LogRecord]) -> Result<(), AppendError> {
        let prepared = self.prepare(records)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(Msg::Append { records: prepared, done: Done::Wait(tx) }, records)?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(fatal)) => Err(AppendError::Stopped { fatal: Some(fatal), records: records.to_vec() }),
            Err(_) => Err(self.stopped(records)),
        }
    }

    /// Asks the log thread to drop whole segments below `upto` (see [`Wal::truncate_prefix`]),
    /// in order with the appends around it.
    pub fn truncate_prefix(&self, upto: Slot) -> Result<(), AppendError> {
        self.submit(Msg::Truncate { upto }, &[])
    }

    /// Encodes `records` on the caller's thread; a record that does not encode comes back in the error with the rest.
    fn prepare(&self, records: &[LogRecord]) -> Result<Vec<Prepared>, AppendError> {
        records
            .iter()
            .map(Prepared::new)
            .collect::<Result<_, _>>()
            .map_err(|source| AppendError::Encode { source, records: records.to_vec() })
    }

    fn submit(&self, msg: Msg, records: &[LogRecord]) -> Result<(), AppendError> {
        if self.shared.failed.get().is_some() {
            return Err(self.stopped(records));
        }
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(msg).map_err(|_| self.stopped(records))
    }

    fn stopped(&self, records: &[LogRecord]) -> AppendError {
        AppendError::Stopped { fatal: self.shared.failed.get().cloned(), records: records.to_vec() }
    }
}

fn run(wal: &Mutex<Option<Wal>>, rx: Receiver<Msg>, shared: &Shared, mut on_event: impl FnMut(LogEvent)) {
    let mut items: Vec<Prepared> = Vec::new();
    let mut dones: Vec<Done> = Vec::new();
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(msg) => msg,
            None => {
                if rx.is_empty() {
                    // The writers just told of durability are about to submit
                    // again; on few cores, let them run before the queue is drained.
                    std::thread::yield_now();
                }
                match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                }
            }
        };
        // Drain whatever is queued into one write.
        let mut control = None;
        let mut bytes = 0;
        let mut msg = Some(first);
        while let Some(m) = msg.take() {
            match m {
                Msg::Append { records, done } => {
                    bytes += records.iter().map(Prepared::frame_len).sum::<usize>();
                    items.extend(records);
                    dones.push(done);
                }
                other => {
                    control = Some(other);
                    break;
                }
            }
            if bytes >= MAX_WRITE_BYTES {
                break;
            }
            msg = rx.try_recv().ok();
        }
        if !dones.is_empty() {
            let result = shared.write_synced(&mut open(wal), &items);
            items.clear();
            if let Err(fatal) = result {
                fail(&fatal, shared, &mut on_event, dones.drain(..), &rx);
                break;
            }
            let written = dones.len();
            // One report per write: `Durable(t)` covers every earlier token,
            // and tokens come in submission order, so the last one says it all.
            let mut last = None;
            for done in dones.drain(..) {
                match done {
                    Done::Token(token) => last = Some(token),
                    // The waiter may have given up; nothing to tell it then.
                    Done::Wait(tx) => drop(tx.send(Ok(()))),
                }
            }
            if let Some(token) = last {
                on_event(LogEvent::Durable(token));
            }
            // Durable and reported: an inline append may go ahead once nothing
            // else is queued, and its report comes after these.
            shared.queued.fetch_sub(written, Ordering::AcqRel);
        }
        match control {
            None => {}
            Some(Msg::Truncate { upto }) => {
                let result = open(wal).truncate_prefix(upto);
                if let Err(crate::WriteError::Failed(fatal)) = result {
                    fail(&fatal, shared, &mut on_event, dones.drain(..), &rx);
                    break;
                }
                shared.queued.fetch_sub(1, Ordering::AcqRel);
            }
            Some(Msg::Shutdown) => break,
            Some(append @ Msg::Append { .. }) => next = Some(append),
        }
    }
}

/// The log, for the log thread: it is taken out only after that thread ends.
fn open(wal: &Mutex<Option<Wal>>) -> MappedMutexGuard<'_, Wal> {
    MutexGuard::map(wal.lock(), |wal| wal.as_mut().expect("the log is taken only after this thread ends"))
}

/// Reports a fatal error once and fails every waiter, queued or not; tokens are never reported.
fn fail(
    fatal: &Arc<FatalError>,
    shared: &Shared,
    on_event: &mut impl FnMut(LogEvent),
    dones: impl Iterator<Item = Done>,
    rx: &Receiver<Msg>,
) {
    // An inline append that failed first has told its caller already.
    if shared.failed.set(fatal.clone()).is_ok() {
        on_event(LogEvent::Failed(fatal.clone()));
    }
    let queued = rx.try_iter().filter_map(|m| match m {
        Msg::Append { done, .. } => Some(done),
        _ => None,
    });
    for done in dones.chain(queued) {
        if let Done::Wait(tx) = done {
            let _ = tx.send(Err(fatal.clone()));
        }
    }
}
