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
    let key = (0u8..6).prop_map(|k| vec![b'k', k]);
    let val = proptest::collection::vec(any::<u8>(), 0..8);
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
