//! The group-commit layer's error: why an append was refused. The log's own errors are synod-wal's.

use std::sync::Arc;

use synod_wire::{EncodeError, LogRecord};

use crate::FatalError;

/// Why [`crate::Appender::append`] refused records; the records are handed back.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A record could not be encoded (it is too large); the log goes on.
    #[error("cannot encode record: {source}")]
    Encode {
        /// The encoder's complaint.
        source: EncodeError,
        /// The records, not appended.
        records: Vec<LogRecord>,
    },
    /// The log thread has stopped, after a fatal error or a shutdown.
    #[error("log stopped{}", fatal.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Stopped {
        /// The error that stopped it, if one did.
        fatal: Option<Arc<FatalError>>,
        /// The records, not appended.
        records: Vec<LogRecord>,
    },
}
