//! synod-wal: synod's write-ahead log without threads, clocks or channels.
//!
//! Paxos is only as safe as an acceptor's memory: a replica answers Promise
//! or Accepted only after the fact is on disk. This crate keeps those facts
//! as a segmented write-ahead log of [`synod_wire::LogRecord`]s, driven by
//! its caller's thread. synod-log re-exports it and adds what needs threads
//! (group commit, background segment preallocation); the simulator drives
//! it directly over [`FaultyFs`], where it is deterministic.
//!
//! * **Format** (described in `src/format.rs`): preallocated segment files;
//!   every record length-prefixed and CRC32C-checked, tagged with the number
//!   of the write (batch) it belongs to.
//! * **Writes** ([`Wal::append`], [`Wal::write_batch`], [`Wal::sync`]): each
//!   append is one write of one batch; a sync is one fdatasync covering every
//!   write so far. A failed write or fsync is fatal: the log refuses
//!   everything after it.
//! * **Recovery** ([`Wal::open`], [`Recovery`]): every segment and record is
//!   validated; a torn tail is cut off and reported; corruption anywhere
//!   else is an [`OpenError::Corrupt`] naming the file and byte offset.
//! * **Truncation and catch-up**: [`Wal::truncate_prefix`] drops whole
//!   segments below a snapshot; [`Reader::entries`] reads the accepted and
//!   learned values of a slot range.
//! * **Inspection**: [`inspect`] reports each segment's records, slot range
//!   and any damage, changing nothing.
//! * **Snapshots** ([`SnapshotWriter`], [`newest_snapshot`],
//!   [`SnapshotReader`], [`inspect_snapshot`]): a versioned, CRC32C-checked
//!   file per snapshot, streamed in, made durable by fsync, rename and
//!   directory fsync; not used by the replica yet.
//! * **File access** goes through the narrow [`Fs`] trait: [`RealFs`] uses
//!   `std::fs`; [`FaultyFs`] (always compiled, in memory) loses unsynced
//!   writes, tears the last write and fails fsync on demand.
//!
//! ```
//! use synod_wal::{Crash, FaultyFs, Options, Wal};
//! use synod_wire::{Ballot, LogRecord, NodeId, Slot, Value};
//!
//! let fs = FaultyFs::new();
//! let options = Options::new().fs(fs.clone()).segment_size(64 << 10);
//! let (mut wal, recovery) = Wal::open("/log", options.clone()).unwrap();
//! assert!(recovery.records.is_empty());
//!
//! let accept = |slot| LogRecord::Accept { slot: Slot(slot), ballot: Ballot::new(1, NodeId(1)), value: Value::Noop };
//! wal.append(&[accept(0)]).unwrap();
//! wal.sync().unwrap();
//! wal.append(&[accept(1)]).unwrap();
//!
//! // Power fails before the second write is synced: only the first survives.
//! drop(wal);
//! fs.crash(Crash::LoseUnsynced);
//! let (_wal, recovery) = Wal::open("/log", options).unwrap();
//! assert_eq!(recovery.records, vec![accept(0)]);
//! ```
#![warn(missing_docs)]

mod error;
mod faulty;
mod format;
mod fs;
mod recover;
mod snapshot;
mod wal;

pub use error::{FatalError, InspectError, OpenError, ReadError, WriteError};
pub use faulty::{Crash, FaultyFs};
pub use fs::{Fs, FsFile, RealFs};
pub use recover::{inspect, inspect_with, Inspection, Problem, RecordCounts, SegmentReport, TornTail};
pub use snapshot::{
    inspect_snapshot, inspect_snapshot_with, newest_snapshot, newest_snapshot_with, read_snapshot_chunk,
    remove_partial_snapshots, snapshot_file_name, SnapshotChunk, SnapshotDamage, SnapshotError, SnapshotFile,
    SnapshotInfo, SnapshotReader, SnapshotReceiver, SnapshotStore, SnapshotWriter, SNAPSHOT_HEADER_LEN,
    SNAPSHOT_MAGIC, SNAPSHOT_TRAILER_LEN, SNAPSHOT_VERSION,
};
pub use wal::{Options, Preallocate, Prepared, Reader, Recovery, SegmentJob, Spare, Wal, MIN_SEGMENT_SIZE};
