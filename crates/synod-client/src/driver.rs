//! The background task that owns the connection: registration, pipelining, failover and resends.
//!
//! One task per [`crate::Client`] owns everything mutable: the link to the
//! current replica, the table of outstanding requests and the sequence
//! numbers. Callers hand it [`Call`]s on a channel and wait on a oneshot;
//! the driver reads the replies off the current connection's stream itself
//! (a reader task of its own would add a task wake-up and a channel to every
//! answer), and a task per connection attempt reports how it went.
//!
//! ```text
//!  callers --Call--> driver --frames--> ClientSender --QUIC--> replica
//!     ^                |  ^                                       |
//!     +---oneshot------+  +------------- reply frames <-----------+
//! ```
//!
//! Every attempt of a request gets a fresh request id, and the driver
//! remembers which id is a request's current attempt and which connection
//! (epoch) carried it. An `Applied` answer completes its request whatever
//! attempt it answers (the session table returns the first answer to every
//! retry), but only the current attempt's `Redirect` or `Busy` on the
//! current connection moves the client: a duplicated or late redirect for an
//! attempt that was already resent changes nothing, so redirects never
//! multiply the requests in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use synod_transport::{ClientEndpoint, ClientStream, Jitter, PeerAddr, RecvError, SendError};
use synod_wire::{
    ClientFrame, ClientId, ClientReply, ClientRequest, Command, NodeId, Outcome, Seq, Wire, MAX_FRAME_LEN,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{ClientConfig, ClientError, ConnectError, LinkError, Rejection};

/// The shortest pause before reconnecting after a failed attempt; it doubles per failure.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause before reconnecting.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Room for the request envelope around a payload.
const ENVELOPE: usize = 256;

/// One caller's request, handed to the driver.
#[derive(Debug)]
pub(crate) struct Call {
    pub payload: Vec<u8>,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Vec<u8>, ClientError>>,
}

/// What a connection attempt reports.
enum Event {
    Connected { epoch: u64, node: NodeId, result: Result<ClientStream, LinkError> },
}

enum Waiter {
    Register(oneshot::Sender<Result<ClientId, ConnectError>>),
    Op(oneshot::Sender<Result<Vec<u8>, ClientError>>),
}

/// The attempt of a request currently on the wire.
#[derive(Clone, Copy)]
struct Attempt {
    id: u64,
    epoch: u64,
    sent_at: Instant,
}

struct Pending {
    /// `None` for the registration, else the operation's payload.
    payload: Option<Vec<u8>>,
    deadline: Instant,
    waiter: Waiter,
    /// The attempt on the current connection; `None` until (re)sent.
    attempt: Option<Attempt>,
    /// After `Busy`, not before this.
    not_before: Option<Instant>,
    /// `Busy` answers so far; each doubles the pause before the next attempt.
    busy: u32,
    /// Every request id this request was sent under.
    ids: Vec<u64>,
}

enum Link {
    /// Not connected; connect to the cursor's replica at `at`.
    Down {
        at: Instant,
    },
    Connecting,
    Up {
        node: NodeId,
        stream: ClientStream,
    },
}

/// The key of the registration in the table of outstanding requests; operations use their seq (from 1).
const REGISTER: u64 = 0;

pub(crate) struct Driver {
    cfg: ClientConfig,
    endpoint: Arc<ClientEndpoint>,
    events_tx: mpsc::UnboundedSender<Event>,
    epoch: u64,
    link: Link,
    /// The replica to connect to next, as an index into the address book.
    cursor: usize,
    nonce: u64,
    session: Option<ClientId>,
    expired: bool,
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    /// Request id -> key in `pending`, for every attempt of every outstanding request.
    ids: HashMap<u64, u64>,
    next_id: u64,
    /// Failovers since the last answer; drives the backoff.
    failovers: u32,
    /// Connection attempts that failed in a row, and the last failure.
    connect_failures: usize,
    last_failure: Option<(PeerAddr, LinkError)>,
    rng: Jitter,
}

impl Driver {
    /// Starts the driver task: it registers a session, reports it on `registered`, then serves `calls`.
    pub(crate) fn spawn(
        cfg: ClientConfig,
        endpoint: ClientEndpoint,
        calls: mpsc::Receiver<Call>,
        registered: oneshot::Sender<Result<ClientId, ConnectError>>,
    ) {
        let (driver, events) = Driver::new(cfg, endpoint);
        tokio::spawn(driver.run(events, calls, registered));
    }

    fn new(cfg: ClientConfig, endpoint: ClientEndpoint) -> (Driver, mpsc::UnboundedReceiver<Event>) {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        // Seeded from the process's hash keys and the clock: nonces and jitter differ per client.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut rng = Jitter::new(now.as_nanos() as u64);
        let nonce = rng.next_u64();
        let driver = Driver {
            cfg,
            endpoint: Arc::new(endpoint),
            events_tx,
            epoch: 0,
            link: Link::Down { at: Instant::now() },
            cursor: 0,
            nonce,
            session: None,
            expired: false,
            next_seq: 1,
            pending: BTreeMap::new(),
            ids: HashMap::new(),
            next_id: 1,
            failovers: 0,
            connect_failures: 0,
            last_failure: None,
            rng,
        };
        (driver, events_rx)
    }

    /// Registers a session, then serves calls until every [`crate::Client`] handle is gone.
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut calls: mpsc::Receiver<Call>,
        registered: oneshot::Sender<Result<ClientId, ConnectError>>,
    ) {
        let now = Instant::now();
        self.pending.insert(
            REGISTER,
            Pending {
                payload: None,
                deadline: now + self.cfg.deadline,
                waiter: Waiter::Register(registered),
                attempt: None,
                not_before: None,
                busy: 0,
                ids: Vec::new(),
            },
        );
        let period =
            (self.cfg.request_timeout / 4).clamp(Duration::from_millis(2), Duration::from_millis(50));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let admit = self.session.is_some() && self.span() < self.cfg.max_in_flight as u64;
            let reconnect_at = match self.link {
                Link::Down { at } => Some(at),
                _ => None,
            };
            tokio::select! {
                biased;
                Some(event) = events.recv() => self.on_event(event),
                reply = next_reply(&mut self.link) => self.on_reply(reply),
                call = calls.recv(), if admit => match call {
                    Some(call) => self.admit(call),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
                () = sleep_until(reconnect_at), if reconnect_at.is_some() => self.start_connect(),
            }
            if self.session.is_none() && !self.pending.contains_key(&REGISTER) {
                // Registration failed, or its caller went away.
                break;
            }
        }
        if let Link::Up { stream, .. } = &self.link {
            stream.sender().finish();
        }
        self.link = Link::Down { at: Instant::now() };
        self.endpoint.close();
        tracing::debug!(session = ?self.session, "client driver stopped");
    }

    /// Every sequence number at or below this has been answered (or given up on).
    fn ack(&self) -> u64 {
        self.pending.range(1..).next().map_or(self.next_seq - 1, |(&seq, _)| seq - 1)
    }

    /// How many sequence numbers lie between the acknowledged one and the newest.
    fn span(&self) -> u64 {
        self.next_seq - 1 - self.ack()
    }

    fn admit(&mut self, call: Call) {
        let Call { payload, deadline, reply } = call;
        if self.expired {
            let _ = reply.send(Err(ClientError::SessionExpired));
            return;
        }
        if Instant::now() >= deadline {
            let _ = reply.send(Err(ClientError::Timeout));
            return;
        }
        if payload.len() + ENVELOPE > MAX_FRAME_LEN {
            let _ = reply.send(Err(ClientError::Encode(synod_wire::EncodeError::TooLarge {
                what: "client request",
                len: payload.len() + ENVELOPE,
                limit: MAX_FRAME_LEN,
            })));
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(
            seq,
            Pending {
                payload: Some(payload),
                deadline,
                waiter: Waiter::Op(reply),
                attempt: None,
                not_before: None,
                busy: 0,
                ids: Vec::new(),
            },
        );
        if matches!(self.link, Link::Up { .. }) {
            self.send(seq);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected { epoch, node, result } => {
                if epoch != self.epoch {
                    return;
                }
                match result {
                    Ok(stream) => self.link_up(node, stream),
                    Err(e) => {
                        let addr = self.cfg.replicas[self.cursor].1.clone();
                        tracing::debug!(%addr, error = %e, "cannot connect to replica");
                        self.connect_failures += 1;
                        self.last_failure = Some((addr, e));
                        if self.session.is_none() && self.connect_failures >= self.cfg.replicas.len() {
                            // A whole round of the address book failed before any session
                            // existed: report it now rather than at the deadline.
                            if let Some(p) = self.pending.remove(&REGISTER) {
                                let (addr, source) = self.last_failure.take().expect("just set");
                                if let Waiter::Register(tx) = p.waiter {
                                    let _ = tx.send(Err(ConnectError::Connect { addr, source }));
                                }
                            }
                            return;
                        }
                        self.failover(None);
                    }
                }
            }
        }
    }

    /// A reply frame, or the loss, of the current connection.
    fn on_reply(&mut self, reply: Result<Bytes, RecvError>) {
        match reply {
            Ok(frame) => self.on_frame(self.epoch, &frame),
            Err(e) => {
                tracing::debug!(reason = %e, "connection to replica lost");
                self.failover(None);
            }
        }
    }

    fn link_up(&mut self, node: NodeId, stream: ClientStream) {
        let epoch = self.epoch;
        tracing::debug!(node = node.0, epoch, "connected to replica");
        self.connect_failures = 0;
        self.link = Link::Up { node, stream };
        let now = Instant::now();
        let keys: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.not_before.is_none_or(|t| t <= now))
            .map(|(&k, _)| k)
            .collect();
        for key in keys {
            self.send(key);
        }
    }

    /// Sends request `key` on the current connection as a new attempt.
    fn send(&mut self, key: u64) {
        let Link::Up { stream, .. } = &self.link else { return };
        let ack = self.ack();
        let Some(p) = self.pending.get_mut(&key) else { return };
        let command = match (&p.payload, self.session) {
            (None, _) => Command::Register { nonce: self.nonce },
            (Some(payload), Some(client)) => {
                Command::Op { client, seq: Seq(key), ack: Seq(ack), payload: payload.clone() }
            }
            // Operations are admitted only once the session exists.
            (Some(_), None) => return,
        };
        let id = self.next_id;
        self.next_id += 1;
        let now = Instant::now();
        match ClientFrame::Request(ClientRequest { id, command }).encode().map(|bytes| push(stream, bytes)) {
            Ok(true) => {
                p.attempt = Some(Attempt { id, epoch: self.epoch, sent_at: now });
                p.not_before = None;
                p.ids.push(id);
                self.ids.insert(id, key);
            }
            // The send queue refused it: try again shortly.
            Ok(false) => p.not_before = Some(now + BACKOFF_MIN),
            Err(e) => self.finish(key, Err(ClientError::Encode(e))),
        }
    }

    fn on_frame(&mut self, epoch: u64, frame: &[u8]) {
        let reply = match ClientReply::decode(frame) {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable reply from replica; ignored");
                return;
            }
        };
        let Some(&key) = self.ids.get(&reply.id) else {
            // An answer to a request already answered, abandoned, or never sent.
            return;
        };
        let current = epoch == self.epoch
            && matches!(self.link, Link::Up { .. })
            && self
                .pending
                .get(&key)
                .and_then(|p| p.attempt)
                .is_some_and(|a| a.id == reply.id && a.epoch == epoch);
        match reply.outcome {
            Outcome::Registered { client } => {
                if key == REGISTER && self.session.is_none() {
                    self.session = Some(client);
                    self.failovers = 0;
                    tracing::debug!(%client, "session registered");
                    self.finish_register(Ok(client));
                }
            }
            Outcome::Applied { payload } => {
                self.failovers = 0;
                self.finish(key, Ok(payload));
            }
            Outcome::Redirect { leader } => {
                if current {
                    tracing::debug!(?leader, "redirected");
                    self.failover(leader);
                }
            }
            Outcome::Busy => {
                if current {
                    if let Some(p) = self.pending.get_mut(&key) {
                        let pause = BACKOFF_MIN.saturating_mul(1 << p.busy.min(6)).min(BACKOFF_MAX);
                        p.busy = p.busy.saturating_add(1);
                        p.attempt = None;
                        p.not_before = Some(Instant::now() + self.rng.around(pause));
                    }
                }
            }
            Outcome::SessionExpired => {
                self.expired = true;
                self.finish(key, Err(ClientError::SessionExpired));
            }
            Outcome::Stale => self.finish(key, Err(ClientError::Rejected(Rejection::Stale))),
            Outcome::TooFarAhead => self.finish(key, Err(ClientError::Rejected(Rejection::TooFarAhead))),
            // This driver never asks a replica for its status (see `crate::admin`).
            Outcome::Status(_) => {}
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        // Deadlines: a request given up on no longer holds back the acknowledgement.
        let expired: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(&k, _)| k).collect();
        for key in expired {
            if key == REGISTER {
                let err = match self.last_failure.take() {
                    Some((addr, source)) if self.connect_failures > 0 => {
                        ConnectError::Connect { addr, source }
                    }
                    _ => ConnectError::Timeout(self.cfg.deadline),
                };
                self.finish_register(Err(err));
            } else {
                self.finish(key, Err(ClientError::Timeout));
            }
        }
        if let Some(p) = self.pending.get(&REGISTER) {
            if let Waiter::Register(tx) = &p.waiter {
                if tx.is_closed() {
                    self.pending.remove(&REGISTER);
                    return;
                }
            }
        }
        if !matches!(self.link, Link::Up { .. }) {
            return;
        }
        let timeout = self.cfg.request_timeout;
        if self.pending.values().any(|p| p.attempt.is_some_and(|a| a.sent_at + timeout <= now)) {
            tracing::debug!(?timeout, "request timed out; trying another replica");
            self.failover(None);
            return;
        }
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.attempt.is_none() && p.not_before.is_none_or(|t| t <= now))
            .map(|(&k, _)| k)
            .collect();
        for key in due {
            self.send(key);
        }
    }

    /// Drops the current connection and picks the next replica: `hint` if
    /// it names another replica of the address book, else the next in turn.
    fn failover(&mut self, hint: Option<NodeId>) {
        let current = match &self.link {
            Link::Up { node, .. } => Some(*node),
            _ => None,
        };
        let hinted = hint
            .filter(|&h| Some(h) != current)
            .and_then(|h| self.cfg.replicas.iter().position(|(n, _)| *n == h));
        let mut delay = self.backoff();
        match hinted {
            Some(i) => self.cursor = i,
            None => {
                self.cursor = (self.cursor + 1) % self.cfg.replicas.len();
                if current.is_some() && hint.is_none_or(|h| Some(h) == current) && delay.is_zero() {
                    // A replica that knows no leader (or names itself): an election
                    // is likely under way, so pause a little before the next.
                    delay = self.rng.around(BACKOFF_MIN);
                }
            }
        }
        self.failovers = self.failovers.saturating_add(1);
        for p in self.pending.values_mut() {
            p.attempt = None;
        }
        // Bumping the epoch now makes every event of the old connection stale.
        self.epoch += 1;
        if let Link::Up { stream, .. } = &self.link {
            stream.close();
        }
        self.link = Link::Down { at: Instant::now() + delay };
    }

    /// The pause before the next reconnection: none after the first failover, then doubling.
    fn backoff(&mut self) -> Duration {
        match self.failovers {
            0 => Duration::ZERO,
            n => {
                let d = BACKOFF_MIN.saturating_mul(1 << (n - 1).min(16)).min(BACKOFF_MAX);
                self.rng.around(d)
            }
        }
    }

    fn start_connect(&mut self) {
        self.epoch += 1;
        self.link = Link::Connecting;
        let (node, addr) = self.cfg.replicas[self.cursor].clone();
        let (endpoint, events, epoch, timeout) =
            (self.endpoint.clone(), self.events_tx.clone(), self.epoch, self.cfg.request_timeout);
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, endpoint.connect(addr, Some(node))).await {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(LinkError::Transport(e)),
                Err(_) => Err(LinkError::Timeout(timeout)),
            };
            let _ = events.send(Event::Connected { epoch, node, result });
        });
    }

    fn finish(&mut self, key: u64, result: Result<Vec<u8>, ClientError>) {
        if key == REGISTER {
            return;
        }
        let Some(p) = self.pending.remove(&key) else { return };
        for id in &p.ids {
            self.ids.remove(id);
        }
        if let Waiter::Op(tx) = p.waiter {
            let _ = tx.send(result);
        }
    }

    fn finish_register(&mut self, result: Result<ClientId, ConnectError>) {
        let Some(p) = self.pending.remove(&REGISTER) else { return };
        for id in &p.ids {
            self.ids.remove(id);
        }
        if let Waiter::Register(tx) = p.waiter {
            let _ = tx.send(result);
        }
    }
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
async fn next_reply(link: &mut Link) -> Result<Bytes, RecvError> {
    match link {
        Link::Up { stream, .. } => stream.recv().await,
        _ => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
