//! End-to-end: the revocation feed across Envoy processes (replicas) sharing one
//! authorization server.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use tokenguard_harness::envoy::{ConfigForm, Envoy, Options};
use tokenguard_harness::http::Client;
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::stack::{demo_keys, plugin_config, Stack};

const ADMIN_TOKEN: &str = "feed-admin-token-0123456789";

fn feed_config(extra_feed: Value) -> Value {
    let mut feed = json!({"cluster": "issuer", "authority": "issuer.test", "path": "/revocations",
                          "publish_path": "/revocations", "interval_seconds": 1, "timeout_ms": 500});
    for (k, v) in extra_feed.as_object().unwrap() {
        feed[k] = v.clone();
    }
    json!({"revocation_feed": feed, "admin": {"path_prefix": "/tokenguard/", "token": ADMIN_TOKEN}})
}

/// Another Envoy process with the same configuration: a second replica.
fn replica(s: &Stack, extra: &Value) -> Envoy {
    Envoy::start(&Options {
        plugin_config: plugin_config(&demo_keys(), extra),
        form: ConfigForm::StringValue,
        upstream_port: s.upstream.port,
        issuer_port: s.issuer.port,
        concurrency: 2,
        plain_route: false,
    })
}

fn code(envoy: &Envoy, token: &str) -> (u16, String) {
    let r = Client::new().get(&envoy.url("/"), &[("authorization", &format!("Bearer {token}"))]);
    let c =
        if r.status == 200 { String::new() } else { r.json()["error"].as_str().unwrap_or_default().into() };
    (r.status, c)
}

/// Waits until `envoy` refuses `token` as revoked; returns how long that took.
fn until_revoked(envoy: &Envoy, token: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if code(envoy, token) == (401, "token_revoked".into()) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not revoked within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_revocation_at_the_server_reaches_every_replica_within_the_interval() {
    let cfg = feed_config(json!({}));
    let s = Stack::start(cfg.clone());
    let b = replica(&s, &cfg);
    let token = s.mint(MintRequest::new("RS256", 300).claim("sub", json!("mallory")));
    assert_eq!(code(&s.envoy, &token).0, 200);
    assert_eq!(code(&b, &token).0, 200);
    s.issuer.publish(json!({"sub": "mallory"}));
    let ta = until_revoked(&s.envoy, &token, Duration::from_secs(4));
    let tb = until_revoked(&b, &token, Duration::from_secs(4));
    eprintln!("revocation reached replica A in {ta:?}, B in {tb:?} (interval 1 s)");
    // A token issued later for the same subject is spared (revoke-all semantics).
    std::thread::sleep(Duration::from_millis(1100));
    let later = s.mint(MintRequest::new("RS256", 300).claim("sub", json!("mallory")));
    assert_eq!(code(&b, &later).0, 200);
}

#[test]
fn a_revocation_at_one_replica_reaches_the_others() {
    let cfg = feed_config(json!({}));
    let s = Stack::start(cfg.clone());
    let b = replica(&s, &cfg);
    let token = s.mint(MintRequest::new("ES256", 300).claim("jti", json!("jti-fleet")));
    assert_eq!(code(&b, &token).0, 200);
    let r = s.client.post(
        &s.envoy.url("/tokenguard/revoke?jti=jti-fleet"),
        &[("x-admin-token", ADMIN_TOKEN)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["published"], true);
    assert_eq!(s.issuer.counter("feed_published"), 1);
    assert_eq!(code(&s.envoy, &token), (401, "token_revoked".into()), "at once where it was made");
    let t = until_revoked(&b, &token, Duration::from_secs(4));
    eprintln!("admin revocation reached the other replica in {t:?}");
}

#[test]
fn a_restarted_replica_rejects_a_revoked_token_from_its_first_request() {
    let cfg = feed_config(json!({}));
    let s = Stack::start(cfg.clone());
    let token = s.mint(MintRequest::new("EdDSA", 300).claim("sid", json!("sid-gone")));
    s.issuer.publish(json!({"sid": "sid-gone"}));
    until_revoked(&s.envoy, &token, Duration::from_secs(4));
    // A brand-new process: its shared data is empty until the first poll loads the feed.
    let fresh = replica(&s, &cfg);
    assert_eq!(code(&fresh, &token), (401, "token_revoked".into()), "the very first request");
    let ok = s.mint(MintRequest::new("EdDSA", 300));
    assert_eq!(code(&fresh, &ok).0, 200);
}

#[test]
fn a_feed_outage_keeps_what_is_known_backs_off_and_recovers() {
    let cfg = feed_config(json!({}));
    let s = Stack::start(cfg);
    let revoked = s.mint(MintRequest::new("RS256", 300).claim("jti", json!("jti-before-outage")));
    s.issuer.publish(json!({"jti": "jti-before-outage"}));
    until_revoked(&s.envoy, &revoked, Duration::from_secs(4));
    s.client.post(&format!("{}/control", s.issuer.url()), &[], r#"{"feed_down": true}"#);
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(code(&s.envoy, &revoked), (401, "token_revoked".into()), "still enforced during the outage");
    let fresh = s.mint(MintRequest::new("RS256", 300));
    assert_eq!(code(&s.envoy, &fresh).0, 200, "no max_staleness: valid tokens flow");
    let age = s.envoy.stat("wasmcustom.tokenguard.revocation_feed.sync_age_seconds").unwrap();
    assert!(age >= 2, "sync age gauge: {age}");
    let failed: Vec<Value> =
        s.envoy.audit_records().into_iter().filter(|a| a["event"] == "revocation_feed_failed").collect();
    assert!(!failed.is_empty());
    let polls_during = s.issuer.counter("feed_polls");
    std::thread::sleep(Duration::from_millis(2000));
    assert!(s.issuer.counter("feed_polls") - polls_during <= 2, "backing off, not hammering");
    s.client.post(&format!("{}/control", s.issuer.url()), &[], r#"{"feed_down": false}"#);
    let start = Instant::now();
    while !s.envoy.audit_records().iter().any(|a| a["event"] == "revocation_feed_recovered") {
        assert!(start.elapsed() < Duration::from_secs(15), "did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every worker records the gauge on its tick; the one that saw the recovery at once.
    let start = Instant::now();
    while s.envoy.stat("wasmcustom.tokenguard.revocation_feed.sync_age_seconds").unwrap() > 2 {
        assert!(start.elapsed() < Duration::from_secs(3), "the sync age gauge never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn max_staleness_fails_closed_during_an_outage() {
    let cfg = feed_config(json!({"max_staleness_seconds": 2}));
    let s = Stack::start(cfg);
    let token = s.mint(MintRequest::new("RS256", 300));
    assert_eq!(code(&s.envoy, &token).0, 200);
    s.client.post(&format!("{}/control", s.issuer.url()), &[], r#"{"feed_down": true}"#);
    let start = Instant::now();
    loop {
        let r = Client::new().get(&s.envoy.url("/"), &[("authorization", &format!("Bearer {token}"))]);
        if r.status == 503 {
            assert_eq!(r.json()["error"], "temporarily_unavailable");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(8), "never failed closed");
        std::thread::sleep(Duration::from_millis(200));
    }
    s.client.post(&format!("{}/control", s.issuer.url()), &[], r#"{"feed_down": false}"#);
    let start = Instant::now();
    while code(&s.envoy, &token).0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(15), "did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
}
