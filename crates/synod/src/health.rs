//! What a replica's `/health` and `/readyz` say, from its status.
//!
//! Healthy: the replica runs and has a leader it can reach (itself, with a
//! majority of the cluster reachable, or a peer it is connected to). Ready:
//! it has applied every slot it knows to be committed. The HTTP server is
//! synod-metrics'; this is the callback it asks.

use std::sync::{Arc, OnceLock};

use synod_metrics::{Check, Health};
use synod_runtime::{Status, StatusHandle};

/// The callback for [`synod_metrics::install`]: "starting" until `replica`
/// is set, then the replica's health; `members` is the cluster's size.
pub(crate) fn probe(
    members: usize,
    replica: Arc<OnceLock<StatusHandle>>,
) -> impl Fn() -> Health + Send + Sync {
    move || match replica.get() {
        None => Health::down("starting"),
        Some(handle) => health(&handle.status(), handle.is_stopping(), members),
    }
}

/// The health of a replica with `status`, in a cluster of `members` (its
/// file's peers: used until the replica reports the configuration in force,
/// whose voters count then).
pub(crate) fn health(status: &Status, stopping: bool, members: usize) -> Health {
    if let Some(fatal) = &status.fatal {
        return Health::down(&format!("stopped: {fatal}"));
    }
    if status.removed {
        return Health::down("removed from the cluster");
    }
    if stopping {
        return Health::down("stopping");
    }
    let voters: Vec<_> = status.members.iter().filter(|m| !status.learners.contains(m)).copied().collect();
    let members = if voters.is_empty() { members } else { voters.len() };
    let peers = status
        .peers_connected
        .iter()
        .filter(|&&p| p != status.id && (voters.is_empty() || voters.contains(&p)))
        .count();
    let healthy = match status.leader {
        None => Check::fail("no leader"),
        Some(_) if status.is_leader => {
            if 2 * (peers + 1) > members {
                Check::Pass
            } else {
                Check::fail(format!(
                    "leading without a majority: {} of {members} replicas reachable",
                    peers + 1
                ))
            }
        }
        Some(leader) if status.peers_connected.contains(&leader) => Check::Pass,
        Some(leader) => Check::fail(format!("leader {} unreachable", leader.0)),
    };
    let ready = if status.applied >= status.commit {
        Check::Pass
    } else {
        Check::fail(format!("applied {} of {} committed slots", status.applied.0, status.commit.0))
    };
    Health { healthy, ready }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_wire::{NodeId, Slot};

    fn follower_of(leader: Option<u32>, connected: &[u32]) -> Status {
        Status {
            id: NodeId(2),
            leader: leader.map(NodeId),
            peers_connected: connected.iter().map(|&p| NodeId(p)).collect(),
            commit: Slot(5),
            applied: Slot(5),
            ..Status::default()
        }
    }

    #[test]
    fn a_replica_is_healthy_when_it_reaches_its_leader() {
        assert_eq!(health(&follower_of(Some(1), &[1, 3]), false, 3).healthy, Check::Pass);
        assert_eq!(
            health(&follower_of(Some(1), &[3]), false, 3).healthy,
            Check::fail("leader 1 unreachable")
        );
        assert_eq!(health(&follower_of(None, &[1, 3]), false, 3).healthy, Check::fail("no leader"));
        let mut leader = follower_of(Some(2), &[3]);
        leader.is_leader = true;
        assert_eq!(health(&leader, false, 3).healthy, Check::Pass);
        leader.peers_connected.clear();
        assert_eq!(
            health(&leader, false, 3).healthy,
            Check::fail("leading without a majority: 1 of 3 replicas reachable")
        );
        assert_eq!(health(&follower_of(Some(1), &[1]), true, 3), Health::down("stopping"));
        // After membership changes, the voters of the configuration in force count.
        let mut grown = follower_of(Some(2), &[3, 4]);
        grown.is_leader = true;
        grown.members = [1, 2, 3, 4, 5].map(NodeId).to_vec();
        assert_eq!(health(&grown, false, 3).healthy, Check::Pass, "3 of 5");
        grown.peers_connected = vec![NodeId(4)];
        assert_eq!(
            health(&grown, false, 3).healthy,
            Check::fail("leading without a majority: 2 of 5 replicas reachable")
        );
        // Learners are not counted: voters 1, 2 and 3, of which 2 and 3 are up.
        grown.learners = vec![NodeId(4), NodeId(5)];
        grown.peers_connected = vec![NodeId(3), NodeId(4), NodeId(5)];
        assert_eq!(health(&grown, false, 3).healthy, Check::Pass);
        grown.peers_connected = vec![NodeId(4), NodeId(5)];
        assert_eq!(
            health(&grown, false, 3).healthy,
            Check::fail("leading without a majority: 1 of 3 replicas reachable")
        );
        grown.removed = true;
        assert_eq!(health(&grown, false, 3), Health::down("removed from the cluster"));
        let mut fatal = follower_of(Some(1), &[1]);
        fatal.fatal = Some("fsync failed".to_owned());
        assert_eq!(health(&fatal, true, 3), Health::down("stopped: fsync failed"));
    }

    #[test]
    fn a_replica_is_ready_once_it_applied_what_it_knows_committed() {
        assert_eq!(health(&follower_of(Some(1), &[1]), false, 3).ready, Check::Pass);
        let mut behind = follower_of(Some(1), &[1]);
        behind.applied = Slot(3);
        assert_eq!(health(&behind, false, 3).ready, Check::fail("applied 3 of 5 committed slots"));
        let probe = probe(3, Arc::new(OnceLock::new()));
        assert_eq!(probe(), Health::down("starting"));
    }
}
