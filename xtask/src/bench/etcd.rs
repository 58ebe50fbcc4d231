//! A three-member etcd cluster on loopback for the comparison: installed with apt-get
//! when missing, started fresh with default durability, checked for health, stopped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Client port of member `i` is `CLIENT_PORT + i`, its peer port `PEER_PORT + i`
/// (beside etcd's usual 2379/2380, so that a system etcd does not collide).
const CLIENT_PORT: u16 = 23790;
const PEER_PORT: u16 = 23800;

/// The members' files: `data/m<i>` (fresh each start), `m<i>.log`, `m<i>.pid`.
#[derive(Debug, Clone)]
pub(crate) struct Etcd {
    pub(crate) dir: PathBuf,
    pub(crate) members: u16,
}

/// `etcd --version`'s first line, installing Debian's `etcd-server` first if there is no `etcd`.
pub(crate) fn ensure_installed() -> Result<String> {
    if version().is_none() {
        eprintln!("bench: etcd is not installed; installing Debian's etcd-server with apt-get");
        crate::apt_install("etcd-server")?;
    }
    version().context("etcd is still not runnable after installing etcd-server")
}

fn version() -> Option<String> {
    let out = Command::new("etcd").arg("--version").stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "etcd Version: 3.4.23" -> "etcd 3.4.23".
    let first = text.lines().next().unwrap_or("etcd").trim().replace("Version: ", "");
    out.status.success().then_some(first)
}

impl Etcd {
    fn name(i: u16) -> String {
        format!("m{i}")
    }

    fn peer_url(i: u16) -> String {
        format!("http://127.0.0.1:{}", PEER_PORT + i)
    }

    fn client_url(i: u16) -> String {
        format!("http://127.0.0.1:{}", CLIENT_PORT + i)
    }

    /// Every member's client URL, comma-separated (what `load --endpoints` takes).
    pub(crate) fn endpoints(&self) -> String {
        (1..=self.members).map(Etcd::client_url).collect::<Vec<_>>().join(",")
    }

    pub(crate) fn pid_file(&self, i: u16) -> PathBuf {
        self.dir.join(format!("{}.pid", Etcd::name(i)))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts every member on empty data directories; the old ones (and their logs) are removed.
    pub(crate) fn start(&self) -> Result<()> {
        self.stop();
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))?;
        }
        std::fs::create_dir_all(self.data_dir())?;
        let cluster: Vec<String> =
            (1..=self.members).map(|i| format!("{}={}", Etcd::name(i), Etcd::peer_url(i))).collect();
        // A token of its own per start, so that a member never joins a stale cluster.
        let token = format!("synod-bench-{}-{}", std::process::id(), unix_ms());
        for i in 1..=self.members {
            let log = std::fs::File::create(self.dir.join(format!("{}.log", Etcd::name(i))))?;
            // Default durability: every commit is fsynced (no --unsafe-no-fsync).
            let child = Command::new("etcd")
                .arg("--name")
                .arg(Etcd::name(i))
                .arg("--data-dir")
                .arg(self.data_dir().join(Etcd::name(i)))
                .args(["--listen-client-urls", &Etcd::client_url(i)])
                .args(["--advertise-client-urls", &Etcd::client_url(i)])
                .args(["--listen-peer-urls", &Etcd::peer_url(i)])
                .args(["--initial-advertise-peer-urls", &Etcd::peer_url(i)])
                .args(["--initial-cluster", &cluster.join(",")])
                .args(["--initial-cluster-state", "new", "--initial-cluster-token", &token])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting etcd member {i}"))?;
            std::fs::write(self.pid_file(i), child.id().to_string())?;
        }
        Ok(())
    }

    /// Waits until every member answers `/health` with `"health":"true"` (which needs a leader).
    pub(crate) fn await_healthy(&self, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            if (1..=self.members).all(|i| healthy(CLIENT_PORT + i)) {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("etcd was not healthy within {timeout:?}; see the logs in {}", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops every member (SIGTERM, then SIGKILL) that its pid file names and that is still etcd.
    pub(crate) fn stop(&self) {
        for i in 1..=self.members {
            super::stop_pid_file(&self.pid_file(i), "etcd");
        }
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// One HTTP/1.0 `GET /health` to a member.
fn healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}
