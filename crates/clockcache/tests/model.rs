//! Property tests: random operation sequences run on the cache and, step by
//! step, on a plain `BTreeMap` reference model with the same semantics.
//!
//! The model cannot know which entry an eviction policy picks, so the cache's
//! eviction listener tells it: every departure is checked against the model
//! (right key, right value, a cause that the operation allows), applied to
//! it, and then the two must agree exactly: same live contents, same expired
//! entries hidden, same length, and the capacity bound respected.

use clockcache::{Cache, CompResult, EvictionPolicy, MockClock, Op as Decide, RemovalCause};
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

/// Reference model: key -> (value, deadline in seconds, u64::MAX = never).
#[derive(Default)]
struct Model {
    map: BTreeMap<u8, (u16, u64)>,
    now: u64,
}

impl Model {
    fn live(&self, k: u8) -> Option<u16> {
        self.map
            .get(&k)
            .filter(|(_, d)| *d > self.now)
            .map(|(v, _)| *v)
    }
}

type Log = Arc<Mutex<Vec<(u8, u16, RemovalCause)>>>;

fn run(
    ops: Vec<Op>,
    capacity: u64,
    shards: usize,
    policy: EvictionPolicy,
    weighted: bool,
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
    let cache: Cache<u8, u16> = b.build();
    let weight = |v: u16| if weighted { u64::from(v % 4) } else { 1 };
    let mut m = Model::default();

    for op in ops {
        // What this operation may legitimately make leave, besides
        // evictions and expirations (always allowed).
        let mut replaced: Option<(u8, u16)> = None;
        let mut may_remove = false;
        let mut may_clear = false;
        match op {
            Op::Insert(k, v) => {
                replaced = m.map.insert(k, (v, u64::MAX)).map(|(old, _)| (k, old));
                cache.insert(k, v);
            }
            Op::InsertTtl(k, v, t) => {
                replaced = m
                    .map
                    .insert(k, (v, m.now + u64::from(t)))
                    .map(|(old, _)| (k, old));
                cache.insert_with_ttl(k, v, Duration::from_secs(u64::from(t)));
            }
            Op::Get(k) => prop_assert_eq!(cache.get(&k), m.live(k), "get {}", k),
            Op::Peek(k) => prop_assert_eq!(cache.peek(&k), m.live(k), "peek {}", k),
            Op::Remove(k) => {
                may_remove = true;
                prop_assert_eq!(cache.remove(&k), m.live(k), "remove {}", k);
            }
            Op::GetOrInsert(k, v) => {
                let expected = m.live(k).unwrap_or(v);
                if m.live(k).is_none() {
                    replaced = m.map.insert(k, (v, u64::MAX)).map(|(old, _)| (k, old));
                }
                prop_assert_eq!(cache.get_or_insert_with(k, || v), expected);
            }
            Op::ReplaceIfEven(k, v, t) => {
                let expected = m.live(k).is_some_and(|old| old % 2 == 0);
                if expected {
                    let deadline = t.map_or(u64::MAX, |t| m.now + u64::from(t));
                    replaced = m.map.insert(k, (v, deadline)).map(|(old, _)| (k, old));
                }
                let stored = match t {
                    None => cache.replace_if(k, v, |old| old % 2 == 0),
                    Some(t) => {
                        cache.replace_with_ttl_if(k, v, Duration::from_secs(u64::from(t)), |old| {
                            old % 2 == 0
                        })
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
                        replaced = m.map.insert(k, (n, u64::MAX)).map(|(old, _)| (k, old));
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
                replaced = m.map.insert(k, (n, u64::MAX)).map(|(old, _)| (k, old));
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
                    replaced = m.map.insert(k, (v, u64::MAX)).map(|(old, _)| (k, old));
                }
                prop_assert_eq!(cache.entry(k).or_insert(v), expected, "or_insert {}", k);
            }
            Op::EntryModify(k, v) => {
                let n = m.live(k).map_or(v, |o| o.wrapping_add(v));
                replaced = m.map.insert(k, (n, u64::MAX)).map(|(old, _)| (k, old));
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
                clock.advance(Duration::from_secs(u64::from(s)));
            }
        }
        for (k, v, cause) in log.lock().unwrap().drain(..) {
            match cause {
                RemovalCause::Replaced => {
                    prop_assert_eq!(replaced.take(), Some((k, v)), "replaced");
                    continue;
                }
                RemovalCause::Removed => {
                    prop_assert!(may_remove, "removed {} outside remove/retain", k)
                }
                RemovalCause::Cleared => prop_assert!(may_clear, "cleared {} outside clear", k),
                RemovalCause::Expired => {
                    let d = m.map.get(&k).map(|e| e.1);
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
                gone.map(|e| e.0),
                Some(v),
                "departure of {} with the wrong value",
                k
            );
        }
        prop_assert!(replaced.is_none(), "replaced entry not reported");
        if matches!(op, Op::RetainEven) {
            prop_assert!(
                m.map.values().all(|(v, d)| v % 2 == 0 && *d > m.now),
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
        let total: u64 = m.map.values().map(|(v, _)| weight(*v)).sum();
        prop_assert_eq!(cache.weighted_size(), total);
        prop_assert!(total <= capacity, "over capacity: {} > {}", total, capacity);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn s3fifo_matches_the_model(ops in prop::collection::vec(op(), 1..200), cap in 0u64..16, shards in 0u32..3) {
        run(ops, cap, 1 << shards, EvictionPolicy::S3Fifo, false)?;
    }

    #[test]
    fn clock_matches_the_model(ops in prop::collection::vec(op(), 1..200), cap in 0u64..16, shards in 0u32..3) {
        run(ops, cap, 1 << shards, EvictionPolicy::Clock, false)?;
    }

    #[test]
    fn adaptive_matches_the_model(ops in prop::collection::vec(op(), 1..200), cap in 0u64..16, shards in 0u32..3) {
        run(ops, cap, 1 << shards, EvictionPolicy::Adaptive, false)?;
    }

    #[test]
    fn weighted_matches_the_model(ops in prop::collection::vec(op(), 1..200), cap in 0u64..24, shards in 0u32..3) {
        run(ops, cap, 1 << shards, EvictionPolicy::Adaptive, true)?;
    }
}
