//! synod-state-machine: what a replicated state machine is, and how committed log slots reach it.
//!
//! Implement [`StateMachine`] for your type; the [`Applier`] feeds it the
//! committed batches in log order, through the client session table, so
//! each client request takes effect at most once and a retry gets the
//! first answer. [`conformance::check`] tells whether an implementation
//! keeps the contract (determinism, snapshot and restore).
//!
//! ```
//! use synod_state_machine::{Applier, RestoreError, StateMachine};
//! use synod_session::SessionConfig;
//! use synod_wire::{Batch, Command, Outcome, Slot, Value, Wire};
//!
//! /// Counts the bytes of every command.
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! impl StateMachine for Counter {
//!     fn apply(&mut self, command: &[u8]) -> Vec<u8> {
//!         self.0 += command.len() as u64;
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn snapshot(&self) -> Vec<u8> {
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
//!         let bytes: [u8; 8] = snapshot.try_into().map_err(|_| RestoreError::new("want 8 bytes"))?;
//!         self.0 = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! let mut applier = Applier::new(Counter::default(), SessionConfig::default());
//! let batch = Batch { timestamp_ms: 1, commands: vec![Command::Register { nonce: 42 }] };
//! let replies = applier.apply(Slot(0), &Value::Batch(batch.encode().unwrap().into())).unwrap();
//! assert!(matches!(replies[0].outcome, Outcome::Registered { .. }));
//! ```
#![warn(missing_docs)]

mod applier;
pub mod conformance;

pub use applier::{snapshot_membership, AppliedSnapshot, Applier, ApplierStats, ApplyError, Origin, Reply};
pub use synod_session::SessionConfig;

/// The wire types a state machine meets: re-exported so that a state machine
/// depends on this crate alone.
pub mod wire {
    pub use synod_wire::*;
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot restore snapshot: {reason}")]
pub struct RestoreError {
    reason: String,
}

impl RestoreError {
    /// An error with a reason for the operator.
    pub fn new(reason: impl Into<String>) -> RestoreError {
        RestoreError { reason: reason.into() }
    }
}

impl From<std::io::Error> for RestoreError {
    /// A failed read: a snapshot that ends early reads as "truncated".
    fn from(e: std::io::Error) -> RestoreError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            RestoreError::new("truncated snapshot")
        } else {
            RestoreError::new(format!("reading the snapshot: {e}"))
        }
    }
}

/// A deterministic state machine that synod replicates.
///
/// The contract, checked by [`conformance::check`]:
/// * `apply` is a function of the state and the command alone: no clocks,
///   no randomness, no IO, no iteration over unordered maps. Every replica
///   applies the same commands in the same order and must reach the same
///   state and give the same answers.
/// * `apply` never panics on a malformed command: it answers with an error
///   of its own encoding, the same on every replica.
/// * `restore(snapshot())` yields a machine that behaves exactly like the original,
///   and so does `restore_from` of what `snapshot_to` wrote.
///
/// Snapshots come in two forms. [`snapshot`](StateMachine::snapshot) and
/// [`restore`](StateMachine::restore) hold the whole state in one `Vec<u8>`
/// and are all a machine must write. The streaming form,
/// [`snapshot_to`](StateMachine::snapshot_to) and
/// [`restore_from`](StateMachine::restore_from), is the one the runtime will
/// use ([`Applier::snapshot_to`], decision 0005): its defaults go through
/// `snapshot` and `restore`, and a machine with a large state overrides both
/// so that its state is never one buffer. Either form stays pure: it reads
/// and writes the stream it is given, and opens no files and starts no threads.
///
/// # Snapshots that do not stall applies
///
/// [`snapshot_source`](StateMachine::snapshot_source) takes a frozen view of
/// the state, a [`SnapshotSource`], on the thread that applies; the view is
/// then written out on any other thread while that one goes on applying
/// commands, and writes exactly the bytes `snapshot_to` would have written
/// when the view was taken. The default copies the whole state
/// (`snapshot_to` into a `Vec<u8>`) on the applying thread: correct for any
/// machine but slow for a large one, which overrides it with a cheap frozen
/// view (e.g. shared, copy-on-write structures, as `synod-kv` does).
/// [`Applier::snapshot_source`] wraps it with the session table and position.
pub trait StateMachine {
    /// Applies one command and returns the answer for the client.
    fn apply(&mut self, command: &[u8]) -> Vec<u8>;

    /// Answers a query without changing anything: a read served outside
    /// the log (ReadIndex, follower and stale reads; docs/OPERATIONS.md,
    /// "Reads"). It must answer exactly as applying the same query as a
    /// command would, and change nothing. `None` (the default): this
    /// machine serves no reads outside the log, and such a read is answered
    /// with an error; its clients read through the log instead.
    fn read(&self, query: &[u8]) -> Option<Vec<u8>> {
        let _ = query;
        None
    }

    /// Whether [`StateMachine::read`] is quick: a lookup of microseconds that
    /// never blocks. A replica then serves a read on the thread that got its
    /// read index (a network thread), when nothing is being applied at that
    /// moment, instead of handing it to the apply thread: one thread wake-up
    /// less per read. `false` (the default) keeps every read on the apply
    /// thread, where a slow one delays applies but never the network.
    fn quick_reads(&self) -> bool {
        false
    }

    /// The whole state as bytes.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError>;

    /// Writes the whole state to `out`, the streaming form of
    /// [`snapshot`](StateMachine::snapshot). Equal states must write equal
    /// bytes. `out` may be unbuffered: write in pieces of a useful size.
    ///
    /// The default writes `snapshot()`.
    fn snapshot_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.snapshot())
    }

    /// Replaces the state with one [`snapshot_to`](StateMachine::snapshot_to)
    /// wrote, read from `input`. Bad bytes (truncated, corrupted, another
    /// format) are a [`RestoreError`], never a panic. After an error the
    /// machine is discarded, so its state then does not matter.
    ///
    /// `input` holds this machine's state and nothing after it; a machine
    /// that knows where its state ends need not read to the end of it (the
    /// [`Applier`] checks that nothing follows).
    ///
    /// The default reads `input` to its end and calls `restore`.
    fn restore_from(&mut self, input: &mut dyn std::io::Read) -> Result<(), RestoreError> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes)?;
        self.restore(&bytes)
    }

    /// A frozen copy of the state as it is now, to be written out later, on
    /// any thread, while this machine goes on applying: its
    /// [`write_to`](SnapshotSource::write_to) writes exactly the bytes
    /// [`snapshot_to`](StateMachine::snapshot_to) writes now.
    ///
    /// The default is the slow one: it runs `snapshot_to` into a `Vec<u8>`
    /// here and now, a full copy of the state on the calling (applying)
    /// thread, and the source writes those bytes. A machine with a large
    /// state overrides it with a view that costs little to take, e.g. over
    /// shared copy-on-write structures; the writing (sorting, encoding) then
    /// happens in `write_to`, off the applying thread.
    ///
    /// # Panics
    ///
    /// The default panics if `snapshot_to` fails writing into memory, which
    /// only a broken machine does.
    fn snapshot_source(&self) -> Box<dyn SnapshotSource> {
        let mut bytes = Vec::new();
        self.snapshot_to(&mut bytes).expect("snapshot_to into a Vec<u8> failed");
        Box::new(SnapshotBytes(bytes))
    }
}

/// A frozen copy of a state machine's state at one point, written out later, on any thread.
///
/// Made by [`StateMachine::snapshot_source`]. Taking it must not be changed
/// by what the machine applies afterwards: it owns (or shares immutably)
/// everything it writes.
pub trait SnapshotSource: Send + 'static {
    /// Writes the state, in exactly the bytes `StateMachine::snapshot_to` would have written at the moment the source was taken.
    fn write_to(self: Box<Self>, out: &mut dyn std::io::Write) -> std::io::Result<()>;
}

/// The source of the default [`StateMachine::snapshot_source`]: the bytes,
/// copied when it was taken.
#[derive(Debug)]
struct SnapshotBytes(Vec<u8>);

impl SnapshotSource for SnapshotBytes {
    fn write_to(self: Box<Self>, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.0)
    }
}

/// Deliberately broken behaviours for the simulator's self-tests
/// ([`Applier::with_bugs`]); all off by default.
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PlantedBugs {
    /// [`Applier::install_from`] restores the machine's state but leaves the
    /// session table empty: clients' retries of commands the snapshot holds
    /// apply again, or are refused, on that replica alone.
    pub restore_without_sessions: bool,
}
