//! One kind of operation, repeated, for an instruction counter: what a hit, a
//! miss, an insert that evicts, an update of a present key and a remove each
//! cost, as counted by callgrind or cachegrind (`scripts/opcost`).
//!
//! A count run under valgrind includes the process's start, the cache's
//! construction and its prefill. To leave only the ops, the script runs each
//! case twice with different op counts and divides the difference of the
//! totals by the difference of the counts; everything else here is the same
//! in both runs (the key arrays are built at full length whatever the count).

use std::hint::black_box;

use crate::adapters::{BenchCache, CacheKind, CacheSpec, CacheVisitor};

/// The operation a run repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `get` of a key present in the cache.
    Hit,
    /// `get` of a key never inserted.
    Miss,
    /// `insert` of a new key into the full cache (each evicts one entry).
    InsertEvict,
    /// `insert` over a present key.
    Update,
    /// `remove` of a present key.
    Remove,
}

impl Op {
    /// Every op, in table order.
    pub const ALL: [Op; 5] = [Op::Hit, Op::Miss, Op::InsertEvict, Op::Update, Op::Remove];

    /// The name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Op::Hit => "hit",
            Op::Miss => "miss",
            Op::InsertEvict => "insert-evict",
            Op::Update => "update",
            Op::Remove => "remove",
        }
    }

    /// The op named `name`.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// The `i`th distinct key: spread over the whole `u64` range, as real keys'
/// hashes are.
fn key(i: usize) -> u64 {
    (i as u64 ^ 0x5555).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A fixed permutation step: coprime with every count that is not a
/// multiple of 7,919, so `j * STEP % count` visits every held key.
const STEP: usize = 7_919;

/// Builds a cache of `capacity` entries, fills it, then applies `ops` ops of
/// one kind. `max_ops` sizes the key arrays, so that two runs with different
/// `ops` differ only by the ops. Returns how many of the ops found their key
/// (gets that hit, removes that removed).
pub struct OpCost {
    /// Entries the cache holds (it is filled to this first).
    pub capacity: usize,
    /// The op repeated.
    pub op: Op,
    /// How many times.
    pub ops: usize,
    /// The most `ops` any run of a comparison uses.
    pub max_ops: usize,
}

impl CacheVisitor for OpCost {
    type Output = usize;
    fn visit<C: BenchCache>(self, _kind: CacheKind) -> usize {
        let cap = self.capacity.max(1);
        let prefill: Vec<u64> = (0..cap).map(key).collect();
        let cache = C::build(&CacheSpec::new(cap), &prefill);
        for &k in &prefill {
            cache.insert(k, k);
        }
        // Every prefilled key read once, so that the policies see a warm
        // cache rather than a cache of one-hit wonders; the keys still held
        // (a sharded cache may have evicted a few while it filled) are the
        // ones hits, updates and removes take.
        let held: Vec<u64> = prefill
            .iter()
            .copied()
            .filter(|&k| cache.get(k).is_some())
            .collect();
        let held = if held.is_empty() { prefill } else { held };
        cache.sync();
        let n = self.max_ops.max(self.ops);
        let present: Vec<u64> = (0..n).map(|j| held[j * STEP % held.len().max(1)]).collect();
        let absent: Vec<u64> = (0..n).map(|j| key(cap + j)).collect();
        black_box(measured(
            &cache,
            self.op,
            &present[..self.ops],
            &absent[..self.ops],
        ))
    }
}

/// The ops alone, in a function of their own so that a profiler can collect
/// inside it only: `valgrind --tool=callgrind --toggle-collect='*opcost*measured*'`.
#[inline(never)]
fn measured<C: BenchCache>(cache: &C, op: Op, present: &[u64], absent: &[u64]) -> usize {
    let mut found = 0;
    for j in 0..present.len() {
        found += match op {
            Op::Hit => usize::from(cache.get(black_box(present[j])).is_some()),
            Op::Miss => usize::from(cache.get(black_box(absent[j])).is_some()),
            Op::InsertEvict => {
                cache.insert(black_box(absent[j]), j as u64);
                0
            }
            Op::Update => {
                cache.insert(black_box(present[j]), j as u64);
                0
            }
            Op::Remove => usize::from(cache.remove(black_box(present[j])).is_some()),
        };
    }
    found
}
