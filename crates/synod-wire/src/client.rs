//! What clients send and receive, and the batches of commands the log orders.

use rkyv::{Archive, Deserialize, Serialize};

use crate::{ClientId, NodeId, Seq};

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

/// A client's request on its stream.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// Chosen by the client to match the reply; unique among its outstanding requests.
    pub id: u64,
    /// What to do.
    pub command: Command,
}

/// The answer to a [`ClientRequest`].
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
}
