//! Corruption and truncation of real segment files: a flipped byte is a clear error, a cut tail is recovered.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use synod_log::{inspect, OpenError, Options, Problem, Wal};

use crate::{accept, promise};

fn options() -> Options {
    Options::new().segment_size(4096)
}

/// Writes `n` accepts, each as its own write, syncing every fifth, and returns the segment files.
fn write_log(dir: &Path, n: u64) -> Vec<PathBuf> {
    let (mut wal, _) = Wal::open(dir, options()).unwrap();
    wal.append(&[promise(1)]).unwrap();
    for slot in 0..n {
        wal.append(&[accept(slot)]).unwrap();
        if slot % 5 == 4 {
            wal.sync().unwrap();
        }
    }
    wal.sync().unwrap();
    drop(wal);
    segments(dir)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn used(file: &Path) -> u64 {
    let report = inspect(file.parent().unwrap()).unwrap();
    report.segments.iter().find(|s| s.file == file).unwrap().used
}

fn flip(file: &Path, at: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
}

#[test]
fn a_flipped_byte_in_the_middle_names_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(dir.path(), 30);
    assert_eq!(files.len(), 1);
    let at = used(&files[0]) * 2 / 5;
    flip(&files[0], at);
    let err = Wal::open(dir.path(), options()).unwrap_err();
    let OpenError::Corrupt { file, offset, .. } = &err else { panic!("expected corruption, got {err}") };
    assert_eq!(file, &files[0]);
    // The offset is the start of the damaged record's frame, at most one record before the flip.
    assert!(*offset <= at && at - offset < 100, "offset {offset} for a flip at {at}");
    let text = err.to_string();
    assert!(
        text.contains("segment-00000000000000000000.wal") && text.contains(&format!("byte {offset}")),
        "{text}"
    );
    // inspect reports the same damage without failing.
    let report = inspect(dir.path()).unwrap();
    assert!(matches!(report.problem, Some(Problem::Corrupt { offset: o, .. }) if o == *offset));
}

#[test]
fn a_truncated_last_record_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(dir.path(), 30);
    let end = used(&files[0]);
    // The file ends in the middle of the last record, as if the disk lost the rest.
    std::fs::OpenOptions::new().write(true).open(&files[0]).unwrap().set_len(end - 7).unwrap();

    let (mut wal, recovery) = Wal::open(dir.path(), options()).unwrap();
    let mut expected = vec![promise(1)];
    expected.extend((0..29).map(accept));
    assert_eq!(recovery.records, expected);
    let torn = recovery.torn.expect("the cut record is reported");
    assert_eq!(torn.file, files[0]);
    assert!(torn.offset < end - 7 && torn.bytes_dropped > 0);

    wal.append(&[accept(1000)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovery) = Wal::open(dir.path(), options()).unwrap();
    expected.push(accept(1000));
    assert_eq!(recovery.records, expected);
    assert!(recovery.torn.is_none());
    assert_eq!(inspect(dir.path()).unwrap().problem, None);
}

#[test]
fn damage_in_an_older_segment_is_corruption_even_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(dir.path(), 300);
    assert!(files.len() >= 3, "{files:?}");
    let end = used(&files[1]);
    flip(&files[1], end - 3);
    let err = Wal::open(dir.path(), options()).unwrap_err();
    assert!(matches!(&err, OpenError::Corrupt { file, .. } if file == &files[1]), "{err}");
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(dir.path(), 300);
    std::fs::remove_file(&files[1]).unwrap();
    let err = Wal::open(dir.path(), options()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_damaged_header_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(dir.path(), 10);
    flip(&files[0], 3);
    let err = Wal::open(dir.path(), options()).unwrap_err();
    assert!(matches!(&err, OpenError::Corrupt { offset: 0, .. }), "{err}");
}

#[test]
fn inspect_counts_records_and_slots() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(dir.path(), 300);
    let report = inspect(dir.path()).unwrap();
    assert_eq!(report.segments.len(), files.len());
    assert_eq!(report.problem, None);
    let total: usize = report.segments.iter().map(|s| s.counts.accept).sum();
    assert_eq!(total, 300);
    assert_eq!(report.segments[0].counts.promise, 1);
    assert_eq!(report.segments[0].slots.unwrap().0, synod_wire::Slot(0));
    assert_eq!(report.segments.last().unwrap().slots.unwrap().1, synod_wire::Slot(299));
    assert!(report.to_string().ends_with("clean\n"));
}
