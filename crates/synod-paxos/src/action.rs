//! What the core asks its driver to do: the closed set of outputs drained by `poll_action`.

use synod_wire::{Ballot, LogRecord, Membership, Message, NodeId, Slot, Value};

/// Identifies one `Persist` action. Tokens increase by one per persist; the
/// driver reports durability in order, so reporting a token reports every
/// earlier one too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistToken(pub u64);

/// One thing the driver must do. Actions come out of
/// [`crate::Paxos::poll_action`] in the order they must be carried out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send `msg` to replica `to`. Delivery may fail; the core retries what matters.
    Send {
        /// The destination replica.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Append `records` to the log, make them durable, then call
    /// [`crate::Paxos::handle_persisted`] with `token`. Records must become
    /// durable in the order of the actions.
    Persist {
        /// The records, in order.
        records: Vec<LogRecord>,
        /// The token to report.
        token: PersistToken,
    },
    /// `slot` is chosen with `value`: apply it. Commits come strictly in slot
    /// order with no gaps, each slot once per core instance.
    Commit {
        /// The slot.
        slot: Slot,
        /// The chosen value.
        value: Value,
    },
    /// Replica `to` asked for slots this replica compacted: send it the
    /// newest snapshot (from offset 0, as `Message::SnapshotChunk`s).
    SnapshotWanted {
        /// The replica that is behind.
        to: NodeId,
    },
    /// A new configuration is in force: every slot from `from` on belongs to
    /// it. Update the address book: connect to members it adds, drop those
    /// it removes. `removed`: this replica was a member and is not in it; it
    /// takes no further part and its driver should stop it.
    Reconfigured {
        /// The configuration.
        membership: Membership,
        /// Its first slot (one past its stop sign; where a snapshot put
        /// this replica, if that is later).
        from: Slot,
        /// This replica was removed.
        removed: bool,
    },
    /// This replica was removed ([`Action::Reconfigured`] with `removed`)
    /// and every member of the configuration that removed it now knows
    /// that configuration (or long enough has passed): the driver may stop
    /// it. Until then it keeps answering its peers, so that none of them is
    /// left without a way to learn the stop sign that removed it.
    Retire,
    /// Read `id` ([`crate::Paxos::read`]) may be served from the state
    /// machine once every slot below `index` is applied there.
    ReadReady {
        /// The read.
        id: u64,
        /// Its read index.
        index: Slot,
    },
    /// Read `id` got no read index (no leader, a deposed leader, no answer
    /// in time): answer it with an error, never with the state as it is.
    ReadFailed {
        /// The read.
        id: u64,
    },
    /// The replica this core believes leads changed (`None`: no leader known).
    LeaderChanged {
        /// The leader, or `None`.
        leader: Option<NodeId>,
        /// The leader's ballot.
        ballot: Ballot,
        /// Whether this replica is now the leader and may propose.
        is_self: bool,
    },
}
