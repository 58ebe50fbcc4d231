//! The client's configuration: the address book, credentials, timeouts and the pipelining limit.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use synod_transport::{Credentials, Identity, LocalClients, PeerAddr, Settings};
use synod_wire::NodeId;

use crate::ConfigError;

/// The most requests a client keeps in flight: the replicas' session window
/// (synod-session's default), beyond which a request would be refused as too far ahead.
pub const MAX_IN_FLIGHT: usize = 4096;

/// Everything a [`crate::Client`] needs. A config that exists is valid:
/// [`ClientConfig::new`] checks the address book, and the `with_*` setters
/// clamp their arguments into range.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) replicas: Vec<(NodeId, PeerAddr)>,
    pub(crate) credentials: Credentials,
    pub(crate) request_timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) transport: Settings,
    pub(crate) bind: SocketAddr,
    pub(crate) reads_from: ReadsFrom,
    /// The replica in this process, reached without QUIC.
    pub(crate) local: Option<LocalClients>,
}

/// Which replica serves a client's reads outside the log
/// ([`crate::ReadMode::Linearizable`] and [`crate::ReadMode::Stale`]).
///
/// Every replica serves linearizable reads: a follower asks the leader for
/// its commit point (ReadIndex, one request shared by every read that
/// arrived meanwhile), waits until it has applied that far, and answers
/// from its own state. Reading from followers spreads the read load over
/// every replica instead of putting it all on the leader. Lease reads and
/// commands always go to the leader, on the session's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadsFrom {
    /// On the session's connection, which follows the leader (the default).
    /// A read issued after a command's answer is served after it, in order,
    /// on one connection.
    #[default]
    Session,
    /// On a connection of their own to this replica, kept while it answers
    /// (then the next replica of the address book, as for commands).
    Replica(NodeId),
    /// On a connection of their own to a replica drawn at random when the
    /// client connects: many clients spread their reads over every replica.
    Spread,
}

impl ClientConfig {
    /// A configuration for the replicas of `replicas`, authenticating with `credentials`
    /// (a client's, or a replica's for tools running on a replica host).
    ///
    /// `replicas` maps replica ids to `SocketAddr`s or [`PeerAddr`]s; a host
    /// name is resolved on every connection attempt. To read a client file,
    /// see [`ClientConfig::load`].
    ///
    /// Defaults: a request timeout of 1 s per attempt, an overall deadline of
    /// 30 s per call, [`MAX_IN_FLIGHT`] requests in flight, the transport's
    /// default settings, and an ephemeral local port (IPv6 if the first
    /// replica is a literal IPv6 address, else IPv4; see [`ClientConfig::with_bind`]).
    pub fn new<A: Into<PeerAddr>>(
        replicas: impl IntoIterator<Item = (NodeId, A)>,
        credentials: Credentials,
    ) -> Result<ClientConfig, ConfigError> {
        let replicas = synod_transport::address_book(replicas);
        let first = replicas.values().next().ok_or(ConfigError::NoReplicas)?;
        let bind = if first.literal().is_some_and(|a| a.is_ipv6()) {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        };
        Ok(ClientConfig {
            replicas: replicas.into_iter().collect(),
            credentials,
            request_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(30),
            max_in_flight: MAX_IN_FLIGHT,
            transport: Settings::default(),
            bind,
            reads_from: ReadsFrom::Session,
            local: None,
        })
    }

    /// Loads client `client`'s credentials from `dir` (the layout `synod certs init`
    /// writes: `ca.pem`, `client-<client>.pem`, `client-<client>.key`).
    pub fn from_cert_dir<A: Into<PeerAddr>>(
        dir: impl AsRef<Path>,
        client: u32,
        replicas: impl IntoIterator<Item = (NodeId, A)>,
    ) -> Result<ClientConfig, ConfigError> {
        let dir = dir.as_ref();
        let credentials = Credentials::load(dir, Identity::Client(client))
            .map_err(|source| ConfigError::Certs { dir: dir.to_owned(), source })?;
        ClientConfig::new(replicas, credentials)
    }

    /// How long one attempt of a request may wait for its answer before the
    /// client moves to another replica and resends (at least 1 ms).
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.request_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long one call (and [`crate::Client::connect`]) may take in all,
    /// across every retry, before it fails with a timeout (at least 1 ms).
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> ClientConfig {
        self.deadline = deadline.max(Duration::from_millis(1));
        self
    }

    /// The most requests in flight at once, clamped to `1..=`[`MAX_IN_FLIGHT`];
    /// further calls wait for a slot.
    #[must_use]
    pub fn with_max_in_flight(mut self, n: usize) -> ClientConfig {
        self.max_in_flight = n.clamp(1, MAX_IN_FLIGHT);
        self
    }

    /// The transport's tunables (queue sizes, idle timeout, keep-alive).
    #[must_use]
    pub fn with_transport(mut self, settings: Settings) -> ClientConfig {
        self.transport = settings;
        self
    }

    /// The local address to bind (default: the unspecified address, an ephemeral port).
    #[must_use]
    pub fn with_bind(mut self, bind: SocketAddr) -> ClientConfig {
        self.bind = bind;
        self
    }

    /// Which replica serves this client's reads outside the log (default:
    /// [`ReadsFrom::Session`], the leader). With another choice the client
    /// keeps a second connection, for reads, which needs no session.
    ///
    /// Reads stay linearizable wherever they are served. Only the order
    /// between requests in flight at once changes: a read handed over
    /// before an earlier command's answer came may be served before that
    /// command, as any two concurrent requests may (a Redis-style pipeline
    /// that needs its reads after its writes keeps the default).
    #[must_use]
    pub fn with_reads_from(mut self, reads_from: ReadsFrom) -> ClientConfig {
        self.reads_from = reads_from;
        self
    }

    /// For a front end running inside a replica's process (synod-resp's
    /// listener in the `synod` binary): that replica, reached in-process,
    /// without QUIC ([`synod_transport::ClientEndpoint::with_local`]), and
    /// tried first. While it leads, requests skip encryption, UDP and
    /// framing both ways; while another replica leads, the client follows
    /// its redirect over QUIC as any client does.
    #[must_use]
    pub fn with_local(mut self, local: LocalClients) -> ClientConfig {
        self.local = Some(local);
        self
    }

    /// Which replica serves this client's reads outside the log.
    pub fn reads_from(&self) -> ReadsFrom {
        self.reads_from
    }

    /// The address book, in replica order.
    pub fn replicas(&self) -> &[(NodeId, PeerAddr)] {
        &self.replicas
    }

    /// The per-attempt timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The overall deadline of a call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The most requests in flight.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}
