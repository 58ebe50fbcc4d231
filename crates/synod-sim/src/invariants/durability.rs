//! Durability (ARCHITECTURE.md, "Testing": an acknowledged command is never lost across
//! crashes and restarts): every operation a client got an answer for is in
//! the chosen log at the end of the run.

use std::collections::{BTreeMap, BTreeSet};

use synod_wire::{Batch, ClientId, Command, NodeId, Seq, Slot, Value, Wire};

pub(super) fn check(
    chosen: &BTreeMap<Slot, (NodeId, Value)>,
    answers: &BTreeMap<(ClientId, Seq), Vec<u8>>,
) -> Option<String> {
    let mut present = BTreeSet::new();
    for (_, value) in chosen.values() {
        if let Value::Batch(bytes) = value {
            if let Ok(batch) = Batch::decode(bytes) {
                for c in batch.commands {
                    if let Command::Op { client, seq, .. } = c {
                        present.insert((client, seq));
                    }
                }
            }
        }
    }
    answers
        .keys()
        .find(|k| !present.contains(k))
        .map(|(c, s)| format!("{c} {s} was acknowledged but is not in the chosen log"))
}
