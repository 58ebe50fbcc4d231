//! End-to-end tests of the `synod` binary: configuration errors name their field, certificates are
//! never overwritten by accident, and a cluster of real processes serves the client commands.

use std::path::Path;
use std::process::{Command, Output};

fn synod(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synod")).args(args).current_dir(dir).output().expect("synod runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
    let peers: String = (0..3).map(|i| format!("{} = \"127.0.0.1:{}\"\n", i + 1, ports[i])).collect();
    for (i, metrics_port) in metrics.iter().enumerate() {
        let n = i + 1;
        std::fs::write(
            d.join(format!("node-{n}.toml")),
            format!(
                "id = {n}\ndata_dir = \"data-{n}\"\nmetrics = \"127.0.0.1:{}\"\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node-{n}.pem\"\nkey = \"certs/node-{n}.key\"\n[peers]\n{peers}",
                metrics_port
            ),
        )
        .unwrap();
    }
    std::fs::write(
        d.join("client.toml"),
        format!("client = 1\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/client-1.pem\"\nkey = \"certs/client-1.key\"\n[replicas]\n{peers}"),
    )
    .unwrap();
    let spawn = |n: usize| {
        Command::new(env!("CARGO_BIN_EXE_synod"))
            .args(["start", "--config", &format!("node-{n}.toml")])
            .current_dir(d)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
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
        let out = synod(&["status", "--json", "--config", "node-1.toml", "--config", "node-3.toml"], d);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |line: &str, name: &str| -> Option<String> {
            let rest = line.split(&format!("\"{name}\":")).nth(1)?;
            Some(rest.split(',').next()?.to_owned())
        };
        let applied: Vec<String> = text.lines().filter_map(|l| field(l, "applied")).collect();
        let digests: Vec<String> = text.lines().filter_map(|l| field(l, "digest")).collect();
        if applied.len() == 2 && applied[0] == applied[1] && digests[0] == digests[1] {
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
