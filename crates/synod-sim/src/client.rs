//! Simulated clients: the real [`ClientCore`] (registration, pipelining, epochs,
//! redirects, failover, `Busy` and reconnect backoff) behind a small harness
//! that issues a deterministic key-value workload, several calls at once.
//!
//! A connection in the simulator is instantaneous: it succeeds if the
//! replica is up (and, in the fault phase, unless the seed says the
//! handshake was lost), and it is lost when that replica crashes. Requests
//! and replies travel as packets of the simulated network.

use std::collections::BTreeMap;
use std::time::Duration;

use synod_client_core::{CallId, ClientCore, ClientEvent, CoreConfig};
use synod_paxos::rng::Rng;
use synod_wire::{
    ClientFrame, ClientId, ClientReply, ClientRequest, Command, KvCommand, NodeId, Outcome, ReadMode,
    ReadRequest, Seq, Wire,
};

use crate::machine::Audited;

/// The core's clock runs in microseconds; one simulator tick is 10 ms (the leaders' batch stamps agree).
pub(crate) const TICK_US: u64 = 10_000;
/// Per-attempt timeout: 40 ticks.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);
/// Calls a client keeps in flight at once, to exercise pipelining.
const IN_FLIGHT: usize = 4;
/// Percent of a client's operations that are reads outside the log.
const READ_PERCENT: u64 = 30;

/// What a client asks the world to do.
#[derive(Debug)]
pub(crate) enum Effect {
    Send(NodeId, ClientRequest),
    SendRead(NodeId, ReadRequest),
    /// A read outside the log begins: the world notes which writes it must see.
    ReadBegins(CallId),
    /// A read outside the log ended with `answer`.
    ReadDone {
        call: CallId,
        query: Vec<u8>,
        mode: ReadMode,
        answer: Vec<u8>,
    },
    Issued(Command),
    Answered(ClientId, Seq, Outcome),
    Unexpected(String),
}

/// What a client sees of the replicas when it connects: which are up
/// (with their incarnation) and how often a handshake fails.
#[derive(Debug)]
pub(crate) struct Reach<'a> {
    /// Per replica (index = id - 1): its incarnation if up.
    pub(crate) up: &'a [Option<u64>],
    /// Percent of handshakes lost.
    pub(crate) fail_percent: u64,
}

#[derive(Debug)]
pub(crate) struct SimClient {
    idx: usize,
    core: ClientCore,
    /// The open connection: epoch, replica, and the replica's incarnation.
    conn: Option<(u64, NodeId, u64)>,
    /// Request id -> seq, for every operation attempt sent (answers are checked by seq).
    seqs: BTreeMap<u64, Seq>,
    issued: u64,
    /// Reads outside the log in flight: their query and mode.
    reads: BTreeMap<CallId, (Vec<u8>, ReadMode)>,
    pub(crate) completed: u64,
    pub(crate) total: u64,
}

impl SimClient {
    pub(crate) fn new(idx: usize, total: u64, replicas: u32, rng: &mut Rng) -> SimClient {
        // Each client starts with a replica of its own drawing.
        let first = rng.range(1, u64::from(replicas)) as u32;
        let book = (0..replicas).map(|i| NodeId((first - 1 + i) % replicas + 1)).collect();
        let config = CoreConfig {
            request_timeout: REQUEST_TIMEOUT,
            register_deadline: Duration::MAX,
            max_in_flight: IN_FLIGHT,
            // A simulated client must finish its work: it never gives up.
            give_up_unreachable: false,
            ..CoreConfig::new(book)
        };
        SimClient {
            idx,
            core: ClientCore::new(config, 0, rng.next_u64()),
            conn: None,
            seqs: BTreeMap::new(),
            issued: 0,
            reads: BTreeMap::new(),
            completed: 0,
            total,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.completed >= self.total
    }

    /// Called every tick: notices a crashed replica, fires the core's timer, and issues calls.
    pub(crate) fn step(&mut self, tick: u64, reach: &Reach<'_>, rng: &mut Rng, out: &mut Vec<Effect>) {
        let now = tick * TICK_US;
        if let Some((epoch, node, inc)) = self.conn {
            if reach.up[node.0 as usize - 1] != Some(inc) {
                self.conn = None;
                self.core.handle_disconnected(now, epoch);
            }
        }
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        while self.issued < self.total && self.core.can_call() && self.core.outstanding() < IN_FLIGHT {
            self.issued += 1;
            if rng.chance(READ_PERCENT) {
                // A read outside the log: linearizable mostly, stale sometimes.
                let key = vec![b'k', rng.range(0, 3) as u8];
                let query = KvCommand::Get { key }.encode().expect("small commands encode");
                let mode = if rng.chance(20) { ReadMode::Stale } else { ReadMode::Linearizable };
                let call = self.core.handle_read(now, query.clone(), mode, u64::MAX);
                self.reads.insert(call, (query, mode));
                out.push(Effect::ReadBegins(call));
                continue;
            }
            let payload = self.next_command(rng);
            self.core.handle_call(now, payload, u64::MAX);
        }
        self.drive(now, reach, rng, out);
    }

    /// Handles an answer from `from`.
    pub(crate) fn on_reply(
        &mut self,
        tick: u64,
        from: NodeId,
        reply: ClientReply,
        reach: &Reach<'_>,
        rng: &mut Rng,
        out: &mut Vec<Effect>,
    ) {
        let now = tick * TICK_US;
        // Every Applied answer, late duplicates too, must agree with the first.
        if let (Some(client), Outcome::Applied { .. }) = (self.core.session(), &reply.outcome) {
            if let Some(&seq) = self.seqs.get(&reply.id) {
                out.push(Effect::Answered(client, seq, reply.outcome.clone()));
            }
        }
        // A reply from another replica than the connected one came over an old connection.
        let epoch = match self.conn {
            Some((epoch, node, _)) if node == from => epoch,
            _ => 0,
        };
        self.core.handle_reply(now, epoch, reply);
        self.drive(now, reach, rng, out);
    }

    /// Carries out the core's outputs until it has none.
    fn drive(&mut self, now: u64, reach: &Reach<'_>, rng: &mut Rng, out: &mut Vec<Effect>) {
        loop {
            let mut progress = false;
            if let Some(c) = self.core.poll_connect() {
                progress = true;
                match reach.up[c.node.0 as usize - 1] {
                    Some(inc) if !rng.chance(reach.fail_percent) => {
                        self.core.handle_connected(now, c.epoch, c.node);
                        self.conn = Some((c.epoch, c.node, inc));
                    }
                    _ => self.core.handle_connect_failed(now, c.epoch, c.node),
                }
            }
            while let Some(t) = self.core.poll_transmit() {
                progress = true;
                match t.frame {
                    ClientFrame::Request(request) => {
                        if let Command::Op { seq, .. } = &request.command {
                            self.seqs.insert(request.id, *seq);
                        }
                        out.push(Effect::Issued(request.command.clone()));
                        out.push(Effect::Send(t.node, request));
                    }
                    ClientFrame::Read(read) => out.push(Effect::SendRead(t.node, read)),
                    other => out.push(Effect::Unexpected(format!("client {} sent {other:?}", self.idx))),
                }
            }
            while let Some(event) = self.core.poll_event() {
                progress = true;
                match event {
                    ClientEvent::Registered(_) => {}
                    ClientEvent::Completed { call, result: Ok(answer) } => {
                        self.completed += 1;
                        if let Some((query, mode)) = self.reads.remove(&call) {
                            out.push(Effect::ReadDone { call, query, mode, answer });
                        }
                    }
                    other => {
                        // No correct run fails a call or a registration; count it so the run ends.
                        self.completed += 1;
                        out.push(Effect::Unexpected(format!("client {} got {other:?}", self.idx)));
                    }
                }
            }
            if self.conn.is_some_and(|(e, _, _)| self.core.connection().map(|(c, _)| c) != Some(e)) {
                self.conn = None;
            }
            if !progress {
                return;
            }
        }
    }

    /// The next operation of the workload: a key-value command on one of
    /// four keys, prefixed with a unique operation id (client, number).
    fn next_command(&mut self, rng: &mut Rng) -> Vec<u8> {
        let op_id = ((self.idx as u64 + 1) << 32) | (self.issued + 1);
        let key = vec![b'k', rng.range(0, 3) as u8];
        let kv = match rng.range(0, 3) {
            0 => KvCommand::Get { key },
            1 => KvCommand::Put { key, value: op_id.to_le_bytes().to_vec() },
            2 => KvCommand::Delete { key },
            _ => KvCommand::Cas {
                key,
                expected: rng.chance(50).then(|| (op_id - 1).to_le_bytes().to_vec()),
                new: Some(op_id.to_le_bytes().to_vec()),
            },
        };
        let kv = kv.encode().expect("small commands encode");
        Audited::command(op_id, &kv)
    }
}
