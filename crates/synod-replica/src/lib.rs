//! synod-replica: everything a replica decides without IO, around the Paxos core, sans IO.
//!
//! A [`ReplicaCore`] wraps one [`synod_paxos::Paxos`] with the client-facing
//! rules of a replica: a follower answers a request with
//! `Outcome::Redirect { leader }`; the leader queues requests (or answers
//! `Outcome::Busy` when far too much is queued), cuts the queue into batches
//! stamped with the caller's wall clock, proposes them while its window has
//! room, and remembers which client waits on which slot. Like the Paxos core
//! it does no IO, reads no clock and starts no thread: the driver feeds it
//! inputs (`handle_*`, each with the caller's [`Now`]) and drains its outputs
//! ([`ReplicaCore::poll_effect`]) after each call.
//!
//! The driver's duties, in the order effects come:
//!
//! * [`Effect::Send`]: deliver the message to that replica, or lose it.
//! * [`Effect::Persist`]: make the records durable in order, then call
//!   [`ReplicaCore::handle_persisted`] with the token.
//! * [`Effect::Apply`]: apply the chosen slot (slots come in order, without
//!   gaps), then answer its waiting clients with [`route_replies`].
//! * [`Effect::Reply`]: send the answer to that client connection.
//! * [`Effect::LeaderChanged`], [`Effect::Proposed`]: for status, metrics and traces.
//!
//! The waiting client is keyed by the slot its batch was proposed in, and
//! travels with that slot's commit in [`Apply::waiters`] (as TiKV hands a
//! proposal's callback to its apply worker): it is never matched first in,
//! first out. If another value won the slot (this replica lost its
//! leadership meanwhile), [`route_replies`] answers the waiter with
//! `Redirect`, and its client retries the same (session, seq) at once; the
//! session table makes that retry take effect at most once.
//!
//! ```
//! use synod_paxos::{Config, Paxos};
//! use synod_replica::{Effect, Limits, Now, ReplicaCore};
//! use synod_wire::{ClientRequest, Command, NodeId, Outcome};
//!
//! let ids = [NodeId(1), NodeId(2), NodeId(3)];
//! let paxos = Paxos::new(Config::new(NodeId(2), ids).unwrap(), 7);
//! let mut replica: ReplicaCore<u32> = ReplicaCore::new(paxos, Limits::default());
//! let now = Now { wall_ms: 1_700_000_000_000, mono_us: 0 };
//! // A replica that does not lead sends the client elsewhere (here: nobody known yet).
//! replica.handle_client(now, 9, ClientRequest { id: 1, command: Command::Register { nonce: 5 } });
//! match replica.poll_effect() {
//!     Some(Effect::Reply { conn: 9, reply }) => {
//!         assert_eq!(reply.id, 1);
//!         assert_eq!(reply.outcome, Outcome::Redirect { leader: None });
//!     }
//!     other => panic!("expected a redirect, got {other:?}"),
//! }
//! ```
#![warn(missing_docs)]

mod effect;
mod membership;
mod read;
mod replica;
mod route;
mod snapshot;

pub use crate::effect::{Apply, Effect};
pub use crate::membership::SETTLE_TICKS;
pub use crate::replica::{Limits, Now, ReplicaCore, Stats, DEFAULT_MAX_WAITING};
pub use crate::route::{route_replies, Routing, Waiter};
pub use crate::snapshot::{SnapshotPolicy, OFFER_TICKS, PULL_RETRIES, PULL_TICKS};

/// Deliberately broken behaviours for the simulator's self-tests
/// ([`ReplicaCore::with_bugs`]); all off by default.
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PlantedBugs {
    /// [`route_replies`] answers the waiters of a slot by position, the
    /// first waiter with the first reply and so on, instead of by origin:
    /// a waiting client whose slot another value won gets another client's answer.
    pub route_by_position: bool,
    /// The core asks for a snapshot ahead of the slots it just delivered
    /// and the driver has yet to apply: the snapshot is labelled with a slot
    /// its state has not reached, and the log behind it is compacted past
    /// what was applied.
    pub snapshot_before_apply: bool,
    /// A leader takes a membership change while another is in flight (the
    /// newer request replaces the older one's waiter).
    pub concurrent_changes: bool,
    /// A replica serves a linearizable read as soon as it has the read
    /// index, from what it has applied so far, without waiting until it has
    /// applied that far: a lagging follower answers with old values.
    pub serve_reads_early: bool,
}
