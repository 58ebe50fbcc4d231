//! The core: the Paxos core with its queue of client commands, driven by whichever thread has an input.
//!
//! There is no core thread. The [`Driver`] keeps the [`CoreLoop`] behind one
//! lock, and each input is handled on the thread it arrives on: a transport
//! worker for frames, the log thread for durability reports, the tick thread
//! for the clock. Every input is handled, the next batch proposed and the
//! core's actions carried out before the lock is released, so the core still
//! sees one input at a time, in one order. Handing each input to a core
//! thread instead cost two thread wake-ups per hop (about 25 us each on the
//! 2-core VMs we measure on); see `docs/decisions/0003-core-on-the-input-thread.md`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use synod_metrics::names;

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use synod_log::{Appender, InlineAppend, LogEvent};
use synod_paxos::{Action, Paxos, PersistToken};
use synod_state_machine::Origin;
use synod_transport::{ClientConnId, Inbound, Node};
use synod_wire::{
    AdminQuery, AdminRequest, Batch, ClientFrame, ClientReply, Command, LogRecord, Message, Outcome,
    ReplicaStatus, Role, Wire,
};

use crate::apply::Committer;
use crate::config::ReplicaConfig;
use crate::replica::{Routes, Status};
use crate::stats::Published;

/// Everything the core reacts to besides the clock.
#[derive(Debug)]
pub(crate) enum Event {
    Net(Inbound),
    Log(LogEvent),
}

/// The core behind its lock, and the flag that tells the tick thread to stop the replica.
pub(crate) struct Driver {
    state: Mutex<State>,
    stop: Arc<AtomicBool>,
}

enum State {
    /// The transport may deliver before the core is installed: keep what arrives.
    Starting(Vec<Event>),
    Running(Box<CoreLoop>),
    Stopped,
}

impl Driver {
    /// A driver that queues inputs until [`Driver::install`].
    pub(crate) fn new() -> Driver {
        Driver { state: Mutex::new(State::Starting(Vec::new())), stop: Arc::default() }
    }

    /// The flag that stops the replica at the next tick: for the apply thread and [`crate::Replica`].
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Starts the core: carries out what recovery left to do, then the inputs that arrived meanwhile.
    pub(crate) fn install(&self, mut core: CoreLoop) {
        let mut state = self.state.lock();
        let State::Starting(queued) = std::mem::replace(&mut *state, State::Stopped) else {
            return;
        };
        // The recovered core may already have commits to deliver.
        core.carry_out();
        for event in queued {
            core.input(event);
        }
        let inline = self.settle(&mut core);
        *state = State::Running(Box::new(core));
        drop(state);
        self.finish_inline(inline);
    }

    /// Handles one input on the calling thread.
    pub(crate) fn input(&self, event: Event) {
        let mut next = Some(event);
        while let Some(event) = next.take() {
            let inline = {
                let mut state = self.state.lock();
                match &mut *state {
                    State::Starting(queued) => {
                        queued.push(event);
                        None
                    }
                    State::Running(core) => {
                        core.input(event);
                        self.settle(core)
                    }
                    State::Stopped => None,
                }
            };
            // A write reserved on this thread: made now, with the core's lock
            // released (the other input threads go on meanwhile), and its
            // result handed to the core as the log thread would have.
            next = inline.map(|append| Event::Log(append.finish()));
        }
    }

    /// After the core handled something: raises the stop flag if it is
    /// stopping, and takes out the write it reserved for this thread, to be
    /// finished once the lock is released.
    fn settle(&self, core: &mut CoreLoop) -> Option<InlineAppend> {
        if core.stopping {
            self.stop.store(true, Ordering::Release);
        }
        core.inline.take()
    }

    /// Finishes a write the core reserved on this thread outside [`Driver::input`].
    fn finish_inline(&self, inline: Option<InlineAppend>) {
        if let Some(append) = inline {
            self.input(Event::Log(append.finish()));
        }
    }

    /// Advances the core's clock by one tick; false once the core is stopping.
    fn tick(&self) -> bool {
        let (running, inline) = match &mut *self.state.lock() {
            State::Running(core) => {
                core.tick();
                (!core.stopping, self.settle(core))
            }
            State::Starting(_) => (true, None),
            State::Stopped => (false, None),
        };
        self.finish_inline(inline);
        running
    }

    /// Stops the core for good: later inputs are dropped, and the apply
    /// thread's channel closes once the core is dropped.
    pub(crate) fn stop_core(&self) {
        let old = std::mem::replace(&mut *self.state.lock(), State::Stopped);
        if let State::Running(mut core) = old {
            core.publish();
        }
    }

    /// The tick thread: ticks every `tick` until the stop flag is set (or the core stops), then stops the core.
    pub(crate) fn run_ticks(&self, tick: Duration) {
        let mut next_tick = Instant::now() + tick;
        while !self.stop.load(Ordering::Acquire) {
            // A relative sleep, never a wait until a deadline: the deadline
            // would be read from the process's clock, which tests skew with
            // faketime, and waited for by the kernel's, so a skewed replica
            // stopped ticking. At most a tick, whatever the clock did.
            std::thread::sleep(next_tick.saturating_duration_since(Instant::now()).min(tick));
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let now = Instant::now();
            if now >= next_tick {
                if !self.tick() {
                    break;
                }
                next_tick += tick;
                if next_tick < now {
                    // We fell behind (a stall, a suspended process): do not replay missed ticks in a burst.
                    next_tick = now + tick;
                }
            }
        }
        self.stop_core();
    }
}

pub(crate) struct CoreLoop {
    core: Paxos,
    transport: Arc<Node>,
    appender: Appender,
    apply: Committer,
    routes: Routes,
    status: Arc<Mutex<Status>>,
    ticks: u64,
    max_in_flight: usize,
    max_batch_commands: usize,
    max_batch_bytes: usize,
    /// Commands waiting for the next batch, with their size.
    queue: Vec<Command>,
    queue_bytes: usize,
    published: Published,
    stopping: bool,
    /// Proposals in flight: when each was proposed, for the commit-latency histogram.
    proposed_at: std::collections::VecDeque<Instant>,
    /// Writes in flight: (token, when submitted), for the persist-latency histogram.
    persisting: std::collections::VecDeque<(u64, Instant)>,
    /// A write that found the log idle, for the [`Driver`] to finish on this
    /// thread once the core's lock is released.
    inline: Option<InlineAppend>,
    /// The histograms recorded on every slot, looked up in the registry once.
    histograms: Histograms,
    /// Where the log's segments are, for the status answer's log size.
    data_dir: std::path::PathBuf,
    /// When the replica started, for the status answer's uptime.
    started: Instant,
}

struct Histograms {
    persist: metrics::Histogram,
    batch_commands: metrics::Histogram,
    commit_latency: metrics::Histogram,
}

impl CoreLoop {
    pub(crate) fn new(
        config: &ReplicaConfig,
        core: Paxos,
        transport: Arc<Node>,
        appender: Appender,
        apply: Committer,
        routes: Routes,
        status: Arc<Mutex<Status>>,
    ) -> CoreLoop {
        CoreLoop {
            core,
            transport,
            appender,
            apply,
            routes,
            status,
            ticks: 0,
            max_in_flight: config.max_in_flight.max(1),
            max_batch_commands: config.max_batch_commands.max(1),
            max_batch_bytes: config.max_batch_bytes.max(1),
            queue: Vec::new(),
            queue_bytes: 0,
            published: Published::default(),
            stopping: false,
            proposed_at: Default::default(),
            persisting: Default::default(),
            inline: None,
            histograms: Histograms {
                persist: metrics::histogram!(names::PERSIST_SECONDS),
                batch_commands: metrics::histogram!(names::BATCH_COMMANDS),
                commit_latency: metrics::histogram!(names::COMMIT_LATENCY),
            },
            data_dir: config.data_dir.clone(),
            started: Instant::now(),
        }
    }

    /// Handles one input, proposes what queued, and carries out the core's actions.
    fn input(&mut self, event: Event) {
        if self.stopping {
            return;
        }
        self.handle(event);
        self.propose();
        self.carry_out();
    }

    /// One tick of the core's clock; publishes the metrics every heartbeat.
    fn tick(&mut self) {
        if self.stopping {
            return;
        }
        self.core.handle_tick();
        self.ticks += 1;
        if self.ticks % self.core.config().heartbeat_ticks() == 0 {
            self.publish();
        }
        self.propose();
        self.carry_out();
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Net(Inbound::Peer { from, frame, .. }) => match Message::decode(&frame) {
                Ok(msg) => self.core.handle_message(from, msg),
                Err(e) => {
                    metrics::counter!(names::REJECTED_FRAMES).increment(1);
                    tracing::warn!(%from, %e, "dropped a malformed peer frame");
                }
            },
            Event::Net(Inbound::Client { conn, frame }) => self.on_client(conn, &frame),
            Event::Net(Inbound::PeerUp { .. } | Inbound::PeerDown { .. }) => {}
            Event::Net(Inbound::ClientUp { .. }) => metrics::gauge!(names::CLIENT_CONNECTIONS).increment(1.0),
            Event::Net(Inbound::ClientDown { .. }) => {
                metrics::gauge!(names::CLIENT_CONNECTIONS).decrement(1.0)
            }
            Event::Log(LogEvent::Durable(token)) => {
                while self.persisting.front().is_some_and(|&(t, _)| t <= token) {
                    let (_, at) = self.persisting.pop_front().expect("front exists");
                    self.histograms.persist.record(at.elapsed().as_secs_f64());
                }
                self.core.handle_persisted(PersistToken(token))
            }
            Event::Log(LogEvent::Failed(e)) => {
                // Never continue after a lost write: stop this replica.
                tracing::error!(%e, "the log failed; stopping the replica");
                self.status.lock().fatal = Some(e.to_string());
                self.stopping = true;
            }
        }
    }

    fn on_client(&mut self, conn: ClientConnId, frame: &[u8]) {
        let request = match ClientFrame::decode(frame) {
            Ok(ClientFrame::Request(r)) => r,
            Ok(ClientFrame::Admin(admin)) => {
                // Answered by this replica, leader or not, and never logged.
                self.on_admin(conn, &admin);
                return;
            }
            Err(e) => {
                metrics::counter!(names::REJECTED_FRAMES).increment(1);
                tracing::warn!(?conn, %e, "closing a client stream that sent a malformed request");
                self.transport.close_client(conn);
                return;
            }
        };
        if !self.core.is_leader() {
            self.reply(conn, request.id, Outcome::Redirect { leader: self.core.leader() });
            return;
        }
        let size = size(&request.command);
        if self.queue_bytes + size > 64 * self.max_batch_bytes {
            // Far more queued than the pipeline can take: push back.
            self.reply(conn, request.id, Outcome::Busy);
            return;
        }
        self.routes.lock().insert(Origin::of(&request.command), (conn, request.id));
        self.queue.push(request.command);
        self.queue_bytes += size;
    }

    fn on_admin(&self, conn: ClientConnId, admin: &AdminRequest) {
        match admin.query {
            AdminQuery::Status => self.reply(conn, admin.id, Outcome::Status(self.replica_status())),
        }
    }

    /// This replica's view, for a status query: the core's, and the apply thread's latest.
    fn replica_status(&self) -> ReplicaStatus {
        let (applied, digest, sessions) = {
            let s = self.status.lock();
            (s.applied, s.digest, s.sessions)
        };
        let id = self.core.id();
        let members = self.core.config().members().to_vec();
        let peers_reachable =
            members.iter().copied().filter(|&p| p != id && self.transport.is_connected(p)).collect();
        ReplicaStatus {
            id,
            role: if self.core.is_leader() { Role::Leader } else { Role::Follower },
            leader: self.core.leader(),
            ballot: self.core.leader_ballot(),
            commit: self.core.first_unchosen(),
            applied,
            digest,
            members,
            peers_reachable,
            sessions: sessions as u64,
            log_bytes: log_bytes(&self.data_dir),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn reply(&self, conn: ClientConnId, id: u64, outcome: Outcome) {
        if let Ok(frame) = (ClientReply { id, outcome }).encode() {
            let _ = self.transport.reply(conn, frame);
        }
    }

    /// Proposes what queued while earlier batches were in flight.
    fn propose(&mut self) {
        while !self.queue.is_empty() && self.core.can_propose() && self.core.in_flight() < self.max_in_flight
        {
            let mut bytes = 0;
            let mut take = 0;
            for c in &self.queue {
                let size = size(c);
                if take > 0 && (take >= self.max_batch_commands || bytes + size > self.max_batch_bytes) {
                    break;
                }
                bytes += size;
                take += 1;
            }
            let commands: Vec<Command> = self.queue.drain(..take).collect();
            self.queue_bytes -= bytes.min(self.queue_bytes);
            self.histograms.batch_commands.record(commands.len() as f64);
            let batch = Batch { timestamp_ms: wall_ms(), commands };
            // The queue's size estimate, plus room for each command's envelope.
            match batch.encode_with_capacity(bytes + 16 * batch.commands.len() + 64) {
                Ok(frame) => {
                    if self.core.propose(frame).is_ok() {
                        self.proposed_at.push_back(Instant::now());
                    }
                }
                Err(e) => tracing::error!(%e, "a batch did not encode"),
            }
        }
    }

    /// Carries out the core's actions until it has none.
    ///
    /// The last write may be left for this thread to make itself (see
    /// [`Appender::append_or_reserve`]) when nothing was sent: a follower's
    /// write of an `Accept`, whose `Accepted` waits for it. A write that comes
    /// with messages goes to the log thread, so that this thread, often the
    /// transport's, gets on with sending them.
    fn carry_out(&mut self) {
        let mut sent = false;
        let mut last_write = None;
        // The last message sent and its encoding: a leader sends each peer the
        // same `Accept`, encoded once. (Comparing is cheap: equal batches are
        // one shared buffer, and `Arc`'s equality checks the pointer first.)
        let mut last_sent: Option<(Message, Bytes)> = None;
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Send { to, msg } => {
                    sent = true;
                    let bulk = matches!(msg, Message::CatchUpReply { .. });
                    let encoded = match &last_sent {
                        Some((last, frame)) if *last == msg => Ok(frame.clone()),
                        _ => msg.encode().map(Bytes::from),
                    };
                    match encoded {
                        Ok(frame) => {
                            // A full queue or a down link loses the message; the core retries what matters.
                            let _ = if bulk {
                                self.transport.send_bulk(to, frame.clone())
                            } else {
                                self.transport.send(to, frame.clone())
                            };
                            last_sent = Some((msg, frame));
                        }
                        Err(e) => tracing::error!(%e, kind = msg.kind(), "a message did not encode"),
                    }
                }
                Action::Persist { records, token } => {
                    self.persisting.push_back((token.0, Instant::now()));
                    if let Some((records, token)) = last_write.replace((records, token.0)) {
                        self.append(records, token, false);
                    }
                }
                Action::Commit { slot, value } => {
                    if self.core.is_leader() {
                        if let Some(at) = self.proposed_at.pop_front() {
                            self.histograms.commit_latency.record(at.elapsed().as_secs_f64());
                        }
                    }
                    self.apply.commit(slot, value);
                }
                Action::LeaderChanged { leader, ballot, is_self } => {
                    tracing::info!(?leader, %ballot, is_self, "leader changed");
                    if !is_self {
                        self.proposed_at.clear();
                        sent |= !self.queue.is_empty();
                        self.redirect_queued(leader);
                    }
                    self.update_status();
                }
            }
        }
        if let Some((records, token)) = last_write {
            self.append(records, token, !sent);
        }
    }

    /// Submits a write to the log thread, or with `inline` reserves it for this thread when the log is idle.
    fn append(&mut self, records: Vec<LogRecord>, token: u64, inline: bool) {
        let result = if inline && self.inline.is_none() {
            self.appender.append_or_reserve(records, token).map(|reserved| self.inline = reserved)
        } else {
            self.appender.append(records, token)
        };
        if let Err(e) = result {
            tracing::error!(%e, "the log refused a write; stopping the replica");
            self.status.lock().fatal = Some(e.to_string());
            self.stopping = true;
        }
    }

    /// Sends every queued request back to its client with the new leader's name.
    fn redirect_queued(&mut self, leader: Option<synod_wire::NodeId>) {
        let queued = std::mem::take(&mut self.queue);
        self.queue_bytes = 0;
        let mut routes = self.routes.lock();
        let targets: Vec<_> = queued.iter().filter_map(|c| routes.remove(&Origin::of(c))).collect();
        drop(routes);
        for (conn, id) in targets {
            self.reply(conn, id, Outcome::Redirect { leader });
        }
    }

    fn update_status(&self) {
        let mut s = self.status.lock();
        s.leader = self.core.leader();
        s.is_leader = self.core.is_leader();
        s.ballot = self.core.leader_ballot();
        s.commit = self.core.first_unchosen();
        s.peers_connected = self
            .core
            .config()
            .members()
            .iter()
            .copied()
            .filter(|&p| self.transport.is_connected(p))
            .collect();
    }

    fn publish(&mut self) {
        self.update_status();
        self.published.paxos(self.core.stats());
        let s = self.status.lock().clone();
        metrics::gauge!(names::IS_LEADER).set(if s.is_leader { 1.0 } else { 0.0 });
        metrics::gauge!(names::LEADER_ID).set(s.leader.map_or(0.0, |l| f64::from(l.0)));
        metrics::gauge!(names::BALLOT_ROUND).set(s.ballot.round as f64);
        metrics::gauge!(names::COMMIT_SLOT).set(s.commit.0 as f64);
        metrics::gauge!(names::APPLIED_SLOT).set(s.applied.0 as f64);
        metrics::gauge!(names::APPLY_LAG_SLOTS).set(s.commit.0.saturating_sub(s.applied.0) as f64);
        metrics::gauge!(names::SESSIONS).set(s.sessions as f64);
        synod_metrics::set_state_digest(s.digest);
        for &peer in self.core.config().members() {
            if peer != self.core.id() {
                let up = if s.peers_connected.contains(&peer) { 1.0 } else { 0.0 };
                metrics::gauge!(names::PEER_CONNECTED, names::LABEL_PEER => peer.0.to_string()).set(up);
            }
        }
    }
}

/// Bytes a command adds to a batch, for the batch and queue limits (an estimate of its encoding).
fn size(command: &Command) -> usize {
    match command {
        Command::Register { .. } => 16,
        Command::Op { payload, .. } => payload.len() + 32,
    }
}

/// Bytes of the log's segment files in `dir` (a handful of files: cheap enough for an admin query).
fn log_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("segment-") && n.ends_with(".wal")))
        .filter_map(|e| e.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
