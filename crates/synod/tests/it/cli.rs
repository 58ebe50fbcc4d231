//! The client commands and certificate tooling end to end: `--hex`, stdin
//! values, exact bytes out, `-w json`, `SYNOD_CLIENT`, host names in the
//! configuration files, `certs add`, and JSON logs.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Output, Stdio};

use super::{free_udp, start_replica, stderr, synod, synod_cmd, write_cluster_files};

/// Runs synod with `input` on stdin.
fn synod_stdin(args: &[&str], dir: &Path, input: &[u8]) -> Output {
    let mut child = synod_cmd(args, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("synod runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not one JSON object ({e}): {:?}", o.stdout))
}

#[test]
fn a_non_hex_argument_is_refused_before_anything_is_read_or_sent() {
    let dir = tempfile::tempdir().unwrap();
    // The client file does not exist: the refusal comes first.
    for args in [
        &["get", "--hex", "--client", "absent.toml", "zz"][..],
        &["put", "--hex", "--client", "absent.toml", "00", "0g"],
        &["cas", "--hex", "--client", "absent.toml", "00", "--expected", "xyz", "01"],
        &["del", "--hex", "--client", "absent.toml", "abc"],
    ] {
        let out = synod(args, dir.path());
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("is not hex") && !err.contains("absent.toml"), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    let out = synod_stdin(&["put", "--hex", "--client", "absent.toml", "00", "-"], dir.path(), b"not hex\n");
    assert!(stderr(&out).contains("the value on stdin is not hex"), "{}", stderr(&out));
}

#[test]
fn get_takes_one_read_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = synod(&["get", "--client", "absent.toml", "--stale", "--through-log", "k"], dir.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

#[test]
fn the_client_file_comes_from_the_flag_or_synod_client() {
    let dir = tempfile::tempdir().unwrap();
    let out = synod(&["get", "k"], dir.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--client"), "{}", stderr(&out));
    let out = synod_cmd(&["get", "k"], dir.path()).env("SYNOD_CLIENT", "from-env.toml").output().unwrap();
    assert!(stderr(&out).contains("cannot read from-env.toml"), "{}", stderr(&out));
}

#[test]
fn an_unresolvable_host_is_named_with_its_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("node.toml"),
        "id = 1\ndata_dir = \"data\"\n[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n.key\"\n\
         [peers]\n1 = \"localhost:7001\"\n2 = \"nosuch.invalid:7000\"\n3 = \"127.0.0.1:7003\"\n",
    )
    .unwrap();
    let err = stderr(&synod(&["start", "--config", "node.toml"], d));
    assert!(
        err.contains("node.toml: peers.2 = \"nosuch.invalid:7000\": cannot resolve host \"nosuch.invalid\""),
        "{err}"
    );
    std::fs::write(
        d.join("client.toml"),
        "client = 1\n[tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n[replicas]\n1 = \"nosuch.invalid:1\"\n",
    )
    .unwrap();
    let err = stderr(&synod(&["get", "--client", "client.toml", "k"], d));
    assert!(err.contains("client.toml: replicas.1 = \"nosuch.invalid:1\": cannot resolve host"), "{err}");
}

#[test]
fn a_bad_log_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        synod_cmd(&["log", "inspect", "x"], dir.path()).env("SYNOD_LOG_FORMAT", "yaml").output().unwrap();
    assert!(stderr(&out).contains("SYNOD_LOG_FORMAT: \"yaml\" is not a log format"), "{}", stderr(&out));
}

#[test]
fn certs_init_and_add_list_what_they_wrote_and_add_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out =
        synod(&["certs", "init", "--dir", "certs", "--nodes", "1", "--clients", "1", "--days", "30"], d);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.lines().next().unwrap().starts_with("certs/ca.pem "), "{text}");
    assert!(text.contains("CA certificate") && text.contains("copy to every node and client"), "{text}");
    let out = synod(&["certs", "add", "--dir", "certs", "--node", "2"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("certs/node-2.pem ") && text.contains("replica 2 certificate"), "{text}");
    let again = synod(&["certs", "add", "--dir", "certs", "--node", "2"], d);
    assert!(!again.status.success() && stderr(&again).contains("--force"), "{}", stderr(&again));
    assert!(synod(&["certs", "add", "--dir", "certs", "--node", "2", "--force"], d).status.success());
    let neither = synod(&["certs", "add", "--dir", "certs"], d);
    assert!(!neither.status.success());
}

/// A three-replica cluster addressed as `localhost:PORT`, replica 3's certificate made by `certs add`.
struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Child>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(synod(&["certs", "init", "--dir", "certs", "--nodes", "2", "--clients", "1"], d)
            .status
            .success());
        assert!(synod(&["certs", "add", "--dir", "certs", "--node", "3"], d).status.success());
        let ports: Vec<u16> = (0..3).map(|_| free_udp()).collect();
        write_cluster_files(d, "localhost", &ports, |_| "log_format = \"json\"\n".to_owned(), "");
        let nodes = (1..=3)
            .map(|n| {
                start_replica(d, n, std::fs::File::create(d.join(format!("node-{n}.log"))).unwrap().into())
            })
            .collect();
        Cluster { dir, nodes }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

#[test]
fn client_commands_keep_bytes_exact_in_text_hex_and_json() {
    let cluster = Cluster::start();
    let d = cluster.path();
    // The value comes from stdin, every byte of it (not UTF-8, with newlines).
    let value: &[u8] = b"line one\n\xff\xfe\x00binary\n";
    let out = synod_stdin(&["put", "--client", "client.toml", "blob", "-"], d, value);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"OK\n");
    // SYNOD_CLIENT stands in for --client; stdout is a pipe, so no newline is added.
    let out = synod_cmd(&["get", "blob"], d).env("SYNOD_CLIENT", "client.toml").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, value);
    // --hex both ways.
    let out = synod(&["get", "--client", "client.toml", "--hex", "626c6f62"], d);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "6c696e65206f6e650afffe0062696e6172790a\n");
    let out = synod(&["put", "--client", "client.toml", "--hex", "00ff", "CAFE"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = synod(&["get", "--client", "client.toml", "--hex", "00ff"], d);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "cafe\n");
    // -w json: strings when UTF-8, and hex always.
    let v = json(&synod(&["get", "--client", "client.toml", "-w", "json", "blob"], d));
    assert_eq!(v["op"], "get");
    assert_eq!(v["key"], "blob");
    assert_eq!(v["found"], true);
    assert_eq!(v["value"], serde_json::Value::Null);
    assert_eq!(v["value_hex"], "6c696e65206f6e650afffe0062696e6172790a");
    let v = json(&synod(&["put", "--client", "client.toml", "--write-out", "json", "greeting", "héllo"], d));
    assert_eq!((v["op"].as_str(), v["ok"].as_bool()), (Some("put"), Some(true)));
    let v = json(&synod(
        &["cas", "--client", "client.toml", "-w", "json", "greeting", "--expected", "héllo", "hi"],
        d,
    ));
    assert_eq!((v["swapped"].as_bool(), v["previous"].as_str()), (Some(true), Some("héllo")));
    let v = json(&synod(&["get", "--client", "client.toml", "-w", "json", "nothing"], d));
    assert_eq!((v["found"].as_bool(), &v["value"]), (Some(false), &serde_json::Value::Null));
    // Every read mode reads the same bytes; JSON names the mode.
    assert_eq!(v["read"], "linearizable");
    for (flag, mode) in [("--stale", "stale"), ("--through-log", "log")] {
        let out = synod(&["get", "--client", "client.toml", flag, "blob"], d);
        assert!(out.status.success(), "{flag}: {}", stderr(&out));
        assert_eq!(out.stdout, value, "{flag}");
        let v = json(&synod(&["get", "--client", "client.toml", flag, "-w", "json", "blob"], d));
        assert_eq!((v["read"].as_str(), v["found"].as_bool()), (Some(mode), Some(true)), "{flag}");
    }
    // An absent key: nothing on stdout.
    let out = synod(&["get", "--client", "client.toml", "nothing"], d);
    assert!(out.status.success() && out.stdout.is_empty(), "{}", stderr(&out));
    // cas and del show values without loss in text.
    let out =
        synod_stdin(&["cas", "--client", "client.toml", "greeting", "--expected", "hi", "-"], d, b"\xff");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "swapped (was \"hi\")\n");
    let out = synod(&["del", "--client", "client.toml", "greeting"], d);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deleted (was hex:ff)\n");
    let v = json(&synod(&["del", "--client", "client.toml", "-w", "json", "greeting"], d));
    assert_eq!(v["found"], false);
    // Replica 3's certificate came from `certs add`, and log_format = "json" gave JSON lines.
    let log = std::fs::read_to_string(d.join("node-3.log")).unwrap();
    let first = log.lines().next().expect("replica 3 logged");
    let line: serde_json::Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(line["level"].is_string() && line["fields"].is_object(), "{first}");
}
