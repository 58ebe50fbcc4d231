//! Fuzz target: the transport's frame decoder, fed arbitrary bytes in arbitrary pieces.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use synod_transport::frame::{self, FrameDecoder, FrameError};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit and the piece size, the rest is the stream.
    let Some((&knob, stream)) = data.split_first() else { return };
    let limit = 1usize << (knob % 24);
    let piece = usize::from(knob / 24) + 1;
    let decoder = FrameDecoder::new(limit);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut failed = false;
    'feed: for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => {
                    assert!(f.len() <= limit);
                    frames.push(f);
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { len, limit: l }) => {
                    assert!(len > l);
                    failed = true;
                    break 'feed;
                }
                Err(e) => panic!("decode returned {e}"),
            }
        }
    }
    if !failed && decoder.finish(&buf).is_ok() {
        // Whatever decoded cleanly re-encodes to exactly the input.
        let mut again = BytesMut::new();
        for f in &frames {
            frame::encode(f, &mut again);
        }
        assert_eq!(&again[..], stream);
    }
});
