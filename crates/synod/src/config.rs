//! The TOML files `synod` reads: a replica's `node.toml` and a client's `client.toml`.
//!
//! Relative paths in a file are relative to the file's directory. Unknown
//! fields are errors, so a misspelt field never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use synod_runtime::{ReplicaConfig, Timing};
use synod_transport::{Credentials, Identity};
use synod_wire::NodeId;

/// A replica's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// This replica's id; `peers` must hold its address, which it listens on.
    pub id: u32,
    /// Where the write-ahead log lives.
    pub data_dir: PathBuf,
    /// Where to serve Prometheus metrics (and what `synod status` scrapes).
    pub metrics: Option<SocketAddr>,
    /// Certificates.
    pub tls: TlsFile,
    /// Every replica's address, by id.
    pub peers: BTreeMap<String, SocketAddr>,
    /// Consensus timing.
    #[serde(default)]
    pub timing: TimingFile,
    /// Batching.
    #[serde(default)]
    pub batching: BatchingFile,
    /// The network layer.
    #[serde(default)]
    pub transport: TransportFile,
}

/// The network layer.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TransportFile {
    /// Threads that run QUIC (default 1, one current-thread runtime, where
    /// every wake-up stays on its thread). More for machines whose QUIC work
    /// outgrows one core.
    pub threads: Option<usize>,
}

/// Certificate paths.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This party's certificate.
    pub cert: PathBuf,
    /// This party's private key.
    pub key: PathBuf,
}

/// Consensus timing; the defaults suit a LAN.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingFile {
    /// Milliseconds per tick.
    pub tick_ms: u64,
    /// Ticks between heartbeat rounds.
    pub heartbeat_ticks: u64,
    /// The election timeout is drawn from this range of ticks, `[lo, hi]`.
    pub election_ticks: [u64; 2],
}

impl Default for TimingFile {
    fn default() -> Self {
        let t = Timing::default();
        TimingFile {
            tick_ms: t.tick.as_millis() as u64,
            heartbeat_ticks: t.heartbeat_ticks,
            election_ticks: [t.election_ticks.0, t.election_ticks.1],
        }
    }
}

/// Batching limits.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingFile {
    /// Slots in flight at once.
    pub max_in_flight: Option<usize>,
    /// Commands per batch.
    pub max_batch_commands: Option<usize>,
    /// Bytes per batch.
    pub max_batch_bytes: Option<usize>,
}

/// A client's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// The client number its certificate names (`client-<n>.pem`).
    pub client: u32,
    /// Certificates.
    pub tls: TlsFile,
    /// Every replica's address, by id.
    pub replicas: BTreeMap<String, SocketAddr>,
    /// Milliseconds one attempt waits before trying another replica.
    pub request_timeout_ms: Option<u64>,
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration in {}", path.display()))
}

fn base(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn ids(map: &BTreeMap<String, SocketAddr>, field: &str) -> Result<BTreeMap<NodeId, SocketAddr>> {
    let mut out = BTreeMap::new();
    for (k, addr) in map {
        let id: u32 =
            k.parse().with_context(|| format!("{field}: {k:?} is not a replica id (a positive number)"))?;
        if id == 0 {
            bail!("{field}: replica id 0 is reserved");
        }
        out.insert(NodeId(id), *addr);
    }
    if out.is_empty() {
        bail!("{field}: no replicas listed");
    }
    Ok(out)
}

impl NodeFile {
    /// Reads and checks a replica's configuration file.
    pub fn load(path: &Path) -> Result<NodeFile> {
        let mut file: NodeFile = read(path)?;
        let base = base(path);
        file.data_dir = base.join(&file.data_dir);
        file.tls.resolve(&base);
        let peers = ids(&file.peers, "peers")?;
        if !peers.contains_key(&NodeId(file.id)) {
            bail!("{}: peers has no address for this replica's id {}", path.display(), file.id);
        }
        if peers.len() % 2 == 0 {
            bail!("{}: peers lists {} replicas; a cluster needs an odd number", path.display(), peers.len());
        }
        let [lo, hi] = file.timing.election_ticks;
        if file.timing.tick_ms == 0
            || file.timing.heartbeat_ticks == 0
            || lo < 2 * file.timing.heartbeat_ticks
            || hi < lo
        {
            bail!(
                "{}: timing: need tick_ms > 0, heartbeat_ticks > 0 and election_ticks = [lo, hi] with lo >= 2 * heartbeat_ticks and hi >= lo",
                path.display()
            );
        }
        if file.transport.threads == Some(0) {
            bail!("{}: transport: threads must be at least 1", path.display());
        }
        Ok(file)
    }

    /// The runtime configuration this file describes (loads the certificates).
    pub fn replica_config(&self) -> Result<ReplicaConfig> {
        let id = NodeId(self.id);
        let credentials =
            Credentials::load_files(&self.tls.ca, &self.tls.cert, &self.tls.key, Identity::Node(id))
                .with_context(|| format!("cannot load the certificates for replica {}", self.id))?;
        let mut config = ReplicaConfig::new(id, ids(&self.peers, "peers")?, credentials, &self.data_dir);
        config.timing = Timing {
            tick: Duration::from_millis(self.timing.tick_ms),
            heartbeat_ticks: self.timing.heartbeat_ticks,
            election_ticks: (self.timing.election_ticks[0], self.timing.election_ticks[1]),
        };
        if let Some(n) = self.batching.max_in_flight {
            config.max_in_flight = n;
        }
        if let Some(n) = self.batching.max_batch_commands {
            config.max_batch_commands = n;
        }
        if let Some(n) = self.batching.max_batch_bytes {
            config.max_batch_bytes = n;
        }
        if let Some(n) = self.transport.threads {
            config.transport.worker_threads = n;
        }
        Ok(config)
    }
}

impl TlsFile {
    fn resolve(&mut self, base: &Path) {
        self.ca = base.join(&self.ca);
        self.cert = base.join(&self.cert);
        self.key = base.join(&self.key);
    }
}

impl ClientFile {
    /// Reads and checks a client's configuration file.
    pub fn load(path: &Path) -> Result<ClientFile> {
        let mut file: ClientFile = read(path)?;
        file.tls.resolve(&base(path));
        ids(&file.replicas, "replicas")?;
        Ok(file)
    }

    /// The client configuration this file describes (loads the certificates).
    pub fn client_config(&self) -> Result<synod_client::ClientConfig> {
        let identity = Identity::Client(self.client);
        let credentials = Credentials::load_files(&self.tls.ca, &self.tls.cert, &self.tls.key, identity)
            .context("cannot load the client certificates")?;
        let mut config = synod_client::ClientConfig::new(ids(&self.replicas, "replicas")?, credentials)?;
        if let Some(ms) = self.request_timeout_ms {
            config = config.with_request_timeout(Duration::from_millis(ms));
        }
        Ok(config)
    }
}
