//! `synod member`: a replica joins a running cluster as a learner, is
//! promoted, an original member is removed and stops, and the cluster goes
//! on; bad changes are refused with the reason.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{free_udp, poll, start_replica, stderr, synod, write_cluster_files, Nodes};

/// `synod member ARGS --client client.toml` in `d`.
fn member(d: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["member"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--client", "client.toml"]);
    synod(&all, d)
}

/// `synod member list --json`, or `None` if no replica answered.
fn list(d: &Path) -> Option<serde_json::Value> {
    let out = member(d, &["list", "--json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn put(d: &Path, client: &str, key: &str, value: &str) {
    let out = synod(&["put", "--client", client, key, value], d);
    assert!(out.status.success(), "put {key}: {}", stderr(&out));
}

/// Waits up to 90 s for `child` (a removed replica) to exit, and returns how it did.
fn await_exit(mut child: std::process::Child, what: &str) -> std::process::ExitStatus {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < until, "{what} did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each replica's entry of `synod status --json` with the client file `client`.
fn views(d: &Path, client: &str) -> Vec<serde_json::Value> {
    let out = synod(&["status", "--json", "--client", client], d);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("status --json: {e}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
    });
    report["replicas"].as_array().expect("a replicas array").clone()
}

#[test]
fn a_replica_joins_as_a_learner_is_promoted_and_an_original_member_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(synod(&["certs", "init", "--dir", "certs", "--nodes", "3", "--clients", "1"], d)
        .status
        .success());
    let mut ports: Vec<u16> = (0..3).map(|_| free_udp()).collect();
    write_cluster_files(d, "127.0.0.1", &ports, |_| String::new(), "");
    let log = |n: usize| std::fs::File::create(d.join(format!("node-{n}.log"))).unwrap().into();
    let mut nodes = Nodes((1..=3).map(|n| Some(start_replica(d, n, log(n)))).collect());
    for i in 0..20 {
        put(d, "client.toml", &format!("before-{i}"), "x");
    }

    // Replica 4: a certificate from `certs add`, `join = true`, an empty data directory.
    assert!(synod(&["certs", "add", "--dir", "certs", "--node", "4"], d).status.success());
    ports.push(free_udp());
    let addr4 = format!("127.0.0.1:{}", ports[3]);
    let peers: String =
        ports.iter().enumerate().map(|(i, p)| format!("{} = \"127.0.0.1:{p}\"\n", i + 1)).collect();
    std::fs::write(
        d.join("node-4.toml"),
        format!(
            "id = 4\njoin = true\ndata_dir = \"data-4\"\n[tls]\nca = \"certs/ca.pem\"\n\
             cert = \"certs/node-4.pem\"\nkey = \"certs/node-4.key\"\n[peers]\n{peers}"
        ),
    )
    .unwrap();
    nodes.0.push(Some(start_replica(d, 4, log(4))));

    // Bad changes are refused with the reason, and change nothing.
    let out = member(d, &["add", "--id", "2", "--addr", &addr4]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("replica n2 is already a member"), "{}", stderr(&out));
    let out = member(d, &["remove", "9"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("replica n9 is not a member"), "{}", stderr(&out));
    let out = member(d, &["add", "--id", "5", "--addr", "nosuch.invalid:7005"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot resolve"), "{}", stderr(&out));
    let view = list(d).expect("member list answers");
    assert_eq!(view["epoch"], 0);
    assert_eq!(view["members"].as_array().unwrap().len(), 3);
    assert_eq!(view["members"][1]["addr"], format!("127.0.0.1:{}", ports[1]), "configuration 0's addresses");

    // Add replica 4 as a learner; it catches up from the members.
    let out = member(d, &["add", "--id", "4", "--addr", &addr4, "--learner"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("epoch 1") && text.contains("learner"), "{text}");
    for i in 0..10 {
        put(d, "client.toml", &format!("learning-{i}"), "y");
    }
    poll("replica 4 caught up as a learner", || {
        let view = list(d)?;
        let members = view["members"].as_array()?;
        let leader = view["leader"].as_u64()?;
        let at = |id: u64| members.iter().find(|m| m["id"] == id).and_then(|m| m["caught_up"].as_u64());
        let four = members.iter().find(|m| m["id"] == 4)?;
        (four["role"] == "learner" && at(4)? > 0 && at(4)? >= at(leader)?).then_some(())
    });

    // Promote it, then remove replica 1.
    let out = member(d, &["promote", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("epoch 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = member(d, &["promote", "4"]);
    assert!(!out.status.success() && stderr(&out).contains("already a voter"), "{}", stderr(&out));
    let out = member(d, &["remove", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("epoch 3"), "{text}");

    // Replica 1 says it was removed and exits cleanly.
    let status = await_exit(nodes.0[0].take().unwrap(), "replica 1, removed,");
    assert!(status.success(), "replica 1 exited with {status}");
    let log1 = std::fs::read_to_string(d.join("node-1.log")).unwrap();
    assert!(log1.contains("removed from the cluster in configuration 3; stopping"), "{log1}");

    // Writes go on, through a client file that still names replica 1 first.
    for i in 0..10 {
        put(d, "client.toml", &format!("after-{i}"), "z");
    }
    let got = synod(&["get", "--client", "client.toml", "before-3"], d);
    assert_eq!(got.stdout, b"x", "{}", stderr(&got));

    // Replicas 2, 3 and 4 agree: the same configuration, applied slot and digest.
    let client2: String = std::fs::read_to_string(d.join("client.toml"))
        .unwrap()
        .replace(&format!("1 = \"127.0.0.1:{}\"\n", ports[0]), &format!("4 = \"{addr4}\"\n"));
    std::fs::write(d.join("client-234.toml"), client2).unwrap();
    poll("replicas 2, 3 and 4 agree", || {
        let v = views(d, "client-234.toml");
        let all = v.iter().all(|r| {
            r["reachable"] == true
                && r["epoch"] == 3
                && r["applied"] == v[0]["applied"]
                && r["digest"] == v[0]["digest"]
        });
        (all && v.len() == 3).then_some(())
    });
    let view = list(d).expect("member list answers");
    let ids: Vec<u64> =
        view["members"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [2, 3, 4]);
    assert!(view["members"].as_array().unwrap().iter().all(|m| m["role"] == "voter"));

    // Replica 4 is killed, started again at once, and removed as it comes back (chaos seed
    // 2607 lost such a replica: its peers dropped it when its old link timed out). Once a link
    // tells it of the change, it says it was removed and exits.
    let mut four = nodes.0[3].take().unwrap();
    four.kill().unwrap();
    four.wait().unwrap();
    let append = std::fs::OpenOptions::new().append(true).open(d.join("node-4.log")).unwrap();
    nodes.0[3] = Some(start_replica(d, 4, append.into()));
    let out = member(d, &["remove", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("epoch 4"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = await_exit(nodes.0[3].take().unwrap(), "replica 4, restarted as it was removed,");
    assert!(status.success(), "replica 4 exited with {status}");
    let log4 = std::fs::read_to_string(d.join("node-4.log")).unwrap();
    assert!(log4.contains("removed from the cluster in configuration 4; stopping"), "{log4}");
    put(d, "client.toml", "after-4", "w");
}
