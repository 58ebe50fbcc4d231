//! Hostile frames: garbage and oversized frames close their own stream, are counted, and disturb nobody else.

use std::sync::atomic::{AtomicBool, Ordering};

use synod_transport::{tls, ClientEndpoint, Identity, Settings};
use synod_wire::NodeId;

use crate::util::{echo, raw_dial, raw_endpoint, runtime, settings, wait_stats, Cluster};

const LIMIT: usize = 1024;

#[test]
fn garbage_and_oversized_frames_close_only_their_stream() {
    let mut cluster = Cluster::new(2);
    let (n1, e1) = cluster.start(1, settings());
    let (n2, e2) = cluster.start(2, Settings { max_frame_len: LIMIT, ..settings() });
    let creds = cluster.creds(Identity::Client(1));
    let addr = cluster.book[&NodeId(2)];
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let others = echo(s, &n2, &e2, &stop);
        e1.peer_up(2);
        others.peer_up(1);
        let rt = runtime();
        rt.block_on(async {
            let ep = ClientEndpoint::new("127.0.0.1:0".parse().unwrap(), creds.clone(), settings()).unwrap();
            let mut good = ep.connect(addr, Some(NodeId(2))).await.unwrap();
            good.send(&b"one"[..]).unwrap();
            assert_eq!(good.recv().await.unwrap(), &b"one"[..]);

            // Oversized: refused by the replica, which closes that stream.
            let mut big = ep.connect(addr, Some(NodeId(2))).await.unwrap();
            big.send(vec![0u8; LIMIT + 1]).unwrap();
            assert!(big.recv().await.is_err());

            // Garbage: a length prefix of 4 GiB, and a stream of unknown kind, on raw streams.
            let raw = raw_endpoint();
            let conn =
                raw_dial(&raw, tls::client_config(&creds, Some(NodeId(2))).unwrap(), addr).await.unwrap();
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&[3, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.unwrap();
            assert!(recv.read_chunk(usize::MAX, true).await.map(|c| c.is_none()).unwrap_or(true));
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&[0x42; 64]).await.unwrap();
            assert!(recv.read_chunk(usize::MAX, true).await.is_err());

            // The well-behaved stream, on the same endpoint, is still served.
            good.send(&b"two"[..]).unwrap();
            assert_eq!(good.recv().await.unwrap(), &b"two"[..]);
        });
        // A peer's oversized frame closes the link, which is rebuilt.
        n1.send(NodeId(2), vec![1u8; LIMIT + 1]).unwrap();
        e1.peer_down(2);
        e1.peer_up(2);
        n1.send(NodeId(2), &b"small"[..]).unwrap();
        others.wait("the small frame", |e| match e {
            synod_transport::Inbound::Peer { frame, .. } => (frame[..] == b"small"[..]).then_some(()),
            _ => None,
        });
        let s = wait_stats(&n2, "four rejected frames", |s| s.rejected_frames >= 4);
        assert_eq!(s.rejected_frames, 4, "{s:?}");
        stop.store(true, Ordering::Relaxed);
    });
}
