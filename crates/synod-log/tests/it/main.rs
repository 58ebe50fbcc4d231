//! Integration tests for synod-log: recovery, corruption, group commit, truncation, crashes.

mod corruption;
mod crash;
mod group;
mod sigkill;
mod truncate;

use synod_wire::{Ballot, LogRecord, NodeId, Slot, Value};

/// An `Accept` of slot `slot` whose value names the slot.
pub(crate) fn accept(slot: u64) -> LogRecord {
    LogRecord::Accept {
        slot: Slot(slot),
        ballot: Ballot::new(1, NodeId(1)),
        value: Value::Batch(slot.to_le_bytes().repeat(4).into()),
    }
}

/// A `Promise` of round `round`.
pub(crate) fn promise(round: u64) -> LogRecord {
    LogRecord::Promise { ballot: Ballot::new(round, NodeId(2)) }
}
