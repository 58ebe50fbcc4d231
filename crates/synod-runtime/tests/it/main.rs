//! Integration tests of the runtime: real replicas over real QUIC on loopback, real logs on disk.

mod cluster;
mod membership;
mod reads;
mod sessions;
mod snapshots;

use std::time::Duration;

use cluster::{Cluster, RawClient};
use synod_wire::{KvCommand, KvResponse, Outcome};

#[test]
fn three_replicas_elect_a_leader_and_apply_a_write_everywhere() {
    let cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::registered(&cluster, leader);
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
fn every_replica_answers_a_status_query_itself_without_the_log() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::registered(&cluster, leader);
    client.op(&KvCommand::Put { key: b"k".to_vec(), value: b"v".to_vec() });
    let settled = cluster.await_identical(Duration::from_secs(10));
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let mut asker = RawClient::connect(&cluster, follower);
    let status = asker.status();
    assert_eq!(status.id, follower);
    assert_eq!(status.members, cluster.ids());
    assert!(status.log_bytes > 0, "{status:?}");
    // Asking twice changes nothing: the query never entered the log.
    let again = asker.status();
    assert_eq!((again.applied, again.digest), (settled.applied, settled.digest));
    assert!(again.uptime_ms >= status.uptime_ms);
    let from_leader = RawClient::connect(&cluster, leader).status();
    assert_eq!(from_leader.role, synod_wire::Role::Leader);
    assert_eq!(from_leader.leader, Some(leader));
    // A replica alone, with no leader it can reach, still answers.
    for id in cluster.ids().into_iter().filter(|&id| id != follower) {
        cluster.stop(id);
    }
    let alone = asker.status();
    assert_eq!(alone.id, follower);
    assert_eq!(alone.digest, settled.digest);
}

#[test]
fn a_restarted_follower_recovers_from_its_log_and_catches_up() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::registered(&cluster, leader);
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
    let mut client = RawClient::registered(&cluster, leader);
    client.op(&KvCommand::Put { key: b"before".to_vec(), value: b"1".to_vec() });
    cluster.stop(leader);
    let new_leader = cluster.await_leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    let mut client = RawClient::registered(&cluster, new_leader);
    assert_eq!(
        client.op(&KvCommand::Get { key: b"before".to_vec() }),
        KvResponse::Value(Some(b"1".to_vec()))
    );
    cluster.restart(leader);
    cluster.await_identical(Duration::from_secs(15));
}

/// Runs `ops` puts from `tasks` concurrent tasks on one real client while
/// `during` runs on the cluster; every put must succeed and read back.
fn puts_survive(cluster: &mut Cluster, tasks: u64, ops: u64, during: impl FnOnce(&mut Cluster)) {
    let config = cluster.client_config(1);
    puts_survive_with(cluster, config, tasks, ops, during);
}

/// [`puts_survive`] with a client made from `config`.
fn puts_survive_with(
    cluster: &mut Cluster,
    config: synod_client::ClientConfig,
    tasks: u64,
    ops: u64,
    during: impl FnOnce(&mut Cluster),
) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = rt.block_on(synod_client::Client::connect(config)).unwrap();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let c = client.clone();
            rt.spawn(async move {
                for i in 0..ops {
                    let key = format!("t{t}-{i}");
                    // Every call must succeed: a failover is only latency to the application.
                    c.put(&key, key.as_bytes()).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    during(cluster);
    rt.block_on(async {
        for h in handles {
            h.await.unwrap();
        }
        for t in 0..tasks {
            for i in 0..ops {
                let key = format!("t{t}-{i}");
                assert_eq!(client.get(&key).await.unwrap(), Some(key.clone().into_bytes()), "{key} lost");
            }
        }
    });
}

/// The client sits on the leader (followers redirect to it), so stopping the
/// leader cuts off the client's replica: it must move to another one.
#[test]
fn clients_go_on_without_an_error_when_the_leader_is_killed() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    puts_survive(&mut cluster, 8, 60, |c| c.stop(leader));
    cluster.restart(leader);
    cluster.await_identical(Duration::from_secs(15));
}

/// A client in the leader's process reaches it without QUIC (as the `synod`
/// binary's RESP listener does); when that replica stops, the client moves
/// to another one over QUIC without an error, and no put is lost.
#[test]
fn a_client_beside_the_leader_goes_on_over_quic_when_its_replica_stops() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let local = cluster.replica(leader).unwrap().local_clients();
    let config = cluster.client_config(1).with_local(local);
    puts_survive_with(&mut cluster, config, 8, 60, |c| c.stop(leader));
    cluster.restart(leader);
    cluster.await_identical(Duration::from_secs(15));
}

/// A client beside a follower is redirected to the leader, over QUIC.
#[test]
fn a_client_beside_a_follower_follows_the_redirect_to_the_leader() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    let local = cluster.replica(follower).unwrap().local_clients();
    let config = cluster.client_config(1).with_local(local);
    puts_survive_with(&mut cluster, config, 4, 40, |_| {});
    cluster.await_identical(Duration::from_secs(15));
}

#[test]
fn followers_restarting_under_load_do_not_disturb_clients() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.await_leader(Duration::from_secs(10));
    // Each follower in turn goes away and comes back from its log while
    // clients write; the majority keeps committing throughout.
    let followers: Vec<_> = cluster.ids().into_iter().filter(|&id| id != leader).collect();
    puts_survive(&mut cluster, 4, 80, |c| {
        c.stop(followers[0]);
        std::thread::sleep(Duration::from_millis(300));
        c.restart(followers[0]);
        c.stop(followers[1]);
        std::thread::sleep(Duration::from_millis(300));
        c.restart(followers[1]);
    });
    cluster.await_identical(Duration::from_secs(15));
}

#[test]
fn a_panicking_state_machine_stops_its_replica_with_a_fatal_status() {
    let cluster = Cluster::start_with(1, Scripted::default);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::registered(&cluster, leader);
    client.send_op(b"boom".to_vec());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = &cluster.statuses()[0];
        if let Some(why) = &s.fatal {
            assert!(why.contains("panicked"), "{why}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the replica kept going: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Released by [`a_blocked_state_machine_does_not_hold_up_consensus`].
static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// A state machine that panics on `b"boom"`, takes 2 ms for `b"slow"` and
/// blocks on `b"gate"` until [`GATE`] opens; it answers every command with itself.
#[derive(Default)]
struct Scripted;

impl synod_runtime::StateMachine for Scripted {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        match command {
            b"boom" => panic!("the state machine refuses to go on"),
            b"slow" => std::thread::sleep(Duration::from_millis(2)),
            b"gate" => {
                let (open, opened) = &GATE;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = opened.wait(open).unwrap();
                }
            }
            _ => {}
        }
        command.to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
    fn restore(&mut self, _: &[u8]) -> Result<(), synod_runtime::RestoreError> {
        Ok(())
    }
}

/// Small slots are applied on the committing thread while applying is quick;
/// a state machine that turned slow is left to its own thread, so a blocked
/// `apply` delays answers and never commits.
#[test]
fn a_blocked_state_machine_does_not_hold_up_consensus() {
    let cluster = Cluster::start_with(3, Scripted::default);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut client = RawClient::registered(&cluster, leader);
    client.send_op(b"slow".to_vec());
    client.send_op(b"gate".to_vec());
    for _ in 0..3 {
        client.send_op(b"after".to_vec());
    }
    let status =
        |c: &Cluster<Scripted>| c.statuses().into_iter().find(|s| s.id == leader).expect("the leader runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let s = status(&cluster);
        // The gated slot is chosen and so are the ones after it, though none of them is applied.
        if s.commit.0 >= s.applied.0 + 3 || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Open the gate before judging: replicas blocked in `apply` could not shut down.
    let (open, opened) = &GATE;
    *open.lock().unwrap() = true;
    opened.notify_all();
    assert!(seen.commit.0 >= seen.applied.0 + 3, "commits stopped behind the blocked apply: {seen:?}");
    cluster.await_identical(Duration::from_secs(10));
}
