//! The `Client` handle: connect, call, and the key-value helpers.

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use synod_transport::ClientEndpoint;
use synod_wire::{ClientId, KvCommand, KvResponse, Wire};

use crate::driver::{Call, Driver};
use crate::{ClientConfig, ClientError, ConnectError, ReadsFrom};

/// A session with a synod cluster.
///
/// Cheap to clone; every clone shares the one session and the one stream,
/// and may be used from many tasks at once: their requests are pipelined.
/// The background task that owns the connection stops when the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    calls: mpsc::Sender<Call>,
    /// The reader's calls, when reads outside the log have a connection of their own.
    reads: Option<mpsc::Sender<Call>>,
    session: ClientId,
    deadline: std::time::Duration,
}

/// A request handed over by [`Client::hand_over`]: its answer, to await.
#[derive(Debug)]
pub struct Pending {
    answer: oneshot::Receiver<Result<Vec<u8>, ClientError>>,
}

impl Pending {
    /// The state machine's answer, as [`Client::call`] or [`Client::read`] returns it.
    pub async fn answer(self) -> Result<Vec<u8>, ClientError> {
        self.answer.await.map_err(|_| ClientError::Closed)?
    }
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
        let mut endpoint =
            ClientEndpoint::new(config.bind, config.credentials.clone(), config.transport.clone())
                .map_err(ConnectError::Endpoint)?;
        if let Some(local) = &config.local {
            endpoint = endpoint.with_local(local.clone());
        }
        let endpoint = std::sync::Arc::new(endpoint);
        let deadline = config.deadline;
        let (calls_tx, calls_rx) = mpsc::channel(config.max_in_flight);
        let reads = (config.reads_from != ReadsFrom::Session).then(|| {
            let (reads_tx, reads_rx) = mpsc::channel(config.max_in_flight);
            Driver::spawn(config.clone(), endpoint.clone(), reads_rx, None);
            reads_tx
        });
        let (registered_tx, registered_rx) = oneshot::channel();
        Driver::spawn(config, endpoint, calls_rx, Some(registered_tx));
        let session = registered_rx.await.map_err(|_| ConnectError::Timeout(deadline))??;
        Ok(Client { calls: calls_tx, reads, session, deadline })
    }

    /// Applies `payload` to the replicated state machine, exactly once, and
    /// returns its answer.
    ///
    /// Retries across replicas are invisible except as latency: the request
    /// keeps its session sequence number, so the replicas apply it at most
    /// once and answer every retry with the first answer.
    pub async fn call(&self, payload: impl Into<Vec<u8>>) -> Result<Vec<u8>, ClientError> {
        self.submit(payload.into(), None).await
    }

    /// Answers `query` (a query of the state machine, as
    /// `StateMachine::read` takes it) as `mode` says and returns the
    /// machine's answer.
    ///
    /// Outside the log ([`ReadMode::Linearizable`], [`ReadMode::Lease`],
    /// [`ReadMode::Stale`]) the read needs no session. It is served by the
    /// replica this client's session is connected to (the leader), or by
    /// the one [`ClientConfig::with_reads_from`](crate::ClientConfig::with_reads_from)
    /// chose for linearizable and stale reads; lease reads always go to the leader. A replica that cannot serve it
    /// as asked (no leader to confirm it) answers `Unavailable`, and the read
    /// is asked again after a pause until the deadline, then fails with
    /// [`ClientError::Timeout`]: never an old value in its place. A state
    /// machine that serves no reads outside the log answers every such read
    /// `Unavailable`, so they time out: read through the log instead.
    /// [`ReadMode::ThroughLog`] applies `query` as a command through the
    /// log, as [`Client::call`] does.
    pub async fn read(&self, query: impl Into<Vec<u8>>, mode: ReadMode) -> Result<Vec<u8>, ClientError> {
        self.submit(query.into(), mode.wire()).await
    }

    async fn submit(
        &self,
        payload: Vec<u8>,
        read: Option<synod_wire::ReadMode>,
    ) -> Result<Vec<u8>, ClientError> {
        self.hand_over(payload, read.map(ReadMode::from)).await?.answer().await
    }

    /// Hands `payload` to the session now and returns its answer to await
    /// later: a command through the log (`mode` `None` or
    /// [`ReadMode::ThroughLog`], as [`Client::call`]) or a read outside it
    /// (as [`Client::read`]).
    ///
    /// Returns once the request is queued (waiting only for room among the
    /// requests in flight), so requests handed over one after another from
    /// one task are numbered, and sent, in that order: a front end that must
    /// keep a connection's commands in order (synod-resp) hands them over in
    /// order and awaits their answers concurrently.
    pub async fn hand_over(
        &self,
        payload: impl Into<Vec<u8>>,
        mode: Option<ReadMode>,
    ) -> Result<Pending, ClientError> {
        let read = mode.and_then(ReadMode::wire);
        let deadline = Instant::now() + self.deadline;
        let (reply, answer) = oneshot::channel();
        let call = Call { payload: payload.into(), read, deadline, reply };
        // Linearizable and stale reads go to the reader, if there is one; lease reads need the leader.
        let calls = match (&self.reads, read) {
            (Some(reads), Some(synod_wire::ReadMode::Linearizable | synod_wire::ReadMode::Stale)) => reads,
            _ => &self.calls,
        };
        // Waiting for room (and arming a timer for it) only when the driver is behind.
        match calls.try_send(call) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(ClientError::Closed),
            Err(mpsc::error::TrySendError::Full(call)) => {
                match tokio::time::timeout_at(deadline, calls.send(call)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(ClientError::Closed),
                    Err(_) => return Err(ClientError::Timeout),
                }
            }
        }
        Ok(Pending { answer })
    }

    /// The session's id, assigned by the replicas when it was registered.
    pub fn session(&self) -> ClientId {
        self.session
    }

    /// Reads `key` from the bundled key-value store: a linearizable read
    /// outside the log ([`ReadMode::Linearizable`]), served by the replica
    /// this client is connected to.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ClientError> {
        self.get_with(key, ReadMode::Linearizable).await
    }

    /// Reads `key` from whatever the connected replica has applied, at
    /// once: not linearizable ([`ReadMode::Stale`]); it may miss writes
    /// already acknowledged.
    pub async fn get_stale(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ClientError> {
        self.get_with(key, ReadMode::Stale).await
    }

    /// Reads `key` from the bundled key-value store as `mode` says
    /// ([`ReadMode::ThroughLog`]: a get through the replicated log).
    pub async fn get_with(
        &self,
        key: impl AsRef<[u8]>,
        mode: ReadMode,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let query = KvCommand::Get { key: key.as_ref().to_vec() };
        let response = match mode {
            ReadMode::ThroughLog => self.kv(query).await?,
            _ => decode_kv(self.read(query.encode()?, mode).await?)?,
        };
        match response {
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
        decode_kv(self.call(command.encode()?).await?)
    }
}

fn decode_kv(answer: Vec<u8>) -> Result<KvResponse, ClientError> {
    match KvResponse::decode(&answer) {
        Ok(KvResponse::Invalid(reason)) => Err(ClientError::Store(reason)),
        Ok(response) => Ok(response),
        Err(e) => Err(ClientError::UnexpectedAnswer(e.to_string())),
    }
}

/// How a read is served (docs/OPERATIONS.md, "Reads").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// Linearizable, outside the log (ReadIndex): the leader confirms it
    /// still leads with one round to a majority, shared by the reads that
    /// arrive meanwhile, and the replica serving the read waits until it has
    /// applied the leader's commit point. The default.
    #[default]
    Linearizable,
    /// Asks for a leader lease read; today the replicas serve it exactly as
    /// [`ReadMode::Linearizable`].
    Lease,
    /// Whatever the connected replica has applied, at once: not
    /// linearizable, it may miss acknowledged writes.
    Stale,
    /// Through the replicated log, as a command: linearizable, and costs a
    /// slot, a durable write on a majority and a session.
    ThroughLog,
}

impl ReadMode {
    /// Every mode, in the order [`ReadMode::name`]s are listed.
    pub const ALL: [ReadMode; 4] =
        [ReadMode::Linearizable, ReadMode::Lease, ReadMode::Stale, ReadMode::ThroughLog];

    /// How the mode is spelled on a command line: `linearizable`, `lease`, `stale`, `log`.
    pub fn name(self) -> &'static str {
        match self {
            ReadMode::Linearizable => "linearizable",
            ReadMode::Lease => "lease",
            ReadMode::Stale => "stale",
            ReadMode::ThroughLog => "log",
        }
    }

    /// The wire's mode of a read outside the log; `None` for [`ReadMode::ThroughLog`].
    pub fn wire(self) -> Option<synod_wire::ReadMode> {
        match self {
            ReadMode::Linearizable => Some(synod_wire::ReadMode::Linearizable),
            ReadMode::Lease => Some(synod_wire::ReadMode::Lease),
            ReadMode::Stale => Some(synod_wire::ReadMode::Stale),
            ReadMode::ThroughLog => None,
        }
    }
}

impl From<synod_wire::ReadMode> for ReadMode {
    fn from(mode: synod_wire::ReadMode) -> ReadMode {
        match mode {
            synod_wire::ReadMode::Linearizable => ReadMode::Linearizable,
            synod_wire::ReadMode::Lease => ReadMode::Lease,
            synod_wire::ReadMode::Stale => ReadMode::Stale,
        }
    }
}

impl std::fmt::Display for ReadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ReadMode {
    type Err = String;

    /// `linearizable`, `lease`, `stale`, or `log` (also `through-log`).
    fn from_str(s: &str) -> Result<ReadMode, String> {
        match s {
            "through-log" | "through_log" => Ok(ReadMode::ThroughLog),
            _ => ReadMode::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
                format!("unknown read mode {s:?}: expected linearizable, lease, stale or log")
            }),
        }
    }
}

fn unexpected(what: &str, response: &KvResponse) -> ClientError {
    let kind = match response {
        KvResponse::Value(_) => "a value",
        KvResponse::Stored => "stored",
        KvResponse::Cas { .. } => "a compare-and-swap result",
        KvResponse::Invalid(_) => "invalid",
        KvResponse::Values(_) => "values",
        KvResponse::Integer(_) => "an integer",
        KvResponse::Set { .. } => "a set result",
        KvResponse::Failed(_) => "a refusal",
    };
    ClientError::UnexpectedAnswer(format!("{kind} in answer to {what}"))
}
