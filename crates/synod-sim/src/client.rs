//! Simulated clients: register a session, then issue key-value operations
//! one at a time, retrying the same (client, seq) on another replica after a
//! timeout and following redirects.

use synod_paxos::rng::Rng;
use synod_wire::{ClientId, ClientReply, ClientRequest, Command, KvCommand, NodeId, Outcome, Seq, Wire};

use crate::machine::Audited;

/// Ticks a client waits for an answer before trying another replica.
const RETRY_TICKS: u64 = 40;

/// What a client asks the world to do.
#[derive(Debug)]
pub(crate) enum Effect {
    Send(NodeId, ClientRequest),
    Issued(Command),
    Answered(ClientId, Seq, Outcome),
    Unexpected(String),
}

#[derive(Debug)]
struct Outstanding {
    request: ClientRequest,
    sent_at: u64,
}

#[derive(Debug)]
pub(crate) struct SimClient {
    idx: usize,
    nonce: u64,
    session: Option<ClientId>,
    target: NodeId,
    replicas: u32,
    next_seq: u64,
    outstanding: Option<Outstanding>,
    pub(crate) completed: u64,
    pub(crate) total: u64,
}

impl SimClient {
    pub(crate) fn new(idx: usize, total: u64, replicas: u32, rng: &mut Rng) -> SimClient {
        SimClient {
            idx,
            nonce: rng.next_u64(),
            session: None,
            target: NodeId(rng.range(1, u64::from(replicas)) as u32),
            replicas,
            next_seq: 1,
            outstanding: None,
            completed: 0,
            total,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.completed >= self.total
    }

    /// Called every tick: starts the next request, or retries a late one elsewhere.
    pub(crate) fn step(&mut self, now: u64, rng: &mut Rng, out: &mut Vec<Effect>) {
        if let Some(o) = &mut self.outstanding {
            if o.sent_at + RETRY_TICKS <= now {
                o.sent_at = now;
                self.target = NodeId(self.target.0 % self.replicas + 1);
                out.push(Effect::Send(self.target, o.request.clone()));
            }
            return;
        }
        if self.done() {
            return;
        }
        let command = match self.session {
            None => Command::Register { nonce: self.nonce },
            Some(client) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let op_id = ((self.idx as u64 + 1) << 32) | seq;
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
                Command::Op {
                    client,
                    seq: Seq(seq),
                    ack: Seq(seq - 1),
                    payload: Audited::command(op_id, &kv),
                }
            }
        };
        let id = match &command {
            Command::Op { seq, .. } => seq.0,
            Command::Register { .. } => 0,
        };
        let request = ClientRequest { id, command: command.clone() };
        out.push(Effect::Issued(command));
        out.push(Effect::Send(self.target, request.clone()));
        self.outstanding = Some(Outstanding { request, sent_at: now });
    }

    /// Handles an answer from `from`.
    pub(crate) fn on_reply(&mut self, now: u64, from: NodeId, reply: ClientReply, out: &mut Vec<Effect>) {
        let Some(o) = &self.outstanding else {
            // A late duplicate answer to a finished request: still check it agrees.
            self.record_answer(&reply, out);
            return;
        };
        if o.request.id != reply.id {
            self.record_answer(&reply, out);
            return;
        }
        match reply.outcome {
            Outcome::Registered { client } => {
                if let Command::Register { .. } = o.request.command {
                    self.session = Some(client);
                    self.outstanding = None;
                }
            }
            Outcome::Applied { .. } => {
                self.record_answer(&reply, out);
                self.outstanding = None;
                self.completed += 1;
            }
            // Only the replica asked last may redirect: a duplicated or late
            // redirect would otherwise multiply the requests in flight.
            Outcome::Redirect { .. } if from != self.target => {}
            Outcome::Redirect { leader } => {
                self.target = match leader {
                    Some(l) if l != from => l,
                    _ => NodeId(from.0 % self.replicas + 1),
                };
                let request = o.request.clone();
                self.outstanding = Some(Outstanding { request: request.clone(), sent_at: now });
                out.push(Effect::Send(self.target, request));
            }
            Outcome::Busy => {}
            other => out.push(Effect::Unexpected(format!(
                "client {} request {} got {other:?}",
                self.idx, o.request.id
            ))),
        }
    }

    fn record_answer(&self, reply: &ClientReply, out: &mut Vec<Effect>) {
        if let (Some(client), Outcome::Applied { .. }) = (self.session, &reply.outcome) {
            if reply.id > 0 {
                out.push(Effect::Answered(client, Seq(reply.id), reply.outcome.clone()));
            }
        }
    }
}
