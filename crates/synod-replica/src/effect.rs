//! What the replica core asks its driver to do: the closed set of outputs drained by `poll_effect`.

use synod_paxos::PersistToken;
use synod_wire::{Ballot, ClientReply, LogRecord, Message, NodeId, Slot, Value};

use crate::route::{Routing, Waiter};

/// One thing the driver must do. Effects come out of
/// [`crate::ReplicaCore::poll_effect`] in the order they must be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<C> {
    /// Send `msg` to replica `to`. Delivery may fail; the Paxos core retries what matters.
    Send {
        /// The destination replica.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Append `records` to the log, make them durable, then call
    /// [`crate::ReplicaCore::handle_persisted`] with `token` (which reports
    /// every earlier token too). Records become durable in effect order.
    Persist {
        /// The records, in order.
        records: Vec<LogRecord>,
        /// The token to report.
        token: PersistToken,
    },
    /// A chosen slot to apply. Slots come in order, without gaps, each once
    /// per core instance; answer the waiters with [`crate::route_replies`].
    Apply(Apply<C>),
    /// Answer a client connection now, without the log: `Redirect` (this
    /// replica does not lead, or stopped leading before the request was
    /// proposed), `Busy` (too much queued), or a failed proposal's answer.
    Reply {
        /// The client's connection.
        conn: C,
        /// The answer.
        reply: ClientReply,
    },
    /// The replica this one believes leads changed (`None`: no leader known).
    /// On a step-down the queued requests were answered `Redirect` (as
    /// [`Effect::Reply`]s right after this effect).
    LeaderChanged {
        /// The leader, or `None`.
        leader: Option<NodeId>,
        /// The leader's ballot.
        ballot: Ballot,
        /// Whether this replica now leads and proposes.
        is_self: bool,
    },
    /// This replica proposed a batch of `commands` commands in `slot`: for the
    /// batch-size histogram and traces. Nothing to do.
    Proposed {
        /// The slot the batch was proposed in.
        slot: Slot,
        /// How many commands the batch holds.
        commands: usize,
    },
}

/// A chosen slot, with the clients waiting on it at this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apply<C> {
    /// The slot.
    pub slot: Slot,
    /// The chosen value: a batch, or a no-op.
    pub value: Value,
    /// The clients waiting on the batch this replica proposed in this slot
    /// (in any leadership). Empty on a follower. The chosen value need not
    /// be the proposed one: [`crate::route_replies`] redirects the waiters
    /// the applied value does not answer.
    pub waiters: Vec<Waiter<C>>,
    /// The caller's `Now::mono_us` when this replica proposed this slot, if
    /// it did so in its current leadership (`None` on followers, for slots a
    /// new leader re-proposed in Phase 1, and for slots proposed before the
    /// last leader change): the start of the commit-latency measurement.
    pub proposed_at_us: Option<u64>,
    /// The leader this replica believed in when the slot was committed: the
    /// hint for waiters that get `Redirect`.
    pub leader: Option<NodeId>,
    /// How to route the replies: pass it to [`crate::route_replies`].
    pub routing: Routing,
}
