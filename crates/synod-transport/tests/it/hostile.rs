//! Hostile clients over real QUIC: idle connections, slow senders, thousands
//! of streams, frames at the size limit. Each is held by a limit, told why
//! with a close code and reason, and a well-behaved client beside it keeps
//! its latency within a stated factor.
//!
//! The factor asserted is deliberately loose (5x the quiet p99, and never
//! less than 25 ms) so that a busy machine cannot make it flake; every test
//! prints the figures it measured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use synod_transport::{tls, ClientEndpoint, ClientStream, Identity, Inbound, Node, Settings};
use synod_wire::{NodeId, MAX_FRAME_LEN};

use crate::util::{echo, runtime, settings, wait_stats, Cluster, Events, PATIENCE};

/// The stream kind byte of a client stream (see io.rs).
const KIND_CLIENT: u8 = 3;
/// Close and stop codes (documented in io.rs and docs/OPERATIONS.md).
const BAD_FRAME: u32 = 1;
const LIMIT: u32 = 4;
const NO_STREAM: u32 = 5;
const FRAME_TIMEOUT: u32 = 6;

/// A hostile client's connection to replica 1 as client `client`, with
/// keep-alives on (so only the replica's limits can end it).
async fn dial(cluster: &Cluster, client: u32) -> Result<quinn::Connection, quinn::ConnectionError> {
    let creds = cluster.creds(Identity::Client(client));
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(
        tls::client_config(&creds, Some(NodeId(1))).unwrap(),
    )
    .unwrap();
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(tls::transport_config(Duration::from_secs(30), Duration::from_millis(500)));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.connect_with(cfg, cluster.book[&NodeId(1)], "node-1.synod").unwrap().await
}

/// The application close code and reason a connection ended with.
async fn close_of(conn: &quinn::Connection) -> (Option<u32>, String) {
    match tokio::time::timeout(PATIENCE, conn.closed()).await.expect("closed in time") {
        quinn::ConnectionError::ApplicationClosed(c) => {
            (Some(c.error_code.into_inner() as u32), String::from_utf8_lossy(&c.reason).into_owned())
        }
        other => (None, other.to_string()),
    }
}

/// A well-behaved client: one stream to replica 1, as client 1.
async fn good_client(cluster: &Cluster) -> (ClientEndpoint, ClientStream) {
    let ep =
        ClientEndpoint::new("127.0.0.1:0".parse().unwrap(), cluster.creds(Identity::Client(1)), settings())
            .unwrap();
    let stream = ep.connect(cluster.book[&NodeId(1)], Some(NodeId(1))).await.unwrap();
    (ep, stream)
}

/// Round trips of a small frame for about `span` (at least 200): (p50, p99).
async fn latency(stream: &mut ClientStream, span: Duration) -> (Duration, Duration) {
    let mut took = Vec::new();
    let start = Instant::now();
    while took.len() < 200 || start.elapsed() < span {
        let at = Instant::now();
        stream.send(Bytes::from_static(b"ping")).unwrap();
        let reply = tokio::time::timeout(PATIENCE, stream.recv()).await.expect("a reply").unwrap();
        assert_eq!(&reply[..], b"ping");
        took.push(at.elapsed());
    }
    took.sort();
    (took[took.len() / 2], took[took.len() * 99 / 100])
}

/// Prints the figures and checks the stated factor: p99 beside the hostile
/// client within 5x of the quiet p99, or `floor`, whichever is more.
fn judge(what: &str, quiet: (Duration, Duration), hostile: (Duration, Duration), floor: Duration) {
    let factor = hostile.1.as_secs_f64() / quiet.1.as_secs_f64();
    println!(
        "{what}: quiet p50 {:?} p99 {:?}; beside it p50 {:?} p99 {:?}; p99 factor {factor:.2}",
        quiet.0, quiet.1, hostile.0, hostile.1
    );
    let bound = (quiet.1 * 5).max(floor);
    assert!(hostile.1 <= bound, "{what}: p99 {:?} beside the hostile client, bound {bound:?}", hostile.1);
}

/// Replica 1 of a one-replica cluster, with `tweak`ed settings.
fn node(tweak: impl FnOnce(&mut Settings)) -> (Cluster, Node, Events) {
    let mut cluster = Cluster::new(1);
    let mut s = settings();
    tweak(&mut s);
    let (node, events) = cluster.start(1, s);
    (cluster, node, events)
}

#[test]
fn connections_are_bounded_per_client_and_streamless_ones_are_closed() {
    let (cluster, n1, e1) = node(|s| {
        s.max_connections_per_client = 4;
        s.streamless_timeout = Duration::from_secs(1);
    });
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _others = echo(scope, &n1, &e1, &stop);
        let rt = runtime();
        rt.block_on(async {
            // Client 7 opens its four connections and never a stream.
            let started = Instant::now();
            let mut idle = Vec::new();
            for _ in 0..4 {
                idle.push(dial(&cluster, 7).await.expect("within the limit"));
            }
            // The fifth is closed after its handshake, saying why.
            let fifth = dial(&cluster, 7).await.expect("the handshake completes");
            let (code, reason) = close_of(&fifth).await;
            println!("fifth connection of client 7: code {code:?}, {reason:?}");
            assert_eq!(code, Some(LIMIT), "{reason}");
            assert!(reason.contains("too many connections"), "{reason}");
            // Another client is served meanwhile.
            let (_ep, mut good) = good_client(&cluster).await;
            latency(&mut good, Duration::ZERO).await;
            // Keep-alives do not keep a connection with no stream.
            for conn in &idle {
                let (code, reason) = close_of(conn).await;
                assert_eq!(code, Some(NO_STREAM), "{reason}");
                assert!(reason.contains("no request stream"), "{reason}");
            }
            println!("4 streamless connections closed after {:?}", started.elapsed());
            // The good client's connection has its stream: it stays.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            latency(&mut good, Duration::ZERO).await;
            // With its connections gone, client 7 may connect again.
            let again = dial(&cluster, 7).await.unwrap();
            let (mut send, _recv) = again.open_bi().await.unwrap();
            send.write_all(&[KIND_CLIENT]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(again.close_reason().is_none(), "a connection with a stream was closed");
        });
        let s = n1.stats();
        assert!(s.refused_connections >= 5, "{s:?}");
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn connections_beyond_max_connections_are_refused_before_the_handshake() {
    let (cluster, n1, _e1) = node(|s| s.max_connections = 4);
    let rt = runtime();
    rt.block_on(async {
        let mut held = Vec::new();
        for client in 10..14 {
            held.push(dial(&cluster, client).await.expect("within the limit"));
        }
        let refused = dial(&cluster, 14).await.expect_err("over max_connections");
        println!("connection over max_connections: {refused}");
        match &refused {
            quinn::ConnectionError::ConnectionClosed(c) => {
                assert_eq!(c.error_code, quinn::TransportErrorCode::CONNECTION_REFUSED, "{refused}")
            }
            other => panic!("expected CONNECTION_REFUSED, got {other}"),
        }
        // One goes away: its place is free again.
        held.pop().unwrap().close(0u32.into(), b"bye");
        let deadline = Instant::now() + PATIENCE;
        loop {
            match dial(&cluster, 14).await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "never admitted again: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(n1.stats().refused_connections >= 1);
}

/// Opens `streams` client streams on `conn`, each announcing a 100-byte
/// frame, then sends it one byte a second; returns the stop code each got.
async fn slow_sender(conn: quinn::Connection, streams: usize) -> Vec<Option<u32>> {
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let _recv = recv;
            send.write_all(&[KIND_CLIENT, 0, 0, 0, 100]).await.unwrap();
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match send.write_all(&[0]).await {
                    Ok(()) => {}
                    Err(quinn::WriteError::Stopped(code)) => return Some(code.into_inner() as u32),
                    Err(_) => return None,
                }
            }
            None
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes
}

#[test]
fn slow_senders_are_cut_off_and_other_clients_keep_their_latency() {
    const SLOW: usize = 100;
    let limit = Duration::from_secs(5);
    let (cluster, n1, e1) = node(|s| s.frame_timeout = limit);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _others = echo(scope, &n1, &e1, &stop);
        let rt = runtime();
        let (_ep, mut good) = rt.block_on(good_client(&cluster));
        let quiet = rt.block_on(latency(&mut good, Duration::from_millis(1500)));
        // 100 slow streams on 4 connections, from their own thread and runtime.
        let hostile =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let started = Instant::now();
        let slow: Vec<_> = (0..4)
            .map(|i| {
                let conn = hostile.block_on(dial(&cluster, 20 + i)).unwrap();
                hostile.spawn(slow_sender(conn, SLOW / 4))
            })
            .collect();
        wait_stats(&n1, "the slow streams", |s| s.client_streams > SLOW as u64); // and the good one
        let beside = rt.block_on(latency(&mut good, Duration::from_millis(2500)));
        assert!(started.elapsed() < limit, "measured after the slow streams were cut; raise frame_timeout");
        // Wait on the good client's runtime, which answers its keep-alives meanwhile.
        let codes: Vec<Option<u32>> = rt.block_on(async {
            let mut codes = Vec::new();
            for t in slow {
                codes.extend(t.await.unwrap());
            }
            codes
        });
        let cut = started.elapsed();
        assert_eq!(codes.len(), SLOW);
        assert!(codes.iter().all(|&c| c == Some(FRAME_TIMEOUT)), "{codes:?}");
        println!(
            "{SLOW} slow streams stopped with code {FRAME_TIMEOUT} after {cut:?} (frame_timeout {limit:?})"
        );
        assert_eq!(n1.stats().slow_frames, SLOW as u64);
        judge(&format!("{SLOW} slow senders"), quiet, beside, Duration::from_millis(25));
        // The good client idled between frames meanwhile: never timed out.
        rt.block_on(latency(&mut good, Duration::ZERO));
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn thousands_of_streams_wait_for_flow_control_credit() {
    const WANTED: usize = 5000;
    let (cluster, n1, e1) = node(|_| {});
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let others = echo(scope, &n1, &e1, &stop);
        let rt = runtime();
        let (_ep, mut good) = rt.block_on(good_client(&cluster));
        let quiet = rt.block_on(latency(&mut good, Duration::from_millis(1500)));
        let hostile =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let conn = hostile.block_on(dial(&cluster, 30)).unwrap();
        let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        for _ in 0..WANTED {
            let (conn, opened, release) = (conn.clone(), opened.clone(), release.clone());
            hostile.spawn(async move {
                let released = release.notified();
                let Ok((mut send, _recv)) = conn.open_bi().await else { return };
                if send.write_all(&[KIND_CLIENT]).await.is_ok() {
                    opened.fetch_add(1, Ordering::Relaxed);
                }
                released.await;
            });
        }
        wait_stats(&n1, "the first streams", |s| s.client_streams >= 65);
        let beside = rt.block_on(latency(&mut good, Duration::from_millis(2000)));
        let ups = others.0.try_iter().filter(|e| matches!(e, Inbound::ClientUp { client: 30, .. })).count();
        let s = n1.stats();
        println!(
            "{WANTED} streams asked for: {} opened by the client, {ups} served by the replica, {} client streams in all",
            opened.load(Ordering::Relaxed),
            s.client_streams
        );
        assert_eq!(opened.load(Ordering::Relaxed), 64, "streams beyond the limit were opened");
        assert_eq!(ups, 64);
        assert_eq!(s.client_streams, 65);
        judge(&format!("{WANTED} streams asked for"), quiet, beside, Duration::from_millis(25));
        conn.close(0u32.into(), b"done");
        release.notify_waiters();
        drop(hostile);
        stop.store(true, Ordering::Relaxed);
    });
}

/// A replica that answers small frames and only counts large ones, as a
/// replica does with requests it refuses (`Busy`) or cannot decode.
fn answer_small(node: &Node, events: &Events, stop: &AtomicBool) -> u64 {
    let mut large = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(e) = events.0.recv_timeout(Duration::from_millis(20)) else { continue };
        if let Inbound::Client { conn, frame } = e {
            if frame.len() <= 1024 {
                let _ = node.reply(conn, frame);
            } else {
                large += 1;
            }
        }
    }
    large
}

#[test]
fn frames_at_the_size_limit_are_paced_and_one_over_it_stops_the_stream() {
    let (cluster, n1, e1) = node(|_| {});
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let server = scope.spawn(|| answer_small(&n1, &e1, &stop));
        let rt = runtime();
        let (_ep, mut good) = rt.block_on(good_client(&cluster));
        let quiet = rt.block_on(latency(&mut good, Duration::from_millis(1500)));
        let hostile =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let conn = hostile.block_on(dial(&cluster, 40)).unwrap();
        let flood = Arc::new(AtomicBool::new(true));
        let mut frame = Vec::with_capacity(4 + MAX_FRAME_LEN);
        frame.extend_from_slice(&(MAX_FRAME_LEN as u32).to_be_bytes());
        frame.resize(4 + MAX_FRAME_LEN, 0xa5);
        let frame = Bytes::from(frame);
        let sent = {
            let (conn, flood) = (conn.clone(), flood.clone());
            hostile.spawn(async move {
                let (mut send, _recv) = conn.open_bi().await.unwrap();
                send.write_all(&[KIND_CLIENT]).await.unwrap();
                let mut sent = 0u64;
                while flood.load(Ordering::Relaxed) {
                    if send.write_chunk(frame.clone()).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                sent
            })
        };
        wait_stats(&n1, "a frame at the limit", |s| s.bytes_in >= MAX_FRAME_LEN as u64);
        let in_before = n1.stats().bytes_in;
        let at = Instant::now();
        let beside = rt.block_on(latency(&mut good, Duration::from_millis(3000)));
        let rate = (n1.stats().bytes_in - in_before) as f64 / at.elapsed().as_secs_f64() / 1e6;
        flood.store(false, Ordering::Relaxed);
        let sent = hostile.block_on(sent).unwrap();
        println!("flood: {sent} frames of {MAX_FRAME_LEN} bytes sent, taken in at {rate:.0} MB/s");
        // One byte over the limit: the stream is stopped at its length prefix.
        let code = hostile.block_on(async {
            let (mut send, _recv) = conn.open_bi().await.unwrap();
            let mut head = vec![KIND_CLIENT];
            head.extend_from_slice(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes());
            send.write_all(&head).await.unwrap();
            tokio::time::timeout(PATIENCE, send.stopped()).await.expect("stopped in time")
        });
        println!("a frame of MAX_FRAME_LEN + 1 bytes: stream stopped with {code:?}");
        assert_eq!(code.ok().flatten().map(|c| c.into_inner() as u32), Some(BAD_FRAME));
        assert!(n1.stats().rejected_frames >= 1);
        // The flooder is read at `client_bytes_per_second` (32 MiB/s) after a
        // burst of one frame, so it takes a bounded share of the transport
        // thread, and at most a client receive window (1 MiB) of its data
        // queues ahead of the good client's packets. Without the budget it was
        // taken in at 61-229 MB/s and the good client's p99 rose to 221 ms
        // (107x) on a busy machine; with it, 0.6-2.5x (measured).
        let limit = 32.0 * 1024.0 * 1024.0 / 1e6;
        assert!(rate < 2.0 * limit, "intake {rate:.0} MB/s, over its budget of {limit:.0} MB/s");
        assert!(n1.stats().intake_pauses >= 1, "the flooder was never paused");
        judge("frames at the size limit", quiet, beside, Duration::from_millis(25));
        stop.store(true, Ordering::Relaxed);
        let large = server.join().unwrap();
        assert!(large >= 1, "no frame at the limit got through");
        drop(hostile);
    });
}
