//! Applying committed slots: committed slots -> Applier -> replies to waiting clients.
//!
//! The apply thread (`synod-apply-<id>`) applies what the core hands it, so
//! that a slow state machine delays answers but not consensus. When that
//! thread has nothing left to do, a committed slot is small and slots have
//! lately applied in microseconds, the thread that committed the slot applies
//! it itself instead (`InlineApply::try_inline`): at one request at a time
//! that saves the wake-up of the apply thread and the one of the transport
//! for the answer, each a cross-CPU interrupt on the VMs we measure on. A
//! state machine that turns slow goes back to its own thread after a slot or
//! two. Either way slots are applied one at a time, in order.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use synod_metrics::names;
use synod_state_machine::{Applier, StateMachine};
use synod_transport::Node;
use synod_wire::{ClientReply, Slot, Value, Wire};

use crate::replica::{Routes, Status};

/// The largest committed batch, in bytes, applied on the committing thread
/// rather than the apply thread: a few commands, microseconds of work.
const MAX_INLINE_BYTES: usize = 4096;

/// Slots are applied inline only while their recent average apply time is below this.
const MAX_INLINE_NANOS: u64 = 50_000;

/// Work for the apply thread.
#[derive(Debug)]
pub(crate) enum ApplyJob {
    /// A chosen slot, in order.
    Commit { slot: Slot, value: Value },
}

/// Hands committed slots to be applied: on the calling thread when the apply
/// thread is idle and the slot small, else to the apply thread.
pub(crate) struct Committer {
    inline: Arc<dyn InlineApply>,
    jobs: Sender<ApplyJob>,
}

impl Committer {
    /// Applies `slot` now or queues it; slots must come in order.
    pub(crate) fn commit(&self, slot: Slot, value: Value) {
        if !self.inline.try_inline(slot, &value) {
            self.inline.queued();
            // After a stop the apply thread is gone; nothing is left to apply to.
            let _ = self.jobs.send(ApplyJob::Commit { slot, value });
        }
    }
}

/// What the core's thread sees of [`Apply`], whatever the state machine.
trait InlineApply: Send + Sync {
    /// Applies `slot` on the calling thread if nothing is queued for the
    /// apply thread and the slot is small; whether it did.
    fn try_inline(&self, slot: Slot, value: &Value) -> bool;
    /// Counts a job about to be queued for the apply thread.
    fn queued(&self);
}

/// The applier and everything applying needs, shared by the apply thread and inline applies.
pub(crate) struct Apply<S> {
    applier: Mutex<Applier<S>>,
    /// Jobs queued for the apply thread and not yet applied.
    pending: AtomicUsize,
    /// A slot failed to apply: the replica is stopping and nothing more is applied.
    failed: AtomicBool,
    /// A moving average of the time one slot took to apply, in nanoseconds.
    apply_nanos: AtomicU64,
    /// Whether inline applies are allowed at all (`ReplicaConfig::inline_apply`).
    inline: bool,
    transport: Arc<Node>,
    routes: Routes,
    status: Arc<Mutex<Status>>,
    stop_replica: Arc<AtomicBool>,
    /// Commands applied, looked up in the metrics registry once.
    applied_counter: metrics::Counter,
}

impl<S: StateMachine + Send + 'static> Apply<S> {
    pub(crate) fn new(
        applier: Applier<S>,
        inline: bool,
        transport: Arc<Node>,
        routes: Routes,
        status: Arc<Mutex<Status>>,
        stop_replica: Arc<AtomicBool>,
    ) -> Arc<Apply<S>> {
        Arc::new(Apply {
            applier: Mutex::new(applier),
            pending: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            apply_nanos: AtomicU64::new(0),
            inline,
            transport,
            routes,
            status,
            stop_replica,
            applied_counter: metrics::counter!(names::COMMANDS_APPLIED),
        })
    }

    /// The core's side: applies inline when it can, else queues on `jobs`.
    pub(crate) fn committer(self: &Arc<Self>, jobs: Sender<ApplyJob>) -> Committer {
        Committer { inline: self.clone(), jobs }
    }

    /// The apply thread: applies each queued slot until the channel closes or a slot fails.
    pub(crate) fn run(&self, jobs: Receiver<ApplyJob>) {
        while let Ok(ApplyJob::Commit { slot, value }) = jobs.recv() {
            let ok = self.apply(&mut self.applier.lock(), slot, &value);
            // Counted down only once applied and unlocked: zero means an inline apply comes next in order.
            self.pending.fetch_sub(1, Ordering::AcqRel);
            if !ok {
                return;
            }
        }
    }

    /// Applies one slot and answers its waiting clients; false if it failed and the replica stops.
    fn apply(&self, applier: &mut Applier<S>, slot: Slot, value: &Value) -> bool {
        if self.failed.load(Ordering::Acquire) {
            return false;
        }
        // A panicking state machine must not leave a replica that takes part
        // in consensus but no longer applies: stop the whole replica instead.
        // Only a replica with clients waiting (a leader, or one that just was) needs the replies.
        let answer = !self.routes.lock().is_empty();
        let applied_before = applier.stats().applied;
        let started = Instant::now();
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if answer {
                applier.apply(slot, value)
            } else {
                applier.apply_unanswered(slot, value).map(|()| Vec::new())
            }
        }));
        let took = started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        let average = self.apply_nanos.load(Ordering::Relaxed);
        self.apply_nanos.store(average - average / 4 + took / 4, Ordering::Relaxed);
        let replies = match applied {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                // The core delivers in order; anything else is a bug worth stopping for.
                self.stop(format!("apply out of order: {e}"));
                return false;
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                self.stop(format!("the state machine panicked applying slot {slot}: {what}"));
                return false;
            }
        };
        if !replies.is_empty() {
            let mut routes = self.routes.lock();
            let ready: Vec<_> = replies
                .into_iter()
                .filter_map(|r| routes.remove(&r.origin).map(|route| (route, r.outcome)))
                .collect();
            drop(routes);
            for ((conn, id), outcome) in ready {
                match (ClientReply { id, outcome }).encode() {
                    Ok(frame) => {
                        // A client that went away simply misses its answer; it retries elsewhere.
                        let _ = self.transport.reply(conn, frame);
                    }
                    Err(e) => tracing::warn!(%e, "reply too large"),
                }
            }
        }
        // Counted by the applier: a follower's unanswered apply returns no replies to count.
        self.applied_counter.increment(applier.stats().applied - applied_before);
        let mut s = self.status.lock();
        s.applied = applier.next_slot();
        s.digest = applier.digest();
        s.sessions = applier.sessions().len();
        true
    }

    fn stop(&self, why: String) {
        tracing::error!(%why, "applying stopped; stopping the replica");
        self.failed.store(true, Ordering::Release);
        self.status.lock().fatal = Some(why);
        self.stop_replica.store(true, Ordering::Release);
    }
}

impl<S: StateMachine + Send + 'static> InlineApply for Apply<S> {
    fn try_inline(&self, slot: Slot, value: &Value) -> bool {
        let small = match value {
            Value::Batch(bytes) => bytes.len() <= MAX_INLINE_BYTES,
            Value::Noop => true,
        };
        // Slots are handed over in order by one thread at a time (the core's
        // lock), so nothing pending means every earlier slot is applied.
        if !self.inline
            || !small
            || self.pending.load(Ordering::Acquire) != 0
            || self.failed.load(Ordering::Acquire)
            || self.apply_nanos.load(Ordering::Relaxed) > MAX_INLINE_NANOS
        {
            return false;
        }
        let Some(mut applier) = self.applier.try_lock() else { return false };
        self.apply(&mut applier, slot, value);
        true
    }

    fn queued(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }
}
