//! The chaos workload: concurrent clients doing get, put and cas on a few keys
//! (so that they conflict), recording every operation's invocation and
//! outcome (ok, fail, or info when indeterminate) with monotonic timestamps,
//! then checking the history for linearizability with `synod-check`.
//!
//! ```text
//! chaos_client --client-config client.toml [--workers 6] [--keys 3] [--seconds 30]
//!              [--op-timeout-ms 2000] [--history history.jsonl] [--budget-s 60 (per key)] [--pause-ms 5]
//!              [--key-seconds 0 (no rotation)]
//!              [--read-mode mixed|linearizable|lease|stale|log]
//! ```
//! By default (`mixed`) gets take every linearizable read path: even workers
//! read on their session's connection (at the leader), odd workers on a
//! connection of their own to a replica drawn at random (`ReadsFrom::Spread`:
//! followers serve them with a read index from the leader), and one get in
//! four of every worker goes through the log. One mode names a single path for
//! every get: `linearizable` (outside the log), `log`, `lease`, or `stale`
//! (not linearizable: the check is expected to find it out under faults).
//! The final reads after the heal are linearizable whatever the mode.
//! Prints one JSON summary line last: ops ok/fail/info, the verdict, the checker's time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use synod_check::{check_per_key, Input, Op, Output, Verdict};
use synod_client::{Client, ClientError, ReadMode, ReadsFrom};

/// The chaos workload: concurrent clients doing get, put and cas on a few keys,
/// then a linearizability check of the history.
#[derive(Debug, Parser)]
#[command(name = "chaos_client")]
struct Cli {
    /// The client configuration file.
    #[arg(long, value_name = "FILE")]
    client_config: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    workers: u64,
    /// Keys they share.
    #[arg(long, default_value_t = 3)]
    keys: u64,
    /// Move on to a fresh set of keys every this many seconds (0: never). The checker's
    /// work grows much faster than a key's history, above all with the indeterminate
    /// operations that faults leave open for ever; keys used for a bounded window each
    /// (as Jepsen's independent keys) keep an hour's check as cheap as a minute's, and
    /// every key still gets a final read after the heal.
    #[arg(long = "key-seconds", default_value_t = 0)]
    key_seconds: u64,
    /// How long to run.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// One operation's deadline, in milliseconds.
    #[arg(long = "op-timeout-ms", default_value_t = 2000)]
    op_timeout_ms: u64,
    /// Write the history here, one JSON line per operation.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// The checker's budget per key, in seconds.
    #[arg(long = "budget-s", default_value_t = 60)]
    budget_s: u64,
    /// A worker's pause between operations, in milliseconds.
    #[arg(long = "pause-ms", default_value_t = 5)]
    pause_ms: u64,
    /// How gets are served: mixed (every linearizable path, the default), or one of
    /// linearizable (outside the log), lease, stale, or log (through the log) for all.
    #[arg(long, default_value = "mixed")]
    read_mode: Reads,
}

/// Which read paths the workload's gets take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// Leader and follower reads outside the log, and reads through the log.
    Mixed,
    /// One mode for every get, on the session's connection.
    Only(ReadMode),
}

impl Reads {
    fn name(self) -> &'static str {
        match self {
            Reads::Mixed => "mixed",
            Reads::Only(mode) => mode.name(),
        }
    }
}

impl std::str::FromStr for Reads {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Reads, String> {
        if s == "mixed" {
            return Ok(Reads::Mixed);
        }
        s.parse().map(Reads::Only).map_err(|e| format!("{e}, or mixed"))
    }
}

struct Args {
    client_config: PathBuf,
    workers: u64,
    keys: u64,
    key_seconds: u64,
    seconds: f64,
    op_timeout: Duration,
    history: Option<PathBuf>,
    budget: Duration,
    pause: Duration,
    read_mode: Reads,
}

fn parse() -> Result<Args> {
    let c = Cli::parse();
    Ok(Args {
        client_config: c.client_config,
        workers: c.workers,
        keys: c.keys,
        key_seconds: c.key_seconds,
        seconds: c.seconds,
        op_timeout: Duration::from_millis(c.op_timeout_ms),
        history: c.history,
        budget: Duration::from_secs(c.budget_s),
        pause: Duration::from_millis(c.pause_ms),
        read_mode: c.read_mode,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Result3 {
    Ok,
    Fail,
    Info,
}

struct Record {
    op: Op,
    result: Result3,
}

fn main() -> Result<()> {
    let args = parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let config = synod_bench::client_config(&args.client_config)?
        .with_deadline(args.op_timeout)
        .with_request_timeout(Duration::from_millis(300));
    let epoch = Instant::now();
    let stop_at = epoch + Duration::from_secs_f64(args.seconds);
    let keys = Keys { count: args.keys, window: args.key_seconds };
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let config = config.clone();
        let workers = args.workers;
        let pacing = Pacing { pause: args.pause, mode: args.read_mode };
        tasks.push(tokio::spawn(
            async move { worker(w, workers, pacing, config, keys, epoch, stop_at).await },
        ));
    }
    let mut records = Vec::new();
    let mut clients = Vec::new();
    for t in tasks {
        let (mut worker_records, client) = t.await??;
        records.append(&mut worker_records);
        clients.push(client);
    }
    // Final reads, after the faults healed: with them in the history, an
    // acknowledged write that was lost cannot hide at the end. They go
    // through a worker's client, which has learned the members along the way:
    // the client file may name only replicas that membership changes replaced.
    let reader = match clients.into_iter().next() {
        Some(client) => client,
        None => Client::connect(config.clone()).await.context("connecting for the final reads")?,
    };
    for key in keys.all(epoch.elapsed()) {
        let call = epoch.elapsed().as_nanos() as u64;
        let value = reader.get(&key).await.context("a final read failed after the heal")?;
        let ret = epoch.elapsed().as_nanos() as u64;
        let op = Op {
            client: u64::MAX,
            call,
            ret: Some(ret),
            key,
            input: Input::Get,
            output: Output::Value(value),
        };
        records.push(Record { op, result: Result3::Ok });
    }
    let ok = records.iter().filter(|r| r.result == Result3::Ok).count();
    let fail = records.iter().filter(|r| r.result == Result3::Fail).count();
    let info = records.iter().filter(|r| r.result == Result3::Info).count();
    if let Some(path) = &args.history {
        let mut text = String::new();
        for r in &records {
            text.push_str(&history_line(r));
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    // Failed operations did not take effect: leave them out. Indeterminate ones may have,
    // except reads, which change nothing and constrain nothing when their answer is unknown.
    let history: Vec<Op> = records
        .into_iter()
        .filter(|r| r.result != Result3::Fail)
        .filter(|r| !(r.result == Result3::Info && r.op.input == Input::Get))
        .map(|r| r.op)
        .collect();
    let checking = Instant::now();
    let budget = args.budget;
    let report = check_per_key(&history, &mut || {
        let started = Instant::now();
        Box::new(move || started.elapsed() > budget)
    });
    let verdict = match report.verdict() {
        Verdict::Linearizable => "linearizable".to_owned(),
        Verdict::Unknown => "unknown".to_owned(),
        Verdict::Illegal { longest } => {
            format!("illegal (deepest partial order: {} operations)", longest.len())
        }
    };
    let bad_keys: Vec<String> = report
        .keys
        .iter()
        .filter(|(_, v)| !matches!(v, Verdict::Linearizable))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "ok": ok, "fail": fail, "info": info, "verdict": verdict, "bad_keys": bad_keys,
            "read_mode": args.read_mode.name(),
            "check_seconds": checking.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// The workload's keys: `count` at a time, a fresh set every `window` seconds (0: one set).
#[derive(Debug, Clone, Copy)]
struct Keys {
    count: u64,
    window: u64,
}

impl Keys {
    /// The name of key `k` of the set in use `elapsed` into the run.
    fn name(self, elapsed: Duration, k: u64) -> Vec<u8> {
        match self.window {
            0 => format!("k{k}").into_bytes(),
            w => format!("k{}-{k}", elapsed.as_secs() / w).into_bytes(),
        }
    }

    /// Every key used up to `elapsed` into the run.
    fn all(self, elapsed: Duration) -> Vec<Vec<u8>> {
        let sets = match self.window {
            0 => 1,
            w => elapsed.as_secs() / w + 1,
        };
        (0..sets)
            .flat_map(|set| (0..self.count).map(move |k| (set, k)))
            .map(|(set, k)| self.name(Duration::from_secs(set * self.window), k))
            .collect()
    }
}

/// What every worker does alike: its pause between operations and how it reads.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    pause: Duration,
    mode: Reads,
}

async fn worker(
    w: u64,
    workers: u64,
    Pacing { pause, mode }: Pacing,
    config: synod_client::ClientConfig,
    keys: Keys,
    epoch: Instant,
    stop_at: Instant,
) -> Result<(Vec<Record>, Client)> {
    let mut records = Vec::new();
    let config =
        if mode == Reads::Mixed && w % 2 == 1 { config.with_reads_from(ReadsFrom::Spread) } else { config };
    // Connecting itself may meet a fault; retry until the run ends.
    let client = loop {
        match Client::connect(config.clone()).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < stop_at => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(e.into()),
        }
    };
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut n = 0u64;
    let mut process = w;
    let mut last_seen: Option<Vec<u8>> = None;
    while Instant::now() < stop_at {
        // Paced, as Jepsen's clients are: the checker's work grows quickly with the history.
        tokio::time::sleep(pause).await;
        n += 1;
        let key = keys.name(epoch.elapsed(), next() % keys.count);
        let value = format!("w{w}-{n}").into_bytes();
        let input = match next() % 3 {
            0 => Input::Get,
            1 => Input::Put(value.clone()),
            _ => Input::Cas {
                expected: if next() % 2 == 0 { last_seen.clone() } else { None },
                new: Some(value),
            },
        };
        let call = epoch.elapsed().as_nanos() as u64;
        let outcome: std::result::Result<Output, ClientError> = match &input {
            Input::Get => {
                let mode = match mode {
                    Reads::Only(m) => m,
                    Reads::Mixed if next() % 4 == 0 => ReadMode::ThroughLog,
                    Reads::Mixed => ReadMode::Linearizable,
                };
                client.get_with(&key, mode).await.map(Output::Value)
            }
            Input::Put(v) => client.put(&key, v).await.map(|_| Output::Stored),
            Input::Cas { expected, new } => client
                .cas(&key, expected.as_deref(), new.as_deref())
                .await
                .map(|o| Output::Cas { swapped: o.swapped }),
            Input::Delete => unreachable!("the workload issues no deletes"),
        };
        let ret = epoch.elapsed().as_nanos() as u64;
        let (result, output, ret) = match outcome {
            Ok(out) => {
                if let Output::Value(Some(v)) = &out {
                    last_seen = Some(v.clone());
                }
                (Result3::Ok, out, Some(ret))
            }
            // Refused by the session table or the store: it did not take effect.
            Err(ClientError::Rejected(_) | ClientError::SessionExpired) => {
                (Result3::Fail, Output::Unknown, Some(ret))
            }
            // A timeout or a lost connection: it may or may not have taken effect.
            Err(_) => (Result3::Info, Output::Unknown, None),
        };
        records.push(Record { op: Op { client: process, call, ret, key, input, output }, result });
        if result == Result3::Info {
            // An indeterminate operation never completes, so it ends this
            // process's history (as in Jepsen); go on as a fresh process.
            process += workers;
        }
    }
    Ok((records, client))
}

fn history_line(r: &Record) -> String {
    let s = |b: &Option<Vec<u8>>| b.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
    let (f, value, expected) = match &r.op.input {
        Input::Get => ("get", None, None),
        Input::Put(v) => ("put", Some(String::from_utf8_lossy(v).into_owned()), None),
        Input::Delete => ("delete", None, None),
        Input::Cas { expected, new } => ("cas", s(new), Some(s(expected))),
    };
    serde_json::json!({
        "process": r.op.client, "f": f, "key": String::from_utf8_lossy(&r.op.key),
        "value": value, "expected": expected, "invoke_ns": r.op.call, "complete_ns": r.op.ret,
        "type": match r.result { Result3::Ok => "ok", Result3::Fail => "fail", Result3::Info => "info" },
        "output": format!("{:?}", r.op.output),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_rotate_by_window_and_the_final_reads_cover_every_set() {
        let fixed = Keys { count: 3, window: 0 };
        assert_eq!(fixed.name(Duration::from_secs(500), 2), b"k2");
        assert_eq!(fixed.all(Duration::from_secs(500)), vec![b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec()]);
        let rotating = Keys { count: 2, window: 30 };
        assert_eq!(rotating.name(Duration::from_secs(29), 1), b"k0-1");
        assert_eq!(rotating.name(Duration::from_secs(61), 0), b"k2-0");
        let all = rotating.all(Duration::from_secs(61));
        assert_eq!(all.len(), 6, "three sets of two: {all:?}");
        for (elapsed, k) in [(0, 0), (45, 1), (61, 1)] {
            assert!(all.contains(&rotating.name(Duration::from_secs(elapsed), k)), "{elapsed} s, key {k}");
        }
    }
}
