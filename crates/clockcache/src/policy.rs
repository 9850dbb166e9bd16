//! Eviction: which entry leaves a full shard.
//!
//! Both policies run entirely on the write path, under the shard lock. The
//! only thing a reader contributes is the entry's access counter
//! ([`Entry::touch`]: a load and, if the counter is below 3, a store).
//!
//! - [`EvictionPolicy::Clock`]: one ring; the head is the clock hand. An
//!   entry with a non-zero counter gets a second chance (counter cleared,
//!   moved behind the hand); the first entry found with a zero counter goes.
//!   This approximates LRU.
//! - [`EvictionPolicy::S3Fifo`]: the S3-FIFO policy of Yang et al. (SOSP '23).
//!   New entries enter a small probationary FIFO (10% of the shard), or the
//!   main ring directly while it is below its share. An entry
//!   that leaves it without having been read since insertion is evicted and
//!   its key's fingerprint remembered in a ghost FIFO; one that was read moves
//!   to the main ring, a CLOCK whose counter counts down (up to three second
//!   chances). A new key found in the ghost goes straight to the main ring.
//!   One-hit wonders and scans thus pass through the small FIFO without
//!   flushing the main ring.
//! - [`EvictionPolicy::Adaptive`]: S3-FIFO whose split adapts from two ghosts
//!   (one per queue), and whose shards duel over keys back from the main
//!   ring's ghost (see `Policy::main_ghost_goes_to_main`).
//!
//! Expired entries met by the hand leave first, as `Expired`.

use crate::entry::{Entry, Queue};
use crate::ring::Ring;
use crate::sync::{Arc, AtomicI32, Ordering};
use crate::RemovalCause;
use std::ptr::NonNull;

/// An entry and its rank for keeping: access counter, queue (main 1,
/// probationary 0), distance from the hand (0 to 1).
pub(crate) type Ranked<K, V> = (NonNull<Entry<K, V>>, (u8, u8, f64));

/// Which eviction policy a cache uses (see [`CacheBuilder::eviction_policy`](crate::CacheBuilder::eviction_policy)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictionPolicy {
    /// CLOCK (second chance): an approximation of LRU. Choose it when the
    /// workload is purely recency-driven.
    Clock,
    /// S3-FIFO: a small probationary FIFO holding 10% of the capacity, a
    /// main CLOCK with small frequency counters, and a ghost of keys recently
    /// evicted from probation. Scan- and one-hit-wonder-resistant.
    S3Fifo,
    /// S3-FIFO whose probationary share adapts (between 1% and 99%) from
    /// ghost hits, as ARC adapts its split: a key that comes back after
    /// eviction from probation grows the probationary FIFO, one that comes
    /// back after eviction from the main clock shrinks it. Recency-friendly
    /// workloads drift towards CLOCK, frequency- and scan-heavy ones towards
    /// S3-FIFO. Whether a key back from the main clock re-enters it at once
    /// or goes through probation is settled by a duel between two shards
    /// (in caches of 8 shards or more), so loops slightly larger than the
    /// cache keep most of their keys. The default.
    #[default]
    Adaptive,
}

/// Which of `n` words a fingerprint selects: a multiply-shift of its low 32
/// bits (the bits within the word come from bits 40 and up).
#[inline]
fn index(fp: u64, n: usize) -> usize {
    ((u64::from(fp as u32) * n as u64) >> 32) as usize
}

/// Bits of Bloom filter per remembered key, for filters that hold many keys.
const GHOST_BITS_PER_KEY: usize = 10;

/// Fewest bits a filter takes while that stays within
/// [`GHOST_MAX_BITS_PER_KEY`] per key (2 KiB). A filter for few keys, a small
/// shard's, costs little in bytes either way, and there a false positive
/// costs much: true ghost hits are rare, so the fast track that false
/// positives open to unseen keys is most of the traffic into the main clock
/// (at 10 bits per key the P3 trace at 1,000 entries lost up to 0.06
/// points to LRU, depending on the hash seed; at 32, it gains 0.1).
const GHOST_MIN_FILTER_BITS: usize = 16_384;

/// Most bits per key the floor above may give a filter.
const GHOST_MAX_BITS_PER_KEY: usize = 32;

/// A blocked Bloom filter: a key sets three bits of one 64-bit word. The
/// word comes from the fingerprint's low 32 bits, the bits from bits 40 to
/// 57, so the two are independent. Each filter remembers one origin queue.
struct Bloom {
    words: Box<[u64]>,
    inserted: usize,
}

impl Bloom {
    /// Words for `keys` keys: [`GHOST_BITS_PER_KEY`] each, or more for a
    /// filter of few keys (see [`GHOST_MIN_FILTER_BITS`]); any count (the
    /// index is a multiply-shift, so no rounding up to a power of two).
    fn words_for(keys: usize) -> usize {
        let floor = GHOST_MIN_FILTER_BITS.min(keys.saturating_mul(GHOST_MAX_BITS_PER_KEY));
        keys.saturating_mul(GHOST_BITS_PER_KEY)
            .max(floor)
            .div_ceil(64)
            .max(16)
    }

    fn with_capacity(keys: usize) -> Self {
        Self::with_words(Self::words_for(keys))
    }

    fn with_words(n: usize) -> Self {
        Self {
            words: vec![0; n].into_boxed_slice(),
            inserted: 0,
        }
    }

    /// Words to allocate for `keys` keys: an eighth more than needed, so
    /// that a filter is reused (not reallocated) while the number of keys
    /// it must hold drifts by a few percent.
    fn words_with_headroom(keys: usize) -> usize {
        let n = Self::words_for(keys);
        n + n / 8
    }

    /// Whether `n` words suit `keys` keys: enough, and not far too many.
    fn fits(n: usize, keys: usize) -> bool {
        let want = Self::words_for(keys);
        n >= want && n <= want + want / 4
    }

    #[inline]
    fn bits(fp: u64) -> u64 {
        (1 << ((fp >> 40) & 63)) | (1 << ((fp >> 46) & 63)) | (1 << ((fp >> 52) & 63))
    }

    #[inline]
    fn word(&self, fp: u64) -> usize {
        index(fp, self.words.len())
    }

    /// Keys the filter takes at its designed false-positive rate.
    fn capacity(&self) -> usize {
        self.words.len() * 64 / GHOST_BITS_PER_KEY
    }

    fn insert(&mut self, fp: u64) {
        let w = self.word(fp);
        self.words[w] |= Self::bits(fp);
        self.inserted += 1;
    }

    /// Whether `fp` is in.
    #[inline]
    fn contains(&self, fp: u64) -> bool {
        let bits = Self::bits(fp);
        self.words[self.word(fp)] & bits == bits
    }
}

/// Remembers roughly the last `per_generation` to `2 × per_generation`
/// keys inserted: two Bloom filters, the older dropped whenever the newer has
/// taken a generation's worth.
struct Generations {
    current: Bloom,
    previous: Bloom,
}

impl Generations {
    fn new() -> Self {
        Self {
            current: Bloom::with_capacity(0),
            previous: Bloom::with_capacity(0),
        }
    }

    #[inline]
    fn insert(&mut self, fp: u64, per_generation: usize) {
        // Rotate after a generation's worth, or as soon as the filter holds
        // what it was sized for (a saturated filter would answer "seen" for
        // every key).
        if self.current.inserted >= per_generation.min(self.current.capacity()) {
            self.rotate(per_generation);
        }
        self.current.insert(fp);
    }

    #[cold]
    #[inline(never)]
    fn rotate(&mut self, per_generation: usize) {
        // The dropped generation's words become the new one when their
        // size still fits, so a steady cache rotates without allocating.
        let mut recycled = std::mem::replace(&mut self.previous, Bloom::with_capacity(0));
        if Bloom::fits(recycled.words.len(), per_generation) {
            recycled.words.fill(0);
            recycled.inserted = 0;
        } else {
            recycled = Bloom::with_words(Bloom::words_with_headroom(per_generation));
        }
        self.previous = std::mem::replace(&mut self.current, recycled);
    }

    /// Whether `fp` was inserted.
    #[inline]
    fn contains(&self, fp: u64) -> bool {
        self.current.contains(fp) || self.previous.contains(fp)
    }

    fn clear(&mut self) {
        for b in [&mut self.current, &mut self.previous] {
            b.words.fill(0);
            b.inserted = 0;
        }
    }

    fn heap_bytes(&self) -> usize {
        (self.current.words.len() + self.previous.words.len()) * 8
    }
}

/// One index of [`LongMemory`]: for each origin queue, its current and
/// previous generation's word, in one aligned 32-byte block, so that one
/// cache line answers for both queues and both generations.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Block([u64; 4]);

/// The long memory of both ghosts: keys evicted from probation (S3-FIFO's
/// ghost, ARC's B1) and from the main clock (ARC's B2) within the last
/// `cap` evictions of each, as two generations of blocked Bloom filter per
/// queue. The four filters share their index, so `admit` pays one cache
/// miss for all of them, not four.
struct LongMemory {
    blocks: Box<[Block]>,
    /// Per origin queue: which of its two words is the current generation.
    current: [usize; 2],
    /// Per origin queue: keys inserted into its current generation.
    inserted: [usize; 2],
}

impl LongMemory {
    fn new() -> Self {
        Self {
            blocks: vec![Block::default(); Bloom::words_for(0)].into_boxed_slice(),
            current: [0; 2],
            inserted: [0; 2],
        }
    }

    fn clear(&mut self) {
        self.blocks.fill(Block::default());
        self.current = [0; 2];
        self.inserted = [0; 2];
    }

    #[inline]
    fn block(&self, fp: u64) -> usize {
        index(fp, self.blocks.len())
    }

    /// Column of `origin`'s current (or previous) generation.
    #[inline]
    fn column(&self, origin: Queue, current: bool) -> usize {
        let o = origin as usize;
        2 * o + (self.current[o] ^ usize::from(!current))
    }

    #[inline]
    fn insert(&mut self, fp: u64, origin: Queue, per_generation: usize) {
        let o = origin as usize;
        let capacity = self.blocks.len() * 64 / GHOST_BITS_PER_KEY;
        if self.inserted[o] >= per_generation.min(capacity) {
            self.rotate(origin, per_generation);
        }
        let (i, c) = (self.block(fp), self.column(origin, true));
        self.blocks[i].0[c] |= Bloom::bits(fp);
        self.inserted[o] += 1;
    }

    /// Starts a new generation of `origin`'s memory (growing the filter
    /// first when it is too small for `per_generation` keys).
    #[cold]
    #[inline(never)]
    fn rotate(&mut self, origin: Queue, per_generation: usize) {
        let o = origin as usize;
        if Bloom::words_for(per_generation) > self.blocks.len() {
            // Too small for what the shard should remember: double.
            // A key's block in the doubled filter is one of the two
            // copies of its old block (the index is a multiply-shift),
            // so nothing is forgotten. The filter thus grows with the
            // evictions it has seen, not ahead of them.
            self.blocks = self.blocks.iter().flat_map(|&b| [b, b]).collect();
        }
        // Drop the previous generation; it becomes the new current.
        let old = self.column(origin, false);
        for b in self.blocks.iter_mut() {
            b.0[old] = 0;
        }
        self.current[o] ^= 1;
        self.inserted[o] = 0;
    }

    #[inline]
    fn contains(&self, fp: u64, origin: Queue) -> bool {
        self.contains_each(fp)[origin as usize]
    }

    /// Starts fetching the block of `fp` (see [`crate::sync::prefetch`]).
    #[inline]
    fn prefetch(&self, fp: u64) {
        crate::sync::prefetch(std::ptr::addr_of!(self.blocks[self.block(fp)]));
    }

    /// Whether `fp` is in each origin's memory (indexed by `Queue`): one
    /// block answers for both.
    #[inline]
    fn contains_each(&self, fp: u64) -> [bool; 2] {
        let bits = Bloom::bits(fp);
        let b = &self.blocks[self.block(fp)].0;
        let has = |w: u64| w & bits == bits;
        [has(b[0]) || has(b[1]), has(b[2]) || has(b[3])]
    }

    fn heap_bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<Block>()
    }
}

/// Fingerprints of recently evicted keys (about 1% false positives, no
/// false negatives), per origin queue: those evicted within the last `cap`
/// evictions, and, apart, those within the last `window`, so that a hit can
/// tell whether the key came back soon.
struct Ghosts {
    long: LongMemory,
    recent: [Generations; 2],
}

impl Ghosts {
    fn new() -> Self {
        Self {
            long: LongMemory::new(),
            recent: [Generations::new(), Generations::new()],
        }
    }

    /// `None` if `fp` is not remembered as evicted from `origin`; else
    /// whether it left recently.
    #[inline]
    fn lookup(&self, fp: u64, origin: Queue) -> Option<bool> {
        self.long
            .contains(fp, origin)
            .then(|| self.recent[origin as usize].contains(fp))
    }

    /// Whether `fp` is remembered as evicted from each origin (indexed by
    /// `Queue`): one block of the long memory answers for both. Whether it
    /// left recently is then [`Ghosts::recently`]'s to say.
    #[inline]
    fn remembered(&self, fp: u64) -> [bool; 2] {
        self.long.contains_each(fp)
    }

    /// Whether a remembered `fp` left `origin` recently.
    #[inline]
    fn recently(&self, fp: u64, origin: Queue) -> bool {
        self.recent[origin as usize].contains(fp)
    }

    fn insert(&mut self, fp: u64, origin: Queue, cap: usize, window: usize) {
        self.long.insert(fp, origin, cap.div_ceil(2).max(8));
        self.recent[origin as usize].insert(fp, window.div_ceil(2).max(4));
    }

    /// Forgets every key, in place: no allocation.
    fn clear(&mut self) {
        self.long.clear();
        for g in &mut self.recent {
            g.clear();
        }
    }

    fn heap_bytes(&self) -> usize {
        self.long.heap_bytes()
            + self
                .recent
                .iter()
                .map(Generations::heap_bytes)
                .sum::<usize>()
    }
}

/// The ghost's view of a key: the low 32 bits of its hash (what an entry
/// stores), spread over 64 bits.
#[inline]
fn fingerprint(hash: u64) -> u64 {
    u64::from(hash as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// An entry chosen by [`Policy::evict`], already out of its queue.
pub(crate) struct Victim<K, V> {
    pub(crate) entry: NonNull<Entry<K, V>>,
    pub(crate) cause: RemovalCause,
    /// The queue it left: which ghost remembers it, if evicted.
    pub(crate) from: Queue,
}

impl<K, V> Victim<K, V> {
    fn new(entry: NonNull<Entry<K, V>>, cause: RemovalCause, from: Queue) -> Self {
        Self { entry, cause, from }
    }
}

/// The per-shard eviction state.
pub(crate) struct Policy<K, V> {
    kind: EvictionPolicy,
    small: Ring<K, V>,
    main: Ring<K, V>,
    small_weight: u64,
    main_weight: u64,
    small_target: u64,
    budget: u64,
    /// Keys evicted unread from probation (S3-FIFO's ghost; ARC's B1) and,
    /// adaptive only, from the main clock (ARC's B2), each origin with its
    /// own history.
    ghosts: Ghosts,
    /// Adaptive only: this shard's side in the duel of the cache's shards
    /// (see `main_ghost_goes_to_main`).
    duel: Duel,
}

/// Bound of the dueling counter: about as many misses as it takes to change
/// course.
const DUEL_LIMIT: i32 = 1024;

/// How far ahead the fast-track shard must be before the others follow it:
/// probation is the safer side (it costs little where fast-tracking wins,
/// and fast-tracking costs much where it loses), so a close duel stays with
/// probation.
const DUEL_MARGIN: i32 = DUEL_LIMIT / 4;

/// Fewest shards a cache needs to spare two of them for the duel.
pub(crate) const DUEL_MIN_SHARDS: usize = 8;

/// A shard's side in the duel (see `Policy::main_ghost_goes_to_main`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DuelRole {
    /// Keys back from the main clock's ghost re-enter it at once.
    FastTrack,
    /// Such keys go through probation.
    Probation,
    /// Does what the side that misses less does.
    Follower,
}

/// A shard's role and the counter all shards of a cache share: misses of the
/// fast-track shard minus misses of the probation shard.
pub(crate) struct Duel {
    pub(crate) role: DuelRole,
    pub(crate) score: Arc<AtomicI32>,
}

/// Share of a shard's budget given to the S3-FIFO probationary queue (the
/// starting point of the adaptive policy).
const SMALL_SHARE_PERCENT: u64 = 10;
/// Bounds of the adaptive probationary share. The upper one lets a shard
/// become nearly one FIFO whose entries, once read, move to a small clock:
/// on recency-only traces at small sizes (P12 at 1,000 entries) that beats
/// LRU, where a main clock of at least 10% stays below it.
const MIN_SMALL_PERCENT: u64 = 1;
const MAX_SMALL_PERCENT: u64 = 99;

impl<K, V> Policy<K, V> {
    /// `expected_items`: what the rings start with; `item_limit`: what the
    /// shard's budget lets them hold at most (without a weigher).
    pub(crate) fn new(
        kind: EvictionPolicy,
        budget: u64,
        expected_items: usize,
        item_limit: usize,
        duel: Duel,
    ) -> Self {
        let (small_cap, main_cap) = match kind {
            EvictionPolicy::Clock => (0, expected_items),
            // Until the main ring holds its share, new entries go straight
            // to it (see `admit`); the small FIFO fills after that.
            EvictionPolicy::S3Fifo | EvictionPolicy::Adaptive => {
                (expected_items / 8, expected_items)
            }
        };
        Self {
            kind,
            small: Ring::new(small_cap, item_limit),
            main: Ring::new(main_cap, item_limit),
            small_weight: 0,
            main_weight: 0,
            small_target: (budget * SMALL_SHARE_PERCENT / 100).max(1),
            budget,
            ghosts: Ghosts::new(),
            duel,
        }
    }

    /// Whether a key back from the main clock's ghost re-enters the main
    /// clock at once (`true`) or goes through probation like a new key.
    ///
    /// Neither choice suits every workload. A key that keeps coming back
    /// after it left the main clock is worth keeping when it is more
    /// frequent than what it displaces (ARC's B2 hits; the P3 trace at
    /// 262,144 entries loses a point of hit ratio to LRU without them), but
    /// when every key comes back equally often (a loop slightly larger than
    /// the cache) each return evicts another resident that is needed just as
    /// soon, and the clock degrades to FIFO (1.5% of hits on a loop over 1.1x
    /// the capacity instead of about 85%); Zipf workloads lose two to four
    /// points to it as well. So the shards duel, as set dueling picks an
    /// insertion policy in CPU caches (Qureshi et al., ISCA 2007): one shard
    /// always re-enters such keys at once, one never does, each miss of
    /// either moves a shared saturating counter, and every other shard
    /// follows whichever misses less. Whole shards duel, not groups of keys:
    /// a key that re-enters at once gains for itself what the residents it
    /// displaces lose, so only a whole shard's misses show the cost.
    #[inline]
    fn main_ghost_goes_to_main(&self) -> bool {
        match self.duel.role {
            DuelRole::FastTrack => true,
            DuelRole::Probation => false,
            // Ties (and caches too small to duel) go to probation.
            DuelRole::Follower => self.duel.score.load(Ordering::Relaxed) < -DUEL_MARGIN,
        }
    }

    /// Counts a miss (an admission) of a dueling shard.
    #[inline]
    fn count_duel_miss(&self) {
        let step = match self.duel.role {
            DuelRole::FastTrack => 1,
            DuelRole::Probation => -1,
            DuelRole::Follower => return,
        };
        // A plain load and store: the two dueling shards may race and lose
        // a step, which only slows the counter down.
        let score = &self.duel.score;
        let next = (score.load(Ordering::Relaxed) + step).clamp(-DUEL_LIMIT, DUEL_LIMIT);
        score.store(next, Ordering::Relaxed);
    }

    /// Starts fetching the ghost filter block of `hash`, which admitting or
    /// remembering that key reads, so that the miss overlaps the work
    /// before it.
    #[inline]
    pub(crate) fn prefetch_ghosts(&self, hash: u64) {
        if self.kind != EvictionPolicy::Clock {
            self.ghosts.long.prefetch(fingerprint(hash));
        }
    }

    /// Places a newly inserted entry.
    pub(crate) fn admit(&mut self, e: &Entry<K, V>, p: NonNull<Entry<K, V>>, hash: u64) {
        let fp = fingerprint(hash);
        let to_main = match self.kind {
            EvictionPolicy::Clock => true,
            EvictionPolicy::S3Fifo => self.ghosts.lookup(fp, Queue::Small).is_some(),
            EvictionPolicy::Adaptive => {
                // A key back soon after leaving one queue (within about as
                // many evictions as probation holds entries) would have been
                // a hit had that queue been a little larger: move the split
                // towards it by the entry's weight. Keys back after longer
                // say nothing about the split. A key back from probation's
                // ghost skips probation; one back from the main clock's
                // skips it when the duel says so.
                let w = u64::from(e.weight).max(1);
                self.count_duel_miss();
                let seen = self.ghosts.remembered(fp);
                if seen[Queue::Main as usize] {
                    if self.ghosts.recently(fp, Queue::Main) {
                        let min = (self.budget * MIN_SMALL_PERCENT / 100).max(1);
                        self.small_target = self.small_target.saturating_sub(w).max(min);
                    }
                    self.main_ghost_goes_to_main()
                } else if seen[Queue::Small as usize] {
                    if self.ghosts.recently(fp, Queue::Small) {
                        let max = (self.budget * MAX_SMALL_PERCENT / 100).max(1);
                        self.small_target = (self.small_target + w).min(max);
                    }
                    true
                } else {
                    false
                }
            }
        };
        // While the main ring is below its share (the shard is filling, or
        // removals emptied it), new entries go straight to it, as quick_cache
        // admits to its hot ring while that has room: probation exists to
        // protect the main ring's residents, and it has room to spare.
        let to_main = to_main
            || (self.kind != EvictionPolicy::Clock
                && self.main_weight + u64::from(e.weight) + self.small_target <= self.budget);
        if to_main {
            e.set_queue(Queue::Main);
            self.main.push_back(e, p);
            self.main_weight += u64::from(e.weight);
        } else {
            e.set_queue(Queue::Small);
            self.small.push_back(e, p);
            self.small_weight += u64::from(e.weight);
        }
    }

    /// Takes an entry out (removal, expiry, clear).
    pub(crate) fn remove(&mut self, e: &Entry<K, V>) {
        match e.queue() {
            Queue::Small => {
                self.small.remove(e);
                self.small_weight -= u64::from(e.weight);
            }
            Queue::Main => {
                self.main.remove(e);
                self.main_weight -= u64::from(e.weight);
            }
        }
    }

    /// `new` replaces `old` (same key) in place, keeping its queue, position
    /// and access history.
    pub(crate) fn replace(
        &mut self,
        old: &Entry<K, V>,
        new: &Entry<K, V>,
        p: NonNull<Entry<K, V>>,
    ) {
        let q = old.queue();
        new.set_queue(q);
        new.freq
            .store(old.freq.load(Ordering::Relaxed), Ordering::Relaxed);
        let w = match q {
            Queue::Small => {
                self.small.replace(old, new, p);
                &mut self.small_weight
            }
            Queue::Main => {
                self.main.replace(old, new, p);
                &mut self.main_weight
            }
        };
        *w = *w - u64::from(old.weight) + u64::from(new.weight);
    }

    /// Chooses a victim and takes it out of its queue. `protect` (the entry
    /// just inserted) is never chosen; `None` means nothing else is left.
    pub(crate) fn evict(&mut self, now: u64, protect: *const Entry<K, V>) -> Option<Victim<K, V>> {
        if self.kind != EvictionPolicy::Clock
            && (self.small_weight > self.small_target || self.main.len() == 0)
        {
            if let Some(v) = self.evict_small(now, protect) {
                return Some(v);
            }
        }
        self.evict_main(now, protect).or_else(|| {
            // Main had nothing but `protect`: try the small FIFO after all.
            if self.kind != EvictionPolicy::Clock {
                self.evict_small(now, protect)
            } else {
                None
            }
        })
    }

    /// The entry that the next eviction from `from` considers first, if
    /// known (a hint for prefetching: that eviction may still pass it over).
    #[inline]
    pub(crate) fn next_at_hand(&self, from: Queue) -> Option<NonNull<Entry<K, V>>> {
        match from {
            Queue::Small => self.small.peek_front(),
            Queue::Main => self.main.peek_front(),
        }
    }

    /// Remembers the key hash of an evicted entry: its next insertion goes
    /// straight to the main ring (and, adaptive, moves the split).
    pub(crate) fn remember(&mut self, hash: u64, from: Queue) {
        let cap = (self.small.len() + self.main.len()).max(16);
        let window = self.small.len();
        let remember = match self.kind {
            EvictionPolicy::Clock => false,
            EvictionPolicy::S3Fifo => from == Queue::Small,
            EvictionPolicy::Adaptive => true,
        };
        if remember {
            self.ghosts.insert(fingerprint(hash), from, cap, window);
        }
    }

    fn evict_small(&mut self, now: u64, protect: *const Entry<K, V>) -> Option<Victim<K, V>> {
        // Each pass either returns or moves the head to the main ring, so the
        // loop ends.
        while let Some(p) = self.small.pop_front_except(protect) {
            // SAFETY: ring pointers are live entries of this shard; the shard
            // lock is held by our caller.
            let e = unsafe { p.as_ref() };
            let w = u64::from(e.weight);
            if e.is_expired(now) {
                self.small_weight -= w;
                return Some(Victim::new(p, RemovalCause::Expired, Queue::Small));
            }
            if e.freq.load(Ordering::Relaxed) > 0 {
                // Read while on probation: promote to the main ring.
                e.freq.store(0, Ordering::Relaxed);
                self.small_weight -= w;
                self.main_weight += w;
                e.set_queue(Queue::Main);
                self.main.push_back(e, p);
            } else {
                self.small_weight -= w;
                return Some(Victim::new(p, RemovalCause::Evicted, Queue::Small));
            }
        }
        None
    }

    fn evict_main(&mut self, now: u64, protect: *const Entry<K, V>) -> Option<Victim<K, V>> {
        // Every pass over the ring lowers each counter, so a victim turns up
        // within MAX_FREQ + 1 rotations unless readers keep raising counters;
        // past that bound the entry at the hand goes regardless.
        let mut budget = (self.main.len() + 1) * (usize::from(crate::entry::MAX_FREQ) + 2);
        while let Some(p) = self.main.pop_front_except(protect) {
            // SAFETY: as in `evict_small`.
            let e = unsafe { p.as_ref() };
            let w = u64::from(e.weight);
            if e.is_expired(now) {
                self.main_weight -= w;
                return Some(Victim::new(p, RemovalCause::Expired, Queue::Main));
            }
            let f = e.freq.load(Ordering::Relaxed);
            budget = budget.saturating_sub(1);
            if f > 0 && budget > 0 {
                let lowered = match self.kind {
                    EvictionPolicy::Clock => 0,
                    EvictionPolicy::S3Fifo | EvictionPolicy::Adaptive => f - 1,
                };
                e.freq.store(lowered, Ordering::Relaxed);
                self.main.push_back(e, p);
                continue;
            }
            self.main_weight -= w;
            return Some(Victim::new(p, RemovalCause::Evicted, Queue::Main));
        }
        None
    }

    /// Empties both queues, returning every entry (the ghost keeps its
    /// memory: see [`forget`](Self::forget)).
    pub(crate) fn drain(&mut self) -> Vec<NonNull<Entry<K, V>>> {
        let mut all: Vec<_> = self.small.drain().collect();
        all.extend(self.main.drain());
        self.small_weight = 0;
        self.main_weight = 0;
        all
    }

    /// Forgets every key the ghost remembers, keeping its filters' memory
    /// (sized by this shard's evictions so far) for the evictions to come.
    pub(crate) fn forget(&mut self) {
        self.ghosts.clear();
    }

    /// Every entry with its rank for keeping, highest first when sorted
    /// descending: its access counter, then the main queue before the
    /// probationary one, then its distance from the hand (the hand visits
    /// the entries nearest it first).
    pub(crate) fn ranked(&self) -> Vec<Ranked<K, V>> {
        let mut out = Vec::with_capacity(self.small.len() + self.main.len());
        for (q, ring) in [(0, &self.small), (1, &self.main)] {
            let n = ring.len().max(1) as f64;
            for (i, p) in ring.iter().enumerate() {
                // SAFETY: ring pointers are live entries (lock held).
                let f = unsafe { p.as_ref() }.freq.load(Ordering::Relaxed);
                out.push((p, (f, q, i as f64 / n)));
            }
        }
        out
    }

    /// Every entry, small FIFO first.
    pub(crate) fn entries(&self) -> impl Iterator<Item = NonNull<Entry<K, V>>> + '_ {
        self.small.iter().chain(self.main.iter())
    }

    /// Heap bytes held by the queues and the ghost.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.small.heap_bytes() + self.main.heap_bytes() + self.ghosts.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fps(n: u64, salt: u64) -> impl Iterator<Item = u64> {
        (0..n).map(move |i| fingerprint(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt))
    }

    #[test]
    fn long_memory_grows_with_evictions_and_forgets_nothing_when_it_doubles() {
        let mut m = LongMemory::new();
        let start = m.blocks.len();
        // A shard that should remember 4,000 keys per generation: the
        // filter starts small and doubles at each rotation until it fits.
        let mut seen = Vec::new();
        for fp in fps(3_000, 1) {
            let before = m.blocks.len();
            m.insert(fp, Queue::Small, 4_000);
            if m.blocks.len() > before {
                // Whatever the current generation held before the doubling
                // is still there.
                let recent = &seen[seen.len().saturating_sub(50)..];
                assert!(recent.iter().all(|&f| m.contains(f, Queue::Small)));
            }
            seen.push(fp);
        }
        assert!(m.blocks.len() > start);
        assert!(m.blocks.len() <= 2 * Bloom::words_for(4_000));
        // The two origins never answer for each other.
        let last = *seen.last().unwrap();
        assert!(m.contains(last, Queue::Small));
        let main_hits = fps(1_000, 1)
            .filter(|&f| m.contains(f, Queue::Main))
            .count();
        assert_eq!(main_hits, 0);
    }

    #[test]
    fn followers_take_the_side_of_the_duel_that_misses_less() {
        let score = Arc::new(AtomicI32::new(0));
        let side = |role| {
            let duel = Duel {
                role,
                score: Arc::clone(&score),
            };
            Policy::<u64, u64>::new(EvictionPolicy::Adaptive, 1000, 0, 1000, duel)
        };
        let (fast, slow, follower) = (
            side(DuelRole::FastTrack),
            side(DuelRole::Probation),
            side(DuelRole::Follower),
        );
        // The leaders do what they stand for, whatever the score.
        assert!(fast.main_ghost_goes_to_main());
        assert!(!slow.main_ghost_goes_to_main());
        // A tie, and a close duel, stay with probation.
        assert!(!follower.main_ghost_goes_to_main());
        for _ in 0..DUEL_MARGIN {
            slow.count_duel_miss();
        }
        assert!(!follower.main_ghost_goes_to_main());
        // The probation shard missing clearly more: follow the fast track.
        slow.count_duel_miss();
        assert!(follower.main_ghost_goes_to_main());
        // The counter saturates, so a change of workload turns it back
        // within a bounded number of misses.
        for _ in 0..10 * DUEL_LIMIT {
            fast.count_duel_miss();
        }
        assert_eq!(score.load(Ordering::Relaxed), DUEL_LIMIT);
        follower.count_duel_miss();
        assert_eq!(score.load(Ordering::Relaxed), DUEL_LIMIT);
        assert!(!follower.main_ghost_goes_to_main());
    }

    /// Ghosts that remembered `n` keys of `salt` evicted from probation,
    /// in a shard of `cap` entries with a recent window of `window`.
    fn ghosts_of(n: u64, salt: u64, cap: usize, window: usize) -> Ghosts {
        let mut g = Ghosts::new();
        for fp in fps(n, salt) {
            g.insert(fp, Queue::Small, cap, window);
        }
        g
    }

    /// How many of `keys` the ghosts claim to remember.
    fn claimed(g: &Ghosts, keys: impl Iterator<Item = u64>) -> usize {
        keys.filter(|&f| g.lookup(f, Queue::Small).is_some())
            .count()
    }

    /// `clear` forgets every key (none is claimed, in either queue, long
    /// or recent) and keeps the filters' memory, so that clearing a cache
    /// and dropping one allocate nothing here.
    #[test]
    fn cleared_ghosts_remember_nothing_and_keep_their_memory() {
        let mut g = ghosts_of(2_000, 4, 2_000, 200);
        for fp in fps(500, 5) {
            g.insert(fp, Queue::Main, 2_000, 200);
        }
        let bytes = g.heap_bytes();
        assert_eq!(claimed(&g, fps(2_000, 4).skip(1_800)), 200);
        g.clear();
        assert_eq!(g.heap_bytes(), bytes);
        assert_eq!(claimed(&g, fps(2_000, 4)), 0);
        assert!(fps(500, 5).all(|f| g.remembered(f) == [false, false]));
        assert!(fps(2_000, 4).all(|f| !g.recently(f, Queue::Small)));
        // And it remembers again.
        g.insert(7, Queue::Small, 2_000, 200);
        assert_eq!(g.lookup(7, Queue::Small), Some(true));
    }

    /// Draining the queues (a shard's drop) leaves the ghost as it is;
    /// `forget` (a shard's `clear`) empties it, keeping its memory.
    #[test]
    fn drain_keeps_the_ghost_and_forget_empties_it() {
        let duel = Duel {
            role: DuelRole::Follower,
            score: Arc::new(AtomicI32::new(0)),
        };
        let mut p = Policy::<u64, u64>::new(EvictionPolicy::Adaptive, 1000, 0, 1000, duel);
        let hash = 0x1234_5678_9abc_def0;
        p.remember(hash, Queue::Small);
        let fp = fingerprint(hash);
        assert!(p.drain().is_empty());
        assert_eq!(p.ghosts.lookup(fp, Queue::Small), Some(true));
        let bytes = p.ghosts.heap_bytes();
        p.forget();
        assert_eq!(p.ghosts.lookup(fp, Queue::Small), None);
        assert_eq!(p.ghosts.heap_bytes(), bytes);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a statistical property of safe code, 20,000 lookups")]
    fn ghost_false_positive_rate_stays_low_at_capacity() {
        let g = ghosts_of(10_000, 2, 10_000, 1_000);
        // Keys never inserted: about 1% false positives by design.
        let fp_hits = claimed(&g, fps(10_000, 3));
        assert!(fp_hits < 400, "{fp_hits} false positives in 10,000");
        // The last generation's keys are all remembered.
        assert_eq!(claimed(&g, fps(10_000, 2).skip(8_000)), 2_000);
    }

    /// A small shard's ghost (1,000 entries: 500 keys a generation) gets
    /// the 2 KiB floor, about 32 bits a key, and answers far fewer false
    /// positives than 10 bits a key would (0.19% of unseen keys here,
    /// against 0.74% without the floor); a large one stays at 10 bits a key.
    #[test]
    #[cfg_attr(miri, ignore = "a statistical property of safe code, 100,000 lookups")]
    fn small_ghosts_get_a_floor_of_bits_and_large_ones_ten_bits_per_key() {
        assert_eq!(Bloom::words_for(0), 16);
        assert_eq!(Bloom::words_for(100), 100 * GHOST_MAX_BITS_PER_KEY / 64);
        assert_eq!(Bloom::words_for(500), 500 * GHOST_MAX_BITS_PER_KEY / 64);
        assert_eq!(Bloom::words_for(1_000), GHOST_MIN_FILTER_BITS / 64);
        assert_eq!(
            Bloom::words_for(100_000),
            (100_000 * GHOST_BITS_PER_KEY).div_ceil(64)
        );
        let g = ghosts_of(2_000, 4, 1_000, 100);
        let fp_hits = claimed(&g, fps(100_000, 5));
        assert!(fp_hits < 500, "{fp_hits} false positives in 100,000");
    }
}
