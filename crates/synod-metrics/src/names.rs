//! Every metric synod exports: its name, kind and description, in one place.
//!
//! Names carry the `synod_` prefix; counters end in `_total`, durations in
//! `_seconds`. Record them through the `metrics` macros, e.g.
//! `metrics::counter!(names::PROPOSALS).increment(1)`.

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Only ever increases.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

/// A metric's name, kind and description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Metric {
    /// The exported name.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// What it measures, for the `# HELP` line.
    pub help: &'static str,
}

macro_rules! metrics_table {
    ($($(#[$doc:meta])* $ident:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        $(
            $(#[$doc])*
            #[doc = ""]
            #[doc = concat!("Exported as `", $name, "`: ", $help)]
            pub const $ident: &str = $name;
        )*

        /// Every metric synod exports.
        pub const ALL: &[Metric] = &[$(Metric { name: $name, kind: Kind::$kind, help: $help }),*];
    };
}

metrics_table! {
    /// Counter.
    PROPOSALS = "synod_proposals_total", Counter, "Batches this replica proposed as leader.";
    /// Counter.
    SLOTS_COMMITTED = "synod_slots_committed_total", Counter, "Log slots this replica learned as chosen.";
    /// Counter.
    COMMANDS_APPLIED = "synod_commands_applied_total", Counter, "Client commands the state machine applied.";
    /// Counter.
    LEADER_CHANGES = "synod_leader_changes_total", Counter, "Times this replica saw the leader change.";
    /// Counter.
    ELECTIONS = "synod_elections_total", Counter, "Elections this replica started.";
    /// Counter.
    CATCH_UP_REQUESTS = "synod_catch_up_requests_total", Counter, "Catch-up requests this replica sent.";
    /// Counter.
    CATCH_UP_ENTRIES = "synod_catch_up_entries_total", Counter, "Chosen entries this replica received by catch-up.";
    /// Counter.
    REJECTED_FRAMES = "synod_rejected_frames_total", Counter, "Malformed or oversized frames refused.";
    /// Counter.
    MESSAGES_IN = "synod_messages_in_total", Counter, "Consensus messages received from peers.";
    /// Counter.
    MESSAGES_OUT = "synod_messages_out_total", Counter, "Consensus messages sent to peers.";
    /// Counter.
    PERSISTS = "synod_persists_total", Counter, "Durable writes (one fsync each) of the log.";
    /// Counter.
    CLIENT_REDIRECTS = "synod_client_redirects_total", Counter, "Client requests answered Redirect (this replica did not lead, or stopped leading).";
    /// Counter.
    CLIENT_BUSY = "synod_client_busy_total", Counter, "Client requests answered Busy (admission control: too many waiting, or too much queued).";
    /// Counter.
    WAITERS_DROPPED = "synod_waiters_dropped_total", Counter, "Waiting client requests forgotten (closed streams, replaced retries).";
    /// Counter.
    SNAPSHOTS_TAKEN = "synod_snapshots_taken_total", Counter, "Snapshots of the state this replica wrote.";
    /// Counter.
    SNAPSHOTS_FAILED = "synod_snapshots_failed_total", Counter, "Snapshots this replica could not write.";
    /// Counter.
    SNAPSHOTS_INSTALLED = "synod_snapshots_installed_total", Counter, "Snapshots received from peers and installed.";
    /// Counter.
    SNAPSHOTS_REFUSED = "synod_snapshots_refused_total", Counter, "Snapshots received from peers that failed their check and were pulled again.";
    /// Counter.
    SNAPSHOT_BYTES_SENT = "synod_snapshot_bytes_sent_total", Counter, "Snapshot bytes sent to peers.";
    /// Counter.
    SNAPSHOT_BYTES_RECEIVED = "synod_snapshot_bytes_received_total", Counter, "Snapshot bytes received from peers and stored.";
    /// Histogram.
    SNAPSHOT_SECONDS = "synod_snapshot_seconds", Histogram, "Duration of writing one snapshot file, fsyncs included.";
    /// Gauge.
    SNAPSHOT_BYTES = "synod_snapshot_bytes", Gauge, "Size of the newest snapshot file this replica wrote or received.";
    /// Gauge.
    SNAPSHOT_SLOT = "synod_snapshot_slot", Gauge, "Every slot below this one is in this replica's newest snapshot.";
    /// Histogram.
    COMMIT_LATENCY = "synod_commit_latency_seconds", Histogram, "Time from proposing a batch to learning its slot chosen, per slot.";
    /// Histogram.
    BATCH_COMMANDS = "synod_batch_commands", Histogram, "Client commands per proposed batch.";
    /// Histogram.
    PERSIST_SECONDS = "synod_persist_seconds", Histogram, "Duration of one durable write of the log, fsync included.";
    /// Gauge.
    IS_LEADER = "synod_is_leader", Gauge, "1 while this replica is the leader, else 0.";
    /// Gauge.
    LEADER_ID = "synod_leader_id", Gauge, "The replica this replica believes leads, 0 if none.";
    /// Gauge.
    BALLOT_ROUND = "synod_ballot_round", Gauge, "The round of the highest ballot this replica has seen.";
    /// Gauge.
    COMMIT_SLOT = "synod_commit_slot", Gauge, "The first log slot this replica does not know as chosen.";
    /// Gauge.
    APPLIED_SLOT = "synod_applied_slot", Gauge, "The next log slot to apply; every slot below it is applied.";
    /// Gauge.
    APPLY_LAG_SLOTS = "synod_apply_lag_slots", Gauge, "Chosen slots not yet applied.";
    /// Gauge.
    SESSIONS = "synod_sessions", Gauge, "Live client sessions in the replicated session table.";
    /// Gauge, labelled [`LABEL_PEER`].
    PEER_CONNECTED = "synod_peer_connected", Gauge, "1 while the link to the labelled peer is up, else 0.";
    /// Gauge.
    CLIENT_CONNECTIONS = "synod_client_connections", Gauge, "Client streams open on this replica.";
    /// Gauge; see [`crate::set_state_digest`].
    STATE_DIGEST_HI = "synod_state_digest_hi", Gauge, "High 32 bits of the applied-state digest.";
    /// Gauge; see [`crate::set_state_digest`].
    STATE_DIGEST_LO = "synod_state_digest_lo", Gauge, "Low 32 bits of the applied-state digest.";
    /// Gauge.
    CERT_EXPIRY_SECONDS = "synod_cert_expiry_seconds", Gauge, "Seconds until this replica's certificate expires (negative once expired).";
    /// Gauge, set by the `synod` binary from its data directory every few seconds.
    LOG_BYTES = "synod_log_bytes", Gauge, "Bytes of the write-ahead log's segment files in the data directory.";
    /// Gauge, set by the `synod` binary from its data directory every few seconds.
    DATA_DIR_BYTES = "synod_data_dir_bytes", Gauge, "Bytes of every file in the data directory (log segments and snapshots).";
}

/// The label naming a peer replica by number, on [`PEER_CONNECTED`].
pub const LABEL_PEER: &str = "peer";

/// The metric called `name`, if synod exports it.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|m| m.name == name)
}

/// Registers every description with the installed recorder ([`crate::install`] does it too).
pub fn describe() {
    for metric in ALL {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_conventional() {
        let mut seen = std::collections::BTreeSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("synod_"), "{}", m.name);
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", m.name);
            assert_eq!(m.kind == Kind::Counter, m.name.ends_with("_total"), "{}", m.name);
            assert!(!m.help.is_empty());
        }
        assert_eq!(find(PEER_CONNECTED).map(|m| m.kind), Some(Kind::Gauge));
        assert_eq!(find("nope"), None);
    }
}
