//! The [`ReplicaCore`]: the Paxos core with the leader's queue, batching, `Busy`, redirects and waiters.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;

use synod_paxos::{Action, Paxos, PersistToken};
use synod_state_machine::Origin;
use synod_wire::{Batch, ClientReply, ClientRequest, Command, Message, NodeId, Outcome, Slot, Wire};

use crate::effect::{Apply, Effect};
use crate::membership::PendingChange;
use crate::read::Reads;
use crate::route::Routing;
use crate::route::Waiter;
use crate::snapshot::{value_bytes, SnapshotPolicy, Snapshots};

/// The caller's time at an input. The core never reads a clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Now {
    /// Wall-clock milliseconds since the Unix epoch: stamps the batches
    /// this replica proposes (`Batch::timestamp_ms`), which the session table
    /// uses for expiry. Need not be monotonic.
    pub wall_ms: u64,
    /// A monotonic clock in microseconds, from any origin: recorded per
    /// proposed slot ([`Apply::proposed_at_us`]) to measure commit latency.
    pub mono_us: u64,
}

/// How much the leader keeps in flight and in its queue. Zeros count as 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Slots this leader keeps proposed and not yet chosen; more requests wait in the queue.
    pub max_in_flight: usize,
    /// The most commands in one batch.
    pub max_batch_commands: usize,
    /// The most bytes of commands in one batch (an estimate of their encoding;
    /// a single larger command still goes alone).
    pub max_batch_bytes: usize,
    /// A request that would take the queue's bytes past this is answered
    /// `Outcome::Busy`.
    pub max_queued_bytes: usize,
    /// Admission control: a new command or linearizable read that arrives
    /// while this many requests already wait here (queued, proposed and not
    /// yet chosen, or reads waiting for their index) is answered
    /// `Outcome::Busy`, and its client backs off. Past the point where the
    /// pipeline is full, more waiting only adds latency; bounding it keeps
    /// latency below clients' timeouts (so they do not fail over and resend)
    /// and memory bounded when far more clients come than the cluster serves.
    pub max_waiting: usize,
}

/// The default of [`Limits::max_waiting`]: one full batch of the default
/// size. A thousand waiting clients already keep the pipeline full (three
/// replicas on two cores commit 60-100k commands a second with them), so this
/// is 40-200 ms of work there.
pub const DEFAULT_MAX_WAITING: usize = 4096;

impl Default for Limits {
    /// The runtime's defaults: 4 slots in flight, batches of up to 4096
    /// commands and 1 MiB, `Busy` past 64 batches' worth (64 MiB) queued or
    /// [`DEFAULT_MAX_WAITING`] requests waiting.
    fn default() -> Limits {
        Limits::with_batches(4, 4096, 1 << 20)
    }
}

impl Limits {
    /// Limits with today's `Busy` rules: up to 64 full batches may queue,
    /// and [`DEFAULT_MAX_WAITING`] requests wait.
    pub fn with_batches(max_in_flight: usize, max_batch_commands: usize, max_batch_bytes: usize) -> Limits {
        Limits {
            max_in_flight,
            max_batch_commands,
            max_batch_bytes,
            max_queued_bytes: max_batch_bytes.saturating_mul(64),
            max_waiting: DEFAULT_MAX_WAITING,
        }
    }

    /// These limits with `max_waiting` set.
    pub fn with_max_waiting(self, max_waiting: usize) -> Limits {
        Limits { max_waiting, ..self }
    }
}

/// Counters of one replica core. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client requests handled.
    pub requests: u64,
    /// Requests answered `Redirect` because this replica did not lead.
    pub redirects: u64,
    /// Requests answered `Busy` because the queue was full or too many waited
    /// (commands and reads).
    pub busy: u64,
    /// Queued, unproposed requests answered `Redirect` when this replica stopped leading.
    pub queued_redirected: u64,
    /// Waiters replaced by a newer request from the same origin (the older one gets no answer).
    pub waiters_replaced: u64,
    /// Waiters forgotten because their connection closed.
    pub waiters_dropped: u64,
    /// Batches proposed.
    pub batches_proposed: u64,
    /// Commands in the batches proposed.
    pub commands_proposed: u64,
    /// Batches that did not encode or that the Paxos core refused; their waiters were answered.
    pub proposals_failed: u64,
    /// Slots handed to the driver to apply.
    pub slots_applied: u64,
    /// Waiters handed to the driver with their slot.
    pub waiters_applied: u64,
    /// Snapshots asked of the driver ([`Effect::TakeSnapshot`]).
    pub snapshots_asked: u64,
    /// Snapshots offered unasked to peers behind the compacted log.
    pub snapshots_offered: u64,
    /// Snapshot bytes received from peers and stored.
    pub snapshot_bytes_received: u64,
    /// Received snapshots installed.
    pub snapshots_installed: u64,
    /// Received snapshots whose check failed (pulled again).
    pub snapshots_refused: u64,
    /// Membership changes proposed as stop signs.
    pub changes_proposed: u64,
    /// Membership changes refused (invalid, in flight, no live quorum).
    pub changes_refused: u64,
    /// Reads handled (outside the log).
    pub reads: u64,
    /// Of those, stale reads.
    pub reads_stale: u64,
    /// Reads handed to the driver to serve.
    pub reads_served: u64,
    /// Reads that got no read index, answered `Unavailable`.
    pub reads_failed: u64,
}

/// One replica's decisions around its Paxos core, sans IO; `C` names a client connection.
///
/// Every `handle_*` input runs the Paxos input, turns the Paxos core's
/// actions into effects, proposes what is queued (batches of up to
/// `max_batch_commands` commands and `max_batch_bytes` bytes, while the core
/// can propose and fewer than `max_in_flight` slots are open), and turns the
/// resulting actions into effects. Drain them with [`ReplicaCore::poll_effect`].
///
/// Waiters are bounded: an origin (a session's (client, seq), or a
/// registration's nonce) has at most one waiter. A request whose origin is
/// already queued or proposed here is not queued again; its connection and
/// request id replace the older waiter's, and the older request gets no
/// answer (its client has given up on it and resent). Queued requests are
/// bounded by `max_queued_bytes`, proposed ones by the window.
#[derive(Debug)]
pub struct ReplicaCore<C> {
    pub(crate) paxos: Paxos,
    limits: Limits,
    /// Commands waiting for the next batch, oldest first.
    queue: VecDeque<Command>,
    /// The estimated bytes of `queue`.
    queue_bytes: usize,
    /// Who waits on each queued command (none if its connection closed).
    queued: BTreeMap<Origin, (C, u64)>,
    /// Who waits on each slot this replica proposed and has not yet applied.
    pub(crate) proposed: BTreeMap<Slot, Vec<Waiter<C>>>,
    /// The slot each waiter of `proposed` waits on.
    pub(crate) proposed_origin: BTreeMap<Origin, Slot>,
    /// When each slot was proposed in this leadership (`Now::mono_us`).
    pub(crate) proposed_at: BTreeMap<Slot, u64>,
    pub(crate) effects: VecDeque<Effect<C>>,
    pub(crate) stats: Stats,
    routing: Routing,
    pub(crate) snapshots: Snapshots,
    /// The membership change this leader is working on (one at a time).
    pub(crate) change: Option<PendingChange<C>>,
    /// Reads waiting for a read index or for it to be applied.
    pub(crate) reads: Reads<C>,
    #[cfg(feature = "planted-bugs")]
    pub(crate) bugs: crate::PlantedBugs,
}

impl<C: Copy + Eq + Ord + Hash + Debug> ReplicaCore<C> {
    /// A replica core around `paxos` (fresh or recovered). A recovered core
    /// may have effects at once (the commits its log shows): poll them.
    pub fn new(paxos: Paxos, limits: Limits) -> ReplicaCore<C> {
        let limits = Limits {
            max_in_flight: limits.max_in_flight.max(1),
            max_batch_commands: limits.max_batch_commands.max(1),
            max_batch_bytes: limits.max_batch_bytes.max(1),
            max_queued_bytes: limits.max_queued_bytes.max(1),
            max_waiting: limits.max_waiting.max(1),
        };
        let mut core = ReplicaCore {
            paxos,
            limits,
            queue: VecDeque::new(),
            queue_bytes: 0,
            queued: BTreeMap::new(),
            proposed: BTreeMap::new(),
            proposed_origin: BTreeMap::new(),
            proposed_at: BTreeMap::new(),
            effects: VecDeque::new(),
            stats: Stats::default(),
            routing: Routing::default(),
            snapshots: Snapshots::new(SnapshotPolicy::NEVER),
            change: None,
            reads: Reads::default(),
            #[cfg(feature = "planted-bugs")]
            bugs: crate::PlantedBugs::default(),
        };
        core.drain_actions();
        core.reads.emitted = core.paxos.delivered();
        core
    }

    /// Plants the given bugs (all off by default), for the simulator's self-tests.
    #[cfg(feature = "planted-bugs")]
    pub fn with_bugs(mut self, bugs: crate::PlantedBugs) -> ReplicaCore<C> {
        self.routing = Routing { by_position: bugs.route_by_position };
        self.bugs = bugs;
        self
    }

    /// Handles a message from replica `from`.
    pub fn handle_message(&mut self, now: Now, from: NodeId, msg: Message) {
        if matches!(msg, Message::SnapshotPull { .. } | Message::SnapshotChunk { .. }) {
            // Any authenticated replica: a joining one catches up this way
            // before it is a member.
            if from != self.paxos.id() {
                self.on_snapshot_message(from, msg);
            }
        } else {
            self.paxos.handle_message(from, msg);
        }
        self.finish(now);
    }

    /// Handles a client's request on connection `conn`: the leader queues it
    /// (or answers `Busy`, or updates the waiter of a request from the same
    /// origin); any other replica answers `Redirect { leader }`.
    pub fn handle_client(&mut self, now: Now, conn: C, request: ClientRequest) {
        self.stats.requests += 1;
        if !self.paxos.is_leader() {
            self.stats.redirects += 1;
            let leader = self.paxos.leader();
            self.reply(conn, request.id, Outcome::Redirect { leader });
            return;
        }
        let origin = Origin::of(&request.command);
        if let Some(waiter) = self.queued.get_mut(&origin) {
            *waiter = (conn, request.id);
            self.stats.waiters_replaced += 1;
        } else if let Some(w) = self
            .proposed_origin
            .get(&origin)
            .and_then(|slot| self.proposed.get_mut(slot))
            .and_then(|ws| ws.iter_mut().find(|w| w.origin == origin))
        {
            w.conn = conn;
            w.id = request.id;
            self.stats.waiters_replaced += 1;
        } else {
            let size = size(&request.command);
            if self.queue_bytes + size > self.limits.max_queued_bytes || self.admission_full() {
                // Far more waiting than the pipeline can take: push back.
                self.stats.busy += 1;
                self.reply(conn, request.id, Outcome::Busy);
                return;
            }
            self.queued.insert(origin, (conn, request.id));
            self.queue.push_back(request.command);
            self.queue_bytes += size;
        }
        self.finish(now);
    }

    /// Reports that every `Persist` up to and including `token` is durable.
    pub fn handle_persisted(&mut self, now: Now, token: PersistToken) {
        self.paxos.handle_persisted(token);
        self.finish(now);
    }

    /// Advances the Paxos core's logical time by one tick.
    pub fn handle_tick(&mut self, now: Now) {
        self.paxos.handle_tick();
        self.snapshot_tick();
        self.try_change();
        self.finish(now);
    }

    /// Forgets every waiter of connection `conn`, queued or proposed: it
    /// closed. Its queued commands are still proposed, answering nobody.
    pub fn handle_client_gone(&mut self, conn: C) {
        let before = self.queued.len();
        self.queued.retain(|_, (c, _)| *c != conn);
        let mut dropped = before - self.queued.len();
        let proposed_origin = &mut self.proposed_origin;
        for waiters in self.proposed.values_mut() {
            waiters.retain(|w| {
                let gone = w.conn == conn;
                if gone {
                    proposed_origin.remove(&w.origin);
                    dropped += 1;
                }
                !gone
            });
        }
        self.proposed.retain(|_, waiters| !waiters.is_empty());
        self.stats.waiters_dropped += dropped as u64;
        self.reads_gone(conn);
    }

    /// The next effect for the driver, in the order they must be carried out.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect<C>> {
        self.effects.pop_front()
    }

    /// The Paxos core, read-only (for status: leader, ballot, commit point, its stats).
    pub fn paxos(&self) -> &Paxos {
        &self.paxos
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Commands queued and not yet proposed.
    pub fn queued_commands(&self) -> usize {
        self.queue.len()
    }

    /// Clients waiting here for an answer: on queued commands and on proposed slots.
    pub fn waiting(&self) -> usize {
        self.queued.len() + self.proposed.values().map(Vec::len).sum::<usize>()
    }

    // ---- private ----

    /// Whether as many requests wait here as admission control allows. Each
    /// term is a map's length: this is O(1) on every request.
    pub(crate) fn admission_full(&self) -> bool {
        let waiting =
            self.queued.len() + self.proposed_origin.len() + self.reads.asked.len() + self.reads.parked.len();
        waiting >= self.limits.max_waiting
    }

    /// After a Paxos input: its actions to effects, then the queue proposed, then those actions.
    pub(crate) fn finish(&mut self, now: Now) {
        // The input's actions first, so that a leader change is seen before proposing.
        self.drain_actions();
        self.propose(now);
        self.drain_actions();
        if !self.queue.is_empty() && !self.paxos.is_leader() && !self.paxos.is_candidate() {
            // Not leading without a step-down announced: never strand the queue.
            let leader = self.paxos.leader();
            self.redirect_queued(leader);
        }
        self.maybe_snapshot();
    }

    /// Proposes what queued while earlier batches were in flight.
    fn propose(&mut self, now: Now) {
        while !self.queue.is_empty()
            && self.paxos.can_propose()
            && self.paxos.in_flight() < self.limits.max_in_flight
        {
            let mut bytes = 0;
            let mut take = 0;
            for c in &self.queue {
                let size = size(c);
                if take > 0
                    && (take >= self.limits.max_batch_commands || bytes + size > self.limits.max_batch_bytes)
                {
                    break;
                }
                bytes += size;
                take += 1;
            }
            let commands: Vec<Command> = self.queue.drain(..take).collect();
            self.queue_bytes -= bytes.min(self.queue_bytes);
            let waiters: Vec<Waiter<C>> = commands
                .iter()
                .filter_map(|c| {
                    let origin = Origin::of(c);
                    self.queued.remove(&origin).map(|(conn, id)| Waiter { origin, conn, id })
                })
                .collect();
            let count = commands.len();
            let batch = Batch { timestamp_ms: now.wall_ms, commands };
            // The queue's size estimate, plus room for each command's envelope.
            let proposed = match batch.encode_with_capacity(bytes + 16 * count + 64) {
                Ok(frame) => self.paxos.propose(frame).map_err(|_| {
                    // `can_propose` held: only a leader change in between refuses.
                    let leader = self.paxos.leader();
                    Outcome::Redirect { leader }
                }),
                // Only a batch past the frame limit fails to encode: the client may retry it alone.
                Err(_) => Err(Outcome::Busy),
            };
            match proposed {
                Ok(slot) => {
                    self.stats.batches_proposed += 1;
                    self.stats.commands_proposed += count as u64;
                    self.proposed_at.insert(slot, now.mono_us);
                    self.effects.push_back(Effect::Proposed { slot, commands: count });
                    if !waiters.is_empty() {
                        for w in &waiters {
                            self.proposed_origin.insert(w.origin, slot);
                        }
                        self.proposed.entry(slot).or_default().extend(waiters);
                    }
                }
                Err(outcome) => {
                    self.stats.proposals_failed += 1;
                    for w in waiters {
                        self.reply(w.conn, w.id, outcome.clone());
                    }
                }
            }
        }
    }

    /// Turns every pending action of the Paxos core into effects.
    fn drain_actions(&mut self) {
        while let Some(action) = self.paxos.poll_action() {
            match action {
                Action::Send { to, msg } => self.effects.push_back(Effect::Send { to, msg }),
                Action::Persist { records, token } => {
                    self.effects.push_back(Effect::Persist { records, token })
                }
                Action::Commit { slot, value } => {
                    self.snapshots.since += value_bytes(&value);
                    let waiters = self.proposed.remove(&slot).unwrap_or_default();
                    for w in &waiters {
                        if self.proposed_origin.get(&w.origin) == Some(&slot) {
                            self.proposed_origin.remove(&w.origin);
                        }
                    }
                    let proposed_at_us = self.proposed_at.remove(&slot);
                    self.stats.slots_applied += 1;
                    self.stats.waiters_applied += waiters.len() as u64;
                    self.effects.push_back(Effect::Apply(Apply {
                        slot,
                        value,
                        waiters,
                        proposed_at_us,
                        leader: self.paxos.leader(),
                        routing: self.routing,
                    }));
                    self.release_reads(slot.next());
                }
                Action::SnapshotWanted { to } => self.offer_snapshot(to),
                Action::LeaderChanged { leader, ballot, is_self } => {
                    // A new leadership: earlier proposals' times no longer measure it.
                    self.proposed_at.clear();
                    self.effects.push_back(Effect::LeaderChanged { leader, ballot, is_self });
                    self.change_abandoned();
                    if !is_self && !self.paxos.is_candidate() {
                        // Waiters of proposed slots stay: their slot may still be chosen.
                        // (A candidate keeps its queue: a leader that stands again in
                        // a new configuration goes on with it.)
                        self.redirect_queued(leader);
                    }
                }
                Action::Reconfigured { membership, from, removed } => {
                    self.effects.push_back(Effect::Reconfigured { membership, from, removed });
                    self.change_done();
                }
                Action::Retire => self.effects.push_back(Effect::Retire),
                Action::ReadReady { id, index } => self.read_ready(id, index),
                Action::ReadFailed { id } => self.read_failed(id),
            }
        }
    }

    /// Answers every queued request `Redirect { leader }`, in queue order, and empties the queue.
    fn redirect_queued(&mut self, leader: Option<NodeId>) {
        let queue = std::mem::take(&mut self.queue);
        self.queue_bytes = 0;
        for command in queue {
            if let Some((conn, id)) = self.queued.remove(&Origin::of(&command)) {
                self.stats.queued_redirected += 1;
                self.reply(conn, id, Outcome::Redirect { leader });
            }
        }
        // Every waiter's command was in the queue; nothing is left.
        debug_assert!(self.queued.is_empty(), "queued waiters without a queued command");
        self.queued.clear();
    }

    pub(crate) fn reply(&mut self, conn: C, id: u64, outcome: Outcome) {
        self.effects.push_back(Effect::Reply { conn, reply: ClientReply { id, outcome } });
    }
}

/// Bytes a command adds to a batch, for the batch and queue limits (an estimate of its encoding).
fn size(command: &Command) -> usize {
    match command {
        Command::Register { .. } => 16,
        Command::Op { payload, .. } => payload.len() + 32,
    }
}
