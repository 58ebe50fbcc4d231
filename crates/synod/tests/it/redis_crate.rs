//! The RESP listener through a Redis client library (the `redis` crate, its
//! blocking API), as an application would use it: every command synod
//! serves, pipelines, AUTH, and the leader killed under it.

use std::time::{Duration, Instant};

use redis::{Commands, Connection, RedisResult};

use super::resp::{cluster, leader_of};

fn connect(url: &str) -> Connection {
    let client = redis::Client::open(url).unwrap();
    let conn = client.get_connection_with_timeout(Duration::from_secs(10)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

/// The message of a command's error.
fn error<T: std::fmt::Debug>(r: RedisResult<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_redis_client_library_runs_every_command_and_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_nodes, [port, port2, _]) = cluster(d);
    let mut c = connect(&url(port));

    // Connection commands.
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
    assert_eq!(redis::cmd("ECHO").arg("hi").query::<String>(&mut c).unwrap(), "hi");
    assert_eq!(redis::cmd("SELECT").arg(0).query::<String>(&mut c).unwrap(), "OK");
    assert!(error(redis::cmd("SELECT").arg(1).query::<String>(&mut c)).contains("DB index"));
    redis::cmd("CLIENT").arg("SETNAME").arg("app").query::<()>(&mut c).unwrap();
    assert_eq!(redis::cmd("CLIENT").arg("GETNAME").query::<String>(&mut c).unwrap(), "app");
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
    assert!(info.contains("role:master") && info.contains("synod_leader:"), "{info}");
    let save: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("appendonly").query(&mut c).unwrap();
    assert_eq!(save, ["appendonly", "yes"]);
    let hello: Vec<redis::Value> = redis::cmd("HELLO").arg(2).query(&mut c).unwrap();
    assert!(!hello.is_empty());
    let _: redis::Value = redis::cmd("COMMAND").arg("DOCS").query(&mut c).unwrap();

    // Strings.
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    assert_eq!(c.get::<_, Option<String>>("absent").unwrap(), None);
    let nx: Option<String> = redis::cmd("SET").arg("k").arg("w").arg("NX").query(&mut c).unwrap();
    assert_eq!(nx, None);
    let old: Option<String> = redis::cmd("SET").arg("k").arg("w").arg("XX").arg("GET").query(&mut c).unwrap();
    assert_eq!(old.as_deref(), Some("v"));
    assert!(c.set_nx::<_, _, bool>("fresh", "1").unwrap());
    assert!(!c.set_nx::<_, _, bool>("fresh", "2").unwrap());
    assert_eq!(c.getset::<_, _, String>("fresh", "3").unwrap(), "1");
    assert_eq!(c.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(c.incr::<_, _, i64>("n", 41).unwrap(), 42);
    assert_eq!(c.decr::<_, _, i64>("n", 2).unwrap(), 40);
    assert_eq!(redis::cmd("DECR").arg("n").query::<i64>(&mut c).unwrap(), 39);
    assert!(error(c.incr::<_, _, i64>("k", 1)).contains("not an integer"));
    assert_eq!(c.append::<_, _, i64>("k", "xyz").unwrap(), 4);
    assert_eq!(c.strlen::<_, i64>("k").unwrap(), 4);
    let _: () = c.mset(&[("a", "1"), ("b", "2")]).unwrap();
    assert_eq!(
        c.mget::<_, Vec<Option<String>>>(&["a", "nope", "b"]).unwrap(),
        [Some("1".into()), None, Some("2".into())]
    );
    assert!(!c.mset_nx::<_, _, bool>(&[("a", "x"), ("c", "3")]).unwrap());
    assert_eq!(c.get::<_, Option<String>>("c").unwrap(), None, "MSETNX sets none when one exists");
    assert!(c.mset_nx::<_, _, bool>(&[("c", "3"), ("d", "4")]).unwrap());
    assert_eq!(c.exists::<_, i64>(&["a", "b", "c", "nope"]).unwrap(), 3);
    assert_eq!(redis::cmd("CAS").arg("a").arg("1").arg("one").query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(redis::cmd("CAS").arg("a").arg("1").arg("uno").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(c.get::<_, String>("a").unwrap(), "one");
    assert_eq!(c.del::<_, i64>(&["a", "b", "nope"]).unwrap(), 2);

    // What synod does not serve is a clear error naming it, never a wrong answer.
    assert!(error(c.lpush::<_, _, i64>("l", "x")).contains("'LPUSH' is not supported by synod"));
    assert!(error(c.set_ex::<_, _, ()>("t", "x", 10)).contains("not supported"));
    assert!(error(redis::pipe().atomic().set("m", "1").query::<()>(&mut c)).contains("MULTI"));

    // A pipeline: proposed together, answered in order, each seeing the ones before it.
    let (ok, n, got, both): (String, i64, String, Vec<Option<String>>) =
        redis::pipe().set("p", "1").incr("n", 1).get("p").mget(&["p", "n"]).query(&mut c).unwrap();
    assert_eq!((ok.as_str(), n, got.as_str()), ("OK", 40, "1"));
    assert_eq!(both, [Some("1".into()), Some("40".into())]);
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.incr("counter", 1).ignore();
        pipe.set(format!("key-{i}"), i).ignore();
    }
    pipe.get("counter");
    assert_eq!(pipe.query::<(i64,)>(&mut c).unwrap(), (500,));
    assert_eq!(c.get::<_, i64>("key-499").unwrap(), 499);

    // AUTH: replica 2's listener has a password.
    let mut locked = connect(&url(port2));
    assert!(error(locked.get::<_, String>("k")).contains("NOAUTH"));
    let mut authed = connect(&format!("redis://:sesame@127.0.0.1:{port2}/"));
    assert_eq!(authed.get::<_, String>("k").unwrap(), "wxyz");
    let wrong = redis::Client::open(format!("redis://:wrong@127.0.0.1:{port2}/")).unwrap().get_connection();
    let why = error(wrong.map(|_| ()));
    assert!(why.contains("authentication failed"), "{why}");
}

#[test]
fn a_redis_client_library_reconnects_elsewhere_when_its_replica_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut nodes, ports) = cluster(d);
    let leader = leader_of(ports[0]);
    // The application talks to the leader's listener (replica 2's needs a password).
    let at = |n: usize| {
        if n == 2 {
            format!("redis://:sesame@127.0.0.1:{}/", ports[1])
        } else {
            url(ports[n - 1])
        }
    };
    let mut c = connect(&at(leader));
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.set(format!("acked-{i}"), i).ignore();
    }
    pipe.incr("n", 100);
    assert_eq!(pipe.query::<(i64,)>(&mut c).unwrap(), (100,));

    let mut victim = nodes.0[leader - 1].take().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    // The connection to the killed replica drops.
    assert!(c.get::<_, Option<String>>("acked-0").is_err());
    // Another replica's listener: every acknowledged write is there, and new ones go through.
    let other = (1..=3).find(|&n| n != leader).unwrap();
    let mut c = connect(&at(other));
    let start = Instant::now();
    let n = loop {
        match c.incr::<_, _, i64>("n", 1) {
            Ok(n) => break n,
            Err(e) => {
                // A write in the election after the kill may time out: the session keeps it at most once.
                assert!(start.elapsed() < Duration::from_secs(30), "no write after the kill: {e}");
                c = connect(&at(other));
            }
        }
    };
    assert_eq!(n, 101);
    let keys: Vec<String> = (0..100).map(|i| format!("acked-{i}")).collect();
    let values: Vec<Option<i64>> = c.mget(&keys).unwrap();
    assert_eq!(values, (0..100).map(Some).collect::<Vec<_>>());
}
