//! Snapshots on real replicas: taken under load, the log truncated behind them, a restart
//! recovering from one, an empty replica rejoining by transfer, a damaged one refused.

use std::path::Path;
use std::time::Duration;

use synod_kv::KvStore;
use synod_runtime::{ReplicaConfig, StartError};
use synod_wire::{KvCommand, KvResponse, NodeId};

use crate::cluster::{Cluster, RawClient};

/// Small snapshots and segments, so that a few hundred puts snapshot and truncate several times.
fn small(config: &mut ReplicaConfig) {
    config.snapshots.log_bytes = 16 << 10;
    config.snapshots.retain_slots = 4;
    config.snapshots.chunk_bytes = 4 << 10;
    config.segment_bytes = 8 << 10;
}

fn files(dir: &Path, prefix: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn put_many(client: &mut RawClient, from: u32, to: u32) {
    for i in from..to {
        let key = format!("key-{i}").into_bytes();
        let value = vec![(i % 251) as u8; 200];
        assert_eq!(client.op(&KvCommand::Put { key, value }), KvResponse::Stored);
    }
}

#[test]
fn replicas_snapshot_and_truncate_their_logs_and_a_restart_recovers_from_the_snapshot() {
    let mut cluster = Cluster::start_configured(3, KvStore::default, small);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::registered(&cluster, leader);
    put_many(&mut client, 0, 400);
    let before = cluster.await_identical(Duration::from_secs(15));
    for id in cluster.ids() {
        let dir = cluster.data_dir(id);
        let snapshots = files(&dir, "snapshot-", ".snap");
        assert_eq!(snapshots.len(), 1, "{id}: the newest snapshot only: {snapshots:?}");
        // 400 puts of 200 bytes are 80 KB of log; segments of 8 KiB behind the snapshot went.
        let segments = files(&dir, "segment-", ".wal");
        assert!(segments.len() <= 6, "{id}: the log was truncated: {segments:?}");
    }
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    cluster.stop(follower);
    cluster.restart(follower);
    let after = cluster.await_identical(Duration::from_secs(15));
    assert_eq!((after.applied, after.digest), (before.applied, before.digest));
    let mut check = RawClient::registered(&cluster, leader);
    let got = check.op(&KvCommand::Get { key: b"key-3".to_vec() });
    assert_eq!(got, KvResponse::Value(Some(vec![3; 200])));
}

#[test]
fn a_replica_started_on_an_empty_data_directory_rejoins_by_snapshot_transfer() {
    let mut cluster = Cluster::start_configured(3, KvStore::default, small);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::registered(&cluster, leader);
    put_many(&mut client, 0, 200);
    cluster.await_identical(Duration::from_secs(15));
    let lost = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    cluster.stop(lost);
    std::fs::remove_dir_all(cluster.data_dir(lost)).unwrap();
    put_many(&mut client, 200, 400);
    cluster.restart(lost);
    let status = cluster.await_identical(Duration::from_secs(20));
    assert!(status.applied.0 > 0);
    assert_eq!(files(&cluster.data_dir(lost), "snapshot-", ".snap").len(), 1, "it received a snapshot");
    // It votes again once it heard every peer (all are up): then, with the
    // old leader gone, the rejoined replica makes a majority.
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while cluster.statuses().iter().any(|s| s.rejoining) {
        assert!(std::time::Instant::now() < until, "still rejoining: {:?}", cluster.statuses());
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.stop(leader);
    let new_leader = cluster.await_leader(Duration::from_secs(15));
    let mut client = RawClient::registered(&cluster, new_leader);
    assert_eq!(
        client.op(&KvCommand::Get { key: b"key-399".to_vec() }),
        KvResponse::Value(Some(vec![(399 % 251) as u8; 200]))
    );
    put_many(&mut client, 400, 410);
}

#[test]
fn a_damaged_snapshot_file_stops_the_replica_with_its_name() {
    let mut cluster = Cluster::start_configured(3, KvStore::default, small);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::registered(&cluster, leader);
    put_many(&mut client, 0, 200);
    cluster.await_identical(Duration::from_secs(15));
    let victim: NodeId = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    cluster.stop(victim);
    let dir = cluster.data_dir(victim);
    let name = files(&dir, "snapshot-", ".snap").pop().expect("a snapshot");
    let path = dir.join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    match cluster.try_restart(victim) {
        Err(StartError::Snapshot(why)) => {
            assert!(why.contains(&name), "the error names the file: {why}");
            let full = StartError::Snapshot(why).to_string();
            assert!(full.contains("empty"), "and says what to do: {full}");
        }
        Err(other) => panic!("another error: {other}"),
        Ok(()) => panic!("a replica started on a damaged snapshot"),
    }
}

/// A snapshot goes to a peer at `write_bytes_per_second`: the peer writes it as it comes.
#[test]
fn a_snapshot_is_sent_at_the_configured_pace() {
    const PACE: u64 = 64 << 10;
    fn paced(config: &mut ReplicaConfig) {
        small(config);
        config.snapshots.log_bytes = 32 << 10;
        config.snapshots.write_bytes_per_second = PACE;
    }
    let mut cluster = Cluster::start_configured(3, KvStore::default, paced);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::registered(&cluster, leader);
    put_many(&mut client, 0, 600);
    cluster.await_identical(Duration::from_secs(30));
    let lost = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    cluster.stop(lost);
    std::fs::remove_dir_all(cluster.data_dir(lost)).unwrap();
    put_many(&mut client, 600, 700);
    let began = std::time::Instant::now();
    cluster.restart(lost);
    let dir = cluster.data_dir(lost);
    let until = began + Duration::from_secs(60);
    while files(&dir, "snapshot-", ".snap").is_empty() {
        assert!(std::time::Instant::now() < until, "no snapshot received in 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = began.elapsed();
    let name = files(&dir, "snapshot-", ".snap").pop().unwrap();
    let size = std::fs::metadata(dir.join(name)).unwrap().len();
    // Every chunk but the first waits for its share of the pace (chunks of 4 KiB).
    let floor = Duration::from_secs_f64(size.saturating_sub(4 << 10) as f64 / PACE as f64);
    assert!(size > 100 << 10, "a snapshot of {size} bytes is too small to show the pace");
    assert!(
        took >= floor.mul_f64(0.9),
        "{size} bytes arrived in {took:?}, faster than the pace allows ({floor:?})"
    );
    cluster.await_identical(Duration::from_secs(30));
}
