//! Reads outside the log: every linearizable read returns the value its key had at some point of
//! the chosen log between the writes acknowledged before the read began and the slots chosen
//! before it ended; a stale read returns a value its key had at some point up to its end.
//!
//! The chosen log is replayed through a reference applier (the simulator's own audited
//! key-value store behind the real session table) to know each key's value after every slot.

use std::collections::BTreeMap;

use synod_state_machine::{Applier, SessionConfig};
use synod_wire::{with_archived, ArchivedBatch, ArchivedCommand, ClientId, ReadMode, Seq, Slot, Value};

use crate::machine::Audited;

/// One finished read, to be checked once the whole log is known.
#[derive(Debug, Clone)]
pub(super) struct Read {
    pub(super) who: String,
    pub(super) query: Vec<u8>,
    pub(super) mode: ReadMode,
    /// Every write acknowledged before the read began lies below this slot.
    pub(super) floor: Slot,
    /// No slot at or above this one was chosen when the read ended.
    pub(super) ceiling: Slot,
    pub(super) answer: Vec<u8>,
    pub(super) tick: u64,
}

/// The chosen log replayed, for reads.
#[derive(Debug)]
pub(super) struct Reads {
    reference: Applier<Audited>,
    /// Per query seen: its answer after each slot where it changed, as (first slot after, answer).
    answers: BTreeMap<Vec<u8>, Vec<(Slot, Vec<u8>)>>,
    /// The slot each operation first appears in.
    op_slot: BTreeMap<(ClientId, Seq), Slot>,
    /// Every operation acknowledged so far lies below this slot.
    pub(super) floor: Slot,
    pub(super) done: Vec<Read>,
}

impl Default for Reads {
    fn default() -> Reads {
        Reads {
            reference: Applier::new(Audited::default(), SessionConfig::default()),
            answers: BTreeMap::new(),
            op_slot: BTreeMap::new(),
            floor: Slot(0),
            done: Vec::new(),
        }
    }
}

impl Reads {
    /// A slot was chosen for the first time: note where its operations are.
    pub(super) fn chosen(&mut self, slot: Slot, value: &Value) {
        let Value::Batch(bytes) = value else { return };
        let _ = with_archived::<synod_wire::Batch, _>(bytes, |batch: &ArchivedBatch| {
            for command in batch.commands.iter() {
                if let ArchivedCommand::Op { client, seq, .. } = command {
                    let op = (ClientId(client.0.to_native()), Seq(seq.0.to_native()));
                    self.op_slot.entry(op).or_insert(slot);
                }
            }
        });
    }

    /// A client got the answer to `op`: every read that begins from now on must see it.
    pub(super) fn acknowledged(&mut self, op: (ClientId, Seq)) {
        if let Some(slot) = self.op_slot.get(&op) {
            self.floor = self.floor.max(slot.next());
        }
    }

    /// Checks every read against the chosen log (`chosen`, complete by now).
    pub(super) fn check(&mut self, chosen: &BTreeMap<Slot, Value>) -> Option<(u64, String)> {
        let queries: Vec<Vec<u8>> = {
            let mut q: Vec<Vec<u8>> = self.done.iter().map(|r| r.query.clone()).collect();
            q.sort();
            q.dedup();
            q
        };
        for q in &queries {
            let first = self.reference.read(q).unwrap_or_default();
            self.answers.insert(q.clone(), vec![(Slot(0), first)]);
        }
        for (&slot, value) in chosen {
            if slot != self.reference.next_slot() {
                break;
            }
            if self.reference.apply_unanswered(slot, value).is_err() {
                break;
            }
            for q in &queries {
                let now = self.reference.read(q).unwrap_or_default();
                let history = self.answers.get_mut(q).expect("inserted above");
                if history.last().is_none_or(|(_, last)| *last != now) {
                    history.push((slot.next(), now));
                }
            }
        }
        let replayed = self.reference.next_slot();
        for r in &self.done {
            if r.ceiling > replayed {
                // The log is not known that far (a run cut short): nothing to say.
                continue;
            }
            let history = &self.answers[&r.query];
            // The answer holds over [from, to) for each entry.
            let held = |lo: Slot, hi: Slot| {
                history.iter().enumerate().any(|(i, (from, answer))| {
                    let to = history.get(i + 1).map_or(Slot(u64::MAX), |(t, _)| *t);
                    *answer == r.answer && *from <= hi && to > lo
                })
            };
            let ok = match r.mode {
                ReadMode::Stale => held(Slot(0), r.ceiling),
                ReadMode::Linearizable | ReadMode::Lease => held(r.floor, r.ceiling),
            };
            if !ok {
                let hash =
                    |a: &[u8]| a.iter().fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                let seen: Vec<(u64, u64)> = history.iter().map(|(s, a)| (s.0, hash(a))).collect();
                let got = hash(&r.answer);
                return Some((
                    r.tick,
                    format!(
                        "{}: a {:?} read's answer ({got}) held at no point between slot {} (writes acknowledged before it began) and slot {} (chosen when it ended); the key's answers changed at {seen:?}",
                        r.who, r.mode, r.floor, r.ceiling
                    ),
                ));
            }
        }
        None
    }
}
