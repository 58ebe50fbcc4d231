//! The Multi-Paxos core: one replica's proposer, acceptor, learner and leader election, sans IO.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};

use synod_wire::{Ballot, ChosenEntry, LogRecord, Message, NodeId, PromiseEntry, Slot, Status, Value};

use crate::action::{Action, PersistToken};
use crate::config::Config;
use crate::durable::Durable;
use crate::rng::Rng;
use crate::stats::Stats;

/// The most bytes of values one catch-up reply carries.
const CATCH_UP_BYTES: usize = 4 << 20;

/// Why a proposal was refused. The batch comes back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This replica is not the leader (or has not finished Phase 1).
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The replica this one believes leads, if any.
        leader: Option<NodeId>,
        /// The refused batch.
        batch: Vec<u8>,
    },
    /// The window of outstanding slots is full; propose again after a commit.
    #[error("the proposal window is full")]
    WindowFull {
        /// The refused batch.
        batch: Vec<u8>,
    },
}

/// One slot as this replica's acceptor and learner know it.
#[derive(Debug, Clone, Hash)]
struct Entry {
    /// The ballot the value was accepted at (`Ballot::ZERO` if only learned).
    ballot: Ballot,
    value: Value,
    chosen: bool,
}

#[derive(Debug, Clone, Hash)]
enum Role {
    Follower,
    Candidate(Candidate),
    Leader(Leader),
}

#[derive(Debug, Clone, Hash)]
struct Candidate {
    ballot: Ballot,
    /// The first slot this replica did not know chosen when it stood.
    from: Slot,
    promises: BTreeMap<NodeId, Vec<PromiseEntry>>,
}

#[derive(Debug, Clone, Hash)]
struct Leader {
    ballot: Ballot,
    next_slot: Slot,
    pending: BTreeMap<Slot, Pending>,
}

#[derive(Debug, Clone, Hash)]
struct Pending {
    value: Value,
    votes: BTreeSet<NodeId>,
    sent_at: u64,
}

/// Ballot leader election with quorum-connectivity (after OmniPaxos's BLE).
///
/// Every heartbeat round a replica pings all peers and collects their
/// [`Status`]. It is quorum-connected when a majority (itself included)
/// answered. It is *happy* when it leads and is quorum-connected, or when it
/// heard the leader this round and the leader is happy. An unhappy,
/// quorum-connected replica that hears no happy peer for a randomized
/// timeout stands with a ballot above every ballot it has seen. Everyone
/// adopts the highest leader ballot they hear of.
#[derive(Debug, Clone, Hash)]
struct Election {
    round: u64,
    round_ends: u64,
    replies: BTreeMap<NodeId, Status>,
    leader: Ballot,
    quorum_connected: bool,
    happy: bool,
    unhappy_since: Option<u64>,
    timeout: u64,
    /// Set at a round's end when this replica may stand once its timeout
    /// expires: it hears a majority and nobody it hears is happy.
    may_stand: bool,
}

/// One replica's Multi-Paxos core.
///
/// Deterministic and free of IO: inputs arrive through the `handle_*`
/// methods and [`Paxos::propose`], are processed strictly in call order,
/// and every output is queued as an [`Action`] that the driver drains with
/// [`Paxos::poll_action`] after each call. Time is the number of
/// [`Paxos::handle_tick`] calls; randomness comes from the seed.
///
/// The driver's duties: deliver `Send`s (best effort), make `Persist`
/// records durable in order and report them with
/// [`Paxos::handle_persisted`], apply `Commit`s in order, and call
/// `handle_tick` at a steady rate. Messages that promise or accept are only
/// released after the records behind them are durable.
#[derive(Debug, Clone)]
pub struct Paxos {
    cfg: Config,
    rng: Rng,
    now: u64,

    // Acceptor and learner.
    promised: Ballot,
    log: BTreeMap<Slot, Entry>,
    base: Slot,
    first_unchosen: Slot,
    delivered: Slot,
    known_commit: Slot,
    last_commit_mark: Slot,
    last_catch_up: Option<u64>,
    peer_status: BTreeMap<NodeId, Status>,

    // Persistence.
    last_token: u64,
    durable_token: u64,
    pending_records: Vec<LogRecord>,
    deferred: VecDeque<(u64, NodeId, Message)>,
    local: VecDeque<Message>,

    // Proposer and election.
    role: Role,
    election: Election,
    max_round: u64,
    commit_dirty: bool,
    announced: (Option<NodeId>, bool),

    actions: VecDeque<Action>,
    stats: Stats,
}

/// Hashes everything that can influence what the core does next: every field but `stats`.
///
/// For model checkers, which tell states apart by hash (the stateright model in
/// `tests/it/model.rs`): the counters only grow and never influence behaviour, so hashing
/// them would keep apart states that act the same. A field added to `Paxos` must be added here.
impl Hash for Paxos {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let Paxos {
            cfg,
            rng,
            now,
            promised,
            log,
            base,
            first_unchosen,
            delivered,
            known_commit,
            last_commit_mark,
            last_catch_up,
            peer_status,
            last_token,
            durable_token,
            pending_records,
            deferred,
            local,
            role,
            election,
            max_round,
            commit_dirty,
            announced,
            actions,
            stats: _,
        } = self;
        cfg.hash(state);
        rng.hash(state);
        now.hash(state);
        promised.hash(state);
        log.hash(state);
        base.hash(state);
        first_unchosen.hash(state);
        delivered.hash(state);
        known_commit.hash(state);
        last_commit_mark.hash(state);
        last_catch_up.hash(state);
        peer_status.hash(state);
        last_token.hash(state);
        durable_token.hash(state);
        pending_records.hash(state);
        deferred.hash(state);
        local.hash(state);
        role.hash(state);
        election.hash(state);
        max_round.hash(state);
        commit_dirty.hash(state);
        announced.hash(state);
        actions.hash(state);
    }
}

impl Paxos {
    /// A fresh replica with an empty log. `seed` drives its election timeouts.
    pub fn new(config: Config, seed: u64) -> Paxos {
        Paxos::recover(config, seed, Durable::default(), Slot(0))
    }

    /// A replica restarted from what its log held. Chosen slots from
    /// `deliver_from` on are committed again (`deliver_from` is where the
    /// driver's state machine stands: 0 without a snapshot).
    pub fn recover(config: Config, seed: u64, durable: Durable, deliver_from: Slot) -> Paxos {
        let mut rng = Rng::new(seed ^ u64::from(config.id.0).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let timeout = rng.range(config.election_ticks.0, config.election_ticks.1);
        let log: BTreeMap<Slot, Entry> = durable
            .entries
            .into_iter()
            .map(|(slot, (ballot, value, chosen))| (slot, Entry { ballot, value, chosen }))
            .collect();
        let base = durable.snapshot_upto;
        let mut paxos = Paxos {
            rng,
            now: 0,
            promised: durable.promised,
            log,
            base,
            first_unchosen: base,
            delivered: deliver_from.max(base),
            known_commit: base,
            last_commit_mark: base,
            last_catch_up: None,
            peer_status: BTreeMap::new(),
            last_token: 0,
            durable_token: 0,
            pending_records: Vec::new(),
            deferred: VecDeque::new(),
            local: VecDeque::new(),
            role: Role::Follower,
            election: Election {
                round: 0,
                round_ends: config.heartbeat_ticks,
                replies: BTreeMap::new(),
                // The highest ballot this replica is known to have seen.
                leader: durable.promised,
                quorum_connected: false,
                happy: false,
                unhappy_since: None,
                timeout,
                may_stand: false,
            },
            max_round: durable.promised.round,
            commit_dirty: false,
            announced: (None, false),
            actions: VecDeque::new(),
            stats: Stats::default(),
            cfg: config,
        };
        paxos.advance();
        paxos.last_commit_mark = paxos.first_unchosen;
        paxos.known_commit = paxos.first_unchosen;
        paxos.delivered = paxos.delivered.min(paxos.first_unchosen).max(base);
        paxos.deliver();
        if paxos.cfg.members.len() == 1 {
            // A cluster of one needs no heartbeat round to elect itself.
            paxos.stand();
            paxos.finish();
        }
        paxos
    }

    /// Advances logical time by one tick.
    pub fn handle_tick(&mut self) {
        self.now += 1;
        if self.now >= self.election.round_ends {
            self.end_round();
        } else if self.election.may_stand
            && self.election.unhappy_since.is_some_and(|t| self.now - t >= self.election.timeout)
        {
            // The timeout is checked every tick, not only at round ends, so
            // that replicas with different timeouts rarely stand together.
            self.stand();
        }
        self.send_commit();
        self.finish();
    }

    /// Handles a message from replica `from`. Messages from non-members are ignored.
    pub fn handle_message(&mut self, from: NodeId, msg: Message) {
        if from == self.cfg.id || !self.cfg.members.contains(&from) {
            return;
        }
        self.stats.messages_in += 1;
        self.on_message(from, msg);
        self.finish();
    }

    /// Reports that every `Persist` up to and including `token` is durable.
    pub fn handle_persisted(&mut self, token: PersistToken) {
        if token.0 <= self.durable_token {
            return;
        }
        self.durable_token = token.0.min(self.last_token);
        while let Some((t, _, _)) = self.deferred.front() {
            if *t > self.durable_token {
                break;
            }
            let (_, to, msg) = self.deferred.pop_front().expect("front exists");
            self.send(to, msg);
        }
        self.finish();
    }

    /// Proposes `batch` for the next free slot. Only the leader, with room in
    /// its window, accepts; otherwise the batch comes back in the error and
    /// nothing changed.
    pub fn propose(&mut self, batch: Vec<u8>) -> Result<Slot, ProposeError> {
        let leader_hint = self.leader();
        let Role::Leader(leader) = &mut self.role else {
            return Err(ProposeError::NotLeader { leader: leader_hint, batch });
        };
        if leader.pending.len() >= self.cfg.window {
            return Err(ProposeError::WindowFull { batch });
        }
        let slot = leader.next_slot;
        leader.next_slot = slot.next();
        self.stats.proposals += 1;
        self.start_slot(slot, Value::Batch(batch.into()));
        self.finish();
        Ok(slot)
    }

    /// Forgets chosen entries below `upto`, which a snapshot now covers.
    /// Slots not yet delivered are kept.
    pub fn compact(&mut self, upto: Slot) {
        let upto = upto.min(self.delivered);
        if upto > self.base {
            self.log = self.log.split_off(&upto);
            self.base = upto;
        }
    }

    /// The next action for the driver, in the order they must be carried out.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The replica this one believes leads, itself included once it finished Phase 1.
    pub fn leader(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader(_) => Some(self.cfg.id),
            _ if self.election.leader != Ballot::ZERO && self.election.leader.node != self.cfg.id => {
                Some(self.election.leader.node)
            }
            _ => None,
        }
    }

    /// Whether this replica leads and may propose.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// Whether [`Paxos::propose`] would accept a batch now.
    pub fn can_propose(&self) -> bool {
        matches!(&self.role, Role::Leader(l) if l.pending.len() < self.cfg.window)
    }

    /// Slots this leader proposed that are not yet chosen (0 when not leading).
    pub fn in_flight(&self) -> usize {
        match &self.role {
            Role::Leader(l) => l.pending.len(),
            _ => 0,
        }
    }

    /// The highest ballot this replica's acceptor promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The highest leader ballot this replica knows of.
    pub fn leader_ballot(&self) -> Ballot {
        self.election.leader
    }

    /// Every slot below this one is chosen and known here.
    pub fn first_unchosen(&self) -> Slot {
        self.first_unchosen
    }

    /// Every slot below this one was committed to the driver.
    pub fn delivered(&self) -> Slot {
        self.delivered
    }

    /// The chosen value of `slot`, if this replica knows it and has not compacted it.
    pub fn chosen(&self, slot: Slot) -> Option<&Value> {
        self.log.get(&slot).filter(|e| e.chosen).map(|e| &e.value)
    }

    /// Ticks elapsed.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Ticks until this core next has timed work to do; a simulator may skip idle ticks up to it.
    pub fn ticks_until_deadline(&self) -> u64 {
        self.election.round_ends.saturating_sub(self.now).max(1)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ---- private: message handling ----

    fn on_message(&mut self, from: NodeId, msg: Message) {
        match msg {
            Message::Prepare { ballot, first_unchosen } => self.on_prepare(from, ballot, first_unchosen),
            Message::Promise { ballot, entries } => self.on_promise(from, ballot, entries),
            Message::Accept { ballot, slot, value, commit } => {
                self.on_accept(from, ballot, slot, value, commit)
            }
            Message::Accepted { ballot, slot } => self.on_accepted(from, ballot, slot),
            Message::Commit { ballot, commit } => {
                self.observe_leader(ballot);
                self.learn_commit(ballot, commit);
            }
            Message::Reject { ballot, promised } => self.on_reject(ballot, promised),
            Message::CatchUp { from: lo, to } => self.on_catch_up(from, lo, to),
            Message::CatchUpReply { entries } => self.on_catch_up_reply(from, entries),
            Message::Ping { round, status } => {
                self.observe_status(from, status);
                let status = self.status();
                self.send(from, Message::Pong { round, status });
            }
            Message::Pong { round, status } => {
                self.observe_status(from, status);
                if round == self.election.round {
                    self.election.replies.insert(from, status);
                }
            }
        }
    }

    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, first_unchosen: Slot) {
        self.max_round = self.max_round.max(ballot.round);
        if ballot < self.promised {
            self.reject(from, ballot);
            return;
        }
        if first_unchosen < self.base {
            // Slots the candidate lacks were compacted here; it must catch up
            // from a snapshot first, and a promise without them would be unsafe.
            return;
        }
        if ballot > self.promised {
            self.promised = ballot;
            self.pending_records.push(LogRecord::Promise { ballot });
        }
        self.observe_leader(ballot);
        if from != self.cfg.id {
            // A candidate is running: give it a full timeout before standing ourselves.
            self.election.may_stand = false;
            if self.election.unhappy_since.is_some() {
                self.election.unhappy_since = Some(self.now);
            }
        }
        let entries = self
            .log
            .range(first_unchosen..)
            .map(|(&slot, e)| PromiseEntry {
                slot,
                ballot: e.ballot,
                value: e.value.clone(),
                chosen: e.chosen,
            })
            .collect();
        self.defer(from, Message::Promise { ballot, entries });
    }

    fn on_promise(&mut self, from: NodeId, ballot: Ballot, entries: Vec<PromiseEntry>) {
        let Role::Candidate(c) = &mut self.role else { return };
        if c.ballot != ballot {
            return;
        }
        c.promises.insert(from, entries);
        if c.promises.len() >= self.cfg.majority() {
            self.become_leader();
        }
    }

    fn on_accept(&mut self, from: NodeId, ballot: Ballot, slot: Slot, value: Value, commit: Slot) {
        self.max_round = self.max_round.max(ballot.round);
        if ballot < self.promised {
            self.reject(from, ballot);
            // A commit point is a fact whoever sends it.
            self.learn_commit(ballot, commit);
            return;
        }
        // The Accept record carries the ballot, so recovery restores the promise from it.
        self.promised = ballot;
        self.observe_leader(ballot);
        match self.log.get(&slot) {
            _ if slot < self.base => self.send(from, Message::Accepted { ballot, slot }),
            Some(e) if e.chosen => {
                if e.value == value {
                    self.send(from, Message::Accepted { ballot, slot });
                }
            }
            _ => {
                self.log.insert(slot, Entry { ballot, value: value.clone(), chosen: false });
                self.pending_records.push(LogRecord::Accept { slot, ballot, value });
                self.defer(from, Message::Accepted { ballot, slot });
            }
        }
        self.learn_commit(ballot, commit);
    }

    fn on_accepted(&mut self, from: NodeId, ballot: Ballot, slot: Slot) {
        let majority = self.cfg.majority();
        let Role::Leader(l) = &mut self.role else { return };
        if l.ballot != ballot {
            return;
        }
        let Some(p) = l.pending.get_mut(&slot) else { return };
        p.votes.insert(from);
        if p.votes.len() >= majority {
            let value = l.pending.remove(&slot).expect("present").value;
            // Our own acceptor normally holds this very value at this ballot;
            // then there is nothing to compare or copy.
            if self.log.get(&slot).is_some_and(|e| e.ballot == ballot && !e.chosen) {
                self.mark_chosen(slot);
            } else {
                self.choose(slot, value);
            }
            self.commit_dirty = true;
        }
    }

    fn on_reject(&mut self, ballot: Ballot, promised: Ballot) {
        self.max_round = self.max_round.max(promised.round);
        if self.role_ballot() == Some(ballot) && promised > ballot {
            self.step_down();
        }
        self.observe_leader(promised);
    }

    fn on_catch_up(&mut self, from: NodeId, lo: Slot, to: Slot) {
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut expect = lo;
        for (&slot, e) in self.log.range(lo..to) {
            if slot != expect
                || !e.chosen
                || entries.len() >= self.cfg.catch_up_batch
                || bytes > CATCH_UP_BYTES
            {
                break;
            }
            bytes += match &e.value {
                Value::Noop => 16,
                Value::Batch(b) => b.len() + 16,
            };
            entries.push(ChosenEntry { slot, value: e.value.clone() });
            expect = slot.next();
        }
        if !entries.is_empty() {
            self.send(from, Message::CatchUpReply { entries });
        }
    }

    fn on_catch_up_reply(&mut self, from: NodeId, entries: Vec<ChosenEntry>) {
        let before = self.first_unchosen;
        for e in entries {
            if e.slot >= self.first_unchosen {
                self.stats.caught_up_entries += 1;
                self.choose(e.slot, e.value);
            }
        }
        if self.first_unchosen > before && self.first_unchosen < self.known_commit {
            self.request_catch_up(Some(from));
        }
    }

    // ---- private: proposer ----

    fn stand(&mut self) {
        let round = self.max_round.max(self.promised.round).max(self.election.leader.round) + 1;
        let ballot = Ballot::new(round, self.cfg.id);
        self.max_round = round;
        self.election.leader = ballot;
        self.election.happy = true;
        self.election.unhappy_since = None;
        self.election.may_stand = false;
        self.stats.elections += 1;
        self.role =
            Role::Candidate(Candidate { ballot, from: self.first_unchosen, promises: BTreeMap::new() });
        // Promise to ourselves first: peers hear the ballot only once our own
        // promise is durable, so a restart can never reuse it.
        self.on_prepare(self.cfg.id, ballot, self.first_unchosen);
        for peer in self.cfg.peers().collect::<Vec<_>>() {
            self.defer(peer, Message::Prepare { ballot, first_unchosen: self.first_unchosen });
        }
    }

    fn become_leader(&mut self) {
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else { return };
        let mut merged: BTreeMap<Slot, PromiseEntry> = BTreeMap::new();
        for (node, entries) in c.promises {
            if self.ignores_promise_from(node) {
                continue;
            }
            for e in entries {
                if e.slot < c.from {
                    continue;
                }
                match merged.get(&e.slot) {
                    Some(m) if m.chosen || (!e.chosen && e.ballot <= m.ballot) => {}
                    _ => {
                        merged.insert(e.slot, e);
                    }
                }
            }
        }
        let next_slot = merged.keys().next_back().map_or(c.from, |s| s.next()).max(c.from);
        self.role = Role::Leader(Leader { ballot: c.ballot, next_slot, pending: BTreeMap::new() });
        self.stats.became_leader += 1;
        let mut slot = c.from;
        while slot < next_slot {
            let value = merged.remove(&slot).map_or(Value::Noop, |e| e.value);
            self.start_slot(slot, value);
            slot = slot.next();
        }
        self.commit_dirty = true;
    }

    fn start_slot(&mut self, slot: Slot, value: Value) {
        let Role::Leader(l) = &mut self.role else { return };
        let ballot = l.ballot;
        l.pending.insert(slot, Pending { value: value.clone(), votes: BTreeSet::new(), sent_at: self.now });
        let commit = self.first_unchosen;
        for peer in self.cfg.peers().collect::<Vec<_>>() {
            self.send(peer, Message::Accept { ballot, slot, value: value.clone(), commit });
        }
        if !self.cfg.eager_commit {
            // Every peer now has the commit point.
            self.commit_dirty = false;
        }
        self.send(self.cfg.id, Message::Accept { ballot, slot, value, commit });
    }

    fn step_down(&mut self) {
        if !matches!(self.role, Role::Follower) {
            self.role = Role::Follower;
            self.stats.step_downs += 1;
            self.election.happy = false;
        }
    }

    fn role_ballot(&self) -> Option<Ballot> {
        match &self.role {
            Role::Follower => None,
            Role::Candidate(c) => Some(c.ballot),
            Role::Leader(l) => Some(l.ballot),
        }
    }

    fn reject(&mut self, to: NodeId, ballot: Ballot) {
        self.stats.rejects_sent += 1;
        let promised = self.promised;
        self.send(to, Message::Reject { ballot, promised });
    }

    // ---- private: learner ----

    /// Marks `slot` chosen when its entry is known to hold the chosen value
    /// (it was accepted at the ballot of a leader that says it is chosen).
    fn mark_chosen(&mut self, slot: Slot) {
        if let Some(e) = self.log.get_mut(&slot) {
            if !e.chosen {
                e.chosen = true;
                self.stats.chosen += 1;
                self.advance();
            }
        }
    }

    /// Records that `slot` holds `value`, chosen.
    fn choose(&mut self, slot: Slot, value: Value) {
        if slot < self.base {
            return;
        }
        if let Role::Leader(l) = &mut self.role {
            if let Some(p) = l.pending.remove(&slot) {
                if p.value != value {
                    // Another value was chosen in a slot we are still proposing
                    // for: a higher ballot has led meanwhile, so we are stale.
                    // Stepping down now matters for safety, not just liveness:
                    // our commit point would otherwise cover this slot, and
                    // followers holding our value at our ballot would take it
                    // for the chosen one.
                    self.step_down();
                }
            }
        }
        match self.log.get_mut(&slot) {
            Some(e) if e.chosen => return,
            Some(e) if e.value == value => e.chosen = true,
            _ => {
                self.log.insert(slot, Entry { ballot: Ballot::ZERO, value: value.clone(), chosen: true });
                self.pending_records.push(LogRecord::Learn { slot, value });
            }
        }
        self.stats.chosen += 1;
        self.advance();
    }

    /// Every slot below `commit` is chosen; those this replica accepted at
    /// `ballot` hold the value that leader proposed, which is the chosen one.
    fn learn_commit(&mut self, ballot: Ballot, commit: Slot) {
        if commit > self.known_commit {
            self.known_commit = commit;
        }
        if commit <= self.first_unchosen {
            return;
        }
        let learned: Vec<Slot> = self
            .log
            .range(self.first_unchosen..commit)
            .filter(|(_, e)| !e.chosen && e.ballot == ballot)
            .map(|(&s, _)| s)
            .collect();
        for slot in learned {
            self.mark_chosen(slot);
        }
        if self.first_unchosen < self.known_commit && self.last_catch_up.is_none() {
            self.request_catch_up(None);
        }
    }

    fn advance(&mut self) {
        while self.log.get(&self.first_unchosen).is_some_and(|e| e.chosen) {
            self.first_unchosen = self.first_unchosen.next();
        }
        if self.first_unchosen > self.known_commit {
            self.known_commit = self.first_unchosen;
        }
        self.deliver();
    }

    fn deliver(&mut self) {
        while self.delivered < self.first_unchosen {
            let slot = self.delivered;
            let value = self.log[&slot].value.clone();
            self.actions.push_back(Action::Commit { slot, value });
            self.delivered = slot.next();
        }
    }

    /// Asks a peer that has them for the chosen slots this replica lacks.
    fn request_catch_up(&mut self, prefer: Option<NodeId>) {
        if self.first_unchosen >= self.known_commit {
            self.last_catch_up = None;
            return;
        }
        let me = self.cfg.id;
        let ahead = |s: &Status| s.first_unchosen > self.first_unchosen;
        let peer = prefer
            .or_else(|| {
                self.peer_status
                    .iter()
                    .filter(|(_, s)| ahead(s))
                    .max_by_key(|(_, s)| s.first_unchosen)
                    .map(|(&n, _)| n)
            })
            .or_else(|| self.leader())
            .filter(|&n| n != me);
        let Some(peer) = peer else { return };
        let to = Slot(self.known_commit.0.min(self.first_unchosen.0 + self.cfg.catch_up_batch as u64));
        self.stats.catch_up_requests += 1;
        self.last_catch_up = Some(self.now);
        self.send(peer, Message::CatchUp { from: self.first_unchosen, to });
    }

    // ---- private: election ----

    fn status(&self) -> Status {
        Status {
            leader: self.election.leader,
            quorum_connected: self.election.quorum_connected,
            happy: self.election.happy,
            first_unchosen: self.first_unchosen,
        }
    }

    fn observe_status(&mut self, from: NodeId, status: Status) {
        self.peer_status.insert(from, status);
        if status.happy {
            // Someone is content with a leader: do not disrupt it.
            self.election.may_stand = false;
        }
        if status.first_unchosen > self.known_commit {
            self.known_commit = status.first_unchosen;
        }
        self.observe_leader(status.leader);
    }

    /// Adopts `ballot` as the leader if it is the highest seen; a replica
    /// leading with a lower ballot steps down.
    fn observe_leader(&mut self, ballot: Ballot) {
        self.max_round = self.max_round.max(ballot.round);
        if ballot > self.election.leader {
            self.election.leader = ballot;
            if self.role_ballot().is_some_and(|b| b < ballot) {
                self.step_down();
            }
        }
    }

    fn end_round(&mut self) {
        let majority = self.cfg.majority();
        let me = self.cfg.id;
        let role_ballot = self.role_ballot();
        let e = &mut self.election;
        let qc = e.replies.len() + 1 >= majority;
        e.quorum_connected = qc;
        let leads = role_ballot.is_some_and(|b| b == e.leader);
        e.happy = qc
            && if e.leader.node == me {
                leads
            } else {
                e.replies.get(&e.leader.node).is_some_and(|s| s.happy && s.leader == e.leader)
            };
        let someone_happy = e.replies.values().any(|s| s.happy);
        e.replies.clear();
        e.round += 1;
        e.round_ends = self.now + self.cfg.heartbeat_ticks;
        if e.happy {
            e.unhappy_since = None;
            e.may_stand = false;
        } else {
            let since = match e.unhappy_since {
                Some(t) => t,
                None => {
                    e.unhappy_since = Some(self.now);
                    e.timeout = self.rng.range(self.cfg.election_ticks.0, self.cfg.election_ticks.1);
                    self.now
                }
            };
            let waited = self.now - since;
            self.election.may_stand = qc && !someone_happy && !leads;
            if leads && waited >= self.cfg.election_ticks.0 {
                // Check-quorum: a leader that cannot hear a majority stops leading.
                self.step_down();
            } else if self.election.may_stand && waited >= self.election.timeout {
                self.stand();
            }
        }
        self.periodic();
        let status = self.status();
        let round = self.election.round;
        for peer in self.cfg.peers().collect::<Vec<_>>() {
            self.send(peer, Message::Ping { round, status });
        }
    }

    /// Once per heartbeat round: retransmit what went unanswered, send the
    /// commit point, catch up, and record the commit point durably.
    fn periodic(&mut self) {
        let hb = self.cfg.heartbeat_ticks;
        let now = self.now;
        let peers: Vec<NodeId> = self.cfg.peers().collect();
        match &mut self.role {
            Role::Follower => {}
            Role::Candidate(c) => {
                let (ballot, from) = (c.ballot, c.from);
                let missing: Vec<NodeId> =
                    peers.iter().copied().filter(|p| !c.promises.contains_key(p)).collect();
                for peer in missing {
                    self.defer(peer, Message::Prepare { ballot, first_unchosen: from });
                }
            }
            Role::Leader(l) => {
                let ballot = l.ballot;
                let commit = self.first_unchosen;
                let mut resend = Vec::new();
                for (&slot, p) in l.pending.iter_mut() {
                    if p.sent_at + hb <= now {
                        p.sent_at = now;
                        for &peer in &peers {
                            if !p.votes.contains(&peer) {
                                resend.push((
                                    peer,
                                    Message::Accept { ballot, slot, value: p.value.clone(), commit },
                                ));
                            }
                        }
                    }
                }
                self.stats.retransmits += resend.len() as u64;
                for (peer, msg) in resend {
                    self.send(peer, msg);
                }
                for &peer in &peers {
                    self.send(peer, Message::Commit { ballot, commit });
                }
                self.commit_dirty = false;
            }
        }
        if self.first_unchosen < self.known_commit
            && self.last_catch_up.is_none_or(|t| t + hb <= now || self.first_unchosen >= self.known_commit)
        {
            self.request_catch_up(None);
        }
        if self.first_unchosen > self.last_commit_mark {
            self.last_commit_mark = self.first_unchosen;
            self.pending_records.push(LogRecord::Commit { upto: self.first_unchosen });
        }
    }

    // ---- private: output plumbing ----

    fn send(&mut self, to: NodeId, msg: Message) {
        if to == self.cfg.id {
            self.local.push_back(msg);
        } else {
            self.stats.messages_out += 1;
            self.actions.push_back(Action::Send { to, msg });
        }
    }

    /// Sends `msg` once everything recorded so far is durable.
    fn defer(&mut self, to: NodeId, msg: Message) {
        let need = if self.pending_records.is_empty() { self.last_token } else { self.last_token + 1 };
        if need <= self.durable_token || self.replies_early() {
            self.send(to, msg);
        } else {
            self.deferred.push_back((need, to, msg));
        }
    }

    /// Sends the commit point to every peer if it moved since they were last told.
    fn send_commit(&mut self) {
        if self.commit_dirty {
            self.commit_dirty = false;
            if let Role::Leader(l) = &self.role {
                let (ballot, commit) = (l.ballot, self.first_unchosen);
                for peer in self.cfg.peers().collect::<Vec<_>>() {
                    self.send(peer, Message::Commit { ballot, commit });
                }
            }
        }
    }

    /// Ends every public call: handles messages to self, flushes records as
    /// one `Persist`, sends a pending commit point (when eager), announces leader changes.
    fn finish(&mut self) {
        loop {
            while let Some(msg) = self.local.pop_front() {
                self.on_message(self.cfg.id, msg);
            }
            if self.cfg.eager_commit {
                self.send_commit();
            }
            if !self.pending_records.is_empty() {
                self.last_token += 1;
                self.stats.persists += 1;
                let records = std::mem::take(&mut self.pending_records);
                self.actions.push_back(Action::Persist { records, token: PersistToken(self.last_token) });
            }
            if self.local.is_empty() {
                break;
            }
        }
        let now = (self.leader(), self.is_leader());
        if now != self.announced {
            self.announced = now;
            self.stats.leader_changes += 1;
            self.actions.push_back(Action::LeaderChanged {
                leader: now.0,
                ballot: self.election.leader,
                is_self: now.1,
            });
        }
    }

    #[cfg(feature = "planted-bugs")]
    fn replies_early(&self) -> bool {
        self.cfg.bugs.reply_before_durable
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn replies_early(&self) -> bool {
        false
    }

    #[cfg(feature = "planted-bugs")]
    fn ignores_promise_from(&self, node: NodeId) -> bool {
        self.cfg.bugs.ignore_promised_values && node != self.cfg.id
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn ignores_promise_from(&self, _node: NodeId) -> bool {
        false
    }
}
