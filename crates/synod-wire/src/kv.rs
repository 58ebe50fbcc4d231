//! The wire format of the bundled key-value store's commands and answers.
//!
//! It lives here, not in `synod-kv`, because clients speak it too and
//! depend only on `synod-wire`.

use rkyv::{Archive, Deserialize, Serialize};

/// One key-value operation.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvCommand {
    /// Read `key`.
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Set `key` to `value`; answers [`KvResponse::Stored`].
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key`; answers with the previous value.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// If `key` holds `expected` (`None`: is absent), set it to `new` (`None`: remove it).
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The value the key must hold for the swap to happen.
        expected: Option<Vec<u8>>,
        /// The value to store.
        new: Option<Vec<u8>>,
    },
    /// Read every key of `keys`; answers [`KvResponse::Values`], one per key, in order.
    MultiGet {
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
    /// Set every pair, atomically (one command); answers [`KvResponse::Stored`].
    /// A key named twice takes its last value.
    MultiPut {
        /// The pairs.
        pairs: Vec<KvPair>,
    },
    /// Set every pair if none of their keys exists (Redis's MSETNX); answers
    /// [`KvResponse::Integer`]: 1 if they were set, 0 if nothing changed.
    MultiPutIfAbsent {
        /// The pairs.
        pairs: Vec<KvPair>,
    },
    /// Add `by` to the base-10 signed 64-bit integer `key` holds (absent:
    /// 0); answers the new value as [`KvResponse::Integer`], or
    /// [`KvResponse::Failed`] (not an integer, or overflow) changing nothing.
    Incr {
        /// The key.
        key: Vec<u8>,
        /// The increment (negative to decrement).
        by: i64,
    },
    /// Append `value` to `key`'s value (absent: empty); answers the new length.
    Append {
        /// The key.
        key: Vec<u8>,
        /// The bytes to append.
        value: Vec<u8>,
    },
    /// The length of `key`'s value (absent: 0), as [`KvResponse::Integer`].
    Strlen {
        /// The key.
        key: Vec<u8>,
    },
    /// How many of `keys` exist, a key named twice counted twice, as [`KvResponse::Integer`].
    Exists {
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
    /// Set `key` to `value` if `condition` holds; answers [`KvResponse::Set`].
    Set {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
        /// When to set it.
        condition: SetCondition,
    },
    /// Remove every key of `keys`; answers how many existed, as [`KvResponse::Integer`].
    DeleteMany {
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
}

/// A key and its value, in [`KvCommand::MultiPut`] and [`KvCommand::MultiPutIfAbsent`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvPair {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// When [`KvCommand::Set`] stores its value.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetCondition {
    /// Always (Redis's plain SET).
    Always,
    /// Only if the key is absent (NX).
    IfAbsent,
    /// Only if the key exists (XX).
    IfPresent,
}

/// Why a command changed nothing, as Redis would refuse it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvFailure {
    /// The value is not a base-10 signed 64-bit integer.
    NotAnInteger,
    /// The result would not fit in a signed 64-bit integer.
    Overflow,
}

impl KvFailure {
    /// Redis's error line for it, without the leading `-`.
    pub fn redis_message(self) -> &'static str {
        match self {
            KvFailure::NotAnInteger => "ERR value is not an integer or out of range",
            KvFailure::Overflow => "ERR increment or decrement would overflow",
        }
    }
}

/// The answer to a [`KvCommand`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvResponse {
    /// The value read, or the previous value of a delete.
    Value(Option<Vec<u8>>),
    /// A put was applied.
    Stored,
    /// The result of a compare-and-swap.
    Cas {
        /// Whether the swap happened.
        swapped: bool,
        /// The key's value before the operation.
        current: Option<Vec<u8>>,
    },
    /// The command could not be decoded.
    Invalid(String),
    /// The values read by [`KvCommand::MultiGet`], one per key.
    Values(Vec<Option<Vec<u8>>>),
    /// A count, a length or a counter's new value.
    Integer(i64),
    /// The result of [`KvCommand::Set`].
    Set {
        /// Whether the value was stored.
        stored: bool,
        /// The key's value before the command.
        previous: Option<Vec<u8>>,
    },
    /// The command was refused and changed nothing.
    Failed(KvFailure),
}
