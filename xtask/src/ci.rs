//! `cargo xtask ci`: the one definition of CI.

use anyhow::Result;

use crate::{cargo, run_cmd};

/// What CI runs: the format check, clippy with -D warnings, the tests, the docs with
/// -D warnings, the packaging check, the standalone consumer's test, the embedding example, the
/// planted bugs the simulator and the model check must find, the simulator with 3 and 5 replicas, the chaos lab's quick run, and the deployment guide
/// run as written (`deploy-test`), and a replica's slow and failing fsyncs (`disk-faults --quick`).
#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask ci", bin_name = "cargo xtask ci")]
pub(crate) struct Args {
    /// Seeds for each of the two simulator runs.
    #[arg(long, value_name = "N", default_value = "1000")]
    sim_seeds: String,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Args { sim_seeds: seeds } = crate::parse_args("ci", args)?;
    run_cmd(cargo().args(["fmt", "--all", "--check"]))?;
    crate::tidy::run()?;
    run_cmd(cargo().args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    // The load generator's etcd backend is behind a feature that only `bench --peer etcd`
    // turns on; lint it too, with the vendored protoc its build needs.
    run_cmd(
        cargo()
            .args(["clippy", "-p", "synod-bench", "--all-targets", "--features", "etcd", "--locked"])
            .args(["--", "-D", "warnings"])
            .env("PROTOC", crate::vendored_protoc()?),
    )?;
    run_cmd(cargo().args(["test", "--workspace", "--locked"]))?;
    run_cmd(
        cargo().args(["doc", "--workspace", "--no-deps", "--locked"]).env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // Every published crate packs and builds from its package alone.
    crate::package::run(&[])?;
    // A crate outside the workspace uses the published crates as a user would: its own
    // manifest and lockfile, the synod crates by version (and path), three replicas and a client.
    let standalone = ["--manifest-path", "examples/standalone/Cargo.toml"];
    run_cmd(cargo().args(["fmt", "--check"]).args(standalone))?;
    run_cmd(cargo().args(["test", "--locked"]).args(standalone))?;
    // The embedding example must run, not just build.
    run_cmd(cargo().args(["run", "--locked", "--quiet", "-p", "synod-examples", "--example", "ledger"]))?;
    // The simulator must be able to fail: planted bugs must be found.
    run_cmd(cargo().args([
        "test",
        "--release",
        "--locked",
        "-p",
        "synod-sim",
        "--features",
        "planted-bugs",
        "--test",
        "it",
        "planted",
    ]))?;
    // So must the model check of the core (crates/synod-paxos/tests/it/model.rs).
    run_cmd(cargo().args([
        "test",
        "--locked",
        "-p",
        "synod-paxos",
        "--features",
        "planted-bugs",
        "--test",
        "it",
        "model::planted",
    ]))?;
    // Every fuzz target for 30 seconds (libFuzzer needs a nightly toolchain; CI machines have one).
    match crate::fuzz::nightly() {
        Ok(()) => crate::fuzz::run(&["--seconds".to_owned(), "30".to_owned()])?,
        Err(why) => eprintln!("ci: fuzzing skipped: {why} (`rustup toolchain install nightly` enables it)"),
    }
    crate::sim::run(&["--seeds".to_owned(), seeds.clone()])?;
    crate::sim::run(&["--seeds".to_owned(), seeds, "--replicas".to_owned(), "5".to_owned()])?;
    // Real processes, real network faults, the history checked for linearizability.
    crate::chaos::run(&["--quick".to_owned()])?;
    // docs/DEPLOY.md run as written on four pretend hosts; the dashboard's and alerts' metrics.
    crate::deploy::run(&[])?;
    // Slow and failing disks under real replicas (faultfs over FUSE; skipped without /dev/fuse).
    crate::disk_faults::run(&["--quick".to_owned()])?;
    eprintln!("ci: all checks passed");
    Ok(())
}
