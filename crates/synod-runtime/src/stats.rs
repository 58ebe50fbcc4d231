//! Copies the pure crates' counters and the replica's state into the `metrics` facade.

use synod_metrics::names;
use synod_paxos::Stats;

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
