//! The apply thread: committed slots -> Applier -> replies to waiting clients.

use std::sync::Arc;
use synod_metrics::names;

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use synod_state_machine::{Applier, StateMachine};
use synod_transport::Node;
use synod_wire::{ClientReply, Slot, Value, Wire};

use crate::replica::{Routes, Status};

/// Work for the apply thread.
#[derive(Debug)]
pub(crate) enum ApplyJob {
    /// A chosen slot, in order.
    Commit { slot: Slot, value: Value },
}

pub(crate) fn run<S: StateMachine>(
    mut applier: Applier<S>,
    jobs: Receiver<ApplyJob>,
    transport: Arc<Node>,
    routes: Routes,
    status: Arc<Mutex<Status>>,
    stop_replica: Arc<AtomicBool>,
) {
    let stop = |why: String| {
        tracing::error!(%why, "the apply thread stops; stopping the replica");
        status.lock().fatal = Some(why);
        stop_replica.store(true, Ordering::Release);
    };
    while let Ok(job) = jobs.recv() {
        let ApplyJob::Commit { slot, value } = job;
        // A panicking state machine must not leave a replica that takes part
        // in consensus but no longer applies: stop the whole replica instead.
        // Only a replica with clients waiting (a leader, or one that just was) needs the replies.
        let answer = !routes.lock().is_empty();
        let applied_before = applier.stats().applied;
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if answer {
                applier.apply(slot, &value)
            } else {
                applier.apply_unanswered(slot, &value).map(|()| Vec::new())
            }
        }));
        let replies = match applied {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                // The core delivers in order; anything else is a bug worth stopping for.
                stop(format!("apply out of order: {e}"));
                return;
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                stop(format!("the state machine panicked applying slot {slot}: {what}"));
                return;
            }
        };
        if !replies.is_empty() {
            let mut routes = routes.lock();
            let ready: Vec<_> = replies
                .into_iter()
                .filter_map(|r| routes.remove(&r.origin).map(|route| (route, r.outcome)))
                .collect();
            drop(routes);
            for ((conn, id), outcome) in ready {
                match (ClientReply { id, outcome }).encode() {
                    Ok(frame) => {
                        // A client that went away simply misses its answer; it retries elsewhere.
                        let _ = transport.reply(conn, frame);
                    }
                    Err(e) => tracing::warn!(%e, "reply too large"),
                }
            }
        }
        // Counted by the applier: a follower's unanswered apply returns no replies to count.
        metrics::counter!(names::COMMANDS_APPLIED).increment(applier.stats().applied - applied_before);
        let mut s = status.lock();
        s.applied = applier.next_slot();
        s.digest = applier.digest();
        s.sessions = applier.sessions().len();
    }
}
