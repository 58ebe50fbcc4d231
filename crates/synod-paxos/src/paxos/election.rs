//! Leader election: heartbeat rounds of Ping and Pong, happiness, standing, and the periodic duties of a round.

use std::collections::BTreeMap;

use synod_wire::{Ballot, LogRecord, Message, NodeId, Slot, Status};

use super::{Entry, Paxos, Role};

/// Ballot leader election with quorum-connectivity (after OmniPaxos's BLE).
///
/// Every heartbeat round a replica pings all peers and collects their
/// [`Status`]. It is quorum-connected when a majority (itself included)
/// answered. It is *happy* when it leads and is quorum-connected, or when it
/// heard the leader this round and the leader is happy. An unhappy,
/// quorum-connected replica that hears no happy peer for a randomized
/// timeout stands with a ballot above every ballot it has seen. Everyone
/// takes the owner of the highest ballot they have seen for the leader.
#[derive(Debug, Clone, Hash)]
pub(super) struct Election {
    /// The current heartbeat round, carried by Pings and echoed by Pongs.
    pub(super) round: u64,
    /// The tick at which the current round ends (`end_round`).
    pub(super) round_ends: u64,
    /// The statuses in this round's Pongs, by sender.
    pub(super) replies: BTreeMap<NodeId, Status>,
    /// The highest ballot seen: in a Prepare, Accept, Commit or Reject, in a
    /// peer's [`Status`], or its own when it stood. Its owner is the replica
    /// this one takes for the leader ([`Paxos::leader`]), and it is the
    /// leader ballot this replica reports in its own `Status`.
    pub(super) highest_seen: Ballot,
    /// At the last round's end: Pongs from a majority, itself included.
    pub(super) quorum_connected: bool,
    /// At the last round's end (or on standing): content with the leader.
    pub(super) happy: bool,
    /// The tick since which it has been unhappy, if it is.
    pub(super) unhappy_since: Option<u64>,
    /// The election timeout, drawn afresh whenever it becomes unhappy.
    pub(super) timeout: u64,
    /// Set at a round's end when this replica may stand once its timeout
    /// expires: it hears a majority and nobody it hears is happy.
    pub(super) may_stand: bool,
}
impl Paxos {
    pub(super) fn status(&self) -> Status {
        Status {
            leader: self.election.highest_seen,
            quorum_connected: self.election.quorum_connected,
            happy: self.election.happy,
            first_unchosen: self.first_unchosen,
            log_end: self.log_end(),
            epoch: self.epoch_durable,
            rejoining: self.rejoin.is_some(),
        }
    }

    /// One past the highest slot this replica holds a value for that may be
    /// or become chosen ([`Status::log_end`]), at least `first_unchosen`.
    ///
    /// A value accepted at a ballot of an older configuration for a slot at
    /// or after the one the configuration in force starts from lies past
    /// that older configuration's stop sign: it was never chosen and never
    /// will be at that ballot (membership.rs). It is left out: a replica
    /// rejoining after a lost disk learns up to the longest log among the
    /// voters, and waiting for such a slot could wait for ever when the
    /// configuration needs the rejoining replica's vote to choose anything
    /// there (simulator seed 7497502: configuration [n1, n3] from #6, n3
    /// holding a value of epoch 0 at #6, n1 rejoining up to #7).
    pub(super) fn log_end(&self) -> Slot {
        let epoch = self.members.epoch;
        let counts = |(slot, entry): &(&Slot, &Entry)| {
            entry.chosen || **slot < self.config_start || entry.ballot.epoch >= epoch
        };
        self.log
            .iter()
            .rev()
            .find(counts)
            .map_or(self.first_unchosen, |(s, _)| s.next().max(self.first_unchosen))
    }

    pub(super) fn observe_status(&mut self, from: NodeId, status: Status) {
        self.peer_status.insert(from, status);
        self.heard_at.insert(from, self.now);
        self.rejoin_heard();
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
    pub(super) fn observe_leader(&mut self, ballot: Ballot) {
        self.max_round = self.max_round.max(ballot.round);
        if ballot > self.election.highest_seen {
            self.election.highest_seen = ballot;
            if self.role_ballot().is_some_and(|b| b < ballot) {
                self.step_down();
            }
        }
    }

    pub(super) fn end_round(&mut self) {
        let majority = self.majority();
        let me = self.cfg.id;
        let role_ballot = self.role_ballot();
        let members = &self.members;
        let e = &mut self.election;
        let voters_heard = e.replies.keys().filter(|&&n| members.is_voter(n)).count()
            + usize::from(members.is_voter(me) && !self.removed);
        let qc = voters_heard >= majority;
        e.quorum_connected = qc;
        let leads = role_ballot.is_some_and(|b| b == e.highest_seen);
        e.happy = qc
            && if e.highest_seen.node == me {
                leads
            } else {
                e.replies.get(&e.highest_seen.node).is_some_and(|s| s.happy && s.leader == e.highest_seen)
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
        self.lease_acks.clear();
        self.periodic();
        let status = self.status();
        let round = self.election.round;
        for peer in self.peers() {
            self.send(peer, Message::Ping { round, status });
        }
    }

    /// Once per heartbeat round: retransmit what went unanswered, send the
    /// commit point, catch up, and record the commit point durably.
    fn periodic(&mut self) {
        let hb = self.cfg.heartbeat_ticks;
        let now = self.now;
        let peers: Vec<NodeId> = self.voter_peers();
        let all_peers: Vec<NodeId> = self.peers();
        match &mut self.role {
            Role::Follower => {}
            Role::Candidate(c) => {
                // Slots learned since standing are chosen and known here: ask
                // promises from the first unknown one only (a peer that has
                // compacted below it would refuse the older request forever).
                c.from = c.from.max(self.first_unchosen);
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
                for &peer in &all_peers {
                    self.send(peer, Message::Commit { ballot, commit });
                }
                self.commit_dirty = false;
                self.fill_stale_tail();
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
        self.read_periodic();
    }
}
