//! synod-wire: the identifiers, messages and log records every synod crate shares.
//!
//! This crate is PURE: no IO, no clock, no threads. It defines
//!
//! * the identifiers ([`NodeId`], [`Ballot`], [`Slot`], [`ClientId`], [`Seq`]);
//! * the Multi-Paxos messages replicas exchange ([`Message`]);
//! * what clients send and receive ([`ClientFrame`], [`ClientReply`]): commands
//!   for the log ([`ClientRequest`]) and questions for one replica
//!   ([`AdminRequest`], answered with a [`ReplicaStatus`]), and the batches of
//!   commands the log orders ([`Batch`], [`Command`]);
//! * the records of the write-ahead log ([`LogRecord`]);
//! * one codec for all of them ([`Wire`]): rkyv 0.8 with validation, so that
//!   decoding any byte string either yields a value or a [`DecodeError`], and
//!   never panics.
//!
//! ```
//! use synod_wire::{Ballot, Message, NodeId, Slot, Wire};
//!
//! let msg = Message::Prepare { ballot: Ballot::new(3, NodeId(1)), first_unchosen: Slot(7) };
//! let bytes = msg.encode().unwrap();
//! assert_eq!(Message::decode(&bytes).unwrap(), msg);
//! assert!(Message::decode(&bytes[..bytes.len() / 2]).is_err());
//! ```
#![warn(missing_docs)]

mod client;
mod codec;
mod ids;
mod kv;
mod member;
mod message;
mod record;

pub use client::{
    AdminQuery, AdminRequest, ArchivedBatch, ArchivedCommand, Batch, ChangeRequest, ClientFrame, ClientReply,
    ClientRequest, Command, MemberInfo, MembersView, Outcome, ReadMode, ReadRequest, ReplicaStatus, Role,
};
pub use codec::{with_archived, DecodeError, EncodeError, Wire, MAX_FRAME_LEN};
pub use ids::{Ballot, ClientId, NodeId, Seq, Slot};
pub use kv::{ArchivedKvCommand, ArchivedKvResponse, KvCommand, KvFailure, KvPair, KvResponse, SetCondition};
pub use member::{ChangeError, Member, MemberChange, MemberRole, Membership};
pub use message::{ChosenEntry, Message, PromiseEntry, Status, Value};
pub use record::LogRecord;
