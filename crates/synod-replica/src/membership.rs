//! Membership changes at the replica layer: the one change request in flight, its answer, and the members view.

use std::fmt::Debug;
use std::hash::Hash;

use synod_paxos::ReconfigError;
use synod_wire::{ChangeRequest, MemberChange, MemberInfo, MembersView, Outcome};

use crate::replica::{Now, ReplicaCore};

/// How many ticks a change waits for its leader to settle (commit a slot of
/// its own ballot) before it is refused.
pub const SETTLE_TICKS: u64 = 500;

/// The change request this leader is working on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingChange<C> {
    pub(crate) conn: C,
    pub(crate) id: u64,
    pub(crate) change: MemberChange,
    /// Proposed as a stop sign (`true`), or waiting for the leader to settle.
    pub(crate) proposed: bool,
    /// The tick it arrived at.
    pub(crate) since: u64,
}

impl<C: Copy + Eq + Ord + Hash + Debug> ReplicaCore<C> {
    /// A membership change from a client on `conn`. The leader proposes it
    /// as a stop sign and answers [`Outcome::Members`] once the new
    /// configuration is chosen; a change it cannot make is answered
    /// [`Outcome::Refused`] with the reason (another change in flight, an id
    /// already a member, the last voter, too few voters of the new
    /// configuration up); any other replica answers `Redirect`.
    pub fn handle_change(&mut self, now: Now, conn: C, request: ChangeRequest) {
        if !self.paxos.is_leader() {
            let leader = self.paxos.leader();
            self.reply(conn, request.id, Outcome::Redirect { leader });
            return;
        }
        if self.change.is_some() && !self.takes_concurrent_changes() {
            let why = ReconfigError::InFlight.to_string();
            self.reply(conn, request.id, Outcome::Refused(why));
            return;
        }
        self.change = Some(PendingChange {
            conn,
            id: request.id,
            change: request.change,
            proposed: false,
            since: self.paxos.now(),
        });
        self.try_change();
        self.finish(now);
    }

    #[cfg(feature = "planted-bugs")]
    fn takes_concurrent_changes(&self) -> bool {
        self.bugs.concurrent_changes
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn takes_concurrent_changes(&self) -> bool {
        false
    }

    /// Proposes the waiting change, or answers it if it cannot be made.
    pub(crate) fn try_change(&mut self) {
        let Some(p) = self.change.clone().filter(|p| !p.proposed) else { return };
        match self.paxos.propose_reconfig(&p.change) {
            Ok(_) => {
                self.stats.changes_proposed += 1;
                self.change = Some(PendingChange { proposed: true, ..p });
            }
            Err(ReconfigError::NotSettled) if self.paxos.now() < p.since + SETTLE_TICKS => {}
            Err(ReconfigError::NotLeader { leader }) => {
                self.change = None;
                self.reply(p.conn, p.id, Outcome::Redirect { leader });
            }
            Err(e) => {
                self.change = None;
                self.stats.changes_refused += 1;
                self.reply(p.conn, p.id, Outcome::Refused(e.to_string()));
            }
        }
    }

    /// A new configuration took force: the change that made it is answered.
    pub(crate) fn change_done(&mut self) {
        if let Some(p) = self.change.take() {
            let view = self.members_view();
            self.reply(p.conn, p.id, Outcome::Members(view));
        }
    }

    /// This replica stopped leading: a change it was working on is answered
    /// `Redirect` (its stop sign may still be chosen; the new leader says).
    pub(crate) fn change_abandoned(&mut self) {
        if self.paxos.is_leader() {
            return;
        }
        if let Some(p) = self.change.take() {
            let leader = self.paxos.leader();
            self.reply(p.conn, p.id, Outcome::Redirect { leader });
        }
    }

    /// The configuration as this replica knows it, with how far each member
    /// has caught up (as last reported to it).
    pub fn members_view(&self) -> MembersView {
        let m = self.paxos.membership();
        MembersView {
            from: self.paxos.id(),
            epoch: m.epoch,
            members: m
                .members
                .iter()
                .map(|member| MemberInfo {
                    id: member.id,
                    addr: member.addr.clone(),
                    role: member.role,
                    caught_up: self.paxos.caught_up(member.id).unwrap_or_default(),
                })
                .collect(),
            leader: self.paxos.leader(),
            change_in_flight: self.paxos.change_in_flight() || self.change.is_some(),
        }
    }
}
