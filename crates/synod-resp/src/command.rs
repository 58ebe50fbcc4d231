//! From Redis commands to the key-value store's commands, and from its
//! answers back to Redis's replies.

use synod_wire::{KvCommand, KvPair, KvResponse, SetCondition};

use crate::Reply;

/// What one connection remembers between commands.
#[derive(Debug, Default, Clone)]
pub struct ConnState {
    /// AUTH succeeded (or no password is configured).
    pub authenticated: bool,
    /// CLIENT SETNAME's name.
    pub name: Option<Vec<u8>>,
    /// A number for CLIENT ID and HELLO.
    pub id: u64,
}

/// What to do for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer at once, on this replica.
    Reply(Reply),
    /// Answer `+OK` and close the connection (QUIT).
    Quit,
    /// INFO: the server fills in the sections (`None`: the default ones).
    Info(Option<String>),
    /// A command of the key-value store, answered as `shape` says.
    Kv {
        /// The command.
        command: KvCommand,
        /// It only reads: served outside the log (unless earlier writes of
        /// the connection are still in flight).
        read: bool,
        /// How its answer becomes a Redis reply.
        shape: Shape,
    },
}

/// How a [`KvResponse`] becomes a Redis reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `+OK`.
    Ok,
    /// A bulk string or nil (GET, GETDEL).
    Bulk,
    /// An array of bulk strings (MGET).
    Bulks,
    /// An integer (EXISTS, DEL, INCR, APPEND, STRLEN, MSETNX).
    Integer,
    /// SET without GET: `+OK` if stored, nil if the condition failed.
    SetOk,
    /// SET ... GET, GETSET: the previous value.
    SetPrevious,
    /// SETNX: 1 if stored, else 0.
    SetFlag,
    /// CAS: 1 if swapped, else 0.
    CasFlag,
}

/// Redis's version as synod reports it (what clients gate features on).
pub const REDIS_VERSION: &str = "7.0.0";

fn wrong_args(name: &str) -> Action {
    Action::Reply(Reply::error(format!("ERR wrong number of arguments for '{name}' command")))
}

fn error(text: &str) -> Action {
    Action::Reply(Reply::error(text))
}

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

fn integer(arg: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(arg).ok()?;
    if s.starts_with('+') || s.trim() != s || (s.len() > 1 && s.starts_with('0')) || s.starts_with("-0") {
        return None;
    }
    s.parse().ok()
}

fn kv(command: KvCommand, shape: Shape) -> Action {
    Action::Kv { command, read: false, shape }
}

fn read(command: KvCommand, shape: Shape) -> Action {
    Action::Kv { command, read: true, shape }
}

/// Commands Redis has that synod does not serve: answered `-ERR '<NAME>' is
/// not supported by synod`, never with a wrong result.
const UNSUPPORTED: &[&str] = &[
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "ttl",
    "pttl",
    "persist",
    "setex",
    "psetex",
    "getex",
    "expiretime",
    "pexpiretime",
    "incrbyfloat",
    "setrange",
    "getrange",
    "substr",
    "lcs",
    "keys",
    "scan",
    "randomkey",
    "rename",
    "renamenx",
    "type",
    "dbsize",
    "flushdb",
    "flushall",
    "copy",
    "move",
    "dump",
    "restore",
    "object",
    "touch",
    "unlink",
    "sort",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "publish",
    "pubsub",
    "ssubscribe",
    "eval",
    "evalsha",
    "script",
    "function",
    "fcall",
    "save",
    "bgsave",
    "bgrewriteaof",
    "lastsave",
    "shutdown",
    "replicaof",
    "slaveof",
    "monitor",
    "debug",
    "wait",
    "swapdb",
    "migrate",
    "cluster",
    "readonly",
    "readwrite",
    "acl",
    "latency",
    "memory",
    "module",
    "slowlog",
    "lpush",
    "rpush",
    "lpop",
    "rpop",
    "lrange",
    "llen",
    "lindex",
    "lset",
    "lrem",
    "ltrim",
    "linsert",
    "lpos",
    "lmove",
    "blpop",
    "brpop",
    "rpoplpush",
    "hset",
    "hget",
    "hmset",
    "hmget",
    "hgetall",
    "hdel",
    "hexists",
    "hincrby",
    "hkeys",
    "hvals",
    "hlen",
    "hsetnx",
    "hscan",
    "sadd",
    "srem",
    "smembers",
    "sismember",
    "scard",
    "spop",
    "srandmember",
    "sinter",
    "sunion",
    "sdiff",
    "sscan",
    "smove",
    "zadd",
    "zrem",
    "zrange",
    "zscore",
    "zcard",
    "zincrby",
    "zrank",
    "zrangebyscore",
    "zpopmin",
    "zpopmax",
    "zscan",
    "pfadd",
    "pfcount",
    "pfmerge",
    "xadd",
    "xread",
    "xrange",
    "xlen",
    "geoadd",
    "setbit",
    "getbit",
    "bitcount",
    "bitop",
    "bitpos",
    "bitfield",
];

/// Decides what to do for the command `args` (its name first) on a
/// connection in state `conn`, on a server with `password` (if any).
pub fn plan(args: &[Vec<u8>], conn: &mut ConnState, password: Option<&str>) -> Action {
    let Some((name, rest)) = args.split_first() else {
        return Action::Reply(Reply::error("ERR empty command"));
    };
    let lower = String::from_utf8_lossy(name).to_lowercase();
    let n = rest.len();
    if password.is_some() && !conn.authenticated && !matches!(lower.as_str(), "auth" | "hello" | "quit") {
        return error("NOAUTH Authentication required.");
    }
    let key = |i: usize| rest[i].clone();
    match lower.as_str() {
        "ping" => match n {
            0 => Action::Reply(Reply::Simple("PONG".to_owned())),
            1 => Action::Reply(Reply::bulk(key(0))),
            _ => wrong_args("ping"),
        },
        "echo" if n == 1 => Action::Reply(Reply::bulk(key(0))),
        "quit" => Action::Quit,
        "auth" => match n {
            1 | 2 => auth(conn, password, if n == 2 { Some(&rest[0]) } else { None }, &rest[n - 1]),
            _ => wrong_args("auth"),
        },
        "hello" => hello(rest, conn, password),
        "select" if n == 1 => match integer(&rest[0]) {
            Some(0) => Action::Reply(Reply::ok()),
            Some(_) => error("ERR DB index is out of range"),
            None => error(NOT_AN_INTEGER),
        },
        "client" if n >= 1 => client(rest, conn),
        "command" => match rest.first().map(|s| String::from_utf8_lossy(s).to_lowercase()).as_deref() {
            // Enough for redis-cli: no command table, so no hints.
            None | Some("docs") | Some("info") | Some("list") => Action::Reply(Reply::Array(Some(vec![]))),
            Some("count") => Action::Reply(Reply::Integer(0)),
            Some(_) => error("ERR unknown subcommand of 'command' not supported by synod"),
        },
        "info" if n <= 1 => Action::Info(rest.first().map(|s| String::from_utf8_lossy(s).to_lowercase())),
        "config" if n >= 1 => config(rest),
        "get" if n == 1 => read(KvCommand::Get { key: key(0) }, Shape::Bulk),
        "getdel" if n == 1 => kv(KvCommand::Delete { key: key(0) }, Shape::Bulk),
        "set" if n >= 2 => set(rest),
        "setnx" if n == 2 => kv(
            KvCommand::Set { key: key(0), value: key(1), condition: SetCondition::IfAbsent },
            Shape::SetFlag,
        ),
        "getset" if n == 2 => kv(
            KvCommand::Set { key: key(0), value: key(1), condition: SetCondition::Always },
            Shape::SetPrevious,
        ),
        "del" if n >= 1 => kv(KvCommand::DeleteMany { keys: rest.to_vec() }, Shape::Integer),
        "exists" if n >= 1 => read(KvCommand::Exists { keys: rest.to_vec() }, Shape::Integer),
        "mget" if n >= 1 => read(KvCommand::MultiGet { keys: rest.to_vec() }, Shape::Bulks),
        "mset" | "msetnx" if n >= 2 && n % 2 == 0 => {
            let pairs = rest.chunks(2).map(|p| KvPair { key: p[0].clone(), value: p[1].clone() }).collect();
            if lower == "mset" {
                kv(KvCommand::MultiPut { pairs }, Shape::Ok)
            } else {
                kv(KvCommand::MultiPutIfAbsent { pairs }, Shape::Integer)
            }
        }
        "incr" if n == 1 => kv(KvCommand::Incr { key: key(0), by: 1 }, Shape::Integer),
        "decr" if n == 1 => kv(KvCommand::Incr { key: key(0), by: -1 }, Shape::Integer),
        "incrby" | "decrby" if n == 2 => match integer(&rest[1]) {
            None => error(NOT_AN_INTEGER),
            Some(by) if lower == "incrby" => kv(KvCommand::Incr { key: key(0), by }, Shape::Integer),
            Some(i64::MIN) => error("ERR decrement would overflow"),
            Some(by) => kv(KvCommand::Incr { key: key(0), by: -by }, Shape::Integer),
        },
        "append" if n == 2 => kv(KvCommand::Append { key: key(0), value: key(1) }, Shape::Integer),
        "strlen" if n == 1 => read(KvCommand::Strlen { key: key(0) }, Shape::Integer),
        "cas" if n == 3 => {
            kv(KvCommand::Cas { key: key(0), expected: Some(key(1)), new: Some(key(2)) }, Shape::CasFlag)
        }
        "echo" | "select" | "client" | "info" | "config" | "get" | "getdel" | "set" | "setnx" | "getset"
        | "del" | "exists" | "mget" | "mset" | "msetnx" | "incr" | "decr" | "incrby" | "decrby"
        | "append" | "strlen" | "cas" => wrong_args(&lower),
        other if UNSUPPORTED.contains(&other) => {
            error(&format!("ERR '{}' is not supported by synod", other.to_uppercase()))
        }
        _ => {
            let mut text = format!(
                "ERR unknown command '{}', with args beginning with: ",
                String::from_utf8_lossy(name)
            );
            for a in rest.iter().take(16) {
                text.push_str(&format!("'{}' ", String::from_utf8_lossy(a)));
            }
            error(&text)
        }
    }
}

fn auth(conn: &mut ConnState, password: Option<&str>, user: Option<&Vec<u8>>, given: &[u8]) -> Action {
    let Some(password) = password else {
        return error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    };
    if user.is_none_or(|u| u == b"default") && given == password.as_bytes() {
        conn.authenticated = true;
        Action::Reply(Reply::ok())
    } else {
        error("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only.
fn hello(rest: &[Vec<u8>], conn: &mut ConnState, password: Option<&str>) -> Action {
    if let Some(version) = rest.first() {
        match integer(version) {
            Some(2) => {}
            Some(_) => return error("NOPROTO sorry, this protocol version is not supported."),
            None => return error("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut i = 1;
    let mut name = None;
    while i < rest.len() {
        let option = String::from_utf8_lossy(&rest[i]).to_lowercase();
        match option.as_str() {
            "auth" if i + 2 < rest.len() => {
                if let Action::Reply(Reply::Error(e)) = auth(conn, password, Some(&rest[i + 1]), &rest[i + 2])
                {
                    return error(&e);
                }
                i += 3;
            }
            "setname" if i + 1 < rest.len() => {
                name = Some(rest[i + 1].clone());
                i += 2;
            }
            _ => return error(&format!("ERR Syntax error in HELLO option '{option}'")),
        }
    }
    if password.is_some() && !conn.authenticated {
        return error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if name.is_some() {
        conn.name = name;
    }
    let field = |k: &str, v: Reply| [Reply::bulk(k), v];
    let fields = [
        field("server", Reply::bulk("redis")),
        field("version", Reply::bulk(REDIS_VERSION)),
        field("proto", Reply::Integer(2)),
        field("id", Reply::Integer(conn.id as i64)),
        field("mode", Reply::bulk("standalone")),
        field("role", Reply::bulk("master")),
        field("modules", Reply::Array(Some(vec![]))),
    ];
    Action::Reply(Reply::Array(Some(fields.into_iter().flatten().collect())))
}

fn client(rest: &[Vec<u8>], conn: &mut ConnState) -> Action {
    let sub = String::from_utf8_lossy(&rest[0]).to_lowercase();
    match (sub.as_str(), rest.len()) {
        ("setname", 2) => {
            if rest[1].iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                return error("ERR Client names cannot contain spaces, newlines or special characters.");
            }
            conn.name = if rest[1].is_empty() { None } else { Some(rest[1].clone()) };
            Action::Reply(Reply::ok())
        }
        ("getname", 1) => Action::Reply(Reply::Bulk(conn.name.clone())),
        ("id", 1) => Action::Reply(Reply::Integer(conn.id as i64)),
        // Client libraries announce themselves; nothing to keep.
        ("setinfo", 3) => Action::Reply(Reply::ok()),
        ("setname" | "getname" | "id" | "setinfo", _) => wrong_args(&format!("client|{sub}")),
        _ => error(&format!(
            "ERR unknown subcommand '{sub}'. synod supports CLIENT SETNAME, GETNAME, ID and SETINFO."
        )),
    }
}

/// CONFIG GET: the parameters redis-benchmark asks for at start; nothing else.
fn config(rest: &[Vec<u8>]) -> Action {
    let sub = String::from_utf8_lossy(&rest[0]).to_lowercase();
    if sub != "get" {
        return error(&format!("ERR CONFIG {} is not supported by synod", sub.to_uppercase()));
    }
    if rest.len() < 2 {
        return wrong_args("config|get");
    }
    // Every write is fsynced on a majority before it is acknowledged: no
    // RDB snapshots on a timer, and an always-synced log.
    let known = [("save", ""), ("appendonly", "yes"), ("appendfsync", "always"), ("databases", "1")];
    let mut out = Vec::new();
    for (k, v) in known {
        if rest[1..].iter().any(|p| glob(&String::from_utf8_lossy(p).to_lowercase(), k)) {
            out.push(Reply::bulk(k));
            out.push(Reply::bulk(v));
        }
    }
    Action::Reply(Reply::Array(Some(out)))
}

/// Redis's glob, reduced to `*` and `?`.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// SET key value [NX|XX] [GET]; TTL options are refused.
fn set(rest: &[Vec<u8>]) -> Action {
    let (mut condition, mut get) = (SetCondition::Always, false);
    for option in &rest[2..] {
        match String::from_utf8_lossy(option).to_lowercase().as_str() {
            "nx" if condition == SetCondition::Always => condition = SetCondition::IfAbsent,
            "xx" if condition == SetCondition::Always => condition = SetCondition::IfPresent,
            "get" if !get => get = true,
            "ex" | "px" | "exat" | "pxat" | "keepttl" => {
                return error(
                    "ERR SET with a TTL option (EX, PX, EXAT, PXAT, KEEPTTL) is not supported by synod",
                );
            }
            _ => return error("ERR syntax error"),
        }
    }
    let command = KvCommand::Set { key: rest[0].clone(), value: rest[1].clone(), condition };
    kv(command, if get { Shape::SetPrevious } else { Shape::SetOk })
}

/// The Redis reply to the store's `response`, as `shape` says.
pub fn answer(shape: Shape, response: KvResponse) -> Reply {
    match (shape, response) {
        (_, KvResponse::Failed(f)) => Reply::error(f.redis_message()),
        (_, KvResponse::Invalid(why)) => Reply::error(format!("ERR synod refused the command: {why}")),
        (Shape::Ok, KvResponse::Stored) => Reply::ok(),
        (Shape::Bulk, KvResponse::Value(v)) => Reply::Bulk(v),
        (Shape::Bulks, KvResponse::Values(vs)) => {
            Reply::Array(Some(vs.into_iter().map(Reply::Bulk).collect()))
        }
        (Shape::Integer, KvResponse::Integer(n)) => Reply::Integer(n),
        (Shape::SetOk, KvResponse::Set { stored, .. }) => {
            if stored {
                Reply::ok()
            } else {
                Reply::Bulk(None)
            }
        }
        (Shape::SetPrevious, KvResponse::Set { previous, .. }) => Reply::Bulk(previous),
        (Shape::SetFlag, KvResponse::Set { stored, .. }) => Reply::Integer(i64::from(stored)),
        (Shape::CasFlag, KvResponse::Cas { swapped, .. }) => Reply::Integer(i64::from(swapped)),
        (shape, other) => Reply::error(format!("ERR synod: unexpected answer {other:?} for {shape:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::split_args;
    use synod_kv::KvStore;

    /// Runs an inline command line against a local store, as the server would.
    fn run(kv: &mut KvStore, conn: &mut ConnState, line: &str) -> Reply {
        run_with(kv, conn, line, None)
    }

    fn run_with(kv: &mut KvStore, conn: &mut ConnState, line: &str, password: Option<&str>) -> Reply {
        let args = split_args(line.as_bytes()).unwrap();
        match plan(&args, conn, password) {
            Action::Reply(r) => r,
            Action::Quit => Reply::ok(),
            Action::Info(_) => Reply::bulk("info"),
            Action::Kv { command, read, shape } => {
                let reads = matches!(
                    command,
                    KvCommand::Get { .. }
                        | KvCommand::MultiGet { .. }
                        | KvCommand::Exists { .. }
                        | KvCommand::Strlen { .. }
                );
                assert_eq!(read, reads, "{command:?} is served outside the log exactly when it only reads");
                answer(shape, kv.execute(&command))
            }
        }
    }

    fn bulk(s: &str) -> Reply {
        Reply::bulk(s)
    }

    fn err(r: Reply) -> String {
        match r {
            Reply::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn strings_answer_as_redis_does() {
        let (mut kv, mut c) = (KvStore::default(), ConnState::default());
        let mut r = |line: &str| run(&mut kv, &mut c, line);
        assert_eq!(r("GET k"), Reply::Bulk(None));
        assert_eq!(r("SET k v"), Reply::ok());
        assert_eq!(r("get k"), bulk("v"));
        assert_eq!(r("SET k v2 NX"), Reply::Bulk(None));
        assert_eq!(r("SET k v2 XX GET"), bulk("v"));
        assert_eq!(r("SET new v XX"), Reply::Bulk(None));
        assert_eq!(r("SET new v NX GET"), Reply::Bulk(None));
        assert_eq!(r("GET new"), bulk("v"));
        assert_eq!(err(r("SET k v NX XX")), "ERR syntax error");
        assert_eq!(err(r("SET k v FOO")), "ERR syntax error");
        assert!(err(r("SET k v EX 10")).contains("not supported by synod"));
        assert_eq!(r("SETNX k x"), Reply::Integer(0));
        assert_eq!(r("SETNX k2 x"), Reply::Integer(1));
        assert_eq!(r("GETSET k2 y"), bulk("x"));
        assert_eq!(r("GETSET k3 y"), Reply::Bulk(None));
        assert_eq!(r("EXISTS k k2 nope k"), Reply::Integer(3));
        assert_eq!(r("DEL k k2 nope"), Reply::Integer(2));
        assert_eq!(r("MSET a 1 b 2"), Reply::ok());
        assert_eq!(r("MGET a nope b"), Reply::Array(Some(vec![bulk("1"), Reply::Bulk(None), bulk("2")])));
        assert_eq!(r("MSETNX a 9 c 3"), Reply::Integer(0));
        assert_eq!(r("MSETNX c 3 d 4"), Reply::Integer(1));
        assert_eq!(err(r("MSET a")), "ERR wrong number of arguments for 'mset' command");
        assert_eq!(err(r("MSET a 1 b")), "ERR wrong number of arguments for 'mset' command");
        assert_eq!(r("INCR n"), Reply::Integer(1));
        assert_eq!(r("INCRBY n 10"), Reply::Integer(11));
        assert_eq!(r("DECR n"), Reply::Integer(10));
        assert_eq!(r("DECRBY n 20"), Reply::Integer(-10));
        assert_eq!(err(r("INCRBY n x")), "ERR value is not an integer or out of range");
        assert_eq!(err(r("INCRBY n 01")), "ERR value is not an integer or out of range");
        assert_eq!(err(r("DECRBY n -9223372036854775808")), "ERR decrement would overflow");
        assert_eq!(err(r("INCR a x")), "ERR wrong number of arguments for 'incr' command");
        assert_eq!(r("SET big 9223372036854775807"), Reply::ok());
        assert_eq!(err(r("INCR big")), "ERR increment or decrement would overflow");
        assert_eq!(err(r("INCR k3")), "ERR value is not an integer or out of range");
        assert_eq!(r("APPEND s ab"), Reply::Integer(2));
        assert_eq!(r("APPEND s cd"), Reply::Integer(4));
        assert_eq!(r("STRLEN s"), Reply::Integer(4));
        assert_eq!(r("STRLEN nope"), Reply::Integer(0));
        assert_eq!(r("GETDEL s"), bulk("abcd"));
        assert_eq!(r("GETDEL s"), Reply::Bulk(None));
        assert_eq!(r("CAS a 1 one"), Reply::Integer(1));
        assert_eq!(r("CAS a 1 uno"), Reply::Integer(0));
        assert_eq!(r("GET a"), bulk("one"));
        assert_eq!(r("CAS nope x y"), Reply::Integer(0));
        assert_eq!(err(r("GET")), "ERR wrong number of arguments for 'get' command");
    }

    #[test]
    fn connection_commands() {
        let (mut kv, mut c) = (KvStore::default(), ConnState::default());
        let mut r = |line: &str| run(&mut kv, &mut c, line);
        assert_eq!(r("PING"), Reply::Simple("PONG".into()));
        assert_eq!(r("PING hi"), bulk("hi"));
        assert_eq!(r("ECHO hi"), bulk("hi"));
        assert_eq!(r("SELECT 0"), Reply::ok());
        assert_eq!(err(r("SELECT 1")), "ERR DB index is out of range");
        assert_eq!(r("CLIENT GETNAME"), Reply::Bulk(None));
        assert_eq!(r("CLIENT SETNAME app"), Reply::ok());
        assert_eq!(r("CLIENT GETNAME"), bulk("app"));
        assert!(err(r("CLIENT SETNAME 'a b'")).contains("cannot contain spaces"));
        assert_eq!(r("COMMAND DOCS"), Reply::Array(Some(vec![])));
        assert_eq!(err(r("HELLO 3")), "NOPROTO sorry, this protocol version is not supported.");
        let Reply::Array(Some(hello)) = r("HELLO 2") else { panic!("HELLO answers a map") };
        assert_eq!(hello[4..6], [bulk("proto"), Reply::Integer(2)]);
        assert_eq!(r("CONFIG GET save"), Reply::Array(Some(vec![bulk("save"), bulk("")])));
        assert_eq!(r("CONFIG GET appendonly"), Reply::Array(Some(vec![bulk("appendonly"), bulk("yes")])));
        assert_eq!(r("CONFIG GET nope"), Reply::Array(Some(vec![])));
        assert!(err(r("CONFIG SET save x")).contains("not supported by synod"));
        assert!(err(r("AUTH pw")).starts_with("ERR AUTH <password> called without any password"));
        assert_eq!(r("INFO"), bulk("info"));
        assert_eq!(r("QUIT"), Reply::ok());
    }

    #[test]
    fn unsupported_and_unknown_commands_are_errors_naming_them() {
        let (mut kv, mut c) = (KvStore::default(), ConnState::default());
        let mut r = |line: &str| run(&mut kv, &mut c, line);
        assert_eq!(err(r("LPUSH l a")), "ERR 'LPUSH' is not supported by synod");
        assert_eq!(err(r("multi")), "ERR 'MULTI' is not supported by synod");
        assert_eq!(err(r("EXPIRE k 10")), "ERR 'EXPIRE' is not supported by synod");
        assert_eq!(err(r("SUBSCRIBE ch")), "ERR 'SUBSCRIBE' is not supported by synod");
        assert_eq!(err(r("FOO a b")), "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ");
    }

    #[test]
    fn a_password_is_required_when_configured() {
        let (mut kv, mut c) = (KvStore::default(), ConnState::default());
        let mut r = |line: &str| run_with(&mut kv, &mut c, line, Some("sesame"));
        assert_eq!(err(r("GET k")), "NOAUTH Authentication required.");
        assert!(err(r("AUTH wrong")).starts_with("WRONGPASS"));
        assert!(err(r("AUTH other sesame")).starts_with("WRONGPASS"));
        assert!(err(r("HELLO 2")).starts_with("NOAUTH"));
        assert_eq!(r("AUTH default sesame"), Reply::ok());
        assert_eq!(r("GET k"), Reply::Bulk(None));
        let (mut kv, mut c) = (KvStore::default(), ConnState::default());
        assert!(matches!(
            run_with(&mut kv, &mut c, "HELLO 2 AUTH default sesame", Some("sesame")),
            Reply::Array(_)
        ));
        assert!(c.authenticated);
    }
}
