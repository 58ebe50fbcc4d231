//! `cargo xtask bench --peer etcd [--clients 1,16,100,1000] [--duration 10s] [--warmup 2s]
//! [--puts 100] [--sessions 16] [--quick]`: synod and etcd side by side under the same load
//! generator (`load --backend synod|etcd`).
//!
//! For each client count, in turn, each system gets a fresh three-replica cluster on
//! loopback (fsync on for both), a warm-up, a measured run, and is stopped and removed;
//! the order alternates between client counts. Then a table, a JSON file and an SVG plot
//! (throughput against p99 latency) under `$CARGO_TARGET_DIR/bench/`, and the closing line
//! `synod/etcd throughput at <N> clients: <R>x` for the client count where synod is fastest.
//! Before the one-client runs, `put_skeleton` measures what a one-client put costs here
//! without synod, over UDP and over QUIC, and the table is followed by that floor: the
//! machine's speed drifts, and a one-client latency means little without it. The same
//! skeleton with `--read` gives the floor of a one-client linearizable read (one round,
//! nothing written). With gets in the mix (`--puts` below 100), a last synod run at the
//! largest client count reads only, stale (`--read-mode stale`: no check, no round), the
//! ceiling of any read on this machine, for the mix's figures to be read against.
//! `--reads-from spread` has synod's connections read from every replica
//! (`load --reads-from spread`) instead of the leader.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::etcd::{self, Etcd};
use super::svg;
use crate::cluster::{build_release_with, Cluster};
use crate::{project_root, target_dir};

/// The base port of the benchmark's synod cluster (replicas on +1..+3, metrics on +101..+103).
const SYNOD_BASE_PORT: u16 = 7300;
const REPLICAS: u32 = 3;
/// What the load generator fixes and the report restates.
const KEYS: u64 = 100_000;
const VALUE_BYTES: u64 = 100;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    pub(crate) clients: Vec<usize>,
    pub(crate) warmup: f64,
    pub(crate) duration: f64,
    pub(crate) puts: u32,
    pub(crate) sessions: usize,
    /// The load generator's runtime: 0 for one current-thread runtime, N for N workers.
    pub(crate) load_threads: usize,
    /// synod's gets from the leader (`false`) or spread over the replicas.
    pub(crate) spread: bool,
    pub(crate) quick: bool,
}

const USAGE: &str = "cargo xtask bench --peer etcd [--clients 1,16,100,1000] [--duration 10s] \
                     [--warmup 2s] [--puts 100] [--sessions 16] [--load-threads 0] [--reads-from leader|spread] [--quick]";

/// The flags of `cargo xtask bench --peer etcd`, as given; [`PeerArgs::options`] checks them.
#[derive(Debug, clap::Args)]
pub(crate) struct PeerArgs {
    /// The system to compare synod with: etcd, or redis (`--peer redis --help` for its flags).
    #[arg(long, value_name = "SYSTEM")]
    peer: Option<String>,
    /// The client counts to measure, comma-separated.
    #[arg(long, value_name = "N,N,...", default_value = "1,16,100,1000", allow_hyphen_values = true)]
    clients: String,
    /// How long each measured run lasts (10s, 1.5s, 500ms, 2m) [default: 10s, 3s with --quick].
    #[arg(long, value_name = "TIME")]
    duration: Option<String>,
    /// The warm-up before each measured run [default: 2s, 1s with --quick].
    #[arg(long, value_name = "TIME")]
    warmup: Option<String>,
    /// The percentage of operations that are puts (0-100); the rest are gets.
    #[arg(long, value_name = "PERCENT", default_value = "100")]
    puts: String,
    /// The connections the clients share (at least 1).
    #[arg(long, value_name = "N", default_value = "16")]
    sessions: String,
    /// The load generator's worker threads (0: one current-thread runtime).
    #[arg(long, value_name = "N", default_value = "0")]
    load_threads: String,
    /// Where synod's gets are served: leader, or spread (connection i reads from replica i mod 3).
    #[arg(long, value_name = "WHERE", default_value = "leader")]
    reads_from: String,
    /// Shorter runs: 1 s warm-up and 3 s measured, unless --warmup or --duration say otherwise.
    #[arg(long)]
    quick: bool,
}

impl PeerArgs {
    /// What to run, or why these flags do not say.
    pub(crate) fn options(self) -> Result<Options> {
        let PeerArgs { peer, clients, duration, warmup, puts, sessions, load_threads, reads_from, quick } =
            self;
        match peer.as_deref() {
            Some("etcd") => {}
            Some(other) => bail!("unknown peer {other:?}: only etcd and redis are supported"),
            None => bail!("name the system to compare with: --peer etcd\nusage: {USAGE}"),
        }
        let clients = parse_clients(&clients)?;
        let duration = duration.map(|v| parse_seconds("--duration", &v)).transpose()?;
        let warmup = warmup.map(|v| parse_seconds("--warmup", &v)).transpose()?;
        let puts = puts.parse().ok().filter(|p| *p <= 100).with_context(|| {
            format!("--puts takes the percentage of operations that are puts (0-100), not {puts:?}")
        })?;
        let sessions = sessions.parse().ok().filter(|s| *s > 0).with_context(|| {
            format!(
                "--sessions takes the number of connections the clients share (at least 1), not {sessions:?}"
            )
        })?;
        let load_threads = load_threads.parse().with_context(|| {
            format!("--load-threads takes the load generator's worker threads (0: one current-thread runtime), not {load_threads:?}")
        })?;
        let spread = match reads_from.as_str() {
            "leader" => false,
            "spread" => true,
            other => bail!("--reads-from takes leader or spread, not {other:?}"),
        };
        let duration = duration.unwrap_or(if quick { 3.0 } else { 10.0 });
        if duration <= 0.0 {
            bail!("--duration must be longer than zero");
        }
        let warmup = warmup.unwrap_or(if quick { 1.0 } else { 2.0 });
        Ok(Options { clients, warmup, duration, puts, sessions, load_threads, spread, quick })
    }
}

/// Parses the arguments of `cargo xtask bench --peer etcd [...]`.
pub(crate) fn parse(args: &[String]) -> Result<Options> {
    crate::parse_args::<super::Args>("bench", args)?.peer.options()
}

/// `1,16,100,1000`: positive counts, returned sorted and without repeats.
fn parse_clients(text: &str) -> Result<Vec<usize>> {
    let mut counts = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        match item.parse::<usize>() {
            Ok(n) if n > 0 => counts.push(n),
            _ => bail!(
                "--clients takes a comma-separated list of positive client counts, like 1,16,100,1000; \
                 {item:?} in {text:?} is not one"
            ),
        }
    }
    counts.sort_unstable();
    counts.dedup();
    Ok(counts)
}

/// `10s`, `10`, `1.5s`, `500ms` or `2m`, in seconds.
pub(super) fn parse_seconds(flag: &str, text: &str) -> Result<f64> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * scale),
        _ => bail!("{flag} takes a time like 10s, 1.5s, 500ms or 2m, not {text:?}"),
    }
}

/// The system a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Synod,
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Synod => "synod",
            System::Etcd => "etcd",
        }
    }
}

/// One run's figures, from the load generator's JSON.
#[derive(Debug, Clone, PartialEq)]
struct Measured {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    raw: Value,
}

impl Measured {
    fn from_json(raw: Value) -> Result<Measured> {
        let f = |k: &str| raw[k].as_f64().with_context(|| format!("the load report has no {k}"));
        Ok(Measured {
            throughput: f("throughput")?,
            p50_ms: f("p50_ms")?,
            p99_ms: f("p99_ms")?,
            errors: raw["errors"].as_u64().unwrap_or(0),
            raw,
        })
    }
}

/// Both systems at one client count (None: that run failed).
#[derive(Debug, Clone, PartialEq)]
struct Row {
    clients: usize,
    synod: Option<Measured>,
    etcd: Option<Measured>,
}

impl Row {
    /// synod/etcd for throughput, p50 and p99.
    fn ratios(&self) -> Option<(f64, f64, f64)> {
        let (s, e) = (self.synod.as_ref()?, self.etcd.as_ref()?);
        let r = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Some((r(s.throughput, e.throughput), r(s.p50_ms, e.p50_ms), r(s.p99_ms, e.p99_ms)))
    }
}

/// Everything the benchmark starts, and where.
struct Lab {
    synod: Cluster,
    etcd: Etcd,
    raw: PathBuf,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let command = format!("cargo xtask bench {}", args.join(" "));
    eprintln!("bench: building synod and the load generator with its etcd backend (release)");
    build_release_with(&["synod", "load", "put_skeleton", "echo_replica"], &["synod-bench/etcd"])?;
    let etcd_version = etcd::ensure_installed()?;
    let began = Instant::now();
    let out = target_dir().join("bench");
    let lab = Lab {
        synod: Cluster { dir: out.join("synod-cluster"), replicas: REPLICAS },
        etcd: Etcd { dir: out.join("etcd-cluster"), members: REPLICAS as u16 },
        raw: out.join("etcd-compare"),
    };
    // An earlier run's watchdog may still be cleaning up: it would remove this run's files.
    crate::wait_for_earlier_watchdog("bench", Duration::from_secs(30))?;
    // Leftovers of an interrupted run go first; a watchdog cleans up if this one is interrupted.
    stop_synod(&lab.synod);
    lab.etcd.stop();
    let _ = std::fs::remove_dir_all(&lab.raw);
    std::fs::create_dir_all(&lab.raw)?;
    watchdog(&lab)?;

    if let Some(warning) = growth_warning(&opts, meminfo_gib("MemAvailable")) {
        eprintln!("{warning}");
    }
    let total = opts.clients.len() * 2;
    eprintln!(
        "bench: synod against {etcd_version}: 3 replicas each on loopback, fsync on; {} % puts; clients {:?}; \
         per run a fresh cluster, {} s warm-up, {} s measured; about {:.0} s in all",
        opts.puts,
        opts.clients,
        opts.warmup,
        opts.duration,
        total as f64 * (opts.warmup + opts.duration + 4.0)
    );
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut floor = None;
    for (k, &clients) in opts.clients.iter().enumerate() {
        if clients == 1 {
            // In the same minutes as the one-client runs: the machine's floor drifts.
            floor = match Floor::measure() {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("bench: the floor of a one-client put could not be measured: {e:#}");
                    None
                }
            };
        }
        // Alternate who goes first, so that neither always runs on a machine the other just warmed.
        let order = if k % 2 == 0 { [System::Synod, System::Etcd] } else { [System::Etcd, System::Synod] };
        let mut row = Row { clients, synod: None, etcd: None };
        for (j, system) in order.into_iter().enumerate() {
            eprintln!(
                "bench: [{}/{total}] {}, {clients} clients ({:.0} s since start)",
                2 * k + j + 1,
                system.name(),
                began.elapsed().as_secs_f64()
            );
            match measure(&lab, system, clients, &opts, &[]) {
                Ok(m) => {
                    if m.errors > 0 {
                        failures.push(format!(
                            "{} at {clients} clients: {} operations failed",
                            system.name(),
                            m.errors
                        ));
                    }
                    match system {
                        System::Synod => row.synod = Some(m),
                        System::Etcd => row.etcd = Some(m),
                    }
                }
                Err(e) => {
                    eprintln!("bench: {} at {clients} clients failed: {e:#}", system.name());
                    failures.push(format!("{} at {clients} clients: {e:#}", system.name()));
                }
            }
        }
        rows.push(row);
    }
    // With gets in the mix: what synod's reads cost at most here, on the same machine minutes.
    let ceiling = match (opts.puts < 100, opts.clients.last()) {
        (true, Some(&clients)) => {
            eprintln!("bench: [ceiling] synod, {clients} clients, stale reads only (no round, no check)");
            match measure(&lab, System::Synod, clients, &opts, &["--puts", "0", "--read-mode", "stale"]) {
                Ok(m) => Some((clients, m)),
                Err(e) => {
                    eprintln!("bench: the read ceiling could not be measured: {e:#}");
                    None
                }
            }
        }
        _ => None,
    };
    // And below that, what the load generator, QUIC and synod's frames cost alone.
    let echo = match &ceiling {
        Some((clients, _)) => {
            eprintln!("bench: [floor] echo_replica, {clients} clients, reads answered at once (no log, no state machine)");
            match measure_echo(&lab, *clients, &opts) {
                Ok(m) => Some(m),
                Err(e) => {
                    eprintln!("bench: the request path's floor could not be measured: {e:#}");
                    None
                }
            }
        }
        None => None,
    };
    let wall = began.elapsed().as_secs_f64();

    print!("{}", table(&rows));
    if let Some(f) = &floor {
        println!("{}", f.line());
    }
    if let Some((clients, m)) = &ceiling {
        let mix = rows.iter().find(|r| r.clients == *clients).and_then(|r| r.synod.as_ref());
        let share = mix.map_or(String::new(), |x| {
            format!(
                "; the {} % get mix reached {:.0} ops/s, {:.0} % of it",
                100 - opts.puts,
                x.throughput,
                100.0 * x.throughput / m.throughput
            )
        });
        println!(
            "ceiling of any read here: synod, {clients} clients, stale reads only (no round, no check): {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms{share}",
            m.throughput, m.p50_ms, m.p99_ms
        );
        if let Some(e) = &echo {
            println!(
                "floor of the request path here: echo_replica (synod's client protocol over QUIC, each read answered at \
                 once on the transport thread: no log, no state machine, no thread hop), {clients} clients: {:.0} ops/s, \
                 p50 {:.2} ms, p99 {:.2} ms; the stale-read ceiling is {:.0} % of it",
                e.throughput,
                e.p50_ms,
                e.p99_ms,
                100.0 * m.throughput / e.throughput
            );
        }
    }
    for f in &failures {
        println!("failed: {f}");
    }
    let date = utc_date(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let mut report = report(&rows, floor.as_ref(), &opts, &command, &date, &etcd_version, wall);
    if let Some((clients, m)) = &ceiling {
        report["read_ceiling"] =
            json!({"clients": clients, "load": "--puts 0 --read-mode stale", "synod": m.raw});
        if let Some(e) = &echo {
            report["request_path_floor"] =
                json!({"clients": clients, "load": "--puts 0 --read-mode stale", "echo_replica": e.raw});
        }
    }
    let json_path = out.join("etcd-compare.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let svg_path = out.join("etcd-compare.svg");
    std::fs::write(&svg_path, plot(&rows, &opts, &date))?;
    println!("results: {} (each run's load report in {})", json_path.display(), lab.raw.display());
    println!("plot:    {}", svg_path.display());
    println!("bench: {} runs in {wall:.0} s, clusters' start and stop included (the build not)", total);
    match best(&rows) {
        Some((clients, ratio)) => println!("synod/etcd throughput at {clients} clients: {ratio:.2}x"),
        None => println!("synod/etcd throughput: no client count has figures for both"),
    }
    if !failures.is_empty() {
        bail!("{} of {total} runs failed or saw errors: {}", failures.len(), failures.join("; "));
    }
    Ok(())
}

/// One system at one client count, on a fresh cluster that is stopped and removed after.
///
/// `extra` goes to the load generator after the usual flags (a later flag wins), and names
/// the run's files apart.
fn measure(lab: &Lab, system: System, clients: usize, opts: &Options, extra: &[&str]) -> Result<Measured> {
    let tag = if extra.is_empty() { String::new() } else { format!("-{}", extra.join("").replace('-', "")) };
    let json = lab.raw.join(format!("{}-{clients}{tag}.json", system.name()));
    match system {
        System::Synod => {
            let cluster = &lab.synod;
            let t = Instant::now();
            cluster.create_with(SYNOD_BASE_PORT, true)?;
            let result = cluster.start_all().and_then(|()| {
                let leader = cluster.await_all_up(Duration::from_secs(20))?;
                eprintln!("bench: synod up in {:.1} s, replica {leader} leads", t.elapsed().as_secs_f64());
                let mut backend: Vec<OsString> = vec![
                    "--backend".into(),
                    "synod".into(),
                    "--client-config".into(),
                    cluster.client_file().into(),
                ];
                if opts.spread {
                    backend.extend(["--reads-from".into(), "spread".into()]);
                }
                load(&backend, clients, opts, &json, extra)
            });
            let t = Instant::now();
            stop_synod(cluster);
            eprintln!("bench: synod stopped in {:.1} s", t.elapsed().as_secs_f64());
            let result = result.map_err(|e| {
                let kept = keep_logs(&cluster.dir, "node-", &lab.raw, &format!("synod-{clients}"));
                e.context(format!("replica logs kept in {kept}"))
            });
            let _ = std::fs::remove_dir_all(&cluster.dir);
            result
        }
        System::Etcd => {
            let t = Instant::now();
            let result = lab.etcd.start().and_then(|()| {
                lab.etcd.await_healthy(Duration::from_secs(20))?;
                eprintln!("bench: etcd up in {:.1} s, every member healthy", t.elapsed().as_secs_f64());
                let backend =
                    ["--backend".into(), "etcd".into(), "--endpoints".into(), lab.etcd.endpoints().into()];
                load(&backend, clients, opts, &json, extra)
            });
            let t = Instant::now();
            lab.etcd.stop();
            eprintln!("bench: etcd stopped in {:.1} s", t.elapsed().as_secs_f64());
            let result = result.map_err(|e| {
                let kept = keep_logs(&lab.etcd.dir, "m", &lab.raw, &format!("etcd-{clients}"));
                e.context(format!("member logs kept in {kept}"))
            });
            let _ = std::fs::remove_dir_all(&lab.etcd.dir);
            result
        }
    }
}

/// What a one-client put costs on this machine without synod: `put_skeleton`
/// (the same four processes and message pattern, real fdatasyncs) over plain
/// UDP and over QUIC with synod's settings, p50 and p99 in milliseconds.
struct Floor {
    udp: (f64, f64),
    quic: (f64, f64),
    /// `put_skeleton --quic --read`: a one-client read's round, nothing written.
    read: (f64, f64),
}

/// How long each skeleton runs.
const FLOOR_SECONDS: &str = "3";

impl Floor {
    fn measure() -> Result<Floor> {
        eprintln!(
            "bench: the floor of a one-client put: put_skeleton over UDP, then over QUIC, then a read's \
             over QUIC ({FLOOR_SECONDS} s each)"
        );
        Ok(Floor {
            udp: skeleton(&[])?,
            quic: skeleton(&["--quic"])?,
            read: skeleton(&["--quic", "--read"])?,
        })
    }

    fn line(&self) -> String {
        format!(
            "floor of a one-client put here, without synod (put_skeleton, p50/p99 ms): UDP {:.2}/{:.2}, QUIC {:.2}/{:.2}; \
             of a one-client read (put_skeleton --quic --read: one round, nothing written): {:.2}/{:.2}",
            self.udp.0, self.udp.1, self.quic.0, self.quic.1, self.read.0, self.read.1
        )
    }

    fn json(&self) -> Value {
        json!({
            "udp": {"p50_ms": self.udp.0, "p99_ms": self.udp.1},
            "quic": {"p50_ms": self.quic.0, "p99_ms": self.quic.1},
            "quic_read": {"p50_ms": self.read.0, "p99_ms": self.read.1},
            "seconds": FLOOR_SECONDS.parse::<f64>().unwrap_or(0.0),
        })
    }
}

/// Runs `put_skeleton` with `mode` and reads its p50 and p99 (ms) from its closing line.
fn skeleton(mode: &[&str]) -> Result<(f64, f64)> {
    let dir = target_dir().join("bench");
    let out = Command::new(target_dir().join("release").join("put_skeleton"))
        .args(mode)
        .arg(FLOOR_SECONDS)
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run put_skeleton")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("put_skeleton {mode:?} failed: {}{}", text.trim(), String::from_utf8_lossy(&out.stderr).trim());
    }
    parse_skeleton(&text).with_context(|| format!("unexpected put_skeleton output: {:?}", text.trim()))
}

/// `put-skeleton: N puts in S s, p50 X ms, p99 Y ms` -> (X, Y).
fn parse_skeleton(text: &str) -> Option<(f64, f64)> {
    let after = |key: &str| -> Option<f64> {
        let rest = &text[text.rfind(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((after("p50")?, after("p99")?))
}

/// Runs the load generator and reads its report.
/// Stale reads from `clients` clients against `echo_replica`, which answers each at once:
/// the floor under any read synod serves, on the same cores.
fn measure_echo(lab: &Lab, clients: usize, opts: &Options) -> Result<Measured> {
    let cluster = &lab.synod;
    // Only its certificates and client file: no replica runs.
    cluster.create_with(SYNOD_BASE_PORT, true)?;
    let addr = format!("127.0.0.1:{}", SYNOD_BASE_PORT + 1);
    cluster.write_client_file(&[(1, addr.clone())])?;
    let lifetime = (opts.warmup + opts.duration + 60.0).ceil() as u64;
    let mut echo = Command::new(target_dir().join("release").join("echo_replica"))
        .arg("--certs")
        .arg(cluster.dir.join("certs"))
        .args(["--addr", &addr, "--exit-after", &lifetime.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .context("starting echo_replica")?;
    std::thread::sleep(Duration::from_millis(500));
    let json = lab.raw.join(format!("echo-{clients}.json"));
    let backend: Vec<OsString> =
        vec!["--backend".into(), "synod".into(), "--client-config".into(), cluster.client_file().into()];
    let result = load(&backend, clients, opts, &json, &["--puts", "0", "--read-mode", "stale"]);
    let _ = echo.kill();
    let _ = echo.wait();
    let _ = std::fs::remove_dir_all(&cluster.dir);
    result
}

fn load(
    backend: &[OsString],
    clients: usize,
    opts: &Options,
    json: &Path,
    extra: &[&str],
) -> Result<Measured> {
    let mut child = Command::new(target_dir().join("release").join("load"))
        .args(backend)
        .args(["--clients", &clients.to_string()])
        .args(["--sessions", &opts.sessions.min(clients).to_string()])
        .args(["--warmup", &opts.warmup.to_string(), "--duration", &opts.duration.to_string()])
        // A run that sets its own mix (the read ceiling's `--puts 0`) keeps it.
        .args(if extra.contains(&"--puts") {
            vec![]
        } else {
            vec!["--puts".to_owned(), opts.puts.to_string()]
        })
        .args(["--keys", &KEYS.to_string()])
        .args(["--value-size", &VALUE_BYTES.to_string()])
        .args(["--threads", &opts.load_threads.to_string()])
        .args(extra)
        .arg("--json")
        .arg(json)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the load generator")?;
    // The watchdog stops it too, should this process be killed.
    let pid_file = json.with_file_name("load.pid");
    std::fs::write(&pid_file, child.id().to_string())?;
    let status = child.wait();
    let _ = std::fs::remove_file(&pid_file);
    let status = status.context("waiting for the load generator")?;
    if !status.success() {
        bail!("the load generator failed ({status})");
    }
    let text = std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    Measured::from_json(serde_json::from_str(&text)?)
}

/// Copies a failed run's `<prefix>*.log` files to `<raw>/<tag>-*.log` (the next run's fresh
/// cluster removes the originals) and says where they went.
fn keep_logs(dir: &Path, prefix: &str, raw: &Path, tag: &str) -> String {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".log") {
            let _ = std::fs::copy(entry.path(), raw.join(format!("{tag}-{name}")));
        }
    }
    format!("{}/{tag}-*.log", raw.display())
}

fn stop_synod(cluster: &Cluster) {
    for i in 1..=cluster.replicas {
        super::stop_pid_file(&cluster.pid_file(i), "synod");
    }
}

/// A detached shell that kills the clusters' processes and removes their files once this
/// process is gone, however it ended (Ctrl-C and SIGKILL included); after a normal end
/// it finds nothing to do.
fn watchdog(lab: &Lab) -> Result<()> {
    let q = crate::shell_quote;
    let mut kills = String::new();
    for i in 1..=lab.synod.replicas {
        let _ = write!(kills, "k {} synod; ", q(&lab.synod.pid_file(i)));
    }
    for i in 1..=lab.etcd.members {
        let _ = write!(kills, "k {} etcd; ", q(&lab.etcd.pid_file(i)));
    }
    let _ = write!(kills, "k {} load; ", q(&lab.raw.join("load.pid")));
    let script = format!(
        "k() {{ p=$(cat \"$1\" 2>/dev/null) || return 0; \
         [ \"$(cat /proc/$p/comm 2>/dev/null)\" = \"$2\" ] && kill -KILL $p; rm -f \"$1\"; }}; \
         {kills}sleep 0.2; rm -rf {} {}",
        q(&lab.synod.dir),
        q(&lab.etcd.dir),
    );
    crate::spawn_watchdog("bench", &script).context("starting the benchmark's watchdog")?;
    Ok(())
}

/// The client count where synod's throughput is highest, and synod/etcd there.
fn best(rows: &[Row]) -> Option<(usize, f64)> {
    rows.iter()
        .filter(|r| r.ratios().is_some())
        .max_by(|a, b| {
            let t = |r: &Row| r.synod.as_ref().map_or(0.0, |m| m.throughput);
            t(a).total_cmp(&t(b))
        })
        .and_then(|r| Some((r.clients, r.ratios()?.0)))
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "        |           synod           |            etcd           |     synod/etcd");
    let _ = writeln!(s, "clients |    ops/s  p50 ms  p99 ms |    ops/s  p50 ms  p99 ms |  ops/s   p50   p99");
    let _ =
        writeln!(s, "--------+---------------------------+---------------------------+-------------------");
    let cell = |m: &Option<Measured>| match m {
        Some(m) => format!("{:>9.0} {:>7.2} {:>7.2}", m.throughput, m.p50_ms, m.p99_ms),
        None => format!("{:>9} {:>7} {:>7}", "failed", "-", "-"),
    };
    for r in rows {
        let ratios = match r.ratios() {
            Some((t, p50, p99)) => format!("{t:>6.2}x {p50:>5.2} {p99:>5.2}"),
            None => format!("{:>7} {:>5} {:>5}", "-", "-", "-"),
        };
        let _ = writeln!(s, "{:>7} | {} | {} | {ratios}", r.clients, cell(&r.synod), cell(&r.etcd));
    }
    s
}

fn plot(rows: &[Row], opts: &Options, date: &str) -> String {
    let series = |name: &str, color: &'static str, pick: fn(&Row) -> &Option<Measured>| svg::Series {
        name: name.to_owned(),
        color,
        points: rows
            .iter()
            .filter_map(|r| {
                pick(r).as_ref().map(|m| svg::Point {
                    x: m.throughput,
                    y: m.p99_ms,
                    label: r.clients.to_string(),
                })
            })
            .collect(),
    };
    let labels = svg::Labels {
        title: "synod and etcd: p99 latency against throughput".to_owned(),
        subtitle: format!(
            "3 replicas each on loopback, fsync on; {} % puts, {VALUE_BYTES}-byte values; {} s per point; {date}",
            opts.puts, opts.duration
        ),
        x: "throughput (operations/s)".to_owned(),
        y: "p99 latency (ms)".to_owned(),
    };
    svg::plot(&labels, &[series("synod", "#1f77b4", |r| &r.synod), series("etcd", "#d62728", |r| &r.etcd)])
}

fn report(
    rows: &[Row],
    floor: Option<&Floor>,
    opts: &Options,
    command: &str,
    date: &str,
    etcd_version: &str,
    wall: f64,
) -> Value {
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            let ratio = r.ratios().map(|(t, p50, p99)| json!({"throughput": t, "p50": p50, "p99": p99}));
            json!({
                "clients": r.clients,
                "synod": r.synod.as_ref().map(|m| m.raw.clone()),
                "etcd": r.etcd.as_ref().map(|m| m.raw.clone()),
                "synod_over_etcd": ratio,
            })
        })
        .collect();
    json!({
        "command": command,
        "date": date,
        "machine": machine(),
        "synod": {"revision": git_revision(), "replicas": REPLICAS, "fsync": true, "ports": SYNOD_BASE_PORT},
        "etcd": {"version": etcd_version, "members": REPLICAS, "fsync": true},
        "settings": {
            "clients": opts.clients, "warmup_s": opts.warmup, "duration_s": opts.duration,
            "puts_percent": opts.puts, "reads_from": if opts.spread { "spread" } else { "leader" }, "connections": opts.sessions, "load_threads": opts.load_threads, "keys": KEYS, "value_bytes": VALUE_BYTES,
            "fresh_cluster_per_run": true, "order": "alternating, synod first at the first client count",
        },
        "results": results,
        "one_client_floor": floor.map(Floor::json),
        "best": best(rows).map(|(clients, ratio)| json!({"clients": clients, "throughput_ratio": ratio})),
        "wall_seconds": wall,
    })
}

/// Cores, CPU model, memory and kernel, as Linux reports them.
pub(super) fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']));
    json!({
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "cpu": cpu,
        "memory_gib": meminfo_gib("MemTotal").map(|g| (g * 10.0).round() / 10.0),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
    })
}

pub(super) fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(project_root())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `2026-11-26T20:16:03Z` for Unix time `secs`.
pub(super) fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Memory and disk each replica takes per put: it keeps every write in its log and in
/// memory until snapshots exist (docs/OPERATIONS.md, "Known limits").
const GROWTH_BYTES_PER_PUT: f64 = 220.0;
/// About the most puts per second a run here has done (docs/PERFORMANCE.md).
const PEAK_PUTS_PER_SECOND: f64 = 150_000.0;
/// Above what one closed-loop client has done here (about 2,000 puts/s).
const PUTS_PER_SECOND_PER_CLIENT: f64 = 2_500.0;

/// A warning when one run could take more than half the machine's available
/// memory: the three replicas of a run grow with every put. Each client count
/// gets a fresh cluster, so the largest one is what counts.
fn growth_warning(opts: &Options, available_gib: Option<f64>) -> Option<String> {
    let available = available_gib?;
    let clients = opts.clients.iter().copied().max().unwrap_or(1) as f64;
    let rate = PEAK_PUTS_PER_SECOND.min(PUTS_PER_SECOND_PER_CLIENT * clients);
    let puts = rate * opts.puts as f64 / 100.0 * (opts.warmup + opts.duration);
    let need = puts * GROWTH_BYTES_PER_PUT * f64::from(REPLICAS) / f64::from(1u32 << 30);
    (need > available / 2.0).then(|| {
        format!(
            "bench: warning: a run of {:.0} s could write {:.1}M puts; the three replicas keep every put \
             in memory and on disk (no snapshots yet): up to {need:.1} GiB of memory in all, and as much disk, \
             with {available:.1} GiB of memory available. Shorten --duration if a run fails.",
            opts.warmup + opts.duration,
            puts / 1e6
        )
    })
}

/// A `/proc/meminfo` field (`MemTotal`, `MemAvailable`, ...) in GiB.
fn meminfo_gib(field: &str) -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / f64::from(1u32 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_warn_about_growth() {
        let opts = |d: &str| parse(&args(&format!("--peer etcd --duration {d}"))).unwrap();
        assert_eq!(growth_warning(&opts("10s"), Some(20.0)), None);
        let w = growth_warning(&opts("10m"), Some(20.0)).expect("ten minutes of puts outgrow 10 GiB");
        assert!(w.contains("no snapshots yet"), "{w}");
        assert_eq!(growth_warning(&opts("10m"), None), None);
        // One client cannot write nearly as much.
        let one = parse(&args("--peer etcd --clients 1 --duration 10m")).unwrap();
        assert_eq!(growth_warning(&one, Some(20.0)), None);
        // Reads do not grow the log.
        let reads = parse(&args("--peer etcd --duration 10m --puts 0")).unwrap();
        assert_eq!(growth_warning(&reads, Some(20.0)), None);
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn err(s: &str) -> String {
        format!("{:#}", parse(&args(s)).unwrap_err())
    }

    #[test]
    fn defaults_and_quick() {
        let o = parse(&args("--peer etcd")).unwrap();
        assert_eq!(
            (o.clients, o.warmup, o.duration, o.puts, o.sessions),
            (vec![1, 16, 100, 1000], 2.0, 10.0, 100, 16)
        );
        let q = parse(&args("--peer etcd --quick")).unwrap();
        assert_eq!((q.warmup, q.duration, q.quick, q.spread), (1.0, 3.0, true, false));
        assert!(parse(&args("--peer etcd --reads-from spread")).unwrap().spread);
        assert!(err("--peer etcd --reads-from followers").contains("--reads-from takes leader or spread"));
        let o = parse(&args("--duration 5s --peer etcd --quick --clients 100,1 --warmup 500ms --puts 50"))
            .unwrap();
        assert_eq!(
            (o.clients, o.warmup, o.duration, o.puts),
            (vec![1, 100], 0.5, 5.0, 50),
            "explicit times win over --quick"
        );
    }

    #[test]
    fn a_bad_clients_list_is_named() {
        for bad in ["1,x,100", "1,,2", "0,16", "-5", "1;16"] {
            let e = err(&format!("--peer etcd --clients {bad}"));
            assert!(
                e.contains("--clients takes a comma-separated list of positive client counts"),
                "{bad}: {e}"
            );
        }
        assert!(err("--peer etcd --clients 1,x").contains("\"x\" in \"1,x\" is not one"));
        assert!(err("--peer etcd --clients").contains("a value is required for '--clients <N,N,...>'"));
    }

    #[test]
    fn other_bad_arguments_are_named() {
        assert!(err("--clients 1").contains("--peer etcd"));
        assert!(err("--peer zookeeper").contains("only etcd"));
        assert!(err("--peer etcd --duration ten").contains("--duration takes a time like 10s"));
        assert!(err("--peer etcd --duration 0s").contains("longer than zero"));
        assert!(err("--peer etcd --puts 150").contains("--puts takes the percentage"));
        assert!(err("--peer etcd --sessions 0").contains("--sessions takes"));
        assert!(err("--peer etcd --fast").contains("unexpected argument '--fast' found"));
    }

    #[test]
    fn times_take_units() {
        assert_eq!(parse_seconds("--d", "10s").unwrap(), 10.0);
        assert_eq!(parse_seconds("--d", "10").unwrap(), 10.0);
        assert_eq!(parse_seconds("--d", "1.5s").unwrap(), 1.5);
        assert_eq!(parse_seconds("--d", "250ms").unwrap(), 0.25);
        assert_eq!(parse_seconds("--d", "2m").unwrap(), 120.0);
        assert!(parse_seconds("--d", "-1s").is_err());
    }

    fn m(throughput: f64, p50_ms: f64, p99_ms: f64) -> Option<Measured> {
        Some(Measured { throughput, p50_ms, p99_ms, errors: 0, raw: Value::Null })
    }

    #[test]
    fn the_table_and_the_closing_line_name_where_synod_is_fastest() {
        let rows = vec![
            Row { clients: 1, synod: m(1000.0, 1.0, 2.0), etcd: m(500.0, 2.0, 4.0) },
            Row { clients: 100, synod: m(30000.0, 3.0, 9.0), etcd: m(12000.0, 8.0, 20.0) },
            Row { clients: 1000, synod: m(25000.0, 30.0, 90.0), etcd: None },
        ];
        assert_eq!(best(&rows), Some((100, 2.5)), "rows without etcd figures cannot be compared");
        let t = table(&rows);
        assert!(
            t.contains(
                "    100 |     30000    3.00    9.00 |     12000    8.00   20.00 |   2.50x  0.38  0.45"
            ),
            "{t}"
        );
        assert!(t.contains("failed"), "{t}");
        let doc = plot(&rows, &parse(&args("--peer etcd")).unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(doc.matches("<polyline").count(), 2);
    }

    #[test]
    fn skeleton_lines_parse() {
        let line = "put-skeleton (QUIC): 6398 puts in 3 s, p50 0.46 ms, p99 0.80 ms\n";
        assert_eq!(parse_skeleton(line), Some((0.46, 0.80)));
        assert_eq!(parse_skeleton("put-skeleton: 10 puts in 3 s\n"), None);
        let line = "read-skeleton (QUIC): 29469 reads in 3 s, p50 0.10 ms, p99 0.23 ms\n";
        assert_eq!(parse_skeleton(line), Some((0.10, 0.23)));
        let floor = Floor { udp: (0.40, 0.61), quic: (0.53, 0.95), read: (0.10, 0.23) };
        assert!(floor.line().contains("UDP 0.40/0.61, QUIC 0.53/0.95;"), "{}", floor.line());
        assert!(floor.line().ends_with("nothing written): 0.10/0.23"), "{}", floor.line());
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
