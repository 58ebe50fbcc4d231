//! Reads outside the log (`ClientFrame::Read`) on a real cluster: ReadIndex
//! on the leader and on followers, stale reads, and what a read answers
//! when it cannot be served as asked.

use std::time::Duration;

use synod_wire::{KvCommand, KvResponse, NodeId, Outcome, ReadMode, Wire};

use crate::cluster::{Cluster, RawClient};

fn put(client: &mut RawClient, key: &[u8], value: &[u8]) {
    let answer = client.op(&KvCommand::Put { key: key.to_vec(), value: value.to_vec() });
    assert_eq!(answer, KvResponse::Stored);
}

#[test]
fn linearizable_and_stale_reads_are_served_by_every_replica() {
    let cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut writer = RawClient::registered(&cluster, leader);
    put(&mut writer, b"k", b"v1");
    // Straight after the acknowledgement, before the followers need have
    // applied it: a linearizable read waits for the leader's commit point.
    for id in cluster.ids() {
        let mut reader = RawClient::connect(&cluster, id);
        assert_eq!(reader.get(b"k", ReadMode::Linearizable), Some(b"v1".to_vec()), "replica {id}");
        assert_eq!(reader.get(b"missing", ReadMode::Linearizable), None, "replica {id}");
        // Without leases, lease reads are served as linearizable ones.
        assert_eq!(reader.get(b"k", ReadMode::Lease), Some(b"v1".to_vec()), "replica {id}");
    }
    // A stale read is whatever the replica applied: once all applied the write, it is there.
    cluster.await_identical(Duration::from_secs(10));
    for id in cluster.ids() {
        let mut reader = RawClient::connect(&cluster, id);
        assert_eq!(reader.get(b"k", ReadMode::Stale), Some(b"v1".to_vec()), "replica {id}");
    }
    // Reads enter no log: the slots applied do not move. (A new leader's
    // no-op would, so a window in which the leader changed is tried again.)
    let mut reader = RawClient::connect(&cluster, leader);
    for attempt in 0.. {
        let before = cluster.await_identical(Duration::from_secs(10));
        for _ in 0..20 {
            for mode in [ReadMode::Linearizable, ReadMode::Stale] {
                reader.get(b"k", mode);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let after = cluster.await_identical(Duration::from_secs(10));
        if after.ballot != before.ballot && attempt < 5 {
            continue;
        }
        assert_eq!((after.applied, after.digest), (before.applied, before.digest));
        break;
    }
}

#[test]
fn a_read_never_returns_a_value_older_than_an_acknowledged_write() {
    let cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut writer = RawClient::registered(&cluster, leader);
    let mut readers: Vec<(NodeId, RawClient)> =
        cluster.ids().into_iter().map(|id| (id, RawClient::connect(&cluster, id))).collect();
    for i in 0..150u32 {
        let value = i.to_string().into_bytes();
        put(&mut writer, b"counter", &value);
        // Each time on another replica, followers included, at once.
        let (id, reader) = &mut readers[i as usize % 3];
        let read = reader.get(b"counter", ReadMode::Linearizable);
        assert_eq!(read, Some(value), "read {i} on replica {id} returned an older value");
    }
}

#[test]
fn a_replica_with_no_leader_answers_unavailable_never_a_value() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut writer = RawClient::registered(&cluster, leader);
    put(&mut writer, b"k", b"v");
    cluster.await_identical(Duration::from_secs(10));
    let ids = cluster.ids();
    let lone = ids.iter().copied().find(|&id| id != leader).expect("a follower");
    let mut reader = RawClient::connect(&cluster, lone);
    for id in ids.into_iter().filter(|&id| id != lone) {
        cluster.stop(id);
    }
    let query = KvCommand::Get { key: b"k".to_vec() }.encode().unwrap();
    // Reads asked of the stopped leader fail once they get no index in time;
    // then the replica knows no leader at all. Never a value.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut unavailable = 0;
    while unavailable < 3 {
        match reader.read(query.clone(), ReadMode::Linearizable) {
            Outcome::Unavailable(why) => {
                assert!(why.contains("retry"), "{why}");
                unavailable += 1;
            }
            other => panic!("a replica cut off from any majority answered {other:?}"),
        }
        assert!(std::time::Instant::now() < deadline);
    }
    // A stale read is still served, from what it applied.
    assert_eq!(reader.get(b"k", ReadMode::Stale), Some(b"v".to_vec()));
}

#[test]
fn a_state_machine_without_reads_answers_unavailable() {
    let cluster = Cluster::start_with(1, crate::Scripted::default);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut reader = RawClient::connect(&cluster, leader);
    for mode in [ReadMode::Stale, ReadMode::Linearizable] {
        let mut answer = reader.read(b"anything".to_vec(), mode);
        for _ in 0..50 {
            // A new leader serves no linearizable read before its first commit.
            if !matches!(&answer, Outcome::Unavailable(why) if why.contains("retry")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            answer = reader.read(b"anything".to_vec(), mode);
        }
        match answer {
            Outcome::Unavailable(why) => assert!(why.contains("serves no reads outside the log"), "{why}"),
            other => panic!("{mode:?}: {other:?}"),
        }
    }
}

/// The real client reads its own writes back, linearizably and outside the
/// log, while the leader it sits on is killed: every read returns the value
/// just acknowledged, never an older one, and none fails.
#[test]
fn the_client_reads_its_writes_while_the_leader_is_killed() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = rt.block_on(synod_client::Client::connect(cluster.client_config(1))).unwrap();
    let tasks: Vec<_> = (0..4u32)
        .map(|t| {
            let c = client.clone();
            rt.spawn(async move {
                let key = format!("r{t}");
                for i in 0..60u32 {
                    let value = i.to_string();
                    c.put(&key, &value).await.unwrap_or_else(|e| panic!("put {key}={value}: {e}"));
                    let read = c.get(&key).await.unwrap_or_else(|e| panic!("get {key}: {e}"));
                    assert_eq!(read, Some(value.into_bytes()), "{key}: an older value after write {i}");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    cluster.stop(leader);
    rt.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    cluster.restart(leader);
    cluster.await_identical(Duration::from_secs(15));
}

#[test]
fn with_leases_lease_reads_see_every_acknowledged_write() {
    let cluster = Cluster::start_configured(3, synod_kv::KvStore::default, |c| c.leases = true);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut writer = RawClient::registered(&cluster, leader);
    // The leader serves them from its lease; the followers by ReadIndex.
    let mut readers: Vec<RawClient> =
        cluster.ids().into_iter().map(|id| RawClient::connect(&cluster, id)).collect();
    for i in 0..100u32 {
        let value = i.to_le_bytes();
        put(&mut writer, b"k", &value);
        for reader in &mut readers {
            assert_eq!(reader.get(b"k", ReadMode::Lease), Some(value.to_vec()), "write {i}");
        }
    }
}
