//! `cargo xtask deploy-test`: runs docs/DEPLOY.md, the three-host deployment guide, as written.
//!
//! The guide's code blocks whose info string is `sh deploy:host=NAME[,NAME...] [retry=S]
//! [service=start|stop]` are run in order, each on its host: a network namespace per host joined
//! by a bridge, the host names resolved through lines added to `/etc/hosts` (and removed at the
//! end). Each block runs as `bash -e` in a mount namespace where `/etc` (a copy of the machine's),
//! `/root`, `/usr/local/bin` and `/var/lib` are directories of that host's own, so that `useradd`,
//! `install` and `chown` run for real; `scp` is a stand-in that copies into the named host's
//! directories. A `service=start` block is not run: instead the `ExecStart=` of
//! deploy/synod.service runs in the host's namespace as systemd would run it (`User=`,
//! `LimitNOFILE=`, `Environment=`, `StateDirectory=`); `service=stop` sends it SIGTERM.
//!
//! Before the guide: `systemd-analyze verify` of the unit (when installed; `ExecStart=` pointed at
//! the built binary), `promtool check rules deploy/prometheus/alerts.yml`, `promtool test rules`
//! on its unit tests (alerts_test.yml) and `promtool check rules` on the dashboard's queries
//! (promtool installed with apt when missing). After it: every `synod_` metric that deploy/grafana/synod.json and the rules use
//! must appear in the `/metrics` of the replicas the guide left running.
//!
//! A failing step stops the run with `docs/DEPLOY.md:LINE`, its host, its commands and their
//! output. Namespaces, processes, `/etc/hosts` lines and files are removed at the end, and by a
//! detached watchdog if the run is interrupted; the replicas' logs stay in
//! `$CARGO_TARGET_DIR/deploy-test/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::chaos::sh;
use crate::cluster::{build_release, last_words, synod_bin};
use crate::{project_root, target_dir};

/// Runs docs/DEPLOY.md's marked code blocks across network namespaces standing for its hosts,
/// checks deploy/synod.service with systemd-analyze, the alerting rules with promtool, and the
/// dashboard's and rules' metric names against running replicas (root; iproute2, curl).
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask deploy-test", bin_name = "cargo xtask deploy-test")]
pub(crate) struct Args {}

const GUIDE: &str = "docs/DEPLOY.md";
const UNIT: &str = "deploy/synod.service";
const DASHBOARD: &str = "deploy/grafana/synod.json";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
/// promtool's unit tests of the alerting rules.
const ALERTS_TEST: &str = "deploy/prometheus/alerts_test.yml";
/// Everything the lab makes lives here (outside the directories the hosts' mounts hide).
const LAB_DIR: &str = "/tmp/synod-deploy-test";
const NET: &str = "10.201.0";
const SWITCH: &str = "synoddsw";
/// Ends every line the lab adds to /etc/hosts.
const HOSTS_MARK: &str = "# synod-deploy-test";
const HOSTS_FILE: &str = "/etc/hosts";
/// The directories of each host's own, as (path on the host, directory under the host's root).
const MOUNTS: &[(&str, &str)] =
    &[("/etc", "etc"), ("/root", "root"), ("/usr/local/bin", "usr-local-bin"), ("/var/lib", "var-lib")];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Args {} = crate::parse_args("deploy-test", args)?;
    let began = Instant::now();
    let root = project_root();
    let guide = std::fs::read_to_string(root.join(GUIDE)).with_context(|| format!("reading {GUIDE}"))?;
    let blocks = parse_guide(&guide)?;
    let unit =
        Unit::parse(&std::fs::read_to_string(root.join(UNIT)).with_context(|| format!("reading {UNIT}"))?)?;
    build_release(&["synod"])?;
    verify_unit()?;
    check_rules()?;
    eprintln!("deploy-test: {} steps of {GUIDE} on hosts {}", blocks.len(), hosts_of(&blocks).join(", "));
    crate::wait_for_earlier_watchdog("deploy-test", Duration::from_secs(30))?;
    let mut lab = Lab::up(&hosts_of(&blocks))?;
    let outcome = (|| {
        for block in &blocks {
            lab.step(block, &unit)?;
        }
        check_metric_names(&lab)
    })();
    lab.save_logs();
    drop(lab);
    outcome?;
    eprintln!("deploy-test: {GUIDE} ran as written, {:.0} s", began.elapsed().as_secs_f64());
    Ok(())
}

/// What a `service=` block asks systemd to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Start,
    Stop,
}

/// One marked code block of the guide.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    /// The line of its opening fence (1-based).
    line: usize,
    hosts: Vec<String>,
    retry: Option<u64>,
    service: Option<Service>,
    body: String,
}

/// The guide's marked blocks, in order; an unknown option in a marker is an error.
fn parse_guide(text: &str) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else { continue };
        let indent = line.len() - trimmed.len();
        let mut body = String::new();
        let mut closed = false;
        for (_, inner) in lines.by_ref() {
            if inner.trim() == "```" {
                closed = true;
                break;
            }
            body.push_str(inner.get(indent..).unwrap_or(inner.trim_start()));
            body.push('\n');
        }
        if !closed {
            bail!("{GUIDE}:{}: the code block is never closed", i + 1);
        }
        let mut words = info.split_whitespace();
        let lang = words.next().unwrap_or("");
        let words: Vec<&str> = words.collect();
        if !words.iter().any(|w| w.starts_with("deploy:")) {
            continue;
        }
        let at = || format!("{GUIDE}:{}", i + 1);
        if lang != "sh" {
            bail!("{}: a deploy block must be ```sh, not {lang:?}", at());
        }
        let mut block = Block { line: i + 1, hosts: Vec::new(), retry: None, service: None, body };
        for word in words {
            let word = word.strip_prefix("deploy:").unwrap_or(word);
            match word.split_once('=') {
                Some(("host", hosts)) => block.hosts = hosts.split(',').map(str::to_owned).collect(),
                Some(("retry", secs)) => {
                    block.retry = Some(secs.parse().with_context(|| format!("{}: retry={secs}", at()))?)
                }
                Some(("service", "start")) => block.service = Some(Service::Start),
                Some(("service", "stop")) => block.service = Some(Service::Stop),
                _ => bail!("{}: unknown deploy option {word:?} (host=, retry=, service=start|stop)", at()),
            }
        }
        if block.hosts.is_empty() || block.hosts.iter().any(|h| h.is_empty()) {
            bail!("{}: a deploy block names its host: deploy:host=NAME[,NAME...]", at());
        }
        blocks.push(block);
    }
    if blocks.is_empty() {
        bail!("{GUIDE} has no ```sh deploy:host=... blocks");
    }
    Ok(blocks)
}

/// Every host the blocks name, in order of first appearance.
fn hosts_of(blocks: &[Block]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for h in blocks.iter().flat_map(|b| &b.hosts) {
        if !hosts.contains(h) {
            hosts.push(h.clone());
        }
    }
    hosts
}

/// What the test needs of deploy/synod.service's `[Service]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unit {
    exec_start: Vec<String>,
    user: String,
    group: String,
    limit_nofile: Option<String>,
    state_directory: Option<String>,
    state_directory_mode: String,
    environment: Vec<(String, String)>,
    restart: Option<String>,
}

impl Unit {
    fn parse(text: &str) -> Result<Unit> {
        let mut section = "";
        let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section == "[Service]" {
                if let Some((k, v)) = line.split_once('=') {
                    keys.entry(k.trim()).or_default().push(v.trim());
                }
            }
        }
        let one = |k: &str| keys.get(k).and_then(|v| v.last()).map(|v| (*v).to_owned());
        let exec = one("ExecStart").with_context(|| format!("{UNIT}: no ExecStart="))?;
        if exec.contains(['"', '\'', '$', '%', '\\']) {
            bail!("{UNIT}: ExecStart= with quotes, variables or specifiers is not supported by the test");
        }
        let user = one("User").with_context(|| format!("{UNIT}: no User="))?;
        let mut environment = Vec::new();
        for env in keys.get("Environment").into_iter().flatten() {
            for pair in env.split_whitespace() {
                let (k, v) = pair.split_once('=').with_context(|| format!("{UNIT}: Environment={env}"))?;
                environment.push((k.to_owned(), v.to_owned()));
            }
        }
        Ok(Unit {
            exec_start: exec.split_whitespace().map(str::to_owned).collect(),
            group: one("Group").unwrap_or_else(|| user.clone()),
            user,
            limit_nofile: one("LimitNOFILE"),
            state_directory: one("StateDirectory"),
            state_directory_mode: one("StateDirectoryMode").unwrap_or_else(|| "0755".to_owned()),
            environment,
            restart: one("Restart"),
        })
    }
}

/// `systemd-analyze verify` of the unit with `ExecStart=` pointed at the built binary (the
/// unit's own path does not exist here), when systemd-analyze is installed.
fn verify_unit() -> Result<()> {
    let Some(analyze) = which("systemd-analyze") else {
        eprintln!("deploy-test: systemd-analyze is not installed; {UNIT} not verified");
        return Ok(());
    };
    let text = std::fs::read_to_string(project_root().join(UNIT))?;
    let unit = Unit::parse(&text)?;
    let binary = &unit.exec_start[0];
    let rewritten =
        text.replace(&format!("ExecStart={binary} "), &format!("ExecStart={} ", synod_bin().display()));
    let dir = target_dir().join("deploy-test").join("verify");
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join("synod.service");
    std::fs::write(&copy, rewritten)?;
    let out = Command::new(&analyze).arg("verify").arg(&copy).output().context("running systemd-analyze")?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "deploy-test: systemd-analyze verify {UNIT} (ExecStart={}): {}",
        synod_bin().display(),
        if said.trim().is_empty() { "no complaints".to_owned() } else { said.trim().to_owned() }
    );
    if !out.status.success() {
        bail!("systemd-analyze verify {UNIT} failed ({}): {}", out.status, said.trim());
    }
    Ok(())
}

/// `promtool check rules` on the alerting rules and `promtool test rules` on their unit tests;
/// the dashboard's queries are checked the same way, as the expressions of alerting rules.
/// promtool comes with Debian's `prometheus`.
fn check_rules() -> Result<()> {
    if which("promtool").is_none() {
        eprintln!("deploy-test: promtool is missing; installing Debian's prometheus package");
        crate::apt_install("prometheus")?;
    }
    promtool(&["check", "rules", ALERTS])?;
    promtool(&["test", "rules", ALERTS_TEST])?;
    let dashboard = std::fs::read_to_string(project_root().join(DASHBOARD))
        .with_context(|| format!("reading {DASHBOARD}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&dashboard).with_context(|| format!("{DASHBOARD} is not JSON"))?;
    let rules = target_dir().join("deploy-test").join("dashboard-queries.yml");
    std::fs::create_dir_all(rules.parent().expect("a file in a directory"))?;
    std::fs::write(&rules, dashboard_as_rules(&json)?)?;
    promtool(&["check", "rules", &rules.display().to_string()])
}

fn promtool(args: &[&str]) -> Result<()> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(project_root())
        .output()
        .context("running promtool")?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("deploy-test: promtool {}:\n{}", args.join(" "), indent(said.trim()));
    if !out.status.success() {
        bail!("promtool {} failed ({})", args.join(" "), out.status);
    }
    Ok(())
}

/// The dashboard's PromQL (every target's `expr`) as a rules file, Grafana's variables replaced
/// by values, so that promtool parses each query.
fn dashboard_as_rules(dashboard: &serde_json::Value) -> Result<String> {
    let mut queries = Vec::new();
    dashboard_queries(dashboard, &mut queries);
    let exprs: Vec<&String> = queries.iter().filter(|q| !q.starts_with("label_values(")).collect();
    if exprs.is_empty() {
        bail!("{DASHBOARD} has no queries");
    }
    let mut out = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$job", "synod")
            .replace("$instance", ".*");
        if expr.contains('$') {
            bail!("{DASHBOARD}: a variable the test does not know in {expr}");
        }
        out.push_str(&format!(
            "      - alert: DashboardQuery{}\n        expr: {}\n",
            i + 1,
            serde_json::to_string(&expr)?
        ));
    }
    Ok(out)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect::<String>().trim_end().to_owned()
}

/// The network namespace standing for `host`.
fn ns(host: &str) -> String {
    format!("sdt-{host}")
}

/// The pretend hosts: a namespace and a root directory each, the replicas running in them.
struct Lab {
    hosts: Vec<String>,
    services: BTreeMap<String, Child>,
}

impl Lab {
    fn up(hosts: &[String]) -> Result<Lab> {
        Lab::down(hosts);
        let lab = Lab { hosts: hosts.to_vec(), services: BTreeMap::new() };
        Lab::watchdog(hosts)?;
        std::fs::create_dir_all(Path::new(LAB_DIR).join("bin"))?;
        let lines: String =
            hosts.iter().enumerate().map(|(i, h)| format!("{NET}.{} {h} {HOSTS_MARK}\n", i + 1)).collect();
        let mut text = std::fs::read_to_string(HOSTS_FILE).context("reading /etc/hosts")?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        // Written in place: /etc/hosts may be a bind mount, which a rename would not replace.
        std::fs::write(HOSTS_FILE, text + &lines).context("adding the hosts to /etc/hosts")?;
        sh(&["ip", "netns", "add", SWITCH])?;
        sh(&["ip", "-n", SWITCH, "link", "set", "lo", "up"])?;
        sh(&["ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", SWITCH, "link", "set", "br0", "up"])?;
        for (i, host) in hosts.iter().enumerate() {
            let name = ns(host);
            let port = format!("p{}", i + 1);
            sh(&["ip", "netns", "add", &name])?;
            sh(&[
                "ip", "link", "add", "eth0", "netns", &name, "type", "veth", "peer", "name", &port, "netns",
                SWITCH,
            ])?;
            sh(&["ip", "-n", SWITCH, "link", "set", &port, "master", "br0"])?;
            sh(&["ip", "-n", SWITCH, "link", "set", &port, "up"])?;
            sh(&["ip", "-n", &name, "addr", "add", &format!("{NET}.{}/24", i + 1), "dev", "eth0"])?;
            sh(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
            sh(&["ip", "-n", &name, "link", "set", "eth0", "up"])?;
            let dir = host_dir(host);
            for (_, own) in MOUNTS {
                std::fs::create_dir_all(dir.join(own))?;
            }
            // The host's /etc: a copy of this machine's, made after the hosts were added.
            std::fs::remove_dir(dir.join("etc"))?;
            sh(&["cp", "-a", "/etc", &dir.join("etc").display().to_string()])?;
            // "The synod binary, copied to root's home directory on every host."
            std::fs::copy(synod_bin(), dir.join("root").join("synod"))?;
        }
        std::fs::write(Path::new(LAB_DIR).join("bin").join("scp"), SCP)?;
        sh(&["chmod", "0755", &Path::new(LAB_DIR).join("bin").join("scp").display().to_string()])?;
        Ok(lab)
    }

    /// A detached shell that tears the lab down once this process is gone.
    fn watchdog(hosts: &[String]) -> Result<()> {
        let names: Vec<String> = hosts.iter().map(|h| ns(h)).chain([SWITCH.to_owned()]).collect();
        let script = format!(
            "for n in {names}; do \
             for p in $(ip netns pids $n 2>/dev/null); do kill -KILL $p; done; \
             ip netns del $n 2>/dev/null; done; \
             if grep -q '{HOSTS_MARK}' {HOSTS_FILE}; then grep -v '{HOSTS_MARK}' {HOSTS_FILE} > {LAB_DIR}.hosts; \
             cat {LAB_DIR}.hosts > {HOSTS_FILE}; rm -f {LAB_DIR}.hosts; fi; rm -rf {LAB_DIR}",
            names = names.join(" ")
        );
        crate::spawn_watchdog("deploy-test", &script).context("starting the lab's watchdog")?;
        Ok(())
    }

    /// Kills everything in the lab, deletes its namespaces, its /etc/hosts lines and its files.
    fn down(hosts: &[String]) {
        for name in hosts.iter().map(|h| ns(h)).chain([SWITCH.to_owned()]) {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        }
        if let Ok(text) = std::fs::read_to_string(HOSTS_FILE) {
            if text.contains(HOSTS_MARK) {
                let kept: String =
                    text.lines().filter(|l| !l.contains(HOSTS_MARK)).map(|l| format!("{l}\n")).collect();
                if let Err(e) = std::fs::write(HOSTS_FILE, kept) {
                    eprintln!("deploy-test: cannot remove the lab's lines from /etc/hosts: {e}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(LAB_DIR);
    }

    /// A command that runs `script` (then `args` as its `$1`, ...) in `host`'s namespace, with
    /// the host's own directories mounted and root's home as the working directory.
    fn on(&self, host: &str, script: &str, args: &[String]) -> Command {
        let mut mounts = String::from("set -e\n");
        for (path, own) in MOUNTS {
            mounts.push_str(&format!("mount --bind \"$DEPLOY_HOSTS/$DEPLOY_HOST/{own}\" {path}\n"));
        }
        mounts.push_str("cd /root\n");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns(host), "bash", "-c", &(mounts + script), "bash"])
            .args(args)
            .env_clear()
            .env(
                "PATH",
                format!("{LAB_DIR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            )
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("DEPLOY_HOSTS", Path::new(LAB_DIR).join("hosts"))
            .env("DEPLOY_HOST", host)
            .stdin(Stdio::null());
        cmd
    }

    fn step(&mut self, block: &Block, unit: &Unit) -> Result<()> {
        for host in &block.hosts {
            if !self.hosts.contains(host) {
                bail!("{GUIDE}:{}: unknown host {host}", block.line);
            }
            eprintln!("deploy-test: {GUIDE}:{} on {host}", block.line);
            match block.service {
                Some(Service::Start) => self.start(block, host, unit)?,
                Some(Service::Stop) => self.stop(block, host)?,
                None => self.run_block(block, host)?,
            }
        }
        Ok(())
    }

    fn run_block(&self, block: &Block, host: &str) -> Result<()> {
        let began = Instant::now();
        let limit = Duration::from_secs(block.retry.unwrap_or(0));
        let mut tries = 0;
        loop {
            tries += 1;
            let out = self
                .on(host, "exec bash -e -c \"$1\"", std::slice::from_ref(&block.body))
                .output()
                .with_context(|| format!("{GUIDE}:{}: cannot run the block on {host}", block.line))?;
            let output =
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            if out.status.success() {
                if !output.trim().is_empty() {
                    eprintln!("{}", indent(output.trim_end()));
                }
                if tries > 1 {
                    eprintln!("    (succeeded at try {tries}, after {:.1} s)", began.elapsed().as_secs_f64());
                }
                return Ok(());
            }
            if began.elapsed() >= limit {
                bail!(
                    "{GUIDE}:{} on {host} failed ({}{}):\n{}\n  output:\n{}{}",
                    block.line,
                    out.status,
                    if tries > 1 {
                        format!(", {tries} tries in {:.0} s", began.elapsed().as_secs_f64())
                    } else {
                        String::new()
                    },
                    indent(block.body.trim_end()),
                    indent(output.trim_end()),
                    self.replica_words()
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// What systemd does for `systemctl start` of the unit: its state directory, then its
    /// ExecStart= as User=/Group= with LimitNOFILE= and Environment=.
    fn start(&mut self, block: &Block, host: &str, unit: &Unit) -> Result<()> {
        if self.services.contains_key(host) {
            bail!("{GUIDE}:{}: synod already runs on {host}", block.line);
        }
        let mut script = String::new();
        if let Some(dir) = &unit.state_directory {
            script.push_str(&format!(
                "install -d -m {mode} -o {user} -g {group} /var/lib/{dir}\n",
                mode = unit.state_directory_mode,
                user = unit.user,
                group = unit.group,
            ));
        }
        script.push_str("exec env");
        for (k, v) in &unit.environment {
            script.push_str(&format!(" {k}={v}"));
        }
        if let Some(n) = &unit.limit_nofile {
            // Where the machine's own hard limit is lower (a container may not raise it), that.
            script = format!(
                "lim={n}; hard=$(ulimit -Hn)\n\
                 if [ \"$hard\" != unlimited ] && [ \"$hard\" -lt \"$lim\" ]; then\n\
                 echo \"deploy-test: LimitNOFILE=$lim is above this machine's hard limit; $hard instead\" >&2; lim=$hard; fi\n{script} prlimit --nofile=$lim:$lim"
            );
        }
        script.push_str(&format!(
            " setpriv --reuid={} --regid={} --init-groups -- \"$@\"",
            unit.user, unit.group
        ));
        eprintln!("    (instead of systemctl) {}", unit.exec_start.join(" "));
        let log = host_dir(host).join("synod.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let child = self
            .on(host, &script, &unit.exec_start)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("{GUIDE}:{}: starting synod on {host}", block.line))?;
        self.services.insert(host.to_owned(), child);
        // A replica that cannot start (a bad node.toml, unreadable keys) exits at once.
        std::thread::sleep(Duration::from_millis(500));
        let child = self.services.get_mut(host).expect("just inserted");
        if let Some(status) = child.try_wait()? {
            self.services.remove(host);
            bail!(
                "{GUIDE}:{} on {host}: `{}` exited at once ({status}): {}",
                block.line,
                unit.exec_start.join(" "),
                last_words(&host_dir(host).join("synod.log"))
            );
        }
        Ok(())
    }

    /// `systemctl stop`: SIGTERM, then SIGKILL after 30 s (the unit's TimeoutStopSec).
    fn stop(&mut self, block: &Block, host: &str) -> Result<()> {
        let mut child = self
            .services
            .remove(host)
            .with_context(|| format!("{GUIDE}:{}: synod does not run on {host}", block.line))?;
        // The pid is synod's own: bash, env, prlimit and setpriv each exec the next.
        sh(&["kill", "-TERM", &child.id().to_string()])?;
        let began = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                eprintln!("    (instead of systemctl) SIGTERM: synod exited ({status})");
                return Ok(());
            }
            if began.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{GUIDE}:{} on {host}: synod did not stop within 30 s of SIGTERM", block.line);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last line each replica logged, for a failure's report.
    fn replica_words(&self) -> String {
        let mut out = String::new();
        for host in &self.hosts {
            let log = host_dir(host).join("synod.log");
            if log.exists() {
                out.push_str(&format!("\n  {host}'s replica, last line: {}", last_words(&log)));
            }
        }
        out
    }

    /// Copies each replica's log to `$CARGO_TARGET_DIR/deploy-test/<host>.log`.
    fn save_logs(&self) {
        let dir = target_dir().join("deploy-test");
        let _ = std::fs::create_dir_all(&dir);
        for host in &self.hosts {
            let _ = std::fs::copy(host_dir(host).join("synod.log"), dir.join(format!("{host}.log")));
        }
    }

    /// `path` on `host`, fetched from inside its namespace.
    fn http_get(&self, host: &str, path: &str) -> Result<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns(host), "curl", "-fsS", "--max-time", "5"])
            .arg(format!("http://{host}:9100{path}"))
            .output()
            .context("running curl")?;
        if !out.status.success() {
            bail!("GET http://{host}:9100{path}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in self.services.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Lab::down(&self.hosts);
    }
}

fn host_dir(host: &str) -> PathBuf {
    Path::new(LAB_DIR).join("hosts").join(host)
}

/// The `scp` the blocks run: copies into the destination host's own directories.
const SCP: &str = r#"#!/bin/sh
# scp for cargo xtask deploy-test: `scp [-p] [-r] SRC... HOST:PATH` copies into HOST's directories.
set -e
flags=
while [ $# -gt 0 ]; do
  case "$1" in -r) flags=-r; shift ;; -p) shift ;; -*) echo "scp stand-in: unsupported option $1" >&2; exit 2 ;; *) break ;; esac
done
[ $# -ge 2 ] || { echo "scp stand-in: usage: scp SRC... HOST:PATH" >&2; exit 2; }
srcs=
while [ $# -gt 1 ]; do srcs="$srcs $1"; shift; done
host=${1%%:*}
path=${1#*:}
[ -d "$DEPLOY_HOSTS/$host" ] || { echo "scp stand-in: no host $host" >&2; exit 1; }
case "$path" in
  /etc/*|/etc) to=etc${path#/etc} ;;
  /root/*|/root) to=root${path#/root} ;;
  /usr/local/bin/*|/usr/local/bin) to=usr-local-bin${path#/usr/local/bin} ;;
  /var/lib/*|/var/lib) to=var-lib${path#/var/lib} ;;
  /*) echo "scp stand-in: $path is not under /etc, /root, /usr/local/bin or /var/lib" >&2; exit 1 ;;
  *) to=root/$path ;;
esac
exec cp $flags $srcs "$DEPLOY_HOSTS/$host/$to"
"#;

/// Every metric name in a Prometheus text exposition.
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every `synod_...` word in `text`.
fn synod_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("synod_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if (start == 0 || !word(bytes[start - 1])) && end > start + "synod_".len() {
            names.insert(text[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    names
}

/// The strings of the dashboard's JSON that PromQL is read from: every `expr` and `query`.
fn dashboard_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::Object(q)) => {
                        if let Some(serde_json::Value::String(s)) = q.get("query") {
                            out.push(s.clone());
                        }
                    }
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The dashboard and the rules use only metrics the running replicas export.
fn check_metric_names(lab: &Lab) -> Result<()> {
    let running: Vec<&String> = lab.services.keys().collect();
    if running.is_empty() {
        bail!("no replica runs after the guide to read /metrics from");
    }
    // The data directory's sizes are set every 5 s from the replica's start.
    let mut exposed = BTreeSet::new();
    for host in &running {
        exposed.extend(exposed_names(&lab.http_get(host, "/metrics")?));
    }
    let root = project_root();
    let dashboard =
        std::fs::read_to_string(root.join(DASHBOARD)).with_context(|| format!("reading {DASHBOARD}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&dashboard).with_context(|| format!("{DASHBOARD} is not JSON"))?;
    let mut queries = Vec::new();
    dashboard_queries(&json, &mut queries);
    let alerts = std::fs::read_to_string(root.join(ALERTS)).with_context(|| format!("reading {ALERTS}"))?;
    let mut missing = Vec::new();
    for (file, names) in [(DASHBOARD, synod_names(&queries.join("\n"))), (ALERTS, synod_names(&alerts))] {
        if names.is_empty() {
            bail!("{file} uses no synod_ metric");
        }
        let absent: Vec<&String> = names.iter().filter(|n| !exposed.contains(*n)).collect();
        eprintln!(
            "deploy-test: {file} uses {} synod metrics, {} of them in /metrics of {}",
            names.len(),
            names.len() - absent.len(),
            running.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
        );
        for name in absent {
            missing.push(format!("{file}: {name}"));
        }
    }
    if !missing.is_empty() {
        bail!("metrics no running replica exports:\n{}", indent(&missing.join("\n")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_blocks_are_parsed_with_their_lines_and_options() {
        let text = "# guide\n\n```sh deploy:host=synod-a,synod-b retry=30\necho hi\n```\n\n```sh\nnot run\n```\n\n  ```sh deploy:host=synod-c service=start\n  systemctl start synod\n  ```\n```text\nout\n```\n";
        let blocks = parse_guide(text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].line, 3);
        assert_eq!(blocks[0].hosts, ["synod-a", "synod-b"]);
        assert_eq!((blocks[0].retry, blocks[0].service), (Some(30), None));
        assert_eq!(blocks[0].body, "echo hi\n");
        assert_eq!((blocks[1].line, blocks[1].service), (11, Some(Service::Start)));
        assert_eq!(blocks[1].body, "systemctl start synod\n");
        assert_eq!(hosts_of(&blocks), ["synod-a", "synod-b", "synod-c"]);
        let e = parse_guide("```sh deploy:host=a bogus=1\nx\n```\n").unwrap_err().to_string();
        assert!(e.contains("DEPLOY.md:1") && e.contains("bogus"), "{e}");
        assert!(parse_guide("```sh deploy:retry=3\nx\n```\n").is_err());
        assert!(parse_guide("```sh deploy:host=a\nx\n").is_err());
    }

    #[test]
    fn the_guide_and_the_unit_say_what_the_test_needs() {
        let root = project_root();
        let blocks = parse_guide(&std::fs::read_to_string(root.join(GUIDE)).unwrap()).unwrap();
        let hosts = hosts_of(&blocks);
        assert_eq!(hosts, ["synod-a", "synod-b", "synod-c", "synod-d"]);
        assert!(blocks.iter().any(|b| b.service == Some(Service::Stop)));
        let unit = Unit::parse(&std::fs::read_to_string(root.join(UNIT)).unwrap()).unwrap();
        assert_eq!(unit.exec_start, ["/usr/local/bin/synod", "start", "--config", "/etc/synod/node.toml"]);
        assert_eq!(unit.restart.as_deref(), Some("on-failure"));
        assert_eq!((unit.user.as_str(), unit.state_directory.as_deref()), ("synod", Some("synod")));
        assert!(unit.limit_nofile.is_some());
    }

    #[test]
    fn the_dashboards_queries_become_rules_with_its_variables_replaced() {
        let dashboard = serde_json::json!({
            "panels": [{"targets": [{"expr": "rate(synod_x_total{job=\"$job\", instance=~\"$instance\"}[$__rate_interval])"}]}],
            "templating": {"list": [{"query": {"query": "label_values(synod_is_leader, instance)"}}]},
        });
        let rules = dashboard_as_rules(&dashboard).unwrap();
        assert!(
            rules.contains(r#"expr: "rate(synod_x_total{job=\"synod\", instance=~\".*\"}[1m])""#),
            "{rules}"
        );
        assert!(!rules.contains("label_values"), "{rules}");
        let unknown = serde_json::json!({"panels": [{"targets": [{"expr": "x[$range]"}]}]});
        assert!(dashboard_as_rules(&unknown).is_err());
    }

    #[test]
    fn metric_names_are_found_in_expositions_and_queries() {
        let text = "# HELP synod_is_leader x\n# TYPE synod_is_leader gauge\nsynod_is_leader 1\nsynod_peer_connected{peer=\"2\"} 1\nsynod_commit_latency_seconds_bucket{le=\"0.1\"} 3\n";
        let names = exposed_names(text);
        assert!(names.contains("synod_is_leader") && names.contains("synod_peer_connected"));
        assert!(names.contains("synod_commit_latency_seconds_bucket") && names.len() == 3);
        let used = synod_names(
            "histogram_quantile(0.99, sum by (le) (rate(synod_commit_latency_seconds_bucket[1m]))) / x_synod_no + synod_leader_id{job=\"synod\"} # every synod_ metric",
        );
        assert_eq!(
            used.into_iter().collect::<Vec<_>>(),
            ["synod_commit_latency_seconds_bucket", "synod_leader_id"]
        );
    }
}
