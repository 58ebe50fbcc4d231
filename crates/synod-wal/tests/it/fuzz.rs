//! Inputs the `wal` fuzz target (fuzz/fuzz_targets/wal.rs) found, each a regression test: recovery
//! over them must refuse or recover, the same way on every open, and never panic.

use std::path::Path;

use synod_wal::{FaultyFs, OpenError, Options, Wal};

/// A segment file as the format says: the header of segment `index`, then `frames` (payload, batch,
/// synced) with valid checksums, then `tail`.
fn segment(index: u64, frames: &[(&[u8], u64, u64)], tail: &[u8]) -> Vec<u8> {
    let mut b = b"SYNODWAL".to_vec();
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for (payload, batch, synced) in frames {
        let len = payload.len() as u32;
        let mut rest = len.to_le_bytes().to_vec();
        rest.extend_from_slice(&batch.to_le_bytes());
        rest.extend_from_slice(&synced.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(payload), &rest);
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&crc.to_le_bytes());
        b.extend_from_slice(&rest[4..]);
        b.extend_from_slice(payload);
    }
    b.extend_from_slice(tail);
    b
}

/// A record whose checksum holds but that does not decode, then stray bytes after the end of the
/// log: the first open took the stray bytes for a torn tail, cut them off, and went on as if the
/// record were not there (recovering nothing, and about to write over it); the second open, with
/// the tail gone, refused the record. Both must refuse it: a checksummed record that does not decode
/// is corruption, never a torn write.
#[test]
fn an_undecodable_record_before_a_torn_tail_is_corruption() {
    let dir = Path::new("/log");
    let fs = FaultyFs::new();
    let garbage: &[u8] = &[0, 0xff, 0x0b, 0xff, 0xff, 0xff, 0, 2];
    let mut tail = vec![0u8; 16];
    tail.extend_from_slice(&[1, 0, 0, 0, 0x29, 0, 0, 0, 0]);
    fs.set_contents(&dir.join("segment-00000000000000000018.wal"), segment(18, &[(garbage, 1, 0)], &tail));
    let options = Options::new().fs(fs.clone()).segment_size(4096).no_preallocation();
    for open in ["first", "second"] {
        match Wal::open(dir, options.clone()) {
            Err(OpenError::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, 32, "{open} open: {reason}");
                assert!(reason.starts_with("undecodable record"), "{open} open: {reason}");
            }
            Err(e) => panic!("{open} open: {e}"),
            Ok((_, recovery)) => panic!("{open} open recovered {recovery:?}"),
        }
    }
}
