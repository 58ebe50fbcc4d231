//! Peer links: three replicas exchange frames on both lanes; a restarted peer is reconnected.

use synod_transport::Lane;
use synod_wire::NodeId;

use crate::util::{settings, wait_stats, Cluster};

#[test]
fn three_replicas_exchange_frames_in_order_on_both_lanes() {
    let mut cluster = Cluster::new(3);
    let (n1, e1) = cluster.start(1, settings());
    let (n2, e2) = cluster.start(2, settings());
    let (n3, e3) = cluster.start(3, settings());
    let nodes = [(&n1, &e1), (&n2, &e2), (&n3, &e3)];
    // Frames queued before the links are up wait for them.
    const N: usize = 50;
    for (node, _) in nodes {
        for to in (1..=3).map(NodeId).filter(|&to| to != node.id()) {
            for i in 0..N {
                node.send(to, format!("c {} {i}", node.id().0).into_bytes()).unwrap();
                node.send_bulk(to, vec![node.id().0 as u8; 20_000 + i]).unwrap();
            }
        }
    }
    for (node, events) in nodes {
        let got = events.peer_frames(4 * N);
        for from in (1..=3u32).filter(|&f| f != node.id().0) {
            let consensus: Vec<Vec<u8>> = got
                .iter()
                .filter(|(f, lane, _)| *f == from && *lane == Lane::Consensus)
                .map(|(_, _, p)| p.clone())
                .collect();
            let want: Vec<Vec<u8>> = (0..N).map(|i| format!("c {from} {i}").into_bytes()).collect();
            assert_eq!(consensus, want, "consensus frames from {from} at {}", node.id().0);
            let bulk: Vec<usize> = got
                .iter()
                .filter(|(f, lane, _)| *f == from && *lane == Lane::Bulk)
                .map(|(_, _, p)| {
                    assert!(p.iter().all(|&b| b == from as u8));
                    p.len()
                })
                .collect();
            assert_eq!(bulk, (0..N).map(|i| 20_000 + i).collect::<Vec<_>>());
        }
        let s = node.stats();
        assert_eq!(s.frames_in, 4 * N as u64);
        assert_eq!(s.rejected_frames + s.rejected_peers + s.handshake_failures, 0, "{s:?}");
    }
    for (node, _) in nodes {
        assert!(node.is_connected(NodeId(1 + node.id().0 % 3)));
    }
    wait_stats(&n1, "all frames written", |s| s.frames_out == 4 * N as u64);
}

#[test]
fn a_restarted_peer_is_reconnected() {
    let mut cluster = Cluster::new(2);
    let (n1, e1) = cluster.start(1, settings());
    let (n2, e2) = cluster.start(2, settings());
    e1.peer_up(2);
    e2.peer_up(1);
    n1.send(NodeId(2), &b"before"[..]).unwrap();
    assert_eq!(e2.peer_frames(1)[0].2, b"before");

    n2.shutdown();
    e1.peer_down(2);
    let (n2, e2) = cluster.start(2, settings());
    e1.peer_up(2);
    e2.peer_up(1);
    n1.send(NodeId(2), &b"after"[..]).unwrap();
    n2.send(NodeId(1), &b"back"[..]).unwrap();
    assert_eq!(e2.peer_frames(1)[0].2, b"after");
    assert_eq!(e1.peer_frames(1)[0].2, b"back");
    assert!(n1.stats().reconnects >= 1);

    // The lower replica restarting: the higher one takes the new connection.
    n1.shutdown();
    e2.peer_down(1);
    let (n1, e1) = cluster.start(1, settings());
    e1.peer_up(2);
    e2.peer_up(1);
    n1.send(NodeId(2), &b"again"[..]).unwrap();
    assert_eq!(e2.peer_frames(1)[0].2, b"again");
}

#[test]
fn a_full_send_queue_refuses_and_counts() {
    let mut cluster = Cluster::new(2);
    let mut s = settings();
    s.consensus_queue = synod_transport::QueueLimit { frames: 3, bytes: 1 << 20 };
    // Node 2 is never started, so nothing drains node 1's queue.
    let (n1, _e1) = cluster.start(1, s);
    for i in 0..3u8 {
        n1.send(NodeId(2), vec![i]).unwrap();
    }
    let err = n1.send(NodeId(2), vec![9]).unwrap_err();
    assert!(matches!(err, synod_transport::SendError::Full { frame, .. } if frame[..] == [9]));
    assert!(matches!(n1.send(NodeId(7), vec![1]), Err(synod_transport::SendError::UnknownPeer { .. })));
    assert_eq!(n1.stats().queue_full_drops, 1);
}

#[test]
fn the_address_book_changes_at_runtime_and_replicas_not_in_it_are_accepted() {
    let mut cluster = Cluster::new(3);
    let book = |ids: &[u32]| {
        synod_transport::address_book(ids.iter().map(|&i| (NodeId(i), cluster.book[&NodeId(i)])))
    };
    // Node 3 knows only node 2; node 1 knows both and dials 3, which accepts
    // it on the cluster CA's word and answers on the same connection.
    let c1 = cluster.config(1, settings());
    let mut c2 = cluster.config(2, settings());
    c2.peers = book(&[2]);
    let mut c3 = cluster.config(3, settings());
    c3.peers = book(&[2, 3]);
    let (n1, e1) = cluster.start_with(c1);
    let (n3, e3) = cluster.start_with(c3);
    e1.peer_up(3);
    e3.peer_up(1);
    assert_eq!(n3.peers(), [NodeId(1), NodeId(2)]);
    assert_eq!(n3.peer_addr(NodeId(1)), None, "dialed in: no address");
    n3.send(NodeId(1), &b"from 3"[..]).unwrap();
    n1.send(NodeId(3), &b"from 1"[..]).unwrap();
    assert_eq!(e1.peer_frames(1)[0].2, b"from 3");
    assert_eq!(e3.peer_frames(1)[0].2, b"from 1");

    // Node 2 starts knowing nobody, then learns node 3 and dials it (2 < 3).
    let (n2, e2) = cluster.start_with(c2);
    assert!(matches!(n2.send(NodeId(3), &b"x"[..]), Err(synod_transport::SendError::UnknownPeer { .. })));
    n2.add_peer(NodeId(3), cluster.book[&NodeId(3)].into()).unwrap();
    n2.send(NodeId(3), &b"from 2"[..]).unwrap();
    e2.wait("PeerUp 3", |e| (*e == synod_transport::Inbound::PeerUp { peer: NodeId(3) }).then_some(()));
    assert_eq!(
        e3.wait("a frame from 2", |e| match e {
            synod_transport::Inbound::Peer { from: NodeId(2), frame, .. } => Some(frame.to_vec()),
            _ => None,
        }),
        b"from 2"
    );
    assert_eq!(n2.peer_addr(NodeId(3)), Some(cluster.book[&NodeId(3)].into()));

    // Dropping node 3 closes the link and refuses further sends to it.
    assert!(n2.remove_peer(NodeId(3)));
    assert!(!n2.remove_peer(NodeId(3)));
    e3.wait("PeerDown 2", |e| (*e == synod_transport::Inbound::PeerDown { peer: NodeId(2) }).then_some(()));
    assert!(!n2.is_connected(NodeId(3)));
    assert!(matches!(n2.send(NodeId(3), &b"x"[..]), Err(synod_transport::SendError::UnknownPeer { .. })));
    assert!(!n2.peers().contains(&NodeId(3)));
}
