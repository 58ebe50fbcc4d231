//! Snapshot files through the public API: a multi-megabyte round trip, every
//! single-byte corruption and truncation refused with the file named, and
//! crashes around `finish` never losing the snapshot that was there.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use synod_wal::{
    inspect_snapshot_with, newest_snapshot_with, snapshot_file_name, Crash, FaultyFs, SnapshotDamage,
    SnapshotError, SnapshotReader, SnapshotStore, SnapshotWriter,
};

const DIR: &str = "/data";

fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `bytes` as the snapshot up to `upto`, in writes of 1 to 97 bytes
/// and, every fiftieth, of 40,000 to 100,000 (which the writer passes
/// straight to the file, between buffered ones).
fn write(fs: &FaultyFs, upto: u64, bytes: &[u8]) -> SnapshotWriter {
    let mut w = SnapshotWriter::create_with(Arc::new(fs.clone()), DIR, upto).unwrap();
    let mut rest = bytes;
    let (mut n, mut k) = (1, 0);
    while !rest.is_empty() {
        let size = if k % 50 == 49 { 40_000 + (k / 50 % 3) * 30_000 } else { n };
        let (piece, after) = rest.split_at(size.min(rest.len()));
        w.write_all(piece).unwrap();
        rest = after;
        n = n % 97 + 1;
        k += 1;
    }
    w
}

fn path(upto: u64) -> PathBuf {
    Path::new(DIR).join(snapshot_file_name(upto))
}

fn read_all(fs: &FaultyFs, path: &Path) -> Result<Vec<u8>, SnapshotError> {
    let mut reader = SnapshotReader::open_with(fs, path)?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(|e| SnapshotError::from_io(e, path))?;
    Ok(out)
}

#[test]
fn a_multi_megabyte_body_written_in_small_pieces_round_trips() {
    let fs = FaultyFs::new();
    let data = body(5 << 20, 1);
    let w = write(&fs, 1000, &data);
    assert_eq!(w.body_len(), data.len() as u64);
    let written = w.finish().unwrap();
    assert_eq!(written.path, path(1000));
    let found = newest_snapshot_with(&fs, Path::new(DIR)).unwrap().unwrap();
    assert_eq!((found.path.clone(), found.upto, found.body_len), (path(1000), 1000, data.len() as u64));
    // Read back in small pieces too.
    let mut reader = SnapshotReader::open_with(&fs, &found.path).unwrap();
    assert_eq!(reader.upto(), 1000);
    let mut out = Vec::new();
    let mut buf = [0; 4093];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert!(out == data, "the body differs");
    let info = inspect_snapshot_with(&fs, &found.path).unwrap();
    assert!(info.checksum_ok() && info.damage().is_none());
    assert_eq!((info.version, info.upto, info.body_len), (1, 1000, data.len() as u64));
    // A newer snapshot replaces it; the older one is removed.
    write(&fs, 2000, b"newer").finish().unwrap();
    assert_eq!(fs.paths(), vec![path(2000)]);
}

/// Every way `path` can be refused: at open, during the read, by `newest_snapshot` and by `inspect`.
fn assert_refused(fs: &FaultyFs, path: &Path, what: &str) {
    let err = read_all(fs, path).expect_err(what);
    let text = err.to_string();
    assert!(text.starts_with(&format!("snapshot {} is damaged: ", path.display())), "{what}: {text}");
    // With no good snapshot left, the damaged one is the answer, not "no snapshot".
    let found = newest_snapshot_with(fs, Path::new(DIR)).expect_err(what);
    assert!(found.to_string().contains(&path.display().to_string()), "{what}: {found}");
    let inspected = inspect_snapshot_with(fs, path);
    let damage = match inspected {
        Ok(info) => info.damage().expect(what),
        Err(e) => e,
    };
    assert!(damage.to_string().contains(&path.display().to_string()), "{what}: {damage}");
}

#[test]
fn every_single_byte_corruption_and_every_truncation_is_refused_naming_the_file() {
    let fs = FaultyFs::new();
    let data = body(3000, 2);
    write(&fs, 1000, &data).finish().unwrap();
    let good = fs.contents(&path(1000)).unwrap();
    assert_eq!(good.len(), 28 + 3000 + 4);
    for at in 0..good.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[at] ^= flip;
            fs.set_contents(&path(1000), bad);
            assert_refused(&fs, &path(1000), &format!("byte {at} ^ {flip:#x}"));
        }
    }
    for len in [0, 1, 8, 12, 27, 28, 29, 1000, good.len() - 5, good.len() - 4, good.len() - 1] {
        fs.set_contents(&path(1000), good[..len].to_vec());
        assert_refused(&fs, &path(1000), &format!("truncated to {len} bytes"));
    }
    let mut long = good.clone();
    long.push(0);
    fs.set_contents(&path(1000), long);
    assert_refused(&fs, &path(1000), "one byte too many");
    fs.set_contents(&path(1000), good);
    assert_eq!(read_all(&fs, &path(1000)).unwrap(), data);
}

#[test]
fn errors_say_what_is_wrong() {
    let fs = FaultyFs::new();
    write(&fs, 1000, b"state").finish().unwrap();
    let good = fs.contents(&path(1000)).unwrap();
    let damage = |bytes: Vec<u8>| {
        fs.set_contents(&path(1000), bytes);
        match read_all(&fs, &path(1000)) {
            Err(SnapshotError::Damaged { path: p, damage }) => {
                assert_eq!(p, path(1000));
                damage
            }
            other => panic!("{other:?}"),
        }
    };
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(damage(bad), SnapshotDamage::BadMagic { .. }));
    let mut bad = good.clone();
    bad[8] = 2;
    assert_eq!(damage(bad), SnapshotDamage::UnknownVersion { version: 2 });
    assert_eq!(damage(good[..20].to_vec()), SnapshotDamage::Short { len: 20, needed: 32 });
    assert_eq!(damage(good[..30].to_vec()), SnapshotDamage::Short { len: 30, needed: 37 });
    let mut bad = good.clone();
    bad[30] ^= 1;
    let err = SnapshotError::Damaged { path: path(1000), damage: damage(bad) };
    let text = err.to_string();
    assert!(
        text.starts_with(
            "snapshot /data/snapshot-00000000000000001000.snap is damaged: checksum mismatch (stored 0x"
        ),
        "{text}"
    );
    assert!(text.contains(", computed 0x"), "{text}");
    // A file renamed to another slot is refused by newest_snapshot.
    fs.set_contents(&path(1000), Vec::new());
    fs.set_contents(&path(3000), good);
    let found = newest_snapshot_with(&fs, Path::new(DIR)).expect_err("a file named for another slot");
    assert!(found.to_string().contains("snapshot-00000000000000003000.snap"), "{found}");
}

#[test]
fn a_damaged_newest_snapshot_is_skipped_and_reported_for_an_older_good_one() {
    let fs = FaultyFs::new();
    write(&fs, 100, b"old").finish().unwrap();
    let old = fs.contents(&path(100)).unwrap();
    write(&fs, 200, b"new").finish().unwrap();
    fs.set_contents(&path(100), old);
    let mut bad = fs.contents(&path(200)).unwrap();
    bad[29] ^= 4;
    fs.set_contents(&path(200), bad);
    let found = newest_snapshot_with(&fs, Path::new(DIR)).unwrap().unwrap();
    assert_eq!(found.upto, 100);
    assert_eq!(found.skipped.len(), 1);
    assert!(
        found.skipped[0].to_string().contains("snapshot-00000000000000000200.snap"),
        "{:?}",
        found.skipped
    );
}

#[test]
fn crashes_around_finish_keep_the_old_snapshot_or_the_new_one() {
    let old = body(200_000, 3);
    let new = body(300_000, 4);
    let modes = [
        Crash::LoseUnsynced,
        Crash::KeepUnsynced,
        Crash::TearLastWrite { keep: 1 },
        Crash::Sectors { seed: 5 },
        Crash::Sectors { seed: 6 },
    ];
    for mode in modes {
        // Before the file's fsync: the fsync fails, then power goes.
        for fail_at_sync in [true, false] {
            let fs = FaultyFs::new();
            write(&fs, 100, &old).finish().unwrap();
            let w = write(&fs, 200, &new);
            fs.fail_syncs(fail_at_sync);
            let finished = w.finish();
            assert_eq!(finished.is_ok(), !fail_at_sync);
            fs.fail_syncs(false);
            fs.crash(mode);
            let found = newest_snapshot_with(&fs, Path::new(DIR)).unwrap().expect("a snapshot survives");
            assert!(found.skipped.is_empty(), "{mode:?}: {:?}", found.skipped);
            let expected = if fail_at_sync { (100, &old) } else { (200, &new) };
            assert_eq!(found.upto, expected.0, "{mode:?}");
            assert!(read_all(&fs, &found.path).unwrap() == *expected.1, "{mode:?}");
            // Nothing but final snapshot names is left behind to confuse a reader.
            assert!(
                fs.paths().iter().all(|p| p.extension().is_some_and(|e| e == "snap")),
                "{:?}",
                fs.paths()
            );
        }
        // The process dies mid-body, its writer never dropped.
        let fs = FaultyFs::new();
        write(&fs, 100, &old).finish().unwrap();
        std::mem::forget(write(&fs, 200, &new));
        fs.crash(mode);
        let found = newest_snapshot_with(&fs, Path::new(DIR)).unwrap().expect("the old snapshot survives");
        assert_eq!(found.upto, 100, "{mode:?}");
    }
}

#[test]
fn a_snapshot_store_serves_chunks_and_receives_a_peers_snapshot_in_order() {
    let sender = FaultyFs::new();
    let file = {
        let mut w = write(&sender, 500, &body(10_000, 3));
        w.flush().unwrap();
        w.finish().unwrap()
    };
    let served = SnapshotStore::new(Arc::new(sender.clone()), DIR, Some((500, file.path.clone())));
    let receiver = FaultyFs::new();
    let mut store = SnapshotStore::new(Arc::new(receiver.clone()), DIR, None);
    // A chunk asked of another snapshot starts from the newest one's first byte.
    let first = served.chunk(Some(7), 4096, 4096).unwrap().unwrap();
    assert_eq!((first.upto, first.offset), (500, 0));
    assert!(store.store(500, 0, &first.bytes, false).unwrap().is_none());
    // Out of step: refused, and the partial file goes.
    assert!(store.store(500, 9999, b"x", false).is_err());
    assert!(!receiver.paths().iter().any(|p| p.to_string_lossy().ends_with(".recv")));
    // Started again from offset 0 (twice: a restart of the same transfer keeps its new file).
    assert!(store.store(500, 0, &first.bytes, false).unwrap().is_none());
    assert!(store.store(500, 0, &first.bytes, false).unwrap().is_none());
    let mut offset = first.bytes.len() as u64;
    let done = loop {
        let c = served.chunk(Some(500), offset, 4096).unwrap().unwrap();
        let last = c.offset + c.bytes.len() as u64 == c.total;
        if let Some(done) = store.store(500, c.offset, &c.bytes, last).unwrap() {
            break done;
        }
        offset += c.bytes.len() as u64;
    };
    assert_eq!(done.upto, 500);
    assert_eq!(store.newest(), Some(500));
    assert_eq!(receiver.contents(&done.path), sender.contents(&file.path), "the same file, byte for byte");
    assert!(served.chunk(Some(500), first.total, 4096).unwrap().is_none(), "nothing past the end");
}
