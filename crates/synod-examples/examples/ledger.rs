//! A replicated bank ledger: three synod replicas on loopback and a client moving money.
//!
//! Run with `cargo run -p synod-examples --example ledger`. Everything lives
//! in a temporary directory that is removed at the end.

use std::time::Duration;

use synod_client::{Client, ClientConfig};
use synod_examples::ledger::{Ledger, LedgerAnswer, LedgerCommand};
use synod_examples::LocalCluster;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // Replicas are started and stopped from plain threads: `Replica::start`
    // spawns the replica's own threads (and its transport's own tokio
    // runtime), and stopping one blocks until they end, which tokio forbids
    // inside async code. Only the client needs the application's runtime.
    let cluster = LocalCluster::start(dir.path(), 3, 1, Ledger::default)?;
    let leader = cluster.await_leader(Duration::from_secs(10)).ok_or("no leader elected")?;
    println!("three replicas running, replica {leader} leads");

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(move_money(cluster.client_config(1)?))?;

    let statuses = cluster.await_converged(Duration::from_secs(10)).ok_or("replicas did not converge")?;
    for s in &statuses {
        println!("replica {}: applied {} slots, digest {:016x}", s.id, s.applied.0, s.digest);
    }
    Ok(())
}

async fn move_money(config: ClientConfig) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(config).await?;
    let call = |command: LedgerCommand| {
        let client = client.clone();
        async move {
            let answer = client.call(command.encode()).await?;
            Ok::<_, Box<dyn std::error::Error>>(LedgerAnswer::decode(&answer)?)
        }
    };
    for (account, deposit) in [(1, 100), (2, 50), (3, 0)] {
        println!(
            "open {account} with {deposit}: {:?}",
            call(LedgerCommand::Open { account, deposit }).await?
        );
    }
    for (from, to, amount) in [(1, 3, 70), (1, 2, 40), (2, 3, 50)] {
        let answer = call(LedgerCommand::Transfer { from, to, amount }).await?;
        println!("transfer {amount} from {from} to {to}: {answer:?}");
    }
    for account in 1..=3 {
        println!("balance of {account}: {:?}", call(LedgerCommand::Balance { account }).await?);
    }
    println!("total: {:?}", call(LedgerCommand::Total).await?);
    Ok(())
}
