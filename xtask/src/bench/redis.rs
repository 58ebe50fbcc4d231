//! `cargo xtask bench --peer redis [--clients 50] [--requests 1000000] [--pipelines 1,16]
//! [--data-size 100] [--keyspace 100000] [--tests set,get] [--quick]`: the same
//! `redis-benchmark` command line against synod's RESP listener, against a local,
//! durable `redis-server` (`appendonly yes`, `appendfsync always`, no RDB snapshots), and
//! against three such redis-servers, a primary and two replicas of it, on the same machine.
//!
//! One fresh three-replica synod cluster on loopback (fsync on, a RESP listener on each
//! replica; the benchmark talks to the leader's), one fresh `redis-server` on a free
//! loopback port in a directory of its own, and one fresh primary with two replicas
//! (`replicaof`, each with its own AOF fsynced on every write; Redis replicates
//! asynchronously, so the primary answers before its replicas have the write). The third
//! is the floor this machine sets for keeping three durable copies of every write: Redis's
//! own cost per copy, three times, on the same cores, with no agreement between the
//! copies. For each pipeline depth, each system runs the command in turn, the order
//! rotating between depths; after each run against the primary the benchmark waits until
//! both replicas have everything and says how long that took. Then a table, the lines
//! `synod/redis-fsync SET throughput at P=<p>: <R>x` and
//! `synod/redis-fsync-3copies SET throughput at P=<p>: <R>x` for each depth, and a JSON
//! file under `$CARGO_TARGET_DIR/bench/`. Everything started is stopped and removed, also
//! on error.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cluster::{build_release, Cluster};
use crate::target_dir;

/// The base port of this benchmark's synod cluster (replicas on +1..+3, metrics on
/// +101..+103), and of the replicas' RESP listeners (+1..+3): clear of the etcd
/// comparison (7300), the soak (7500) and the snapshot benchmark (7700).
const SYNOD_BASE_PORT: u16 = 7900;
const RESP_BASE_PORT: u16 = 7950;
const REPLICAS: u32 = 3;

const USAGE: &str = "cargo xtask bench --peer redis [--clients 50] [--requests 1000000] \
                     [--pipelines 1,16] [--data-size 100] [--keyspace 100000] [--tests set,get] [--quick]";

/// The same redis-benchmark command line against synod's RESP port (a fresh 3-replica
/// cluster) and against a local redis-server with appendfsync always (docs/PERFORMANCE.md).
//
// The flags as given; [`RedisArgs::options`] checks them.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask bench --peer redis", bin_name = "cargo xtask bench")]
pub(crate) struct RedisArgs {
    /// The system to compare synod with: redis.
    #[arg(long, value_name = "SYSTEM")]
    peer: String,
    /// redis-benchmark's connections (-c).
    #[arg(long, short = 'c', value_name = "N", default_value = "50")]
    clients: String,
    /// redis-benchmark's requests per test (-n) [default: 1000000, 200000 with --quick].
    #[arg(long, short = 'n', value_name = "N")]
    requests: Option<String>,
    /// The pipeline depths (-P) to measure, comma-separated; 1 is no pipelining.
    #[arg(long, short = 'P', value_name = "P,P,...", default_value = "1,16")]
    pipelines: String,
    /// The size of SET values in bytes (-d).
    #[arg(long, short = 'd', value_name = "BYTES", default_value = "100")]
    data_size: String,
    /// The number of distinct random keys (-r).
    #[arg(long, short = 'r', value_name = "N", default_value = "100000")]
    keyspace: String,
    /// redis-benchmark's tests (-t), comma-separated.
    #[arg(long, short = 't', value_name = "T,T,...", default_value = "set,get")]
    tests: String,
    /// Fewer requests (200000 per test, about a minute in all), unless --requests says otherwise.
    #[arg(long)]
    quick: bool,
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    pub(crate) clients: u32,
    pub(crate) requests: u64,
    pub(crate) pipelines: Vec<u32>,
    pub(crate) data_size: u32,
    pub(crate) keyspace: u64,
    pub(crate) tests: String,
    pub(crate) quick: bool,
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(flag: &str, what: &str, text: &str) -> Result<T> {
    text.trim()
        .parse::<T>()
        .ok()
        .filter(|v| *v > T::default())
        .with_context(|| format!("{flag} takes {what} (a positive number), not {text:?}"))
}

impl RedisArgs {
    /// What to run, or why these flags do not say.
    pub(crate) fn options(self) -> Result<Options> {
        let RedisArgs { peer, clients, requests, pipelines, data_size, keyspace, tests, quick } = self;
        if peer != "redis" {
            bail!("unknown peer {peer:?} here: this is the comparison with redis\nusage: {USAGE}");
        }
        let clients = positive("--clients", "redis-benchmark's connections", &clients)?;
        let requests = match requests {
            Some(r) => positive("--requests", "the requests per test", &r)?,
            None if quick => 200_000,
            None => 1_000_000,
        };
        let mut depths = Vec::new();
        for item in pipelines.split(',') {
            match item.trim().parse::<u32>() {
                Ok(p) if p > 0 => depths.push(p),
                _ => bail!(
                    "--pipelines takes a comma-separated list of positive pipeline depths, like 1,16; \
                     {item:?} in {pipelines:?} is not one"
                ),
            }
        }
        depths.sort_unstable();
        depths.dedup();
        let data_size = positive("--data-size", "the value size in bytes", &data_size)?;
        let keyspace = positive("--keyspace", "the number of random keys", &keyspace)?;
        let tests = tests.trim().to_ascii_lowercase();
        if tests.is_empty()
            || !tests.split(',').all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            bail!(
                "--tests takes redis-benchmark's test names, comma-separated (like set,get), not {tests:?}"
            );
        }
        Ok(Options { clients, requests, pipelines: depths, data_size, keyspace, tests, quick })
    }
}

/// Whether `args` ask for the comparison with redis (`--peer redis` or `--peer=redis`).
pub(crate) fn wanted(args: &[String]) -> bool {
    args.iter().any(|a| a == "--peer=redis") || args.windows(2).any(|w| w[0] == "--peer" && w[1] == "redis")
}

/// Parses the arguments of `cargo xtask bench --peer redis [...]`.
pub(crate) fn parse(args: &[String]) -> Result<Options> {
    crate::parse_args::<RedisArgs>("bench", args)?.options()
}

/// redis-benchmark's arguments for one run against `port` (the same for both systems
/// but for the port).
fn benchmark_args(opts: &Options, port: u16, pipeline: u32) -> Vec<String> {
    let mut a: Vec<String> = vec!["-h".into(), "127.0.0.1".into(), "-p".into(), port.to_string()];
    a.extend(["-c".into(), opts.clients.to_string(), "-n".into(), opts.requests.to_string()]);
    a.extend(["-t".into(), opts.tests.clone(), "-d".into(), opts.data_size.to_string()]);
    a.extend(["-r".into(), opts.keyspace.to_string()]);
    if pipeline > 1 {
        a.extend(["-P".into(), pipeline.to_string()]);
    }
    a.push("--csv".into());
    a
}

/// One test's figures from redis-benchmark's CSV.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    test: String,
    rps: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// One CSV line's fields, quotes removed (redis-benchmark quotes every field, and a test
/// name such as `MSET (10 keys)` has no comma, but a quoted comma is kept).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.trim().chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().expect("never empty").push(c),
        }
    }
    fields
}

/// redis-benchmark's `--csv` output: a header (`"test","rps","avg_latency_ms",...` in
/// Redis 7; none in Redis 6 and older, whose lines are `"SET","12345.67"`), then a line
/// per test. Lines that are not CSV (progress, warnings) are skipped.
fn parse_csv(text: &str) -> Result<Vec<Figures>> {
    let mut columns: Option<Vec<String>> = None;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('"')) {
        let fields = csv_fields(line);
        if fields.first().is_some_and(|f| f == "test") {
            columns = Some(fields);
            continue;
        }
        let at = |name: &str, default: Option<usize>| -> Option<f64> {
            let i = match &columns {
                Some(cols) => cols.iter().position(|c| c == name)?,
                None => default?,
            };
            fields.get(i)?.trim().parse().ok()
        };
        let rps = at("rps", Some(1)).with_context(|| format!("no requests per second in {line:?}"))?;
        out.push(Figures {
            test: fields[0].clone(),
            rps,
            p50_ms: at("p50_latency_ms", None),
            p99_ms: at("p99_latency_ms", None),
        });
    }
    if out.is_empty() {
        bail!("redis-benchmark printed no results: {:?}", text.trim());
    }
    Ok(out)
}

/// The system a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Synod,
    /// One redis-server, appendfsync always.
    Redis,
    /// A primary and two replicas, each appendfsync always.
    Redis3,
}

const SYSTEMS: [System; 3] = [System::Synod, System::Redis, System::Redis3];

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Synod => "synod",
            System::Redis => "redis-fsync",
            System::Redis3 => "redis-fsync-3copies",
        }
    }

    /// Its place in [`SYSTEMS`] and in a depth's figures.
    fn index(self) -> usize {
        self as usize
    }
}

/// Each system's figures at one depth, in the order of [`SYSTEMS`].
type Depth = (u32, [Vec<Figures>; 3]);

/// Every system at one test and pipeline depth (None: no figure).
#[derive(Debug, Clone, PartialEq)]
struct Row {
    test: String,
    pipeline: u32,
    synod: Option<Figures>,
    redis: Option<Figures>,
    redis3: Option<Figures>,
}

impl Row {
    /// synod's throughput over `peer`'s.
    fn ratio_to(&self, peer: &Option<Figures>) -> Option<f64> {
        let (s, r) = (self.synod.as_ref()?, peer.as_ref()?);
        (r.rps > 0.0).then(|| s.rps / r.rps)
    }

    /// synod over the single redis-server.
    fn ratio(&self) -> Option<f64> {
        self.ratio_to(&self.redis)
    }

    /// synod over the primary with two replicas.
    fn ratio3(&self) -> Option<f64> {
        self.ratio_to(&self.redis3)
    }
}

/// Joins the systems' figures at each depth into rows, in the order of the tests.
fn rows(results: &[Depth]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (pipeline, figures) in results {
        let mut names: Vec<&str> = Vec::new();
        for f in figures.iter().flatten() {
            if !names.contains(&f.test.as_str()) {
                names.push(&f.test);
            }
        }
        for name in names {
            let pick = |v: &[Figures]| v.iter().find(|f| f.test == name).cloned();
            rows.push(Row {
                test: name.to_owned(),
                pipeline: *pipeline,
                synod: pick(&figures[0]),
                redis: pick(&figures[1]),
                redis3: pick(&figures[2]),
            });
        }
    }
    rows
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "test  |  P |  synod req/s  p50 ms | redis-fsync req/s  p50 ms | 3 copies req/s  p50 ms | synod/redis | synod/3 copies"
    );
    let _ = writeln!(
        s,
        "------+----+----------------------+---------------------------+------------------------+-------------+---------------"
    );
    let cell = |f: &Option<Figures>, w: usize| match f {
        Some(f) => {
            let p50 = f.p50_ms.map_or("-".to_owned(), |p| format!("{p:.3}"));
            format!("{:>w$.0} {p50:>7}", f.rps)
        }
        None => format!("{:>w$} {:>7}", "failed", "-"),
    };
    let x = |r: Option<f64>| r.map_or("-".to_owned(), |x| format!("{x:.2}x"));
    for r in rows {
        let _ = writeln!(
            s,
            "{:<5} | {:>2} | {} | {} | {} | {:>11} | {:>14}",
            r.test,
            r.pipeline,
            cell(&r.synod, 12),
            cell(&r.redis, 17),
            cell(&r.redis3, 14),
            x(r.ratio()),
            x(r.ratio3()),
        );
    }
    s
}

/// `synod/redis-fsync SET throughput at P=<p>: <R>x` and
/// `synod/redis-fsync-3copies SET throughput at P=<p>: <R>x` for each depth.
fn closing_lines(rows: &[Row]) -> Vec<String> {
    let mut lines = Vec::new();
    for r in rows.iter().filter(|r| r.test.eq_ignore_ascii_case("SET")) {
        for (peer, ratio) in [("redis-fsync", r.ratio()), ("redis-fsync-3copies", r.ratio3())] {
            lines.push(match ratio {
                Some(x) => format!("synod/{peer} SET throughput at P={}: {x:.2}x", r.pipeline),
                None => format!("synod/{peer} SET throughput at P={}: no figures for both", r.pipeline),
            });
        }
    }
    lines
}

/// `redis-server --version` and `redis-benchmark --version`, installing Debian's
/// redis-server and redis-tools first if either is missing.
fn ensure_installed() -> Result<String> {
    let version = |bin: &str| -> Option<String> {
        let out = Command::new(bin).arg("--version").stderr(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    if version("redis-server").is_none() || version("redis-benchmark").is_none() {
        eprintln!(
            "bench: redis-server or redis-benchmark is not installed; installing Debian's redis-server \
             and redis-tools with apt-get"
        );
        crate::apt_install("redis-tools")?;
        crate::apt_install("redis-server")?;
        // Debian's package may start a system redis-server on 6379; this benchmark uses a
        // port of its own and leaves that one alone.
    }
    version("redis-benchmark")
        .context("redis-benchmark is still not runnable after installing redis-tools")?;
    version("redis-server").context("redis-server is still not runnable after installing redis-server")
}

/// A free loopback port (bound and released: a small race with other programs, reported
/// clearly if lost).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `SET synod-bench-probe 1`, answered `+OK` once the listener is up and, for synod, its
/// session registered with a leader.
const PROBE_SET: (&str, &[u8], &[u8]) =
    ("SET", b"*3\r\n$3\r\nSET\r\n$17\r\nsynod-bench-probe\r\n$1\r\n1\r\n", b"+OK");
/// `PING`, for a Redis replica (which refuses writes).
const PROBE_PING: (&str, &[u8], &[u8]) = ("PING", b"*1\r\n$4\r\nPING\r\n", b"+PONG");

/// Sends `request` and whether the answer starts with `answer`.
fn probe(port: u16, request: &[u8], answer: &[u8]) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    if conn.write_all(request).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(conn.read(&mut buf), Ok(n) if buf[..n].starts_with(answer))
}

fn await_probe(port: u16, what: &str, timeout: Duration, logs: &Path) -> Result<()> {
    await_answer(port, what, PROBE_SET, timeout, logs)
}

fn await_answer(
    port: u16,
    what: &str,
    (name, request, answer): (&str, &[u8], &[u8]),
    timeout: Duration,
    logs: &Path,
) -> Result<()> {
    let until = Instant::now() + timeout;
    while !probe(port, request, answer) {
        if Instant::now() > until {
            bail!("{what} on port {port} did not answer {name} within {timeout:?}; see {}", logs.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The `INFO replication` text of the redis-server on `port`, or `None` if it does not answer.
fn info_replication(port: u16) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // A bulk string: `$<len>\r\n<len bytes>\r\n`.
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let len: usize = std::str::from_utf8(buf.get(1..end)?).ok()?.parse().ok()?;
            if buf.len() >= end + 2 + len {
                return Some(String::from_utf8_lossy(&buf[end + 2..end + 2 + len]).into_owned());
            }
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// From a primary's `INFO replication`: its replication offset, and each replica's state
/// and offset (`slave0:ip=...,port=...,state=online,offset=123,lag=0`).
fn replication_offsets(info: &str) -> (Option<u64>, Vec<(String, u64)>) {
    let mut primary = None;
    let mut replicas = Vec::new();
    for line in info.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("master_repl_offset:") {
            primary = v.parse().ok();
        } else if line.starts_with("slave") && line.contains(":ip=") {
            let field = |name: &str| {
                line.split([':', ','])
                    .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    .map(str::to_owned)
            };
            let state = field("state").unwrap_or_default();
            let offset = field("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            replicas.push((state, offset));
        }
    }
    (primary, replicas)
}

/// Whether `replicas` replicas are online and hold everything the primary has sent.
fn caught_up(info: &str, replicas: usize) -> bool {
    let (primary, got) = replication_offsets(info);
    primary
        .is_some_and(|p| got.len() == replicas && got.iter().all(|(state, o)| state == "online" && *o >= p))
}

/// Everything the benchmark starts, and where.
struct Lab {
    synod: Cluster,
    redis_dir: PathBuf,
    /// The primary (`primary/`) and its two replicas (`replica-1/`, `replica-2/`).
    redis3_dir: PathBuf,
    raw: PathBuf,
}

/// The servers of the three-copy Redis: the primary first.
const REDIS3: [&str; 3] = ["primary", "replica-1", "replica-2"];

impl Lab {
    fn redis_pid_file(&self) -> PathBuf {
        self.redis_dir.join("redis-server.pid")
    }

    fn redis3_pid_file(&self, server: &str) -> PathBuf {
        self.redis3_dir.join(format!("{server}.pid"))
    }

    fn bench_pid_file(&self) -> PathBuf {
        self.raw.join("redis-benchmark.pid")
    }

    /// The synod cluster with a RESP listener on each replica (`RESP_BASE_PORT + i`).
    fn start_synod(&self) -> Result<u16> {
        let cluster = &self.synod;
        let t = Instant::now();
        cluster.create_with(SYNOD_BASE_PORT, true)?;
        for i in 1..=cluster.replicas {
            let path = cluster.node_file(i);
            let mut text = std::fs::read_to_string(&path)?;
            let _ = write!(
                text,
                "\n[resp]\nlisten = \"127.0.0.1:{}\"\nclient = \"client.toml\"\n",
                RESP_BASE_PORT + i as u16
            );
            std::fs::write(&path, text)?;
        }
        cluster.start_all()?;
        let leader = cluster.await_all_up(Duration::from_secs(30))?;
        let port = RESP_BASE_PORT + leader as u16;
        await_probe(port, "synod's RESP listener", Duration::from_secs(30), &cluster.dir)?;
        eprintln!(
            "bench: synod up in {:.1} s, replica {leader} leads, its RESP listener on 127.0.0.1:{port}",
            t.elapsed().as_secs_f64()
        );
        Ok(port)
    }

    /// A fresh redis-server on a free port, every write fsynced before it is answered.
    fn start_redis(&self) -> Result<u16> {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&self.redis_dir);
        std::fs::create_dir_all(&self.redis_dir)?;
        let port = free_port()?;
        spawn_redis_server(&self.redis_dir, port, None, &self.redis_pid_file())?;
        await_probe(port, "redis-server", Duration::from_secs(20), &self.redis_dir.join("redis-server.log"))?;
        eprintln!("bench: redis-server up in {:.1} s on 127.0.0.1:{port}", t.elapsed().as_secs_f64());
        Ok(port)
    }

    /// A fresh primary and two replicas of it, each on a free port with its own AOF
    /// fsynced on every write; returns the primary's port once both replicas are online.
    fn start_redis3(&self) -> Result<u16> {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&self.redis3_dir);
        let mut primary = 0;
        for (i, server) in REDIS3.iter().enumerate() {
            let dir = self.redis3_dir.join(server);
            std::fs::create_dir_all(&dir)?;
            let port = free_port()?;
            let of = (i > 0).then_some(primary);
            spawn_redis_server(&dir, port, of, &self.redis3_pid_file(server))?;
            let probe = if i == 0 { PROBE_SET } else { PROBE_PING };
            await_answer(port, server, probe, Duration::from_secs(20), &dir.join("redis-server.log"))?;
            if i == 0 {
                primary = port;
            }
        }
        self.await_replicas(primary, Duration::from_secs(30))?;
        eprintln!(
            "bench: redis-server primary with two replicas up in {:.1} s, the primary on 127.0.0.1:{primary}",
            t.elapsed().as_secs_f64()
        );
        Ok(primary)
    }

    /// Waits until both replicas of the primary on `port` are online and hold everything
    /// it sent; returns how long that took.
    fn await_replicas(&self, port: u16, timeout: Duration) -> Result<Duration> {
        let t = Instant::now();
        loop {
            let info = info_replication(port);
            if info.as_deref().is_some_and(|i| caught_up(i, REDIS3.len() - 1)) {
                return Ok(t.elapsed());
            }
            if t.elapsed() > timeout {
                bail!(
                    "the replicas of the redis-server primary on port {port} did not catch up within \
                     {timeout:?}: {}; logs in {}",
                    info.unwrap_or_else(|| "no answer to INFO".into()).replace("\r\n", " "),
                    self.redis3_dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops and removes both systems (what is not running is skipped).
    fn stop(&self) {
        super::stop_pid_file(&self.bench_pid_file(), "redis-benchmark");
        for i in 1..=self.synod.replicas {
            super::stop_pid_file(&self.synod.pid_file(i), "synod");
        }
        super::stop_pid_file(&self.redis_pid_file(), "redis-server");
        for server in REDIS3 {
            super::stop_pid_file(&self.redis3_pid_file(server), "redis-server");
        }
    }

    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.synod.dir);
        let _ = std::fs::remove_dir_all(&self.redis_dir);
        let _ = std::fs::remove_dir_all(&self.redis3_dir);
    }

    /// Runs redis-benchmark against `port`, keeping its output as `<raw>/<tag>.csv`.
    fn benchmark(&self, args: &[String], tag: &str, timeout: Duration) -> Result<Vec<Figures>> {
        let csv = self.raw.join(format!("{tag}.csv"));
        let err = self.raw.join(format!("{tag}.stderr"));
        let mut child = Command::new("redis-benchmark")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&csv)?)
            .stderr(std::fs::File::create(&err)?)
            .spawn()
            .context("starting redis-benchmark")?;
        std::fs::write(self.bench_pid_file(), child.id().to_string())?;
        let until = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(self.bench_pid_file());
                bail!(
                    "redis-benchmark did not finish within {timeout:?}; its output is in {}",
                    csv.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = std::fs::remove_file(self.bench_pid_file());
        let text = std::fs::read_to_string(&csv)?;
        if !status.success() {
            let stderr = std::fs::read_to_string(&err).unwrap_or_default();
            bail!("redis-benchmark failed ({status}): {}", stderr.trim());
        }
        parse_csv(&text)
    }
}

/// Starts `redis-server` on `port` in `dir` (its AOF and log there), every write fsynced
/// before it is answered; a replica of the primary on `replica_of` if given.
fn spawn_redis_server(dir: &Path, port: u16, replica_of: Option<u16>, pid_file: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(dir.join("redis-server.log"))?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
        .args(["--daemonize", "no", "--protected-mode", "yes"]);
    if let Some(primary) = replica_of {
        cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting redis-server")?;
    std::fs::write(pid_file, child.id().to_string())?;
    Ok(())
}

/// A detached shell that kills what the benchmark started and removes its files once this
/// process is gone, however it ended; after a normal end it finds nothing to do.
fn watchdog(lab: &Lab) -> Result<()> {
    let q = crate::shell_quote;
    let mut kills = String::new();
    let _ = write!(kills, "k {} redis-benchmark; ", q(&lab.bench_pid_file()));
    for i in 1..=lab.synod.replicas {
        let _ = write!(kills, "k {} synod; ", q(&lab.synod.pid_file(i)));
    }
    let _ = write!(kills, "k {} redis-server; ", q(&lab.redis_pid_file()));
    for server in REDIS3 {
        let _ = write!(kills, "k {} redis-server; ", q(&lab.redis3_pid_file(server)));
    }
    let script = format!(
        "k() {{ p=$(cat \"$1\" 2>/dev/null) || return 0; \
         [ \"$(cat /proc/$p/comm 2>/dev/null)\" = \"$2\" ] && kill -KILL $p; rm -f \"$1\"; }}; \
         {kills}sleep 0.2; rm -rf {} {} {}",
        q(&lab.synod.dir),
        q(&lab.redis_dir),
        q(&lab.redis3_dir),
    );
    crate::spawn_watchdog("bench", &script).context("starting the benchmark's watchdog")?;
    Ok(())
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let command = format!("cargo xtask bench {}", args.join(" "));
    eprintln!("bench: building synod (release)");
    build_release(&["synod"])?;
    let redis_version = ensure_installed()?;
    let out = target_dir().join("bench");
    let lab = Lab {
        synod: Cluster { dir: out.join("redis-compare-synod"), replicas: REPLICAS },
        redis_dir: out.join("redis-compare-server"),
        redis3_dir: out.join("redis-compare-3copies"),
        raw: out.join("redis-compare"),
    };
    crate::wait_for_earlier_watchdog("bench", Duration::from_secs(30))?;
    lab.stop();
    lab.remove();
    let _ = std::fs::remove_dir_all(&lab.raw);
    std::fs::create_dir_all(&lab.raw)?;
    watchdog(&lab)?;

    let began = Instant::now();
    let result = compare(&lab, &opts);
    let t = Instant::now();
    lab.stop();
    let Compared { results, synod_port, redis_port, redis3_port, catch_up } = match result {
        Ok(r) => {
            lab.remove();
            r
        }
        Err(e) => {
            // The logs go with the directories: keep them beside the CSVs.
            let mut dirs = vec![(lab.synod.dir.clone(), "node-", String::new())];
            dirs.push((lab.redis_dir.clone(), "redis-server", String::new()));
            for server in REDIS3 {
                dirs.push((lab.redis3_dir.join(server), "redis-server", format!("3copies-{server}-")));
            }
            for (dir, prefix, tag) in dirs {
                for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with(prefix) && name.ends_with(".log") {
                        let _ = std::fs::copy(entry.path(), lab.raw.join(format!("{tag}{name}")));
                    }
                }
            }
            lab.remove();
            return Err(e.context(format!("logs kept in {}", lab.raw.display())));
        }
    };
    eprintln!("bench: everything stopped in {:.1} s", t.elapsed().as_secs_f64());
    let wall = began.elapsed().as_secs_f64();

    let rows = rows(&results);
    let example =
        format!("redis-benchmark {}", benchmark_args(&opts, 0, 1).join(" ")).replace("-p 0 ", "-p PORT ");
    println!("{example} [-P <p>]");
    print!("{}", table(&rows));
    let lines = closing_lines(&rows);
    for (p, waited) in &catch_up {
        println!(
            "redis-fsync-3copies at P={p}: the replicas had every write {:.0} ms after redis-benchmark ended",
            waited.as_secs_f64() * 1000.0
        );
    }
    for l in &lines {
        println!("{l}");
    }
    let date = super::peer::utc_date(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let report = json!({
        "command": command,
        "date": date,
        "machine": super::peer::machine(),
        "synod": {"revision": super::peer::git_revision(), "replicas": REPLICAS, "fsync": true, "resp_port": synod_port},
        "redis": {"version": redis_version, "appendonly": "yes", "appendfsync": "always", "save": "", "port": redis_port},
        "redis_3copies": {
            "version": redis_version, "servers": "a primary and two replicas (replicaof), replication asynchronous",
            "appendonly": "yes", "appendfsync": "always", "save": "", "port": redis3_port,
            "replicas_caught_up_ms": catch_up.iter().map(|(p, d)| json!({"pipeline": p, "ms": d.as_secs_f64() * 1000.0})).collect::<Vec<_>>(),
        },
        "settings": {
            "clients": opts.clients, "requests": opts.requests, "pipelines": opts.pipelines,
            "data_size": opts.data_size, "keyspace": opts.keyspace, "tests": opts.tests, "quick": opts.quick,
            "benchmark": example, "order": "rotating: synod, redis-fsync, redis-fsync-3copies at the first depth, then each depth starts one later",
        },
        "results": rows.iter().map(|r| json!({
            "test": r.test, "pipeline": r.pipeline,
            "synod": r.synod.as_ref().map(figures_json), "redis_fsync": r.redis.as_ref().map(figures_json),
            "redis_fsync_3copies": r.redis3.as_ref().map(figures_json),
            "synod_over_redis": r.ratio(), "synod_over_redis_3copies": r.ratio3(),
        })).collect::<Vec<_>>(),
        "lines": lines,
        "wall_seconds": wall,
    });
    let json_path = out.join("redis-compare.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    println!("results: {} (redis-benchmark's CSVs in {})", json_path.display(), lab.raw.display());
    println!(
        "bench: {} runs in {wall:.0} s, start and stop included (the build not)",
        opts.pipelines.len() * SYSTEMS.len()
    );
    Ok(())
}

fn figures_json(f: &Figures) -> Value {
    json!({"rps": f.rps, "p50_ms": f.p50_ms, "p99_ms": f.p99_ms})
}

/// Lets the machine quieten between runs: the dirty pages an earlier run left (its
/// system's files, the replicas' copies) are written back before the next system starts,
/// so that no run pays for another's writeback.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
}

/// What [`compare`] measured, and where.
struct Compared {
    results: Vec<Depth>,
    synod_port: u16,
    redis_port: u16,
    redis3_port: u16,
    /// Per depth: how long after redis-benchmark ended the primary's replicas had every write.
    catch_up: Vec<(u32, Duration)>,
}

/// Starts the systems and runs every depth against each, rotating who goes first.
fn compare(lab: &Lab, opts: &Options) -> Result<Compared> {
    let redis_port = lab.start_redis()?;
    let redis3_port = lab.start_redis3()?;
    let synod_port = lab.start_synod()?;
    eprintln!(
        "bench: synod (3 replicas, fsync on) against redis-server (appendfsync always) and a redis-server \
         primary with two replicas (each appendfsync always); -c {} -n {} -t {} -d {} -r {}; P {:?}",
        opts.clients, opts.requests, opts.tests, opts.data_size, opts.keyspace, opts.pipelines
    );
    // Generous: a run that has not finished by then (200 requests/s) is stuck.
    let timeout = Duration::from_secs(120 + opts.requests / 200);
    let total = opts.pipelines.len() * SYSTEMS.len();
    let began = Instant::now();
    let mut results = Vec::new();
    let mut catch_up = Vec::new();
    for (k, &p) in opts.pipelines.iter().enumerate() {
        let mut order = SYSTEMS;
        order.rotate_left(k % SYSTEMS.len());
        let mut figures: [Vec<Figures>; 3] = Default::default();
        for (j, system) in order.into_iter().enumerate() {
            eprintln!(
                "bench: [{}/{total}] {}, P={p} ({:.0} s since start)",
                SYSTEMS.len() * k + j + 1,
                system.name(),
                began.elapsed().as_secs_f64()
            );
            let port = match system {
                System::Synod => synod_port,
                System::Redis => redis_port,
                System::Redis3 => redis3_port,
            };
            let tag = format!("{}-P{p}", system.name());
            settle();
            figures[system.index()] = lab
                .benchmark(&benchmark_args(opts, port, p), &tag, timeout)
                .with_context(|| format!("{} at P={p}", system.name()))?;
            if system == System::Redis3 {
                // Asynchronous replication: the replicas' share of the work may still be under way.
                let waited = lab.await_replicas(redis3_port, Duration::from_secs(120))?;
                catch_up.push((p, waited));
            }
        }
        results.push((p, figures));
    }
    Ok(Compared { results, synod_port, redis_port, redis3_port, catch_up })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn err(s: &str) -> String {
        format!("{:#}", parse(&args(s)).unwrap_err())
    }

    #[test]
    fn defaults_quick_and_flags() {
        let o = parse(&args("--peer redis")).unwrap();
        assert_eq!(
            (o.clients, o.requests, o.pipelines.clone(), o.data_size, o.keyspace, o.tests.as_str()),
            (50, 1_000_000, vec![1, 16], 100, 100_000, "set,get")
        );
        let q = parse(&args("--peer redis --quick")).unwrap();
        assert_eq!((q.requests, q.quick), (200_000, true));
        let o = parse(&args("--quick --peer=redis -c 10 -n 2000 -P 32,1,32 -d 8 -r 10 -t SET,incr")).unwrap();
        assert_eq!(
            (o.clients, o.requests, o.pipelines, o.data_size, o.keyspace, o.tests.as_str()),
            (10, 2000, vec![1, 32], 8, 10, "set,incr"),
            "explicit --requests wins over --quick"
        );
        let o =
            parse(&args("--peer redis --clients 5 --requests 7 --pipelines 4 --data-size 3 --keyspace 9"))
                .unwrap();
        assert_eq!((o.clients, o.requests, o.pipelines, o.data_size, o.keyspace), (5, 7, vec![4], 3, 9));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(err("--peer redis -P 1,x").contains("\"x\" in \"1,x\" is not one"));
        assert!(err("--peer redis -P 0").contains("--pipelines takes"));
        assert!(err("--peer redis -c 0").contains("--clients takes"));
        assert!(err("--peer redis -n lots").contains("--requests takes"));
        assert!(err("--peer redis -d 0").contains("--data-size"));
        assert!(err("--peer redis -t set;flushall").contains("--tests takes"));
        assert!(err("--peer redis --duration 5s").contains("unexpected argument '--duration'"));
        assert!(err("--peer etcd").contains("this is the comparison with redis"));
    }

    #[test]
    fn only_peer_redis_comes_here() {
        assert!(wanted(&args("--peer redis --quick")));
        assert!(wanted(&args("--quick --peer=redis")));
        assert!(!wanted(&args("--peer etcd --quick")));
        assert!(!wanted(&args("snapshots")));
        assert!(!wanted(&args("--clients redis")));
    }

    #[test]
    fn both_systems_get_the_same_command_line() {
        let o = parse(&args("--peer redis -n 1000")).unwrap();
        let a = benchmark_args(&o, 7951, 1).join(" ");
        assert_eq!(a, "-h 127.0.0.1 -p 7951 -c 50 -n 1000 -t set,get -d 100 -r 100000 --csv");
        let b = benchmark_args(&o, 6379, 16).join(" ");
        assert_eq!(b, "-h 127.0.0.1 -p 6379 -c 50 -n 1000 -t set,get -d 100 -r 100000 -P 16 --csv");
    }

    #[test]
    fn csv_of_redis_7_parses_with_latencies() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"SET\",\"41666.67\",\"1.151\",\"0.240\",\"1.095\",\"1.711\",\"2.207\",\"5.063\"\n\
                    \"GET\",\"90909.09\",\"0.512\",\"0.128\",\"0.495\",\"0.775\",\"0.967\",\"1.887\"\n";
        let f = parse_csv(text).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(
            f[0],
            Figures { test: "SET".into(), rps: 41666.67, p50_ms: Some(1.095), p99_ms: Some(2.207) }
        );
        assert_eq!((f[1].test.as_str(), f[1].rps, f[1].p50_ms), ("GET", 90909.09, Some(0.495)));
    }

    #[test]
    fn csv_without_a_header_and_with_noise_parses() {
        let text = "WARNING: could not fetch server CONFIG\n\"SET\",\"1234.5\"\n\"MSET (10 keys)\",\"99\"\n";
        let f = parse_csv(text).unwrap();
        assert_eq!(f[0], Figures { test: "SET".into(), rps: 1234.5, p50_ms: None, p99_ms: None });
        assert_eq!((f[1].test.as_str(), f[1].rps), ("MSET (10 keys)", 99.0));
        assert_eq!(csv_fields("\"a,b\",\"c\""), ["a,b", "c"]);
        assert!(parse_csv("").unwrap_err().to_string().contains("no results"));
        assert!(parse_csv("\"SET\",\"fast\"\n").unwrap_err().to_string().contains("no requests per second"));
    }

    fn fig(test: &str, rps: f64, p50: Option<f64>) -> Figures {
        Figures { test: test.into(), rps, p50_ms: p50, p99_ms: None }
    }

    #[test]
    fn the_table_and_the_closing_lines() {
        let results: Vec<Depth> = vec![
            (
                1,
                [
                    vec![fig("SET", 30000.0, Some(1.5)), fig("GET", 60000.0, Some(0.7))],
                    vec![fig("SET", 10000.0, Some(4.9)), fig("GET", 120000.0, Some(0.3))],
                    vec![fig("SET", 20000.0, Some(2.0)), fig("GET", 100000.0, Some(0.4))],
                ],
            ),
            (16, [vec![fig("SET", 200000.0, None)], vec![], vec![fig("SET", 400000.0, None)]]),
        ];
        let rows = rows(&results);
        assert_eq!(rows.len(), 3);
        let t = table(&rows);
        assert!(
            t.contains(
                "SET   |  1 |        30000   1.500 |             10000   4.900 |          20000   2.000 |       3.00x |          1.50x"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "GET   |  1 |        60000   0.700 |            120000   0.300 |         100000   0.400 |       0.50x |          0.60x"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "SET   | 16 |       200000       - |            failed       - |         400000       - |           - |          0.50x"
            ),
            "{t}"
        );
        assert_eq!(
            closing_lines(&rows),
            [
                "synod/redis-fsync SET throughput at P=1: 3.00x",
                "synod/redis-fsync-3copies SET throughput at P=1: 1.50x",
                "synod/redis-fsync SET throughput at P=16: no figures for both",
                "synod/redis-fsync-3copies SET throughput at P=16: 0.50x",
            ]
        );
    }

    #[test]
    fn a_primarys_replication_info_says_when_its_replicas_have_everything() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=7002,state=online,offset=1200,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=7003,state=online,offset=1100,lag=1\r\n\
                    master_failover_state:no-failover\r\nmaster_repl_offset:1200\r\n";
        assert_eq!(
            replication_offsets(info),
            (Some(1200), vec![("online".into(), 1200), ("online".into(), 1100)])
        );
        assert!(!caught_up(info, 2), "slave1 is 100 bytes behind");
        assert!(caught_up(&info.replace("offset=1100", "offset=1200"), 2));
        assert!(!caught_up(&info.replace("state=online,offset=1100", "state=wait_bgsave,offset=1200"), 2));
        assert!(!caught_up(info, 3), "a replica is missing");
        assert!(!caught_up("# Replication\r\nrole:master\r\n", 0), "no offset");
    }
}
