//! Output plumbing: sending, holding replies until their records are durable, and ending every public call.

use synod_wire::{Message, NodeId};

use super::{Paxos, Role};
use crate::action::{Action, PersistToken};

/// What the last `Action::LeaderChanged` said, so that only changes are announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Announced {
    /// The replica announced as leader ([`Paxos::leader`]), if any.
    pub(super) leader: Option<NodeId>,
    /// Whether that is this replica, leading after Phase 1 ([`Paxos::is_leader`]).
    pub(super) is_self: bool,
}

impl Paxos {
    pub(super) fn send(&mut self, to: NodeId, msg: Message) {
        if to == self.cfg.id {
            self.local.push_back(msg);
        } else {
            self.stats.messages_out += 1;
            self.actions.push_back(Action::Send { to, msg });
        }
    }

    /// Sends `msg` once everything recorded so far is durable.
    pub(super) fn defer(&mut self, to: NodeId, msg: Message) {
        let need = if self.pending_records.is_empty() { self.last_token } else { self.last_token + 1 };
        if need <= self.durable_token || self.replies_early() {
            self.send(to, msg);
        } else {
            self.deferred.push_back((need, to, msg));
        }
    }

    /// Sends the commit point to every peer if it moved since they were last told.
    pub(super) fn send_commit(&mut self) {
        if self.commit_dirty {
            self.commit_dirty = false;
            if let Role::Leader(l) = &self.role {
                let (ballot, commit) = (l.ballot, self.first_unchosen);
                for peer in self.peers() {
                    self.send(peer, Message::Commit { ballot, commit });
                }
            }
        }
    }

    /// Ends every public call: handles messages to self, flushes records as
    /// one `Persist`, sends a pending commit point (when eager), announces leader changes.
    pub(super) fn finish(&mut self) {
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
        let now = Announced { leader: self.leader(), is_self: self.is_leader() };
        if now != self.announced {
            self.announced = now;
            self.stats.leader_changes += 1;
            self.actions.push_back(Action::LeaderChanged {
                leader: now.leader,
                ballot: self.election.highest_seen,
                is_self: now.is_self,
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
}
