//! The TOML files `synod` reads: a replica's `node.toml`, and a client's
//! `client.toml` (whose one loader is [`synod_client::ClientFile`]).
//!
//! Relative paths in a file are relative to the file's directory. Unknown
//! fields are errors, so a misspelt field never silently falls back to a default.
//! Addresses are `ip:port` or `host:port`; every host name must resolve when
//! the file is loaded, and is resolved again on every reconnect.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use synod_client::file::address_book;
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
    /// Where to serve HTTP: `/metrics` (Prometheus), `/health` and `/readyz`.
    pub metrics: Option<SocketAddr>,
    /// Certificates.
    pub tls: TlsFile,
    /// Every replica's address, by id: `ip:port` or `host:port`. For a
    /// replica of the cluster's first configuration, its members; for a
    /// joining one (`join`), this replica and the members it learns the
    /// cluster from. Later configurations come from the log.
    pub peers: BTreeMap<String, String>,
    /// This replica is joining a running cluster: it is not a member yet
    /// and waits, on an empty data directory, to be added with
    /// `synod member add`. Leave it set once it has joined.
    #[serde(default)]
    pub join: bool,
    /// How the replica logs: `text` (the default) or `json`, one object per
    /// line; the environment's `SYNOD_LOG_FORMAT` overrides it. Read before
    /// logging starts, by [`LogFormat::choose`]; here it is checked.
    #[allow(dead_code)]
    pub log_format: Option<LogFormat>,
    /// Consensus timing.
    #[serde(default)]
    pub timing: TimingFile,
    /// Batching.
    #[serde(default)]
    pub batching: BatchingFile,
    /// The network layer.
    #[serde(default)]
    pub transport: TransportFile,
    /// When to snapshot, and how much log to keep behind a snapshot.
    #[serde(default)]
    pub snapshots: SnapshotsFile,
    /// Reads outside the log.
    #[serde(default)]
    pub reads: ReadsFile,
    /// A RESP (Redis protocol) listener in this replica's process
    /// (docs/RESP.md): a `[resp]` table.
    pub resp: Option<RespTable>,
    /// Where the file was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// How `synod` writes its log (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// tracing's human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format (text or json)")),
        }
    }
}

impl LogFormat {
    /// The format `SYNOD_LOG_FORMAT` asks for, else the one `node.toml` at
    /// `config` asks for (`log_format`), else text. A file that cannot be read
    /// is left to [`NodeFile::load`] to report.
    pub fn choose(config: Option<&Path>) -> Result<LogFormat> {
        if let Ok(v) = std::env::var("SYNOD_LOG_FORMAT") {
            if !v.is_empty() {
                return v.parse().map_err(|e: String| anyhow::anyhow!("SYNOD_LOG_FORMAT: {e}"));
            }
        }
        let Some(path) = config else { return Ok(LogFormat::Text) };
        let from_file = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|t| t.get("log_format").and_then(|v| v.as_str()).map(str::to_owned));
        match from_file {
            Some(v) => v.parse().map_err(|e: String| anyhow::anyhow!("{}: log_format: {e}", path.display())),
            None => Ok(LogFormat::Text),
        }
    }
}

/// The network layer.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TransportFile {
    /// Threads that run QUIC (default 1, one current-thread runtime, where
    /// every wake-up stays on its thread). More for machines whose QUIC work
    /// outgrows one core.
    pub threads: Option<usize>,
    /// The most connections open at once, replicas' and clients' (default 10,000).
    pub max_connections: Option<usize>,
    /// The most connections one client certificate may have open (default 1024).
    pub max_connections_per_client: Option<usize>,
    /// A client connection with no request stream for this long is closed (default 10,000 ms).
    pub streamless_timeout_ms: Option<u64>,
    /// A client frame must arrive whole within this long of its first byte (default 10,000 ms).
    pub frame_timeout_ms: Option<u64>,
    /// Bytes a client connection may have in flight to the replica (default 1 MiB).
    pub client_receive_window: Option<usize>,
    /// Request bytes per second one client certificate's streams are read at (default 32 MiB).
    pub client_bytes_per_second: Option<u64>,
}

/// Certificate paths.
#[derive(Debug, Clone, Deserialize)]
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
    /// Requests that may wait at a replica before more are answered `Busy`.
    pub max_waiting: Option<usize>,
}

/// Snapshots and log compaction.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotsFile {
    /// Snapshot once this many bytes of values were applied since the last
    /// snapshot (default 64 MiB).
    pub log_bytes: Option<u64>,
    /// Chosen slots kept behind each snapshot for lagging peers (default 128).
    pub retain_slots: Option<u64>,
    /// Bytes per chunk when sending a snapshot to a peer (default 1 MiB).
    pub chunk_bytes: Option<u32>,
    /// The most bytes a second a snapshot file is written at (default
    /// 128 MiB; 0: as fast as the disk takes it).
    pub write_bytes_per_second: Option<u64>,
}

/// Reads outside the log.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReadsFile {
    /// Leader leases for `lease` reads (docs/OPERATIONS.md, "Reads"): off by
    /// default; every replica of a cluster must agree.
    pub leases: bool,
}

/// The `[resp]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespTable {
    /// Where to listen: an `ip:port`, loopback unless `tls` is on.
    pub listen: String,
    /// TLS on the RESP port with this replica's certificate (`[tls]` cert and
    /// key), asking every client for a certificate of the cluster's CA (as
    /// `redis-cli --tls --cacert ca.pem --cert client-N.pem --key
    /// client-N.key` presents one). Required off loopback.
    #[serde(default)]
    pub tls: bool,
    /// A password Redis clients must give with AUTH first.
    pub password: Option<String>,
    /// The client file (`synod` client commands' format) whose identity
    /// and address book the listener's session uses. Required: replicas
    /// take sessions only from client certificates.
    pub client: PathBuf,
}

/// The RESP listener's settings, checked.
#[derive(Debug)]
pub struct RespSettings {
    /// The address: loopback, or any with `tls`.
    pub listen: SocketAddr,
    /// TLS with the replica's certificate and the cluster's CA.
    pub tls: bool,
    /// AUTH's password.
    pub password: Option<String>,
    /// The client file, resolved against node.toml's directory.
    pub client: PathBuf,
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    Ok(synod_client::file::read_toml(path)?)
}

fn base(path: &Path) -> PathBuf {
    synod_client::file::base_dir(path)
}

impl NodeFile {
    /// Reads and checks a replica's configuration file.
    pub fn load(path: &Path) -> Result<NodeFile> {
        let mut file: NodeFile = read(path)?;
        let base = base(path);
        file.path = path.to_owned();
        file.data_dir = base.join(&file.data_dir);
        file.tls.resolve(&base);
        let peers = address_book(path, "peers", &file.peers)?;
        if !peers.contains_key(&NodeId(file.id)) {
            bail!(
                "{}: peers has no address for this replica's id {} (every replica lists its own address there; one joining a running cluster also sets join = true)",
                path.display(),
                file.id
            );
        }
        if file.join && peers.len() < 2 {
            bail!("{}: join = true needs at least one member of the cluster among peers", path.display());
        }
        if !file.join && peers.len() % 2 == 0 {
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
        if file.snapshots.log_bytes == Some(0) {
            bail!("{}: snapshots: log_bytes must be at least 1", path.display());
        }
        if file.snapshots.chunk_bytes.is_some_and(|c| c == 0 || c > 8 << 20) {
            bail!("{}: snapshots: chunk_bytes must be between 1 and 8388608", path.display());
        }
        if file.transport.threads == Some(0) {
            bail!("{}: transport: threads must be at least 1", path.display());
        }
        for (name, value) in [
            ("max_connections", file.transport.max_connections.map(|n| n as u64)),
            ("max_connections_per_client", file.transport.max_connections_per_client.map(|n| n as u64)),
            ("streamless_timeout_ms", file.transport.streamless_timeout_ms),
            ("frame_timeout_ms", file.transport.frame_timeout_ms),
            ("client_receive_window", file.transport.client_receive_window.map(|n| n as u64)),
            ("client_bytes_per_second", file.transport.client_bytes_per_second),
        ] {
            if value == Some(0) {
                bail!("{}: transport: {name} must be at least 1", path.display());
            }
        }
        file.resp_settings()?;
        Ok(file)
    }

    /// The RESP listener's settings, if it has one: its address is an IP
    /// literal, loopback unless the listener has TLS.
    pub fn resp_settings(&self) -> Result<Option<RespSettings>> {
        let Some(resp) = &self.resp else { return Ok(None) };
        let at = || format!("{}: resp", self.path.display());
        let listen = &resp.listen;
        let listen: SocketAddr =
            listen.parse().with_context(|| format!("{}: listen {listen:?} is not an ip:port", at()))?;
        synod_resp::check_listen(listen, resp.tls).with_context(at)?;
        let client = base(&self.path).join(&resp.client);
        Ok(Some(RespSettings { listen, tls: resp.tls, password: resp.password.clone(), client }))
    }

    /// The RESP listener's TLS: this replica's certificate, and client
    /// certificates of the cluster's CA required.
    pub fn resp_tls(&self) -> Result<std::sync::Arc<rustls::ServerConfig>> {
        let credentials = Credentials::load_files(
            &self.tls.ca,
            &self.tls.cert,
            &self.tls.key,
            Identity::Node(NodeId(self.id)),
        )
        .with_context(|| {
            format!("{}: resp: tls: cannot load this replica's certificates", self.path.display())
        })?;
        let config = synod_transport::tls::tcp_server_config(&credentials)
            .with_context(|| format!("{}: resp: tls", self.path.display()))?;
        Ok(std::sync::Arc::new(config))
    }

    /// The session the RESP listener speaks to the cluster with: the `[resp]` client file's.
    pub fn resp_client_config(&self, settings: &RespSettings) -> Result<synod_client::ClientConfig> {
        synod_client::ClientFile::load(&settings.client).and_then(|f| f.client_config()).with_context(|| {
            format!("{}: resp: client file {}", self.path.display(), settings.client.display())
        })
    }

    /// The runtime configuration this file describes (loads the certificates).
    pub fn replica_config(&self) -> Result<ReplicaConfig> {
        let id = NodeId(self.id);
        let credentials =
            Credentials::load_files(&self.tls.ca, &self.tls.cert, &self.tls.key, Identity::Node(id))
                .with_context(|| format!("cannot load the certificates for replica {}", self.id))?;
        let peers = address_book(&self.path, "peers", &self.peers)?;
        let mut config = ReplicaConfig::new(id, peers, credentials, &self.data_dir);
        config.join = self.join;
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
        if let Some(n) = self.batching.max_waiting {
            config.max_waiting = n;
        }
        config.leases = self.reads.leases;
        if let Some(n) = self.snapshots.log_bytes {
            config.snapshots.log_bytes = n;
        }
        if let Some(n) = self.snapshots.retain_slots {
            config.snapshots.retain_slots = n;
        }
        if let Some(n) = self.snapshots.chunk_bytes {
            config.snapshots.chunk_bytes = n;
        }
        if let Some(n) = self.snapshots.write_bytes_per_second {
            config.snapshots.write_bytes_per_second = n;
        }
        if let Some(n) = self.transport.threads {
            config.transport.worker_threads = n;
        }
        if let Some(n) = self.transport.max_connections {
            config.transport.max_connections = n;
        }
        if let Some(n) = self.transport.max_connections_per_client {
            config.transport.max_connections_per_client = n;
        }
        if let Some(ms) = self.transport.streamless_timeout_ms {
            config.transport.streamless_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.transport.frame_timeout_ms {
            config.transport.frame_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = self.transport.client_receive_window {
            config.transport.client_receive_window = n;
        }
        if let Some(n) = self.transport.client_bytes_per_second {
            config.transport.client_bytes_per_second = n;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_pace_is_read_and_zero_means_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let node = "id = 1\ndata_dir = \"data\"\n[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n.key\"\n\
                    [peers]\n1 = \"127.0.0.1:7001\"\n";
        std::fs::write(&path, node).unwrap();
        assert_eq!(NodeFile::load(&path).unwrap().snapshots.write_bytes_per_second, None);
        for pace in [0u64, 10 << 20] {
            std::fs::write(&path, format!("{node}[snapshots]\nwrite_bytes_per_second = {pace}\n")).unwrap();
            assert_eq!(NodeFile::load(&path).unwrap().snapshots.write_bytes_per_second, Some(pace));
        }
        std::fs::write(&path, format!("{node}[snapshots]\nwrite_bytes_per_second = -1\n")).unwrap();
        assert!(NodeFile::load(&path).is_err());
    }
}
