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
//! # Driving the core yourself
//!
//! The runtime (`synod-runtime`) is one driver; yours can be anything that
//! carries out the actions in order. Below, three cores run in one thread,
//! with a `VecDeque` as the network and a `Vec<LogRecord>` per replica as
//! its log: no tokio, no sockets, no files. The rules a driver must keep:
//!
//! * After every `handle_*` or `propose` call, drain [`Paxos::poll_action`]
//!   and carry the actions out in the order they come.
//! * [`Action::Persist`]: make the records durable, in order, *then* call
//!   [`Paxos::handle_persisted`]. The core holds back every promise and vote
//!   that depends on them until you do, which is what makes a crash safe.
//! * [`Action::Send`]: deliver the message to `to`'s [`Paxos::handle_message`],
//!   or lose it; the core retries what matters. Do not corrupt it.
//! * [`Action::Commit`]: apply the value to your state machine. Commits come
//!   in slot order without gaps.
//! * Call [`Paxos::handle_tick`] at a steady pace (the runtime: every 10 ms);
//!   elections and heartbeats count ticks, never the clock.
//! * After a restart, rebuild the core from its log with [`Durable::replay`]
//!   and [`Paxos::recover`].
//!
//! ```
//! use std::collections::VecDeque;
//! use synod_paxos::{Action, Config, Durable, Paxos};
//! use synod_wire::{LogRecord, Message, NodeId, Slot, Value};
//!
//! /// One replica: the core, its log (here in memory), and what it applied.
//! struct Replica {
//!     core: Paxos,
//!     log: Vec<LogRecord>,
//!     applied: Vec<Value>,
//! }
//!
//! /// The network: messages in flight, as (from, to, message).
//! type Wire = VecDeque<(NodeId, NodeId, Message)>;
//!
//! /// Carries out every core's actions and delivers every message until all is quiet.
//! fn run(replicas: &mut [Replica], wire: &mut Wire) {
//!     loop {
//!         for r in replicas.iter_mut() {
//!             while let Some(action) = r.core.poll_action() {
//!                 match action {
//!                     Action::Send { to, msg } => wire.push_back((r.core.id(), to, msg)),
//!                     Action::Persist { records, token } => {
//!                         // A real driver writes and syncs here; memory is "durable" at once.
//!                         r.log.extend(records);
//!                         r.core.handle_persisted(token);
//!                     }
//!                     Action::Commit { slot, value } => {
//!                         assert_eq!(slot, Slot(r.applied.len() as u64), "commits come in order");
//!                         r.applied.push(value);
//!                     }
//!                     Action::LeaderChanged { .. }
//!                     | Action::SnapshotWanted { .. }
//!                     | Action::Reconfigured { .. }
//!                     | Action::Retire
//!                     | Action::ReadReady { .. }
//!                     | Action::ReadFailed { .. } => {}
//!                 }
//!             }
//!         }
//!         let Some((from, to, msg)) = wire.pop_front() else { return };
//!         replicas[to.0 as usize - 1].core.handle_message(from, msg);
//!     }
//! }
//!
//! let ids = [NodeId(1), NodeId(2), NodeId(3)];
//! let config = |id| Config::new(id, ids).unwrap();
//! // Each core gets its own seed, so their election timeouts differ.
//! let mut replicas: Vec<Replica> = ids
//!     .iter()
//!     .map(|&id| Replica { core: Paxos::new(config(id), u64::from(id.0)), log: vec![], applied: vec![] })
//!     .collect();
//! let mut wire = Wire::new();
//!
//! // Time passes only when the driver says so: tick until someone leads.
//! let mut ticks = 0;
//! while !replicas.iter().any(|r| r.core.is_leader()) {
//!     for r in replicas.iter_mut() {
//!         r.core.handle_tick();
//!     }
//!     run(&mut replicas, &mut wire);
//!     ticks += 1;
//!     assert!(ticks < 1_000, "a leader is elected within a few election timeouts");
//! }
//!
//! // Only the leader proposes; the core orders opaque bytes.
//! let leader = replicas.iter().position(|r| r.core.is_leader()).unwrap();
//! let batches = [&b"open 1"[..], b"deposit 1 10", b"withdraw 1 3"];
//! for batch in batches {
//!     replicas[leader].core.propose(batch.to_vec()).unwrap();
//! }
//! run(&mut replicas, &mut wire);
//! // Every replica writes its commit point to its log once per heartbeat round
//! // (`LogRecord::Commit`); a restart recovers from it, so let a round pass.
//! for _ in 0..replicas[leader].core.config().heartbeat_ticks() {
//!     for r in replicas.iter_mut() {
//!         r.core.handle_tick();
//!     }
//!     run(&mut replicas, &mut wire);
//! }
//!
//! let expected: Vec<Value> = batches.iter().map(|&b| Value::Batch(b.into())).collect();
//! for r in &replicas {
//!     assert_eq!(r.applied, expected, "replica {} applied the same values", r.core.id());
//! }
//!
//! // A crash loses the core but not its log: a core rebuilt from the log commits
//! // again every value the log shows chosen, from the state machine's position (0 here).
//! let follower = (leader + 1) % 3;
//! let old = &replicas[follower];
//! let mut recovered = Paxos::recover(config(old.core.id()), 99, Durable::replay(old.log.clone()), Slot(0));
//! let mut again = Vec::new();
//! while let Some(action) = recovered.poll_action() {
//!     if let Action::Commit { value, .. } = action {
//!         again.push(value);
//!     }
//! }
//! assert_eq!(again, expected, "a recovered replica commits what its log says was chosen");
//! assert_eq!(recovered.promised(), old.core.promised(), "and keeps its promise");
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
pub use paxos::{
    Paxos, ProposeError, ReconfigError, CONFIRM_OTHERS_AFTER_TICKS, READ_INDEX_TICKS, RETIRE_TICKS,
};
pub use stats::Stats;

/// Deliberately broken behaviours for the simulator's self-tests.
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PlantedBugs {
    /// The acceptor answers Promise and Accepted before its write is durable.
    pub reply_before_durable: bool,
    /// A new leader ignores the values peers report in their promises.
    pub ignore_promised_values: bool,
    /// A leader proposes a second membership change while its first is in
    /// flight (computed from the first's configuration), and goes on
    /// proposing batches after its stop signs, counting their votes in the
    /// configuration it is in: the later configurations are used before
    /// the stop signs that make them are chosen.
    pub second_change_in_flight: bool,
}
