//! The background task that owns the connection: a thin async shell around [`ClientCore`].
//!
//! Every decision (registration, sequence numbers and acknowledgements,
//! pipelining, request ids per attempt, connection epochs, redirects,
//! failover, `Busy` and reconnect backoff, deadlines) is the sans-IO
//! [`ClientCore`]'s, in `synod-client-core`; this task owns the core, the
//! QUIC connection and one timer, in the manner of quinn's
//! `ConnectionDriver`: it feeds the core each input (a call, a connection
//! attempt's result, a reply, the loss of the connection, the timer) and
//! then carries out the core's outputs (connect, transmit, events) until it
//! is quiescent. Callers hand it [`Call`]s on a channel and wait on a
//! oneshot; the driver reads the replies off the current connection's stream
//! itself (a reader task of its own would add a task wake-up and a channel
//! to every answer), and a task per connection attempt reports how it went.
//!
//! ```text
//!  callers --Call--> driver --frames--> ClientSender --QUIC--> replica
//!     ^                |  ^                                       |
//!     +---oneshot------+  +------------- reply frames <-----------+
//! ```
//!
//! The core's replica ids are fixed; the driver's [`Book`] says which
//! replica stands behind each, and learns the cluster's membership
//! ([`AdminQuery::Members`](synod_wire::AdminQuery::Members), asked of every
//! replica it knows) when a redirect names a leader it has no address for, or
//! when a whole round of connection attempts failed.
//!
//! Time for the core is microseconds since the driver started, on tokio's clock.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use synod_client_core::{CallError, CallId, ClientCore, ClientEvent, Connect, CoreConfig, RegisterError};
use synod_transport::{ClientEndpoint, ClientStream, Jitter, PeerAddr, RecvError, SendError};
use synod_wire::{ClientId, ClientReply, MembersView, NodeId, Outcome, ReadMode, Wire};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::book::Book;
use crate::{ClientConfig, ClientError, ConnectError, LinkError, ReadsFrom};

/// One caller's request, handed to the driver.
#[derive(Debug)]
pub(crate) struct Call {
    /// A command for the log, or the query of a read outside the log.
    pub payload: Vec<u8>,
    /// `Some`: a read outside the log, served as this says, with no session.
    pub read: Option<ReadMode>,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Vec<u8>, ClientError>>,
}

/// What a connection attempt reports.
struct Attempted {
    epoch: u64,
    node: NodeId,
    result: Result<ClientStream, LinkError>,
}

/// The open connection, as the core numbered it.
struct Conn {
    epoch: u64,
    stream: ClientStream,
}

pub(crate) struct Driver {
    cfg: ClientConfig,
    endpoint: Arc<ClientEndpoint>,
    /// The session's driver (else a reader's, which shares its endpoint).
    session: bool,
    core: ClientCore,
    /// Time zero of the core's clock.
    base: Instant,
    attempts_tx: mpsc::UnboundedSender<Attempted>,
    conn: Option<Conn>,
    registered: Option<oneshot::Sender<Result<ClientId, ConnectError>>>,
    waiters: HashMap<CallId, oneshot::Sender<Result<Vec<u8>, ClientError>>>,
    /// The last failed connection attempt, for [`ConnectError::Connect`].
    last_failure: Option<(PeerAddr, LinkError)>,
    /// The replicas known, and which stands behind each of the core's ids.
    book: Book,
    /// A membership query is under way; its answer comes on `learned`.
    learning: bool,
    learned_tx: mpsc::UnboundedSender<Option<MembersView>>,
    /// Connection attempts failed in a row.
    failures_in_a_row: usize,
}

impl Driver {
    /// Starts the driver task. With `registered` (the session's driver) it
    /// registers a session, reports it there, then serves `calls`; without
    /// (a reader, for [`ReadsFrom`] other than the session), it serves the
    /// reads of `calls` with no session, from the replica `cfg` names.
    pub(crate) fn spawn(
        cfg: ClientConfig,
        endpoint: Arc<ClientEndpoint>,
        calls: mpsc::Receiver<Call>,
        registered: Option<oneshot::Sender<Result<ClientId, ConnectError>>>,
    ) {
        let (attempts_tx, attempts) = mpsc::unbounded_channel();
        let (learned_tx, learned) = mpsc::unbounded_channel();
        // Seeded from the process's hash keys and the clock: nonces and jitter differ per client.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut jitter = Jitter::new(now.as_nanos() as u64);
        let seed = jitter.next_u64();
        let mut replicas: Vec<NodeId> = cfg.replicas.iter().map(|(n, _)| *n).collect();
        let session = registered.is_some();
        if let Some(local) = cfg.local.as_ref().filter(|_| session) {
            // The session starts with the replica in this process, reached without QUIC.
            if let Some(first) = replicas.iter().position(|&n| n == local.node()) {
                replicas.rotate_left(first);
            }
        }
        if !session {
            // The reader starts with its replica and goes on in address-book order.
            let first = match cfg.reads_from {
                ReadsFrom::Replica(node) => replicas.iter().position(|&n| n == node).unwrap_or(0),
                ReadsFrom::Spread | ReadsFrom::Session => {
                    (jitter.next_u64() % replicas.len() as u64) as usize
                }
            };
            replicas.rotate_left(first);
        }
        let core_config = CoreConfig {
            replicas,
            request_timeout: cfg.request_timeout,
            register_deadline: cfg.deadline,
            max_in_flight: cfg.max_in_flight,
            give_up_unreachable: true,
            session,
        };
        let driver = Driver {
            core: ClientCore::new(core_config, 0, seed),
            base: Instant::now(),
            endpoint,
            session,
            attempts_tx,
            conn: None,
            registered,
            waiters: HashMap::new(),
            last_failure: None,
            book: Book::new(&cfg.replicas),
            learning: false,
            learned_tx,
            failures_in_a_row: 0,
            cfg,
        };
        tokio::spawn(driver.run(attempts, learned, calls));
    }

    fn now(&self) -> u64 {
        micros(self.base.elapsed())
    }

    /// Registers a session, then serves calls until every [`crate::Client`] handle is gone.
    async fn run(
        mut self,
        mut attempts: mpsc::UnboundedReceiver<Attempted>,
        mut learned: mpsc::UnboundedReceiver<Option<MembersView>>,
        mut calls: mpsc::Receiver<Call>,
    ) {
        loop {
            self.drive();
            if self.core.is_dead() {
                // Registration failed.
                break;
            }
            let admit = if self.session { self.core.can_call() } else { self.core.can_read() };
            let wake = self.core.poll_timeout().map(|t| self.base + std::time::Duration::from_micros(t));
            tokio::select! {
                biased;
                Some(a) = attempts.recv() => self.on_attempt(a),
                Some(view) = learned.recv() => {
                    self.learning = false;
                    if let Some(view) = view {
                        tracing::debug!(epoch = view.epoch, from = %view.from, "client learned the membership");
                        self.book.learn(&view);
                    }
                }
                reply = next_reply(&mut self.conn) => self.on_reply(reply),
                call = calls.recv(), if admit => match call {
                    Some(call) => self.admit(call),
                    None => break,
                },
                () = register_abandoned(&mut self.registered) => break,
                () = sleep_until(wake) => {
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
            }
        }
        if let Some(conn) = &self.conn {
            conn.stream.sender().finish();
        }
        self.conn = None;
        if self.session {
            // The reader, if any, shares the endpoint and stops with the same last handle.
            self.endpoint.close();
        }
        tracing::debug!(session = ?self.core.session(), "client driver stopped");
    }

    fn admit(&mut self, call: Call) {
        let Call { payload, read, deadline, reply } = call;
        let now = self.now();
        let deadline = micros(deadline.saturating_duration_since(self.base));
        let id = match read {
            // Sent to the replica the client is connected to, which serves it.
            Some(mode) => self.core.handle_read(now, payload, mode, deadline),
            None => self.core.handle_call(now, payload, deadline),
        };
        self.waiters.insert(id, reply);
    }

    fn on_attempt(&mut self, a: Attempted) {
        let now = self.now();
        match a.result {
            Ok(stream) => {
                self.failures_in_a_row = 0;
                self.core.handle_connected(now, a.epoch, a.node);
                if self.core.connection() == Some((a.epoch, a.node)) {
                    tracing::debug!(node = a.node.0, epoch = a.epoch, "connected to replica");
                    self.conn = Some(Conn { epoch: a.epoch, stream });
                } else {
                    stream.close();
                }
            }
            Err(e) => {
                let addr = self.address(a.node);
                tracing::debug!(%addr, error = %e, "cannot connect to replica");
                self.last_failure = Some((addr, e));
                self.failures_in_a_row += 1;
                if self.failures_in_a_row >= self.book.len() {
                    // No replica of the round answered: the members may have moved on.
                    self.failures_in_a_row = 0;
                    self.learn();
                }
                self.core.handle_connect_failed(now, a.epoch, a.node);
            }
        }
    }

    /// A reply frame, or the loss, of the current connection.
    fn on_reply(&mut self, reply: Result<Bytes, RecvError>) {
        let Some(epoch) = self.conn.as_ref().map(|c| c.epoch) else { return };
        let now = self.now();
        match reply {
            Ok(frame) => match ClientReply::decode(&frame) {
                Ok(mut reply) => {
                    if let Outcome::Redirect { leader: Some(leader) } = reply.outcome {
                        let current = self.core.connection().map(|(_, node)| node);
                        match self.book.route(leader, current) {
                            Some(core) => reply.outcome = Outcome::Redirect { leader: Some(core) },
                            // A leader with no known address: ask the members; meanwhile the core tries the next.
                            None => self.learn(),
                        }
                    }
                    self.core.handle_reply(now, epoch, reply)
                }
                Err(e) => tracing::warn!(error = %e, "undecodable reply from replica; ignored"),
            },
            Err(e) => {
                tracing::debug!(reason = %e, "connection to replica lost");
                self.conn = None;
                self.core.handle_disconnected(now, epoch);
            }
        }
    }

    /// Carries out the core's outputs until it has none.
    fn drive(&mut self) {
        loop {
            let mut progress = false;
            if let Some(connect) = self.core.poll_connect() {
                self.start_connect(connect);
                progress = true;
            }
            while let Some(t) = self.core.poll_transmit() {
                progress = true;
                let id = t.id();
                let refused = match &self.conn {
                    Some(conn) if conn.epoch == t.epoch => match t.frame.encode() {
                        Ok(bytes) => !push(&conn.stream, bytes),
                        Err(e) => {
                            let now = self.now();
                            self.core.handle_unencodable(now, id, e);
                            false
                        }
                    },
                    _ => true,
                };
                if refused {
                    let now = self.now();
                    self.core.handle_refused(now, t.epoch, id);
                }
            }
            while let Some(event) = self.core.poll_event() {
                progress = true;
                self.on_event(event);
            }
            // The core moved away from the connection (failover): close it.
            if let Some(conn) = &self.conn {
                if self.core.connection().map(|(e, _)| e) != Some(conn.epoch) {
                    conn.stream.close();
                    self.conn = None;
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn on_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Registered(client) => {
                tracing::debug!(%client, "session registered");
                if let Some(tx) = self.registered.take() {
                    let _ = tx.send(Ok(client));
                }
            }
            ClientEvent::RegisterFailed(e) => {
                let err = match (e, self.last_failure.take()) {
                    (RegisterError::Unreachable { .. }, Some((addr, source))) => {
                        ConnectError::Connect { addr, source }
                    }
                    _ => ConnectError::Timeout(self.cfg.deadline),
                };
                if let Some(tx) = self.registered.take() {
                    let _ = tx.send(Err(err));
                }
            }
            ClientEvent::Completed { call, result } => {
                if let Some(tx) = self.waiters.remove(&call) {
                    let _ = tx.send(result.map_err(|e| match e {
                        CallError::Timeout => ClientError::Timeout,
                        CallError::SessionExpired => ClientError::SessionExpired,
                        CallError::Rejected(r) => ClientError::Rejected(r),
                        CallError::Encode(e) => ClientError::Encode(e),
                        // The client hands a reader reads only.
                        CallError::NoSession => ClientError::Closed,
                    }));
                }
            }
        }
    }

    fn address(&self, node: NodeId) -> PeerAddr {
        self.book.target(node).1
    }

    /// Asks every replica known for the membership, unless a query is under way.
    fn learn(&mut self) {
        if std::mem::replace(&mut self.learning, true) {
            return;
        }
        let mut config = self.cfg.clone();
        config.replicas = self.book.all();
        let learned = self.learned_tx.clone();
        tokio::spawn(async move {
            let _ = learned.send(crate::admin::members(&config).await.ok());
        });
    }

    fn start_connect(&mut self, Connect { epoch, node }: Connect) {
        // `node` is the core's id; the replica behind it may be another.
        let (real, addr) = self.book.target(node);
        let (endpoint, attempts, timeout) =
            (self.endpoint.clone(), self.attempts_tx.clone(), self.cfg.request_timeout);
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, endpoint.connect(addr, Some(real))).await {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(LinkError::Transport(e)),
                Err(_) => Err(LinkError::Timeout(timeout)),
            };
            let _ = attempts.send(Attempted { epoch, node, result });
        });
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Queues a frame; `false` if it was refused.
fn push(stream: &ClientStream, bytes: Vec<u8>) -> bool {
    match stream.send(bytes) {
        Ok(()) => true,
        Err(SendError::Closed { .. }) => {
            // The connection is going away; its reader reports the loss.
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, "request not queued");
            false
        }
    }
}

/// The next reply on the current connection; never while there is none.
///
/// Cancel-safe: a frame is taken from the stream only when it is returned.
async fn next_reply(conn: &mut Option<Conn>) -> Result<Bytes, RecvError> {
    match conn {
        Some(conn) => conn.stream.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the caller of `Client::connect` went away before the session was registered.
async fn register_abandoned(registered: &mut Option<oneshot::Sender<Result<ClientId, ConnectError>>>) {
    match registered {
        Some(tx) => tx.closed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
