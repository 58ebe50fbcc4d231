//! Shared helpers for synod's benchmark binaries: timing loops and result lines.
#![warn(missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use synod_client::ClientConfig;

/// Runs `f` repeatedly for about `budget` and returns operations per second.
///
/// `f` performs `ops` operations per call; the loop first warms up for a
/// tenth of the budget, then measures.
pub fn rate(budget: Duration, ops: u64, mut f: impl FnMut()) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        f();
    }
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < budget {
        f();
        done += ops;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Formats a rate with a k/M suffix.
pub fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

/// The median of `xs` (which it sorts).
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        0.0
    } else {
        xs[xs.len() / 2]
    }
}

/// Reads the client file `cargo xtask cluster` writes (the format `synod put --client` reads),
/// with synod-client's one loader of it.
pub fn client_config(path: &Path) -> Result<ClientConfig> {
    Ok(ClientConfig::load(path)?)
}
