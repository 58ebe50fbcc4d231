//! Peer links: dialing with backoff and jitter (host names resolved again on
//! every attempt), the consensus and bulk streams, and sending to a peer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use synod_wire::NodeId;

use super::{Inbound, Lane, Link, Node, Shared};
use crate::addr::PeerAddr;
use crate::io::{code, peer_header, write_loop, FrameReader, ReadFail, KIND_BULK, KIND_CONSENSUS};
use crate::jitter::Jitter;
use crate::queue::Outbox;
use crate::queue::Push;
use crate::stats::Stats;
use crate::tls;
use crate::tls::TlsError;
use crate::SendError;

impl Node {
    /// Queues `frame` for replica `to` on the ordered consensus stream.
    ///
    /// Never blocks. Frames queued while the link is down wait for it, up to
    /// the queue's limit; when the queue is full the frame is refused
    /// ([`SendError::Full`], counted in `queue_full_drops`) and handed back,
    /// so the caller decides (consensus messages are retransmitted by the
    /// protocol anyway). Frames already handed to a connection that then
    /// fails are lost (counted in `frames_lost`).
    pub fn send(&self, to: NodeId, frame: impl Into<Bytes>) -> Result<(), SendError> {
        self.push_peer(to, frame.into(), Lane::Consensus)
    }

    /// Queues `frame` for replica `to` on the bulk stream; as [`Node::send`] otherwise.
    pub fn send_bulk(&self, to: NodeId, frame: impl Into<Bytes>) -> Result<(), SendError> {
        self.push_peer(to, frame.into(), Lane::Bulk)
    }

    /// Whether a link to `peer` is established right now.
    pub fn is_connected(&self, peer: NodeId) -> bool {
        self.shared.links.read().get(&peer).is_some_and(|l| l.state.lock().conn.is_some())
    }

    /// Adds `peer` to the address book at `addr`, or moves it there: this
    /// replica dials it if its id is the higher (the lower id dials), and
    /// sends to it from now on. A peer that is already connected keeps its
    /// connection; a new address is used from the next dial on. Adding this
    /// replica itself does nothing.
    pub fn add_peer(&self, peer: NodeId, addr: PeerAddr) -> Result<(), TlsError> {
        if peer == self.shared.id {
            return Ok(());
        }
        let existing = self.shared.links.read().get(&peer).cloned();
        let link = match existing {
            Some(link) => {
                let mut current = link.addr.lock();
                if current.as_ref() != Some(&addr) {
                    tracing::info!(node = self.shared.id.0, peer = peer.0, %addr, "peer address set");
                    *current = Some(addr);
                }
                drop(current);
                link
            }
            None => {
                let new = self.shared.new_link(peer, Some(addr.clone()))?;
                tracing::info!(node = self.shared.id.0, peer = peer.0, %addr, "peer added to the address book");
                self.shared.links.write().entry(peer).or_insert(new).clone()
            }
        };
        self.shared.maybe_dial(&link);
        Ok(())
    }

    /// Drops `peer` from the address book: its connection is closed, frames
    /// queued for it are lost, and it is no longer dialed. It may still dial
    /// in again (its certificate is still the CA's); it is then accepted as
    /// any replica not in the book. Returns whether it was there.
    pub fn remove_peer(&self, peer: NodeId) -> bool {
        let Some(link) = self.shared.links.write().remove(&peer) else { return false };
        link.removed.store(true, Ordering::Release);
        link.consensus.close();
        link.bulk.close();
        if let Some(conn) = link.state.lock().conn.take() {
            conn.close(code::SHUTDOWN, b"removed from the address book");
        }
        tracing::info!(node = self.shared.id.0, peer = peer.0, "peer dropped from the address book");
        true
    }

    /// The peers this replica has a link to (in its address book, or dialed in), in id order.
    pub fn peers(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self.shared.links.read().keys().copied().collect();
        peers.sort_unstable();
        peers
    }

    /// Where `peer` listens, as the address book says (`None`: not in it, or dialed in without an address).
    pub fn peer_addr(&self, peer: NodeId) -> Option<PeerAddr> {
        self.shared.links.read().get(&peer).and_then(|l| l.addr.lock().clone())
    }

    fn push_peer(&self, to: NodeId, frame: Bytes, lane: Lane) -> Result<(), SendError> {
        if frame.len() > self.shared.settings.max_frame_len {
            return Err(SendError::TooLarge { len: frame.len(), limit: self.shared.settings.max_frame_len });
        }
        let Some(link) = self.shared.links.read().get(&to).cloned() else {
            return Err(SendError::UnknownPeer { to, frame });
        };
        let outbox = match lane {
            Lane::Consensus => &link.consensus,
            Lane::Bulk => &link.bulk,
        };
        match outbox.push(frame) {
            Push::Queued => Ok(()),
            Push::Full(frame) => {
                Stats::add(&self.shared.stats.queue_full_drops, 1);
                Err(SendError::Full { to, frame })
            }
            Push::Closed(frame) => Err(SendError::Closed { frame }),
        }
    }
}

impl Shared {
    /// A link to `peer`, not yet in the book; `addr` is `None` for one that dialed in.
    pub(super) fn new_link(&self, peer: NodeId, addr: Option<PeerAddr>) -> Result<Arc<Link>, TlsError> {
        let client_config = tls::quinn_client(&self.credentials, Some(peer), self.transport_config.clone())?;
        Ok(Arc::new(Link {
            peer,
            addr: Mutex::new(addr),
            removed: AtomicBool::new(false),
            dialing: AtomicBool::new(false),
            consensus: Arc::new(Outbox::new(self.settings.consensus_queue)),
            bulk: Arc::new(Outbox::new(self.settings.bulk_queue)),
            consensus_writer: tokio::sync::Mutex::new(()),
            bulk_writer: tokio::sync::Mutex::new(()),
            state: Mutex::default(),
            client_config,
        }))
    }

    /// Starts `link`'s dial loop if this replica dials it (the lower id
    /// dials), it has an address, and none runs yet.
    pub(super) fn maybe_dial(self: &Arc<Self>, link: &Arc<Link>) {
        if link.peer > self.id && link.addr.lock().is_some() && !link.dialing.swap(true, Ordering::AcqRel) {
            self.handle.spawn(self.clone().dial_loop(link.clone()));
        }
    }

    pub(super) async fn dial_loop(self: Arc<Self>, link: Arc<Link>) {
        let mut rng = Jitter::new(u64::from(self.id.0) << 32 | u64::from(link.peer.0));
        let mut backoff = self.settings.reconnect_min;
        let name = tls::server_name(Some(link.peer));
        let local = self.endpoint.local_addr().ok();
        // The first failure of a kind in a row is logged as a warning, repeats at debug level.
        let mut last_warned = String::new();
        while !self.closing.load(Ordering::Acquire) && !link.removed.load(Ordering::Acquire) {
            // Host names are resolved again on every attempt: a peer that moved is found.
            let Some(peer_addr) = link.addr.lock().clone() else { return };
            let addr = match peer_addr.lookup(local).await {
                Ok(addr) => addr,
                Err(e) => {
                    Stats::add(&self.stats.connect_failures, 1);
                    let text = e.to_string();
                    if text != last_warned {
                        tracing::warn!(peer = link.peer.0, error = %text, "cannot resolve the peer's address; retrying");
                        last_warned = text;
                    } else {
                        tracing::debug!(peer = link.peer.0, error = %text, "cannot resolve the peer's address");
                    }
                    tokio::time::sleep(rng.around(backoff)).await;
                    backoff = (backoff * 2).min(self.settings.reconnect_max);
                    continue;
                }
            };
            let attempt = self.endpoint.connect_with(link.client_config.clone(), addr, &name);
            match attempt {
                Ok(connecting) => match connecting.await {
                    Ok(conn) => {
                        let up = tokio::time::Instant::now();
                        self.run_link(&link, conn, true).await;
                        // A link that lasted resets the backoff; one closed at once (the
                        // peer refused our certificate after the handshake) does not.
                        if up.elapsed() >= self.settings.reconnect_max {
                            backoff = self.settings.reconnect_min;
                            last_warned.clear();
                        }
                    }
                    Err(e) => {
                        Stats::add(&self.stats.connect_failures, 1);
                        // A refused handshake (an expired or foreign certificate) is worth a
                        // warning; a peer that is simply down is not.
                        let refused = matches!(
                            &e,
                            quinn::ConnectionError::TransportError(_)
                                | quinn::ConnectionError::ConnectionClosed(_)
                        );
                        let text = e.to_string();
                        if refused && text != last_warned {
                            tracing::warn!(peer = link.peer.0, %addr, error = %text, "handshake with peer failed");
                            last_warned = text;
                        } else {
                            tracing::debug!(peer = link.peer.0, %addr, error = %text, "dial failed");
                        }
                    }
                },
                Err(quinn::ConnectError::EndpointStopping) => return,
                Err(e) => {
                    Stats::add(&self.stats.connect_failures, 1);
                    tracing::warn!(peer = link.peer.0, %addr, error = %e, "cannot dial");
                }
            }
            tokio::time::sleep(rng.around(backoff)).await;
            backoff = (backoff * 2).min(self.settings.reconnect_max);
        }
    }

    /// Runs one connection of a peer link until it closes.
    pub(super) async fn run_link(self: &Arc<Self>, link: &Arc<Link>, conn: quinn::Connection, dialer: bool) {
        let peer = link.peer;
        let remote = conn.remote_address();
        // The accepting side learns who dialed from the certificate, and
        // requires the first stream's claim to match it.
        let first = if dialer {
            None
        } else {
            tokio::select! {
                r = conn.accept_uni() => match r {
                    Ok(recv) => match self.check_claim(&conn, recv, peer).await {
                        Some(first) => Some(first),
                        None => return,
                    },
                    Err(_) => return,
                },
                _ = conn.closed() => return,
            }
        };
        let opened = async {
            let mut consensus = conn.open_uni().await?;
            consensus.write_all(&peer_header(KIND_CONSENSUS, self.id)).await?;
            let _ = consensus.set_priority(1);
            let mut bulk = conn.open_uni().await?;
            bulk.write_all(&peer_header(KIND_BULK, self.id)).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((consensus, bulk))
        };
        let (consensus, bulk) = match opened.await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::debug!(peer = peer.0, error = %e, "cannot open peer streams");
                return;
            }
        };
        let generation = {
            let mut state = link.state.lock();
            if link.removed.load(Ordering::Acquire) {
                conn.close(code::SHUTDOWN, b"removed from the address book");
                return;
            }
            if let Some(old) = state.conn.replace(conn.clone()) {
                old.close(code::REPLACED, b"replaced");
            }
            state.generation += 1;
            if std::mem::replace(&mut state.ever_up, true) {
                Stats::add(&self.stats.reconnects, 1);
            }
            state.generation
        };
        Stats::add(&self.stats.peer_connections, 1);
        tracing::info!(node = self.id.0, peer = peer.0, %remote, dialer, "peer link up");
        self.deliver(Inbound::PeerUp { peer });
        for (lane, send) in [(Lane::Consensus, consensus), (Lane::Bulk, bulk)] {
            let (shared, link, conn) = (self.clone(), link.clone(), conn.clone());
            tokio::spawn(async move {
                let (outbox, lock) = match lane {
                    Lane::Consensus => (&link.consensus, &link.consensus_writer),
                    Lane::Bulk => (&link.bulk, &link.bulk_writer),
                };
                let _writer = lock.lock().await;
                write_loop(outbox, send, &conn, &shared.stats).await;
            });
        }
        if let Some((recv, lane)) = first {
            tokio::spawn(self.clone().read_peer(conn.clone(), recv, peer, lane));
        }
        let accept = {
            let (shared, conn) = (self.clone(), conn.clone());
            async move {
                while let Ok(recv) = conn.accept_uni().await {
                    let shared = shared.clone();
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        if let Some((recv, lane)) = shared.check_claim(&conn, recv, peer).await {
                            shared.read_peer(conn, recv, peer, lane).await;
                        }
                    });
                }
            }
        };
        let reason = tokio::select! {
            reason = conn.closed() => reason,
            () = accept => conn.closed().await,
        };
        let down = {
            let mut state = link.state.lock();
            if state.generation == generation {
                state.conn = None;
                true
            } else {
                false
            }
        };
        if down {
            tracing::info!(node = self.id.0, peer = peer.0, %reason, "peer link down");
            self.deliver(Inbound::PeerDown { peer });
        }
    }

    /// Reads a peer stream's header and checks the claimed id against the
    /// certificate's; refuses the connection otherwise.
    async fn check_claim(
        &self,
        conn: &quinn::Connection,
        mut recv: quinn::RecvStream,
        peer: NodeId,
    ) -> Option<(quinn::RecvStream, Lane)> {
        let mut header = [0u8; 5];
        if recv.read_exact(&mut header).await.is_err() {
            return None;
        }
        let lane = match header[0] {
            KIND_CONSENSUS => Lane::Consensus,
            KIND_BULK => Lane::Bulk,
            other => {
                Stats::add(&self.stats.rejected_frames, 1);
                tracing::warn!(peer = peer.0, kind = other, "unknown peer stream kind");
                conn.close(code::BAD_FRAME, b"unknown stream kind");
                return None;
            }
        };
        let claimed = NodeId(u32::from_be_bytes([header[1], header[2], header[3], header[4]]));
        if claimed != peer {
            self.refuse(
                conn,
                conn.remote_address(),
                &format!("claims node {} with the certificate of node {}", claimed.0, peer.0),
            );
            return None;
        }
        Some((recv, lane))
    }

    async fn read_peer(
        self: Arc<Self>,
        conn: quinn::Connection,
        recv: quinn::RecvStream,
        from: NodeId,
        lane: Lane,
    ) {
        let mut reader = FrameReader::new(recv, self.settings.max_frame_len);
        loop {
            match reader.next().await {
                Ok(Some(frame)) => {
                    Stats::add(&self.stats.frames_in, 1);
                    Stats::add(&self.stats.bytes_in, frame.len() as u64);
                    self.deliver(Inbound::Peer { from, lane, frame });
                }
                Ok(None) => return,
                Err(ReadFail::Frame(e)) => {
                    // A broken consensus stream cannot be resumed in order:
                    // close the connection so the link is rebuilt.
                    Stats::add(&self.stats.rejected_frames, 1);
                    tracing::warn!(peer = from.0, ?lane, error = %e, "bad frame from peer; closing the link");
                    reader.stop(code::BAD_FRAME);
                    conn.close(code::BAD_FRAME, b"bad frame");
                    return;
                }
                // Peer readers have no frame timeout: `Slow` never comes here.
                Err(e @ (ReadFail::Stream(_) | ReadFail::Slow { .. })) => {
                    tracing::debug!(peer = from.0, ?lane, error = %e, "peer stream ended");
                    return;
                }
            }
        }
    }
}
