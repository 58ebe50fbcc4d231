//! `cargo xtask sim`: runs the deterministic simulator over many seeds, on every core.
//!
//! ```text
//! cargo xtask sim --seeds N [--start S] [--replicas R]   # N seeds from S (default 0), R replicas (default 3)
//! cargo xtask sim --seed S [--replicas R] --trace        # replay one seed with a readable trace
//! ```
//! Ends with the line `N seeds, K violations`; each failing seed prints the
//! command that replays it, and the exit status is non-zero.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{cargo, run_cmd, target_dir};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut seeds = 100u64;
    let mut start = 0u64;
    let mut replicas = "3".to_owned();
    let mut single: Option<String> = None;
    let mut trace = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seeds" => seeds = value()?.parse().context("--seeds takes a number")?,
            "--start" => start = value()?.parse().context("--start takes a number")?,
            "--replicas" => replicas = value()?,
            "--seed" => single = Some(value()?),
            "--trace" => trace = true,
            other => bail!("unknown argument {other:?} (see `cargo xtask help`)"),
        }
    }
    run_cmd(cargo().args(["build", "--release", "--quiet", "-p", "synod-sim"]))?;
    let bin = target_dir().join("release").join("synod-sim");
    if let Some(seed) = single {
        let mut cmd = Command::new(&bin);
        cmd.args(["--seed", &seed, "--replicas", &replicas]);
        if trace {
            cmd.arg("--trace");
        }
        let status = cmd.status().with_context(|| format!("running {}", bin.display()))?;
        if !status.success() {
            bail!("seed {seed} violated an invariant");
        }
        return Ok(());
    }
    // Split the seeds over the cores, one process each, and merge their reports.
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get()).min(seeds.max(1) as usize) as u64;
    let per = seeds.div_ceil(jobs);
    let mut children = Vec::new();
    let mut from = start;
    while from < start + seeds {
        let n = per.min(start + seeds - from);
        let child = Command::new(&bin)
            .args(["--seeds", &n.to_string(), "--start", &from.to_string(), "--replicas", &replicas])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", bin.display()))?;
        children.push(child);
        from += n;
    }
    let mut violations = 0u64;
    for mut child in children {
        let out = child.stdout.take().context("child stdout")?;
        for line in BufReader::new(out).lines() {
            let line = line?;
            if let Some(count) = line.strip_suffix(" violations") {
                let k: u64 = count.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0);
                violations += k;
            } else {
                println!("{line}");
            }
        }
        child.wait()?;
    }
    println!("{seeds} seeds, {violations} violations");
    if violations > 0 {
        bail!("{violations} seed(s) violated an invariant");
    }
    Ok(())
}
