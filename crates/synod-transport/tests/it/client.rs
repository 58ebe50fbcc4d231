//! Clients: a long-lived pipelined stream, replies in any order, stream lifecycle.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use synod_transport::{ClientEndpoint, ClientStream, Identity, Inbound, Node, RecvError, ReplyError};
use synod_wire::NodeId;

use crate::util::{echo, runtime, settings, Cluster, Events};

/// Sends `n` numbered requests on `stream` before reading any reply, then
/// reads `n` replies: what came back.
async fn round_trip(stream: &mut ClientStream, n: u32) -> BTreeSet<String> {
    for i in 0..n {
        stream.send(format!("request {i}").into_bytes()).unwrap();
    }
    let mut got = BTreeSet::new();
    for _ in 0..n {
        got.insert(String::from_utf8(stream.recv().await.unwrap().to_vec()).unwrap());
    }
    got
}

/// Waits for a client stream's `ClientUp` and then its `ClientDown` on
/// `events`, checks that `node` refuses a reply to it after that, and returns
/// the client number it came with.
fn came_and_went(events: &Events, node: &Node) -> u32 {
    let (conn, client) = events.wait("ClientUp", |e| match e {
        Inbound::ClientUp { conn, client, .. } => Some((*conn, *client)),
        _ => None,
    });
    events.wait("ClientDown", |e| (*e == Inbound::ClientDown { conn }).then_some(()));
    assert!(matches!(node.reply(conn, &b"late"[..]), Err(ReplyError::Gone { .. })));
    client
}

#[test]
fn a_client_pipelines_requests_and_gets_every_reply() {
    let mut cluster = Cluster::new(1);
    let (n1, e1) = cluster.start(1, settings());
    let creds = cluster.creds(Identity::Client(7));
    let addr = cluster.book[&NodeId(1)];
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let others = echo(s, &n1, &e1, &stop);
        let rt = runtime();
        const N: u32 = 2000;
        let (got, ep_stats) = rt.block_on(async {
            let ep = ClientEndpoint::new("127.0.0.1:0".parse().unwrap(), creds, settings()).unwrap();
            let mut stream = ep.connect(addr, Some(NodeId(1))).await.unwrap();
            // All requests go out before any reply is read: pipelining on one stream.
            let got = round_trip(&mut stream, N).await;
            stream.close();
            (got, ep.stats())
        });
        assert_eq!(got, (0..N).map(|i| format!("request {i}")).collect());
        assert_eq!(ep_stats.frames_in, u64::from(N));
        assert_eq!(came_and_went(&others, &n1), 7);
        assert_eq!(n1.stats().client_streams, 1);
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn a_client_reaching_the_wrong_replica_refuses_it() {
    let mut cluster = Cluster::new(2);
    let (_n1, _e1) = cluster.start(1, settings());
    let creds = cluster.creds(Identity::Client(1));
    let addr = cluster.book[&NodeId(1)];
    let rt = runtime();
    let result = rt.block_on(async {
        let ep = ClientEndpoint::new("127.0.0.1:0".parse().unwrap(), creds, settings()).unwrap();
        ep.connect(addr, Some(NodeId(2))).await.map(|_| ())
    });
    assert!(result.is_err());
}

#[test]
fn a_local_stream_reaches_its_replica_in_process_and_closes_with_it() {
    let mut cluster = Cluster::new(2);
    let mut s = settings();
    s.max_connections_per_client = 2;
    let (n1, e1) = cluster.start(1, s);
    let creds = cluster.creds(Identity::Client(7));
    let addr = cluster.book[&NodeId(1)];
    let other = cluster.book[&NodeId(2)];
    let stop = AtomicBool::new(false);
    let rt = runtime();
    let a = std::thread::scope(|s| {
        let others = echo(s, &n1, &e1, &stop);
        // Stops the echo thread also when an assertion fails, so the scope ends.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        const N: u32 = 2000;
        let ep = rt.block_on(async {
            ClientEndpoint::new("127.0.0.1:0".parse().unwrap(), creds, settings())
                .unwrap()
                .with_local(n1.local_clients())
        });
        let (got, ep_stats) = rt.block_on(async {
            // The address is not dialed: the stream to replica 1 is in-process.
            let mut stream = ep.connect(other, Some(NodeId(1))).await.unwrap();
            assert!(stream.is_local());
            assert_eq!(stream.remote_addr(), addr);
            let got = round_trip(&mut stream, N).await;
            stream.close();
            assert!(stream.send(&b"after close"[..]).is_err());
            (got, ep.stats())
        });
        assert_eq!(got, (0..N).map(|i| format!("request {i}")).collect());
        assert_eq!(ep_stats.frames_in, u64::from(N));
        assert_eq!(came_and_went(&others, &n1), 7);
        assert_eq!(n1.stats().frames_in, u64::from(N));

        // Local streams count against max_connections_per_client (2 here).
        let (a, b, third) = rt.block_on(async {
            let a = ep.connect(addr, Some(NodeId(1))).await.unwrap();
            let b = ep.connect(addr, Some(NodeId(1))).await.unwrap();
            (a, b, ep.connect(addr, Some(NodeId(1))).await.map(|_| ()))
        });
        let err = third.unwrap_err().to_string();
        assert!(err.contains("too many connections: client 7 has 2 open on n1"), "{err}");
        drop(b);
        a
    });
    // The replica shuts down: the stream's replies end, and it takes no more requests.
    let mut a = a;
    drop(n1);
    let end = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), a.recv()).await });
    assert!(matches!(end, Ok(Err(RecvError::Finished))), "{end:?}");
    assert!(a.send(&b"after shutdown"[..]).is_err());
}
