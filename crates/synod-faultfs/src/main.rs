//! `faultfs SOURCE MOUNTPOINT --control FILE`: a FUSE pass-through file system that mirrors
//! SOURCE at MOUNTPOINT and delays or fails fsync on demand, so that a real `synod` process can
//! be run on a slow or failing disk (`cargo xtask disk-faults`).
//!
//! Every operation a replica's data directory needs is passed through to SOURCE: lookup, stat,
//! create, open, read and write at offsets, fallocate, truncate and other attribute changes,
//! rename, unlink, mkdir, rmdir, readdir, statfs, and fsync of files and directories.
//!
//! The faults are read from the control file (checked every 20 ms, so a test changes them while
//! the file system runs; a missing file means no faults), one `key = value` a line:
//!
//! - `fsync_delay_ms = N`: each fsync or fdatasync of a file or directory answers N ms late
//!   (in a thread of its own, so other operations go on meanwhile);
//! - `fsync_error = true`: each fsync or fdatasync fails with EIO, without syncing;
//! - `write_error = true`: each write fails with EIO.
//!
//! As root it mounts with mount(2) (no fusermount needed); SIGTERM, SIGINT or SIGHUP unmount it
//! (lazily if a process still holds files in it) and end it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// How long the kernel may cache names and attributes: writes go through this process, so the
/// kernel keeps sizes right itself.
const TTL: Duration = Duration::from_secs(1);
/// How often the control file is read.
const POLL: Duration = Duration::from_millis(20);

/// The faults in force, as the control file last said.
#[derive(Debug, Default)]
struct Faults {
    fsync_delay_ms: AtomicU64,
    fsync_error: AtomicBool,
    write_error: AtomicBool,
}

/// The settings of a control file's text; unknown keys and bad values are errors.
fn parse_control(text: &str) -> Result<(u64, bool, bool), String> {
    let (mut delay, mut fsync_error, mut write_error) = (0, false, false);
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| format!("not `key = value`: {line:?}"))?;
        let (key, value) = (key.trim(), value.trim());
        let flag = || match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{key} takes true or false, not {value:?}")),
        };
        match key {
            "fsync_delay_ms" => {
                delay = value.parse().map_err(|_| format!("fsync_delay_ms takes a number, not {value:?}"))?;
            }
            "fsync_error" => fsync_error = flag()?,
            "write_error" => write_error = flag()?,
            _ => return Err(format!("unknown setting {key:?}")),
        }
    }
    Ok((delay, fsync_error, write_error))
}

impl Faults {
    /// Reads the control file (none: no faults) and says on stderr when the settings change.
    fn reload(&self, control: &Path) {
        let text = match std::fs::read_to_string(control) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                eprintln!("faultfs: reading {}: {e}", control.display());
                return;
            }
        };
        let (delay, fsync_error, write_error) = match parse_control(&text) {
            Ok(settings) => settings,
            Err(e) => {
                eprintln!("faultfs: {}: {e}; settings unchanged", control.display());
                return;
            }
        };
        let old = (
            self.fsync_delay_ms.swap(delay, Ordering::SeqCst),
            self.fsync_error.swap(fsync_error, Ordering::SeqCst),
            self.write_error.swap(write_error, Ordering::SeqCst),
        );
        if old != (delay, fsync_error, write_error) {
            eprintln!(
                "faultfs: fsync_delay_ms = {delay}, fsync_error = {fsync_error}, write_error = {write_error}"
            );
        }
    }
}

/// Open files and directories, and the path of every inode the kernel knows.
#[derive(Default)]
struct State {
    paths: HashMap<u64, PathBuf>,
    files: HashMap<u64, Arc<File>>,
    next_fh: u64,
}

/// The file system: SOURCE's inode numbers are its own, but for SOURCE itself, which is FUSE's root.
struct FaultFs {
    source: PathBuf,
    source_ino: u64,
    faults: Arc<Faults>,
    state: Mutex<State>,
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn kind(t: std::fs::FileType) -> FileType {
    FileType::from_std(t).unwrap_or(FileType::RegularFile)
}

fn time(secs: i64, nanos: i64) -> SystemTime {
    let nanos = Duration::from_nanos(nanos.clamp(0, 999_999_999) as u64);
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

impl FaultFs {
    fn new(source: PathBuf, faults: Arc<Faults>) -> io::Result<FaultFs> {
        let source_ino = std::fs::metadata(&source)?.ino();
        Ok(FaultFs { source, source_ino, faults, state: Mutex::new(State::default()) })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ino(&self, st_ino: u64) -> INodeNo {
        if st_ino == self.source_ino {
            INodeNo::ROOT
        } else {
            INodeNo(st_ino)
        }
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        if ino == INodeNo::ROOT {
            return Ok(self.source.clone());
        }
        self.state().paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        self.state().files.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn add_file(&self, file: File) -> FileHandle {
        let mut state = self.state();
        state.next_fh += 1;
        let fh = state.next_fh;
        state.files.insert(fh, Arc::new(file));
        FileHandle(fh)
    }

    fn attr(&self, m: &Metadata) -> FileAttr {
        FileAttr {
            ino: self.ino(m.ino()),
            size: m.size(),
            blocks: m.blocks(),
            atime: time(m.atime(), m.atime_nsec()),
            mtime: time(m.mtime(), m.mtime_nsec()),
            ctime: time(m.ctime(), m.ctime_nsec()),
            crtime: time(m.ctime(), m.ctime_nsec()),
            kind: kind(m.file_type()),
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev() as u32,
            blksize: m.blksize() as u32,
            flags: 0,
        }
    }

    /// Stats `path`, remembers it as its inode's path, and answers with its attributes.
    fn entry(&self, path: PathBuf) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(&path).map_err(errno)?;
        let attr = self.attr(&meta);
        if attr.ino != INodeNo::ROOT {
            self.state().paths.insert(attr.ino.0, path);
        }
        Ok(attr)
    }

    /// An fsync or fdatasync as the control file says: late, failed, or at once.
    fn sync(&self, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let what = if datasync { "fdatasync" } else { "fsync" };
        let path = self.path(ino).unwrap_or_else(|_| PathBuf::from("?"));
        if self.faults.fsync_error.load(Ordering::SeqCst) {
            eprintln!("faultfs: {what} {} fails with EIO (fsync_error = true)", path.display());
            return reply.error(Errno::EIO);
        }
        let file = match self.file(fh) {
            Ok(file) => file,
            Err(e) => return reply.error(e),
        };
        let run = move || {
            let r = if datasync { file.sync_data() } else { file.sync_all() };
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        };
        let delay = self.faults.fsync_delay_ms.load(Ordering::SeqCst);
        if delay == 0 {
            run();
        } else {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                run();
            });
        }
    }
}

fn open_options(flags: i32) -> OpenOptions {
    let mut opts = OpenOptions::new();
    match OpenFlags(flags).acc_mode() {
        OpenAccMode::O_RDONLY => opts.read(true),
        OpenAccMode::O_WRONLY => opts.write(true),
        OpenAccMode::O_RDWR => opts.read(true).write(true),
    };
    if flags & libc::O_APPEND != 0 {
        opts.append(true);
    }
    if flags & libc::O_TRUNC != 0 {
        opts.truncate(true);
    }
    opts
}

impl fuser::Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name).and_then(|p| self.entry(p)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let meta = match fh.map(|fh| self.file(fh)) {
            Some(Ok(file)) => file.metadata().map_err(errno),
            _ => self.path(ino).and_then(|p| std::fs::symlink_metadata(p).map_err(errno)),
        };
        match meta {
            Ok(meta) => reply.attr(&TTL, &self.attr(&meta)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = (|| -> Result<Metadata, Errno> {
            let path = self.path(ino)?;
            if let Some(size) = size {
                match fh.map(|fh| self.file(fh)) {
                    Some(Ok(file)) => file.set_len(size),
                    _ => OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(size)),
                }
                .map_err(errno)?;
            }
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid).map_err(errno)?;
            }
            if atime.is_some() || mtime.is_some() {
                let when = |t: TimeOrNow| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                let mut times = std::fs::FileTimes::new();
                if let Some(t) = atime {
                    times = times.set_accessed(when(t));
                }
                if let Some(t) = mtime {
                    times = times.set_modified(when(t));
                }
                File::open(&path).and_then(|f| f.set_times(times)).map_err(errno)?;
            }
            std::fs::symlink_metadata(&path).map_err(errno)
        })();
        match result {
            Ok(meta) => reply.attr(&TTL, &self.attr(&meta)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.path(ino).and_then(|p| std::fs::read_link(p).map_err(errno)) {
            Ok(target) => reply.data(target.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let result = self.child(parent, name).and_then(|path| {
            std::fs::create_dir(&path).map_err(errno)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !umask & 0o7777))
                .map_err(errno)?;
            self.entry(path)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.child(parent, name).and_then(|p| std::fs::remove_file(p).map_err(errno)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.child(parent, name).and_then(|p| std::fs::remove_dir(p).map_err(errno)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let result = self.child(parent, link_name).and_then(|path| {
            std::os::unix::fs::symlink(target, &path).map_err(errno)?;
            self.entry(path)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = (|| -> Result<(), Errno> {
            let (from, to) = (self.child(parent, name)?, self.child(newparent, newname)?);
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                return Err(Errno::EINVAL);
            }
            if flags.contains(RenameFlags::RENAME_NOREPLACE) && std::fs::symlink_metadata(&to).is_ok() {
                return Err(Errno::EEXIST);
            }
            std::fs::rename(&from, &to).map_err(errno)?;
            // The moved inode, and everything under it if it is a directory, has a new path.
            let mut state = self.state();
            for path in state.paths.values_mut() {
                if let Ok(rest) = path.strip_prefix(&from) {
                    *path = if rest.as_os_str().is_empty() { to.clone() } else { to.join(rest) };
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.path(ino).and_then(|p| open_options(flags.0).open(p).map_err(errno)) {
            Ok(file) => reply.opened(self.add_file(file), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.child(parent, name).and_then(|path| {
            let mut opts = open_options(flags);
            opts.create(true).mode(mode & !umask & 0o7777);
            if flags & libc::O_EXCL != 0 {
                opts.create_new(true);
            }
            if flags & libc::O_ACCMODE == libc::O_RDONLY {
                // create(2) with O_RDONLY still creates; std needs write access to create.
                opts.write(true);
            }
            let file = opts.open(&path).map_err(errno)?;
            let attr = self.entry(path)?;
            Ok((attr, self.add_file(file)))
        });
        match result {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.file(fh).and_then(|file| {
            let mut buf = vec![0u8; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(errno(e)),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        });
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if self.faults.write_error.load(Ordering::SeqCst) {
            let path = self.path(ino).unwrap_or_else(|_| PathBuf::from("?"));
            eprintln!("faultfs: write {} fails with EIO (write_error = true)", path.display());
            return reply.error(Errno::EIO);
        }
        match self.file(fh).and_then(|file| file.write_all_at(data, offset).map_err(errno)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state().files.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.sync(ino, fh, datasync, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.path(ino).and_then(|p| File::open(p).map_err(errno)) {
            Ok(dir) => reply.opened(self.add_file(dir), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let result = self.path(ino).and_then(|path| {
            let mut entries = vec![(ino, FileType::Directory, OsStr::new(".").to_owned())];
            entries.push((INodeNo::ROOT, FileType::Directory, OsStr::new("..").to_owned()));
            for entry in std::fs::read_dir(&path).map_err(errno)? {
                let entry = entry.map_err(errno)?;
                let t = entry.file_type().map_err(errno)?;
                entries.push((self.ino(entry.ino()), kind(t), entry.file_name()));
            }
            Ok(entries)
        });
        match result {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(ino, i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.state().files.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.sync(ino, fh, datasync, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match nix::sys::statvfs::statvfs(&self.source) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self.file(fh).and_then(|file| {
            let mode = nix::fcntl::FallocateFlags::from_bits_retain(mode);
            nix::fcntl::fallocate(&*file, mode, offset as libc::off_t, length as libc::off_t)
                .map_err(|e| Errno::from_i32(e as i32))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

/// SOURCE, MOUNTPOINT and the control file, from the command line.
fn parse_args(args: &[String]) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let usage = "usage: faultfs SOURCE MOUNTPOINT --control FILE";
    let (mut positional, mut control) = (Vec::new(), None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--control" => control = Some(it.next().ok_or(usage)?.clone()),
            "-h" | "--help" => return Err(usage.to_owned()),
            _ if arg.starts_with("--control=") => control = Some(arg["--control=".len()..].to_owned()),
            _ if arg.starts_with('-') => return Err(format!("unknown flag {arg}; {usage}")),
            _ => positional.push(arg.clone()),
        }
    }
    match (positional.as_slice(), control) {
        ([source, mountpoint], Some(control)) => {
            Ok((PathBuf::from(source), PathBuf::from(mountpoint), PathBuf::from(control)))
        }
        _ => Err(usage.to_owned()),
    }
}

fn run(source: PathBuf, mountpoint: PathBuf, control: PathBuf) -> Result<(), String> {
    use nix::sys::signal::{SigSet, Signal};
    // Blocked here, before any thread starts, so every thread inherits the mask and the
    // signal thread below takes them with sigwait.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().map_err(|e| format!("blocking signals: {e}"))?;

    let source = source.canonicalize().map_err(|e| format!("{}: {e}", source.display()))?;
    let faults = Arc::new(Faults::default());
    faults.reload(&control);
    let poller = (faults.clone(), control.clone());
    std::thread::spawn(move || loop {
        std::thread::sleep(POLL);
        poller.0.reload(&poller.1);
    });
    let fs = FaultFs::new(source.clone(), faults).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("faultfs:{}", source.display())),
        MountOption::Subtype("faultfs".into()),
    ];
    config.n_threads = Some(2);
    let session = fuser::spawn_mount(fs, &mountpoint, &config)
        .map_err(|e| format!("mounting at {}: {e}", mountpoint.display()))?;
    eprintln!(
        "faultfs: {} mirrored at {}, faults from {}",
        source.display(),
        mountpoint.display(),
        control.display()
    );

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            let _ = tx.send(sig);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(sig) => {
                eprintln!("faultfs: {sig}: unmounting {}", mountpoint.display());
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !session.guard.is_finished() => {}
            Err(_) => {
                eprintln!("faultfs: {} was unmounted", mountpoint.display());
                return Ok(());
            }
        }
    }
    if let Err(e) = session.umount_and_join() {
        // Busy: a process still has files open in it. Detach it; it goes when they close.
        eprintln!("faultfs: unmounting {}: {e}; detaching it", mountpoint.display());
        nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| format!("detaching {}: {e}", mountpoint.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&args).and_then(|(source, mountpoint, control)| run(source, mountpoint, control));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultfs: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_files_set_the_faults() {
        assert_eq!(parse_control(""), Ok((0, false, false)));
        let text =
            "# slow, then failing\nfsync_delay_ms = 100\nfsync_error = true # EIO\nwrite_error=false\n";
        assert_eq!(parse_control(text), Ok((100, true, false)));
        assert!(parse_control("fsync_delay = 1").unwrap_err().contains("unknown"));
        assert!(parse_control("fsync_error = yes").is_err());
        assert!(parse_control("fsync_delay_ms").is_err());
    }

    #[test]
    fn arguments_need_a_source_a_mountpoint_and_a_control_file() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            args(&["src", "mnt", "--control", "c"]),
            Ok((PathBuf::from("src"), PathBuf::from("mnt"), PathBuf::from("c")))
        );
        assert!(args(&["src", "--control=c", "mnt"]).is_ok());
        assert!(args(&["src", "mnt"]).is_err());
        assert!(args(&["src", "mnt", "--control", "c", "--fast"]).is_err());
    }
}
