//! The records of a replica's write-ahead log.

use rkyv::{Archive, Deserialize, Serialize};

use crate::{Ballot, Slot, Value};

/// One durable fact about an acceptor or learner.
///
/// Recovery replays these in order: the last `Promise` is the promised
/// ballot, the last `Accept` or `Learn` of a slot is its value, and the last
/// `Commit` says which prefix of the log is chosen.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LogRecord {
    /// The acceptor promised to ignore ballots below `ballot`.
    Promise {
        /// The promised ballot.
        ballot: Ballot,
    },
    /// The acceptor accepted `value` in `slot` at `ballot`.
    Accept {
        /// The slot.
        slot: Slot,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: Value,
    },
    /// The replica learned the chosen value of `slot` from a peer.
    Learn {
        /// The slot.
        slot: Slot,
        /// Its chosen value.
        value: Value,
    },
    /// Every slot below `upto` is chosen, with the value last recorded for it.
    Commit {
        /// One past the last chosen slot.
        upto: Slot,
    },
    /// A snapshot covers every slot below `upto`; earlier records may be dropped.
    Snapshot {
        /// One past the last slot the snapshot covers.
        upto: Slot,
    },
    /// This replica started with nothing on disk and may not vote until it
    /// has rejoined (`done: false`), or it has rejoined (`done: true`). The
    /// latest one says which, across restarts.
    Rejoin {
        /// Whether the rejoin is complete.
        done: bool,
    },
}
