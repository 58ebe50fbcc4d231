//! The log's error types, one per operation family.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use synod_wire::EncodeError;

/// A write, fsync or file operation failed: the log has stopped and the node must stop.
///
/// After a failed fsync the kernel may already have dropped the dirty pages,
/// so nothing written since the last good fsync can be trusted; the log never
/// retries and never accepts another write.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FatalError {
    /// What was being done: "write", "fsync", "create", ...
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

/// Why [`crate::Wal::open`] failed. The node must not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The log is damaged somewhere other than its unsynced tail.
    #[error("corrupt log: {} at byte {offset}: {reason}", file.display())]
    Corrupt {
        /// The damaged segment file.
        file: PathBuf,
        /// The byte offset of the damage within it.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
}

/// Why a write through [`crate::Wal`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A record could not be encoded (it is too large); nothing was written and the log goes on.
    #[error("cannot encode record: {0}")]
    Encode(#[from] EncodeError),
    /// The log failed now or earlier and accepts nothing more.
    #[error("log failed: {0}")]
    Failed(Arc<FatalError>),
}

/// Why reading entries for catch-up failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file operation failed.
    #[error("read {}: {source}", path.display())]
    Io {
        /// The segment file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The segment holding the entry was dropped by a prefix truncation meanwhile.
    #[error("entries from slot {slot} were truncated away")]
    Truncated {
        /// The first slot that could not be read.
        slot: u64,
    },
    /// A record that passed recovery no longer checks out.
    #[error("corrupt log: {} at byte {offset}: {reason}", file.display())]
    Corrupt {
        /// The damaged segment file.
        file: PathBuf,
        /// The byte offset of the frame.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
}

/// Why [`crate::inspect`] could not read a log directory. Damage is not an error: it is reported.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct InspectError {
    /// What was being done.
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

impl From<InspectError> for OpenError {
    fn from(e: InspectError) -> Self {
        OpenError::Io { op: e.op, path: e.path, source: e.source }
    }
}
