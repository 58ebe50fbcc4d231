//! End-to-end tests of the `synod` binary: configuration errors name their field, certificates are
//! never overwritten by accident, and a cluster of real processes serves the client commands.

use std::path::Path;
use std::process::{Command, Output};

mod cli;
mod member;
mod redis_crate;
mod resp;

/// `synod args` in `dir`, without the environment's `SYNOD_CLIENT` and `SYNOD_LOG_FORMAT`.
fn synod_cmd(args: &[&str], dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_synod"));
    c.args(args).current_dir(dir).env_remove("SYNOD_CLIENT").env_remove("SYNOD_LOG_FORMAT");
    c
}

fn synod(args: &[&str], dir: &Path) -> Output {
    synod_cmd(args, dir).output().expect("synod runs")
}

/// The value of the sample `name` (with its labels, as exported) in a Prometheus text body; 0 if absent.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `node-1.toml` .. `node-3.toml` and `client.toml` in `d` for three
/// replicas on `host` at `ports`, with certificates in `d/certs`; each node
/// file also gets `node_extra(n)`, the client file `client_extra`.
fn write_cluster_files(
    d: &Path,
    host: &str,
    ports: &[u16],
    node_extra: impl Fn(usize) -> String,
    client_extra: &str,
) {
    let peers: String =
        ports.iter().enumerate().map(|(i, port)| format!("{} = \"{host}:{port}\"\n", i + 1)).collect();
    for n in 1..=ports.len() {
        std::fs::write(
            d.join(format!("node-{n}.toml")),
            format!(
                "id = {n}\ndata_dir = \"data-{n}\"\n{}[tls]\nca = \"certs/ca.pem\"\n\
                 cert = \"certs/node-{n}.pem\"\nkey = \"certs/node-{n}.key\"\n[peers]\n{peers}",
                node_extra(n)
            ),
        )
        .unwrap();
    }
    std::fs::write(
        d.join("client.toml"),
        format!(
            "client = 1\n{client_extra}[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/client-1.pem\"\n\
             key = \"certs/client-1.key\"\n[replicas]\n{peers}"
        ),
    )
    .unwrap();
}

/// Starts replica `n` of the files [`write_cluster_files`] wrote in `d`, its stderr to `log`.
fn start_replica(d: &Path, n: usize, log: std::process::Stdio) -> std::process::Child {
    synod_cmd(&["start", "--config", &format!("node-{n}.toml")], d)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

const NODE: &str = r#"
id = 1
data_dir = "data"
[tls]
ca = "certs/ca.pem"
cert = "certs/node-1.pem"
key = "certs/node-1.key"
[peers]
1 = "127.0.0.1:7001"
2 = "127.0.0.1:7002"
3 = "127.0.0.1:7003"
"#;

fn start_with(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("node.toml"), config).unwrap();
    let out = synod(&["start", "--config", "node.toml"], dir.path());
    assert!(!out.status.success(), "a bad configuration must not start");
    stderr(&out)
}

#[test]
fn bad_configuration_files_get_errors_naming_the_field() {
    let err = start_with(&NODE.replace("id = 1", "id = 1\nbogus = 3"));
    assert!(err.contains("bogus"), "{err}");
    let err = start_with(&NODE.replace("id = 1\n", ""));
    assert!(err.contains("id"), "{err}");
    let err = start_with(&NODE.replace("\"127.0.0.1:7002\"", "\"not an address\""));
    assert!(err.contains("peers") || err.contains("address"), "{err}");
    let err = start_with(&NODE.replace("id = 1", "id = 4"));
    assert!(err.contains("no address for this replica's id 4"), "{err}");
    let err = start_with(&NODE.replace("3 = \"127.0.0.1:7003\"\n", ""));
    assert!(err.contains("odd number"), "{err}");
    let err = start_with(&format!("{NODE}\n[timing]\nelection_ticks = [3, 2]\n"));
    assert!(err.contains("timing"), "{err}");
    let err = start_with(&format!("{NODE}\n[transport]\nthreads = 0\n"));
    assert!(err.contains("transport: threads"), "{err}");
    let err = start_with(&format!("{NODE}\n[transport]\nmax_connections_per_client = 0\n"));
    assert!(err.contains("transport: max_connections_per_client"), "{err}");
    // Missing certificate files are named too.
    let err = start_with(NODE);
    assert!(err.contains("certificates"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = stderr(&synod(&["start", "--config", "missing.toml"], dir.path()));
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn certificates_are_made_once_and_never_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let made = synod(&["certs", "init", "--dir", "certs", "--nodes", "3", "--clients", "1"], dir.path());
    assert!(made.status.success(), "{}", stderr(&made));
    let key = dir.path().join("certs/node-2.key");
    let before = std::fs::read(&key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let again = synod(&["certs", "init", "--dir", "certs", "--nodes", "3"], dir.path());
    assert!(!again.status.success(), "existing certificates must not be replaced");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let forced = synod(&["certs", "init", "--dir", "certs", "--nodes", "3", "--force"], dir.path());
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn log_inspect_reports_an_empty_or_missing_directory_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = synod(&["log", "inspect", "nothing-here"], dir.path());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("nothing-here") || text.to_lowercase().contains("no segment"), "{text}");
}

fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn three_processes_serve_clients_and_a_replica_stops_cleanly_on_sigterm_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(synod(&["certs", "init", "--dir", "certs", "--nodes", "3", "--clients", "1"], d)
        .status
        .success());
    let ports: Vec<u16> = (0..3).map(|_| free_udp()).collect();
    let metrics: Vec<u16> = (0..3).map(|_| free_tcp()).collect();
    write_cluster_files(
        d,
        "127.0.0.1",
        &ports,
        |n| format!("metrics = \"127.0.0.1:{}\"\n", metrics[n - 1]),
        "",
    );
    let spawn = |n: usize| start_replica(d, n, std::process::Stdio::null());
    let mut nodes: Vec<_> = (1..=3).map(spawn).collect();
    let put = synod(&["put", "--client", "client.toml", "greeting", "hello"], d);
    assert!(put.status.success(), "{}", stderr(&put));
    // SIGTERM: a clean stop with exit status 0.
    let pid = nodes[2].id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = nodes[2].wait().unwrap();
    assert!(status.success(), "replica 3 exited with {status}");
    let put = synod(&["put", "--client", "client.toml", "while-down", "yes"], d);
    assert!(put.status.success(), "two of three replicas serve: {}", stderr(&put));
    // Restarted, replica 3 recovers from its log and catches up.
    nodes[2] = spawn(3);
    let get = synod(&["get", "--client", "client.toml", "greeting"], d);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");
    let mut caught_up = false;
    for _ in 0..100 {
        let views = replica_views(d);
        let (one, three) = (&views[0], &views[2]);
        if one["reachable"] == true
            && three["reachable"] == true
            && one["applied"] == three["applied"]
            && one["digest"] == three["digest"]
        {
            caught_up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for mut n in nodes {
        let _ = n.kill();
        let _ = n.wait();
    }
    assert!(caught_up, "replica 3 did not catch up with replica 1");
}

/// Each replica's entry of `synod status --json`, in address-book order.
fn replica_views(d: &Path) -> Vec<serde_json::Value> {
    let out = synod(&["status", "--json", "--client", "client.toml"], d);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("status --json: {e}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
    });
    report["replicas"].as_array().expect("a replicas array").clone()
}

/// `GET path` on `port`: the status code and the body (0 and empty if nothing answers).
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let _ = conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    let code = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim().to_owned())
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `what` did not happen in 30 s.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(std::time::Instant::now() < until, "{what} did not happen within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Replica processes, killed when dropped (a failed assertion leaves none behind).
struct Nodes(Vec<Option<std::process::Child>>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for n in self.0.iter_mut().flatten() {
            let _ = n.kill();
            let _ = n.wait();
        }
    }
}

#[test]
fn status_shows_every_replica_over_the_transport_and_health_follows_reachability() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(synod(&["certs", "init", "--dir", "certs", "--nodes", "3", "--clients", "1"], d)
        .status
        .success());
    let ports: Vec<u16> = (0..3).map(|_| free_udp()).collect();
    let metrics: Vec<u16> = (0..3).map(|_| free_tcp()).collect();
    write_cluster_files(
        d,
        "127.0.0.1",
        &ports,
        |n| format!("metrics = \"127.0.0.1:{}\"\n", metrics[n - 1]),
        "request_timeout_ms = 2000\n",
    );
    // Nothing runs yet: every replica is a row saying so, and the command still succeeds.
    let out = synod(&["status", "--client", "client.toml"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(table.matches("unreachable").count(), 3, "{table}");

    let spawn = |n: usize| start_replica(d, n, std::process::Stdio::null());
    let mut nodes = Nodes((1..=3).map(|n| Some(spawn(n))).collect());
    let put = synod(&["put", "--client", "client.toml", "greeting", "hello"], d);
    assert!(put.status.success(), "{}", stderr(&put));

    // All three answer, each hears the other two, one leads and all name it, digests agree.
    let leader = poll("three replicas agreeing on one leader and one digest", || {
        let views = replica_views(d);
        let all_up = views
            .iter()
            .all(|v| v["reachable"] == true && v["peers_reachable"].as_array().is_some_and(|p| p.len() == 2));
        let leaders: Vec<&serde_json::Value> = views.iter().filter(|v| v["role"] == "leader").collect();
        let same = views.windows(2).all(|w| {
            w[0]["leader"] == w[1]["leader"]
                && w[0]["applied"] == w[1]["applied"]
                && w[0]["digest"] == w[1]["digest"]
        });
        let applied = views[0]["applied"].as_u64().unwrap_or(0);
        (all_up && leaders.len() == 1 && same && applied > 0).then(|| leaders[0]["id"].as_u64().unwrap())
    });
    let views = replica_views(d);
    for v in &views {
        assert_eq!(v["leader"], leader, "{v}");
        assert_eq!(v["digest"].as_str().map(str::len), Some(16), "{v}");
        assert!(v["log_bytes"].as_u64().unwrap() > 0, "{v}");
    }
    let out = synod(&["status", "--client", "client.toml"], d);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{table}{}", stderr(&out));
    assert!(table.contains("digests agree at equal applied slots\n"), "{table}");
    assert!(table.contains(&format!("leader: {leader} (every replica that answered agrees)")), "{table}");
    // The client file may also come from the environment.
    let out = synod_cmd(&["status", "--json"], d).env("SYNOD_CLIENT", "client.toml").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Health: every replica reaches its leader; readiness: every one has applied what it knows committed.
    for &port in &metrics {
        poll("a healthy replica", || {
            (http_get(port, "/health") == (200, r#"{"healthy":true}"#.to_owned())).then_some(())
        });
        poll("a ready replica", || (http_get(port, "/readyz").0 == 200).then_some(()));
        let (code, body) = http_get(port, "/metrics");
        assert_eq!(code, 200);
        assert!(body.contains("synod_"), "{body}");
        assert_eq!(http_get(port, "/nothing-here").0, 404);
    }

    // Reads outside the log are counted where they are served (the client sits on the leader).
    for flag in ["--stale", "--through-log"] {
        let out = synod(&["get", "--client", "client.toml", flag, "greeting"], d);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(out.stdout, b"hello");
    }
    let out = synod(&["get", "--client", "client.toml", "greeting"], d);
    assert_eq!(out.stdout, b"hello", "{}", stderr(&out));
    let bodies: Vec<String> = metrics.iter().map(|&port| http_get(port, "/metrics").1).collect();
    let total = |line: &str| -> f64 { bodies.iter().map(|b| sample(b, line)).sum() };
    assert_eq!(total("synod_reads_total{mode=\"linearizable\"}"), 1.0, "{bodies:?}");
    assert_eq!(total("synod_reads_total{mode=\"stale\"}"), 1.0, "{bodies:?}");
    assert_eq!(total("synod_reads_served_total"), 2.0, "{bodies:?}");
    // `--from N` asks replica N, follower or leader: each serves one more linearizable read.
    for n in ["1", "2", "3"] {
        let out = synod(&["get", "--client", "client.toml", "--from", n, "greeting"], d);
        assert_eq!(out.stdout, b"hello", "{}", stderr(&out));
    }
    let after: Vec<String> = metrics.iter().map(|&port| http_get(port, "/metrics").1).collect();
    for (i, (before, after)) in bodies.iter().zip(&after).enumerate() {
        let line = "synod_reads_total{mode=\"linearizable\"}";
        assert_eq!(sample(after, line) - sample(before, line), 1.0, "replica {}: {after}", i + 1);
    }

    // Stop both peers of replica 1: it can reach no leader (or no majority), so it is unhealthy.
    for n in [2, 3] {
        let mut child = nodes.0[n - 1].take().unwrap();
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        child.wait().unwrap();
    }
    let reason = poll("replica 1 turning unhealthy", || {
        let (code, body) = http_get(metrics[0], "/health");
        (code == 503).then_some(body)
    });
    let reason: serde_json::Value = serde_json::from_str(&reason).unwrap();
    assert_eq!(reason["healthy"], false);
    assert!(reason["reason"].as_str().is_some_and(|r| !r.is_empty()), "{reason}");
    // `synod status` still answers: replica 1 a row of its own, the others unreachable rows.
    let views = replica_views(d);
    assert_eq!(views[0]["reachable"], true);
    assert_eq!((views[1]["reachable"].clone(), views[2]["reachable"].clone()), (false.into(), false.into()));
    drop(nodes);
}

#[test]
fn snapshot_inspect_reports_a_good_file_and_refuses_a_damaged_one_naming_it() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut writer = synod_log::SnapshotWriter::create(&data, 1000).unwrap();
    for _ in 0..1000 {
        writer.write_all(b"some state ").unwrap();
    }
    let file = writer.finish().unwrap().path;
    let name = file.display().to_string();
    assert!(name.ends_with("snapshot-00000000000000001000.snap"), "{name}");
    let out = synod(&["snapshot", "inspect", &name], dir.path());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("covers slots below 1000"), "{text}");
    assert!(text.contains("body 11000 bytes"), "{text}");
    assert!(text.contains("checksum ok"), "{text}");
    // One flipped body byte: a checksum mismatch, the file named, a failure.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[500] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    let out = synod(&["snapshot", "inspect", &name], dir.path());
    assert!(!out.status.success(), "a damaged snapshot must fail");
    let err = stderr(&out);
    assert!(err.contains(&format!("snapshot {name} is damaged: checksum mismatch (stored 0x")), "{err}");
    // A damaged header: no report at all, the same kind of error.
    bytes[0] = b'X';
    std::fs::write(&file, &bytes).unwrap();
    let out = synod(&["snapshot", "inspect", &name], dir.path());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("snapshot {name} is damaged: bad magic bytes")), "{err}");
    let out = synod(&["snapshot", "inspect", "missing.snap"], dir.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.snap"), "{}", stderr(&out));
}
