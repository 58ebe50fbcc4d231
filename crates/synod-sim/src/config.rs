//! What one simulated run looks like; everything not given is drawn from the seed.

use synod_paxos::rng::Rng;

/// The parameters of one run. [`SimConfig::new`] draws the fault rates from the seed.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed that decides everything.
    pub seed: u64,
    /// Replicas (odd).
    pub replicas: u32,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests each client makes.
    pub requests_per_client: u64,
    /// Ticks of the fault phase.
    pub fault_ticks: u64,
    /// Ticks the heal phase may take before liveness is declared violated.
    pub heal_ticks: u64,
    /// Percent of messages dropped in the fault phase.
    pub drop_percent: u64,
    /// Percent of messages duplicated in the fault phase.
    pub dup_percent: u64,
    /// Most ticks a message spends in flight (reordering comes from the spread).
    pub max_delay: u64,
    /// Most ticks a disk write takes.
    pub max_disk_delay: u64,
    /// Per mille chance per tick of a fault event (crash, restart, cut, heal).
    pub fault_per_mille: u64,
    /// Chance in ten thousand that a due disk sync (fdatasync) fails in the
    /// fault phase; the replica then stops (crashes) and restarts from its disk.
    pub fsync_fail_per_10k: u64,
    /// Leaders send each new commit point at once (`Config::with_eager_commit`) rather than with the next Accept or tick.
    pub eager_commit: bool,
    /// Replicas snapshot once this many bytes of values were delivered since the last snapshot.
    pub snapshot_log_bytes: u64,
    /// Chosen slots kept behind each snapshot.
    pub retain_slots: u64,
    /// Bytes per snapshot chunk sent to a peer.
    pub chunk_bytes: usize,
    /// Percent of snapshot chunks corrupted in flight in the fault phase (one byte flipped).
    pub corrupt_chunk_percent: u64,
    /// Whether a fault may replace a replica's disk with an empty one (never
    /// while another replica that lost its disk has not rejoined yet).
    pub wipes: bool,
    /// Replicas beyond the first `replicas` that membership changes may add
    /// (ids `replicas + 1` on); removed replicas may be added again, with an empty disk.
    pub spares: u32,
    /// Whether faults include membership changes: adding a learner or a
    /// voter, promoting a learner, removing a member.
    pub reconfigs: bool,
    /// Ticks the operator waits for a change's answer before it may ask for
    /// another (the planted-bug test for concurrent changes shortens it).
    pub operator_patience: u64,
    /// Record a readable trace of events.
    pub trace: bool,
    /// Deliberately broken core behaviour (the simulator's own tests).
    #[cfg(feature = "planted-bugs")]
    pub bugs: synod_paxos::PlantedBugs,
    /// Deliberately broken replica behaviour around the core (the simulator's own tests).
    #[cfg(feature = "planted-bugs")]
    pub replica_bugs: synod_replica::PlantedBugs,
    /// Deliberately broken applier behaviour (the simulator's own tests).
    #[cfg(feature = "planted-bugs")]
    pub machine_bugs: synod_state_machine::PlantedBugs,
}

impl SimConfig {
    /// A run of 3 replicas whose fault rates are drawn from `seed`.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig::with_replicas(seed, 3)
    }

    /// A run of `replicas` replicas whose fault rates are drawn from `seed`.
    pub fn with_replicas(seed: u64, replicas: u32) -> SimConfig {
        let mut rng = Rng::new(seed ^ 0x5EED_C0F1_6000_0000);
        SimConfig {
            seed,
            replicas,
            clients: 3,
            requests_per_client: rng.range(10, 30),
            fault_ticks: 1500,
            heal_ticks: 4000,
            drop_percent: rng.range(0, 15),
            dup_percent: rng.range(0, 5),
            max_delay: rng.range(1, 8),
            max_disk_delay: rng.range(1, 6),
            fault_per_mille: rng.range(5, 30),
            eager_commit: rng.range(0, 4) == 0,
            fsync_fail_per_10k: rng.range(0, 20),
            snapshot_log_bytes: rng.range(300, 2500),
            retain_slots: rng.range(0, 12),
            chunk_bytes: rng.range(64, 2048) as usize,
            corrupt_chunk_percent: rng.range(0, 5),
            wipes: true,
            spares: 2,
            reconfigs: true,
            operator_patience: 400,
            trace: false,
            #[cfg(feature = "planted-bugs")]
            bugs: synod_paxos::PlantedBugs::default(),
            #[cfg(feature = "planted-bugs")]
            replica_bugs: synod_replica::PlantedBugs::default(),
            #[cfg(feature = "planted-bugs")]
            machine_bugs: synod_state_machine::PlantedBugs::default(),
        }
    }
}
