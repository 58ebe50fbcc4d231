//! `cargo xtask bench overload [--clients 10000] [--sessions 1000] [--base-clients 1000]
//! [--duration 60s] [--puts 50]`: ten times more clients than a cluster can serve, and what
//! that does to it.
//!
//! A fresh three-replica cluster on loopback (fsync on) first gets `--base-clients` closed-loop
//! clients for 10 s: what it serves when it is just saturated (the capacity run). Then, on the
//! same cluster, `--clients` clients over `--sessions` connections for `--duration`. Every
//! second, each replica's resident memory (`VmRSS`), its `synod_client_busy_total` (requests
//! answered `Busy`: admission control, after which the client backs off and retries) and
//! `synod_leader_changes_total` are sampled. The closing line gives the overload run's
//! throughput and p99 (of the requests that completed) against the capacity run's, the
//! replicas' memory at the end of the first and of the second half of the run (bounded
//! memory: the second is not far above the first), the Busy answers, the leader changes and
//! whether every replica is still running. A benchmark: it reports figures, and fails only
//! when a replica died or the load generator failed. Results in
//! `$CARGO_TARGET_DIR/bench/overload.json`.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::peer::parse_seconds;
use crate::cluster::{build_release, Cluster};
use crate::soak::{dead_replica_of, rss_bytes, scrape, spawn_load};
use crate::target_dir;

/// Replica i listens on BASE_PORT + i, its metrics on BASE_PORT + 100 + i.
const BASE_PORT: u16 = 7400;
const REPLICAS: u32 = 3;
const MIB: f64 = 1024.0 * 1024.0;
/// How long the capacity run lasts.
const CAPACITY_SECONDS: f64 = 10.0;

/// The flags of `cargo xtask bench overload`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OverloadArgs {
    /// Clients in the overload run (closed loop, one request outstanding each).
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Connections (synod sessions) those clients share.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Clients in the capacity run, which saturate the cluster.
    #[arg(long, default_value_t = 1000)]
    base_clients: usize,
    /// How long the overload run lasts (60s, 2m, ...).
    #[arg(long, default_value = "60s")]
    duration: String,
    /// The percentage of operations that are puts; the rest are linearizable gets.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    puts: u32,
}

/// One second's sample of every replica.
struct Sample {
    t: f64,
    rss: Vec<Option<u64>>,
    busy: Vec<Option<f64>>,
    leader_changes: Vec<Option<f64>>,
    /// Requests answered `Redirect` (a client that failed over to a follower).
    redirects: Vec<Option<f64>>,
    /// Waiters dropped because their connection closed (a client that gave up on it).
    dropped: Vec<Option<f64>>,
    /// Client connections open.
    connections: Vec<Option<f64>>,
}

pub(crate) fn run(args: OverloadArgs) -> Result<()> {
    let seconds = parse_seconds("--duration", &args.duration)?;
    if seconds < 4.0 {
        bail!("--duration must be at least 4s, to compare the run's two halves");
    }
    eprintln!("overload: building synod and the load generator (release)");
    build_release(&["synod", "load"])?;
    let out = target_dir().join("bench");
    let raw = out.join("overload");
    let cluster = Cluster { dir: out.join("overload-cluster"), replicas: REPLICAS };
    cluster.stop_all();
    let _ = std::fs::remove_dir_all(&raw);
    std::fs::create_dir_all(&raw)?;
    cluster.spawn_watchdog("overload", &[raw.join("capacity.pid"), raw.join("load.pid")])?;
    cluster.create_with(BASE_PORT, true)?;
    let result = overload(&cluster, &raw, &args, seconds);
    cluster.stop_all();
    for i in 1..=REPLICAS {
        let _ = std::fs::copy(cluster.log_file(i), raw.join(format!("node-{i}.log")));
    }
    let _ = std::fs::remove_dir_all(&cluster.dir);
    result.map_err(|e| e.context(format!("replica and load logs in {}", raw.display())))
}

fn overload(cluster: &Cluster, raw: &Path, args: &OverloadArgs, seconds: f64) -> Result<()> {
    cluster.start_all()?;
    let leader = cluster.await_all_up(Duration::from_secs(20))?;
    let client_file = cluster.client_file();
    let load_args = |clients: usize, sessions: usize, secs: f64| -> Vec<String> {
        let mut a: Vec<String> = ["--backend", "synod", "--warmup", "1", "--keys", "100000"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        a.extend(["--client-config".to_owned(), client_file.to_string_lossy().into_owned()]);
        a.extend([
            "--clients".to_owned(),
            clients.to_string(),
            "--sessions".to_owned(),
            sessions.to_string(),
        ]);
        a.extend(["--duration".to_owned(), secs.to_string(), "--puts".to_owned(), args.puts.to_string()]);
        a
    };
    eprintln!(
        "overload: 3 replicas up (replica {leader} leads); capacity run: {} clients for {CAPACITY_SECONDS} s",
        args.base_clients
    );
    let mut capacity = spawn_load(raw, "capacity", &load_args(args.base_clients, 16, CAPACITY_SECONDS))?;
    let capacity_samples = watch(cluster, CAPACITY_SECONDS, &mut capacity)?;
    let capacity_report = finished(raw, "capacity", &mut capacity)?;

    eprintln!(
        "overload: {} clients over {} connections for {seconds} s ({}x the capacity run's clients)",
        args.clients,
        args.sessions,
        args.clients / args.base_clients.max(1)
    );
    let mut load = spawn_load(raw, "load", &load_args(args.clients, args.sessions, seconds))?;
    let samples = watch(cluster, seconds + 1.0, &mut load)?;
    let report = finished(raw, "load", &mut load)?;
    let died = dead_replica_of(cluster, REPLICAS);

    // Memory per replica, the most in each half of the overload run.
    let half = seconds / 2.0 + 1.0;
    let max_in = |from: f64, to: f64| -> Vec<u64> {
        (0..REPLICAS as usize)
            .map(|r| {
                samples.iter().filter(|s| s.t >= from && s.t < to).filter_map(|s| s.rss[r]).max().unwrap_or(0)
            })
            .collect()
    };
    let (first, second) = (max_in(0.0, half), max_in(half, f64::MAX));
    let capacity_rss: Vec<u64> = (0..REPLICAS as usize)
        .map(|r| capacity_samples.iter().filter_map(|s| s.rss[r]).max().unwrap_or(0))
        .collect();
    let total = |v: &Vec<Option<f64>>| v.iter().flatten().sum::<f64>();
    // Counted over the overload run alone (the first samples of the capacity run may predate
    // a replica's first export of its counters). Failovers show as redirects and dropped waiters.
    let delta = |f: &dyn Fn(&Sample) -> f64| match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => f(b) - f(a),
        _ => 0.0,
    };
    let busy = delta(&|s| total(&s.busy));
    let leader_changes = delta(&|s| total(&s.leader_changes));
    let redirects = delta(&|s| total(&s.redirects));
    let dropped = delta(&|s| total(&s.dropped));
    let max_connections = samples.iter().map(|s| total(&s.connections)).fold(0.0, f64::max);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let mbs = |v: &[u64]| v.iter().map(|b| format!("{:.0}", *b as f64 / MIB)).collect::<Vec<_>>().join("/");

    println!(
        "capacity: {} clients: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, {} errors; replica memory max {} MB",
        args.base_clients,
        f(&capacity_report, "throughput"),
        f(&capacity_report, "p50_ms"),
        f(&capacity_report, "p99_ms"),
        f(&capacity_report, "errors"),
        mbs(&capacity_rss)
    );
    println!(
        "overload: {} clients on {} connections: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, {} errors; \
         replica memory max {} MB in the first half, {} MB in the second",
        args.clients,
        args.sessions,
        f(&report, "throughput"),
        f(&report, "p50_ms"),
        f(&report, "p99_ms"),
        f(&report, "errors"),
        mbs(&first),
        mbs(&second)
    );
    println!(
        "overload: {busy:.0} requests answered Busy, {leader_changes:.0} leader changes seen during it (summed over replicas), {}",
        died.as_deref().unwrap_or("every replica running")
    );
    println!(
        "overload: failovers: {redirects:.0} requests redirected, {dropped:.0} waiters dropped with their \
         connection, at most {max_connections:.0} client connections open (summed over replicas)"
    );
    let json_path = target_dir().join("bench").join("overload.json");
    let series: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!({"t": s.t, "rss_bytes": s.rss, "busy": s.busy, "leader_changes": s.leader_changes,
                   "redirects": s.redirects, "waiters_dropped": s.dropped, "client_connections": s.connections})
        })
        .collect();
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json!({
            "settings": {"clients": args.clients, "sessions": args.sessions, "base_clients": args.base_clients,
                         "duration_s": seconds, "puts_percent": args.puts},
            "capacity": capacity_report, "overload": report,
            "rss_max_first_half": first, "rss_max_second_half": second, "rss_max_capacity": capacity_rss,
            "busy": busy, "leader_changes": leader_changes, "redirects": redirects,
            "waiters_dropped": dropped, "max_client_connections": max_connections, "died": died, "samples": series,
        }))?,
    )?;
    println!("results: {}", json_path.display());
    if let Some(d) = died {
        bail!("{d}");
    }
    Ok(())
}

/// Waits for the load generator and reads its report.
fn finished(raw: &Path, name: &str, load: &mut Child) -> Result<Value> {
    let status = load.wait()?;
    let _ = std::fs::remove_file(raw.join(format!("{name}.pid")));
    if !status.success() {
        bail!(
            "the load generator ({name}) failed ({status}); see {}",
            raw.join(format!("{name}.err")).display()
        );
    }
    let path = raw.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Samples every replica each second until the load generator exits, with a progress bar.
fn watch(cluster: &Cluster, seconds: f64, load: &mut Child) -> Result<Vec<Sample>> {
    let bar = indicatif::ProgressBar::new(seconds.ceil() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("overload {bar:30} {pos}/{len} s  {msg}")
            .expect("valid template"),
    );
    let began = Instant::now();
    let mut samples = Vec::new();
    let deadline = Duration::from_secs_f64(seconds + 120.0);
    loop {
        let t = began.elapsed().as_secs_f64();
        let port = |i: u32| BASE_PORT + 100 + i as u16;
        let rss: Vec<Option<u64>> = (1..=REPLICAS).map(|i| cluster.pid(i).and_then(rss_bytes)).collect();
        let busy = (1..=REPLICAS).map(|i| scrape(port(i), "synod_client_busy_total")).collect();
        let leader_changes = (1..=REPLICAS).map(|i| scrape(port(i), "synod_leader_changes_total")).collect();
        let redirects = (1..=REPLICAS).map(|i| scrape(port(i), "synod_client_redirects_total")).collect();
        let dropped = (1..=REPLICAS).map(|i| scrape(port(i), "synod_waiters_dropped_total")).collect();
        let connections = (1..=REPLICAS).map(|i| scrape(port(i), "synod_client_connections")).collect();
        let max = rss.iter().flatten().copied().max().unwrap_or(0);
        bar.set_position((t as u64).min(seconds.ceil() as u64));
        bar.set_message(format!("replica memory max {:.0} MB", max as f64 / MIB));
        samples.push(Sample { t, rss, busy, leader_changes, redirects, dropped, connections });
        if let Some(d) = dead_replica_of(cluster, REPLICAS) {
            bar.abandon();
            let _ = load.kill();
            let _ = load.wait();
            bail!("{d}");
        }
        if load.try_wait()?.is_some() {
            break;
        }
        if began.elapsed() > deadline {
            bar.abandon();
            let _ = load.kill();
            let _ = load.wait();
            bail!("the load generator did not finish within 120 s of its time");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bar.finish_and_clear();
    Ok(samples)
}
