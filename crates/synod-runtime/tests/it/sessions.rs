//! A client registering sessions without end: the table stays at
//! `max_sessions` by evicting the least recently active session, and an
//! evicted session is told `SessionExpired`, never applied twice.

use std::time::{Duration, Instant};

use synod_kv::KvStore;
use synod_wire::{KvCommand, KvResponse, Outcome};

use crate::cluster::{Cluster, RawClient};

#[test]
fn registering_past_max_sessions_evicts_the_least_recently_active_session() {
    const MAX: usize = 1000;
    const ROUNDS: u64 = 30;
    const PER_ROUND: u64 = 1000;
    let cluster = Cluster::start_configured(3, KvStore::default, |c| c.sessions.max_sessions = MAX);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut old = RawClient::registered(&cluster, leader);
    let put = |v: &[u8]| KvCommand::Put { key: b"old".to_vec(), value: v.to_vec() };
    assert_eq!(old.op(&put(b"1")), KvResponse::Stored);

    let mut flood = RawClient::connect(&cluster, leader);
    let started = Instant::now();
    let mut largest = 0;
    for round in 0..ROUNDS {
        for outcome in flood.register_many(PER_ROUND) {
            assert!(matches!(outcome, Outcome::Registered { .. }), "round {round}: {outcome:?}");
        }
        if round % 5 == 4 {
            let sessions = flood.status().sessions;
            assert!(sessions <= MAX as u64, "the table grew to {sessions}");
            largest = largest.max(sessions);
        }
    }
    let took = started.elapsed();
    let status = flood.status();
    println!(
        "{} sessions registered in {took:?} ({:.0}/s); the table held at most {largest}, now {} (max_sessions {MAX})",
        ROUNDS * PER_ROUND,
        (ROUNDS * PER_ROUND) as f64 / took.as_secs_f64(),
        status.sessions
    );
    assert_eq!(status.sessions, MAX as u64);

    // The first session was the least recently active: evicted. Its next
    // request, and a retry of the one already applied, are both refused.
    // (Its connection, idle all along, was closed meanwhile: a new one, same session.)
    old.reconnect(leader);
    assert_eq!(old.op_numbered(2, &put(b"2")), Outcome::SessionExpired);
    assert_eq!(old.op_numbered(1, &put(b"1")), Outcome::SessionExpired);
    // Registering again works, and the value is the one applied once.
    old.register();
    assert_eq!(old.op(&KvCommand::Get { key: b"old".to_vec() }), KvResponse::Value(Some(b"1".to_vec())));
    cluster.await_identical(Duration::from_secs(15));
}
