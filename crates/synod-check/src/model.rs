//! The sequential specification of one key of the key-value store.

/// What an operation asked of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// Read the value.
    Get,
    /// Store a value.
    Put(Vec<u8>),
    /// Remove the value.
    Delete,
    /// Compare-and-swap: if the key holds `expected` (`None`: absent), store `new` (`None`: remove).
    Cas {
        /// The value required.
        expected: Option<Vec<u8>>,
        /// The value to store.
        new: Option<Vec<u8>>,
    },
}

/// What an operation got back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// A read's value, or a delete's previous value.
    Value(Option<Vec<u8>>),
    /// A put happened.
    Stored,
    /// A compare-and-swap's result.
    Cas {
        /// Whether it swapped.
        swapped: bool,
    },
    /// Not observed (an indeterminate operation).
    Unknown,
}

/// Applies `input` to `state`; returns the new state if `output` is what
/// the specification answers (any output is accepted for `Unknown`).
pub(crate) fn step(state: &Option<Vec<u8>>, input: &Input, output: &Output) -> Option<Option<Vec<u8>>> {
    let (next, answer) = match input {
        Input::Get => (state.clone(), Output::Value(state.clone())),
        Input::Put(v) => (Some(v.clone()), Output::Stored),
        Input::Delete => (None, Output::Value(state.clone())),
        Input::Cas { expected, new } => {
            if state == expected {
                (new.clone(), Output::Cas { swapped: true })
            } else {
                (state.clone(), Output::Cas { swapped: false })
            }
        }
    };
    (*output == Output::Unknown || *output == answer).then_some(next)
}
