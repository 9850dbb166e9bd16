//! Single flight for the loading calls (`get_or_insert_with`,
//! `get_or_insert_async` and their fallible forms): concurrent callers that
//! miss on the same key wait for one load instead of each running their own.
//!
//! The first caller to miss registers a [`Pending`] in the shard (under the
//! shard lock, next to the table check, so no second loader can slip in),
//! runs the loader without any lock, then, under the lock again, removes the
//! pending record and inserts the value in one step. Waiters block on the
//! record's condition variable, or, from async code, await its event.
//!
//! How a load ends decides what its waiters do:
//! - it succeeds: every waiter gets a clone of the value;
//! - it fails with an error: every waiter of the same error type gets the
//!   same `Arc` of it (the loader ran once for all of them);
//! - it panics or its future is dropped (a cancelled request, a timeout):
//!   the waiters start over, and one of them becomes the next loader.
//!
//! A write of the key while the load runs (`insert`, `remove`, `replace_if`,
//! `clear`) marks the record superseded: the load's value is still returned
//! to its callers but is not inserted over the newer state.
//!
//! A loader that calls back into the cache for its own key would wait for
//! itself forever. The loads running on a thread are kept in a thread-local
//! list (for async loads, only while their future is being polled), and a
//! caller about to wait for one of them panics with a message that names
//! the mistake instead; the panic unwinds through the outer loader, which
//! withdraws its load, so the key is not left stuck.

use std::any::Any;
use std::cell::RefCell;
#[cfg(not(loom))]
use std::future::Future;
#[cfg(not(loom))]
use std::pin::Pin;
#[cfg(not(loom))]
use std::task::{Context, Poll};

use crate::sync::{Condvar, Mutex};

/// A failed load's error, shared by its waiters (downcast to `Arc<E>`). A
/// std `Arc` under loom too: it reaches callers as the public `Arc<E>`, and
/// is immutable once made.
pub(crate) type SharedError = std::sync::Arc<dyn Any + Send + Sync>;

enum State<V> {
    Loading,
    Done(V),
    Failed(SharedError),
    /// Panicked or cancelled: the waiters start over.
    Abandoned,
}

/// What a waiter learns when the load it waited for ends.
pub(crate) enum Outcome<V> {
    /// The loaded value.
    Value(V),
    /// The loader's error.
    Error(SharedError),
    /// The loader panicked or was cancelled: start over.
    Retry,
}

/// A load in flight.
pub(crate) struct Pending<V> {
    state: Mutex<State<V>>,
    ready: Condvar,
    /// Wakes async waiters (loom models only the blocking path).
    #[cfg(not(loom))]
    event: event_listener::Event,
}

impl<V: Clone> Pending<V> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::Loading),
            ready: Condvar::new(),
            #[cfg(not(loom))]
            event: event_listener::Event::new(),
        }
    }

    fn end(&self, state: State<V>) {
        *self.state.lock() = state;
        self.ready.notify_all();
        #[cfg(not(loom))]
        self.event.notify(usize::MAX);
    }

    /// Publishes a loaded value and wakes every waiter.
    pub(crate) fn succeed(&self, value: V) {
        self.end(State::Done(value));
    }

    /// Publishes the loader's error and wakes every waiter.
    pub(crate) fn fail(&self, error: SharedError) {
        self.end(State::Failed(error));
    }

    /// Releases the waiters of a load that panicked or was cancelled.
    pub(crate) fn abandon(&self) {
        self.end(State::Abandoned);
    }

    fn outcome(state: &State<V>) -> Option<Outcome<V>> {
        match state {
            State::Loading => None,
            State::Done(v) => Some(Outcome::Value(v.clone())),
            State::Failed(e) => Some(Outcome::Error(e.clone())),
            State::Abandoned => Some(Outcome::Retry),
        }
    }

    /// Blocks until the load ends.
    pub(crate) fn wait(&self) -> Outcome<V> {
        self.check_not_own();
        let mut s = self.state.lock();
        loop {
            match Self::outcome(&s) {
                Some(o) => return o,
                None => s = self.ready.wait(s),
            }
        }
    }

    /// Blocks until the load ends or `deadline` (if any) passes; `None` if
    /// it passed first.
    #[cfg(not(loom))]
    pub(crate) fn wait_until(&self, deadline: Option<std::time::Instant>) -> Option<Outcome<V>> {
        let Some(deadline) = deadline else {
            return Some(self.wait());
        };
        self.check_not_own();
        let mut s = self.state.lock();
        loop {
            if let Some(o) = Self::outcome(&s) {
                return Some(o);
            }
            if self.ready.wait_until(&mut s, deadline) {
                return Self::outcome(&s);
            }
        }
    }

    /// Waits, without blocking the thread, until the load ends.
    #[cfg(not(loom))]
    pub(crate) async fn wait_async(&self) -> Outcome<V> {
        self.check_not_own();
        loop {
            if let Some(o) = Self::outcome(&self.state.lock()) {
                return o;
            }
            // Listen, then look again: an end between the first look and
            // the listen is seen by the second look.
            let listener = self.event.listen();
            if let Some(o) = Self::outcome(&self.state.lock()) {
                return o;
            }
            listener.await;
        }
    }

    fn id(&self) -> usize {
        // Stable: a pending record lives in an `Arc` until its load ends.
        self as *const Self as usize
    }

    /// Panics if this load is being run by the calling thread's own loader
    /// (waiting for it would never end).
    fn check_not_own(&self) {
        let id = self.id();
        if ACTIVE.with(|a| a.borrow().contains(&id)) {
            panic!(
                "clockcache: a loader called back into the cache for the key it is loading; \
                 it would wait for itself forever (load that key's dependencies, not the key)"
            );
        }
    }

    /// Marks this load as running on the current thread until the returned
    /// guard is dropped.
    pub(crate) fn enter(&self) -> Active {
        let id = self.id();
        ACTIVE.with(|a| a.borrow_mut().push(id));
        Active(id)
    }
}

crate::sync::thread_local! {
    /// The loads whose loader runs on this thread right now.
    // loom's `thread_local!` takes no `const` initialiser.
    #[allow(clippy::missing_const_for_thread_local)]
    static ACTIVE: RefCell<Vec<usize>> = RefCell::new(Vec::new());
}

/// A load running on this thread (see [`Pending::enter`]).
pub(crate) struct Active(usize);

impl Drop for Active {
    fn drop(&mut self) {
        let id = self.0;
        // Entered and left in stack order, except when a panic unwinds
        // several at once: remove this one wherever it is.
        let _ = ACTIVE.try_with(|a| {
            let mut a = a.borrow_mut();
            if let Some(i) = a.iter().rposition(|&x| x == id) {
                a.remove(i);
            }
        });
    }
}

/// Polls a loader's future with its load marked as running on the polling
/// thread, so that a nested wait for the same key is caught.
#[cfg(not(loom))]
pub(crate) struct Tracked<'a, V, F> {
    pub(crate) pending: &'a crate::sync::Arc<Pending<V>>,
    pub(crate) future: Pin<&'a mut F>,
}

#[cfg(not(loom))]
impl<V: Clone, F: Future> Future for Tracked<'_, V, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _active = self.pending.enter();
        self.future.as_mut().poll(cx)
    }
}
