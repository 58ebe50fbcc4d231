//! The acceptor: answers Prepare with a promise and Accept with a vote, or rejects a lower ballot.

use synod_wire::{Ballot, LogRecord, Message, NodeId, PromiseEntry, Slot, Value};

use super::{Entry, Paxos};

impl Paxos {
    pub(super) fn on_prepare(&mut self, from: NodeId, ballot: Ballot, first_unchosen: Slot) {
        self.max_round = self.max_round.max(ballot.round);
        if self.rejoin.is_some() || !self.is_voter() {
            // A replica that lost its disk does not vote yet (see
            // snapshot.rs), nor does a learner or non-member (membership.rs).
            self.observe_leader(ballot);
            return;
        }
        if ballot < self.promised {
            self.reject(from, ballot);
            return;
        }
        if from != self.cfg.id && self.lease_refuses(ballot) {
            // It granted the current leader a lease (`Config::with_leases`):
            // no promise to another candidate until it runs out.
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
    pub(super) fn on_accept(&mut self, from: NodeId, ballot: Ballot, slot: Slot, value: Value, commit: Slot) {
        self.max_round = self.max_round.max(ballot.round);
        let votes = self.is_voter();
        if self.rejoin.is_some() || (!votes && !self.members.contains(self.cfg.id)) {
            // No vote yet; the commit point is a fact, learned through catch-up.
            self.observe_leader(ballot);
            self.learn_commit(ballot, commit);
            return;
        }
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
                // A learner keeps the value, to learn it chosen from the
                // commit point, but its vote would not count: it sends none.
                if votes {
                    self.defer(from, Message::Accepted { ballot, slot });
                }
            }
        }
        self.learn_commit(ballot, commit);
    }
    fn reject(&mut self, to: NodeId, ballot: Ballot) {
        self.stats.rejects_sent += 1;
        let promised = self.promised;
        self.send(to, Message::Reject { ballot, promised });
    }
}
