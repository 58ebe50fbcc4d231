//! Snapshots: compacting the log behind one this replica took, installing one a peer sent,
//! and rejoining after the disk was lost.
//!
//! A replica that starts with nothing on disk ([`Paxos::rejoin`]) may have
//! promised and accepted things before it lost them: a new disk for an old
//! identity. Voting again at once could break agreement (a value it helped
//! choose is no longer reported in its promises; a ballot it promised no
//! longer holds back lower ones). So it does not vote (no promise, no
//! accept, no candidacy) until it has heard the status of every other
//! replica, and then:
//!
//! * if none of them has any history, the cluster is new and it votes at
//!   once (a cluster's first start, which therefore needs every replica up
//!   once: an empty replica cannot tell a new cluster from a lost disk
//!   unless it hears everyone);
//! * otherwise it promises the highest ballot any of them has seen (so
//!   nothing it may have promised before is undercut), and votes once it has
//!   learned every slot up to the end of the longest log among them (so
//!   every value it may have accepted before is known to it as chosen, or
//!   was never chosen with its vote). "Them" are the other voters of the
//!   configuration in force, which must be the newest any replica it heard
//!   knows; when it adopts a new one it decides again (`rejoin_reconsider`,
//!   `rejoin_decide`).
//!
//! Hearing every other replica is what makes the promise safe: the ballot
//! it forgot promising is known to its candidate. A replica with a lost disk
//! therefore rejoins only while all its peers are up.

use synod_wire::{Ballot, LogRecord, Membership, NodeId, Slot, Status};

use super::{Paxos, Role};
use crate::action::Action;

/// What a replica that lost its disk has learned of its peers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct Rejoin {
    /// Once every peer was heard and the cluster has history: the slot this
    /// replica must have learned up to before it votes.
    pub(super) learn_to: Option<Slot>,
    /// The rejoin is over once the persist with this token, which holds
    /// `Rejoin { done: true }`, is durable: until then a crash would bring
    /// the replica back rejoining, so it must not vote yet either.
    pub(super) done_at: Option<u64>,
}

impl Paxos {
    /// Whether this replica lost its disk and may not vote yet ([`Paxos::rejoin`]).
    pub fn is_rejoining(&self) -> bool {
        self.rejoin.is_some()
    }

    /// The highest snapshot recorded: every slot below it is in a snapshot on this replica's disk.
    pub fn snapshot_upto(&self) -> Slot {
        self.snapshot
    }

    /// The lowest slot still held in memory: catch-up requests below it are answered with a snapshot.
    pub fn base(&self) -> Slot {
        self.base
    }

    /// The driver wrote a snapshot covering every slot below `upto` (durably:
    /// file synced, renamed, directory synced). The core logs
    /// `LogRecord::Snapshot { upto }` and forgets the chosen entries below
    /// `upto - retain` (never beyond what it delivered): those are answered
    /// from the snapshot from now on. Once that record is durable, the
    /// driver may drop the log's segments below the same point.
    pub fn snapshot_taken(&mut self, upto: Slot, retain: u64) {
        if upto > self.snapshot && upto <= self.delivered {
            self.snapshot = upto;
            // The promise may live only in `Accept` records the truncation
            // that follows drops; a `Promise` record of it is carried over.
            if self.promised > Ballot::ZERO {
                self.pending_records.push(LogRecord::Promise { ballot: self.promised });
            }
            self.pending_records.push(LogRecord::Snapshot { upto });
            self.compact_below(Slot(upto.0.saturating_sub(retain)));
        }
        self.finish();
        self.debug_assert_invariants();
    }

    /// The driver received, checked and stored a peer's snapshot covering
    /// every slot below `upto`, and restored its state machine from it (or
    /// will, before it applies anything this call commits). The core jumps
    /// to `upto`: entries below go, every slot below counts as delivered,
    /// and `LogRecord::Snapshot { upto }` is logged. A leader or candidate
    /// steps down first (someone chose slots it did not know of).
    /// `membership` is the configuration the snapshot holds (in force at
    /// `upto`); if it is newer than this replica's, it takes force.
    /// Returns false, changing nothing, if this replica already knows every slot below `upto`.
    pub fn install_snapshot(&mut self, upto: Slot, membership: Option<Membership>) -> bool {
        if upto <= self.first_unchosen {
            return false;
        }
        if !matches!(self.role, Role::Follower) {
            self.step_down();
        }
        self.stats.snapshots_installed += 1;
        self.log = self.log.split_off(&upto);
        self.base = upto;
        self.snapshot = self.snapshot.max(upto);
        self.first_unchosen = upto;
        self.delivered = upto;
        self.last_commit_mark = self.last_commit_mark.max(upto);
        self.known_commit = self.known_commit.max(upto);
        if self.promised > Ballot::ZERO {
            self.pending_records.push(LogRecord::Promise { ballot: self.promised });
        }
        self.pending_records.push(LogRecord::Snapshot { upto });
        if let Some(m) = membership {
            self.adopt(m, upto);
        }
        self.advance();
        self.check_rejoined();
        if self.first_unchosen < self.known_commit {
            self.request_catch_up(None);
        }
        self.finish();
        self.debug_assert_invariants();
        true
    }

    /// A peer asked for slots below `base`: those are only in the snapshot.
    pub(super) fn want_snapshot(&mut self, to: NodeId) {
        self.stats.snapshots_wanted += 1;
        self.actions.push_back(Action::SnapshotWanted { to });
    }

    /// A peer's status came in (`peer_status`, which holds every status heard
    /// since this incarnation started): while rejoining and undecided, decide
    /// once every voter was heard.
    pub(super) fn rejoin_heard(&mut self) {
        if self.rejoin.as_ref().is_some_and(|r| r.done_at.is_none() && r.learn_to.is_none()) {
            self.rejoin_decide();
        }
    }

    /// Whether a replica heard in this incarnation reports a configuration
    /// newer than the one in force here.
    pub(super) fn newer_epoch_heard(&self) -> bool {
        self.peer_status.values().any(|s| s.epoch > self.members.epoch)
    }

    /// The configuration changed while rejoining (a stop sign was learned):
    /// the decision is taken again, over the new configuration's voters.
    ///
    /// The slot to learn to may come down: the longest log it was set by may
    /// be a member's of the old configuration with entries past the stop
    /// sign, accepted there and so never chosen (membership.rs). Waiting to
    /// learn those slots could wait for ever when the new configuration
    /// needs this replica's vote to choose anything in them (simulator seed
    /// 4001812: configuration [n1, n2] after n3's removal, n1 rejoining to
    /// the end of n3's log, n2 unable to lead without n1). Safe: every slot
    /// of the old configuration this replica could have voted in is at or
    /// before the stop sign, which it has learned; a value of the new one
    /// chosen with its forgotten vote is held by another new voter, whose
    /// status the new decision waits for. It may go up too: a new voter's
    /// log may reach further than any old one's.
    pub(super) fn rejoin_reconsider(&mut self) {
        let Some(rejoin) = &mut self.rejoin else { return };
        if rejoin.done_at.is_some() {
            return;
        }
        rejoin.learn_to = None;
        self.rejoin_decide();
    }

    /// Decides how to rejoin once every other voter of the configuration in
    /// force was heard, and none of the replicas heard knows a newer one.
    ///
    /// A replica catching up passes old configurations, and the replicas
    /// that voted in them may be long gone, or may know nothing of what came
    /// after; it decides only on the newest configuration any replica it has
    /// heard reports, and only over its voters. It never ends its rejoin on
    /// a shortcut past an old configuration: not as the only voter of one
    /// (simulator seed 4220954: n2, rejoining, installed a snapshot at #12
    /// of a configuration where it was the only voter, ended its rejoin and
    /// led that configuration while the cluster was four changes further),
    /// and not as a new cluster past the first configuration.
    fn rejoin_decide(&mut self) {
        let me = self.cfg.id;
        if self.rejoin.is_none() {
            return;
        }
        let voters: Vec<NodeId> = self.members.voters().filter(|&v| v != me).collect();
        if voters.iter().any(|v| !self.peer_status.contains_key(v)) {
            return;
        }
        if self.newer_epoch_heard() {
            // Behind: it learns the newer configuration first (catching up
            // goes on, led by the statuses' `first_unchosen`), then decides.
            return;
        }
        if voters.is_empty() {
            // The only voter of the configuration it has reached. A replica
            // that starts as a cluster of one never rejoins (`Paxos::rejoin`),
            // and no change makes a configuration whose only voter is
            // rejoining (a rejoining replica does not count as live:
            // `live_and_caught_up`), so this is an old configuration it passes while
            // catching up, and nobody heard knows a newer one yet. It must
            // not lead it: its forgotten vote alone chose that
            // configuration's slots, the stop sign too, and a replica that
            // only lags may report nothing past them. It waits; catching up
            // goes on, and the next configuration brings other voters to
            // hear. (Were this the newest, its lost disk held the only copy
            // of every vote: it cannot rejoin safely, an operator's matter.)
            return;
        }
        let statuses: Vec<&Status> = voters.iter().filter_map(|v| self.peer_status.get(v)).collect();
        if statuses.iter().any(|s| s.epoch < self.members.epoch) {
            // A voter that has not (durably) taken this configuration yet
            // may report values past the old one's stop sign in its
            // `log_end`, never chosen; waiting to learn those could wait for
            // ever (election.rs, `log_end`). It takes this configuration
            // soon (it is a voter: it learns the stop sign like this
            // replica did), and its next status brings the decision back.
            return;
        }
        let pristine = |s: &&Status| s.leader == Ballot::ZERO && s.log_end == Slot(0);
        if self.members.epoch == 0 && statuses.iter().all(pristine) {
            // No replica has any history: the cluster is new.
            let token = self.last_token + 1;
            if let Some(rejoin) = &mut self.rejoin {
                rejoin.done_at = Some(token);
            }
            self.pending_records.push(LogRecord::Rejoin { done: true });
            return;
        }
        let ballot = statuses.iter().map(|s| s.leader).max().unwrap_or(Ballot::ZERO);
        let learn_to = statuses
            .iter()
            .map(|s| s.log_end.max(s.first_unchosen))
            .max()
            .unwrap_or(Slot(0))
            .max(self.config_start);
        if let Some(rejoin) = &mut self.rejoin {
            rejoin.learn_to = Some(learn_to);
        }
        self.max_round = self.max_round.max(ballot.round);
        if ballot > self.promised {
            self.promised = ballot;
            self.pending_records.push(LogRecord::Promise { ballot });
        }
        self.observe_leader(ballot);
        if self.known_commit < learn_to {
            self.known_commit = learn_to;
        }
        self.check_rejoined();
        if self.rejoin.is_some() && self.last_catch_up.is_none() {
            self.request_catch_up(None);
        }
    }

    /// Ends the rejoin once every slot it must know is learned.
    pub(super) fn check_rejoined(&mut self) {
        let token = self.last_token + 1;
        if let Some(rejoin @ Rejoin { learn_to: Some(_), done_at: None, .. }) = &mut self.rejoin {
            if rejoin.learn_to.is_some_and(|to| self.first_unchosen >= to) {
                rejoin.done_at = Some(token);
                self.pending_records.push(LogRecord::Rejoin { done: true });
            }
        }
    }

    /// Ends the rejoin once its `Rejoin { done: true }` record is durable.
    pub(super) fn rejoin_persisted(&mut self) {
        if self.rejoin.as_ref().and_then(|r| r.done_at).is_some_and(|t| t <= self.durable_token) {
            self.rejoin = None;
        }
    }
}
