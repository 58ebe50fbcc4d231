//! synod-sim: a deterministic simulator of a whole synod cluster.
//!
//! N replicas of the real code (the [`synod_paxos`] core, the
//! [`synod_state_machine::Applier`] with its session table, and the
//! [`synod_kv`] store) run in one thread against a seeded network that
//! delays, drops, duplicates and reorders messages and cuts links (full
//! partitions, one-way cuts, partial connectivity), the real write-ahead
//! log ([`synod_wal::Wal`]) over an in-memory [`synod_wal::FaultyFs`] whose
//! crashes lose, keep or tear unsynced writes or lose their sectors and
//! whose failed fsyncs stop the replica, crashes and restarts through
//! recovery, and clients that retry through failovers with sessions.
//!
//! One seed decides everything: [`run`] with the same [`SimConfig`] always
//! produces the same run. The invariants of ARCHITECTURE.md are checked after
//! every step (one module each under `invariants/`); then a heal phase must
//! converge within a bound.
//!
//! ```
//! let report = synod_sim::run(&synod_sim::SimConfig::new(7));
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! ```
#![warn(missing_docs)]

mod client;
mod config;
mod disk;
pub mod invariants;
mod machine;
mod net;
mod world;

pub use config::SimConfig;
pub use invariants::Violation;
pub use world::{run, Report};
