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
}
