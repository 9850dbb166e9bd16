//! Single flight for `get_or_insert_with`: concurrent callers that miss on
//! the same key wait for one loader instead of each running their own.
//!
//! The first caller to miss registers a [`Pending`] in the shard (under the
//! shard lock, next to the table check, so no second loader can slip in),
//! runs the loader without any lock, then, under the lock again, removes the
//! pending record and inserts the value in one step. Waiters block on the
//! record's condition variable. If the loader fails or panics, a drop guard
//! marks the record failed and wakes the waiters, who start over (one of them
//! becomes the next loader).

use crate::sync::{Condvar, Mutex};

pub(crate) enum State<V> {
    Loading,
    Done(V),
    Failed,
}

/// A load in flight.
pub(crate) struct Pending<V> {
    state: Mutex<State<V>>,
    ready: Condvar,
}

impl<V: Clone> Pending<V> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::Loading),
            ready: Condvar::new(),
        }
    }

    /// Publishes the outcome and wakes every waiter.
    pub(crate) fn finish(&self, outcome: Option<V>) {
        let mut s = self.state.lock();
        *s = match outcome {
            Some(v) => State::Done(v),
            None => State::Failed,
        };
        drop(s);
        self.ready.notify_all();
    }

    /// Blocks until the load ends: `Some(value)` on success, `None` if the
    /// loader failed or panicked.
    pub(crate) fn wait(&self) -> Option<V> {
        let mut s = self.state.lock();
        loop {
            match &*s {
                State::Loading => s = self.ready.wait(s),
                State::Done(v) => return Some(v.clone()),
                State::Failed => return None,
            }
        }
    }
}
