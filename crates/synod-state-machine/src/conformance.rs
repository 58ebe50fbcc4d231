//! A conformance suite any [`StateMachine`] can run: determinism, snapshot and restore, replay.
//!
//! ```
//! use synod_state_machine::{conformance, RestoreError, StateMachine};
//!
//! #[derive(Default)]
//! struct Last(Vec<u8>);
//! impl StateMachine for Last {
//!     fn apply(&mut self, c: &[u8]) -> Vec<u8> { std::mem::replace(&mut self.0, c.to_vec()) }
//!     fn snapshot(&self) -> Vec<u8> { self.0.clone() }
//!     fn restore(&mut self, s: &[u8]) -> Result<(), RestoreError> { self.0 = s.to_vec(); Ok(()) }
//! }
//!
//! let commands: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; i as usize % 7]).collect();
//! conformance::check(Last::default, &commands).unwrap();
//! ```

use crate::StateMachine;

/// A broken promise of the [`StateMachine`] contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Two fresh machines answered command `index` differently.
    #[error("not deterministic: two fresh machines answered command {index} differently")]
    Answers {
        /// The command's position.
        index: usize,
    },
    /// Two machines that applied the same commands have different snapshots.
    #[error("not deterministic: equal histories gave different snapshots after command {index}")]
    Snapshots {
        /// The command's position.
        index: usize,
    },
    /// A machine restored from a snapshot taken after `at` commands answered later command `index` differently.
    #[error("restore(snapshot()) after {at} commands answered command {index} differently")]
    Restore {
        /// Where the snapshot was taken.
        at: usize,
        /// The command whose answer differed.
        index: usize,
    },
    /// `restore` refused a snapshot the machine itself produced.
    #[error("restore refused its own snapshot taken after {at} commands: {reason}")]
    RestoreRefused {
        /// Where the snapshot was taken.
        at: usize,
        /// The machine's reason.
        reason: String,
    },
    /// A restored machine's final snapshot differs from the original's.
    #[error("a machine restored after {at} commands ended in a different state")]
    FinalState {
        /// Where the snapshot was taken.
        at: usize,
    },
}

/// Runs `commands` through machines made by `make` and checks the contract:
///
/// 1. determinism: two fresh machines give the same answers and snapshots;
/// 2. snapshot/restore: a machine restored from a snapshot taken at several
///    points answers the rest exactly like the original;
/// 3. replay equivalence: it then ends in the same state.
pub fn check<S: StateMachine>(make: impl Fn() -> S, commands: &[Vec<u8>]) -> Result<(), Violation> {
    let mut a = make();
    let mut b = make();
    let mut answers = Vec::with_capacity(commands.len());
    let mut snapshots = Vec::with_capacity(commands.len() + 1);
    snapshots.push(a.snapshot());
    for (index, command) in commands.iter().enumerate() {
        let x = a.apply(command);
        let y = b.apply(command);
        if x != y {
            return Err(Violation::Answers { index });
        }
        answers.push(x);
        let snap = a.snapshot();
        if snap != b.snapshot() {
            return Err(Violation::Snapshots { index });
        }
        snapshots.push(snap);
    }
    let final_state = snapshots.last().cloned().unwrap_or_default();
    let points =
        [0, commands.len() / 3, commands.len() / 2, commands.len().saturating_sub(1), commands.len()];
    for &at in &points {
        let mut restored = make();
        // Dirty the machine first: restore must replace the state, not merge into it.
        for command in commands.iter().rev().take(3) {
            restored.apply(command);
        }
        restored
            .restore(&snapshots[at])
            .map_err(|e| Violation::RestoreRefused { at, reason: e.to_string() })?;
        for (index, command) in commands.iter().enumerate().skip(at) {
            if restored.apply(command) != answers[index] {
                return Err(Violation::Restore { at, index });
            }
        }
        if restored.snapshot() != final_state {
            return Err(Violation::FinalState { at });
        }
    }
    Ok(())
}
