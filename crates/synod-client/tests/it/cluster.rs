//! A test replica set from the real pieces: transport nodes on loopback and one shared `Applier<KvStore>`.
//!
//! There is no consensus here: the replicas share one applier (standing in
//! for the replicated log and state), the test decides who leads, followers
//! answer `Redirect`, and switches let the leader withhold, drop or refuse
//! (`Busy`) answers. Exactly-once is real: it is the applier's session table.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use synod_client::ClientConfig;
use synod_kv::KvStore;
use synod_state_machine::{Applier, ApplierStats, SessionConfig};
use synod_transport::{certs, Credentials, Identity, Inbound, Node, NodeConfig, Settings};
use synod_wire::{
    AdminQuery, AdminRequest, Ballot, Batch, ClientFrame, ClientReply, ClientRequest, Command, MemberInfo,
    MemberRole, MembersView, NodeId, Outcome, ReadMode, ReadRequest, ReplicaStatus, Role, Value, Wire,
};

/// Long enough that only a hang reaches it; no assertion is about time.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// What one replica saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Client streams opened.
    pub streams: u64,
    /// Operations received while leading (attempts, retries included).
    pub ops: u64,
    /// Registrations received while leading.
    pub registers: u64,
    /// Requests answered with a redirect.
    pub redirects: u64,
    /// Reads outside the log received (any replica serves them), by mode:
    /// linearizable, lease, stale.
    pub reads: [u64; 3],
}

/// The replicated state and the test's switches.
pub struct Shared {
    pub applier: Mutex<Applier<KvStore>>,
    /// The leader's id, 0 for none.
    leader: AtomicU32,
    /// The leader timestamp stamped on each batch.
    pub clock_ms: AtomicU64,
    /// The leader applies requests but answers none.
    pub withhold: AtomicBool,
    /// The leader applies the next N requests but drops their answers.
    pub drop_replies: AtomicUsize,
    /// The leader answers the next N requests `Busy` without applying them.
    pub busy: AtomicUsize,
    /// Followers send every redirect twice.
    pub duplicate_redirects: AtomicBool,
    /// Every replica sends an undecodable frame before each answer.
    pub garbage: AtomicBool,
    /// Replicas answer the next N linearizable or lease reads `Unavailable`
    /// (no leader to confirm them); stale reads are always served.
    pub unavailable_reads: AtomicUsize,
    seen: Mutex<BTreeMap<u32, Seen>>,
    /// The members every replica reports to `AdminQuery::Members`.
    pub members: Mutex<BTreeMap<NodeId, SocketAddr>>,
}

impl Shared {
    pub fn set_leader(&self, leader: Option<u32>) {
        self.leader.store(leader.unwrap_or(0), Ordering::SeqCst);
    }

    fn leader(&self) -> Option<NodeId> {
        match self.leader.load(Ordering::SeqCst) {
            0 => None,
            id => Some(NodeId(id)),
        }
    }

    pub fn stats(&self) -> ApplierStats {
        self.applier.lock().unwrap().stats()
    }

    pub fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.applier.lock().unwrap().machine().get(key).map(<[u8]>::to_vec)
    }

    pub fn seen(&self, node: u32) -> Seen {
        self.seen.lock().unwrap().get(&node).copied().unwrap_or_default()
    }

    fn count(&self, node: u32, f: impl FnOnce(&mut Seen)) {
        f(self.seen.lock().unwrap().entry(node).or_default());
    }

    /// What replica `me` answers to a status query: its leader belief, and the shared applier's progress.
    fn status(&self, me: NodeId, query: &AdminRequest) -> ClientReply {
        let leader = self.leader();
        if query.query == AdminQuery::Members {
            let members = self
                .members
                .lock()
                .unwrap()
                .iter()
                .map(|(&id, addr)| MemberInfo {
                    id,
                    addr: addr.to_string(),
                    role: MemberRole::Voter,
                    caught_up: synod_wire::Slot(0),
                })
                .collect();
            let view = MembersView { from: me, epoch: 1, members, leader, change_in_flight: false };
            return ClientReply { id: query.id, outcome: Outcome::Members(view) };
        }
        let applier = self.applier.lock().unwrap();
        let status = ReplicaStatus {
            id: me,
            role: if leader == Some(me) { Role::Leader } else { Role::Follower },
            leader,
            ballot: Ballot::default(),
            commit: applier.next_slot(),
            applied: applier.next_slot(),
            digest: applier.digest(),
            members: Vec::new(),
            peers_reachable: Vec::new(),
            sessions: applier.sessions().len() as u64,
            log_bytes: 0,
            uptime_ms: 0,
            snapshot: synod_wire::Slot(0),
            rejoining: false,
            epoch: 0,
            learners: Vec::new(),
            removed: false,
        };
        ClientReply { id: query.id, outcome: Outcome::Status(status) }
    }

    /// What replica `me`, leader or not, answers to a read outside the log:
    /// the shared applier's answer (the state stands for every replica's, so
    /// any replica may serve it), unless told to answer `Unavailable`.
    fn read(&self, me: NodeId, read: ReadRequest) -> ClientReply {
        let mode = match read.mode {
            ReadMode::Linearizable => 0,
            ReadMode::Lease => 1,
            ReadMode::Stale => 2,
        };
        self.count(me.0, |s| s.reads[mode] += 1);
        if read.mode != ReadMode::Stale && take_one(&self.unavailable_reads) {
            let outcome = Outcome::Unavailable("no leader to confirm the read; retry".into());
            return ClientReply { id: read.id, outcome };
        }
        let outcome = match self.applier.lock().unwrap().read(&read.query) {
            Some(payload) => Outcome::Applied { payload },
            None => Outcome::Unavailable("this state machine serves no reads outside the log".into()),
        };
        ClientReply { id: read.id, outcome }
    }

    /// What replica `me` answers to `request`.
    fn handle(&self, me: NodeId, request: ClientRequest) -> Vec<ClientReply> {
        let leader = self.leader();
        if leader != Some(me) {
            self.count(me.0, |s| s.redirects += 1);
            let reply = ClientReply { id: request.id, outcome: Outcome::Redirect { leader } };
            return if self.duplicate_redirects.load(Ordering::SeqCst) {
                vec![reply.clone(), reply]
            } else {
                vec![reply]
            };
        }
        match request.command {
            Command::Op { .. } => self.count(me.0, |s| s.ops += 1),
            Command::Register { .. } => self.count(me.0, |s| s.registers += 1),
        }
        if take_one(&self.busy) {
            return vec![ClientReply { id: request.id, outcome: Outcome::Busy }];
        }
        let outcome = {
            let mut applier = self.applier.lock().unwrap();
            let batch =
                Batch { timestamp_ms: self.clock_ms.load(Ordering::SeqCst), commands: vec![request.command] };
            let slot = applier.next_slot();
            let mut replies = applier.apply(slot, &Value::Batch(batch.encode().unwrap().into())).unwrap();
            assert_eq!(replies.len(), 1);
            replies.remove(0).outcome
        };
        if self.withhold.load(Ordering::SeqCst) || take_one(&self.drop_replies) {
            return Vec::new();
        }
        vec![ClientReply { id: request.id, outcome }]
    }
}

fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok()
}

type Slot = Arc<Mutex<Option<Node>>>;

/// Replicas `1..=n` on loopback, replica 1 leading.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub book: BTreeMap<NodeId, SocketAddr>,
    pub shared: Arc<Shared>,
    nodes: BTreeMap<u32, Slot>,
    threads: Vec<JoinHandle<()>>,
}

impl TestCluster {
    pub fn new(n: u32) -> TestCluster {
        TestCluster::with_sessions(n, SessionConfig::default())
    }

    pub fn with_sessions(n: u32, sessions: SessionConfig) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        certs::init(dir.path(), n, 2, false).unwrap();
        let sockets: BTreeMap<u32, UdpSocket> =
            (1..=n).map(|i| (i, UdpSocket::bind("127.0.0.1:0").unwrap())).collect();
        let book: BTreeMap<NodeId, SocketAddr> =
            sockets.iter().map(|(&i, s)| (NodeId(i), s.local_addr().unwrap())).collect();
        let shared = Arc::new(Shared {
            applier: Mutex::new(Applier::new(KvStore::default(), sessions)),
            leader: AtomicU32::new(1),
            clock_ms: AtomicU64::new(1),
            withhold: AtomicBool::new(false),
            drop_replies: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            duplicate_redirects: AtomicBool::new(false),
            garbage: AtomicBool::new(false),
            unavailable_reads: AtomicUsize::new(0),
            seen: Mutex::default(),
            members: Mutex::new(book.clone()),
        });
        let mut nodes = BTreeMap::new();
        let mut threads = Vec::new();
        for (i, socket) in sockets {
            let id = NodeId(i);
            let config = NodeConfig {
                id,
                peers: synod_transport::address_book(book.clone()),
                credentials: Credentials::load(dir.path(), Identity::Node(id)).unwrap(),
                settings: node_settings(),
            };
            let (tx, rx) = mpsc::channel::<Inbound>();
            let node = Node::start_on(socket, config, move |e| drop(tx.send(e))).unwrap();
            let slot: Slot = Arc::new(Mutex::new(Some(node)));
            let (slot2, shared2) = (slot.clone(), shared.clone());
            threads.push(std::thread::spawn(move || serve(id, &rx, &slot2, &shared2)));
            nodes.insert(i, slot);
        }
        TestCluster { dir, book, shared, nodes, threads }
    }

    /// A client configuration with client 1's certificates and test-sized timeouts.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::from_cert_dir(self.dir.path(), 1, self.book.clone())
            .unwrap()
            .with_request_timeout(Duration::from_millis(300))
            .with_deadline(PATIENCE)
    }

    /// Stops replica `id` at once (closing its connections). Blocks: call it outside async code.
    pub fn shutdown(&self, id: u32) {
        let node = self.nodes[&id].lock().unwrap().take();
        if let Some(node) = node {
            node.shutdown();
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for slot in self.nodes.values() {
            let node = slot.lock().unwrap().take();
            drop(node);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn node_settings() -> Settings {
    Settings {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(3),
        keep_alive: Duration::from_millis(500),
        worker_threads: 1,
        ..Settings::default()
    }
}

/// One replica's server loop; it ends when the node is dropped (its sink goes with it).
fn serve(me: NodeId, rx: &mpsc::Receiver<Inbound>, slot: &Slot, shared: &Shared) {
    for event in rx {
        let (conn, frame) = match event {
            Inbound::Client { conn, frame } => (conn, frame),
            Inbound::ClientUp { .. } => {
                shared.count(me.0, |s| s.streams += 1);
                continue;
            }
            _ => continue,
        };
        let replies = match ClientFrame::decode(&frame) {
            Ok(ClientFrame::Request(request)) => shared.handle(me, request),
            Ok(ClientFrame::Admin(query)) => vec![shared.status(me, &query)],
            Ok(ClientFrame::Read(read)) => vec![shared.read(me, read)],
            Ok(ClientFrame::Change(change)) => {
                vec![ClientReply { id: change.id, outcome: Outcome::Refused("no changes here".into()) }]
            }
            Err(_) => continue,
        };
        for reply in replies {
            if let Some(node) = slot.lock().unwrap().as_ref() {
                if shared.garbage.load(Ordering::SeqCst) {
                    let _ = node.reply(conn, &b"\xffnot a reply"[..]);
                }
                let _ = node.reply(conn, reply.encode().unwrap());
            }
        }
    }
}

/// A multi-threaded runtime for the client side.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Waits until `f` holds, polling, from async code.
pub async fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
