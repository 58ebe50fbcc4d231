//! synod-kv: the key-value store bundled with synod, a [`StateMachine`].
//!
//! Commands and answers are [`KvCommand`] and [`KvResponse`] from the wire
//! crate (re-exported by `synod-state-machine`), so clients need only the
//! wire crate to speak to it. Keys live in a hash map with a fixed hasher;
//! snapshots sort them (by hash, then bytes), so snapshots and every answer
//! are the same on every replica. The store streams its snapshots
//! ([`KvStore::snapshot_to`]) with no copy of its state; `snapshot` and
//! `snapshot_to` write the same bytes.
//!
//! # The frozen view
//!
//! A snapshot is taken without stalling applies. The map is split by key
//! hash into shards, each a hash map behind an [`Arc`], copy-on-write; their
//! number doubles as the store grows (about 128 keys a shard), to 16,384
//! from two million keys on. [`KvStore::snapshot_source`] (the store's
//! [`StateMachine::snapshot_source`]) takes a frozen view of the whole store
//! by cloning those `Arc`s, not the entries: about a tenth of a millisecond
//! on the applying thread at two million keys, a few microseconds for a
//! small store. The view is then written out on another thread (the keys
//! are sorted there) while the store goes on applying: the first write to
//! a shard that a view still holds copies that one shard (some 128 entries,
//! tens of microseconds) and changes the copy, so the view never sees it.
//! Each shard is thus copied at most once per view, and only if written
//! while the view still holds it: the view lets go of each shard as soon as
//! it has written it, so a write after that copies nothing. The old copy is
//! freed by whichever side lets go of it last, usually the view's thread.
//! The view writes exactly the bytes `snapshot_to` wrote when it was taken.
//! While no view lives, a write checks its shard's count with one plain load
//! (the `Arc` is `triomphe`'s, which has no weak count and so needs no
//! locked instruction for it).
//!
//! ```
//! use synod_kv::{KvCommand, KvResponse, KvStore};
//! use synod_state_machine::StateMachine;
//!
//! let mut kv = KvStore::default();
//! let put = KvCommand::Put { key: b"k".to_vec(), value: b"v".to_vec() };
//! assert_eq!(kv.execute(&put), KvResponse::Stored);
//! let get = KvCommand::Get { key: b"k".to_vec() };
//! assert_eq!(kv.execute(&get), KvResponse::Value(Some(b"v".to_vec())));
//! // Through the StateMachine interface, commands are bytes.
//! assert!(!kv.apply(b"not a command").is_empty());
//! ```
#![warn(missing_docs)]

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::{BufWriter, Read, Write};
use std::sync::OnceLock;

use rkyv::option::ArchivedOption;
use rkyv::vec::ArchivedVec;
use triomphe::Arc;

use synod_state_machine::wire::{with_archived, ArchivedKvCommand, Wire};
use synod_state_machine::{RestoreError, SnapshotSource, StateMachine};

pub use synod_state_machine::wire::{KvCommand, KvFailure, KvPair, KvResponse, SetCondition};

/// A hasher with fixed keys: the same on every replica and every run, and
/// never seeded from the OS. Iteration order is never observed (snapshots
/// sort), so it only has to be fast; clients are authenticated, which is
/// our answer to hash flooding.
type FixedState = BuildHasherDefault<FoldHasher>;

/// A small multiply-rotate hasher over 8-byte words (after FxHash), with a
/// final mix so that hashbrown's use of the top bits sees every input bit.
#[derive(Debug, Default, Clone, Copy)]
struct FoldHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.0 = (self.0.rotate_left(26) ^ u64::from_le_bytes(c.try_into().expect("eight bytes")))
                .wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.0 = (self.0.rotate_left(26) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(26) ^ n as u64).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        let h = self.0 ^ (self.0 >> 32);
        h.wrapping_mul(K).rotate_left(20)
    }
}

/// The most key bytes kept inside the map's own table.
const INLINE_KEY: usize = 30;

/// The most value bytes kept inside the map's own table.
const INLINE_VALUE: usize = 102;

/// A key as the map keeps it: inline, a lookup compares keys without reaching
/// into another allocation (with 100,000 keys that extra cache miss was a
/// sixth of the core benchmark).
type Key = Bytes<INLINE_KEY>;

/// A value as the map keeps it: inline, next to its key, a put writes into
/// the cache lines its lookup just fetched. A value on the heap cost a second
/// cache miss per put, which the CPU paid for when the store buffer filled
/// (15 % of the core benchmark).
type Val = Bytes<INLINE_VALUE>;

/// Up to `N` bytes kept inline, more on the heap.
///
/// The heap form is owned, not shared: a put overwrites it without first
/// reading it. A shared (`Arc`) form would make copying a shard that a
/// snapshot's view holds cheaper, but checking its count before every
/// overwrite is a load that misses the cache, and it made puts of 200-byte
/// values over two million keys 60 % slower.
#[derive(Clone)]
enum Bytes<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Vec<u8>),
}

impl<const N: usize> Bytes<N> {
    fn new(src: &[u8]) -> Self {
        const { assert!(N <= u8::MAX as usize, "the inline length is a byte") };
        let mut b = Bytes::Inline { len: 0, bytes: [0; N] };
        b.set(src);
        b
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Bytes::Heap(b) => b,
        }
    }

    /// Replaces the bytes, reusing the heap buffer when they still need one.
    fn set(&mut self, src: &[u8]) {
        if src.len() > N {
            match self {
                Bytes::Heap(v) => {
                    v.clear();
                    v.extend_from_slice(src);
                }
                Bytes::Inline { .. } => *self = Bytes::Heap(src.to_vec()),
            }
            return;
        }
        if let Bytes::Heap(_) = self {
            *self = Bytes::Inline { len: 0, bytes: [0; N] };
        }
        if let Bytes::Inline { len, bytes } = self {
            bytes[..src.len()].copy_from_slice(src);
            *len = src.len() as u8;
        }
    }

    fn into_vec(self) -> Vec<u8> {
        match self {
            Bytes::Heap(v) => v,
            inline => inline.as_slice().to_vec(),
        }
    }
}

impl<const N: usize> Borrow<[u8]> for Bytes<N> {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const N: usize> Hash for Bytes<N> {
    /// Hashes exactly as the slice does, as [`Borrow`] requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl<const N: usize> PartialEq for Bytes<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for Bytes<N> {}

impl<const N: usize> std::fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// One part of the map: the keys whose hash picks it ([`KvStore::shard_of`]).
type Shard = HashMap<Key, Val, FixedState>;

/// The most bits of a key's hash that pick its shard: at most 16,384 shards.
const MAX_SHARD_BITS: u32 = 14;

/// A shard holds about 2^`SHARD_FILL` keys on average before the store
/// doubles its shards (until [`MAX_SHARD_BITS`]): copying one shard, on the
/// first write to it while a snapshot's view holds it, then stays short
/// (about 128 entries, even with two million keys), and a small store keeps
/// few. Fewer, larger shards (4,096 of 512 keys) made a view cheaper to take
/// (27 µs, not 120) but each copy longer (p99.9 of applies while a view was
/// written 600 µs, not 140).
const SHARD_FILL: u32 = 7;

/// A key's hash, with the fixed hasher.
fn hash_of(key: &[u8]) -> u64 {
    let mut h = FoldHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// The shard of a key of hash `hash` among `1 << bits` shards: the `bits`
/// bits below the top seven, which the shard's own table does not use
/// (hashbrown takes its bucket from the low bits and its tag from the top
/// seven). Doubling the shards splits shard `i` into `2i` and `2i + 1`.
fn shard_index(hash: u64, bits: u32) -> usize {
    (hash >> (64 - 7 - bits)) as usize & ((1 << bits) - 1)
}

/// How many bits pick the shard in a store of `len` keys.
fn shard_bits_for(len: usize) -> u32 {
    let mut bits = 0;
    while bits < MAX_SHARD_BITS && len > 1 << (bits + SHARD_FILL) {
        bits += 1;
    }
    bits
}

/// A map from byte keys to byte values.
///
/// Cloning it is cheap and copies nothing: the clones share their shards
/// until either writes to one (see the [module docs](crate)).
#[derive(Clone)]
pub struct KvStore {
    /// `1 << bits` shards.
    shards: Vec<Arc<Shard>>,
    bits: u32,
    /// The number of keys, over all shards.
    len: usize,
}

impl Default for KvStore {
    fn default() -> KvStore {
        KvStore { shards: vec![Arc::default()], bits: 0, len: 0 }
    }
}

impl PartialEq for KvStore {
    /// The same keys with the same values, however they are sharded.
    fn eq(&self, other: &KvStore) -> bool {
        self.len == other.len && self.entries().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for KvStore {}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

impl KvStore {
    /// Executes one decoded command.
    pub fn execute(&mut self, command: &KvCommand) -> KvResponse {
        match command {
            KvCommand::Get { key } => KvResponse::Value(self.get(key).map(<[u8]>::to_vec)),
            KvCommand::Put { key, value } => {
                self.insert(key, value);
                KvResponse::Stored
            }
            KvCommand::Delete { key } => KvResponse::Value(self.remove(key)),
            KvCommand::Cas { key, expected, new } => {
                let current = self.get(key).map(<[u8]>::to_vec);
                let swapped = current == *expected;
                if swapped {
                    match new {
                        Some(v) => self.insert(key, v),
                        None => drop(self.remove(key)),
                    };
                }
                KvResponse::Cas { swapped, current }
            }
            KvCommand::MultiGet { keys } => {
                KvResponse::Values(keys.iter().map(|k| self.get(k).map(<[u8]>::to_vec)).collect())
            }
            KvCommand::MultiPut { pairs } => {
                for p in pairs {
                    self.insert(&p.key, &p.value);
                }
                KvResponse::Stored
            }
            KvCommand::MultiPutIfAbsent { pairs } => {
                if pairs.iter().any(|p| self.get(&p.key).is_some()) {
                    return KvResponse::Integer(0);
                }
                for p in pairs {
                    self.insert(&p.key, &p.value);
                }
                KvResponse::Integer(1)
            }
            KvCommand::Incr { key, by } => {
                let current = match self.get(key) {
                    None => 0,
                    Some(v) => match parse_i64(v) {
                        Some(n) => n,
                        None => return KvResponse::Failed(KvFailure::NotAnInteger),
                    },
                };
                match current.checked_add(*by) {
                    Some(n) => {
                        self.insert(key, n.to_string().as_bytes());
                        KvResponse::Integer(n)
                    }
                    None => KvResponse::Failed(KvFailure::Overflow),
                }
            }
            KvCommand::Append { key, value } => {
                let mut new = self.get(key).map(<[u8]>::to_vec).unwrap_or_default();
                new.extend_from_slice(value);
                self.insert(key, &new);
                KvResponse::Integer(new.len() as i64)
            }
            KvCommand::Strlen { key } => KvResponse::Integer(self.get(key).map_or(0, <[u8]>::len) as i64),
            KvCommand::Exists { keys } => {
                KvResponse::Integer(keys.iter().filter(|k| self.get(k).is_some()).count() as i64)
            }
            KvCommand::Set { key, value, condition } => {
                let previous = self.get(key).map(<[u8]>::to_vec);
                let stored = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => previous.is_none(),
                    SetCondition::IfPresent => previous.is_some(),
                };
                if stored {
                    self.insert(key, value);
                }
                KvResponse::Set { stored, previous }
            }
            KvCommand::DeleteMany { keys } => {
                KvResponse::Integer(keys.iter().filter(|k| self.remove(k).is_some()).count() as i64)
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.shards[self.shard_of(key)].get(key).map(Val::as_slice)
    }

    /// Every entry, in no particular order.
    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.shards.iter().flat_map(|shard| shard.iter()).map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The index of `key`'s shard.
    fn shard_of(&self, key: &[u8]) -> usize {
        shard_index(hash_of(key), self.bits)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A frozen view of the store as it is now, cheap to take (it clones
    /// the shards' `Arc`s, no entry), written out later on any thread in
    /// exactly the bytes [`KvStore::snapshot_to`] writes now: see the
    /// [module docs](crate). The same as [`StateMachine::snapshot_source`].
    pub fn snapshot_source(&self) -> Box<dyn SnapshotSource> {
        Box::new(KvSnapshot { shards: self.shards.clone() })
    }

    /// The shard of `key`, to change: copied first if a view shares it.
    fn shard_mut(&mut self, key: &[u8]) -> &mut Shard {
        let i = self.shard_of(key);
        Arc::make_mut(&mut self.shards[i])
    }

    /// Doubles the shards: each splits in two by one more bit of its keys'
    /// hashes. Like a hash table's growth, it moves every entry, once per
    /// doubling; a shard a view still holds is copied, not moved.
    fn split(&mut self) {
        let bits = self.bits + 1;
        let old = std::mem::take(&mut self.shards);
        let mut tables = Vec::with_capacity(old.len() * 2);
        for shard in old {
            let half = shard.len() / 2 + 1;
            let mut halves = [
                Shard::with_capacity_and_hasher(half, FixedState::default()),
                Shard::with_capacity_and_hasher(half, FixedState::default()),
            ];
            let side = |k: &Key| shard_index(hash_of(k.as_slice()), bits) & 1;
            match Arc::try_unwrap(shard) {
                Ok(owned) => owned.into_iter().for_each(|(k, v)| drop(halves[side(&k)].insert(k, v))),
                Err(shared) => {
                    shared.iter().for_each(|(k, v)| drop(halves[side(k)].insert(k.clone(), v.clone())))
                }
            }
            tables.extend(halves);
        }
        // The shards' headers (count and table pointer), read by every
        // access, allocated together after the tables: they share pages and
        // cache lines instead of sitting each next to its own table.
        let shards = tables.into_iter().map(Arc::new).collect();
        self.shards = shards;
        self.bits = bits;
    }

    /// Sets `key` to `value`, reusing the entry's storage when it exists.
    fn insert(&mut self, key: &[u8], value: &[u8]) {
        let shard = self.shard_mut(key);
        match shard.get_mut(key) {
            Some(v) => v.set(value),
            None => {
                shard.insert(Key::new(key), Val::new(value));
                self.len += 1;
                if self.len > 1 << (self.bits + SHARD_FILL) && self.bits < MAX_SHARD_BITS {
                    self.split();
                }
            }
        }
    }

    /// Removes `key`, returning its value.
    fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        // A miss changes nothing: copy no shared shard for it.
        if !self.shards[self.shard_of(key)].contains_key(key) {
            return None;
        }
        let removed = self.shard_mut(key).remove(key).map(Val::into_vec);
        self.len -= usize::from(removed.is_some());
        removed
    }
}

/// A frozen view of a [`KvStore`]: the shards as they were when it was taken.
struct KvSnapshot {
    shards: Vec<Arc<Shard>>,
}

impl SnapshotSource for KvSnapshot {
    /// Lets go of each shard once it is written: the store's next write to
    /// it then finds it unshared and copies nothing.
    fn write_to(self: Box<Self>, out: &mut dyn Write) -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(64 << 10, out);
        write_count(&self.shards, &mut out)?;
        for shard in self.shards {
            write_shard(&shard, &mut out)?;
        }
        out.flush()
    }
}

impl KvStore {
    /// Executes one command read in place from its encoding: only what the
    /// store keeps is copied.
    fn execute_archived(&mut self, command: &ArchivedKvCommand) -> KvResponse {
        match command {
            ArchivedKvCommand::Get { key } => KvResponse::Value(self.get(key).map(<[u8]>::to_vec)),
            ArchivedKvCommand::Put { key, value } => {
                self.insert(key, value);
                KvResponse::Stored
            }
            ArchivedKvCommand::Delete { key } => KvResponse::Value(self.remove(key)),
            ArchivedKvCommand::Cas { key, expected, new } => {
                let current = self.get(key).map(<[u8]>::to_vec);
                let swapped = current.as_deref() == opt(expected);
                if swapped {
                    match opt(new) {
                        Some(v) => self.insert(key, v),
                        None => drop(self.remove(key)),
                    };
                }
                KvResponse::Cas { swapped, current }
            }
            // The rarer commands: decoded, then executed.
            other => match rkyv::deserialize::<KvCommand, rkyv::rancor::Error>(other) {
                Ok(command) => self.execute(&command),
                Err(_) => KvResponse::Invalid("undecodable command".to_owned()),
            },
        }
    }
}

/// A value as Redis's INCR reads it: base-10, an optional `-`, no `+`, no
/// spaces, no leading zeros (except `0` itself), within `i64`.
fn parse_i64(v: &[u8]) -> Option<i64> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || v.len() > digits.len()) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn opt(v: &ArchivedOption<ArchivedVec<u8>>) -> Option<&[u8]> {
    v.as_ref().map(|v| v.as_slice())
}

/// The encoding of [`KvResponse::Stored`], the answer to every put: made once.
fn stored() -> &'static [u8] {
    static STORED: OnceLock<Vec<u8>> = OnceLock::new();
    STORED.get_or_init(|| KvResponse::Stored.encode().expect("a unit variant encodes"))
}

impl StateMachine for KvStore {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let response = match with_archived::<KvCommand, _>(command, |c| self.execute_archived(c)) {
            Ok(KvResponse::Stored) => return stored().to_vec(),
            Ok(response) => response,
            // rkyv's error text can name buffer addresses, which differ
            // between replicas: answer with a fixed message instead.
            Err(_) => KvResponse::Invalid(format!("undecodable command of {} bytes", command.len())),
        };
        response.encode().unwrap_or_else(|_| {
            // Only an answer over the frame limit gets here; say so, identically everywhere.
            KvResponse::Invalid("answer exceeds the frame limit".to_owned()).encode().unwrap_or_default()
        })
    }

    /// A `get` outside the log, answered as applying it would; any other
    /// command is not a read and is answered `Invalid`, changing nothing.
    fn read(&self, query: &[u8]) -> Option<Vec<u8>> {
        let response = match with_archived::<KvCommand, _>(query, |c| match c {
            ArchivedKvCommand::Get { key } => KvResponse::Value(self.get(key.as_slice()).map(<[u8]>::to_vec)),
            ArchivedKvCommand::MultiGet { keys } => {
                KvResponse::Values(keys.iter().map(|k| self.get(k.as_slice()).map(<[u8]>::to_vec)).collect())
            }
            ArchivedKvCommand::Exists { keys } => {
                KvResponse::Integer(keys.iter().filter(|k| self.get(k.as_slice()).is_some()).count() as i64)
            }
            ArchivedKvCommand::Strlen { key } => {
                KvResponse::Integer(self.get(key.as_slice()).map_or(0, <[u8]>::len) as i64)
            }
            _ => KvResponse::Invalid(
                "only get, multi-get, exists and strlen are served as reads outside the log".to_owned(),
            ),
        }) {
            Ok(response) => response,
            Err(_) => KvResponse::Invalid(format!("undecodable query of {} bytes", query.len())),
        };
        Some(response.encode().unwrap_or_else(|_| {
            KvResponse::Invalid("answer exceeds the frame limit".to_owned()).encode().unwrap_or_default()
        }))
    }

    /// Reads are hash-table lookups: served on the thread that got their index.
    fn quick_reads(&self) -> bool {
        true
    }

    /// The bytes [`KvStore::snapshot_to`] writes.
    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_entries(&self.shards, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Accepts exactly what [`KvStore::snapshot_to`] writes. On error nothing changed.
    fn restore(&mut self, mut snapshot: &[u8]) -> Result<(), RestoreError> {
        let store = read_entries(&mut snapshot)?;
        if !snapshot.is_empty() {
            return Err(RestoreError::new(format!("{} bytes follow the store's entries", snapshot.len())));
        }
        *self = store;
        Ok(())
    }

    /// Streams the entries in snapshot order, with no copy of the state: see
    /// [`KvStore::snapshot_to`].
    fn snapshot_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(64 << 10, out);
        write_entries(&self.shards, &mut out)?;
        out.flush()
    }

    /// A frozen view, cheap to take: see [`KvStore::snapshot_source`].
    fn snapshot_source(&self) -> Box<dyn SnapshotSource> {
        KvStore::snapshot_source(self)
    }

    /// Reads exactly the entries [`KvStore::snapshot_to`] wrote and nothing
    /// after them. On error nothing changed.
    fn restore_from(&mut self, input: &mut dyn Read) -> Result<(), RestoreError> {
        *self = read_entries(input)?;
        Ok(())
    }
}

impl KvStore {
    /// Writes the store's snapshot to `out`, as [`StateMachine::snapshot_to`]
    /// does. The format, the same as [`StateMachine::snapshot`]'s bytes: the
    /// eight bytes `synodkv2`, the number of keys as a little-endian `u64`,
    /// then for each key the key's and the value's lengths as little-endian
    /// `u32`s, the key and the value. Keys come in ascending order of their
    /// fixed hash with its top seven bits moved to the bottom (whose top
    /// bits pick the key's shard), then of their bytes: the writer sorts one
    /// shard's references at a time, never a copy of the state, and never
    /// the whole store at once. Restoring also reads the format before this
    /// one (no tag; the number of keys first, keys in ascending byte order).
    pub fn snapshot_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        StateMachine::snapshot_to(self, out)
    }
}

/// The first eight bytes of a snapshot whose entries are in hash order
/// ([`KvStore::snapshot_to`]). A snapshot written before that order began
/// with the number of keys instead, which is never this large.
const HASH_ORDER: [u8; 8] = *b"synodkv2";

/// Where a key of hash `hash` sorts in a snapshot: by this, then by its
/// bytes. The top bits are the ones that pick a key's shard
/// ([`shard_index`]) among any number of shards, so each shard's keys are
/// one run of the order, and the writer sorts a shard at a time.
fn snapshot_order(hash: u64) -> u64 {
    hash.rotate_left(7)
}

/// Writes the entries of `shards` in the snapshot format: see [`KvStore::snapshot_to`].
fn write_entries<W: Write>(shards: &[Arc<Shard>], out: &mut W) -> std::io::Result<()> {
    write_count(shards, out)?;
    for shard in shards {
        write_shard(shard, out)?;
    }
    Ok(())
}

/// The snapshot's tag and its number of keys.
fn write_count<W: Write>(shards: &[Arc<Shard>], out: &mut W) -> std::io::Result<()> {
    out.write_all(&HASH_ORDER)?;
    out.write_all(&(shards.iter().map(|s| s.len() as u64).sum::<u64>()).to_le_bytes())
}

/// One shard's entries, in snapshot order.
///
/// Sorted, so that equal stores give equal snapshots whatever the hash
/// tables' history; a shard at a time (about 128 entries, in cache), not
/// all at once: sorting two million keys by their bytes took most of a
/// snapshot's time, in comparisons that each missed the cache twice.
fn write_shard<W: Write>(shard: &Shard, out: &mut W) -> std::io::Result<()> {
    let mut entries: Vec<(u64, &[u8], &[u8])> = shard
        .iter()
        .map(|(k, v)| (snapshot_order(hash_of(k.as_slice())), k.as_slice(), v.as_slice()))
        .collect();
    entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (_, key, value) in entries {
        let mut lengths = [0u8; 8];
        lengths[..4].copy_from_slice(&length(key)?.to_le_bytes());
        lengths[4..].copy_from_slice(&length(value)?.to_le_bytes());
        out.write_all(&lengths)?;
        out.write_all(key)?;
        out.write_all(value)?;
    }
    Ok(())
}

fn length(bytes: &[u8]) -> std::io::Result<u32> {
    u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("a key or value of 4 GiB or more"))
}

/// Reads a snapshot's entries, refusing keys out of order (so a corrupted
/// snapshot seldom passes, and never as a different store of the same keys).
/// Reads both orders: hash order ([`HASH_ORDER`]), and the plain key order
/// of snapshots written before it.
fn read_entries(input: &mut dyn Read) -> Result<KvStore, RestoreError> {
    let mut head = [0u8; 8];
    input.read_exact(&mut head)?;
    let hash_order = head == HASH_ORDER;
    if hash_order {
        input.read_exact(&mut head)?;
    }
    let count = u64::from_le_bytes(head);
    // Sharded for the count; a garbage count must not allocate much, so the
    // shards' tables grow as entries arrive.
    let bits = shard_bits_for(usize::try_from(count).unwrap_or(usize::MAX));
    let per_shard = (count.min(1 << 16) as usize) >> bits;
    let mut shards: Vec<Shard> =
        (0..1 << bits).map(|_| Shard::with_capacity_and_hasher(per_shard, FixedState::default())).collect();
    let (mut key, mut prev, mut value) = (Vec::new(), Vec::new(), Vec::new());
    let mut prev_order = 0;
    for i in 0..count {
        let mut lengths = [0u8; 8];
        input.read_exact(&mut lengths)?;
        let key_len = u32::from_le_bytes(lengths[..4].try_into().expect("four bytes"));
        let value_len = u32::from_le_bytes(lengths[4..].try_into().expect("four bytes"));
        read_exactly(input, &mut key, key_len)?;
        read_exactly(input, &mut value, value_len)?;
        let hash = hash_of(&key);
        let order = if hash_order { snapshot_order(hash) } else { 0 };
        if i > 0 && (order, &key) <= (prev_order, &prev) {
            return Err(RestoreError::new(format!("key {i} of the snapshot is out of order")));
        }
        shards[shard_index(hash, bits)].insert(Key::new(&key), Val::new(&value));
        std::mem::swap(&mut key, &mut prev);
        prev_order = order;
    }
    Ok(KvStore { shards: shards.into_iter().map(Arc::new).collect(), bits, len: count as usize })
}

/// Reads `len` bytes into `buf`, allocating no more than the input holds
/// (or 64 KiB, for a short one).
fn read_exactly(input: &mut dyn Read, buf: &mut Vec<u8>, len: u32) -> Result<(), RestoreError> {
    buf.clear();
    if len <= 64 << 10 {
        buf.resize(len as usize, 0);
        input.read_exact(buf)?;
        return Ok(());
    }
    (&mut *input).take(u64::from(len)).read_to_end(buf)?;
    if buf.len() != len as usize {
        return Err(RestoreError::new("truncated snapshot"));
    }
    Ok(())
}
