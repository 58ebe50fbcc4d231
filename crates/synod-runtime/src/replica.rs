//! Starting, observing and stopping a replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use synod_log::{GroupCommit, Options, ThreadPreallocate, Wal};
use synod_paxos::{Config, ConfigError, Durable, Paxos};
use synod_replica::{Limits, ReplicaCore, SnapshotPolicy};
use synod_state_machine::{Applier, StateMachine};
use synod_transport::{Node, NodeConfig};
use synod_wire::{NodeId, Slot};

use crate::apply::{ApplyThread, InlineReader, InlineReads, ReadCounters};
use crate::config::ReplicaConfig;
use crate::shell::{ApplyJob, Event, Parts, Shell};
use crate::snapshot::{SnapshotJob, SnapshotThread};
use crate::status::{Status, StatusHandle};

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The cluster membership or timing is invalid.
    #[error("invalid cluster configuration: {0}")]
    Config(#[from] ConfigError),
    /// The replica is not in its own address book (`peers`) and is not joining.
    #[error("replica {0} is not among the peers it was given; a replica joining an existing cluster needs `join = true` and its own address among its peers (docs/OPERATIONS.md, \"Membership changes\")")]
    NotAPeer(NodeId),
    /// The write-ahead log could not be opened (a corrupt log refuses to start).
    #[error("cannot open the log in {dir}: {source}")]
    Log {
        /// The data directory.
        dir: String,
        /// What went wrong.
        #[source]
        source: synod_log::OpenError,
    },
    /// The snapshot the log needs is missing or damaged, or does not restore.
    #[error("{0}; move the data directory aside and start the replica on an empty one to rejoin from its peers (docs/OPERATIONS.md, \"Snapshot files\")")]
    Snapshot(String),
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
    snapshots: Option<JoinHandle<()>>,
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
        if !config.join && !config.peers.contains_key(&config.id) {
            return Err(StartError::NotAPeer(config.id));
        }
        crate::stats::describe_reads();
        let members: Vec<NodeId> = config.peers.keys().copied().collect();
        let paxos_config = if config.join {
            // The other replicas it knows are contacts, not configuration 0 of its own.
            Config::joining(config.id, members.iter().copied().filter(|&m| m != config.id))?
        } else {
            Config::new(config.id, members)?
        };
        let paxos_config = paxos_config
            .with_addresses(config.peers.iter().map(|(&id, addr)| (id, addr.to_string())))
            .with_timing(config.timing.heartbeat_ticks, config.timing.election_ticks)?
            .with_window(config.max_in_flight.max(1))?
            .with_leases(config.leases);
        let dir = config.data_dir.display().to_string();
        let options = Options::new().segment_size(config.segment_bytes).preallocate(ThreadPreallocate);
        let (wal, recovery) = Wal::open(&config.data_dir, options)
            .map_err(|source| StartError::Log { dir: dir.clone(), source })?;
        if let Some(torn) = &recovery.torn {
            tracing::warn!(%dir, ?torn, "recovered a torn log tail");
        }
        let records = recovery.records.len();
        let mut durable = Durable::replay(recovery.records);
        let (applier, newest) = restore(&config, machine, durable.snapshot_upto)?;
        if newest.is_some() {
            // The configuration in force at the snapshot; later ones are in the log after it.
            durable.membership = applier.membership().cloned();
        }
        let deliver_from = applier.next_slot();
        durable.raise_snapshot(deliver_from);
        let core = if records == 0 && newest.is_none() {
            // Nothing on disk: a new cluster's first start, or a new disk for an old identity.
            Paxos::rejoin(paxos_config, seed(config.id))
        } else {
            Paxos::recover(paxos_config, seed(config.id), durable, deliver_from)
        };
        tracing::info!(
            id = %config.id,
            records,
            snapshot = %deliver_from,
            commit = %core.first_unchosen(),
            rejoining = core.is_rejoining(),
            join = config.join,
            membership = %core.membership(),
            "recovered"
        );

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

        let (snap_tx, snap_rx) = crossbeam_channel::unbounded::<SnapshotJob>();
        let snapshots = SnapshotThread {
            dir: config.data_dir.clone(),
            transport: transport.clone(),
            chunk_bytes: config.snapshots.chunk_bytes.max(1) as usize,
            write_bytes_per_second: config.snapshots.write_bytes_per_second,
            sending: Default::default(),
            store: synod_log::SnapshotStore::new(
                Arc::new(synod_log::RealFs),
                &config.data_dir,
                newest.map(|(upto, path)| (upto.0, path)),
            ),
        };
        let snap_shell = shell.clone();
        let snapshot_thread = std::thread::Builder::new()
            .name(format!("synod-snap-{}", config.id.0))
            .spawn(move || snapshots.run(snap_rx, move |event| snap_shell.input(Event::Snapshot(event))))?;

        let (apply_tx, apply_rx) = crossbeam_channel::unbounded::<ApplyJob>();
        let quick_reads = applier.machine().quick_reads();
        let applier = Arc::new(Mutex::new(applier));
        let inline_reads: Option<Arc<dyn InlineReads>> = quick_reads.then(|| {
            Arc::new(InlineReader {
                applier: applier.clone(),
                transport: transport.clone(),
                counters: ReadCounters::new(),
                stopped: stop.clone(),
            }) as Arc<dyn InlineReads>
        });
        let apply = ApplyThread {
            applier,
            transport: transport.clone(),
            status: status.clone(),
            stop_replica: stop.clone(),
            snapshots: snap_tx.clone(),
            data_dir: config.data_dir.clone(),
        };
        let applier_thread = std::thread::Builder::new()
            .name(format!("synod-apply-{}", config.id.0))
            .spawn(move || apply.run(apply_rx))?;
        let limits =
            Limits::with_batches(config.max_in_flight, config.max_batch_commands, config.max_batch_bytes)
                .with_max_waiting(config.max_waiting);
        let policy = SnapshotPolicy {
            log_bytes: config.snapshots.log_bytes,
            retain_slots: config.snapshots.retain_slots,
        };
        shell.install(
            ReplicaCore::new(core, limits).with_snapshots(policy),
            Parts {
                transport: transport.clone(),
                appender,
                apply: apply_tx,
                snapshots: snap_tx,
                status: status.clone(),
                data_dir: config.data_dir.clone(),
                inline_reads,
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
            snapshots: Some(snapshot_thread),
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

    /// Opens client streams into this replica from inside its process, with
    /// no QUIC: hand it to `synod_client::ClientConfig::with_local` for a
    /// front end (a RESP listener) that runs beside the replica. The streams
    /// close when the replica shuts down.
    pub fn local_clients(&self) -> synod_transport::LocalClients {
        self.transport.as_ref().expect("present until shutdown").local_clients()
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
        // The core and the apply thread held the snapshot thread's senders; it finishes its jobs and exits.
        if let Some(t) = self.snapshots.take() {
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

/// The newest snapshot file: its slot and path.
type NewestSnapshot = (Slot, std::path::PathBuf);

/// The state machine restored from the newest snapshot in the data
/// directory (or a fresh one if there is none), and that snapshot's slot and
/// file. The log says a snapshot up to `logged` exists: a missing, older or
/// damaged one is a refusal to start, never a silent fallback.
fn restore<S: StateMachine>(
    config: &ReplicaConfig,
    machine: S,
    logged: Slot,
) -> Result<(Applier<S>, Option<NewestSnapshot>), StartError> {
    let dir = &config.data_dir;
    let fail = |e: synod_log::SnapshotError| StartError::Snapshot(e.to_string());
    // Partial files of a write or transfer a crash cut short are of no use.
    synod_log::remove_partial_snapshots(&synod_log::RealFs, dir).map_err(fail)?;
    let newest = synod_log::newest_snapshot(dir).map_err(fail)?;
    if let Some(damaged) = newest.as_ref().and_then(|f| f.skipped.first()) {
        return Err(StartError::Snapshot(damaged.to_string()));
    }
    let Some(file) = newest else {
        if logged > Slot(0) {
            return Err(StartError::Snapshot(format!(
                "the log in {} says a snapshot holds every slot below {logged}, but there is no snapshot file",
                dir.display()
            )));
        }
        return Ok((Applier::new(machine, config.sessions), None));
    };
    if file.upto < logged.0 {
        return Err(StartError::Snapshot(format!(
            "the log says a snapshot holds every slot below {logged}, but the newest, {}, stops at {}",
            file.path.display(),
            file.upto
        )));
    }
    let started = Instant::now();
    let reader = synod_log::SnapshotReader::open(&file.path).map_err(fail)?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, reader);
    let applier = Applier::restore_from(machine, config.sessions, &mut input)
        .map_err(|e| StartError::Snapshot(format!("{} does not restore: {e}", file.path.display())))?;
    if applier.next_slot() != Slot(file.upto) {
        return Err(StartError::Snapshot(format!(
            "{} is named for slot {} but holds the state up to slot {}",
            file.path.display(),
            file.upto,
            applier.next_slot()
        )));
    }
    tracing::info!(
        path = %file.path.display(),
        upto = file.upto,
        ms = started.elapsed().as_millis() as u64,
        "restored the state machine from a snapshot"
    );
    Ok((applier, Some((Slot(file.upto), file.path))))
}
