//! A fast, correct, concurrent in-memory cache.
//!
//! # The idea
//!
//! A cache is read far more often than it is written, so `clockcache` makes
//! reads cost almost nothing: a `get` takes no lock, performs no
//! read-modify-write on shared memory and allocates nothing. It pins an
//! epoch (crossbeam-epoch), searches an open-addressing table, and marks the
//! entry it found by raising a two-bit counter with a plain load and, if the
//! counter is not yet at its cap, a store.
//!
//! Writers pay for everything else. The cache is split into shards (a power
//! of two, chosen from the capacity and the number of CPUs); each has one
//! `parking_lot` mutex that insert, remove and eviction take. Because readers
//! do not lock, a writer never reuses an entry's memory at once: it unlinks
//! the entry and retires it through the epoch collector, and the shard reuses
//! the block only once no reader that could have seen it is still pinned.
//!
//! Eviction is CLOCK-style: the counters that readers set are what the
//! writer's hand reads. The default policy, an adaptive S3-FIFO, keeps new
//! entries on probation in a small FIFO and promotes only those read again to
//! the main clock, so scans and one-hit wonders do not flush the working set;
//! the probation's size adapts from ghost hits, so recency-friendly workloads
//! are served as well as by LRU, and the shards duel over what a key back from
//! the main clock's ghost deserves, so a loop a little larger than the cache
//! keeps most of its keys instead of none. Fixed S3-FIFO and plain CLOCK (an LRU
//! approximation) are one builder call away. Entries can expire
//! (a time to live per entry or cache-wide, a time to idle, or a function of
//! key and value); expired entries are never returned and are reclaimed in
//! deadline order without scanning the cache.
//!
//! `docs/design.md` in the repository explains the layout, the read and write
//! paths and why each race is safe; the loom models next to the code check
//! those arguments.
//!
//! # Example
//!
//! ```
//! use clockcache::Cache;
//! use std::sync::Arc;
//! use std::thread;
//! use std::time::Duration;
//!
//! let cache: Cache<u64, Arc<String>> = Cache::new(10_000);
//!
//! let workers: Vec<_> = (0..4)
//!     .map(|t| {
//!         let cache = cache.clone(); // a cheap handle on the same cache
//!         thread::spawn(move || {
//!             for i in 0..1_000 {
//!                 let v = cache.get_or_insert_with(i, || Arc::new(format!("value {i}")));
//!                 assert_eq!(*v, format!("value {i}"));
//!                 if i % 10 == t {
//!                     cache.insert_with_ttl(i, Arc::new(format!("value {i}")), Duration::from_secs(60));
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! for w in workers {
//!     w.join().unwrap();
//! }
//! assert_eq!(cache.len(), 1_000);
//! assert!(cache.stats().hits > 0);
//! ```
//!
//! # Loading and updating
//!
//! A miss can load its value once for every concurrent caller (single
//! flight), from blocking code or async code on any runtime; a failed load
//! hands every waiter the same `Arc` of its error, and a write of the key
//! while it ran wins over it. [`Cache::compute`], [`Cache::upsert`] and
//! [`Cache::entry`] read and write one key atomically.
//!
//! ```
//! use clockcache::{Cache, Op};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let sessions: Cache<String, Arc<str>> = Cache::new(1_000);
//! // Borrowed key: cloned only if this call loads.
//! let s = sessions
//!     .get_or_try_insert_async_by_ref("token", async { Ok::<_, String>(Arc::from("alice")) })
//!     .await
//!     .unwrap();
//! assert_eq!(&*s, "alice");
//! // Logout removes it only if it is still the session we saw.
//! sessions.compute("token".to_string(), |v| match v {
//!     Some(v) if **v == *"alice" => Op::Remove,
//!     _ => Op::Nop,
//! });
//! assert!(sessions.get("token").is_none());
//! # });
//! ```
//!
//! A cache built with [`CacheBuilder::refresh_after`] reloads a key that is
//! being read before it expires: a hit on an entry older than the refresh
//! period returns the cached value at once and starts one reload of the key
//! in the background (see [`Refresh`]), so that readers of a hot key never
//! wait for its load.
//!
//! # Choosing settings
//!
//! - [`Cache::new`] bounds the number of entries; [`CacheBuilder::weigher`]
//!   bounds total weight instead (bytes, say).
//! - Values are cloned out on every hit: store `Arc<T>` for anything larger
//!   than a few words.
//! - [`CacheBuilder::eviction_listener`] is told about every entry that
//!   leaves, with its [`RemovalCause`].

#![warn(missing_docs, unsafe_op_in_unsafe_fn)]

mod builder;
mod cache;
mod clock;
mod compute;
mod entry;
mod expiry;
mod hasher;
mod iter;
mod load;
mod loader;
#[cfg(not(loom))]
mod maintenance;
mod policy;
mod raw;
mod refresh;
mod ring;
mod shard;
mod slab;
mod snapshot;
mod stats;
mod sync;

#[cfg(all(test, loom))]
mod loom_tests;

pub use builder::{CacheBuilder, DEFAULT_CAPACITY, DEFAULT_PRESIZED_ENTRIES};
pub use cache::Cache;
pub use clock::{Clock, MockClock, SystemClock};
pub use compute::{AndModify, CompResult, EntryRef, Op};
pub use expiry::Expiry;
pub use hasher::{DefaultHashBuilder, DefaultHasher};
pub use iter::Iter;
#[cfg(not(loom))]
pub use load::{GuardResult, Placeholder};
#[cfg(not(loom))]
pub use maintenance::MAINTENANCE_STEP;
pub use policy::EvictionPolicy;
#[cfg(not(loom))]
pub use refresh::RefreshTask;
pub use refresh::{Refresh, RefreshJob};
pub use snapshot::SnapshotEntry;
pub use stats::{CachePolicy, CacheStats};

/// Why an entry left the cache (given to the eviction listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemovalCause {
    /// Evicted to keep the cache within its capacity (or too heavy to store).
    Evicted,
    /// Its deadline passed.
    Expired,
    /// Removed by [`Cache::remove`], [`Cache::remove_if`] or [`Cache::retain`].
    Removed,
    /// Replaced by an insert (or an accepted [`Cache::replace_if`]) for the same key.
    Replaced,
    /// Removed by [`Cache::clear`].
    Cleared,
}

/// The README's example, compiled and run as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
