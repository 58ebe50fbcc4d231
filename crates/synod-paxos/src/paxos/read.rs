//! Reads without the log: ReadIndex on the leader, and read indexes for followers.
//!
//! A read asks for a *read index*: a slot such that every write that
//! completed before the read began is below it. The leader gives one by
//! confirming that it still leads: it records its commit point, sends one
//! `Confirm` round to the voters, and once a majority (itself included)
//! answers that they promised no higher ballot, every read registered
//! before the round gets that commit point. One round serves every read
//! that arrived while the previous one was out. A write completed before
//! the read began was chosen at this leader's ballot or an earlier one
//! (this leader knows it: it committed a slot of its own ballot first, so
//! everything before that is chosen and known here), or at a later one, for
//! which a majority promised the later ballot before the read began, and
//! one of them would then have refused to confirm.
//!
//! A round asks only as many voters as a majority needs, those that
//! confirmed the latest rounds first, and the others too only if the round
//! is still open [`CONFIRM_OTHERS_AFTER_TICKS`] later (or at the next
//! heartbeat round): on a healthy cluster each round costs one follower of
//! three a message instead of two, which is CPU the replicas share when they
//! share machines, and a voter that stops answering is asked last from the
//! round after. Whom a round asks changes nothing about what it proves: it
//! still counts a majority of confirmations.
//!
//! A follower asks the leader (`ReadIndex`), gets the index back
//! (`ReadIndexReply`) and serves the read once it has applied that far. The
//! driver serves a read once every slot below its index is applied
//! ([`crate::Action::ReadReady`]); a read that cannot get an index (no leader,
//! a deposed leader, no answer in time) fails ([`crate::Action::ReadFailed`]),
//! never with an old value.

use std::collections::{BTreeMap, BTreeSet};

use synod_wire::{Ballot, Message, NodeId, Slot, Status, Value};

use super::{Paxos, Role};
use crate::action::Action;

/// Ticks a follower waits for the leader's read index before the read fails.
pub const READ_INDEX_TICKS: u64 = 100;

/// Ticks a confirmation round waits for the voters it asked before it asks
/// the others too: two ticks, so never less than one whole tick.
pub const CONFIRM_OTHERS_AFTER_TICKS: u64 = 2;

/// Whom a read index is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum ReadFor {
    /// A read of this replica's driver.
    Local(u64),
    /// A follower's read.
    Peer(NodeId, u64),
}

/// The reads this replica is getting read indexes for.
#[derive(Debug, Clone, Default, Hash)]
pub(super) struct Reads {
    /// As leader: reads that arrived since the current round started.
    waiting: Vec<ReadFor>,
    /// As leader: the reads the round in flight will confirm, and its read index.
    in_round: Vec<ReadFor>,
    round_index: Slot,
    /// As leader: the current round's number (0: none yet), and the voters that confirmed it.
    round: u64,
    acks: BTreeSet<NodeId>,
    /// The ballot the round in flight confirms.
    round_ballot: Ballot,
    /// As leader: the voters the round in flight has not asked yet, and the tick it started at.
    unasked: Vec<NodeId>,
    round_started: u64,
    /// As leader: the latest round each voter confirmed; the most recent are asked first.
    confirmed: BTreeMap<NodeId, u64>,
    /// As follower: reads asked of the leader, with the tick they were asked at.
    asked: BTreeMap<u64, u64>,
}

impl Paxos {
    /// Asks for a read index for read `id` (chosen by the driver, unique among
    /// its reads in flight): the answer comes as [`Action::ReadReady`] or
    /// [`Action::ReadFailed`]. The leader confirms its leadership; a
    /// follower asks the leader.
    pub fn read(&mut self, id: u64) {
        match &self.role {
            Role::Leader(_) => {
                self.reads.waiting.push(ReadFor::Local(id));
                self.stats.reads += 1;
                self.start_read_round();
            }
            _ => match self.leader().filter(|&l| l != self.cfg.id) {
                Some(leader) if !self.removed && self.rejoin.is_none() => {
                    self.reads.asked.insert(id, self.now);
                    self.stats.reads_forwarded += 1;
                    self.send(leader, Message::ReadIndex { id });
                }
                _ => self.actions.push_back(Action::ReadFailed { id }),
            },
        }
        self.finish();
        self.debug_assert_invariants();
    }

    /// Like [`Paxos::read`], but with leases on (`Config::with_leases`) a
    /// leader that holds its lease and has committed a slot of its own
    /// ballot answers at once, without a confirmation round. Otherwise it is
    /// a ReadIndex read. Linearizable only while clocks keep the bound
    /// `Config::with_leases` states.
    pub fn read_lease(&mut self, id: u64) {
        let serves = self.cfg.leases
            && self.now < self.lease_until
            && matches!(&self.role, Role::Leader(l) if l.settled && l.stop.is_none());
        if !serves {
            self.read(id);
            return;
        }
        let Role::Leader(l) = &self.role else { return };
        let index = self.first_unchosen.max(l.recovered_to);
        self.stats.lease_reads += 1;
        self.actions.push_back(Action::ReadReady { id, index });
        self.finish();
        self.debug_assert_invariants();
    }

    /// A voter heard a content leader's heartbeat: with leases on, it
    /// promises no other candidate of this configuration for the shortest
    /// election timeout, counted from now on its own ticks.
    pub(super) fn grant_lease(&mut self, from: NodeId, status: Status) {
        if self.cfg.leases
            && self.is_voter()
            && status.happy
            && status.leader.node == from
            && status.leader >= self.promised
            && status.leader == self.election.highest_seen
        {
            self.granted_until = self.now + self.cfg.election_ticks.0;
        }
    }

    /// Whether a voter refuses to promise `ballot` because it granted the
    /// current leader a lease (a later configuration's candidate, and the
    /// leader itself, are never refused).
    pub(super) fn lease_refuses(&self, ballot: Ballot) -> bool {
        let leader = self.election.highest_seen;
        self.cfg.leases
            && self.now < self.granted_until
            && ballot.node != leader.node
            && ballot.epoch <= leader.epoch
    }

    /// A voter answered this heartbeat round following this leader: a
    /// majority of them renews the lease from the round's start.
    pub(super) fn lease_ack(&mut self, from: NodeId, status: Status) {
        if !self.cfg.leases || !self.counts(from) {
            return;
        }
        let Role::Leader(l) = &self.role else { return };
        if status.leader != l.ballot {
            return;
        }
        self.lease_acks.insert(from);
        if self.lease_acks.len() + 1 >= self.majority() {
            let started = self.election.round_ends.saturating_sub(self.cfg.heartbeat_ticks);
            self.lease_until = self.lease_until.max(started + self.cfg.lease_ticks());
        }
    }

    pub(super) fn on_read_index(&mut self, from: NodeId, id: u64) {
        if matches!(self.role, Role::Leader(_)) {
            self.reads.waiting.push(ReadFor::Peer(from, id));
            self.stats.reads += 1;
            self.start_read_round();
        } else {
            let (ballot, commit) = (self.election.highest_seen, Slot(0));
            self.send(from, Message::ReadIndexReply { id, index: None, ballot, commit });
        }
    }

    pub(super) fn on_read_index_reply(&mut self, id: u64, index: Option<Slot>, ballot: Ballot, commit: Slot) {
        if index.is_some() {
            // Learn the leader's commit point as from a `Commit`, so that the
            // read need not wait for the next one.
            self.observe_leader(ballot);
            self.learn_commit(ballot, commit);
        }
        if self.reads.asked.remove(&id).is_some() {
            self.actions.push_back(match index {
                Some(index) => Action::ReadReady { id, index },
                None => Action::ReadFailed { id },
            });
        }
    }

    pub(super) fn on_confirm(&mut self, from: NodeId, ballot: Ballot, round: u64, commit: Slot) {
        // Confirms only a leader it has promised nothing higher than.
        if self.is_voter() && self.rejoin.is_none() && ballot >= self.promised {
            self.observe_leader(ballot);
            self.send(from, Message::Confirmed { ballot, round });
            self.learn_commit(ballot, commit);
        }
    }

    pub(super) fn on_confirmed(&mut self, from: NodeId, ballot: Ballot, round: u64) {
        if round != self.reads.round || ballot != self.reads.round_ballot || !self.counts(from) {
            return;
        }
        if !matches!(&self.role, Role::Leader(l) if l.ballot == ballot) {
            return;
        }
        self.reads.acks.insert(from);
        self.reads.confirmed.insert(from, round);
        self.complete_read_round();
    }

    /// Starts a confirmation round for the waiting reads, unless one is in
    /// flight or this leader has not yet committed a slot of its own ballot
    /// (it then proposes a no-op, if nothing of its own is in flight).
    fn start_read_round(&mut self) {
        if self.reads.waiting.is_empty() || !self.reads.in_round.is_empty() {
            return;
        }
        let Role::Leader(l) = &mut self.role else { return };
        if l.stop.is_some() {
            // A stop sign is in this leader's log: the slots after it belong
            // to the next configuration, which this leader does not lead
            // (even with a ballot of the next epoch, taken before it learned
            // that configuration: its Phase 1 stopped at the stop sign). A
            // leader of the next configuration may already have chosen writes
            // there, so no read index from here; the reads wait, and fail
            // when this leader steps down on adopting the next configuration
            // (simulator seed 4140516: a stale read at index #24 while #24-#31
            // were chosen in epoch 1).
            return;
        }
        if !l.settled {
            if l.pending.is_empty() {
                let slot = l.next_slot;
                l.next_slot = slot.next();
                self.start_slot(slot, Value::Noop);
            }
            return;
        }
        let (ballot, recovered_to) = (l.ballot, l.recovered_to);
        self.reads.round += 1;
        self.reads.round_ballot = ballot;
        // Slots this leader found in Phase 1 and proposes again may be chosen
        // out of order: the index covers them all even before they are known
        // chosen here (the read then waits until they are applied).
        self.reads.round_index = self.first_unchosen.max(recovered_to);
        self.reads.in_round = std::mem::take(&mut self.reads.waiting);
        self.reads.acks.clear();
        self.stats.read_rounds += 1;
        let (round, commit) = (self.reads.round, self.first_unchosen);
        // As many voters as a majority needs, those that confirmed most recently first.
        let mut peers = self.voter_peers();
        let confirmed = &self.reads.confirmed;
        peers.sort_by_key(|p| std::cmp::Reverse(confirmed.get(p).copied().unwrap_or(0)));
        let ask = self.majority().saturating_sub(1).min(peers.len());
        self.reads.unasked = peers.split_off(ask);
        self.reads.round_started = self.now;
        for peer in peers {
            self.send(peer, Message::Confirm { ballot, round, commit });
        }
        self.complete_read_round();
    }

    /// Answers the round's reads once a majority, this leader included, confirmed it.
    fn complete_read_round(&mut self) {
        if self.reads.in_round.is_empty() || self.reads.acks.len() + 1 < self.majority() {
            return;
        }
        let index = self.reads.round_index;
        for read in std::mem::take(&mut self.reads.in_round) {
            match read {
                ReadFor::Local(id) => self.actions.push_back(Action::ReadReady { id, index }),
                ReadFor::Peer(to, id) => {
                    let (ballot, commit) = (self.reads.round_ballot, self.first_unchosen);
                    self.send(to, Message::ReadIndexReply { id, index: Some(index), ballot, commit });
                }
            }
        }
        self.start_read_round();
    }

    /// A leader that settled starts the round its reads waited for.
    pub(super) fn reads_settled(&mut self) {
        self.start_read_round();
    }

    /// Every tick: a round still open [`CONFIRM_OTHERS_AFTER_TICKS`] after it
    /// started asks the voters it has not asked yet.
    pub(super) fn read_tick(&mut self) {
        if self.reads.in_round.is_empty()
            || self.reads.unasked.is_empty()
            || self.now < self.reads.round_started + CONFIRM_OTHERS_AFTER_TICKS
        {
            return;
        }
        let (ballot, round, commit) = (self.reads.round_ballot, self.reads.round, self.first_unchosen);
        for peer in std::mem::take(&mut self.reads.unasked) {
            self.send(peer, Message::Confirm { ballot, round, commit });
        }
    }

    /// Once per heartbeat round: a leader asks again the voters that have
    /// not confirmed its round; a follower's reads that got no index in
    /// time fail.
    pub(super) fn read_periodic(&mut self) {
        if !self.reads.in_round.is_empty() {
            let (ballot, round, commit) = (self.reads.round_ballot, self.reads.round, self.first_unchosen);
            for peer in self.voter_peers() {
                if !self.reads.acks.contains(&peer) {
                    self.send(peer, Message::Confirm { ballot, round, commit });
                }
            }
            self.reads.unasked.clear();
        }
        let now = self.now;
        let late: Vec<u64> = self
            .reads
            .asked
            .iter()
            .filter(|(_, &t)| t + READ_INDEX_TICKS <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            self.reads.asked.remove(&id);
            self.actions.push_back(Action::ReadFailed { id });
        }
    }

    /// This replica stopped leading: none of its reads gets an index from it.
    pub(super) fn fail_leader_reads(&mut self) {
        let reads: Vec<ReadFor> = std::mem::take(&mut self.reads.in_round)
            .into_iter()
            .chain(std::mem::take(&mut self.reads.waiting))
            .collect();
        self.reads.acks.clear();
        self.reads.unasked.clear();
        let ballot = self.election.highest_seen;
        for read in reads {
            match read {
                ReadFor::Local(id) => self.actions.push_back(Action::ReadFailed { id }),
                ReadFor::Peer(to, id) => {
                    self.send(to, Message::ReadIndexReply { id, index: None, ballot, commit: Slot(0) })
                }
            }
        }
    }
}
