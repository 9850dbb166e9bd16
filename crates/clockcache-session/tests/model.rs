//! The JSON model against what Vendure's Node code writes.

use clockcache_session::{to_iso_string, validate_token, CachedSession, Id, SessionCacheError};
use time::macros::datetime;

const AUTHENTICATED: &str = include_str!("fixtures/vendure-authenticated.json");
const ANONYMOUS: &str = include_str!("fixtures/vendure-anonymous.json");

#[test]
fn authenticated_fixture_round_trips_byte_for_byte() {
    let s = CachedSession::from_json(AUTHENTICATED.as_bytes()).unwrap();
    assert_eq!(s.cache_expiry, 1_795_342_573.0);
    assert_eq!(s.id, Id::Int(42));
    assert_eq!(s.expires, datetime!(2026-12-22 10:16:13 UTC));
    assert_eq!(s.active_order_id, Some(Id::Int(1007)));
    assert_eq!(s.active_channel_id, Some(Id::Int(1)));
    assert_eq!(s.authentication_strategy.as_deref(), Some("native"));
    let user = s.user.as_ref().unwrap();
    assert_eq!(user.id, Id::Int(3));
    assert!(user.verified);
    assert_eq!(user.channel_permissions.len(), 2);
    assert_eq!(user.channel_permissions[0].code, "__default_channel__");
    assert_eq!(
        user.channel_permissions[0].permissions,
        ["Authenticated", "ReadCatalog", "UpdateCustomer"]
    );
    assert_eq!(s.to_json().unwrap(), AUTHENTICATED);
}

#[test]
fn anonymous_fixture_round_trips_byte_for_byte() {
    let s = CachedSession::from_json(ANONYMOUS.as_bytes()).unwrap();
    assert_eq!(s.id, Id::Str("6a1c3e07-1c62-4b8e-9f0a-7d1c3b9e2f41".into()));
    assert_eq!(s.active_order_id, None);
    assert_eq!(s.user, None);
    assert_eq!(s.expires, datetime!(2027-01-01 00:00:00.123 UTC));
    assert_eq!(s.to_json().unwrap(), ANONYMOUS);
}

#[test]
fn decoding_accepts_other_shapes_vendure_can_write() {
    // activeOrderId/activeChannelId undefined (left out by JSON.stringify), an expires with an
    // offset, a fractional cacheExpiry, an integral float ID, unknown keys.
    let json = br#"{"cacheExpiry":1795342573.9,"id":7.0,"token":"t","expires":"2026-12-22T12:16:13+02:00","extra":{"a":1}}"#;
    let s = CachedSession::from_json(json).unwrap();
    assert_eq!(s.cache_expiry, 1_795_342_573.9);
    assert_eq!(s.id, Id::Int(7));
    assert_eq!(s.expires, datetime!(2026-12-22 10:16:13 UTC));
    assert_eq!(s.active_order_id, None);
    // Re-encoding writes the canonical form (keeping cacheExpiry as written).
    assert_eq!(
        s.to_json().unwrap(),
        r#"{"cacheExpiry":1795342573.9,"id":7,"token":"t","expires":"2026-12-22T10:16:13.000Z","activeOrderId":null,"activeChannelId":null}"#
    );
    // expires as epoch milliseconds.
    let s = CachedSession::from_json(
        br#"{"cacheExpiry":1,"id":"x","token":"t","expires":1797934573000}"#,
    )
    .unwrap();
    assert_eq!(to_iso_string(s.expires), "2026-12-22T10:16:13.000Z");
}

#[test]
fn malformed_json_is_a_clear_decode_error() {
    for bad in [
        &b"not json"[..],
        br#"{"cacheExpiry":1,"id":1.5,"token":"t","expires":"2026-12-22T10:16:13.000Z"}"#,
        br#"{"cacheExpiry":1,"id":1,"token":"t","expires":"yesterday"}"#,
        br#"{"cacheExpiry":1,"id":1,"expires":"2026-12-22T10:16:13.000Z"}"#,
        br#"{"cacheExpiry":"soon","id":1,"token":"t","expires":"2026-12-22T10:16:13.000Z"}"#,
        &[0xff, 0xfe, 0x00][..],
    ] {
        match CachedSession::from_json(bad) {
            Err(SessionCacheError::Decode(msg)) => assert!(!msg.is_empty()),
            other => panic!("{:?} decoded as {other:?}", String::from_utf8_lossy(bad)),
        }
    }
    let err = CachedSession::from_json(
        br#"{"cacheExpiry":1,"id":1.5,"token":"t","expires":"2026-12-22T10:16:13.000Z"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
}

#[test]
fn iso_strings_match_javascript() {
    assert_eq!(
        to_iso_string(datetime!(2026-11-22 10:16:13.000999 UTC)),
        "2026-11-22T10:16:13.000Z"
    );
    assert_eq!(
        to_iso_string(datetime!(2026-11-22 11:16:13.5 +01:00)),
        "2026-11-22T10:16:13.500Z"
    );
    assert_eq!(
        to_iso_string(datetime!(0001-01-01 0:00 UTC)),
        "0001-01-01T00:00:00.000Z"
    );
}

#[test]
fn ids_serialize_as_numbers_or_strings() {
    assert_eq!(serde_json::to_string(&Id::Int(5)).unwrap(), "5");
    assert_eq!(serde_json::to_string(&Id::from("5")).unwrap(), "\"5\"");
    assert_eq!(serde_json::from_str::<Id>("12").unwrap(), Id::Int(12));
    assert_eq!(
        serde_json::from_str::<Id>("\"12\"").unwrap(),
        Id::Str("12".into())
    );
    assert!(serde_json::from_str::<Id>("true").is_err());
    assert!(serde_json::from_str::<Id>("18446744073709551615").is_err());
}

#[test]
fn tokens_are_validated() {
    assert!(validate_token("a1b2").is_ok());
    assert!(validate_token("ünïcödé*?[]:{}✓").is_ok());
    let huge = "x".repeat(1 << 20);
    let err = validate_token(&huge).unwrap_err();
    assert!(matches!(err, SessionCacheError::InvalidToken(_)));
    assert!(err.to_string().contains("1048576 bytes"), "{err}");
    for bad in [
        "",
        "a\0b",
        "a\r\nSET x y",
        "tab\there",
        "\u{7f}",
        "c1\u{85}",
    ] {
        assert!(
            matches!(validate_token(bad), Err(SessionCacheError::InvalidToken(_))),
            "{bad:?} accepted"
        );
    }
}

/// decode -> encode -> decode must be the identity (regressions found by the reliability
/// suite's `session_json` fuzz target).
fn assert_round_trips(json: &[u8]) {
    let first = CachedSession::from_json(json).expect("decodes");
    let encoded = first.to_json().expect("encodes");
    let second = CachedSession::from_json(encoded.as_bytes())
        .unwrap_or_else(|e| panic!("{encoded} does not decode: {e}"));
    assert_eq!(first, second, "{encoded}");
    assert_eq!(second.to_json().unwrap(), encoded);
}

#[test]
fn sub_millisecond_expires_is_truncated_on_decode() {
    let json =
        br#"{"cacheExpiry":1,"id":"x","token":"t","expires":"2026-11-22T12:16:13.123456+02:00"}"#;
    assert_round_trips(json);
    let s = CachedSession::from_json(json).unwrap();
    assert_eq!(s.expires, datetime!(2026-11-22 10:16:13.123 UTC));
}

#[test]
fn expanded_years_round_trip_as_javascript_writes_them() {
    let json = br#"{"cacheExpiry":-5,"id":-9223374775808,"token":"","expires":-62271193600000}"#;
    assert_round_trips(json);
    let s = CachedSession::from_json(json).unwrap();
    assert!(to_iso_string(s.expires).starts_with("-000004-"));
    // As JavaScript writes it: new Date(-62271193600000).toISOString()
    let js = br#"{"cacheExpiry":1,"id":1,"token":"t","expires":"-000004-09-14T14:13:20.000Z"}"#;
    assert_eq!(CachedSession::from_json(js).unwrap().expires, s.expires);
    for bad in [
        "-000004-13-14T00:53:20.000Z",
        "-000004-02-30T00:53:20.000Z",
        "+000004-09-14T00:53:20Z",
        "-0000x4-09-14T00:53:20.000Z",
        "+010000-01-01T00:00:00.000Z",
    ] {
        let json = format!(r#"{{"cacheExpiry":1,"id":1,"token":"t","expires":"{bad}"}}"#);
        assert!(CachedSession::from_json(json.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn floats_in_data_round_trip() {
    assert_round_trips(
        br#"{"cacheExpiry":1,"id":1,"token":"t","expires":"2026-11-22T10:16:13.000Z","data":{"h":-23456789012345678901234567890,"f":[0.1,1e300,-0.0,2.2250738585072014e-308]}}"#,
    );
}

/// Node writes `cacheExpiry` as `Date.now() / 1000 + ttl`: fractional seconds. Decoding and
/// re-encoding keeps the number as written (a Vendure server reading it back sees its own value).
#[test]
fn fractional_cache_expiry_is_kept_as_written() {
    for written in [
        "1795342573.123",
        "1764698313.457",
        "1795342573.5",
        "1795342573",
    ] {
        let json = format!(
            r#"{{"cacheExpiry":{written},"id":7,"token":"t","expires":"2026-12-22T10:16:13.000Z","activeOrderId":null,"activeChannelId":null}}"#
        );
        let s = CachedSession::from_json(json.as_bytes()).unwrap();
        assert_eq!(s.to_json().unwrap(), json, "cacheExpiry {written}");
        assert_eq!(
            CachedSession::from_json(s.to_json().unwrap().as_bytes()).unwrap(),
            s
        );
    }
}
