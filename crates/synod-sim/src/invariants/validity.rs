//! Validity (Lamport: only a value that has been proposed may be chosen):
//! every committed slot is a no-op or a batch of commands that clients sent.

use std::collections::BTreeSet;

use synod_wire::{Batch, Command, Slot, Value, Wire};

pub(super) fn check(issued: &BTreeSet<Command>, slot: Slot, value: &Value) -> Option<String> {
    let Value::Batch(bytes) = value else { return None };
    let batch = match Batch::decode(bytes) {
        Ok(b) => b,
        Err(e) => return Some(format!("slot {slot} holds a batch that does not decode: {e}")),
    };
    batch
        .commands
        .iter()
        .find(|c| !issued.contains(c))
        .map(|c| format!("slot {slot} holds a command no client sent: {c:?}"))
}
