//! Membership changes in the core: refusals, a learner that catches up and is promoted, a removed leader's handover.

use synod_paxos::{Config, Paxos, ReconfigError};
use synod_wire::{ChangeError, MemberChange, MemberRole, NodeId, Slot};

use super::Cluster;

/// A fourth core that is not a member yet, knowing replicas 1 to 3.
fn with_joiner(c: &mut Cluster) {
    let config = Config::joining(NodeId(4), [1, 2, 3].map(NodeId)).unwrap();
    c.cores.push(Paxos::rejoin(config, 9));
    c.committed.push(Vec::new());
    c.drain();
}

/// Proposes `change` through core `l`, ticking while the leader settles
/// (after a change it stands again and must commit a slot of its new ballot).
fn change(c: &mut Cluster, l: usize, change: &MemberChange) -> Result<Slot, ReconfigError> {
    for _ in 0..20 {
        match c.cores[l].propose_reconfig(change) {
            Err(ReconfigError::NotSettled) => {
                c.drain();
                c.tick(1);
            }
            done => {
                c.drain();
                return done;
            }
        }
    }
    Err(ReconfigError::NotSettled)
}

fn add(id: u32, learner: bool) -> MemberChange {
    MemberChange::Add { id: NodeId(id), addr: format!("127.0.0.1:{}", 7000 + id), learner }
}

#[test]
fn bad_and_early_changes_are_refused_and_change_nothing() {
    let mut c = Cluster::new(3, 5);
    let leader = c.await_leader(200);
    let l = Cluster::idx(leader);
    let follower = (l + 1) % 3;
    assert!(matches!(
        c.cores[follower].propose_reconfig(&add(4, true)),
        Err(ReconfigError::NotLeader { .. })
    ));
    // Nothing of the leader's own ballot is chosen yet: it proposes a no-op and asks for a retry.
    assert_eq!(c.cores[l].propose_reconfig(&add(4, true)), Err(ReconfigError::NotSettled));
    c.tick(3);
    let existing = MemberChange::Add { id: NodeId(2), addr: "h:1".into(), learner: false };
    assert_eq!(
        c.cores[l].propose_reconfig(&existing),
        Err(ReconfigError::Invalid(ChangeError::AlreadyMember(NodeId(2))))
    );
    assert_eq!(
        c.cores[l].propose_reconfig(&MemberChange::Remove { id: NodeId(9) }),
        Err(ReconfigError::Invalid(ChangeError::NotAMember(NodeId(9))))
    );
    // A voter that is not up (replica 4 does not exist yet) would make the
    // new majority 3 of 4 with one of them silent: refused while one old
    // voter is cut off too. (Once it runs and has caught up, it counts.)
    let other = (1..=3).find(|&n| n != leader.0).unwrap();
    c.cut_both(leader.0, other);
    c.tick(12);
    let refused = c.cores[l].propose_reconfig(&add(4, false));
    assert!(matches!(refused, Err(ReconfigError::NoLiveQuorum { need: 3, live: 2, .. })), "{refused:?}");
    c.cut.clear();
    c.tick(12);
    // One change at a time (replica 4 now exists, empty, waiting to be added).
    with_joiner(&mut c);
    let slot = c.cores[l].propose_reconfig(&add(4, true)).expect("a valid change");
    assert!(c.cores[l].change_in_flight());
    assert_eq!(c.cores[l].propose_reconfig(&add(5, true)), Err(ReconfigError::InFlight));
    c.tick(5);
    assert!(!c.cores[l].change_in_flight());
    for core in &c.cores {
        assert_eq!(core.membership().epoch, 1, "replica {} took the change", core.id());
        assert_eq!(core.config_start(), slot.next());
    }
}

#[test]
fn a_learner_catches_up_is_promoted_and_the_removed_leader_hands_over() {
    let mut c = Cluster::new(3, 7);
    let leader = c.await_leader(200);
    for i in 0..10u8 {
        c.commit_through(leader, &[i], &[1, 2, 3], 50);
    }
    with_joiner(&mut c);
    let l = Cluster::idx(leader);
    change(&mut c, l, &add(4, true)).unwrap();
    c.tick(40);
    let learner = &c.cores[3];
    assert_eq!(learner.membership().get(NodeId(4)).map(|m| m.role), Some(MemberRole::Learner));
    assert!(!learner.is_voter() && !learner.is_removed());
    assert_eq!(c.committed[3], c.committed[l], "the learner applied the same log");
    assert!(learner.caught_up(NodeId(4)) >= Some(Slot(11)));

    change(&mut c, l, &MemberChange::Promote { id: NodeId(4) }).unwrap();
    c.tick(10);
    assert!(c.cores[3].is_voter(), "promoted");
    c.commit_through(leader, b"after promotion", &[1, 2, 3, 4], 50);

    // The leader removes itself: it hands over, and a new leader is elected
    // well within one election timeout (30 ticks at the least).
    change(&mut c, l, &MemberChange::Remove { id: leader }).unwrap();
    let mut ticks = 0;
    loop {
        c.tick(1);
        ticks += 1;
        let leaders = c.leaders();
        if leaders.len() == 1 && leaders[0] != leader {
            break;
        }
        assert!(ticks < 25, "no new leader {ticks} ticks after the old one left: {leaders:?}");
    }
    assert!(c.cores[l].is_removed() && !c.cores[l].is_leader());
    let new = c.leaders()[0];
    let rest: Vec<u32> = (1..=4).filter(|&n| n != leader.0).collect();
    c.commit_through(new, b"after removal", &rest, 50);
    for &n in &rest {
        let m = c.cores[n as usize - 1].membership();
        assert_eq!(m.epoch, 3);
        assert!(!m.contains(leader) && m.voters().count() == 3);
    }
}

#[test]
fn a_member_removed_before_it_caught_up_learns_it_and_retires() {
    let mut c = Cluster::new(3, 11);
    let leader = c.await_leader(200);
    let l = Cluster::idx(leader);
    for i in 0..10u8 {
        c.commit_through(leader, &[i], &[1, 2, 3], 50);
    }
    // Replica 4 runs but hears nobody while it is added, and removed again.
    with_joiner(&mut c);
    for n in 1..=3 {
        c.cut_both(4, n);
    }
    change(&mut c, l, &add(4, true)).unwrap();
    for i in 10..20u8 {
        c.commit_through(leader, &[i], &[1, 2, 3], 50);
    }
    change(&mut c, l, &MemberChange::Remove { id: NodeId(4) }).unwrap();
    c.commit_through(leader, b"after removal", &[1, 2, 3], 50);
    assert_eq!(c.cores[l].membership().epoch, 2);
    // Healed, it catches up through both changes at once: it never was a
    // caught-up member, yet the newest configuration is one without it.
    c.cut.clear();
    for _ in 0..2_000 {
        c.tick(1);
        if c.retired.contains(&NodeId(4)) {
            break;
        }
    }
    let joiner = &c.cores[3];
    assert_eq!(joiner.membership().epoch, 2);
    assert!(joiner.is_removed(), "replica 4 knows it was removed");
    assert!(c.told_removed.contains(&NodeId(4)), "and tells its driver");
    assert!(c.retired.contains(&NodeId(4)), "and retires");
    assert_eq!(c.committed[3], c.committed[l], "after learning the whole log");
    assert!(c.retired.iter().all(|&n| n == NodeId(4)), "nobody else retires: {:?}", c.retired);
}

#[test]
fn a_replica_restored_from_a_snapshot_that_no_longer_names_it_knows_it_was_removed() {
    let ids = [1, 2, 3].map(NodeId);
    let later = synod_wire::Membership {
        epoch: 2,
        ..synod_wire::Membership::initial([2, 3, 4].map(|i| (NodeId(i), String::new())))
    };
    let durable = synod_paxos::Durable {
        snapshot_upto: Slot(40),
        membership: Some(later.clone()),
        ..Default::default()
    };
    let removed = Paxos::recover(Config::new(NodeId(1), ids).unwrap(), 1, durable.clone(), Slot(40));
    assert!(removed.is_removed() && !removed.is_voter());
    // A replica that joins is not "removed" for not being named yet.
    let joining = Paxos::recover(Config::joining(NodeId(5), ids).unwrap(), 1, durable, Slot(40));
    assert!(!joining.is_removed());
    assert_eq!(joining.membership(), &later);
}

#[test]
fn a_replica_recovering_a_log_that_crosses_a_change_takes_the_configuration_and_writes_nothing() {
    use synod_wire::{Ballot, LogRecord, Value};
    let ids = [1, 2, 3].map(NodeId);
    let next = synod_wire::Membership {
        epoch: 1,
        ..synod_wire::Membership::initial([1, 2].map(|i| (NodeId(i), String::new())))
    };
    let b = Ballot::new(1, NodeId(1));
    let durable = synod_paxos::Durable::replay([
        LogRecord::Promise { ballot: b },
        LogRecord::Accept { slot: Slot(0), ballot: b, value: Value::Batch(vec![1].into()) },
        LogRecord::Accept { slot: Slot(1), ballot: b, value: Value::Reconfig(next.clone()) },
        LogRecord::Commit { upto: Slot(2) },
    ]);
    // Debug builds check at the end of `recover` that no record is left unwritten.
    let mut p = Paxos::recover(Config::new(NodeId(2), ids).unwrap(), 1, durable, Slot(0));
    assert_eq!(p.membership(), &next);
    assert_eq!(p.config_start(), Slot(2));
    let mut actions = Vec::new();
    while let Some(a) = p.poll_action() {
        actions.push(a);
    }
    assert!(!actions.iter().any(|a| matches!(a, synod_paxos::Action::Persist { .. })), "{actions:?}");
    assert!(actions.iter().any(|a| matches!(a, synod_paxos::Action::Reconfigured { .. })));
}
