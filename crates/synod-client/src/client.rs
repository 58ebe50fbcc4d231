//! The `Client` handle: connect, call, and the key-value helpers.

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use synod_transport::ClientEndpoint;
use synod_wire::{ClientId, KvCommand, KvResponse, Wire};

use crate::driver::{Call, Driver};
use crate::{ClientConfig, ClientError, ConnectError};

/// A session with a synod cluster.
///
/// Cheap to clone; every clone shares the one session and the one stream,
/// and may be used from many tasks at once: their requests are pipelined.
/// The background task that owns the connection stops when the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    calls: mpsc::Sender<Call>,
    session: ClientId,
    deadline: std::time::Duration,
}

/// The result of [`Client::cas`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CasOutcome {
    /// Whether the key held the expected value, so the new one was stored.
    pub swapped: bool,
    /// The key's value before the operation (equal to the expected value when `swapped`).
    pub previous: Option<Vec<u8>>,
}

impl Client {
    /// Connects to a replica of the address book, following redirects to the
    /// leader, and registers a session through the replicated log.
    ///
    /// Must be called inside a tokio runtime. Fails with
    /// [`ConnectError::Connect`] as soon as every replica was tried and none
    /// could be reached, or with [`ConnectError::Timeout`] when no session was
    /// registered within the configured deadline.
    pub async fn connect(config: ClientConfig) -> Result<Client, ConnectError> {
        let endpoint = ClientEndpoint::new(config.bind, config.credentials.clone(), config.transport.clone())
            .map_err(ConnectError::Endpoint)?;
        let deadline = config.deadline;
        let (calls_tx, calls_rx) = mpsc::channel(config.max_in_flight);
        let (registered_tx, registered_rx) = oneshot::channel();
        Driver::spawn(config, endpoint, calls_rx, registered_tx);
        let session = registered_rx.await.map_err(|_| ConnectError::Timeout(deadline))??;
        Ok(Client { calls: calls_tx, session, deadline })
    }

    /// Applies `payload` to the replicated state machine, exactly once, and
    /// returns its answer.
    ///
    /// Retries across replicas are invisible except as latency: the request
    /// keeps its session sequence number, so the replicas apply it at most
    /// once and answer every retry with the first answer.
    pub async fn call(&self, payload: impl Into<Vec<u8>>) -> Result<Vec<u8>, ClientError> {
        let deadline = Instant::now() + self.deadline;
        let (reply, answer) = oneshot::channel();
        let call = Call { payload: payload.into(), deadline, reply };
        // Waiting for room (and arming a timer for it) only when the driver is behind.
        match self.calls.try_send(call) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(ClientError::Closed),
            Err(mpsc::error::TrySendError::Full(call)) => {
                match tokio::time::timeout_at(deadline, self.calls.send(call)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(ClientError::Closed),
                    Err(_) => return Err(ClientError::Timeout),
                }
            }
        }
        answer.await.map_err(|_| ClientError::Closed)?
    }

    /// The session's id, assigned by the replicas when it was registered.
    pub fn session(&self) -> ClientId {
        self.session
    }

    /// Reads `key` from the bundled key-value store.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ClientError> {
        match self.kv(KvCommand::Get { key: key.as_ref().to_vec() }).await? {
            KvResponse::Value(value) => Ok(value),
            other => Err(unexpected("get", &other)),
        }
    }

    /// Sets `key` to `value` in the bundled key-value store.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), ClientError> {
        let command = KvCommand::Put { key: key.as_ref().to_vec(), value: value.as_ref().to_vec() };
        match self.kv(command).await? {
            KvResponse::Stored => Ok(()),
            other => Err(unexpected("put", &other)),
        }
    }

    /// Removes `key` from the bundled key-value store; returns its previous value.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ClientError> {
        match self.kv(KvCommand::Delete { key: key.as_ref().to_vec() }).await? {
            KvResponse::Value(previous) => Ok(previous),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Compare-and-swap in the bundled key-value store: if `key` holds
    /// `expected` (`None`: is absent), set it to `new` (`None`: remove it).
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<CasOutcome, ClientError> {
        let command = KvCommand::Cas {
            key: key.as_ref().to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.map(<[u8]>::to_vec),
        };
        match self.kv(command).await? {
            KvResponse::Cas { swapped, current } => Ok(CasOutcome { swapped, previous: current }),
            other => Err(unexpected("cas", &other)),
        }
    }

    async fn kv(&self, command: KvCommand) -> Result<KvResponse, ClientError> {
        let answer = self.call(command.encode()?).await?;
        match KvResponse::decode(&answer) {
            Ok(KvResponse::Invalid(reason)) => Err(ClientError::Store(reason)),
            Ok(response) => Ok(response),
            Err(e) => Err(ClientError::UnexpectedAnswer(e.to_string())),
        }
    }
}

fn unexpected(what: &str, response: &KvResponse) -> ClientError {
    let kind = match response {
        KvResponse::Value(_) => "a value",
        KvResponse::Stored => "stored",
        KvResponse::Cas { .. } => "a compare-and-swap result",
        KvResponse::Invalid(_) => "invalid",
    };
    ClientError::UnexpectedAnswer(format!("{kind} in answer to {what}"))
}
