//! synod-examples: how to replicate your own state machine with synod.
//!
//! * [`ledger`]: a bank ledger as a user-defined
//!   [`StateMachine`](synod_state_machine::StateMachine): accounts,
//!   transfers that never overdraw, a hand-written command encoding, snapshot
//!   and restore. It depends on `synod-state-machine` alone, like any state
//!   machine should, so it runs unchanged in the runtime, the simulator and
//!   the conformance suite.
//! * [`local`]: a [`LocalCluster`], real `synod-runtime` replicas on loopback
//!   with generated certificates, as a service would start them.
//! * `examples/ledger.rs`: three replicas and a client moving money
//!   (`cargo run -p synod-examples --example ledger`).
//! * `tests/it/main.rs`: the leader is shut down in the middle of concurrent
//!   transfers, and money is still conserved, never negative, and applied
//!   exactly once on every replica.
//!
//! `docs/EMBEDDING.md` explains the choices behind each piece.
//!
//! A state machine is checked against the contract before it is replicated:
//!
//! ```
//! use synod_examples::ledger::{Ledger, LedgerAnswer, LedgerCommand, Refusal};
//! use synod_state_machine::{conformance, StateMachine};
//!
//! let commands: Vec<Vec<u8>> = [
//!     LedgerCommand::Open { account: 1, deposit: 100 },
//!     LedgerCommand::Open { account: 2, deposit: 0 },
//!     LedgerCommand::Transfer { from: 1, to: 2, amount: 60 },
//!     LedgerCommand::Transfer { from: 1, to: 2, amount: 60 },
//!     LedgerCommand::Total,
//! ]
//! .iter()
//! .map(LedgerCommand::encode)
//! .collect();
//! conformance::check(Ledger::default, &commands).unwrap();
//!
//! // Replicas apply the same bytes in the same order, and so answer alike.
//! let mut ledger = Ledger::default();
//! let answers: Vec<LedgerAnswer> =
//!     commands.iter().map(|c| LedgerAnswer::decode(&ledger.apply(c)).unwrap()).collect();
//! assert_eq!(answers[3], LedgerAnswer::Refused(Refusal::InsufficientFunds { balance: 40 }));
//! assert_eq!(answers[4], LedgerAnswer::Amount(100));
//! ```
//!
//! Replicated, the same commands travel through a `synod_client::Client`.
//! Replicas start and stop from plain threads (stopping one blocks, which
//! async code must not); only the client needs an async runtime:
//!
//! ```no_run
//! use synod_examples::ledger::{Ledger, LedgerAnswer, LedgerCommand};
//! use synod_examples::LocalCluster;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = LocalCluster::start(std::path::Path::new("/tmp/ledger"), 3, 1, Ledger::default)?;
//! let config = cluster.client_config(1)?;
//! let answer = tokio::runtime::Runtime::new()?.block_on(async {
//!     let client = synod_client::Client::connect(config).await?;
//!     let open = LedgerCommand::Open { account: 1, deposit: 100 };
//!     Ok::<_, Box<dyn std::error::Error>>(client.call(open.encode()).await?)
//! })?;
//! assert_eq!(LedgerAnswer::decode(&answer)?, LedgerAnswer::Opened);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod ledger;
pub mod local;

pub use local::{LocalCluster, LocalError};
