//! Snapshots around the core: when to take one, and sending and receiving them between replicas.
//!
//! **Taking.** Once the values delivered since the last snapshot pass
//! [`SnapshotPolicy::log_bytes`], the core asks the driver for a snapshot at
//! its delivered point ([`Effect::TakeSnapshot`], after the `Apply` effects
//! of every slot below it). When the driver reports it written
//! ([`ReplicaCore::handle_snapshot_taken`]), the Paxos core logs it and
//! compacts (keeping [`SnapshotPolicy::retain_slots`] behind it), and the
//! log is truncated below the same point ([`Effect::TruncateLog`]).
//!
//! **Sending** is stateless: a peer that asks for slots this replica
//! compacted gets the newest snapshot's first chunk (at most once per
//! [`OFFER_TICKS`] per peer), and every later chunk is pulled by the
//! receiver (`Message::SnapshotPull { upto, offset }`), one at a time, so
//! the receiver sets the pace and a transfer resumes from the last chunk it
//! stored, whatever was lost or reordered.
//!
//! **Receiving**: chunks are stored in order ([`Effect::StoreSnapshotChunk`]);
//! out-of-order, duplicate and stale ones are dropped; a pull that brings
//! nothing for [`PULL_TICKS`] is sent again, and after [`PULL_RETRIES`] the
//! transfer is abandoned (the next catch-up starts one afresh, from any
//! peer). Once the driver has the whole file and its CRC checks out
//! ([`ReplicaCore::handle_snapshot_received`]), the state machine is
//! restored from it ([`Effect::InstallSnapshot`]) and the Paxos core jumps
//! to its slot; a file that does not check out is dropped and pulled again
//! from its first byte.

use synod_wire::{Membership, Message, NodeId, Outcome, Slot, Value};

use crate::effect::Effect;
use crate::replica::{Now, ReplicaCore};
use std::fmt::Debug;
use std::hash::Hash;

/// Ticks between two unasked offers of a snapshot to the same peer.
pub const OFFER_TICKS: u64 = 50;
/// Ticks without a chunk before a pull is sent again.
pub const PULL_TICKS: u64 = 20;
/// Pulls sent again without progress before a transfer is abandoned.
pub const PULL_RETRIES: u32 = 5;

/// When a replica snapshots and how much log it keeps behind a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotPolicy {
    /// Snapshot once the values delivered since the last snapshot pass this many bytes.
    pub log_bytes: u64,
    /// Chosen slots kept behind a snapshot, for peers that lag a little.
    pub retain_slots: u64,
}

impl SnapshotPolicy {
    /// Never snapshot (the default of [`ReplicaCore::new`]).
    pub const NEVER: SnapshotPolicy = SnapshotPolicy { log_bytes: u64::MAX, retain_slots: 0 };
}

/// A snapshot being received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Receiving {
    pub(crate) from: NodeId,
    pub(crate) upto: Slot,
    pub(crate) total: u64,
    /// Bytes stored so far (the next offset wanted).
    pub(crate) next: u64,
    /// All bytes stored; waiting for the driver's check.
    pub(crate) complete: bool,
    /// The tick of the last chunk stored (or pull sent).
    pub(crate) progress_at: u64,
    pub(crate) retries: u32,
}

/// The core's snapshot bookkeeping.
#[derive(Debug, Clone)]
pub(crate) struct Snapshots {
    pub(crate) policy: SnapshotPolicy,
    /// Value bytes delivered since the last snapshot was asked for.
    pub(crate) since: u64,
    /// The snapshot asked for and not yet reported.
    pub(crate) taking: Option<Slot>,
    /// When each peer was last offered a snapshot unasked.
    pub(crate) offered: std::collections::BTreeMap<NodeId, u64>,
    pub(crate) receiving: Option<Receiving>,
}

impl Snapshots {
    pub(crate) fn new(policy: SnapshotPolicy) -> Snapshots {
        Snapshots { policy, since: 0, taking: None, offered: Default::default(), receiving: None }
    }
}

/// Bytes a value adds to the log, for [`SnapshotPolicy::log_bytes`].
pub(crate) fn value_bytes(value: &Value) -> u64 {
    match value {
        Value::Noop => 16,
        Value::Batch(b) => b.len() as u64 + 16,
        Value::Reconfig(m) => 64 * m.members.len() as u64 + 16,
    }
}

impl<C: Copy + Eq + Ord + Hash + Debug> ReplicaCore<C> {
    /// Sets when this replica snapshots (by default it never does).
    ///
    /// Replicas deliver the same values, so with the same policy they would
    /// all snapshot at the same slots, competing for a machine they share
    /// and slowing a quorum at once. The first snapshot of the replica
    /// ranked `r` of `n` members comes after `(n - r) / n` of
    /// `log_bytes` instead of all of it, which staggers them evenly: each
    /// later one after `log_bytes` again.
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> ReplicaCore<C> {
        let members: Vec<_> = self.paxos.membership().ids().collect();
        let rank = members.iter().position(|&m| m == self.paxos.id()).unwrap_or(0) as u64;
        let n = members.len().max(1) as u64;
        self.snapshots.policy = policy;
        self.snapshots.since = if policy.log_bytes == u64::MAX { 0 } else { policy.log_bytes / n * rank };
        self
    }

    /// The snapshot at `upto` asked for with [`Effect::TakeSnapshot`] is
    /// written and durable: the Paxos core logs it and compacts, and the
    /// log is truncated behind it.
    pub fn handle_snapshot_taken(&mut self, now: Now, upto: Slot) {
        // Whatever slot the driver took it at, the snapshot asked for is done.
        self.snapshots.taking = None;
        self.paxos.snapshot_taken(upto, self.snapshots.policy.retain_slots);
        self.finish(now);
        let below = self.truncate_below();
        if below > Slot(0) {
            self.effects.push_back(Effect::TruncateLog { below });
        }
    }

    /// The snapshot at `upto` could not be written; the next one is asked
    /// for after another [`SnapshotPolicy::log_bytes`].
    pub fn handle_snapshot_failed(&mut self, now: Now, _upto: Slot) {
        self.snapshots.taking = None;
        self.finish(now);
    }

    /// The driver stored every chunk of snapshot `upto` and checked its
    /// CRC: `ok` says whether it checked out. A good snapshot is installed
    /// (if it is still ahead of this replica); a bad one is pulled again
    /// from its first byte.
    ///
    /// `membership` is the configuration the snapshot holds (the driver
    /// reads it from the snapshot's head), or `None` if it holds none
    /// (configuration 0).
    pub fn handle_snapshot_received(
        &mut self,
        now: Now,
        upto: Slot,
        ok: bool,
        membership: Option<Membership>,
    ) {
        let Some(r) = self.snapshots.receiving.clone().filter(|r| r.upto == upto && r.complete) else {
            self.finish(now);
            return;
        };
        if !ok {
            self.stats.snapshots_refused += 1;
            self.snapshots.receiving =
                Some(Receiving { next: 0, complete: false, progress_at: self.paxos.now(), retries: 0, ..r });
            self.effects
                .push_back(Effect::Send { to: r.from, msg: Message::SnapshotPull { upto, offset: 0 } });
            self.finish(now);
            return;
        }
        self.snapshots.receiving = None;
        if upto > self.paxos.first_unchosen() {
            // Restore first: the Paxos core's next commits are slots from `upto` on.
            self.effects.push_back(Effect::InstallSnapshot { upto });
            self.paxos.install_snapshot(upto, membership);
            self.release_reads(upto);
            self.stats.snapshots_installed += 1;
            self.snapshots.since = 0;
            self.forget_below(upto);
        }
        self.finish(now);
    }

    /// The slot below which the log may go: the Paxos core's compacted base.
    fn truncate_below(&self) -> Slot {
        self.paxos.base()
    }

    /// Slots below `upto` came with an installed snapshot: their waiters
    /// cannot learn their answers here, so they are redirected and retry
    /// (the session table answers a retry of an applied command from its cache).
    fn forget_below(&mut self, upto: Slot) {
        let rest = self.proposed.split_off(&upto);
        let below = std::mem::replace(&mut self.proposed, rest);
        let leader = self.paxos.leader();
        for (_, waiters) in below {
            for w in waiters {
                self.proposed_origin.remove(&w.origin);
                self.reply(w.conn, w.id, Outcome::Redirect { leader });
            }
        }
        self.proposed_at = self.proposed_at.split_off(&upto);
    }

    /// A snapshot message from a peer (the Paxos core never sees these).
    pub(crate) fn on_snapshot_message(&mut self, from: NodeId, msg: Message) {
        match msg {
            Message::SnapshotPull { upto, offset } => {
                self.effects.push_back(Effect::SendSnapshot { to: from, upto: Some(upto), offset });
            }
            Message::SnapshotChunk { upto, total, offset, bytes } => {
                self.on_chunk(from, upto, total, offset, bytes);
            }
            _ => {}
        }
    }

    fn on_chunk(&mut self, from: NodeId, upto: Slot, total: u64, offset: u64, bytes: Vec<u8>) {
        if upto <= self.paxos.first_unchosen() {
            return;
        }
        let len = bytes.len() as u64;
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > total) {
            // A malformed chunk: nothing to store.
            return;
        }
        let ticks = self.paxos.now();
        match &mut self.snapshots.receiving {
            Some(r) if r.upto == upto => {
                if r.complete || offset != r.next || total != r.total {
                    return;
                }
            }
            Some(r) if r.upto > upto && !r.complete => return,
            Some(r) if r.complete => return,
            _ => {
                if offset != 0 {
                    return;
                }
                self.snapshots.receiving = Some(Receiving {
                    from,
                    upto,
                    total,
                    next: 0,
                    complete: false,
                    progress_at: ticks,
                    retries: 0,
                });
            }
        }
        let r = self.snapshots.receiving.as_mut().expect("set above");
        r.next += len;
        r.from = from;
        r.progress_at = ticks;
        r.retries = 0;
        let last = r.next == total;
        r.complete = last;
        let next = r.next;
        self.stats.snapshot_bytes_received += len;
        self.effects.push_back(Effect::StoreSnapshotChunk { upto, offset, bytes, last });
        if !last {
            self.effects
                .push_back(Effect::Send { to: from, msg: Message::SnapshotPull { upto, offset: next } });
        }
    }

    /// The Paxos core wants `to` sent the snapshot: offer its first chunk, at most once per [`OFFER_TICKS`].
    pub(crate) fn offer_snapshot(&mut self, to: NodeId) {
        let ticks = self.paxos.now();
        if self.snapshots.offered.get(&to).is_some_and(|&t| ticks < t + OFFER_TICKS) {
            return;
        }
        self.snapshots.offered.insert(to, ticks);
        self.stats.snapshots_offered += 1;
        self.effects.push_back(Effect::SendSnapshot { to, upto: None, offset: 0 });
    }

    /// Every tick: pulls again when a transfer stalled, abandons it after [`PULL_RETRIES`].
    pub(crate) fn snapshot_tick(&mut self) {
        let ticks = self.paxos.now();
        let Some(r) = &mut self.snapshots.receiving else { return };
        if r.complete || ticks < r.progress_at + PULL_TICKS {
            return;
        }
        if r.retries >= PULL_RETRIES {
            self.snapshots.receiving = None;
            return;
        }
        r.retries += 1;
        r.progress_at = ticks;
        let (to, upto, offset) = (r.from, r.upto, r.next);
        self.effects.push_back(Effect::Send { to, msg: Message::SnapshotPull { upto, offset } });
    }

    /// After an input: asks for a snapshot once enough was delivered since the last.
    pub(crate) fn maybe_snapshot(&mut self) {
        let s = &mut self.snapshots;
        if s.taking.is_some() || s.since < s.policy.log_bytes {
            return;
        }
        let upto = self.paxos.delivered();
        if upto <= self.paxos.snapshot_upto() {
            return;
        }
        s.since = 0;
        s.taking = Some(upto);
        self.stats.snapshots_asked += 1;
        #[cfg(feature = "planted-bugs")]
        if self.bugs.snapshot_before_apply {
            // The bug: the snapshot jumps ahead of the slots still waiting to be applied.
            let at =
                self.effects.iter().position(|e| matches!(e, Effect::Apply(_))).unwrap_or(self.effects.len());
            self.effects.insert(at, Effect::TakeSnapshot { upto });
            return;
        }
        self.effects.push_back(Effect::TakeSnapshot { upto });
    }
}
