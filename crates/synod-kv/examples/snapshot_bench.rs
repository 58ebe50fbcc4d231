//! Measures the store, put-heavy, in release:
//! `cargo run --release -p synod-kv --example snapshot_bench [throughput|snapshot|all]`
//!
//! * `throughput`: apply throughput, 100,000 keys with 100-byte values and
//!   2,000,000 keys with 200-byte values (filling, then random overwrites);
//! * `snapshot`: at 2,000,000 keys with 200-byte values, the time to take a
//!   frozen view on the applying thread, to write it out (into a sink that
//!   counts bytes), how long single applies take while another thread
//!   writes a view and while none does, and a `restore_from` of it all.
// A measurement, not the core: it reads the clock and starts a thread.
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_kv::{KvCommand, KvStore};
use synod_state_machine::wire::Wire;
use synod_state_machine::StateMachine;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:012}").into_bytes()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn encode_puts(keys: impl Iterator<Item = u64>, value: &[u8]) -> Vec<Vec<u8>> {
    keys.map(|i| KvCommand::Put { key: key(i), value: value.to_vec() }.encode().unwrap()).collect()
}

/// Applies `commands`, returns the seconds spent in `apply`.
fn timed(kv: &mut KvStore, commands: &[Vec<u8>]) -> f64 {
    let start = Instant::now();
    for c in commands {
        std::hint::black_box(kv.apply(c));
    }
    start.elapsed().as_secs_f64()
}

fn throughput(keys: u64, value_len: usize, overwrites: u64) -> KvStore {
    let value = vec![0xabu8; value_len];
    let mut kv = KvStore::default();
    let chunk = 100_000u64;
    let mut fill = 0.0;
    for lo in (0..keys).step_by(chunk as usize) {
        let cmds = encode_puts(lo..(lo + chunk).min(keys), &value);
        fill += timed(&mut kv, &cmds);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut over = 0.0;
    let mut done = 0;
    let overwrites = overwrites.max(1);
    while done < overwrites {
        let n = chunk.min(overwrites - done);
        let cmds = encode_puts((0..n).map(|_| rng.next() % keys), &value);
        over += timed(&mut kv, &cmds);
        done += n;
    }
    println!(
        "{keys} keys, {value_len}-byte values: fill {:.0} ns/put ({:.2} M/s), {overwrites} random overwrites {:.0} ns/put ({:.2} M/s)",
        fill * 1e9 / keys as f64,
        keys as f64 / fill / 1e6,
        over * 1e9 / overwrites as f64,
        overwrites as f64 / over / 1e6,
    );
    kv
}

/// Counts what is written to it and drops it.
struct Counting(u64);
impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// p50, p99, p99.9 and max of `lat` (nanoseconds), sorted in place.
fn percentiles(lat: &mut [u64]) -> String {
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    format!(
        "n={} p50={} ns p99={} ns p99.9={} ns max={} ns",
        lat.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        lat[lat.len() - 1]
    )
}

/// Applies `commands` one by one, timing each, until `stop` (if any) is set.
fn latencies(kv: &mut KvStore, commands: &[Vec<u8>], stop: Option<&AtomicBool>) -> Vec<u64> {
    let mut lat = Vec::with_capacity(commands.len());
    for c in commands {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            break;
        }
        let t = Instant::now();
        std::hint::black_box(kv.apply(c));
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat
}

fn snapshot() {
    let keys = 2_000_000;
    let mut kv = throughput(keys, 200, 0);
    let value = vec![0xcdu8; 200];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);

    // What a snapshot costs the applying thread without a frozen view: snapshot_to on it.
    let t = Instant::now();
    let mut sink = Counting(0);
    kv.snapshot_to(&mut sink).unwrap();
    println!(
        "snapshot_to on the applying thread (the stall without a view): {} for {} bytes",
        ms(t.elapsed()),
        sink.0
    );

    // Taking the view.
    let mut takes = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let source = kv.snapshot_source();
        takes.push(t.elapsed());
        drop(source);
    }
    takes.sort();
    println!(
        "snapshot_source (take, on the applying thread), 20 takes: min {} median {} max {}",
        ms(takes[0]),
        ms(takes[10]),
        ms(takes[19])
    );

    // Writing it, alone.
    let source = kv.snapshot_source();
    let t = Instant::now();
    let mut sink = Counting(0);
    source.write_to(&mut sink).unwrap();
    println!("write_to alone (sort + encode into a counting sink): {} for {} bytes", ms(t.elapsed()), sink.0);

    // Applies with no snapshot being written.
    let cmds = encode_puts((0..1_000_000).map(|_| rng.next() % keys), &value);
    let mut lat = latencies(&mut kv, &cmds, None);
    println!("applies, no write_to running:           {}", percentiles(&mut lat));

    // Applies while another thread writes a view taken just before.
    let cmds = encode_puts((0..3_000_000).map(|_| rng.next() % keys), &value);
    let done = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let source = kv.snapshot_source();
    let take = t.elapsed();
    let writer = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let t = Instant::now();
            let mut sink = Counting(0);
            source.write_to(&mut sink).unwrap();
            let wrote = t.elapsed();
            done.store(true, Ordering::Relaxed);
            (wrote, sink.0)
        })
    };
    let mut lat = latencies(&mut kv, &cmds, Some(&done));
    let (wrote, bytes) = writer.join().unwrap();
    println!("take {} then write_to on another thread: {} for {bytes} bytes", ms(take), ms(wrote));
    println!("applies while write_to runs:            {}", percentiles(&mut lat));
    if lat.len() == cmds.len() {
        println!("(the writer outlasted the {} commands)", cmds.len());
    }

    // Restore of the whole store.
    let mut bytes = Vec::new();
    kv.snapshot_to(&mut bytes).unwrap();
    let t = Instant::now();
    let mut restored = KvStore::default();
    restored.restore_from(&mut bytes.as_slice()).unwrap();
    println!("restore_from of {} keys ({} bytes): {}", restored.len(), bytes.len(), ms(t.elapsed()));
    assert_eq!(restored.len(), kv.len());
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".to_owned());
    if what == "all" || what == "throughput" {
        for _ in 0..3 {
            throughput(100_000, 100, 2_000_000);
        }
        for _ in 0..2 {
            throughput(2_000_000, 200, 2_000_000);
        }
    }
    if what == "big" {
        throughput(2_000_000, 200, 2_000_000);
    }
    if what == "small" {
        throughput(100_000, 100, 2_000_000);
    }
    if what == "all" || what == "snapshot" {
        snapshot();
    }
}
