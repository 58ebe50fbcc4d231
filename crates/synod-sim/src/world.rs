//! The simulated world: replicas, disks, network and clients, stepped tick by tick from one seed.

use std::collections::BTreeMap;

use synod_client_core::CallId;
use synod_paxos::rng::Rng;
use synod_paxos::{Config, Durable, Paxos};
use synod_replica::{route_replies, Apply, Limits, Now, ReplicaCore, SnapshotPolicy};
use synod_state_machine::{snapshot_membership, Applier, SessionConfig};
use synod_wire::{
    ChangeRequest, ClientReply, ClientRequest, MemberChange, MemberRole, Membership, Message, NodeId,
    Outcome, Slot,
};

use crate::client::{Effect, Reach, SimClient};
use crate::config::SimConfig;
use crate::disk::{Completion, Disk};
use crate::invariants::{Checker, Convergence, Violation};
use crate::machine::Audited;
use crate::net::{Addr, Net, Payload};

/// Commands a leader puts in one batch at most.
const MAX_BATCH: usize = 8;
/// Slots a leader keeps proposed and not yet chosen, as the runtime does by
/// default (`Limits::default`): more requests queue and go in later batches.
const MAX_IN_FLIGHT: usize = 4;
/// Requests that may wait at a replica before more are answered `Busy`: far
/// below the runtime's default, so that admission control and the clients'
/// backoff run in every seed.
const MAX_WAITING: usize = 6;
/// The connection id of the operator who asks for membership changes.
const ADMIN: usize = usize::MAX;

/// What a run did and found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Broken invariants; empty for a good run.
    pub violations: Vec<Violation>,
    /// Ticks simulated.
    pub ticks: u64,
    /// Slots chosen.
    pub slots: u64,
    /// Client operations answered.
    pub ops: u64,
    /// Replica crashes, counting the stops after failed fsyncs.
    pub crashes: u64,
    /// Failed fsyncs (each stopped its replica).
    pub fsync_failures: u64,
    /// Link cuts (partitions, one-way and partial).
    pub cuts: u64,
    /// Elections started, over all replicas and incarnations.
    pub elections: u64,
    /// Messages sent and dropped.
    pub messages: (u64, u64),
    /// Snapshots written (finished), over all replicas.
    pub snapshots: u64,
    /// Snapshots received from peers and installed.
    pub installs: u64,
    /// Requests answered `Busy` by admission control.
    pub busy: u64,
    /// Disks replaced by empty ones.
    pub wipes: u64,
    /// Membership changes asked for, and how many took effect.
    pub changes: (u64, u64),
    /// Reads outside the log that finished (each checked against the chosen log).
    pub reads: u64,
    /// The newest configuration's epoch at the end.
    pub epoch: u64,
    /// The readable trace, if asked for.
    pub trace: Vec<String>,
}

/// One simulated replica: the real replica core (a client's connection is
/// its index) and the real applier behind it.
struct Replica {
    core: ReplicaCore<usize>,
    applier: Applier<Audited>,
}

/// Where a replica slot stands in the cluster's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// One of the replicas the cluster started with, or one added since.
    Member,
    /// Not started yet: a spare a membership change may add.
    Spare,
    /// Removed: it learned so and stopped. It may be added again, empty.
    Gone,
}

/// A membership change the operator asked for and has no answer to yet.
#[derive(Debug, Clone)]
struct Asked {
    id: u64,
    at: u64,
    change: MemberChange,
}

/// A tick's time as the replica core takes it: a tick is 10 ms.
fn at(tick: u64) -> Now {
    Now { wall_ms: tick * 10, mono_us: tick * 10_000 }
}

struct World {
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    ids: Vec<NodeId>,
    /// The replicas the cluster starts with (configuration 0).
    initial: Vec<NodeId>,
    life: Vec<Life>,
    /// Per slot: the members a joining replica was told to learn from.
    contacts: Vec<Vec<NodeId>>,
    asked: Option<Asked>,
    /// Reads outside the log in flight: the floor of writes each must see.
    read_floors: BTreeMap<(usize, CallId), Slot>,
    next_ask: u64,
    changes_done: u64,
    nodes: Vec<Option<Replica>>,
    incarnation: Vec<u64>,
    restart_at: Vec<Option<u64>>,
    /// Replicas whose disk was replaced and that have not rejoined yet.
    wiped: Vec<bool>,
    disks: Vec<Disk>,
    net: Net,
    clients: Vec<SimClient>,
    checker: Checker,
    trace: Vec<String>,
    crashes: u64,
    cuts: u64,
    elections: u64,
    snapshots: u64,
    installs: u64,
    busy: u64,
    wipes: u64,
}

/// Runs one seeded simulation: a fault phase, then a heal phase that must converge.
pub fn run(cfg: &SimConfig) -> Report {
    let mut w = World::new(cfg.clone());
    for i in 0..w.initial.len() {
        w.start(i);
    }
    while w.now < cfg.fault_ticks {
        w.now += 1;
        w.faults();
        w.step();
    }
    w.heal();
    let deadline = w.now + cfg.heal_ticks;
    loop {
        w.now += 1;
        w.step();
        let c = w.convergence();
        if c.converged() {
            break;
        }
        if w.now >= deadline {
            let why = c.explain();
            w.checker.liveness(w.now, Some(why));
            break;
        }
    }
    w.checker.final_durability(w.now);
    w.checker.final_reads();
    if cfg.trace {
        for n in w.nodes.iter().flatten() {
            let p = n.core.paxos();
            let line = format!(
                "END {}: known_commit {} first_unchosen {} delivered {} base {} rejoining {} removed {} voter {} leader {:?} epoch {} applied {}",
                p.id(), p.known_commit(), p.first_unchosen(), p.delivered(), p.base(), p.is_rejoining(), p.is_removed(), p.is_voter(), p.leader(), p.membership().epoch, n.applier.next_slot()
            );
            w.trace.push(line);
        }
    }
    w.report()
}

impl World {
    fn new(cfg: SimConfig) -> World {
        let mut rng = Rng::new(cfg.seed);
        let spares = if cfg.reconfigs { cfg.spares } else { 0 };
        let ids: Vec<NodeId> = (1..=cfg.replicas + spares).map(NodeId).collect();
        let initial: Vec<NodeId> = ids[..cfg.replicas as usize].to_vec();
        let n = ids.len();
        let life = (0..n).map(|i| if i < initial.len() { Life::Member } else { Life::Spare }).collect();
        let clients = (0..cfg.clients)
            .map(|i| SimClient::new(i, cfg.requests_per_client, cfg.replicas + spares, &mut rng))
            .collect();
        World {
            net: Net::new(cfg.drop_percent, cfg.dup_percent, cfg.max_delay),
            rng,
            now: 0,
            ids,
            initial,
            life,
            contacts: vec![Vec::new(); n],
            asked: None,
            read_floors: BTreeMap::new(),
            next_ask: 0,
            changes_done: 0,
            nodes: (0..n).map(|_| None).collect(),
            incarnation: vec![0; n],
            restart_at: vec![None; n],
            wiped: vec![false; n],
            disks: (0..n).map(|_| Disk::default()).collect(),
            clients,
            checker: Checker::default(),
            trace: Vec::new(),
            crashes: 0,
            cuts: 0,
            elections: 0,
            snapshots: 0,
            installs: 0,
            busy: 0,
            wipes: 0,
            cfg,
        }
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.trace {
            let line = line();
            self.trace.push(format!("t={:>5} {line}", self.now));
        }
    }

    /// Starts (or restarts) replica `i` from what its disk holds.
    fn start(&mut self, i: usize) {
        let config = if self.contacts[i].is_empty() {
            Config::new(self.ids[i], self.initial.clone())
        } else {
            Config::joining(self.ids[i], self.contacts[i].clone())
        };
        let config =
            config.expect("the simulator builds valid configs").with_eager_commit(self.cfg.eager_commit);
        #[cfg(feature = "planted-bugs")]
        let config = config.with_bugs(self.cfg.bugs);
        self.incarnation[i] += 1;
        let seed = self.cfg.seed ^ (self.incarnation[i] << 48);
        self.restart_at[i] = None;
        let disk = match self.disks[i].open() {
            Ok(disk) => disk,
            Err(e) => {
                // A crash only loses or tears unsynced writes: recovery must not refuse the log.
                let detail = format!("{}: the log was refused at restart: {e}", self.ids[i]);
                self.checker.recovery_refused(self.now, detail);
                return;
            }
        };
        let id = self.ids[i];
        self.checker.recovered(self.now, id, &disk.written, disk.reported, &disk.records, disk.truncated);
        let (records, torn) = (disk.records.len(), disk.torn.map_or(0, |t| t.bytes_dropped));
        if self.cfg.trace {
            let rejoins: Vec<bool> = disk
                .records
                .iter()
                .filter_map(|r| match r {
                    synod_wire::LogRecord::Rejoin { done } => Some(*done),
                    _ => None,
                })
                .collect();
            let written: Vec<bool> = disk
                .written
                .iter()
                .filter_map(|r| match r {
                    synod_wire::LogRecord::Rejoin { done } => Some(*done),
                    _ => None,
                })
                .collect();
            self.trace.push(format!(
                "t={:>5} {} recovers Rejoin records {rejoins:?} (written {written:?}, reported durable {})",
                self.now, self.ids[i], disk.reported
            ));
        }
        let mut durable = Durable::replay(disk.records);
        let fresh = || {
            let applier = Applier::new(Audited::default(), SessionConfig::default());
            #[cfg(feature = "planted-bugs")]
            let applier = applier.with_bugs(self.cfg.machine_bugs);
            applier
        };
        let applier = match &disk.snapshot {
            None if durable.snapshot_upto > Slot(0) => {
                let detail = format!(
                    "{}: the log names snapshot {} but there is none",
                    self.ids[i], durable.snapshot_upto
                );
                self.checker.recovery_refused(self.now, detail);
                return;
            }
            None => fresh(),
            Some(file) => {
                let restored =
                    self.disks[i].snapshot_reader(Slot(file.upto)).map_err(|e| e.to_string()).and_then(|r| {
                        let mut input = std::io::BufReader::new(r);
                        Applier::restore_from(Audited::default(), SessionConfig::default(), &mut input)
                            .map_err(|e| e.to_string())
                    });
                match restored {
                    Ok(applier) => {
                        #[cfg(feature = "planted-bugs")]
                        let applier = applier.with_bugs(self.cfg.machine_bugs);
                        let (at, digest) = (applier.next_slot(), applier.digest());
                        self.checker.restored(self.now, self.ids[i], Slot(file.upto), at, digest);
                        applier
                    }
                    Err(e) => {
                        self.checker.snapshot_failed(self.now, format!("{}: {e}", self.ids[i]));
                        return;
                    }
                }
            }
        };
        let deliver_from = applier.next_slot();
        durable.raise_snapshot(deliver_from);
        durable.membership = applier.membership().cloned();
        let paxos = if records == 0 && disk.snapshot.is_none() {
            Paxos::rejoin(config, seed)
        } else {
            Paxos::recover(config, seed, durable, deliver_from)
        };
        let policy =
            SnapshotPolicy { log_bytes: self.cfg.snapshot_log_bytes, retain_slots: self.cfg.retain_slots };
        let core = ReplicaCore::new(
            paxos,
            Limits::with_batches(MAX_IN_FLIGHT, MAX_BATCH, 1 << 20).with_max_waiting(MAX_WAITING),
        )
        .with_snapshots(policy);
        #[cfg(feature = "planted-bugs")]
        let core = core.with_bugs(self.cfg.replica_bugs);
        self.nodes[i] = Some(Replica { core, applier });
        let id = self.ids[i];
        let inc = self.incarnation[i];
        self.log(|| {
            format!("{id} starts (incarnation {inc}) from {records} durable records ({torn} torn bytes cut)")
        });
        self.drain(i);
    }

    fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            self.count(&node);
            let mode = self.disks[i].crash(&mut self.rng);
            self.crashes += 1;
            let back = self.now + self.rng.range(20, 300);
            self.restart_at[i] = Some(back);
            let id = self.ids[i];
            self.log(|| format!("{id} CRASHES (disk: {mode:?}); restarts at {back}"));
        }
    }

    /// Maybe injects one fault: a crash, a partition, a one-way cut, a cut pair, or a heal.
    fn faults(&mut self) {
        for i in 0..self.nodes.len() {
            if self.restart_at[i].is_some_and(|t| t <= self.now) {
                self.start(i);
            }
        }
        if self.rng.range(0, 999) >= self.cfg.fault_per_mille {
            return;
        }
        let n = self.ids.len();
        match self.rng.range(0, 7) {
            0 => {
                let i = self.rng.index(n);
                self.crash(i);
            }
            6 | 7 if self.cfg.reconfigs => self.reconfigure(),
            5 if self.cfg.wipes => {
                // A lost disk: the replica restarts empty and must rejoin. Only
                // while every replica is up and none is rejoining: a second
                // replica without its votes (a lost disk, or one that crashed
                // before its first write, which looks the same) before the
                // first rejoined is more than the cluster tolerates.
                let rejoining = |(n, life): (&Option<Replica>, &Life)| {
                    *life == Life::Member && n.as_ref().is_none_or(|r| r.core.paxos().is_rejoining())
                };
                if self.wiped.iter().any(|&w| w)
                    || self.nodes.iter().zip(&self.life).any(rejoining)
                    || self.asked.is_some()
                {
                    return;
                }
                let i = self.rng.index(n);
                // And only while the other voters make a majority without it:
                // a replica that lost its votes cannot help choose the slots
                // it must learn before it votes again.
                let newest = self.newest();
                // Nor while a configuration change is still spreading: the
                // replicas still in the older one need a majority of its voters.
                let epochs: Vec<u64> = self
                    .nodes
                    .iter()
                    .zip(&self.life)
                    .filter(|(_, l)| **l == Life::Member)
                    .filter_map(|(n, _)| n.as_ref().map(|r| r.core.paxos().membership().epoch))
                    .collect();
                if epochs.iter().any(|&e| e != newest.epoch) {
                    return;
                }
                // Nor while a voter of it is gone for good: a replica that
                // retired while a change adding it again was still being
                // chosen (seed 4070099). A rejoining replica hears every other
                // voter first, so it would never rejoin.
                let gone = |id: &NodeId| {
                    self.ids.iter().position(|x| x == id).is_some_and(|j| self.life[j] == Life::Gone)
                };
                if newest.voters().any(|v| gone(&v)) {
                    return;
                }
                let voters = newest.voters().count();
                let others = voters - usize::from(newest.is_voter(self.ids[i]));
                if self.life[i] != Life::Member || !newest.contains(self.ids[i]) || others < newest.majority()
                {
                    return;
                }
                self.crash(i);
                self.disks[i].wipe();
                self.wiped[i] = true;
                self.wipes += 1;
                let id = self.ids[i];
                self.log(|| format!("{id} LOSES ITS DISK; it restarts empty"));
            }
            1 => {
                // A partition: a random side against the rest, both ways.
                let side: Vec<bool> = (0..n).map(|_| self.rng.chance(50)).collect();
                for a in 0..n {
                    for b in 0..n {
                        if side[a] != side[b] {
                            self.net.cut.insert((self.ids[a], self.ids[b]));
                        }
                    }
                }
                self.cuts += 1;
                self.log(|| format!("PARTITION {side:?}"));
            }
            2 => {
                let (a, b) = self.pair();
                self.net.cut.insert((a, b));
                self.cuts += 1;
                self.log(|| format!("ONE-WAY CUT {a} -> {b}"));
            }
            3 => {
                let (a, b) = self.pair();
                self.net.cut.insert((a, b));
                self.net.cut.insert((b, a));
                self.cuts += 1;
                self.log(|| format!("CUT {a} <-> {b}"));
            }
            _ => {
                self.net.cut.clear();
                self.log(|| "HEAL links".to_owned());
            }
        }
    }

    fn pair(&mut self) -> (NodeId, NodeId) {
        let n = self.ids.len();
        let a = self.rng.index(n);
        let b = (a + 1 + self.rng.index(n - 1)) % n;
        (self.ids[a], self.ids[b])
    }

    /// The end of the fault phase: every link heals, the network turns
    /// reliable, and every crashed replica restarts.
    fn heal(&mut self) {
        self.net.cut.clear();
        self.net.drop_percent = 0;
        self.net.dup_percent = 0;
        self.net.max_delay = self.net.max_delay.min(3);
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() && self.life[i] == Life::Member {
                self.start(i);
            }
        }
        self.log(|| "HEAL PHASE: all links healed, all replicas up, no loss".to_owned());
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(packet) = self.net.next_due(now) {
            match (packet.to, packet.payload) {
                (Addr::Node(to), Payload::Peer(msg)) => {
                    let i = to.0 as usize - 1;
                    let Addr::Node(from) = packet.from else { continue };
                    if let Some(node) = &mut self.nodes[i] {
                        if self.cfg.trace {
                            let kind = msg.kind();
                            self.trace.push(format!("t={now:>5} {from} -> {to} {kind}"));
                        }
                        node.core.handle_message(at(now), from, msg);
                        self.drain(i);
                    }
                }
                (Addr::Node(to), Payload::Request(req)) => {
                    let Addr::Client(c) = packet.from else { continue };
                    self.on_request(to.0 as usize - 1, c, req);
                }
                (Addr::Node(to), Payload::Read(read)) => {
                    let Addr::Client(c) = packet.from else { continue };
                    let i = to.0 as usize - 1;
                    if let Some(node) = &mut self.nodes[i] {
                        node.core.handle_read(at(now), c, read);
                        self.drain(i);
                    }
                }
                (Addr::Client(c), Payload::Reply(reply)) => {
                    let Addr::Node(from) = packet.from else { continue };
                    let mut effects = Vec::new();
                    let up = self.replicas_up();
                    let reach = Reach { up: &up, fail_percent: self.net.drop_percent };
                    self.clients[c].on_reply(now, from, reply, &reach, &mut self.rng, &mut effects);
                    self.apply_effects(c, effects);
                }
                _ => {}
            }
        }
        for i in 0..self.nodes.len() {
            // Fsyncs fail only in the fault phase: crashed replicas restart only there.
            let fail = if now <= self.cfg.fault_ticks { self.cfg.fsync_fail_per_10k } else { 0 };
            match self.disks[i].complete(now, fail, &mut self.rng) {
                Completion::Nothing => {}
                Completion::Durable(token) => {
                    if let Some(node) = &mut self.nodes[i] {
                        node.core.handle_persisted(at(now), token);
                        self.drain(i);
                    }
                }
                Completion::SyncFailed(e) => {
                    // The runtime's rule: a failed fsync stops the node; it never goes on after a lost write.
                    let id = self.ids[i];
                    self.log(|| format!("{id} FSYNC FAILED ({e}): the node stops"));
                    self.crash(i);
                }
            }
        }
        for i in 0..self.nodes.len() {
            let Some((upto, done)) = self.disks[i].finish_snapshot(now) else { continue };
            let Some(node) = &mut self.nodes[i] else { continue };
            match done {
                Ok(()) => {
                    self.snapshots += 1;
                    node.core.handle_snapshot_taken(at(now), upto);
                }
                Err(e) => {
                    let detail = format!("{}: a snapshot could not be written: {e}", self.ids[i]);
                    self.checker.snapshot_failed(now, detail);
                    node.core.handle_snapshot_failed(at(now), upto);
                }
            }
            self.drain(i);
        }
        for i in 0..self.nodes.len() {
            if let Some(node) = &mut self.nodes[i] {
                node.core.handle_tick(at(now));
                if self.wiped[i] && !node.core.paxos().is_rejoining() {
                    self.wiped[i] = false;
                }
                self.drain(i);
            }
        }
        let up = self.replicas_up();
        for c in 0..self.clients.len() {
            let mut effects = Vec::new();
            let reach = Reach { up: &up, fail_percent: self.net.drop_percent };
            self.clients[c].step(now, &reach, &mut self.rng, &mut effects);
            self.apply_effects(c, effects);
        }
    }

    /// Client `client`'s request reaches replica `i`: its core queues it (and
    /// proposes what it can) or answers at once (`Redirect`, `Busy`).
    fn on_request(&mut self, i: usize, client: usize, req: ClientRequest) {
        let Some(node) = &mut self.nodes[i] else { return };
        node.core.handle_client(at(self.now), client, req);
        self.drain(i);
    }

    fn apply_effects(&mut self, c: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send(to, req) => {
                    self.net.send(
                        &mut self.rng,
                        self.now,
                        Addr::Client(c),
                        Addr::Node(to),
                        Payload::Request(req),
                    );
                }
                Effect::SendRead(to, read) => {
                    self.net.send(
                        &mut self.rng,
                        self.now,
                        Addr::Client(c),
                        Addr::Node(to),
                        Payload::Read(read),
                    );
                }
                Effect::ReadBegins(call) => {
                    self.read_floors.insert((c, call), self.checker.read_floor());
                }
                Effect::ReadDone { call, query, mode, answer } => {
                    let floor = self.read_floors.remove(&(c, call)).unwrap_or_default();
                    self.log(|| format!("client {c} read ({mode:?}) done"));
                    self.checker.read_done(self.now, format!("client {c}"), query, mode, floor, answer);
                }
                Effect::Issued(command) => self.checker.issued(&command),
                Effect::Answered(client, seq, outcome) => {
                    self.log(|| format!("client {c} answered {client} {seq}"));
                    self.checker.answered(self.now, client, seq, &outcome);
                }
                Effect::Unexpected(detail) => self.checker.unexpected(self.now, detail),
            }
        }
    }

    /// Carries out everything replica `i`'s core asked for, as the runtime does.
    fn drain(&mut self, i: usize) {
        use synod_replica::Effect as Do;
        let now = self.now;
        let id = self.ids[i];
        loop {
            let Some(node) = &mut self.nodes[i] else { return };
            let Some(effect) = node.core.poll_effect() else { return };
            match effect {
                Do::Send { to, msg } => {
                    self.net.send(&mut self.rng, now, Addr::Node(id), Addr::Node(to), Payload::Peer(msg));
                }
                Do::Persist { records, token } => {
                    let done = now + self.rng.range(0, self.cfg.max_disk_delay);
                    self.disks[i].write(token, records, done);
                }
                Do::Apply(Apply { slot, value, waiters, proposed_at_us: _, leader, routing }) => {
                    // A replica nobody waits on builds no replies, as the runtime's followers do.
                    let applied = if waiters.is_empty() {
                        node.applier.apply_unanswered(slot, &value).map(|()| Vec::new())
                    } else {
                        node.applier.apply(slot, &value)
                    };
                    let replies = match applied {
                        Ok(r) => r,
                        Err(e) => {
                            let detail = format!("{id}: {e}");
                            self.checker.unexpected(now, detail);
                            continue;
                        }
                    };
                    let digest = node.applier.digest();
                    self.checker.committed(now, id, slot, &value, digest);
                    if !node.applier.machine().duplicates.is_empty() {
                        let dups = node.applier.machine().duplicates.clone();
                        self.checker.machine_duplicates(now, id, &dups);
                    }
                    for (client, reply) in route_replies(waiters, replies, leader, routing) {
                        self.reply(id, client, reply);
                    }
                    if self.cfg.trace {
                        self.trace.push(format!("t={now:>5} {id} commits {slot}"));
                    }
                }
                Do::TakeSnapshot { upto } => {
                    // The body is written now, from the state as it is; the
                    // file is synced and renamed a few ticks later, so crashes
                    // land in between. Labelled with the slot the core asked for.
                    let source = node.applier.snapshot_source();
                    if self.cfg.trace {
                        self.trace.push(format!("t={now:>5} {id} snapshots at {upto}"));
                    }
                    let done_at = now + self.rng.range(1, 20);
                    if let Err(e) = self.disks[i].start_snapshot(upto, |out| source.write_to(out), done_at) {
                        self.checker.snapshot_failed(now, format!("{id}: cannot start a snapshot: {e}"));
                        let Some(node) = &mut self.nodes[i] else { return };
                        node.core.handle_snapshot_failed(at(now), upto);
                    }
                }
                Do::TruncateLog { below } => {
                    if let Err(e) = self.disks[i].truncate(below) {
                        self.log(|| format!("{id} log truncation failed ({e}): the node stops"));
                        self.crash(i);
                        return;
                    }
                }
                Do::SendSnapshot { to, upto, offset } => {
                    let chunk = self.disks[i].snapshot_chunk(upto, offset, self.cfg.chunk_bytes);
                    if let Some((upto, total, offset, mut bytes)) = chunk {
                        let corrupt = now <= self.cfg.fault_ticks
                            && self.rng.range(0, 100) < self.cfg.corrupt_chunk_percent;
                        if corrupt {
                            let at = self.rng.index(bytes.len());
                            bytes[at] ^= 0x40;
                        }
                        let msg = Message::SnapshotChunk { upto, total, offset, bytes };
                        self.net.send(&mut self.rng, now, Addr::Node(id), Addr::Node(to), Payload::Peer(msg));
                    }
                }
                Do::StoreSnapshotChunk { upto, offset, bytes, last } => {
                    if let Some(ok) = self.disks[i].store_chunk(upto, offset, &bytes, last) {
                        self.log(|| format!("{id} received snapshot {upto} (checks out: {ok})"));
                        // The configuration it holds, read from its head as the runtime does.
                        let membership = if ok {
                            self.disks[i].snapshot_reader(upto).map_err(|e| e.to_string()).and_then(|r| {
                                snapshot_membership(&mut std::io::BufReader::new(r))
                                    .map_err(|e| e.to_string())
                            })
                        } else {
                            Ok(None)
                        };
                        let (ok, membership) = match membership {
                            Ok(m) => (ok, m),
                            Err(e) => {
                                let detail =
                                    format!("{id}: a snapshot that checked out has no readable head: {e}");
                                self.checker.snapshot_failed(now, detail);
                                (false, None)
                            }
                        };
                        let Some(node) = &mut self.nodes[i] else { return };
                        node.core.handle_snapshot_received(at(now), upto, ok, membership);
                    }
                }
                Do::InstallSnapshot { upto } => {
                    let installed =
                        self.disks[i].snapshot_reader(upto).map_err(|e| e.to_string()).and_then(|r| {
                            let mut input = std::io::BufReader::new(r);
                            node.applier.install_from(&mut input).map_err(|e| e.to_string())
                        });
                    match installed {
                        Ok(()) => {
                            let (at, digest) = (node.applier.next_slot(), node.applier.digest());
                            self.checker.restored(now, id, upto, at, digest);
                            self.log(|| format!("{id} installs snapshot {upto}"));
                        }
                        Err(e) => {
                            self.checker
                                .snapshot_failed(now, format!("{id}: cannot install snapshot {upto}: {e}"));
                            self.crash(i);
                            return;
                        }
                    }
                }
                Do::Read { conn, id: rid, query, index } => {
                    // The runtime's apply thread serves a read after every slot below its index.
                    if node.applier.next_slot() < index {
                        let detail = format!(
                            "{id} served a read at slot {} before its index {index}",
                            node.applier.next_slot()
                        );
                        self.checker.unexpected(now, detail);
                    }
                    if self.cfg.trace {
                        let at = node.applier.next_slot();
                        self.trace.push(format!("t={now:>5} {id} serves a read for client {conn} at index {index} (applied to {at})"));
                    }
                    let outcome = match node.applier.read(&query) {
                        Some(payload) => Outcome::Applied { payload },
                        None => Outcome::Unavailable("no reads outside the log".to_owned()),
                    };
                    self.reply(id, conn, ClientReply { id: rid, outcome });
                }
                Do::Reply { conn: ADMIN, reply } => self.on_admin_reply(id, reply),
                Do::Reply { conn, reply } => self.reply(id, conn, reply),
                Do::Reconfigured { membership, from, removed } => {
                    self.log(|| format!("{id} takes configuration {membership} from {from}"));
                    if removed {
                        self.log(|| format!("{id} was REMOVED; it answers its peers until it may retire"));
                    }
                }
                Do::Retire => {
                    {
                        // The runtime stops a retired replica: so does the simulator.
                        let node = self.nodes[i].take().expect("up");
                        self.count(&node);
                        self.restart_at[i] = None;
                        self.life[i] = Life::Gone;
                        self.wiped[i] = false;
                        self.log(|| format!("{id} RETIRES and stops"));
                        return;
                    }
                }
                Do::LeaderChanged { leader, ballot, is_self } => {
                    self.log(|| format!("{id} now follows {leader:?} (ballot {ballot}, self {is_self})"));
                }
                Do::Proposed { slot, commands } => {
                    self.log(|| format!("{id} proposes {commands} commands in {slot}"));
                }
            }
        }
    }

    /// Replica `from` answers client `client`.
    fn reply(&mut self, from: NodeId, client: usize, reply: ClientReply) {
        self.net.send(&mut self.rng, self.now, Addr::Node(from), Addr::Client(client), Payload::Reply(reply));
    }

    /// The newest configuration any running replica knows.
    fn newest(&self) -> Membership {
        self.nodes
            .iter()
            .flatten()
            .map(|n| n.core.paxos().membership())
            .max_by_key(|m| m.epoch)
            .cloned()
            .unwrap_or_else(|| Membership::initial(self.initial.iter().map(|&id| (id, String::new()))))
    }

    /// The operator asks the leader for a membership change drawn from the
    /// seed: add a spare (or a removed replica, with an empty disk) as a
    /// learner or a voter, promote a learner, or remove a member; between 1
    /// and 5 voters. A replica to add starts first, empty, waiting to be added.
    fn reconfigure(&mut self) {
        if self.asked.as_ref().is_some_and(|a| a.at + self.cfg.operator_patience > self.now) {
            return;
        }
        let Some(leader) = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].as_ref().is_some_and(|n| n.core.paxos().is_leader()))
            .max_by_key(|&i| self.nodes[i].as_ref().map(|n| n.core.paxos().membership().epoch))
        else {
            return;
        };
        let m = self.nodes[leader].as_ref().expect("up").core.paxos().membership().clone();
        let voters = m.voters().count();
        let learners: Vec<NodeId> = m.learners().collect();
        let outside: Vec<usize> = (0..self.ids.len())
            .filter(|&i| !m.contains(self.ids[i]) && self.life[i] != Life::Member && self.nodes[i].is_none())
            .collect();
        let change = match self.rng.range(0, 2) {
            0 if !learners.is_empty() && voters < 5 => {
                MemberChange::Promote { id: learners[self.rng.index(learners.len())] }
            }
            0 | 1 if !outside.is_empty() && voters + learners.len() < 6 => {
                let i = outside[self.rng.index(outside.len())];
                let learner = voters >= 5 || self.rng.chance(60);
                // A new machine for this identity: an empty disk, told whom to learn from.
                self.disks[i].wipe();
                self.contacts[i] = m.ids().collect();
                self.life[i] = Life::Member;
                self.start(i);
                MemberChange::Add { id: self.ids[i], addr: format!("sim:{}", 7000 + i), learner }
            }
            _ if voters > 1 || !learners.is_empty() => {
                let members: Vec<NodeId> = m.ids().collect();
                let id = members[self.rng.index(members.len())];
                if m.is_voter(id) && voters <= 1 {
                    return;
                }
                MemberChange::Remove { id }
            }
            _ => return,
        };
        self.next_ask += 1;
        let id = self.next_ask;
        let to = self.ids[leader];
        self.log(|| format!("OPERATOR asks {to} for {change:?}"));
        self.asked = Some(Asked { id, at: self.now, change: change.clone() });
        let Some(node) = &mut self.nodes[leader] else { return };
        node.core.handle_change(at(self.now), ADMIN, ChangeRequest { id, change });
        self.drain(leader);
    }

    /// The operator's answer from replica `from`.
    fn on_admin_reply(&mut self, from: NodeId, reply: ClientReply) {
        let Some(asked) = self.asked.as_ref().filter(|a| a.id == reply.id) else { return };
        let change = asked.change.clone();
        match &reply.outcome {
            Outcome::Members(view) => {
                self.changes_done += 1;
                let epoch = view.epoch;
                self.log(|| format!("OPERATOR: {from} made {change:?}: epoch {epoch}"));
                if let MemberChange::Add { id, .. } | MemberChange::Promote { id } = change {
                    if !view.members.iter().any(|m| m.id == id) {
                        let detail = format!("{from} answered {change:?} with a configuration without {id}");
                        self.checker.unexpected(self.now, detail);
                    }
                }
                if let MemberChange::Promote { id } = change {
                    if !view.members.iter().any(|m| m.id == id && m.role == MemberRole::Voter) {
                        let detail = format!("{from} answered {change:?} with {id} not a voter");
                        self.checker.unexpected(self.now, detail);
                    }
                }
            }
            other => {
                let other = format!("{other:?}");
                self.log(|| format!("OPERATOR: {from} answered {change:?} with {other}"));
            }
        }
        self.asked = None;
    }

    /// Per replica: its incarnation if it is up (what a client's connection is to).
    fn replicas_up(&self) -> Vec<Option<u64>> {
        (0..self.nodes.len()).map(|i| self.nodes[i].is_some().then_some(self.incarnation[i])).collect()
    }

    fn convergence(&self) -> Convergence {
        Convergence {
            leader: self
                .nodes
                .iter()
                .flatten()
                .find(|n| n.core.paxos().is_leader())
                .map(|n| n.core.paxos().id()),
            clients_done: self.clients.iter().all(SimClient::done),
            replicas: self
                .nodes
                .iter()
                .flatten()
                .filter(|n| self.newest().contains(n.core.paxos().id()))
                .map(|n| (n.core.paxos().id(), n.applier.next_slot(), n.applier.digest()))
                .collect(),
            log_len: self.checker.log_len(),
        }
    }

    /// Adds a replica incarnation's counters to the run's, as it stops.
    fn count(&mut self, node: &Replica) {
        let (elections, installs, busy) = counters(node);
        self.elections += elections;
        self.installs += installs;
        self.busy += busy;
    }

    fn report(mut self) -> Report {
        let running: Vec<_> = self.nodes.iter().flatten().map(counters).collect();
        for (elections, installs, busy) in running {
            self.elections += elections;
            self.installs += installs;
            self.busy += busy;
        }
        Report {
            seed: self.cfg.seed,
            violations: std::mem::take(&mut self.checker.violations),
            ticks: self.now,
            slots: self.checker.log_len().0,
            ops: self.clients.iter().map(|c| c.completed).sum(),
            crashes: self.crashes,
            fsync_failures: self.disks.iter().map(Disk::sync_failures).sum(),
            cuts: self.cuts,
            elections: self.elections,
            messages: (self.net.sent, self.net.dropped),
            snapshots: self.snapshots,
            installs: self.installs,
            busy: self.busy,
            wipes: self.wipes,
            changes: (self.next_ask, self.changes_done),
            reads: self.checker.reads_done() as u64,
            epoch: self.newest().epoch,
            trace: self.trace,
        }
    }
}

/// A replica incarnation's elections, snapshot installs and `Busy` answers, for the report.
fn counters(node: &Replica) -> (u64, u64, u64) {
    let stats = node.core.stats();
    (node.core.paxos().stats().elections, stats.snapshots_installed, stats.busy)
}
