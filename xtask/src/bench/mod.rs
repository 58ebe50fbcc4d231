//! `cargo xtask bench [what]`: benchmarks, run in release mode, reporting numbers (never pass/fail on time).
//!
//! With no argument (or `all`): the micro-benchmarks, then the comparison with etcd in its
//! quick form. `micro`: the micro-benchmarks only. `core`, `wire`, `log`, `transport`: one
//! of them (further arguments go to it). `--peer etcd [...]`: the comparison (`peer.rs`).
//! `--peer redis [...]`: redis-benchmark against synod's RESP port and a durable
//! redis-server (`redis.rs`).
//! `snapshots [...]`: client latency while replicas write snapshots, and an emptied replica's
//! rejoin time (`snapshots.rs`). `overload [...]`: ten times more clients than the cluster
//! serves: memory, Busy answers, p99 and leadership under it (`overload.rs`).

mod etcd;
mod overload;
mod peer;
mod redis;
mod snapshots;
pub(crate) mod svg;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{cargo, run_cmd};

const MICRO: &str = "core wire log transport";

/// Benchmarks, run in release mode, reporting numbers (never pass/fail on time).
///
/// With no argument (or `all`): the micro-benchmarks, then the comparison with etcd in its
/// quick form. `micro`: the micro-benchmarks only. `core`, `wire`, `log`, `transport`: one of
/// them (further arguments go to it). `--peer etcd [...]`: synod and etcd side by side under
/// the same load generator (docs/PERFORMANCE.md). `--peer redis [-c 50] [-n 1000000] [-P 1,16]
/// [-d 100] [-r 100000] [-t set,get] [--quick]`: the same redis-benchmark command line against
/// synod's RESP port, a redis-server with appendfsync always, and a primary with two replicas (three durable copies).
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask bench", bin_name = "cargo xtask bench", args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: Option<What>,
    #[command(flatten)]
    peer: peer::PeerArgs,
}

/// Which benchmarks `cargo xtask bench` runs.
#[derive(Debug, clap::Subcommand)]
enum What {
    /// The micro-benchmarks, then the comparison with etcd, quick (what `cargo xtask bench` does).
    All,
    /// All the micro-benchmarks: core, wire, log, transport.
    #[command(disable_help_flag = true)]
    Micro(Extra),
    /// The core's micro-benchmark.
    #[command(disable_help_flag = true)]
    Core(Extra),
    /// The wire codec's micro-benchmark.
    #[command(disable_help_flag = true)]
    Wire(Extra),
    /// The log's micro-benchmark.
    #[command(disable_help_flag = true)]
    Log(Extra),
    /// The transport's micro-benchmark.
    #[command(disable_help_flag = true)]
    Transport(Extra),
    /// Client latency while replicas write snapshots (a 3-replica cluster preloaded with
    /// --keys), then how long an emptied replica takes to rejoin.
    Snapshots(snapshots::SnapshotArgs),
    /// Ten times more clients than the cluster serves (10,000 by default): replica memory over
    /// the run, Busy answers, throughput and p99 against a saturating run, leader changes.
    Overload(overload::OverloadArgs),
}

/// What a micro-benchmark's binary is given.
#[derive(Debug, clap::Args)]
struct Extra {
    /// Arguments for the benchmark binary itself.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    // `--peer redis` takes redis-benchmark's flags, which the etcd comparison does not know.
    if redis::wanted(args) {
        return redis::run(args);
    }
    let parsed: Args = crate::parse_args("bench", args)?;
    let micros = MICRO.split(' ').collect::<Vec<_>>();
    match parsed.what {
        None if args.is_empty() => all(&micros),
        Some(What::All) => all(&micros),
        // Any flag: the comparison with a peer, whose options `peer::run` checks.
        None => peer::run(args),
        Some(What::Micro(extra)) => micro(&micros, &extra.args),
        Some(What::Core(extra)) => micro(&["core"], &extra.args),
        Some(What::Wire(extra)) => micro(&["wire"], &extra.args),
        Some(What::Log(extra)) => micro(&["log"], &extra.args),
        Some(What::Transport(extra)) => micro(&["transport"], &extra.args),
        Some(What::Snapshots(a)) => snapshots::run(a),
        Some(What::Overload(a)) => overload::run(a),
    }
}

/// The micro-benchmarks, then the comparison with etcd in its quick form.
fn all(micros: &[&str]) -> Result<()> {
    micro(micros, &[])?;
    eprintln!("== bench: synod against etcd (quick; `cargo xtask bench --peer etcd` for the full run)");
    peer::run(&["--peer".to_owned(), "etcd".to_owned(), "--quick".to_owned()])
}

fn micro(names: &[&str], extra: &[String]) -> Result<()> {
    for name in names {
        eprintln!("== bench {name}");
        run_cmd(
            cargo()
                .args(["run", "--release", "--locked", "-p", "synod-bench", "--bin", name, "--"])
                .args(extra),
        )?;
    }
    Ok(())
}

/// The pid in the file at `path`, if that process is alive, not a zombie, and called `name`
/// (a bare pid from an old file may belong to another process by now).
fn live_pid(path: &Path, name: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    (comm.trim() == name && !stat.contains(") Z ")).then_some(pid)
}

/// Stops the process the pid file names (SIGTERM, SIGKILL after 10 s) and removes the file.
pub(crate) fn stop_pid_file(path: &Path, name: &str) {
    if let Some(pid) = live_pid(path, name) {
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let until = Instant::now() + Duration::from_secs(10);
        while live_pid(path, name).is_some() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if live_pid(path, name).is_some() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args> {
        crate::parse_args("bench", &s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn a_micro_benchmark_gets_every_later_argument() {
        let Some(What::Core(extra)) = parse("core --iterations 3 --help -x").unwrap().what else {
            panic!("not core")
        };
        assert_eq!(extra.args, ["--iterations", "3", "--help", "-x"]);
        let Some(What::Micro(extra)) = parse("micro").unwrap().what else { panic!("not micro") };
        assert!(extra.args.is_empty());
        assert!(parse("").unwrap().what.is_none());
        assert!(parse("--peer etcd --quick").unwrap().what.is_none());
    }

    #[test]
    fn unknown_benchmarks_and_extra_arguments_are_errors() {
        assert!(format!("{:#}", parse("nosuch").unwrap_err()).contains("unrecognized subcommand 'nosuch'"));
        assert!(parse("all --quick").is_err());
        assert!(parse("--peer etcd core").is_err());
    }
}
