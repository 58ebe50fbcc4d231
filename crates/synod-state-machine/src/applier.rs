//! The Applier: committed slot -> batch -> session table -> state machine -> replies.

use std::io::{Read, Write};

use rkyv::{Archive, Deserialize, Serialize};
use synod_session::{Begin, SessionConfig, SessionError, SessionTable};
use synod_wire::{
    with_archived, ArchivedCommand, Batch, ClientId, Command, Membership, Outcome, Seq, Slot, Value, Wire,
};

use crate::{RestoreError, SnapshotSource, StateMachine};

/// How many commands one slot may register sessions for: a session's id is
/// `slot << 20 | index`, its position in the log.
const MAX_REGISTRATIONS_PER_SLOT: usize = 1 << 20;

/// Whom a reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A registration, recognised by the client's nonce.
    Register {
        /// The client's nonce.
        nonce: u64,
    },
    /// A request within a session.
    Request {
        /// The session.
        client: ClientId,
        /// The request number.
        seq: Seq,
    },
}

impl Origin {
    /// Whom the answer to `command` is for: drivers use it to route replies.
    pub fn of(command: &Command) -> Origin {
        match command {
            Command::Register { nonce } => Origin::Register { nonce: *nonce },
            Command::Op { client, seq, .. } => Origin::Request { client: *client, seq: *seq },
        }
    }
}

/// The answer to one command of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Whom it is for.
    pub origin: Origin,
    /// What happened.
    pub outcome: Outcome,
}

/// Why a slot could not be applied. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Slots must be applied in order, each once.
    #[error("slot {got} applied out of order: expected {expected}")]
    OutOfOrder {
        /// The next slot the applier expects.
        expected: Slot,
        /// The slot given.
        got: Slot,
    },
}

/// Counters of the applier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplierStats {
    /// Slots applied.
    pub slots: u64,
    /// Commands the state machine applied.
    pub applied: u64,
    /// Retries answered from the session cache.
    pub duplicates: u64,
    /// Commands refused by the session table.
    pub refused: u64,
    /// Committed batches that did not decode (applied as no-ops on every replica).
    pub undecodable: u64,
}

/// The first bytes of a streamed applier snapshot ([`Applier::snapshot_to`]).
const STREAM_MAGIC: [u8; 8] = *b"synodSNP";

/// The format version of a streamed applier snapshot, after the magic.
/// Version 2 added the configuration; version 1 (without it) still reads.
const STREAM_VERSION: u32 = 2;

#[derive(Archive, Serialize, Deserialize)]
struct Image {
    applied: u64,
    digest: u64,
    membership: Option<Membership>,
    sessions: Vec<u8>,
    machine: Vec<u8>,
}

/// Applies committed slots to a [`StateMachine`] through the session table.
#[derive(Debug)]
pub struct Applier<S> {
    machine: S,
    sessions: SessionTable,
    session_cfg: SessionConfig,
    next: Slot,
    digest: u64,
    /// The configuration the last applied stop sign started (`None`: none applied, configuration 0).
    membership: Option<Membership>,
    stats: ApplierStats,
    #[cfg(feature = "planted-bugs")]
    bugs: crate::PlantedBugs,
}

impl<S: StateMachine> Applier<S> {
    /// An applier at slot 0 over `machine`.
    pub fn new(machine: S, sessions: SessionConfig) -> Applier<S> {
        Applier {
            machine,
            sessions: SessionTable::new(sessions),
            session_cfg: sessions,
            next: Slot(0),
            digest: FNV_OFFSET,
            membership: None,
            stats: ApplierStats::default(),
            #[cfg(feature = "planted-bugs")]
            bugs: crate::PlantedBugs::default(),
        }
    }

    /// Plants the given bugs (all off by default), for the simulator's self-tests.
    #[cfg(feature = "planted-bugs")]
    pub fn with_bugs(mut self, bugs: crate::PlantedBugs) -> Applier<S> {
        self.bugs = bugs;
        self
    }

    /// Applies committed `slot`, which must be the next one, and returns the
    /// replies to send. A batch that does not decode applies as a no-op.
    pub fn apply(&mut self, slot: Slot, value: &Value) -> Result<Vec<Reply>, ApplyError> {
        self.apply_slot(slot, value, true)
    }

    /// Applies committed `slot` exactly as [`Applier::apply`] does, for a
    /// replica that answers nobody (a follower): it builds no replies, and
    /// so skips a copy of every answer (the session table keeps the one it
    /// needs for retries).
    pub fn apply_unanswered(&mut self, slot: Slot, value: &Value) -> Result<(), ApplyError> {
        self.apply_slot(slot, value, false).map(drop)
    }

    fn apply_slot(&mut self, slot: Slot, value: &Value, answer: bool) -> Result<Vec<Reply>, ApplyError> {
        if slot != self.next {
            return Err(ApplyError::OutOfOrder { expected: self.next, got: slot });
        }
        self.next = slot.next();
        self.stats.slots += 1;
        let bytes = match value {
            Value::Batch(bytes) => bytes,
            Value::Noop => return Ok(Vec::new()),
            // A stop sign whose configuration is not after the one in force
            // changes nothing, as in Paxos (which adopts only a later epoch):
            // a stale one must not reach a snapshot.
            Value::Reconfig(m) if m.epoch <= self.membership.as_ref().map_or(0, |c| c.epoch) => {
                return Ok(Vec::new());
            }
            Value::Reconfig(m) => {
                // A stop sign: the configuration is part of the replicated
                // state, so that a snapshot carries it to whoever installs it.
                self.mix(&m.epoch.to_le_bytes());
                for member in &m.members {
                    self.mix(&member.id.0.to_le_bytes());
                }
                self.membership = Some(m.clone());
                return Ok(Vec::new());
            }
        };
        // The batch is read in place: a command's payload reaches the state
        // machine as a slice of the committed value, never copied.
        let applied = with_archived::<Batch, _>(bytes, |batch| {
            let ts = batch.timestamp_ms.to_native();
            self.sessions.advance_clock(ts);
            let mut replies = Vec::with_capacity(if answer { batch.commands.len() } else { 0 });
            for (index, command) in batch.commands.iter().enumerate() {
                let reply = self.apply_command(slot, index, ts, command, answer);
                if answer {
                    replies.push(reply);
                }
            }
            replies
        });
        match applied {
            Ok(replies) => Ok(replies),
            Err(_) => {
                self.stats.undecodable += 1;
                Ok(Vec::new())
            }
        }
    }

    /// Applies one command; without `answer` the reply's payload is left empty (nobody reads it).
    fn apply_command(
        &mut self,
        slot: Slot,
        index: usize,
        ts: u64,
        command: &ArchivedCommand,
        answer: bool,
    ) -> Reply {
        match command {
            ArchivedCommand::Register { nonce } => {
                let nonce = nonce.to_native();
                let origin = Origin::Register { nonce };
                if index >= MAX_REGISTRATIONS_PER_SLOT {
                    return Reply { origin, outcome: Outcome::Busy };
                }
                let client = ClientId(slot.0 << 20 | index as u64);
                self.sessions.register(client, ts);
                self.mix(&client.0.to_le_bytes());
                Reply { origin, outcome: Outcome::Registered { client } }
            }
            ArchivedCommand::Op { client, seq, ack, payload } => {
                let (client, seq, ack) =
                    (ClientId(client.0.to_native()), Seq(seq.0.to_native()), Seq(ack.0.to_native()));
                let payload = payload.as_slice();
                let origin = Origin::Request { client, seq };
                let outcome = match self.sessions.begin(client, seq, ack) {
                    Ok(Begin::Apply) => {
                        let result = self.machine.apply(payload);
                        self.mix(payload);
                        self.mix(&result);
                        let payload = if answer { result.clone() } else { Vec::new() };
                        self.sessions.complete(client, seq, result);
                        self.stats.applied += 1;
                        Outcome::Applied { payload }
                    }
                    Ok(Begin::Duplicate(cached)) => {
                        self.stats.duplicates += 1;
                        Outcome::Applied { payload: cached }
                    }
                    Err(e) => {
                        self.stats.refused += 1;
                        match e {
                            SessionError::Unknown => Outcome::SessionExpired,
                            SessionError::Stale => Outcome::Stale,
                            SessionError::TooFarAhead => Outcome::TooFarAhead,
                        }
                    }
                };
                Reply { origin, outcome }
            }
        }
    }

    /// A snapshot of everything replicated: state machine, sessions, position,
    /// in one buffer. [`Applier::snapshot_to`] is the streaming form (another format).
    pub fn snapshot(&self) -> Vec<u8> {
        let image = Image {
            applied: self.next.0,
            digest: self.digest,
            membership: self.membership.clone(),
            sessions: self.sessions.snapshot(),
            machine: self.machine.snapshot(),
        };
        rkyv::to_bytes::<rkyv::rancor::Error>(&image).expect("an image always serializes").into_vec()
    }

    /// Replaces everything with a snapshot's contents. On error nothing changed.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(snapshot.len());
        aligned.extend_from_slice(snapshot);
        let image = rkyv::from_bytes::<Image, rkyv::rancor::Error>(&aligned)
            .map_err(|e| RestoreError::new(e.to_string()))?;
        let sessions = SessionTable::restore(self.session_cfg, &image.sessions)
            .map_err(|e| RestoreError::new(e.to_string()))?;
        self.machine.restore(&image.machine)?;
        self.sessions = sessions;
        self.next = Slot(image.applied);
        self.digest = image.digest;
        self.membership = image.membership;
        Ok(())
    }

    /// Writes a snapshot of everything replicated to `out`, streaming: the
    /// form the runtime will write to disk and send to peers (decision 0005).
    ///
    /// The stream is a header (the magic `synodSNP`, the format version as a
    /// little-endian `u32`, then as little-endian `u64`s the next slot, the
    /// digest, the length of the configuration's encoding (0: none), the
    /// configuration ([`Wire`]-encoded [`Membership`]), then the length of
    /// the session table's image), the session table's image, then the machine's state as
    /// [`StateMachine::snapshot_to`] writes it, to the end of the stream.
    /// The session table goes first and in the same stream, so a machine's
    /// state is never restored without it. Only the machine's state is never
    /// held whole in memory; the session table is (it is bounded by
    /// [`SessionConfig`]). `out` may be unbuffered; wrap a file in a
    /// `BufWriter`.
    ///
    /// This is a different format from [`Applier::snapshot`]'s.
    pub fn snapshot_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&self.stream_head())?;
        self.machine.snapshot_to(out)?;
        out.flush()
    }

    /// A frozen copy of everything replicated, taken now, to be written out
    /// later on another thread while this applier goes on applying: what
    /// [`AppliedSnapshot::write_to`] writes is exactly what
    /// [`Applier::snapshot_to`] writes now (so [`Applier::restore_from`]
    /// reads it), whatever is applied in between.
    ///
    /// Here, on the applying thread, it copies the header and the session
    /// table (bounded by [`SessionConfig`]) and takes the machine's
    /// [`StateMachine::snapshot_source`], cheap for a machine that overrides
    /// it (e.g. `synod-kv`'s store) and a full copy of the state otherwise.
    pub fn snapshot_source(&self) -> AppliedSnapshot {
        AppliedSnapshot { upto: self.next, head: self.stream_head(), machine: self.machine.snapshot_source() }
    }

    /// The stream's header and the session table's image: everything
    /// [`Applier::snapshot_to`] writes before the machine's state.
    fn stream_head(&self) -> Vec<u8> {
        let sessions = self.sessions.snapshot();
        let membership = match &self.membership {
            Some(m) => m.encode().expect("a configuration always encodes").to_vec(),
            None => Vec::new(),
        };
        let mut head = Vec::with_capacity(44 + membership.len() + sessions.len());
        head.extend_from_slice(&STREAM_MAGIC);
        head.extend_from_slice(&STREAM_VERSION.to_le_bytes());
        head.extend_from_slice(&self.next.0.to_le_bytes());
        head.extend_from_slice(&self.digest.to_le_bytes());
        head.extend_from_slice(&(membership.len() as u64).to_le_bytes());
        head.extend_from_slice(&membership);
        head.extend_from_slice(&(sessions.len() as u64).to_le_bytes());
        head.extend_from_slice(&sessions);
        head
    }

    /// An applier restored from a stream [`Applier::snapshot_to`] wrote,
    /// over `machine` (a fresh one: its state is replaced) and the session
    /// limits `sessions` (every replica's must be the same).
    ///
    /// Bad input (truncated, another version, garbage, bytes after the
    /// machine's state) is a [`RestoreError`], never a panic; the machine is
    /// then dropped. `input` is read in small pieces: wrap a file in a
    /// `BufReader`. Counters ([`Applier::stats`]) start at zero.
    pub fn restore_from(
        mut machine: S,
        sessions: SessionConfig,
        input: &mut dyn Read,
    ) -> Result<Applier<S>, RestoreError> {
        let (head, table) = read_stream_head(sessions, input)?;
        machine.restore_from(input)?;
        expect_end(input)?;
        Ok(Applier {
            machine,
            sessions: table,
            session_cfg: sessions,
            next: Slot(head.next),
            digest: head.digest,
            membership: head.membership,
            stats: ApplierStats::default(),
            #[cfg(feature = "planted-bugs")]
            bugs: crate::PlantedBugs::default(),
        })
    }

    /// Replaces everything this applier holds (machine state, session
    /// table, position, digest) with a stream [`Applier::snapshot_to`]
    /// wrote: a snapshot received from a peer. Counters go on.
    ///
    /// The header and session table are read and checked before the
    /// machine is touched; an error after that (the machine's own state
    /// does not restore, or bytes follow it) leaves the machine in whatever
    /// state its `restore_from` left, and the applier must not be used
    /// further (the runtime stops the replica). Check the file first: the
    /// runtime installs only snapshots whose CRC checked out.
    pub fn install_from(&mut self, input: &mut dyn Read) -> Result<(), RestoreError> {
        let (head, table) = read_stream_head(self.session_cfg, input)?;
        self.machine.restore_from(input)?;
        expect_end(input)?;
        #[cfg(feature = "planted-bugs")]
        let table =
            if self.bugs.restore_without_sessions { SessionTable::new(self.session_cfg) } else { table };
        self.sessions = table;
        self.next = Slot(head.next);
        self.digest = head.digest;
        self.membership = head.membership;
        Ok(())
    }

    /// Answers a read outside the log from the state as applied so far
    /// ([`StateMachine::read`]); `None` if the machine serves none.
    pub fn read(&self, query: &[u8]) -> Option<Vec<u8>> {
        self.machine.read(query)
    }

    /// The state machine.
    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// The configuration the last applied stop sign started (restored with
    /// a snapshot); `None` if none was applied: configuration 0.
    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// The session table.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// The next slot to apply; every slot below it is applied.
    pub fn next_slot(&self) -> Slot {
        self.next
    }

    /// A running hash of every command applied and its answer: replicas that
    /// applied the same sequence have the same digest.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Counters.
    pub fn stats(&self) -> ApplierStats {
        self.stats
    }

    fn mix(&mut self, bytes: &[u8]) {
        self.digest = digest(self.digest, bytes);
    }
}

/// A frozen snapshot of an [`Applier`], from [`Applier::snapshot_source`]:
/// taken on the applying thread, written out on any thread.
pub struct AppliedSnapshot {
    upto: Slot,
    /// The header and the session table's image.
    head: Vec<u8>,
    machine: Box<dyn SnapshotSource>,
}

impl AppliedSnapshot {
    /// The applier's [`next_slot`](Applier::next_slot) when this was taken:
    /// every slot below it is in the snapshot, none from it on.
    pub fn upto(&self) -> Slot {
        self.upto
    }

    /// Writes the snapshot: exactly the bytes [`Applier::snapshot_to`] wrote
    /// when this was taken. `out` may be unbuffered; wrap a file in a
    /// `BufWriter`.
    pub fn write_to(self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&self.head)?;
        self.machine.write_to(out)?;
        out.flush()
    }
}

impl std::fmt::Debug for AppliedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppliedSnapshot")
            .field("upto", &self.upto)
            .field("head_bytes", &self.head.len())
            .finish()
    }
}

fn read_u64(input: &mut dyn Read) -> Result<u64, RestoreError> {
    let mut bytes = [0u8; 8];
    input.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` (and their length) into `hash`, eight bytes at a step.
/// Not cryptographic: it tells replicas that diverged apart, nothing more.
fn digest(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut step = |word: u64| {
        hash = (hash ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        hash ^= hash >> 29;
    };
    step(bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        step(u64::from_le_bytes(c.try_into().expect("eight bytes")));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    step(u64::from_le_bytes(tail));
    hash
}

/// Reads a snapshot stream's header and session table: (next slot, digest, table).
/// What a stream's header holds before the session table.
struct StreamHead {
    next: u64,
    digest: u64,
    membership: Option<Membership>,
}

/// The configuration a snapshot stream ([`Applier::snapshot_to`]) holds,
/// read from its header alone (`None`: configuration 0). A driver that
/// received a snapshot from a peer reads it before installing.
pub fn snapshot_membership(input: &mut dyn Read) -> Result<Option<Membership>, RestoreError> {
    read_head_start(input).map(|h| h.membership)
}

fn read_head_start(input: &mut dyn Read) -> Result<StreamHead, RestoreError> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if magic != STREAM_MAGIC {
        return Err(RestoreError::new("not an applier snapshot (bad magic)"));
    }
    let mut version = [0u8; 4];
    input.read_exact(&mut version)?;
    let version = u32::from_le_bytes(version);
    if version != STREAM_VERSION && version != 1 {
        return Err(RestoreError::new(format!(
            "snapshot format version {version}; this build reads versions 1 to {STREAM_VERSION}"
        )));
    }
    let next = read_u64(input)?;
    let digest = read_u64(input)?;
    let mut membership = None;
    if version >= 2 {
        let len = read_u64(input)?;
        let mut bytes = Vec::new();
        (&mut *input).take(len).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != len {
            return Err(RestoreError::new("truncated snapshot (in the configuration)"));
        }
        if len > 0 {
            membership = Some(
                Membership::decode(&bytes)
                    .map_err(|e| RestoreError::new(format!("the snapshot's configuration: {e}")))?,
            );
        }
    }
    Ok(StreamHead { next, digest, membership })
}

fn read_stream_head(
    sessions: SessionConfig,
    input: &mut dyn Read,
) -> Result<(StreamHead, SessionTable), RestoreError> {
    let head = read_head_start(input)?;
    let len = read_u64(input)?;
    // Read through `take`, so a garbage length allocates only what the input holds.
    let mut image = Vec::new();
    (&mut *input).take(len).read_to_end(&mut image)?;
    if image.len() as u64 != len {
        return Err(RestoreError::new("truncated snapshot (in the session table)"));
    }
    let table = SessionTable::restore(sessions, &image).map_err(|e| RestoreError::new(e.to_string()))?;
    Ok((head, table))
}

/// Fails if `input` holds anything more.
fn expect_end(input: &mut dyn Read) -> Result<(), RestoreError> {
    let mut probe = [0u8; 1];
    loop {
        match input.read(&mut probe) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(RestoreError::new("bytes follow the machine's state")),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}
