//! The RESP listener of `synod start`: a three-replica cluster of real
//! processes, driven with raw RESP over TCP and with `redis-cli` when it is installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_tcp, free_udp, start_replica, start_with, synod, write_cluster_files, Nodes, NODE};

/// A RESP reply, as the test reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum R {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<R>>),
}

fn bulk(s: &str) -> R {
    R::Bulk(Some(s.as_bytes().to_vec()))
}

fn read_reply(r: &mut impl BufRead) -> R {
    let mut line = String::new();
    r.read_line(&mut line).expect("a reply line");
    assert!(line.ends_with("\r\n"), "reply line {line:?}");
    let (kind, rest) = line.split_at(1);
    let rest = rest.trim_end_matches("\r\n");
    match kind {
        "+" => R::Simple(rest.to_owned()),
        "-" => R::Error(rest.to_owned()),
        ":" => R::Int(rest.parse().unwrap()),
        "$" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return R::Bulk(None);
            }
            let mut b = vec![0; n as usize + 2];
            r.read_exact(&mut b).unwrap();
            b.truncate(n as usize);
            R::Bulk(Some(b))
        }
        "*" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return R::Array(None);
            }
            R::Array(Some((0..n).map(|_| read_reply(r)).collect()))
        }
        other => panic!("unknown reply kind {other:?} in {line:?}"),
    }
}

/// Encodes a command as an array of bulk strings.
fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
    out
}

struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let w = TcpStream::connect(("127.0.0.1", port)).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn { r: BufReader::new(w.try_clone().unwrap()), w }
    }

    fn call(&mut self, args: &[&str]) -> R {
        self.w.write_all(&cmd(args)).unwrap();
        read_reply(&mut self.r)
    }
}

/// Starts three replicas, each with a RESP listener (replica 2's with a password); returns their RESP ports.
pub(crate) fn cluster(d: &Path) -> (Nodes, [u16; 3]) {
    assert!(synod(&["certs", "init", "--dir", "certs", "--nodes", "3", "--clients", "1"], d)
        .status
        .success());
    let ports: Vec<u16> = (0..3).map(|_| free_udp()).collect();
    let resp = [free_tcp(), free_tcp(), free_tcp()];
    write_cluster_files(
        d,
        "127.0.0.1",
        &ports,
        |n| match n {
            1 => format!("[resp]\nlisten = \"127.0.0.1:{}\"\nclient = \"client.toml\"\n", resp[0]),
            2 => format!(
                "[resp]\nlisten = \"127.0.0.1:{}\"\nclient = \"client.toml\"\npassword = \"sesame\"\n",
                resp[1]
            ),
            _ => format!("[resp]\nlisten = \"127.0.0.1:{}\"\nclient = \"client.toml\"\n", resp[2]),
        },
        "",
    );
    // The [resp] tables were written before [tls]; a table takes the keys up
    // to the next table, so that is valid TOML as it stands.
    let nodes = Nodes((1..=3).map(|n| Some(start_replica(d, n, std::process::Stdio::null()))).collect());
    // Ready when PING answers (the listener registers its session first).
    for port in [resp[0], resp[2]] {
        wait_for_pong(port);
    }
    (nodes, resp)
}

fn wait_for_pong(port: u16) {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            if s.write_all(b"PING\r\n").is_ok() {
                let mut b = [0; 7];
                if s.read_exact(&mut b).is_ok() && &b == b"+PONG\r\n" {
                    break;
                }
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the RESP listener never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_resp_listener_serves_redis_commands_through_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_nodes, [port, port2, _]) = cluster(d);
    let mut c = Conn::open(port);
    assert_eq!(c.call(&["SET", "k", "v"]), R::Simple("OK".into()));
    assert_eq!(c.call(&["GET", "k"]), bulk("v"));
    assert_eq!(c.call(&["SET", "k", "w", "NX"]), R::Bulk(None));
    assert_eq!(c.call(&["SET", "k", "w", "XX", "GET"]), bulk("v"));
    assert_eq!(c.call(&["INCR", "n"]), R::Int(1));
    assert_eq!(c.call(&["INCRBY", "n", "41"]), R::Int(42));
    assert_eq!(c.call(&["DECRBY", "n", "2"]), R::Int(40));
    assert_eq!(c.call(&["INCR", "k"]), R::Error("ERR value is not an integer or out of range".into()));
    assert_eq!(c.call(&["MSET", "a", "1", "b", "2"]), R::Simple("OK".into()));
    assert_eq!(
        c.call(&["MGET", "a", "nope", "b"]),
        R::Array(Some(vec![bulk("1"), R::Bulk(None), bulk("2")]))
    );
    assert_eq!(c.call(&["MSETNX", "a", "x", "c", "3"]), R::Int(0));
    assert_eq!(c.call(&["EXISTS", "a", "b", "c", "a"]), R::Int(3));
    assert_eq!(c.call(&["APPEND", "a", "23"]), R::Int(3));
    assert_eq!(c.call(&["STRLEN", "a"]), R::Int(3));
    assert_eq!(c.call(&["CAS", "a", "123", "x"]), R::Int(1));
    assert_eq!(c.call(&["CAS", "a", "123", "y"]), R::Int(0));
    assert_eq!(c.call(&["DEL", "a", "b", "nope"]), R::Int(2));
    assert_eq!(c.call(&["GET", "a"]), R::Bulk(None));
    assert_eq!(c.call(&["LPUSH", "l", "x"]), R::Error("ERR 'LPUSH' is not supported by synod".into()));
    assert!(matches!(c.call(&["NOSUCH"]), R::Error(e) if e.starts_with("ERR unknown command 'NOSUCH'")));
    assert!(
        matches!(c.call(&["SET", "k", "v", "EX", "10"]), R::Error(e) if e.contains("not supported by synod"))
    );
    let R::Bulk(Some(info)) = c.call(&["INFO", "replication"]) else { panic!("INFO answers a bulk string") };
    let info = String::from_utf8(info).unwrap();
    assert!(info.contains("role:master") && info.contains("synod_leader:"), "{info}");

    // A pipeline of 200 commands, written at once: answered in order, and
    // each GET sees the SETs before it on the connection.
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend(cmd(&["SET", &format!("p{i}"), &i.to_string()]));
        batch.extend(cmd(&["GET", &format!("p{i}")]));
    }
    c.w.write_all(&batch).unwrap();
    for i in 0..100 {
        assert_eq!(read_reply(&mut c.r), R::Simple("OK".into()));
        assert_eq!(read_reply(&mut c.r), bulk(&i.to_string()));
    }
    // 100 INCRs pipelined: each applied once.
    let incrs: Vec<u8> = (0..100).flat_map(|_| cmd(&["INCR", "counter"])).collect();
    c.w.write_all(&incrs).unwrap();
    let answers: Vec<R> = (0..100).map(|_| read_reply(&mut c.r)).collect();
    assert_eq!(answers, (1..=100).map(R::Int).collect::<Vec<_>>());
    // Inline commands.
    c.w.write_all(b"ECHO \"a b\"\r\nPING\r\n").unwrap();
    assert_eq!(read_reply(&mut c.r), bulk("a b"));
    assert_eq!(read_reply(&mut c.r), R::Simple("PONG".into()));

    // Replica 2's listener wants a password, and sees replica 1's writes.
    let mut c2 = Conn::open(port2);
    assert_eq!(c2.call(&["GET", "k"]), R::Error("NOAUTH Authentication required.".into()));
    assert_eq!(c2.call(&["AUTH", "sesame"]), R::Simple("OK".into()));
    assert_eq!(c2.call(&["GET", "counter"]), bulk("100"));

    // Malformed input: a protocol error, the connection closed, the others served.
    let mut bad = Conn::open(port);
    bad.w.write_all(b"*1\r\n$-5\r\n").unwrap();
    assert_eq!(read_reply(&mut bad.r), R::Error("ERR Protocol error: invalid bulk length".into()));
    let mut rest = Vec::new();
    assert_eq!(bad.r.read_to_end(&mut rest).unwrap(), 0, "the connection is closed");
    assert_eq!(c.call(&["GET", "k"]), bulk("w"));

    // redis-cli, when installed (CI installs redis-tools).
    if Command::new("redis-cli").arg("--version").output().is_err() {
        eprintln!("redis-cli is not installed: skipping its part of this test");
        return;
    }
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().unwrap();
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(cli(&["SET", "greeting", "hello"]), "OK\n");
    assert_eq!(cli(&["GET", "greeting"]), "hello\n");
    assert_eq!(cli(&["INCR", "counter"]), "101\n");
    assert_eq!(cli(&["MGET", "greeting", "nope"]), "hello\n\n");
    assert_eq!(cli(&["DEL", "greeting"]), "1\n");
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!("printf 'SET x 1\\nINCR x\\nGET x\\n' | redis-cli -p {port}"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "OK\n2\n2\n");
    // redis-benchmark (also in redis-tools): its start-up questions and the
    // four workloads, plain and pipelined, finish with no error.
    for pipeline in ["1", "16"] {
        let out = Command::new("redis-benchmark")
            .args(["-p", &port.to_string(), "-t", "set,get,incr,mset", "-n", "400", "-c", "4", "-q"])
            .args(["-P", pipeline])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
        assert!(out.status.success(), "redis-benchmark -P {pipeline}: {text}");
        for test in ["SET:", "GET:", "INCR:", "MSET (10 keys):"] {
            assert!(
                text.lines().any(|l| l.starts_with(test) && l.contains("requests per second")),
                "redis-benchmark -P {pipeline} has no {test} result: {text}"
            );
        }
        assert!(!text.contains("ERR"), "redis-benchmark -P {pipeline} saw an error: {text}");
    }
}

/// The leader INFO names, through the listener on `port` (waiting for one).
pub(crate) fn leader_of(port: u16) -> usize {
    let start = Instant::now();
    loop {
        let R::Bulk(Some(info)) = Conn::open(port).call(&["INFO", "replication"]) else { panic!("INFO") };
        let info = String::from_utf8(info).unwrap();
        let leader = info.lines().find_map(|l| l.strip_prefix("synod_leader:")).expect("a synod_leader line");
        if let Ok(n) = leader.parse() {
            return n;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no leader: {info}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pipelined_writes_survive_the_leader_being_killed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut nodes, ports) = cluster(d);
    let leader = leader_of(ports[0]);
    // A listener on a follower without a password (replica 2's has one).
    let follower = [1, 3].into_iter().find(|&n| n != leader).unwrap();
    let mut c = Conn::open(ports[follower - 1]);
    assert_eq!(c.call(&["SET", "before", "kill"]), R::Simple("OK".into()));
    // 200 INCRs in flight, then the leader is killed.
    let incrs: Vec<u8> = (0..200).flat_map(|_| cmd(&["INCR", "n"])).collect();
    c.w.write_all(&incrs).unwrap();
    let mut victim = nodes.0[leader - 1].take().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let mut seen: Vec<i64> = (0..200)
        .map(|_| match read_reply(&mut c.r) {
            R::Int(n) => n,
            other => panic!("an INCR answered {other:?}"),
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=200).collect::<Vec<_>>(), "every INCR applied exactly once");
    assert_eq!(c.call(&["GET", "n"]), bulk("200"));
    assert_eq!(c.call(&["GET", "before"]), bulk("kill"));
    // The killed replica's listener is gone; the other listeners serve.
    assert!(TcpStream::connect(("127.0.0.1", ports[leader - 1])).is_err());
    for n in (1..=3).filter(|&n| n != leader && n != 2) {
        assert_eq!(Conn::open(ports[n - 1]).call(&["GET", "n"]), bulk("200"));
    }
}

#[test]
fn a_resp_listener_off_loopback_is_refused_at_start() {
    let with = |table: &str| format!("{NODE}[resp]\n{table}\n");
    let err = start_with(&with("listen = \"0.0.0.0:6379\"\nclient = \"client.toml\""));
    assert!(err.contains("loopback") && err.contains("TLS"), "{err}");
    let err = start_with(&with("listen = \"localhost\"\nclient = \"client.toml\""));
    assert!(err.contains("resp") && err.contains("ip:port"), "{err}");
    let err = start_with(&with("listen = \"127.0.0.1:6379\""));
    assert!(err.contains("client"), "{err}");
}

#[test]
fn a_tls_listener_takes_redis_cli_with_a_cluster_certificate_and_nothing_else() {
    if Command::new("redis-cli").arg("--version").output().is_err() {
        eprintln!("redis-cli is not installed: skipping this test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let init = |to: &str| {
        assert!(synod(&["certs", "init", "--dir", to, "--nodes", "3", "--clients", "1"], d).status.success());
    };
    init("certs");
    // Certificates of another cluster: a CA this one does not trust.
    init("other");
    let ports: Vec<u16> = (0..3).map(|_| free_udp()).collect();
    let port = free_tcp();
    write_cluster_files(
        d,
        "127.0.0.1",
        &ports,
        |n| match n {
            1 => format!("[resp]\nlisten = \"127.0.0.1:{port}\"\nclient = \"client.toml\"\ntls = true\n"),
            _ => String::new(),
        },
        "",
    );
    let _nodes = Nodes((1..=3).map(|n| Some(start_replica(d, n, std::process::Stdio::null()))).collect());
    let cli = |certs: &str, client_cert: bool, args: &[&str]| {
        let mut c = Command::new("redis-cli");
        c.current_dir(d).args(["--tls", "--cacert", "certs/ca.pem", "-p", &port.to_string()]);
        if client_cert {
            c.args(["--cert", &format!("{certs}/client-1.pem"), "--key", &format!("{certs}/client-1.key")]);
        }
        let out = c.args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Ready when PING answers over TLS (the listener registers its session first).
    let start = Instant::now();
    while cli("certs", true, &["PING"]).1 != "PONG\n" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no PONG over TLS: {:?}",
            cli("certs", true, &["PING"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(cli("certs", true, &["SET", "k", "v"]).1, "OK\n");
    assert_eq!(cli("certs", true, &["GET", "k"]).1, "v\n");
    // A certificate of another CA, or none, gets nothing.
    for (certs, client_cert) in [("other", true), ("certs", false)] {
        let (_, out) = cli(certs, client_cert, &["GET", "k"]);
        assert!(
            out.contains("Server closed the connection"),
            "{certs}, client certificate {client_cert}: {out}"
        );
    }
    // Plain text on the TLS port gets no answer: the handshake fails and the connection closes.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    plain.write_all(b"PING\r\n").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.starts_with(b"+PONG"), "{got:?}");
    // And the listener still serves.
    assert_eq!(cli("certs", true, &["GET", "k"]).1, "v\n");
}
