//! Liveness (after the faults stop, a leader is elected and proposals
//! commit): once the network heals and every replica is up, within a
//! bounded number of ticks there is a leader, every client request is
//! answered, and every replica applied the same sequence.

use synod_wire::{NodeId, Slot};

/// What the heal phase looks at each tick.
#[derive(Debug)]
pub(crate) struct Convergence {
    pub(crate) leader: Option<NodeId>,
    pub(crate) clients_done: bool,
    /// Per replica: next slot to apply, and applier digest.
    pub(crate) replicas: Vec<(NodeId, Slot, u64)>,
    pub(crate) log_len: Slot,
}

impl Convergence {
    pub(crate) fn converged(&self) -> bool {
        self.leader.is_some()
            && self.clients_done
            && self
                .replicas
                .iter()
                .all(|&(_, next, digest)| next == self.log_len && digest == self.replicas[0].2)
    }

    /// Why the run has not converged.
    pub(crate) fn explain(&self) -> String {
        let replicas: Vec<String> =
            self.replicas.iter().map(|(n, s, d)| format!("{n} applied to {s} digest {d:016x}")).collect();
        format!(
            "no convergence: leader {:?}, clients done {}, log length {}, {}",
            self.leader,
            self.clients_done,
            self.log_len,
            replicas.join(", ")
        )
    }
}
