//! Three ledger replicas on loopback; the leader is shut down while clients move money.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_client::Client;
use synod_examples::ledger::{AccountId, Ledger, LedgerAnswer, LedgerCommand, Refusal};
use synod_examples::LocalCluster;
use tokio::runtime::Runtime;

/// Long enough that only a hang reaches it; no assertion is about time.
const PATIENCE: Duration = Duration::from_secs(30);
/// Accounts 1..=ACCOUNTS, each opened with OPENING.
const ACCOUNTS: u64 = 6;
const OPENING: i64 = 1_000;
/// Worker `w` (1..=WORKERS) is the only one debiting account `w`; accounts
/// above WORKERS only receive, so money drains into them and overdraws get refused.
const WORKERS: u64 = 4;
const TRANSFERS: usize = 100;

/// One transfer a worker asked for, and what the ledger answered.
struct Attempted {
    from: AccountId,
    to: AccountId,
    amount: i64,
    answer: LedgerAnswer,
}

async fn call(client: &Client, command: LedgerCommand) -> LedgerAnswer {
    let answer = client.call(command.encode()).await.unwrap_or_else(|e| panic!("{command:?}: {e}"));
    LedgerAnswer::decode(&answer).expect("the ledger's answers decode")
}

async fn worker(client: Client, from: AccountId, done: Arc<AtomicUsize>) -> Vec<Attempted> {
    // A per-worker xorshift: the transfers are arbitrary but the same every run.
    let mut x = 0x2545_F491_4F6C_DD1D ^ from;
    let mut attempted = Vec::with_capacity(TRANSFERS);
    for _ in 0..TRANSFERS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let to = 1 + (from + x % (ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + (x >> 32) as i64 % 400;
        let answer = call(&client, LedgerCommand::Transfer { from, to, amount }).await;
        attempted.push(Attempted { from, to, amount, answer });
        done.fetch_add(1, Ordering::SeqCst);
    }
    attempted
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn money_is_conserved_and_never_overdrawn_when_the_leader_stops_mid_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3, 1, Ledger::default).unwrap();
    let rt = runtime();
    cluster.await_leader(PATIENCE).expect("a leader is elected");
    // A short per-attempt timeout makes the client give up on the stopped leader quickly.
    let config = cluster.client_config(1).unwrap().with_request_timeout(Duration::from_millis(300));
    let client = rt.block_on(Client::connect(config)).unwrap();
    for account in 1..=ACCOUNTS {
        let open = LedgerCommand::Open { account, deposit: OPENING };
        assert_eq!(rt.block_on(call(&client, open)), LedgerAnswer::Opened);
    }

    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (1..=WORKERS).map(|w| rt.spawn(worker(client.clone(), w, done.clone()))).collect();
    let all = WORKERS as usize * TRANSFERS;
    wait_until("a third of the transfers", || done.load(Ordering::SeqCst) >= all / 3);
    let leader = cluster.await_leader(PATIENCE).expect("a leader while transfers flow");
    cluster.stop(leader);
    let done_at_stop = done.load(Ordering::SeqCst);
    assert!(done_at_stop < all, "the leader must stop mid-way, but all {all} transfers were done");
    let attempted: Vec<Attempted> =
        workers.into_iter().flat_map(|w| rt.block_on(w).expect("a worker finished")).collect();
    let new_leader = cluster.await_leader(PATIENCE).expect("a new leader");
    assert_ne!(new_leader, leader);

    // Every answer is a transfer or a refused overdraw, and each one is a fact
    // that happened exactly once: replay them to know what every balance must be.
    let mut expected: BTreeMap<AccountId, i64> = (1..=ACCOUNTS).map(|a| (a, OPENING)).collect();
    let (mut moved, mut refused) = (0, 0);
    for a in &attempted {
        match a.answer {
            LedgerAnswer::Transferred { from_balance, to_balance } => {
                assert!(from_balance >= 0 && to_balance >= 0, "a balance went negative: {:?}", a.answer);
                *expected.get_mut(&a.from).unwrap() -= a.amount;
                *expected.get_mut(&a.to).unwrap() += a.amount;
                moved += 1;
            }
            LedgerAnswer::Refused(Refusal::InsufficientFunds { balance }) => {
                assert!(
                    (0..a.amount).contains(&balance),
                    "refused {} with {balance} in the account",
                    a.amount
                );
                refused += 1;
            }
            other => panic!("transfer {} -> {} of {}: {other:?}", a.from, a.to, a.amount),
        }
    }
    assert!(moved > 0 && refused > 0, "the run should both move money and refuse overdraws");
    for (&account, &want) in &expected {
        assert!(want >= 0, "account {account} would be overdrawn: {want}");
        let got = rt.block_on(call(&client, LedgerCommand::Balance { account }));
        assert_eq!(got, LedgerAnswer::Amount(want), "account {account}: every transfer applied exactly once");
    }
    let total = rt.block_on(call(&client, LedgerCommand::Total));
    assert_eq!(total, LedgerAnswer::Amount(ACCOUNTS as i64 * OPENING), "money is conserved");

    // The stopped replica comes back from its own log, catches up and agrees.
    let target = cluster.replica(new_leader).expect("the new leader runs").status().applied;
    cluster.restart(leader).unwrap();
    let back = cluster.replica(leader).expect("restarted");
    assert!(
        back.wait_for(PATIENCE, |s| s.applied >= target),
        "the restarted replica caught up: {:?}",
        back.status()
    );
    let statuses = cluster.await_converged(PATIENCE).expect("all three replicas converge");
    assert!(
        statuses.windows(2).all(|w| w[0].digest == w[1].digest),
        "replicas that applied the same slots must agree: {statuses:#?}"
    );
}
