//! `cargo xtask cluster up|down|status [--dir D] [--replicas N] [--base-port P]`: real `synod`
//! processes on loopback with fresh certificates, started in the background and stopped by `down`;
//! `cargo xtask cluster add [--learner] | remove N | replace N` changes its membership online
//! (`crate::membership`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{cargo, membership, run_cmd, target_dir};

/// A cluster laid out in a directory: certificates, one config, log and pid file per replica.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    pub(crate) replicas: u32,
}

/// Real `synod` processes on loopback with fresh certificates: `up` builds and starts them in
/// the background, `down` stops them, `status` asks them; `add`, `remove N` and `replace N`
/// change the membership of a running cluster.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask cluster", bin_name = "cargo xtask cluster")]
pub(crate) struct Args {
    /// What to do.
    #[arg(value_enum, default_value_t = Action::Status)]
    action: Action,
    /// The replica to remove or replace (`remove N`, `replace N`).
    #[arg(value_name = "N")]
    id: Option<u32>,
    /// `add`: add the new replica as a learner (it does not vote until promoted).
    #[arg(long)]
    learner: bool,
    /// The cluster's directory (certificates, configs, data, logs) [default: $CARGO_TARGET_DIR/cluster].
    #[arg(long, value_name = "D")]
    dir: Option<PathBuf>,
    /// How many replicas.
    #[arg(long, value_name = "N", default_value_t = 3)]
    replicas: u32,
    /// `up`: replica i listens on P + i, its metrics on P + 100 + i (`add` follows the layout
    /// the members show).
    #[arg(long, value_name = "P", default_value_t = 7100)]
    base_port: u16,
}

/// What `cargo xtask cluster` does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Action {
    /// Builds synod, creates the cluster and starts its replicas.
    Up,
    /// Stops the replicas.
    Down,
    /// Shows each replica's status and the membership.
    Status,
    /// Adds a replica (the next free id and port): its certificate, its node file with
    /// `join = true`, starts it and adds it; without --learner waits until it has caught up.
    Add,
    /// Removes replica N and waits for its process to exit.
    Remove,
    /// Adds a new replica as a learner, waits until it has caught up, promotes it, removes N.
    Replace,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Args { action, id, learner, dir, replicas, base_port } = crate::parse_args("cluster", args)?;
    check_action_args(action, id, learner)?;
    let dir = dir.unwrap_or_else(|| target_dir().join("cluster"));
    let cluster = Cluster { dir, replicas };
    let steps = membership::Steps::new("cluster");
    match action {
        Action::Up => {
            build_release(&["synod"])?;
            cluster.create(base_port)?;
            cluster.start_all()?;
            let leader = match cluster.await_all_up(Duration::from_secs(20)) {
                Ok(leader) => leader,
                Err(e) => {
                    // Leave nothing half up: a later `up` would find these in its way.
                    let _ = cluster.down();
                    return Err(e.context(format!("the replicas' logs are in {}", cluster.dir.display())));
                }
            };
            println!("cluster: {replicas} replicas up in {}, leader {leader}", cluster.dir.display());
            println!(
                "try: {} put --client {} hello world",
                synod_bin().display(),
                cluster.client_file().display()
            );
            Ok(())
        }
        Action::Down => cluster.down(),
        Action::Status => {
            cluster.replicas_on_disk()?;
            let mut cmd = Command::new(synod_bin());
            cmd.arg("status").arg("--client").arg(cluster.client_file());
            run_cmd(&mut cmd)?;
            let mut cmd = Command::new(synod_bin());
            cmd.args(["member", "list", "--client"]).arg(cluster.client_file());
            run_cmd(&mut cmd)
        }
        Action::Add => {
            cluster.replicas_on_disk()?;
            let id = steps.add(&cluster, learner)?;
            if !learner {
                steps.await_caught_up(&cluster, id, membership::CATCH_UP_TIMEOUT)?;
            }
            println!("cluster: replica {id} added{}", if learner { " as a learner" } else { "" });
            Ok(())
        }
        Action::Remove => {
            cluster.replicas_on_disk()?;
            let id = id.context("remove needs the replica's id: `cargo xtask cluster remove N`")?;
            steps.remove(&cluster, id)?;
            println!("cluster: replica {id} removed");
            Ok(())
        }
        Action::Replace => {
            cluster.replicas_on_disk()?;
            let id = id.context("replace needs the replica's id: `cargo xtask cluster replace N`")?;
            let new = steps.replace(&cluster, id)?;
            println!("cluster: replica {id} replaced by replica {new}");
            Ok(())
        }
    }
}

/// Refuses a replica id or `--learner` where the action takes none.
fn check_action_args(action: Action, id: Option<u32>, learner: bool) -> Result<()> {
    match (action, id) {
        (Action::Remove | Action::Replace, None) => {
            bail!("`cluster {}` needs the replica's id N", action_name(action))
        }
        (Action::Remove | Action::Replace, Some(_)) => {}
        (_, Some(n)) => bail!("`cluster {}` takes no replica id (got {n})", action_name(action)),
        (_, None) => {}
    }
    if learner && !matches!(action, Action::Add) {
        bail!("--learner goes with `cluster add` only");
    }
    Ok(())
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Up => "up",
        Action::Down => "down",
        Action::Status => "status",
        Action::Add => "add",
        Action::Remove => "remove",
        Action::Replace => "replace",
    }
}

pub(crate) fn build_release(bins: &[&str]) -> Result<()> {
    build_release_with(bins, &[])
}

/// [`build_release`] with cargo features (`synod-bench/etcd`): the etcd feature's build
/// runs protoc, which comes from the protoc-bin-vendored crate.
pub(crate) fn build_release_with(bins: &[&str], features: &[&str]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--locked", "--quiet"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
        if features.contains(&"synod-bench/etcd") {
            cmd.env("PROTOC", crate::vendored_protoc()?);
        }
    }
    // `--bin` filters every selected package, so name each binary, `synod` included.
    for b in bins {
        match *b {
            "synod" => cmd.args(["-p", "synod", "--bin", "synod"]),
            other => cmd.args(["-p", "synod-bench", "--bin", other]),
        };
    }
    run_cmd(&mut cmd)
}

/// Spawns replica `i`'s command in a process group of its own (so that a
/// signal to xtask's group misses it), its output appended to `log`.
pub(crate) fn spawn_replica(mut cmd: Command, log: &Path, i: u32) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting replica {i}"))
}

pub(crate) fn synod_bin() -> PathBuf {
    target_dir().join("release").join("synod")
}

impl Cluster {
    pub(crate) fn node_file(&self, i: u32) -> PathBuf {
        self.dir.join(format!("node-{i}.toml"))
    }

    pub(crate) fn client_file(&self) -> PathBuf {
        self.dir.join("client.toml")
    }

    pub(crate) fn pid_file(&self, i: u32) -> PathBuf {
        self.dir.join(format!("node-{i}.pid"))
    }

    /// Every replica with a node file, original or added (`node-<id>.toml`), in id order.
    pub(crate) fn replicas_on_disk(&self) -> Result<Vec<u32>> {
        let ids = self.ids_on_disk();
        if ids.is_empty() {
            bail!("no cluster in {} (run `cargo xtask cluster up` first)", self.dir.display());
        }
        Ok(ids)
    }

    /// The ids of the node files in the cluster's directory (none if it does not exist).
    pub(crate) fn ids_on_disk(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries.flatten().filter_map(|e| node_file_id(&e.file_name().to_string_lossy())).collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn log_file(&self, i: u32) -> PathBuf {
        self.dir.join(format!("node-{i}.log"))
    }

    /// Fresh certificates, data directories and configuration files.
    pub(crate) fn create(&self, base_port: u16) -> Result<()> {
        self.create_with(base_port, false)
    }

    /// As `create`; `quiet` keeps `synod certs init` from echoing unless it fails.
    pub(crate) fn create_with(&self, base_port: u16, quiet: bool) -> Result<()> {
        if self.dir.exists() {
            if self.ids_on_disk().into_iter().chain(1..=self.replicas).any(|i| self.pid_file(i).exists()) {
                bail!("a cluster is running in {}; run `cargo xtask cluster down` first", self.dir.display());
            }
            std::fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))?;
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut certs = Command::new(synod_bin());
        certs
            .args(["certs", "init", "--nodes"])
            .arg(self.replicas.to_string())
            .args(["--clients", "4", "--dir"])
            .arg(self.dir.join("certs"));
        if quiet {
            let out = certs.output().context("running synod certs init")?;
            if !out.status.success() {
                bail!("synod certs init failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
        } else {
            run_cmd(&mut certs)?;
        }
        let peers: String =
            (1..=self.replicas).map(|i| format!("{i} = \"127.0.0.1:{}\"\n", base_port + i as u16)).collect();
        for i in 1..=self.replicas {
            let text = format!(
                "# Replica {i} of a local synod cluster (written by `cargo xtask cluster up`).\n\
                 id = {i}\ndata_dir = \"data/node-{i}\"\nmetrics = \"127.0.0.1:{}\"\n\n\
                 [tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node-{i}.pem\"\nkey = \"certs/node-{i}.key\"\n\n\
                 [peers]\n{peers}",
                base_port + 100 + i as u16
            );
            std::fs::write(self.node_file(i), text)?;
        }
        std::fs::write(self.client_file(), client_toml(&peers))?;
        Ok(())
    }

    /// Points client.toml at `members` (id, address), as a membership change leaves them.
    pub(crate) fn write_client_file(&self, members: &[(u32, String)]) -> Result<()> {
        let replicas: String = members.iter().map(|(id, addr)| format!("{id} = \"{addr}\"\n")).collect();
        let path = self.client_file();
        std::fs::write(&path, client_toml(&replicas)).with_context(|| format!("writing {}", path.display()))
    }

    pub(crate) fn start_all(&self) -> Result<()> {
        for i in 1..=self.replicas {
            self.start(i)?;
        }
        Ok(())
    }

    /// Starts replica `i` in the background, in a process group of its own.
    pub(crate) fn start(&self, i: u32) -> Result<()> {
        let mut cmd = Command::new(synod_bin());
        cmd.arg("start").arg("--config").arg(self.node_file(i));
        let child = spawn_replica(cmd, &self.log_file(i), i)?;
        std::fs::write(self.pid_file(i), child.id().to_string())?;
        Ok(())
    }

    pub(crate) fn pid(&self, i: u32) -> Option<u32> {
        std::fs::read_to_string(self.pid_file(i)).ok()?.trim().parse().ok()
    }

    /// Sends `signal` (as `kill` names it: TERM, KILL, STOP, CONT) to replica `i`.
    pub(crate) fn signal(&self, i: u32, signal: &str) -> Result<()> {
        let pid = self.pid(i).with_context(|| format!("replica {i} is not running"))?;
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        if signal == "KILL" || signal == "TERM" {
            wait_gone(pid, Duration::from_secs(10));
            let _ = std::fs::remove_file(self.pid_file(i));
        }
        Ok(())
    }

    pub(crate) fn down(&self) -> Result<()> {
        let ids = self.replicas_on_disk()?;
        let mut n = 0;
        for &i in &ids {
            if let Some(pid) = self.pid(i) {
                n += 1;
                let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
                if !wait_gone(pid, Duration::from_secs(5)) {
                    let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
                    wait_gone(pid, Duration::from_secs(5));
                }
                let _ = std::fs::remove_file(self.pid_file(i));
            }
        }
        println!("cluster: stopped {n} replicas in {}", self.dir.display());
        Ok(())
    }

    /// Each replica's view, from `synod status --json --client client.toml` (None: unreachable).
    /// Stops every replica still named by a pid file (a leftover of an earlier run too).
    pub(crate) fn stop_all(&self) {
        let mut ids = self.ids_on_disk();
        ids.extend(1..=self.replicas);
        ids.sort_unstable();
        ids.dedup();
        for i in ids {
            crate::bench::stop_pid_file(&self.pid_file(i), "synod");
        }
    }

    /// A detached shell, named `name`, that kills the replicas and the load generators whose
    /// pid files are `loads`, and removes the cluster's files, once this process is gone,
    /// however it ended.
    pub(crate) fn spawn_watchdog(&self, name: &str, loads: &[PathBuf]) -> Result<()> {
        use std::fmt::Write as _;
        let q = crate::shell_quote;
        let mut kills = String::new();
        for i in 1..=self.replicas {
            let _ = write!(kills, "k {} synod; ", q(&self.pid_file(i)));
        }
        for load in loads {
            let _ = write!(kills, "k {} load; ", q(load));
        }
        let script = format!(
            "k() {{ p=$(cat \"$1\" 2>/dev/null) || return 0; \
             [ \"$(cat /proc/$p/comm 2>/dev/null)\" = \"$2\" ] && kill -KILL $p; rm -f \"$1\"; }}; \
             {kills}sleep 0.2; rm -rf {}",
            q(&self.dir),
        );
        crate::spawn_watchdog(name, &script).with_context(|| format!("starting the {name} watchdog"))?;
        Ok(())
    }

    /// Waits until every replica answers with the same applied slot and digest, polling
    /// every `poll`; returns `slot <s>, digest <d>`. With `progress`, says what it sees
    /// every 10 s under that name.
    pub(crate) fn await_identical(
        &self,
        timeout: Duration,
        poll: Duration,
        progress: Option<&str>,
    ) -> Result<String> {
        let until = Instant::now() + timeout;
        let mut told = Instant::now();
        loop {
            let views = self.statuses().unwrap_or_default();
            let seen: Vec<Option<(u64, String)>> = views
                .iter()
                .map(|v| {
                    v.as_ref().map(|v| {
                        (v["applied"].as_u64().unwrap_or(0), v["digest"].as_str().unwrap_or("").to_owned())
                    })
                })
                .collect();
            if let Some(d) = agreement(&seen, self.replicas) {
                return Ok(d);
            }
            if Instant::now() > until {
                bail!("after {timeout:?}, (applied slot, digest) per replica: {seen:?}");
            }
            if let Some(name) = progress.filter(|_| told.elapsed() > Duration::from_secs(10)) {
                eprintln!("{name}: waiting for the replicas to agree: (applied slot, digest) {seen:?}");
                told = Instant::now();
            }
            std::thread::sleep(poll);
        }
    }

    pub(crate) fn statuses(&self) -> Result<Vec<Option<Value>>> {
        let mut cmd = Command::new(synod_bin());
        cmd.args(["status", "--json", "--client"]).arg(self.client_file());
        let out = cmd.stderr(Stdio::null()).output().context("running synod status")?;
        parse_statuses(&out.stdout)
    }

    /// Waits until one replica leads; returns its number.
    pub(crate) fn await_leader(&self, timeout: Duration) -> Result<u32> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(views) = self.statuses() {
                let leaders: Vec<u32> = views
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.as_ref().is_some_and(leads))
                    .map(|(i, _)| i as u32 + 1)
                    .collect();
                if let [one] = leaders[..] {
                    return Ok(one);
                }
            }
            if Instant::now() > until {
                bail!("no leader within {timeout:?}; see the logs in {}", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every replica answers, hears all its peers, and one of them
    /// leads; returns the leader. A replica whose process has exited fails the
    /// wait at once, quoting the end of its log: a cluster short of a replica
    /// still elects a leader, and would be measured or shown as if whole.
    pub(crate) fn await_all_up(&self, timeout: Duration) -> Result<u32> {
        let until = Instant::now() + timeout;
        let mut last = String::from("no status yet");
        loop {
            for i in 1..=self.replicas {
                if self.pid(i).is_none_or(|pid| !alive(pid)) {
                    bail!("replica {i} is not running: {}", last_words(&self.log_file(i)));
                }
            }
            if let Ok(views) = self.statuses() {
                match ready(&views, self.replicas) {
                    Ok(leader) => return Ok(leader),
                    Err(why) => last = why,
                }
            }
            if Instant::now() > until {
                bail!(
                    "the cluster was not ready within {timeout:?}: {last}; see the logs in {}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// client.toml for the local cluster, its `[replicas]` table being `replicas`.
fn client_toml(replicas: &str) -> String {
    format!(
        "# A client of the local synod cluster.\nclient = 1\n\n[tls]\nca = \"certs/ca.pem\"\n\
         cert = \"certs/client-1.pem\"\nkey = \"certs/client-1.key\"\n\n[replicas]\n{replicas}"
    )
}

/// The id in a node file's name, `node-<id>.toml`.
fn node_file_id(name: &str) -> Option<u32> {
    name.strip_prefix("node-")?.strip_suffix(".toml")?.parse().ok()
}

/// The replicas' entries of `synod status --json` output (`{"replicas": [...], ...}`), in the
/// client file's order; `None` for a replica that did not answer.
/// `slot <s>, digest <d>` when all `replicas` answered with the same applied slot and digest.
pub(crate) fn agreement(seen: &[Option<(u64, String)>], replicas: u32) -> Option<String> {
    let all: Vec<&(u64, String)> = seen.iter().flatten().collect();
    (all.len() == replicas as usize && !all[0].1.is_empty() && all.windows(2).all(|w| w[0] == w[1]))
        .then(|| format!("slot {}, digest {}", all[0].0, all[0].1))
}

pub(crate) fn parse_statuses(stdout: &[u8]) -> Result<Vec<Option<Value>>> {
    let report: Value = serde_json::from_slice(stdout)
        .with_context(|| format!("parsing synod status output {:?}", String::from_utf8_lossy(stdout)))?;
    let replicas = report["replicas"].as_array().context("synod status output has no replicas array")?;
    Ok(replicas.iter().map(|v| (v["reachable"] == Value::Bool(true)).then(|| v.clone())).collect())
}

/// Whether a replica's `synod status --json` entry says it leads.
pub(crate) fn leads(view: &Value) -> bool {
    view["role"] == "leader"
}

/// The leader, when every replica's status is in, each hears all its peers, and exactly one leads.
pub(crate) fn ready(views: &[Option<Value>], replicas: u32) -> std::result::Result<u32, String> {
    if views.len() != replicas as usize {
        return Err(format!("{} statuses for {replicas} replicas", views.len()));
    }
    let mut leaders = Vec::new();
    for (i, view) in views.iter().enumerate() {
        let i = i as u32 + 1;
        let Some(v) = view else { return Err(format!("replica {i} does not answer")) };
        let peers = v["peers_reachable"].as_array().map_or(0, Vec::len);
        if peers + 1 < replicas as usize {
            return Err(format!("replica {i} hears {peers} of its {} peers", replicas - 1));
        }
        if leads(v) {
            leaders.push(i);
        }
    }
    match leaders[..] {
        [one] => Ok(one),
        [] => Err("no leader yet".to_owned()),
        _ => Err(format!("replicas {leaders:?} all say they lead")),
    }
}

/// Whether process `pid` is running (a zombie child of ours is not).
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The last line of a replica's log, without its colours.
pub(crate) fn last_words(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("its log is empty");
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An ANSI escape: skip through its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain.trim().to_owned()
}

/// Waits for process `pid` to exit; returns whether it did.
fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(leads: bool, peers: &[u32]) -> Option<Value> {
        let role = if leads { "leader" } else { "follower" };
        Some(json!({"reachable": true, "role": role, "peers_reachable": peers}))
    }

    #[test]
    fn ready_needs_every_replica_connected_and_one_leader() {
        let whole = [view(false, &[2, 3]), view(true, &[1, 3]), view(false, &[1, 2])];
        assert_eq!(ready(&whole, 3), Ok(2));
        let short = [view(false, &[2, 3]), view(true, &[1, 3]), None];
        assert_eq!(ready(&short, 3), Err("replica 3 does not answer".to_owned()));
        let cut = [view(false, &[2]), view(true, &[1, 3]), view(false, &[1, 2])];
        assert_eq!(ready(&cut, 3), Err("replica 1 hears 1 of its 2 peers".to_owned()));
        let none = [view(false, &[2, 3]), view(false, &[1, 3]), view(false, &[1, 2])];
        assert_eq!(ready(&none, 3), Err("no leader yet".to_owned()));
        assert_eq!(ready(&[], 3), Err("0 statuses for 3 replicas".to_owned()));
    }

    #[test]
    fn status_output_is_one_json_object_with_a_row_per_replica() {
        let out = br#"{"replicas":[{"id":1,"reachable":true,"role":"leader","applied":4,"digest":"00000000000000ff"},{"id":2,"reachable":false,"error":"no answer within 1s"}],"digests_agree":true}"#;
        let views = parse_statuses(out).unwrap();
        assert_eq!(views.len(), 2);
        assert!(views[0].as_ref().is_some_and(leads));
        assert_eq!(views[0].as_ref().unwrap()["digest"], "00000000000000ff");
        assert!(views[1].is_none());
        assert!(parse_statuses(b"").is_err());
        assert!(parse_statuses(b"{}").is_err());
    }

    #[test]
    fn membership_actions_take_an_id_where_they_need_one() {
        let parse = |s: &str| {
            let args: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
            let a: Args = crate::parse_args("cluster", &args)?;
            check_action_args(a.action, a.id, a.learner).map(|()| (a.id, a.learner))
        };
        assert_eq!(parse("add").unwrap(), (None, false));
        assert_eq!(parse("add --learner").unwrap(), (None, true));
        assert_eq!(parse("remove 3").unwrap(), (Some(3), false));
        assert_eq!(parse("replace 1 --dir /tmp/x").unwrap(), (Some(1), false));
        assert!(parse("remove").unwrap_err().to_string().contains("needs the replica's id"));
        assert!(parse("add 4").unwrap_err().to_string().contains("takes no replica id"));
        assert!(parse("up --learner").unwrap_err().to_string().contains("--learner goes with"));
        assert!(parse("remove three").is_err());
    }

    #[test]
    fn node_files_name_the_replicas_on_disk() {
        assert_eq!(node_file_id("node-12.toml"), Some(12));
        assert_eq!(node_file_id("node-1.log"), None);
        assert_eq!(node_file_id("client.toml"), None);
        let dir = std::env::temp_dir().join(format!("synod-ids-on-disk-{}", std::process::id()));
        let cluster = Cluster { dir: dir.clone(), replicas: 3 };
        assert!(cluster.ids_on_disk().is_empty());
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["node-2.toml", "node-10.toml", "node-1.toml", "node-4.log", "client.toml"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        assert_eq!(cluster.replicas_on_disk().unwrap(), [1, 2, 10]);
        cluster.write_client_file(&[(2, "127.0.0.1:7102".into()), (10, "127.0.0.1:7110".into())]).unwrap();
        let text = std::fs::read_to_string(cluster.client_file()).unwrap();
        assert!(text.ends_with("[replicas]\n2 = \"127.0.0.1:7102\"\n10 = \"127.0.0.1:7110\"\n"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_words_are_the_last_line_without_colours() {
        let path = std::env::temp_dir().join(format!("synod-last-words-{}.log", std::process::id()));
        std::fs::write(&path, "first\n\u{1b}[2mtime\u{1b}[0m synod: failed: Address in use\n\n").unwrap();
        assert_eq!(last_words(&path), "time synod: failed: Address in use");
        std::fs::write(&path, "").unwrap();
        assert_eq!(last_words(&path), "its log is empty");
        std::fs::remove_file(&path).unwrap();
    }
}
