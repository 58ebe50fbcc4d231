//! `cargo xtask demo`: the main job. A release build, a 3-replica cluster on
//! loopback, a key-value workload from many concurrent clients, the leader
//! killed with SIGKILL halfway and restarted later; then the checks: every
//! acknowledged write is readable and every replica applied the same sequence.
//!
//! Ends with `demo: <N> ops, failover <T> ms, replicas identical` and exit 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cluster::{build_release, Cluster};
use crate::target_dir;

/// The main job: a release build, a 3-replica cluster on loopback, a key-value workload from
/// many concurrent clients, the leader killed with SIGKILL halfway and restarted later; then
/// every acknowledged write must be readable and every replica must have applied the same
/// sequence.
///
/// Ends with `demo: <N> ops, failover <T> ms, replicas identical`.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask demo", bin_name = "cargo xtask demo")]
pub(crate) struct Args {
    /// How long the workload runs, in seconds (at least 6).
    #[arg(long, value_name = "N", default_value_t = 20)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, value_name = "N", default_value_t = 64)]
    clients: usize,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Args { seconds, clients } = crate::parse_args("demo", args)?;
    if seconds < 6 {
        bail!("--seconds must be at least 6 (the leader is killed halfway and restarted later)");
    }
    eprintln!("demo: building synod and the load generator (release)");
    build_release(&["synod", "load"])?;
    let cluster = Cluster { dir: target_dir().join("demo"), replicas: 3 };
    cluster.create(7200)?;
    cluster.start_all()?;
    let result = drive(&cluster, seconds, clients);
    // Clean up processes whatever happened; keep the files only when something failed.
    let down = cluster.down();
    match result {
        Ok(line) => {
            down?;
            let _ = std::fs::remove_dir_all(&cluster.dir);
            println!("{line}");
            Ok(())
        }
        Err(e) => Err(e.context(format!("logs kept in {}", cluster.dir.display()))),
    }
}

fn drive(cluster: &Cluster, seconds: u64, clients: usize) -> Result<String> {
    let leader = cluster.await_all_up(Duration::from_secs(20))?;
    eprintln!("demo: 3 replicas up, replica {leader} leads; {clients} clients for {seconds} s");
    let kill_file = cluster.dir.join("killed_at_ms");
    let json = cluster.dir.join("load.json");
    let mut load = Command::new(target_dir().join("release").join("load"))
        .arg("--client-config")
        .arg(cluster.client_file())
        .args(["--clients", &clients.to_string(), "--sessions", "16", "--warmup", "0"])
        .args(["--duration", &seconds.to_string(), "--verify", "--kill-file"])
        .arg(&kill_file)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the load generator")?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds / 2));
    let victim = cluster.await_leader(Duration::from_secs(10))?;
    cluster.signal(victim, "KILL")?;
    let killed_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    std::fs::write(&kill_file, killed_at.to_string())?;
    eprintln!(
        "demo: killed the leader, replica {victim}, with SIGKILL at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(seconds / 4));
    cluster.start(victim)?;
    eprintln!("demo: restarted replica {victim} at {:.1} s", started.elapsed().as_secs_f64());
    let status = load.wait()?;
    if !status.success() {
        bail!("the load generator failed ({status})");
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let ops = report["ops"].as_u64().unwrap_or(0);
    let failover = report["failover_ms"].as_u64().context("no operation completed after the kill")?;
    let errors = report["errors"].as_u64().unwrap_or(0);
    let missing = report["missing"].as_u64().unwrap_or(0);
    eprintln!(
        "demo: {ops} ops, {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors returned to clients, {} acknowledged writes verified, {missing} missing",
        report["throughput"].as_f64().unwrap_or(0.0),
        report["p50_ms"].as_f64().unwrap_or(0.0),
        report["p99_ms"].as_f64().unwrap_or(0.0),
        report["verified"].as_u64().unwrap_or(0),
    );
    if errors > 0 || missing > 0 {
        bail!("{errors} errors and {missing} missing writes");
    }
    let (applied, digest) = await_identical(cluster, Duration::from_secs(30))?;
    eprintln!("demo: all 3 replicas applied {applied} slots, digest {digest}");
    Ok(format!("demo: {ops} ops, failover {failover} ms, replicas identical"))
}

/// Waits until every replica reports the same applied slot and digest.
fn await_identical(cluster: &Cluster, timeout: Duration) -> Result<(u64, String)> {
    let until = Instant::now() + timeout;
    loop {
        let views = cluster.statuses()?;
        let seen: Vec<(u64, String)> = views
            .iter()
            .flatten()
            .map(|v| (v["applied"].as_u64().unwrap_or(0), v["digest"].as_str().unwrap_or("").to_owned()))
            .collect();
        if seen.len() == cluster.replicas as usize && seen.windows(2).all(|w| w[0] == w[1]) {
            return Ok(seen[0].clone());
        }
        if Instant::now() > until {
            bail!("replicas did not converge within {timeout:?}: {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
