//! Durability (ARCHITECTURE.md, "Testing": an acknowledged command is never lost across
//! crashes and restarts): every operation a client got an answer for is in
//! the chosen log at the end of the run; and, beneath it, a restarted
//! replica's write-ahead log gives back every record it was told was durable.

use std::collections::{BTreeMap, BTreeSet};

use synod_wire::{Batch, ClientId, Command, LogRecord, NodeId, Seq, Slot, Value, Wire};

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

/// A restarted replica's log gives back a prefix of what it wrote, in order,
/// holding at least every record it was told was durable: a crash loses
/// only unsynced writes (or the unsynced part of a torn one), and recovery
/// neither drops a synced record nor invents or reorders one.
pub(super) fn check_recovered(
    node: NodeId,
    written: &[LogRecord],
    reported: usize,
    recovered: &[LogRecord],
) -> Option<String> {
    if let Some(at) = recovered.iter().zip(written).position(|(r, w)| r != w) {
        return Some(format!(
            "{node} recovered record {at} as {:?}, but wrote {:?}",
            recovered[at], written[at]
        ));
    }
    if recovered.len() > written.len() {
        return Some(format!(
            "{node} recovered {} records but wrote only {}",
            recovered.len(),
            written.len()
        ));
    }
    (recovered.len() < reported).then(|| {
        format!(
            "{node} recovered {} records, but {reported} were reported durable: {:?} is lost",
            recovered.len(),
            written[recovered.len()]
        )
    })
}
