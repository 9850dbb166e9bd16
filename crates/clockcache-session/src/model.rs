//! The cached session model, serialized exactly as Vendure's Node code writes it.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::error::SessionCacheError;

/// The longest token (in bytes) that the strategies accept.
///
/// Vendure's tokens are 64 hex characters and tower-sessions' ids are 22 characters; 4096 bytes
/// leaves room for signed or JWT-like tokens while keeping a hostile token from bloating keys.
pub const MAX_TOKEN_LEN: usize = 4096;

/// An entity ID as Vendure models it (`ID = string | number`).
///
/// Serializes as a JSON number for [`Id::Int`] and a JSON string for [`Id::Str`]. Decoding
/// accepts strings, integers and floats with no fractional part (JavaScript has one number type).
/// Equality is structural (`Int(1) != Str("1")`); the secondary indexes of
/// [`SessionCache`](crate::SessionCache) compare the string forms, as Vendure's `idsAreEqual` does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// A numeric ID (Vendure's default integer ID strategy).
    Int(i64),
    /// A string ID (UUIDs, or bigint columns that the database driver returns as strings).
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(n) => write!(f, "{n}"),
            Id::Str(s) => f.write_str(s),
        }
    }
}

impl From<i64> for Id {
    fn from(v: i64) -> Self {
        Id::Int(v)
    }
}

impl From<&str> for Id {
    fn from(v: &str) -> Self {
        Id::Str(v.to_owned())
    }
}

impl From<String> for Id {
    fn from(v: String) -> Self {
        Id::Str(v)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Int(n) => s.serialize_i64(*n),
            Id::Str(v) => s.serialize_str(v),
        }
    }
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ID (a string or an integer)")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
        Ok(Id::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
        i64::try_from(v)
            .map(Id::Int)
            .map_err(|_| E::custom(format!("ID {v} does not fit in an i64")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Id, E> {
        // JSON.stringify never writes "1.0", but other writers might.
        if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
            Ok(Id::Int(v as i64))
        } else {
            Err(E::custom(format!("ID {v} is not an integer")))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
        Ok(Id::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
        Ok(Id::Str(v))
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        d.deserialize_any(IdVisitor)
    }
}

/// A user's permissions on one channel (Vendure's `UserChannelPermissions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserChannelPermissions {
    /// The channel ID.
    pub id: Id,
    /// The channel token.
    pub token: String,
    /// The channel code.
    pub code: String,
    /// Permission names, e.g. `"ReadCatalog"`.
    pub permissions: Vec<String>,
}

/// The user of an authenticated session (Vendure's `CachedSessionUser`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedSessionUser {
    /// The user ID.
    pub id: Id,
    /// The login identifier (usually an email address).
    pub identifier: String,
    /// Whether the user has verified their account.
    pub verified: bool,
    /// Permissions per channel.
    #[serde(default)]
    pub channel_permissions: Vec<UserChannelPermissions>,
}

/// A session as it is held in the cache (Vendure's `CachedSession`).
///
/// JSON encoding matches `JSON.stringify` of the object Vendure's `SessionService.serializeSession`
/// builds: the keys in the same order, `cacheExpiry` in Unix seconds (an integer when it is
/// whole, otherwise the fraction Node wrote, kept as written), `expires` as
/// `Date.prototype.toISOString()` writes it (`2026-11-22T10:16:13.000Z`), `activeOrderId` and
/// `activeChannelId` always present (`null` when unset, as they come from the database), and
/// `authenticationStrategy` and `user` left out for anonymous sessions. Decoding also accepts
/// absent IDs, `expires` with any RFC 3339 offset or precision, or as epoch milliseconds, and
/// ignores unknown keys.
///
/// Not `Eq`: `cache_expiry` is a float, as in JavaScript.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedSession {
    /// When the cached copy must be refreshed from the database, in Unix seconds. Node writes
    /// `Date.now() / 1000 + ttl`, a fraction; it is kept exactly as written, so a Vendure
    /// server reading back what this crate re-encoded sees its own value. Must be finite
    /// (decoding rejects anything else; an encoder given NaN writes `null`).
    pub cache_expiry: f64,
    /// The session ID.
    pub id: Id,
    /// The session token (the cache key).
    pub token: String,
    /// When the session itself expires.
    pub expires: OffsetDateTime,
    /// The active order, if any.
    pub active_order_id: Option<Id>,
    /// The active channel, if any.
    pub active_channel_id: Option<Id>,
    /// The authentication strategy name of an authenticated session (e.g. `"native"`).
    pub authentication_strategy: Option<String>,
    /// The user of an authenticated session.
    pub user: Option<CachedSessionUser>,
    /// Extra data (not part of Vendure's model; written as `"data"` only when set). The
    /// tower-sessions adapter keeps its session data here; Vendure ignores the key.
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
}

impl CachedSession {
    /// A session with the given id, token and expiry, `cache_expiry` set to `cache_ttl` from now,
    /// and no user, order or channel.
    pub fn new(
        id: impl Into<Id>,
        token: impl Into<String>,
        expires: OffsetDateTime,
        cache_ttl: std::time::Duration,
    ) -> Self {
        CachedSession {
            cache_expiry: unix_now().saturating_add(cache_ttl.as_secs() as i64) as f64,
            id: id.into(),
            token: token.into(),
            expires: truncate_to_millis(expires),
            active_order_id: None,
            active_channel_id: None,
            authentication_strategy: None,
            user: None,
            data: None,
        }
    }

    /// Encodes the session as Vendure's JSON.
    pub fn to_json(&self) -> Result<String, SessionCacheError> {
        serde_json::to_string(self).map_err(|e| SessionCacheError::Encode(e.to_string()))
    }

    /// Decodes a session from Vendure's JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, SessionCacheError> {
        serde_json::from_slice(json).map_err(|e| SessionCacheError::Decode(e.to_string()))
    }

    /// `true` when `now` is at or past `expires`.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.expires <= now
    }

    /// `true` when `now_unix_secs` is past `cache_expiry` (Vendure: `cacheExpiry < now / 1000`).
    pub fn is_cache_stale_at(&self, now_unix_secs: i64) -> bool {
        self.cache_expiry < now_unix_secs as f64
    }

    /// `true` when the cached copy must not be served at `now`: past `cache_expiry` (compared
    /// with `now` to the nanosecond, as Vendure compares it with `Date.now() / 1000`) or at or
    /// past `expires`.
    pub fn is_unusable_at(&self, now: OffsetDateTime) -> bool {
        self.is_expired_at(now) || self.cache_expiry_at() < now
    }

    /// `cache_expiry` as a date (the Unix epoch when it is out of range).
    fn cache_expiry_at(&self) -> OffsetDateTime {
        // Nanoseconds as a float: within a microsecond for any date Node can write.
        OffsetDateTime::from_unix_timestamp_nanos((self.cache_expiry * 1e9) as i128)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Time left before the session expires, `None` when it already has.
    pub fn remaining_lifetime(&self, now: OffsetDateTime) -> Option<std::time::Duration> {
        positive(self.expires - now)
    }

    /// Time left before the cached copy is stale or the session expires (whichever is first).
    /// A cache entry must never live longer than this.
    pub fn remaining_cache_life(&self, now: OffsetDateTime) -> Option<std::time::Duration> {
        let to_expires = self.expires - now;
        let to_cache_expiry = self.cache_expiry_at() - now;
        positive(to_expires.min(to_cache_expiry))
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn positive(d: Duration) -> Option<std::time::Duration> {
    if d.is_positive() {
        std::time::Duration::try_from(d).ok()
    } else {
        None
    }
}

/// Drops the sub-millisecond part, as a JavaScript `Date` would.
pub fn truncate_to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1_000_000).unwrap_or(t)
}

/// Formats a date exactly as JavaScript's `Date.prototype.toISOString()` does.
pub fn to_iso_string(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let year = t.year();
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:06}", -(year as i64))
    } else {
        format!("+{year:06}")
    };
    format!(
        "{year}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// RFC 3339, plus the expanded years JavaScript's `toISOString` writes outside 0..=9999
/// (`-000004-09-14T00:00:00.000Z`, `+010000-...`).
fn parse_iso(v: &str) -> Result<OffsetDateTime, String> {
    let expanded = v.len() > 7
        && matches!(v.as_bytes()[0], b'+' | b'-')
        && v.as_bytes()[1..7].iter().all(u8::is_ascii_digit);
    if !expanded {
        return OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map_err(|e| e.to_string());
    }
    let digits: i32 = v[1..7].parse().map_err(|_| "bad year".to_owned())?;
    let year = if v.starts_with('-') { -digits } else { digits };
    // The rest is fixed-width: -MM-DDTHH:MM:SS.sssZ
    let rest = &v.as_bytes()[7..];
    let shape = b"-##-##T##:##:##.###Z";
    let fits = |(c, p): (&u8, &u8)| {
        if *p == b'#' {
            c.is_ascii_digit()
        } else {
            c == p
        }
    };
    if rest.len() != shape.len() || !rest.iter().zip(shape).all(fits) {
        return Err("expected ±YYYYYY-MM-DDTHH:MM:SS.sssZ".into());
    }
    let num = |a: usize, b: usize| -> u16 {
        rest[a..b]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
    };
    let month = time::Month::try_from(num(1, 3) as u8).map_err(|e| e.to_string())?;
    let date =
        time::Date::from_calendar_date(year, month, num(4, 6) as u8).map_err(|e| e.to_string())?;
    let time = time::Time::from_hms_milli(
        num(7, 9) as u8,
        num(10, 12) as u8,
        num(13, 15) as u8,
        num(16, 19),
    )
    .map_err(|e| e.to_string())?;
    Ok(time::PrimitiveDateTime::new(date, time).assume_utc())
}

struct ExpiresVisitor;

impl Visitor<'_> for ExpiresVisitor {
    type Value = OffsetDateTime;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO-8601 date string or epoch milliseconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OffsetDateTime, E> {
        // A JavaScript `Date` holds milliseconds: keep no more, so that decoding what
        // `to_iso_string` wrote gives back the same value.
        parse_iso(v)
            .map(truncate_to_millis)
            .map_err(|e| E::custom(format!("`expires` {v:?} is not an ISO-8601 date: {e}")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<OffsetDateTime, E> {
        OffsetDateTime::from_unix_timestamp_nanos(v as i128 * 1_000_000)
            .map_err(|e| E::custom(format!("`expires` {v} ms is out of range: {e}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<OffsetDateTime, E> {
        let v = i64::try_from(v).map_err(|_| E::custom("`expires` is out of range"))?;
        self.visit_i64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<OffsetDateTime, E> {
        if v.is_finite() && v.abs() < 1e17 {
            self.visit_i64(v.floor() as i64)
        } else {
            Err(E::custom("`expires` is out of range"))
        }
    }
}

struct Expires(OffsetDateTime);

impl<'de> Deserialize<'de> for Expires {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExpiresVisitor).map(Expires)
    }
}

/// Beyond 2^53 a float no longer holds every integer: JavaScript's `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

struct CacheExpiry(f64);

impl<'de> Deserialize<'de> for CacheExpiry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Unix seconds as a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                // Kept as written (not floored): re-encoding gives Node's number back.
                if v.is_finite() && v.abs() <= MAX_SAFE_INTEGER {
                    Ok(v)
                } else {
                    Err(E::custom("`cacheExpiry` is out of range"))
                }
            }
        }
        d.deserialize_any(V).map(CacheExpiry)
    }
}

/// Writes `cacheExpiry` as `JSON.stringify` writes a number: whole values without a fraction
/// (`1795342573`, not `1795342573.0`), others in the shortest form that reads back the same.
struct CacheExpiryOut(f64);

impl Serialize for CacheExpiryOut {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() <= MAX_SAFE_INTEGER {
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}

impl Serialize for CachedSession {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = 6
            + usize::from(self.authentication_strategy.is_some())
            + usize::from(self.user.is_some())
            + usize::from(self.data.is_some());
        let mut st = s.serialize_struct("CachedSession", n)?;
        st.serialize_field("cacheExpiry", &CacheExpiryOut(self.cache_expiry))?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("token", &self.token)?;
        st.serialize_field("expires", &to_iso_string(self.expires))?;
        st.serialize_field("activeOrderId", &self.active_order_id)?;
        st.serialize_field("activeChannelId", &self.active_channel_id)?;
        if let Some(a) = &self.authentication_strategy {
            st.serialize_field("authenticationStrategy", a)?;
        }
        if let Some(u) = &self.user {
            st.serialize_field("user", u)?;
        }
        if let Some(d) = &self.data {
            st.serialize_field("data", d)?;
        }
        st.end()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    cache_expiry: CacheExpiry,
    id: Id,
    token: String,
    expires: Expires,
    #[serde(default)]
    active_order_id: Option<Id>,
    #[serde(default)]
    active_channel_id: Option<Id>,
    #[serde(default)]
    authentication_strategy: Option<String>,
    #[serde(default)]
    user: Option<CachedSessionUser>,
    #[serde(default)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
}

impl<'de> Deserialize<'de> for CachedSession {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(CachedSession {
            cache_expiry: w.cache_expiry.0,
            id: w.id,
            token: w.token,
            expires: w.expires.0,
            active_order_id: w.active_order_id,
            active_channel_id: w.active_channel_id,
            authentication_strategy: w.authentication_strategy,
            user: w.user,
            data: w.data,
        })
    }
}

/// Checks that a token can be used as a cache key: 1 to [`MAX_TOKEN_LEN`] bytes and no control
/// characters (NUL, CR, LF, ...). Every strategy calls this before touching its store.
pub fn validate_token(token: &str) -> Result<(), SessionCacheError> {
    if token.is_empty() {
        return Err(SessionCacheError::InvalidToken("the token is empty".into()));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(SessionCacheError::InvalidToken(format!(
            "the token is {} bytes long; the limit is {MAX_TOKEN_LEN}",
            token.len()
        )));
    }
    // Fast path: C0 controls and DEL are single bytes; C1 controls (U+0080..U+009F) are
    // encoded as 0xC2 0x80..0x9F, so without a 0xC2 byte there are none.
    // The fold has no early exit, so it compiles to a vector loop.
    let suspect = token.as_bytes().chunks(64).any(|chunk| {
        chunk.iter().fold(false, |acc, &b| {
            acc | (b < 0x20) | (b == 0x7f) | (b == 0xc2)
        })
    });
    if !suspect {
        return Ok(());
    }
    if let Some((i, c)) = token.char_indices().find(|(_, c)| c.is_control()) {
        return Err(SessionCacheError::InvalidToken(format!(
            "the token has a control character {:?} at byte {i}",
            c
        )));
    }
    Ok(())
}
