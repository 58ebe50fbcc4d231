//! Integration tests of synod-wal through its public API.

mod fuzz;
mod snapshot;
