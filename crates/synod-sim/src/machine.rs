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

    /// Reads outside the log are the store's own (`get`s, without an operation id).
    fn read(&self, query: &[u8]) -> Option<Vec<u8>> {
        self.kv.read(query)
    }

    /// The operation ids seen, then the store: a restored replica still catches a second apply.
    fn snapshot(&self) -> Vec<u8> {
        let mut out = (self.seen.len() as u64).to_le_bytes().to_vec();
        for id in &self.seen {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out.extend_from_slice(&self.kv.snapshot());
        out
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let bad = || RestoreError::new("a truncated audited snapshot");
        let (count, mut rest) = snapshot.split_first_chunk::<8>().ok_or_else(bad)?;
        let mut seen = BTreeSet::new();
        for _ in 0..u64::from_le_bytes(*count) {
            let (id, tail) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
            seen.insert(u64::from_le_bytes(*id));
            rest = tail;
        }
        self.kv.restore(rest)?;
        self.seen = seen;
        Ok(())
    }
}
