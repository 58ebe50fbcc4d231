//! Fuzz target: snapshot files (header, length, checksum) and the applier's snapshot stream inside them, restored over the key-value store; bad bytes must be refused, never panic.
#![no_main]

use std::io::Read;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use synod_kv::KvStore;
use synod_state_machine::{Applier, SessionConfig};
use synod_wal::{
    inspect_snapshot_with, newest_snapshot_with, read_snapshot_chunk, FaultyFs, Fs, SnapshotReader,
    SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};

// A knob byte, then the bytes. Knob bit 0 clear: the bytes are the whole file, as a replica's data
// directory or a peer's transfer holds it. Set: they are the body, wrapped in a valid header and
// checksum (`upto` = the knob), so that the fuzzer reaches the applier's stream and the store's entries.
fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else { return };
    let file = if knob & 1 == 0 { rest.to_vec() } else { wrap(u64::from(knob >> 1), rest) };
    let upto = file.get(12..20).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let dir = Path::new("/data");
    let path = dir.join(synod_wal::snapshot_file_name(upto));
    let fs = FaultyFs::new();
    fs.create_dir_all(dir).expect("an in-memory directory");
    fs.set_contents(&path, file.clone());

    let info = inspect_snapshot_with(&fs, &path);
    let newest = newest_snapshot_with(&fs, dir);
    let _ = read_snapshot_chunk(&fs, &path, u64::from(knob) * 7, 100);
    let Ok(mut reader) = SnapshotReader::open_with(&fs, &path) else {
        assert!(
            !matches!(&newest, Ok(Some(f)) if f.skipped.is_empty()),
            "a file that does not open was taken"
        );
        return;
    };
    let mut body = Vec::new();
    let verified = reader.read_to_end(&mut body).is_ok();
    // The reader, the inspection and the directory scan agree on whether the file is whole.
    let whole = matches!(&info, Ok(i) if i.checksum_ok() && i.damage().is_none());
    assert_eq!(verified, whole, "reader and inspect disagree: {info:?}");
    assert_eq!(verified, matches!(&newest, Ok(Some(f)) if f.upto == upto), "newest_snapshot disagrees");
    if verified {
        assert_eq!(body.len() as u64, reader.body_len());
        assert_eq!(&file[28..28 + body.len()], &body[..]);
        restore(&body);
    }
});

/// The file holding `body` for slot `upto`: header, body, CRC32C.
fn wrap(upto: u64, body: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(body.len() + 32);
    file.extend_from_slice(&SNAPSHOT_MAGIC);
    file.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    file.extend_from_slice(&upto.to_le_bytes());
    file.extend_from_slice(&(body.len() as u64).to_le_bytes());
    file.extend_from_slice(body);
    let crc = crc32c::crc32c(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    file
}

/// Restores an applier over the store from `body`, as a replica starting up or installing a peer's
/// snapshot does; what restores writes a stream that restores to the same state, byte for byte.
fn restore(body: &[u8]) {
    let sessions = SessionConfig::default();
    let Ok(applier) = Applier::restore_from(KvStore::default(), sessions, &mut &body[..]) else { return };
    let mut out = Vec::new();
    applier.snapshot_to(&mut out).expect("a restored applier writes its snapshot");
    let again = Applier::restore_from(KvStore::default(), sessions, &mut &out[..])
        .expect("its own snapshot restores");
    assert_eq!(again.next_slot(), applier.next_slot());
    assert_eq!(again.digest(), applier.digest());
    let mut twice = Vec::new();
    again.snapshot_to(&mut twice).unwrap();
    assert_eq!(out, twice, "a snapshot of a restored snapshot differs");
    // Installing into a running applier takes the same stream.
    let mut running = Applier::new(KvStore::default(), sessions);
    running.install_from(&mut &body[..]).expect("what restores also installs");
    assert_eq!(running.next_slot(), applier.next_slot());
}
