//! Integration tests of synod-transport over real loopback QUIC.

mod certs;
mod client;
mod frames;
mod peers;
mod security;
mod util;
