//! Writes the fuzz targets' seed corpus, `<dir>/<target>/seed-*`, from real data: encoded wire
//! messages and their transport frames, the segments of a log and the snapshot file of a short run of
//! the key-value store, the config files `cargo xtask cluster up` and the docs write, and the Redis
//! commands redis-cli and redis-benchmark send. Run by `cargo xtask fuzz --seed-corpus`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use synod_kv::{KvCommand, KvPair, KvResponse, KvStore};
use synod_state_machine::{Applier, SessionConfig};
use synod_wal::{FaultyFs, Options, SnapshotWriter, Wal};
use synod_wire::{
    AdminQuery, AdminRequest, Ballot, Batch, ChangeRequest, ChosenEntry, ClientFrame, ClientId, ClientReply,
    ClientRequest, Command, LogRecord, MemberChange, MemberInfo, MemberRole, MembersView, Membership,
    Message, NodeId, Outcome, PromiseEntry, ReadMode, ReadRequest, ReplicaStatus, Role, Seq, Slot, Value,
    Wire,
};

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: synod-fuzz-seed <corpus dir>"));
    let mut seeds = Seeds { dir, written: 0 };
    let run = Run::new();
    wire(&mut seeds, &run);
    wal(&mut seeds, &run);
    snapshot(&mut seeds, &run);
    config(&mut seeds);
    resp(&mut seeds);
    println!("wrote {} seed files under {}", seeds.written, seeds.dir.display());
}

struct Seeds {
    dir: PathBuf,
    written: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        self.written += 1;
    }
}

/// A short run of the key-value store: client sessions registered, puts, a compare-and-swap, a delete,
/// batched as a leader batches them, each batch chosen in a slot and applied.
struct Run {
    batches: Vec<Batch>,
    applier: Applier<KvStore>,
    membership: Membership,
}

impl Run {
    fn new() -> Run {
        // A stop sign's configuration is one after configuration 0: the applier ignores any other.
        let mut membership =
            Membership::initial((1..=3).map(|i| (NodeId(i), format!("127.0.0.1:{}", 7000 + i))));
        membership.epoch = 1;
        let op = |client: u64, seq: u64, command: KvCommand| Command::Op {
            client: ClientId(client),
            seq: Seq(seq),
            ack: Seq(seq - 1),
            payload: command.encode().unwrap(),
        };
        let put = |k: &str, v: &str| KvCommand::Put { key: k.into(), value: v.into() };
        let batches = vec![
            Batch {
                timestamp_ms: 1_700_000_000_000,
                commands: vec![Command::Register { nonce: 11 }, Command::Register { nonce: 12 }],
            },
            Batch { timestamp_ms: 1_700_000_000_005, commands: vec![op(1, 1, put("alpha", "one"))] },
            Batch {
                timestamp_ms: 1_700_000_000_009,
                commands: vec![
                    op(1, 2, put("beta", "two")),
                    op(
                        2,
                        1,
                        KvCommand::MultiPut {
                            pairs: vec![
                                KvPair { key: b"k1".to_vec(), value: vec![0; 100] },
                                KvPair { key: b"k2".to_vec(), value: b"x".repeat(40) },
                            ],
                        },
                    ),
                    op(
                        2,
                        2,
                        KvCommand::Cas {
                            key: b"alpha".to_vec(),
                            expected: Some(b"one".to_vec()),
                            new: Some(b"uno".to_vec()),
                        },
                    ),
                ],
            },
            Batch {
                timestamp_ms: 1_700_000_000_020,
                commands: vec![
                    op(1, 3, KvCommand::Delete { key: b"beta".to_vec() }),
                    op(2, 3, put("gamma", "3")),
                ],
            },
        ];
        let mut applier = Applier::new(KvStore::default(), SessionConfig::default());
        applier.apply(Slot(0), &Value::Reconfig(membership.clone())).unwrap();
        for (i, b) in batches.iter().enumerate() {
            applier.apply(Slot(i as u64 + 1), &batch_value(b)).unwrap();
        }
        Run { batches, applier, membership }
    }

    fn values(&self) -> Vec<Value> {
        let mut values = vec![Value::Reconfig(self.membership.clone())];
        values.extend(self.batches.iter().map(batch_value));
        values
    }
}

fn batch_value(b: &Batch) -> Value {
    Value::Batch(Arc::from(b.encode().unwrap()))
}

fn ballot(round: u64) -> Ballot {
    Ballot { epoch: 0, round, node: NodeId(1) }
}

/// Every kind of message, frame, reply, batch and log record, as the run's replicas and clients send them;
/// and the transport's frames around them.
fn wire(seeds: &mut Seeds, run: &Run) {
    let values = run.values();
    let b = ballot(3);
    let mut messages = vec![
        Message::Prepare { ballot: b, first_unchosen: Slot(1) },
        Message::Promise {
            ballot: b,
            entries: vec![PromiseEntry {
                slot: Slot(1),
                ballot: ballot(2),
                value: values[1].clone(),
                chosen: true,
            }],
        },
        Message::Accepted { ballot: b, slot: Slot(2) },
        Message::Commit { ballot: b, commit: Slot(4) },
        Message::Reject { ballot: ballot(2), promised: b },
        Message::CatchUp { from: Slot(0), to: Slot(5) },
        Message::CatchUpReply {
            entries: values
                .iter()
                .enumerate()
                .map(|(i, v)| ChosenEntry { slot: Slot(i as u64), value: v.clone() })
                .collect(),
        },
        Message::SnapshotPull { upto: Slot(5), offset: 0 },
        Message::SnapshotChunk {
            upto: Slot(5),
            total: 300,
            offset: 0,
            bytes: run.applier.snapshot()[..64].to_vec(),
        },
        Message::ReadIndex { id: 9 },
        Message::ReadIndexReply { id: 9, index: Some(Slot(4)), ballot: b, commit: Slot(4) },
        Message::Confirm { ballot: b, round: 2, commit: Slot(4) },
        Message::Confirmed { ballot: b, round: 2 },
    ];
    for (i, v) in values.iter().enumerate() {
        messages.push(Message::Accept {
            ballot: b,
            slot: Slot(i as u64),
            value: v.clone(),
            commit: Slot(i as u64),
        });
    }
    let mut frames = BytesMut::new();
    for (i, m) in messages.iter().enumerate() {
        let bytes = m.encode().unwrap();
        seeds.put("wire", &format!("message-{i}"), &bytes);
        synod_transport::frame::encode(&bytes, &mut frames);
    }
    let member = |i: u32, role| MemberInfo {
        id: NodeId(i),
        addr: format!("127.0.0.1:{}", 7000 + i),
        role,
        caught_up: Slot(4),
    };
    let view = MembersView {
        from: NodeId(1),
        epoch: 1,
        members: vec![
            member(1, MemberRole::Voter),
            member(2, MemberRole::Voter),
            member(4, MemberRole::Learner),
        ],
        leader: Some(NodeId(1)),
        change_in_flight: false,
    };
    let status = ReplicaStatus {
        id: NodeId(1),
        role: Role::Leader,
        leader: Some(NodeId(1)),
        ballot: b,
        commit: Slot(4),
        applied: Slot(5),
        digest: run.applier.digest(),
        members: vec![NodeId(1), NodeId(2), NodeId(3)],
        epoch: 0,
        learners: vec![],
        removed: false,
        peers_reachable: vec![NodeId(2), NodeId(3)],
        sessions: 2,
        log_bytes: 4096,
        uptime_ms: 12_345,
        snapshot: Slot(0),
        rejoining: false,
    };
    let client_frames = vec![
        ClientFrame::Request(ClientRequest { id: 1, command: Command::Register { nonce: 11 } }),
        ClientFrame::Request(ClientRequest { id: 2, command: run.batches[1].commands[0].clone() }),
        ClientFrame::Read(ReadRequest {
            id: 3,
            query: KvCommand::Get { key: b"alpha".to_vec() }.encode().unwrap(),
            mode: ReadMode::Linearizable,
        }),
        ClientFrame::Read(ReadRequest {
            id: 4,
            query: KvCommand::MultiGet { keys: vec![b"k1".to_vec(), b"k2".to_vec()] }.encode().unwrap(),
            mode: ReadMode::Stale,
        }),
        ClientFrame::Admin(AdminRequest { id: 5, query: AdminQuery::Status }),
        ClientFrame::Admin(AdminRequest { id: 6, query: AdminQuery::Members }),
        ClientFrame::Change(ChangeRequest {
            id: 7,
            change: MemberChange::Add { id: NodeId(4), addr: "127.0.0.1:7004".into(), learner: true },
        }),
        ClientFrame::Change(ChangeRequest { id: 8, change: MemberChange::Remove { id: NodeId(3) } }),
    ];
    for (i, f) in client_frames.iter().enumerate() {
        seeds.put("wire", &format!("client-frame-{i}"), &f.encode().unwrap());
    }
    let replies = vec![
        Outcome::Registered { client: ClientId(1) },
        Outcome::Applied { payload: KvResponse::Value(Some(b"one".to_vec())).encode().unwrap() },
        Outcome::Redirect { leader: Some(NodeId(2)) },
        Outcome::Busy,
        Outcome::Status(status),
        Outcome::Members(view),
        Outcome::Refused("a change is already in flight".into()),
    ];
    for (i, outcome) in replies.into_iter().enumerate() {
        let bytes = ClientReply { id: i as u64, outcome }.encode().unwrap();
        seeds.put("wire", &format!("client-reply-{i}"), &bytes);
        synod_transport::frame::encode(&bytes, &mut frames);
    }
    for (i, b) in run.batches.iter().enumerate() {
        seeds.put("wire", &format!("batch-{i}"), &b.encode().unwrap());
    }
    for (i, r) in records(run).iter().enumerate() {
        seeds.put("wire", &format!("log-record-{i}"), &r.encode().unwrap());
    }
    seeds.put("wire", "membership", &run.membership.encode().unwrap());
    // Frames: a knob byte (limit 64 KiB, pieces of 1, 4 and 10 bytes), then the stream.
    for knob in [16u8, 16 + 24 * 3, 16 + 24 * 9] {
        let mut input = vec![knob];
        input.extend_from_slice(&frames);
        seeds.put("frame", &format!("stream-{knob}"), &input);
    }
    let mut one = vec![16u8];
    one.extend_from_slice(&frames[..frames.len().min(200)]);
    seeds.put("frame", "cut", &one);
}

/// The log records the run's replica writes.
fn records(run: &Run) -> Vec<LogRecord> {
    let mut records = vec![LogRecord::Promise { ballot: ballot(1) }];
    for (i, v) in run.values().into_iter().enumerate() {
        records.push(LogRecord::Accept { slot: Slot(i as u64), ballot: ballot(1), value: v.clone() });
        records.push(LogRecord::Learn { slot: Slot(i as u64), value: v });
        records.push(LogRecord::Commit { upto: Slot(i as u64 + 1) });
    }
    records.push(LogRecord::Snapshot { upto: Slot(3) });
    records.push(LogRecord::Rejoin { done: true });
    records
}

/// The log of the run, as segment files of 4 KiB (the fuzz target's layout: a knob byte, then the
/// segments back to back).
fn wal(seeds: &mut Seeds, run: &Run) {
    let fs = FaultyFs::new();
    let dir = Path::new("/log");
    let options = Options::new().fs(fs.clone()).segment_size(4096).no_preallocation();
    let (mut wal, _) = Wal::open(dir, options).unwrap();
    let records = records(run);
    // The run's records, then more rounds of them, so that the log spans several segments.
    for _ in 0..6 {
        for chunk in records.chunks(3) {
            wal.append(chunk).unwrap();
            wal.sync().unwrap();
        }
    }
    // One write never synced, as a crash leaves it.
    wal.append(&[LogRecord::Commit { upto: Slot(9) }]).unwrap();
    drop(wal);
    let segments: Vec<Vec<u8>> = fs.paths().iter().map(|p| fs.contents(p).unwrap()).collect();
    let first = segments.len().min(4);
    for take in 1..=first {
        let mut input = vec![(take - 1) as u8];
        for s in &segments[..take] {
            input.extend_from_slice(s);
        }
        seeds.put("wal", &format!("segments-{take}"), &input);
        // The same, checksums recomputed by the target (knob bit 2), with the first segment's bytes only.
        if take == 1 {
            input[0] |= 4;
            seeds.put("wal", "fixed-1", &input);
        }
    }
    // Only what the log holds, without the preallocated zeros: short inputs mutate faster.
    let used = segments[0].iter().rposition(|&b| b != 0).map_or(32, |i| i + 1);
    let mut short = vec![4u8];
    short.extend_from_slice(&segments[0][..used]);
    seeds.put("wal", "short", &short);
}

/// The run's snapshot file, as the replica writes it (knob 0: the whole file), and its body alone
/// (knob 1: the target wraps it).
fn snapshot(seeds: &mut Seeds, run: &Run) {
    let fs = FaultyFs::new();
    let dir = Path::new("/data");
    let upto = run.applier.next_slot().0;
    let mut writer = SnapshotWriter::create_with(Arc::new(fs.clone()), dir, upto).unwrap();
    run.applier.snapshot_to(&mut writer).unwrap();
    let file = writer.finish().unwrap();
    let bytes = fs.contents(&file.path).unwrap();
    let mut input = vec![0u8];
    input.extend_from_slice(&bytes);
    seeds.put("snapshot", "file", &input);
    let mut body = vec![1u8 | ((upto as u8) << 1)];
    body.extend_from_slice(&bytes[28..bytes.len() - 4]);
    seeds.put("snapshot", "body", &body);
    let empty = Applier::new(KvStore::default(), SessionConfig::default());
    let mut out = vec![1u8];
    empty.snapshot_to(&mut out).unwrap();
    seeds.put("snapshot", "empty-body", &out);
}

/// node.toml and client.toml as `cargo xtask cluster up` writes them, and every TOML block of the
/// docs (the deployment guide's files).
fn config(seeds: &mut Seeds) {
    let peers: String = (1..=3).map(|i| format!("{i} = \"127.0.0.1:{}\"\n", 7000 + i)).collect();
    let node = format!(
        "# Replica 1 of a local synod cluster (written by `cargo xtask cluster up`).\n\
         id = 1\ndata_dir = \"data/node-1\"\nmetrics = \"127.0.0.1:7101\"\n\n\
         [tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node-1.pem\"\nkey = \"certs/node-1.key\"\n\n\
         [peers]\n{peers}"
    );
    seeds.put("config", "node", node.as_bytes());
    let full = format!(
        "{node}\nlog_format = \"json\"\njoin = false\n\n[timing]\ntick_ms = 10\nheartbeat_ticks = 5\n\
         election_ticks = [15, 30]\n\n[batching]\nmax_in_flight = 64\nmax_batch_commands = 512\n\
         max_batch_bytes = 1048576\n\n[transport]\nthreads = 2\n\n[snapshots]\nlog_bytes = 67108864\n\
         retain_slots = 1000\nchunk_bytes = 1048576\n\n[reads]\nleases = true\n\n[resp]\n\
         listen = \"127.0.0.1:6379\"\npassword = \"secret\"\nclient = \"client.toml\"\n"
    );
    // `log_format` must come before the tables; move it up.
    let full = full.replacen("\nlog_format = \"json\"\njoin = false\n", "\n", 1);
    let full = full.replacen("id = 1\n", "id = 1\nlog_format = \"json\"\njoin = false\n", 1);
    seeds.put("config", "node-full", full.as_bytes());
    let client = format!(
        "# A client of the local synod cluster.\nclient = 1\nrequest_timeout_ms = 1000\n\n[tls]\n\
         ca = \"certs/ca.pem\"\ncert = \"certs/client-1.pem\"\nkey = \"certs/client-1.key\"\n\n\
         [replicas]\n{peers}4 = \"node-4.example.net:7004\"\n5 = \"[::1]:7005\"\n"
    );
    seeds.put("config", "client", client.as_bytes());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for doc in ["docs/DEPLOY.md", "README.md", "docs/RESP.md", "docs/OPERATIONS.md"] {
        let Ok(text) = std::fs::read_to_string(root.join(doc)) else { continue };
        let mut block: Option<String> = None;
        let mut n = 0;
        for line in text.lines() {
            match &mut block {
                None if line.trim_start().starts_with("```toml") => block = Some(String::new()),
                Some(b) if line.trim_start().starts_with("```") => {
                    n += 1;
                    let name = format!("{}-{n}", doc.trim_end_matches(".md").replace('/', "-"));
                    seeds.put("config", &name, b.as_bytes());
                    block = None;
                }
                Some(b) => {
                    b.push_str(line);
                    b.push('\n');
                }
                None => {}
            }
        }
    }
}

/// Redis commands (the target's two knob bytes first: an 8 MiB frame limit, no password; and one
/// with a password): what redis-cli sends, inline commands, and redis-benchmark's pipelines.
fn resp(seeds: &mut Seeds) {
    fn array(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
    let no_password = [23u8, 0];
    let password = [23u8 | 0x80, 0];
    let mut put = |name: &str, knobs: [u8; 2], body: &[u8]| {
        let mut input = knobs.to_vec();
        input.extend_from_slice(body);
        seeds.put("resp", name, &input);
    };
    // redis-cli: a session.
    let mut session = Vec::new();
    for cmd in [
        &[&b"AUTH"[..], b"secret"][..],
        &[b"HELLO", b"2"],
        &[b"CLIENT", b"SETNAME", b"cli"],
        &[b"SET", b"key", b"value"],
        &[b"SET", b"key", b"v2", b"NX", b"GET"],
        &[b"GET", b"key"],
        &[b"MSET", b"a", b"1", b"b", b"2"],
        &[b"MGET", b"a", b"b", b"c"],
        &[b"INCR", b"counter"],
        &[b"INCRBY", b"counter", b"10"],
        &[b"APPEND", b"a", b"more"],
        &[b"STRLEN", b"a"],
        &[b"EXISTS", b"a", b"b"],
        &[b"DEL", b"a", b"b"],
        &[b"GETDEL", b"key"],
        &[b"SETNX", b"k", b"v"],
        &[b"INFO", b"server"],
        &[b"COMMAND", b"DOCS"],
        &[b"SELECT", b"0"],
        &[b"PING"],
        &[b"ECHO", b"hi"],
        &[b"QUIT"],
    ] {
        session.extend_from_slice(&array(cmd));
    }
    put("session", no_password, &session);
    put("session-auth", password, &session);
    put(
        "inline",
        no_password,
        b"PING\r\nSET k \"a value\\x41\\n\"\r\nGET k\r\nset 'x' 'it\\'s'\nEXISTS k x\r\n",
    );
    // redis-benchmark -t set,get -P 16 -d 3: its first command, then 16 SETs and 16 GETs a write.
    put("benchmark-config", no_password, &array(&[b"CONFIG", b"GET", b"save"]));
    for (name, args) in [
        ("set", &[&b"SET"[..], b"key:__rand_int__", b"xxx"][..]),
        ("get", &[b"GET", b"key:__rand_int__"]),
        ("incr", &[b"INCR", b"counter:__rand_int__"]),
        ("mset", &[b"MSET", b"key:__rand_int__", b"xxx", b"key:__rand_int__", b"xxx"]),
        ("ping", &[b"PING"]),
    ] {
        let one = array(args);
        put(&format!("benchmark-{name}"), no_password, &one);
        put(&format!("benchmark-{name}-P16"), no_password, &one.repeat(16));
    }
    put("benchmark-ping-inline-P16", no_password, &b"PING\r\n".repeat(16));
    // A command cut short, and one over a small frame limit.
    let set = array(&[b"SET", b"key", &[b'v'; 100]]);
    put("partial", no_password, &set[..set.len() - 5]);
    put("over-limit", [6, 0], &set);
}
