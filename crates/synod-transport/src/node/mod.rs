//! The replica endpoint: peer links to the other replicas and the streams of connected clients.
//!
//! One QUIC endpoint per replica both accepts and dials. Between two
//! replicas there is one connection, dialed by the replica with the lower
//! id, which redials with exponential backoff and jitter whenever it is
//! lost; the higher replica accepts, and a newer connection from the same
//! peer replaces an older one. The address book changes at runtime
//! ([`Node::add_peer`], [`Node::remove_peer`]), and a replica whose
//! certificate the cluster CA signed is accepted even before it is in the
//! book (a new member dials the cluster before the others have applied its
//! addition): its link has no address until one is added, and is never dialed. On that connection each side opens two
//! unidirectional streams: an ordered consensus stream (sent with priority)
//! and a bulk stream for catch-up and snapshots, so heartbeats never wait
//! behind bulk data.
//!
//! `types` holds the configuration, events and errors; `lifecycle` starts and
//! stops the endpoint and accepts connections; `peers` runs the peer links;
//! `clients` serves the client streams; `local` opens client streams from
//! inside the replica's process.

mod clients;
mod lifecycle;
mod local;
mod peers;
mod types;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use synod_wire::NodeId;

use crate::addr::PeerAddr;
use crate::queue::Outbox;
use crate::stats::{Stats, StatsSnapshot};

use lifecycle::Driver;
pub(crate) use local::LocalConn;
pub use local::{LocalClients, LocalError};
pub use types::{ClientConnId, Inbound, Lane, NodeConfig, Settings, Sink, StartError};

/// A replica's endpoint: peer links, client streams, counters.
///
/// Every method may be called from any thread, async or not, and none
/// blocks. Dropping the node closes every connection and stops its runtime.
pub struct Node {
    shared: Arc<Shared>,
    runtime: Option<Driver>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.shared.id).field("local_addr", &self.local_addr).finish()
    }
}

struct Shared {
    id: NodeId,
    settings: Settings,
    stats: Stats,
    sink: Sink,
    /// The address book's links, and the accept-only links of peers that dialed in first.
    links: RwLock<HashMap<NodeId, Arc<Link>>>,
    /// For the links added at runtime.
    credentials: crate::certs::Credentials,
    transport_config: Arc<quinn::TransportConfig>,
    /// Where the dial loops of links added at runtime run.
    handle: tokio::runtime::Handle,
    clients: RwLock<HashMap<ClientConnId, Arc<Outbox>>>,
    next_client: AtomicU64,
    /// Connections open or in their handshake, against `max_connections`.
    connections: AtomicUsize,
    /// Per client number with a connection open: its connections, against
    /// `max_connections_per_client`, and its intake budget.
    client_connections: Mutex<HashMap<u32, PerClient>>,
    endpoint: quinn::Endpoint,
    closing: AtomicBool,
    /// Why the last refused handshake failed (an expired certificate says so here).
    last_handshake_failure: Mutex<Option<String>>,
}

/// What a replica keeps per client identity while it has a connection open.
struct PerClient {
    /// Connections open.
    open: usize,
    /// Request bytes it may still send now (`Settings::client_bytes_per_second`);
    /// negative while it is paused.
    tokens: f64,
    /// When `tokens` was last refilled.
    at: std::time::Instant,
}

struct Link {
    peer: NodeId,
    /// Where it listens; `None` for a peer that dialed in before it was added (never dialed).
    addr: Mutex<Option<PeerAddr>>,
    /// Dropped from the address book: its dial loop ends and its queues are closed.
    removed: AtomicBool,
    /// A dial loop runs for it.
    dialing: AtomicBool,
    consensus: Arc<Outbox>,
    bulk: Arc<Outbox>,
    /// Serialise writers across connections, so an old connection's writer
    /// has let go of a queue before a new one takes from it.
    consensus_writer: tokio::sync::Mutex<()>,
    bulk_writer: tokio::sync::Mutex<()>,
    state: Mutex<LinkState>,
    client_config: quinn::ClientConfig,
}

#[derive(Default)]
struct LinkState {
    generation: u64,
    conn: Option<quinn::Connection>,
    ever_up: bool,
}

impl Node {
    /// Why the last handshake this replica refused failed, as logged (e.g. a
    /// peer's expired certificate); `None` if it has refused none.
    pub fn last_handshake_failure(&self) -> Option<String> {
        self.shared.last_handshake_failure.lock().clone()
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A copy of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }
}

impl Shared {
    fn deliver(&self, event: Inbound) {
        (self.sink)(event);
    }
}
