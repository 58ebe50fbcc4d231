//! Exactly-once (Raft dissertation §6.3, linearizable semantics for
//! clients): a (client, seq) takes effect at most once on every replica,
//! and a retry gets the answer of the first attempt.

use std::collections::BTreeMap;

use synod_wire::{ClientId, NodeId, Outcome, Seq};

pub(super) fn check_applied_once(node: NodeId, duplicates: &[u64]) -> Option<String> {
    duplicates.first().map(|op| {
        format!("{node} applied operation {op:#x} (client {}, seq {}) twice", op >> 32, op & 0xffff_ffff)
    })
}

pub(super) fn check_same_answer(
    answers: &mut BTreeMap<(ClientId, Seq), Vec<u8>>,
    client: ClientId,
    seq: Seq,
    outcome: &Outcome,
) -> Option<String> {
    let Outcome::Applied { payload } = outcome else { return None };
    match answers.get(&(client, seq)) {
        None => {
            answers.insert((client, seq), payload.clone());
            None
        }
        Some(first) if first != payload => {
            Some(format!("{client} {seq}: a retry got a different answer than the first attempt"))
        }
        Some(_) => None,
    }
}
