//! Identifiers: replicas, ballots, log slots, client sessions and request numbers.

use std::fmt;

use rkyv::{Archive, Deserialize, Serialize};

/// A replica's identity, bound to its certificate by the transport.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
pub struct NodeId(pub u32);

/// A Paxos ballot: the configuration it was made in, a round number, and
/// the proposing replica as tie-breaker.
///
/// Ballots are totally ordered, first by `epoch`, then by `round`, then by
/// `node`, so two replicas never use the same ballot, and every ballot of a
/// later configuration outranks every ballot of an earlier one.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
pub struct Ballot {
    /// The configuration ([`crate::Membership::epoch`]) the ballot belongs to.
    pub epoch: u64,
    /// The round; a replica that stands for election picks a round above every one it has seen.
    pub round: u64,
    /// The replica that owns this ballot.
    pub node: NodeId,
}

/// A position in the replicated log. Slot 0 is the first.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
pub struct Slot(pub u64);

/// A client session, assigned when the session's registration is applied.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
pub struct ClientId(pub u64);

/// A client's request number within its session; the first request is 1.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
pub struct Seq(pub u64);

impl Ballot {
    /// The ballot below every ballot a replica can use.
    pub const ZERO: Ballot = Ballot { epoch: 0, round: 0, node: NodeId(0) };

    /// A ballot of `round` owned by `node`, in configuration 0.
    pub const fn new(round: u64, node: NodeId) -> Self {
        Ballot { epoch: 0, round, node }
    }

    /// A ballot of `round` owned by `node`, in configuration `epoch`.
    pub const fn in_epoch(epoch: u64, round: u64, node: NodeId) -> Self {
        Ballot { epoch, round, node }
    }
}

impl Slot {
    /// The slot after this one.
    #[must_use]
    pub const fn next(self) -> Slot {
        Slot(self.0 + 1)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch > 0 {
            write!(f, "e{}:", self.epoch)?;
        }
        write!(f, "{}.{}", self.round, self.node.0)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_node() {
        let a = Ballot::new(1, NodeId(9));
        let b = Ballot::new(2, NodeId(0));
        let c = Ballot::new(2, NodeId(1));
        assert!(Ballot::ZERO < a && a < b && b < c);
        assert_eq!(c.to_string(), "2.1");
        let later = Ballot::in_epoch(1, 1, NodeId(0));
        assert!(c < later, "a later configuration's ballot outranks every earlier one");
        assert_eq!(later.to_string(), "e1:1.0");
    }
}
