//! The client's errors: one enum per operation family (configuring, connecting, calling).

use std::path::PathBuf;
use std::time::Duration;

use synod_transport::certs::CertError;
use synod_transport::StartError;

/// Why a request was refused by the replicas' session table (defined by the client core).
pub use synod_client_core::Rejection;

/// Why a [`crate::ClientConfig`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The address book is empty.
    #[error("the address book names no replica")]
    NoReplicas,
    /// The configuration file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is malformed or names something unusable
    /// (the message starts with the file's path, then the field).
    #[error("{0}")]
    Invalid(String),
    /// The client's certificates could not be loaded.
    #[error("cannot load client credentials from {dir}: {source}")]
    Certs {
        /// The certificate directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: CertError,
    },
}

/// Why one connection attempt to a replica failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The transport could not connect (refused certificate, wrong replica, unreachable).
    #[error(transparent)]
    Transport(#[from] synod_transport::ConnectError),
    /// The handshake did not finish within the request timeout.
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
}

/// Why [`crate::Client::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The client's QUIC endpoint could not be created.
    #[error("cannot create the client endpoint: {0}")]
    Endpoint(#[source] StartError),
    /// Every replica of the address book was tried and none could be reached; this is the last failure.
    #[error("cannot reach any replica; last tried {addr}: {source}")]
    Connect {
        /// The last replica tried, as its address book gives it.
        addr: synod_transport::PeerAddr,
        /// Why it failed.
        #[source]
        source: LinkError,
    },
    /// Replicas were reachable but no session was registered within the deadline (no leader?).
    #[error("no session registered within {0:?}")]
    Timeout(Duration),
}

/// Why a call on a [`crate::Client`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No answer within the call's deadline. The request may or may not
    /// have taken effect; it will not take effect later than it would have,
    /// and never twice.
    #[error("no answer within the deadline")]
    Timeout,
    /// The session is unknown to the replicas (expired or evicted); connect a new client.
    #[error("session expired")]
    SessionExpired,
    /// The replicas' session table refused the request.
    #[error("request rejected: {0}")]
    Rejected(Rejection),
    /// The client's background task is gone.
    #[error("client closed")]
    Closed,
    /// The request could not be encoded (e.g. it exceeds the frame limit).
    #[error(transparent)]
    Encode(#[from] synod_wire::EncodeError),
    /// The key-value store refused the command as invalid.
    #[error("the store refused the command: {0}")]
    Store(String),
    /// The state machine's answer is not what the command expects (a store of another kind?).
    #[error("unexpected answer: {0}")]
    UnexpectedAnswer(String),
}
