//! A bounded outbound frame queue, filled from any thread and drained by one writer task in batches.
//!
//! Pushing never blocks and never awaits: it takes a short lock, appends,
//! and wakes the writer. The writer takes everything queued at once and
//! writes it as one coalesced chunk list, so frames queued together leave
//! in one write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::frame;

/// How much a send queue may hold before [`crate::SendError::Full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimit {
    /// The most frames queued and not yet taken by the writer.
    pub frames: usize,
    /// The most payload bytes queued and not yet taken by the writer.
    pub bytes: usize,
}

/// Frames of up to this size are copied into a shared buffer; larger ones
/// travel as their own chunk, uncopied.
const COALESCE_MAX: usize = 8 << 10;

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    limit: QueueLimit,
    notify: Notify,
    closed: AtomicBool,
}

pub(crate) enum Push {
    Queued,
    Full(Bytes),
    Closed(Bytes),
}

impl Outbox {
    pub(crate) fn new(limit: QueueLimit) -> Outbox {
        Outbox { inner: Mutex::default(), limit, notify: Notify::new(), closed: AtomicBool::new(false) }
    }

    pub(crate) fn push(&self, frame: Bytes) -> Push {
        if self.closed.load(Ordering::Acquire) {
            return Push::Closed(frame);
        }
        {
            let mut inner = self.inner.lock();
            if inner.frames.len() >= self.limit.frames || inner.bytes + frame.len() > self.limit.bytes {
                return Push::Full(frame);
            }
            inner.bytes += frame.len();
            inner.frames.push_back(frame);
        }
        self.notify.notify_one();
        Push::Queued
    }

    /// Refuses further frames and wakes the writer so it can notice.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until frames are queued (or the queue is closed), then takes them all.
    ///
    /// Only one task may call this at a time: `Notify` keeps a single permit.
    pub(crate) async fn take(&self, into: &mut VecDeque<Bytes>) {
        loop {
            {
                let mut inner = self.inner.lock();
                if !inner.frames.is_empty() {
                    std::mem::swap(&mut inner.frames, into);
                    inner.bytes = 0;
                    return;
                }
            }
            if self.is_closed() {
                return;
            }
            self.notify.notified().await;
        }
    }
}

/// Turns taken frames into a chunk list for one `write_all_chunks`: small
/// frames coalesced into one buffer, large payloads passed through uncopied.
/// Returns the payload bytes it covers.
pub(crate) fn coalesce(frames: &mut VecDeque<Bytes>, chunks: &mut Vec<Bytes>) -> usize {
    let mut buf = BytesMut::new();
    let mut payload = 0;
    let small: usize =
        frames.iter().filter(|f| f.len() <= COALESCE_MAX).map(|f| f.len() + frame::HEADER_LEN).sum();
    buf.reserve(small);
    for f in frames.drain(..) {
        payload += f.len();
        if f.len() <= COALESCE_MAX {
            frame::encode(&f, &mut buf);
        } else {
            buf.extend_from_slice(&frame::header(f.len()));
            chunks.push(buf.split().freeze());
            chunks.push(f);
        }
    }
    if !buf.is_empty() {
        chunks.push(buf.freeze());
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;

    #[test]
    fn frames_queued_together_leave_in_one_chunk_and_large_ones_uncopied() {
        let outbox = Outbox::new(QueueLimit { frames: 1000, bytes: 1 << 20 });
        for i in 0..100u8 {
            assert!(matches!(outbox.push(Bytes::from(vec![i; 128])), Push::Queued));
        }
        let mut taken = VecDeque::new();
        block_on(outbox.take(&mut taken));
        let mut chunks = Vec::new();
        assert_eq!(coalesce(&mut taken, &mut chunks), 100 * 128);
        assert_eq!(chunks.len(), 1, "100 small frames become one write");
        let big = Bytes::from(vec![7u8; COALESCE_MAX + 1]);
        let mut taken: VecDeque<Bytes> =
            [Bytes::from_static(b"a"), big.clone(), Bytes::from_static(b"b")].into();
        let mut chunks = Vec::new();
        coalesce(&mut taken, &mut chunks);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), big.as_ptr(), "the large payload is not copied");
        let mut wire = BytesMut::new();
        chunks.iter().for_each(|c| wire.extend_from_slice(c));
        let d = FrameDecoder::new(1 << 20);
        let frames: Vec<Bytes> = std::iter::from_fn(|| d.decode(&mut wire).unwrap()).collect();
        assert_eq!(frames, vec![Bytes::from_static(b"a"), big, Bytes::from_static(b"b")]);
    }

    #[test]
    fn a_full_queue_hands_the_frame_back_and_a_closed_one_refuses() {
        let outbox = Outbox::new(QueueLimit { frames: 2, bytes: 10 });
        assert!(matches!(outbox.push(Bytes::from_static(b"12345")), Push::Queued));
        assert!(matches!(outbox.push(Bytes::from_static(b"123456")), Push::Full(f) if f.len() == 6));
        assert!(matches!(outbox.push(Bytes::from_static(b"12345")), Push::Queued));
        assert!(matches!(outbox.push(Bytes::from_static(b"1")), Push::Full(_)));
        outbox.close();
        assert!(matches!(outbox.push(Bytes::from_static(b"1")), Push::Closed(_)));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }
}
