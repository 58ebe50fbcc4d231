//! Integration tests of the runtime: real replicas over real QUIC on loopback, real logs on disk.

mod cluster;

use std::time::Duration;

use cluster::{Cluster, RawClient};
use synod_wire::{KvCommand, KvResponse, Outcome};

#[test]
fn three_replicas_elect_a_leader_and_apply_a_write_everywhere() {
    let cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::connect(&cluster, leader);
    client.register();
    let answer = client.op(&KvCommand::Put { key: b"k".to_vec(), value: b"v".to_vec() });
    assert_eq!(answer, KvResponse::Stored);
    assert_eq!(client.op(&KvCommand::Get { key: b"k".to_vec() }), KvResponse::Value(Some(b"v".to_vec())));
    cluster.await_identical(Duration::from_secs(10));
}

#[test]
fn a_follower_redirects_to_the_leader() {
    let cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let mut client = RawClient::connect(&cluster, follower);
    // The leader may change under the test; a follower must name a replica other than itself.
    match client.raw_register() {
        Outcome::Redirect { leader: Some(named) } => assert_ne!(named, follower),
        other => panic!("a follower answered {other:?}"),
    }
}

#[test]
fn a_restarted_follower_recovers_from_its_log_and_catches_up() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::connect(&cluster, leader);
    client.register();
    for i in 0..20u8 {
        client.op(&KvCommand::Put { key: vec![i], value: vec![i] });
    }
    cluster.await_identical(Duration::from_secs(10));
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    cluster.stop(follower);
    for i in 20..60u8 {
        client.op(&KvCommand::Put { key: vec![i], value: vec![i] });
    }
    cluster.restart(follower);
    let status = cluster.await_identical(Duration::from_secs(15));
    assert!(status.applied.0 >= 60, "{status:?}");
}

#[test]
fn the_cluster_survives_the_leader_stopping() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::connect(&cluster, leader);
    client.register();
    client.op(&KvCommand::Put { key: b"before".to_vec(), value: b"1".to_vec() });
    cluster.stop(leader);
    let new_leader = cluster.await_leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    let mut client = RawClient::connect(&cluster, new_leader);
    client.register();
    assert_eq!(
        client.op(&KvCommand::Get { key: b"before".to_vec() }),
        KvResponse::Value(Some(b"1".to_vec()))
    );
    cluster.restart(leader);
    cluster.await_identical(Duration::from_secs(15));
}
