//! `session_json`: arbitrary bytes decoded as a [`CachedSession`], the way
//! the session strategies decode what Redis holds for a token.
//!
//! Checked: decoding never panics (whatever the bytes: not UTF-8, not JSON,
//! JSON of the wrong shape, numbers out of range, deep nesting), and
//! whatever decodes re-encodes, and decoding that encoding gives back an
//! equal session whose encoding is the same bytes (decode → encode → decode
//! is the identity, and encode is deterministic). Allocation is bounded by
//! the input size (the fuzzer's `-malloc_limit_mb` and `-rss_limit_mb`
//! catch anything else).
//!
//! The bytes are tried as they are (a Redis value is bytes) and, when the
//! first byte is odd, wrapped in a JSON skeleton of a session with the rest
//! spliced into the `expires`, `id` and `data` fields, so the fuzzer reaches
//! the field decoders without having to discover the whole shape first.

use clockcache_session::CachedSession;

/// The fuzz target: decodes `data` and, if it decodes, checks the round
/// trip.
pub fn run(data: &[u8]) {
    check(data);
    if let Some((&first, rest)) = data.split_first() {
        if first % 2 == 1 {
            check(&skeleton(rest));
        }
    }
}

/// A session's JSON with `rest` split into the values of three fields.
fn skeleton(rest: &[u8]) -> Vec<u8> {
    let third = rest.len() / 3;
    let (a, b) = rest.split_at(third);
    let (b, c) = b.split_at(third);
    let mut out = Vec::with_capacity(rest.len() + 160);
    out.extend_from_slice(br#"{"cacheExpiry":1700000000,"id":"#);
    out.extend_from_slice(a);
    out.extend_from_slice(br#","token":"tok","expires":"#);
    out.extend_from_slice(b);
    out.extend_from_slice(br#","activeOrderId":null,"activeChannelId":null,"data":"#);
    out.extend_from_slice(c);
    out.push(b'}');
    out
}

/// Decodes `bytes`; if they decode, checks that the session round-trips.
pub fn check(bytes: &[u8]) {
    let Ok(first) = CachedSession::from_json(bytes) else {
        return;
    };
    let json = first
        .to_json()
        .unwrap_or_else(|e| panic!("a decoded session does not encode: {e}: {first:?}"));
    let second = CachedSession::from_json(json.as_bytes())
        .unwrap_or_else(|e| panic!("an encoded session does not decode: {e}: {json}"));
    assert_eq!(
        first, second,
        "decode -> encode -> decode changed the session; encoded as {json}"
    );
    let again = second.to_json().expect("encodes");
    assert_eq!(json, again, "encoding is not deterministic");
    // What a strategy keeps is an Arc of the decoded session; a clone must
    // be equal and encode the same.
    assert_eq!(first.clone().to_json().expect("encodes"), json);
}
