//! `cargo xtask soak [--minutes M] [--keys K] [--value-bytes B] [--log-bytes N]
//! [--max-memory-mb X] [--max-disk-mb Y]`: a three-replica cluster on loopback under the
//! benchmark's 1000-client put load for M minutes, watching each replica's memory and data
//! directory grow (or, with snapshots, stay bounded).
//!
//! Every ~2 s it samples each replica process's resident memory (`VmRSS` in
//! `/proc/<pid>/status`), the disk its data directory takes, and the cluster's throughput
//! (`synod_commands_applied_total` from the replicas' metrics). Beside the load, a verifier
//! (`load --verify` at a fixed rate) writes distinct keys, keeps the acknowledged ones and reads
//! each back at the end; then the replicas' digests must agree at one applied slot. Writes a
//! plot of throughput, memory and disk over time (`soak.svg`) and the samples (`soak.json`)
//! under `$CARGO_TARGET_DIR/bench/`, and ends with
//! `soak: <N> ops in <M> min, replica memory max <X> MB, data dir max <Y> MB, replicas identical`,
//! or fails with what went wrong (a lost write, digests that differ, a replica that died, a
//! budget exceeded).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::bench::svg;
use crate::cluster::{build_release, Cluster};
use crate::target_dir;

const REPLICAS: u32 = 3;
/// Replicas on +1..+3, their metrics on +101..+103 (the benchmark uses 7300, `cluster up` 7000).
const BASE_PORT: u16 = 7500;
/// The load: as the benchmark's largest point.
const CLIENTS: usize = 1000;
const SESSIONS: usize = 16;
/// The verifier: a few closed-loop clients held to this many puts per second in all.
const VERIFY_CLIENTS: usize = 8;
const VERIFY_RATE: f64 = 40.0;
/// How often the replicas are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const MIB: f64 = 1024.0 * 1024.0;

/// A three-replica cluster under the 1000-client put load for a while, its replicas' memory and
/// disk sampled; a verified subset of writes read back and the replicas' digests compared at the
/// end.
///
/// Ends with `soak: <N> ops in <M> min, replica memory max <X> MB, data dir max <Y> MB, replicas
/// identical`; exits non-zero instead when an acknowledged write is missing, the digests differ, a
/// replica dies, or a budget (--max-memory-mb, --max-disk-mb) is exceeded. The plot goes to
/// `$CARGO_TARGET_DIR/bench/soak.svg`. The target for snapshots: 3 minutes with 100,000 keys
/// under 300 MB of memory and 1 GB of disk per replica
/// (`cargo xtask soak --max-memory-mb 300 --max-disk-mb 1024`).
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask soak", bin_name = "cargo xtask soak")]
pub(crate) struct Args {
    /// How long the load runs, in minutes (fractions allowed: 0.5).
    #[arg(long, value_name = "M", default_value_t = 3.0, value_parser = parse_minutes)]
    minutes: f64,
    /// Distinct keys the load writes.
    #[arg(long, value_name = "K", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Bytes per value.
    #[arg(long, value_name = "B", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    value_bytes: u64,
    /// The replicas' `[snapshots] log_bytes`: snapshot after this many bytes of applied values
    /// (16 MiB, so that a run takes several).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    log_bytes: u64,
    /// Fail when any replica's resident memory exceeds this many MB (MiB) [default: no limit].
    #[arg(long, value_name = "MB")]
    max_memory_mb: Option<f64>,
    /// Fail when any replica's data directory exceeds this many MB (MiB) [default: no limit].
    #[arg(long, value_name = "MB")]
    max_disk_mb: Option<f64>,
}

fn parse_minutes(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches("min").trim_end_matches('m').parse::<f64>() {
        Ok(m) if m.is_finite() && m > 0.0 => Ok(m),
        _ => Err(format!("--minutes takes a positive number of minutes, like 3 or 0.5, not {text:?}")),
    }
}

/// One sample of the cluster.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    /// Seconds since the load started.
    t: f64,
    /// Commands applied per second since the previous sample (None for the first).
    ops_per_s: Option<f64>,
    /// Each replica's resident memory in bytes (None: not running or unreadable).
    rss: Vec<Option<u64>>,
    /// Each replica's data directory, bytes on disk.
    disk: Vec<u64>,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let args: Args = crate::parse_args("soak", args)?;
    let seconds = args.minutes * 60.0;
    eprintln!("soak: building synod and the load generator (release)");
    build_release(&["synod", "load"])?;
    crate::wait_for_earlier_watchdog("soak", Duration::from_secs(30))?;
    let out = target_dir().join("bench");
    let raw = out.join("soak");
    let cluster = Cluster { dir: out.join("soak-cluster"), replicas: REPLICAS };
    cluster.stop_all();
    let _ = std::fs::remove_dir_all(&raw);
    std::fs::create_dir_all(&raw)?;
    let loads: Vec<_> = ["load", "verify"].iter().map(|name| raw.join(format!("{name}.pid"))).collect();
    cluster.spawn_watchdog("soak", &loads)?;

    cluster.create_with(BASE_PORT, true)?;
    for i in 1..=REPLICAS {
        let mut text = std::fs::read_to_string(cluster.node_file(i))?;
        let _ = write!(text, "\n[snapshots]\nlog_bytes = {}\n", args.log_bytes);
        std::fs::write(cluster.node_file(i), text)?;
    }
    let result = soak(&cluster, &raw, &args, seconds);
    cluster.stop_all();
    // The logs are kept beside the results; the data (possibly gigabytes) goes.
    for i in 1..=REPLICAS {
        let _ = std::fs::copy(cluster.dir.join(format!("node-{i}.log")), raw.join(format!("node-{i}.log")));
    }
    let _ = std::fs::remove_dir_all(&cluster.dir);
    result.map_err(|e| e.context(format!("replica and load logs in {}", raw.display())))
}

/// What a finished run found, for the closing line and the report.
struct Outcome {
    ops: u64,
    errors: u64,
    verified: u64,
    missing: u64,
    max_rss: u64,
    max_disk: u64,
    identical: std::result::Result<String, String>,
    died: Option<String>,
    /// Snapshots each replica took (`synod_snapshots_taken_total`; None: no answer).
    snapshots: Vec<Option<u64>>,
}

fn soak(cluster: &Cluster, raw: &Path, args: &Args, seconds: f64) -> Result<()> {
    cluster.start_all()?;
    let leader = cluster.await_all_up(Duration::from_secs(20))?;
    eprintln!(
        "soak: 3 replicas up (replica {leader} leads), [snapshots] log_bytes = {}; {CLIENTS} clients putting \
         {}-byte values over {} keys for {} min, and a verifier writing distinct keys at {VERIFY_RATE:.0}/s",
        args.log_bytes, args.value_bytes, args.keys, args.minutes
    );
    let client_file = cluster.client_file();
    let common = |clients: usize, sessions: usize| -> Vec<String> {
        [
            "--backend",
            "synod",
            "--client-config",
            &client_file.to_string_lossy(),
            "--clients",
            &clients.to_string(),
            "--sessions",
            &sessions.to_string(),
            "--warmup",
            "0",
            "--duration",
            &seconds.to_string(),
            "--puts",
            "100",
            "--value-size",
            &args.value_bytes.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let mut load_args = common(CLIENTS, SESSIONS);
    load_args.extend(["--keys".to_owned(), args.keys.to_string(), "--threads".to_owned(), "0".to_owned()]);
    let mut load = spawn_load(raw, "load", &load_args)?;
    let mut verify_args = common(VERIFY_CLIENTS, 2);
    verify_args.extend(["--verify".to_owned(), "--rate".to_owned(), VERIFY_RATE.to_string()]);
    let mut verifier = spawn_load(raw, "verify", &verify_args)?;

    let samples = watch(cluster, seconds, &mut [&mut load, &mut verifier])?;
    let load_status = load.wait()?;
    eprintln!("soak: the load has stopped; the verifier reads its writes back");
    let verify_status = verifier.wait()?;
    let _ = std::fs::remove_file(raw.join("load.pid"));
    let _ = std::fs::remove_file(raw.join("verify.pid"));
    for name in ["load", "verify"] {
        if let Ok(text) = std::fs::read_to_string(raw.join(format!("{name}.out"))) {
            for line in text.lines().filter(|l| l.starts_with("load:")) {
                eprintln!("soak: {name}: {line}");
            }
        }
    }
    let snapshots: Vec<Option<u64>> = (1..=REPLICAS)
        .map(|i| scrape(BASE_PORT + 100 + i as u16, "synod_snapshots_taken_total").map(|v| v as u64))
        .collect();
    let died = dead_replica(cluster);
    let identical = if died.is_none() {
        cluster
            .await_identical(Duration::from_secs(30), Duration::from_millis(300), None)
            .map_err(|e| format!("{e:#}"))
    } else {
        Err("a replica is not running".to_owned())
    };

    let report = |name: &str| -> Result<Value> {
        let path = raw.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("the {name} run wrote no report {} (see {name}.err beside it)", path.display())
        })?;
        Ok(serde_json::from_str(&text)?)
    };
    if !load_status.success() {
        bail!("soak: the load generator failed ({load_status}); see {}", raw.join("load.err").display());
    }
    let (load_report, verify_report) = (report("load")?, report("verify"));
    let verify_report = match verify_report {
        Ok(v) => v,
        Err(e) => bail!("soak: the verifier failed ({verify_status}): {e:#}"),
    };
    let get = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let outcome = Outcome {
        ops: get(&load_report, "ops") + get(&verify_report, "ops"),
        errors: get(&load_report, "errors") + get(&verify_report, "errors"),
        verified: get(&verify_report, "verified"),
        missing: get(&verify_report, "missing"),
        max_rss: samples.iter().flat_map(|s| s.rss.iter().flatten()).copied().max().unwrap_or(0),
        max_disk: samples.iter().flat_map(|s| s.disk.iter()).copied().max().unwrap_or(0),
        identical,
        died,
        snapshots,
    };
    let svg_path = target_dir().join("bench").join("soak.svg");
    std::fs::write(&svg_path, plot(&samples, args))?;
    let json_path = target_dir().join("bench").join("soak.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report_json(&samples, args, &outcome))?)?;
    println!("plot:    {}", svg_path.display());
    println!("samples: {}", json_path.display());
    if outcome.errors > 0 {
        println!(
            "soak: {} operations failed (timed out or refused) and were retried or dropped",
            outcome.errors
        );
    }
    println!(
        "soak: the verifier read back {} acknowledged writes, {} missing",
        outcome.verified, outcome.missing
    );
    let problems = problems(&outcome, args, verify_status.success());
    if !problems.is_empty() {
        for p in &problems {
            println!("soak: FAILED: {p}");
        }
        bail!("soak failed: {}", problems.join("; "));
    }
    let taken: Vec<String> =
        outcome.snapshots.iter().map(|n| n.map_or("?".to_owned(), |n| n.to_string())).collect();
    println!("soak: snapshots taken by replicas 1-3: {}", taken.join(", "));
    if let Ok(d) = &outcome.identical {
        println!("soak: replicas identical at {d}");
    }
    println!("{}", closing_line(&outcome, args.minutes));
    Ok(())
}

/// Why the run failed, one item per reason; empty when it passed.
fn problems(o: &Outcome, args: &Args, verifier_ok: bool) -> Vec<String> {
    let mut p = Vec::new();
    if let Some(d) = &o.died {
        p.push(d.clone());
    }
    if o.missing > 0 {
        p.push(format!("{} of {} acknowledged writes do not read back", o.missing, o.verified));
    } else if !verifier_ok {
        p.push("the verifier failed".to_owned());
    } else if o.verified == 0 {
        p.push("the verifier had no write acknowledged".to_owned());
    }
    if let Err(e) = &o.identical {
        p.push(format!("the replicas' digests do not agree: {e}"));
    }
    let mb = |b: u64| b as f64 / MIB;
    if let Some(max) = args.max_memory_mb.filter(|&max| mb(o.max_rss) > max) {
        p.push(format!("a replica's memory reached {:.0} MB, over the budget of {max} MB", mb(o.max_rss)));
    }
    if let Some(max) = args.max_disk_mb.filter(|&max| mb(o.max_disk) > max) {
        p.push(format!(
            "a replica's data directory reached {:.0} MB, over the budget of {max} MB",
            mb(o.max_disk)
        ));
    }
    p
}

fn closing_line(o: &Outcome, minutes: f64) -> String {
    format!(
        "soak: {} ops in {} min, replica memory max {:.0} MB, data dir max {:.0} MB, replicas identical",
        o.ops,
        minutes,
        o.max_rss as f64 / MIB,
        o.max_disk as f64 / MIB
    )
}

/// Starts the load generator with `args`, its output in `<raw>/<name>.{out,err,json}` and its pid
/// in `<raw>/<name>.pid` for the watchdog.
pub(crate) fn spawn_load(raw: &Path, name: &str, args: &[String]) -> Result<Child> {
    let child = Command::new(target_dir().join("release").join("load"))
        .args(args)
        .arg("--json")
        .arg(raw.join(format!("{name}.json")))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(raw.join(format!("{name}.out")))?)
        .stderr(std::fs::File::create(raw.join(format!("{name}.err")))?)
        .spawn()
        .with_context(|| format!("starting the load generator ({name})"))?;
    std::fs::write(raw.join(format!("{name}.pid")), child.id().to_string())?;
    Ok(child)
}

/// Samples the replicas every [`SAMPLE_EVERY`] until the load generators exit (or, should they
/// hang, well past their time), with a progress bar.
fn watch(cluster: &Cluster, seconds: f64, loads: &mut [&mut Child]) -> Result<Vec<Sample>> {
    let bar = indicatif::ProgressBar::new(seconds.ceil() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("soak {bar:30} {pos}/{len} s  {msg}")
            .expect("valid template"),
    );
    let began = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut last_applied: Option<(f64, f64)> = None;
    let mut last_print = Instant::now();
    let deadline = Duration::from_secs_f64(seconds + 120.0);
    loop {
        let t = began.elapsed().as_secs_f64();
        let rss = (1..=REPLICAS).map(|i| cluster.pid(i).and_then(rss_bytes)).collect();
        let disk = (1..=REPLICAS).map(|i| dir_bytes(&cluster.dir.join(format!("data/node-{i}")))).collect();
        let applied = (1..=REPLICAS)
            .filter_map(|i| scrape(BASE_PORT + 100 + i as u16, "synod_commands_applied_total"))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let ops_per_s = match (last_applied, applied) {
            (Some((t0, a0)), Some(a)) if t > t0 => Some(((a - a0) / (t - t0)).max(0.0)),
            _ => None,
        };
        if let Some(a) = applied {
            last_applied = Some((t, a));
        }
        samples.push(Sample { t, ops_per_s, rss, disk });
        let max_rss = samples.iter().flat_map(|s| s.rss.iter().flatten()).copied().max().unwrap_or(0);
        let max_disk = samples.iter().flat_map(|s| s.disk.iter()).copied().max().unwrap_or(0);
        let rate = ops_per_s.map_or("-".to_owned(), |r| format!("{r:.0}"));
        let msg = format!(
            "{rate} ops/s, memory max {:.0} MB, data dir max {:.0} MB",
            max_rss as f64 / MIB,
            max_disk as f64 / MIB
        );
        bar.set_position((t as u64).min(seconds.ceil() as u64));
        bar.set_message(msg.clone());
        if bar.is_hidden() && last_print.elapsed() >= Duration::from_secs(15) {
            eprintln!("soak: {t:>5.0}/{seconds:.0} s  {msg}");
            last_print = Instant::now();
        }
        if let Some(d) = dead_replica(cluster) {
            bar.abandon();
            for l in loads.iter_mut() {
                let _ = l.kill();
                let _ = l.wait();
            }
            bail!("{d}");
        }
        let mut all_done = true;
        for l in loads.iter_mut() {
            if l.try_wait()?.is_none() {
                all_done = false;
            }
        }
        // The verifier reads back after its time; sampling stops once the main load is over too.
        if all_done || (t > seconds && loads[0].try_wait()?.is_some()) {
            break;
        }
        if began.elapsed() > deadline {
            bar.abandon();
            for l in loads.iter_mut() {
                let _ = l.kill();
                let _ = l.wait();
            }
            bail!(
                "the load generators did not finish within {:.0} s of their time",
                deadline.as_secs_f64() - seconds
            );
        }
        std::thread::sleep(
            SAMPLE_EVERY
                .saturating_sub(Duration::from_secs_f64((began.elapsed().as_secs_f64() - t).min(1.0))),
        );
    }
    bar.finish_and_clear();
    Ok(samples)
}

/// `replica <i> died: <its log's last line>` for the first replica that is not running.
fn dead_replica(cluster: &Cluster) -> Option<String> {
    dead_replica_of(cluster, REPLICAS)
}

/// [`dead_replica`] for replicas `1..=replicas`.
pub(crate) fn dead_replica_of(cluster: &Cluster, replicas: u32) -> Option<String> {
    (1..=replicas).find_map(|i| {
        let alive = cluster.pid(i).is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        });
        (!alive).then(|| {
            let log = std::fs::read_to_string(cluster.dir.join(format!("node-{i}.log"))).unwrap_or_default();
            let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("its log is empty");
            format!("replica {i} died; its log ends: {}", last.trim())
        })
    })
}

/// A process's resident memory (`VmRSS`), in bytes.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// The disk the files under `dir` take (allocated blocks, so preallocated but unwritten space
/// counts, and sparse holes do not). Files that vanish while it walks are skipped.
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The unlabelled sample `name` from the metrics endpoint on 127.0.0.1:`port`.
pub(crate) fn scrape(port: u16, name: &str) -> Option<f64> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = Vec::new();
    s.take(16 << 20).read_to_end(&mut body).ok()?;
    metric(&String::from_utf8_lossy(&body), name)
}

/// The value of an unlabelled sample `name` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until every replica answers with the same applied slot and digest.
const COLORS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];

/// Three panels over time: throughput, each replica's memory, each replica's data directory.
fn plot(samples: &[Sample], args: &Args) -> String {
    let point = |t: f64, y: f64| svg::Point { x: t, y, label: String::new() };
    let subtitle = format!(
        "3 replicas on loopback, {CLIENTS} clients putting {}-byte values over {} keys, [snapshots] log_bytes = {}",
        args.value_bytes, args.keys, args.log_bytes
    );
    let per_replica = |pick: &dyn Fn(&Sample, usize) -> Option<f64>| -> Vec<svg::Series> {
        (0..REPLICAS as usize)
            .map(|r| svg::Series {
                name: format!("replica {}", r + 1),
                color: COLORS[r % COLORS.len()],
                points: samples.iter().filter_map(|s| Some(point(s.t, pick(s, r)?))).collect(),
            })
            .collect()
    };
    let throughput = svg::Series {
        name: "commands applied/s".to_owned(),
        color: COLORS[0],
        points: samples.iter().filter_map(|s| Some(point(s.t, s.ops_per_s?))).collect(),
    };
    let labels = |title: &str, y: &str, subtitle: &str| svg::Labels {
        title: title.to_owned(),
        subtitle: subtitle.to_owned(),
        x: "time since the load started (s)".to_owned(),
        y: y.to_owned(),
    };
    svg::stack(&[
        svg::plot_linear(
            &labels(&format!("synod soak, {} min: throughput", args.minutes), "operations/s", &subtitle),
            &[throughput],
        ),
        svg::plot_linear(
            &labels("resident memory per replica", "VmRSS (MB)", ""),
            &per_replica(&|s, r| Some(s.rss[r]? as f64 / MIB)),
        ),
        svg::plot_linear(
            &labels("data directory per replica", "disk (MB)", ""),
            &per_replica(&|s, r| Some(s.disk[r] as f64 / MIB)),
        ),
    ])
}

fn report_json(samples: &[Sample], args: &Args, o: &Outcome) -> Value {
    let samples: Vec<Value> = samples
        .iter()
        .map(|s| json!({"t": s.t, "ops_per_s": s.ops_per_s, "rss_bytes": s.rss, "disk_bytes": s.disk}))
        .collect();
    json!({
        "settings": {
            "minutes": args.minutes, "keys": args.keys, "value_bytes": args.value_bytes,
            "log_bytes": args.log_bytes, "clients": CLIENTS, "sessions": SESSIONS,
            "verify_clients": VERIFY_CLIENTS, "verify_rate": VERIFY_RATE,
            "max_memory_mb": args.max_memory_mb, "max_disk_mb": args.max_disk_mb,
        },
        "ops": o.ops, "errors": o.errors, "verified": o.verified, "missing": o.missing,
        "max_rss_bytes": o.max_rss, "max_disk_bytes": o.max_disk,
        "identical": o.identical.as_ref().ok(), "differ": o.identical.as_ref().err(), "died": o.died,
        "snapshots_taken": o.snapshots,
        "samples": samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args> {
        crate::parse_args("soak", &s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse("").unwrap();
        assert_eq!((a.minutes, a.keys, a.value_bytes, a.log_bytes), (3.0, 100_000, 100, 16 << 20));
        assert_eq!((a.max_memory_mb, a.max_disk_mb), (None, None));
        let a =
            parse("--minutes 0.5 --keys 10 --value-bytes 8 --max-memory-mb 300 --max-disk-mb 1024").unwrap();
        assert_eq!((a.minutes, a.keys, a.value_bytes), (0.5, 10, 8));
        assert_eq!((a.max_memory_mb, a.max_disk_mb), (Some(300.0), Some(1024.0)));
        assert!(format!("{:#}", parse("--minutes 0").unwrap_err()).contains("positive number of minutes"));
        assert!(parse("--keys 0").is_err());
        assert!(parse("--fast").is_err());
    }

    #[test]
    fn proc_status_and_metrics_parse() {
        let status = "Name:\tsynod\nVmPeak:\t  200 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tsynod\n"), None);
        let text = "HTTP/1.0 200 OK\r\n\r\n# HELP synod_commands_applied_total x\n\
                    synod_commands_applied_total_x 9\nsynod_commands_applied_total 4711\n";
        assert_eq!(metric(text, "synod_commands_applied_total"), Some(4711.0));
        assert_eq!(metric(text, "synod_nothing"), None);
    }

    #[test]
    fn digests_agree_only_when_all_replicas_answer_alike() {
        let s = |a: u64, d: &str| Some((a, d.to_owned()));
        assert_eq!(
            crate::cluster::agreement(&[s(9, "ab"), s(9, "ab"), s(9, "ab")], 3),
            Some("slot 9, digest ab".to_owned())
        );
        assert_eq!(crate::cluster::agreement(&[s(9, "ab"), s(9, "ab"), None], 3), None);
        assert_eq!(crate::cluster::agreement(&[s(9, "ab"), s(8, "ab"), s(9, "ab")], 3), None);
        assert_eq!(crate::cluster::agreement(&[s(9, "ab"), s(9, "ac"), s(9, "ab")], 3), None);
    }

    fn outcome() -> Outcome {
        Outcome {
            ops: 1_234_567,
            errors: 0,
            verified: 2400,
            missing: 0,
            max_rss: 200 << 20,
            max_disk: 700 << 20,
            identical: Ok("slot 9, digest ab".to_owned()),
            died: None,
            snapshots: vec![Some(3), Some(3), None],
        }
    }

    #[test]
    fn the_closing_line_and_the_budgets() {
        let o = outcome();
        assert_eq!(
            closing_line(&o, 3.0),
            "soak: 1234567 ops in 3 min, replica memory max 200 MB, data dir max 700 MB, replicas identical"
        );
        assert_eq!(closing_line(&o, 0.5).split(" min").next(), Some("soak: 1234567 ops in 0.5"));
        let args = parse("--max-memory-mb 300 --max-disk-mb 1024").unwrap();
        assert!(problems(&o, &args, true).is_empty());
        let tight = parse("--max-memory-mb 100 --max-disk-mb 500").unwrap();
        let p = problems(&o, &tight, true);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("memory reached 200 MB, over the budget of 100 MB"), "{p:?}");
        let lost = Outcome { missing: 3, identical: Err("differ".to_owned()), ..outcome() };
        let p = problems(&lost, &args, false);
        assert!(p[0].contains("3 of 2400 acknowledged writes do not read back"), "{p:?}");
        assert!(p[1].contains("digests do not agree"), "{p:?}");
    }

    #[test]
    fn the_plot_has_three_panels() {
        let samples: Vec<Sample> = (0..5)
            .map(|i| Sample {
                t: 2.0 * i as f64,
                ops_per_s: (i > 0).then_some(30_000.0),
                rss: vec![Some(10 << 20), None, Some(12 << 20)],
                disk: vec![1 << 20, 2 << 20, 3 << 20],
            })
            .collect();
        let doc = plot(&samples, &parse("").unwrap());
        assert_eq!(
            doc.matches("<polyline").count(),
            7,
            "one line for throughput, three each for memory and disk"
        );
        assert!(doc.contains("resident memory per replica") && doc.contains("data directory per replica"));
        assert!(!doc.contains("point labels"), "no point labels in a time series");
    }
}
