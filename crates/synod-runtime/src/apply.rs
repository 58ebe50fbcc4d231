//! The apply thread: chosen slots -> Applier (sessions + your StateMachine) -> answers to the clients waiting on them.
//!
//! The thread (`synod-apply-<id>`) owns the [`Applier`]: nothing else touches
//! it, so it needs no lock. Slots arrive in order on a channel from the
//! shell, each with the clients waiting on it (keyed by the slot their
//! request was proposed in, as the pure replica layer carried them), and
//! [`synod_replica::route_replies`] decides which answer goes to whom. A slow
//! or panicking state machine delays or stops answers, never consensus: the
//! user's `apply` never runs under the core's lock or on the transport
//! thread (decision 0007).
//!
//! Reads outside the log come on the same channel (`ApplyJob::Read`), after
//! the applies of every slot below their read index, and are answered from
//! the applier's state ([`Applier::read`]) between two applies. A state
//! machine whose reads are quick ([`StateMachine::quick_reads`]) has them
//! served without that hand-off when it can be ([`InlineReads`]): by the
//! thread that got the read its index, once the lock of the core is
//! released, if the apply thread is between two jobs and has applied that
//! far; otherwise they take the channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use synod_metrics::names;
use synod_state_machine::{Applier, StateMachine};
use synod_transport::{ClientConnId, Node};
use synod_wire::{ClientReply, Outcome, Slot, Wire};

use crate::shell::ApplyJob;
use crate::snapshot::SnapshotJob;
use crate::stats;
use crate::status::Status;

/// The applier, shared by the apply thread (each job holds the lock) and,
/// for quick reads, by [`InlineReads`] (which only tries the lock).
pub(crate) type SharedApplier<S> = Arc<Mutex<Applier<S>>>;

/// What the apply thread needs besides its applier.
pub(crate) struct ApplyThread<S> {
    pub applier: SharedApplier<S>,
    pub transport: Arc<Node>,
    pub status: Arc<Mutex<Status>>,
    pub stop_replica: Arc<AtomicBool>,
    /// Where snapshots taken here are written.
    pub snapshots: Sender<SnapshotJob>,
    /// The data directory, where received snapshots are installed from.
    pub data_dir: std::path::PathBuf,
}

impl<S: StateMachine> ApplyThread<S> {
    /// Applies each slot in turn until the channel closes (the core stopped) or a slot fails.
    pub(crate) fn run(self, jobs: Receiver<ApplyJob>) {
        let applied_counter = metrics::counter!(names::COMMANDS_APPLIED);
        let counters = ReadCounters::new();
        while let Ok(job) = jobs.recv() {
            let mut applier = self.applier.lock();
            let applied_before = applier.stats().applied;
            let ok = match job {
                ApplyJob::Apply(job) => self.apply(&mut applier, job),
                ApplyJob::Snapshot { upto } => {
                    // A frozen view, cheap to take; the snapshot thread writes it while applies go on.
                    let snapshot = applier.snapshot_source();
                    if snapshot.upto() != upto {
                        tracing::warn!(asked = %upto, at = %snapshot.upto(), "snapshot taken at another slot than asked");
                    }
                    let _ = self.snapshots.send(SnapshotJob::Write(snapshot));
                    true
                }
                ApplyJob::Install { upto } => self.install(&mut applier, upto),
                ApplyJob::Read { conn, id, query, index } => {
                    let outcome = read(&applier, &query, index, &counters);
                    drop(applier);
                    answer(&self.transport, conn, id, outcome);
                    // A read changes nothing: no status to update.
                    continue;
                }
            };
            if !ok {
                return;
            }
            // Counted by the applier: a follower's unanswered apply returns no replies to count.
            applied_counter.increment(applier.stats().applied - applied_before);
            let mut s = self.status.lock();
            s.applied = applier.next_slot();
            s.digest = applier.digest();
            s.sessions = applier.sessions().len();
        }
    }

    /// Applies one slot and answers its waiting clients; false if it failed and the replica stops.
    fn apply(
        &self,
        applier: &mut Applier<S>,
        job: synod_replica::Apply<synod_transport::ClientConnId>,
    ) -> bool {
        // Only a slot someone here waits on needs replies built.
        let answer = !job.waiters.is_empty();
        // A panicking state machine must not leave a replica that takes part
        // in consensus but no longer applies: stop the whole replica instead.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if answer {
                applier.apply(job.slot, &job.value)
            } else {
                applier.apply_unanswered(job.slot, &job.value).map(|()| Vec::new())
            }
        }));
        let replies = match applied {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                // The core delivers in order; anything else is a bug worth stopping for.
                self.stop(format!("apply out of order: {e}"));
                return false;
            }
            Err(panic) => {
                let what = panic_message(&*panic);
                self.stop(format!("the state machine panicked applying slot {}: {what}", job.slot));
                return false;
            }
        };
        if answer {
            for (conn, reply) in synod_replica::route_replies(job.waiters, replies, job.leader, job.routing) {
                match reply.encode() {
                    // A client that went away simply misses its answer; it retries elsewhere.
                    Ok(frame) => drop(self.transport.reply(conn, frame)),
                    Err(e) => tracing::warn!(%e, "reply too large"),
                }
            }
        }
        true
    }

    /// Replaces the state with the received snapshot `upto`, stored and checked by the snapshot thread.
    fn install(&self, applier: &mut Applier<S>, upto: synod_wire::Slot) -> bool {
        let path = self.data_dir.join(synod_log::snapshot_file_name(upto.0));
        let started = std::time::Instant::now();
        let installed =
            synod_log::SnapshotReader::open(&path).map_err(|e| e.to_string()).and_then(|reader| {
                let mut input = std::io::BufReader::with_capacity(1 << 20, reader);
                applier.install_from(&mut input).map_err(|e| e.to_string())
            });
        match installed {
            Ok(()) if applier.next_slot() == upto => {
                tracing::info!(%upto, ms = started.elapsed().as_millis() as u64, "installed a snapshot from a peer");
                true
            }
            Ok(()) => {
                let at = applier.next_slot();
                self.stop(format!("the snapshot {} holds slots up to {at}, not {upto}", path.display()));
                false
            }
            Err(e) => {
                self.stop(format!("cannot install the snapshot {}: {e}", path.display()));
                false
            }
        }
    }

    fn stop(&self, why: String) {
        tracing::error!(%why, "applying stopped; stopping the replica");
        self.status.lock().fatal = Some(why);
        self.stop_replica.store(true, Ordering::Release);
    }
}

/// Serves quick reads ([`StateMachine::quick_reads`]) on the thread that got
/// their index, skipping the hand-off to the apply thread when the applier is
/// free and has applied that far.
pub(crate) trait InlineReads: Send + Sync {
    /// Answers read `id` on `conn` at once if it can; false: it did not, and
    /// the read must take the apply channel.
    fn try_read(&self, conn: ClientConnId, id: u64, query: &[u8], index: Slot) -> bool;
}

/// [`InlineReads`] over the apply thread's applier.
pub(crate) struct InlineReader<S> {
    pub applier: SharedApplier<S>,
    pub transport: Arc<Node>,
    pub counters: ReadCounters,
    /// The replica's stop flag: the apply thread raises it, still holding
    /// the applier, when an apply fails or panics, and a state left half
    /// applied must then answer no read.
    pub stopped: Arc<AtomicBool>,
}

impl<S: StateMachine + Send> InlineReads for InlineReader<S> {
    fn try_read(&self, conn: ClientConnId, id: u64, query: &[u8], index: Slot) -> bool {
        // Never wait for the apply thread: a busy applier means the channel is as quick.
        let Some(applier) = self.applier.try_lock() else { return false };
        if applier.next_slot() < index || self.stopped.load(Ordering::Acquire) {
            return false;
        }
        let outcome = read(&applier, query, index, &self.counters);
        drop(applier);
        answer(&self.transport, conn, id, outcome);
        true
    }
}

/// The answer to a read with read `index` from the state as applied so far.
fn read<S: StateMachine>(
    applier: &Applier<S>,
    query: &[u8],
    index: Slot,
    counters: &ReadCounters,
) -> Outcome {
    let applied = applier.next_slot();
    if applied < index {
        // The core orders a read after the applies below its index; a
        // read served early could return an old value: never answer it.
        tracing::error!(%index, %applied, "a read arrived before its index was applied; not served");
        counters.failed.increment(1);
        return Outcome::Unavailable(format!("read index {index} not applied here yet; retry"));
    }
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| applier.read(query)));
    match answer {
        Ok(Some(payload)) => {
            counters.served.increment(1);
            Outcome::Applied { payload }
        }
        Ok(None) => {
            counters.failed.increment(1);
            Outcome::Unavailable("this state machine serves no reads outside the log".to_owned())
        }
        Err(panic) => {
            // A read changes nothing, so the replica goes on; the client is told, not given a value.
            let what = panic_message(&*panic);
            tracing::error!(%what, "the state machine panicked serving a read");
            counters.failed.increment(1);
            Outcome::Unavailable(format!("the state machine panicked serving the read: {what}"))
        }
    }
}

fn answer(transport: &Node, conn: ClientConnId, id: u64, outcome: Outcome) {
    match (ClientReply { id, outcome }).encode() {
        // A client that went away simply misses its answer; it retries elsewhere.
        Ok(frame) => drop(transport.reply(conn, frame)),
        Err(e) => tracing::warn!(%e, "read answer too large"),
    }
}

/// The read counters, looked up once.
pub(crate) struct ReadCounters {
    served: metrics::Counter,
    failed: metrics::Counter,
}

impl ReadCounters {
    pub(crate) fn new() -> ReadCounters {
        ReadCounters {
            served: metrics::counter!(stats::READS_SERVED),
            failed: metrics::counter!(stats::READS_FAILED),
        }
    }
}

/// What a panic said, if it said it as a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}
