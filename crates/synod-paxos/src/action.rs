//! What the core asks its driver to do: the closed set of outputs drained by `poll_action`.

use synod_wire::{Ballot, LogRecord, Message, NodeId, Slot, Value};

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
