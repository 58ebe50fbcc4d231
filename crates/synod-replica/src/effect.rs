//! What the replica core asks its driver to do: the closed set of outputs drained by `poll_effect`.

use synod_paxos::PersistToken;
use synod_wire::{Ballot, ClientReply, LogRecord, Membership, Message, NodeId, Slot, Value};

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
    /// proposed), `Busy` (admission control), or a failed proposal's answer.
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
    /// A new configuration is in force from slot `from` on (its stop sign
    /// was applied just before, as an [`Effect::Apply`]): connect to the
    /// members it names, drop peers it no longer names. With `removed`,
    /// this replica is no longer a member: it votes for nothing more; log
    /// it and report it in status, but keep it running until
    /// [`Effect::Retire`] (its peers may still need to learn from it).
    Reconfigured {
        /// The configuration.
        membership: Membership,
        /// Its first slot.
        from: Slot,
        /// This replica was removed.
        removed: bool,
    },
    /// Serve a read: once every slot below `index` is applied (their
    /// [`Effect::Apply`]s came before this effect), answer `id` on `conn`
    /// with the state machine's answer to `query` (`StateMachine::read`).
    Read {
        /// The client's connection.
        conn: C,
        /// The client's request id.
        id: u64,
        /// The query.
        query: Vec<u8>,
        /// The read index: every slot below it must be applied first.
        index: Slot,
    },
    /// This replica was removed and every member of the configuration that
    /// removed it knows so (or long enough has passed): stop it. Until this
    /// effect it must keep running, answering its peers.
    Retire,
    /// Snapshot the state machine at `upto`: once every slot below `upto`
    /// is applied (they came before this effect) and before any later slot,
    /// take the state, write it to a snapshot file (synced, renamed, the
    /// directory synced), then call [`crate::ReplicaCore::handle_snapshot_taken`]
    /// (or [`crate::ReplicaCore::handle_snapshot_failed`]). Applying may go on
    /// while the file is written, from a frozen view of the state.
    TakeSnapshot {
        /// Every slot below this one is in the snapshot.
        upto: Slot,
    },
    /// The snapshot record before this effect is logged: drop the log's
    /// whole segments holding only slots below `below` (after the earlier
    /// writes, in order with them).
    TruncateLog {
        /// Slots below this one may go from the log.
        below: Slot,
    },
    /// Send replica `to` a [`Message::SnapshotChunk`] of this replica's
    /// newest snapshot file: from `offset` if that file is the snapshot
    /// `upto`, else (another snapshot was asked for, or none: `upto` is
    /// `None`) from offset 0 of the newest. At most the configured chunk
    /// size; nothing if there is no snapshot file.
    SendSnapshot {
        /// The replica behind.
        to: NodeId,
        /// The snapshot it is receiving, if it named one.
        upto: Option<Slot>,
        /// The first byte it wants.
        offset: u64,
    },
    /// Store a piece of snapshot `upto` received from a peer, in order:
    /// offset 0 starts a new file (dropping any earlier partial one). With
    /// `last`, sync it, check its CRC, make it the newest snapshot (rename,
    /// directory sync) and call [`crate::ReplicaCore::handle_snapshot_received`]
    /// with whether it checked out. Nothing is restored yet.
    StoreSnapshotChunk {
        /// The snapshot's slot.
        upto: Slot,
        /// Where `bytes` go in the file.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
        /// Whether the file is complete with these bytes.
        last: bool,
    },
    /// Replace the state machine's state with the received snapshot `upto`
    /// (stored and checked, [`Effect::StoreSnapshotChunk`]), before applying
    /// anything that comes after this effect: the next slot applied is `upto`.
    InstallSnapshot {
        /// The snapshot's slot.
        upto: Slot,
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
