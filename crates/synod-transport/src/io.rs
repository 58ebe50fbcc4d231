//! Stream plumbing shared by replicas and clients: stream headers, the frame reader, the batching writer.
//!
//! Every stream starts with a header saying what it carries:
//!
//! ```text
//! peer stream (unidirectional):   kind (1 = consensus, 2 = bulk) | claimed node id, u32 big-endian
//! client stream (bidirectional):  kind (3 = client)
//! ```
//!
//! then a sequence of frames ([`crate::frame`]).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use synod_wire::NodeId;

use crate::frame::{FrameDecoder, FrameError, HEADER_LEN};
use crate::queue::{coalesce, Outbox};
use crate::stats::Stats;

/// Stream kinds, the first byte of every stream.
pub(crate) const KIND_CONSENSUS: u8 = 1;
pub(crate) const KIND_BULK: u8 = 2;
pub(crate) const KIND_CLIENT: u8 = 3;

/// Application error codes on streams and connections.
pub(crate) mod code {
    use quinn::VarInt;
    /// Graceful shutdown.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// A malformed or oversized frame or stream header.
    pub const BAD_FRAME: VarInt = VarInt::from_u32(1);
    /// The peer's identity is refused (not in the address book, wrong claim, wrong role).
    pub const IDENTITY: VarInt = VarInt::from_u32(2);
    /// A newer connection to the same peer replaced this one.
    pub const REPLACED: VarInt = VarInt::from_u32(3);
    /// The client identity has `max_connections_per_client` connections open already.
    pub const LIMIT: VarInt = VarInt::from_u32(4);
    /// A client connection kept no request stream open for `streamless_timeout`.
    pub const NO_STREAM: VarInt = VarInt::from_u32(5);
    /// A client frame did not arrive whole within `frame_timeout` (a stream code).
    pub const FRAME_TIMEOUT: VarInt = VarInt::from_u32(6);
    /// The replica closed the client stream (after a malformed request); a stream code.
    pub const CLOSED: VarInt = VarInt::from_u32(7);
}

/// The header of a peer stream: its kind and the node id its sender claims.
pub(crate) fn peer_header(kind: u8, id: NodeId) -> [u8; 5] {
    let [a, b, c, d] = id.0.to_be_bytes();
    [kind, a, b, c, d]
}

/// Why a stream of frames ended badly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadFail {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Stream(#[from] quinn::ReadError),
    /// A frame begun did not arrive whole within the reader's frame timeout.
    #[error("a frame ({buffered} bytes of it so far) did not arrive whole within {limit:?}")]
    Slow { buffered: usize, limit: std::time::Duration },
}

/// Reads frames off a QUIC receive stream.
#[derive(Debug)]
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    /// How long a frame may take from its first byte to its last (`None`: forever).
    frame_timeout: Option<std::time::Duration>,
    /// When the unfinished frame at the front of `buf` began to arrive.
    partial_since: Option<tokio::time::Instant>,
}

const READ_CHUNK: usize = 64 << 10;

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream, max_len: usize) -> FrameReader {
        FrameReader {
            recv,
            buf: BytesMut::with_capacity(READ_CHUNK),
            decoder: FrameDecoder::new(max_len),
            frame_timeout: None,
            partial_since: None,
        }
    }

    /// Fails [`FrameReader::next`] with [`ReadFail::Slow`] when a frame takes
    /// longer than `limit` from its first byte to its last.
    pub(crate) fn with_frame_timeout(mut self, limit: std::time::Duration) -> FrameReader {
        self.frame_timeout = Some(limit);
        self
    }

    /// The next frame; `Ok(None)` when the sender finished the stream cleanly.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, ReadFail> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                // The next frame's clock starts with its first byte.
                self.partial_since = (!self.buf.is_empty()).then(tokio::time::Instant::now);
                return Ok(Some(frame));
            }
            let chunk = match (self.frame_timeout, self.buf.is_empty()) {
                (Some(limit), false) => {
                    let since = *self.partial_since.get_or_insert_with(tokio::time::Instant::now);
                    match tokio::time::timeout_at(since + limit, self.recv.read_chunk(usize::MAX, true)).await
                    {
                        Ok(chunk) => chunk?,
                        Err(_) => return Err(ReadFail::Slow { buffered: self.buf.len(), limit }),
                    }
                }
                _ => self.recv.read_chunk(usize::MAX, true).await?,
            };
            if self.buf.is_empty() {
                self.partial_since = Some(tokio::time::Instant::now());
            }
            match chunk {
                Some(chunk) => {
                    // Reserve a large frame's whole length at once (it passed the limit check).
                    if let Some(len) = self.decoder.pending_len(&self.buf)? {
                        self.buf.reserve((HEADER_LEN + len).saturating_sub(self.buf.len()));
                    }
                    self.buf.extend_from_slice(&chunk.bytes);
                }
                None => {
                    self.decoder.finish(&self.buf)?;
                    return Ok(None);
                }
            }
        }
    }

    /// Asks the sender to stop (after a bad frame).
    pub(crate) fn stop(&mut self, code: quinn::VarInt) {
        let _ = self.recv.stop(code);
    }
}

/// Writes frames from `outbox` to `send` until the connection closes, the
/// stream fails, or the outbox is closed and drained (then finishes the stream).
pub(crate) async fn write_loop(
    outbox: &Outbox,
    mut send: quinn::SendStream,
    conn: &quinn::Connection,
    stats: &Stats,
) {
    let mut taken = VecDeque::new();
    let mut chunks = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = outbox.take(&mut taken) => {}
            _ = conn.closed() => return,
        }
        if taken.is_empty() {
            // Closed and drained.
            let _ = send.finish();
            return;
        }
        let n = taken.len() as u64;
        let bytes = coalesce(&mut taken, &mut chunks) as u64;
        let result = send.write_all_chunks(&mut chunks).await;
        chunks.clear();
        if let Err(e) = result {
            tracing::debug!(error = %e, frames = n, "write failed; frames lost with the stream");
            Stats::add(&stats.frames_lost, n);
            return;
        }
        Stats::add(&stats.writes, 1);
        Stats::add(&stats.frames_out, n);
        Stats::add(&stats.bytes_out, bytes);
    }
}

/// The certificate identity of an established connection's remote end.
pub(crate) fn remote_identity(
    conn: &quinn::Connection,
) -> Result<crate::certs::Identity, crate::certs::IdentityError> {
    use rustls::pki_types::CertificateDer;
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(crate::certs::IdentityError::Missing)?;
    let first = certs.first().ok_or(crate::certs::IdentityError::Missing)?;
    crate::certs::identity_of(first)
}
