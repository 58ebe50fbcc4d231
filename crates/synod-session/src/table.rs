//! The session table and its snapshot format.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rkyv::{Archive, Deserialize, Serialize};
use synod_wire::{ClientId, Seq};

/// Limits of the session table. Every replica must use the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// The most sessions kept; registering one more evicts the least recently active.
    pub max_sessions: usize,
    /// A session idle this long (by leader timestamps) expires.
    pub expiry_ms: u64,
    /// How far past its acknowledged request a client may number a request;
    /// this bounds the answers a session caches.
    pub window: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { max_sessions: 100_000, expiry_ms: 10 * 60 * 1000, window: 4096 }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time seen: apply it, then call [`SessionTable::complete`].
    Apply,
    /// Already applied: this is the answer it got.
    Duplicate(Vec<u8>),
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session does not exist, or expired or was evicted.
    #[error("unknown or expired session")]
    Unknown,
    /// The request is at or below the client's acknowledged number; its answer is gone.
    #[error("request already acknowledged")]
    Stale,
    /// The request is numbered too far past the acknowledged one.
    #[error("request numbered too far ahead")]
    TooFarAhead,
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session snapshot: {0}")]
pub struct RestoreError(String);

/// Counters of the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Sessions registered.
    pub registered: u64,
    /// Sessions expired by time.
    pub expired: u64,
    /// Sessions evicted because the table was full.
    pub evicted: u64,
    /// Retries answered from the cache.
    pub duplicates: u64,
    /// Requests refused.
    pub refused: u64,
}

/// A session as snapshots hold it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
struct Session {
    last_active_ms: u64,
    /// Every request numbered up to here has been answered and acknowledged.
    ack: u64,
    /// Answers to applied requests above `ack`.
    replies: BTreeMap<u64, Vec<u8>>,
}

/// The table as snapshots hold it: sorted, so equal tables give equal bytes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
struct Image {
    clock_ms: u64,
    sessions: BTreeMap<u64, Session>,
}

/// A session as the table keeps it while applying.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Live {
    last_active_ms: u64,
    /// Every request numbered up to here has been answered and acknowledged.
    ack: u64,
    /// Answers to applied requests above `ack`, by request number, ascending.
    /// Clients number requests in order, so answers arrive at the back and
    /// leave from the front, and the buffer is reused rather than reallocated.
    replies: VecDeque<(u64, Vec<u8>)>,
}

impl Live {
    fn reply(&self, seq: u64) -> Option<&Vec<u8>> {
        let at = self.replies.binary_search_by_key(&seq, |&(k, _)| k).ok()?;
        Some(&self.replies[at].1)
    }

    fn insert_reply(&mut self, seq: u64, reply: Vec<u8>) {
        if self.replies.back().is_none_or(|&(k, _)| k < seq) {
            self.replies.push_back((seq, reply));
            return;
        }
        match self.replies.binary_search_by_key(&seq, |&(k, _)| k) {
            Ok(at) => self.replies[at].1 = reply,
            Err(at) => self.replies.insert(at, (seq, reply)),
        }
    }
}

/// Session ids are log positions, not attacker-chosen: a fixed fast hasher
/// will do, and iteration order is never observed (snapshots sort).
type Sessions = HashMap<u64, Live, foldhash::fast::FixedState>;

/// The replicated table of client sessions.
#[derive(Debug, Clone)]
pub struct SessionTable {
    cfg: SessionConfig,
    clock_ms: u64,
    sessions: Sessions,
    /// The eviction and expiry order: `(last_active_ms, client)` pushed each
    /// time a session's activity time moves. The clock never goes back, so
    /// the queue is sorted by time; an entry whose time is no longer its
    /// session's is stale and skipped. Sessions active at the same time
    /// leave in order of id, whatever their order in the queue, so a table
    /// restored from a snapshot behaves exactly like the original.
    activity: VecDeque<(u64, u64)>,
    stats: SessionStats,
}

impl PartialEq for SessionTable {
    /// Tables are equal when their replicated contents are (the queue is derived from them).
    fn eq(&self, other: &SessionTable) -> bool {
        self.cfg == other.cfg && self.clock_ms == other.clock_ms && self.sessions == other.sessions
    }
}

impl Eq for SessionTable {}

impl SessionTable {
    /// An empty table.
    pub fn new(cfg: SessionConfig) -> SessionTable {
        SessionTable {
            cfg,
            clock_ms: 0,
            sessions: Sessions::default(),
            activity: VecDeque::new(),
            stats: SessionStats::default(),
        }
    }

    /// A table restored from [`SessionTable::snapshot`] bytes.
    pub fn restore(cfg: SessionConfig, bytes: &[u8]) -> Result<SessionTable, RestoreError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        let image = rkyv::from_bytes::<Image, rkyv::rancor::Error>(&aligned)
            .map_err(|e| RestoreError(e.to_string()))?;
        let sessions = image
            .sessions
            .into_iter()
            .map(|(id, s)| {
                let Session { last_active_ms, ack, replies } = s;
                (id, Live { last_active_ms, ack, replies: replies.into_iter().collect() })
            })
            .collect();
        let mut table = SessionTable {
            cfg,
            clock_ms: image.clock_ms,
            sessions,
            activity: VecDeque::new(),
            stats: SessionStats::default(),
        };
        table.rebuild_activity();
        Ok(table)
    }

    /// Moves the table's clock to the leader timestamp `ts_ms` (never
    /// backwards) and expires idle sessions. Returns the expired ids.
    pub fn advance_clock(&mut self, ts_ms: u64) -> Vec<ClientId> {
        self.clock_ms = self.clock_ms.max(ts_ms);
        let mut expired = Vec::new();
        while let Some((active, _)) = self.oldest() {
            if active.saturating_add(self.cfg.expiry_ms) > self.clock_ms {
                break;
            }
            let id = self.remove_oldest().expect("a session is active");
            self.stats.expired += 1;
            expired.push(id);
        }
        expired
    }

    /// Whether queue entry `(active, id)` is its session's current one.
    fn is_current(&self, (active, id): (u64, u64)) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.last_active_ms == active)
    }

    /// The activity time of the least recently active session (stale entries dropped).
    fn oldest(&mut self) -> Option<(u64, u64)> {
        while let Some(&front) = self.activity.front() {
            if self.is_current(front) {
                return Some(front);
            }
            self.activity.pop_front();
        }
        None
    }

    /// Removes the least recently active session, the lowest id among equals.
    fn remove_oldest(&mut self) -> Option<ClientId> {
        let (active, _) = self.oldest()?;
        let (at, &(_, id)) = self
            .activity
            .iter()
            .enumerate()
            .take_while(|(_, &(t, _))| t == active)
            .filter(|(_, &e)| self.is_current(e))
            .min_by_key(|(_, &(_, id))| id)?;
        self.activity.remove(at);
        self.sessions.remove(&id);
        Some(ClientId(id))
    }

    /// Records that session `id` was active now.
    fn touch_live(activity: &mut VecDeque<(u64, u64)>, s: &mut Live, id: u64, clock: u64) {
        if s.last_active_ms != clock {
            s.last_active_ms = clock;
            activity.push_back((clock, id));
        }
    }

    /// Stale entries are dropped as the front passes them; keep the rest bounded too.
    fn bound_activity(&mut self) {
        if self.activity.len() > 2 * self.sessions.len() + 64 {
            let sessions = &self.sessions;
            self.activity.retain(|&(t, id)| sessions.get(&id).is_some_and(|s| s.last_active_ms == t));
        }
    }

    fn rebuild_activity(&mut self) {
        let mut entries: Vec<(u64, u64)> =
            self.sessions.iter().map(|(&id, s)| (s.last_active_ms, id)).collect();
        entries.sort_unstable();
        self.activity = entries.into();
    }

    /// Opens session `id` at leader time `ts_ms` (after [`SessionTable::advance_clock`]).
    /// A full table first evicts the least recently active session, which is returned.
    pub fn register(&mut self, id: ClientId, ts_ms: u64) -> Option<ClientId> {
        self.advance_clock(ts_ms);
        let mut evicted = None;
        if !self.sessions.contains_key(&id.0) && self.sessions.len() >= self.cfg.max_sessions {
            evicted = self.remove_oldest();
            if evicted.is_some() {
                self.stats.evicted += 1;
            }
        }
        let clock = self.clock_ms;
        // A session re-registered keeps no answers; its old queue entry goes stale.
        self.sessions.insert(id.0, Live { last_active_ms: clock, ..Live::default() });
        self.activity.push_back((clock, id.0));
        self.stats.registered += 1;
        evicted
    }

    /// Decides what to do with request `seq` of `client`, which has had
    /// every request up to `ack` answered. Marks the session active.
    pub fn begin(&mut self, client: ClientId, seq: Seq, ack: Seq) -> Result<Begin, SessionError> {
        let window = self.cfg.window;
        let clock = self.clock_ms;
        let result = match self.sessions.get_mut(&client.0) {
            None => Err(SessionError::Unknown),
            Some(s) => {
                if ack.0 > s.ack && ack.0 < seq.0 {
                    // The client has all answers up to `ack`: forget them.
                    s.ack = ack.0;
                    while s.replies.front().is_some_and(|&(k, _)| k <= ack.0) {
                        s.replies.pop_front();
                    }
                }
                let result = if seq.0 <= s.ack {
                    Err(SessionError::Stale)
                } else if seq.0 > s.ack.saturating_add(window) {
                    Err(SessionError::TooFarAhead)
                } else if let Some(reply) = s.reply(seq.0) {
                    Ok(Begin::Duplicate(reply.clone()))
                } else {
                    Ok(Begin::Apply)
                };
                Self::touch_live(&mut self.activity, s, client.0, clock);
                result
            }
        };
        match &result {
            Err(_) => self.stats.refused += 1,
            Ok(Begin::Duplicate(_)) => self.stats.duplicates += 1,
            Ok(Begin::Apply) => {}
        }
        self.bound_activity();
        result
    }

    /// Records the answer to a request [`SessionTable::begin`] said to apply.
    pub fn complete(&mut self, client: ClientId, seq: Seq, reply: Vec<u8>) {
        if let Some(s) = self.sessions.get_mut(&client.0) {
            s.insert_reply(seq.0, reply);
        }
    }

    /// The table as bytes, for a snapshot of the replicated state.
    pub fn snapshot(&self) -> Vec<u8> {
        let sessions = self
            .sessions
            .iter()
            .map(|(&id, s)| {
                let replies = s.replies.iter().cloned().collect();
                (id, Session { last_active_ms: s.last_active_ms, ack: s.ack, replies })
            })
            .collect();
        let image = Image { clock_ms: self.clock_ms, sessions };
        rkyv::to_bytes::<rkyv::rancor::Error>(&image).expect("a session table always serializes").into_vec()
    }

    /// Whether `client` has a live session.
    pub fn contains(&self, client: ClientId) -> bool {
        self.sessions.contains_key(&client.0)
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The table's clock: the highest leader timestamp applied.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }
}
