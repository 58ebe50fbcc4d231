//! Three replicas of the tally in this process: writes through synod-client, reads back, replicas agree.

use std::time::Duration;

use synod_client::{Client, ReadMode};
use synod_standalone::{Cluster, Tally};
use synod_state_machine::{conformance, StateMachine};

#[test]
fn the_tally_keeps_the_state_machine_contract() {
    let commands = [Tally::add("a", 1), Tally::add("b", 2), Tally::add("a", u64::MAX), b"nonsense".to_vec()];
    conformance::check(Tally::default, &commands).unwrap();
    let mut tally = Tally::default();
    assert_eq!(tally.apply(&Tally::add("a", 5)), b"5");
    assert_eq!(tally.apply(b"add a five"), b"error: bad amount");
    let mut restored = Tally::default();
    restored.restore(&tally.snapshot()).unwrap();
    assert_eq!(restored, tally);
    assert!(restored.restore(b"a 1\na 2\n").is_err() && restored == tally);
}

#[test]
fn three_replicas_apply_what_the_client_writes_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    // Replicas start and stop from plain threads; only the client needs the async runtime.
    let cluster = Cluster::start(dir.path(), 3).unwrap();
    let config = cluster.client_config().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::connect(config).await.unwrap();
        let mut expected = 0;
        for amount in 1..=20 {
            expected += amount;
            let answer = client.call(Tally::add("visits", amount)).await.unwrap();
            assert_eq!(answer, expected.to_string().into_bytes());
        }
        client.call(Tally::add("errors", 3)).await.unwrap();
        // Read back outside the log (linearizable) and through it.
        let read = client.read(Tally::get("visits"), ReadMode::Linearizable).await.unwrap();
        assert_eq!(read, b"210");
        let read = client.read(Tally::get("errors"), ReadMode::ThroughLog).await.unwrap();
        assert_eq!(read, b"3");
    });
    let statuses = cluster.await_converged(Duration::from_secs(20)).expect("replicas converge");
    let leaders = statuses.iter().filter(|s| s.is_leader).count();
    assert_eq!(leaders, 1, "{statuses:?}");
    for s in &statuses {
        assert!(s.fatal.is_none(), "{s:?}");
        assert_eq!((s.applied, s.digest), (statuses[0].applied, statuses[0].digest), "{statuses:?}");
    }
    cluster.shutdown();
}
