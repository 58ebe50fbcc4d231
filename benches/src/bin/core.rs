//! Benchmark of the pure heart: three Paxos cores with their appliers and
//! key-value stores in one process, messages passed in memory, persists
//! completing at once, driven by closed-loop clients.
//!
//! Every command goes the whole way: encoded into a batch at the leader,
//! ordered by Paxos, decoded and applied through the session table on all
//! three replicas, answered to its client, which then sends the next one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use synod_bench::human;

use synod_kv::{KvCommand, KvStore};
use synod_paxos::rng::Rng;
use synod_paxos::{Action, Config, Paxos};
use synod_state_machine::{Applier, Origin, Reply, SessionConfig};
use synod_wire::{Batch, ClientId, Command, Message, NodeId, Outcome, Seq, Wire};

/// Slots the leader keeps in flight; whatever arrives meanwhile waits and
/// travels in the next batch.
const IN_FLIGHT: usize = 2;

struct Replica {
    core: Paxos,
    applier: Applier<KvStore>,
}

impl Replica {
    fn new(id: NodeId, members: &[NodeId]) -> Replica {
        Replica {
            core: Paxos::new(Config::new(id, members.to_vec()).expect("valid"), 1),
            applier: Applier::new(KvStore::default(), SessionConfig::default()),
        }
    }
}

struct Bench {
    replicas: Vec<Replica>,
    net: VecDeque<(NodeId, NodeId, Message)>,
    /// Commands waiting at the leader for the next batch.
    queue: Vec<Command>,
    /// Clients whose answer arrived and who may send again.
    ready: Vec<usize>,
    sessions: Vec<Option<ClientId>>,
    seqs: Vec<u64>,
    done: u64,
    rng: Rng,
    /// The put every client sends, its key rewritten each time.
    put: KvCommand,
    started: Instant,
    /// A replica moved to a thread of its own, and the channels to and from it.
    remote: Option<Remote>,
}

/// The far end of [`Bench::run_paired`].
struct Remote {
    index: usize,
    to: Sender<Envelope>,
    from: Receiver<Envelope>,
}

/// A message in flight: from, to, what.
type Envelope = (NodeId, NodeId, Message);

impl Bench {
    fn new(clients: usize) -> Bench {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let replicas = ids.iter().map(|&id| Replica::new(id, &ids)).collect();
        Bench {
            replicas,
            net: VecDeque::new(),
            queue: Vec::new(),
            ready: (0..clients).collect(),
            sessions: vec![None; clients],
            seqs: vec![0; clients],
            done: 0,
            rng: Rng::new(7),
            put: KvCommand::Put { key: key_bytes(0), value: vec![b'v'; 100] },
            remote: None,
            started: Instant::now(),
        }
    }

    fn leader(&self) -> Option<usize> {
        self.replicas.iter().position(|r| r.core.is_leader())
    }

    fn pump(&mut self) {
        let leader = self.leader();
        loop {
            let mut progressed = false;
            let remote = self.remote.as_ref().map(|r| r.index);
            for i in (0..self.replicas.len()).filter(|&i| Some(i) != remote) {
                while let Some(action) = self.replicas[i].core.poll_action() {
                    progressed = true;
                    let me = self.replicas[i].core.id();
                    match action {
                        Action::Send { to, msg } => self.net.push_back((me, to, msg)),
                        Action::Persist { token, .. } => self.replicas[i].core.handle_persisted(token),
                        Action::Commit { slot, value } => {
                            let applier = &mut self.replicas[i].applier;
                            if Some(i) == leader {
                                for reply in applier.apply(slot, &value).expect("in order") {
                                    self.answer(reply.origin, reply.outcome);
                                }
                            } else {
                                applier.apply_unanswered(slot, &value).expect("in order");
                            }
                        }
                        Action::LeaderChanged { .. }
                        | Action::SnapshotWanted { .. }
                        | Action::Reconfigured { .. }
                        | Action::Retire
                        | Action::ReadReady { .. }
                        | Action::ReadFailed { .. } => {}
                    }
                }
            }
            if let Some(r) = &self.remote {
                self.net.extend(r.from.try_iter());
            }
            while let Some((from, to, msg)) = self.net.pop_front() {
                progressed = true;
                match &self.remote {
                    // A closed channel means the run is over.
                    Some(r) if r.index == to.0 as usize - 1 => drop(r.to.send((from, to, msg))),
                    _ => self.replicas[to.0 as usize - 1].core.handle_message(from, msg),
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn answer(&mut self, origin: Origin, outcome: Outcome) {
        match (origin, outcome) {
            (Origin::Register { nonce }, Outcome::Registered { client }) => {
                self.sessions[nonce as usize] = Some(client);
                self.ready.push(nonce as usize);
            }
            (Origin::Request { seq, .. }, Outcome::Applied { .. }) => {
                // The client index rides in the top bits of the sequence number.
                self.ready.push((seq.0 >> 40) as usize);
                self.done += 1;
            }
            (o, other) => panic!("unexpected answer {other:?} for {o:?}"),
        }
    }

    fn issue(&mut self) {
        for c in std::mem::take(&mut self.ready) {
            let command = match self.sessions[c] {
                None => Command::Register { nonce: c as u64 },
                Some(client) => {
                    self.seqs[c] += 1;
                    let seq = ((c as u64) << 40) | self.seqs[c];
                    // One put reused, its key rewritten: a client's own costs are not the cluster's.
                    let KvCommand::Put { key, .. } = &mut self.put else { unreachable!("a put") };
                    spell_key(key, self.rng.range(0, 99_999));
                    Command::Op {
                        client,
                        seq: Seq(seq),
                        ack: Seq(seq - 1),
                        payload: self.put.encode_with_capacity(192).expect("small"),
                    }
                }
            };
            self.queue.push(command);
        }
    }

    fn propose(&mut self, leader: usize) {
        let Bench { replicas, queue, started, .. } = self;
        propose(&mut replicas[leader].core, queue, *started);
    }

    fn propose_on(&mut self, core: &mut Paxos) {
        propose(core, &mut self.queue, self.started);
    }

    /// Elects a leader with logical ticks, messages passed in this thread.
    fn elect(&mut self) {
        let mut ticks = 0;
        while self.leader().is_none() {
            for r in &mut self.replicas {
                r.core.handle_tick();
            }
            self.pump();
            ticks += 1;
            assert!(ticks < 10_000, "no leader elected");
        }
    }

    /// Runs all three replicas in this thread. Returns commands/s.
    fn run(mut self, duration: Duration, commands: Option<u64>) -> f64 {
        self.elect();
        self.run_elected(duration, commands)
    }

    /// Runs the leader and one follower in this thread, messages between
    /// them passed in memory, and the other follower on a thread of its own:
    /// three replicas on two cores with no third thread to time-share, and
    /// the leader's quorum at hand. Returns commands/s.
    fn run_paired(mut self, duration: Duration, commands: Option<u64>) -> f64 {
        self.elect();
        let leader = self.leader().expect("elected");
        let index = (0..self.replicas.len()).rev().find(|&i| i != leader).expect("a follower");
        // The placeholder left behind is never polled, ticked or sent to.
        let members = self.replicas[leader].core.config().members().to_vec();
        let placeholder = Replica::new(self.replicas[index].core.id(), &members);
        let far = std::mem::replace(&mut self.replicas[index], placeholder);
        let (to, inbox) = crossbeam_channel::unbounded();
        let (back, from) = crossbeam_channel::unbounded();
        let node = Node { replica: far, inbox, peers: vec![back; self.replicas.len()] };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn_follower(node, stop.clone());
        self.remote = Some(Remote { index, to, from });
        let rate = self.run_elected(duration, commands);
        stop.store(true, Ordering::Relaxed);
        thread.join().expect("follower thread");
        rate
    }

    /// The closed loop of [`Bench::run`] on an elected cluster.
    fn run_elected(&mut self, duration: Duration, commands: Option<u64>) -> f64 {
        let leader = self.leader().expect("elected");
        let mut last_tick = Instant::now();
        let mut measure_from: Option<(Instant, u64)> = None;
        loop {
            self.issue();
            self.propose(leader);
            self.pump();
            if last_tick.elapsed() >= Duration::from_millis(10) {
                last_tick = Instant::now();
                let remote = self.remote.as_ref().map(|r| r.index);
                for (i, r) in self.replicas.iter_mut().enumerate() {
                    if Some(i) != remote {
                        r.core.handle_tick();
                    }
                }
                self.pump();
            }
            if let Some(rate) = self.measured(&mut measure_from, duration, commands) {
                return rate;
            }
        }
    }

    /// The run's rate once it is over, else `None`: after `commands` if
    /// given, else over `duration` after a fifth of it as warm-up.
    fn measured(
        &self,
        from: &mut Option<(Instant, u64)>,
        duration: Duration,
        commands: Option<u64>,
    ) -> Option<f64> {
        if commands.is_some_and(|n| self.done >= n) {
            return Some(self.done as f64 / self.started.elapsed().as_secs_f64());
        }
        match *from {
            None if self.started.elapsed() >= duration / 5 => *from = Some((Instant::now(), self.done)),
            Some((t, d)) if t.elapsed() >= duration => {
                return Some((self.done - d) as f64 / t.elapsed().as_secs_f64())
            }
            _ => {}
        }
        None
    }

    /// Runs the elected cluster with one thread per replica, messages on
    /// channels; the leader's thread also plays the clients. Returns commands/s.
    fn run_threaded(mut self, duration: Duration, commands: Option<u64>) -> f64 {
        self.elect();
        let leader = self.leader().expect("elected");
        let n = self.replicas.len();
        let (senders, inboxes): (Vec<_>, Vec<_>) = (0..n).map(|_| crossbeam_channel::unbounded()).unzip();
        let stop = Arc::new(AtomicBool::new(false));
        let mut replicas: Vec<Option<Replica>> = self.replicas.drain(..).map(Some).collect();
        let mut followers = Vec::new();
        for (i, inbox) in inboxes.iter().enumerate() {
            if i == leader {
                continue;
            }
            let node = Node {
                replica: replicas[i].take().expect("each replica once"),
                inbox: inbox.clone(),
                peers: senders.clone(),
            };
            followers.push(spawn_follower(node, stop.clone()));
        }
        let mut node = Node {
            replica: replicas[leader].take().expect("the leader"),
            inbox: inboxes[leader].clone(),
            peers: senders,
        };
        drop(inboxes);
        let mut last_tick = Instant::now();
        let mut measure_from: Option<(Instant, u64)> = None;
        let rate = loop {
            self.issue();
            self.propose_on(&mut node.replica.core);
            let mut answers = Vec::new();
            node.drain(Some(&mut |replies| answers.extend(replies)));
            for reply in answers {
                self.answer(reply.origin, reply.outcome);
            }
            if self.ready.is_empty() {
                // Nothing to send until an answer comes: wait for the followers.
                if let Ok((from, _, msg)) = patient_recv(&node.inbox, Duration::from_millis(1)) {
                    node.replica.core.handle_message(from, msg);
                }
            }
            while let Ok((from, _, msg)) = node.inbox.try_recv() {
                node.replica.core.handle_message(from, msg);
            }
            if last_tick.elapsed() >= Duration::from_millis(10) {
                last_tick = Instant::now();
                node.replica.core.handle_tick();
            }
            if let Some(rate) = self.measured(&mut measure_from, duration, commands) {
                break rate;
            }
        };
        assert!(node.replica.core.is_leader(), "the leader lost its leadership during the run");
        stop.store(true, Ordering::Relaxed);
        for f in followers {
            f.join().expect("follower thread");
        }
        rate
    }
}

/// `key` and `n` in twelve decimal digits, as the load generator spells keys
/// (without `format!`, which cost a tenth of the whole run in a profile).
fn key_bytes(n: u64) -> Vec<u8> {
    let mut key = b"key000000000000".to_vec();
    spell_key(&mut key, n);
    key
}

/// Rewrites the digits of a key made by [`key_bytes`] to spell `n`.
fn spell_key(key: &mut [u8], mut n: u64) {
    for d in key[3..].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Receives, yielding the CPU a few times before sleeping: with three busy
/// threads on two cores the next message is usually a few microseconds away,
/// and a sleep costs two context switches.
fn patient_recv<T>(inbox: &Receiver<T>, timeout: Duration) -> Result<T, RecvTimeoutError> {
    for _ in 0..SPINS {
        if let Ok(m) = inbox.try_recv() {
            return Ok(m);
        }
        std::thread::yield_now();
    }
    inbox.recv_timeout(timeout)
}

const SPINS: usize = 100;

/// Submits what waits at the leader as one batch, if the window has room.
fn propose(core: &mut Paxos, queue: &mut Vec<Command>, started: Instant) {
    if !queue.is_empty() && core.can_propose() && core.in_flight() < IN_FLIGHT {
        let timestamp_ms = started.elapsed().as_millis() as u64;
        let batch = Batch { timestamp_ms, commands: std::mem::take(queue) };
        // Room for every payload and its envelope, so the buffer never regrows.
        let size: usize = batch
            .commands
            .iter()
            .map(|c| 48 + if let Command::Op { payload, .. } = c { payload.len() } else { 0 })
            .sum();
        let bytes = batch.encode_with_capacity(size + 64).expect("batch fits a frame");
        core.propose(bytes).expect("leader with room");
    }
}

/// A replica on a thread of its own.
struct Node {
    replica: Replica,
    inbox: Receiver<Envelope>,
    peers: Vec<Sender<Envelope>>,
}

/// Starts a follower's thread: it handles what arrives, ticks, and carries
/// out its actions until `stop`.
fn spawn_follower(mut node: Node, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let name = format!("follower-{}", node.replica.core.id().0);
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let mut last_tick = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match patient_recv(&node.inbox, Duration::from_millis(10)) {
                Ok((from, _, msg)) => node.replica.core.handle_message(from, msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok((from, _, msg)) = node.inbox.try_recv() {
                node.replica.core.handle_message(from, msg);
            }
            if last_tick.elapsed() >= Duration::from_millis(10) {
                last_tick = Instant::now();
                node.replica.core.handle_tick();
            }
            node.drain(None);
        }
    });
    thread.expect("a follower thread")
}

impl Node {
    /// Carries out every pending action: sends go to the peers' channels,
    /// persists complete at once, and commits are applied, their replies
    /// handed to `replies`, once every message is out. A replica's runtime
    /// applies on a thread of its own, so consensus never waits for the
    /// state machine; applying inline before sending would make the leader
    /// wait for a follower's apply of the previous slot before it hears
    /// the follower accepted the next one. A follower (no `replies`) builds no replies.
    fn drain(&mut self, mut replies: Option<&mut dyn FnMut(Vec<Reply>)>) {
        let me = self.replica.core.id();
        let mut commits = Vec::new();
        while let Some(action) = self.replica.core.poll_action() {
            match action {
                Action::Send { to, msg } => {
                    // A closed channel means the run is over.
                    let _ = self.peers[to.0 as usize - 1].send((me, to, msg));
                }
                Action::Persist { token, .. } => self.replica.core.handle_persisted(token),
                Action::Commit { slot, value } => commits.push((slot, value)),
                Action::LeaderChanged { .. }
                | Action::SnapshotWanted { .. }
                | Action::Reconfigured { .. }
                | Action::Retire
                | Action::ReadReady { .. }
                | Action::ReadFailed { .. } => {}
            }
        }
        for (slot, value) in commits {
            let applier = &mut self.replica.applier;
            match replies.as_mut() {
                Some(replies) => replies(applier.apply(slot, &value).expect("in order")),
                None => applier.apply_unanswered(slot, &value).expect("in order"),
            }
        }
    }
}

fn main() {
    let secs: f64 = std::env::var("SYNOD_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let duration = Duration::from_secs_f64(secs);
    // SYNOD_BENCH_COMMANDS=N runs N commands per client count instead of a
    // duration: a fixed amount of work, for an instruction-counting profiler.
    let commands: Option<u64> = std::env::var("SYNOD_BENCH_COMMANDS").ok().and_then(|s| s.parse().ok());
    println!("three synod-paxos cores + appliers + key-value stores in one process; persists instant; {secs} s per run");
    println!("commands/s with all three replicas on one thread, with a thread per replica, and with the");
    println!("leader and a follower on one thread and the other follower on a second");
    println!("{:>8} {:>14} {:>14} {:>14}", "clients", "one thread", "three threads", "two threads");
    let mut last = 0.0;
    // SYNOD_BENCH_CLIENTS=256 runs one client count (for a profiler).
    let counts: Vec<usize> = match std::env::var("SYNOD_BENCH_CLIENTS") {
        Ok(list) => list.split(',').filter_map(|c| c.trim().parse().ok()).collect(),
        Err(_) => vec![1, 64, 256],
    };
    // SYNOD_BENCH_VARIANT=single, threaded or paired runs only that column (for a profiler).
    let variant = std::env::var("SYNOD_BENCH_VARIANT").unwrap_or_default();
    let wanted = |name: &str| variant.is_empty() || variant == name;
    for clients in counts {
        let single = if wanted("single") { Bench::new(clients).run(duration, commands) } else { 0.0 };
        let threaded =
            if wanted("threaded") { Bench::new(clients).run_threaded(duration, commands) } else { 0.0 };
        let paired = if wanted("paired") { Bench::new(clients).run_paired(duration, commands) } else { 0.0 };
        println!("{clients:>8} {:>14} {:>14} {:>14}", human(single), human(threaded), human(paired));
        // The best way this machine found to run the three replicas.
        last = single.max(threaded).max(paired);
    }
    println!("core: {:.0} commands/s at 256 clients", last);
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_spelt_like_the_load_generator_spells_them() {
        assert_eq!(super::key_bytes(4711), format!("key{:012}", 4711).into_bytes());
        assert_eq!(super::key_bytes(99_999), b"key000000099999".to_vec());
    }
}
