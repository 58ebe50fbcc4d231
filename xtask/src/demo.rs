//! `cargo xtask demo`: the main job. A release build, a 3-replica cluster on
//! loopback, a key-value workload from many concurrent clients, the leader
//! killed with SIGKILL halfway and restarted later; then the checks: every
//! acknowledged write is readable and every replica applied the same sequence.
//!
//! Ends with `demo: <N> ops, failover <T> ms, replicas identical` and exit 0.
//!
//! `--replace` changes the membership under the same load instead of killing the leader:
//! replica 4 joins as a learner, catches up and is promoted, and replica 1 is removed (the
//! leader or not, as it happens; the output says which). The operations completed over time
//! (from `load --samples`) are shown as a sparkline with each step marked, saved as JSON and
//! SVG under `$CARGO_TARGET_DIR/bench/`, and the run ends with the longest gap in completed
//! operations during the change and the largest drop in throughput below the median before it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use std::fmt::Write as _;

use serde_json::json;

use crate::bench::svg;
use crate::cluster::{build_release, Cluster};
use crate::membership::{self, Steps};
use crate::target_dir;
use crate::throughput::{self, Event};

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
    /// Instead of killing the leader: add replica 4 as a learner, wait for it to catch up,
    /// promote it and remove replica 1, and show throughput over time (at least 12 seconds).
    #[arg(long)]
    replace: bool,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Args { seconds, clients, replace } = crate::parse_args("demo", args)?;
    if seconds < 6 {
        bail!("--seconds must be at least 6 (the leader is killed halfway and restarted later)");
    }
    if replace && seconds < 12 {
        bail!("--seconds must be at least 12 with --replace (the change starts a third of the way in)");
    }
    eprintln!("demo: building synod and the load generator (release)");
    build_release(&["synod", "load"])?;
    let cluster = Cluster { dir: target_dir().join("demo"), replicas: 3 };
    cluster.create(7200)?;
    cluster.start_all()?;
    let result =
        if replace { drive_replace(&cluster, seconds, clients) } else { drive(&cluster, seconds, clients) };
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

/// The demo's load: `clients` clients on 16 sessions for `seconds`, every
/// acknowledged write verified at the end, the report written to `json`.
fn load_command(cluster: &Cluster, clients: usize, seconds: u64, json: &std::path::Path) -> Command {
    let mut load = Command::new(target_dir().join("release").join("load"));
    load.arg("--client-config")
        .arg(cluster.client_file())
        .args(["--clients", &clients.to_string(), "--sessions", "16", "--warmup", "0"])
        .args(["--duration", &seconds.to_string(), "--verify", "--json"])
        .arg(json)
        .stdin(Stdio::null());
    load
}

fn drive(cluster: &Cluster, seconds: u64, clients: usize) -> Result<String> {
    let leader = cluster.await_all_up(Duration::from_secs(20))?;
    eprintln!("demo: 3 replicas up, replica {leader} leads; {clients} clients for {seconds} s");
    let kill_file = cluster.dir.join("killed_at_ms");
    let json = cluster.dir.join("load.json");
    let mut load = load_command(cluster, clients, seconds, &json)
        .arg("--kill-file")
        .arg(&kill_file)
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
    let report = load_report(&json)?;
    let ops = report["ops"].as_u64().unwrap_or(0);
    let failover = report["failover_ms"].as_u64().context("no operation completed after the kill")?;
    let (applied, digest) = await_identical(cluster, Duration::from_secs(30))?;
    eprintln!("demo: all 3 replicas applied {applied} slots, digest {digest}");
    Ok(format!("demo: {ops} ops, failover {failover} ms, replicas identical"))
}

/// What the load generator reported (`load --json`); fails on errors or missing writes.
fn load_report(json: &std::path::Path) -> Result<Value> {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    let errors = report["errors"].as_u64().unwrap_or(0);
    let missing = report["missing"].as_u64().unwrap_or(0);
    eprintln!(
        "demo: {} ops, {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors returned to clients, {} acknowledged writes verified, {missing} missing",
        report["ops"].as_u64().unwrap_or(0),
        report["throughput"].as_f64().unwrap_or(0.0),
        report["p50_ms"].as_f64().unwrap_or(0.0),
        report["p99_ms"].as_f64().unwrap_or(0.0),
        report["verified"].as_u64().unwrap_or(0),
    );
    if errors > 0 || missing > 0 {
        bail!("{errors} errors and {missing} missing writes");
    }
    Ok(report)
}

/// The run of `--replace`: the usual load while replica 4 is added as a learner, caught up,
/// promoted, and replica 1 removed; then throughput over time around those steps.
fn drive_replace(cluster: &Cluster, seconds: u64, clients: usize) -> Result<String> {
    let leader = cluster.await_all_up(Duration::from_secs(20))?;
    let change_at = Duration::from_secs_f64(seconds as f64 / 3.0);
    eprintln!(
        "demo: 3 replicas up, replica {leader} leads; {clients} clients for {seconds} s; at {:.1} s replica 4 \
         joins as a learner, is promoted, and replica 1 is removed",
        change_at.as_secs_f64()
    );
    let json = cluster.dir.join("load.json");
    let samples = cluster.dir.join("samples.txt");
    // Times are counted from here, as the progress lines count them.
    let spawned_us = unix_us();
    let mut load = load_command(cluster, clients, seconds, &json)
        .arg("--samples")
        .arg(&samples)
        .spawn()
        .context("starting the load generator")?;
    let started = Instant::now();
    std::thread::sleep(change_at);
    let mut events = Vec::new();
    let role = match change_membership(cluster, &mut events, started) {
        Ok(role) => role,
        Err(e) => {
            let _ = load.kill();
            let _ = load.wait();
            return Err(e.context("the membership change failed"));
        }
    };
    let done_at = started.elapsed();
    let status = load.wait()?;
    if !status.success() {
        bail!("the load generator failed ({status})");
    }
    if done_at.as_secs_f64() > seconds as f64 {
        eprintln!("demo: the change ended after the load did; try a longer --seconds");
    }
    let report = load_report(&json)?;
    let ops = report["ops"].as_u64().unwrap_or(0);
    let (applied, digest) = await_identical(cluster, Duration::from_secs(30))?;
    eprintln!("demo: replicas 2, 3 and 4 applied {applied} slots, digest {digest}");

    let completions = throughput::completions(&std::fs::read_to_string(&samples)?)?;
    let Some(&last) = completions.last() else {
        bail!("the load generator recorded no operations");
    };
    let series = throughput::Series::of(&completions, spawned_us, last, INTERVAL_US);
    let (from, to) =
        (events.first().map_or(spawned_us, |e: &Event| e.at_us), events.last().map_or(last, |e| e.at_us));
    let baseline = series.baseline(RAMP_US, from);
    let (gap_us, gap_at) = throughput::longest_gap(&completions, from, to);
    let drop = baseline.and_then(|b| series.largest_drop(b, from, to, DROP_BELOW));
    let mut out = throughput::render(&series, &events, 40, "demo");

    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut record = throughput::to_json(&series, &events);
    record["clients"] = json!(clients);
    record["seconds"] = json!(seconds);
    record["ops"] = json!(ops);
    record["baseline_ops_per_s"] = json!(baseline);
    record["change_s"] = json!([secs(&series, from), secs(&series, to)]);
    record["longest_gap_ms"] = json!(gap_us as f64 / 1000.0);
    record["longest_gap_at_s"] = json!(secs(&series, gap_at));
    record["largest_drop"] = json!(drop.as_ref().map(|d| json!({
        "percent": d.percent,
        "at_s": series.seconds(d.at),
        "below_fraction": d.below,
        "lasted_ms": d.lasted_us as f64 / 1000.0,
    })));
    let json_path = out_dir.join("demo-replace.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&record)?)?;
    let labels = svg::Labels {
        title: "Completed operations while replica 1 is replaced by replica 4".to_owned(),
        subtitle: format!(
            "{clients} clients, 90% puts; per {} ms; the grey line: the median before the change",
            INTERVAL_US / 1000
        ),
        x: "seconds into the load (operation completion)".to_owned(),
        y: "completed operations per second".to_owned(),
    };
    let svg_path = out_dir.join("demo-replace.svg");
    std::fs::write(&svg_path, throughput::plot(&series, &events, baseline, labels))?;
    let _ = writeln!(out, "demo: the series is in {} and {}", json_path.display(), svg_path.display());

    let _ = writeln!(
        out,
        "demo: {ops} ops, replica 1 ({role}) replaced by replica 4 under load, replicas identical"
    );
    let _ = writeln!(
        out,
        "longest gap in completed operations during the change: {} ms (from {:.2} s)",
        gap_us / 1000,
        secs(&series, gap_at)
    );
    match (baseline, drop) {
        (Some(b), Some(d)) => {
            let _ = write!(
                out,
                "largest throughput drop during the change: {:.0}% below the median before it ({b:.0} ops/s), at {:.2} s; below {:.0}% of that median for {} ms",
                d.percent,
                series.seconds(d.at),
                d.below * 100.0,
                d.lasted_us / 1000
            );
        }
        _ => {
            let _ = write!(out, "largest throughput drop: no baseline (too little load before the change)");
        }
    }
    Ok(out)
}

/// Operations are counted per this many µs.
const INTERVAL_US: u64 = 250_000;
/// The load's first second (clients connecting, counted from the generator's start) is left
/// out of the baseline.
const RAMP_US: u64 = 1_000_000;
/// A drop lasts while throughput is below this fraction of the baseline.
const DROP_BELOW: f64 = 0.8;

fn secs(series: &throughput::Series, at_us: u64) -> f64 {
    at_us.saturating_sub(series.start_us) as f64 / 1e6
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The change itself, each step recorded in `events` as it begins (and the ends that matter:
/// caught up, the removed replica's exit).
/// Returns what replica 1 was when it was removed (the leader, a follower).
fn change_membership(cluster: &Cluster, events: &mut Vec<Event>, started: Instant) -> Result<String> {
    let steps = Steps::new("demo");
    let mark = |events: &mut Vec<Event>, mark: char, what: String| {
        eprintln!("demo: at {:.1} s: {what}", started.elapsed().as_secs_f64());
        events.push(Event { at_us: unix_us(), mark, what });
    };
    mark(events, 'a', "add replica 4 as a learner".to_owned());
    let new = steps.add(cluster, true)?;
    if new != 4 {
        bail!("the new replica got id {new}, not 4");
    }
    steps.await_caught_up(cluster, new, membership::CATCH_UP_TIMEOUT)?;
    mark(events, 'c', "replica 4 caught up".to_owned());
    mark(events, 'p', "promote replica 4".to_owned());
    steps.promote(cluster, new)?;
    let role = match steps.leader(cluster)? {
        Some(1) => "the leader".to_owned(),
        Some(l) => format!("a follower; replica {l} leads"),
        None => "no leader known at that moment".to_owned(),
    };
    mark(events, 'r', format!("remove replica 1 ({role})"));
    steps.remove(cluster, 1)?;
    mark(events, 'x', "replica 1 exited".to_owned());
    Ok(role)
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
