//! The simulated network: seeded delays, drops, duplicates, reordering and cut links.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use synod_paxos::rng::Rng;
use synod_wire::{ClientReply, ClientRequest, Message, NodeId, ReadRequest};

/// An address: a replica or a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Addr {
    Node(NodeId),
    Client(usize),
}

#[derive(Debug, Clone)]
pub(crate) enum Payload {
    Peer(Message),
    Request(ClientRequest),
    Read(ReadRequest),
    Reply(ClientReply),
}

#[derive(Debug)]
pub(crate) struct Packet {
    pub(crate) from: Addr,
    pub(crate) to: Addr,
    pub(crate) payload: Payload,
}

#[derive(Debug)]
pub(crate) struct Net {
    /// (deliver at, sequence number) -> packet.
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Option<Packet>>,
    free: Vec<usize>,
    seq: u64,
    /// Directed replica links that drop everything.
    pub(crate) cut: BTreeSet<(NodeId, NodeId)>,
    pub(crate) drop_percent: u64,
    pub(crate) dup_percent: u64,
    pub(crate) max_delay: u64,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
}

impl Net {
    pub(crate) fn new(drop_percent: u64, dup_percent: u64, max_delay: u64) -> Net {
        Net {
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            cut: BTreeSet::new(),
            drop_percent,
            dup_percent,
            max_delay,
            sent: 0,
            dropped: 0,
        }
    }

    pub(crate) fn send(&mut self, rng: &mut Rng, now: u64, from: Addr, to: Addr, payload: Payload) {
        self.sent += 1;
        if let (Addr::Node(a), Addr::Node(b)) = (from, to) {
            if self.cut.contains(&(a, b)) {
                self.dropped += 1;
                return;
            }
        }
        if rng.chance(self.drop_percent) {
            self.dropped += 1;
            return;
        }
        let copies = if rng.chance(self.dup_percent) { 2 } else { 1 };
        for _ in 0..copies {
            let at = now + rng.range(1, self.max_delay);
            let packet = Packet { from, to, payload: payload.clone() };
            let slot = match self.free.pop() {
                Some(i) => {
                    self.slots[i] = Some(packet);
                    i
                }
                None => {
                    self.slots.push(Some(packet));
                    self.slots.len() - 1
                }
            };
            self.seq += 1;
            self.queue.push(Reverse((at, self.seq, slot)));
        }
    }

    /// The next packet due at or before `now`, if any. A link cut while the
    /// packet was in flight drops it too.
    pub(crate) fn next_due(&mut self, now: u64) -> Option<Packet> {
        loop {
            let Reverse((at, _, slot)) = *self.queue.peek()?;
            if at > now {
                return None;
            }
            self.queue.pop();
            let packet = self.slots[slot].take().expect("queued slot holds a packet");
            self.free.push(slot);
            if let (Addr::Node(a), Addr::Node(b)) = (packet.from, packet.to) {
                if self.cut.contains(&(a, b)) {
                    self.dropped += 1;
                    continue;
                }
            }
            return Some(packet);
        }
    }
}
