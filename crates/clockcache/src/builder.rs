//! [`CacheBuilder`]: every setting of a cache, in one place.

use crate::cache::{Cache, Core, Weigher};
use crate::clock::{duration_nanos, Clock, ClockSource};
use crate::expiry::{trailer_words, Expiry};
use crate::hasher::DefaultHashBuilder;
use crate::policy::{Duel, DuelRole, EvictionPolicy, DUEL_MIN_SHARDS};
use crate::refresh::{Refresh, RefreshConfig};
use crate::shard::{Listener, Shard};
use crate::slab::InFlight;
use crate::snapshot::SnapshotEntry;
use crate::stats::ReadCounters;
use crate::sync::{Arc, AtomicBool, AtomicI32, AtomicUsize};
use crate::RemovalCause;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::time::Duration;

/// Capacity of a builder that was not given one.
pub const DEFAULT_CAPACITY: u64 = 10_000;

/// Smallest share of the capacity the default sharding gives a shard: fewer
/// entries per shard would cost hit ratio (each shard evicts on its own).
const MIN_SHARD_CAPACITY: u64 = 512;

/// Most entries the default [`CacheBuilder::initial_capacity`] sizes the
/// table and queue for up front (about 22 MiB).
pub const DEFAULT_PRESIZED_ENTRIES: usize = 1 << 20;

/// Entries a shard's table is first sized for when the number of entries is
/// unknown (a weigher decides how many fit).
const INITIAL_SHARD_ITEMS: usize = 4096;

/// Most shards a cache can have.
const MAX_SHARDS: usize = 1 << 16;

/// Configures and builds a [`Cache`].
///
/// ```
/// use clockcache::{Cache, EvictionPolicy, RemovalCause};
/// use std::time::Duration;
///
/// let cache: Cache<String, Vec<u8>> = Cache::builder()
///     .capacity(64 * 1024 * 1024) // total bytes, with the weigher below
///     .weigher(|k: &String, v: &Vec<u8>| (k.len() + v.len()).try_into().unwrap_or(u32::MAX))
///     .time_to_live(Duration::from_secs(300))
///     .eviction_policy(EvictionPolicy::S3Fifo)
///     .eviction_listener(|key: &String, _v: &Vec<u8>, cause: RemovalCause| {
///         if cause == RemovalCause::Evicted {
///             eprintln!("evicted {key}");
///         }
///     })
///     .build();
/// cache.insert("a".to_string(), vec![0; 10]);
/// assert_eq!(cache.weighted_size(), 11);
/// ```
pub struct CacheBuilder<K, V> {
    capacity: u64,
    shards: Option<usize>,
    initial_capacity: Option<usize>,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    tti: Option<Duration>,
    expiry: Option<Box<dyn Expiry<K, V>>>,
    listener: Option<Listener<K, V>>,
    policy: EvictionPolicy,
    clock: ClockSource,
    refresh: Option<(Duration, Refresh<K, V>)>,
    maintenance: Option<Duration>,
    warm: Vec<SnapshotEntry<K, V>>,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards)
            .field("initial_capacity", &self.initial_capacity)
            .field("weigher", &self.weigher.is_some())
            .field("time_to_live", &self.ttl)
            .field("time_to_idle", &self.tti)
            .field("expiry", &self.expiry.is_some())
            .field("eviction_listener", &self.listener.is_some())
            .field("eviction_policy", &self.policy)
            .field("refresh_after", &self.refresh.as_ref().map(|(d, _)| d))
            .field("maintenance_thread", &self.maintenance)
            .field("warm_entries", &self.warm.len())
            .finish()
    }
}

impl<K, V> Default for CacheBuilder<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> CacheBuilder<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder with the defaults: capacity [`DEFAULT_CAPACITY`] entries,
    /// sharding from the capacity and the number of CPUs, adaptive S3-FIFO, no
    /// expiry, no listener, the system clock.
    pub fn new() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            shards: None,
            initial_capacity: None,
            weigher: None,
            ttl: None,
            tti: None,
            expiry: None,
            listener: None,
            policy: EvictionPolicy::default(),
            clock: ClockSource::System,
            refresh: None,
            maintenance: None,
            warm: Vec::new(),
            _types: PhantomData,
        }
    }

    /// The most entries the cache holds, or with a [`weigher`](Self::weigher)
    /// the most total weight. Zero is allowed: the cache then stores nothing.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Entries the hash table and the queue new entries enter are sized for
    /// when the cache is built (spread over the shards; each grows by
    /// doubling when it needs more).
    ///
    /// The default is the capacity, up to [`DEFAULT_PRESIZED_ENTRIES`]
    /// entries (about 22 bytes per entry sized for: 14 of table, 8 of
    /// queue), and with a weigher (the number of entries is then unknown) a
    /// few thousand entries per shard, or fewer when a shard's share of the
    /// capacity is smaller (entries that weigh at least 1 cannot outnumber
    /// it). Structures sized ahead never grow
    /// while the cache fills: no writer holds a shard lock through a rehash,
    /// no outgrown queue is left behind as a hole in the allocator's heap,
    /// and no outgrown table is kept (a shard keeps the tables it outgrew
    /// until the cache is dropped, so that readers may read them without
    /// pinning: less memory than its current table). Set a small value for a
    /// cache given a large capacity that it will rarely use.
    pub fn initial_capacity(mut self, entries: usize) -> Self {
        self.initial_capacity = Some(entries);
        self
    }

    /// The number of shards, rounded up to a power of two (at most 65,536).
    /// The default is four per CPU and at least 32 (so that a writer
    /// descheduled under a shard lock stalls few others when threads
    /// outnumber cores), fewer for small capacities, so that no shard holds
    /// less than 512 entries' worth.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.clamp(1, MAX_SHARDS).next_power_of_two());
        self
    }

    /// Weighs entries: the capacity then bounds their total weight. The
    /// weigher runs once per insert, outside every lock. An entry heavier
    /// than the whole capacity is not stored (see [`Cache::insert`]).
    pub fn weigher<F>(mut self, weigher: F) -> Self
    where
        F: Fn(&K, &V) -> u32 + Send + Sync + 'static,
    {
        self.weigher = Some(Box::new(weigher));
        self
    }

    /// Time to live: an entry expires this long after it was written (unless
    /// given its own ttl, see [`Cache::insert_with_ttl`]). Combines with
    /// [`time_to_idle`](Self::time_to_idle) and an [`expiry`](Self::expiry):
    /// an entry expires at the earliest of their deadlines.
    ///
    /// ```
    /// use clockcache::{Cache, MockClock};
    /// use std::time::Duration;
    ///
    /// let clock = MockClock::new();
    /// // Idle for 10 s at most, and alive for 30 s at most however often read.
    /// let sessions: Cache<u32, &str> = Cache::builder()
    ///     .time_to_live(Duration::from_secs(30))
    ///     .time_to_idle(Duration::from_secs(10))
    ///     .clock(clock.clone())
    ///     .build();
    /// sessions.insert(1, "alice");
    /// for _ in 0..2 {
    ///     clock.advance(Duration::from_secs(9));
    ///     assert!(sessions.get(&1).is_some()); // read within 10 s: kept
    /// }
    /// clock.advance(Duration::from_secs(9)); // 27 s
    /// assert!(sessions.get(&1).is_some());
    /// clock.advance(Duration::from_secs(3)); // 30 s: its time to live
    /// assert!(sessions.get(&1).is_none());
    /// ```
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Time to idle: an entry inserted without its own ttl expires when not
    /// read for this long; every hit through `get` or a loading call resets
    /// its timer (`peek`, `contains_key`, iteration and `compute` do not).
    /// It never outlives the [`time_to_live`](Self::time_to_live) or the
    /// [`expiry`](Self::expiry)'s answer: the earliest deadline wins.
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Computes each entry's time to live from its key and value, on insert,
    /// update and read (see [`Expiry`]); combines with the time to live and
    /// the time to idle (the earliest deadline wins).
    pub fn expiry<E>(mut self, expiry: E) -> Self
    where
        E: Expiry<K, V>,
    {
        self.expiry = Some(Box::new(expiry));
        self
    }

    /// Called exactly once for every entry that leaves the cache, with the
    /// cause, after the shard lock is released (never on the read path). A
    /// panic in the listener is caught and does not affect the cache.
    /// Dropping the cache drops its entries without calling it.
    pub fn eviction_listener<F>(mut self, listener: F) -> Self
    where
        F: Fn(&K, &V, RemovalCause) + Send + Sync + 'static,
    {
        self.listener = Some(std::sync::Arc::new(listener));
        self
    }

    /// The eviction policy (default [`EvictionPolicy::Adaptive`]).
    pub fn eviction_policy(mut self, policy: EvictionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The source of time for expiry (default: [`SystemClock`](crate::SystemClock)).
    pub fn clock<C: Clock>(mut self, clock: C) -> Self {
        self.clock = ClockSource::Custom(std::sync::Arc::new(clock));
        self
    }

    /// Refresh-ahead: a hit on an entry written `period` or more ago
    /// returns the cached value at once and starts one reload of the key
    /// with `refresh` (one at a time per key, whoever reads it; the loading
    /// calls wait for it as for any load of the key). The reloaded value
    /// replaces the entry, with a new time to live and write time (the
    /// listener hears [`RemovalCause::Replaced`] for the old value), unless
    /// a write of the key came first: that write wins. A failed reload
    /// keeps the old value until it expires and tries again `period` after
    /// the failure.
    ///
    /// Hits through [`get`](Cache::get) and the loading calls refresh;
    /// `peek`, `contains_key` and iteration do not. Give the period shorter
    /// than the time to live, so that a key read often enough is never
    /// missed. Each entry of such a cache takes 8 more bytes (its write
    /// time), and each hit reads the clock. See [`Refresh`] for an example.
    pub fn refresh_after(mut self, period: Duration, refresh: Refresh<K, V>) -> Self {
        self.refresh = Some((period, refresh));
        self
    }

    /// Starts a background thread (`clockcache-maintenance`) that every
    /// `period` reclaims the cache's expired entries, in bounded steps (see
    /// [`Cache::run_maintenance`]), so that an idle cache returns to its
    /// live size and drops expired values. The thread holds no handle on
    /// the cache: it ends when the cache is dropped. For a task on an async
    /// runtime instead of a thread, see [`Cache::maintenance`].
    ///
    /// ```
    /// use clockcache::Cache;
    /// use std::time::Duration;
    ///
    /// let cache: Cache<u64, Vec<u8>> = Cache::builder()
    ///     .time_to_live(Duration::from_millis(50))
    ///     .maintenance_thread(Duration::from_millis(10))
    ///     .build();
    /// cache.insert(1, vec![0; 1 << 20]);
    /// let start = std::time::Instant::now();
    /// while !cache.is_empty() {
    ///     assert!(start.elapsed() < Duration::from_secs(10));
    ///     std::thread::sleep(Duration::from_millis(10));
    /// }
    /// ```
    #[cfg(not(loom))]
    pub fn maintenance_thread(mut self, period: Duration) -> Self {
        self.maintenance = Some(period);
        self
    }

    /// Warms the cache being built from `entries`, most valuable first (a
    /// [`Cache::snapshot`], perhaps saved and read back with serde): they
    /// are inserted least valuable first, so that if they do not all fit
    /// the policy evicts those; each keeps its use count (hot entries come
    /// back hot) and expires no later than the time it had left (an entry
    /// with none left does not come back). An entry counts as written at
    /// the build: a time to live or to idle of this cache runs from then.
    pub fn warm<I>(mut self, entries: I) -> Self
    where
        I: IntoIterator<Item = SnapshotEntry<K, V>>,
    {
        self.warm.extend(entries);
        self
    }

    /// Builds the cache with a randomly seeded [`DefaultHashBuilder`].
    pub fn build(self) -> Cache<K, V> {
        self.build_with_hasher(DefaultHashBuilder::new())
    }

    /// Builds the cache with the given hasher.
    pub fn build_with_hasher<S>(self, hasher: S) -> Cache<K, V, S>
    where
        S: BuildHasher + Send + Sync + 'static,
    {
        let n = self.shards.unwrap_or_else(|| default_shards(self.capacity));
        let base = self.capacity / n as u64;
        let extra = (self.capacity % n as u64) as usize;
        let weighted = self.weigher.is_some();
        // A refreshing cache's writers read the clock for write times.
        let may_expire = self.ttl.is_some()
            || self.tti.is_some()
            || self.expiry.is_some()
            || self.refresh.is_some();
        let trailer_words = trailer_words(
            self.ttl.is_some(),
            self.tti.is_some(),
            self.expiry.is_some(),
            self.refresh.is_some(),
        );
        let score = Arc::new(AtomicI32::new(0));
        let in_flight = Arc::new(InFlight::new());
        let shards: Box<[Shard<K, V>]> = (0..n)
            .map(|i| {
                // Two shards, far apart in the array, duel; the rest follow.
                let role = match i {
                    _ if n < DUEL_MIN_SHARDS => DuelRole::Follower,
                    0 => DuelRole::FastTrack,
                    i if i == n / 2 => DuelRole::Probation,
                    _ => DuelRole::Follower,
                };
                let duel = Duel {
                    role,
                    score: Arc::clone(&score),
                };
                let budget = base + u64::from(i < extra);
                let limit = if weighted {
                    usize::MAX
                } else {
                    usize::try_from(budget).unwrap_or(usize::MAX)
                };
                let table_items = match self.initial_capacity {
                    Some(total) => total.div_ceil(n),
                    None if weighted => usize::try_from(budget)
                        .unwrap_or(usize::MAX)
                        .min(INITIAL_SHARD_ITEMS),
                    None => {
                        let total = self.capacity.min(DEFAULT_PRESIZED_ENTRIES as u64);
                        usize::try_from(total).unwrap_or(usize::MAX).div_ceil(n)
                    }
                };
                Shard::new(
                    budget,
                    self.policy,
                    limit,
                    table_items.min(limit),
                    duel,
                    Arc::clone(&in_flight),
                    trailer_words,
                )
            })
            .collect();
        #[cfg(not(loom))]
        let stop = self
            .maintenance
            .map(|_| std::sync::Arc::new(crate::maintenance::Stop::default()));
        let core = Arc::new(Core {
            shards,
            hasher,
            clock: self.clock,
            listener: self.listener,
            weigher: self.weigher,
            expiry: self.expiry,
            ttl: self.ttl.map(duration_nanos),
            tti: self.tti.map(duration_nanos),
            capacity: self.capacity,
            reads: ReadCounters::new(parallelism() * 2),
            over: AtomicUsize::new(0),
            hand: AtomicUsize::new(0),
            may_expire: AtomicBool::new(may_expire),
            in_flight,
            refresh: self
                .refresh
                .map(|(period, r)| RefreshConfig::new(duration_nanos(period), r)),
            trailer_words,
            eviction_policy: self.policy,
            #[cfg(not(loom))]
            _maintenance: stop
                .as_ref()
                .map(|s| crate::maintenance::StopOnDrop(std::sync::Arc::clone(s))),
        });
        #[cfg(not(loom))]
        if let (Some(period), Some(stop)) = (self.maintenance, stop) {
            crate::maintenance::spawn_thread(Arc::downgrade(&core), period, stop);
        }
        let cache = Cache { core };
        cache.warm(self.warm);
        cache
    }
}

/// The CPUs this process may use, read once: `available_parallelism` reads
/// cgroup files on Linux, a few system calls that would otherwise be paid by
/// every cache built.
/// Under loom, one (models are small).
fn parallelism() -> usize {
    #[cfg(not(loom))]
    {
        static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
    #[cfg(loom)]
    1
}

/// Fewest shards the default sharding aims for, whatever the CPU count.
///
/// A writer descheduled while it holds a shard lock stalls that shard's
/// writers until it runs again. When threads outnumber cores this happens
/// every few scheduler slices, and the share of operations caught behind it
/// falls with the number of shards: on 2 cores with 8 threads, going from 8
/// to 32 shards took the read-heavy p99.9 from about 200 us to 4-20 us (see
/// docs/benchmarks.md), at no cost in throughput or hit ratio.
const MIN_DEFAULT_SHARDS: usize = 32;

/// Four shards per CPU and at least [`MIN_DEFAULT_SHARDS`], halved while a
/// shard would get less than [`MIN_SHARD_CAPACITY`].
fn default_shards(capacity: u64) -> usize {
    let mut n = (parallelism() * 4)
        .max(MIN_DEFAULT_SHARDS)
        .next_power_of_two()
        .min(MAX_SHARDS);
    while n > 1 && capacity / (n as u64) < MIN_SHARD_CAPACITY {
        n /= 2;
    }
    n
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn default_sharding_has_a_floor_and_keeps_shards_large_enough() {
        let floor = MIN_DEFAULT_SHARDS
            .max(parallelism() * 4)
            .next_power_of_two();
        // Large caches get the floor (or four per CPU, if more).
        assert_eq!(default_shards(1_000_000), floor);
        // Smaller ones are halved until a shard holds 512 entries' worth.
        for capacity in [0, 1, 511, 1_000, 4_096, 10_000, 100_000] {
            let n = default_shards(capacity);
            assert!(n.is_power_of_two() && n <= floor, "{capacity}: {n}");
            assert!(
                n == 1 || capacity / n as u64 >= MIN_SHARD_CAPACITY,
                "{capacity}: {n}"
            );
            assert!(n == floor || capacity / (2 * n as u64) < MIN_SHARD_CAPACITY);
        }
        // A cache of 4,096 entries or more has the 8 shards the duel needs.
        assert!(default_shards(4_096) >= DUEL_MIN_SHARDS);
        assert_eq!(default_shards(1_000), 1);
    }
}
