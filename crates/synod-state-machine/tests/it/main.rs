//! Tests of the Applier and of the conformance suite's power to catch broken machines.

use std::collections::HashMap;

use synod_state_machine::{
    conformance, Applier, Origin, RestoreError, SessionConfig, SnapshotSource, StateMachine,
};
use synod_wire::{Batch, ClientId, Command, NodeId, Outcome, Seq, Slot, Value, Wire};

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

/// Slots that register two clients, apply requests, retry one and refuse one.
fn history() -> Vec<Value> {
    vec![
        batch(1, vec![Command::Register { nonce: 1 }, Command::Register { nonce: 2 }]),
        batch(2, vec![op(ClientId(0), 1, b"a"), op(ClientId(1), 1, b"b"), op(ClientId(0), 1, b"a")]),
        Value::Noop,
        batch(3, vec![op(ClientId(0), 2, b"c"), op(ClientId(77), 1, b"x")]),
    ]
}

fn applied(slots: &[Value]) -> Applier<Journal> {
    let mut a = Applier::new(Journal::default(), SessionConfig::default());
    for (i, value) in slots.iter().enumerate() {
        a.apply(Slot(i as u64), value).unwrap();
    }
    a
}

fn streamed(a: &Applier<Journal>) -> Vec<u8> {
    let mut out = Vec::new();
    a.snapshot_to(&mut out).unwrap();
    out
}

#[test]
fn a_streamed_snapshot_restores_everything_and_continues_identically() {
    let mut a = applied(&history());
    let bytes = streamed(&a);
    // Restore over a machine with a state of its own: the snapshot's replaces it.
    let dirty = Journal(vec![b"old".to_vec()]);
    let mut b = Applier::restore_from(dirty, SessionConfig::default(), &mut bytes.as_slice()).unwrap();
    assert_eq!(b.digest(), a.digest());
    assert_eq!(b.next_slot(), Slot(4));
    assert_eq!(b.sessions(), a.sessions());
    assert_eq!(b.machine().0, a.machine().0);
    assert_eq!(streamed(&b), bytes);
    // A retry of an old request gets the cached answer; a new one applies, alike on both.
    let next = [
        batch(4, vec![op(ClientId(0), 2, b"c"), op(ClientId(1), 1, b"b"), op(ClientId(1), 2, b"d")]),
        batch(5, vec![Command::Register { nonce: 3 }, op(ClientId(0), 3, b"e")]),
    ];
    let before = b.machine().0.len();
    for (i, value) in next.iter().enumerate() {
        let slot = Slot(4 + i as u64);
        assert_eq!(a.apply(slot, value).unwrap(), b.apply(slot, value).unwrap());
    }
    assert_eq!(b.machine().0.len(), before + 2, "the retries took no second effect");
    assert_eq!(b.stats().duplicates, 2);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.snapshot(), b.snapshot());
    assert_eq!(streamed(&a), streamed(&b));
}

#[test]
fn a_streamed_snapshot_of_a_fresh_applier_round_trips() {
    let a = Applier::new(Journal::default(), SessionConfig::default());
    let bytes = streamed(&a);
    let b =
        Applier::restore_from(Journal::default(), SessionConfig::default(), &mut bytes.as_slice()).unwrap();
    assert_eq!((b.digest(), b.next_slot()), (a.digest(), a.next_slot()));
    assert!(b.sessions().is_empty());
}

/// Sums command lengths; its streamed state is exactly eight bytes, read without reading on.
#[derive(Debug)]
struct Sum(u64);

impl StateMachine for Sum {
    fn apply(&mut self, c: &[u8]) -> Vec<u8> {
        self.0 += c.len() as u64;
        self.0.to_le_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), RestoreError> {
        self.0 = u64::from_le_bytes(s.try_into().map_err(|_| RestoreError::new("want 8 bytes"))?);
        Ok(())
    }
    fn restore_from(&mut self, input: &mut dyn std::io::Read) -> Result<(), RestoreError> {
        let mut b = [0u8; 8];
        input.read_exact(&mut b)?;
        self.0 = u64::from_le_bytes(b);
        Ok(())
    }
}

fn restore(bytes: &[u8]) -> Result<Applier<Journal>, RestoreError> {
    Applier::restore_from(Journal::default(), SessionConfig::default(), &mut &bytes[..])
}

#[test]
fn bad_streamed_snapshots_are_errors() {
    let bytes = streamed(&applied(&history()));
    assert!(restore(&[]).is_err());
    assert!(restore(b"garbage, not a snapshot at all").is_err());
    let mut version = bytes.clone();
    version[8] = 3;
    let e = restore(&version).unwrap_err();
    assert!(e.to_string().contains("version 3"), "{e}");
    let mut magic = bytes.clone();
    magic[0] ^= 1;
    assert!(restore(&magic).is_err());
    // Journal's state runs to the end (the default restore_from); a machine
    // that knows its own length leaves the applier to refuse what follows.
    let mut counter = Applier::new(Sum(0), SessionConfig::default());
    counter.apply(Slot(0), &history()[0]).unwrap();
    let mut trailing = Vec::new();
    counter.snapshot_to(&mut trailing).unwrap();
    let ok = Applier::restore_from(Sum(1), SessionConfig::default(), &mut trailing.as_slice()).unwrap();
    assert_eq!(ok.machine().0, 0);
    trailing.push(0);
    let e = Applier::restore_from(Sum(1), SessionConfig::default(), &mut trailing.as_slice()).unwrap_err();
    assert!(e.to_string().contains("follow"), "{e}");
    // A configuration's or a session table's length past the end of the
    // input allocates nothing big.
    for at in [28, 36] {
        let mut long = bytes.clone();
        long[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(restore(&long).is_err());
    }
    // Cut anywhere in the header or the session table.
    let machine_len = Journal::snapshot(applied(&history()).machine()).len();
    for cut in 0..bytes.len() - machine_len {
        assert!(restore(&bytes[..cut]).is_err(), "accepted a cut at {cut}");
    }
}

proptest::proptest! {
    #[test]
    fn random_streamed_input_is_an_error_not_a_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        proptest::prop_assert!(restore(&bytes).is_err());
    }

    #[test]
    fn cut_or_flipped_streamed_snapshots_never_panic(cut in 0usize..400, at in 0usize..400, bit in 0u8..8) {
        let bytes = streamed(&applied(&history()));
        let cut = cut.min(bytes.len());
        let _ = restore(&bytes[..cut]);
        let mut flipped = bytes.clone();
        let at = at % flipped.len();
        flipped[at] ^= 1 << bit;
        let _ = restore(&flipped);
    }
}

/// Streams a state that `restore_from` cannot rebuild: the conformance suite must see it.
#[derive(Default)]
struct BadStream(Vec<u8>);

impl StateMachine for BadStream {
    fn apply(&mut self, c: &[u8]) -> Vec<u8> {
        self.0.extend_from_slice(c);
        (self.0.len() as u64).to_le_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), RestoreError> {
        self.0 = s.to_vec();
        Ok(())
    }
    fn snapshot_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        // Loses the last byte.
        out.write_all(&self.0[..self.0.len().saturating_sub(1)])
    }
}

#[test]
fn conformance_catches_a_broken_streaming_form() {
    let commands: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 2]).collect();
    let verdict = conformance::check(BadStream::default, &commands);
    assert!(matches!(verdict, Err(conformance::Violation::StreamRestore { .. })), "{verdict:?}");
}

#[test]
// The test, not the crate, starts a thread: the source is written on another one, as the runtime does.
#[allow(clippy::disallowed_methods)]
fn an_applied_snapshot_source_writes_what_snapshot_to_wrote_when_taken() {
    let mut a = applied(&history());
    let bytes = streamed(&a);
    let source = a.snapshot_source();
    assert_eq!(source.upto(), a.next_slot());
    assert_eq!(source.upto(), Slot(4));
    // The applier goes on: new sessions, new requests, a retry.
    let next = [
        batch(4, vec![op(ClientId(0), 3, b"c"), op(ClientId(1), 2, b"d")]),
        batch(5, vec![Command::Register { nonce: 3 }, op(ClientId(0), 3, b"e")]),
    ];
    for (i, value) in next.iter().enumerate() {
        a.apply(Slot(4 + i as u64), value).unwrap();
    }
    assert_ne!(streamed(&a), bytes, "the applier moved on");
    // Written on another thread, as the runtime does.
    let written = std::thread::spawn(move || {
        let mut out = Vec::new();
        source.write_to(&mut out).unwrap();
        out
    })
    .join()
    .unwrap();
    assert_eq!(written, bytes, "exactly the bytes of snapshot_to when the source was taken");
    let b = restore(&written).unwrap();
    assert_eq!(b.next_slot(), Slot(4));
    assert_eq!(b.machine().0.len(), 3);
}

#[test]
fn a_fresh_appliers_snapshot_source_round_trips() {
    let a = Applier::new(Journal::default(), SessionConfig::default());
    let source = a.snapshot_source();
    assert_eq!(source.upto(), Slot(0));
    let mut out = Vec::new();
    source.write_to(&mut out).unwrap();
    assert_eq!(out, streamed(&a));
    assert_eq!(restore(&out).unwrap().next_slot(), Slot(0));
}

/// A machine whose frozen view writes nothing at all (right only while the state is empty).
#[derive(Default)]
struct BadSource(Vec<u8>);

impl StateMachine for BadSource {
    fn apply(&mut self, c: &[u8]) -> Vec<u8> {
        self.0.extend_from_slice(c);
        Vec::new()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), RestoreError> {
        self.0 = s.to_vec();
        Ok(())
    }
    fn snapshot_source(&self) -> Box<dyn SnapshotSource> {
        struct Empty;
        impl SnapshotSource for Empty {
            fn write_to(self: Box<Self>, _: &mut dyn std::io::Write) -> std::io::Result<()> {
                Ok(())
            }
        }
        Box::new(Empty)
    }
}

#[test]
fn conformance_catches_a_snapshot_source_that_writes_other_bytes() {
    let commands: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 2]).collect();
    let verdict = conformance::check(BadSource::default, &commands);
    assert!(matches!(verdict, Err(conformance::Violation::SnapshotSource { at: 10, .. })), "{verdict:?}");
}

#[test]
fn a_stop_sign_is_replicated_state_that_a_snapshot_carries() {
    let mut applier = Applier::new(Sum(0), SessionConfig::default());
    assert_eq!(applier.membership(), None, "configuration 0 until a stop sign applies");
    let mut next =
        synod_wire::Membership::initial([(NodeId(1), "a:1".to_owned()), (NodeId(4), "b:4".to_owned())]);
    next.epoch = 1;
    let before = applier.digest();
    applier.apply(Slot(0), &Value::Reconfig(next.clone())).unwrap();
    assert_eq!(applier.membership(), Some(&next));
    assert_ne!(applier.digest(), before, "the digest covers configurations");
    let mut bytes = Vec::new();
    applier.snapshot_to(&mut bytes).unwrap();
    assert_eq!(synod_state_machine::snapshot_membership(&mut bytes.as_slice()).unwrap(), Some(next.clone()));
    let restored = Applier::restore_from(Sum(0), SessionConfig::default(), &mut bytes.as_slice()).unwrap();
    assert_eq!(restored.membership(), Some(&next));
    assert_eq!(restored.digest(), applier.digest());
}

#[test]
fn a_stale_stop_sign_changes_nothing() {
    let mut applier = Applier::new(Sum(0), SessionConfig::default());
    let config = |epoch: u64, ids: &[u32]| {
        let mut m = synod_wire::Membership::initial(ids.iter().map(|&i| (NodeId(i), format!("h:{i}"))));
        m.epoch = epoch;
        m
    };
    let first = config(1, &[1, 3]);
    applier.apply(Slot(0), &Value::Reconfig(first.clone())).unwrap();
    // Proposed by a leader of configuration 0 past its end, and chosen later
    // (simulator seed 7224064): not a configuration after the one in force.
    let before = applier.digest();
    applier.apply(Slot(1), &Value::Reconfig(config(1, &[1, 2, 3, 4]))).unwrap();
    applier.apply(Slot(2), &Value::Reconfig(config(0, &[1, 2]))).unwrap();
    assert_eq!(applier.membership(), Some(&first), "a stale stop sign left the configuration alone");
    assert_eq!(applier.digest(), before, "and the state");
    let second = config(2, &[1, 3, 5]);
    applier.apply(Slot(3), &Value::Reconfig(second.clone())).unwrap();
    assert_eq!(applier.membership(), Some(&second));
}
