//! The Multi-Paxos messages replicas exchange.
//!
//! See `docs/PROTOCOL.md` for the protocol these messages carry. The
//! transport authenticates the sender, so messages do not name it.

use rkyv::{Archive, Deserialize, Serialize};

use crate::{Ballot, Membership, Slot};

/// What a log slot holds: a batch of client commands, or nothing.
///
/// The ordering core treats a batch as opaque bytes; `synod-state-machine`
/// decodes them as a [`crate::Batch`]. The bytes are shared: the leader
/// hands one batch to its log, to every acceptor's message and to its own
/// applier, and each of those is a reference count, not a copy. The
/// encoding is the same as a `Vec<u8>`'s (a relative pointer and a length),
/// so logs written before the change read as before.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// Fills a gap a new leader found in the log; applies as nothing.
    Noop,
    /// An encoded batch of commands.
    Batch(std::sync::Arc<[u8]>),
    /// A stop sign: the last slot of its configuration. The configuration
    /// it names (one epoch later) governs every slot after it.
    Reconfig(Membership),
}

/// One slot a promising acceptor reports to a new leader.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PromiseEntry {
    /// The slot.
    pub slot: Slot,
    /// The ballot at which the acceptor accepted `value`.
    pub ballot: Ballot,
    /// The accepted value.
    pub value: Value,
    /// Whether the acceptor knows `value` is chosen.
    pub chosen: bool,
}

/// A chosen slot, sent to a replica that is catching up.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChosenEntry {
    /// The slot.
    pub slot: Slot,
    /// Its chosen value.
    pub value: Value,
}

/// What a replica tells its peers each heartbeat round, for leader election.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Status {
    /// The highest leader ballot this replica knows of.
    pub leader: Ballot,
    /// Whether this replica heard a majority in its last round.
    pub quorum_connected: bool,
    /// Whether this replica is content with its leader: it is the leader and
    /// hears a majority, or it hears the leader and the leader is content.
    pub happy: bool,
    /// Every slot below this one is chosen, and this replica knows its value.
    pub first_unchosen: Slot,
    /// One past the highest slot this replica holds a value for (accepted or
    /// chosen) that may be or become chosen: a value accepted at a ballot of
    /// an older configuration, in a slot at or after the one the
    /// configuration in force starts from, is past that configuration's stop
    /// sign and left out. At least `first_unchosen`.
    pub log_end: Slot,
    /// The newest configuration this replica knows, durably, is in force:
    /// its log records that configuration's stop sign as chosen.
    pub epoch: u64,
    /// It started with nothing on disk and may not vote yet (it has not
    /// heard every voter and learned what they hold).
    pub rejoining: bool,
}

/// A message between replicas.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// Phase 1a: a candidate asks for a promise on every slot from `first_unchosen` on.
    Prepare {
        /// The candidate's ballot.
        ballot: Ballot,
        /// The first slot the candidate does not know to be chosen.
        first_unchosen: Slot,
    },
    /// Phase 1b: the acceptor promised `ballot` and reports what it accepted.
    Promise {
        /// The promised ballot.
        ballot: Ballot,
        /// Every slot at or after the prepare's `first_unchosen` the acceptor holds a value for.
        entries: Vec<PromiseEntry>,
    },
    /// Phase 2a: the leader asks acceptors to accept `value` in `slot`.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
        /// The proposed value.
        value: Value,
        /// The leader's commit point: every slot below it is chosen.
        commit: Slot,
    },
    /// Phase 2b: the acceptor durably accepted `slot` at `ballot`.
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
    },
    /// The leader's commit point, sent when it advances and as a heartbeat.
    Commit {
        /// The leader's ballot.
        ballot: Ballot,
        /// Every slot below this one is chosen.
        commit: Slot,
    },
    /// An acceptor refused `ballot` because it promised a higher one.
    Reject {
        /// The refused ballot.
        ballot: Ballot,
        /// The higher ballot the acceptor promised.
        promised: Ballot,
    },
    /// A request for the chosen values of slots `from..to`.
    CatchUp {
        /// First slot wanted.
        from: Slot,
        /// One past the last slot wanted.
        to: Slot,
    },
    /// Chosen values, in slot order, answering [`Message::CatchUp`].
    CatchUpReply {
        /// The chosen entries the sender knows in the range asked for, possibly fewer.
        entries: Vec<ChosenEntry>,
    },
    /// A replica behind the sender's compacted log asks for the piece of
    /// snapshot `upto` that starts at byte `offset` of its file (resuming a
    /// transfer, or starting one at 0); the answer is a [`Message::SnapshotChunk`].
    SnapshotPull {
        /// The snapshot being received: it covers every slot below this one.
        upto: Slot,
        /// The first byte wanted.
        offset: u64,
    },
    /// A piece of a snapshot file, sent on the bulk stream: the answer to a
    /// [`Message::SnapshotPull`], or unasked (from offset 0) to a peer whose
    /// catch-up request fell below the sender's compacted log. The file
    /// carries its own CRC32C, which the receiver checks once it has it all.
    SnapshotChunk {
        /// The snapshot covers every slot below this one.
        upto: Slot,
        /// The file's whole length in bytes.
        total: u64,
        /// Where `bytes` start in the file.
        offset: u64,
        /// The file's bytes from `offset` on.
        bytes: Vec<u8>,
    },
    /// A follower asks the leader for a read index on behalf of read `id`:
    /// the leader confirms it still leads (one `Confirm` round) and answers
    /// with its commit point at the time of the request.
    ReadIndex {
        /// The follower's read id, echoed in the reply.
        id: u64,
    },
    /// The leader's answer to [`Message::ReadIndex`]: once the follower has
    /// applied every slot below `index` it may serve the read. `None`: the
    /// sender cannot give one (it does not lead, or lost its leadership).
    ReadIndexReply {
        /// The follower's read id.
        id: u64,
        /// The read index, if confirmed.
        index: Option<Slot>,
        /// The leader's ballot and commit point: the follower learns as
        /// chosen what it accepted at this ballot below `commit`, as from a `Commit`.
        ballot: Ballot,
        /// The leader's commit point (at most `index`).
        commit: Slot,
    },
    /// The leader asks the voters whether it still leads at `ballot`, for
    /// the reads registered before this round (ReadIndex).
    Confirm {
        /// The leader's ballot.
        ballot: Ballot,
        /// The leader's confirmation round.
        round: u64,
        /// The leader's commit point, as in a `Commit`.
        commit: Slot,
    },
    /// A voter's answer to [`Message::Confirm`]: it has promised no higher ballot.
    Confirmed {
        /// The ballot confirmed.
        ballot: Ballot,
        /// The round answered.
        round: u64,
    },
    /// A leader that is leaving (a configuration without it was chosen) asks
    /// a voter of configuration `epoch` to stand at once, instead of waiting
    /// out an election timeout.
    Handover {
        /// The configuration the recipient should lead.
        epoch: u64,
    },
    /// Leader election: a heartbeat round's request.
    Ping {
        /// The sender's heartbeat round.
        round: u64,
        /// The sender's status.
        status: Status,
    },
    /// Leader election: the answer to a [`Message::Ping`].
    Pong {
        /// The round being answered.
        round: u64,
        /// The sender's status.
        status: Status,
    },
}

impl Message {
    /// A short name for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::Promise { .. } => "promise",
            Message::Accept { .. } => "accept",
            Message::Accepted { .. } => "accepted",
            Message::Commit { .. } => "commit",
            Message::Reject { .. } => "reject",
            Message::CatchUp { .. } => "catch-up",
            Message::CatchUpReply { .. } => "catch-up-reply",
            Message::SnapshotPull { .. } => "snapshot-pull",
            Message::SnapshotChunk { .. } => "snapshot-chunk",
            Message::Handover { .. } => "handover",
            Message::ReadIndex { .. } => "read-index",
            Message::ReadIndexReply { .. } => "read-index-reply",
            Message::Confirm { .. } => "confirm",
            Message::Confirmed { .. } => "confirmed",
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
        }
    }
}
