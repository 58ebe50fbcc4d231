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
