//! In-process client streams: a front end that runs in the replica's own
//! process (synod-resp's listener) reaches this replica's intake without
//! QUIC.
//!
//! A local stream is a client stream like any other to the replica: it has a
//! [`ClientConnId`], arrives with [`Inbound::ClientUp`], its requests are
//! [`Inbound::Client`] frames, its replies go through [`Node::reply`] into an
//! outbox, and it leaves with [`Inbound::ClientDown`]. What it skips is the
//! wire: no encryption, no UDP, no framing. Its requests are handed to the
//! sink on the caller's thread, in order; the caller's task reads the
//! replies off the outbox.
//!
//! It counts against `max_connections_per_client` as a QUIC connection does,
//! but not against `client_bytes_per_second`: that budget holds back a
//! client across the network by not reading its stream, and an in-process
//! caller bounds its own intake (a synod client keeps at most
//! `max_in_flight` requests outstanding).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use synod_wire::NodeId;

use super::clients::ClientSlot;
use super::{ClientConnId, Inbound, Node, Shared};
use crate::queue::Outbox;
use crate::stats::Stats;

/// Opens client streams into one [`Node`] from inside its process: cheap to
/// clone, usable from any thread. Get it from [`Node::local_clients`] and
/// hand it to a client endpoint ([`crate::ClientEndpoint::with_local`]).
#[derive(Clone)]
pub struct LocalClients {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClients").field("node", &self.shared.id).finish()
    }
}

/// Why a local stream could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// The replica's endpoint is shutting down.
    #[error("{0} is shutting down")]
    Closing(NodeId),
    /// The client already has `max_connections_per_client` open on the replica.
    #[error("too many connections: client {client} has {limit} open on {node} (max_connections_per_client)")]
    TooMany {
        /// The replica.
        node: NodeId,
        /// The client number.
        client: u32,
        /// The limit.
        limit: usize,
    },
}

impl Node {
    /// A handle for opening in-process client streams to this replica.
    pub fn local_clients(&self) -> LocalClients {
        LocalClients { shared: self.shared.clone() }
    }
}

impl LocalClients {
    /// The replica these streams reach.
    pub fn node(&self) -> NodeId {
        self.shared.id
    }

    /// Opens a client stream for client number `client`, as if it had
    /// connected over QUIC with that client's certificate.
    pub(crate) fn open(&self, client: u32) -> Result<Arc<LocalConn>, LocalError> {
        let shared = &self.shared;
        if shared.closing.load(Ordering::Acquire) {
            return Err(LocalError::Closing(shared.id));
        }
        let Some(slot) = shared.clone().client_slot(client) else {
            Stats::add(&shared.stats.refused_connections, 1);
            let limit = shared.settings.max_connections_per_client;
            return Err(LocalError::TooMany { node: shared.id, client, limit });
        };
        let id = ClientConnId(shared.next_client.fetch_add(1, Ordering::Relaxed));
        let replies = Arc::new(Outbox::new(shared.settings.client_queue));
        shared.clients.write().insert(id, replies.clone());
        Stats::add(&shared.stats.client_streams, 1);
        let addr = shared.endpoint.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        shared.deliver(Inbound::ClientUp { conn: id, client, addr });
        Ok(Arc::new(LocalConn {
            shared: shared.clone(),
            id,
            addr,
            replies,
            finished: AtomicBool::new(false),
            down: AtomicBool::new(false),
            _slot: slot,
        }))
    }
}

/// One open local stream: both halves.
pub(crate) struct LocalConn {
    shared: Arc<Shared>,
    id: ClientConnId,
    /// The replica's endpoint: where a QUIC client would see it, and where the
    /// replica was told this stream comes from.
    addr: SocketAddr,
    /// The replica's replies, queued by [`Node::reply`].
    replies: Arc<Outbox>,
    /// The caller sends no more requests.
    finished: AtomicBool,
    /// Gone: the replica has had its `ClientDown`.
    down: AtomicBool,
    _slot: ClientSlot,
}

impl std::fmt::Debug for LocalConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalConn").field("node", &self.shared.id).field("conn", &self.id).finish()
    }
}

impl LocalConn {
    /// Hands a request frame to the replica now, on this thread; `Err`
    /// gives it back when the stream is finished, closed, or the replica is
    /// shutting down.
    pub(crate) fn send(&self, frame: Bytes) -> Result<(), Bytes> {
        if self.finished.load(Ordering::Acquire)
            || self.down.load(Ordering::Acquire)
            || self.shared.closing.load(Ordering::Acquire)
        {
            return Err(frame);
        }
        Stats::add(&self.shared.stats.frames_in, 1);
        Stats::add(&self.shared.stats.bytes_in, frame.len() as u64);
        self.shared.deliver(Inbound::Client { conn: self.id, frame });
        Ok(())
    }

    /// No more requests; replies still arrive.
    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// The next reply, or `None` once the replica closed the stream (or is
    /// shutting down) and every reply queued before was taken. Only one task
    /// may wait here at a time.
    pub(crate) async fn recv(&self, pending: &mut VecDeque<Bytes>) -> Option<Bytes> {
        loop {
            if let Some(frame) = pending.pop_front() {
                return Some(frame);
            }
            if self.shared.closing.load(Ordering::Acquire) {
                return None;
            }
            self.replies.take(pending).await;
            if pending.is_empty() {
                // `take` came back empty: the outbox is closed.
                return None;
            }
        }
    }

    /// The address a QUIC client would see: the replica's endpoint.
    pub(crate) fn replica_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the stream at once: the replica forgets it and refuses replies to it.
    pub(crate) fn close(&self) {
        if self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.replies.close();
        self.shared.clients.write().remove(&self.id);
        self.shared.deliver(Inbound::ClientDown { conn: self.id });
    }
}

impl Drop for LocalConn {
    fn drop(&mut self) {
        self.close();
    }
}
