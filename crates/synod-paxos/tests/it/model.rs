//! An exhaustive stateright model check of the real `synod-paxos` core: three replicas, two
//! proposals, two elections, messages delivered in any order or lost, and a crash with restart
//! from the durable log. Agreement must hold in every reachable state.
//!
//! # The model
//!
//! Three unmodified [`Paxos`] cores, n1, n2 and n3, are driven only through their public API,
//! as a runtime drives them: after every call the model drains [`Paxos::poll_action`]. A `Send`
//! joins the network, a `Persist` waits for a `Persist` step (or completes at once, see below),
//! a `Commit` is recorded. Nothing of the protocol is re-implemented here. From the initial
//! state the checker takes, in every order, these steps:
//!
//! * **Deliver** any message in flight to its replica's `handle_message`. Messages arrive in
//!   any order; one never delivered is lost. The network is a set: a message sent again while
//!   an identical one is in flight merges with it.
//! * **Elect**: a replica's election timer runs out. The core is ticked (`handle_tick`; one
//!   tick per heartbeat round, an election timeout of two ticks) until it stands for election,
//!   which takes three ticks from a fresh start; a timer that would not make it stand within
//!   four ticks is not a step. The Pings of those ticks and their Pongs are delivered at once,
//!   in both directions, except to and from the one peer the step may cut off.
//! * **Persist**: the replica's oldest pending write becomes durable, then `handle_persisted`.
//! * **Crash** and restart at once: the core and every write not yet reported durable are lost,
//!   except that any prefix of those records may have reached the disk (a torn tail, as the
//!   simulator's disk does). The restarted core is `Paxos::recover(config, seed,
//!   Durable::replay(log), Slot(0))`. Messages in flight to the replica are lost with its
//!   connections (as with the QUIC transport); those it sent before may still arrive.
//!
//! A leader proposes the moment it can: n1 proposes `A`, n2 proposes `B`, each once, with a
//! window of one slot. The checked properties are [`PaxosModel::properties`]: agreement (no
//! two values committed for one slot by any replica in any incarnation, and no two values known
//! chosen for one slot by the live cores), validity (a committed batch was proposed) and
//! commits in slot order; plus `sometimes` properties that prove the runs of interest are
//! reached ([`RUNS`]: a batch committed, both committed, a second leader, a new leader
//! re-proposing the other's batch; in failover also a crash that loses writes, recovery of an
//! accepted batch from the log, and a batch first committed after the leader's restart).
//!
//! # Scenarios and bounds
//!
//! Two scenarios are checked exhaustively, each within its bounds:
//!
//! * [`FAILOVER`]: n1's timer runs out, then n2's (never before n1's). Heartbeats are never
//!   lost, so n2 stands only once n1 is no longer a happy leader: n1 may crash once, at any
//!   moment, with its writes durable or not. Everyone else's writes complete at once.
//! * [`PARTITION`]: the same two timers, no crash, and n2's election may lose its heartbeats
//!   with n1: n2 stands while n1 still leads, and the stale leader's messages (accepts, votes,
//!   commit points) race the new leader's.
//!
//! The bounds keep the state space within the time `cargo test` can spend; each is a choice of
//! what to leave to the simulator (`cargo xtask sim`), which covers all of it at random:
//!
//! * Two elections in all (n3 never stands, nobody stands twice), one crash, two proposals.
//!   No tick besides the election timers: no retransmissions, heartbeat `Commit`s or
//!   `LogRecord::Commit` marks (one more tick for the leader multiplies the states by more
//!   than ten).
//! * No duplicated delivery: an `Accept` delivered twice is persisted twice, and a single
//!   duplicate per run multiplies the states by ten.
//! * Heartbeats are exchanged only while an election timer runs, and are delivered at once or
//!   cut off (between n2 and n1) for the whole election. Late heartbeats, which carry stale
//!   statuses, are left to the simulator.
//! * A replica that can no longer crash completes its writes at once: the timing of its
//!   writes only delays its own messages, which the network may delay anyway. (It also fixes
//!   the moment its own promise and vote count; this is the one interleaving given up.)
//!
//! # Reductions that lose nothing
//!
//! * States are told apart by the core's `Hash` (every field but the statistics counters).
//! * A message whose delivery would change nothing, now or ever, is dropped
//!   ([`PaxosModel::stale`] lists which qualify and why). Two checks keep this honest, both
//!   in every run:
//!   - where a message is dropped, [`PaxosModel::verify_drop`] hands it to a copy of its
//!     receiver (for a `CatchUp`, the answer to a copy of the asker) and asserts nothing
//!     changes: 1.6 million drops checked in the partition, 4.0 million in failover. A rule
//!     made too loose (a `Commit` or a `CatchUpReply` that still carries news) fails there
//!     at once (tried);
//!   - `dropping_stale_messages_loses_nothing_when_n2_takes_over` explores a scenario with
//!     neither crash nor partition both ways and finds the same 92 combinations of cores, logs
//!     and history (185 states with the reduction, 2,373 without). In the crash and partition
//!     scenarios the run without the reduction is the cost: 19 and 41 million states with n2
//!     proposing nothing (3,704 and 8,983 combinations, the same both ways, in session 2's
//!     runs of five and seven minutes), too long for `cargo test`.
//! * Once nobody can crash any more, pending writes complete and logs are forgotten: nothing
//!   reads them again.
//!
//! # Size
//!
//! Failover reaches about 1.27 million states (5.8 million transitions), the partition about
//! 0.49 million (2.2 million); both together take about 17 s of CPU, 9 s on two idle cores,
//! in the dev profile (the root `Cargo.toml` builds synod-paxos, synod-wire and stateright at
//! `opt-level = 3` for this). Each test prints its counts, its time and how many steps each run
//! of interest took; with `MODEL_TRACES=1` in the environment, the steps themselves.
//!
//! The planted-bug tests (`--features planted-bugs`) show that the check can fail: with
//! `reply_before_durable` or `ignore_promised_values` planted, the checker finds an agreement
//! violation and prints the trace.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use stateright::{Checker, HasDiscoveries, Model, Property};
use synod_paxos::{Action, Config, Durable, Paxos, PersistToken};
use synod_wire::{Ballot, LogRecord, Message, NodeId, Slot, Value};

/// Replicas in the model.
const N: usize = 3;

/// The batch replica `i` proposes (n1 proposes `A`, n2 proposes `B`), at most once each.
const PROPOSALS: [&[u8]; 2] = [b"A", b"B"];

/// Every core's seed. The election timeout range is a single value, so it decides nothing.
const SEED: u64 = 7;

/// One scenario: what may go wrong besides message loss and reordering.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    /// The replica that may crash (once), if any.
    crash: Option<usize>,
    /// Whether n2's election may lose its heartbeats with n1.
    partition: bool,
}

/// n1 leads and may crash at any moment; n2 takes over.
const FAILOVER: Scenario = Scenario { name: "failover", crash: Some(0), partition: false };

/// n2 takes over while n1, cut off from it, still leads.
const PARTITION: Scenario = Scenario { name: "partition", crash: None, partition: true };

/// A 64-bit fingerprint of `value`.
fn key(value: &impl Hash) -> u64 {
    let mut h = Fingerprinter::default();
    value.hash(&mut h);
    h.finish()
}

/// Two 64-bit lanes of multiply-rotate (each step a bijection of its lane), folded by
/// SplitMix64's finalizer: several times faster than SipHash on the core's many small fields.
#[derive(Default)]
struct Fingerprinter(u64, u64);

impl Fingerprinter {
    fn word(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        self.1 = (self.1.rotate_left(17) ^ x).wrapping_mul(0xD6E8_FEB8_6659_FD93).wrapping_add(0x2545_F491);
    }
}

impl Hasher for Fingerprinter {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, x: u8) {
        self.word(u64::from(x));
    }

    fn write_u32(&mut self, x: u32) {
        self.word(u64::from(x));
    }

    fn write_u64(&mut self, x: u64) {
        self.word(x);
    }

    fn write_usize(&mut self, x: usize) {
        self.word(x as u64);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0 ^ self.1.rotate_left(32);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) ^ self.1
    }
}

fn index(id: NodeId) -> usize {
    id.0 as usize - 1
}

fn id(i: usize) -> NodeId {
    NodeId(i as u32 + 1)
}

/// One replica: its core, its log, and how far it got.
#[derive(Clone)]
struct Replica {
    core: Arc<Paxos>,
    /// Durable records, oldest first; kept only while this replica may still crash.
    durable: Arc<Vec<LogRecord>>,
    /// Writes issued but not yet reported durable, oldest first.
    pending: Arc<VecDeque<(PersistToken, Vec<LogRecord>)>>,
    /// Whether its election timer ran out already.
    elected: bool,
    incarnation: u8,
    /// Slots this incarnation committed (the next commit must be for this slot).
    applied: u64,
    /// Hash of `core`, refreshed after every change.
    core_key: u64,
    /// Hash of all of the above, refreshed after every change.
    key: u64,
}

impl Replica {
    fn refresh(&mut self) {
        self.core_key = key(&*self.core);
        self.key = key(&(self.core_key, &self.durable, &self.pending, self.elected, self.incarnation));
    }
}

impl Hash for Replica {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialEq for Replica {
    fn eq(&self, other: &Replica) -> bool {
        self.key == other.key
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.core;
        let chosen: Vec<_> = (0..c.first_unchosen().0).map(|s| c.chosen(Slot(s))).collect();
        f.debug_struct("Replica")
            .field("id", &c.id())
            .field("incarnation", &self.incarnation)
            .field("is_leader", &c.is_leader())
            .field("leader_ballot", &c.leader_ballot())
            .field("promised", &c.promised())
            .field("chosen", &chosen)
            .field("durable", &self.durable)
            .field("pending", &self.pending)
            .finish()
    }
}

/// A message in flight; `key` hashes the rest and orders the network.
#[derive(PartialEq, Eq)]
struct Packet {
    key: u64,
    from: NodeId,
    to: NodeId,
    msg: Message,
}

impl Hash for Packet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}: {:?}", self.from, self.to, self.msg)
    }
}

/// What happened so far, for the properties.
#[derive(Clone, Debug, Default, Hash, PartialEq)]
struct History {
    /// Every value committed per slot by any replica in any incarnation, in a canonical order.
    commits: BTreeMap<Slot, Vec<Value>>,
    /// A core committed out of slot order.
    out_of_order: bool,
    proposed: [bool; 2],
    crashed: bool,
    /// The crash lost records that were not reported durable.
    lost_writes: bool,
    /// The restarted core recovered an accepted batch from its log.
    recovered_batch: bool,
    /// The crashed replica was the leader.
    leader_crashed: bool,
    /// A batch was committed for the first time after the leader crashed and restarted.
    batch_after_restart: bool,
    first_leader: Option<Ballot>,
    /// A replica led with a ballot other than the first leader's.
    second_leader: bool,
    /// A leader sent an `Accept` for the batch another replica proposed.
    adopted_batch: bool,
}

#[derive(Clone, Debug, Hash, PartialEq)]
struct State {
    replicas: [Replica; N],
    /// In flight: a set, sorted by key.
    network: Vec<Arc<Packet>>,
    history: Arc<History>,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Deliver(Arc<Packet>),
    /// Replica `.0`'s election timer runs out; heartbeats with replica `.1` are lost.
    Elect(usize, Option<usize>),
    Persist(usize),
    /// Crash and restart replica `.0`, keeping the first `.1` records not reported durable.
    Crash(usize, usize),
}

struct PaxosModel {
    configs: Vec<Config>,
    scenario: Scenario,
    /// How many of [`PROPOSALS`] are proposed (by n1, n2): 2 but to validate the reduction.
    proposers: usize,
    /// Whether stale messages are dropped ([`PaxosModel::prune`]).
    prune: bool,
    /// Whether every dropped message is first shown to change nothing ([`PaxosModel::verify_drop`]).
    verify_drops: bool,
    /// How many drops [`PaxosModel::verify_drop`] checked.
    drops_verified: AtomicUsize,
    /// To validate the reduction: every combination of replicas (cores, logs) and history seen.
    seen: Option<Mutex<BTreeSet<u64>>>,
    /// Which of [`RUNS`] were found.
    found: [AtomicBool; RUNS.len()],
}

impl PaxosModel {
    fn new(scenario: Scenario, adjust: impl Fn(Config) -> Config) -> PaxosModel {
        let ids: Vec<NodeId> = (0..N).map(id).collect();
        let config = |me| {
            let c = Config::new(me, ids.clone()).expect("valid members");
            // Eager commits: the lazy default sends the same Commits, later, and only on ticks this model leaves out.
            let c = c.with_eager_commit(true);
            adjust(c.with_timing(1, (2, 2)).expect("valid timing").with_window(1).expect("valid window"))
        };
        PaxosModel {
            configs: ids.iter().map(|&me| config(me)).collect(),
            scenario,
            proposers: PROPOSALS.len(),
            prune: true,
            verify_drops: true,
            drops_verified: AtomicUsize::new(0),
            seen: None,
            found: Default::default(),
        }
    }

    fn may_crash(&self, s: &State, i: usize) -> bool {
        self.scenario.crash == Some(i) && !s.history.crashed
    }

    /// Carries out what replica `i` asked for. Heartbeats go to `hb`, other messages to the
    /// network. Writes wait while the replica may crash and complete at once otherwise. A
    /// leader proposes the moment it can.
    fn drain(&self, s: &mut State, i: usize, hb: &mut Vec<(usize, Message)>) {
        let may_crash = self.may_crash(s, i);
        let State { replicas, network, history } = s;
        let r = &mut replicas[i];
        let core = Arc::make_mut(&mut r.core);
        loop {
            let mut persisted = None;
            while let Some(action) = core.poll_action() {
                match action {
                    Action::Send { to, msg } => {
                        if matches!(msg, Message::Ping { .. } | Message::Pong { .. }) {
                            hb.push((index(to), msg));
                        } else {
                            if let Message::Accept { value: Value::Batch(b), .. } = &msg {
                                if !history.adopted_batch && PROPOSALS.get(i) != Some(&&b[..]) {
                                    Arc::make_mut(history).adopted_batch = true;
                                }
                            }
                            let from = id(i);
                            let k = key(&(from, to, &msg));
                            let at = network.partition_point(|p| p.key < k);
                            if network.get(at).is_none_or(|p| p.key != k) {
                                network.insert(at, Arc::new(Packet { key: k, from, to, msg }));
                            }
                        }
                    }
                    Action::Persist { records, token } => {
                        if may_crash {
                            Arc::make_mut(&mut r.pending).push_back((token, records));
                        } else {
                            persisted = Some(token);
                        }
                    }
                    Action::Commit { slot, value } => {
                        let h = Arc::make_mut(history);
                        h.out_of_order |= slot.0 != r.applied;
                        r.applied = slot.0 + 1;
                        let seen = h.commits.entry(slot).or_default();
                        h.batch_after_restart |=
                            seen.is_empty() && h.leader_crashed && matches!(value, Value::Batch(_));
                        if !seen.contains(&value) {
                            seen.push(value);
                            seen.sort_by_key(key);
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
            if let Some(token) = persisted {
                core.handle_persisted(token);
            } else if i < self.proposers && !history.proposed[i] && core.can_propose() {
                Arc::make_mut(history).proposed[i] = true;
                core.propose(PROPOSALS[i].to_vec()).expect("it can propose");
            } else {
                break;
            }
        }
        if core.is_leader() {
            let b = core.leader_ballot();
            match history.first_leader {
                None => Arc::make_mut(history).first_leader = Some(b),
                Some(first) if first != b && !history.second_leader => {
                    Arc::make_mut(history).second_leader = true;
                }
                _ => {}
            }
        }
        r.refresh();
    }

    fn drain_quiet(&self, s: &mut State, i: usize) {
        let mut hb = Vec::new();
        self.drain(s, i, &mut hb);
        assert!(hb.is_empty(), "heartbeats are sent only on ticks");
    }

    /// One tick of replica `i`; its Pings and their Pongs are delivered at once, except to and
    /// from `cut`.
    fn tick(&self, s: &mut State, i: usize, cut: Option<usize>) {
        Arc::make_mut(&mut s.replicas[i].core).handle_tick();
        let mut pings = Vec::new();
        self.drain(s, i, &mut pings);
        for (to, ping) in pings {
            assert!(matches!(ping, Message::Ping { .. }), "a tick sends no Pong");
            if cut == Some(to) {
                continue;
            }
            Arc::make_mut(&mut s.replicas[to].core).handle_message(id(i), ping);
            let mut pongs = Vec::new();
            self.drain(s, to, &mut pongs);
            for (back, pong) in pongs {
                assert!(back == i && matches!(pong, Message::Pong { .. }), "a Ping is answered by a Pong");
                Arc::make_mut(&mut s.replicas[i].core).handle_message(id(to), pong);
                self.drain_quiet(s, i);
            }
        }
    }

    /// Whether delivering `p` would change nothing at its receiver, now or ever: then the
    /// message is dropped, and states that differ only in it merge. Only these qualify:
    ///
    /// * `Promise { ballot }` to a replica that is not a candidate for `ballot`: a Promise goes
    ///   to the replica that stood with `ballot`, which never runs for it again, in any
    ///   incarnation (a restart stands above its durable promise).
    /// * `Accepted { ballot, slot }` that changes nothing at the leader: a leader at `ballot`
    ///   counts each vote for a pending slot once and never re-opens a slot, and a replica that
    ///   is not leader at `ballot` once it was never is again.
    /// * `Commit { ballot, commit }` with `ballot` at most the receiver's leader ballot and
    ///   `commit` at most its first unchosen slot; `Reject { promised }` with `promised` at most
    ///   its leader ballot; `CatchUpReply` with every entry below its first unchosen slot.
    ///   Both bounds only grow within one incarnation, so these qualify only at a replica that
    ///   can no longer crash.
    /// * `CatchUp { to }` from a replica that can no longer crash and knows every slot below
    ///   `to` chosen: the receiver only reads its log to answer, and the answer could only
    ///   carry slots the asker already has.
    ///
    /// Where the public API cannot tell (a vote for a pending slot), a copy of the receiver
    /// is handed the message: a no-op leaves the core's hash unchanged and asks for nothing.
    fn stale(&self, s: &State, p: &Packet) -> bool {
        let r = &s.replicas[index(p.to)];
        let core = &r.core;
        let lasting = !self.may_crash(s, index(p.to));
        match &p.msg {
            Message::Promise { ballot, .. } => core.is_leader() || core.leader_ballot() != *ballot,
            Message::Accepted { ballot, .. } => {
                if core.is_leader() && core.leader_ballot() == *ballot {
                    let mut copy = Paxos::clone(core);
                    copy.handle_message(p.from, p.msg.clone());
                    copy.poll_action().is_none() && key(&copy) == r.core_key
                } else {
                    true
                }
            }
            Message::Commit { ballot, commit } => {
                lasting && *ballot <= core.leader_ballot() && *commit <= core.first_unchosen()
            }
            Message::Reject { promised, .. } => lasting && *promised <= core.leader_ballot(),
            Message::CatchUpReply { entries } => {
                lasting && entries.iter().all(|e| e.slot < core.first_unchosen())
            }
            Message::CatchUp { to, .. } => {
                let asker = index(p.from);
                !self.may_crash(s, asker) && s.replicas[asker].core.first_unchosen() >= *to
            }
            _ => false,
        }
    }

    /// Drops the messages that became stale in the step from `old` to `s`. Only a new message,
    /// or one to (for `CatchUp`, also from) a replica that changed or can no longer crash, can
    /// have.
    fn prune(&self, old: &State, s: &mut State) {
        let changed = |i: usize| {
            old.replicas[i].core_key != s.replicas[i].core_key
                || self.may_crash(old, i) != self.may_crash(s, i)
        };
        let check = |p: &Packet| {
            changed(index(p.to))
                || (matches!(p.msg, Message::CatchUp { .. }) && changed(index(p.from)))
                || old.network.binary_search_by_key(&p.key, |q| q.key).is_err()
        };
        let stale: Vec<u64> =
            s.network.iter().filter(|p| check(p) && self.stale(s, p)).map(|p| p.key).collect();
        if self.verify_drops {
            for p in s.network.iter().filter(|p| stale.contains(&p.key)) {
                self.verify_drop(s, p);
            }
        }
        if !stale.is_empty() {
            s.network.retain(|p| !stale.contains(&p.key));
        }
    }

    /// Checks, where a message is dropped, that delivering it instead would change nothing: a
    /// copy of its receiver handed it keeps its hash and asks for nothing. A `CatchUp` is
    /// answered, so for it the answer is what must change nothing at the asker. The rules of
    /// [`PaxosModel::stale`] rest on bounds that only grow (ballots, first unchosen slots) at
    /// replicas that can no longer crash, so what changes nothing now changes nothing later.
    fn verify_drop(&self, s: &State, p: &Packet) {
        let deliver = |to: usize, from: NodeId, msg: Message| {
            let mut copy = Paxos::clone(&s.replicas[to].core);
            copy.handle_message(from, msg);
            let actions: Vec<Action> = std::iter::from_fn(|| copy.poll_action()).collect();
            (key(&copy) == s.replicas[to].core_key, actions)
        };
        self.drops_verified.fetch_add(1, Ordering::Relaxed);
        let (unchanged, actions) = deliver(index(p.to), p.from, p.msg.clone());
        assert!(unchanged, "dropping {p:?} loses a change at its receiver");
        if let Message::CatchUp { .. } = p.msg {
            for action in actions {
                if let Action::Send { to, msg } = action {
                    assert_eq!(to, p.from, "a catch-up is answered to its asker");
                    let (unchanged, further) = deliver(index(to), p.to, msg);
                    assert!(
                        unchanged && further.is_empty(),
                        "the answer to dropped {p:?} would change its asker"
                    );
                }
            }
        } else {
            assert!(actions.is_empty(), "dropping {p:?} loses the receiver's answer {actions:?}");
        }
    }

    /// Once nobody can crash any more, logs are never read again: complete every pending write
    /// and forget the logs, so that states that differ only there merge.
    fn settle(&self, s: &mut State) {
        if (0..N).any(|i| self.may_crash(s, i)) {
            return;
        }
        for i in 0..N {
            let r = &mut s.replicas[i];
            if let Some(&(token, _)) = r.pending.back() {
                r.pending = Arc::default();
                Arc::make_mut(&mut r.core).handle_persisted(token);
                self.drain_quiet(s, i);
            }
            let r = &mut s.replicas[i];
            if !r.durable.is_empty() {
                r.durable = Arc::default();
                r.refresh();
            }
        }
    }
}

impl Model for PaxosModel {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        let replica = |i: usize| Replica {
            core: Arc::new(Paxos::new(self.configs[i].clone(), SEED)),
            durable: Arc::default(),
            pending: Arc::default(),
            elected: false,
            incarnation: 0,
            applied: 0,
            core_key: 0,
            key: 0,
        };
        let mut s =
            State { replicas: std::array::from_fn(replica), network: Vec::new(), history: Arc::default() };
        for i in 0..N {
            self.drain_quiet(&mut s, i);
        }
        self.settle(&mut s);
        vec![s]
    }

    fn actions(&self, s: &State, out: &mut Vec<Step>) {
        // n1's election timer runs out first, then n2's; n3's never does.
        let [n1, n2, _] = &s.replicas;
        if !n1.elected {
            out.push(Step::Elect(0, None));
        } else if !n2.elected {
            out.push(Step::Elect(1, None));
            if self.scenario.partition {
                out.push(Step::Elect(1, Some(0)));
            }
        }
        for (i, r) in s.replicas.iter().enumerate() {
            if !r.pending.is_empty() {
                out.push(Step::Persist(i));
            }
            if self.may_crash(s, i) {
                let unreported: usize = r.pending.iter().map(|(_, records)| records.len()).sum();
                for kept in 0..=unreported {
                    out.push(Step::Crash(i, kept));
                }
            }
        }
        out.extend(s.network.iter().map(|p| Step::Deliver(p.clone())));
    }

    fn next_state(&self, old: &State, step: Step) -> Option<State> {
        let mut s = old.clone();
        match step {
            Step::Deliver(p) => {
                let at = s.network.binary_search_by_key(&p.key, |q| q.key).expect("offered only in flight");
                s.network.remove(at);
                let to = index(p.to);
                Arc::make_mut(&mut s.replicas[to].core).handle_message(p.from, p.msg.clone());
                self.drain_quiet(&mut s, to);
            }
            Step::Elect(i, cut) => {
                s.replicas[i].elected = true;
                let stood = s.replicas[i].core.stats().elections;
                for _ in 0..4 {
                    self.tick(&mut s, i, cut);
                    if s.replicas[i].core.stats().elections > stood {
                        break;
                    }
                }
                if s.replicas[i].core.stats().elections == stood {
                    return None;
                }
            }
            Step::Persist(i) => {
                let r = &mut s.replicas[i];
                let (token, records) =
                    Arc::make_mut(&mut r.pending).pop_front().expect("offered only when pending");
                Arc::make_mut(&mut r.durable).extend(records);
                Arc::make_mut(&mut r.core).handle_persisted(token);
                self.drain_quiet(&mut s, i);
            }
            Step::Crash(i, kept) => {
                s.network.retain(|p| index(p.to) != i);
                let r = &mut s.replicas[i];
                let leader_crashed = r.core.is_leader();
                let pending = std::mem::take(&mut r.pending);
                let mut unreported = pending.iter().flat_map(|(_, records)| records.iter().cloned());
                let durable = Arc::make_mut(&mut r.durable);
                durable.extend(unreported.by_ref().take(kept));
                let lost_writes = unreported.next().is_some();
                let recovered = Durable::replay(durable.iter().cloned());
                let recovered_batch =
                    recovered.entries.values().any(|(_, v, _)| matches!(v, Value::Batch(_)));
                r.core = Arc::new(Paxos::recover(self.configs[i].clone(), SEED, recovered, Slot(0)));
                r.incarnation += 1;
                r.applied = 0;
                let h = Arc::make_mut(&mut s.history);
                h.crashed = true;
                h.leader_crashed = leader_crashed;
                h.lost_writes |= lost_writes;
                h.recovered_batch |= recovered_batch;
                self.drain_quiet(&mut s, i);
            }
        }
        self.settle(&mut s);
        if self.prune {
            self.prune(old, &mut s);
        }
        if let Some(seen) = &self.seen {
            let replicas: Vec<u64> = s.replicas.iter().map(|r| r.key).collect();
            seen.lock().expect("not poisoned").insert(key(&(replicas, &*s.history)));
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("agreement", |_, s: &State| agreement(s)),
            Property::always("validity", |_, s: &State| {
                s.history.commits.values().flatten().all(|v| match v {
                    Value::Noop => true,
                    // The model proposes no membership change.
                    Value::Reconfig(_) => false,
                    Value::Batch(b) => {
                        PROPOSALS.iter().zip(s.history.proposed).any(|(p, done)| done && &b[..] == *p)
                    }
                })
            }),
            Property::always("commits in slot order", |_, s: &State| !s.history.out_of_order),
            Property::sometimes(RUNS[0], |m, s: &State| m.first(0, batches(s) >= 1)),
            Property::sometimes(RUNS[1], |m, s: &State| m.first(1, batches(s) == 2)),
            Property::sometimes(RUNS[2], |m, s: &State| m.first(2, s.history.second_leader)),
            Property::sometimes(RUNS[3], |m, s: &State| m.first(3, s.history.adopted_batch)),
            Property::sometimes(RUNS[4], |m, s: &State| m.first(4, s.history.lost_writes)),
            Property::sometimes(RUNS[5], |m, s: &State| m.first(5, s.history.recovered_batch)),
            Property::sometimes(RUNS[6], |m, s: &State| m.first(6, s.history.batch_after_restart)),
        ]
    }
}

/// The runs the `sometimes` properties look for.
const RUNS: [&str; 7] = [
    "a batch is committed",
    "both batches are committed",
    "a second leader is elected",
    "a new leader re-proposes the batch another proposed",
    "a crash loses writes not yet durable",
    "a restart recovers an accepted batch from the log",
    "a batch is first committed after the leader crashed and restarted",
];

impl PaxosModel {
    /// `holds`, the first time only. stateright records a discovery at every state in which
    /// a `sometimes` condition holds (a map insert and a copy of the path, a sixth of the run
    /// time here); the first is the one it reports.
    fn first(&self, run: usize, holds: bool) -> bool {
        holds && !self.found[run].swap(true, Ordering::Relaxed)
    }
}

/// No slot has two values: none committed anywhere, ever, and none known chosen now.
fn agreement(s: &State) -> bool {
    if s.history.commits.values().any(|v| v.len() > 1) {
        return false;
    }
    let highest = s.replicas.iter().map(|r| r.core.first_unchosen().0 + 2).max().unwrap_or(0);
    (0..highest).all(|slot| {
        let slot = Slot(slot);
        let committed = s.history.commits.get(&slot).and_then(|v| v.first());
        let mut known = s.replicas.iter().filter_map(|r| r.core.chosen(slot)).chain(committed);
        let first = known.next();
        known.all(|v| Some(v) == first)
    })
}

/// How many distinct batches were committed.
fn batches(s: &State) -> usize {
    s.history.commits.values().flatten().filter(|v| matches!(v, Value::Batch(_))).count()
}

/// What a run found.
struct Report {
    states: usize,
    drops_verified: usize,
    done: bool,
    discoveries: BTreeMap<&'static str, Vec<Step>>,
}

/// Runs `model` (depth first, two threads) until `finish` or until every state is explored,
/// and says what it took.
fn check(model: PaxosModel, finish: HasDiscoveries) -> Report {
    let name = model.scenario.name;
    // The run's own duration, for the report; no core ever sees it.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let checker = model.checker().threads(2).finish_when(finish).spawn_dfs().join();
    let drops_verified = checker.model().drops_verified.load(Ordering::Relaxed);
    eprintln!(
        "model {name}: {} states ({} generated), depth {}, {drops_verified} drops checked, in {:.1?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    Report {
        states: checker.unique_state_count(),
        drops_verified,
        done: checker.is_done(),
        discoveries: checker.discoveries().into_iter().map(|(k, p)| (k, p.into_actions())).collect(),
    }
}

/// Checks `scenario` exhaustively: no safety property fails, every `expected` run is reached,
/// and at least `min_states` states were explored (so that a change that quietly cuts the model
/// down, say one that blocks elections, fails here).
fn check_scenario(scenario: Scenario, expected: &[&str], min_states: usize) {
    let report = check(PaxosModel::new(scenario, |c| c), HasDiscoveries::AnyFailures);
    for safety in SAFETY {
        if let Some(trace) = report.discoveries.get(safety) {
            panic!("{} violates {safety}:\n{}", scenario.name, show(trace));
        }
    }
    assert!(report.done, "the checker stopped before it explored every state");
    for run in expected {
        let trace = report.discoveries.get(run);
        let trace = trace.unwrap_or_else(|| panic!("{} never reaches `{run}`", scenario.name));
        eprintln!("model {}: reaches `{run}` in {} steps", scenario.name, trace.len());
        if std::env::var_os("MODEL_TRACES").is_some() {
            eprintln!("{}", show(trace));
        }
    }
    assert!(report.states >= min_states, "{} explored only {} states", scenario.name, report.states);
    // Every kind of drop rule gets exercised in these scenarios; a floor keeps the check from
    // quietly checking nothing.
    assert!(
        report.drops_verified >= min_states / 10,
        "{} checked only {} drops",
        scenario.name,
        report.drops_verified
    );
}

/// The `always` properties.
const SAFETY: [&str; 3] = ["agreement", "validity", "commits in slot order"];

/// A trace, one step per line.
fn show(trace: &[Step]) -> String {
    trace.iter().map(|step| format!("  {step:?}\n")).collect()
}

#[test]
fn failover_keeps_agreement_in_every_reachable_state() {
    check_scenario(FAILOVER, &RUNS, 1_000_000);
}

#[test]
fn partition_keeps_agreement_in_every_reachable_state() {
    check_scenario(PARTITION, &RUNS[..4], 400_000);
}

/// The check can fail: with a bug planted in every core, it finds an agreement violation.
#[cfg(feature = "planted-bugs")]
mod planted {
    use super::*;
    use synod_paxos::PlantedBugs;

    fn violation(scenario: Scenario, bugs: PlantedBugs) -> Vec<Step> {
        let model = PaxosModel::new(scenario, |c| c.with_bugs(bugs));
        let report = check(model, HasDiscoveries::AnyFailures);
        let trace = report.discoveries.get("agreement").cloned();
        let trace = trace.unwrap_or_else(|| panic!("{bugs:?} breaks no agreement in {}", scenario.name));
        eprintln!("{bugs:?} in {}:\n{}", scenario.name, show(&trace));
        trace
    }

    #[test]
    fn replying_before_the_write_is_durable_is_caught() {
        violation(FAILOVER, PlantedBugs { reply_before_durable: true, ..Default::default() });
    }

    #[test]
    fn a_leader_ignoring_promised_values_is_caught() {
        violation(PARTITION, PlantedBugs { ignore_promised_values: true, ..Default::default() });
    }
}

/// Dropping stale messages loses no state of the cores, logs or history: with and without
/// it, the same combinations are reached. Exploring without the reduction is what costs: the
/// crash and partition scenarios reach 19 and 41 million states that way even with one
/// proposer, so the whole-space comparison runs on a scenario without them, and every drop in
/// the full scenarios is checked where it happens ([`PaxosModel::verify_drops`]).
fn dropping_stale_messages_loses_nothing(scenario: Scenario, proposers: usize) {
    let seen = |prune| {
        let mut model = PaxosModel::new(scenario, |c| c);
        model.proposers = proposers;
        model.prune = prune;
        model.seen = Some(Mutex::default());
        let checker = model.checker().threads(2).finish_when(HasDiscoveries::AnyFailures).spawn_dfs().join();
        eprintln!("{}: prune {prune}: {} states", scenario.name, checker.unique_state_count());
        let seen = checker.model().seen.as_ref().expect("recorded").lock().expect("not poisoned");
        seen.clone()
    };
    let (with, without) = (seen(true), seen(false));
    eprintln!("{}: {} combinations with the reduction, {} without", scenario.name, with.len(), without.len());
    assert!(with.len() > 50, "the comparison explores too little to mean anything");
    assert!(with == without, "the reduction changes what is reachable");
}

#[test]
fn dropping_stale_messages_loses_nothing_when_n2_takes_over() {
    dropping_stale_messages_loses_nothing(Scenario { name: "takeover", crash: None, partition: false }, 2);
}
