//! What a replica knows about itself, shared between the shell (leader, ballot, commit), the apply thread (applied, digest) and readers.
//!
//! The one lock here is always taken last: the shell takes it under the
//! core's lock, the apply thread on its own, readers on their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use synod_wire::{Ballot, NodeId, Slot};

/// What a replica knows about itself and the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// This replica.
    pub id: NodeId,
    /// The leader it believes in.
    pub leader: Option<NodeId>,
    /// Whether it leads.
    pub is_leader: bool,
    /// The highest leader ballot it knows.
    pub ballot: Ballot,
    /// Every slot below this is chosen and known here.
    pub commit: Slot,
    /// Every slot below this is applied to the state machine.
    pub applied: Slot,
    /// A digest of everything applied: equal on replicas that applied the same sequence.
    pub digest: u64,
    /// Peers with a live connection.
    pub peers_connected: Vec<NodeId>,
    /// Live client sessions.
    pub sessions: usize,
    /// Set when the replica stopped on a fatal error (a failed write or fsync).
    pub fatal: Option<String>,
    /// The replica started with nothing on disk and does not vote yet: it
    /// waits to hear every peer and to learn what they hold.
    pub rejoining: bool,
    /// Every slot below this one is in the replica's newest snapshot.
    pub snapshot: Slot,
    /// The configuration in force (its epoch), as this replica knows it.
    pub epoch: u64,
    /// Every member of that configuration, voters and learners.
    pub members: Vec<NodeId>,
    /// The members that are learners.
    pub learners: Vec<NodeId>,
    /// This replica was removed from the cluster: it takes no further part and stops.
    pub removed: bool,
}

/// Reads a replica's [`Status`] from any thread; see [`crate::Replica::status_handle`].
#[derive(Debug, Clone)]
pub struct StatusHandle {
    pub(crate) status: Arc<Mutex<Status>>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl StatusHandle {
    /// A snapshot of the replica's state.
    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    /// Whether the replica is stopping or stopped (shut down, or on a fatal error).
    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}
