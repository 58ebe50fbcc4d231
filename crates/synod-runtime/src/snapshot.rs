//! The snapshot thread: writes snapshots the apply thread took, sends snapshot chunks to peers, stores received ones.
//!
//! The thread (`synod-snap-<id>`) does every snapshot file's IO, so none of
//! it runs on the transport thread, under the core's lock or on the apply
//! thread: writing a snapshot (from the frozen view the apply thread took,
//! while applies go on), reading a chunk to send a peer (queued on the
//! transport's bulk stream, behind nothing consensus needs), and storing
//! the chunks of one being received. Its results go back to the core as
//! [`SnapshotEvent`]s through the shell.
//!
//! The newest snapshot file and the one being received are synod-wal's
//! `SnapshotStore`, which the simulator keeps too. A received snapshot does
//! not remove older ones (the apply thread may not have installed it yet); a
//! written one does, as it is only asked for after every earlier install.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Receiver;
use synod_log::{SnapshotStore, SnapshotWriter};
use synod_metrics::names;
use synod_state_machine::AppliedSnapshot;
use synod_transport::Node;
use synod_wire::{Membership, Message, NodeId, Slot, Wire};

/// A writer that holds its pace at `per_second` bytes a second (on average
/// since `started`; 0: no pace), sleeping when it is ahead
/// (`SnapshotSettings::write_bytes_per_second`; docs/PERFORMANCE.md,
/// "Snapshots under load").
struct Paced<'a, W> {
    inner: &'a mut W,
    started: Instant,
    written: u64,
    per_second: u64,
}

impl<W: std::io::Write> std::io::Write for Paced<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.written += n as u64;
        keep_pace(self.started, self.written, self.per_second);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Sleeps while `written` bytes since `started` are ahead of `per_second`
/// (0: no pace) by more than 2 ms.
fn keep_pace(started: Instant, written: u64, per_second: u64) {
    if per_second == 0 {
        return;
    }
    let due = std::time::Duration::from_secs_f64(written as f64 / per_second as f64);
    if let Some(ahead) = due.checked_sub(started.elapsed()) {
        if ahead > std::time::Duration::from_millis(2) {
            std::thread::sleep(ahead);
        }
    }
}

/// Work for the snapshot thread.
pub(crate) enum SnapshotJob {
    /// Write a snapshot the apply thread took.
    Write(AppliedSnapshot),
    /// Send `to` a chunk of the newest snapshot (see `Effect::SendSnapshot`).
    Send { to: NodeId, upto: Option<Slot>, offset: u64 },
    /// Store a chunk of a snapshot being received (see `Effect::StoreSnapshotChunk`).
    Store { upto: Slot, offset: u64, bytes: Vec<u8>, last: bool },
}

/// What the snapshot thread reports to the core.
#[derive(Debug)]
pub(crate) enum SnapshotEvent {
    /// A snapshot was written and is durable.
    Taken { upto: Slot },
    /// A snapshot could not be written.
    Failed { upto: Slot },
    /// A received snapshot is complete: `ok` if it checked out and is in
    /// place, with the configuration it holds (`None`: configuration 0).
    Received { upto: Slot, ok: bool, membership: Option<Membership> },
}

/// The snapshot thread's state.
pub(crate) struct SnapshotThread {
    pub dir: PathBuf,
    pub transport: Arc<Node>,
    pub chunk_bytes: usize,
    /// The pace of writing a snapshot file, in bytes a second (0: none),
    /// and of sending one to a peer, which writes it as it arrives.
    pub write_bytes_per_second: u64,
    /// Per peer, the transfer under way: its snapshot, when it began, the bytes sent since.
    pub sending: HashMap<NodeId, (u64, Instant, u64)>,
    /// The newest snapshot file, and the one being received.
    pub store: SnapshotStore,
}

impl SnapshotThread {
    /// Runs jobs until the channel closes, reporting each result through `report`.
    pub(crate) fn run(mut self, jobs: Receiver<SnapshotJob>, mut report: impl FnMut(SnapshotEvent)) {
        // A snapshot is seconds of CPU for a large state (sorting, copying,
        // checksumming); on a busy machine it should take the time consensus
        // and applies leave over, not theirs. Nice 11 (a weight about a tenth
        // of a normal thread's) still lets it finish under full load.
        let nice = thread_priority::ThreadPriorityValue::try_from(20u8).expect("in 0..=99");
        if let Err(e) =
            thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Crossplatform(nice))
        {
            tracing::warn!(
                ?e,
                "cannot lower the snapshot thread's priority; snapshots compete with applies for the CPU"
            );
        }
        let sent = metrics::counter!(names::SNAPSHOT_BYTES_SENT);
        while let Ok(job) = jobs.recv() {
            match job {
                SnapshotJob::Write(snapshot) => report(self.write(snapshot)),
                SnapshotJob::Send { to, upto, offset } => {
                    if let Some(n) = self.send(to, upto, offset) {
                        sent.increment(n);
                    }
                }
                SnapshotJob::Store { upto, offset, bytes, last } => {
                    if let Some(event) = self.store(upto, offset, &bytes, last) {
                        report(event);
                    }
                }
            }
        }
    }

    fn write(&mut self, snapshot: AppliedSnapshot) -> SnapshotEvent {
        let upto = snapshot.upto();
        let started = Instant::now();
        let written = SnapshotWriter::create(&self.dir, upto.0).and_then(|mut writer| {
            // The writer buffers small writes itself and passes large ones
            // (a buffered state machine's) straight to the file.
            let per_second = self.write_bytes_per_second;
            let mut paced = Paced { inner: &mut writer, started, written: 0, per_second };
            snapshot.write_to(&mut paced).map_err(|e| synod_log::SnapshotError::from_io(e, &self.dir))?;
            writer.finish()
        });
        match written {
            Ok(file) => {
                let took = started.elapsed();
                let bytes = std::fs::metadata(&file.path).map_or(0, |m| m.len());
                metrics::counter!(names::SNAPSHOTS_TAKEN).increment(1);
                metrics::histogram!(names::SNAPSHOT_SECONDS).record(took.as_secs_f64());
                metrics::gauge!(names::SNAPSHOT_BYTES).set(bytes as f64);
                metrics::gauge!(names::SNAPSHOT_SLOT).set(upto.0 as f64);
                tracing::info!(%upto, bytes, ms = took.as_millis() as u64, "snapshot written");
                self.store.completed(upto.0, file.path);
                SnapshotEvent::Taken { upto }
            }
            Err(e) => {
                metrics::counter!(names::SNAPSHOTS_FAILED).increment(1);
                tracing::error!(%upto, %e, "a snapshot could not be written; the log is kept until the next one");
                SnapshotEvent::Failed { upto }
            }
        }
    }

    /// Sends one chunk; returns the bytes sent.
    fn send(&mut self, to: NodeId, upto: Option<Slot>, offset: u64) -> Option<u64> {
        let chunk = match self.store.chunk(upto.map(|u| u.0), offset, self.chunk_bytes) {
            Ok(chunk) => chunk?,
            Err(e) => {
                tracing::warn!(%e, "cannot read a snapshot chunk to send");
                return None;
            }
        };
        let n = chunk.bytes.len() as u64;
        // Sent at the pace a snapshot is written at: the peer writes each chunk as it
        // comes, on a disk its log shares, and asks for the next one at once.
        let (started, sent) = match self.sending.get(&to) {
            Some(&(u, started, sent)) if chunk.offset > 0 && u == chunk.upto => (started, sent),
            _ => (Instant::now(), 0),
        };
        let sent = sent + n;
        if chunk.offset + n >= chunk.total {
            self.sending.remove(&to);
        } else {
            self.sending.insert(to, (chunk.upto, started, sent));
        }
        keep_pace(started, sent, self.write_bytes_per_second);
        let msg = Message::SnapshotChunk {
            upto: Slot(chunk.upto),
            total: chunk.total,
            offset: chunk.offset,
            bytes: chunk.bytes,
        };
        match msg.encode() {
            Ok(frame) => {
                // The bulk stream: heartbeats and consensus traffic never queue behind it.
                let _ = self.transport.send_bulk(to, Bytes::from(frame));
                Some(n)
            }
            Err(e) => {
                tracing::error!(%e, "a snapshot chunk did not encode");
                None
            }
        }
    }

    fn store(&mut self, upto: Slot, offset: u64, bytes: &[u8], last: bool) -> Option<SnapshotEvent> {
        match self.store.store(upto.0, offset, bytes, last) {
            Ok(None) => None,
            Ok(Some(file)) => {
                // The core needs the configuration in force at the snapshot
                // before the state is installed: it is at the head of the body.
                let membership = match read_membership(&file.path) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(%upto, %e, "a received snapshot's configuration does not read; asking for it again");
                        return Some(SnapshotEvent::Received { upto, ok: false, membership: None });
                    }
                };
                tracing::info!(%upto, path = %file.path.display(), epoch = membership.as_ref().map_or(0, |m| m.epoch), "snapshot received and checked");
                metrics::gauge!(names::SNAPSHOT_BYTES).set((file.body_len + 32) as f64);
                metrics::gauge!(names::SNAPSHOT_SLOT).set(upto.0 as f64);
                Some(SnapshotEvent::Received { upto, ok: true, membership })
            }
            Err(e) => {
                tracing::warn!(%upto, %e, "a received snapshot was dropped; asking for it again");
                Some(SnapshotEvent::Received { upto, ok: false, membership: None })
            }
        }
    }
}

/// The configuration a snapshot file holds (`None`: configuration 0), read
/// from the head of its body.
fn read_membership(path: &std::path::Path) -> Result<Option<Membership>, String> {
    let reader = synod_log::SnapshotReader::open(path).map_err(|e| e.to_string())?;
    let mut input = std::io::BufReader::with_capacity(64 << 10, reader);
    synod_state_machine::snapshot_membership(&mut input).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn write_paced(per_second: u64, bytes: usize) -> std::time::Duration {
        let mut sink = Vec::new();
        let mut paced = Paced { inner: &mut sink, started: Instant::now(), written: 0, per_second };
        for chunk in vec![0u8; bytes].chunks(64 << 10) {
            paced.write_all(chunk).unwrap();
        }
        let took = paced.started.elapsed();
        assert_eq!(sink.len(), bytes);
        took
    }

    #[test]
    fn a_paced_writer_keeps_to_its_rate_and_zero_is_no_pace() {
        // 4 MiB at 40 MiB/s: about 100 ms, less the last sleep's 2 ms slack.
        let took = write_paced(40 << 20, 4 << 20);
        assert!(took >= std::time::Duration::from_millis(95), "{took:?}");
        let took = write_paced(0, 4 << 20);
        assert!(took < std::time::Duration::from_millis(95), "{took:?}");
    }
}
