//! Benchmark of synod-log group commit: durable appends from 1, 8 and 64 writers against the bare fdatasync rate.
//!
//! Every writer appends a 100-byte record and waits until it is durable, in
//! a loop. Writers come in two shapes:
//!
//! * **event loop** (the headline): the way synod's runtime drives the log,
//!   one thread submits with tokens and receives the durable reports through
//!   the callback; each of the N logical writers has one record in flight
//!   and submits its next when the previous is reported durable;
//! * **threads**: N OS threads each blocked in `append_wait` (on two cores,
//!   64 threads spend much of their time being scheduled).
//!
//! The disk's speed varies several-fold from hour to hour (and within a
//! run), so the same run measures bare 4 KiB write + fdatasync on the same
//! file system right before and after every case, and reports each case's
//! rate as a multiple of the mean of the two.
//! Set `SYNOD_BENCH_MS` to change the time per case (default 3000).

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use synod_bench::human;
use synod_log::{Fs, FsFile, GroupCommit, LogEvent, Options, RealFs, ThreadPreallocate, Wal};
use synod_wire::{Ballot, LogRecord, NodeId, Slot, Value};

/// Counts `sync_data` calls on the real file system.
#[derive(Debug, Default)]
struct CountingFs {
    syncs: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Box<dyn FsFile>,
    syncs: Arc<AtomicU64>,
}

impl Fs for CountingFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(CountingFile { inner: RealFs.create(path)?, syncs: self.syncs.clone() }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(CountingFile { inner: RealFs.open(path)?, syncs: self.syncs.clone() }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
}

impl FsFile for CountingFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

struct Case {
    writers: usize,
    records_per_s: f64,
    fsyncs_per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

fn main() -> Result<()> {
    let budget = Duration::from_millis(
        std::env::var("SYNOD_BENCH_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000),
    );
    let root = std::env::temp_dir().join(format!("synod-bench-log-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = run(&root, budget);
    std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    result
}

fn run(root: &Path, budget: Duration) -> Result<()> {
    println!("files under {} (fdatasync on the file system holding it)", root.display());
    let mut bare = Bare::new(&root.join("bare"))?;
    let mut rows = Vec::new();
    for (shape, threads) in [("event loop", false), ("threads", true)] {
        for (i, writers) in [1, 8, 64].into_iter().enumerate() {
            // The disk's speed drifts, so each case is compared with bare fdatasync measured right around it.
            let before = bare.measure(budget / 4)?;
            let dir = root.join(format!("{shape}-{i}").replace(' ', "-"));
            let case = if threads {
                thread_case(&dir, writers, budget)?
            } else {
                event_loop_case(&dir, writers, budget)?
            };
            let after = bare.measure(budget / 4)?;
            rows.push((shape, case, (before + after) / 2.0));
        }
    }

    println!(
        "{:<11} {:>7} {:>12} {:>10} {:>14} {:>9} {:>9} {:>11} {:>7}",
        "writers as",
        "writers",
        "records/s",
        "fsyncs/s",
        "records/fsync",
        "p50 us",
        "p99 us",
        "bare fs/s",
        "x bare"
    );
    for (shape, c, bare) in &rows {
        println!(
            "{shape:<11} {:>7} {:>12} {:>10} {:>14.1} {:>9} {:>9} {:>11} {:>7.1}",
            c.writers,
            human(c.records_per_s),
            human(c.fsyncs_per_s),
            c.records_per_s / c.fsyncs_per_s.max(1.0),
            c.p50_us,
            c.p99_us,
            human(*bare),
            c.records_per_s / bare
        );
    }
    let (_, last, bare) = &rows[2];
    println!(
        "log: {:.0} records/s durable at 64 writers, {:.1}x bare fdatasync/s",
        last.records_per_s,
        last.records_per_s / bare
    );
    Ok(())
}

/// 4 KiB writes at successive offsets of a preallocated file, each followed by fdatasync.
struct Bare {
    file: std::fs::File,
    path: PathBuf,
    at: u64,
}

impl Bare {
    const SPAN: u64 = 16 << 20;

    fn new(path: &Path) -> Result<Bare> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        let zeros = vec![0u8; 1 << 20];
        for at in (0..Self::SPAN).step_by(zeros.len()) {
            file.write_all_at(&zeros, at)?;
        }
        file.sync_all()?;
        Ok(Bare { file, path: path.to_path_buf(), at: 0 })
    }

    /// Write + fdatasync operations per second over `budget`.
    fn measure(&mut self, budget: Duration) -> Result<f64> {
        let block = vec![0x5au8; 4096];
        let mut done = 0u64;
        let start = Instant::now();
        while start.elapsed() < budget {
            self.file
                .write_all_at(&block, self.at)
                .with_context(|| format!("writing {}", self.path.display()))?;
            self.file.sync_data().with_context(|| format!("fdatasync {}", self.path.display()))?;
            self.at = (self.at + 4096) % Self::SPAN;
            done += 1;
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    }
}

fn record(slot: u64) -> LogRecord {
    LogRecord::Accept {
        slot: Slot(slot),
        ballot: Ballot::new(1, NodeId(1)),
        value: Value::Batch(vec![7; 100].into()),
    }
}

/// `writers` logical writers driven from one thread through tokens, each with one record in flight.
fn event_loop_case(dir: &Path, writers: usize, budget: Duration) -> Result<Case> {
    let syncs = Arc::new(AtomicU64::new(0));
    let options = Options::new().fs(CountingFs { syncs: syncs.clone() }).preallocate(ThreadPreallocate);
    let (wal, _) = Wal::open(dir, options).with_context(|| format!("opening {}", dir.display()))?;
    let (tx, events) = crossbeam_channel::unbounded();
    let (log, appender) = GroupCommit::spawn(wal, move |e| drop(tx.send(e)));
    let mut in_flight = VecDeque::with_capacity(writers);
    let mut next_token = 0u64;
    let mut submit = |in_flight: &mut VecDeque<(u64, Instant)>| -> Result<()> {
        appender.append(vec![record(next_token)], next_token)?;
        in_flight.push_back((next_token, Instant::now()));
        next_token += 1;
        Ok(())
    };
    for _ in 0..writers {
        submit(&mut in_flight)?;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram");
    let mut done = 0u64;
    let warm_until = Instant::now() + budget / 10;
    let mut start = None;
    let mut syncs_start = 0;
    loop {
        let now = Instant::now();
        if start.is_none() && now >= warm_until {
            start = Some(now);
            syncs_start = syncs.load(Ordering::Relaxed);
        }
        if start.is_some_and(|s| now - s >= budget) {
            break;
        }
        match events.recv().context("log thread stopped")? {
            LogEvent::Durable(token) => {
                let (expected, sent) = in_flight.pop_front().expect("a report matches a submission");
                assert_eq!(token, expected, "durable reports come in submission order");
                if start.is_some() {
                    hist.saturating_record(sent.elapsed().as_micros() as u64);
                    done += 1;
                }
                submit(&mut in_flight)?;
            }
            LogEvent::Failed(e) => return Err(anyhow::anyhow!("log failed: {e}")),
        }
    }
    let elapsed = start.expect("measured").elapsed().as_secs_f64();
    let synced = syncs.load(Ordering::Relaxed) - syncs_start;
    drop(log.shutdown());
    Ok(Case {
        writers,
        records_per_s: done as f64 / elapsed,
        fsyncs_per_s: synced as f64 / elapsed,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
    })
}

/// `writers` threads, each appending one record and waiting for it to be durable, for `budget`.
fn thread_case(dir: &Path, writers: usize, budget: Duration) -> Result<Case> {
    let syncs = Arc::new(AtomicU64::new(0));
    let options = Options::new().fs(CountingFs { syncs: syncs.clone() }).preallocate(ThreadPreallocate);
    let (wal, _) = Wal::open(dir, options).with_context(|| format!("opening {}", dir.display()))?;
    let (log, appender) = GroupCommit::spawn(wal, |_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(writers + 1));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (appender, stop, measuring, barrier) =
                (appender.clone(), stop.clone(), measuring.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<(u64, Histogram<u64>)> {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram");
                let mut done = 0;
                let mut slot = (w as u64) << 40;
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    let rec = [record(slot)];
                    slot += 1;
                    let t = Instant::now();
                    appender.append_wait(&rec)?;
                    if measuring.load(Ordering::Relaxed) {
                        hist.saturating_record(t.elapsed().as_micros() as u64);
                        done += 1;
                    }
                }
                Ok((done, hist))
            })
        })
        .collect();
    barrier.wait();
    // Warm up (the first segment's page cache, the threads), then measure.
    std::thread::sleep(budget / 10);
    let syncs_start = syncs.load(Ordering::Relaxed);
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(budget);
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let synced = syncs.load(Ordering::Relaxed) - syncs_start;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram");
    for t in threads {
        let (done, h) = t.join().expect("writer thread")?;
        total += done;
        hist.add(h).expect("same histogram bounds");
    }
    drop(log.shutdown());
    Ok(Case {
        writers,
        records_per_s: total as f64 / elapsed,
        fsyncs_per_s: synced as f64 / elapsed,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
    })
}
