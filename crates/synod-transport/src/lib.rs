//! synod-transport: QUIC with mutual TLS between synod replicas and their clients.
//!
//! The transport moves opaque, length-limited byte frames and knows nothing
//! of Paxos or sessions. It offers
//!
//! * [`Node`], a replica's endpoint: one connection per pair of replicas
//!   (dialed by the lower id, redialed with backoff and jitter), each with an
//!   ordered consensus stream ([`Node::send`]) and a separate bulk stream
//!   ([`Node::send_bulk`]) so heartbeats never wait behind catch-up data; and
//!   the clients' pipelined streams ([`Node::reply`]). Everything that
//!   arrives goes to a caller-provided sink as an [`Inbound`]; every send
//!   is non-blocking and callable from any thread, against bounded queues
//!   that refuse (and count) a frame when full.
//! * [`ClientEndpoint`] / [`ClientStream`]: a client's long-lived, pipelined
//!   request stream to a replica.
//! * [`certs`]: the cluster CA and per-node and per-client certificates
//!   (`synod certs init`), with the identity bound into each certificate.
//! * [`frame`]: the frame codec, a 4-byte big-endian length then the payload.
//!
//! Security: every connection is QUIC with TLS 1.3 (rustls, ring provider
//! only) and mutual authentication against the cluster CA, ALPN `synod/1`.
//! A replica dialing another checks that the certificate names the replica
//! it meant; a replica accepting a peer checks that the certificate names a
//! replica (in its address book or not: the address book changes with the
//! cluster's membership, [`Node::add_peer`]) and that every stream's claimed
//! id matches it; a client certificate cannot act as a replica. Malformed or oversized
//! frames close their stream (a peer link is then rebuilt), are counted in
//! [`StatsSnapshot::rejected_frames`] and traced; everyone else is served on.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use synod_transport::{certs, Credentials, Identity, Inbound, Node, NodeConfig, Settings};
//! use synod_wire::NodeId;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::path::Path::new("/etc/synod/certs");
//! certs::init(dir, 3, 1, false)?;
//! let peers: BTreeMap<NodeId, synod_transport::PeerAddr> = (1..=3)
//!     .map(|i| (NodeId(i), format!("localhost:{}", 7000 + i).parse().unwrap()))
//!     .collect();
//! let (tx, rx) = crossbeam_channel::unbounded::<Inbound>();
//! let node = Node::start(
//!     NodeConfig {
//!         id: NodeId(1),
//!         peers,
//!         credentials: Credentials::load(dir, Identity::Node(NodeId(1)))?,
//!         settings: Settings::default(),
//!     },
//!     move |event| drop(tx.send(event)),
//! )?;
//! node.send(NodeId(2), b"hello".to_vec())?;
//! for event in rx.iter() {
//!     if let Inbound::Client { conn, frame } = event {
//!         node.reply(conn, frame)?; // An echo server.
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod addr;
pub mod certs;
mod client;
pub mod frame;
mod io;
mod jitter;
mod node;
mod queue;
mod stats;
pub mod tls;
mod udp;

use std::collections::BTreeMap;

use bytes::Bytes;
use synod_wire::NodeId;

pub use addr::{AddrError, PeerAddr};
pub use certs::{Credentials, Identity};
pub use client::{ClientEndpoint, ClientSender, ClientStream, ConnectError, RecvError};
pub use frame::FrameError;
pub use jitter::Jitter;
pub use node::{
    ClientConnId, Inbound, Lane, LocalClients, LocalError, Node, NodeConfig, Settings, Sink, StartError,
};
pub use queue::QueueLimit;
pub use stats::{Stats, StatsSnapshot};
pub use tls::ALPN;

/// An address book of [`PeerAddr`]s from socket addresses (or anything else that converts).
pub fn address_book<A: Into<PeerAddr>>(
    book: impl IntoIterator<Item = (NodeId, A)>,
) -> BTreeMap<NodeId, PeerAddr> {
    book.into_iter().map(|(id, addr)| (id, addr.into())).collect()
}

/// Why a frame was not queued for a replica (or, from a client, for its replica); the frame is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The send queue is full; the frame was dropped and counted in `queue_full_drops`.
    #[error("send queue to node {} is full", to.0)]
    Full {
        /// The destination (`NodeId(0)` from a client).
        to: NodeId,
        /// The refused frame.
        frame: Bytes,
    },
    /// The address book has no such replica.
    #[error("node {} is not in the address book", to.0)]
    UnknownPeer {
        /// The destination.
        to: NodeId,
        /// The refused frame.
        frame: Bytes,
    },
    /// The frame is longer than the frame limit.
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The stream is closed.
    #[error("stream closed")]
    Closed {
        /// The refused frame.
        frame: Bytes,
    },
}

/// Why a reply was not queued for a client stream; the frame is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The stream's reply queue is full; counted in `queue_full_drops`.
    #[error("reply queue of client stream {} is full", conn.0)]
    Full {
        /// The client stream.
        conn: ClientConnId,
        /// The refused frame.
        frame: Bytes,
    },
    /// The client stream is gone.
    #[error("client stream {} is gone", conn.0)]
    Gone {
        /// The client stream.
        conn: ClientConnId,
        /// The refused frame.
        frame: Bytes,
    },
    /// The frame is longer than the frame limit.
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}
