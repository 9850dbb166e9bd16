//! Snapshots: the entries most valuable first with the time each had left,
//! a round trip through serde_json, and a cache warmed from it that keeps
//! the hot entries, drops the expired ones and respects its capacity.
#![cfg(feature = "serde")]

use std::time::Duration;

use clockcache::{Cache, MockClock, SnapshotEntry};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_snapshot_round_trips_through_serde_json_and_warms_a_smaller_cache() {
    let clock = MockClock::new();
    let cache: Cache<String, u64> = Cache::builder()
        .capacity(1_000)
        .shards(4)
        .time_to_live(secs(100))
        .clock(clock.clone())
        .build();
    for i in 0..300u64 {
        cache.insert(format!("k{i}"), i);
    }
    // Ten hot keys, read often.
    for _ in 0..3 {
        for i in 0..10u64 {
            assert_eq!(cache.get(&format!("k{i}")), Some(i));
        }
    }
    // Two that expire sooner, one of them before the snapshot.
    cache.insert_with_ttl("short".into(), 1, secs(30));
    cache.insert_with_ttl("gone".into(), 2, secs(5));
    clock.advance(secs(10));

    let snapshot = cache.snapshot();
    assert_eq!(snapshot.len(), 301, "every live entry, no expired one");
    assert!(snapshot.iter().all(|e| e.key != "gone"));
    // Most valuable first: the hot keys lead.
    let mut first: Vec<String> = snapshot[..10].iter().map(|e| e.key.clone()).collect();
    first.sort();
    let mut hot: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    hot.sort();
    assert_eq!(first, hot);
    assert!(snapshot[..10].iter().all(|e| e.frequency == 3));
    // The time each had left.
    let left = |k: &str| snapshot.iter().find(|e| e.key == k).unwrap().time_to_live;
    assert_eq!(left("k0"), Some(secs(90)));
    assert_eq!(left("short"), Some(secs(20)));

    let json = serde_json::to_string(&snapshot).unwrap();
    let back: Vec<SnapshotEntry<String, u64>> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);

    // A new process: its own clock, a smaller cache.
    let clock2 = MockClock::new();
    let warm: Cache<String, u64> = Cache::builder()
        .capacity(50)
        .shards(1)
        .time_to_live(secs(100))
        .clock(clock2.clone())
        .warm(back)
        .build();
    assert!(warm.len() <= 50, "the capacity bounds a warm start");
    for i in 0..10u64 {
        assert_eq!(warm.peek(&format!("k{i}")), Some(i), "hot k{i} came back");
    }
    // Each keeps no more than the time it had left.
    if warm.peek("short").is_some() {
        clock2.advance(secs(20));
        assert_eq!(warm.peek("short"), None);
    }
    clock2.advance(secs(90));
    assert_eq!(warm.peek("k0"), None, "its 90 s ran out");
}

#[test]
fn hot_entries_come_back_hot() {
    // Warmed into a full cache, the hot entries survive the next wave of
    // inserts that evicts the cold ones.
    let cache: Cache<u32, u32> = Cache::builder().capacity(100).shards(1).build();
    for i in 0..100 {
        cache.insert(i, i);
    }
    for _ in 0..3 {
        for i in 0..20 {
            cache.get(&i);
        }
    }
    let warm: Cache<u32, u32> = Cache::builder()
        .capacity(100)
        .shards(1)
        .warm(cache.snapshot())
        .build();
    for i in 1_000..1_080 {
        warm.insert(i, i);
    }
    for i in 0..20 {
        assert_eq!(warm.peek(&i), Some(i), "hot {i} was evicted");
    }
}

#[test]
fn an_entry_with_no_time_left_does_not_come_back() {
    let entries = vec![
        SnapshotEntry {
            key: 1u32,
            value: 1u32,
            time_to_live: Some(Duration::ZERO),
            frequency: 3,
        },
        SnapshotEntry {
            key: 2,
            value: 2,
            time_to_live: None,
            frequency: 0,
        },
    ];
    let warm: Cache<u32, u32> = Cache::builder().warm(entries).build();
    assert_eq!(warm.peek(&1), None);
    assert_eq!(warm.peek(&2), Some(2));
    assert_eq!(warm.len(), 1);
}
