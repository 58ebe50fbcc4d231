//! synod-session: the client session table, part of the replicated state.
//!
//! After the Raft dissertation (§6.3) and TigerBeetle's client sessions: a
//! client registers through the log and numbers its requests; the table
//! applies each (client, seq) at most once and hands a retry the answer the
//! first attempt got. Everything here is decided by the log alone: sessions
//! expire by the leader timestamps batches carry, never by a local clock,
//! and a full table evicts the least recently active session, ties broken
//! by id, so every replica evicts the same one.
//!
//! ```
//! use synod_session::{Begin, SessionConfig, SessionTable};
//! use synod_wire::{ClientId, Seq};
//!
//! let mut table = SessionTable::new(SessionConfig::default());
//! let c = ClientId(7);
//! table.register(c, 1_000);
//! assert_eq!(table.begin(c, Seq(1), Seq(0)), Ok(Begin::Apply));
//! table.complete(c, Seq(1), b"ok".to_vec());
//! // A retry gets the first answer instead of applying twice.
//! assert_eq!(table.begin(c, Seq(1), Seq(0)), Ok(Begin::Duplicate(b"ok".to_vec())));
//! ```
#![warn(missing_docs)]

mod table;

pub use table::{Begin, RestoreError, SessionConfig, SessionError, SessionStats, SessionTable};
