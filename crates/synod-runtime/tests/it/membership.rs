//! Membership changes on real replicas: new replicas join as learners (one
//! by a snapshot that carries a configuration), are promoted, the leader is
//! removed and stops, and the rest agree.

use std::time::{Duration, Instant};

use synod_client::admin::{self, ChangeError};
use synod_client::Client;
use synod_kv::KvStore;
use synod_runtime::ReplicaConfig;
use synod_wire::{MemberChange, MemberRole, MembersView, NodeId};

use crate::cluster::Cluster;

/// Small snapshots, so that the log behind them goes and a new member needs one.
fn small(config: &mut ReplicaConfig) {
    config.snapshots.log_bytes = 16 << 10;
    config.snapshots.retain_slots = 4;
    config.snapshots.chunk_bytes = 4 << 10;
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < until, "{what} did not happen within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn replicas_join_by_snapshot_are_promoted_and_a_removed_leader_stops() {
    let mut cluster = Cluster::start_configured(3, KvStore::default, small);
    cluster.await_leader(Duration::from_secs(10));
    let config = cluster.client_config(1).with_deadline(Duration::from_secs(60));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = rt.block_on(Client::connect(config.clone())).unwrap();
    let put_many = |from: u32, to: u32| {
        rt.block_on(async {
            for i in from..to {
                client.put(format!("key-{i}"), vec![(i % 251) as u8; 200]).await.unwrap();
            }
        })
    };
    let change = |c: MemberChange| rt.block_on(admin::change(&config, c));
    let members = || rt.block_on(admin::members(&config));
    let caught_up = |view: &MembersView, id: NodeId| {
        let at = |n: NodeId| view.members.iter().find(|m| m.id == n).map(|m| m.caught_up);
        view.leader.and_then(at).is_some_and(|l| at(id).is_some_and(|c| c.0 > 0 && c >= l))
    };
    put_many(0, 300);

    // Bad changes are refused with the reason.
    let err = change(MemberChange::Remove { id: NodeId(9) }).unwrap_err();
    assert!(matches!(&err, ChangeError::Refused(why) if why.contains("n9 is not a member")), "{err}");
    let err =
        change(MemberChange::Add { id: NodeId(2), addr: "127.0.0.1:1".into(), learner: true }).unwrap_err();
    assert!(matches!(&err, ChangeError::Refused(why) if why.contains("already a member")), "{err}");

    // Replica 4 joins as a learner and is promoted.
    let addr4 = cluster.start_joining(NodeId(4));
    let view = change(MemberChange::Add { id: NodeId(4), addr: addr4.to_string(), learner: true }).unwrap();
    assert_eq!(view.epoch, 1);
    assert_eq!(view.members.iter().find(|m| m.id == NodeId(4)).map(|m| m.role), Some(MemberRole::Learner));
    wait("replica 4 catching up", Duration::from_secs(30), || {
        members().is_ok_and(|v| caught_up(&v, NodeId(4)))
    });
    assert_eq!(change(MemberChange::Promote { id: NodeId(4) }).unwrap().epoch, 2);
    // A joined replica restarts from its log (`join` still set) in the configuration it knows.
    cluster.stop(NodeId(4));
    cluster.start_joining(NodeId(4));
    wait("replica 4 back in configuration 2", Duration::from_secs(30), || {
        let s = cluster.replica(NodeId(4)).unwrap().status();
        s.epoch == 2 && s.learners.is_empty() && !s.rejoining && s.leader.is_some()
    });

    // More writes: the snapshots now hold configuration 2, and replica 5 joins from one.
    put_many(300, 600);
    let addr5 = cluster.start_joining(NodeId(5));
    assert_eq!(
        change(MemberChange::Add { id: NodeId(5), addr: addr5.to_string(), learner: true }).unwrap().epoch,
        3
    );
    wait("replica 5 catching up", Duration::from_secs(30), || {
        members().is_ok_and(|v| caught_up(&v, NodeId(5)))
    });
    let five = cluster.replica(NodeId(5)).unwrap().status();
    assert!(five.snapshot.0 > 0, "replica 5 installed a snapshot: {five:?}");
    assert_eq!((five.epoch, five.learners.clone()), (3, vec![NodeId(5)]));

    // The leader is removed: it hands over, says it was removed, and stops.
    let leader = members().unwrap().leader.expect("a leader");
    let view = change(MemberChange::Remove { id: leader }).unwrap();
    assert_eq!(view.epoch, 4);
    assert!(!view.members.iter().any(|m| m.id == leader));
    let removed = cluster.replica(leader).unwrap();
    wait("the removed leader stopping", Duration::from_secs(70), || removed.is_stopped());
    let status = removed.status();
    assert!(status.removed && status.fatal.is_none(), "{status:?}");

    // Writes go on, and every remaining replica agrees.
    put_many(600, 650);
    let rest: Vec<NodeId> = (1..=5).map(NodeId).filter(|&id| id != leader).collect();
    wait("the remaining replicas agreeing", Duration::from_secs(30), || {
        let s: Vec<_> = rest.iter().map(|&id| cluster.replica(id).unwrap().status()).collect();
        s.iter().all(|x| {
            x.epoch == 4 && x.applied == s[0].applied && x.digest == s[0].digest && x.commit == x.applied
        })
    });
    let got = rt.block_on(client.get("key-3")).unwrap();
    assert_eq!(got, Some(vec![3u8; 200]));
}

#[test]
fn a_replica_outside_its_peers_without_join_is_a_clear_configuration_error() {
    let mut cluster = Cluster::start(3);
    let err = cluster.start_outsider(NodeId(4)).unwrap_err();
    assert!(matches!(err, synod_runtime::StartError::NotAPeer(NodeId(4))), "{err}");
    assert!(err.to_string().contains("join = true"), "{err}");
}
