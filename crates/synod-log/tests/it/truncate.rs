//! Prefix truncation after a snapshot, and catch-up reads of slot ranges.

use synod_log::{FaultyFs, Options, ReadError, Wal};
use synod_wire::{LogRecord, Slot, Value};

use crate::{accept, promise};

fn options(fs: &FaultyFs) -> Options {
    Options::new().fs(fs.clone()).segment_size(4096)
}

#[test]
fn truncation_drops_whole_segments_and_keeps_the_latest_promise() {
    let fs = FaultyFs::new();
    let (mut wal, _) = Wal::open("/wal", options(&fs)).unwrap();
    wal.append(&[promise(7)]).unwrap();
    for slot in 0..400 {
        wal.append(&[accept(slot)]).unwrap();
    }
    wal.append(&[LogRecord::Snapshot { upto: Slot(300) }]).unwrap();
    wal.sync().unwrap();
    let before = wal.segment_count();
    assert!(before > 5, "{before} segments");

    let dropped = wal.truncate_prefix(Slot(300)).unwrap();
    assert!(dropped > 0 && dropped < before);
    assert_eq!(wal.segment_count(), before - dropped);
    // Truncating again at the same point finds nothing more to drop.
    assert_eq!(wal.truncate_prefix(Slot(300)).unwrap(), 0);
    let reader = wal.reader();
    drop(wal);

    let (_, recovery) = Wal::open("/wal", options(&fs)).unwrap();
    // The promise lived in the first segment: it was carried forward.
    let promises: Vec<_> =
        recovery.records.iter().filter(|r| matches!(r, LogRecord::Promise { .. })).collect();
    assert_eq!(promises, vec![&promise(7)]);
    let slots: Vec<u64> = recovery
        .records
        .iter()
        .filter_map(|r| match r {
            LogRecord::Accept { slot, .. } => Some(slot.0),
            _ => None,
        })
        .collect();
    // Whole segments went: what is left is a contiguous run ending at the last slot, covering the snapshot point.
    let first = slots[0];
    assert!(first > 0 && first <= 300);
    assert_eq!(slots, (first..400).collect::<Vec<_>>());
    assert!(recovery.records.contains(&LogRecord::Snapshot { upto: Slot(300) }));
    // Catch-up reads of dropped slots find nothing; kept slots still read.
    assert!(reader.entries(Slot(0), Slot(first)).unwrap().is_empty());
    assert_eq!(reader.entries(Slot(first), Slot(first + 2)).unwrap(), vec![accept(first), accept(first + 1)]);
}

#[test]
fn the_active_segment_is_never_dropped() {
    let fs = FaultyFs::new();
    let (mut wal, _) = Wal::open("/wal", options(&fs)).unwrap();
    wal.append(&[accept(1), accept(2)]).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.truncate_prefix(Slot(1000)).unwrap(), 0);
    assert_eq!(wal.segment_count(), 1);
}

#[test]
fn catch_up_reads_the_learned_or_latest_accepted_value() {
    let fs = FaultyFs::new();
    let (mut wal, _) = Wal::open("/wal", options(&fs)).unwrap();
    let learned = LogRecord::Learn { slot: Slot(3), value: Value::Batch(b"chosen".as_slice().into()) };
    let reaccepted = LogRecord::Accept {
        slot: Slot(4),
        ballot: synod_wire::Ballot::new(9, synod_wire::NodeId(3)),
        value: Value::Noop,
    };
    wal.append(&[accept(2), accept(3), accept(4)]).unwrap();
    wal.append(&[learned.clone(), accept(3), reaccepted.clone(), accept(8)]).unwrap();
    let reader = wal.reader();
    // Not yet durable: not served.
    assert!(reader.entries(Slot(0), Slot(10)).unwrap().is_empty());
    wal.sync().unwrap();
    assert_eq!(reader.entries(Slot(0), Slot(10)).unwrap(), vec![accept(2), learned, reaccepted, accept(8)]);
    assert_eq!(reader.entries(Slot(5), Slot(8)).unwrap(), vec![]);
    assert_eq!(reader.slot_range(), Some((Slot(2), Slot(8))));
    drop(wal);

    // After a restart the index is rebuilt from the log.
    let (wal, _) = Wal::open("/wal", options(&fs)).unwrap();
    assert_eq!(wal.reader().entries(Slot(3), Slot(4)).unwrap().len(), 1);
    assert!(matches!(&wal.reader().entries(Slot(3), Slot(4)).unwrap()[0], LogRecord::Learn { .. }));
}

#[test]
fn a_removed_segment_reads_as_truncated() {
    let fs = FaultyFs::new();
    let (mut wal, _) = Wal::open("/wal", options(&fs)).unwrap();
    for slot in 0..100 {
        wal.append(&[accept(slot)]).unwrap();
    }
    wal.sync().unwrap();
    let reader = wal.reader();
    synod_log::Fs::remove(&fs, std::path::Path::new("/wal/segment-00000000000000000000.wal")).unwrap();
    assert!(matches!(reader.entries(Slot(0), Slot(2)), Err(ReadError::Truncated { slot: 0 })));
}
