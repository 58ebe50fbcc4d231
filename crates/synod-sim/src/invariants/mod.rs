//! The invariants of ARCHITECTURE.md ("Testing"), one module each, checked after every step of a run.
//!
//! The `Checker` holds what the whole run has seen (every commit on every
//! replica, every command clients issued, every answer they got) and each
//! invariant module decides one property from it.

mod agreement;
mod durability;
mod exactly_once;
mod liveness;
mod order;
mod reads;
mod validity;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use synod_wire::{ClientId, Command, LogRecord, NodeId, Outcome, ReadMode, Seq, Slot, Value};

pub(crate) use liveness::Convergence;

/// A broken invariant: which, when, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant: agreement, order, validity, durability, exactly-once,
    /// liveness, or recovery (a replica's log refused at restart).
    pub invariant: &'static str,
    /// The tick it was detected at.
    pub tick: u64,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated at tick {}: {}", self.invariant, self.tick, self.detail)
    }
}

/// Everything the run has seen that the invariants need.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    /// The first value any replica committed for each slot.
    chosen: BTreeMap<Slot, (NodeId, Value)>,
    /// The first applier digest any replica reached after each slot.
    digests: BTreeMap<Slot, (NodeId, u64)>,
    /// Every command a client sent.
    issued: BTreeSet<Command>,
    /// Every operation a client got an `Applied` answer for, with that answer.
    answers: BTreeMap<(ClientId, Seq), Vec<u8>>,
    /// Reads outside the log, checked against the chosen log at the end.
    reads: reads::Reads,
    pub(crate) violations: Vec<Violation>,
}

impl Checker {
    fn report(&mut self, invariant: &'static str, tick: u64, found: Option<String>) {
        if let Some(detail) = found {
            // One report per invariant is enough to fail a seed and keeps traces short.
            if !self.violations.iter().any(|v| v.invariant == invariant) {
                self.violations.push(Violation { invariant, tick, detail });
            }
        }
    }

    pub(crate) fn issued(&mut self, command: &Command) {
        self.issued.insert(command.clone());
    }

    /// A replica committed `value` in `slot` and its applier reached `digest`.
    pub(crate) fn committed(&mut self, tick: u64, node: NodeId, slot: Slot, value: &Value, digest: u64) {
        if !self.chosen.contains_key(&slot) {
            self.reads.chosen(slot, value);
        }
        let found = agreement::check(&mut self.chosen, node, slot, value);
        self.report("agreement", tick, found);
        let found = validity::check(&self.issued, slot, value);
        self.report("validity", tick, found);
        let found = order::check(&mut self.digests, node, slot, digest);
        self.report("order", tick, found);
    }

    /// A replica's state machine applied operations more than once.
    pub(crate) fn machine_duplicates(&mut self, tick: u64, node: NodeId, duplicates: &[u64]) {
        let found = exactly_once::check_applied_once(node, duplicates);
        self.report("exactly-once", tick, found);
    }

    /// A client got `outcome` for `(client, seq)`.
    pub(crate) fn answered(&mut self, tick: u64, client: ClientId, seq: Seq, outcome: &Outcome) {
        if matches!(outcome, Outcome::Applied { .. }) {
            self.reads.acknowledged((client, seq));
        }
        let found = exactly_once::check_same_answer(&mut self.answers, client, seq, outcome);
        self.report("exactly-once", tick, found);
    }

    /// An answer no correct run produces (an expired session, a stale request).
    pub(crate) fn unexpected(&mut self, tick: u64, detail: String) {
        self.report("exactly-once", tick, Some(detail));
    }

    /// Every write acknowledged so far lies below this slot: a read that
    /// begins now must see all of them.
    pub(crate) fn read_floor(&self) -> Slot {
        self.reads.floor
    }

    /// A read outside the log began when the floor was `floor` and ended now
    /// with `answer`; it is checked at the end of the run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read_done(
        &mut self,
        tick: u64,
        who: String,
        query: Vec<u8>,
        mode: ReadMode,
        floor: Slot,
        answer: Vec<u8>,
    ) {
        let ceiling = self.log_len();
        self.reads.done.push(reads::Read { who, query, mode, floor, ceiling, answer, tick });
    }

    /// End of the run: every read returned a value its key held when it could have been served.
    pub(crate) fn final_reads(&mut self) {
        let chosen: BTreeMap<Slot, Value> = self.chosen.iter().map(|(&s, (_, v))| (s, v.clone())).collect();
        if let Some((tick, detail)) = self.reads.check(&chosen) {
            self.report("linearizable reads", tick, Some(detail));
        }
    }

    /// How many reads outside the log finished.
    pub(crate) fn reads_done(&self) -> usize {
        self.reads.done.len()
    }

    /// End of the run: every acknowledged operation is in the chosen log.
    pub(crate) fn final_durability(&mut self, tick: u64) {
        let found = durability::check(&self.chosen, &self.answers);
        self.report("durability", tick, found);
    }

    /// Replica `node` restarted and its log gave back `recovered`; it had
    /// written `written`, of which the first `reported` were reported durable.
    /// After a truncation (`truncated`) the records are compared by what they
    /// say, not one by one: the promise, the snapshot point and every durable
    /// entry at or above it must still be there.
    pub(crate) fn recovered(
        &mut self,
        tick: u64,
        node: NodeId,
        written: &[LogRecord],
        reported: usize,
        recovered: &[LogRecord],
        truncated: bool,
    ) {
        let found = if truncated {
            durability::check_recovered_truncated(node, written, reported, recovered)
        } else {
            durability::check_recovered(node, written, reported, recovered)
        };
        self.report("durability", tick, found);
    }

    /// Replica `node` restored its state machine from a snapshot up to
    /// `upto` (at a restart, or installing one a peer sent): its digest must
    /// be the one every replica had after applying slot `upto - 1`, and the
    /// snapshot must hold the state up to exactly `upto`.
    pub(crate) fn restored(&mut self, tick: u64, node: NodeId, upto: Slot, at: Slot, digest: u64) {
        if at != upto {
            let detail =
                format!("{node}: the snapshot named for slot {upto} holds the state up to slot {at}");
            self.report("snapshot", tick, Some(detail));
            return;
        }
        if let Some(last) = upto.0.checked_sub(1) {
            let found = order::check(&mut self.digests, node, Slot(last), digest);
            self.report("order", tick, found);
        }
    }

    /// A replica's snapshot did not restore or install.
    pub(crate) fn snapshot_failed(&mut self, tick: u64, detail: String) {
        self.report("snapshot", tick, Some(detail));
    }

    /// A replica's log could not be opened at restart: recovery found
    /// corruption where a crash can only have torn or lost unsynced writes.
    pub(crate) fn recovery_refused(&mut self, tick: u64, detail: String) {
        self.report("recovery", tick, Some(detail));
    }

    pub(crate) fn liveness(&mut self, tick: u64, found: Option<String>) {
        self.report("liveness", tick, found);
    }

    /// The highest slot any replica committed, plus one.
    pub(crate) fn log_len(&self) -> Slot {
        self.chosen.keys().next_back().map_or(Slot(0), |s| s.next())
    }
}
