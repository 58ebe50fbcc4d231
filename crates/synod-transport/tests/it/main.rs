//! Integration tests of synod-transport over real loopback QUIC.

mod certs;
mod client;
mod frames;
mod hostile;
mod peers;
mod security;
mod util;
