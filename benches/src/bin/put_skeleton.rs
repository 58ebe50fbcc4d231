//! The floor of a one-client replicated put on this machine, without synod.
//!
//! A bare skeleton of the message pattern synod's put follows, with none of
//! its protocol, encryption or state: a client sends a request over UDP on
//! loopback to a "leader", which forwards it to two "followers" and hands its
//! own write to a log thread; each follower writes 280 bytes in place in a
//! preallocated file and fdatasyncs before it answers; the leader answers the
//! client once two of the three writes are done (a majority). Four processes,
//! one request at a time, like `load --clients 1`.
//!
//! ```text
//! put_skeleton [SECONDS] [DIR]
//! ```
//! runs the client for SECONDS (default 5), once the servers say they are
//! ready, and prints the p50 and p99. The
//! logs (three files of 32 MiB) go in DIR (default `$CARGO_TARGET_DIR` or
//! `target`) and are removed at the end. Ports 7601-7604 on 127.0.0.1. See
//! docs/PERFORMANCE.md, "One client".

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::net::UdpSocket;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const LEADER: u16 = 7601;
const FOLLOWERS: [u16; 2] = [7602, 7603];
const CLIENT: u16 = 7604;
const RECORD: [u8; 280] = [b'r'; 280];
const LOG_BYTES: u64 = 32 << 20;
const STOP: &[u8] = b"stop";
const READY: &[u8] = b"ready";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [role, dir] = &args[..] {
        if role.starts_with("--") {
            return serve(role, Path::new(dir));
        }
    }
    let seconds: f64 = match args.first() {
        Some(s) if s == "-h" || s == "--help" => {
            println!("usage: put_skeleton [SECONDS] [DIR]");
            return Ok(());
        }
        Some(s) => s.parse().with_context(|| format!("SECONDS must be a number, not {s:?}"))?,
        None => 5.0,
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("SECONDS must be a positive number of seconds, not {seconds}");
    }
    let dir = args.get(1).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Bound first, so that a second copy fails here, before it starts servers.
    let socket = UdpSocket::bind(("127.0.0.1", CLIENT)).with_context(|| format!("binding port {CLIENT}"))?;
    let me = std::env::current_exe()?;
    let mut servers = Servers(Vec::new());
    for role in ["--leader", "--follower-1", "--follower-2"] {
        servers.0.push(Command::new(&me).arg(role).arg(&dir).spawn()?);
    }
    let (puts, p50, p99) = client(&socket, Duration::from_secs_f64(seconds))?;
    for port in [LEADER, FOLLOWERS[0], FOLLOWERS[1]] {
        socket.send_to(STOP, ("127.0.0.1", port))?;
    }
    for server in &mut servers.0 {
        server.wait()?;
    }
    servers.0.clear();
    println!("put-skeleton: {puts} puts in {seconds} s, p50 {:.2} ms, p99 {:.2} ms", ms(p50), ms(p99));
    Ok(())
}

/// The server processes, killed if the run ends early (each removes its own log
/// when it stops normally; a killed one leaves a file of 32 MiB in DIR).
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for server in &mut self.0 {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A zero-filled, synced log file, written in place as synod's log is.
fn log(dir: &Path, name: &str) -> Result<(File, PathBuf)> {
    let path = dir.join(format!("put-skeleton-{name}.wal"));
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let zeros = vec![0u8; 1 << 20];
    for i in 0..LOG_BYTES / zeros.len() as u64 {
        file.write_all_at(&zeros, i * zeros.len() as u64)?;
    }
    file.sync_all()?;
    Ok((file, path))
}

fn serve(role: &str, dir: &Path) -> Result<()> {
    match role {
        "--leader" => leader(dir),
        "--follower-1" => follower(dir, 0),
        "--follower-2" => follower(dir, 1),
        other => bail!("unknown role {other:?}"),
    }
}

fn follower(dir: &Path, i: usize) -> Result<()> {
    let socket = UdpSocket::bind(("127.0.0.1", FOLLOWERS[i]))?;
    let (file, path) = log(dir, &format!("follower-{}", i + 1))?;
    socket.send_to(READY, ("127.0.0.1", CLIENT))?;
    let mut at = 0;
    let mut buf = [0u8; 2048];
    loop {
        let (n, _) = socket.recv_from(&mut buf)?;
        if &buf[..n] == STOP {
            break;
        }
        file.write_all_at(&RECORD, at)?;
        at = (at + RECORD.len() as u64) % LOG_BYTES;
        file.sync_data()?;
        let mut ack = buf[..8].to_vec();
        ack.push(i as u8 + 1);
        socket.send_to(&ack, ("127.0.0.1", LEADER))?;
    }
    std::fs::remove_file(path)?;
    Ok(())
}

fn leader(dir: &Path) -> Result<()> {
    let socket = UdpSocket::bind(("127.0.0.1", LEADER))?;
    let (file, path) = log(dir, "leader")?;
    socket.send_to(READY, ("127.0.0.1", CLIENT))?;
    // The leader's own write goes to a log thread, as in synod, which reports back by datagram.
    let (writes, queue) = crossbeam_channel::unbounded::<[u8; 8]>();
    let reporter = UdpSocket::bind("127.0.0.1:0")?;
    let log_thread = std::thread::spawn(move || -> std::io::Result<()> {
        let mut at = 0;
        for seq in queue {
            file.write_all_at(&RECORD, at)?;
            at = (at + RECORD.len() as u64) % LOG_BYTES;
            file.sync_data()?;
            let mut done = seq.to_vec();
            done.push(0);
            reporter.send_to(&done, ("127.0.0.1", LEADER))?;
        }
        Ok(())
    });
    let mut votes: HashMap<[u8; 8], u8> = HashMap::new();
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        if &buf[..n] == STOP {
            break;
        }
        let seq: [u8; 8] = buf[..8].try_into().expect("every message starts with its sequence number");
        if from.port() == CLIENT {
            for port in FOLLOWERS {
                socket.send_to(&buf[..n], ("127.0.0.1", port))?;
            }
            votes.insert(seq, 0);
            writes.send(seq)?;
        } else if let Some(count) = votes.get_mut(&seq) {
            *count += 1;
            if *count == 2 {
                votes.remove(&seq);
                socket.send_to(&seq, ("127.0.0.1", CLIENT))?;
            }
        }
    }
    drop(writes);
    log_thread.join().expect("the log thread does not panic")?;
    std::fs::remove_file(path)?;
    Ok(())
}

fn client(socket: &UdpSocket, length: Duration) -> Result<(usize, Duration, Duration)> {
    // Each server says when its log is preallocated and it listens.
    socket.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        let (n, _) = socket.recv_from(&mut buf).context("the servers did not start within 60 s")?;
        if &buf[..n] != READY {
            bail!("unexpected datagram while waiting for the servers: {:?}", &buf[..n]);
        }
    }
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = vec![b'x'; 128];
    let mut latencies = Vec::new();
    let end = Instant::now() + length;
    let mut seq = 0u64;
    while Instant::now() < end {
        seq += 1;
        request[..8].copy_from_slice(&seq.to_be_bytes());
        let t = Instant::now();
        socket.send_to(&request, ("127.0.0.1", LEADER))?;
        socket.recv_from(&mut buf).context("no answer within 5 s")?;
        latencies.push(t.elapsed());
    }
    if latencies.is_empty() {
        bail!("no put finished in {length:?}");
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok((latencies.len(), at(0.5), at(0.99)))
}
