//! The ledger through `synod_state_machine::conformance`, and a ledger the suite must refuse.

use std::collections::HashMap;

use synod_examples::ledger::{Ledger, LedgerCommand};
use synod_state_machine::{conformance, RestoreError, StateMachine};

/// A deterministic mix of every kind of command: opens (some refused), transfers
/// that succeed, overdraw, name missing accounts or are malformed, reads, garbage.
fn commands(n: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let account = |k: u64| k % 12;
            let command = match r % 10 {
                _ if i < 10 => LedgerCommand::Open { account: i as u64, deposit: 100 * i as i64 },
                0 => LedgerCommand::Open { account: account(r >> 8), deposit: (r >> 20) as i64 % 50 },
                1 => LedgerCommand::Balance { account: account(r >> 8) },
                2 => LedgerCommand::Total,
                3 => return (r >> 8).to_le_bytes()[..(r % 7) as usize].to_vec(),
                _ => LedgerCommand::Transfer {
                    from: account(r >> 8),
                    to: account(r >> 16),
                    amount: (r >> 24) as i64 % 300 - 10,
                },
            };
            command.encode()
        })
        .collect()
}

#[test]
fn the_ledger_keeps_the_state_machine_contract() {
    conformance::check(Ledger::default, &commands(2_000)).unwrap();
}

/// A ledger that snapshots by walking a `HashMap`: each instance has its own
/// random hash seed, so two replicas with equal balances write different bytes.
#[derive(Default)]
struct HashLedger {
    inner: Ledger,
    mirror: HashMap<u64, i64>,
}

impl StateMachine for HashLedger {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let answer = self.inner.apply(command);
        self.mirror = self.inner.accounts().collect();
        answer
    }

    fn snapshot(&self) -> Vec<u8> {
        self.mirror.iter().flat_map(|(a, b)| a.to_le_bytes().into_iter().chain(b.to_le_bytes())).collect()
    }

    fn restore(&mut self, _: &[u8]) -> Result<(), RestoreError> {
        Err(RestoreError::new("never reached: the suite stops at the first snapshot mismatch"))
    }
}

#[test]
fn the_suite_refuses_a_ledger_that_iterates_a_hash_map() {
    let verdict = conformance::check(HashLedger::default, &commands(2_000));
    assert!(
        matches!(verdict, Err(conformance::Violation::Snapshots { .. })),
        "a snapshot in hash order must be caught: {verdict:?}"
    );
}
