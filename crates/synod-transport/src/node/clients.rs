//! Client streams: serving clients' connections and streams, queuing replies,
//! closing a stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::{ClientConnId, Inbound, Node, Shared};
use crate::io::{code, write_loop, FrameReader, ReadFail, KIND_CLIENT};
use crate::queue::{Outbox, Push};
use crate::stats::Stats;
use crate::ReplyError;

impl Node {
    /// Queues `frame` as a reply on client stream `conn`; frames queued
    /// together leave in one write.
    pub fn reply(&self, conn: ClientConnId, frame: impl Into<Bytes>) -> Result<(), ReplyError> {
        let frame = frame.into();
        if frame.len() > self.shared.settings.max_frame_len {
            return Err(ReplyError::TooLarge { len: frame.len(), limit: self.shared.settings.max_frame_len });
        }
        let outbox = self.shared.clients.read().get(&conn).cloned();
        let Some(outbox) = outbox else { return Err(ReplyError::Gone { conn, frame }) };
        match outbox.push(frame) {
            Push::Queued => Ok(()),
            Push::Full(frame) => {
                Stats::add(&self.shared.stats.queue_full_drops, 1);
                Err(ReplyError::Full { conn, frame })
            }
            Push::Closed(frame) => Err(ReplyError::Gone { conn, frame }),
        }
    }

    /// Closes client stream `conn` after the replies already queued.
    pub fn close_client(&self, conn: ClientConnId) {
        if let Some(outbox) = self.shared.clients.read().get(&conn) {
            outbox.close();
        }
    }
}

impl Shared {
    pub(super) async fn serve_client(self: Arc<Self>, conn: quinn::Connection, client: u32) {
        loop {
            tokio::select! {
                bi = conn.accept_bi() => match bi {
                    Ok((send, recv)) => {
                        tokio::spawn(self.clone().client_stream(conn.clone(), client, send, recv));
                    }
                    Err(_) => return,
                },
                uni = conn.accept_uni() => {
                    if uni.is_ok() {
                        self.refuse(&conn, conn.remote_address(), &format!("client {client} acts as a replica"));
                    }
                    return;
                }
            }
        }
    }

    async fn client_stream(
        self: Arc<Self>,
        conn: quinn::Connection,
        client: u32,
        send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let addr = conn.remote_address();
        let mut kind = [0u8; 1];
        if recv.read_exact(&mut kind).await.is_err() {
            return;
        }
        if kind[0] != KIND_CLIENT {
            Stats::add(&self.stats.rejected_frames, 1);
            tracing::warn!(%addr, client, kind = kind[0], "unknown client stream kind; closing the stream");
            let _ = recv.stop(code::BAD_FRAME);
            let mut send = send;
            let _ = send.reset(code::BAD_FRAME);
            return;
        }
        let id = ClientConnId(self.next_client.fetch_add(1, Ordering::Relaxed));
        let outbox = Arc::new(Outbox::new(self.settings.client_queue));
        self.clients.write().insert(id, outbox.clone());
        Stats::add(&self.stats.client_streams, 1);
        self.deliver(Inbound::ClientUp { conn: id, client, addr });
        let writer = {
            let (shared, outbox, conn) = (self.clone(), outbox.clone(), conn.clone());
            tokio::spawn(async move { write_loop(&outbox, send, &conn, &shared.stats).await })
        };
        let mut reader = FrameReader::new(recv, self.settings.max_frame_len);
        loop {
            match reader.next().await {
                Ok(Some(frame)) => {
                    Stats::add(&self.stats.frames_in, 1);
                    Stats::add(&self.stats.bytes_in, frame.len() as u64);
                    self.deliver(Inbound::Client { conn: id, frame });
                }
                Ok(None) => {
                    // The client will send no more requests; answer what is
                    // pending until it goes away or the replica closes the stream.
                    tokio::select! {
                        _ = conn.closed() => {}
                        _ = writer => {}
                    }
                    break;
                }
                Err(ReadFail::Frame(e)) => {
                    Stats::add(&self.stats.rejected_frames, 1);
                    tracing::warn!(%addr, client, error = %e, "bad frame from client; closing the stream");
                    reader.stop(code::BAD_FRAME);
                    break;
                }
                Err(ReadFail::Stream(e)) => {
                    tracing::debug!(%addr, client, error = %e, "client stream ended");
                    break;
                }
            }
        }
        outbox.close();
        self.clients.write().remove(&id);
        self.deliver(Inbound::ClientDown { conn: id });
    }
}
