//! Tests of the session table: exactly-once, acknowledgement, expiry, eviction, snapshots.

use proptest::prelude::*;
use synod_session::{Begin, SessionConfig, SessionError, SessionTable};
use synod_wire::{ClientId, Seq};

fn cfg(max_sessions: usize, expiry_ms: u64) -> SessionConfig {
    SessionConfig { max_sessions, expiry_ms, window: 8 }
}

#[test]
fn each_request_applies_once_and_retries_get_the_first_answer() {
    let mut t = SessionTable::new(cfg(10, 1000));
    let c = ClientId(1);
    t.register(c, 0);
    for seq in 1..=3 {
        assert_eq!(t.begin(c, Seq(seq), Seq(0)), Ok(Begin::Apply));
        t.complete(c, Seq(seq), vec![seq as u8]);
    }
    // Pipelined requests may be retried in any order.
    assert_eq!(t.begin(c, Seq(2), Seq(0)), Ok(Begin::Duplicate(vec![2])));
    assert_eq!(t.begin(c, Seq(1), Seq(0)), Ok(Begin::Duplicate(vec![1])));
    assert_eq!(t.stats().duplicates, 2);
}

#[test]
fn acknowledged_answers_are_forgotten_and_stale_requests_refused() {
    let mut t = SessionTable::new(cfg(10, 1000));
    let c = ClientId(1);
    t.register(c, 0);
    for seq in 1..=4 {
        assert_eq!(t.begin(c, Seq(seq), Seq(seq - 1)), Ok(Begin::Apply));
        t.complete(c, Seq(seq), vec![]);
    }
    assert_eq!(t.begin(c, Seq(2), Seq(3)), Err(SessionError::Stale));
    assert_eq!(t.begin(c, Seq(4), Seq(3)), Ok(Begin::Duplicate(vec![])));
    assert_eq!(t.begin(c, Seq(3 + 9), Seq(3)), Err(SessionError::TooFarAhead));
    assert_eq!(t.begin(c, Seq(3 + 8), Seq(3)), Ok(Begin::Apply));
}

#[test]
fn sessions_expire_by_leader_time_only() {
    let mut t = SessionTable::new(cfg(10, 100));
    t.register(ClientId(1), 0);
    t.register(ClientId(2), 50);
    assert!(t.advance_clock(99).is_empty());
    assert_eq!(t.advance_clock(100), vec![ClientId(1)]);
    // Time never goes backwards, whatever a later leader stamps.
    assert!(t.advance_clock(10).is_empty());
    assert_eq!(t.clock_ms(), 100);
    assert_eq!(t.begin(ClientId(1), Seq(1), Seq(0)), Err(SessionError::Unknown));
    assert_eq!(t.begin(ClientId(2), Seq(1), Seq(0)), Ok(Begin::Apply));
    assert_eq!(t.advance_clock(199), vec![], "activity at 100 keeps session 2 alive");
    assert_eq!(t.advance_clock(200), vec![ClientId(2)]);
}

#[test]
fn a_full_table_evicts_the_least_recently_active_deterministically() {
    let mut t = SessionTable::new(cfg(2, 10_000));
    assert_eq!(t.register(ClientId(5), 0), None);
    assert_eq!(t.register(ClientId(3), 0), None);
    t.advance_clock(1);
    t.begin(ClientId(3), Seq(1), Seq(0)).unwrap();
    // 5 and 3 both registered at 0, but 3 was active at 1: 5 goes.
    assert_eq!(t.register(ClientId(9), 2), Some(ClientId(5)));
    // 3 (active at 1) and 9 (at 2): 3 goes next.
    assert_eq!(t.register(ClientId(11), 2), Some(ClientId(3)));
    assert_eq!(t.stats().evicted, 2);
}

#[test]
fn a_corrupt_snapshot_is_an_error() {
    assert!(SessionTable::restore(cfg(2, 10), b"not a snapshot").is_err());
}

proptest! {
    /// Two tables fed the same operations agree, a snapshot restores an
    /// equal table, and the restored table then behaves exactly like the
    /// original (eviction and expiry included) through every later operation.
    #[test]
    fn tables_are_deterministic_and_snapshots_round_trip(
        ops in proptest::collection::vec((0u8..3, 1u64..7, 0u64..12, 0u64..50), 1..200),
        cut in 0usize..200,
    ) {
        let mut a = SessionTable::new(cfg(4, 200));
        let mut b = SessionTable::new(cfg(4, 200));
        let mut clock = 0;
        for (step, (kind, client, seq, dt)) in ops.into_iter().enumerate() {
            if step == cut {
                b = SessionTable::restore(cfg(4, 200), &a.snapshot()).unwrap();
                prop_assert_eq!(b.snapshot(), a.snapshot());
            }
            clock += dt;
            let mut seen = Vec::new();
            for t in [&mut a, &mut b] {
                seen.push(match kind {
                    0 => format!("{:?}", t.register(ClientId(client), clock)),
                    1 => {
                        let expired = t.advance_clock(clock);
                        let begin = t.begin(ClientId(client), Seq(seq), Seq(seq.saturating_sub(3)));
                        if begin == Ok(Begin::Apply) {
                            t.complete(ClientId(client), Seq(seq), vec![seq as u8]);
                        }
                        format!("{expired:?} {begin:?}")
                    }
                    _ => format!("{:?}", t.advance_clock(clock)),
                });
            }
            prop_assert_eq!(&seen[0], &seen[1]);
            prop_assert_eq!(a.snapshot(), b.snapshot());
        }
        let restored = SessionTable::restore(cfg(4, 200), &a.snapshot()).unwrap();
        prop_assert_eq!(restored.snapshot(), a.snapshot());
        prop_assert_eq!(restored.len(), a.len());
    }
}
