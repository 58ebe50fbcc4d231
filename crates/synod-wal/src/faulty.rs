//! An in-memory [`Fs`] for tests that loses unsynced writes, tears writes and fails on demand.
//!
//! Always compiled (it has no dependencies and is small) so integration tests
//! and other crates' simulations can use it. Model:
//!
//! * every file has a *current* view (what reads see) and a *durable* view
//!   (what survives [`FaultyFs::crash`]); [`FsFile::sync_data`] copies the
//!   first into the second;
//! * a created file's name survives a crash only after [`Fs::sync_dir`];
//!   removals take effect at once and are durable;
//! * a rename moves the file at once; until [`Fs::sync_dir`] on the new
//!   name's directory a crash puts it back under its old name if that name
//!   was durable, or loses it if not; a file the rename replaced is gone at
//!   once, like a removal; open handles on the old name stop working;
//! * [`FaultyFs::crash`] rebuilds every file from its durable view plus some
//!   of the writes issued since the last sync, as the [`Crash`] mode says;
//! * [`FaultyFs::fail_syncs`] and [`FaultyFs::fail_writes`] make later calls fail.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{Fs, FsFile};

/// What survives a simulated crash of the writes issued since a file's last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Power loss: every unsynced write is lost.
    LoseUnsynced,
    /// Process death with the page cache intact: every write survives.
    KeepUnsynced,
    /// Power loss in the middle of the last write: every earlier unsynced
    /// write survives, and only the first `keep` bytes of the last one.
    TearLastWrite {
        /// How many bytes of the last write reach the disk.
        keep: usize,
    },
    /// Power loss with writes reaching the disk out of order: each 512-byte
    /// sector of each unsynced write survives or not, decided by `seed`.
    Sectors {
        /// Seeds the choice of surviving sectors.
        seed: u64,
    },
}

/// An in-memory file system with injectable faults. Clones share the same files.
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, FileState>,
    dirs: Vec<PathBuf>,
    fail_syncs: bool,
    fail_writes: bool,
    syncs: u64,
}

#[derive(Debug, Default)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Op>,
    name_durable: bool,
    /// The durable name a rename not yet made durable moved the file from.
    renamed_from: Option<PathBuf>,
}

#[derive(Debug)]
enum Op {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl FaultyFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a crash and restart: every file is rebuilt from what was durable, as `mode` says.
    ///
    /// Open handles stay usable but see the rebuilt contents; a real test
    /// drops the [`crate::Wal`] first and opens it again.
    pub fn crash(&self, mode: Crash) {
        let mut state = self.lock();
        let names: Vec<PathBuf> = state.files.keys().cloned().collect();
        for name in names {
            let file = &state.files[&name];
            if file.name_durable {
                continue;
            }
            let mut file = state.files.remove(&name).expect("listed above");
            if let Some(old) = file.renamed_from.take() {
                file.name_durable = true;
                state.files.entry(old).or_insert(file);
            }
        }
        let mut rng = match mode {
            Crash::Sectors { seed } => seed ^ 0x9e37_79b9_7f4a_7c15,
            _ => 1,
        };
        for file in state.files.values_mut() {
            let mut data = file.durable.clone();
            let count = file.unsynced.len();
            for (i, op) in file.unsynced.drain(..).enumerate() {
                match (mode, op) {
                    (Crash::LoseUnsynced, _) => {}
                    (Crash::KeepUnsynced, op) => apply(&mut data, &op),
                    (Crash::TearLastWrite { keep }, Op::Write { offset, bytes }) if i + 1 == count => {
                        let kept = &bytes[..keep.min(bytes.len())];
                        apply(&mut data, &Op::Write { offset, bytes: kept.to_vec() });
                    }
                    (Crash::TearLastWrite { .. }, op) => apply(&mut data, &op),
                    (Crash::Sectors { .. }, Op::SetLen(len)) => apply(&mut data, &Op::SetLen(len)),
                    (Crash::Sectors { .. }, Op::Write { offset, bytes }) => {
                        for (n, chunk) in bytes.chunks(512).enumerate() {
                            rng = xorshift(rng);
                            if rng & 1 == 0 {
                                let at = offset + (n * 512) as u64;
                                apply(&mut data, &Op::Write { offset: at, bytes: chunk.to_vec() });
                            }
                        }
                    }
                }
            }
            file.durable = data.clone();
            file.data = data;
        }
    }

    /// Makes every later `sync_data` and `sync_dir` fail (or succeed again).
    pub fn fail_syncs(&self, fail: bool) {
        self.lock().fail_syncs = fail;
    }

    /// Makes every later write and `set_len` fail (or succeed again).
    pub fn fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    /// How many successful `sync_data` calls were made.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The current contents of the file at `path`, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).map(|f| f.data.clone())
    }

    /// Overwrites the file at `path` with `bytes`, durably (as a damaged disk would).
    pub fn set_contents(&self, path: &Path, bytes: Vec<u8>) {
        let mut state = self.lock();
        let file = state.files.entry(path.to_path_buf()).or_default();
        file.durable = bytes.clone();
        file.data = bytes;
        file.unsynced.clear();
        file.name_durable = true;
        file.renamed_from = None;
    }

    /// The paths of every file, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().files.keys().cloned().collect()
    }

    /// The state; a panic while it was held poisons nothing a test could still trust, so it is taken anyway.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with_file<T>(&self, path: &Path, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.lock();
        if !state.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display())));
        }
        f(&mut state)
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn apply(data: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { offset, bytes } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[start..end].copy_from_slice(bytes);
        }
        Op::SetLen(len) => data.resize(*len as usize, 0),
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

impl Fs for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if !state.dirs.iter().any(|d| d == dir) {
            state.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dirs.iter().any(|d| d == dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", dir.display())));
        }
        Ok(state
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.lock();
        if state.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        state.files.insert(path.to_path_buf(), FileState::default());
        Ok(Box::new(FaultyFile { fs: self.clone(), path: path.to_path_buf() }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.with_file(path, |_| Ok(()))?;
        Ok(Box::new(FaultyFile { fs: self.clone(), path: path.to_path_buf() }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.with_file(path, |state| {
            state.files.remove(path);
            Ok(())
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.with_file(from, |state| {
            let mut file = state.files.remove(from).expect("checked by with_file");
            if file.name_durable {
                file.renamed_from = Some(from.to_path_buf());
            }
            file.name_durable = false;
            state.files.insert(to.to_path_buf(), file);
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if state.fail_syncs {
            return Err(injected("directory sync"));
        }
        for (path, file) in state.files.iter_mut() {
            if path.parent() == Some(dir) {
                file.name_durable = true;
                file.renamed_from = None;
            }
        }
        Ok(())
    }
}

/// A handle on one [`FaultyFs`] file; it fails with `NotFound` once the file is removed.
#[derive(Debug)]
struct FaultyFile {
    fs: FaultyFs,
    path: PathBuf,
}

impl FsFile for FaultyFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.fs.with_file(&self.path, |state| {
            let data = &state.files[&self.path].data;
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            match start.checked_add(buf.len()) {
                Some(end) if end <= data.len() => {
                    buf.copy_from_slice(&data[start..end]);
                    Ok(())
                }
                _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file")),
            }
        })
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fs.with_file(&self.path, |state| {
            if state.fail_writes {
                return Err(injected("write"));
            }
            let file = state.files.get_mut(&self.path).expect("checked by with_file");
            let op = Op::Write { offset, bytes: buf.to_vec() };
            apply(&mut file.data, &op);
            file.unsynced.push(op);
            Ok(())
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.with_file(&self.path, |state| {
            if state.fail_syncs {
                return Err(injected("fsync"));
            }
            state.syncs += 1;
            let file = state.files.get_mut(&self.path).expect("checked by with_file");
            // Replaying the pending operations costs what they wrote, not the file's size.
            for op in file.unsynced.drain(..) {
                apply(&mut file.durable, &op);
            }
            Ok(())
        })
    }

    fn size(&self) -> io::Result<u64> {
        self.fs.with_file(&self.path, |state| Ok(state.files[&self.path].data.len() as u64))
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.fs.with_file(&self.path, |state| {
            if state.fail_writes {
                return Err(injected("set_len"));
            }
            let file = state.files.get_mut(&self.path).expect("checked by with_file");
            let op = Op::SetLen(len);
            apply(&mut file.data, &op);
            file.unsynced.push(op);
            Ok(())
        })
    }
}
