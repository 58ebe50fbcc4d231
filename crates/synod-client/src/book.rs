//! The replicas a client knows, learned from the cluster as its membership changes.
//!
//! The session logic ([`synod_client_core::ClientCore`]) works on the fixed
//! list of replica ids it was built with. The cluster's members change
//! (`synod member add|remove`), so the driver keeps this book beside it: the
//! address of every replica it has heard of, and which replica stands behind
//! each of the core's ids. A redirect to a leader the core does not know is
//! routed through one of its ids, re-pointed at that leader; a configuration
//! learned from a replica ([`synod_wire::AdminQuery::Members`]) re-points the
//! ids of replicas that left at members none stands for. So a client whose
//! file names only old members still finds a cluster whose members were all
//! replaced one at a time, as long as one it knows answers.

use std::collections::BTreeMap;

use synod_transport::PeerAddr;
use synod_wire::{MembersView, NodeId};

/// Every replica address known, and the replica behind each of the core's ids.
#[derive(Debug, Clone)]
pub(crate) struct Book {
    addrs: BTreeMap<NodeId, PeerAddr>,
    /// The core's ids, in its order, each with the replica it stands for now.
    slots: Vec<(NodeId, NodeId)>,
    /// The members of the newest configuration learned (empty: none learned yet).
    members: Vec<NodeId>,
    /// That configuration's epoch.
    epoch: Option<u64>,
}

impl Book {
    /// The book of a client configured with `replicas`; each id stands for itself.
    pub(crate) fn new(replicas: &[(NodeId, PeerAddr)]) -> Book {
        Book {
            addrs: replicas.iter().cloned().collect(),
            slots: replicas.iter().map(|(n, _)| (*n, *n)).collect(),
            members: Vec::new(),
            epoch: None,
        }
    }

    /// The replica the core's id `core` stands for, and its address.
    pub(crate) fn target(&self, core: NodeId) -> (NodeId, PeerAddr) {
        let real = self.slots.iter().find(|(c, _)| *c == core).map_or(core, |&(_, r)| r);
        let addr = self.addrs.get(&real).cloned().expect("every slot's replica has an address");
        (real, addr)
    }

    /// The core's id for a redirect to `leader`: the id standing for it,
    /// else one re-pointed at it (not `current`, the id of the replica that
    /// redirected, if another will do; one standing for a replica that left
    /// first). `None` if `leader`'s address is unknown: learn the membership.
    pub(crate) fn route(&mut self, leader: NodeId, current: Option<NodeId>) -> Option<NodeId> {
        if let Some(&(core, _)) = self.slots.iter().find(|(_, r)| *r == leader) {
            return Some(core);
        }
        if !self.addrs.contains_key(&leader) {
            return None;
        }
        let left = |r: &NodeId| !self.members.is_empty() && !self.members.contains(r);
        let pick = self
            .slots
            .iter()
            .position(|(c, r)| Some(*c) != current && left(r))
            .or_else(|| self.slots.iter().rposition(|(c, _)| Some(*c) != current))
            .unwrap_or(0);
        self.slots[pick].1 = leader;
        Some(self.slots[pick].0)
    }

    /// A configuration a replica reported: its addresses are learned, and
    /// the ids standing for replicas it no longer names are re-pointed at
    /// members none stands for. An older configuration than one already
    /// learned only adds addresses.
    pub(crate) fn learn(&mut self, view: &MembersView) {
        for m in &view.members {
            if let Ok(addr) = PeerAddr::parse(&m.addr) {
                self.addrs.insert(m.id, addr);
            }
        }
        if self.epoch.is_some_and(|e| e > view.epoch) {
            return;
        }
        self.epoch = Some(view.epoch);
        self.members = view.members.iter().filter(|m| self.addrs.contains_key(&m.id)).map(|m| m.id).collect();
        let mut unserved = self
            .members
            .iter()
            .copied()
            .filter(|m| !self.slots.iter().any(|(_, r)| r == m))
            .collect::<Vec<_>>();
        unserved.reverse();
        for slot in &mut self.slots {
            if !self.members.contains(&slot.1) {
                if let Some(m) = unserved.pop() {
                    tracing::debug!(slot = %slot.0, from = %slot.1, to = %m, "client re-points a replica that left");
                    slot.1 = m;
                }
            }
        }
    }

    /// Every replica with a known address, to ask for the membership.
    pub(crate) fn all(&self) -> Vec<(NodeId, PeerAddr)> {
        self.addrs.iter().map(|(n, a)| (*n, a.clone())).collect()
    }

    /// How many ids the core has.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_wire::{MemberInfo, MemberRole, Slot};

    fn addr(i: u32) -> PeerAddr {
        PeerAddr::parse(&format!("127.0.0.1:{}", 7000 + i)).unwrap()
    }

    fn view(epoch: u64, ids: &[u32]) -> MembersView {
        MembersView {
            from: NodeId(ids[0]),
            epoch,
            members: ids
                .iter()
                .map(|&i| MemberInfo {
                    id: NodeId(i),
                    addr: addr(i).to_string(),
                    role: MemberRole::Voter,
                    caught_up: Slot(0),
                })
                .collect(),
            leader: None,
            change_in_flight: false,
        }
    }

    #[test]
    fn a_redirect_to_an_unknown_leader_needs_the_membership_then_takes_a_slot_of_one_that_left() {
        let mut book = Book::new(&[(NodeId(1), addr(1)), (NodeId(2), addr(2)), (NodeId(3), addr(3))]);
        assert_eq!(book.route(NodeId(2), Some(NodeId(1))), Some(NodeId(2)));
        assert_eq!(book.route(NodeId(4), Some(NodeId(2))), None, "4's address is unknown");
        // Replica 1 was replaced by 4.
        book.learn(&view(2, &[2, 3, 4]));
        assert_eq!(book.target(NodeId(1)), (NodeId(4), addr(4)));
        assert_eq!(book.route(NodeId(4), Some(NodeId(2))), Some(NodeId(1)));
        // Then 2 by 5, and 3 by 6: every id now stands for a current member.
        book.learn(&view(4, &[4, 5, 6]));
        let targets: Vec<NodeId> = [1, 2, 3].iter().map(|&c| book.target(NodeId(c)).0).collect();
        assert_eq!(targets, [NodeId(4), NodeId(5), NodeId(6)]);
        // An older configuration changes nothing but addresses.
        book.learn(&view(1, &[1, 2, 3]));
        assert_eq!(book.target(NodeId(2)).0, NodeId(5));
        assert_eq!(book.all().len(), 6);
    }

    #[test]
    fn a_known_leader_that_no_id_stands_for_takes_another_ids_place() {
        let mut book = Book::new(&[(NodeId(1), addr(1)), (NodeId(2), addr(2))]);
        // The cluster grew to 1, 2, 3: no member left, so an id other than the redirecting one is re-pointed.
        book.learn(&view(1, &[1, 2, 3]));
        assert_eq!(book.route(NodeId(3), Some(NodeId(1))), Some(NodeId(2)));
        assert_eq!(book.target(NodeId(2)).0, NodeId(3));
        assert_eq!(book.route(NodeId(3), Some(NodeId(1))), Some(NodeId(2)), "stable once routed");
    }
}
