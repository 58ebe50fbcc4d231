//! Agreement (Lamport, "Paxos Made Simple": only a single value is chosen):
//! no two replicas ever commit different values for the same slot, across
//! crashes and restarts.

use std::collections::BTreeMap;

use synod_wire::{NodeId, Slot, Value};

pub(super) fn check(
    chosen: &mut BTreeMap<Slot, (NodeId, Value)>,
    node: NodeId,
    slot: Slot,
    value: &Value,
) -> Option<String> {
    match chosen.get(&slot) {
        None => {
            chosen.insert(slot, (node, value.clone()));
            None
        }
        Some((first, v)) if v != value => Some(format!(
            "slot {slot}: {node} committed {} but {first} committed {}",
            describe(value),
            describe(v)
        )),
        Some(_) => None,
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Noop => "a no-op".to_owned(),
        Value::Batch(b) => format!("a batch of {} bytes (hash {:016x})", b.len(), hash(b)),
        Value::Reconfig(m) => format!("the stop sign starting configuration {m}"),
    }
}

fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
