//! A replica's configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use synod_session::SessionConfig;
use synod_transport::{Credentials, PeerAddr, Settings};
use synod_wire::NodeId;

/// Timing of the consensus core, in wall-clock terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// One logical tick.
    pub tick: Duration,
    /// Ticks between heartbeat rounds.
    pub heartbeat_ticks: u64,
    /// The election timeout is drawn from this range of ticks.
    pub election_ticks: (u64, u64),
}

impl Default for Timing {
    fn default() -> Self {
        Timing { tick: Duration::from_millis(10), heartbeat_ticks: 5, election_ticks: (30, 60) }
    }
}

/// Everything a replica needs to start.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This replica.
    pub id: NodeId,
    /// Every replica's address, this one's included: socket addresses or
    /// `host:port`, resolved when binding (this one's) and on every dial (the others').
    /// For a replica of the cluster's first configuration these are its
    /// members (configuration 0); for a joining one (`join`), the members it
    /// learns the cluster from. Later configurations come from the log.
    pub peers: BTreeMap<NodeId, PeerAddr>,
    /// This replica is not a member yet: started on an empty data directory
    /// it waits, knowing the other replicas of `peers` only as contacts,
    /// until a configuration that adds it (`synod member add`) is chosen, and
    /// catches up from the members meanwhile. Leave it set afterwards: it
    /// tells a restart that `peers` is not configuration 0.
    pub join: bool,
    /// The cluster CA and this replica's certificate and key.
    pub credentials: Credentials,
    /// Where the write-ahead log lives.
    pub data_dir: PathBuf,
    /// Consensus timing.
    pub timing: Timing,
    /// Slots the leader keeps in flight; requests arriving meanwhile wait for the next batch.
    pub max_in_flight: usize,
    /// The most commands in one batch.
    pub max_batch_commands: usize,
    /// The most bytes of commands in one batch.
    pub max_batch_bytes: usize,
    /// Admission control: requests (commands and linearizable reads) that
    /// may wait at this replica at once; one more is answered `Busy` and its
    /// client backs off (`synod_replica::Limits::max_waiting`).
    pub max_waiting: usize,
    /// Session table limits (identical on every replica).
    pub sessions: SessionConfig,
    /// Transport tunables.
    pub transport: Settings,
    /// Size of the log's segment files.
    pub segment_bytes: u64,
    /// When to snapshot and how much log to keep and send.
    pub snapshots: SnapshotSettings,
    /// Leader leases for lease reads (`synod_paxos::Config::with_leases`);
    /// off by default. Every replica of a cluster must agree.
    pub leases: bool,
}

/// When a replica snapshots its state, how much log it keeps behind the
/// snapshot, and how it sends snapshots to peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// A replica snapshots once the values applied since its last snapshot
    /// pass this many bytes; then the log before the snapshot goes.
    pub log_bytes: u64,
    /// Chosen slots kept in memory (and on disk) below each snapshot, so a
    /// briefly lagging peer catches up from entries instead of a whole snapshot.
    pub retain_slots: u64,
    /// Bytes per chunk when a snapshot is sent to a peer.
    pub chunk_bytes: u32,
    /// The most bytes a second a snapshot file is written at, and sent to a
    /// peer at (0: as fast as the disk and the network take it). The
    /// replicas' logs share the disk with it, and each of their fsyncs waits
    /// for what the disk has queued: written flat out (about 300 MB/s here) a
    /// 446 MB snapshot held client p99 at 2.5-2.9x its value between
    /// snapshots, and at 128 MiB/s 1.2-1.5x.
    pub write_bytes_per_second: u64,
}

impl Default for SnapshotSettings {
    /// 64 MiB of log between snapshots, 128 slots kept behind each, 1 MiB
    /// chunks, files written at up to 128 MiB a second.
    fn default() -> Self {
        SnapshotSettings {
            log_bytes: 64 << 20,
            retain_slots: 128,
            chunk_bytes: 1 << 20,
            write_bytes_per_second: 128 << 20,
        }
    }
}

impl ReplicaConfig {
    /// A configuration with synod's defaults for everything but identity, peers, credentials and data directory.
    ///
    /// `peers` maps every replica to its address: a `SocketAddr` or a [`PeerAddr`].
    pub fn new<A: Into<PeerAddr>>(
        id: NodeId,
        peers: impl IntoIterator<Item = (NodeId, A)>,
        credentials: Credentials,
        data_dir: impl Into<PathBuf>,
    ) -> ReplicaConfig {
        ReplicaConfig {
            id,
            peers: synod_transport::address_book(peers),
            join: false,
            credentials,
            data_dir: data_dir.into(),
            timing: Timing::default(),
            max_in_flight: 4,
            max_batch_commands: 4096,
            max_batch_bytes: 1 << 20,
            max_waiting: synod_replica::DEFAULT_MAX_WAITING,
            sessions: SessionConfig::default(),
            transport: Settings::default(),
            segment_bytes: 64 << 20,
            snapshots: SnapshotSettings::default(),
            leases: false,
        }
    }
}
