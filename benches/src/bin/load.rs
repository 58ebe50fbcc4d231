//! The load generator: closed-loop (or fixed-rate) clients against a synod
//! cluster or an etcd cluster, with HDR latency histograms, a progress bar,
//! JSON results, and an optional check that every acknowledged write can be
//! read back.
//!
//! `load --help` prints the flags ([`Args`]).
//! Both backends see the same keys, values, put/get mix and measurement.
//! `--reads PERCENT` (or `--puts PERCENT`, its complement) sets the mix;
//! `--read-mode` says how gets are served: `linearizable` (the default; a
//! read outside the log, by ReadIndex), `lease` (served as linearizable
//! today), `stale` (what the connected replica applied) or `log` (a get
//! through the replicated log, as before reads outside the log existed).
//! etcd's gets are linearizable by default and serializable for `stale`;
//! it has no `log` mode. `--reads-from spread` has synod connection i
//! read from replica i mod n, on a connection of its own (followers serve
//! linearizable reads by asking the leader for a read index), instead of
//! on the session's connection at the leader. Reads and writes are measured apart as well as
//! together: the summary line gives each one's count, ops/s, p50 and p99.
//! `--sessions` is the number of connections the clients share round-robin:
//! synod sessions (one QUIC connection and one pipelined stream each), or
//! etcd `Client`s (one HTTP/2 connection to each endpoint each, requests
//! balanced over the endpoints, as etcd's own client does).
//! `--verify` writes every put to a key of its own and reads all of them
//! back at the end. `--kill-file` names a file where another process writes
//! the Unix time in milliseconds at which it killed a replica; the report
//! then gives the failover gap: from the kill to the next completed operation.
//! `--fill` writes every key of `--keys` once, in order, spread over the
//! clients, and stops when all are written (a preload; `--duration` and
//! `--warmup` are then ignored). `--samples FILE` writes one line per
//! measured operation, `<start, Unix µs> <latency µs>`, for plots over time.
//! `--threads` sets the generator's own runtime: 0 (the default) runs every
//! client on one current-thread tokio runtime, N a multi-thread runtime of N
//! workers. On the 2-core machines we measure on, one thread did twice the
//! operations per second of two workers at 1000 clients (docs/PERFORMANCE.md),
//! since each wake-up across workers costs a cross-CPU interrupt.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use synod_client::{Client, ReadMode, ReadsFrom};

/// Which system the clients talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// A synod cluster, through `synod_client`.
    Synod,
    /// An etcd cluster, through the `etcd-client` crate (needs the `etcd` feature).
    Etcd,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Synod => "synod",
            Backend::Etcd => "etcd",
        }
    }
}

/// Where synod's gets are served (`--reads-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReadsFromArg {
    /// On the session's connection, at the leader.
    Leader,
    /// Connection i on a connection of its own to replica i mod n.
    Spread,
}

/// Closed-loop (or fixed-rate) clients against a synod or an etcd cluster.
#[derive(Debug, Clone, Parser)]
#[command(name = "load")]
struct Args {
    /// The system under test.
    #[arg(long, value_enum, default_value_t = Backend::Synod)]
    backend: Backend,
    /// The synod client file (`cargo xtask cluster up` writes one); needed for `--backend synod`.
    #[arg(long, env = "SYNOD_CLIENT", required_if_eq("backend", "synod"))]
    client_config: Option<PathBuf>,
    /// etcd's client URLs, comma-separated, for `--backend etcd`.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// Concurrent clients, each with one request outstanding.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Connections the clients share round-robin.
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Percentage of operations that are puts (the rest are gets).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(0..=100))]
    puts: u64,
    /// Percentage of operations that are gets (the rest are puts): the complement of --puts.
    #[arg(long, conflicts_with = "puts", value_parser = clap::value_parser!(u64).range(0..=100))]
    reads: Option<u64>,
    /// How gets are served: linearizable (outside the log, ReadIndex), lease, stale, or log (through the log).
    #[arg(long, default_value_t = ReadMode::Linearizable)]
    read_mode: ReadMode,
    /// Where synod serves linearizable and stale gets: on each connection's
    /// session, at the leader, or spread, connection i reading from replica i mod n.
    #[arg(long, value_enum, default_value_t = ReadsFromArg::Leader)]
    reads_from: ReadsFromArg,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Operations per second across all clients (default: closed loop, as fast as answered).
    #[arg(long)]
    rate: Option<f64>,
    /// Write every put to a key of its own and read them all back at the end.
    #[arg(long)]
    verify: bool,
    /// A file where another process writes the Unix time in ms at which it killed a replica.
    #[arg(long)]
    kill_file: Option<PathBuf>,
    /// Where to write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// 0: every client on one current-thread runtime; N: a multi-thread runtime of N workers.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Put every key of --keys once, in order, then stop (a preload; ignores --duration and --warmup).
    #[arg(long, conflicts_with_all = ["verify", "rate"])]
    fill: bool,
    /// Where to write each measured operation as a line `<start, Unix µs> <latency µs>`.
    #[arg(long)]
    samples: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    checked(Args::parse())
}

/// The flags as given, with `--reads` turned into `--puts` and the combinations checked.
fn checked(mut args: Args) -> Result<Args> {
    if args.clients == 0 || args.sessions == 0 {
        bail!("--clients and --sessions must be at least 1");
    }
    args.sessions = args.sessions.min(args.clients);
    if let Some(reads) = args.reads {
        args.puts = 100 - reads;
    }
    if args.fill {
        args.warmup = 0.0;
        args.puts = 100;
    }
    if args.backend == Backend::Etcd && args.read_mode == ReadMode::ThroughLog && args.puts < 100 {
        bail!("--read-mode log is synod's: etcd has no reads through its log (linearizable is its default)");
    }
    if args.backend == Backend::Etcd && args.endpoints.iter().all(|e| e.is_empty()) {
        bail!("--endpoints needs at least one URL for --backend etcd");
    }
    if args.backend == Backend::Etcd && !cfg!(feature = "etcd") {
        bail!(
            "this load generator was built without the etcd backend: build it with \
             `--features synod-bench/etcd` (`cargo xtask bench --peer etcd` does)"
        );
    }
    Ok(args)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

struct Shared {
    stop: AtomicBool,
    /// The next key `--fill` writes.
    fill_next: AtomicU64,
    /// `Instant` zero of the samples' clock, and the Unix µs it stands for.
    epoch: (Instant, u64),
    measuring: AtomicBool,
    done: AtomicU64,
    errors: AtomicU64,
}

/// Latencies and the count of one kind of operation, measured.
struct Measure {
    hist: Histogram<u64>,
    ops: u64,
}

impl Measure {
    fn new() -> Measure {
        Measure { hist: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"), ops: 0 }
    }

    fn record(&mut self, micros: u64) {
        let _ = self.hist.record(micros);
        self.ops += 1;
    }

    fn add(&mut self, other: &Measure) -> Result<()> {
        self.hist.add(&other.hist)?;
        self.ops += other.ops;
        Ok(())
    }

    /// Operations per second over `seconds`, and the p50, p99 and p99.9 in ms.
    fn figures(&self, seconds: f64) -> Figures {
        let ms = |q| self.hist.value_at_quantile(q) as f64 / 1000.0;
        Figures {
            ops: self.ops,
            throughput: self.ops as f64 / seconds.max(1e-9),
            p50: ms(0.50),
            p99: ms(0.99),
            p999: ms(0.999),
        }
    }
}

/// What the report says of one kind of operation (or of all).
struct Figures {
    ops: u64,
    throughput: f64,
    p50: f64,
    p99: f64,
    p999: f64,
}

impl Figures {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ops": self.ops, "throughput": self.throughput,
            "p50_ms": self.p50, "p99_ms": self.p99, "p999_ms": self.p999,
        })
    }

    /// `N ops, X ops/s, p50 A ms, p99 B ms`.
    fn line(&self) -> String {
        format!(
            "{} ops, {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms",
            self.ops, self.throughput, self.p50, self.p99
        )
    }
}

struct TaskResult {
    reads: Measure,
    writes: Measure,
    completions_ms: Vec<u64>,
    written: Vec<(Vec<u8>, Vec<u8>)>,
    /// (start, Unix µs; latency µs) of each measured operation, with `--samples`.
    samples: Vec<(u64, u64)>,
}

/// One connection to the system under test; clones share it.
#[derive(Clone)]
enum Conn {
    Synod(Client),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd_client::KvClient>),
}

impl Conn {
    /// The `index`th connection.
    async fn connect(args: &Args, index: usize) -> Result<Conn> {
        match args.backend {
            Backend::Synod => {
                let path = args.client_config.as_deref().context("--client-config FILE is required")?;
                let mut config = synod_bench::client_config(path)?;
                if args.reads_from == ReadsFromArg::Spread {
                    // Connection i reads from the i-th replica (mod n): an even spread.
                    let book = config.replicas();
                    let node = book[index % book.len()].0;
                    config = config.with_reads_from(ReadsFrom::Replica(node));
                }
                Ok(Conn::Synod(Client::connect(config).await.context("cannot reach the synod cluster")?))
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd => {
                // synod's client gives a call 30 s across retries; give etcd's the same.
                let options = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(30));
                let client = etcd_client::Client::connect(&args.endpoints, Some(options))
                    .await
                    .context("cannot reach the etcd cluster")?;
                Ok(Conn::Etcd(Box::new(client.kv_client())))
            }
            #[cfg(not(feature = "etcd"))]
            Backend::Etcd => bail!("built without the etcd backend (feature `etcd`)"),
        }
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        match self {
            Conn::Synod(c) => Ok(c.put(key, value).await?),
            #[cfg(feature = "etcd")]
            Conn::Etcd(c) => c.put(key, value, None).await.map(|_| ()).map_err(Into::into),
        }
    }

    async fn get(&mut self, key: Vec<u8>, mode: ReadMode) -> Result<Option<Vec<u8>>> {
        match self {
            Conn::Synod(c) => Ok(c.get_with(key, mode).await?),
            #[cfg(feature = "etcd")]
            Conn::Etcd(c) => {
                // etcd's gets are linearizable unless asked to be serializable (stale).
                let options =
                    (mode == ReadMode::Stale).then(|| etcd_client::GetOptions::new().with_serializable());
                let reply = c.get(key, options).await?;
                Ok(reply.kvs().first().map(|kv| kv.value().to_vec()))
            }
        }
    }
}

fn value_for(key: &[u8], size: usize) -> Vec<u8> {
    let mut v = key.to_vec();
    v.resize(size.max(key.len()), b'.');
    v
}

async fn task(id: usize, mut client: Conn, args: Args, shared: Arc<Shared>) -> TaskResult {
    let (mut reads, mut writes) = (Measure::new(), Measure::new());
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (id as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut seq = 0u64;
    let mut completions_ms = Vec::new();
    let mut written = Vec::new();
    let mut samples = Vec::new();
    let interval = args.rate.map(|r| Duration::from_secs_f64(args.clients as f64 / r));
    let mut next_at = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(iv) = interval {
            next_at += iv;
            tokio::time::sleep_until(next_at.into()).await;
        }
        let put = next() % 100 < args.puts;
        let fill_key = if args.fill {
            let n = shared.fill_next.fetch_add(1, Ordering::Relaxed);
            if n >= args.keys {
                break;
            }
            Some(n)
        } else {
            None
        };
        let start = Instant::now();
        let result = if put {
            let key = if let Some(n) = fill_key {
                format!("key{n:012}").into_bytes()
            } else if args.verify {
                seq += 1;
                format!("t{id:05}-{seq:09}").into_bytes()
            } else {
                format!("key{:012}", next() % args.keys).into_bytes()
            };
            let value = value_for(&key, args.value_size);
            if args.verify {
                let r = client.put(key.clone(), value.clone()).await;
                if r.is_ok() {
                    written.push((key, value));
                }
                r
            } else {
                client.put(key, value).await
            }
        } else {
            let key = format!("key{:012}", next() % args.keys);
            client.get(key.into_bytes(), args.read_mode).await.map(|_| ())
        };
        match result {
            Ok(()) => {
                completions_ms.push(unix_ms());
                if shared.measuring.load(Ordering::Relaxed) {
                    let micros = start.elapsed().as_micros().max(1) as u64;
                    if put {
                        writes.record(micros);
                    } else {
                        reads.record(micros);
                    }
                    if args.samples.is_some() {
                        let since = start.saturating_duration_since(shared.epoch.0).as_micros() as u64;
                        samples.push((shared.epoch.1 + since, micros));
                    }
                }
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("load: operation failed: {e:#}");
            }
        }
    }
    TaskResult { reads, writes, completions_ms, written, samples }
}

/// Reads every acknowledged write back, as many at once as there were
/// clients, over the same connections; returns how many are missing or wrong.
async fn read_back(sessions: &[Conn], written: Arc<[(Vec<u8>, Vec<u8>)]>, clients: usize) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let missing = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..clients.max(1))
        .map(|i| {
            let (mut conn, written) = (sessions[i % sessions.len()].clone(), written.clone());
            let (next, missing) = (next.clone(), missing.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some((key, value)) = written.get(n) else { break };
                    // Linearizable, whatever mode the run read with: a stale
                    // read could miss an acknowledged write that is there.
                    match conn.get(key.clone(), ReadMode::Linearizable).await {
                        Ok(Some(v)) if v == *value => {}
                        _ => drop(missing.fetch_add(1, Ordering::Relaxed)),
                    }
                }
            })
        })
        .collect();
    let bar = indicatif::ProgressBar::new(written.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} writes read back")
            .expect("valid template"),
    );
    while !readers.iter().all(|r| r.is_finished()) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        bar.set_position(next.load(Ordering::Relaxed).min(written.len() as u64));
    }
    bar.finish_and_clear();
    let mut failed = 0;
    for r in readers {
        if let Err(e) = r.await {
            // The write it was reading is unaccounted for: count it missing.
            eprintln!("load: a reader failed: {e}");
            failed += 1;
        }
    }
    missing.load(Ordering::Relaxed) + failed
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let rt = match args.threads {
        0 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let mut sessions = Vec::new();
    for i in 0..args.sessions {
        sessions.push(Conn::connect(&args, i).await?);
    }
    let epoch_unix_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        fill_next: AtomicU64::new(0),
        epoch: (Instant::now(), epoch_unix_us),
        measuring: AtomicBool::new(args.warmup <= 0.0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| tokio::spawn(task(i, sessions[i % sessions.len()].clone(), args.clone(), shared.clone())))
        .collect();
    let bar = if args.fill {
        let bar = indicatif::ProgressBar::new(args.keys);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} keys written, {per_sec}, {eta} left",
            )
            .expect("valid template"),
        );
        bar
    } else {
        let bar = indicatif::ProgressBar::new((args.warmup + args.duration).ceil() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s {msg}").expect("valid template"),
        );
        bar
    };
    let began = Instant::now();
    let mut measured_from = if args.warmup <= 0.0 { Some(Instant::now()) } else { None };
    let total = Duration::from_secs_f64(args.warmup + args.duration);
    while args.fill && !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        bar.set_position(shared.done.load(Ordering::Relaxed));
    }
    while !args.fill && began.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if measured_from.is_none() && began.elapsed().as_secs_f64() >= args.warmup {
            shared.measuring.store(true, Ordering::Relaxed);
            measured_from = Some(Instant::now());
        }
        bar.set_position(began.elapsed().as_secs());
        bar.set_message(format!("{} ops", shared.done.load(Ordering::Relaxed)));
    }
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = measured_from.map_or(0.0, |t| t.elapsed().as_secs_f64());
    bar.finish_and_clear();
    let (mut reads, mut writes) = (Measure::new(), Measure::new());
    let mut completions = Vec::new();
    let mut acknowledged = Vec::new();
    let mut samples = Vec::new();
    for t in tasks {
        let r = t.await?;
        reads.add(&r.reads)?;
        writes.add(&r.writes)?;
        completions.extend(r.completions_ms);
        acknowledged.extend(r.written);
        samples.extend(r.samples);
    }
    if let Some(path) = &args.samples {
        samples.sort_unstable();
        let mut text = String::with_capacity(samples.len() * 24);
        for (start, micros) in &samples {
            use std::fmt::Write as _;
            let _ = writeln!(text, "{start} {micros}");
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    // Moved, not copied, into what the readers share.
    let written: Arc<[(Vec<u8>, Vec<u8>)]> = acknowledged.into();
    let mut all = Measure::new();
    all.add(&reads)?;
    all.add(&writes)?;
    let (all, reads, writes) = (all.figures(elapsed), reads.figures(elapsed), writes.figures(elapsed));
    let Figures { ops, throughput, p50, p99, p999 } = all;
    let errors = shared.errors.load(Ordering::Relaxed);
    println!(
        "load: {}: {} clients on {} sessions, {ops} ops in {elapsed:.1} s: {throughput:.0} ops/s, p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, {errors} errors; reads ({}, {} %): {}; writes: {}",
        args.backend.name(),
        args.clients,
        args.sessions,
        args.read_mode,
        100 - args.puts,
        reads.line(),
        writes.line(),
    );
    let mut failover_ms = None;
    if let Some(path) = &args.kill_file {
        if let Ok(text) = std::fs::read_to_string(path) {
            let killed: u64 =
                text.trim().parse().with_context(|| format!("{} holds no time", path.display()))?;
            completions.sort_unstable();
            let after = completions.iter().find(|&&t| t > killed);
            failover_ms = after.map(|t| t - killed);
            match failover_ms {
                Some(gap) => println!("load: failover: first operation completed {gap} ms after the kill"),
                None => println!("load: failover: no operation completed after the kill"),
            }
        }
    }
    let mut missing = 0u64;
    if args.verify {
        missing = read_back(&sessions, written.clone(), args.clients).await;
        println!("load: verified {} acknowledged writes, {missing} missing", written.len());
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "backend": args.backend.name(), "puts_percent": args.puts, "warmup": args.warmup,
            "reads_percent": 100 - args.puts, "read_mode": args.read_mode.name(),
            "reads": reads.json(), "writes": writes.json(),
            "clients": args.clients, "sessions": args.sessions, "ops": ops, "seconds": elapsed,
            "throughput": throughput, "p50_ms": p50, "p99_ms": p99, "p999_ms": p999, "errors": errors,
            "failover_ms": failover_ms, "verified": written.len(), "missing": missing,
        });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    if missing > 0 {
        bail!("{missing} acknowledged writes are missing");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Args> {
        let argv = ["load", "--client-config", "client.toml"].iter().chain(flags);
        checked(Args::try_parse_from(argv)?)
    }

    #[test]
    fn reads_is_the_complement_of_puts_and_gets_read_linearizably_by_default() {
        let a = parse(&[]).unwrap();
        assert_eq!((a.puts, a.read_mode), (90, ReadMode::Linearizable));
        let a = parse(&["--reads", "95"]).unwrap();
        assert_eq!(a.puts, 5);
        let a = parse(&["--reads", "0", "--read-mode", "stale"]).unwrap();
        assert_eq!((a.puts, a.read_mode), (100, ReadMode::Stale));
        assert_eq!(parse(&["--puts", "30"]).unwrap().puts, 30);
        for (name, mode) in [("log", ReadMode::ThroughLog), ("lease", ReadMode::Lease)] {
            assert_eq!(parse(&["--read-mode", name]).unwrap().read_mode, mode);
        }
        assert!(parse(&["--reads", "50", "--puts", "50"]).is_err());
        assert!(parse(&["--reads", "101"]).is_err());
        assert!(parse(&["--read-mode", "fast"]).is_err());
    }

    #[test]
    fn reads_and_writes_are_measured_apart_and_together() {
        let (mut reads, mut writes) = (Measure::new(), Measure::new());
        for micros in [1000, 2000, 3000] {
            reads.record(micros);
        }
        writes.record(10_000);
        let mut all = Measure::new();
        all.add(&reads).unwrap();
        all.add(&writes).unwrap();
        let (r, w, a) = (reads.figures(2.0), writes.figures(2.0), all.figures(2.0));
        assert_eq!((r.ops, w.ops, a.ops), (3, 1, 4));
        assert_eq!(a.throughput, 2.0);
        assert!((r.p50 - 2.0).abs() < 0.01 && (w.p99 - 10.0).abs() < 0.01, "{} {}", r.p50, w.p99);
        assert_eq!(r.line(), "3 ops, 2 ops/s, p50 2.00 ms, p99 3.00 ms");
        assert_eq!(w.json()["ops"], 1);
    }
}
