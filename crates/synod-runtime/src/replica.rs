//! Starting, observing and stopping a replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use synod_log::{GroupCommit, Options, ThreadPreallocate, Wal};
use synod_paxos::{Config, ConfigError, Durable, Paxos};
use synod_replica::{Limits, ReplicaCore};
use synod_state_machine::{Applier, StateMachine};
use synod_transport::{Node, NodeConfig};
use synod_wire::{NodeId, Slot};

use crate::apply::ApplyThread;
use crate::config::ReplicaConfig;
use crate::shell::{ApplyJob, Event, Parts, Shell};
use crate::status::{Status, StatusHandle};

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The cluster membership or timing is invalid.
    #[error("invalid cluster configuration: {0}")]
    Config(#[from] ConfigError),
    /// The write-ahead log could not be opened (a corrupt log refuses to start).
    #[error("cannot open the log in {dir}: {source}")]
    Log {
        /// The data directory.
        dir: String,
        /// What went wrong.
        #[source]
        source: synod_log::OpenError,
    },
    /// The transport could not start.
    #[error("cannot start the transport: {0}")]
    Transport(#[from] synod_transport::StartError),
    /// A thread could not be spawned.
    #[error("cannot spawn a thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running replica. Dropping it shuts it down.
#[derive(Debug)]
pub struct Replica {
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
    ticker: Option<JoinHandle<()>>,
    applier: Option<JoinHandle<()>>,
    transport: Option<Arc<Node>>,
    log: Arc<Mutex<Option<GroupCommit>>>,
    cert_watch: Option<JoinHandle<()>>,
}

impl Replica {
    /// Recovers the log in `config.data_dir`, starts the transport, the
    /// log, apply and tick threads, and begins serving.
    pub fn start<S: StateMachine + Send + 'static>(
        config: ReplicaConfig,
        machine: S,
    ) -> Result<Replica, StartError> {
        let members: Vec<NodeId> = config.peers.keys().copied().collect();
        let paxos_config = Config::new(config.id, members)?
            .with_timing(config.timing.heartbeat_ticks, config.timing.election_ticks)?
            .with_window(config.max_in_flight.max(1))?;
        let dir = config.data_dir.display().to_string();
        let options = Options::new().segment_size(config.segment_bytes).preallocate(ThreadPreallocate);
        let (wal, recovery) = Wal::open(&config.data_dir, options)
            .map_err(|source| StartError::Log { dir: dir.clone(), source })?;
        if let Some(torn) = &recovery.torn {
            tracing::warn!(%dir, ?torn, "recovered a torn log tail");
        }
        let records = recovery.records.len();
        let durable = Durable::replay(recovery.records);
        let core = Paxos::recover(paxos_config, seed(config.id), durable, Slot(0));
        tracing::info!(id = %config.id, records, commit = %core.first_unchosen(), "recovered");

        let shell = Arc::new(Shell::new());
        let stop = shell.stop_flag();
        let status = Arc::new(Mutex::new(Status { id: config.id, ..Status::default() }));

        let log_shell = shell.clone();
        let (group, appender) = GroupCommit::spawn(wal, move |event| log_shell.input(Event::Log(event)));
        let log = Arc::new(Mutex::new(Some(group)));

        let net_shell = shell.clone();
        let transport = Arc::new(Node::start(
            NodeConfig {
                id: config.id,
                peers: config.peers.clone(),
                credentials: config.credentials.clone(),
                settings: config.transport.clone(),
            },
            move |inbound| net_shell.input(Event::Net(inbound)),
        )?);

        let (apply_tx, apply_rx) = crossbeam_channel::unbounded::<ApplyJob>();
        let apply = ApplyThread {
            applier: Applier::new(machine, config.sessions),
            transport: transport.clone(),
            status: status.clone(),
            stop_replica: stop.clone(),
        };
        let applier_thread = std::thread::Builder::new()
            .name(format!("synod-apply-{}", config.id.0))
            .spawn(move || apply.run(apply_rx))?;
        let limits =
            Limits::with_batches(config.max_in_flight, config.max_batch_commands, config.max_batch_bytes);
        shell.install(
            ReplicaCore::new(core, limits),
            Parts {
                transport: transport.clone(),
                appender,
                apply: apply_tx,
                status: status.clone(),
                data_dir: config.data_dir.clone(),
            },
        );
        let tick = config.timing.tick;
        let ticker = shell.clone();
        let ticker_thread = std::thread::Builder::new()
            .name(format!("synod-tick-{}", config.id.0))
            .spawn(move || ticker.run_ticks(tick))
            .inspect_err(|_| shell.stop_core())?;
        let cert_watch = crate::cert_watch::spawn(config.id, config.credentials.cert(), stop.clone());
        Ok(Replica {
            stop,
            status,
            ticker: Some(ticker_thread),
            applier: Some(applier_thread),
            transport: Some(transport),
            log,
            cert_watch,
        })
    }

    /// A snapshot of the replica's state.
    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    /// A handle that reads this replica's status from any thread, for as
    /// long as it is kept (a health check's, say); it outlives the replica,
    /// and then reports the last status.
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle { status: self.status.clone(), stop: self.stop.clone() }
    }

    /// The transport's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.transport.as_ref().expect("present until shutdown").local_addr()
    }

    /// Waits until `cond` holds for the status, or `timeout` passes; returns whether it held.
    pub fn wait_for(&self, timeout: Duration, cond: impl Fn(&Status) -> bool) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if cond(&self.status()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cond(&self.status())
    }

    /// Whether the core stopped (on shutdown or a fatal error).
    pub fn is_stopped(&self) -> bool {
        self.ticker.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops serving: the core stops, queued log writes are flushed, connections close.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        // The tick thread dropped the core and with it the apply channel's sender; the apply thread drains and exits.
        if let Some(t) = self.applier.take() {
            let _ = t.join();
        }
        if let Some(t) = self.cert_watch.take() {
            let _ = t.join();
        }
        if let Some(group) = self.log.lock().take() {
            drop(group.shutdown());
        }
        // The transport stops its own runtime when dropped, which panics
        // inside an async context; drop it on a plain thread so that a
        // replica can be shut down from async code too.
        if let Some(transport) = self.transport.take() {
            let _ = std::thread::spawn(move || drop(transport)).join();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A seed for the election timer: replicas must differ, runs need not repeat.
fn seed(id: NodeId) -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ u64::from(id.0).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
