//! synod-state-machine: what a replicated state machine is, and how committed log slots reach it.
//!
//! Implement [`StateMachine`] for your type; the [`Applier`] feeds it the
//! committed batches in log order, through the client session table, so
//! each client request takes effect at most once and a retry gets the
//! first answer. [`conformance::check`] tells whether an implementation
//! keeps the contract (determinism, snapshot and restore).
//!
//! ```
//! use synod_state_machine::{Applier, RestoreError, StateMachine};
//! use synod_session::SessionConfig;
//! use synod_wire::{Batch, Command, Outcome, Slot, Value, Wire};
//!
//! /// Counts the bytes of every command.
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! impl StateMachine for Counter {
//!     fn apply(&mut self, command: &[u8]) -> Vec<u8> {
//!         self.0 += command.len() as u64;
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn snapshot(&self) -> Vec<u8> {
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
//!         let bytes: [u8; 8] = snapshot.try_into().map_err(|_| RestoreError::new("want 8 bytes"))?;
//!         self.0 = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! let mut applier = Applier::new(Counter::default(), SessionConfig::default());
//! let batch = Batch { timestamp_ms: 1, commands: vec![Command::Register { nonce: 42 }] };
//! let replies = applier.apply(Slot(0), &Value::Batch(batch.encode().unwrap().into())).unwrap();
//! assert!(matches!(replies[0].outcome, Outcome::Registered { .. }));
//! ```
#![warn(missing_docs)]

mod applier;
pub mod conformance;

pub use applier::{Applier, ApplierStats, ApplyError, Origin, Reply};
pub use synod_session::SessionConfig;

/// The wire types a state machine meets: re-exported so that a state machine
/// depends on this crate alone.
pub mod wire {
    pub use synod_wire::*;
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot restore snapshot: {reason}")]
pub struct RestoreError {
    reason: String,
}

impl RestoreError {
    /// An error with a reason for the operator.
    pub fn new(reason: impl Into<String>) -> RestoreError {
        RestoreError { reason: reason.into() }
    }
}

/// A deterministic state machine that synod replicates.
///
/// The contract, checked by [`conformance::check`]:
/// * `apply` is a function of the state and the command alone: no clocks,
///   no randomness, no IO, no iteration over unordered maps. Every replica
///   applies the same commands in the same order and must reach the same
///   state and give the same answers.
/// * `apply` never panics on a malformed command: it answers with an error
///   of its own encoding, the same on every replica.
/// * `restore(snapshot())` yields a machine that behaves exactly like the original.
pub trait StateMachine {
    /// Applies one command and returns the answer for the client.
    fn apply(&mut self, command: &[u8]) -> Vec<u8>;

    /// The whole state as bytes.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError>;
}
