//! `cargo xtask bench snapshots [--keys 2000000] [--value-bytes 200] [--duration 60s]
//! [--clients 64] [--log-bytes 67108864] [--fill-clients 1000]`: what snapshots cost the
//! clients, and how long an emptied replica takes to rejoin.
//!
//! A fresh three-replica cluster on loopback (JSON logs, `[snapshots] log_bytes` as given) is
//! preloaded with every key (`load --fill`), then put to by `--clients` closed-loop clients
//! overwriting those keys for `--duration`, each operation's start and latency kept
//! (`load --samples`). The replicas' `snapshot written` log lines (end time, `ms`) give the
//! windows in which each replica was writing a snapshot; operations that started inside any
//! replica's window (and, apart, inside the leader's) are set against those that started
//! outside all of them. Then, under a second run of the same load, a follower is killed, its
//! data directory emptied, and it is restarted: the time until `synod status --json` shows it
//! no longer rejoining and applied past the commit point the others had when it restarted is
//! the rejoin time; client p99 while it catches up is set against p99 before, and the highest
//! ballot before and after tells whether an election ran. Once the load ends, every replica
//! must show the same applied slot and digest. Results: closing lines on
//! stdout, `$CARGO_TARGET_DIR/bench/snapshots.json` and `snapshots.svg` (latency over time,
//! snapshot windows shaded).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::svg;
use crate::cluster::Cluster;
use crate::target_dir;

/// Replica i listens on BASE_PORT + i, its metrics on BASE_PORT + 100 + i.
const BASE_PORT: u16 = 7700;
const REPLICAS: u32 = 3;
/// The width of one point of the latency plot.
const BUCKET_US: u64 = 250_000;

/// The flags of `cargo xtask bench snapshots`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SnapshotArgs {
    /// Keys preloaded, and overwritten by the measured load.
    #[arg(long, value_name = "N", default_value_t = 2_000_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, value_name = "B", default_value_t = 200)]
    value_bytes: usize,
    /// How long the measured put load lasts (60s, 500ms, 2m).
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_seconds)]
    duration: f64,
    /// Closed-loop clients of the measured load.
    #[arg(long, value_name = "N", default_value_t = 64)]
    clients: usize,
    /// `[snapshots] log_bytes`: a replica snapshots after this many bytes of values.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    log_bytes: u64,
    /// Clients of the preload.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    fill_clients: usize,
}

/// A positive time, as the etcd comparison's `--duration` reads it (`60s`, `1.5s`, `500ms`, `2m`), in seconds.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match super::peer::parse_seconds("--duration", text) {
        Ok(v) if v > 0.0 => Ok(v),
        Ok(_) => Err(format!("a time like 60s, 1.5s, 500ms or 2m, not {text:?}")),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// One snapshot a replica wrote, from its `snapshot written` log line.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    replica: u32,
    /// Unix µs: when writing began (the line's time less `ms`) and ended (the line's time).
    start_us: u64,
    end_us: u64,
    bytes: u64,
    upto: u64,
}

pub(crate) fn run(args: SnapshotArgs) -> Result<()> {
    eprintln!("bench snapshots: building synod and the load generator (release)");
    crate::cluster::build_release(&["synod", "load"])?;
    crate::wait_for_earlier_watchdog("bench-snapshots", Duration::from_secs(30))?;
    let out = target_dir().join("bench");
    let raw = out.join("snapshots");
    let cluster = Cluster { dir: out.join("snapshots-cluster"), replicas: REPLICAS };
    cluster.stop_all();
    let _ = std::fs::remove_dir_all(&raw);
    std::fs::create_dir_all(&raw)?;
    cluster.spawn_watchdog("bench-snapshots", &[load_pid_file(&raw)])?;
    cluster.create_with(BASE_PORT, true)?;
    for i in 1..=REPLICAS {
        let text = std::fs::read_to_string(cluster.node_file(i))?;
        let text = format!("log_format = \"json\"\n{text}\n[snapshots]\nlog_bytes = {}\n", args.log_bytes);
        std::fs::write(cluster.node_file(i), text)?;
    }
    println!(
        "bench snapshots: 3 replicas, [snapshots] log_bytes = {} ({:.1} MiB), {} keys x {} B values, \
         {} clients for {:.0} s",
        args.log_bytes,
        args.log_bytes as f64 / (1 << 20) as f64,
        args.keys,
        args.value_bytes,
        args.clients,
        args.duration
    );
    let result = measure(&cluster, &raw, &args);
    cluster.stop_all();
    for i in 1..=REPLICAS {
        let _ = std::fs::copy(cluster.dir.join(format!("node-{i}.log")), raw.join(format!("node-{i}.log")));
    }
    // The data (gigabytes at the default size) goes; the logs stay beside the results.
    let _ = std::fs::remove_dir_all(&cluster.dir);
    result.map_err(|e| e.context(format!("replica and load logs in {}", raw.display())))
}

fn measure(cluster: &Cluster, raw: &Path, args: &SnapshotArgs) -> Result<()> {
    cluster.start_all()?;
    cluster.await_all_up(Duration::from_secs(30))?;
    let client = cluster.client_file().display().to_string();
    let common = |clients: usize| {
        vec![
            "--client-config".to_owned(),
            client.clone(),
            "--clients".to_owned(),
            clients.to_string(),
            "--sessions".to_owned(),
            clients.min(16).to_string(),
            "--keys".to_owned(),
            args.keys.to_string(),
            "--value-size".to_owned(),
            args.value_bytes.to_string(),
        ]
    };

    eprintln!(
        "bench snapshots: preloading {} keys x {} B with {} clients",
        args.keys, args.value_bytes, args.fill_clients
    );
    let began = Instant::now();
    let mut fill = common(args.fill_clients);
    fill.extend(["--fill".to_owned(), "--json".to_owned(), raw.join("preload.json").display().to_string()]);
    wait_load(spawn_load(raw, &fill)?)?;
    println!("preload: {} keys in {:.1} s", args.keys, began.elapsed().as_secs_f64());

    let leader = cluster.await_leader(Duration::from_secs(10))?;
    eprintln!("bench snapshots: measured put load, leader is replica {leader}");
    let load_before = loadavg();
    let samples_path = raw.join("samples.txt");
    let mut steady = common(args.clients);
    steady.extend([
        "--puts".to_owned(),
        "100".to_owned(),
        "--warmup".to_owned(),
        "2".to_owned(),
        "--duration".to_owned(),
        args.duration.to_string(),
        "--samples".to_owned(),
        samples_path.display().to_string(),
        "--json".to_owned(),
        raw.join("steady.json").display().to_string(),
    ]);
    wait_load(spawn_load(raw, &steady)?)?;
    // Other work on the machine (a build, another cluster) shows here, and in the figures.
    println!(
        "machine: 1-minute load average {load_before} before the measured load, {} after ({} CPUs)",
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let leader_after = cluster.await_leader(Duration::from_secs(10))?;
    if leader_after != leader {
        eprintln!("bench snapshots: the leader changed during the load ({leader} -> {leader_after})");
    }

    let samples = parse_samples(&std::fs::read_to_string(&samples_path)?)?;
    let Some((first, last)) = samples.first().zip(samples.last()).map(|(f, l)| (f.0, l.0)) else {
        bail!("the measured load completed no operation");
    };
    let mut windows = Vec::new();
    for i in 1..=REPLICAS {
        let log = std::fs::read_to_string(cluster.dir.join(format!("node-{i}.log"))).unwrap_or_default();
        windows.extend(parse_windows(&log, i));
    }
    let in_run: Vec<Window> =
        windows.iter().filter(|w| w.end_us >= first && w.start_us <= last).cloned().collect();
    let split = Split::of(&samples, &in_run, leader);
    for w in &in_run {
        println!(
            "  replica {}{}: snapshot up to slot {}, {:.1} MB, {:.2} s, from {:.1} s",
            w.replica,
            if w.replica == leader { " (leader)" } else { "" },
            w.upto,
            w.bytes as f64 / 1e6,
            (w.end_us - w.start_us) as f64 / 1e6,
            w.start_us.saturating_sub(first) as f64 / 1e6
        );
    }
    let leader_snaps: Vec<&Window> = in_run.iter().filter(|w| w.replica == leader).collect();
    let n = leader_snaps.len();
    let mean = |f: &dyn Fn(&Window) -> f64| {
        if in_run.is_empty() {
            0.0
        } else {
            in_run.iter().map(f).sum::<f64>() / in_run.len() as f64
        }
    };
    let size_mb = mean(&|w| w.bytes as f64 / 1e6);
    let secs = mean(&|w| (w.end_us - w.start_us) as f64 / 1e6);
    println!(
        "during any replica's snapshot: {} ops, p50 {:.2} ms, p99 {:.2} ms; during the leader's: {} ops, \
         p50 {:.2} ms, p99 {:.2} ms; between: {} ops, p50 {:.2} ms, p99 {:.2} ms",
        split.any.len(),
        ms(pct(&split.any, 0.50)),
        ms(pct(&split.any, 0.99)),
        split.leader.len(),
        ms(pct(&split.leader, 0.50)),
        ms(pct(&split.leader, 0.99)),
        split.none.len(),
        ms(pct(&split.none, 0.50)),
        ms(pct(&split.none, 0.99)),
    );
    let (during, between) = (ms(pct(&split.any, 0.99)), ms(pct(&split.none, 0.99)));
    let ratio = if between > 0.0 { during / between } else { f64::NAN };
    println!(
        "snapshots: p99 during {during:.2} ms, between {between:.2} ms (ratio {ratio:.2}), {n} snapshots of \
         {size_mb:.1} MB taking {secs:.2} s each (on the leader; {} on all 3 replicas)",
        in_run.len()
    );

    let svg_path = target_dir().join("bench").join("snapshots.svg");
    std::fs::write(&svg_path, plot(&samples, &in_run, leader, args))?;
    println!("plot: {}", svg_path.display());

    // Rejoin, under the same load: a follower is killed, emptied and restarted while the
    // clients go on; it must catch up by snapshot transfer without an election.
    let follower = (1..=REPLICAS).find(|&i| i != leader_after).expect("three replicas");
    let ballot_before = highest_ballot(cluster);
    let rejoin_samples = raw.join("rejoin-samples.txt");
    let mut under = common(args.clients);
    under.extend([
        "--puts".to_owned(),
        "100".to_owned(),
        "--warmup".to_owned(),
        "0".to_owned(),
        "--duration".to_owned(),
        REJOIN_LOAD_S.to_string(),
        "--samples".to_owned(),
        rejoin_samples.display().to_string(),
    ]);
    let load = spawn_load(raw, &under)?;
    std::thread::sleep(Duration::from_secs(5));
    eprintln!("bench snapshots: under load, killing follower {follower}, emptying its data directory, restarting it");
    cluster.signal(follower, "KILL")?;
    let data = cluster.dir.join("data").join(format!("node-{follower}"));
    empty_dir(&data)?;
    // A killed replica can hold its ports for a while (its memory is still being freed); a
    // replica started before they are free exits at once ("Address already in use").
    let ports = (BASE_PORT + follower as u16, BASE_PORT + 100 + follower as u16);
    let freed = Instant::now();
    while !ports_free(ports) && freed.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let restarted_us = unix_us();
    cluster.start(follower)?;
    // Caught up: no longer rejoining, and applied past the commit point the others had when it restarted.
    let target = highest_commit(cluster);
    let took = await_caught_up(cluster, follower, target, Duration::from_secs(300))?;
    let caught_us = restarted_us + (took * 1e6) as u64;
    wait_load(load)?;
    let agreed = cluster
        .await_identical(Duration::from_secs(120), Duration::from_millis(200), Some("bench snapshots"))
        .with_context(|| {
            let log = cluster.dir.join(format!("node-{follower}.log"));
            let text = std::fs::read_to_string(log).unwrap_or_default();
            format!(
                "the emptied replica {follower} did not catch up; its log ends: {}",
                text.lines().last().unwrap_or("")
            )
        })?;
    let elections = highest_ballot(cluster) != ballot_before;
    let under_load = parse_samples(&std::fs::read_to_string(&rejoin_samples)?)?;
    let (mut before, mut during) = (Vec::new(), Vec::new());
    for &(start, lat) in &under_load {
        if start < restarted_us {
            before.push(lat);
        } else if start <= caught_us {
            during.push(lat);
        }
    }
    before.sort_unstable();
    during.sort_unstable();
    let snap_mb = newest_snapshot_bytes(&data) as f64 / 1e6;
    println!(
        "rejoin: empty replica caught up in {took:.1} s under load (snapshot {snap_mb:.1} MB; client p99 {:.2} ms \
         while it caught up, {:.2} ms before; {}; then {agreed})",
        ms(pct(&during, 0.99)),
        ms(pct(&before, 0.99)),
        if elections { "the leader's ballot CHANGED: an election ran" } else { "no election" },
    );

    let report = json!({
        "keys": args.keys, "value_bytes": args.value_bytes, "clients": args.clients,
        "duration": args.duration, "log_bytes": args.log_bytes, "leader": leader,
        "during_any": summary(&split.any), "during_leader": summary(&split.leader),
        "between": summary(&split.none), "p99_ratio": ratio,
        "snapshots": in_run.iter().map(|w| json!({
            "replica": w.replica, "upto": w.upto, "bytes": w.bytes,
            "start_s": w.start_us.saturating_sub(first) as f64 / 1e6,
            "seconds": (w.end_us - w.start_us) as f64 / 1e6,
        })).collect::<Vec<_>>(),
        "rejoin": {"replica": follower, "seconds": took, "snapshot_bytes": newest_snapshot_bytes(&data),
                   "load": "running", "p99_during_ms": ms(pct(&during, 0.99)),
                   "p99_before_ms": ms(pct(&before, 0.99)), "election": elections},
    });
    let json_path = target_dir().join("bench").join("snapshots.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", json_path.display());
    Ok(())
}

/// The 1-minute load average from /proc/loadavg ("?" where there is none).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn summary(lat: &[u64]) -> Value {
    json!({"ops": lat.len(), "p50_ms": ms(pct(lat, 0.5)), "p99_ms": ms(pct(lat, 0.99))})
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The `q` quantile of sorted latencies (0 for none).
fn pct(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Latencies (µs, sorted) of the operations that started while any replica, the leader, or no
/// replica was writing a snapshot.
#[derive(Debug, Default)]
struct Split {
    any: Vec<u64>,
    leader: Vec<u64>,
    none: Vec<u64>,
}

impl Split {
    fn of(samples: &[(u64, u64)], windows: &[Window], leader: u32) -> Split {
        let mut split = Split::default();
        for &(start, lat) in samples {
            let inside: Vec<&Window> =
                windows.iter().filter(|w| w.start_us <= start && start < w.end_us).collect();
            if inside.is_empty() {
                split.none.push(lat);
            } else {
                split.any.push(lat);
                if inside.iter().any(|w| w.replica == leader) {
                    split.leader.push(lat);
                }
            }
        }
        split.any.sort_unstable();
        split.leader.sort_unstable();
        split.none.sort_unstable();
        split
    }
}

/// `load --samples` output: `<start Unix µs> <latency µs>` per line, sorted by start.
fn parse_samples(text: &str) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(a)), Some(Ok(b))) => out.push((a, b)),
            _ => bail!("not a sample line: {line:?}"),
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The snapshots replica `replica` wrote, from its JSON log's `snapshot written` lines.
fn parse_windows(log: &str, replica: u32) -> Vec<Window> {
    let number =
        |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim_start_matches('#').parse().ok()));
    log.lines()
        .filter(|l| l.contains("snapshot written"))
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let f = &v["fields"];
            if f["message"] != "snapshot written" {
                return None;
            }
            let end_us = rfc3339_us(v["timestamp"].as_str()?)?;
            let took = number(&f["ms"])? * 1000;
            Some(Window {
                replica,
                start_us: end_us.saturating_sub(took),
                end_us,
                bytes: number(&f["bytes"]).unwrap_or(0),
                upto: number(&f["upto"]).unwrap_or(0),
            })
        })
        .collect()
}

/// `2026-12-06T22:19:47.123456Z` (UTC, as tracing's JSON logs write it) in Unix µs.
fn rfc3339_us(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        digits.parse().ok()?
    };
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + s;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

const SHADES: [&str; 3] = ["#ff7f0e", "#9467bd", "#8c564b"];

/// p50 and p99 per [`BUCKET_US`] of start time, each replica's snapshot windows shaded.
fn plot(samples: &[(u64, u64)], windows: &[Window], leader: u32, args: &SnapshotArgs) -> String {
    let first = samples.first().map_or(0, |s| s.0);
    let mut buckets: Vec<Vec<u64>> = Vec::new();
    for &(start, lat) in samples {
        let b = ((start - first) / BUCKET_US) as usize;
        if buckets.len() <= b {
            buckets.resize(b + 1, Vec::new());
        }
        buckets[b].push(lat);
    }
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for (b, lats) in buckets.iter_mut().enumerate() {
        if lats.is_empty() {
            continue;
        }
        lats.sort_unstable();
        let x = (b as u64 * BUCKET_US + BUCKET_US / 2) as f64 / 1e6;
        let point = |y: f64| svg::Point { x, y, label: String::new() };
        p50.push(point(ms(pct(lats, 0.5))));
        p99.push(point(ms(pct(lats, 0.99))));
    }
    let labels = svg::Labels {
        title: "Client latency while replicas write snapshots".to_owned(),
        subtitle: format!(
            "{} keys x {} B, {} clients putting, log_bytes {} MiB; shaded: a replica writing a snapshot (leader {leader})",
            args.keys,
            args.value_bytes,
            args.clients,
            args.log_bytes >> 20
        ),
        x: "seconds into the measured load (operation start)".to_owned(),
        y: format!("latency per {} ms, ms", BUCKET_US / 1000),
    };
    let series = [
        svg::Series { name: "p99".to_owned(), color: "#d62728", points: p99 },
        svg::Series { name: "p50".to_owned(), color: "#1f77b4", points: p50 },
    ];
    let doc = svg::plot(&labels, &series);
    let spans: Vec<(f64, f64, u32)> = windows
        .iter()
        .map(|w| {
            let s = |us: u64| us.saturating_sub(first) as f64 / 1e6;
            (s(w.start_us), s(w.end_us), w.replica)
        })
        .collect();
    shade(&doc, &series[0].points, &spans, leader)
}

/// Adds a translucent band (x from, x to, replica) under the lines of `doc`, a plot whose first
/// polyline draws `first_series`: the band's pixels come from that polyline's own.
fn shade(doc: &str, first_series: &[svg::Point], spans: &[(f64, f64, u32)], leader: u32) -> String {
    // The plot area, as svg.rs lays it out (LEFT, TOP, WIDTH - RIGHT, HEIGHT - TOP - BOTTOM).
    const LEFT: f64 = 80.0;
    const TOP: f64 = 70.0;
    const PLOT_RIGHT: f64 = 630.0;
    const PLOT_HEIGHT: f64 = 390.0;
    let (Some(a), Some(b)) = (first_series.first(), first_series.last()) else { return doc.to_owned() };
    let Some(pixels) = doc
        .split("<polyline ")
        .nth(1)
        .and_then(|p| p.split("points=\"").nth(1))
        .and_then(|p| p.split('"').next())
        .map(|p| {
            p.split_whitespace()
                .filter_map(|xy| xy.split(',').next()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
    else {
        return doc.to_owned();
    };
    let (Some(&pa), Some(&pb)) = (pixels.first(), pixels.last()) else { return doc.to_owned() };
    if (b.x - a.x).abs() < 1e-9 {
        return doc.to_owned();
    }
    let scale = (pb - pa) / (b.x - a.x);
    let px = |x: f64| pa + (x - a.x) * scale;
    let mut bands = String::new();
    for &(from, to, replica) in spans {
        let color = SHADES[(replica as usize + SHADES.len() - 1) % SHADES.len()];
        let opacity = if replica == leader { 0.30 } else { 0.15 };
        let (x0, x1) = (px(from).clamp(LEFT, PLOT_RIGHT), px(to).clamp(LEFT, PLOT_RIGHT));
        let _ = writeln!(
            bands,
            r#"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{PLOT_HEIGHT}" fill="{color}" fill-opacity="{opacity}"><title>replica {replica}</title></rect>"#,
            (x1 - x0).max(1.0)
        );
    }
    let mut legend = String::new();
    for r in 1..=REPLICAS {
        let color = SHADES[(r as usize - 1) % SHADES.len()];
        let y = 500.0;
        let x = 80.0 + 120.0 * (r - 1) as f64;
        let _ = writeln!(
            legend,
            r#"<rect x="{x}" y="{:.1}" width="12" height="10" fill="{color}" fill-opacity="0.4"/><text x="{}" y="{y}" font-size="11">replica {r}{}</text>"#,
            y - 9.0,
            x + 16.0,
            if r == leader { " (leader)" } else { "" }
        );
    }
    // Under the grid and lines: right after the white background.
    let marker = "fill=\"white\"/>\n";
    let Some(at) = doc.find(marker).map(|i| i + marker.len()) else { return doc.to_owned() };
    let mut out = String::with_capacity(doc.len() + bands.len() + legend.len());
    out.push_str(&doc[..at]);
    out.push_str(&bands);
    out.push_str(&doc[at..]);
    let end = out.rfind("</svg>").unwrap_or(out.len());
    out.insert_str(end, &legend);
    out
}

/// Whether a replica could bind its (QUIC over UDP, metrics over TCP) ports now.
fn ports_free((replica, metrics): (u16, u16)) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", replica)).is_ok()
        && std::net::TcpListener::bind(("127.0.0.1", metrics)).is_ok()
}

/// The size of the newest `snapshot-<slot>.snap` in `dir` (0: none).
fn newest_snapshot_bytes(dir: &Path) -> u64 {
    let mut best: Option<(u64, u64)> = None;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(slot) = name.strip_prefix("snapshot-").and_then(|n| n.strip_suffix(".snap")) else {
            continue;
        };
        let Ok(slot) = slot.parse::<u64>() else { continue };
        let len = e.metadata().map_or(0, |m| m.len());
        if best.is_none_or(|(s, _)| slot > s) {
            best = Some((slot, len));
        }
    }
    best.map_or(0, |(_, len)| len)
}

/// Removes everything inside `dir`, keeping `dir`.
fn empty_dir(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Seconds of load around the rejoin (the follower is killed 5 s in).
const REJOIN_LOAD_S: u64 = 40;

fn unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The highest ballot any replica reports, as (round, node).
fn highest_ballot(cluster: &Cluster) -> (u64, u64) {
    let views = cluster.statuses().unwrap_or_default();
    views
        .iter()
        .flatten()
        .map(|v| (v["ballot"]["round"].as_u64().unwrap_or(0), v["ballot"]["node"].as_u64().unwrap_or(0)))
        .max()
        .unwrap_or((0, 0))
}

/// The highest commit point any replica reports.
fn highest_commit(cluster: &Cluster) -> u64 {
    let views = cluster.statuses().unwrap_or_default();
    views.iter().flatten().filter_map(|v| v["commit"].as_u64()).max().unwrap_or(0)
}

/// Waits until `replica` is no longer rejoining and has applied `target`; returns the seconds it took.
fn await_caught_up(cluster: &Cluster, replica: u32, target: u64, timeout: Duration) -> Result<f64> {
    let began = Instant::now();
    loop {
        let views = cluster.statuses().unwrap_or_default();
        let view = views.get(replica as usize - 1).cloned().flatten();
        if let Some(v) = &view {
            let applied = v["applied"].as_u64().unwrap_or(0);
            if applied >= target && !v["rejoining"].as_bool().unwrap_or(true) {
                return Ok(began.elapsed().as_secs_f64());
            }
        }
        if began.elapsed() > timeout {
            bail!("replica {replica} did not catch up to slot {target} within {timeout:?}: {view:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn load_pid_file(raw: &Path) -> PathBuf {
    raw.join("load.pid")
}

/// Starts the load generator, its output shown (progress bar included).
fn spawn_load(raw: &Path, args: &[String]) -> Result<Child> {
    let child = Command::new(target_dir().join("release").join("load"))
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the load generator")?;
    std::fs::write(load_pid_file(raw), child.id().to_string())?;
    Ok(child)
}

fn wait_load(mut child: Child) -> Result<()> {
    let status = child.wait()?;
    if !status.success() {
        bail!("the load generator failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_timestamps_are_unix_micros() {
        assert_eq!(rfc3339_us("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        assert_eq!(rfc3339_us("2026-12-06T22:19:47.123456Z"), Some(1_796_595_587_123_456));
        assert_eq!(rfc3339_us("2000-03-01T00:00:00Z"), Some(951_868_800_000_000));
        assert_eq!(rfc3339_us("2026-12-06 22:19:47"), None);
    }

    #[test]
    fn snapshot_lines_become_windows() {
        let log = r##"{"timestamp":"1970-01-01T00:00:10.000000Z","level":"INFO","fields":{"message":"snapshot written","upto":"#42","bytes":1000,"ms":2500},"target":"synod_runtime::snapshot"}
{"timestamp":"1970-01-01T00:00:11.000000Z","level":"INFO","fields":{"message":"something else"}}
not json mentioning snapshot written"##;
        let w = parse_windows(log, 2);
        assert_eq!(
            w,
            [Window { replica: 2, start_us: 7_500_000, end_us: 10_000_000, bytes: 1000, upto: 42 }]
        );
    }

    #[test]
    fn operations_are_split_by_when_they_started() {
        let windows = [
            Window { replica: 1, start_us: 100, end_us: 200, bytes: 0, upto: 0 },
            Window { replica: 2, start_us: 300, end_us: 400, bytes: 0, upto: 0 },
        ];
        let samples = [(50, 1), (150, 10), (250, 2), (350, 20), (450, 3)];
        let s = Split::of(&samples, &windows, 1);
        assert_eq!(s.any, [10, 20]);
        assert_eq!(s.leader, [10]);
        assert_eq!(s.none, [1, 2, 3]);
        assert_eq!(pct(&s.none, 0.5), 2);
        assert_eq!(pct(&s.none, 0.99), 3);
        assert_eq!(pct(&[], 0.99), 0);
        assert_eq!(parse_samples("5 1\n3 2\n").unwrap(), [(3, 2), (5, 1)]);
        assert!(parse_samples("x\n").is_err());
    }

    #[test]
    fn the_plot_shades_each_window_under_the_lines() {
        let args = SnapshotArgs {
            keys: 10,
            value_bytes: 1,
            duration: 1.0,
            clients: 1,
            log_bytes: 1 << 20,
            fill_clients: 1,
        };
        let samples: Vec<(u64, u64)> = (0..40).map(|i| (i * 100_000, 1000 + i * 10)).collect();
        let windows = [Window { replica: 1, start_us: 1_000_000, end_us: 2_000_000, bytes: 0, upto: 0 }];
        let doc = plot(&samples, &windows, 1, &args);
        let band = doc.find("<title>replica 1</title>").expect("a band");
        assert!(band < doc.find("<polyline").unwrap());
        assert!(doc.contains("replica 1 (leader)"));
        assert!(doc.trim_end().ends_with("</svg>"));
        assert_eq!(parse_seconds("2m"), Ok(120.0));
        assert!(parse_seconds("0").is_err());
    }
}
