//! synod-log: the durable write-ahead log of a synod replica.
//!
//! Paxos is only as safe as an acceptor's memory: a replica answers Promise
//! or Accepted only after the fact is on disk. This crate keeps those facts
//! as a segmented write-ahead log of [`synod_wire::LogRecord`]s:
//!
//! * **Format** (described in `src/format.rs`): preallocated segment files;
//!   every record length-prefixed and CRC32C-checked, tagged with the number
//!   of the write (batch) it belongs to.
//! * **Group commit** ([`GroupCommit`], [`Appender`]): a dedicated thread
//!   drains everything queued, writes it with one write call, issues one
//!   fdatasync and reports every token that write covered, in submission
//!   order. A failed write or fsync is fatal: it is reported once and the
//!   log refuses everything after it.
//! * **Recovery** ([`Wal::open`], [`Recovery`]): every segment and record is
//!   validated; a torn tail is cut off and reported; corruption anywhere
//!   else is an [`OpenError::Corrupt`] naming the file and byte offset.
//! * **Truncation and catch-up**: [`Wal::truncate_prefix`] drops whole
//!   segments below a snapshot; [`Reader::entries`] reads the accepted and
//!   learned values of a slot range.
//! * **Inspection**: [`inspect`] reports each segment's records, slot range
//!   and any damage, changing nothing.
//! * **File access** goes through the narrow [`Fs`] trait: [`RealFs`] uses
//!   `std::fs`; [`FaultyFs`] (always compiled, in memory) loses unsynced
//!   writes, tears the last write and fails fsync on demand, for tests.
//!
//! ```
//! use synod_log::{FaultyFs, GroupCommit, LogEvent, Options, Wal};
//! use synod_wire::{Ballot, LogRecord, NodeId, Slot, Value};
//!
//! let fs = FaultyFs::new();
//! let options = Options::new().fs(fs.clone()).segment_size(64 << 10);
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
mod faulty;
mod format;
mod fs;
mod group;
mod recover;
mod wal;

pub use error::{AppendError, FatalError, InspectError, OpenError, ReadError, WriteError};
pub use faulty::{Crash, FaultyFs};
pub use fs::{Fs, FsFile, RealFs};
pub use group::{Appender, GroupCommit, InlineAppend, LogEvent};
pub use recover::{inspect, inspect_with, Inspection, Problem, RecordCounts, SegmentReport, TornTail};
pub use wal::{Options, Reader, Recovery, Wal, MIN_SEGMENT_SIZE};
