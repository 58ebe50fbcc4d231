//! `cargo xtask bench [what]`: benchmarks, run in release mode, reporting numbers (never pass/fail on time).
//!
//! With no argument (or `all`): the micro-benchmarks, then the comparison with etcd in its
//! quick form. `micro`: the micro-benchmarks only. `core`, `wire`, `log`, `transport`: one
//! of them (further arguments go to it). `--peer etcd [...]`: the comparison (`peer.rs`).

mod etcd;
mod peer;
mod svg;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::{cargo, run_cmd};

const MICRO: &str = "core wire log transport";

pub(crate) fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        None | Some("all") => {
            if args.len() > 1 {
                bail!("`cargo xtask bench all` takes no further arguments");
            }
            micro(&MICRO.split(' ').collect::<Vec<_>>(), &[])?;
            eprintln!(
                "== bench: synod against etcd (quick; `cargo xtask bench --peer etcd` for the full run)"
            );
            peer::run(&["--peer".to_owned(), "etcd".to_owned(), "--quick".to_owned()])
        }
        Some("micro") => micro(&MICRO.split(' ').collect::<Vec<_>>(), &args[1..]),
        Some(a) if a.starts_with("--") => peer::run(args),
        Some(one) if MICRO.split(' ').any(|w| w == one) => micro(&[one], &args[1..]),
        Some(other) => {
            bail!("unknown benchmark {other:?}; known: {MICRO}, micro, all, or --peer etcd [options]")
        }
    }
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
fn stop_pid_file(path: &Path, name: &str) {
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
