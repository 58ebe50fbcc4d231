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
//! put_skeleton [--quic] [SECONDS] [DIR]
//! ```
//! runs the client for SECONDS (default 5), once the servers say they are
//! ready, and prints the p50 and p99. The
//! logs (three files of 32 MiB) go in DIR (default `$CARGO_TARGET_DIR` or
//! `target`) and are removed at the end. Ports 7601-7604 on 127.0.0.1. See
//! docs/PERFORMANCE.md, "One client".
//!
//! With `--quic` the four processes talk as synod's do: one QUIC connection
//! per pair (quinn, with synod's TLS and transport settings and certificates
//! made in DIR), a bidirectional stream on each, and every process on one
//! current-thread tokio runtime, a follower writing inline on it. Still no
//! Paxos, sessions, state machine or synod code on the path: the difference
//! between the two modes is what QUIC costs per put, and synod's own cost is
//! what `load --clients 1` takes beyond the QUIC mode. Ports 7611-7613, and
//! 7604 for the servers' ready messages.
//!
//! With `--quic --read` it is the floor of a one-client linearizable read
//! (ReadIndex) instead: the same four processes and messages, but no one
//! writes or syncs anything; the leader answers once one follower has
//! answered its forwarded request (with its own vote, a majority), which is
//! the one round a leader's read waits for.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::net::UdpSocket;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

const LEADER: u16 = 7601;
const FOLLOWERS: [u16; 2] = [7602, 7603];
const CLIENT: u16 = 7604;
const RECORD: [u8; 280] = [b'r'; 280];
const LOG_BYTES: u64 = 32 << 20;
const STOP: &[u8] = b"stop";
const READY: &[u8] = b"ready";
/// The QUIC mode's leader and followers.
const QUIC_LEADER: u16 = 7611;
const QUIC_FOLLOWERS: [u16; 2] = [7612, 7613];
/// A request: its sequence number, then padding (as the UDP mode's).
const REQUEST_LEN: usize = 128;

/// The floor of a one-client replicated put on this machine, without synod
/// (see the module documentation).
#[derive(Debug, Parser)]
#[command(name = "put_skeleton", override_usage = "put_skeleton [--quic [--read]] [SECONDS] [DIR]")]
struct Cli {
    /// Talk as synod's processes do: QUIC with synod's TLS and transport settings.
    #[arg(long)]
    quic: bool,
    /// The floor of a read instead of a put: nothing is written or synced (needs --quic).
    #[arg(long, requires = "quic")]
    read: bool,
    /// How long the client runs, in seconds (default 5).
    seconds: Option<String>,
    /// Where the logs (and with --quic the certificates) go (default `$CARGO_TARGET_DIR` or `target`).
    dir: Option<PathBuf>,
    /// Run as one of the servers: leader, follower-1 or follower-2 (the client starts them).
    #[arg(long, hide = true, value_name = "ROLE", requires = "serve_dir")]
    serve: Option<String>,
    /// A server's DIR.
    #[arg(long, hide = true, value_name = "DIR")]
    serve_dir: Option<PathBuf>,
}

/// The servers' roles.
const ROLES: [&str; 3] = ["leader", "follower-1", "follower-2"];

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (quic, read) = (cli.quic, cli.read);
    if let (Some(role), Some(dir)) = (&cli.serve, &cli.serve_dir) {
        return if quic { quic::serve(role, dir, read) } else { serve(role, dir) };
    }
    let seconds: f64 = match &cli.seconds {
        Some(s) => s.parse().with_context(|| format!("SECONDS must be a number, not {s:?}"))?,
        None => 5.0,
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("SECONDS must be a positive number of seconds, not {seconds}");
    }
    let dir = cli.dir.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Bound first, so that a second copy fails here, before it starts servers.
    let socket = UdpSocket::bind(("127.0.0.1", CLIENT)).with_context(|| format!("binding port {CLIENT}"))?;
    if quic {
        // Every process loads its credentials from here.
        synod_transport::certs::init(&quic::cert_dir(&dir), 3, 1, true).context("making certificates")?;
    }
    let me = std::env::current_exe()?;
    let mut servers = Servers(Vec::new());
    for role in ROLES {
        let mut command = Command::new(&me);
        command.arg("--serve").arg(role).arg("--serve-dir").arg(&dir);
        if quic {
            command.arg("--quic");
        }
        if read {
            command.arg("--read");
        }
        servers.0.push(command.spawn()?);
    }
    wait_ready(&socket)?;
    let length = Duration::from_secs_f64(seconds);
    let latencies = if quic {
        // Closing the connection stops the leader, which stops the followers.
        quic::client(&dir, length)?
    } else {
        let latencies = client(&socket, length)?;
        for port in [LEADER, FOLLOWERS[0], FOLLOWERS[1]] {
            socket.send_to(STOP, ("127.0.0.1", port))?;
        }
        latencies
    };
    for server in &mut servers.0 {
        server.wait()?;
    }
    servers.0.clear();
    if quic {
        std::fs::remove_dir_all(quic::cert_dir(&dir))?;
    }
    let (puts, p50, p99) = summary(latencies, length)?;
    let (mode, what) = match (quic, read) {
        (true, true) => ("read-skeleton (QUIC)", "reads"),
        (true, false) => ("put-skeleton (QUIC)", "puts"),
        _ => ("put-skeleton", "puts"),
    };
    println!("{mode}: {puts} {what} in {seconds} s, p50 {:.2} ms, p99 {:.2} ms", ms(p50), ms(p99));
    Ok(())
}

/// Waits for the three servers' ready messages: each has preallocated its log and listens.
fn wait_ready(socket: &UdpSocket) -> Result<()> {
    socket.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        let (n, _) = socket.recv_from(&mut buf).context("the servers did not start within 60 s")?;
        if &buf[..n] != READY {
            bail!("unexpected datagram while waiting for the servers: {:?}", &buf[..n]);
        }
    }
    Ok(())
}

/// The number of puts, their p50 and p99.
fn summary(mut latencies: Vec<Duration>, length: Duration) -> Result<(usize, Duration, Duration)> {
    if latencies.is_empty() {
        bail!("no put finished in {length:?}");
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok((latencies.len(), at(0.5), at(0.99)))
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
struct Log {
    file: File,
    path: PathBuf,
    at: u64,
}

impl Log {
    fn create(dir: &Path, name: &str) -> Result<Log> {
        let path = dir.join(format!("put-skeleton-{name}.wal"));
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        let zeros = vec![0u8; 1 << 20];
        for i in 0..LOG_BYTES / zeros.len() as u64 {
            file.write_all_at(&zeros, i * zeros.len() as u64)?;
        }
        file.sync_all()?;
        Ok(Log { file, path, at: 0 })
    }

    /// Writes one record and waits until it is durable.
    fn append(&mut self) -> std::io::Result<()> {
        self.file.write_all_at(&RECORD, self.at)?;
        self.at = (self.at + RECORD.len() as u64) % LOG_BYTES;
        self.file.sync_data()
    }

    /// A leader's log thread: appends a record per sequence number queued,
    /// then reports it durable with `durable`.
    fn spawn(
        mut self,
        mut durable: impl FnMut([u8; 8]) -> std::io::Result<()> + Send + 'static,
    ) -> (crossbeam_channel::Sender<[u8; 8]>, std::thread::JoinHandle<std::io::Result<Log>>) {
        let (writes, queue) = crossbeam_channel::unbounded::<[u8; 8]>();
        let thread = std::thread::spawn(move || {
            for seq in queue {
                self.append()?;
                durable(seq)?;
            }
            Ok(self)
        });
        (writes, thread)
    }

    fn remove(self) -> std::io::Result<()> {
        std::fs::remove_file(self.path)
    }
}

fn serve(role: &str, dir: &Path) -> Result<()> {
    match role {
        "leader" => leader(dir),
        "follower-1" => follower(dir, 0),
        "follower-2" => follower(dir, 1),
        other => bail!("unknown role {other:?}"),
    }
}

fn follower(dir: &Path, i: usize) -> Result<()> {
    let socket = UdpSocket::bind(("127.0.0.1", FOLLOWERS[i]))?;
    let mut log = Log::create(dir, &format!("follower-{}", i + 1))?;
    socket.send_to(READY, ("127.0.0.1", CLIENT))?;
    let mut buf = [0u8; 2048];
    loop {
        let (n, _) = socket.recv_from(&mut buf)?;
        if &buf[..n] == STOP {
            break;
        }
        log.append()?;
        let mut ack = buf[..8].to_vec();
        ack.push(i as u8 + 1);
        socket.send_to(&ack, ("127.0.0.1", LEADER))?;
    }
    log.remove()?;
    Ok(())
}

fn leader(dir: &Path) -> Result<()> {
    let socket = UdpSocket::bind(("127.0.0.1", LEADER))?;
    let log = Log::create(dir, "leader")?;
    socket.send_to(READY, ("127.0.0.1", CLIENT))?;
    // The leader's own write goes to a log thread, as in synod, which reports back by datagram.
    let reporter = UdpSocket::bind("127.0.0.1:0")?;
    let (writes, log_thread) = log.spawn(move |seq| {
        let mut done = seq.to_vec();
        done.push(0);
        reporter.send_to(&done, ("127.0.0.1", LEADER)).map(drop)
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
    log_thread.join().expect("the log thread does not panic")?.remove()?;
    Ok(())
}

/// The client's requests, numbered, one at a time until the run's length is up.
struct Requests {
    request: [u8; REQUEST_LEN],
    seq: u64,
    end: Instant,
}

impl Requests {
    fn new(length: Duration) -> Requests {
        Requests { request: [b'x'; REQUEST_LEN], seq: 0, end: Instant::now() + length }
    }

    /// The next request and the time it starts, or `None` once the time is up.
    fn next(&mut self) -> Option<(&[u8], Instant)> {
        let now = Instant::now();
        if now >= self.end {
            return None;
        }
        self.seq += 1;
        self.request[..8].copy_from_slice(&self.seq.to_be_bytes());
        Some((&self.request, now))
    }
}

fn client(socket: &UdpSocket, length: Duration) -> Result<Vec<Duration>> {
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 64];
    let mut requests = Requests::new(length);
    let mut latencies = Vec::new();
    while let Some((request, t)) = requests.next() {
        socket.send_to(request, ("127.0.0.1", LEADER))?;
        socket.recv_from(&mut buf).context("no answer within 5 s")?;
        latencies.push(t.elapsed());
    }
    Ok(latencies)
}

/// The QUIC mode: the same pattern over quinn streams.
mod quic {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use anyhow::{bail, Context, Result};
    use synod_transport::{tls, Credentials, Identity, Settings};
    use synod_wire::NodeId;

    use super::{Log, Requests, CLIENT, QUIC_FOLLOWERS, QUIC_LEADER, READY, REQUEST_LEN};

    pub(super) fn cert_dir(dir: &Path) -> PathBuf {
        dir.join("put-skeleton-certs")
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A current-thread runtime, as a replica's transport has.
    fn runtime() -> Result<tokio::runtime::Runtime> {
        Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
    }

    fn transport() -> Arc<quinn::TransportConfig> {
        let s = Settings::default();
        tls::transport_config(s.idle_timeout, s.keep_alive)
    }

    /// An endpoint that accepts with `me`'s certificate and can dial too.
    fn endpoint(dir: &Path, me: Identity, port: u16) -> Result<(quinn::Endpoint, Credentials)> {
        let creds = Credentials::load(&cert_dir(dir), me)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(&creds)?)?,
        ));
        server.transport_config(transport());
        Ok((quinn::Endpoint::server(server, addr(port))?, creds))
    }

    /// Dials node `n` at `port` and opens a stream to it.
    async fn dial(
        endpoint: &quinn::Endpoint,
        creds: &Credentials,
        n: u32,
        port: u16,
    ) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream)> {
        let mut config = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(creds, Some(NodeId(n)))?)?,
        ));
        config.transport_config(transport());
        let name = Identity::Node(NodeId(n)).dns_name();
        let conn = endpoint.connect_with(config, addr(port), &name)?.await?;
        let (send, recv) = conn.open_bi().await?;
        Ok((conn, send, recv))
    }

    fn ready() -> Result<()> {
        std::net::UdpSocket::bind("127.0.0.1:0")?.send_to(READY, ("127.0.0.1", CLIENT))?;
        Ok(())
    }

    /// Runs server `role`; with `read`, it writes nothing (the read skeleton).
    pub(super) fn serve(role: &str, dir: &Path, read: bool) -> Result<()> {
        match role {
            "leader" => runtime()?.block_on(leader(dir, read)),
            "follower-1" => runtime()?.block_on(follower(dir, 0, read)),
            "follower-2" => runtime()?.block_on(follower(dir, 1, read)),
            other => bail!("unknown role {other:?}"),
        }
    }

    async fn follower(dir: &Path, i: usize, read: bool) -> Result<()> {
        let (endpoint, _) = endpoint(dir, Identity::Node(NodeId(i as u32 + 2)), QUIC_FOLLOWERS[i])?;
        let mut log = Log::create(dir, &format!("quic-follower-{}", i + 1))?;
        ready()?;
        let conn = endpoint.accept().await.context("no leader")?.await?;
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut request = [0u8; REQUEST_LEN];
        // Until the leader finishes its stream.
        while recv.read_exact(&mut request).await.is_ok() {
            // Written and synced inline, on the runtime's thread, as a follower does;
            // a read's confirmation round writes nothing.
            if !read {
                log.append()?;
            }
            send.write_all(&request[..8]).await?;
        }
        conn.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        log.remove()?;
        Ok(())
    }

    /// Counts the writes of each put, and answers the client at two of three.
    struct Votes {
        open: Mutex<std::collections::HashMap<[u8; 8], u8>>,
        reply: tokio::sync::Mutex<quinn::SendStream>,
    }

    impl Votes {
        async fn vote(&self, seq: [u8; 8]) -> Result<()> {
            let done = {
                let mut open = self.open.lock().expect("not poisoned");
                match open.get_mut(&seq) {
                    Some(count) => {
                        *count += 1;
                        *count == 2 && open.remove(&seq).is_some()
                    }
                    None => false,
                }
            };
            if done {
                self.reply.lock().await.write_all(&seq).await?;
            }
            Ok(())
        }
    }

    async fn leader(dir: &Path, read: bool) -> Result<()> {
        let (endpoint, creds) = endpoint(dir, Identity::Node(NodeId(1)), QUIC_LEADER)?;
        let log = Log::create(dir, "quic-leader")?;
        let (mut conns, mut sends, mut acks) = (Vec::new(), Vec::new(), Vec::new());
        for (i, port) in QUIC_FOLLOWERS.into_iter().enumerate() {
            let (conn, send, recv) = dial(&endpoint, &creds, i as u32 + 2, port).await?;
            conns.push(conn);
            sends.push(send);
            acks.push(recv);
        }
        ready()?;
        let conn = endpoint.accept().await.context("no client")?.await?;
        let (reply, mut requests) = conn.accept_bi().await?;
        let votes = Arc::new(Votes { open: Mutex::default(), reply: tokio::sync::Mutex::new(reply) });
        // The leader's own write goes to a log thread, which reports to the runtime, as in synod.
        let (durable, mut durable_rx) = tokio::sync::mpsc::unbounded_channel::<[u8; 8]>();
        let (writes, log_thread) = log.spawn(move |seq| {
            let _ = durable.send(seq);
            Ok(())
        });
        let mut tasks = tokio::task::JoinSet::new();
        for mut recv in acks {
            let votes = votes.clone();
            tasks.spawn(async move {
                let mut seq = [0u8; 8];
                while recv.read_exact(&mut seq).await.is_ok() {
                    votes.vote(seq).await?;
                }
                Ok::<_, anyhow::Error>(())
            });
        }
        {
            let votes = votes.clone();
            tasks.spawn(async move {
                while let Some(seq) = durable_rx.recv().await {
                    votes.vote(seq).await?;
                }
                Ok(())
            });
        }
        let mut request = [0u8; REQUEST_LEN];
        while requests.read_exact(&mut request).await.is_ok() {
            let seq: [u8; 8] = request[..8].try_into().expect("8 bytes");
            // A read: the leader's own vote is there at once, nothing is written.
            votes.open.lock().expect("not poisoned").insert(seq, u8::from(read));
            for send in &mut sends {
                send.write_all(&request).await?;
            }
            if !read {
                writes.send(seq)?;
            }
        }
        drop(writes);
        for send in &mut sends {
            let _ = send.finish();
        }
        let log = log_thread.join().expect("the log thread does not panic")?;
        tasks.shutdown().await;
        for conn in &conns {
            conn.closed().await;
        }
        endpoint.wait_idle().await;
        log.remove()?;
        Ok(())
    }

    pub(super) fn client(dir: &Path, length: Duration) -> Result<Vec<Duration>> {
        runtime()?.block_on(async {
            let creds = Credentials::load(&cert_dir(dir), Identity::Client(1))?;
            let endpoint = quinn::Endpoint::client(addr(0))?;
            let (conn, mut send, mut recv) = dial(&endpoint, &creds, 1, QUIC_LEADER).await?;
            let mut answer = [0u8; 8];
            let mut requests = Requests::new(length);
            let mut latencies = Vec::new();
            while let Some((request, t)) = requests.next() {
                send.write_all(request).await?;
                tokio::time::timeout(Duration::from_secs(5), recv.read_exact(&mut answer))
                    .await
                    .context("no answer within 5 s")??;
                latencies.push(t.elapsed());
            }
            let _ = send.finish();
            conn.close(0u32.into(), b"done");
            endpoint.wait_idle().await;
            Ok(latencies)
        })
    }
}
