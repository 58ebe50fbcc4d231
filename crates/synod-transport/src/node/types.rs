//! The endpoint's public types: its configuration and tunables, the events
//! it delivers, client stream ids and the errors of starting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use synod_wire::{NodeId, MAX_FRAME_LEN};

#[cfg(doc)]
use super::Node;
use crate::addr::{AddrError, PeerAddr};
use crate::certs::{Credentials, Identity};
use crate::queue::QueueLimit;
use crate::tls::TlsError;

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
    /// The most connections open at once, replicas' and clients' together,
    /// handshakes included. One more is refused before its handshake with
    /// QUIC's `CONNECTION_REFUSED`.
    pub max_connections: usize,
    /// The most connections one client identity (the client number its
    /// certificate names) may have open. One more is closed after its
    /// handshake with code 4 (`too many connections`). 1024 by default: a
    /// load generator, or a fleet of processes sharing one certificate,
    /// holds many sessions, each a connection (`cargo xtask bench overload`
    /// opens 1,000 with client 1's).
    pub max_connections_per_client: usize,
    /// A client connection with no request stream open for this long is
    /// closed with code 5 (`no stream`): keep-alives alone keep no connection.
    pub streamless_timeout: Duration,
    /// A client's frame must arrive whole within this long of its first byte;
    /// a stream that sends slower is stopped with code 6 (`frame timeout`).
    /// A stream waiting between frames is never timed out.
    pub frame_timeout: Duration,
    /// The bytes a client connection may have in flight to the replica (its
    /// QUIC connection receive window; replicas' connections keep 32 MiB).
    /// It bounds how much of a flooding client's data can queue ahead of
    /// another client's packets; a frame larger than it still arrives, a
    /// window at a time.
    pub client_receive_window: usize,
    /// The request bytes per second one client identity's streams are read
    /// at, over all its connections: a token bucket holding one second of
    /// this or one `max_frame_len`, whichever is more. A client that sends
    /// faster is not read until its budget refills; QUIC flow control then
    /// holds its data in its own machine. It bounds the share of the
    /// transport thread, and of the log, that one client (a flood of frames
    /// at the size limit) takes from the others. 32 MiB/s by default: a
    /// thousand sessions of one certificate at 100,000 commands a second
    /// send about 20 MB/s.
    pub client_bytes_per_second: u64,
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
            max_connections: 10_000,
            max_connections_per_client: 1024,
            streamless_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            client_receive_window: 1 << 20,
            client_bytes_per_second: 32 << 20,
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
