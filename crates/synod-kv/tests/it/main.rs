//! Tests of the key-value store: semantics, and the StateMachine conformance suite.

use proptest::prelude::*;
use synod_kv::{KvCommand, KvResponse, KvStore};
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
