//! synod-client-core: the client's decisions as a sans-IO state machine, in quinn-proto's style.
//!
//! [`ClientCore`] holds everything a synod client decides: registering its
//! session, numbering requests and acknowledging answered ones, pipelining
//! with a table of outstanding requests, a fresh request id per attempt,
//! connection epochs, following redirects, failing over to other replicas,
//! backing off after `Busy` and after failed connections, per-request
//! deadlines and per-attempt timeouts. It does no IO and reads no clock:
//! the caller feeds it inputs (`handle_*`, each with the current time `now`
//! in microseconds on any monotonic clock of the caller's choosing) and
//! carries out its outputs (`poll_*`) until it is quiescent, then sleeps
//! until [`ClientCore::poll_timeout`] or the next input. Randomness (the
//! registration nonce, backoff jitter) comes from the seed given to
//! [`ClientCore::new`], so the same inputs always give the same outputs.
//!
//! Two drivers run it: synod-client's tokio task over QUIC, and the
//! simulator, whose connections are instantaneous and whose clock is its
//! tick counter.
//!
//! ```text
//!  handle_call ------>+------------+---> poll_connect:  open a connection to a replica
//!  handle_connected ->|            |---> poll_transmit: write a request on the connection
//!  handle_reply ----->| ClientCore |---> poll_event:    registered, a call completed
//!  handle_timeout --->|            |---> poll_timeout:  when to call handle_timeout
//!  ... -------------->+------------+
//! ```
//!
//! ```
//! use std::time::Duration;
//! use synod_client_core::{ClientCore, ClientEvent, CoreConfig};
//! use synod_wire::{ClientReply, NodeId, Outcome, ClientId};
//!
//! let config = CoreConfig::new(vec![NodeId(1), NodeId(2)]);
//! let mut core = ClientCore::new(config, 0, 7);
//! let connect = core.poll_connect().expect("it connects at once");
//! assert_eq!(connect.node, NodeId(1));
//! core.handle_connected(10, connect.epoch, connect.node);
//! let register = core.poll_transmit().expect("it registers first");
//! let reply = ClientReply { id: register.id(), outcome: Outcome::Registered { client: ClientId(3) } };
//! core.handle_reply(20, register.epoch, reply);
//! assert_eq!(core.poll_event(), Some(ClientEvent::Registered(ClientId(3))));
//! ```
#![warn(missing_docs)]

mod machine;

use std::time::Duration;

use synod_wire::{ClientFrame, ClientId, ClientRequest, EncodeError, NodeId};

pub use machine::ClientCore;

/// What a [`ClientCore`] needs to know. Plain data: [`ClientCore::new`]
/// panics on an empty address book and clamps the rest into range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// The replicas, in the order the client tries them (it starts with the first).
    pub replicas: Vec<NodeId>,
    /// How long one attempt of a request may wait for its answer before the
    /// client moves to another replica and resends (at least 1 ms).
    pub request_timeout: Duration,
    /// How long the registration may take in all (`Duration::MAX`: forever).
    pub register_deadline: Duration,
    /// The most requests in flight; [`ClientCore::can_call`] says no beyond it.
    pub max_in_flight: usize,
    /// Give up registering as soon as a whole round of the address book
    /// failed to connect before any session existed
    /// ([`RegisterError::Unreachable`]), rather than at the deadline.
    pub give_up_unreachable: bool,
    /// Register a session, for calls through the log. A core without one
    /// (`false`) serves reads outside the log only, which need none: it
    /// connects to the first replica of `replicas` at once, keeps to it while
    /// it answers, and refuses calls with [`CallError::NoSession`]. A client
    /// that spreads its reads over the replicas runs one such core beside
    /// its session's.
    pub session: bool,
}

impl CoreConfig {
    /// A configuration for `replicas` with the client's defaults: a request
    /// timeout of 1 s, a registration deadline of 30 s, 4096 requests in
    /// flight, and giving up when no replica can be reached.
    pub fn new(replicas: Vec<NodeId>) -> CoreConfig {
        CoreConfig {
            replicas,
            request_timeout: Duration::from_secs(1),
            register_deadline: Duration::from_secs(30),
            max_in_flight: 4096,
            give_up_unreachable: true,
            session: true,
        }
    }
}

/// A call handed to [`ClientCore::handle_call`], named again when it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// A request to write on the connection of `epoch` (to replica `node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The connection it belongs on; the core hands out only the current connection's.
    pub epoch: u64,
    /// The replica at the other end of that connection.
    pub node: NodeId,
    /// What to send: a `ClientFrame::Request` (a command for the log) or a
    /// `ClientFrame::Read` (a read outside the log).
    pub frame: ClientFrame,
}

impl Transmit {
    /// The command for the log this carries, if it is one.
    pub fn request(&self) -> Option<&ClientRequest> {
        match &self.frame {
            ClientFrame::Request(r) => Some(r),
            _ => None,
        }
    }

    /// The id the answer will carry.
    pub fn id(&self) -> u64 {
        match &self.frame {
            ClientFrame::Request(r) => r.id,
            ClientFrame::Read(r) => r.id,
            ClientFrame::Admin(a) => a.id,
            ClientFrame::Change(c) => c.id,
        }
    }
}

/// Open a connection to `node`, and report how it went with `epoch`
/// ([`ClientCore::handle_connected`] or [`ClientCore::handle_connect_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect {
    /// The connection's epoch: every later input about it carries this number.
    pub epoch: u64,
    /// The replica to connect to.
    pub node: NodeId,
}

/// What happened that the application waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The session was registered; calls can be made.
    Registered(ClientId),
    /// No session could be registered; the core will do nothing more.
    RegisterFailed(RegisterError),
    /// A call finished: the state machine's answer, or why there is none.
    Completed {
        /// The call, as [`ClientCore::handle_call`] returned it.
        call: CallId,
        /// The answer.
        result: Result<Vec<u8>, CallError>,
    },
}

/// Why no session was registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Connections failed; `node` is the last replica that could not be reached.
    #[error("cannot reach any replica; last tried {node}")]
    Unreachable {
        /// The last replica tried.
        node: NodeId,
    },
    /// Replicas were reachable but no session was registered within the deadline (no leader?).
    #[error("no session registered within the deadline")]
    Timeout,
}

/// Why a request was refused by the replicas' session table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The request number was already acknowledged; its answer is gone.
    Stale,
    /// The request number is too far ahead of the acknowledged ones.
    TooFarAhead,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejection::Stale => "stale request number",
            Rejection::TooFarAhead => "request number too far ahead",
        })
    }
}

/// Why a call completed without an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer within the call's deadline. The request may or may not
    /// have taken effect; it will not take effect later than it would have,
    /// and never twice.
    #[error("no answer within the deadline")]
    Timeout,
    /// The session is unknown to the replicas (expired or evicted).
    #[error("session expired")]
    SessionExpired,
    /// The replicas' session table refused the request.
    #[error("request rejected: {0}")]
    Rejected(Rejection),
    /// The request could not be encoded (it exceeds the frame limit).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A call made of a core that registers no session
    /// ([`CoreConfig::session`] `false`): it serves reads only.
    #[error("this client serves reads only: it has no session for commands")]
    NoSession,
}
