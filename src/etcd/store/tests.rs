use super::*;
use crate::etcd::proto::EVENT_DELETE;

const P: &[u8] = b"/tokenguard/";
const NOW: u64 = 1_000_000;
const KEEP: u64 = 3600;

fn at(key: &str, value: &str) -> Entry {
    parse(P, key.as_bytes(), value.as_bytes(), KEEP, NOW)
}

fn revoked(kind: Kind, name: &str, revoked_at: u64) -> Entry {
    Entry::Revoked(Revocation { target: Target::new(kind, name), revoked_at, until: revoked_at + KEEP })
}

#[test]
fn the_documented_keys_are_revocations() {
    let t = NOW - 10;
    let v = format!(r#"{{"revoked_at": {t}, "reason": "stolen laptop"}}"#);
    assert_eq!(at("/tokenguard/revoked/jti/j-1", &v), revoked(Kind::Jti, "j-1", t));
    assert_eq!(at("/tokenguard/revoked/sub/alice", &v), revoked(Kind::Sub, "alice", t));
    assert_eq!(
        at("/tokenguard/revoked/sid/fam/1", &v),
        revoked(Kind::Sid, "fam/1", t),
        "a value may hold '/'"
    );
    let fp = "Ab".repeat(32);
    let token = Entry::Revoked(Revocation {
        target: Target::hashed(Kind::Token, [0xab; 32]),
        revoked_at: t,
        until: t + KEEP,
    });
    assert_eq!(at(&format!("/tokenguard/revoked/token/{fp}"), &v), token);
}

#[test]
fn a_jti_or_token_revocation_is_never_postponed_past_the_longest_grace() {
    let soon = NOW + MAX_FUTURE_SECONDS;
    assert_eq!(
        at("/tokenguard/revoked/jti/j", &format!(r#"{{"revoked_at": {soon}}}"#)),
        revoked(Kind::Jti, "j", soon)
    );
    let millis = NOW * 1000;
    assert_eq!(
        at("/tokenguard/revoked/jti/j", &format!(r#"{{"revoked_at": {millis}}}"#)),
        revoked(Kind::Jti, "j", NOW),
        "a time in milliseconds is in force now, not in 30,000 years"
    );
    // A subject's later revoked_at only covers more tokens: kept as written.
    let later = NOW + 10_000;
    assert_eq!(
        at("/tokenguard/revoked/sub/a", &format!(r#"{{"revoked_at": {later}}}"#)),
        revoked(Kind::Sub, "a", later)
    );
}

#[test]
fn revoked_at_defaults_to_now_only_where_it_decides_nothing() {
    assert_eq!(at("/tokenguard/revoked/jti/j-1", "{}"), revoked(Kind::Jti, "j-1", NOW));
    assert_eq!(at("/tokenguard/revoked/jti/j-1", r#"{"by": "ops"}"#), revoked(Kind::Jti, "j-1", NOW));
    let missing = Entry::Malformed("revoked_at is required for sub and sid");
    assert_eq!(at("/tokenguard/revoked/sub/alice", r#"{"reason": "x"}"#), missing);
    assert_eq!(at("/tokenguard/revoked/sid/s", "{}"), missing);
}

#[test]
fn malformed_revocations_are_skipped_not_guessed() {
    let v = r#"{"revoked_at": 999999}"#;
    for (key, value) in [
        ("/tokenguard/revoked/token/abc", v),
        (&format!("/tokenguard/revoked/token/{}", "g".repeat(64)), v),
        (&format!("/tokenguard/revoked/token/{}", "a".repeat(66)), v),
        ("/tokenguard/revoked/jti/", v),
        ("/tokenguard/revoked/user/alice", v),
        ("/tokenguard/revoked/alice", v),
        ("/tokenguard/revoked/sub/alice", ""),
        ("/tokenguard/revoked/sub/alice", "revoke"),
        ("/tokenguard/revoked/sub/alice", "[1]"),
        ("/tokenguard/revoked/sub/alice", "[999999]"),
        ("/tokenguard/revoked/sub/alice", r#"{"revoked_at": -1}"#),
        ("/tokenguard/revoked/sub/alice", r#"{"revoked_at": "999999"}"#),
        ("/tokenguard/revoked/sub/alice", r#"{"revoked_at": 1.5}"#),
        ("/tokenguard/revoked/jti/j", r#"{"reason": 7}"#),
    ] {
        assert!(matches!(at(key, value), Entry::Malformed(_)), "{key} = {value:?}: {:?}", at(key, value));
    }
    let long = format!(r#"{{"revoked_at": 999999, "reason": "{}"}}"#, "x".repeat(MAX_VALUE_BYTES));
    assert_eq!(at("/tokenguard/revoked/jti/j", &long), Entry::Malformed("value too long"));
    let bad_utf8 = parse(P, b"/tokenguard/revoked/jti/\xff", b"{}", KEEP, NOW);
    assert_eq!(bad_utf8, Entry::Malformed("key is not UTF-8"));
}

#[test]
fn other_keys_are_not_read() {
    assert_eq!(at("/tokenguard/refresh/abc", "anything"), Entry::Other);
    assert_eq!(at("/other/revoked/jti/j", "{}"), Entry::Other);
    assert_eq!(at("/tokenguard/revokedx/jti/j", "{}"), Entry::Other);
}

#[test]
fn revocations_no_token_can_outlive_are_dropped() {
    let old = format!(r#"{{"revoked_at": {}}}"#, NOW - KEEP);
    assert_eq!(at("/tokenguard/revoked/sub/alice", &old), Entry::Expired);
    let recent = format!(r#"{{"revoked_at": {}}}"#, NOW - KEEP + 1);
    assert_eq!(at("/tokenguard/revoked/sub/alice", &recent), revoked(Kind::Sub, "alice", NOW - KEEP + 1));
    let far = format!(r#"{{"revoked_at": {}}}"#, u64::MAX);
    assert!(matches!(at("/tokenguard/revoked/sub/alice", &far), Entry::Revoked(r) if r.until == u64::MAX));
}

#[test]
fn written_revocations_read_back() {
    let k = key(P, Kind::Sub, "alice");
    assert_eq!(k, b"/tokenguard/revoked/sub/alice");
    assert_eq!(
        value(NOW, Some("a \"quoted\" reason")),
        br#"{"reason":"a \"quoted\" reason","revoked_at":1000000}"#
    );
    assert_eq!(parse(P, &k, &value(NOW, None), KEEP, NOW), revoked(Kind::Sub, "alice", NOW));
    let fp = "0f".repeat(32);
    let t = parse(P, &key(P, Kind::Token, &fp), &value(NOW, None), KEEP, NOW);
    assert!(matches!(t, Entry::Revoked(r) if r.target == Target::hashed(Kind::Token, [0x0f; 32])));
}

#[test]
fn pages_and_events_become_batches() {
    let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: v.into(), ..Default::default() };
    let kvs = [
        kv("/tokenguard/revoked/jti/a", "{}"),
        kv("/tokenguard/revoked/sub/b", "{}"),
        kv("/tokenguard/refresh/c", "x"),
        kv("/tokenguard/revoked/jti/old", r#"{"revoked_at": 1}"#),
    ];
    let page = from_kvs(P, &kvs, KEEP, NOW);
    assert_eq!((page.revocations.len(), page.skipped), (1, 1));
    let events: Vec<Event> = kvs
        .iter()
        .cloned()
        .map(|kv| Event { r#type: EVENT_PUT, kv: Some(kv) })
        .chain([Event { r#type: EVENT_DELETE, kv: Some(kv("/tokenguard/revoked/jti/z", "")) }])
        .chain([Event { r#type: EVENT_PUT, kv: None }])
        .collect();
    assert_eq!(from_events(P, &events, KEEP, NOW), page, "deletes and empty events withdraw nothing");
}
