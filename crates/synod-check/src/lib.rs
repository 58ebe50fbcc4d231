//! synod-check: decides whether a concurrent key-value history is linearizable.
//!
//! A history is what clients observed: each operation's invocation time,
//! its completion time (or none, for an indeterminate operation such as a
//! timeout, which may or may not have taken effect), what it asked and what
//! it got back. The checker searches for a total order that respects
//! real time (an operation that completed before another was invoked comes
//! first) and the key-value semantics, using the Wing-Gong algorithm with
//! Lowe's memoization of (linearized set, state) pairs, as porcupine does.
//! Operations on different keys never interact, so each key is checked on
//! its own (P-compositionality).
//!
//! The checker is deterministic and reads no clock: a caller that wants a
//! time budget passes a `give_up` callback, and an exhausted budget yields
//! [`Verdict::Unknown`], never a pass.
//!
//! ```
//! use synod_check::{check, Op, Input, Output, Verdict};
//!
//! let history = vec![
//!     Op::ok(0, 0, 10, b"k", Input::Put(b"1".to_vec()), Output::Stored),
//!     // Invoked after the put completed, this read must see it.
//!     Op::ok(1, 20, 30, b"k", Input::Get, Output::Value(None)),
//! ];
//! assert!(matches!(check(&history, &mut || false).verdict(), Verdict::Illegal { .. }));
//! ```
#![warn(missing_docs)]

mod model;
mod wgl;

pub use model::{Input, Output};

use std::collections::BTreeMap;

/// One operation as a client observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client (process) that ran it; a client runs one operation at a time.
    pub client: u64,
    /// When it was invoked (any monotonic unit).
    pub call: u64,
    /// When its answer arrived; `None` if it is indeterminate (it may or may
    /// not have taken effect, at any time after `call`).
    pub ret: Option<u64>,
    /// The key.
    pub key: Vec<u8>,
    /// What was asked.
    pub input: Input,
    /// What came back (ignored for indeterminate operations).
    pub output: Output,
}

impl Op {
    /// A completed operation.
    pub fn ok(client: u64, call: u64, ret: u64, key: &[u8], input: Input, output: Output) -> Op {
        Op { client, call, ret: Some(ret), key: key.to_vec(), input, output }
    }

    /// An indeterminate operation (a timeout, a lost connection).
    pub fn info(client: u64, call: u64, key: &[u8], input: Input) -> Op {
        Op { client, call, ret: None, key: key.to_vec(), input, output: Output::Unknown }
    }
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists. `longest` is the longest prefix of
    /// operations (indices into the history) that could be linearized.
    Illegal {
        /// Operations linearized in the deepest partial order found.
        longest: Vec<usize>,
    },
    /// The budget ran out first: nothing is known.
    Unknown,
}

/// The verdicts of a history, per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Each key's verdict.
    pub keys: BTreeMap<Vec<u8>, Verdict>,
}

impl Report {
    /// The overall verdict: illegal if any key is, else unknown if any key is, else linearizable.
    pub fn verdict(&self) -> Verdict {
        if let Some(v) = self.keys.values().find(|v| matches!(v, Verdict::Illegal { .. })) {
            return v.clone();
        }
        if self.keys.values().any(|v| *v == Verdict::Unknown) {
            return Verdict::Unknown;
        }
        Verdict::Linearizable
    }
}

/// Checks `history` key by key. `give_up` is polled now and then; once it
/// returns true, keys not yet decided are [`Verdict::Unknown`].
pub fn check(history: &[Op], give_up: &mut dyn FnMut() -> bool) -> Report {
    run(history, &mut |poll| poll == Poll::Step && give_up())
}

/// Checks `history` key by key with a fresh budget for each key: `budget`
/// is called once per key and returns that key's `give_up` poll (for
/// example, a closure comparing a clock read at its creation with a limit).
pub fn check_per_key(history: &[Op], budget: &mut dyn FnMut() -> Box<dyn FnMut() -> bool>) -> Report {
    let mut current: Option<Box<dyn FnMut() -> bool>> = None;
    run(history, &mut |poll| match poll {
        Poll::NewKey => {
            current = Some(budget());
            false
        }
        Poll::Step => current.as_mut().is_some_and(|give_up| give_up()),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    NewKey,
    Step,
}

fn run(history: &[Op], poll: &mut dyn FnMut(Poll) -> bool) -> Report {
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        by_key.entry(op.key.as_slice()).or_default().push(i);
    }
    let keys = by_key
        .into_iter()
        .map(|(key, indices)| {
            let ops: Vec<&Op> = indices.iter().map(|&i| &history[i]).collect();
            poll(Poll::NewKey);
            let verdict = match wgl::check_key(&ops, &mut || poll(Poll::Step)) {
                wgl::Outcome::Ok => Verdict::Linearizable,
                wgl::Outcome::Illegal(longest) => {
                    Verdict::Illegal { longest: longest.into_iter().map(|j| indices[j]).collect() }
                }
                wgl::Outcome::GaveUp => Verdict::Unknown,
            };
            (key.to_vec(), verdict)
        })
        .collect();
    Report { keys }
}
