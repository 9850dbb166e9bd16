//! Property tests: random operation sequences run on the cache and, step by
//! step, on a plain `BTreeMap` reference model with the same semantics.
//!
//! The model cannot know which entry an eviction policy picks, so the cache's
//! eviction listener tells it: every departure is checked against the model
//! (right key, right value, a cause that the operation allows), applied to
//! it, and then the two must agree exactly: same live contents, same expired
//! entries hidden, same length, and the capacity bound respected.
//!
//! Expiry is modelled exactly, on a mock clock in whole seconds: an entry
//! expires at the earliest of its time to live, its idle deadline and an
//! `Expiry`'s answer (with insert, update and read hooks), or at its own ttl
//! alone when it was written with one.

use clockcache::{
    Cache, CompResult, EvictionPolicy, Expiry, MockClock, Op as Decide, RemovalCause,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, u16),
    InsertTtl(u8, u16, u8),
    Get(u8),
    Peek(u8),
    Remove(u8),
    GetOrInsert(u8, u16),
    /// `replace_if` with a predicate that accepts even values (a TTL when
    /// the third field is set).
    ReplaceIfEven(u8, u16, Option<u8>),
    /// `compute` with a decision taken from the old value (see `decide`).
    Compute(u8, u16),
    /// `upsert` storing `old ^ v`, or `v` when absent.
    Upsert(u8, u16),
    /// `entry(k).or_insert(v)`.
    EntryOrInsert(u8, u16),
    /// `entry(k).and_modify(|o| o + v).or_insert(v)`.
    EntryModify(u8, u16),
    RetainEven,
    Clear,
    Purge,
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..24;
    prop_oneof![
        6 => (key.clone(), any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
        3 => (key.clone(), any::<u16>(), 0u8..6).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        6 => key.clone().prop_map(Op::Get),
        2 => key.clone().prop_map(Op::Peek),
        2 => key.clone().prop_map(Op::Remove),
        2 => (key.clone(), any::<u16>()).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
        2 => (key.clone(), any::<u16>(), prop::option::of(0u8..6))
            .prop_map(|(k, v, t)| Op::ReplaceIfEven(k, v, t)),
        2 => (key.clone(), any::<u16>()).prop_map(|(k, v)| Op::Compute(k, v)),
        1 => (key.clone(), any::<u16>()).prop_map(|(k, v)| Op::Upsert(k, v)),
        1 => (key.clone(), any::<u16>()).prop_map(|(k, v)| Op::EntryOrInsert(k, v)),
        1 => (key.clone(), any::<u16>()).prop_map(|(k, v)| Op::EntryModify(k, v)),
        1 => Just(Op::RetainEven),
        1 => Just(Op::Clear),
        1 => Just(Op::Purge),
        2 => (0u8..4).prop_map(Op::Advance),
    ]
}

/// The compute decision of the property test: absent keys get `v` unless
/// `v % 3 == 0`; present ones are removed, bumped or kept by `old % 3`.
fn decide(old: Option<&u16>, v: u16) -> Decide<u16> {
    match old {
        None if v % 3 == 0 => Decide::Nop,
        None => Decide::Put(v),
        Some(o) => match o % 3 {
            0 => Decide::Remove,
            1 => Decide::Put(o.wrapping_add(v)),
            _ => Decide::Nop,
        },
    }
}

/// Expiry settings of one run, in seconds.
#[derive(Clone, Copy, Debug, Default)]
struct Config {
    ttl: Option<u64>,
    tti: Option<u64>,
    hooks: bool,
}

const NEVER: u64 = u64::MAX;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn after(now: u64, life: Option<u64>) -> u64 {
    life.map_or(NEVER, |l| now + l)
}

/// The test's `Expiry`: keys divisible by 4 never expire by it, others live
/// 2 to 4 s; an update of a value divisible by 3 keeps the time left; a
/// read of an even value gives it 3 s from the read.
struct Hooks;

fn hook_insert(k: u8) -> Option<u64> {
    (k % 4 != 0).then(|| u64::from(k % 4) + 1)
}

impl Expiry<u8, u16> for Hooks {
    fn expire_after_insert(&self, k: &u8, _v: &u16) -> Option<Duration> {
        hook_insert(*k).map(secs)
    }
    fn expire_after_update(&self, k: &u8, v: &u16, left: Option<Duration>) -> Option<Duration> {
        if v % 3 == 0 {
            left
        } else {
            self.expire_after_insert(k, v)
        }
    }
    fn expire_after_read(&self, _k: &u8, v: &u16, left: Option<Duration>) -> Option<Duration> {
        if v % 2 == 0 {
            Some(secs(3))
        } else {
            left
        }
    }
}

/// One entry of the reference model.
#[derive(Clone, Copy, Debug)]
struct Item {
    v: u16,
    written: u64,
    /// The `Expiry`'s deadline (`NEVER` without hooks).
    custom: u64,
    /// Written with its own ttl: nothing else applies.
    explicit: bool,
    deadline: u64,
}

/// Reference model: key -> item, times in seconds.
#[derive(Default)]
struct Model {
    map: BTreeMap<u8, Item>,
    now: u64,
    cfg: Config,
}

impl Model {
    fn live(&self, k: u8) -> Option<u16> {
        self.map
            .get(&k)
            .filter(|e| e.deadline > self.now)
            .map(|e| e.v)
    }

    /// A write of `k` (with its own ttl if `explicit`); returns the item it
    /// replaced.
    fn write(&mut self, k: u8, v: u16, explicit: Option<u64>) -> Option<Item> {
        let now = self.now;
        let old_live = self.map.get(&k).filter(|e| e.deadline > now).copied();
        let item = match explicit {
            Some(t) => Item {
                v,
                written: now,
                custom: NEVER,
                explicit: true,
                deadline: now + t,
            },
            None => {
                let custom = if !self.cfg.hooks {
                    NEVER
                } else {
                    match old_live {
                        Some(old) if v % 3 == 0 => old.custom,
                        _ => after(now, hook_insert(k)),
                    }
                };
                let deadline = custom
                    .min(after(now, self.cfg.ttl))
                    .min(after(now, self.cfg.tti));
                Item {
                    v,
                    written: now,
                    custom,
                    explicit: false,
                    deadline,
                }
            }
        };
        self.map.insert(k, item)
    }

    /// A hit on `k` (through `get` or a loading call): the read hook and
    /// the idle deadline.
    fn read(&mut self, k: u8) -> Option<u16> {
        let (now, cfg) = (self.now, self.cfg);
        let e = self.map.get_mut(&k).filter(|e| e.deadline > now)?;
        if !e.explicit {
            if cfg.hooks && e.v % 2 == 0 {
                e.custom = now + 3;
            }
            let mut next = e.custom.min(after(e.written, cfg.ttl));
            if cfg.tti.is_some() {
                next = next.min(after(now, cfg.tti));
            }
            e.deadline = next;
        }
        Some(e.v)
    }
}

type Log = Arc<Mutex<Vec<(u8, u16, RemovalCause)>>>;

fn run(
    ops: Vec<Op>,
    capacity: u64,
    shards: usize,
    policy: EvictionPolicy,
    weighted: bool,
    cfg: Config,
) -> Result<(), TestCaseError> {
    let clock = MockClock::new();
    let log: Log = Arc::default();
    let l = log.clone();
    let mut b = Cache::builder()
        .capacity(capacity)
        .shards(shards)
        .eviction_policy(policy)
        .clock(clock.clone())
        .eviction_listener(move |k: &u8, v: &u16, c| l.lock().unwrap().push((*k, *v, c)));
    if weighted {
        b = b.weigher(|_k: &u8, v: &u16| u32::from(*v % 4));
    }
    if let Some(t) = cfg.ttl {
        b = b.time_to_live(secs(t));
    }
    if let Some(t) = cfg.tti {
        b = b.time_to_idle(secs(t));
    }
    if cfg.hooks {
        b = b.expiry(Hooks);
    }
    let cache: Cache<u8, u16> = b.build();
    let weight = |v: u16| if weighted { u64::from(v % 4) } else { 1 };
    let mut m = Model {
        cfg,
        ..Model::default()
    };

    for op in ops {
        // What this operation may legitimately make leave, besides
        // evictions and expirations (always allowed): a live entry it
        // replaced, or an expired one it wrote over (which leaves as
        // expired, and must not take the new entry out of the model).
        let mut replaced: Option<(u8, u16)> = None;
        let mut expired_over: Option<(u8, u16)> = None;
        let mut may_remove = false;
        let mut may_clear = false;
        let now = m.now;
        let mut written = |old: Option<Item>, k: u8| match old {
            Some(o) if o.deadline > now => replaced = Some((k, o.v)),
            Some(o) => expired_over = Some((k, o.v)),
            None => {}
        };
        match op {
            Op::Insert(k, v) => {
                written(m.write(k, v, None), k);
                cache.insert(k, v);
            }
            Op::InsertTtl(k, v, t) => {
                written(m.write(k, v, Some(u64::from(t))), k);
                cache.insert_with_ttl(k, v, secs(u64::from(t)));
            }
            Op::Get(k) => prop_assert_eq!(cache.get(&k), m.read(k), "get {}", k),
            Op::Peek(k) => prop_assert_eq!(cache.peek(&k), m.live(k), "peek {}", k),
            Op::Remove(k) => {
                may_remove = true;
                prop_assert_eq!(cache.remove(&k), m.live(k), "remove {}", k);
            }
            Op::GetOrInsert(k, v) => {
                let expected = match m.read(k) {
                    Some(hit) => hit,
                    None => {
                        written(m.write(k, v, None), k);
                        v
                    }
                };
                prop_assert_eq!(cache.get_or_insert_with(k, || v), expected);
            }
            Op::ReplaceIfEven(k, v, t) => {
                let expected = m.live(k).is_some_and(|old| old % 2 == 0);
                if expected {
                    written(m.write(k, v, t.map(u64::from)), k);
                }
                let stored = match t {
                    None => cache.replace_if(k, v, |old| old % 2 == 0),
                    Some(t) => {
                        cache.replace_with_ttl_if(k, v, secs(u64::from(t)), |old| old % 2 == 0)
                    }
                };
                prop_assert_eq!(stored, expected, "replace_if {}", k);
            }
            Op::Compute(k, v) => {
                let live = m.live(k);
                let expected = match decide(live.as_ref(), v) {
                    Decide::Nop => live.map_or(CompResult::StillNone, CompResult::Unchanged),
                    Decide::Remove => {
                        may_remove = true;
                        CompResult::Removed(live.expect("only a present key is removed"))
                    }
                    Decide::Put(n) => {
                        written(m.write(k, n, None), k);
                        if live.is_some() {
                            CompResult::ReplacedWith(n)
                        } else {
                            CompResult::Inserted(n)
                        }
                    }
                };
                prop_assert_eq!(
                    cache.compute(k, |o| decide(o, v)),
                    expected,
                    "compute {}",
                    k
                );
            }
            Op::Upsert(k, v) => {
                let n = m.live(k).map_or(v, |o| o ^ v);
                written(m.write(k, n, None), k);
                prop_assert_eq!(
                    cache.upsert(k, |o| o.map_or(v, |o| o ^ v)),
                    n,
                    "upsert {}",
                    k
                );
            }
            Op::EntryOrInsert(k, v) => {
                let expected = m.live(k).unwrap_or(v);
                if m.live(k).is_none() {
                    written(m.write(k, v, None), k);
                }
                prop_assert_eq!(cache.entry(k).or_insert(v), expected, "or_insert {}", k);
            }
            Op::EntryModify(k, v) => {
                let n = m.live(k).map_or(v, |o| o.wrapping_add(v));
                written(m.write(k, n, None), k);
                let got = cache
                    .entry(k)
                    .and_modify(|o| o.wrapping_add(v))
                    .or_insert(v);
                prop_assert_eq!(got, n, "and_modify {}", k);
            }
            Op::RetainEven => {
                may_remove = true;
                cache.retain(|_k, v| v % 2 == 0);
            }
            Op::Clear => {
                may_clear = true;
                cache.clear();
            }
            Op::Purge => {
                cache.purge_expired();
            }
            Op::Advance(s) => {
                m.now += u64::from(s);
                clock.advance(secs(u64::from(s)));
            }
        }
        for (k, v, cause) in log.lock().unwrap().drain(..) {
            match cause {
                RemovalCause::Replaced => {
                    prop_assert_eq!(replaced.take(), Some((k, v)), "replaced");
                    continue;
                }
                RemovalCause::Expired if expired_over == Some((k, v)) => {
                    expired_over = None;
                    continue;
                }
                RemovalCause::Removed => {
                    prop_assert!(may_remove, "removed {} outside remove/retain", k);
                    prop_assert!(m.live(k).is_some(), "an expired {} reported removed", k);
                }
                RemovalCause::Cleared => {
                    prop_assert!(may_clear, "cleared {} outside clear", k);
                    prop_assert!(m.live(k).is_some(), "an expired {} reported cleared", k);
                }
                RemovalCause::Expired => {
                    let d = m.map.get(&k).map(|e| e.deadline);
                    prop_assert!(
                        d.is_some_and(|d| d <= m.now),
                        "expired {} before its deadline",
                        k
                    );
                }
                RemovalCause::Evicted => {}
            }
            let gone = m.map.remove(&k);
            prop_assert_eq!(
                gone.map(|e| e.v),
                Some(v),
                "departure of {} with the wrong value",
                k
            );
        }
        prop_assert!(replaced.is_none(), "replaced entry not reported");
        prop_assert!(
            expired_over.is_none(),
            "an expired entry written over not reported expired"
        );
        if matches!(op, Op::RetainEven) {
            prop_assert!(
                m.map.values().all(|e| e.v % 2 == 0 && e.deadline > m.now),
                "retain left odd or expired"
            );
        }
        if matches!(op, Op::Clear) {
            prop_assert!(m.map.is_empty());
        }
        // The cache and the model agree on everything observable.
        prop_assert_eq!(cache.len(), m.map.len());
        for k in 0..24 {
            prop_assert_eq!(cache.peek(&k), m.live(k), "contents differ at {}", k);
        }
        let total: u64 = m.map.values().map(|e| weight(e.v)).sum();
        prop_assert_eq!(cache.weighted_size(), total);
        prop_assert!(total <= capacity, "over capacity: {} > {}", total, capacity);
    }
    Ok(())
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop::option::of(1u64..7),
        prop::option::of(1u64..7),
        any::<bool>(),
    )
        .prop_map(|(ttl, tti, hooks)| Config { ttl, tti, hooks })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn s3fifo_matches_the_model(ops in prop::collection::vec(op(), 1..200), cap in 0u64..16, shards in 0u32..3) {
        run(ops, cap, 1 << shards, EvictionPolicy::S3Fifo, false, Config::default())?;
    }

    #[test]
    fn clock_matches_the_model(ops in prop::collection::vec(op(), 1..200), cap in 0u64..16, shards in 0u32..3) {
        run(ops, cap, 1 << shards, EvictionPolicy::Clock, false, Config::default())?;
    }

    #[test]
    fn adaptive_matches_the_model(ops in prop::collection::vec(op(), 1..200), cap in 0u64..16, shards in 0u32..3) {
        run(ops, cap, 1 << shards, EvictionPolicy::Adaptive, false, Config::default())?;
    }

    #[test]
    fn weighted_matches_the_model(ops in prop::collection::vec(op(), 1..200), cap in 0u64..24, shards in 0u32..3) {
        run(ops, cap, 1 << shards, EvictionPolicy::Adaptive, true, Config::default())?;
    }

    /// Time to live, time to idle and an `Expiry` with all three hooks, in
    /// every combination: the earliest deadline wins, reads move what they
    /// may, and an expired entry is never reported as anything else.
    #[test]
    fn expiry_settings_match_the_model(ops in prop::collection::vec(op(), 1..200), cap in 0u64..16, shards in 0u32..3, cfg in config()) {
        run(ops, cap, 1 << shards, EvictionPolicy::Adaptive, false, cfg)?;
    }
}
