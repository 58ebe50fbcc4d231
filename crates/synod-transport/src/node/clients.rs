//! Client streams: serving clients' connections and streams, queuing replies,
//! closing a stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{ClientConnId, Inbound, Node, PerClient, Shared};
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
        let remote = conn.remote_address();
        let Some(_slot) = self.clone().client_slot(client) else {
            let limit = self.settings.max_connections_per_client;
            Stats::add(&self.stats.refused_connections, 1);
            tracing::warn!(%remote, client, limit, "connection refused: too many connections for this client");
            let why = format!(
                "too many connections: client {client} has {limit} open (max_connections_per_client)"
            );
            conn.close(code::LIMIT, why.as_bytes());
            return;
        };
        let window = u64::try_from(self.settings.client_receive_window).unwrap_or(u64::MAX);
        conn.set_receive_window(quinn::VarInt::from_u64(window).unwrap_or(quinn::VarInt::MAX));
        // Request streams open on this connection; with none for
        // `streamless_timeout`, the connection goes (keep-alives alone keep nothing).
        let streams = Arc::new(tokio::sync::watch::Sender::new(0usize));
        let mut open = streams.subscribe();
        let limit = self.settings.streamless_timeout;
        let mut idle_until = Some(tokio::time::Instant::now() + limit);
        loop {
            let idle = async {
                match idle_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                bi = conn.accept_bi() => match bi {
                    Ok((send, recv)) => {
                        streams.send_modify(|n| *n += 1);
                        let guard = StreamGuard(streams.clone());
                        tokio::spawn(self.clone().client_stream(conn.clone(), client, send, recv, guard));
                    }
                    Err(_) => return,
                },
                uni = conn.accept_uni() => {
                    if uni.is_ok() {
                        self.refuse(&conn, remote, &format!("client {client} acts as a replica"));
                    }
                    return;
                }
                Ok(()) = open.changed() => {
                    idle_until = (*open.borrow_and_update() == 0).then(|| tokio::time::Instant::now() + limit);
                }
                () = idle => {
                    Stats::add(&self.stats.refused_connections, 1);
                    tracing::warn!(%remote, client, ?limit, "closing a client connection with no request stream");
                    let why = format!("no request stream open for {limit:?} (streamless_timeout)");
                    conn.close(code::NO_STREAM, why.as_bytes());
                    return;
                }
            }
        }
    }

    /// Counts a connection of `client` against `max_connections_per_client`
    /// until the slot is dropped; `None` if the client has its limit open.
    pub(super) fn client_slot(self: Arc<Self>, client: u32) -> Option<ClientSlot> {
        let mut open = self.client_connections.lock();
        let burst = self.intake_burst();
        let c = open.entry(client).or_insert(PerClient { open: 0, tokens: burst, at: Instant::now() });
        if c.open >= self.settings.max_connections_per_client {
            return None;
        }
        c.open += 1;
        drop(open);
        Some(ClientSlot { shared: self, client })
    }

    /// The most request bytes a client may send at once: one second of
    /// `client_bytes_per_second`, or one frame at the size limit.
    fn intake_burst(&self) -> f64 {
        (self.settings.client_bytes_per_second.max(1) as f64).max(self.settings.max_frame_len as f64)
    }

    /// Charges `bytes` read from `client` to its budget; how long to wait
    /// before reading more from it, if it has overspent.
    fn charge(&self, client: u32, bytes: usize) -> Option<Duration> {
        let rate = self.settings.client_bytes_per_second.max(1) as f64;
        let burst = self.intake_burst();
        let mut open = self.client_connections.lock();
        let c = open.get_mut(&client)?;
        let now = Instant::now();
        c.tokens = (c.tokens + now.duration_since(c.at).as_secs_f64() * rate).min(burst);
        c.at = now;
        c.tokens -= bytes as f64;
        (c.tokens < 0.0).then(|| Duration::from_secs_f64(-c.tokens / rate))
    }

    async fn client_stream(
        self: Arc<Self>,
        conn: quinn::Connection,
        client: u32,
        send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        _open: StreamGuard,
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
        let mut writer = {
            let (shared, outbox, conn) = (self.clone(), outbox.clone(), conn.clone());
            tokio::spawn(async move { write_loop(&outbox, send, &conn, &shared.stats).await })
        };
        let mut reader = FrameReader::new(recv, self.settings.max_frame_len)
            .with_frame_timeout(self.settings.frame_timeout);
        loop {
            let next = tokio::select! {
                next = reader.next() => next,
                // The replica closed the stream (`close_client`, after a
                // malformed request) and its replies are out, or the client
                // takes no more replies: read nothing more from it either.
                _ = &mut writer => {
                    tracing::debug!(%addr, client, "client stream closed by the replica");
                    reader.stop(code::CLOSED);
                    break;
                }
            };
            match next {
                Ok(Some(frame)) => {
                    let len = frame.len();
                    Stats::add(&self.stats.frames_in, 1);
                    Stats::add(&self.stats.bytes_in, len as u64);
                    self.deliver(Inbound::Client { conn: id, frame });
                    if let Some(pause) = self.charge(client, len) {
                        // Over its budget: read nothing more from this client
                        // until it is repaid; flow control holds the rest back.
                        Stats::add(&self.stats.intake_pauses, 1);
                        tokio::time::sleep(pause).await;
                    }
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
                Err(e @ ReadFail::Slow { .. }) => {
                    Stats::add(&self.stats.slow_frames, 1);
                    tracing::warn!(%addr, client, error = %e, "client sends too slowly; closing the stream");
                    reader.stop(code::FRAME_TIMEOUT);
                    break;
                }
            }
        }
        outbox.close();
        self.clients.write().remove(&id);
        self.deliver(Inbound::ClientDown { conn: id });
    }
}

/// One connection of a client, counted against `max_connections_per_client` while it lives.
pub(super) struct ClientSlot {
    shared: Arc<Shared>,
    client: u32,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.shared.client_connections.lock();
        if let Some(c) = open.get_mut(&self.client) {
            c.open -= 1;
            if c.open == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// One request stream of a connection, counted while it lives.
pub(super) struct StreamGuard(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}
