//! A test cluster: replicas on loopback with fresh certificates and data directories.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use synod_kv::KvStore;
use synod_runtime::{Replica, ReplicaConfig, Status};
use synod_transport::{certs, ClientEndpoint, ClientStream, Credentials, Identity, Settings};
use synod_wire::{
    AdminQuery, AdminRequest, ClientFrame, ClientId, ClientReply, ClientRequest, Command, KvCommand,
    KvResponse, NodeId, Outcome, ReadMode, ReadRequest, ReplicaStatus, Seq, Wire,
};

pub struct Cluster<S = KvStore> {
    make: fn() -> S,
    tweak: fn(&mut ReplicaConfig),
    _dir: tempfile::TempDir,
    certs: PathBuf,
    data: PathBuf,
    peers: BTreeMap<NodeId, SocketAddr>,
    replicas: BTreeMap<NodeId, Option<Replica>>,
    /// Replicas started with `join`, and their addresses.
    joined: BTreeMap<NodeId, SocketAddr>,
}

impl Cluster<KvStore> {
    pub fn start(n: u32) -> Cluster<KvStore> {
        Cluster::start_with(n, KvStore::default)
    }
}

impl<S: synod_runtime::StateMachine + Send + 'static> Cluster<S> {
    pub fn start_with(n: u32, make: fn() -> S) -> Cluster<S> {
        Cluster::start_configured(n, make, |_| {})
    }

    /// A cluster whose replicas' configuration `tweak` adjusts (at every start).
    pub fn start_configured(n: u32, make: fn() -> S, tweak: fn(&mut ReplicaConfig)) -> Cluster<S> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        certs::init(&certs, n, 2, false).unwrap();
        let peers: BTreeMap<NodeId, SocketAddr> = (1..=n)
            .map(|i| {
                let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
                (NodeId(i), probe.local_addr().unwrap())
            })
            .collect();
        let mut cluster = Cluster {
            make,
            tweak,
            data: dir.path().join("data"),
            _dir: dir,
            certs,
            peers,
            replicas: BTreeMap::new(),
            joined: BTreeMap::new(),
        };
        for i in 1..=n {
            cluster.restart(NodeId(i));
        }
        cluster
    }

    /// A configuration for the real client, as client `n`.
    pub fn client_config(&self, n: u32) -> synod_client::ClientConfig {
        synod_client::ClientConfig::from_cert_dir(&self.certs, n, self.peers.clone())
            .unwrap()
            .with_request_timeout(Duration::from_millis(300))
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    pub fn restart(&mut self, id: NodeId) {
        let creds = Credentials::load(&self.certs, Identity::Node(id)).unwrap();
        let mut config =
            ReplicaConfig::new(id, self.peers.clone(), creds, self.data.join(format!("node-{}", id.0)));
        config.segment_bytes = 1 << 20;
        (self.tweak)(&mut config);
        let replica = Replica::start(config, (self.make)()).unwrap();
        self.replicas.insert(id, Some(replica));
    }

    /// Starts replica `id` again, returning why it would not start.
    pub fn try_restart(&mut self, id: NodeId) -> Result<(), synod_runtime::StartError> {
        let creds = Credentials::load(&self.certs, Identity::Node(id)).unwrap();
        let mut config = ReplicaConfig::new(id, self.peers.clone(), creds, self.data_dir(id));
        config.segment_bytes = 1 << 20;
        (self.tweak)(&mut config);
        let replica = Replica::start(config, (self.make)())?;
        self.replicas.insert(id, Some(replica));
        Ok(())
    }

    /// Starts replica `id`, which is not a member, to join the running
    /// cluster: a certificate of its own (as `synod certs add` makes it),
    /// `join`, an empty data directory, the cluster's replicas as contacts.
    /// Returns its address. Again for the same id, it restarts it, with the
    /// same address and data directory.
    pub fn start_joining(&mut self, id: NodeId) -> SocketAddr {
        let addr = match self.joined.get(&id) {
            Some(&addr) => addr,
            None => {
                certs::add(&self.certs, Identity::Node(id), 30, false).unwrap();
                UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
            }
        };
        self.joined.insert(id, addr);
        let mut peers = self.peers.clone();
        peers.insert(id, addr);
        let creds = Credentials::load(&self.certs, Identity::Node(id)).unwrap();
        let mut config = ReplicaConfig::new(id, peers, creds, self.data_dir(id));
        config.join = true;
        config.segment_bytes = 1 << 20;
        (self.tweak)(&mut config);
        let replica = Replica::start(config, (self.make)()).unwrap();
        self.replicas.insert(id, Some(replica));
        addr
    }

    /// Starts replica `id`, not among the cluster's peers, *without* `join`: refused.
    pub fn start_outsider(&mut self, id: NodeId) -> Result<(), synod_runtime::StartError> {
        let _ = certs::add(&self.certs, Identity::Node(id), 30, false);
        let creds = Credentials::load(&self.certs, Identity::Node(id)).unwrap();
        let config = ReplicaConfig::new(id, self.peers.clone(), creds, self.data_dir(id));
        Replica::start(config, (self.make)()).map(drop)
    }

    /// Replica `id`, if it runs.
    pub fn replica(&self, id: NodeId) -> Option<&Replica> {
        self.replicas.get(&id).and_then(Option::as_ref)
    }

    /// Replica `id`'s data directory.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.data.join(format!("node-{}", id.0))
    }

    pub fn stop(&mut self, id: NodeId) {
        if let Some(Some(r)) = self.replicas.insert(id, None) {
            r.shutdown();
        }
    }

    pub fn statuses(&self) -> Vec<Status> {
        self.replicas.values().flatten().map(Replica::status).collect()
    }

    pub fn await_leader(&self, timeout: Duration) -> NodeId {
        let until = Instant::now() + timeout;
        loop {
            let leaders: Vec<NodeId> = self.statuses().iter().filter(|s| s.is_leader).map(|s| s.id).collect();
            if let [one] = leaders[..] {
                return one;
            }
            assert!(Instant::now() < until, "no single leader within {timeout:?}: {:?}", self.statuses());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running replica applied the same slots with the same digest.
    pub fn await_identical(&self, timeout: Duration) -> Status {
        let until = Instant::now() + timeout;
        loop {
            let s = self.statuses();
            let same = s.windows(2).all(|w| w[0].applied == w[1].applied && w[0].digest == w[1].digest);
            let all = self.replicas.values().all(Option::is_some);
            if same && all && s[0].applied.0 > 0 && s.iter().all(|x| x.commit == x.applied) {
                return s[0].clone();
            }
            assert!(Instant::now() < until, "replicas did not converge within {timeout:?}: {s:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A minimal client speaking the wire protocol directly, one request at a time.
pub struct RawClient {
    rt: tokio::runtime::Runtime,
    stream: ClientStream,
    endpoint: ClientEndpoint,
    peers: BTreeMap<NodeId, SocketAddr>,
    session: Option<ClientId>,
    seq: u64,
}

impl RawClient {
    pub fn connect<S>(cluster: &Cluster<S>, to: NodeId) -> RawClient {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let creds = Credentials::load(&cluster.certs, Identity::Client(1)).unwrap();
        let addr = cluster.peers[&to];
        let (endpoint, stream) = rt.block_on(async {
            let endpoint =
                ClientEndpoint::new("127.0.0.1:0".parse().unwrap(), creds, Settings::default()).unwrap();
            let stream = endpoint.connect(addr, Some(to)).await.unwrap();
            (endpoint, stream)
        });
        RawClient { rt, stream, endpoint, peers: cluster.peers.clone(), session: None, seq: 0 }
    }

    /// A new connection to replica `to`, keeping the session (an idle one is closed by the replica).
    pub fn reconnect(&mut self, to: NodeId) {
        let addr = self.peers[&to];
        self.stream = self.rt.block_on(self.endpoint.connect(addr, Some(to))).unwrap();
    }

    /// Sends `command`, following redirects (a leader may change under a test).
    fn call_following(&mut self, command: Command) -> Outcome {
        for _ in 0..20 {
            match self.call(command.clone()) {
                Outcome::Redirect { leader: Some(l) } => self.reconnect(l),
                Outcome::Redirect { leader: None } => std::thread::sleep(Duration::from_millis(50)),
                other => return other,
            }
        }
        panic!("redirected 20 times");
    }

    fn call(&mut self, command: Command) -> Outcome {
        let id = self.seq + 1000;
        self.exchange(ClientFrame::Request(ClientRequest { id, command }), id)
    }

    /// Asks the connected replica for its status (never through the log).
    pub fn status(&mut self) -> ReplicaStatus {
        let id = self.seq + 5000;
        match self.exchange(ClientFrame::Admin(AdminRequest { id, query: AdminQuery::Status }), id) {
            Outcome::Status(status) => status,
            other => panic!("status: {other:?}"),
        }
    }

    /// Reads `query` outside the log from the connected replica, as `mode` says.
    pub fn read(&mut self, query: Vec<u8>, mode: ReadMode) -> Outcome {
        self.seq += 1;
        let id = self.seq + 9000;
        self.exchange(ClientFrame::Read(ReadRequest { id, query, mode }), id)
    }

    /// Reads `key` of the key-value store outside the log, asking again
    /// while the replica answers `Unavailable` (no leader yet to confirm it).
    pub fn get(&mut self, key: &[u8], mode: ReadMode) -> Option<Vec<u8>> {
        let query = KvCommand::Get { key: key.to_vec() }.encode().unwrap();
        for _ in 0..100 {
            match self.read(query.clone(), mode) {
                Outcome::Applied { payload } => match KvResponse::decode(&payload).unwrap() {
                    KvResponse::Value(v) => return v,
                    other => panic!("a get answered {other:?}"),
                },
                Outcome::Unavailable(_) => std::thread::sleep(Duration::from_millis(50)),
                other => panic!("a read answered {other:?}"),
            }
        }
        panic!("no read served in 100 tries");
    }

    /// Sends `frame` and waits for the answer to request `id`.
    fn exchange(&mut self, frame: ClientFrame, id: u64) -> Outcome {
        self.stream.send(frame.encode().unwrap()).unwrap();
        let frame = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), self.stream.recv()).await })
            .expect("an answer within 10 s")
            .expect("the stream stays open");
        let reply = ClientReply::decode(&frame).unwrap();
        assert_eq!(reply.id, id);
        reply.outcome
    }

    /// A client connected to `to` with a session registered (following redirects).
    pub fn registered<S>(cluster: &Cluster<S>, to: NodeId) -> RawClient {
        let mut client = RawClient::connect(cluster, to);
        client.register();
        client
    }

    pub fn raw_register(&mut self) -> Outcome {
        self.call(Command::Register { nonce: 7 })
    }

    pub fn register(&mut self) {
        match self.call_following(Command::Register { nonce: 7 }) {
            Outcome::Registered { client } => self.session = Some(client),
            other => panic!("register: {other:?}"),
        }
    }

    /// Sends `n` registrations at once on this stream, then reads their `n`
    /// answers: pipelined, as a client registering sessions as fast as it can.
    pub fn register_many(&mut self, n: u64) -> Vec<Outcome> {
        for i in 0..n {
            let frame = ClientFrame::Request(ClientRequest {
                id: (1 << 40) + i,
                command: Command::Register { nonce: i },
            });
            self.stream.send(frame.encode().unwrap()).unwrap();
        }
        (0..n)
            .map(|_| {
                let frame = self
                    .rt
                    .block_on(async {
                        tokio::time::timeout(Duration::from_secs(10), self.stream.recv()).await
                    })
                    .expect("an answer within 10 s")
                    .expect("the stream stays open");
                ClientReply::decode(&frame).unwrap().outcome
            })
            .collect()
    }

    /// Sends operation `kv` numbered `seq` (a retry, if it was sent before) and returns what it got.
    pub fn op_numbered(&mut self, seq: u64, kv: &KvCommand) -> Outcome {
        let command = Command::Op {
            client: self.session.expect("registered"),
            seq: Seq(seq),
            ack: Seq(seq - 1),
            payload: kv.encode().unwrap(),
        };
        self.call_following(command)
    }

    /// Sends an operation without waiting for its answer.
    pub fn send_op(&mut self, payload: Vec<u8>) {
        self.seq += 1;
        let command = Command::Op {
            client: self.session.expect("registered"),
            seq: Seq(self.seq),
            ack: Seq(self.seq - 1),
            payload,
        };
        let frame = ClientFrame::Request(ClientRequest { id: self.seq + 1000, command });
        self.stream.send(frame.encode().unwrap()).unwrap();
        // The stream's writer runs on this client's runtime: let it run.
        self.rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    }

    pub fn op(&mut self, kv: &KvCommand) -> KvResponse {
        self.seq += 1;
        let command = Command::Op {
            client: self.session.expect("registered"),
            seq: Seq(self.seq),
            ack: Seq(self.seq - 1),
            payload: kv.encode().unwrap(),
        };
        match self.call_following(command) {
            Outcome::Applied { payload } => KvResponse::decode(&payload).unwrap(),
            other => panic!("op: {other:?}"),
        }
    }
}
