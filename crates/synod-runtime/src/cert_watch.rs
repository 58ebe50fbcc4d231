//! Watching this replica's own certificate for its expiry.
//!
//! A replica exports the seconds left until its certificate's notAfter as
//! the gauge `synod_cert_expiry_seconds` (negative once expired), updated
//! every minute, and logs a warning at start and then daily while fewer than
//! [`WARN_WITHIN`] remain. Renew with `synod certs add --force` and restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use synod_metrics::names;
use synod_wire::NodeId;

/// Warn when the certificate expires within this.
pub(crate) const WARN_WITHIN: Duration = Duration::from_secs(30 * 86_400);

/// How often the warning repeats.
const WARN_EVERY: Duration = Duration::from_secs(86_400);

/// How often the gauge is refreshed.
const REFRESH: Duration = Duration::from_secs(60);

/// Seconds from `now` until `not_after`, negative when it has passed.
pub(crate) fn seconds_left(not_after: SystemTime, now: SystemTime) -> f64 {
    match not_after.duration_since(now) {
        Ok(left) => left.as_secs_f64(),
        Err(past) => -past.duration().as_secs_f64(),
    }
}

/// Checks once (the gauge, and a warning if due); returns whether it warned.
fn check(id: NodeId, not_after: SystemTime) -> bool {
    let left = seconds_left(not_after, SystemTime::now());
    metrics::gauge!(names::CERT_EXPIRY_SECONDS).set(left);
    if left < WARN_WITHIN.as_secs_f64() {
        let days = left / 86_400.0;
        if left <= 0.0 {
            tracing::warn!(
                id = id.0,
                days_ago = format!("{:.1}", -days),
                "this replica's certificate has EXPIRED: peers and clients refuse it; renew it with `synod certs add --force` and restart"
            );
        } else {
            tracing::warn!(
                id = id.0,
                days_left = format!("{days:.1}"),
                "this replica's certificate expires soon; renew it with `synod certs add --force` and restart"
            );
        }
        return true;
    }
    false
}

/// Checks now, then starts a thread that keeps the gauge fresh and warns
/// daily, until `stop` is set. `None` if the certificate cannot be read (logged).
pub(crate) fn spawn(id: NodeId, cert: &[u8], stop: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
    let not_after = match synod_transport::certs::not_after(cert) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(id = id.0, error = %e, "cannot read this replica's certificate expiry");
            return None;
        }
    };
    let mut warned = check(id, not_after).then(Instant::now);
    let thread = std::thread::Builder::new().name(format!("synod-certs-{}", id.0)).spawn(move || {
        let mut refreshed = Instant::now();
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(250));
            if refreshed.elapsed() < REFRESH {
                continue;
            }
            refreshed = Instant::now();
            let left = seconds_left(not_after, SystemTime::now());
            metrics::gauge!(names::CERT_EXPIRY_SECONDS).set(left);
            if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) && check(id, not_after) {
                warned = Some(Instant::now());
            }
        }
    });
    match thread {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(id = id.0, error = %e, "cannot start the certificate watch");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_left_is_negative_once_expired() {
        let now = SystemTime::now();
        assert_eq!(seconds_left(now + Duration::from_secs(90), now), 90.0);
        assert_eq!(seconds_left(now - Duration::from_secs(90), now), -90.0);
    }
}
