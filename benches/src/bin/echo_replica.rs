//! A stand-in replica that speaks synod's client protocol and decides nothing:
//! the floor of synod's request path on this machine.
//!
//! ```text
//! echo_replica --certs DIR --addr 127.0.0.1:PORT [--id 1] [--exit-after SECONDS]
//! ```
//!
//! It serves clients with replica `--id`'s certificate from `DIR` (as
//! `synod certs init` lays it out) over synod-transport, and answers every
//! frame at once, on the transport thread that received it: a registration
//! with a new session, a command with `Stored`, a read with `Value(None)`.
//! No log, no consensus, no state machine, no thread hop. The load generator
//! pointed at it (`load --client-config` naming this one replica) measures
//! what the load generator, QUIC and synod's frames cost alone on the same
//! cores: `cargo xtask bench --peer etcd` runs it beside its read ceiling.
//! Runs until killed, or for `--exit-after` seconds (so that it never
//! outlives a benchmark that was itself killed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use clap::Parser;
use synod_transport::certs::Credentials;
use synod_transport::{Identity, Inbound, Node, NodeConfig, Settings};
use synod_wire::{ClientFrame, ClientId, ClientReply, KvResponse, NodeId, Outcome, Wire};

/// A stand-in replica that answers synod's client protocol at once, deciding nothing.
#[derive(Debug, Parser)]
#[command(name = "echo_replica")]
struct Cli {
    /// The certificate directory (`synod certs init`).
    #[arg(long, value_name = "DIR")]
    certs: PathBuf,
    /// Where to listen.
    #[arg(long)]
    addr: SocketAddr,
    /// The replica whose certificate it serves with.
    #[arg(long, default_value_t = 1)]
    id: u32,
    /// Exit after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    exit_after: Option<u64>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let id = NodeId(cli.id);
    let credentials = Credentials::load(&cli.certs, Identity::Node(id))
        .with_context(|| format!("loading replica {id}'s certificate from {}", cli.certs.display()))?;
    let config = NodeConfig {
        id,
        peers: synod_transport::address_book([(id, cli.addr)]),
        credentials,
        settings: Settings::default(),
    };
    let node: Arc<OnceLock<Node>> = Arc::new(OnceLock::new());
    let sessions = AtomicU64::new(1);
    let stored = KvResponse::Stored.encode().context("encoding Stored")?;
    let value = KvResponse::Value(None).encode().context("encoding Value(None)")?;
    let sink = {
        let node = node.clone();
        move |event: Inbound| {
            let Inbound::Client { conn, frame } = event else { return };
            let Some(node) = node.get() else { return };
            let (id, outcome) = match ClientFrame::decode(&frame) {
                Ok(ClientFrame::Request(request)) => match request.command {
                    synod_wire::Command::Register { .. } => {
                        let client = ClientId(sessions.fetch_add(1, Ordering::Relaxed));
                        (request.id, Outcome::Registered { client })
                    }
                    synod_wire::Command::Op { .. } => {
                        (request.id, Outcome::Applied { payload: stored.clone() })
                    }
                },
                Ok(ClientFrame::Read(read)) => (read.id, Outcome::Applied { payload: value.clone() }),
                // Membership changes and status queries: not served here.
                Ok(_) | Err(_) => {
                    node.close_client(conn);
                    return;
                }
            };
            if let Ok(reply) = (ClientReply { id, outcome }).encode() {
                let _ = node.reply(conn, reply);
            }
        }
    };
    let started = Node::start(config, sink).context("starting the endpoint")?;
    let _ = node.set(started);
    eprintln!("echo_replica: replica {id}'s stand-in listening on {}", cli.addr);
    match cli.exit_after {
        Some(secs) => std::thread::sleep(std::time::Duration::from_secs(secs)),
        None => loop {
            std::thread::park();
        },
    }
    Ok(())
}
