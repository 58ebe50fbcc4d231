//! Reads outside the log: modes, where they go, `Unavailable` and its retries.

use std::sync::atomic::Ordering;
use std::time::Duration;

use synod_client::{Client, ClientError, ReadMode, ReadsFrom};
use synod_wire::NodeId;
use synod_wire::{KvCommand, KvResponse, Wire};

use crate::cluster::{runtime, TestCluster};

#[test]
fn every_mode_reads_the_value_and_only_the_log_takes_a_slot() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let client = Client::connect(cluster.client_config()).await.unwrap();
        client.put("k", "v").await.unwrap();
        assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(client.get_stale("k").await.unwrap(), Some(b"v".to_vec()));
        for mode in ReadMode::ALL {
            assert_eq!(client.get_with("k", mode).await.unwrap(), Some(b"v".to_vec()), "{mode}");
            assert_eq!(client.get_with("absent", mode).await.unwrap(), None, "{mode}");
        }
        // Any state machine's query, with the store's own answer bytes.
        let query = KvCommand::Get { key: b"k".to_vec() }.encode().unwrap();
        let answer = client.read(query, ReadMode::Linearizable).await.unwrap();
        assert_eq!(KvResponse::decode(&answer).unwrap(), KvResponse::Value(Some(b"v".to_vec())));
        // The store serves only gets as reads: anything else is its `Invalid`, changing nothing.
        let put = KvCommand::Put { key: b"k".to_vec(), value: b"w".to_vec() }.encode().unwrap();
        let answer = client.read(put, ReadMode::Stale).await.unwrap();
        assert!(matches!(KvResponse::decode(&answer), Ok(KvResponse::Invalid(_))), "{answer:?}");
    });
    // The put and the two gets through the log.
    assert_eq!(shared.stats().applied, 3);
    assert_eq!(shared.value(b"k"), Some(b"v".to_vec()));
    assert_eq!(shared.seen(1).reads, [4, 2, 4]);
}

#[test]
fn reads_go_to_the_connected_replica_even_when_it_does_not_lead() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let client = Client::connect(cluster.client_config()).await.unwrap();
        client.put("k", "v").await.unwrap();
        // Replica 1, where the client is, stops leading: it still serves reads
        // (a follower gets a read index from the leader), with no redirect.
        shared.set_leader(Some(2));
        for _ in 0..10 {
            assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
        }
        assert_eq!(client.get_stale("k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(shared.seen(1).redirects, 0);
        assert_eq!(shared.seen(2).streams, 0);
        // A write is redirected to the leader, and the reads follow the client there.
        client.put("k", "w").await.unwrap();
        assert_eq!(client.get("k").await.unwrap(), Some(b"w".to_vec()));
    });
    assert_eq!(shared.seen(1).reads, [10, 0, 1]);
    assert_eq!(shared.seen(2).reads, [1, 0, 0]);
}

#[test]
fn reads_from_a_replica_go_there_while_commands_and_lease_reads_go_to_the_leader() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let config = cluster.client_config().with_reads_from(ReadsFrom::Replica(NodeId(3)));
        let client = Client::connect(config).await.unwrap();
        client.put("k", "v").await.unwrap();
        for _ in 0..5 {
            assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
        }
        assert_eq!(client.get_stale("k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(client.get_with("k", ReadMode::Lease).await.unwrap(), Some(b"v".to_vec()));
        // Many reads at once, on the reader's one stream.
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let client = client.clone();
            reads.spawn(async move { client.get("k").await });
        }
        while let Some(r) = reads.join_next().await {
            assert_eq!(r.unwrap().unwrap(), Some(b"v".to_vec()));
        }
    });
    // Replica 1 leads: it has the session, the put (the one command applied) and the lease
    // read; replica 3 the rest.
    assert_eq!(shared.seen(3).reads, [55, 0, 1]);
    assert_eq!(shared.seen(1).reads, [0, 1, 0]);
    assert_eq!(shared.seen(2).reads, [0, 0, 0]);
    assert_eq!(shared.stats().applied, 1);
}

#[test]
fn a_reader_whose_replica_goes_away_reads_from_the_next() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let config = cluster
            .client_config()
            .with_request_timeout(Duration::from_millis(200))
            .with_reads_from(ReadsFrom::Replica(NodeId(2)));
        let client = Client::connect(config).await.unwrap();
        client.put("k", "v").await.unwrap();
        assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
        cluster.shutdown(2);
        for _ in 0..3 {
            assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
        }
    });
    assert_eq!(shared.seen(2).reads, [1, 0, 0]);
    assert_eq!(shared.seen(3).reads, [3, 0, 0]);
}

#[test]
fn spread_readers_use_every_replica() {
    let cluster = TestCluster::new(3);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..24 {
            let config = cluster.client_config().with_reads_from(ReadsFrom::Spread);
            clients.push(Client::connect(config).await.unwrap());
        }
        clients[0].put("k", "v").await.unwrap();
        for client in &clients {
            assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
        }
    });
    // 24 clients on 3 replicas drawn at random: each replica has some (all on one: 3^-23).
    for node in 1..=3 {
        assert!(shared.seen(node).reads[0] > 0, "replica {node} served no read");
    }
}

#[test]
fn an_unavailable_read_is_asked_again_until_served() {
    let cluster = TestCluster::new(1);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let client = Client::connect(cluster.client_config()).await.unwrap();
        client.put("k", "v").await.unwrap();
        shared.unavailable_reads.store(3, Ordering::SeqCst);
        assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
    });
    assert_eq!(shared.seen(1).reads, [4, 0, 0]);
}

#[test]
fn a_read_that_stays_unavailable_times_out_never_an_old_value_and_the_client_carries_on() {
    let cluster = TestCluster::new(1);
    let shared = cluster.shared.clone();
    runtime().block_on(async {
        let config = cluster
            .client_config()
            .with_request_timeout(Duration::from_millis(100))
            .with_deadline(Duration::from_millis(600));
        let client = Client::connect(config).await.unwrap();
        client.put("k", "v").await.unwrap();
        shared.unavailable_reads.store(usize::MAX, Ordering::SeqCst);
        assert_eq!(client.get("k").await, Err(ClientError::Timeout));
        // A stale read does not need a leader.
        assert_eq!(client.get_stale("k").await.unwrap(), Some(b"v".to_vec()));
        shared.unavailable_reads.store(0, Ordering::SeqCst);
        assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
    });
    assert!(shared.seen(1).reads[0] >= 2);
}

#[test]
fn read_modes_parse_and_print() {
    for mode in ReadMode::ALL {
        assert_eq!(mode.name().parse::<ReadMode>(), Ok(mode));
        assert_eq!(mode.to_string(), mode.name());
    }
    assert_eq!("through-log".parse::<ReadMode>(), Ok(ReadMode::ThroughLog));
    assert!("fast".parse::<ReadMode>().unwrap_err().contains("linearizable, lease, stale or log"));
    assert_eq!(ReadMode::default(), ReadMode::Linearizable);
    assert_eq!(ReadMode::ThroughLog.wire(), None);
    assert_eq!(ReadMode::from(synod_wire::ReadMode::Stale), ReadMode::Stale);
}
