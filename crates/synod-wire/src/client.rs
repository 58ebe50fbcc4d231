//! What clients send and receive, and the batches of commands the log orders.

use rkyv::{Archive, Deserialize, Serialize};

use crate::{Ballot, ClientId, MemberChange, MemberRole, NodeId, Seq, Slot};

/// One command for the replicated state machine, as a client sent it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Command {
    /// Open a session. The session's id is the command's position in the log.
    Register {
        /// A client-chosen number that lets the client recognise its own registration.
        nonce: u64,
    },
    /// A state-machine operation within a session.
    Op {
        /// The session.
        client: ClientId,
        /// The request number within the session.
        seq: Seq,
        /// Every request numbered `ack` or lower has been answered, so the
        /// session may forget those answers.
        ack: Seq,
        /// The operation, opaque to everything but the state machine.
        payload: Vec<u8>,
    },
}

/// What one log slot carries: commands in the order they apply, stamped by
/// the leader that proposed them.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Batch {
    /// The proposing leader's clock, in milliseconds. Session expiry uses
    /// only these stamps, never a replica's own clock.
    pub timestamp_ms: u64,
    /// The commands.
    pub commands: Vec<Command>,
}

/// Everything a client sends on its stream: the one type a replica decodes a client frame as.
///
/// Replies come back as [`ClientReply`]s, matched to their frame by id.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// A command for the replicated state machine (it goes through the log).
    Request(ClientRequest),
    /// A question about the replica that receives it, answered by that
    /// replica alone, leader or not; it never enters the log.
    Admin(AdminRequest),
    /// A read of the state machine that does not go through the log
    /// (`StateMachine::read`): answered with [`Outcome::Applied`] holding
    /// the machine's answer, or [`Outcome::Unavailable`] / a redirect.
    Read(ReadRequest),
    /// A membership change, for the leader: answered with
    /// [`Outcome::Members`] once the new configuration is chosen, with
    /// [`Outcome::Refused`] if it cannot be made, or with a redirect.
    Change(ChangeRequest),
}

/// How a read is served (docs/OPERATIONS.md, "Reads").
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// Linearizable, by ReadIndex: the leader confirms it still leads with
    /// one round to a majority and the read waits until the replica that
    /// serves it has applied the leader's commit point. Any replica serves it.
    Linearizable,
    /// Linearizable only while clocks keep their documented bound: the
    /// leader answers from its state without a round while it holds a lease.
    Lease,
    /// Whatever the replica that receives it has applied: not linearizable.
    Stale,
}

/// A read, inside [`ClientFrame::Read`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// Chosen by the client to match the reply, as [`ClientRequest::id`].
    pub id: u64,
    /// The query, opaque to everything but the state machine.
    pub query: Vec<u8>,
    /// How it is served.
    pub mode: ReadMode,
}

/// A membership change, inside [`ClientFrame::Change`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChangeRequest {
    /// Chosen by the client to match the reply, as [`ClientRequest::id`].
    pub id: u64,
    /// What to change.
    pub change: MemberChange,
}

/// A command for the log, inside [`ClientFrame::Request`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// Chosen by the client to match the reply; unique among its outstanding requests.
    pub id: u64,
    /// What to do.
    pub command: Command,
}

/// A question for one replica, inside [`ClientFrame::Admin`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AdminRequest {
    /// Chosen by the client to match the reply, as [`ClientRequest::id`].
    pub id: u64,
    /// What to tell.
    pub query: AdminQuery,
}

/// What an [`AdminRequest`] asks.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdminQuery {
    /// The replica's view of itself and the cluster: answered with [`Outcome::Status`].
    Status,
    /// The configuration the replica knows: answered with [`Outcome::Members`].
    Members,
}

/// One member as a replica sees it, in [`MembersView`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemberInfo {
    /// Its id.
    pub id: NodeId,
    /// Where it listens.
    pub addr: String,
    /// Voter or learner.
    pub role: MemberRole,
    /// Every slot below this one is chosen and known to it, as it last
    /// reported (for the answering replica itself: now); 0 if not heard from.
    pub caught_up: Slot,
}

/// A configuration as one replica knows it: the answer to
/// [`AdminQuery::Members`] and to a completed [`ClientFrame::Change`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct MembersView {
    /// The replica that answered.
    pub from: NodeId,
    /// The configuration's number.
    pub epoch: u64,
    /// Every member, in id order.
    pub members: Vec<MemberInfo>,
    /// The leader the answering replica believes in, if any.
    pub leader: Option<NodeId>,
    /// Whether a change is proposed and not yet chosen.
    pub change_in_flight: bool,
}

/// Whether a replica leads.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// It leads: it batches and proposes client commands.
    Leader,
    /// It follows a leader, or waits for one to be elected.
    Follower,
}

/// One replica's view, the answer to [`AdminQuery::Status`].
///
/// Replicas may disagree; a status tool shows them side by side. The
/// `digest` is the applier's running digest of every slot applied: two
/// replicas at the same `applied` slot must have equal digests.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplicaStatus {
    /// The replica that answered.
    pub id: NodeId,
    /// Whether it leads.
    pub role: Role,
    /// The leader it believes in, if any.
    pub leader: Option<NodeId>,
    /// The highest leader ballot it knows.
    pub ballot: Ballot,
    /// Every slot below this is chosen and known to it.
    pub commit: Slot,
    /// Every slot below this is applied to its state machine.
    pub applied: Slot,
    /// The digest of everything it applied, all 64 bits.
    pub digest: u64,
    /// Every member of the cluster (voters and learners), itself included
    /// unless it was removed.
    pub members: Vec<NodeId>,
    /// The configuration it knows ([`crate::Membership::epoch`]).
    pub epoch: u64,
    /// The members of `members` that are learners.
    pub learners: Vec<NodeId>,
    /// It was removed from the cluster and has stopped taking part.
    pub removed: bool,
    /// The other members it has a live connection to.
    pub peers_reachable: Vec<NodeId>,
    /// Live client sessions.
    pub sessions: u64,
    /// Bytes of its write-ahead log on disk (segments are preallocated).
    pub log_bytes: u64,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// Every slot below this one is in its newest snapshot (0: none).
    pub snapshot: Slot,
    /// It started with nothing on disk and does not vote until it has rejoined.
    pub rejoining: bool,
}

/// The answer to a [`ClientFrame`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClientReply {
    /// The request's `id`.
    pub id: u64,
    /// What happened.
    pub outcome: Outcome,
}

/// What happened to a client's request.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The session was opened.
    Registered {
        /// The new session's id.
        client: ClientId,
    },
    /// The operation was applied (now, or earlier: a retry gets the first answer).
    Applied {
        /// The state machine's answer.
        payload: Vec<u8>,
    },
    /// This replica is not the leader; try `leader` if known.
    Redirect {
        /// The leader this replica believes in.
        leader: Option<NodeId>,
    },
    /// The session is unknown or has expired; register again.
    SessionExpired,
    /// The request number was already acknowledged by the client and its answer forgotten.
    Stale,
    /// The request number is too far ahead of the client's acknowledged requests.
    TooFarAhead,
    /// The replica is overloaded; retry later.
    Busy,
    /// The answer to an [`AdminQuery::Status`].
    Status(ReplicaStatus),
    /// The answer to an [`AdminQuery::Members`] or a completed [`ClientFrame::Change`].
    Members(MembersView),
    /// A membership change that cannot be made, and why; nothing changed.
    Refused(String),
    /// A read that could not be served as asked, and why (no leader to
    /// confirm it, it timed out, the state machine serves no reads outside
    /// the log); nothing was read. Never an old value in its place.
    Unavailable(String),
}
