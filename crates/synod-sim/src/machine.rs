//! The state machine the simulator replicates: the real key-value store,
//! audited so that a command applied twice is caught.

use std::collections::BTreeSet;

use synod_kv::KvStore;
use synod_state_machine::{RestoreError, StateMachine};

/// Commands are an 8-byte unique operation id followed by a key-value command.
#[derive(Debug, Default)]
pub(crate) struct Audited {
    pub(crate) kv: KvStore,
    seen: BTreeSet<u64>,
    /// Operation ids applied more than once.
    pub(crate) duplicates: Vec<u64>,
}

impl Audited {
    pub(crate) fn command(op_id: u64, kv: &[u8]) -> Vec<u8> {
        let mut bytes = op_id.to_le_bytes().to_vec();
        bytes.extend_from_slice(kv);
        bytes
    }
}

impl StateMachine for Audited {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let Some((id, kv)) = command.split_first_chunk::<8>() else {
            return b"short command".to_vec();
        };
        let id = u64::from_le_bytes(*id);
        if !self.seen.insert(id) {
            self.duplicates.push(id);
        }
        self.kv.apply(kv)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.kv.snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.kv.restore(snapshot)
    }
}
