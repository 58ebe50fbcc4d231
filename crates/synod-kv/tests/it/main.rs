//! Tests of the key-value store: semantics, and the StateMachine conformance suite.

use proptest::prelude::*;
use synod_kv::{KvCommand, KvFailure, KvPair, KvResponse, KvStore, SetCondition};
use synod_state_machine::wire::Wire;
use synod_state_machine::{conformance, StateMachine};

#[test]
fn put_get_delete_cas() {
    let mut kv = KvStore::default();
    let k = || b"k".to_vec();
    assert_eq!(kv.execute(&KvCommand::Get { key: k() }), KvResponse::Value(None));
    assert_eq!(kv.execute(&KvCommand::Put { key: k(), value: b"1".to_vec() }), KvResponse::Stored);
    assert_eq!(
        kv.execute(&KvCommand::Cas { key: k(), expected: Some(b"0".to_vec()), new: Some(b"2".to_vec()) }),
        KvResponse::Cas { swapped: false, current: Some(b"1".to_vec()) }
    );
    assert_eq!(
        kv.execute(&KvCommand::Cas { key: k(), expected: Some(b"1".to_vec()), new: Some(b"2".to_vec()) }),
        KvResponse::Cas { swapped: true, current: Some(b"1".to_vec()) }
    );
    assert_eq!(kv.get(b"k"), Some(&b"2"[..]));
    assert_eq!(
        kv.execute(&KvCommand::Cas { key: k(), expected: Some(b"2".to_vec()), new: None }),
        KvResponse::Cas { swapped: true, current: Some(b"2".to_vec()) }
    );
    assert!(kv.is_empty());
    assert_eq!(
        kv.execute(&KvCommand::Cas { key: k(), expected: None, new: Some(b"3".to_vec()) }),
        KvResponse::Cas { swapped: true, current: None }
    );
    assert_eq!(kv.execute(&KvCommand::Delete { key: k() }), KvResponse::Value(Some(b"3".to_vec())));
}

#[test]
fn malformed_commands_get_an_error_answer() {
    let mut kv = KvStore::default();
    let answer = KvResponse::decode(&kv.apply(b"\x01\x02garbage")).unwrap();
    assert!(matches!(answer, KvResponse::Invalid(_)), "{answer:?}");
    assert!(kv.restore(b"junk").is_err());
}

fn command() -> impl Strategy<Value = KvCommand> {
    // Keys and values both short enough to live inline in the table and too
    // long to (over 30 and 102 bytes), so that puts move values between the two.
    let key = prop_oneof![(0u8..6).prop_map(|k| vec![b'k', k]), (0u8..3).prop_map(|k| vec![k; 40])];
    let val = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::collection::vec(any::<u8>(), 100..106),
        proptest::collection::vec(any::<u8>(), 200..201),
    ];
    prop_oneof![
        key.clone().prop_map(|key| KvCommand::Get { key }),
        (key.clone(), val.clone()).prop_map(|(key, value)| KvCommand::Put { key, value }),
        key.clone().prop_map(|key| KvCommand::Delete { key }),
        (key, proptest::option::of(val.clone()), proptest::option::of(val))
            .prop_map(|(key, expected, new)| KvCommand::Cas { key, expected, new }),
    ]
}

/// Every command, the Redis-shaped ones too, over few keys (so they meet).
fn any_command() -> impl Strategy<Value = KvCommand> {
    let key = (0u8..4).prop_map(|k| vec![b'k', k]);
    let keys = proptest::collection::vec(key.clone(), 0..4);
    let val = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..4),
        (-3i64..3).prop_map(|n| n.to_string().into_bytes()),
        Just(i64::MAX.to_string().into_bytes()),
    ];
    let pairs = proptest::collection::vec(
        (key.clone(), val.clone()).prop_map(|(key, value)| KvPair { key, value }),
        0..4,
    );
    let condition =
        prop_oneof![Just(SetCondition::Always), Just(SetCondition::IfAbsent), Just(SetCondition::IfPresent)];
    prop_oneof![
        command(),
        keys.clone().prop_map(|keys| KvCommand::MultiGet { keys }),
        pairs.clone().prop_map(|pairs| KvCommand::MultiPut { pairs }),
        pairs.prop_map(|pairs| KvCommand::MultiPutIfAbsent { pairs }),
        (key.clone(), prop_oneof![-2i64..3, Just(i64::MAX), Just(i64::MIN)])
            .prop_map(|(key, by)| KvCommand::Incr { key, by }),
        (key.clone(), val.clone()).prop_map(|(key, value)| KvCommand::Append { key, value }),
        key.clone().prop_map(|key| KvCommand::Strlen { key }),
        keys.clone().prop_map(|keys| KvCommand::Exists { keys }),
        (key, val, condition).prop_map(|(key, value, condition)| KvCommand::Set { key, value, condition }),
        keys.prop_map(|keys| KvCommand::DeleteMany { keys }),
    ]
}

proptest! {
    #[test]
    fn the_store_passes_the_conformance_suite_with_every_command(
        commands in proptest::collection::vec(any_command(), 0..80),
    ) {
        let mut bytes: Vec<Vec<u8>> = commands.iter().map(|c| c.encode().unwrap()).collect();
        bytes.push(b"garbage".to_vec());
        prop_assert_eq!(conformance::check(KvStore::default, &bytes), Ok(()));
    }

    /// The decoded and the in-place paths agree, and every query served
    /// outside the log answers as applying it would.
    #[test]
    fn every_command_answers_alike_decoded_in_place_and_as_a_read(
        commands in proptest::collection::vec(any_command(), 0..120),
    ) {
        let (mut decoded, mut in_place) = (KvStore::default(), KvStore::default());
        for c in &commands {
            let bytes = c.encode().unwrap();
            let read = in_place.read(&bytes).unwrap();
            let answer = in_place.apply(&bytes);
            let want = decoded.execute(c);
            prop_assert_eq!(KvResponse::decode(&answer).unwrap(), want.clone());
            let read = KvResponse::decode(&read).unwrap();
            match c {
                KvCommand::Get { .. } | KvCommand::MultiGet { .. } | KvCommand::Exists { .. }
                | KvCommand::Strlen { .. } => prop_assert_eq!(read, want),
                _ => prop_assert!(matches!(read, KvResponse::Invalid(_)), "{:?}", read),
            }
        }
        prop_assert_eq!(decoded.snapshot(), in_place.snapshot());
    }
}

#[test]
fn redis_shaped_commands_answer_as_redis_does() {
    let mut kv = KvStore::default();
    let b = |s: &str| s.as_bytes().to_vec();
    let pair = |k: &str, v: &str| KvPair { key: b(k), value: b(v) };
    let mut run = |c: KvCommand| kv.execute(&c);
    // MSET, MGET (a missing key is nil), EXISTS counts repeats, DEL counts removals.
    assert_eq!(
        run(KvCommand::MultiPut { pairs: vec![pair("a", "1"), pair("b", "2"), pair("a", "3")] }),
        KvResponse::Stored
    );
    assert_eq!(
        run(KvCommand::MultiGet { keys: vec![b("a"), b("x"), b("b")] }),
        KvResponse::Values(vec![Some(b("3")), None, Some(b("2"))])
    );
    assert_eq!(run(KvCommand::Exists { keys: vec![b("a"), b("a"), b("x")] }), KvResponse::Integer(2));
    // MSETNX: all or nothing.
    assert_eq!(
        run(KvCommand::MultiPutIfAbsent { pairs: vec![pair("c", "1"), pair("a", "9")] }),
        KvResponse::Integer(0)
    );
    assert_eq!(run(KvCommand::Exists { keys: vec![b("c")] }), KvResponse::Integer(0));
    assert_eq!(
        run(KvCommand::MultiPutIfAbsent { pairs: vec![pair("c", "1"), pair("d", "2")] }),
        KvResponse::Integer(1)
    );
    assert_eq!(
        run(KvCommand::DeleteMany { keys: vec![b("c"), b("d"), b("c"), b("x")] }),
        KvResponse::Integer(2)
    );
    // INCR: absent is 0; only canonical base-10 i64 strings; overflow changes nothing.
    assert_eq!(run(KvCommand::Incr { key: b("n"), by: 5 }), KvResponse::Integer(5));
    assert_eq!(run(KvCommand::Incr { key: b("n"), by: -7 }), KvResponse::Integer(-2));
    assert_eq!(run(KvCommand::Get { key: b("n") }), KvResponse::Value(Some(b("-2"))));
    for bad in ["", " 1", "1 ", "+1", "01", "-0", "1.5", "abc", "9223372036854775808", "-"] {
        run(KvCommand::Put { key: b("s"), value: b(bad) });
        assert_eq!(
            run(KvCommand::Incr { key: b("s"), by: 1 }),
            KvResponse::Failed(KvFailure::NotAnInteger),
            "{bad:?}"
        );
        assert_eq!(run(KvCommand::Get { key: b("s") }), KvResponse::Value(Some(b(bad))));
    }
    run(KvCommand::Put { key: b("m"), value: b("9223372036854775807") });
    assert_eq!(run(KvCommand::Incr { key: b("m"), by: 1 }), KvResponse::Failed(KvFailure::Overflow));
    assert_eq!(run(KvCommand::Incr { key: b("m"), by: -1 }), KvResponse::Integer(i64::MAX - 1));
    run(KvCommand::Put { key: b("m"), value: b("-9223372036854775808") });
    assert_eq!(run(KvCommand::Incr { key: b("m"), by: -1 }), KvResponse::Failed(KvFailure::Overflow));
    assert_eq!(run(KvCommand::Incr { key: b("m"), by: 0 }), KvResponse::Integer(i64::MIN));
    // APPEND and STRLEN.
    assert_eq!(run(KvCommand::Append { key: b("t"), value: b("ab") }), KvResponse::Integer(2));
    assert_eq!(run(KvCommand::Append { key: b("t"), value: b("cde") }), KvResponse::Integer(5));
    assert_eq!(run(KvCommand::Strlen { key: b("t") }), KvResponse::Integer(5));
    assert_eq!(run(KvCommand::Strlen { key: b("none") }), KvResponse::Integer(0));
    // SET NX / XX, with the previous value for GET.
    let set = |k: &str, v: &str, condition| KvCommand::Set { key: b(k), value: b(v), condition };
    assert_eq!(
        run(set("s2", "1", SetCondition::IfPresent)),
        KvResponse::Set { stored: false, previous: None }
    );
    assert_eq!(run(set("s2", "1", SetCondition::IfAbsent)), KvResponse::Set { stored: true, previous: None });
    assert_eq!(
        run(set("s2", "2", SetCondition::IfAbsent)),
        KvResponse::Set { stored: false, previous: Some(b("1")) }
    );
    assert_eq!(
        run(set("s2", "3", SetCondition::IfPresent)),
        KvResponse::Set { stored: true, previous: Some(b("1")) }
    );
    assert_eq!(
        run(set("s2", "4", SetCondition::Always)),
        KvResponse::Set { stored: true, previous: Some(b("3")) }
    );
    assert_eq!(run(KvCommand::Get { key: b("s2") }), KvResponse::Value(Some(b("4"))));
}

proptest! {
    #[test]
    fn the_store_passes_the_conformance_suite(commands in proptest::collection::vec(command(), 0..80)) {
        let mut bytes: Vec<Vec<u8>> = commands.iter().map(|c| c.encode().unwrap()).collect();
        bytes.push(b"garbage".to_vec());
        prop_assert_eq!(conformance::check(KvStore::default, &bytes), Ok(()));
    }
}

proptest! {
    /// Every answer, through both the decoded and the in-place paths, is what a plain map would give.
    #[test]
    fn the_store_answers_as_a_map_would(commands in proptest::collection::vec(command(), 0..120)) {
        use std::collections::BTreeMap;
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let (mut decoded, mut in_place) = (KvStore::default(), KvStore::default());
        for c in &commands {
            let want = match c {
                KvCommand::Get { key } => KvResponse::Value(model.get(key).cloned()),
                KvCommand::Put { key, value } => {
                    model.insert(key.clone(), value.clone());
                    KvResponse::Stored
                }
                KvCommand::Delete { key } => KvResponse::Value(model.remove(key)),
                KvCommand::Cas { key, expected, new } => {
                    let current = model.get(key).cloned();
                    let swapped = current == *expected;
                    if swapped {
                        match new {
                            Some(v) => drop(model.insert(key.clone(), v.clone())),
                            None => drop(model.remove(key)),
                        }
                    }
                    KvResponse::Cas { swapped, current }
                }
                other => unreachable!("command() makes no {other:?}"),
            };
            prop_assert_eq!(&decoded.execute(c), &want);
            let answer = in_place.apply(&c.encode().unwrap());
            prop_assert_eq!(KvResponse::decode(&answer).unwrap(), want);
        }
        prop_assert_eq!(decoded.len(), model.len());
        for (k, v) in &model {
            prop_assert_eq!(in_place.get(k), Some(v.as_slice()));
        }
        prop_assert_eq!(decoded.snapshot(), in_place.snapshot());
    }
}

/// A store of `n` keys: short values inline, every seventh long (on the heap).
fn store(n: u32) -> KvStore {
    let mut kv = KvStore::default();
    for i in 0..n {
        let value = if i % 7 == 0 { vec![i as u8; 150] } else { i.to_le_bytes().to_vec() };
        kv.execute(&KvCommand::Put { key: format!("key-{i:08}").into_bytes(), value });
    }
    kv
}

fn streamed(kv: &KvStore) -> Vec<u8> {
    let mut out = Vec::new();
    kv.snapshot_to(&mut out).unwrap();
    out
}

#[test]
fn a_store_of_100k_keys_streams_and_restores() {
    let kv = store(100_000);
    let bytes = streamed(&kv);
    assert_eq!(bytes, kv.snapshot(), "snapshot and snapshot_to write the same bytes");
    let mut restored = store(3);
    restored.restore_from(&mut bytes.as_slice()).unwrap();
    assert_eq!(restored, kv);
    let mut from_vec = KvStore::default();
    from_vec.restore(&bytes).unwrap();
    assert_eq!(from_vec, kv);
    // Through a reader that hands out a few bytes at a time.
    let mut slow = KvStore::default();
    slow.restore_from(&mut Trickle(&bytes)).unwrap();
    assert_eq!(slow, kv);
}

/// A reader that returns at most 3 bytes per call.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(3).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn truncated_or_corrupted_snapshots_of_100k_keys_are_errors_and_change_nothing() {
    let kv = store(100_000);
    let bytes = streamed(&kv);
    let mut target = store(5);
    let before = target.clone();
    for cut in [0, 7, 8, 9, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(target.restore_from(&mut &bytes[..cut]).is_err(), "accepted a cut at {cut}");
        assert!(target.restore(&bytes[..cut]).is_err(), "accepted a cut at {cut}");
    }
    assert_eq!(target, before, "a failed restore changes nothing");
    // Two entries swapped: the keys are out of order.
    let entry_len = |at: usize| {
        let key = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let value = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        8 + key + value
    };
    let first = 16 + entry_len(16);
    let second = entry_len(first);
    let mut swapped = bytes[..16].to_vec();
    swapped.extend_from_slice(&bytes[first..first + second]);
    swapped.extend_from_slice(&bytes[16..first]);
    swapped.extend_from_slice(&bytes[first + second..]);
    assert_eq!(swapped.len(), bytes.len());
    let e = target.restore_from(&mut swapped.as_slice()).unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e}");
    // A length past the end, a count too high, and trailing bytes.
    let mut long = bytes.clone();
    long[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(target.restore_from(&mut long.as_slice()).is_err());
    let mut count = bytes.clone();
    count[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(target.restore_from(&mut count.as_slice()).is_err());
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(target.restore(&trailing).is_err());
    assert_eq!(target, before);
}

#[test]
fn a_snapshot_in_the_key_order_of_earlier_versions_still_restores() {
    // Before the hash order: no tag, the number of keys, the keys in byte order.
    let kv = store(10_000);
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = (0..10_000u32)
        .map(|i| {
            let key = format!("key-{i:08}").into_bytes();
            let value = kv.get(&key).unwrap().to_vec();
            (key, value)
        })
        .collect();
    entries.sort();
    let mut old = (entries.len() as u64).to_le_bytes().to_vec();
    for (key, value) in &entries {
        old.extend_from_slice(&(key.len() as u32).to_le_bytes());
        old.extend_from_slice(&(value.len() as u32).to_le_bytes());
        old.extend_from_slice(key);
        old.extend_from_slice(value);
    }
    let mut restored = KvStore::default();
    restored.restore_from(&mut old.as_slice()).unwrap();
    assert_eq!(restored, kv);
    assert_eq!(restored.snapshot(), kv.snapshot(), "written again in hash order");
    // Out of byte order, that format is refused as before.
    let (a, b) = (8usize, 8 + 8 + 12 + 150);
    let mut swapped = old[..a].to_vec();
    swapped.extend_from_slice(&old[b..b + 8 + 12 + 4]);
    swapped.extend_from_slice(&old[a..b]);
    swapped.extend_from_slice(&old[b + 8 + 12 + 4..]);
    let e = restored.restore_from(&mut swapped.as_slice()).unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e}");
}

#[test]
fn equal_stores_write_equal_snapshots_whatever_their_history() {
    // One store grew to 50,000 keys (and 512 shards) and lost most of them;
    // the other only ever held the survivors.
    let mut grown = store(50_000);
    for i in 1_000..50_000u32 {
        grown.execute(&KvCommand::Delete { key: format!("key-{i:08}").into_bytes() });
    }
    let fresh = store(1_000);
    assert_eq!(grown, fresh);
    assert_eq!(grown.snapshot(), fresh.snapshot());
    let mut restored = KvStore::default();
    restored.restore(&grown.snapshot()).unwrap();
    assert_eq!(restored.snapshot(), fresh.snapshot());
}

proptest! {
    #[test]
    fn random_bytes_never_panic_a_restore(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut kv = KvStore::default();
        let _ = kv.restore_from(&mut bytes.as_slice());
        let _ = kv.restore(&bytes);
    }

    #[test]
    fn streamed_snapshots_round_trip(commands in proptest::collection::vec(command(), 0..60)) {
        let mut kv = KvStore::default();
        for c in &commands {
            kv.execute(c);
        }
        let bytes = streamed(&kv);
        prop_assert_eq!(&bytes, &kv.snapshot());
        let mut restored = KvStore::default();
        restored.restore_from(&mut bytes.as_slice()).unwrap();
        prop_assert_eq!(restored, kv);
    }
}

#[test]
fn an_applier_over_the_store_streams_and_refuses_a_cut_snapshot() {
    use synod_state_machine::wire::{Batch, ClientId, Command, Seq, Slot, Value};
    use synod_state_machine::{Applier, SessionConfig};
    let value = |commands| Value::Batch(Batch { timestamp_ms: 1, commands }.encode().unwrap().into());
    let put = |seq: u64| Command::Op {
        client: ClientId(0),
        seq: Seq(seq),
        ack: Seq(0),
        payload: KvCommand::Put { key: vec![seq as u8], value: vec![1] }.encode().unwrap(),
    };
    let mut a = Applier::new(store(1000), SessionConfig::default());
    a.apply(Slot(0), &value(vec![Command::Register { nonce: 1 }])).unwrap();
    a.apply(Slot(1), &value(vec![put(1), put(2)])).unwrap();
    let mut bytes = Vec::new();
    a.snapshot_to(&mut bytes).unwrap();
    let b =
        Applier::restore_from(KvStore::default(), SessionConfig::default(), &mut bytes.as_slice()).unwrap();
    assert_eq!((b.machine(), b.digest(), b.next_slot()), (a.machine(), a.digest(), a.next_slot()));
    for cut in [10, 40, bytes.len() / 2, bytes.len() - 1] {
        let r = Applier::restore_from(KvStore::default(), SessionConfig::default(), &mut &bytes[..cut]);
        assert!(r.is_err(), "accepted a cut at {cut}");
    }
    bytes.push(0);
    assert!(
        Applier::restore_from(KvStore::default(), SessionConfig::default(), &mut bytes.as_slice()).is_err()
    );
}

fn written(source: Box<dyn synod_state_machine::SnapshotSource>) -> Vec<u8> {
    let mut out = Vec::new();
    source.write_to(&mut out).unwrap();
    out
}

#[test]
// The test, not the crate, starts a thread: the view is written on another one, as the runtime does.
#[allow(clippy::disallowed_methods)]
fn a_snapshot_source_is_frozen_while_the_store_goes_on() {
    let mut kv = store(100_000);
    let bytes = streamed(&kv);
    let source = kv.snapshot_source();
    let also = StateMachine::snapshot_source(&kv);
    let writer = std::thread::spawn(move || written(source));
    // Overwrites (inline and heap), deletes, new keys: enough to double the shards (past 131,072 keys: 100,000 - 20,000 + 60,000) while the views live.
    for i in (0..100_000u32).step_by(3) {
        kv.execute(&KvCommand::Put {
            key: format!("key-{i:08}").into_bytes(),
            value: vec![9; i as usize % 200],
        });
    }
    for i in (1..100_000u32).step_by(5) {
        kv.execute(&KvCommand::Delete { key: format!("key-{i:08}").into_bytes() });
    }
    for i in 100_000..160_000u32 {
        kv.apply(
            &KvCommand::Put { key: format!("key-{i:08}").into_bytes(), value: vec![1; 3] }.encode().unwrap(),
        );
    }
    assert_eq!(writer.join().unwrap(), bytes, "the view wrote the store as it was when taken");
    assert_eq!(written(also), bytes);
    // And a view of the changed store writes the changed store.
    let now = streamed(&kv);
    assert_ne!(now, bytes);
    assert_eq!(written(kv.snapshot_source()), now);
    let mut restored = KvStore::default();
    restored.restore_from(&mut now.as_slice()).unwrap();
    assert_eq!(restored, kv);
    assert_eq!(restored.len(), kv.len());
}

proptest! {
    #[test]
    fn views_taken_anywhere_write_what_snapshot_to_wrote_then(
        commands in proptest::collection::vec(command(), 0..200),
        cuts in proptest::collection::vec(0usize..200, 0..6),
    ) {
        let mut kv = KvStore::default();
        let mut views = Vec::new();
        for (i, c) in commands.iter().enumerate() {
            if cuts.contains(&i) {
                views.push((streamed(&kv), kv.snapshot_source()));
            }
            kv.apply(&c.encode().unwrap());
        }
        for (bytes, view) in views {
            prop_assert_eq!(written(view), bytes);
        }
    }
}
