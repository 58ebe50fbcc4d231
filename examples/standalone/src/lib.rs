//! A replicated tally of named counters, written against synod's published crates only.
//!
//! [`Tally`] is the application: a [`StateMachine`] whose commands are text,
//! `add <name> <amount>`, answered with the counter's new total, and `get <name>`,
//! which is also its read outside the log. [`Cluster`] starts three replicas of it on
//! loopback, with generated certificates, in one process; `tests/replicated.rs` writes
//! through `synod_client::Client`, reads back and checks that the replicas agree.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use synod_client::ClientConfig;
use synod_runtime::{certs, Credentials, Identity, NodeId, Replica, ReplicaConfig, Status};
use synod_state_machine::{RestoreError, StateMachine};

/// Named counters. Deterministic: a `BTreeMap`, no clock, no randomness, and every
/// command, well formed or not, gets an answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    counters: BTreeMap<String, u64>,
}

impl Tally {
    /// The command that adds `amount` to counter `name`.
    pub fn add(name: &str, amount: u64) -> Vec<u8> {
        format!("add {name} {amount}").into_bytes()
    }

    /// The read of counter `name`.
    pub fn get(name: &str) -> Vec<u8> {
        format!("get {name}").into_bytes()
    }

    /// The total of counter `name` (0 if it was never added to).
    pub fn total(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// A counter's name: one word of letters, digits, `-` and `_`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl StateMachine for Tally {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(command).unwrap_or("");
        let words: Vec<&str> = text.split(' ').collect();
        match words[..] {
            ["add", name, amount] if valid_name(name) => match amount.parse::<u64>() {
                Ok(amount) => {
                    let total = self.counters.entry(name.to_owned()).or_default();
                    // Saturating: never a panic, and the same on every replica.
                    *total = total.saturating_add(amount);
                    total.to_string().into_bytes()
                }
                Err(_) => b"error: bad amount".to_vec(),
            },
            // A read through the log (`ReadMode::ThroughLog`) arrives as a command.
            ["get", name] => self.total(name).to_string().into_bytes(),
            _ => b"error: malformed command".to_vec(),
        }
    }

    fn read(&self, query: &[u8]) -> Option<Vec<u8>> {
        let name = std::str::from_utf8(query).ok()?.strip_prefix("get ")?;
        Some(self.total(name).to_string().into_bytes())
    }

    /// One `name total` line per counter, in name order: equal states, equal bytes.
    fn snapshot(&self) -> Vec<u8> {
        self.counters.iter().map(|(name, total)| format!("{name} {total}\n")).collect::<String>().into_bytes()
    }

    /// Checks the whole snapshot before replacing the state.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let text = std::str::from_utf8(snapshot).map_err(|_| RestoreError::new("not UTF-8"))?;
        let mut counters = BTreeMap::new();
        for line in text.lines() {
            let (name, total) =
                line.split_once(' ').ok_or_else(|| RestoreError::new("a line without a total"))?;
            let total = total.parse().map_err(|_| RestoreError::new(format!("bad total in {line:?}")))?;
            if !valid_name(name) || counters.insert(name.to_owned(), total).is_some() {
                return Err(RestoreError::new(format!("bad or repeated name in {line:?}")));
            }
        }
        self.counters = counters;
        Ok(())
    }
}

/// Why a [`Cluster`] did not start.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Three (or `n`) replicas of [`Tally`] on 127.0.0.1, under one directory.
#[derive(Debug)]
pub struct Cluster {
    certs: PathBuf,
    peers: BTreeMap<NodeId, SocketAddr>,
    replicas: Vec<Replica>,
}

impl Cluster {
    /// Writes certificates for `n` replicas and one client to `dir/certs` and starts every
    /// replica, with its log in `dir/node-<id>`.
    pub fn start(dir: &Path, n: u32) -> Result<Cluster, Error> {
        let certs = dir.join("certs");
        certs::init(&certs, n, 1, false)?;
        // Free UDP ports (QUIC runs over UDP), let go for the replicas to bind.
        let mut peers = BTreeMap::new();
        for i in 1..=n {
            peers.insert(NodeId(i), UdpSocket::bind("127.0.0.1:0")?.local_addr()?);
        }
        let mut replicas = Vec::new();
        for &id in peers.keys() {
            let credentials = Credentials::load(&certs, Identity::Node(id))?;
            let config =
                ReplicaConfig::new(id, peers.clone(), credentials, dir.join(format!("node-{}", id.0)));
            replicas.push(Replica::start(config, Tally::default())?);
        }
        Ok(Cluster { certs, peers, replicas })
    }

    /// The configuration of the cluster's one client.
    pub fn client_config(&self) -> Result<ClientConfig, Error> {
        Ok(ClientConfig::from_cert_dir(&self.certs, 1, self.peers.clone())?)
    }

    /// Every replica's status.
    pub fn statuses(&self) -> Vec<Status> {
        self.replicas.iter().map(Replica::status).collect()
    }

    /// Waits until every replica has applied all it knows to be chosen, all up to the same
    /// slot, and returns their statuses; `None` after `patience`.
    pub fn await_converged(&self, patience: Duration) -> Option<Vec<Status>> {
        let until = Instant::now() + patience;
        loop {
            let s = self.statuses();
            if s.iter().all(|x| x.commit == x.applied && x.applied == s[0].applied) {
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops every replica (this blocks: call it outside async code).
    pub fn shutdown(self) {
        for replica in self.replicas {
            replica.shutdown();
        }
    }
}
