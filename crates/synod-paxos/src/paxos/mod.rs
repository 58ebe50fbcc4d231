//! The Multi-Paxos core: one replica's proposer, acceptor, learner and leader election, sans IO.
//!
//! This file holds the [`Paxos`] struct, its constructors, its public inputs
//! (`handle_*`, `propose`, `compact`), its outputs (`poll_action`) and
//! accessors, and the dispatch of incoming messages. The protocol lives in
//! the submodules, one concern each: `acceptor` (Prepare and Accept),
//! `proposer` (standing, Phase 1 and 2 as leader), `learner` (chosen slots,
//! commits, catch-up), `election` (heartbeat rounds, leader ballot) and
//! `output` (sending, persist-before-reply, ending each call).

mod acceptor;
mod election;
mod learner;
mod membership;
mod output;
mod proposer;
mod read;
mod snapshot;

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

use synod_wire::{Ballot, LogRecord, Membership, Message, NodeId, Slot, Status, Value};

use crate::action::{Action, PersistToken};
use crate::config::Config;
use crate::durable::Durable;
use crate::rng::Rng;
use crate::stats::Stats;

use election::Election;
use output::Announced;
use proposer::{Candidate, Leader};
use snapshot::Rejoin;

pub use membership::{ReconfigError, RETIRE_TICKS};
pub use read::{CONFIRM_OTHERS_AFTER_TICKS, READ_INDEX_TICKS};

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
    /// This leader proposed a stop sign: its configuration takes no slot
    /// after it. Propose again once the next configuration has a leader.
    #[error("a membership change is in flight")]
    Stopping {
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
    /// The highest snapshot recorded in the log (`base` may lag it by the retain window).
    snapshot: Slot,
    /// Set while a replica that lost its disk may not vote yet (see `snapshot.rs`).
    rejoin: Option<Rejoin>,
    first_unchosen: Slot,
    delivered: Slot,
    known_commit: Slot,
    last_commit_mark: Slot,
    last_catch_up: Option<u64>,
    peer_status: BTreeMap<NodeId, Status>,
    /// The tick each peer's status was last heard.
    heard_at: BTreeMap<NodeId, u64>,

    // Membership (see `membership.rs`).
    /// The configuration in force: it governs every slot from `config_start` on.
    members: Membership,
    /// The first slot of `members`' log: one past the stop sign that started it (0 for configuration 0).
    config_start: Slot,
    /// A configuration this replica was a member of was followed by one without it.
    removed: bool,
    /// Since when it was removed, until it retires (`Action::Retire`).
    removed_at: Option<u64>,
    /// It has been a member while caught up, in this incarnation: only then
    /// does a configuration without it remove it. A replica that joins on an
    /// empty disk passes, catching up, configurations that removed an earlier
    /// incarnation of the same id, before the one that adds it.
    joined: bool,
    /// It has been a member of a configuration it adopted, in this
    /// incarnation (caught up or not): see [`Paxos::note_removed`].
    member_seen: bool,
    /// A leaving leader asked this replica to stand once it is in this configuration.
    handover: Option<u64>,
    /// The newest configuration this replica's log durably shows in force,
    /// and the one waiting for its records to be durable (epoch, token).
    epoch_durable: u64,
    epoch_pending: Option<(u64, u64)>,

    /// Reads getting read indexes (see `read.rs`).
    reads: read::Reads,
    /// Leases (`Config::with_leases`): as leader, lease reads are served
    /// without a round until this tick; as voter, no other candidate of the
    /// configuration gets a promise until this tick.
    lease_until: u64,
    granted_until: u64,
    /// The voters that answered this heartbeat round following this leader.
    lease_acks: std::collections::BTreeSet<NodeId>,

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
    /// The leader last announced in an `Action::LeaderChanged`.
    announced: Announced,

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
            snapshot,
            rejoin,
            first_unchosen,
            delivered,
            known_commit,
            last_commit_mark,
            last_catch_up,
            peer_status,
            heard_at,
            members,
            config_start,
            removed,
            removed_at,
            joined,
            member_seen,
            handover,
            epoch_durable,
            epoch_pending,
            reads,
            lease_until,
            granted_until,
            lease_acks,
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
        snapshot.hash(state);
        rejoin.hash(state);
        first_unchosen.hash(state);
        delivered.hash(state);
        known_commit.hash(state);
        last_commit_mark.hash(state);
        last_catch_up.hash(state);
        peer_status.hash(state);
        heard_at.hash(state);
        members.hash(state);
        config_start.hash(state);
        removed.hash(state);
        removed_at.hash(state);
        joined.hash(state);
        member_seen.hash(state);
        handover.hash(state);
        epoch_durable.hash(state);
        epoch_pending.hash(state);
        reads.hash(state);
        lease_until.hash(state);
        granted_until.hash(state);
        lease_acks.hash(state);
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
        let members = durable.membership.unwrap_or_else(|| config.initial_membership());
        let member_seen = members.contains(config.id);
        let rejoining = durable.rejoining;
        let mut paxos = Paxos {
            rng,
            now: 0,
            promised: durable.promised,
            log,
            base,
            snapshot: base,
            rejoin: rejoining.then(Rejoin::default),
            first_unchosen: base,
            delivered: deliver_from.max(base),
            known_commit: base,
            last_commit_mark: base,
            last_catch_up: None,
            peer_status: BTreeMap::new(),
            heard_at: BTreeMap::new(),
            members,
            config_start: base,
            removed: false,
            removed_at: None,
            joined: config.members.contains(&config.id),
            member_seen,
            handover: None,
            epoch_durable: 0,
            epoch_pending: None,
            reads: read::Reads::default(),
            lease_until: 0,
            granted_until: 0,
            lease_acks: std::collections::BTreeSet::new(),
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
                // A promise was made at a ballot seen, so it is the highest known after a restart.
                highest_seen: durable.promised,
                quorum_connected: false,
                happy: false,
                unhappy_since: None,
                timeout,
                may_stand: false,
            },
            max_round: durable.promised.round,
            commit_dirty: false,
            announced: Announced { leader: None, is_self: false },
            actions: VecDeque::new(),
            stats: Stats::default(),
            cfg: config,
        };
        if !paxos.members.contains(paxos.cfg.id)
            && paxos.cfg.members.contains(&paxos.cfg.id)
            && paxos.members.epoch > 0
        {
            // Started as a member (not joining), and the configuration its
            // snapshot holds no longer names it: it was removed before the crash.
            paxos.removed = true;
            paxos.removed_at = Some(0);
        }
        paxos.advance();
        // Switching configurations on the way logged commit marks (`adopt`) for
        // what the log already holds as chosen: nothing new to write.
        paxos.pending_records.clear();
        paxos.last_commit_mark = paxos.first_unchosen;
        paxos.known_commit = paxos.first_unchosen;
        // What recovery found is in the log: durable.
        paxos.epoch_durable = paxos.members.epoch;
        paxos.epoch_pending = None;
        paxos.delivered = paxos.delivered.min(paxos.first_unchosen).max(base);
        paxos.deliver();
        if paxos.members.members.len() == 1 && paxos.is_voter() {
            // A cluster of one needs no heartbeat round to elect itself.
            paxos.stand();
        }
        paxos.finish();
        paxos.debug_assert_invariants();
        paxos
    }

    /// A replica whose disk holds nothing: it takes part in consensus only
    /// once it has heard that the cluster is new, or has heard every peer and
    /// learned every slot any of them holds (see [`Paxos::is_rejoining`]).
    /// Drivers start every replica that recovered no log record and no
    /// snapshot this way, a cluster's first start included.
    /// It logs `LogRecord::Rejoin { done: false }` first, so a restart before
    /// it has rejoined goes on rejoining ([`Durable::rejoining`]).
    pub fn rejoin(config: Config, seed: u64) -> Paxos {
        let mut paxos = Paxos::new(config, seed);
        if paxos.members.members.len() > 1 || !paxos.is_voter() {
            paxos.rejoin = Some(Rejoin::default());
            paxos.pending_records.push(LogRecord::Rejoin { done: false });
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
        self.read_tick();
        self.note_joined();
        self.note_removed();
        self.check_retire();
        self.finish();
        self.debug_assert_invariants();
    }

    /// Handles a message from replica `from` (authenticated by the driver).
    /// Messages from replicas outside the configuration are handled too: a
    /// lagging or removed replica catches up through them, and their votes
    /// are never counted (see `membership.rs`).
    pub fn handle_message(&mut self, from: NodeId, msg: Message) {
        if from == self.cfg.id {
            return;
        }
        self.stats.messages_in += 1;
        self.on_message(from, msg);
        self.finish();
        self.debug_assert_invariants();
    }

    /// Reports that every `Persist` up to and including `token` is durable.
    pub fn handle_persisted(&mut self, token: PersistToken) {
        if token.0 <= self.durable_token {
            return;
        }
        self.durable_token = token.0.min(self.last_token);
        self.rejoin_persisted();
        if let Some((epoch, t)) = self.epoch_pending {
            if t <= self.durable_token {
                self.epoch_durable = self.epoch_durable.max(epoch);
                self.epoch_pending = None;
            }
        }
        while let Some((t, _, _)) = self.deferred.front() {
            if *t > self.durable_token {
                break;
            }
            let (_, to, msg) = self.deferred.pop_front().expect("front exists");
            self.send(to, msg);
        }
        self.finish();
        self.debug_assert_invariants();
    }

    /// Proposes `batch` for the next free slot. Only the leader, with room in
    /// its window, accepts; otherwise the batch comes back in the error and
    /// nothing changed.
    pub fn propose(&mut self, batch: Vec<u8>) -> Result<Slot, ProposeError> {
        let leader_hint = self.leader();
        let passes = self.passes_stop_signs();
        let Role::Leader(leader) = &mut self.role else {
            return Err(ProposeError::NotLeader { leader: leader_hint, batch });
        };
        if leader.stop.is_some() && !passes {
            return Err(ProposeError::Stopping { batch });
        }
        if leader.pending.len() >= self.cfg.window {
            return Err(ProposeError::WindowFull { batch });
        }
        let slot = leader.next_slot;
        leader.next_slot = slot.next();
        self.stats.proposals += 1;
        self.start_slot(slot, Value::Batch(batch.into()));
        self.finish();
        self.debug_assert_invariants();
        Ok(slot)
    }

    /// Forgets chosen entries below `upto`, which a snapshot now covers.
    /// Slots not yet delivered are kept.
    pub fn compact(&mut self, upto: Slot) {
        self.compact_below(upto);
        self.debug_assert_invariants();
    }

    fn compact_below(&mut self, upto: Slot) {
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
            _ if self.election.highest_seen != Ballot::ZERO
                && self.election.highest_seen.node != self.cfg.id =>
            {
                Some(self.election.highest_seen.node)
            }
            _ => None,
        }
    }

    /// Whether this replica leads and may propose.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// Whether this replica stands for election (Phase 1 under way).
    pub fn is_candidate(&self) -> bool {
        matches!(self.role, Role::Candidate(_))
    }

    /// Whether [`Paxos::propose`] would accept a batch now.
    pub fn can_propose(&self) -> bool {
        matches!(&self.role, Role::Leader(l)
            if l.pending.len() < self.cfg.window && (l.stop.is_none() || self.passes_stop_signs()))
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

    /// The highest ballot this replica has seen (its own once it stood), whose
    /// owner it takes for the leader: the ballot a leader it follows leads at.
    pub fn leader_ballot(&self) -> Ballot {
        self.election.highest_seen
    }

    /// Every slot below this one is chosen and known here.
    pub fn first_unchosen(&self) -> Slot {
        self.first_unchosen
    }

    /// Every slot below this one is chosen, as far as this replica has heard
    /// (its own commit point, or a peer's): it catches up to here.
    pub fn known_commit(&self) -> Slot {
        self.known_commit
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

    // ---- private: invariants ----

    /// Checks, in debug builds only, the structural facts the code relies on,
    /// at the end of every public input. Release builds compile it to nothing.
    ///
    /// Every fact here follows from this replica's own code, never from its
    /// peers behaving: a planted bug elsewhere must show up as a violated
    /// protocol property in the simulator or the model check, not as a
    /// panic here.
    #[cfg(debug_assertions)]
    fn debug_assert_invariants(&self) {
        // Slot positions: base <= delivered == first_unchosen <= known_commit,
        // and last_commit_mark <= first_unchosen.
        assert!(self.base <= self.delivered, "base {:?} > delivered {:?}", self.base, self.delivered);
        assert!(
            self.delivered == self.first_unchosen,
            "delivered {:?} != first_unchosen {:?}: a chosen prefix was left undelivered",
            self.delivered,
            self.first_unchosen
        );
        assert!(
            self.first_unchosen <= self.known_commit,
            "first_unchosen {:?} > known_commit {:?}",
            self.first_unchosen,
            self.known_commit
        );
        assert!(
            self.last_commit_mark <= self.first_unchosen,
            "last_commit_mark {:?} > first_unchosen {:?}",
            self.last_commit_mark,
            self.first_unchosen
        );
        // The log: nothing below base; first_unchosen is the first slot not known chosen.
        if let Some((&first, _)) = self.log.first_key_value() {
            assert!(first >= self.base, "log entry {first:?} below base {:?}", self.base);
        }
        assert!(
            !self.log.get(&self.first_unchosen).is_some_and(|e| e.chosen),
            "slot first_unchosen {:?} is chosen",
            self.first_unchosen
        );
        if self.first_unchosen > self.base {
            let last = Slot(self.first_unchosen.0 - 1);
            assert!(
                self.log.get(&last).is_some_and(|e| e.chosen),
                "slot {last:?} below first_unchosen and at or above base {:?} is not chosen here",
                self.base
            );
        }
        // Ballots: the highest ballot seen covers the promise, max_round covers both.
        assert!(
            self.election.highest_seen >= self.promised,
            "highest ballot seen {:?} < promised {:?}",
            self.election.highest_seen,
            self.promised
        );
        assert!(
            self.max_round >= self.election.highest_seen.round,
            "max_round {} < the highest ballot seen {:?}",
            self.max_round,
            self.election.highest_seen
        );
        // A candidate or leader stands at its own ballot, which is both its
        // promise and the highest ballot it has seen: anything higher steps it down.
        if let Some(ballot) = self.role_ballot() {
            assert_eq!(ballot.node, self.cfg.id, "role ballot {ballot:?} is not this replica's");
            assert_eq!(ballot, self.promised, "role ballot != promised");
            assert_eq!(ballot, self.election.highest_seen, "role ballot != the highest ballot seen");
        }
        match &self.role {
            Role::Follower => {}
            Role::Candidate(c) => {
                assert!(c.from <= self.first_unchosen, "candidate from {:?} > first_unchosen", c.from);
            }
            Role::Leader(l) => {
                if let Some((&last, _)) = l.pending.last_key_value() {
                    assert!(
                        last < l.next_slot,
                        "pending slot {last:?} at or above next_slot {:?}",
                        l.next_slot
                    );
                }
            }
        }
        // Persistence: each call flushes its records and its messages to itself;
        // deferred messages wait, in token order, for tokens issued but not yet durable.
        assert!(self.pending_records.is_empty(), "records left unflushed");
        assert!(self.local.is_empty(), "messages to self left unhandled");
        assert!(self.durable_token <= self.last_token, "durable token beyond the last issued");
        if let (Some((front, _, _)), Some((back, _, _))) = (self.deferred.front(), self.deferred.back()) {
            assert!(
                self.durable_token < *front && front <= back && *back <= self.last_token,
                "deferred tokens {front}..={back} outside durable {}..last {}",
                self.durable_token,
                self.last_token
            );
        }
        // Time: the current heartbeat round has not ended yet.
        assert!(
            self.now < self.election.round_ends,
            "round ended at {} but now is {}",
            self.election.round_ends,
            self.now
        );
    }

    #[cfg(not(debug_assertions))]
    #[inline(always)]
    fn debug_assert_invariants(&self) {}

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
            Message::Handover { epoch } => self.on_handover(epoch),
            Message::ReadIndex { id } => self.on_read_index(from, id),
            Message::ReadIndexReply { id, index, ballot, commit } => {
                self.on_read_index_reply(id, index, ballot, commit)
            }
            Message::Confirm { ballot, round, commit } => self.on_confirm(from, ballot, round, commit),
            Message::Confirmed { ballot, round } => self.on_confirmed(from, ballot, round),
            Message::CatchUp { from: lo, to } => self.on_catch_up(from, lo, to),
            Message::CatchUpReply { entries } => self.on_catch_up_reply(from, entries),
            // Snapshot transfer is the driver's (synod-replica's); the core never sees it.
            Message::SnapshotPull { .. } | Message::SnapshotChunk { .. } => {}
            Message::Ping { round, status } => {
                self.observe_status(from, status);
                self.grant_lease(from, status);
                let status = self.status();
                self.send(from, Message::Pong { round, status });
            }
            Message::Pong { round, status } => {
                self.observe_status(from, status);
                if round == self.election.round && self.members.contains(from) {
                    self.lease_ack(from, status);
                    self.election.replies.insert(from, status);
                }
            }
        }
    }
}
