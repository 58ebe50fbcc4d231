//! Questions for one replica, answered by that replica alone: its status and
//! the configuration it knows; and membership changes, made by the leader.
//!
//! Unlike a [`crate::Client`], these calls register no session and never go
//! through the log: [`status`], [`status_all`] and [`members_all`] connect
//! to the replicas named, with the client's certificate, and ask. They work
//! with no leader, and a replica that does not answer within the
//! configuration's request timeout is reported as such. [`members`] picks
//! the leader's answer; [`change`] finds the leader (following redirects,
//! learning addresses it lacks from the members' answers) and asks it to
//! change the configuration.
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

use std::collections::BTreeMap;
use std::time::Duration;

use synod_transport::{ClientEndpoint, ClientStream, PeerAddr, RecvError};
use synod_wire::{
    AdminQuery, AdminRequest, ChangeRequest, ClientFrame, ClientReply, MemberChange, MembersView, NodeId,
    Outcome, ReplicaStatus, Wire,
};

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

/// Asks every replica of `config`'s address book, all at once, for the
/// configuration it knows, and returns the answers in address-book order;
/// each gets `config`'s request timeout.
pub async fn members_all(config: &ClientConfig) -> Vec<(NodeId, Result<MembersView, StatusError>)> {
    ask_all(config, |endpoint, node, addr, timeout| async move {
        let answer = exchange(endpoint.connect(addr, Some(node)), members_query(), MEMBERS_ID, timeout).await;
        match answer? {
            Outcome::Members(view) => Ok(view),
            other => Err(StatusError::Unexpected(format!("{other:?}"))),
        }
    })
    .await
}

/// The configuration as the cluster knows it: of the answers of
/// [`members_all`], the one from the replica that leads (a replica whose
/// answer names itself as leader), else the one with the newest epoch.
/// Fails with the first error if no replica answers.
pub async fn members(config: &ClientConfig) -> Result<MembersView, StatusError> {
    best_view(members_all(config).await)
}

/// Picks the leader's view, else the newest, of `answers`.
pub fn best_view(
    answers: Vec<(NodeId, Result<MembersView, StatusError>)>,
) -> Result<MembersView, StatusError> {
    let mut first_error = None;
    let mut best: Option<MembersView> = None;
    for (_, answer) in answers {
        match answer {
            Ok(view) => {
                let leads = |v: &MembersView| v.leader == Some(v.from);
                let better = match &best {
                    None => true,
                    Some(b) => (view.epoch, leads(&view)) > (b.epoch, leads(b)),
                };
                if better {
                    best = Some(view);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    best.ok_or_else(|| first_error.unwrap_or(StatusError::Lost("no replica to ask".into())))
}

/// Why a membership change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The leader refused it, and said why; nothing changed.
    #[error("refused: {0}")]
    Refused(String),
    /// No leader answered before the deadline.
    #[error("no leader answered within {after:?} (last: {last})")]
    NoLeader {
        /// How long it tried.
        after: Duration,
        /// The last thing that went wrong.
        last: String,
    },
}

/// Asks the leader to make `change`, and returns the configuration it made.
///
/// The leader is found from the replicas' answers to [`AdminQuery::Members`]
/// and by following redirects; an address the client's book lacks is taken
/// from those answers. A replica that cannot be reached is retried, the next
/// one tried, until `config`'s deadline. A change is answered once it is
/// chosen, which takes at least one round trip among the members and, when
/// the leader was just elected, until it has committed a slot of its own.
///
/// A change whose answer was lost is not known to have failed: asking again
/// is then refused if it was made (for example "replica 4 is already a
/// member"); [`members`] says which.
pub async fn change(config: &ClientConfig, change: MemberChange) -> Result<MembersView, ChangeError> {
    let started = tokio::time::Instant::now();
    let deadline = started + config.deadline;
    let endpoint =
        endpoint(config).map_err(|e| ChangeError::NoLeader { after: Duration::ZERO, last: e.to_string() })?;
    let mut book: BTreeMap<NodeId, PeerAddr> = config.replicas.iter().cloned().collect();
    let mut learned = members_all(config).await;
    let mut target = None;
    let mut last = String::from("no replica answered");
    let mut turn = 0usize;
    // A change waits for the leader to settle and a quorum to accept: give it more than one request timeout.
    let answer_timeout = config.request_timeout.max(Duration::from_secs(10));
    let mut id = 1u64;
    while tokio::time::Instant::now() < deadline {
        for (_, view) in learned.drain(..) {
            if let Ok(view) = view {
                learn(&mut book, &view);
                if target.is_none() {
                    target = view.leader;
                }
            }
        }
        let node = match target.take() {
            Some(node) => node,
            None => {
                let ids: Vec<NodeId> = book.keys().copied().collect();
                turn += 1;
                ids[turn % ids.len()]
            }
        };
        let Some(addr) = book.get(&node).cloned() else {
            // A leader whose address the book lacks: the members' answers have it.
            learned = members_all(&with_book(config, &book)).await;
            last = format!("replica {node} leads, but its address is unknown");
            continue;
        };
        id += 1;
        let frame = ClientFrame::Change(ChangeRequest { id, change: change.clone() });
        let frame = frame.encode().map_err(|e| ChangeError::Refused(e.to_string()))?;
        match exchange(endpoint.connect(addr.clone(), Some(node)), frame, id, answer_timeout).await {
            Ok(Outcome::Members(view)) => {
                endpoint.close();
                return Ok(view);
            }
            Ok(Outcome::Refused(why)) => {
                endpoint.close();
                return Err(ChangeError::Refused(why));
            }
            Ok(Outcome::Redirect { leader: Some(leader) }) if leader != node => {
                last = format!("replica {node} redirected to replica {leader}");
                target = Some(leader);
                if !book.contains_key(&leader) {
                    learned = members_all(&with_book(config, &book)).await;
                }
                // Two replicas with stale beliefs could send it back and forth: not in a tight loop.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Ok(Outcome::Redirect { .. }) => last = format!("replica {node} knows no leader"),
            Ok(other) => last = format!("replica {node} answered {other:?}"),
            Err(e) => last = format!("replica {node} at {addr}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    endpoint.close();
    Err(ChangeError::NoLeader { after: started.elapsed(), last })
}

/// Adds the addresses `view` names to `book`.
fn learn(book: &mut BTreeMap<NodeId, PeerAddr>, view: &MembersView) {
    for m in &view.members {
        if let Ok(addr) = PeerAddr::parse(&m.addr) {
            book.insert(m.id, addr);
        }
    }
}

/// `config` with the address book `book`.
fn with_book(config: &ClientConfig, book: &BTreeMap<NodeId, PeerAddr>) -> ClientConfig {
    let mut c = config.clone();
    c.replicas = book.iter().map(|(&n, a)| (n, a.clone())).collect();
    c
}

const MEMBERS_ID: u64 = 1;

fn members_query() -> Vec<u8> {
    ClientFrame::Admin(AdminRequest { id: MEMBERS_ID, query: AdminQuery::Members })
        .encode()
        .expect("a members query encodes")
}

/// Asks every replica of `config`'s address book for its status, all at
/// once, and returns the answers in address-book order; each gets `config`'s
/// request timeout, so the call takes at most about that long.
pub async fn status_all(config: &ClientConfig) -> Vec<(NodeId, Result<ReplicaStatus, StatusError>)> {
    ask_all(config, |endpoint, node, addr, timeout| async move {
        ask(endpoint.connect(addr, Some(node)), timeout).await
    })
    .await
}

/// Runs `query` against every replica of `config`'s address book at once,
/// each with `config`'s request timeout on one shared endpoint, and returns
/// the answers in address-book order.
async fn ask_all<T, F, Fut>(config: &ClientConfig, query: F) -> Vec<(NodeId, Result<T, StatusError>)>
where
    T: Send + 'static,
    F: Fn(std::sync::Arc<ClientEndpoint>, NodeId, PeerAddr, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T, StatusError>> + Send + 'static,
{
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
        .map(|(node, addr)| (node, tokio::spawn(query(endpoint.clone(), node, addr, timeout))))
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
    const ID: u64 = 1;
    let query = ClientFrame::Admin(AdminRequest { id: ID, query: AdminQuery::Status })
        .encode()
        .map_err(|e| StatusError::Unexpected(e.to_string()))?;
    match exchange(connect, query, ID, timeout).await? {
        Outcome::Status(status) => Ok(status),
        outcome => Err(StatusError::Unexpected(format!("{outcome:?}"))),
    }
}

/// Connects with `connect`, sends `frame` and waits for the answer to request `id`, all within `timeout`.
async fn exchange(
    connect: impl std::future::Future<Output = Result<ClientStream, synod_transport::ConnectError>>,
    frame: Vec<u8>,
    id: u64,
    timeout: Duration,
) -> Result<Outcome, StatusError> {
    let exchange = async {
        let mut stream = connect.await?;
        stream.send(frame).map_err(|e| StatusError::Lost(e.to_string()))?;
        loop {
            let frame = stream.recv().await.map_err(|e: RecvError| StatusError::Lost(e.to_string()))?;
            let reply = ClientReply::decode(&frame).map_err(|e| StatusError::Unexpected(e.to_string()))?;
            if reply.id == id {
                stream.close();
                return Ok(reply.outcome);
            }
            // Not ours: nothing else was asked on this stream, but never trust the other side.
        }
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(StatusError::Timeout(timeout)))
}
