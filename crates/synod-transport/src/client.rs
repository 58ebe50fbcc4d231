//! The client side: connect to a replica with a client certificate and pipeline frames on one long-lived stream.
//!
//! The transport does not interpret frames. A client that pipelines puts a
//! request id into each request frame and the replica echoes it in the reply
//! frame (synod-wire's `ClientRequest::id` / `ClientReply::id`), because
//! replies may come back in any order.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use synod_wire::{NodeId, MAX_FRAME_LEN};

use crate::certs::{Credentials, Identity};
use crate::io::{code, write_loop, FrameReader, ReadFail, KIND_CLIENT};
use crate::node::{LocalClients, LocalConn, LocalError, Settings, StartError};
use crate::queue::{Outbox, Push};
use crate::stats::{Stats, StatsSnapshot};
use crate::tls;
use crate::{FrameError, SendError};

/// A client's QUIC endpoint, from which it connects to replicas.
///
/// Create it inside a tokio runtime.
#[derive(Debug)]
pub struct ClientEndpoint {
    endpoint: quinn::Endpoint,
    credentials: Credentials,
    settings: Settings,
    transport: Arc<quinn::TransportConfig>,
    stats: Arc<Stats>,
    /// The replica in this process, reached without QUIC ([`ClientEndpoint::with_local`]).
    local: Option<LocalClients>,
}

/// Why a client could not reach a replica.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The replica's host name did not resolve.
    #[error("cannot connect: {0}")]
    Resolve(#[from] crate::AddrError),
    /// The connection could not be started (bad address, endpoint closed).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The replica's address.
        addr: SocketAddr,
        /// quinn's reason.
        #[source]
        source: quinn::ConnectError,
    },
    /// The handshake or the stream failed (the replica refused the certificate, or is not the expected one).
    #[error("connection to {addr} failed: {source}")]
    Connection {
        /// The replica's address.
        addr: SocketAddr,
        /// quinn's reason.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The stream's header could not be written.
    #[error("stream to {addr} failed: {source}")]
    Stream {
        /// The replica's address.
        addr: SocketAddr,
        /// quinn's reason.
        #[source]
        source: quinn::WriteError,
    },
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The replica in this process refused an in-process stream.
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// Why no reply frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The replica finished the stream.
    #[error("the replica closed the stream")]
    Finished,
    /// The replica sent a malformed or oversized frame; the stream is closed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream or connection failed (including a refused client certificate).
    #[error(transparent)]
    Stream(#[from] quinn::ReadError),
}

impl ClientEndpoint {
    /// A client endpoint bound to `bind` (e.g. `0.0.0.0:0`) presenting `credentials`.
    pub fn new(
        bind: SocketAddr,
        credentials: Credentials,
        settings: Settings,
    ) -> Result<ClientEndpoint, StartError> {
        if let Identity::Node(_) = credentials.identity() {
            // A replica's certificate works as a client certificate too; allowed for tools on a replica host.
            tracing::debug!("client endpoint uses a replica certificate");
        }
        if settings.max_frame_len > MAX_FRAME_LEN {
            return Err(StartError::FrameLimit(settings.max_frame_len));
        }
        let socket = crate::udp::bind(bind).map_err(|source| StartError::Io { what: "binding", source })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| StartError::Io { what: "binding", source })?;
        let transport = tls::transport_config(settings.idle_timeout, settings.keep_alive);
        Ok(ClientEndpoint { endpoint, credentials, settings, transport, stats: Arc::default(), local: None })
    }

    /// Reaches the replica `local` opens streams to in-process: [`connect`](Self::connect)
    /// to that replica then skips QUIC (no encryption, no UDP, no framing)
    /// and hands requests to its intake on the caller's thread. For a front
    /// end running inside a replica's process (synod-resp's listener); the
    /// stream counts as one of this endpoint's client's connections.
    pub fn with_local(mut self, local: LocalClients) -> ClientEndpoint {
        self.local = Some(local);
        self
    }

    /// Connects to the replica at `addr` (replica `replica` if given, else
    /// any replica of the cluster) and opens the long-lived request stream.
    /// To the replica of [`with_local`](Self::with_local), the stream is in-process.
    ///
    /// A host name is resolved now, on every call, preferring the family of
    /// the endpoint's own address.
    pub async fn connect(
        &self,
        addr: impl Into<crate::PeerAddr>,
        replica: Option<NodeId>,
    ) -> Result<ClientStream, ConnectError> {
        if let Some(local) = self.local.as_ref().filter(|l| replica == Some(l.node())) {
            let client = match self.credentials.identity() {
                Identity::Client(n) => n,
                // A replica's certificate used as a client's (tools on a replica host): its id counts as the number.
                Identity::Node(id) => id.0,
            };
            let conn = local.open(client)?;
            return Ok(ClientStream {
                sender: ClientSender {
                    to: Requests::Local(conn.clone()),
                    max_frame_len: self.settings.max_frame_len,
                    stats: self.stats.clone(),
                },
                from: Replies::Local { conn, pending: VecDeque::new() },
                stats: self.stats.clone(),
            });
        }
        let addr = addr.into().lookup(self.endpoint.local_addr().ok()).await?;
        let config = tls::quinn_client(&self.credentials, replica, self.transport.clone())?;
        let conn = self
            .endpoint
            .connect_with(config, addr, &tls::server_name(replica))
            .map_err(|source| ConnectError::Connect { addr, source })?
            .await
            .map_err(|source| ConnectError::Connection { addr, source })?;
        let (mut send, recv) =
            conn.open_bi().await.map_err(|source| ConnectError::Connection { addr, source })?;
        send.write_all(&[KIND_CLIENT]).await.map_err(|source| ConnectError::Stream { addr, source })?;
        let outbox = Arc::new(Outbox::new(self.settings.client_queue));
        {
            let (outbox, conn, stats) = (outbox.clone(), conn.clone(), self.stats.clone());
            tokio::spawn(async move { write_loop(&outbox, send, &conn, &stats).await });
        }
        Ok(ClientStream {
            sender: ClientSender {
                to: Requests::Quic(outbox),
                max_frame_len: self.settings.max_frame_len,
                stats: self.stats.clone(),
            },
            from: Replies::Quic { reader: FrameReader::new(recv, self.settings.max_frame_len), conn },
            stats: self.stats.clone(),
        })
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Counters of every stream of this endpoint.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Closes every connection.
    pub fn close(&self) {
        self.endpoint.close(code::SHUTDOWN, b"client closing");
    }
}

/// One long-lived request stream to a replica.
#[derive(Debug)]
pub struct ClientStream {
    sender: ClientSender,
    from: Replies,
    stats: Arc<Stats>,
}

/// Where a stream's replies come from.
#[derive(Debug)]
enum Replies {
    Quic {
        reader: FrameReader,
        conn: quinn::Connection,
    },
    /// In-process ([`ClientEndpoint::with_local`]); `pending`: replies taken, not yet returned.
    Local {
        conn: Arc<LocalConn>,
        pending: VecDeque<Bytes>,
    },
}

/// The sending half of a [`ClientStream`]: cheap to clone, usable from any thread, never blocks.
#[derive(Debug, Clone)]
pub struct ClientSender {
    to: Requests,
    max_frame_len: usize,
    stats: Arc<Stats>,
}

/// Where a stream's requests go.
#[derive(Debug, Clone)]
enum Requests {
    /// Queued for the stream's writer task.
    Quic(Arc<Outbox>),
    /// Handed to the replica's intake at once.
    Local(Arc<LocalConn>),
}

impl ClientSender {
    /// Queues a request frame; requests queued together leave in one write.
    pub fn send(&self, frame: impl Into<Bytes>) -> Result<(), SendError> {
        let frame = frame.into();
        if frame.len() > self.max_frame_len {
            return Err(SendError::TooLarge { len: frame.len(), limit: self.max_frame_len });
        }
        let outbox = match &self.to {
            Requests::Quic(outbox) => outbox,
            Requests::Local(conn) => {
                return match conn.send(frame) {
                    Ok(()) => {
                        Stats::add(&self.stats.frames_out, 1);
                        Ok(())
                    }
                    Err(frame) => Err(SendError::Closed { frame }),
                }
            }
        };
        match outbox.push(frame) {
            Push::Queued => Ok(()),
            Push::Full(frame) => {
                Stats::add(&self.stats.queue_full_drops, 1);
                Err(SendError::Full { to: NodeId(0), frame })
            }
            Push::Closed(frame) => Err(SendError::Closed { frame }),
        }
    }

    /// Finishes the request side after the queued frames; replies still arrive.
    pub fn finish(&self) {
        match &self.to {
            Requests::Quic(outbox) => outbox.close(),
            Requests::Local(conn) => conn.finish(),
        }
    }
}

impl ClientStream {
    /// Queues a request frame; see [`ClientSender::send`].
    pub fn send(&self, frame: impl Into<Bytes>) -> Result<(), SendError> {
        self.sender.send(frame)
    }

    /// A sending handle for other threads or tasks.
    pub fn sender(&self) -> ClientSender {
        self.sender.clone()
    }

    /// The next reply frame, in the order the replica sent them.
    pub async fn recv(&mut self) -> Result<Bytes, RecvError> {
        let (reader, conn) = match &mut self.from {
            Replies::Quic { reader, conn } => (reader, conn),
            Replies::Local { conn, pending } => {
                let frame = conn.recv(pending).await.ok_or(RecvError::Finished)?;
                Stats::add(&self.stats.frames_in, 1);
                Stats::add(&self.stats.bytes_in, frame.len() as u64);
                return Ok(frame);
            }
        };
        match reader.next().await {
            Ok(Some(frame)) => {
                Stats::add(&self.stats.frames_in, 1);
                Stats::add(&self.stats.bytes_in, frame.len() as u64);
                Ok(frame)
            }
            Ok(None) => Err(RecvError::Finished),
            Err(ReadFail::Frame(e)) => {
                Stats::add(&self.stats.rejected_frames, 1);
                tracing::warn!(remote = %conn.remote_address(), error = %e, "bad frame from replica");
                reader.stop(code::BAD_FRAME);
                Err(RecvError::Frame(e))
            }
            Err(ReadFail::Stream(e)) => Err(RecvError::Stream(e)),
            // A client's reader has no frame timeout.
            Err(ReadFail::Slow { .. }) => unreachable!("client readers have no frame timeout"),
        }
    }

    /// The replica's address.
    pub fn remote_addr(&self) -> SocketAddr {
        match &self.from {
            Replies::Quic { conn, .. } => conn.remote_address(),
            Replies::Local { conn, .. } => conn.replica_addr(),
        }
    }

    /// Whether the stream is in-process ([`ClientEndpoint::with_local`]).
    pub fn is_local(&self) -> bool {
        matches!(self.from, Replies::Local { .. })
    }

    /// Closes the connection at once.
    pub fn close(&self) {
        match &self.from {
            Replies::Quic { conn, .. } => conn.close(code::SHUTDOWN, b"client closing"),
            Replies::Local { conn, .. } => conn.close(),
        }
    }
}
