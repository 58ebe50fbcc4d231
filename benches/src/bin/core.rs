//! Benchmark of the pure heart: three Paxos cores with their appliers and
//! key-value stores in one process, messages passed in memory, persists
//! completing at once, driven by closed-loop clients.
//!
//! Every command goes the whole way: encoded into a batch at the leader,
//! ordered by Paxos, decoded and applied through the session table on all
//! three replicas, answered to its client, which then sends the next one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use synod_bench::human;
use synod_kv::{KvCommand, KvStore};
use synod_paxos::rng::Rng;
use synod_paxos::{Action, Config, Paxos};
use synod_state_machine::{Applier, Origin, SessionConfig};
use synod_wire::{Batch, ClientId, Command, Message, NodeId, Outcome, Seq, Wire};

/// Slots the leader keeps in flight; whatever arrives meanwhile waits and
/// travels in the next batch.
const IN_FLIGHT: usize = 2;

struct Replica {
    core: Paxos,
    applier: Applier<KvStore>,
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
    started: Instant,
}

impl Bench {
    fn new(clients: usize) -> Bench {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let replicas = ids
            .iter()
            .map(|&id| Replica {
                core: Paxos::new(Config::new(id, ids.clone()).expect("valid"), 1),
                applier: Applier::new(KvStore::default(), SessionConfig::default()),
            })
            .collect();
        Bench {
            replicas,
            net: VecDeque::new(),
            queue: Vec::new(),
            ready: (0..clients).collect(),
            sessions: vec![None; clients],
            seqs: vec![0; clients],
            done: 0,
            rng: Rng::new(7),
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
            for i in 0..self.replicas.len() {
                while let Some(action) = self.replicas[i].core.poll_action() {
                    progressed = true;
                    let me = self.replicas[i].core.id();
                    match action {
                        Action::Send { to, msg } => self.net.push_back((me, to, msg)),
                        Action::Persist { token, .. } => self.replicas[i].core.handle_persisted(token),
                        Action::Commit { slot, value } => {
                            let replies = self.replicas[i].applier.apply(slot, &value).expect("in order");
                            if Some(i) == leader {
                                for reply in replies {
                                    self.answer(reply.origin, reply.outcome);
                                }
                            }
                        }
                        Action::LeaderChanged { .. } => {}
                    }
                }
            }
            while let Some((from, to, msg)) = self.net.pop_front() {
                progressed = true;
                self.replicas[to.0 as usize - 1].core.handle_message(from, msg);
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
                    let key = format!("key{:012}", self.rng.range(0, 99_999)).into_bytes();
                    let put = KvCommand::Put { key, value: vec![b'v'; 100] };
                    Command::Op {
                        client,
                        seq: Seq(seq),
                        ack: Seq(seq - 1),
                        payload: put.encode().expect("small"),
                    }
                }
            };
            self.queue.push(command);
        }
    }

    fn propose(&mut self, leader: usize) {
        let core = &mut self.replicas[leader].core;
        if !self.queue.is_empty() && core.can_propose() && core.in_flight() < IN_FLIGHT {
            let timestamp_ms = self.started.elapsed().as_millis() as u64;
            let batch = Batch { timestamp_ms, commands: std::mem::take(&mut self.queue) };
            let bytes = batch.encode().expect("batch fits a frame");
            core.propose(bytes).expect("leader with room");
        }
    }

    fn run(mut self, duration: Duration) -> f64 {
        // Elect a leader with logical ticks.
        let mut ticks = 0;
        while self.leader().is_none() {
            for r in &mut self.replicas {
                r.core.handle_tick();
            }
            self.pump();
            ticks += 1;
            assert!(ticks < 10_000, "no leader elected");
        }
        let leader = self.leader().expect("elected");
        let warmup = duration / 5;
        let mut last_tick = Instant::now();
        let mut measure_from: Option<(Instant, u64)> = None;
        loop {
            self.issue();
            self.propose(leader);
            self.pump();
            if last_tick.elapsed() >= Duration::from_millis(10) {
                last_tick = Instant::now();
                for r in &mut self.replicas {
                    r.core.handle_tick();
                }
                self.pump();
            }
            let elapsed = self.started.elapsed();
            match measure_from {
                None if elapsed >= warmup => measure_from = Some((Instant::now(), self.done)),
                Some((t, d)) if t.elapsed() >= duration => {
                    return (self.done - d) as f64 / t.elapsed().as_secs_f64();
                }
                _ => {}
            }
        }
    }
}

fn main() {
    let secs: f64 = std::env::var("SYNOD_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let duration = Duration::from_secs_f64(secs);
    println!("three synod-paxos cores + appliers + key-value stores in one process; persists instant; {secs} s per run");
    println!("{:>8} {:>14}", "clients", "commands/s");
    let mut last = 0.0;
    for clients in [1usize, 64, 256] {
        let rate = Bench::new(clients).run(duration);
        println!("{clients:>8} {:>14}", human(rate));
        last = rate;
    }
    println!("core: {:.0} commands/s at 256 clients", last);
}
