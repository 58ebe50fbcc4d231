//! synod-client integration tests: a real client against real QUIC replicas that apply through the real Applier.
//!
//! Exactly-once is checked where it is decided, in the applier's counters
//! and the store's contents; no test asserts on how long anything takes.

mod cluster;
mod reads;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use synod_client::{CasOutcome, Client, ClientConfig, ClientError, ConfigError, ConnectError, ReadMode};
use synod_state_machine::SessionConfig;
use synod_wire::{KvResponse, NodeId, Wire};

use crate::cluster::{runtime, wait_for, TestCluster, PATIENCE};

#[test]
fn register_then_put_get_delete_cas() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let client = Client::connect(cluster.client_config()).await.unwrap();
        assert!(shared.applier.lock().unwrap().sessions().contains(client.session()));

        assert_eq!(client.get("k").await.unwrap(), None);
        client.put("k", "v1").await.unwrap();
        assert_eq!(client.get("k").await.unwrap(), Some(b"v1".to_vec()));
        let refused = client.cas("k", Some(b"nope"), Some(b"v2")).await.unwrap();
        assert_eq!(refused, CasOutcome { swapped: false, previous: Some(b"v1".to_vec()) });
        let swapped = client.cas("k", Some(b"v1"), Some(b"v2")).await.unwrap();
        assert_eq!(swapped, CasOutcome { swapped: true, previous: Some(b"v1".to_vec()) });
        let created = client.cas("fresh", None, Some(b"x")).await.unwrap();
        assert!(created.swapped);
        assert_eq!(client.delete("k").await.unwrap(), Some(b"v2".to_vec()));
        assert_eq!(client.delete("k").await.unwrap(), None);
        assert_eq!(client.get("fresh").await.unwrap(), Some(b"x".to_vec()));

        // `call` carries any bytes; the store answers a command it cannot decode as invalid.
        let raw = client.call(b"not a command".to_vec()).await.unwrap();
        assert!(matches!(KvResponse::decode(&raw), Ok(KvResponse::Invalid(_))));
    });
    let stats = shared.stats();
    // The three gets were reads outside the log: no slot, no session.
    assert_eq!(stats.applied, 7);
    assert_eq!(stats.duplicates, 0);
    assert_eq!(shared.value(b"fresh"), Some(b"x".to_vec()));
    assert_eq!(shared.seen(1).registers, 1);
    assert_eq!(shared.seen(1).reads, [3, 0, 0]);
}

#[test]
fn a_follower_redirects_and_the_client_follows() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    shared.set_leader(Some(2));
    runtime().block_on(async {
        // The client starts with replica 1, the first of the address book.
        let client = Client::connect(cluster.client_config()).await.unwrap();
        client.put("a", "1").await.unwrap();
        assert_eq!(client.get("a").await.unwrap(), Some(b"1".to_vec()));
    });
    assert!(shared.seen(1).redirects >= 1);
    assert_eq!(shared.seen(1).ops, 0);
    assert_eq!(shared.seen(2).registers, 1);
    assert_eq!(shared.seen(2).ops, 1);
    // The read went to the replica the client is connected to, the leader it followed.
    assert_eq!(shared.seen(2).reads, [1, 0, 0]);
    assert_eq!(shared.stats().applied, 1);
}

#[test]
fn duplicated_redirects_do_not_multiply_requests() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    shared.duplicate_redirects.store(true, Ordering::SeqCst);
    runtime().block_on(async {
        // A generous per-attempt timeout: only redirects move this client.
        let config = cluster.client_config().with_request_timeout(Duration::from_secs(5));
        let client = Client::connect(config).await.unwrap();
        // Replica 1, where the client is, stops leading: every request it gets is redirected twice.
        shared.set_leader(Some(2));
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let c = client.clone();
                tokio::spawn(async move { c.put(format!("k{i}"), format!("v{i}")).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
    });
    assert!(shared.seen(1).redirects >= 1);
    // Each request reached the leader exactly once: no redirect caused a second resend.
    assert_eq!(shared.seen(2).ops, 50);
    assert_eq!(shared.seen(2).streams, 1);
    let stats = shared.stats();
    assert_eq!((stats.applied, stats.duplicates), (50, 0));
}

#[test]
fn the_connected_replica_shuts_down_mid_stream() {
    let cluster = Arc::new(TestCluster::new(3));
    let shared = cluster.shared.clone();
    const N: usize = 20;
    runtime().block_on(async {
        let config = cluster.client_config().with_request_timeout(Duration::from_secs(5));
        let client = Client::connect(config).await.unwrap();
        // Replica 1 applies every request but answers none: all are outstanding.
        shared.withhold.store(true, Ordering::SeqCst);
        let calls: Vec<_> = (0..N)
            .map(|i| {
                let c = client.clone();
                tokio::spawn(async move { c.put(format!("k{i}"), format!("v{i}")).await })
            })
            .collect();
        wait_for("every request applied on replica 1", || shared.stats().applied == N as u64).await;
        // Replica 2 takes over (with the same replicated state) and replica 1 goes away.
        shared.set_leader(Some(2));
        shared.withhold.store(false, Ordering::SeqCst);
        let c2 = cluster.clone();
        tokio::task::spawn_blocking(move || c2.shutdown(1)).await.unwrap();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(client.get("k7").await.unwrap(), Some(b"v7".to_vec()));
    });
    let stats = shared.stats();
    // Every request was resent with its sequence number and answered from the session cache.
    assert_eq!(stats.applied, N as u64, "each put applied exactly once (the get is a read outside the log)");
    assert!(stats.duplicates >= N as u64);
    assert!(shared.seen(2).ops >= N as u64);
    for i in 0..N {
        assert_eq!(shared.value(format!("k{i}").as_bytes()), Some(format!("v{i}").into_bytes()));
    }
}

#[test]
fn a_lost_reply_is_retried_and_applied_once() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let client = Client::connect(cluster.client_config()).await.unwrap();
        shared.drop_replies.store(1, Ordering::SeqCst);
        let swapped = client.cas("counter", None, Some(b"1")).await.unwrap();
        // The first attempt applied and its answer was lost; the retry got the same answer.
        assert_eq!(swapped, CasOutcome { swapped: true, previous: None });
    });
    let stats = shared.stats();
    assert_eq!(stats.applied, 1);
    assert!(stats.duplicates >= 1);
    assert_eq!(shared.value(b"counter"), Some(b"1".to_vec()));
}

#[test]
fn busy_is_retried_after_a_pause() {
    let cluster = TestCluster::new(1);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let client = Client::connect(cluster.client_config()).await.unwrap();
        shared.busy.store(3, Ordering::SeqCst);
        client.put("k", "v").await.unwrap();
    });
    assert_eq!(shared.busy.load(Ordering::SeqCst), 0);
    assert_eq!(shared.stats().applied, 1);
    assert_eq!(shared.seen(1).ops, 4);
}

#[test]
fn many_concurrent_calls_are_pipelined_on_one_stream() {
    let cluster = TestCluster::new(1);
    let shared = cluster.shared.clone();
    const TASKS: usize = 40;
    const EACH: usize = 25;
    runtime().block_on(async {
        let client = Client::connect(cluster.client_config()).await.unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let c = client.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        c.put(format!("{t}/{i}"), format!("{i}")).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // A small window: calls wait for a slot, and the acknowledgement keeps up.
        let narrow = Client::connect(cluster.client_config().with_max_in_flight(4)).await.unwrap();
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let c = narrow.clone();
                tokio::spawn(async move { c.put(format!("narrow/{i}"), "x").await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
    });
    let stats = shared.stats();
    assert_eq!((stats.applied, stats.duplicates), ((TASKS * EACH + 100) as u64, 0));
    assert_eq!(shared.seen(1).streams, 2, "one stream per client");
    assert_eq!(shared.applier.lock().unwrap().machine().len(), TASKS * EACH + 100);
}

#[test]
fn an_expired_session_is_a_typed_error() {
    let sessions = SessionConfig { expiry_ms: 1_000, ..SessionConfig::default() };
    let cluster = TestCluster::with_sessions(1, sessions);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let client = Client::connect(cluster.client_config()).await.unwrap();
        client.put("k", "v").await.unwrap();
        // The leader's clock moves past the session's expiry.
        shared.clock_ms.store(1_000_000, Ordering::SeqCst);
        assert_eq!(client.put("k", "w").await, Err(ClientError::SessionExpired));
        // Later calls fail at once, without reaching a replica.
        let ops = shared.seen(1).ops;
        assert_eq!(client.get_with("k", ReadMode::ThroughLog).await, Err(ClientError::SessionExpired));
        assert_eq!(shared.seen(1).ops, ops);
        // A read outside the log needs no session.
        assert_eq!(client.get("k").await, Ok(Some(b"v".to_vec())));
    });
    assert_eq!(shared.value(b"k"), Some(b"v".to_vec()));
}

#[test]
fn a_call_without_an_answer_times_out_and_the_client_carries_on() {
    let cluster = TestCluster::new(2);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let config = cluster
            .client_config()
            .with_request_timeout(Duration::from_millis(100))
            .with_deadline(Duration::from_millis(600));
        let client = Client::connect(config).await.unwrap();
        shared.withhold.store(true, Ordering::SeqCst);
        assert_eq!(client.put("lost", "1").await, Err(ClientError::Timeout));
        shared.withhold.store(false, Ordering::SeqCst);
        // The abandoned request no longer holds back the session.
        client.put("k", "v").await.unwrap();
        assert_eq!(client.get("lost").await.unwrap(), Some(b"1".to_vec()), "it did apply, once");
    });
    assert_eq!(shared.value(b"k"), Some(b"v".to_vec()));
}

#[test]
fn connecting_to_nothing_fails_with_the_address() {
    let cluster = TestCluster::new(1);
    // An address nobody serves.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let book = BTreeMap::from([(NodeId(1), silent)]);
    let config = ClientConfig::from_cert_dir(cluster.dir.path(), 1, book)
        .unwrap()
        .with_request_timeout(Duration::from_millis(200));
    let result = runtime().block_on(Client::connect(config));
    match result {
        Err(ConnectError::Connect { addr, .. }) => assert_eq!(addr, silent),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(matches!(
        ClientConfig::from_cert_dir(cluster.dir.path(), 1, BTreeMap::<NodeId, std::net::SocketAddr>::new()),
        Err(ConfigError::NoReplicas)
    ));
    assert!(matches!(
        ClientConfig::from_cert_dir(cluster.dir.path(), 9, cluster.book.clone()),
        Err(ConfigError::Certs { .. })
    ));
}

#[test]
fn status_asks_the_named_replica_even_with_no_leader_and_times_out_on_a_dead_one() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    shared.set_leader(None);
    let config = cluster.client_config().with_request_timeout(Duration::from_millis(500));
    runtime().block_on(async {
        for n in 1..=3 {
            let status = synod_client::admin::status(&config, NodeId(n)).await.unwrap();
            assert_eq!((status.id, status.leader), (NodeId(n), None));
        }
        assert!(matches!(
            synod_client::admin::status(&config, NodeId(9)).await,
            Err(synod_client::admin::StatusError::UnknownReplica(NodeId(9)))
        ));
    });
    shared.set_leader(Some(2));
    // A stopped replica is a row of its own; the others still answer.
    cluster.shutdown(3);
    let answers = runtime().block_on(synod_client::admin::status_all(&config));
    let ids: Vec<NodeId> = answers.iter().map(|(n, _)| *n).collect();
    assert_eq!(ids, vec![NodeId(1), NodeId(2), NodeId(3)]);
    let roles: Vec<_> = answers[..2].iter().map(|(_, a)| a.as_ref().unwrap().role).collect();
    assert_eq!(roles, vec![synod_wire::Role::Follower, synod_wire::Role::Leader]);
    assert!(answers[2].1.is_err(), "{:?}", answers[2].1);
    // An address nobody serves: an error within about the request timeout, not a hang.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let book = BTreeMap::from([(NodeId(1), silent)]);
    let config = ClientConfig::from_cert_dir(cluster.dir.path(), 1, book)
        .unwrap()
        .with_request_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert!(runtime().block_on(synod_client::admin::status(&config, NodeId(1))).is_err());
    assert!(started.elapsed() < PATIENCE);
}

#[test]
fn undecodable_replies_are_ignored() {
    let cluster = TestCluster::new(1);
    let shared = cluster.shared.clone();
    shared.garbage.store(true, Ordering::SeqCst);
    runtime().block_on(async {
        let client = Client::connect(cluster.client_config()).await.unwrap();
        client.put("k", "v").await.unwrap();
        assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
    });
    assert_eq!(shared.stats().applied, 1);
    assert_eq!(shared.seen(1).reads, [1, 0, 0]);
}

#[test]
fn a_client_that_knows_only_old_members_learns_the_new_ones_from_the_cluster() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    // The client's file names replicas 1 and 2; replica 3 leads, and only
    // the membership the replicas report has its address.
    shared.set_leader(Some(3));
    let old: BTreeMap<NodeId, std::net::SocketAddr> =
        cluster.book.iter().filter(|(&n, _)| n != NodeId(3)).map(|(&n, &a)| (n, a)).collect();
    let config = ClientConfig::from_cert_dir(cluster.dir.path(), 1, old)
        .unwrap()
        .with_request_timeout(Duration::from_millis(300))
        .with_deadline(PATIENCE);
    runtime().block_on(async {
        let client = Client::connect(config).await.unwrap();
        client.put("a", "1").await.unwrap();
        assert_eq!(client.get("a").await.unwrap(), Some(b"1".to_vec()));
    });
    assert_eq!(shared.seen(3).registers, 1);
    assert_eq!(shared.seen(3).ops, 1);
    assert_eq!(shared.seen(3).reads, [1, 0, 0]);
    assert_eq!(shared.stats().applied, 1);
}

#[test]
fn a_client_whose_replicas_all_left_follows_the_membership_it_learned() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    // The client knows replica 1 only, which leads at first.
    let one: BTreeMap<NodeId, std::net::SocketAddr> = [(NodeId(1), cluster.book[&NodeId(1)])].into();
    let config = ClientConfig::from_cert_dir(cluster.dir.path(), 1, one)
        .unwrap()
        .with_request_timeout(Duration::from_millis(300))
        .with_deadline(PATIENCE);
    let rt = runtime();
    let client = rt.block_on(async {
        let client = Client::connect(config).await.unwrap();
        client.put("a", "1").await.unwrap();
        client
    });
    // Replica 2 takes over and the membership says 1 left; replica 1 answers
    // one redirect (to 2, whose address the client lacks), then goes away.
    shared.members.lock().unwrap().remove(&NodeId(1));
    shared.set_leader(Some(2));
    rt.block_on(async {
        client.put("b", "2").await.unwrap();
    });
    assert_eq!(shared.seen(2).ops, 1);
    cluster.shutdown(1);
    rt.block_on(async {
        client.put("c", "3").await.unwrap();
        assert_eq!(client.get("a").await.unwrap(), Some(b"1".to_vec()));
    });
    assert_eq!(shared.seen(2).ops, 2);
    assert_eq!(shared.seen(2).reads, [1, 0, 0]);
    assert_eq!(shared.stats().duplicates, 0);
}
