//! Mutual TLS and identity: impostors of every kind are refused, and the cluster keeps working.

use std::sync::Arc;

use synod_transport::certs::Ca;
use synod_transport::{tls, Identity};
use synod_wire::NodeId;

use crate::util::{closed_code, raw_dial, raw_endpoint, runtime, settings, wait_stats, Cluster};

/// The application error code for a refused identity (documented in io.rs).
const IDENTITY: u64 = 2;

fn claim(kind: u8, id: u32) -> Vec<u8> {
    let mut h = vec![kind];
    h.extend_from_slice(&id.to_be_bytes());
    h
}

#[test]
fn a_peer_with_another_cas_certificate_is_refused() {
    let mut cluster = Cluster::new(2);
    let (n2, e2) = cluster.start(2, settings());
    // The impostor trusts the real CA (so it accepts node 2) but presents a
    // node-1 certificate from another CA.
    let rogue_ca = Ca::generate("rogue").unwrap();
    let rogue = rogue_ca.issue(Identity::Node(NodeId(1))).unwrap().with_ca(cluster.ca.cert().clone());
    let rt = runtime();
    let outcome = rt.block_on(async {
        let ep = raw_endpoint();
        let cfg = tls::client_config(&rogue, Some(NodeId(2))).unwrap();
        match raw_dial(&ep, cfg, cluster.book[&NodeId(2)]).await {
            // The client's side of a TLS 1.3 handshake may complete before the
            // server has judged its certificate: the refusal shows on first use.
            Ok(conn) => {
                let mut send = conn.open_uni().await.unwrap();
                let _ = send.write_all(&claim(1, 1)).await;
                let reason = conn.closed().await;
                format!("closed: {reason}")
            }
            Err(e) => format!("handshake: {e}"),
        }
    });
    assert!(!outcome.is_empty());
    wait_stats(&n2, "a handshake failure", |s| s.handshake_failures >= 1);
    assert!(!e2.saw_peer_up(1), "the impostor became a peer ({outcome})");
}

#[test]
fn a_node_certificate_claiming_another_nodes_id_is_refused() {
    let mut cluster = Cluster::new(3);
    let (n2, e2) = cluster.start(2, settings());
    let node3 = cluster.creds(Identity::Node(NodeId(3)));
    let rt = runtime();
    let code = rt.block_on(async {
        let ep = raw_endpoint();
        let conn =
            raw_dial(&ep, tls::client_config(&node3, Some(NodeId(2))).unwrap(), cluster.book[&NodeId(2)])
                .await
                .unwrap();
        let mut send = conn.open_uni().await.unwrap();
        send.write_all(&claim(1, 1)).await.unwrap();
        closed_code(&conn).await
    });
    assert_eq!(code, Some(IDENTITY));
    assert!(n2.stats().rejected_peers >= 1);
    assert!(!e2.saw_peer_up(1) && !e2.saw_peer_up(3));
}

#[test]
fn a_dialed_replica_presenting_another_nodes_certificate_is_refused() {
    let mut cluster = Cluster::new(3);
    // Node 1's address book sends "node 2" to where node 3 listens.
    let mut config = cluster.config(1, settings());
    config.peers.insert(NodeId(2), cluster.book[&NodeId(3)].into());
    let (n3, e3) = cluster.start(3, settings());
    let (n1, e1) = cluster.start_with(config);
    e1.peer_up(3);
    e3.peer_up(1);
    wait_stats(&n1, "a refused dial", |s| s.connect_failures >= 1);
    wait_stats(&n3, "a refused handshake", |s| s.handshake_failures >= 1);
    assert!(!e1.saw_peer_up(2));
}

#[test]
fn a_client_certificate_acting_as_a_replica_is_refused() {
    let mut cluster = Cluster::new(2);
    let (n2, e2) = cluster.start(2, settings());
    let client = cluster.creds(Identity::Client(1));
    let rt = runtime();
    let code = rt.block_on(async {
        let ep = raw_endpoint();
        let conn =
            raw_dial(&ep, tls::client_config(&client, Some(NodeId(2))).unwrap(), cluster.book[&NodeId(2)])
                .await
                .unwrap();
        let mut send = conn.open_uni().await.unwrap();
        send.write_all(&claim(1, 1)).await.unwrap();
        closed_code(&conn).await
    });
    assert_eq!(code, Some(IDENTITY));
    assert!(n2.stats().rejected_peers >= 1);
    assert!(!e2.saw_peer_up(1));
}

#[test]
fn a_client_certificate_cannot_start_a_replica() {
    let cluster = Cluster::new(1);
    let mut config = cluster.config(1, settings());
    config.credentials = cluster.creds(Identity::Client(1));
    let err = synod_transport::Node::start(config, |_| {}).unwrap_err();
    assert!(matches!(err, synod_transport::StartError::WrongIdentity { .. }), "{err}");
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let mut cluster = Cluster::new(1);
    let (n1, e1) = cluster.start(1, settings());
    let creds = cluster.creds(Identity::Client(1));
    let rt = runtime();
    let read = rt.block_on(async {
        let verifier = tls::NodeVerifier::new(&creds, Some(NodeId(1)), tls::provider()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
        let ep = raw_endpoint();
        // quinn may report the handshake as complete: look at the first read.
        let conn = match raw_dial(&ep, cfg, cluster.book[&NodeId(1)]).await {
            Ok(conn) => conn,
            Err(e) => return Err(e.to_string()),
        };
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return Err(e.to_string()),
        };
        let _ = send.write_all(&[3, 0, 0, 0, 2, b'h', b'i']).await;
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => Ok(chunk.bytes.to_vec()),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    });
    assert!(read.is_err(), "a client without a certificate read {read:?}");
    wait_stats(&n1, "a handshake failure", |s| s.handshake_failures >= 1);
    assert!(e1.0.try_iter().all(|e| !matches!(e, synod_transport::Inbound::ClientUp { .. })));
}

/// A certificate whose validity ended yesterday.
fn expired(ca: &Ca, id: Identity) -> synod_transport::Credentials {
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    ca.issue_with(id, synod_transport::certs::Validity { not_before: now - 10 * day, not_after: now - day })
        .unwrap()
}

#[test]
fn a_replica_with_an_expired_certificate_is_refused_and_the_error_says_expired() {
    let mut cluster = Cluster::new(2);
    let mut config = cluster.config(2, settings());
    config.credentials = expired(&cluster.ca, Identity::Node(NodeId(2)));
    let (n2, _e2) = cluster.start_with(config);
    let client = cluster.creds(Identity::Client(1));
    let rt = runtime();
    let err = rt.block_on(async {
        let ep =
            synod_transport::ClientEndpoint::new("127.0.0.1:0".parse().unwrap(), client, settings()).unwrap();
        ep.connect(cluster.book[&NodeId(2)], Some(NodeId(2))).await.unwrap_err()
    });
    let text = err.to_string();
    eprintln!("the dialer's error: {text}");
    assert!(text.contains("expired"), "the dialer's error does not say the certificate expired: {text}");
    wait_stats(&n2, "a handshake failure", |s| s.handshake_failures >= 1);
}

#[test]
fn a_peer_dialing_with_an_expired_certificate_is_refused() {
    let mut cluster = Cluster::new(2);
    let (n2, e2) = cluster.start(2, settings());
    // Node 1 dials node 2 (the lower id dials) presenting an expired certificate.
    let mut config = cluster.config(1, settings());
    config.credentials = expired(&cluster.ca, Identity::Node(NodeId(1)));
    let (n1, _e1) = cluster.start_with(config);
    wait_stats(&n2, "a refused handshake", |s| s.handshake_failures >= 1);
    let why = n2.last_handshake_failure().expect("a handshake failure is recorded");
    eprintln!("the refusal: {why}");
    assert!(why.contains("expired"), "the refusal does not say the certificate expired: {why}");
    // In TLS 1.3 the dialer's handshake may finish before node 2 judges its
    // certificate: node 1 then sees its connection closed, and redials with backoff.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(n1.stats().peer_connections < 50, "redialing without backoff: {:?}", n1.stats());
    assert!(!e2.saw_peer_up(1));
}
