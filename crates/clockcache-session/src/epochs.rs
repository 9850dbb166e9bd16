//! Invalidation epochs: how a fill that read before an invalidation finds out, afterwards, that
//! it must not keep what it read.
//!
//! A reader takes a [`Snapshot`] of its token's epochs before it reads from the slower tier (Redis,
//! the database); an invalidation bumps the token's epoch before it drops anything; the reader
//! stores what it read and then compares: if the snapshot changed, an invalidation ran in
//! between and the reader takes its copy back out. Tokens share a fixed number of slots, so a
//! collision costs a needless re-read, never a missed invalidation: with `n` slots, `r`
//! invalidations a second and reads that take `t` seconds, about `r * t / n` of the reads are
//! dropped for nothing.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-token (hashed to slots) and global invalidation counters.
pub(crate) struct Epochs {
    hasher: RandomState,
    /// Bumped on every invalidation of a token hashing to the slot.
    slots: Box<[AtomicU64]>,
    /// Bumped on every invalidation of everything.
    flush: AtomicU64,
}

/// The epochs a token had when a read began.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Snapshot {
    flush: u64,
    slot: u64,
}

impl Epochs {
    /// Counters for `slots` slots (at least one).
    pub(crate) fn new(slots: usize) -> Self {
        Epochs {
            hasher: RandomState::new(),
            slots: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
            flush: AtomicU64::new(0),
        }
    }

    fn slot(&self, token: &str) -> &AtomicU64 {
        &self.slots[(self.hasher.hash_one(token) as usize) % self.slots.len()]
    }

    /// The token's epochs now.
    pub(crate) fn snapshot(&self, token: &str) -> Snapshot {
        Snapshot {
            flush: self.flush.load(Ordering::SeqCst),
            slot: self.slot(token).load(Ordering::SeqCst),
        }
    }

    /// Marks every read of `token` that began before now as stale. Call it before dropping
    /// the token's copies.
    pub(crate) fn invalidate(&self, token: &str) {
        self.slot(token).fetch_add(1, Ordering::SeqCst);
    }

    /// Marks every read that began before now as stale.
    pub(crate) fn invalidate_all(&self) {
        self.flush.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether an invalidation of `token` ran since `before` was taken.
    pub(crate) fn changed(&self, token: &str, before: Snapshot) -> bool {
        self.snapshot(token) != before
    }

    /// Invalidates `token` (as [`invalidate`](Self::invalidate)) only if nothing invalidated it,
    /// or everything, since `before` was taken, and returns the epochs it now has. `None`: an
    /// invalidation came in between (or a token sharing the slot was invalidated), and nothing
    /// was changed.
    ///
    /// A writer calls it once its write has landed: every read whose snapshot is older than the
    /// completed write then finds its snapshot changed, while the writer keeps a snapshot that
    /// still reports every invalidation arriving after `before`.
    pub(crate) fn advance(&self, token: &str, before: Snapshot) -> Option<Snapshot> {
        let slot = self.slot(token);
        let next = before.slot.wrapping_add(1);
        slot.compare_exchange(before.slot, next, Ordering::SeqCst, Ordering::SeqCst)
            .ok()?;
        let now = Snapshot {
            flush: before.flush,
            slot: next,
        };
        // A flush since `before` leaves the slot alone: the caller's check against `now` sees
        // it, as it sees any flush from here on.
        (self.flush.load(Ordering::SeqCst) == before.flush).then_some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_changes_with_its_token_or_a_flush_only() {
        let e = Epochs::new(256);
        let a = e.snapshot("a");
        assert!(!e.changed("a", a));
        e.invalidate("a");
        assert!(e.changed("a", a));
        let a = e.snapshot("a");
        e.invalidate_all();
        assert!(e.changed("a", a));
        // Another token changes "a" only if they share a slot.
        let a = e.snapshot("a");
        let other = (0..10_000)
            .map(|i| format!("t{i}"))
            .find(|t| !std::ptr::eq(e.slot(t), e.slot("a")))
            .unwrap();
        e.invalidate(&other);
        assert!(!e.changed("a", a));
    }

    #[test]
    fn advance_succeeds_only_when_nothing_came_in_between() {
        let e = Epochs::new(256);
        let before = e.snapshot("a");
        let after = e.advance("a", before).expect("nothing in between");
        // Reads that snapshotted before the advance see a change; the advancer's own does not.
        assert!(e.changed("a", before));
        assert!(!e.changed("a", after));
        // An invalidation since the snapshot: refused, nothing changed.
        e.invalidate("a");
        let now = e.snapshot("a");
        assert_eq!(e.advance("a", after), None);
        assert_eq!(e.snapshot("a"), now);
        // A flush since the snapshot: refused.
        e.invalidate_all();
        assert_eq!(e.advance("a", now), None);
    }
}
