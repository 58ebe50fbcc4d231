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
