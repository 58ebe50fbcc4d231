//! `synod status`: every replica's own view, asked over the cluster's transport, side by side.
//!
//! Each replica of the client file's address book is asked directly (mutual
//! TLS with the client's certificate, see `synod_client::admin`); the
//! replica answers itself, leader or not, without the log. Replicas that
//! disagree show it: one row each, then a line saying whether the digests
//! agree wherever replicas applied the same number of slots, and what each
//! believes about the leader. A replica that does not answer is a row too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use synod_client::admin::StatusError;
use synod_wire::{NodeId, ReplicaStatus, Role};

/// Asks every replica of the client file's address book, prints a table
/// (or with `json` one JSON object), and fails only if replicas at the same
/// applied slot have different digests.
pub(crate) fn run(client: &Path, json: bool) -> Result<()> {
    let config = synod_client::ClientConfig::load(client)
        .with_context(|| format!("cannot load the client configuration {}", client.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answers = rt.block_on(synod_client::admin::status_all(&config));
    let report = Report::new(answers);
    if json {
        println!("{}", serde_json::to_string(&report).context("encoding the status as JSON")?);
    } else {
        print!("{}", report.table());
    }
    if !report.digests_agree {
        bail!("replicas at the same applied slot have different digests");
    }
    Ok(())
}

/// What `synod status --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// One entry per replica of the address book, in its order.
    pub replicas: Vec<Row>,
    /// Whether every two replicas that applied the same slots have the same digest.
    pub digests_agree: bool,
    /// The applied slots where digests differ, with each replica's digest.
    pub disagreements: Vec<Disagreement>,
    /// Whether every replica that answered names the same leader (none counts as an answer).
    pub leaders_agree: bool,
}

/// One replica's row.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub id: u32,
    pub reachable: bool,
    /// Why it is unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub view: Option<View>,
}

/// A replica's answer, as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct View {
    /// `"leader"` or `"follower"`.
    pub role: &'static str,
    /// The leader it believes in; null if none.
    pub leader: Option<u32>,
    pub ballot: BallotView,
    pub commit: u64,
    pub applied: u64,
    /// All 64 bits, as 16 hex digits (a JSON number would lose bits).
    pub digest: String,
    pub members: Vec<u32>,
    pub peers_reachable: Vec<u32>,
    pub sessions: u64,
    pub log_bytes: u64,
    pub uptime_ms: u64,
    /// Every slot below this one is in its newest snapshot (0: none).
    pub snapshot: u64,
    /// It started with nothing on disk and does not vote until it has rejoined.
    pub rejoining: bool,
    /// The configuration it knows (its epoch).
    pub epoch: u64,
    /// The members of `members` that are learners.
    pub learners: Vec<u32>,
    /// It was removed from the cluster and is stopping.
    pub removed: bool,
}

/// A ballot: its round and the replica that owns it.
#[derive(Debug, Serialize)]
pub(crate) struct BallotView {
    /// The configuration the ballot belongs to (0 until the first membership change).
    pub epoch: u64,
    pub round: u64,
    pub node: u32,
}

/// Replicas at one applied slot whose digests differ.
#[derive(Debug, Serialize)]
pub(crate) struct Disagreement {
    pub applied: u64,
    /// Replica id -> its digest.
    pub digests: BTreeMap<u32, String>,
}

impl View {
    fn of(s: &ReplicaStatus) -> View {
        let ids = |v: &[NodeId]| v.iter().map(|n| n.0).collect();
        View {
            role: match s.role {
                _ if s.removed => "removed",
                _ if s.learners.contains(&s.id) => "learner",
                Role::Leader => "leader",
                Role::Follower if s.rejoining => "rejoining",
                Role::Follower => "follower",
            },
            leader: s.leader.map(|l| l.0),
            ballot: BallotView { epoch: s.ballot.epoch, round: s.ballot.round, node: s.ballot.node.0 },
            commit: s.commit.0,
            applied: s.applied.0,
            digest: format!("{:016x}", s.digest),
            members: ids(&s.members),
            peers_reachable: ids(&s.peers_reachable),
            sessions: s.sessions,
            log_bytes: s.log_bytes,
            uptime_ms: s.uptime_ms,
            snapshot: s.snapshot.0,
            rejoining: s.rejoining,
            epoch: s.epoch,
            learners: ids(&s.learners),
            removed: s.removed,
        }
    }
}

impl Report {
    pub(crate) fn new(answers: Vec<(NodeId, Result<ReplicaStatus, StatusError>)>) -> Report {
        let replicas: Vec<Row> = answers
            .into_iter()
            .map(|(node, answer)| match answer {
                Ok(s) => Row { id: node.0, reachable: true, error: None, view: Some(View::of(&s)) },
                Err(e) => Row { id: node.0, reachable: false, error: Some(e.to_string()), view: None },
            })
            .collect();
        let mut by_slot: BTreeMap<u64, BTreeMap<u32, String>> = BTreeMap::new();
        for row in &replicas {
            if let Some(v) = &row.view {
                by_slot.entry(v.applied).or_default().insert(row.id, v.digest.clone());
            }
        }
        let disagreements: Vec<Disagreement> = by_slot
            .into_iter()
            .filter(|(_, digests)| digests.values().any(|d| Some(d) != digests.values().next()))
            .map(|(applied, digests)| Disagreement { applied, digests })
            .collect();
        let mut beliefs = replicas.iter().filter_map(|r| r.view.as_ref()).map(|v| v.leader);
        let first = beliefs.next();
        let leaders_agree = beliefs.all(|l| Some(l) == first);
        Report { replicas, digests_agree: disagreements.is_empty(), disagreements, leaders_agree }
    }

    /// The table `synod status` prints: a row per replica, then the verdicts.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<8} {:<9} {:>6} {:>8} {:>10} {:>10} {:<16}  {:<10} {:>9} {:>8}",
            "replica", "role", "leader", "ballot", "commit", "applied", "digest", "peers up", "log", "uptime"
        );
        for row in &self.replicas {
            let Some(v) = &row.view else {
                let why = row.error.as_deref().unwrap_or("no answer");
                let _ = writeln!(out, "{:<8} unreachable: {why}", row.id);
                continue;
            };
            let others = v.members.iter().filter(|&&m| m != row.id).count();
            let peers = format!(
                "{}/{others} {}",
                v.peers_reachable.len(),
                v.peers_reachable.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            );
            let _ = writeln!(
                out,
                "{:<8} {:<9} {:>6} {:>8} {:>10} {:>10} {:<16}  {:<10} {:>9} {:>8}",
                row.id,
                v.role,
                v.leader.map_or("-".to_owned(), |l| l.to_string()),
                match v.ballot.epoch {
                    0 => format!("{}.{}", v.ballot.round, v.ballot.node),
                    e => format!("e{e}:{}.{}", v.ballot.round, v.ballot.node),
                },
                v.commit,
                v.applied,
                v.digest,
                peers.trim_end(),
                bytes(v.log_bytes),
                duration(v.uptime_ms),
            );
        }
        let answered: Vec<&View> = self.replicas.iter().filter_map(|r| r.view.as_ref()).collect();
        if self.digests_agree {
            let mut slots: Vec<u64> = answered.iter().map(|v| v.applied).collect();
            slots.sort_unstable();
            let shared = slots.windows(2).filter(|w| w[0] == w[1]).count();
            let _ = if shared > 0 {
                writeln!(out, "digests agree at equal applied slots")
            } else {
                writeln!(
                    out,
                    "digests agree at equal applied slots (no two replicas at the same slot to compare)"
                )
            };
        } else {
            for d in &self.disagreements {
                let each: Vec<String> =
                    d.digests.iter().map(|(id, dg)| format!("replica {id}: {dg}")).collect();
                let _ = writeln!(out, "DIGESTS DIFFER at applied slot {}: {}", d.applied, each.join(", "));
            }
        }
        let name = |l: Option<u32>| l.map_or("none".to_owned(), |l| l.to_string());
        let _ = match (self.leaders_agree, answered.first()) {
            (_, None) => writeln!(out, "no replica answered"),
            (true, Some(v)) => {
                writeln!(out, "leader: {} (every replica that answered agrees)", name(v.leader))
            }
            (false, _) => {
                let each: Vec<String> = self
                    .replicas
                    .iter()
                    .filter_map(|r| r.view.as_ref().map(|v| format!("{} says {}", r.id, name(v.leader))))
                    .collect();
                writeln!(out, "leader beliefs differ: {}", each.join(", "))
            }
        };
        out
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_wire::{Ballot, Slot};

    fn status(id: u32, leader: Option<u32>, applied: u64, digest: u64) -> ReplicaStatus {
        ReplicaStatus {
            id: NodeId(id),
            role: if leader == Some(id) { Role::Leader } else { Role::Follower },
            leader: leader.map(NodeId),
            ballot: Ballot::new(2, NodeId(1)),
            commit: Slot(applied),
            applied: Slot(applied),
            digest,
            members: vec![NodeId(1), NodeId(2), NodeId(3)],
            peers_reachable: vec![NodeId(1), NodeId(2), NodeId(3)]
                .into_iter()
                .filter(|&n| n.0 != id)
                .collect(),
            sessions: 1,
            log_bytes: 64 << 20,
            uptime_ms: 65_000,
            snapshot: Slot(0),
            rejoining: false,
            epoch: 0,
            learners: Vec::new(),
            removed: false,
        }
    }

    #[test]
    fn equal_digests_at_equal_slots_agree_and_an_unreachable_replica_is_a_row() {
        let report = Report::new(vec![
            (NodeId(1), Ok(status(1, Some(1), 7, u64::MAX))),
            (NodeId(2), Ok(status(2, Some(1), 7, u64::MAX))),
            (NodeId(3), Err(StatusError::Timeout(std::time::Duration::from_secs(1)))),
        ]);
        assert!(report.digests_agree && report.leaders_agree);
        let table = report.table();
        assert!(table.contains("ffffffffffffffff"), "{table}");
        assert!(table.contains("3        unreachable: no answer within 1s"), "{table}");
        assert!(table.contains("digests agree at equal applied slots\n"), "{table}");
        assert!(table.contains("leader: 1 (every replica"), "{table}");
        assert!(table.contains("64.0MiB") && table.contains("1m05s"), "{table}");
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["replicas"][0]["digest"], "ffffffffffffffff");
        assert_eq!(json["replicas"][0]["role"], "leader");
        assert_eq!(json["replicas"][1]["leader"], 1);
        assert_eq!(json["replicas"][2]["reachable"], false);
        assert!(json["replicas"][2].get("digest").is_none());
        assert_eq!(json["digests_agree"], true);
    }

    #[test]
    fn different_digests_at_one_slot_and_different_leaders_are_shown_side_by_side() {
        let report = Report::new(vec![
            (NodeId(1), Ok(status(1, Some(1), 7, 1))),
            (NodeId(2), Ok(status(2, None, 7, 2))),
            // A different slot: not compared.
            (NodeId(3), Ok(status(3, Some(1), 9, 3))),
        ]);
        assert!(!report.digests_agree && !report.leaders_agree);
        assert_eq!(report.disagreements.len(), 1);
        let table = report.table();
        assert!(
            table.contains(
                "DIGESTS DIFFER at applied slot 7: replica 1: 0000000000000001, replica 2: 0000000000000002"
            ),
            "{table}"
        );
        assert!(table.contains("leader beliefs differ: 1 says 1, 2 says none, 3 says 1"), "{table}");
    }
}
