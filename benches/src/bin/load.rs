//! The load generator: closed-loop (or fixed-rate) clients against a synod
//! cluster, with HDR latency histograms, a progress bar, JSON results, and an
//! optional check that every acknowledged write can be read back.
//!
//! ```text
//! load --client-config client.toml [--clients 64] [--sessions 16] [--duration 10] [--warmup 2]
//!      [--puts 90] [--keys 100000] [--value-size 100] [--rate OPS/S]
//!      [--verify] [--kill-file PATH] [--json PATH]
//! ```
//! `--verify` writes every put to a key of its own and reads all of them
//! back at the end. `--kill-file` names a file where another process writes
//! the Unix time in milliseconds at which it killed a replica; the report
//! then gives the failover gap: from the kill to the next completed operation.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use synod_client::Client;

#[derive(Debug, Clone)]
struct Args {
    client_config: PathBuf,
    clients: usize,
    sessions: usize,
    duration: f64,
    warmup: f64,
    puts: u64,
    keys: u64,
    value_size: usize,
    rate: Option<f64>,
    verify: bool,
    kill_file: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        client_config: PathBuf::new(),
        clients: 64,
        sessions: 16,
        duration: 10.0,
        warmup: 2.0,
        puts: 90,
        keys: 100_000,
        value_size: 100,
        rate: None,
        verify: false,
        kill_file: None,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--client-config" => a.client_config = val()?.into(),
            "--clients" => a.clients = val()?.parse()?,
            "--sessions" => a.sessions = val()?.parse()?,
            "--duration" => a.duration = val()?.parse()?,
            "--warmup" => a.warmup = val()?.parse()?,
            "--puts" => a.puts = val()?.parse()?,
            "--keys" => a.keys = val()?.parse()?,
            "--value-size" => a.value_size = val()?.parse()?,
            "--rate" => a.rate = Some(val()?.parse()?),
            "--verify" => a.verify = true,
            "--kill-file" => a.kill_file = Some(val()?.into()),
            "--json" => a.json = Some(val()?.into()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.client_config.as_os_str().is_empty() {
        bail!("--client-config FILE is required");
    }
    if a.clients == 0 || a.sessions == 0 {
        bail!("--clients and --sessions must be at least 1");
    }
    a.sessions = a.sessions.min(a.clients);
    Ok(a)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

struct Shared {
    stop: AtomicBool,
    measuring: AtomicBool,
    done: AtomicU64,
    errors: AtomicU64,
}

struct TaskResult {
    hist: Histogram<u64>,
    ops: u64,
    completions_ms: Vec<u64>,
    written: Vec<(Vec<u8>, Vec<u8>)>,
}

fn value_for(key: &[u8], size: usize) -> Vec<u8> {
    let mut v = key.to_vec();
    v.resize(size.max(key.len()), b'.');
    v
}

async fn task(id: usize, client: Client, args: Args, shared: Arc<Shared>) -> TaskResult {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (id as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut ops = 0u64;
    let mut seq = 0u64;
    let mut completions_ms = Vec::new();
    let mut written = Vec::new();
    let interval = args.rate.map(|r| Duration::from_secs_f64(args.clients as f64 / r));
    let mut next_at = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(iv) = interval {
            next_at += iv;
            tokio::time::sleep_until(next_at.into()).await;
        }
        let put = next() % 100 < args.puts;
        let start = Instant::now();
        let result = if put {
            let key = if args.verify {
                seq += 1;
                format!("t{id:05}-{seq:09}").into_bytes()
            } else {
                format!("key{:012}", next() % args.keys).into_bytes()
            };
            let value = value_for(&key, args.value_size);
            let r = client.put(&key, &value).await;
            if r.is_ok() && args.verify {
                written.push((key, value));
            }
            r.map(|_| ())
        } else {
            let key = format!("key{:012}", next() % args.keys);
            client.get(key).await.map(|_| ())
        };
        match result {
            Ok(()) => {
                completions_ms.push(unix_ms());
                if shared.measuring.load(Ordering::Relaxed) {
                    let _ = hist.record(start.elapsed().as_micros().max(1) as u64);
                    ops += 1;
                }
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("load: operation failed: {e}");
            }
        }
    }
    TaskResult { hist, ops, completions_ms, written }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let config = synod_bench::client_config(&args.client_config)?;
    let mut sessions = Vec::new();
    for _ in 0..args.sessions {
        sessions.push(Client::connect(config.clone()).await.context("cannot reach the cluster")?);
    }
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        measuring: AtomicBool::new(args.warmup <= 0.0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| tokio::spawn(task(i, sessions[i % sessions.len()].clone(), args.clone(), shared.clone())))
        .collect();
    let bar = indicatif::ProgressBar::new((args.warmup + args.duration).ceil() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s {msg}").expect("valid template"),
    );
    let began = Instant::now();
    let mut measured_from = if args.warmup <= 0.0 { Some(Instant::now()) } else { None };
    let total = Duration::from_secs_f64(args.warmup + args.duration);
    while began.elapsed() < total {
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
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ops = 0;
    let mut completions = Vec::new();
    let mut written = Vec::new();
    for t in tasks {
        let r = t.await?;
        hist.add(&r.hist)?;
        ops += r.ops;
        completions.extend(r.completions_ms);
        written.extend(r.written);
    }
    let throughput = ops as f64 / elapsed.max(1e-9);
    let (p50, p99, p999) = (
        hist.value_at_quantile(0.50) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.value_at_quantile(0.999) as f64 / 1000.0,
    );
    let errors = shared.errors.load(Ordering::Relaxed);
    println!(
        "load: {} clients on {} sessions, {ops} ops in {elapsed:.1} s: {throughput:.0} ops/s, p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, {errors} errors",
        args.clients, args.sessions
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
        let client = &sessions[0];
        for (key, value) in &written {
            match client.get(key).await {
                Ok(Some(v)) if v == *value => {}
                _ => missing += 1,
            }
        }
        println!("load: verified {} acknowledged writes, {missing} missing", written.len());
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
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
