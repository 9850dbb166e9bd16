//! Expiry as the docs promise it: the earliest of time to live, time to
//! idle and an `Expiry`'s answer; insert, update and read hooks; a ttl of an
//! entry's own replacing all three; and an expired entry reported as
//! expired on every path that finds it. The property test in `model.rs`
//! checks every combination against a reference model; these tests pin
//! each promise down by name.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clockcache::{Cache, CacheBuilder, Expiry, MockClock, RemovalCause};

type Events = Arc<Mutex<Vec<(u32, u32, RemovalCause)>>>;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn recorded(b: CacheBuilder<u32, u32>, clock: &MockClock) -> (Cache<u32, u32>, Events) {
    let events: Events = Arc::default();
    let e = events.clone();
    let cache = b
        .capacity(100)
        .clock(clock.clone())
        .eviction_listener(move |k: &u32, v: &u32, c| e.lock().unwrap().push((*k, *v, c)))
        .build();
    (cache, events)
}

#[test]
fn time_to_idle_never_outlives_the_time_to_live() {
    let clock = MockClock::new();
    let (c, _) = recorded(
        Cache::builder()
            .time_to_live(secs(10))
            .time_to_idle(secs(4)),
        &clock,
    );
    c.insert(1, 1);
    for _ in 0..3 {
        clock.advance(secs(3));
        assert_eq!(c.get(&1), Some(1), "read within its idle time");
    }
    clock.advance(secs(1)); // 10 s after the write
    assert_eq!(
        c.get(&1),
        None,
        "its time to live ends it, however often read"
    );
    // And idleness ends it before its time to live.
    c.insert(2, 2);
    clock.advance(secs(4));
    assert_eq!(c.get(&2), None);
}

#[test]
fn an_expiry_combines_with_the_time_to_live() {
    let clock = MockClock::new();
    let by_key = |k: &u32, _v: &u32| Some(secs(u64::from(*k)));
    let (c, _) = recorded(
        Cache::builder().time_to_live(secs(5)).expiry(by_key),
        &clock,
    );
    c.insert(2, 0);
    c.insert(9, 0);
    clock.advance(secs(2));
    assert_eq!(c.get(&2), None, "the expiry's 2 s came first");
    assert_eq!(c.get(&9), Some(0));
    clock.advance(secs(3));
    assert_eq!(c.get(&9), None, "the time to live's 5 s came first");
}

/// Records the time left each hook was given.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<HookCall>>>);

/// A hook's name and the time left it was given.
type HookCall = (&'static str, Option<Duration>);

impl Expiry<u32, u32> for Recording {
    fn expire_after_insert(&self, _k: &u32, _v: &u32) -> Option<Duration> {
        self.0.lock().unwrap().push(("insert", None));
        Some(secs(10))
    }
    fn expire_after_update(&self, _k: &u32, v: &u32, left: Option<Duration>) -> Option<Duration> {
        self.0.lock().unwrap().push(("update", left));
        // Odd values keep the time left; even ones start over.
        if v % 2 == 1 {
            left
        } else {
            Some(secs(10))
        }
    }
    fn expire_after_read(&self, _k: &u32, _v: &u32, left: Option<Duration>) -> Option<Duration> {
        self.0.lock().unwrap().push(("read", left));
        // Each read grants 2 s more than was left.
        left.map(|l| l + secs(2))
    }
}

#[test]
fn the_update_and_read_hooks_see_the_time_left_and_set_the_next_deadline() {
    let clock = MockClock::new();
    let hooks = Recording::default();
    let (c, _) = recorded(Cache::builder().expiry(hooks.clone()), &clock);
    c.insert(1, 0);
    clock.advance(secs(4));
    c.insert(1, 1); // keeps the 6 s left
    clock.advance(secs(1));
    assert_eq!(c.get(&1), Some(1)); // 5 s left, 7 s after the read
    assert_eq!(c.peek(&1), Some(1), "peek calls no hook");
    assert!(c.contains_key(&1));
    clock.advance(secs(6));
    assert_eq!(c.peek(&1), Some(1));
    clock.advance(secs(1));
    assert_eq!(c.peek(&1), None, "expired 7 s after the read");
    assert_eq!(
        *hooks.0.lock().unwrap(),
        vec![
            ("insert", None),
            ("update", Some(secs(6))),
            ("read", Some(secs(5))),
        ]
    );
}

#[test]
fn the_default_hooks_keep_todays_behaviour() {
    let clock = MockClock::new();
    let (c, _) = recorded(
        Cache::builder().expiry(|_k: &u32, _v: &u32| Some(secs(10))),
        &clock,
    );
    c.insert(1, 1);
    clock.advance(secs(6));
    assert_eq!(c.get(&1), Some(1), "a read changes nothing");
    c.insert(1, 2); // an update answers as an insert: 10 s from now
    clock.advance(secs(9));
    assert_eq!(c.get(&1), Some(2));
    clock.advance(secs(1));
    assert_eq!(c.get(&1), None);
}

#[test]
fn a_read_hook_can_give_a_deadline_to_an_entry_that_had_none() {
    struct AfterFirstRead;
    impl Expiry<u32, u32> for AfterFirstRead {
        fn expire_after_insert(&self, _k: &u32, _v: &u32) -> Option<Duration> {
            None
        }
        fn expire_after_read(
            &self,
            _k: &u32,
            _v: &u32,
            _left: Option<Duration>,
        ) -> Option<Duration> {
            Some(secs(1))
        }
    }
    let clock = MockClock::new();
    let (c, events) = recorded(Cache::builder().expiry(AfterFirstRead), &clock);
    c.insert(1, 1);
    clock.advance(secs(100));
    assert_eq!(c.get(&1), Some(1));
    clock.advance(secs(1));
    assert_eq!(c.get(&1), None);
    // Writing over it reports it expired.
    c.insert(1, 2);
    assert_eq!(*events.lock().unwrap(), vec![(1, 1, RemovalCause::Expired)]);
}

#[test]
fn an_entrys_own_ttl_replaces_every_setting() {
    let clock = MockClock::new();
    let (c, _) = recorded(
        Cache::builder()
            .time_to_live(secs(2))
            .time_to_idle(secs(1))
            .expiry(|_k: &u32, _v: &u32| Some(secs(1))),
        &clock,
    );
    c.insert_with_ttl(1, 1, secs(5));
    for _ in 0..4 {
        clock.advance(secs(1));
        assert_eq!(c.peek(&1), Some(1), "not idle-expired, not cut to 1 or 2 s");
    }
    clock.advance(secs(1));
    assert_eq!(c.get(&1), None);
}

#[test]
fn an_expired_entry_is_reported_expired_on_every_path_that_finds_it() {
    let clock = MockClock::new();
    let (c, events) = recorded(Cache::builder().time_to_live(secs(1)), &clock);
    for k in 0..4 {
        c.insert(k, k);
    }
    clock.advance(secs(1));
    let before = c.stats();
    // remove: reclaimed as expired, the predicate never sees it.
    assert_eq!(c.remove(&0), None);
    assert_eq!(c.remove_if(&1, |_| panic!("shown an expired value")), None);
    // insert over it: expired, and counted as an insert, not an update.
    c.insert(2, 20);
    // clear: the expired one as expired, the live one as cleared.
    c.clear();
    let after = c.stats();
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            (0, 0, RemovalCause::Expired),
            (1, 1, RemovalCause::Expired),
            (2, 2, RemovalCause::Expired),
            (3, 3, RemovalCause::Expired),
            (2, 20, RemovalCause::Cleared),
        ]
    );
    assert_eq!(after.updates, before.updates);
    assert_eq!(after.inserts, before.inserts + 1);
    assert_eq!(after.expirations, before.expirations + 4);
    assert_eq!(after.removals, before.removals + 1);
}

#[test]
fn clear_reports_an_expired_entry_as_expired() {
    let clock = MockClock::new();
    let (c, events) = recorded(Cache::builder().time_to_live(secs(1)), &clock);
    c.insert(1, 1);
    c.insert_with_ttl(2, 2, secs(10));
    clock.advance(secs(1));
    c.clear();
    let mut seen = events.lock().unwrap().clone();
    seen.sort_by_key(|e| e.0);
    assert_eq!(
        seen,
        vec![(1, 1, RemovalCause::Expired), (2, 2, RemovalCause::Cleared)]
    );
}

#[test]
fn len_and_weighted_size_count_expired_entries_until_they_are_reclaimed() {
    let clock = MockClock::new();
    let (c, _) = recorded(Cache::builder().time_to_live(secs(1)), &clock);
    c.insert(1, 1);
    c.insert(2, 2);
    clock.advance(secs(1));
    assert_eq!(c.get(&1), None, "never read");
    assert_eq!((c.len(), c.weighted_size()), (2, 2), "held until reclaimed");
    assert_eq!(c.purge_expired(), 2);
    assert_eq!((c.len(), c.weighted_size()), (0, 0));
}

#[test]
fn policy_reports_the_settings_as_built() {
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(64)
        .shards(2)
        .weigher(|_k: &u32, _v: &u32| 1)
        .time_to_live(secs(5))
        .expiry(|_k: &u32, _v: &u32| None)
        .eviction_policy(clockcache::EvictionPolicy::Clock)
        .build();
    let p = c.policy();
    assert_eq!(p.capacity, 64);
    assert!(p.weighted && p.expiry);
    assert_eq!((p.time_to_live, p.time_to_idle), (Some(secs(5)), None));
    assert_eq!(p.refresh_after, None);
    assert_eq!(p.eviction_policy, clockcache::EvictionPolicy::Clock);
    assert_eq!(p.shards, 2);
}
