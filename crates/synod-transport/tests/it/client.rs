//! Clients: a long-lived pipelined stream, replies in any order, stream lifecycle.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use synod_transport::{ClientEndpoint, Identity, Inbound, ReplyError};
use synod_wire::NodeId;

use crate::util::{echo, runtime, settings, Cluster};

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
            for i in 0..N {
                stream.send(format!("request {i}").into_bytes()).unwrap();
            }
            let mut got = BTreeSet::new();
            for _ in 0..N {
                got.insert(String::from_utf8(stream.recv().await.unwrap().to_vec()).unwrap());
            }
            stream.close();
            (got, ep.stats())
        });
        assert_eq!(got, (0..N).map(|i| format!("request {i}")).collect());
        assert_eq!(ep_stats.frames_in, u64::from(N));
        let (conn, client) = others.wait("ClientUp", |e| match e {
            Inbound::ClientUp { conn, client, .. } => Some((*conn, *client)),
            _ => None,
        });
        assert_eq!(client, 7);
        others.wait("ClientDown", |e| (*e == Inbound::ClientDown { conn }).then_some(()));
        assert!(matches!(n1.reply(conn, &b"late"[..]), Err(ReplyError::Gone { .. })));
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
