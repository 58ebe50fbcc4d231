//! Copies the pure crates' counters and the replica's state into the `metrics` facade.

use synod_metrics::names;
use synod_paxos::Stats;
use synod_wire::ReadMode;

/// Counter, labelled [`LABEL_MODE`]: reads outside the log received, by mode.
pub const READS: &str = "synod_reads_total";
/// Counter: reads outside the log answered with the state machine's answer.
pub const READS_SERVED: &str = "synod_reads_served_total";
/// Counter: reads outside the log answered `Unavailable` (no leader could
/// confirm a read index, or the state machine serves no reads).
pub const READS_FAILED: &str = "synod_reads_failed_total";
/// The label naming a read's mode on [`READS`]: `linearizable`, `lease` or `stale`.
pub const LABEL_MODE: &str = "mode";

/// Registers the read metrics' descriptions (they are not in `synod_metrics::names` yet).
pub(crate) fn describe_reads() {
    metrics::describe_counter!(READS, "Reads outside the log received, by mode.");
    metrics::describe_counter!(
        READS_SERVED,
        "Reads outside the log answered with the state machine's answer."
    );
    metrics::describe_counter!(
        READS_FAILED,
        "Reads outside the log answered Unavailable (no leader confirmed a read index, or the state machine serves no reads)."
    );
}

/// The value of [`LABEL_MODE`] for `mode`.
pub fn mode_label(mode: ReadMode) -> &'static str {
    match mode {
        ReadMode::Linearizable => "linearizable",
        ReadMode::Lease => "lease",
        ReadMode::Stale => "stale",
    }
}

/// The counters of reads received, by mode, looked up once.
pub(crate) struct ReadsReceived {
    linearizable: metrics::Counter,
    lease: metrics::Counter,
    stale: metrics::Counter,
}

impl ReadsReceived {
    pub(crate) fn new() -> ReadsReceived {
        let counter = |mode| metrics::counter!(READS, LABEL_MODE => mode_label(mode));
        ReadsReceived {
            linearizable: counter(ReadMode::Linearizable),
            lease: counter(ReadMode::Lease),
            stale: counter(ReadMode::Stale),
        }
    }

    /// Counts a read received.
    pub(crate) fn count(&self, mode: ReadMode) {
        match mode {
            ReadMode::Linearizable => &self.linearizable,
            ReadMode::Lease => &self.lease,
            ReadMode::Stale => &self.stale,
        }
        .increment(1);
    }
}

/// The last counters published, so that each publish adds only the increase.
#[derive(Debug, Default)]
pub(crate) struct Published {
    paxos: Stats,
    replica: synod_replica::Stats,
}

impl Published {
    pub(crate) fn paxos(&mut self, now: Stats) {
        let was = std::mem::replace(&mut self.paxos, now);
        add(names::PROPOSALS, was.proposals, now.proposals);
        add(names::SLOTS_COMMITTED, was.chosen, now.chosen);
        add(names::ELECTIONS, was.elections, now.elections);
        add(names::LEADER_CHANGES, was.leader_changes, now.leader_changes);
        add(names::CATCH_UP_REQUESTS, was.catch_up_requests, now.catch_up_requests);
        add(names::CATCH_UP_ENTRIES, was.caught_up_entries, now.caught_up_entries);
        add(names::MESSAGES_IN, was.messages_in, now.messages_in);
        add(names::MESSAGES_OUT, was.messages_out, now.messages_out);
        add(names::PERSISTS, was.persists, now.persists);
    }

    pub(crate) fn replica(&mut self, now: synod_replica::Stats) {
        let was = std::mem::replace(&mut self.replica, now);
        add(
            names::CLIENT_REDIRECTS,
            was.redirects + was.queued_redirected,
            now.redirects + now.queued_redirected,
        );
        add(names::CLIENT_BUSY, was.busy, now.busy);
        // Reads that got no read index; the apply thread counts the rest.
        add(READS_FAILED, was.reads_failed, now.reads_failed);
        add(names::SNAPSHOTS_INSTALLED, was.snapshots_installed, now.snapshots_installed);
        add(names::SNAPSHOTS_REFUSED, was.snapshots_refused, now.snapshots_refused);
        add(names::SNAPSHOT_BYTES_RECEIVED, was.snapshot_bytes_received, now.snapshot_bytes_received);
        add(
            names::WAITERS_DROPPED,
            was.waiters_dropped + was.waiters_replaced,
            now.waiters_dropped + now.waiters_replaced,
        );
    }
}

/// Adds the increase of a counter since the last publish.
fn add(name: &'static str, before: u64, after: u64) {
    if after > before {
        metrics::counter!(name).increment(after - before);
    }
}
