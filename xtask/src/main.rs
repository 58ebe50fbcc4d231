//! `cargo xtask`: the one place that says how synod is built, checked, simulated and benchmarked.
//!
//! Each task is a module; `cargo xtask help` lists them.

mod bench;
mod chaos;
mod ci;
mod cluster;
mod demo;
mod deploy;
mod disk_faults;
mod fuzz;
mod membership;
mod package;
mod sim;
mod soak;
mod throughput;
mod tidy;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const HELP: &str = "\
cargo xtask <task> [args]       (`cargo xtask <task> --help` or `cargo xtask help <task>`: its flags)

tasks:
  bench   benchmarks in release mode: `cargo xtask bench` (micro-benchmarks, then synod against
          etcd, quick), `cargo xtask bench micro|core|wire|log|transport|snapshots`,
          `cargo xtask bench --peer etcd [--clients 1,16,100,1000] [--duration 10s] [--warmup 2s]
          [--puts 100] [--sessions 16] [--load-threads 0] [--quick]`, `cargo xtask bench --peer
          redis [-c 50] [-n 1000000] [-P 1,16] [-d 100] [-r 100000] [-t set,get] [--quick]`
          (redis-benchmark against synod's RESP port and a durable redis-server; docs/PERFORMANCE.md)
  cluster local replicas on loopback: `cargo xtask cluster up|down|status [--dir D] [--replicas N]
          [--base-port P]`; membership changes on it: `cargo xtask cluster add [--learner]`,
          `cargo xtask cluster remove N`, `cargo xtask cluster replace N`
  deploy-test  docs/DEPLOY.md run as written: its marked blocks on four hosts (network
          namespaces, names in /etc/hosts), the systemd unit's ExecStart, systemd-analyze verify,
          promtool check rules, the dashboard's and alerts' metrics against live replicas (root)
  disk-faults  three replicas with their data directories on faultfs (FUSE) under put load: fsync
          100 ms late on a follower, then on the leader (the cluster stays available), then
          failing on the leader (it stops, naming the fsync; the others go on; no acknowledged
          write lost): `cargo xtask disk-faults [--seconds S] [--delay-ms D] [--quick]` (root)
  demo    the main job: a 3-replica cluster under load, its leader killed and restarted
          (`--seconds 20`, `--clients 64`); `--replace`: instead, replica 4 added as a learner,
          promoted, replica 1 removed, and throughput over time shown
  chaos   real processes in network namespaces under faults (cuts, loss, SIGKILL, SIGSTOP, skewed
          clocks, a replica restarted with an emptied data directory), small snapshots throughout,
          histories checked: `cargo xtask chaos [--time S] [--seed N] [--quick]`
          (root; iproute2, nftables, faketime)
  fuzz    the libFuzzer targets in fuzz/ (nightly), one after another on the committed corpus:
          `cargo xtask fuzz [--minutes M] [--seconds S] [TARGET...]`, each one's executions, exec/s,
          CPU seconds and coverage; a crash fails and names its input; `--seed-corpus` writes
          fuzz/corpus/ from real data, `--merge` shrinks it to what adds coverage
  ci      fmt check, clippy -D warnings, tests, docs -D warnings, packaging, the standalone consumer
          (what CI runs; `--sim-seeds N`)
  package every published crate packed and built on its own (`cargo package --workspace`), each
          .crate's size listed; fails on one over 2 MiB or packing a file from outside its directory
  sim     deterministic simulation: `cargo xtask sim --seeds N [--start S] [--replicas R]`,
          `cargo xtask sim --seed S --trace` replays one seed
  soak    a 3-replica cluster under the 1000-client put load for minutes, each replica's memory
          and data directory sampled and plotted, writes read back, digests compared:
          `cargo xtask soak [--minutes 3] [--keys 100000] [--value-bytes 100] [--log-bytes N]
          [--max-memory-mb X] [--max-disk-mb Y]` (docs/OPERATIONS.md, Soak test)
  tidy    repository rules: //! headers, crate layering, PURE crates stay pure
  help    this text; `cargo xtask help <task>` shows that task's flags
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_else(|| "help".to_owned());
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "bench" => bench::run(&rest),
        "chaos" => chaos::run(&rest),
        "ci" => ci::run(&rest),
        "cluster" => cluster::run(&rest),
        "demo" => demo::run(&rest),
        "deploy-test" => deploy::run(&rest),
        "disk-faults" => disk_faults::run(&rest),
        "package" => package::run(&rest),
        "fuzz" => fuzz::run(&rest),
        "sim" => sim::run(&rest),
        "soak" => soak::run(&rest),
        "tidy" => {
            let TidyArgs {} = parse_args("tidy", &rest)?;
            tidy::run()
        }
        "help" | "-h" | "--help" => match rest.first() {
            Some(task) => {
                let mut command =
                    command_of(task).with_context(|| format!("unknown task {task:?}\n\n{HELP}"))?;
                command.print_long_help()?;
                Ok(())
            }
            None => {
                print!("{HELP}");
                Ok(())
            }
        },
        other => bail!("unknown task {other:?}\n\n{HELP}"),
    }
}

/// Checks the repository's rules: every `.rs` file starts with a `//!` line, no file cites a
/// document outside the repository, crates depend only along the layering, and the PURE crates
/// stay pure.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask tidy", bin_name = "cargo xtask tidy")]
struct TidyArgs {}

/// The argument parser of `task` (its `#[derive(Parser)]` struct), or `None` for an unknown task.
fn command_of(task: &str) -> Option<clap::Command> {
    use clap::CommandFactory;
    Some(match task {
        "bench" => bench::Args::command(),
        "chaos" => chaos::Args::command(),
        "ci" => ci::Args::command(),
        "cluster" => cluster::Args::command(),
        "demo" => demo::Args::command(),
        "package" => package::Args::command(),
        "deploy-test" => deploy::Args::command(),
        "disk-faults" => disk_faults::Args::command(),
        "fuzz" => fuzz::Args::command(),
        "sim" => sim::Args::command(),
        "soak" => soak::Args::command(),
        "tidy" => TidyArgs::command(),
        _ => return None,
    })
}

/// Parses the arguments of `cargo xtask <task>` with the task's parser `T`, the one
/// parser every task shares (tasks also call each other through it, as `ci` runs `sim`).
///
/// `--help` prints the task's usage and exits; an unknown flag or a bad value is an
/// error that names it and shows the usage.
pub(crate) fn parse_args<T: clap::Parser>(task: &str, args: &[String]) -> Result<T> {
    let argv = std::iter::once(format!("cargo xtask {task}")).chain(args.iter().cloned());
    match T::try_parse_from(argv) {
        Ok(parsed) => Ok(parsed),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            bail!("{}", text.trim_end().trim_start_matches("error: "))
        }
    }
}

/// The workspace root (the parent of this crate's manifest directory).
///
/// Read at run time: `cargo run` sets `CARGO_MANIFEST_DIR` for the program.
/// The compile-time value is only a fallback, because cargo reuses a build
/// from a shared `CARGO_TARGET_DIR` whatever directory the workspace was
/// cloned to. CI's cache once held an xtask built in another clone, which
/// then ran every step in that clone's (deleted) directory.
pub(crate) fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().expect("xtask lives one level below the workspace root").to_path_buf()
}

/// Runs `cmd` in the workspace root, echoing it, and fails if it fails.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(project_root());
    eprintln!("$ {}", display(cmd));
    let status = cmd.status().with_context(|| format!("cannot start {}", display(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", display(cmd));
    }
    Ok(())
}

fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Where cargo puts build output.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| project_root().join("target"), PathBuf::from)
}

/// `cargo`, as the running cargo named it.
///
/// Without the variables `cargo run` set for xtask itself (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, ...): some build scripts (ring's) track them, so a nested build
/// that saw them would not reuse, and would invalidate, what a plain `cargo build` built.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo_run = key.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&key.as_ref());
        if set_by_cargo_run {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd
}

/// A word in every watchdog's command line, so that a reused pid is not taken for one;
/// the task's name follows it.
const WATCHDOG_MARK: &str = "synod-xtask-watchdog";

/// Where the watchdog of task `name` keeps its pid while it lives.
fn watchdog_pid_file(name: &str) -> PathBuf {
    target_dir().join(format!("{name}-watchdog.pid"))
}

/// Starts a detached shell that waits for this process to end, however it
/// ends (Ctrl-C and SIGKILL included), then runs `cleanup`: in a process
/// group of its own and with no stdio of ours, so that it outlives xtask.
/// The chaos lab and the etcd comparison clean up with one. It keeps its
/// pid in a file for [`wait_for_earlier_watchdog`] while it lives.
pub(crate) fn spawn_watchdog(name: &str, cleanup: &str) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let pid_file = watchdog_pid_file(name);
    if let Some(dir) = pid_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let own = shell_quote(&pid_file);
    // The file is removed only while it still names this watchdog: a later
    // run's watchdog may have replaced it.
    let script = format!(
        ": {WATCHDOG_MARK}-{name}; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         {cleanup}; [ \"$(cat {own} 2>/dev/null)\" = \"$$\" ] && rm -f {own}",
        pid = std::process::id(),
    );
    let child = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    // Written here, before this returns, and renamed into place whole, so a
    // later run never reads a half-written or missing pid for a live watchdog.
    let tmp = pid_file.with_extension("pid.tmp");
    std::fs::write(&tmp, child.id().to_string())?;
    std::fs::rename(&tmp, &pid_file)
}

/// `path` in single quotes for `sh`.
pub(crate) fn shell_quote(path: &std::path::Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Waits until the watchdog of an earlier run of task `name` has finished.
///
/// A run that ends leaves its watchdog to clean up what it started; a run
/// started meanwhile would lose its own processes and files to that
/// cleanup. The wait is short after a finished run (the watchdog notices
/// within half a second); a watchdog that outlives `limit` belongs to a run
/// still going, and this one refuses to start beside it.
pub(crate) fn wait_for_earlier_watchdog(name: &str, limit: std::time::Duration) -> Result<()> {
    wait_for_watchdog_in(&watchdog_pid_file(name), &format!("{WATCHDOG_MARK}-{name}"), limit).with_context(
        || format!("another `cargo xtask {name}` run is still going; wait for it to end, or stop it"),
    )
}

fn wait_for_watchdog_in(pid_file: &std::path::Path, mark: &str, limit: std::time::Duration) -> Result<()> {
    use std::time::{Duration, Instant};
    let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok()) else {
        return Ok(());
    };
    let alive = || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(mark))
    };
    let began = Instant::now();
    let mut told = false;
    while alive() {
        if began.elapsed() >= limit {
            bail!("its watchdog, pid {pid}, is still waiting after {limit:?}");
        }
        if !told && began.elapsed() >= Duration::from_secs(1) {
            eprintln!("xtask: waiting for an earlier run to finish cleaning up (watchdog pid {pid})");
            told = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Installs a Debian package with apt-get (updating the package lists once if the first try fails).
pub(crate) fn apt_install(package: &str) -> Result<()> {
    use std::process::Stdio;
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    eprintln!("xtask: apt-get install {package} failed; running apt-get update and trying again");
    run_cmd(Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null()),
    )
}

/// The `protoc` that the etcd client's build script runs (prost-build reads `PROTOC`):
/// the binary shipped inside the protoc-bin-vendored crate, so no command needs a
/// system package, root or apt-get for it. Only builds with synod-bench's `etcd`
/// feature need it.
pub(crate) fn vendored_protoc() -> Result<PathBuf> {
    protoc_bin_vendored::protoc_bin_path()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the protoc-bin-vendored crate has no protoc for this platform")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_run_waits_for_an_earlier_runs_cleanup() {
        let dir = std::env::temp_dir().join(format!("synod-watchdog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("watchdog.pid");
        // No file, or a pid that is not a watchdog (this test's own): no wait.
        let mark = format!("{WATCHDOG_MARK}-test");
        wait_for_watchdog_in(&pid_file, &mark, Duration::ZERO).unwrap();
        std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
        wait_for_watchdog_in(&pid_file, &mark, Duration::ZERO).unwrap();
        // A watchdog still cleaning up: wait until it is gone.
        let sh = |secs: &str| {
            let child =
                Command::new("sh").args(["-c", &format!(": {mark}; sleep {secs}; :")]).spawn().unwrap();
            // Until its exec, a child's command line is still this test's.
            let cmdline = format!("/proc/{}/cmdline", child.id());
            while !std::fs::read(&cmdline).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&mark)) {
                std::thread::sleep(Duration::from_millis(1));
            }
            child
        };
        let mut child = sh("0.3");
        std::fs::write(&pid_file, child.id().to_string()).unwrap();
        let reaper = std::thread::spawn(move || child.wait());
        let began = Instant::now();
        wait_for_watchdog_in(&pid_file, &mark, Duration::from_secs(10)).unwrap();
        assert!(began.elapsed() >= Duration::from_millis(200), "returned before the watchdog ended");
        reaper.join().unwrap().unwrap();
        // One that outlives the limit belongs to a run still going: refuse.
        let mut child = sh("5");
        std::fs::write(&pid_file, child.id().to_string()).unwrap();
        // Another task's watchdog is not waited for.
        wait_for_watchdog_in(&pid_file, &format!("{WATCHDOG_MARK}-other"), Duration::ZERO).unwrap();
        let err = wait_for_watchdog_in(&pid_file, &mark, Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("still waiting"), "{err}");
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_task_has_its_own_usage() {
        for task in [
            "bench",
            "chaos",
            "ci",
            "cluster",
            "demo",
            "deploy-test",
            "disk-faults",
            "fuzz",
            "package",
            "sim",
            "soak",
            "tidy",
        ] {
            // The overview names the task on a line of its own.
            assert!(HELP.lines().any(|l| l.starts_with(&format!("  {task} "))), "{task} is not in HELP");
            let mut command = command_of(task).unwrap_or_else(|| panic!("no parser for {task}"));
            command.clone().debug_assert();
            let help = command.render_long_help().to_string();
            assert!(help.contains(&format!("Usage: cargo xtask {task}")), "{help}");
            // A sentence saying what the task does comes first.
            assert!(!help.starts_with("Usage"), "{task} has no description:\n{help}");
        }
        let bench = command_of("bench").unwrap().render_long_help().to_string();
        for flag in
            ["--peer", "--clients", "--duration", "--warmup", "--puts", "--sessions", "--load-threads"]
        {
            assert!(bench.contains(flag), "{flag}:\n{bench}");
        }
        assert!(command_of("help").is_none() && command_of("nosuch").is_none());
    }

    #[test]
    fn unknown_flags_and_bad_values_are_errors() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let e = parse_args::<sim::Args>("sim", &args("--seeds 5 --bogus")).unwrap_err().to_string();
        assert!(e.contains("unexpected argument '--bogus'") && e.contains("Usage: cargo xtask sim"), "{e}");
        let e = parse_args::<sim::Args>("sim", &args("--seeds many")).unwrap_err().to_string();
        assert!(e.contains("invalid value 'many' for '--seeds"), "{e}");
        let e = parse_args::<cluster::Args>("cluster", &args("sideways")).unwrap_err().to_string();
        assert!(e.contains("possible values: up, down, status"), "{e}");
        assert!(parse_args::<TidyArgs>("tidy", &args("--fix")).is_err());
        assert!(parse_args::<package::Args>("package", &args("")).is_ok());
        assert!(parse_args::<package::Args>("package", &args("--no-verify")).is_err());
        assert!(parse_args::<ci::Args>("ci", &args("--sim-seeds 10")).is_ok());
        assert!(parse_args::<deploy::Args>("deploy-test", &args("")).is_ok());
        assert!(parse_args::<deploy::Args>("deploy-test", &args("--quick")).is_err());
        assert!(parse_args::<fuzz::Args>("fuzz", &args("--seconds 30")).is_ok());
        assert!(parse_args::<fuzz::Args>("fuzz", &args("--minutes 10 wal snapshot")).is_ok());
        assert!(parse_args::<fuzz::Args>("fuzz", &args("--seed-corpus")).is_ok());
        assert!(parse_args::<fuzz::Args>("fuzz", &args("--seed-corpus --seconds 5")).is_err());
        assert!(parse_args::<fuzz::Args>("fuzz", &args("--seconds soon")).is_err());
        assert!(parse_args::<disk_faults::Args>("disk-faults", &args("--quick")).is_ok());
        assert!(parse_args::<disk_faults::Args>("disk-faults", &args("--delay-ms soon")).is_err());
    }
}
