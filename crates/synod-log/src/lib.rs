//! synod-log: the durable write-ahead log of a synod replica.
//!
//! Paxos is only as safe as an acceptor's memory: a replica answers Promise
//! or Accepted only after the fact is on disk. The log itself is
//! [`synod_wal`], re-exported here: segmented, CRC32C-checked records,
//! recovery that cuts a torn tail and refuses corruption ([`Wal::open`],
//! [`Recovery`], [`OpenError::Corrupt`]), prefix truncation, catch-up reads,
//! [`inspect`], and file access through the [`Fs`] trait ([`RealFs`], and
//! [`FaultyFs`] for tests). synod-wal starts no threads and reads no clocks,
//! so the simulator can drive it deterministically. This crate adds what
//! needs them:
//!
//! * **Group commit** ([`GroupCommit`], [`Appender`]): a dedicated thread
//!   drains everything queued, writes it with one write call, issues one
//!   fdatasync and reports the last token that write covered (which covers
//!   every earlier one): one report per write. A failed write or fsync is
//!   fatal: it is reported once and the log refuses everything after it.
//!   The log thread owns the [`Wal`]: no append is written or synced on
//!   the caller's thread.
//! * **Background preallocation** ([`ThreadPreallocate`]): the next segment
//!   is zero-filled and synced on a helper thread while the active one fills.
//!
//! ```
//! use synod_log::{FaultyFs, GroupCommit, LogEvent, Options, ThreadPreallocate, Wal};
//! use synod_wire::{Ballot, LogRecord, NodeId, Slot, Value};
//!
//! let fs = FaultyFs::new();
//! let options = Options::new().fs(fs.clone()).segment_size(64 << 10).preallocate(ThreadPreallocate);
//! let (wal, recovery) = Wal::open("/log", options.clone()).unwrap();
//! assert!(recovery.records.is_empty());
//!
//! let (events, durable) = crossbeam_channel::unbounded();
//! let (log, appender) = GroupCommit::spawn(wal, move |event| drop(events.send(event)));
//! let accept = LogRecord::Accept { slot: Slot(0), ballot: Ballot::new(1, NodeId(1)), value: Value::Noop };
//! appender.append(vec![accept.clone()], 7).unwrap();
//! assert!(matches!(durable.recv().unwrap(), LogEvent::Durable(7)));
//! drop(log.shutdown());
//!
//! // Power fails; what was reported durable survives.
//! fs.crash(synod_log::Crash::LoseUnsynced);
//! let (_wal, recovery) = Wal::open("/log", options).unwrap();
//! assert_eq!(recovery.records, vec![accept]);
//! ```
#![warn(missing_docs)]

mod error;
mod group;
mod prealloc;

pub use error::AppendError;
pub use group::{Appender, GroupCommit, LogEvent};
pub use prealloc::ThreadPreallocate;
pub use synod_wal::*;
