//! synod-client: the Rust client of a synod cluster.
//!
//! A [`Client`] connects to one replica over QUIC with mutual TLS, follows
//! redirects to the leader, and registers one session through the
//! replicated log. Requests from any number of tasks are pipelined on one
//! long-lived stream, each with the next sequence number of the session.
//! When the replica stops answering (a per-attempt timeout), goes away, or
//! redirects, the client moves to another replica and resends every
//! outstanding request under the same (session, sequence number); the
//! replicas' session table applies each at most once and answers retries
//! with the first answer. The application sees only latency.
//!
//! The replicas a client is configured with need not stay the cluster's
//! members: when a redirect names a leader it has no address for, or no
//! replica it knows can be reached, it asks the replicas it knows for the
//! membership and follows it.
//!
//! [`admin::status`] asks one given replica for its view (role, leader,
//! ballot, commit and applied slots, state digest, ...), with no session and
//! without the log, so it works when there is no leader.
//!
//! [`Client::call`] takes the bytes of any state machine's command;
//! [`Client::get`], [`Client::put`], [`Client::delete`] and [`Client::cas`]
//! speak the bundled key-value store.
//!
//! Reads need not go through the log: [`Client::read`] (any state machine
//! that implements `StateMachine::read`) and [`Client::get`] are served,
//! without a session, by the replica the client is connected to, as a
//! [`ReadMode`] says: linearizable by default (ReadIndex: the leader
//! confirms it still leads, and the replica waits until it has applied the
//! leader's commit point), stale ([`Client::get_stale`]: what that replica
//! applied, not linearizable), or through the log
//! ([`Client::get_with`]`(key, ReadMode::ThroughLog)`). A read that cannot
//! be confirmed is retried until the deadline, never answered with an old
//! value (docs/OPERATIONS.md, "Reads").
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use synod_client::{Client, ClientConfig};
//! use synod_wire::NodeId;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let replicas: BTreeMap<NodeId, std::net::SocketAddr> = (1..=3)
//!     .map(|i| (NodeId(i), format!("127.0.0.1:{}", 7000 + i).parse().unwrap()))
//!     .collect();
//! let config = ClientConfig::from_cert_dir("/etc/synod/certs", 1, replicas)?
//!     .with_request_timeout(Duration::from_millis(500));
//! let client = Client::connect(config).await?;
//! client.put("greeting", "hello").await?;
//! assert_eq!(client.get("greeting").await?, Some(b"hello".to_vec()));
//! let cas = client.cas("greeting", Some(b"hello"), Some(b"bonjour")).await?;
//! assert!(cas.swapped);
//! // Clones share the session; their requests are pipelined on one stream.
//! let other = client.clone();
//! tokio::spawn(async move { other.call(b"any state machine's command".to_vec()).await });
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod admin;
mod book;
mod client;
mod config;
mod driver;
mod error;
pub mod file;

pub use client::{CasOutcome, Client, Pending, ReadMode};
pub use config::{ClientConfig, ReadsFrom, MAX_IN_FLIGHT};
pub use error::{ClientError, ConfigError, ConnectError, LinkError, Rejection};
pub use file::ClientFile;
