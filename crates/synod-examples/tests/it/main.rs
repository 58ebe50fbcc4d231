//! Integration tests of the ledger example: replicated through synod-runtime, and against the conformance suite.

mod conformance;
mod failover;
