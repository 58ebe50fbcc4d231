//! Fuzz target: write-ahead log recovery over arbitrary segment files; it must recover, cut a torn tail or refuse, never panic or loop.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use synod_wal::{inspect_with, FaultyFs, Fs, Options, Wal};
use synod_wire::{Ballot, LogRecord, NodeId, Slot, Value};

/// Segment size the log is opened with (the smallest it allows), and the size the seed corpus's segments have.
const SEGMENT: u64 = 4096;

// The layout the seed corpus is written in (`fuzz/seed`): a knob byte, then the segment files back to
// back, all of one length. Knob: bits 0-1 + 1 = the number of segments; bit 2 = give each segment a
// valid header and each frame that fits a valid CRC, so that the fuzzer gets past the checksums to the
// batch numbers and records; bits 3-7 = the index of the first segment.
fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else { return };
    let count = usize::from(knob & 3) + 1;
    let fix = knob & 4 != 0;
    let first = u64::from(knob >> 3);
    let dir = Path::new("/log");
    let fs = FaultyFs::new();
    fs.create_dir_all(dir).expect("an in-memory directory");
    let each = rest.len() / count;
    for i in 0..count {
        let mut bytes = rest[i * each..(i + 1) * each].to_vec();
        let index = first + i as u64;
        if fix {
            fix_up(&mut bytes, index);
        }
        fs.set_contents(&dir.join(format!("segment-{index:020}.wal")), bytes);
    }

    // Inspection reads the same files and changes nothing.
    let before: Vec<_> = fs.paths().into_iter().map(|p| (fs.contents(&p), p)).collect();
    let _ = inspect_with(&fs, dir);
    let after: Vec<_> = fs.paths().into_iter().map(|p| (fs.contents(&p), p)).collect();
    assert_eq!(before, after, "inspect changed the files");

    let options = Options::new().fs(fs.clone()).segment_size(SEGMENT).no_preallocation();
    let Ok((wal, recovery)) = Wal::open(dir, options.clone()) else { return };
    if let Some((lo, hi)) = wal.reader().slot_range() {
        let _ = wal.reader().entries(lo, Slot(hi.0.saturating_add(1)));
    }
    drop(wal);
    // Recovery is idempotent: what one open kept (its torn tail cut off), the next finds whole.
    let (mut wal, again) = Wal::open(dir, options.clone()).expect("a recovered log opens again");
    assert_eq!(again.records, recovery.records, "a second open recovered other records");
    assert_eq!(again.torn, None, "a second open found a torn tail");
    // And the recovered log takes new writes, which survive the next open.
    let record = LogRecord::Accept { slot: Slot(7), ballot: Ballot::new(1, NodeId(1)), value: Value::Noop };
    if wal.append(std::slice::from_ref(&record)).is_ok() && wal.sync().is_ok() {
        drop(wal);
        let (_, last) = Wal::open(dir, options).expect("the log opens after a write");
        let mut expected = recovery.records;
        expected.push(record);
        assert_eq!(last.records, expected, "a synced write was lost or records changed");
    }
});

/// A valid header for segment `index`, and a valid CRC for every frame that fits, as the format says
/// (crates/synod-wal/src/format.rs): header `"SYNODWAL" | version u32 | 0 u32 | index u64 | crc32c u32 |
/// 0 u32`; frames `len u32 | crc u32 | batch u64 | synced u64 | payload`, the CRC over the payload and
/// then `len | batch | synced`.
fn fix_up(bytes: &mut Vec<u8>, index: u64) {
    if bytes.len() < 32 {
        bytes.resize(32, 0);
    }
    bytes[..8].copy_from_slice(b"SYNODWAL");
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    bytes[12..16].fill(0);
    bytes[16..24].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    bytes[28..32].fill(0);
    let mut pos = 32;
    while pos + 24 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if len == 0 || pos + 24 + len > bytes.len() {
            break;
        }
        let mut tail = [0u8; 20];
        tail[..4].copy_from_slice(&bytes[pos..pos + 4]);
        tail[4..].copy_from_slice(&bytes[pos + 8..pos + 24]);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[pos + 24..pos + 24 + len]), &tail);
        bytes[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos += 24 + len;
    }
}
