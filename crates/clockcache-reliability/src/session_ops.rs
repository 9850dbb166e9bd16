//! `session_ops`: operation sequences on the in-memory session strategy
//! and on a [`SessionCache`] service over it, against a model.
//!
//! The model holds what the strategy caches (token → session and its
//! deadline on the strategy's mock clock), the "database" the service's
//! loader reads, and the service's secondary index (token → user, order).
//! As in `cache_ops`, the strategy's `dispose` callback tells the model
//! which sessions left and why (eviction picks are the engine's), each
//! departure checked against the model. After every operation the model
//! and the strategy must agree: `get_now` for every token, `all()`,
//! `length()`, the service's `indexed_sessions()`.
//!
//! Sessions expire a day after the run starts (or expired a day before),
//! so wall-clock time never decides anything within a run; the strategy's
//! own ttl, if any, runs on a [`MockClock`] the operations advance.

use arbitrary::{Arbitrary, Unstructured};
use clockcache::MockClock;
use clockcache_session::{
    CachedSession, CachedSessionUser, FnLoader, Id, InMemoryOptions, InMemorySessionCacheStrategy,
    LoaderError, RemovalCause, SessionCache, SessionCacheConfig, SessionCacheError,
    SessionCacheStrategy,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Most operations run per input.
pub const MAX_OPS: usize = 500;
const MS: u64 = 1_000_000;
const NEVER: u64 = u64::MAX;
const CACHE_TTL_SECS: i64 = 300;

/// Tokens: the first [`VALID`] are valid (the longest allowed among them),
/// the rest are rejected by every operation.
fn tokens() -> Vec<String> {
    vec![
        "t0".into(),
        "t1".into(),
        "token-2".into(),
        "ü3".into(),
        "x".repeat(clockcache_session::MAX_TOKEN_LEN),
        String::new(),
        "bad\ntoken".into(),
        "y".repeat(clockcache_session::MAX_TOKEN_LEN + 1),
    ]
}
const VALID: usize = 5;

/// A session the fuzzer describes.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct Spec {
    /// Token index (modulo the token count).
    pub token: u8,
    /// Distinguishes versions (the session id and the ms of `expires`).
    pub version: u16,
    /// An authenticated user's id.
    pub user: Option<u8>,
    /// The active order's id.
    pub order: Option<u8>,
    /// Expired a day ago instead of expiring in a day.
    pub expired: bool,
    /// `cache_expiry` in the past (the service reloads it).
    pub stale: bool,
}

/// One operation.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Op {
    /// `strategy.set_now(session)`.
    StrategySet(Spec),
    /// `strategy.get_now(token)`.
    StrategyGet(u8),
    /// `strategy.delete_now(token)`.
    StrategyDelete(u8),
    /// `strategy.touch(token, session)`.
    Touch(u8, Spec),
    /// `strategy.prune()`.
    Prune,
    /// `strategy.clear()` (through the trait).
    StrategyClear,
    /// Advances the strategy's mock clock (milliseconds).
    Advance(u8),
    /// Puts a session in the loader's database.
    DbPut(Spec),
    /// Puts a session stored under another token in the database.
    DbPutWrongToken(u8, Spec),
    /// Removes a token from the database.
    DbDelete(u8),
    /// Makes the loader fail (or succeed again).
    LoaderFails(bool),
    /// `service.get(token)`.
    Get(u8),
    /// `service.set(session)`.
    Set(Spec),
    /// `service.delete(token)`.
    Delete(u8),
    /// `service.clear()`.
    Clear,
    /// `service.delete_sessions_by_user(id)`.
    DeleteByUser(u8),
    /// `service.delete_sessions_by_active_order(id)`.
    DeleteByOrder(u8),
    /// `service.set_active_order(cached session of token, id)`.
    SetActiveOrder(u8, u8),
    /// `service.unset_active_order(cached session of token)`.
    UnsetActiveOrder(u8),
}

/// A fuzz input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// The strategy's `max`: `1 + max % 8`.
    pub max: u8,
    /// The strategy's fixed ttl in milliseconds, if any.
    pub ttl: Option<u8>,
    /// What is done.
    pub ops: Vec<Op>,
}

/// The fuzz target: decodes `data` and runs it (see [`check`]).
pub fn run(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        check(&input);
    }
}

type Events = Arc<Mutex<Vec<(String, Arc<CachedSession>, RemovalCause)>>>;

struct World {
    tokens: Vec<String>,
    /// Sessions expire at `future`, or expired at `past`.
    future: OffsetDateTime,
    past: OffsetDateTime,
}

impl World {
    fn token(&self, i: u8) -> &str {
        &self.tokens[usize::from(i) % self.tokens.len()]
    }

    fn valid(&self, i: u8) -> bool {
        usize::from(i) % self.tokens.len() < VALID
    }

    fn session(&self, s: &Spec) -> CachedSession {
        let base = if s.expired { self.past } else { self.future };
        let mut c = CachedSession::new(
            i64::from(s.version),
            self.token(s.token),
            base + Duration::from_millis(u64::from(s.version)),
            Duration::from_secs(86_400),
        );
        if s.stale {
            c.cache_expiry = 0.0;
        }
        c.active_order_id = s.order.map(|o| Id::Int(i64::from(o)));
        c.user = s.user.map(|u| CachedSessionUser {
            id: Id::Int(i64::from(u)),
            identifier: format!("user{u}@example.com"),
            verified: true,
            channel_permissions: Vec::new(),
        });
        c
    }
}

#[derive(Default)]
struct Model {
    /// What the strategy holds: session and deadline (mock nanoseconds).
    cache: BTreeMap<String, (Arc<CachedSession>, u64)>,
    now: u64,
    ttl: Option<u64>,
    /// The service's secondary index: token -> (user, order).
    index: BTreeMap<String, (Option<Id>, Option<Id>)>,
    /// When each indexed token was recorded, and the tokens by that order:
    /// a full index drops the entry that lapses first, which here (every
    /// copy lives the same cache ttl) is the one recorded first.
    index_seq: BTreeMap<String, u64>,
    by_seq: BTreeMap<u64, String>,
    recorded: u64,
    /// The service's `index_capacity()`.
    index_capacity: usize,
    /// Expired sessions a set wrote over: each leaves through dispose as
    /// expired, without taking the new session out of the model.
    expired_over: Vec<(String, Arc<CachedSession>)>,
}

impl Model {
    fn live(&self, token: &str) -> Option<&Arc<CachedSession>> {
        self.cache
            .get(token)
            .filter(|(_, d)| *d > self.now)
            .map(|(s, _)| s)
    }

    /// The strategy's insert: an expired session removes the token.
    fn insert(&mut self, s: Arc<CachedSession>, now_utc: OffsetDateTime) {
        // An expired session (or a zero ttl) removes the token instead; the
        // removal is reported through dispose.
        if s.is_expired_at(now_utc) || self.ttl == Some(0) {
            return;
        }
        let deadline = self.ttl.map_or(NEVER, |t| self.now.saturating_add(t));
        let token = s.token.clone();
        if let Some((old, d)) = self.cache.insert(token.clone(), (s, deadline)) {
            if d <= self.now {
                self.expired_over.push((token, old));
            }
        }
    }

    /// The service's `Index::record`.
    fn record(&mut self, s: &CachedSession) {
        self.index.remove(&s.token);
        // A copy already past its cache_expiry or expires is not indexed.
        if s.remaining_cache_life(OffsetDateTime::now_utc()).is_none() {
            return;
        }
        let user = s.user.as_ref().map(|u| u.id.clone());
        let order = s.active_order_id.clone();
        if user.is_some() || order.is_some() {
            self.index.insert(s.token.clone(), (user, order));
            self.recorded += 1;
            self.index_seq.insert(s.token.clone(), self.recorded);
            self.by_seq.insert(self.recorded, s.token.clone());
        }
        while self.index.len() > self.index_capacity {
            let Some((seq, token)) = self.by_seq.pop_first() else {
                break;
            };
            // Only the token's latest recording counts, and only while the
            // token is still indexed.
            if self.index_seq.get(&token) == Some(&seq) && self.index.remove(&token).is_some() {
                self.index_seq.remove(&token);
            }
        }
    }
}

/// Checks a session the service stored: equal to `want` except for the
/// `cache_expiry` the service sets (now + its cache ttl).
fn assert_stored(got: &CachedSession, want: &CachedSession, before: i64, after: i64, what: &str) {
    let mut normalized = got.clone();
    normalized.cache_expiry = want.cache_expiry;
    assert_eq!(&normalized, want, "{what}: stored session differs");
    assert!(
        ((before + CACHE_TTL_SECS) as f64..=(after + CACHE_TTL_SECS) as f64)
            .contains(&got.cache_expiry),
        "{what}: cache_expiry {} not {CACHE_TTL_SECS} s from now ({before}..={after})",
        got.cache_expiry
    );
}

fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Runs `input` and panics at the first difference from the model.
pub fn check(input: &Input) {
    let now = OffsetDateTime::now_utc();
    let world = World {
        tokens: tokens(),
        future: now + Duration::from_secs(86_400),
        past: now - Duration::from_secs(86_400),
    };
    let clock = MockClock::new();
    let events: Events = Arc::default();
    let mut opts = InMemoryOptions::default()
        .max(1 + u64::from(input.max % 8))
        .clock(clock.clone())
        // The model counts departures only: a replacement by a `set` is not
        // one (that dispose reports it by default is checked in the session
        // crate's tests).
        .no_dispose_on_set(true)
        .dispose({
            let events = events.clone();
            move |token: &str, s: &Arc<CachedSession>, cause| {
                events
                    .lock()
                    .unwrap()
                    .push((token.to_owned(), s.clone(), cause));
            }
        });
    if let Some(t) = input.ttl {
        opts = opts.ttl(Duration::from_millis(u64::from(t)));
    }
    let strategy = Arc::new(InMemorySessionCacheStrategy::with_options(opts));
    let db: Arc<Mutex<BTreeMap<String, CachedSession>>> = Arc::default();
    let fail = Arc::new(Mutex::new(false));
    let loader = FnLoader({
        let (db, fail) = (db.clone(), fail.clone());
        move |token: String| {
            let result = if *fail.lock().unwrap() {
                Err(LoaderError::from("the database is down"))
            } else {
                Ok(db.lock().unwrap().get(&token).cloned())
            };
            async move { result }
        }
    });
    let service = SessionCache::with_config(
        strategy.clone(),
        Arc::new(loader),
        SessionCacheConfig {
            // Far above anything a step takes: the budget must never decide.
            budget: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(CACHE_TTL_SECS as u64),
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let mut m = Model {
        now: 1,
        ttl: input.ttl.map(|t| u64::from(t) * MS),
        index_capacity: service.index_capacity(),
        ..Model::default()
    };

    for (step, &op) in input.ops.iter().take(MAX_OPS).enumerate() {
        let ctx = || format!("step {step}: {op:?}");
        let now_utc = OffsetDateTime::now_utc();
        rt.block_on(async {
            match op {
                Op::StrategySet(spec) => {
                    let s = Arc::new(world.session(&spec));
                    let r = strategy.set_now(s.clone());
                    assert_eq!(r.is_ok(), world.valid(spec.token), "set_now: {}", ctx());
                    if r.is_ok() {
                        m.insert(s, now_utc);
                    }
                }
                Op::StrategyGet(t) => {
                    let got = strategy.get_now(world.token(t));
                    assert_eq!(got.as_ref(), m.live(world.token(t)), "get_now: {}", ctx());
                }
                Op::StrategyDelete(t) => {
                    let r = strategy.delete_now(world.token(t));
                    assert_eq!(r.is_ok(), world.valid(t), "delete_now: {}", ctx());
                }
                Op::Touch(t, spec) => {
                    let token = world.token(t);
                    let new = world.session(&spec);
                    // A touch applies only to the copy it was given: the
                    // cached one, equal to `new` in every field but expires.
                    let current = if world.valid(t) {
                        m.live(token).cloned().filter(|cur| {
                            let mut same = (**cur).clone();
                            same.expires = new.expires;
                            same == new
                        })
                    } else {
                        None
                    };
                    let touched = strategy.touch(token, &new);
                    assert_eq!(touched, current.is_some(), "touch: {}", ctx());
                    if let Some(cur) = current {
                        let mut updated = (*cur).clone();
                        updated.expires = new.expires;
                        m.insert(Arc::new(updated), now_utc);
                    }
                }
                Op::Prune => {
                    let due = m.cache.values().filter(|(_, d)| *d <= m.now).count();
                    assert_eq!(strategy.prune(), due, "prune: {}", ctx());
                }
                Op::StrategyClear => {
                    strategy.clear().await.expect("clear");
                }
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(u64::from(ms)));
                    m.now += u64::from(ms) * MS;
                }
                Op::DbPut(spec) => {
                    if world.valid(spec.token) {
                        let s = world.session(&spec);
                        db.lock().unwrap().insert(s.token.clone(), s);
                    }
                }
                Op::DbPutWrongToken(t, spec) => {
                    if world.valid(t) {
                        let mut s = world.session(&spec);
                        s.token = format!("other-{}", s.token.len());
                        db.lock().unwrap().insert(world.token(t).to_owned(), s);
                    }
                }
                Op::DbDelete(t) => {
                    db.lock().unwrap().remove(world.token(t));
                }
                Op::LoaderFails(f) => *fail.lock().unwrap() = f,
                Op::Get(t) => {
                    let token = world.token(t);
                    let before = unix_now();
                    let got = service.get(token).await;
                    let after = unix_now();
                    if !world.valid(t) {
                        assert!(
                            matches!(got, Err(SessionCacheError::InvalidToken(_))),
                            "get of an invalid token: {got:?}: {}",
                            ctx()
                        );
                        return;
                    }
                    let cached = m.live(token).cloned();
                    if let Some(c) = cached.as_ref().filter(|c| !c.is_unusable_at(now_utc)) {
                        let got = got.unwrap_or_else(|e| panic!("get: {e}: {}", ctx()));
                        assert_eq!(got.as_ref(), Some(c), "get of a cached session: {}", ctx());
                        return;
                    }
                    // A miss (or a stale copy): the loader decides.
                    let loaded = if *fail.lock().unwrap() {
                        None
                    } else {
                        Some(db.lock().unwrap().get(token).cloned())
                    };
                    match loaded {
                        None => assert!(
                            matches!(got, Err(SessionCacheError::Loader(_))),
                            "get with a failing loader: {got:?}: {}",
                            ctx()
                        ),
                        Some(None) => {
                            assert!(
                                matches!(got, Ok(None)),
                                "get of a token the database lacks: {got:?}: {}",
                                ctx()
                            );
                            m.index.remove(token);
                        }
                        Some(Some(s)) if s.token != token => assert!(
                            matches!(got, Err(SessionCacheError::Loader(_))),
                            "get of a session stored under another token: {got:?}: {}",
                            ctx()
                        ),
                        Some(Some(s)) if s.is_expired_at(now_utc) => {
                            assert!(
                                matches!(got, Ok(None)),
                                "get of an expired session: {got:?}: {}",
                                ctx()
                            )
                        }
                        Some(Some(s)) => {
                            let got = got
                                .unwrap_or_else(|e| panic!("get: {e}: {}", ctx()))
                                .unwrap_or_else(|| {
                                    panic!("get: None for a loadable session: {}", ctx())
                                });
                            assert_stored(&got, &s, before, after, "get (loaded)");
                            m.record(&got);
                            m.insert(got, now_utc);
                        }
                    }
                }
                Op::Set(spec) => {
                    let s = world.session(&spec);
                    let before = unix_now();
                    let got = service.set(s.clone()).await;
                    let after = unix_now();
                    if !world.valid(spec.token) {
                        assert!(got.is_err(), "set of an invalid token: {}", ctx());
                        return;
                    }
                    let got = got.unwrap_or_else(|e| panic!("set: {e}: {}", ctx()));
                    assert_stored(&got, &s, before, after, "set");
                    m.record(&got);
                    m.insert(got, now_utc);
                }
                Op::Delete(t) => {
                    let r = service.delete(world.token(t)).await;
                    assert_eq!(r.is_ok(), world.valid(t), "delete: {}", ctx());
                    if world.valid(t) {
                        m.index.remove(world.token(t));
                    }
                }
                Op::Clear => {
                    service.clear().await.expect("clear");
                    m.index.clear();
                }
                Op::DeleteByUser(u) => {
                    let id = Id::Int(i64::from(u));
                    let tokens: Vec<String> = m
                        .index
                        .iter()
                        .filter(|(_, (user, _))| user.as_ref() == Some(&id))
                        .map(|(t, _)| t.clone())
                        .collect();
                    let n = service
                        .delete_sessions_by_user(&id)
                        .await
                        .expect("delete by user");
                    assert_eq!(n, tokens.len(), "delete_sessions_by_user count: {}", ctx());
                    for t in tokens {
                        m.index.remove(&t);
                    }
                }
                Op::DeleteByOrder(o) => {
                    let id = Id::Int(i64::from(o));
                    let tokens: Vec<String> = m
                        .index
                        .iter()
                        .filter(|(_, (_, order))| order.as_ref() == Some(&id))
                        .map(|(t, _)| t.clone())
                        .collect();
                    let n = service
                        .delete_sessions_by_active_order(&id)
                        .await
                        .expect("delete by order");
                    assert_eq!(
                        n,
                        tokens.len(),
                        "delete_sessions_by_active_order count: {}",
                        ctx()
                    );
                    for t in tokens {
                        m.index.remove(&t);
                    }
                }
                Op::SetActiveOrder(t, o) => {
                    update(&service, &mut m, &world, t, Some(o), now_utc, &ctx).await
                }
                Op::UnsetActiveOrder(t) => {
                    update(&service, &mut m, &world, t, None, now_utc, &ctx).await
                }
            }
        });

        // Every departure the strategy reported, checked and applied.
        for (token, s, cause) in events.lock().unwrap().drain(..) {
            assert_ne!(
                cause,
                RemovalCause::Replaced,
                "dispose told of a replacement: {}",
                ctx()
            );
            if cause == RemovalCause::Expired {
                if let Some(i) = m
                    .expired_over
                    .iter()
                    .position(|(t, o)| *t == token && **o == *s)
                {
                    m.expired_over.swap_remove(i);
                    continue;
                }
            }
            let gone = m.cache.remove(&token);
            assert_eq!(
                gone.as_ref().map(|(g, _)| g),
                Some(&s),
                "dispose of {token:?} ({cause:?}) with a session the model does not hold: {}",
                ctx()
            );
            if cause == RemovalCause::Expired {
                assert!(
                    gone.is_some_and(|(_, d)| d <= m.now),
                    "expired early: {}",
                    ctx()
                );
            }
        }
        assert!(
            m.expired_over.is_empty(),
            "an expired session written over was not disposed of as expired: {:?}: {}",
            m.expired_over,
            ctx()
        );
        // Operations that must leave a token out of the cache.
        match op {
            Op::StrategyDelete(t) | Op::Delete(t) if world.valid(t) => {
                assert!(
                    !m.cache.contains_key(world.token(t)),
                    "delete left the session: {}",
                    ctx()
                )
            }
            Op::StrategyClear | Op::Clear => {
                assert!(m.cache.is_empty(), "clear left sessions: {}", ctx())
            }
            Op::Prune => assert!(
                m.cache.values().all(|(_, d)| *d > m.now),
                "prune left an expired session: {}",
                ctx()
            ),
            _ => {}
        }

        // The strategy and the model agree.
        assert_eq!(strategy.length(), m.cache.len(), "length: {}", ctx());
        for i in 0..VALID as u8 {
            let token = world.token(i);
            assert_eq!(
                strategy.get_now(token).as_ref(),
                m.live(token),
                "contents at {:.8}: {}",
                token,
                ctx()
            );
        }
        let mut all: Vec<Arc<CachedSession>> = strategy.all();
        all.sort_by(|a, b| a.token.cmp(&b.token));
        let want: Vec<Arc<CachedSession>> = m
            .cache
            .iter()
            .filter(|(_, (_, d))| *d > m.now)
            .map(|(_, (s, _))| s.clone())
            .collect();
        assert_eq!(all, want, "all(): {}", ctx());
        assert_eq!(
            service.indexed_sessions(),
            m.index.len(),
            "indexed_sessions: {}",
            ctx()
        );
    }
}

/// `set_active_order` / `unset_active_order` on the cached session of
/// token `t` (or a fresh one when none is cached).
async fn update(
    service: &SessionCache,
    m: &mut Model,
    world: &World,
    t: u8,
    order: Option<u8>,
    now_utc: OffsetDateTime,
    ctx: &dyn Fn() -> String,
) {
    let base = m
        .live(world.token(t))
        .map(|s| (**s).clone())
        .unwrap_or_else(|| {
            world.session(&Spec {
                token: t,
                version: 7,
                user: None,
                order: None,
                expired: false,
                stale: false,
            })
        });
    let before = unix_now();
    let got = match order {
        Some(o) => service.set_active_order(&base, Id::Int(i64::from(o))).await,
        None => service.unset_active_order(&base).await,
    };
    let after = unix_now();
    if !world.valid(t) {
        assert!(got.is_err(), "update of an invalid token: {}", ctx());
        return;
    }
    let mut want = base;
    want.active_order_id = order.map(|o| Id::Int(i64::from(o)));
    let got = got.unwrap_or_else(|e| panic!("update: {e}: {}", ctx()));
    assert_stored(&got, &want, before, after, "set_active_order");
    m.record(&got);
    m.insert(got, now_utc);
}
