//! Tests of the Applier and of the conformance suite's power to catch broken machines.

use std::collections::HashMap;

use synod_state_machine::{conformance, Applier, Origin, RestoreError, SessionConfig, StateMachine};
use synod_wire::{Batch, ClientId, Command, Outcome, Seq, Slot, Value, Wire};

/// Appends every command to a list; answers with the list's length.
#[derive(Default, Debug)]
struct Journal(Vec<Vec<u8>>);

impl StateMachine for Journal {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.0.push(command.to_vec());
        (self.0.len() as u64).to_le_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.iter().flat_map(|c| [&[c.len() as u8][..], c].concat()).collect()
    }
    fn restore(&mut self, mut s: &[u8]) -> Result<(), RestoreError> {
        let mut out = Vec::new();
        while let [len, rest @ ..] = s {
            let len = *len as usize;
            if rest.len() < len {
                return Err(RestoreError::new("truncated"));
            }
            out.push(rest[..len].to_vec());
            s = &rest[len..];
        }
        self.0 = out;
        Ok(())
    }
}

fn batch(ts: u64, commands: Vec<Command>) -> Value {
    Value::Batch(Batch { timestamp_ms: ts, commands }.encode().unwrap().into())
}

fn op(client: ClientId, seq: u64, payload: &[u8]) -> Command {
    Command::Op { client, seq: Seq(seq), ack: Seq(0), payload: payload.to_vec() }
}

#[test]
fn registration_then_exactly_once_application() {
    let mut a = Applier::new(Journal::default(), SessionConfig::default());
    let replies = a.apply(Slot(0), &batch(1, vec![Command::Register { nonce: 9 }])).unwrap();
    let Outcome::Registered { client } = replies[0].outcome else { panic!("{replies:?}") };
    assert_eq!(replies[0].origin, Origin::Register { nonce: 9 });
    assert_eq!(client, ClientId(0));
    // The same request twice in one slot and again in the next: applied once.
    let r = a.apply(Slot(1), &batch(2, vec![op(client, 1, b"x"), op(client, 1, b"x")])).unwrap();
    assert_eq!(r[0].outcome, r[1].outcome);
    let r2 = a.apply(Slot(2), &batch(3, vec![op(client, 1, b"x")])).unwrap();
    assert_eq!(r2[0].outcome, r[0].outcome);
    assert_eq!(a.machine().0.len(), 1);
    assert_eq!(a.stats().duplicates, 2);
}

#[test]
fn unknown_sessions_and_bad_batches_are_refused_not_panics() {
    let mut a = Applier::new(Journal::default(), SessionConfig::default());
    let r = a.apply(Slot(0), &batch(1, vec![op(ClientId(77), 1, b"x")])).unwrap();
    assert_eq!(r[0].outcome, Outcome::SessionExpired);
    assert!(a.apply(Slot(1), &Value::Batch(b"garbage".as_slice().into())).unwrap().is_empty());
    assert_eq!(a.stats().undecodable, 1);
    assert!(a.apply(Slot(5), &Value::Noop).is_err(), "out of order");
    assert!(a.apply(Slot(2), &Value::Noop).unwrap().is_empty());
    assert!(a.machine().0.is_empty());
}

#[test]
fn a_restored_applier_continues_identically() {
    let mut a = Applier::new(Journal::default(), SessionConfig::default());
    a.apply(Slot(0), &batch(1, vec![Command::Register { nonce: 1 }])).unwrap();
    a.apply(Slot(1), &batch(2, vec![op(ClientId(0), 1, b"a")])).unwrap();
    let snap = a.snapshot();
    let mut b = Applier::new(Journal::default(), SessionConfig::default());
    b.restore(&snap).unwrap();
    assert_eq!(b.next_slot(), Slot(2));
    for x in [&mut a, &mut b] {
        let r =
            x.apply(Slot(2), &batch(3, vec![op(ClientId(0), 1, b"a"), op(ClientId(0), 2, b"b")])).unwrap();
        assert_eq!(r[0].outcome, Outcome::Applied { payload: 1u64.to_le_bytes().to_vec() });
    }
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.snapshot(), b.snapshot());
    assert!(b.restore(b"junk").is_err());
    assert_eq!(b.next_slot(), Slot(3), "a failed restore changes nothing");
}

#[test]
fn conformance_accepts_a_correct_machine() {
    let commands: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; (i % 5) as usize]).collect();
    conformance::check(Journal::default, &commands).unwrap();
}

/// Iterates a HashMap to answer: not deterministic across instances.
#[derive(Default)]
struct Unordered(HashMap<u8, u8>);

impl StateMachine for Unordered {
    fn apply(&mut self, c: &[u8]) -> Vec<u8> {
        self.0.insert(c.first().copied().unwrap_or(0), 1);
        self.0.keys().copied().collect()
    }
    fn snapshot(&self) -> Vec<u8> {
        let mut k: Vec<u8> = self.0.keys().copied().collect();
        k.sort();
        k
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), RestoreError> {
        self.0 = s.iter().map(|&k| (k, 1)).collect();
        Ok(())
    }
}

/// Forgets part of its state in snapshots.
#[derive(Default)]
struct Forgetful(u64, u64);

impl StateMachine for Forgetful {
    fn apply(&mut self, c: &[u8]) -> Vec<u8> {
        self.0 += c.len() as u64;
        self.1 += 1;
        (self.0 + self.1).to_le_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), RestoreError> {
        self.0 = u64::from_le_bytes(s.try_into().map_err(|_| RestoreError::new("len"))?);
        Ok(())
    }
}

#[test]
fn conformance_catches_broken_machines() {
    let commands: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i]).collect();
    assert!(conformance::check(Unordered::default, &commands).is_err(), "hash order leaks into answers");
    assert!(conformance::check(Forgetful::default, &commands).is_err(), "snapshot loses state");
}

#[test]
fn a_follower_applying_unanswered_keeps_the_same_state_and_answers_retries_alike() {
    let slots = [
        batch(1, vec![Command::Register { nonce: 1 }, Command::Register { nonce: 2 }]),
        batch(2, vec![op(ClientId(0), 1, b"a"), op(ClientId(1), 1, b"b"), op(ClientId(0), 1, b"a")]),
        batch(3, vec![op(ClientId(0), 2, b"c"), op(ClientId(77), 1, b"x")]),
    ];
    let mut leader = Applier::new(Journal::default(), SessionConfig::default());
    let mut follower = Applier::new(Journal::default(), SessionConfig::default());
    for (i, value) in slots.iter().enumerate() {
        leader.apply(Slot(i as u64), value).unwrap();
        follower.apply_unanswered(Slot(i as u64), value).unwrap();
    }
    assert_eq!(leader.digest(), follower.digest());
    assert_eq!(leader.snapshot(), follower.snapshot());
    assert_eq!(leader.stats(), follower.stats());
    // The follower becomes leader: a retry gets the answer the first attempt got.
    let retry = batch(4, vec![op(ClientId(0), 2, b"c"), op(ClientId(1), 1, b"b")]);
    let a = leader.apply(Slot(3), &retry).unwrap();
    let b = follower.apply(Slot(3), &retry).unwrap();
    assert_eq!(a, b);
    assert!(matches!(&b[0].outcome, Outcome::Applied { payload } if payload == &3u64.to_le_bytes()));
    assert!(follower.apply_unanswered(Slot(9), &Value::Noop).is_err(), "out of order");
}
