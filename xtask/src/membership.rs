//! Membership changes on a local cluster (`cargo xtask cluster add|remove|replace`, `demo --replace`).
//!
//! Each step runs the `synod` commands an operator would (docs/OPERATIONS.md, "Membership
//! changes"): `synod certs add --node N` into the cluster's cert directory, a node file with
//! `join = true` whose `[peers]` are the current members (from `synod member list --json`),
//! `synod start`, then `synod member add|promote|remove`. The new replica gets the next id after
//! every id the cluster's directory or its configuration has used, and the port of the cluster's
//! layout for that id (base + id, metrics base + 100 + id). After each change client.toml names
//! the current members, so `cluster status` and every later command see them.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cluster::{alive, last_words, synod_bin, Cluster};

/// How long a new replica may take to catch up before a step gives up.
pub(crate) const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a removed replica may take to exit: it stops once every remaining member knows,
/// or after 60 s at most (docs/OPERATIONS.md).
const EXIT_TIMEOUT: Duration = Duration::from_secs(90);

/// One member of the configuration, as `synod member list --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) id: u32,
    pub(crate) addr: String,
    /// `voter` or `learner`.
    pub(crate) role: String,
    /// The slot below which it knows every chosen slot, as last reported (0: not heard from).
    pub(crate) caught_up: u64,
}

/// The configuration, as `synod member list --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Members {
    pub(crate) epoch: u64,
    pub(crate) leader: Option<u32>,
    pub(crate) change_in_flight: bool,
    pub(crate) members: Vec<Member>,
}

impl Members {
    pub(crate) fn get(&self, id: u32) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// (id, address) of every member, for client.toml and a new replica's `[peers]`.
    pub(crate) fn addresses(&self) -> Vec<(u32, String)> {
        self.members.iter().map(|m| (m.id, m.addr.clone())).collect()
    }

    /// Whether replica `id` has caught up: it reported a slot, and that slot is at least the
    /// slowest other voter's (voters not heard from aside) and the leader's less `slack`.
    /// Returns its slot and the leader's when it has.
    pub(crate) fn caught_up(&self, id: u32, slack: u64) -> Option<(u64, u64)> {
        let new = self.get(id)?.caught_up;
        let leader = self.get(self.leader?)?.caught_up;
        let slowest = self
            .members
            .iter()
            .filter(|m| m.id != id && m.role == "voter" && m.caught_up > 0)
            .map(|m| m.caught_up)
            .min()
            .unwrap_or(leader);
        (new > 0 && new >= slowest.min(leader.saturating_sub(slack))).then_some((new, leader))
    }

    /// The port layout of the cluster: the `base` of `127.0.0.1:<base + id>`, the same for
    /// every member (`cargo xtask cluster up` lays replicas out so).
    pub(crate) fn base_port(&self) -> Result<u16> {
        let mut base = None;
        for m in &self.members {
            let port: u32 = m
                .addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .with_context(|| format!("replica {}'s address {:?} has no port", m.id, m.addr))?;
            let b = port.checked_sub(m.id).with_context(|| {
                format!("replica {} listens on {}, below the layout's base + id", m.id, m.addr)
            })?;
            match base {
                None => base = Some(b),
                Some(seen) if seen != b => bail!(
                    "the members' ports are not base + id ({}), so the next replica's port is unclear",
                    self.members
                        .iter()
                        .map(|m| format!("{} at {}", m.id, m.addr))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some(_) => {}
            }
        }
        let base = base.context("the configuration has no members")?;
        u16::try_from(base).context("port out of range")
    }
}

/// Parses `synod member list --json` output.
pub(crate) fn parse_members(stdout: &[u8]) -> Result<Members> {
    let v: Value = serde_json::from_slice(stdout)
        .with_context(|| format!("parsing synod member list output {:?}", String::from_utf8_lossy(stdout)))?;
    let members = v["members"]
        .as_array()
        .context("synod member list output has no members array")?
        .iter()
        .map(|m| {
            Ok(Member {
                id: m["id"].as_u64().and_then(|i| u32::try_from(i).ok()).context("a member without an id")?,
                addr: m["addr"].as_str().context("a member without an address")?.to_owned(),
                role: m["role"].as_str().context("a member without a role")?.to_owned(),
                caught_up: m["caught_up"].as_u64().unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Members {
        epoch: v["epoch"].as_u64().context("synod member list output has no epoch")?,
        leader: v["leader"].as_u64().and_then(|l| u32::try_from(l).ok()),
        change_in_flight: v["change_in_flight"].as_bool().unwrap_or(false),
        members,
    })
}

/// A joining replica's node.toml: `join = true`, its own address and the members' in `[peers]`.
pub(crate) fn node_toml(id: u32, base: u16, peers: &[(u32, String)]) -> String {
    let mut peers: Vec<(u32, String)> = peers.to_vec();
    peers.push((id, format!("127.0.0.1:{}", u32::from(base) + id)));
    peers.sort();
    peers.dedup_by_key(|p| p.0);
    let table: String = peers.iter().map(|(i, addr)| format!("{i} = \"{addr}\"\n")).collect();
    format!(
        "# Replica {id} of a local synod cluster, added to it by `cargo xtask cluster add`:\n\
         # it joins the running cluster; [peers] are the members it contacts and its own address.\n\
         id = {id}\njoin = true\ndata_dir = \"data/node-{id}\"\nmetrics = \"127.0.0.1:{}\"\n\n\
         [tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node-{id}.pem\"\nkey = \"certs/node-{id}.key\"\n\n\
         [peers]\n{table}",
        u32::from(base) + 100 + id
    )
}

/// The steps of a membership change, each said as it happens under a name (`cluster`, `demo`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steps {
    name: &'static str,
}

impl Steps {
    pub(crate) fn new(name: &'static str) -> Steps {
        Steps { name }
    }

    fn say(&self, what: &str) {
        eprintln!("{}: {what}", self.name);
    }

    /// The configuration, from `synod member list --json`.
    pub(crate) fn members(&self, cluster: &Cluster) -> Result<Members> {
        let out = Command::new(synod_bin())
            .args(["member", "list", "--json", "--client"])
            .arg(cluster.client_file())
            .output()
            .context("running synod member list")?;
        if !out.status.success() {
            bail!("synod member list failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        parse_members(&out.stdout)
    }

    /// `synod member ARGS`: says it, and fails with what synod said (a refusal's reason) if
    /// it fails. Returns its output (the new configuration).
    fn member(&self, cluster: &Cluster, args: &[&str]) -> Result<String> {
        self.say(&format!("$ synod member {}", args.join(" ")));
        let out = Command::new(synod_bin())
            .arg("member")
            .args(args)
            .arg("--client")
            .arg(cluster.client_file())
            .output()
            .context("running synod member")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            bail!("synod member {} failed: {}", args.join(" "), stderr.trim().trim_start_matches("synod: "));
        }
        if let Some(first) = stdout.lines().next() {
            self.say(first);
        }
        Ok(stdout)
    }

    /// Points client.toml at the current members.
    fn follow(&self, cluster: &Cluster) -> Result<Members> {
        let view = self.members(cluster)?;
        cluster.write_client_file(&view.addresses())?;
        Ok(view)
    }

    /// Adds a new replica, a learner if `learner`, and returns its id: its certificate, its
    /// node file with `join = true`, its process, then `synod member add`. Does not wait for
    /// it to catch up ([`Steps::await_caught_up`]).
    pub(crate) fn add(&self, cluster: &Cluster, learner: bool) -> Result<u32> {
        let view = self.members(cluster).context("reading the configuration")?;
        if view.change_in_flight {
            bail!("a membership change is in flight; try again once it is done");
        }
        let base = view.base_port()?;
        let used = cluster.ids_on_disk().into_iter().chain(view.members.iter().map(|m| m.id));
        let id = used.max().unwrap_or(0) + 1;
        let port = u32::from(base) + id;
        let metrics = u32::from(base) + 100 + id;
        let (Ok(port), Ok(metrics)) = (u16::try_from(port), u16::try_from(metrics)) else {
            bail!("replica {id}'s ports ({port}, metrics {metrics}) are out of range");
        };
        if !ports_free(port, metrics) {
            bail!("replica {id}'s ports are taken: 127.0.0.1:{port} (UDP) or 127.0.0.1:{metrics} (TCP)");
        }
        let addr = format!("127.0.0.1:{port}");
        let role = if learner { "a learner" } else { "a voter" };
        self.say(&format!(
            "adding replica {id} at {addr} as {role} to epoch {} (members {})",
            view.epoch,
            view.members.iter().map(|m| m.id.to_string()).collect::<Vec<_>>().join(", ")
        ));
        let certs = cluster.dir.join("certs");
        let out = Command::new(synod_bin())
            .args(["certs", "add", "--node", &id.to_string(), "--dir"])
            .arg(&certs)
            .output()
            .context("running synod certs add")?;
        if !out.status.success() {
            bail!("synod certs add --node {id} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        self.say(&format!("made its certificate: {}", certs.join(format!("node-{id}.pem")).display()));
        std::fs::write(cluster.node_file(id), node_toml(id, base, &view.addresses()))?;
        cluster.start(id)?;
        self.say(&format!(
            "started replica {id} (join = true, {}), pid {}",
            cluster.node_file(id).display(),
            cluster.pid(id).unwrap_or(0)
        ));
        if let Err(e) = self.await_listening(cluster, id) {
            self.undo_add(cluster, id);
            return Err(e);
        }
        let id_arg = id.to_string();
        let mut args = vec!["add", "--id", &id_arg, "--addr", &addr];
        if learner {
            args.push("--learner");
        }
        if let Err(e) = self.member(cluster, &args) {
            self.undo_add(cluster, id);
            return Err(e.context(format!("replica {id} was not added; its process is stopped")));
        }
        self.follow(cluster)?;
        Ok(id)
    }

    /// Waits a moment for a started replica to be up, failing with its last log line if it exits.
    fn await_listening(&self, cluster: &Cluster, id: u32) -> Result<()> {
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if cluster.pid(id).is_none_or(|pid| !alive(pid)) {
                bail!("replica {id} exited at once: {}", last_words(&cluster.log_file(id)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops a replica that was started but not added, and removes its files (its id was never
    /// a member, so a later `add` may take it again).
    fn undo_add(&self, cluster: &Cluster, id: u32) {
        let _ = cluster.signal(id, "KILL");
        let _ = std::fs::remove_file(cluster.node_file(id));
        let _ = std::fs::remove_dir_all(cluster.dir.join("data").join(format!("node-{id}")));
        for ext in ["pem", "key"] {
            let _ = std::fs::remove_file(cluster.dir.join("certs").join(format!("node-{id}.{ext}")));
        }
    }

    /// Waits until replica `id` has caught up (see [`Members::caught_up`]); returns its slot.
    pub(crate) fn await_caught_up(&self, cluster: &Cluster, id: u32, timeout: Duration) -> Result<u64> {
        let began = Instant::now();
        let mut told = Instant::now();
        loop {
            if cluster.pid(id).is_some_and(|pid| !alive(pid)) {
                bail!("replica {id} exited while catching up: {}", last_words(&cluster.log_file(id)));
            }
            let last = match self.members(cluster) {
                Ok(view) => {
                    let caught_up = view.caught_up(id, CATCH_UP_SLACK);
                    let answering = if caught_up.is_some() { answering(cluster) } else { Vec::new() };
                    let rejoining = caught_up.is_some()
                        && answering.iter().find(|(i, _)| *i == id).is_none_or(|(_, rejoining)| *rejoining);
                    if let (Some((slot, leader)), false) = (caught_up, rejoining) {
                        self.say(&format!(
                            "replica {id} caught up in {:.1} s: slot {slot}, the leader (replica {}) at {leader}",
                            began.elapsed().as_secs_f64(),
                            view.leader.unwrap_or(0)
                        ));
                        return Ok(slot);
                    }
                    match (view.get(id), view.leader.and_then(|l| view.get(l))) {
                        _ if rejoining => {
                            let unheard: Vec<String> = view
                                .members
                                .iter()
                                .filter(|m| m.id != id && m.role == "voter")
                                .filter(|m| !answering.iter().any(|(i, _)| *i == m.id))
                                .map(|m| m.id.to_string())
                                .collect();
                            if !unheard.is_empty() && began.elapsed() > STUCK_JOINING {
                                bail!(
                                    "replica {id} cannot finish joining while voter(s) {} do not answer: it \
                                     votes for nothing until it has heard from every other voter, so promoting \
                                     it now could leave no majority; bring them back, or remove them first \
                                     (docs/OPERATIONS.md, \"Replacing a dead machine\")",
                                    unheard.join(", ")
                                );
                            }
                            format!(
                                "replica {id} has the slots but is still joining: it votes for nothing until \
                                 it has heard from every other voter (not answering: {})",
                                if unheard.is_empty() { "none".to_owned() } else { unheard.join(", ") }
                            )
                        }
                        (None, _) => format!("replica {id} is not a member (epoch {})", view.epoch),
                        (Some(m), Some(l)) => {
                            format!("replica {id} at slot {}, the leader at {}", m.caught_up, l.caught_up)
                        }
                        (Some(m), None) => format!("replica {id} at slot {}, no leader", m.caught_up),
                    }
                }
                Err(e) => format!("{e:#}"),
            };
            if began.elapsed() > timeout {
                bail!("replica {id} did not catch up within {timeout:?}: {last}");
            }
            if told.elapsed() > Duration::from_secs(5) {
                self.say(&format!("waiting for replica {id} to catch up: {last}"));
                told = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `synod member promote id`.
    pub(crate) fn promote(&self, cluster: &Cluster, id: u32) -> Result<()> {
        self.say(&format!("promoting replica {id} to voter"));
        self.member(cluster, &["promote", &id.to_string()])?;
        self.follow(cluster)?;
        Ok(())
    }

    /// Says who leads and whether `id` is it; returns the leader.
    pub(crate) fn leader(&self, cluster: &Cluster) -> Result<Option<u32>> {
        Ok(self.members(cluster)?.leader)
    }

    /// `synod member remove id`, then waits for its process to exit. Returns how long that took
    /// after the removal was chosen.
    pub(crate) fn remove(&self, cluster: &Cluster, id: u32) -> Result<Duration> {
        let view = self.members(cluster).context("reading the configuration")?;
        if view.get(id).is_none() {
            bail!(
                "replica {id} is not a member (epoch {}, members {})",
                view.epoch,
                view.members.iter().map(|m| m.id.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        match view.leader {
            Some(l) if l == id => {
                self.say(&format!("removing replica {id}, the leader: it hands over to another voter"))
            }
            Some(l) => self.say(&format!("removing replica {id}, a follower (replica {l} leads)")),
            None => self.say(&format!("removing replica {id} (no leader known right now)")),
        }
        let pid = cluster.pid(id).filter(|&pid| alive(pid));
        self.member(cluster, &["remove", &id.to_string()])?;
        let removed = Instant::now();
        self.follow(cluster)?;
        let Some(pid) = pid else {
            let _ = std::fs::remove_file(cluster.pid_file(id));
            self.say(&format!("replica {id} was not running here; nothing to wait for"));
            return Ok(Duration::ZERO);
        };
        self.say(&format!("waiting for replica {id} (pid {pid}) to exit"));
        while alive(pid) {
            if removed.elapsed() > EXIT_TIMEOUT {
                bail!(
                    "replica {id} (pid {pid}) was removed but still runs after {EXIT_TIMEOUT:?}: {}",
                    last_words(&cluster.log_file(id))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let took = removed.elapsed();
        let _ = std::fs::remove_file(cluster.pid_file(id));
        let log = std::fs::read_to_string(cluster.log_file(id)).unwrap_or_default();
        let said = if log.contains("removed from the cluster in configuration") {
            "its log says it was removed from the cluster"
        } else {
            "its log does not say it was removed"
        };
        self.say(&format!("replica {id} exited {:.1} s after its removal; {said}", took.as_secs_f64()));
        Ok(took)
    }

    /// Replaces replica `id`: a new replica added as a learner, caught up, promoted; then `id`
    /// removed. Returns the new replica's id.
    pub(crate) fn replace(&self, cluster: &Cluster, id: u32) -> Result<u32> {
        let view = self.members(cluster).context("reading the configuration")?;
        if view.get(id).is_none() {
            bail!("replica {id} is not a member, so there is nothing to replace");
        }
        // A new replica starts on an empty data directory, and such a replica does not vote
        // until it has heard from every other voter; with `id` down it never would, so it is
        // removed first, as docs/OPERATIONS.md says to replace a dead machine.
        let answers = answering(cluster).iter().any(|(i, _)| *i == id);
        let down = cluster.pid(id).is_none_or(|pid| !alive(pid)) || !answers;
        if down {
            self.say(&format!(
                "replica {id} is down: removing it first, then adding its replacement (a new replica \
                 cannot finish joining while a voter is unreachable)"
            ));
            self.remove(cluster, id)?;
        }
        let new = self.add(cluster, true)?;
        self.await_caught_up(cluster, new, CATCH_UP_TIMEOUT)?;
        self.promote(cluster, new)?;
        if !down {
            self.remove(cluster, id)?;
        }
        if let Ok(Some(l)) = self.leader(cluster) {
            self.say(&format!("replica {l} leads"));
        }
        Ok(new)
    }
}

/// The replicas of client.toml that answer `synod status --json`, each with whether it says it
/// is still rejoining (started on an empty data directory and not yet caught up with every other
/// voter).
fn answering(cluster: &Cluster) -> Vec<(u32, bool)> {
    let views = cluster.statuses().unwrap_or_default();
    views
        .iter()
        .flatten()
        .filter_map(|v| Some((u32::try_from(v["id"].as_u64()?).ok()?, v["rejoining"] != Value::Bool(false))))
        .collect()
}

/// How long a new replica that has the slots may wait on a voter that does not answer before
/// the wait gives up.
const STUCK_JOINING: Duration = Duration::from_secs(10);

/// Slots a new replica may trail the leader by and still count as caught up (one batch of
/// slots in flight, plus the reports' lag under load).
const CATCH_UP_SLACK: u64 = 16;

/// Whether a replica could bind its ports now: QUIC on `port` (UDP), metrics on `metrics` (TCP).
fn ports_free(port: u16, metrics: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        && std::net::TcpListener::bind(("127.0.0.1", metrics)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"change_in_flight":false,"epoch":1,"from":3,"leader":3,"members":[{"addr":"127.0.0.1:7601","caught_up":7,"id":1,"role":"voter"},{"addr":"127.0.0.1:7602","caught_up":5,"id":2,"role":"voter"},{"addr":"127.0.0.1:7603","caught_up":9,"id":3,"role":"voter"},{"addr":"127.0.0.1:7604","caught_up":0,"id":4,"role":"learner"}]}"#;

    #[test]
    fn member_list_json_is_parsed() {
        let view = parse_members(LIST.as_bytes()).unwrap();
        assert_eq!(view.epoch, 1);
        assert_eq!(view.leader, Some(3));
        assert!(!view.change_in_flight);
        assert_eq!(view.members.len(), 4);
        assert_eq!(
            view.get(4),
            Some(&Member { id: 4, addr: "127.0.0.1:7604".into(), role: "learner".into(), caught_up: 0 })
        );
        assert_eq!(view.addresses()[1], (2, "127.0.0.1:7602".to_owned()));
        let none = parse_members(br#"{"epoch":0,"leader":null,"members":[]}"#).unwrap();
        assert_eq!(none.leader, None);
        assert!(parse_members(b"").is_err());
        assert!(parse_members(br#"{"epoch":0}"#).is_err());
        assert!(parse_members(br#"{"epoch":0,"members":[{"addr":"x"}]}"#).is_err());
    }

    #[test]
    fn a_new_replica_has_caught_up_once_it_reaches_the_slowest_voter() {
        let mut view = parse_members(LIST.as_bytes()).unwrap();
        assert_eq!(view.caught_up(4, 0), None, "not heard from");
        view.members[3].caught_up = 4;
        assert_eq!(view.caught_up(4, 0), None, "behind the slowest voter (5)");
        view.members[3].caught_up = 5;
        assert_eq!(view.caught_up(4, 0), Some((5, 9)));
        // A voter not heard from does not hold it back; the leader less the slack does.
        view.members[1].caught_up = 0;
        assert_eq!(view.caught_up(4, 0), None, "behind the slowest heard-from voter (7)");
        assert_eq!(view.caught_up(4, 4), Some((5, 9)), "within the slack of the leader");
        view.leader = None;
        assert_eq!(view.caught_up(4, 100), None, "no leader to compare with");
        assert_eq!(view.caught_up(9, 100), None, "not a member");
    }

    #[test]
    fn the_port_layout_comes_from_the_members() {
        let view = parse_members(LIST.as_bytes()).unwrap();
        assert_eq!(view.base_port().unwrap(), 7600);
        let mut odd = view.clone();
        odd.members[1].addr = "127.0.0.1:9000".into();
        assert!(odd.base_port().unwrap_err().to_string().contains("not base + id"));
        let mut bad = view;
        bad.members[0].addr = "nowhere".into();
        assert!(bad.base_port().is_err());
    }

    #[test]
    fn a_joining_replica_names_itself_and_the_members() {
        let peers = [(1, "127.0.0.1:7101".to_owned()), (3, "127.0.0.1:7103".to_owned())];
        let text = node_toml(5, 7100, &peers);
        assert!(
            text.contains("id = 5\njoin = true\ndata_dir = \"data/node-5\"\nmetrics = \"127.0.0.1:7205\"")
        );
        assert!(text.contains("cert = \"certs/node-5.pem\""));
        assert!(text
            .ends_with("[peers]\n1 = \"127.0.0.1:7101\"\n3 = \"127.0.0.1:7103\"\n5 = \"127.0.0.1:7105\"\n"));
        // Its own entry is not repeated when the members already name it.
        let again = node_toml(5, 7100, &[(5, "127.0.0.1:7105".to_owned())]);
        assert_eq!(again.matches("5 = ").count(), 1);
    }
}
