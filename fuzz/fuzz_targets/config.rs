//! Fuzz target: the synod binary's node.toml and a client's client.toml, parsed into their types and checked as far as that goes without resolving host names.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use synod_client::ClientFile;
use synod_transport::PeerAddr;

/// The synod binary's own configuration module: a binary crate has no library to link, so its file is
/// compiled here as it is.
#[allow(dead_code, unused_imports)]
#[path = "../../crates/synod/src/config.rs"]
mod config;

// The same text as node.toml and as client.toml. `load` is not called: it resolves every host name,
// and a fuzzer must not send DNS queries. What it checks besides that is checked here.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let table = text.parse::<toml::Table>();
    if let Ok(mut node) = toml::from_str::<config::NodeFile>(text) {
        assert!(table.is_ok(), "a node file parsed but its text is not TOML");
        node.path = PathBuf::from("/etc/synod/node.toml");
        addresses(&node.peers);
        let _ = node.resp_settings();
    }
    if let Ok(client) = toml::from_str::<ClientFile>(text) {
        assert!(table.is_ok(), "a client file parsed but its text is not TOML");
        addresses(&client.replicas);
    }
    // log_format, as `synod` reads it before anything else.
    if let Some(format) =
        table.ok().and_then(|t| t.get("log_format").and_then(|v| v.as_str()).map(str::to_owned))
    {
        let _ = format.parse::<config::LogFormat>();
    }
});

/// An address book's entries as `address_book` parses them (replica ids, then addresses), short of
/// resolving: an address that parses prints as text that parses to it again.
fn addresses(book: &BTreeMap<String, String>) {
    for (key, text) in book {
        let _ = key.parse::<u32>();
        if let Ok(addr) = PeerAddr::parse(text) {
            assert_eq!(PeerAddr::parse(&addr.to_string()).as_ref(), Ok(&addr), "{text:?}");
        }
    }
}
