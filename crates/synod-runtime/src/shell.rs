//! The IO shell around the pure replica core: a locked step does only pure work and encoding; IO runs after.
//!
//! There is no core thread. The [`Shell`] keeps the [`ReplicaCore`] behind
//! one lock, and each input is stepped on the thread it arrives on: a
//! transport worker for frames, the log thread for durability reports, the
//! tick thread for the clock (decision 0003: a hand-off to a core thread cost
//! two thread wake-ups per hop). A step, under the lock:
//!
//! 1. feeds the input to the core (which also proposes what is queued);
//! 2. drains the core's effects: messages and replies are encoded into an
//!    [`Outbox`]; a write is handed to the log thread and a chosen slot to
//!    the apply thread (both non-blocking channel sends, made under the lock
//!    because their order is the core's order: a durability report covers
//!    every earlier token, and slots apply in order).
//!
//! Then, with the lock released, the [`Outbox`] is carried out: frames are
//! queued on the transport's links and client streams, and quick reads are
//! served if the applier is free ([`InlineReads`]; else they take the apply
//! channel, after the applies they must follow). Nothing under the
//! lock writes, syncs, applies or blocks: the fsync is the log thread's and
//! the user's `StateMachine::apply` the apply thread's, so neither ever runs
//! on the transport thread (decision 0007).
//!
//! ```text
//!  transport thread --frame--+                            +--> Outbox --> transport (after unlock)
//!  log thread ---Durable(t)--+--> lock: ReplicaCore step --+--> Appender (channel) --> log thread
//!  tick thread ----tick------+                            +--> apply channel ------> apply thread
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use synod_log::{Appender, LogEvent};
use synod_metrics::names;
use synod_paxos::PersistToken;
use synod_replica::{Apply, Effect, Now, ReplicaCore};
use synod_transport::{ClientConnId, Inbound, Node};
use synod_wire::{
    AdminQuery, ClientFrame, ClientReply, Membership, Message, NodeId, Outcome, ReplicaStatus, Role, Slot,
    Wire,
};

use crate::apply::InlineReads;
use crate::snapshot::{SnapshotEvent, SnapshotJob};
use crate::stats::Published;
use crate::status::Status;

/// How long a retired replica (removed, and a majority of the new voters know it) goes on
/// answering clients with redirects before it stops.
pub(crate) const REMOVED_GRACE: Duration = Duration::from_secs(2);

/// Ticks a replica removed from the configuration stays in the address
/// book ([`DROP_DOWN_REMOVED_AFTER_TICKS`] once its link goes down): it retires once a majority of the new voters told
/// it what they know (synod-paxos's `RETIRE_TICKS`, 6000, at most), and only
/// the link lets them tell it; a little more than that.
const DROP_REMOVED_AFTER_TICKS: u64 = 6500;

/// Ticks a removed replica whose link went down stays in the address book: time to dial it
/// again should it have been restarting rather than retiring.
const DROP_DOWN_REMOVED_AFTER_TICKS: u64 = 3000;

/// Everything the core reacts to besides the clock.
#[derive(Debug)]
pub(crate) enum Event {
    Net(Inbound),
    Log(LogEvent),
    Snapshot(SnapshotEvent),
}

/// Work for the apply thread, in the core's order.
pub(crate) enum ApplyJob {
    /// A chosen slot, with the clients waiting on it.
    Apply(Apply<ClientConnId>),
    /// Take a snapshot here (every earlier slot is applied) and hand it to the snapshot thread.
    Snapshot { upto: Slot },
    /// Replace the state with the received snapshot `upto` before applying anything after.
    Install { upto: Slot },
    /// Answer read `id` on `conn` from the state machine; every slot below
    /// `index` was handed over before it, so it is applied by then.
    Read { conn: ClientConnId, id: u64, query: Vec<u8>, index: Slot },
}

/// The core behind its lock, the transport its effects go to, and the flag that stops the replica.
pub(crate) struct Shell {
    state: Mutex<State>,
    /// The data directory, for a status answer's log size; set by [`Shell::install`].
    data_dir: OnceLock<PathBuf>,
    stop: Arc<AtomicBool>,
}

enum State {
    /// The transport may deliver before the core is installed: keep what arrives.
    Starting(Vec<Event>),
    Running(Box<Core>),
    Stopped,
}

/// What the shell needs beside the pure core to turn effects into hand-offs.
pub(crate) struct Parts {
    pub transport: Arc<Node>,
    pub appender: Appender,
    pub apply: Sender<ApplyJob>,
    pub snapshots: Sender<SnapshotJob>,
    pub status: Arc<Mutex<Status>>,
    pub data_dir: PathBuf,
    /// Serves reads without the apply thread's hand-off: for a state machine
    /// with [`synod_state_machine::StateMachine::quick_reads`].
    pub inline_reads: Option<Arc<dyn InlineReads>>,
}

/// The state behind the lock: the pure core and the shell's bookkeeping.
struct Core {
    core: ReplicaCore<ClientConnId>,
    id: NodeId,
    transport: Arc<Node>,
    appender: Appender,
    apply: Sender<ApplyJob>,
    snapshots: Sender<SnapshotJob>,
    status: Arc<Mutex<Status>>,
    inline_reads: Option<Arc<dyn InlineReads>>,
    /// The zero of `Now::mono_us`.
    epoch: Instant,
    ticks: u64,
    stopping: bool,
    /// The configuration the transport's address book follows.
    membership: Membership,
    /// Removed from the cluster (logged once).
    removed: bool,
    /// Peers the configuration no longer names, and the tick at which they
    /// leave the address book (or when their link goes down, if sooner).
    leaving: Vec<(NodeId, u64)>,
    /// When the core retired this removed replica; it stops [`REMOVED_GRACE`] later.
    retired_at: Option<Instant>,
    published: Published,
    /// Writes in flight: (token, when handed over), for the persist-latency histogram.
    persisting: VecDeque<(u64, Instant)>,
    histograms: Histograms,
    reads_received: crate::stats::ReadsReceived,
}

struct Histograms {
    persist: metrics::Histogram,
    batch_commands: metrics::Histogram,
    commit_latency: metrics::Histogram,
}

/// What a step leaves to do once the lock is released.
#[derive(Default)]
struct Outbox {
    /// Where the frames go: the core's transport, taken from behind the lock
    /// (the shell keeps none of its own, so that stopping the core drops it).
    transport: Option<Arc<Node>>,
    /// Peer frames: (to, frame, on the bulk stream).
    sends: Vec<(NodeId, Bytes, bool)>,
    /// Client frames.
    replies: Vec<(ClientConnId, Vec<u8>)>,
    /// Status queries, answered with the log's size read from disk, outside the lock.
    status: Vec<(ClientConnId, u64, ReplicaStatus)>,
    /// Client streams to close (a malformed frame).
    close: Vec<ClientConnId>,
    /// Reads whose index is applied, to serve at once if the applier is free
    /// (`inline`), else to hand to the apply thread (`apply`).
    reads: Vec<(ClientConnId, u64, Vec<u8>, Slot)>,
    inline: Option<Arc<dyn InlineReads>>,
    apply: Option<Sender<ApplyJob>>,
}

impl Shell {
    /// A shell that queues inputs until [`Shell::install`].
    pub(crate) fn new() -> Shell {
        Shell {
            state: Mutex::new(State::Starting(Vec::new())),
            data_dir: OnceLock::new(),
            stop: Arc::default(),
        }
    }

    /// The flag that stops the replica at the next tick: for the apply thread and [`crate::Replica`].
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Starts the core: carries out what recovery left to do, then the inputs that arrived meanwhile.
    pub(crate) fn install(&self, core: ReplicaCore<ClientConnId>, parts: Parts) {
        let _ = self.data_dir.set(parts.data_dir.clone());
        let mut core = Box::new(Core::new(core, parts));
        let mut out = Outbox::default();
        {
            let mut state = self.state.lock();
            let State::Starting(queued) = std::mem::replace(&mut *state, State::Stopped) else {
                return;
            };
            // The recovered core may already have commits to deliver.
            core.drain(&mut out);
            for event in queued {
                core.handle(event, &mut out);
                core.drain(&mut out);
            }
            self.settle(&core);
            *state = State::Running(core);
        }
        self.carry_out(out);
    }

    /// Steps one input on the calling thread, then carries out its effects with the lock released.
    pub(crate) fn input(&self, event: Event) {
        let mut out = Outbox::default();
        {
            let mut state = self.state.lock();
            match &mut *state {
                State::Starting(queued) => {
                    queued.push(event);
                    return;
                }
                State::Running(core) => {
                    core.handle(event, &mut out);
                    core.drain(&mut out);
                    self.settle(core);
                }
                State::Stopped => return,
            }
        }
        self.carry_out(out);
    }

    /// Advances the core's clock by one tick; false once the core is stopping.
    fn tick(&self) -> bool {
        let mut out = Outbox::default();
        let running = match &mut *self.state.lock() {
            State::Running(core) => {
                core.tick(&mut out);
                self.settle(core);
                !core.stopping
            }
            State::Starting(_) => true,
            State::Stopped => false,
        };
        self.carry_out(out);
        running
    }

    /// Raises the stop flag once the core is stopping.
    fn settle(&self, core: &Core) {
        if core.stopping {
            self.stop.store(true, Ordering::Release);
        }
    }

    /// The IO of a step, made with the core's lock released. Queuing a frame
    /// never blocks: a full queue or a down link loses it, and the core
    /// retries what matters.
    fn carry_out(&self, out: Outbox) {
        if let (Some(inline), Some(apply)) = (&out.inline, &out.apply) {
            for (conn, id, query, index) in out.reads {
                if !inline.try_read(conn, id, &query, index) {
                    // Sent after the applies of every slot below `index`, which went under the lock.
                    let _ = apply.send(ApplyJob::Read { conn, id, query, index });
                }
            }
        }
        let Some(transport) = out.transport else { return };
        for (to, frame, bulk) in out.sends {
            let _ = if bulk { transport.send_bulk(to, frame) } else { transport.send(to, frame) };
        }
        for (conn, frame) in out.replies {
            // A client that went away simply misses its answer; it retries elsewhere.
            let _ = transport.reply(conn, frame);
        }
        for (conn, id, mut status) in out.status {
            status.log_bytes = self.data_dir.get().map_or(0, |dir| log_bytes(dir));
            reply(&transport, conn, id, Outcome::Status(status));
        }
        for conn in out.close {
            transport.close_client(conn);
        }
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

impl Core {
    fn new(core: ReplicaCore<ClientConnId>, parts: Parts) -> Core {
        let membership = core.paxos().membership().clone();
        let mut new = Core {
            id: core.paxos().id(),
            core,
            transport: parts.transport,
            appender: parts.appender,
            apply: parts.apply,
            snapshots: parts.snapshots,
            status: parts.status,
            inline_reads: parts.inline_reads,
            epoch: Instant::now(),
            ticks: 0,
            stopping: false,
            membership: Membership::default(),
            removed: false,
            leaving: Vec::new(),
            retired_at: None,
            published: Published::default(),
            persisting: VecDeque::new(),
            histograms: Histograms {
                persist: metrics::histogram!(names::PERSIST_SECONDS),
                batch_commands: metrics::histogram!(names::BATCH_COMMANDS),
                commit_latency: metrics::histogram!(names::COMMIT_LATENCY),
            },
            reads_received: crate::stats::ReadsReceived::new(),
        };
        // The recovered configuration may be a later one than the peers the
        // transport started with: the address book follows it from the start.
        let from = new.core.paxos().config_start();
        let removed = new.core.paxos().is_removed();
        new.reconfigured(membership, from, removed);
        new
    }

    fn now(&self) -> Now {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Now { wall_ms, mono_us: self.mono_us() }
    }

    /// Microseconds since the shell started: `Now::mono_us`.
    fn mono_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn handle(&mut self, event: Event, out: &mut Outbox) {
        if self.stopping {
            return;
        }
        let now = self.now();
        match event {
            Event::Net(Inbound::Peer { from, frame, .. }) => match Message::decode(&frame) {
                Ok(msg) => self.core.handle_message(now, from, msg),
                Err(e) => {
                    metrics::counter!(names::REJECTED_FRAMES).increment(1);
                    tracing::warn!(%from, %e, "dropped a malformed peer frame");
                }
            },
            Event::Net(Inbound::Client { conn, frame }) => match ClientFrame::decode(&frame) {
                Ok(ClientFrame::Request(request)) => self.core.handle_client(now, conn, request),
                // Outside the log: the core gets a read index (or serves a
                // stale read at once) and hands it to the apply thread as
                // `Effect::Read`, behind the applies it must follow.
                Ok(ClientFrame::Read(read)) => {
                    self.reads_received.count(read.mode);
                    self.core.handle_read(now, conn, read)
                }
                Ok(ClientFrame::Change(change)) => {
                    tracing::info!(?conn, change = ?change.change, "membership change requested");
                    self.core.handle_change(now, conn, change)
                }
                // Answered by this replica, leader or not, and never logged.
                Ok(ClientFrame::Admin(admin)) => match admin.query {
                    AdminQuery::Status => out.status.push((conn, admin.id, self.replica_status())),
                    AdminQuery::Members => {
                        let reply =
                            ClientReply { id: admin.id, outcome: Outcome::Members(self.core.members_view()) };
                        match reply.encode() {
                            Ok(frame) => out.replies.push((conn, frame)),
                            Err(e) => tracing::warn!(%e, "members reply too large"),
                        }
                    }
                },
                Err(e) => {
                    metrics::counter!(names::REJECTED_FRAMES).increment(1);
                    tracing::warn!(?conn, %e, "closing a client stream that sent a malformed request");
                    self.core.handle_client_gone(conn);
                    out.close.push(conn);
                }
            },
            Event::Net(Inbound::PeerDown { peer }) => {
                // A removed replica that went away has most likely retired: it leaves the
                // address book soon, not at once. It may instead have been restarting as it
                // was removed, and then only a new link tells it so (chaos seed 2607: replica
                // 56, restarted as the change removing it was chosen, was dropped when its old
                // link timed out, was never dialed again, and ran on for ever).
                let soon = self.ticks + DROP_DOWN_REMOVED_AFTER_TICKS;
                if let Some(entry) = self.leaving.iter_mut().find(|(p, _)| *p == peer) {
                    entry.1 = entry.1.min(soon);
                }
            }
            Event::Net(Inbound::PeerUp { .. }) => {}
            Event::Net(Inbound::ClientUp { .. }) => metrics::gauge!(names::CLIENT_CONNECTIONS).increment(1.0),
            Event::Net(Inbound::ClientDown { conn }) => {
                metrics::gauge!(names::CLIENT_CONNECTIONS).decrement(1.0);
                self.core.handle_client_gone(conn);
            }
            Event::Log(LogEvent::Durable(token)) => {
                while self.persisting.front().is_some_and(|&(t, _)| t <= token) {
                    let (_, at) = self.persisting.pop_front().expect("front exists");
                    self.histograms.persist.record(at.elapsed().as_secs_f64());
                }
                self.core.handle_persisted(now, PersistToken(token));
            }
            Event::Snapshot(SnapshotEvent::Taken { upto }) => self.core.handle_snapshot_taken(now, upto),
            Event::Snapshot(SnapshotEvent::Failed { upto }) => self.core.handle_snapshot_failed(now, upto),
            Event::Snapshot(SnapshotEvent::Received { upto, ok, membership }) => {
                self.core.handle_snapshot_received(now, upto, ok, membership)
            }
            Event::Log(LogEvent::Failed(e)) => {
                // Never continue after a lost write: stop this replica.
                tracing::error!(%e, "the log failed; stopping the replica");
                self.fail(e.to_string());
            }
        }
    }

    /// One tick of the core's clock; publishes the metrics every heartbeat.
    fn tick(&mut self, out: &mut Outbox) {
        if self.stopping {
            return;
        }
        if self.retired_at.is_some_and(|at| at.elapsed() >= REMOVED_GRACE) {
            tracing::info!(id = %self.id, "stopping: removed from the cluster");
            self.stopping = true;
            return;
        }
        let now = self.now();
        self.core.handle_tick(now);
        self.ticks += 1;
        let ticks = self.ticks;
        let transport = &self.transport;
        self.leaving.retain(|&(peer, at)| {
            if ticks >= at {
                transport.remove_peer(peer);
            }
            ticks < at
        });
        if self.ticks % self.core.paxos().config().heartbeat_ticks() == 0 {
            self.publish();
        }
        self.drain(out);
    }

    /// Turns the core's effects into hand-offs (log, apply) and an [`Outbox`] of frames.
    fn drain(&mut self, out: &mut Outbox) {
        if out.transport.is_none() {
            out.transport = Some(self.transport.clone());
        }
        // The last message sent and its encoding: a leader sends each peer the
        // same `Accept`, encoded once. (Comparing is cheap: equal batches are
        // one shared buffer, and `Arc`'s equality checks the pointer first.)
        let mut last_sent: Option<(Message, Bytes)> = None;
        while let Some(effect) = self.core.poll_effect() {
            match effect {
                Effect::Send { to, msg } => {
                    let bulk = matches!(msg, Message::CatchUpReply { .. } | Message::SnapshotChunk { .. });
                    let encoded = match &last_sent {
                        Some((last, frame)) if *last == msg => Ok(frame.clone()),
                        _ => msg.encode().map(Bytes::from),
                    };
                    match encoded {
                        Ok(frame) => {
                            out.sends.push((to, frame.clone(), bulk));
                            last_sent = Some((msg, frame));
                        }
                        Err(e) => tracing::error!(%e, kind = msg.kind(), "a message did not encode"),
                    }
                }
                Effect::Persist { records, token } => {
                    if self.stopping {
                        continue;
                    }
                    self.persisting.push_back((token.0, Instant::now()));
                    // A channel send: the log thread writes and syncs.
                    if let Err(e) = self.appender.append(records, token.0) {
                        tracing::error!(%e, "the log refused a write; stopping the replica");
                        self.fail(e.to_string());
                    }
                }
                Effect::Apply(apply) => {
                    if let Some(at) = apply.proposed_at_us {
                        let took = self.mono_us().saturating_sub(at);
                        self.histograms.commit_latency.record(took as f64 / 1e6);
                    }
                    // After a stop the apply thread is gone; nothing is left to apply to.
                    let _ = self.apply.send(ApplyJob::Apply(apply));
                }
                Effect::TakeSnapshot { upto } => drop(self.apply.send(ApplyJob::Snapshot { upto })),
                Effect::InstallSnapshot { upto } => drop(self.apply.send(ApplyJob::Install { upto })),
                // In order with the applies: the apply thread serves it once
                // the slots below its index, handed over before, are applied.
                Effect::Read { conn, id, query, index } => match &self.inline_reads {
                    Some(inline) => {
                        out.reads.push((conn, id, query, index));
                        out.inline.get_or_insert_with(|| inline.clone());
                        out.apply.get_or_insert_with(|| self.apply.clone());
                    }
                    None => drop(self.apply.send(ApplyJob::Read { conn, id, query, index })),
                },
                Effect::TruncateLog { below } => {
                    // In order with the appends: the snapshot record before it is durable first.
                    if let Err(e) = self.appender.truncate_prefix(below) {
                        tracing::error!(%e, "the log refused a truncation; stopping the replica");
                        self.fail(e.to_string());
                    }
                }
                Effect::SendSnapshot { to, upto, offset } => {
                    drop(self.snapshots.send(SnapshotJob::Send { to, upto, offset }))
                }
                Effect::StoreSnapshotChunk { upto, offset, bytes, last } => {
                    drop(self.snapshots.send(SnapshotJob::Store { upto, offset, bytes, last }))
                }
                Effect::Reply { conn, reply } => match reply.encode() {
                    Ok(frame) => out.replies.push((conn, frame)),
                    Err(e) => tracing::warn!(%e, "reply too large"),
                },
                Effect::LeaderChanged { leader, ballot, is_self } => {
                    tracing::info!(?leader, %ballot, is_self, "leader changed");
                    self.update_status();
                }
                Effect::Proposed { commands, .. } => self.histograms.batch_commands.record(commands as f64),
                Effect::Reconfigured { membership, from, removed } => {
                    self.reconfigured(membership, from, removed)
                }
                Effect::Retire => {
                    tracing::info!(id = %self.id, "retiring: every member knows this replica was removed");
                    self.retired_at.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    /// A new configuration is in force from slot `from`: the address book
    /// follows it (its new members are added and dialed, with the address
    /// it carries; members it dropped leave once they retire), before any
    /// message of this step is sent. A removed replica keeps answering its peers until
    /// the core retires it ([`Effect::Retire`]), then stops after [`REMOVED_GRACE`].
    fn reconfigured(&mut self, membership: Membership, from: Slot, removed: bool) {
        for member in membership.members.iter().filter(|m| m.id != self.id && !m.addr.is_empty()) {
            match member.addr.parse::<synod_transport::PeerAddr>() {
                Ok(addr) => {
                    if let Err(e) = self.transport.add_peer(member.id, addr) {
                        tracing::error!(peer = %member.id, %e, "cannot add a member to the address book");
                    }
                }
                Err(e) => {
                    tracing::error!(peer = %member.id, addr = %member.addr, %e, "a member's address does not parse")
                }
            }
        }
        // A replica the configuration dropped is told so over its link, so
        // the link stays until it retires (its link goes down) or for
        // `DROP_REMOVED_AFTER_TICKS`.
        self.leaving.retain(|&(peer, _)| !membership.contains(peer));
        if !removed {
            let at = self.ticks + DROP_REMOVED_AFTER_TICKS;
            for gone in self.membership.ids().filter(|&id| id != self.id && !membership.contains(id)) {
                if !self.leaving.iter().any(|&(p, _)| p == gone) {
                    self.leaving.push((gone, at));
                }
            }
        }
        if removed && !self.removed {
            tracing::error!(
                id = %self.id,
                epoch = membership.epoch,
                %from,
                "removed from the cluster in configuration {}; stopping",
                membership.epoch
            );
            self.removed = true;
        } else {
            tracing::info!(%membership, %from, "configuration in force");
        }
        self.membership = membership;
        self.update_status();
    }

    fn fail(&mut self, why: String) {
        self.status.lock().fatal = Some(why);
        self.stopping = true;
    }

    /// This replica's view, for a status query (the log's size is filled in outside the lock).
    fn replica_status(&self) -> ReplicaStatus {
        let (applied, digest, sessions) = {
            let s = self.status.lock();
            (s.applied, s.digest, s.sessions)
        };
        let paxos = self.core.paxos();
        let m = paxos.membership();
        let removed = paxos.is_removed();
        let members: Vec<NodeId> = m.ids().filter(|&id| !removed || id != self.id).collect();
        let peers_reachable =
            members.iter().copied().filter(|&p| p != self.id && self.transport.is_connected(p)).collect();
        ReplicaStatus {
            id: self.id,
            role: if paxos.is_leader() { Role::Leader } else { Role::Follower },
            leader: paxos.leader(),
            ballot: paxos.leader_ballot(),
            commit: paxos.first_unchosen(),
            applied,
            digest,
            members,
            epoch: m.epoch,
            learners: m.learners().collect(),
            removed,
            peers_reachable,
            sessions: sessions as u64,
            log_bytes: 0,
            uptime_ms: u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX),
            snapshot: paxos.snapshot_upto(),
            rejoining: paxos.is_rejoining(),
        }
    }

    fn update_status(&self) {
        let paxos = self.core.paxos();
        let mut s = self.status.lock();
        s.leader = paxos.leader();
        s.is_leader = paxos.is_leader();
        s.ballot = paxos.leader_ballot();
        s.commit = paxos.first_unchosen();
        s.rejoining = paxos.is_rejoining();
        s.snapshot = paxos.snapshot_upto();
        let m = paxos.membership();
        s.epoch = m.epoch;
        s.members = m.ids().collect();
        s.learners = m.learners().collect();
        s.removed = paxos.is_removed();
        s.peers_connected = m.ids().filter(|&p| p != self.id && self.transport.is_connected(p)).collect();
    }

    fn publish(&mut self) {
        self.update_status();
        self.published.paxos(self.core.paxos().stats());
        self.published.replica(self.core.stats());
        let s = self.status.lock().clone();
        metrics::gauge!(names::IS_LEADER).set(if s.is_leader { 1.0 } else { 0.0 });
        metrics::gauge!(names::LEADER_ID).set(s.leader.map_or(0.0, |l| f64::from(l.0)));
        metrics::gauge!(names::BALLOT_ROUND).set(s.ballot.round as f64);
        metrics::gauge!(names::COMMIT_SLOT).set(s.commit.0 as f64);
        metrics::gauge!(names::APPLIED_SLOT).set(s.applied.0 as f64);
        metrics::gauge!(names::APPLY_LAG_SLOTS).set(s.commit.0.saturating_sub(s.applied.0) as f64);
        metrics::gauge!(names::SESSIONS).set(s.sessions as f64);
        synod_metrics::set_state_digest(s.digest);
        for peer in self.core.paxos().membership().ids() {
            if peer != self.id {
                let up = if s.peers_connected.contains(&peer) { 1.0 } else { 0.0 };
                metrics::gauge!(names::PEER_CONNECTED, names::LABEL_PEER => peer.0.to_string()).set(up);
            }
        }
    }
}

fn reply(transport: &Node, conn: ClientConnId, id: u64, outcome: Outcome) {
    if let Ok(frame) = (ClientReply { id, outcome }).encode() {
        let _ = transport.reply(conn, frame);
    }
}

/// Bytes of the log's segment files in `dir` (a handful of files: cheap enough for an admin query).
fn log_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("segment-") && n.ends_with(".wal")))
        .filter_map(|e| e.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}
