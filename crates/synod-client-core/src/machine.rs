//! `ClientCore`: registration, pipelining, epochs, redirects, failover and resends, without IO.
//!
//! Every attempt of a request gets a fresh request id, and the core
//! remembers which id is a request's current attempt and which connection
//! (epoch) carried it. An `Applied` answer completes its request whatever
//! attempt it answers (the session table returns the first answer to every
//! retry), but only the current attempt's `Redirect` or `Busy` on the
//! current connection moves the client: a duplicated or late redirect for an
//! attempt that was already resent changes nothing, so redirects never
//! multiply the requests in flight.
//!
//! Connections are numbered by epochs. Moving away from a connection (a
//! failover) and opening one both bump the epoch, so every input about an
//! older connection is recognisably stale and ignored, apart from answers
//! that complete requests.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use synod_wire::{
    ClientFrame, ClientId, ClientReply, ClientRequest, Command, EncodeError, NodeId, Outcome, ReadMode,
    ReadRequest, Seq, MAX_FRAME_LEN,
};

use crate::{CallError, CallId, ClientEvent, Connect, CoreConfig, RegisterError, Rejection, Transmit};

/// The shortest pause before reconnecting after a failed attempt, in µs; it doubles per failure.
const BACKOFF_MIN: u64 = 10_000;
/// The longest pause before reconnecting, in µs.
const BACKOFF_MAX: u64 = 1_000_000;
/// Room for the request envelope around a payload.
const ENVELOPE: usize = 256;
/// The key of the registration in the table of outstanding requests; operations use their seq (from 1).
const REGISTER: u64 = 0;
/// A read refused this many times in a row by the connected replica is taken elsewhere.
const UNAVAILABLE_BEFORE_FAILOVER: u32 = 3;
/// A request unanswered for a request timeout is taken to another replica at
/// once if the connection shows no progress (no command applied, no
/// linearizable read served, within that timeout); on a connection that does, it waits this
/// many request timeouts. A slow, overloaded leader is not left for a
/// follower (that only redirects back) with every request resent; a dead or
/// cut-off one still is, within one timeout.
const PATIENCE: u64 = 4;

/// The attempt of a request currently on the wire.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    id: u64,
    epoch: u64,
    sent_at: u64,
}

#[derive(Debug)]
struct Pending {
    /// `None` for the registration, else the call.
    call: Option<CallId>,
    /// `None` for the registration, else the operation's payload.
    payload: Option<Vec<u8>>,
    deadline: u64,
    /// The attempt on the current connection; `None` until (re)sent.
    attempt: Option<Attempt>,
    /// After `Busy`, not before this.
    not_before: Option<u64>,
    /// `Busy` answers so far; each doubles the pause before the next attempt.
    busy: u32,
    /// Every request id this request was sent under.
    ids: Vec<u64>,
}

/// A read outside the log: it needs no session and may be sent again anywhere.
#[derive(Debug)]
struct PendingRead {
    call: CallId,
    query: Vec<u8>,
    mode: ReadMode,
    deadline: u64,
    attempt: Option<Attempt>,
    not_before: Option<u64>,
    /// Answers `Unavailable` in a row, for the backoff and failover.
    unavailable: u32,
    /// Answers `Busy` so far, for the backoff (admission control: no failover).
    busy: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not connected; connect to the cursor's replica at `at`.
    Down {
        at: u64,
    },
    Connecting,
    Up {
        node: NodeId,
    },
}

/// The client's state machine; see the crate documentation for how to drive it.
#[derive(Debug)]
pub struct ClientCore {
    replicas: Vec<NodeId>,
    /// Per-attempt timeout, µs.
    request_timeout: u64,
    max_in_flight: u64,
    give_up_unreachable: bool,
    /// Registers no session: serves reads only ([`CoreConfig::session`]).
    reads_only: bool,
    /// How often deadlines and attempt timeouts are checked while requests are outstanding, µs.
    period: u64,
    /// The next such check.
    tick_at: u64,
    epoch: u64,
    link: Link,
    /// The replica to connect to next, as an index into the address book.
    cursor: usize,
    /// While connecting to a replica another one named as the leader: the
    /// index of the one that named it. If that connection fails, the next
    /// replica tried is the one after the namer, not the one after the named:
    /// a replica that missed its own removal names a leader that is gone, and
    /// the one after that leader in the book may be the same replica again.
    redirected_by: Option<usize>,
    nonce: u64,
    session: Option<ClientId>,
    expired: bool,
    next_seq: u64,
    next_call: u64,
    pending: BTreeMap<u64, Pending>,
    /// Request id -> key in `pending`, for every attempt of every outstanding request.
    ids: BTreeMap<u64, u64>,
    /// Reads in flight, by call id, and the request ids of their attempts.
    reads: BTreeMap<u64, PendingRead>,
    read_ids: BTreeMap<u64, u64>,
    next_id: u64,
    /// Failovers since the last answer; drives the backoff.
    failovers: u32,
    /// When the current connection last showed progress (µs): it came up, or
    /// a command was applied or a read served on it. See [`PATIENCE`].
    progress_at: u64,
    /// Connection attempts that failed in a row, and the last replica that failed.
    connect_failures: usize,
    last_failure: Option<NodeId>,
    rng: SplitMix,
    connect: Option<Connect>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
}

impl ClientCore {
    /// A client that starts registering its session at `now`, drawing its
    /// registration nonce and backoff jitter from `seed`.
    ///
    /// # Panics
    ///
    /// If `config.replicas` is empty.
    pub fn new(config: CoreConfig, now: u64, seed: u64) -> ClientCore {
        assert!(!config.replicas.is_empty(), "a client needs at least one replica");
        let request_timeout = micros(config.request_timeout).max(1_000);
        let mut rng = SplitMix(seed);
        let nonce = rng.next_u64();
        let mut core = ClientCore {
            replicas: config.replicas,
            request_timeout,
            max_in_flight: config.max_in_flight.max(1) as u64,
            give_up_unreachable: config.give_up_unreachable,
            reads_only: !config.session,
            period: (request_timeout / 4).clamp(2_000, 50_000),
            tick_at: now,
            epoch: 0,
            link: Link::Down { at: now },
            cursor: 0,
            redirected_by: None,
            nonce,
            session: None,
            expired: false,
            next_seq: 1,
            next_call: 0,
            pending: BTreeMap::new(),
            reads: BTreeMap::new(),
            read_ids: BTreeMap::new(),
            ids: BTreeMap::new(),
            next_id: 1,
            failovers: 0,
            progress_at: 0,
            connect_failures: 0,
            last_failure: None,
            rng,
            connect: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        if core.reads_only {
            core.progress(now);
            return core;
        }
        core.pending.insert(
            REGISTER,
            Pending {
                call: None,
                payload: None,
                deadline: now.saturating_add(micros(config.register_deadline)),
                attempt: None,
                not_before: None,
                busy: 0,
                ids: Vec::new(),
            },
        );
        core.progress(now);
        core
    }

    // ---------------------------------------------------------------- inputs

    /// A call: apply `payload` exactly once, answering by `deadline` (µs, on
    /// the caller's clock) at the latest. Its answer comes as
    /// [`ClientEvent::Completed`] with the returned id.
    ///
    /// Make calls only while [`ClientCore::can_call`] says so: beyond the
    /// window the replicas refuse requests as too far ahead. A call before
    /// the session exists waits for it.
    pub fn handle_call(&mut self, now: u64, payload: Vec<u8>, deadline: u64) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        let refused = if self.reads_only {
            Some(CallError::NoSession)
        } else if self.expired {
            Some(CallError::SessionExpired)
        } else {
            refusal(now, deadline, payload.len(), "client request")
        };
        if let Some(error) = refused {
            self.events.push_back(ClientEvent::Completed { call, result: Err(error) });
            return call;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(
            seq,
            Pending {
                call: Some(call),
                payload: Some(payload),
                deadline,
                attempt: None,
                not_before: None,
                busy: 0,
                ids: Vec::new(),
            },
        );
        self.send(now, seq);
        self.progress(now);
        call
    }

    /// Starts a read outside the log of `query` (a state-machine query),
    /// served as `mode` says by the replica the client is connected to, to
    /// be answered by `deadline` at the latest. It needs no session and does
    /// not count against [`ClientCore::can_call`]'s window. Its answer comes
    /// as [`ClientEvent::Completed`]; a replica that cannot serve it as asked
    /// (no leader to confirm it) is asked again after a pause, and one that
    /// does not answer in time is left for another, as for calls.
    pub fn handle_read(&mut self, now: u64, query: Vec<u8>, mode: ReadMode, deadline: u64) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        let refused = refusal(now, deadline, query.len(), "client read");
        if let Some(error) = refused {
            self.events.push_back(ClientEvent::Completed { call, result: Err(error) });
            return call;
        }
        self.reads.insert(
            call.0,
            PendingRead {
                call,
                query,
                mode,
                deadline,
                attempt: None,
                not_before: None,
                unavailable: 0,
                busy: 0,
            },
        );
        self.send_read(now, call.0);
        self.progress(now);
        call
    }

    /// The connection of `epoch` to `node` (asked for by [`ClientCore::poll_connect`]) is up.
    ///
    /// A connection of an older epoch is not used: the driver closes it
    /// (see [`ClientCore::connection`]).
    pub fn handle_connected(&mut self, now: u64, epoch: u64, node: NodeId) {
        if epoch == self.epoch && self.link == Link::Connecting {
            self.connect_failures = 0;
            self.redirected_by = None;
            self.link = Link::Up { node };
            self.progress_at = now;
            let keys: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, p)| p.not_before.is_none_or(|t| t <= now))
                .map(|(&k, _)| k)
                .collect();
            for key in keys {
                self.send(now, key);
            }
            let reads: Vec<u64> = self
                .reads
                .iter()
                .filter(|(_, r)| r.not_before.is_none_or(|t| t <= now))
                .map(|(&k, _)| k)
                .collect();
            for key in reads {
                self.send_read(now, key);
            }
        }
        self.progress(now);
    }

    /// The connection of `epoch` to `node` could not be opened.
    pub fn handle_connect_failed(&mut self, now: u64, epoch: u64, node: NodeId) {
        if epoch == self.epoch && self.link == Link::Connecting {
            self.connect_failures += 1;
            self.last_failure = Some(node);
            if self.give_up_unreachable
                && self.session.is_none()
                && self.connect_failures >= self.replicas.len()
            {
                // A whole round of the address book failed before any session
                // existed: report it now rather than at the deadline.
                if self.pending.contains_key(&REGISTER) {
                    self.last_failure = None;
                    self.finish_register(Err(RegisterError::Unreachable { node }));
                    self.link = Link::Down { at: u64::MAX };
                    return;
                }
            }
            self.failover(now, None);
        }
        self.progress(now);
    }

    /// The connection of `epoch` was lost (closed, reset, or its stream ended).
    pub fn handle_disconnected(&mut self, now: u64, epoch: u64) {
        if epoch == self.epoch && matches!(self.link, Link::Up { .. }) {
            self.failover(now, None);
        }
        self.progress(now);
    }

    /// The frame of the [`Transmit`] with request id `id` on the connection
    /// of `epoch` could not be queued (the send queue is full): it is sent
    /// again shortly.
    pub fn handle_refused(&mut self, now: u64, epoch: u64, id: u64) {
        if let Some(&key) = self.ids.get(&id) {
            if let Some(p) = self.pending.get_mut(&key) {
                if p.attempt.is_some_and(|a| a.id == id && a.epoch == epoch) {
                    p.attempt = None;
                    p.not_before = Some(now + BACKOFF_MIN);
                }
            }
        }
        self.progress(now);
    }

    /// The request of the [`Transmit`] with request id `id` cannot be
    /// encoded: its call completes with the error (a retry would fail alike).
    pub fn handle_unencodable(&mut self, now: u64, id: u64, error: EncodeError) {
        if let Some(&key) = self.ids.get(&id) {
            self.finish(key, Err(CallError::Encode(error)));
        }
        self.progress(now);
    }

    /// A reply that arrived on the connection of `epoch`. A driver that
    /// cannot tell which connection carried it passes 0, never a
    /// connection's epoch: then the reply can complete a request but not
    /// move the client.
    pub fn handle_reply(&mut self, now: u64, epoch: u64, reply: ClientReply) {
        self.on_reply(now, epoch, reply);
        self.progress(now);
    }

    /// Time passed: call it at [`ClientCore::poll_timeout`] (earlier or later is harmless).
    pub fn handle_timeout(&mut self, now: u64) {
        if now >= self.tick_at {
            self.tick_at = now.saturating_add(self.period);
            self.on_tick(now);
        }
        self.progress(now);
    }

    // --------------------------------------------------------------- outputs

    /// The next request to write on the current connection.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some(t) = self.transmits.pop_front() {
            if t.epoch == self.epoch {
                return Some(t);
            }
        }
        None
    }

    /// The connection to open, if the core wants one.
    pub fn poll_connect(&mut self) -> Option<Connect> {
        self.connect.take().filter(|c| c.epoch == self.epoch)
    }

    /// When [`ClientCore::handle_timeout`] is due next (µs), if any time matters.
    pub fn poll_timeout(&self) -> Option<u64> {
        let tick = (!self.pending.is_empty() || !self.reads.is_empty()).then_some(self.tick_at);
        let reconnect = match self.link {
            Link::Down { at } if at != u64::MAX => Some(at),
            _ => None,
        };
        match (tick, reconnect) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    // ------------------------------------------------------------- accessors

    /// Whether a call would be admitted now: the session exists and fewer
    /// than `max_in_flight` sequence numbers are unacknowledged.
    pub fn can_call(&self) -> bool {
        self.session.is_some() && self.span() < self.max_in_flight
    }

    /// Whether a read would be admitted now: fewer than `max_in_flight`
    /// reads are outstanding. Reads need no session.
    pub fn can_read(&self) -> bool {
        (self.reads.len() as u64) < self.max_in_flight
    }

    /// The session, once registered.
    pub fn session(&self) -> Option<ClientId> {
        self.session
    }

    /// The current connection (epoch and replica), if one is up. A driver
    /// closes every connection that is not this one.
    pub fn connection(&self) -> Option<(u64, NodeId)> {
        match self.link {
            Link::Up { node } => Some((self.epoch, node)),
            _ => None,
        }
    }

    /// Whether the core gave up: no session, and no registration under way.
    /// A core that serves reads only never gives up.
    pub fn is_dead(&self) -> bool {
        !self.reads_only && self.session.is_none() && !self.pending.contains_key(&REGISTER)
    }

    /// Calls outstanding (not yet completed).
    pub fn outstanding(&self) -> usize {
        self.pending.len() - usize::from(self.pending.contains_key(&REGISTER)) + self.reads.len()
    }

    // -------------------------------------------------------------- internals

    /// Every sequence number at or below this has been answered (or given up on).
    fn ack(&self) -> u64 {
        self.pending.range(1..).next().map_or(self.next_seq - 1, |(&seq, _)| seq - 1)
    }

    /// How many sequence numbers lie between the acknowledged one and the newest.
    fn span(&self) -> u64 {
        self.next_seq - 1 - self.ack()
    }

    /// Starts the connection a failover asked for once its pause is over.
    fn progress(&mut self, now: u64) {
        if let Link::Down { at } = self.link {
            if at <= now && !self.is_dead() {
                self.start_connect();
            }
        }
    }

    /// Sends request `key` on the current connection as a new attempt.
    fn send(&mut self, now: u64, key: u64) {
        let Link::Up { node } = self.link else { return };
        let ack = self.ack();
        let Some(p) = self.pending.get_mut(&key) else { return };
        let command = match (&p.payload, self.session) {
            (None, _) => Command::Register { nonce: self.nonce },
            (Some(payload), Some(client)) => {
                Command::Op { client, seq: Seq(key), ack: Seq(ack), payload: payload.clone() }
            }
            // Operations are sent only once the session exists.
            (Some(_), None) => return,
        };
        let id = self.next_id;
        self.next_id += 1;
        p.attempt = Some(Attempt { id, epoch: self.epoch, sent_at: now });
        p.not_before = None;
        p.ids.push(id);
        self.ids.insert(id, key);
        self.transmits.push_back(Transmit {
            epoch: self.epoch,
            node,
            frame: ClientFrame::Request(ClientRequest { id, command }),
        });
    }

    /// Sends read `key` on the current connection as a new attempt.
    fn send_read(&mut self, now: u64, key: u64) {
        let Link::Up { node } = self.link else { return };
        let Some(r) = self.reads.get_mut(&key) else { return };
        let id = self.next_id;
        self.next_id += 1;
        r.attempt = Some(Attempt { id, epoch: self.epoch, sent_at: now });
        r.not_before = None;
        self.read_ids.insert(id, key);
        let frame = ClientFrame::Read(ReadRequest { id, query: r.query.clone(), mode: r.mode });
        self.transmits.push_back(Transmit { epoch: self.epoch, node, frame });
    }

    /// An answer to a read attempt.
    fn on_read_reply(&mut self, now: u64, epoch: u64, key: u64, reply: ClientReply) {
        let Some(r) = self.reads.get_mut(&key) else { return };
        let current = r.attempt.is_some_and(|a| a.id == reply.id && a.epoch == epoch);
        match reply.outcome {
            Outcome::Applied { payload } => self.finish_read(key, Ok(payload)),
            Outcome::Busy if current => {
                // Admission control: the replica is up and serving, just full. Back off
                // and ask it again; another would be no less loaded.
                let pause = BACKOFF_MIN.saturating_mul(1 << r.busy.min(6)).min(BACKOFF_MAX);
                r.busy = r.busy.saturating_add(1);
                r.attempt = None;
                r.not_before = Some(now + self.rng.around(pause));
            }
            Outcome::Unavailable(_) | Outcome::Redirect { .. } if current => {
                // Not served as asked (no leader to confirm it yet): ask again after a pause,
                // and after a few refusals in a row ask another replica (this one may be
                // cut off, or still rejoining).
                let pause = BACKOFF_MIN.saturating_mul(1 << r.unavailable.min(6)).min(BACKOFF_MAX);
                r.unavailable = r.unavailable.saturating_add(1);
                r.attempt = None;
                r.not_before = Some(now + self.rng.around(pause));
                if r.unavailable % UNAVAILABLE_BEFORE_FAILOVER == 0 {
                    self.failover(now, None);
                }
            }
            _ => {}
        }
    }

    fn finish_read(&mut self, key: u64, result: Result<Vec<u8>, CallError>) {
        let Some(r) = self.reads.remove(&key) else { return };
        self.read_ids.retain(|_, k| *k != key);
        self.events.push_back(ClientEvent::Completed { call: r.call, result });
    }

    /// Sends every request not on the wire whose pause (if any) is over.
    fn send_due(&mut self, now: u64) {
        let reads: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.attempt.is_none() && r.not_before.is_none_or(|t| t <= now))
            .map(|(&k, _)| k)
            .collect();
        for key in reads {
            self.send_read(now, key);
        }
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.attempt.is_none() && p.not_before.is_none_or(|t| t <= now))
            .map(|(&k, _)| k)
            .collect();
        for key in due {
            self.send(now, key);
        }
    }

    fn on_reply(&mut self, now: u64, epoch: u64, reply: ClientReply) {
        if epoch == self.epoch
            && matches!(reply.outcome, Outcome::Applied { .. } | Outcome::Registered { .. })
        {
            // Progress: a command applied, or a read that needed the cluster (a stale
            // read is served by any replica, cut off or not, and shows nothing).
            let stale = self
                .read_ids
                .get(&reply.id)
                .and_then(|key| self.reads.get(key))
                .is_some_and(|r| r.mode == ReadMode::Stale);
            if !stale {
                self.progress_at = now;
            }
        }
        if let Some(&key) = self.read_ids.get(&reply.id) {
            self.on_read_reply(now, epoch, key, reply);
            return;
        }
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
                    self.finish_register(Ok(client));
                    // Calls made before the session existed go out now.
                    self.send_due(now);
                }
            }
            Outcome::Applied { payload } => {
                self.failovers = 0;
                self.finish(key, Ok(payload));
            }
            Outcome::Redirect { leader } => {
                if current {
                    self.failover(now, leader);
                }
            }
            Outcome::Busy => {
                if current {
                    if let Some(p) = self.pending.get_mut(&key) {
                        let pause = BACKOFF_MIN.saturating_mul(1 << p.busy.min(6)).min(BACKOFF_MAX);
                        p.busy = p.busy.saturating_add(1);
                        p.attempt = None;
                        p.not_before = Some(now + self.rng.around(pause));
                    }
                }
            }
            Outcome::SessionExpired => {
                self.expired = true;
                self.finish(key, Err(CallError::SessionExpired));
            }
            Outcome::Stale => self.finish(key, Err(CallError::Rejected(Rejection::Stale))),
            Outcome::TooFarAhead => self.finish(key, Err(CallError::Rejected(Rejection::TooFarAhead))),
            // The client never asks a replica for its status or membership, nor
            // changes it (synod-client's `admin` does, apart).
            Outcome::Status(_) | Outcome::Members(_) | Outcome::Refused(_) => {}
            // Only reads are answered `Unavailable`.
            Outcome::Unavailable(_) => {}
        }
    }

    fn on_tick(&mut self, now: u64) {
        // Deadlines: a request given up on no longer holds back the acknowledgement.
        let expired: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(&k, _)| k).collect();
        let late: Vec<u64> = self.reads.iter().filter(|(_, r)| r.deadline <= now).map(|(&k, _)| k).collect();
        for key in late {
            self.finish_read(key, Err(CallError::Timeout));
        }
        for key in expired {
            if key == REGISTER {
                let err = match self.last_failure.take() {
                    Some(node) if self.connect_failures > 0 => RegisterError::Unreachable { node },
                    _ => RegisterError::Timeout,
                };
                self.finish_register(Err(err));
            } else {
                self.finish(key, Err(CallError::Timeout));
            }
        }
        if !matches!(self.link, Link::Up { .. }) {
            return;
        }
        let timeout = self.request_timeout;
        // A request timed out: try another replica, unless this connection still
        // makes progress and the request has not waited PATIENCE timeouts.
        let moving = self.progress_at + timeout > now;
        let wait = if moving { timeout.saturating_mul(PATIENCE) } else { timeout };
        let late = |a: &Option<Attempt>| a.is_some_and(|a| a.sent_at + wait <= now);
        if self.pending.values().any(|p| late(&p.attempt)) || self.reads.values().any(|r| late(&r.attempt)) {
            self.failover(now, None);
            return;
        }
        self.send_due(now);
    }

    /// Drops the current connection and picks the next replica: `hint` if
    /// it names another replica of the address book, else the next in turn.
    fn failover(&mut self, now: u64, hint: Option<NodeId>) {
        let current = match self.link {
            Link::Up { node } => Some(node),
            _ => None,
        };
        let hinted =
            hint.filter(|&h| Some(h) != current).and_then(|h| self.replicas.iter().position(|&n| n == h));
        let mut delay = self.backoff();
        let namer = self.redirected_by.take();
        match hinted {
            Some(i) => {
                self.redirected_by = current.is_some().then_some(self.cursor);
                self.cursor = i;
            }
            None => {
                // After a failed connection to a named leader, go on from the replica that named it.
                self.cursor = (namer.unwrap_or(self.cursor) + 1) % self.replicas.len();
                if current.is_some() && hint.is_none_or(|h| Some(h) == current) && delay == 0 {
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
        for r in self.reads.values_mut() {
            r.attempt = None;
        }
        // Bumping the epoch now makes every event of the old connection stale.
        self.epoch += 1;
        self.link = Link::Down { at: now.saturating_add(delay) };
    }

    /// The pause before the next reconnection (µs): none after the first failover, then doubling.
    fn backoff(&mut self) -> u64 {
        match self.failovers {
            0 => 0,
            n => {
                let d = BACKOFF_MIN.saturating_mul(1 << (n - 1).min(16)).min(BACKOFF_MAX);
                self.rng.around(d)
            }
        }
    }

    fn start_connect(&mut self) {
        self.epoch += 1;
        self.link = Link::Connecting;
        self.connect = Some(Connect { epoch: self.epoch, node: self.replicas[self.cursor] });
    }

    fn finish(&mut self, key: u64, result: Result<Vec<u8>, CallError>) {
        if key == REGISTER {
            return;
        }
        let Some(p) = self.pending.remove(&key) else { return };
        for id in &p.ids {
            self.ids.remove(id);
        }
        if let Some(call) = p.call {
            self.events.push_back(ClientEvent::Completed { call, result });
        }
    }

    fn finish_register(&mut self, result: Result<ClientId, RegisterError>) {
        let Some(p) = self.pending.remove(&REGISTER) else { return };
        for id in &p.ids {
            self.ids.remove(id);
        }
        self.events.push_back(match result {
            Ok(client) => ClientEvent::Registered(client),
            Err(e) => ClientEvent::RegisterFailed(e),
        });
    }
}

/// Why a call or read of `len` bytes made at `now` is refused before it is
/// sent: its deadline has passed, or it cannot fit in a frame.
fn refusal(now: u64, deadline: u64, len: usize, what: &'static str) -> Option<CallError> {
    if now >= deadline {
        Some(CallError::Timeout)
    } else if len + ENVELOPE > MAX_FRAME_LEN {
        Some(CallError::Encode(EncodeError::TooLarge { what, len: len + ENVELOPE, limit: MAX_FRAME_LEN }))
    } else {
        None
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// SplitMix64, for the nonce and backoff jitter.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A pause drawn uniformly from `[d/2, d]`.
    fn around(&mut self, d: u64) -> u64 {
        let half = d / 2;
        half + if half == 0 { 0 } else { self.next_u64() % (half + 1) }
    }
}
