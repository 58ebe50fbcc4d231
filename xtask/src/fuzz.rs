//! `cargo xtask fuzz`: builds the libFuzzer targets in `fuzz/` and runs each for a while, one after another.
//!
//! ```text
//! cargo xtask fuzz [--minutes M] [--seconds S] [TARGET...]   # every target (or those named), 60 s each by default
//! cargo xtask fuzz --seed-corpus                             # writes fuzz/corpus/<target>/ from real data
//! cargo xtask fuzz --merge [TARGET...]                       # shrinks the committed corpus to what adds coverage
//! ```
//!
//! Needs a nightly toolchain (libFuzzer's instrumentation is nightly-only) and cargo-fuzz, which this
//! installs when it is missing. Each target runs on the committed corpus `fuzz/corpus/<target>/`; what
//! it finds new goes to a scratch corpus beside the build, not into the repository. Prints each
//! target's executions, exec/s, CPU seconds, coverage and features, then a total line; a crash fails
//! the command and says where its input is and how to replay it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{project_root, run_cmd};

/// Builds the fuzz targets (fuzz/) with the nightly toolchain and runs each for a while, one after
/// another, on the committed corpus `fuzz/corpus/<target>/`; prints each one's executions, exec/s, CPU
/// seconds, coverage and features. A crash fails the command and names its input and how to replay it.
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask fuzz", bin_name = "cargo xtask fuzz")]
pub(crate) struct Args {
    /// Minutes per target (added to --seconds; both unset: 60 seconds).
    #[arg(long, value_name = "M")]
    minutes: Option<u64>,
    /// Seconds per target.
    #[arg(long, value_name = "S")]
    seconds: Option<u64>,
    /// Instead of fuzzing: write the seed corpus, `fuzz/corpus/<target>/`, from real encoded messages,
    /// frames, a log and a snapshot of a short run, config files and Redis commands.
    #[arg(long, conflicts_with_all = ["minutes", "seconds", "merge"])]
    seed_corpus: bool,
    /// Instead of fuzzing: shrink each committed corpus, with what earlier runs found, to the inputs
    /// that add coverage (libFuzzer's -merge=1).
    #[arg(long, conflicts_with_all = ["minutes", "seconds"])]
    merge: bool,
    /// The targets (default: every one in fuzz/Cargo.toml).
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
}

/// libFuzzer's numbers for one run of one target.
#[derive(Debug, Default, Clone, PartialEq)]
struct Stats {
    execs: u64,
    exec_per_sec: u64,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<u64>,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let args: Args = crate::parse_args("fuzz", args)?;
    let all = targets()?;
    for t in &args.targets {
        if !all.contains(t) {
            bail!("no fuzz target {t:?}; the targets are {}", all.join(", "));
        }
    }
    let targets = if args.targets.is_empty() { all } else { args.targets.clone() };
    if args.seed_corpus {
        return seed_corpus();
    }
    if let Err(why) = nightly() {
        bail!(
            "{why}. libFuzzer needs a nightly toolchain: install one with \
             `rustup toolchain install nightly --profile minimal`, then run this again"
        );
    }
    ensure_cargo_fuzz()?;
    build(&targets)?;
    if args.merge {
        for t in &targets {
            merge(t)?;
        }
        return Ok(());
    }
    let secs = args.minutes.unwrap_or(0) * 60 + args.seconds.unwrap_or(0);
    let secs = if args.minutes.is_none() && args.seconds.is_none() { 60 } else { secs.max(1) };
    let mut crashes = Vec::new();
    let mut total = (0u64, 0f64, Duration::ZERO);
    for t in &targets {
        let outcome = fuzz(t, secs)?;
        total.0 += outcome.stats.execs;
        total.1 += outcome.cpu_secs;
        total.2 += outcome.wall;
        if let Some(c) = outcome.crash {
            crashes.push(c);
        }
    }
    println!(
        "fuzz: {} targets, {} executions, {:.0} CPU seconds, {:.0} s, {} crashed",
        targets.len(),
        total.0,
        total.1,
        total.2.as_secs_f64(),
        crashes.len()
    );
    if !crashes.is_empty() {
        bail!("fuzzing found crashes:\n{}", crashes.join("\n"));
    }
    Ok(())
}

/// `Ok` if a nightly toolchain is installed, else why not (for CI's skip message too).
pub(crate) fn nightly() -> Result<(), String> {
    let listed = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with("nightly")));
    let works = || {
        Command::new("cargo")
            .args(["+nightly", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    match listed {
        Some(true) if works() => Ok(()),
        Some(true) => Err("rustup lists a nightly toolchain but `cargo +nightly --version` fails".into()),
        Some(false) => Err("rustup has no nightly toolchain (`rustup toolchain list`)".into()),
        None => Err("there is no rustup to run a nightly toolchain with".into()),
    }
}

/// `cargo +nightly`: the rustup proxy (only it reads `+nightly`), not the toolchain's cargo that runs
/// xtask, and with none of the variables that cargo set for xtask (a nested cargo or cargo-fuzz would
/// take `CARGO` and `RUSTC` for the ones to use).
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for (key, value) in crate::cargo().get_envs() {
        if value.is_none() {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("CARGO").env_remove("RUSTC").env_remove("RUSTUP_TOOLCHAIN").arg("+nightly");
    cmd
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        eprintln!(
            "fuzz: cargo-fuzz is missing: installing it with `cargo install cargo-fuzz --locked` \
             (built from crates.io into ~/.cargo/bin, a minute or two)"
        );
        run_cmd(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// Where the fuzz targets are built: beside the main build's directory (`fuzz-target`) when
/// `CARGO_TARGET_DIR` names one, else `fuzz/target`. Never the main one: the nightly build with
/// sanitizer flags would fight over it with ordinary builds.
fn fuzz_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            dir.parent().map_or_else(|| project_root().join("fuzz/target"), |p| p.join("fuzz-target"))
        }
        None => project_root().join("fuzz/target"),
    }
}

/// The built binary of `target`.
fn binary(target: &str) -> PathBuf {
    fuzz_target_dir().join(host_triple()).join("release").join(target)
}

fn host_triple() -> String {
    Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .unwrap_or_else(|| "x86_64-unknown-linux-gnu".to_owned())
}

/// The targets fuzz/Cargo.toml declares (its `[[bin]]` names), in order.
fn targets() -> Result<Vec<String>> {
    let path = project_root().join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bin_names(&text))
}

fn bin_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(v) = line.strip_prefix("name").map(str::trim_start) {
            if in_bin {
                if let Some(v) = v.strip_prefix('=') {
                    names.push(v.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    names
}

fn build(targets: &[String]) -> Result<()> {
    let began = Instant::now();
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "build", "--fuzz-dir", "fuzz", "--target-dir"]).arg(fuzz_target_dir());
    if targets.len() == 1 {
        cmd.arg(&targets[0]);
    }
    run_cmd(&mut cmd)?;
    eprintln!("fuzz: built in {:.0} s", began.elapsed().as_secs_f64());
    Ok(())
}

/// The committed corpus of `target`.
fn corpus(target: &str) -> PathBuf {
    project_root().join("fuzz/corpus").join(target)
}

/// What runs found beyond the committed corpus, kept with the build.
fn scratch(target: &str) -> PathBuf {
    fuzz_target_dir().join("corpus").join(target)
}

struct Outcome {
    stats: Stats,
    cpu_secs: f64,
    wall: Duration,
    crash: Option<String>,
}

/// Runs `target` for `secs` seconds.
fn fuzz(target: &str, secs: u64) -> Result<Outcome> {
    let (corpus, scratch) = (corpus(target), scratch(target));
    let artifacts = project_root().join("fuzz/artifacts").join(target);
    for dir in [&corpus, &scratch, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log_path = fuzz_target_dir().join("logs").join(format!("{target}.log"));
    std::fs::create_dir_all(log_path.parent().expect("a directory"))?;
    let mut log = std::fs::File::create(&log_path)?;
    let bin = binary(target);
    let mut cmd = Command::new(&bin);
    // New inputs go to the first directory, the scratch one; the committed corpus is only read.
    cmd.arg(&scratch)
        .arg(&corpus)
        .arg(format!("-max_total_time={secs}"))
        .arg("-print_final_stats=1")
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .current_dir(project_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("fuzz: {target} for {secs} s (log: {})", log_path.display());
    let cpu_before = children_cpu_secs();
    let began = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
    // libFuzzer writes everything to stderr; stdout is the target's own (nothing, normally).
    let stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        s
    });
    let mut text = String::new();
    for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
        let line = line.unwrap_or_default();
        let _ = writeln!(log, "{line}");
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait()?;
    let wall = began.elapsed();
    let cpu_secs = children_cpu_secs() - cpu_before;
    let _ = log.write_all(out_thread.join().unwrap_or_default().as_bytes());
    let stats = parse_stats(&text);
    println!(
        "fuzz: {target:<9} {:>11} execs {:>8} exec/s {:>7.1} CPU s  cov {:>6} ft {:>7} corpus {}",
        stats.execs,
        stats.exec_per_sec,
        cpu_secs,
        stats.cov.map_or("?".into(), |v| v.to_string()),
        stats.ft.map_or("?".into(), |v| v.to_string()),
        stats.corpus.map_or("?".into(), |v| v.to_string()),
    );
    let crash = (!status.success()).then(|| {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        match crash_input(&text) {
            Some(input) => format!(
                "{target}: {status}; the input is {input}; replay it with `{} {input}` or `cargo +nightly fuzz \
                 run --fuzz-dir fuzz {target} {input}`, and make it a regression test in the crate that owns \
                 the decoder (fuzz/README.md)",
                bin.display()
            ),
            None => format!("{target}: {status} with no input saved; see {}", log_path.display()),
        }
    });
    Ok(Outcome { stats, cpu_secs, wall, crash })
}

/// The file libFuzzer saved the crashing input to.
fn crash_input(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (_, rest) = l.split_once("Test unit written to ")?;
        Some(rest.trim().to_owned())
    })
}

/// libFuzzer's final statistics (`-print_final_stats=1`) and its last status line (`cov:`, `ft:`).
fn parse_stats(text: &str) -> Stats {
    let mut stats = Stats::default();
    for line in text.lines() {
        if let Some((key, value)) = line.rsplit_once(':') {
            let value = value.trim().parse().ok();
            match key.trim() {
                "stat::number_of_executed_units" => stats.execs = value.unwrap_or(0),
                "stat::average_exec_per_sec" => stats.exec_per_sec = value.unwrap_or(0),
                _ => {}
            }
        }
        if line.starts_with('#') {
            let field = |name: &str| -> Option<u64> {
                let mut words = line.split_whitespace();
                words.find(|w| *w == name)?;
                // `corp:` reads `units/bytes`.
                words.next()?.split('/').next()?.parse().ok()
            };
            stats.cov = field("cov:").or(stats.cov);
            stats.ft = field("ft:").or(stats.ft);
            stats.corpus = field("corp:").or(stats.corpus);
        }
    }
    stats
}

/// CPU seconds (user + system) of this process's finished children, from /proc/self/stat.
fn children_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // After the command name in parentheses: fields 3 on; cutime and cstime are the 16th and 17th.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(16) + ticks(17)) as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Rebuilds `target`'s committed corpus as the inputs of it and of the scratch corpus that add coverage.
fn merge(target: &str) -> Result<()> {
    let (corpus, scratch) = (corpus(target), scratch(target));
    std::fs::create_dir_all(&scratch)?;
    let merged = fuzz_target_dir().join("merged").join(target);
    let _ = std::fs::remove_dir_all(&merged);
    std::fs::create_dir_all(&merged)?;
    run_cmd(
        Command::new(binary(target))
            .arg("-merge=1")
            .arg(&merged)
            .arg(&corpus)
            .arg(&scratch)
            .stderr(Stdio::null()),
    )?;
    let _ = std::fs::remove_dir_all(&corpus);
    copy_dir(&merged, &corpus)?;
    let (files, bytes) = dir_size(&corpus)?;
    println!("fuzz: {target:<9} corpus merged: {files} files, {} KiB", bytes / 1024);
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

fn dir_size(dir: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        files += 1;
        bytes += entry?.metadata()?.len();
    }
    Ok((files, bytes))
}

/// Writes the seed corpus with the generator in fuzz/seed: any toolchain builds it, the nightly (when
/// there is one) with what the fuzz build already built.
fn seed_corpus() -> Result<()> {
    let mut cmd = if nightly().is_ok() { nightly_cargo() } else { crate::cargo() };
    cmd.args(["run", "--quiet", "--release", "--manifest-path", "fuzz/Cargo.toml", "-p", "synod-fuzz-seed"])
        .arg("--target-dir")
        .arg(fuzz_target_dir())
        .arg("--")
        .arg(project_root().join("fuzz/corpus"));
    run_cmd(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_final_stats() {
        let text = "\
#2\tINITED cov: 310 ft: 512 corp: 12/3456b exec/s: 0 rss: 40Mb
#4096\tpulse  cov: 330 ft: 600 corp: 14/4000b lim: 4096 exec/s: 2048 rss: 41Mb
#53123\tDONE   cov: 341 ft: 655 corp: 17/5Kb lim: 4096 exec/s: 1770 rss: 45Mb
Done 53123 runs in 31 second(s)
stat::number_of_executed_units: 53123
stat::average_exec_per_sec:     1713
stat::new_units_added:          5
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              45
";
        let stats = parse_stats(text);
        assert_eq!(
            stats,
            Stats { execs: 53123, exec_per_sec: 1713, cov: Some(341), ft: Some(655), corpus: Some(17) }
        );
        let crash = "==1== ERROR: libFuzzer: deadly signal\nartifact_prefix='x/'; Test unit written to fuzz/artifacts/wal/crash-abc\n";
        assert_eq!(crash_input(crash).as_deref(), Some("fuzz/artifacts/wal/crash-abc"));
    }

    #[test]
    fn lists_the_targets_of_the_manifest() {
        let manifest = "[package]\nname = \"synod-fuzz\"\n\n[[bin]]\nname = \"frame\"\npath = \"a.rs\"\n\n\
                        [dependencies]\nname = 1\n\n[[bin]]\nname = \"wire\"\n";
        assert_eq!(bin_names(manifest), ["frame", "wire"]);
        // The real manifest: every target has a corpus directory name and a source file.
        let names = targets().unwrap();
        assert!(names.len() >= 6, "{names:?}");
        for n in &names {
            assert!(project_root().join(format!("fuzz/fuzz_targets/{n}.rs")).exists(), "{n}");
        }
    }
}
