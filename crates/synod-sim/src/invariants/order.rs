//! Order (Schneider, "Implementing fault-tolerant services using the state
//! machine approach": every correct replica processes the same requests in
//! the same order): after applying slot s, every replica's applier has the
//! same digest of everything it applied, so each replica's applied sequence
//! is a prefix of every other's and they reached the same state.

use std::collections::BTreeMap;

use synod_wire::{NodeId, Slot};

pub(super) fn check(
    digests: &mut BTreeMap<Slot, (NodeId, u64)>,
    node: NodeId,
    slot: Slot,
    digest: u64,
) -> Option<String> {
    match digests.get(&slot) {
        None => {
            digests.insert(slot, (node, digest));
            None
        }
        Some(&(first, d)) if d != digest => Some(format!(
            "after slot {slot}: {node} has applier digest {digest:016x} but {first} had {d:016x}"
        )),
        Some(_) => None,
    }
}
