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

/// Runs the deterministic simulator over many seeds, split over the cores, or replays one seed.
///
/// Ends with the line `N seeds, K violations`; each failing seed prints the command that
/// replays it, and the exit status is non-zero.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask sim", bin_name = "cargo xtask sim")]
pub(crate) struct Args {
    /// How many seeds to run.
    #[arg(long, value_name = "N", default_value_t = 100)]
    seeds: u64,
    /// The first seed of the run.
    #[arg(long, value_name = "S", default_value_t = 0)]
    start: u64,
    /// Replicas per simulated cluster.
    #[arg(long, value_name = "R", default_value = "3")]
    replicas: String,
    /// Replays this one seed instead of a run of seeds.
    #[arg(long, value_name = "S")]
    seed: Option<String>,
    /// With --seed: prints a readable trace of the replay.
    #[arg(long)]
    trace: bool,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Args { seeds, start, replicas, seed: single, trace } = crate::parse_args("sim", args)?;
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
