//! Integration tests of the replica core: three `ReplicaCore<u32>`s in memory, whose
//! effects the test carries out by hand, applying slots with the real `Applier` over `KvStore`.

use std::collections::{BTreeSet, VecDeque};

use synod_kv::KvStore;
use synod_paxos::{Config, Paxos};
use synod_replica::{route_replies, Effect, Limits, Now, ReplicaCore, Routing, SnapshotPolicy, Waiter};
use synod_state_machine::{Applier, Origin, Reply, SessionConfig};
use synod_wire::{
    ClientId, ClientReply, ClientRequest, Command, KvCommand, KvResponse, Message, NodeId, Outcome, ReadMode,
    ReadRequest, Seq, Slot, Value, Wire,
};

/// One replica: its core, its state machine, and what it did.
struct Node {
    core: ReplicaCore<u32>,
    applier: Applier<KvStore>,
    /// Every answer it gave, as (connection, reply), in order.
    answers: Vec<(u32, ClientReply)>,
    /// Every slot it applied, with `Apply::proposed_at_us`.
    applied: Vec<(Slot, Option<u64>)>,
    /// Its newest snapshot "file": (slot, bytes).
    snapshot: Option<(Slot, Vec<u8>)>,
    /// A snapshot being received: (slot, bytes so far).
    receiving: Option<(Slot, Vec<u8>)>,
}

/// Bytes per snapshot chunk in these tests: small, so that transfers take many pulls.
const CHUNK: usize = 100;

/// Replicas wired by an in-memory queue; persists complete at once; links can be cut.
struct Cluster {
    nodes: Vec<Node>,
    wire: VecDeque<(NodeId, NodeId, Message)>,
    cut: BTreeSet<(u32, u32)>,
    now: Now,
}

impl Cluster {
    fn new(limits: Limits) -> Cluster {
        Cluster::with(limits, |core| core)
    }

    fn with(limits: Limits, plant: impl Fn(ReplicaCore<u32>) -> ReplicaCore<u32>) -> Cluster {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let nodes = ids
            .iter()
            .map(|&id| Node {
                core: plant(ReplicaCore::new(
                    Paxos::new(Config::new(id, ids.clone()).unwrap(), 11 * u64::from(id.0)),
                    limits,
                )),
                applier: Applier::new(KvStore::default(), SessionConfig::default()),
                answers: Vec::new(),
                applied: Vec::new(),
                snapshot: None,
                receiving: None,
            })
            .collect();
        Cluster {
            nodes,
            wire: VecDeque::new(),
            cut: BTreeSet::new(),
            now: Now { wall_ms: 1_000, mono_us: 0 },
        }
    }

    fn node(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Carries out every effect and delivers every message (across no cut link) until all is quiet.
    fn run(&mut self) {
        loop {
            for i in 0..self.nodes.len() {
                self.drain(i);
            }
            let Some((from, to, msg)) = self.wire.pop_front() else { return };
            if !self.cut.contains(&(from.0, to.0)) {
                let now = self.now;
                self.node(to.0).core.handle_message(now, from, msg);
            }
        }
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let id = node.core.paxos().id();
        while let Some(effect) = node.core.poll_effect() {
            match effect {
                Effect::Send { to, msg } => self.wire.push_back((id, to, msg)),
                // Memory is durable at once.
                Effect::Persist { token, .. } => node.core.handle_persisted(now, token),
                Effect::Apply(apply) => {
                    let replies = node.applier.apply(apply.slot, &apply.value).expect("slots come in order");
                    node.applied.push((apply.slot, apply.proposed_at_us));
                    node.answers.extend(route_replies(apply.waiters, replies, apply.leader, apply.routing));
                }
                Effect::Reply { conn, reply } => node.answers.push((conn, reply)),
                Effect::Read { conn, id, query, index } => {
                    // Every slot below the read index was applied before this effect.
                    assert!(node.applier.next_slot() >= index, "a read served before its index was applied");
                    let payload = node.applier.read(&query).expect("the store serves reads");
                    node.answers.push((conn, ClientReply { id, outcome: Outcome::Applied { payload } }));
                }
                Effect::LeaderChanged { .. }
                | Effect::Proposed { .. }
                | Effect::TruncateLog { .. }
                | Effect::Reconfigured { .. }
                | Effect::Retire => {}
                Effect::TakeSnapshot { upto } => {
                    let mut bytes = Vec::new();
                    node.applier.snapshot_to(&mut bytes).unwrap();
                    assert_eq!(node.applier.next_slot(), upto, "the snapshot comes after every earlier slot");
                    node.snapshot = Some((upto, bytes));
                    node.core.handle_snapshot_taken(now, upto);
                }
                Effect::SendSnapshot { to, upto, offset } => {
                    if let Some((newest, bytes)) = &node.snapshot {
                        let offset = if upto == Some(*newest) { offset as usize } else { 0 };
                        let end = (offset + CHUNK).min(bytes.len());
                        let msg = Message::SnapshotChunk {
                            upto: *newest,
                            total: bytes.len() as u64,
                            offset: offset as u64,
                            bytes: bytes[offset..end].to_vec(),
                        };
                        self.wire.push_back((id, to, msg));
                    }
                }
                Effect::StoreSnapshotChunk { upto, offset, bytes, last } => {
                    if offset == 0 {
                        node.receiving = Some((upto, Vec::new()));
                    }
                    let (_, got) = node.receiving.as_mut().expect("chunks come in order");
                    assert_eq!(got.len() as u64, offset, "chunks come in order");
                    got.extend_from_slice(&bytes);
                    if last {
                        node.snapshot = node.receiving.take();
                        node.core.handle_snapshot_received(now, upto, true, None);
                    }
                }
                Effect::InstallSnapshot { upto } => {
                    let (at, bytes) = node.snapshot.as_ref().expect("stored before it is installed");
                    assert_eq!(*at, upto);
                    node.applier.install_from(&mut &bytes[..]).unwrap();
                    assert_eq!(node.applier.next_slot(), upto);
                }
            }
        }
    }

    /// One tick on every replica (10 ms of both clocks), then everything carried out.
    fn tick(&mut self) {
        self.now.wall_ms += 10;
        self.now.mono_us += 10_000;
        let now = self.now;
        for node in &mut self.nodes {
            node.core.handle_tick(now);
        }
        self.run();
    }

    /// Ticks until a replica other than `not` leads and the replicas it reaches follow it.
    fn elect(&mut self, not: Option<u32>) -> u32 {
        for _ in 0..2_000 {
            self.tick();
            let leader =
                self.nodes.iter().map(|n| n.core.paxos()).find(|p| p.is_leader() && Some(p.id().0) != not);
            if let Some(leader) = leader.map(|p| p.id()) {
                let followed = self
                    .nodes
                    .iter()
                    .map(|n| n.core.paxos())
                    .filter(|p| !self.cut.contains(&(leader.0, p.id().0)))
                    .all(|p| p.leader() == Some(leader));
                if followed {
                    return leader.0;
                }
            }
        }
        panic!("no leader elected");
    }

    /// Cuts `id` off from every other replica, both ways.
    fn isolate(&mut self, id: u32) {
        for other in 1..=3 {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    fn request(&mut self, at: u32, conn: u32, id: u64, command: Command) {
        let now = self.now;
        self.node(at).core.handle_client(now, conn, ClientRequest { id, command });
        self.run();
    }

    /// The answers replica `at` gave to connection `conn`.
    fn answers_to(&self, at: u32, conn: u32) -> Vec<Outcome> {
        let node = &self.nodes[at as usize - 1];
        node.answers.iter().filter(|(c, _)| *c == conn).map(|(_, r)| r.outcome.clone()).collect()
    }
}

fn register(nonce: u64) -> Command {
    Command::Register { nonce }
}

fn put(client: ClientId, seq: u64, key: &str) -> Command {
    let payload = KvCommand::Put { key: key.as_bytes().to_vec(), value: b"v".to_vec() }.encode().unwrap();
    Command::Op { client, seq: Seq(seq), ack: Seq(0), payload }
}

fn other(a: u32, b: u32) -> u32 {
    (1..=3).find(|&i| i != a && i != b).unwrap()
}

#[test]
fn a_follower_redirects_to_the_leader() {
    let mut c = Cluster::new(Limits::default());
    let leader = c.elect(None);
    let follower = other(leader, leader);
    c.request(follower, 7, 1, register(1));
    assert_eq!(c.answers_to(follower, 7), [Outcome::Redirect { leader: Some(NodeId(leader)) }]);
    assert_eq!(c.node(follower).core.stats().redirects, 1);
    assert_eq!(c.node(follower).core.waiting(), 0);
}

#[test]
fn the_leader_batches_queued_requests_and_answers_each_client_from_its_own_slot() {
    // One slot in flight: what arrives meanwhile queues, in batches of at most 4.
    let mut c = Cluster::new(Limits { max_in_flight: 1, max_batch_commands: 4, ..Limits::default() });
    let leader = c.elect(None);
    let now = c.now;
    for conn in 0..10 {
        c.node(leader).core.handle_client(
            now,
            conn,
            ClientRequest { id: 100 + u64::from(conn), command: register(conn.into()) },
        );
    }
    // Nothing delivered yet: the first request went alone, nine wait.
    assert_eq!(c.node(leader).core.queued_commands(), 9);
    c.run();
    let stats = c.node(leader).core.stats();
    assert_eq!((stats.batches_proposed, stats.commands_proposed), (4, 10), "1 + 4 + 4 + 1 commands");

    // Each client got one answer, for its own request id, registering its own session.
    let mut sessions = BTreeSet::new();
    for conn in 0..10 {
        let answers: Vec<_> =
            c.nodes[leader as usize - 1].answers.iter().filter(|(k, _)| *k == conn).collect();
        assert_eq!(answers.len(), 1, "client {conn}: {answers:?}");
        assert_eq!(answers[0].1.id, 100 + u64::from(conn));
        let Outcome::Registered { client } = answers[0].1.outcome else { panic!("{answers:?}") };
        sessions.insert(client);
    }
    assert_eq!(sessions.len(), 10);

    // Now every session writes; the answers come from the key-value store.
    for (conn, &client) in sessions.iter().enumerate() {
        let conn = conn as u32;
        c.node(leader).core.handle_client(now, conn, ClientRequest { id: 200, command: put(client, 1, "k") });
    }
    c.run();
    // The commit point reaches the followers at the next heartbeat.
    for _ in 0..10 {
        c.tick();
    }
    for conn in 0..10 {
        let last = c.answers_to(leader, conn).pop().unwrap();
        let Outcome::Applied { payload } = last else { panic!("client {conn}: {last:?}") };
        assert_eq!(KvResponse::decode(&payload).unwrap(), KvResponse::Stored);
    }
    // Followers applied the same slots and answered nobody.
    for id in 1..=3 {
        let node = &c.nodes[id as usize - 1];
        assert_eq!(node.applied.len(), c.nodes[leader as usize - 1].applied.len());
        if id != leader {
            assert!(node.answers.is_empty());
        }
    }
}

#[test]
fn the_leader_answers_busy_past_max_queued_bytes() {
    // A registration counts 16 bytes: six fit in 100 queued bytes, beside the one in flight.
    let mut c = Cluster::new(Limits { max_in_flight: 1, max_queued_bytes: 100, ..Limits::default() });
    let leader = c.elect(None);
    let now = c.now;
    for conn in 1..=10 {
        c.node(leader).core.handle_client(now, conn, ClientRequest { id: 1, command: register(conn.into()) });
    }
    c.run();
    let busy: Vec<u32> = c.nodes[leader as usize - 1]
        .answers
        .iter()
        .filter(|(_, r)| r.outcome == Outcome::Busy)
        .map(|(conn, _)| *conn)
        .collect();
    assert_eq!(busy, [8, 9, 10]);
    assert_eq!(c.node(leader).core.stats().busy, 3);
    for conn in 1..=7 {
        assert!(matches!(c.answers_to(leader, conn)[..], [Outcome::Registered { .. }]), "client {conn}");
    }
}

#[test]
fn admission_control_answers_busy_past_max_waiting_requests_and_reads() {
    let limits = Limits { max_in_flight: 1, ..Limits::default() }.with_max_waiting(4);
    let mut c = Cluster::new(limits);
    let leader = c.elect(None);
    let now = c.now;
    // Nothing is carried out in between: one registration is proposed, the rest queue.
    for conn in 1..=6 {
        c.node(leader).core.handle_client(now, conn, ClientRequest { id: 1, command: register(conn.into()) });
    }
    let read = ReadRequest { id: 2, query: get("k"), mode: ReadMode::Linearizable };
    c.node(leader).core.handle_read(now, 7, read.clone());
    // A stale read waits for nothing: it is always served.
    c.node(leader).core.handle_read(now, 8, ReadRequest { mode: ReadMode::Stale, ..read.clone() });
    assert_eq!(c.node(leader).core.waiting(), 4);
    c.run();
    for conn in 1..=4 {
        assert!(matches!(c.answers_to(leader, conn)[..], [Outcome::Registered { .. }]), "client {conn}");
    }
    for conn in 5..=7 {
        assert_eq!(c.answers_to(leader, conn), [Outcome::Busy], "client {conn}");
    }
    assert!(matches!(c.answers_to(leader, 8)[..], [Outcome::Applied { .. }]));
    assert_eq!(c.node(leader).core.stats().busy, 3);
    // Once they are answered, room again: the read that was refused is served.
    c.node(leader).core.handle_read(now, 7, ReadRequest { id: 3, ..read });
    c.run();
    assert!(matches!(c.answers_to(leader, 7)[..], [Outcome::Busy, Outcome::Applied { .. }]));
}

#[test]
fn a_step_down_redirects_queued_requests_and_keeps_proposed_waiters() {
    let mut c = Cluster::new(Limits { max_in_flight: 1, ..Limits::default() });
    let a = c.elect(None);
    c.isolate(a);
    for conn in 1..=3 {
        c.request(a, conn, 1, register(conn.into()));
    }
    // One proposed (its Accept lost), two queued.
    assert_eq!((c.node(a).core.queued_commands(), c.node(a).core.waiting()), (2, 3));
    let b = c.elect(Some(a));
    c.cut.clear();
    for _ in 0..20 {
        c.tick();
    }
    assert!(!c.node(a).core.paxos().is_leader());
    for conn in 2..=3 {
        assert!(matches!(c.answers_to(a, conn)[..], [Outcome::Redirect { .. }]), "client {conn}");
    }
    assert_eq!(c.node(a).core.stats().queued_redirected, 2);
    // The proposed request's waiter stays until its slot is applied: then the
    // new leader's value (here: a no-op, or nothing yet) decides its answer.
    let answered = c.answers_to(a, 1);
    assert!(
        answered.is_empty() || answered == [Outcome::Redirect { leader: Some(NodeId(b)) }],
        "{answered:?}"
    );
}

/// Leader A proposes slot s for a client and is cut off; B leads and fills s with
/// another client's request; A learns the commit: A's client is redirected, not answered.
fn slot_won_by_another_value(c: &mut Cluster) -> (u32, u32) {
    let a = c.elect(None);
    c.isolate(a);
    c.request(a, 1, 10, register(1));
    assert_eq!(c.node(a).core.waiting(), 1);
    let b = c.elect(Some(a));
    c.request(b, 2, 20, register(2));
    assert!(matches!(c.answers_to(b, 2)[..], [Outcome::Registered { .. }]));
    c.cut.clear();
    for _ in 0..50 {
        c.tick();
    }
    let (applied_a, applied_b) = (c.node(a).applier.next_slot(), c.node(b).applier.next_slot());
    assert_eq!(applied_a, applied_b, "A caught up");
    (a, b)
}

#[test]
fn a_slot_won_by_another_value_redirects_its_waiter() {
    let mut c = Cluster::new(Limits::default());
    let (a, b) = slot_won_by_another_value(&mut c);
    assert_eq!(c.answers_to(a, 1), [Outcome::Redirect { leader: Some(NodeId(b)) }]);
    assert_eq!(c.answers_to(a, 2), [], "B's client is answered by B alone");
    assert_eq!(c.node(a).core.stats().queued_redirected, 0, "the redirect came with the applied slot");
    assert_eq!(c.node(a).core.waiting(), 0);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn the_planted_bug_answers_a_waiter_from_a_slot_another_value_won() {
    let bugs = synod_replica::PlantedBugs { route_by_position: true, ..Default::default() };
    let mut c = Cluster::with(Limits::default(), |core| core.with_bugs(bugs));
    let (a, _) = slot_won_by_another_value(&mut c);
    // A's client hears B's client's registration: the simulator must catch this.
    assert!(matches!(c.answers_to(a, 1)[..], [Outcome::Registered { .. }]), "{:?}", c.answers_to(a, 1));
}

#[test]
fn proposed_at_is_set_for_own_proposals_only() {
    let mut c = Cluster::new(Limits::default());
    let (a, b) = slot_won_by_another_value(&mut c);
    let c3 = other(a, b);
    let proposed_by_b: Vec<Slot> =
        c.node(b).applied.iter().filter(|(_, at)| at.is_some()).map(|(slot, _)| *slot).collect();
    // B proposed client 2's registration (and may have filled gaps in Phase 1, which carry no time).
    assert_eq!(proposed_by_b.len(), 1, "{:?}", c.node(b).applied);
    // A's slot s, proposed in its old leadership, was applied with no time; followers have none.
    for id in [a, c3] {
        assert!(c.node(id).applied.iter().all(|(_, at)| at.is_none()), "{id}: {:?}", c.node(id).applied);
    }
    // The time is the proposing call's.
    let mut c = Cluster::new(Limits::default());
    let leader = c.elect(None);
    c.now.mono_us = 123_456;
    c.request(leader, 1, 1, register(1));
    let last = *c.node(leader).applied.last().unwrap();
    assert_eq!(last.1, Some(123_456), "{last:?}");
}

#[test]
fn a_closed_connection_drops_its_waiters() {
    let mut c = Cluster::new(Limits { max_in_flight: 1, ..Limits::default() });
    let leader = c.elect(None);
    let now = c.now;
    for nonce in 1..=3 {
        c.node(leader).core.handle_client(now, 7, ClientRequest { id: nonce, command: register(nonce) });
    }
    c.node(leader).core.handle_client(now, 8, ClientRequest { id: 1, command: register(4) });
    assert_eq!((c.node(leader).core.queued_commands(), c.node(leader).core.waiting()), (3, 4));
    c.node(leader).core.handle_client_gone(7);
    assert_eq!(c.node(leader).core.waiting(), 1);
    assert_eq!(c.node(leader).core.stats().waiters_dropped, 3);
    c.run();
    assert_eq!(c.answers_to(leader, 7), []);
    assert!(matches!(c.answers_to(leader, 8)[..], [Outcome::Registered { .. }]));
    assert_eq!(c.node(leader).core.stats().commands_proposed, 4, "the commands still went through");
}

#[test]
fn a_resent_request_replaces_its_waiter() {
    let mut c = Cluster::new(Limits { max_in_flight: 1, ..Limits::default() });
    let leader = c.elect(None);
    let now = c.now;
    let core = &mut c.node(leader).core;
    core.handle_client(now, 1, ClientRequest { id: 1, command: register(1) }); // proposed
    core.handle_client(now, 2, ClientRequest { id: 1, command: register(2) }); // queued
    core.handle_client(now, 3, ClientRequest { id: 9, command: register(2) }); // resent: replaces conn 2
    core.handle_client(now, 4, ClientRequest { id: 9, command: register(1) }); // resent: replaces conn 1
    assert_eq!((core.queued_commands(), core.waiting(), core.stats().waiters_replaced), (1, 2, 2));
    c.run();
    for (conn, answered) in [(1, false), (2, false), (3, true), (4, true)] {
        assert_eq!(!c.answers_to(leader, conn).is_empty(), answered, "conn {conn}");
    }
    assert_eq!(c.node(leader).core.stats().commands_proposed, 2, "each command proposed once");
}

#[test]
fn route_replies_matches_by_origin_and_redirects_the_rest() {
    let origin = |nonce| Origin::Register { nonce };
    let waiter = |conn: u32, nonce| Waiter { origin: origin(nonce), conn, id: u64::from(conn) * 10 };
    let reply = |nonce, client| Reply {
        origin: origin(nonce),
        outcome: Outcome::Registered { client: ClientId(client) },
    };
    let leader = Some(NodeId(2));
    let redirect = Outcome::Redirect { leader };
    /// (connection, request id, answer)
    type Answer = (u32, u64, Outcome);
    /// (waiters, replies of the applied value, expected answers)
    type Row = (Vec<Waiter<u32>>, Vec<Reply>, Vec<Answer>);
    let table: Vec<Row> = vec![
        // Our own batch: each waiter gets its own reply, whatever the order.
        (
            vec![waiter(1, 1), waiter(2, 2)],
            vec![reply(2, 20), reply(1, 10)],
            vec![
                (2, 20, Outcome::Registered { client: ClientId(20) }),
                (1, 10, Outcome::Registered { client: ClientId(10) }),
            ],
        ),
        // Another value won the slot: nobody is answered from it.
        (
            vec![waiter(1, 1), waiter(2, 2)],
            vec![reply(3, 30)],
            vec![(1, 10, redirect.clone()), (2, 20, redirect.clone())],
        ),
        // A no-op won: no replies at all.
        (vec![waiter(1, 1)], vec![], vec![(1, 10, redirect.clone())]),
        // A batch that carries one of ours (its client retried through the new leader) and not the other.
        (
            vec![waiter(1, 1), waiter(2, 2)],
            vec![reply(9, 90), reply(2, 20)],
            vec![(2, 20, Outcome::Registered { client: ClientId(20) }), (1, 10, redirect.clone())],
        ),
        // A follower: nobody waits.
        (vec![], vec![reply(1, 10)], vec![]),
    ];
    for (i, (waiters, replies, expected)) in table.into_iter().enumerate() {
        let got: Vec<Answer> = route_replies(waiters, replies, leader, Routing::default())
            .into_iter()
            .map(|(conn, r)| (conn, r.id, r.outcome))
            .collect();
        assert_eq!(got, expected, "row {i}");
    }
}

#[test]
fn a_core_has_effects_from_its_constructor_and_stamps_batches_with_the_callers_clocks() {
    // A single-replica cluster stands for election while being built; a request commits without peers.
    let paxos = Paxos::new(Config::new(NodeId(1), [NodeId(1)]).unwrap(), 1);
    let mut core: ReplicaCore<u32> = ReplicaCore::new(paxos, Limits::default());
    let now = Now { wall_ms: 5, mono_us: 6 };
    let mut leads = false;
    while let Some(effect) = core.poll_effect() {
        match effect {
            Effect::Persist { token, .. } => core.handle_persisted(now, token),
            Effect::LeaderChanged { is_self, .. } => leads = is_self,
            other => panic!("{other:?}"),
        }
    }
    assert!(leads);
    core.handle_client(now, 1, ClientRequest { id: 3, command: register(3) });
    let mut applied = None;
    while let Some(effect) = core.poll_effect() {
        match effect {
            Effect::Persist { token, .. } => core.handle_persisted(now, token),
            Effect::Apply(apply) => applied = Some(apply),
            _ => {}
        }
    }
    let apply = applied.expect("the slot was chosen");
    assert_eq!((apply.slot, apply.proposed_at_us, apply.waiters.len()), (Slot(0), Some(6), 1));
    let Value::Batch(bytes) = &apply.value else { panic!("{apply:?}") };
    assert_eq!(
        synod_wire::Batch::decode(bytes).unwrap().timestamp_ms,
        5,
        "stamped with the caller's wall clock"
    );
}

#[test]
fn a_replica_behind_the_compacted_log_receives_the_snapshot_in_chunks_and_converges() {
    let policy = SnapshotPolicy { log_bytes: 300, retain_slots: 2 };
    let mut c =
        Cluster::with(Limits { max_in_flight: 1, max_batch_commands: 1, ..Limits::default() }, |core| {
            core.with_snapshots(policy)
        });
    let leader = c.elect(None);
    let behind = other(leader, leader % 3 + 1);
    c.isolate(behind);
    c.request(leader, 1, 1, register(7));
    let Some(Outcome::Registered { client }) = c.answers_to(leader, 1).pop() else { panic!("no session") };
    for seq in 1..=40 {
        c.request(leader, 1, 100 + seq, put(client, seq, &format!("key-{seq}")));
        c.tick();
    }
    let stats = c.node(leader).core.stats();
    assert!(stats.snapshots_asked >= 3, "the leader snapshotted: {stats:?}");
    let base = c.node(leader).core.paxos().base();
    assert!(base > Slot(10), "and compacted its log to {base}");
    c.cut.clear();
    for _ in 0..300 {
        c.tick();
    }
    let node = &c.nodes[behind as usize - 1];
    let stats = node.core.stats();
    assert_eq!(stats.snapshots_installed, 1, "{stats:?}");
    assert!(stats.snapshot_bytes_received > CHUNK as u64, "in several chunks: {stats:?}");
    let lead = &c.nodes[leader as usize - 1];
    assert_eq!(node.applier.next_slot(), lead.applier.next_slot());
    assert_eq!(node.applier.digest(), lead.applier.digest(), "the same state, sessions included");
}

#[test]
fn a_snapshot_chunk_out_of_order_or_malformed_is_ignored() {
    let mut c = Cluster::new(Limits::default());
    let now = c.now;
    let core = &mut c.node(2).core;
    // A chunk that does not start a transfer, one past its total, one empty: nothing is stored.
    for (offset, total, bytes) in [(5u64, 10u64, vec![1u8; 5]), (0, 3, vec![1; 5]), (0, 10, vec![])] {
        core.handle_message(now, NodeId(1), Message::SnapshotChunk { upto: Slot(50), total, offset, bytes });
        while let Some(e) = core.poll_effect() {
            assert!(!matches!(e, Effect::StoreSnapshotChunk { .. }), "{e:?}");
        }
    }
    // The first chunk of a good one is stored, and the next one pulled.
    core.handle_message(
        now,
        NodeId(1),
        Message::SnapshotChunk { upto: Slot(50), total: 10, offset: 0, bytes: vec![1; 4] },
    );
    let effects: Vec<_> = std::iter::from_fn(|| core.poll_effect()).collect();
    assert!(effects.iter().any(|e| matches!(e, Effect::StoreSnapshotChunk { offset: 0, last: false, .. })));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Send { to: NodeId(1), msg: Message::SnapshotPull { upto: Slot(50), offset: 4 } }
    )));
    // A duplicate of it is not stored twice.
    core.handle_message(
        now,
        NodeId(1),
        Message::SnapshotChunk { upto: Slot(50), total: 10, offset: 0, bytes: vec![1; 4] },
    );
    assert!(
        std::iter::from_fn(|| core.poll_effect()).all(|e| !matches!(e, Effect::StoreSnapshotChunk { .. }))
    );
}

fn get(key: &str) -> Vec<u8> {
    KvCommand::Get { key: key.as_bytes().to_vec() }.encode().unwrap()
}

fn value(outcome: &Outcome) -> Option<Vec<u8>> {
    let Outcome::Applied { payload } = outcome else { panic!("not a value: {outcome:?}") };
    match KvResponse::decode(payload).unwrap() {
        KvResponse::Value(v) => v,
        other => panic!("not a value: {other:?}"),
    }
}

#[test]
fn reads_are_served_by_the_leader_and_followers_without_the_log_and_never_stale() {
    let mut c = Cluster::new(Limits::default());
    let leader = c.elect(None);
    let follower = other(leader, leader);
    c.request(leader, 1, 1, register(1));
    let Outcome::Registered { client } = c.answers_to(leader, 1)[0] else { panic!() };
    c.request(leader, 1, 2, put(client, 1, "k"));
    let slots = c.node(leader).core.paxos().first_unchosen();
    let now = c.now;
    for (at, conn) in [(leader, 5), (follower, 6)] {
        c.node(at).core.handle_read(
            now,
            conn,
            ReadRequest { id: 9, query: get("k"), mode: ReadMode::Linearizable },
        );
        c.run();
        let answers = c.answers_to(at, conn);
        assert_eq!(answers.len(), 1, "replica {at}: {answers:?}");
        assert_eq!(value(&answers[0]), Some(b"v".to_vec()), "replica {at} read the acknowledged put");
    }
    assert_eq!(c.node(leader).core.paxos().first_unchosen(), slots, "no read went through the log");
    assert!(c.node(leader).core.paxos().stats().read_rounds >= 1);

    // A leader cut off from the majority cannot confirm it leads: its reads get no answer from
    // it while cut off, and fail (never an old value) once it steps down.
    c.isolate(leader);
    let now = c.now;
    c.node(leader).core.handle_read(
        now,
        8,
        ReadRequest { id: 10, query: get("k"), mode: ReadMode::Linearizable },
    );
    c.run();
    assert!(c.answers_to(leader, 8).is_empty(), "answered without a majority");
    let new = c.elect(Some(leader));
    c.request(new, 2, 3, register(2));
    let Outcome::Registered { client: second } = c.answers_to(new, 2)[0] else { panic!() };
    let payload = KvCommand::Put { key: b"k".to_vec(), value: b"w".to_vec() }.encode().unwrap();
    c.request(new, 2, 4, Command::Op { client: second, seq: Seq(1), ack: Seq(0), payload });
    for _ in 0..200 {
        c.tick();
    }
    for outcome in c.answers_to(leader, 8) {
        assert!(matches!(outcome, Outcome::Unavailable(_)), "a deposed leader answered {outcome:?}");
    }
    // A stale read answers at once from whatever the replica applied.
    let now = c.now;
    c.node(leader).core.handle_read(now, 9, ReadRequest { id: 11, query: get("k"), mode: ReadMode::Stale });
    c.run();
    assert_eq!(value(&c.answers_to(leader, 9)[0]), Some(b"v".to_vec()), "the cut-off replica's own state");
}
