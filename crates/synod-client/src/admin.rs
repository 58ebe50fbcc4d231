//! Questions for one replica, answered by that replica alone: its status.
//!
//! Unlike a [`crate::Client`], these calls register no session, follow no
//! redirect and never go through the log: they connect to the one replica
//! named, with the client's certificate, and ask. They work with no leader,
//! and a replica that does not answer within the configuration's request
//! timeout is reported as such.
//!
//! ```no_run
//! use synod_client::{admin, ClientConfig};
//! use synod_wire::NodeId;
//!
//! # async fn demo(config: ClientConfig) {
//! match admin::status(&config, NodeId(2)).await {
//!     Ok(s) => println!("replica 2 applied up to {} (digest {:016x})", s.applied, s.digest),
//!     Err(e) => println!("replica 2: {e}"),
//! }
//! for (node, answer) in admin::status_all(&config).await {
//!     println!("{node}: {answer:?}");
//! }
//! # }
//! ```

use std::time::Duration;

use synod_transport::{ClientEndpoint, ClientStream, RecvError};
use synod_wire::{AdminQuery, AdminRequest, ClientFrame, ClientReply, NodeId, Outcome, ReplicaStatus, Wire};

use crate::ClientConfig;

/// Why a replica's status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The replica is not in the configuration's address book.
    #[error("replica {0} is not in the address book")]
    UnknownReplica(NodeId),
    /// The client's QUIC endpoint could not be created.
    #[error("cannot create the client endpoint: {0}")]
    Endpoint(#[source] synod_transport::StartError),
    /// The replica could not be reached (refused, wrong certificate, unreachable).
    #[error(transparent)]
    Connect(#[from] synod_transport::ConnectError),
    /// The query could not be sent, or the replica closed the stream before answering.
    #[error("the replica closed the stream: {0}")]
    Lost(String),
    /// No answer within the request timeout (a dead or stalled replica).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The replica answered something other than its status.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Asks replica `node` of `config`'s address book for its status.
///
/// The whole exchange (handshake, query, answer) gets `config`'s request
/// timeout. Must be called inside a tokio runtime.
pub async fn status(config: &ClientConfig, node: NodeId) -> Result<ReplicaStatus, StatusError> {
    let (_, addr) =
        config.replicas.iter().find(|(n, _)| *n == node).cloned().ok_or(StatusError::UnknownReplica(node))?;
    let endpoint = endpoint(config)?;
    let answer = ask(endpoint.connect(addr, Some(node)), config.request_timeout).await;
    endpoint.close();
    answer
}

/// Asks every replica of `config`'s address book for its status, all at
/// once, and returns the answers in address-book order; each gets `config`'s
/// request timeout, so the call takes at most about that long.
pub async fn status_all(config: &ClientConfig) -> Vec<(NodeId, Result<ReplicaStatus, StatusError>)> {
    let endpoint = match endpoint(config) {
        Ok(e) => std::sync::Arc::new(e),
        Err(e) => {
            let why = e.to_string();
            return config
                .replicas
                .iter()
                .map(|&(node, _)| (node, Err(StatusError::Lost(format!("no endpoint: {why}")))))
                .collect();
        }
    };
    let timeout = config.request_timeout;
    let tasks: Vec<_> = config
        .replicas
        .iter()
        .cloned()
        .map(|(node, addr)| {
            let endpoint = endpoint.clone();
            (node, tokio::spawn(async move { ask(endpoint.connect(addr, Some(node)), timeout).await }))
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for (node, task) in tasks {
        let answer = task.await.unwrap_or_else(|e| Err(StatusError::Lost(format!("task failed: {e}"))));
        answers.push((node, answer));
    }
    endpoint.close();
    answers
}

fn endpoint(config: &ClientConfig) -> Result<ClientEndpoint, StatusError> {
    ClientEndpoint::new(config.bind, config.credentials.clone(), config.transport.clone())
        .map_err(StatusError::Endpoint)
}

/// Connects with `connect`, asks for the status and waits for the answer, all within `timeout`.
async fn ask(
    connect: impl std::future::Future<Output = Result<ClientStream, synod_transport::ConnectError>>,
    timeout: Duration,
) -> Result<ReplicaStatus, StatusError> {
    let exchange = async {
        let mut stream = connect.await?;
        const ID: u64 = 1;
        let query = ClientFrame::Admin(AdminRequest { id: ID, query: AdminQuery::Status })
            .encode()
            .map_err(|e| StatusError::Unexpected(e.to_string()))?;
        stream.send(query).map_err(|e| StatusError::Lost(e.to_string()))?;
        loop {
            let frame = stream.recv().await.map_err(|e: RecvError| StatusError::Lost(e.to_string()))?;
            let reply = ClientReply::decode(&frame).map_err(|e| StatusError::Unexpected(e.to_string()))?;
            match reply {
                ClientReply { id: ID, outcome: Outcome::Status(status) } => {
                    stream.close();
                    return Ok(status);
                }
                ClientReply { id: ID, outcome } => {
                    return Err(StatusError::Unexpected(format!("{outcome:?}")))
                }
                // Not ours: nothing else was asked on this stream, but never trust the other side.
                _ => continue,
            }
        }
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(StatusError::Timeout(timeout)))
}
