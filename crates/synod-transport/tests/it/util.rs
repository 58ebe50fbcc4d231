//! Test harness: a cluster CA, nodes on loopback with channel sinks, raw quinn impostors.
//!
//! Waits are for events, with a generous deadline that only turns a hang
//! into a failure; no test asserts on how long anything takes.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use synod_transport::certs::Ca;
use synod_transport::{Credentials, Identity, Inbound, Node, NodeConfig, Settings, StatsSnapshot};
use synod_wire::NodeId;

/// Long enough that only a hang reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn settings() -> Settings {
    Settings {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(3),
        keep_alive: Duration::from_millis(500),
        worker_threads: 1,
        ..Settings::default()
    }
}

pub struct Cluster {
    pub ca: Ca,
    pub book: BTreeMap<NodeId, SocketAddr>,
    sockets: BTreeMap<NodeId, UdpSocket>,
}

impl Cluster {
    /// A CA and an address book of `n` replicas on loopback ports reserved now.
    pub fn new(n: u32) -> Cluster {
        let ca = Ca::generate("test cluster").unwrap();
        let mut book = BTreeMap::new();
        let mut sockets = BTreeMap::new();
        for i in 1..=n {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            book.insert(NodeId(i), socket.local_addr().unwrap());
            sockets.insert(NodeId(i), socket);
        }
        Cluster { ca, book, sockets }
    }

    pub fn creds(&self, id: Identity) -> Credentials {
        self.ca.issue(id).unwrap()
    }

    pub fn config(&self, id: u32, settings: Settings) -> NodeConfig {
        NodeConfig {
            id: NodeId(id),
            peers: synod_transport::address_book(self.book.clone()),
            credentials: self.creds(Identity::Node(NodeId(id))),
            settings,
        }
    }

    /// Starts replica `id` on its reserved socket (or rebinds its address after a restart).
    pub fn start(&mut self, id: u32, settings: Settings) -> (Node, Events) {
        let config = self.config(id, settings);
        self.start_with(config)
    }

    pub fn start_with(&mut self, config: NodeConfig) -> (Node, Events) {
        let id = config.id;
        let socket = match self.sockets.remove(&id) {
            Some(s) => s,
            None => UdpSocket::bind(self.book[&id]).unwrap(),
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let node = Node::start_on(socket, config, sink(tx)).unwrap();
        (node, Events(rx))
    }
}

fn sink(tx: Sender<Inbound>) -> impl Fn(Inbound) + Send + Sync + 'static {
    move |e| drop(tx.send(e))
}

/// What a node's sink received.
pub struct Events(pub Receiver<Inbound>);

impl Events {
    /// Waits for the first event `f` maps to `Some`, skipping others.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut(&Inbound) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(e) => {
                    if let Some(t) = f(&e) {
                        return t;
                    }
                }
                Err(_) => panic!("never saw {what}"),
            }
        }
    }

    pub fn peer_up(&self, peer: u32) {
        self.wait(&format!("PeerUp {peer}"), |e| {
            (*e == Inbound::PeerUp { peer: NodeId(peer) }).then_some(())
        });
    }

    pub fn peer_down(&self, peer: u32) {
        self.wait(&format!("PeerDown {peer}"), |e| {
            (*e == Inbound::PeerDown { peer: NodeId(peer) }).then_some(())
        });
    }

    /// Collects `n` peer frames, as (from, lane, payload).
    pub fn peer_frames(&self, n: usize) -> Vec<(u32, synod_transport::Lane, Vec<u8>)> {
        (0..n)
            .map(|_| {
                self.wait("a peer frame", |e| match e {
                    Inbound::Peer { from, lane, frame } => Some((from.0, *lane, frame.to_vec())),
                    _ => None,
                })
            })
            .collect()
    }

    pub fn saw_peer_up(&self, peer: u32) -> bool {
        self.0.try_iter().any(|e| e == Inbound::PeerUp { peer: NodeId(peer) })
    }
}

/// Waits until `f` holds for a node's counters.
pub fn wait_stats(node: &Node, what: &str, f: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = node.stats();
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never saw {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A bare quinn client endpoint on loopback, for impostors.
pub fn raw_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Dials `addr` with a hand-made rustls client configuration.
pub async fn raw_dial(
    ep: &quinn::Endpoint,
    tls: rustls::ClientConfig,
    addr: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    ep.connect_with(quinn::ClientConfig::new(Arc::new(crypto)), addr, "node-2.synod").unwrap().await
}

/// The application error code a connection was closed with, by the other side.
pub async fn closed_code(conn: &quinn::Connection) -> Option<u64> {
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
        _ => None,
    }
}

/// Runs an echo server for `node` on a scoped thread until `stop`: client
/// frames are answered in reverse order of each batch that arrived together;
/// every other event is forwarded to the returned channel.
pub fn echo<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    node: &'s Node,
    events: &'s Events,
    stop: &'s std::sync::atomic::AtomicBool,
) -> Events {
    let (tx, rx) = crossbeam_channel::unbounded();
    scope.spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(first) = events.0.recv_timeout(Duration::from_millis(20)) else { continue };
            let mut batch = Vec::new();
            for e in std::iter::once(first).chain(events.0.try_iter()) {
                match e {
                    Inbound::Client { conn, frame } => batch.push((conn, frame)),
                    other => drop(tx.send(other)),
                }
            }
            for (conn, frame) in batch.into_iter().rev() {
                let _ = node.reply(conn, frame);
            }
        }
    });
    Events(rx)
}
