//! Compaction behind a snapshot, installing a peer's snapshot, and rejoining after a lost disk.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use synod_paxos::{Action, Config, Paxos};
use synod_wire::{Ballot, Member, MemberRole, Membership, Message, NodeId, Slot, Status, Value};

/// Replicas on an in-memory queue, persists completing at once. A
/// `SnapshotWanted` is served by installing the sender's snapshot point on
/// the receiver (the transfer itself is synod-replica's and the driver's).
struct Net {
    cores: Vec<Paxos>,
    queue: VecDeque<(NodeId, NodeId, Message)>,
    cut: BTreeSet<u32>,
    /// Per replica: slot -> value, as committed (or covered by an installed snapshot: `None`).
    applied: Vec<BTreeMap<Slot, Option<Value>>>,
    /// Messages each replica sent, by kind.
    sent: Vec<BTreeMap<&'static str, usize>>,
}

impl Net {
    fn new(cores: Vec<Paxos>) -> Net {
        let n = cores.len();
        Net {
            cores,
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            applied: vec![BTreeMap::new(); n],
            sent: vec![BTreeMap::new(); n],
        }
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
                            *self.sent[i].entry(msg.kind()).or_default() += 1;
                            self.queue.push_back((me, to, msg));
                        }
                        Action::Persist { token, .. } => self.cores[i].handle_persisted(token),
                        Action::Commit { slot, value } => {
                            let next = self.applied[i].last_key_value().map_or(Slot(0), |(s, _)| s.next());
                            assert_eq!(slot, next, "replica {me} commits in order");
                            self.applied[i].insert(slot, Some(value));
                        }
                        Action::SnapshotWanted { to } => {
                            let upto = self.cores[i].snapshot_upto();
                            let t = to.0 as usize - 1;
                            if self.cores[t].install_snapshot(upto, None) {
                                let from =
                                    self.applied[t].last_key_value().map_or(Slot(0), |(s, _)| s.next());
                                for s in from.0..upto.0 {
                                    self.applied[t].insert(Slot(s), None);
                                }
                            }
                        }
                        Action::LeaderChanged { .. }
                        | Action::Reconfigured { .. }
                        | Action::Retire
                        | Action::ReadReady { .. }
                        | Action::ReadFailed { .. } => {}
                    }
                }
            }
            while let Some((from, to, msg)) = self.queue.pop_front() {
                progressed = true;
                if !self.cut.contains(&from.0) && !self.cut.contains(&to.0) {
                    self.cores[to.0 as usize - 1].handle_message(from, msg);
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

    fn leader(&mut self, within: u64) -> usize {
        for _ in 0..within {
            self.tick(1);
            let leaders: Vec<usize> = (0..self.cores.len()).filter(|&i| self.cores[i].is_leader()).collect();
            if let [one] = leaders[..] {
                return one;
            }
        }
        panic!("no single leader within {within} ticks");
    }

    fn commit(&mut self, leader: usize, payload: u8) {
        self.cores[leader].propose(vec![payload]).expect("leads");
        self.drain();
        self.tick(1);
    }

    /// Every pair of replicas agrees on every slot both applied a value for.
    fn assert_agreement(&self) {
        for a in &self.applied {
            for b in &self.applied {
                for (slot, v) in a {
                    if let (Some(v), Some(Some(w))) = (v, b.get(slot)) {
                        assert_eq!(v, w, "agreement in {slot:?}");
                    }
                }
            }
        }
    }
}

fn config(id: u32) -> Config {
    Config::new(NodeId(id), (1..=3).map(NodeId)).unwrap()
}

#[test]
fn a_replica_behind_the_compacted_log_is_sent_the_snapshot_then_catches_up() {
    let mut net = Net::new((1..=3).map(|id| Paxos::new(config(id), 3)).collect());
    let leader = net.leader(300);
    let behind = (leader + 1) % 3;
    net.cut.insert(behind as u32 + 1);
    for i in 0..30 {
        net.commit(leader, i);
    }
    // Every up replica snapshots at what it delivered and keeps 4 slots behind it.
    for i in 0..3 {
        if i != behind {
            let upto = net.cores[i].delivered();
            net.cores[i].snapshot_taken(upto, 4);
            net.drain();
            assert_eq!(net.cores[i].snapshot_upto(), upto);
            assert_eq!(net.cores[i].base(), Slot(upto.0 - 4), "the retain window stays");
        }
    }
    net.cut.clear();
    net.tick(50);
    for i in 30..40 {
        net.commit(leader, i);
    }
    net.tick(20);
    assert!(net.cores[behind].stats().snapshots_installed >= 1, "the lagging replica installed a snapshot");
    assert_eq!(net.cores[behind].first_unchosen(), net.cores[leader].first_unchosen());
    net.assert_agreement();
}

#[test]
fn snapshot_taken_never_compacts_past_what_was_delivered() {
    let mut net = Net::new((1..=3).map(|id| Paxos::new(config(id), 5)).collect());
    let leader = net.leader(300);
    for i in 0..5 {
        net.commit(leader, i);
    }
    let delivered = net.cores[leader].delivered();
    net.cores[leader].snapshot_taken(Slot(delivered.0 + 10), 0);
    assert_eq!(net.cores[leader].snapshot_upto(), Slot(0), "a snapshot past delivered is refused");
    assert!(net.cores[leader].base() <= delivered);
}

#[test]
fn a_replica_that_lost_its_disk_votes_only_after_hearing_every_peer_and_catching_up() {
    let mut net = Net::new((1..=3).map(|id| Paxos::new(config(id), 7)).collect());
    let leader = net.leader(300);
    for i in 0..20 {
        net.commit(leader, i);
    }
    let lost = (leader + 2) % 3;
    let ballot = net.cores[leader].leader_ballot();
    // The disk is replaced: the replica restarts with nothing.
    net.cores[lost] = Paxos::rejoin(config(lost as u32 + 1), 99);
    net.applied[lost].clear();
    net.sent[lost].clear();
    assert!(net.cores[lost].is_rejoining());
    // With one peer cut off it hears only one peer: it must not vote.
    let third = 3 - leader - lost;
    net.cut.insert(third as u32 + 1);
    net.tick(100);
    assert!(net.cores[lost].is_rejoining(), "it waits for every peer");
    assert_eq!(net.sent[lost].get("accepted"), None, "no vote while rejoining");
    assert_eq!(net.sent[lost].get("promise"), None, "no promise while rejoining");
    net.cut.clear();
    net.tick(100);
    assert!(!net.cores[lost].is_rejoining(), "it rejoined");
    assert!(net.cores[lost].promised() >= ballot, "it promised the highest ballot its peers saw");
    assert!(net.cores[lost].first_unchosen() >= Slot(20), "it learned what the others hold");
    let leader = net.leader(300);
    net.commit(leader, 99);
    net.tick(20);
    net.assert_agreement();
}

#[test]
fn a_new_cluster_of_empty_replicas_starts_once_every_replica_is_heard() {
    let mut net = Net::new((1..=3).map(|id| Paxos::rejoin(config(id), 11)).collect());
    net.cut.insert(3);
    net.tick(300);
    assert!(
        net.cores.iter().all(|c| !c.is_leader()),
        "two empty replicas cannot tell a new cluster from lost disks"
    );
    net.cut.clear();
    let leader = net.leader(400);
    net.commit(leader, 1);
    assert!(net.cores.iter().all(|c| !c.is_rejoining()));
}

#[test]
fn a_rejoining_replica_never_ends_its_rejoin_as_the_only_voter_of_an_old_configuration() {
    // Simulator seed 4220954: n2, rejoining, installed a snapshot of a
    // configuration where it was the only voter, while the cluster had moved
    // on; it ended its rejoin at once and led that configuration.
    let mut core = Paxos::rejoin(config(2), 5);
    let flush = |core: &mut Paxos| {
        while let Some(action) = core.poll_action() {
            if let Action::Persist { token, .. } = action {
                core.handle_persisted(token);
            }
        }
    };
    flush(&mut core);
    let alone = Membership {
        epoch: 4,
        members: vec![Member { id: NodeId(2), addr: "h:2".into(), role: MemberRole::Voter }],
    };
    assert!(core.install_snapshot(Slot(12), Some(alone)));
    flush(&mut core);
    assert_eq!(core.membership().epoch, 4);
    // A replica that lags reports nothing newer: still no rejoin.
    let status = |epoch: u64, first_unchosen: u64| Status {
        leader: Ballot::ZERO,
        first_unchosen: Slot(first_unchosen),
        log_end: Slot(first_unchosen),
        epoch,
        ..Status::default()
    };
    core.handle_message(NodeId(1), Message::Ping { round: 1, status: status(4, 12) });
    flush(&mut core);
    for _ in 0..200 {
        core.handle_tick();
        flush(&mut core);
    }
    assert!(core.is_rejoining(), "the only voter of a configuration it passed does not rejoin on its own");
    assert!(!core.is_leader());
    // One that knows a newer configuration: it waits to learn it.
    core.handle_message(NodeId(3), Message::Ping { round: 1, status: status(8, 40) });
    flush(&mut core);
    assert!(core.is_rejoining());
    assert!(core.known_commit() >= Slot(40), "it goes on catching up");
}

/// Delivers every persist at once; returns the statuses the core sent in `Pong`s.
fn flush_pongs(core: &mut Paxos) -> Vec<Status> {
    let mut pongs = Vec::new();
    while let Some(action) = core.poll_action() {
        match action {
            Action::Persist { token, .. } => core.handle_persisted(token),
            Action::Send { msg: Message::Pong { status, .. }, .. } => pongs.push(status),
            _ => {}
        }
    }
    pongs
}

fn voters(epoch: u64, ids: &[u32]) -> Membership {
    Membership {
        epoch,
        members: ids
            .iter()
            .map(|&id| Member { id: NodeId(id), addr: format!("h:{id}"), role: MemberRole::Voter })
            .collect(),
    }
}

#[test]
fn a_value_accepted_past_the_old_configurations_stop_sign_is_left_out_of_log_end() {
    // Simulator seed 7497502: n3 held a value of epoch 0 in #6, past the stop
    // sign in #5; reporting it in `log_end` kept n1, rejoining, waiting for
    // #6 to be chosen in a configuration that needed n1's vote to choose it.
    let mut core = Paxos::new(config(3), 7);
    flush_pongs(&mut core);
    let old = Ballot { epoch: 0, round: 1, node: NodeId(1) };
    let accept = |slot: u64, value: Value, commit: u64| Message::Accept {
        ballot: old,
        slot: Slot(slot),
        value,
        commit: Slot(commit),
    };
    core.handle_message(NodeId(1), accept(0, Value::Reconfig(voters(1, &[1, 3])), 0));
    core.handle_message(NodeId(1), accept(1, Value::Noop, 0));
    core.handle_message(NodeId(1), Message::Ping { round: 1, status: Status::default() });
    let before = flush_pongs(&mut core);
    assert_eq!(before.last().map(|s| s.log_end), Some(Slot(2)), "both values may still be chosen");
    // The stop sign in #0 is chosen: epoch 1 starts at #1.
    core.handle_message(NodeId(1), accept(2, Value::Noop, 1));
    flush_pongs(&mut core);
    assert_eq!(core.membership().epoch, 1);
    core.handle_message(NodeId(1), Message::Ping { round: 2, status: Status::default() });
    let after = flush_pongs(&mut core);
    assert_eq!(
        after.last().map(|s| s.log_end),
        Some(Slot(1)),
        "epoch 0's values past its stop sign are never chosen"
    );
}

#[test]
fn a_rejoining_replica_decides_only_once_every_voter_has_taken_the_configuration() {
    // The other half of seed 7497502: a voter still in the old configuration
    // reports its values past the stop sign; the rejoining replica waits for
    // its status in the new one before it decides how far to learn.
    let mut core = Paxos::rejoin(config(1), 5);
    flush_pongs(&mut core);
    assert!(core.install_snapshot(Slot(6), Some(voters(1, &[1, 3]))));
    flush_pongs(&mut core);
    let leader = Ballot { epoch: 0, round: 3, node: NodeId(3) };
    let status = |epoch: u64, log_end: u64| Status {
        leader,
        first_unchosen: Slot(6),
        log_end: Slot(log_end),
        epoch,
        ..Status::default()
    };
    core.handle_message(NodeId(3), Message::Ping { round: 1, status: status(0, 7) });
    flush_pongs(&mut core);
    assert!(core.is_rejoining());
    assert!(core.known_commit() < Slot(7), "n3's #6 is past epoch 0's stop sign: nothing to learn there");
    core.handle_message(NodeId(3), Message::Ping { round: 2, status: status(1, 6) });
    flush_pongs(&mut core);
    assert!(!core.is_rejoining(), "every slot up to n3's log end in epoch 1 is learned");
}
