//! When removed values are released: the bound docs/design.md states
//! ("Reclamation"), checked with values that count themselves.
//!
//! A shard seals what it retired into a batch once 256 entries, or a
//! sixteenth of its budget by weight, have gathered; the epoch collector
//! drops a sealed batch at its second epoch advance after the sealing, and
//! every sealing write asks for an advance; bulk removals (`clear`,
//! `retain`, `purge_expired`) seal and drive the collector before they
//! return.
//!
//! The collector is global to the process, so a test that counts drops must
//! not share it with a test pinned in another thread: every test here takes
//! `SERIAL` first.

use clockcache::{Cache, MockClock};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Live values, and the most there ever were at once, in weight units.
#[derive(Default)]
struct Live {
    now: AtomicUsize,
    peak: AtomicUsize,
    created: AtomicUsize,
}

impl Live {
    fn add(&self, w: usize) {
        self.created.fetch_add(1, Ordering::SeqCst);
        let now = self.now.fetch_add(w, Ordering::SeqCst) + w;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
}

/// A value of `weight` units that counts itself live until dropped. Clones
/// share the payload, so what is counted is payloads, not handles.
#[derive(Clone)]
struct Blob(Arc<Payload>);

struct Payload {
    live: Arc<Live>,
    weight: usize,
    _bytes: Vec<u8>,
}

impl Blob {
    fn new(live: &Arc<Live>, weight: usize, bytes: usize) -> Self {
        live.add(weight);
        Blob(Arc::new(Payload {
            live: Arc::clone(live),
            weight,
            _bytes: vec![0; bytes],
        }))
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.live.now.fetch_sub(self.weight, Ordering::SeqCst);
    }
}

const MIB: usize = 1 << 20;

/// 20,000 distinct 1 MiB values through a 64 MiB cache, from `threads`
/// threads: the values alive at any moment never weigh more than 1.25 times
/// the capacity.
fn large_values_stay_within_the_capacity(threads: u64) {
    let _serial = serial();
    let live = Arc::new(Live::default());
    let cache: Cache<u64, Blob> = Cache::builder()
        .capacity(64 * MIB as u64)
        .weigher(|_, v: &Blob| v.0.weight as u32)
        .build();
    let per_thread = 20_000 / threads;
    std::thread::scope(|s| {
        for t in 0..threads {
            let (cache, live) = (&cache, &live);
            s.spawn(move || {
                for i in 0..per_thread {
                    cache.insert(t * per_thread + i, Blob::new(live, MIB, MIB));
                }
            });
        }
    });
    let peak = live.peak.load(Ordering::SeqCst);
    assert!(cache.weighted_size() <= 64 * MIB as u64);
    assert!(
        peak <= 64 * MIB + 16 * MIB,
        "{} MiB of values alive at the peak in a 64 MiB cache",
        peak / MIB
    );
    drop(cache);
    assert_eq!(
        live.now.load(Ordering::SeqCst),
        0,
        "dropping the cache drops its values"
    );
}

#[test]
#[cfg_attr(miri, ignore = "20 GiB of values written: too much for Miri")]
fn large_values_stay_within_the_capacity_from_one_thread() {
    large_values_stay_within_the_capacity(1);
}

#[test]
#[cfg_attr(miri, ignore = "20 GiB of values written: too much for Miri")]
fn large_values_stay_within_the_capacity_from_two_threads() {
    large_values_stay_within_the_capacity(2);
}

/// Removing every key one by one leaves alive only what the bound allows:
/// fewer than a sixteenth of the shard's budget unsealed, plus the two
/// batches sealed last (the collector runs a batch at the second advance
/// after it), with no further call into the cache.
#[test]
fn single_removals_release_their_values_within_the_bound() {
    let _serial = serial();
    let live = Arc::new(Live::default());
    // One shard of 1,024 entries: it seals every 64 removals.
    let cache: Cache<u64, Blob> = Cache::builder().capacity(1_024).shards(1).build();
    for k in 0..1_024 {
        cache.insert(k, Blob::new(&live, 1, 0));
    }
    let mut worst = 0;
    for k in 0..1_024 {
        assert!(cache.remove(&k).is_some());
        let alive = live.now.load(Ordering::SeqCst);
        let removed_alive = alive - (1_023 - k as usize);
        worst = worst.max(removed_alive);
    }
    let batch = 1_024 / 16;
    assert!(
        worst < 3 * batch,
        "{worst} removed values alive at once; the bound is {}",
        3 * batch - 1
    );
    // Every key is gone, and so is every value past the last seal's two.
    assert!(cache.is_empty());
    assert!(live.now.load(Ordering::SeqCst) <= 2 * batch);
}

/// Evictions and replacements release values like removals do: a long run
/// of writes never holds more than the capacity plus three batches.
#[test]
fn evictions_and_replacements_release_their_values_within_the_bound() {
    let _serial = serial();
    let live = Arc::new(Live::default());
    let cache: Cache<u64, Blob> = Cache::builder().capacity(512).shards(1).build();
    let writes = if cfg!(miri) { 1_500 } else { 50_000u64 };
    for i in 0..writes {
        // Half the writes replace a present key, half evict.
        let k = if i % 2 == 0 { i % 256 } else { i };
        cache.insert(k, Blob::new(&live, 1, 0));
    }
    let peak = live.peak.load(Ordering::SeqCst);
    assert!(peak < 512 + 3 * 32, "{peak} values alive at the peak");
}

/// `clear`, `retain` and `purge_expired` return with every value they took
/// out already dropped, although nothing calls into the cache afterwards.
#[test]
fn an_idle_cache_holds_no_value_after_a_bulk_removal() {
    let _serial = serial();
    let live = Arc::new(Live::default());
    let clock = MockClock::new();
    let cache: Cache<u64, Blob> = Cache::builder()
        .capacity(100_000)
        .clock(clock.clone())
        .build();
    // Under Miri, a hundredth of the entries.
    let n = if cfg!(miri) { 500 } else { 50_000 };
    let fill = |n: u64, ttl: Option<Duration>| {
        for k in 0..n {
            match ttl {
                Some(t) => cache.insert_with_ttl(k, Blob::new(&live, 1, 0), t),
                None => cache.insert(k, Blob::new(&live, 1, 0)),
            }
        }
    };

    fill(n, None);
    cache.clear();
    assert_eq!(live.now.load(Ordering::SeqCst), 0, "after clear");

    fill(n, None);
    cache.retain(|k, _| k % 2 == 0);
    assert_eq!(
        live.now.load(Ordering::SeqCst),
        n as usize / 2,
        "after retain"
    );
    cache.clear();

    fill(n, Some(Duration::from_millis(200)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.purge_expired(), n as usize);
    assert_eq!(live.now.load(Ordering::SeqCst), 0, "after purge_expired");
    drop(cache);
    assert_eq!(live.now.load(Ordering::SeqCst), 0);
}
