//! The listener: one task per connection reading commands and handing
//! them to the cluster in order, one task writing their replies in order.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio_rustls::rustls;

use synod_client::{admin, Client, ClientConfig, ClientError, ReadMode};
use synod_wire::{KvResponse, NodeId, Wire, MAX_FRAME_LEN};

use crate::command::{answer, plan, Action, ConnState, REDIS_VERSION};
use crate::parse::parse;
use crate::Reply;

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// The most replies a connection keeps pending before it stops reading.
const PIPELINE_DEPTH: usize = 1024;

/// How a [`RespServer`] is set up.
#[derive(Debug, Clone)]
pub struct RespConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// AUTH's password; `None`: no AUTH needed.
    pub password: Option<String>,
    /// The replica this listener runs beside, for INFO (its role, leader and slots).
    pub node: Option<NodeId>,
    /// The largest command accepted, in bytes (at most the wire's frame limit).
    pub max_frame: usize,
    /// TLS for every connection (as `redis-cli --tls --cacert --cert --key`
    /// speaks it): required to listen on an address that is not loopback.
    /// Build it with `synod_transport::tls::tcp_server_config`, which asks
    /// for a client certificate of the cluster's CA.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl RespConfig {
    /// A listener on `listen`, no password, no replica for INFO, the wire's frame limit.
    pub fn new(listen: SocketAddr) -> RespConfig {
        RespConfig { listen, password: None, node: None, max_frame: MAX_FRAME_LEN, tls: None }
    }
}

/// Why the listener did not start.
#[derive(Debug)]
pub enum StartError {
    /// The address is not a loopback address, and the listener has no TLS.
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    Bind(SocketAddr, std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NotLoopback(a) => write!(
                f,
                "the RESP listener binds {a}, which is not a loopback address, without TLS: plain-text Redis \
                 traffic off this host would bypass the cluster's mutual TLS. Set tls = true in [resp] \
                 (clients then connect with redis-cli --tls --cacert ca.pem --cert client-N.pem --key client-N.key), \
                 or listen on 127.0.0.1"
            ),
            StartError::Bind(a, e) => write!(f, "cannot listen for RESP on {a}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Refuses a listening address that is not loopback unless the listener
/// has TLS (`tls`): plain-text RESP must not leave the host.
pub fn check_listen(listen: SocketAddr, tls: bool) -> Result<(), StartError> {
    if tls || listen.ip().is_loopback() {
        Ok(())
    } else {
        Err(StartError::NotLoopback(listen))
    }
}

/// Binds `config.listen`, refusing a non-loopback address without TLS ([`check_listen`]).
pub async fn bind(config: &RespConfig) -> Result<TcpListener, StartError> {
    check_listen(config.listen, config.tls.is_some())?;
    TcpListener::bind(config.listen).await.map_err(|e| StartError::Bind(config.listen, e))
}

/// A running RESP front door.
#[derive(Debug)]
pub struct RespServer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: RespConfig,
    client: Client,
    client_config: ClientConfig,
    started: Instant,
    next_id: AtomicU64,
    port: u16,
}

impl RespServer {
    /// Serves RESP on `listener` (see [`bind`]) through `client`, a session
    /// with the cluster made from `client_config` (used again for INFO's
    /// status query). Runs until the task is dropped or aborted.
    pub async fn serve(
        listener: TcpListener,
        client: Client,
        client_config: ClientConfig,
        config: RespConfig,
    ) {
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let shared = Arc::new(Shared {
            config,
            client,
            client_config,
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            port,
        });
        let server = RespServer { shared };
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let shared = server.shared.clone();
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        tracing::debug!(%peer, "RESP connection");
                        match shared.config.tls.clone() {
                            None => connection(stream, shared).await,
                            Some(tls) => {
                                let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                                match tokio::time::timeout(TLS_HANDSHAKE, accept).await {
                                    Ok(Ok(stream)) => connection(stream, shared).await,
                                    Ok(Err(e)) => {
                                        tracing::info!(%peer, error = %e, "RESP: TLS handshake failed")
                                    }
                                    Err(_) => {
                                        tracing::info!(%peer, "RESP: no TLS handshake within {TLS_HANDSHAKE:?}")
                                    }
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RESP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// One reply to come, in order.
enum Slot {
    Ready(Reply),
    Later(ReplyFuture, Kind),
    /// Write this, then close the connection.
    Close(Reply),
}

/// What an outstanding request is, for the ordering rules.
#[derive(Clone, Copy)]
enum Kind {
    /// A command through the log.
    Log,
    /// A read outside the log.
    Read,
    /// Neither (INFO).
    Other,
}

/// Requests of one connection still unanswered, by kind.
#[derive(Default)]
struct InFlight {
    log: AtomicUsize,
    reads: AtomicUsize,
    reads_done: Notify,
}

async fn connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Slot>(PIPELINE_DEPTH);
    let flight = Arc::new(InFlight::default());
    let writer = tokio::spawn(write_replies(wr, rx, flight.clone()));
    let mut conn = ConnState {
        authenticated: shared.config.password.is_none(),
        name: None,
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut start = 0;
    'read: loop {
        // Every whole command in the buffer, in order.
        loop {
            match parse(&buf[start..], shared.config.max_frame) {
                Ok(None) => break,
                Ok(Some((args, used))) => {
                    start += used;
                    if args.is_empty() {
                        continue;
                    }
                    let slot = handle(&args, &mut conn, &shared, &flight).await;
                    let close = matches!(slot, Slot::Close(_));
                    if tx.send(slot).await.is_err() || close {
                        break 'read;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Slot::Close(Reply::error(format!("ERR {e}")))).await;
                    break 'read;
                }
            }
        }
        buf.drain(..start);
        start = 0;
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 << 10);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The reply slot of one command, handed to the cluster (in order) if it needs it.
async fn handle(
    args: &[Vec<u8>],
    conn: &mut ConnState,
    shared: &Arc<Shared>,
    flight: &Arc<InFlight>,
) -> Slot {
    match plan(args, conn, shared.config.password.as_deref()) {
        Action::Reply(r) => Slot::Ready(r),
        Action::Quit => Slot::Close(Reply::ok()),
        Action::Info(section) => {
            let shared = shared.clone();
            Slot::Later(Box::pin(async move { info(&shared, section).await }), Kind::Other)
        }
        Action::Kv { command, read, shape } => {
            let payload = match command.encode() {
                Ok(p) => p,
                Err(e) => return Slot::Ready(Reply::error(format!("ERR synod: {e}"))),
            };
            // A read after writes still in flight on this connection goes
            // through the log behind them, so it sees them; a write after
            // reads still in flight waits for them, so they do not see it.
            let outside = read && flight.log.load(Ordering::Acquire) == 0;
            if !outside {
                loop {
                    let done = flight.reads_done.notified();
                    if flight.reads.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    done.await;
                }
            }
            let (mode, kind) =
                if outside { (Some(ReadMode::Linearizable), Kind::Read) } else { (None, Kind::Log) };
            match shared.client.hand_over(payload, mode).await {
                Ok(pending) => {
                    match kind {
                        Kind::Read => flight.reads.fetch_add(1, Ordering::AcqRel),
                        _ => flight.log.fetch_add(1, Ordering::AcqRel),
                    };
                    let reply = async move {
                        match pending.answer().await {
                            Ok(bytes) => match KvResponse::decode(&bytes) {
                                Ok(response) => answer(shape, response),
                                Err(e) => Reply::error(format!("ERR synod: undecodable answer: {e}")),
                            },
                            Err(e) => client_error(&e, kind),
                        }
                    };
                    Slot::Later(Box::pin(reply), kind)
                }
                Err(e) => Slot::Ready(client_error(&e, Kind::Other)),
            }
        }
    }
}

fn client_error(e: &ClientError, kind: Kind) -> Reply {
    match kind {
        Kind::Log => Reply::error(format!(
            "ERR synod: {e}; the command may or may not have been applied (its session keeps it at most once)"
        )),
        _ => Reply::error(format!("ERR synod: {e}")),
    }
}

async fn write_replies<S: AsyncWrite>(
    mut wr: WriteHalf<S>,
    mut rx: mpsc::Receiver<Slot>,
    flight: Arc<InFlight>,
) {
    let mut out = Vec::with_capacity(16 << 10);
    while let Some(slot) = rx.recv().await {
        let (reply, close) = match slot {
            Slot::Ready(r) => (r, false),
            Slot::Close(r) => (r, true),
            Slot::Later(future, kind) => {
                let r = future.await;
                match kind {
                    Kind::Log => drop(flight.log.fetch_sub(1, Ordering::AcqRel)),
                    Kind::Read => {
                        flight.reads.fetch_sub(1, Ordering::AcqRel);
                        flight.reads_done.notify_one();
                    }
                    Kind::Other => {}
                }
                (r, false)
            }
        };
        reply.encode(&mut out);
        // Write when nothing else is ready, so a pipeline's replies leave together.
        if close || rx.is_empty() || out.len() >= 64 << 10 {
            if wr.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if close {
            let _ = wr.shutdown().await;
            break;
        }
    }
    // A reader still waiting for room or for reads to finish sees the channel closed.
    rx.close();
    flight.reads_done.notify_one();
}

/// INFO's `server` and `replication` sections (`section`: one of them, `all`, `default`).
async fn info(shared: &Shared, section: Option<String>) -> Reply {
    let want = |s: &str| {
        matches!(section.as_deref(), None | Some("all" | "default" | "everything"))
            || section.as_deref() == Some(s)
    };
    let mut text = String::new();
    if want("server") {
        text.push_str(&format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nsynod_version:{}\r\nredis_mode:standalone\r\n\
             os:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            shared.port,
            shared.started.elapsed().as_secs(),
        ));
    }
    if want("replication") {
        // Every replica takes writes (they go to the leader), so each is a "master" to Redis clients.
        text.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n");
        if let Some(node) = shared.config.node {
            text.push_str(&format!("synod_node:{}\r\n", node.0));
            match admin::status(&shared.client_config, node).await {
                Ok(s) => text.push_str(&format!(
                    "synod_role:{}\r\nsynod_leader:{}\r\nsynod_ballot:{}\r\nsynod_commit_slot:{}\r\n\
                     synod_applied_slot:{}\r\nsynod_members:{}\r\n",
                    format!("{:?}", s.role).to_lowercase(),
                    s.leader.map_or_else(|| "none".to_owned(), |l| l.0.to_string()),
                    s.ballot,
                    s.commit.0,
                    s.applied.0,
                    s.members.iter().map(|m| m.0.to_string()).collect::<Vec<_>>().join(","),
                )),
                Err(e) => text.push_str(&format!(
                    "synod_status_error:{}\r\n",
                    e.to_string().replace(['\r', '\n'], " ")
                )),
            }
        }
        text.push_str("\r\n");
    }
    Reply::bulk(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_needs_tls() {
        let any: SocketAddr = "0.0.0.0:6379".parse().unwrap();
        let err = check_listen(any, false).unwrap_err().to_string();
        assert!(err.contains("not a loopback address") && err.contains("tls = true"), "{err}");
        assert!(check_listen(any, true).is_ok());
        assert!(check_listen("127.0.0.1:6379".parse().unwrap(), false).is_ok());
        assert!(check_listen("[::1]:6379".parse().unwrap(), false).is_ok());
    }
}
