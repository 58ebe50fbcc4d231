//! `cargo xtask bench [what]`: benchmarks, run in release mode, reporting numbers (never pass/fail on time).

use anyhow::{bail, Result};

use crate::{cargo, run_cmd};

const WHAT: &str = "core wire log transport";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let what: Vec<&str> = match args.first().map(String::as_str) {
        None | Some("all") => WHAT.split(' ').collect(),
        Some(one) if WHAT.split(' ').any(|w| w == one) => vec![one],
        Some(other) => bail!("unknown benchmark {other:?}; known: {WHAT}"),
    };
    for name in what {
        eprintln!("== bench {name}");
        run_cmd(
            cargo()
                .args(["run", "--release", "--locked", "-p", "synod-bench", "--bin", name, "--"])
                .args(&args[1.min(args.len())..]),
        )?;
    }
    Ok(())
}
