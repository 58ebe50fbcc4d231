//! synod-client-core tests: the client's decisions stepped by hand, with no network and no clock.

use std::time::Duration;

use synod_client_core::{CallError, ClientCore, ClientEvent, Connect, CoreConfig, RegisterError, Transmit};
use synod_wire::{ClientFrame, ClientId, ClientReply, ClientRequest, Command, NodeId, Outcome, ReadMode};

const MS: u64 = 1_000;

fn config(n: u32) -> CoreConfig {
    CoreConfig {
        request_timeout: Duration::from_millis(100),
        ..CoreConfig::new((1..=n).map(NodeId).collect())
    }
}

fn transmits(core: &mut ClientCore) -> Vec<Transmit> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

fn events(core: &mut ClientCore) -> Vec<ClientEvent> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

fn reply(t: &Transmit, outcome: Outcome) -> ClientReply {
    ClientReply { id: t.id(), outcome }
}

/// A core connected to replica 1 with session 7.
fn registered(n: u32) -> (ClientCore, Connect) {
    let mut core = ClientCore::new(config(n), 0, 1);
    let c = core.poll_connect().unwrap();
    assert_eq!(c.node, NodeId(1));
    core.handle_connected(0, c.epoch, c.node);
    let t = transmits(&mut core);
    assert!(matches!(
        t[..],
        [Transmit {
            frame: ClientFrame::Request(ClientRequest { command: Command::Register { .. }, .. }),
            ..
        }]
    ));
    core.handle_reply(MS, c.epoch, reply(&t[0], Outcome::Registered { client: ClientId(7) }));
    assert_eq!(events(&mut core), vec![ClientEvent::Registered(ClientId(7))]);
    assert!(core.can_call());
    (core, c)
}

fn seq_ack(t: &Transmit) -> (u64, u64) {
    match &t.request().expect("a command").command {
        Command::Op { seq, ack, .. } => (seq.0, ack.0),
        Command::Register { .. } => panic!("a registration"),
    }
}

#[test]
fn calls_are_pipelined_and_acknowledged_in_order() {
    let (mut core, c) = registered(3);
    let calls: Vec<_> = (0..3).map(|i| core.handle_call(MS, vec![i], u64::MAX)).collect();
    let t = transmits(&mut core);
    assert_eq!(t.iter().map(seq_ack).collect::<Vec<_>>(), vec![(1, 0), (2, 0), (3, 0)]);
    // The second answer first: the acknowledgement waits for the first.
    core.handle_reply(2 * MS, c.epoch, reply(&t[1], Outcome::Applied { payload: b"b".to_vec() }));
    assert_eq!(events(&mut core), vec![ClientEvent::Completed { call: calls[1], result: Ok(b"b".to_vec()) }]);
    core.handle_call(2 * MS, vec![9], u64::MAX);
    assert_eq!(seq_ack(&transmits(&mut core)[0]), (4, 0));
    core.handle_reply(3 * MS, c.epoch, reply(&t[0], Outcome::Applied { payload: vec![] }));
    core.handle_call(3 * MS, vec![10], u64::MAX);
    assert_eq!(seq_ack(&transmits(&mut core)[0]), (5, 2));
    assert_eq!(core.outstanding(), 3);
}

#[test]
fn the_window_bounds_calls_in_flight() {
    let mut cfg = config(1);
    cfg.max_in_flight = 2;
    let mut core = ClientCore::new(cfg, 0, 1);
    assert!(!core.can_call(), "no session yet");
    let c = core.poll_connect().unwrap();
    core.handle_connected(0, c.epoch, c.node);
    let t = transmits(&mut core);
    core.handle_reply(0, c.epoch, reply(&t[0], Outcome::Registered { client: ClientId(1) }));
    core.handle_call(0, vec![], u64::MAX);
    assert!(core.can_call());
    core.handle_call(0, vec![], u64::MAX);
    assert!(!core.can_call());
}

#[test]
fn a_redirect_moves_the_client_and_resends_under_a_new_id() {
    let (mut core, c) = registered(3);
    core.handle_call(MS, vec![1], u64::MAX);
    let first = transmits(&mut core).remove(0);
    core.handle_reply(2 * MS, c.epoch, reply(&first, Outcome::Redirect { leader: Some(NodeId(3)) }));
    assert_eq!(core.connection(), None);
    let c2 = core.poll_connect().expect("the first failover reconnects at once");
    assert_eq!(c2.node, NodeId(3));
    assert!(c2.epoch > c.epoch);
    // A duplicate of the redirect, late: it no longer moves the client.
    core.handle_reply(2 * MS, c.epoch, reply(&first, Outcome::Redirect { leader: Some(NodeId(2)) }));
    assert_eq!(core.poll_connect(), None);
    core.handle_connected(3 * MS, c2.epoch, c2.node);
    let again = transmits(&mut core).remove(0);
    assert_eq!(seq_ack(&again), (1, 0));
    assert_ne!(again.id(), first.id());
    // The same redirect again, for the old attempt on the new connection: still nothing.
    core.handle_reply(4 * MS, c2.epoch, reply(&first, Outcome::Redirect { leader: Some(NodeId(2)) }));
    assert_eq!(core.connection(), Some((c2.epoch, NodeId(3))));
    // An answer to the old attempt completes the request all the same.
    core.handle_reply(5 * MS, 0, reply(&first, Outcome::Applied { payload: b"x".to_vec() }));
    assert!(matches!(events(&mut core)[..], [ClientEvent::Completed { result: Ok(_), .. }]));
}

#[test]
fn busy_pauses_the_request_and_backs_off() {
    let (mut core, c) = registered(1);
    let call = core.handle_call(MS, vec![1], u64::MAX);
    let t = transmits(&mut core).remove(0);
    core.handle_reply(2 * MS, c.epoch, reply(&t, Outcome::Busy));
    assert!(transmits(&mut core).is_empty(), "not resent at once");
    // Within [5, 10] ms of the Busy it goes out again, on the same connection.
    let mut now = 2 * MS;
    let resent = loop {
        now = core.poll_timeout().unwrap().max(now);
        core.handle_timeout(now);
        if let Some(t) = core.poll_transmit() {
            break t;
        }
        assert!(now < 200 * MS, "never resent");
    };
    assert!(now >= 7 * MS, "resent after {now} µs");
    assert_eq!(resent.epoch, c.epoch);
    assert_eq!(seq_ack(&resent), (1, 0));
    core.handle_reply(now, c.epoch, reply(&resent, Outcome::Applied { payload: vec![] }));
    assert_eq!(events(&mut core), vec![ClientEvent::Completed { call, result: Ok(vec![]) }]);
}

#[test]
fn a_late_attempt_fails_over_and_deadlines_complete_calls() {
    let (mut core, c) = registered(2);
    let call = core.handle_call(MS, vec![1], 300 * MS);
    transmits(&mut core);
    let mut now = MS;
    let mut nodes = vec![];
    while now < 400 * MS {
        now = core.poll_timeout().unwrap();
        core.handle_timeout(now);
        if let Some(next) = core.poll_connect() {
            core.handle_connected(now, next.epoch, next.node);
            nodes.push(next.node);
        }
        transmits(&mut core);
        if let Some(e) = core.poll_event() {
            assert_eq!(e, ClientEvent::Completed { call, result: Err(CallError::Timeout) });
            break;
        }
    }
    assert!((300 * MS..400 * MS).contains(&now), "{now}");
    assert_eq!(&nodes[..2], &[NodeId(2), NodeId(1)], "per-attempt timeouts move the client round the book");
    assert!(core.connection().is_some_and(|(e, _)| e > c.epoch));
    // A given-up call no longer holds back the acknowledgement.
    core.handle_call(now, vec![2], u64::MAX);
    assert_eq!(seq_ack(&transmits(&mut core)[0]), (2, 1));
}

#[test]
fn a_whole_round_of_failed_connections_gives_up_registering() {
    let mut core = ClientCore::new(config(2), 0, 1);
    let mut now = 0;
    for _ in 0..2 {
        let c = loop {
            if let Some(c) = core.poll_connect() {
                break c;
            }
            now = core.poll_timeout().unwrap();
            core.handle_timeout(now);
        };
        core.handle_connect_failed(now, c.epoch, c.node);
    }
    assert_eq!(
        events(&mut core),
        vec![ClientEvent::RegisterFailed(RegisterError::Unreachable { node: NodeId(2) })]
    );
    assert!(core.is_dead());
    assert_eq!(core.poll_connect(), None);
    assert_eq!(core.poll_timeout(), None);
}

#[test]
fn a_patient_core_keeps_trying_and_an_expired_session_fails_every_call() {
    let mut cfg = config(2);
    cfg.give_up_unreachable = false;
    cfg.register_deadline = Duration::MAX;
    let mut core = ClientCore::new(cfg, 0, 1);
    let mut now = 0;
    let mut failed = 0;
    let c = loop {
        if let Some(c) = core.poll_connect() {
            if failed == 5 {
                break c;
            }
            failed += 1;
            core.handle_connect_failed(now, c.epoch, c.node);
            continue;
        }
        now = core.poll_timeout().unwrap();
        core.handle_timeout(now);
    };
    assert!(now >= 10 * MS, "failed connections back off");
    core.handle_connected(now, c.epoch, c.node);
    let t = transmits(&mut core).remove(0);
    core.handle_reply(now, c.epoch, reply(&t, Outcome::Registered { client: ClientId(2) }));
    core.handle_call(now, vec![], u64::MAX);
    let op = transmits(&mut core).remove(0);
    core.handle_reply(now, c.epoch, reply(&op, Outcome::SessionExpired));
    let later = core.handle_call(now, vec![], u64::MAX);
    let ev = events(&mut core);
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[2], ClientEvent::Completed { call: later, result: Err(CallError::SessionExpired) });
    assert!(transmits(&mut core).is_empty());
}

#[test]
fn the_same_seed_and_inputs_give_the_same_outputs() {
    let run = |seed| {
        let mut core = ClientCore::new(config(3), 0, seed);
        let c = core.poll_connect().unwrap();
        core.handle_connected(0, c.epoch, c.node);
        let t = transmits(&mut core);
        core.handle_reply(0, c.epoch, reply(&t[0], Outcome::Redirect { leader: None }));
        (t[0].request().expect("a command").clone(), core.poll_timeout())
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5).0, run(6).0, "the nonce comes from the seed");
}

#[test]
fn oversized_and_late_calls_fail_at_once() {
    let (mut core, _) = registered(1);
    let big = core.handle_call(MS, vec![0; synod_wire::MAX_FRAME_LEN], u64::MAX);
    let late = core.handle_call(MS, vec![], MS);
    let ev = events(&mut core);
    assert!(
        matches!(&ev[0], ClientEvent::Completed { call, result: Err(CallError::Encode(_)) } if *call == big)
    );
    assert_eq!(ev[1], ClientEvent::Completed { call: late, result: Err(CallError::Timeout) });
    assert!(transmits(&mut core).is_empty());
}

#[test]
fn a_core_without_a_session_serves_reads_and_refuses_calls() {
    let config = CoreConfig { session: false, ..config(3) };
    let mut core = ClientCore::new(config, 0, 1);
    // It connects at once, to the first replica, and registers nothing.
    let c = core.poll_connect().unwrap();
    assert_eq!(c.node, NodeId(1));
    core.handle_connected(0, c.epoch, c.node);
    assert!(transmits(&mut core).is_empty());
    assert!(!core.is_dead() && core.can_read() && !core.can_call());
    let call = core.handle_call(MS, b"put".to_vec(), 10 * MS);
    assert_eq!(events(&mut core), [ClientEvent::Completed { call, result: Err(CallError::NoSession) }]);
    let read = core.handle_read(MS, b"get".to_vec(), ReadMode::Linearizable, 1_000 * MS);
    let t = transmits(&mut core);
    assert!(matches!(t[..], [Transmit { frame: ClientFrame::Read(_), node: NodeId(1), .. }]), "{t:?}");
    // A replica that goes away: the read goes to the next, and is served there.
    core.handle_disconnected(2 * MS, c.epoch);
    core.handle_timeout(20 * MS);
    let c = core.poll_connect().unwrap();
    assert_eq!(c.node, NodeId(2));
    core.handle_connected(21 * MS, c.epoch, c.node);
    let t = transmits(&mut core);
    assert_eq!(t.len(), 1);
    core.handle_reply(22 * MS, c.epoch, reply(&t[0], Outcome::Applied { payload: b"v".to_vec() }));
    assert_eq!(events(&mut core), [ClientEvent::Completed { call: read, result: Ok(b"v".to_vec()) }]);
    assert_eq!(core.outstanding(), 0);
}

#[test]
fn a_late_request_on_a_connection_that_makes_progress_waits_four_timeouts() {
    let (mut core, c) = registered(2);
    core.handle_call(MS, vec![1], u64::MAX);
    transmits(&mut core);
    // Other calls keep being answered on this connection: it is slow, not gone.
    let mut now = MS;
    let mut next_call = 50 * MS;
    let failed_over_at = loop {
        now = core.poll_timeout().unwrap().min(next_call).max(now);
        core.handle_timeout(now);
        if core.connection() != Some((c.epoch, NodeId(1))) {
            break now;
        }
        if now >= next_call {
            core.handle_call(now, vec![2], u64::MAX);
            let t = transmits(&mut core).remove(0);
            core.handle_reply(now, c.epoch, reply(&t, Outcome::Applied { payload: vec![] }));
            events(&mut core);
            next_call += 50 * MS;
        }
        assert!(now < 2_000 * MS, "never failed over");
    };
    // Sent at 1 ms with a 100 ms timeout: given up on after four timeouts.
    assert!((401 * MS..460 * MS).contains(&failed_over_at), "{failed_over_at}");
}

#[test]
fn a_late_request_fails_over_one_timeout_after_progress_stops() {
    let (mut core, c) = registered(2);
    core.handle_call(MS, vec![1], u64::MAX);
    core.handle_call(MS, vec![2], u64::MAX);
    let t = transmits(&mut core);
    core.handle_reply(90 * MS, c.epoch, reply(&t[0], Outcome::Applied { payload: vec![] }));
    let mut now = 90 * MS;
    while core.connection() == Some((c.epoch, NodeId(1))) {
        now = core.poll_timeout().unwrap().max(now);
        core.handle_timeout(now);
        assert!(now < 1_000 * MS, "never failed over");
    }
    // Progress at 90 ms covers the late request until 190 ms, no longer.
    assert!((190 * MS..250 * MS).contains(&now), "{now}");
}

#[test]
fn busy_reads_back_off_on_the_same_replica() {
    let config = CoreConfig { session: false, ..config(3) };
    let mut core = ClientCore::new(config, 0, 1);
    let c = core.poll_connect().unwrap();
    core.handle_connected(0, c.epoch, c.node);
    let read = core.handle_read(MS, b"get".to_vec(), ReadMode::Linearizable, 10_000 * MS);
    let mut now = MS;
    for _ in 0..5 {
        let t = loop {
            if let Some(t) = core.poll_transmit() {
                break t;
            }
            now = core.poll_timeout().unwrap().max(now);
            core.handle_timeout(now);
        };
        assert_eq!(t.epoch, c.epoch, "Busy never moves a read to another replica");
        core.handle_reply(now, c.epoch, reply(&t, Outcome::Busy));
    }
    assert_eq!(core.connection(), Some((c.epoch, NodeId(1))));
    let t = loop {
        if let Some(t) = core.poll_transmit() {
            break t;
        }
        now = core.poll_timeout().unwrap().max(now);
        core.handle_timeout(now);
    };
    core.handle_reply(now, c.epoch, reply(&t, Outcome::Applied { payload: b"v".to_vec() }));
    assert_eq!(events(&mut core), [ClientEvent::Completed { call: read, result: Ok(b"v".to_vec()) }]);
}

/// The next connection the core asks for, advancing its clock through any backoff.
fn next_connect(core: &mut ClientCore, mut now: u64) -> (Connect, u64) {
    for _ in 0..100 {
        if let Some(c) = core.poll_connect() {
            return (c, now);
        }
        now = core.poll_timeout().expect("a timer while not connected").max(now);
        core.handle_timeout(now);
    }
    panic!("no connection asked for");
}

#[test]
fn a_redirect_to_a_replica_that_is_gone_moves_on_past_the_replica_that_gave_it() {
    // Simulator seed 4092822: a replica that missed its own removal named a
    // leader that was gone; the next replica after that leader in the book was
    // the stale one again, and the client went round the two for ever.
    let (mut core, c1) = registered(3);
    core.handle_call(MS, vec![1], u64::MAX);
    let t = transmits(&mut core).remove(0);
    core.handle_reply(2 * MS, c1.epoch, reply(&t, Outcome::Redirect { leader: Some(NodeId(2)) }));
    let (c2, now) = next_connect(&mut core, 2 * MS);
    assert_eq!(c2.node, NodeId(2));
    core.handle_connected(now, c2.epoch, c2.node);
    let t = transmits(&mut core).remove(0);
    // Replica 2 is stale: it names replica 1, which is now down.
    core.handle_reply(now, c2.epoch, reply(&t, Outcome::Redirect { leader: Some(NodeId(1)) }));
    let (c3, now) = next_connect(&mut core, now);
    assert_eq!(c3.node, NodeId(1));
    core.handle_connect_failed(now, c3.epoch, c3.node);
    let (c4, _) = next_connect(&mut core, now);
    assert_eq!(c4.node, NodeId(3), "not back to replica 2, which named the replica that is gone");
}
