//! Reads outside the log at the replica layer: read ids, waiting for the read index to be applied, answers.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use synod_wire::{Outcome, ReadMode, ReadRequest, Slot};

use crate::effect::Effect;
use crate::replica::{Now, ReplicaCore};

/// A read waiting for its read index, or for that index to be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingRead<C> {
    pub(crate) conn: C,
    pub(crate) id: u64,
    pub(crate) query: Vec<u8>,
}

/// The reads of one replica core.
#[derive(Debug)]
pub(crate) struct Reads<C> {
    /// The next read id handed to the Paxos core.
    pub(crate) next: u64,
    /// Reads asked of the Paxos core, by read id.
    pub(crate) asked: BTreeMap<u64, PendingRead<C>>,
    /// Reads with an index not yet applied, by (index, read id).
    pub(crate) parked: BTreeMap<(Slot, u64), PendingRead<C>>,
    /// Every slot below this one has had its `Apply` effect (or came with an
    /// installed snapshot): a read with an index up to here may be served.
    /// The Paxos core's `delivered` can run ahead of it while its actions
    /// are being drained.
    pub(crate) emitted: Slot,
}

impl<C> Default for Reads<C> {
    fn default() -> Reads<C> {
        Reads { next: 0, asked: BTreeMap::new(), parked: BTreeMap::new(), emitted: Slot(0) }
    }
}

impl<C: Copy + Eq + Ord + Hash + Debug> ReplicaCore<C> {
    /// A read from a client on `conn`, served without the log
    /// (docs/OPERATIONS.md, "Reads"). `Linearizable` gets a read index from
    /// the leader, or as leader confirms it still leads, and is served as
    /// [`Effect::Read`] once that index is applied here; a read that gets no
    /// index is answered [`Outcome::Unavailable`]. `Lease` is served by a
    /// leader holding its lease without a round (leases on:
    /// `synod_paxos::Config::with_leases`), and as `Linearizable` otherwise.
    /// `Stale` is served from what this replica has applied, at once.
    pub fn handle_read(&mut self, now: Now, conn: C, request: ReadRequest) {
        self.stats.reads += 1;
        let read = PendingRead { conn, id: request.id, query: request.query };
        match request.mode {
            ReadMode::Stale => {
                self.stats.reads_stale += 1;
                let index = self.reads.emitted;
                self.serve(index, read);
            }
            ReadMode::Linearizable | ReadMode::Lease if self.admission_full() => {
                self.stats.busy += 1;
                self.reply(read.conn, read.id, Outcome::Busy);
                return;
            }
            ReadMode::Linearizable | ReadMode::Lease => {
                let rid = self.reads.next;
                self.reads.next += 1;
                self.reads.asked.insert(rid, read);
                if request.mode == ReadMode::Lease {
                    self.paxos.read_lease(rid);
                } else {
                    self.paxos.read(rid);
                }
            }
        }
        self.finish(now);
    }

    /// The Paxos core gave read `rid` its index.
    pub(crate) fn read_ready(&mut self, rid: u64, index: Slot) {
        let Some(read) = self.reads.asked.remove(&rid) else { return };
        if self.serves_reads_early() {
            let now = self.reads.emitted;
            self.serve(now, read);
            return;
        }
        if index <= self.reads.emitted {
            self.serve(index, read);
        } else {
            self.reads.parked.insert((index, rid), read);
        }
    }

    /// The Paxos core could not give read `rid` an index.
    pub(crate) fn read_failed(&mut self, rid: u64) {
        let Some(read) = self.reads.asked.remove(&rid) else { return };
        self.stats.reads_failed += 1;
        let why = match self.paxos.leader() {
            Some(leader) => format!("the read could not be confirmed with leader {leader}; retry"),
            None => "no leader to confirm the read; retry".to_owned(),
        };
        self.reply(read.conn, read.id, Outcome::Unavailable(why));
    }

    /// Serves the parked reads whose index is at most `applied`: every slot
    /// below it has had its `Apply` effect.
    pub(crate) fn release_reads(&mut self, applied: Slot) {
        self.reads.emitted = self.reads.emitted.max(applied);
        while let Some(entry) = self.reads.parked.first_entry() {
            if entry.key().0 > applied {
                break;
            }
            let ((index, _), read) = entry.remove_entry();
            self.serve(index, read);
        }
    }

    fn serve(&mut self, index: Slot, read: PendingRead<C>) {
        self.stats.reads_served += 1;
        self.effects.push_back(Effect::Read { conn: read.conn, id: read.id, query: read.query, index });
    }

    #[cfg(feature = "planted-bugs")]
    fn serves_reads_early(&self) -> bool {
        self.bugs.serve_reads_early
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn serves_reads_early(&self) -> bool {
        false
    }

    /// Forgets the reads of connection `conn`: it closed.
    pub(crate) fn reads_gone(&mut self, conn: C) {
        self.reads.asked.retain(|_, r| r.conn != conn);
        self.reads.parked.retain(|_, r| r.conn != conn);
    }
}
