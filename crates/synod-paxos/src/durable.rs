//! The state a replica recovers from its log after a restart.

use std::collections::BTreeMap;

use synod_wire::{Ballot, LogRecord, Membership, Slot, Value};

/// What the log says about this replica: its promise, what it accepted or
/// learned, and how much of the log it knew to be chosen.
///
/// Build it by replaying log records with [`Durable::replay`] and hand it to
/// [`crate::Paxos::recover`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durable {
    /// The highest ballot promised.
    pub promised: Ballot,
    /// Per slot: the ballot of the accepted value (`Ballot::ZERO` for a
    /// learned one), the value, and whether it is known chosen.
    pub entries: BTreeMap<Slot, (Ballot, Value, bool)>,
    /// A snapshot covers every slot below this one; those entries are gone.
    pub snapshot_upto: Slot,
    /// This replica started with nothing on disk and has not rejoined yet
    /// (the latest `Rejoin` record is not done): it must not vote.
    pub rejoining: bool,
    /// The configuration in force at `snapshot_upto`, from the snapshot the
    /// driver restored (`None`: no snapshot, configuration 0 of the
    /// [`crate::Config`]). Later configurations come from the chosen
    /// `Value::Reconfig` entries in the log after it.
    pub membership: Option<Membership>,
}

impl Durable {
    /// A snapshot covers every slot below `upto` (a snapshot file newer than
    /// the log's last `Snapshot` record: written, or received, just before a
    /// crash): entries below it go.
    pub fn raise_snapshot(&mut self, upto: Slot) {
        if upto > self.snapshot_upto {
            self.snapshot_upto = upto;
            self.entries = self.entries.split_off(&upto);
        }
    }

    /// Replays log records, oldest first. Later records override earlier ones;
    /// a chosen slot keeps its chosen value.
    pub fn replay(records: impl IntoIterator<Item = LogRecord>) -> Durable {
        let mut d = Durable::default();
        let mut commit = Slot(0);
        for record in records {
            match record {
                LogRecord::Promise { ballot } => d.promised = d.promised.max(ballot),
                LogRecord::Accept { slot, ballot, value } => {
                    d.promised = d.promised.max(ballot);
                    match d.entries.get_mut(&slot) {
                        Some(e) if e.2 => {}
                        _ => {
                            d.entries.insert(slot, (ballot, value, false));
                        }
                    }
                }
                LogRecord::Learn { slot, value } => {
                    let ballot = match d.entries.get(&slot) {
                        Some((b, v, _)) if *v == value => *b,
                        _ => Ballot::ZERO,
                    };
                    d.entries.insert(slot, (ballot, value, true));
                }
                LogRecord::Commit { upto } => commit = commit.max(upto),
                LogRecord::Rejoin { done } => d.rejoining = !done,
                LogRecord::Snapshot { upto } => {
                    d.snapshot_upto = d.snapshot_upto.max(upto);
                    d.entries = d.entries.split_off(&d.snapshot_upto);
                }
            }
        }
        for (_, (_, _, chosen)) in d.entries.range_mut(..commit) {
            *chosen = true;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_wire::NodeId;

    #[test]
    fn replay_keeps_the_last_word_and_chosen_values() {
        let b1 = Ballot::new(1, NodeId(1));
        let b2 = Ballot::new(2, NodeId(2));
        let v = |x: u8| Value::Batch(vec![x].into());
        let d = Durable::replay([
            LogRecord::Promise { ballot: b1 },
            LogRecord::Accept { slot: Slot(0), ballot: b1, value: v(1) },
            LogRecord::Accept { slot: Slot(1), ballot: b1, value: v(2) },
            LogRecord::Learn { slot: Slot(2), value: v(3) },
            LogRecord::Commit { upto: Slot(1) },
            LogRecord::Accept { slot: Slot(1), ballot: b2, value: v(4) },
            LogRecord::Accept { slot: Slot(2), ballot: b2, value: v(9) },
        ]);
        assert_eq!(d.promised, b2);
        assert_eq!(d.entries[&Slot(0)], (b1, v(1), true));
        assert_eq!(d.entries[&Slot(1)], (b2, v(4), false));
        assert_eq!(d.entries[&Slot(2)], (Ballot::ZERO, v(3), true), "a learned value is never overwritten");
    }
}
