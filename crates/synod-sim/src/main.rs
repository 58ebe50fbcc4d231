//! `synod-sim`: runs seeded simulations and reports violated invariants (driven by `cargo xtask sim`).

use std::process::ExitCode;
use std::time::Instant;

use synod_sim::{run, SimConfig};

const USAGE: &str = "usage: synod-sim [--seeds N] [--start S] [--replicas R] [--seed S --trace]";

fn main() -> ExitCode {
    let mut seeds = 100u64;
    let mut start = 0u64;
    let mut replicas = 3u32;
    let mut single = None;
    let mut trace = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Option<u64> {
            let v = args.next().and_then(|v| v.parse().ok());
            if v.is_none() {
                eprintln!("{name} needs a number\n{USAGE}");
            }
            v
        };
        match arg.as_str() {
            "--seeds" => match value("--seeds") {
                Some(v) => seeds = v,
                None => return ExitCode::from(2),
            },
            "--start" => match value("--start") {
                Some(v) => start = v,
                None => return ExitCode::from(2),
            },
            "--replicas" => match value("--replicas") {
                Some(v) if v % 2 == 1 && v <= 9 => replicas = v as u32,
                _ => {
                    eprintln!("--replicas needs an odd number up to 9\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--seed" => match value("--seed") {
                Some(v) => single = Some(v),
                None => return ExitCode::from(2),
            },
            "--trace" => trace = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (first, count) = match single {
        Some(s) => (s, 1),
        None => (start, seeds),
    };
    // The runner, not the simulation, reads the clock: only to report seeds per second.
    #[allow(clippy::disallowed_methods)]
    let began = Instant::now();
    let mut violations = 0u64;
    let (mut ops, mut slots, mut crashes, mut fsyncs, mut cuts, mut elections) = (0, 0, 0, 0, 0, 0);
    let (mut snapshots, mut installs, mut wipes, mut busy) = (0, 0, 0, 0);
    let (mut reads, mut changes) = (0, 0);
    for seed in first..first + count {
        let mut cfg = SimConfig::with_replicas(seed, replicas);
        cfg.trace = trace;
        let report = run(&cfg);
        for line in &report.trace {
            println!("{line}");
        }
        ops += report.ops;
        slots += report.slots;
        crashes += report.crashes;
        fsyncs += report.fsync_failures;
        cuts += report.cuts;
        elections += report.elections;
        snapshots += report.snapshots;
        installs += report.installs;
        busy += report.busy;
        wipes += report.wipes;
        reads += report.reads;
        changes += report.changes.1;
        if !report.violations.is_empty() {
            violations += 1;
            for v in &report.violations {
                println!("seed {seed}: {v}");
            }
            println!("  replay: cargo xtask sim --seed {seed} --replicas {replicas} --trace");
        }
    }
    let secs = began.elapsed().as_secs_f64();
    eprintln!(
        "{replicas} replicas: {ops} client ops, {slots} slots, {crashes} crashes ({fsyncs} after failed fsyncs), {cuts} link cuts, {elections} elections, {snapshots} snapshots written, {installs} installed from peers, {wipes} disks lost, {changes} membership changes, {reads} reads outside the log checked, {busy} requests answered Busy, in {secs:.1} s ({:.1} seeds/s)",
        count as f64 / secs.max(1e-9)
    );
    println!("{count} seeds, {violations} violations");
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
