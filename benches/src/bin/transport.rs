//! Benchmark of synod-transport: frames/s and MB/s between two replicas on loopback, small-frame round trips, and a bare quinn stream as the ceiling.
//!
//! Prints one line per case and ends with
//! `transport: <F> frames/s (128 B), <P>% of a bare quinn stream`, where P
//! compares the payload bytes/s of 128-byte frames with the bytes/s of a
//! bare quinn stream written in 64 KiB chunks over the same TLS and QUIC
//! configuration. `SYNOD_BENCH_MS` sets the time per case (default 2000).

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use synod_transport::certs::Ca;
use synod_transport::{tls, Identity, Inbound, Node, NodeConfig, Settings};
use synod_wire::NodeId;

const COUNT: u8 = 0;
const FORWARD: u8 = 1;

struct Receiver {
    mode: AtomicU8,
    frames: AtomicU64,
    bytes: AtomicU64,
    fwd: crossbeam_channel::Sender<Bytes>,
}

impl Receiver {
    fn sink(self: &Arc<Self>) -> impl Fn(Inbound) + Send + Sync + 'static {
        let me = self.clone();
        move |event| {
            if let Inbound::Peer { frame, .. } = event {
                if me.mode.load(Relaxed) == FORWARD {
                    let _ = me.fwd.send(frame);
                } else {
                    me.frames.fetch_add(1, Relaxed);
                    me.bytes.fetch_add(frame.len() as u64, Relaxed);
                }
            }
        }
    }
}

fn settings() -> Settings {
    Settings { worker_threads: 1, ..Settings::default() }
}

fn main() -> Result<()> {
    let budget = Duration::from_millis(
        std::env::var("SYNOD_BENCH_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000),
    );
    let ca = Ca::generate("bench").context("generating the CA")?;
    let sockets = [UdpSocket::bind("127.0.0.1:0")?, UdpSocket::bind("127.0.0.1:0")?];
    let peers: BTreeMap<NodeId, SocketAddr> =
        [(NodeId(1), sockets[0].local_addr()?), (NodeId(2), sockets[1].local_addr()?)].into();
    let [s1, s2] = sockets;
    let (tx1, rx1) = crossbeam_channel::unbounded();
    let (tx2, rx2) = crossbeam_channel::unbounded();
    let r1 = Arc::new(Receiver { mode: AtomicU8::new(FORWARD), frames: 0.into(), bytes: 0.into(), fwd: tx1 });
    let r2 = Arc::new(Receiver { mode: AtomicU8::new(COUNT), frames: 0.into(), bytes: 0.into(), fwd: tx2 });
    let config = |id: u32| -> Result<NodeConfig> {
        Ok(NodeConfig {
            id: NodeId(id),
            peers: synod_transport::address_book(peers.clone()),
            credentials: ca.issue(Identity::Node(NodeId(id)))?,
            settings: settings(),
        })
    };
    let n1 = Node::start_on(s1, config(1)?, r1.sink())?;
    let n2 = Node::start_on(s2, config(2)?, r2.sink())?;
    while !(n1.is_connected(NodeId(2)) && n2.is_connected(NodeId(1))) {
        std::thread::sleep(Duration::from_millis(10));
    }

    println!("{:<40} {:>14} {:>12}", "case", "frames/s", "MB/s");
    let small = throughput(&n1, &r2, 128, budget);
    println!("{:<40} {:>14.0} {:>12.1}", "frames, 128 B", small, small * 128.0 / 1e6);
    let large = throughput(&n1, &r2, 64 << 10, budget);
    println!("{:<40} {:>14.0} {:>12.1}", "frames, 64 KiB", large, large * 65536.0 / 1e6);

    // Round trips of a small frame: node 1 -> node 2's event thread -> node 1's waiting thread.
    r2.mode.store(FORWARD, Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = stop.clone();
        std::thread::scope(|s| -> Result<Histogram<u64>> {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    if let Ok(frame) = rx2.recv_timeout(Duration::from_millis(10)) {
                        let _ = n2.send(NodeId(1), frame);
                    }
                }
            });
            let mut hist = Histogram::<u64>::new(3)?;
            let frame = Bytes::from(vec![7u8; 64]);
            let start = Instant::now();
            while start.elapsed() < budget {
                let t = Instant::now();
                n1.send(NodeId(2), frame.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
                rx1.recv_timeout(Duration::from_secs(10)).context("no echo")?;
                hist.record(t.elapsed().as_nanos() as u64)?;
            }
            stop.store(true, Relaxed);
            Ok(hist)
        })?
    };
    println!(
        "{:<40} p50 {:.1} us, p99 {:.1} us ({} samples)",
        "round trip, 64 B",
        echo.value_at_quantile(0.5) as f64 / 1e3,
        echo.value_at_quantile(0.99) as f64 / 1e3,
        echo.len()
    );
    let s = n1.stats();
    println!(
        "{:<40} {:.1} frames per write",
        "coalescing at node 1",
        s.frames_out as f64 / s.writes.max(1) as f64
    );
    drop(n1);
    drop(n2);

    let bare = bare_quinn(&ca, budget)?;
    println!("{:<40} {:>14} {:>12.1}", "bare quinn stream, 64 KiB writes", "-", bare / 1e6);
    let p = small * 128.0 / bare * 100.0;
    println!("transport: {small:.0} frames/s (128 B), {p:.0}% of a bare quinn stream");
    Ok(())
}

/// Frames/s delivered to node 2's sink while one thread sends as fast as the queue allows.
fn throughput(n1: &Node, r2: &Receiver, size: usize, budget: Duration) -> f64 {
    let frame = Bytes::from(vec![0xa5u8; size]);
    let sent = std::cell::Cell::new(0u64);
    let measure = |d: Duration| {
        let (f0, t0) = (r2.frames.load(Relaxed), Instant::now());
        while t0.elapsed() < d {
            for _ in 0..64 {
                match n1.send(NodeId(2), frame.clone()) {
                    Ok(()) => sent.set(sent.get() + 1),
                    Err(_) => std::thread::yield_now(),
                }
            }
        }
        let frames = r2.frames.load(Relaxed) - f0;
        frames as f64 / t0.elapsed().as_secs_f64()
    };
    let base = r2.frames.load(Relaxed);
    measure(budget / 4);
    let rate = measure(budget);
    // Drain, so the next case starts with empty queues.
    while r2.frames.load(Relaxed) - base < sent.get() {
        std::thread::sleep(Duration::from_millis(1));
    }
    rate
}

/// Bytes/s of one quinn stream written in 64 KiB chunks (16 per call), no framing, same TLS and QUIC settings.
fn bare_quinn(ca: &Ca, budget: Duration) -> Result<f64> {
    let s = settings();
    let transport = tls::transport_config(s.idle_timeout, s.keep_alive);
    let server_creds = ca.issue(Identity::Node(NodeId(2)))?;
    let client_creds = ca.issue(Identity::Node(NodeId(1)))?;
    let mut server_cfg = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(&server_creds)?)?,
    ));
    server_cfg.transport_config(transport.clone());
    let mut client_cfg =
        quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(
            tls::client_config(&client_creds, Some(NodeId(2)))?,
        )?));
    client_cfg.transport_config(transport);
    // One single-threaded runtime per side, as each replica above had one worker.
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let local: SocketAddr = "127.0.0.1:0".parse()?;
    let server = server_rt.block_on(async { quinn::Endpoint::server(server_cfg, local) })?;
    let addr = server.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    {
        let received = received.clone();
        server_rt.spawn(async move {
            let conn = server.accept().await?.await.ok()?;
            let mut recv = conn.accept_uni().await.ok()?;
            while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                received.fetch_add(chunk.bytes.len() as u64, Relaxed);
            }
            Some(())
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        client_rt.spawn(async move {
            let ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address"))?;
            let conn = ep.connect_with(client_cfg, addr, "node-2.synod")?.await?;
            let mut send = conn.open_uni().await?;
            let chunk = Bytes::from(vec![0x5au8; 64 << 10]);
            // Hand quinn 16 chunks per call, as the framed writer hands it
            // everything queued: the ceiling should not be per-call overhead.
            while !stop.load(Relaxed) {
                let mut chunks: [Bytes; 16] = std::array::from_fn(|_| chunk.clone());
                send.write_all_chunks(&mut chunks).await?;
            }
            conn.close(0u32.into(), b"done");
            Ok::<_, anyhow::Error>(ep)
        })
    };
    let measure = |d: Duration| {
        let (b0, t0) = (received.load(Relaxed), Instant::now());
        std::thread::sleep(d);
        (received.load(Relaxed) - b0) as f64 / t0.elapsed().as_secs_f64()
    };
    measure(budget / 4);
    let rate = measure(budget);
    stop.store(true, Relaxed);
    let ep = client_rt.block_on(writer)??;
    client_rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await }).ok();
    Ok(rate)
}
