//! synod-metrics: every metric name synod exports, their descriptions, the Prometheus exporter, and a scraper.
//!
//! The runtime records through the [`metrics`] facade using the names in
//! [`names`]; [`install`] makes the Prometheus recorder the process's
//! recorder and serves `GET /metrics`, `/health` and `/readyz` over HTTP
//! ([`http`], a small std-threads server; what the health endpoints say
//! comes from a callback, [`Health`]); [`scrape`] reads a metrics endpoint
//! back. [`ALL`] lists every metric with its kind and description, and
//! [`describe`] registers them.
//!
//! ```no_run
//! use synod_metrics::{install, names, scrape, Check, Health};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let addr = "127.0.0.1:9464".parse()?;
//! let _exporter = install(addr, || Health { healthy: Check::Pass, ready: Check::fail("catching up") })?;
//! metrics::counter!(names::PROPOSALS).increment(1);
//! metrics::gauge!(names::PEER_CONNECTED, names::LABEL_PEER => "2").set(1.0);
//! let scraped = scrape(addr)?;
//! assert_eq!(scraped.get(names::PROPOSALS), Some(1.0));
//! assert_eq!(scraped.get_labeled(names::PEER_CONNECTED, names::LABEL_PEER, "2"), Some(1.0));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod http;
pub mod names;
mod scrape;

use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

pub use http::{Check, Health};
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use names::{describe, Kind, Metric, ALL};
pub use scrape::{
    parse, scrape, scrape_with_timeout, ParseError, Sample, Scrape, ScrapeError, DEFAULT_TIMEOUT,
};

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The exporter's threads could not be started.
    #[error("cannot start the metrics exporter: {0}")]
    Runtime(#[source] std::io::Error),
    /// The HTTP listener could not bind `addr`.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The requested listen address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The exporter could not be configured, or another recorder is already installed.
    #[error("cannot install the metrics exporter on {addr}: {source}")]
    Build {
        /// The requested listen address.
        addr: SocketAddr,
        /// The exporter's reason.
        #[source]
        source: BuildError,
    },
}

/// Histogram buckets for latencies, in seconds: 50 us to 10 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0];

/// Histogram buckets for batch sizes, in commands.
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];

/// A running exporter: the recorder's handle and the HTTP server's address.
#[derive(Debug)]
pub struct Exporter {
    /// Renders what was recorded, in the Prometheus text format.
    pub handle: PrometheusHandle,
    /// Where `/metrics`, `/health` and `/readyz` are served.
    pub addr: SocketAddr,
}

/// How often the recorder's upkeep (draining histograms) runs.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the Prometheus recorder as the process's global recorder,
/// registers the descriptions, and serves on `addr`: `GET /metrics` (the
/// Prometheus text), `GET /health` and `GET /readyz` (200, or 503 with a
/// one-line JSON reason, as `health` says), and 404 for any other path.
///
/// The server runs on std threads of its own (see [`http`]), so it keeps
/// answering while the caller's runtime is busy. There is one recorder per
/// process: a second call fails with [`MetricsError::Build`].
pub fn install(
    addr: SocketAddr,
    health: impl Fn() -> Health + Send + Sync + 'static,
) -> Result<Exporter, MetricsError> {
    let build = |source| MetricsError::Build { addr, source };
    let mut builder = PrometheusBuilder::new();
    for metric in ALL.iter().filter(|m| m.kind == Kind::Histogram) {
        let buckets = if metric.name.ends_with("_seconds") { SECONDS_BUCKETS } else { COUNT_BUCKETS };
        builder =
            builder.set_buckets_for_metric(Matcher::Full(metric.name.to_owned()), buckets).map_err(build)?;
    }
    // Bind first: a taken port fails before the recorder is installed.
    let listener = std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| build(BuildError::from(e)))?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("synod-metrics-upkeep".to_owned())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP);
            upkeep.run_upkeep();
        })
        .map_err(MetricsError::Runtime)?;
    let server = http::Server::serve(listener, http::Routes::new(Some(handle.clone()), health))
        .map_err(MetricsError::Runtime)?;
    describe();
    // Every counter is exported from the start, at 0: a dashboard's rate() or an alert's
    // increase() then sees its first event (Busy replies, failed snapshots) as a change.
    for metric in ALL.iter().filter(|m| m.kind == Kind::Counter) {
        metrics::counter!(metric.name).increment(0);
    }
    Ok(Exporter { handle, addr: server.local_addr() })
}

/// Splits a 64-bit state digest into the two 32-bit gauges
/// [`names::STATE_DIGEST_HI`] and [`names::STATE_DIGEST_LO`]: a gauge is an
/// `f64`, which holds 32-bit integers exactly but not 64-bit ones.
pub fn set_state_digest(digest: u64) {
    let (hi, lo) = split_digest(digest);
    metrics::gauge!(names::STATE_DIGEST_HI).set(hi);
    metrics::gauge!(names::STATE_DIGEST_LO).set(lo);
}

/// Sets [`names::LOG_BYTES`] and [`names::DATA_DIR_BYTES`] from the files in
/// a replica's data directory `dir` (a handful of files: cheap to list every
/// few seconds), and [`names::SNAPSHOT_SLOT`] and [`names::SNAPSHOT_BYTES`]
/// from its newest snapshot file (0 and 0 before the first: so a restarted
/// replica shows the snapshot it restarted from). A directory that cannot be
/// read leaves them as they were.
pub fn record_data_dir(dir: &std::path::Path) {
    if let Some(sizes) = data_dir_sizes(dir) {
        metrics::gauge!(names::LOG_BYTES).set(sizes.log as f64);
        metrics::gauge!(names::DATA_DIR_BYTES).set(sizes.total as f64);
        let (slot, bytes) = sizes.snapshot.unwrap_or((0, 0));
        metrics::gauge!(names::SNAPSHOT_SLOT).set(slot as f64);
        metrics::gauge!(names::SNAPSHOT_BYTES).set(bytes as f64);
    }
}

/// What [`record_data_dir`] exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDirSizes {
    /// Bytes of the log's segment files (`segment-*.wal`).
    pub log: u64,
    /// Bytes of every file directly in the directory, snapshots included.
    pub total: u64,
    /// The newest snapshot file (`snapshot-<slot>.snap`): its slot and bytes.
    pub snapshot: Option<(u64, u64)>,
}

/// The sizes of the files in `dir`, or `None` if it cannot be read.
pub fn data_dir_sizes(dir: &std::path::Path) -> Option<DataDirSizes> {
    let mut sizes = DataDirSizes { log: 0, total: 0, snapshot: None };
    for entry in std::fs::read_dir(dir).ok().into_iter().flatten().filter_map(Result::ok) {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        sizes.total += meta.len();
        let name = entry.file_name();
        let name = name.to_str().unwrap_or("");
        if name.starts_with("segment-") && name.ends_with(".wal") {
            sizes.log += meta.len();
        }
        let slot = name.strip_prefix("snapshot-").and_then(|n| n.strip_suffix(".snap"));
        if let Some(slot) = slot.and_then(|s| s.parse::<u64>().ok()) {
            if sizes.snapshot.is_none_or(|(newest, _)| slot > newest) {
                sizes.snapshot = Some((slot, meta.len()));
            }
        }
    }
    std::fs::metadata(dir).ok().filter(std::fs::Metadata::is_dir).map(|_| sizes)
}

/// The two halves of `digest` as gauge values (high 32 bits, low 32 bits).
pub fn split_digest(digest: u64) -> (f64, f64) {
    (f64::from((digest >> 32) as u32), f64::from(digest as u32))
}

/// Reassembles a digest from its two gauge values, as read by [`scrape`];
/// `None` unless both are integers in `0..2^32`.
pub fn join_digest(hi: f64, lo: f64) -> Option<u64> {
    let half = |v: f64| (v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v)).then_some(v as u64);
    Some(half(hi)? << 32 | half(lo)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_sizes_count_segments_as_log_and_every_file_in_total() {
        let dir = std::env::temp_dir().join(format!("synod-metrics-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(data_dir_sizes(&dir), None);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(data_dir_sizes(&dir), Some(DataDirSizes { log: 0, total: 0, snapshot: None }));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("segment-00000000000000000000.wal"), [0u8; 100]).unwrap();
        std::fs::write(dir.join("segment-00000000000000000100.wal"), [0u8; 20]).unwrap();
        std::fs::write(dir.join("snapshot-00000000000000000050.snap"), [0u8; 7]).unwrap();
        std::fs::write(dir.join("snapshot-00000000000000000040.snap"), [0u8; 5]).unwrap();
        std::fs::write(dir.join("snapshot-00000000000000000060.tmp"), [0u8; 3]).unwrap();
        std::fs::write(dir.join("sub").join("ignored"), [0u8; 1000]).unwrap();
        let sizes = DataDirSizes { log: 120, total: 135, snapshot: Some((50, 7)) };
        assert_eq!(data_dir_sizes(&dir), Some(sizes));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
