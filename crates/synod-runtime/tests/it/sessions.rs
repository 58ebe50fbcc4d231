//! A client registering sessions without end: the table stays at
//! `max_sessions` by evicting the least recently active session, and an
//! evicted session is told `SessionExpired`, never applied twice. A
//! well-behaved client beside the flood keeps its latency within a stated
//! factor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use synod_kv::KvStore;
use synod_wire::{KvCommand, KvResponse, Outcome};

use crate::cluster::{Cluster, RawClient};

#[test]
fn registering_past_max_sessions_evicts_the_least_recently_active_session() {
    const MAX: usize = 1000;
    // 30,000 registrations, 250 at a time: a round turns over a quarter of
    // the table, so an active session (the well-behaved client's) stays in it.
    const ROUNDS: u64 = 120;
    const PER_ROUND: u64 = 250;
    let cluster = Cluster::start_configured(3, KvStore::default, |c| c.sessions.max_sessions = MAX);
    let leader = cluster.await_leader(Duration::from_secs(10));
    let mut old = RawClient::registered(&cluster, leader);
    let put = |v: &[u8]| KvCommand::Put { key: b"old".to_vec(), value: v.to_vec() };
    assert_eq!(old.op(&put(b"1")), KvResponse::Stored);

    // A well-behaved client's put latency, alone and then beside the flood.
    let mut good = RawClient::registered(&cluster, leader);
    let mut n = 0u64;
    let mut timed_put = |good: &mut RawClient| {
        n += 1;
        let at = Instant::now();
        let put = KvCommand::Put { key: b"good".to_vec(), value: n.to_le_bytes().to_vec() };
        assert_eq!(good.op(&put), KvResponse::Stored);
        at.elapsed()
    };
    let mut quiet: Vec<Duration> = (0..200).map(|_| timed_put(&mut good)).collect();
    let flooding = AtomicBool::new(true);

    let mut flood = RawClient::connect(&cluster, leader);
    let started = Instant::now();
    let mut largest = 0;
    let mut beside = std::thread::scope(|scope| {
        let measure = scope.spawn(|| {
            let mut took = Vec::new();
            while flooding.load(Ordering::Relaxed) || took.len() < 200 {
                took.push(timed_put(&mut good));
            }
            took
        });
        for round in 0..ROUNDS {
            for outcome in flood.register_many(PER_ROUND) {
                assert!(matches!(outcome, Outcome::Registered { .. }), "round {round}: {outcome:?}");
            }
            if round % 20 == 19 {
                let sessions = flood.status().sessions;
                assert!(sessions <= MAX as u64, "the table grew to {sessions}");
                largest = largest.max(sessions);
            }
        }
        flooding.store(false, Ordering::Relaxed);
        measure.join().unwrap()
    });
    let took = started.elapsed();
    let status = flood.status();
    println!(
        "{} sessions registered in {took:?} ({:.0}/s); the table held at most {largest}, now {} (max_sessions {MAX})",
        ROUNDS * PER_ROUND,
        (ROUNDS * PER_ROUND) as f64 / took.as_secs_f64(),
        status.sessions
    );
    assert_eq!(status.sessions, MAX as u64);
    let p99 = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() * 99 / 100])
    };
    let (quiet, beside) = (p99(&mut quiet), p99(&mut beside));
    println!(
        "a client's puts: alone p50 {:?} p99 {:?}; beside the flood p50 {:?} p99 {:?} (p99 {:.1}x)",
        quiet.0,
        quiet.1,
        beside.0,
        beside.1,
        beside.1.as_secs_f64() / quiet.1.as_secs_f64()
    );
    // Each put waits for at most the batch of registrations ahead of it
    // (the flooder sends 250 at a time, admitted whole: fewer than
    // `max_waiting`). Stated bound: 10x its p99 alone, or 250 ms.
    let bound = (quiet.1 * 10).max(Duration::from_millis(250));
    assert!(beside.1 <= bound, "p99 {:?} beside the flood, bound {bound:?}", beside.1);

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
