//! Regression tests for the bugs the `session_json` fuzz target found in
//! `clockcache-session` (fixed in 66e8d01; see docs/reliability.md). The
//! inputs are also in `fuzz/corpus/session_json/`.
#![cfg(feature = "session")]

use clockcache_reliability::session_json;
use clockcache_session::CachedSession;

fn round_trip(json: &[u8]) {
    let first = CachedSession::from_json(json).expect("decodes");
    let encoded = first.to_json().expect("encodes");
    let second = CachedSession::from_json(encoded.as_bytes())
        .unwrap_or_else(|e| panic!("{encoded} does not decode: {e}"));
    assert_eq!(first, second, "round trip through {encoded}");
    // And the fuzz target's own check accepts it.
    session_json::check(json);
}

/// Found by `session_json` on its seed corpus: decoding kept the
/// microseconds of `expires`, encoding wrote milliseconds, so decode ->
/// encode -> decode gave another session.
#[test]
fn sub_millisecond_expires_round_trips() {
    round_trip(
        br#"{"cacheExpiry":1,"id":"x","token":"t","expires":"2026-11-22T12:16:13.123456+02:00"}"#,
    );
}

/// Found by `session_json` after about 8 s of fuzzing: an `expires` before
/// year 0 encoded as `-000004-09-14T...` (as JavaScript writes it), which
/// the RFC 3339 decoder rejected: a session written to Redis could not be
/// read back.
#[test]
fn negative_year_expires_round_trips() {
    round_trip(br#"{"cacheExpiry":-5,"id":-9223374775808,"token":"","expires":-62271193600000}"#);
}

/// Found by `session_json` after about 28 s of fuzzing: serde_json was
/// built without `float_roundtrip`, so a float in `data` parsed to a value
/// whose printed form parsed back to another float.
#[test]
fn float_in_data_round_trips() {
    round_trip(br#"{"cacheExpiry":1,"id":1,"token":"t","expires":"2026-11-22T10:16:13.000Z","data":{"h":-23456789012345678901234567890}}"#);
}
