//! The proposer: stands for election (Phase 1), leads, proposes slots and counts votes (Phase 2).

use std::collections::{BTreeMap, BTreeSet};

use synod_wire::{Ballot, Message, NodeId, PromiseEntry, Slot, Value};

use super::{Paxos, Role};

/// A replica standing for election: Phase 1 at `ballot`, collecting promises.
#[derive(Debug, Clone, Hash)]
pub(super) struct Candidate {
    pub(super) ballot: Ballot,
    /// The first slot this replica did not know chosen when it stood.
    pub(super) from: Slot,
    pub(super) promises: BTreeMap<NodeId, Vec<PromiseEntry>>,
}

/// A replica that finished Phase 1 and leads at `ballot`.
#[derive(Debug, Clone, Hash)]
pub(super) struct Leader {
    pub(super) ballot: Ballot,
    pub(super) next_slot: Slot,
    pub(super) pending: BTreeMap<Slot, Pending>,
    /// The slot of the stop sign this leader proposed (or found in Phase 1):
    /// it proposes nothing after it.
    pub(super) stop: Option<Slot>,
    /// A slot proposed at this leader's ballot was chosen: it may propose a
    /// membership change.
    pub(super) settled: bool,
    /// The configuration the stop sign at `stop` starts, if this leader proposed it.
    pub(super) stop_members: Option<synod_wire::Membership>,
    /// One past the last slot Phase 1 found anything in: every slot chosen
    /// before this leader lies below it (a read index is never lower).
    pub(super) recovered_to: Slot,
}

/// A slot the leader proposed and has not yet seen chosen.
#[derive(Debug, Clone, Hash)]
pub(super) struct Pending {
    pub(super) value: Value,
    pub(super) votes: BTreeSet<NodeId>,
    pub(super) sent_at: u64,
}

impl Paxos {
    pub(super) fn on_promise(&mut self, from: NodeId, ballot: Ballot, entries: Vec<PromiseEntry>) {
        let Role::Candidate(c) = &mut self.role else { return };
        if c.ballot != ballot {
            return;
        }
        if !self.members.is_voter(from) {
            return;
        }
        c.promises.insert(from, entries);
        if c.promises.len() >= self.majority() {
            self.become_leader();
        }
    }
    pub(super) fn on_accepted(&mut self, from: NodeId, ballot: Ballot, slot: Slot) {
        let majority = self.majority();
        if !self.counts(from) {
            return;
        }
        let Role::Leader(l) = &mut self.role else { return };
        if l.ballot != ballot {
            return;
        }
        let Some(p) = l.pending.get_mut(&slot) else { return };
        p.votes.insert(from);
        if p.votes.len() >= majority {
            let settles = !l.settled;
            l.settled = true;
            let value = l.pending.remove(&slot).expect("present").value;
            // Our own acceptor normally holds this very value at this ballot;
            // then there is nothing to compare or copy.
            if self.log.get(&slot).is_some_and(|e| e.ballot == ballot && !e.chosen) {
                self.mark_chosen(slot);
            } else {
                self.choose(slot, value);
            }
            self.commit_dirty = true;
            if settles {
                self.reads_settled();
            }
        }
    }

    pub(super) fn on_reject(&mut self, ballot: Ballot, promised: Ballot) {
        self.max_round = self.max_round.max(promised.round);
        if self.role_ballot() == Some(ballot) && promised > ballot {
            self.step_down();
        }
        self.observe_leader(promised);
    }
    pub(super) fn stand(&mut self) {
        if self.rejoin.is_some() || !self.is_voter() {
            // Not allowed to vote yet, or not a voter.
            return;
        }
        // A ballot of its configuration, unless it has seen one of a later
        // configuration: then it lags, and the later configuration's stop
        // sign was chosen in its own. A Phase 1 among its own voters finds
        // that stop sign and proposes it again, and nothing after it, so it
        // learns it and catches up even if the only replicas that knew it
        // was chosen are gone; its ballot must outrank what it has seen.
        let epoch = self.members.epoch.max(self.promised.epoch).max(self.election.highest_seen.epoch);
        let round = self.max_round.max(self.promised.round).max(self.election.highest_seen.round) + 1;
        let ballot = Ballot::in_epoch(epoch, round, self.cfg.id);
        self.max_round = round;
        self.election.highest_seen = ballot;
        self.election.happy = true;
        self.election.unhappy_since = None;
        self.election.may_stand = false;
        self.stats.elections += 1;
        self.role =
            Role::Candidate(Candidate { ballot, from: self.first_unchosen, promises: BTreeMap::new() });
        // Promise to ourselves first: peers hear the ballot only once our own
        // promise is durable, so a restart can never reuse it.
        self.on_prepare(self.cfg.id, ballot, self.first_unchosen);
        for peer in self.voter_peers() {
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
        // The first stop sign found ends this configuration's log: it is
        // proposed again, and nothing after it (see membership.rs).
        let stop = merged
            .values()
            .find(|e| matches!(&e.value, Value::Reconfig(m) if m.epoch > self.members.epoch))
            .map(|e| e.slot);
        if let Some(stop) = stop {
            merged.retain(|&s, _| s <= stop);
        }
        // A stop sign for a configuration not after this one, found at or
        // after `from` (past the stop sign that began this configuration),
        // was proposed by a leader of an older configuration that had not
        // learned this one began. That configuration's log ended at its own
        // stop sign, so the value was never chosen; proposed again it would
        // be chosen as a stale configuration, which Paxos ignores but the
        // applier would record and a snapshot carry to a restart (simulator
        // seed 7224064: a replica restarted from such a snapshot counted
        // votes in four voters, two of them gone, and stood for ever). A
        // no-op takes its slot.
        let epoch = self.members.epoch;
        for e in merged.values_mut() {
            if !e.chosen && matches!(&e.value, Value::Reconfig(m) if m.epoch <= epoch) {
                e.value = Value::Noop;
            }
        }
        let next_slot = merged.keys().next_back().map_or(c.from, |s| s.next()).max(c.from);
        self.role = Role::Leader(Leader {
            ballot: c.ballot,
            next_slot,
            pending: BTreeMap::new(),
            stop,
            settled: false,
            stop_members: None,
            recovered_to: next_slot,
        });
        self.stats.became_leader += 1;
        let mut slot = c.from;
        while slot < next_slot {
            let value = merged.remove(&slot).map_or(Value::Noop, |e| e.value);
            self.start_slot(slot, value);
            slot = slot.next();
        }
        self.commit_dirty = true;
    }

    pub(super) fn start_slot(&mut self, slot: Slot, value: Value) {
        let Role::Leader(l) = &mut self.role else { return };
        let ballot = l.ballot;
        l.pending.insert(slot, Pending { value: value.clone(), votes: BTreeSet::new(), sent_at: self.now });
        let commit = self.first_unchosen;
        for peer in self.peers() {
            self.send(peer, Message::Accept { ballot, slot, value: value.clone(), commit });
        }
        if !self.cfg.eager_commit {
            // Every peer now has the commit point.
            self.commit_dirty = false;
        }
        self.send(self.cfg.id, Message::Accept { ballot, slot, value, commit });
    }

    /// An idle leader whose voters report entries beyond its own log (values
    /// accepted at older ballots that its Phase 1 majority did not hold, so
    /// never chosen) proposes a no-op over the next of them, one per round:
    /// a replica rejoining after a lost disk learns up to the end of the
    /// longest log, and would otherwise wait for client writes to cover it.
    pub(super) fn fill_stale_tail(&mut self) {
        let voters = self.voter_peers();
        let longest = voters.iter().filter_map(|p| self.peer_status.get(p)).map(|s| s.log_end).max();
        let Role::Leader(l) = &mut self.role else { return };
        if !l.pending.is_empty() || l.stop.is_some() || longest.is_none_or(|end| end <= l.next_slot) {
            return;
        }
        let slot = l.next_slot;
        l.next_slot = slot.next();
        self.start_slot(slot, Value::Noop);
    }

    pub(super) fn step_down(&mut self) {
        if matches!(self.role, Role::Leader(_)) {
            self.fail_leader_reads();
        }
        self.lease_until = 0;
        if !matches!(self.role, Role::Follower) {
            self.role = Role::Follower;
            self.stats.step_downs += 1;
            self.election.happy = false;
        }
    }

    pub(super) fn role_ballot(&self) -> Option<Ballot> {
        match &self.role {
            Role::Follower => None,
            Role::Candidate(c) => Some(c.ballot),
            Role::Leader(l) => Some(l.ballot),
        }
    }
    /// Whether the planted bug lets this leader change the membership again,
    /// and propose batches, while a stop sign of its own is in flight.
    #[cfg(feature = "planted-bugs")]
    pub(super) fn passes_stop_signs(&self) -> bool {
        self.cfg.bugs.second_change_in_flight
    }

    #[cfg(not(feature = "planted-bugs"))]
    pub(super) fn passes_stop_signs(&self) -> bool {
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
