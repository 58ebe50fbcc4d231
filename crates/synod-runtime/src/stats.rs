//! Copies the pure crates' counters and the replica's state into the `metrics` facade.

use synod_paxos::Stats;

/// The last counters published, so that each publish adds only the increase.
#[derive(Debug, Default)]
pub(crate) struct Published {
    paxos: Stats,
}

impl Published {
    pub(crate) fn paxos(&mut self, now: Stats) {
        let was = std::mem::replace(&mut self.paxos, now);
        let add = |name: &'static str, before: u64, after: u64| {
            if after > before {
                metrics::counter!(name).increment(after - before);
            }
        };
        add("synod_proposals_total", was.proposals, now.proposals);
        add("synod_slots_committed_total", was.chosen, now.chosen);
        add("synod_elections_total", was.elections, now.elections);
        add("synod_leader_changes_total", was.leader_changes, now.leader_changes);
        add("synod_catch_up_requests_total", was.catch_up_requests, now.catch_up_requests);
        add("synod_catch_up_entries_total", was.caught_up_entries, now.caught_up_entries);
        add("synod_messages_in_total", was.messages_in, now.messages_in);
        add("synod_messages_out_total", was.messages_out, now.messages_out);
        add("synod_persists_total", was.persists, now.persists);
    }
}
