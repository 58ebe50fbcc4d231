//! synod-runtime: a replica of a synod cluster, for any [`StateMachine`].
//!
//! It is a thin IO shell over the pure replica layer
//! ([`synod_replica::ReplicaCore`] around [`synod_paxos::Paxos`]):
//!
//! ```text
//!  client --QUIC--> transport worker --+
//!  peers  --QUIC--> transport worker --+--> Shell: the core behind one lock, stepped
//!  Durable(t) (log thread) ------------+    by the caller; pure work and encoding only
//!  ticks (tick thread, wall clock) ----+      |
//!                                             +--> Outbox: frames queued on the transport after the unlock
//!                                             +--> log thread (channel): group commit, one fdatasync
//!                                             |    per write --> Durable(t)
//!                                             +--> apply thread (channel): Applier (sessions +
//!                                                  your StateMachine) --> replies
//! ```
//!
//! * The **core** lives behind one lock in the shell. Each input is
//!   stepped on the thread it arrives on (a transport worker, the log
//!   thread, the tick thread), so the core sees one input at a time. Under
//!   the lock a step does only pure work, encoding and channel sends: log
//!   writes go to the log thread and chosen slots to the apply thread in the
//!   core's order; frames are queued on the transport after the lock is
//!   released. No fsync and no `StateMachine::apply` runs under the lock or
//!   on a transport thread. See `docs/decisions/0003-core-on-the-input-thread.md`
//!   for why there is no core thread and
//!   `docs/decisions/0007-io-shell-over-a-pure-replica-layer.md` for the shell.
//! * The **log thread** ([`synod_log::GroupCommit`]) drains every queued
//!   write, writes them, fdatasyncs once and reports the last token covered.
//! * The **apply thread** owns the [`synod_state_machine::Applier`], runs
//!   committed slots through it and answers the clients waiting on them.
//! * The **tick thread** turns wall time into the core's ticks and publishes
//!   metrics; it is also where the replica stops.
//!
//! Reads outside the log (`ClientFrame::Read`) are served by whichever
//! replica receives them: the core gets a read index (ReadIndex, one
//! confirmation round shared by concurrent reads) or, for a stale read,
//! takes what is applied, and the apply thread answers from the state
//! machine ([`StateMachine::read`]) once every slot below that index is
//! applied. Counted in [`read_metrics`].
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
mod snapshot;
mod stats;
mod status;

pub use config::{ReplicaConfig, SnapshotSettings, Timing};

/// The metrics of reads outside the log, beside those in `synod_metrics::names`.
pub mod read_metrics {
    pub use crate::stats::{mode_label, LABEL_MODE, READS, READS_FAILED, READS_SERVED};
}
pub use replica::{Replica, StartError};
pub use status::{Status, StatusHandle};
pub use synod_state_machine::{RestoreError, StateMachine};
// What starting a replica takes from the transport and the wire types: certificates
// (`certs::init` writes a cluster's), the identity they name, peer addresses and replica
// ids; re-exported so that an application needs no direct dependency on synod-transport
// or synod-wire to start one.
pub use synod_transport::{certs, Credentials, Identity, PeerAddr};
pub use synod_wire::NodeId;
