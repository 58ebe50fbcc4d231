//! Fuzz target: every synod-wire decoder, fed arbitrary bytes; decoding must yield a value or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synod_wire::{Batch, ClientFrame, ClientReply, LogRecord, Message, Wire};

/// Decodes `data` as `T`; a value that decodes must re-encode and decode to itself.
fn check<T: Wire + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = T::decode(data) {
        let bytes = value.encode().expect("a decoded value encodes");
        assert_eq!(T::decode(&bytes).expect("a re-encoded value decodes"), value);
    }
}

fuzz_target!(|data: &[u8]| {
    check::<Message>(data);
    check::<ClientFrame>(data);
    check::<ClientReply>(data);
    check::<Batch>(data);
    check::<LogRecord>(data);
});
