//! The apply thread: committed slots -> Applier -> replies to waiting clients.

use std::sync::Arc;
use synod_metrics::names;

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
) {
    while let Ok(job) = jobs.recv() {
        let ApplyJob::Commit { slot, value } = job;
        let replies = match applier.apply(slot, &value) {
            Ok(r) => r,
            Err(e) => {
                // The core delivers in order; anything else is a bug worth stopping for.
                tracing::error!(%e, "apply out of order");
                status.lock().fatal = Some(e.to_string());
                return;
            }
        };
        let commands = replies.len() as u64;
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
        metrics::counter!(names::COMMANDS_APPLIED).increment(commands);
        let mut s = status.lock();
        s.applied = applier.next_slot();
        s.digest = applier.digest();
        s.sessions = applier.sessions().len();
    }
}
