//! Configuration of one replica's core. A `Config` that exists is valid.

use std::collections::BTreeSet;

use synod_wire::{Membership, NodeId};

/// How one replica's core behaves. Build it with [`Config::new`], adjust it
/// with the `with_*` methods; every method checks what it is given.
#[derive(Debug, Clone, Hash)]
pub struct Config {
    pub(crate) id: NodeId,
    pub(crate) members: Vec<NodeId>,
    /// Where each of `members` listens, if the driver said (`with_addresses`).
    pub(crate) addrs: Vec<(NodeId, String)>,
    pub(crate) heartbeat_ticks: u64,
    pub(crate) election_ticks: (u64, u64),
    pub(crate) window: usize,
    pub(crate) catch_up_batch: usize,
    pub(crate) eager_commit: bool,
    pub(crate) leases: bool,
    #[cfg(feature = "planted-bugs")]
    pub(crate) bugs: crate::PlantedBugs,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The cluster must have an odd number of members, at least one.
    #[error("a cluster needs an odd number of members, got {0}")]
    EvenOrEmpty(usize),
    /// A member appears twice.
    #[error("member {0} is listed twice")]
    Duplicate(NodeId),
    /// The replica is not one of the members.
    #[error("replica {0} is not a member of the cluster")]
    NotAMember(NodeId),
    /// Node id 0 is reserved: `Ballot::ZERO` belongs to it.
    #[error("node id 0 is reserved")]
    ReservedId,
    /// A timing parameter is out of range.
    #[error("invalid timing: {0}")]
    Timing(&'static str),
    /// The proposal window must be at least 1.
    #[error("the proposal window must be at least 1")]
    Window,
}

impl Config {
    /// A replica `id` in a cluster of `members` (which includes `id`), with
    /// synod's defaults (docs/PROTOCOL.md, "Model and vocabulary"): a
    /// heartbeat every 5 ticks, an election timeout drawn from 30..=60 ticks,
    /// a window of 64 outstanding slots.
    pub fn new(id: NodeId, members: impl IntoIterator<Item = NodeId>) -> Result<Config, ConfigError> {
        let members: Vec<NodeId> = members.into_iter().collect();
        let mut seen = BTreeSet::new();
        for &m in &members {
            if m.0 == 0 {
                return Err(ConfigError::ReservedId);
            }
            if !seen.insert(m) {
                return Err(ConfigError::Duplicate(m));
            }
        }
        if members.len() % 2 == 0 {
            return Err(ConfigError::EvenOrEmpty(members.len()));
        }
        if !seen.contains(&id) {
            return Err(ConfigError::NotAMember(id));
        }
        Ok(Config::build(id, seen.into_iter().collect()))
    }

    /// A replica `id` that is not (yet) a member: it starts with an empty
    /// disk and waits to be added, knowing `contacts` (members of the
    /// cluster it will join) only as peers to learn the log from. It votes
    /// and stands once a configuration it learned makes it a voter.
    pub fn joining(id: NodeId, contacts: impl IntoIterator<Item = NodeId>) -> Result<Config, ConfigError> {
        if id.0 == 0 {
            return Err(ConfigError::ReservedId);
        }
        let mut members = BTreeSet::new();
        for m in contacts {
            if m.0 == 0 {
                return Err(ConfigError::ReservedId);
            }
            if m != id && !members.insert(m) {
                return Err(ConfigError::Duplicate(m));
            }
        }
        if members.is_empty() {
            return Err(ConfigError::EvenOrEmpty(0));
        }
        Ok(Config::build(id, members.into_iter().collect()))
    }

    fn build(id: NodeId, members: Vec<NodeId>) -> Config {
        Config {
            id,
            members,
            addrs: Vec::new(),
            heartbeat_ticks: 5,
            election_ticks: (30, 60),
            window: 64,
            catch_up_batch: 256,
            eager_commit: false,
            leases: false,
            #[cfg(feature = "planted-bugs")]
            bugs: crate::PlantedBugs::default(),
        }
    }

    /// Records where the members listen (configuration 0's addresses, which
    /// later configurations carry on). Members without one get an empty address.
    pub fn with_addresses(mut self, addrs: impl IntoIterator<Item = (NodeId, String)>) -> Config {
        self.addrs = addrs.into_iter().collect();
        self
    }

    /// Configuration 0: the members this replica was started with, all voters.
    pub fn initial_membership(&self) -> Membership {
        Membership::initial(self.members.iter().map(|&m| {
            let addr = self.addrs.iter().find(|(id, _)| *id == m).map(|(_, a)| a.clone()).unwrap_or_default();
            (m, addr)
        }))
    }

    /// Sets the heartbeat period and the range the election timeout is drawn
    /// from, in ticks. The timeout must span at least two heartbeats.
    pub fn with_timing(mut self, heartbeat: u64, election: (u64, u64)) -> Result<Config, ConfigError> {
        if heartbeat == 0 {
            return Err(ConfigError::Timing("the heartbeat period must be at least one tick"));
        }
        if election.0 < 2 * heartbeat || election.1 < election.0 {
            return Err(ConfigError::Timing("the election timeout must be lo..=hi with lo >= 2 heartbeats"));
        }
        self.heartbeat_ticks = heartbeat;
        self.election_ticks = election;
        Ok(self)
    }

    /// Sets how many proposed slots may be outstanding (not yet chosen) at once.
    pub fn with_window(mut self, window: usize) -> Result<Config, ConfigError> {
        if window == 0 {
            return Err(ConfigError::Window);
        }
        self.window = window;
        Ok(self)
    }

    /// Whether a leader tells followers of a new commit point at once, in a
    /// `Commit` message of its own. By default (`false`) the commit point
    /// rides on the next `Accept`, or goes out in a `Commit` at the next tick
    /// when no `Accept` carried it, as Raft's commit index rides on the next
    /// `AppendEntries`: under load no `Commit` is sent at all, and with one
    /// client the two messages per command are saved, while a follower learns
    /// of a commit a tick late (a heartbeat round late if the `Accept` that
    /// was to carry it was lost). Safety does not depend on the choice,
    /// since a later `Commit` is one the network delayed; the model check runs
    /// the eager variant, which sends every message the lazy one does, earlier.
    pub fn with_eager_commit(mut self, eager: bool) -> Config {
        self.eager_commit = eager;
        self
    }

    /// Leader leases, for lease reads (off by default; docs/OPERATIONS.md,
    /// "Reads"). With them a voter that heard a content leader's heartbeat
    /// promises no other candidate of the same configuration for an election
    /// timeout's minimum (`election_ticks.0`) of its own ticks, and the leader
    /// serves `Paxos::read_lease` reads without a round for
    /// [`Config::lease_ticks`] of its ticks after a heartbeat round a majority
    /// answered. Safe while no replica's clock runs more than a third faster
    /// than the leader's over that span; elections after a leader's crash
    /// may take up to that minimum longer.
    pub fn with_leases(mut self, leases: bool) -> Config {
        self.leases = leases;
        self
    }

    /// How long a lease lasts, in the leader's ticks: two thirds of the
    /// shortest election timeout, which leaves a third for clock drift.
    pub fn lease_ticks(&self) -> u64 {
        self.election_ticks.0 - self.election_ticks.0 / 3
    }

    /// Plants a deliberate bug (simulator self-tests only).
    #[cfg(feature = "planted-bugs")]
    pub fn with_bugs(mut self, bugs: crate::PlantedBugs) -> Config {
        self.bugs = bugs;
        self
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The members this replica was started with (configuration 0, or the
    /// contacts of a joining replica), in id order. The configuration in
    /// force is [`crate::Paxos::membership`].
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// How many of the members this replica was started with make a majority.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// The heartbeat period in ticks.
    pub fn heartbeat_ticks(&self) -> u64 {
        self.heartbeat_ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_checked() {
        let ids = |v: &[u32]| v.iter().map(|&i| NodeId(i)).collect::<Vec<_>>();
        assert!(Config::new(NodeId(1), ids(&[1, 2, 3])).is_ok());
        assert_eq!(Config::new(NodeId(1), ids(&[1, 2])).unwrap_err(), ConfigError::EvenOrEmpty(2));
        assert_eq!(Config::new(NodeId(4), ids(&[1, 2, 3])).unwrap_err(), ConfigError::NotAMember(NodeId(4)));
        assert_eq!(Config::new(NodeId(1), ids(&[1, 1, 3])).unwrap_err(), ConfigError::Duplicate(NodeId(1)));
        assert_eq!(Config::new(NodeId(0), ids(&[0, 1, 3])).unwrap_err(), ConfigError::ReservedId);
        let c = Config::new(NodeId(1), ids(&[1])).unwrap();
        assert_eq!(c.majority(), 1);
        assert!(c.clone().with_timing(5, (9, 20)).is_err());
        assert!(c.clone().with_timing(5, (10, 20)).is_ok());
        assert!(c.with_window(0).is_err());
        let j = Config::joining(NodeId(4), ids(&[1, 2, 3])).unwrap();
        assert_eq!(j.initial_membership().voters().collect::<Vec<_>>(), ids(&[1, 2, 3]));
        assert!(Config::joining(NodeId(4), ids(&[])).is_err());
    }
}
