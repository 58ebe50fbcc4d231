//! Cluster membership: who votes, who learns, where each replica listens, and the changes to it.
//!
//! A [`Membership`] is one *configuration*: numbered by its `epoch`, it
//! lists every member with its address and role. Configuration `e + 1`
//! starts where a stop sign ([`crate::Value::Reconfig`]) chosen in
//! configuration `e` ends that configuration's log (docs/PROTOCOL.md,
//! "Membership changes"). Ballots carry the epoch they were made in, so
//! every ballot of a later configuration outranks every ballot of an
//! earlier one.

use std::fmt;

use rkyv::{Archive, Deserialize, Serialize};

use crate::NodeId;

/// Whether a member votes.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberRole {
    /// It promises, accepts and counts toward every majority; it may lead.
    Voter,
    /// It receives the log and snapshots but answers nothing to quorums and never leads.
    Learner,
}

/// One member of a configuration.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Its identity, bound to its certificate.
    pub id: NodeId,
    /// Where it listens for peers and clients (`host:port`).
    pub addr: String,
    /// Whether it votes.
    pub role: MemberRole,
}

/// One configuration of the cluster.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Membership {
    /// The configuration's number: 0 for the one a cluster starts with, one
    /// more for each change.
    pub epoch: u64,
    /// Every member, in id order, each once.
    pub members: Vec<Member>,
}

/// One change to a configuration, as `synod member` asks for it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub enum MemberChange {
    /// Adds replica `id`, listening at `addr`, as a voter or (with `learner`) a learner.
    Add {
        /// The new member's id.
        id: NodeId,
        /// Its address (`host:port`).
        addr: String,
        /// Whether it joins as a learner, to be promoted once it has caught up.
        learner: bool,
    },
    /// Makes learner `id` a voter.
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Removes member `id`, voter or learner.
    Remove {
        /// The member.
        id: NodeId,
    },
}

/// Why a change was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// Node id 0 is reserved (`Ballot::ZERO` belongs to it).
    #[error("node id 0 is reserved")]
    ReservedId,
    /// The id is already a member.
    #[error("replica {0} is already a member")]
    AlreadyMember(NodeId),
    /// Another member already listens at that address.
    #[error("replica {0} already listens at {1}")]
    AddressInUse(NodeId, String),
    /// The address is not `host:port`.
    #[error("{0:?} is not an address of the form host:port")]
    BadAddress(String),
    /// The id is not a member.
    #[error("replica {0} is not a member")]
    NotAMember(NodeId),
    /// Promoting a member that already votes.
    #[error("replica {0} is already a voter")]
    AlreadyVoter(NodeId),
    /// Removing the last voter would leave nobody to decide anything.
    #[error("replica {0} is the last voter; add another before removing it")]
    LastVoter(NodeId),
}

impl Membership {
    /// Configuration 0 of `members`, all voters.
    pub fn initial(members: impl IntoIterator<Item = (NodeId, String)>) -> Membership {
        let mut members: Vec<Member> =
            members.into_iter().map(|(id, addr)| Member { id, addr, role: MemberRole::Voter }).collect();
        members.sort();
        members.dedup_by_key(|m| m.id);
        Membership { epoch: 0, members }
    }

    /// The member `id`, if it is one.
    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Whether `id` is a member (voter or learner).
    pub fn contains(&self, id: NodeId) -> bool {
        self.get(id).is_some()
    }

    /// Whether `id` is a voter.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.get(id).is_some_and(|m| m.role == MemberRole::Voter)
    }

    /// The voters, in id order.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|m| m.role == MemberRole::Voter).map(|m| m.id)
    }

    /// The learners, in id order.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().filter(|m| m.role == MemberRole::Learner).map(|m| m.id)
    }

    /// Every member's id, in id order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.iter().map(|m| m.id)
    }

    /// How many voters make a majority.
    pub fn majority(&self) -> usize {
        self.voters().count() / 2 + 1
    }

    /// The configuration after `change`: the next epoch, or why the change is refused.
    pub fn changed(&self, change: &MemberChange) -> Result<Membership, ChangeError> {
        let mut next = self.clone();
        next.epoch += 1;
        match change {
            MemberChange::Add { id, addr, learner } => {
                if id.0 == 0 {
                    return Err(ChangeError::ReservedId);
                }
                if self.contains(*id) {
                    return Err(ChangeError::AlreadyMember(*id));
                }
                if !is_host_port(addr) {
                    return Err(ChangeError::BadAddress(addr.clone()));
                }
                if let Some(m) = self.members.iter().find(|m| m.addr == *addr) {
                    return Err(ChangeError::AddressInUse(m.id, addr.clone()));
                }
                let role = if *learner { MemberRole::Learner } else { MemberRole::Voter };
                next.members.push(Member { id: *id, addr: addr.clone(), role });
                next.members.sort();
            }
            MemberChange::Promote { id } => {
                let m = next.members.iter_mut().find(|m| m.id == *id).ok_or(ChangeError::NotAMember(*id))?;
                if m.role == MemberRole::Voter {
                    return Err(ChangeError::AlreadyVoter(*id));
                }
                m.role = MemberRole::Voter;
            }
            MemberChange::Remove { id } => {
                let m = self.get(*id).ok_or(ChangeError::NotAMember(*id))?;
                if m.role == MemberRole::Voter && self.voters().count() == 1 {
                    return Err(ChangeError::LastVoter(*id));
                }
                next.members.retain(|m| m.id != *id);
            }
        }
        Ok(next)
    }
}

/// Whether `addr` looks like `host:port` (a non-empty host, a port number).
fn is_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        })
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {} [", self.epoch)?;
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", m.id)?;
            if m.role == MemberRole::Learner {
                f.write_str(" (learner)")?;
            }
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Membership {
        Membership::initial((1..=3).map(|i| (NodeId(i), format!("127.0.0.1:{}", 7000 + i))))
    }

    #[test]
    fn changes_are_checked_and_numbered() {
        let m = three();
        assert_eq!(m.majority(), 2);
        let add = MemberChange::Add { id: NodeId(4), addr: "127.0.0.1:7004".into(), learner: true };
        let m1 = m.changed(&add).unwrap();
        assert_eq!(m1.epoch, 1);
        assert_eq!(m1.learners().collect::<Vec<_>>(), [NodeId(4)]);
        assert_eq!(m1.majority(), 2, "a learner is not counted");
        assert_eq!(m1.changed(&add).unwrap_err(), ChangeError::AlreadyMember(NodeId(4)));
        let m2 = m1.changed(&MemberChange::Promote { id: NodeId(4) }).unwrap();
        assert_eq!(m2.majority(), 3);
        assert_eq!(
            m2.changed(&MemberChange::Promote { id: NodeId(4) }).unwrap_err(),
            ChangeError::AlreadyVoter(NodeId(4))
        );
        let m3 = m2.changed(&MemberChange::Remove { id: NodeId(1) }).unwrap();
        assert_eq!(m3.voters().collect::<Vec<_>>(), [NodeId(2), NodeId(3), NodeId(4)]);
        assert_eq!(m3.to_string(), "epoch 3 [n2, n3, n4]");
    }

    #[test]
    fn bad_changes_are_refused() {
        let m = three();
        let add = |id, addr: &str| MemberChange::Add { id: NodeId(id), addr: addr.into(), learner: false };
        assert_eq!(m.changed(&add(0, "h:1")).unwrap_err(), ChangeError::ReservedId);
        assert_eq!(m.changed(&add(5, "nohost")).unwrap_err(), ChangeError::BadAddress("nohost".into()));
        assert_eq!(m.changed(&add(5, "h:0")).unwrap_err(), ChangeError::BadAddress("h:0".into()));
        assert!(matches!(m.changed(&add(5, "127.0.0.1:7001")), Err(ChangeError::AddressInUse(NodeId(1), _))));
        assert_eq!(
            m.changed(&MemberChange::Remove { id: NodeId(9) }).unwrap_err(),
            ChangeError::NotAMember(NodeId(9))
        );
        let one = Membership::initial([(NodeId(1), "h:1".to_owned())]);
        assert_eq!(
            one.changed(&MemberChange::Remove { id: NodeId(1) }).unwrap_err(),
            ChangeError::LastVoter(NodeId(1))
        );
    }
}
