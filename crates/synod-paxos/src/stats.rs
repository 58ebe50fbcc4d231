//! Counters a core keeps about itself; the runtime copies them into metrics.

/// Counters of one core instance. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Batches proposed by this replica as leader.
    pub proposals: u64,
    /// Slots this replica learned are chosen.
    pub chosen: u64,
    /// Times this replica stood for election.
    pub elections: u64,
    /// Times this replica completed Phase 1 and became leader.
    pub became_leader: u64,
    /// Times the leader this replica believes in changed.
    pub leader_changes: u64,
    /// Times this replica stopped leading.
    pub step_downs: u64,
    /// Messages handled.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// Rejections sent to proposers with a stale ballot.
    pub rejects_sent: u64,
    /// Accept messages sent again because no answer came.
    pub retransmits: u64,
    /// Catch-up requests sent.
    pub catch_up_requests: u64,
    /// Chosen entries learned through catch-up.
    pub caught_up_entries: u64,
    /// Persist actions issued.
    pub persists: u64,
    /// Catch-up requests answered with a snapshot (they asked below the compacted log).
    pub snapshots_wanted: u64,
    /// Snapshots from peers installed.
    pub snapshots_installed: u64,
    /// Stop signs (membership changes) this replica proposed as leader.
    pub reconfigs_proposed: u64,
    /// Configurations this replica switched to.
    pub reconfigs_adopted: u64,
    /// Times this replica, leaving as leader, asked a successor to stand.
    pub handovers: u64,
    /// Reads this replica, as leader, registered for a read index (its own and its followers').
    pub reads: u64,
    /// Reads this replica asked the leader a read index for.
    pub reads_forwarded: u64,
    /// Confirmation rounds this replica ran as leader for reads.
    pub read_rounds: u64,
    /// Lease reads this replica answered as leader without a round.
    pub lease_reads: u64,
}
