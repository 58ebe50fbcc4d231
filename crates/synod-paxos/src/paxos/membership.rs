//! Membership changes: a stop sign ends one configuration's log, the next configuration starts after it.
//!
//! The protocol (docs/PROTOCOL.md, "Membership changes"; decision 0008):
//!
//! * A change is a `Value::Reconfig(next)` that the leader of configuration
//!   `e` proposes like a batch, with `next.epoch == e + 1`: a *stop sign*.
//!   The leader proposes it only once a slot of its own ballot has been
//!   chosen (the rule Raft's author added in 2015), only one at a time, and
//!   nothing after it: [`crate::Paxos::propose`] answers `Stopping` until the
//!   next configuration has a leader.
//! * A candidate whose Phase 1 finds a stop sign re-proposes it and nothing
//!   after it (`proposer.rs`). So once a stop sign is chosen in slot `k`, no
//!   slot after `k` is chosen in configuration `e`: any later ballot of `e`
//!   finds it, and any earlier one was seen by the stop sign's own leader,
//!   who placed it after everything it found.
//! * Every replica switches configuration when it learns the stop sign is
//!   chosen, in slot order (`learner.rs`, `advance`): from then on majorities
//!   are counted among the new voters, and its candidacies use ballots of
//!   epoch `e + 1`, which outrank every ballot of `e`. A value accepted in
//!   `e` for a slot after `k` was never chosen; a leader of `e + 1` may find
//!   it in Phase 1 and propose it again at its own ballot, which is safe for
//!   an unchosen value.
//! * Votes, promises and heartbeat replies count only from the voters of the
//!   configuration in force. Learners accept and store what the leader sends
//!   but answer nothing to quorums and never stand. A replica outside the
//!   configuration (a removed one, or one waiting to be added) votes for
//!   nothing, but its peers still answer it, so it catches up and learns
//!   where it stands.
//! * A leader that is a voter of the next configuration stands in it at once
//!   (one round trip); one that is not hands over to the most caught-up
//!   voter of it (`Message::Handover`) and stops.

use synod_wire::{ChangeError, MemberChange, Membership, Message, NodeId, Slot, Value};

use super::{Paxos, Role};
use crate::action::Action;

/// Ticks a removed replica keeps answering its peers at most, waiting for
/// a majority of the new configuration's voters to know it (60 s at the runtime's 10 ms tick).
pub const RETIRE_TICKS: u64 = 6000;

/// Ticks a removed replica that knows a later configuration exists tries to
/// learn it (it may be added again) before it retires as any removed one does.
pub const LATER_EPOCH_TICKS: u64 = 500;

/// Why a membership change was not proposed. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigError {
    /// This replica is not the leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The replica this one believes leads, if any.
        leader: Option<NodeId>,
    },
    /// Another change is proposed and not yet chosen.
    #[error("another membership change is in flight; retry once it is done")]
    InFlight,
    /// No slot of this leader's ballot is chosen yet; it proposed one. Retry shortly.
    #[error("the leader has not committed a slot of its own ballot yet; retry shortly")]
    NotSettled,
    /// The change itself is wrong (an id already a member, the last voter, ...).
    #[error("{0}")]
    Invalid(#[from] ChangeError),
    /// Too few voters of the new configuration are up and caught up to make
    /// a majority of it: the cluster would stop.
    #[error(
        "the new configuration needs {need} voters up and caught up, only {live} are ({voters:?}); \
         bring members back, or add a learner and promote it once it has caught up"
    )]
    NoLiveQuorum {
        /// A majority of the new configuration's voters.
        need: usize,
        /// How many of them are up and caught up.
        live: usize,
        /// Those voters.
        voters: Vec<NodeId>,
    },
}

impl Paxos {
    /// The configuration in force (the newest this replica knows chosen).
    pub fn membership(&self) -> &Membership {
        &self.members
    }

    /// The first slot of the configuration in force.
    pub fn config_start(&self) -> Slot {
        self.config_start
    }

    /// Whether this replica was removed from the cluster: it takes no part any more.
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// Whether this replica votes in the configuration in force.
    pub fn is_voter(&self) -> bool {
        !self.removed && self.members.is_voter(self.cfg.id)
    }

    /// Whether this leader proposed a stop sign that is not yet chosen.
    pub fn change_in_flight(&self) -> bool {
        matches!(&self.role, Role::Leader(l) if l.stop.is_some())
    }

    /// Every slot below this one is chosen and known to `peer`, as it last
    /// reported (this replica's own position for itself).
    pub fn caught_up(&self, peer: NodeId) -> Option<Slot> {
        if peer == self.cfg.id {
            return Some(self.first_unchosen);
        }
        self.peer_status.get(&peer).map(|s| s.first_unchosen)
    }

    /// Proposes `change` to the configuration in force, as a stop sign in
    /// the next free slot. Only a settled leader with no other change in
    /// flight proposes; the change must be valid and leave a majority of the
    /// new voters up and caught up (a new member counts only once it has
    /// caught up as a learner). The new configuration is in force once
    /// [`Action::Reconfigured`] comes out.
    pub fn propose_reconfig(&mut self, change: &MemberChange) -> Result<Slot, ReconfigError> {
        let leader = self.leader();
        let passes = self.passes_stop_signs();
        let Role::Leader(l) = &mut self.role else { return Err(ReconfigError::NotLeader { leader }) };
        if l.stop.is_some() && !passes {
            return Err(ReconfigError::InFlight);
        }
        let next = l.stop_members.as_ref().unwrap_or(&self.members).changed(change)?;
        if !l.settled {
            if l.pending.is_empty() {
                // Nothing of ours is in flight to be chosen: propose a no-op.
                let slot = l.next_slot;
                l.next_slot = slot.next();
                self.start_slot(slot, Value::Noop);
                self.finish();
            }
            return Err(ReconfigError::NotSettled);
        }
        let voters: Vec<NodeId> = next.voters().filter(|&v| self.live_and_caught_up(v)).collect();
        if voters.len() < next.majority() {
            return Err(ReconfigError::NoLiveQuorum { need: next.majority(), live: voters.len(), voters });
        }
        let Role::Leader(l) = &mut self.role else { unreachable!("checked above") };
        let slot = l.next_slot;
        l.next_slot = slot.next();
        l.stop = Some(slot);
        l.stop_members = Some(next.clone());
        self.stats.reconfigs_proposed += 1;
        self.start_slot(slot, Value::Reconfig(next));
        self.finish();
        self.debug_assert_invariants();
        Ok(slot)
    }

    /// Whether `node` is this replica, or answered within the last two
    /// heartbeat rounds, knows nearly every slot this replica knows, and may
    /// vote (it is not rejoining after starting on an empty disk).
    fn live_and_caught_up(&self, node: NodeId) -> bool {
        if node == self.cfg.id {
            return true;
        }
        let recent = self.heard_at.get(&node).is_some_and(|&t| t + 2 * self.cfg.heartbeat_ticks >= self.now);
        // A replica still rejoining (an empty disk) votes for nothing yet: it does not count.
        let near = self.peer_status.get(&node).is_some_and(|s| {
            !s.rejoining && s.first_unchosen.0 + self.cfg.catch_up_batch as u64 >= self.first_unchosen.0
        });
        recent && near
    }

    /// Every replica this one talks to: the members of the configuration in
    /// force but itself (all of them, if it is not one).
    pub(super) fn peers(&self) -> Vec<NodeId> {
        self.members.ids().filter(|&m| m != self.cfg.id).collect()
    }

    /// The voters of the configuration in force, but itself.
    pub(super) fn voter_peers(&self) -> Vec<NodeId> {
        self.members.voters().filter(|&m| m != self.cfg.id).collect()
    }

    /// How many voters of the configuration in force make a majority.
    pub(super) fn majority(&self) -> usize {
        self.members.majority()
    }

    /// Whether `node`'s votes and promises count in the configuration in force.
    pub(super) fn counts(&self, node: NodeId) -> bool {
        self.members.is_voter(node)
    }

    /// The stop sign of the configuration in force was chosen in `start - 1`
    /// (or a snapshot at `start` holds `next`): `next` governs every slot
    /// from `start` on.
    pub(super) fn adopt(&mut self, next: Membership, start: Slot) {
        if next.epoch <= self.members.epoch {
            return;
        }
        let me = self.cfg.id;
        let was_member = self.members.contains(me);
        let was_leader = matches!(self.role, Role::Leader(_));
        self.members = next;
        self.config_start = start;
        // Record at once that the stop sign is chosen: a removed replica
        // retires only once every new member holds this durably (`Status::epoch`).
        if self.first_unchosen > self.last_commit_mark {
            self.last_commit_mark = self.first_unchosen;
            self.pending_records.push(synod_wire::LogRecord::Commit { upto: self.first_unchosen });
        }
        self.epoch_pending = Some((self.members.epoch, self.last_token + 1));
        self.stats.reconfigs_adopted += 1;
        // The old configuration's ballot leads nothing any more.
        self.step_down();
        self.election.replies.clear();
        self.election.happy = false;
        self.election.may_stand = false;
        self.election.unhappy_since = Some(self.now);
        self.election.timeout = self.rng.range(self.cfg.election_ticks.0, self.cfg.election_ticks.1);
        if self.members.contains(me) {
            self.member_seen = true;
            // Added (again): a replica catching up through history may pass
            // a configuration that removed an earlier incarnation of it.
            self.removed = false;
            self.removed_at = None;
            if self.first_unchosen >= self.known_commit {
                self.joined = true;
            }
        } else if was_member && self.joined {
            self.removed = true;
            self.removed_at = Some(self.now);
        }
        if self.is_voter() {
            if was_leader || self.handover.is_some_and(|e| e <= self.members.epoch) {
                self.handover = None;
                self.stand();
            }
        } else if was_leader {
            self.hand_over();
        }
        let epoch = self.members.epoch;
        self.rejoin_reconsider();
        self.actions.push_back(Action::Reconfigured {
            membership: self.members.clone(),
            from: start,
            removed: self.removed,
        });
        debug_assert_eq!(epoch, self.members.epoch);
    }

    /// A member of the configuration in force that has caught up has joined
    /// (`joined`): from now on a configuration without it removes it. Not
    /// only when it adopts a configuration while caught up: a replica that
    /// joins learns the configurations that add it while it is still
    /// catching up, and may see no other until the one that removes it
    /// (chaos seed 2412: replica 12, added and promoted while it caught up,
    /// then removed, was never `removed` and never retired).
    pub(super) fn note_joined(&mut self) {
        if !self.joined
            && self.rejoin.is_none()
            && self.members.contains(self.cfg.id)
            && self.first_unchosen >= self.known_commit
        {
            self.joined = true;
        }
    }

    /// A replica that was a member (in this incarnation) but never caught
    /// up while one, so never `joined`, and whose configuration in force no
    /// longer names it, is removed once it has caught up and no replica it
    /// hears knows a newer configuration: the one without it is the
    /// newest, not a step of history it passes on its way to one that adds
    /// it again. (Chaos seed 2607: replica 56, added, promoted and removed
    /// before it had caught up as a member, never retired.) A replica that
    /// never saw a configuration with itself (a snapshot took it past the
    /// one that added it) cannot tell this from waiting to be added: it
    /// waits, and `member list` shows it is not a member.
    pub(super) fn note_removed(&mut self) {
        let me = self.cfg.id;
        if self.removed
            || self.joined
            || !self.member_seen
            || self.rejoin.is_some()
            || self.members.contains(me)
            || self.first_unchosen < self.known_commit
        {
            return;
        }
        if self.election.highest_seen.epoch > self.members.epoch || self.newer_epoch_heard() {
            return;
        }
        self.removed = true;
        // It lingers [`LATER_EPOCH_TICKS`] more than a replica removed while
        // it took part: a replica whose id was used before, started to be
        // added again, may reach the end of the log before the change that
        // adds it is chosen (`adopt` clears `removed` when it is).
        self.removed_at = Some(self.now + LATER_EPOCH_TICKS);
        // The driver hears it as it hears any removal: the configuration in
        // force again, now with `removed` (its logs and status say so).
        self.actions.push_back(Action::Reconfigured {
            membership: self.members.clone(),
            from: self.config_start,
            removed: true,
        });
    }

    /// A removed replica retires once a majority of the voters of the
    /// configuration that removed it reported holding it durably
    /// (`Status::epoch`; or after [`RETIRE_TICKS`]): until then it answers
    /// Pings and catch-up, since it may be the only one that knows its stop
    /// sign was chosen. A majority of the new voters is enough: they can
    /// elect a leader of the new configuration, and every other member
    /// learns it from them. Waiting for every member would keep it running
    /// for [`RETIRE_TICKS`] whenever one of them is down.
    pub(super) fn check_retire(&mut self) {
        let Some(since) = self.removed_at else { return };
        if self.now < since + 4 * self.cfg.heartbeat_ticks
            || (self.election.highest_seen.epoch > self.members.epoch && self.now < since + LATER_EPOCH_TICKS)
        {
            // It was just removed, so it lingers a few rounds first; or a
            // later configuration is known to exist, which may add this
            // replica again, so it tries for a while to learn it. Not for
            // ever: no longer a member, it gets no more accepts and falls
            // behind, and where peers compact their logs often it may only
            // ever catch up to their newest snapshot, never to the slot that
            // holds the later configuration. (A replica that joins is not
            // removed by the configurations it passes catching up: `joined`.)
            return;
        }
        let epoch = self.members.epoch;
        let holding = self
            .members
            .voters()
            .filter(|m| self.peer_status.get(m).is_some_and(|s| s.epoch >= epoch))
            .count();
        let known = holding >= self.members.majority();
        if known || self.now >= since + RETIRE_TICKS {
            self.removed_at = None;
            self.actions.push_back(Action::Retire);
        }
    }

    /// A leader leaving the configuration asks the most caught-up voter of the
    /// new one to stand now, rather than let the cluster wait out an election timeout.
    fn hand_over(&mut self) {
        let epoch = self.members.epoch;
        let target = self
            .voter_peers()
            .into_iter()
            .max_by_key(|p| (self.peer_status.get(p).map(|s| s.first_unchosen), std::cmp::Reverse(*p)));
        if let Some(to) = target {
            self.stats.handovers += 1;
            self.send(to, Message::Handover { epoch });
        }
    }

    pub(super) fn on_handover(&mut self, epoch: u64) {
        if epoch > self.members.epoch {
            // Not there yet: stand once the stop sign is learned.
            self.handover = Some(epoch);
        } else if epoch == self.members.epoch && self.is_voter() && matches!(self.role, Role::Follower) {
            self.stand();
        }
    }
}
