//! `synod`: run a replica of the bundled key-value store, make certificates, inspect logs, talk to a cluster.

mod client_cmd;
mod config;
mod health;
mod member;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use config::{LogFormat, NodeFile};
use synod_kv::KvStore;
use synod_runtime::Replica;

/// synod: state machine replication with Multi-Paxos over QUIC.
#[derive(Debug, Parser)]
#[command(name = "synod", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Certificates for a cluster.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Run a replica.
    Start {
        /// The replica's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Ask every replica for its own view (role, leader, ballot, commit and applied slots, digest,
    /// reachable peers, log size, uptime) over the cluster's transport, and show them side by side.
    Status {
        /// The client configuration file; every replica it lists is asked.
        #[arg(long, env = "SYNOD_CLIENT")]
        client: PathBuf,
        /// One JSON object (`replicas`: one entry per replica, and the verdicts) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write `key` = `value` (`-`: the value is stdin's bytes).
    Put(client_cmd::Put),
    /// Read `key`: its bytes, exactly, on stdout (linearizable, outside the log; `--stale`, `--through-log`).
    Get(client_cmd::Get),
    /// Delete `key`.
    Del(client_cmd::Del),
    /// Set `key` to `new` if it holds `expected`; `--absent` expects no value.
    Cas(client_cmd::Cas),
    /// The cluster's membership: list it, add, promote or remove a replica (one change at a time).
    Member(member::Member),
    /// The write-ahead log.
    #[command(subcommand)]
    Log(LogCmd),
    /// Snapshot files (replicas write them as their logs grow): inspect one.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
}

#[derive(Debug, Subcommand)]
enum CertsCmd {
    /// Make a cluster CA and a certificate and key per replica and per client (files mode 0600).
    Init {
        /// Where to write them.
        #[arg(long)]
        dir: PathBuf,
        /// Replicas (node-1 .. node-N).
        #[arg(long)]
        nodes: u32,
        /// Clients (client-1 .. client-M).
        #[arg(long, default_value_t = 1)]
        clients: u32,
        /// Days the replica and client certificates are valid.
        #[arg(long, default_value_t = synod_transport::certs::DEFAULT_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
        /// Days the CA certificate is valid.
        #[arg(long, default_value_t = synod_transport::certs::DEFAULT_CA_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
        ca_days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Sign a certificate for one more (or a renewed) replica or client with the CA in `--dir`.
    Add {
        /// The directory `certs init` wrote (ca.pem and ca.key are read from it).
        #[arg(long)]
        dir: PathBuf,
        /// A replica's id.
        #[arg(long, required_unless_present = "client", conflicts_with = "client", value_parser = clap::value_parser!(u32).range(1..))]
        node: Option<u32>,
        /// A client's number.
        #[arg(long)]
        client: Option<u32>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = synod_transport::certs::DEFAULT_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
        /// Replace the existing certificate and key (a renewal).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LogCmd {
    /// Segments, records, slots, and any corruption.
    Inspect {
        /// The replica's data directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCmd {
    /// Format version, slot, body length and checksum of a snapshot file; fails if it is damaged.
    Inspect {
        /// The snapshot file (`snapshot-<slot>.snap`).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.command {
        Cmd::Start { config } => Some(config.as_path()),
        _ => None,
    };
    let format = match LogFormat::choose(config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("synod: {}", causes(&e));
            return ExitCode::FAILURE;
        }
    };
    let filter =
        || tracing_subscriber::EnvFilter::try_from_env("SYNOD_LOG").unwrap_or_else(|_| "info".into());
    match format {
        LogFormat::Text => {
            tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).init()
        }
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synod: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by ": ", leaving out a cause that the
/// error wrapping it already ends with (several of ours say "{what}: {source}"
/// and also report the source as their cause).
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut above = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let quoted = above == text || above.ends_with(&format!(": {text}"));
        if !quoted {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        above = text;
    }
    out
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Certs(CertsCmd::Init { dir, nodes, clients, days, ca_days, force }) => {
            if nodes == 0 {
                bail!("--nodes must be at least 1");
            }
            let lifetimes = synod_transport::certs::Lifetimes { days, ca_days };
            let report = synod_transport::certs::init_with(&dir, nodes, clients, force, lifetimes)
                .with_context(|| format!("cannot write certificates to {}", dir.display()))?;
            print!("{report}");
            Ok(())
        }
        Cmd::Certs(CertsCmd::Add { dir, node, client, days, force }) => {
            let identity = match (node, client) {
                (Some(n), None) => synod_transport::Identity::Node(synod_wire::NodeId(n)),
                (None, Some(c)) => synod_transport::Identity::Client(c),
                _ => bail!("give --node ID or --client N"),
            };
            let report = synod_transport::certs::add(&dir, identity, days, force)
                .with_context(|| format!("cannot add a certificate for {identity} in {}", dir.display()))?;
            print!("{report}");
            Ok(())
        }
        Cmd::Start { config } => start(&config),
        Cmd::Status { client, json } => status::run(&client, json),
        Cmd::Log(LogCmd::Inspect { dir }) => {
            let inspection =
                synod_log::inspect(&dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
            println!("{inspection}");
            if inspection.problem.is_some() {
                bail!("the log in {} is damaged", dir.display());
            }
            Ok(())
        }
        Cmd::Snapshot(SnapshotCmd::Inspect { file }) => {
            let info = synod_log::inspect_snapshot(&file)?;
            println!("{info}");
            if let Some(damage) = info.damage() {
                return Err(damage.into());
            }
            Ok(())
        }
        Cmd::Put(args) => client_cmd::put(args),
        Cmd::Get(args) => client_cmd::get(args),
        Cmd::Del(args) => client_cmd::del(args),
        Cmd::Cas(args) => client_cmd::cas(args),
        Cmd::Member(args) => member::run(args),
    }
}

fn start(path: &std::path::Path) -> Result<()> {
    let file = NodeFile::load(path)?;
    let config = file.replica_config()?;
    // The RESP port is bound before the replica starts, so a port in use stops the start.
    let resp = match file.resp_settings()? {
        Some(settings) => {
            let client = file.resp_client_config(&settings)?;
            let tls = if settings.tls { Some(file.resp_tls()?) } else { None };
            let listener = std::net::TcpListener::bind(settings.listen)
                .with_context(|| format!("cannot listen for RESP on {}", settings.listen))?;
            listener.set_nonblocking(true)?;
            Some((settings, client, listener, tls))
        }
        None => None,
    };
    // `/health` and `/readyz` say "starting" until the replica is set.
    let replica_status = std::sync::Arc::new(std::sync::OnceLock::new());
    if let Some(addr) = file.metrics {
        synod_metrics::install(addr, health::probe(file.peers.len(), replica_status.clone()))
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
    }
    let replica = Replica::start(config, KvStore::default())
        .with_context(|| format!("replica {} failed to start", file.id))?;
    let _ = replica_status.set(replica.status_handle());
    tracing::info!(id = file.id, addr = %replica.local_addr(), "serving");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let fatal = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        if let Some((settings, client, listener, tls)) = resp {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let mut resp_config = synod_resp::RespConfig::new(settings.listen);
            resp_config.password = settings.password;
            resp_config.tls = tls;
            resp_config.node = Some(synod_wire::NodeId(file.id));
            // While this replica leads, the listener's requests reach it in-process, without QUIC.
            let client = client.with_local(replica.local_clients());
            tokio::spawn(serve_resp(listener, client, resp_config));
        }
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut check = tokio::time::interval(std::time::Duration::from_millis(200));
        // The data directory's sizes and newest snapshot (`synod_log_bytes`, `synod_data_dir_bytes`,
        // `synod_snapshot_slot`, `synod_snapshot_bytes`) every 5 s.
        let mut sizes = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = check.tick() => {
                    if replica.is_stopped() {
                        return Ok::<_, anyhow::Error>(replica.status().fatal);
                    }
                }
                _ = sizes.tick(), if file.metrics.is_some() => synod_metrics::record_data_dir(&file.data_dir),
            }
        }
        Ok(None)
    })?;
    tracing::info!(id = file.id, "shutting down");
    replica.shutdown();
    if let Some(e) = fatal {
        bail!("replica {} stopped: {e}", file.id);
    }
    Ok(())
}

/// Registers the RESP listener's session (retrying until the cluster has a
/// leader), then serves RESP; connections wait in the backlog until then.
async fn serve_resp(
    listener: tokio::net::TcpListener,
    client: synod_client::ClientConfig,
    config: synod_resp::RespConfig,
) {
    let session = loop {
        match synod_client::Client::connect(client.clone()).await {
            Ok(session) => break session,
            Err(e) => {
                tracing::warn!(error = %e, "RESP: cannot register a session yet; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    };
    tracing::info!(listen = %config.listen, "serving RESP");
    synod_resp::RespServer::serve(listener, session, client, config).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_leave_out_what_the_wrapping_error_already_says() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(io)
            .context("binding: Address already in use")
            .context("replica 1 failed to start");
        assert_eq!(causes(&e), "replica 1 failed to start: binding: Address already in use");
        let e = anyhow::anyhow!("no such file").context("reading node.toml");
        assert_eq!(causes(&e), "reading node.toml: no such file");
        // A cause is kept when the words merely appear somewhere above it.
        let e = anyhow::anyhow!("timed out").context("the peer timed out earlier; retrying timed out");
        assert_eq!(causes(&e), "the peer timed out earlier; retrying timed out: timed out");
    }
}
