//! The learner: marks slots chosen, delivers them in order as commits, and catches up from peers.

use synod_wire::{Ballot, ChosenEntry, LogRecord, Message, NodeId, Slot, Status, Value};

use super::{Entry, Paxos, Role};
use crate::action::Action;

/// The most bytes of values one catch-up reply carries.
const CATCH_UP_BYTES: usize = 4 << 20;

impl Paxos {
    pub(super) fn on_catch_up(&mut self, from: NodeId, lo: Slot, to: Slot) {
        if lo < self.base {
            if self.snapshot > lo {
                self.want_snapshot(from);
            }
            return;
        }
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
                Value::Reconfig(m) => 64 * m.members.len() + 16,
            };
            entries.push(ChosenEntry { slot, value: e.value.clone() });
            expect = slot.next();
        }
        if !entries.is_empty() {
            self.send(from, Message::CatchUpReply { entries });
        }
    }

    pub(super) fn on_catch_up_reply(&mut self, from: NodeId, entries: Vec<ChosenEntry>) {
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
    /// Marks `slot` chosen when its entry is known to hold the chosen value
    /// (it was accepted at the ballot of a leader that says it is chosen).
    pub(super) fn mark_chosen(&mut self, slot: Slot) {
        if let Some(e) = self.log.get_mut(&slot) {
            if !e.chosen {
                e.chosen = true;
                self.stats.chosen += 1;
                self.advance();
            }
        }
    }

    /// Records that `slot` holds `value`, chosen.
    pub(super) fn choose(&mut self, slot: Slot, value: Value) {
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
    pub(super) fn learn_commit(&mut self, ballot: Ballot, commit: Slot) {
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

    pub(super) fn advance(&mut self) {
        while let Some(e) = self.log.get(&self.first_unchosen).filter(|e| e.chosen) {
            let stop = match &e.value {
                Value::Reconfig(next) if next.epoch > self.members.epoch => Some(next.clone()),
                _ => None,
            };
            self.first_unchosen = self.first_unchosen.next();
            if let Some(next) = stop {
                // A stop sign is chosen: the next configuration starts after
                // it (and the driver hears of it after the stop sign's commit).
                self.deliver();
                self.adopt(next, self.first_unchosen);
            }
        }
        if self.first_unchosen > self.known_commit {
            self.known_commit = self.first_unchosen;
        }
        self.deliver();
        self.check_rejoined();
    }

    pub(super) fn deliver(&mut self) {
        while self.delivered < self.first_unchosen {
            let slot = self.delivered;
            let value = self.log[&slot].value.clone();
            self.actions.push_back(Action::Commit { slot, value });
            self.delivered = slot.next();
        }
    }

    /// Asks a peer that has them for the chosen slots this replica lacks.
    pub(super) fn request_catch_up(&mut self, prefer: Option<NodeId>) {
        if self.first_unchosen >= self.known_commit {
            self.last_catch_up = None;
            return;
        }
        let me = self.cfg.id;
        let ahead = |s: &Status| s.first_unchosen > self.first_unchosen;
        // Only peers heard lately: one that stopped (a retired replica, say)
        // keeps its last status here and would be asked forever.
        let recent =
            |n: &NodeId| self.heard_at.get(n).is_some_and(|&t| t + 2 * self.cfg.heartbeat_ticks >= self.now);
        let peer = prefer
            .or_else(|| {
                self.peer_status
                    .iter()
                    .filter(|(n, s)| ahead(s) && recent(n))
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
}
