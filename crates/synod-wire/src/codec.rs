//! The codec: rkyv 0.8 with validation and a frame size limit.
//!
//! Every decode validates the archive before touching it (after copying the
//! input into an aligned buffer when it is not aligned already), so a
//! hostile or damaged byte string yields a [`DecodeError`], never a panic or
//! an out-of-bounds read. [`with_archived`] reads a value in place, without
//! deserializing it: the hot paths use it to skip an allocation per field.

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Portable};

use crate::{Batch, ClientFrame, ClientReply, KvCommand, KvResponse, LogRecord, Membership, Message};

/// The largest encoded value accepted, in bytes: 16 MiB.
///
/// Both directions check it, so a replica never sends what a peer would refuse.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is longer than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The input's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The input is not a valid archive of the expected type.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The type that was expected.
        what: &'static str,
        /// rkyv's account of the problem.
        reason: String,
    },
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoding is longer than [`MAX_FRAME_LEN`].
    #[error("encoded {what} of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The type being encoded.
        what: &'static str,
        /// The encoding's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// rkyv refused the value.
    #[error("cannot encode {what}: {reason}")]
    Serialize {
        /// The type being encoded.
        what: &'static str,
        /// rkyv's account of the problem.
        reason: String,
    },
}

/// A type that travels on the wire or lands in the log.
pub trait Wire: Sized {
    /// What the type is called in errors.
    const WHAT: &'static str;

    /// Encodes `self` into at most [`MAX_FRAME_LEN`] bytes.
    fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.encode_with_capacity(256)
    }

    /// Encodes like [`Wire::encode`], into a buffer that starts with room
    /// for `capacity` bytes: a caller that knows about how large the
    /// encoding is (a batch of known commands) saves the buffer's regrowth.
    fn encode_with_capacity(&self, capacity: usize) -> Result<Vec<u8>, EncodeError>;

    /// Decodes a value from `bytes`, validating every byte first.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// The alignment rkyv's archives of our types need at most.
const ALIGN: usize = 16;

/// Runs `f` on `bytes` validated as an archived `T`, read in place when
/// `bytes` is aligned (a `Vec<u8>` from the allocator is) and from an
/// aligned copy otherwise.
fn checked<T, R>(bytes: &[u8], what: &'static str, f: impl FnOnce(&T) -> R) -> Result<R, DecodeError>
where
    T: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    if bytes.len() > MAX_FRAME_LEN {
        return Err(DecodeError::TooLarge { len: bytes.len(), limit: MAX_FRAME_LEN });
    }
    let invalid = |e: rancor::Error| DecodeError::Invalid { what, reason: e.to_string() };
    if (bytes.as_ptr() as usize) % ALIGN == 0 {
        return rkyv::access::<T, rancor::Error>(bytes).map(f).map_err(invalid);
    }
    let mut aligned = AlignedVec::<ALIGN>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::access::<T, rancor::Error>(&aligned).map(f).map_err(invalid)
}

/// Validates `bytes` as an encoded `T` and runs `f` on the archived value in
/// place, without deserializing it.
///
/// ```
/// use synod_wire::{with_archived, KvCommand, Wire};
///
/// let bytes = KvCommand::Get { key: b"k".to_vec() }.encode().unwrap();
/// let key_len = with_archived::<KvCommand, _>(&bytes, |c| match c {
///     synod_wire::ArchivedKvCommand::Get { key } => key.len(),
///     _ => 0,
/// });
/// assert_eq!(key_len, Ok(1));
/// ```
pub fn with_archived<T, R>(bytes: &[u8], f: impl FnOnce(&T::Archived) -> R) -> Result<R, DecodeError>
where
    T: Wire + Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    checked::<T::Archived, R>(bytes, T::WHAT, f)
}

macro_rules! impl_wire {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl Wire for $ty {
            const WHAT: &'static str = $what;

            fn encode_with_capacity(&self, capacity: usize) -> Result<Vec<u8>, EncodeError> {
                // Straight into a `Vec`: an aligned buffer would cost a copy at the end.
                let buffer = Vec::with_capacity(capacity.min(MAX_FRAME_LEN));
                let bytes = rkyv::api::high::to_bytes_in::<_, rancor::Error>(self, buffer)
                    .map_err(|e| EncodeError::Serialize { what: $what, reason: e.to_string() })?;
                if bytes.len() > MAX_FRAME_LEN {
                    return Err(EncodeError::TooLarge {
                        what: $what,
                        len: bytes.len(),
                        limit: MAX_FRAME_LEN,
                    });
                }
                Ok(bytes)
            }

            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                checked::<<$ty as Archive>::Archived, _>(bytes, $what, |archived| {
                    rkyv::deserialize::<$ty, rancor::Error>(archived)
                })?
                .map_err(|e| DecodeError::Invalid { what: $what, reason: e.to_string() })
            }
        }
    )*};
}

impl_wire! {
    Message => "message",
    ClientFrame => "client frame",
    ClientReply => "client reply",
    Batch => "batch",
    LogRecord => "log record",
    KvCommand => "key-value command",
    KvResponse => "key-value response",
    Membership => "configuration",
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        AdminQuery, AdminRequest, Ballot, ClientId, ClientRequest, Command, NodeId, Outcome, ReplicaStatus,
        Role, Seq, Slot, Value,
    };

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert!(matches!(Message::decode(&big), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn oversized_value_is_refused_when_encoding() {
        let record = LogRecord::Accept {
            slot: Slot(1),
            ballot: Ballot::new(1, NodeId(1)),
            value: Value::Batch(vec![7; MAX_FRAME_LEN].into()),
        };
        assert!(matches!(record.encode(), Err(EncodeError::TooLarge { .. })));
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(Message::decode(&[]).is_err());
        assert!(LogRecord::decode(&[]).is_err());
    }

    #[test]
    fn a_request_round_trips() {
        let req = ClientFrame::Request(ClientRequest {
            id: 9,
            command: Command::Op {
                client: ClientId(4),
                seq: Seq(2),
                ack: Seq(1),
                payload: b"put k v".to_vec(),
            },
        });
        let bytes = req.encode().unwrap();
        assert_eq!(ClientFrame::decode(&bytes).unwrap(), req);
        let reply = ClientReply { id: 9, outcome: Outcome::Redirect { leader: Some(NodeId(2)) } };
        assert_eq!(ClientReply::decode(&reply.encode().unwrap()).unwrap(), reply);
    }

    #[test]
    fn a_status_query_and_its_answer_round_trip() {
        let query = ClientFrame::Admin(AdminRequest { id: 3, query: AdminQuery::Status });
        assert_eq!(ClientFrame::decode(&query.encode().unwrap()).unwrap(), query);
        let status = ReplicaStatus {
            id: NodeId(2),
            role: Role::Follower,
            leader: Some(NodeId(1)),
            ballot: Ballot::new(4, NodeId(1)),
            commit: Slot(10),
            applied: Slot(9),
            digest: u64::MAX - 5,
            members: vec![NodeId(1), NodeId(2), NodeId(3)],
            epoch: 2,
            learners: vec![NodeId(3)],
            removed: false,
            peers_reachable: vec![NodeId(1)],
            sessions: 2,
            log_bytes: 1 << 40,
            uptime_ms: 1234,
            snapshot: Slot(8),
            rejoining: false,
        };
        let reply = ClientReply { id: 3, outcome: Outcome::Status(status) };
        assert_eq!(ClientReply::decode(&reply.encode().unwrap()).unwrap(), reply);
        // A truncated answer is an error, not a panic.
        let bytes = reply.encode().unwrap();
        for cut in 0..bytes.len() {
            let _ = ClientReply::decode(&bytes[..cut]);
        }
    }
}
