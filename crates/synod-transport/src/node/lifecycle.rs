//! Starting and stopping an endpoint: the runtime, the QUIC endpoint and its
//! accept loop (which hands each connection to a peer link or a client), shutdown.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use synod_wire::MAX_FRAME_LEN;

use super::{Inbound, Link, Node, NodeConfig, Shared, StartError};
use crate::certs::Identity;
use crate::io::{code, remote_identity};
use crate::stats::Stats;
use crate::tls;

/// How long a stopping node's runtime waits for its tasks.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Gives the CONNECTION_CLOSE frames of a closed endpoint a moment to leave, so peers notice at once.
async fn let_closes_leave(endpoint: quinn::Endpoint) {
    let _ = tokio::time::timeout(Duration::from_millis(200), endpoint.wait_idle()).await;
}

/// What runs a node's tasks.
pub(super) enum Driver {
    /// A multi-thread runtime with its own workers.
    Pool(tokio::runtime::Runtime),
    /// A current-thread runtime, driven by one thread until `stop` fires.
    Thread { stop: tokio::sync::oneshot::Sender<()>, thread: std::thread::JoinHandle<()> },
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
        let shared = Arc::new(Shared {
            id,
            settings,
            stats: Stats::default(),
            sink: Arc::new(sink),
            links: RwLock::default(),
            credentials,
            transport_config: transport,
            handle: runtime.handle().clone(),
            clients: RwLock::default(),
            next_client: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            client_connections: Mutex::default(),
            endpoint,
            closing: AtomicBool::new(false),
            last_handshake_failure: Mutex::new(None),
        });
        for (&peer, addr) in peers.iter().filter(|(&p, _)| p != id) {
            let link = shared.new_link(peer, Some(addr.clone()))?;
            shared.links.write().insert(peer, link);
        }
        runtime.spawn(shared.clone().accept_loop());
        let links: Vec<Arc<Link>> = shared.links.read().values().cloned().collect();
        for link in &links {
            shared.maybe_dial(link);
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

    /// Closes every connection, waits briefly for the close to reach peers,
    /// and stops the runtime. Dropping the node does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        self.shared.closing.store(true, Ordering::Release);
        self.shared.endpoint.close(code::SHUTDOWN, b"shutdown");
        // In-process streams (`local`) have no connection to lose: end their replies here.
        for outbox in self.shared.clients.read().values() {
            outbox.close();
        }
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
    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let open = self.connections.load(Ordering::Relaxed);
            let limit = self.settings.max_connections;
            if open >= limit {
                // Before the handshake, so refusing costs next to nothing;
                // the dialer sees QUIC's CONNECTION_REFUSED.
                Stats::add(&self.stats.refused_connections, 1);
                tracing::warn!(remote = %incoming.remote_address(), open, limit, "connection refused: max_connections open");
                incoming.refuse();
                continue;
            }
            self.connections.fetch_add(1, Ordering::Relaxed);
            let shared = self.clone();
            tokio::spawn(async move {
                shared.clone().handle_incoming(incoming).await;
                shared.connections.fetch_sub(1, Ordering::Relaxed);
            });
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
            Ok(Identity::Node(peer)) if peer == self.id => {
                self.refuse(&conn, remote, &format!("node {} is this replica", peer.0));
            }
            Ok(Identity::Node(peer)) => {
                // The CA vouches for the peer: one not in the address book yet
                // (a new member, a replica joining) gets an accept-only link.
                let link = self.links.read().get(&peer).cloned();
                let link = match link {
                    Some(link) => link,
                    None => match self.new_link(peer, None) {
                        Ok(new) => {
                            tracing::info!(node = self.id.0, peer = peer.0, %remote, "accepting a replica not in the address book");
                            self.links.write().entry(peer).or_insert(new).clone()
                        }
                        Err(e) => return self.refuse(&conn, remote, &e.to_string()),
                    },
                };
                self.run_link(&link, conn, false).await;
            }
            Ok(Identity::Client(client)) => self.serve_client(conn, client).await,
            Err(e) => self.refuse(&conn, remote, &e.to_string()),
        }
    }

    pub(super) fn refuse(&self, conn: &quinn::Connection, remote: SocketAddr, why: &str) {
        Stats::add(&self.stats.rejected_peers, 1);
        tracing::warn!(%remote, why, "connection refused");
        conn.close(code::IDENTITY, why.as_bytes());
    }
}
