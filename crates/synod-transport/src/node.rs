//! The replica endpoint: peer links to the other replicas and the streams of connected clients.
//!
//! One QUIC endpoint per replica both accepts and dials. Between two
//! replicas there is one connection, dialed by the replica with the lower
//! id, which redials with exponential backoff and jitter whenever it is
//! lost; the higher replica accepts, and a newer connection from the same
//! peer replaces an older one. On that connection each side opens two
//! unidirectional streams: an ordered consensus stream (sent with priority)
//! and a bulk stream for catch-up and snapshots, so heartbeats never wait
//! behind bulk data.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use synod_wire::{NodeId, MAX_FRAME_LEN};

use crate::addr::{AddrError, PeerAddr};
use crate::certs::{Credentials, Identity};
use crate::io::{
    code, peer_header, remote_identity, write_loop, FrameReader, ReadFail, KIND_BULK, KIND_CLIENT,
    KIND_CONSENSUS,
};
use crate::jitter::Jitter;
use crate::queue::{Outbox, Push, QueueLimit};
use crate::stats::{Stats, StatsSnapshot};
use crate::tls::{self, TlsError};
use crate::{ReplyError, SendError};

/// Identifies one client stream on a replica, for [`Node::reply`].
///
/// A client normally opens one long-lived stream per connection; each
/// stream gets its own id, never reused by this [`Node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientConnId(pub u64);

/// Which peer stream a frame travelled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The ordered consensus stream.
    Consensus,
    /// The bulk stream (catch-up, snapshots).
    Bulk,
}

/// What a [`Node`] hands its sink.
///
/// Frames on one stream arrive in order. A frame from a peer arrives after
/// that peer's [`Inbound::PeerUp`]; `PeerUp` may repeat when a newer
/// connection replaces an older one, and [`Inbound::PeerDown`] means no
/// connection to that peer is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A frame from replica `from`.
    Peer {
        /// The sending replica, authenticated by its certificate.
        from: NodeId,
        /// The stream it came on.
        lane: Lane,
        /// The payload.
        frame: Bytes,
    },
    /// A link to replica `peer` is established.
    PeerUp {
        /// The replica.
        peer: NodeId,
    },
    /// The link to replica `peer` is lost; it is redialed (by the lower id).
    PeerDown {
        /// The replica.
        peer: NodeId,
    },
    /// A frame on client stream `conn`.
    Client {
        /// The stream, to answer with [`Node::reply`].
        conn: ClientConnId,
        /// The payload.
        frame: Bytes,
    },
    /// A client opened stream `conn`.
    ClientUp {
        /// The stream.
        conn: ClientConnId,
        /// The client number its certificate names.
        client: u32,
        /// Where the client connects from.
        addr: SocketAddr,
    },
    /// Client stream `conn` is gone; replies to it are refused from now on.
    ClientDown {
        /// The stream.
        conn: ClientConnId,
    },
}

/// Where a [`Node`] delivers what arrives. It runs on the transport's
/// threads, so it must not block for long: push into a channel and return.
pub type Sink = Arc<dyn Fn(Inbound) + Send + Sync>;

/// Tunables of an endpoint. [`Settings::default`] suits a cluster on a LAN.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The largest frame payload sent or accepted, at most [`MAX_FRAME_LEN`].
    pub max_frame_len: usize,
    /// The per-peer consensus send queue.
    pub consensus_queue: QueueLimit,
    /// The per-peer bulk send queue.
    pub bulk_queue: QueueLimit,
    /// The per-client-stream reply queue (and a client's request queue).
    pub client_queue: QueueLimit,
    /// The first redial delay after a peer link is lost; it doubles per failure.
    pub reconnect_min: Duration,
    /// The largest redial delay.
    pub reconnect_max: Duration,
    /// A connection that hears nothing for this long is closed (handshakes too).
    pub idle_timeout: Duration,
    /// How often an idle connection sends a keep-alive.
    pub keep_alive: Duration,
    /// Threads for a [`Node`]'s runtime. With 1 (the default), a current-thread
    /// runtime runs on one dedicated thread: every task wake-up stays on that
    /// thread, which shortens each hop (see `docs/decisions/0003-core-on-the-input-thread.md`).
    /// With more, a multi-thread runtime with that many workers, for machines
    /// whose QUIC work outgrows one core.
    pub worker_threads: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_frame_len: MAX_FRAME_LEN,
            consensus_queue: QueueLimit { frames: 65_536, bytes: 64 << 20 },
            bulk_queue: QueueLimit { frames: 1024, bytes: 128 << 20 },
            client_queue: QueueLimit { frames: 65_536, bytes: 64 << 20 },
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(1),
            worker_threads: 1,
        }
    }
}

/// Everything a replica's endpoint needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This replica.
    pub id: NodeId,
    /// The address book: every replica's address (this one's included, for [`Node::start`]).
    /// Host names are resolved on every dial (see [`PeerAddr`]); build it from
    /// socket addresses with [`crate::address_book`].
    pub peers: BTreeMap<NodeId, PeerAddr>,
    /// The cluster CA and this replica's certificate, which must name `id`.
    pub credentials: Credentials,
    /// Tunables.
    pub settings: Settings,
}

/// Why an endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The credentials name another identity.
    #[error("credentials are for {found}, expected {expected}")]
    WrongIdentity {
        /// The identity the endpoint is for.
        expected: Identity,
        /// The identity the certificate names.
        found: Identity,
    },
    /// The address book has no address for this replica.
    #[error("the address book has no address for node {}", .0 .0)]
    NoAddress(NodeId),
    /// This replica's own address could not be resolved.
    #[error("cannot bind this replica's address: {0}")]
    Resolve(#[from] AddrError),
    /// `max_frame_len` is above [`MAX_FRAME_LEN`].
    #[error("max_frame_len {0} exceeds the limit of {MAX_FRAME_LEN}")]
    FrameLimit(usize),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The socket or runtime could not be created.
    #[error("{what}: {source}")]
    Io {
        /// What was being created.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

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

/// How long a stopping node's runtime waits for its tasks.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Gives the CONNECTION_CLOSE frames of a closed endpoint a moment to leave, so peers notice at once.
async fn let_closes_leave(endpoint: quinn::Endpoint) {
    let _ = tokio::time::timeout(Duration::from_millis(200), endpoint.wait_idle()).await;
}

/// What runs a node's tasks.
enum Driver {
    /// A multi-thread runtime with its own workers.
    Pool(tokio::runtime::Runtime),
    /// A current-thread runtime, driven by one thread until `stop` fires.
    Thread { stop: tokio::sync::oneshot::Sender<()>, thread: std::thread::JoinHandle<()> },
}

struct Shared {
    id: NodeId,
    settings: Settings,
    stats: Stats,
    sink: Sink,
    links: HashMap<NodeId, Arc<Link>>,
    clients: RwLock<HashMap<ClientConnId, Arc<Outbox>>>,
    next_client: AtomicU64,
    endpoint: quinn::Endpoint,
    closing: AtomicBool,
    /// Why the last refused handshake failed (an expired certificate says so here).
    last_handshake_failure: Mutex<Option<String>>,
}

struct Link {
    peer: NodeId,
    addr: PeerAddr,
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
    /// Binds the address the address book gives for `config.id` and starts serving.
    pub fn start(
        config: NodeConfig,
        sink: impl Fn(Inbound) + Send + Sync + 'static,
    ) -> Result<Node, StartError> {
        check(&config)?;
        let addr = config.peers.get(&config.id).ok_or(StartError::NoAddress(config.id))?.resolve(None)?;
        let socket = crate::udp::bind(addr).map_err(|source| StartError::Io { what: "binding", source })?;
        Node::start_on(socket, config, sink)
    }

    /// Starts serving on an already bound socket (tests bind port 0 first to learn addresses).
    pub fn start_on(
        socket: UdpSocket,
        config: NodeConfig,
        sink: impl Fn(Inbound) + Send + Sync + 'static,
    ) -> Result<Node, StartError> {
        check(&config)?;
        crate::udp::size_buffers(&socket);
        let NodeConfig { id, peers, credentials, settings } = config;
        let single = settings.worker_threads <= 1;
        let runtime = if single {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(settings.worker_threads)
                .thread_name(format!("synod-transport-{}", id.0))
                .enable_all()
                .build()
        }
        .map_err(|source| StartError::Io { what: "starting the runtime", source })?;
        let transport = tls::transport_config(settings.idle_timeout, settings.keep_alive);
        let server = tls::quinn_server(&credentials, transport.clone())?;
        let endpoint = {
            let _guard = runtime.enter();
            quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                Some(server),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
            .map_err(|source| StartError::Io { what: "creating the endpoint", source })?
        };
        let local_addr =
            endpoint.local_addr().map_err(|source| StartError::Io { what: "reading the address", source })?;
        let mut links = HashMap::new();
        for (&peer, addr) in peers.iter().filter(|(&p, _)| p != id) {
            let client_config = tls::quinn_client(&credentials, Some(peer), transport.clone())?;
            links.insert(
                peer,
                Arc::new(Link {
                    peer,
                    addr: addr.clone(),
                    consensus: Arc::new(Outbox::new(settings.consensus_queue)),
                    bulk: Arc::new(Outbox::new(settings.bulk_queue)),
                    consensus_writer: tokio::sync::Mutex::new(()),
                    bulk_writer: tokio::sync::Mutex::new(()),
                    state: Mutex::default(),
                    client_config,
                }),
            );
        }
        let shared = Arc::new(Shared {
            id,
            settings,
            stats: Stats::default(),
            sink: Arc::new(sink),
            links,
            clients: RwLock::default(),
            next_client: AtomicU64::new(1),
            endpoint,
            closing: AtomicBool::new(false),
            last_handshake_failure: Mutex::new(None),
        });
        runtime.spawn(shared.clone().accept_loop());
        for link in shared.links.values().filter(|l| l.peer > id) {
            runtime.spawn(shared.clone().dial_loop(link.clone()));
        }
        let runtime = if single {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let endpoint = shared.endpoint.clone();
            let thread = std::thread::Builder::new()
                .name(format!("synod-transport-{}", id.0))
                .spawn(move || {
                    runtime.block_on(async move {
                        // Both a stop and a dropped sender end the loop.
                        let _ = stopped.await;
                        let_closes_leave(endpoint).await;
                    });
                    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
                })
                .map_err(|source| StartError::Io { what: "starting the transport thread", source })?;
            Driver::Thread { stop, thread }
        } else {
            Driver::Pool(runtime)
        };
        tracing::info!(node = id.0, addr = %local_addr, "transport started");
        Ok(Node { shared, runtime: Some(runtime), local_addr })
    }

    /// Why the last handshake this replica refused failed, as logged (e.g. a
    /// peer's expired certificate); `None` if it has refused none.
    pub fn last_handshake_failure(&self) -> Option<String> {
        self.shared.last_handshake_failure.lock().clone()
    }

    /// Queues `frame` for replica `to` on the ordered consensus stream.
    ///
    /// Never blocks. Frames queued while the link is down wait for it, up to
    /// the queue's limit; when the queue is full the frame is refused
    /// ([`SendError::Full`], counted in `queue_full_drops`) and handed back,
    /// so the caller decides (consensus messages are retransmitted by the
    /// protocol anyway). Frames already handed to a connection that then
    /// fails are lost (counted in `frames_lost`).
    pub fn send(&self, to: NodeId, frame: impl Into<Bytes>) -> Result<(), SendError> {
        self.push_peer(to, frame.into(), Lane::Consensus)
    }

    /// Queues `frame` for replica `to` on the bulk stream; as [`Node::send`] otherwise.
    pub fn send_bulk(&self, to: NodeId, frame: impl Into<Bytes>) -> Result<(), SendError> {
        self.push_peer(to, frame.into(), Lane::Bulk)
    }

    /// Queues `frame` as a reply on client stream `conn`; frames queued
    /// together leave in one write.
    pub fn reply(&self, conn: ClientConnId, frame: impl Into<Bytes>) -> Result<(), ReplyError> {
        let frame = frame.into();
        if frame.len() > self.shared.settings.max_frame_len {
            return Err(ReplyError::TooLarge { len: frame.len(), limit: self.shared.settings.max_frame_len });
        }
        let outbox = self.shared.clients.read().get(&conn).cloned();
        let Some(outbox) = outbox else { return Err(ReplyError::Gone { conn, frame }) };
        match outbox.push(frame) {
            Push::Queued => Ok(()),
            Push::Full(frame) => {
                Stats::add(&self.shared.stats.queue_full_drops, 1);
                Err(ReplyError::Full { conn, frame })
            }
            Push::Closed(frame) => Err(ReplyError::Gone { conn, frame }),
        }
    }

    /// Closes client stream `conn` after the replies already queued.
    pub fn close_client(&self, conn: ClientConnId) {
        if let Some(outbox) = self.shared.clients.read().get(&conn) {
            outbox.close();
        }
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether a link to `peer` is established right now.
    pub fn is_connected(&self, peer: NodeId) -> bool {
        self.shared.links.get(&peer).is_some_and(|l| l.state.lock().conn.is_some())
    }

    /// A copy of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Closes every connection, waits briefly for the close to reach peers,
    /// and stops the runtime. Dropping the node does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        self.shared.closing.store(true, Ordering::Release);
        self.shared.endpoint.close(code::SHUTDOWN, b"shutdown");
        match runtime {
            Driver::Pool(runtime) => {
                runtime.block_on(let_closes_leave(self.shared.endpoint.clone()));
                runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
            }
            Driver::Thread { stop, thread } => {
                let _ = stop.send(());
                if let Err(panic) = thread.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
        tracing::info!(node = self.shared.id.0, "transport stopped");
    }

    fn push_peer(&self, to: NodeId, frame: Bytes, lane: Lane) -> Result<(), SendError> {
        if frame.len() > self.shared.settings.max_frame_len {
            return Err(SendError::TooLarge { len: frame.len(), limit: self.shared.settings.max_frame_len });
        }
        let Some(link) = self.shared.links.get(&to) else { return Err(SendError::UnknownPeer { to, frame }) };
        let outbox = match lane {
            Lane::Consensus => &link.consensus,
            Lane::Bulk => &link.bulk,
        };
        match outbox.push(frame) {
            Push::Queued => Ok(()),
            Push::Full(frame) => {
                Stats::add(&self.shared.stats.queue_full_drops, 1);
                Err(SendError::Full { to, frame })
            }
            Push::Closed(frame) => Err(SendError::Closed { frame }),
        }
    }
}

/// Refuses a configuration the endpoint cannot honour.
fn check(config: &NodeConfig) -> Result<(), StartError> {
    let expected = Identity::Node(config.id);
    if config.credentials.identity() != expected {
        return Err(StartError::WrongIdentity { expected, found: config.credentials.identity() });
    }
    if config.settings.max_frame_len > MAX_FRAME_LEN {
        return Err(StartError::FrameLimit(config.settings.max_frame_len));
    }
    Ok(())
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(runtime) = self.runtime.take() {
                self.shared.endpoint.close(code::SHUTDOWN, b"shutdown");
                match runtime {
                    Driver::Pool(runtime) => runtime.shutdown_background(),
                    // The thread stops on its own; do not wait for it while unwinding.
                    Driver::Thread { stop, .. } => drop(stop.send(())),
                }
            }
        } else {
            self.stop();
        }
    }
}

impl Shared {
    fn deliver(&self, event: Inbound) {
        (self.sink)(event);
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            tokio::spawn(self.clone().handle_incoming(incoming));
        }
    }

    async fn handle_incoming(self: Arc<Self>, incoming: quinn::Incoming) {
        let remote = incoming.remote_address();
        let conn = match incoming.await {
            Ok(conn) => conn,
            Err(e) => {
                Stats::add(&self.stats.handshake_failures, 1);
                let why = e.to_string();
                tracing::warn!(%remote, error = %why, "handshake refused");
                *self.last_handshake_failure.lock() = Some(why);
                return;
            }
        };
        match remote_identity(&conn) {
            Ok(Identity::Node(peer)) => match self.links.get(&peer) {
                Some(link) => {
                    let link = link.clone();
                    self.run_link(&link, conn, false).await;
                }
                None => self.refuse(&conn, remote, &format!("node {} is not in the address book", peer.0)),
            },
            Ok(Identity::Client(client)) => self.serve_client(conn, client).await,
            Err(e) => self.refuse(&conn, remote, &e.to_string()),
        }
    }

    fn refuse(&self, conn: &quinn::Connection, remote: SocketAddr, why: &str) {
        Stats::add(&self.stats.rejected_peers, 1);
        tracing::warn!(%remote, why, "connection refused");
        conn.close(code::IDENTITY, why.as_bytes());
    }

    async fn dial_loop(self: Arc<Self>, link: Arc<Link>) {
        let mut rng = Jitter::new(u64::from(self.id.0) << 32 | u64::from(link.peer.0));
        let mut backoff = self.settings.reconnect_min;
        let name = tls::server_name(Some(link.peer));
        let local = self.endpoint.local_addr().ok();
        // The first failure of a kind in a row is logged as a warning, repeats at debug level.
        let mut last_warned = String::new();
        while !self.closing.load(Ordering::Acquire) {
            // Host names are resolved again on every attempt: a peer that moved is found.
            let addr = match link.addr.lookup(local).await {
                Ok(addr) => addr,
                Err(e) => {
                    Stats::add(&self.stats.connect_failures, 1);
                    let text = e.to_string();
                    if text != last_warned {
                        tracing::warn!(peer = link.peer.0, error = %text, "cannot resolve the peer's address; retrying");
                        last_warned = text;
                    } else {
                        tracing::debug!(peer = link.peer.0, error = %text, "cannot resolve the peer's address");
                    }
                    tokio::time::sleep(rng.around(backoff)).await;
                    backoff = (backoff * 2).min(self.settings.reconnect_max);
                    continue;
                }
            };
            let attempt = self.endpoint.connect_with(link.client_config.clone(), addr, &name);
            match attempt {
                Ok(connecting) => match connecting.await {
                    Ok(conn) => {
                        let up = tokio::time::Instant::now();
                        self.run_link(&link, conn, true).await;
                        // A link that lasted resets the backoff; one closed at once (the
                        // peer refused our certificate after the handshake) does not.
                        if up.elapsed() >= self.settings.reconnect_max {
                            backoff = self.settings.reconnect_min;
                            last_warned.clear();
                        }
                    }
                    Err(e) => {
                        Stats::add(&self.stats.connect_failures, 1);
                        // A refused handshake (an expired or foreign certificate) is worth a
                        // warning; a peer that is simply down is not.
                        let refused = matches!(
                            &e,
                            quinn::ConnectionError::TransportError(_)
                                | quinn::ConnectionError::ConnectionClosed(_)
                        );
                        let text = e.to_string();
                        if refused && text != last_warned {
                            tracing::warn!(peer = link.peer.0, %addr, error = %text, "handshake with peer failed");
                            last_warned = text;
                        } else {
                            tracing::debug!(peer = link.peer.0, %addr, error = %text, "dial failed");
                        }
                    }
                },
                Err(quinn::ConnectError::EndpointStopping) => return,
                Err(e) => {
                    Stats::add(&self.stats.connect_failures, 1);
                    tracing::warn!(peer = link.peer.0, %addr, error = %e, "cannot dial");
                }
            }
            tokio::time::sleep(rng.around(backoff)).await;
            backoff = (backoff * 2).min(self.settings.reconnect_max);
        }
    }

    /// Runs one connection of a peer link until it closes.
    async fn run_link(self: &Arc<Self>, link: &Arc<Link>, conn: quinn::Connection, dialer: bool) {
        let peer = link.peer;
        let remote = conn.remote_address();
        // The accepting side learns who dialed from the certificate, and
        // requires the first stream's claim to match it.
        let first = if dialer {
            None
        } else {
            tokio::select! {
                r = conn.accept_uni() => match r {
                    Ok(recv) => match self.check_claim(&conn, recv, peer).await {
                        Some(first) => Some(first),
                        None => return,
                    },
                    Err(_) => return,
                },
                _ = conn.closed() => return,
            }
        };
        let opened = async {
            let mut consensus = conn.open_uni().await?;
            consensus.write_all(&peer_header(KIND_CONSENSUS, self.id)).await?;
            let _ = consensus.set_priority(1);
            let mut bulk = conn.open_uni().await?;
            bulk.write_all(&peer_header(KIND_BULK, self.id)).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((consensus, bulk))
        };
        let (consensus, bulk) = match opened.await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::debug!(peer = peer.0, error = %e, "cannot open peer streams");
                return;
            }
        };
        let generation = {
            let mut state = link.state.lock();
            if let Some(old) = state.conn.replace(conn.clone()) {
                old.close(code::REPLACED, b"replaced");
            }
            state.generation += 1;
            if std::mem::replace(&mut state.ever_up, true) {
                Stats::add(&self.stats.reconnects, 1);
            }
            state.generation
        };
        Stats::add(&self.stats.peer_connections, 1);
        tracing::info!(node = self.id.0, peer = peer.0, %remote, dialer, "peer link up");
        self.deliver(Inbound::PeerUp { peer });
        for (lane, send) in [(Lane::Consensus, consensus), (Lane::Bulk, bulk)] {
            let (shared, link, conn) = (self.clone(), link.clone(), conn.clone());
            tokio::spawn(async move {
                let (outbox, lock) = match lane {
                    Lane::Consensus => (&link.consensus, &link.consensus_writer),
                    Lane::Bulk => (&link.bulk, &link.bulk_writer),
                };
                let _writer = lock.lock().await;
                write_loop(outbox, send, &conn, &shared.stats).await;
            });
        }
        if let Some((recv, lane)) = first {
            tokio::spawn(self.clone().read_peer(conn.clone(), recv, peer, lane));
        }
        let accept = {
            let (shared, conn) = (self.clone(), conn.clone());
            async move {
                while let Ok(recv) = conn.accept_uni().await {
                    let shared = shared.clone();
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        if let Some((recv, lane)) = shared.check_claim(&conn, recv, peer).await {
                            shared.read_peer(conn, recv, peer, lane).await;
                        }
                    });
                }
            }
        };
        let reason = tokio::select! {
            reason = conn.closed() => reason,
            () = accept => conn.closed().await,
        };
        let down = {
            let mut state = link.state.lock();
            if state.generation == generation {
                state.conn = None;
                true
            } else {
                false
            }
        };
        if down {
            tracing::info!(node = self.id.0, peer = peer.0, %reason, "peer link down");
            self.deliver(Inbound::PeerDown { peer });
        }
    }

    /// Reads a peer stream's header and checks the claimed id against the
    /// certificate's; refuses the connection otherwise.
    async fn check_claim(
        &self,
        conn: &quinn::Connection,
        mut recv: quinn::RecvStream,
        peer: NodeId,
    ) -> Option<(quinn::RecvStream, Lane)> {
        let mut header = [0u8; 5];
        if recv.read_exact(&mut header).await.is_err() {
            return None;
        }
        let lane = match header[0] {
            KIND_CONSENSUS => Lane::Consensus,
            KIND_BULK => Lane::Bulk,
            other => {
                Stats::add(&self.stats.rejected_frames, 1);
                tracing::warn!(peer = peer.0, kind = other, "unknown peer stream kind");
                conn.close(code::BAD_FRAME, b"unknown stream kind");
                return None;
            }
        };
        let claimed = NodeId(u32::from_be_bytes([header[1], header[2], header[3], header[4]]));
        if claimed != peer {
            self.refuse(
                conn,
                conn.remote_address(),
                &format!("claims node {} with the certificate of node {}", claimed.0, peer.0),
            );
            return None;
        }
        Some((recv, lane))
    }

    async fn read_peer(
        self: Arc<Self>,
        conn: quinn::Connection,
        recv: quinn::RecvStream,
        from: NodeId,
        lane: Lane,
    ) {
        let mut reader = FrameReader::new(recv, self.settings.max_frame_len);
        loop {
            match reader.next().await {
                Ok(Some(frame)) => {
                    Stats::add(&self.stats.frames_in, 1);
                    Stats::add(&self.stats.bytes_in, frame.len() as u64);
                    self.deliver(Inbound::Peer { from, lane, frame });
                }
                Ok(None) => return,
                Err(ReadFail::Frame(e)) => {
                    // A broken consensus stream cannot be resumed in order:
                    // close the connection so the link is rebuilt.
                    Stats::add(&self.stats.rejected_frames, 1);
                    tracing::warn!(peer = from.0, ?lane, error = %e, "bad frame from peer; closing the link");
                    reader.stop(code::BAD_FRAME);
                    conn.close(code::BAD_FRAME, b"bad frame");
                    return;
                }
                Err(ReadFail::Stream(e)) => {
                    tracing::debug!(peer = from.0, ?lane, error = %e, "peer stream ended");
                    return;
                }
            }
        }
    }

    async fn serve_client(self: Arc<Self>, conn: quinn::Connection, client: u32) {
        loop {
            tokio::select! {
                bi = conn.accept_bi() => match bi {
                    Ok((send, recv)) => {
                        tokio::spawn(self.clone().client_stream(conn.clone(), client, send, recv));
                    }
                    Err(_) => return,
                },
                uni = conn.accept_uni() => {
                    if uni.is_ok() {
                        self.refuse(&conn, conn.remote_address(), &format!("client {client} acts as a replica"));
                    }
                    return;
                }
            }
        }
    }

    async fn client_stream(
        self: Arc<Self>,
        conn: quinn::Connection,
        client: u32,
        send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let addr = conn.remote_address();
        let mut kind = [0u8; 1];
        if recv.read_exact(&mut kind).await.is_err() {
            return;
        }
        if kind[0] != KIND_CLIENT {
            Stats::add(&self.stats.rejected_frames, 1);
            tracing::warn!(%addr, client, kind = kind[0], "unknown client stream kind; closing the stream");
            let _ = recv.stop(code::BAD_FRAME);
            let mut send = send;
            let _ = send.reset(code::BAD_FRAME);
            return;
        }
        let id = ClientConnId(self.next_client.fetch_add(1, Ordering::Relaxed));
        let outbox = Arc::new(Outbox::new(self.settings.client_queue));
        self.clients.write().insert(id, outbox.clone());
        Stats::add(&self.stats.client_streams, 1);
        self.deliver(Inbound::ClientUp { conn: id, client, addr });
        let writer = {
            let (shared, outbox, conn) = (self.clone(), outbox.clone(), conn.clone());
            tokio::spawn(async move { write_loop(&outbox, send, &conn, &shared.stats).await })
        };
        let mut reader = FrameReader::new(recv, self.settings.max_frame_len);
        loop {
            match reader.next().await {
                Ok(Some(frame)) => {
                    Stats::add(&self.stats.frames_in, 1);
                    Stats::add(&self.stats.bytes_in, frame.len() as u64);
                    self.deliver(Inbound::Client { conn: id, frame });
                }
                Ok(None) => {
                    // The client will send no more requests; answer what is
                    // pending until it goes away or the replica closes the stream.
                    tokio::select! {
                        _ = conn.closed() => {}
                        _ = writer => {}
                    }
                    break;
                }
                Err(ReadFail::Frame(e)) => {
                    Stats::add(&self.stats.rejected_frames, 1);
                    tracing::warn!(%addr, client, error = %e, "bad frame from client; closing the stream");
                    reader.stop(code::BAD_FRAME);
                    break;
                }
                Err(ReadFail::Stream(e)) => {
                    tracing::debug!(%addr, client, error = %e, "client stream ended");
                    break;
                }
            }
        }
        outbox.close();
        self.clients.write().remove(&id);
        self.deliver(Inbound::ClientDown { conn: id });
    }
}
