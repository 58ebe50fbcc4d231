//! synod-metrics: every metric name synod exports, their descriptions, the Prometheus exporter, and a scraper.
//!
//! The runtime records through the [`metrics`] facade using the names in
//! [`names`]; [`install`] makes the Prometheus exporter the process's
//! recorder and serves `GET /metrics` over HTTP; [`scrape`] reads such an
//! endpoint back (`synod status`, `cargo xtask demo`). [`ALL`] lists every
//! metric with its kind and description, and [`describe`] registers them.
//!
//! ```no_run
//! use synod_metrics::{install, names, scrape};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let addr = "127.0.0.1:9464".parse()?;
//! let _handle = install(addr)?;
//! metrics::counter!(names::PROPOSALS).increment(1);
//! metrics::gauge!(names::PEER_CONNECTED, names::LABEL_PEER => "2").set(1.0);
//! let scraped = scrape(addr)?;
//! assert_eq!(scraped.get(names::PROPOSALS), Some(1.0));
//! assert_eq!(scraped.get_labeled(names::PEER_CONNECTED, names::LABEL_PEER, "2"), Some(1.0));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod names;
mod scrape;

use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

pub use metrics_exporter_prometheus::PrometheusHandle;
pub use names::{describe, Kind, Metric, ALL};
pub use scrape::{
    parse, scrape, scrape_with_timeout, ParseError, Sample, Scrape, ScrapeError, DEFAULT_TIMEOUT,
};

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The exporter's runtime or thread could not be started.
    #[error("cannot start the metrics exporter: {0}")]
    Runtime(#[source] std::io::Error),
    /// The listener could not bind `addr`, or another recorder is already installed.
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

/// Installs the Prometheus exporter as the process's global recorder, serving
/// `GET /metrics` (any path, in fact) on `addr`, and registers the descriptions.
///
/// The HTTP listener runs on a thread of its own with a single-threaded
/// tokio runtime, inside or outside an async context alike, so it keeps
/// answering while the caller's runtime is busy. There is one recorder per
/// process: a second call fails with [`MetricsError::Build`].
pub fn install(addr: SocketAddr) -> Result<PrometheusHandle, MetricsError> {
    let build = |source| MetricsError::Build { addr, source };
    let mut builder = PrometheusBuilder::new().with_http_listener(addr);
    for metric in ALL.iter().filter(|m| m.kind == Kind::Histogram) {
        let buckets = if metric.name.ends_with("_seconds") { SECONDS_BUCKETS } else { COUNT_BUCKETS };
        builder =
            builder.set_buckets_for_metric(Matcher::Full(metric.name.to_owned()), buckets).map_err(build)?;
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(MetricsError::Runtime)?;
    // `build` binds the listener and spawns the upkeep task on the current runtime.
    let (recorder, exporter) = {
        let _guard = runtime.enter();
        builder.build().map_err(build)?
    };
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| build(BuildError::from(e)))?;
    std::thread::Builder::new()
        .name("synod-metrics".to_owned())
        .spawn(move || {
            if let Err(e) = runtime.block_on(exporter) {
                tracing::error!(%addr, error = ?e, "the metrics exporter stopped");
            }
        })
        .map_err(MetricsError::Runtime)?;
    describe();
    Ok(handle)
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
