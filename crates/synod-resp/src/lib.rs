//! synod-resp: a RESP2 (Redis protocol) front door to a synod cluster.
//!
//! `redis-cli`, `redis-benchmark` and Redis client libraries speak to the
//! bundled key-value store through it: each Redis command becomes one
//! key-value command through the replicated log (writes) or a
//! linearizable read outside it (GET, MGET, EXISTS, STRLEN), sent with a
//! [`synod_client::Client`]'s exactly-once session. docs/RESP.md lists the
//! commands and their semantics.
//!
//! - [`parse`]: the request parser (arrays of bulk strings, inline commands);
//! - [`Reply`]: replies and their encoding;
//! - [`command`]: Redis commands to key-value commands and back;
//! - [`RespServer`]: the TCP listener.
#![warn(missing_docs)]

pub mod command;
pub mod parse;
mod reply;
mod server;

pub use reply::Reply;
pub use server::{bind, check_listen, RespConfig, RespServer, StartError};
