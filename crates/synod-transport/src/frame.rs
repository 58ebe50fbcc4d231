//! Frames: a 4-byte big-endian length, then that many bytes of payload, with a size limit.
//!
//! The decoder is the first thing hostile bytes meet, so it never panics and
//! never allocates more than the limit allows: a length above the limit is
//! refused before any payload is buffered.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The length prefix's size in bytes.
pub const HEADER_LEN: usize = 4;

/// Why a byte stream is not a sequence of valid frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length prefix announced more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// How many bytes of the unfinished frame had arrived.
        buffered: usize,
    },
}

/// Splits a byte stream into frames of at most `max_len` payload bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_len: usize,
}

impl FrameDecoder {
    /// A decoder that refuses payloads longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder { max_len }
    }

    /// The largest payload this decoder accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Takes the next whole frame's payload off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds no whole frame yet (and leaves it
    /// untouched), and an error as soon as a length prefix exceeds the limit.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = self.pending_len(buf)? else { return Ok(None) };
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }

    /// The payload length of the frame at the front of `buf`, once its prefix has arrived.
    ///
    /// Readers use it to reserve room for a large frame in one allocation.
    pub fn pending_len(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.get(..HEADER_LEN) else { return Ok(None) };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_len {
            return Err(FrameError::TooLarge { len, limit: self.max_len });
        }
        Ok(Some(len))
    }

    /// Checks what is left when the stream ends: nothing, or a truncated frame.
    pub fn finish(&self, buf: &BytesMut) -> Result<(), FrameError> {
        if buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated { buffered: buf.len() })
        }
    }
}

/// Appends one frame (prefix and payload) to `dst`.
///
/// # Panics
///
/// If `payload` is longer than `u32::MAX`; senders check the (much smaller)
/// frame limit before queueing, so this is an internal invariant.
pub fn encode(payload: &[u8], dst: &mut BytesMut) {
    let len = u32::try_from(payload.len()).expect("frame length checked against the limit");
    dst.reserve(HEADER_LEN + payload.len());
    dst.put_u32(len);
    dst.put_slice(payload);
}

/// The length prefix for a payload of `len` bytes (which must fit in a `u32`).
pub(crate) fn header(len: usize) -> [u8; HEADER_LEN] {
    u32::try_from(len).expect("frame length checked against the limit").to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_frame_round_trips_and_partial_input_waits() {
        let mut buf = BytesMut::new();
        encode(b"hello", &mut buf);
        encode(b"", &mut buf);
        let d = FrameDecoder::new(16);
        let mut partial = BytesMut::from(&buf[..6]);
        assert_eq!(d.decode(&mut partial), Ok(None));
        assert_eq!(partial.len(), 6);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap(), &b"hello"[..]);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap(), &b""[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(d.finish(&buf), Ok(()));
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_its_payload_arrives() {
        let mut buf = BytesMut::from(&[0, 0, 0, 17][..]);
        let d = FrameDecoder::new(16);
        assert_eq!(d.decode(&mut buf), Err(FrameError::TooLarge { len: 17, limit: 16 }));
        let mut garbage = BytesMut::from(&[0xff; 3][..]);
        assert_eq!(d.decode(&mut garbage), Ok(None));
        assert_eq!(d.finish(&garbage), Err(FrameError::Truncated { buffered: 3 }));
    }

    proptest! {
        #[test]
        fn frames_survive_any_split(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..20), cut in 1usize..64) {
            let mut wire = BytesMut::new();
            for p in &payloads {
                encode(p, &mut wire);
            }
            let d = FrameDecoder::new(300);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in wire.chunks(cut) {
                buf.extend_from_slice(chunk);
                while let Some(f) = d.decode(&mut buf).unwrap() {
                    out.push(f.to_vec());
                }
            }
            prop_assert_eq!(d.finish(&buf), Ok(()));
            prop_assert_eq!(out, payloads);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let d = FrameDecoder::new(64);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(f)) = d.decode(&mut buf) {
                prop_assert!(f.len() <= 64);
            }
        }
    }
}
