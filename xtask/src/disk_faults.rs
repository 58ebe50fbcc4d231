//! `cargo xtask disk-faults [--seconds S] [--delay-ms D] [--clients N] [--quick]`: a three-replica
//! cluster of real `synod` processes whose data directories are on faultfs (crates/synod-faultfs,
//! a FUSE pass-through file system that delays or fails fsync on demand), under the load
//! generator's puts:
//!
//! 1. no fault: the baseline, through faultfs as every later phase;
//! 2. fsync D ms late on a follower, then on the leader: the load must see no errors (an
//!    election, if the slow leader loses its place, is reported);
//! 3. fsync failing with EIO on the leader, under `load --verify`: that replica must exit
//!    non-zero with a message naming the failed fsync, the other two must go on serving, and every
//!    acknowledged write must read back.
//!
//! Ends with `disk-faults: slow fsync (D ms) on follower F: ... ; failing fsync: replica L stopped
//! ("..."), ...`, writes `disk-faults.json` beside the load's and replicas' logs under
//! `$CARGO_TARGET_DIR/disk-faults/`, and exits non-zero when any of the above does not hold.
//! Skips, saying so, when /dev/fuse is missing. Needs root (faultfs mounts with mount(2)) or
//! fusermount3. A detached watchdog kills what it started and unmounts faultfs if it is
//! interrupted.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cluster::{last_words, spawn_replica, synod_bin, Cluster};
use crate::{cargo, run_cmd, shell_quote, target_dir};

const REPLICAS: u32 = 3;
/// Replicas on +1..+3, their metrics on +101..+103 (clear of the other tasks' clusters).
const BASE_PORT: u16 = 8600;
/// Seconds of load per phase with `--quick` (CI).
const QUICK_SECONDS: f64 = 4.0;
/// Seconds of warm-up before each phase's measurement.
const WARMUP: f64 = 1.0;

/// Three replicas with their data directories on faultfs under put load: fsync made slow on a
/// follower and then on the leader (the cluster must stay available), then failing on the leader
/// (it must stop with a clear message, the others go on, and no acknowledged write is lost).
///
/// Skips when /dev/fuse is missing. Results and logs go to `$CARGO_TARGET_DIR/disk-faults/`.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask disk-faults", bin_name = "cargo xtask disk-faults")]
pub(crate) struct Args {
    /// Seconds of load measured in each phase (the failing phase runs twice as long).
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    seconds: f64,
    /// How late each fsync answers on the slow replica, in ms.
    #[arg(long, value_name = "D", default_value_t = 100)]
    delay_ms: u64,
    /// Concurrent clients of the load generator (each with one put outstanding).
    #[arg(long, value_name = "N", default_value_t = 64)]
    clients: usize,
    /// Short phases (4 s each), as CI runs it.
    #[arg(long)]
    quick: bool,
}

/// One phase's load, from the load generator's JSON report.
#[derive(Debug, Clone, Default, PartialEq)]
struct Figures {
    ops: u64,
    throughput: f64,
    p99_ms: f64,
    errors: u64,
    verified: u64,
    missing: u64,
    /// With `--kill-file`: from the replica's stop to the next completed operation, in ms.
    failover_ms: Option<u64>,
}

impl Figures {
    fn from_report(v: &Value) -> Result<Figures> {
        let u = |k: &str| v[k].as_u64().with_context(|| format!("the load report has no {k}"));
        let f = |k: &str| v[k].as_f64().with_context(|| format!("the load report has no {k}"));
        Ok(Figures {
            ops: u("ops")?,
            throughput: f("throughput")?,
            p99_ms: f("p99_ms")?,
            errors: u("errors")?,
            verified: v["verified"].as_u64().unwrap_or(0),
            missing: v["missing"].as_u64().unwrap_or(0),
            failover_ms: v["failover_ms"].as_u64(),
        })
    }

    fn json(&self) -> Value {
        json!({
            "ops": self.ops, "throughput": self.throughput, "p99_ms": self.p99_ms,
            "errors": self.errors, "verified": self.verified, "missing": self.missing,
            "failover_ms": self.failover_ms,
        })
    }
}

/// A slow-fsync phase: whose disk was slow and what the load saw.
#[derive(Debug, Clone)]
struct Slow {
    replica: u32,
    led: bool,
    figures: Figures,
    /// The leader after the phase (another one than `replica` if it led: an election).
    leader_after: u32,
}

/// The failing-fsync phase.
#[derive(Debug, Clone)]
struct Failing {
    replica: u32,
    exit: String,
    message: String,
    /// Operations the load completed after the replica had exited.
    served_after: u64,
    figures: Figures,
    leader_after: u32,
}

/// The cluster, its faultfs mounts and the processes this run started.
struct Lab {
    cluster: Cluster,
    out: PathBuf,
    replicas: Vec<Option<Child>>,
    faultfs: Vec<Option<Child>>,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let args: Args = crate::parse_args("disk-faults", args)?;
    if !Path::new("/dev/fuse").exists() {
        println!(
            "disk-faults: skipped: /dev/fuse is missing, so faultfs cannot mount (load the fuse module)"
        );
        return Ok(());
    }
    let seconds = if args.quick { QUICK_SECONDS } else { args.seconds };
    eprintln!("disk-faults: building synod, the load generator and faultfs (release)");
    run_cmd(cargo().args(["build", "--release", "--locked", "--quiet"]).args([
        "-p",
        "synod",
        "--bin",
        "synod",
        "-p",
        "synod-bench",
        "--bin",
        "load",
        "-p",
        "synod-faultfs",
        "--bin",
        "faultfs",
    ]))?;
    crate::wait_for_earlier_watchdog("disk-faults", Duration::from_secs(30))?;
    let out = target_dir().join("disk-faults");
    let mut lab = Lab {
        cluster: Cluster { dir: out.join("cluster"), replicas: REPLICAS },
        out: out.clone(),
        replicas: (0..REPLICAS).map(|_| None).collect(),
        faultfs: (0..REPLICAS).map(|_| None).collect(),
    };
    lab.clean_up();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    lab.spawn_watchdog()?;
    lab.cluster.create_with(BASE_PORT, true)?;
    let began = Instant::now();
    let result = lab.run(&args, seconds);
    lab.clean_up();
    for i in 1..=REPLICAS {
        for name in [format!("node-{i}.log"), format!("faultfs-{i}.log")] {
            let _ = std::fs::copy(lab.cluster.dir.join(&name), out.join(&name));
        }
    }
    let _ = std::fs::remove_dir_all(&lab.cluster.dir);
    eprintln!("disk-faults: {:.0} s", began.elapsed().as_secs_f64());
    result.map_err(|e| e.context(format!("the replicas', faultfs' and load's logs are in {}", out.display())))
}

fn faultfs_bin() -> PathBuf {
    target_dir().join("release").join("faultfs")
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Waits up to `timeout` for `child` to exit; None if it still runs.
fn wait_for(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > until {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `dir` is a mount point: on another device than its parent.
fn mounted(dir: &Path) -> bool {
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
    match (dev(dir), dir.parent().map(dev)) {
        (Ok(a), Some(Ok(b))) => a != b,
        _ => false,
    }
}

/// The mount points under `dir` in /proc/mounts (a dead FUSE mount too, which stat cannot tell).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// The replica's own line saying why it stopped (`replica N stopped: ...`), else its log's last.
fn stop_message(log: &Path, replica: u32) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let needle = format!("replica {replica} stopped");
    match text.lines().rev().find(|l| l.contains(&needle)) {
        Some(line) => line[line.find(&needle).unwrap_or(0)..].trim().to_owned(),
        None => last_words(log),
    }
}

/// Operations in a `load --samples` file that started at or after `since_us` (Unix µs).
fn samples_since(text: &str, since_us: u64) -> u64 {
    text.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|&start| start >= since_us)
        .count() as u64
}

impl Lab {
    fn source(&self, i: u32) -> PathBuf {
        self.cluster.dir.join("disk").join(format!("node-{i}"))
    }

    /// Where replica `i` keeps its data (`data_dir` in its node file): faultfs' mount point.
    fn mount_point(&self, i: u32) -> PathBuf {
        self.cluster.dir.join("data").join(format!("node-{i}"))
    }

    fn control(&self, i: u32) -> PathBuf {
        self.cluster.dir.join(format!("faultfs-{i}.ctl"))
    }

    fn faultfs_pid(&self, i: u32) -> PathBuf {
        self.cluster.dir.join(format!("faultfs-{i}.pid"))
    }

    fn load_pid(&self) -> PathBuf {
        self.out.join("load.pid")
    }

    /// Stops the replicas, then faultfs (which unmounts on SIGTERM), then detaches any mount
    /// left (a faultfs that was killed): this run's and an earlier one's.
    fn clean_up(&mut self) {
        crate::bench::stop_pid_file(&self.load_pid(), "load");
        self.cluster.stop_all();
        for child in self.replicas.iter_mut().flatten() {
            let _ = child.wait();
        }
        for i in 1..=REPLICAS {
            crate::bench::stop_pid_file(&self.faultfs_pid(i), "faultfs");
        }
        for child in self.faultfs.iter_mut().flatten() {
            let _ = child.wait();
        }
        for m in mounts_under(&self.cluster.dir) {
            let _ = Command::new("umount").arg("-l").arg(&m).stderr(Stdio::null()).status();
        }
    }

    /// A detached shell that, once xtask is gone however it ended, kills the replicas, the load
    /// generator and faultfs, and detaches the mounts.
    fn spawn_watchdog(&self) -> Result<()> {
        use std::fmt::Write as _;
        let q = shell_quote;
        let mut script = String::from(
            "k() { p=$(cat \"$1\" 2>/dev/null) || return 0; \
             [ \"$(cat /proc/$p/comm 2>/dev/null)\" = \"$2\" ] && kill -KILL $p; rm -f \"$1\"; }; ",
        );
        let _ = write!(script, "k {} load; ", q(&self.load_pid()));
        for i in 1..=REPLICAS {
            let _ = write!(script, "k {} synod; ", q(&self.cluster.pid_file(i)));
        }
        for i in 1..=REPLICAS {
            let _ = write!(script, "k {} faultfs; ", q(&self.faultfs_pid(i)));
        }
        script.push_str("sleep 0.2; ");
        for i in 1..=REPLICAS {
            let _ = write!(script, "umount -l {} 2>/dev/null; ", q(&self.mount_point(i)));
        }
        script.push_str("true");
        crate::spawn_watchdog("disk-faults", &script).context("starting the disk-faults watchdog")
    }

    /// Mounts faultfs over replica `i`'s data directory and waits until the mount is there.
    fn mount(&mut self, i: u32) -> Result<()> {
        let (source, mount_point) = (self.source(i), self.mount_point(i));
        std::fs::create_dir_all(&source)?;
        std::fs::create_dir_all(&mount_point)?;
        let log = std::fs::File::create(self.cluster.dir.join(format!("faultfs-{i}.log")))?;
        let child = Command::new(faultfs_bin())
            .arg(&source)
            .arg(&mount_point)
            .arg("--control")
            .arg(self.control(i))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting faultfs")?;
        std::fs::write(self.faultfs_pid(i), child.id().to_string())?;
        self.faultfs[i as usize - 1] = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while !mounted(&mount_point) {
            let child = self.faultfs[i as usize - 1].as_mut().expect("just started");
            if child.try_wait()?.is_some() || Instant::now() > until {
                bail!(
                    "faultfs did not mount {}: {}",
                    mount_point.display(),
                    last_words(&self.cluster.dir.join(format!("faultfs-{i}.log")))
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Replica `i`'s faults from now on (faultfs reads its control file every 20 ms).
    fn set_faults(&self, i: u32, settings: &str) -> Result<()> {
        let (path, tmp) = (self.control(i), self.control(i).with_extension("ctl.tmp"));
        std::fs::write(&tmp, settings)?;
        std::fs::rename(&tmp, &path)?;
        std::thread::sleep(Duration::from_millis(100));
        Ok(())
    }

    fn start(&mut self, i: u32) -> Result<()> {
        let mut cmd = Command::new(synod_bin());
        cmd.arg("start").arg("--config").arg(self.cluster.node_file(i));
        let child = spawn_replica(cmd, &self.cluster.log_file(i), i)?;
        std::fs::write(self.cluster.pid_file(i), child.id().to_string())?;
        self.replicas[i as usize - 1] = Some(child);
        Ok(())
    }

    /// Every replica still running, or an error quoting the first that is not.
    fn all_running(&mut self, but: Option<u32>) -> Result<()> {
        for i in (1..=REPLICAS).filter(|&i| Some(i) != but) {
            let child = self.replicas[i as usize - 1].as_mut().context("not started")?;
            if let Some(status) = child.try_wait()? {
                bail!("replica {i} exited ({status}): {}", stop_message(&self.cluster.log_file(i), i));
            }
        }
        Ok(())
    }

    /// Runs the load generator (puts only) for `seconds` plus the warm-up with `extra` flags;
    /// `during` runs meanwhile. Returns its report.
    fn load<T>(
        &mut self,
        name: &str,
        seconds: f64,
        clients: usize,
        extra: &[String],
        during: impl FnOnce(&mut Lab) -> Result<T>,
    ) -> Result<(Figures, T)> {
        let json_path = self.out.join(format!("{name}.json"));
        let mut child = Command::new(target_dir().join("release").join("load"))
            .arg("--client-config")
            .arg(self.cluster.client_file())
            .args(["--clients", &clients.to_string(), "--puts", "100", "--warmup", &WARMUP.to_string()])
            .args(["--duration", &seconds.to_string()])
            .args(extra)
            .arg("--json")
            .arg(&json_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.out.join(format!("{name}.out")))?)
            .stderr(std::fs::File::create(self.out.join(format!("{name}.err")))?)
            .spawn()
            .context("starting the load generator")?;
        std::fs::write(self.load_pid(), child.id().to_string())?;
        let during = during(self);
        let status = wait_for(&mut child, Duration::from_secs_f64(seconds + WARMUP + 120.0))?;
        let _ = std::fs::remove_file(self.load_pid());
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the load generator ({name}) did not finish");
        };
        let during = during?;
        let out = std::fs::read_to_string(self.out.join(format!("{name}.out"))).unwrap_or_default();
        if !status.success() {
            let err = std::fs::read_to_string(self.out.join(format!("{name}.err"))).unwrap_or_default();
            bail!("the load generator ({name}) failed ({status}): {}{}", out.trim(), err.trim());
        }
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path)?)
            .with_context(|| format!("reading {}", json_path.display()))?;
        let figures = Figures::from_report(&report)?;
        eprintln!(
            "disk-faults: {name}: {} ops, {:.0} ops/s, p99 {:.1} ms, {} errors",
            figures.ops, figures.throughput, figures.p99_ms, figures.errors
        );
        Ok((figures, during))
    }

    fn slow(&mut self, replica: u32, led: bool, args: &Args, seconds: f64) -> Result<Slow> {
        let role = if led { "leader" } else { "follower" };
        eprintln!("disk-faults: fsync {} ms late on replica {replica}, the {role}", args.delay_ms);
        self.set_faults(replica, &format!("fsync_delay_ms = {}\n", args.delay_ms))?;
        let name = format!("slow-{role}");
        let loaded = self.load(&name, seconds, args.clients, &[], |_| Ok(()));
        self.set_faults(replica, "")?;
        let (figures, ()) = loaded?;
        self.all_running(None)?;
        let leader_after = self.cluster.await_leader(Duration::from_secs(20))?;
        // The slow replica catches up before the next phase, so that it measures one slow disk.
        let agreed = self.cluster.await_identical(
            Duration::from_secs(60),
            Duration::from_millis(200),
            Some("disk-faults"),
        )?;
        eprintln!("disk-faults: replica {replica} caught up: the replicas agree at {agreed}");
        if figures.errors > 0 || figures.ops == 0 {
            bail!(
                "with replica {replica}'s fsync {} ms late the load saw {} errors and {} ops: the cluster was not available",
                args.delay_ms,
                figures.errors,
                figures.ops
            );
        }
        Ok(Slow { replica, led, figures, leader_after })
    }

    fn failing(&mut self, replica: u32, args: &Args, seconds: f64) -> Result<Failing> {
        eprintln!("disk-faults: fsync failing (EIO) on replica {replica}, the leader");
        let samples = self.out.join("failing.samples");
        let kill_file = self.out.join("failing.stopped");
        let extra = [
            "--verify".to_owned(),
            "--samples".to_owned(),
            samples.display().to_string(),
            "--kill-file".to_owned(),
            kill_file.display().to_string(),
        ];
        let fail_after = Duration::from_secs_f64(WARMUP + seconds / 2.0);
        let (figures, (status, stopped_us)) =
            self.load("failing", 2.0 * seconds, args.clients, &extra, |lab| {
                std::thread::sleep(fail_after);
                lab.set_faults(replica, "fsync_error = true\n")?;
                let child = lab.replicas[replica as usize - 1].as_mut().context("not started")?;
                let status = wait_for(child, Duration::from_secs(20))?.with_context(|| {
                    format!("replica {replica} still runs 20 s after its fsyncs began to fail")
                })?;
                let stopped_us = unix_us();
                // The load's failover gap: from this stop to its next completed operation.
                std::fs::write(&kill_file, (stopped_us / 1000).to_string())?;
                Ok((status, stopped_us))
            })?;
        let _ = std::fs::remove_file(self.cluster.pid_file(replica));
        let message = stop_message(&self.cluster.log_file(replica), replica);
        if status.success() {
            bail!("replica {replica} exited with success after a failed fsync: {message}");
        }
        if !message.contains("fsync") {
            bail!("replica {replica}'s last words do not name the failed fsync: {message:?}");
        }
        let served_after = samples_since(&std::fs::read_to_string(&samples).unwrap_or_default(), stopped_us);
        self.all_running(Some(replica))?;
        let leader_after = self.cluster.await_leader(Duration::from_secs(20))?;
        if served_after == 0 {
            bail!("no operation completed after replica {replica} stopped: the others did not go on");
        }
        if figures.missing > 0 || figures.verified == 0 {
            bail!("{} of {} acknowledged writes are missing", figures.missing, figures.verified);
        }
        Ok(Failing { replica, exit: status.to_string(), message, served_after, figures, leader_after })
    }

    fn run(&mut self, args: &Args, seconds: f64) -> Result<()> {
        for i in 1..=REPLICAS {
            self.mount(i)?;
        }
        for i in 1..=REPLICAS {
            self.start(i)?;
        }
        let leader = self.cluster.await_all_up(Duration::from_secs(30))?;
        eprintln!("disk-faults: three replicas on faultfs, replica {leader} leads; baseline");
        let (baseline, ()) = self.load("baseline", seconds, args.clients, &[], |_| Ok(()))?;
        if baseline.errors > 0 {
            bail!("the load saw {} errors with no fault", baseline.errors);
        }
        let leader = self.cluster.await_leader(Duration::from_secs(20))?;
        let follower = (1..=REPLICAS).find(|&i| i != leader).expect("three replicas");
        let slow_follower = self.slow(follower, false, args, seconds)?;
        let leader = self.cluster.await_all_up(Duration::from_secs(30))?;
        let slow_leader = self.slow(leader, true, args, seconds)?;
        self.cluster.await_all_up(Duration::from_secs(30))?;
        let leader = self.cluster.await_leader(Duration::from_secs(20))?;
        let failing = self.failing(leader, args, seconds)?;

        let line = closing_line(args.delay_ms, &baseline, &slow_follower, &slow_leader, &failing);
        let slow_json = |s: &Slow| json!({ "replica": s.replica, "led": s.led, "load": s.figures.json(), "leader_after": s.leader_after });
        let report = json!({
            "fsync_delay_ms": args.delay_ms, "seconds": seconds, "clients": args.clients,
            "baseline": baseline.json(),
            "slow_follower": slow_json(&slow_follower),
            "slow_leader": slow_json(&slow_leader),
            "failing": {
                "replica": failing.replica, "exit": failing.exit, "message": failing.message,
                "served_after_stop": failing.served_after, "load": failing.figures.json(),
                "leader_after": failing.leader_after,
            },
            "summary": line,
        });
        std::fs::write(self.out.join("disk-faults.json"), serde_json::to_string_pretty(&report)?)?;
        println!("{line}");
        Ok(())
    }
}

fn closing_line(delay_ms: u64, base: &Figures, follower: &Slow, leader: &Slow, failing: &Failing) -> String {
    let election = if leader.leader_after == leader.replica {
        "it still leads".to_owned()
    } else {
        format!("replica {} leads after an election", leader.leader_after)
    };
    format!(
        "disk-faults: slow fsync ({delay_ms} ms) on follower {}: {:.0} ops/s ({:.0} without), p99 {:.1} ms ({:.1} without), {} errors; \
         on leader {}: {:.0} ops/s, p99 {:.1} ms, {} errors, {election}; \
         failing fsync: replica {} stopped ({}, \"{}\"), the others served {} ops after it (the first {} after it, {} load errors), \
         replica {} leads, every acknowledged write read back ({})",
        follower.replica,
        follower.figures.throughput,
        base.throughput,
        follower.figures.p99_ms,
        base.p99_ms,
        follower.figures.errors,
        leader.replica,
        leader.figures.throughput,
        leader.figures.p99_ms,
        leader.figures.errors,
        failing.replica,
        failing.exit,
        failing.message,
        failing.served_after,
        failing.figures.failover_ms.map_or("none".to_owned(), |ms| format!("{ms} ms")),
        failing.figures.errors,
        failing.leader_after,
        failing.figures.verified,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args> {
        crate::parse_args("disk-faults", &s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse("").unwrap();
        assert_eq!((a.seconds, a.delay_ms, a.clients, a.quick), (10.0, 100, 64, false));
        let a = parse("--quick --delay-ms 250 --clients 8 --seconds 3").unwrap();
        assert_eq!((a.seconds, a.delay_ms, a.clients, a.quick), (3.0, 250, 8, true));
        assert!(parse("--delay-ms slow").is_err());
        assert!(parse("--disk").is_err());
    }

    #[test]
    fn samples_after_the_stop_are_counted() {
        let text = "100 5\n200 7\n300 9\n\nbad\n";
        assert_eq!(samples_since(text, 200), 2);
        assert_eq!(samples_since(text, 301), 0);
    }

    #[test]
    fn the_stop_message_is_the_replicas_own_line() {
        let dir = std::env::temp_dir().join(format!("disk-faults-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("node-2.log");
        std::fs::write(&log, "starting\nError: replica 2 stopped: fsync data/wal-1: Input/output error\n\n")
            .unwrap();
        assert_eq!(stop_message(&log, 2), "replica 2 stopped: fsync data/wal-1: Input/output error");
        std::fs::write(&log, "starting\n\x1b[31mpanicked\x1b[0m\n").unwrap();
        assert_eq!(stop_message(&log, 2), "panicked");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_closing_line_says_what_each_phase_did() {
        let f = |throughput, p99_ms| Figures { ops: 100, throughput, p99_ms, ..Figures::default() };
        let follower = Slow { replica: 2, led: false, figures: f(900.0, 12.0), leader_after: 1 };
        let leader = Slow { replica: 1, led: true, figures: f(300.0, 240.0), leader_after: 3 };
        let failing = Failing {
            replica: 3,
            exit: "exit status: 1".into(),
            message: "replica 3 stopped: fsync x: Input/output error".into(),
            served_after: 5000,
            figures: Figures { verified: 7000, failover_ms: Some(450), ..f(800.0, 30.0) },
            leader_after: 1,
        };
        let line = closing_line(100, &f(1000.0, 10.0), &follower, &leader, &failing);
        assert!(line.starts_with("disk-faults: slow fsync (100 ms) on follower 2: 900 ops/s (1000 without), p99 12.0 ms (10.0 without), 0 errors; on leader 1: 300 ops/s"), "{line}");
        assert!(line.contains("replica 3 leads after an election"), "{line}");
        assert!(line.contains("replica 3 stopped (exit status: 1, \"replica 3 stopped: fsync x"), "{line}");
        assert!(
            line.contains("served 5000 ops after it (the first 450 ms after it, 0 load errors)"),
            "{line}"
        );
    }
}
