//! synod-runtime: a replica of a synod cluster, for any [`StateMachine`].
//!
//! It composes the pure heart with real IO:
//!
//! ```text
//!  client --QUIC--> transport worker --+                        +--> log thread: group commit, one
//!  peers  --QUIC--> transport worker --+--> Driver: the core    |    fdatasync per batch of writes
//!  Persisted (log thread) -------------+    behind one lock,    |         --> Persisted
//!  ticks (tick thread, wall clock) ----+    run by the caller --+--> apply thread: Applier (sessions +
//!                                                                     your StateMachine) --> replies
//! ```
//!
//! * The **core** ([`synod_paxos::Paxos`] and the leader's queue of client
//!   commands) lives behind one lock. Each input is handled on the thread it
//!   arrives on (a transport worker, the log thread, the tick thread), which
//!   then proposes and carries out the core's actions before letting go, so
//!   the core sees one input at a time. It never blocks on IO. See
//!   `docs/decisions/0003-core-on-the-input-thread.md` for why there is no
//!   core thread.
//! * The **log thread** ([`synod_log::GroupCommit`]) drains every queued
//!   write, writes them, fdatasyncs once and reports every token covered.
//! * The **apply thread** runs committed slots through the
//!   [`synod_state_machine::Applier`] and answers the clients waiting on them.
//! * The **tick thread** turns wall time into the core's ticks and publishes
//!   metrics; it is also where the replica stops.
//!
//! Client requests reach the leader: a follower answers `Redirect` with the
//! leader it knows, and the client reconnects there (see
//! `docs/decisions/0002-redirect-not-forward.md`). The leader batches
//! whatever arrives while earlier batches are in flight.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use synod_kv::KvStore;
//! use synod_runtime::{Replica, ReplicaConfig};
//! use synod_transport::{Credentials, Identity};
//! use synod_wire::NodeId;
//!
//! // Certificates as `synod certs init --dir certs --nodes 3` writes them.
//! let credentials = Credentials::load("certs".as_ref(), Identity::Node(NodeId(1))).expect("certificates");
//! // Addresses are `ip:port` or `host:port` (resolved when binding and dialing).
//! let peers: BTreeMap<NodeId, synod_transport::PeerAddr> = (1..=3)
//!     .map(|i| (NodeId(i), format!("localhost:{}", 7000 + i).parse().expect("address")))
//!     .collect();
//! let config = ReplicaConfig::new(NodeId(1), peers, credentials, "data/node-1");
//! let replica = Replica::start(config, KvStore::default()).expect("replica starts");
//! println!("{:?}", replica.status());
//! replica.shutdown();
//! ```
#![warn(missing_docs)]

mod apply;
mod cert_watch;
mod config;
mod replica;
mod shell;
mod stats;
mod status;

pub use config::{ReplicaConfig, Timing};
pub use replica::{Replica, StartError};
pub use status::{Status, StatusHandle};
pub use synod_state_machine::{RestoreError, StateMachine};
