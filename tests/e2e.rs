//! End-to-end: the built filter in a real Envoy 1.40 (two workers), with the test issuer
//! and an upstream on loopback. Each test asserts what the client, the upstream and the
//! audit log saw. Run through `make test`, which builds the .wasm and installs Envoy.

use serde_json::{json, Value};
use std::time::Duration;

use tokenguard_harness::envoy::{ConfigForm, Envoy, Options};
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::keys::{fingerprint, now, raw_token};
use tokenguard_harness::stack::{demo_keys, plugin_config, Stack};

fn sleep_until(unix: u64) {
    while now() < unix {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn error_code(resp: &tokenguard_harness::http::Response) -> String {
    resp.json()["error"].as_str().unwrap_or_default().to_string()
}

/// Seed 000 TC1: a 5 s token is valid at once and refused after 6 s (no leeway).
#[test]
fn tc1_token_expires_after_its_ttl() {
    let s = Stack::start(json!({"clock_skew_seconds": 0}));
    let token = s.mint(MintRequest::new("RS256", 5));
    let issued = now();
    let ok = s.get("/tc1", Some(&token));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = s.upstream.received();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/tc1");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {token}").as_str()),
        "forwarded unchanged"
    );

    sleep_until(issued + 6);
    let expired = s.get("/tc1", Some(&token));
    assert_eq!(expired.status, 401);
    assert_eq!(error_code(&expired), "token_expired");
    assert_eq!(s.upstream.received().len(), 1, "the expired request never reached the upstream");
}

/// Seed 000 TC2: a 60 s token 10 s before expiry produces exactly one near_expiry event.
#[test]
fn tc2_near_expiry_warning_fires_once() {
    let s = Stack::start(json!({"near_expiry_warning_seconds": 10}));
    let t = now();
    let due = s.mint(MintRequest::new("ES256", 10).claim("iat", json!(t - 50)));
    let fresh = s.mint(MintRequest::new("ES256", 60));
    for _ in 0..5 {
        assert_eq!(s.get("/", Some(&due)).status, 200);
        assert_eq!(s.get("/", Some(&fresh)).status, 200);
    }
    let warnings: Vec<Value> =
        s.audits_for(&due).into_iter().filter(|a| a["event"] == "near_expiry").collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(w["remaining_s"].as_u64().unwrap() <= 10);
    assert_eq!(w["sub"], "alice");
    assert_eq!(w["exp"], t + 10);
    assert!(s.audits_for(&fresh).is_empty(), "no warning for a token with 60 s left");
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.near_expiry_warnings"), Some(1));
}

#[test]
fn session_lifetime_ends_a_token_that_has_not_expired() {
    let s = Stack::start(json!({"session": {"max_lifetime_seconds": 3600, "start_claim": "auth_time"}}));
    let old = s.mint(MintRequest::new("EdDSA", 300).claim("auth_time", json!(now() - 3601)));
    let r = s.get("/", Some(&old));
    assert_eq!(r.status, 401);
    assert_eq!(error_code(&r), "session_expired");
    let recent = s.mint(MintRequest::new("EdDSA", 300).claim("auth_time", json!(now() - 60)));
    assert_eq!(s.get("/", Some(&recent)).status, 200);
}

#[test]
fn every_rejection_code_reaches_the_client_and_nothing_reaches_the_upstream() {
    let s = Stack::start(json!({"session": {"max_lifetime_seconds": 600}}));
    let n = now();
    let hmac = demo_keys().hmac;
    let valid = s.mint(MintRequest::new("RS256", 300));
    let tampered = {
        // Same header and signature, claims rewritten to another subject.
        let parts: Vec<&str> = valid.split('.').collect();
        let other = s.mint(MintRequest::new("RS256", 300).claim("sub", json!("mallory")));
        format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2])
    };
    let cases: Vec<(&str, String)> = vec![
        ("malformed_token", "not.a.jwt".into()),
        ("invalid_signature", tampered),
        (
            "unsupported_algorithm",
            raw_token(
                r#"{"alg":"none"}"#,
                &json!({"iss": "https://issuer.test", "sub": "a", "iat": n, "exp": n + 60, "aud": "api"})
                    .to_string(),
                &hmac,
            ),
        ),
        ("invalid_issuer", s.mint(MintRequest::new("HS256", 60).claim("iss", json!("https://evil.test")))),
        ("invalid_audience", s.mint(MintRequest::new("HS256", 60).claim("aud", json!("billing")))),
        ("missing_claim", s.mint(MintRequest::new("HS256", 60).claim("sub", Value::Null))),
        ("token_expired", s.mint(MintRequest::new("HS256", -1))),
        ("token_not_yet_valid", s.mint(MintRequest::new("HS256", 60).claim("nbf", json!(n + 120)))),
        ("session_expired", s.mint(MintRequest::new("HS256", 60).claim("iat", json!(n - 601)))),
    ];
    for (code, token) in &cases {
        let r = s.get("/denied", Some(token));
        assert_eq!(r.status, 401, "{code}: {}", r.body);
        assert_eq!(error_code(&r), *code);
        let challenge = r.header("www-authenticate").unwrap();
        assert!(
            challenge
                .starts_with("Bearer realm=\"tokenguard\", error=\"invalid_token\", error_description=\""),
            "{challenge}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("x-token-expires-in").is_none());
    }
    assert!(s.upstream.received().is_empty(), "a refused request reached the upstream");
}

#[test]
fn a_request_without_a_token_gets_a_bare_challenge() {
    let s = Stack::start(json!({}));
    for auth in [None, Some("Basic dXNlcjpwYXNz")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let r = s.client.get(&s.envoy.url("/"), &headers);
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tokenguard\""));
        assert_eq!(error_code(&r), "missing_token");
    }
    assert!(s.upstream.received().is_empty());
}

#[test]
fn the_client_learns_how_long_its_token_has_left() {
    let s = Stack::start(json!({}));
    let token = s.mint(MintRequest::new("PS256", 120));
    let r = s.get("/", Some(&token));
    assert_eq!(r.status, 200);
    let left: u64 = r.header("x-token-expires-in").expect("header").parse().unwrap();
    assert!((118..=120).contains(&left), "{left}");
    // The upstream's own answer reached the client (the echo of what it received).
    assert_eq!(r.json()["received"]["path"], "/");
}

#[test]
fn a_rejection_writes_one_audit_line_without_the_token() {
    let s = Stack::start(json!({}));
    let token = s.mint(MintRequest::new("ES384", -5).claim("sub", json!("dave")));
    let r = s.client.get(
        &s.envoy.url("/audit?x=1"),
        &[("authorization", &format!("Bearer {token}")), ("x-request-id", "req-42")],
    );
    assert_eq!(r.status, 401);
    let records = s.audits_for(&token);
    assert_eq!(records.len(), 1, "{records:?}");
    let a = &records[0];
    assert_eq!(a["event"], "token_rejected");
    assert_eq!(a["reason"], "token_expired");
    assert_eq!(a["token"], fingerprint(&token).as_str());
    assert_eq!(a["request_id"], "req-42");
    assert_eq!(a["path"], "/audit?x=1");
    assert!(a["ts"].as_u64().unwrap() >= now() - 5);
    let log = s.envoy.log();
    assert!(!log.contains(&token), "the raw token appears in Envoy's log");
    assert!(log.lines().any(|l| l.contains("[info]") && l.contains("audit {\"event\":\"token_rejected\"")));
}

#[test]
fn counters_are_visible_to_prometheus() {
    let s = Stack::start(json!({"near_expiry_warning_seconds": 0}));
    let good = s.mint(MintRequest::new("HS512", 300));
    let expired = s.mint(MintRequest::new("HS512", -1));
    for _ in 0..3 {
        s.get("/", Some(&good));
    }
    for _ in 0..2 {
        s.get("/", Some(&expired));
    }
    s.get("/", None);
    let prom = s.envoy.prometheus();
    let sample = |name: &str| -> Option<u64> {
        prom.lines()
            .find(|l| l.split_whitespace().next().map(|n| n.trim_end_matches("{}")) == Some(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    assert_eq!(sample("tokenguard_requests_accepted"), Some(3), "{prom}");
    assert_eq!(sample("tokenguard_requests_rejected_token_expired"), Some(2));
    assert_eq!(sample("tokenguard_requests_missing_token"), Some(1));
    assert_eq!(sample("tokenguard_requests_rejected_invalid_signature"), Some(0));
}

#[test]
fn an_invalid_configuration_keeps_envoy_from_starting_and_names_the_field() {
    let keys = demo_keys();
    let mut plugin = plugin_config(&keys, &json!({"clock_skew_seconds": 30}));
    plugin["providers"][0]["algorithms"] = json!(["RS256", "none"]);
    let log = Envoy::expect_refusal(&Options {
        plugin_config: plugin,
        form: ConfigForm::StringValue,
        upstream_port: 9,
        issuer_port: 9,
        concurrency: 2,
    });
    assert!(
        log.contains(
            "tokenguard: invalid configuration: providers[0].algorithms[1]: unsupported algorithm \"none\""
        ),
        "{log}"
    );
    let log = Envoy::expect_refusal(&Options {
        plugin_config: plugin_config(&keys, &json!({"clock_skew": 30})),
        form: ConfigForm::Struct,
        upstream_port: 9,
        issuer_port: 9,
        concurrency: 2,
    });
    assert!(log.contains("invalid configuration: clock_skew: unknown field `clock_skew`"), "{log}");
}

#[test]
fn a_struct_configuration_written_as_yaml_works() {
    let s =
        Stack::start_with(json!({"clock_skew_seconds": 5, "expires_in_header": "x-ttl"}), ConfigForm::Struct);
    let token = s.mint(MintRequest::new("RS384", 90));
    let r = s.get("/", Some(&token));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-ttl").is_some());
    let expired = s.mint(MintRequest::new("RS384", -3));
    assert_eq!(s.get("/", Some(&expired)).status, 200, "within the 5 s leeway");
}

#[test]
fn both_workers_enforce_the_same_policy() {
    let s = Stack::start(json!({}));
    let good = s.mint(MintRequest::new("ES256", 300));
    let bad = s.mint(MintRequest::new("ES256", -1));
    // Fresh connections spread across Envoy's two workers.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (url, good, bad) = (s.envoy.url("/"), good.clone(), bad.clone());
            std::thread::spawn(move || {
                let c = tokenguard_harness::http::Client::new();
                let ok = c.get(&url, &[("authorization", &format!("Bearer {good}"))]).status;
                let no = c.get(&url, &[("authorization", &format!("Bearer {bad}"))]).status;
                (ok, no)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), (200, 401));
    }
    assert_eq!(s.upstream.received().len(), 8);
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.requests.accepted"), Some(8));
}
