//! The codec: rkyv 0.8 with validation and a frame size limit.
//!
//! Every decode copies its input into an aligned buffer and validates the
//! archive before touching it, so a hostile or damaged byte string yields a
//! [`DecodeError`], never a panic or an out-of-bounds read.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::{Batch, ClientReply, ClientRequest, KvCommand, KvResponse, LogRecord, Message};

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
    /// Encodes `self` into at most [`MAX_FRAME_LEN`] bytes.
    fn encode(&self) -> Result<Vec<u8>, EncodeError>;

    /// Decodes a value from `bytes`, validating every byte first.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

macro_rules! impl_wire {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl Wire for $ty {
            fn encode(&self) -> Result<Vec<u8>, EncodeError> {
                let bytes = rkyv::to_bytes::<rancor::Error>(self).map_err(|e| {
                    EncodeError::Serialize { what: $what, reason: e.to_string() }
                })?;
                if bytes.len() > MAX_FRAME_LEN {
                    return Err(EncodeError::TooLarge {
                        what: $what,
                        len: bytes.len(),
                        limit: MAX_FRAME_LEN,
                    });
                }
                Ok(bytes.into_vec())
            }

            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                if bytes.len() > MAX_FRAME_LEN {
                    return Err(DecodeError::TooLarge { len: bytes.len(), limit: MAX_FRAME_LEN });
                }
                // rkyv reads archives in place and needs them aligned; a
                // network or disk buffer may not be.
                let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
                aligned.extend_from_slice(bytes);
                rkyv::from_bytes::<$ty, rancor::Error>(&aligned).map_err(|e| {
                    DecodeError::Invalid { what: $what, reason: e.to_string() }
                })
            }
        }
    )*};
}

impl_wire! {
    Message => "message",
    ClientRequest => "client request",
    ClientReply => "client reply",
    Batch => "batch",
    LogRecord => "log record",
    KvCommand => "key-value command",
    KvResponse => "key-value response",
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ballot, ClientId, Command, NodeId, Outcome, Seq, Slot, Value};

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
            value: Value::Batch(vec![7; MAX_FRAME_LEN]),
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
        let req = ClientRequest {
            id: 9,
            command: Command::Op {
                client: ClientId(4),
                seq: Seq(2),
                ack: Seq(1),
                payload: b"put k v".to_vec(),
            },
        };
        let bytes = req.encode().unwrap();
        assert_eq!(ClientRequest::decode(&bytes).unwrap(), req);
        let reply = ClientReply { id: 9, outcome: Outcome::Redirect { leader: Some(NodeId(2)) } };
        assert_eq!(ClientReply::decode(&reply.encode().unwrap()).unwrap(), reply);
    }
}
