//! `cache_ops`: one thread runs a sequence of operations on a small cache
//! and, step by step, on a reference model, and every result is compared.
//!
//! The model cannot know which entry an eviction policy picks, so the
//! cache's eviction listener tells it (the idea of the engine's proptest
//! model, `crates/clockcache/tests/model.rs`): every departure is checked
//! against the model (right key, right value, a cause the operation
//! allows) and applied to it. Then the two must agree exactly: every
//! result, `len`, `weighted_size`, the statistics and the capacity bound
//! after every step, and the live contents of the key an operation names
//! after it, of every key every few steps, after an operation on many, and
//! at the end. At the end, once the cache is dropped, every value
//! created must have been dropped exactly once.
//!
//! What the fuzzer chooses beyond the operations: capacity (0 to 32),
//! shard count (1 to 8), policy, an optional weigher (weights 0 to 40, so
//! entries heavier than a shard's share and heavier than the whole cache
//! occur), and the expiry setting (none, a default time to live, a time to
//! idle, or a per-entry [`clockcache::Expiry`]).

use crate::tracked::{DropCounter, Tracked};
use arbitrary::{Arbitrary, Unstructured};
use clockcache::{Cache, CacheStats, EvictionPolicy, MockClock, RemovalCause};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Keys are `0..KEYS`.
pub const KEYS: u8 = 24;
/// Most operations run per input (the rest is ignored).
pub const MAX_OPS: usize = 2_000;
/// Every this many steps the contents are compared key by key (see
/// [`check`]).
const FULL_CHECK_EVERY: usize = 8;
const NEVER: u64 = u64::MAX;
const MS: u64 = 1_000_000;

/// The eviction policy.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Policy {
    /// [`EvictionPolicy::Clock`].
    Clock,
    /// [`EvictionPolicy::S3Fifo`].
    S3Fifo,
    /// [`EvictionPolicy::Adaptive`] (the default).
    Adaptive,
}

impl From<Policy> for EvictionPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Clock => EvictionPolicy::Clock,
            Policy::S3Fifo => EvictionPolicy::S3Fifo,
            Policy::Adaptive => EvictionPolicy::Adaptive,
        }
    }
}

/// The cache-wide expiry setting (durations in milliseconds).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum ExpirySetting {
    /// Entries inserted without a ttl never expire.
    None,
    /// A default time to live.
    Ttl(u8),
    /// A time to idle.
    Tti(u8),
    /// A per-entry [`clockcache::Expiry`] computed from the value (see
    /// [`per_entry_ttl`]).
    PerEntry(u8),
}

/// How a cache is built.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct Config {
    /// Taken modulo 33.
    pub capacity: u8,
    /// `1 << (shards % 4)` shards.
    pub shards: u8,
    /// The eviction policy.
    pub policy: Policy,
    /// With `Some(m)`, a value `v` weighs `v % (m % 41 + 1)`.
    pub weigher: Option<u8>,
    /// The expiry setting.
    pub expiry: ExpirySetting,
}

impl Config {
    /// The capacity the cache is built with.
    pub fn capacity(&self) -> u64 {
        u64::from(self.capacity % 33)
    }

    /// The shard count the cache is built with.
    pub fn shards(&self) -> usize {
        1 << (self.shards % 4)
    }

    /// The weight of value `v`.
    pub fn weight(&self, v: u16) -> u64 {
        match self.weigher {
            Some(m) => u64::from(v) % (u64::from(m % 41) + 1),
            None => 1,
        }
    }
}

/// The time to live the per-entry expiry gives value `v`, in nanoseconds.
pub fn per_entry_ttl(m: u8, v: u16) -> Option<u64> {
    let r = u64::from(v) % (u64::from(m % 8) + 2);
    (r != 0).then(|| (r - 1) * 3 * MS)
}

/// One operation. Keys are taken modulo [`KEYS`], durations are in
/// milliseconds.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Op {
    /// `insert(k, v)`.
    Insert(u8, u16),
    /// `insert_with_ttl(k, v, ttl)`; a ttl of 255 is `Duration::MAX`.
    InsertTtl(u8, u16, u8),
    /// `get(k)`.
    Get(u8),
    /// `peek(k)`.
    Peek(u8),
    /// `contains_key(k)`.
    ContainsKey(u8),
    /// `remove(k)`.
    Remove(u8),
    /// `get_or_insert_with(k, || v)`.
    GetOrInsert(u8, u16),
    /// `get_or_try_insert_with(k, ..)`, the loader failing if the flag is set.
    GetOrTryInsert(u8, u16, bool),
    /// `retain(|_, v| v % (m + 2) != 0)`.
    Retain(u8),
    /// `clear()`.
    Clear,
    /// `purge_expired()`.
    PurgeExpired,
    /// Advances the mock clock.
    Advance(u8),
    /// Collects `iter()`.
    Iter,
    /// `replace_if(k, v, |old| old % (m + 2) == 0)`.
    ReplaceIf(u8, u16, u8),
}

impl Op {
    /// The one key the operation names (modulo [`KEYS`]); `None` for an
    /// operation on every key or on none.
    pub fn key(&self) -> Option<u8> {
        match *self {
            Op::Insert(k, _)
            | Op::InsertTtl(k, _, _)
            | Op::Get(k)
            | Op::Peek(k)
            | Op::ContainsKey(k)
            | Op::Remove(k)
            | Op::GetOrInsert(k, _)
            | Op::GetOrTryInsert(k, _, _)
            | Op::ReplaceIf(k, _, _) => Some(k % KEYS),
            Op::Retain(_) | Op::Clear | Op::PurgeExpired | Op::Advance(_) | Op::Iter => None,
        }
    }
}

/// A fuzz input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// How the cache is built.
    pub config: Config,
    /// What is done to it.
    pub ops: Vec<Op>,
}

/// The fuzz target: decodes `data` and runs it (see [`check`]).
pub fn run(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        check(&input);
    }
}

#[derive(Clone, Copy, Debug)]
struct ModelEntry {
    val: u16,
    deadline: u64,
    idle: bool,
}

/// The model's map from the keys `0..KEYS`: an array (the fuzzer's
/// instrumentation makes a tree map the costliest part of a run).
#[derive(Default)]
struct KeyMap {
    slots: [Option<ModelEntry>; KEYS as usize],
    len: usize,
}

impl KeyMap {
    fn get(&self, k: &u8) -> Option<&ModelEntry> {
        self.slots[usize::from(*k)].as_ref()
    }

    fn get_mut(&mut self, k: &u8) -> Option<&mut ModelEntry> {
        self.slots[usize::from(*k)].as_mut()
    }

    fn insert(&mut self, k: u8, e: ModelEntry) -> Option<ModelEntry> {
        let old = self.slots[usize::from(k)].replace(e);
        self.len += usize::from(old.is_none());
        old
    }

    fn remove(&mut self, k: &u8) -> Option<ModelEntry> {
        let old = self.slots[usize::from(*k)].take();
        self.len -= usize::from(old.is_some());
        old
    }

    fn contains_key(&self, k: &u8) -> bool {
        self.get(k).is_some()
    }

    fn values(&self) -> impl Iterator<Item = &ModelEntry> {
        self.slots.iter().flatten()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The reference model: a map and a clock.
struct Model {
    cfg: Config,
    map: KeyMap,
    now: u64,
    stats: CacheStats,
}

impl Model {
    fn live(&self, k: u8) -> Option<u16> {
        self.map
            .get(&k)
            .filter(|e| e.deadline > self.now)
            .map(|e| e.val)
    }

    /// `get`: a hit pushes a time-to-idle deadline forward as the engine
    /// documents (only when it moves by more than 1/64 of the idle time).
    fn get(&mut self, k: u8) -> Option<u16> {
        let now = self.now;
        let tti = match self.cfg.expiry {
            ExpirySetting::Tti(t) => Some(u64::from(t) * MS),
            _ => None,
        };
        let hit = match self.map.get_mut(&k).filter(|e| e.deadline > now) {
            Some(e) => {
                if let (true, Some(tti)) = (e.idle && e.deadline != NEVER, tti) {
                    let next = now.saturating_add(tti).min(NEVER - 1);
                    if next > e.deadline.saturating_add(tti >> 6) {
                        e.deadline = next;
                    }
                }
                Some(e.val)
            }
            None => None,
        };
        if hit.is_some() {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        hit
    }

    fn deadline(&self, life: Option<u64>) -> u64 {
        match life {
            None => NEVER,
            Some(n) => self
                .now
                .checked_add(n)
                .filter(|&d| d < NEVER)
                .unwrap_or(NEVER),
        }
    }

    /// Stores `(k, v)` as an insert with `ttl` (nanoseconds) would; returns
    /// the live value it replaces, and the expired one it writes over (which
    /// leaves as expired, and the write counts as an insert).
    fn insert(&mut self, k: u8, v: u16, ttl: Option<u64>) -> (Option<KeyVal>, Option<KeyVal>) {
        let (life, idle) = match (ttl, self.cfg.expiry) {
            (Some(t), _) => (Some(t), false),
            (None, ExpirySetting::None) => (None, false),
            (None, ExpirySetting::Ttl(t)) => (Some(u64::from(t) * MS), false),
            (None, ExpirySetting::Tti(t)) => (Some(u64::from(t) * MS), true),
            (None, ExpirySetting::PerEntry(m)) => (per_entry_ttl(m, v), false),
        };
        let deadline = self.deadline(life);
        let old = self.map.insert(
            k,
            ModelEntry {
                val: v,
                deadline,
                idle: idle && deadline != NEVER,
            },
        );
        match old {
            Some(e) if e.deadline > self.now => {
                self.stats.updates += 1;
                (Some((k, e.val)), None)
            }
            Some(e) => {
                self.stats.inserts += 1;
                (None, Some((k, e.val)))
            }
            None => {
                self.stats.inserts += 1;
                (None, None)
            }
        }
    }

    fn weight(&self) -> u64 {
        self.map.values().map(|e| self.cfg.weight(e.val)).sum()
    }
}

/// What one operation may make leave the cache, besides what it replaces.
#[derive(Default)]
struct Allowed {
    replaced: Option<(u8, u16)>,
    /// The expired entry the operation writes over: it leaves as expired,
    /// and its departure must not take the new entry out of the model.
    expired_over: Option<(u8, u16)>,
    /// The entry the operation inserts (it must never be evicted unless it
    /// is heavier than the whole capacity).
    inserted: Option<(u8, u16)>,
    evicted: bool,
    expired: bool,
    removed: bool,
    cleared: bool,
}

/// A key and a value of the model.
type KeyVal = (u8, u16);

type Log = Arc<Mutex<Vec<(u8, u16, RemovalCause)>>>;

/// Builds the cache `cfg` describes, reporting departures to `log`.
fn build(cfg: &Config, clock: &MockClock, log: &Log) -> Cache<u8, Tracked> {
    let l = log.clone();
    let mut b = Cache::builder()
        .capacity(cfg.capacity())
        .shards(cfg.shards())
        .eviction_policy(cfg.policy.into())
        .clock(clock.clone())
        .eviction_listener(move |k: &u8, v: &Tracked, c| {
            assert_eq!(u64::from(*k), v.key(), "listener: a value of another key");
            l.lock().unwrap().push((*k, v.val() as u16, c));
        });
    if let Some(m) = cfg.weigher {
        let modulus = u32::from(m % 41) + 1;
        b = b.weigher(move |_k: &u8, v: &Tracked| (v.val() as u32) % modulus);
    }
    match cfg.expiry {
        ExpirySetting::None => {}
        ExpirySetting::Ttl(t) => b = b.time_to_live(Duration::from_millis(u64::from(t))),
        ExpirySetting::Tti(t) => b = b.time_to_idle(Duration::from_millis(u64::from(t))),
        ExpirySetting::PerEntry(m) => {
            b = b.expiry(move |_k: &u8, v: &Tracked| {
                per_entry_ttl(m, v.val() as u16).map(Duration::from_nanos)
            })
        }
    }
    b.build()
}

/// Runs `input` on a cache and on the model and panics at the first
/// difference or broken invariant.
pub fn check(input: &Input) {
    let cfg = input.config;
    let counter = Arc::new(DropCounter::default());
    let clock = MockClock::new();
    let log: Log = Arc::default();
    let cache = build(&cfg, &clock, &log);
    let capacity = cfg.capacity();
    let mut m = Model {
        cfg,
        map: KeyMap::default(),
        now: 1, // MockClock::new() stands at 1 ns
        stats: CacheStats::default(),
    };
    let new = |k: u8, v: u16| Tracked::new(&counter, u64::from(k), u64::from(v));
    let val = |t: Option<Tracked>| t.map(|t| t.val() as u16);

    for (step, &op) in input.ops.iter().take(MAX_OPS).enumerate() {
        let mut allowed = Allowed::default();
        let mut purged = None;
        let ctx = || format!("step {step}: {op:?} (config {cfg:?})");
        match op {
            Op::Insert(k, v) => {
                let k = k % KEYS;
                allowed = Allowed::for_insert(k, v);
                (allowed.replaced, allowed.expired_over) = m.insert(k, v, None);
                cache.insert(k, new(k, v));
            }
            Op::InsertTtl(k, v, t) => {
                let k = k % KEYS;
                let ttl = if t == 255 {
                    Duration::MAX
                } else {
                    Duration::from_millis(u64::from(t))
                };
                allowed = Allowed::for_insert(k, v);
                let nanos = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
                (allowed.replaced, allowed.expired_over) = m.insert(k, v, Some(nanos));
                cache.insert_with_ttl(k, new(k, v), ttl);
            }
            Op::Get(k) => {
                let k = k % KEYS;
                assert_eq!(val(cache.get(&k)), m.get(k), "get: {}", ctx());
            }
            Op::Peek(k) => {
                let k = k % KEYS;
                assert_eq!(val(cache.peek(&k)), m.live(k), "peek: {}", ctx());
            }
            Op::ContainsKey(k) => {
                let k = k % KEYS;
                assert_eq!(
                    cache.contains_key(&k),
                    m.live(k).is_some(),
                    "contains_key: {}",
                    ctx()
                );
            }
            Op::Remove(k) => {
                let k = k % KEYS;
                allowed.removed = true;
                allowed.expired = true;
                assert_eq!(val(cache.remove(&k)), m.live(k), "remove: {}", ctx());
            }
            Op::GetOrInsert(k, v) => {
                let k = k % KEYS;
                let expected = match m.get(k) {
                    Some(live) => live,
                    None => {
                        allowed = Allowed::for_insert(k, v);
                        (allowed.replaced, allowed.expired_over) = m.insert(k, v, None);
                        m.stats.loads += 1;
                        v
                    }
                };
                let got = cache.get_or_insert_with(k, || new(k, v));
                assert_eq!(got.key(), u64::from(k), "get_or_insert_with key: {}", ctx());
                assert_eq!(got.val() as u16, expected, "get_or_insert_with: {}", ctx());
            }
            Op::GetOrTryInsert(k, v, fail) => {
                let k = k % KEYS;
                let expected = match m.get(k) {
                    Some(live) => Ok(live),
                    None if fail => {
                        m.stats.load_failures += 1;
                        Err(())
                    }
                    None => {
                        allowed = Allowed::for_insert(k, v);
                        (allowed.replaced, allowed.expired_over) = m.insert(k, v, None);
                        m.stats.loads += 1;
                        Ok(v)
                    }
                };
                let got =
                    cache.get_or_try_insert_with(k, || if fail { Err(()) } else { Ok(new(k, v)) });
                assert_eq!(
                    got.map(|t| t.val() as u16).map_err(|e| *e),
                    expected,
                    "get_or_try_insert_with: {}",
                    ctx()
                );
            }
            Op::ReplaceIf(k, v, d) => {
                let k = k % KEYS;
                let modulus = u16::from(d) + 2;
                let expected = m.live(k).is_some_and(|old| old % modulus == 0);
                if expected {
                    allowed = Allowed::for_insert(k, v);
                    (allowed.replaced, allowed.expired_over) = m.insert(k, v, None);
                }
                let stored =
                    cache.replace_if(k, new(k, v), |old| old.val() % u64::from(modulus) == 0);
                assert_eq!(stored, expected, "replace_if: {}", ctx());
            }
            Op::Retain(d) => {
                allowed.removed = true;
                allowed.expired = true;
                let modulus = u64::from(d) + 2;
                cache.retain(|_k, v| v.val() % modulus != 0);
            }
            Op::Clear => {
                allowed.cleared = true;
                // An entry that had expired leaves as expired.
                allowed.expired = true;
                cache.clear();
            }
            Op::PurgeExpired => {
                allowed.expired = true;
                purged = Some(cache.purge_expired());
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(u64::from(ms)));
                m.now += u64::from(ms) * MS;
            }
            Op::Iter => {
                let mut got: Vec<(u8, u16)> = cache
                    .iter()
                    .map(|(k, v)| {
                        assert_eq!(u64::from(k), v.key(), "iter: a value of another key");
                        (k, v.val() as u16)
                    })
                    .collect();
                got.sort_unstable();
                let want: Vec<(u8, u16)> = (0..KEYS)
                    .filter_map(|k| m.live(k).map(|v| (k, v)))
                    .collect();
                assert_eq!(got, want, "iter: {}", ctx());
            }
        }

        // Every departure, checked against what the operation allows and
        // applied to the model.
        let mut expired_events = 0;
        for (k, v, cause) in log.lock().unwrap().drain(..) {
            match cause {
                RemovalCause::Replaced => {
                    assert_eq!(
                        allowed.replaced.take(),
                        Some((k, v)),
                        "unexpected Replaced of {k}={v}: {}",
                        ctx()
                    );
                    continue;
                }
                RemovalCause::Removed => {
                    assert!(
                        allowed.removed,
                        "Removed {k}={v} outside remove/retain: {}",
                        ctx()
                    )
                }
                RemovalCause::Cleared => {
                    assert!(allowed.cleared, "Cleared {k}={v} outside clear: {}", ctx())
                }
                RemovalCause::Expired if allowed.expired_over == Some((k, v)) => {
                    allowed.expired_over = None;
                    m.stats.expirations += 1;
                    continue;
                }
                RemovalCause::Expired => {
                    expired_events += 1;
                    let d = m.map.get(&k).map(|e| e.deadline);
                    assert!(
                        allowed.expired && d.is_some_and(|d| d <= m.now),
                        "Expired {k}={v} (deadline {d:?}, now {}) not allowed: {}",
                        m.now,
                        ctx()
                    );
                }
                RemovalCause::Evicted => {
                    assert!(
                        allowed.evicted,
                        "Evicted {k}={v} outside an insert: {}",
                        ctx()
                    );
                    if allowed.inserted == Some((k, v)) && cfg.weight(v) <= capacity {
                        panic!("evicted the entry being inserted, {k}={v}: {}", ctx());
                    }
                }
            }
            let gone = m.map.remove(&k);
            assert_eq!(
                gone.map(|e| e.val),
                Some(v),
                "departure of {k} ({cause:?}) with a value the model does not hold: {}",
                ctx()
            );
            match cause {
                RemovalCause::Evicted => m.stats.evictions += 1,
                RemovalCause::Expired => m.stats.expirations += 1,
                _ => m.stats.removals += 1,
            }
        }
        assert!(
            allowed.replaced.is_none(),
            "replaced entry {:?} not reported: {}",
            allowed.replaced,
            ctx()
        );
        assert!(
            allowed.expired_over.is_none(),
            "expired entry {:?} written over not reported expired: {}",
            allowed.expired_over,
            ctx()
        );

        // What each operation promises about what is left.
        match op {
            Op::Remove(k) => {
                assert!(
                    !m.map.contains_key(&(k % KEYS)),
                    "remove left the entry: {}",
                    ctx()
                )
            }
            Op::Retain(d) => {
                let modulus = u16::from(d) + 2;
                assert!(
                    m.map
                        .values()
                        .all(|e| e.val % modulus != 0 && e.deadline > m.now),
                    "retain left a rejected or expired entry: {}",
                    ctx()
                );
            }
            Op::Clear => assert!(m.map.is_empty(), "clear left entries: {}", ctx()),
            Op::PurgeExpired => {
                assert_eq!(purged, Some(expired_events), "purge count: {}", ctx());
                assert!(
                    m.map.values().all(|e| e.deadline > m.now),
                    "purge left an expired entry: {}",
                    ctx()
                );
            }
            _ => {}
        }

        // The cache and the model agree on everything observable: the
        // counts and the key the operation named at every step (an entry
        // that left unreported shows in `len`), every key after an
        // operation that touches many, every `FULL_CHECK_EVERY` steps and
        // at the end (a lookup of each key costs more than most operations:
        // this keeps a run short enough for the fuzzer to explore).
        assert_eq!(cache.len(), m.map.len(), "len: {}", ctx());
        let last = step + 1 == input.ops.len().min(MAX_OPS);
        let keys = match op.key() {
            Some(k) if step % FULL_CHECK_EVERY != 0 && !last => k..k + 1,
            _ => 0..KEYS,
        };
        for k in keys {
            assert_eq!(val(cache.peek(&k)), m.live(k), "contents at {k}: {}", ctx());
        }
        let total = m.weight();
        assert_eq!(cache.weighted_size(), total, "weighted_size: {}", ctx());
        assert!(
            total <= capacity,
            "over capacity: {total} > {capacity}: {}",
            ctx()
        );
        // Load time is wall time: compare the counts only.
        let mut stats = cache.stats();
        stats.total_load_time = Duration::ZERO;
        assert_eq!(stats, m.stats, "stats: {}", ctx());
    }

    // Nothing leaked, nothing freed twice: once the cache is gone and the
    // epoch collector has run, every value created has been dropped.
    drop(cache);
    let alive = counter.settle();
    assert_eq!(alive, 0, "{alive} values never dropped");
    assert_eq!(
        counter.dropped(),
        counter.created(),
        "a value dropped twice"
    );
}

impl Allowed {
    fn for_insert(k: u8, v: u16) -> Self {
        Self {
            inserted: Some((k, v)),
            evicted: true,
            expired: true,
            ..Self::default()
        }
    }
}
