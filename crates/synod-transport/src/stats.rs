//! Counters of an endpoint: plain atomics, copied into the `metrics` facade by the runtime.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! stats {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// An endpoint's live counters; read them with [`Stats::snapshot`].
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of an endpoint's counters at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Stats {
            /// Reads every counter (each atomically, not all at one instant).
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

stats! {
    /// Frames delivered to the sink (or to a client's reader).
    frames_in,
    /// Payload bytes delivered.
    bytes_in,
    /// Frames written to a QUIC stream.
    frames_out,
    /// Payload bytes written.
    bytes_out,
    /// Stream writes; `frames_out / writes` is how many frames each write coalesced.
    writes,
    /// Streams closed for a malformed, oversized or truncated frame or stream header.
    rejected_frames,
    /// Handshakes that failed: no certificate, another CA's certificate, wrong ALPN, timeouts.
    handshake_failures,
    /// Authenticated connections refused for their identity: an id not in the
    /// address book, a claim that does not match the certificate, a client
    /// certificate acting as a replica.
    rejected_peers,
    /// Outbound peer connection attempts that failed.
    connect_failures,
    /// Peer links established again after having been lost.
    reconnects,
    /// Frames refused because their send queue was full (the caller got them back).
    queue_full_drops,
    /// Frames that were taken from a queue but lost with their connection.
    frames_lost,
    /// Peer links established (dialed or accepted).
    peer_connections,
    /// Client streams opened to this endpoint.
    client_streams,
    /// Connections refused or closed for a limit: `max_connections`,
    /// `max_connections_per_client`, `streamless_timeout`.
    refused_connections,
    /// Client streams stopped because a frame did not arrive whole within `frame_timeout`.
    slow_frames,
    /// Pauses in reading a client's streams because it sent faster than
    /// `client_bytes_per_second`.
    intake_pauses,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
