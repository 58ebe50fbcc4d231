//! Integration tests of the Paxos core: small in-memory clusters, including
//! the partial-connectivity scenarios of the OmniPaxos paper.

mod membership;
mod model;
mod regressions;
mod snapshot;

use std::collections::{BTreeSet, VecDeque};

use synod_paxos::{Action, Config, Durable, Paxos};
use synod_wire::{LogRecord, Message, NodeId, Slot, Value};

/// Replicas wired by an in-memory queue; persists complete at once; links can be cut.
struct Cluster {
    cores: Vec<Paxos>,
    queue: VecDeque<(NodeId, NodeId, Message)>,
    cut: BTreeSet<(u32, u32)>,
    committed: Vec<Vec<Value>>,
    /// The replicas that asked to retire (`Action::Retire`).
    retired: BTreeSet<NodeId>,
    /// The replicas that told their driver they were removed (`Action::Reconfigured`).
    told_removed: BTreeSet<NodeId>,
    /// Read ids given an index (`Action::ReadReady`), by replica.
    reads_ready: BTreeSet<(NodeId, u64)>,
    /// Every `Confirm` sent, as (from, to).
    confirms: Vec<(NodeId, NodeId)>,
}

impl Cluster {
    fn new(n: u32, seed: u64) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let cores = ids.iter().map(|&id| Paxos::new(Config::new(id, ids.clone()).unwrap(), seed)).collect();
        Cluster {
            cores,
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            committed: vec![Vec::new(); n as usize],
            retired: BTreeSet::new(),
            told_removed: BTreeSet::new(),
            reads_ready: BTreeSet::new(),
            confirms: Vec::new(),
        }
    }

    fn idx(id: NodeId) -> usize {
        id.0 as usize - 1
    }

    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.cores.len() {
                while let Some(action) = self.cores[i].poll_action() {
                    progressed = true;
                    let me = self.cores[i].id();
                    match action {
                        Action::Send { to, msg } => {
                            if matches!(msg, Message::Confirm { .. }) {
                                self.confirms.push((me, to));
                            }
                            self.queue.push_back((me, to, msg))
                        }
                        Action::Persist { token, .. } => self.cores[i].handle_persisted(token),
                        Action::Commit { slot, value } => {
                            assert_eq!(slot.0 as usize, self.committed[i].len(), "commits in order");
                            self.committed[i].push(value);
                        }
                        Action::Retire => {
                            self.retired.insert(me);
                        }
                        Action::Reconfigured { removed, .. } => {
                            if removed {
                                self.told_removed.insert(me);
                            }
                        }
                        Action::ReadReady { id, .. } => {
                            self.reads_ready.insert((me, id));
                        }
                        Action::LeaderChanged { .. }
                        | Action::SnapshotWanted { .. }
                        | Action::ReadFailed { .. } => {}
                    }
                }
            }
            while let Some((from, to, msg)) = self.queue.pop_front() {
                progressed = true;
                if !self.cut.contains(&(from.0, to.0)) {
                    self.cores[Self::idx(to)].handle_message(from, msg);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn tick(&mut self, n: u64) {
        for _ in 0..n {
            for core in &mut self.cores {
                core.handle_tick();
            }
            self.drain();
        }
    }

    fn cut_both(&mut self, a: u32, b: u32) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.cores.iter().filter(|c| c.is_leader()).map(|c| c.id()).collect()
    }

    /// Ticks until some replica leads, and returns it.
    fn await_leader(&mut self, within: u64) -> NodeId {
        for _ in 0..within {
            self.tick(1);
            if let [one] = self.leaders()[..] {
                return one;
            }
        }
        panic!("no single leader within {within} ticks: {:?}", self.leaders());
    }

    /// Proposes through the current leader and ticks until `on` replicas committed it.
    fn commit_through(&mut self, leader: NodeId, payload: &[u8], on: &[u32], within: u64) {
        self.cores[Self::idx(leader)].propose(payload.to_vec()).unwrap();
        self.drain();
        let want = Value::Batch(payload.into());
        for _ in 0..within {
            if on.iter().all(|&n| self.committed[n as usize - 1].contains(&want)) {
                return;
            }
            self.tick(1);
        }
        panic!("{payload:?} not committed on {on:?} within {within} ticks");
    }
}

#[test]
fn three_replicas_elect_a_leader_and_commit_everywhere() {
    let mut c = Cluster::new(3, 1);
    let leader = c.await_leader(200);
    for i in 0..20u8 {
        c.commit_through(leader, &[i], &[1, 2, 3], 50);
    }
    assert_eq!(c.committed[0], c.committed[1]);
    assert_eq!(c.committed[1], c.committed[2]);
}

#[test]
fn five_replicas_survive_two_isolated() {
    let mut c = Cluster::new(5, 2);
    let leader = c.await_leader(200);
    c.commit_through(leader, b"a", &[1, 2, 3, 4, 5], 50);
    // Isolate the leader and one more replica.
    let other = if leader.0 == 5 { 4 } else { 5 };
    for n in 1..=5 {
        c.cut_both(leader.0, n);
        c.cut_both(other, n);
    }
    let survivors: Vec<u32> = (1..=5).filter(|&n| n != leader.0 && n != other).collect();
    let mut new_leader = None;
    for _ in 0..400 {
        c.tick(1);
        if let Some(l) = c.leaders().into_iter().find(|l| survivors.contains(&l.0)) {
            new_leader = Some(l);
            break;
        }
    }
    let new_leader = new_leader.expect("the majority elects a new leader");
    c.commit_through(new_leader, b"b", &survivors, 100);
    // Heal: everyone converges on the same log.
    c.cut.clear();
    c.tick(300);
    for i in 1..5 {
        assert_eq!(c.committed[0], c.committed[i], "replica {} diverged", i + 1);
    }
    assert!(c.committed[0].contains(&Value::Batch(b"b".as_slice().into())));
}

#[test]
fn chained_connectivity_keeps_making_progress() {
    // A chain 1 - 2 - 3 where 1 and 3 cannot talk: whoever leads must keep
    // committing, and no replica may keep forcing elections.
    let mut c = Cluster::new(3, 3);
    let leader = c.await_leader(200);
    c.commit_through(leader, b"before", &[1, 2, 3], 50);
    let (a, b) = match leader.0 {
        1 => (1, 3),
        2 => (1, 3),
        _ => (3, 1),
    };
    c.cut_both(a, b);
    c.tick(300);
    let elections_before: u64 = c.cores.iter().map(|x| x.stats().elections).sum();
    let leader = c.await_leader(400);
    c.commit_through(leader, b"during", &[leader.0, 2], 200);
    c.tick(500);
    let elections_after: u64 = c.cores.iter().map(|x| x.stats().elections).sum();
    assert!(
        elections_after - elections_before <= 1,
        "elections kept happening: {elections_before} -> {elections_after}"
    );
    let leader = c.await_leader(10);
    c.commit_through(leader, b"still", &[leader.0, 2], 200);
}

#[test]
fn quorum_loss_elects_the_only_quorum_connected_replica() {
    // Five replicas; the leader keeps a link only to the hub, and the hub is
    // the only replica that still hears a majority. The hub must take over.
    let mut c = Cluster::new(5, 4);
    let leader = c.await_leader(200);
    c.commit_through(leader, b"x", &[1, 2, 3, 4, 5], 50);
    let hub = if leader.0 == 3 { 2 } else { 3 };
    for a in 1..=5u32 {
        for b in 1..=5u32 {
            if a != b && a != hub && b != hub {
                c.cut_both(a, b);
            }
        }
    }
    let mut took_over = false;
    for _ in 0..600 {
        c.tick(1);
        if c.cores[hub as usize - 1].is_leader() {
            took_over = true;
            break;
        }
    }
    assert!(took_over, "the hub {hub} never took over; leaders: {:?}", c.leaders());
    c.commit_through(NodeId(hub), b"y", &[hub], 200);
}

#[test]
fn a_stale_leader_cannot_commit_alone() {
    let mut c = Cluster::new(3, 5);
    let leader = c.await_leader(200);
    for n in 1..=3 {
        c.cut_both(leader.0, n);
    }
    c.cores[leader.0 as usize - 1].propose(b"lost".to_vec()).ok();
    c.tick(200);
    let committed_lost = c.committed.iter().any(|log| log.contains(&Value::Batch(b"lost".as_slice().into())));
    assert!(!committed_lost, "a cut-off leader committed on its own");
    assert!(!c.cores[leader.0 as usize - 1].is_leader(), "check-quorum: the cut-off leader stepped down");
    assert!(
        c.cores[leader.0 as usize - 1].first_unchosen()
            <= Slot(c.committed[leader.0 as usize - 1].len() as u64)
    );
}

/// Nothing else compacts a core (the simulator and the runtime never call `compact`), so
/// this test walks its paths, with the core's debug invariants checked after every call.
#[test]
fn compaction_keeps_the_cluster_committing() {
    let mut c = Cluster::new(3, 7);
    let leader = c.await_leader(200);
    for i in 0..20u8 {
        c.commit_through(leader, &[i], &[1, 2, 3], 50);
    }
    // Each replica compacts to a different point; a point beyond `delivered` (20) is clamped.
    for (i, upto, base) in [(0, 10, 10), (1, 15, 15), (2, 1_000, 20)] {
        c.cores[i].compact(Slot(upto));
        assert!(c.cores[i].chosen(Slot(base - 1)).is_none(), "replica {i} forgot below {base}");
        assert_eq!(c.cores[i].delivered(), Slot(20));
    }
    assert!(c.cores[0].chosen(Slot(10)).is_some(), "and kept the rest");
    for i in 20..40u8 {
        c.commit_through(leader, &[i], &[1, 2, 3], 50);
    }
    // A new leader after compaction: its Prepare starts at its first unchosen slot, above every base.
    let others: Vec<u32> = (1..=3).filter(|&n| n != leader.0).collect();
    for &n in &others {
        c.cut_both(leader.0, n);
    }
    c.tick(200);
    let new = c.leaders().into_iter().find(|&l| l != leader).expect("a new leader among the other two");
    c.commit_through(new, b"after", &others, 100);
    assert_eq!(c.committed[others[0] as usize - 1], c.committed[others[1] as usize - 1]);
    assert_eq!(c.committed[others[0] as usize - 1].len(), 41);
}

/// A core recovered from a log whose snapshot covers its first slots starts at the snapshot.
#[test]
fn recovery_from_a_snapshot_starts_at_its_base() {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let v = |x: u8| Value::Batch(vec![x].into());
    let durable = Durable::replay([
        LogRecord::Learn { slot: Slot(0), value: v(0) },
        LogRecord::Learn { slot: Slot(1), value: v(1) },
        LogRecord::Learn { slot: Slot(2), value: v(2) },
        LogRecord::Snapshot { upto: Slot(2) },
        LogRecord::Learn { slot: Slot(3), value: v(3) },
        LogRecord::Commit { upto: Slot(4) },
    ]);
    for deliver_from in [Slot(0), Slot(2), Slot(3)] {
        let mut core = Paxos::recover(Config::new(NodeId(1), ids).unwrap(), 1, durable.clone(), deliver_from);
        let mut commits = Vec::new();
        while let Some(action) = core.poll_action() {
            if let Action::Commit { slot, .. } = action {
                commits.push(slot.0);
            }
        }
        let want: Vec<u64> = (deliver_from.0.max(2)..4).collect();
        assert_eq!(commits, want, "delivering from {deliver_from:?}");
        assert_eq!((core.first_unchosen(), core.delivered()), (Slot(4), Slot(4)));
        assert!(core.chosen(Slot(1)).is_none() && core.chosen(Slot(2)).is_some());
    }
}

#[test]
fn a_read_round_asks_only_a_majority_and_the_others_once_it_waits() {
    for n in [3u32, 5] {
        let mut c = Cluster::new(n, 31);
        let leader = c.await_leader(300);
        let all: Vec<u32> = (1..=n).collect();
        c.commit_through(leader, b"x", &all, 50);
        let l = Cluster::idx(leader);
        let need = (n as usize / 2 + 1) - 1;

        // A healthy cluster: the round asks as many followers as a majority needs.
        c.confirms.clear();
        c.cores[l].read(1);
        c.drain();
        assert!(c.reads_ready.contains(&(leader, 1)), "{n} replicas: the read got its index");
        assert_eq!(c.confirms.len(), need, "{n} replicas: asked {:?}", c.confirms);
        let asked: Vec<NodeId> = c.confirms.iter().map(|&(_, to)| to).collect();

        // Those it asked stop answering: the round asks the others a little later and completes.
        for &a in &asked {
            c.cut_both(leader.0, a.0);
        }
        c.confirms.clear();
        c.cores[l].read(2);
        c.drain();
        assert!(!c.reads_ready.contains(&(leader, 2)), "{n} replicas: no majority yet");
        let mut ticks = 0;
        while !c.reads_ready.contains(&(leader, 2)) {
            assert!(
                ticks < synod_paxos::CONFIRM_OTHERS_AFTER_TICKS + 1,
                "{n} replicas: the others were not asked"
            );
            c.tick(1);
            ticks += 1;
        }
        assert!(c.cores[l].is_leader(), "{n} replicas: the leader kept its majority");

        // The next round asks the voters that confirmed the last one, not the silent ones.
        c.confirms.clear();
        c.cores[l].read(3);
        c.drain();
        assert!(c.reads_ready.contains(&(leader, 3)), "{n} replicas: the third read got its index");
        let third: Vec<NodeId> = c.confirms.iter().map(|&(_, to)| to).collect();
        assert_eq!(third.len(), need, "{n} replicas: asked {third:?}");
        assert!(
            third.iter().all(|t| !asked.contains(t)),
            "{n} replicas: asked {third:?} again after {asked:?} went silent"
        );
    }
}

#[test]
fn with_leases_a_leader_reads_without_a_round_and_its_lease_ends_before_another_can_lead() {
    use synod_paxos::Action;
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let mut c = Cluster::new(3, 21);
    c.cores = ids
        .iter()
        .map(|&id| Paxos::new(Config::new(id, ids.clone()).unwrap().with_leases(true), 21))
        .collect();
    let leader = c.await_leader(300);
    c.commit_through(leader, b"x", &[1, 2, 3], 50);
    // A heartbeat round or two gives the lease.
    c.tick(12);
    let l = Cluster::idx(leader);
    let rounds = c.cores[l].stats().read_rounds;
    c.cores[l].read_lease(7);
    let mut ready = false;
    while let Some(a) = c.cores[l].poll_action() {
        ready |= matches!(a, Action::ReadReady { id: 7, .. });
    }
    assert!(ready, "a leader holding its lease answers at once");
    assert_eq!(c.cores[l].stats().read_rounds, rounds, "without a confirmation round");
    assert_eq!(c.cores[l].stats().lease_reads, 1);
    // Cut the leader off: its lease must run out (in its ticks) before the others
    // elect anyone, and then it answers lease reads only through a round, which fails.
    for other in 1..=3 {
        if other != leader.0 {
            c.cut_both(leader.0, other);
        }
    }
    let lease = c.cores[l].config().lease_ticks();
    let mut lease_ended_at = None;
    for t in 0..400 {
        c.tick(1);
        c.cores[l].read_lease(100 + t);
        let mut served = false;
        while let Some(a) = c.cores[l].poll_action() {
            served |= matches!(a, Action::ReadReady { .. });
        }
        if !served && lease_ended_at.is_none() {
            lease_ended_at = Some(t);
        }
        let others: Vec<NodeId> = c.leaders().into_iter().filter(|&n| n != leader).collect();
        if !others.is_empty() {
            let ended = lease_ended_at.expect("a new leader while the old one still served lease reads");
            assert!(ended <= t, "lease ended at {ended}, new leader at {t}");
            assert!(t >= lease, "the others waited out their grant");
            return;
        }
    }
    panic!("no new leader after the old one was cut off");
}

#[test]
fn with_leases_a_voter_that_granted_the_leader_a_lease_promises_no_other_candidate_until_it_runs_out() {
    use synod_paxos::Action;
    use synod_wire::Ballot;
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let mut c = Cluster::new(3, 5);
    c.cores = ids
        .iter()
        .map(|&id| Paxos::new(Config::new(id, ids.clone()).unwrap().with_leases(true), 5))
        .collect();
    let leader = c.await_leader(300);
    c.tick(12);
    let f = (Cluster::idx(leader) + 1) % 3;
    let candidate = (1..=3).map(NodeId).find(|&n| n != leader && n != c.cores[f].id()).unwrap();
    let promised = |core: &mut Paxos| {
        let mut yes = false;
        while let Some(a) = core.poll_action() {
            yes |= matches!(a, Action::Send { msg: Message::Promise { .. }, .. });
            if let Action::Persist { token, .. } = a {
                core.handle_persisted(token);
            }
        }
        yes
    };
    let prepare = |round| Message::Prepare { ballot: Ballot::new(round, candidate), first_unchosen: Slot(0) };
    c.cores[f].handle_message(candidate, prepare(50));
    assert!(!promised(&mut c.cores[f]), "promised another candidate while the leader's lease stands");
    // Without the leader's heartbeats the grant runs out after the shortest election timeout.
    let leader_id = leader.0;
    let me = c.cores[f].id().0;
    c.cut_both(leader_id, me);
    for _ in 0..40 {
        c.cores[f].handle_tick();
        let _ = promised(&mut c.cores[f]);
    }
    c.cores[f].handle_message(candidate, prepare(60));
    assert!(promised(&mut c.cores[f]), "no promise once the grant ran out");
    // Without leases, the same Prepare is promised at once.
    let mut plain = Cluster::new(3, 5);
    let leader = plain.await_leader(300);
    plain.tick(12);
    let f = (Cluster::idx(leader) + 1) % 3;
    let candidate = (1..=3).map(NodeId).find(|&n| n != leader && n != plain.cores[f].id()).unwrap();
    plain.cores[f].handle_message(
        candidate,
        Message::Prepare { ballot: Ballot::new(50, candidate), first_unchosen: Slot(0) },
    );
    assert!(promised(&mut plain.cores[f]));
}
