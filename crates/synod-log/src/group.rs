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
//! does little besides framing, writing and syncing. The log thread owns the
//! [`Wal`] until [`GroupCommit::shutdown`] hands it back: every append is
//! written and synced there, never on a caller's thread.

use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use synod_wire::{LogRecord, Slot};

use crate::error::AppendError;
use crate::{FatalError, Prepared, Reader, Wal};

/// A write stops draining the queue once it holds this many bytes; the rest goes in the next one.
const MAX_WRITE_BYTES: usize = 8 << 20;

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

/// What the log thread and every appender share: the failure that stopped the log, once there is one.
type Failed = Arc<OnceLock<Arc<FatalError>>>;

/// The group-commit thread. Dropping it (or [`GroupCommit::shutdown`]) flushes what is queued and stops the thread.
#[derive(Debug)]
pub struct GroupCommit {
    tx: Sender<Msg>,
    failed: Failed,
    reader: Reader,
    /// The log thread; it hands the [`Wal`] back when it ends.
    thread: Option<JoinHandle<Wal>>,
}

/// Submits records to the group-commit thread. Cheap to clone; never blocks on IO.
#[derive(Debug, Clone)]
pub struct Appender {
    tx: Sender<Msg>,
    failed: Failed,
}

impl GroupCommit {
    /// Starts the log thread for `wal`; it reports to `on_event` from that thread.
    ///
    /// `on_event` should be quick (e.g. send into the runtime's event
    /// channel): the next fsync waits for it.
    pub fn spawn(wal: Wal, on_event: impl FnMut(LogEvent) + Send + 'static) -> (GroupCommit, Appender) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let failed = Failed::default();
        let reader = wal.reader();
        let thread_failed = failed.clone();
        let thread = std::thread::Builder::new()
            .name("synod-log".into())
            .spawn(move || run(wal, rx, &thread_failed, on_event))
            .expect("cannot start the log thread");
        let group = GroupCommit { tx, failed, reader, thread: Some(thread) };
        let appender = group.appender();
        (group, appender)
    }

    /// Another handle to submit records.
    pub fn appender(&self) -> Appender {
        Appender { tx: self.tx.clone(), failed: self.failed.clone() }
    }

    /// A handle for catch-up reads.
    pub fn reader(&self) -> Reader {
        self.reader.clone()
    }

    /// The fatal error that stopped the log, if one did.
    pub fn failure(&self) -> Option<Arc<FatalError>> {
        self.failed.get().cloned()
    }

    /// Writes and syncs everything submitted so far, stops the thread and hands the [`Wal`] back.
    pub fn shutdown(mut self) -> Wal {
        self.stop().expect("the log thread is joined only here or in drop")
    }

    fn stop(&mut self) -> Option<Wal> {
        let thread = self.thread.take()?;
        // If the thread already stopped after a failure, nobody listens: fine.
        let _ = self.tx.send(Msg::Shutdown);
        match thread.join() {
            Ok(wal) => Some(wal),
            Err(panic) => std::panic::resume_unwind(panic),
        }
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
    /// appender), one report per write: the last token it covered, which
    /// means that every earlier append is durable too.
    pub fn append(&self, records: Vec<LogRecord>, token: u64) -> Result<(), AppendError> {
        let prepared = self.prepare(&records)?;
        self.submit(Msg::Append { records: prepared, done: Done::Token(token) }, &records)
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
        if self.failed.get().is_some() {
            return Err(self.stopped(records));
        }
        self.tx.send(msg).map_err(|_| self.stopped(records))
    }

    fn stopped(&self, records: &[LogRecord]) -> AppendError {
        AppendError::Stopped { fatal: self.failed.get().cloned(), records: records.to_vec() }
    }
}

/// The log thread: owns `wal` while it runs and hands it back when it ends.
fn run(
    mut wal: Wal,
    rx: Receiver<Msg>,
    failed: &OnceLock<Arc<FatalError>>,
    mut on_event: impl FnMut(LogEvent),
) -> Wal {
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
            let result = wal.write_batch(&items).and_then(|()| wal.sync_batches());
            items.clear();
            if let Err(fatal) = result {
                fail(&fatal, failed, &mut on_event, dones.drain(..), &rx);
                break;
            }
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
        }
        match control {
            None => {}
            Some(Msg::Truncate { upto }) => {
                let result = wal.truncate_prefix(upto);
                if let Err(crate::WriteError::Failed(fatal)) = result {
                    fail(&fatal, failed, &mut on_event, dones.drain(..), &rx);
                    break;
                }
            }
            Some(Msg::Shutdown) => break,
            Some(append @ Msg::Append { .. }) => next = Some(append),
        }
    }
    wal
}

/// Reports a fatal error once and fails every waiter, queued or not; tokens are never reported.
fn fail(
    fatal: &Arc<FatalError>,
    failed: &OnceLock<Arc<FatalError>>,
    on_event: &mut impl FnMut(LogEvent),
    dones: impl Iterator<Item = Done>,
    rx: &Receiver<Msg>,
) {
    if failed.set(fatal.clone()).is_ok() {
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
