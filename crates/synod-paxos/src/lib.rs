//! synod-paxos: the Multi-Paxos ordering core, sans IO and deterministic.
//!
//! A [`Paxos`] is one replica's proposer, acceptor, learner and leader
//! election in a plain struct. Like quinn-proto's `Connection`, it does no
//! IO, reads no clock and draws no OS randomness: the driver feeds it inputs
//! ([`Paxos::handle_message`], [`Paxos::handle_tick`],
//! [`Paxos::handle_persisted`], [`Paxos::propose`]) and drains its outputs
//! ([`Paxos::poll_action`]) after each call. The same inputs in the same
//! order always produce the same actions, so a simulator can run many
//! replicas in one thread and replay any run from its seed.
//!
//! The core orders opaque batches; it knows nothing of clients, sessions or
//! the state machine. See `docs/PROTOCOL.md` for the protocol.
//!
//! ```
//! use synod_paxos::{Action, Config, Paxos};
//! use synod_wire::{NodeId, Value};
//!
//! // A cluster of one elects itself once its own promise is durable.
//! let mut core = Paxos::new(Config::new(NodeId(1), [NodeId(1)]).unwrap(), 7);
//! let mut committed = Vec::new();
//! let mut drive = |core: &mut Paxos, committed: &mut Vec<Value>| {
//!     while let Some(action) = core.poll_action() {
//!         match action {
//!             Action::Persist { token, .. } => core.handle_persisted(token),
//!             Action::Commit { value, .. } => committed.push(value),
//!             _ => {}
//!         }
//!     }
//! };
//! drive(&mut core, &mut committed);
//! assert!(core.is_leader());
//! core.propose(b"hello".to_vec()).unwrap();
//! drive(&mut core, &mut committed);
//! assert_eq!(committed, vec![Value::Batch(b"hello".to_vec())]);
//! ```
#![warn(missing_docs)]

mod action;
mod config;
mod durable;
mod paxos;
pub mod rng;
mod stats;

pub use action::{Action, PersistToken};
pub use config::{Config, ConfigError};
pub use durable::Durable;
pub use paxos::{Paxos, ProposeError};
pub use stats::Stats;

/// Deliberately broken behaviours for the simulator's self-tests.
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// The acceptor answers Promise and Accepted before its write is durable.
    pub reply_before_durable: bool,
    /// A new leader ignores the values peers report in their promises.
    pub ignore_promised_values: bool,
}
