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
    /// `snapshot_to` failed writing into memory, or two machines that
    /// applied the same commands streamed different bytes.
    #[error("snapshot_to after {at} commands: {reason}")]
    StreamSnapshot {
        /// Where the snapshot was taken.
        at: usize,
        /// What went wrong.
        reason: String,
    },
    /// `restore_from` refused what `snapshot_to` wrote after `at` commands.
    #[error("restore_from refused what snapshot_to wrote after {at} commands: {reason}")]
    StreamRestoreRefused {
        /// Where the snapshot was taken.
        at: usize,
        /// The machine's reason.
        reason: String,
    },
    /// A machine restored with `restore_from` from what `snapshot_to` wrote
    /// after `at` commands answered later command `index` differently.
    #[error("restore_from(snapshot_to()) after {at} commands answered command {index} differently")]
    StreamRestore {
        /// Where the snapshot was taken.
        at: usize,
        /// The command whose answer differed.
        index: usize,
    },
    /// A machine restored with `restore_from` ended in a different state.
    #[error("a machine restored with restore_from after {at} commands ended in a different state")]
    StreamFinalState {
        /// Where the snapshot was taken.
        at: usize,
    },
    /// What a `snapshot_source` taken after `at` commands wrote, once the
    /// machine had applied the rest, differs from what `snapshot_to` wrote
    /// then (or writing it failed).
    #[error("snapshot_source taken after {at} commands: {reason}")]
    SnapshotSource {
        /// Where the source was taken.
        at: usize,
        /// What went wrong.
        reason: String,
    },
}

/// Runs `commands` through machines made by `make` and checks the contract:
///
/// 1. determinism: two fresh machines give the same answers and snapshots;
/// 2. snapshot/restore: a machine restored from a snapshot taken at several
///    points answers the rest exactly like the original;
/// 3. replay equivalence: it then ends in the same state;
/// 4. the streaming form: at the same points, `restore_from` of what
///    `snapshot_to` wrote (the bytes equal on two machines with equal
///    histories) gives a machine that answers the rest like the original and
///    ends in the same state;
/// 5. the frozen view: a [`StateMachine::snapshot_source`] taken at the same
///    points and written only after the machine applied every command
///    writes exactly what `snapshot_to` wrote when
///    it was taken.
pub fn check<S: StateMachine>(make: impl Fn() -> S, commands: &[Vec<u8>]) -> Result<(), Violation> {
    let mut a = make();
    let mut b = make();
    let points =
        [0, commands.len() / 3, commands.len() / 2, commands.len().saturating_sub(1), commands.len()];
    let mut streamed = Vec::with_capacity(points.len());
    let mut sources = Vec::with_capacity(points.len());
    let stream = |m: &S, at: usize| {
        let mut out = Vec::new();
        m.snapshot_to(&mut out).map_err(|e| Violation::StreamSnapshot { at, reason: e.to_string() })?;
        Ok::<_, Violation>(out)
    };
    let mut take_streams = |a: &S, b: &S, at: usize| {
        if points.contains(&at) {
            let x = stream(a, at)?;
            if x != stream(b, at)? {
                return Err(Violation::StreamSnapshot {
                    at,
                    reason: "equal histories streamed different bytes".to_owned(),
                });
            }
            streamed.push((at, x));
            sources.push(a.snapshot_source());
        }
        Ok(())
    };
    take_streams(&a, &b, 0)?;
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
        take_streams(&a, &b, index + 1)?;
    }
    // Written only now that `a` applied everything (the suite starts no
    // threads; the trait's `Send + 'static` bound is what lets the runtime
    // write it on another one).
    let written = sources.into_iter().map(|source| {
        let mut out = Vec::new();
        source.write_to(&mut out).map(|()| out).map_err(|e| e.to_string())
    });
    for ((at, bytes), written) in streamed.iter().zip(written) {
        let at = *at;
        match written {
            Err(reason) => return Err(Violation::SnapshotSource { at, reason }),
            Ok(w) if w != *bytes => {
                return Err(Violation::SnapshotSource {
                    at,
                    reason: "it wrote other bytes than snapshot_to did when it was taken".to_owned(),
                })
            }
            Ok(_) => {}
        }
    }
    let final_state = snapshots.last().cloned().unwrap_or_default();
    for &at in &points {
        let mut restored = dirty(&make, commands);
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
    for (at, bytes) in streamed {
        let mut restored = dirty(&make, commands);
        restored
            .restore_from(&mut bytes.as_slice())
            .map_err(|e| Violation::StreamRestoreRefused { at, reason: e.to_string() })?;
        for (index, command) in commands.iter().enumerate().skip(at) {
            if restored.apply(command) != answers[index] {
                return Err(Violation::StreamRestore { at, index });
            }
        }
        if restored.snapshot() != final_state {
            return Err(Violation::StreamFinalState { at });
        }
    }
    Ok(())
}

/// A fresh machine with a few commands applied: restore must replace the
/// state, not merge into it.
fn dirty<S: StateMachine>(make: &impl Fn() -> S, commands: &[Vec<u8>]) -> S {
    let mut machine = make();
    for command in commands.iter().rev().take(3) {
        machine.apply(command);
    }
    machine
}
