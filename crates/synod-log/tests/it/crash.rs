//! Crash property test on FaultyFs: reopen yields the synced prefix, and never reports corruption.

use proptest::prelude::*;
use synod_log::{Crash, FaultyFs, Options, Wal};
use synod_wire::LogRecord;

use crate::{accept, promise};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<LogRecord>),
    Sync,
}

fn record() -> impl Strategy<Value = LogRecord> {
    prop_oneof![
        (0u64..1000).prop_map(accept),
        (0u64..50).prop_map(promise),
        (0u64..1000).prop_map(|s| LogRecord::Commit { upto: synod_wire::Slot(s) }),
        // Large values make writes span sectors and segments.
        (0u64..1000, 100usize..3000).prop_map(|(s, n)| LogRecord::Learn {
            slot: synod_wire::Slot(s),
            value: synod_wire::Value::Batch(vec![s as u8; n].into()),
        }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![3 => proptest::collection::vec(record(), 1..6).prop_map(Op::Append), 2 => Just(Op::Sync)]
}

fn crash_mode() -> impl Strategy<Value = Crash> {
    prop_oneof![
        Just(Crash::LoseUnsynced),
        Just(Crash::KeepUnsynced),
        (0usize..4000).prop_map(|keep| Crash::TearLastWrite { keep }),
        any::<u64>().prop_map(|seed| Crash::Sectors { seed }),
    ]
}

fn options(fs: &FaultyFs) -> Options {
    Options::new().fs(fs.clone()).segment_size(8192)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn reopen_yields_the_synced_prefix(ops in proptest::collection::vec(op(), 0..30), mode in crash_mode()) {
        let fs = FaultyFs::new();
        let (mut wal, recovery) = Wal::open("/wal", options(&fs)).unwrap();
        prop_assert!(recovery.records.is_empty());
        let mut appended: Vec<LogRecord> = Vec::new();
        let mut synced = 0;
        for op in &ops {
            match op {
                Op::Append(records) => {
                    let segments = wal.segment_count();
                    wal.append(records).unwrap();
                    if wal.segment_count() > segments {
                        // Moving to a new segment syncs everything before it.
                        synced = appended.len();
                    }
                    appended.extend(records.iter().cloned());
                }
                Op::Sync => {
                    wal.sync().unwrap();
                    synced = appended.len();
                }
            }
        }
        drop(wal);
        fs.crash(mode);

        let (mut wal, recovery) = Wal::open("/wal", options(&fs)).unwrap();
        let got = recovery.records;
        if mode == Crash::LoseUnsynced {
            prop_assert_eq!(&got[..], &appended[..synced]);
            prop_assert!(recovery.torn.is_none());
        } else {
            // Every synced record survives; what survives beyond is a prefix of what was appended.
            prop_assert!(got.len() >= synced, "lost synced records: {} < {}", got.len(), synced);
            prop_assert!(got.len() <= appended.len());
            prop_assert_eq!(&got[..], &appended[..got.len()]);
        }

        // The repaired log goes on: a new synced write survives the next power loss.
        let more = vec![accept(5000), promise(99)];
        wal.append(&more).unwrap();
        wal.sync().unwrap();
        drop(wal);
        fs.crash(Crash::LoseUnsynced);
        let (_, again) = Wal::open("/wal", options(&fs)).unwrap();
        let mut expected = got.clone();
        expected.extend(more);
        prop_assert_eq!(again.records, expected);
        prop_assert!(again.torn.is_none());
    }
}

#[test]
fn a_torn_last_write_is_cut_and_reported() {
    let fs = FaultyFs::new();
    let (mut wal, _) = Wal::open("/wal", options(&fs)).unwrap();
    wal.append(&[accept(1), accept(2)]).unwrap();
    wal.sync().unwrap();
    wal.append(&[accept(3), accept(4)]).unwrap();
    drop(wal);
    fs.crash(Crash::TearLastWrite { keep: 50 });
    let (_, recovery) = Wal::open("/wal", options(&fs)).unwrap();
    assert_eq!(recovery.records, vec![accept(1), accept(2)]);
    let torn = recovery.torn.expect("the torn write is reported");
    // Counted up to the last non-zero byte of what landed.
    assert!(torn.bytes_dropped > 0 && torn.bytes_dropped <= 50, "{torn:?}");
    assert_eq!(torn.file.file_name().unwrap(), "segment-00000000000000000000.wal");
}

#[test]
fn a_crash_while_creating_a_segment_leaves_a_usable_log() {
    let fs = FaultyFs::new();
    let (mut wal, _) = Wal::open("/wal", options(&fs)).unwrap();
    wal.append(&[accept(1)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    // A half-created next segment: no valid header, nothing but zeros.
    fs.set_contents(std::path::Path::new("/wal/segment-00000000000000000001.wal"), vec![0; 100]);
    let (mut wal, recovery) = Wal::open("/wal", options(&fs)).unwrap();
    assert_eq!(recovery.records, vec![accept(1)]);
    assert_eq!(wal.segment_count(), 1);
    wal.append(&[accept(2)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovery) = Wal::open("/wal", options(&fs)).unwrap();
    assert_eq!(recovery.records, vec![accept(1), accept(2)]);
}

#[test]
fn a_failed_fsync_poisons_the_wal() {
    let fs = FaultyFs::new();
    let (mut wal, _) = Wal::open("/wal", options(&fs)).unwrap();
    wal.append(&[accept(1)]).unwrap();
    fs.fail_syncs(true);
    assert!(matches!(wal.sync(), Err(synod_log::WriteError::Failed(_))));
    fs.fail_syncs(false);
    // Even with the disk healthy again, the log does not go on after a lost write.
    assert!(matches!(wal.append(&[accept(2)]), Err(synod_log::WriteError::Failed(_))));
    assert!(matches!(wal.sync(), Err(synod_log::WriteError::Failed(_))));
    assert!(wal.failure().is_some());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Hostile bytes never panic recovery or inspection.
    #[test]
    fn any_segment_bytes_are_an_answer_not_a_panic(
        garbage in proptest::collection::vec(any::<u8>(), 0..600),
        valid_header in any::<bool>(),
    ) {
        let fs = FaultyFs::new();
        drop(Wal::open("/wal", options(&fs)).unwrap());
        let path = std::path::Path::new("/wal/segment-00000000000000000000.wal");
        let mut bytes = if valid_header { fs.contents(path).unwrap()[..32].to_vec() } else { Vec::new() };
        bytes.extend(garbage);
        fs.set_contents(path, bytes);
        let _ = synod_log::inspect_with(&fs, std::path::Path::new("/wal")).unwrap();
        let _ = Wal::open("/wal", options(&fs));
    }

    /// A flipped bit anywhere in a synced log is refused or cut off; recovery never returns a wrong record.
    #[test]
    fn a_flipped_bit_never_yields_a_wrong_record(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let fs = FaultyFs::new();
        let (mut wal, _) = Wal::open("/wal", options(&fs)).unwrap();
        let written: Vec<LogRecord> = (0..60).map(accept).collect();
        for chunk in written.chunks(3) {
            wal.append(chunk).unwrap();
            wal.sync().unwrap();
        }
        drop(wal);
        let paths = fs.paths();
        let path = &paths[at.index(paths.len())];
        let mut bytes = fs.contents(path).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        fs.set_contents(path, bytes);
        if let Ok((_, recovery)) = Wal::open("/wal", options(&fs)) {
            prop_assert_eq!(&recovery.records[..], &written[..recovery.records.len()]);
        }
    }
}
