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

/// After a truncation the recovered records are no longer a prefix of those
/// written (whole segments went, the latest promise and commit were carried
/// over): compare what they say instead. The promise never goes back, the
/// snapshot point never goes back, and every entry at or above the snapshot
/// point that was reported durable is still there, at its ballot or a later one.
pub(super) fn check_recovered_truncated(
    node: NodeId,
    written: &[LogRecord],
    reported: usize,
    recovered: &[LogRecord],
) -> Option<String> {
    let want = synod_paxos::Durable::replay(written[..reported.min(written.len())].iter().cloned());
    let got = synod_paxos::Durable::replay(recovered.iter().cloned());
    if got.promised < want.promised {
        return Some(format!("{node} recovered promise {} after promising {}", got.promised, want.promised));
    }
    if got.snapshot_upto < want.snapshot_upto {
        return Some(format!(
            "{node} recovered snapshot point {} after logging {}",
            got.snapshot_upto, want.snapshot_upto
        ));
    }
    for (slot, (ballot, value, chosen)) in want.entries.range(got.snapshot_upto..) {
        match got.entries.get(slot) {
            None => {
                return Some(format!("{node} lost its durable entry for slot {slot} in a log truncation"))
            }
            Some((b, v, c)) => {
                let kept = if *chosen { *c && v == value } else { *c || *b >= *ballot };
                if !kept {
                    return Some(format!(
                        "{node} recovered slot {slot} as {b} {c}, but had made {ballot} {chosen} durable"
                    ));
                }
            }
        }
    }
    None
}
